//! Conformance of `packed_attention_fwd` on every backend: against the dense f64 reference with
//! an explicit mask built from the tree, and identities (chain tree = causal attention, packed
//! tree = its leaves attended one by one).

use crate::packed_support::*;
use tree_attn::packed::{PackNode, PackedAttentionParams, PackedTree, TileClass, TreeMask};
use treepo_kernels::testing::{Rng, Tol, assert_close};
use treepo_kernels::{DType, Device, per_backend};

fn check_forest(
    dev: &Device,
    what: &str,
    nodes: &[PackNode],
    p: PackedAttentionParams,
    rng: &mut Rng,
) {
    let tree = PackedTree::pack(nodes).unwrap();
    let mask = tree.upload_mask(dev).unwrap();
    let vis = dense_mask(nodes, &tree);
    for dtype in dtypes(dev) {
        let x = Problem::random(rng, tree.num_tokens(), p, dtype);
        let (want_o, want_lse) = reference_fwd(&x, &vis);
        let r = run_dtype(dev, dtype, &x, &mask, false);
        let (t, _) = tol(dtype);
        let label = format!(
            "{what} {dtype} N={} heads {}/{} D={}",
            x.n, p.num_qo_heads, p.num_kv_heads, p.head_dim
        );
        let e1 = assert_close(&format!("{label}: o"), &r.o, &want_o, t);
        let e2 = assert_close(
            &format!("{label}: lse"),
            &r.lse,
            &want_lse,
            Tol { atol: 1e-4, rtol: 1e-5 },
        );
        eprintln!("{label}: max err o {e1:e} lse {e2:e}");
    }
}

fn matches_dense_reference(dev: &Device) {
    let mut rng = Rng::fresh("packed_attention_fwd dense");
    for (hq, hkv) in HEADS {
        // 64 and 128 have tiled CUDA kernels; 32 (the demo model) and 8 run the `_any_` ones.
        for d in [64, 128, 32, 8] {
            let trees = 1 + rng.below(3);
            let nodes = bounded_forest(&mut rng, trees, 4, 3, 24, 400);
            check_forest(
                dev,
                "random forest",
                &nodes,
                PackedAttentionParams::new(hq, hkv, d),
                &mut rng,
            );
        }
    }
}

fn skips_fully_masked_tiles(dev: &Device) {
    let mut rng = Rng::fresh("packed_attention_fwd masked tiles");
    // A 70-token prompt with two 60-token children: the second child's rows see nothing of the
    // first child's columns (empty tiles), and rows of either child see all of the prompt
    // (full tiles); then 20 tiny trees, whose tiles are mostly empty.
    let mut nodes = vec![PackNode::root(70), PackNode::child(0, 60), PackNode::child(0, 60)];
    for _ in 0..20 {
        nodes.push(PackNode::root(5));
    }
    let tree = PackedTree::pack(&nodes).unwrap();
    let mask = TreeMask::upload(&Device::cpu(), tree.kv_row_end()).unwrap();
    let class = |r0: usize, b: usize| {
        let (lo, hi) = mask.bounds_of_block(b);
        TileClass::of(r0, r0 + 16, b * 16, b * 16 + 16, lo, hi)
    };
    assert_eq!(class(144, 5), TileClass::Empty, "child 2 rows x child 1 columns");
    assert_eq!(class(144, 2), TileClass::Full, "child 2 rows x prompt columns");
    assert_eq!(class(64, 4), TileClass::Partial, "diagonal tile");
    check_forest(dev, "masked tiles", &nodes, PackedAttentionParams::new(4, 1, 64), &mut rng);
}

fn chain_tree_equals_causal(dev: &Device) {
    let mut rng = Rng::fresh("packed_attention_fwd chain");
    let n = 77;
    // One node of 77 tokens, and the same 77 tokens as a chain of 1..=9-token nodes.
    let mut chain = vec![PackNode::root(5)];
    let mut left = n - 5;
    while left > 0 {
        let t = (1 + rng.below(9)).min(left);
        chain.push(PackNode::child(chain.len() as u32 - 1, t as u32));
        left -= t;
    }
    let p = PackedAttentionParams::new(4, 2, 64);
    let causal = causal_mask(n);
    for nodes in [vec![PackNode::root(n as u32)], chain] {
        let tree = PackedTree::pack(&nodes).unwrap();
        assert_eq!(tree.kv_row_end(), &vec![n as i32; n][..]);
        assert_eq!(dense_mask(&nodes, &tree), causal);
        let mask = tree.upload_mask(dev).unwrap();
        for dtype in dtypes(dev) {
            let x = Problem::random(&mut rng, n, p, dtype);
            let (want_o, want_lse) = reference_fwd(&x, &causal);
            let r = run_dtype(dev, dtype, &x, &mask, false);
            assert_close(
                &format!("chain {dtype} ({} nodes): o", nodes.len()),
                &r.o,
                &want_o,
                tol(dtype).0,
            );
            assert_close("chain lse", &r.lse, &want_lse, Tol { atol: 1e-4, rtol: 1e-5 });
        }
    }
}

fn tree_equals_per_leaf(dev: &Device) {
    let mut rng = Rng::fresh("packed_attention_fwd per-leaf");
    let p = PackedAttentionParams::new(8, 2, 64);
    let nodes = bounded_forest(&mut rng, 2, 4, 3, 20, 300);
    let tree = PackedTree::pack(&nodes).unwrap();
    let mask = tree.upload_mask(dev).unwrap();
    let x = Problem::random(&mut rng, tree.num_tokens(), p, DType::F32);
    let packed = run_dtype(dev, DType::F32, &x, &mask, false);
    let (rq, rkv) = (p.num_qo_heads * p.head_dim, p.num_kv_heads * p.head_dim);
    for leaf in 0..tree.num_leaves() {
        let idx = tree.leaf_tokens(leaf);
        let len = idx.len();
        let leaf_x = Problem {
            n: len,
            p,
            q: gather_rows(&x.q, idx, rq),
            k: gather_rows(&x.k, idx, rkv),
            v: gather_rows(&x.v, idx, rkv),
            d_o: gather_rows(&x.d_o, idx, rq),
        };
        let chain = TreeMask::upload(dev, &vec![len as i32; len]).unwrap();
        let alone = run_dtype(dev, DType::F32, &leaf_x, &chain, false);
        let want: Vec<f64> = gather_rows(&packed.o, idx, rq).into_iter().map(f64::from).collect();
        assert_close(
            &format!("leaf {leaf} (len {len}) alone vs packed"),
            &alone.o,
            &want,
            Tol { atol: 2e-5, rtol: 1e-4 },
        );
    }
}

fn single_token_trees(dev: &Device) {
    let mut rng = Rng::fresh("packed_attention_fwd single token");
    // One token: o = v and lse = its own score. Then 33 one-token trees: each sees only itself.
    for trees in [1usize, 33] {
        let nodes = vec![PackNode::root(1); trees];
        let tree = PackedTree::pack(&nodes).unwrap();
        let mask = tree.upload_mask(dev).unwrap();
        let p = PackedAttentionParams::new(4, 4, 128);
        for dtype in dtypes(dev) {
            let x = Problem::random(&mut rng, trees, p, dtype);
            let r = run_dtype(dev, dtype, &x, &mask, false);
            let want: Vec<f64> = x.v.iter().map(|&v| v as f64).collect();
            assert_close(
                &format!("{trees} single-token trees {dtype}: o = v"),
                &r.o,
                &want,
                tol(dtype).0,
            );
            let (_, want_lse) = reference_fwd(&x, &dense_mask(&nodes, &tree));
            assert_close("single-token lse", &r.lse, &want_lse, Tol { atol: 1e-4, rtol: 1e-5 });
        }
    }
}

fn rejects_bad_args(dev: &Device) {
    use tree_attn::packed::packed_attention_fwd;
    let tree = PackedTree::pack(&[PackNode::root(4), PackNode::child(0, 3)]).unwrap();
    let mask = tree.upload_mask(dev).unwrap();
    let n = tree.num_tokens();
    let q = dev.zeros::<f32>(n * 4 * 64).unwrap();
    let kv = dev.zeros::<f32>(n * 2 * 64).unwrap();
    let mut o = dev.zeros::<f32>(n * 4 * 64).unwrap();
    let mut lse = dev.zeros::<f32>(4 * n).unwrap();
    let mut call = |p: PackedAttentionParams, q_len: usize| {
        let q = q.slice(0..q_len).unwrap();
        packed_attention_fwd(dev, q, &kv, &kv, &mask, &mut o, &mut lse, &p).unwrap_err().to_string()
    };
    let full = n * 4 * 64;
    let e = call(PackedAttentionParams::new(4, 3, 64), full);
    assert!(e.contains("not a multiple of num_kv_heads"), "{e}");
    let e = call(PackedAttentionParams::new(4, 2, 300), full);
    assert!(e.contains("head_dim = 300"), "{e}");
    let e = call(
        PackedAttentionParams { sm_scale: f32::NAN, ..PackedAttentionParams::new(4, 2, 64) },
        full,
    );
    assert!(e.contains("sm_scale"), "{e}");
    let e = call(PackedAttentionParams::new(4, 2, 64), full - 1);
    assert!(e.contains("`q` holds"), "{e}");
    // A mask on another backend is rejected too (the CPU device's mask on a GPU device).
    if dev.kind() != treepo_kernels::BackendKind::Cpu {
        let cpu_mask = tree.upload_mask(&Device::cpu()).unwrap();
        let e = packed_attention_fwd(
            dev,
            &q,
            &kv,
            &kv,
            &cpu_mask,
            &mut o,
            &mut lse,
            &PackedAttentionParams::new(4, 2, 64),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("kv_row_end"), "{e}");
    }
}

fn rejects_invalid_masks(dev: &Device) {
    let err = |ends: &[i32]| TreeMask::upload(dev, ends).unwrap_err().to_string();
    assert!(err(&[]).contains("empty"));
    assert!(err(&[1, 1]).contains("kv_row_end[1] = 1 is outside [2, 2]"), "{}", err(&[1, 1]));
    assert!(err(&[3, 2]).contains("kv_row_end[0] = 3 is outside [1, 2]"));
    assert!(err(&[2, 2, -1]).contains("kv_row_end[2] = -1"));
    // [0, 2) and [1, 3) cross: not a tree.
    let e = err(&[2, 3, 3]);
    assert!(e.contains("crosses an enclosing interval that ends at 2"), "{e}");
    // Nested and disjoint intervals are fine.
    TreeMask::upload(dev, &[4, 3, 3, 4, 5]).unwrap();
}

per_backend!(
    matches_dense_reference,
    skips_fully_masked_tiles,
    chain_tree_equals_causal,
    tree_equals_per_leaf,
    single_token_trees,
    rejects_bad_args,
    rejects_invalid_masks,
);
