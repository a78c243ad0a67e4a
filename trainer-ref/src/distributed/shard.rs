//! A rollout shard as flat arrays: what a rollout worker sends back for its slice of an RL
//! step's queries, and what the learners rebuild [`Rollouts`] from.
//!
//! Layout (Q queries, N nodes, T tokens, L leaves; CSR pointers start at 0):
//!
//! ```text
//! problem_index [Q]    u64  the train-split index of each query's problem
//! node_ptr      [Q+1]  u64  query q's nodes are rows node_ptr[q]..node_ptr[q+1], DFS pre-order,
//!                           the prompt first
//! parent        [N]    i64  parent row within the query (−1 for the prompt)
//! token_ptr     [N+1]  u64  node n's tokens are tokens[token_ptr[n]..token_ptr[n+1]]
//! tokens        [T]    u32  the prompt's tokens, then each segment's
//! logprobs      [T]    f32  the sampling policy's log-prob of each token (NaN for the prompt)
//! leaf_ptr      [Q+1]  u64  query q's leaves are leaf_ptr[q]..leaf_ptr[q+1]
//! leaf_node     [L]    u64  each leaf's node row within its query
//! reward        [L]    f64  the training reward (task reward plus any overlong penalty)
//! task_reward   [L]    f64  the task's reward
//! correct       [L]    u8   the task's verdict
//! well_formed   [L]    u8   the response follows the task's format
//! finish        [L]    u8   why it ended ([`finish_code`])
//! ```
//!
//! plus two scalars: the policy version the shard was sampled with and the tokens the engine
//! decoded. Responses and paths are not stored: a leaf's path is its chain of parents, its
//! response the concatenation of the path's segments. The answer text is re-decoded by whoever
//! needs it; the extracted answer (for majority votes) is not carried.

use treepo_sampler::{FinishReason, RolloutTree};

use crate::model::Tokenizer;
use crate::rl::OverlongPenalty;
use crate::rollout::{Rollouts, ScoredLeaf};
use crate::tasks::{Problem, Score, Task};
use crate::train::{TrainError, TreeNodeSpec, TreeSpec};

/// One rollout worker's slice of a step (see the module doc for the layout).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RolloutShard {
    /// The policy version (optimizer steps taken) of the weights that sampled it.
    pub policy_version: u64,
    /// Tokens the engine decoded for it.
    pub tokens_decoded: u64,
    /// Per query, its problem's train-split index.
    pub problem_index: Vec<u64>,
    /// Query → node rows.
    pub node_ptr: Vec<u64>,
    /// Per node, its parent row in its query (−1 for the prompt).
    pub parent: Vec<i64>,
    /// Node → token rows.
    pub token_ptr: Vec<u64>,
    /// Every node's tokens.
    pub tokens: Vec<u32>,
    /// Sampling log-prob per token (NaN for prompt tokens).
    pub logprobs: Vec<f32>,
    /// Query → leaves.
    pub leaf_ptr: Vec<u64>,
    /// Per leaf, its node row in its query.
    pub leaf_node: Vec<u64>,
    /// Per leaf, the training reward.
    pub reward: Vec<f64>,
    /// Per leaf, the task's reward.
    pub task_reward: Vec<f64>,
    /// Per leaf, 1 when correct.
    pub correct: Vec<u8>,
    /// Per leaf, 1 when well formed.
    pub well_formed: Vec<u8>,
    /// Per leaf, [`finish_code`] of its finish reason.
    pub finish: Vec<u8>,
}

const REASONS: [FinishReason; 6] = [
    FinishReason::Finished,
    FinishReason::EarlyStoppedByEos,
    FinishReason::MaxOutputTokens,
    FinishReason::MaxInferSteps,
    FinishReason::RepetitionStop,
    FinishReason::KvExhausted,
];

/// The shard code of a finish reason: its position in `finished, eos, max_tokens, max_depth,
/// repetition, kv_exhausted`.
pub fn finish_code(r: FinishReason) -> u8 {
    REASONS.iter().position(|&x| x == r).unwrap_or(0) as u8
}

fn bad(msg: String) -> TrainError {
    TrainError::Batch(format!("rollout shard: {msg}"))
}

impl RolloutShard {
    /// Scores `tree` (sampled for `problems`, in order) with `task` and lays it out flat.
    /// `policy_version` is the version of the weights that sampled it.
    pub fn collect(
        tree: &RolloutTree,
        problems: &[Problem],
        task: &dyn Task,
        tok: &Tokenizer,
        overlong: Option<&OverlongPenalty>,
        policy_version: u64,
    ) -> Result<Self, TrainError> {
        let r = Rollouts::collect(tree, problems, task, tok, overlong)?;
        let mut s = RolloutShard {
            policy_version,
            tokens_decoded: tree.cost().tokens_decoded as u64,
            node_ptr: vec![0],
            token_ptr: vec![0],
            leaf_ptr: vec![0],
            ..Default::default()
        };
        for (qi, (q, p)) in tree.queries().iter().zip(problems).enumerate() {
            s.problem_index.push(p.index);
            // Sampling log-probs in the DFS order of `Rollouts::collect`: its node `k` is the
            // sampler node at DFS rank `k` (same traversal, children in creation order).
            let order = dfs_order(q);
            for (k, spec) in r.trees[qi].nodes.iter().enumerate() {
                s.parent.push(spec.parent.map_or(-1, |p| p as i64));
                s.tokens.extend_from_slice(&spec.tokens);
                if k == 0 {
                    s.logprobs.extend(std::iter::repeat_n(f32::NAN, spec.tokens.len()));
                } else {
                    let lp = q.nodes()[order[k]].logprobs();
                    if lp.len() != spec.tokens.len() {
                        return Err(bad(format!(
                            "node {k} of query {qi}: {} log-probs for {} tokens",
                            lp.len(),
                            spec.tokens.len()
                        )));
                    }
                    s.logprobs.extend_from_slice(lp);
                }
                s.token_ptr.push(s.tokens.len() as u64);
            }
            s.node_ptr.push(s.parent.len() as u64);
            s.leaf_node.extend(r.trees[qi].leaves.iter().map(|&n| n as u64));
            s.leaf_ptr.push(s.leaf_node.len() as u64);
        }
        for l in &r.leaves {
            s.reward.push(l.reward);
            s.task_reward.push(l.score.reward);
            s.correct.push(u8::from(l.score.correct));
            s.well_formed.push(u8::from(l.score.well_formed));
            s.finish.push(finish_code(l.reason));
        }
        Ok(s)
    }

    /// Queries in the shard.
    pub fn num_queries(&self) -> usize {
        self.problem_index.len()
    }

    /// Checks every array against the layout: lengths, monotone pointers in range, parents
    /// before children, leaf rows in range, finite rewards, known finish codes.
    pub fn validate(&self) -> Result<(), TrainError> {
        let q = self.problem_index.len();
        let ptr = |name: &str, p: &[u64], len: usize, of: usize| -> Result<(), TrainError> {
            if p.len() != len {
                return Err(bad(format!("{name} has {} entries, expected {len}", p.len())));
            }
            if p.first() != Some(&0) || p.last() != Some(&(of as u64)) {
                return Err(bad(format!("{name} must run from 0 to {of}")));
            }
            if p.windows(2).any(|w| w[0] > w[1]) {
                return Err(bad(format!("{name} decreases")));
            }
            Ok(())
        };
        let (n, l) = (self.parent.len(), self.leaf_node.len());
        ptr("node_ptr", &self.node_ptr, q + 1, n)?;
        ptr("token_ptr", &self.token_ptr, n + 1, self.tokens.len())?;
        ptr("leaf_ptr", &self.leaf_ptr, q + 1, l)?;
        if self.logprobs.len() != self.tokens.len() {
            return Err(bad(format!(
                "{} log-probs for {} tokens",
                self.logprobs.len(),
                self.tokens.len()
            )));
        }
        for (name, len) in [
            ("reward", self.reward.len()),
            ("task_reward", self.task_reward.len()),
            ("correct", self.correct.len()),
            ("well_formed", self.well_formed.len()),
            ("finish", self.finish.len()),
        ] {
            if len != l {
                return Err(bad(format!("{name} has {len} entries for {l} leaves")));
            }
        }
        for qi in 0..q {
            let (a, b) = (self.node_ptr[qi] as usize, self.node_ptr[qi + 1] as usize);
            if a == b {
                return Err(bad(format!("query {qi} has no prompt node")));
            }
            for (k, &p) in self.parent[a..b].iter().enumerate() {
                let ok = if k == 0 { p == -1 } else { p >= 0 && (p as usize) < k };
                if !ok {
                    return Err(bad(format!(
                        "query {qi}: node {k} has parent {p} (the prompt has −1, every other \
                         node an earlier node)"
                    )));
                }
            }
            let leaves = self.leaf_ptr[qi] as usize..self.leaf_ptr[qi + 1] as usize;
            if let Some(&bad_leaf) = self.leaf_node[leaves].iter().find(|&&x| x as usize >= b - a) {
                return Err(bad(format!("query {qi}: leaf node {bad_leaf} of {} nodes", b - a)));
            }
        }
        if let Some(i) = self.reward.iter().chain(&self.task_reward).position(|r| !r.is_finite()) {
            return Err(bad(format!("reward {i} is not finite")));
        }
        if let Some(&c) = self.finish.iter().find(|&&c| c as usize >= REASONS.len()) {
            return Err(bad(format!("unknown finish code {c}")));
        }
        Ok(())
    }

    /// The training view of one or several shards, concatenated in order (queries renumbered
    /// across shards). Responses are re-assembled from the leaves' paths and re-decoded with
    /// `tok`; every shard is validated first.
    pub fn to_rollouts(shards: &[&RolloutShard], tok: &Tokenizer) -> Result<Rollouts, TrainError> {
        let mut trees = Vec::new();
        let mut leaves = Vec::new();
        for s in shards {
            s.validate()?;
            for qi in 0..s.num_queries() {
                let query = trees.len();
                let rows = s.node_ptr[qi] as usize..s.node_ptr[qi + 1] as usize;
                let nodes: Vec<TreeNodeSpec> = rows
                    .map(|n| TreeNodeSpec {
                        parent: usize::try_from(s.parent[n]).ok(),
                        tokens: s.tokens[s.token_ptr[n] as usize..s.token_ptr[n + 1] as usize]
                            .to_vec(),
                    })
                    .collect();
                let mut leaf_nodes = Vec::new();
                for li in s.leaf_ptr[qi] as usize..s.leaf_ptr[qi + 1] as usize {
                    let leaf = s.leaf_node[li] as usize;
                    let mut path = Vec::new();
                    let mut n = leaf;
                    while let Some(p) = nodes[n].parent {
                        path.push(n as u32);
                        n = p;
                    }
                    path.reverse();
                    let response: Vec<u32> = path
                        .iter()
                        .flat_map(|&n| nodes[n as usize].tokens.iter().copied())
                        .collect();
                    let text = tok.decode(&response)?;
                    leaf_nodes.push(leaf);
                    leaves.push(ScoredLeaf {
                        query,
                        path,
                        response,
                        text,
                        reason: REASONS[s.finish[li] as usize],
                        score: Score {
                            reward: s.task_reward[li],
                            correct: s.correct[li] != 0,
                            answer: None,
                            well_formed: s.well_formed[li] != 0,
                        },
                        reward: s.reward[li],
                    });
                }
                trees.push(TreeSpec { nodes, leaves: leaf_nodes });
            }
        }
        Ok(Rollouts { trees, leaves })
    }
}

/// The sampler's node indices of `q` in DFS pre-order, children in creation order (the order
/// [`Rollouts::collect`] numbers them in).
fn dfs_order(q: &treepo_sampler::QueryTree) -> Vec<usize> {
    let mut order = Vec::with_capacity(q.nodes().len());
    let mut stack = vec![0usize];
    while let Some(i) = stack.pop() {
        order.push(i);
        stack.extend(q.nodes()[i].children().iter().rev().map(|c| c.index()));
    }
    order
}
