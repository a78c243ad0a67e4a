//! Running a plan: one layer of tree decode attention is [`ops::tree_decode`] over the plan's
//! work list, then [`ops::merge_states`] for the rows with several partial states (rows with one
//! state were written by `tree_decode` directly). Call [`decode`] once per layer with the same
//! uploaded plan and workspace.
//!
//! [`naive`] runs the baseline on the same data: `ops::paged_decode` over a [`LeafPageTable`]
//! (each leaf reads its whole path).
//!
//! [`LeafPageTable`]: crate::plan::LeafPageTable

use treepo_kernels::ops::{
    self, DecodeParams, DecodePlanBuffers, PageTable, PagedKvLayout, SingleRows,
};
use treepo_kernels::{Buffer, Device, FloatElement, KernelError, View, ViewMut};

/// Device buffers for the partial states of one step (f32 `o [P, num_qo_heads, head_dim]` and
/// `lse [P, num_qo_heads]`), reused by every layer and — while large enough — every step.
#[derive(Debug)]
pub struct DecodeWorkspace {
    partial_o: Buffer<f32>,
    partial_lse: Buffer<f32>,
}

impl DecodeWorkspace {
    /// A workspace sized for `plan` with `num_qo_heads` heads of `head_dim`.
    pub fn new(
        dev: &Device,
        plan: &DecodePlanBuffers,
        num_qo_heads: usize,
        head_dim: usize,
    ) -> Result<DecodeWorkspace, KernelError> {
        let (o, l) = Self::sizes(plan, num_qo_heads, head_dim);
        Ok(DecodeWorkspace { partial_o: dev.zeros(o)?, partial_lse: dev.zeros(l)? })
    }

    /// Grows the buffers if `plan` needs more (never shrinks).
    pub fn ensure(
        &mut self,
        dev: &Device,
        plan: &DecodePlanBuffers,
        num_qo_heads: usize,
        head_dim: usize,
    ) -> Result<(), KernelError> {
        let (o, l) = Self::sizes(plan, num_qo_heads, head_dim);
        if self.partial_o.len() < o {
            self.partial_o = dev.zeros(o)?;
        }
        if self.partial_lse.len() < l {
            self.partial_lse = dev.zeros(l)?;
        }
        Ok(())
    }

    fn sizes(plan: &DecodePlanBuffers, hq: usize, d: usize) -> (usize, usize) {
        // At least one element: a zero-sized buffer cannot be bound on every backend.
        let p = plan.num_partials().max(1);
        (p * hq * d, p * hq)
    }
}

/// One layer of tree decode attention: `out[r] = softmax(sm_scale·q[r]·Kᵀ)·V` over the
/// positions row `r`'s leaf path holds up to its own position.
///
/// `q`, `out`: `[rows, num_qo_heads, head_dim]` in the caller's row order (the leaves' rows in
/// the order they were planned); `lse` (optional): `[rows, num_qo_heads]`, natural log;
/// `kv`: the paged cache described by `layout`, layer `params.layer`.
#[allow(clippy::too_many_arguments)]
pub fn decode<'a, T: FloatElement>(
    dev: &Device,
    plan: &DecodePlanBuffers,
    ws: &mut DecodeWorkspace,
    q: impl Into<View<'a, T>>,
    kv: impl Into<View<'a, T>>,
    layout: &PagedKvLayout,
    params: &DecodeParams,
    out: impl Into<ViewMut<'a, T>>,
    lse: Option<ViewMut<'a, f32>>,
) -> Result<(), KernelError> {
    let (mut out, mut lse) = (out.into(), lse);
    let (hq, d) = (params.num_qo_heads, layout.head_dim);
    tree_decode_only(
        dev,
        plan,
        ws,
        q,
        kv,
        layout,
        params,
        out.reborrow(),
        lse.as_mut().map(|l| l.reborrow()),
    )?;
    if plan.all_single() {
        return Ok(());
    }
    ops::merge_states(
        dev,
        &ws.partial_o,
        &ws.partial_lse,
        plan.merge_rows(),
        out,
        lse,
        hq,
        d,
        SingleRows::Skip,
    )
}

/// The first half of [`decode`] alone (benchmarks time the two halves separately).
#[allow(clippy::too_many_arguments)]
pub fn tree_decode_only<'a, T: FloatElement>(
    dev: &Device,
    plan: &DecodePlanBuffers,
    ws: &mut DecodeWorkspace,
    q: impl Into<View<'a, T>>,
    kv: impl Into<View<'a, T>>,
    layout: &PagedKvLayout,
    params: &DecodeParams,
    out: ViewMut<'_, T>,
    lse: Option<ViewMut<'_, f32>>,
) -> Result<(), KernelError> {
    let (q, kv): (View<'_, T>, View<'_, T>) = (q.into(), kv.into());
    ops::tree_decode(
        dev,
        q,
        kv,
        layout,
        plan,
        &mut ws.partial_o,
        &mut ws.partial_lse,
        out,
        lse,
        params,
    )
}

/// The second half of [`decode`] alone: merges the multi-state rows.
pub fn merge_only<T: FloatElement>(
    dev: &Device,
    plan: &DecodePlanBuffers,
    ws: &DecodeWorkspace,
    params: &DecodeParams,
    head_dim: usize,
    out: ViewMut<'_, T>,
) -> Result<(), KernelError> {
    if plan.all_single() {
        return Ok(());
    }
    let hq = params.num_qo_heads;
    ops::merge_states(
        dev,
        &ws.partial_o,
        &ws.partial_lse,
        plan.merge_rows(),
        out,
        None,
        hq,
        head_dim,
        SingleRows::Skip,
    )
}

/// The naive baseline on the same data: every leaf reads its whole path (`ops::paged_decode`).
#[allow(clippy::too_many_arguments)]
pub fn naive<'a, T: FloatElement>(
    dev: &Device,
    table: &PageTable,
    q: impl Into<View<'a, T>>,
    kv: impl Into<View<'a, T>>,
    layout: &PagedKvLayout,
    params: &DecodeParams,
    out: impl Into<ViewMut<'a, T>>,
    lse: Option<ViewMut<'a, f32>>,
) -> Result<(), KernelError> {
    ops::paged_decode(dev, q, kv, layout, table, out, lse, params)
}
