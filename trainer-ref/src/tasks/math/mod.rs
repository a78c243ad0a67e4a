//! `math`: questions from JSONL files (GSM8K, MATH, …) scored by final-answer extraction,
//! normalisation and exact or numeric equality; reward ±1 (docs/treepo.md §3.3, §4.1).
//!
//! ```text
//! file line   {"question": "Tom has 3 apples …", "answer": "… so 3 + 4 = 7.\n#### 7"}
//! prompt      Tom has 3 apples …\nPlease reason step by step, and put your final answer within \boxed{}.
//! response    … 3 + 4 = 7, so the answer is \boxed{7}.
//! ```
//!
//! The gold answer is the `####` number of the `answer` field, else its last `\boxed{}`, else
//! the whole field. A response's answer is found by [`extract_answer`] (Qwen-Math's order) and
//! compared by [`answers_match`]. This is a string-level port: TreePO's math-verify parses both
//! sides into SymPy, so equivalent expressions in different forms (`\frac{\sqrt2}{2}` vs
//! `\frac{1}{\sqrt2}`, reordered sets) are *not* matched here — a known, conservative gap.
//!
//! Splits: with `eval_file`, eval is that file and train is `train_file` minus every question
//! that also appears in eval; without it, `train_file` is split by the content hash of each
//! question (1 in 8 to eval). Train index `i` is item `perm[i mod n]` of a seeded permutation,
//! eval index `i` is item `i mod n` in file order. Works with any tokenizer: prompts and
//! responses are text, and the hooks decode with the tokenizer they are given.

mod data;
mod extract;
mod normalize;

use std::path::PathBuf;
use std::sync::Arc;

pub use data::{MathItem, load_jsonl, parse_jsonl};
pub use extract::{
    Extracted, Rule, STOP_WORDS, cut_at_stop_words, extract_answer, extract_hashes,
    extract_last_boxed,
};
pub use normalize::{REL_TOLERANCE, answers_match, normalize_answer, parse_numeric};

use super::TaskError;
use super::config::TaskKind;
use super::error::invalid;
use super::hooks::{Hooks, TextAnswerHooks};
use super::problem::{Problem, ProblemSpec, Score, Task, wrong_problem};
use super::split::{Split, TaskRng, content_hash, problem_stream};
use super::vocab::TokenText;

const NAME: &str = "math";

/// TreePO's evaluation instruction.
pub const DEFAULT_INSTRUCTION: &str =
    "Please reason step by step, and put your final answer within \\boxed{}.";

/// Data and prompt knobs of `math`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MathConfig {
    /// Seed of the training order.
    pub seed: u64,
    /// JSONL file of training questions (required by [`MathTask::new`]).
    pub train_file: Option<PathBuf>,
    /// JSONL file of eval questions; `None` splits `train_file` by content hash.
    pub eval_file: Option<PathBuf>,
    /// Appended to each question on a new line (empty: the question alone).
    pub instruction: String,
}

impl Default for MathConfig {
    fn default() -> Self {
        Self { seed: 0, train_file: None, eval_file: None, instruction: DEFAULT_INSTRUCTION.into() }
    }
}

/// The `math` task.
#[derive(Clone, Debug)]
pub struct MathTask {
    config: MathConfig,
    train: Vec<MathItem>,
    eval: Vec<MathItem>,
    /// Training order: a seeded permutation of `train`.
    order: Vec<usize>,
    dropped: usize,
}

/// The gold final answer of a reference solution: its `####` number, else its last
/// `\boxed{}`, else the whole (trimmed) text.
#[must_use]
pub fn gold_answer(solution: &str) -> String {
    extract_hashes(solution)
        .or_else(|| extract_last_boxed(solution).map(str::to_string))
        .unwrap_or_else(|| solution.trim().to_string())
}

fn question_key(question: &str) -> u64 {
    let collapsed: Vec<&str> = question.split_whitespace().collect();
    content_hash(&format!("{NAME}|{}", collapsed.join(" ")))
}

impl MathTask {
    /// Loads `config.train_file` (and `config.eval_file`).
    pub fn new(config: MathConfig) -> Result<Self, TaskError> {
        let Some(train_file) = &config.train_file else {
            return Err(invalid(NAME, "set `train_file` to a JSONL file of {question, answer}"));
        };
        let train = load_jsonl(train_file)?;
        let eval = config.eval_file.as_deref().map(load_jsonl).transpose()?;
        Ok(Self::from_items(config, train, eval))
    }

    /// The task over in-memory items (the files in `config` are ignored).
    #[must_use]
    pub fn from_items(
        config: MathConfig,
        train: Vec<MathItem>,
        eval: Option<Vec<MathItem>>,
    ) -> Self {
        let (train, eval, dropped) = match eval {
            Some(eval) => {
                let held: std::collections::HashSet<u64> =
                    eval.iter().map(|it| question_key(&it.question)).collect();
                let before = train.len();
                let train: Vec<MathItem> = train
                    .into_iter()
                    .filter(|it| !held.contains(&question_key(&it.question)))
                    .collect();
                let dropped = before - train.len();
                (train, eval, dropped)
            }
            None => {
                let (eval, train): (Vec<MathItem>, Vec<MathItem>) = train
                    .into_iter()
                    .partition(|it| Split::of_hash(question_key(&it.question)) == Split::Eval);
                (train, eval, 0)
            }
        };
        let mut order: Vec<usize> = (0..train.len()).collect();
        problem_stream(config.seed, NAME, Split::Train, 0).shuffle(&mut order);
        Self { config, train, eval, order, dropped }
    }

    /// Number of problems in `split`.
    #[must_use]
    pub fn len(&self, split: Split) -> usize {
        match split {
            Split::Train => self.train.len(),
            Split::Eval => self.eval.len(),
        }
    }

    /// Training questions removed because they also appear in the eval file.
    #[must_use]
    pub fn dropped_overlap(&self) -> usize {
        self.dropped
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &MathConfig {
        &self.config
    }

    fn item(&self, split: Split, index: u64) -> Option<&MathItem> {
        let n = self.len(split) as u64;
        let i = usize::try_from(index.checked_rem(n)?).ok()?;
        match split {
            Split::Train => self.train.get(*self.order.get(i)?),
            Split::Eval => self.eval.get(i),
        }
    }
}

impl Task for MathTask {
    fn kind(&self) -> TaskKind {
        TaskKind::Math
    }

    fn vocabulary(&self) -> Option<&str> {
        None
    }

    fn stop_symbol(&self) -> Option<char> {
        None
    }

    fn generate(&self, split: Split, index: u64) -> Result<Problem, TaskError> {
        let item = self.item(split, index).ok_or_else(|| TaskError::EmptySplit {
            task: NAME,
            split: split.name(),
            msg: "the data file has no question for it".into(),
        })?;
        let prompt = if self.config.instruction.is_empty() {
            item.question.clone()
        } else {
            format!("{}\n{}", item.question, self.config.instruction)
        };
        Ok(Problem {
            split,
            index,
            key: question_key(&item.question),
            prompt,
            answer: normalize_answer(&gold_answer(&item.answer)),
            spec: ProblemSpec::Math {
                question: item.question.clone(),
                solution: item.answer.clone(),
            },
        })
    }

    /// The reference solution when it states its answer (`####` or `\boxed{}`), else
    /// `\boxed{<answer>}`; no stop token (append the tokenizer's end-of-sequence id).
    fn sft_response(&self, problem: &Problem, _rng: &mut TaskRng) -> Result<String, TaskError> {
        let ProblemSpec::Math { solution, .. } = &problem.spec else {
            return Err(wrong_problem(TaskKind::Math, problem));
        };
        let states = extract_hashes(solution).is_some() || extract_last_boxed(solution).is_some();
        Ok(if states { solution.clone() } else { format!("\\boxed{{{}}}", solution.trim()) })
    }

    fn score(&self, problem: &Problem, response: &str) -> Result<Score, TaskError> {
        let ProblemSpec::Math { solution, .. } = &problem.spec else {
            return Err(wrong_problem(TaskKind::Math, problem));
        };
        let Some(found) = extract_answer(response) else { return Ok(Score::malformed()) };
        let answer = normalize_answer(&found.text);
        let well_formed = found.rule.is_strict();
        Ok(if answers_match(&found.text, &gold_answer(solution)) {
            Score { reward: 1.0, correct: true, answer: Some(answer), well_formed }
        } else {
            Score::wrong(Some(answer), well_formed, -1.0)
        })
    }

    /// `\boxed{}` or `####` in the decoded segment; TreePO's 32 × 8 character repetition.
    fn hooks(&self, tokens: Arc<dyn TokenText>) -> Result<Hooks, TaskError> {
        Ok(Hooks::Text(TextAnswerHooks::new(tokens)))
    }
}
