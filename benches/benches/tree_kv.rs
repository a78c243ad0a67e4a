//! tree-kv host bookkeeping: the per-step page-table export for a TreePO batch, and the
//! fork/append/release/prefix-lookup operations.
//!
//! `cargo bench -p treepo-benches --bench tree_kv`. For two tree shapes (one node per segment,
//! and nodes only where paths branch) the export benchmark prints, once: the shape, the KV pages
//! tree attention reads against a per-leaf (naive) decode, and the export cost per decode step
//! over 64 steps in which every leaf appends one token (target: < 100 µs per step on the 2-core
//! dev machine), next to a full rebuild and the slow twin that asks for each leaf's path
//! separately. Minima over repeated runs are printed because other load on a shared machine
//! only ever adds time. Criterion then times the full rebuild, the steady-state step and the
//! per-leaf twin.

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::Instant;
use tree_kv::{CacheConfig, LayoutExport, NodeId, PageId, TreeKvCache};
use treepo_benches::tree_kv_workload::{Shape, build};

fn export_step(c: &mut Criterion) {
    treepo_benches::print_load_once();
    for node_per_segment in [true, false] {
        let shape = Shape { node_per_segment, ..Shape::issue3() };
        let mut forest = build(shape).expect("workload fits its pool");
        let name = if node_per_segment { "node_per_segment" } else { "branch_nodes" };
        let leaves = forest.leaves.clone();
        let reversed: Vec<_> = leaves.iter().rev().copied().collect();
        let mut x = LayoutExport::new();
        forest.cache.export_into(&leaves, &mut x).expect("valid leaves");
        let (tree_pages, naive_pages) = (x.node_page_indices().len(), x.leaf_page_indices().len());
        eprintln!(
            "tree_kv export [{name}]: {} prompts x {} leaves, depth {}, segment {}, page {}: \
             {} nodes, {} leaves; KV pages read per layer: tree {} vs per-leaf {} ({:.2}x)",
            shape.prompts,
            shape.width,
            shape.depth,
            shape.segment,
            shape.page_size,
            x.num_nodes(),
            x.num_leaves(),
            tree_pages,
            naive_pages,
            naive_pages as f64 / tree_pages as f64,
        );

        // A full rebuild: alternate two leaf orders so the buffer never matches the last call.
        let cache = &forest.cache;
        let mut flip = false;
        let full = min_median(300, || {
            flip = !flip;
            cache.export_into(if flip { &reversed } else { &leaves }, &mut x).expect("valid");
        });
        let per_leaf = min_median(300, || {
            let mut path = Vec::new();
            for &l in &leaves {
                black_box(cache.leaf_path_into(l, &mut path).expect("live leaf"));
            }
        });
        // Decode steps: every leaf appends one token (untimed), then the step is exported.
        // Steps where the leaves open a new page (1 in 16 here) rebuild; the others refresh.
        cache_decode_report(name, &mut forest.cache, &leaves, &mut x, full, per_leaf);

        let cache = &forest.cache;
        c.bench_function(&format!("tree_kv/export_full_64x16_d14_{name}"), |b| {
            b.iter(|| {
                flip = !flip;
                cache.export_into(if flip { &reversed } else { &leaves }, &mut x).expect("valid")
            })
        });
        c.bench_function(&format!("tree_kv/export_steady_64x16_d14_{name}"), |b| {
            b.iter(|| cache.export_into(black_box(&leaves), &mut x).expect("valid"))
        });
        let mut path: Vec<PageId> = Vec::new();
        c.bench_function(&format!("tree_kv/per_leaf_paths_64x16_d14_{name}"), |b| {
            b.iter(|| {
                path.clear();
                for &l in &leaves {
                    black_box(cache.leaf_path_into(l, &mut path).expect("live leaf"));
                }
            })
        });
    }
}

/// Runs 64 decode steps (two 32-token segments) and prints the per-step export cost: steps where
/// leaves opened a page rebuild, the others take the fast path. Medians per kind, and the mean
/// per step those medians give (robust to other load, which only ever adds time).
fn cache_decode_report(
    name: &str,
    cache: &mut TreeKvCache,
    leaves: &[NodeId],
    x: &mut LayoutExport,
    full: (f64, f64),
    per_leaf: (f64, f64),
) {
    let ps = cache.page_size();
    let (mut refresh, mut rebuild) = (Vec::new(), Vec::new());
    for step in 0..64u32 {
        let mut opened = false;
        for &l in leaves {
            let slots = cache.append(l, &[step]).expect("pool has room");
            opened |= slots[0].offset == 0;
        }
        let start = Instant::now();
        cache.export_into(leaves, x).expect("valid leaves");
        let t = start.elapsed().as_secs_f64() * 1e6;
        if opened { rebuild.push(t) } else { refresh.push(t) }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    let (n_fast, n_full) = (refresh.len(), rebuild.len());
    let (fast, slow) = (median(&mut refresh), median(&mut rebuild));
    let mean = (fast * n_fast as f64 + slow * n_full as f64) / 64.0;
    eprintln!(
        "tree_kv export [{name}] per decode step (page {ps}), 64 steps: {n_fast} refresh steps \
         median {fast:.1} us, {n_full} rebuild steps median {slow:.1} us => mean {mean:.1} us per \
         step (target < 100 us); full rebuild min {:.1} / median {:.1} us; per-leaf path queries \
         min {:.1} / median {:.1} us",
        full.0, full.1, per_leaf.0, per_leaf.1
    );
}

/// Minimum and median wall time of `runs` calls of `f`, in microseconds.
fn min_median(runs: usize, mut f: impl FnMut()) -> (f64, f64) {
    let mut t: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    t.sort_by(f64::total_cmp);
    (t[0], t[runs / 2])
}

fn operations(c: &mut Criterion) {
    treepo_benches::print_load_once();
    let mut cache = TreeKvCache::new(CacheConfig::new(4096)).expect("valid config");
    let prompt: Vec<u32> = (0..512).collect();
    let root = cache.create_root(&prompt).expect("fits").node;
    let mid = cache.fork(root, 1).expect("fits").children[0];
    cache.append(mid, &[7; 37]).expect("fits"); // ends mid-page: forks copy a tail
    let segment: Vec<u32> = (10_000..10_032).collect();
    let mut slots = Vec::with_capacity(64);

    c.bench_function("tree_kv/fork2_release2_partial_tail", |b| {
        b.iter(|| {
            let f = cache.fork(mid, 2).expect("fits");
            for child in f.children {
                cache.release(child).expect("live");
            }
        })
    });
    c.bench_function("tree_kv/fork1_append32_release", |b| {
        b.iter(|| {
            let child = cache.fork(mid, 1).expect("fits").children[0];
            slots.clear();
            cache.append_into(child, black_box(&segment), &mut slots).expect("fits");
            cache.release(child).expect("live");
        })
    });
    c.bench_function("tree_kv/match_prefix_512", |b| {
        b.iter(|| black_box(cache.match_prefix(black_box(&prompt))))
    });
    c.bench_function("tree_kv/create_root_cached_512_release", |b| {
        b.iter(|| {
            let p = cache.create_root(black_box(&prompt)).expect("fits");
            cache.release(p.node).expect("live");
            p.cached_tokens
        })
    });
}

criterion_group!(benches, export_step, operations);
criterion_main!(benches);
