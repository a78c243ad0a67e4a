//! The [`Engine`](treepo_sampler::Engine) the TreePO sampler drives, on the reference model:
//! [`ModelEngine`] = tree-kv (host bookkeeping: pages, forks, prefix index) + one paged KV
//! buffer for all layers + tree-attn decode attention, on every backend the model runs on.
//!
//! ## Key decisions
//!
//! - **Every node keeps a pending hidden state**: the final-norm output `[C]` of its last token.
//!   The next token's logits are `hidden · lm_headᵀ`, so prefill stores the last prompt row's
//!   hidden, a fork copies the parent's to each child (plus tree-kv's tail-page copies on the
//!   device), and a decode step first *samples* every active leaf from its hidden in one GEMM +
//!   one `sample` launch, then *feeds* every sampled token (K/V append + one row per leaf
//!   through all layers) so the invariant holds again. A finished leaf is fed its stop token
//!   too: it costs one row and keeps any node forkable (fallback re-opens finished paths).
//! - **One plan per forward, reused by every layer**: tree-kv exports the active leaves' page
//!   tables, tree-attn plans the work list (each shared node's KV read once for all leaves below
//!   it, [`tree_attn::PlanKind::Tree`] by default) and uploads it once. Prefill uses the same
//!   path with `q_rows` = the prompt rows (causal among themselves), so the engine has exactly
//!   one attention code path.
//! - **Randomness is the sampler's**: the `i`-th token of a request uses `req.uniform(i)`, so a
//!   branch's tokens do not depend on the batch it was decoded in.
//! - **KV exhaustion is decided before sampling**: a row that would open a page the pool cannot
//!   give ends with `SegmentEnd::KvExhausted` (earlier requests get pages first), so every
//!   returned token is appended; other rows go on. Prefill and fork are atomic and fail with
//!   `EngineError::KvExhausted { requested, free }` (free + evictable pages).
//! - **Errors are values**: bad handles are `InvalidNode` (`Unknown`, `Released`, `Frozen`),
//!   bad input `InvalidRequest`; a device failure is `Backend` and leaves the engine failed
//!   (every later call but `release` says so), since the KV contents are then unspecified.
//! - The engine borrows the [`Model`](crate::model::Model): cached KV is only valid for the
//!   weights it was computed with, so a training step (which needs `&mut Model`) ends the
//!   engine's life — and with it the prefix cache — by construction.
//!
//! ```
//! use treepo_kernels::Device;
//! use treepo_sampler::{DecodeParams, Engine, EntropyMode, SamplingParams, SegmentRequest, BranchKey};
//! use treepo_trainer::engine::{EngineConfig, ModelEngine};
//! use treepo_trainer::model::{Model, ModelConfig};
//!
//! let dev = Device::cpu();
//! let mut cfg = ModelConfig::tiny(32);
//! cfg.num_hidden_layers = 2;
//! let model = Model::random(&dev, cfg, 0)?;
//! let mut engine = ModelEngine::new(&model, EngineConfig::with_pages(64))?;
//! let root = engine.prefill(&[&[1, 2, 3, 4, 5]])?[0];
//! let kids = engine.fork(root, 2)?;
//! let key = BranchKey::root(0, 0);
//! let reqs: Vec<SegmentRequest> = kids
//!     .iter()
//!     .enumerate()
//!     .map(|(i, &node)| SegmentRequest { node, key: key.child(i as u32), response_offset: 0, max_tokens: 8 })
//!     .collect();
//! let params = DecodeParams {
//!     stop: [0].into(),
//!     sampling: SamplingParams::default(),
//!     entropy: EntropyMode::Skip,
//! };
//! let out = engine.decode_segment(&reqs, &params)?;
//! assert!(out.iter().all(|o| !o.tokens.is_empty() && o.tokens.len() <= 8));
//! for node in kids.into_iter().chain([root]) {
//!     engine.release(node)?;
//! }
//! assert_eq!(engine.kv_pages_in_use(), 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod config;
mod decode;
mod error;
mod forward;
mod model_engine;
mod nodes;
mod op_times;
mod prefill;
mod sample;
mod step;
mod weights;
mod workspace;

pub use config::{EngineConfig, EngineStats};
pub use model_engine::ModelEngine;
pub use op_times::{Op, OpTimes};
