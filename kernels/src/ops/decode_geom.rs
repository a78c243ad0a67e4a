//! The argument checks shared by [`paged_decode`](super::paged_decode) and
//! [`tree_decode`](super::tree_decode): cache layout, head counts, dtypes per backend,
//! alignment of vectorized CUDA loads and 32-bit offsets on wgpu — and the launch parameters
//! both ops derive from them.

use crate::ops::{DecodeParams, PagedKvLayout};
use crate::{
    BackendKind, DType, Device, FloatElement, KernelError, Result, View, ViewMut, validate,
};

/// Threads per CTA/workgroup of the decode kernels (`DEC_THREADS` in `decode_tile.cuh`).
#[cfg(feature = "cuda")]
pub(crate) const CUDA_THREADS: u32 = 128;

/// Checked geometry of one decode call.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Geom {
    pub hq: usize,
    pub hkv: usize,
    pub group: usize,
    pub d: usize,
    pub page_size: usize,
    /// Element offset of the layer's first element, relative to the `kv` view.
    pub layer_base: usize,
    pub s_page: usize,
    pub s_kv: usize,
    pub s_head: usize,
    pub s_token: usize,
    pub sm_scale: f32,
}

impl Geom {
    /// The CPU kernels' view of the layer.
    pub fn cpu(&self) -> crate::cpu::decode_tile::KvGeom {
        crate::cpu::decode_tile::KvGeom {
            layer_base: self.layer_base,
            stride_page: self.s_page,
            stride_kv: self.s_kv,
            stride_head: self.s_head,
            stride_token: self.s_token,
            page_size: self.page_size,
            head_dim: self.d,
            num_kv_heads: self.hkv,
        }
    }

    /// `sm_scale · log2(e)`: the GPU kernels run the softmax in base 2.
    #[cfg(any(feature = "cuda", feature = "wgpu"))]
    pub fn scale_log2(&self) -> f32 {
        self.sm_scale * std::f32::consts::LOG2_E
    }

    /// `log2(page_size)`.
    #[cfg(any(feature = "cuda", feature = "wgpu"))]
    pub fn log2_ps(&self) -> u32 {
        self.page_size.trailing_zeros()
    }
}

/// What [`check`] validates: the query/output tensors `[rows, num_qo_heads, head_dim]`, the
/// cache, and the page size and page-id bound of the index table.
pub(crate) struct Call<'v, 'a, T: FloatElement> {
    pub op: &'static str,
    pub q: &'v View<'a, T>,
    pub kv: &'v View<'a, T>,
    pub layout: &'v PagedKvLayout,
    pub params: &'v DecodeParams,
    pub rows: usize,
    pub page_size: usize,
    pub num_pages: usize,
    pub out: &'v ViewMut<'a, T>,
    pub lse: Option<&'v ViewMut<'a, f32>>,
}

/// The validation boundary of both decode ops.
pub(crate) fn check<T: FloatElement>(dev: &Device, c: &Call<'_, '_, T>) -> Result<Geom> {
    let (op, l, p) = (c.op, c.layout, c.params);
    validate::finite(op, "sm_scale", p.sm_scale)?;
    l.validate(c.kv.len())?;
    crate::ensure!(
        p.layer < l.num_layers,
        op,
        "layer {} but the cache holds {} layers",
        p.layer,
        l.num_layers
    );
    let (hq, hkv, d) = (p.num_qo_heads, l.num_kv_heads, l.head_dim);
    crate::ensure!(
        hq > 0 && hq % hkv == 0,
        op,
        "num_qo_heads = {hq} is not a positive multiple of num_kv_heads = {hkv}"
    );
    crate::ensure!(
        c.page_size == l.page_size,
        op,
        "the index table's page_size {} differs from the cache's {}",
        c.page_size,
        l.page_size
    );
    crate::ensure!(
        c.num_pages <= l.num_pages,
        op,
        "page ids may reach {} but the cache holds {} pages",
        c.num_pages.saturating_sub(1),
        l.num_pages
    );
    let n = validate::product(op, &[c.rows, hq, d])?;
    validate::input(dev, op, "q", c.q, n)?;
    validate::input(dev, op, "kv", c.kv, 0)?;
    validate::output(dev, op, "out", c.out, n)?;
    if let Some(lse) = c.lse {
        validate::output(dev, op, "lse", lse, c.rows * hq)?;
    }
    let g = Geom {
        hq,
        hkv,
        group: hq / hkv,
        d,
        page_size: l.page_size,
        layer_base: p.layer * l.stride_layer,
        s_page: l.stride_page,
        s_kv: l.stride_kv,
        s_head: l.stride_head,
        s_token: l.stride_token,
        sm_scale: p.sm_scale,
    };
    let unsupported = || KernelError::UnsupportedDtype { op, dtype: T::DTYPE, backend: dev.kind() };
    match dev.kind() {
        BackendKind::Cpu => {
            if T::DTYPE != DType::F32 {
                return Err(unsupported());
            }
        }
        kind => {
            crate::ensure!(
                d == 64 || d == 128,
                op,
                "head_dim = {d}: the {kind} decode kernels are built for 64 and 128"
            );
            if kind == BackendKind::Wgpu
                && (T::DTYPE == DType::BF16 || (T::DTYPE == DType::F16 && !dev.supports_f16()))
            {
                return Err(unsupported());
            }
        }
    }
    if dev.kind() == BackendKind::Cuda {
        // Every K/V token row, Q vector and shared-memory tile is moved in 16-byte vectors.
        let vec = 16 / T::DTYPE.size();
        let offs = [
            ("kv offset + layer", c.kv.offset() + g.layer_base),
            ("stride_page", g.s_page),
            ("stride_kv", g.s_kv),
            ("stride_head", g.s_head),
            ("stride_token", g.s_token),
            ("q offset", c.q.offset()),
        ];
        for (what, v) in offs {
            crate::ensure!(
                v % vec == 0,
                op,
                "{what} = {v} elements is not a multiple of 16 bytes (the CUDA decode kernels load K/V and Q in 16-byte vectors)"
            );
        }
    }
    if dev.kind() == BackendKind::Wgpu {
        let end = |off: usize, len: usize| off.saturating_add(len);
        let reach = [
            ("kv", end(c.kv.offset(), l.required_len()?)),
            ("q", end(c.q.offset(), n)),
            ("out", end(c.out.offset(), n)),
        ];
        for (what, v) in reach {
            validate::fits_u32(op, &format!("{what} extent"), v)?;
        }
    }
    Ok(g)
}

/// Dynamic shared memory of one decode CTA (mirror of `decode_tile.cuh`): the larger of the
/// SIMT path (f32 tiles: Q `[16][D]`, K `[16][D+1]`, V `[16][D]`, S `[16][16]`, 4×16 row
/// scalars) and, for 16-bit dtypes, the MMA path (Q `[64][D+8]`, K `[32][D+8]`, Vᵀ `[D][40]`).
#[cfg(feature = "cuda")]
pub(crate) fn smem_bytes(d: usize, dtype: DType) -> u32 {
    let simt = 4 * (16 * d + 16 * (d + 1) + 16 * d + 16 * 16 + 4 * 16);
    let mma = match dtype {
        DType::F16 | DType::BF16 => 2 * (64 * (d + 8) + 32 * (d + 8) + d * (32 + 8)),
        _ => 0,
    };
    simt.max(mma) as u32
}

/// The launch of both CUDA decode kernels: grid `(jobs, num_kv_heads)`, [`CUDA_THREADS`] per
/// CTA, [`smem_bytes`] of dynamic shared memory.
#[cfg(feature = "cuda")]
pub(crate) fn cuda_launch<T: FloatElement>(g: &Geom, jobs: u32) -> cudarc::driver::LaunchConfig {
    cudarc::driver::LaunchConfig {
        grid_dim: (jobs, g.hkv as u32, 1),
        block_dim: (CUDA_THREADS, 1, 1),
        shared_mem_bytes: smem_bytes(g.d, T::DTYPE),
    }
}

/// The arguments both CUDA decode kernels end with, `i64 s_page, s_kv, s_head, s_token,
/// int log2_ps, hq, group, float scale_log2` (as `DecArgs` in `decode_tile.cuh`).
#[cfg(feature = "cuda")]
pub(crate) struct CudaTail {
    strides: [i64; 4],
    log2_ps: i32,
    hq: i32,
    group: i32,
    scale_log2: f32,
}

#[cfg(feature = "cuda")]
impl CudaTail {
    pub fn new(g: &Geom) -> Self {
        CudaTail {
            strides: [g.s_page as i64, g.s_kv as i64, g.s_head as i64, g.s_token as i64],
            log2_ps: g.log2_ps() as i32,
            hq: g.hq as i32,
            group: g.group as i32,
            scale_log2: g.scale_log2(),
        }
    }

    /// Pushes the arguments in kernel order (the launch reads them through references, so
    /// `self` outlives `l`).
    pub fn push<'a>(&'a self, l: &mut cudarc::driver::LaunchArgs<'a>) {
        use cudarc::driver::PushKernelArg;
        l.arg(&self.strides[0]).arg(&self.strides[1]).arg(&self.strides[2]).arg(&self.strides[3]);
        l.arg(&self.log2_ps).arg(&self.hq).arg(&self.group).arg(&self.scale_log2);
    }
}

/// The CUDA kernel symbol `{op}_{dtype}_d{head_dim}`.
#[cfg(feature = "cuda")]
pub(crate) fn symbol<T: FloatElement>(op: &str, d: usize) -> String {
    format!("{op}_{}_d{d}", T::DTYPE.suffix())
}

/// The uniform block shared by `paged_decode.wgsl` and `tree_decode.wgsl` (`Params` in
/// `decode_tile.wgsl`, field for field).
#[cfg(feature = "wgpu")]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct WgslParams {
    pub num_jobs: u32,
    pub q_off: u32,
    pub kv_off: u32,
    pub has_lse: u32,
    pub po_off: u32,
    pub pl_off: u32,
    pub out_off: u32,
    pub lse_off: u32,
    pub ib_rows: u32,
    pub sec: [u32; 4],
}

#[cfg(feature = "wgpu")]
impl WgslParams {
    /// The 24 words of the uniform block.
    pub fn words(&self, g: &Geom) -> [u32; 24] {
        let s = self.sec;
        [
            self.num_jobs,
            g.hkv as u32,
            g.hq as u32,
            g.group as u32,
            g.d as u32,
            g.log2_ps(),
            g.scale_log2().to_bits(),
            self.has_lse,
            self.q_off,
            self.kv_off,
            g.s_page as u32,
            g.s_kv as u32,
            g.s_head as u32,
            g.s_token as u32,
            self.po_off,
            self.pl_off,
            self.out_off,
            self.lse_off,
            self.ib_rows,
            s[0],
            s[1],
            s[2],
            s[3],
            0,
        ]
    }
}

/// The wgpu shader of `shader` for element type `T` (the derived f16 variant for f16).
#[cfg(feature = "wgpu")]
pub(crate) fn wgsl_variant<T: FloatElement>(
    op: &'static str,
    shader: &'static crate::webgpu::ShaderSource,
) -> Result<&'static crate::webgpu::ShaderSource> {
    match T::DTYPE {
        DType::F32 => Ok(shader),
        DType::F16 => crate::webgpu::sources::f16_variant(shader).ok_or_else(|| {
            KernelError::Invalid { op, msg: format!("{}.wgsl has no f16 variant", shader.stem) }
        }),
        dtype => Err(KernelError::UnsupportedDtype { op, dtype, backend: BackendKind::Wgpu }),
    }
}

/// `v` as the shader's `u32` (checked).
#[cfg(feature = "wgpu")]
pub(crate) fn u32v(op: &'static str, what: &str, v: usize) -> Result<u32> {
    crate::webgpu::u32_of(op, what, v)
}

/// Converts a CPU view of `T` to `f32` (the CPU kernels are f32-only; checked in [`check`]).
pub(crate) fn f32s<T: FloatElement>(s: &[T]) -> &[f32] {
    debug_assert_eq!(T::DTYPE, DType::F32);
    bytemuck::cast_slice(s)
}

/// Mutable form of [`f32s`].
pub(crate) fn f32s_mut<T: FloatElement>(s: &mut [T]) -> &mut [f32] {
    debug_assert_eq!(T::DTYPE, DType::F32);
    bytemuck::cast_slice_mut(s)
}
