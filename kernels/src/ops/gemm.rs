//! GEMM: `C = alpha·op(A)·op(B) + beta·C`, row-major, optionally batched with strides.
//!
//! The model's linear layers are `Y = X·Wᵀ` with `W` in PyTorch `nn.Linear` layout
//! `[out, in]` ([`GemmSpec::linear`]); the backward pass needs `dX = dY·W` ([`GemmSpec::plain`])
//! and `dW += dYᵀ·X` (`trans_a = T`, `beta = 1`). CUDA runs cuBLAS; wgpu a tiled WGSL kernel;
//! the CPU the `gemm` crate — or, for a constant weight the caller packed once into panel
//! order ([`pack_panels`], [`GemmSpec::b_panels`]), our register-tiled weight GEMM, which skips
//! the crate's per-call repacking (the CPU engine's linear layers).

use crate::device::Inner;
use crate::{Device, FloatElement, KernelError, Result, View, ViewMut, cpu, validate};

const OP: &str = "gemm";

/// Whether an operand is used as stored or transposed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transpose {
    /// As stored.
    N,
    /// Transposed.
    T,
}

/// Shape and scaling of a (batched) GEMM. All matrices are row-major and contiguous within a
/// batch: `op(A)` is `m×k` (stored `[m,k]` for `N`, `[k,m]` for `T`), `op(B)` is `k×n`
/// (stored `[k,n]` for `N`, `[n,k]` for `T`), `C` is `[m,n]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GemmSpec {
    /// Rows of C.
    pub m: usize,
    /// Columns of C.
    pub n: usize,
    /// Inner dimension.
    pub k: usize,
    /// How A is used.
    pub trans_a: Transpose,
    /// How B is used.
    pub trans_b: Transpose,
    /// Scale of the product.
    pub alpha: f32,
    /// Scale of C's previous contents; `0` ignores them (NaN-safe, as in BLAS).
    pub beta: f32,
    /// Number of independent GEMMs.
    pub batch: usize,
    /// Elements between consecutive A matrices (ignored when `batch == 1`).
    pub stride_a: usize,
    /// Elements between consecutive B matrices.
    pub stride_b: usize,
    /// Elements between consecutive C matrices (`>= m*n`).
    pub stride_c: usize,
    /// B (each batch's) is a `[k, n]` matrix in panel order ([`pack_panels`]), not row-major.
    /// CPU only; needs `trans_a = trans_b = N` and `n % 16 == 0` ([`panels_supported`]).
    pub b_panels: bool,
}

impl GemmSpec {
    /// `C[m,n] = A[m,k] · W[n,k]ᵀ` — a linear layer with PyTorch weight layout.
    pub fn linear(m: usize, n: usize, k: usize) -> Self {
        GemmSpec::new(m, n, k, Transpose::N, Transpose::T)
    }
    /// `C[m,n] = A[m,k] · B[k,n]`.
    pub fn plain(m: usize, n: usize, k: usize) -> Self {
        GemmSpec::new(m, n, k, Transpose::N, Transpose::N)
    }
    /// A single GEMM with the given transposes, `alpha = 1`, `beta = 0`.
    pub fn new(m: usize, n: usize, k: usize, trans_a: Transpose, trans_b: Transpose) -> Self {
        GemmSpec {
            m,
            n,
            k,
            trans_a,
            trans_b,
            alpha: 1.0,
            beta: 0.0,
            batch: 1,
            stride_a: m * k,
            stride_b: k * n,
            stride_c: m * n,
            b_panels: false,
        }
    }
    /// The same GEMM with B in panel order ([`pack_panels`]; see [`GemmSpec::b_panels`]).
    pub fn with_b_panels(mut self) -> Self {
        self.b_panels = true;
        self
    }
    /// The same GEMM over `batch` contiguous matrices (`stride = matrix size`).
    pub fn batched(mut self, batch: usize) -> Self {
        self.batch = batch;
        self.stride_a = self.m * self.k;
        self.stride_b = self.k * self.n;
        self.stride_c = self.m * self.n;
        self
    }
    /// Sets `alpha` and `beta`.
    pub fn scaled(mut self, alpha: f32, beta: f32) -> Self {
        self.alpha = alpha;
        self.beta = beta;
        self
    }
    /// Leading dimension of A as stored (row-major).
    pub fn lda(&self) -> usize {
        if self.trans_a == Transpose::N { self.k } else { self.m }
    }
    /// Leading dimension of B as stored.
    pub fn ldb(&self) -> usize {
        if self.trans_b == Transpose::N { self.n } else { self.k }
    }
    /// (row, column) strides of `op(A)`.
    pub fn a_strides(&self) -> (usize, usize) {
        if self.trans_a == Transpose::N { (self.lda(), 1) } else { (1, self.lda()) }
    }
    /// (row, column) strides of `op(B)`.
    pub fn b_strides(&self) -> (usize, usize) {
        if self.trans_b == Transpose::N { (self.ldb(), 1) } else { (1, self.ldb()) }
    }
    /// Multiply-adds × 2 of the whole call.
    pub fn flops(&self) -> f64 {
        2.0 * self.batch as f64 * self.m as f64 * self.n as f64 * self.k as f64
    }
}

/// Whether `dev` runs B in panel order ([`GemmSpec::b_panels`], `n % 16 == 0`) on its fast
/// kernel: the CPU backend with AVX-512F (elsewhere the CPU runs the readable twin, correct but
/// slow; other backends refuse it).
pub fn panels_supported(dev: &Device) -> bool {
    let fast = {
        #[cfg(target_arch = "x86_64")]
        {
            cpu::fast::weight_gemm::available()
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    };
    matches!(dev.inner, Inner::Cpu) && fast
}

/// A row-major `B[k, n]` (host memory) in panel order, for [`GemmSpec::b_panels`]: panels of 32
/// columns (the last one 16 wide when `n % 32 == 16`), one after the other, each `k` rows of
/// its width.
pub fn pack_panels(b: &[f32], k: usize, n: usize) -> Result<Vec<f32>> {
    crate::ensure!(n.is_multiple_of(16), OP, "pack_panels: n = {n} is not a multiple of 16");
    let len = validate::product(OP, &[k, n])?;
    crate::ensure!(b.len() >= len, OP, "pack_panels: B has {} elements, k·n = {len}", b.len());
    Ok(cpu::weight_gemm::pack(b, k, n))
}

/// Runs `spec` on `dev`. f32 on every backend; f16/bf16 on CUDA (f32 accumulation).
pub fn gemm<'a, T: FloatElement>(
    dev: &Device,
    a: impl Into<View<'a, T>>,
    b: impl Into<View<'a, T>>,
    c: impl Into<ViewMut<'a, T>>,
    spec: &GemmSpec,
) -> Result<()> {
    let (a, b, mut c) = (a.into(), b.into(), c.into());
    let s = *spec;
    validate::finite(OP, "alpha", s.alpha)?;
    validate::finite(OP, "beta", s.beta)?;
    let extent = |batch: usize, stride: usize, size: usize| -> Result<usize> {
        if size == 0 || batch == 0 {
            return Ok(0);
        }
        let last = validate::product(OP, &[batch - 1, stride])?;
        last.checked_add(size)
            .ok_or_else(|| KernelError::Invalid { op: OP, msg: "size overflows".into() })
    };
    let size_a = validate::product(OP, &[s.m, s.k])?;
    let size_b = validate::product(OP, &[s.k, s.n])?;
    let size_c = validate::product(OP, &[s.m, s.n])?;
    if s.batch > 1 {
        crate::ensure!(
            s.stride_c >= size_c,
            OP,
            "stride_c = {} < m*n = {size_c}: C matrices would overlap",
            s.stride_c
        );
    }
    validate::input(dev, OP, "a", &a, extent(s.batch, s.stride_a, size_a)?)?;
    validate::input(dev, OP, "b", &b, extent(s.batch, s.stride_b, size_b)?)?;
    validate::output(dev, OP, "c", &c, extent(s.batch, s.stride_c, size_c)?)?;
    for (what, v) in [("m", s.m), ("n", s.n), ("k", s.k), ("batch", s.batch)] {
        validate::fits_u32(OP, what, v)?;
        crate::ensure!(i32::try_from(v).is_ok(), OP, "{what} = {v} exceeds cuBLAS's int range");
    }
    if s.b_panels {
        crate::ensure!(
            matches!(dev.inner, Inner::Cpu),
            OP,
            "b_panels (B in panel order) is a CPU layout; the {} backend takes trans_b N or T",
            dev.kind()
        );
        crate::ensure!(
            s.trans_a == Transpose::N && s.trans_b == Transpose::N,
            OP,
            "b_panels needs trans_a = trans_b = N (got {:?}, {:?})",
            s.trans_a,
            s.trans_b
        );
        crate::ensure!(s.n.is_multiple_of(16), OP, "b_panels needs n % 16 == 0 (n = {})", s.n);
    }
    if s.batch == 0 || size_c == 0 {
        return Ok(());
    }
    match &dev.inner {
        Inner::Cpu => {
            let (a, b) = (f32_slice::<T>(a.cpu())?, f32_slice::<T>(b.cpu())?);
            let c = f32_slice_mut::<T>(c.cpu())?;
            cpu::gemm::gemm_batched(
                s.batch,
                s.m,
                s.n,
                s.k,
                a,
                s.a_strides(),
                s.stride_a,
                b,
                s.b_strides(),
                s.b_panels,
                s.stride_b,
                c,
                s.stride_c,
                s.alpha,
                s.beta,
            );
            Ok(())
        }
        #[cfg(feature = "cuda")]
        Inner::Cuda(be) => cuda_gemm(be, &a, &b, &mut c, &s),
        #[cfg(feature = "wgpu")]
        Inner::Wgpu(be) => {
            use crate::webgpu::{buf, buf_mut, sources, u32_of};
            if T::DTYPE != crate::DType::F32 {
                return Err(KernelError::UnsupportedDtype {
                    op: OP,
                    dtype: T::DTYPE,
                    backend: dev.kind(),
                });
            }
            let u = |what: &str, v: usize| u32_of(OP, what, v);
            let (a_rs, a_cs) = s.a_strides();
            let (b_rs, b_cs) = s.b_strides();
            let params: [u32; 16] = [
                u("m", s.m)?,
                u("n", s.n)?,
                u("k", s.k)?,
                u("batch", s.batch)?,
                u("a offset", a.offset())?,
                u("a_rs", a_rs)?,
                u("a_cs", a_cs)?,
                u("stride_a", s.stride_a)?,
                u("b offset", b.offset())?,
                u("b_rs", b_rs)?,
                u("b_cs", b_cs)?,
                u("stride_b", s.stride_b)?,
                u("c offset", c.offset())?,
                u("stride_c", s.stride_c)?,
                s.alpha.to_bits(),
                s.beta.to_bits(),
            ];
            let groups = (s.n.div_ceil(16) as u32, s.m.div_ceil(16) as u32, s.batch as u32);
            be.dispatch(
                &sources::GEMM,
                "gemm_f32",
                bytemuck::cast_slice(&params),
                &[buf(&a), buf(&b), buf_mut(&c)],
                groups,
            )
        }
    }
}

fn f32_slice<T: FloatElement>(s: &[T]) -> Result<&[f32]> {
    if T::DTYPE != crate::DType::F32 {
        return Err(KernelError::UnsupportedDtype {
            op: OP,
            dtype: T::DTYPE,
            backend: crate::BackendKind::Cpu,
        });
    }
    Ok(bytemuck::cast_slice(s))
}

fn f32_slice_mut<T: FloatElement>(s: &mut [T]) -> Result<&mut [f32]> {
    if T::DTYPE != crate::DType::F32 {
        return Err(KernelError::UnsupportedDtype {
            op: OP,
            dtype: T::DTYPE,
            backend: crate::BackendKind::Cpu,
        });
    }
    Ok(bytemuck::cast_slice_mut(s))
}

/// Row-major `C = op(A)·op(B)` is column-major `Cᵀ = op(B)ᵀ·op(A)ᵀ`: cuBLAS gets B first, with
/// the same transpose flags and the row-major leading dimensions.
#[cfg(feature = "cuda")]
fn cuda_gemm<T: FloatElement>(
    be: &crate::cuda::CudaBackend,
    a: &View<'_, T>,
    b: &View<'_, T>,
    c: &mut ViewMut<'_, T>,
    s: &GemmSpec,
) -> Result<()> {
    use crate::cuda::{addr, addr_mut, driver_err};
    use cudarc::cublas::{result as blas, sys};
    use std::ffi::c_void;
    let op = |t: Transpose| match t {
        Transpose::N => sys::cublasOperation_t::CUBLAS_OP_N,
        Transpose::T => sys::cublasOperation_t::CUBLAS_OP_T,
    };
    let (ap, bp, cp) = (addr(be, a), addr(be, b), addr_mut(be, c));
    let (m, n, k) = (s.m as i32, s.n as i32, s.k as i32);
    let (lda, ldb, ldc) = (s.lda() as i32, s.ldb() as i32, s.n as i32);
    let h = *be.blas()?.handle();
    let (alpha, beta) = (s.alpha, s.beta);
    let dt = match T::DTYPE {
        crate::DType::F32 => sys::cudaDataType_t::CUDA_R_32F,
        crate::DType::F16 => sys::cudaDataType_t::CUDA_R_16F,
        crate::DType::BF16 => sys::cudaDataType_t::CUDA_R_16BF,
        other => {
            return Err(KernelError::UnsupportedDtype {
                op: OP,
                dtype: other,
                backend: crate::BackendKind::Cuda,
            });
        }
    };
    // SAFETY: every pointer addresses a buffer on this device holding the extent validated in
    // `gemm` (batch-1)*stride + m*k / k*n / m*n elements; alpha/beta are f32 as
    // CUBLAS_COMPUTE_32F expects; the handle is bound to this backend's stream.
    let r = unsafe {
        if s.batch == 1 {
            blas::gemm_ex(
                h,
                op(s.trans_b),
                op(s.trans_a),
                n,
                m,
                k,
                &alpha as *const f32 as *const c_void,
                bp as *const c_void,
                dt,
                ldb,
                ap as *const c_void,
                dt,
                lda,
                &beta as *const f32 as *const c_void,
                cp as *mut c_void,
                dt,
                ldc,
                sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
            )
        } else {
            blas::gemm_strided_batched_ex(
                h,
                op(s.trans_b),
                op(s.trans_a),
                n,
                m,
                k,
                &alpha as *const f32 as *const c_void,
                bp as *const c_void,
                dt,
                ldb,
                s.stride_b as i64,
                ap as *const c_void,
                dt,
                lda,
                s.stride_a as i64,
                &beta as *const f32 as *const c_void,
                cp as *mut c_void,
                dt,
                ldc,
                s.stride_c as i64,
                s.batch as i32,
                sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
            )
        }
    };
    r.map_err(|e| driver_err("cublasGemmEx", e))
}
