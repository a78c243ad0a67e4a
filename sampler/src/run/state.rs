//! Per-query sampler state and the steps both samplers share: the run around their loops
//! (checks, prefill, cleanup, output), decode + classify, completion and release, the KV
//! deadlock rule.

use std::collections::HashSet;
use std::time::Instant;

use super::io::{EngineIo, Exhausted};
use super::{Query, SampleError};
use crate::classify::{ClassifyRules, FinishReason, TaskHooks, Verdict, classify_segment};
use crate::config::TreeConfig;
use crate::config_check::ConfigWarning;
use crate::engine::{DecodeParams, Engine, EngineNode, SegmentEnd, SegmentRequest};
use crate::seed::{BranchKey, SchedRng};
use crate::tree::{Leaf, NodeId, QueryStatus, QueryTree, RolloutTree, SamplingMode};

/// What an open path waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PathState {
    /// Its node's segment is empty or incomplete: decode into it this step.
    Decode,
    /// Its node's segment is complete (or it is a re-open point): it needs a child first.
    Grown,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Path {
    pub(crate) node: NodeId,
    pub(crate) engine: EngineNode,
    pub(crate) key: BranchKey,
    pub(crate) state: PathState,
}

pub(crate) struct QState {
    pub(crate) tree: QueryTree,
    /// The engine node each tree node owns (`None`: shares its chain's node, or released).
    pub(crate) engine_of: Vec<Option<EngineNode>>,
    /// Branch key per tree node.
    pub(crate) keys: Vec<BranchKey>,
    pub(crate) rng: SchedRng,
    pub(crate) paths: Vec<Path>,
    pub(crate) finished_step: usize,
    pub(crate) decoded_step: usize,
    pub(crate) done: bool,
}

impl QState {
    pub(crate) fn new(q: &Query<'_>, seed: u64) -> Self {
        Self {
            tree: QueryTree::new(q.id, q.prompt),
            engine_of: vec![None],
            keys: vec![BranchKey::root(seed, q.id)],
            rng: SchedRng::for_query(seed, q.id),
            paths: Vec::new(),
            finished_step: 0,
            decoded_step: 0,
            done: false,
        }
    }

    /// Adds a tree child of `parent`; `engine` is the engine node it owns (if any), `key` its
    /// branch key.
    pub(crate) fn add_node(
        &mut self,
        parent: NodeId,
        engine: Option<EngineNode>,
        key: Option<BranchKey>,
    ) -> NodeId {
        let id = self.tree.add_child(parent);
        let key = key.unwrap_or_else(|| {
            self.keys[parent.index()].child(self.tree.nodes[id.index()].ordinal)
        });
        self.engine_of.push(engine);
        self.keys.push(key);
        id
    }

    pub(crate) fn engine_node(&self, node: NodeId) -> Option<EngineNode> {
        self.engine_of.get(node.index()).copied().flatten()
    }

    pub(crate) fn finish(&mut self, node: NodeId, reason: FinishReason, step: u32) {
        let n = &self.tree.nodes[node.index()];
        let response_len = n.start + n.tokens.len();
        self.tree.leaves.push(Leaf { node, reason, response_len, step });
        self.finished_step += 1;
    }

    pub(crate) fn response_tokens_held(&self) -> usize {
        self.tree.tree_tokens()
    }

    /// Adds a tree child of `parent` owning each of `children` (fresh engine nodes forked off
    /// `parent`'s) and opens a `Decode` path on it, in order.
    pub(crate) fn open_children(&mut self, parent: NodeId, children: &[EngineNode]) {
        for &child in children {
            let id = self.add_node(parent, Some(child), None);
            self.paths.push(Path {
                node: id,
                engine: child,
                key: self.keys[id.index()],
                state: PathState::Decode,
            });
        }
    }
}

/// Forks `node` of query `q` into `want` tree+engine children (retrying with one child when the
/// pool is short) and opens a `Decode` path on each. Returns how many were created.
pub(crate) fn fork_into<E: Engine + ?Sized>(
    io: &mut EngineIo<'_, E>,
    q: &mut QState,
    node: NodeId,
    want: usize,
) -> Result<usize, SampleError> {
    let Some(handle) = q.engine_node(node) else {
        return Err(SampleError::Contract {
            phase: super::Phase::Fork,
            detail: format!("tree node {} of query {} has no live engine node", node.0, q.tree.id),
        });
    };
    let mut got = io.fork(handle, want)?;
    if got.is_err() && want > 1 {
        got = io.fork(handle, 1)?;
    }
    let children = match got {
        Ok(children) => children,
        Err(Exhausted) => return Ok(0),
    };
    q.open_children(node, &children);
    Ok(children.len())
}

/// Shared run-wide state.
pub(crate) struct Ctx<'a> {
    pub(crate) config: &'a TreeConfig,
    pub(crate) hooks: &'a dyn TaskHooks,
    pub(crate) params: DecodeParams,
    pub(crate) step: u32,
    /// KV pressure: no branching until some query releases its nodes.
    pub(crate) pressure: bool,
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(config: &'a TreeConfig, hooks: &'a dyn TaskHooks) -> Self {
        let params = DecodeParams {
            stop: config.stop_token_ids.clone(),
            sampling: config.sampling(),
            entropy: config.tree_entropy,
        };
        Self { config, hooks, params, step: 0, pressure: false }
    }

    /// Target length of a segment starting at response position `start`.
    fn target(&self, start: usize) -> usize {
        self.config.segment_len().min(self.config.max_response().saturating_sub(start))
    }
}

/// Decodes every `Decode` path of every unfinished query in one engine call, appends the tokens,
/// and classifies each completed segment: a finished path becomes a leaf, an active one `Grown`,
/// an incomplete one (KV ran out) stays `Decode` and sets KV pressure.
pub(crate) fn decode_and_classify<E: Engine + ?Sized>(
    io: &mut EngineIo<'_, E>,
    qs: &mut [QState],
    ctx: &mut Ctx<'_>,
) -> Result<(), SampleError> {
    let mut reqs = Vec::new();
    let mut owners = Vec::new();
    for (qi, q) in qs.iter_mut().enumerate() {
        q.finished_step = 0;
        q.decoded_step = 0;
        if q.done {
            continue;
        }
        for (pi, p) in q.paths.iter().enumerate().filter(|(_, p)| p.state == PathState::Decode) {
            let n = &q.tree.nodes[p.node.index()];
            let max_tokens = ctx.target(n.start).saturating_sub(n.tokens.len());
            q.decoded_step += 1;
            owners.push((qi, pi, max_tokens > 0));
            if max_tokens > 0 {
                let response_offset = (n.start + n.tokens.len()) as u64;
                reqs.push(SegmentRequest {
                    node: p.engine,
                    key: p.key,
                    response_offset,
                    max_tokens,
                });
            }
        }
    }
    if owners.is_empty() {
        return Ok(());
    }
    let mut outs =
        if reqs.is_empty() { Vec::new() } else { io.decode(&reqs, &ctx.params)? }.into_iter();
    let rules = ClassifyRules {
        stop: &ctx.config.stop_token_ids,
        max_response: ctx.config.max_response(),
        max_depth: ctx.config.depth(),
        repetition: ctx.config.tree_repetition_es_policy,
        boxed_eos: ctx.config.tree_boxed_eos_policy,
    };
    let mut finished: Vec<Vec<usize>> = vec![Vec::new(); qs.len()];
    for (qi, pi, requested) in owners {
        let q = &mut qs[qi];
        let path = q.paths[pi];
        let node = &mut q.tree.nodes[path.node.index()];
        let mut exhausted = false;
        if requested {
            let Some(out) = outs.next() else { break };
            if node.step == 0 {
                node.step = ctx.step;
            }
            node.entropies = match (node.entropies.take(), out.entropies) {
                (Some(mut v), Some(e)) => {
                    v.extend(e);
                    Some(v)
                }
                (None, Some(e)) if node.tokens.is_empty() => Some(e),
                _ => None,
            };
            node.tokens.extend(out.tokens);
            node.logprobs.extend(out.logprobs);
            exhausted = out.end == SegmentEnd::KvExhausted;
        }
        if exhausted && node.tokens.len() < ctx.target(node.start) {
            ctx.pressure = true;
            continue;
        }
        let response_len = node.start + node.tokens.len();
        match classify_segment(&node.tokens, response_len, node.depth as usize, &rules, ctx.hooks) {
            Verdict::Active => q.paths[pi].state = PathState::Grown,
            Verdict::Finish { reason, truncate_to } => {
                if let Some(len) = truncate_to {
                    let keep = len.saturating_sub(node.start);
                    node.tokens.truncate(keep);
                    node.logprobs.truncate(keep);
                    if let Some(e) = node.entropies.as_mut() {
                        e.truncate(keep);
                    }
                }
                q.finish(path.node, reason, ctx.step);
                finished[qi].push(pi);
            }
        }
    }
    for (q, gone) in qs.iter_mut().zip(finished) {
        let gone: HashSet<usize> = gone.into_iter().collect();
        let mut i = 0;
        q.paths.retain(|_| {
            i += 1;
            !gone.contains(&(i - 1))
        });
    }
    Ok(())
}

/// Releases every engine node a query owns, children before parents, and marks it done.
pub(crate) fn complete<E: Engine + ?Sized>(
    io: &mut EngineIo<'_, E>,
    q: &mut QState,
) -> Result<(), SampleError> {
    q.done = true;
    for i in (0..q.engine_of.len()).rev() {
        if let Some(node) = q.engine_of[i].take() {
            io.release(node)?;
        }
    }
    Ok(())
}

/// The deadlock rule: finishes the unfinished query holding the most response tokens with
/// `KvExhausted` leaves and releases it.
pub(crate) fn break_deadlock<E: Engine + ?Sized>(
    io: &mut EngineIo<'_, E>,
    qs: &mut [QState],
    step: u32,
) -> Result<(), SampleError> {
    let victim = qs
        .iter()
        .enumerate()
        .filter(|(_, q)| !q.done)
        .max_by(|(ia, a), (ib, b)| {
            a.response_tokens_held().cmp(&b.response_tokens_held()).then(ib.cmp(ia))
        })
        .map(|(i, _)| i);
    let Some(v) = victim else { return Ok(()) };
    let q = &mut qs[v];
    for p in std::mem::take(&mut q.paths) {
        let owns_segment =
            p.node != NodeId::ROOT && q.tree.nodes[p.node.index()].children.is_empty();
        if owns_segment {
            q.finish(p.node, FinishReason::KvExhausted, step);
        }
    }
    q.tree.status = QueryStatus::KvLimited;
    complete(io, q)
}

/// One run of either sampler: the checks, one prefill of every prompt (each query's root then
/// owns its prompt's engine node), the sampler's own loop `drive`, a best-effort cleanup when
/// anything failed, the output tree.
pub(crate) fn run<E, D>(
    config: &TreeConfig,
    hooks: &dyn TaskHooks,
    warnings: &[ConfigWarning],
    engine: &mut E,
    queries: &[Query<'_>],
    mode: SamplingMode,
    drive: D,
) -> Result<RolloutTree, SampleError>
where
    E: Engine + ?Sized,
    D: FnOnce(&mut EngineIo<'_, E>, &mut [QState], &mut Ctx<'_>) -> Result<(), SampleError>,
{
    let started = Instant::now();
    config.validate()?;
    check_ids(queries)?;
    let mut io = EngineIo::new(engine);
    let mut qs: Vec<QState> = queries.iter().map(|q| QState::new(q, config.seed)).collect();
    let mut ctx = Ctx::new(config, hooks);
    if let Err(e) = prefill_and_drive(&mut io, &mut qs, &mut ctx, queries, drive) {
        cleanup(&mut io, &mut qs);
        return Err(e);
    }
    Ok(into_tree(io, qs, mode, warnings, started))
}

fn prefill_and_drive<E, D>(
    io: &mut EngineIo<'_, E>,
    qs: &mut [QState],
    ctx: &mut Ctx<'_>,
    queries: &[Query<'_>],
    drive: D,
) -> Result<(), SampleError>
where
    E: Engine + ?Sized,
    D: FnOnce(&mut EngineIo<'_, E>, &mut [QState], &mut Ctx<'_>) -> Result<(), SampleError>,
{
    if qs.is_empty() {
        return Ok(());
    }
    let prompts: Vec<&[u32]> = queries.iter().map(|q| q.prompt).collect();
    let roots = io.prefill(&prompts)?;
    for (q, root) in qs.iter_mut().zip(roots) {
        q.engine_of[0] = Some(root);
    }
    drive(io, qs, ctx)
}

/// Best-effort release of everything still held (after a fatal error).
fn cleanup<E: Engine + ?Sized>(io: &mut EngineIo<'_, E>, qs: &mut [QState]) {
    for q in qs.iter_mut() {
        for i in (0..q.engine_of.len()).rev() {
            if let Some(node) = q.engine_of[i].take() {
                // The run already failed; a second error changes nothing for the caller.
                let _ = io.release(node);
            }
        }
    }
}

/// Rejects duplicate query ids.
fn check_ids(queries: &[Query<'_>]) -> Result<(), SampleError> {
    let mut seen = HashSet::new();
    match queries.iter().find(|q| !seen.insert(q.id)) {
        Some(q) => Err(SampleError::DuplicateQueryId(q.id)),
        None => Ok(()),
    }
}

/// Assembles the output.
fn into_tree<E: Engine + ?Sized>(
    io: EngineIo<'_, E>,
    qs: Vec<QState>,
    mode: SamplingMode,
    warnings: &[ConfigWarning],
    started: Instant,
) -> RolloutTree {
    let mut cost = io.cost;
    cost.time.total = started.elapsed();
    cost.time.scheduler = cost.time.total.saturating_sub(cost.time.engine());
    RolloutTree {
        mode,
        queries: qs.into_iter().map(|q| q.tree).collect(),
        cost,
        warnings: warnings.to_vec(),
    }
}
