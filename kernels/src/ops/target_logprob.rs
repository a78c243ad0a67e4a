//! Log-probs of target tokens, several targets per logits row (tree-packed training: the last
//! row of a branching node predicts the first token of each child), and per-row entropies.
//!
//! Targets are CSR ([`LogprobTargets`]): row `r` owns targets `row_ptr[r]..row_ptr[r+1]`, so a
//! row may have none (it still gets an entropy), one, or several (repeats allowed).

use crate::device::Inner;
use crate::{Buffer, Device, Result, View, ViewMut, cpu, validate};

const OP: &str = "target_logprob";

/// Validated CSR targets on one device: `row_ptr` `[rows + 1]` (starts at 0, non-decreasing,
/// ends at the number of targets) and `tokens` `[n_targets]`, each in `[0, vocab)`.
#[derive(Debug)]
pub struct LogprobTargets {
    row_ptr: Buffer<i32>,
    tokens: Buffer<i32>,
    rows: usize,
    vocab: usize,
}

impl LogprobTargets {
    /// Checks `row_ptr` and `tokens` on the host and uploads them; an error names the first
    /// offending position.
    pub fn upload(
        dev: &Device,
        row_ptr: &[i32],
        tokens: &[i32],
        vocab: usize,
    ) -> Result<LogprobTargets> {
        const WHO: &str = "logprob_targets";
        crate::ensure!(!row_ptr.is_empty(), WHO, "row_ptr is empty: it holds rows + 1 entries");
        crate::ensure!(row_ptr[0] == 0, WHO, "row_ptr[0] = {} but must be 0", row_ptr[0]);
        for i in 1..row_ptr.len() {
            crate::ensure!(
                row_ptr[i] >= row_ptr[i - 1],
                WHO,
                "row_ptr[{i}] = {} < row_ptr[{}] = {}: row_ptr must be non-decreasing",
                row_ptr[i],
                i - 1,
                row_ptr[i - 1]
            );
        }
        let rows = row_ptr.len() - 1;
        crate::ensure!(
            row_ptr[rows] as usize == tokens.len(),
            WHO,
            "row_ptr[{rows}] = {} but {} tokens were given",
            row_ptr[rows],
            tokens.len()
        );
        validate::fits_u32(WHO, "vocab", vocab)?;
        if let Some((i, t)) =
            tokens.iter().enumerate().find(|(_, t)| **t < 0 || **t as usize >= vocab)
        {
            return Err(crate::KernelError::Invalid {
                op: WHO,
                msg: format!("tokens[{i}] = {t} is outside [0, {vocab})"),
            });
        }
        Ok(LogprobTargets {
            row_ptr: dev.upload(row_ptr)?,
            tokens: dev.upload(tokens)?,
            rows,
            vocab,
        })
    }

    /// Number of logits rows (`row_ptr.len() - 1`).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of targets.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// True when there is no target (rows may still exist).
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Every token is below this bound.
    pub fn vocab(&self) -> usize {
        self.vocab
    }

    pub(crate) fn row_ptr(&self) -> View<'_, i32> {
        self.row_ptr.view()
    }

    pub(crate) fn tokens(&self) -> View<'_, i32> {
        self.tokens.view()
    }

    /// The checks every op taking targets makes: same device, `rows` and `vocab` agree.
    pub(crate) fn check(
        &self,
        dev: &Device,
        op: &'static str,
        rows: usize,
        vocab: usize,
    ) -> Result<()> {
        crate::ensure!(self.rows == rows, op, "targets have {} rows but rows = {rows}", self.rows);
        crate::ensure!(
            self.vocab <= vocab,
            op,
            "targets were checked against vocab {} > {vocab}",
            self.vocab
        );
        validate::input(dev, op, "targets.row_ptr", &self.row_ptr(), rows + 1)?;
        validate::input(dev, op, "targets.tokens", &self.tokens(), self.len())?;
        Ok(())
    }
}

/// The checks [`target_logprob`] and its backward open with, in this order: `vocab`, `scale`,
/// `logits` `[rows, vocab]` and the targets. Returns `rows·vocab`.
pub(crate) fn check_logits(
    dev: &Device,
    op: &'static str,
    logits: &View<'_, f32>,
    targets: &LogprobTargets,
    rows: usize,
    vocab: usize,
    scale: f32,
) -> Result<usize> {
    crate::ensure!(vocab > 0, op, "vocab must be > 0");
    crate::ensure!(scale.is_finite() && scale > 0.0, op, "scale = {scale} must be finite and > 0");
    let n = validate::product(op, &[rows, vocab])?;
    validate::input(dev, op, "logits", logits, n)?;
    targets.check(dev, op, rows, vocab)?;
    Ok(n)
}

/// `rows` and `vocab` as the kernels' 32-bit integers; `n = rows·vocab` must fit too.
pub(crate) fn dims_u32(
    op: &'static str,
    rows: usize,
    vocab: usize,
    n: usize,
) -> Result<(u32, u32)> {
    let dims = (validate::fits_u32(op, "rows", rows)?, validate::fits_u32(op, "vocab", vocab)?);
    validate::fits_u32(op, "rows*vocab", n)?;
    Ok(dims)
}

/// The CUDA launch of both kernels: one block of 512 threads per row.
#[cfg(feature = "cuda")]
pub(crate) fn row_blocks(rows: u32) -> cudarc::driver::LaunchConfig {
    cudarc::driver::LaunchConfig {
        grid_dim: (rows, 1, 1),
        block_dim: (512, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// `logp[i] = log_softmax(scale·logits[row(i)])[tokens[i]]` for every target `i`, and
/// `entropy[r] = −Σ p log p` of every row when given (`0·log 0 = 0`; rows without targets get
/// one too). `logits` is `[rows, vocab]`, finite or −inf (masked), with a finite entry per row;
/// `scale` (1/temperature) is finite and > 0.
#[allow(clippy::too_many_arguments)]
pub fn target_logprob<'a>(
    dev: &Device,
    logits: impl Into<View<'a, f32>>,
    targets: &LogprobTargets,
    logp: impl Into<ViewMut<'a, f32>>,
    entropy: Option<ViewMut<'a, f32>>,
    rows: usize,
    vocab: usize,
    scale: f32,
) -> Result<()> {
    let (logits, mut logp, mut entropy) = (logits.into(), logp.into(), entropy);
    let n = check_logits(dev, OP, &logits, targets, rows, vocab, scale)?;
    let nt = targets.len();
    validate::output(dev, OP, "logp", &logp, nt)?;
    if let Some(h) = &entropy {
        validate::output(dev, OP, "entropy", h, rows)?;
    }
    let (rows32, vocab32) = dims_u32(OP, rows, vocab, n)?;
    if rows == 0 {
        return Ok(());
    }
    let (rp, tk) = (targets.row_ptr(), targets.tokens());
    match &dev.inner {
        Inner::Cpu => {
            cpu::target_logprob::target_logprob(
                &logits.cpu()[..n],
                rp.cpu(),
                tk.cpu(),
                &mut logp.cpu()[..nt],
                entropy.as_mut().map(|h| &mut h.cpu()[..rows]),
                vocab,
                scale,
            );
            Ok(())
        }
        #[cfg(feature = "cuda")]
        Inner::Cuda(b) => {
            use crate::cuda::{addr, addr_mut, driver_err};
            use cudarc::driver::PushKernelArg;
            let f = b.function(OP, "target_logprob_f32")?;
            let (lp, rpp, tkp) = (addr(b, &logits), addr(b, &rp), addr(b, &tk));
            let outp = addr_mut(b, &mut logp);
            let hp: u64 = entropy.as_mut().map(|h| addr_mut(b, h)).unwrap_or(0);
            let cfg = row_blocks(rows32);
            let mut l = b.stream().launch_builder(&f);
            l.arg(&lp).arg(&rpp).arg(&tkp).arg(&outp).arg(&hp);
            l.arg(&rows32).arg(&vocab32).arg(&scale);
            // SAFETY: logits hold rows*vocab f32; row_ptr rows+1 i32 (0 ≤ ... ≤ n_targets,
            // non-decreasing) and tokens n_targets i32 < vocab, checked on upload; logp holds
            // n_targets, entropy (when non-null) rows f32; all on this device; the arguments
            // match `target_logprob_f32`.
            unsafe { l.launch(cfg) }.map_err(|e| driver_err("target_logprob_f32", e))?;
            Ok(())
        }
        #[cfg(feature = "wgpu")]
        Inner::Wgpu(b) => {
            use crate::webgpu::{buf, buf_mut, groups_1d, sources, u32_of};
            let (hbuf, hoff, has) = match &entropy {
                Some(h) => (buf_mut(h), u32_of(OP, "entropy offset", h.offset())?, 1u32),
                None => (b.scratch(), 0, 0),
            };
            let params: [u32; 8] = [
                rows32,
                vocab32,
                scale.to_bits(),
                has,
                u32_of(OP, "logits offset", logits.offset())?,
                u32_of(OP, "logp offset", logp.offset())?,
                hoff,
                0,
            ];
            b.dispatch(
                &sources::TARGET_LOGPROB,
                "target_logprob_f32",
                bytemuck::cast_slice(&params),
                &[buf(&logits), buf(&rp), buf(&tk), buf_mut(&logp), hbuf],
                groups_1d(rows, 1),
            )
        }
    }
}
