//! Advantage estimators: pure, deterministic functions of a rollout tree and its leaf rewards.
//!
//! Leaf-level estimators ([`AdvantageLevel::PerLeaf`]) give one scalar per trajectory that every
//! token of the trajectory carries; edge-level ones ([`AdvantageLevel::PerEdge`]) give one scalar
//! per segment, each segment trained once. [`compute_advantages`] dispatches on the configured
//! [`AdvantageEstimator`].

mod edge;
mod flat;
mod treepo;
mod whiten;

pub use edge::{
    BackupWeights, EdgeAdvantages, LogProbReduce, StdKind, TreeGrpoOptions, spo_tree, tree_grpo,
    tree_rl,
};
pub use flat::{GRPO_EPS, dr_grpo, grpo, reinforce_pp_baseline, rloo};
pub use treepo::{
    SubgroupAggregation, SubgroupRejection, SubgroupTerm, TreepoOptions, Whitening,
    tree_reinforce_plus_plus_baseline, treepo_raw_advantages, treepo_subgroup_terms,
};
pub use whiten::{WHITEN_EPS, whiten_token_weighted, whiten_token_weighted_with};

use serde::{Deserialize, Serialize};

use super::error::RlError;
use super::tree_input::{LeafRecord, RolloutTopology};

/// The advantage estimator, by its config name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdvantageEstimator {
    /// TreePO subgroup baselines + global whitening (`treepo`, alias
    /// `tree_reinforce_plus_plus_baseline`).
    #[default]
    #[serde(alias = "tree_reinforce_plus_plus_baseline")]
    Treepo,
    /// GRPO (`grpo`).
    Grpo,
    /// Dr.GRPO (`dr_grpo`).
    DrGrpo,
    /// RLOO (`rloo`).
    Rloo,
    /// REINFORCE++ baseline (`reinforce_pp`, alias `reinforce_plus_plus_baseline`).
    #[serde(alias = "reinforce_plus_plus_baseline")]
    ReinforcePp,
    /// TreeGRPO backup (`tree_grpo`), per edge.
    TreeGrpo,
    /// TreeRL (`tree_rl`), per edge.
    TreeRl,
    /// SPO-tree (`spo_tree`), per edge.
    SpoTree,
}

/// What an estimator produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdvantageLevel {
    /// One value per leaf (trajectory).
    PerLeaf,
    /// One value per edge (segment).
    PerEdge,
}

impl AdvantageEstimator {
    /// Whether this estimator is leaf- or edge-level.
    pub fn level(self) -> AdvantageLevel {
        match self {
            Self::Treepo | Self::Grpo | Self::DrGrpo | Self::Rloo | Self::ReinforcePp => {
                AdvantageLevel::PerLeaf
            }
            Self::TreeGrpo | Self::TreeRl | Self::SpoTree => AdvantageLevel::PerEdge,
        }
    }

    /// The config name (what serde reads and writes).
    pub fn name(self) -> &'static str {
        match self {
            Self::Treepo => "treepo",
            Self::Grpo => "grpo",
            Self::DrGrpo => "dr_grpo",
            Self::Rloo => "rloo",
            Self::ReinforcePp => "reinforce_pp",
            Self::TreeGrpo => "tree_grpo",
            Self::TreeRl => "tree_rl",
            Self::SpoTree => "spo_tree",
        }
    }
}

/// Estimator choice plus the options of the estimators that have some.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AdvantageConfig {
    /// Which estimator runs.
    pub estimator: AdvantageEstimator,
    /// Used by [`AdvantageEstimator::Treepo`].
    pub treepo: TreepoOptions,
    /// Used by [`AdvantageEstimator::TreeGrpo`].
    pub tree_grpo: TreeGrpoOptions,
}

/// Output of [`compute_advantages`].
#[derive(Debug, Clone, PartialEq)]
pub enum Advantages {
    /// Leaf-level values, `values[j]` for the leaf node `leaves[j]` ([`RolloutTopology::leaves`]).
    PerLeaf {
        /// Leaf node ids, ascending.
        leaves: Vec<usize>,
        /// One advantage per leaf.
        values: Vec<f64>,
    },
    /// Edge-level values.
    PerEdge(EdgeAdvantages),
}

/// Runs the configured estimator on a topology (leaf-level estimators read
/// [`RolloutTopology::leaf_records`]).
pub fn compute_advantages(
    config: &AdvantageConfig,
    topology: &RolloutTopology,
) -> Result<Advantages, RlError> {
    Ok(match config.estimator {
        AdvantageEstimator::TreeGrpo => {
            Advantages::PerEdge(tree_grpo(topology, &config.tree_grpo)?)
        }
        AdvantageEstimator::TreeRl => Advantages::PerEdge(tree_rl(topology)),
        AdvantageEstimator::SpoTree => Advantages::PerEdge(spo_tree(topology)),
        _ => {
            let records = topology.leaf_records()?;
            let values = compute_leaf_advantages(config, &records)?;
            Advantages::PerLeaf { leaves: topology.leaves().to_vec(), values }
        }
    })
}

/// Runs a leaf-level estimator on leaf records (one value per record, input order);
/// [`RlError::WrongLevel`] for an edge-level estimator.
pub fn compute_leaf_advantages(
    config: &AdvantageConfig,
    leaves: &[LeafRecord],
) -> Result<Vec<f64>, RlError> {
    match config.estimator {
        AdvantageEstimator::Treepo => tree_reinforce_plus_plus_baseline(leaves, &config.treepo),
        AdvantageEstimator::Grpo => grpo(leaves),
        AdvantageEstimator::DrGrpo => dr_grpo(leaves),
        AdvantageEstimator::Rloo => rloo(leaves),
        AdvantageEstimator::ReinforcePp => reinforce_pp_baseline(leaves),
        e @ (AdvantageEstimator::TreeGrpo
        | AdvantageEstimator::TreeRl
        | AdvantageEstimator::SpoTree) => {
            Err(RlError::WrongLevel { estimator: e.name(), produces: "per-edge" })
        }
    }
}
