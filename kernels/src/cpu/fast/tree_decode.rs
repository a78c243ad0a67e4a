//! The fast twin of [`cpu::tree_decode`](crate::cpu::tree_decode): the same jobs (one task per
//! work item × KV head) on the in-place tile [`InPlace`].

use super::decode_tile::InPlace;
use crate::cpu::decode_tile::KvGeom;
use crate::cpu::tree_decode::{PlanRef, TreeOut, tree_decode_with};

/// Runs every work item (contract of [`cpu::tree_decode::tree_decode`](crate::cpu::tree_decode::tree_decode)).
pub fn tree_decode(
    q: &[f32],
    kv: &[f32],
    g: &KvGeom,
    p: &PlanRef<'_>,
    num_qo_heads: usize,
    scale: f32,
    dst: TreeOut<'_>,
) {
    tree_decode_with::<InPlace>(q, kv, g, p, num_qo_heads, scale, dst);
}
