//! Device buffers of the KV-cached forward pass and of sampling, reused across calls.
//!
//! Every buffer holds `rows` token rows and grows (never shrinks) when a call needs more, up to
//! `EngineConfig::max_batch_rows`; in the steady state of a decode loop nothing is allocated.
//! One residual stream `x` is updated in place (the output projections accumulate into it with
//! `beta = 1`), one normed buffer `ln` serves both RMSNorms of a layer, and `h` receives the
//! final norm — the hidden states the next tokens' logits are computed from.

use treepo_kernels::{Buffer, Device, Indices, KernelError};

use super::weights::Dims;

/// The buffers (see the module docs). Shapes per row: `x`, `ln`, `h`: `[C]`; `att`:
/// `[hq·da]`; `qkv`: `[hq·da + 2·hkv·da]` (for n rows: q `[n, hq·da]`, then k|v
/// `[n, 2·hkv·da]`, k then v in each row); `gu`: `[2·I]` (gate `[n, I]`, then up); `act`:
/// `[I]`; `logits`, `probs`: `[V]`; `ones`, `uniforms`, `tokens`, `logprobs`, `entropy`: one
/// value.
pub(crate) struct Workspace {
    rows: usize,
    pub x: Buffer<f32>,
    pub ln: Buffer<f32>,
    pub qkv: Buffer<f32>,
    pub att: Buffer<f32>,
    pub gu: Buffer<f32>,
    pub act: Buffer<f32>,
    pub ones: Buffer<f32>,
    pub h: Buffer<f32>,
    pub logits: Buffer<f32>,
    pub probs: Buffer<f32>,
    pub uniforms: Buffer<f32>,
    pub tokens: Buffer<i32>,
    pub logprobs: Buffer<f32>,
    pub entropy: Buffer<f32>,
    /// Token ids of the rows being computed.
    pub ids: Option<Indices>,
    /// Their positions (RoPE).
    pub pos: Option<Indices>,
    /// Their KV slots (`page · page_size + row`).
    pub slots: Option<Indices>,
}

impl Workspace {
    /// Buffers for `rows` rows.
    pub fn new(dev: &Device, d: &Dims, rows: usize) -> Result<Workspace, KernelError> {
        let rows = rows.max(1);
        let z = |per: usize| dev.zeros::<f32>(rows * per);
        Ok(Workspace {
            rows,
            x: z(d.c)?,
            ln: z(d.c)?,
            qkv: z(d.qa() + d.kva2())?,
            att: z(d.qa())?,
            gu: z(2 * d.im)?,
            act: z(d.im)?,
            ones: dev.full(rows, 1.0f32)?,
            h: z(d.c)?,
            logits: z(d.vocab)?,
            probs: z(d.vocab)?,
            uniforms: z(1)?,
            tokens: dev.zeros::<i32>(rows)?,
            logprobs: z(1)?,
            entropy: z(1)?,
            ids: None,
            pos: None,
            slots: None,
        })
    }

    /// Makes room for `rows` rows (at most `cap`), reallocating everything but the index
    /// buffers when the current buffers are smaller. Growth at least doubles, so a loop that
    /// slowly widens reallocates O(log) times.
    pub fn ensure(
        &mut self,
        dev: &Device,
        d: &Dims,
        rows: usize,
        cap: usize,
    ) -> Result<(), KernelError> {
        if rows <= self.rows {
            return Ok(());
        }
        let want = rows.max(2 * self.rows).min(cap.max(rows));
        let (ids, pos, slots) = (self.ids.take(), self.pos.take(), self.slots.take());
        *self = Workspace { ids, pos, slots, ..Workspace::new(dev, d, want)? };
        Ok(())
    }
}

/// Replaces the values of an index buffer (reusing it when the length is unchanged).
pub(crate) fn set_indices(
    slot: &mut Option<Indices>,
    dev: &Device,
    values: &[i32],
    bound: usize,
) -> Result<(), KernelError> {
    match slot {
        Some(ix) => ix.update(dev, values, bound),
        None => {
            *slot = Some(Indices::upload(dev, values, bound)?);
            Ok(())
        }
    }
}
