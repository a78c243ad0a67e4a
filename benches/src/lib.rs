//! Criterion benchmarks of the treepo-rs crates live in `benches/`; this library is empty.
//!
//! Run one with `cargo bench -p treepo-benches --bench kv_cache`.
