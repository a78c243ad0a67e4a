//! The CUDA backend: cudarc with run-time loading of libcuda, NVRTC and cuBLAS.
//!
//! Kernels are hand-written `kernels/cuda/*.cu`, embedded in the binary, compiled by NVRTC at
//! first use for the device's compute capability and cached on disk ([`compile`]). Every op
//! launches on one stream per device; cudarc's multi-stream event tracking is disabled because
//! nothing here uses a second stream.
//!
//! Kernels receive raw device addresses (`u64`) plus element offsets already applied, so the
//! same entry points serve our [`Buffer`](crate::Buffer)s and tensors owned by an embedding engine.

pub mod compile;
pub mod sources;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cudarc::cublas::CudaBlas;
use cudarc::driver::{CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtr};
use cudarc::nvrtc::Ptx;

use crate::buffer::Store;
use crate::{BackendKind, Element, KernelError, Result, View, ViewMut};

/// One CUDA device with its stream, cuBLAS handle and loaded modules.
pub struct CudaBackend {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    blas: CudaBlas,
    arch: String,
    name: String,
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
        let blas = CudaBlas::new(stream.clone()).map_err(|e| driver_err("cublasCreate", e))?;
        let (major, minor) =
            ctx.compute_capability().map_err(|e| driver_err("compute capability", e))?;
        let name = ctx.name().unwrap_or_else(|_| "unknown GPU".into());
        Ok(CudaBackend {
            ctx,
            stream,
            blas,
            arch: format!("sm_{major}{minor}"),
            name,
            modules: Mutex::new(HashMap::new()),
            functions: Mutex::new(HashMap::new()),
        })
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

    pub(crate) fn blas(&self) -> &CudaBlas {
        &self.blas
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
        if let Some(f) = lock(&self.functions)?.get(name) {
            return Ok(f.clone());
        }
        let module = {
            let mut modules = lock(&self.modules)?;
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
        lock(&self.functions)?.insert(name.to_string(), f.clone());
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
