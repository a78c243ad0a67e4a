//! Every integration test of this crate in one binary (one link, one file to carry to the
//! GPU machine); each file below is a module, named after the kernel or feature it tests.

mod packed_support;
mod tree_common;

mod csr_decoder;
mod decode_dense;
mod packed_attention_bwd;
mod packed_attention_fwd;
mod packed_pack;
mod plan;
