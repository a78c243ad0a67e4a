//! The samplers' only door to the engine: every call is timed, counted, checked against the
//! contract, and followed by a peak-KV observation.

use std::time::Instant;

use super::{Phase, SampleError};
use crate::engine::{
    DecodeParams, Engine, EngineError, EngineNode, SegmentEnd, SegmentOutput, SegmentRequest,
};
use crate::tree::Cost;

/// A fork that could not get pages.
pub(crate) struct Exhausted;

pub(crate) struct EngineIo<'e, E: ?Sized> {
    engine: &'e mut E,
    pub(crate) cost: Cost,
}

/// Counters whose change means a step made progress.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProgressMark(usize, usize, usize);

impl<'e, E: Engine + ?Sized> EngineIo<'e, E> {
    pub(crate) fn new(engine: &'e mut E) -> Self {
        let mut io = Self { engine, cost: Cost::default() };
        io.observe();
        io
    }

    fn observe(&mut self) {
        self.cost.peak_kv_pages = self.cost.peak_kv_pages.max(self.engine.kv_pages_in_use());
    }

    pub(crate) fn progress_mark(&self) -> ProgressMark {
        ProgressMark(self.cost.tokens_decoded, self.cost.forks, self.cost.releases)
    }

    pub(crate) fn prefill(&mut self, prompts: &[&[u32]]) -> Result<Vec<EngineNode>, SampleError> {
        let t = Instant::now();
        let r = self.engine.prefill(prompts);
        self.cost.time.prefill += t.elapsed();
        self.observe();
        let nodes = r.map_err(|source| SampleError::Engine { phase: Phase::Prefill, source })?;
        if nodes.len() != prompts.len() {
            return Err(contract(
                Phase::Prefill,
                format!("{} nodes for {} prompts", nodes.len(), prompts.len()),
            ));
        }
        self.cost.prefill_tokens += prompts.iter().map(|p| p.len()).sum::<usize>();
        Ok(nodes)
    }

    /// `Ok(Err(Exhausted))` when the pool is out of pages (recoverable).
    pub(crate) fn fork(
        &mut self,
        node: EngineNode,
        n: usize,
    ) -> Result<Result<Vec<EngineNode>, Exhausted>, SampleError> {
        let t = Instant::now();
        let r = self.engine.fork(node, n);
        self.cost.time.fork += t.elapsed();
        self.observe();
        match r {
            Ok(children) if children.len() == n => {
                self.cost.forks += 1;
                self.cost.fork_children += n;
                Ok(Ok(children))
            }
            Ok(children) => Err(contract(
                Phase::Fork,
                format!("{} children for fork({node}, {n})", children.len()),
            )),
            Err(EngineError::KvExhausted { .. }) => {
                self.cost.kv_exhausted_events += 1;
                Ok(Err(Exhausted))
            }
            Err(source) => Err(SampleError::Engine { phase: Phase::Fork, source }),
        }
    }

    /// One batched decode. A whole-call `KvExhausted` becomes an empty, exhausted output per
    /// request.
    pub(crate) fn decode(
        &mut self,
        reqs: &[SegmentRequest],
        params: &DecodeParams,
    ) -> Result<Vec<SegmentOutput>, SampleError> {
        let t = Instant::now();
        let r = self.engine.decode_segment(reqs, params);
        self.cost.time.decode += t.elapsed();
        self.observe();
        self.cost.engine_steps += 1;
        self.cost.segments_decoded += reqs.len();
        let outs = match r {
            Ok(outs) => outs,
            Err(EngineError::KvExhausted { .. }) => reqs
                .iter()
                .map(|_| SegmentOutput {
                    tokens: Vec::new(),
                    logprobs: Vec::new(),
                    entropies: None,
                    end: SegmentEnd::KvExhausted,
                })
                .collect(),
            Err(source) => return Err(SampleError::Engine { phase: Phase::Decode, source }),
        };
        if outs.len() != reqs.len() {
            return Err(contract(
                Phase::Decode,
                format!("{} outputs for {} requests", outs.len(), reqs.len()),
            ));
        }
        for (i, (req, out)) in reqs.iter().zip(&outs).enumerate() {
            let n = out.tokens.len();
            if n > req.max_tokens
                || out.logprobs.len() != n
                || out.entropies.as_ref().is_some_and(|e| e.len() != n)
            {
                return Err(contract(
                    Phase::Decode,
                    format!(
                        "request {i}: {n} tokens (max {}), {} log-probs, {:?} entropies",
                        req.max_tokens,
                        out.logprobs.len(),
                        out.entropies.as_ref().map(Vec::len)
                    ),
                ));
            }
            if out.end == SegmentEnd::KvExhausted {
                self.cost.kv_exhausted_events += 1;
            }
            self.cost.tokens_decoded += n;
        }
        Ok(outs)
    }

    pub(crate) fn release(&mut self, node: EngineNode) -> Result<(), SampleError> {
        let t = Instant::now();
        let r = self.engine.release(node);
        self.cost.time.release += t.elapsed();
        self.observe();
        r.map_err(|source| SampleError::Engine { phase: Phase::Release, source })?;
        self.cost.releases += 1;
        Ok(())
    }
}

fn contract(phase: Phase, detail: String) -> SampleError {
    SampleError::Contract { phase, detail }
}
