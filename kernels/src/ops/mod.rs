//! The public ops: each validates its arguments once, then dispatches to the device's backend.
//! One file per kernel stem; the CPU twin of each lives in [`crate::cpu`] under the same name.

mod embedding;
mod gemm;
mod residual_add;
mod rmsnorm;
mod rope;
mod softmax;
mod swiglu;

pub use embedding::embedding;
pub use gemm::{GemmSpec, Transpose, gemm};
pub use residual_add::residual_add;
pub use rmsnorm::rmsnorm;
pub use rope::{ROPE_MAX_POSITION, RopeDirection, RopeScaling, RopeShape, rope, rope_inv_freq};
pub use softmax::{log_softmax, softmax};
pub use swiglu::swiglu;
