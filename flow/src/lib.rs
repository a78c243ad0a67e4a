//! # treepo-flow
//!
//! TreeGRPO (arXiv 2512.08153) at small scale: a rectified-flow generator of 12×12 procedural
//! shape images, conditioned on the shape class, trained from scratch on the `treepo-kernels`
//! ops; two rewards nobody tunes to (a held-out classifier and an analytic score); tree rollouts
//! whose window steps branch by an SDE while the other steps are deterministic ODE steps; and the
//! flat DanceGRPO/Flow-GRPO baseline sharing the sampler, the loss and the trainer.
//!
//! The method, its vocabulary (`k`, `w`, `s`, `τ`) and the measured results are in
//! `docs/flow.md`.
#![deny(missing_docs)]

pub mod advantage;
pub mod config;
pub mod data;
mod error;
pub mod grid;
pub mod net;
mod net_io;
pub mod optim;
pub mod reward;
pub mod rollout;
pub mod sde;
pub mod system;
mod tensor_io;
pub mod train;

pub use error::{FlowError, Result};
