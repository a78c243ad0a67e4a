//! Device handles: the CPU, a CUDA device (its own stream), a CUDA device on the caller's stream.

use std::ffi::c_void;

use treepo_kernels::Device;

use crate::error::{FfiError, TreepoStatus, ensure, guard};
use crate::handle::{self, out_ptr};

/// An opened device. Create with `treepo_device_cpu`, `treepo_device_cuda` or
/// `treepo_device_with_cuda_stream`; release with `treepo_device_free`.
pub struct TreepoDevice {
    pub(crate) dev: Device,
}

fn open(out: *mut *mut TreepoDevice, f: impl FnOnce() -> Result<Device, FfiError>) -> TreepoStatus {
    guard(|| {
        // SAFETY: `out` is either null (rejected) or, by the caller's contract, writable.
        let out = unsafe { out_ptr("out", out) }?;
        let dev = f()?;
        *out = handle::into_raw(TreepoDevice { dev });
        Ok(())
    })
}

/// Opens the CPU device (always available) into `*out`.
///
/// # Safety
/// `out` must be null or valid for writing one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn treepo_device_cpu(out: *mut *mut TreepoDevice) -> TreepoStatus {
    open(out, || Ok(Device::cpu()))
}

/// Opens CUDA device `ordinal` (its primary context; work runs on a stream the library owns)
/// into `*out`. `TREEPO_STATUS_BACKEND_UNAVAILABLE` when libcuda, NVRTC or the device is
/// missing.
///
/// # Safety
/// `out` must be null or valid for writing one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn treepo_device_cuda(
    ordinal: i32,
    out: *mut *mut TreepoDevice,
) -> TreepoStatus {
    open(out, || {
        ensure!(ordinal >= 0, "ordinal = {ordinal} is negative");
        Ok(Device::cuda(ordinal as usize)?)
    })
}

/// A CUDA device sharing `base`'s context and compiled kernels whose work is enqueued on the
/// caller's `stream` (a `CUstream`/`cudaStream_t` of `base`'s primary context; null = the
/// legacy default stream), into `*out`. Frees independently of `base`.
///
/// # Safety
/// `base` must be null or a live device handle, `out` null or writable; `stream` must belong
/// to `base`'s primary context and outlive the returned device and every decoder planned or
/// run on it.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn treepo_device_with_cuda_stream(
    base: *const TreepoDevice,
    stream: *mut c_void,
    out: *mut *mut TreepoDevice,
) -> TreepoStatus {
    open(out, || {
        // SAFETY: null is rejected; otherwise a live handle by the caller's contract.
        let base = unsafe { handle::get("base", base) }?;
        ensure!(
            base.dev.cuda_ordinal().is_some(),
            "`base` is a {} device: only a CUDA device takes a stream",
            base.dev.kind()
        );
        // SAFETY: the stream belongs to base's context and outlives the new device (contract).
        Ok(unsafe { base.dev.with_cuda_stream(stream) }?)
    })
}

/// Waits until all work enqueued on the device's stream has finished (a no-op on the CPU).
///
/// # Safety
/// `dev` must be null or a live device handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn treepo_device_synchronize(dev: *const TreepoDevice) -> TreepoStatus {
    guard(|| {
        // SAFETY: null is rejected; otherwise a live handle by the caller's contract.
        let dev = unsafe { handle::get("dev", dev) }?;
        Ok(dev.dev.synchronize()?)
    })
}

/// Releases a device handle (null: no-op). Decoders planned on it stay usable: they hold
/// their own reference to the device.
///
/// # Safety
/// `dev` must be null or a live handle from a `treepo_device_*` function, not used after.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn treepo_device_free(dev: *mut TreepoDevice) {
    // SAFETY: the caller's contract; `free` ignores null.
    let _ = guard(|| unsafe { handle::free(dev) });
}
