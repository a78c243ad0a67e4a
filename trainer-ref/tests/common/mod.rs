//! Shared helpers of the trainer tests: tiny models and random rollout trees.
#![allow(dead_code)]

pub mod cli;

use treepo_kernels::Device;
use treepo_kernels::testing::Rng;
use treepo_trainer::model::{Model, ModelConfig, ModelType};
use treepo_trainer::train::{AdamW, OptimConfig, TrainBatch, Trainer, TreeNodeSpec, TreeSpec};

/// A tiny config: vocab 11, C 16, 2 layers, 4 q / 2 kv heads of 4, MLP 24.
pub fn tiny_config(tied: bool, model_type: ModelType) -> ModelConfig {
    let mut c = ModelConfig::tiny(11);
    c.hidden_size = 16;
    c.intermediate_size = 24;
    c.num_hidden_layers = 2;
    c.num_attention_heads = 4;
    c.num_key_value_heads = 2;
    c.head_dim = 4;
    c.tie_word_embeddings = tied;
    c.model_type = model_type;
    c.attention_bias = model_type == ModelType::Qwen2;
    c
}

/// A trainer over a random model with larger-than-default weights (so gradients are not tiny).
pub fn trainer(dev: &Device, cfg: ModelConfig, seed: u64, optim: OptimConfig) -> Trainer {
    let base = Model::random(&Device::cpu(), cfg.clone(), seed).unwrap();
    let mut p = base.params_host().unwrap();
    let mut rng = Rng::new(seed ^ 77);
    for t in &base.layout().tensors {
        if !t.name.ends_with("norm.weight") {
            for v in &mut p[t.range.clone()] {
                *v = (rng.normal() * 0.3) as f32;
            }
        } else {
            for v in &mut p[t.range.clone()] {
                *v = 1.0 + (rng.normal() * 0.1) as f32;
            }
        }
    }
    let model = Model::from_params(dev, cfg, &p).unwrap();
    let optim = AdamW::new(&model, optim).unwrap();
    Trainer::new(model, optim)
}

/// A random rollout tree: a prompt of `prompt` tokens, then `depth` levels of segments of 1..=3
/// tokens with 1..=3 children each (capped), some leaves ending early.
pub fn random_tree(rng: &mut Rng, vocab: u32, prompt: usize, depth: usize) -> TreeSpec {
    let tok = |rng: &mut Rng| (rng.below(vocab as usize)) as u32;
    let mut nodes =
        vec![TreeNodeSpec { parent: None, tokens: (0..prompt).map(|_| tok(rng)).collect() }];
    let mut leaves = Vec::new();
    // DFS pre-order construction.
    fn grow(
        rng: &mut Rng,
        nodes: &mut Vec<TreeNodeSpec>,
        leaves: &mut Vec<usize>,
        parent: usize,
        level: usize,
        depth: usize,
        vocab: u32,
    ) {
        let kids = if level == 0 { 2 + rng.below(2) } else { 1 + rng.below(3) };
        for _ in 0..kids {
            let len = 1 + rng.below(3);
            let tokens = (0..len).map(|_| rng.below(vocab as usize) as u32).collect();
            nodes.push(TreeNodeSpec { parent: Some(parent), tokens });
            let me = nodes.len() - 1;
            if level + 1 >= depth || rng.below(4) == 0 {
                leaves.push(me);
            } else {
                grow(rng, nodes, leaves, me, level + 1, depth, vocab);
            }
        }
    }
    let _ = tok;
    grow(rng, &mut nodes, &mut leaves, 0, 0, depth, vocab);
    TreeSpec { nodes, leaves }
}

/// Every leaf of `trees` as `(prompt, response)` token lists, in leaf order.
pub fn leaf_sequences(trees: &[TreeSpec]) -> Vec<(Vec<u32>, Vec<u32>)> {
    let mut out = Vec::new();
    for t in trees {
        for &leaf in &t.leaves {
            let mut chain = vec![leaf];
            while let Some(p) = t.nodes[*chain.last().unwrap()].parent {
                chain.push(p);
            }
            let mut resp = Vec::new();
            for &n in chain.iter().rev().skip(1) {
                resp.extend(&t.nodes[n].tokens);
            }
            out.push((t.nodes[0].tokens.clone(), resp));
        }
    }
    out
}

/// The per-leaf layout of `trees`.
pub fn per_leaf_batch(trees: &[TreeSpec]) -> TrainBatch {
    let seqs = leaf_sequences(trees);
    let refs: Vec<(&[u32], &[u32])> =
        seqs.iter().map(|(p, r)| (p.as_slice(), r.as_slice())).collect();
    TrainBatch::from_sequences(&refs).unwrap()
}
