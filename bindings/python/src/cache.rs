//! `TreeKvCache`: the prefix-shared paged KV cache bookkeeping of `tree-kv` (host side: which
//! page holds which token rows). Node ids cross to Python as ints (slot index and generation);
//! arrays as int32 bytes the Python layer views with numpy.

use std::sync::Mutex;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use tree_attn::{LeafQuery, NodeKv};
use tree_kv::{CacheConfig, LayoutExport, NodeId, PageId, Slot, TreeKvCache as RsCache};

use crate::dispatch::i32_bytes;
use crate::errors::{Error, Result, value_err};

/// A node id as a Python int: generation in the high 32 bits, slot index in the low 32.
fn node_to_py(n: NodeId) -> u64 {
    (u64::from(n.generation) << 32) | u64::from(n.index)
}

fn node_from_py(v: u64) -> NodeId {
    NodeId { index: v as u32, generation: (v >> 32) as u32 }
}

fn slots_bytes<'py>(py: Python<'py>, slots: &[Slot], page_size: u32) -> Bound<'py, PyBytes> {
    let bytes: Vec<u8> =
        slots.iter().flat_map(|s| (s.flat(page_size) as i64).to_ne_bytes()).collect();
    PyBytes::new(py, &bytes)
}

fn pages_i32(pages: &[PageId]) -> Vec<i32> {
    pages.iter().map(|p| p.0 as i32).collect()
}

fn tokens_of(tokens: Vec<i64>) -> Result<Vec<u32>> {
    tokens
        .iter()
        .enumerate()
        .map(|(i, &t)| {
            u32::try_from(t).map_err(|_| Error::Value(format!("tokens[{i}] = {t} is not a u32 id")))
        })
        .collect()
}

struct Inner {
    cache: RsCache,
    export: LayoutExport,
}

/// The tree KV cache (see `treepo.TreeKvCache`).
#[pyclass(frozen, module = "treepo._treepo", name = "TreeKvCache")]
pub struct TreeKvCache {
    inner: Mutex<Inner>,
}

/// What `TreeDecode.plan_from_cache` needs: the tree's KV chunks and the leaves' queries.
pub struct CacheView {
    /// Tokens per page.
    pub page_size: u32,
    /// Pages in the pool.
    pub num_pages: usize,
    /// Nodes on the leaves' paths.
    pub nodes: Vec<NodeKv>,
    /// Their pages.
    pub page_ids: Vec<i32>,
    /// One per leaf, in the caller's order.
    pub leaves: Vec<LeafQuery>,
}

impl TreeKvCache {
    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Inner>> {
        self.inner.lock().map_err(|_| Error::Runtime("TreeKvCache lock poisoned".into()))
    }

    /// The planner's view of the paths ending at `leaves`, leaf `i` querying its last
    /// `q_rows[i]` positions (1 each when `None`).
    pub fn view(&self, leaves: &[u64], q_rows: Option<&[u32]>) -> Result<CacheView> {
        if let Some(q) = q_rows
            && q.len() != leaves.len()
        {
            return value_err!("q_rows has {} entries for {} leaves", q.len(), leaves.len());
        }
        let ids: Vec<NodeId> = leaves.iter().map(|&l| node_from_py(l)).collect();
        let mut g = self.lock()?;
        let Inner { cache, export } = &mut *g;
        cache.export_into(&ids, export)?;
        let indptr = export.node_page_indptr();
        let nodes = (0..export.num_nodes())
            .map(|i| NodeKv {
                parent: u32::try_from(export.node_parent()[i]).ok(),
                kv_start: export.node_kv_start()[i] as u32,
                kv_end: export.node_kv_end()[i] as u32,
                pages: indptr[i] as u32..indptr[i + 1] as u32,
            })
            .collect();
        let mut lq = vec![LeafQuery { node: 0, q_rows: 1 }; ids.len()];
        for (&caller, &node) in export.leaf_input().iter().zip(export.leaf_node()) {
            let c = caller as usize;
            lq[c] = LeafQuery { node: node as u32, q_rows: q_rows.map_or(1, |q| q[c]) };
        }
        Ok(CacheView {
            page_size: cache.page_size(),
            num_pages: cache.num_pages() as usize,
            nodes,
            page_ids: export.node_page_indices().to_vec(),
            leaves: lq,
        })
    }
}

#[pymethods]
impl TreeKvCache {
    /// A pool of `num_pages` pages of `page_size` tokens (a power of two), all free.
    #[new]
    #[pyo3(signature = (num_pages, page_size=16))]
    fn new(num_pages: u32, page_size: u32) -> Result<TreeKvCache> {
        let cache = RsCache::new(CacheConfig::new(num_pages).with_page_size(page_size))?;
        Ok(TreeKvCache { inner: Mutex::new(Inner { cache, export: LayoutExport::new() }) })
    }

    /// Tokens per page.
    #[getter]
    fn page_size(&self) -> Result<u32> {
        Ok(self.lock()?.cache.page_size())
    }

    /// Pages in the pool.
    #[getter]
    fn num_pages(&self) -> Result<u32> {
        Ok(self.lock()?.cache.num_pages())
    }

    /// `(free, cached, referenced, nodes)` counts.
    fn counts(&self) -> Result<(u32, u32, u32, u32)> {
        let g = self.lock()?;
        let c = &g.cache;
        Ok((c.num_free(), c.num_cached(), c.num_referenced(), c.num_nodes()))
    }

    /// Creates a root for `prompt`, reusing cached full pages: `(node, cached_tokens, slots)`.
    fn create_root<'py>(
        &self,
        py: Python<'py>,
        prompt: Vec<i64>,
    ) -> Result<(u64, u32, Bound<'py, PyBytes>)> {
        let prompt = tokens_of(prompt)?;
        let mut g = self.lock()?;
        let p = g.cache.create_root(&prompt)?;
        let ps = g.cache.page_size();
        Ok((node_to_py(p.node), p.cached_tokens, slots_bytes(py, &p.slots, ps)))
    }

    /// Appends `tokens` to leaf `node`, reusing cached full pages first.
    fn prefill<'py>(
        &self,
        py: Python<'py>,
        node: u64,
        tokens: Vec<i64>,
    ) -> Result<(u64, u32, Bound<'py, PyBytes>)> {
        let tokens = tokens_of(tokens)?;
        let mut g = self.lock()?;
        let p = g.cache.prefill(node_from_py(node), &tokens)?;
        let ps = g.cache.page_size();
        Ok((node_to_py(p.node), p.cached_tokens, slots_bytes(py, &p.slots, ps)))
    }

    /// Appends `tokens` to leaf `node`; returns the flat slots (`page * page_size + row`) to
    /// write their K/V rows to.
    fn append<'py>(
        &self,
        py: Python<'py>,
        node: u64,
        tokens: Vec<i64>,
    ) -> Result<Bound<'py, PyBytes>> {
        let tokens = tokens_of(tokens)?;
        let mut g = self.lock()?;
        let slots = g.cache.append(node_from_py(node), &tokens)?;
        let ps = g.cache.page_size();
        Ok(slots_bytes(py, &slots, ps))
    }

    /// Forks `node` into `n` children: `(children, copies)`, copies as int32 `(src, dst, rows)`
    /// triples.
    fn fork<'py>(
        &self,
        py: Python<'py>,
        node: u64,
        n: u32,
    ) -> Result<(Vec<u64>, Bound<'py, PyBytes>)> {
        let mut g = self.lock()?;
        let f = g.cache.fork(node_from_py(node), n)?;
        let copies: Vec<i32> =
            f.copies.iter().flat_map(|c| [c.src.0 as i32, c.dst.0 as i32, c.rows as i32]).collect();
        Ok((f.children.into_iter().map(node_to_py).collect(), i32_bytes(py, &copies)))
    }

    /// Releases `node`.
    fn release(&self, node: u64) -> Result<()> {
        Ok(self.lock()?.cache.release(node_from_py(node))?)
    }

    /// The longest cached page-aligned prefix of `tokens`: `(pages, tokens)`.
    fn match_prefix<'py>(
        &self,
        py: Python<'py>,
        tokens: Vec<i64>,
    ) -> Result<(Bound<'py, PyBytes>, u32)> {
        let tokens = tokens_of(tokens)?;
        let m = self.lock()?.cache.match_prefix(&tokens);
        Ok((i32_bytes(py, &pages_i32(&m.pages)), m.tokens))
    }

    /// The page list of the path ending at `node` and its `last_page_len`.
    fn leaf_path<'py>(&self, py: Python<'py>, node: u64) -> Result<(Bound<'py, PyBytes>, u32)> {
        let g = self.lock()?;
        let mut pages = Vec::new();
        let last = g.cache.leaf_path_into(node_from_py(node), &mut pages)?;
        Ok((i32_bytes(py, &pages_i32(&pages)), last))
    }

    /// A dict describing `node`.
    fn node_info<'py>(&self, py: Python<'py>, node: u64) -> Result<Bound<'py, PyDict>> {
        let g = self.lock()?;
        let n = g.cache.node(node_from_py(node))?;
        let d = PyDict::new(py);
        let py_err = |e: PyErr| Error::Runtime(e.to_string());
        d.set_item("parent", n.parent.map(node_to_py)).map_err(py_err)?;
        d.set_item("depth", n.depth).map_err(py_err)?;
        d.set_item("start", n.start).map_err(py_err)?;
        d.set_item("end", n.end).map_err(py_err)?;
        d.set_item("pages", pages_i32(n.pages)).map_err(py_err)?;
        let children: Vec<u64> = n.children.iter().map(|&c| node_to_py(c)).collect();
        d.set_item("children", children).map_err(py_err)?;
        d.set_item("released", n.released).map_err(py_err)?;
        d.set_item("forked", n.forked).map_err(py_err)?;
        Ok(d)
    }

    /// The per-leaf CSR page tables of `leaves` in the order given (FlashInfer's
    /// `indptr, indices, last_page_len`, int32 bytes).
    fn export_csr<'py>(
        &self,
        py: Python<'py>,
        leaves: Vec<u64>,
    ) -> Result<(Bound<'py, PyBytes>, Bound<'py, PyBytes>, Bound<'py, PyBytes>)> {
        let ids: Vec<NodeId> = leaves.iter().map(|&l| node_from_py(l)).collect();
        let mut g = self.lock()?;
        let Inner { cache, export } = &mut *g;
        cache.export_into(&ids, export)?;
        // DFS leaf i is the caller's leaf `leaf_input[i]`: reorder to the caller's order.
        let mut dfs_of = vec![0usize; ids.len()];
        for (i, &c) in export.leaf_input().iter().enumerate() {
            dfs_of[c as usize] = i;
        }
        let (ip, ix, lp) =
            (export.leaf_page_indptr(), export.leaf_page_indices(), export.leaf_last_page_len());
        let mut indptr = Vec::with_capacity(ids.len() + 1);
        indptr.push(0i32);
        let mut indices = Vec::with_capacity(ix.len());
        let mut last = Vec::with_capacity(ids.len());
        for &i in &dfs_of {
            indices.extend_from_slice(&ix[ip[i] as usize..ip[i + 1] as usize]);
            indptr.push(indices.len() as i32);
            last.push(lp[i]);
        }
        Ok((i32_bytes(py, &indptr), i32_bytes(py, &indices), i32_bytes(py, &last)))
    }

    /// Evicts every cached (unreferenced) page; returns how many.
    fn evict_all(&self) -> Result<u32> {
        Ok(self.lock()?.cache.evict_all())
    }

    /// Audits every invariant of the cache (ValueError naming the first broken one).
    fn check_invariants(&self) -> Result<()> {
        self.lock()?.cache.check_invariants().map_err(|e| Error::Value(e.to_string()))
    }
}

/// Registers `TreeKvCache`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<TreeKvCache>()?;
    Ok(())
}
