//! The public ops: each validates its arguments once, then dispatches to the device's backend.
//! One file per kernel stem; the CPU twin of each lives in [`crate::cpu`] under the same name.
//!
//! | stem | ops |
//! |---|---|
//! | `gemm` | [`gemm`] |
//! | `embedding` | [`embedding`] |
//! | `rmsnorm` | [`rmsnorm`] |
//! | `rope` | [`rope`], host helper [`rope_inv_freq`] |
//! | `swiglu` | [`swiglu`] |
//! | `residual_add` | [`residual_add`] |
//! | `softmax` | [`softmax`], [`log_softmax`] |
//! | `logit_mask` | [`top_k_mask`], [`top_p_mask`] |
//! | `categorical` | [`categorical`] |
//! | `gather_logprob` | [`gather_logprob`] |
//! | `sample` | [`sample`] (composes the five above; no kernel of its own) |

mod categorical;
mod embedding;
mod gather_logprob;
mod gemm;
mod logit_mask;
mod residual_add;
mod rmsnorm;
mod rope;
mod sample;
mod softmax;
mod swiglu;

pub use categorical::categorical;
pub use embedding::embedding;
pub use gather_logprob::gather_logprob;
pub use gemm::{GemmSpec, Transpose, gemm};
pub use logit_mask::{LOGIT_MASK_MAX_COLS, top_k_mask, top_p_mask};
pub use residual_add::residual_add;
pub use rmsnorm::rmsnorm;
pub use rope::{ROPE_MAX_POSITION, RopeDirection, RopeScaling, RopeShape, rope, rope_inv_freq};
pub use sample::{SampleParams, sample};
pub use softmax::{log_softmax, softmax};
pub use swiglu::swiglu;
