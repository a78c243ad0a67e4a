//! The tasks' segment hooks for the sampler (docs/treepo.md §1.3): "does this segment hold a
//! complete answer" and "is it degenerate repetition".
//!
//! * Synthetic tasks ([`CharHooks`]): the answer check is "the segment contains the answer
//!   marker `A`", so a segment with `A…#` is `Finished` and a stop without it is
//!   `EarlyStoppedByEos`; repetition is a token n-gram rule (off for tasks whose correct
//!   responses legitimately repeat, such as a parity chain of zeros).
//! * Text tasks ([`TextAnswerHooks`]): the answer check is a `\boxed{…}` or a `#### <number>`
//!   in the decoded segment, repetition TreePO's "32 characters × 8" rule.
//!
//! The hooks see one segment only, as in TreePO: an answer marker in one segment and the stop
//! symbol in the next make an `EarlyStoppedByEos` leaf, which is still scored on its full
//! response.

use std::sync::Arc;

use treepo_sampler::TaskHooks;
use treepo_sampler::classify::{has_ngram_repetition, has_repetition};

use super::TaskError;
use super::math::{extract_hashes, extract_last_boxed};
use super::vocab::TokenText;

/// "Some run of `n` consecutive tokens occurs at least `count` times in one segment"
/// (overlapping occurrences count); `n = 0` turns the rule off. In TOML:
/// `repetition = { n = 6, count = 3 }`, or `{ n = 0, count = 0 }` for off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NgramRule {
    /// Run length in tokens; 0 = no repetition rule.
    pub n: usize,
    /// Occurrences that make it repetition (≥ 2 when the rule is on).
    pub count: usize,
}

impl NgramRule {
    /// No repetition rule.
    pub const OFF: Self = Self { n: 0, count: 0 };

    /// Whether the rule is off.
    #[must_use]
    pub const fn is_off(&self) -> bool {
        self.n == 0
    }

    /// Checks the ranges.
    pub fn validate(&self, task: &'static str) -> Result<(), TaskError> {
        if !self.is_off() && self.count < 2 {
            return Err(super::error::invalid(
                task,
                format!("repetition rule needs count >= 2 (or n = 0 for off), got {self:?}"),
            ));
        }
        Ok(())
    }
}

/// Hooks of the synthetic tasks over token ids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CharHooks {
    answer_id: u32,
    repetition: NgramRule,
}

impl CharHooks {
    /// Hooks that look for `marker` (its id in `tokens`) and apply `repetition` unless off.
    pub fn new(
        tokens: &dyn TokenText,
        marker: char,
        repetition: NgramRule,
    ) -> Result<Self, TaskError> {
        let answer_id = tokens.symbol_id(marker).ok_or_else(|| {
            TaskError::Vocabulary(format!(
                "the tokenizer has no token {marker:?} (the answer marker); build it from the \
                 task's vocabulary"
            ))
        })?;
        Ok(Self { answer_id, repetition })
    }
}

impl TaskHooks for CharHooks {
    fn has_answer(&self, segment: &[u32]) -> bool {
        segment.contains(&self.answer_id)
    }

    fn is_repetition(&self, segment: &[u32]) -> bool {
        let r = self.repetition;
        !r.is_off() && has_ngram_repetition(segment, r.n, r.count)
    }
}

/// Hooks of text tasks: a `\boxed{…}` (brace-matched) or `#### <number>` in the decoded
/// segment is an answer; repetition is a substring of `len` characters occurring `count`
/// times (TreePO: 32 × 8).
#[derive(Clone)]
pub struct TextAnswerHooks {
    tokens: Arc<dyn TokenText>,
    repetition_len: usize,
    repetition_count: usize,
}

impl TextAnswerHooks {
    /// Hooks decoding with `tokens`, with TreePO's repetition rule.
    #[must_use]
    pub fn new(tokens: Arc<dyn TokenText>) -> Self {
        Self { tokens, repetition_len: 32, repetition_count: 8 }
    }

    fn flags(text: &str) -> bool {
        extract_last_boxed(text).is_some() || extract_hashes(text).is_some()
    }
}

impl std::fmt::Debug for TextAnswerHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextAnswerHooks")
            .field("repetition_len", &self.repetition_len)
            .field("repetition_count", &self.repetition_count)
            .finish_non_exhaustive()
    }
}

impl TaskHooks for TextAnswerHooks {
    fn has_answer(&self, segment: &[u32]) -> bool {
        Self::flags(&self.tokens.decode(segment))
    }

    fn is_repetition(&self, segment: &[u32]) -> bool {
        has_repetition(&self.tokens.decode(segment), self.repetition_len, self.repetition_count)
    }

    fn inspect(&self, segment: &[u32]) -> treepo_sampler::SegmentFlags {
        let text = self.tokens.decode(segment);
        treepo_sampler::SegmentFlags {
            answer: Self::flags(&text),
            repetition: has_repetition(&text, self.repetition_len, self.repetition_count),
        }
    }
}

/// The hooks of any task, as one concrete type the sampler is generic over.
#[derive(Clone, Debug)]
pub enum Hooks {
    /// Synthetic tasks.
    Char(CharHooks),
    /// Text tasks.
    Text(TextAnswerHooks),
}

impl TaskHooks for Hooks {
    fn has_answer(&self, segment: &[u32]) -> bool {
        match self {
            Self::Char(h) => h.has_answer(segment),
            Self::Text(h) => h.has_answer(segment),
        }
    }

    fn is_repetition(&self, segment: &[u32]) -> bool {
        match self {
            Self::Char(h) => h.is_repetition(segment),
            Self::Text(h) => h.is_repetition(segment),
        }
    }

    fn inspect(&self, segment: &[u32]) -> treepo_sampler::SegmentFlags {
        match self {
            Self::Char(h) => h.inspect(segment),
            Self::Text(h) => h.inspect(segment),
        }
    }
}
