//! The KV-cached forward pass over the rows of several leaves at once.
//!
//! Shapes (n rows, C hidden, qa = hq·da, kv2 = 2·hkv·da, I MLP width):
//! ```text
//! x       = embed[ids]                                         [n, C]
//! per layer l:
//!   ln    = rmsnorm(x) · w1                                    [n, C]
//!   q     = ln · Wqᵀ (+ bq);  kv = ln · Wkvᵀ (+ bkv)            [n, qa], [n, kv2]
//!           (one batched GEMM when qa == kv2, see `weights`)
//!   RoPE(q), RoPE(k) at the rows' positions
//!   paged_kv_append(k, v → slots, layer l)       ← every row's K/V lands before anyone attends
//!   att   = tree_decode(q; the leaves' paged KV, causal)       [n, qa]
//!   x    += att · Woᵀ                                          (GEMM with beta = 1)
//!   ln    = rmsnorm(x) · w2
//!   x    += (silu(ln · Wgᵀ) ⊙ ln · Wuᵀ) · Wdownᵀ               (gate and up: one batched GEMM)
//! h       = rmsnorm(x) · wf                                    [n, C]  (the pending hiddens)
//! ```
//! This is `Model::forward` (the packed training pass) with the attention reading the paged
//! cache instead of the batch, so the two agree to rounding (a test checks every position).
//! Appending all rows of a layer before attending is what lets a prompt row attend to pages
//! that another prompt of the same prefill reused from it (the radix index shares full pages
//! at `create_root`, before their K/V exist).

use tree_kv::{NodeId, TreeKvCache};
use treepo_kernels::ops::{
    self, DecodeParams, GemmSpec, PageCopyJobs, PagedKvLayout, RopeDirection, RopeShape,
};
use treepo_kernels::{Buffer, Device, KernelError, View, ViewMut};
use treepo_sampler::EngineError;

use super::error::{backend, internal};
use super::op_times::{Op, OpTimes, timed};
use super::step::StepPlan;
use super::weights::{Dims, EngineWeights, Mat};
use super::workspace::{Workspace, set_indices};
use crate::model::Model;

/// Everything on the device side of the engine.
pub(crate) struct Core<'m> {
    pub model: &'m Model,
    pub dev: Device,
    pub d: Dims,
    pub w: EngineWeights,
    pub kv: Buffer<f32>,
    pub layout: PagedKvLayout,
    pub step: StepPlan,
    pub ws: Workspace,
    pub max_rows: usize,
    /// Upper bound of positions (the RoPE index bound).
    pub max_context: usize,
    pub copy_jobs: Option<PageCopyJobs>,
    /// Wall time per op, when `EngineConfig::op_times` is on.
    pub times: Option<OpTimes>,
}

/// The rows of one forward pass, in query-row order: leaf `i` contributes the rows of
/// `spans[i]`, consecutively.
pub(crate) struct Rows<'a> {
    pub leaves: &'a [NodeId],
    pub spans: &'a [(u32, u32)],
    pub ids: &'a [i32],
    pub positions: &'a [i32],
    pub slots: &'a [i32],
}

impl Core<'_> {
    /// Computes `rows` through every layer; afterwards `ws.h[..n·C]` holds their final-norm
    /// hidden states (n = number of rows).
    pub fn forward(&mut self, cache: &TreeKvCache, rows: &Rows<'_>) -> Result<(), EngineError> {
        let n = rows.ids.len();
        if n == 0 || n > self.max_rows || rows.positions.len() != n || rows.slots.len() != n {
            return Err(internal("forward", format!("{n} rows for a {} row limit", self.max_rows)));
        }
        let (dev, d) = (&self.dev, &self.d);
        self.ws.ensure(dev, d, n, self.max_rows).map_err(backend)?;
        set_indices(&mut self.ws.ids, dev, rows.ids, d.vocab).map_err(backend)?;
        set_indices(&mut self.ws.pos, dev, rows.positions, self.max_context).map_err(backend)?;
        let slots = self.layout.num_pages * self.layout.page_size;
        set_indices(&mut self.ws.slots, dev, rows.slots, slots).map_err(backend)?;
        let (step, times) = (&mut self.step, &mut self.times);
        timed(times, Op::Plan, || step.build(dev, cache, rows.leaves, rows.spans, d.hq, d.da))?;
        self.layers(n).map_err(backend)
    }

    fn layers(&mut self, n: usize) -> Result<(), KernelError> {
        let Core { model, dev, d, w, kv, layout, step, ws, times, .. } = self;
        let (c, qa, kv2, im) = (d.c, d.qa(), d.kva2(), d.im);
        let p = model.params();
        let lay = model.layout();
        let pw = |r: &std::ops::Range<usize>| p.slice(r.clone());
        let missing = || KernelError::Invalid { op: "engine", msg: "index buffers unset".into() };
        let (ids, pos, slots) = (
            ws.ids.as_ref().ok_or_else(missing)?,
            ws.pos.as_ref().ok_or_else(missing)?,
            ws.slots.as_ref().ok_or_else(missing)?,
        );
        let (bufs, dws) = match (&step.bufs, &mut step.ws) {
            (Some(b), Some(w)) => (b, w),
            _ => return Err(KernelError::Invalid { op: "engine", msg: "plan not built".into() }),
        };
        let rc = 0..n * c;
        let (embed, x) = (pw(&lay.embed)?, ws.x.slice_mut(rc.clone())?);
        timed(times, Op::Embedding, || ops::embedding(dev, embed, ids, x, n, d.vocab, c))?;
        let qs = RopeShape {
            tokens: n,
            num_heads: d.hq,
            head_dim: d.hd,
            token_stride: qa,
            head_stride: d.da,
        };
        let ks = RopeShape {
            tokens: n,
            num_heads: d.hkv,
            head_dim: d.hd,
            token_stride: kv2,
            head_stride: d.da,
        };
        let half = kv2 / 2;
        // `ws.qkv` holds q `[n, qa]` then k|v `[n, kv2]`; `ws.gu` gate `[n, I]` then up.
        let (qv, kvv) = (0..n * qa, n * qa..n * (qa + kv2));
        let (gv, uv) = (0..n * im, n * im..2 * n * im);
        // Two same-shape products sharing the activations `[n, k]` (stride 0), written to
        // consecutive `[n, width]` outputs: one launch.
        let pair = |spec: GemmSpec, width: usize, k: usize| GemmSpec {
            batch: 2,
            stride_a: 0,
            stride_b: width * k,
            stride_c: n * width,
            ..spec
        };
        // `out = rmsnorm(x) · w` over the rows: the layers' two norms and the final one.
        let norm = |times: &mut Option<OpTimes>,
                    x: View<'_, f32>,
                    w: &std::ops::Range<usize>,
                    out: ViewMut<'_, f32>| {
            timed(times, Op::Norm, || ops::rmsnorm(dev, x, pw(w)?, out, None, n, c, d.eps))
        };
        for (l, (lp, at)) in lay.layers.iter().zip(&w.layers).enumerate() {
            norm(times, ws.x.slice(rc.clone())?, &lp.ln1, ws.ln.slice_mut(rc.clone())?)?;
            let lnv = ws.ln.slice(rc.clone())?;
            let wqkv = w.get(model, &at.wqkv)?;
            timed(times, Op::Qkv, || {
                if d.qkv_batched() {
                    let spec = pair(at.wqkv.linear(n, qa, c), qa, c);
                    ops::gemm(dev, lnv, wqkv, ws.qkv.slice_mut(0..2 * n * qa)?, &spec)
                } else {
                    let (wq, wkv) = (wqkv.slice(0..qa * c)?, wqkv.slice(qa * c..(qa + kv2) * c)?);
                    let (qspec, kvspec) = (at.wqkv.linear(n, qa, c), at.wqkv.linear(n, kv2, c));
                    ops::gemm(dev, lnv, wq, ws.qkv.slice_mut(qv.clone())?, &qspec)?;
                    ops::gemm(dev, lnv, wkv, ws.qkv.slice_mut(kvv.clone())?, &kvspec)
                }
            })?;
            if let Some(bm) = &at.bqkv {
                let (ones, b) = (ws.ones.slice(0..n)?, w.get(model, bm)?);
                let bias = |k: usize| GemmSpec::plain(n, k, 1).scaled(1.0, 1.0);
                timed(times, Op::QkvBias, || {
                    if d.qkv_batched() {
                        let spec = pair(bias(qa), qa, 1);
                        ops::gemm(dev, ones, b, ws.qkv.slice_mut(0..2 * n * qa)?, &spec)
                    } else {
                        let (bq, bkv) = (b.slice(0..qa)?, b.slice(qa..qa + kv2)?);
                        ops::gemm(dev, ones, bq, ws.qkv.slice_mut(qv.clone())?, &bias(qa))?;
                        ops::gemm(dev, ones, bkv, ws.qkv.slice_mut(kvv.clone())?, &bias(kv2))
                    }
                })?;
            }
            let inv = model.inv_freq();
            let fwd = RopeDirection::Forward;
            timed(times, Op::Rope, || {
                ops::rope(dev, ws.qkv.slice_mut(qv.clone())?, pos, inv, &qs, fwd)
            })?;
            timed(times, Op::Rope, || {
                ops::rope(dev, ws.qkv.slice_mut(kvv.clone())?, pos, inv, &ks, fwd)
            })?;
            // k of token t at t·kv2, v at t·kv2 + half; each view ends with the last token's row.
            let (k0, extent) = (kvv.start, (n - 1) * kv2 + half);
            timed(times, Op::KvAppend, || {
                ops::paged_kv_append_strided(
                    dev,
                    &mut *kv,
                    layout,
                    l,
                    ws.qkv.slice(k0..k0 + extent)?,
                    ws.qkv.slice(k0 + half..k0 + half + extent)?,
                    slots,
                    kv2,
                )
            })?;
            let params = DecodeParams { num_qo_heads: d.hq, layer: l, sm_scale: d.sm_scale };
            timed(times, Op::Attention, || {
                tree_attn::decode(
                    dev,
                    bufs,
                    dws,
                    ws.qkv.slice(qv.clone())?,
                    &*kv,
                    layout,
                    &params,
                    ws.att.slice_mut(qv.clone())?,
                    None,
                )
            })?;
            let acc = |m: &Mat, width: usize, k: usize| m.linear(n, width, k).scaled(1.0, 1.0);
            let (att, wo) = (ws.att.slice(qv.clone())?, w.get(model, &at.wo)?);
            timed(times, Op::OutProj, || {
                ops::gemm(dev, att, wo, ws.x.slice_mut(rc.clone())?, &acc(&at.wo, c, qa))
            })?;
            norm(times, ws.x.slice(rc.clone())?, &lp.ln2, ws.ln.slice_mut(rc.clone())?)?;
            let spec = pair(at.wgu.linear(n, im, c), im, c);
            let (lnv, wgu) = (ws.ln.slice(rc.clone())?, w.get(model, &at.wgu)?);
            timed(times, Op::GateUp, || {
                ops::gemm(dev, lnv, wgu, ws.gu.slice_mut(0..2 * n * im)?, &spec)
            })?;
            let (gate, up) = (ws.gu.slice(gv.clone())?, ws.gu.slice(uv.clone())?);
            timed(times, Op::SwiGlu, || {
                ops::swiglu(dev, gate, up, ws.act.slice_mut(gv.clone())?, n * im)
            })?;
            let (act, wd) = (ws.act.slice(gv.clone())?, w.get(model, &at.wdown)?);
            timed(times, Op::Down, || {
                ops::gemm(dev, act, wd, ws.x.slice_mut(rc.clone())?, &acc(&at.wdown, c, im))
            })?;
        }
        norm(times, ws.x.slice(rc.clone())?, &lay.final_norm, ws.h.slice_mut(rc)?)
    }
}
