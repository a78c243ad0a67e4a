//! The public ops: each validates its arguments once, then dispatches to the device's backend.
//! One file per kernel stem; the CPU twin of each lives in [`crate::cpu`] under the same name.

mod adamw;
mod embedding_bwd;
mod fill;
mod gemm;
mod paged_kv_layout;
mod residual_add;
mod rmsnorm;
mod rmsnorm_bwd;
mod scale;
mod sum_squares;
mod swiglu_bwd;
mod target_logprob;
mod target_logprob_bwd;

pub use adamw::{AdamWParams, adamw};
pub use embedding_bwd::embedding_bwd;
pub use fill::fill;
pub use gemm::{GemmSpec, Transpose, gemm};
pub use paged_kv_layout::PagedKvLayout;
pub use residual_add::residual_add;
pub use rmsnorm::rmsnorm;
pub use rmsnorm_bwd::rmsnorm_bwd;
pub use scale::scale;
pub use sum_squares::sum_squares;
pub use swiglu_bwd::swiglu_bwd;
pub use target_logprob::{LogprobTargets, target_logprob};
pub use target_logprob_bwd::target_logprob_bwd;
