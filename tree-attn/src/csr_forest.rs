//! Planning from an engine's own block tables: raw FlashInfer-style CSR arrays in, a tree of
//! shared KV chunks out.
//!
//! An engine with its own cache manager (vLLM's block tables, SGLang's radix cache) knows each
//! sequence's page list but not our node tree. Prefix sharing is visible in the page ids alone:
//! sequences whose page lists start with the same physical pages share that KV. [`CsrForest`]
//! recovers the tree as a trie over page ids — one node per distinct (parent, full page), plus
//! one node per partial last page — so [`plan`](crate::plan::plan_into) reads each shared page
//! once for all the sequences that hold it. The planner compresses chains of single-page nodes
//! with the same leaves into one chunk, so the page granularity costs nothing in the work list.
//!
//! A page is shared only where it is full for every sequence that holds it: a partial last page
//! (the sequence's own tail) always gets its own node, even if another sequence lists the same
//! page id — its KV is then read twice, which is correct, only not shared.

use std::collections::HashMap;

use crate::plan::{LeafQuery, NodeKv, PlanError, TreeKvView};

/// The tree of shared KV chunks behind a batch of per-sequence block tables (see the
/// [module docs](self)). Sequence `i` is leaf `i`, in batch order.
#[derive(Clone, Debug, Default)]
pub struct CsrForest {
    page_size: u32,
    nodes: Vec<NodeKv>,
    page_ids: Vec<i32>,
    leaves: Vec<LeafQuery>,
}

fn bad(msg: String) -> PlanError {
    PlanError::Csr(msg)
}

impl CsrForest {
    /// Builds the tree from FlashInfer's paged-KV CSR arrays: `indptr [batch + 1]` (from 0,
    /// non-decreasing), `indices [indptr[batch]..]` page ids (`>= 0`; their upper bound is
    /// checked when the plan is uploaded for a cache size), `last_page_len [batch]` in
    /// `1..=page_size`; `q_rows [batch]` query rows per sequence — its last positions, causal
    /// among themselves — or `None` for one each (decode). Every sequence holds a page.
    pub fn from_csr(
        page_size: u32,
        indptr: &[i32],
        indices: &[i32],
        last_page_len: &[i32],
        q_rows: Option<&[u32]>,
    ) -> Result<CsrForest, PlanError> {
        if page_size == 0 || !page_size.is_power_of_two() {
            return Err(PlanError::PageSize { page_size });
        }
        let batch = last_page_len.len();
        if indptr.len() != batch + 1 {
            return Err(bad(format!(
                "indptr holds {} entries but last_page_len has {batch} sequences (need batch + 1)",
                indptr.len()
            )));
        }
        if let Some(q) = q_rows
            && q.len() != batch
        {
            return Err(bad(format!("q_rows holds {} entries for {batch} sequences", q.len())));
        }
        if indptr[0] != 0 {
            return Err(bad(format!("indptr[0] = {} (must be 0)", indptr[0])));
        }
        let total = indptr[batch];
        if total < 0 || total as usize > indices.len() {
            return Err(bad(format!(
                "indptr[{batch}] = {total} but indices holds {} page ids",
                indices.len()
            )));
        }
        // Non-decreasing up to indptr[batch] <= indices.len(): every row slices in bounds.
        if let Some(i) = (0..batch).find(|&i| indptr[i + 1] < indptr[i]) {
            let (a, b) = (indptr[i], indptr[i + 1]);
            return Err(bad(format!("indptr decreases at sequence {i}: {a} then {b}")));
        }
        let mut f = CsrForest { page_size, ..CsrForest::default() };
        // (parent + 1, page id) -> node of a full page; 0 is "no parent".
        let mut full: HashMap<(u32, i32), u32> = HashMap::new();
        for i in 0..batch {
            let (a, b) = (indptr[i], indptr[i + 1]);
            if a == b {
                return Err(bad(format!("sequence {i} holds no page")));
            }
            let last = last_page_len[i];
            if last < 1 || last as u32 > page_size {
                return Err(bad(format!(
                    "last_page_len[{i}] = {last} is outside 1..={page_size} (page_size)"
                )));
            }
            let pages = &indices[a as usize..b as usize];
            let n = pages.len();
            let len = (n as u64 - 1) * u64::from(page_size) + last as u64;
            let len = u32::try_from(len).map_err(|_| PlanError::TooLarge("sequence length"))?;
            let mut parent: Option<u32> = None;
            for (j, &page) in pages.iter().enumerate() {
                if page < 0 {
                    return Err(bad(format!("sequence {i}: page id {page} at {j} is negative")));
                }
                let start = j as u32 * page_size;
                let is_full = j + 1 < n || last as u32 == page_size;
                let key = (parent.map_or(0, |p| p + 1), page);
                let node = match full.get(&key) {
                    Some(&node) if is_full => node,
                    _ => {
                        let end = if is_full { start + page_size } else { len };
                        let id = f.push_node(parent, start, end, page)?;
                        if is_full {
                            full.insert(key, id);
                        }
                        id
                    }
                };
                parent = Some(node);
            }
            let rows = q_rows.map_or(1, |q| q[i]);
            if rows == 0 || rows > len {
                return Err(bad(format!(
                    "sequence {i} asks for {rows} query rows of its {len} tokens"
                )));
            }
            f.leaves.push(LeafQuery { node: parent.unwrap_or(0), q_rows: rows });
        }
        Ok(f)
    }

    fn push_node(
        &mut self,
        parent: Option<u32>,
        kv_start: u32,
        kv_end: u32,
        page: i32,
    ) -> Result<u32, PlanError> {
        let id = u32::try_from(self.nodes.len()).map_err(|_| PlanError::TooLarge("nodes"))?;
        let p = u32::try_from(self.page_ids.len()).map_err(|_| PlanError::TooLarge("pages"))?;
        self.page_ids.push(page);
        self.nodes.push(NodeKv { parent, kv_start, kv_end, pages: p..p + 1 });
        Ok(id)
    }

    /// The tree, as the planner's input.
    pub fn view(&self) -> TreeKvView<'_> {
        TreeKvView { page_size: self.page_size, nodes: &self.nodes, page_ids: &self.page_ids }
    }

    /// One leaf per sequence, in batch order (so the plan's caller rows are the sequences'
    /// query rows in batch order).
    pub fn leaves(&self) -> &[LeafQuery] {
        &self.leaves
    }

    /// Query rows over all sequences.
    pub fn num_rows(&self) -> usize {
        self.leaves.iter().map(|l| l.q_rows as usize).sum()
    }

    /// Distinct pages the tree reads (each shared page counted once, a partial tail page once
    /// per sequence that ends on it).
    pub fn num_nodes(&self) -> usize {
        self.nodes.len()
    }
}
