//! Fast twins of the CPU attention kernels, the weight GEMM, SwiGLU and RoPE. Each module has
//! the stem of its readable reference in [`crate::cpu`] and the same contract; the `ops` layer
//! runs these on the CPU backend, and `tests/cpu_fast*.rs` check each against its reference
//! twin (and against f64) on fresh random inputs.
//!
//! | fast | reference | difference |
//! |---|---|---|
//! | [`decode_tile`] | [`cpu::decode_tile`](super::decode_tile) | K/V read in place from their pages (no gather copy); register-tiled AVX2 + FMA micro-kernels, AVX-512F ones for more than 8 query vectors (both widths: `tiles.rs`), a row tile with lanes along `head_dim` for 1–3 (`rows.rs`) |
//! | [`paged_decode`] | [`cpu::paged_decode`](super::paged_decode) | the same jobs on the in-place tile |
//! | [`tree_decode`] | [`cpu::tree_decode`](super::tree_decode) | the same jobs on the in-place tile |
//! | [`weight_gemm`] | [`cpu::weight_gemm`](super::weight_gemm) | AVX-512F register tiles (8 rows × 32 columns) over a weight packed in panel order once; k-blocked for L1, columns split across threads |
//! | [`rope`] | [`cpu::rope`](super::rope) | the same bits; the sin/cos table of a call kept per thread and reused by the next call at the same positions (the q and k of every layer of a forward pass); the rotation vectorized along a head |
//! | [`swiglu`] | [`cpu::swiglu`](super::swiglu) | `e^x` by a vectorized polynomial instead of libm's scalar `expf` (a few ulps apart) |
//! | [`packed_attention`] | [`cpu::packed_attention_fwd`](super::packed_attention_fwd), [`cpu::packed_attention_bwd`](super::packed_attention_bwd) | the same passes and tiles; block products on the decode tile's register-tiled kernels, GQA heads of a KV head batched as query vectors |
//!
//! The naive baseline (`paged_decode`) and the tree kernel always run on the same tile, so the
//! benchmark ratio between them measures sharing, not implementation effort.

pub mod decode_tile;
pub mod packed_attention;
pub mod paged_decode;
pub mod rope;
#[cfg(target_arch = "x86_64")]
mod rows;
pub mod swiglu;
#[cfg(target_arch = "x86_64")]
pub(crate) mod tiles;
pub mod tree_decode;
#[cfg(target_arch = "x86_64")]
pub mod weight_gemm;
