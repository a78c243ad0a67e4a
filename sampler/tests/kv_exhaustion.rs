//! KV pool exhaustion degrades gracefully: no panic, no finished leaf lost, the reason reported,
//! and every page returned.

mod common;

use common::replay::replay_leaf;
use common::{FILL, cfg, check_tree, ordinals, scripted_pool};
use treepo_sampler::toy::{EOS, EOT, KvConfig, MarkovConfig, ScriptSegment, ToyEngine};
use treepo_sampler::{FinishReason, NoHooks, Query, QueryStatus, TreeSampler};

const PROMPT4: &[u32] = &[12, 9, 13, 10];

/// Pages (size 4): prompt 1; forks at page boundaries are free; step 1 takes 2, step 2 takes 4
/// (7 in use), step 3 has 2 free pages for 4 requests: the first two finish, the other two
/// stall, make no progress next step, and the deadlock rule finishes them as `KvExhausted`.
#[test]
fn single_query_deadlock_finishes_stalled_paths() {
    let c = cfg(3, 4, 2, 4);
    let sampler = TreeSampler::new(c.clone(), NoHooks).unwrap();
    let mut engine = scripted_pool(4, 9, |_, _| ScriptSegment::repeat(FILL, 4));
    let tree = sampler.sample(&mut engine, &[Query::new(0, PROMPT4)]).unwrap();
    check_tree(&tree, &c);
    let q = &tree.queries()[0];
    assert_eq!(q.status(), QueryStatus::KvLimited);
    let leaves: Vec<(FinishReason, usize)> =
        q.leaves().iter().map(|l| (l.reason(), l.response_len())).collect();
    assert_eq!(
        leaves,
        vec![
            (FinishReason::MaxOutputTokens, 12),
            (FinishReason::MaxOutputTokens, 12),
            (FinishReason::KvExhausted, 8),
            (FinishReason::KvExhausted, 8),
        ]
    );
    assert_eq!(tree.cost().kv_exhausted_events, 4);
    assert_eq!(tree.cost().peak_kv_pages, 9);
    assert!(q.steps()[2].kv_pressure || q.steps()[2].active == 2);
    assert_eq!(engine.kv_pages_in_use(), 0);
    assert_eq!(engine.live_nodes(), 0);
}

/// Two queries: the second stalls in step 3, the first completes and releases 11 pages, and the
/// second resumes and completes — nobody is cut short.
#[test]
fn completion_of_one_query_relieves_another() {
    let c = cfg(3, 4, 2, 4);
    let sampler = TreeSampler::new(c.clone(), NoHooks).unwrap();
    let mut engine = scripted_pool(4, 18, |_, _| ScriptSegment::repeat(FILL, 4));
    let tree =
        sampler.sample(&mut engine, &[Query::new(0, PROMPT4), Query::new(1, PROMPT4)]).unwrap();
    check_tree(&tree, &c);
    for q in tree.queries() {
        assert_eq!(q.status(), QueryStatus::Complete);
        assert_eq!(q.leaves().len(), 4);
        assert!(
            q.leaves()
                .iter()
                .all(|l| l.reason() == FinishReason::MaxOutputTokens && l.response_len() == 12)
        );
    }
    assert_eq!(tree.queries()[0].leaves()[0].step(), 3);
    assert_eq!(tree.queries()[1].leaves()[0].step(), 4);
    assert_eq!(tree.cost().kv_exhausted_events, 4);
    assert_eq!(tree.cost().peak_kv_pages, 18);
    assert_eq!(engine.kv_pages_in_use(), 0);
}

/// Unaligned segments (l = 3, pages of 4) make forks copy the parent's tail page. With 4 pages:
/// fork([0], 2) fails and degrades to one child; fork([1], ·) cannot get a page and waits; the
/// child [0,0] stalls after one token; the deadlock rule then finishes both as `KvExhausted`.
#[test]
fn degraded_forks_and_partial_segments() {
    let c = cfg(3, 3, 2, 4);
    let sampler = TreeSampler::new(c.clone(), NoHooks).unwrap();
    let mut engine = scripted_pool(4, 4, |_, _| ScriptSegment::repeat(FILL, 3));
    let tree = sampler.sample(&mut engine, &[Query::new(0, PROMPT4)]).unwrap();
    check_tree(&tree, &c);
    let q = &tree.queries()[0];
    assert_eq!(q.status(), QueryStatus::KvLimited);
    let leaves: Vec<(Vec<u32>, FinishReason, usize)> =
        q.leaves().iter().map(|l| (ordinals(q, l.node()), l.reason(), l.response_len())).collect();
    assert_eq!(
        leaves,
        vec![(vec![0, 0], FinishReason::KvExhausted, 4), (vec![1], FinishReason::KvExhausted, 3)]
    );
    // Step 1: fork([0],2), fork([1],2), fork([1],1) fail; step 2: [0,0] stalls after 1 token and
    // fork([1],1) fails again; step 3: [0,0] gets nothing, fork([1],1) fails → deadlock.
    assert_eq!(tree.cost().kv_exhausted_events, 7);
    assert_eq!(engine.kv_pages_in_use(), 0);
    assert_eq!(engine.live_nodes(), 0);
}

/// A pool that cannot even hold the prompts is a typed error, not a panic.
#[test]
fn prefill_exhaustion_is_an_error() {
    let c = cfg(3, 4, 2, 4);
    let sampler = TreeSampler::new(c, NoHooks).unwrap();
    let mut engine = scripted_pool(4, 1, |_, _| ScriptSegment::repeat(FILL, 4));
    let err =
        sampler.sample(&mut engine, &[Query::new(0, PROMPT4), Query::new(1, PROMPT4)]).unwrap_err();
    assert!(matches!(
        err,
        treepo_sampler::SampleError::Engine {
            phase: treepo_sampler::Phase::Prefill,
            source: treepo_sampler::EngineError::KvExhausted { requested: 2, free: 1 }
        }
    ));
    assert_eq!(engine.kv_pages_in_use(), 0);
}

/// Markov engine, many queries, a pool far too small: the run completes, every leaf that is not
/// `KvExhausted` is exactly what an unconstrained replay of its branch produces (stalls and
/// resumes change nothing), and all pages come back. The sequential baseline degrades too.
#[test]
fn markov_small_pool_keeps_every_leaf_exact() {
    let mut c = cfg(5, 5, 2, 8);
    c.seed = 11;
    let markov = MarkovConfig::default();
    let sampler = TreeSampler::new(c.clone(), NoHooks).unwrap();
    let prompts: Vec<&[u32]> = vec![&[12, 9, 13], &[14, 11, 5, 5], &[13], &[12, 12, 12, 12, 12]];
    for pool in [12, 20, 40, 80] {
        let mut engine = ToyEngine::markov(markov, KvConfig { page_size: 4, pool_pages: pool });
        for tree in [
            sampler.sample(&mut engine, &Query::batch(&prompts)).unwrap(),
            sampler.sample_sequential(&mut engine, &Query::batch(&prompts)).unwrap(),
        ] {
            check_tree(&tree, &c);
            assert!(tree.cost().peak_kv_pages <= pool);
            if pool <= 20 {
                assert!(tree.cost().kv_exhausted_events > 0, "pool {pool} should run out");
            }
            for q in tree.queries() {
                for (i, leaf) in q.leaves().iter().enumerate() {
                    let (tokens, logprobs) = replay_leaf(&tree, q, i, &c, markov);
                    assert_eq!(
                        tokens,
                        q.response_tokens(i),
                        "pool {pool} query {} leaf {i}",
                        q.id()
                    );
                    assert_eq!(logprobs, q.response_logprobs(i));
                    if leaf.reason() == FinishReason::KvExhausted {
                        assert_eq!(
                            q.status(),
                            QueryStatus::KvLimited,
                            "only KvLimited queries hold KvExhausted leaves"
                        );
                    }
                }
                let stops = [EOS, EOT];
                for (i, leaf) in q.leaves().iter().enumerate() {
                    if leaf.reason() == FinishReason::EarlyStoppedByEos {
                        assert!(q.response_tokens(i).iter().any(|t| stops.contains(t)));
                    }
                }
            }
            assert_eq!(engine.kv_pages_in_use(), 0, "pool {pool}");
            assert_eq!(engine.live_nodes(), 0);
        }
    }
}
