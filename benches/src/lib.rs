//! Criterion benchmarks of the treepo-rs crates live in `benches/`; this library is empty.
//!
//! Run one with `cargo bench -p treepo-benches --bench <name>`; each prints the ratio it
//! measures (tree vs naive, tree vs sequential, ...) and achieved bandwidth or FLOP rate.
