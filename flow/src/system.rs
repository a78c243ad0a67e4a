//! The pieces a run is made of (docs/flow.md §6): pretraining, one RL iteration of either
//! method, and evaluation. The binary (`treepo flow`) strings them together and writes files.

use std::time::Instant;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use treepo_kernels::Device;

use crate::advantage::{combine_rewards, flat_advantages, tree_advantages, tree_options};
use crate::config::{FlowConfig, Method};
use crate::data::{NUM_CLASSES, Split, dataset};
use crate::net::VelocityNet;
use crate::optim::Optimizer;
use crate::reward::{Aesthetic, Classifier, ClassifierConfig, Reward, score_all};
use crate::rollout::{Layout, sample};
use crate::train::{FlowBatch, PolicyStats, flow_step, policy_step};
use crate::{FlowError, Result};

/// Training forwards a backward pass costs, in the NFE count of a policy update: a trained
/// transition is one forward (the new log-prob) plus one backward (≈ two forwards).
pub const TRAIN_NFE_PER_TRANSITION: usize = 3;

/// The rewards of the system: the held-out classifier and the analytic score.
pub struct Rewards {
    /// `P(prompted class | image)` by a classifier trained on held-out shapes.
    pub classifier: Classifier,
    /// The analytic aesthetic score.
    pub aesthetic: Aesthetic,
}

impl Rewards {
    /// Trains the classifier on the held-out split (seeded by `seed`).
    pub fn train(seed: u64) -> Result<Self> {
        let classifier = Classifier::train(&ClassifierConfig::default(), seed ^ 0xc1a5_5f1e)?;
        Ok(Rewards { classifier, aesthetic: Aesthetic })
    }

    /// Both, in a fixed order (classifier, aesthetic).
    pub fn list(&self) -> [&dyn Reward; 2] {
        [&self.classifier, &self.aesthetic]
    }
}

/// Mean scores of deterministic samples.
#[derive(Clone, Debug, Serialize)]
pub struct EvalReport {
    /// `(reward name, mean score)`.
    pub rewards: Vec<(String, f64)>,
    /// The sum of the mean scores weighted by `rl.weights` (what "reward" means in plots and
    /// tables; with the default weights, the plain sum).
    pub total: f64,
    /// The samples, `[n, DIM]`, class-major (`per_class` of class 0 first).
    #[serde(skip)]
    pub images: Vec<f32>,
}

/// ODE samples of `cfg.eval.per_class` per class from noise fixed by `cfg.seed` (the same noise
/// before and after training), scored by every reward.
pub fn evaluate(net: &VelocityNet, cfg: &FlowConfig, rewards: &Rewards) -> Result<EvalReport> {
    let classes: Vec<usize> = (0..NUM_CLASSES).collect();
    let layout = Layout::Ode { group: cfg.eval.per_class };
    let r = sample(net, &cfg.schedule()?, &layout, &classes, cfg.seed ^ 0xe5a1_0000)?;
    let leaf_classes = r.leaf_classes();
    let scores = score_all(&rewards.list(), &r.images, &leaf_classes)?;
    let mut out = Vec::new();
    let mut total = 0.0;
    let weights = cfg.rl.weights.as_array();
    for ((rw, s), w) in rewards.list().iter().zip(&scores).zip(weights) {
        let m = s.iter().sum::<f64>() / s.len().max(1) as f64;
        total += w * m;
        out.push((rw.name().to_string(), m));
    }
    Ok(EvalReport { rewards: out, total, images: r.images })
}

/// Rectified-flow pretraining from a fresh initialisation; `on_step(step, loss)` after each
/// step (returning [`Flow::Stop`] ends it early). Cosine learning-rate decay from `lr` to
/// `lr/10`.
pub fn pretrain(
    dev: &Device,
    cfg: &FlowConfig,
    mut on_step: impl FnMut(usize, f64) -> Flow,
) -> Result<VelocityNet> {
    cfg.validate()?;
    let p = &cfg.pretrain;
    let data = dataset(Split::Train, p.images, cfg.seed)?;
    let mut net = VelocityNet::init(dev, cfg.model, cfg.seed)?;
    let mut opt = Optimizer::new(&net, p.optim)?;
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x9e37_79b9);
    for step in 0..p.steps {
        let frac = step as f32 / p.steps as f32;
        let lr = p.optim.lr * (0.1 + 0.9 * 0.5 * (1.0 + (std::f32::consts::PI * frac).cos()));
        let batch = FlowBatch::draw(&data, p.batch, &mut rng)?;
        let (loss, _) = flow_step(&mut net, &mut opt, &batch, lr)?;
        if on_step(step, loss) == Flow::Stop {
            break;
        }
    }
    Ok(net)
}

/// What one RL iteration did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct IterStats {
    /// Iteration index.
    pub iteration: usize,
    /// TreeGRPO's window start (0 for the flat method).
    pub window_start: usize,
    /// Mean weighted sum of the raw rewards over the sampled leaves.
    pub reward: f64,
    /// Samples (leaves) drawn.
    pub samples: usize,
    /// Sampler network evaluations.
    pub nfe_sample: usize,
    /// Sampler NFE plus [`TRAIN_NFE_PER_TRANSITION`] per trained transition.
    pub nfe: usize,
    /// Seconds of sampling, scoring and the update.
    pub seconds: f64,
    /// The update.
    pub policy: PolicyStats,
}

/// One RL iteration: sample the iteration's prompts with the method's layout, score, compute
/// advantages, one optimizer step on every trained transition.
pub fn rl_iteration(
    net: &mut VelocityNet,
    opt: &mut Optimizer,
    cfg: &FlowConfig,
    rewards: &Rewards,
    iteration: usize,
) -> Result<IterStats> {
    let t0 = Instant::now();
    let layout = cfg.layout(iteration)?;
    let schedule = cfg.schedule()?;
    let classes: Vec<usize> =
        (0..cfg.rl.prompts).map(|j| (iteration * cfg.rl.prompts + j) % NUM_CLASSES).collect();
    let seed = cfg.seed.wrapping_mul(1_000_003).wrapping_add(iteration as u64) ^ 0x5eed;
    let r = sample(net, &schedule, &layout, &classes, seed)?;
    let scores = score_all(&rewards.list(), &r.images, &r.leaf_classes())?;
    let n = r.leaves.len().max(1) as f64;
    let weights = cfg.rl.weights.as_array();
    let reward = scores.iter().zip(weights).map(|(s, w)| w * s.iter().sum::<f64>() / n).sum();
    let leaf_rewards = combine_rewards(&r, &scores, &cfg.rl.weights.as_array())?;
    let advantages = match cfg.rl.method {
        Method::Treegrpo => tree_advantages(&r, &leaf_rewards, &tree_options())?,
        Method::Dancegrpo => flat_advantages(&r, &leaf_rewards)?,
    };
    let policy = policy_step(net, opt, &schedule, &r, &advantages, &cfg.rl.clip, cfg.rl.optim.lr)?;
    let window_start = match layout {
        Layout::Tree { window, .. } => window.start,
        _ => 0,
    };
    Ok(IterStats {
        iteration,
        window_start,
        reward,
        samples: r.leaves.len(),
        nfe_sample: r.nfe,
        nfe: r.nfe + TRAIN_NFE_PER_TRANSITION * policy.transitions,
        seconds: t0.elapsed().as_secs_f64(),
        policy,
    })
}

/// A fresh optimizer for the RL phase of `net`.
pub fn rl_optimizer(net: &VelocityNet, cfg: &FlowConfig) -> Result<Optimizer> {
    if cfg.rl.iterations == 0 {
        return Err(FlowError::Config("rl.iterations = 0: nothing to train".into()));
    }
    Optimizer::new(net, cfg.rl.optim)
}

/// One point of a reward curve: the evaluation after `iteration` RL iterations.
#[derive(Clone, Debug, Serialize)]
pub struct CurvePoint {
    /// Iterations done.
    pub iteration: usize,
    /// Cumulative NFE (sampling + training, see [`IterStats::nfe`]).
    pub nfe: usize,
    /// Cumulative seconds of RL (evaluation excluded).
    pub seconds: f64,
    /// The evaluation.
    pub eval: EvalReport,
}

/// Whether an RL run goes on after an iteration (the binary stops on Ctrl-C).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Next iteration.
    Continue,
    /// Stop now.
    Stop,
}

/// The RL phase: `cfg.rl.iterations` iterations from `net`, evaluated before the first and
/// every `cfg.eval.every` iterations (and after the last). `observe` sees every iteration and,
/// where there was one, its evaluation. Returns the curve (first point: iteration 0).
pub fn train_rl(
    net: &mut VelocityNet,
    cfg: &FlowConfig,
    rewards: &Rewards,
    mut observe: impl FnMut(&IterStats, Option<&CurvePoint>) -> Flow,
) -> Result<Vec<CurvePoint>> {
    cfg.validate()?;
    let mut opt = rl_optimizer(net, cfg)?;
    let mut curve =
        vec![CurvePoint { iteration: 0, nfe: 0, seconds: 0.0, eval: evaluate(net, cfg, rewards)? }];
    let (mut nfe, mut seconds) = (0usize, 0.0f64);
    for it in 0..cfg.rl.iterations {
        let stats = rl_iteration(net, &mut opt, cfg, rewards, it)?;
        nfe += stats.nfe;
        seconds += stats.seconds;
        let done = it + 1;
        let point = if done % cfg.eval.every == 0 || done == cfg.rl.iterations {
            curve.push(CurvePoint {
                iteration: done,
                nfe,
                seconds,
                eval: evaluate(net, cfg, rewards)?,
            });
            curve.last()
        } else {
            None
        };
        if observe(&stats, point) == Flow::Stop {
            break;
        }
    }
    Ok(curve)
}
