//! Config names as serde reads them (TOML configs mirror TreePO's / verl's keys).

use serde::Deserialize;
use serde::de::IntoDeserializer;
use serde::de::value::Error;
use treepo_trainer::rl::advantage::{
    LogProbReduce, StdKind, SubgroupAggregation, SubgroupRejection,
};
use treepo_trainer::rl::{AdvantageEstimator, AdvantageLevel, LossAggregation};

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
