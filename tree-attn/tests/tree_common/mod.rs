//! Fixtures of the tree-attn tests: random trees laid out as tree-kv lays them out, and the
//! dense f64 reference built from an explicit boolean mask.
//!
//! Layout rule (tree-kv's copy-on-write fork): a logical node owns tokens `[a, b)` with `a` its
//! parent's `b`. Its chunk starts where its parent's ends (0 for a root) and ends at `b` for a
//! leaf, at `floor(b / page_size) * page_size` for a node with children (the partial page is
//! copied into each child's first page). Chunks can be empty.

#![allow(dead_code)]

use tree_attn::{LeafQuery, NodeKv, TreeKvView};
use treepo_kernels::testing::Rng;

/// A tree in the tree-kv contract with its active leaves.
#[derive(Clone, Debug)]
pub struct Tree {
    pub page_size: u32,
    pub nodes: Vec<NodeKv>,
    pub page_ids: Vec<i32>,
    pub num_pages: usize,
    pub leaves: Vec<LeafQuery>,
}

impl Tree {
    pub fn view(&self) -> TreeKvView<'_> {
        TreeKvView { page_size: self.page_size, nodes: &self.nodes, page_ids: &self.page_ids }
    }

    /// Nodes from `u` up to its root.
    pub fn path(&self, u: u32) -> Vec<u32> {
        let mut v = vec![u];
        while let Some(p) = self.nodes[*v.last().unwrap() as usize].parent {
            v.push(p);
        }
        v
    }

    /// The (page, slot) of position `t` in node `u`'s chunk.
    pub fn slot(&self, u: u32, t: u32) -> (usize, usize) {
        let nd = &self.nodes[u as usize];
        let i = t - nd.kv_start;
        let ps = self.page_size;
        (self.page_ids[(nd.pages.start + i / ps) as usize] as usize, (i % ps) as usize)
    }

    /// Query rows in all (caller order: leaves in order, each its `q_rows` rows).
    pub fn rows(&self) -> usize {
        self.leaves.iter().map(|l| l.q_rows as usize).sum()
    }
}

/// Logical nodes: (parent, own token count, children).
struct Logical {
    parent: Option<usize>,
    tokens: u32,
    children: Vec<usize>,
}

/// Lays out logical nodes (ids shuffled, pages shuffled with `spare` unused pages) and picks
/// active leaves with their query rows.
fn layout(
    rng: &mut Rng,
    ps: u32,
    logical: &[Logical],
    spare: usize,
    rows: impl Fn(&mut Rng, u32) -> u32,
    keep: f64,
) -> Tree {
    let n = logical.len();
    let id: Vec<usize> = rng.permutation(n);
    let mut ends = vec![0u32; n]; // logical b
    let mut nodes = vec![NodeKv { parent: None, kv_start: 0, kv_end: 0, pages: 0..0 }; n];
    // Parents come before children in `logical`.
    for (i, l) in logical.iter().enumerate() {
        let a = l.parent.map_or(0, |p| ends[p]);
        ends[i] = a + l.tokens;
        let kv_start = l.parent.map_or(0, |p| nodes[id[p]].kv_end);
        let kv_end = if l.children.is_empty() { ends[i] } else { ends[i] / ps * ps };
        nodes[id[i]] =
            NodeKv { parent: l.parent.map(|p| id[p] as u32), kv_start, kv_end, pages: 0..0 };
    }
    let need: Vec<u32> = nodes.iter().map(|nd| (nd.kv_end - nd.kv_start).div_ceil(ps)).collect();
    let num_pages = need.iter().sum::<u32>() as usize + spare;
    let mut pool: Vec<i32> = rng.permutation(num_pages).into_iter().map(|p| p as i32).collect();
    let mut page_ids = Vec::new();
    for u in rng.permutation(n) {
        let start = page_ids.len() as u32;
        for _ in 0..need[u] {
            page_ids.push(pool.pop().unwrap());
        }
        nodes[u].pages = start..page_ids.len() as u32;
    }
    let mut leaves: Vec<LeafQuery> = Vec::new();
    for i in 0..n {
        if logical[i].children.is_empty() && nodes[id[i]].kv_end > 0 && rng.uniform() < keep {
            let len = nodes[id[i]].kv_end;
            leaves.push(LeafQuery { node: id[i] as u32, q_rows: rows(rng, len).clamp(1, len) });
        }
    }
    if leaves.is_empty() {
        let i =
            (0..n).find(|&i| logical[i].children.is_empty() && nodes[id[i]].kv_end > 0).unwrap();
        leaves.push(LeafQuery { node: id[i] as u32, q_rows: 1 });
    }
    let order = rng.permutation(leaves.len());
    let leaves = order.into_iter().map(|i| leaves[i]).collect();
    Tree { page_size: ps, nodes, page_ids, num_pages, leaves }
}

/// A random multi-level, unbalanced tree (or forest): up to `depth` levels below the roots,
/// 0–3 children per node, spans of 0–70 tokens (some a whole number of pages, some empty),
/// about 80% of the leaves active, 1–4 query rows per leaf and now and then a segment append
/// of up to 20 rows.
pub fn random_tree(rng: &mut Rng, ps: u32, depth: usize) -> Tree {
    let mut logical: Vec<Logical> = Vec::new();
    let roots = 1 + usize::from(rng.below(4) == 0);
    let mut frontier: Vec<(usize, usize)> = Vec::new();
    for _ in 0..roots {
        logical.push(Logical { parent: None, tokens: 1 + rng.below(90) as u32, children: vec![] });
        frontier.push((logical.len() - 1, 0));
    }
    while let Some((u, d)) = frontier.pop() {
        let kids = if d >= depth { 0 } else { rng.below(4) };
        let kids = if d == 0 { kids.max(2) } else { kids };
        for _ in 0..kids {
            let tokens = match rng.below(6) {
                0 => 0,
                1 => ps * (1 + rng.below(3) as u32),
                _ => rng.below(71) as u32,
            };
            logical.push(Logical { parent: Some(u), tokens, children: vec![] });
            let c = logical.len() - 1;
            logical[u].children.push(c);
            frontier.push((c, d + 1));
        }
    }
    let rows = |rng: &mut Rng, _len: u32| {
        if rng.below(6) == 0 { 1 + rng.below(20) as u32 } else { 1 + rng.below(4) as u32 }
    };
    let spare = 1 + rng.below(9);
    layout(rng, ps, &logical, spare, rows, 0.8)
}

/// `branches` leaves of `suffix` tokens each below one `prefix`-token root (one query row each).
pub fn two_level(rng: &mut Rng, ps: u32, branches: usize, prefix: u32, suffix: u32) -> Tree {
    let mut logical = vec![Logical { parent: None, tokens: prefix, children: vec![] }];
    for _ in 0..branches {
        logical.push(Logical { parent: Some(0), tokens: suffix, children: vec![] });
        let c = logical.len() - 1;
        logical[0].children.push(c);
    }
    layout(rng, ps, &logical, 3, |_, _| 1, 1.0)
}

/// A chain: one leaf whose path holds `lens.len()` nodes (`rows` query rows).
pub fn chain(rng: &mut Rng, ps: u32, lens: &[u32], rows: u32) -> Tree {
    let logical: Vec<Logical> = lens
        .iter()
        .enumerate()
        .map(|(i, &t)| Logical {
            parent: i.checked_sub(1),
            tokens: t,
            children: if i + 1 < lens.len() { vec![i + 1] } else { vec![] },
        })
        .collect();
    layout(rng, ps, &logical, 2, move |_, _| rows, 1.0)
}

/// Dense f64 reference from an explicit boolean mask: every position of every active node is a
/// key column; query row (leaf ℓ, position p) sees column (u, t) iff u is on ℓ's root path and
/// t <= p. Returns `(out [rows, hq, d], lse [rows, hq])` in caller row order.
#[allow(clippy::too_many_arguments)]
pub fn dense_reference(
    tree: &Tree,
    kv: &[f32],
    layout: &treepo_kernels::ops::PagedKvLayout,
    layer: usize,
    q: &[f32],
    hq: usize,
    scale: f64,
) -> (Vec<f64>, Vec<f64>) {
    let d = layout.head_dim;
    let group = hq / layout.num_kv_heads;
    let n = tree.nodes.len();
    // Key columns: (node, position) of every position of every node on an active path.
    let mut active = vec![false; n];
    for l in &tree.leaves {
        for u in tree.path(l.node) {
            active[u as usize] = true;
        }
    }
    let cols: Vec<(u32, u32)> = (0..n as u32)
        .filter(|&u| active[u as usize])
        .flat_map(|u| {
            (tree.nodes[u as usize].kv_start..tree.nodes[u as usize].kv_end).map(move |t| (u, t))
        })
        .collect();
    let (mut out, mut lse) = (Vec::new(), Vec::new());
    for l in &tree.leaves {
        let mut on_path = vec![false; n];
        for u in tree.path(l.node) {
            on_path[u as usize] = true;
        }
        let len = tree.nodes[l.node as usize].kv_end;
        for k in 0..l.q_rows {
            let pos = len - l.q_rows + k;
            let mask: Vec<bool> =
                cols.iter().map(|&(u, t)| on_path[u as usize] && t <= pos).collect();
            let row = out.len() / (hq * d);
            for h in 0..hq {
                let qv = &q[(row * hq + h) * d..][..d];
                let kvh = h / group;
                let elem = |which: usize, u: u32, t: u32| {
                    let (page, slot) = tree.slot(u, t);
                    &kv[layout.offset(layer, page, which, kvh, slot, 0)..][..d]
                };
                let s: Vec<f64> = cols
                    .iter()
                    .zip(&mask)
                    .filter(|(_, m)| **m)
                    .map(|(&(u, t), _)| {
                        scale
                            * qv.iter()
                                .zip(elem(0, u, t))
                                .map(|(&a, &b)| a as f64 * b as f64)
                                .sum::<f64>()
                    })
                    .collect();
                let m = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let w: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
                let sum: f64 = w.iter().sum();
                let mut o = vec![0f64; d];
                for ((&(u, t), _), wi) in cols.iter().zip(&mask).filter(|(_, m)| **m).zip(&w) {
                    for (oi, &v) in o.iter_mut().zip(elem(1, u, t)) {
                        *oi += wi * v as f64 / sum;
                    }
                }
                out.extend(o);
                lse.push(m + sum.ln());
            }
        }
    }
    (out, lse)
}
