//! Caller-owned memory: run the ops on tensors this crate did not allocate.
//!
//! An engine keeps its own KV cache, activations and CUDA stream; it cannot copy them into our
//! [`Buffer`]s every step. The constructors here wrap such memory **without copying** as a
//! [`Buffer`] that owns nothing. Views, ops and the validation boundary treat it exactly like
//! our own memory, and dropping it frees nothing:
//!
//! | memory | constructor | lifetime enforced by |
//! |---|---|---|
//! | a host slice | [`Buffer::from_host`] / [`Buffer::from_host_mut`] | the borrow checker ([`HostRef`]/[`HostMut`]) |
//! | a host pointer (FFI) | `unsafe` [`Buffer::from_host_ptr`] | the caller (contract below) |
//! | a CUDA `CUdeviceptr` | `unsafe` [`Buffer::from_cuda_ptr`] | the caller; the range is checked against the driver's allocation |
//! | a `wgpu::Buffer` | [`Buffer::from_wgpu`] | wgpu's handle refcount |
//!
//! The caller's CUDA stream: [`Device::with_cuda_stream`] returns a device that launches every
//! op on that stream (sharing the compiled kernels), so our work is ordered with the engine's
//! without any synchronization.
//!
//! ```
//! use treepo_kernels::{Buffer, Device, ops};
//! # fn main() -> treepo_kernels::Result<()> {
//! let dev = Device::cpu();
//! let x = vec![1.0f32, 2.0, 3.0, 4.0]; // the caller's memory
//! let w = [1.0f32, 1.0];
//! let mut y = vec![f32::NAN; 4];
//! {
//!     let (x, w) = (Buffer::from_host(&x), Buffer::from_host(&w));
//!     let mut yb = Buffer::from_host_mut(&mut y);
//!     ops::rmsnorm(&dev, &*x, &*w, &mut *yb, None, 2, 2, 1e-6)?;
//! }
//! assert!((y[0] - 1.0 / 2.5f32.sqrt()).abs() < 1e-6); // written in place
//! # Ok(()) }
//! ```

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

use crate::buffer::Store;
use crate::{Buffer, Device, Element, KernelError, Result};

const OP: &str = "external memory";

/// A caller-owned host allocation: a pointer this crate reads and writes but never frees.
pub(crate) struct HostPtr<T> {
    ptr: NonNull<T>,
}

// SAFETY: a `HostPtr` is only reachable through its `Buffer`, and every access goes through
// `View` (shared) or `ViewMut` (exclusive) borrows of that buffer — the same discipline as the
// `Vec<T>` of an owned CPU buffer. `T: Element` is plain data (`Pod`, `Send`, `Sync`). The
// constructors' contracts make the memory valid for the buffer's whole life.
unsafe impl<T: Element> Send for HostPtr<T> {}
// SAFETY: as above: shared access only reads.
unsafe impl<T: Element> Sync for HostPtr<T> {}

impl<T: Element> HostPtr<T> {
    /// `[offset, offset + len)`; in bounds by the views' range checks.
    pub(crate) fn slice(&self, offset: usize, len: usize) -> &[T] {
        // SAFETY: the constructor's contract makes `ptr` valid for reads of the buffer's `len`
        // elements while the buffer lives; views never leave `[0, len)`; `&self` borrows the
        // buffer, so the slice cannot outlive it.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(offset), len) }
    }

    /// `[offset, offset + len)`, writable; in bounds by the views' range checks.
    pub(crate) fn slice_mut(&mut self, offset: usize, len: usize) -> &mut [T] {
        // SAFETY: as `slice`, plus: `&mut self` comes from a `ViewMut`, the buffer's only
        // access path while it lives, and a read-only wrapper ([`HostRef`]) never hands one out.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().add(offset), len) }
    }
}

/// Caller host memory borrowed read-only as a CPU [`Buffer`] (derefs to it). Made by
/// [`Buffer::from_host`].
pub struct HostRef<'a, T: Element> {
    buf: Buffer<T>,
    _borrow: PhantomData<&'a [T]>,
}

impl<T: Element> Deref for HostRef<'_, T> {
    type Target = Buffer<T>;
    fn deref(&self) -> &Buffer<T> {
        &self.buf
    }
}

/// Caller host memory borrowed writable as a CPU [`Buffer`] (derefs mutably to it). Made by
/// [`Buffer::from_host_mut`].
pub struct HostMut<'a, T: Element> {
    buf: Buffer<T>,
    _borrow: PhantomData<&'a mut [T]>,
}

impl<T: Element> Deref for HostMut<'_, T> {
    type Target = Buffer<T>;
    fn deref(&self) -> &Buffer<T> {
        &self.buf
    }
}

impl<T: Element> DerefMut for HostMut<'_, T> {
    fn deref_mut(&mut self) -> &mut Buffer<T> {
        &mut self.buf
    }
}

fn host_buffer<T: Element>(ptr: NonNull<T>, len: usize) -> Buffer<T> {
    Buffer { len, store: Store::Host(HostPtr { ptr }), external: true }
}

/// A dangling, aligned pointer for an empty slice (never dereferenced: `len` is 0).
fn nonnull<T>(data: &[T]) -> NonNull<T> {
    NonNull::new(data.as_ptr().cast_mut()).unwrap_or(NonNull::dangling())
}

fn invalid(msg: String) -> KernelError {
    KernelError::Invalid { op: OP, msg }
}

impl<T: Element> Buffer<T> {
    /// Wraps the caller's host slice, read-only, as a CPU buffer (no copy). Ops may take it
    /// (or views of it) as inputs; the borrow checker keeps `data` alive and unmodified.
    pub fn from_host(data: &[T]) -> HostRef<'_, T> {
        HostRef { buf: host_buffer(nonnull(data), data.len()), _borrow: PhantomData }
    }

    /// Wraps the caller's host slice, writable, as a CPU buffer (no copy): ops write their
    /// outputs straight into `data`.
    pub fn from_host_mut(data: &mut [T]) -> HostMut<'_, T> {
        HostMut { buf: host_buffer(nonnull(data), data.len()), _borrow: PhantomData }
    }

    /// Wraps `len` elements of host memory at `ptr` as a CPU buffer (no copy) — the form for
    /// FFI callers (Python, C) whose memory carries no Rust lifetime. Errors on a null or
    /// misaligned pointer and on a byte size that overflows `isize`.
    ///
    /// # Safety
    /// While the returned buffer (or any view of it) exists: `ptr` must be valid for reads of
    /// `len` elements — and for writes, if the buffer is used as an op's output — and no one
    /// else may write that memory (nor read it while an op writes it).
    pub unsafe fn from_host_ptr(ptr: *mut T, len: usize) -> Result<Buffer<T>> {
        let ptr = check_ptr::<T>(ptr as usize, len)?;
        let ptr = NonNull::new(ptr as *mut T).ok_or_else(|| invalid("null host pointer".into()))?;
        Ok(host_buffer(ptr, len))
    }

    /// Wraps `len` elements of CUDA device memory at `ptr` (a `CUdeviceptr`) as a buffer of
    /// `dev`, a CUDA device (no copy). Checks that the pointer is non-null and aligned and
    /// that the driver knows one allocation holding all `len` elements (`cuMemGetAddressRange`)
    /// — so a host pointer, a freed block or a range past the end is an error, not a fault.
    ///
    /// # Safety
    /// The memory must belong to `dev`'s context (the device's primary context: the one the
    /// CUDA runtime, PyTorch and JAX use) and stay allocated while the buffer or any view of
    /// it exists; no one else may write it while an op reads it, nor touch it while an op
    /// writes it, unless ordered on the stream the op runs on ([`Device::with_cuda_stream`]).
    pub unsafe fn from_cuda_ptr(dev: &Device, ptr: u64, len: usize) -> Result<Buffer<T>> {
        #[cfg(feature = "cuda")]
        if let crate::device::Inner::Cuda(b) = &dev.inner {
            check_ptr::<T>(ptr as usize, len)?;
            b.check_device_range(ptr, len * T::DTYPE.size())?;
            return Ok(Buffer { len, store: Store::CudaExternal(ptr), external: true });
        }
        let _ = (ptr, len);
        Err(KernelError::WrongDevice {
            op: OP,
            name: "device",
            found: dev.kind(),
            expected: crate::BackendKind::Cuda,
        })
    }

    /// Wraps the caller's `wgpu::Buffer` (created on `dev`'s wgpu device — see
    /// [`Device::from_wgpu`](crate::Device::from_wgpu)) as `len` elements (no copy). It needs
    /// `STORAGE` usage (and `COPY_SRC`/`COPY_DST` for [`Device::download`]/[`Device::write`])
    /// and at least `len` elements of size.
    #[cfg(feature = "wgpu")]
    pub fn from_wgpu(dev: &Device, buffer: ::wgpu::Buffer, len: usize) -> Result<Buffer<T>> {
        dev.check_same(OP, "device", crate::BackendKind::Wgpu)?;
        let bytes = (len as u64).checked_mul(T::DTYPE.size() as u64);
        if bytes.is_none_or(|b| b > buffer.size()) {
            return Err(invalid(format!(
                "the wgpu buffer holds {} bytes, fewer than {len} elements of {}",
                buffer.size(),
                T::DTYPE
            )));
        }
        if !buffer.usage().contains(::wgpu::BufferUsages::STORAGE) {
            return Err(invalid(format!(
                "the wgpu buffer's usage {:?} lacks STORAGE, which every kernel binding needs",
                buffer.usage()
            )));
        }
        Ok(Buffer { len, store: Store::Wgpu(buffer), external: true })
    }
}

/// Non-null, aligned for `T`, and `len` elements fit `isize` bytes; returns `ptr` back.
fn check_ptr<T: Element>(ptr: usize, len: usize) -> Result<usize> {
    if ptr == 0 {
        return Err(invalid("null pointer".into()));
    }
    let align = std::mem::align_of::<T>();
    if !ptr.is_multiple_of(align) {
        return Err(invalid(format!(
            "pointer 0x{ptr:x} is not aligned to {align} bytes, as {} elements need",
            T::DTYPE
        )));
    }
    let bytes = len.checked_mul(T::DTYPE.size()).filter(|&b| b <= isize::MAX as usize);
    if bytes.is_none_or(|b| ptr.checked_add(b).is_none()) {
        return Err(invalid(format!("{len} elements of {} at 0x{ptr:x} overflow", T::DTYPE)));
    }
    Ok(ptr)
}
