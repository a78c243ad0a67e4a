//! The fast CPU decode twins (`cpu::fast::*`, what the CPU backend runs) against their readable
//! references (`cpu::decode_tile`, `cpu::paged_decode`, `cpu::tree_decode`) and against the f64
//! reference attention, on fresh random inputs with NaN-poisoned outputs:
//!
//! * the tile alone, on every kernel set this CPU runs: query-vector counts around the 8-lane
//!   panels (1, 2, 3, 4, 8, 13, 16, 64, 70, …), head sizes 64, 128, 40 and an odd 20, HND and NHD caches with shuffled pages, ranges with a
//!   partial last page and longer than a block (128 tokens), per-vector limits before the range
//!   (an empty state), inside it (masked tails, in different blocks) and past it;
//! * `paged_decode` and `tree_decode` through their job loops, every output and partial state.
//!
//! Each check reports its maximum absolute error (`cargo test … cpu_fast -- --nocapture`).

use crate::decode_common::{Cache, PagePool, attend_ref, positions};
use treepo_kernels::cpu::decode_tile::{self, Chunk, Gather, KvGeom, Tile};
use treepo_kernels::cpu::fast::decode_tile::{InPlace, Kernels, attend_on};
use treepo_kernels::cpu::{fast, paged_decode, tree_decode};
use treepo_kernels::ops::{PagedKvLayout, WorkItem};
use treepo_kernels::testing::{Rng, Tol, assert_close};
use treepo_kernels::{DType, Element};

const PS: usize = 16;
/// f32 against f64 (sums of up to ~300 products of N(0,1) values).
const TOL_REF: Tol = Tol { atol: 2e-5, rtol: 2e-5 };
/// The fast twin against the reference twin (both f32, different summation orders).
const TOL_TWIN: Tol = Tol { atol: 2e-5, rtol: 2e-5 };

fn geom(l: &PagedKvLayout, layer: usize) -> KvGeom {
    KvGeom {
        layer_base: layer * l.stride_layer,
        stride_page: l.stride_page,
        stride_kv: l.stride_kv,
        stride_head: l.stride_head,
        stride_token: l.stride_token,
        page_size: l.page_size,
        head_dim: l.head_dim,
        num_kv_heads: l.num_kv_heads,
    }
}

fn poison(n: usize) -> Vec<f32> {
    vec![f32::POISON; n]
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// One tile call on kernel set `k`: fast vs reference vs f64 (each max error printed).
#[allow(clippy::too_many_arguments)]
fn tile_case(
    rng: &mut Rng,
    k: Kernels,
    m: usize,
    d: usize,
    nhd: bool,
    start_pages: usize,
    len: usize,
) {
    let hkv = 2;
    let num_pages = (start_pages * PS + len).div_ceil(PS) + 5;
    let cache = Cache::random(rng, 2, num_pages, hkv, PS, d, nhd, DType::F32);
    let mut pool = PagePool::new(rng, num_pages);
    let kv_start = start_pages * PS;
    let kv_end = kv_start + len;
    let pages = pool.take((kv_end - kv_start).div_ceil(PS));
    let (layer, head) = (1, 1);
    let g = geom(&cache.layout, layer);
    let kvh = g.head(&cache.data, head);
    let chunk = Chunk { pages: &pages, kv_start, kv_end };
    let q = rng.normals(m * d, 1.0);
    // Limits: mostly the last position; some before the range, some inside, some past it.
    let lim: Vec<i64> = (0..m)
        .map(|_| match rng.below(6) {
            0 => kv_start as i64 - 1 - rng.below(3) as i64,
            1 | 2 => (kv_start + rng.below(len)) as i64,
            3 => (kv_end + rng.below(5)) as i64,
            _ => kv_end as i64 - 1,
        })
        .collect();
    let scale = (d as f32).powf(-0.5);
    let (mut o_fast, mut l_fast) = (poison(m * d), poison(m));
    let (mut o_ref, mut l_ref) = (poison(m * d), poison(m));
    attend_on(k, &kvh, &chunk, &q, &lim, scale, &mut o_fast, &mut l_fast, &mut Default::default());
    Gather::attend(&kvh, &chunk, &q, &lim, scale, &mut o_ref, &mut l_ref, &mut Default::default());
    let path = positions(&pages, PS, len);
    let (mut want_o, mut want_l) = (Vec::new(), Vec::new());
    for i in 0..m {
        let seen = (lim[i] + 1 - kv_start as i64).clamp(0, len as i64) as usize;
        let (o, l) =
            attend_ref(&cache, layer, head, &q[i * d..(i + 1) * d], &path[..seen], scale as f64);
        want_o.extend(o);
        want_l.push(l);
    }
    let what = format!("tile {k:?} m={m} d={d} nhd={nhd} start={kv_start} len={len}");
    let e_o = assert_close(&format!("{what} o vs f64"), &o_fast, &want_o, TOL_REF);
    let e_l = assert_close(&format!("{what} lse vs f64"), &l_fast, &want_l, TOL_REF);
    let t_o = assert_close(&format!("{what} o vs twin"), &o_fast, &f64s(&o_ref), TOL_TWIN);
    let t_l = assert_close(&format!("{what} lse vs twin"), &l_fast, &f64s(&l_ref), TOL_TWIN);
    println!(
        "{what}: max err vs f64 o {e_o:.1e} lse {e_l:.1e}; vs reference twin o {t_o:.1e} lse {t_l:.1e}"
    );
}

#[test]
fn tile_matches_reference_twin_and_f64() {
    let mut rng = Rng::fresh("cpu_fast tile");
    println!("in-place kernels on this CPU: {}", fast::decode_tile::available());
    // Every kernel set this CPU runs, not only the one `attend` would pick for each `m`: the
    // widths and register-tile remainders (panels 4/2/1, tokens and columns 6/2/1) and the
    // split into groups of at most 64 vectors (m = 129, 200).
    let sets = [Kernels::Reference, Kernels::Rows, Kernels::Avx2, Kernels::Avx512];
    let mut ran = 0;
    for k in sets {
        if !k.available() {
            println!("kernel set {k:?}: not available on this CPU, not tested here");
            continue;
        }
        ran += 1;
        for &m in &[1, 2, 3, 4, 8, 9, 13, 16, 40, 64, 70, 129, 200] {
            // 128: the row tile's 32-column stripes; 40: a stripe and an 8-column tail;
            // 20: not a multiple of 8 (the row tile falls back to the reference).
            for &(d, nhd) in &[(128, false), (64, true), (40, false), (20, false)] {
                let len = 1 + rng.below(300);
                let start = rng.below(3);
                tile_case(&mut rng, k, m, d, nhd, start, len);
            }
        }
        // A range of exactly one block, and one of one token.
        tile_case(&mut rng, k, 16, 128, false, 0, decode_tile::BLOCK);
        tile_case(&mut rng, k, 4, 128, true, 1, 1);
        // Every short length at the demo model's shape (a leaf's GQA pair, d = 32): the row
        // tile's groups of 8 scores, padded exponential and even/odd token accumulators.
        for len in 1..=33 {
            let start = rng.below(2);
            tile_case(&mut rng, k, 2, 32, false, start, len);
        }
    }
    assert!(ran >= 1, "no kernel set ran");
    // What `attend` (the `InPlace` tile) picks, end to end.
    for m in [2, 4, 12, 64] {
        let k = Kernels::for_vectors(m);
        assert!(k.available(), "{k:?} picked for m = {m} but not available");
        tile_case_in_place(&mut rng, m);
    }
}

/// The `InPlace` tile (automatic kernel choice) against the reference twin.
fn tile_case_in_place(rng: &mut Rng, m: usize) {
    let (d, hkv, len): (usize, usize, usize) = (64, 2, 200);
    let num_pages = len.div_ceil(PS) + 3;
    let cache = Cache::random(rng, 1, num_pages, hkv, PS, d, false, DType::F32);
    let mut pool = PagePool::new(rng, num_pages);
    let pages = pool.take(len.div_ceil(PS));
    let g = geom(&cache.layout, 0);
    let kvh = g.head(&cache.data, 1);
    let chunk = Chunk { pages: &pages, kv_start: 0, kv_end: len };
    let q = rng.normals(m * d, 1.0);
    let lim: Vec<i64> = (0..m).map(|_| rng.below(len + 2) as i64 - 1).collect();
    let (mut o, mut l) = (poison(m * d), poison(m));
    let (mut o_ref, mut l_ref) = (poison(m * d), poison(m));
    let mut sc = Default::default();
    InPlace::attend(&kvh, &chunk, &q, &lim, 0.125, &mut o, &mut l, &mut sc);
    Gather::attend(&kvh, &chunk, &q, &lim, 0.125, &mut o_ref, &mut l_ref, &mut Default::default());
    let e = assert_close(&format!("InPlace m={m} o"), &o, &f64s(&o_ref), TOL_TWIN);
    let el = assert_close(&format!("InPlace m={m} lse"), &l, &f64s(&l_ref), TOL_TWIN);
    println!(
        "InPlace m={m} ({:?}): max err vs twin o {e:.1e} lse {el:.1e}",
        Kernels::for_vectors(m)
    );
}

/// The naive decode: several sequences, GQA 4, several query rows (a segment append).
#[test]
fn paged_decode_matches_reference_twin_and_f64() {
    let mut rng = Rng::fresh("cpu_fast paged_decode");
    let (hq, hkv, d) = (8, 2, 128);
    for nhd in [false, true] {
        let lens = [1 + rng.below(40), 100 + rng.below(200), 17];
        let q_rows = [1, 3, 2];
        let total: usize = lens.iter().map(|l| l.div_ceil(PS)).sum();
        let cache = Cache::random(&mut rng, 2, total + 4, hkv, PS, d, nhd, DType::F32);
        let mut pool = PagePool::new(&mut rng, total + 4);
        let (mut indptr, mut indices, mut last, mut q_indptr) = (vec![0], vec![], vec![], vec![0]);
        let mut paths = Vec::new();
        for (&len, &r) in lens.iter().zip(&q_rows) {
            let pages = pool.take(len.div_ceil(PS));
            paths.push(positions(&pages, PS, len));
            indices.extend(&pages);
            indptr.push(indices.len() as i32);
            last.push(((len - 1) % PS + 1) as i32);
            q_indptr.push(q_indptr.last().unwrap() + r);
        }
        let rows = *q_indptr.last().unwrap() as usize;
        let q = rng.normals(rows * hq * d, 1.0);
        let t = paged_decode::PageTableRef {
            indptr: &indptr,
            indices: &indices,
            last_page_len: &last,
            q_indptr: &q_indptr,
        };
        let g = geom(&cache.layout, 1);
        let scale = (d as f32).powf(-0.5);
        let (mut o_fast, mut l_fast) = (poison(rows * hq * d), poison(rows * hq));
        let (mut o_ref, mut l_ref) = (poison(rows * hq * d), poison(rows * hq));
        fast::paged_decode::paged_decode(
            &q,
            &cache.data,
            &g,
            &t,
            hq,
            scale,
            &mut o_fast,
            Some(&mut l_fast),
        );
        paged_decode::paged_decode(
            &q,
            &cache.data,
            &g,
            &t,
            hq,
            scale,
            &mut o_ref,
            Some(&mut l_ref),
        );
        let (mut want_o, mut want_l) = (Vec::new(), Vec::new());
        for (s, path) in paths.iter().enumerate() {
            let (r0, r1) = (q_indptr[s] as usize, q_indptr[s + 1] as usize);
            for r in r0..r1 {
                let seen = path.len() - (r1 - r) + 1;
                for h in 0..hq {
                    let qv = &q[(r * hq + h) * d..][..d];
                    let (o, l) =
                        attend_ref(&cache, 1, h / (hq / hkv), qv, &path[..seen], scale as f64);
                    want_o.extend(o);
                    want_l.push(l);
                }
            }
        }
        let what = format!("paged_decode nhd={nhd}");
        let e_o = assert_close(&format!("{what} out vs f64"), &o_fast, &want_o, TOL_REF);
        let e_l = assert_close(&format!("{what} lse vs f64"), &l_fast, &want_l, TOL_REF);
        let t_o = assert_close(&format!("{what} out vs twin"), &o_fast, &f64s(&o_ref), TOL_TWIN);
        let t_l = assert_close(&format!("{what} lse vs twin"), &l_fast, &f64s(&l_ref), TOL_TWIN);
        println!(
            "{what}: max err vs f64 out {e_o:.1e} lse {e_l:.1e}; vs reference twin out {t_o:.1e} lse {t_l:.1e}"
        );
    }
}

/// The tree decode: a shared prefix split into two items, read by 20 rows (more than one
/// 64-vector tile at GQA 4), each row's own chunk, and one row alone (written straight to the
/// output). Every partial state and output of the fast twin against the reference twin (the
/// ops-level tests check the same kernel against f64 through the merge).
#[test]
fn tree_decode_matches_reference_twin() {
    let mut rng = Rng::fresh("cpu_fast tree_decode");
    let (hq, hkv, d) = (8, 2, 128);
    let prefix = 160 + PS * rng.below(4);
    let leaves = 20;
    let own: Vec<usize> = (0..leaves).map(|_| 1 + rng.below(40)).collect();
    let alone = 1 + rng.below(50);
    let need = prefix / PS + own.iter().map(|l| l.div_ceil(PS)).sum::<usize>() + alone.div_ceil(PS);
    let cache = Cache::random(&mut rng, 1, need + 3, hkv, PS, d, false, DType::F32);
    let mut pool = PagePool::new(&mut rng, need + 3);
    let mut page_indices = pool.take(prefix / PS);
    let item =
        |pb: usize, pe: usize, ks: usize, ke: usize, rb: usize, re: usize, slot: i32| WorkItem {
            page_begin: pb as i32,
            page_end: pe as i32,
            kv_start: ks as i32,
            kv_end: ke as i32,
            row_begin: rb as i32,
            row_end: re as i32,
            slot,
            node: -1,
        };
    let half = prefix / PS / 2;
    let mut work = vec![
        item(0, half, 0, half * PS, 0, leaves, 0),
        item(half, prefix / PS, half * PS, prefix, 0, leaves, 1),
    ];
    let mut q_pos = Vec::new();
    for (r, &l) in own.iter().enumerate() {
        let pb = page_indices.len();
        page_indices.extend(pool.take(l.div_ceil(PS)));
        work.push(item(pb, page_indices.len(), prefix, prefix + l, r, r + 1, 2));
        q_pos.push((prefix + l - 1) as i32);
    }
    let pb = page_indices.len();
    page_indices.extend(pool.take(alone.div_ceil(PS)));
    work.push(item(pb, page_indices.len(), 0, alone, leaves, leaves + 1, 0));
    q_pos.push((alone - 1) as i32);
    let rows = leaves + 1;
    let mut partial_indptr: Vec<i32> = (0..=leaves as i32).map(|r| 3 * r).collect();
    partial_indptr.push(partial_indptr[leaves] + 1);
    let row_to_q: Vec<i32> = (0..rows as i32).rev().collect();
    let p = tree_decode::PlanRef {
        page_indices: &page_indices,
        work: &work,
        q_pos: &q_pos,
        row_to_q: &row_to_q,
        partial_indptr: &partial_indptr,
    };
    let np = partial_indptr[rows] as usize;
    let q = rng.normals(rows * hq * d, 1.0);
    let g = geom(&cache.layout, 0);
    let scale = (d as f32).powf(-0.5);
    let run = |fast_path: bool| {
        let (mut po, mut pl) = (poison(np * hq * d), poison(np * hq));
        let (mut out, mut lse) = (poison(rows * hq * d), poison(rows * hq));
        let dst = tree_decode::TreeOut {
            partial_o: &mut po,
            partial_lse: &mut pl,
            out: &mut out,
            lse: Some(&mut lse),
        };
        if fast_path {
            fast::tree_decode::tree_decode(&q, &cache.data, &g, &p, hq, scale, dst);
        } else {
            tree_decode::tree_decode(&q, &cache.data, &g, &p, hq, scale, dst);
        }
        (po, pl, out, lse)
    };
    let (fpo, fpl, fout, flse) = run(true);
    let (rpo, rpl, rout, rlse) = run(false);
    // The states the plan does not write (the lone row has one state, written to `out`) are
    // unused by both; the written ones must agree, and no written one may be NaN.
    let q_alone = row_to_q[leaves] as usize;
    let used = |i: usize, per: usize| i / per < 3 * leaves;
    let pick = |v: &[f32], per: usize| -> Vec<f32> {
        v.iter().enumerate().filter(|&(i, _)| used(i, per)).map(|(_, &x)| x).collect()
    };
    let out_rows =
        |v: &[f32], per: usize| -> Vec<f32> { v[q_alone * per..(q_alone + 1) * per].to_vec() };
    let checks = [
        ("partial_o", pick(&fpo, hq * d), pick(&rpo, hq * d)),
        ("partial_lse", pick(&fpl, hq), pick(&rpl, hq)),
        ("out (one-state row)", out_rows(&fout, hq * d), out_rows(&rout, hq * d)),
        ("lse (one-state row)", out_rows(&flse, hq), out_rows(&rlse, hq)),
    ];
    for (what, got, want) in checks {
        let e = assert_close(&format!("tree_decode {what} vs twin"), &got, &f64s(&want), TOL_TWIN);
        println!("tree_decode {what}: max err vs reference twin {e:.1e}");
    }
    // The lone row against f64 too.
    let path = positions(&page_indices[pb..], PS, alone);
    let mut want = Vec::new();
    for h in 0..hq {
        let qv = &q[(q_alone * hq + h) * d..][..d];
        want.extend(attend_ref(&cache, 0, h / (hq / hkv), qv, &path, scale as f64).0);
    }
    let e = assert_close("tree_decode lone row vs f64", &out_rows(&fout, hq * d), &want, TOL_REF);
    println!("tree_decode lone row: max err vs f64 {e:.1e}");
}
