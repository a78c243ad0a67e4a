//! Caller-owned memory as non-owning kernel buffers: host pointers on the CPU device,
//! `CUdeviceptr`s on a CUDA device.

use std::ffi::c_void;

use treepo_kernels::{BackendKind, Buffer, Device, Element};

use crate::error::{FfiError, ensure};

/// One caller array: its name (for messages), address, element count and element size.
#[derive(Clone, Copy)]
pub(crate) struct Region {
    pub name: &'static str,
    pub addr: usize,
    pub len: usize,
    pub elem: usize,
}

impl Region {
    /// Checks `ptr` is non-null and `len * elem` bytes fit the address space.
    pub(crate) fn new(
        name: &'static str,
        ptr: *const c_void,
        len: usize,
        elem: usize,
    ) -> Result<Region, FfiError> {
        if ptr.is_null() {
            return Err(FfiError::Null(name));
        }
        let addr = ptr as usize;
        let end = len.checked_mul(elem).and_then(|b| b.checked_add(addr));
        ensure!(
            end.is_some(),
            "`{name}`: {len} elements of {elem} bytes overflow the address space"
        );
        Ok(Region { name, addr, len, elem })
    }

    fn end(&self) -> usize {
        self.addr + self.len * self.elem
    }

    /// Error if the two byte ranges overlap (an output must not alias an input: the kernels
    /// read inputs while writing outputs).
    pub(crate) fn disjoint(&self, other: &Region) -> Result<(), FfiError> {
        let overlap =
            self.len > 0 && other.len > 0 && self.addr < other.end() && other.addr < self.end();
        ensure!(
            !overlap,
            "`{}` overlaps `{}`: outputs must not alias other arguments",
            self.name,
            other.name
        );
        Ok(())
    }

    /// Exactly `need` elements expected.
    pub(crate) fn expect_len(&self, need: usize, what: &str) -> Result<(), FfiError> {
        ensure!(
            self.len == need,
            "`{}_len` = {} but {what} needs {need} elements",
            self.name,
            self.len
        );
        Ok(())
    }
}

/// A non-owning buffer of `T` over the caller's memory `r` on `dev`.
///
/// # Safety
/// `r` must describe memory valid for reads (and for writes, if the buffer is used as an
/// output) of `r.len` elements of `T` - host memory on the CPU device, device memory of
/// `dev`'s CUDA context on a CUDA device - not accessed by anyone else while the buffer and
/// the work launched on it are alive.
pub(crate) unsafe fn wrap<T: Element>(dev: &Device, r: &Region) -> Result<Buffer<T>, FfiError> {
    debug_assert_eq!(r.elem, size_of::<T>());
    let named = |source| FfiError::Memory { name: r.name, source };
    match dev.kind() {
        BackendKind::Cpu => {
            // SAFETY: forwarded from this function's contract (host memory on the CPU device).
            unsafe { Buffer::from_host_ptr(r.addr as *mut T, r.len) }.map_err(named)
        }
        BackendKind::Cuda => {
            // SAFETY: forwarded from this function's contract (device memory of dev's context).
            unsafe { Buffer::from_cuda_ptr(dev, r.addr as u64, r.len) }.map_err(named)
        }
        BackendKind::Wgpu => Err(FfiError::Invalid(
            "the C API takes CPU and CUDA memory only, not wgpu buffers".into(),
        )),
    }
}

/// A host array of the C caller as a slice; `name` for messages.
///
/// # Safety
/// `ptr` must be valid for reads of `len` elements of `T` for the returned lifetime.
pub(crate) unsafe fn host_slice<'a, T>(
    name: &'static str,
    ptr: *const T,
    len: usize,
) -> Result<&'a [T], FfiError> {
    if ptr.is_null() {
        return Err(FfiError::Null(name));
    }
    ensure!(ptr.is_aligned(), "`{name}` = {ptr:p} is not aligned to {} bytes", align_of::<T>());
    ensure!(
        len.checked_mul(size_of::<T>()).is_some_and(|b| b <= isize::MAX as usize),
        "`{name}`: {len} elements is too many"
    );
    // SAFETY: non-null, aligned, size within isize::MAX (checked above); valid for reads of
    // `len` elements by this function's contract.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}
