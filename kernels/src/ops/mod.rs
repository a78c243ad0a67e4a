//! The public ops: each validates its arguments once, then dispatches to the device's backend.
//! One file per kernel stem; the CPU twin of each lives in [`crate::cpu`] under the same name.

mod decode_geom;
mod decode_tables;
mod gemm;
mod merge_states;
mod paged_decode;
mod paged_kv_layout;
mod residual_add;
mod rmsnorm;
mod tree_decode;

pub use decode_tables::{
    DecodeParams, DecodePlanBuffers, DecodeWorkHost, MergeRows, PageTable, PageTableHost,
    WORK_ITEM_WORDS, WorkItem,
};
pub use gemm::{GemmSpec, Transpose, gemm};
pub use merge_states::{SingleRows, merge_states};
pub use paged_decode::paged_decode;
pub use paged_kv_layout::PagedKvLayout;
pub use residual_add::residual_add;
pub use rmsnorm::rmsnorm;
pub use tree_decode::tree_decode;
