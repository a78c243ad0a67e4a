//! # treepo-benches
//!
//! Criterion benchmarks of treepo-rs, one file per subject under `benches/`. Each benchmark
//! prints, besides criterion's timings, a **ratio** against the baseline it has to beat,
//! measured in the same run, and the physical rate it achieves (GB/s, FLOP/s): absolute times
//! only mean something next to their baseline and ceiling.
//!
//! * `tree_decode` — tree decode attention (`tree-attn`) against naive per-leaf paged decode on
//!   every available backend: `cargo bench -p treepo-benches --bench tree_decode`.
#![deny(missing_docs)]
