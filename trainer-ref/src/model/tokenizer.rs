//! Tokenizers: Hugging Face `tokenizer.json` through the `tokenizers` crate for real models,
//! and a character-level vocabulary for the synthetic tasks (saved beside the checkpoint as
//! `char_tokenizer.json`).

use std::collections::HashMap;
use std::path::Path;

use super::ModelError;
use super::checkpoint::write_atomic;

/// File name of the character vocabulary.
pub const CHAR_TOKENIZER_FILE: &str = "char_tokenizer.json";
/// File name of a Hugging Face tokenizer.
pub const HF_TOKENIZER_FILE: &str = "tokenizer.json";

/// One token per character of `symbols`; id = position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CharTokenizer {
    symbols: Vec<char>,
    index: HashMap<char, u32>,
}

impl CharTokenizer {
    /// A vocabulary over `symbols` (each character once).
    pub fn new(symbols: &str) -> Result<Self, ModelError> {
        let symbols: Vec<char> = symbols.chars().collect();
        let mut index = HashMap::new();
        for (i, &c) in symbols.iter().enumerate() {
            if index.insert(c, i as u32).is_some() {
                return Err(ModelError::Tokenizer(format!(
                    "symbol {c:?} appears twice in the vocabulary"
                )));
            }
        }
        if symbols.is_empty() {
            return Err(ModelError::Tokenizer("empty vocabulary".into()));
        }
        Ok(CharTokenizer { symbols, index })
    }

    /// The vocabulary, in id order.
    pub fn symbols(&self) -> String {
        self.symbols.iter().collect()
    }
}

/// Either tokenizer, behind one interface.
#[derive(Clone, Debug)]
pub enum Tokenizer {
    /// Character-level (synthetic tasks).
    Char(CharTokenizer),
    /// A Hugging Face `tokenizer.json`.
    Hf(Box<tokenizers::Tokenizer>),
}

impl Tokenizer {
    /// Token ids of `text` (no special tokens added).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, ModelError> {
        match self {
            Tokenizer::Char(t) => text
                .chars()
                .map(|c| {
                    t.index.get(&c).copied().ok_or_else(|| {
                        ModelError::Tokenizer(format!("character {c:?} is not in the vocabulary"))
                    })
                })
                .collect(),
            Tokenizer::Hf(t) => t
                .encode(text, false)
                .map(|e| e.get_ids().to_vec())
                .map_err(|e| ModelError::Tokenizer(e.to_string())),
        }
    }

    /// Text of `ids`.
    pub fn decode(&self, ids: &[u32]) -> Result<String, ModelError> {
        match self {
            Tokenizer::Char(t) => ids
                .iter()
                .map(|&i| {
                    t.symbols.get(i as usize).copied().ok_or_else(|| {
                        ModelError::Tokenizer(format!("id {i} is outside the vocabulary"))
                    })
                })
                .collect(),
            Tokenizer::Hf(t) => {
                t.decode(ids, false).map_err(|e| ModelError::Tokenizer(e.to_string()))
            }
        }
    }

    /// Number of ids the tokenizer can produce.
    pub fn vocab_size(&self) -> usize {
        match self {
            Tokenizer::Char(t) => t.symbols.len(),
            Tokenizer::Hf(t) => t.get_vocab_size(true),
        }
    }

    /// The id of a token's text, if it is one token.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        match self {
            Tokenizer::Char(t) => {
                let mut cs = token.chars();
                match (cs.next(), cs.next()) {
                    (Some(c), None) => t.index.get(&c).copied(),
                    _ => None,
                }
            }
            Tokenizer::Hf(t) => t.token_to_id(token),
        }
    }

    /// Loads `dir/tokenizer.json` or `dir/char_tokenizer.json` and checks it fits a model of
    /// `model_vocab` ids.
    pub fn load(dir: &Path, model_vocab: usize) -> Result<Self, ModelError> {
        let hf = dir.join(HF_TOKENIZER_FILE);
        let ch = dir.join(CHAR_TOKENIZER_FILE);
        let tok = if hf.is_file() {
            Tokenizer::Hf(Box::new(
                tokenizers::Tokenizer::from_file(&hf)
                    .map_err(|e| ModelError::Tokenizer(format!("{}: {e}", hf.display())))?,
            ))
        } else if ch.is_file() {
            let text = std::fs::read_to_string(&ch)
                .map_err(|e| ModelError::Io { path: ch.clone(), source: e })?;
            let v: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| ModelError::Tokenizer(format!("{}: {e}", ch.display())))?;
            let symbols =
                v.get("symbols").and_then(serde_json::Value::as_str).ok_or_else(|| {
                    ModelError::Tokenizer(format!("{}: no `symbols` string", ch.display()))
                })?;
            Tokenizer::Char(CharTokenizer::new(symbols)?)
        } else {
            return Err(ModelError::Tokenizer(format!(
                "{} has neither {HF_TOKENIZER_FILE} nor {CHAR_TOKENIZER_FILE}",
                dir.display()
            )));
        };
        if tok.vocab_size() > model_vocab {
            return Err(ModelError::Tokenizer(format!(
                "the tokenizer has {} ids but the model's vocab_size is {model_vocab}: they do not belong together",
                tok.vocab_size()
            )));
        }
        Ok(tok)
    }

    /// Saves beside a checkpoint in `dir`.
    pub fn save(&self, dir: &Path) -> Result<(), ModelError> {
        match self {
            Tokenizer::Char(t) => {
                let text = serde_json::json!({"kind": "char", "symbols": t.symbols()}).to_string();
                write_atomic(&dir.join(CHAR_TOKENIZER_FILE), text.as_bytes())
            }
            Tokenizer::Hf(t) => {
                let path = dir.join(HF_TOKENIZER_FILE);
                let text = t.to_string(false).map_err(|e| ModelError::Tokenizer(e.to_string()))?;
                write_atomic(&path, text.as_bytes())
            }
        }
    }
}

/// Lets task hooks read segments through the model's tokenizer.
impl crate::tasks::TokenText for Tokenizer {
    fn decode(&self, ids: &[u32]) -> String {
        // Hooks only search the text; an id outside the vocabulary renders as nothing.
        match self {
            Tokenizer::Char(t) => ids.iter().filter_map(|&i| t.symbols.get(i as usize)).collect(),
            Tokenizer::Hf(t) => t.decode(ids, false).unwrap_or_default(),
        }
    }

    fn symbol_id(&self, symbol: char) -> Option<u32> {
        self.token_id(symbol.encode_utf8(&mut [0; 4]))
    }
}
