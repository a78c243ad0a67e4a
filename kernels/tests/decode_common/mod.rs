//! Fixtures shared by the decode conformance tests (`paged_decode`, `tree_decode`,
//! `merge_states`): a randomly filled paged cache (HND or NHD, several layers, spare pages),
//! shuffled page lists, typed upload/download, and the f64 reference attention.

#![allow(dead_code)]

use treepo_kernels::ops::PagedKvLayout;
use treepo_kernels::testing::{Rng, Tol};
use treepo_kernels::{BackendKind, Buffer, DType, Device, FloatElement, bf16, f16};

/// `x` rounded to `dtype` and back.
pub fn round_to(dtype: DType, x: f32) -> f32 {
    match dtype {
        DType::F16 => f16::from_f32(x).to_f32(),
        DType::BF16 => bf16::from_f32(x).to_f32(),
        _ => x,
    }
}

/// A host copy of a paged cache whose values are exactly representable in its dtype.
pub struct Cache {
    pub layout: PagedKvLayout,
    pub data: Vec<f32>,
    pub dtype: DType,
}

impl Cache {
    /// `layers` layers of `num_pages` pages, N(0, 1) values rounded to `dtype`.
    #[allow(clippy::too_many_arguments)]
    pub fn random(
        rng: &mut Rng,
        layers: usize,
        num_pages: usize,
        num_kv_heads: usize,
        page_size: usize,
        head_dim: usize,
        nhd: bool,
        dtype: DType,
    ) -> Cache {
        let make = if nhd { PagedKvLayout::nhd } else { PagedKvLayout::hnd };
        let layout = make(layers, num_pages, num_kv_heads, page_size, head_dim);
        let n = layout.required_len().unwrap();
        let data = rng.normals(n, 1.0).into_iter().map(|x| round_to(dtype, x)).collect();
        Cache { layout, data, dtype }
    }

    /// K (`which = 0`) or V (`which = 1`) of (layer, page, head, slot).
    pub fn row(&self, layer: usize, page: usize, which: usize, head: usize, slot: usize) -> &[f32] {
        let o = self.layout.offset(layer, page, which, head, slot, 0);
        &self.data[o..o + self.layout.head_dim]
    }
}

/// Hands out distinct page ids in shuffled order (what is never taken stays spare).
pub struct PagePool {
    free: Vec<i32>,
}

impl PagePool {
    pub fn new(rng: &mut Rng, num_pages: usize) -> PagePool {
        PagePool { free: rng.permutation(num_pages).into_iter().map(|p| p as i32).collect() }
    }
    pub fn take(&mut self, n: usize) -> Vec<i32> {
        assert!(n <= self.free.len(), "test pool exhausted");
        self.free.split_off(self.free.len() - n)
    }
}

/// The (page, slot) of each position `0..len` of a sequence stored in `pages`.
pub fn positions(pages: &[i32], page_size: usize, len: usize) -> Vec<(usize, usize)> {
    (0..len).map(|t| (pages[t / page_size] as usize, t % page_size)).collect()
}

/// f64 attention of one query vector over `keys` ((page, slot) pairs) of KV head `head`:
/// `(o, lse)` with natural-log LSE; no key gives `(0, -inf)`.
pub fn attend_ref(
    cache: &Cache,
    layer: usize,
    head: usize,
    q: &[f32],
    keys: &[(usize, usize)],
    scale: f64,
) -> (Vec<f64>, f64) {
    let d = cache.layout.head_dim;
    if keys.is_empty() {
        return (vec![0.0; d], f64::NEG_INFINITY);
    }
    let s: Vec<f64> = keys
        .iter()
        .map(|&(p, t)| {
            let k = cache.row(layer, p, 0, head, t);
            scale * q.iter().zip(k).map(|(&a, &b)| a as f64 * b as f64).sum::<f64>()
        })
        .collect();
    let m = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let w: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
    let l: f64 = w.iter().sum();
    let mut o = vec![0f64; d];
    for (&(p, t), wi) in keys.iter().zip(&w) {
        for (oi, &v) in o.iter_mut().zip(cache.row(layer, p, 1, head, t)) {
            *oi += wi * v as f64 / l;
        }
    }
    (o, m + l.ln())
}

/// The dtypes `dev` runs decode attention in: f32 everywhere, f16 where supported, bf16 on CUDA.
pub fn dtypes(dev: &Device) -> Vec<DType> {
    let mut v = vec![DType::F32];
    if dev.kind() != BackendKind::Cpu && dev.supports_f16() {
        v.push(DType::F16);
    } else if dev.kind() == BackendKind::Wgpu {
        treepo_kernels::testing::skip("wgpu f16", "the adapter lacks SHADER_F16");
    }
    if dev.kind() == BackendKind::Cuda {
        v.push(DType::BF16);
    }
    v
}

/// Tolerances of (outputs, LSEs) for results stored in `dtype` (computed in f32; 16-bit
/// kernels may also round P to the dtype on tensor cores).
pub fn tols(dtype: DType) -> (Tol, Tol) {
    match dtype {
        DType::F32 => (Tol { atol: 2e-5, rtol: 1e-4 }, Tol { atol: 1e-4, rtol: 1e-5 }),
        DType::F16 => (Tol::eps(DType::F16, 4.0), Tol { atol: 2e-3, rtol: 1e-3 }),
        _ => (Tol::eps(DType::BF16, 4.0), Tol { atol: 1e-2, rtol: 4e-3 }),
    }
}

/// Uploads `data` converted to `T`.
pub fn upload<T: FloatElement>(dev: &Device, data: &[f32]) -> Buffer<T> {
    let v: Vec<T> = data.iter().map(|&x| T::from_f32(x)).collect();
    dev.upload(&v).unwrap()
}

/// A NaN-poisoned buffer of `T`.
pub fn poisoned<T: FloatElement>(dev: &Device, len: usize) -> Buffer<T> {
    treepo_kernels::testing::poisoned::<T>(dev, len).unwrap()
}

/// Downloads `buf` as f32.
pub fn download<T: FloatElement>(dev: &Device, buf: &Buffer<T>) -> Vec<f32> {
    dev.download(buf).unwrap().into_iter().map(|x| x.to_f32()).collect()
}

/// Calls `$body::<T>` with `T` the Rust type of the `DType` value `$dt`.
macro_rules! with_dtype {
    ($dt:expr, $f:ident ( $($arg:expr),* )) => {
        match $dt {
            treepo_kernels::DType::F32 => $f::<f32>($($arg),*),
            treepo_kernels::DType::F16 => $f::<treepo_kernels::f16>($($arg),*),
            treepo_kernels::DType::BF16 => $f::<treepo_kernels::bf16>($($arg),*),
            other => panic!("no decode kernels for {other}"),
        }
    };
}
