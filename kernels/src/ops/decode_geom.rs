//! The argument checks shared by [`paged_decode`](super::paged_decode) and
//! [`tree_decode`](super::tree_decode): cache layout, head counts, dtypes per backend,
//! alignment of vectorized CUDA loads and 32-bit offsets on wgpu — and the launch parameters
//! both ops derive from them.

use crate::ops::{DecodeParams, PagedKvLayout, WorkItem};
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

/// Query vectors per pass of the CUDA decode tile's tensor-core path (`MMA_Q`).
const CUDA_MMA_PASS: usize = 64;
/// Query vectors per pass of its CUDA-core path (`SIMT_Q`).
const CUDA_SIMT_PASS: usize = 16;
/// Fewest query vectors of a job that take the tensor-core path (`dec_run`).
const CUDA_MMA_MIN_VECTORS: usize = 16;

/// Query vectors per pass of the CUDA decode tile (`decode_tile.cuh`) for a job of
/// `query_vectors` vectors (rows × GQA group): 64 on the tensor-core path — f16/bf16, at least
/// 16 vectors, and `tensor_cores` (sm_80 and newer) — else 16 on CUDA cores.
pub fn cuda_decode_pass(dtype: DType, query_vectors: usize, tensor_cores: bool) -> usize {
    let mma = tensor_cores
        && matches!(dtype, DType::F16 | DType::BF16)
        && query_vectors >= CUDA_MMA_MIN_VECTORS;
    if mma { CUDA_MMA_PASS } else { CUDA_SIMT_PASS }
}

/// How many times the CUDA decode tile reads each K/V token of a job of `query_vectors` vectors:
/// once per pass, `ceil(query_vectors / cuda_decode_pass(..))` (0 for no vectors). E.g. 32 leaf
/// rows × GQA group 8 in bf16 on tensor cores: 256 vectors, 4 reads.
pub fn cuda_kv_passes(dtype: DType, query_vectors: usize, tensor_cores: bool) -> usize {
    query_vectors.div_ceil(cuda_decode_pass(dtype, query_vectors, tensor_cores))
}

/// The K/V re-read factor of the CUDA decode tile over a work list (`tree_decode`): the K/V
/// tokens the tile reads over the tokens the items name, i.e. the mean of [`cuda_kv_passes`]
/// over `work` weighted by each item's token count (`kv_end - kv_start`); `group` is the GQA
/// group (query vectors of an item = its rows × `group`). 1.0 means one pass per item; 0.0 for a
/// list without tokens. Reading the same token in several items is not counted here (see
/// the planner's `tokens_read` for that).
pub fn cuda_kv_reread(dtype: DType, group: usize, work: &[WorkItem], tensor_cores: bool) -> f64 {
    let (mut named, mut read) = (0u64, 0u64);
    for w in work {
        let tokens = (w.kv_end - w.kv_start).max(0) as u64;
        let rows = (w.row_end - w.row_begin).max(0) as usize;
        let passes = cuda_kv_passes(dtype, rows * group, tensor_cores) as u64;
        named += tokens;
        read += tokens * passes;
    }
    if named == 0 { 0.0 } else { read as f64 / named as f64 }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn item(rows: i32, tokens: i32) -> WorkItem {
        WorkItem { kv_end: tokens, row_end: rows, ..WorkItem::default() }
    }

    #[test]
    fn passes_follow_the_tile_paths() {
        // Tensor cores: 16-bit dtypes from 16 vectors on, 64 per pass.
        for dt in [DType::F16, DType::BF16] {
            assert_eq!(cuda_decode_pass(dt, 16, true), 64);
            assert_eq!(cuda_kv_passes(dt, 256, true), 4, "32 leaves x group 8");
            assert_eq!(cuda_kv_passes(dt, 64, true), 1);
            assert_eq!(cuda_kv_passes(dt, 65, true), 2);
            // Under 16 vectors, or without tensor cores (sm_75): CUDA cores, 16 per pass.
            assert_eq!(cuda_decode_pass(dt, 15, true), 16);
            assert_eq!(cuda_kv_passes(dt, 15, true), 1);
            assert_eq!(cuda_kv_passes(dt, 256, false), 16);
        }
        assert_eq!(cuda_kv_passes(DType::F32, 64, true), 4);
        assert_eq!(cuda_kv_passes(DType::F32, 0, true), 0);
    }

    #[test]
    fn reread_is_the_token_weighted_mean_of_passes() {
        // 100 tokens read once (4 vectors) and 300 tokens read 4 times (64 rows x group 4).
        let work = [item(1, 100), item(64, 300)];
        let r = cuda_kv_reread(DType::BF16, 4, &work, true);
        assert_eq!(r, (100.0 + 300.0 * 4.0) / 400.0);
        assert_eq!(cuda_kv_reread(DType::BF16, 4, &work[..1], true), 1.0);
        assert_eq!(cuda_kv_reread(DType::F32, 4, &[], true), 0.0);
    }
}
