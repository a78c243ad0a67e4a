//! Deterministic, cheap engines for tests, examples and benchmarks.
//!
//! [`ToyEngine`] implements [`Engine`] over a node arena with a realistic page model
//! ([`KvConfig`]: page size, pool size — shrink the pool to exercise KV exhaustion) and a
//! pluggable [`ToyModel`] that picks tokens position by position, batched over the rows still
//! decoding:
//! * [`MarkovModel`]: a seeded Markov chain over the 16-symbol [`VOCAB`] whose next-token logits
//!   depend on (last token, position); it samples through [`crate::logits`] with the uniforms of
//!   the requests' branch keys, so log-probs are real and replays are exact.
//! * [`ScriptedModel`]: returns predetermined segments per (query, child-ordinal path), so every
//!   scheduler rule can be pinned by hand.

mod arena;
mod markov;
mod scripted;

use std::collections::HashSet;

pub use arena::KvConfig;
pub use markov::{MarkovConfig, MarkovModel};
pub use scripted::{ScriptSegment, ScriptedModel};

use crate::classify::TextHooks;
use crate::engine::{
    DecodeParams, Engine, EngineError, EngineNode, SegmentEnd, SegmentOutput, SegmentRequest,
};
use crate::logits::Sampled;
use arena::Arena;

/// The toy vocabulary: ids 0 and 1 are stop tokens, 2 opens `\boxed{`, 3 closes it.
pub const VOCAB: [&str; 16] = [
    "<eos>", "<eot>", "\\boxed{", "}", "{", "0", "1", "2", "3", "+", "=", " ", "a", "b", "c", "\n",
];
/// `<eos>`.
pub const EOS: u32 = 0;
/// `<eot>` (a second stop id).
pub const EOT: u32 = 1;
/// `\boxed{`.
pub const BOXED_OPEN: u32 = 2;
/// `}`.
pub const CLOSE: u32 = 3;

/// Text of toy tokens (ids outside the vocabulary render as `?`).
#[must_use]
pub fn detokenize(tokens: &[u32]) -> String {
    tokens.iter().map(|&t| VOCAB.get(t as usize).copied().unwrap_or("?")).collect()
}

/// TreePO's text hooks over the toy vocabulary.
#[must_use]
pub fn text_hooks() -> TextHooks<fn(&[u32]) -> String> {
    TextHooks::new(detokenize as fn(&[u32]) -> String)
}

/// One request still decoding at the current position.
#[derive(Clone, Copy, Debug)]
pub struct Row<'a> {
    /// Prefill index of the request's query.
    pub query: usize,
    /// Child ordinals from the prompt node to the request's node.
    pub path: &'a [u32],
    /// Last token of the context (`None` for an empty context).
    pub last_token: Option<u32>,
    /// Context position of the token to produce.
    pub position: usize,
    /// Tokens the node already holds before this one.
    pub node_pos: usize,
    /// The request's uniform for this token.
    pub uniform: f64,
}

/// A token source for [`ToyEngine`].
pub trait ToyModel {
    /// The next token of every row (`None` ends that row's segment without a stop token).
    fn next_tokens(
        &mut self,
        rows: &[Row<'_>],
        params: &DecodeParams,
    ) -> Result<Vec<Option<Sampled>>, EngineError>;
}

/// Call counters of a toy engine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ToyStats {
    /// `prefill` calls.
    pub prefills: usize,
    /// Successful `fork` calls.
    pub forks: usize,
    /// `decode_segment` calls.
    pub decodes: usize,
    /// Successful `release` calls.
    pub releases: usize,
    /// Tokens appended.
    pub tokens: usize,
}

/// A deterministic engine over an arena and a [`ToyModel`].
pub struct ToyEngine<M> {
    arena: Arena,
    model: M,
    stats: ToyStats,
}

impl<M: ToyModel> ToyEngine<M> {
    /// An engine with the given model and KV pool.
    pub fn new(model: M, kv: KvConfig) -> Self {
        Self { arena: Arena::new(kv), model, stats: ToyStats::default() }
    }

    /// Call counters.
    #[must_use]
    pub fn stats(&self) -> ToyStats {
        self.stats
    }

    /// Nodes whose handles are still valid.
    #[must_use]
    pub fn live_nodes(&self) -> usize {
        self.arena.live_nodes()
    }

    /// Pages in use (the same as [`Engine::kv_pages_in_use`], without importing the trait).
    #[must_use]
    pub fn kv_pages_in_use(&self) -> usize {
        self.arena.pages_in_use()
    }

    /// Free pages in the pool.
    #[must_use]
    pub fn free_pages(&self) -> usize {
        self.arena.free_pages()
    }

    /// Context length of a live node.
    pub fn context_len(&self, node: EngineNode) -> Result<usize, EngineError> {
        Ok(self.arena.get(node)?.len)
    }

    /// The model.
    pub fn model(&self) -> &M {
        &self.model
    }
}

impl ToyEngine<MarkovModel> {
    /// A Markov-chain engine.
    #[must_use]
    pub fn markov(config: MarkovConfig, kv: KvConfig) -> Self {
        Self::new(MarkovModel::new(config), kv)
    }
}

impl<M: ToyModel> Engine for ToyEngine<M> {
    fn prefill(&mut self, prompts: &[&[u32]]) -> Result<Vec<EngineNode>, EngineError> {
        let nodes = self.arena.prefill(prompts)?;
        self.stats.prefills += 1;
        Ok(nodes)
    }

    fn fork(&mut self, node: EngineNode, n: usize) -> Result<Vec<EngineNode>, EngineError> {
        let children = self.arena.fork(node, n)?;
        self.stats.forks += 1;
        Ok(children)
    }

    fn decode_segment(
        &mut self,
        reqs: &[SegmentRequest],
        params: &DecodeParams,
    ) -> Result<Vec<SegmentOutput>, EngineError> {
        let mut seen = HashSet::new();
        for r in reqs {
            self.arena.check_appendable(r.node)?;
            if !seen.insert(r.node) {
                return Err(EngineError::InvalidRequest(format!(
                    "{} appears twice in one decode call",
                    r.node
                )));
            }
        }
        self.stats.decodes += 1;
        let mut outs: Vec<SegmentOutput> = reqs
            .iter()
            .map(|_| SegmentOutput {
                tokens: Vec::new(),
                logprobs: Vec::new(),
                entropies: None,
                end: SegmentEnd::MaxTokens,
            })
            .collect();
        let compute_entropy = params.entropy == crate::logits::EntropyMode::Compute;
        if compute_entropy {
            outs.iter_mut().for_each(|o| o.entropies = Some(Vec::new()));
        }
        let mut open: Vec<usize> = (0..reqs.len()).collect();
        let mut node_pos: Vec<usize> = Vec::with_capacity(reqs.len());
        for r in reqs {
            let d = self.arena.get(r.node)?;
            node_pos.push(d.len - d.start);
        }
        loop {
            open.retain(|&i| outs[i].tokens.len() < reqs[i].max_tokens);
            // Rows that need a page the pool does not have end here; earlier requests in the
            // batch get pages first.
            let mut budget = self.arena.free_pages();
            let mut blocked = Vec::new();
            for &i in &open {
                if self.arena.needs_page(reqs[i].node)? {
                    if budget == 0 {
                        outs[i].end = SegmentEnd::KvExhausted;
                        blocked.push(i);
                    } else {
                        budget -= 1;
                    }
                }
            }
            open.retain(|i| !blocked.contains(i));
            if open.is_empty() {
                break;
            }
            let datas: Vec<&arena::NodeData> =
                open.iter().map(|&i| self.arena.get(reqs[i].node)).collect::<Result<_, _>>()?;
            let rows: Vec<Row<'_>> = open
                .iter()
                .zip(&datas)
                .map(|(&i, d)| Row {
                    query: d.query,
                    path: &d.path,
                    last_token: d.last_token,
                    position: d.len,
                    node_pos: node_pos[i] + outs[i].tokens.len(),
                    uniform: reqs[i].uniform(outs[i].tokens.len()),
                })
                .collect();
            let next = self.model.next_tokens(&rows, params)?;
            if next.len() != rows.len() {
                return Err(EngineError::Backend(format!(
                    "model returned {} tokens for {} rows",
                    next.len(),
                    rows.len()
                )));
            }
            let mut ended = Vec::new();
            for (&i, s) in open.iter().zip(next) {
                let Some(s) = s else {
                    ended.push(i);
                    continue;
                };
                self.arena.append(reqs[i].node, s.token)?;
                self.stats.tokens += 1;
                let o = &mut outs[i];
                o.tokens.push(s.token);
                o.logprobs.push(s.logprob);
                if let Some(e) = o.entropies.as_mut() {
                    e.push(s.entropy.unwrap_or(0.0));
                }
                if params.stop.contains(&s.token) {
                    o.end = SegmentEnd::Stop;
                    ended.push(i);
                }
            }
            open.retain(|i| !ended.contains(i));
        }
        Ok(outs)
    }

    fn release(&mut self, node: EngineNode) -> Result<(), EngineError> {
        self.arena.release(node)?;
        self.stats.releases += 1;
        Ok(())
    }

    fn kv_pages_in_use(&self) -> usize {
        self.arena.pages_in_use()
    }
}
