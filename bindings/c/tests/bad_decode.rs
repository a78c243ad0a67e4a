//! Bad inputs to treepo_decoder_plan / _run / _num_rows: each returns its status code and a
//! message naming what is wrong, and touches no memory it was not given.

use std::ptr::{null, null_mut};

use treepo::TreepoStatus::{
    InvalidArgument, InvalidPlan, NotPlanned, NullPointer, UnsupportedDtype,
};
use treepo::*;

use crate::common::*;

/// A message fragment and the edit that breaks a valid run.
type Edit = (&'static str, fn(&mut Run));

const TREE: i32 = TreepoPlanKind::Tree as i32;

/// Plans a broken copy of the forest on a fresh decoder; returns (status, message).
fn plan_broken(edit: impl FnOnce(&mut Forest)) -> (TreepoStatus, String) {
    let mut f = forest();
    edit(&mut f);
    let (dev, dec) = (cpu(), decoder());
    let status = f.plan(dec, dev, TREE, 0);
    let msg = last_error();
    // SAFETY: live handles.
    unsafe {
        treepo_decoder_free(dec);
        treepo_device_free(dev);
    }
    (status, msg)
}

#[track_caller]
fn plan_err(edit: impl FnOnce(&mut Forest), want: TreepoStatus, fragment: &str) {
    let (status, msg) = plan_broken(edit);
    assert_eq!(status, want, "message: {msg}");
    assert!(msg.contains(fragment), "message {msg:?} lacks {fragment:?}");
}

// ---- plan ----

#[test]
fn plan_null_decoder() {
    let f = forest();
    let dev = cpu();
    expect_err(f.plan(null_mut(), dev, TREE, 0), NullPointer, "`dec` is null");
    // SAFETY: live handle.
    unsafe { treepo_device_free(dev) };
}

#[test]
fn plan_null_device() {
    let (f, dec) = (forest(), decoder());
    expect_err(f.plan(dec, null(), TREE, 0), NullPointer, "`dev` is null");
    // SAFETY: live handle.
    unsafe { treepo_decoder_free(dec) };
}

#[test]
fn plan_null_arrays() {
    let s = Setup::new();
    let f = &s.forest;
    let call = |indptr: *const i32, indices: *const i32, last: *const i32| {
        // SAFETY: non-null arrays are valid for their lengths.
        unsafe {
            treepo_decoder_plan(
                s.dec,
                s.dev,
                indptr,
                f.batch(),
                indices,
                f.indices.len(),
                last,
                null(),
                f.num_qo_heads,
                f.num_kv_heads,
                f.head_dim,
                f.page_size,
                f.num_pages,
                TREE,
                0,
            )
        }
    };
    let (p, i, l) = (f.indptr.as_ptr(), f.indices.as_ptr(), f.last_page_len.as_ptr());
    expect_err(call(null(), i, l), NullPointer, "`indptr` is null");
    expect_err(call(p, null(), l), NullPointer, "`indices` is null");
    expect_err(call(p, i, null()), NullPointer, "`last_page_len` is null");
}

#[test]
fn plan_misaligned_indptr() {
    let s = Setup::new();
    let f = &s.forest;
    let words = [0i32; 16];
    let odd = words.as_ptr().wrapping_byte_add(1);
    // SAFETY: the call rejects the misaligned pointer before reading it.
    let status = unsafe {
        treepo_decoder_plan(
            s.dec,
            s.dev,
            odd,
            f.batch(),
            f.indices.as_ptr(),
            f.indices.len(),
            f.last_page_len.as_ptr(),
            null(),
            f.num_qo_heads,
            f.num_kv_heads,
            f.head_dim,
            f.page_size,
            f.num_pages,
            TREE,
            0,
        )
    };
    expect_err(status, InvalidArgument, "not aligned");
}

#[test]
fn plan_indptr_not_monotone() {
    plan_err(|f| f.indptr = vec![0, 3, 2, 8, 9], InvalidPlan, "indptr");
}

#[test]
fn plan_indptr_does_not_start_at_zero() {
    plan_err(|f| f.indptr[0] = 1, InvalidPlan, "indptr");
}

#[test]
fn plan_num_indices_mismatch() {
    plan_err(|f| _ = f.indices.pop(), InvalidPlan, "indptr[4] = 9 but indices holds 8 page ids");
}

#[test]
fn plan_page_id_out_of_range() {
    plan_err(|f| f.indices[7] = 8, InvalidPlan, "indices[7] = 8 is not below num_pages = 8");
}

#[test]
fn plan_negative_page_id() {
    plan_err(|f| f.indices[8] = -1, InvalidPlan, "-1");
}

#[test]
fn plan_last_page_len_zero() {
    plan_err(|f| f.last_page_len[1] = 0, InvalidPlan, "last_page_len");
}

#[test]
fn plan_last_page_len_above_page_size() {
    plan_err(|f| f.last_page_len[1] = 5, InvalidPlan, "last_page_len");
}

#[test]
fn plan_empty_sequence() {
    plan_err(|f| f.indptr = vec![0, 3, 3, 6, 9], InvalidPlan, "");
}

#[test]
fn plan_negative_q_rows() {
    plan_err(|f| f.q_rows = Some(vec![1, -1, 1, 1]), InvalidPlan, "q_rows[1] = -1");
}

#[test]
fn plan_too_many_q_rows() {
    plan_err(|f| f.q_rows = Some(vec![1, 1, 1, 2]), InvalidPlan, "query rows");
}

#[test]
fn plan_unknown_kind() {
    let (f, dev, dec) = (forest(), cpu(), decoder());
    expect_err(f.plan(dec, dev, 9, 0), InvalidArgument, "plan_kind = 9");
    expect_err(f.plan(dec, dev, -1, 0), InvalidArgument, "TreepoPlanKind");
    // SAFETY: live handles.
    unsafe {
        treepo_decoder_free(dec);
        treepo_device_free(dev);
    }
}

#[test]
fn plan_missing_kind_argument() {
    let (f, dev, dec) = (forest(), cpu(), decoder());
    expect_err(f.plan(dec, dev, TreepoPlanKind::TreeFill as i32, 0), InvalidArgument, "plan_arg");
    expect_err(f.plan(dec, dev, TreepoPlanKind::TreeSplit as i32, 0), InvalidArgument, "plan_arg");
    // SAFETY: live handles.
    unsafe {
        treepo_decoder_free(dec);
        treepo_device_free(dev);
    }
}

#[test]
fn plan_heads_not_a_multiple() {
    plan_err(|f| f.num_qo_heads = 3, InvalidArgument, "not a multiple of num_kv_heads");
}

#[test]
fn plan_zero_head_dim() {
    plan_err(|f| f.head_dim = 0, InvalidArgument, "must be > 0");
}

#[test]
fn plan_page_size_not_power_of_two() {
    plan_err(|f| f.page_size = 3, InvalidPlan, "power of two");
}

#[test]
fn failed_plan_forgets_the_previous_one() {
    let mut s = Setup::new();
    let mut f = s.forest.clone();
    f.indices[0] = 99;
    assert_ne!(f.plan(s.dec, s.dev, TREE, 0), TreepoStatus::Ok);
    expect_err(s.run().call(s.dec, s.dev), NotPlanned, "treepo_decoder_plan");
}

// ---- run ----

#[test]
fn run_before_plan() {
    let mut s = Setup::new();
    let fresh = decoder();
    expect_err(s.run().call(fresh, s.dev), NotPlanned, "no plan");
    let mut rows = 0;
    // SAFETY: live handle, writable out.
    expect_err(unsafe { treepo_decoder_num_rows(fresh, &mut rows) }, NotPlanned, "no plan");
    // SAFETY: live handle.
    unsafe { treepo_decoder_free(fresh) };
}

#[test]
fn run_null_handles() {
    let mut s = Setup::new();
    let run = s.run();
    expect_err(run.call(null_mut(), s.dev), NullPointer, "`dec` is null");
    expect_err(run.call(s.dec, null()), NullPointer, "`dev` is null");
    // SAFETY: the null out-pointer is rejected.
    expect_err(unsafe { treepo_decoder_num_rows(s.dec, null_mut()) }, NullPointer, "`rows`");
}

#[test]
fn run_unknown_dtype() {
    let mut s = Setup::new();
    let mut run = s.run();
    run.dtype = 3;
    expect_err(run.call(s.dec, s.dev), InvalidArgument, "dtype = 3 is not a TreepoDtype");
    run.dtype = -7;
    expect_err(run.call(s.dec, s.dev), InvalidArgument, "TreepoDtype");
}

#[test]
fn run_null_buffers() {
    let mut s = Setup::new();
    let base = s.run();
    let cases: [Edit; 4] = [
        ("`q` is null", |r| r.q = null()),
        ("`kv` is null", |r| r.kv = null()),
        ("`out` is null", |r| r.out = null_mut()),
        ("`layout` is null", |r| r.layout = null()),
    ];
    for (fragment, edit) in cases {
        let mut run = s.run();
        edit(&mut run);
        expect_err(run.call(s.dec, s.dev), NullPointer, fragment);
    }
    ok(base.call(s.dec, s.dev));
}

#[test]
fn run_wrong_lengths() {
    let mut s = Setup::new();
    let cases: [Edit; 4] = [
        ("`q_len` = ", |r| r.q_len -= 1),
        ("`out_len` = ", |r| r.out_len -= 8),
        ("`lse_len` = ", |r| r.lse_len += 1),
        ("`kv`: ", |r| r.kv_len -= 1),
    ];
    for (fragment, edit) in cases {
        let mut run = s.run();
        edit(&mut run);
        expect_err(run.call(s.dec, s.dev), InvalidArgument, fragment);
    }
}

#[test]
fn run_layout_mismatch() {
    let mut s = Setup::new();
    let mut other = s.layout;
    other.head_dim = 16;
    let mut run = s.run();
    run.layout = &other;
    expect_err(run.call(s.dec, s.dev), InvalidArgument, "but the plan has");
    let mut fewer = s.layout;
    fewer.num_pages = 4;
    run.layout = &fewer;
    expect_err(run.call(s.dec, s.dev), InvalidArgument, "num_pages = 8");
}

#[test]
fn run_layer_out_of_range() {
    let mut s = Setup::new();
    let mut run = s.run();
    run.layer = 1;
    expect_err(run.call(s.dec, s.dev), InvalidArgument, "layer = 1");
}

#[test]
fn run_bad_strides() {
    let mut s = Setup::new();
    let mut l = s.layout;
    l.page_size = 4;
    l.stride_page = usize::MAX / 2;
    let mut run = s.run();
    run.layout = &l;
    expect_err(run.call(s.dec, s.dev), InvalidArgument, "overflows");
}

#[test]
fn run_non_finite_scale() {
    let mut s = Setup::new();
    let mut run = s.run();
    run.sm_scale = f32::NAN;
    expect_err(run.call(s.dec, s.dev), InvalidArgument, "sm_scale");
}

#[test]
fn run_output_aliases_input() {
    let mut s = Setup::new();
    let mut run = s.run();
    run.out = run.q as *mut _;
    expect_err(run.call(s.dec, s.dev), InvalidArgument, "`out` overlaps `q`");
    let mut run = s.run();
    run.lse = run.out.cast();
    run.lse_len = s.lse.len();
    expect_err(run.call(s.dec, s.dev), InvalidArgument, "`lse` overlaps `out`");
    let mut run = s.run();
    run.out = run.kv.wrapping_byte_add(4) as *mut _;
    expect_err(run.call(s.dec, s.dev), InvalidArgument, "`out` overlaps `kv`");
}

#[test]
fn run_half_precision_on_cpu() {
    let mut s = Setup::new();
    let mut run = s.run();
    run.dtype = TreepoDtype::F16 as i32;
    expect_err(run.call(s.dec, s.dev), UnsupportedDtype, "f16");
}

#[test]
fn run_misaligned_buffer() {
    let mut s = Setup::new();
    let mut run = s.run();
    let floats = vec![0f32; run.q_len + 2];
    run.q = floats.as_ptr().wrapping_byte_add(2).cast();
    expect_err(run.call(s.dec, s.dev), InvalidArgument, "`q`");
}

#[test]
fn run_length_overflow() {
    let mut s = Setup::new();
    let mut run = s.run();
    run.kv_len = usize::MAX / 2;
    expect_err(run.call(s.dec, s.dev), InvalidArgument, "overflow");
}
