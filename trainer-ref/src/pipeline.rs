//! The TreePO pipeline over any sampling engine: supervised warm-up steps, one RL iteration (sample →
//! score → advantages → clipped updates over mini-batches) and evaluation (avg@k, pass@k, maj@k).
//!
//! Algorithms differ only in how rollouts are sampled and which advantage estimator reads them
//! ([`Algo`]); the training layout (whole trees packed, or every leaf alone) is an efficiency
//! choice that gives the same gradient.

use std::time::Instant;

use serde::{Deserialize, Serialize};
use treepo_sampler::{Engine, Query, RolloutTree, TaskHooks, TreeConfig, TreeSampler};

use crate::metrics;
use crate::model::{Model, Tokenizer};
use crate::rl::{
    AdvantageConfig, AdvantageEstimator, OverlongPenalty, PolicyLossConfig,
    compute_leaf_advantages, keep_query,
};
use crate::rollout::Rollouts;
use crate::tasks::{Problem, SftExample, Split, Task, TaskRng};
use crate::train::{SftReport, TrainBatch, TrainError, Trainer};

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
        }
    }
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
    /// Leaves trained on.
    pub leaves: usize,
    /// Mean response length of sampled leaves.
    pub response_len: f64,
    /// Tokens the engine decoded (all rounds).
    pub tokens_decoded: usize,
    /// Tokens of the training batch / leaf tokens (packing's saving).
    pub train_tokens: usize,
    /// Leaf tokens (what per-leaf training would process).
    pub leaf_tokens: usize,
    /// Mean and standard deviation of the advantages over leaves.
    pub adv_mean: f64,
    /// Standard deviation of the advantages.
    pub adv_std: f64,
    /// Fraction of leaf tokens clipped (low + high + dual).
    pub clip_frac: f64,
    /// Approximate KL(old ‖ new) over leaf tokens.
    pub ppo_kl: f64,
    /// Mean entropy over leaf tokens.
    pub entropy: f64,
    /// Mean policy loss of the mini-batches.
    pub pg_loss: f64,
    /// Mean gradient norm of the optimizer steps.
    pub grad_norm: f64,
    /// Seconds spent sampling.
    pub time_sample: f64,
    /// Seconds spent on the update (old log-probs included).
    pub time_update: f64,
    /// Whether an update happened (false when dynamic sampling kept nothing).
    pub updated: bool,
}

/// Samples `problems` with `mode` on `engine` (the building block of a [`SampleFn`]).
pub fn sample<E: Engine + ?Sized, H: TaskHooks>(
    engine: &mut E,
    sampler: &TreeSampler<H>,
    mode: SamplingMode,
    tok: &Tokenizer,
    problems: &[Problem],
) -> Result<RolloutTree, TrainError> {
    let prompts: Vec<Vec<u32>> =
        problems.iter().map(|p| tok.encode(&p.prompt)).collect::<Result<_, _>>()?;
    let refs: Vec<&[u32]> = prompts.iter().map(Vec::as_slice).collect();
    let queries = Query::batch(&refs);
    let tree = match mode {
        SamplingMode::Tree => sampler.sample(engine, &queries),
        SamplingMode::Sequential => sampler.sample_sequential(engine, &queries),
    };
    tree.map_err(|e| TrainError::Batch(format!("sampling failed: {e}")))
}

/// One RL iteration: sample (through `sample_fn`) `next_problems()` batches until enough queries survive dynamic
/// sampling, compute advantages, recompute old log-probs with the trainer's own forward, then
/// one clipped update per mini-batch.
#[allow(clippy::too_many_arguments)]
pub fn rl_iteration(
    trainer: &mut Trainer,
    sample_fn: &mut SampleFn<'_>,
    task: &dyn Task,
    tok: &Tokenizer,
    settings: &RlSettings,
    mut next_problems: impl FnMut() -> Result<Vec<Problem>, TrainError>,
) -> Result<RlStats, TrainError> {
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
    let adv = compute_leaf_advantages(&settings.advantage, &rollouts.leaf_records())?;
    stats.queries_kept = rollouts.trees.len();
    stats.leaves = rollouts.leaves.len();
    let m = adv.iter().sum::<f64>() / adv.len().max(1) as f64;
    stats.adv_mean = m;
    stats.adv_std =
        (adv.iter().map(|a| (a - m).powi(2)).sum::<f64>() / adv.len().max(1) as f64).sqrt();
    // Mini-batches of whole queries; old log-probs for all of them before any update.
    let mb = settings.mini_batches.clamp(1, rollouts.trees.len());
    let per = rollouts.trees.len().div_ceil(mb);
    let temperature = settings.sampler.temperature;
    let mut parts = Vec::new();
    for chunk in 0..mb {
        let qs = chunk * per..((chunk + 1) * per).min(rollouts.trees.len());
        if qs.is_empty() {
            continue;
        }
        let mut part = rollouts.clone();
        part.retain_queries(|q| qs.contains(&q));
        let leaf_idx: Vec<usize> = (0..rollouts.leaves.len())
            .filter(|&i| qs.contains(&rollouts.leaves[i].query))
            .collect();
        let batch = part.batch(settings.packed)?;
        let advantages: Vec<Vec<f64>> =
            leaf_idx.iter().zip(&batch.leaf_targets).map(|(&i, t)| vec![adv[i]; t.len()]).collect();
        let old = trainer.logprobs(&batch, temperature)?.logp;
        parts.push((batch, advantages, old));
    }
    let mut loss_stats = crate::rl::LossStats::default();
    let (mut ent, mut gn) = (0f64, 0f64);
    for (batch, advantages, old) in &parts {
        stats.train_tokens += batch.len();
        stats.leaf_tokens += batch.leaf_tokens();
        let r = trainer.rl_step(batch, advantages, old, &settings.loss, temperature)?;
        loss_stats.merge(&r.stats);
        ent += r.entropy * batch.leaf_tokens() as f64;
        gn += r.step.grad_norm;
    }
    let (lo, hi, dual) = loss_stats.clip_fractions();
    stats.clip_frac = lo + hi + dual;
    stats.ppo_kl = loss_stats.ppo_kl();
    stats.pg_loss = loss_stats.pg_loss / parts.len().max(1) as f64;
    stats.entropy = ent / stats.leaf_tokens.max(1) as f64;
    stats.grad_norm = gn / parts.len().max(1) as f64;
    stats.time_update = t1.elapsed().as_secs_f64();
    stats.updated = true;
    Ok(stats)
}

/// `steps` supervised steps of `batch_size` problems each, from `first_index` on in the train
/// split. Returns each step's report (mean loss, tokens, learning rate, gradient norm).
#[allow(clippy::too_many_arguments)]
pub fn sft_steps(
    trainer: &mut Trainer,
    task: &dyn Task,
    tok: &Tokenizer,
    first_index: u64,
    batch_size: usize,
    steps: usize,
    rng: &mut TaskRng,
    mut on_step: impl FnMut(usize, &SftReport),
) -> Result<Vec<SftReport>, TrainError> {
    let mut reports = Vec::with_capacity(steps);
    let mut index = first_index;
    for s in 0..steps {
        let mut seqs = Vec::with_capacity(batch_size);
        for _ in 0..batch_size {
            let p =
                task.generate(Split::Train, index).map_err(|e| TrainError::Batch(e.to_string()))?;
            index += 1;
            let ex =
                SftExample::draw(task, &p, rng).map_err(|e| TrainError::Batch(e.to_string()))?;
            let enc = ex.encode(|t| tok.encode(t), &[])?;
            seqs.push(enc);
        }
        let refs: Vec<(&[u32], &[u32])> = seqs.iter().map(|e| (e.prompt(), e.response())).collect();
        let batch = TrainBatch::from_sequences(&refs)?;
        let r = trainer.sft_step(&batch)?;
        on_step(s, &r);
        reports.push(r);
    }
    Ok(reports)
}

/// Evaluation of `k` samples per problem.
#[derive(Clone, Debug, Default, Serialize)]
pub struct EvalReport {
    /// Problems evaluated.
    pub problems: usize,
    /// Samples per problem.
    pub k: usize,
    /// Mean correctness over all samples (pass@1 estimate).
    pub avg_at_k: f64,
    /// Unbiased pass@k.
    pub pass_at_k: f64,
    /// Majority-vote accuracy over the k samples.
    pub maj_at_k: f64,
    /// Mean response length in tokens.
    pub response_len: f64,
    /// Tokens decoded.
    pub tokens_decoded: usize,
    /// Seconds.
    pub seconds: f64,
}

/// Samples `k` independent responses per problem (sequential sampling with `base`'s
/// temperature and limits; its width is set to `k`) and scores them.
pub fn evaluate(
    sample_fn: &mut SampleFn<'_>,
    model: &Model,
    base: &TreeConfig,
    task: &dyn Task,
    tok: &Tokenizer,
    problems: &[Problem],
    k: usize,
) -> Result<EvalReport, TrainError> {
    let t0 = Instant::now();
    let (r, tokens_decoded) = independent_samples(sample_fn, model, base, k, task, tok, problems)?;
    let mut report =
        EvalReport { problems: problems.len(), k, tokens_decoded, ..Default::default() };
    let (mut avg, mut pass, mut maj, mut len) = (0f64, 0f64, 0f64, 0f64);
    for q in 0..problems.len() {
        let leaves: Vec<_> = r.leaves.iter().filter(|l| l.query == q).collect();
        let c = leaves.iter().filter(|l| l.score.correct).count();
        let n = leaves.len().max(1);
        avg += c as f64 / n as f64;
        pass += metrics::pass_at_k(n, c, k.min(n)).unwrap_or(0.0);
        let answers: Vec<Option<String>> = leaves.iter().map(|l| l.score.answer.clone()).collect();
        // The majority answer's correctness is that of its first occurrence.
        maj += match metrics::majority_answer(&answers) {
            Some(i) if leaves[i].score.correct => 1.0,
            _ => 0.0,
        };
        len += leaves.iter().map(|l| l.response.len() as f64).sum::<f64>() / n as f64;
    }
    let p = problems.len().max(1) as f64;
    (report.avg_at_k, report.pass_at_k, report.maj_at_k, report.response_len) =
        (avg / p, pass / p, maj / p, len / p);
    report.seconds = t0.elapsed().as_secs_f64();
    Ok(report)
}

/// One sampled answer, for people to read (the demo prints a few before and after RL).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Example {
    /// The problem's prompt.
    pub prompt: String,
    /// The decoded response.
    pub response: String,
    /// Whether the task scored it correct.
    pub correct: bool,
}

/// One sample (at `base`'s temperature and seed) for each of `problems`, decoded and scored.
pub fn examples(
    sample_fn: &mut SampleFn<'_>,
    model: &Model,
    base: &TreeConfig,
    task: &dyn Task,
    tok: &Tokenizer,
    problems: &[Problem],
) -> Result<Vec<Example>, TrainError> {
    let (r, _) = independent_samples(sample_fn, model, base, 1, task, tok, problems)?;
    Ok(r.leaves
        .iter()
        .map(|l| Example {
            prompt: problems[l.query].prompt.clone(),
            response: l.text.clone(),
            correct: l.score.correct,
        })
        .collect())
}

/// `k` independent samples per problem (sequential sampling with `base`'s temperature, limits and
/// seed; its width set to `k`), scored; with the tokens decoded.
fn independent_samples(
    sample_fn: &mut SampleFn<'_>,
    model: &Model,
    base: &TreeConfig,
    k: usize,
    task: &dyn Task,
    tok: &Tokenizer,
    problems: &[Problem],
) -> Result<(Rollouts, usize), TrainError> {
    let mut cfg = base.clone();
    cfg.tree_max_width = k;
    cfg.tree_fixed_step_div = cfg.tree_fixed_step_div.min(k);
    cfg.tree_random_first_div_min = None;
    cfg.tree_random_first_div_max = None;
    let tree = sample_fn(model, &cfg, SamplingMode::Sequential, problems)?;
    let r = Rollouts::collect(&tree, problems, task, tok, None)?;
    Ok((r, tree.cost().tokens_decoded))
}
