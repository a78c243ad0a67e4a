//! Naive paged decode attention — the baseline every tree plan is measured against.
//!
//! Each sequence of a FlashInfer-style CSR [`PageTable`] attends its query rows (its last
//! positions, causal among themselves) to its whole page list. K/V are shared only across the
//! sequence's own rows and GQA group; sequences with a common prefix each read it again. The
//! kernels are the same tile code as [`tree_decode`](super::tree_decode)'s, so a benchmark
//! ratio between them measures sharing, not implementation quality.

use crate::device::Inner;
use crate::ops::decode_geom::{self, Call};
use crate::ops::{DecodeParams, PageTable, PagedKvLayout};
use crate::{Device, FloatElement, Result, View, ViewMut, cpu};

const OP: &str = "paged_decode";

/// `out[r, h] = softmax(sm_scale · q[r, h]·Kᵀ) · V` over the keys row `r` sees: the positions
/// `0..=pos(r)` of its sequence, where a sequence's query rows are its last positions.
///
/// `q`, `out`: `[rows, num_qo_heads, head_dim]` (rows = `table.num_rows()`); `lse` (optional):
/// `[rows, num_qo_heads]`, the NATURAL-log sum of exponentials; `kv`: the cache described by
/// `layout` (layer `params.layer`). dtypes: f32 on the CPU; f32/f16 on wgpu; f32/f16/bf16 on
/// CUDA (accumulation in f32). GPU backends support `head_dim` 64 and 128.
#[allow(clippy::too_many_arguments)]
pub fn paged_decode<'a, T: FloatElement>(
    dev: &Device,
    q: impl Into<View<'a, T>>,
    kv: impl Into<View<'a, T>>,
    layout: &PagedKvLayout,
    table: &PageTable,
    out: impl Into<ViewMut<'a, T>>,
    lse: Option<ViewMut<'a, f32>>,
    params: &DecodeParams,
) -> Result<()> {
    let (q, kv, mut out, mut lse) = (q.into(), kv.into(), out.into(), lse);
    let rows = table.num_rows();
    let g = decode_geom::check(
        dev,
        &Call {
            op: OP,
            q: &q,
            kv: &kv,
            layout,
            params,
            rows,
            page_size: table.page_size(),
            num_pages: table.num_pages(),
            out: &out,
            lse: lse.as_ref(),
        },
    )?;
    dev.check_same(OP, "table", table.buffer().backend())?;
    if rows == 0 {
        return Ok(());
    }
    let seqs = table.num_seqs();
    let [s_indptr, s_indices, s_last, s_qindptr] = table.sections();
    match &dev.inner {
        Inner::Cpu => {
            let words = table.buffer().as_cpu_slice().unwrap_or(&[]);
            let t = cpu::paged_decode::PageTableRef {
                indptr: &words[s_indptr..s_indices],
                indices: &words[s_indices..s_last],
                last_page_len: &words[s_last..s_qindptr],
                q_indptr: &words[s_qindptr..s_qindptr + seqs + 1],
            };
            let n = rows * g.hq * g.d;
            let lse = lse.as_mut().map(|l| &mut l.cpu()[..rows * g.hq]);
            cpu::fast::paged_decode::paged_decode(
                decode_geom::f32s(q.cpu()),
                decode_geom::f32s(kv.cpu()),
                &g.cpu(),
                &t,
                g.hq,
                g.sm_scale,
                &mut decode_geom::f32s_mut(out.cpu())[..n],
                lse,
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
            let tp = addr(b, &table.buffer().view());
            let (o_ind, o_last, o_qip) = (s_indices as i32, s_last as i32, s_qindptr as i32);
            let op = addr_mut(b, &mut out);
            let lp: u64 = lse.as_mut().map(|l| addr_mut(b, l)).unwrap_or(0);
            let tail = decode_geom::CudaTail::new(&g);
            let cfg = decode_geom::cuda_launch::<T>(&g, seqs as u32);
            let mut l = b.stream().launch_builder(&f);
            l.arg(&qp).arg(&kvp).arg(&tp).arg(&o_ind).arg(&o_last).arg(&o_qip);
            l.arg(&op).arg(&lp);
            tail.push(&mut l);
            // SAFETY: `decode_geom::check` and `PageTable::upload` validated every extent the
            // kernel reaches: q/out hold rows*hq*d and lse rows*hq elements; every page id in the
            // table is below the cache's page count and each sequence's length fits its pages;
            // the layer base and strides are 16-byte aligned for the vector loads. The argument
            // list matches `paged_decode_{dtype}_d{D}` in paged_decode.cu.
            unsafe { l.launch(cfg) }.map_err(|e| driver_err(&name, e))?;
            Ok(())
        }
        #[cfg(feature = "wgpu")]
        Inner::Wgpu(b) => {
            use crate::webgpu::{buf, buf_mut, groups_1d, sources};
            let shader = decode_geom::wgsl_variant::<T>(OP, &sources::PAGED_DECODE)?;
            let u = |what: &str, v: usize| decode_geom::u32v(OP, what, v);
            let (lbuf, loff, has) = match &lse {
                Some(l) => (buf_mut(l), u("lse offset", l.offset())?, 1),
                None => (b.scratch(), 0, 0),
            };
            let params = decode_geom::WgslParams {
                num_jobs: u("sequences", seqs)?,
                q_off: u("q offset", q.offset())?,
                kv_off: u("kv offset", kv.offset() + g.layer_base)?,
                has_lse: has,
                out_off: u("out offset", out.offset())?,
                lse_off: loff,
                sec: [s_indptr as u32, s_indices as u32, s_last as u32, s_qindptr as u32],
                ..Default::default()
            };
            let tbuf = buf(&table.buffer().view());
            b.dispatch(
                shader,
                "paged_decode",
                bytemuck::cast_slice(&params.words(&g)),
                &[buf(&q), buf(&kv), tbuf, buf_mut(&out), lbuf],
                groups_1d(seqs * g.hkv, 1),
            )
        }
    }
}
