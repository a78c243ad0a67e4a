//! The character vocabulary of the synthetic tasks, and what hooks need from a tokenizer.
//!
//! All synthetic tasks share one vocabulary ([`SYNTHETIC_VOCAB`]), so one character tokenizer
//! (and one checkpoint) serves any of them — a model warmed up on `arithmetic` can be trained
//! on `countdown` without remapping ids. Token id = position in the string, the convention of
//! the trainer's `CharTokenizer` built from the same string.

use std::collections::HashMap;

use super::TaskError;

/// Padding symbol (id 0); never part of a prompt or a response.
pub const PAD: char = '_';
/// Stop symbol (id 1); every synthetic response ends with it.
pub const STOP: char = '#';
/// Answer marker: the final answer follows it, then [`STOP`].
pub const ANSWER: char = 'A';
/// Ends every synthetic prompt.
pub const PROMPT_END: char = ':';

/// The 21 symbols of the synthetic tasks, in id order: padding, stop, digits, operators,
/// separators, the target marker `>`, the prompt end and the answer marker.
pub const SYNTHETIC_VOCAB: &str = "_#0123456789+-*/=,>:A";

/// What task hooks need from a tokenizer. Implemented by [`CharVocab`]; the trainer's
/// tokenizers implement it with their `decode` and single-token lookup.
pub trait TokenText: Send + Sync {
    /// The text of `ids` (lossy: an unknown id may render as anything, hooks only search it).
    fn decode(&self, ids: &[u32]) -> String;
    /// The id of the token whose text is exactly `symbol`, if there is one.
    fn symbol_id(&self, symbol: char) -> Option<u32>;
}

/// A character table: id = position of the character in the vocabulary string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CharVocab {
    symbols: Vec<char>,
    ids: HashMap<char, u32>,
}

impl CharVocab {
    /// The table of `symbols` (each character once, at least one).
    pub fn new(symbols: &str) -> Result<Self, TaskError> {
        let symbols: Vec<char> = symbols.chars().collect();
        if symbols.is_empty() {
            return Err(TaskError::Vocabulary("the vocabulary is empty".into()));
        }
        let mut ids = HashMap::with_capacity(symbols.len());
        for (i, &c) in symbols.iter().enumerate() {
            let id = u32::try_from(i).map_err(|_| {
                TaskError::Vocabulary("the vocabulary has over 2^32 symbols".into())
            })?;
            if ids.insert(c, id).is_some() {
                return Err(TaskError::Vocabulary(format!(
                    "symbol {c:?} appears twice in the vocabulary"
                )));
            }
        }
        Ok(Self { symbols, ids })
    }

    /// The shared vocabulary of the synthetic tasks.
    #[must_use]
    pub fn synthetic() -> Self {
        let symbols: Vec<char> = SYNTHETIC_VOCAB.chars().collect();
        // Positions < 21 fit in u32; the constant has no repeated character (tested).
        let ids = symbols.iter().enumerate().map(|(i, &c)| (c, i as u32)).collect();
        Self { symbols, ids }
    }

    /// Number of symbols.
    #[must_use]
    pub fn len(&self) -> usize {
        self.symbols.len()
    }

    /// Always false (a table has at least one symbol).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.symbols.is_empty()
    }

    /// The id of `c`.
    #[must_use]
    pub fn id(&self, c: char) -> Option<u32> {
        self.ids.get(&c).copied()
    }

    /// The ids of `text`; fails on the first character outside the table.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TaskError> {
        text.chars()
            .map(|c| {
                self.id(c).ok_or_else(|| {
                    TaskError::Vocabulary(format!("character {c:?} is not in the vocabulary"))
                })
            })
            .collect()
    }

    /// The text of `ids`; fails on the first id outside the table.
    pub fn decode_strict(&self, ids: &[u32]) -> Result<String, TaskError> {
        ids.iter()
            .map(|&i| {
                self.symbols.get(i as usize).copied().ok_or_else(|| {
                    TaskError::Vocabulary(format!("id {i} is outside the vocabulary"))
                })
            })
            .collect()
    }
}

impl TokenText for CharVocab {
    /// Ids outside the table render as U+FFFD.
    fn decode(&self, ids: &[u32]) -> String {
        ids.iter().map(|&i| self.symbols.get(i as usize).copied().unwrap_or('\u{FFFD}')).collect()
    }

    fn symbol_id(&self, symbol: char) -> Option<u32> {
        self.id(symbol)
    }
}
