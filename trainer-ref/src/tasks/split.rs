//! Splits and the seeded streams problems are drawn from.
//!
//! **Membership is a property of the problem, not of the draw.** A problem belongs to the eval
//! split iff `content_hash(canonical content) % EVAL_MODULUS == 0`, where the canonical content
//! identifies the problem up to presentation (for example countdown's numbers are sorted, so a
//! permuted prompt is the same problem). The hash ignores the seed and the difficulty knobs, so
//! no training problem of any run is ever an eval problem of another. A generator draws
//! candidates from the stream of `(seed, task, split, index)` until one falls in the requested
//! split ([`draw_in_split`]).
//!
//! Everything here is a pure, stable function of its inputs (FNV-1a and SplitMix64, never
//! `std`'s randomly keyed hasher): the same seed gives the same problems on every machine and
//! release.

use treepo_sampler::seed::{SchedRng, combine, splitmix64};

use super::TaskError;

/// One problem in `EVAL_MODULUS` (by content hash) is an eval problem: 1/8 of every problem
/// space is held out.
pub const EVAL_MODULUS: u64 = 8;

/// Candidates a generator may draw before giving up on a split (an eval candidate is accepted
/// with probability 1/8, so 4 096 misses in a row mean the problem space has (almost) no
/// member in that split).
pub const MAX_DRAWS: usize = 4096;

/// The random stream the task demonstrations and generators draw from (SplitMix64; the
/// sampler's scheduler stream, so one generator serves the whole workspace).
pub type TaskRng = SchedRng;

/// Which side of the train/eval partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Problems for SFT and RL.
    Train,
    /// Held-out problems for evaluation; disjoint from [`Split::Train`] by content.
    Eval,
}

impl Split {
    /// `"train"` or `"eval"`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Train => "train",
            Self::Eval => "eval",
        }
    }

    /// The split a problem with this content hash belongs to.
    #[must_use]
    pub const fn of_hash(hash: u64) -> Self {
        if hash.is_multiple_of(EVAL_MODULUS) { Self::Eval } else { Self::Train }
    }

    const fn tag(self) -> u64 {
        match self {
            Self::Train => 0x0054_5241_494E, // "TRAIN"
            Self::Eval => 0x4556_414C,       // "EVAL"
        }
    }
}

/// Stable 64-bit hash of a problem's canonical content: FNV-1a over the bytes, then
/// SplitMix64's finaliser so that the low bits (used by the split rule) are well mixed.
#[must_use]
pub fn content_hash(canonical: &str) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let h = canonical.bytes().fold(OFFSET, |h, b| (h ^ u64::from(b)).wrapping_mul(PRIME));
    splitmix64(h)
}

/// The stream of problem `index` of `split` under `seed` for the task `task`.
#[must_use]
pub fn problem_stream(seed: u64, task: &str, split: Split, index: u64) -> TaskRng {
    let state = combine(combine(combine(seed, content_hash(task)), split.tag()), index);
    TaskRng::from_state(state)
}

/// Draws candidates `(value, canonical content)` with `draw` from the stream of
/// `(seed, task, split, index)` until one's content hashes into `split`; returns it with its
/// hash. Fails with [`TaskError::EmptySplit`] after [`MAX_DRAWS`] misses.
pub fn draw_in_split<T>(
    task: &'static str,
    seed: u64,
    split: Split,
    index: u64,
    mut draw: impl FnMut(&mut TaskRng) -> Result<(T, String), TaskError>,
) -> Result<(T, u64), TaskError> {
    let mut rng = problem_stream(seed, task, split, index);
    for _ in 0..MAX_DRAWS {
        let (value, canonical) = draw(&mut rng)?;
        let hash = content_hash(&canonical);
        if Split::of_hash(hash) == split {
            return Ok((value, hash));
        }
    }
    Err(TaskError::EmptySplit {
        task,
        split: split.name(),
        msg: format!(
            "{MAX_DRAWS} draws in a row fell in the other split; the problem space is too small \
             (enlarge it, e.g. more bits, digits or numbers)"
        ),
    })
}

/// Uniform integer in `[lo, hi]` as `u32` (the configs bound every range to `u32`).
pub(crate) fn uniform_u32(rng: &mut TaskRng, lo: u32, hi: u32) -> u32 {
    // The result lies in [lo, hi], so it fits in u32.
    rng.uniform_int(u64::from(lo), u64::from(hi)) as u32
}
