//! Runs as artifacts: the TOML configuration ([`RunConfig`]), metrics as JSON lines
//! ([`MetricsLog`]), resumable checkpoints ([`checkpoint`]) and SVG plots ([`plot`]).

pub mod checkpoint;
mod config;
pub mod fault;
mod metrics;
pub mod plot;

pub use checkpoint::TrainerState;
pub use config::{
    EvalSection, LossSection, ModelSection, RlSection, RunConfig, RunSection, SftSection,
    apply_overrides,
};
pub use metrics::MetricsLog;
