//! A diagnostic count of the CPU backend's parallel regions (rayon fork-joins).
//!
//! Every CPU kernel entry that hands work to rayon (a parallel iterator, or a multi-threaded
//! call into the `gemm` crate) adds one, before it forks. The engine bench divides the count by
//! the token steps it ran to report fork-joins per step: each costs a wake-up of the idle
//! workers and a join (10–50 µs on the 2-core development VM), which is what small models pay
//! per op. Contract: the count is exact for the regions this crate enters; a `gemm` crate call
//! counts once although the crate forks once per cache block it computes (and once more when
//! it packs an operand in parallel), so the figure is a lower bound on the true fork-joins.
//! The counter is one relaxed atomic add per region, cheap next to the fork itself.

use std::sync::atomic::{AtomicU64, Ordering};

static REGIONS: AtomicU64 = AtomicU64::new(0);

/// Records that a CPU kernel is about to enter one parallel region.
pub(crate) fn enter() {
    REGIONS.fetch_add(1, Ordering::Relaxed);
}

/// The parallel regions the CPU kernels have entered since the process started (see the module
/// docs for what counts). Diagnostic only: take the difference around the work of interest.
pub fn parallel_regions() -> u64 {
    REGIONS.load(Ordering::Relaxed)
}
