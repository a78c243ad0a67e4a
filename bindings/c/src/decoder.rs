//! The tree decoder handle: plan from raw CSR block tables, run per layer on caller memory.

use std::ffi::c_void;

use tree_attn::{CsrForest, PlanError, TreeDecoder};
use treepo_kernels::ops::PagedKvLayout;
use treepo_kernels::{BackendKind, Device, FloatElement, bf16, f16};

use crate::device::TreepoDevice;
use crate::enums::{TreepoDtype, parse_plan_kind};
use crate::error::{FfiError, TreepoStatus, ensure, guard};
use crate::handle::{self, out_ptr};
use crate::layout::TreepoKvLayout;
use crate::memory::{Region, host_slice, wrap};

/// A tree decoder: plans a batch once from its block tables, then runs every layer.
/// Create with `treepo_decoder_new`, release with `treepo_decoder_free`.
pub struct TreepoDecoder {
    inner: TreeDecoder,
    planned: Option<Planned>,
}

/// What a successful plan fixed.
#[derive(Clone, Copy)]
struct Planned {
    backend: BackendKind,
    ordinal: Option<usize>,
    rows: usize,
    num_qo_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
    page_size: usize,
    num_pages: usize,
}

/// Creates an empty decoder into `*out`.
///
/// # Safety
/// `out` must be null or valid for writing one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn treepo_decoder_new(out: *mut *mut TreepoDecoder) -> TreepoStatus {
    guard(|| {
        // SAFETY: null is rejected; otherwise writable by the caller's contract.
        let out = unsafe { out_ptr("out", out) }?;
        *out = handle::into_raw(TreepoDecoder { inner: TreeDecoder::new(), planned: None });
        Ok(())
    })
}

/// Releases a decoder (null: no-op).
///
/// # Safety
/// `dec` must be null or a live decoder handle, not used after; on CUDA, runs enqueued with it
/// must have finished (its tables and workspace are freed).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn treepo_decoder_free(dec: *mut TreepoDecoder) {
    // SAFETY: the caller's contract; `free` ignores null.
    let _ = guard(|| unsafe { handle::free(dec) });
}

/// Sets the tree plans' `min_shared` for the decoder's following plans: a shared node shorter
/// than `tokens` tokens is read with each child's chunk instead of as a work item of its own
/// (default 0: every node shared; see `docs/tree-attn.md`, "Folding short nodes"). The current
/// plan is unchanged.
///
/// # Safety
/// `dec`: null or a live decoder handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn treepo_decoder_set_min_shared(
    dec: *mut TreepoDecoder,
    tokens: u32,
) -> TreepoStatus {
    guard(|| {
        // SAFETY: null is rejected; otherwise a live, unaliased handle (caller's contract).
        let dec = unsafe { handle::get_mut("dec", dec)? };
        dec.inner.set_min_shared(tokens);
        Ok(())
    })
}

/// Plans one decode step on `dev` from FlashInfer-style paged-KV block tables:
/// `indptr[batch_size + 1]`, `indices[num_indices]` (page ids below `num_pages`;
/// `num_indices >= indptr[batch_size]`, extra entries unused), `last_page_len[batch_size]`
/// (each in `1..=page_size`) and `q_rows[batch_size]` (query rows per sequence, the last
/// positions of each; null = 1 each). Sequences whose block tables start with the same page ids share
/// those pages' KV. All host memory, copied before returning. `plan_kind` is a
/// `TreepoPlanKind`, `plan_arg` its parameter (0 for kinds without one). On error the decoder
/// has no plan.
///
/// # Safety
/// `dec`, `dev`: null or live handles; each non-null array valid for reads of its length.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn treepo_decoder_plan(
    dec: *mut TreepoDecoder,
    dev: *const TreepoDevice,
    indptr: *const i32,
    batch_size: usize,
    indices: *const i32,
    num_indices: usize,
    last_page_len: *const i32,
    q_rows: *const i32,
    num_qo_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
    page_size: usize,
    num_pages: usize,
    plan_kind: i32,
    plan_arg: u32,
) -> TreepoStatus {
    guard(|| {
        // SAFETY: null is rejected; otherwise live, unaliased handles (caller's contract).
        let (dec, dev) = unsafe { (handle::get_mut("dec", dec)?, handle::get("dev", dev)?) };
        dec.planned = None;
        let kind = parse_plan_kind(plan_kind, plan_arg)?;
        ensure!(batch_size < i32::MAX as usize, "batch_size = {batch_size} is too large");
        // SAFETY: each array is valid for reads of the given length (caller's contract).
        let (indptr, indices, last) = unsafe {
            (
                host_slice("indptr", indptr, batch_size + 1)?,
                host_slice("indices", indices, num_indices)?,
                host_slice("last_page_len", last_page_len, batch_size)?,
            )
        };
        let q_rows: Option<Vec<u32>> = if q_rows.is_null() {
            None
        } else {
            // SAFETY: non-null, valid for reads of batch_size elements (caller's contract).
            let raw = unsafe { host_slice("q_rows", q_rows, batch_size) }?;
            let rows = raw.iter().enumerate().map(|(i, &r)| {
                u32::try_from(r).map_err(|_| csr(format!("q_rows[{i}] = {r} is negative")))
            });
            Some(rows.collect::<Result<_, _>>()?)
        };
        ensure!(
            num_qo_heads > 0 && num_kv_heads > 0 && head_dim > 0,
            "num_qo_heads, num_kv_heads and head_dim must be > 0"
        );
        ensure!(
            num_qo_heads.is_multiple_of(num_kv_heads),
            "num_qo_heads = {num_qo_heads} is not a multiple of num_kv_heads = {num_kv_heads}"
        );
        let ps = u32::try_from(page_size)
            .map_err(|_| FfiError::Invalid(format!("page_size = {page_size} is too large")))?;
        let used = usize::try_from(indptr[batch_size]).unwrap_or(0).min(num_indices);
        if let Some(i) = indices[..used].iter().position(|&p| p >= 0 && p as usize >= num_pages) {
            let msg = format!("indices[{i}] = {} is not below num_pages = {num_pages}", indices[i]);
            return Err(csr(msg));
        }
        let forest = CsrForest::from_csr(ps, indptr, indices, last, q_rows.as_deref())?;
        let (view, leaves) = (forest.view(), forest.leaves());
        dec.inner.plan(
            &dev.dev,
            &view,
            leaves,
            kind,
            num_qo_heads,
            num_kv_heads,
            head_dim,
            num_pages,
        )?;
        dec.planned = Some(Planned {
            backend: dev.dev.kind(),
            ordinal: dev.dev.cuda_ordinal(),
            rows: dec.inner.num_rows(),
            num_qo_heads,
            num_kv_heads,
            head_dim,
            page_size,
            num_pages,
        });
        Ok(())
    })
}

fn csr(msg: String) -> FfiError {
    FfiError::Plan(PlanError::Csr(msg))
}

/// The query rows of the current plan (`q` and `out` hold `rows x num_qo_heads x head_dim`
/// elements) into `*rows`; `TREEPO_STATUS_NOT_PLANNED` without a plan.
///
/// # Safety
/// `dec` null or a live handle; `rows` null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn treepo_decoder_num_rows(
    dec: *const TreepoDecoder,
    rows: *mut usize,
) -> TreepoStatus {
    guard(|| {
        // SAFETY: null is rejected; otherwise a live handle / writable (caller's contract).
        let (dec, rows) = unsafe { (handle::get("dec", dec)?, handle::get_mut("rows", rows)?) };
        *rows = dec.planned.ok_or(FfiError::NotPlanned)?.rows;
        Ok(())
    })
}

/// One layer of tree decode attention on caller-owned memory of `dev` (host pointers on the
/// CPU device, `CUdeviceptr`s cast to `void*` on CUDA): `q`, `out` `[rows, num_qo_heads,
/// head_dim]` of `dtype`, `kv` the paged cache described by `layout` (K and V in one
/// allocation), layer `layer`, `lse` (optional, f32 `[rows, num_qo_heads]`, natural log).
/// Lengths are element counts and must match the plan (`kv_len` must hold the layout). On
/// CUDA the work is enqueued on `dev`'s stream and the call returns before it finishes.
///
/// # Safety
/// Handles null or live; every non-null pointer valid for its length (reads for q/kv, writes
/// for out/lse) on `dev` until the work finishes, and not accessed by others meanwhile.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn treepo_decoder_run(
    dec: *mut TreepoDecoder,
    dev: *const TreepoDevice,
    dtype: i32,
    q: *const c_void,
    q_len: usize,
    kv: *const c_void,
    kv_len: usize,
    layout: *const TreepoKvLayout,
    layer: usize,
    sm_scale: f32,
    out: *mut c_void,
    out_len: usize,
    lse: *mut f32,
    lse_len: usize,
) -> TreepoStatus {
    guard(|| {
        // SAFETY: null is rejected; otherwise live, unaliased handles (caller's contract).
        let (dec, dev) = unsafe { (handle::get_mut("dec", dec)?, handle::get("dev", dev)?) };
        let p = dec.planned.ok_or(FfiError::NotPlanned)?;
        let dtype = TreepoDtype::from_raw(dtype)?;
        // SAFETY: null is rejected; a live struct by the caller's contract.
        let layout = unsafe { handle::get("layout", layout) }?.to_kernels();
        check_device(&p, &dev.dev)?;
        check_layout(&p, &layout, layer)?;
        ensure!(sm_scale.is_finite(), "sm_scale = {sm_scale} is not finite");
        let elem = match dtype {
            TreepoDtype::F32 => 4,
            TreepoDtype::F16 | TreepoDtype::Bf16 => 2,
        };
        let n = p.rows * p.num_qo_heads * p.head_dim;
        let q = Region::new("q", q, q_len, elem)?;
        let kv = Region::new("kv", kv, kv_len, elem)?;
        let out = Region::new("out", out, out_len, elem)?;
        q.expect_len(n, "the plan (rows x num_qo_heads x head_dim)")?;
        out.expect_len(n, "the plan (rows x num_qo_heads x head_dim)")?;
        layout.validate(kv_len).map_err(|e| FfiError::Invalid(format!("`kv`: {e}")))?;
        out.disjoint(&q)?;
        out.disjoint(&kv)?;
        let lse = if lse.is_null() {
            None
        } else {
            let l = Region::new("lse", lse as *const c_void, lse_len, 4)?;
            l.expect_len(p.rows * p.num_qo_heads, "the plan (rows x num_qo_heads)")?;
            for other in [&q, &kv, &out] {
                l.disjoint(other)?;
            }
            Some(l)
        };
        let args = RunArgs { q, kv, out, lse, layout, layer, sm_scale };
        // SAFETY: the regions are valid caller memory on `dev` (this function's contract),
        // outputs disjoint from every other argument (checked above).
        unsafe {
            match dtype {
                TreepoDtype::F32 => run_typed::<f32>(dec, &dev.dev, &args),
                TreepoDtype::F16 => run_typed::<f16>(dec, &dev.dev, &args),
                TreepoDtype::Bf16 => run_typed::<bf16>(dec, &dev.dev, &args),
            }
        }
    })
}

struct RunArgs {
    q: Region,
    kv: Region,
    out: Region,
    lse: Option<Region>,
    layout: PagedKvLayout,
    layer: usize,
    sm_scale: f32,
}

/// # Safety
/// The regions of `a` are valid caller memory of their lengths on `dev`; outputs disjoint.
unsafe fn run_typed<T: FloatElement>(
    dec: &mut TreepoDecoder,
    dev: &Device,
    a: &RunArgs,
) -> Result<(), FfiError> {
    // SAFETY: forwarded from this function's contract.
    let (q, kv, mut out) =
        unsafe { (wrap::<T>(dev, &a.q)?, wrap::<T>(dev, &a.kv)?, wrap::<T>(dev, &a.out)?) };
    let mut lse = match &a.lse {
        // SAFETY: as above.
        Some(r) => Some(unsafe { wrap::<f32>(dev, r) }?),
        None => None,
    };
    let lse_view = lse.as_mut().map(|l| l.view_mut());
    let out_view = out.view_mut();
    dec.inner.run(dev, q.view(), kv.view(), &a.layout, a.layer, a.sm_scale, out_view, lse_view)?;
    Ok(())
}

fn check_device(p: &Planned, dev: &Device) -> Result<(), FfiError> {
    ensure!(
        dev.kind() == p.backend && dev.cuda_ordinal() == p.ordinal,
        "the decoder was planned on the {} device{} but run on the {} device{}",
        p.backend,
        p.ordinal.map(|o| format!(" {o}")).unwrap_or_default(),
        dev.kind(),
        dev.cuda_ordinal().map(|o| format!(" {o}")).unwrap_or_default()
    );
    Ok(())
}

fn check_layout(p: &Planned, l: &PagedKvLayout, layer: usize) -> Result<(), FfiError> {
    let planned = (p.num_kv_heads, p.page_size, p.head_dim);
    let given = (l.num_kv_heads, l.page_size, l.head_dim);
    ensure!(
        planned == given,
        "layout (num_kv_heads, page_size, head_dim) = {given:?} but the plan has {planned:?}"
    );
    ensure!(
        l.num_pages == p.num_pages,
        "layout holds {} pages but the plan was made for num_pages = {}",
        l.num_pages,
        p.num_pages
    );
    ensure!(layer < l.num_layers, "layer = {layer} but the layout holds {} layers", l.num_layers);
    Ok(())
}
