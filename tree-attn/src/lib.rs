//! # tree-attn
//!
//! Attention over rollout trees, on the CPU, CUDA and wgpu backends of `treepo-kernels`.
//!
//! **Key decision: a tree is a mask, not a copy.** Training packs every token of one or several
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

pub mod packed;
