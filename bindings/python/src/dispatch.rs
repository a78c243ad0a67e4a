//! Small helpers shared by the op bindings: dtype dispatch and host arrays handed to Python.

use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// Calls `$f::<T>($args)` with `T` the Rust type of the float `DType` `$d`.
macro_rules! with_float {
    ($d:expr, $f:ident ( $($args:expr),* $(,)? )) => {
        match $d {
            treepo_kernels::DType::F32 => $f::<f32>($($args),*),
            treepo_kernels::DType::F16 => $f::<treepo_kernels::f16>($($args),*),
            treepo_kernels::DType::BF16 => $f::<treepo_kernels::bf16>($($args),*),
            other => $crate::errors::type_err!("unsupported float dtype {other}"),
        }
    };
}
pub(crate) use with_float;

/// An `i32` array as native-endian bytes (the Python layer views them with numpy).
pub fn i32_bytes<'py>(py: Python<'py>, v: &[i32]) -> Bound<'py, PyBytes> {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_ne_bytes()).collect();
    PyBytes::new(py, &bytes)
}

/// A `u32` array as native-endian `i64` bytes (indices torch can gather with).
pub fn u32_as_i64_bytes<'py>(py: Python<'py>, v: &[u32]) -> Bound<'py, PyBytes> {
    let bytes: Vec<u8> = v.iter().flat_map(|&x| i64::from(x).to_ne_bytes()).collect();
    PyBytes::new(py, &bytes)
}

/// An `f32` array as native-endian bytes.
pub fn f32_bytes<'py>(py: Python<'py>, v: &[f32]) -> Bound<'py, PyBytes> {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_ne_bytes()).collect();
    PyBytes::new(py, &bytes)
}
