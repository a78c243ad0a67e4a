//! A full TreePO rollout of one query, scripted step by step with hand-computed page ids,
//! refcounts, copies and free/LRU list order.
//!
//! Parameters (the issue's): prompt 37 tokens, page 16, segment l = 32, w = 16, b = 2, d = 6,
//! fixed initial divergence, `fixed_avg` budget split. Pool: 28 pages, small enough that the last
//! decode step evicts cached pages. Every non-root node starts at 37 + 32k, so every fork sees a
//! 5-row tail (t = 37 % 16 = 5): the first child claims the tail page, the others copy it.
//!
//! Tree (leaf: tokens decoded in its last segment, finish):
//! ```text
//! R(37) ─ A(+32) ─ A1(+9 eos)                     fallback: B1 ─ E1(+4 eos), E2(+32 eos)
//!       │        ├ A2(+32) ─ C1(+11) C2(+32) C3(+3) C4(+16)   (all eos)
//!       │        └ G1(+32 eos), G2(+2 eos)        (fallback re-opening at A)
//!       ├ B(+32) ─ B1(+32) ─ D1(+1) D2(+27) D3(+32) D4(+8)     (all eos)
//!       │        └ B2(+20 eos)
//!       └ F1(+11 eos), F2(+32 eos)                (fallback re-opening at the root)
//! ```

mod common;

use common::*;
use tree_kv::{CacheConfig, KvError, PageCopy, PageId, TreeKvCache};

fn copy(src: u32, dst: u32) -> PageCopy {
    PageCopy { src: PageId(src), dst: PageId(dst), rows: 5 }
}

#[test]
fn treepo_rollout_exact_pages() {
    let mut c = TreeKvCache::new(CacheConfig::new(28)).unwrap();
    let mut t = Tokens::new();
    let q = prompt(37);

    // S0: prefill. Pages 0, 1 full (indexed), page 2 holds rows 0..5.
    let root = c.create_root(&q).unwrap();
    let r = root.node;
    assert_eq!(root.cached_tokens, 0);
    let mut want = rows(0, 0..16);
    want.extend(rows(1, 0..16));
    want.extend(rows(2, 0..5));
    assert_eq!(slots(&root.slots), want);
    assert_eq!(pages(&c, r), [0, 1, 2]);
    assert_eq!(free(&c), (3..28).collect::<Vec<_>>());
    assert_eq!(c.num_indexed(), 2);
    c.check_invariants().unwrap();

    // S1: initial divergence, fork(R, 2): A claims page 2, B copies it into page 3.
    let f = c.fork(r, 2).unwrap();
    let [a, b] = f.children[..] else { panic!() };
    assert_eq!(f.copies, [copy(2, 3)]);
    assert_eq!((rc(&c, 2), rc(&c, 3)), (2, 1));
    assert_eq!(pages(&c, a), [2]);
    assert_eq!(pages(&c, b), [3]);
    // Decode depth 1: 11 rows into the tail page, one full page, 5 rows of a new page.
    let mut want = rows(2, 5..16);
    want.extend(rows(4, 0..16));
    want.extend(rows(5, 0..5));
    assert_eq!(seg(&mut c, &mut t, a, 32), want);
    seg(&mut c, &mut t, b, 32);
    assert_eq!(pages(&c, a), [2, 4, 5]);
    assert_eq!(pages(&c, b), [3, 6, 7]);
    assert_eq!(free(&c), (8..28).collect::<Vec<_>>());
    assert_eq!(c.num_indexed(), 6); // 0, 1, 2, 3, 4, 6

    // S2: budget 4 -> fork A and B into 2 each.
    let f = c.fork(a, 2).unwrap();
    let [a1, a2] = f.children[..] else { panic!() };
    assert_eq!(f.copies, [copy(5, 8)]);
    let f = c.fork(b, 2).unwrap();
    let [b1, b2] = f.children[..] else { panic!() };
    assert_eq!(f.copies, [copy(7, 9)]);
    assert_eq!((rc(&c, 5), rc(&c, 7)), (2, 2));
    assert_eq!(seg(&mut c, &mut t, a1, 9), rows(5, 5..14)); // EOS inside the claimed page
    seg(&mut c, &mut t, a2, 32);
    seg(&mut c, &mut t, b1, 32);
    seg(&mut c, &mut t, b2, 20); // EOS
    assert_eq!(pages(&c, a1), [5]);
    assert_eq!(pages(&c, a2), [8, 10, 11]);
    assert_eq!(pages(&c, b1), [7, 12, 13]);
    assert_eq!(pages(&c, b2), [9, 14]);
    assert_eq!(free(&c), (15..28).collect::<Vec<_>>());
    // A1 and B2 finished: release them. A1's claim on page 5 returns to A (page 5 was not
    // filled, so its rows 5.. are free again); B2's full copy page 9 is cached, page 14 freed.
    c.release(a1).unwrap();
    c.release(b2).unwrap();
    c.check_invariants().unwrap();
    assert_eq!(rc(&c, 5), 1);
    assert_eq!(c.page_tokens(PageId(5)).unwrap().len(), 5);
    let mut want: Vec<u32> = (15..28).collect();
    want.push(14);
    assert_eq!(free(&c), want);
    assert_eq!(lru(&c), [9]);

    // S3: F = 2, f = 2, |A| = 2: total = max(2, min(14, 2*2 + 2*2)) = 8 -> 4 + 4.
    let f = c.fork(a2, 4).unwrap();
    let [c1, c2, c3, c4] = f.children[..] else { panic!() };
    assert_eq!(f.copies, [copy(11, 15), copy(11, 16), copy(11, 17)]);
    let f = c.fork(b1, 4).unwrap();
    let [d1, d2, d3, d4] = f.children[..] else { panic!() };
    assert_eq!(f.copies, [copy(13, 18), copy(13, 19), copy(13, 20)]);
    // Every path stops early this step.
    for (n, len) in [(c1, 11), (c2, 32), (c3, 3), (c4, 16), (d1, 1), (d2, 27), (d3, 32), (d4, 8)] {
        seg(&mut c, &mut t, n, len);
    }
    assert_eq!(pages(&c, c1), [11]);
    assert_eq!(pages(&c, c2), [15, 21, 22]);
    assert_eq!(pages(&c, c3), [16]);
    assert_eq!(pages(&c, c4), [17, 23]);
    assert_eq!(pages(&c, d1), [13]);
    assert_eq!(pages(&c, d2), [18, 24]);
    assert_eq!(pages(&c, d3), [19, 25, 26]);
    assert_eq!(pages(&c, d4), [20]);
    assert_eq!(free(&c), [27, 14]);
    for n in [c1, c2, c3, c4, d1, d2, d3, d4] {
        c.release(n).unwrap();
        c.check_invariants().unwrap();
    }
    // C1 filled page 11: it stays indexed and A2 keeps it (refcount 1). D1 did not fill page 13:
    // the claim returns to B1.
    assert_eq!((rc(&c, 11), rc(&c, 13)), (1, 1));
    assert_eq!(free(&c), [27, 14, 22, 16, 23, 26, 20]);
    assert_eq!(lru(&c), [9, 21, 15, 17, 24, 18, 25, 19]);
    assert_eq!(c.num_referenced(), 28 - 7 - 8);

    // Fallback: 10 leaves < w and no active path. Seeded candidate order D1, C3, A1, remaining 6:
    // D1 (65 tokens, 3 blocks, j = 1): cut 64 -> B1; C3 (67, j = 3): cut 0 -> R;
    // A1 (41, 2 blocks, j = 1): cut 32 -> A. Two new branches each.
    let f = c.fork(b1, 2).unwrap(); // claim on page 13 is free again: one copy
    let [e1, e2] = f.children[..] else { panic!() };
    assert_eq!(f.copies, [copy(13, 27)]);
    let f = c.fork(r, 2).unwrap(); // page 2 is full (A filled it): both children copy
    let [f1, f2] = f.children[..] else { panic!() };
    assert_eq!(f.copies, [copy(2, 14), copy(2, 22)]);
    let f = c.fork(a, 2).unwrap(); // A1 gave the claim on page 5 back: one copy
    let [g1, g2] = f.children[..] else { panic!() };
    assert_eq!(f.copies, [copy(5, 16)]);
    assert_eq!((rc(&c, 13), rc(&c, 2), rc(&c, 5)), (2, 2, 2));
    assert_eq!(free(&c), [23, 26, 20]);
    c.check_invariants().unwrap();

    // S4: the six fallback branches decode and all stop. The free list runs dry while F2
    // appends: eviction takes the LRU head 9, then 21 and 15 (21 before its radix parent 15).
    for (n, len) in [(e1, 4), (e2, 32), (f1, 11), (f2, 32), (g1, 32), (g2, 2)] {
        seg(&mut c, &mut t, n, len);
    }
    assert_eq!(pages(&c, e1), [13]);
    assert_eq!(pages(&c, e2), [27, 23, 26]);
    assert_eq!(pages(&c, f1), [14]);
    assert_eq!(pages(&c, f2), [22, 20, 9]);
    assert_eq!(pages(&c, g1), [5, 21, 15]);
    assert_eq!(pages(&c, g2), [16]);
    assert!(free(&c).is_empty());
    assert_eq!(lru(&c), [17, 24, 18, 25, 19]);
    assert_eq!(c.num_referenced(), 23);
    for (p, n) in [(2, 2), (5, 2), (7, 2), (13, 2), (0, 1), (9, 1), (21, 1)] {
        assert_eq!(rc(&c, p), n, "page {p}");
    }
    // 16 leaves. No free page is left and 5 cached pages could be evicted, so growing E1 from
    // 105 to 193 tokens (6 new pages) is refused, and nothing changes.
    let err = c.append(e1, &t.take(88)).unwrap_err();
    assert_eq!(err, KvError::PoolExhausted { requested: 6, free: 0, evictable: 5 });
    assert_eq!((c.node(e1).unwrap().end, lru(&c).len()), (105, 5));
    for leaf in [e1, e2, f1, f2, g1, g2] {
        let got = path_tokens(&c, leaf);
        assert_eq!(got[..37], q[..], "prompt on the path of {leaf}");
        assert_eq!(got.len() as u32, c.node(leaf).unwrap().end);
    }

    // Release everything. Internal nodes first: they stay (released) while children need them.
    for n in [r, a, b, e1] {
        c.release(n).unwrap();
    }
    assert_eq!(c.num_nodes(), 10); // R, A, B released but kept; E1 collected
    assert_eq!(c.release(r), Err(KvError::NodeReleased { node: r }));
    c.release(e2).unwrap();
    assert_eq!(free(&c), [26]);
    assert_eq!(lru(&c), [17, 24, 18, 25, 19, 23, 27]);
    c.release(b1).unwrap(); // collects B1, then B; R still has A, F1, F2
    assert!(matches!(c.node(b), Err(KvError::UnknownNode { .. })));
    assert_eq!(free(&c), [26, 13]);
    assert_eq!(lru(&c), [17, 24, 18, 25, 19, 23, 27, 12, 7, 6, 3]);
    for n in [f1, f2, g1, g2] {
        c.release(n).unwrap();
    }
    assert_eq!(free(&c), [26, 13, 9, 15, 16]);
    c.release(a2).unwrap(); // collects A2, A and R
    assert_eq!(c.num_nodes(), 0);
    assert_eq!(c.num_referenced(), 0);
    assert_eq!(free(&c), [26, 13, 9, 15, 16]);
    let cached =
        [17, 24, 18, 25, 19, 23, 27, 12, 7, 6, 3, 14, 20, 22, 21, 11, 10, 8, 5, 4, 2, 1, 0];
    assert_eq!(lru(&c), cached);
    c.check_invariants().unwrap();

    // A second request with the same prompt reuses the two cached prompt pages (at most 36 of
    // its 37 tokens may come from the cache, so page 2 is not taken) and computes 5 rows.
    let again = c.create_root(&q).unwrap();
    assert_eq!(again.cached_tokens, 32);
    assert_eq!(slots(&again.slots), rows(26, 0..5));
    assert_eq!(pages(&c, again.node), [0, 1, 26]);
    c.release(again.node).unwrap();
    c.check_invariants().unwrap();

    // Back to an empty pool.
    assert_eq!(c.evict_all(), 23);
    let mut want = vec![13, 9, 15, 16, 26];
    want.extend([
        17, 24, 18, 25, 19, 23, 27, 12, 7, 6, 3, 14, 20, 22, 21, 11, 10, 8, 5, 4, 2, 1, 0,
    ]);
    assert_eq!(free(&c), want);
    assert_eq!((c.num_free(), c.num_cached(), c.num_indexed()), (28, 0, 0));
    c.check_invariants().unwrap();
}
