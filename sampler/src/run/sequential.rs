//! The sequential baseline (TREEPO.md §1.7): `w` independent samples per query, the prompt
//! prefilled once and forked into `w`, each sample decoded in chunks of `l` tokens (appending to
//! its own engine node) with the same stop rules; no branching, no fallback.

use std::time::Instant;

use super::io::{EngineIo, Exhausted};
use super::state::{
    Ctx, Path, PathState, QState, break_deadlock, check_ids, cleanup, complete,
    decode_and_classify, into_tree,
};
use super::{Query, SampleError};
use crate::classify::TaskHooks;
use crate::config::TreeConfig;
use crate::config_check::ConfigWarning;
use crate::engine::Engine;
use crate::tree::{NodeId, RolloutTree, SamplingMode, StepTrace};

pub(super) fn run<E: Engine + ?Sized>(
    config: &TreeConfig,
    hooks: &dyn TaskHooks,
    warnings: &[ConfigWarning],
    engine: &mut E,
    queries: &[Query<'_>],
) -> Result<RolloutTree, SampleError> {
    let started = Instant::now();
    config.validate()?;
    check_ids(queries)?;
    let mut io = EngineIo::new(engine);
    let mut qs: Vec<QState> = queries.iter().map(|q| QState::new(q, config.seed)).collect();
    let mut ctx = Ctx::new(config, hooks);
    if let Err(e) = drive(&mut io, &mut qs, &mut ctx, queries) {
        cleanup(&mut io, &mut qs);
        return Err(e);
    }
    Ok(into_tree(io, qs, SamplingMode::Sequential, warnings, started))
}

fn drive<E: Engine + ?Sized>(
    io: &mut EngineIo<'_, E>,
    qs: &mut [QState],
    ctx: &mut Ctx<'_>,
    queries: &[Query<'_>],
) -> Result<(), SampleError> {
    if qs.is_empty() {
        return Ok(());
    }
    let prompts: Vec<&[u32]> = queries.iter().map(|q| q.prompt).collect();
    let roots = io.prefill(&prompts)?;
    for (q, root) in qs.iter_mut().zip(roots) {
        q.engine_of[0] = Some(root);
        q.tree.initial_fanout = ctx.config.width();
    }
    // Samples not yet forked off the prompt node (the pool may be short).
    let mut pending = vec![ctx.config.width(); qs.len()];
    while qs.iter().any(|q| !q.done) {
        ctx.step += 1;
        let mark = io.progress_mark();
        for (q, want) in qs.iter_mut().zip(pending.iter_mut()).filter(|(q, _)| !q.done) {
            *want -= fork_samples(io, q, *want)?;
            // A complete chunk continues in a new tree node on the same engine node and key.
            for i in 0..q.paths.len() {
                let p = q.paths[i];
                if p.state == PathState::Grown {
                    let child = q.add_node(p.node, None, Some(p.key));
                    q.paths[i] = Path { node: child, state: PathState::Decode, ..p };
                }
            }
        }
        decode_and_classify(io, qs, ctx)?;
        for (q, want) in qs.iter_mut().zip(pending.iter_mut()).filter(|(q, _)| !q.done) {
            q.tree.steps.push(StepTrace {
                step: ctx.step,
                decoded: q.decoded_step,
                finished: q.finished_step,
                leaves: q.tree.leaves.len(),
                active: q.paths.len(),
                total: q.paths.len(),
                split: vec![1; q.paths.len()],
                kv_pressure: ctx.pressure,
            });
            if q.paths.is_empty() && *want == 0 {
                complete(io, q)?;
            }
        }
        if io.progress_mark() == mark && qs.iter().any(|q| !q.done) {
            break_deadlock(io, qs, ctx.step)?;
            for (q, want) in qs.iter().zip(pending.iter_mut()) {
                if q.done {
                    *want = 0;
                }
            }
        }
    }
    Ok(())
}

/// Forks up to `want` samples off the prompt node (one at a time once the pool is short);
/// returns how many were created.
fn fork_samples<E: Engine + ?Sized>(
    io: &mut EngineIo<'_, E>,
    q: &mut QState,
    want: usize,
) -> Result<usize, SampleError> {
    let Some(root) = q.engine_node(NodeId::ROOT) else { return Ok(0) };
    if want == 0 {
        return Ok(0);
    }
    let children = match io.fork(root, want)? {
        Ok(children) => children,
        Err(Exhausted) if want > 1 => {
            let mut children = Vec::new();
            while children.len() < want {
                match io.fork(root, 1)? {
                    Ok(mut one) => children.append(&mut one),
                    Err(Exhausted) => break,
                }
            }
            children
        }
        Err(Exhausted) => Vec::new(),
    };
    for &child in &children {
        let id = q.add_node(NodeId::ROOT, Some(child), None);
        q.paths.push(Path {
            node: id,
            engine: child,
            key: q.keys[id.index()],
            state: PathState::Decode,
        });
    }
    Ok(children.len())
}
