//! Segment classification (docs/treepo.md §1.3): after a segment is appended, decide whether its
//! path finishes (and why) or stays active. The text checks ("does this segment hold a complete
//! answer", "is it degenerate repetition") are task hooks ([`TaskHooks`]) so non-text tasks work:
//! [`TextHooks`] is TreePO's `\boxed{}` + 32-char × 8 rule over a detokenizer, [`NgramHooks`] a
//! token n-gram rule with a caller-supplied answer check.

mod ngram;
mod text;

use std::collections::BTreeSet;

pub use ngram::{NgramHooks, has_ngram_repetition};
pub use text::{TextHooks, extract_last_boxed, has_repetition};

use crate::config::{BoxedEosPolicy, RepetitionPolicy};

/// Why a path stopped.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum FinishReason {
    /// A complete answer and a stop token (or the answer alone under `boxed_as_eos`).
    Finished,
    /// A stop token without an answer.
    EarlyStoppedByEos,
    /// The response reached `max_response_length` (truncated to it).
    MaxOutputTokens,
    /// The path reached depth `d`.
    MaxInferSteps,
    /// The segment is degenerate repetition.
    RepetitionStop,
    /// The KV pool ran out and nothing could progress: the path was cut where it stood.
    KvExhausted,
}

impl FinishReason {
    /// Short label used in renderings.
    #[must_use]
    pub const fn label(self) -> &'static str {
        match self {
            Self::Finished => "finished",
            Self::EarlyStoppedByEos => "eos",
            Self::MaxOutputTokens => "max_tokens",
            Self::MaxInferSteps => "max_depth",
            Self::RepetitionStop => "repetition",
            Self::KvExhausted => "kv_exhausted",
        }
    }
}

/// What a task's hooks say about one segment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SegmentFlags {
    /// The segment holds a complete answer (TreePO: a `\boxed{...}`).
    pub answer: bool,
    /// The segment is degenerate repetition.
    pub repetition: bool,
}

/// Task-specific segment checks. They see only the new segment, as TreePO does (an answer in an
/// earlier segment plus a stop token now is `EarlyStoppedByEos`; both are fallback candidates).
pub trait TaskHooks {
    /// Whether the segment holds a complete answer.
    fn has_answer(&self, segment: &[u32]) -> bool;
    /// Whether the segment is degenerate repetition.
    fn is_repetition(&self, segment: &[u32]) -> bool;
    /// Both checks at once (override to share work, e.g. one detokenization).
    fn inspect(&self, segment: &[u32]) -> SegmentFlags {
        SegmentFlags { answer: self.has_answer(segment), repetition: self.is_repetition(segment) }
    }
}

/// Hooks that never report an answer or repetition (paths end by stop token or limits only).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoHooks;

impl TaskHooks for NoHooks {
    fn has_answer(&self, _: &[u32]) -> bool {
        false
    }
    fn is_repetition(&self, _: &[u32]) -> bool {
        false
    }
}

/// The rules' parameters.
#[derive(Clone, Copy, Debug)]
pub struct ClassifyRules<'a> {
    /// Stop token ids.
    pub stop: &'a BTreeSet<u32>,
    /// `max_response_length`.
    pub max_response: usize,
    /// `d`.
    pub max_depth: usize,
    /// Repetition priority.
    pub repetition: RepetitionPolicy,
    /// Answer policy.
    pub boxed_eos: BoxedEosPolicy,
}

/// The decision for one segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The path goes on.
    Active,
    /// The path is a leaf; when `truncate_to` is `Some(n)` the response must be cut to `n` tokens.
    Finish {
        /// Why.
        reason: FinishReason,
        /// Response length to truncate to (only for [`FinishReason::MaxOutputTokens`]).
        truncate_to: Option<usize>,
    },
}

/// Classifies a segment, in docs/treepo.md §1.3's order:
///
/// 1. repetition (when `most_prioritized`) → `RepetitionStop`;
/// 2. answer and stop token (or the answer alone under `boxed_as_eos`) → `Finished`;
/// 3. a stop token at any position → `EarlyStoppedByEos`;
/// 4. `response_len >= max_response` → `MaxOutputTokens`, truncated to `max_response`;
/// 5. `depth >= d` → `MaxInferSteps`;
/// 6. repetition (`least_prioritized`) → `RepetitionStop`;
/// 7. otherwise active.
///
/// `response_len` is the response length *including* this segment, `depth` the path's depth
/// counting this segment (the first segment is depth 1).
pub fn classify_segment(
    segment: &[u32],
    response_len: usize,
    depth: usize,
    rules: &ClassifyRules<'_>,
    hooks: &dyn TaskHooks,
) -> Verdict {
    let flags = hooks.inspect(segment);
    let finish = |reason| Verdict::Finish { reason, truncate_to: None };
    if rules.repetition == RepetitionPolicy::MostPrioritized && flags.repetition {
        return finish(FinishReason::RepetitionStop);
    }
    let has_stop = segment.iter().any(|t| rules.stop.contains(t));
    let answered = match rules.boxed_eos {
        BoxedEosPolicy::BoxedAndEosFirst => flags.answer && has_stop,
        BoxedEosPolicy::BoxedAsEos => flags.answer,
    };
    if answered {
        return finish(FinishReason::Finished);
    }
    if has_stop {
        return finish(FinishReason::EarlyStoppedByEos);
    }
    if response_len >= rules.max_response {
        return Verdict::Finish {
            reason: FinishReason::MaxOutputTokens,
            truncate_to: (response_len > rules.max_response).then_some(rules.max_response),
        };
    }
    if depth >= rules.max_depth {
        return finish(FinishReason::MaxInferSteps);
    }
    if flags.repetition {
        return finish(FinishReason::RepetitionStop);
    }
    Verdict::Active
}
