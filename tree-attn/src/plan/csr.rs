//! The naive baseline's input: a FlashInfer-style CSR page table with one sequence per leaf
//! (caller order) listing the pages of its whole root→leaf path — what `ops::paged_decode`
//! reads, and what an engine without tree support would hand FlashInfer.

use treepo_kernels::ops::{PageTable, PageTableHost};
use treepo_kernels::{Device, KernelError};

use super::active::{check_node, check_parent};
use super::{LeafQuery, PlanError, TreeKvView};

/// Per-leaf CSR page table (`indptr`, `indices`, `last_page_len`, `q_indptr`; int32). Build
/// with [`LeafPageTable::build_into`]; its buffers are reused across steps.
#[derive(Debug, Default)]
pub struct LeafPageTable {
    page_size: u32,
    indptr: Vec<i32>,
    indices: Vec<i32>,
    last_page_len: Vec<i32>,
    q_indptr: Vec<i32>,
    walk: Vec<u32>,
}

impl LeafPageTable {
    /// An empty table.
    pub fn new() -> LeafPageTable {
        LeafPageTable::default()
    }

    /// Rebuilds the table for `leaves` (caller order), checking every node on their paths.
    pub fn build_into(
        &mut self,
        view: &TreeKvView<'_>,
        leaves: &[LeafQuery],
    ) -> Result<(), PlanError> {
        let ps = view.page_size;
        if ps == 0 || !ps.is_power_of_two() {
            return Err(PlanError::PageSize { page_size: ps });
        }
        self.page_size = ps;
        self.indptr.clear();
        self.indptr.push(0);
        self.indices.clear();
        self.last_page_len.clear();
        self.q_indptr.clear();
        self.q_indptr.push(0);
        let n = view.nodes.len();
        for (i, l) in leaves.iter().enumerate() {
            if l.node as usize >= n {
                return Err(PlanError::NodeOutOfRange {
                    what: format!("leaf {i}"),
                    node: l.node,
                    num_nodes: n,
                });
            }
            self.walk.clear();
            let mut cur = Some(l.node);
            while let Some(u) = cur {
                if self.walk.len() > n {
                    return Err(PlanError::Cycle { node: u });
                }
                check_node(view, u)?;
                self.walk.push(u);
                cur = check_parent(view, u)?;
            }
            for &u in self.walk.iter().rev() {
                let nd = &view.nodes[u as usize];
                let need = (nd.kv_end - nd.kv_start).div_ceil(ps);
                self.indices.extend_from_slice(
                    &view.page_ids[nd.pages.start as usize..(nd.pages.start + need) as usize],
                );
            }
            let len = view.nodes[l.node as usize].kv_end;
            if l.q_rows == 0 || l.q_rows > len {
                return Err(PlanError::QueryRows { leaf: i, node: l.node, q_rows: l.q_rows, len });
            }
            let pages = len.div_ceil(ps);
            self.last_page_len.push((len - (pages - 1) * ps) as i32);
            if self.indices.len() >= i32::MAX as usize {
                return Err(PlanError::TooLarge("the page list"));
            }
            self.indptr.push(self.indices.len() as i32);
            let rows = *self.q_indptr.last().unwrap_or(&0) as u64 + u64::from(l.q_rows);
            if rows >= i32::MAX as u64 {
                return Err(PlanError::TooLarge("the query row count"));
            }
            self.q_indptr.push(rows as i32);
        }
        Ok(())
    }

    /// The host arrays, for [`PageTable::upload`].
    pub fn host(&self) -> PageTableHost<'_> {
        PageTableHost {
            page_size: self.page_size as usize,
            indptr: &self.indptr,
            indices: &self.indices,
            last_page_len: &self.last_page_len,
            q_indptr: &self.q_indptr,
        }
    }

    /// Uploads (and validates) the table for a cache of `num_pages` pages.
    pub fn upload(&self, dev: &Device, num_pages: usize) -> Result<PageTable, KernelError> {
        PageTable::upload(dev, &self.host(), num_pages)
    }
}
