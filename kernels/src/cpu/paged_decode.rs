//! Naive paged decode — the baseline every tree plan is measured against: each sequence's query
//! rows read the sequence's whole page list (FlashInfer CSR: `indptr`, `indices`,
//! `last_page_len`), sharing K/V only across its own rows and GQA group.
//!
//! Layouts: `q`, `out` `[rows, num_qo_heads, head_dim]`; `lse` `[rows, num_qo_heads]` (natural
//! log); the cache as described by `g`. Sequence `s` owns query rows
//! `q_indptr[s]..q_indptr[s+1]`, its last positions (causal among themselves). Work: one task
//! per (sequence, KV head), rayon-parallel ([`run_affine`]), each a
//! [`decode_tile::attend`](super::decode_tile::attend).
//! The job loop, [`paged_decode_with`], is generic over the [`Tile`]; its fast twin
//! [`fast::paged_decode`](super::fast::paged_decode) runs the same jobs on the in-place tile, so
//! the naive baseline and the tree kernel always share one tile.

use super::decode_tile::{Chunk, Gather, KvGeom, Tile, Worker, gather_q, run_affine};

/// The host arrays of a validated page table (see `ops::PageTableHost`).
#[derive(Clone, Copy, Debug)]
pub struct PageTableRef<'a> {
    /// `[S+1]` page offsets.
    pub indptr: &'a [i32],
    /// Page ids.
    pub indices: &'a [i32],
    /// `[S]` tokens in each last page.
    pub last_page_len: &'a [i32],
    /// `[S+1]` query-row offsets.
    pub q_indptr: &'a [i32],
}

/// Runs the naive decode on the reference tile ([`Gather`]); writes every row of `out` (and
/// `lse` when given).
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
    paged_decode_with::<Gather>(q, kv, g, t, num_qo_heads, scale, out, lse);
}

/// Runs the naive decode, each (sequence, KV head) task on tile `T`.
#[allow(clippy::too_many_arguments)]
pub fn paged_decode_with<T: Tile>(
    q: &[f32],
    kv: &[f32],
    g: &KvGeom,
    t: &PageTableRef<'_>,
    num_qo_heads: usize,
    scale: f32,
    out: &mut [f32],
    mut lse: Option<&mut [f32]>,
) {
    let (d, hkv) = (g.head_dim, g.num_kv_heads);
    let group = num_qo_heads / hkv;
    let seqs = t.last_page_len.len();
    // In query-row order, with cost estimates, for `run_affine` (as `tree_decode`).
    let tasks: Vec<(usize, usize)> =
        (0..seqs).flat_map(|s| (0..hkv).map(move |h| (s, h))).collect();
    let costs: Vec<u64> = tasks
        .iter()
        .map(|&(s, _)| {
            let rows = (t.q_indptr[s + 1] - t.q_indptr[s]) as usize;
            ((t.indptr[s + 1] - t.indptr[s]) as usize * (rows * group).div_ceil(8)) as u64
        })
        .collect();
    let parts = run_affine(&costs, |i, wk: &mut Worker<T::Scratch>| {
        let (s, h) = tasks[i];
        let (r0, r1) = (t.q_indptr[s] as usize, t.q_indptr[s + 1] as usize);
        let (p0, p1) = (t.indptr[s] as usize, t.indptr[s + 1] as usize);
        let len = (p1 - p0 - 1) * g.page_size + t.last_page_len[s] as usize;
        gather_q(q, r0..r1, num_qo_heads, group, d, h, &mut wk.qt);
        wk.lim.clear();
        for r in r0..r1 {
            let pos = (len - (r1 - r)) as i64;
            wk.lim.extend(std::iter::repeat_n(pos, group));
        }
        let chunk = Chunk { pages: &t.indices[p0..p1], kv_start: 0, kv_end: len };
        wk.attend::<T>(&g.head(kv, h), &chunk, scale)
    });
    for (wk, &(i, at)) in parts.iter().flat_map(|(wk, done)| done.iter().map(move |x| (wk, x))) {
        let (s, h) = tasks[i];
        let r0 = t.q_indptr[s] as usize;
        let (o, l) = wk.result(at, (t.q_indptr[s + 1] as usize - r0) * group, d);
        for (i, (orow, &lv)) in o.chunks_exact(d).zip(l).enumerate() {
            let (r, head) = (r0 + i / group, h * group + i % group);
            out[(r * num_qo_heads + head) * d..][..d].copy_from_slice(orow);
            if let Some(lse) = lse.as_deref_mut() {
                lse[r * num_qo_heads + head] = lv;
            }
        }
    }
}
