//! One sampler for every layout (docs/flow.md §3): a batch of prompts (classes) walks the
//! schedule together; at each step every frontier state gets one network evaluation, then either
//! one ODE step or `branch` SDE children. The tree (TreeGRPO), the flat groups (DanceGRPO) and the
//! deterministic evaluation differ only in [`Layout`].

use std::ops::Range;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::data::{DIM, NUM_CLASSES};
use crate::net::{IN_DIM, VelocityNet, input_row};
use crate::sde::{Schedule, log_prob, ode_step, sde_mean};
use crate::{FlowError, Result};

/// How a prompt's samples branch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Layout {
    /// TreeGRPO: one initial noise; inside `window` every state branches into `k` SDE children,
    /// every other step is an ODE step. `k^w` leaves.
    Tree {
        /// Children per branching.
        k: usize,
        /// The SDE steps, `start..start + w`.
        window: Range<usize>,
    },
    /// DanceGRPO / Flow-GRPO: `group` independent noises, an SDE step at every step.
    Flat {
        /// Trajectories per prompt `G`.
        group: usize,
    },
    /// Evaluation: `group` independent noises, ODE steps only.
    Ode {
        /// Samples per prompt.
        group: usize,
    },
}

impl Layout {
    /// Checks the layout against a schedule of `steps` steps: `k ≥ 1`, a non-empty window inside
    /// the schedule, `group ≥ 1`.
    pub fn validate(&self, steps: usize) -> Result<()> {
        match self {
            Layout::Tree { k, window } => {
                if *k == 0 {
                    return Err(FlowError::Config(
                        "tree.k = 0: every window state needs ≥ 1 child".into(),
                    ));
                }
                if window.is_empty() || window.end > steps {
                    return Err(FlowError::Config(format!(
                        "tree window {}..{} (width {}) does not fit a schedule of {steps} steps",
                        window.start,
                        window.end,
                        window.len()
                    )));
                }
                Ok(())
            }
            Layout::Flat { group } | Layout::Ode { group } if *group == 0 => {
                Err(FlowError::Config("group = 0: a prompt needs ≥ 1 trajectory".into()))
            }
            _ => Ok(()),
        }
    }

    fn roots(&self) -> usize {
        match self {
            Layout::Tree { .. } => 1,
            Layout::Flat { group } | Layout::Ode { group } => *group,
        }
    }

    /// `(stochastic, children)` of step `i`.
    fn step_kind(&self, i: usize) -> (bool, usize) {
        match self {
            Layout::Tree { k, window } if window.contains(&i) => (true, *k),
            Layout::Tree { .. } | Layout::Ode { .. } => (false, 1),
            Layout::Flat { .. } => (true, 1),
        }
    }
}

/// One recorded SDE step: the data the policy loss needs.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    /// Prompt index in the batch.
    pub prompt: usize,
    /// Step index `i` (from `t_i` to `t_{i+1}`).
    pub step: usize,
    /// The transition that produced `x` (`None`: `x` came from ODE steps only).
    pub parent: Option<usize>,
    /// `x_{t_i}`.
    pub x: Vec<f32>,
    /// The sampled `x_{t_{i+1}}`.
    pub next: Vec<f32>,
    /// `log π_old(next | x)` under the sampling weights.
    pub logp_old: f64,
}

/// One finished sample.
#[derive(Clone, Debug, PartialEq)]
pub struct Leaf {
    /// Prompt index.
    pub prompt: usize,
    /// The transitions from the root to this leaf, in step order.
    pub path: Vec<usize>,
}

/// A sampled batch.
#[derive(Clone, Debug, PartialEq)]
pub struct Rollouts {
    /// The prompts' classes.
    pub classes: Vec<usize>,
    /// Every SDE transition, in creation order (parents first).
    pub transitions: Vec<Transition>,
    /// The samples, prompt by prompt.
    pub leaves: Vec<Leaf>,
    /// The samples' images, `[leaves, DIM]`.
    pub images: Vec<f32>,
    /// Network evaluations spent (one per frontier state per step).
    pub nfe: usize,
}

impl Rollouts {
    /// The class of each leaf.
    pub fn leaf_classes(&self) -> Vec<usize> {
        self.leaves.iter().map(|l| self.classes[l.prompt]).collect()
    }
}

struct State {
    prompt: usize,
    x: Vec<f32>,
    path: Vec<usize>,
}

/// Samples every prompt of `classes` with `layout` over `schedule`. Deterministic in `seed`
/// (noise drawn in a fixed order: initial noises prompt by prompt, then per step state by state).
pub fn sample(
    net: &VelocityNet,
    schedule: &Schedule,
    layout: &Layout,
    classes: &[usize],
    seed: u64,
) -> Result<Rollouts> {
    layout.validate(schedule.steps)?;
    if let Some(&c) = classes.iter().find(|&&c| c >= NUM_CLASSES) {
        return Err(FlowError::Config(format!("prompt class {c} ≥ {NUM_CLASSES} classes")));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut frontier = Vec::with_capacity(classes.len() * layout.roots());
    for prompt in 0..classes.len() {
        for _ in 0..layout.roots() {
            let x = (0..DIM).map(|_| StandardNormal.sample(&mut rng)).collect();
            frontier.push(State { prompt, x, path: Vec::new() });
        }
    }
    let mut transitions = Vec::new();
    let mut nfe = 0;
    let mut input = Vec::new();
    for i in 0..schedule.steps {
        let rows = frontier.len();
        let t = schedule.time(i) as f32;
        input.resize(rows * IN_DIM, 0.0);
        for (s, row) in frontier.iter().zip(input.chunks_exact_mut(IN_DIM)) {
            input_row(&s.x, t, classes[s.prompt], row);
        }
        let v = net.velocity(&input, rows)?;
        nfe += rows;
        let c = schedule.coeffs(i);
        let (stochastic, children) = layout.step_kind(i);
        let mut next_frontier = Vec::with_capacity(rows * children);
        for (mut s, v) in frontier.into_iter().zip(v.chunks_exact(DIM)) {
            if !stochastic {
                ode_step(&mut s.x, v, c.dt);
                next_frontier.push(s);
                continue;
            }
            let mean = sde_mean(&c, &s.x, v);
            for _ in 0..children {
                let next: Vec<f32> = mean
                    .iter()
                    .map(|&m| {
                        let z: f64 = StandardNormal.sample(&mut rng);
                        (m as f64 + c.std * z) as f32
                    })
                    .collect();
                let logp_old = log_prob(&c, &mean, &next);
                let id = transitions.len();
                transitions.push(Transition {
                    prompt: s.prompt,
                    step: i,
                    parent: s.path.last().copied(),
                    x: s.x.clone(),
                    next: next.clone(),
                    logp_old,
                });
                let mut path = s.path.clone();
                path.push(id);
                next_frontier.push(State { prompt: s.prompt, x: next, path });
            }
        }
        frontier = next_frontier;
    }
    let mut images = Vec::with_capacity(frontier.len() * DIM);
    let mut leaves = Vec::with_capacity(frontier.len());
    for s in frontier {
        if let Some(j) = s.x.iter().position(|v| !v.is_finite()) {
            return Err(FlowError::NonFinite(format!(
                "pixel {j} of a sample of prompt {} is {}: the generator diverged",
                s.prompt, s.x[j]
            )));
        }
        images.extend_from_slice(&s.x);
        leaves.push(Leaf { prompt: s.prompt, path: s.path });
    }
    Ok(Rollouts { classes: classes.to_vec(), transitions, leaves, images, nfe })
}
