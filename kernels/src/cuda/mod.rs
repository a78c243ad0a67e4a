//! The CUDA backend: cudarc with run-time loading of libcuda, NVRTC and cuBLAS.
//!
//! Kernels are hand-written `kernels/cuda/*.cu`, embedded in the binary, compiled by NVRTC at
//! first use for the device's compute capability and cached on disk ([`compile`]). Every op
//! launches on the device's one stream — the context's default stream, or the caller's
//! ([`Device::with_cuda_stream`](crate::Device::with_cuda_stream)): handles on other streams
//! share the loaded modules. cudarc's multi-stream event tracking is disabled because ordering
//! is the stream's (our buffers are freed stream-ordered on the stream that made them).
//!
//! Kernels receive raw device addresses (`u64`) plus element offsets already applied, so the
//! same entry points serve our [`Buffer`](crate::Buffer)s and tensors owned by an embedding engine.

pub mod compile;
pub mod sources;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::cublas::CudaBlas;
use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtr, sys,
};
use cudarc::nvrtc::Ptx;

use crate::buffer::Store;
use crate::{BackendKind, Element, KernelError, Result, View, ViewMut};

/// One CUDA device on one stream, with its cuBLAS handle; the loaded modules are shared by
/// every handle on the device.
pub struct CudaBackend {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    /// Created at the first GEMM (a cuBLAS handle costs milliseconds; decode never needs one).
    blas: OnceLock<CudaBlas>,
    arch: String,
    name: String,
    loaded: Arc<Loaded>,
}

/// Modules and functions loaded into the context, shared by the handles on every stream.
#[derive(Default)]
struct Loaded {
    modules: Mutex<HashMap<&'static str, Arc<CudaModule>>>,
    functions: Mutex<HashMap<String, CudaFunction>>,
}

fn unavailable(reason: impl Into<String>) -> KernelError {
    KernelError::BackendUnavailable { backend: BackendKind::Cuda, reason: reason.into() }
}

pub(crate) fn driver_err(context: &str, e: impl std::fmt::Debug) -> KernelError {
    KernelError::Cuda { context: context.to_string(), msg: format!("{e:?}") }
}

impl CudaBackend {
    /// Opens device `ordinal`. Checks every library before touching cudarc's loaders, which
    /// panic when a library is missing.
    pub fn new(ordinal: usize) -> Result<Self> {
        // SAFETY: `is_culib_present` only attempts to dlopen candidate names.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err(unavailable(
                "libcuda (the NVIDIA driver library) was not found: no NVIDIA driver is installed",
            ));
        }
        let count = CudaContext::device_count()
            .map_err(|e| unavailable(format!("cuInit/cuDeviceGetCount failed: {e:?}")))?;
        if count <= 0 {
            return Err(unavailable("the NVIDIA driver reports no CUDA device"));
        }
        if ordinal >= count as usize {
            return Err(unavailable(format!("device {ordinal} requested but only {count} exist")));
        }
        compile::nvrtc_available()?;
        // SAFETY: as above, a dlopen probe.
        if !unsafe { cudarc::cublas::sys::is_culib_present() } {
            return Err(unavailable(
                "libcublas (CUDA 13) was not found: install the CUDA toolkit or the \
                 nvidia-cublas wheel and add its lib directory to LD_LIBRARY_PATH",
            ));
        }
        let ctx = CudaContext::new(ordinal).map_err(|e| driver_err("cuCtxCreate", e))?;
        // SAFETY: this backend uses exactly one stream, so no cross-stream synchronization
        // is needed; buffers are freed on that same stream (stream-ordered).
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.default_stream();
        let (major, minor) =
            ctx.compute_capability().map_err(|e| driver_err("compute capability", e))?;
        let name = ctx.name().unwrap_or_else(|_| "unknown GPU".into());
        Ok(CudaBackend {
            ctx,
            stream,
            blas: OnceLock::new(),
            arch: format!("sm_{major}{minor}"),
            name,
            loaded: Arc::default(),
        })
    }

    /// A handle on the same context and modules that launches on `cu_stream`.
    ///
    /// # Safety
    /// `cu_stream` is a valid stream (or null: the legacy default stream) that outlives the
    /// returned backend and everything launched through it.
    pub(crate) unsafe fn on_stream(&self, cu_stream: sys::CUstream) -> Result<CudaBackend> {
        if !cu_stream.is_null() {
            let mut owner: sys::CUcontext = std::ptr::null_mut();
            // SAFETY: the caller vouches for the stream; `owner` is a valid out-pointer.
            let rc = unsafe { sys::cuStreamGetCtx(cu_stream, &mut owner) };
            if rc != sys::CUresult::CUDA_SUCCESS {
                return Err(KernelError::Invalid {
                    op: "with_cuda_stream",
                    msg: format!("cuStreamGetCtx rejected the stream {cu_stream:?}: {rc:?}"),
                });
            }
            if owner != self.ctx.cu_ctx() {
                return Err(KernelError::Invalid {
                    op: "with_cuda_stream",
                    msg: format!(
                        "the stream belongs to context {owner:?}, not to device {}'s primary \
                         context {:?}",
                        self.ctx.ordinal(),
                        self.ctx.cu_ctx()
                    ),
                });
            }
        }
        // SAFETY: the stream is valid and outlives the wrapper (the caller's contract); it
        // belongs to this context (checked above, or the null stream which every context has).
        let stream = unsafe { self.ctx.wrap_borrowed_stream(cu_stream) };
        Ok(CudaBackend {
            ctx: self.ctx.clone(),
            stream,
            blas: OnceLock::new(),
            arch: self.arch.clone(),
            name: self.name.clone(),
            loaded: self.loaded.clone(),
        })
    }

    /// The device ordinal.
    pub fn ordinal(&self) -> usize {
        self.ctx.ordinal()
    }

    /// The raw stream every op launches on.
    pub fn cu_stream(&self) -> sys::CUstream {
        self.stream.cu_stream()
    }

    /// `[ptr, ptr + bytes)` lies inside one allocation the driver knows (the caller-owned
    /// memory check of [`Buffer::from_cuda_ptr`](crate::Buffer::from_cuda_ptr)).
    pub(crate) fn check_device_range(&self, ptr: u64, bytes: usize) -> Result<()> {
        self.ctx.bind_to_thread().map_err(|e| driver_err("cuCtxSetCurrent", e))?;
        let (mut base, mut size) = (0u64, 0usize);
        // SAFETY: a pure query with valid out-pointers; the context is current on this thread.
        let rc = unsafe { sys::cuMemGetAddressRange_v2(&mut base, &mut size, ptr) };
        if rc != sys::CUresult::CUDA_SUCCESS {
            return Err(KernelError::Invalid {
                op: "external memory",
                msg: format!(
                    "0x{ptr:x} is not device memory of cuda:{} ({rc:?}): a host pointer, freed \
                     memory, or another device's",
                    self.ctx.ordinal()
                ),
            });
        }
        if ptr + bytes as u64 > base + size as u64 {
            return Err(KernelError::Invalid {
                op: "external memory",
                msg: format!(
                    "{bytes} bytes at 0x{ptr:x} run past the end of their allocation \
                     (0x{base:x}, {size} bytes)"
                ),
            });
        }
        Ok(())
    }

    pub(crate) fn description(&self) -> String {
        format!("cuda:{} {} ({})", self.ctx.ordinal(), self.name, self.arch)
    }

    /// The device's architecture string, e.g. `sm_90`.
    pub fn arch(&self) -> &str {
        &self.arch
    }

    pub(crate) fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    pub(crate) fn blas(&self) -> Result<&CudaBlas> {
        if let Some(b) = self.blas.get() {
            return Ok(b);
        }
        let b = CudaBlas::new(self.stream.clone()).map_err(|e| driver_err("cublasCreate", e))?;
        Ok(self.blas.get_or_init(|| b))
    }

    pub(crate) fn upload<T: Element>(&self, data: &[T]) -> Result<CudaSlice<T>> {
        if data.is_empty() {
            // cudarc cannot allocate zero bytes; keep one element so pointers stay valid.
            return self.stream.alloc_zeros::<T>(1).map_err(|e| driver_err("alloc", e));
        }
        self.stream.clone_htod(data).map_err(|e| driver_err("memcpy host->device", e))
    }

    pub(crate) fn download<T: Element>(
        &self,
        s: &CudaSlice<T>,
        offset: usize,
        len: usize,
    ) -> Result<Vec<T>> {
        if len == 0 {
            return Ok(Vec::new());
        }
        let mut out = vec![T::zeroed(); len];
        self.stream
            .memcpy_dtoh(&s.slice(offset..offset + len), &mut out)
            .map_err(|e| driver_err("memcpy device->host", e))?;
        self.synchronize()?;
        Ok(out)
    }

    /// [`download`](Self::download) from caller-owned memory at `ptr`.
    pub(crate) fn download_raw<T: Element>(&self, ptr: u64, len: usize) -> Result<Vec<T>> {
        let mut out = vec![T::zeroed(); len];
        if len > 0 {
            self.ctx.bind_to_thread().map_err(|e| driver_err("cuCtxSetCurrent", e))?;
            // SAFETY: `ptr` holds `len` elements (checked when the buffer was wrapped, kept
            // valid by `from_cuda_ptr`'s contract); `out` is a host slice of that length; the
            // copy is waited for before `out` is returned.
            unsafe { cudarc::driver::result::memcpy_dtoh_async(&mut out, ptr, self.cu_stream()) }
                .map_err(|e| driver_err("memcpy device->host", e))?;
            self.synchronize()?;
        }
        Ok(out)
    }

    /// [`write`](Self::write) into caller-owned memory at `ptr`.
    pub(crate) fn write_raw<T: Element>(&self, ptr: u64, data: &[T]) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        self.ctx.bind_to_thread().map_err(|e| driver_err("cuCtxSetCurrent", e))?;
        // SAFETY: the destination holds `data.len()` elements (the view's range check); the
        // copy is waited for so `data` may be dropped by the caller right after.
        unsafe { cudarc::driver::result::memcpy_htod_async(ptr, data, self.cu_stream()) }
            .map_err(|e| driver_err("memcpy host->device", e))?;
        self.synchronize()
    }

    pub(crate) fn write<T: Element>(
        &self,
        s: &mut CudaSlice<T>,
        offset: usize,
        data: &[T],
    ) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let mut dst = s.slice_mut(offset..offset + data.len());
        self.stream.memcpy_htod(data, &mut dst).map_err(|e| driver_err("memcpy host->device", e))
    }

    pub(crate) fn synchronize(&self) -> Result<()> {
        self.stream.synchronize().map_err(|e| driver_err("stream synchronize", e))
    }

    /// The kernel `name` of module `stem`, compiling and loading the module on first use.
    pub(crate) fn function(&self, stem: &'static str, name: &str) -> Result<CudaFunction> {
        if let Some(f) = lock(&self.loaded.functions)?.get(name) {
            return Ok(f.clone());
        }
        let module = {
            let mut modules = lock(&self.loaded.modules)?;
            match modules.get(stem) {
                Some(m) => m.clone(),
                None => {
                    let src = sources::source(stem).ok_or_else(|| KernelError::Invalid {
                        op: "cuda",
                        msg: format!("no embedded source `{stem}.cu`"),
                    })?;
                    let cubin = compile::compile_cached(src, &self.arch)?;
                    let m = self
                        .ctx
                        .load_module(Ptx::from_binary(cubin))
                        .map_err(|e| driver_err(&format!("cuModuleLoadData({stem})"), e))?;
                    modules.insert(stem, m.clone());
                    m
                }
            }
        };
        let f = module
            .load_function(name)
            .map_err(|e| driver_err(&format!("cuModuleGetFunction({stem}::{name})"), e))?;
        lock(&self.loaded.functions)?.insert(name.to_string(), f.clone());
        Ok(f)
    }
}

fn lock<T>(m: &Mutex<T>) -> Result<std::sync::MutexGuard<'_, T>> {
    m.lock().map_err(|_| KernelError::Cuda {
        context: "module cache".into(),
        msg: "lock poisoned".into(),
    })
}

/// Device address of a view's first element.
pub(crate) fn addr<T: Element>(b: &CudaBackend, v: &View<'_, T>) -> u64 {
    match &v.buf.store {
        Store::Cuda(s) => {
            let (p, _sync) = s.device_ptr(&b.stream);
            p + (v.offset * std::mem::size_of::<T>()) as u64
        }
        Store::CudaExternal(p) => p + (v.offset * std::mem::size_of::<T>()) as u64,
        _ => unreachable!("backend mismatch is rejected at the validation boundary"),
    }
}

/// Device address of a mutable view's first element.
pub(crate) fn addr_mut<T: Element>(b: &CudaBackend, v: &mut ViewMut<'_, T>) -> u64 {
    let offset = v.offset;
    match &mut v.buf.store {
        Store::Cuda(s) => {
            let (p, _sync) = cudarc::driver::DevicePtrMut::device_ptr_mut(s, &b.stream);
            p + (offset * std::mem::size_of::<T>()) as u64
        }
        Store::CudaExternal(p) => *p + (offset * std::mem::size_of::<T>()) as u64,
        _ => unreachable!("backend mismatch is rejected at the validation boundary"),
    }
}

/// Grid size for `n` items in blocks of `block` threads, as a launch config.
pub(crate) fn grid_1d(n: usize, block: u32) -> cudarc::driver::LaunchConfig {
    let blocks = n.div_ceil(block as usize).max(1) as u32;
    cudarc::driver::LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (block, 1, 1),
        shared_mem_bytes: 0,
    }
}
