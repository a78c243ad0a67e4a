//! `decode_segment`: batched sampling and feeding for every requested leaf.
//!
//! Invariant: every live node holds its **pending hidden** (final-norm output of its last
//! token), so a step is
//! 1. *budget*: a row whose next token opens a page gets one if the pool has it (earlier
//!    requests first), else it ends with `KvExhausted` before sampling — so every sampled
//!    token can be fed and is "appended" as the contract says; a row at `max_context` ends with
//!    `MaxTokens`;
//! 2. *sample*: `logits = H · lm_headᵀ` for the rows of `H` in one GEMM, the `sample` kernel with
//!    the uniform `req.uniform(i)` of each row's `i`-th token; a row ends after a stop token or
//!    at `max_tokens`;
//! 3. *feed*: every sampled token — the ones that ended their row included, so a finished
//!    leaf stays forkable (TreePO's fallback re-opens finished paths) — is appended (tree-kv
//!    slot + `paged_kv_append`) and run through all layers, one row per leaf, under one tree
//!    decode plan; the final norms of these rows are the next step's `H`.
//!
//! `H` keeps the rows fed last (rows that left are sampled once more and ignored: no gather
//! kernel, at most one wasted row per request). When rows leave after a feed their hidden
//! states are downloaded once and stored in their nodes.

use std::collections::HashSet;

use tree_kv::{NodeId, Slot};
use treepo_sampler::{
    DecodeParams, EngineError, EntropyMode, SegmentEnd, SegmentOutput, SegmentRequest,
};

use super::ModelEngine;
use super::error::{backend, kv};
use super::forward::Rows;
use super::sample::{sample_params, uniform_f32};

/// Host scratch of one forward's rows (reused: no allocation in the steady state).
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    pub leaves: Vec<NodeId>,
    pub spans: Vec<(u32, u32)>,
    pub ids: Vec<i32>,
    pub pos: Vec<i32>,
    pub slots: Vec<i32>,
    slot: Vec<Slot>,
    uniforms: Vec<f32>,
}

impl Scratch {
    pub fn clear_rows(&mut self) {
        self.leaves.clear();
        self.spans.clear();
        self.ids.clear();
        self.pos.clear();
        self.slots.clear();
    }
}

/// Per-request state of one call.
struct Req {
    kv: NodeId,
    open: bool,
    active: bool,
}

impl ModelEngine<'_> {
    pub(super) fn decode_impl(
        &mut self,
        reqs: &[SegmentRequest],
        params: &DecodeParams,
    ) -> Result<Vec<SegmentOutput>, EngineError> {
        let sp = sample_params(&params.sampling)?;
        let mut seen = HashSet::with_capacity(reqs.len());
        let mut state = Vec::with_capacity(reqs.len());
        for r in reqs {
            let kv = self.appendable(r.node)?;
            if !seen.insert(r.node) {
                return Err(EngineError::InvalidRequest(format!(
                    "{} appears twice in one decode call",
                    r.node
                )));
            }
            state.push(Req { kv, open: r.max_tokens > 0, active: false });
        }
        let entropy = params.entropy == EntropyMode::Compute;
        let mut outs: Vec<SegmentOutput> = reqs
            .iter()
            .map(|_| SegmentOutput {
                tokens: Vec::new(),
                logprobs: Vec::new(),
                entropies: entropy.then(Vec::new),
                end: SegmentEnd::MaxTokens,
            })
            .collect();
        let order: Vec<usize> = (0..reqs.len()).filter(|&i| state[i].open).collect();
        for group in order.chunks(self.core.max_rows) {
            let mut g = Group { reqs, state: &mut state, outs: &mut outs, params, entropy };
            self.decode_group(&mut g, group, &sp)?;
        }
        Ok(outs)
    }

    fn decode_group(
        &mut self,
        g: &mut Group<'_>,
        group: &[usize],
        sp: &treepo_kernels::ops::SampleParams,
    ) -> Result<(), EngineError> {
        let (c, vocab) = (self.core.d.c, self.core.d.vocab);
        let mut host = Vec::with_capacity(group.len() * c);
        for &i in group {
            host.extend_from_slice(&self.nodes.get(g.reqs[i].node)?.hidden);
        }
        self.core
            .ws
            .ensure(&self.core.dev, &self.core.d, group.len(), self.core.max_rows)
            .map_err(backend)?;
        self.core.put_hidden(&host)?;
        // Request index of each row of H, and whether H came from a feed of this call.
        let mut h_rows = group.to_vec();
        let mut active = Vec::with_capacity(group.len());
        let mut fed = false;
        let ps = self.cache.page_size();
        loop {
            active.clear();
            let mut budget = self.cache.num_free() + self.cache.num_cached();
            for &i in &h_rows {
                let st = &mut g.state[i];
                st.active = false;
                if !st.open {
                    continue;
                }
                let end = self.cache.node(st.kv).map_err(|e| kv("node", e))?.end;
                if end as usize >= self.core.max_context {
                    st.open = false;
                    continue;
                }
                if end % ps == 0 {
                    if budget == 0 {
                        g.outs[i].end = SegmentEnd::KvExhausted;
                        st.open = false;
                        continue;
                    }
                    budget -= 1;
                }
                st.active = true;
                active.push(i);
            }
            if fed && active.len() < h_rows.len() {
                let h = self.core.get_hidden(h_rows.len())?;
                for (row, &i) in h_rows.iter().enumerate() {
                    if !g.state[i].active {
                        let node = g.reqs[i].node;
                        self.nodes
                            .get_mut(node)?
                            .hidden
                            .copy_from_slice(&h[row * c..(row + 1) * c]);
                    }
                }
            }
            if active.is_empty() {
                return Ok(());
            }
            // Sample every row of H; rows that left get u = 0 and are ignored.
            let s = &mut self.scratch;
            s.uniforms.clear();
            for &i in &h_rows {
                let u =
                    if g.state[i].active { g.reqs[i].uniform(g.outs[i].tokens.len()) } else { 0.0 };
                s.uniforms.push(uniform_f32(u));
            }
            self.core.sample(h_rows.len(), &s.uniforms, sp, g.entropy, &mut self.drawn)?;
            self.stats.decode_steps += 1;
            for (row, &i) in h_rows.iter().enumerate() {
                if !g.state[i].active {
                    continue;
                }
                let t = self.drawn.tokens[row];
                if t < 0 || t as usize >= vocab {
                    return Err(EngineError::Backend(format!(
                        "sampling returned token {t} (non-finite logits?)"
                    )));
                }
                let (t, o) = (t as u32, &mut g.outs[i]);
                o.tokens.push(t);
                o.logprobs.push(self.drawn.logprobs[row]);
                if let Some(e) = o.entropies.as_mut() {
                    e.push(self.drawn.entropy[row]);
                }
                if g.params.stop.contains(&t) {
                    o.end = SegmentEnd::Stop;
                    g.state[i].open = false;
                } else if o.tokens.len() >= g.reqs[i].max_tokens {
                    g.state[i].open = false;
                }
            }
            self.stats.sampled_tokens += active.len() as u64;
            self.feed(g, &active)?;
            std::mem::swap(&mut h_rows, &mut active);
            fed = true;
        }
    }

    /// Appends each active request's last sampled token and runs them through the layers.
    fn feed(&mut self, g: &Group<'_>, active: &[usize]) -> Result<(), EngineError> {
        let ps = self.cache.page_size();
        let s = &mut self.scratch;
        s.clear_rows();
        for &i in active {
            let id = g.state[i].kv;
            let t = g.outs[i].tokens.last().copied().unwrap_or_default();
            s.slot.clear();
            // Cannot run out: the budget step reserved a page for every row that opens one.
            self.cache.append_into(id, &[t], &mut s.slot).map_err(|e| kv("append", e))?;
            let end = self.cache.node(id).map_err(|e| kv("node", e))?.end;
            s.leaves.push(id);
            s.spans.push((end - 1, end));
            s.ids.push(t as i32);
            s.pos.push(end as i32 - 1);
            s.slots.push(s.slot[0].flat(ps) as i32);
        }
        let rows = Rows {
            leaves: &s.leaves,
            spans: &s.spans,
            ids: &s.ids,
            positions: &s.pos,
            slots: &s.slots,
        };
        self.core.forward(&self.cache, &rows)?;
        self.stats.forwards += 1;
        self.stats.rows += active.len() as u64;
        Ok(())
    }
}

/// The borrowed state of one `decode_segment` call.
struct Group<'a> {
    reqs: &'a [SegmentRequest],
    state: &'a mut [Req],
    outs: &'a mut [SegmentOutput],
    params: &'a DecodeParams,
    entropy: bool,
}
