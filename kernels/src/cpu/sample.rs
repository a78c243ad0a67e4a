//! The whole logits → token pipeline of [`crate::ops::sample`], on host slices (what the CPU
//! sampler runs).

use crate::ops::SampleParams;

/// `logits`, `probs`: `[rows, cols]`; `uniforms`, `tokens`, `logprobs`, `entropy`: `[rows]`.
/// Temperature `T > 0`: scale `1/T` → [`top_k_mask`](super::logit_mask::top_k_mask) →
/// [`top_p_mask`](super::logit_mask::top_p_mask) → [`softmax`](super::softmax::softmax) into
/// `probs` → [`categorical`](super::categorical::categorical) →
/// [`gather_logprob`](super::gather_logprob::gather_logprob). `T = 0`: greedy — top-k with
/// `k = 1` (the argmax and its ties), scale 1, the draw with `u = 0` (the lowest index).
/// `logits` is left masked.
#[allow(clippy::too_many_arguments)]
pub fn sample(
    logits: &mut [f32],
    probs: &mut [f32],
    uniforms: &[f32],
    tokens: &mut [i32],
    logprobs: &mut [f32],
    entropy: Option<&mut [f32]>,
    cols: usize,
    params: &SampleParams,
) {
    let rows = tokens.len();
    let scale = params.scale();
    if params.temperature == 0.0 {
        super::logit_mask::top_k_mask(logits, cols, 1);
    } else {
        super::logit_mask::top_k_mask(logits, cols, params.top_k);
        super::logit_mask::top_p_mask(logits, cols, scale, params.top_p);
    }
    super::softmax::softmax(logits, probs, cols, scale);
    if params.temperature == 0.0 {
        super::categorical::categorical(probs, &vec![0.0; rows], tokens, cols);
    } else {
        super::categorical::categorical(probs, uniforms, tokens, cols);
    }
    super::gather_logprob::gather_logprob(logits, tokens, logprobs, entropy, cols, scale);
}
