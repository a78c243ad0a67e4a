//! Planning in steady state allocates nothing: once a `Plan` has seen the largest tree, every
//! later `plan_into` — same tree, a smaller one, another kind — reuses its buffers. Counted with
//! a global allocator that counts this thread's allocations.

mod tree_common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use tree_attn::{Plan, PlanKind, PlanOptions, plan_into};
use tree_common::{random_tree, two_level};
use treepo_kernels::testing::Rng;

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

struct Counting;

// SAFETY: forwards every call to the system allocator unchanged; the counter is a const-initialized
// thread-local `Cell` (no lazy initialization, no destructor), so touching it cannot allocate or
// re-enter the allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations(f: impl FnOnce()) -> usize {
    let before = ALLOCS.with(Cell::get);
    f();
    ALLOCS.with(Cell::get) - before
}

#[test]
fn steady_state_planning_does_not_allocate() {
    let mut rng = Rng::new(42);
    let big = two_level(&mut rng, 16, 64, 1024, 64);
    let small = random_tree(&mut rng, 16, 3);
    let kinds =
        [PlanKind::Naive, PlanKind::Cascade, PlanKind::Tree, PlanKind::TreeSplit { max_chunk: 64 }];
    let mut plan = Plan::new();
    // The counter works: a fresh plan must grow its buffers.
    let first = allocations(|| {
        plan_into(&big.view(), &big.leaves, &PlanOptions::new(PlanKind::Tree, 4), &mut plan)
            .unwrap()
    });
    assert!(first > 0, "a fresh plan allocates its buffers");
    // Warm up: every kind on both trees (buffers grow to the largest need).
    for tree in [&big, &small] {
        for kind in kinds {
            plan_into(&tree.view(), &tree.leaves, &PlanOptions::new(kind, 4), &mut plan).unwrap();
        }
    }
    for tree in [&big, &small, &big] {
        for kind in kinds {
            let opts = PlanOptions::new(kind, 4);
            let n =
                allocations(|| plan_into(&tree.view(), &tree.leaves, &opts, &mut plan).unwrap());
            assert_eq!(n, 0, "{kind:?} on a {}-node tree allocated {n} times", tree.nodes.len());
        }
    }
    assert!(!plan.work().is_empty());
}
