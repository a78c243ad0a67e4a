//! Fast twins of the CPU decode kernels. Each module has the stem of its readable reference in
//! [`crate::cpu`] and the same contract; the `ops` layer runs these on the CPU backend, and
//! `tests/cpu_fast.rs` checks each against its reference twin (and both against f64) on fresh
//! random inputs.
//!
//! | fast | reference | difference |
//! |---|---|---|
//! | [`decode_tile`] | [`cpu::decode_tile`](super::decode_tile) | K/V read in place from their pages (no gather copy); register-tiled AVX2 + FMA micro-kernels |
//! | [`paged_decode`] | [`cpu::paged_decode`](super::paged_decode) | the same jobs on the in-place tile |
//! | [`tree_decode`] | [`cpu::tree_decode`](super::tree_decode) | the same jobs on the in-place tile |
//!
//! The naive baseline (`paged_decode`) and the tree kernel always run on the same tile, so the
//! benchmark ratio between them measures sharing, not implementation effort.

pub mod decode_tile;
pub mod paged_decode;
pub mod tree_decode;
