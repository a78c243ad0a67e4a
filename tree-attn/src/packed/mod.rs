//! Tree-masked packed attention for training: every token of one or several rollout trees,
//! packed once in DFS pre-order ([`PackedTree`]), attends through the tree mask
//! ([`TreeMask`], one `int32` per key column) on any backend, forward and backward.
//!
//! Per batch: [`PackedTree::pack`] → [`PackedTree::upload_mask`] (validated, tile bounds
//! computed once). Per layer: [`packed_attention_fwd`] saves `lse`; [`packed_attention_bwd`]
//! returns `dq, dk, dv`. Rotary embeddings take [`PackedTree::position_ids`]; a loss averaged over
//! leaves weights tokens by [`PackedTree::token_weights`].

mod pack;

pub use pack::{PackError, PackNode, PackedTree};
pub use treepo_kernels::ops::{
    PackedAttentionGrads, PackedAttentionParams, PackedAttentionSaved, TileClass, TreeMask,
    packed_attention_bwd, packed_attention_fwd, validate_kv_row_end,
};
