//! Bad inputs to the device, layout and merge_states functions, and (where a CUDA device
//! exists) device pointers that are not device memory.

use std::ptr::{null, null_mut};

use treepo::TreepoStatus::{
    BackendUnavailable, InvalidArgument, InvalidPlan, NullPointer, UnsupportedDtype,
};
use treepo::*;

use crate::common::*;

// ---- decoder options ----

#[test]
fn set_min_shared_null_decoder() {
    // SAFETY: the null handle is rejected.
    expect_err(unsafe { treepo_decoder_set_min_shared(null_mut(), 64) }, NullPointer, "`dec`");
}

// ---- devices ----

#[test]
fn device_null_out() {
    // SAFETY: the null out-pointer is rejected.
    expect_err(unsafe { treepo_device_cpu(null_mut()) }, NullPointer, "`out` is null");
    // SAFETY: as above.
    expect_err(unsafe { treepo_device_cuda(0, null_mut()) }, NullPointer, "`out` is null");
}

#[test]
fn device_negative_ordinal() {
    let mut dev = null_mut();
    // SAFETY: `dev` is writable.
    expect_err(unsafe { treepo_device_cuda(-1, &mut dev) }, InvalidArgument, "ordinal = -1");
    assert!(dev.is_null());
}

#[test]
fn device_missing_cuda_ordinal() {
    let mut dev = null_mut();
    // SAFETY: `dev` is writable.
    let status = unsafe { treepo_device_cuda(1000, &mut dev) };
    let msg = last_error();
    assert!(
        matches!(status, BackendUnavailable | InvalidArgument | TreepoStatus::DeviceError),
        "{status:?}: {msg}"
    );
    assert!(msg.contains("cuda") || msg.contains("CUDA"), "{msg}");
    assert!(dev.is_null());
}

#[test]
fn device_stream_on_cpu() {
    let cpu_dev = cpu();
    let mut dev = null_mut();
    // SAFETY: live base, writable out; the CPU base is rejected before the stream is used.
    let status = unsafe { treepo_device_with_cuda_stream(cpu_dev, null_mut(), &mut dev) };
    expect_err(status, InvalidArgument, "only a CUDA device takes a stream");
    // SAFETY: null base is rejected.
    let status = unsafe { treepo_device_with_cuda_stream(null(), null_mut(), &mut dev) };
    expect_err(status, NullPointer, "`base` is null");
    // SAFETY: live handle.
    unsafe { treepo_device_free(cpu_dev) };
}

#[test]
fn device_synchronize_null_and_free_null() {
    // SAFETY: null is rejected / ignored.
    expect_err(unsafe { treepo_device_synchronize(null()) }, NullPointer, "`dev` is null");
    // SAFETY: freeing null is a no-op.
    unsafe {
        treepo_device_free(null_mut());
        treepo_decoder_free(null_mut());
    }
    // SAFETY: null out-pointer is rejected.
    expect_err(unsafe { treepo_decoder_new(null_mut()) }, NullPointer, "`out` is null");
}

// ---- layouts ----

fn layout(kind: i32, dims: [usize; 5]) -> (TreepoStatus, String) {
    let mut l = std::mem::MaybeUninit::uninit();
    // SAFETY: `l` is writable.
    let s = unsafe {
        treepo_kv_layout(kind, dims[0], dims[1], dims[2], dims[3], dims[4], l.as_mut_ptr())
    };
    (s, last_error())
}

#[test]
fn layout_unknown_kind() {
    let (s, msg) = layout(2, [1, 8, 2, 4, 8]);
    assert_eq!(s, InvalidArgument);
    assert!(msg.contains("kind = 2 is not a TreepoKvLayoutKind"), "{msg}");
}

#[test]
fn layout_page_size_not_power_of_two() {
    let (s, msg) = layout(0, [1, 8, 2, 6, 8]);
    assert_eq!(s, InvalidArgument);
    assert!(msg.contains("power of two"), "{msg}");
}

#[test]
fn layout_overflow() {
    let (s, msg) = layout(1, [usize::MAX / 4, 8, 2, 4, 8]);
    assert_eq!(s, InvalidArgument);
    assert!(msg.contains("overflow"), "{msg}");
}

#[test]
fn layout_null_pointers() {
    // SAFETY: the null out-pointer is rejected.
    let s = unsafe { treepo_kv_layout(0, 1, 8, 2, 4, 8, null_mut()) };
    expect_err(s, NullPointer, "`out` is null");
    let mut n = 0;
    // SAFETY: null layout is rejected.
    expect_err(unsafe { treepo_kv_layout_required_len(null(), &mut n) }, NullPointer, "`layout`");
    let l = forest().layout(TreepoKvLayoutKind::Hnd, 1);
    // SAFETY: null out is rejected.
    expect_err(unsafe { treepo_kv_layout_required_len(&l, null_mut()) }, NullPointer, "`len`");
}

// ---- merge_states ----

/// Valid merge arguments: 2 rows merging states 0..2 and 2..3, 2 heads of 4.
struct Merge {
    dev: *mut TreepoDevice,
    dtype: i32,
    o: Vec<f32>,
    l: Vec<f32>,
    num_states: usize,
    indptr: Vec<i32>,
    out_rows: Option<Vec<i32>>,
    heads: usize,
    head_dim: usize,
    out: Vec<f32>,
}

impl Merge {
    fn new() -> Merge {
        Merge {
            dev: cpu(),
            dtype: 0,
            o: values(3 * 2 * 4, 5),
            l: values(3 * 2, 6),
            num_states: 3,
            indptr: vec![0, 2, 3],
            out_rows: None,
            heads: 2,
            head_dim: 4,
            out: vec![0.0; 2 * 2 * 4],
        }
    }
    fn call_with(&mut self, o: *const f32, out: *mut f32) -> TreepoStatus {
        let rows = self.indptr.len() - 1;
        let out_rows = self.out_rows.as_ref().map_or(null(), |r| r.as_ptr());
        // SAFETY: arrays valid for the shapes passed, except what the test breaks on purpose.
        unsafe {
            treepo_merge_states(
                self.dev,
                self.dtype,
                o,
                self.l.as_ptr(),
                self.num_states,
                self.indptr.as_ptr(),
                rows,
                out_rows,
                self.heads,
                self.head_dim,
                out.cast(),
                null_mut(),
            )
        }
    }
    fn call(&mut self) -> TreepoStatus {
        let (o, out) = (self.o.as_ptr(), self.out.as_mut_ptr());
        self.call_with(o, out)
    }
}

impl Drop for Merge {
    fn drop(&mut self) {
        // SAFETY: live handle.
        unsafe { treepo_device_free(self.dev) };
    }
}

#[test]
fn merge_valid_baseline() {
    ok(Merge::new().call());
}

#[test]
fn merge_null_device_and_buffers() {
    let mut m = Merge::new();
    let (dev, out) = (m.dev, m.out.as_mut_ptr());
    m.dev = null_mut();
    expect_err(m.call(), NullPointer, "`dev` is null");
    m.dev = dev;
    expect_err(m.call_with(null(), out), NullPointer, "`partial_o` is null");
    let o = m.o.as_ptr();
    expect_err(m.call_with(o, null_mut()), NullPointer, "`out` is null");
}

#[test]
fn merge_unknown_dtype() {
    let mut m = Merge::new();
    m.dtype = 5;
    expect_err(m.call(), InvalidArgument, "dtype = 5");
}

#[test]
fn merge_states_count_mismatch() {
    let mut m = Merge::new();
    m.num_states = 4;
    expect_err(m.call(), InvalidArgument, "indptr[num_rows] = 3 but num_states = 4");
}

#[test]
fn merge_indptr_decreasing() {
    let mut m = Merge::new();
    m.indptr = vec![0, 4, 3];
    expect_err(m.call(), InvalidArgument, "indptr");
}

#[test]
fn merge_out_rows_not_a_permutation() {
    let mut m = Merge::new();
    m.out_rows = Some(vec![1, 1]);
    expect_err(m.call(), InvalidArgument, "out_rows");
}

#[test]
fn merge_zero_heads() {
    let mut m = Merge::new();
    m.heads = 0;
    expect_err(m.call(), InvalidArgument, "heads and head_dim must be > 0");
}

#[test]
fn merge_output_aliases_input() {
    let mut m = Merge::new();
    let o = m.o.as_mut_ptr();
    expect_err(m.call_with(o, o), InvalidArgument, "`out` overlaps `partial_o`");
}

#[test]
fn merge_bf16_on_cpu() {
    let mut m = Merge::new();
    m.dtype = TreepoDtype::Bf16 as i32;
    expect_err(m.call(), UnsupportedDtype, "bf16");
}

// ---- CUDA (runs where a CUDA device opens; TREEPO_REQUIRE_CUDA=1 makes its absence fail) ----

fn cuda() -> Option<*mut TreepoDevice> {
    let mut dev = null_mut();
    // SAFETY: `dev` is writable.
    match unsafe { treepo_device_cuda(0, &mut dev) } {
        TreepoStatus::Ok => Some(dev),
        _ if std::env::var_os("TREEPO_REQUIRE_CUDA").is_some_and(|v| v == "1") => {
            panic!("TREEPO_REQUIRE_CUDA=1 but no CUDA device: {}", last_error())
        }
        _ => {
            eprintln!("SKIP cuda: {}", last_error());
            None
        }
    }
}

#[test]
fn cuda_pointer_outside_any_allocation() {
    let Some(dev) = cuda() else { return };
    let f = forest();
    let dec = decoder();
    ok(f.plan(dec, dev, TreepoPlanKind::Tree as i32, 0));
    let layout = f.layout(TreepoKvLayoutKind::Nhd, 1);
    // Host memory is not device memory: from_cuda_ptr must reject it, not launch on it.
    let q = values(f.rows() * f.num_qo_heads * f.head_dim, 1);
    let kv = values(layout.num_pages * layout.stride_page, 2);
    let (mut out, mut lse) = (vec![0.0; q.len()], vec![0.0; f.rows() * f.num_qo_heads]);
    let run = Run::f32(&q, &kv, &layout, &mut out, &mut lse);
    expect_err(run.call(dec, dev), InvalidArgument, "`q`");
    // A decoder planned on CUDA cannot run on the CPU device, and vice versa.
    let cpu_dev = cpu();
    expect_err(run.call(dec, cpu_dev), InvalidArgument, "planned on the cuda device");
    // SAFETY: live handles.
    unsafe {
        treepo_decoder_free(dec);
        treepo_device_free(cpu_dev);
        treepo_device_free(dev);
    }
}

#[test]
fn cuda_plan_rejects_bad_tables_too() {
    let Some(dev) = cuda() else { return };
    let mut f = forest();
    f.indices[0] = 100;
    let dec = decoder();
    assert_eq!(f.plan(dec, dev, TreepoPlanKind::Tree as i32, 0), InvalidPlan, "{}", last_error());
    // SAFETY: live handles.
    unsafe {
        treepo_decoder_free(dec);
        treepo_device_free(dev);
    }
}
