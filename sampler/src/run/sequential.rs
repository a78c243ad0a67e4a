//! The sequential baseline (docs/treepo.md §1.7): `w` independent samples per query, the prompt
//! prefilled once and forked into `w`, each sample decoded in chunks of `l` tokens (appending to
//! its own engine node) with the same stop rules; no branching, no fallback.

use super::SampleError;
use super::io::{EngineIo, Exhausted};
use super::state::{Ctx, Path, PathState, QState, break_deadlock, complete, decode_and_classify};
use crate::engine::Engine;
use crate::tree::{NodeId, StepTrace};

/// The sequential loop (run by `state::run` after the prefill).
pub(super) fn drive<E: Engine + ?Sized>(
    io: &mut EngineIo<'_, E>,
    qs: &mut [QState],
    ctx: &mut Ctx<'_>,
) -> Result<(), SampleError> {
    for q in qs.iter_mut() {
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
    q.open_children(NodeId::ROOT, &children);
    Ok(children.len())
}
