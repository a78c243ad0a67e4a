//! Metrics as JSON lines: one object per event (`{"phase": "rl", "step": 3, "acc": 0.61, ...}`),
//! flushed at every line so an interrupted run keeps everything it logged.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
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

    /// Appends one record: `phase`, `step` and the fields of `fields` (a serializable struct or
    /// map), flattened.
    pub fn log(
        &mut self,
        phase: &str,
        step: u64,
        fields: &impl serde::Serialize,
    ) -> Result<(), TrainError> {
        let mut obj = Map::new();
        obj.insert("phase".into(), phase.into());
        obj.insert("step".into(), step.into());
        if let Value::Object(m) =
            serde_json::to_value(fields).map_err(|e| TrainError::Config(e.to_string()))?
        {
            obj.extend(m);
        }
        let line = Value::Object(obj).to_string();
        writeln!(self.file, "{line}")
            .and_then(|_| self.file.flush())
            .map_err(|e| TrainError::Config(format!("{}: {e}", self.path.display())))
    }

    /// Reads every record of a metrics file (malformed lines are an error naming the line).
    pub fn read(path: &Path) -> Result<Vec<Map<String, Value>>, TrainError> {
        let f =
            File::open(path).map_err(|e| TrainError::Config(format!("{}: {e}", path.display())))?;
        let mut out = Vec::new();
        for (i, line) in BufReader::new(f).lines().enumerate() {
            let line = line.map_err(|e| TrainError::Config(format!("{}: {e}", path.display())))?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Value>(&line) {
                Ok(Value::Object(m)) => out.push(m),
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
