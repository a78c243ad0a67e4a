//! The embedded `.cu` sources: one entry per file stem in `kernels/cuda/`.

/// One CUDA translation unit, compiled as one module.
#[derive(Clone, Copy, Debug)]
pub struct KernelSource {
    /// File stem (`rmsnorm` for `cuda/rmsnorm.cu`); also the module key.
    pub stem: &'static str,
    /// The file's text.
    pub code: &'static str,
}

/// Prepended to every source: dtype helpers and small device utilities.
pub const PRELUDE: &str = include_str!("../../cuda/common.cuh");

macro_rules! sources {
    ($($stem:literal),* $(,)?) => {
        /// Every `.cu` file of the crate.
        pub const SOURCES: &[KernelSource] = &[
            $(KernelSource { stem: $stem, code: include_str!(concat!("../../cuda/", $stem, ".cu")) }),*
        ];
    };
}

sources![
    "adamw",
    "embedding_bwd",
    "fill",
    "residual_add",
    "rmsnorm",
    "rmsnorm_bwd",
    "scale",
    "sum_squares",
    "swiglu_bwd",
    "target_logprob",
    "target_logprob_bwd",
];

/// Looks a source up by stem.
pub fn source(stem: &str) -> Option<&'static KernelSource> {
    SOURCES.iter().find(|s| s.stem == stem)
}
