//! The public ops: each validates its arguments once, then dispatches to the device's backend.
//! One file per kernel stem; the CPU twin of each lives in [`crate::cpu`] under the same name.

mod gemm;
mod packed_attention_bwd;
#[cfg(feature = "cuda")]
mod packed_attention_cuda;
mod packed_attention_fwd;
#[cfg(feature = "wgpu")]
mod packed_attention_wgpu;
mod page_copy;
mod paged_kv_append;
mod paged_kv_layout;
mod residual_add;
mod rmsnorm;
mod tree_mask;

pub use gemm::{GemmSpec, Transpose, gemm};
pub use packed_attention_bwd::{PackedAttentionGrads, PackedAttentionSaved, packed_attention_bwd};
pub use packed_attention_fwd::{PackedAttentionParams, packed_attention_fwd};
pub use page_copy::{PageCopyJobs, page_copy};
pub use paged_kv_append::{paged_kv_append, paged_kv_append_strided};
pub use paged_kv_layout::PagedKvLayout;
pub use residual_add::residual_add;
pub use rmsnorm::rmsnorm;
pub use tree_mask::{TileClass, TreeMask, block_bounds, validate_kv_row_end};
