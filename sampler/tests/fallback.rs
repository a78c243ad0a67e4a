//! Fallback (docs/treepo.md §1.5): exact cut points for a fixed seed, re-opened branches as new
//! children of the existing node, and the policies.

mod common;

use common::{FILL, cfg, check_tree, ordinals, scripted};
use treepo_sampler::schedule::{fallback_cut, plan_fallback};
use treepo_sampler::seed::SchedRng;
use treepo_sampler::toy::{EOS, ScriptSegment};
use treepo_sampler::{
    FallbackEvent, FallbackPolicy, FinishReason, NoHooks, NodeId, Query, TreeSampler,
};

const PROMPT: &[u32] = &[12, 9, 13];

/// Depth 1 is filler, every depth-2 segment stops after 3 tokens: w = 8 cannot be filled by the
/// first wave (4 leaves), so fallback re-opens.
fn stop_at_depth_two(_: usize, path: &[u32]) -> ScriptSegment {
    if path.len() >= 2 {
        ScriptSegment::tokens(&[FILL, FILL, EOS])
    } else {
        ScriptSegment::repeat(FILL, 4)
    }
}

#[test]
fn fallback_cut_points_for_a_fixed_seed() {
    let mut c = cfg(4, 4, 2, 8);
    c.seed = 3;
    let sampler = TreeSampler::new(c.clone(), NoHooks).unwrap();
    let tree = sampler.sample(&mut scripted(stop_at_depth_two), &[Query::new(0, PROMPT)]).unwrap();
    check_tree(&tree, &c);
    let q = &tree.queries()[0];
    assert_eq!(q.leaves().len(), 8);

    // Replay the query's stream by hand: fixed init draws nothing; the first fallback round
    // shuffles the 4 leaves (Fisher–Yates from the back), then draws j ~ U[1, blocks] per pick
    // with blocks = ceil(7 / 4) = 2, cut = (2 − j)·4.
    let mut rng = SchedRng::for_query(3, 0);
    let mut order = vec![0usize, 1, 2, 3];
    rng.shuffle(&mut order);
    let j1 = rng.uniform_usize(1, 2);
    let j2 = rng.uniform_usize(1, 2);
    let first_round: Vec<(Option<usize>, usize)> =
        q.fallbacks().iter().filter(|f| f.step == 2).map(|f| (f.leaf, f.cut)).collect();
    assert_eq!(first_round, vec![(Some(order[0]), (2 - j1) * 4), (Some(order[1]), (2 - j2) * 4)]);

    // Pinned for seed 3.
    assert_eq!(
        q.fallbacks(),
        &[
            FallbackEvent { step: 2, leaf: Some(1), cut: 4, node: NodeId(1), k: 2 },
            FallbackEvent { step: 2, leaf: Some(0), cut: 0, node: NodeId::ROOT, k: 2 },
        ]
    );
    for f in q.fallbacks() {
        let leaf_path = q.leaf_path(f.leaf.unwrap());
        // The re-opened node is the leaf's ancestor at depth cut / l ...
        assert_eq!(leaf_path[f.cut / 4], f.node);
        // ... and the new branches are its newest children, starting right at the cut.
        let kids = q.nodes()[f.node.index()].children();
        for &kid in &kids[kids.len() - f.k..] {
            assert_eq!(q.nodes()[kid.index()].span().start, f.cut);
        }
    }
    // Leaf 1 = [0,1] is cut after its first segment: node 1 = [0] already had children [0,0],
    // [0,1]; the re-opened ones are [0,2], [0,3] and stop at once. Leaf 0 = [0,0] restarts from
    // the query: the root's new children [2], [3] (depth 1, filler, one more step).
    let new_paths: Vec<Vec<u32>> = q.leaves()[4..].iter().map(|l| ordinals(q, l.node())).collect();
    assert_eq!(new_paths, vec![vec![0, 2], vec![0, 3], vec![2, 0], vec![3, 0]]);
    // The re-opened context is query ⊕ truncated response: leaf [0,2] = [0]'s segment + its own.
    assert_eq!(q.response_tokens(4), vec![FILL, FILL, FILL, FILL, FILL, FILL, EOS]);
    assert_eq!(tree.cost().fallbacks, 2);
}

#[test]
fn fallback_cut_rules() {
    let mut c = cfg(3, 4, 2, 8);
    let mut rng = SchedRng::for_query(9, 9);
    // len 0: cut 0, no draw.
    let before = rng.clone();
    assert_eq!(fallback_cut(&c, 0, &mut rng), 0);
    assert_eq!(rng, before);
    // len < window: one block → j = 1 → cut 0.
    assert_eq!(fallback_cut(&c, 3, &mut rng), 0);
    // Cuts are multiples of l below the length, never at depth >= d.
    for len in 1..=12 {
        for _ in 0..50 {
            let cut = fallback_cut(&c, len, &mut rng);
            assert_eq!(cut % 4, 0);
            assert!(cut < len && cut / 4 < 3, "len {len} cut {cut}");
        }
    }
    // A misaligned window (6 with l = 4): cut = (blocks − j)·6, then `cut / l >= d ⇒ l·(d − 1)`.
    c.tree_fallback_window_size = Some(6);
    c.tree_max_depth = 2;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..200 {
        seen.insert(fallback_cut(&c, 12, &mut rng));
    }
    // blocks = 2: cut ∈ {6, 0}; 6 / 4 = 1 < 2 stays.
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), vec![0, 6]);
    c.tree_fallback_window_size = Some(8);
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..200 {
        seen.insert(fallback_cut(&c, 24, &mut rng));
    }
    // blocks = 3: cut ∈ {16, 8, 0}; 16 / 4 = 4 >= 2 → 4·1 = 4; 8 / 4 = 2 >= 2 → 4.
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), vec![0, 4]);
    // max_fallback_window = 1: only the last window.
    let mut c = cfg(8, 4, 2, 8);
    c.tree_max_fallback_window = Some(1);
    assert!((0..50).all(|_| fallback_cut(&c, 20, &mut rng) == 16));
    // from_start: always 0.
    c.tree_fallback_policy = FallbackPolicy::FromStart;
    assert!((0..50).all(|_| fallback_cut(&c, 20, &mut rng) == 0));
}

#[test]
fn plan_fallback_candidates_and_bare_query() {
    let c = cfg(4, 4, 2, 8);
    let mut rng = SchedRng::for_query(1, 0);
    // No eligible leaf (only depth/length/repetition stops): the bare query, k = min(b, remaining).
    let leaves = [
        (FinishReason::MaxInferSteps, 16),
        (FinishReason::RepetitionStop, 5),
        (FinishReason::KvExhausted, 3),
    ];
    let picks = plan_fallback(&c, &leaves, 5, &mut rng);
    assert_eq!(picks.len(), 1);
    assert_eq!((picks[0].leaf, picks[0].cut, picks[0].k), (None, 0, 2));
    // Eligible leaves: k = min(b, remaining) each until remaining is used: 2 + 1.
    let leaves = [
        (FinishReason::Finished, 9),
        (FinishReason::MaxOutputTokens, 16),
        (FinishReason::EarlyStoppedByEos, 5),
    ];
    let picks = plan_fallback(&c, &leaves, 3, &mut rng);
    assert_eq!(picks.iter().map(|p| p.k).collect::<Vec<_>>(), vec![2, 1]);
    let mut picked: Vec<usize> = picks.iter().map(|p| p.leaf.unwrap()).collect();
    picked.sort_unstable();
    assert_eq!(picked, vec![0, 2]);
    // random_all also re-opens the others.
    let mut all = c.clone();
    all.tree_fallback_traj_policy = treepo_sampler::FallbackTrajPolicy::RandomAll;
    let picks = plan_fallback(&all, &leaves, 6, &mut rng);
    assert_eq!(picks.len(), 3);
    // from_start: one candidate per round, cut 0.
    let mut fs = c.clone();
    fs.tree_fallback_policy = FallbackPolicy::FromStart;
    let picks = plan_fallback(&fs, &leaves, 6, &mut rng);
    assert_eq!((picks.len(), picks[0].cut, picks[0].k), (1, 0, 2));
    // no_fallback and remaining = 0 plan nothing.
    let mut nf = c.clone();
    nf.tree_fallback_policy = FallbackPolicy::NoFallback;
    assert!(plan_fallback(&nf, &leaves, 6, &mut rng).is_empty());
    assert!(plan_fallback(&c, &leaves, 0, &mut rng).is_empty());
}

#[test]
fn no_fallback_leaves_the_query_short_and_from_start_restarts() {
    let mut c = cfg(4, 4, 2, 8);
    c.tree_fallback_policy = FallbackPolicy::NoFallback;
    let sampler = TreeSampler::new(c.clone(), NoHooks).unwrap();
    let tree = sampler.sample(&mut scripted(stop_at_depth_two), &[Query::new(0, PROMPT)]).unwrap();
    check_tree(&tree, &c);
    assert_eq!(tree.queries()[0].leaves().len(), 4);

    c.tree_fallback_policy = FallbackPolicy::FromStart;
    let sampler = TreeSampler::new(c.clone(), NoHooks).unwrap();
    let tree = sampler.sample(&mut scripted(stop_at_depth_two), &[Query::new(0, PROMPT)]).unwrap();
    check_tree(&tree, &c);
    let q = &tree.queries()[0];
    assert_eq!(q.leaves().len(), 8);
    assert!(q.fallbacks().iter().all(|f| f.cut == 0 && f.node == NodeId::ROOT));
}

/// With no eligible candidate (every path hit a limit), fallback restarts from the bare query.
#[test]
fn bare_query_fallback_when_nothing_is_eligible() {
    let mut c = cfg(2, 4, 2, 6);
    c.max_response_length = Some(100);
    let sampler = TreeSampler::new(c.clone(), NoHooks).unwrap();
    let tree = sampler
        .sample(&mut scripted(|_, _| ScriptSegment::repeat(FILL, 4)), &[Query::new(0, PROMPT)])
        .unwrap();
    check_tree(&tree, &c);
    let q = &tree.queries()[0];
    assert_eq!(q.leaves().len(), 6);
    assert!(q.leaves().iter().all(|l| l.reason() == FinishReason::MaxInferSteps));
    // 2 → 4 leaves at depth 2, then one bare-query round of k = 2.
    assert_eq!(q.fallbacks().len(), 1);
    assert_eq!(
        (q.fallbacks()[0].leaf, q.fallbacks()[0].node, q.fallbacks()[0].k),
        (None, NodeId::ROOT, 2)
    );
}
