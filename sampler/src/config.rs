//! Sampler configuration. Keys mirror TreePO's (`actor_rollout_ref.rollout.tree_*`), so a TreePO
//! config section can be pasted into TOML; TreePO's `-1` ("unset") is accepted for the optional
//! counts. Validation lives in [`crate::config_check`].

use std::collections::BTreeSet;

use serde::{Deserialize, Deserializer, Serialize};

use crate::logits::{EntropyMode, SamplingParams};

/// How a query's branching budget is split among its active paths (`tree_div_policy`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DivPolicy {
    /// Even split, `⌊total/|A|⌋` each, one extra to each of the last `total mod |A|` paths.
    #[default]
    FixedAvg,
    /// Sum of log-probs over the response; low-prob paths get more branches.
    LogprobWeightedDiv,
    /// Sum of log-probs over the response; high-prob paths get more branches.
    InverseLogprobWeightedDiv,
    /// Mean log-prob over the response; low-prob paths get more branches.
    NormLogprobWeightedDiv,
    /// Mean log-prob over the response; high-prob paths get more branches.
    NormInvLogprobWeightedDiv,
    /// Mean log-prob over the last segment; low-prob paths get more branches (the paper's §4.4).
    NodeLogprobWeightedDiv,
    /// Mean log-prob over the last segment; high-prob paths get more branches.
    InverseNodeLogprobWeightedDiv,
}

/// Where a re-opened path is cut (`tree_fallback_policy`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FallbackPolicy {
    /// Uniformly random window boundary (TreePO's released setting).
    #[default]
    Random,
    /// Always restart from the query; one candidate per fallback round.
    FromStart,
    /// Never re-open: a query may end with fewer than `w` leaves.
    NoFallback,
}

/// Which finished paths may be re-opened (`tree_fallback_traj_policy`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FallbackTrajPolicy {
    /// Leaves that finished with an answer or a stop token (`Finished`, `EarlyStoppedByEos`).
    #[default]
    SoftBoxedAndEos,
    /// Every leaf.
    RandomAll,
}

/// Whether the repetition check runs first or last (`tree_repetition_es_policy`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RepetitionPolicy {
    /// Repetition is checked before every other rule.
    MostPrioritized,
    /// Repetition is checked after every other rule (TreePO's effective default).
    #[default]
    LeastPrioritized,
}

/// What counts as a finished answer (`tree_boxed_eos_policy`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BoxedEosPolicy {
    /// An answer and a stop token in the same segment.
    #[default]
    BoxedAndEosFirst,
    /// An answer alone finishes the path.
    BoxedAsEos,
}

/// What the per-query budget counts (`tree_total_budget_policy`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TotalBudgetPolicy {
    /// Exactly `w` trajectories per query.
    #[default]
    ByResponseTraj,
    /// A token budget per query (`tree_max_response_token`); between `tree_min_width` and `w`
    /// trajectories (docs/treepo.md §1.8).
    ByResponseToken,
}

/// The sampler's configuration. Defaults are the paper's (14 × 512, b = 2, w = 16); a tiny model
/// wants segments of 4–16 tokens and depth 4–8.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TreeConfig {
    /// `d`: maximum segments per trajectory.
    pub tree_max_depth: usize,
    /// `l`: maximum new tokens per segment.
    pub tree_max_token_per_step: usize,
    /// `b`: children per active path per step, and the fixed initial fan-out.
    pub tree_fixed_step_div: usize,
    /// Lower bound of the random initial fan-out (default `b`).
    #[serde(deserialize_with = "opt_count", skip_serializing_if = "Option::is_none")]
    pub tree_random_first_div_min: Option<usize>,
    /// Upper bound `m` of the random initial fan-out; "More Init Divergence" is on when `m > b`
    /// (capped at `w`).
    #[serde(deserialize_with = "opt_count", skip_serializing_if = "Option::is_none")]
    pub tree_random_first_div_max: Option<usize>,
    /// `w`: trajectories (leaves) per query.
    pub tree_max_width: usize,
    /// Split policy for the branching budget.
    pub tree_div_policy: DivPolicy,
    /// Softmax temperature `T` of the log-prob split policies.
    pub tree_logprob_div_temperature: f64,
    /// Where re-opened paths are cut.
    pub tree_fallback_policy: FallbackPolicy,
    /// Which leaves may be re-opened.
    pub tree_fallback_traj_policy: FallbackTrajPolicy,
    /// Cut granularity in tokens (default `l`; anything else only with a warning).
    #[serde(deserialize_with = "opt_count", skip_serializing_if = "Option::is_none")]
    pub tree_fallback_window_size: Option<usize>,
    /// If set, cut only within the last this-many windows.
    #[serde(deserialize_with = "opt_count", skip_serializing_if = "Option::is_none")]
    pub tree_max_fallback_window: Option<usize>,
    /// Repetition check priority.
    pub tree_repetition_es_policy: RepetitionPolicy,
    /// What counts as a finished answer.
    pub tree_boxed_eos_policy: BoxedEosPolicy,
    /// What the per-query budget counts.
    pub tree_total_budget_policy: TotalBudgetPolicy,
    /// Per-query token budget (token-budget mode only).
    #[serde(deserialize_with = "opt_count", skip_serializing_if = "Option::is_none")]
    pub tree_max_response_token: Option<usize>,
    /// Minimum trajectories per query in token-budget mode (default 1).
    #[serde(deserialize_with = "opt_count", skip_serializing_if = "Option::is_none")]
    pub tree_min_width: Option<usize>,
    /// Maximum response length in tokens (default `d·l`); longer responses are truncated.
    #[serde(deserialize_with = "opt_count", skip_serializing_if = "Option::is_none")]
    pub max_response_length: Option<usize>,
    /// Stop token ids (a set: instruct models have several).
    pub stop_token_ids: BTreeSet<u32>,
    /// Sampling temperature (`0` = greedy).
    pub temperature: f32,
    /// Top-k (`0` or `-1` = off).
    #[serde(deserialize_with = "count_or_off")]
    pub top_k: usize,
    /// Top-p (`1` = off).
    pub top_p: f32,
    /// Whether the engine returns per-token entropies.
    pub tree_entropy: EntropyMode,
    /// Root seed of every draw (token draws and scheduler draws).
    pub seed: u64,
}

impl Default for TreeConfig {
    fn default() -> Self {
        Self {
            tree_max_depth: 14,
            tree_max_token_per_step: 512,
            tree_fixed_step_div: 2,
            tree_random_first_div_min: None,
            tree_random_first_div_max: None,
            tree_max_width: 16,
            tree_div_policy: DivPolicy::FixedAvg,
            tree_logprob_div_temperature: 2.0,
            tree_fallback_policy: FallbackPolicy::Random,
            tree_fallback_traj_policy: FallbackTrajPolicy::SoftBoxedAndEos,
            tree_fallback_window_size: None,
            tree_max_fallback_window: None,
            tree_repetition_es_policy: RepetitionPolicy::LeastPrioritized,
            tree_boxed_eos_policy: BoxedEosPolicy::BoxedAndEosFirst,
            tree_total_budget_policy: TotalBudgetPolicy::ByResponseTraj,
            tree_max_response_token: None,
            tree_min_width: None,
            max_response_length: None,
            stop_token_ids: BTreeSet::new(),
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            tree_entropy: EntropyMode::Skip,
            seed: 0,
        }
    }
}

impl TreeConfig {
    /// A config with the given shape (`d`, `l`, `b`, `w`) and defaults elsewhere.
    #[must_use]
    pub fn with_shape(depth: usize, segment: usize, branch: usize, width: usize) -> Self {
        Self {
            tree_max_depth: depth,
            tree_max_token_per_step: segment,
            tree_fixed_step_div: branch,
            tree_max_width: width,
            ..Self::default()
        }
    }

    /// `d`.
    #[must_use]
    pub fn depth(&self) -> usize {
        self.tree_max_depth
    }

    /// `l`.
    #[must_use]
    pub fn segment_len(&self) -> usize {
        self.tree_max_token_per_step
    }

    /// `b`.
    #[must_use]
    pub fn branch(&self) -> usize {
        self.tree_fixed_step_div
    }

    /// `w`.
    #[must_use]
    pub fn width(&self) -> usize {
        self.tree_max_width
    }

    /// The fallback window (default `l`).
    #[must_use]
    pub fn window(&self) -> usize {
        self.tree_fallback_window_size.unwrap_or(self.tree_max_token_per_step)
    }

    /// The maximum response length (default `d·l`).
    #[must_use]
    pub fn max_response(&self) -> usize {
        self.max_response_length
            .unwrap_or(self.tree_max_depth.saturating_mul(self.tree_max_token_per_step))
    }

    /// The sampling parameters handed to the engine.
    #[must_use]
    pub fn sampling(&self) -> SamplingParams {
        SamplingParams { temperature: self.temperature, top_k: self.top_k, top_p: self.top_p }
    }

    /// Parses a TOML document (unknown keys are errors). Validate with
    /// [`TreeConfig::validate`] (the samplers do it on construction).
    pub fn from_toml_str(text: &str) -> Result<Self, crate::ConfigError> {
        toml::from_str(text).map_err(|e| crate::ConfigError::Parse(e.to_string()))
    }

    /// Renders the config as TOML.
    pub fn to_toml_string(&self) -> Result<String, crate::ConfigError> {
        toml::to_string(self).map_err(|e| crate::ConfigError::Parse(e.to_string()))
    }
}

/// Deserialises an optional count where a negative number (TreePO's `-1`) means "unset".
fn opt_count<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    let v: Option<i64> = Option::deserialize(d)?;
    Ok(v.and_then(|x| usize::try_from(x).ok()))
}

/// Deserialises a count where a negative number means "off" (0).
fn count_or_off<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let v = i64::deserialize(d)?;
    Ok(usize::try_from(v).unwrap_or(0))
}
