//! The CPU reference: plain Rust over slices, one file per kernel stem. These functions are the
//! oracle the CUDA and wgpu kernels are tested against, and the embedded default for tiny
//! models. They trust their arguments (the `ops` layer validated them) and panic only on a
//! length mismatch the caller could have avoided (slice indexing).

pub mod adamw;
pub mod embedding_bwd;
pub mod fill;
pub mod gemm;
pub mod residual_add;
pub mod rmsnorm;
pub mod rmsnorm_bwd;
pub mod scale;
pub mod sum_squares;
pub mod swiglu_bwd;
pub mod target_logprob;
pub mod target_logprob_bwd;
