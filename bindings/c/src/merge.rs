//! `merge_states`: combine attention states (o, lse) computed over disjoint KV sets.

use std::ffi::c_void;

use treepo_kernels::ops::{self, MergeRows, SingleRows};
use treepo_kernels::{Device, FloatElement, bf16, f16};

use crate::device::TreepoDevice;
use crate::enums::TreepoDtype;
use crate::error::{FfiError, TreepoStatus, ensure, guard};
use crate::handle;
use crate::memory::{Region, host_slice, wrap};

/// Merges attention states on caller memory of `dev`: for each row `r`, states
/// `indptr[r]..indptr[r+1]` of `partial_o [num_states, heads, head_dim]` (f32) and
/// `partial_lse [num_states, heads]` (f32, natural log; `-inf` = empty state, its `o` unread)
/// become output row `out_rows[r]` (null: `r`) of `out [num_rows, heads, head_dim]` (`dtype`)
/// and, if non-null, `lse [num_rows, heads]`:
/// `o = sum e^(lse_i - M) o_i / sum e^(lse_i - M)`, `lse = M + ln sum e^(lse_i - M)`.
/// `indptr [num_rows + 1]` and `out_rows [num_rows]` are host arrays; `indptr[num_rows]` must
/// equal `num_states`. On CUDA the work is enqueued on `dev`'s stream.
///
/// # Safety
/// `dev` null or live; each non-null pointer valid for its shape (device memory of `dev` for
/// partial_o/partial_lse/out/lse until the work finishes; host memory for indptr/out_rows).
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn treepo_merge_states(
    dev: *const TreepoDevice,
    dtype: i32,
    partial_o: *const f32,
    partial_lse: *const f32,
    num_states: usize,
    indptr: *const i32,
    num_rows: usize,
    out_rows: *const i32,
    heads: usize,
    head_dim: usize,
    out: *mut c_void,
    lse: *mut f32,
) -> TreepoStatus {
    guard(|| {
        // SAFETY: null/misaligned is rejected; otherwise a live handle (caller's contract).
        let dev = unsafe { handle::get("dev", dev) }?;
        let dtype = TreepoDtype::from_raw(dtype)?;
        ensure!(heads > 0 && head_dim > 0, "heads and head_dim must be > 0");
        ensure!(num_rows < i32::MAX as usize, "num_rows = {num_rows} is too large");
        // SAFETY: host arrays valid for reads of their lengths (caller's contract).
        let indptr = unsafe { host_slice("indptr", indptr, num_rows + 1) }?;
        let out_rows = if out_rows.is_null() {
            None
        } else {
            // SAFETY: as above.
            Some(unsafe { host_slice("out_rows", out_rows, num_rows) }?)
        };
        let last = indptr[num_rows];
        ensure!(
            usize::try_from(last).is_ok_and(|l| l == num_states),
            "indptr[num_rows] = {last} but num_states = {num_states}"
        );
        let rows = MergeRows::upload(&dev.dev, indptr, out_rows)?;
        let shape = |n: usize, d: usize| {
            [n, heads, d].iter().try_fold(1usize, |a, &x| a.checked_mul(x)).ok_or_else(|| {
                FfiError::Invalid(format!("shape [{n}, {heads}, {d}] overflows size_t"))
            })
        };
        let elem = if dtype == TreepoDtype::F32 { 4 } else { 2 };
        let po = Region::new("partial_o", partial_o.cast(), shape(num_states, head_dim)?, 4)?;
        let pl = Region::new("partial_lse", partial_lse.cast(), shape(num_states, 1)?, 4)?;
        let o = Region::new("out", out, shape(num_rows, head_dim)?, elem)?;
        o.disjoint(&po)?;
        o.disjoint(&pl)?;
        let l = if lse.is_null() {
            None
        } else {
            let l = Region::new("lse", lse.cast(), shape(num_rows, 1)?, 4)?;
            for other in [&po, &pl, &o] {
                l.disjoint(other)?;
            }
            Some(l)
        };
        let a = MergeArgs { po, pl, o, l, rows, heads, head_dim };
        // SAFETY: valid caller memory on `dev` (this function's contract); outputs disjoint.
        unsafe {
            match dtype {
                TreepoDtype::F32 => merge_typed::<f32>(&dev.dev, &a),
                TreepoDtype::F16 => merge_typed::<f16>(&dev.dev, &a),
                TreepoDtype::Bf16 => merge_typed::<bf16>(&dev.dev, &a),
            }
        }
    })
}

struct MergeArgs {
    po: Region,
    pl: Region,
    o: Region,
    l: Option<Region>,
    rows: MergeRows,
    heads: usize,
    head_dim: usize,
}

/// # Safety
/// The regions of `a` are valid caller memory of their lengths on `dev`; outputs disjoint.
unsafe fn merge_typed<T: FloatElement>(dev: &Device, a: &MergeArgs) -> Result<(), FfiError> {
    // SAFETY: forwarded from this function's contract.
    let (po, pl, mut o) =
        unsafe { (wrap::<f32>(dev, &a.po)?, wrap::<f32>(dev, &a.pl)?, wrap::<T>(dev, &a.o)?) };
    let mut l = match &a.l {
        // SAFETY: as above.
        Some(r) => Some(unsafe { wrap::<f32>(dev, r) }?),
        None => None,
    };
    let lse = l.as_mut().map(|l| l.view_mut());
    let (h, d) = (a.heads, a.head_dim);
    ops::merge_states(dev, &po, &pl, &a.rows, o.view_mut(), lse, h, d, SingleRows::Copy)?;
    Ok(())
}
