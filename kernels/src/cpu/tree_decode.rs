//! Tree decode: each work item reads its KV range ONCE for all query rows of its leaf range (and
//! the whole GQA group), writing one f32 partial state per (row, item) — or the final output
//! when the row has exactly one state (the fast path: no merge for that row).
//!
//! Layouts: `q`, `out` `[rows, num_qo_heads, head_dim]` indexed by caller row
//! (`row_to_q[plan row]`); `partial_o` `[P, num_qo_heads, head_dim]`, `partial_lse`
//! `[P, num_qo_heads]` (natural log), state `partial_indptr[r] + item.slot` of plan row `r`.
//! Work: one task per (work item, KV head), rayon-parallel ([`run_affine`]), each a
//! [`decode_tile::attend`](super::decode_tile::attend) over the item's tokens. The job loop,
//! [`tree_decode_with`], is generic over the [`Tile`]; its fast twin
//! [`fast::tree_decode`](super::fast::tree_decode) runs the same jobs on the in-place tile.

use super::decode_tile::{Chunk, Gather, KvGeom, Tile, Worker, gather_q, run_affine};
use crate::ops::WorkItem;

/// The host arrays of a validated decode plan (see `ops::DecodeWorkHost`).
#[derive(Clone, Copy, Debug)]
pub struct PlanRef<'a> {
    /// Page ids the items index into.
    pub page_indices: &'a [i32],
    /// The work list.
    pub work: &'a [WorkItem],
    /// `[R]` absolute position of each plan row.
    pub q_pos: &'a [i32],
    /// `[R]` caller row of each plan row.
    pub row_to_q: &'a [i32],
    /// `[R+1]` partial states of each plan row.
    pub partial_indptr: &'a [i32],
}

/// Output buffers of [`tree_decode`].
#[derive(Debug)]
pub struct TreeOut<'a> {
    /// `[P, num_qo_heads, head_dim]` partial outputs.
    pub partial_o: &'a mut [f32],
    /// `[P, num_qo_heads]` partial LSEs.
    pub partial_lse: &'a mut [f32],
    /// `[R, num_qo_heads, head_dim]` final outputs (rows with one state).
    pub out: &'a mut [f32],
    /// `[R, num_qo_heads]` final LSEs (rows with one state), when wanted.
    pub lse: Option<&'a mut [f32]>,
}

/// Runs every work item on the reference tile ([`Gather`]).
pub fn tree_decode(
    q: &[f32],
    kv: &[f32],
    g: &KvGeom,
    p: &PlanRef<'_>,
    num_qo_heads: usize,
    scale: f32,
    dst: TreeOut<'_>,
) {
    tree_decode_with::<Gather>(q, kv, g, p, num_qo_heads, scale, dst);
}

/// Runs every work item, each (item, KV head) task on tile `T`.
pub fn tree_decode_with<T: Tile>(
    q: &[f32],
    kv: &[f32],
    g: &KvGeom,
    p: &PlanRef<'_>,
    num_qo_heads: usize,
    scale: f32,
    dst: TreeOut<'_>,
) {
    let (d, hkv) = (g.head_dim, g.num_kv_heads);
    let group = num_qo_heads / hkv;
    // In the order of the caller's rows (what `run_affine` needs to keep each row on the
    // worker that wrote its query), by an item's first row.
    let mut tasks: Vec<(usize, usize)> =
        (0..p.work.len()).flat_map(|w| (0..hkv).map(move |h| (w, h))).collect();
    tasks.sort_by_key(|&(w, h)| (p.row_to_q[p.work[w].row_begin as usize], h));
    // Heavy tasks must start first, on different workers (`run_affine`): a shared prefix's are
    // many times a leaf's.
    let costs: Vec<u64> = tasks
        .iter()
        .map(|&(w, _)| {
            let it = &p.work[w];
            let vectors = (it.row_end - it.row_begin) as usize * group;
            ((it.kv_end - it.kv_start).max(0) as usize * vectors.div_ceil(8)) as u64
        })
        .collect();
    let parts = run_affine(&costs, |i, wk: &mut Worker<T::Scratch>| {
        let (w, h) = tasks[i];
        let it = &p.work[w];
        let rows = it.row_begin as usize..it.row_end as usize;
        gather_q(
            q,
            rows.clone().map(|r| p.row_to_q[r] as usize),
            num_qo_heads,
            group,
            d,
            h,
            &mut wk.qt,
        );
        wk.lim.clear();
        let last = it.kv_end as i64 - 1;
        for r in rows {
            wk.lim.extend(std::iter::repeat_n((p.q_pos[r] as i64).min(last), group));
        }
        let chunk = Chunk {
            pages: &p.page_indices[it.page_begin as usize..it.page_end as usize],
            kv_start: it.kv_start as usize,
            kv_end: it.kv_end as usize,
        };
        wk.attend::<T>(&g.head(kv, h), &chunk, scale)
    });
    let TreeOut { partial_o, partial_lse, out, mut lse } = dst;
    // Each (row, head) output and (row, slot, head) partial state belongs to one task (the plan's
    // contract, which `ops` validates), so the order the workers' results land in is free.
    for (wk, &(i, at)) in parts.iter().flat_map(|(wk, done)| done.iter().map(move |x| (wk, x))) {
        let (w, h) = tasks[i];
        let it = &p.work[w];
        let (o, l) = wk.result(at, (it.row_end - it.row_begin) as usize * group, d);
        for (i, (orow, &lv)) in o.chunks_exact(d).zip(l).enumerate() {
            let r = it.row_begin as usize + i / group;
            let head = h * group + i % group;
            let (b, e) = (p.partial_indptr[r] as usize, p.partial_indptr[r + 1] as usize);
            if e - b == 1 {
                let c = p.row_to_q[r] as usize;
                out[(c * num_qo_heads + head) * d..][..d].copy_from_slice(orow);
                if let Some(lse) = lse.as_deref_mut() {
                    lse[c * num_qo_heads + head] = lv;
                }
            } else {
                let s = b + it.slot as usize;
                partial_o[(s * num_qo_heads + head) * d..][..d].copy_from_slice(orow);
                partial_lse[s * num_qo_heads + head] = lv;
            }
        }
    }
}
