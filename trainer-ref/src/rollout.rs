//! From the sampler's [`RolloutTree`] to what training needs: each query's tree re-ordered in
//! DFS pre-order ([`TreeSpec`], for packed training), each leaf's response, reward and node path
//! ([`LeafRecord`], for the advantage estimators).
//!
//! The sampler creates nodes step by step (breadth-first); packing needs depth-first pre-order,
//! so nodes are renumbered here: a node's new id is its DFS rank, children in creation order.

use treepo_sampler::{FinishReason, RolloutTree};

use crate::model::Tokenizer;
use crate::rl::{LeafRecord, OverlongPenalty};
use crate::tasks::{Problem, Score, Task};
use crate::train::{TrainBatch, TrainError, TreeNodeSpec, TreeSpec};

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
