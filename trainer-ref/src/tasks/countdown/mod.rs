//! `countdown`: reach a target from a few numbers with `+ − × ÷`, each number used once.
//!
//! ```text
//! prompt     7,3,12>33:
//! response   7*3=21,21+12=33A33#      steps, then the answer after `A`, then the stop `#`
//! ```
//!
//! Every instance is solvable: the generator draws the numbers, then combines random pairs
//! with random valid operations (exact division only, no zero or negative intermediate) until
//! one value is left, and uses it as the target (redrawn if outside `1..=max_target`). The
//! verifier ([`verify`]) is exact over integers. Demonstrations come from the brute-force
//! [`solve`]r, one solution drawn uniformly per demonstration, so the first step is a real
//! decision with several good options — where tree branching separates good and bad moves.
//!
//! Reward: +1 correct, −1 otherwise; a well-formed wrong response (grammar followed, any
//! other mistake) gets `format_reward`, −1 by default (off). TinyZero's 0.1 format score on
//! its 0–1 scale corresponds to −0.8 here.

mod solver;
mod verify;

use std::sync::Arc;

pub use solver::{is_solvable, solve};
pub use verify::{
    MAX_NUMBER, Op, Parsed, Step, Verdict, check, format_response, parse_response, verify,
};

use super::TaskError;
use super::config::TaskKind;
use super::error::invalid;
use super::hooks::{CharHooks, Hooks, NgramRule};
use super::problem::{Problem, ProblemSpec, Score, Task, wrong_problem};
use super::split::{Split, TaskRng, draw_in_split, uniform_u32};
use super::vocab::{ANSWER, PROMPT_END, STOP, SYNTHETIC_VOCAB, TokenText};

const NAME: &str = "countdown";

/// Expressions the generator may draw for one candidate before giving up on the target range.
const TARGET_TRIES: usize = 1000;

/// Difficulty and reward knobs of `countdown`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CountdownConfig {
    /// Seed of the problem streams.
    pub seed: u64,
    /// Fewest given numbers (≥ 2).
    pub min_numbers: u32,
    /// Most given numbers (≥ `min_numbers`, ≤ 5 so the solver stays instant).
    pub max_numbers: u32,
    /// Smallest given number (≥ 1).
    pub min_value: u32,
    /// Largest given number (≥ `min_value`, ≤ 999).
    pub max_value: u32,
    /// Largest target (≥ 1, ≤ [`MAX_NUMBER`]); targets are at least 1.
    pub max_target: u32,
    /// Reward of a well-formed wrong response, in `[−1, 1)`; −1 = no partial credit.
    pub format_reward: f64,
    /// Repetition rule for the sampler hooks (`n = 0` turns it off).
    pub repetition: NgramRule,
}

impl Default for CountdownConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            min_numbers: 3,
            max_numbers: 3,
            min_value: 1,
            max_value: 20,
            max_target: 100,
            format_reward: -1.0,
            repetition: NgramRule { n: 6, count: 3 },
        }
    }
}

impl CountdownConfig {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<(), TaskError> {
        if self.min_numbers < 2 || self.min_numbers > self.max_numbers || self.max_numbers > 5 {
            return Err(invalid(
                NAME,
                format!(
                    "need 2 <= min_numbers <= max_numbers <= 5, got {}..={}",
                    self.min_numbers, self.max_numbers
                ),
            ));
        }
        if self.min_value == 0 || self.min_value > self.max_value || self.max_value > 999 {
            return Err(invalid(
                NAME,
                format!(
                    "need 1 <= min_value <= max_value <= 999, got {}..={}",
                    self.min_value, self.max_value
                ),
            ));
        }
        if self.max_target == 0 || u64::from(self.max_target) > MAX_NUMBER {
            return Err(invalid(
                NAME,
                format!("max_target must be in 1..={MAX_NUMBER}, got {}", self.max_target),
            ));
        }
        if !(-1.0..1.0).contains(&self.format_reward) {
            return Err(invalid(
                NAME,
                format!("format_reward must be in [-1, 1), got {}", self.format_reward),
            ));
        }
        self.repetition.validate(NAME)?;
        Ok(())
    }
}

/// The `countdown` task.
#[derive(Clone, Debug)]
pub struct Countdown {
    config: CountdownConfig,
}

impl Countdown {
    /// The task under a validated `config`.
    pub fn new(config: CountdownConfig) -> Result<Self, TaskError> {
        config.validate()?;
        Ok(Self { config })
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &CountdownConfig {
        &self.config
    }

    /// One candidate: numbers and a target reached by a random expression over all of them.
    fn draw(&self, rng: &mut TaskRng) -> Result<(Vec<u32>, u32), TaskError> {
        let c = &self.config;
        for _ in 0..TARGET_TRIES {
            let n = uniform_u32(rng, c.min_numbers, c.max_numbers);
            let numbers: Vec<u32> =
                (0..n).map(|_| uniform_u32(rng, c.min_value, c.max_value)).collect();
            let target = random_expression(&numbers, rng);
            if let Some(target) = target.filter(|t| (1..=u64::from(c.max_target)).contains(t)) {
                // In 1..=max_target, so it fits in u32.
                return Ok((numbers, target as u32));
            }
        }
        Err(invalid(
            NAME,
            format!(
                "{TARGET_TRIES} random expressions all missed the targets 1..={}; raise \
                 max_target or lower the numbers",
                c.max_target
            ),
        ))
    }
}

/// Combines random pairs with random valid operations until one value is left. A
/// subtraction must be positive and a division exact by a divisor > 1, so no intermediate is
/// zero and none is a trivial copy. `None` when no operation keeps a pair within the grammar's
/// [`MAX_NUMBER`] (not reachable with the validated ranges; the caller redraws).
fn random_expression(numbers: &[u32], rng: &mut TaskRng) -> Option<u64> {
    let mut pool: Vec<u64> = numbers.iter().map(|&n| u64::from(n)).collect();
    while pool.len() > 1 {
        let i = rng.uniform_usize(0, pool.len() - 1);
        let a = pool.swap_remove(i);
        let j = rng.uniform_usize(0, pool.len() - 1);
        let b = pool.swap_remove(j);
        let (lhs, rhs) = if a >= b { (a, b) } else { (b, a) };
        let results: Vec<u64> = Op::ALL
            .into_iter()
            .filter(|op| match op {
                Op::Sub => lhs > rhs,
                Op::Div => rhs > 1,
                Op::Add | Op::Mul => true,
            })
            .filter_map(|op| op.apply(lhs, rhs))
            .collect();
        let last = results.len().checked_sub(1)?;
        pool.push(results[rng.uniform_usize(0, last)]);
    }
    pool.first().copied()
}

fn spec_of(problem: &Problem) -> Result<(&[u32], u32), TaskError> {
    match &problem.spec {
        ProblemSpec::Countdown { numbers, target } => Ok((numbers, *target)),
        _ => Err(wrong_problem(TaskKind::Countdown, problem)),
    }
}

fn join(numbers: &[u32]) -> String {
    numbers.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

impl Task for Countdown {
    fn kind(&self) -> TaskKind {
        TaskKind::Countdown
    }

    fn vocabulary(&self) -> Option<&str> {
        Some(SYNTHETIC_VOCAB)
    }

    fn stop_symbol(&self) -> Option<char> {
        Some(STOP)
    }

    fn generate(&self, split: Split, index: u64) -> Result<Problem, TaskError> {
        let ((numbers, target), key) =
            draw_in_split(NAME, self.config.seed, split, index, |rng| {
                let (numbers, target) = self.draw(rng)?;
                let mut sorted = numbers.clone();
                sorted.sort_unstable();
                let canonical = format!("{NAME}|{}>{target}", join(&sorted));
                Ok(((numbers, target), canonical))
            })?;
        let prompt = format!("{}>{target}{PROMPT_END}", join(&numbers));
        let answer = target.to_string();
        Ok(Problem {
            split,
            index,
            key,
            prompt,
            answer,
            spec: ProblemSpec::Countdown { numbers, target },
        })
    }

    /// One solution of the solver, drawn uniformly.
    fn sft_response(&self, problem: &Problem, rng: &mut TaskRng) -> Result<String, TaskError> {
        let (numbers, target) = spec_of(problem)?;
        let solutions = solve(numbers, target);
        if solutions.is_empty() {
            // Only a hand-made problem can get here: generated ones are solvable.
            return Err(invalid(NAME, format!("{} has no solution", problem.prompt)));
        }
        let pick = rng.uniform_usize(0, solutions.len() - 1);
        Ok(format_response(&solutions[pick], u64::from(target)))
    }

    fn score(&self, problem: &Problem, response: &str) -> Result<Score, TaskError> {
        let (numbers, target) = spec_of(problem)?;
        let Ok(parsed) = parse_response(response) else { return Ok(Score::malformed()) };
        let answer = parsed.answer.to_string();
        Ok(match check(numbers, target, &parsed) {
            Verdict::Correct => Score::correct(answer),
            _ => Score::wrong(Some(answer), true, self.config.format_reward),
        })
    }

    /// Answer = the marker `A`; repetition = the configured n-gram rule.
    fn hooks(&self, tokens: Arc<dyn TokenText>) -> Result<Hooks, TaskError> {
        Ok(Hooks::Char(CharHooks::new(tokens.as_ref(), ANSWER, self.config.repetition)?))
    }
}
