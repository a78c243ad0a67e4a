//! Task names and configurations, as a run's TOML reads them:
//!
//! ```toml
//! [task]
//! name = "countdown"
//! seed = 7
//! max_numbers = 4
//! ```

use super::TaskError;
use super::arithmetic::{Arithmetic, ArithmeticConfig};
use super::countdown::{Countdown, CountdownConfig};
use super::math::{MathConfig, MathTask};
use super::parity::{ParityConfig, ParityCot};
use super::problem::Task;

/// The known tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TaskKind {
    /// `parity-cot`: parity with a short/long demonstration mixture (smoke test).
    ParityCot,
    /// `countdown`: reach a target with `+ − × ÷` (the main showcase).
    Countdown,
    /// `arithmetic`: addition (and multiplication by a digit) with a scratchpad.
    Arithmetic,
    /// `math`: questions from JSONL files, `\boxed{}`/`####` answers.
    Math,
}

impl TaskKind {
    /// Every task, in the order error messages list them.
    pub const ALL: [Self; 4] = [Self::ParityCot, Self::Countdown, Self::Arithmetic, Self::Math];

    /// The task's name.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::ParityCot => "parity-cot",
            Self::Countdown => "countdown",
            Self::Arithmetic => "arithmetic",
            Self::Math => "math",
        }
    }

    /// The task named `name`; an unknown name is a [`TaskError::UnknownTask`] listing the
    /// known ones.
    pub fn from_name(name: &str) -> Result<Self, TaskError> {
        Self::ALL.into_iter().find(|k| k.name() == name).ok_or_else(|| TaskError::UnknownTask {
            name: name.to_string(),
            known: Self::ALL.map(Self::name).join(", "),
        })
    }

    /// The task's default configuration.
    #[must_use]
    pub fn default_config(self) -> TaskConfig {
        match self {
            Self::ParityCot => TaskConfig::ParityCot(ParityConfig::default()),
            Self::Countdown => TaskConfig::Countdown(CountdownConfig::default()),
            Self::Arithmetic => TaskConfig::Arithmetic(ArithmeticConfig::default()),
            Self::Math => TaskConfig::Math(MathConfig::default()),
        }
    }
}

impl std::fmt::Display for TaskKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for TaskKind {
    type Err = TaskError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_name(s)
    }
}

/// A task and its knobs; the `name` key selects the task, the other keys are its config.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "name", rename_all = "kebab-case")]
pub enum TaskConfig {
    /// `parity-cot`.
    ParityCot(ParityConfig),
    /// `countdown`.
    Countdown(CountdownConfig),
    /// `arithmetic`.
    Arithmetic(ArithmeticConfig),
    /// `math`.
    Math(MathConfig),
}

impl TaskConfig {
    /// The default configuration of the task named `name`.
    pub fn from_name(name: &str) -> Result<Self, TaskError> {
        Ok(TaskKind::from_name(name)?.default_config())
    }

    /// Which task.
    #[must_use]
    pub const fn kind(&self) -> TaskKind {
        match self {
            Self::ParityCot(_) => TaskKind::ParityCot,
            Self::Countdown(_) => TaskKind::Countdown,
            Self::Arithmetic(_) => TaskKind::Arithmetic,
            Self::Math(_) => TaskKind::Math,
        }
    }

    /// Validates the knobs and builds the task (`math` loads its files here).
    pub fn build(&self) -> Result<Box<dyn Task>, TaskError> {
        Ok(match self {
            Self::ParityCot(c) => Box::new(ParityCot::new(c.clone())?),
            Self::Countdown(c) => Box::new(Countdown::new(c.clone())?),
            Self::Arithmetic(c) => Box::new(Arithmetic::new(c.clone())?),
            Self::Math(c) => Box::new(MathTask::new(c.clone())?),
        })
    }
}
