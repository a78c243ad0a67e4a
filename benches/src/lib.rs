//! Criterion benchmarks of the treepo-rs crates live in `benches/`; run one with
//! `cargo bench -p treepo-benches --bench <name>`. Each prints the ratio it measures (tree vs
//! naive, tree vs sequential, packed vs per-leaf) and the achieved bandwidth or FLOP rate. This
//! library holds workload builders shared between benchmarks.

#![deny(missing_docs)]

pub mod harness;
#[cfg(target_arch = "x86_64")]
pub mod tile_widths;
pub mod tree_kv_workload;

pub use harness::*;
