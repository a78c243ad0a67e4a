//! # treepo-kernels
//!
//! Device code for treepo-rs and the three backends that run it, behind one contract:
//!
//! | backend | built from | role |
//! |---|---|---|
//! | [`BackendKind::Cpu`] | plain Rust ([`cpu`]), the `gemm` crate, rayon | the oracle every test compares against; the default for tiny models |
//! | [`BackendKind::Cuda`] | hand-written `cuda/*.cu`, compiled at first use by NVRTC, cuBLAS for GEMMs | the fast path |
//! | [`BackendKind::Wgpu`] | hand-written `wgsl/*.wgsl` on wgpu | portable fallback (any Vulkan/Metal/DX12 GPU; lavapipe in CI) |
//!
//! **Key decision: drivers load at run time.** Both GPU backends are cargo features that are on
//! by default, yet `cargo build` needs neither a CUDA toolkit nor a GPU: cudarc `dlopen`s
//! libcuda/libnvrtc/libcublas when a CUDA device is asked for, and wgpu finds its adapters at
//! run time. A missing driver is an [`KernelError::BackendUnavailable`] that names what is
//! missing — never a panic (cudarc itself panics on a missing library, so presence is checked
//! first).
//!
//! **One validation boundary.** Every op in [`ops`] checks shapes, lengths, offsets, backends
//! and parameters once, in Rust, before any launch; kernels assume valid input. The same file
//! stem names an op everywhere: `cuda/rmsnorm.cu` ↔ `wgsl/rmsnorm.wgsl` ↔ [`cpu::rmsnorm`] ↔
//! `tests/rmsnorm.rs`.
//!
//! ```
//! use treepo_kernels::{Device, ops};
//! # fn main() -> treepo_kernels::Result<()> {
//! let dev = Device::cpu();
//! let x = dev.upload(&[1.0f32, 2.0, 3.0, 4.0])?;
//! let w = dev.upload(&[1.0f32, 1.0])?;
//! let mut y = dev.zeros::<f32>(4)?;
//! ops::rmsnorm(&dev, &x, &w, &mut y, None, 2, 2, 1e-6)?;
//! let y = dev.download(&y)?;
//! assert!((y[0] - 1.0 / (2.5f32).sqrt()).abs() < 1e-6);
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod buffer;
pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
mod device;
mod dtype;
mod error;
pub mod external;
mod indices;
pub mod ops;
pub mod testing;
mod validate;
#[cfg(feature = "wgpu")]
pub mod webgpu;

pub use buffer::{Buffer, View, ViewMut};
pub use device::{AdapterPolicy, BackendKind, Device};
pub use dtype::{DType, Element, FloatElement, bf16, f16};
pub use error::{KernelError, Result};
pub use external::{HostMut, HostRef};
pub use indices::Indices;
