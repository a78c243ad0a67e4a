//! Supervised warm-up steps and evaluation (avg@k, pass@k, maj@k, examples).

use std::time::Instant;

use serde::Serialize;
use treepo_sampler::TreeConfig;

use super::{SampleFn, SamplingMode};
use crate::metrics;
use crate::model::{Model, Tokenizer};
use crate::rollout::Rollouts;
use crate::tasks::{Problem, SftExample, Split, Task, TaskRng};
use crate::train::{SftReport, TrainBatch, TrainError, Trainer};

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
