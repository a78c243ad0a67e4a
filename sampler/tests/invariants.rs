//! Property tests: for random shapes, policies, engines and KV pools, every run satisfies the
//! tree invariants (leaves + active <= w at every step; exactly w leaves per complete query;
//! each leaf's tokens = its path's segments; replays match), no node is used after release (the
//! toy engine would return an error), and every KV page comes back.

mod common;

use common::replay::replay_leaf;
use common::{FILL, check_tree};
use proptest::prelude::*;
use treepo_sampler::seed::combine;
use treepo_sampler::toy::{
    self, BOXED_OPEN, CLOSE, EOS, EOT, KvConfig, MarkovConfig, ScriptSegment, ScriptedModel,
    ToyEngine,
};
use treepo_sampler::{
    BoxedEosPolicy, DivPolicy, FallbackPolicy, FallbackTrajPolicy, FinishReason, Query,
    QueryStatus, RepetitionPolicy, TotalBudgetPolicy, TreeConfig, TreeSampler,
};

const DIV: [DivPolicy; 7] = [
    DivPolicy::FixedAvg,
    DivPolicy::LogprobWeightedDiv,
    DivPolicy::InverseLogprobWeightedDiv,
    DivPolicy::NormLogprobWeightedDiv,
    DivPolicy::NormInvLogprobWeightedDiv,
    DivPolicy::NodeLogprobWeightedDiv,
    DivPolicy::InverseNodeLogprobWeightedDiv,
];

fn config() -> impl Strategy<Value = TreeConfig> {
    (
        (1usize..=5, 1usize..=6, 1usize..=8, 0usize..8, proptest::option::of(1usize..=10)),
        (0usize..7, 0usize..3, 0usize..2, 0usize..2, 0usize..2, proptest::option::of(1usize..=40)),
        (any::<u64>(), proptest::option::of(1usize..=3), proptest::bool::weighted(0.2)),
    )
        .prop_map(
            |(
                (d, l, w, b, rmax),
                (div, fb, traj, rep, boxed, max_resp),
                (seed, max_win, token_mode),
            )| {
                let mut c = TreeConfig::with_shape(d, l, 1 + b % w, w);
                c.stop_token_ids = [EOS, EOT].into();
                c.tree_random_first_div_max = rmax;
                c.tree_div_policy = DIV[div];
                c.tree_fallback_policy =
                    [FallbackPolicy::Random, FallbackPolicy::FromStart, FallbackPolicy::NoFallback]
                        [fb];
                c.tree_fallback_traj_policy =
                    [FallbackTrajPolicy::SoftBoxedAndEos, FallbackTrajPolicy::RandomAll][traj];
                c.tree_repetition_es_policy =
                    [RepetitionPolicy::LeastPrioritized, RepetitionPolicy::MostPrioritized][rep];
                c.tree_boxed_eos_policy =
                    [BoxedEosPolicy::BoxedAndEosFirst, BoxedEosPolicy::BoxedAsEos][boxed];
                c.max_response_length = max_resp;
                c.tree_max_fallback_window = max_win;
                c.seed = seed;
                if token_mode {
                    c.tree_total_budget_policy = TotalBudgetPolicy::ByResponseToken;
                    c.tree_max_response_token = Some(1 + (seed % 60) as usize);
                    c.tree_min_width = Some(1 + (seed as usize / 7) % w);
                }
                c
            },
        )
}

fn pool() -> impl Strategy<Value = KvConfig> {
    prop_oneof![
        3 => Just(KvConfig::default()),
        2 => (prop::sample::select(vec![1usize, 2, 4, 16]), 4usize..60)
            .prop_map(|(page_size, pool_pages)| KvConfig { page_size, pool_pages }),
    ]
}

fn prompts() -> impl Strategy<Value = Vec<Vec<u32>>> {
    prop::collection::vec(prop::collection::vec(0u32..16, 0..6), 1..=3)
}

/// Random scripted segments: stop tokens anywhere (position 0 included), boxed answers, short
/// segments, repetition-ish filler.
fn random_rule(salt: u64) -> impl Fn(usize, &[u32]) -> ScriptSegment {
    move |q, path| {
        let h = path.iter().fold(combine(salt, q as u64), |h, &o| combine(h, u64::from(o)));
        let len = (h % 8) as usize;
        let tokens: Vec<u32> = (0..len)
            .map(|i| match combine(h, i as u64) % 12 {
                0 => EOS,
                1 => EOT,
                2 => BOXED_OPEN,
                3 => CLOSE,
                4 => 5,
                _ => FILL,
            })
            .collect();
        ScriptSegment {
            logprobs: tokens
                .iter()
                .enumerate()
                .map(|(i, _)| ((h >> i) % 5) as f32 * -0.5)
                .collect(),
            tokens,
        }
    }
}

fn check_run(
    c: &TreeConfig,
    tree: &treepo_sampler::RolloutTree,
    kv: KvConfig,
    pages_left: usize,
    live_left: usize,
) {
    check_tree(tree, c);
    assert_eq!(pages_left, 0, "pages left in use");
    assert_eq!(live_left, 0, "nodes left live");
    let unlimited = kv == KvConfig::default();
    for q in tree.queries() {
        if unlimited {
            assert_eq!(q.status(), QueryStatus::Complete);
            assert!(q.leaves().iter().all(|l| l.reason() != FinishReason::KvExhausted));
        }
        if c.tree_total_budget_policy == TotalBudgetPolicy::ByResponseToken
            && q.status() == QueryStatus::Complete
            && c.tree_fallback_policy != FallbackPolicy::NoFallback
        {
            assert!(q.leaves().len() >= c.min_width().min(c.width()), "token mode below min width");
        }
    }
    if unlimited {
        assert_eq!(tree.cost().kv_exhausted_events, 0);
    }
    assert!(tree.cost().peak_kv_pages <= kv.pool_pages);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn markov_runs_keep_the_invariants(c in config(), kv in pool(), prompts in prompts(), model_seed in any::<u64>()) {
        let markov = MarkovConfig { seed: model_seed, ..MarkovConfig::default() };
        let sampler = TreeSampler::new(c.clone(), toy::text_hooks()).unwrap();
        let refs: Vec<&[u32]> = prompts.iter().map(Vec::as_slice).collect();
        let mut engine = ToyEngine::markov(markov, kv);
        for tree in [
            sampler.sample(&mut engine, &Query::batch(&refs)),
            sampler.sample_sequential(&mut engine, &Query::batch(&refs)),
        ] {
            let tree = match tree {
                Ok(t) => t,
                // Only a pool too small for the prompts may fail, and only at prefill.
                Err(treepo_sampler::SampleError::Engine { phase: treepo_sampler::Phase::Prefill, .. }) => continue,
                Err(e) => panic!("{e}"),
            };
            check_run(&c, &tree, kv, engine.kv_pages_in_use(), engine.live_nodes());
            for q in tree.queries() {
                for i in 0..q.leaves().len() {
                    let (tokens, _) = replay_leaf(&tree, q, i, &c, markov);
                    prop_assert_eq!(tokens, q.response_tokens(i));
                }
            }
        }
    }

    #[test]
    fn scripted_runs_keep_the_invariants(c in config(), kv in pool(), prompts in prompts(), salt in any::<u64>()) {
        let sampler = TreeSampler::new(c.clone(), toy::text_hooks()).unwrap();
        let refs: Vec<&[u32]> = prompts.iter().map(Vec::as_slice).collect();
        let mut engine = ToyEngine::new(ScriptedModel::new(random_rule(salt)), kv);
        match sampler.sample(&mut engine, &Query::batch(&refs)) {
            Ok(tree) => check_run(&c, &tree, kv, engine.kv_pages_in_use(), engine.live_nodes()),
            Err(treepo_sampler::SampleError::Engine { phase: treepo_sampler::Phase::Prefill, .. }) => {}
            Err(e) => panic!("{e}"),
        }
    }
}
