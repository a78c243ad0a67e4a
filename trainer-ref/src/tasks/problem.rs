//! What every task produces and consumes: problems, scores, and the [`Task`] trait.

use std::sync::Arc;

use super::TaskError;
use super::arithmetic::ArithOp;
use super::config::TaskKind;
use super::hooks::Hooks;
use super::split::{Split, TaskRng};
use super::vocab::TokenText;

/// One problem: the prompt the model is conditioned on, the reference answer, and the
/// structured content the verifier checks against.
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    /// The split it was drawn for (always the split its content hashes to).
    pub split: Split,
    /// Its index in that split's stream.
    pub index: u64,
    /// Content hash of its canonical form (decides the split; equal for equal problems).
    pub key: u64,
    /// The text the model sees. Synthetic prompts end with `:` and the response follows
    /// directly; a text task's prompt is the question and its instruction (apply a chat
    /// template around it where the model needs one).
    pub prompt: String,
    /// The reference final answer (as the task's `Score::answer` would report it).
    pub answer: String,
    /// The structured content.
    pub spec: ProblemSpec,
}

/// The structured content of a problem, per task.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum ProblemSpec {
    /// Parity of `bits` (each 0 or 1).
    Parity {
        /// The input bits, in prompt order.
        bits: Vec<u8>,
    },
    /// Reach `target` from `numbers`, each used exactly once.
    Countdown {
        /// The given numbers, in prompt order.
        numbers: Vec<u32>,
        /// The target.
        target: u32,
    },
    /// `a op b`.
    Arithmetic {
        /// The operation.
        op: ArithOp,
        /// Left operand.
        a: u64,
        /// Right operand.
        b: u64,
    },
    /// A question from a data file.
    Math {
        /// The question text.
        question: String,
        /// The reference solution as given in the file (the `answer` field).
        solution: String,
    },
}

impl ProblemSpec {
    /// The task the problem belongs to.
    #[must_use]
    pub const fn task(&self) -> TaskKind {
        match self {
            Self::Parity { .. } => TaskKind::ParityCot,
            Self::Countdown { .. } => TaskKind::Countdown,
            Self::Arithmetic { .. } => TaskKind::Arithmetic,
            Self::Math { .. } => TaskKind::Math,
        }
    }
}

/// The verdict on one response (docs/treepo.md §3.3: reward ±1, `acc` 1/0).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Score {
    /// +1 correct, −1 otherwise (a task may document a partial value for a well-formed wrong
    /// answer, off by default).
    pub reward: f64,
    /// Whether the final answer is correct (`acc`).
    pub correct: bool,
    /// The extracted final answer, for majority voting (`None` when nothing was extracted).
    pub answer: Option<String>,
    /// Whether the response follows the task's answer format.
    pub well_formed: bool,
}

impl Score {
    /// A correct response with final answer `answer`.
    #[must_use]
    pub fn correct(answer: String) -> Self {
        Self { reward: 1.0, correct: true, answer: Some(answer), well_formed: true }
    }

    /// A wrong response, with the reward `reward`.
    #[must_use]
    pub fn wrong(answer: Option<String>, well_formed: bool, reward: f64) -> Self {
        Self { reward, correct: false, answer, well_formed }
    }

    /// A response that does not follow the format (reward −1, no answer).
    #[must_use]
    pub fn malformed() -> Self {
        Self::wrong(None, false, -1.0)
    }

    /// `acc` as a number: 1.0 when correct, else 0.0.
    #[must_use]
    pub fn acc(&self) -> f64 {
        if self.correct { 1.0 } else { 0.0 }
    }
}

/// A verifiable task. Object-safe: the binary holds a `Box<dyn Task>` built by
/// [`super::TaskConfig::build`].
///
/// Contracts:
/// * [`Task::generate`] is a pure function of (seed, split, index) and the task's
///   configuration; its result's content hashes into `split`, so no problem is in both splits.
/// * [`Task::sft_response`] is what the model should generate after the prompt, *including*
///   the stop symbol for synthetic tasks, and [`Task::score`] scores it correct.
/// * [`Task::score`] reads the response up to its first stop symbol; a synthetic response
///   without one is incomplete (not well formed, reward −1): a cut-off `A3` could be the
///   prefix of `A33`.
pub trait Task: Send + Sync + std::fmt::Debug {
    /// Which task this is.
    fn kind(&self) -> TaskKind;

    /// The task's name (as [`TaskKind::from_name`] reads it).
    fn name(&self) -> &'static str {
        self.kind().name()
    }

    /// Every character prompts and responses use, in token-id order (padding first, then the
    /// stop symbol); `None` for text tasks, which need a subword tokenizer.
    fn vocabulary(&self) -> Option<&str>;

    /// The symbol that ends a response; `None` for text tasks, whose stop is the tokenizer's
    /// end-of-sequence token.
    fn stop_symbol(&self) -> Option<char>;

    /// Problem `index` of `split`.
    fn generate(&self, split: Split, index: u64) -> Result<Problem, TaskError>;

    /// A demonstration for supervised warm-up, drawn with `rng` where the task mixes
    /// demonstration styles or picks among several solutions.
    fn sft_response(&self, problem: &Problem, rng: &mut TaskRng) -> Result<String, TaskError>;

    /// Scores `response` (the decoded response text) against `problem`. Errors only when
    /// `problem` belongs to another task.
    fn score(&self, problem: &Problem, response: &str) -> Result<Score, TaskError>;

    /// The sampler hooks over a tokenizer's ids.
    fn hooks(&self, tokens: Arc<dyn TokenText>) -> Result<Hooks, TaskError>;
}

/// The error for a `problem` of another task given to `task`.
pub(crate) fn wrong_problem(task: TaskKind, problem: &Problem) -> TaskError {
    TaskError::WrongProblem { task: task.name(), got: problem.spec.task().name() }
}
