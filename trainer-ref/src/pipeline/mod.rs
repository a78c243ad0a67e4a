//! The TreePO pipeline over any sampling engine: supervised warm-up steps, one RL iteration (sample →
//! score → advantages → clipped updates over mini-batches) and evaluation (avg@k, pass@k, maj@k).
//!
//! Algorithms differ only in how rollouts are sampled and which advantage estimator reads them
//! ([`Algo`]); the training layout (whole trees packed, or every leaf alone) is an efficiency
//! choice that gives the same gradient.
//!
//! Edge-level estimators (TreeGRPO, TreeRL, SPO-tree) train each edge once with its own
//! advantage ([`edge_parts`] says how, and what the loss aggregation means for edges).

use std::ops::Range;
use std::time::Instant;

mod eval;
mod parts;

pub use eval::{EvalReport, Example, evaluate, examples, sft_steps};
use parts::leaf_parts;
pub use parts::{EdgePart, edge_parts};

use serde::{Deserialize, Serialize};
use treepo_sampler::{Engine, Query, RolloutTree, TaskHooks, TreeConfig, TreeSampler};

use crate::model::{Model, Tokenizer};
use crate::rl::{
    AdvantageConfig, AdvantageEstimator, AdvantageLevel, OverlongPenalty, PolicyLossConfig,
    keep_query,
};
use crate::rollout::Rollouts;
use crate::tasks::{Problem, Task};
use crate::train::{TrainError, Trainer};

/// Samples rollouts of `problems` from the current weights of `model` in the given mode (with
/// the given sampler settings). The caller owns the engine: an engine that borrows the model is
/// built inside, so the update that follows can mutate the weights.
pub type SampleFn<'a> = dyn FnMut(&Model, &TreeConfig, SamplingMode, &[Problem]) -> Result<RolloutTree, TrainError>
    + 'a;

/// How rollouts are sampled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SamplingMode {
    /// TreePO's segment tree.
    Tree,
    /// `w` independent samples per query (prefill shared).
    Sequential,
}

/// The algorithms of the paper's comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Algo {
    /// Tree sampling and TreePO's subgroup advantages.
    Treepo,
    /// Sequential sampling and GRPO's group-normalized advantages.
    Grpo,
    /// Tree sampling with GRPO's advantages ("GRPO w/ TreePO sampling").
    GrpoTree,
    /// Sequential sampling, Dr.GRPO.
    DrGrpo,
    /// Sequential sampling, RLOO.
    Rloo,
    /// Sequential sampling, REINFORCE++ baseline.
    ReinforcePp,
    /// Tree sampling and TreeGRPO's edge-level advantage backup (`treegrpo`).
    #[serde(rename = "treegrpo")]
    TreeGrpo,
    /// Tree sampling and TreeRL's edge-level advantages (`treerl`).
    #[serde(rename = "treerl")]
    TreeRl,
    /// Tree sampling and SPO-tree's edge-level advantages (`spo-tree`).
    SpoTree,
}

impl Algo {
    /// Its sampling mode and advantage estimator.
    pub fn parts(self) -> (SamplingMode, AdvantageEstimator) {
        match self {
            Algo::Treepo => (SamplingMode::Tree, AdvantageEstimator::Treepo),
            Algo::Grpo => (SamplingMode::Sequential, AdvantageEstimator::Grpo),
            Algo::GrpoTree => (SamplingMode::Tree, AdvantageEstimator::Grpo),
            Algo::DrGrpo => (SamplingMode::Sequential, AdvantageEstimator::DrGrpo),
            Algo::Rloo => (SamplingMode::Sequential, AdvantageEstimator::Rloo),
            Algo::ReinforcePp => (SamplingMode::Sequential, AdvantageEstimator::ReinforcePp),
            Algo::TreeGrpo => (SamplingMode::Tree, AdvantageEstimator::TreeGrpo),
            Algo::TreeRl => (SamplingMode::Tree, AdvantageEstimator::TreeRl),
            Algo::SpoTree => (SamplingMode::Tree, AdvantageEstimator::SpoTree),
        }
    }

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Algo::Treepo => "treepo",
            Algo::Grpo => "grpo",
            Algo::GrpoTree => "grpo-tree",
            Algo::DrGrpo => "dr-grpo",
            Algo::Rloo => "rloo",
            Algo::ReinforcePp => "reinforce-pp",
            Algo::TreeGrpo => "treegrpo",
            Algo::TreeRl => "treerl",
            Algo::SpoTree => "spo-tree",
        }
    }

    /// Every algorithm, in declaration order.
    pub const ALL: [Algo; 9] = [
        Algo::Treepo,
        Algo::Grpo,
        Algo::GrpoTree,
        Algo::DrGrpo,
        Algo::Rloo,
        Algo::ReinforcePp,
        Algo::TreeGrpo,
        Algo::TreeRl,
        Algo::SpoTree,
    ];
}

/// One RL iteration's settings.
#[derive(Clone, Debug)]
pub struct RlSettings {
    /// Sampling mode.
    pub sampling: SamplingMode,
    /// Advantage estimator and its options.
    pub advantage: AdvantageConfig,
    /// The clipped loss.
    pub loss: PolicyLossConfig,
    /// Sampler shape (w, l, d, b, ...), stop ids, temperature.
    pub sampler: TreeConfig,
    /// Optimizer steps per rollout batch (queries split evenly).
    pub mini_batches: usize,
    /// Pack whole trees for the update (shared prefixes once) instead of one leaf at a time.
    pub packed: bool,
    /// Drop queries whose leaves all have the same accuracy (DAPO), regenerating up to this
    /// many extra rounds to fill the batch; `None` keeps every query.
    pub dynamic_sampling: Option<usize>,
    /// DAPO's overlong penalty.
    pub overlong: Option<OverlongPenalty>,
}

/// What one RL iteration did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RlStats {
    /// Mean task reward over sampled leaves.
    pub reward: f64,
    /// Mean accuracy over sampled leaves.
    pub acc: f64,
    /// Queries kept for the update.
    pub queries_kept: usize,
    /// Queries sampled (all rounds).
    pub queries_sampled: usize,
    /// Leaves of the kept queries (leaf-level algorithms train on each of them).
    pub leaves: usize,
    /// Mean response length of sampled leaves.
    pub response_len: f64,
    /// Tokens the engine decoded (all rounds).
    pub tokens_decoded: usize,
    /// Tokens of the training batches (compare with `leaf_tokens`: packing's saving).
    pub train_tokens: usize,
    /// Leaf tokens of the kept queries (what per-leaf training would process).
    pub leaf_tokens: usize,
    /// Tokens the loss has a term for: leaf tokens (a shared token once per leaf through it),
    /// or for edge-level algorithms the tokens of the trained edges (each once).
    pub trained_tokens: usize,
    /// Edges trained (edge-level algorithms; 0 otherwise).
    pub trained_edges: usize,
    /// Mean of the advantages: over leaves, or for edge-level algorithms over trained edges
    /// (one value per edge, not weighted by its tokens).
    pub adv_mean: f64,
    /// Standard deviation of the advantages, over the same leaves or trained edges.
    pub adv_std: f64,
    /// Fraction of trained tokens (`trained_tokens`) clipped (low + high + dual).
    pub clip_frac: f64,
    /// Approximate KL(old ‖ new) over trained tokens.
    pub ppo_kl: f64,
    /// Mean entropy over trained tokens.
    pub entropy: f64,
    /// Mean policy loss of the mini-batches.
    pub pg_loss: f64,
    /// Mean gradient norm of the optimizer steps.
    pub grad_norm: f64,
    /// Seconds spent sampling.
    pub time_sample: f64,
    /// Seconds spent on the update (old log-probs included).
    pub time_update: f64,
    /// Whether an update happened (false when dynamic sampling kept nothing, or an edge-level
    /// algorithm found no edge to train).
    pub updated: bool,
}

/// Samples `problems` with `mode` on `engine` (the building block of a [`SampleFn`]); the
/// queries' ids (which seed their randomness) are their positions in `problems`.
pub fn sample<E: Engine + ?Sized, H: TaskHooks>(
    engine: &mut E,
    sampler: &TreeSampler<H>,
    mode: SamplingMode,
    tok: &Tokenizer,
    problems: &[Problem],
) -> Result<RolloutTree, TrainError> {
    sample_ids(engine, sampler, mode, tok, problems, 0)
}

/// [`sample`] with query ids `first_id, first_id + 1, ...`: a slice of a batch sampled with its
/// offset in the batch as `first_id` draws the same randomness as the whole batch did for it.
pub fn sample_ids<E: Engine + ?Sized, H: TaskHooks>(
    engine: &mut E,
    sampler: &TreeSampler<H>,
    mode: SamplingMode,
    tok: &Tokenizer,
    problems: &[Problem],
    first_id: u64,
) -> Result<RolloutTree, TrainError> {
    let prompts: Vec<Vec<u32>> =
        problems.iter().map(|p| tok.encode(&p.prompt)).collect::<Result<_, _>>()?;
    let queries: Vec<Query<'_>> =
        prompts.iter().enumerate().map(|(i, p)| Query::new(first_id + i as u64, p)).collect();
    let tree = match mode {
        SamplingMode::Tree => sampler.sample(engine, &queries),
        SamplingMode::Sequential => sampler.sample_sequential(engine, &queries),
    };
    tree.map_err(|e| TrainError::Batch(format!("sampling failed: {e}")))
}

/// One RL iteration: sample (through `sample_fn`) `next_problems()` batches until enough queries survive dynamic
/// sampling, compute advantages, recompute old log-probs with the trainer's own forward, then
/// one clipped update per mini-batch. Leaf-level estimators train every leaf with its advantage;
/// edge-level ones every edge with an advantage once ([`edge_parts`]). An edge-level estimator
/// with [`SamplingMode::Sequential`] is a [`TrainError::Config`], returned before sampling.
#[allow(clippy::too_many_arguments)]
pub fn rl_iteration(
    trainer: &mut Trainer,
    sample_fn: &mut SampleFn<'_>,
    task: &dyn Task,
    tok: &Tokenizer,
    settings: &RlSettings,
    mut next_problems: impl FnMut() -> Result<Vec<Problem>, TrainError>,
) -> Result<RlStats, TrainError> {
    let estimator = settings.advantage.estimator;
    if estimator.level() == AdvantageLevel::PerEdge && settings.sampling == SamplingMode::Sequential
    {
        return Err(TrainError::Config(format!(
            "the edge-level estimator `{}` needs tree sampling: sequential sampling stores each \
             trajectory as a chain of l-token segments, so its per-edge credit would follow that \
             bookkeeping, not any branching (SPO-tree would train only the first segment); use \
             SamplingMode::Tree, or a leaf-level estimator (grpo, rloo, ...) with sequential \
             sampling",
            estimator.name()
        )));
    }
    let mut stats = RlStats::default();
    let t0 = Instant::now();
    let mut kept: Option<Rollouts> = None;
    let mut rounds_left = settings.dynamic_sampling.unwrap_or(0) + 1;
    let mut target = 0usize;
    let (mut reward_sum, mut acc_sum, mut len_sum, mut n_leaves) = (0f64, 0f64, 0f64, 0usize);
    while rounds_left > 0 {
        rounds_left -= 1;
        let problems = next_problems()?;
        if target == 0 {
            target = problems.len();
        }
        // Each dynamic-sampling round draws fresh randomness.
        let mut round_cfg = settings.sampler.clone();
        round_cfg.seed =
            settings.sampler.seed.wrapping_add(rounds_left as u64 * 0x9e37_79b9_7f4a_7c15);
        let tree = sample_fn(&trainer.model, &round_cfg, settings.sampling, &problems)?;
        stats.tokens_decoded += tree.cost().tokens_decoded;
        stats.queries_sampled += problems.len();
        let mut r = Rollouts::collect(&tree, &problems, task, tok, settings.overlong.as_ref())?;
        for l in &r.leaves {
            reward_sum += l.score.reward;
            acc_sum += l.score.acc();
            len_sum += l.response.len() as f64;
            n_leaves += 1;
        }
        if settings.dynamic_sampling.is_some() {
            let accs: Vec<Vec<f64>> = (0..r.trees.len())
                .map(|q| r.leaves.iter().filter(|l| l.query == q).map(|l| l.score.acc()).collect())
                .collect();
            let keep: Vec<bool> = accs.iter().map(|a| keep_query(a).unwrap_or(false)).collect();
            r.retain_queries(|q| keep[q]);
        }
        kept = Some(match kept.take() {
            None => r,
            Some(mut acc) => {
                let base = acc.trees.len();
                acc.trees.extend(r.trees);
                acc.leaves.extend(r.leaves.into_iter().map(|mut l| {
                    l.query += base;
                    l
                }));
                acc
            }
        });
        if kept.as_ref().is_some_and(|k| k.trees.len() >= target) {
            break;
        }
    }
    let n = n_leaves.max(1) as f64;
    (stats.reward, stats.acc, stats.response_len) = (reward_sum / n, acc_sum / n, len_sum / n);
    stats.time_sample = t0.elapsed().as_secs_f64();
    let Some(mut rollouts) = kept.filter(|k| !k.trees.is_empty()) else {
        return Ok(stats);
    };
    if rollouts.trees.len() > target {
        rollouts.retain_queries(|q| q < target);
    }
    let t1 = Instant::now();
    stats.queries_kept = rollouts.trees.len();
    stats.leaves = rollouts.leaves.len();
    stats.leaf_tokens = rollouts.leaves.iter().map(|l| l.response.len()).sum();
    // Mini-batches of whole queries; old log-probs for all of them before any update.
    let n_queries = rollouts.trees.len();
    let mb = settings.mini_batches.clamp(1, n_queries);
    let per = n_queries.div_ceil(mb);
    let chunks: Vec<Range<usize>> = (0..mb)
        .map(|c| c * per..((c + 1) * per).min(n_queries))
        .filter(|qs| !qs.is_empty())
        .collect();
    let temperature = settings.sampler.temperature;
    let (parts, adv) = match settings.advantage.estimator.level() {
        AdvantageLevel::PerLeaf => leaf_parts(trainer, &rollouts, &chunks, settings)?,
        AdvantageLevel::PerEdge => {
            let eps = edge_parts(
                trainer,
                &rollouts,
                &chunks,
                &settings.advantage,
                settings.packed,
                temperature,
            )?;
            let adv: Vec<f64> = eps
                .iter()
                .flat_map(|p| p.advantages.iter().filter_map(|a| a.first().copied()))
                .collect();
            stats.trained_edges = adv.len();
            (eps.into_iter().map(|p| (p.batch, p.advantages, p.logp_old)).collect(), adv)
        }
    };
    let m = adv.iter().sum::<f64>() / adv.len().max(1) as f64;
    stats.adv_mean = m;
    stats.adv_std =
        (adv.iter().map(|a| (a - m).powi(2)).sum::<f64>() / adv.len().max(1) as f64).sqrt();
    if parts.is_empty() {
        stats.time_update = t1.elapsed().as_secs_f64();
        return Ok(stats);
    }
    let mut loss_stats = crate::rl::LossStats::default();
    let (mut ent, mut gn) = (0f64, 0f64);
    for (batch, advantages, old) in &parts {
        stats.train_tokens += batch.len();
        stats.trained_tokens += batch.leaf_tokens();
        let r = trainer.rl_step(batch, advantages, old, &settings.loss, temperature)?;
        loss_stats.merge(&r.stats);
        ent += r.entropy * batch.leaf_tokens() as f64;
        gn += r.step.grad_norm;
    }
    let (lo, hi, dual) = loss_stats.clip_fractions();
    stats.clip_frac = lo + hi + dual;
    stats.ppo_kl = loss_stats.ppo_kl();
    stats.pg_loss = loss_stats.pg_loss / parts.len() as f64;
    stats.entropy = ent / stats.trained_tokens.max(1) as f64;
    stats.grad_norm = gn / parts.len() as f64;
    stats.time_update = t1.elapsed().as_secs_f64();
    stats.updated = true;
    Ok(stats)
}
