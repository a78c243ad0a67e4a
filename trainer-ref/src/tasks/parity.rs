//! `parity-cot`: the parity of `d` random bits, with a short/long demonstration mixture
//! (Tsilivis, Malach, Ullrich, Kempe 2025).
//!
//! ```text
//! prompt           101101001110:
//! short response   A1#                  the answer bit right away (a guess: 50 % right)
//! long response    110110001011A1#      running XOR of the prefix, then the answer
//! ```
//!
//! The long response's character `i` is the XOR of the first `i + 1` input bits, so each step
//! is one local XOR and the answer is the last prefix bit. SFT draws the long form with
//! probability `p_long`: the warmed-up model answers long ≈ `p_long` of the time (≈ always
//! right) and short otherwise (≈ 50 %), so pass@1 ≈ 0.5 + 0.5·`p_long` and RL can raise it by
//! raising the rate of long answers (the first response token is the decision). Only the final
//! bit is rewarded; the chain itself is not checked.
//!
//! `d` is fixed at 12 by default: the chain's bit `i` sits at a constant distance (`d + 1`)
//! from input bit `i`, which a tiny model learns fast, and 2^12 problems are too many to
//! memorise in a short warm-up. A range `min_bits..=max_bits` is allowed.

use std::sync::Arc;

use super::TaskError;
use super::config::TaskKind;
use super::error::invalid;
use super::hooks::{CharHooks, Hooks, NgramRule};
use super::problem::{Problem, ProblemSpec, Score, Task, wrong_problem};
use super::split::{Split, TaskRng, draw_in_split, uniform_u32};
use super::vocab::{ANSWER, PROMPT_END, STOP, SYNTHETIC_VOCAB, TokenText};

const NAME: &str = "parity-cot";

/// Difficulty and demonstration-mixture knobs of `parity-cot`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ParityConfig {
    /// Seed of the problem streams.
    pub seed: u64,
    /// Fewest input bits (≥ 1).
    pub min_bits: u32,
    /// Most input bits (≥ `min_bits`, ≤ 64).
    pub max_bits: u32,
    /// Probability that a demonstration is the long (chain-of-thought) form, in `[0, 1]`.
    pub p_long: f64,
}

impl Default for ParityConfig {
    fn default() -> Self {
        Self { seed: 0, min_bits: 12, max_bits: 12, p_long: 0.2 }
    }
}

impl ParityConfig {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<(), TaskError> {
        if self.min_bits == 0 || self.min_bits > self.max_bits || self.max_bits > 64 {
            return Err(invalid(
                NAME,
                format!(
                    "need 1 <= min_bits <= max_bits <= 64, got {}..={}",
                    self.min_bits, self.max_bits
                ),
            ));
        }
        if !(0.0..=1.0).contains(&self.p_long) {
            return Err(invalid(NAME, format!("p_long must be in [0, 1], got {}", self.p_long)));
        }
        Ok(())
    }
}

/// The `parity-cot` task.
#[derive(Clone, Debug)]
pub struct ParityCot {
    config: ParityConfig,
}

impl ParityCot {
    /// The task under a validated `config`.
    pub fn new(config: ParityConfig) -> Result<Self, TaskError> {
        config.validate()?;
        Ok(Self { config })
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &ParityConfig {
        &self.config
    }

    /// The short demonstration of `bits`: `A<parity>#`.
    #[must_use]
    pub fn short_response(bits: &[u8]) -> String {
        format!("{ANSWER}{}{STOP}", parity(bits))
    }

    /// The long demonstration of `bits`: the running XOR of every prefix, then `A<parity>#`.
    #[must_use]
    pub fn long_response(bits: &[u8]) -> String {
        let mut acc = 0;
        let mut out: String = bits
            .iter()
            .map(|&b| {
                acc ^= b & 1;
                bit_char(acc)
            })
            .collect();
        out.push_str(&Self::short_response(bits));
        out
    }

    /// Whether a response opens with a chain of thought (a bit) rather than the answer
    /// marker: the rate RL should raise.
    #[must_use]
    pub fn uses_chain_of_thought(response: &str) -> bool {
        matches!(response.chars().next(), Some('0' | '1'))
    }
}

fn parity(bits: &[u8]) -> char {
    bit_char(bits.iter().fold(0, |acc, &b| acc ^ (b & 1)))
}

fn bit_char(b: u8) -> char {
    if b & 1 == 1 { '1' } else { '0' }
}

fn bits_of(problem: &Problem) -> Result<&[u8], TaskError> {
    match &problem.spec {
        ProblemSpec::Parity { bits } => Ok(bits),
        _ => Err(wrong_problem(TaskKind::ParityCot, problem)),
    }
}

impl Task for ParityCot {
    fn kind(&self) -> TaskKind {
        TaskKind::ParityCot
    }

    fn vocabulary(&self) -> Option<&str> {
        Some(SYNTHETIC_VOCAB)
    }

    fn stop_symbol(&self) -> Option<char> {
        Some(STOP)
    }

    fn generate(&self, split: Split, index: u64) -> Result<Problem, TaskError> {
        let c = &self.config;
        let (bits, key) = draw_in_split(NAME, c.seed, split, index, |rng| {
            let d = uniform_u32(rng, c.min_bits, c.max_bits);
            let bits: Vec<u8> = (0..d).map(|_| (rng.next_u64() >> 63) as u8).collect();
            let text: String = bits.iter().map(|&b| bit_char(b)).collect();
            Ok((bits, format!("{NAME}|{text}")))
        })?;
        let mut prompt: String = bits.iter().map(|&b| bit_char(b)).collect();
        prompt.push(PROMPT_END);
        let answer = parity(&bits).to_string();
        Ok(Problem { split, index, key, prompt, answer, spec: ProblemSpec::Parity { bits } })
    }

    fn sft_response(&self, problem: &Problem, rng: &mut TaskRng) -> Result<String, TaskError> {
        let bits = bits_of(problem)?;
        // One draw per demonstration, whatever p_long is, so the stream stays aligned.
        let long = rng.unit() < self.config.p_long;
        Ok(if long { Self::long_response(bits) } else { Self::short_response(bits) })
    }

    /// Format `[01]* A [01] #`; correct iff the bit after `A` is the parity.
    fn score(&self, problem: &Problem, response: &str) -> Result<Score, TaskError> {
        let bits = bits_of(problem)?;
        let Some((body, _)) = response.split_once(STOP) else { return Ok(Score::malformed()) };
        let Some((chain, answer)) = body.split_once(ANSWER) else {
            return Ok(Score::malformed());
        };
        if !chain.chars().all(|c| c == '0' || c == '1') || !(answer == "0" || answer == "1") {
            return Ok(Score::malformed());
        }
        Ok(if answer.chars().eq([parity(bits)]) {
            Score::correct(answer.to_string())
        } else {
            Score::wrong(Some(answer.to_string()), true, -1.0)
        })
    }

    /// Answer = the marker `A`; no repetition rule (a correct chain of an all-zero input is
    /// `000…0`, and responses are bounded by the sampler's length limit anyway).
    fn hooks(&self, tokens: Arc<dyn TokenText>) -> Result<Hooks, TaskError> {
        Ok(Hooks::Char(CharHooks::new(tokens.as_ref(), ANSWER, NgramRule::OFF)?))
    }
}
