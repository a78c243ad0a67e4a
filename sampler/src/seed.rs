//! Seed derivation and the scheduler's random stream.
//!
//! Randomness is an argument: every draw is seeded and derived per (query, node, position), and a
//! draw takes its uniform as a parameter. Two independent sources exist:
//!
//! * **Token draws** (done by the engine): the uniform for the token at response position `pos` of
//!   a branch is `uniform(seed, query, path, pos)`, where `path` is the [`BranchKey`] folded from the
//!   child ordinals on the way from the prompt node to the branch. Nothing depends on the batch
//!   order or on which other branches exist, so any branch can be replayed alone.
//! * **Scheduler draws** (initial divergence, fallback shuffles and cut points): one
//!   [`SchedRng`] stream per query, seeded by `(seed, query)`. A query's tree therefore does not
//!   depend on which other queries share its batch (as long as the KV pool is not exhausted).
//!
//! The mixing function is SplitMix64's finaliser (Steele, Lea, Flood 2014), a bijection on `u64`
//! with full avalanche; everything here is a pure, stable function of its inputs and will not change
//! between releases without a major version bump (replays depend on it).

/// Domain tag for token draws (`"TOKN"`).
const DOMAIN_TOKEN: u64 = 0x544F_4B4E;
/// Domain tag for the per-query scheduler stream (`"SCHD"`).
const DOMAIN_SCHED: u64 = 0x5343_4844;
/// Domain tag for the per-query root branch key (`"ROOT"`).
const DOMAIN_ROOT: u64 = 0x524F_4F54;
/// SplitMix64's increment (the golden ratio in 64-bit fixed point).
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's finaliser (the mixing of one output, without the state increment).
#[must_use]
pub const fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// SplitMix64 as a hash: the first output of a SplitMix64 generator whose state is `x`
/// (`mix64(x + golden)`); a stable bijection on `u64` with full avalanche.
#[must_use]
pub const fn splitmix64(x: u64) -> u64 {
    mix64(x.wrapping_add(GOLDEN))
}

/// Folds `x` into the running hash `h`. Order matters: `combine(combine(h, a), b)` differs from
/// `combine(combine(h, b), a)` for `a != b` (with overwhelming probability), so child ordinals
/// along a path are hashed as a sequence, not as a set.
#[must_use]
pub const fn combine(h: u64, x: u64) -> u64 {
    splitmix64(h ^ splitmix64(x))
}

/// Maps 64 random bits to a uniform `f64` in `[0, 1)` (the top 53 bits, exactly representable).
#[must_use]
pub fn unit_f64(bits: u64) -> f64 {
    // 2^-53: every value k * 2^-53 with k < 2^53 is exact, so the result is < 1.
    (bits >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Maps 64 random bits to a uniform `f32` in `[0, 1)` (the top 24 bits, exactly representable).
#[must_use]
pub fn unit_f32(bits: u64) -> f32 {
    (bits >> 40) as f32 * (1.0 / (1u32 << 24) as f32)
}

/// Identifies one branch of one query for token draws: a hash of `(seed, query, child ordinals
/// from the prompt node down)`. The engine turns it into uniforms with [`BranchKey::uniform`].
///
/// A child's key is `parent.child(ordinal)`, where `ordinal` is the child's index among its
/// parent's children in creation order (fallback children continue the numbering).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct BranchKey(u64);

impl BranchKey {
    /// The key of a query's prompt node.
    #[must_use]
    pub const fn root(seed: u64, query: u64) -> Self {
        Self(combine(combine(combine(seed, DOMAIN_ROOT), query), 0))
    }

    /// The key of this node's child number `ordinal`.
    #[must_use]
    pub const fn child(self, ordinal: u32) -> Self {
        Self(combine(self.0, ordinal as u64 + 1))
    }

    /// The key of the branch reached by following `ordinals` from the prompt node.
    #[must_use]
    pub fn from_path(seed: u64, query: u64, ordinals: &[u32]) -> Self {
        ordinals.iter().fold(Self::root(seed, query), |k, &o| k.child(o))
    }

    /// The raw 64-bit hash.
    #[must_use]
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// 64 random bits for the token at response position `position` on this branch.
    #[must_use]
    pub const fn draw_bits(self, position: u64) -> u64 {
        combine(combine(self.0, DOMAIN_TOKEN), position)
    }

    /// The uniform in `[0, 1)` for the token at response position `position` on this branch.
    #[must_use]
    pub fn uniform(self, position: u64) -> f64 {
        unit_f64(self.draw_bits(position))
    }
}

/// The scheduler's per-query random stream (SplitMix64 sequence). Draw order is part of the
/// pinned behaviour: initial divergence draws first, then each fallback round shuffles its
/// candidates (Fisher–Yates from the back) and draws one cut per re-opened candidate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchedRng {
    state: u64,
}

impl SchedRng {
    /// The stream of query `query` under `seed`.
    #[must_use]
    pub const fn for_query(seed: u64, query: u64) -> Self {
        Self { state: combine(combine(seed, DOMAIN_SCHED), query) }
    }

    /// A stream started from a raw state (tests and tools).
    #[must_use]
    pub const fn from_state(state: u64) -> Self {
        Self { state }
    }

    /// The raw state, to save and resume the stream exactly ([`Self::from_state`]).
    pub const fn state(&self) -> u64 {
        self.state
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN);
        mix64(self.state)
    }

    /// Uniform integer in `[lo, hi]` (inclusive). Returns `lo` when `hi <= lo` without drawing.
    /// Unbiased: rejection sampling on the top of the 64-bit range.
    pub fn uniform_int(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        let span = hi - lo;
        if span == u64::MAX {
            return self.next_u64();
        }
        let n = span + 1;
        // Largest multiple of n that fits; values at or above it are rejected.
        let zone = u64::MAX - (u64::MAX % n);
        loop {
            let x = self.next_u64();
            if x < zone {
                return lo + x % n;
            }
        }
    }

    /// Uniform `usize` in `[lo, hi]` (inclusive); see [`SchedRng::uniform_int`].
    pub fn uniform_usize(&mut self, lo: usize, hi: usize) -> usize {
        // usize -> u64 is lossless on every supported target; the result is <= hi.
        self.uniform_int(lo as u64, hi as u64) as usize
    }

    /// Uniform `f64` in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        unit_f64(self.next_u64())
    }

    /// Fisher–Yates shuffle: for `i` from `len-1` down to 1, swap `i` with `uniform_int(0, i)`.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.uniform_usize(0, i);
            items.swap(i, j);
        }
    }
}
