//! Backward of [`target_logprob`](crate::ops::target_logprob).

use crate::device::Inner;
use crate::ops::LogprobTargets;
use crate::ops::target_logprob::{check_logits, dims_u32};
use crate::{Device, Result, View, ViewMut, cpu, validate};

const OP: &str = "target_logprob_bwd";

/// OVERWRITES `dlogits` `[rows, vocab]` with the gradient of
/// `Σ_i grad_logp[i]·logp[i] + Σ_r grad_entropy[r]·entropy[r]` (see
/// [`target_logprob`](crate::ops::target_logprob)):
/// `dlogits[r, j] = scale·(Σ_{i∈row r} g_i·([j = tok_i] − p_j)) − ge_r·scale·p_j·(log p_j + H_r)`
/// with `p = softmax(scale·logits[r])` and `H_r` its entropy; the entropy term only when
/// `grad_entropy` is given. Masked (−inf) logits get 0 unless targeted. The per-token weight of
/// every RL loss (and SFT's 1/N) goes into `grad_logp`.
#[allow(clippy::too_many_arguments)]
pub fn target_logprob_bwd<'a>(
    dev: &Device,
    logits: impl Into<View<'a, f32>>,
    targets: &LogprobTargets,
    grad_logp: impl Into<View<'a, f32>>,
    grad_entropy: Option<View<'a, f32>>,
    dlogits: impl Into<ViewMut<'a, f32>>,
    rows: usize,
    vocab: usize,
    scale: f32,
) -> Result<()> {
    let (logits, grad_logp, mut dlogits) = (logits.into(), grad_logp.into(), dlogits.into());
    let n = check_logits(dev, OP, &logits, targets, rows, vocab, scale)?;
    let nt = targets.len();
    validate::input(dev, OP, "grad_logp", &grad_logp, nt)?;
    if let Some(ge) = &grad_entropy {
        validate::input(dev, OP, "grad_entropy", ge, rows)?;
    }
    validate::output(dev, OP, "dlogits", &dlogits, n)?;
    let (rows32, vocab32) = dims_u32(OP, rows, vocab, n)?;
    if rows == 0 {
        return Ok(());
    }
    let (rp, tk) = (targets.row_ptr(), targets.tokens());
    match &dev.inner {
        Inner::Cpu => {
            cpu::target_logprob_bwd::target_logprob_bwd(
                &logits.cpu()[..n],
                rp.cpu(),
                tk.cpu(),
                &grad_logp.cpu()[..nt],
                grad_entropy.as_ref().map(|g| &g.cpu()[..rows]),
                &mut dlogits.cpu()[..n],
                vocab,
                scale,
            );
            Ok(())
        }
        #[cfg(feature = "cuda")]
        Inner::Cuda(b) => {
            use crate::cuda::{addr, addr_mut, driver_err};
            use crate::ops::target_logprob::row_blocks;
            use cudarc::driver::PushKernelArg;
            let f = b.function(OP, "target_logprob_bwd_f32")?;
            let (lp, rpp, tkp) = (addr(b, &logits), addr(b, &rp), addr(b, &tk));
            let gp = addr(b, &grad_logp);
            let gep: u64 = grad_entropy.as_ref().map(|g| addr(b, g)).unwrap_or(0);
            let dp = addr_mut(b, &mut dlogits);
            let cfg = row_blocks(rows32);
            let mut l = b.stream().launch_builder(&f);
            l.arg(&lp).arg(&rpp).arg(&tkp).arg(&gp).arg(&gep).arg(&dp);
            l.arg(&rows32).arg(&vocab32).arg(&scale);
            // SAFETY: logits and dlogits hold rows*vocab f32; row_ptr rows+1 i32 (0 ≤ ... ≤
            // n_targets, non-decreasing) and tokens n_targets i32 < vocab, checked on upload;
            // grad_logp n_targets, grad_entropy (when non-null) rows f32; all on this device;
            // the arguments match `target_logprob_bwd_f32`.
            unsafe { l.launch(cfg) }.map_err(|e| driver_err("target_logprob_bwd_f32", e))?;
            Ok(())
        }
        #[cfg(feature = "wgpu")]
        Inner::Wgpu(b) => {
            use crate::webgpu::{buf, buf_mut, groups_1d, sources, u32_of};
            let (gebuf, geoff, has) = match &grad_entropy {
                Some(g) => (buf(g), u32_of(OP, "grad_entropy offset", g.offset())?, 1u32),
                None => (b.scratch(), 0, 0),
            };
            let params: [u32; 8] = [
                rows32,
                vocab32,
                scale.to_bits(),
                has,
                u32_of(OP, "logits offset", logits.offset())?,
                u32_of(OP, "grad_logp offset", grad_logp.offset())?,
                geoff,
                u32_of(OP, "dlogits offset", dlogits.offset())?,
            ];
            b.dispatch(
                &sources::TARGET_LOGPROB_BWD,
                "target_logprob_bwd_f32",
                bytemuck::cast_slice(&params),
                &[buf(&logits), buf(&rp), buf(&tk), buf(&grad_logp), gebuf, buf_mut(&dlogits)],
                groups_1d(rows, 1),
            )
        }
    }
}
