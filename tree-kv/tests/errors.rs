//! Every misuse returns its typed error and leaves the cache exactly as it was.

mod common;

use common::*;
use tree_kv::{CacheConfig, KvError, NodeId, PageId, PageState, TreeKvCache};

/// Everything observable that an error must not change.
fn snapshot(c: &TreeKvCache) -> String {
    format!("{:?}", (c.free_pages(), c.cached_pages(), c.num_nodes(), c.num_indexed()))
}

#[test]
fn bad_configuration() {
    for ps in [0, 3, 24, 1 << 17] {
        let err = TreeKvCache::new(CacheConfig::new(8).with_page_size(ps)).unwrap_err();
        assert_eq!(err, KvError::InvalidPageSize { page_size: ps });
    }
    for n in [0, i32::MAX as u32 + 1] {
        let err = TreeKvCache::new(CacheConfig::new(n)).unwrap_err();
        assert_eq!(err, KvError::InvalidNumPages { num_pages: n, max: i32::MAX as u32 });
    }
    assert!(TreeKvCache::new(CacheConfig::new(1).with_page_size(1)).is_ok());
}

#[test]
fn node_misuse() {
    let mut c = TreeKvCache::new(CacheConfig::new(16)).unwrap();
    let r = c.create_root(&prompt(20)).unwrap().node;
    let f = c.fork(r, 2).unwrap();
    let (x, y) = (f.children[0], f.children[1]);
    let before = snapshot(&c);

    assert_eq!(c.fork(r, 0), Err(KvError::ZeroFork { node: r }));
    let wide = tree_kv::MAX_FORK + 1;
    assert_eq!(c.fork(x, wide), Err(KvError::TooManyNodes { requested: wide.into(), live: 3 }));
    assert_eq!(c.append(r, &[1]), Err(KvError::NodeFrozen { node: r }));
    assert_eq!(c.prefill(r, &[1]), Err(KvError::NodeFrozen { node: r }));
    c.release(r).unwrap(); // kept: it has children
    let before_released = snapshot(&c);
    assert_eq!(before_released, before);
    assert_eq!(c.release(r), Err(KvError::NodeReleased { node: r }));
    assert_eq!(c.fork(r, 1), Err(KvError::NodeReleased { node: r }));
    assert_eq!(c.append(r, &[1]), Err(KvError::NodeReleased { node: r }));
    c.release(x).unwrap();
    assert_eq!(c.release(x), Err(KvError::UnknownNode { node: x }));
    assert_eq!(c.append(x, &[1]), Err(KvError::UnknownNode { node: x }));
    assert_eq!(c.fork(x, 2), Err(KvError::UnknownNode { node: x }));
    let forged = NodeId { index: 1000, generation: 0 };
    assert_eq!(c.kv_chunk(forged), Err(KvError::UnknownNode { node: forged }));
    assert_eq!(c.node(forged), Err(KvError::UnknownNode { node: forged }));
    let bad_page = PageId(16);
    assert_eq!(c.page_state(bad_page), Err(KvError::UnknownPage { page: bad_page, num_pages: 16 }));
    c.check_invariants().unwrap();

    // Releasing the last child collects it, then the released root.
    c.release(y).unwrap();
    assert_eq!(c.num_nodes(), 0);
    assert_eq!(c.release(r), Err(KvError::UnknownNode { node: r }));
}

#[test]
fn stale_id_after_slot_reuse() {
    let mut c = TreeKvCache::new(CacheConfig::new(16)).unwrap();
    let old = c.create_root(&prompt(3)).unwrap().node;
    c.release(old).unwrap();
    let new = c.create_root(&prompt(3)).unwrap().node;
    assert_eq!(new.index, old.index);
    assert_ne!(new.generation, old.generation);
    assert_eq!(c.append(old, &[1]), Err(KvError::UnknownNode { node: old }));
    c.append(new, &[1]).unwrap();
}

#[test]
fn pool_exhausted_changes_nothing() {
    let mut c = TreeKvCache::new(CacheConfig::new(4)).unwrap();
    let mut t = Tokens::new();
    // 5 pages for 65 tokens: refused, nothing allocated.
    let err = c.create_root(&prompt(65)).unwrap_err();
    assert_eq!(err, KvError::PoolExhausted { requested: 5, free: 4, evictable: 0 });
    assert_eq!(c.num_free(), 4);
    let r = c.create_root(&prompt(35)).unwrap().node; // pages 0 1 2, tail of 3 rows
    let before = snapshot(&c);
    // Fork into 3 needs 2 tail copies; only page 3 is free.
    assert_eq!(c.fork(r, 3), Err(KvError::PoolExhausted { requested: 2, free: 1, evictable: 0 }));
    // 13 rows fit in the tail, then 17 more tokens need 2 pages.
    assert_eq!(
        c.append(r, &t.take(30)),
        Err(KvError::PoolExhausted { requested: 2, free: 1, evictable: 0 })
    );
    assert_eq!(snapshot(&c), before);
    assert_eq!(c.node(r).unwrap().end, 35);
    c.check_invariants().unwrap();
    // Exactly what fits still works.
    seg(&mut c, &mut t, r, 29);
    assert_eq!(c.num_free(), 0);
    assert_eq!(c.append(r, &[]), Ok(vec![]));
}

#[test]
fn prefill_counts_cached_hits_out_of_the_evictable_pages() {
    // Request 1 leaves 2 prompt pages cached; request 2 reuses them, so they cannot also be
    // evicted to make room for its own pages.
    let mut c = TreeKvCache::new(CacheConfig::new(3).with_page_size(4)).unwrap();
    let r = c.create_root(&prompt(8)).unwrap().node;
    c.release(r).unwrap();
    assert_eq!(c.num_cached(), 2);
    let mut long = prompt(8);
    long.extend(100..109); // 17 tokens: 2 reused pages (the match limit is 16 of 16) + 3 new
    let err = c.create_root(&long).unwrap_err();
    assert_eq!(err, KvError::PoolExhausted { requested: 3, free: 1, evictable: 0 });
    assert_eq!(c.cached_pages(), [PageId(1), PageId(0)]);
    // The prompt alone fits: reuse one page (at most 7 of 8 tokens), compute the second.
    let p = c.create_root(&prompt(8)).unwrap();
    assert_eq!(p.cached_tokens, 4);
    assert_eq!(c.page_state(PageId(1)), Ok(PageState::Cached));
    c.check_invariants().unwrap();
}

/// Regression: `prefill` on a node ending mid-page counted its new pages as if the tokens started
/// on a page boundary, so it refused with `PoolExhausted` when the pool had room (found by the
/// state-machine test).
#[test]
fn prefill_mid_page_counts_pages_from_the_node_end() {
    let mut c = TreeKvCache::new(CacheConfig::new(7).with_page_size(4)).unwrap();
    let r = c.create_root(&prompt(17)).unwrap().node; // 5 pages, 1 row in the last
    // 9 more tokens: 3 in the tail page, 6 in 2 new pages (not 3).
    let p = c.prefill(r, &[7; 9]).unwrap();
    assert_eq!(p.slots.len(), 9);
    assert_eq!(c.num_free(), 0);
    c.check_invariants().unwrap();
}
