//! The sequential baseline, tree vs sequential cost, and the DOT/SVG renderings.

mod common;

use common::{cfg, check_tree};
use treepo_sampler::toy::{self, KvConfig, MarkovConfig, ToyEngine};
use treepo_sampler::{FallbackPolicy, NodeId, Query, SamplingMode, TreeSampler};

const PROMPTS: [&[u32]; 3] = [&[12, 9, 13], &[14, 11, 5, 5], &[13]];

fn engine() -> ToyEngine<toy::MarkovModel> {
    ToyEngine::markov(
        MarkovConfig { stop_logit: -6.0, stop_ramp: 0.01, ..MarkovConfig::default() },
        KvConfig::default(),
    )
}

#[test]
fn sequential_baseline_shape() {
    let c = cfg(6, 4, 2, 8);
    let sampler = TreeSampler::new(c.clone(), toy::text_hooks()).unwrap();
    let mut e = engine();
    let seq = sampler.sample_sequential(&mut e, &Query::batch(&PROMPTS)).unwrap();
    check_tree(&seq, &c);
    assert_eq!(seq.mode(), SamplingMode::Sequential);
    // One prefill, one fork of the prompt into w per query, no fallback.
    assert_eq!(e.stats().prefills, 1);
    assert_eq!(seq.cost().forks, PROMPTS.len());
    assert_eq!(seq.cost().fork_children, 8 * PROMPTS.len());
    assert_eq!(seq.cost().fallbacks, 0);
    let mut decoded = 0;
    for q in seq.queries() {
        assert_eq!(q.leaves().len(), 8);
        assert_eq!(q.nodes()[0].children().len(), 8);
        for (i, leaf) in q.leaves().iter().enumerate() {
            // A chain of chunks of l = 4 (the last may be shorter), under a root child.
            let path = q.leaf_path(i);
            assert!(path[1..].windows(2).all(|w| q.nodes()[w[0].index()].children() == [w[1]]));
            assert!(
                path[1..path.len() - 1].iter().all(|n| q.nodes()[n.index()].tokens().len() == 4)
            );
            assert!(leaf.response_len() <= 24);
            decoded += leaf.response_len();
        }
    }
    assert_eq!(seq.cost().tokens_decoded, decoded);
    assert_eq!(e.kv_pages_in_use(), 0);
}

#[test]
fn tree_decodes_fewer_tokens_than_sequential() {
    let mut c = cfg(8, 4, 2, 16);
    c.seed = 3;
    let sampler = TreeSampler::new(c.clone(), toy::text_hooks()).unwrap();
    let tree = sampler.sample(&mut engine(), &Query::batch(&PROMPTS)).unwrap();
    let seq = sampler.sample_sequential(&mut engine(), &Query::batch(&PROMPTS)).unwrap();
    check_tree(&tree, &c);
    assert_eq!(tree.total_leaves(), seq.total_leaves());
    assert!(
        tree.cost().tokens_decoded < seq.cost().tokens_decoded,
        "tree {} vs sequential {}",
        tree.cost().tokens_decoded,
        seq.cost().tokens_decoded
    );
    // Shared prefixes: the tree stores fewer tokens than its leaves' responses add up to.
    for q in tree.queries() {
        let responses: usize = q.leaves().iter().map(|l| l.response_len()).sum();
        assert!(q.tree_tokens() < responses);
    }
}

#[test]
fn subgroups_follow_the_tree() {
    let mut c = cfg(4, 4, 2, 8);
    c.tree_fallback_policy = FallbackPolicy::Random;
    let sampler = TreeSampler::new(c, toy::text_hooks()).unwrap();
    let tree = sampler.sample(&mut engine(), &Query::batch(&PROMPTS[..1])).unwrap();
    let q = &tree.queries()[0];
    for i in 0..q.leaves().len() {
        assert_eq!(q.subgroup(i, 0).len(), q.leaves().len());
        assert_eq!(q.ancestor_at_depth(i, 0), Some(NodeId::ROOT));
        let depth = q.leaf_path(i).len() - 1;
        // Depth-k subgroups shrink and always hold the leaf; past the leaf's depth they are empty.
        let mut prev = usize::MAX;
        for k in 0..=depth {
            let g = q.subgroup(i, k);
            assert!(g.contains(&i) && g.len() <= prev);
            prev = g.len();
        }
        assert_eq!(q.subgroup(i, depth), vec![i]);
        assert!(q.subgroup(i, depth + 1).is_empty());
    }
}

#[test]
fn renderings() {
    let sampler = TreeSampler::new(cfg(4, 4, 2, 6), toy::text_hooks()).unwrap();
    let tree = sampler.sample(&mut engine(), &Query::batch(&PROMPTS[..2])).unwrap();
    let dot = tree.to_dot();
    assert!(dot.starts_with("digraph rollout {") && dot.trim_end().ends_with('}'));
    let nodes: usize = tree.queries().iter().map(|q| q.nodes().len()).sum();
    assert_eq!(dot.matches("[label=").count(), nodes);
    assert_eq!(dot.matches("->").count(), nodes - tree.queries().len());
    assert_eq!(dot.matches("style=rounded").count(), tree.total_leaves());
    let svg = tree.to_svg();
    assert!(
        svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\"")
            && svg.trim_end().ends_with("</svg>")
    );
    assert_eq!(svg.matches("<rect x=").count(), nodes);
    assert_eq!(svg.matches("<line ").count(), nodes - tree.queries().len());
    assert!(!svg.contains("NaN"));
    // Deep chains do not overflow the layout.
    let mut deep = cfg(200, 1, 1, 1);
    deep.stop_token_ids.clear();
    let tree = TreeSampler::new(deep, toy::text_hooks())
        .unwrap()
        .sample(&mut engine(), &Query::batch(&PROMPTS[..1]))
        .unwrap();
    assert_eq!(tree.to_svg().matches("<rect x=").count(), 201);
}
