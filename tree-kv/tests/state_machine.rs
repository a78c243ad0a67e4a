//! Property test: random operation sequences (valid and invalid on purpose) against the reference
//! model in `common/model`, with `check_invariants` and a read-back of every live leaf's tokens
//! after every operation.

mod common;

use common::model::{Harness, Op};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use tree_kv::{CacheConfig, TreeKvCache};

fn op() -> impl Strategy<Value = Op> {
    let sel = any::<u8>();
    prop_oneof![
        // Few prompt seeds, so later roots and lookups hit pages of earlier ones.
        3 => (0u8..6, 0u8..40).prop_map(|(seed, len)| Op::CreateRoot { seed, len }),
        6 => (sel, any::<u8>(), 0u8..24).prop_map(|(node, seed, len)| Op::Append { node, seed, len }),
        2 => (sel, 0u8..6, 0u8..24).prop_map(|(node, seed, len)| Op::Prefill { node, seed, len }),
        4 => (sel, any::<u8>()).prop_map(|(node, n)| Op::Fork { node, n }),
        4 => sel.prop_map(|node| Op::Release { node }),
        1 => (0u8..6, 0u8..40).prop_map(|(seed, len)| Op::Match { seed, len }),
        1 => any::<u8>().prop_map(|n| Op::Evict { n: n % 4 }),
        1 => Just(Op::EvictAll),
        2 => (any::<u16>(), any::<u8>()).prop_map(|(mask, extra)| Op::Export { mask, extra }),
        1 => any::<u8>().prop_map(|op| Op::Forged { op }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn random_ops_match_model(
        ps_log in 0u32..4,
        num_pages in 1u32..64,
        ops in prop::collection::vec(op(), 1..80),
    ) {
        let cache = TreeKvCache::new(CacheConfig::new(num_pages).with_page_size(1 << ps_log)).unwrap();
        let mut h = Harness::new(cache);
        for op in &ops {
            if let Err(e) = h.apply(op) {
                prop_assert!(false, "{}", e);
            }
        }
    }
}

/// Coverage: the random runs above must reach every interesting path. Runs its own cases so it
/// does not depend on test order.
#[test]
fn random_ops_cover_interesting_paths() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = (0u32..4, 1u32..64, prop::collection::vec(op(), 1..80));
    let mut totals = [0u64; 7];
    for _ in 0..200 {
        let (ps_log, num_pages, ops) = strategy.new_tree(&mut runner).unwrap().current();
        let cache =
            TreeKvCache::new(CacheConfig::new(num_pages).with_page_size(1 << ps_log)).unwrap();
        let mut h = Harness::new(cache);
        for op in &ops {
            h.apply(op).unwrap();
        }
        let s = &h.stats;
        for (acc, v) in totals.iter_mut().zip([
            s.ok,
            s.expected_errors,
            s.exhausted,
            s.copies,
            s.claims,
            s.cached_tokens,
            s.evicted,
        ]) {
            *acc += v;
        }
    }
    let names =
        ["ok", "expected_errors", "exhausted", "copies", "claims", "cached_tokens", "evicted"];
    for (n, v) in names.iter().zip(totals) {
        eprintln!("{n}: {v}");
        assert!(v > 0, "no {n} in 200 random runs");
    }
}
