//! # treepo-benches
//!
//! Criterion benchmarks, one file per subject under `benches/`; each prints, besides criterion's
//! timings, the ratio against the baseline it must beat, measured in the same run (`cargo bench
//! -p treepo-benches --bench <name>`). A backend that is absent prints a `SKIP` line.
#![deny(missing_docs)]
