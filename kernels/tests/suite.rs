//! Every integration test of this crate in one binary (one link, one file to carry to the
//! GPU machine); each file below is a module, named after the kernel or feature it tests.

#[macro_use]
mod decode_common;
mod cache_common;

mod adamw;
mod categorical;
mod cpu_fast;
mod cpu_fast_gemm;
mod cpu_fast_packed;
mod cpu_fast_rope;
mod cpu_fast_swiglu;
mod cuda_emu;
mod device;
mod embedding;
mod embedding_bwd;
mod external;
mod fill;
mod gather_logprob;
mod gemm;
mod logit_mask;
mod merge_states;
mod nvrtc_compile;
mod page_copy;
mod paged_decode;
mod paged_kv_append;
mod residual_add;
mod rmsnorm;
mod rmsnorm_bwd;
mod rope;
mod sample;
mod scale;
mod softmax;
mod sum_squares;
mod swiglu;
mod swiglu_bwd;
mod target_logprob;
mod target_logprob_bwd;
mod tree_decode;
mod wgsl_validate;
