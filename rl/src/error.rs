//! The one error type of the RL core: every public function that takes caller data validates it
//! and answers with an [`RlError`] instead of panicking.

/// What was wrong with the input of an RL function, and what to do about it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RlError {
    /// A batch, group or sequence list that must hold at least one element was empty.
    #[error("{what} is empty; pass at least one element")]
    Empty {
        /// What was empty (for example "leaves" or "response tokens").
        what: &'static str,
    },
    /// A reward, log-prob, advantage or weight was NaN or infinite.
    #[error("{what}[{index}] = {value} is not finite; the RL core only accepts finite numbers")]
    NonFinite {
        /// The input that held the value.
        what: &'static str,
        /// Its position in that input.
        index: usize,
        /// The offending value.
        value: f64,
    },
    /// A finite input so large that the estimator's sums and squares would overflow `f64`.
    #[error(
        "{what}[{index}] = {value:e} is too large: the RL core accepts magnitudes up to {limit:e} \
         (sums and squares of larger values overflow f64); rescale the rewards"
    )]
    TooLarge {
        /// The input that held the value.
        what: &'static str,
        /// Its position in that input.
        index: usize,
        /// The offending value.
        value: f64,
        /// The largest accepted magnitude ([`crate::MAX_ABS_REWARD`]).
        limit: f64,
    },
    /// Two inputs that must have equal lengths did not.
    #[error("{what}: expected length {expected}, got {got}")]
    LengthMismatch {
        /// Which input had the wrong length.
        what: &'static str,
        /// The length it must have.
        expected: usize,
        /// The length it had.
        got: usize,
    },
    /// A configuration value is outside its valid range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// The rollout tree (leaf paths or topology) is malformed.
    #[error("invalid rollout tree: {0}")]
    InvalidTree(String),
    /// An edge-level estimator was asked for leaf-level advantages, or the other way round.
    #[error("estimator `{estimator}` produces {produces} advantages; call the matching function")]
    WrongLevel {
        /// The estimator's config name.
        estimator: &'static str,
        /// "per-leaf" or "per-edge".
        produces: &'static str,
    },
    /// Dynamic sampling used all its generation rounds without collecting enough queries.
    #[error(
        "dynamic sampling gave up after {rounds} generation rounds with {kept} of {target} queries \
         kept; raise max_extra_rounds or the generation batch size, or check that the task is \
         neither always solved nor never solved"
    )]
    DynamicSamplingExhausted {
        /// Generation rounds used (the first plus the extra ones).
        rounds: usize,
        /// Queries kept so far.
        kept: usize,
        /// Queries wanted.
        target: usize,
    },
}

/// Returns an [`RlError::NonFinite`] for the first non-finite value of `values`.
pub(crate) fn check_finite(what: &'static str, values: &[f64]) -> Result<(), RlError> {
    match values.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(RlError::NonFinite { what, index, value: values[index] }),
        None => Ok(()),
    }
}

/// The largest reward magnitude the estimators accept: with `|R| ≤ 1e100`, every intermediate
/// (group sums, squared deviations, token-weighted sums over up to 2^64 tokens) stays below
/// 1e240, far from `f64::MAX` ≈ 1.8e308, so no estimator can return NaN or ±inf. Larger finite
/// rewards are an [`RlError::TooLarge`].
pub const MAX_ABS_REWARD: f64 = 1e100;

/// [`check_finite`], then an [`RlError::TooLarge`] for the first value with `|x| > MAX_ABS_REWARD`.
pub(crate) fn check_reward_range(what: &'static str, values: &[f64]) -> Result<(), RlError> {
    check_finite(what, values)?;
    match values.iter().position(|v| v.abs() > MAX_ABS_REWARD) {
        Some(index) => {
            Err(RlError::TooLarge { what, index, value: values[index], limit: MAX_ABS_REWARD })
        }
        None => Ok(()),
    }
}

/// Returns an [`RlError::LengthMismatch`] unless `got == expected`.
pub(crate) fn check_len(what: &'static str, expected: usize, got: usize) -> Result<(), RlError> {
    if got == expected { Ok(()) } else { Err(RlError::LengthMismatch { what, expected, got }) }
}
