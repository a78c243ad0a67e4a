//! The TreePO loop (docs/treepo.md §1.1): initial divergence, then per step one batched decode,
//! classification, branching with budget transfer, fallback, completion.

use super::SampleError;
use super::io::EngineIo;
use super::state::{
    Ctx, PathState, QState, break_deadlock, complete, decode_and_classify, fork_into,
};
use crate::config::{DivPolicy, TotalBudgetPolicy, TreeConfig};
use crate::engine::Engine;
use crate::schedule::{
    PathStats, branch_total, initial_fanout, plan_fallback, split_budget, token_mode_upper,
};
use crate::tree::{FallbackEvent, NodeId, StepTrace};

/// The TreePO loop (run by `state::run` after the prefill).
pub(super) fn drive<E: Engine + ?Sized>(
    io: &mut EngineIo<'_, E>,
    qs: &mut [QState],
    ctx: &mut Ctx<'_>,
) -> Result<(), SampleError> {
    // Initial divergence (§1.2): one draw per query from its own stream.
    for q in qs.iter_mut() {
        let k = initial_fanout(ctx.config, ctx.config.initial_upper(), &mut q.rng);
        q.tree.initial_fanout = k;
        open(io, q, NodeId::ROOT, k, ctx)?;
    }
    while qs.iter().any(|q| !q.done) {
        ctx.step += 1;
        let mark = io.progress_mark();
        let releases = io.cost.releases;
        decode_and_classify(io, qs, ctx)?;
        for q in qs.iter_mut().filter(|q| !q.done && !q.paths.is_empty()) {
            branch(io, q, ctx)?;
        }
        for q in qs.iter_mut().filter(|q| !q.done && q.paths.is_empty()) {
            fallback_or_complete(io, q, ctx)?;
        }
        if io.progress_mark() == mark && qs.iter().any(|q| !q.done) {
            break_deadlock(io, qs, ctx.step)?;
        }
        if io.cost.releases > releases {
            ctx.pressure = false;
        }
    }
    Ok(())
}

/// Forks `node` into `k` decode paths; if the pool cannot give even one child, a `Grown` path
/// waits at `node` and the fork is retried next step.
fn open<E: Engine + ?Sized>(
    io: &mut EngineIo<'_, E>,
    q: &mut QState,
    node: NodeId,
    k: usize,
    ctx: &mut Ctx<'_>,
) -> Result<usize, SampleError> {
    let created = fork_into(io, q, node, k)?;
    if created < k {
        ctx.pressure = true;
    }
    if created == 0 {
        let (engine, key) = (q.engine_node(node), q.keys[node.index()]);
        if let Some(engine) = engine {
            q.paths.push(super::state::Path { node, engine, key, state: PathState::Grown });
        }
    }
    Ok(created)
}

/// The query's width bound: `w`, or token mode's estimate (docs/treepo.md §1.8) from the finished
/// leaves and `mean_len_per_traj` (active: mean active length + l; fallback: mean finished length).
fn upper(config: &TreeConfig, q: &QState, mean_len_per_traj: Option<usize>) -> usize {
    match config.tree_total_budget_policy {
        TotalBudgetPolicy::ByResponseTraj => config.width(),
        TotalBudgetPolicy::ByResponseToken => {
            let budget = config.tree_max_response_token.unwrap_or(0);
            let used: usize = q.tree.leaves.iter().map(|l| l.response_len).sum();
            let per = mean_len_per_traj.unwrap_or(config.segment_len()).max(1);
            let est = budget.saturating_sub(used) / per + q.tree.leaves.len();
            token_mode_upper(config.width(), config.min_width(), est)
        }
    }
}

fn path_stats(q: &QState, node: NodeId) -> PathStats {
    let n = &q.tree.nodes[node.index()];
    let segment_logprob_sum: f64 = n.logprobs.iter().map(|&x| f64::from(x)).sum();
    let response_logprob_sum: f64 = q
        .tree
        .node_path(node)
        .iter()
        .flat_map(|id| q.tree.nodes[id.index()].logprobs.iter())
        .map(|&x| f64::from(x))
        .sum();
    PathStats {
        response_logprob_sum,
        response_len: n.start + n.tokens.len(),
        segment_logprob_sum,
        segment_len: n.tokens.len(),
    }
}

/// Branching (§1.4) for a query with active paths.
fn branch<E: Engine + ?Sized>(
    io: &mut EngineIo<'_, E>,
    q: &mut QState,
    ctx: &mut Ctx<'_>,
) -> Result<(), SampleError> {
    let config = ctx.config;
    let active = q.paths.len();
    let leaves = q.tree.leaves.len();
    let pressure = ctx.pressure;
    let (total, split) = if pressure {
        (active, vec![1; active])
    } else {
        let mean_active =
            q.paths.iter().map(|p| q.tree.nodes[p.node.index()].span().end).sum::<usize>() / active;
        let bound = upper(config, q, Some(mean_active + config.segment_len()));
        let total = branch_total(bound, leaves, q.finished_step, active, config.branch());
        // Only the log-prob policies look at the scores (walking a path is O(depth · l)).
        let stats: Vec<PathStats> = if config.tree_div_policy == DivPolicy::FixedAvg {
            vec![PathStats::default(); active]
        } else {
            q.paths.iter().map(|p| path_stats(q, p.node)).collect()
        };
        (
            total,
            split_budget(
                config.tree_div_policy,
                total,
                &stats,
                config.tree_logprob_div_temperature,
            ),
        )
    };
    q.tree.steps.push(StepTrace {
        step: ctx.step,
        decoded: q.decoded_step,
        finished: q.finished_step,
        leaves,
        active,
        total,
        split: split.clone(),
        kv_pressure: pressure,
    });
    let old = std::mem::take(&mut q.paths);
    for (p, c) in old.into_iter().zip(split) {
        if p.state == PathState::Grown {
            open(io, q, p.node, c, ctx)?;
        } else {
            q.paths.push(p);
        }
    }
    Ok(())
}

/// Fallback (§1.5) for a query without active paths, or completion when its budget is filled.
fn fallback_or_complete<E: Engine + ?Sized>(
    io: &mut EngineIo<'_, E>,
    q: &mut QState,
    ctx: &mut Ctx<'_>,
) -> Result<(), SampleError> {
    let config = ctx.config;
    let leaves = q.tree.leaves.len();
    if q.finished_step > 0 || q.decoded_step > 0 {
        q.tree.steps.push(StepTrace {
            step: ctx.step,
            decoded: q.decoded_step,
            finished: q.finished_step,
            leaves,
            active: 0,
            total: 0,
            split: Vec::new(),
            kv_pressure: ctx.pressure,
        });
    }
    let mean_finished =
        q.tree.leaves.iter().map(|l| l.response_len).sum::<usize>().checked_div(leaves);
    let remaining = upper(config, q, mean_finished).saturating_sub(leaves);
    let candidates: Vec<_> = q.tree.leaves.iter().map(|l| (l.reason, l.response_len)).collect();
    let picks = plan_fallback(config, &candidates, remaining, &mut q.rng);
    if picks.is_empty() {
        return complete(io, q);
    }
    let l = config.segment_len().max(1);
    for pick in picks {
        let node = match pick.leaf {
            None => NodeId::ROOT,
            Some(i) => {
                let path = q.tree.leaf_path(i);
                let depth = (pick.cut / l).min(path.len().saturating_sub(2));
                path.get(depth).copied().unwrap_or(NodeId::ROOT)
            }
        };
        q.tree.fallbacks.push(FallbackEvent {
            step: ctx.step,
            leaf: pick.leaf,
            cut: pick.cut,
            node,
            k: pick.k,
        });
        io.cost.fallbacks += 1;
        open(io, q, node, pick.k, ctx)?;
    }
    Ok(())
}
