//! The real samplers on the real engine: TreePO and the sequential baseline from
//! `treepo-sampler` drive `ModelEngine` with a tiny random model and the countdown task's hooks,
//! return exactly `w` leaves per query, and leave the pool empty — also under a pool small
//! enough to hit KV exhaustion.

use std::sync::Arc;

use crate::engine_common::{random_model, small};
use treepo_kernels::{Device, per_backend};
use treepo_sampler::{Engine, Query, RolloutTree, TreeConfig, TreeSampler};
use treepo_trainer::engine::{EngineConfig, ModelEngine};
use treepo_trainer::tasks::{CharVocab, Hooks, Split, TaskConfig};

struct Setup {
    vocab: CharVocab,
    hooks: Hooks,
    prompts: Vec<Vec<u32>>,
    stop: u32,
}

fn setup(queries: u64) -> Setup {
    let task = TaskConfig::from_name("countdown").unwrap().build().unwrap();
    let vocab = CharVocab::new(task.vocabulary().unwrap()).unwrap();
    let hooks = task.hooks(Arc::new(vocab.clone())).unwrap();
    let prompts = (0..queries)
        .map(|i| vocab.encode(&task.generate(Split::Train, i).unwrap().prompt).unwrap())
        .collect();
    let stop = vocab.id(task.stop_symbol().unwrap()).unwrap();
    Setup { vocab, hooks, prompts, stop }
}

fn sample(engine: &mut ModelEngine<'_>, s: &Setup, c: TreeConfig, sequential: bool) -> RolloutTree {
    let sampler = TreeSampler::new(c, s.hooks.clone()).unwrap();
    let refs: Vec<&[u32]> = s.prompts.iter().map(Vec::as_slice).collect();
    let queries = Query::batch(&refs);
    let out = if sequential {
        sampler.sample_sequential(engine, &queries)
    } else {
        sampler.sample(engine, &queries)
    };
    out.unwrap()
}

fn samplers_run_on_the_model(dev: &Device) {
    let s = setup(2);
    let model = random_model(dev, small(s.vocab.len()), 51, 0.3);
    let mut c = TreeConfig::with_shape(3, 4, 2, 4);
    c.stop_token_ids = [s.stop].into();
    c.seed = 5;
    let mut e =
        ModelEngine::new(&model, EngineConfig { page_size: 4, ..EngineConfig::with_pages(128) })
            .unwrap();
    for sequential in [false, true] {
        let tree = sample(&mut e, &s, c.clone(), sequential);
        for q in tree.queries() {
            assert_eq!(q.leaves().len(), 4, "{} sequential={sequential}", dev.kind());
            for i in 0..q.leaves().len() {
                assert!(q.response_tokens(i).len() <= 12);
            }
        }
        assert!(tree.cost().tokens_decoded > 0);
        assert_eq!(e.kv_pages_in_use(), 0);
        assert_eq!(e.live_nodes(), 0);
    }
    e.cache().check_invariants().unwrap();
}

/// A pool far too small for 3 queries × 8 leaves: the sampler degrades (no branching, stalled
/// segments, KV-limited queries) but never loses a leaf or a page.
#[test]
fn small_pool_degrades_and_returns_to_empty() {
    let s = setup(3);
    let model = random_model(&Device::cpu(), small(s.vocab.len()), 52, 0.3);
    let mut c = TreeConfig::with_shape(4, 4, 2, 8);
    c.stop_token_ids = [s.stop].into();
    let mut e =
        ModelEngine::new(&model, EngineConfig { page_size: 4, ..EngineConfig::with_pages(24) })
            .unwrap();
    let tree = sample(&mut e, &s, c, false);
    assert!(tree.cost().kv_exhausted_events > 0, "the pool should run out");
    assert!(tree.cost().peak_kv_pages <= 24);
    assert_eq!((e.kv_pages_in_use(), e.live_nodes()), (0, 0));
    e.cache().check_invariants().unwrap();
    e.clear_prefix_cache();
    assert_eq!(e.cache().num_free(), 24);
}

per_backend!(samplers_run_on_the_model);
