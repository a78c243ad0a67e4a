//! `CsrForest` + `TreeDecoder`: an engine's own per-sequence block tables (raw CSR arrays, no
//! node tree) planned as a tree and run on caller-owned memory, per backend, against the dense
//! f64 reference — and every inconsistent table a typed error.
//!
//! The block tables are those tree-kv lays out for random trees (shared full pages, private
//! partial tails), flattened per leaf exactly as an engine without tree support would hand them
//! to FlashInfer; the forest must find the sharing again.

use crate::tree_common::{dense_reference, random_tree, two_level};
use tree_attn::{CsrForest, DecodeError, LeafPageTable, PlanError, PlanKind, TreeDecoder};
use treepo_kernels::ops::PagedKvLayout;
use treepo_kernels::testing::{Rng, Tol, assert_close, poisoned};
use treepo_kernels::{BackendKind, Buffer, Device, per_backend};

fn forest_matches_dense(dev: &Device) {
    let mut rng = Rng::fresh("csr_decoder");
    for case in 0..6 {
        let ps = [4u32, 16][case % 2];
        let tree = if case < 2 {
            two_level(&mut rng, ps, 5, 3 * ps + 1, 7)
        } else {
            random_tree(&mut rng, ps, 3)
        };
        let (hq, hkv, d) = [(4usize, 1usize, 64usize), (2, 2, 128), (8, 2, 64)][case % 3];
        // The engine's view: one CSR row per leaf over its whole path.
        let mut table = LeafPageTable::new();
        table.build_into(&tree.view(), &tree.leaves).unwrap();
        let h = table.host();
        let q_rows: Vec<u32> = tree.leaves.iter().map(|l| l.q_rows).collect();
        let forest =
            CsrForest::from_csr(ps, h.indptr, h.indices, h.last_page_len, Some(&q_rows)).unwrap();
        assert_eq!(forest.num_rows(), tree.rows());
        let layout = PagedKvLayout::nhd(1, tree.num_pages, hkv, ps as usize, d);
        let kv = rng.normals(layout.required_len().unwrap(), 1.0);
        let q = rng.normals(tree.rows() * hq * d, 1.0);
        let scale = 1.0 / (d as f32).sqrt();
        let (want_o, want_l) = dense_reference(&tree, &kv, &layout, 0, &q, hq, scale as f64);
        let mut dec = TreeDecoder::new();
        dec.plan(
            &dev.clone(),
            &forest.view(),
            forest.leaves(),
            PlanKind::Tree,
            hq,
            hkv,
            d,
            tree.num_pages,
        )
        .unwrap();
        assert_eq!(dec.num_rows(), tree.rows());
        // The sharing is recovered: the tree plan reads fewer positions than per-leaf decode
        // whenever a page is shared. Both plans tile a long row range into several work items
        // (rows × group ≤ the query tile), each reading its KV, so the per-leaf reference is the
        // naive plan of the same forest, not the sum of the paths' lengths (a leaf with many
        // query rows is read once per tile by either plan).
        let mut per_leaf = TreeDecoder::new();
        per_leaf
            .plan(
                &dev.clone(),
                &forest.view(),
                forest.leaves(),
                PlanKind::Naive,
                hq,
                hkv,
                d,
                tree.num_pages,
            )
            .unwrap();
        let naive = per_leaf.host_plan().unwrap().tokens_read();
        let paths: u64 = (0..tree.leaves.len())
            .map(|i| {
                let (a, b) = (h.indptr[i] as u64, h.indptr[i + 1] as u64);
                (b - a - 1) * u64::from(ps) + h.last_page_len[i] as u64
            })
            .sum();
        assert!(naive >= paths, "case {case}: the naive plan reads {naive} < the paths' {paths}");
        let read = dec.host_plan().unwrap().tokens_read();
        assert!(read <= naive, "case {case}: tree plan reads {read} > naive {naive}");
        if case < 2 {
            assert!(read < naive, "case {case}: the shared prompt was not found ({read})");
        }
        let tag = format!("csr forest case {case} ps={ps} hq={hq} hkv={hkv} d={d}");
        let (out, lse) = run_on_caller_memory(dev, &mut dec, &q, &kv, &layout, scale, hq * d, hq);
        let e = assert_close(&format!("{tag} out"), &out, &want_o, Tol { atol: 2e-5, rtol: 1e-4 });
        assert_close(&format!("{tag} lse"), &lse, &want_l, Tol { atol: 1e-4, rtol: 1e-5 });
        eprintln!("{tag}: read {read} of {naive} positions, max err {e:e}");
    }
}

/// Runs `dec` with q/kv/out/lse in memory the test owns: host slices on the CPU, device buffers
/// made by the backend otherwise (the wrapping of device pointers is tested in the kernels
/// crate). Outputs are NaN-poisoned first.
#[allow(clippy::too_many_arguments)]
fn run_on_caller_memory(
    dev: &Device,
    dec: &mut TreeDecoder,
    q: &[f32],
    kv: &[f32],
    layout: &PagedKvLayout,
    scale: f32,
    row_width: usize,
    hq: usize,
) -> (Vec<f32>, Vec<f32>) {
    let rows = dec.num_rows();
    if dev.kind() == BackendKind::Cpu {
        let (mut out, mut lse) = (vec![f32::NAN; rows * row_width], vec![f32::NAN; rows * hq]);
        {
            let (qb, kvb) = (Buffer::from_host(q), Buffer::from_host(kv));
            let (mut ob, mut lb) =
                (Buffer::from_host_mut(&mut out), Buffer::from_host_mut(&mut lse));
            dec.run(
                dev,
                qb.view(),
                kvb.view(),
                layout,
                0,
                scale,
                ob.view_mut(),
                Some(lb.view_mut()),
            )
            .unwrap();
        }
        return (out, lse);
    }
    let (qb, kvb) = (dev.upload(q).unwrap(), dev.upload(kv).unwrap());
    let mut ob = poisoned::<f32>(dev, rows * row_width).unwrap();
    let mut lb = poisoned::<f32>(dev, rows * hq).unwrap();
    dec.run(dev, qb.view(), kvb.view(), layout, 0, scale, ob.view_mut(), Some(lb.view_mut()))
        .unwrap();
    (dev.download(&ob).unwrap(), dev.download(&lb).unwrap())
}

per_backend!(forest_matches_dense);

fn csr_err(r: Result<CsrForest, PlanError>, frag: &str) {
    match r {
        Err(e) => assert!(e.to_string().contains(frag), "expected {frag:?} in: {e}"),
        Ok(_) => panic!("expected an error containing {frag:?}"),
    }
}

#[test]
fn bad_block_tables_are_errors() {
    // Both sequences start with physical page 0, full for both: one shared node, 3 in all.
    let ok = CsrForest::from_csr(4, &[0, 2, 4], &[0, 1, 0, 2], &[4, 1], None).unwrap();
    assert_eq!(ok.num_nodes(), 3);
    // Sequence 1 ends inside page 0 (2 of its 4 slots): a partial tail is never shared.
    let ok = CsrForest::from_csr(4, &[0, 2, 3], &[0, 1, 0], &[4, 2], None).unwrap();
    assert_eq!(ok.num_nodes(), 3);
    csr_err(CsrForest::from_csr(3, &[0, 1], &[0], &[1], None), "power of two");
    csr_err(CsrForest::from_csr(4, &[0, 1], &[0], &[1, 1], None), "batch + 1");
    csr_err(CsrForest::from_csr(4, &[1, 2], &[0, 0], &[1], None), "indptr[0]");
    csr_err(CsrForest::from_csr(4, &[0, 3], &[0, 1], &[1], None), "indices holds 2");
    csr_err(CsrForest::from_csr(4, &[0, 2, 1], &[0, 1], &[1, 1], None), "decreases");
    csr_err(CsrForest::from_csr(4, &[0, 0], &[], &[1], None), "holds no page");
    csr_err(
        CsrForest::from_csr(4, &[0, 5, 3], &[0, 1, 2], &[1, 1], None),
        "decreases at sequence 1",
    );
    csr_err(CsrForest::from_csr(4, &[0, 1], &[0], &[0], None), "outside 1..=4");
    csr_err(CsrForest::from_csr(4, &[0, 1], &[0], &[5], None), "outside 1..=4");
    csr_err(CsrForest::from_csr(4, &[0, 1], &[-2], &[1], None), "negative");
    csr_err(CsrForest::from_csr(4, &[0, 1], &[0], &[2], Some(&[3])), "3 query rows");
    csr_err(CsrForest::from_csr(4, &[0, 1], &[0], &[2], Some(&[0])), "0 query rows");
    csr_err(CsrForest::from_csr(4, &[0, 1], &[0], &[2], Some(&[1, 1])), "q_rows holds 2");
}

#[test]
fn decoder_misuse_is_an_error() {
    let dev = Device::cpu();
    let f = CsrForest::from_csr(4, &[0, 2], &[3, 1], &[2], None).unwrap();
    let layout = PagedKvLayout::nhd(1, 4, 1, 4, 8);
    let kv = vec![0.0f32; layout.required_len().unwrap()];
    let q = vec![0.0f32; 2 * 8];
    let mut out = vec![0.0f32; 2 * 8];
    let mut dec = TreeDecoder::new();
    let mut run = |dec: &mut TreeDecoder, layout: &PagedKvLayout| {
        let (qb, kvb) = (Buffer::from_host(&q), Buffer::from_host(&kv));
        let mut ob = Buffer::from_host_mut(&mut out);
        dec.run(&dev, qb.view(), kvb.view(), layout, 0, 1.0, ob.view_mut(), None)
    };
    let msg = |r: Result<(), DecodeError>| r.unwrap_err().to_string();
    assert!(msg(run(&mut dec, &layout)).contains("run before plan"));
    // Page id 3 needs a cache of at least 4 pages.
    let e = dec.plan(&dev, &f.view(), f.leaves(), PlanKind::Tree, 2, 1, 8, 3).unwrap_err();
    assert!(matches!(e, DecodeError::Kernel(_)), "{e}");
    assert!(msg(run(&mut dec, &layout)).contains("run before plan"), "a failed plan unplans");
    let e = dec.plan(&dev, &f.view(), f.leaves(), PlanKind::Tree, 3, 2, 8, 4).unwrap_err();
    assert!(e.to_string().contains("multiple of num_kv_heads"), "{e}");
    dec.plan(&dev, &f.view(), f.leaves(), PlanKind::Tree, 2, 1, 8, 4).unwrap();
    assert!(run(&mut dec, &layout).is_ok());
    let other = PagedKvLayout::nhd(1, 4, 1, 4, 16);
    assert!(msg(run(&mut dec, &other)).contains("plan was made for"));
    // q too short for the planned rows: the kernels' boundary speaks.
    let (qb, kvb) = (Buffer::from_host(&q[..8]), Buffer::from_host(&kv));
    let mut o2 = vec![0.0f32; 16];
    let mut ob = Buffer::from_host_mut(&mut o2);
    let e = dec.run(&dev, qb.view(), kvb.view(), &layout, 0, 1.0, ob.view_mut(), None).unwrap_err();
    assert!(matches!(e, DecodeError::Kernel(_)), "{e}");
    if let Some(cuda) = treepo_kernels::testing::device_or_skip(BackendKind::Cuda) {
        let kvc = cuda.upload(&kv).unwrap();
        let qc = cuda.upload(&q).unwrap();
        let mut oc = cuda.zeros::<f32>(16).unwrap();
        let e = dec.run(&cuda, qc.view(), kvc.view(), &layout, 0, 1.0, oc.view_mut(), None);
        assert!(msg(e).contains("planned on cpu but run on cuda"));
    }
}

/// Random, mostly malformed tables: `from_csr` returns (never panics), and whatever it
/// accepts plans.
#[test]
fn random_tables_never_panic() {
    let mut rng = Rng::fresh("csr_garbage");
    let mut accepted = 0;
    for _ in 0..5000 {
        let small = |rng: &mut Rng| rng.below(9) as i32 - 2;
        let batch = rng.below(4);
        let mut indptr: Vec<i32> = (0..batch + 1 + rng.below(2)).map(|_| small(&mut rng)).collect();
        if rng.below(2) == 0 {
            // Mostly well-formed indptr, so later checks are reached too.
            indptr = (0..=batch)
                .scan(0, |acc, _| {
                    let v = *acc;
                    *acc += rng.below(3) as i32;
                    Some(v)
                })
                .collect();
        }
        let indices: Vec<i32> = (0..rng.below(8)).map(|_| small(&mut rng)).collect();
        let last: Vec<i32> = (0..batch).map(|_| small(&mut rng) + 1).collect();
        let q: Vec<u32> = (0..batch).map(|_| rng.below(3) as u32).collect();
        let q = (rng.below(2) == 0).then_some(q.as_slice());
        if let Ok(f) = CsrForest::from_csr(4, &indptr, &indices, &last, q) {
            accepted += 1;
            tree_attn::plan::plan(
                &f.view(),
                f.leaves(),
                &tree_attn::PlanOptions::new(PlanKind::Tree, 1),
            )
            .unwrap();
        }
    }
    assert!(accepted > 100, "only {accepted} random tables were well formed");
}
