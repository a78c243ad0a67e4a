//! Status codes, the typed error behind them, the thread-local last-error message, and the
//! guard every entry point runs its body in (panics caught, errors recorded).

use std::cell::RefCell;
use std::ffi::{CString, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};

use tree_attn::{DecodeError, PlanError};
use treepo_kernels::KernelError;

/// What every fallible `treepo_*` function returns. On anything but `TREEPO_STATUS_OK`,
/// `treepo_last_error()` describes what went wrong.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TreepoStatus {
    /// Success.
    Ok = 0,
    /// A required pointer argument was null.
    NullPointer = 1,
    /// An argument is out of range: a length, a count, an enum value, a stride, a layer,
    /// overlapping buffers, a pointer that is misaligned or outside its allocation.
    InvalidArgument = 2,
    /// The block tables do not describe a valid forest (CSR, page ids, `last_page_len`,
    /// `q_rows`) or the plan options are out of range.
    InvalidPlan = 3,
    /// `treepo_decoder_run` was called on a decoder without a successful plan.
    NotPlanned = 4,
    /// The dtype is not supported by this op on this device.
    UnsupportedDtype = 5,
    /// The requested backend cannot be used here (no driver, no device, not compiled in).
    BackendUnavailable = 6,
    /// The device failed (a CUDA driver, NVRTC or cuBLAS error).
    DeviceError = 7,
    /// A bug: the library panicked. The panic was caught; the message says where.
    Panic = 8,
}

/// The typed error of every entry point; its `Display` becomes the last-error message.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FfiError {
    /// A required pointer was null.
    #[error("`{0}` is null")]
    Null(&'static str),
    /// An argument is out of range.
    #[error("{0}")]
    Invalid(String),
    /// Run before plan.
    #[error("the decoder has no plan: call treepo_decoder_plan (successfully) before run")]
    NotPlanned,
    /// The tables or the plan options.
    #[error("invalid plan: {0}")]
    Plan(#[from] PlanError),
    /// A kernel or device error.
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// Caller memory that cannot be used as the named argument.
    #[error("`{name}`: {source}")]
    Memory {
        /// The argument.
        name: &'static str,
        /// Why (misaligned, not device memory of this device, a driver failure).
        source: KernelError,
    },
}

impl From<DecodeError> for FfiError {
    fn from(e: DecodeError) -> FfiError {
        match e {
            DecodeError::Plan(p) => FfiError::Plan(p),
            DecodeError::Kernel(k) => FfiError::Kernel(k),
            DecodeError::Invalid(msg) => FfiError::Invalid(msg),
        }
    }
}

impl FfiError {
    /// The status code of this error.
    pub(crate) fn status(&self) -> TreepoStatus {
        match self {
            FfiError::Null(_) => TreepoStatus::NullPointer,
            FfiError::Invalid(_) => TreepoStatus::InvalidArgument,
            FfiError::NotPlanned => TreepoStatus::NotPlanned,
            FfiError::Plan(_) => TreepoStatus::InvalidPlan,
            FfiError::Kernel(k) | FfiError::Memory { source: k, .. } => kernel_status(k),
        }
    }
}

fn kernel_status(k: &KernelError) -> TreepoStatus {
    match k {
        KernelError::Invalid { .. } | KernelError::WrongDevice { .. } => {
            TreepoStatus::InvalidArgument
        }
        KernelError::UnsupportedDtype { .. } => TreepoStatus::UnsupportedDtype,
        KernelError::BackendUnavailable { .. } => TreepoStatus::BackendUnavailable,
        _ => TreepoStatus::DeviceError,
    }
}

/// `Err(FfiError::Invalid(format!(...)))` unless `cond`.
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err($crate::error::FfiError::Invalid(format!($($fmt)+)));
        }
    };
}
pub(crate) use ensure;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(msg: String) {
    // A message never holds NUL in practice; replace it rather than lose the message.
    let msg = CString::new(msg.replace('\0', "\u{FFFD}")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = msg);
}

/// The current thread's last error message (`""` after a successful call). The pointer is
/// valid until the next `treepo_*` call on this thread.
pub(crate) fn last_error_ptr() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// Runs an entry point's body: clears the last error, catches panics, records the error.
pub(crate) fn guard(body: impl FnOnce() -> Result<(), FfiError>) -> TreepoStatus {
    set_last_error(String::new());
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => TreepoStatus::Ok,
        Ok(Err(e)) => {
            let status = e.status();
            set_last_error(e.to_string());
            status
        }
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic payload".to_string());
            set_last_error(format!("internal error (a bug in treepo, please report): {what}"));
            TreepoStatus::Panic
        }
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::CStr;

    use super::*;

    fn message() -> String {
        // SAFETY: last_error_ptr points at a live NUL-terminated string.
        unsafe { CStr::from_ptr(last_error_ptr()) }.to_string_lossy().into_owned()
    }

    #[test]
    fn a_panic_becomes_a_status_and_a_message() {
        let status = guard(|| panic!("boom at step {}", 3));
        assert_eq!(status, TreepoStatus::Panic);
        assert!(message().contains("boom at step 3"), "{}", message());
        assert_eq!(guard(|| Ok(())), TreepoStatus::Ok);
        assert_eq!(message(), "");
    }

    #[test]
    fn messages_are_per_thread() {
        assert_eq!(guard(|| Err(FfiError::Null("x"))), TreepoStatus::NullPointer);
        std::thread::spawn(|| assert_eq!(message(), "")).join().unwrap();
        assert_eq!(message(), "`x` is null");
    }
}
