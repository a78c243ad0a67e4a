//! A diagnostic count of the CPU backend's parallel regions (rayon fork-joins).
//!
//! Every CPU kernel entry that hands work to rayon (a parallel iterator, or a multi-threaded
//! call into the `gemm` crate) adds one, before it forks; loops too small to fork
//! (`min_len`) run inline and add none. The engine bench divides the count by
//! the token steps it ran to report fork-joins per step: each costs a wake-up of the idle
//! workers and a join (10–50 µs on the 2-core development VM), which is what small models pay
//! per op. Contract: the count is exact for the regions this crate enters; a `gemm` crate call
//! counts once although the crate forks once per cache block it computes (and once more when
//! it packs an operand in parallel), so the figure is a lower bound on the true fork-joins.
//! The counter is one relaxed atomic add per region, cheap next to the fork itself.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

static REGIONS: AtomicU64 = AtomicU64::new(0);

/// Live [`PollingWorkers`] guards.
static POLLING: AtomicUsize = AtomicUsize::new(0);

/// Records that a CPU kernel is about to enter one parallel region.
pub(crate) fn enter() {
    REGIONS.fetch_add(1, Ordering::Relaxed);
}

/// The parallel regions the CPU kernels have entered since the process started (see the module
/// docs for what counts). Diagnostic only: take the difference around the work of interest.
pub fn parallel_regions() -> u64 {
    REGIONS.load(Ordering::Relaxed)
}

/// Elements of work below which a CPU loop runs inline on the calling thread instead of
/// forking: a fork-join costs 10–50 µs once the idle worker sleeps, a pass over this many
/// f32s about as long (the norms and RoPE of a batch-64 decode step at C ≤ 512 stay under it).
pub(crate) const SERIAL_BELOW: usize = 1 << 16;

/// [`SERIAL_BELOW`] while a [`PollingWorkers`] guard lives: a worker that polls for work picks
/// a job up in about a microsecond (the engine's token step measured 101 µs per join asleep,
/// ~1 µs polling; `docs/engine.md`). Timed per op in the demo model's token step on two
/// threads (the engine's `op_times`), its RMSNorms of 2¹³ elements ran faster inline than
/// forked, its SwiGLU of 3 · 2¹³ elements faster forked (`docs/engine.md`).
pub(crate) const SERIAL_BELOW_POLLING: usize = 1 << 14;

/// The elements of work below which loops run inline now (see [`PollingWorkers`]).
pub(crate) fn serial_below() -> usize {
    if POLLING.load(Ordering::Relaxed) > 0 { SERIAL_BELOW_POLLING } else { SERIAL_BELOW }
}

/// While a guard lives, the CPU kernels take rayon's idle workers to be polling for work rather
/// than asleep — as the engine's token loop arranges with `EngineConfig::cpu_spin` — and fork
/// loops from 2¹⁴ elements of work instead of 2¹⁶, GEMMs from 2¹⁶ multiply-adds instead of 2¹⁸,
/// and split a single GEMM of 32–256 rows into row blocks across the workers where that keeps
/// the bits (`cpu::gemm`). A hint for speed only: results do not depend on it. It is
/// process-wide (the kernels cannot tell which pool a caller runs on), so a guard held while
/// the workers are in fact asleep makes small ops fork at the sleeping cost.
#[derive(Debug)]
pub struct PollingWorkers(());

impl PollingWorkers {
    /// Starts the hint; it ends when the guard drops.
    pub fn start() -> Self {
        POLLING.fetch_add(1, Ordering::Relaxed);
        PollingWorkers(())
    }
}

impl Drop for PollingWorkers {
    fn drop(&mut self) {
        POLLING.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Whether a [`PollingWorkers`] guard lives.
pub(crate) fn polling() -> bool {
    POLLING.load(Ordering::Relaxed) > 0
}

/// The `with_min_len` for a rayon loop of `work` elements: `usize::MAX` below
/// [`serial_below`] (one piece, which rayon runs on the calling thread without forking), else
/// 1 — and then the region is recorded ([`enter`]).
pub(crate) fn min_len(work: usize) -> usize {
    if work < serial_below() {
        usize::MAX
    } else {
        enter();
        1
    }
}
