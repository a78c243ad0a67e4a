//! The cache object: configuration, construction and read-only queries.

use crate::error::{KvError, Result};
use crate::ids::{NodeId, PageId};
use crate::list::NIL;
use crate::node::Arena;
use crate::pool::{PageState, Pool};
use std::sync::atomic::{AtomicU64, Ordering};

/// Source of layout versions. Global, so two caches — or a cache and its clone once they
/// diverge — never share a version: an export built from one is never taken for the other's.
static LAYOUT_VERSIONS: AtomicU64 = AtomicU64::new(1);

/// A layout version no cache has had (0 is never issued).
pub(crate) fn next_layout() -> u64 {
    LAYOUT_VERSIONS.fetch_add(1, Ordering::Relaxed)
}

/// Largest token position any node may reach: exports are int32.
pub const MAX_TOKENS: u32 = i32::MAX as u32;

/// Pool geometry, fixed at construction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheConfig {
    /// Tokens per page; a power of two in `[1, 65536]`. Default 16 (vLLM's and FlashInfer's).
    pub page_size: u32,
    /// Pages in the pool; page ids are `0..num_pages`.
    pub num_pages: u32,
}

impl CacheConfig {
    /// `num_pages` pages of the default 16 tokens.
    pub fn new(num_pages: u32) -> Self {
        Self { page_size: 16, num_pages }
    }

    /// The same pool with another page size.
    pub fn with_page_size(self, page_size: u32) -> Self {
        Self { page_size, ..self }
    }
}

/// Prefix-shared paged KV cache bookkeeping: a page pool, a tree of nodes over it and a radix
/// prefix index. See the crate docs for the design and the invariants.
#[derive(Clone, Debug)]
pub struct TreeKvCache {
    pub(crate) pool: Pool,
    pub(crate) nodes: Arena,
    /// Changes whenever the tree or any node's page list changes (fork, release, new root, a page
    /// added by append/prefill); appends inside a node's current pages keep it. Keys the
    /// steady-state fast path of `export_into`.
    pub(crate) layout: u64,
}

/// A read-only view of one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeInfo<'a> {
    /// The parent, `None` for a root.
    pub parent: Option<NodeId>,
    /// Number of ancestors.
    pub depth: u32,
    /// Token span `[start, end)` in absolute positions; `start` is the parent's `end`.
    pub start: u32,
    /// One past the node's last token.
    pub end: u32,
    /// Pages the node holds, covering page indices `floor(start/ps) .. ceil(end/ps)` of its path.
    pub pages: &'a [PageId],
    /// Children in creation order.
    pub children: &'a [NodeId],
    /// Released by the caller but kept because descendants still read its pages.
    pub released: bool,
    /// Forked at least once: frozen, no more appends.
    pub forked: bool,
}

impl TreeKvCache {
    /// An empty cache: every page free, free list `0, 1, ..., num_pages-1`.
    pub fn new(config: CacheConfig) -> Result<Self> {
        let CacheConfig { page_size, num_pages } = config;
        if !page_size.is_power_of_two() || page_size > 1 << 16 {
            return Err(KvError::InvalidPageSize { page_size });
        }
        let max = MAX_TOKENS;
        if num_pages == 0 || num_pages > max {
            return Err(KvError::InvalidNumPages { num_pages, max });
        }
        Ok(Self {
            pool: Pool::try_new(page_size, num_pages)?,
            nodes: Arena::default(),
            layout: next_layout(),
        })
    }

    /// Records that the tree or a page list changed (see `layout`).
    pub(crate) fn layout_changed(&mut self) {
        self.layout = next_layout();
    }

    /// Tokens per page.
    pub fn page_size(&self) -> u32 {
        self.pool.page_size
    }

    /// Pages in the pool.
    pub fn num_pages(&self) -> u32 {
        self.pool.num_pages()
    }

    /// Pages on the free list.
    pub fn num_free(&self) -> u32 {
        self.pool.free.len()
    }

    /// Cached, unreferenced pages (all evictable).
    pub fn num_cached(&self) -> u32 {
        self.pool.lru.len()
    }

    /// Pages held by at least one node: the pool's usage.
    pub fn num_referenced(&self) -> u32 {
        self.num_pages() - self.num_free() - self.num_cached()
    }

    /// Pages in the radix index (referenced or cached).
    pub fn num_indexed(&self) -> u32 {
        self.pool.radix.len() as u32
    }

    /// Nodes alive (live or released-but-kept).
    pub fn num_nodes(&self) -> u32 {
        self.nodes.live
    }

    fn page(&self, page: PageId) -> Result<u32> {
        if page.0 < self.num_pages() {
            Ok(page.0)
        } else {
            Err(KvError::UnknownPage { page, num_pages: self.num_pages() })
        }
    }

    /// The state of a page.
    pub fn page_state(&self, page: PageId) -> Result<PageState> {
        Ok(self.pool.state(self.page(page)?))
    }

    /// How many nodes hold a page.
    pub fn page_refcount(&self, page: PageId) -> Result<u32> {
        Ok(self.pool.meta[self.page(page)? as usize].refcount)
    }

    /// The token ids stored in a page's valid rows `[0, fill)` (empty for a free page).
    pub fn page_tokens(&self, page: PageId) -> Result<&[u32]> {
        let p = self.page(page)?;
        Ok(self.pool.rows(p, self.pool.meta[p as usize].fill))
    }

    /// The free list, head (allocated next) to tail.
    pub fn free_pages(&self) -> Vec<PageId> {
        self.pool.free.iter(&self.pool.links).map(PageId).collect()
    }

    /// The cached pages in eviction order (head is evicted first).
    pub fn cached_pages(&self) -> Vec<PageId> {
        self.pool.lru.iter(&self.pool.links).map(PageId).collect()
    }

    /// A view of a node (live or released-but-kept).
    pub fn node(&self, id: NodeId) -> Result<NodeInfo<'_>> {
        let n = &self.nodes.slots[self.nodes.slot(id)?];
        Ok(NodeInfo {
            parent: (n.parent != NIL).then(|| self.nodes.id(n.parent as usize)),
            depth: n.depth,
            start: n.start,
            end: n.end,
            pages: &n.pages,
            children: &n.children,
            released: n.released,
            forked: n.forked,
        })
    }

    /// Evicts up to `max_pages` cached pages (LRU order) to the free-list tail; returns how many.
    pub fn evict(&mut self, max_pages: u32) -> u32 {
        self.pool.evict(max_pages)
    }

    /// Evicts every cached page. After every node is released this empties the pool completely.
    pub fn evict_all(&mut self) -> u32 {
        self.pool.evict(u32::MAX)
    }
}
