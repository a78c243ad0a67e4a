//! The countdown response grammar and its exact verifier.
//!
//! ```text
//! response := steps? "A" number "#"
//! steps    := step ("," step)*
//! step     := number op number "=" number
//! op       := "+" | "-" | "*" | "/"
//! number   := "0" | [1-9][0-9]{0,5}          (no sign, no leading zero, at most 6 digits)
//! ```
//!
//! Integer arithmetic is exact here: results are non-negative integers by the grammar, so a
//! division is correct iff `lhs = rhs · result` with `rhs ≠ 0` (a remainder makes it wrong) and
//! a subtraction iff `lhs ≥ rhs`. Operands are drawn from a pool holding the given numbers and
//! every earlier result, each usable once; the answer must be the single value left when the
//! steps are done, and that value must be the target. Anything after the first `#` is
//! ignored (the sampler stops there).

use crate::tasks::vocab::{ANSWER, STOP};

/// Largest number the grammar admits (6 digits), so products of two never overflow `u64`.
pub const MAX_NUMBER: u64 = 999_999;

/// An arithmetic operation of a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/` (exact)
    Div,
}

impl Op {
    /// Every operation, in symbol order.
    pub const ALL: [Self; 4] = [Self::Add, Self::Sub, Self::Mul, Self::Div];

    /// The operation's symbol.
    #[must_use]
    pub const fn symbol(self) -> char {
        match self {
            Self::Add => '+',
            Self::Sub => '-',
            Self::Mul => '*',
            Self::Div => '/',
        }
    }

    fn from_symbol(c: char) -> Option<Self> {
        Self::ALL.into_iter().find(|op| op.symbol() == c)
    }

    /// `lhs op rhs` when it is a non-negative integer within [`MAX_NUMBER`], else `None`
    /// (negative difference, inexact or zero division, too large).
    #[must_use]
    pub fn apply(self, lhs: u64, rhs: u64) -> Option<u64> {
        let r = match self {
            Self::Add => lhs.checked_add(rhs)?,
            Self::Sub => lhs.checked_sub(rhs)?,
            Self::Mul => lhs.checked_mul(rhs)?,
            Self::Div => {
                if rhs == 0 || !lhs.is_multiple_of(rhs) {
                    return None;
                }
                lhs / rhs
            }
        };
        (r <= MAX_NUMBER).then_some(r)
    }
}

/// One step `lhs op rhs = result` as written (not necessarily correct).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Step {
    /// Left operand.
    pub lhs: u64,
    /// Operation.
    pub op: Op,
    /// Right operand.
    pub rhs: u64,
    /// The result the step claims.
    pub result: u64,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}{}={}", self.lhs, self.op.symbol(), self.rhs, self.result)
    }
}

/// Steps written as a response: `s1,s2,…A<answer>#`.
#[must_use]
pub fn format_response(steps: &[Step], answer: u64) -> String {
    let steps: Vec<String> = steps.iter().map(Step::to_string).collect();
    format!("{}{ANSWER}{answer}{STOP}", steps.join(","))
}

/// A response that follows the grammar.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed {
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// The number after `A`.
    pub answer: u64,
}

/// The verifier's finding, most specific first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every number used once, every step right, the answer is the target.
    Correct,
    /// The response does not follow the grammar.
    Malformed(&'static str),
    /// Step `step` (0-based) uses `value`, which is not (or no longer) available: not a given
    /// number, or one already used.
    Unavailable {
        /// 0-based step index.
        step: usize,
        /// The operand.
        value: u64,
    },
    /// Step `step`'s claimed result is not what its operation gives (including a division with
    /// a remainder and a negative difference).
    WrongArithmetic {
        /// 0-based step index.
        step: usize,
    },
    /// After the steps, `left` values remain instead of one: some given number is unused.
    NumbersLeft {
        /// How many values remain.
        left: usize,
    },
    /// The answer is not the value the steps produced.
    AnswerMismatch {
        /// The number after `A`.
        claimed: u64,
        /// What the steps produced.
        value: u64,
    },
    /// The steps are right but produce `value`, not the target.
    MissesTarget {
        /// What the steps produced.
        value: u64,
    },
}

/// Parses a response (up to its first `#`).
pub fn parse_response(response: &str) -> Result<Parsed, &'static str> {
    let (body, _) = response.split_once(STOP).ok_or("no stop symbol")?;
    let (steps, answer) = body.split_once(ANSWER).ok_or("no answer marker")?;
    let answer = parse_number(answer).ok_or("the answer is not a number")?;
    let steps = if steps.is_empty() {
        Vec::new()
    } else {
        steps.split(',').map(parse_step).collect::<Option<Vec<_>>>().ok_or("malformed step")?
    };
    Ok(Parsed { steps, answer })
}

fn parse_step(s: &str) -> Option<Step> {
    let (lhs_op_rhs, result) = s.split_once('=')?;
    // The operator is the first non-digit character (operands have no sign).
    let pos = lhs_op_rhs.find(|c: char| !c.is_ascii_digit())?;
    let op = Op::from_symbol(lhs_op_rhs[pos..].chars().next()?)?;
    let lhs = parse_number(&lhs_op_rhs[..pos])?;
    let rhs = parse_number(&lhs_op_rhs[pos + 1..])?;
    Some(Step { lhs, op, rhs, result: parse_number(result)? })
}

/// `"0"` or 1–6 digits without a leading zero.
fn parse_number(s: &str) -> Option<u64> {
    let ok = !s.is_empty()
        && s.len() <= 6
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'));
    if ok { s.parse().ok() } else { None }
}

/// Checks parsed steps against the given `numbers` and `target`.
#[must_use]
pub fn check(numbers: &[u32], target: u32, parsed: &Parsed) -> Verdict {
    let mut pool: Vec<u64> = numbers.iter().map(|&n| u64::from(n)).collect();
    for (k, s) in parsed.steps.iter().enumerate() {
        for value in [s.lhs, s.rhs] {
            match pool.iter().position(|&v| v == value) {
                Some(i) => {
                    pool.swap_remove(i);
                }
                None => return Verdict::Unavailable { step: k, value },
            }
        }
        if s.op.apply(s.lhs, s.rhs) != Some(s.result) {
            return Verdict::WrongArithmetic { step: k };
        }
        pool.push(s.result);
    }
    let &[value] = pool.as_slice() else { return Verdict::NumbersLeft { left: pool.len() } };
    if parsed.answer != value {
        return Verdict::AnswerMismatch { claimed: parsed.answer, value };
    }
    if value != u64::from(target) {
        return Verdict::MissesTarget { value };
    }
    Verdict::Correct
}

/// Parses and checks a response.
#[must_use]
pub fn verify(numbers: &[u32], target: u32, response: &str) -> Verdict {
    match parse_response(response) {
        Ok(parsed) => check(numbers, target, &parsed),
        Err(why) => Verdict::Malformed(why),
    }
}
