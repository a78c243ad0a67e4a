//! One error type for the bindings and its mapping to Python exceptions: bad values and shapes
//! raise `ValueError`, a wrong dtype or argument type `TypeError`, a device or driver failure
//! `RuntimeError` — always with the Rust message. Panics are caught at the boundary
//! ([`guarded`]) and become `RuntimeError` too: the interpreter never aborts.

use std::panic::{AssertUnwindSafe, catch_unwind};

use pyo3::PyErr;
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use tree_attn::PlanError;
use tree_attn::packed::PackError;
use tree_kv::KvError;
use treepo_kernels::KernelError;

/// Everything a binding call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A kernel rejected its input or the device failed.
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// The decode planner rejected the page tables.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The tree decoder failed (plan, kernel or usage).
    #[error(transparent)]
    Decode(#[from] tree_attn::DecodeError),
    /// The tree KV cache refused an operation.
    #[error(transparent)]
    Kv(#[from] KvError),
    /// A forest could not be packed.
    #[error(transparent)]
    Pack(#[from] PackError),
    /// A bad value or shape found by the bindings themselves.
    #[error("{0}")]
    Value(String),
    /// A wrong dtype or argument type found by the bindings themselves.
    #[error("{0}")]
    Type(String),
    /// A failure that is not the caller's input (device, internal state).
    #[error("{0}")]
    Runtime(String),
}

/// `Err(Error::Value(..))` with a formatted message.
macro_rules! value_err {
    ($($fmt:tt)+) => { Err($crate::errors::Error::Value(format!($($fmt)+))) };
}
pub(crate) use value_err;

/// `Err(Error::Type(..))` with a formatted message.
macro_rules! type_err {
    ($($fmt:tt)+) => { Err($crate::errors::Error::Type(format!($($fmt)+))) };
}
pub(crate) use type_err;

/// Result alias of the bindings.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn kernel_to_py(e: &KernelError) -> PyErr {
    let msg = e.to_string();
    match e {
        KernelError::Invalid { .. } | KernelError::WrongDevice { .. } => PyValueError::new_err(msg),
        KernelError::UnsupportedDtype { .. } => PyTypeError::new_err(msg),
        _ => PyRuntimeError::new_err(msg),
    }
}

impl From<Error> for PyErr {
    fn from(e: Error) -> PyErr {
        let msg = e.to_string();
        match &e {
            Error::Kernel(k) => kernel_to_py(k),
            Error::Decode(d) => match d {
                tree_attn::DecodeError::Kernel(k) => kernel_to_py(k),
                _ => PyValueError::new_err(msg),
            },
            Error::Kv(KvError::OutOfHostMemory { .. }) => PyRuntimeError::new_err(msg),
            Error::Plan(_) | Error::Kv(_) | Error::Pack(_) | Error::Value(_) => {
                PyValueError::new_err(msg)
            }
            Error::Type(_) => PyTypeError::new_err(msg),
            Error::Runtime(_) => PyRuntimeError::new_err(msg),
        }
    }
}

/// Runs `f`, turning a panic into `Error::Runtime` (a Python `RuntimeError`) instead of
/// unwinding into the interpreter.
pub fn guarded<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic payload".into());
            Err(Error::Runtime(format!("internal error (a Rust panic, please report it): {what}")))
        }
    }
}
