//! Rotary position embedding (RoPE) with HF's half-split pairing, and HF's inverse frequencies.
//!
//! HF Llama/Qwen2 apply `q' = q·cos + rotate_half(q)·sin` with `rotate_half(x) = [−x₂, x₁]`:
//! element `j` of a head pairs with `j + D/2` (**not** the interleaved `2j, 2j+1` pairs of
//! Meta's original code), so HF checkpoints load without permuting `q_proj`/`k_proj`.
//! Positions are arbitrary per token (tree depths: neither sorted nor contiguous).

use crate::device::Inner;
use crate::{Device, Indices, Result, View, ViewMut, cpu, validate};

const OP: &str = "rope";

/// Positions must be below this (`2^20`): they convert to f32 exactly, and the wgpu kernel's
/// sin/cos range reduction is exact for angles below ~1.6e6.
pub const ROPE_MAX_POSITION: usize = 1 << 20;

/// Frequency scaling of `rope_scaling` in an HF `config.json`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RopeScaling {
    /// `rope_scaling: null` (Qwen2.5, Llama ≤ 3.0): `inv_freq_j = 1 / θ^(2j/D)`.
    None,
    /// `rope_type: "llama3"` (Llama 3.1/3.2): long wavelengths divided by `factor`, short ones
    /// kept, a smooth blend in between.
    Llama3 {
        /// `factor` (32 for Llama-3.2).
        factor: f32,
        /// `low_freq_factor` (1).
        low_freq_factor: f32,
        /// `high_freq_factor` (4).
        high_freq_factor: f32,
        /// `original_max_position_embeddings` (8192).
        original_max_position_embeddings: usize,
    },
}

/// Which way to rotate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeDirection {
    /// By `+angle`: the forward pass.
    Forward,
    /// By `−angle`: the backward pass (the rotation's transpose is its inverse).
    Inverse,
}

/// Layout of the `[tokens, num_heads, head_dim]` tensor [`rope`] rotates: element `(t, h, j)` is
/// at `t·token_stride + h·head_stride + j` from the view's start, so Q or K inside a fused
/// `[tokens, (nH + 2·nKV)·D]` QKV buffer is a view at Q's/K's column offset with
/// `token_stride = (nH + 2·nKV)·D`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RopeShape {
    /// Number of tokens.
    pub tokens: usize,
    /// Heads per token.
    pub num_heads: usize,
    /// Elements per head (even).
    pub head_dim: usize,
    /// Elements between consecutive tokens (`>= (num_heads−1)·head_stride + head_dim`).
    pub token_stride: usize,
    /// Elements between consecutive heads of a token (`>= head_dim`; `head_dim` normally).
    pub head_stride: usize,
}

impl RopeShape {
    /// A contiguous `[tokens, num_heads, head_dim]` tensor.
    pub fn contiguous(tokens: usize, num_heads: usize, head_dim: usize) -> Self {
        RopeShape {
            tokens,
            num_heads,
            head_dim,
            token_stride: num_heads * head_dim,
            head_stride: head_dim,
        }
    }

    /// Elements the view must hold: `(tokens−1)·token_stride + (num_heads−1)·head_stride +
    /// head_dim` (0 when there is no token or head).
    pub fn extent(&self) -> Option<usize> {
        if self.tokens == 0 || self.num_heads == 0 {
            return Some(0);
        }
        (self.tokens - 1)
            .checked_mul(self.token_stride)?
            .checked_add((self.num_heads - 1).checked_mul(self.head_stride)?)?
            .checked_add(self.head_dim)
    }
}

/// HF's `inv_freq` (`[head_dim/2]` f32) for `rope_theta = theta` and `rope_scaling`, computed
/// with the same f32 operations in the same order as `transformers`' `modeling_rope_utils`
/// (`_compute_default_rope_parameters`, `_compute_llama3_parameters`): exponent
/// `fl(2j) / fl(D)` in f32, `θ^e` rounded to f32 (correctly rounded here; PyTorch's `powf` may
/// differ by one ulp), `1/·` in f32; Llama-3 wavelengths `fl(1/f)·fl(2π)` and the blend
/// `((1−s)·f)/factor + s·f` in f32. Errors on an odd or zero `head_dim`, `theta <= 0`, or
/// Llama-3 parameters that HF's validation would reject.
pub fn rope_inv_freq(head_dim: usize, theta: f32, scaling: RopeScaling) -> Result<Vec<f32>> {
    crate::ensure!(
        head_dim > 0 && head_dim.is_multiple_of(2),
        OP,
        "head_dim = {head_dim} must be even and > 0"
    );
    crate::ensure!(theta.is_finite() && theta > 0.0, OP, "theta = {theta} must be finite and > 0");
    let d = head_dim as f32;
    let base: Vec<f32> = (0..head_dim / 2)
        .map(|j| {
            let e = (2 * j) as f32 / d;
            let p = (f64::from(theta)).powf(f64::from(e)) as f32;
            1.0f32 / p
        })
        .collect();
    match scaling {
        RopeScaling::None => Ok(base),
        RopeScaling::Llama3 {
            factor,
            low_freq_factor: low,
            high_freq_factor: high,
            original_max_position_embeddings: orig,
        } => {
            crate::ensure!(
                factor.is_finite() && factor > 0.0,
                OP,
                "llama3 factor = {factor} must be finite and > 0"
            );
            crate::ensure!(
                low.is_finite() && high.is_finite() && low > 0.0 && high > low,
                OP,
                "llama3 needs 0 < low_freq_factor < high_freq_factor (got {low}, {high})"
            );
            crate::ensure!(orig > 0, OP, "llama3 original_max_position_embeddings must be > 0");
            // Python floats (f64) become f32 when they meet an f32 tensor.
            let low_wavelen = (orig as f64 / f64::from(low)) as f32;
            let high_wavelen = (orig as f64 / f64::from(high)) as f32;
            let two_pi = std::f64::consts::TAU as f32;
            let old = orig as f32;
            let span = (f64::from(high) - f64::from(low)) as f32;
            Ok(base
                .into_iter()
                .map(|f| {
                    // `2π / inv_freq` is `inv_freq.reciprocal() * 2π` in PyTorch.
                    let wavelen = (1.0f32 / f) * two_pi;
                    let scaled = if wavelen > low_wavelen { f / factor } else { f };
                    // HF: `~(wavelen < high) * ~(wavelen > low)` (wavelengths are never NaN here).
                    let medium = wavelen >= high_wavelen && wavelen <= low_wavelen;
                    if medium {
                        let s = ((1.0f32 / wavelen) * old - low) / span;
                        (1.0 - s) * scaled / factor + s * scaled
                    } else {
                        scaled
                    }
                })
                .collect())
        }
    }
}

/// Rotates, in place, every head of every token of `x` (layout `shape`) by its token's position:
/// pair `(x[j], x[j + D/2])` of a head, `j < D/2`, with
/// `angle = fl(f32(positions[t]) · inv_freq[j])` (as HF's f32 `inv_freq @ position_ids`) becomes
/// `(x₁·cos − x₂·sin, x₂·cos + x₁·sin)`; [`RopeDirection::Inverse`] rotates by `−angle`.
///
/// `positions` holds at least `tokens` values with upload bound `<= ROPE_MAX_POSITION`;
/// `inv_freq` holds `head_dim/2` values from [`rope_inv_freq`]. sin/cos are accurate to about
/// an ulp on every backend (CUDA `sincosf`, libm on the CPU, a range-reduced polynomial on wgpu).
pub fn rope<'a>(
    dev: &Device,
    x: impl Into<ViewMut<'a, f32>>,
    positions: &Indices,
    inv_freq: impl Into<View<'a, f32>>,
    shape: &RopeShape,
    direction: RopeDirection,
) -> Result<()> {
    let (mut x, inv_freq, s) = (x.into(), inv_freq.into(), *shape);
    crate::ensure!(
        s.head_dim > 0 && s.head_dim.is_multiple_of(2),
        OP,
        "head_dim = {} must be even and > 0",
        s.head_dim
    );
    crate::ensure!(
        s.head_stride >= s.head_dim,
        OP,
        "head_stride = {} < head_dim = {}: heads would overlap",
        s.head_stride,
        s.head_dim
    );
    let row = validate::product(OP, &[s.num_heads.saturating_sub(1), s.head_stride])?
        .checked_add(s.head_dim)
        .ok_or_else(|| crate::KernelError::Invalid { op: OP, msg: "shape overflows".into() })?;
    crate::ensure!(
        s.tokens <= 1 || s.token_stride >= row,
        OP,
        "token_stride = {} < (num_heads-1)*head_stride + head_dim = {row}: tokens would overlap",
        s.token_stride
    );
    let need = s
        .extent()
        .ok_or_else(|| crate::KernelError::Invalid { op: OP, msg: "shape overflows".into() })?;
    validate::output(dev, OP, "x", &x, need)?;
    validate::input(dev, OP, "positions", &positions.view(), s.tokens)?;
    crate::ensure!(
        positions.bound() <= ROPE_MAX_POSITION,
        OP,
        "`positions` may reach {} but RoPE positions must be < {ROPE_MAX_POSITION}",
        positions.bound().saturating_sub(1)
    );
    let half = s.head_dim / 2;
    validate::input(dev, OP, "inv_freq", &inv_freq, half)?;
    let u = |what: &str, v: usize| validate::fits_u32(OP, what, v);
    let (tokens32, heads32, half32) =
        (u("tokens", s.tokens)?, u("num_heads", s.num_heads)?, u("head_dim", half)?);
    let (ts32, hs32) = (u("token_stride", s.token_stride)?, u("head_stride", s.head_stride)?);
    let inverse = u32::from(direction == RopeDirection::Inverse);
    if need == 0 {
        return Ok(());
    }
    match &dev.inner {
        Inner::Cpu => {
            let pos = &positions.view().cpu()[..s.tokens];
            cpu::fast::rope::rope(
                &mut x.cpu()[..need],
                pos,
                &inv_freq.cpu()[..half],
                &s,
                direction,
            );
            Ok(())
        }
        #[cfg(feature = "cuda")]
        Inner::Cuda(b) => {
            use crate::cuda::{addr, addr_mut, driver_err, grid_1d};
            use cudarc::driver::PushKernelArg;
            let f = b.function(OP, "rope_f32")?;
            let (xp, pp, fp) =
                (addr_mut(b, &mut x), addr(b, &positions.view()), addr(b, &inv_freq));
            let mut cfg = grid_1d(s.tokens * half, 256);
            cfg.grid_dim.0 = cfg.grid_dim.0.min(65535 * 8);
            let mut l = b.stream().launch_builder(&f);
            l.arg(&xp).arg(&pp).arg(&fp).arg(&tokens32).arg(&heads32).arg(&half32);
            l.arg(&ts32).arg(&hs32).arg(&inverse);
            // SAFETY: x holds (tokens-1)*token_stride + (heads-1)*head_stride + head_dim f32
            // elements and distinct (t, h) heads do not overlap (validated), so each pair is
            // owned by one thread; positions hold >= tokens i32, inv_freq >= half f32 on this
            // device; the argument list matches `rope_f32`.
            unsafe { l.launch(cfg) }.map_err(|e| driver_err("rope_f32", e))?;
            Ok(())
        }
        #[cfg(feature = "wgpu")]
        Inner::Wgpu(b) => {
            use crate::webgpu::{buf, buf_mut, groups_1d, sources, u32_of};
            let pv = positions.view();
            u32_of(OP, "tokens*head_dim/2", s.tokens * half)?;
            u32_of(OP, "x extent", x.offset() + need)?;
            let params: [u32; 12] = [
                tokens32,
                heads32,
                half32,
                ts32,
                hs32,
                inverse,
                u32_of(OP, "x offset", x.offset())?,
                u32_of(OP, "positions offset", pv.offset())?,
                u32_of(OP, "inv_freq offset", inv_freq.offset())?,
                0,
                0,
                0,
            ];
            b.dispatch(
                &sources::ROPE,
                "rope_f32",
                bytemuck::cast_slice(&params),
                &[buf_mut(&x), buf(&pv), buf(&inv_freq)],
                groups_1d(s.tokens * half, 256),
            )
        }
    }
}
