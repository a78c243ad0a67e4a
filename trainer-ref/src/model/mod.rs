//! The reference decoder (Qwen2/Llama style): configuration, parameter layout, checkpoints,
//! tokenizers and the forward pass.

mod backward;
mod checkpoint;
mod config;
mod forward;
mod params;
mod tokenizer;
mod weights;

use std::path::PathBuf;

pub use backward::GradScratch;
pub use checkpoint::{INDEX_FILE, WEIGHTS_FILE, load_weights, save, sync_dir, write_atomic};
pub use config::{ModelConfig, ModelType, RopeScalingConfig};
pub use forward::{Activations, PackedBatch};
pub use params::{LayerParams, ParamLayout, TensorSpec};
pub use tokenizer::{CHAR_TOKENIZER_FILE, CharTokenizer, HF_TOKENIZER_FILE, Tokenizer};
pub use weights::Model;

/// Errors of model construction, checkpoints and tokenizers.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A configuration field is missing, malformed or unsupported.
    #[error("config field `{field}`: {msg}")]
    Config {
        /// The HF field name.
        field: &'static str,
        /// What is wrong.
        msg: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A checkpoint file or directory is malformed.
    #[error("checkpoint {path}: {msg}")]
    Checkpoint {
        /// The file or directory.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// A tensor is missing, unexpected, of the wrong shape or dtype, or not finite.
    #[error("tensor `{name}`: {msg}")]
    Tensor {
        /// HF tensor name.
        name: String,
        /// What is wrong.
        msg: String,
    },
    /// The tokenizer is missing, malformed, or does not fit the model.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A kernel call failed.
    #[error(transparent)]
    Kernel(#[from] treepo_kernels::KernelError),
}
