//! The public ops: each validates its arguments once, then dispatches to the device's backend.
//! One file per kernel stem; the CPU twin of each lives in [`crate::cpu`] under the same name.
//!
//! | stem | ops |
//! |---|---|
//! | `gemm` | [`gemm`] |
//! | `embedding` | [`embedding`] |
//! | `rmsnorm` | [`rmsnorm`] |
//! | `rope` | [`rope`], host helper [`rope_inv_freq`] |
//! | `swiglu` | [`swiglu`] |
//! | `residual_add` | [`residual_add`] |
//! | `softmax` | [`softmax`], [`log_softmax`] |
//! | `logit_mask` | [`top_k_mask`], [`top_p_mask`] |
//! | `categorical` | [`categorical`] |
//! | `gather_logprob` | [`gather_logprob`] |
//! | `sample` | [`sample`] (composes the five above; no kernel of its own) |

mod adamw;
mod categorical;
mod embedding;
mod embedding_bwd;
mod fill;
mod gather_logprob;
mod gemm;
mod in_place;
mod logit_mask;
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
mod rope;
mod sample;
mod softmax;
mod swiglu;
mod tree_mask;

pub use categorical::categorical;
pub use embedding::embedding;
pub use gather_logprob::gather_logprob;
mod rmsnorm_bwd;
mod scale;
mod sum_squares;
mod swiglu_bwd;
mod target_logprob;
mod target_logprob_bwd;
pub use adamw::{AdamWParams, adamw};
pub use embedding_bwd::embedding_bwd;
pub use fill::fill;
pub use gemm::{GemmSpec, Transpose, gemm, pack_panels, panels_supported};
pub use logit_mask::{LOGIT_MASK_MAX_COLS, top_k_mask, top_p_mask};
pub use packed_attention_bwd::{PackedAttentionGrads, PackedAttentionSaved, packed_attention_bwd};
pub use packed_attention_fwd::{PackedAttentionParams, packed_attention_fwd};
pub use page_copy::{PageCopyJobs, page_copy};
pub use paged_kv_append::{paged_kv_append, paged_kv_append_strided};
pub use paged_kv_layout::PagedKvLayout;
pub use residual_add::residual_add;
pub use rmsnorm::rmsnorm;
pub use rope::{ROPE_MAX_POSITION, RopeDirection, RopeScaling, RopeShape, rope, rope_inv_freq};
pub use sample::{SampleParams, sample};
pub use softmax::{log_softmax, softmax};
pub use swiglu::swiglu;
pub use tree_mask::{TileClass, TreeMask, block_bounds, validate_kv_row_end};
mod decode_geom;
mod decode_tables;
mod merge_states;
mod paged_decode;
mod tree_decode;
pub use decode_geom::{cuda_decode_pass, cuda_kv_passes, cuda_kv_reread};
pub use decode_tables::{
    DecodeParams, DecodePlanBuffers, DecodeWorkHost, MergeRows, PageTable, PageTableHost,
    WORK_ITEM_WORDS, WorkItem,
};
pub use merge_states::{SingleRows, merge_states};
pub use paged_decode::paged_decode;
pub use rmsnorm_bwd::rmsnorm_bwd;
pub use scale::scale;
pub use sum_squares::sum_squares;
pub use swiglu_bwd::swiglu_bwd;
pub use target_logprob::{LogprobTargets, target_logprob};
pub use target_logprob_bwd::target_logprob_bwd;
pub use tree_decode::tree_decode;
