//! Every integration test of this crate in one binary (one link, one file to carry to the GPU
//! machine); each file below is a module.

mod common;

mod advantage;
mod data_rewards;
mod devices;
mod errors;
mod grad;
mod grid;
mod sde;
mod tree;
