//! The two objectives: rectified-flow pretraining and the clipped policy loss over SDE
//! transitions (docs/flow.md §5). Each computes its loss and ADDS its gradient to a buffer, so a
//! finite-difference test can check one without an optimizer; the `*_step` functions add the
//! AdamW step.

use rand::Rng;
use rand_distr::{Distribution, StandardNormal};
use treepo_kernels::Buffer;
use treepo_rl::{ClipConfig, ClipRegion, clipped_token_loss};

use crate::data::{DIM, Dataset};
use crate::net::{IN_DIM, VelocityNet, input_row};
use crate::optim::Optimizer;
use crate::rollout::Rollouts;
use crate::sde::{Schedule, dlog_prob_dv, log_prob, sde_mean};
use crate::{FlowError, Result};

/// Rows per forward/backward chunk of the policy loss (bounds activation memory).
const CHUNK_ROWS: usize = 512;

/// A rectified-flow batch: `x_t = (1 − t)·x_0 + t·ε`, target `v = ε − x_0`, `t ~ U(0, 1)`.
pub struct FlowBatch {
    /// Host-built input rows.
    pub input: Vec<f32>,
    /// Targets `[rows, DIM]`.
    pub target: Vec<f32>,
    /// Rows.
    pub rows: usize,
}

impl FlowBatch {
    /// `rows` examples drawn uniformly from `data`.
    pub fn draw(data: &Dataset, rows: usize, rng: &mut impl Rng) -> Result<Self> {
        let n = data.labels.len();
        if n == 0 || data.images.len() != n * DIM {
            return Err(FlowError::Shape(format!(
                "dataset of {} labels and {} pixels",
                n,
                data.images.len()
            )));
        }
        let mut input = vec![0f32; rows * IN_DIM];
        let mut target = vec![0f32; rows * DIM];
        let mut x = vec![0f32; DIM];
        for r in 0..rows {
            let i = rng.random_range(0..n);
            let t: f32 = rng.random();
            let x0 = &data.images[i * DIM..(i + 1) * DIM];
            for d in 0..DIM {
                let e: f32 = StandardNormal.sample(rng);
                x[d] = (1.0 - t) * x0[d] + t * e;
                target[r * DIM + d] = e - x0[d];
            }
            input_row(&x, t, data.labels[i], &mut input[r * IN_DIM..(r + 1) * IN_DIM]);
        }
        Ok(FlowBatch { input, target, rows })
    }
}

/// Mean squared velocity error of `batch`; adds its gradient to `grads`.
pub fn flow_loss(net: &VelocityNet, batch: &FlowBatch, grads: &mut Buffer<f32>) -> Result<f64> {
    let acts = net.forward(&batch.input, batch.rows)?;
    let v = net.device().download(&acts.velocity)?;
    let scale = 1.0 / (batch.rows * DIM) as f64;
    let mut loss = 0.0;
    let dv: Vec<f32> = v
        .iter()
        .zip(&batch.target)
        .map(|(&p, &y)| {
            let e = (p - y) as f64;
            loss += e * e * scale;
            (2.0 * e * scale) as f32
        })
        .collect();
    if !loss.is_finite() {
        return Err(FlowError::NonFinite(format!("flow-matching loss {loss}")));
    }
    net.backward(&acts, &dv, grads)?;
    Ok(loss)
}

/// What a policy update measured.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct PolicyStats {
    /// The clipped surrogate, averaged over trained transitions.
    pub loss: f64,
    /// Transitions trained.
    pub transitions: usize,
    /// Fraction of transitions whose ratio was clipped.
    pub clip_frac: f64,
    /// `mean(log π_old − log π)`, the usual approximate KL.
    pub approx_kl: f64,
    /// Gradient norm before clipping (0 when only the loss was computed).
    pub grad_norm: f64,
}

/// The clipped policy loss `mean_e −min(ρ_e·A_e, clip(ρ_e)·A_e)` over the transitions of `r`
/// (each once, `advantages[e]` its advantage); adds its gradient to `grads`.
pub fn policy_loss(
    net: &VelocityNet,
    schedule: &Schedule,
    r: &Rollouts,
    advantages: &[f64],
    clip: &ClipConfig,
    grads: &mut Buffer<f32>,
) -> Result<PolicyStats> {
    clip.validate()?;
    let n = r.transitions.len();
    if advantages.len() != n {
        return Err(FlowError::Shape(format!(
            "{} advantages for {n} transitions",
            advantages.len()
        )));
    }
    if let Some(i) = advantages.iter().position(|a| !a.is_finite()) {
        return Err(FlowError::NonFinite(format!(
            "advantage of transition {i} is {}",
            advantages[i]
        )));
    }
    let mut stats = PolicyStats { transitions: n, ..Default::default() };
    if n == 0 {
        return Ok(stats);
    }
    let weight = 1.0 / n as f64;
    let mut clipped = 0usize;
    for lo in (0..n).step_by(CHUNK_ROWS) {
        let ids = lo..(lo + CHUNK_ROWS).min(n);
        let rows = ids.len();
        let mut input = vec![0f32; rows * IN_DIM];
        for (row, t) in input.chunks_exact_mut(IN_DIM).zip(&r.transitions[ids.clone()]) {
            input_row(&t.x, schedule.time(t.step) as f32, r.classes[t.prompt], row);
        }
        let acts = net.forward(&input, rows)?;
        let v = net.device().download(&acts.velocity)?;
        let mut dv = vec![0f32; rows * DIM];
        for ((t, v), (dv, &a)) in r.transitions[ids.clone()]
            .iter()
            .zip(v.chunks_exact(DIM))
            .zip(dv.chunks_exact_mut(DIM).zip(&advantages[ids.clone()]))
        {
            let c = schedule.coeffs(t.step);
            let mean = sde_mean(&c, &t.x, v);
            let logp = log_prob(&c, &mean, &t.next);
            let tl = clipped_token_loss(logp, t.logp_old, a, weight, clip);
            stats.loss += tl.loss;
            stats.approx_kl += (t.logp_old - logp) * weight;
            if tl.region != ClipRegion::Unclipped {
                clipped += 1;
            }
            dlog_prob_dv(&c, &mean, &t.next, tl.dloss_dlogp, dv);
        }
        net.backward(&acts, &dv, grads)?;
    }
    stats.clip_frac = clipped as f64 / n as f64;
    if !stats.loss.is_finite() {
        return Err(FlowError::NonFinite(format!("policy loss {}", stats.loss)));
    }
    Ok(stats)
}

/// One rectified-flow optimizer step on `batch`; returns the loss and the gradient norm.
pub fn flow_step(
    net: &mut VelocityNet,
    opt: &mut Optimizer,
    batch: &FlowBatch,
    lr: f32,
) -> Result<(f64, f64)> {
    let loss = flow_loss(net, batch, &mut opt.grads)?;
    let norm = opt.step(net, lr)?;
    Ok((loss, norm))
}

/// One policy optimizer step over all transitions of `r`.
pub fn policy_step(
    net: &mut VelocityNet,
    opt: &mut Optimizer,
    schedule: &Schedule,
    r: &Rollouts,
    advantages: &[f64],
    clip: &ClipConfig,
    lr: f32,
) -> Result<PolicyStats> {
    let mut stats = policy_loss(net, schedule, r, advantages, clip, &mut opt.grads)?;
    stats.grad_norm = opt.step(net, lr)?;
    Ok(stats)
}
