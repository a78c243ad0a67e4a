//! The embedded `.cu` sources: one entry per file stem in `kernels/cuda/`.

/// One CUDA translation unit, compiled as one module: [`PRELUDE`], then `headers` in order,
/// then `code`, each under a `#line 1 "<file>"` directive so compiler messages and `-lineinfo`
/// name the file and line they come from.
#[derive(Clone, Copy, Debug)]
pub struct KernelSource {
    /// File stem (`rmsnorm` for `cuda/rmsnorm.cu`); also the module key.
    pub stem: &'static str,
    /// Shared headers prepended to this file, in order: `(file name, text)`, e.g.
    /// `("decode_tile.cuh", ...)`.
    pub headers: &'static [(&'static str, &'static str)],
    /// The `.cu` file's own text (`<stem>.cu`).
    pub code: &'static str,
}

/// Prepended to every source: dtype helpers and small device utilities.
pub const PRELUDE: &str = include_str!("../../cuda/common.cuh");

/// Registers the `.cu` files. `"stem" + "header.cuh"` prepends a shared header (device code
/// common to several kernels, e.g. `decode_tile.cuh`) to that file; several headers
/// (`"stem" + "a.cuh" + "b.cuh"`) are prepended in the order given.
macro_rules! sources {
    ($($stem:literal $(+ $head:literal)*),* $(,)?) => {
        /// Every `.cu` file of the crate.
        pub const SOURCES: &[KernelSource] = &[
            $(KernelSource {
                stem: $stem,
                headers: &[$(($head, include_str!(concat!("../../cuda/", $head)))),*],
                code: include_str!(concat!("../../cuda/", $stem, ".cu")),
            }),*
        ];
    };
}

sources![
    "packed_attention_bwd" + "packed_attention.cuh",
    "packed_attention_fwd" + "packed_attention.cuh",
    "page_copy",
    "paged_kv_append",
    "residual_add",
    "rmsnorm",
    "categorical",
    "embedding",
    "gather_logprob",
    "logit_mask",
    "rope",
    "softmax",
    "swiglu",
    "merge_states",
    "paged_decode" + "decode_tile.cuh",
    "tree_decode" + "decode_tile.cuh",
    "adamw",
    "embedding_bwd",
    "fill",
    "rmsnorm_bwd",
    "scale",
    "sum_squares",
    "swiglu_bwd",
    "target_logprob" + "target_logprob_stats.cuh",
    "target_logprob_bwd" + "target_logprob_stats.cuh",
];

/// Looks a source up by stem.
pub fn source(stem: &str) -> Option<&'static KernelSource> {
    SOURCES.iter().find(|s| s.stem == stem)
}
