//! # tree-kv — prefix-shared paged KV cache bookkeeping
//!
//! Host-side bookkeeping for the KV cache of tree-structured rollouts (TreePO and friends): which
//! physical page holds which token rows of which path. It owns no tensors and knows nothing of
//! GPUs; an engine asks it where to write new K/V rows ([`Slot`]s), which tail copies to run
//! ([`PageCopy`] jobs) and which pages each leaf and each tree node reads (int32 CSR page tables in
//! FlashInfer's vocabulary), and runs its own kernels on those plain arrays.
//!
//! ## The key decision: a page-aligned tree, copy-on-write of tails only, one table for all layers
//!
//! A rollout tree forks every active path at each segment boundary. Paths share everything
//! before the fork, so the cache is a **tree of nodes**, each owning the pages of its own token
//! span; a leaf's KV is its ancestors' pages followed by its own. Sharing is at **page**
//! granularity (default 16 tokens, vLLM's and FlashInfer's): every full page is shared by
//! reference count and never copied. The only rows ever duplicated are the partial **tail** page
//! of a forked node, at most `page_size - 1` rows per child — and none at all when segment
//! boundaries are page-aligned (a prompt and segments that are multiples of the page size). One
//! page id addresses the same page in every layer, so one page table serves the whole model
//! (per-layer storage `[num_pages, 2, num_kv_heads, page_size, head_dim]`).
//!
//! Why: this keeps every node's KV a clean page list, which is exactly what cascade / tree
//! attention needs (each node's pages are read once for all leaves below it), makes a fork cost a
//! few refcounts plus at most one small copy per extra child, and lets the same full pages serve as
//! a prefix cache across requests (a radix index over page contents, SGLang-style).
//!
//! ## Forks and the tail claim
//!
//! `fork(node, n)` freezes `node` (it is never appended to again) and creates `n` empty children
//! starting at its end. Let `t = end % page_size`:
//!
//! * `t == 0`: children start on fresh pages. No copy.
//! * `t > 0`: the node's tail page `P` holds `t` rows that are now **frozen** (never written
//!   again). The **first** child that claims `P`'s free rows `[t, page_size)` shares `P` itself
//!   (refcount + 1) and appends from row `t` on — rows its parent never reads. Every other child
//!   gets a fresh page and a `PageCopy { src: P, dst, rows: t }` job: the device copies rows
//!   `[0, t)` (all layers, K and V) before that child is attended.
//!
//! So a fork of a non-aligned node into `n` children costs `n - 1` copies while the claim is free
//! (exactly one at `b = 2`), `n` while an earlier child still holds it, and 0 for an aligned node.
//! The claim is given back when the claiming child is collected — unless that child filled `P`
//! and `P` entered the prefix index: indexed pages are immutable (other requests may reuse them),
//! so later forks copy for every child. (With a 37-token prompt and 32-token segments a claimant
//! that runs a whole segment always fills the tail, so in TreePO a re-opened node usually copies
//! for each new child.) TreePO's fallback, which re-opens a finished path by adding children to
//! an existing internal node, follows the same rule.
//!
//! ## Nodes and release
//!
//! A root is created from a prompt ([`TreeKvCache::create_root`]); a node owns the span
//! `[start, end)` in absolute positions (`start` = parent's `end`). Only a never-forked node can
//! be appended to ([`TreeKvCache::append`] takes token ids, not a count, so full pages can be
//! found again by content). [`TreeKvCache::release`] gives a node up: a released node that still
//! has children stays (its pages are part of their paths) but refuses every operation, and is
//! collected when its last child is; collection walks up through released ancestors. Ids carry a
//! generation, so a stale id is an error, never another node.
//!
//! ## Page states, free list and eviction
//!
//! ```text
//!               alloc: pop free head
//!   ┌──────┐ ───────────────────────────▶ ┌────────────┐  last holder drops,  ┌────────┐
//!   │ Free │                              │ Referenced │ ───────────────────▶ │ Cached │
//!   └──────┘ ◀─────────────────────────── └────────────┘  page is indexed     └────────┘
//!      ▲      last holder drops,            ▲      ▲                           │    │
//!      │      page not indexed              │      └─ prefix hit: unlink ──────┘    │
//!      │                                    └──── alloc, free list empty: ──────────┤
//!      │                                          evict the LRU head and reuse it   │
//!      └─────────────── evict(n) / evict_all: LRU head to the free-list tail ───────┘
//! ```
//!
//! * **Free list** (intrusive, doubly linked, O(1)): `alloc` pops the head; pages that become
//!   free are pushed to the tail; a fresh pool's list is `0, 1, ..., num_pages - 1`.
//! * **Eviction order**: cached pages sit on an LRU list in the order they became unreferenced, a
//!   node's pages deepest first (collection is bottom-up). `alloc` takes free pages first and
//!   evicts the LRU head only when none is left. The head is always a leaf of the radix index (a
//!   page's radix descendants always become unreferenced no later than it), so the order is: least
//!   recently released first, radix leaves before their parents, deepest first on ties — without
//!   ever orphaning an entry. A prefix hit unlinks a cached page from the middle of the list in
//!   O(1).
//!
//! ## Radix prefix index
//!
//! Every page that becomes **full** is indexed under `(previous page on its path, its tokens)`
//! when that previous page is indexed (or it is a path's first page) and the key is new, so the
//! entries form a page-granular radix tree (SGLang's radix cache keyed like vLLM's chained block
//! hashes; 64-bit key hashes, every hit verified against the stored tokens). Live pages are
//! indexed too, so a second request with the same prompt shares pages with a running one.
//! [`TreeKvCache::match_prefix`] looks a prefix up; [`TreeKvCache::create_root`] and
//! [`TreeKvCache::prefill`] take the matched pages (refcount + 1) and compute only the rest. They
//! reuse at most `len - 1` tokens, as vLLM does, so the last token is always computed and yields
//! logits. A page whose key already exists (a duplicate, e.g. two branches that sampled the same
//! tokens) stays unindexed, as do the pages after it on its path.
//!
//! ## Exports
//!
//! * Per leaf path ([`TreeKvCache::leaf_path_into`]): the page list from the root to the leaf —
//!   each ancestor's full pages, then for each ancestor's tail the page held by the next node on
//!   the path (the shared claimed page or the child's copy), then the leaf's pages — with
//!   `last_page_len` in `[1, page_size]`, so `page_size * (pages - 1) + last_page_len == end`.
//! * Per node **KV chunk** for tree attention ([`TreeKvCache::kv_chunk`], [`KvChunk`]): an internal
//!   node contributes only the page-aligned part of its span (its tail rows live in each child's
//!   first page), so its chunk is `[floor(start/ps)*ps, floor(end/ps)*ps)` and a leaf's is
//!   `[floor(start/ps)*ps, end)`. The chunks of the nodes on a path tile `[0, end)` exactly.
//! * Per step ([`TreeKvCache::export_into`], [`LayoutExport`]): for a set of active leaves, the
//!   nodes on their paths in DFS order with contiguous leaf ranges, per-node chunk CSR and
//!   per-leaf CSR, all int32; a planner turns it into a work list
//!   `{node, page range, leaf range}` directly. The buffers are reused across steps, and when
//!   only the leaves' lengths changed since the last export of the same leaves (a decode step
//!   that opened no page) just those are rewritten, in O(leaves).
//!
//! ## Invariants
//!
//! [`TreeKvCache::check_invariants`] audits all of them (the tests and the fuzz target run it after
//! every operation):
//!
//! 1. Every page is exactly one of **free** (on the free list, refcount 0, not indexed),
//!    **referenced** (refcount > 0, on no list) or **cached** (refcount 0, indexed, on the LRU
//!    list); `free + referenced + cached == num_pages`. Both lists are consistent doubly linked
//!    lists without duplicates.
//! 2. `refcount(p)` equals the number of nodes (live or released-but-kept) whose page list holds
//!    `p`; the radix index holds no reference.
//! 3. A node holds exactly `ceil(end/ps) - floor(start/ps)` pages, its span starts at its
//!    parent's end, parent and child links agree, a node with children is forked, a released node
//!    has children. Collected slots hold nothing: no page is reachable from a collected node.
//! 4. A never-forked node ending mid-page is the only writer of its tail page, which holds exactly
//!    its rows; a forked node's tail rows `[0, t)` are frozen and never written again (appends
//!    write only row `fill >= frozen`); a child's first page is its parent's tail page or a copy
//!    whose rows `[0, t)` equal it; every page holds at least the rows each holder reads.
//! 5. Indexed pages are full and found under their key; an entry's key parent is indexed, and
//!    referenced whenever the entry is; a cached entry precedes its cached key parent on the LRU
//!    list (so the LRU head is a radix leaf).
//! 6. Usage returns to zero: once every node is released, `num_referenced() == 0` (what is left is
//!    cached for reuse), and after [`TreeKvCache::evict_all`] every page is free.
//!
//! ## Errors
//!
//! No public operation panics on caller input. Misuse — double release, fork/append of a
//! released or unknown node, append to a forked node, fork into 0, an exhausted pool, a bad page
//! size, ... — returns a [`KvError`] saying what was wrong, and every operation checks before it
//! mutates, so an error leaves the cache unchanged.
//!
//! ## Example: a TreePO fork / append / release cycle
//!
//! ```
//! use tree_kv::{CacheConfig, LayoutExport, TreeKvCache};
//!
//! let mut cache = TreeKvCache::new(CacheConfig::new(64))?; // 64 pages of 16 tokens
//! let prompt: Vec<u32> = (0..37).collect();
//! let root = cache.create_root(&prompt)?; // pages 0 1 2; page 2 holds 5 rows
//! assert_eq!(root.slots.len(), 37); // the engine writes the prompt's K/V rows here
//!
//! // Initial divergence, b = 2: the first child shares the 5-row tail page, the second copies it.
//! let fork = cache.fork(root.node, 2)?;
//! assert_eq!(fork.copies.len(), 1); // run these `page_copy` jobs on the device
//! let (a, b) = (fork.children[0], fork.children[1]);
//!
//! // One decode step: a 32-token segment on each path.
//! let slots_a = cache.append(a, &[7; 32])?;
//! cache.append(b, &[8; 32])?;
//! assert_eq!(slots_a[0].page, cache.node(root.node)?.pages[2]); // free rows of the shared tail
//! assert_eq!(slots_a[0].offset, 5);
//!
//! // Page tables of the step for tree attention.
//! let mut export = LayoutExport::new();
//! cache.export_into(&[a, b], &mut export)?;
//! assert_eq!(export.leaf_last_page_len(), [5, 5]); // 69 = 16 * 4 + 5 tokens on each path
//!
//! // b stops early (EOS) and is released; a branches again.
//! cache.release(b)?;
//! let next = cache.fork(a, 2)?;
//! for &leaf in &next.children {
//!     cache.append(leaf, &[9; 32])?;
//! }
//! cache.check_invariants()?;
//!
//! // The query is done: release everything. Full pages stay cached for prefix reuse.
//! for node in [root.node, a].into_iter().chain(next.children) {
//!     cache.release(node)?;
//! }
//! assert_eq!((cache.num_nodes(), cache.num_referenced()), (0, 0));
//! let again = cache.create_root(&prompt)?; // the same prompt again: 32 of 37 tokens cached
//! assert_eq!(again.cached_tokens, 32);
//! cache.release(again.node)?;
//! cache.evict_all();
//! assert_eq!(cache.num_free(), 64);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Measured costs (export of a 64 × 16-leaf step, fork/append/release) are in `docs/tree-kv.md`
//! at the repository root, with the commands that produced them.

#![deny(missing_docs)]

mod append;
mod cache;
mod error;
mod export;
mod export_build;
mod fork;
mod ids;
mod invariants;
mod list;
mod node;
mod paths;
mod pool;
mod prefix;
mod radix;
mod release;

pub use cache::{CacheConfig, MAX_TOKENS, NodeInfo, TreeKvCache};
pub use error::{InvariantViolation, KvError, Result};
pub use export::LayoutExport;
pub use fork::Fork;
pub use ids::{NodeId, PageCopy, PageId, Slot};
pub use node::MAX_FORK;
pub use paths::KvChunk;
pub use pool::PageState;
pub use prefix::{Prefill, PrefixMatch};
