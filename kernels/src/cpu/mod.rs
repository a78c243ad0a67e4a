//! The CPU reference: plain Rust over slices, one file per kernel stem. These functions are the
//! oracle the CUDA and wgpu kernels are tested against, and the embedded default for tiny
//! models (the CPU sampler runs [`sample::sample`] and its parts directly). They trust their
//! arguments (the `ops` layer validated them) and panic only on a length mismatch the caller
//! could have avoided (slice indexing).

pub mod adamw;
pub mod categorical;
pub mod decode_tile;
pub mod embedding;
pub mod embedding_bwd;
pub mod fast;
pub mod fill;
pub mod gather_logprob;
pub mod gemm;
pub mod logit_mask;
pub mod math;
pub mod merge_states;
pub mod packed_attention_bwd;
pub mod packed_attention_fwd;
pub mod page_copy;
pub mod paged_decode;
pub mod paged_kv_append;
pub mod regions;
pub mod residual_add;
pub mod rmsnorm;
pub mod rmsnorm_bwd;
pub mod rope;
pub mod sample;
pub mod scale;
pub mod softmax;
pub mod sum_squares;
pub mod swiglu;
pub mod swiglu_bwd;
pub mod target_logprob;
pub mod target_logprob_bwd;
pub mod tree_decode;
pub mod weight_gemm;
