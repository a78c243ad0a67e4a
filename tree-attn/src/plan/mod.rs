//! The per-step decode plan: built once per decode step from the tree's KV chunks and the
//! active leaves, reused by every layer.
//!
//! # Input: the tree-kv contract
//! A tree of nodes ([`TreeKvView`]); node `u` holds the KV chunk of absolute positions
//! `[kv_start(u), kv_end(u))` in whole pages `page_ids[pages]`: `kv_start` is a multiple of
//! `page_size` (0 for a root); a node with children ends on a page boundary, where each child
//! starts; a leaf ends at its sequence length (last page partial). Chunks may be empty (a short
//! node inside one page: its tokens were copied into its children's first pages). A leaf's KV is
//! the concatenation of the chunks on its root→leaf path. A [`LeafQuery`] asks for the leaf's
//! last `q_rows` positions as queries (1 for decode, k for a segment append or prefill), causal
//! among themselves; the caller's q/out rows are the leaves' rows in the order given.
//!
//! # Output: a work list
//! Leaves are ordered depth-first (roots and children by increasing node id, a node's own leaves
//! before its children's) so each node's leaves — and their query rows — form a contiguous
//! range. Each [`WorkItem`] says: these plan rows attend to these positions, held in these
//! pages, and produce partial state number `slot` of each row. Per plan row the plan also gives
//! its caller row (`row_to_q`), its position (`q_pos`) and its state count (`partial_indptr`,
//! CSR): a row with one state is written straight to the output by the kernel, the others are
//! merged. Everything is plain `i32` host data ([`Plan::host`]) an engine can upload itself.
//!
//! # Kinds ([`PlanKind`]) — one format, every strategy, identical data
//! * `Naive`: one item per leaf over its whole path (what `paged_decode` computes).
//! * `Cascade`: FlashInfer's 2-level cascade — the chain shared by all leaves once, then each
//!   leaf's remaining path.
//! * `Tree`: multi-level cascade — one item per compressed node (a chain of nodes with the same
//!   leaf set is one chunk), shared by all leaves below it.
//! * `TreeSplit { max_chunk }`: `Tree` with chunks longer than `max_chunk` tokens cut at page
//!   boundaries into pieces (DeFT's / Flash-Decoding's KV split) for parallelism.
//! * `TreeFill { units }`: `TreeSplit` with the piece length chosen so about `units` pieces
//!   cover the distinct KV ([`split_to_fill`]).
//! * `Auto { units }`: `Tree`, split only when its heaviest work item is more than a `units`-th
//!   of the step's work ([`auto_split`]) — chosen from the shape; the benchmarks' default.
//!
//! With [`PlanOptions::min_shared`] the `Tree` kinds fold compressed nodes shorter than that
//! many tokens into their children's chunks (read once per child instead of once).
//!
//! Row ranges are tiled so `rows × group` stays within [`PlanOptions::query_tile`] query
//! vectors (64: the tensor-core tile of the CUDA kernel, 4 warps × 16 rows); a long row range
//! becomes several items over the same chunk.
//!
//! [`plan_into`] reuses every buffer of a [`Plan`]: once its capacity has grown to the largest
//! tree it saw, planning allocates nothing. It is deterministic: the same input gives the same
//! arrays.

mod active;
mod csr;
mod emit;
mod error;

use std::ops::Range;

use treepo_kernels::ops::{DecodePlanBuffers, DecodeWorkHost, WorkItem};
use treepo_kernels::{Device, KernelError};

pub use csr::LeafPageTable;
pub use error::PlanError;

/// The KV chunk of one tree node (see the [module docs](self)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeKv {
    /// The parent node, `None` for a root.
    pub parent: Option<u32>,
    /// First absolute position (a multiple of `page_size`).
    pub kv_start: u32,
    /// One past the last absolute position.
    pub kv_end: u32,
    /// The node's pages, as a range of [`TreeKvView::page_ids`]; at least
    /// `ceil((kv_end - kv_start) / page_size)` of them (extra trailing pages are ignored).
    pub pages: Range<u32>,
}

/// A borrowed view of the tree's KV chunks: the planner's whole input about the cache.
#[derive(Clone, Copy, Debug)]
pub struct TreeKvView<'a> {
    /// Tokens per page (a power of two).
    pub page_size: u32,
    /// Every node; ids are indices.
    pub nodes: &'a [NodeKv],
    /// Page ids (valid in every layer), indexed by [`NodeKv::pages`].
    pub page_ids: &'a [i32],
}

/// An active leaf: its node and how many of its last positions are queries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeafQuery {
    /// The node whose path holds the leaf's KV (usually a tree leaf).
    pub node: u32,
    /// Query rows: 1 for decode, k for a segment append or prefill.
    pub q_rows: u32,
}

/// How the work is cut (see the [module docs](self)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlanKind {
    /// One item per leaf over its whole path: no sharing (the baseline).
    Naive,
    /// Two levels: the chain shared by all leaves, then each leaf's remaining path.
    Cascade,
    /// One item per compressed node, shared by all leaves below it.
    Tree,
    /// `Tree` with chunks cut into pieces of at most `max_chunk` tokens (rounded down to whole
    /// pages, at least one page). With 256 a 1k-token prefix becomes 4 parallel pieces; on a
    /// GPU pick it so that pieces × KV heads fill the SMs ([`split_to_fill`]), or let
    /// [`PlanKind::Auto`] decide (on 2 CPU threads no split measured fastest).
    TreeSplit {
        /// Longest piece, in tokens.
        max_chunk: u32,
    },
    /// `TreeSplit` with `max_chunk = split_to_fill(distinct tokens, units, page_size)`: about
    /// `units` pieces cover the distinct KV, so `units` should be the parallel workers per KV
    /// head (SMs / num_kv_heads on a GPU, threads / num_kv_heads on a CPU). With `units = 1`
    /// nothing is split; a single long sequence on a GPU becomes a split-KV decode.
    TreeFill {
        /// Parallel workers per KV head.
        units: u32,
    },
    /// `Tree`, split only where the shape needs it ([`auto_split`]): when the heaviest work
    /// item (tokens × query vectors, vectors counted in panels of 8) costs more than the whole
    /// step's work divided by `units`, chunks are cut into pieces of the length that brings it
    /// down to that share; otherwise nothing is split (no merge work is added for nothing).
    /// `units` as for `TreeFill`: parallel workers per KV head. The default of the benchmarks.
    Auto {
        /// Parallel workers per KV head.
        units: u32,
    },
}

/// Options of [`plan_into`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlanOptions {
    /// The strategy.
    pub kind: PlanKind,
    /// The GQA group: `num_qo_heads / num_kv_heads`.
    pub group: u32,
    /// Most query vectors (rows × group) per work item; default 64.
    pub query_tile: u32,
    /// The `Tree` kinds share a compressed node only if it holds at least this many tokens
    /// (with the folded nodes above it); a shorter one without a leaf of its own is *folded*:
    /// its pages are read by each child's chunk instead of by a shared item. Default 0: every
    /// node is shared (each distinct token is read once per row tile). See
    /// [`PlanOptions::with_min_shared`].
    pub min_shared: u32,
}

impl PlanOptions {
    /// `kind` for GQA group `group`, 64 query vectors per item, every node shared.
    pub fn new(kind: PlanKind, group: u32) -> PlanOptions {
        PlanOptions { kind, group, query_tile: 64, min_shared: 0 }
    }

    /// These options with [`min_shared`](PlanOptions::min_shared) = `tokens`.
    ///
    /// Why fold: a shared item costs a work item and, for every row below it, one more partial
    /// state to merge; re-reading a short chunk from cache with each child costs less. A tree of
    /// 16-token segments with the default has one item per segment node and up to one partial
    /// state per segment per row; folding nodes shorter than 64 tokens leaves the long shared
    /// prompt shared and reads each leaf's short segments with its own path (measured on the
    /// CPU engine: `docs/engine.md`).
    #[must_use]
    pub fn with_min_shared(self, tokens: u32) -> PlanOptions {
        PlanOptions { min_shared: tokens, ..self }
    }
}

/// `max_chunk` for [`PlanKind::TreeSplit`] so that about `units` pieces (per KV head) cover
/// `distinct_tokens`: `ceil(distinct_tokens / units)` rounded up to whole pages, at least
/// `max(page_size, 64)` (shorter pieces cost more merge work than they gain).
pub fn split_to_fill(distinct_tokens: u64, units: u32, page_size: u32) -> u32 {
    let per = distinct_tokens.div_ceil(u64::from(units.max(1)));
    let per = per.div_ceil(u64::from(page_size)) * u64::from(page_size);
    per.clamp(u64::from(page_size.max(64)), u64::from(u32::MAX / 2)) as u32
}

/// Query vectors per lane panel in the cost model of [`auto_split`] (the CPU tile's AVX2 width;
/// a GPU tile pads to 16 or 64, which only scales every item alike).
pub const COST_PANEL: u64 = 8;

/// The piece length of [`PlanKind::Auto`]: `u32::MAX` (no split) when the heaviest item of the
/// unsplit `Tree` plan costs at most `total / units`, else the whole pages that bring it to about
/// that share, at least `max(page_size, 64)` tokens. Costs count tokens × query vectors, the
/// vectors rounded up to [`COST_PANEL`] (a tile pays for whole panels); `heaviest` is that
/// item's (tokens, vectors), `total` the sum over every item, both per KV head.
pub fn auto_split(heaviest: (u64, u64), total: u64, units: u32, page_size: u32) -> u32 {
    let panels = |v: u64| v.div_ceil(COST_PANEL).max(1) * COST_PANEL;
    let (tokens, vectors) = heaviest;
    let share = total.div_ceil(u64::from(units.max(1)));
    if tokens * panels(vectors) <= share {
        return u32::MAX;
    }
    let per = share.div_ceil(panels(vectors));
    let per = per.div_ceil(u64::from(page_size)) * u64::from(page_size);
    per.clamp(u64::from(page_size.max(64)), u64::from(u32::MAX / 2)) as u32
}

/// One decode step's plan (see the [module docs](self)). Build with [`plan_into`].
#[derive(Debug, Default)]
pub struct Plan {
    pub(crate) page_size: u32,
    pub(crate) page_indices: Vec<i32>,
    pub(crate) work: Vec<WorkItem>,
    pub(crate) q_pos: Vec<i32>,
    pub(crate) row_to_q: Vec<i32>,
    pub(crate) partial_indptr: Vec<i32>,
    pub(crate) leaf_order: Vec<u32>,
    pub(crate) distinct_tokens: u64,
    pub(crate) scratch: active::Scratch,
}

impl Plan {
    /// An empty plan (no capacity yet).
    pub fn new() -> Plan {
        Plan::default()
    }
    /// The work list.
    pub fn work(&self) -> &[WorkItem] {
        &self.work
    }
    /// Page ids the work items index into.
    pub fn page_indices(&self) -> &[i32] {
        &self.page_indices
    }
    /// `[rows]`: position of each plan row's query.
    pub fn q_pos(&self) -> &[i32] {
        &self.q_pos
    }
    /// `[rows]`: the caller's q/out row of each plan row.
    pub fn row_to_q(&self) -> &[i32] {
        &self.row_to_q
    }
    /// `[rows + 1]`: partial states of each plan row (CSR).
    pub fn partial_indptr(&self) -> &[i32] {
        &self.partial_indptr
    }
    /// Plan leaf `i` is caller leaf `leaf_order()[i]` (depth-first order).
    pub fn leaf_order(&self) -> &[u32] {
        &self.leaf_order
    }
    /// Query rows.
    pub fn num_rows(&self) -> usize {
        self.q_pos.len()
    }
    /// Partial states in all.
    pub fn num_partials(&self) -> usize {
        self.partial_indptr.last().map_or(0, |&p| p as usize)
    }
    /// Tokens per page.
    pub fn page_size(&self) -> u32 {
        self.page_size
    }
    /// Positions on any active path, each counted once (per KV head and layer): the IO floor.
    pub fn distinct_tokens(&self) -> u64 {
        self.distinct_tokens
    }
    /// Positions the work items read (per KV head and layer); `Naive` reads shared prefixes
    /// once per leaf, `Tree` once per row tile.
    pub fn tokens_read(&self) -> u64 {
        self.work.iter().map(|w| (w.kv_end - w.kv_start) as u64).sum()
    }
    /// The host arrays, for [`DecodePlanBuffers::upload`].
    pub fn host(&self) -> DecodeWorkHost<'_> {
        DecodeWorkHost {
            page_size: self.page_size as usize,
            page_indices: &self.page_indices,
            work: &self.work,
            q_pos: &self.q_pos,
            row_to_q: &self.row_to_q,
            partial_indptr: &self.partial_indptr,
        }
    }
    /// Uploads (and validates) the plan for a cache of `num_pages` pages.
    pub fn upload(&self, dev: &Device, num_pages: usize) -> Result<DecodePlanBuffers, KernelError> {
        DecodePlanBuffers::upload(dev, &self.host(), num_pages)
    }
    /// Uploads (and validates) into existing device tables, reusing their buffers while large
    /// enough: the per-step upload of a decode loop.
    pub fn upload_into(
        &self,
        dev: &Device,
        bufs: &mut DecodePlanBuffers,
        num_pages: usize,
    ) -> Result<(), KernelError> {
        bufs.update(dev, &self.host(), num_pages)
    }
}

/// Plans one decode step into `plan`, reusing its buffers (see the [module docs](self)).
pub fn plan_into(
    view: &TreeKvView<'_>,
    leaves: &[LeafQuery],
    opts: &PlanOptions,
    plan: &mut Plan,
) -> Result<(), PlanError> {
    if opts.group == 0 || opts.query_tile == 0 {
        return Err(PlanError::Options(format!(
            "group = {} and query_tile = {} must be >= 1",
            opts.group, opts.query_tile
        )));
    }
    match opts.kind {
        PlanKind::TreeSplit { max_chunk: 0 } => {
            return Err(PlanError::Options("TreeSplit max_chunk must be >= 1".into()));
        }
        PlanKind::TreeFill { units: 0 } => {
            return Err(PlanError::Options("TreeFill units must be >= 1".into()));
        }
        PlanKind::Auto { units: 0 } => {
            return Err(PlanError::Options("Auto units must be >= 1".into()));
        }
        _ => {}
    }
    plan.page_size = view.page_size;
    active::build(view, leaves, plan)?;
    emit::emit(view, leaves, opts, plan)
}

/// [`plan_into`] a fresh [`Plan`].
pub fn plan(
    view: &TreeKvView<'_>,
    leaves: &[LeafQuery],
    opts: &PlanOptions,
) -> Result<Plan, PlanError> {
    let mut p = Plan::new();
    plan_into(view, leaves, opts, &mut p)?;
    Ok(p)
}
