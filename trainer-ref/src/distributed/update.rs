//! The RL update split across `world` data-parallel ranks (docs/distributed.md, "The update").
//!
//! Every rank holds the whole step's rollouts and computes the advantages over all of them
//! (TreePO's whitening is batch-wide, so shard-local advantages would be wrong). The
//! mini-batches are the queries' ranges of [`crate::pipeline::rl_iteration`]; rank `r` takes the
//! `r`-th contiguous slice of each mini-batch's queries, with the loss aggregation's weights of
//! the **whole** mini-batch, so the ranks' gradients sum to the mini-batch's gradient. The sum
//! is taken in rank order ([`sum_in_rank_order`]) and every rank applies the same sum
//! ([`apply_gradient`]): the ranks keep identical weights and optimizer state, and the result
//! depends on the seed and the number of ranks only. With one rank the update is exactly
//! `rl_iteration`'s.

use std::ops::Range;

use super::super::pipeline::RlSettings;
use crate::rl::{AdvantageLevel, LossStats, compute_leaf_advantages};
use crate::rollout::Rollouts;
use crate::train::{StepReport, TrainBatch, TrainError, Trainer};

/// One rank's part of one mini-batch.
#[derive(Clone, Debug)]
struct RankPart {
    batch: TrainBatch,
    advantages: Vec<Vec<f64>>,
    weights: Vec<f64>,
    logp_old: Vec<f32>,
}

/// One rank's share of an RL step's update, prepared before any weight changes.
#[derive(Clone, Debug)]
pub struct RankUpdate {
    /// This rank.
    pub rank: usize,
    /// Number of ranks.
    pub world: usize,
    /// The advantage of every leaf of the whole batch (the same on every rank).
    pub advantages: Vec<f64>,
    /// Per mini-batch, this rank's part (`None`: it holds no query of that mini-batch).
    parts: Vec<Option<RankPart>>,
}

/// What one rank's gradient of one mini-batch came with.
#[derive(Clone, Debug)]
pub struct RankGradient {
    /// The gradient of this rank's share of the mini-batch's loss, every parameter in the
    /// model's layout order (zeros when the rank holds no query of it).
    pub grad: Vec<f32>,
    /// Its loss statistics (additive across ranks).
    pub stats: LossStats,
    /// Σ entropy over this rank's trained tokens.
    pub entropy_sum: f64,
    /// Leaf tokens of this rank's part (what the loss has a term for).
    pub trained_tokens: usize,
    /// Tokens of this rank's training batch.
    pub train_tokens: usize,
}

/// `n` items split into `parts` contiguous ranges of `ceil(n/parts)` (the last ones shorter or
/// empty).
fn split(range: Range<usize>, parts: usize) -> Vec<Range<usize>> {
    let per = range.len().div_ceil(parts.max(1)).max(1);
    (0..parts)
        .map(|p| {
            let a = (range.start + p * per).min(range.end);
            a..(a + per).min(range.end)
        })
        .collect()
}

/// The mini-batches of `n_queries` queries: `rl_iteration`'s query ranges.
pub fn mini_batch_ranges(n_queries: usize, mini_batches: usize) -> Vec<Range<usize>> {
    let mb = mini_batches.clamp(1, n_queries.max(1));
    split(0..n_queries, mb).into_iter().filter(|r| !r.is_empty()).collect()
}

impl RankUpdate {
    /// Rank `rank` of `world`'s share of the update of `rollouts` under `settings`: advantages
    /// of the whole batch, then per mini-batch this rank's queries as a batch with its
    /// advantages, the whole mini-batch's aggregation weights and the old log-probs (the
    /// trainer's forward under the current weights, before any update).
    ///
    /// Errors: `world == 0` or `rank >= world`, an edge-level estimator (its advantages need
    /// every edge's old log-probs: not split across ranks yet), and whatever the estimator or
    /// the batch layout reject.
    pub fn prepare(
        trainer: &mut Trainer,
        rollouts: &Rollouts,
        settings: &RlSettings,
        rank: usize,
        world: usize,
    ) -> Result<Self, TrainError> {
        if world == 0 || rank >= world {
            return Err(TrainError::Config(format!(
                "rank {rank} of {world} ranks: need 0 <= rank < world"
            )));
        }
        let estimator = settings.advantage.estimator;
        if estimator.level() != AdvantageLevel::PerLeaf {
            return Err(TrainError::Config(format!(
                "the edge-level estimator `{}` is not supported by the data-parallel update \
                 (its advantages need every edge's old log-probs on every rank); use a \
                 leaf-level algorithm (treepo, grpo, grpo-tree, dr-grpo, rloo, reinforce-pp)",
                estimator.name()
            )));
        }
        let advantages = compute_leaf_advantages(&settings.advantage, &rollouts.leaf_records())?;
        let temperature = settings.sampler.temperature;
        let mut parts = Vec::new();
        for chunk in mini_batch_ranges(rollouts.trees.len(), settings.mini_batches) {
            let chunk_leaves: Vec<usize> = (0..rollouts.leaves.len())
                .filter(|&i| chunk.contains(&rollouts.leaves[i].query))
                .collect();
            let lens: Vec<usize> =
                chunk_leaves.iter().map(|&i| rollouts.leaves[i].response.len()).collect();
            let all_weights = settings.loss.aggregation.sequence_weights(&lens)?;
            let mine = split(chunk.clone(), world).swap_remove(rank);
            let idx: Vec<usize> = (0..chunk_leaves.len())
                .filter(|&k| mine.contains(&rollouts.leaves[chunk_leaves[k]].query))
                .collect();
            if idx.is_empty() {
                parts.push(None);
                continue;
            }
            let mut part = rollouts.clone();
            part.retain_queries(|q| mine.contains(&q));
            let batch = part.batch(settings.packed)?;
            if batch.leaf_targets.len() != idx.len()
                || batch.leaf_targets.iter().zip(&idx).any(|(t, &k)| t.len() != lens[k])
            {
                return Err(TrainError::Batch(
                    "rank batch: a leaf's targets differ from its response length".into(),
                ));
            }
            let advantages =
                idx.iter().map(|&k| vec![advantages[chunk_leaves[k]]; lens[k]]).collect();
            let weights = idx.iter().map(|&k| all_weights[k]).collect();
            let logp_old = trainer.logprobs(&batch, temperature)?.logp;
            parts.push(Some(RankPart { batch, advantages, weights, logp_old }));
        }
        Ok(RankUpdate { rank, world, advantages, parts })
    }

    /// Mini-batches of the step (optimizer steps every rank takes).
    pub fn mini_batches(&self) -> usize {
        self.parts.len()
    }

    /// This rank's gradient of mini-batch `mb` under the trainer's current weights (the
    /// optimizer's gradient buffer is zeroed and overwritten).
    pub fn gradient(
        &self,
        trainer: &mut Trainer,
        settings: &RlSettings,
        mb: usize,
    ) -> Result<RankGradient, TrainError> {
        let part = self.parts.get(mb).ok_or_else(|| {
            TrainError::Config(format!("mini-batch {mb} of {}", self.parts.len()))
        })?;
        trainer.optim.zero_grad(trainer.model.device())?;
        let mut out = RankGradient {
            grad: Vec::new(),
            stats: LossStats::default(),
            entropy_sum: 0.0,
            trained_tokens: 0,
            train_tokens: 0,
        };
        if let Some(p) = part {
            let t = settings.sampler.temperature;
            let (grad, grad_entropy, stats, entropy) = trainer.rl_gradient_weighted(
                &p.batch,
                &p.advantages,
                &p.weights,
                &p.logp_old,
                &settings.loss,
                t,
            )?;
            trainer.accumulate(&p.batch, &grad, grad_entropy.as_deref(), t)?;
            out.stats = stats;
            out.trained_tokens = p.batch.leaf_tokens();
            out.entropy_sum = entropy * out.trained_tokens as f64;
            out.train_tokens = p.batch.len();
        }
        out.grad = trainer.model.device().download(&trainer.optim.grads)?;
        Ok(out)
    }
}

/// `Σ_r grads[r]` in f32, added in rank order: every rank and the single-process reference
/// reduce this way, so they agree bit for bit.
pub fn sum_in_rank_order(grads: &[&[f32]]) -> Result<Vec<f32>, TrainError> {
    let Some((first, rest)) = grads.split_first() else {
        return Err(TrainError::Batch("no gradients to sum".into()));
    };
    let mut total = first.to_vec();
    for (r, g) in rest.iter().enumerate() {
        if g.len() != total.len() {
            return Err(TrainError::Batch(format!(
                "rank {} sent {} gradient values, rank 0 {}",
                r + 1,
                g.len(),
                total.len()
            )));
        }
        for (t, x) in total.iter_mut().zip(g.iter()) {
            *t += x;
        }
    }
    Ok(total)
}

/// Writes `grad` (the ranks' sum) into the trainer's gradient buffer and takes the optimizer
/// step (finite check, global-norm clip, AdamW): on error the weights are untouched.
pub fn apply_gradient(trainer: &mut Trainer, grad: &[f32]) -> Result<StepReport, TrainError> {
    let n = trainer.optim.grads.len();
    if grad.len() != n {
        return Err(TrainError::Batch(format!(
            "a gradient of {} values for a model of {n} parameters",
            grad.len()
        )));
    }
    let dev = trainer.model.device().clone();
    dev.write(&mut trainer.optim.grads, grad)?;
    trainer.optim.step(&mut trainer.model)
}

/// What [`update_local`] did.
#[derive(Clone, Debug, Default)]
pub struct LocalUpdate {
    /// The advantage of every leaf.
    pub advantages: Vec<f64>,
    /// Per mini-batch, the summed gradient that was applied.
    pub grads: Vec<Vec<f32>>,
    /// Per mini-batch, the optimizer step.
    pub steps: Vec<StepReport>,
    /// The loss statistics of all ranks and mini-batches.
    pub stats: LossStats,
}

/// The single-process reference of `world` data-parallel ranks: every rank's share prepared and
/// its gradients computed with one trainer (all ranks hold the same weights), summed in rank
/// order and applied — what `world` learners compute together, bit for bit.
pub fn update_local(
    trainer: &mut Trainer,
    rollouts: &Rollouts,
    settings: &RlSettings,
    world: usize,
) -> Result<LocalUpdate, TrainError> {
    let ranks: Vec<RankUpdate> = (0..world)
        .map(|r| RankUpdate::prepare(trainer, rollouts, settings, r, world))
        .collect::<Result<_, _>>()?;
    let Some(first) = ranks.first() else {
        return Err(TrainError::Config("world = 0 ranks".into()));
    };
    let mut out = LocalUpdate { advantages: first.advantages.clone(), ..Default::default() };
    for mb in 0..first.mini_batches() {
        let gs: Vec<RankGradient> =
            ranks.iter().map(|r| r.gradient(trainer, settings, mb)).collect::<Result<_, _>>()?;
        for g in &gs {
            out.stats.merge(&g.stats);
        }
        let refs: Vec<&[f32]> = gs.iter().map(|g| g.grad.as_slice()).collect();
        let sum = sum_in_rank_order(&refs)?;
        out.steps.push(apply_gradient(trainer, &sum)?);
        out.grads.push(sum);
    }
    Ok(out)
}
