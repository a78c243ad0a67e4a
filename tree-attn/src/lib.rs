//! # tree-attn
//!
//! Attention over rollout trees, on the CPU, CUDA and wgpu backends of `treepo-kernels`: **tree
//! decode** over a prefix-shared paged KV cache (sampling) and **tree-masked packed attention**
//! (training). Both exist so that a prefix shared by sixteen leaves is read — and, in training,
//! computed and back-propagated — once instead of sixteen times.
//!
//! ## Decode: plan once per step, run per layer, one format for every strategy
//!
//! A
//! [`plan`](plan::plan_into) turns the tree's KV chunks ([`TreeKvView`]) and the active leaves
//! into a work list of plain `i32` arrays — each item a KV range read once for all the query
//! rows below it — which is uploaded once and reused by every layer. The same format expresses
//! the naive per-leaf baseline, FlashInfer's 2-level cascade, multi-level cascade and DeFT-style
//! KV splits ([`PlanKind`]), so one harness compares them on identical data. The kernels
//! (`treepo-kernels`: `tree_decode` + `merge_states`, CPU/CUDA/wgpu) write f32 partial states
//! with NATURAL-log LSEs and merge them; a row whose KV sits in one item is written directly.
//!
//! ```
//! use tree_attn::{LeafQuery, NodeKv, PlanKind, PlanOptions, TreeKvView, plan};
//! use treepo_kernels::{Device, ops::{DecodeParams, PagedKvLayout}};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A 32-token prompt (2 pages of 16) forked into two 5-token leaves.
//! let nodes = [
//!     NodeKv { parent: None, kv_start: 0, kv_end: 32, pages: 0..2 },
//!     NodeKv { parent: Some(0), kv_start: 32, kv_end: 37, pages: 2..3 },
//!     NodeKv { parent: Some(0), kv_start: 32, kv_end: 37, pages: 3..4 },
//! ];
//! let view = TreeKvView { page_size: 16, nodes: &nodes, page_ids: &[4, 1, 0, 2] };
//! let leaves = [LeafQuery { node: 1, q_rows: 1 }, LeafQuery { node: 2, q_rows: 1 }];
//! let p = plan::plan(&view, &leaves, &PlanOptions::new(PlanKind::Tree, 2))?;
//! assert_eq!(p.work().len(), 3); // the prompt once (both rows), then each leaf's own page
//!
//! let dev = Device::cpu();
//! let layout = PagedKvLayout::hnd(1, 5, 1, 16, 8); // 1 layer, 5 pages, 1 KV head, d = 8
//! let kv = dev.upload(&vec![0.25f32; layout.required_len()?])?;
//! let q = dev.upload(&vec![1.0f32; 2 * 2 * 8])?; // 2 rows × 2 q heads × 8
//! let mut out = dev.zeros::<f32>(2 * 2 * 8)?;
//! let bufs = p.upload(&dev, 5)?;
//! let mut ws = tree_attn::DecodeWorkspace::new(&dev, &bufs, 2, 8)?;
//! let params = DecodeParams { num_qo_heads: 2, layer: 0, sm_scale: 8f32.powf(-0.5) };
//! tree_attn::decode(&dev, &bufs, &mut ws, &q, &kv, &layout, &params, &mut out, None)?;
//! assert!(dev.download(&out)?.iter().all(|&x| (x - 0.25).abs() < 1e-6));
//! # Ok(()) }
//! ```
//!
//! ## Training: a tree is a mask, not a copy
//!
//! Training packs every token of one or several
//! rollout trees once, in DFS pre-order ([`packed`]), so a prefix shared by sixteen leaves is
//! embedded, attended and back-propagated once instead of sixteen times. Because pre-order keeps
//! each subtree contiguous, the whole tree mask is one `int32` per key column
//! (`kv_row_end[j]`, the end of the key's subtree) — linear memory, and per-tile bounds that let
//! the kernels skip masked tiles.
//!
//! ```
//! use tree_attn::packed::{PackNode, PackedAttentionParams, PackedTree, packed_attention_fwd};
//! use treepo_kernels::Device;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A 3-token prompt with two 2-token continuations: 7 packed tokens instead of 10.
//! let tree = PackedTree::pack(&[PackNode::root(3), PackNode::child(0, 2), PackNode::child(0, 2)])?;
//! assert_eq!(tree.kv_row_end(), &[7, 7, 7, 5, 5, 7, 7]);
//! assert_eq!(tree.position_ids(), &[0, 1, 2, 3, 4, 3, 4]);
//! let dev = Device::cpu();
//! let mask = tree.upload_mask(&dev)?;
//! let p = PackedAttentionParams::new(2, 1, 4);
//! let q = dev.upload(&vec![0.5f32; 7 * 2 * 4])?;
//! let kv = dev.upload(&vec![0.25f32; 7 * 4])?;
//! let (mut o, mut lse) = (dev.zeros::<f32>(7 * 2 * 4)?, dev.zeros::<f32>(2 * 7)?);
//! packed_attention_fwd(&dev, &q, &kv, &kv, &mask, &mut o, &mut lse, &p)?;
//! assert!((dev.download(&o)?[0] - 0.25).abs() < 1e-6);
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod csr_forest;
pub mod decode;
pub mod decoder;
pub mod packed;
pub mod plan;

pub use csr_forest::CsrForest;
pub use decode::{DecodeWorkspace, decode, naive};
pub use decoder::{DecodeError, TreeDecoder};
pub use plan::{
    LeafPageTable, LeafQuery, NodeKv, Plan, PlanError, PlanKind, PlanOptions, TreeKvView, plan_into,
};
