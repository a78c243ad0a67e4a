//! Valid calls: tree decode on the CPU against the dense reference, for every plan kind, both
//! standard layouts, explicit strides, segment appends and a second layer; merge_states; the
//! version and status names.

use std::ffi::CStr;

use treepo::*;

use crate::common::*;

fn max_err(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Plans `f` with `kind` (and `min_shared`), runs layer `layer` of `layout` and checks out and
/// lse.
#[allow(clippy::too_many_arguments)]
fn check(
    f: &Forest,
    kind: TreepoPlanKind,
    arg: u32,
    min_shared: u32,
    layout: &TreepoKvLayout,
    kv_len: usize,
    layer: usize,
) {
    let (dev, dec) = (cpu(), decoder());
    // SAFETY: live handle.
    ok(unsafe { treepo_decoder_set_min_shared(dec, min_shared) });
    ok(f.plan(dec, dev, kind as i32, arg));
    let mut rows = 0;
    // SAFETY: live handle, writable out.
    ok(unsafe { treepo_decoder_num_rows(dec, &mut rows) });
    assert_eq!(rows, f.rows());
    let n = rows * f.num_qo_heads * f.head_dim;
    let (q, kv) = (values(n, 7), values(kv_len, 8));
    let (mut out, mut lse) = (vec![f32::NAN; n], vec![f32::NAN; rows * f.num_qo_heads]);
    let mut run = Run::f32(&q, &kv, layout, &mut out, &mut lse);
    run.layer = layer;
    ok(run.call(dec, dev));
    let (want_o, want_l) = f.reference(layout, &kv, &q, layer, run.sm_scale);
    assert!(max_err(&out, &want_o) < 1e-5, "{kind:?}: out err {}", max_err(&out, &want_o));
    assert!(max_err(&lse, &want_l) < 1e-4, "{kind:?}: lse err {}", max_err(&lse, &want_l));
    // SAFETY: live handles, not used after.
    unsafe {
        treepo_decoder_free(dec);
        treepo_device_free(dev);
    }
}

const KINDS: [(TreepoPlanKind, u32); 5] = [
    (TreepoPlanKind::Naive, 0),
    (TreepoPlanKind::Cascade, 0),
    (TreepoPlanKind::Tree, 0),
    (TreepoPlanKind::TreeSplit, 4),
    (TreepoPlanKind::TreeFill, 2),
];

#[test]
fn every_kind_and_layout_matches_reference() {
    let f = forest();
    for layout_kind in [TreepoKvLayoutKind::Nhd, TreepoKvLayoutKind::Hnd] {
        let layout = f.layout(layout_kind, 1);
        let kv_len = layout.num_pages * layout.stride_page;
        for (kind, arg) in KINDS {
            check(&f, kind, arg, 0, &layout, kv_len, 0);
        }
        // Short shared nodes folded (two pages), every node folded.
        for min_shared in [2 * f.page_size as u32, u32::MAX] {
            check(&f, TreepoPlanKind::Tree, 0, min_shared, &layout, kv_len, 0);
        }
    }
}

#[test]
fn segment_append_on_second_layer_with_padded_strides() {
    let mut f = forest();
    f.q_rows = Some(vec![1, 2, 1, 1]);
    // NHD with each token padded to 24 values, each page padded by 8 and a layer gap of 16:
    // a view into someone else's bigger tensor.
    let (ps, h, d, pages) = (f.page_size, f.num_kv_heads, f.head_dim, f.num_pages);
    let stride_token = 24;
    let stride_kv = ps * stride_token;
    let stride_page = 2 * stride_kv + 8;
    let layout = TreepoKvLayout {
        num_layers: 2,
        num_pages: pages,
        num_kv_heads: h,
        page_size: ps,
        head_dim: d,
        stride_layer: pages * stride_page + 16,
        stride_page,
        stride_kv,
        stride_head: d,
        stride_token,
    };
    let mut kv_len = 0;
    // SAFETY: valid pointers.
    ok(unsafe { treepo_kv_layout_required_len(&layout, &mut kv_len) });
    for (kind, arg) in KINDS {
        check(&f, kind, arg, 0, &layout, kv_len, 1);
    }
}

#[test]
fn replanning_reuses_the_decoder() {
    let mut s = Setup::new();
    let run = s.run();
    ok(run.call(s.dec, s.dev));
    let mut g = s.forest.clone();
    g.q_rows = Some(vec![2, 1, 1, 1]);
    ok(g.plan(s.dec, s.dev, TreepoPlanKind::TreeFill as i32, 3));
    let n = g.rows() * g.num_qo_heads * g.head_dim;
    let q = values(n, 11);
    let (mut out, mut lse) = (vec![0.0; n], vec![0.0; g.rows() * g.num_qo_heads]);
    let run = Run::f32(&q, &s.kv, &s.layout, &mut out, &mut lse);
    ok(run.call(s.dec, s.dev));
    let (want, _) = g.reference(&s.layout, &s.kv, &q, 0, run.sm_scale);
    assert!(max_err(&out, &want) < 1e-5);
}

#[test]
fn lse_is_optional() {
    let mut s = Setup::new();
    let mut run = s.run();
    run.lse = std::ptr::null_mut();
    run.lse_len = 0;
    ok(run.call(s.dec, s.dev));
    let (want, _) = s.forest.reference(&s.layout, &s.kv, &s.q, 0, run.sm_scale);
    assert!(max_err(&s.out, &want) < 1e-5);
}

#[test]
fn merge_states_matches_formula() {
    let (heads, d) = (3, 4);
    // Row 0 merges states 0..2, row 1 has state 2 alone, row 2 merges 3..6 incl. an empty one;
    // rows are written in the order 2, 0, 1.
    let indptr = [0, 2, 3, 6];
    let out_rows = [2, 0, 1];
    let o = values(6 * heads * d, 3);
    let mut l = values(6 * heads, 4);
    l[4 * heads + 1] = f32::NEG_INFINITY;
    let (mut out, mut lse) = (vec![0.0f32; 3 * heads * d], vec![0.0f32; 3 * heads]);
    let dev = cpu();
    // SAFETY: every array is valid for its shape.
    ok(unsafe {
        treepo_merge_states(
            dev,
            TreepoDtype::F32 as i32,
            o.as_ptr(),
            l.as_ptr(),
            6,
            indptr.as_ptr(),
            3,
            out_rows.as_ptr(),
            heads,
            d,
            out.as_mut_ptr().cast(),
            lse.as_mut_ptr(),
        )
    });
    for r in 0..3 {
        let dst = out_rows[r] as usize;
        for h in 0..heads {
            let states: Vec<usize> = (indptr[r] as usize..indptr[r + 1] as usize).collect();
            let m =
                states.iter().map(|&s| l[s * heads + h] as f64).fold(f64::NEG_INFINITY, f64::max);
            let z: f64 = states.iter().map(|&s| (l[s * heads + h] as f64 - m).exp()).sum();
            assert!((lse[dst * heads + h] as f64 - (m + z.ln())).abs() < 1e-5);
            for x in 0..d {
                let want: f64 = states
                    .iter()
                    .filter(|&&s| l[s * heads + h] > f32::NEG_INFINITY)
                    .map(|&s| {
                        (l[s * heads + h] as f64 - m).exp() * o[(s * heads + h) * d + x] as f64
                    })
                    .sum::<f64>()
                    / z;
                assert!((out[(dst * heads + h) * d + x] as f64 - want).abs() < 1e-5);
            }
        }
    }
    // SAFETY: live handle.
    unsafe { treepo_device_free(dev) };
}

#[test]
fn version_and_status_names() {
    // SAFETY: static NUL-terminated strings.
    let v = unsafe { CStr::from_ptr(treepo_version()) }.to_str().unwrap();
    assert_eq!(v, env!("CARGO_PKG_VERSION"));
    // SAFETY: as above.
    let name = |s: i32| unsafe { CStr::from_ptr(treepo_status_name(s)) }.to_str().unwrap();
    assert_eq!(name(TreepoStatus::NotPlanned as i32), "TREEPO_STATUS_NOT_PLANNED");
    assert_eq!(name(99), "(not a TreepoStatus)");
    // A successful call clears the message.
    let dev = cpu();
    assert_eq!(last_error(), "");
    // SAFETY: live handle.
    unsafe { treepo_device_free(dev) };
}
