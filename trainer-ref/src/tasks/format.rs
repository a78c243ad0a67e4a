//! Building model inputs from problems: prompts for sampling, prompt + response pairs for
//! supervised warm-up, with the prompt length that the loss mask needs.
//!
//! The prompt and the response are encoded separately and concatenated, so the boundary is a
//! token boundary under any tokenizer (a subword tokenizer could merge across it otherwise),
//! and `prompt_len` tells the trainer where the loss starts.

use std::ops::Range;

use super::TaskError;
use super::problem::{Problem, Task};
use super::split::{Split, TaskRng};

/// A supervised example: the prompt (conditioned on, no loss) and the response (trained on;
/// for synthetic tasks it ends with the stop symbol).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SftExample {
    /// The problem's prompt.
    pub prompt: String,
    /// The demonstration.
    pub response: String,
}

/// Token ids of an example and where its response starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedExample {
    /// Prompt ids, then response ids (then any end-of-sequence ids).
    pub ids: Vec<u32>,
    /// Number of prompt ids; the loss covers `ids[prompt_len..]`.
    pub prompt_len: usize,
}

impl EncodedExample {
    /// The prompt ids.
    #[must_use]
    pub fn prompt(&self) -> &[u32] {
        &self.ids[..self.prompt_len]
    }

    /// The response ids (the trained part).
    #[must_use]
    pub fn response(&self) -> &[u32] {
        &self.ids[self.prompt_len..]
    }
}

impl SftExample {
    /// The demonstration of `problem` under `task`, drawn with `rng`.
    pub fn draw(task: &dyn Task, problem: &Problem, rng: &mut TaskRng) -> Result<Self, TaskError> {
        Ok(Self { prompt: problem.prompt.clone(), response: task.sft_response(problem, rng)? })
    }

    /// Prompt and response as one text.
    #[must_use]
    pub fn text(&self) -> String {
        format!("{}{}", self.prompt, self.response)
    }

    /// Encodes prompt and response separately with `encode`, then appends `eos` (empty for the
    /// synthetic tasks, whose response already ends with the stop symbol; the tokenizer's
    /// end-of-sequence id for text tasks).
    pub fn encode<E>(
        &self,
        mut encode: impl FnMut(&str) -> Result<Vec<u32>, E>,
        eos: &[u32],
    ) -> Result<EncodedExample, E> {
        let mut ids = encode(&self.prompt)?;
        let prompt_len = ids.len();
        ids.extend(encode(&self.response)?);
        ids.extend_from_slice(eos);
        Ok(EncodedExample { ids, prompt_len })
    }
}

/// Problems `indices` of `split`, in order.
pub fn problems(
    task: &dyn Task,
    split: Split,
    indices: Range<u64>,
) -> Result<Vec<Problem>, TaskError> {
    indices.map(|i| task.generate(split, i)).collect()
}
