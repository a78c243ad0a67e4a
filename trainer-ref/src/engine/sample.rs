//! Logits and sampling on the device: `logits = h · lm_headᵀ` for every row in one GEMM, then the
//! kernels' `sample` op (temperature, top-k, top-p, the categorical draw with the caller's
//! uniforms, the log-prob under the processed distribution and optionally its entropy).

use treepo_kernels::ops::{self, SampleParams};
use treepo_sampler::{EngineError, SamplingParams};

use super::error::backend;
use super::forward::Core;

/// What one sampling launch returned, per row (reused across steps).
#[derive(Debug, Default)]
pub(crate) struct Drawn {
    pub tokens: Vec<i32>,
    pub logprobs: Vec<f32>,
    pub entropy: Vec<f32>,
}

/// A sampler uniform in `[0, 1)` as the kernels' f32, still `< 1` after rounding.
pub(crate) fn uniform_f32(u: f64) -> f32 {
    let v = u as f32;
    if v >= 1.0 { 1.0 - f32::EPSILON / 2.0 } else { v.max(0.0) }
}

/// The kernels' parameters for the sampler's, or why they are invalid.
pub(crate) fn sample_params(p: &SamplingParams) -> Result<SampleParams, EngineError> {
    let bad = |m: String| Err(EngineError::InvalidRequest(m));
    if !(p.temperature.is_finite() && p.temperature >= 0.0) {
        return bad(format!("temperature {} must be finite and >= 0", p.temperature));
    }
    if !(p.top_p > 0.0 && p.top_p <= 1.0) {
        return bad(format!("top_p {} must be in (0, 1]", p.top_p));
    }
    let s = SampleParams { temperature: p.temperature, top_k: p.top_k, top_p: p.top_p };
    if !s.scale().is_finite() {
        return bad(format!("temperature {} is too small (use 0 for greedy)", p.temperature));
    }
    Ok(s)
}

impl Core<'_> {
    /// `ws.logits[..m·V] = ws.h[..m·C] · lm_headᵀ`.
    pub fn logits(&mut self, m: usize) -> Result<(), EngineError> {
        let (c, v) = (self.d.c, self.d.vocab);
        let lm = &self.w.lm_head;
        let head = self.w.get(self.model, lm).map_err(backend)?;
        ops::gemm(
            &self.dev,
            self.ws.h.slice(0..m * c).map_err(backend)?,
            head,
            self.ws.logits.slice_mut(0..m * v).map_err(backend)?,
            &lm.linear(m, v, c),
        )
        .map_err(backend)
    }

    /// Samples one token for each of the first `m` rows of `ws.h` with `uniforms[..m]` and
    /// downloads the results into `out` (entropies only when `entropy`).
    pub fn sample(
        &mut self,
        m: usize,
        uniforms: &[f32],
        params: &SampleParams,
        entropy: bool,
        out: &mut Drawn,
    ) -> Result<(), EngineError> {
        self.logits(m)?;
        let (dev, ws, v) = (&self.dev, &mut self.ws, self.d.vocab);
        dev.write(ws.uniforms.slice_mut(0..m).map_err(backend)?, &uniforms[..m])
            .map_err(backend)?;
        let ent = if entropy { Some(ws.entropy.slice_mut(0..m).map_err(backend)?) } else { None };
        ops::sample(
            dev,
            ws.logits.slice_mut(0..m * v).map_err(backend)?,
            ws.probs.slice_mut(0..m * v).map_err(backend)?,
            ws.uniforms.slice(0..m).map_err(backend)?,
            ws.tokens.slice_mut(0..m).map_err(backend)?,
            ws.logprobs.slice_mut(0..m).map_err(backend)?,
            ent,
            m,
            v,
            params,
        )
        .map_err(backend)?;
        out.tokens = dev.download(ws.tokens.slice(0..m).map_err(backend)?).map_err(backend)?;
        out.logprobs = dev.download(ws.logprobs.slice(0..m).map_err(backend)?).map_err(backend)?;
        out.entropy = if entropy {
            dev.download(ws.entropy.slice(0..m).map_err(backend)?).map_err(backend)?
        } else {
            Vec::new()
        };
        Ok(())
    }

    /// Writes host hidden states (`m` rows of `C`) into `ws.h`.
    pub fn put_hidden(&mut self, host: &[f32]) -> Result<(), EngineError> {
        let view = self.ws.h.slice_mut(0..host.len()).map_err(backend)?;
        self.dev.write(view, host).map_err(backend)
    }

    /// Downloads the first `m` rows of `ws.h`.
    pub fn get_hidden(&self, m: usize) -> Result<Vec<f32>, EngineError> {
        let view = self.ws.h.slice(0..m * self.d.c).map_err(backend)?;
        self.dev.download(view).map_err(backend)
    }
}
