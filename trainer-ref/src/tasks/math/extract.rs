//! Final-answer extraction from a model's text, in the order of Qwen-Math's `extract_answer`
//! as TreePO's released reward code uses it, with GSM8K's strict `####` rule after
//! the box:
//!
//! 0. cut at the first stop word (`</s>`, `<|im_end|>`, `<|endoftext|>`, `[END]`, `</answer>`);
//! 1. Minerva's `final answer is $…$. I hope`;
//! 2. the content of the **last** `\boxed{…}`, brace-matched at any depth;
//! 3. the last `#### <number>` (GSM8K strict; commas and `$` removed);
//! 4. the rest of the line after the last `he answer is` / `final answer is`;
//! 5. the last number in the text (commas removed first; `-?\d*\.?\d+`).
//!
//! The result has newlines removed, a leading `:` and trailing `.`/`/` stripped. Rules 2 and
//! 3 are the formats a prompt asks for ("well formed"); 1, 4 and 5 are fallbacks that TreePO
//! also rewards. Not ported: `\boxed 5` without braces, verl's "last 300 characters" window.

/// Stop words a response is cut at.
pub const STOP_WORDS: [&str; 5] = ["</s>", "<|im_end|>", "<|endoftext|>", "[END]", "</answer>"];

const BOXED: &str = "\\boxed{";

/// Which rule found the answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rule {
    /// `final answer is $…$. I hope`.
    Minerva,
    /// The last `\boxed{…}`.
    Boxed,
    /// The last `#### <number>`.
    Hashes,
    /// After `he answer is` / `final answer is`.
    AnswerIs,
    /// The last number in the text.
    LastNumber,
}

impl Rule {
    /// Whether the rule is a format the prompt asks for (`\boxed{}` or `####`).
    #[must_use]
    pub const fn is_strict(self) -> bool {
        matches!(self, Self::Boxed | Self::Hashes)
    }
}

/// An extracted answer (before normalisation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Extracted {
    /// The answer text.
    pub text: String,
    /// The rule that found it.
    pub rule: Rule,
}

/// The text before the first stop word.
#[must_use]
pub fn cut_at_stop_words(text: &str) -> &str {
    let end = STOP_WORDS.iter().filter_map(|w| text.find(w)).min().unwrap_or(text.len());
    &text[..end]
}

/// The final answer of `text` by the rules above, or `None`.
#[must_use]
pub fn extract_answer(text: &str) -> Option<Extracted> {
    let text = cut_at_stop_words(text);
    let (raw, rule) = if let Some(a) = extract_minerva(text) {
        (a.to_string(), Rule::Minerva)
    } else if let Some(a) = extract_last_boxed(text) {
        (a.to_string(), Rule::Boxed)
    } else if let Some(a) = extract_hashes(text) {
        (a, Rule::Hashes)
    } else if let Some(a) = extract_answer_is(text) {
        (a.to_string(), Rule::AnswerIs)
    } else {
        (last_number(text)?, Rule::LastNumber)
    };
    let cleaned: String = raw.chars().filter(|&c| c != '\n' && c != '\r').collect();
    let cleaned = cleaned.trim();
    let cleaned = cleaned.strip_prefix(':').unwrap_or(cleaned).trim();
    let cleaned = cleaned.trim_end_matches(['.', '/']).trim();
    (!cleaned.is_empty()).then(|| Extracted { text: cleaned.to_string(), rule })
}

fn extract_minerva(text: &str) -> Option<&str> {
    const OPEN: &str = "final answer is $";
    const CLOSE: &str = "$. I hope";
    let start = text.rfind(OPEN)? + OPEN.len();
    let len = text[start..].find(CLOSE)?;
    Some(&text[start..start + len])
}

/// Content of the last `\boxed{…}` whose braces balance (any nesting depth). An unclosed last
/// box falls back to the one before it.
#[must_use]
pub fn extract_last_boxed(text: &str) -> Option<&str> {
    let mut end = text.len();
    while let Some(pos) = text[..end].rfind(BOXED) {
        let start = pos + BOXED.len();
        if let Some(len) = matching_brace(&text[start..]) {
            return Some(&text[start..start + len]);
        }
        end = pos;
    }
    None
}

/// Length of `s` up to the `}` that closes an already-open brace, or `None` if it never
/// closes.
pub(crate) fn matching_brace(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return Some(i),
            '}' => depth -= 1,
            _ => {}
        }
    }
    None
}

/// The number after the last `####` that is followed by one (GSM8K's strict
/// `#### (-?[0-9.,]+)`, spaces and a `$` allowed before it), with commas and `$` removed.
#[must_use]
pub fn extract_hashes(text: &str) -> Option<String> {
    let mut end = text.len();
    while let Some(pos) = text[..end].rfind("####") {
        let rest = text[pos + 4..].trim_start_matches([' ', '\t', '$']);
        let number: String = rest
            .char_indices()
            .take_while(|&(i, c)| {
                c.is_ascii_digit() || c == '.' || c == ',' || (i == 0 && c == '-')
            })
            .map(|(_, c)| c)
            .filter(|&c| c != ',')
            .collect();
        let number = number.trim_end_matches('.');
        if number.bytes().any(|b| b.is_ascii_digit()) {
            return Some(number.to_string());
        }
        end = pos;
    }
    None
}

fn extract_answer_is(text: &str) -> Option<&str> {
    let pos = ["he answer is", "final answer is"]
        .iter()
        .filter_map(|k| text.rfind(k).map(|p| p + k.len()))
        .max()?;
    let rest = &text[pos..];
    let line = rest.split('\n').next().unwrap_or(rest).trim();
    (!line.is_empty()).then_some(line)
}

/// The last number of `text` with commas removed: the longest run of digits with at most one
/// dot ending at the last digit, with a minus sign in front if there is one (Qwen's
/// `-?\d*\.?\d+`, except that `1.2.3` gives `2.3` where the regex gives `.3`).
fn last_number(text: &str) -> Option<String> {
    let text: Vec<char> = text.chars().filter(|&c| c != ',').collect();
    // Scan backwards for the last digit, then extend left over digits and at most one dot
    // that is followed by a digit, then an optional minus.
    let last = text.iter().rposition(char::is_ascii_digit)?;
    let mut start = last;
    let mut seen_dot = false;
    while start > 0 {
        let c = text[start - 1];
        if c.is_ascii_digit() {
            start -= 1;
        } else if c == '.' && !seen_dot {
            seen_dot = true;
            start -= 1;
        } else {
            break;
        }
    }
    if start > 0 && text[start - 1] == '-' {
        start -= 1;
    }
    Some(text[start..=last].iter().collect())
}
