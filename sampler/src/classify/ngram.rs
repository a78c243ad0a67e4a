//! Token-level hooks for non-text tasks: repetition is "some n-gram of token ids occurs at least
//! `count` times" (overlapping), the answer check is a caller-supplied verifier.

use std::collections::HashMap;

use super::TaskHooks;

/// Whether some run of `n` consecutive tokens occurs at least `count` times in `tokens`
/// (overlapping occurrences count). `n == 0` never repeats.
#[must_use]
pub fn has_ngram_repetition(tokens: &[u32], n: usize, count: usize) -> bool {
    if n == 0 || tokens.len() < n {
        return count == 0;
    }
    let mut seen: HashMap<&[u32], usize> = HashMap::new();
    tokens.windows(n).any(|w| {
        let c = seen.entry(w).or_insert(0);
        *c += 1;
        *c >= count
    })
}

/// Token n-gram repetition plus an answer verifier.
pub struct NgramHooks<A> {
    answer: A,
    n: usize,
    count: usize,
}

impl<A: Fn(&[u32]) -> bool> NgramHooks<A> {
    /// Repetition when an `n`-gram occurs `count` times; `answer` says whether a segment holds a
    /// complete answer.
    pub fn new(n: usize, count: usize, answer: A) -> Self {
        Self { answer, n, count }
    }
}

impl<A: Fn(&[u32]) -> bool> TaskHooks for NgramHooks<A> {
    fn has_answer(&self, segment: &[u32]) -> bool {
        (self.answer)(segment)
    }

    fn is_repetition(&self, segment: &[u32]) -> bool {
        has_ngram_repetition(segment, self.n, self.count)
    }
}
