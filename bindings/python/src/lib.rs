//! `treepo._treepo`: the Rust half of the `treepo` Python package. Each file registers its own
//! classes and functions through one `register(m)` function; the Python package
//! (`python/treepo/`) wraps them with stream handling, output allocation and autograd.

mod advantages;
mod cache;
mod decode;
mod devices;
mod dispatch;
mod errors;
mod kv_layout;
mod merge;
mod packed;
mod run_worker;
mod sampler;
mod tensor;

use pyo3::prelude::*;

/// The native module. Its contents are private: import them from `treepo`.
#[pymodule]
fn _treepo(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    advantages::register(m)?;
    cache::register(m)?;
    decode::register(m)?;
    merge::register(m)?;
    packed::register(m)?;
    run_worker::register(m)?;
    sampler::register(m)?;
    Ok(())
}
