//! The toy engine honours the Engine contract: generation-checked handles, frozen forked
//! nodes, the page model (copy-on-write tails, deferred frees), stop sets, batched decoding.

use std::collections::BTreeSet;

use treepo_sampler::toy::{
    EOS, EOT, KvConfig, MarkovConfig, ScriptSegment, ScriptedModel, ToyEngine,
};
use treepo_sampler::{
    BranchKey, DecodeParams, Engine, EngineError, EngineNode, EntropyMode, InvalidNodeReason,
    SamplingParams, SegmentEnd, SegmentRequest,
};

fn params(stop: &[u32]) -> DecodeParams {
    DecodeParams {
        stop: stop.iter().copied().collect::<BTreeSet<_>>(),
        sampling: SamplingParams::default(),
        entropy: EntropyMode::Skip,
    }
}

fn req(node: EngineNode, max_tokens: usize) -> SegmentRequest {
    SegmentRequest { node, key: BranchKey::root(0, 0), response_offset: 0, max_tokens }
}

fn scripted(
    kv: KvConfig,
    rule: impl Fn(usize, &[u32]) -> ScriptSegment + 'static,
) -> ToyEngine<ScriptedModel> {
    ToyEngine::new(ScriptedModel::new(rule), kv)
}

#[test]
fn handles_are_checked() {
    let mut e = scripted(KvConfig::default(), |_, _| ScriptSegment::repeat(9, 4));
    let root = e.prefill(&[&[1, 2, 3]]).unwrap()[0];
    let kids = e.fork(root, 2).unwrap();
    // Forked nodes are frozen.
    assert_eq!(
        e.decode_segment(&[req(root, 2)], &params(&[])),
        Err(EngineError::InvalidNode { node: root, reason: InvalidNodeReason::Frozen })
    );
    // The same node twice in one call.
    assert!(matches!(
        e.decode_segment(&[req(kids[0], 1), req(kids[0], 1)], &params(&[])),
        Err(EngineError::InvalidRequest(_))
    ));
    e.release(kids[0]).unwrap();
    let released =
        Err(EngineError::InvalidNode { node: kids[0], reason: InvalidNodeReason::Released });
    assert_eq!(e.release(kids[0]), released.clone());
    assert_eq!(e.fork(kids[0], 1).map(|_| ()), released.clone());
    assert_eq!(e.decode_segment(&[req(kids[0], 1)], &params(&[])).map(|_| ()), released);
    let unknown = EngineNode::new(99, 0);
    assert_eq!(
        e.release(unknown),
        Err(EngineError::InvalidNode { node: unknown, reason: InvalidNodeReason::Unknown })
    );
    // A reused slot does not resurrect the old handle.
    let again = e.fork(kids[1], 1).unwrap()[0];
    assert_eq!(again.index(), kids[0].index());
    assert_ne!(again.generation(), kids[0].generation());
    assert!(e.context_len(kids[0]).is_err());
    assert_eq!(e.context_len(again).unwrap(), 3);
}

#[test]
fn page_model() {
    let mut e =
        scripted(KvConfig { page_size: 4, pool_pages: 100 }, |_, _| ScriptSegment::repeat(9, 16));
    let roots = e.prefill(&[&[1; 5], &[1; 8], &[]]).unwrap();
    assert_eq!(e.kv_pages_in_use(), 2 + 2);
    // 5 tokens: unaligned → each child copies the tail page.
    let a = e.fork(roots[0], 3).unwrap();
    assert_eq!(e.kv_pages_in_use(), 4 + 3);
    // 8 tokens: aligned → free.
    let b = e.fork(roots[1], 2).unwrap();
    assert_eq!(e.kv_pages_in_use(), 7);
    // a[0] appends 3 tokens inside its copied page (positions 5..8), the 4th takes a page.
    let out = e.decode_segment(&[req(a[0], 3)], &params(&[])).unwrap();
    assert_eq!(out[0].tokens.len(), 3);
    assert_eq!(e.kv_pages_in_use(), 7);
    e.decode_segment(&[req(a[0], 1)], &params(&[])).unwrap();
    assert_eq!(e.kv_pages_in_use(), 8);
    // b[0] at an aligned start takes a page for its first token.
    e.decode_segment(&[req(b[0], 1)], &params(&[])).unwrap();
    assert_eq!(e.kv_pages_in_use(), 9);
    // Releasing a parent frees nothing while children live; the last child frees both.
    e.release(roots[1]).unwrap();
    assert_eq!(e.kv_pages_in_use(), 9);
    e.release(b[0]).unwrap();
    assert_eq!(e.kv_pages_in_use(), 8);
    e.release(b[1]).unwrap();
    assert_eq!(e.kv_pages_in_use(), 6);
    for n in a.iter().chain([&roots[0], &roots[2]]) {
        e.release(*n).unwrap();
    }
    assert_eq!(e.kv_pages_in_use(), 0);
    assert_eq!(e.live_nodes(), 0);
}

#[test]
fn exhaustion_is_atomic_and_per_request() {
    let mut e =
        scripted(KvConfig { page_size: 2, pool_pages: 4 }, |_, _| ScriptSegment::repeat(9, 8));
    assert_eq!(e.prefill(&[&[1; 9]]), Err(EngineError::KvExhausted { requested: 5, free: 4 }));
    assert_eq!(e.kv_pages_in_use(), 0);
    let root = e.prefill(&[&[1; 3]]).unwrap()[0]; // 2 pages
    assert_eq!(e.fork(root, 3), Err(EngineError::KvExhausted { requested: 3, free: 2 }));
    let kids = e.fork(root, 2).unwrap(); // 2 tail copies: pool full
    assert_eq!(e.free_pages(), 0);
    // Each child fills its copied page (position 3), then runs out.
    let outs = e.decode_segment(&[req(kids[0], 4), req(kids[1], 4)], &params(&[])).unwrap();
    for o in &outs {
        assert_eq!((o.tokens.len(), o.end), (1, SegmentEnd::KvExhausted));
    }
}

#[test]
fn stop_sets_and_batching() {
    let rule = |q: usize, _: &[u32]| match q {
        0 => ScriptSegment::tokens(&[EOT, 9, 9]),
        1 => ScriptSegment::tokens(&[9, 9, EOS, 9]),
        _ => ScriptSegment::tokens(&[9]),
    };
    let mut e = scripted(KvConfig::default(), rule);
    let roots = e.prefill(&[&[1], &[1], &[1]]).unwrap();
    let kids: Vec<EngineNode> = roots.iter().map(|&r| e.fork(r, 1).unwrap()[0]).collect();
    let outs = e
        .decode_segment(&kids.iter().map(|&k| req(k, 3)).collect::<Vec<_>>(), &params(&[EOS, EOT]))
        .unwrap();
    assert_eq!((outs[0].tokens.clone(), outs[0].end), (vec![EOT], SegmentEnd::Stop));
    assert_eq!((outs[1].tokens.clone(), outs[1].end), (vec![9, 9, EOS], SegmentEnd::Stop));
    // The script ran out after one token: the segment ends short without a stop.
    assert_eq!((outs[2].tokens.clone(), outs[2].end), (vec![9], SegmentEnd::MaxTokens));
    assert_eq!(e.stats().decodes, 1);
}

#[test]
fn markov_is_deterministic_and_uses_the_keys() {
    let mut e = ToyEngine::markov(MarkovConfig::default(), KvConfig::default());
    let root = e.prefill(&[&[12, 13]]).unwrap()[0];
    let kids = e.fork(root, 2).unwrap();
    let p = DecodeParams { entropy: EntropyMode::Compute, ..params(&[]) };
    let k = |o| SegmentRequest {
        node: kids[o],
        key: BranchKey::from_path(1, 0, &[o as u32]),
        response_offset: 0,
        max_tokens: 12,
    };
    let outs = e.decode_segment(&[k(0), k(1)], &p).unwrap();
    // Different keys → different branches; same key → same tokens in another engine and batch.
    assert_ne!(outs[0].tokens, outs[1].tokens);
    let mut e2 = ToyEngine::markov(MarkovConfig::default(), KvConfig::default());
    let root2 = e2.prefill(&[&[12, 13]]).unwrap()[0];
    let kids2 = e2.fork(root2, 2).unwrap();
    let again = e2.decode_segment(&[SegmentRequest { node: kids2[1], ..k(1) }], &p).unwrap();
    assert_eq!(again[0].tokens, outs[1].tokens);
    assert_eq!(again[0].logprobs, outs[1].logprobs);
    assert!(outs.iter().all(|o| o.logprobs.iter().all(|&l| l < 0.0)
        && o.entropies.as_ref().unwrap().len() == o.tokens.len()));
}
