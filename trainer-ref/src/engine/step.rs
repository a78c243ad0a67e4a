//! The per-forward attention plan: tree-kv's export of the active leaves → a tree-attn
//! [`TreeKvView`] → [`plan_into`] → one upload, then every layer runs the same device plan.
//!
//! A forward computes, for each active leaf, the query rows of positions `[start, end)` of its
//! path (`end - start = 1` at decode, a prompt chunk at prefill). The view gives the leaf the KV
//! chunk `[kv_start, end)` — a leaf's real end may lie further (a prompt whose later chunks are
//! computed in a later forward); tree-attn ignores the pages past `end`. All buffers (export,
//! view, plan, device tables, partial-state workspace) are kept and refilled, so a decode loop
//! allocates nothing once they have grown to its largest step.

use tree_attn::{DecodeWorkspace, LeafQuery, NodeKv, Plan, PlanOptions, TreeKvView, plan_into};
use tree_kv::{LayoutExport, NodeId, TreeKvCache};
use treepo_kernels::Device;
use treepo_kernels::ops::DecodePlanBuffers;

use super::error::{backend, internal};
use treepo_sampler::EngineError;

/// Reused planning state (see the module docs).
pub(crate) struct StepPlan {
    opts: PlanOptions,
    export: LayoutExport,
    nodes: Vec<NodeKv>,
    leaves: Vec<LeafQuery>,
    plan: Plan,
    pub bufs: Option<DecodePlanBuffers>,
    pub ws: Option<DecodeWorkspace>,
}

impl StepPlan {
    pub fn new(opts: PlanOptions) -> StepPlan {
        StepPlan {
            opts,
            export: LayoutExport::new(),
            nodes: Vec::new(),
            leaves: Vec::new(),
            plan: Plan::new(),
            bufs: None,
            ws: None,
        }
    }

    /// Plans and uploads one forward: leaf `i` of `leaves` (distinct tree leaves) queries the
    /// positions `spans[i]`; the query rows are the leaves' rows in the order given.
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        &mut self,
        dev: &Device,
        cache: &TreeKvCache,
        leaves: &[NodeId],
        spans: &[(u32, u32)],
        num_qo_heads: usize,
        head_dim: usize,
    ) -> Result<(), EngineError> {
        cache.export_into(leaves, &mut self.export).map_err(|e| internal("export", e))?;
        let ex = &self.export;
        let indptr = ex.node_page_indptr();
        self.nodes.clear();
        for i in 0..ex.num_nodes() {
            let p = ex.node_parent()[i];
            self.nodes.push(NodeKv {
                parent: u32::try_from(p).ok(),
                kv_start: ex.node_kv_start()[i] as u32,
                kv_end: ex.node_kv_end()[i] as u32,
                pages: indptr[i] as u32..indptr[i + 1] as u32,
            });
        }
        self.leaves.clear();
        self.leaves.resize(leaves.len(), LeafQuery { node: 0, q_rows: 1 });
        for (&caller, &node) in ex.leaf_input().iter().zip(ex.leaf_node()) {
            let (start, end) = spans[caller as usize];
            let nk = &mut self.nodes[node as usize];
            if end > nk.kv_end || end <= start || end <= nk.kv_start {
                return Err(internal(
                    "query span",
                    format!("{start}..{end} outside the leaf's KV {}..{}", nk.kv_start, nk.kv_end),
                ));
            }
            nk.kv_end = end;
            self.leaves[caller as usize] = LeafQuery { node: node as u32, q_rows: end - start };
        }
        let view = TreeKvView {
            page_size: cache.page_size(),
            nodes: &self.nodes,
            page_ids: self.export.node_page_indices(),
        };
        plan_into(&view, &self.leaves, &self.opts, &mut self.plan)
            .map_err(|e| internal("plan", e))?;
        let num_pages = cache.num_pages() as usize;
        match &mut self.bufs {
            Some(b) => self.plan.upload_into(dev, b, num_pages).map_err(backend)?,
            None => self.bufs = Some(self.plan.upload(dev, num_pages).map_err(backend)?),
        }
        let bufs = self.bufs.as_ref().ok_or_else(|| internal("plan", "not uploaded"))?;
        match &mut self.ws {
            Some(ws) => ws.ensure(dev, bufs, num_qo_heads, head_dim).map_err(backend)?,
            None => {
                self.ws =
                    Some(DecodeWorkspace::new(dev, bufs, num_qo_heads, head_dim).map_err(backend)?);
            }
        }
        Ok(())
    }
}
