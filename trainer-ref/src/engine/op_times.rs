//! Wall time per kind of op in the engine's forward passes ([`EngineConfig::op_times`]): where
//! a token step goes, without a profiler — on one thread and on several, which `perf` samples
//! cannot separate (a worker polling for work and one computing look alike to a per-thread
//! profile, and an op that got slower by forking shows only as time spent elsewhere).
//!
//! Each op is timed on the engine thread from its call to its return. On the CPU backend that
//! is the op's whole run, its fork-join included; on a GPU backend it is the launch only (the
//! kernels run asynchronously), so the figures mean little there. Reading the clock costs
//! about 25 ns per op; off (the default) nothing is read.
//!
//! [`EngineConfig::op_times`]: super::EngineConfig::op_times

use std::time::{Duration, Instant};

/// The ops of a forward pass ([`OpTimes`]), in the order one layer runs them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Building the pass's tree decode plan (host side, once per pass).
    Plan,
    /// The token embedding (once per pass).
    Embedding,
    /// Each layer's two RMSNorms, and the final one.
    Norm,
    /// The q|k|v projection.
    Qkv,
    /// The q|k|v bias (models with `attention_bias`).
    QkvBias,
    /// RoPE on q and on k.
    Rope,
    /// Writing the rows' K and V into their page slots.
    KvAppend,
    /// The tree decode attention (and its merge of partial states).
    Attention,
    /// The output projection (added to the residual).
    OutProj,
    /// The gate|up projection.
    GateUp,
    /// SwiGLU.
    SwiGlu,
    /// The down projection (added to the residual).
    Down,
}

impl Op {
    /// Every op, in the order one layer runs them.
    pub const ALL: [Op; 12] = [
        Op::Plan,
        Op::Embedding,
        Op::Norm,
        Op::Qkv,
        Op::QkvBias,
        Op::Rope,
        Op::KvAppend,
        Op::Attention,
        Op::OutProj,
        Op::GateUp,
        Op::SwiGlu,
        Op::Down,
    ];

    /// A short lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            Op::Plan => "plan",
            Op::Embedding => "embedding",
            Op::Norm => "norm",
            Op::Qkv => "qkv",
            Op::QkvBias => "qkv_bias",
            Op::Rope => "rope",
            Op::KvAppend => "kv_append",
            Op::Attention => "attention",
            Op::OutProj => "out_proj",
            Op::GateUp => "gate_up",
            Op::SwiGlu => "swiglu",
            Op::Down => "down",
        }
    }
}

/// Summed wall time and call count per [`Op`] since the engine was built or last
/// [`reset`](OpTimes::reset). Each op is timed on the engine thread from its call to its return:
/// on the CPU backend its whole run, fork-join included; on a GPU backend only the launch.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OpTimes {
    sums: [(Duration, u64); Op::ALL.len()],
}

impl OpTimes {
    /// The summed time and the number of calls of `op`.
    pub fn get(&self, op: Op) -> (Duration, u64) {
        self.sums[op as usize]
    }

    /// The time summed over every op.
    pub fn total(&self) -> Duration {
        self.sums.iter().map(|s| s.0).sum()
    }

    /// Sets every sum and count to zero.
    pub fn reset(&mut self) {
        *self = OpTimes::default();
    }

    /// Adds one call of `op` that started at `since`.
    pub(crate) fn add(&mut self, op: Op, since: Instant) {
        let s = &mut self.sums[op as usize];
        s.0 += since.elapsed();
        s.1 += 1;
    }
}

/// Runs `f`, adding its wall time to `op` when `times` is on.
pub(crate) fn timed<T>(times: &mut Option<OpTimes>, op: Op, f: impl FnOnce() -> T) -> T {
    match times {
        None => f(),
        Some(t) => {
            let since = Instant::now();
            let r = f();
            t.add(op, since);
            r
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_add_up_per_op_and_reset() {
        let mut on = Some(OpTimes::default());
        let r = timed(&mut on, Op::Attention, || {
            std::thread::sleep(Duration::from_millis(2));
            7
        });
        assert_eq!(r, 7);
        timed(&mut on, Op::Attention, || ());
        let t = on.as_ref().unwrap();
        let (d, n) = t.get(Op::Attention);
        assert_eq!(n, 2);
        assert!(d >= Duration::from_millis(2), "{d:?}");
        assert_eq!(t.get(Op::Qkv), (Duration::ZERO, 0));
        assert_eq!(t.total(), d);
        let mut off = None;
        assert_eq!(timed(&mut off, Op::Qkv, || 3), 3);
        assert!(off.is_none());
        let mut t = on.unwrap();
        t.reset();
        assert_eq!(t, OpTimes::default());
        assert_eq!(
            Op::ALL.iter().map(|o| *o as usize).collect::<Vec<_>>(),
            (0..12).collect::<Vec<_>>()
        );
    }
}
