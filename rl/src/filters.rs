//! DAPO's dynamic sampling and overlong reward shaping (docs/treepo.md §3.3).
//!
//! - **Dynamic sampling**: a query whose filter values (TreePO: `acc`, 1/0 per leaf) are all equal
//!   gives every leaf the same reward, so no learning signal under a group baseline; it is
//!   dropped. Generation rounds accumulate kept queries until the training batch is full, for a
//!   bounded number of extra rounds. A query with a single leaf is kept (verl keeps
//!   `std > 0 or n == 1`), so `w = 1` runs never starve.
//! - **Overlong penalty**: `R += min(−(len − (L_max − L_buf))/L_buf, 0)·factor`: nothing up to
//!   `L_max − L_buf` tokens, then linear down to `−factor` at `L_max`.

use serde::{Deserialize, Serialize};

use super::error::{RlError, check_finite};

/// Whether dynamic sampling keeps a query with these per-leaf filter values.
pub fn keep_query(values: &[f64]) -> Result<bool, RlError> {
    check_finite("filter value", values)?;
    let Some(&first) = values.first() else {
        return Err(RlError::Empty { what: "filter values of a query" });
    };
    Ok(values.len() == 1 || values.iter().any(|&v| v != first))
}

/// Counts of one completed batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SamplingStats {
    /// Generation rounds used.
    pub rounds: usize,
    /// Queries dropped for identical filter values.
    pub dropped: usize,
    /// Kept queries beyond the target, discarded (the last ones kept).
    pub surplus: usize,
}

/// What a generation round led to.
#[derive(Debug, Clone, PartialEq)]
pub enum RoundOutcome<T> {
    /// The batch is full: exactly `target_queries` queries, in the order they were kept.
    Ready {
        /// The kept queries.
        batch: Vec<T>,
        /// Counts for the step's metrics.
        stats: SamplingStats,
    },
    /// Generate another round.
    NeedMore {
        /// Queries kept so far.
        kept: usize,
        /// Queries wanted.
        target: usize,
        /// Rounds that may still be generated.
        rounds_left: usize,
    },
}

/// Accumulates kept queries across generation rounds (verl's `filter_groups`).
///
/// After a [`RoundOutcome::Ready`] or an error the sampler starts over for the next step.
#[derive(Debug, Clone)]
pub struct DynamicSampler<T> {
    target: usize,
    max_extra_rounds: usize,
    rounds: usize,
    dropped: usize,
    kept: Vec<T>,
}

impl<T> DynamicSampler<T> {
    /// A sampler that wants `target_queries` (≥ 1) kept queries and allows the first round plus
    /// `max_extra_rounds` more.
    pub fn new(target_queries: usize, max_extra_rounds: usize) -> Result<Self, RlError> {
        if target_queries == 0 {
            return Err(RlError::InvalidConfig(
                "dynamic sampling target_queries must be ≥ 1".into(),
            ));
        }
        Ok(Self {
            target: target_queries,
            max_extra_rounds,
            rounds: 0,
            dropped: 0,
            kept: Vec::new(),
        })
    }

    /// Offers one round of generated queries; `filter_values(q)` gives a query's per-leaf values.
    /// The whole round is validated before any query is kept, so an error leaves no partial
    /// round behind (and resets the sampler, like the exhaustion error).
    pub fn push_round(
        &mut self,
        queries: Vec<T>,
        filter_values: impl Fn(&T) -> &[f64],
    ) -> Result<RoundOutcome<T>, RlError> {
        let decisions: Result<Vec<bool>, RlError> =
            queries.iter().map(|q| keep_query(filter_values(q))).collect();
        let decisions = match decisions {
            Ok(d) => d,
            Err(e) => {
                self.reset();
                return Err(e);
            }
        };
        self.rounds += 1;
        for (q, keep) in queries.into_iter().zip(decisions) {
            if keep {
                self.kept.push(q);
            } else {
                self.dropped += 1;
            }
        }
        if self.kept.len() >= self.target {
            let surplus = self.kept.len() - self.target;
            let mut batch = std::mem::take(&mut self.kept);
            batch.truncate(self.target);
            let stats = SamplingStats { rounds: self.rounds, dropped: self.dropped, surplus };
            self.reset();
            return Ok(RoundOutcome::Ready { batch, stats });
        }
        let allowed = self.max_extra_rounds + 1;
        if self.rounds >= allowed {
            let err = RlError::DynamicSamplingExhausted {
                rounds: self.rounds,
                kept: self.kept.len(),
                target: self.target,
            };
            self.reset();
            return Err(err);
        }
        Ok(RoundOutcome::NeedMore {
            kept: self.kept.len(),
            target: self.target,
            rounds_left: allowed - self.rounds,
        })
    }

    fn reset(&mut self) {
        self.rounds = 0;
        self.dropped = 0;
        self.kept.clear();
    }
}

/// DAPO's soft overlong punishment.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OverlongPenalty {
    /// `L_max`: the maximum response length.
    pub max_response_len: usize,
    /// `L_buf`: the length of the penalty ramp before `L_max` (1 ..= `L_max`).
    pub buffer_len: usize,
    /// Penalty at `L_max` (≥ 0); TreePO and DAPO use 1.0.
    pub factor: f64,
}

impl OverlongPenalty {
    /// Checks `1 ≤ L_buf ≤ L_max` and a finite `factor ≥ 0`.
    pub fn validate(&self) -> Result<(), RlError> {
        if self.buffer_len == 0 || self.buffer_len > self.max_response_len {
            return Err(RlError::InvalidConfig(format!(
                "overlong buffer_len = {} must be in 1..={} (max_response_len)",
                self.buffer_len, self.max_response_len
            )));
        }
        if !(self.factor.is_finite() && self.factor >= 0.0) {
            return Err(RlError::InvalidConfig(format!(
                "overlong factor = {} must be ≥ 0",
                self.factor
            )));
        }
        Ok(())
    }

    /// The (non-positive) penalty for a response of `response_len` tokens. Lengths past `L_max`
    /// (which a sampler that truncates never produces) continue the ramp below `−factor`.
    pub fn penalty(&self, response_len: usize) -> Result<f64, RlError> {
        self.validate()?;
        let expected = (self.max_response_len - self.buffer_len) as f64;
        let exceed = response_len as f64 - expected;
        Ok((-exceed / self.buffer_len as f64).min(0.0) * self.factor)
    }

    /// `reward + penalty(response_len)`.
    pub fn apply(&self, reward: f64, response_len: usize) -> Result<f64, RlError> {
        check_finite("reward", &[reward])?;
        Ok(reward + self.penalty(response_len)?)
    }
}
