//! Log-probability of the chosen token under `softmax(scale · logits)`, and the entropy.

use crate::device::Inner;
use crate::{Device, Indices, Result, View, ViewMut, cpu, validate};

use super::softmax::check_scale;

const OP: &str = "gather_logprob";

/// For each of `rows` rows of `cols` logits: `out[r] = log_softmax(scale · logits[r])[tokens[r]]`
/// and, when `entropy` is given, `entropy[r] = −Σ p log p` of that distribution (`0·log 0 = 0`:
/// masked entries add nothing). `tokens` holds `>= rows` ids with upload bound `<= cols`.
///
/// Numerics as [`log_softmax`](super::log_softmax): `(fl(scale·x_tok) − m) − ln Σ exp(z − m)`;
/// a masked (`−∞`) token gives `−∞`; a row of only `−∞` gives NaN (log-prob and entropy).
/// This is the op the trainer uses to recompute old/new log-probs of sampled tokens: pass the
/// same `scale` (1/temperature) and masking the sampler used.
#[allow(clippy::too_many_arguments)]
pub fn gather_logprob<'a>(
    dev: &Device,
    logits: impl Into<View<'a, f32>>,
    tokens: &Indices,
    out: impl Into<ViewMut<'a, f32>>,
    entropy: Option<ViewMut<'a, f32>>,
    rows: usize,
    cols: usize,
    scale: f32,
) -> Result<()> {
    validate::input(dev, OP, "tokens", &tokens.view(), rows)?;
    tokens.check_bound(OP, "tokens", cols)?;
    gather(dev, logits.into(), tokens.view(), out.into(), entropy, rows, cols, scale)
}

/// [`gather_logprob`] with raw device tokens: only for tokens this crate produced (the
/// categorical draw of `sample`, in `[0, cols)` or `-1`); the kernels write NaN for a token
/// outside `[0, cols)`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gather(
    dev: &Device,
    x: View<'_, f32>,
    tokens: View<'_, i32>,
    mut out: ViewMut<'_, f32>,
    mut entropy: Option<ViewMut<'_, f32>>,
    rows: usize,
    cols: usize,
    scale: f32,
) -> Result<()> {
    crate::ensure!(cols > 0, OP, "cols must be > 0");
    check_scale(OP, scale)?;
    let n = validate::product(OP, &[rows, cols])?;
    validate::input(dev, OP, "logits", &x, n)?;
    validate::input(dev, OP, "tokens", &tokens, rows)?;
    validate::output(dev, OP, "out", &out, rows)?;
    if let Some(e) = &entropy {
        validate::output(dev, OP, "entropy", e, rows)?;
    }
    let rows32 = validate::fits_u32(OP, "rows", rows)?;
    let cols32 = validate::fits_u32(OP, "cols", cols)?;
    if rows == 0 {
        return Ok(());
    }
    match &dev.inner {
        Inner::Cpu => {
            let e = entropy.as_mut().map(|e| &mut e.cpu()[..rows]);
            cpu::gather_logprob::gather_logprob(
                &x.cpu()[..n],
                &tokens.cpu()[..rows],
                &mut out.cpu()[..rows],
                e,
                cols,
                scale,
            );
            Ok(())
        }
        #[cfg(feature = "cuda")]
        Inner::Cuda(b) => {
            use crate::cuda::{addr, addr_mut, driver_err};
            use cudarc::driver::{LaunchConfig, PushKernelArg};
            let f = b.function(OP, "gather_logprob_f32")?;
            let (xp, tp, op) = (addr(b, &x), addr(b, &tokens), addr_mut(b, &mut out));
            let ep: u64 = entropy.as_mut().map(|e| addr_mut(b, e)).unwrap_or(0);
            let cfg = LaunchConfig {
                grid_dim: (rows32, 1, 1),
                block_dim: (1024, 1, 1),
                shared_mem_bytes: 0,
            };
            let mut l = b.stream().launch_builder(&f);
            l.arg(&xp).arg(&tp).arg(&op).arg(&ep).arg(&rows32).arg(&cols32).arg(&scale);
            // SAFETY: logits hold rows*cols f32, tokens rows i32 (the kernel bounds-checks each
            // token), out and entropy (when non-null) rows f32 elements on this device
            // (validated); matches `gather_logprob_f32`.
            unsafe { l.launch(cfg) }.map_err(|e| driver_err("gather_logprob_f32", e))?;
            Ok(())
        }
        #[cfg(feature = "wgpu")]
        Inner::Wgpu(b) => {
            use crate::webgpu::{buf, buf_mut, groups_1d, sources, u32_of};
            u32_of(OP, "logits extent", x.offset() + n)?;
            let (ebuf, eoff, has) = match &entropy {
                Some(e) => (buf_mut(e), u32_of(OP, "entropy offset", e.offset())?, 1u32),
                None => (b.scratch(), 0, 0),
            };
            let params: [u32; 8] = [
                rows32,
                cols32,
                u32_of(OP, "logits offset", x.offset())?,
                u32_of(OP, "tokens offset", tokens.offset())?,
                u32_of(OP, "out offset", out.offset())?,
                eoff,
                has,
                scale.to_bits(),
            ];
            b.dispatch(
                &sources::GATHER_LOGPROB,
                "gather_logprob_f32",
                bytemuck::cast_slice(&params),
                &[buf(&x), buf(&tokens), buf_mut(&out), ebuf],
                groups_1d(rows, 1),
            )
        }
    }
}
