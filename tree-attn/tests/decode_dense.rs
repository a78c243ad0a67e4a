//! Tree decode end to end, per backend, against a dense f64 reference built from an explicit
//! boolean mask of the tree: random multi-level unbalanced trees and forests (shuffled node ids
//! and page tables, spare pages, partial last pages, empty chunks, segment appends), every
//! `PlanKind`, the naive `paged_decode` baseline on the same data, GQA groups 1/4/8, head_dim 64
//! and 128, two layers through one uploaded plan and workspace, every dtype of the backend.
//! Identities: tree == naive == dense; cascade (+ merge) == flat.

use crate::tree_common::{Tree, dense_reference, random_tree, two_level};
use tree_attn::{DecodeWorkspace, LeafPageTable, PlanKind, PlanOptions, decode, naive, plan};
use treepo_kernels::ops::{DecodeParams, DecodePlanBuffers, PagedKvLayout};
use treepo_kernels::testing::{Rng, Tol, assert_close};
use treepo_kernels::{BackendKind, DType, Device, FloatElement, bf16, f16, per_backend};

const KINDS: [PlanKind; 7] = [
    PlanKind::Naive,
    PlanKind::Cascade,
    PlanKind::Tree,
    PlanKind::TreeSplit { max_chunk: 32 },
    PlanKind::TreeSplit { max_chunk: 1 },
    PlanKind::TreeFill { units: 3 },
    PlanKind::Auto { units: 4 },
];

fn round(dtype: DType, x: f32) -> f32 {
    match dtype {
        DType::F16 => f16::from_f32(x).to_f32(),
        DType::BF16 => bf16::from_f32(x).to_f32(),
        _ => x,
    }
}

fn tol(dtype: DType) -> (Tol, Tol) {
    match dtype {
        DType::F32 => (Tol { atol: 2e-5, rtol: 1e-4 }, Tol { atol: 1e-4, rtol: 1e-5 }),
        DType::F16 => (Tol::eps(DType::F16, 4.0), Tol { atol: 2e-3, rtol: 1e-3 }),
        _ => (Tol::eps(DType::BF16, 4.0), Tol { atol: 1e-2, rtol: 4e-3 }),
    }
}

fn to_f32<T: FloatElement>(v: Vec<T>) -> Vec<f32> {
    v.into_iter().map(|x| x.to_f32()).collect()
}

/// Runs every plan kind and the naive kernel on `tree`; compares with the dense reference.
fn check<T: FloatElement>(
    dev: &Device,
    rng: &mut Rng,
    tree: &Tree,
    hq: usize,
    hkv: usize,
    d: usize,
    what: &str,
) {
    let dtype = T::DTYPE;
    let ps = tree.page_size as usize;
    let layout = if rng.below(2) == 0 { PagedKvLayout::hnd } else { PagedKvLayout::nhd }(
        2,
        tree.num_pages,
        hkv,
        ps,
        d,
    );
    let kv: Vec<f32> = rng
        .normals(layout.required_len().unwrap(), 1.0)
        .into_iter()
        .map(|x| round(dtype, x))
        .collect();
    let rows = tree.rows();
    let kvb = dev.upload(&kv.iter().map(|&x| T::from_f32(x)).collect::<Vec<T>>()).unwrap();
    let scale = 1.0 / (d as f32).sqrt();
    let (to, tl) = tol(dtype);
    let mut table = LeafPageTable::new();
    table.build_into(&tree.view(), &tree.leaves).unwrap();
    let table = table.upload(dev, tree.num_pages).unwrap();
    // Two layers through one uploaded plan and workspace (f32; 16-bit dtypes check layer 0).
    let layers = if dtype == DType::F32 { 2 } else { 1 };
    for layer in 0..layers {
        let q: Vec<f32> =
            rng.normals(rows * hq * d, 1.0).into_iter().map(|x| round(dtype, x)).collect();
        let qb = dev.upload(&q.iter().map(|&x| T::from_f32(x)).collect::<Vec<T>>()).unwrap();
        let (want_o, want_l) = dense_reference(tree, &kv, &layout, layer, &q, hq, scale as f64);
        let params = DecodeParams { num_qo_heads: hq, layer, sm_scale: scale };
        let tag = format!("{what} {dtype} hq={hq} hkv={hkv} d={d} layer={layer}");
        // The naive baseline.
        let mut out = treepo_kernels::testing::poisoned::<T>(dev, rows * hq * d).unwrap();
        let mut lse = treepo_kernels::testing::poisoned::<f32>(dev, rows * hq).unwrap();
        naive(dev, &table, &qb, &kvb, &layout, &params, &mut out, Some(lse.view_mut())).unwrap();
        let naive_out = to_f32(dev.download(&out).unwrap());
        assert_close(&format!("{tag} naive out"), &naive_out, &want_o, to);
        assert_close(&format!("{tag} naive lse"), &dev.download(&lse).unwrap(), &want_l, tl);
        // One set of device tables and one workspace serve every kind (`upload_into`, `ensure`).
        let mut tables: Option<(DecodePlanBuffers, DecodeWorkspace)> = None;
        // Every kind, and the tree plan with nodes under two pages folded.
        let folded = (PlanKind::Tree, 2 * tree.page_size);
        for (kind, min_shared) in KINDS.iter().map(|&k| (k, 0)).chain([folded]) {
            let opts = PlanOptions::new(kind, (hq / hkv) as u32).with_min_shared(min_shared);
            let p = plan::plan(&tree.view(), &tree.leaves, &opts).unwrap();
            let (bufs, ws) = match tables.as_mut() {
                Some((bufs, ws)) => {
                    p.upload_into(dev, bufs, tree.num_pages).unwrap();
                    ws.ensure(dev, bufs, hq, d).unwrap();
                    (bufs, ws)
                }
                None => {
                    let bufs = p.upload(dev, tree.num_pages).unwrap();
                    let ws = DecodeWorkspace::new(dev, &bufs, hq, d).unwrap();
                    let (bufs, ws) = tables.insert((bufs, ws));
                    (bufs, ws)
                }
            };
            let mut out = treepo_kernels::testing::poisoned::<T>(dev, rows * hq * d).unwrap();
            let mut lse = treepo_kernels::testing::poisoned::<f32>(dev, rows * hq).unwrap();
            decode(dev, bufs, ws, &qb, &kvb, &layout, &params, &mut out, Some(lse.view_mut()))
                .unwrap();
            let got = to_f32(dev.download(&out).unwrap());
            let kind = format!("{kind:?} min_shared={min_shared}");
            let e = assert_close(&format!("{tag} {kind} out"), &got, &want_o, to);
            assert_close(&format!("{tag} {kind} lse"), &dev.download(&lse).unwrap(), &want_l, tl);
            // tree == naive, directly.
            let naive64: Vec<f64> = naive_out.iter().map(|&x| x as f64).collect();
            assert_close(
                &format!("{tag} {kind} vs naive"),
                &got,
                &naive64,
                Tol { atol: 2.0 * to.atol, rtol: 2.0 * to.rtol },
            );
            if layer == 0 {
                eprintln!(
                    "{tag} {kind}: {} items, {} partials, max err {e:e}",
                    p.work().len(),
                    p.num_partials()
                );
            }
        }
    }
}

fn dtypes(dev: &Device) -> Vec<DType> {
    let mut v = vec![DType::F32];
    if dev.kind() != BackendKind::Cpu && dev.supports_f16() {
        v.push(DType::F16);
    }
    if dev.kind() == BackendKind::Cuda {
        v.push(DType::BF16);
    }
    v
}

fn run(dev: &Device, rng: &mut Rng, tree: &Tree, hq: usize, hkv: usize, d: usize, what: &str) {
    for dtype in dtypes(dev) {
        match dtype {
            DType::F32 => check::<f32>(dev, rng, tree, hq, hkv, d, what),
            DType::F16 => check::<f16>(dev, rng, tree, hq, hkv, d, what),
            _ => check::<bf16>(dev, rng, tree, hq, hkv, d, what),
        }
    }
}

fn random_trees(dev: &Device) {
    let mut rng = Rng::fresh("tree-attn random trees");
    for (i, &(hq, hkv, d, ps)) in
        [(2, 2, 64, 16), (8, 2, 128, 16), (8, 1, 64, 8), (4, 1, 128, 4)].iter().enumerate()
    {
        let tree = random_tree(&mut rng, ps, 3);
        eprintln!(
            "tree {i}: {} nodes, {} leaves, {} rows",
            tree.nodes.len(),
            tree.leaves.len(),
            tree.rows()
        );
        run(dev, &mut rng, &tree, hq, hkv, d, &format!("random tree {i}"));
    }
}

/// Leaves whose own chunk is empty, a leaf querying positions inside its parent's chunk, a child
/// holding only a copied partial page, an inactive branch, a 2-row segment append.
fn edge_cases(dev: &Device) {
    use tree_attn::{LeafQuery, NodeKv};
    let mut rng = Rng::fresh("tree-attn edge cases");
    let nodes = vec![
        NodeKv { parent: None, kv_start: 0, kv_end: 32, pages: 0..2 }, // 0: root, 35 tokens
        NodeKv { parent: Some(0), kv_start: 32, kv_end: 32, pages: 2..2 }, // 1: empty leaf
        NodeKv { parent: Some(0), kv_start: 32, kv_end: 40, pages: 2..3 }, // 2: leaf
        NodeKv { parent: Some(0), kv_start: 32, kv_end: 32, pages: 3..3 }, // 3: internal, empty
        NodeKv { parent: Some(3), kv_start: 32, kv_end: 35, pages: 3..4 }, // 4: copied page only
        NodeKv { parent: Some(3), kv_start: 32, kv_end: 51, pages: 4..6 }, // 5: leaf
        NodeKv { parent: Some(0), kv_start: 32, kv_end: 45, pages: 6..7 }, // 6: inactive
    ];
    let tree = Tree {
        page_size: 16,
        nodes,
        page_ids: vec![9, 2, 7, 0, 5, 11, 3],
        num_pages: 12,
        leaves: vec![
            LeafQuery { node: 5, q_rows: 3 },
            LeafQuery { node: 1, q_rows: 2 },
            LeafQuery { node: 4, q_rows: 1 },
            LeafQuery { node: 2, q_rows: 9 },
        ],
    };
    for &(hq, hkv, d) in &[(4, 4, 64), (8, 2, 128), (8, 1, 64)] {
        run(dev, &mut rng, &tree, hq, hkv, d, "edge cases");
    }
}

/// The benchmark shape in miniature: many leaves below one long prefix (tensor-core tiles on
/// CUDA: 16 leaves × group 4 = 64 query vectors per item).
fn shared_prefix(dev: &Device) {
    let mut rng = Rng::fresh("tree-attn shared prefix");
    let tree = two_level(&mut rng, 16, 16, 200, 20);
    run(dev, &mut rng, &tree, 8, 2, 128, "16x(200+20)");
    let tree = two_level(&mut rng, 16, 1, 90, 0);
    run(dev, &mut rng, &tree, 8, 2, 64, "single leaf");
}

per_backend!(random_trees, edge_cases, shared_prefix);
