//! Loss aggregation as per-token weights (docs/treepo.md §3.2).
//!
//! The aggregated loss is `Σ_i Σ_t w_i ℓ_{i,t}` with a weight that is constant along a sequence:
//!
//! | mode                          | `w_i`                 | `Σ_t w` over the batch |
//! |-------------------------------|-----------------------|------------------------|
//! | `token-mean` (DAPO, default)  | `1/N`, `N = Σ_i |o_i|`| 1                      |
//! | `seq-mean-token-mean` (GRPO)  | `1/(G·|o_i|)`         | 1                      |
//! | `seq-mean-token-sum-norm`     | `1/constant`          | `N/constant`           |
//!
//! The weights are computed once over the whole **mini-batch** (every sequence of the optimizer
//! step) before any backward, so splitting it into micro-batches changes nothing. `G` counts
//! sequences with at least one response token (a sequence whose tokens are all masked adds
//! nothing, as in verl's `seq_mask`). `seq-mean-token-sum-norm` follows verl and does not divide
//! by the number of sequences; for TRL's Dr.GRPO pass `constant = B · max_response_len`.
//! In the tree-packed form a token shared by `K` leaves is counted `K` times (once per leaf).

use serde::{Deserialize, Serialize};

use super::error::RlError;

/// How per-token losses are combined into the mini-batch loss.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub enum LossAggregation {
    /// Mean over every response token of the mini-batch.
    #[default]
    #[serde(rename = "token-mean", alias = "token_mean")]
    TokenMean,
    /// Mean over sequences of each sequence's token mean.
    #[serde(rename = "seq-mean-token-mean", alias = "seq_mean_token_mean")]
    SeqMeanTokenMean,
    /// Sum over all tokens divided by a constant.
    #[serde(rename = "seq-mean-token-sum-norm", alias = "seq_mean_token_sum_norm")]
    SeqMeanTokenSumNorm {
        /// The divisor (> 0), usually the maximum response length.
        constant: f64,
    },
}

impl LossAggregation {
    /// The weight of every token of each sequence, from the sequences' response lengths over the
    /// whole mini-batch.
    pub fn sequence_weights(&self, seq_lens: &[usize]) -> Result<Vec<f64>, RlError> {
        match *self {
            Self::TokenMean => {
                let n: usize = seq_lens.iter().sum();
                if n == 0 {
                    return Err(RlError::Empty { what: "response tokens of the mini-batch" });
                }
                Ok(vec![1.0 / n as f64; seq_lens.len()])
            }
            Self::SeqMeanTokenMean => {
                let g = seq_lens.iter().filter(|&&l| l > 0).count();
                if g == 0 {
                    return Err(RlError::Empty { what: "non-empty sequences of the mini-batch" });
                }
                let g = g as f64;
                Ok(seq_lens
                    .iter()
                    .map(|&l| if l > 0 { 1.0 / (g * l as f64) } else { 0.0 })
                    .collect())
            }
            Self::SeqMeanTokenSumNorm { constant } => {
                if !(constant.is_finite() && constant > 0.0) {
                    return Err(RlError::InvalidConfig(format!(
                        "seq-mean-token-sum-norm constant = {constant} must be > 0"
                    )));
                }
                Ok(vec![1.0 / constant; seq_lens.len()])
            }
        }
    }
}
