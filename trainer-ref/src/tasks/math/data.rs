//! JSONL data of the `math` task: one `{"question": …, "answer": …}` object per line.

use std::path::Path;

use serde_json::Value;

use super::super::TaskError;

/// One question and its reference solution.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MathItem {
    /// The question text.
    pub question: String,
    /// The reference: a bare answer (`72`, `\frac{1}{2}`) or a worked solution ending with
    /// `#### <number>` (GSM8K) or holding a `\boxed{…}` (MATH).
    pub answer: String,
}

/// Reads a JSONL file ([`parse_jsonl`]).
pub fn load_jsonl(path: &Path) -> Result<Vec<MathItem>, TaskError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| TaskError::Io { path: path.to_path_buf(), source })?;
    parse_jsonl(&text, &path.display().to_string())
}

/// Parses JSONL text: blank lines are skipped; every other line must be a JSON object with a
/// non-empty string `question` (or `problem`) and a string or number `answer` (or
/// `solution`). Errors name `source_name` and the 1-based line.
pub fn parse_jsonl(text: &str, source_name: &str) -> Result<Vec<MathItem>, TaskError> {
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    let mut items = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let err = |msg: String| TaskError::Jsonl {
            source_name: source_name.to_string(),
            line: i + 1,
            msg,
        };
        let value: Value = serde_json::from_str(line).map_err(|e| err(format!("not JSON: {e}")))?;
        let Value::Object(map) = value else {
            return Err(err("expected a JSON object".into()));
        };
        let field = |names: [&str; 2]| names.iter().find_map(|n| map.get(*n));
        let question = match field(["question", "problem"]) {
            Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
            Some(Value::String(_)) => return Err(err("`question` is empty".into())),
            Some(_) => return Err(err("`question` must be a string".into())),
            None => return Err(err("missing field `question`".into())),
        };
        let answer = match field(["answer", "solution"]) {
            Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::String(_)) => return Err(err("`answer` is empty".into())),
            Some(_) => return Err(err("`answer` must be a string or a number".into())),
            None => return Err(err("missing field `answer`".into())),
        };
        items.push(MathItem { question, answer });
    }
    Ok(items)
}
