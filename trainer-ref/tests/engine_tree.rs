//! Tree decode of several leaves equals independent decode of each leaf: a batched segment over
//! a tree (shared prompt with a partial tail page, copied tails, nested forks, a fallback-style
//! re-fork of an internal node) gives every leaf the tokens, log-probs and next-token logits a
//! fresh engine computes for that leaf's context alone.

use crate::engine_common::{TOL, check_row, params, random_model, req, small, tokens};
use treepo_kernels::testing::Tol;
use treepo_kernels::{Device, per_backend};
use treepo_sampler::{DecodeParams, Engine, EngineNode, SegmentEnd, SegmentRequest};
use treepo_trainer::engine::{EngineConfig, ModelEngine};
use treepo_trainer::model::Model;

const V: usize = 31;

fn config() -> EngineConfig {
    EngineConfig { num_pages: 64, page_size: 8, ..EngineConfig::default() }
}

/// One leaf of the batched engine: its handle, its request, and its context before the segment.
struct Leaf {
    node: EngineNode,
    req: SegmentRequest,
    context: Vec<u32>,
}

/// Decodes `leaves` in one batched call, then checks each against a fresh engine that prefills
/// the leaf's context and decodes the same request alone. Returns the new tokens per leaf.
fn decode_and_check(
    e: &mut ModelEngine<'_>,
    model: &Model,
    leaves: &[Leaf],
    p: &DecodeParams,
    what: &str,
) -> Vec<Vec<u32>> {
    let reqs: Vec<SegmentRequest> = leaves.iter().map(|l| l.req).collect();
    let outs = e.decode_segment(&reqs, p).unwrap();
    let mut new_tokens = Vec::new();
    for (i, (leaf, out)) in leaves.iter().zip(&outs).enumerate() {
        let mut f = ModelEngine::new(model, config()).unwrap();
        let root = f.prefill(&[&leaf.context]).unwrap()[0];
        let alone = f.decode_segment(&[SegmentRequest { node: root, ..leaf.req }], p).unwrap();
        assert_eq!(
            out.tokens, alone[0].tokens,
            "{what} leaf {i}: tokens differ from a lone decode"
        );
        assert_eq!(out.end, alone[0].end, "{what} leaf {i}");
        let want: Vec<f32> = alone[0].logprobs.clone();
        check_row(&format!("{what} leaf {i} logprobs"), &out.logprobs, &want, TOL);
        let (a, b) = (e.node_logits(leaf.node).unwrap(), f.node_logits(root).unwrap());
        check_row(&format!("{what} leaf {i} next logits"), &a, &b, TOL);
        new_tokens.push(out.tokens.clone());
    }
    new_tokens
}

fn tree_matches_single_leaves(dev: &Device) {
    let model = random_model(dev, small(V), 21, 0.3);
    let mut e = ModelEngine::new(&model, config()).unwrap();
    let prompt = tokens(13, V as u32, 2, 5); // 13 = 8 + 5: the prompt ends mid-page
    let root = e.prefill(&[&prompt]).unwrap()[0];
    let kids = e.fork(root, 3).unwrap();
    assert_eq!(e.stats().page_copies, 2, "the first child claims the tail, the others copy it");
    let prefixes =
        [tokens(3, V as u32, 2, 6), tokens(5, V as u32, 2, 7), tokens(1, V as u32, 2, 8)];
    let mut paths: Vec<Vec<u32>> = Vec::new();
    let mut leaves = Vec::new();
    for (i, (&k, pre)) in kids.iter().zip(&prefixes).enumerate() {
        e.extend(k, pre).unwrap();
        let context = [prompt.as_slice(), pre].concat();
        leaves.push(Leaf { node: k, req: req(k, 0, &[i as u32], pre.len() as u64, 6), context });
        paths.push(pre.clone());
    }
    let greedy = params(0.0, &[]);
    let seg = decode_and_check(&mut e, &model, &leaves, &greedy, &format!("{} greedy", dev.kind()));
    for (p, s) in paths.iter_mut().zip(seg) {
        p.extend(s);
    }
    // kids[0] ends at 22 (mid-page: one copy for its second child), kids[1] at 24 (aligned: no
    // copy); re-forking the root (fallback) copies its tail again, since kids[0] holds the claim.
    let g0 = e.fork(kids[0], 2).unwrap();
    let g1 = e.fork(kids[1], 2).unwrap();
    let again = e.fork(root, 1).unwrap();
    assert_eq!(e.stats().page_copies, 4);
    let mut leaves = Vec::new();
    let mut add = |node, path: &[u32], ords: &[u32]| {
        let context = [prompt.as_slice(), path].concat();
        leaves.push(Leaf { node, req: req(node, 0, ords, path.len() as u64, 5), context });
    };
    add(g0[0], &paths[0], &[0, 0]);
    add(g0[1], &paths[0], &[0, 1]);
    add(g1[0], &paths[1], &[1, 0]);
    add(g1[1], &paths[1], &[1, 1]);
    add(kids[2], &paths[2], &[2]);
    add(again[0], &[], &[3]);
    let sampled = params(1.0, &[]);
    let segs =
        decode_and_check(&mut e, &model, &leaves, &sampled, &format!("{} sampled", dev.kind()));
    assert_ne!(segs[0], segs[1], "siblings draw different uniforms");
    e.cache().check_invariants().unwrap();
    for n in g0.into_iter().chain(g1).chain(again).chain(kids).chain([root]) {
        e.release(n).unwrap();
    }
    assert_eq!(e.kv_pages_in_use(), 0);
}

/// A leaf that ended on a stop token was fed it, so it can be forked and continued (TreePO's
/// fallback re-opens finished paths) with the logits of its full context.
fn stopped_leaf_stays_forkable(dev: &Device) {
    let model = random_model(dev, small(V), 22, 0.3);
    let mut e = ModelEngine::new(&model, config()).unwrap();
    let prompt = tokens(9, V as u32, 2, 9);
    let root = e.prefill(&[&prompt]).unwrap()[0];
    let leaf = e.fork(root, 1).unwrap()[0];
    let every: Vec<u32> = (0..V as u32).collect();
    let out = e.decode_segment(&[req(leaf, 0, &[0], 0, 4)], &params(1.0, &every)).unwrap();
    assert_eq!((out[0].tokens.len(), out[0].end), (1, SegmentEnd::Stop));
    let child = e.fork(leaf, 1).unwrap()[0];
    let mut f = ModelEngine::new(&model, config()).unwrap();
    let full = [prompt.as_slice(), &out[0].tokens].concat();
    let r = f.prefill(&[&full]).unwrap()[0];
    let tol = Tol { atol: 2e-4, rtol: 2e-4 };
    check_row("after stop", &e.node_logits(child).unwrap(), &f.node_logits(r).unwrap(), tol);
}

per_backend!(tree_matches_single_leaves, stopped_leaf_stays_forkable);
