//! The decode plan, exactly: pinned work lists for every `PlanKind` on a small tree, structural
//! invariants on random trees (each row's items partition its whole path, slots are 0..count,
//! pages agree with the tree, a node's items cover exactly the leaves below it, the tree plan
//! reads every distinct token once), determinism with buffer reuse, and typed errors.

use crate::tree_common::{Tree, random_tree};
use tree_attn::plan::{auto_split, plan, split_to_fill};
use tree_attn::{LeafQuery, NodeKv, Plan, PlanError, PlanKind, PlanOptions, TreeKvView, plan_into};
use treepo_kernels::ops::WorkItem;
use treepo_kernels::testing::Rng;

/// ```text
/// 0 [0,8) pages 10 11 ── 1 [8,12) page 12 ── 2 [12,14) page 13   (leaf b, 2 rows)
///                     │                   └─ 3 [12,13) page 14   (leaf c)
///                     └─ 4 [8,10) page 15                        (leaf a)
/// ```
fn small() -> (Vec<NodeKv>, Vec<i32>, Vec<LeafQuery>) {
    let nodes = vec![
        NodeKv { parent: None, kv_start: 0, kv_end: 8, pages: 0..2 },
        NodeKv { parent: Some(0), kv_start: 8, kv_end: 12, pages: 2..3 },
        NodeKv { parent: Some(1), kv_start: 12, kv_end: 14, pages: 3..4 },
        NodeKv { parent: Some(1), kv_start: 12, kv_end: 13, pages: 4..5 },
        NodeKv { parent: Some(0), kv_start: 8, kv_end: 10, pages: 5..6 },
    ];
    let leaves = vec![
        LeafQuery { node: 4, q_rows: 1 },
        LeafQuery { node: 2, q_rows: 2 },
        LeafQuery { node: 3, q_rows: 1 },
    ];
    (nodes, vec![10, 11, 12, 13, 14, 15], leaves)
}

fn w(p: (i32, i32), kv: (i32, i32), rows: (i32, i32), slot: i32, node: i32) -> WorkItem {
    WorkItem {
        page_begin: p.0,
        page_end: p.1,
        kv_start: kv.0,
        kv_end: kv.1,
        row_begin: rows.0,
        row_end: rows.1,
        slot,
        node,
    }
}

fn small_plan(kind: PlanKind, group: u32, query_tile: u32) -> Plan {
    let (nodes, ids, leaves) = small();
    let view = TreeKvView { page_size: 4, nodes: &nodes, page_ids: &ids };
    plan(&view, &leaves, &PlanOptions { kind, group, query_tile, min_shared: 0 }).unwrap()
}

#[test]
fn rows_are_depth_first() {
    let p = small_plan(PlanKind::Tree, 1, 64);
    assert_eq!(p.leaf_order(), &[1, 2, 0]);
    assert_eq!(p.row_to_q(), &[1, 2, 3, 0]);
    assert_eq!(p.q_pos(), &[12, 13, 12, 9]);
    assert_eq!(p.distinct_tokens(), 8 + 4 + 2 + 1 + 2);
}

#[test]
fn tree_plan_is_pinned() {
    let p = small_plan(PlanKind::Tree, 1, 64);
    assert_eq!(p.page_indices(), &[10, 11, 12, 13, 14, 15]);
    assert_eq!(
        p.work(),
        &[
            w((0, 2), (0, 8), (0, 4), 0, 0),
            w((2, 3), (8, 12), (0, 3), 1, 1),
            w((3, 4), (12, 14), (0, 2), 2, 2),
            w((4, 5), (12, 13), (2, 3), 2, 3),
            w((5, 6), (8, 10), (3, 4), 1, 4),
        ]
    );
    assert_eq!(p.partial_indptr(), &[0, 3, 6, 9, 11]);
    assert_eq!(p.tokens_read(), p.distinct_tokens());
}

#[test]
fn naive_plan_is_pinned() {
    let p = small_plan(PlanKind::Naive, 1, 64);
    assert_eq!(p.page_indices(), &[10, 11, 12, 13, 10, 11, 12, 14, 10, 11, 15]);
    assert_eq!(
        p.work(),
        &[
            w((0, 4), (0, 14), (0, 2), 0, 2),
            w((4, 8), (0, 13), (2, 3), 0, 3),
            w((8, 11), (0, 10), (3, 4), 0, 4)
        ]
    );
    assert_eq!(p.partial_indptr(), &[0, 1, 2, 3, 4]);
    assert_eq!(p.tokens_read(), 14 + 13 + 10);
}

#[test]
fn cascade_plan_is_pinned() {
    let p = small_plan(PlanKind::Cascade, 1, 64);
    assert_eq!(p.page_indices(), &[10, 11, 12, 13, 12, 14, 15]);
    assert_eq!(
        p.work(),
        &[
            w((0, 2), (0, 8), (0, 4), 0, 0),
            w((2, 4), (8, 14), (0, 2), 1, 2),
            w((4, 6), (8, 13), (2, 3), 1, 3),
            w((6, 7), (8, 10), (3, 4), 1, 4),
        ]
    );
    assert_eq!(p.partial_indptr(), &[0, 2, 4, 6, 8]);
}

#[test]
fn split_plan_is_pinned() {
    let p = small_plan(PlanKind::TreeSplit { max_chunk: 7 }, 1, 64);
    assert_eq!(
        p.work(),
        &[
            w((0, 1), (0, 4), (0, 4), 0, 0),
            w((1, 2), (4, 8), (0, 4), 1, 0),
            w((2, 3), (8, 12), (0, 3), 2, 1),
            w((3, 4), (12, 14), (0, 2), 3, 2),
            w((4, 5), (12, 13), (2, 3), 3, 3),
            w((5, 6), (8, 10), (3, 4), 2, 4),
        ]
    );
    assert_eq!(p.partial_indptr(), &[0, 4, 8, 12, 15]);
}

#[test]
fn row_ranges_are_tiled_to_the_query_tile() {
    // group 4, 8 query vectors per item: 2 rows per item.
    let p = small_plan(PlanKind::Tree, 4, 8);
    assert_eq!(
        &p.work()[..3],
        &[
            w((0, 2), (0, 8), (0, 2), 0, 0),
            w((0, 2), (0, 8), (2, 4), 0, 0),
            w((2, 3), (8, 12), (0, 2), 1, 1)
        ]
    );
    assert_eq!(p.partial_indptr(), &[0, 3, 6, 9, 11]);
}

#[test]
fn folding_short_nodes_is_pinned() {
    let (nodes, ids, leaves) = small();
    let view = TreeKvView { page_size: 4, nodes: &nodes, page_ids: &ids };
    let opts = |min| PlanOptions::new(PlanKind::Tree, 1).with_min_shared(min);
    // min 5: node 1 (4 tokens, no leaf of its own) is read with each child's chunk.
    let p = plan(&view, &leaves, &opts(5)).unwrap();
    assert_eq!(p.page_indices(), &[10, 11, 12, 13, 12, 14, 15]);
    assert_eq!(
        p.work(),
        &[
            w((0, 2), (0, 8), (0, 4), 0, 0),
            w((2, 4), (8, 14), (0, 2), 1, 2),
            w((4, 6), (8, 13), (2, 3), 1, 3),
            w((6, 7), (8, 10), (3, 4), 1, 4),
        ]
    );
    assert_eq!(p.partial_indptr(), &[0, 2, 4, 6, 8]);
    // min 9: the root (8 tokens) folds; root + node 1 (12 tokens) is shared; node 4's chunk
    // starts at the root.
    let p = plan(&view, &leaves, &opts(9)).unwrap();
    assert_eq!(p.page_indices(), &[10, 11, 12, 13, 14, 10, 11, 15]);
    assert_eq!(
        p.work(),
        &[
            w((0, 3), (0, 12), (0, 3), 0, 1),
            w((3, 4), (12, 14), (0, 2), 1, 2),
            w((4, 5), (12, 13), (2, 3), 1, 3),
            w((5, 8), (0, 10), (3, 4), 0, 4),
        ]
    );
    assert_eq!(p.partial_indptr(), &[0, 2, 4, 6, 7]);
    // Folding everything is the naive plan's reads.
    let all = plan(&view, &leaves, &opts(u32::MAX)).unwrap();
    let naive = plan(&view, &leaves, &PlanOptions::new(PlanKind::Naive, 1)).unwrap();
    assert_eq!(all.tokens_read(), naive.tokens_read());
}

/// Every structural invariant the kernels and the merge rely on.
fn check_structure(tree: &Tree, p: &Plan, kind: PlanKind) {
    let ps = tree.page_size;
    let rows = tree.rows();
    assert_eq!(p.num_rows(), rows);
    let mut caller_begin = vec![0u32];
    for l in &tree.leaves {
        caller_begin.push(caller_begin.last().unwrap() + l.q_rows);
    }
    // Plan row -> (caller leaf).
    let mut leaf_of_row = Vec::new();
    for &c in p.leaf_order() {
        leaf_of_row
            .extend(std::iter::repeat_n(c as usize, tree.leaves[c as usize].q_rows as usize));
    }
    let mut seen = vec![false; rows];
    for (r, &c) in p.row_to_q().iter().enumerate() {
        assert!(!seen[c as usize], "row_to_q is a permutation");
        seen[c as usize] = true;
        let l = leaf_of_row[r];
        let k = c as u32 - caller_begin[l];
        let len = tree.nodes[tree.leaves[l].node as usize].kv_end;
        assert_eq!(p.q_pos()[r] as u32, len - tree.leaves[l].q_rows + k);
    }
    // Each row's items: slots 0..count, disjoint ranges covering [0, len), pages as in the tree.
    let mut per_row: Vec<Vec<&WorkItem>> = vec![Vec::new(); rows];
    for it in p.work() {
        assert!(it.kv_start < it.kv_end, "no empty item");
        for r in it.row_begin..it.row_end {
            per_row[r as usize].push(it);
        }
    }
    for (r, items) in per_row.iter_mut().enumerate() {
        let l = &tree.leaves[leaf_of_row[r]];
        let path = tree.path(l.node);
        let count = (p.partial_indptr()[r + 1] - p.partial_indptr()[r]) as usize;
        items.sort_by_key(|it| it.kv_start);
        assert_eq!(items.len(), count, "{kind:?} row {r}: one item per state");
        let mut slots: Vec<i32> = items.iter().map(|it| it.slot).collect();
        slots.sort();
        assert_eq!(slots, (0..count as i32).collect::<Vec<_>>());
        let mut next = 0;
        for it in items.iter() {
            assert_eq!(it.kv_start, next, "{kind:?} row {r}: items tile the path");
            next = it.kv_end;
            for t in it.kv_start as u32..it.kv_end as u32 {
                let u = *path
                    .iter()
                    .find(|&&u| {
                        let nd = &tree.nodes[u as usize];
                        nd.kv_start <= t && t < nd.kv_end
                    })
                    .unwrap();
                let page = p.page_indices()
                    [(it.page_begin as u32 + (t - it.kv_start as u32) / ps) as usize];
                assert_eq!(page as usize, tree.slot(u, t).0, "{kind:?}: position {t} of row {r}");
            }
        }
        assert_eq!(next as u32, tree.nodes[l.node as usize].kv_end);
    }
    if matches!(kind, PlanKind::Tree | PlanKind::TreeSplit { .. }) {
        // A node's items are read by exactly the rows of the leaves below it.
        for it in p.work() {
            let below: Vec<usize> = (0..rows)
                .filter(|&r| {
                    tree.path(tree.leaves[leaf_of_row[r]].node).contains(&(it.node as u32))
                })
                .collect();
            let tiles: usize = p
                .work()
                .iter()
                .filter(|o| o.node == it.node && o.slot == it.slot)
                .map(|o| (o.row_end - o.row_begin) as usize)
                .sum();
            assert_eq!(tiles, below.len(), "{kind:?}: node {} covers its leaves", it.node);
            assert!((it.row_begin as usize..it.row_end as usize).all(|r| below.contains(&r)));
        }
    }
}

#[test]
fn random_trees_keep_every_invariant() {
    let mut rng = Rng::fresh("plan invariants");
    let mut reused = Plan::new();
    for i in 0..40 {
        let ps = [4, 8, 16][i % 3];
        let tree = random_tree(&mut rng, ps, 1 + i % 4);
        for kind in [
            PlanKind::Naive,
            PlanKind::Cascade,
            PlanKind::Tree,
            PlanKind::TreeSplit { max_chunk: 2 * ps + 1 },
            PlanKind::TreeFill { units: 5 },
            PlanKind::Auto { units: 1 + (i % 5) as u32 * 4 },
        ] {
            // Folding: none, nodes under two pages, every node (a root-to-leaf path per leaf).
            let min_shared = [0, 2 * ps, u32::MAX][(i / 3) % 3];
            let opts = PlanOptions {
                kind,
                group: 1 + (i % 3) as u32 * 3,
                query_tile: [64, 8, 1][i % 3],
                min_shared,
            };
            let p = plan(&tree.view(), &tree.leaves, &opts).unwrap();
            check_structure(&tree, &p, kind);
            // Reusing a plan that held another tree gives the same arrays.
            plan_into(&tree.view(), &tree.leaves, &opts, &mut reused).unwrap();
            assert_eq!(
                (p.work(), p.page_indices(), p.partial_indptr()),
                (reused.work(), reused.page_indices(), reused.partial_indptr())
            );
            assert_eq!(
                (p.q_pos(), p.row_to_q(), p.leaf_order()),
                (reused.q_pos(), reused.row_to_q(), reused.leaf_order())
            );
            if kind == PlanKind::Tree && opts.query_tile >= 64 * opts.group && min_shared == 0 {
                // Rows fit one tile: the tree plan reads every distinct token exactly once.
                let untiled = tree.rows() as u32 * opts.group <= 64;
                if untiled {
                    assert_eq!(p.tokens_read(), p.distinct_tokens());
                }
            }
        }
    }
}

#[test]
fn tree_plan_reads_distinct_tokens_once() {
    let mut rng = Rng::fresh("plan io floor");
    for _ in 0..20 {
        let tree = random_tree(&mut rng, 16, 3);
        let opts =
            PlanOptions { kind: PlanKind::Tree, group: 1, query_tile: u32::MAX, min_shared: 0 };
        let p = plan(&tree.view(), &tree.leaves, &opts).unwrap();
        assert_eq!(p.tokens_read(), p.distinct_tokens());
        let naive =
            plan(&tree.view(), &tree.leaves, &PlanOptions { kind: PlanKind::Naive, ..opts })
                .unwrap();
        let lens: u64 = tree.leaves.iter().map(|l| tree.nodes[l.node as usize].kv_end as u64).sum();
        assert_eq!(naive.tokens_read(), lens);
    }
}

#[test]
fn split_to_fill_rounds_to_pages() {
    assert_eq!(split_to_fill(1024, 4, 16), 256);
    assert_eq!(split_to_fill(1000, 3, 16), 336);
    assert_eq!(split_to_fill(100, 64, 16), 64);
    assert_eq!(split_to_fill(1 << 20, 2, 16), 1 << 19);
    assert_eq!(split_to_fill(10, 0, 128), 128);
    assert_eq!(split_to_fill(2048, 1, 16), 2048);
    // TreeFill with one unit splits nothing; with 16 units a 1k prefix + 16×64 becomes 8 pieces.
    let mut rng = Rng::new(3);
    let tree = crate::tree_common::two_level(&mut rng, 16, 16, 1024, 64);
    let opts = |units| PlanOptions::new(PlanKind::TreeFill { units }, 4);
    let one = plan(&tree.view(), &tree.leaves, &opts(1)).unwrap();
    let tree_plan = plan(&tree.view(), &tree.leaves, &PlanOptions::new(PlanKind::Tree, 4)).unwrap();
    assert_eq!(one.work(), tree_plan.work());
    let sixteen = plan(&tree.view(), &tree.leaves, &opts(16)).unwrap();
    assert_eq!(sixteen.work().len(), 8 + 16);
    assert!(sixteen.work().iter().all(|w| w.kv_end - w.kv_start <= 128));
}

#[test]
fn auto_splits_only_what_the_shape_needs() {
    // The cost model: 1024 tokens × 64 vectors against the total of 1k + 16 × 64 tokens.
    let total = 1024 * 64 + 16 * 64 * 8;
    assert_eq!(auto_split((1024, 64), total, 1, 16), u32::MAX);
    // 16 units: the prefix item must come to about total / 16 = 4608 → 72 tokens → 80.
    assert_eq!(auto_split((1024, 64), total, 16, 16), 80);
    // Vectors count in panels of 8: 4 vectors cost as 8.
    assert_eq!(auto_split((1000, 4), 8000, 1, 16), u32::MAX);
    assert_eq!(auto_split((1000, 4), 8000, 2, 16), 512);
    // Never below max(page, 64) tokens.
    assert_eq!(auto_split((1 << 20, 64), 1 << 26, 1 << 20, 16), 64);
    assert_eq!(auto_split((1 << 20, 64), 1 << 26, 1 << 20, 128), 128);
    let mut rng = Rng::new(3);
    let tree = crate::tree_common::two_level(&mut rng, 16, 16, 1024, 64);
    let tree_plan = plan(&tree.view(), &tree.leaves, &PlanOptions::new(PlanKind::Tree, 4)).unwrap();
    let auto = |units| {
        plan(&tree.view(), &tree.leaves, &PlanOptions::new(PlanKind::Auto { units }, 4)).unwrap()
    };
    // One worker per KV head (2 CPU threads, 2 KV heads): the tree plan, nothing split.
    assert_eq!(auto(1).work(), tree_plan.work());
    // 2 workers: the 1k prefix (64 vectors) is more than half the work: cut in two.
    let two = auto(2);
    assert_eq!(two.work().len(), 2 + 16);
    assert!(two.work().iter().all(|w| w.kv_end - w.kv_start <= 576));
    // 16 workers (a GPU's SMs per KV head): pieces of 80 tokens, the leaves' 64 untouched.
    let sixteen = auto(16);
    assert_eq!(sixteen.work().len(), 1024usize.div_ceil(80) + 16);
    // A single leaf: one item of 4 vectors; split only when there are workers to use.
    let single = crate::tree_common::two_level(&mut rng, 16, 1, 1024, 64);
    let opts = |units| PlanOptions::new(PlanKind::Auto { units }, 4);
    assert_eq!(plan(&single.view(), &single.leaves, &opts(1)).unwrap().work().len(), 1);
    assert_eq!(plan(&single.view(), &single.leaves, &opts(4)).unwrap().work().len(), 4);
    let e = plan(&tree.view(), &tree.leaves, &opts(0)).unwrap_err();
    assert!(e.to_string().contains("Auto units"), "{e}");
}

#[test]
fn invalid_trees_are_rejected() {
    let (nodes, ids, leaves) = small();
    let opts = PlanOptions::new(PlanKind::Tree, 1);
    type Edit<'a> = &'a dyn Fn(&mut Vec<NodeKv>, &mut Vec<i32>, &mut Vec<LeafQuery>, &mut u32);
    let run = |f: Edit<'_>| {
        let (mut n, mut i, mut l, mut ps) = (nodes.clone(), ids.clone(), leaves.clone(), 4u32);
        f(&mut n, &mut i, &mut l, &mut ps);
        plan(&TreeKvView { page_size: ps, nodes: &n, page_ids: &i }, &l, &opts).unwrap_err()
    };
    assert_eq!(run(&|_, _, _, ps| *ps = 6), PlanError::PageSize { page_size: 6 });
    assert_eq!(
        run(&|_, _, l, _| l[1].node = 9),
        PlanError::NodeOutOfRange { what: "leaf 1".into(), node: 9, num_nodes: 5 }
    );
    assert_eq!(
        run(&|n, _, _, _| n[1].parent = Some(7)),
        PlanError::NodeOutOfRange { what: "the parent of node 1".into(), node: 7, num_nodes: 5 }
    );
    assert_eq!(
        run(&|n, _, _, _| {
            n[4].kv_start = 4;
            n[4].kv_end = 8;
        })
        .to_string(),
        "node 4 starts at 4 but its parent 0 ends at 8 (a parent with children must end on a \
         page boundary, where the child starts)"
    );
    assert_eq!(
        run(&|n, _, _, _| n[1].kv_start = 9),
        PlanError::Unaligned { node: 1, kv_start: 9, page_size: 4 }
    );
    assert_eq!(
        run(&|n, _, _, _| n[2].kv_end = 11),
        PlanError::Reversed { node: 2, kv_start: 12, kv_end: 11 }
    );
    assert_eq!(
        run(&|n, _, _, _| n[0].pages = 0..1),
        PlanError::Pages { node: 0, pages: 0..1, listed: 6, tokens: 8 }
    );
    assert_eq!(
        run(&|n, _, _, _| n[4].pages = 5..7),
        PlanError::Pages { node: 4, pages: 5..7, listed: 6, tokens: 2 }
    );
    assert_eq!(run(&|_, i, _, _| i[3] = -2), PlanError::NegativePage { node: 2, page: -2 });
    assert_eq!(
        run(&|n, _, _, _| {
            n[4].kv_start = 4;
            n[4].kv_end = 8;
        }),
        PlanError::Discontiguous { node: 4, parent: 0, kv_start: 4, parent_end: 8 }
    );
    assert_eq!(
        run(&|n, _, _, _| {
            n[0].kv_start = 4;
            n[0].pages = 0..1;
        }),
        PlanError::RootStart { node: 0, kv_start: 4 }
    );
    assert_eq!(
        run(&|_, _, l, _| l[0].q_rows = 11),
        PlanError::QueryRows { leaf: 0, node: 4, q_rows: 11, len: 10 }
    );
    assert_eq!(
        run(&|_, _, l, _| l[2].q_rows = 0),
        PlanError::QueryRows { leaf: 2, node: 3, q_rows: 0, len: 13 }
    );
    // A parent cycle that never reaches a root.
    let cyc = vec![
        NodeKv { parent: Some(1), kv_start: 0, kv_end: 0, pages: 0..0 },
        NodeKv { parent: Some(0), kv_start: 0, kv_end: 0, pages: 0..0 },
    ];
    let e = plan(
        &TreeKvView { page_size: 4, nodes: &cyc, page_ids: &[] },
        &[LeafQuery { node: 0, q_rows: 1 }],
        &opts,
    )
    .unwrap_err();
    assert!(matches!(e, PlanError::Cycle { .. }), "{e}");
    let mut table = tree_attn::LeafPageTable::new();
    let e = table
        .build_into(
            &TreeKvView { page_size: 4, nodes: &cyc, page_ids: &[] },
            &[LeafQuery { node: 0, q_rows: 1 }],
        )
        .unwrap_err();
    assert!(matches!(e, PlanError::Cycle { .. }), "{e}");
    // Options.
    let view = TreeKvView { page_size: 4, nodes: &nodes, page_ids: &ids };
    let e = plan(&view, &leaves, &PlanOptions::new(PlanKind::Tree, 0)).unwrap_err();
    assert!(e.to_string().contains("group = 0"), "{e}");
    let e = plan(&view, &leaves, &PlanOptions::new(PlanKind::TreeSplit { max_chunk: 0 }, 1))
        .unwrap_err();
    assert!(e.to_string().contains("max_chunk"), "{e}");
}

#[test]
fn leaf_page_table_lists_whole_paths() {
    let (nodes, ids, leaves) = small();
    let mut t = tree_attn::LeafPageTable::new();
    t.build_into(&TreeKvView { page_size: 4, nodes: &nodes, page_ids: &ids }, &leaves).unwrap();
    let h = t.host();
    assert_eq!(h.indptr, &[0, 3, 7, 11]);
    assert_eq!(h.indices, &[10, 11, 15, 10, 11, 12, 13, 10, 11, 12, 14]);
    assert_eq!(h.last_page_len, &[2, 2, 1]);
    assert_eq!(h.q_indptr, &[0, 1, 3, 4]);
}
