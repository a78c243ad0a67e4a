//! Conformance of `packed_attention_bwd` on every backend: gradients against the dense f64
//! reference, packed-tree gradients against per-leaf gradients (Tree Training's gradient
//! restoration), and the CPU reference against central finite differences.

use crate::packed_support::*;
use tree_attn::packed::{
    PackNode, PackedAttentionGrads, PackedAttentionParams, PackedAttentionSaved, PackedTree,
    TreeMask, packed_attention_bwd,
};
use treepo_kernels::testing::{Rng, Tol, assert_close};
use treepo_kernels::{DType, Device, per_backend};

fn grads_match_dense_reference(dev: &Device) {
    let mut rng = Rng::fresh("packed_attention_bwd dense");
    for (hq, hkv) in HEADS {
        // 64 and 128 have tiled CUDA kernels; 32 (the demo model) and 8 run the `_any_` ones.
        for d in [64, 128, 32, 8] {
            let p = PackedAttentionParams::new(hq, hkv, d);
            let trees = 1 + rng.below(3);
            let nodes = bounded_forest(&mut rng, trees, 4, 3, 20, 300);
            let tree = PackedTree::pack(&nodes).unwrap();
            let mask = tree.upload_mask(dev).unwrap();
            let vis = dense_mask(&nodes, &tree);
            for dtype in dtypes(dev) {
                let x = Problem::random(&mut rng, tree.num_tokens(), p, dtype);
                let (want_dq, want_dk, want_dv) = reference_bwd(&x, &vis);
                let r = run_dtype(dev, dtype, &x, &mask, true);
                let (_, t) = tol(dtype);
                let label = format!("{dtype} N={} heads {hq}/{hkv} D={d}", x.n);
                let e1 = assert_close(&format!("{label}: dq"), &r.dq, &want_dq, t);
                let e2 = assert_close(&format!("{label}: dk"), &r.dk, &want_dk, t);
                let e3 = assert_close(&format!("{label}: dv"), &r.dv, &want_dv, t);
                eprintln!("{label}: max err dq {e1:e} dk {e2:e} dv {e3:e}");
            }
        }
    }
}

/// With `do` of packed row `i` split evenly over the `leaves_under_token[i]` leaves through it,
/// the per-leaf gradients (each leaf attended alone, causally) sum to the packed gradients.
fn packed_grads_equal_per_leaf_grads(dev: &Device) {
    let mut rng = Rng::fresh("packed_attention_bwd per-leaf");
    let p = PackedAttentionParams::new(4, 1, 64);
    let nodes = bounded_forest(&mut rng, 2, 3, 3, 16, 200);
    let tree = PackedTree::pack(&nodes).unwrap();
    let mask = tree.upload_mask(dev).unwrap();
    let x = Problem::random(&mut rng, tree.num_tokens(), p, DType::F32);
    let packed = run_dtype(dev, DType::F32, &x, &mask, true);
    let (rq, rkv) = (p.num_qo_heads * p.head_dim, p.num_kv_heads * p.head_dim);
    let mut dq = vec![0f64; packed.dq.len()];
    let mut dk = vec![0f64; packed.dk.len()];
    let mut dv = vec![0f64; packed.dv.len()];
    for leaf in 0..tree.num_leaves() {
        let idx = tree.leaf_tokens(leaf);
        let mut d_o = gather_rows(&x.d_o, idx, rq);
        for (r, &t) in idx.iter().enumerate() {
            let share = 1.0 / tree.leaves_under_token()[t as usize] as f32;
            d_o[r * rq..(r + 1) * rq].iter_mut().for_each(|v| *v *= share);
        }
        let leaf_x = Problem {
            n: idx.len(),
            p,
            q: gather_rows(&x.q, idx, rq),
            k: gather_rows(&x.k, idx, rkv),
            v: gather_rows(&x.v, idx, rkv),
            d_o,
        };
        let chain = TreeMask::upload(dev, &vec![idx.len() as i32; idx.len()]).unwrap();
        let alone = run_dtype(dev, DType::F32, &leaf_x, &chain, true);
        for (r, &t) in idx.iter().enumerate() {
            let t = t as usize;
            for e in 0..rq {
                dq[t * rq + e] += alone.dq[r * rq + e] as f64;
            }
            for e in 0..rkv {
                dk[t * rkv + e] += alone.dk[r * rkv + e] as f64;
                dv[t * rkv + e] += alone.dv[r * rkv + e] as f64;
            }
        }
    }
    let t = Tol { atol: 1e-4, rtol: 1e-4 };
    let e1 = assert_close("packed dq vs sum of per-leaf dq", &packed.dq, &dq, t);
    let e2 = assert_close("packed dk vs sum of per-leaf dk", &packed.dk, &dk, t);
    let e3 = assert_close("packed dv vs sum of per-leaf dv", &packed.dv, &dv, t);
    eprintln!(
        "per-leaf identity ({} leaves): max err dq {e1:e} dk {e2:e} dv {e3:e}",
        tree.num_leaves()
    );
}

fn single_token_and_masked_tiles(dev: &Device) {
    let mut rng = Rng::fresh("packed_attention_bwd masked tiles");
    // One-token trees (P = 1: dq = dk = 0, dv = do summed over the group) next to a tree whose
    // two long children make empty and full tiles.
    let mut nodes = vec![PackNode::root(1), PackNode::root(1)];
    nodes.extend([PackNode::root(40), PackNode::child(2, 50), PackNode::child(2, 45)]);
    nodes.push(PackNode::root(1));
    let tree = PackedTree::pack(&nodes).unwrap();
    let mask = tree.upload_mask(dev).unwrap();
    let vis = dense_mask(&nodes, &tree);
    let p = PackedAttentionParams::new(8, 2, 64);
    for dtype in dtypes(dev) {
        let x = Problem::random(&mut rng, tree.num_tokens(), p, dtype);
        let (want_dq, want_dk, want_dv) = reference_bwd(&x, &vis);
        let r = run_dtype(dev, dtype, &x, &mask, true);
        let (_, t) = tol(dtype);
        assert_close(&format!("masked tiles {dtype}: dq"), &r.dq, &want_dq, t);
        assert_close(&format!("masked tiles {dtype}: dk"), &r.dk, &want_dk, t);
        assert_close(&format!("masked tiles {dtype}: dv"), &r.dv, &want_dv, t);
    }
}

fn rejects_bad_args(dev: &Device) {
    let tree = PackedTree::pack(&[PackNode::root(3), PackNode::child(0, 2)]).unwrap();
    let mask = tree.upload_mask(dev).unwrap();
    let n = tree.num_tokens();
    let p = PackedAttentionParams::new(2, 1, 64);
    let x = dev.zeros::<f32>(n * 2 * 64).unwrap();
    let kv = dev.zeros::<f32>(n * 64).unwrap();
    let lse = dev.zeros::<f32>(2 * n).unwrap();
    let mut dq = dev.zeros::<f32>(n * 2 * 64).unwrap();
    let mut dk = dev.zeros::<f32>(n * 64 - 1).unwrap();
    let mut dv = dev.zeros::<f32>(n * 64).unwrap();
    let mut delta = dev.zeros::<f32>(2 * n).unwrap();
    let saved = PackedAttentionSaved {
        q: x.view(),
        k: kv.view(),
        v: kv.view(),
        o: x.view(),
        lse: lse.view(),
    };
    let grads = PackedAttentionGrads {
        dq: dq.view_mut(),
        dk: dk.view_mut(),
        dv: dv.view_mut(),
        delta: delta.view_mut(),
    };
    let e = packed_attention_bwd(dev, saved, &x, &mask, grads, &p).unwrap_err().to_string();
    assert!(e.contains("`dk` holds"), "{e}");
    let short_lse = lse.slice(0..n).unwrap();
    let saved = PackedAttentionSaved { lse: short_lse, ..saved };
    let grads = PackedAttentionGrads {
        dq: dq.view_mut(),
        dk: dv.view_mut(),
        dv: dk.slice_mut(0..0).unwrap(),
        delta: delta.view_mut(),
    };
    let e = packed_attention_bwd(dev, saved, &x, &mask, grads, &p).unwrap_err().to_string();
    assert!(e.contains("`lse` holds"), "{e}");
}

per_backend!(
    grads_match_dense_reference,
    packed_grads_equal_per_leaf_grads,
    single_token_and_masked_tiles,
    rejects_bad_args,
);

/// The CPU reference's gradients against central finite differences of
/// `L = Σ w ⊙ o` (so `do = w`), on a small random forest.
#[test]
fn cpu_grads_match_finite_differences() {
    let dev = Device::cpu();
    let mut rng = Rng::fresh("packed_attention_bwd finite differences");
    let nodes = random_forest(&mut rng, 2, 3, 2, 4);
    let tree = PackedTree::pack(&nodes).unwrap();
    let mask = tree.upload_mask(&dev).unwrap();
    let p = PackedAttentionParams::new(2, 1, 8);
    let x = Problem::random(&mut rng, tree.num_tokens(), p, DType::F32);
    let r = run_dtype(&dev, DType::F32, &x, &mask, true);
    let loss = |x: &Problem| -> f64 {
        let o = run_dtype(&dev, DType::F32, x, &mask, false).o;
        o.iter().zip(&x.d_o).map(|(&a, &b)| a as f64 * b as f64).sum()
    };
    let h = 1e-2f32;
    let (mut got, mut want) = (Vec::new(), Vec::new());
    for which in 0..3 {
        let len = if which == 0 { x.q.len() } else { x.k.len() };
        for _ in 0..12 {
            let at = rng.below(len);
            let bump = |delta: f32| {
                let mut y = x.clone();
                let t = match which {
                    0 => &mut y.q,
                    1 => &mut y.k,
                    _ => &mut y.v,
                };
                t[at] += delta;
                loss(&y)
            };
            want.push((bump(h) - bump(-h)) / (2.0 * h as f64));
            got.push([&r.dq, &r.dk, &r.dv][which][at]);
        }
    }
    let e = assert_close(
        "CPU gradients vs finite differences",
        &got,
        &want,
        Tol { atol: 2e-3, rtol: 1e-2 },
    );
    eprintln!("finite differences over {} tokens: max err {e:e}", tree.num_tokens());
}
