//! TreePO's text checks: the last `\boxed{...}` (up to 2 nested brace levels) and the
//! "any 32-character substring occurs ≥ 8 times" repetition rule.

use std::collections::HashMap;

use super::{SegmentFlags, TaskHooks};

const BOXED: &[u8] = b"\\boxed{";

/// Content of the last `\boxed{...}` in `text`, exactly as TreePO's regex
/// `\\boxed\{((?:[^{}]|\{(?:[^{}]|\{[^{}]*\})*\})*)\}` with `findall(...)[-1]` finds it: matches
/// are non-overlapping and scanned left to right; the content may nest braces 2 levels deep; a
/// `\boxed{` whose content nests deeper or never closes does not match (but a later `\boxed{`
/// inside it still can).
#[must_use]
pub fn extract_last_boxed(text: &str) -> Option<&str> {
    let bytes = text.as_bytes();
    let mut last = None;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(BOXED) {
            let start = i + BOXED.len();
            if let Some(end) = match_boxed_content(&bytes[start..]) {
                // Braces and the backslash are ASCII, so these are char boundaries.
                last = text.get(start..start + end);
                i = start + end + 1;
                continue;
            }
        }
        i += 1;
    }
    last
}

/// Length of the content before the closing brace, or `None` if the content nests deeper than
/// two levels or never closes.
fn match_boxed_content(bytes: &[u8]) -> Option<usize> {
    let mut depth = 0u8;
    for (j, &c) in bytes.iter().enumerate() {
        match c {
            b'{' if depth < 2 => depth += 1,
            b'{' => return None,
            b'}' if depth == 0 => return Some(j),
            b'}' => depth -= 1,
            _ => {}
        }
    }
    None
}

/// Whether some substring of `len` characters (Unicode scalar values) occurs at least `count`
/// times in `text`, counting overlapping windows. TreePO uses `len = 32`, `count = 8`.
#[must_use]
pub fn has_repetition(text: &str, len: usize, count: usize) -> bool {
    if len == 0 || count == 0 {
        return count == 0;
    }
    let mut bounds: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
    bounds.push(text.len());
    let chars = bounds.len() - 1;
    if chars < len {
        return false;
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for i in 0..=chars - len {
        let Some(window) = text.get(bounds[i]..bounds[i + len]) else { continue };
        let n = seen.entry(window).or_insert(0);
        *n += 1;
        if *n >= count {
            return true;
        }
    }
    false
}

/// TreePO's text hooks over a detokenizer: answer = a `\boxed{}` in the segment text,
/// repetition = [`has_repetition`] with (32, 8) unless changed.
pub struct TextHooks<D> {
    detokenize: D,
    repetition_len: usize,
    repetition_count: usize,
}

impl<D: Fn(&[u32]) -> String> TextHooks<D> {
    /// Hooks over `detokenize` with TreePO's repetition rule (32 characters × 8).
    pub fn new(detokenize: D) -> Self {
        Self { detokenize, repetition_len: 32, repetition_count: 8 }
    }

    /// Changes the repetition rule to `len` characters occurring `count` times.
    #[must_use]
    pub fn with_repetition(mut self, len: usize, count: usize) -> Self {
        self.repetition_len = len;
        self.repetition_count = count;
        self
    }
}

impl<D: Fn(&[u32]) -> String> TaskHooks for TextHooks<D> {
    fn has_answer(&self, segment: &[u32]) -> bool {
        extract_last_boxed(&(self.detokenize)(segment)).is_some()
    }

    fn is_repetition(&self, segment: &[u32]) -> bool {
        has_repetition(&(self.detokenize)(segment), self.repetition_len, self.repetition_count)
    }

    fn inspect(&self, segment: &[u32]) -> SegmentFlags {
        let text = (self.detokenize)(segment);
        SegmentFlags {
            answer: extract_last_boxed(&text).is_some(),
            repetition: has_repetition(&text, self.repetition_len, self.repetition_count),
        }
    }
}
