//! # tree-attn
//!
//! Attention over trees of sequences for treepo-rs. This half: **tree decode** over a
//! prefix-shared paged KV cache — when 16 leaves share a long prefix, their decode attention
//! reads the shared KV once, not 16 times.
//!
//! **Key decision: plan once per step, run per layer, one format for every strategy.** A
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
#![deny(missing_docs)]

pub mod decode;
pub mod plan;

pub use decode::{DecodeWorkspace, decode, naive};
pub use plan::{
    LeafPageTable, LeafQuery, NodeKv, Plan, PlanError, PlanKind, PlanOptions, TreeKvView, plan_into,
};
