//! `arithmetic`: multi-digit addition (and optionally multiplication by one digit) with a
//! least-significant-first scratchpad.
//!
//! ```text
//! prompt     4721+389:
//! response   1+9+0=10,2+8+1=11,7+3+1=11,4+0+1=05A5110#
//! prompt     347*8:
//! response   7*8+0=56,4*8+5=37,3*8+3=27A2776#
//! ```
//!
//! Step `i` writes digit `i` of each operand (0 past its end), the carry in, and the two-digit
//! total `ks` (carry out `k`, result digit `s`); the answer follows `A`. Each step is a local
//! computation once the digits are copied, so difficulty is set by the operand lengths:
//! `min_digits..=max_digits` per operand (warm up on short operands, run RL on longer ones; the
//! split rule ignores the knobs, so the two never share a problem across splits). Only the
//! final answer is rewarded (exact string match); the scratchpad is the model's business.

use std::sync::Arc;

use super::TaskError;
use super::config::TaskKind;
use super::error::invalid;
use super::hooks::{CharHooks, Hooks, NgramRule};
use super::problem::{Problem, ProblemSpec, Score, Task, wrong_problem};
use super::split::{Split, TaskRng, draw_in_split, uniform_u32};
use super::vocab::{ANSWER, PROMPT_END, STOP, SYNTHETIC_VOCAB, TokenText};

const NAME: &str = "arithmetic";

/// Most digits per operand (sums and products by one digit stay below `u64::MAX`).
pub const MAX_DIGITS: u32 = 18;

/// The operation of an arithmetic problem.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ArithOp {
    /// `a + b`, both multi-digit.
    Add,
    /// `a * b`, `b` a single digit in 2..=9.
    Mul,
}

impl ArithOp {
    /// The operation's symbol.
    #[must_use]
    pub const fn symbol(self) -> char {
        match self {
            Self::Add => '+',
            Self::Mul => '*',
        }
    }

    /// The exact result (operands within [`MAX_DIGITS`] digits never overflow).
    #[must_use]
    pub fn apply(self, a: u64, b: u64) -> Option<u64> {
        match self {
            Self::Add => a.checked_add(b),
            Self::Mul => a.checked_mul(b),
        }
    }
}

/// Difficulty knobs of `arithmetic`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ArithmeticConfig {
    /// Seed of the problem streams.
    pub seed: u64,
    /// Fewest digits of an operand (≥ 1).
    pub min_digits: u32,
    /// Most digits of an operand (≥ `min_digits`, ≤ [`MAX_DIGITS`]).
    pub max_digits: u32,
    /// Probability that a problem is a multiplication by one digit, in `[0, 1]`.
    pub mul_fraction: f64,
    /// Repetition rule for the sampler hooks (`n = 0`, the default, turns it off:
    /// `99999+99999` legitimately repeats `9+9+1=19` five times).
    pub repetition: NgramRule,
}

impl Default for ArithmeticConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            min_digits: 1,
            max_digits: 5,
            mul_fraction: 0.0,
            repetition: NgramRule::OFF,
        }
    }
}

impl ArithmeticConfig {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<(), TaskError> {
        if self.min_digits == 0 || self.min_digits > self.max_digits || self.max_digits > MAX_DIGITS
        {
            return Err(invalid(
                NAME,
                format!(
                    "need 1 <= min_digits <= max_digits <= {MAX_DIGITS}, got {}..={}",
                    self.min_digits, self.max_digits
                ),
            ));
        }
        if !(0.0..=1.0).contains(&self.mul_fraction) {
            return Err(invalid(
                NAME,
                format!("mul_fraction must be in [0, 1], got {}", self.mul_fraction),
            ));
        }
        self.repetition.validate(NAME)?;
        Ok(())
    }
}

/// The `arithmetic` task.
#[derive(Clone, Debug)]
pub struct Arithmetic {
    config: ArithmeticConfig,
}

impl Arithmetic {
    /// The task under a validated `config`.
    pub fn new(config: ArithmeticConfig) -> Result<Self, TaskError> {
        config.validate()?;
        Ok(Self { config })
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &ArithmeticConfig {
        &self.config
    }

    /// The scratchpad demonstration of `a op b`, ending with `A<result>#`.
    #[must_use]
    pub fn demonstration(op: ArithOp, a: u64, b: u64) -> String {
        let da = digits_lsb_first(a);
        let db = digits_lsb_first(b);
        let mut steps = Vec::new();
        let mut carry = 0;
        match op {
            ArithOp::Add => {
                for i in 0..da.len().max(db.len()) {
                    let (x, y) = (da.get(i).copied().unwrap_or(0), db.get(i).copied().unwrap_or(0));
                    let total = x + y + carry;
                    steps.push(format!("{x}+{y}+{carry}={}{}", total / 10, total % 10));
                    carry = total / 10;
                }
            }
            ArithOp::Mul => {
                for &x in &da {
                    let total = x * b + carry;
                    steps.push(format!("{x}*{b}+{carry}={}{}", total / 10, total % 10));
                    carry = total / 10;
                }
            }
        }
        let result = op.apply(a, b).map_or_else(String::new, |r| r.to_string());
        format!("{}{ANSWER}{result}{STOP}", steps.join(","))
    }

    fn draw(&self, rng: &mut TaskRng) -> (ArithOp, u64, u64) {
        let c = &self.config;
        // One draw for the operation whatever mul_fraction is, so streams stay aligned.
        let op = if rng.unit() < c.mul_fraction { ArithOp::Mul } else { ArithOp::Add };
        let a = draw_operand(rng, c.min_digits, c.max_digits);
        let b = match op {
            ArithOp::Add => draw_operand(rng, c.min_digits, c.max_digits),
            ArithOp::Mul => rng.uniform_int(2, 9),
        };
        (op, a, b)
    }
}

/// A digit count uniform in `min..=max`, then a number uniform among those with exactly that
/// many digits (0..=9 for one digit).
fn draw_operand(rng: &mut TaskRng, min: u32, max: u32) -> u64 {
    let digits = uniform_u32(rng, min, max);
    if digits <= 1 {
        return rng.uniform_int(0, 9);
    }
    let lo = 10u64.pow(digits - 1);
    rng.uniform_int(lo, lo * 10 - 1)
}

fn digits_lsb_first(mut n: u64) -> Vec<u64> {
    let mut out = vec![n % 10];
    n /= 10;
    while n > 0 {
        out.push(n % 10);
        n /= 10;
    }
    out
}

fn spec_of(problem: &Problem) -> Result<(ArithOp, u64, u64), TaskError> {
    match &problem.spec {
        ProblemSpec::Arithmetic { op, a, b } => Ok((*op, *a, *b)),
        _ => Err(wrong_problem(TaskKind::Arithmetic, problem)),
    }
}

impl Task for Arithmetic {
    fn kind(&self) -> TaskKind {
        TaskKind::Arithmetic
    }

    fn vocabulary(&self) -> Option<&str> {
        Some(SYNTHETIC_VOCAB)
    }

    fn stop_symbol(&self) -> Option<char> {
        Some(STOP)
    }

    fn generate(&self, split: Split, index: u64) -> Result<Problem, TaskError> {
        let ((op, a, b), key) = draw_in_split(NAME, self.config.seed, split, index, |rng| {
            let (op, a, b) = self.draw(rng);
            // Addition is commutative: `a+b` and `b+a` are one problem.
            let (x, y) = if op == ArithOp::Add { (a.min(b), a.max(b)) } else { (a, b) };
            Ok(((op, a, b), format!("{NAME}|{x}{}{y}", op.symbol())))
        })?;
        let answer = op
            .apply(a, b)
            .ok_or_else(|| invalid(NAME, format!("{a}{}{b} overflows u64", op.symbol())))?
            .to_string();
        let prompt = format!("{a}{}{b}{PROMPT_END}", op.symbol());
        Ok(Problem {
            split,
            index,
            key,
            prompt,
            answer,
            spec: ProblemSpec::Arithmetic { op, a, b },
        })
    }

    /// The scratchpad demonstration (deterministic; `rng` is not drawn from).
    fn sft_response(&self, problem: &Problem, _rng: &mut TaskRng) -> Result<String, TaskError> {
        let (op, a, b) = spec_of(problem)?;
        Ok(Self::demonstration(op, a, b))
    }

    /// Format: scratchpad characters (`0-9 + * = ,`), then `A`, then digits, then `#`;
    /// correct iff the digits are exactly the result (no leading zero).
    fn score(&self, problem: &Problem, response: &str) -> Result<Score, TaskError> {
        let (op, a, b) = spec_of(problem)?;
        let Some((body, _)) = response.split_once(STOP) else { return Ok(Score::malformed()) };
        let Some((pad, answer)) = body.split_once(ANSWER) else { return Ok(Score::malformed()) };
        let pad_ok = pad.chars().all(|c| c.is_ascii_digit() || "+*=,".contains(c));
        let answer_ok =
            !answer.is_empty() && answer.len() <= 20 && answer.bytes().all(|c| c.is_ascii_digit());
        if !pad_ok || !answer_ok {
            return Ok(Score::malformed());
        }
        let expected = op.apply(a, b).map(|r| r.to_string());
        Ok(if expected.as_deref() == Some(answer) {
            Score::correct(answer.to_string())
        } else {
            Score::wrong(Some(answer.to_string()), true, -1.0)
        })
    }

    /// Answer = the marker `A`; repetition = the configured n-gram rule.
    fn hooks(&self, tokens: Arc<dyn TokenText>) -> Result<Hooks, TaskError> {
        Ok(Hooks::Char(CharHooks::new(tokens.as_ref(), ANSWER, self.config.repetition)?))
    }
}
