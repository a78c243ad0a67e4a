//! Verifiable tasks (docs/treepo.md §4.1): synthetic reasoning tasks a from-scratch character-level
//! model learns in minutes — `parity-cot`, `countdown`, `arithmetic` — and `math` over real
//! data.
//!
//! **Key decision: a problem's split is a property of its content.** Each problem has a
//! canonical form (countdown's numbers sorted, addition's operands ordered, a question with
//! its whitespace collapsed) whose stable hash puts it in eval iff `hash % 8 == 0`; a generator
//! draws from the seeded stream of `(seed, task, split, index)` until the candidate lands in
//! the requested split ([`split`]). So train and eval never share a problem — under any seed
//! and any difficulty knobs — and a problem is a pure function of its coordinates.
//!
//! Every task implements [`Task`]: `generate` a problem, give an SFT demonstration, `score` a
//! response (reward ±1, `acc`, the extracted answer for maj@k, well-formedness), and build
//! the sampler's [`Hooks`]. The synthetic tasks share one 21-symbol vocabulary
//! ([`SYNTHETIC_VOCAB`]: token id = position) and one response shape,
//! `<work>A<answer>#`: the hooks call a segment with `A` an answer, `#` is the stop symbol.
//!
//! | task | prompt | SFT response |
//! |---|---|---|
//! | `parity-cot` | `101101001110:` | `A1#` (short) or `110110001011A1#` (long) |
//! | `countdown` | `7,3,12>33:` | `7*3=21,21+12=33A33#` |
//! | `arithmetic` | `4721+389:` | `1+9+0=10,2+8+1=11,7+3+1=11,4+0+1=05A5110#` |
//! | `math` | question + `\boxed{}` instruction | the reference solution |
//!
//! ```
//! use std::sync::Arc;
//! use treepo_sampler::TaskHooks;
//! use treepo_trainer::tasks::{CharVocab, SftExample, Split, TaskConfig, TaskRng};
//!
//! let task = TaskConfig::from_name("countdown")?.build()?;
//! let problem = task.generate(Split::Train, 0)?;
//! let mut rng = TaskRng::from_state(1);
//! let demo = SftExample::draw(task.as_ref(), &problem, &mut rng)?;
//! assert!(task.score(&problem, &demo.response)?.correct);
//!
//! let vocab = CharVocab::new(task.vocabulary().unwrap_or_default())?;
//! let example = demo.encode(|text| vocab.encode(text), &[])?;
//! let hooks = task.hooks(Arc::new(vocab))?;
//! assert!(hooks.has_answer(example.response()));
//! # Ok::<(), treepo_trainer::tasks::TaskError>(())
//! ```

mod config;
mod error;
mod format;
mod hooks;
mod problem;
mod vocab;

pub mod arithmetic;
pub mod countdown;
pub mod math;
pub mod parity;
pub mod split;

pub use arithmetic::{ArithOp, Arithmetic, ArithmeticConfig};
pub use config::{TaskConfig, TaskKind};
pub use countdown::{Countdown, CountdownConfig};
pub use error::TaskError;
pub use format::{EncodedExample, SftExample, problems};
pub use hooks::{CharHooks, Hooks, NgramRule, TextAnswerHooks};
pub use math::{MathConfig, MathItem, MathTask};
pub use parity::{ParityConfig, ParityCot};
pub use problem::{Problem, ProblemSpec, Score, Task};
pub use split::{EVAL_MODULUS, Split, TaskRng};
pub use vocab::{ANSWER, CharVocab, PAD, PROMPT_END, STOP, SYNTHETIC_VOCAB, TokenText};
