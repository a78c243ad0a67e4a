//! Replays one leaf alone on a fresh engine from its branch keys.

use treepo_sampler::toy::{KvConfig, MarkovConfig, ToyEngine};
use treepo_sampler::{
    BranchKey, DecodeParams, Engine, QueryTree, RolloutTree, SamplingMode, SegmentRequest,
    TreeConfig,
};

/// Re-decodes leaf `leaf` of `q` segment by segment (tree mode) or in one request (sequential
/// mode) on a fresh Markov engine, and returns (tokens, log-probs).
pub fn replay_leaf(
    tree: &RolloutTree,
    q: &QueryTree,
    leaf: usize,
    c: &TreeConfig,
    markov: MarkovConfig,
) -> (Vec<u32>, Vec<f32>) {
    let mut engine = ToyEngine::markov(markov, KvConfig::default());
    let params = DecodeParams {
        stop: c.stop_token_ids.clone(),
        sampling: c.sampling(),
        entropy: c.tree_entropy,
    };
    let root = engine.prefill(&[q.prompt()]).unwrap()[0];
    let path = q.leaf_path(leaf);
    let ordinals: Vec<u32> = path.iter().skip(1).map(|n| q.nodes()[n.index()].ordinal()).collect();
    let (mut tokens, mut logprobs) = (Vec::new(), Vec::new());
    let mut decode = |engine: &mut ToyEngine<_>, node, key, offset: usize, max_tokens: usize| {
        if max_tokens == 0 {
            return;
        }
        let req = SegmentRequest { node, key, response_offset: offset as u64, max_tokens };
        let out = engine.decode_segment(&[req], &params).unwrap().remove(0);
        tokens.extend(out.tokens);
        logprobs.extend(out.logprobs);
    };
    match tree.mode() {
        SamplingMode::Tree => {
            let mut node = root;
            for (depth, id) in path.iter().enumerate().skip(1) {
                let o = ordinals[depth - 1];
                node = *engine.fork(node, o as usize + 1).unwrap().last().unwrap();
                let key = BranchKey::from_path(c.seed, q.id(), &ordinals[..depth]);
                let span = q.nodes()[id.index()].span();
                decode(&mut engine, node, key, span.start, span.len());
            }
        }
        SamplingMode::Sequential => {
            let node = *engine.fork(root, ordinals[0] as usize + 1).unwrap().last().unwrap();
            let key = BranchKey::from_path(c.seed, q.id(), &ordinals[..1]);
            decode(&mut engine, node, key, 0, q.leaves()[leaf].response_len());
        }
    }
    (tokens, logprobs)
}
