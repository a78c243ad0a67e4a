//! Fixtures shared by the paged-cache conformance tests (`page_copy`, `paged_kv_append`):
//! never-zero random values of every element type, bit-exact comparison that names the layout
//! coordinate of the first mismatch, and the per-backend dtype gate.

use treepo_kernels::ops::PagedKvLayout;
use treepo_kernels::testing::{Rng, skip};
use treepo_kernels::{BackendKind, Buffer, DType, Device, Element, KernelError, bf16, f16};

/// Random, never-zero test values of each element type.
pub trait Sample: Element {
    /// A random test value.
    fn sample(rng: &mut Rng) -> Self;
}
impl Sample for f32 {
    fn sample(rng: &mut Rng) -> Self {
        rng.normal() as f32 + 0.125
    }
}
impl Sample for f16 {
    fn sample(rng: &mut Rng) -> Self {
        f16::from_f64(rng.normal() + 0.125)
    }
}
impl Sample for bf16 {
    fn sample(rng: &mut Rng) -> Self {
        bf16::from_f64(rng.normal() + 0.125)
    }
}
impl Sample for i32 {
    fn sample(rng: &mut Rng) -> Self {
        (rng.next_u64() as i32) | 1
    }
}

/// Compares bit patterns; on a mismatch names the element with `describe`.
pub fn assert_bits<T: Element>(
    what: &str,
    got: &[T],
    want: &[T],
    describe: impl Fn(usize) -> String,
) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let g: &[u8] = bytemuck::cast_slice(got);
    let w: &[u8] = bytemuck::cast_slice(want);
    if g != w {
        let size = std::mem::size_of::<T>();
        let bad: Vec<usize> = (0..got.len())
            .filter(|&i| g[i * size..(i + 1) * size] != w[i * size..(i + 1) * size])
            .collect();
        let i = bad[0];
        panic!(
            "{what}: {} elements differ; first at {i} ({}): got {:?}, want {:?}",
            bad.len(),
            describe(i),
            got[i],
            want[i]
        );
    }
}

/// Names the layout coordinate of buffer element `i` (`front` elements precede the layout).
pub fn coord(l: &PagedKvLayout, front: usize, i: usize) -> String {
    for layer in 0..l.num_layers {
        for page in 0..l.num_pages {
            for kv in 0..2 {
                for h in 0..l.num_kv_heads {
                    for t in 0..l.page_size {
                        let o = front + l.offset(layer, page, kv, h, t, 0);
                        if (o..o + l.head_dim).contains(&i) {
                            return format!(
                                "layer {layer} page {page} {} head {h} row {t} d {}",
                                ["K", "V"][kv],
                                i - o
                            );
                        }
                    }
                }
            }
        }
    }
    format!("element {i}, outside every (layer, page, kv, head, row)")
}

/// Whether `dev` runs the cache op `op` in `T`. When it does not, `attempt` runs the op on a small
/// HND cache (its layout `l` and a buffer of it) and must return `UnsupportedDtype`; wgpu f16 on
/// an adapter without `SHADER_F16` also prints a loud skip.
pub fn runs<T: Sample>(
    dev: &Device,
    op: &str,
    attempt: impl FnOnce(&mut Buffer<T>, &PagedKvLayout) -> treepo_kernels::Result<()>,
) -> bool {
    let ok = match dev.kind() {
        BackendKind::Cpu => true,
        BackendKind::Cuda => T::DTYPE != DType::I32,
        BackendKind::Wgpu => match T::DTYPE {
            DType::F32 => true,
            DType::F16 => dev.supports_f16(),
            _ => false,
        },
    };
    if !ok {
        let l = PagedKvLayout::hnd(1, 2, 1, 4, 8);
        let mut cache = dev.full(l.required_len().unwrap(), T::sample(&mut Rng::new(1))).unwrap();
        let err = attempt(&mut cache, &l).unwrap_err();
        assert!(matches!(err, KernelError::UnsupportedDtype { .. }), "{err}");
        if dev.kind() == BackendKind::Wgpu && T::DTYPE == DType::F16 {
            skip(
                &format!("{} {op} f16", dev.description()),
                "the adapter lacks SHADER_F16 (UnsupportedDtype checked instead)",
            );
        }
    }
    ok
}
