//! A scripted model: every node's tokens are given by a rule of (query, child-ordinal path), so
//! tests can pin every scheduler decision by hand.

use std::collections::HashMap;

use super::{Row, ToyModel};
use crate::engine::{DecodeParams, EngineError};
use crate::logits::Sampled;

/// The tokens (and their log-probs) one node produces. When they run out the segment ends
/// without a stop token (end `MaxTokens`) — a short segment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScriptSegment {
    /// Tokens in order.
    pub tokens: Vec<u32>,
    /// Log-prob per token (missing entries are `-1.0`).
    pub logprobs: Vec<f32>,
}

impl ScriptSegment {
    /// Tokens with log-prob `-1.0` each.
    #[must_use]
    pub fn tokens(tokens: &[u32]) -> Self {
        Self { tokens: tokens.to_vec(), logprobs: Vec::new() }
    }

    /// `n` copies of `token`.
    #[must_use]
    pub fn repeat(token: u32, n: usize) -> Self {
        Self { tokens: vec![token; n], logprobs: Vec::new() }
    }

    /// Sets every token's log-prob to `logprob`.
    #[must_use]
    pub fn with_logprob(mut self, logprob: f32) -> Self {
        self.logprobs = vec![logprob; self.tokens.len()];
        self
    }
}

type Rule = Box<dyn Fn(usize, &[u32]) -> ScriptSegment>;

/// Tokens by rule, cached per (query, path).
pub struct ScriptedModel {
    rule: Rule,
    cache: HashMap<(usize, Vec<u32>), ScriptSegment>,
}

impl ScriptedModel {
    /// `rule(query, path)` gives the node's tokens; `path` is the child ordinals from the prompt
    /// node (`[2]` = the third child of the prompt, `[2, 0]` its first child, ...).
    pub fn new(rule: impl Fn(usize, &[u32]) -> ScriptSegment + 'static) -> Self {
        Self { rule: Box::new(rule), cache: HashMap::new() }
    }

    /// A fixed table; nodes not in it produce `default`.
    #[must_use]
    pub fn from_map(
        map: HashMap<(usize, Vec<u32>), ScriptSegment>,
        default: ScriptSegment,
    ) -> Self {
        Self::new(move |q, path| {
            map.get(&(q, path.to_vec())).cloned().unwrap_or_else(|| default.clone())
        })
    }
}

impl ToyModel for ScriptedModel {
    fn next_tokens(
        &mut self,
        rows: &[Row<'_>],
        _params: &DecodeParams,
    ) -> Result<Vec<Option<Sampled>>, EngineError> {
        Ok(rows
            .iter()
            .map(|r| {
                let seg = self
                    .cache
                    .entry((r.query, r.path.to_vec()))
                    .or_insert_with(|| (self.rule)(r.query, r.path));
                seg.tokens.get(r.node_pos).map(|&token| Sampled {
                    token,
                    logprob: seg.logprobs.get(r.node_pos).copied().unwrap_or(-1.0),
                    entropy: Some(0.0),
                })
            })
            .collect())
    }
}
