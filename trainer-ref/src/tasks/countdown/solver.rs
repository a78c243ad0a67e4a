//! Brute-force countdown solver: every canonical step sequence that the verifier accepts.
//!
//! A sequence combines two values of the pool per step until one is left, so `n` numbers take
//! `n − 1` steps. Canonical form: the larger operand is written first (`7*3`, not `3*7`), which
//! the demonstrations follow; the verifier accepts either order for `+` and `*`. Sequences that
//! differ only in the order of independent steps are distinct solutions (both are valid
//! demonstrations). The search visits at most `Π_{k=2..n} C(k,2)·4` leaves: 48 for three
//! numbers, 1 152 for four, 46 080 for five (the configuration's limit).

use std::collections::BTreeSet;

use super::verify::{Op, Step};

/// All distinct canonical solutions of `numbers` → `target`, in a fixed (sorted) order.
#[must_use]
pub fn solve(numbers: &[u32], target: u32) -> Vec<Vec<Step>> {
    let pool: Vec<u64> = numbers.iter().map(|&n| u64::from(n)).collect();
    let mut found = BTreeSet::new();
    let mut steps = Vec::with_capacity(pool.len().saturating_sub(1));
    search(&pool, u64::from(target), &mut steps, &mut found);
    found.into_iter().collect()
}

/// Whether `numbers` → `target` has a solution.
#[must_use]
pub fn is_solvable(numbers: &[u32], target: u32) -> bool {
    !solve(numbers, target).is_empty()
}

fn search(pool: &[u64], target: u64, steps: &mut Vec<Step>, found: &mut BTreeSet<Vec<Step>>) {
    if let [value] = pool {
        if *value == target {
            found.insert(steps.clone());
        }
        return;
    }
    for i in 0..pool.len() {
        for j in i + 1..pool.len() {
            let (lhs, rhs) =
                if pool[i] >= pool[j] { (pool[i], pool[j]) } else { (pool[j], pool[i]) };
            let rest: Vec<u64> =
                (0..pool.len()).filter(|&k| k != i && k != j).map(|k| pool[k]).collect();
            for op in Op::ALL {
                let Some(result) = op.apply(lhs, rhs) else { continue };
                let mut next = rest.clone();
                next.push(result);
                steps.push(Step { lhs, op, rhs, result });
                search(&next, target, steps, found);
                steps.pop();
            }
        }
    }
}
