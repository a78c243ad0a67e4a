//! Criterion benchmarks for the treepo-rs crates live in `benches/`; run them with
//! `cargo bench -p treepo-benches --bench <name>`. This library holds workload builders shared
//! between benchmarks.

#![deny(missing_docs)]

pub mod tree_kv_workload;
