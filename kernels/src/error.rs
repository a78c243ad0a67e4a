//! The one error type of the kernels crate.

use std::path::PathBuf;

use crate::{BackendKind, DType};

/// Everything a kernel call can report. Invalid input is caught at the validation boundary
/// (`ops::*`) before any launch; device failures carry the driver's own message.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// The requested backend cannot be used on this machine (no driver, no device, no adapter).
    #[error("the {backend} backend is unavailable: {reason}")]
    BackendUnavailable {
        /// Which backend was asked for.
        backend: BackendKind,
        /// What is missing, and what to install or set to fix it.
        reason: String,
    },
    /// A shape, stride, index or parameter is invalid. Nothing was launched.
    #[error("{op}: invalid argument: {msg}")]
    Invalid {
        /// The op (file stem) that rejected its input.
        op: &'static str,
        /// What was wrong.
        msg: String,
    },
    /// The op has no kernel for this dtype on this backend.
    #[error("{op}: dtype {dtype} is not supported on the {backend} backend")]
    UnsupportedDtype {
        /// The op (file stem).
        op: &'static str,
        /// The dtype that was passed.
        dtype: DType,
        /// The backend that lacks it.
        backend: BackendKind,
    },
    /// A buffer lives on another backend than the device the op was called on.
    #[error("{op}: buffer `{name}` lives on the {found} backend but the op runs on {expected}")]
    WrongDevice {
        /// The op (file stem).
        op: &'static str,
        /// The argument name.
        name: &'static str,
        /// Where the buffer lives.
        found: BackendKind,
        /// Where the op runs.
        expected: BackendKind,
    },
    /// A CUDA driver or cuBLAS call failed.
    #[error("CUDA error in {context}: {msg}")]
    Cuda {
        /// What we were doing.
        context: String,
        /// The driver's message.
        msg: String,
    },
    /// NVRTC rejected a kernel source; `log` is the compiler's output.
    #[error("NVRTC failed to compile {file} for {arch} (options {options:?}):\n{log}")]
    Compile {
        /// The `.cu` file stem.
        file: String,
        /// Target architecture, e.g. `sm_90`.
        arch: String,
        /// The options passed to NVRTC.
        options: Vec<String>,
        /// The compiler log.
        log: String,
    },
    /// A wgpu call failed (validation, out of memory, device lost, mapping).
    #[error("wgpu error in {context}: {msg}")]
    Wgpu {
        /// What we were doing.
        context: String,
        /// wgpu's message.
        msg: String,
    },
    /// Reading or writing the on-disk kernel cache failed.
    #[error("kernel cache I/O at {path}: {source}")]
    Cache {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Result alias of this crate.
pub type Result<T, E = KernelError> = std::result::Result<T, E>;

/// Returns `Err(KernelError::Invalid)` from the enclosing function unless `cond` holds.
#[macro_export]
#[doc(hidden)]
macro_rules! ensure {
    ($cond:expr, $op:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err($crate::KernelError::Invalid { op: $op, msg: format!($($fmt)+) });
        }
    };
}
