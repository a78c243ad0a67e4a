//! # treepo-trainer
//!
//! The reference trainer of treepo-rs. This crate holds the reference decoder ([`model`]), the
//! sampling engine the TreePO sampler drives on it ([`engine`]: tree-kv pages + tree-attn decode
//! on every backend), its pure-math RL core ([`rl`]), training ([`train`]: batches, backward,
//! AdamW), rollout trees as training batches ([`rollout`]), the RL loop ([`pipeline`]), runs ([`run`]: configs, checkpoints, metrics, plots),
//! evaluation metrics ([`metrics`]), the verifiable tasks ([`tasks`]) and the parts of an RL step
//! that run in separate processes ([`distributed`]); the `treepo` binary builds on them.
//!
//! ## Key decisions
//!
//! - **Advantages are pure functions of the rollout tree and its rewards.** The sampler's tree is
//!   turned into a [`rl::RolloutTopology`] (or plain [`rl::LeafRecord`]s); every estimator —
//!   TreePO, GRPO, Dr.GRPO, RLOO, REINFORCE++, TreeGRPO, TreeRL, SPO-tree — reads only that, so
//!   the worked examples of docs/treepo.md are unit tests.
//! - **The loss returns `dL/dlogπ` per token.** The model's backward is the ordinary
//!   softmax-cross-entropy backward, `dlogits = (p − onehot)·dloss_t`, with the per-token weight
//!   `dloss_t = −dL/dlogπ_t` (and `1/T` under a sampling temperature). SFT is the special case
//!   `dL/dlogπ_t = −1/N` (token-mean of `−logπ`), so one kernel serves SFT and every RL loss.
//! - **Aggregation weights are fixed per mini-batch before any backward** (token-mean,
//!   seq-mean-token-mean, seq-mean-token-sum-norm), so micro-batching is exact.
//! - **Tree-packed training is exact**: a token shared by `K` leaves has one ratio `ρ`, and the
//!   per-leaf clipped losses through it collapse to weighted sums of positive and negative
//!   advantages (see [`rl::packed`]); tests check packed == per-leaf on random trees.
//!
//! ## Example
//!
//! TreePO advantages of a query with two first-level branches, one of which branches again:
//!
//! ```
//! use treepo_trainer::rl::{AdvantageConfig, Advantages, RolloutTopology, compute_advantages};
//!
//! // node 0 = query root; 1 and 2 its children; 3 and 4 under 2. Leaves: 1, 3, 4.
//! let parents = [None, Some(0), Some(0), Some(2), Some(2)];
//! let rewards = [None, Some(1.0), None, Some(-1.0), Some(1.0)];
//! let topo = RolloutTopology::from_parents(&parents, &rewards)?;
//! let Advantages::PerLeaf { leaves, values } = compute_advantages(&AdvantageConfig::default(), &topo)?
//! else { unreachable!("TreePO is leaf-level") };
//! assert_eq!(leaves, vec![1, 3, 4]);
//! assert!(values[0] > 0.0 && values[1] < 0.0 && values[2] > 0.0);
//! # Ok::<(), treepo_trainer::rl::RlError>(())
//! ```

#![deny(missing_docs)]

pub mod distributed;
pub mod engine;
pub mod metrics;
pub mod model;
pub mod pipeline;
pub use treepo_rl as rl;
pub mod rollout;
pub mod run;
pub mod tasks;
pub mod train;
