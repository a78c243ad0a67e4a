//! Helpers shared by the engine tests: small random models with well-separated logits, the
//! full-sequence reference forward, and request builders.
#![allow(dead_code)]

use treepo_kernels::Device;
use treepo_kernels::testing::{Rng, Tol, assert_close};
use treepo_sampler::{
    BranchKey, DecodeParams, EngineNode, EntropyMode, SamplingParams, SegmentRequest,
};
use treepo_trainer::model::{Activations, Model, ModelConfig, PackedBatch, ParamLayout};

/// Logit tolerance between the KV-cached path and the packed forward (both f32).
pub const TOL: Tol = Tol { atol: 2e-4, rtol: 2e-4 };

/// A small Qwen2-style config: 2 layers, C = 32, 4 q heads and 2 KV heads of 16 (GQA, q_dim
/// 64 != C), MLP 48, q/k/v biases, untied head.
pub fn small(vocab: usize) -> ModelConfig {
    let mut c = ModelConfig::tiny(vocab);
    c.hidden_size = 32;
    c.intermediate_size = 48;
    c.num_hidden_layers = 2;
    c.num_attention_heads = 4;
    c.num_key_value_heads = 2;
    c.head_dim = 16;
    c.tie_word_embeddings = false;
    c.max_position_embeddings = 256;
    c
}

/// A model with every parameter normal(0, `std`) (norm weights 1 + normal(0, 0.1)): unlike the
/// 0.02 training init, its logits are well separated, so greedy choices are not float ties.
pub fn random_model(dev: &Device, cfg: ModelConfig, seed: u64, std: f64) -> Model {
    let layout = ParamLayout::new(&cfg);
    let mut rng = Rng::new(seed);
    let mut p = vec![0f32; layout.total];
    for t in &layout.tensors {
        for v in &mut p[t.range.clone()] {
            *v = if t.name.ends_with("norm.weight") {
                (1.0 + 0.1 * rng.normal()) as f32
            } else {
                (std * rng.normal()) as f32
            };
        }
    }
    Model::from_params(dev, cfg, &p).expect("model")
}

/// Logits `[N, V]` of the packed (training) forward over one causal sequence.
pub fn full_logits(model: &Model, tokens: &[u32]) -> Vec<f32> {
    let dev = model.device();
    let batch = PackedBatch::causal(dev, model.config(), tokens).expect("batch");
    let mut acts = Activations::new(dev, model.config(), tokens.len()).expect("acts");
    model.forward(&batch, &mut acts).expect("forward");
    dev.download(acts.logits()).expect("download")
}

/// Compares one row of logits.
pub fn check_row(what: &str, got: &[f32], want: &[f32], tol: Tol) -> f64 {
    let want: Vec<f64> = want.iter().map(|&x| f64::from(x)).collect();
    assert_close(what, got, &want, tol)
}

/// Decode parameters: `temperature` (0 = greedy), stop set `stop`, entropies computed.
pub fn params(temperature: f32, stop: &[u32]) -> DecodeParams {
    DecodeParams {
        stop: stop.iter().copied().collect(),
        sampling: SamplingParams { temperature, top_k: 0, top_p: 1.0 },
        entropy: EntropyMode::Compute,
    }
}

/// A request for `node` with branch key `(seed 7, query, path)`.
pub fn req(node: EngineNode, query: u64, path: &[u32], offset: u64, max: usize) -> SegmentRequest {
    let key = path.iter().fold(BranchKey::root(7, query), |k, &o| k.child(o));
    SegmentRequest { node, key, response_offset: offset, max_tokens: max }
}

/// Deterministic pseudo-random tokens in `[lo, vocab)`.
pub fn tokens(n: usize, vocab: u32, lo: u32, salt: u32) -> Vec<u32> {
    (0..n as u32)
        .map(|i| lo + (i.wrapping_mul(7919) ^ salt.wrapping_mul(104_729)) % (vocab - lo))
        .collect()
}
