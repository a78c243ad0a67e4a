//! Replay: the same seed gives the identical tree; one branch replayed alone reproduces its
//! tokens; a query's tree does not depend on the batch it is sampled in.

mod common;

use common::replay::replay_leaf;
use common::{cfg, check_tree};
use treepo_sampler::toy::{self, KvConfig, MarkovConfig, ToyEngine};
use treepo_sampler::{DivPolicy, EntropyMode, Query, TreeConfig, TreeSampler};

const PROMPTS: [&[u32]; 4] = [&[12, 9, 13], &[14, 11, 5, 5], &[13], &[12, 12, 12, 12, 12]];

fn configs() -> Vec<TreeConfig> {
    let mut a = cfg(5, 4, 2, 8);
    a.seed = 5;
    let mut b = a.clone();
    b.tree_random_first_div_max = Some(6);
    b.tree_div_policy = DivPolicy::NormInvLogprobWeightedDiv;
    b.temperature = 0.7;
    b.top_k = 6;
    b.top_p = 0.9;
    let mut c = cfg(6, 3, 3, 12);
    c.seed = 99;
    c.tree_entropy = EntropyMode::Compute;
    vec![a, b, c]
}

fn engine() -> ToyEngine<toy::MarkovModel> {
    ToyEngine::markov(MarkovConfig::default(), KvConfig::default())
}

#[test]
fn same_seed_same_tree() {
    for c in configs() {
        let sampler = TreeSampler::new(c.clone(), toy::text_hooks()).unwrap();
        let a = sampler.sample(&mut engine(), &Query::batch(&PROMPTS)).unwrap();
        let b = sampler.sample(&mut engine(), &Query::batch(&PROMPTS)).unwrap();
        check_tree(&a, &c);
        assert_eq!(a.queries(), b.queries());
        assert_eq!(a.cost().tokens_decoded, b.cost().tokens_decoded);
        // Reusing one engine (released state) gives the same tree as a fresh one.
        let mut e = engine();
        let _ = sampler.sample(&mut e, &Query::batch(&PROMPTS)).unwrap();
        assert_eq!(sampler.sample(&mut e, &Query::batch(&PROMPTS)).unwrap().queries(), a.queries());
        // Another seed changes it.
        let mut other = c.clone();
        other.seed += 1;
        let s2 = TreeSampler::new(other, toy::text_hooks()).unwrap();
        assert_ne!(
            s2.sample(&mut engine(), &Query::batch(&PROMPTS)).unwrap().queries(),
            a.queries()
        );
    }
}

#[test]
fn one_branch_replays_alone() {
    for c in configs() {
        let sampler = TreeSampler::new(c.clone(), toy::text_hooks()).unwrap();
        for tree in [
            sampler.sample(&mut engine(), &Query::batch(&PROMPTS)).unwrap(),
            sampler.sample_sequential(&mut engine(), &Query::batch(&PROMPTS)).unwrap(),
        ] {
            for q in tree.queries() {
                for i in 0..q.leaves().len() {
                    let (tokens, logprobs) = replay_leaf(&tree, q, i, &c, MarkovConfig::default());
                    assert_eq!(
                        tokens,
                        q.response_tokens(i),
                        "{:?} query {} leaf {i}",
                        tree.mode(),
                        q.id()
                    );
                    assert_eq!(logprobs, q.response_logprobs(i));
                }
            }
        }
    }
}

#[test]
fn a_query_does_not_depend_on_its_batch() {
    for c in configs() {
        let sampler = TreeSampler::new(c.clone(), toy::text_hooks()).unwrap();
        let batch: Vec<Query<'_>> =
            PROMPTS.iter().enumerate().map(|(i, p)| Query::new(10 + i as u64, p)).collect();
        let together = sampler.sample(&mut engine(), &batch).unwrap();
        for (i, q) in batch.iter().enumerate() {
            let alone = sampler.sample(&mut engine(), &[*q]).unwrap();
            assert_eq!(&alone.queries()[0], &together.queries()[i]);
        }
        // Reordering the batch only reorders the output.
        let reversed: Vec<Query<'_>> = batch.iter().rev().copied().collect();
        let rev = sampler.sample(&mut engine(), &reversed).unwrap();
        for (i, q) in rev.queries().iter().enumerate() {
            assert_eq!(q, &together.queries()[batch.len() - 1 - i]);
        }
    }
}

#[test]
fn entropies_travel_with_tokens() {
    let c = configs().remove(2);
    let sampler = TreeSampler::new(c, toy::text_hooks()).unwrap();
    let tree = sampler.sample(&mut engine(), &Query::batch(&PROMPTS)).unwrap();
    for q in tree.queries() {
        for n in q.nodes().iter().skip(1) {
            let e = n.entropies().expect("entropies requested");
            assert_eq!(e.len(), n.tokens().len());
            assert!(e.iter().all(|&h| h >= 0.0 && h <= (16f32).ln() + 1e-5));
        }
    }
}

#[test]
fn duplicate_ids_are_rejected() {
    let sampler = TreeSampler::new(cfg(2, 2, 2, 2), toy::text_hooks()).unwrap();
    let err =
        sampler.sample(&mut engine(), &[Query::new(3, &[1]), Query::new(3, &[2])]).unwrap_err();
    assert_eq!(err, treepo_sampler::SampleError::DuplicateQueryId(3));
    let empty = sampler.sample(&mut engine(), &[]).unwrap();
    assert_eq!(empty.total_leaves(), 0);
}
