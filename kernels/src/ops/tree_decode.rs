//! Tree decode attention: one pass over a [`DecodePlanBuffers`] work list.
//!
//! Each work item reads its KV range for all query rows of its (leaf) row range and the whole
//! GQA group of a KV head together — on CUDA through tensor cores when that is 16 query vectors
//! or more (sm_80+), once per pass of 64 such vectors (16 on CUDA cores; see
//! [`cuda_kv_passes`](super::cuda_kv_passes)) — and writes one f32 partial state per (row,
//! item). A row with exactly one state (its whole visible KV in one item) is written straight to
//! `out` instead: the fast path; [`merge_states`](super::merge_states) with
//! [`SingleRows::Skip`](super::SingleRows) then combines the rest.

use crate::device::Inner;
use crate::ops::decode_geom::{self, Call};
use crate::ops::{DecodeParams, DecodePlanBuffers, PagedKvLayout};
use crate::{Device, FloatElement, Result, View, ViewMut, cpu, validate};

const OP: &str = "tree_decode";

/// Runs every work item of `plan`.
///
/// `q`, `out`: `[rows, num_qo_heads, head_dim]` in caller row order (plan row `r` is
/// `row_to_q[r]`); `partial_o`: `[plan.num_partials(), num_qo_heads, head_dim]` f32;
/// `partial_lse`: `[plan.num_partials(), num_qo_heads]` f32, NATURAL log, `-inf` for a row that
/// sees no key of the item (an empty state). `lse` (optional): `[rows, num_qo_heads]`, written
/// for the rows with one state. Rows with several states are written by `merge_states`.
/// dtypes and head sizes as [`paged_decode`](super::paged_decode).
#[allow(clippy::too_many_arguments)]
pub fn tree_decode<'a, T: FloatElement>(
    dev: &Device,
    q: impl Into<View<'a, T>>,
    kv: impl Into<View<'a, T>>,
    layout: &PagedKvLayout,
    plan: &DecodePlanBuffers,
    partial_o: impl Into<ViewMut<'a, f32>>,
    partial_lse: impl Into<ViewMut<'a, f32>>,
    out: impl Into<ViewMut<'a, T>>,
    lse: Option<ViewMut<'a, f32>>,
    params: &DecodeParams,
) -> Result<()> {
    let (q, kv, mut out, mut lse) = (q.into(), kv.into(), out.into(), lse);
    let (mut po, mut pl) = (partial_o.into(), partial_lse.into());
    let rows = plan.num_rows();
    let g = decode_geom::check(
        dev,
        &Call {
            op: OP,
            q: &q,
            kv: &kv,
            layout,
            params,
            rows,
            page_size: plan.page_size(),
            num_pages: plan.num_pages(),
            out: &out,
            lse: lse.as_ref(),
        },
    )?;
    let np = plan.num_partials();
    validate::output(dev, OP, "partial_o", &po, validate::product(OP, &[np, g.hq, g.d])?)?;
    validate::output(dev, OP, "partial_lse", &pl, np * g.hq)?;
    dev.check_same(OP, "plan", plan.buffer().backend())?;
    let nwork = plan.num_work();
    if rows == 0 || nwork == 0 {
        return Ok(());
    }
    let [s_pages, s_work, s_qpos] = plan.sections();
    let merge = plan.merge_rows();
    match &dev.inner {
        Inner::Cpu => {
            let words = plan.buffer().as_cpu_slice().unwrap_or(&[]);
            let mwords = merge.buffer().as_cpu_slice().unwrap_or(&[]);
            let p = cpu::tree_decode::PlanRef {
                page_indices: &words[s_pages..s_work],
                work: bytemuck::cast_slice(&words[s_work..s_qpos]),
                q_pos: &words[s_qpos..s_qpos + rows],
                row_to_q: &mwords[merge.rows_offset()..merge.rows_offset() + rows],
                partial_indptr: &mwords[..rows + 1],
            };
            let n = rows * g.hq * g.d;
            cpu::fast::tree_decode::tree_decode(
                decode_geom::f32s(q.cpu()),
                decode_geom::f32s(kv.cpu()),
                &g.cpu(),
                &p,
                g.hq,
                g.sm_scale,
                cpu::tree_decode::TreeOut {
                    partial_o: &mut po.cpu()[..np * g.hq * g.d],
                    partial_lse: &mut pl.cpu()[..np * g.hq],
                    out: &mut decode_geom::f32s_mut(out.cpu())[..n],
                    lse: lse.as_mut().map(|l| &mut l.cpu()[..rows * g.hq]),
                },
            );
            Ok(())
        }
        #[cfg(feature = "cuda")]
        Inner::Cuda(b) => {
            use crate::cuda::{addr, addr_mut, driver_err};
            use cudarc::driver::PushKernelArg;
            let name = decode_geom::symbol::<T>(OP, g.d);
            let f = b.function(OP, &name)?;
            let qp = addr(b, &q);
            let kvp = addr(b, &kv) + (g.layer_base * T::DTYPE.size()) as u64;
            let pp = addr(b, &plan.buffer().view());
            let mp = addr(b, &merge.buffer().view());
            let (o_work, o_qpos, o_rows) =
                (s_work as i32, s_qpos as i32, merge.rows_offset() as i32);
            let (pop, plp, op) =
                (addr_mut(b, &mut po), addr_mut(b, &mut pl), addr_mut(b, &mut out));
            let lp: u64 = lse.as_mut().map(|l| addr_mut(b, l)).unwrap_or(0);
            let tail = decode_geom::CudaTail::new(&g);
            let jobs = validate::fits_u32(OP, "work items", nwork)?;
            let cfg = decode_geom::cuda_launch::<T>(&g, jobs);
            let mut l = b.stream().launch_builder(&f);
            l.arg(&qp).arg(&kvp).arg(&pp).arg(&o_work).arg(&o_qpos).arg(&mp).arg(&o_rows);
            l.arg(&pop).arg(&plp).arg(&op).arg(&lp);
            tail.push(&mut l);
            // SAFETY: `DecodePlanBuffers::upload` validated every index the kernel follows (page
            // ids below the cache's page count, page ranges covering exactly the item's tokens,
            // row ranges inside [0, rows), row_to_q a permutation, each (row, slot) state below
            // num_partials and written once) and `decode_geom::check` the tensor extents,
            // partial buffers and 16-byte alignment. Arguments match `tree_decode_{dtype}_d{D}`.
            unsafe { l.launch(cfg) }.map_err(|e| driver_err(&name, e))?;
            Ok(())
        }
        #[cfg(feature = "wgpu")]
        Inner::Wgpu(b) => {
            use crate::webgpu::{buf, buf_mut, groups_1d, sources};
            let shader = decode_geom::wgsl_variant::<T>(OP, &sources::TREE_DECODE)?;
            let u = |what: &str, v: usize| decode_geom::u32v(OP, what, v);
            let (lbuf, loff, has) = match &lse {
                Some(l) => (buf_mut(l), u("lse offset", l.offset())?, 1),
                None => (b.scratch(), 0, 0),
            };
            u("partial_o extent", po.offset() + np * g.hq * g.d)?;
            let params = decode_geom::WgslParams {
                num_jobs: u("work items", nwork)?,
                q_off: u("q offset", q.offset())?,
                kv_off: u("kv offset", kv.offset() + g.layer_base)?,
                has_lse: has,
                po_off: u("partial_o offset", po.offset())?,
                pl_off: u("partial_lse offset", pl.offset())?,
                out_off: u("out offset", out.offset())?,
                lse_off: loff,
                ib_rows: u("rows offset", merge.rows_offset())?,
                sec: [s_pages as u32, s_work as u32, s_qpos as u32, 0],
            };
            b.dispatch(
                shader,
                "tree_decode",
                bytemuck::cast_slice(&params.words(&g)),
                &[
                    buf(&q),
                    buf(&kv),
                    buf(&plan.buffer().view()),
                    buf(&merge.buffer().view()),
                    buf_mut(&po),
                    buf_mut(&pl),
                    buf_mut(&out),
                    lbuf,
                ],
                groups_1d(nwork * g.hkv, 1),
            )
        }
    }
}
