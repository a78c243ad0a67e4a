//! Pool accounting and error paths: KV exhaustion keeps what fits (decode) or changes nothing
//! (prefill, fork), everything released returns the pool to empty with tree-kv's invariants
//! intact, and every bad handle or request is a typed error that leaves the engine usable.

use crate::engine_common::{TOL, check_row, params, random_model, req, small, tokens};
use treepo_kernels::Device;
use treepo_sampler::{Engine, EngineError, EngineNode, InvalidNodeReason, SegmentEnd};
use treepo_trainer::engine::{EngineConfig, ModelEngine};
use treepo_trainer::model::Model;

const V: usize = 23;

fn model() -> Model {
    random_model(&Device::cpu(), small(V), 41, 0.3)
}

fn pool(num_pages: u32) -> EngineConfig {
    EngineConfig { num_pages, page_size: 4, ..EngineConfig::default() }
}

fn invalid(e: EngineError) -> InvalidNodeReason {
    match e {
        EngineError::InvalidNode { reason, .. } => reason,
        other => panic!("expected InvalidNode, got {other:?}"),
    }
}

fn is_request(r: Result<impl std::fmt::Debug, EngineError>, needle: &str) {
    match r {
        Err(EngineError::InvalidRequest(m)) => {
            assert!(m.contains(needle), "{m:?} lacks {needle:?}")
        }
        other => panic!("expected InvalidRequest({needle}), got {other:?}"),
    }
}

#[test]
fn decode_exhaustion_keeps_what_fits() {
    let model = model();
    let mut e = ModelEngine::new(&model, pool(4)).unwrap();
    let root = e.prefill(&[&tokens(6, V as u32, 1, 1)]).unwrap()[0]; // pages 0, 1 (2 rows free)
    let kids = e.fork(root, 2).unwrap(); // the first claims the tail, the second copies it
    assert_eq!(e.kv_pages_in_use(), 3);
    let reqs = [req(kids[0], 0, &[0], 0, 20), req(kids[1], 0, &[1], 0, 20)];
    let out = e.decode_segment(&reqs, &params(1.0, &[])).unwrap();
    // kids[0]: 2 rows in the shared tail, then the last free page (4 rows); kids[1]: 2 rows in
    // its copy, then no page left. Earlier requests get pages first.
    assert_eq!((out[0].tokens.len(), out[0].end), (6, SegmentEnd::KvExhausted));
    assert_eq!((out[1].tokens.len(), out[1].end), (2, SegmentEnd::KvExhausted));
    assert_eq!(e.context_len(kids[0]).unwrap(), 12, "returned tokens are appended");
    // With no page left, a row that needs one ends at once with zero tokens.
    let again = e.decode_segment(&reqs[..1], &params(1.0, &[])).unwrap();
    assert_eq!((again[0].tokens.len(), again[0].end), (0, SegmentEnd::KvExhausted));
    // Releasing the sibling frees its page: the stalled request resumes where it stopped.
    e.release(kids[1]).unwrap();
    let resumed = e.decode_segment(&[req(kids[0], 0, &[0], 6, 3)], &params(1.0, &[])).unwrap();
    assert_eq!((resumed[0].tokens.len(), resumed[0].end), (3, SegmentEnd::MaxTokens));
    for n in [kids[0], root] {
        e.release(n).unwrap();
    }
    assert_eq!(e.kv_pages_in_use(), 0);
    e.cache().check_invariants().unwrap();
}

#[test]
fn prefill_and_fork_exhaustion_change_nothing() {
    let model = model();
    let mut e = ModelEngine::new(&model, pool(5)).unwrap();
    let a = tokens(8, V as u32, 1, 2); // two full pages, indexed at create_root
    let b = tokens(15, V as u32, 1, 3);
    match e.prefill(&[&a, &b]) {
        Err(EngineError::KvExhausted { requested: 4, free: 3 }) => {}
        other => panic!("expected KvExhausted, got {other:?}"),
    }
    assert_eq!((e.kv_pages_in_use(), e.live_nodes()), (0, 0));
    // Regression: a's pages entered the prefix index before their K/V existed; the rollback
    // must not leave them to be reused.
    let root = e.prefill(&[&a]).unwrap()[0];
    assert_eq!(e.stats().cached_prompt_tokens, 0);
    let mut fresh = ModelEngine::new(&model, pool(5)).unwrap();
    let r = fresh.prefill(&[&a]).unwrap()[0];
    check_row("after rollback", &e.node_logits(root).unwrap(), &fresh.node_logits(r).unwrap(), TOL);
    // A fork that needs more copies than the pool has creates no child.
    let leaf = e.fork(root, 1).unwrap()[0];
    e.extend(leaf, &tokens(5, V as u32, 1, 4)).unwrap(); // ends mid-page (13 = 3·4 + 1)
    let before = (e.kv_pages_in_use(), e.live_nodes());
    match e.fork(leaf, 4) {
        Err(EngineError::KvExhausted { requested: 3, free: 1 }) => {}
        other => panic!("expected KvExhausted, got {other:?}"),
    }
    assert_eq!((e.kv_pages_in_use(), e.live_nodes()), before);
    e.cache().check_invariants().unwrap();
    for n in [leaf, root] {
        e.release(n).unwrap();
    }
    assert_eq!(e.kv_pages_in_use(), 0);
    e.clear_prefix_cache();
    assert_eq!(e.cache().num_free(), 5, "every page free again");
}

#[test]
fn bad_handles_and_requests_are_typed_errors() {
    let model = model();
    let mut e = ModelEngine::new(&model, pool(32)).unwrap();
    let root = e.prefill(&[&[1, 2, 3]]).unwrap()[0];
    let never = EngineNode::new(root.index(), root.generation() + 1);
    assert_eq!(invalid(e.fork(never, 1).unwrap_err()), InvalidNodeReason::Unknown);
    assert_eq!(invalid(e.release(EngineNode::new(99, 0)).unwrap_err()), InvalidNodeReason::Unknown);
    let kid = e.fork(root, 1).unwrap()[0];
    let p = params(1.0, &[]);
    let frozen = e.decode_segment(&[req(root, 0, &[], 0, 2)], &p).unwrap_err();
    assert_eq!(invalid(frozen), InvalidNodeReason::Frozen);
    assert_eq!(invalid(e.extend(root, &[1]).unwrap_err()), InvalidNodeReason::Frozen);
    is_request(e.decode_segment(&[req(kid, 0, &[0], 0, 2), req(kid, 0, &[0], 0, 2)], &p), "twice");
    is_request(e.prefill(&[&[1], &[]]), "empty");
    is_request(e.prefill(&[&[1, V as u32]]), "vocabulary");
    is_request(e.prefill(&[&vec![1; 300]]), "max_context");
    is_request(e.extend(kid, &[V as u32 + 5]), "vocabulary");
    is_request(e.decode_segment(&[req(kid, 0, &[0], 0, 2)], &params(-1.0, &[])), "temperature");
    let mut bad_p = p.clone();
    bad_p.sampling.top_p = 0.0;
    is_request(e.decode_segment(&[req(kid, 0, &[0], 0, 2)], &bad_p), "top_p");
    // None of that hurt the engine.
    let out = e.decode_segment(&[req(kid, 0, &[0], 0, 2)], &p).unwrap();
    assert_eq!(out[0].tokens.len(), 2);
    assert!(e.fork(kid, 0).unwrap().is_empty());
    e.release(kid).unwrap();
    assert_eq!(invalid(e.release(kid).unwrap_err()), InvalidNodeReason::Released);
    assert_eq!(invalid(e.node_logits(kid).unwrap_err()), InvalidNodeReason::Released);
    e.release(root).unwrap();
    assert_eq!(e.kv_pages_in_use(), 0);
    for (cfg, needle) in [
        (EngineConfig { max_batch_rows: 0, ..pool(8) }, "max_batch_rows"),
        (EngineConfig { page_size: 3, ..pool(8) }, "page_size"),
        (EngineConfig { attn_head_dim: Some(8), ..pool(8) }, "attn_head_dim"),
        (EngineConfig { max_context: Some(1), ..pool(8) }, "max_context"),
    ] {
        is_request(ModelEngine::new(&model, cfg).map(|_| ()), needle);
    }
}
