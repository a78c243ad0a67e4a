//! The tree mask of packed attention: one `int32` per key column (FlashMask's column-sparse
//! form), plus per-block bounds for tile skipping — built once per batch on the host, uploaded
//! once, reused by every layer's forward and backward.
//!
//! ## The mask
//!
//! Tokens of one or several trees are packed in DFS pre-order, each node's tokens contiguous.
//! Key token `j` of node `u` is visible exactly to the query rows `[j, kv_row_end[j])` with
//! `kv_row_end[j] = subtree_end(u)`, the exclusive end of `u`'s subtree in packed order: rows of
//! `u` at or after `j` see it causally, and every descendant of `u` lies after `u`'s tokens and
//! before `subtree_end(u)`. Trees concatenated one after another need nothing more (a key's
//! subtree never reaches the next tree).
//!
//! ## What is checked (the validation boundary of the mask)
//!
//! For `N` tokens, every `kv_row_end[j]` is in `[j + 1, N]` (so every row sees at least itself and
//! no softmax row is empty), and the intervals `[j, kv_row_end[j])` are **laminar** (nested or
//! disjoint: if `k` lies in `[j, kv_row_end[j])` then `kv_row_end[k] <= kv_row_end[j]`), which is
//! exactly the set of masks a DFS-packed forest produces. The kernels only rely on the range
//! rule; laminarity rejects arrays that are not trees.
//!
//! ## Tile classification
//!
//! [`TreeMask::BLOCK`] consecutive columns form a block with `lo = min` and `hi = max` of their
//! `kv_row_end`. A tile of rows `[r0, r1)` and columns `[c0, c1)` (union of whole blocks, clipped
//! to `N`) is **empty** if `r0 >= hi` or `r1 <= c0`, **full** if `r1 <= lo` and `r0 >= c1 - 1`,
//! and **partial** (masked per element) otherwise; see [`TileClass::of`]. The forward pass and
//! the dQ pass iterate KV blocks per Q tile; the dK/dV pass iterates, per KV block, the rows
//! `[c0, hi)` — the union of its columns' visible rows, contiguous by construction.

use crate::{Device, Indices, KernelError, Result, View};

const OP: &str = "tree_mask";

/// Whether a (rows × columns) tile of the tree mask needs computing, and how.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TileClass {
    /// No (row, column) pair of the tile is visible: skip it.
    Empty,
    /// Every pair is visible: no per-element mask.
    Full,
    /// Some pairs are visible: mask per element with `col <= row < kv_row_end[col]`.
    Partial,
}

impl TileClass {
    /// Classifies rows `[r0, r1)` × columns `[c0, c1)` (both non-empty, clipped to `N`) whose
    /// columns' `kv_row_end` lie in `[lo, hi]`.
    pub fn of(r0: usize, r1: usize, c0: usize, c1: usize, lo: usize, hi: usize) -> TileClass {
        if r0 >= hi || r1 <= c0 {
            TileClass::Empty
        } else if r1 <= lo && r0 + 1 >= c1 {
            TileClass::Full
        } else {
            TileClass::Partial
        }
    }
}

/// A validated tree mask on one device: `kv_row_end [N]` and the per-block bounds
/// `block_bounds [ceil(N / BLOCK), 2]` (`(min, max)` of each block's `kv_row_end`).
#[derive(Debug)]
pub struct TreeMask {
    num_tokens: usize,
    kv_row_end: Indices,
    block_bounds: Indices,
    host_bounds: Vec<i32>,
    visible_pairs: u64,
}

impl TreeMask {
    /// Columns per bound block. Every kernel's KV tile is a whole number of blocks.
    pub const BLOCK: usize = 16;

    /// Validates `kv_row_end` (see the module docs), computes the block bounds and uploads both.
    /// An empty array is rejected: a batch holds at least one token.
    pub fn upload(dev: &Device, kv_row_end: &[i32]) -> Result<TreeMask> {
        validate_kv_row_end(kv_row_end)?;
        let n = kv_row_end.len();
        let host_bounds = block_bounds(kv_row_end);
        Ok(TreeMask {
            num_tokens: n,
            kv_row_end: Indices::upload(dev, kv_row_end, n + 1)?,
            block_bounds: Indices::upload(dev, &host_bounds, n + 1)?,
            host_bounds,
            visible_pairs: kv_row_end
                .iter()
                .enumerate()
                .map(|(j, &e)| (e as usize - j) as u64)
                .sum(),
        })
    }

    /// `N`, the number of packed tokens.
    pub fn num_tokens(&self) -> usize {
        self.num_tokens
    }

    /// Number of bound blocks, `ceil(N / BLOCK)`.
    pub fn num_blocks(&self) -> usize {
        self.num_tokens.div_ceil(Self::BLOCK)
    }

    /// The device array `kv_row_end [N]`.
    pub fn kv_row_end(&self) -> View<'_, i32> {
        self.kv_row_end.view()
    }

    /// The device array `block_bounds [num_blocks, 2]`.
    pub fn block_bounds(&self) -> View<'_, i32> {
        self.block_bounds.view()
    }

    /// `(min, max)` of `kv_row_end` over block `b` (host copy).
    pub fn bounds_of_block(&self, b: usize) -> (usize, usize) {
        (self.host_bounds[2 * b] as usize, self.host_bounds[2 * b + 1] as usize)
    }

    /// Query×key pairs the mask leaves visible, `Σ_j (kv_row_end[j] − j)`: the useful work
    /// (each pair costs `4·head_dim` FLOPs per query head in the forward pass).
    pub fn visible_pairs(&self) -> u64 {
        self.visible_pairs
    }
}

/// Checks `kv_row_end` as described in the module docs; the error names the first bad column.
pub fn validate_kv_row_end(kv_row_end: &[i32]) -> Result<()> {
    let n = kv_row_end.len();
    crate::ensure!(n > 0, OP, "kv_row_end is empty: a batch needs at least one token");
    crate::ensure!(i32::try_from(n).is_ok(), OP, "{n} tokens exceed the kernels' int32 indices");
    // Open intervals of the columns before j, innermost on top; nested by the check below.
    let mut open: Vec<usize> = Vec::new();
    for (j, &e) in kv_row_end.iter().enumerate() {
        if e <= j as i32 || e as i64 > n as i64 {
            return Err(KernelError::Invalid {
                op: OP,
                msg: format!("kv_row_end[{j}] = {e} is outside [{}, {n}]", j + 1),
            });
        }
        let e = e as usize;
        while open.last().is_some_and(|&top| top <= j) {
            open.pop();
        }
        if let Some(&top) = open.last()
            && e > top
        {
            return Err(KernelError::Invalid {
                op: OP,
                msg: format!(
                    "kv_row_end[{j}] = {e} crosses an enclosing interval that ends at {top}: \
                     the intervals [j, kv_row_end[j]) must be nested or disjoint (a tree)"
                ),
            });
        }
        open.push(e);
    }
    Ok(())
}

/// `(min, max)` of each block of [`TreeMask::BLOCK`] columns, interleaved.
pub fn block_bounds(kv_row_end: &[i32]) -> Vec<i32> {
    kv_row_end
        .chunks(TreeMask::BLOCK)
        .flat_map(|c| {
            let lo = c.iter().copied().min().unwrap_or(0);
            let hi = c.iter().copied().max().unwrap_or(0);
            [lo, hi]
        })
        .collect()
}
