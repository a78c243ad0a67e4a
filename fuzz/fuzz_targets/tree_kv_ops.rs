//! Fuzz target: arbitrary bytes decode into a pool geometry and a sequence of cache operations
//! (valid and invalid), run against the reference model of the property tests. It panics only
//! when `Harness::apply` reports a broken invariant or a disagreement with the model.

#![no_main]

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use tree_kv::{CacheConfig, TreeKvCache};

#[allow(dead_code)]
#[path = "../../tree-kv/tests/common/model/mod.rs"]
mod model;

use model::{Harness, Op};

fn op(u: &mut Unstructured<'_>) -> Result<Op> {
    let byte = |u: &mut Unstructured<'_>| u.arbitrary::<u8>();
    Ok(match u.choose_index(10)? {
        0 => Op::CreateRoot { seed: byte(u)? % 8, len: byte(u)? % 48 },
        1 | 2 => Op::Append { node: byte(u)?, seed: byte(u)?, len: byte(u)? % 40 },
        3 => Op::Prefill { node: byte(u)?, seed: byte(u)? % 8, len: byte(u)? % 40 },
        4 => Op::Fork { node: byte(u)?, n: byte(u)? },
        5 => Op::Release { node: byte(u)? },
        6 => Op::Match { seed: byte(u)? % 8, len: byte(u)? % 48 },
        7 => {
            if u.ratio(1u8, 4u8)? {
                Op::EvictAll
            } else {
                Op::Evict { n: byte(u)? % 8 }
            }
        }
        8 => Op::Export { mask: u.arbitrary()?, extra: byte(u)? },
        _ => Op::Forged { op: byte(u)? },
    })
}

fn run(data: &[u8]) -> Result<()> {
    let mut u = Unstructured::new(data);
    let page_size = 1u32 << u.int_in_range(0..=4u32)?;
    let num_pages = u.int_in_range(1..=96u32)?;
    let Ok(cache) = TreeKvCache::new(CacheConfig::new(num_pages).with_page_size(page_size)) else {
        return Ok(());
    };
    let mut h = Harness::new(cache);
    while !u.is_empty() {
        let op = op(&mut u)?;
        if let Err(e) = h.apply(&op) {
            panic!("tree-kv violation: {e}");
        }
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(data);
});
