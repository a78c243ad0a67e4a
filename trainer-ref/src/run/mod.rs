//! Runs as artifacts: the TOML configuration ([`RunConfig`]), metrics as JSON lines
//! ([`MetricsLog`]), resumable checkpoints ([`checkpoint`]), SVG plots ([`plot`]) and what every
//! process of a run builds from its configuration ([`setup`]).

pub mod checkpoint;
mod config;
pub mod fault;
mod metrics;
pub mod plot;
pub mod setup;

pub use checkpoint::TrainerState;
pub use config::{
    EvalSection, LossSection, ModelSection, RlSection, RunConfig, RunSection, SftSection,
    apply_overrides,
};
pub use metrics::MetricsLog;
