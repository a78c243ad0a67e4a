//! Validation of [`TreeConfig`]: one boundary that checks everything, so the scheduler can assume
//! a valid shape (`d, l, b, w >= 1`, `b <= w`, ...).

use thiserror::Error;

use crate::config::{TotalBudgetPolicy, TreeConfig};

/// An invalid configuration: what is wrong and what to set instead.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ConfigError {
    /// `tree_max_token_per_step` (l) is 0.
    #[error("tree_max_token_per_step (segment length l) must be >= 1")]
    ZeroSegmentLength,
    /// `tree_max_width` (w) is 0.
    #[error("tree_max_width (w) must be >= 1")]
    ZeroWidth,
    /// `tree_fixed_step_div` (b) is 0.
    #[error("tree_fixed_step_div (branch factor b) must be >= 1")]
    ZeroBranchFactor,
    /// `tree_max_depth` (d) is 0.
    #[error("tree_max_depth (d) must be >= 1")]
    ZeroDepth,
    /// `b > w`: the initial fan-out alone would exceed the width.
    #[error("tree_fixed_step_div b = {b} exceeds tree_max_width w = {w}; set b <= w")]
    BranchFactorAboveWidth {
        /// b.
        b: usize,
        /// w.
        w: usize,
    },
    /// `tree_random_first_div_min` is 0.
    #[error("tree_random_first_div_min must be >= 1")]
    RandomInitMinZero,
    /// The random initial fan-out has `min > max` (after capping `max` at the width bound).
    #[error(
        "tree_random_first_div_min = {min} exceeds tree_random_first_div_max = {max} (capped at w)"
    )]
    RandomInitMinAboveMax {
        /// The lower bound.
        min: usize,
        /// The (capped) upper bound.
        max: usize,
    },
    /// `tree_fallback_window_size` is 0.
    #[error("tree_fallback_window_size must be >= 1 (leave it unset to use l)")]
    ZeroWindow,
    /// `tree_max_fallback_window` is 0.
    #[error("tree_max_fallback_window must be >= 1 (leave it unset for no limit)")]
    ZeroMaxFallbackWindow,
    /// The log-prob split temperature is not a positive finite number.
    #[error("tree_logprob_div_temperature = {0} must be finite and > 0")]
    InvalidDivTemperature(f64),
    /// `max_response_length` is 0.
    #[error("max_response_length must be >= 1")]
    ZeroMaxResponseLength,
    /// Token-budget mode without `tree_max_response_token`.
    #[error("tree_total_budget_policy = by_response_token needs tree_max_response_token >= 1")]
    TokenBudgetMissing,
    /// `tree_min_width` outside `[1, w]`.
    #[error("tree_min_width = {min_width} must be in [1, w = {w}]")]
    MinWidthOutOfRange {
        /// The value given.
        min_width: usize,
        /// w.
        w: usize,
    },
    /// The sampling temperature is negative or not finite.
    #[error("temperature = {0} must be finite and >= 0 (0 = greedy)")]
    InvalidTemperature(f32),
    /// `top_p` outside `(0, 1]`.
    #[error("top_p = {0} must be in (0, 1]")]
    InvalidTopP(f32),
    /// The TOML text could not be parsed.
    #[error("config parse error: {0}")]
    Parse(String),
}

/// A valid but questionable setting; the samplers return these in their output.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigWarning {
    /// The fallback window differs from the segment length.
    #[error(
        "tree_fallback_window_size = {window} differs from l = {segment}: cut points are rounded \
         down to segment boundaries (a re-opened branch must start at an existing tree node); \
         the paper found misaligned windows hurt accuracy"
    )]
    WindowNotSegmentLength {
        /// The window.
        window: usize,
        /// l.
        segment: usize,
    },
}

impl TreeConfig {
    /// Checks the configuration; `Ok` carries the warnings.
    pub fn validate(&self) -> Result<Vec<ConfigWarning>, ConfigError> {
        let (d, l, b, w) = (self.depth(), self.segment_len(), self.branch(), self.width());
        if l == 0 {
            return Err(ConfigError::ZeroSegmentLength);
        }
        if w == 0 {
            return Err(ConfigError::ZeroWidth);
        }
        if b == 0 {
            return Err(ConfigError::ZeroBranchFactor);
        }
        if d == 0 {
            return Err(ConfigError::ZeroDepth);
        }
        if b > w {
            return Err(ConfigError::BranchFactorAboveWidth { b, w });
        }
        if self.tree_random_first_div_min == Some(0) {
            return Err(ConfigError::RandomInitMinZero);
        }
        if let Some((min, max)) = self.random_init_bounds(self.initial_upper())
            && min > max
        {
            return Err(ConfigError::RandomInitMinAboveMax { min, max });
        }
        if self.tree_fallback_window_size == Some(0) {
            return Err(ConfigError::ZeroWindow);
        }
        if self.tree_max_fallback_window == Some(0) {
            return Err(ConfigError::ZeroMaxFallbackWindow);
        }
        let t = self.tree_logprob_div_temperature;
        if !(t.is_finite() && t > 0.0) {
            return Err(ConfigError::InvalidDivTemperature(t));
        }
        if self.max_response() == 0 {
            return Err(ConfigError::ZeroMaxResponseLength);
        }
        if self.tree_total_budget_policy == TotalBudgetPolicy::ByResponseToken {
            if self.tree_max_response_token.unwrap_or(0) == 0 {
                return Err(ConfigError::TokenBudgetMissing);
            }
            let min_width = self.min_width();
            if min_width == 0 || min_width > w {
                return Err(ConfigError::MinWidthOutOfRange { min_width, w });
            }
        }
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(ConfigError::InvalidTemperature(self.temperature));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(ConfigError::InvalidTopP(self.top_p));
        }
        let mut warnings = Vec::new();
        if self.window() != l {
            warnings
                .push(ConfigWarning::WindowNotSegmentLength { window: self.window(), segment: l });
        }
        Ok(warnings)
    }

    /// Minimum trajectories per query in token-budget mode (default 1).
    #[must_use]
    pub fn min_width(&self) -> usize {
        self.tree_min_width.unwrap_or(1)
    }

    /// The width bound used by the initial divergence: `w`, or in token-budget mode
    /// `clamp(tree_max_response_token / l, 1, w)`.
    #[must_use]
    pub fn initial_upper(&self) -> usize {
        match self.tree_total_budget_policy {
            TotalBudgetPolicy::ByResponseTraj => self.width(),
            TotalBudgetPolicy::ByResponseToken => {
                let per = self.tree_max_response_token.unwrap_or(0) / self.segment_len().max(1);
                per.clamp(1, self.width().max(1))
            }
        }
    }

    /// `Some((min, max))` when "More Init Divergence" is on: `max` is
    /// `tree_random_first_div_max` capped at `upper`, on iff it exceeds `b`; `min` defaults to `b`.
    #[must_use]
    pub fn random_init_bounds(&self, upper: usize) -> Option<(usize, usize)> {
        let max = self.tree_random_first_div_max?.min(upper);
        (max > self.branch())
            .then(|| (self.tree_random_first_div_min.unwrap_or(self.branch()), max))
    }
}
