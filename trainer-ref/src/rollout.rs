//! From the sampler's [`RolloutTree`] to what training needs: each query's tree re-ordered in
//! DFS pre-order ([`TreeSpec`], for packed training), each leaf's response, reward and node path
//! ([`LeafRecord`], for the advantage estimators).
//!
//! The sampler creates nodes step by step (breadth-first); packing needs depth-first pre-order,
//! so nodes are renumbered here: a node's new id is its DFS rank, children in creation order.
//!
//! For the edge-level estimators, [`Rollouts::edge_topology`] builds the
//! [`RolloutTopology`] of the same trees ([`EdgeTopology`]).

use std::collections::BTreeMap;

use treepo_sampler::{FinishReason, RolloutTree};

use crate::model::Tokenizer;
use crate::rl::{BranchingWindow, EdgeStats, LeafRecord, OverlongPenalty, RolloutTopology};
use crate::tasks::{Problem, Score, Task};
use crate::train::{EdgeRef, TrainBatch, TrainError, TreeNodeSpec, TreeSpec};

/// One scored trajectory.
#[derive(Clone, Debug, PartialEq)]
pub struct ScoredLeaf {
    /// Query index in the batch.
    pub query: usize,
    /// DFS-renumbered node ids from the first segment down to the leaf (prompt excluded).
    pub path: Vec<u32>,
    /// Response token ids (stop token included when emitted).
    pub response: Vec<u32>,
    /// The decoded response.
    pub text: String,
    /// Why it ended.
    pub reason: FinishReason,
    /// The task's verdict.
    pub score: Score,
    /// The reward used for training (the task's, plus the overlong penalty).
    pub reward: f64,
}

/// The edge-level view of [`Rollouts`] ([`Rollouts::edge_topology`]).
#[derive(Clone, Debug)]
pub struct EdgeTopology {
    /// One root per query with at least one leaf (query order), then that query's nodes on some
    /// leaf's path in DFS pre-order; leaf rewards are the leaves' training rewards
    /// ([`ScoredLeaf::reward`]).
    pub topology: RolloutTopology,
    /// Per topology node, the rollout edge it stands for ([`EdgeRef::tree`] = the query);
    /// `None` for the roots.
    pub edges: Vec<Option<EdgeRef>>,
}

/// A sampled batch, scored and laid out for training.
#[derive(Clone, Debug)]
pub struct Rollouts {
    /// Per query, its tree in DFS pre-order with its leaves in [`Rollouts::leaves`] order.
    pub trees: Vec<TreeSpec>,
    /// Every leaf of every query, query by query.
    pub leaves: Vec<ScoredLeaf>,
}

impl Rollouts {
    /// Scores every leaf of `tree` (queries in `problems` order) with `task`.
    pub fn collect(
        tree: &RolloutTree,
        problems: &[Problem],
        task: &dyn Task,
        tok: &Tokenizer,
        overlong: Option<&OverlongPenalty>,
    ) -> Result<Self, TrainError> {
        if tree.queries().len() != problems.len() {
            return Err(TrainError::Batch(format!(
                "{} queries sampled for {} problems",
                tree.queries().len(),
                problems.len()
            )));
        }
        let mut trees = Vec::with_capacity(problems.len());
        let mut leaves = Vec::new();
        for (qi, (q, problem)) in tree.queries().iter().zip(problems).enumerate() {
            // DFS pre-order renumbering.
            let n = q.nodes().len();
            let mut rank = vec![u32::MAX; n];
            let mut order = Vec::with_capacity(n);
            let mut stack = vec![0usize];
            while let Some(i) = stack.pop() {
                rank[i] = order.len() as u32;
                order.push(i);
                stack.extend(q.nodes()[i].children().iter().rev().map(|c| c.index()));
            }
            let nodes: Vec<TreeNodeSpec> = order
                .iter()
                .map(|&i| {
                    let node = &q.nodes()[i];
                    let tokens = if i == 0 { q.prompt().to_vec() } else { node.tokens().to_vec() };
                    TreeNodeSpec { parent: node.parent().map(|p| rank[p.index()] as usize), tokens }
                })
                .collect();
            let mut leaf_nodes = Vec::with_capacity(q.leaves().len());
            for (li, leaf) in q.leaves().iter().enumerate() {
                let response = q.response_tokens(li);
                let text = tok.decode(&response)?;
                let score =
                    task.score(problem, &text).map_err(|e| TrainError::Batch(e.to_string()))?;
                let reward = match overlong {
                    Some(p) => p.apply(score.reward, response.len())?,
                    None => score.reward,
                };
                let path = q.leaf_path(li).iter().skip(1).map(|id| rank[id.index()]).collect();
                leaf_nodes.push(rank[leaf.node().index()] as usize);
                leaves.push(ScoredLeaf {
                    query: qi,
                    path,
                    response,
                    text,
                    reason: leaf.reason(),
                    score,
                    reward,
                });
            }
            trees.push(TreeSpec { nodes, leaves: leaf_nodes });
        }
        Ok(Rollouts { trees, leaves })
    }

    /// Leaf records for the advantage estimators (one token count per response token).
    pub fn leaf_records(&self) -> Vec<LeafRecord> {
        self.leaves
            .iter()
            .map(|l| LeafRecord {
                query: l.query,
                path: l.path.clone(),
                reward: l.reward,
                num_tokens: l.response.len(),
            })
            .collect()
    }

    /// Which nodes of query `q`'s tree lie on some leaf's path (the prompt included when the
    /// query has a leaf); checks the leaf ids and that parents precede their children.
    fn live_nodes(&self, q: usize) -> Result<Vec<bool>, TrainError> {
        let tree = &self.trees[q];
        let mut live = vec![false; tree.nodes.len()];
        for &leaf in &tree.leaves {
            if leaf >= tree.nodes.len() {
                return Err(TrainError::Batch(format!("query {q}: leaf {leaf} is not a node")));
            }
            let mut node = leaf;
            loop {
                if live[node] {
                    break;
                }
                live[node] = true;
                match tree.nodes[node].parent {
                    Some(p) if p < node => node = p,
                    Some(p) => {
                        return Err(TrainError::Batch(format!(
                            "query {q}: node {node} names later node {p} as parent"
                        )));
                    }
                    None if node == 0 => break,
                    None => {
                        return Err(TrainError::Batch(format!(
                            "query {q}: node {node} has no parent but is not the prompt"
                        )));
                    }
                }
            }
        }
        Ok(live)
    }

    /// Every edge on some leaf's path (nodes that no trajectory reaches are left out), query by
    /// query, nodes in DFS pre-order; edges without tokens included.
    pub fn edges(&self) -> Result<Vec<EdgeRef>, TrainError> {
        let mut edges = Vec::new();
        for q in 0..self.trees.len() {
            let live = self.live_nodes(q)?;
            edges
                .extend((1..live.len()).filter(|&n| live[n]).map(|node| EdgeRef { tree: q, node }));
        }
        Ok(edges)
    }

    /// The [`RolloutTopology`] of these rollouts for the edge-level estimators. Per edge:
    /// `num_tokens` = the segment's token count, `old_logprob_sum` = `old_logprob_sums[edge]`
    /// (the sum of the old log-probs of the segment's tokens; an edge without tokens may be left
    /// out and sums to 0), and `window` = [`BranchingWindow::Inside`] for every edge: the LM
    /// sampler has no SDE branching window (TreeGRPO's diffusion setting), so every edge is
    /// trained. Queries without leaves are left out; a leaf's reward is its training reward.
    /// Errors: a query whose leaf count differs from its tree's, two leaves on one node, a
    /// missing log-prob sum, and whatever [`RolloutTopology::new`] rejects (a leaf node with
    /// children, a non-finite sum or reward).
    pub fn edge_topology(
        &self,
        old_logprob_sums: &BTreeMap<EdgeRef, f64>,
    ) -> Result<EdgeTopology, TrainError> {
        let mut rewards_of: Vec<Vec<f64>> = vec![Vec::new(); self.trees.len()];
        for l in &self.leaves {
            let Some(r) = rewards_of.get_mut(l.query) else {
                return Err(TrainError::Batch(format!(
                    "a leaf names query {} of {}",
                    l.query,
                    self.trees.len()
                )));
            };
            r.push(l.reward);
        }
        let (mut parents, mut stats, mut rewards, mut edges) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (q, tree) in self.trees.iter().enumerate() {
            if tree.leaves.len() != rewards_of[q].len() {
                return Err(TrainError::Batch(format!(
                    "query {q}: {} leaves in the tree, {} scored",
                    tree.leaves.len(),
                    rewards_of[q].len()
                )));
            }
            if tree.leaves.is_empty() {
                continue;
            }
            let live = self.live_nodes(q)?;
            let mut reward = vec![None; tree.nodes.len()];
            for (&leaf, &r) in tree.leaves.iter().zip(&rewards_of[q]) {
                if reward[leaf].replace(r).is_some() {
                    return Err(TrainError::Batch(format!(
                        "query {q}: two leaves end at node {leaf}"
                    )));
                }
            }
            // Topology id of each live node; parents precede children (checked by live_nodes).
            let mut id = vec![usize::MAX; tree.nodes.len()];
            for (node, spec) in tree.nodes.iter().enumerate().filter(|&(n, _)| live[n]) {
                id[node] = parents.len();
                let edge = EdgeRef { tree: q, node };
                let num_tokens = spec.tokens.len();
                let old_logprob_sum = match (spec.parent, old_logprob_sums.get(&edge)) {
                    (None, _) => 0.0,
                    (Some(_), Some(&s)) => s,
                    (Some(_), None) if num_tokens == 0 => 0.0,
                    (Some(_), None) => {
                        return Err(TrainError::Batch(format!(
                            "query {q}: no old log-prob sum for the edge into node {node}"
                        )));
                    }
                };
                parents.push(spec.parent.map(|p| id[p]));
                stats.push(match spec.parent {
                    // A root has no edge; its stats are ignored.
                    None => EdgeStats::default(),
                    Some(_) => {
                        EdgeStats { old_logprob_sum, num_tokens, window: BranchingWindow::Inside }
                    }
                });
                rewards.push(reward[node]);
                edges.push(spec.parent.map(|_| edge));
            }
        }
        if parents.is_empty() {
            return Err(TrainError::Batch("no query has a leaf".into()));
        }
        let topology = RolloutTopology::new(parents, stats, rewards)?;
        Ok(EdgeTopology { topology, edges })
    }

    /// Keeps only the queries whose index `keep` returns true for (dynamic sampling), in order.
    pub fn retain_queries(&mut self, keep: impl Fn(usize) -> bool) {
        let kept: Vec<usize> = (0..self.trees.len()).filter(|&q| keep(q)).collect();
        let remap = |q: usize| kept.iter().position(|&k| k == q);
        self.trees = kept.iter().map(|&q| self.trees[q].clone()).collect();
        self.leaves.retain(|l| kept.contains(&l.query));
        for l in &mut self.leaves {
            l.query = remap(l.query).unwrap_or(l.query);
        }
    }

    /// The batch for training: whole trees packed (`packed = true`, shared prefixes once) or
    /// every trajectory alone. Leaves keep [`Rollouts::leaves`] order either way.
    pub fn batch(&self, packed: bool) -> Result<TrainBatch, TrainError> {
        if packed {
            return TrainBatch::from_trees(&self.trees);
        }
        let prompts: Vec<&[u32]> =
            self.leaves.iter().map(|l| self.trees[l.query].nodes[0].tokens.as_slice()).collect();
        let seqs: Vec<(&[u32], &[u32])> =
            prompts.iter().zip(&self.leaves).map(|(p, l)| (*p, l.response.as_slice())).collect();
        TrainBatch::from_sequences(&seqs)
    }

    /// Mean task reward and accuracy over leaves.
    pub fn mean_reward_acc(&self) -> (f64, f64) {
        let n = self.leaves.len().max(1) as f64;
        (
            self.leaves.iter().map(|l| l.score.reward).sum::<f64>() / n,
            self.leaves.iter().map(|l| l.score.acc()).sum::<f64>() / n,
        )
    }
}
