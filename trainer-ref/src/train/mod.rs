//! Training: batches of trajectories ([`TrainBatch`]), the optimizer ([`AdamW`]) and the SFT and
//! RL steps ([`Trainer`]).
//!
//! **Key decision: one loss path for every layout.** A batch is a packed token sequence with a
//! tree mask and a list of *targets* (response tokens with the row that predicts them). Whether
//! the trajectories were packed as whole trees (shared prefixes once) or one by one, the loss is
//! computed over targets with the tree-packed form of the clipped surrogate
//! ([`crate::rl::packed_loss`]), which equals the per-leaf loss exactly; its per-target
//! `dL/dlogπ` feeds the log-prob backward, then the model's backward.

mod batch;
mod optim;
mod step;

pub use batch::{EdgeRef, TrainBatch, TreeNodeSpec, TreeSpec};
pub use optim::{AdamW, LrSchedule, OptimConfig, StepReport};
pub use step::{Logprobs, RlReport, SftReport, Trainer};

/// Errors of a training step. Nothing is updated when one is returned.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A configuration value is invalid.
    #[error("config: {0}")]
    Config(String),
    /// The batch is malformed.
    #[error("batch: {0}")]
    Batch(String),
    /// A loss or gradient is NaN or infinite; the step was stopped before the weights changed.
    #[error("{what} is not finite: the step was stopped before the optimizer touched the weights")]
    NonFinite {
        /// What was not finite (names the tensor for gradients).
        what: String,
    },
    /// The model failed.
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    /// A kernel failed.
    #[error(transparent)]
    Kernel(#[from] treepo_kernels::KernelError),
    /// The RL math rejected its input.
    #[error(transparent)]
    Rl(#[from] crate::rl::RlError),
}
