//! Backend selection and host <-> device transfers.

use std::fmt;
use std::str::FromStr;
#[cfg(any(feature = "cuda", feature = "wgpu"))]
use std::sync::Arc;

use crate::buffer::Store;
use crate::{Buffer, Element, KernelError, Result, View, ViewMut};

/// The three backends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BackendKind {
    /// Plain Rust on the host: the oracle every other backend is tested against.
    Cpu,
    /// NVIDIA GPUs through cudarc (driver, NVRTC, cuBLAS loaded at run time).
    Cuda,
    /// Any Vulkan/Metal/DX12 GPU through wgpu (also Mesa lavapipe on a CPU).
    Wgpu,
}

impl BackendKind {
    /// All backends, in test order.
    pub const ALL: [BackendKind; 3] = [BackendKind::Cpu, BackendKind::Wgpu, BackendKind::Cuda];

    /// Lower-case name (`cpu`, `cuda`, `wgpu`).
    pub const fn name(self) -> &'static str {
        match self {
            BackendKind::Cpu => "cpu",
            BackendKind::Cuda => "cuda",
            BackendKind::Wgpu => "wgpu",
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BackendKind {
    type Err = KernelError;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "cpu" => Ok(BackendKind::Cpu),
            "cuda" => Ok(BackendKind::Cuda),
            "wgpu" => Ok(BackendKind::Wgpu),
            other => Err(KernelError::Invalid {
                op: "device",
                msg: format!("unknown backend `{other}` (expected cpu, cuda or wgpu)"),
            }),
        }
    }
}

/// Which wgpu adapters [`Device::wgpu`] accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdapterPolicy {
    /// Only a real GPU (what [`Device::auto`] uses).
    HardwareOnly,
    /// A software rasterizer such as Mesa lavapipe is fine (tests, CI, explicit `--device wgpu`).
    AllowSoftware,
}

#[derive(Clone)]
pub(crate) enum Inner {
    Cpu,
    #[cfg(feature = "cuda")]
    Cuda(Arc<crate::cuda::CudaBackend>),
    #[cfg(feature = "wgpu")]
    Wgpu(Arc<crate::webgpu::WgpuBackend>),
}

/// A compute device: one backend, chosen once. Cheap to clone (shared handle).
#[derive(Clone)]
pub struct Device {
    pub(crate) inner: Inner,
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Device({})", self.description())
    }
}

impl Device {
    /// The CPU backend (always available).
    pub fn cpu() -> Device {
        Device { inner: Inner::Cpu }
    }

    /// The CUDA device `ordinal`. Errors (never panics) when libcuda, NVRTC, cuBLAS or a device
    /// is missing, naming what is missing.
    pub fn cuda(ordinal: usize) -> Result<Device> {
        #[cfg(feature = "cuda")]
        {
            let backend = crate::cuda::CudaBackend::new(ordinal)?;
            Ok(Device { inner: Inner::Cuda(Arc::new(backend)) })
        }
        #[cfg(not(feature = "cuda"))]
        {
            let _ = ordinal;
            Err(KernelError::BackendUnavailable {
                backend: BackendKind::Cuda,
                reason: "treepo-kernels was built without the `cuda` feature".into(),
            })
        }
    }

    /// A wgpu device on the first adapter `policy` accepts.
    pub fn wgpu(policy: AdapterPolicy) -> Result<Device> {
        #[cfg(feature = "wgpu")]
        {
            let backend = crate::webgpu::WgpuBackend::new(policy)?;
            Ok(Device { inner: Inner::Wgpu(Arc::new(backend)) })
        }
        #[cfg(not(feature = "wgpu"))]
        {
            let _ = policy;
            Err(KernelError::BackendUnavailable {
                backend: BackendKind::Wgpu,
                reason: "treepo-kernels was built without the `wgpu` feature".into(),
            })
        }
    }

    /// An explicit backend, as `--device cpu|cuda|wgpu` asks for it (wgpu accepts software
    /// adapters here: the user asked for it by name).
    pub fn new(kind: BackendKind) -> Result<Device> {
        match kind {
            BackendKind::Cpu => Ok(Device::cpu()),
            BackendKind::Cuda => Device::cuda(0),
            BackendKind::Wgpu => Device::wgpu(AdapterPolicy::AllowSoftware),
        }
    }

    /// CUDA if a driver and a device exist, else a hardware wgpu adapter, else the CPU. The
    /// returned strings say why each faster backend was passed over.
    pub fn auto() -> (Device, Vec<String>) {
        let mut passed_over = Vec::new();
        match Device::cuda(0) {
            Ok(d) => return (d, passed_over),
            Err(e) => passed_over.push(e.to_string()),
        }
        match Device::wgpu(AdapterPolicy::HardwareOnly) {
            Ok(d) => return (d, passed_over),
            Err(e) => passed_over.push(e.to_string()),
        }
        (Device::cpu(), passed_over)
    }

    /// Which backend this device runs.
    pub fn kind(&self) -> BackendKind {
        match &self.inner {
            Inner::Cpu => BackendKind::Cpu,
            #[cfg(feature = "cuda")]
            Inner::Cuda(_) => BackendKind::Cuda,
            #[cfg(feature = "wgpu")]
            Inner::Wgpu(_) => BackendKind::Wgpu,
        }
    }

    /// Human-readable name: backend and adapter/GPU.
    pub fn description(&self) -> String {
        match &self.inner {
            Inner::Cpu => format!("cpu ({} threads)", rayon::current_num_threads()),
            #[cfg(feature = "cuda")]
            Inner::Cuda(b) => b.description(),
            #[cfg(feature = "wgpu")]
            Inner::Wgpu(b) => b.description(),
        }
    }

    /// Whether this device can run 16-bit float kernels (always on CUDA; wgpu needs the
    /// adapter's `SHADER_F16`; the CPU reference is f32-only for compute).
    pub fn supports_f16(&self) -> bool {
        match &self.inner {
            Inner::Cpu => false,
            #[cfg(feature = "cuda")]
            Inner::Cuda(_) => true,
            #[cfg(feature = "wgpu")]
            Inner::Wgpu(b) => b.has_f16(),
        }
    }

    /// Copy host data into a new buffer.
    pub fn upload<T: Element>(&self, data: &[T]) -> Result<Buffer<T>> {
        let store = match &self.inner {
            Inner::Cpu => Store::Cpu(data.to_vec()),
            #[cfg(feature = "cuda")]
            Inner::Cuda(b) => Store::Cuda(b.upload(data)?),
            #[cfg(feature = "wgpu")]
            Inner::Wgpu(b) => Store::Wgpu(b.upload(bytemuck::cast_slice(data))?),
        };
        Ok(Buffer { len: data.len(), store, external: false })
    }

    /// A new buffer of `len` zeros.
    pub fn zeros<T: Element>(&self, len: usize) -> Result<Buffer<T>> {
        self.upload(&vec![T::zeroed(); len])
    }

    /// A new buffer of `len` copies of `value` (e.g. [`Element::POISON`] before a test run).
    pub fn full<T: Element>(&self, len: usize, value: T) -> Result<Buffer<T>> {
        self.upload(&vec![value; len])
    }

    /// Copy a view back to the host. Waits for all queued work.
    pub fn download<'a, T: Element>(&self, view: impl Into<View<'a, T>>) -> Result<Vec<T>> {
        let view = view.into();
        self.check_same("download", "view", view.backend())?;
        match (&self.inner, &view.buf.store) {
            (Inner::Cpu, Store::Cpu(_) | Store::Host(_)) => Ok(view.cpu().to_vec()),
            #[cfg(feature = "cuda")]
            (Inner::Cuda(b), Store::Cuda(s)) => b.download(s, view.offset, view.len),
            #[cfg(feature = "cuda")]
            (Inner::Cuda(b), Store::CudaExternal(p)) => {
                b.download_raw(p + (view.offset * T::DTYPE.size()) as u64, view.len)
            }
            #[cfg(feature = "wgpu")]
            (Inner::Wgpu(b), Store::Wgpu(s)) => {
                let bytes =
                    b.download(s, view.offset * T::DTYPE.size(), view.len * T::DTYPE.size())?;
                Ok(bytemuck::pod_collect_to_vec(&bytes))
            }
            #[allow(unreachable_patterns)]
            _ => unreachable!("check_same rejected a mismatched backend"),
        }
    }

    /// Overwrite a view with host data of the same length.
    pub fn write<'a, T: Element>(&self, dst: impl Into<ViewMut<'a, T>>, data: &[T]) -> Result<()> {
        let mut dst = dst.into();
        self.check_same("write", "dst", dst.backend())?;
        crate::ensure!(
            dst.len == data.len(),
            "write",
            "view holds {} elements but {} were given",
            dst.len,
            data.len()
        );
        let offset = dst.offset;
        match &self.inner {
            Inner::Cpu => {
                dst.cpu().copy_from_slice(data);
                Ok(())
            }
            #[cfg(feature = "cuda")]
            Inner::Cuda(b) => match &mut dst.buf.store {
                Store::Cuda(s) => b.write(s, offset, data),
                Store::CudaExternal(p) => b.write_raw(*p + (offset * T::DTYPE.size()) as u64, data),
                _ => unreachable!("check_same rejected a mismatched backend"),
            },
            #[cfg(feature = "wgpu")]
            Inner::Wgpu(b) => match &dst.buf.store {
                Store::Wgpu(s) => b.write(s, offset * T::DTYPE.size(), bytemuck::cast_slice(data)),
                _ => unreachable!("check_same rejected a mismatched backend"),
            },
        }
    }

    /// A CUDA device that launches every op on the caller's stream `stream` (a `CUstream`;
    /// null is the legacy default stream), sharing this device's context and compiled kernels:
    /// the form an engine with its own stream uses (PyTorch's `torch.cuda.current_stream()`).
    /// Errors on a non-CUDA device and on a stream of another context.
    ///
    /// # Safety
    /// `stream` must be a valid stream of this device's primary context that outlives the
    /// returned device, everything allocated through it (its buffers are freed on that stream,
    /// stream-ordered) and all work launched through it.
    pub unsafe fn with_cuda_stream(&self, stream: *mut std::ffi::c_void) -> Result<Device> {
        match &self.inner {
            #[cfg(feature = "cuda")]
            Inner::Cuda(b) => {
                // SAFETY: forwarded contract.
                let b = unsafe { b.on_stream(stream as cudarc::driver::sys::CUstream) }?;
                Ok(Device { inner: Inner::Cuda(Arc::new(b)) })
            }
            _ => {
                let _ = stream;
                Err(KernelError::WrongDevice {
                    op: "with_cuda_stream",
                    name: "device",
                    found: self.kind(),
                    expected: BackendKind::Cuda,
                })
            }
        }
    }

    /// The CUDA device ordinal (`None` on other backends).
    pub fn cuda_ordinal(&self) -> Option<usize> {
        match &self.inner {
            #[cfg(feature = "cuda")]
            Inner::Cuda(b) => Some(b.ordinal()),
            _ => None,
        }
    }

    /// A wgpu device over the caller's wgpu device and queue, so buffers the caller created on
    /// it can be wrapped with [`Buffer::from_wgpu`]. `info` names the adapter in messages.
    #[cfg(feature = "wgpu")]
    pub fn from_wgpu(device: wgpu::Device, queue: wgpu::Queue, info: wgpu::AdapterInfo) -> Device {
        let backend = crate::webgpu::WgpuBackend::from_parts(device, queue, info);
        Device { inner: Inner::Wgpu(Arc::new(backend)) }
    }

    /// This device's wgpu device and queue (shared handles), to create buffers for
    /// [`Buffer::from_wgpu`]; `None` on other backends.
    #[cfg(feature = "wgpu")]
    pub fn wgpu_handles(&self) -> Option<(wgpu::Device, wgpu::Queue)> {
        match &self.inner {
            Inner::Wgpu(b) => Some(b.handles()),
            _ => None,
        }
    }

    /// Wait until all queued work on this device has finished.
    pub fn synchronize(&self) -> Result<()> {
        match &self.inner {
            Inner::Cpu => Ok(()),
            #[cfg(feature = "cuda")]
            Inner::Cuda(b) => b.synchronize(),
            #[cfg(feature = "wgpu")]
            Inner::Wgpu(b) => b.synchronize(),
        }
    }

    /// The validation-boundary check that an argument lives on this device's backend.
    pub(crate) fn check_same(
        &self,
        op: &'static str,
        name: &'static str,
        found: BackendKind,
    ) -> Result<()> {
        if found != self.kind() {
            return Err(KernelError::WrongDevice { op, name, found, expected: self.kind() });
        }
        Ok(())
    }
}
