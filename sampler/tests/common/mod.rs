//! Helpers shared by the integration tests.
#![allow(dead_code)]

use treepo_sampler::toy::{EOS, EOT, KvConfig, ScriptSegment, ScriptedModel, ToyEngine};
use treepo_sampler::{FallbackPolicy, QueryStatus, RolloutTree, TotalBudgetPolicy, TreeConfig};

/// A filler token that never stops anything ("a").
pub const FILL: u32 = 12;

/// A config with the given shape, stop set {EOS, EOT} and seed 1.
pub fn cfg(d: usize, l: usize, b: usize, w: usize) -> TreeConfig {
    let mut c = TreeConfig::with_shape(d, l, b, w);
    c.stop_token_ids = [EOS, EOT].into();
    c.seed = 1;
    c
}

/// A scripted engine with an unlimited pool.
pub fn scripted(
    rule: impl Fn(usize, &[u32]) -> ScriptSegment + 'static,
) -> ToyEngine<ScriptedModel> {
    ToyEngine::new(ScriptedModel::new(rule), KvConfig::default())
}

/// A scripted engine with a given pool.
pub fn scripted_pool(
    page_size: usize,
    pool_pages: usize,
    rule: impl Fn(usize, &[u32]) -> ScriptSegment + 'static,
) -> ToyEngine<ScriptedModel> {
    ToyEngine::new(ScriptedModel::new(rule), KvConfig { page_size, pool_pages })
}

/// Child-ordinal path of a node.
pub fn ordinals(q: &treepo_sampler::QueryTree, node: treepo_sampler::NodeId) -> Vec<u32> {
    q.node_path(node).iter().skip(1).map(|&n| q.nodes()[n.index()].ordinal()).collect()
}

/// Structural invariants every rollout must satisfy; panics with a message otherwise.
pub fn check_tree(tree: &RolloutTree, c: &TreeConfig) {
    let w = c.width();
    for q in tree.queries() {
        let mut seen = std::collections::HashSet::new();
        for (i, leaf) in q.leaves().iter().enumerate() {
            assert!(
                seen.insert(leaf.node()),
                "query {}: leaf node {:?} twice",
                q.id(),
                leaf.node()
            );
            let node = &q.nodes()[leaf.node().index()];
            assert!(node.children().is_empty(), "query {}: leaf {i} has children", q.id());
            let path = q.leaf_path(i);
            assert_eq!(path[0], treepo_sampler::NodeId::ROOT);
            let concat: Vec<u32> =
                path.iter().flat_map(|n| q.nodes()[n.index()].tokens().to_vec()).collect();
            assert_eq!(q.response_tokens(i), concat);
            assert_eq!(concat.len(), leaf.response_len(), "query {}: leaf {i} length", q.id());
            assert_eq!(q.response_logprobs(i).len(), concat.len());
            assert!(leaf.response_len() <= c.max_response());
            assert!(node.depth() as usize <= c.depth(), "depth {} > d", node.depth());
        }
        for (i, n) in q.nodes().iter().enumerate().skip(1) {
            let parent = &q.nodes()[n.parent().expect("non-root has a parent").index()];
            assert_eq!(n.span().start, parent.span().end, "node {i} span");
            assert_eq!(n.depth(), parent.depth() + 1);
        }
        for s in q.steps() {
            assert!(
                s.leaves + s.active <= w,
                "query {} step {}: {} + {} > w",
                q.id(),
                s.step,
                s.leaves,
                s.active
            );
            assert!(
                s.leaves + s.split.iter().sum::<usize>() <= w,
                "step {} split {:?}",
                s.step,
                s.split
            );
        }
        assert!(q.leaves().len() <= w);
        let traj = c.tree_total_budget_policy == TotalBudgetPolicy::ByResponseTraj;
        if traj
            && q.status() == QueryStatus::Complete
            && c.tree_fallback_policy != FallbackPolicy::NoFallback
        {
            assert_eq!(q.leaves().len(), w, "query {} should have exactly w leaves", q.id());
        }
    }
}

pub mod replay;
