//! Deterministic crash points for the kill harness (`trainer-ref/tests/kill_harness.rs`).
//!
//! With `TREEPO_FAULT=<point>:<n>` in the environment, the process aborts — no unwinding, no
//! destructors, no buffered writes flushed: what SIGKILL does — the `n`-th time execution
//! reaches [`point`]`(<point>)`. Without the variable every point is one relaxed atomic load.
//! The points sit at the instants where a crash used to lose data: between the writes of a
//! checkpoint, between its rename and the switch of `latest`, inside a metrics record.

use std::io::Write;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

fn target() -> Option<&'static (String, u64)> {
    static TARGET: OnceLock<Option<(String, u64)>> = OnceLock::new();
    TARGET
        .get_or_init(|| {
            let v = std::env::var("TREEPO_FAULT").ok()?;
            let (name, n) = v.rsplit_once(':')?;
            Some((name.to_string(), n.parse().ok()?))
        })
        .as_ref()
}

/// Whether this arrival at `name` is the one to crash at.
fn hit(name: &str) -> bool {
    static COUNT: AtomicU64 = AtomicU64::new(0);
    match target() {
        Some((t, n)) if t == name => COUNT.fetch_add(1, Ordering::Relaxed) + 1 == *n,
        _ => false,
    }
}

/// Aborts here if `TREEPO_FAULT` names this arrival at `name`.
pub fn point(name: &str) {
    if hit(name) {
        std::process::abort();
    }
}

/// Writes `bytes` to `file` — or, if `TREEPO_FAULT` names this arrival at `name`, writes the
/// first half, syncs it and aborts (a write torn by a kill).
pub fn write_all(name: &str, file: &mut std::fs::File, bytes: &[u8]) -> std::io::Result<()> {
    if hit(name) {
        let _ = file.write_all(&bytes[..bytes.len() / 2]);
        let _ = file.sync_all();
        std::process::abort();
    }
    file.write_all(bytes)
}
