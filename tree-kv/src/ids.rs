//! Plain-data identifiers and device jobs: what crosses into kernels and engines.
//!
//! `PageId`, `Slot` and `PageCopy` are `#[repr(C)]`/`#[repr(transparent)]` integers so an engine
//! can upload slices of them as they are (`[u32]`, `[u32; 2]`, `[u32; 3]` per element).

use std::fmt;

/// A physical KV page. One id addresses the same page in every layer: one page table serves all
/// layers (per layer the device storage is `[num_pages, 2, num_kv_heads, page_size, head_dim]`).
#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PageId(pub u32);

impl PageId {
    /// The id as an index into per-page arrays.
    #[inline]
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for PageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "p{}", self.0)
    }
}

/// A tree node: a slot index plus the slot's generation, so an id kept after its node was
/// collected is detected (`KvError::UnknownNode`) instead of silently naming a newer node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId {
    /// Slot in the node arena.
    pub index: u32,
    /// Generation of the slot when the node was created; bumped each time the slot is freed.
    pub generation: u32,
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}g{}", self.index, self.generation)
    }
}

/// Where one new token's K/V row goes: row `offset` of page `page` (in every layer).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Slot {
    /// The page that holds the row.
    pub page: PageId,
    /// Row inside the page, `0 <= offset < page_size`.
    pub offset: u32,
}

impl Slot {
    /// vLLM-style flat slot index `page * page_size + offset` (what a `slot_mapping` holds).
    #[inline]
    pub fn flat(self, page_size: u32) -> u64 {
        u64::from(self.page.0) * u64::from(page_size) + u64::from(self.offset)
    }
}

/// A copy-on-write job for the device: copy rows `[0, rows)` of page `src` into page `dst`, in every
/// layer, for K and V. It must run before the forked child that owns `dst` is attended.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PageCopy {
    /// The parent's partial tail page.
    pub src: PageId,
    /// The child's fresh page.
    pub dst: PageId,
    /// Rows to copy: the parent's `end % page_size`, in `[1, page_size)`.
    pub rows: u32,
}
