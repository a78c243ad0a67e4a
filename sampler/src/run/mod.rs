//! The samplers: [`TreeSampler::sample`] (TreePO, docs/treepo.md §1.1) and
//! [`TreeSampler::sample_sequential`] (the baseline, §1.7), both driving an [`Engine`].
//!
//! The release and KV-exhaustion policies are documented on [`TreeSampler`].

mod io;
mod sequential;
mod state;
mod tree;

use thiserror::Error;

use crate::classify::TaskHooks;
use crate::config::TreeConfig;
use crate::config_check::{ConfigError, ConfigWarning};
use crate::engine::{Engine, EngineError};
use crate::tree::{RolloutTree, SamplingMode};

/// One query to sample: a stable id (it seeds the query's randomness, so the same id and seed
/// give the same tree in any batch) and its prompt tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Query<'a> {
    /// Stable id (e.g. the dataset index).
    pub id: u64,
    /// Prompt token ids.
    pub prompt: &'a [u32],
}

impl<'a> Query<'a> {
    /// A query.
    #[must_use]
    pub const fn new(id: u64, prompt: &'a [u32]) -> Self {
        Self { id, prompt }
    }

    /// Queries with ids `0..prompts.len()`.
    #[must_use]
    pub fn batch(prompts: &[&'a [u32]]) -> Vec<Self> {
        prompts.iter().enumerate().map(|(i, p)| Self::new(i as u64, p)).collect()
    }
}

/// The engine phase an error happened in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// `Engine::prefill`.
    Prefill,
    /// `Engine::fork`.
    Fork,
    /// `Engine::decode_segment`.
    Decode,
    /// `Engine::release`.
    Release,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Prefill => "prefill",
            Self::Fork => "fork",
            Self::Decode => "decode_segment",
            Self::Release => "release",
        })
    }
}

/// Why a sampling run failed.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum SampleError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The engine failed in a way the sampler cannot work around.
    #[error("engine error during {phase}: {source}")]
    Engine {
        /// Where.
        phase: Phase,
        /// The engine's error.
        #[source]
        source: EngineError,
    },
    /// The engine returned something its contract rules out (wrong counts or lengths).
    #[error("engine broke its contract during {phase}: {detail}")]
    Contract {
        /// Where.
        phase: Phase,
        /// What was wrong.
        detail: String,
    },
    /// Two queries share an id (their randomness would collide).
    #[error("duplicate query id {0}: ids seed the randomness and must be distinct")]
    DuplicateQueryId(u64),
}

/// The TreePO sampler (and the sequential baseline) over a validated config and task hooks.
///
/// **Release policy.** Every engine node of a query is released (children before parents) as
/// soon as the query is complete — not earlier, because fallback may re-open any finished path
/// until then. On a fatal error every node still held is released (best effort) before the error
/// is returned, so the engine's pool returns to empty either way.
///
/// **KV exhaustion** (the engine returns [`EngineError::KvExhausted`] or ends a request with
/// [`crate::SegmentEnd::KvExhausted`]): nothing panics and no leaf is ever dropped.
/// 1. *Pressure*: from an exhaustion until the next step in which some query completes and
///    releases its nodes, no query branches: every active path continues with one child
///    (`total = |A|`); the unused budget comes back through later branching or fallback.
/// 2. *Degraded forks*: a fork of `n > 1` that fails is retried with `n = 1`; if that fails the
///    path waits (it stays active) and the fork is retried next step.
/// 3. *Stalled segments*: a request that ran out mid-segment keeps its tokens and is resumed next
///    step (same node, same randomness, so the tokens are those an unconstrained run would draw).
/// 4. *Deadlock*: a step that decodes no token, forks nothing and releases nothing while some
///    query is unfinished picks one victim — the unfinished query with the most response tokens
///    (ties: lowest index) — finishes its open paths with [`crate::FinishReason::KvExhausted`] (a
///    path that owns no segment yet is dropped; a `KvExhausted` leaf's last segment may be empty),
///    marks it [`crate::QueryStatus::KvLimited`] (no more fallback; possibly fewer than `w` leaves)
///    and releases it. Every step therefore progresses or completes a query: sampling terminates.
///
/// A prefill failing with `KvExhausted` is returned as an error: sample fewer queries at once.
pub struct TreeSampler<H> {
    config: TreeConfig,
    hooks: H,
    warnings: Vec<ConfigWarning>,
}

impl<H: TaskHooks> TreeSampler<H> {
    /// Validates `config`; warnings are kept and returned with every [`RolloutTree`].
    pub fn new(config: TreeConfig, hooks: H) -> Result<Self, ConfigError> {
        let warnings = config.validate()?;
        Ok(Self { config, hooks, warnings })
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &TreeConfig {
        &self.config
    }

    /// Warnings from validation.
    #[must_use]
    pub fn warnings(&self) -> &[ConfigWarning] {
        &self.warnings
    }

    /// TreePO sampling: returns exactly `w` leaves per query (`by_response_traj`) unless the KV
    /// pool forces a query to end early ([`crate::QueryStatus::KvLimited`]) or fallback is off.
    pub fn sample<E: Engine + ?Sized>(
        &self,
        engine: &mut E,
        queries: &[Query<'_>],
    ) -> Result<RolloutTree, SampleError> {
        let (mode, drive) = (SamplingMode::Tree, tree::drive::<E>);
        state::run(&self.config, &self.hooks, &self.warnings, engine, queries, mode, drive)
    }

    /// The sequential baseline: `w` independent samples per query of up to `d·l` tokens, the
    /// prompt prefilled once and forked into `w`, decoded in chunks of `l` (one engine call per
    /// step) with the same stop rules; no branching, no fallback. Every chunk uses the sample's
    /// branch key, so a sample is one long draw sequence.
    pub fn sample_sequential<E: Engine + ?Sized>(
        &self,
        engine: &mut E,
        queries: &[Query<'_>],
    ) -> Result<RolloutTree, SampleError> {
        let (mode, drive) = (SamplingMode::Sequential, sequential::drive::<E>);
        state::run(&self.config, &self.hooks, &self.warnings, engine, queries, mode, drive)
    }
}
