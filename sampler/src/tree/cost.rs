//! Cost accounting of a sampling run.

use std::time::Duration;

/// Wall time per phase. `scheduler` is everything that is not an engine call (classification,
/// budgets, fallback planning, bookkeeping), so `scheduler / engine_steps` is the per-step
/// scheduler overhead.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PhaseTimes {
    /// `Engine::prefill`.
    pub prefill: Duration,
    /// `Engine::decode_segment`.
    pub decode: Duration,
    /// `Engine::fork`.
    pub fork: Duration,
    /// `Engine::release`.
    pub release: Duration,
    /// Everything else.
    pub scheduler: Duration,
    /// The whole run.
    pub total: Duration,
}

impl PhaseTimes {
    /// Time spent inside the engine.
    #[must_use]
    pub fn engine(&self) -> Duration {
        self.prefill + self.decode + self.fork + self.release
    }
}

/// Counters of one run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cost {
    /// Prompt tokens prefilled.
    pub prefill_tokens: usize,
    /// Response tokens the engine decoded (each shared segment counted once).
    pub tokens_decoded: usize,
    /// `decode_segment` calls (one per step with work).
    pub engine_steps: usize,
    /// Segment requests over all calls (a resumed segment counts again).
    pub segments_decoded: usize,
    /// Successful `fork` calls.
    pub forks: usize,
    /// Nodes created by forks.
    pub fork_children: usize,
    /// Fallback re-openings (forks planned by fallback rounds).
    pub fallbacks: usize,
    /// Nodes released.
    pub releases: usize,
    /// Highest `kv_pages_in_use` seen after any engine call.
    pub peak_kv_pages: usize,
    /// Engine operations that hit `KvExhausted` (forks, decode requests, decode calls).
    pub kv_exhausted_events: usize,
    /// Wall time per phase.
    pub time: PhaseTimes,
}
