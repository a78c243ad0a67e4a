//! Pinned page counts: with segments that are a multiple of the page size, pool usage is exactly
//! the distinct pages of the tree plus one tail copy per b = 2 fork of a non-aligned node.

mod common;

use common::*;
use tree_kv::{CacheConfig, NodeId, TreeKvCache};

struct Tree {
    cache: TreeKvCache,
    leaves: Vec<NodeId>,
    forks: u32,
    copies: u32,
    /// Pages the tree needs if no tail were ever copied: per node, the pages that start inside
    /// its span (a root also counts its first page).
    distinct: u32,
}

/// A complete binary tree (b = 2) of `depth` segments of `seg` tokens under a `prompt`-token root.
fn binary_tree(prompt_len: u32, seg: u32, depth: u32) -> Tree {
    let mut cache = TreeKvCache::new(CacheConfig::new(4096)).unwrap();
    let ps = cache.page_size();
    let mut t = Tokens::new();
    let root = cache.create_root(&prompt(prompt_len)).unwrap().node;
    let (mut forks, mut copies) = (0, 0);
    let mut distinct = prompt_len.div_ceil(ps);
    let mut level = vec![root];
    for _ in 0..depth {
        let mut next = Vec::new();
        for n in level {
            let f = cache.fork(n, 2).unwrap();
            forks += 1;
            copies += f.copies.len() as u32;
            for c in f.children {
                let start = cache.node(c).unwrap().end;
                cache.append(c, &t.take(seg as usize)).unwrap();
                distinct += (start + seg).div_ceil(ps) - start.div_ceil(ps);
                next.push(c);
            }
        }
        level = next;
    }
    cache.check_invariants().unwrap();
    Tree { cache, leaves: level, forks, copies, distinct }
}

#[test]
fn non_aligned_prompt_costs_one_copy_per_binary_fork() {
    // Prompt 37 (t = 5 at every fork), segments 32 = 2 pages, depth 4: 15 forks.
    let tr = binary_tree(37, 32, 4);
    assert_eq!(tr.forks, 15);
    assert_eq!(tr.copies, 15);
    // Root: 3 pages; each of the 30 other nodes starts 2 new pages.
    assert_eq!(tr.distinct, 3 + 30 * 2);
    assert_eq!(tr.cache.num_referenced(), tr.distinct + tr.copies);
    assert_eq!(tr.cache.num_referenced(), 78);
    // Without sharing every leaf would hold its whole path: 16 leaves x ceil(165 / 16) pages.
    let naive: u32 = tr.leaves.len() as u32 * (37u32 + 4 * 32).div_ceil(16);
    assert_eq!(naive, 176);
}

#[test]
fn aligned_prompt_forks_without_copies() {
    let tr = binary_tree(32, 32, 4);
    assert_eq!((tr.forks, tr.copies), (15, 0));
    assert_eq!(tr.distinct, 2 + 30 * 2);
    assert_eq!(tr.cache.num_referenced(), tr.distinct);
}

#[test]
fn refork_while_claim_held_copies_for_every_child() {
    // TreePO's fallback adds children to a node whose first child still holds the tail claim.
    let mut c = TreeKvCache::new(CacheConfig::new(64)).unwrap();
    let r = c.create_root(&prompt(37)).unwrap().node;
    let first = c.fork(r, 2).unwrap();
    assert_eq!(first.copies.len(), 1);
    let again = c.fork(r, 2).unwrap();
    assert_eq!(again.copies.len(), 2);
    // Once the claimant is released without filling the page, the claim is free again.
    c.release(first.children[0]).unwrap();
    assert_eq!(c.fork(r, 3).unwrap().copies.len(), 2);
    c.check_invariants().unwrap();
    assert_eq!(c.node(r).unwrap().children.len(), 6);
}

#[test]
fn release_everything_returns_the_pool() {
    let mut tr = binary_tree(37, 32, 3);
    let root = {
        let mut n = tr.leaves[0];
        while let Some(p) = tr.cache.node(n).unwrap().parent {
            n = p;
        }
        n
    };
    // Release the root first: it and the internal nodes are kept until the last leaf goes.
    tr.cache.release(root).unwrap();
    let mut internal = Vec::new();
    for &l in &tr.leaves {
        let mut n = tr.cache.node(l).unwrap().parent;
        while let Some(p) = n.filter(|&p| p != root && !internal.contains(&p)) {
            internal.push(p);
            n = tr.cache.node(p).unwrap().parent;
        }
    }
    for n in internal {
        tr.cache.release(n).unwrap();
    }
    let leaves = tr.leaves.clone();
    for (k, l) in leaves.iter().enumerate() {
        assert!(tr.cache.num_referenced() > 0);
        tr.cache.release(*l).unwrap();
        tr.cache.check_invariants().unwrap();
        assert_eq!(tr.cache.num_nodes() == 0, k + 1 == leaves.len());
    }
    assert_eq!(tr.cache.num_referenced(), 0);
    tr.cache.evict_all();
    assert_eq!(tr.cache.num_free(), tr.cache.num_pages());
    tr.cache.check_invariants().unwrap();
}
