//! Metrics as JSON lines: one object per event (`{"phase": "rl", "step": 3, "acc": 0.61, ...}`),
//! flushed at every line so an interrupted run keeps everything it logged.
//!
//! Crash safety: each record is one `write` of the whole line with its newline, so a kill can
//! at worst tear the LAST line; [`MetricsLog::read`] skips a torn last line, and
//! [`MetricsLog::resume`] cuts the file back to the records of the checkpoint being resumed
//! (dropping the torn line and everything the lost interval logged), so a resumed run neither
//! duplicates records nor glues one onto a torn line.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::train::TrainError;

/// An append-only JSONL file.
pub struct MetricsLog {
    path: PathBuf,
    file: File,
}

impl MetricsLog {
    /// Opens (appending) `path`.
    pub fn open(path: &Path) -> Result<Self, TrainError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| TrainError::Config(format!("{}: {e}", path.display())))?;
        Ok(MetricsLog { path: path.to_path_buf(), file })
    }

    /// Appends one record: `phase`, `step`, `time` (Unix seconds) and the fields of `fields` (a
    /// serializable struct or map), flattened.
    pub fn log(
        &mut self,
        phase: &str,
        step: u64,
        fields: &impl serde::Serialize,
    ) -> Result<(), TrainError> {
        let mut obj = Map::new();
        obj.insert("phase".into(), phase.into());
        obj.insert("step".into(), step.into());
        // Wall-clock time of the record, Unix seconds (ms resolution).
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| (d.as_millis() as f64) / 1e3);
        obj.insert("time".into(), now.into());
        if let Value::Object(m) =
            serde_json::to_value(fields).map_err(|e| TrainError::Config(e.to_string()))?
        {
            obj.extend(m);
        }
        let mut line = Value::Object(obj).to_string();
        line.push('\n');
        // One write for the record and its newline (the file is O_APPEND).
        super::fault::write_all("metrics:record", &mut self.file, line.as_bytes())
            .and_then(|_| self.file.flush())
            .map_err(|e| TrainError::Config(format!("{}: {e}", self.path.display())))
    }

    /// Before reopening `path` to resume from the checkpoint `(phase, step)`: keeps the records
    /// up to that checkpoint — in file order, until the first one logged after it — and drops
    /// the rest, including a torn last line; the file is rewritten atomically. A missing file
    /// is fine. Returns how many records were dropped.
    pub fn resume(path: &Path, phase: &str, step: u64) -> Result<usize, TrainError> {
        if !path.exists() {
            return Ok(0);
        }
        let records = Self::read(path)?;
        let ck = position(phase, step, true);
        let keep = records.iter().take_while(|r| record_position(r) <= ck).count();
        let mut text = String::new();
        for r in &records[..keep] {
            text.push_str(&Value::Object(r.clone()).to_string());
            text.push('\n');
        }
        crate::model::write_atomic(path, text.as_bytes())?;
        Ok(records.len() - keep)
    }

    /// Reads every record of a metrics file. A malformed line is an error naming it, except a
    /// last line without its newline (a write torn by a kill), which is skipped.
    pub fn read(path: &Path) -> Result<Vec<Map<String, Value>>, TrainError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| TrainError::Config(format!("{}: {e}", path.display())))?;
        let torn_tail = !text.is_empty() && !text.ends_with('\n');
        let lines: Vec<&str> = text.lines().collect();
        let mut out = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Value>(line) {
                Ok(Value::Object(m)) => out.push(m),
                _ if torn_tail && i + 1 == lines.len() => {}
                _ => {
                    return Err(TrainError::Config(format!(
                        "{}:{}: not a JSON object",
                        path.display(),
                        i + 1
                    )));
                }
            }
        }
        Ok(out)
    }
}

/// Where a record falls in a run's timeline: SFT steps, the eval after SFT, RL steps (each
/// followed by its optional eval), the eval after RL. Unknown records sort last.
fn record_position(r: &Map<String, Value>) -> (u8, u64, u8) {
    let phase = r.get("phase").and_then(Value::as_str).unwrap_or("");
    let step = r.get("step").and_then(Value::as_u64).unwrap_or(0);
    match (phase, r.get("when").and_then(Value::as_str)) {
        ("sft", _) => position("sft", step, false),
        ("eval", Some("after_sft")) => (1, 0, 0),
        ("rl", _) => position("rl", step, false),
        ("eval", Some("during_rl")) => position("rl", step, true),
        ("eval", Some("after_rl")) => (3, step, 0),
        _ => (u8::MAX, step, 0),
    }
}

/// The position of step `step` of `phase`; `after_eval`: after that step's evaluation too
/// (where a checkpoint of the step is saved).
fn position(phase: &str, step: u64, after_eval: bool) -> (u8, u64, u8) {
    match phase {
        "sft" => (0, step, 0),
        "rl" => (2, step, u8::from(after_eval)),
        _ => (u8::MAX, step, 0),
    }
}
