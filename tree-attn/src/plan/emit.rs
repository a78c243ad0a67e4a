//! Planning, step 2: cut the active tree into chunks per [`PlanKind`], emit their work items
//! (split into pieces and row tiles) and each row's partial-state count.
//!
//! A chunk is a chain of nodes along one path, top to bottom — whole pages end to end, since
//! every node with a child ends on a page boundary — read by a contiguous range of plan rows.
//! Its pieces take consecutive slots starting at `base`, the number of states the rows already
//! got from the chunks above; a row's count is the base after its last chunk.

use treepo_kernels::ops::WorkItem;

use super::active::{Scratch, reset};
use super::{LeafQuery, Plan, PlanError, PlanKind, PlanOptions, TreeKvView};

/// Where emitted chunks go.
struct Out<'a> {
    pages: &'a mut Vec<i32>,
    work: &'a mut Vec<WorkItem>,
    /// Tokens per piece (a multiple of the page size, or `u32::MAX`: no split).
    split: u32,
    /// Rows per work item.
    tile: u32,
}

/// Emits the chunk `chain` (top to bottom) for plan rows `rows`, slots from `base`; returns its
/// number of pieces (0 for an empty chunk).
fn chunk(
    view: &TreeKvView<'_>,
    chain: &[u32],
    rows: (u32, u32),
    base: u32,
    out: &mut Out<'_>,
) -> u32 {
    let ps = view.page_size;
    let (Some(&top), Some(&bottom)) = (chain.first(), chain.last()) else { return 0 };
    let (kv_start, kv_end) =
        (view.nodes[top as usize].kv_start, view.nodes[bottom as usize].kv_end);
    if kv_end == kv_start {
        return 0;
    }
    let page_begin = out.pages.len() as u32;
    for &u in chain {
        let nd = &view.nodes[u as usize];
        let need = (nd.kv_end - nd.kv_start).div_ceil(ps);
        out.pages.extend_from_slice(
            &view.page_ids[nd.pages.start as usize..(nd.pages.start + need) as usize],
        );
    }
    let pieces = (kv_end - kv_start).div_ceil(out.split);
    for j in 0..pieces {
        let ks = kv_start + j * out.split;
        let ke = kv_end.min(ks.saturating_add(out.split));
        let pb = page_begin + (ks - kv_start) / ps;
        let pe = page_begin + (ke - kv_start).div_ceil(ps);
        let mut r = rows.0;
        while r < rows.1 {
            let re = rows.1.min(r.saturating_add(out.tile));
            out.work.push(WorkItem {
                page_begin: pb as i32,
                page_end: pe as i32,
                kv_start: ks as i32,
                kv_end: ke as i32,
                row_begin: r as i32,
                row_end: re as i32,
                slot: (base + j) as i32,
                node: bottom as i32,
            });
            r = re;
        }
    }
    pieces
}

/// Fills `s.chain` with the path from `node` up to (excluding) `stop`, then reverses it to top
/// to bottom order.
fn path_up(view: &TreeKvView<'_>, s: &mut Scratch, node: u32, stop: Option<u32>) {
    s.chain.clear();
    let mut cur = Some(node);
    while let Some(u) = cur {
        if Some(u) == stop {
            break;
        }
        s.chain.push(u);
        cur = view.nodes[u as usize].parent;
    }
    s.chain.reverse();
}

/// Fills `s.chain` with the compressed node starting at `top`: down through nodes that have no
/// leaf of their own and exactly one active child (they share `top`'s leaf set). Returns the
/// bottom node.
fn compressed(s: &mut Scratch, top: u32) -> u32 {
    s.chain.clear();
    let mut c = top as usize;
    loop {
        s.chain.push(c as u32);
        let own = s.leaf_start[c + 1] - s.leaf_start[c];
        let kids = s.child_start[c + 1] - s.child_start[c];
        if own != 0 || kids != 1 {
            return c as u32;
        }
        c = s.children[s.child_start[c] as usize] as usize;
    }
}

/// The cost of the unsplit `Tree` plan (see [`super::auto_split`]): the heaviest item's
/// (tokens, query vectors) and the sum of every item's tokens × vectors rounded up to panels.
/// Walks the compressed nodes as the `Tree` emitter does, emitting nothing.
fn tree_costs(view: &TreeKvView<'_>, s: &mut Scratch, opts: &PlanOptions) -> ((u64, u64), u64) {
    let group = u64::from(opts.group);
    let tile = u64::from((opts.query_tile / opts.group).max(1));
    let panels = |v: u64| v.div_ceil(super::COST_PANEL) * super::COST_PANEL;
    let (mut heaviest, mut worst, mut total) = ((0, 0), 0u64, 0u64);
    s.seg.clear();
    s.seg.extend_from_slice(&s.roots);
    while let Some(top) = s.seg.pop() {
        let bottom = compressed(s, top) as usize;
        let tokens =
            u64::from(view.nodes[bottom].kv_end - view.nodes[s.chain[0] as usize].kv_start);
        let rows = u64::from(s.leaf_row[s.le[bottom] as usize] - s.leaf_row[s.lb[bottom] as usize]);
        if tokens > 0 && rows > 0 {
            let (full, rest) = (rows / tile, rows % tile);
            total += tokens * (full * panels(tile * group) + panels(rest * group));
            let v = rows.min(tile) * group;
            if tokens * panels(v) > worst {
                worst = tokens * panels(v);
                heaviest = (tokens, v);
            }
        }
        for ci in s.child_start[bottom]..s.child_start[bottom + 1] {
            s.seg.push(s.children[ci as usize]);
        }
    }
    (heaviest, total)
}

/// Step 2 (see the module docs).
pub(crate) fn emit(
    view: &TreeKvView<'_>,
    leaves: &[LeafQuery],
    opts: &PlanOptions,
    plan: &mut Plan,
) -> Result<(), PlanError> {
    let ps = view.page_size;
    let distinct = plan.distinct_tokens;
    let Plan { page_indices, work, partial_indptr, leaf_order, scratch: s, .. } = plan;
    page_indices.clear();
    work.clear();
    let nl = leaf_order.len();
    reset(&mut s.leaf_states, nl, 0u32);
    let split = match opts.kind {
        PlanKind::TreeSplit { max_chunk } => (max_chunk / ps * ps).max(ps),
        PlanKind::TreeFill { units } => super::split_to_fill(distinct, units, ps),
        PlanKind::Auto { units } => {
            let (heaviest, total) = tree_costs(view, s, opts);
            super::auto_split(heaviest, total, units, ps)
        }
        _ => u32::MAX,
    };
    let mut out =
        Out { pages: page_indices, work, split, tile: (opts.query_tile / opts.group).max(1) };
    let leaf_rows = |s: &Scratch, i: usize| (s.leaf_row[i], s.leaf_row[i + 1]);
    match opts.kind {
        PlanKind::Naive => {
            for i in 0..nl {
                path_up(view, s, leaves[leaf_order[i] as usize].node, None);
                s.leaf_states[i] = chunk(view, &s.chain, leaf_rows(s, i), 0, &mut out);
            }
        }
        PlanKind::Cascade => {
            let (common, p0) = if s.roots.len() == 1 {
                let bottom = compressed(s, s.roots[0]);
                let rows = (0, s.leaf_row[nl]);
                (Some(bottom), chunk(view, &s.chain, rows, 0, &mut out))
            } else {
                (None, 0)
            };
            for i in 0..nl {
                let node = leaves[leaf_order[i] as usize].node;
                path_up(view, s, node, common);
                s.leaf_states[i] = p0 + chunk(view, &s.chain, leaf_rows(s, i), p0, &mut out);
            }
        }
        PlanKind::Tree
        | PlanKind::TreeSplit { .. }
        | PlanKind::TreeFill { .. }
        | PlanKind::Auto { .. } => {
            // Stack entries: (compressed node's top, slots so far, top of the folded chain
            // above it). A compressed node shorter than `min_shared` tokens (counting the folded
            // chain above it) with no leaf of its own is folded: it emits nothing and each child
            // chunk starts at its top instead, so its pages are read once per child.
            s.seg_fold.clear();
            s.seg_fold.extend(s.roots.iter().rev().map(|&r| (r, 0, None)));
            while let Some((top, base, folded)) = s.seg_fold.pop() {
                let bottom = compressed(s, top) as usize;
                let own = s.leaf_start[bottom + 1] - s.leaf_start[bottom];
                let kids = s.child_start[bottom]..s.child_start[bottom + 1];
                let first = folded.unwrap_or(top);
                let tokens = view.nodes[bottom].kv_end - view.nodes[first as usize].kv_start;
                if own == 0 && !kids.is_empty() && tokens < opts.min_shared {
                    for ci in kids.rev() {
                        s.seg_fold.push((s.children[ci as usize], base, Some(first)));
                    }
                    continue;
                }
                if folded.is_some() {
                    path_up(view, s, bottom as u32, view.nodes[first as usize].parent);
                }
                let rows = (s.leaf_row[s.lb[bottom] as usize], s.leaf_row[s.le[bottom] as usize]);
                let next = base + chunk(view, &s.chain, rows, base, &mut out);
                for k in 0..own {
                    s.leaf_states[(s.lb[bottom] + k) as usize] = next;
                }
                for ci in kids.rev() {
                    s.seg_fold.push((s.children[ci as usize], next, None));
                }
            }
        }
    }
    if out.pages.len() >= i32::MAX as usize || out.work.len() >= i32::MAX as usize {
        return Err(PlanError::TooLarge("the page or work list"));
    }
    partial_indptr.clear();
    partial_indptr.push(0);
    let mut total = 0u64;
    for i in 0..nl {
        let (r0, r1) = leaf_rows(s, i);
        for _ in r0..r1 {
            total += u64::from(s.leaf_states[i]);
            if total >= i32::MAX as u64 {
                return Err(PlanError::TooLarge("the partial state count"));
            }
            partial_indptr.push(total as i32);
        }
    }
    Ok(())
}
