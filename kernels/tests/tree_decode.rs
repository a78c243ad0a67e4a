//! Conformance of `ops::tree_decode` (+ `merge_states` with the single-state fast path) against
//! an f64 reference, on every backend, with a hand-written work list that covers every case the
//! planner can produce:
//!
//! ```text
//! A = [0, 48) shared by L0, L1, L2, L4, split into items A0 = [0, 32) and A1 = [32, 48)
//! L0 own [48, 69) (partial last page), 1 row            -> 3 states
//! L1 own [48, 64), 3 rows (segment append, causal)      -> 3 states
//! L2 own chunk empty, its query at position 47 (in A)   -> 2 states
//! L4 own [48, 49), 2 rows at 47 and 48: row 47 sees nothing of its own chunk (empty state)
//! L3 alone [0, 30), 2 rows                              -> 1 state: written directly
//! ```
//!
//! Plan rows map to caller rows through a reversed `row_to_q`; every partial state and the
//! merged outputs are checked. Also: every invariant of `DecodePlanBuffers` is rejected when
//! broken, with a message naming it.

use crate::decode_common::{
    Cache, PagePool, attend_ref, download, dtypes, poisoned, positions, round_to, tols, upload,
};
use treepo_kernels::ops::{
    DecodeParams, DecodePlanBuffers, DecodeWorkHost, SingleRows, WorkItem, merge_states,
    tree_decode,
};
use treepo_kernels::testing::{Rng, Tol, assert_close};
use treepo_kernels::{Device, FloatElement, per_backend};

const PS: usize = 16;

/// The scenario of the module docs: pages, work list, rows.
struct Scenario {
    page_indices: Vec<i32>,
    work: Vec<WorkItem>,
    q_pos: Vec<i32>,
    row_to_q: Vec<i32>,
    partial_indptr: Vec<i32>,
    /// Per plan row, the (page, slot) of every position of its leaf's path.
    paths: Vec<Vec<(usize, usize)>>,
    num_pages: usize,
}

fn item(pages: (usize, usize), kv: (usize, usize), rows: (usize, usize), slot: i32) -> WorkItem {
    WorkItem {
        page_begin: pages.0 as i32,
        page_end: pages.1 as i32,
        kv_start: kv.0 as i32,
        kv_end: kv.1 as i32,
        row_begin: rows.0 as i32,
        row_end: rows.1 as i32,
        slot,
        node: -1,
    }
}

fn scenario(rng: &mut Rng) -> Scenario {
    let num_pages = 16;
    let mut pool = PagePool::new(rng, num_pages);
    let (a, l0, l1, l4, l3) =
        (pool.take(3), pool.take(2), pool.take(1), pool.take(1), pool.take(2));
    // Page list: A | L0 | L1 | L4 | L3.
    let page_indices: Vec<i32> =
        [&a, &l0, &l1, &l4, &l3].iter().flat_map(|p| p.iter().copied()).collect();
    // Rows (plan order): L0 0 | L1 1..4 | L2 4 | L4 5..7 | L3 7..9.
    let work = vec![
        item((0, 2), (0, 32), (0, 7), 0),
        item((2, 3), (32, 48), (0, 7), 1),
        item((3, 5), (48, 69), (0, 1), 2),
        item((5, 6), (48, 64), (1, 4), 2),
        item((6, 7), (48, 49), (5, 7), 2),
        item((7, 9), (0, 30), (7, 9), 0),
    ];
    let q_pos = vec![68, 61, 62, 63, 47, 47, 48, 28, 29];
    let partial_indptr = vec![0, 3, 6, 9, 12, 14, 17, 20, 21, 22];
    let rows = q_pos.len();
    let row_to_q: Vec<i32> = (0..rows as i32).rev().collect();
    let cat = |x: &[i32], y: &[i32]| [x, y].concat();
    let path_of = |pages: Vec<i32>, len: usize| positions(&pages, PS, len);
    let paths = vec![
        path_of(cat(&a, &l0), 69),
        path_of(cat(&a, &l1), 64),
        path_of(cat(&a, &l1), 64),
        path_of(cat(&a, &l1), 64),
        path_of(a.clone(), 48),
        path_of(cat(&a, &l4), 49),
        path_of(cat(&a, &l4), 49),
        path_of(l3.clone(), 30),
        path_of(l3.clone(), 30),
    ];
    Scenario { page_indices, work, q_pos, row_to_q, partial_indptr, paths, num_pages }
}

fn host(s: &Scenario) -> DecodeWorkHost<'_> {
    DecodeWorkHost {
        page_size: PS,
        page_indices: &s.page_indices,
        work: &s.work,
        q_pos: &s.q_pos,
        row_to_q: &s.row_to_q,
        partial_indptr: &s.partial_indptr,
    }
}

fn check<T: FloatElement>(dev: &Device, rng: &mut Rng, hq: usize, hkv: usize, d: usize) {
    let dtype = T::DTYPE;
    let s = scenario(rng);
    let cache = Cache::random(rng, 1, s.num_pages, hkv, PS, d, false, dtype);
    // The tables arrive through `update`: first into a one-item plan's buffers (too small:
    // reallocated), then again in place.
    let tiny = DecodeWorkHost {
        page_size: PS,
        page_indices: &s.page_indices[..1],
        work: &[item((0, 1), (0, 5), (0, 1), 0)],
        q_pos: &[4],
        row_to_q: &[0],
        partial_indptr: &[0, 1],
    };
    let mut plan = DecodePlanBuffers::upload(dev, &tiny, s.num_pages).unwrap();
    plan.update(dev, &host(&s), s.num_pages).unwrap();
    plan.update(dev, &host(&s), s.num_pages).unwrap();
    assert_eq!((plan.num_work(), plan.num_rows(), plan.num_partials()), (6, 9, 22));
    let rows = s.q_pos.len();
    let np = plan.num_partials();
    let q: Vec<f32> =
        rng.normals(rows * hq * d, 1.0).into_iter().map(|x| round_to(dtype, x)).collect();
    let (qb, kv) = (upload::<T>(dev, &q), upload::<T>(dev, &cache.data));
    let mut po = poisoned::<f32>(dev, np * hq * d);
    let mut pl = poisoned::<f32>(dev, np * hq);
    let mut out = poisoned::<T>(dev, rows * hq * d);
    let mut lse = poisoned::<f32>(dev, rows * hq);
    let scale = 1.0 / (d as f32).sqrt();
    let params = DecodeParams { num_qo_heads: hq, layer: 0, sm_scale: scale };
    tree_decode(
        dev,
        &qb,
        &kv,
        &cache.layout,
        &plan,
        &mut po,
        &mut pl,
        &mut out,
        Some(lse.view_mut()),
        &params,
    )
    .unwrap();
    let (to, tl) = tols(dtype);
    let group = hq / hkv;
    let what = format!("tree_decode {dtype} hq={hq} hkv={hkv} d={d}");
    // Every partial state (f32 in every dtype) against the reference restricted to its item.
    let (got_po, got_pl) = (dev.download(&po).unwrap(), dev.download(&pl).unwrap());
    let (got_out, got_lse) = (download(dev, &out), dev.download(&lse).unwrap());
    let part_tol = if dtype == treepo_kernels::DType::F32 {
        to
    } else {
        Tol { atol: to.atol / 2.0, rtol: to.rtol / 2.0 }
    };
    let mut empty_states = 0;
    for w in &s.work {
        for r in w.row_begin as usize..w.row_end as usize {
            let (b, e) = (s.partial_indptr[r] as usize, s.partial_indptr[r + 1] as usize);
            let pos = s.q_pos[r] as usize;
            let keys: Vec<_> = (w.kv_start as usize..w.kv_end as usize)
                .filter(|&t| t <= pos)
                .map(|t| s.paths[r][t])
                .collect();
            empty_states += usize::from(keys.is_empty());
            let c = s.row_to_q[r] as usize;
            for h in 0..hq {
                let qv = &q[(c * hq + h) * d..][..d];
                let (o, l) = attend_ref(&cache, 0, h / group, qv, &keys, scale as f64);
                let (go, gl) = if e - b == 1 {
                    (&got_out[(c * hq + h) * d..][..d], got_lse[c * hq + h])
                } else {
                    let p = b + w.slot as usize;
                    (&got_po[(p * hq + h) * d..][..d], got_pl[p * hq + h])
                };
                let tag = format!("{what} row {r} slot {} head {h}", w.slot);
                assert_close(&format!("{tag} o"), go, &o, if e - b == 1 { to } else { part_tol });
                assert_close(&format!("{tag} lse"), &[gl], &[l], tl);
            }
        }
    }
    assert_eq!(empty_states, 1, "the scenario has exactly one fully masked (row, item) pair");
    // Merge the multi-state rows; single-state rows must stay as tree_decode wrote them.
    let before = got_out.clone();
    merge_states(
        dev,
        &po,
        &pl,
        plan.merge_rows(),
        &mut out,
        Some(lse.view_mut()),
        hq,
        d,
        SingleRows::Skip,
    )
    .unwrap();
    let (got_out, got_lse) = (download(dev, &out), dev.download(&lse).unwrap());
    let (mut want_o, mut want_l) = (vec![0f64; rows * hq * d], vec![0f64; rows * hq]);
    for r in 0..rows {
        let c = s.row_to_q[r] as usize;
        let keys = &s.paths[r][..=s.q_pos[r] as usize];
        for h in 0..hq {
            let (o, l) =
                attend_ref(&cache, 0, h / group, &q[(c * hq + h) * d..][..d], keys, scale as f64);
            want_o[(c * hq + h) * d..][..d].copy_from_slice(&o);
            want_l[c * hq + h] = l;
        }
    }
    let eo = assert_close(&format!("{what} merged out"), &got_out, &want_o, to);
    let el = assert_close(&format!("{what} merged lse"), &got_lse, &want_l, tl);
    for r in 7..9 {
        let c = s.row_to_q[r] as usize;
        let span = (c * hq * d)..((c + 1) * hq * d);
        assert_eq!(
            got_out[span.clone()],
            before[span],
            "{what}: merge touched single-state row {r}"
        );
    }
    eprintln!("{what}: max err merged out {eo:e} lse {el:e}");
}

fn matches_reference(dev: &Device) {
    let mut rng = Rng::fresh("tree_decode");
    for dtype in dtypes(dev) {
        for &(hq, hkv, d) in &[(4, 4, 64), (8, 2, 128), (16, 2, 64), (8, 1, 128)] {
            with_dtype!(dtype, check(dev, &mut rng, hq, hkv, d));
        }
    }
}

fn rejects_bad_plans(dev: &Device) {
    let mut rng = Rng::fresh("tree_decode errors");
    let s = scenario(&mut rng);
    let err = |f: &dyn Fn(&mut Scenario)| {
        let mut t = scenario(&mut Rng::new(7));
        t.page_indices.clone_from(&s.page_indices);
        f(&mut t);
        DecodePlanBuffers::upload(dev, &host(&t), t.num_pages).unwrap_err().to_string()
    };
    type Breaks = Box<dyn Fn(&mut Scenario)>;
    let cases: Vec<(&str, Breaks)> = vec![
        ("`page_indices[0]` = 16 is outside [0, 16)", Box::new(|t| t.page_indices[0] = 16)),
        (
            "work item 2: pages [3, 10) are outside the page list [0, 9)",
            Box::new(|t| t.work[2].page_end = 10),
        ),
        (
            "work item 0: 32 tokens need 2 pages but 3 are listed",
            Box::new(|t| t.work[0].page_end = 3),
        ),
        (
            "work item 1: tokens [49, 48) are not a valid range",
            Box::new(|t| t.work[1].kv_start = 49),
        ),
        (
            "work item 3: rows [4, 4) are empty or outside [0, 9)",
            Box::new(|t| t.work[3].row_begin = 4),
        ),
        (
            "work item 5: rows [7, 10) are empty or outside [0, 9)",
            Box::new(|t| t.work[5].row_end = 10),
        ),
        ("work item 4: slot 5 but row 5 has 3 partial states", Box::new(|t| t.work[4].slot = 5)),
        ("work item 3: slot 2 of row 0 is written twice", Box::new(|t| t.work[3].row_begin = 0)),
        (
            "partial slot 2 of row 5 is never written",
            Box::new(|t| {
                t.work.remove(4);
            }),
        ),
        ("`partial_indptr` is not monotone", Box::new(|t| t.partial_indptr[3] = 2)),
        (
            "row 4 has no partial state",
            Box::new(|t| {
                for v in &mut t.partial_indptr[5..] {
                    *v -= 2;
                }
            }),
        ),
        ("`row_to_q` maps two rows to output row 0", Box::new(|t| t.row_to_q[1] = 0)),
        ("`row_to_q[2]` = 9 is outside [0, 9)", Box::new(|t| t.row_to_q[2] = 9)),
        ("`q_pos[3]` = -1 is negative", Box::new(|t| t.q_pos[3] = -1)),
        ("work item 0: slot -1 is negative", Box::new(|t| t.work[0].slot = -1)),
    ];
    for (want, f) in cases {
        let e = err(&*f);
        assert!(e.contains(want), "expected `{want}`, got: {e}");
    }
    // A rejected update leaves the plan as it was.
    let mut plan = DecodePlanBuffers::upload(dev, &host(&s), s.num_pages).unwrap();
    let mut broken = scenario(&mut Rng::new(7));
    broken.work[0].slot = 9;
    let e = plan.update(dev, &host(&broken), s.num_pages).unwrap_err();
    assert!(e.to_string().contains("work item 0: slot 9"), "{e}");
    assert_eq!((plan.num_work(), plan.num_rows(), plan.num_partials()), (6, 9, 22));
    // Buffers too small for the plan.
    let (hq, d) = (4, 64);
    let cache =
        Cache::random(&mut rng, 1, s.num_pages, 4, PS, d, false, treepo_kernels::DType::F32);
    let kv = dev.upload(&cache.data).unwrap();
    let q = dev.upload(&rng.normals(9 * hq * d, 1.0)).unwrap();
    let mut po = dev.zeros::<f32>(plan.num_partials() * hq * d - 1).unwrap();
    let mut pl = dev.zeros::<f32>(plan.num_partials() * hq).unwrap();
    let mut out = dev.zeros::<f32>(9 * hq * d).unwrap();
    let p = DecodeParams { num_qo_heads: hq, layer: 0, sm_scale: 0.1 };
    let e = tree_decode(dev, &q, &kv, &cache.layout, &plan, &mut po, &mut pl, &mut out, None, &p)
        .unwrap_err();
    assert!(e.to_string().contains("`partial_o` holds"), "{e}");
}

per_backend!(matches_reference, rejects_bad_plans);
