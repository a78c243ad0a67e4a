//! The one error type of the tasks: configuration, data files, splits and misuse of a problem
//! all answer with a [`TaskError`]; nothing in [`crate::tasks`] panics on caller input.

use std::path::PathBuf;

/// What went wrong with a task, and what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TaskError {
    /// `TaskKind::from_name` got a name no task has.
    #[error("unknown task `{name}`; known tasks: {known}")]
    UnknownTask {
        /// The name asked for.
        name: String,
        /// The known names, comma-separated.
        known: String,
    },
    /// A configuration value is outside its valid range.
    #[error("task `{task}`: invalid configuration: {msg}")]
    InvalidConfig {
        /// The task.
        task: &'static str,
        /// What is wrong and what would be valid.
        msg: String,
    },
    /// A data file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A line of a JSONL data file is malformed.
    #[error("{source_name}:{line}: {msg}")]
    Jsonl {
        /// The file (or the name given to in-memory text).
        source_name: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong with the line.
        msg: String,
    },
    /// A split has no problem to give (an empty data file, or a problem space whose every
    /// member hashes to the other split).
    #[error("task `{task}`: the {split} split is empty: {msg}")]
    EmptySplit {
        /// The task.
        task: &'static str,
        /// The split.
        split: &'static str,
        /// Why, and what to change.
        msg: String,
    },
    /// A problem of another task was passed to this one.
    #[error("task `{task}` was given a problem of task `{got}`")]
    WrongProblem {
        /// The task asked.
        task: &'static str,
        /// The task the problem belongs to.
        got: &'static str,
    },
    /// A character is not in the vocabulary of a character-level table, or a symbol the task
    /// needs is missing from a tokenizer.
    #[error("{0}")]
    Vocabulary(String),
}

/// Shorthand for an [`TaskError::InvalidConfig`].
pub(crate) fn invalid(task: &'static str, msg: impl Into<String>) -> TaskError {
    TaskError::InvalidConfig { task, msg: msg.into() }
}
