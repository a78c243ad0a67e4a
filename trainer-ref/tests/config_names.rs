//! Config names as serde reads them (TOML configs mirror TreePO's / verl's keys).

use std::path::Path;

use serde::Deserialize;
use serde::de::IntoDeserializer;
use serde::de::value::Error;
use treepo_trainer::pipeline::{Algo, SamplingMode};
use treepo_trainer::rl::advantage::{
    LogProbReduce, StdKind, SubgroupAggregation, SubgroupRejection,
};
use treepo_trainer::rl::{AdvantageEstimator, AdvantageLevel, LossAggregation};
use treepo_trainer::run::RunConfig;

fn parse<'de, T: Deserialize<'de>>(name: &'de str) -> Result<T, Error> {
    T::deserialize(name.into_deserializer())
}

#[test]
fn estimator_names() {
    use AdvantageEstimator::*;
    for (name, e) in [
        ("treepo", Treepo),
        ("tree_reinforce_plus_plus_baseline", Treepo),
        ("grpo", Grpo),
        ("dr_grpo", DrGrpo),
        ("rloo", Rloo),
        ("reinforce_pp", ReinforcePp),
        ("reinforce_plus_plus_baseline", ReinforcePp),
        ("tree_grpo", TreeGrpo),
        ("tree_rl", TreeRl),
        ("spo_tree", SpoTree),
    ] {
        assert_eq!(parse::<AdvantageEstimator>(name).unwrap(), e, "{name}");
        assert_eq!(parse::<AdvantageEstimator>(e.name()).unwrap(), e);
    }
    assert!(parse::<AdvantageEstimator>("ppo").is_err());
    assert_eq!(Treepo.level(), AdvantageLevel::PerLeaf);
    assert_eq!(SpoTree.level(), AdvantageLevel::PerEdge);
}

#[test]
fn option_names() {
    assert_eq!(parse::<SubgroupAggregation>("group_size").unwrap(), SubgroupAggregation::GroupSize);
    assert_eq!(
        parse::<SubgroupRejection>("reject_zero_std").unwrap(),
        SubgroupRejection::RejectZeroStd
    );
    assert_eq!(parse::<StdKind>("sample").unwrap(), StdKind::Sample);
    assert_eq!(parse::<LogProbReduce>("mean").unwrap(), LogProbReduce::Mean);
    assert_eq!(parse::<LossAggregation>("token-mean").unwrap(), LossAggregation::TokenMean);
    assert_eq!(
        parse::<LossAggregation>("seq_mean_token_mean").unwrap(),
        LossAggregation::SeqMeanTokenMean
    );
}

#[test]
fn algo_names() {
    for algo in Algo::ALL {
        assert_eq!(parse::<Algo>(algo.name()).unwrap(), algo, "{}", algo.name());
    }
    // The edge-level algorithms: tree sampling, their estimator, and `rl.algo` in a run config.
    for (name, algo, estimator) in [
        ("treegrpo", Algo::TreeGrpo, AdvantageEstimator::TreeGrpo),
        ("treerl", Algo::TreeRl, AdvantageEstimator::TreeRl),
        ("spo-tree", Algo::SpoTree, AdvantageEstimator::SpoTree),
    ] {
        assert_eq!(parse::<Algo>(name).unwrap(), algo);
        assert_eq!(algo.name(), name);
        assert_eq!(algo.parts(), (SamplingMode::Tree, estimator));
        assert_eq!(estimator.level(), AdvantageLevel::PerEdge);
        let cfg = RunConfig::from_toml(&format!("[rl]\nalgo = \"{name}\"\n"), Path::new("x.toml"))
            .unwrap();
        assert_eq!(cfg.rl.algo, algo);
        assert!(cfg.to_toml().unwrap().contains(&format!("algo = \"{name}\"")));
    }
    assert!(parse::<Algo>("tree_grpo").is_err());
}
