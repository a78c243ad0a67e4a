//! The fast twin of [`cpu::paged_decode`](crate::cpu::paged_decode): the same jobs (one task per
//! sequence × KV head) on the in-place tile [`InPlace`].

use super::decode_tile::InPlace;
use crate::cpu::decode_tile::KvGeom;
use crate::cpu::paged_decode::{PageTableRef, paged_decode_with};

/// Runs the naive decode (contract of
/// [`cpu::paged_decode::paged_decode`](crate::cpu::paged_decode::paged_decode)).
#[allow(clippy::too_many_arguments)]
pub fn paged_decode(
    q: &[f32],
    kv: &[f32],
    g: &KvGeom,
    t: &PageTableRef<'_>,
    num_qo_heads: usize,
    scale: f32,
    out: &mut [f32],
    lse: Option<&mut [f32]>,
) {
    paged_decode_with::<InPlace>(q, kv, g, t, num_qo_heads, scale, out, lse);
}
