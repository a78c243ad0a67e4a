//! [`TreeDecoder`]: the plan-once, run-per-layer object an embedding engine holds — the shape of
//! FlashInfer's `BatchDecodeWithPagedKVCacheWrapper` — over [`plan`](crate::plan) and
//! [`decode`](crate::decode). It owns the host plan, its device tables and the partial-state
//! workspace, and reuses all three across steps, so a steady decode loop allocates nothing.
//!
//! ```
//! use tree_attn::{CsrForest, PlanKind, TreeDecoder};
//! use treepo_kernels::{Buffer, Device, ops::PagedKvLayout};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The engine's own block tables: two sequences sharing page 3, each with its own tail page.
//! let forest = CsrForest::from_csr(4, &[0, 2, 4], &[3, 0, 3, 1], &[2, 3], None)?;
//! let dev = Device::cpu();
//! let mut dec = TreeDecoder::new();
//! dec.plan(&dev, &forest.view(), forest.leaves(), PlanKind::Tree, 2, 1, 8, 4)?;
//! // The engine's own memory: a cache of 4 pages (NHD) and q/out for 2 rows × 2 heads × 8.
//! let layout = PagedKvLayout::nhd(1, 4, 1, 4, 8);
//! let kv = vec![0.5f32; layout.required_len()?];
//! let q = vec![1.0f32; 2 * 2 * 8];
//! let mut out = vec![f32::NAN; 2 * 2 * 8];
//! {
//!     let (kv, q) = (Buffer::from_host(&kv), Buffer::from_host(&q));
//!     let mut o = Buffer::from_host_mut(&mut out);
//!     dec.run(&dev, q.view(), kv.view(), &layout, 0, 8f32.powf(-0.5), o.view_mut(), None)?;
//! }
//! assert!(out.iter().all(|&x| (x - 0.5).abs() < 1e-6));
//! # Ok(()) }
//! ```

use treepo_kernels::ops::{DecodeParams, DecodePlanBuffers, PagedKvLayout};
use treepo_kernels::{BackendKind, Device, FloatElement, KernelError, View, ViewMut};

use crate::decode::{DecodeWorkspace, decode};
use crate::plan::{LeafQuery, Plan, PlanError, PlanKind, PlanOptions, TreeKvView, plan_into};

/// Why a [`TreeDecoder`] call failed. Nothing ran; a failed `plan` leaves the decoder unplanned.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The tree, leaves or options break the planner's contract.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// A kernel-side check (shapes, devices, dtypes, page ids) or a device failure.
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// The call does not match the decoder's state or plan.
    #[error("tree decode: {0}")]
    Invalid(String),
}

/// What the current plan was made for.
#[derive(Clone, Copy, Debug)]
struct Planned {
    backend: BackendKind,
    num_qo_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
    num_pages: usize,
}

/// Plan once per batch, run per layer (see the [module docs](self)).
#[derive(Debug, Default)]
pub struct TreeDecoder {
    plan: Plan,
    /// [`PlanOptions::min_shared`] of the next plans.
    min_shared: u32,
    /// Device tables and workspace, with the backend that holds them.
    tables: Option<(DecodePlanBuffers, DecodeWorkspace, BackendKind)>,
    planned: Option<Planned>,
}

impl TreeDecoder {
    /// A decoder with nothing planned.
    pub fn new() -> TreeDecoder {
        TreeDecoder::default()
    }

    /// Sets [`PlanOptions::min_shared`] for the following [`plan`](TreeDecoder::plan) calls
    /// (default 0: every shared node is its own work item). The current plan is unchanged.
    pub fn set_min_shared(&mut self, tokens: u32) {
        self.min_shared = tokens;
    }

    /// Plans one step on `dev` for a cache of `num_pages` pages, `num_qo_heads` query heads
    /// over `num_kv_heads` KV heads (GQA) of `head_dim`, and uploads the tables (reusing the
    /// previous step's buffers while large enough). The caller's q/out rows are `leaves`' query
    /// rows in the order given.
    #[allow(clippy::too_many_arguments)]
    pub fn plan(
        &mut self,
        dev: &Device,
        view: &TreeKvView<'_>,
        leaves: &[LeafQuery],
        kind: PlanKind,
        num_qo_heads: usize,
        num_kv_heads: usize,
        head_dim: usize,
        num_pages: usize,
    ) -> Result<(), DecodeError> {
        self.planned = None;
        if num_kv_heads == 0 || num_qo_heads == 0 || !num_qo_heads.is_multiple_of(num_kv_heads) {
            return Err(DecodeError::Invalid(format!(
                "num_qo_heads = {num_qo_heads} is not a positive multiple of num_kv_heads = \
                 {num_kv_heads}"
            )));
        }
        if head_dim == 0 {
            return Err(DecodeError::Invalid("head_dim must be > 0".into()));
        }
        let group = u32::try_from(num_qo_heads / num_kv_heads)
            .map_err(|_| DecodeError::Invalid(format!("GQA group of {num_qo_heads} heads")))?;
        let opts = PlanOptions::new(kind, group).with_min_shared(self.min_shared);
        plan_into(view, leaves, &opts, &mut self.plan)?;
        match &mut self.tables {
            Some((bufs, ws, backend)) if *backend == dev.kind() => {
                self.plan.upload_into(dev, bufs, num_pages)?;
                ws.ensure(dev, bufs, num_qo_heads, head_dim)?;
            }
            _ => {
                self.tables = None;
                let bufs = self.plan.upload(dev, num_pages)?;
                let ws = DecodeWorkspace::new(dev, &bufs, num_qo_heads, head_dim)?;
                self.tables = Some((bufs, ws, dev.kind()));
            }
        }
        self.planned =
            Some(Planned { backend: dev.kind(), num_qo_heads, num_kv_heads, head_dim, num_pages });
        Ok(())
    }

    /// Query rows the current plan expects (0 when nothing is planned).
    pub fn num_rows(&self) -> usize {
        self.planned.map_or(0, |_| self.plan.num_rows())
    }

    /// The host plan of the current step (work list, statistics).
    pub fn host_plan(&self) -> Option<&Plan> {
        self.planned.map(|_| &self.plan)
    }

    /// One layer of tree decode attention with the current plan: `q`, `out`
    /// `[rows, num_qo_heads, head_dim]`; `kv` the paged cache described by `layout` (its head
    /// count, head size and page count must be the planned ones), layer `layer`; `lse`
    /// (optional) `[rows, num_qo_heads]`, NATURAL log. Errors when nothing is planned or `dev`
    /// runs another backend than the plan's.
    #[allow(clippy::too_many_arguments)]
    pub fn run<'a, T: FloatElement>(
        &mut self,
        dev: &Device,
        q: View<'a, T>,
        kv: View<'a, T>,
        layout: &PagedKvLayout,
        layer: usize,
        sm_scale: f32,
        out: ViewMut<'a, T>,
        lse: Option<ViewMut<'a, f32>>,
    ) -> Result<(), DecodeError> {
        let p = self.planned.ok_or_else(|| DecodeError::Invalid("run before plan".into()))?;
        if dev.kind() != p.backend {
            return Err(DecodeError::Invalid(format!(
                "planned on {} but run on {}",
                p.backend,
                dev.kind()
            )));
        }
        let got = (layout.num_kv_heads, layout.head_dim, layout.num_pages);
        if got != (p.num_kv_heads, p.head_dim, p.num_pages) {
            return Err(DecodeError::Invalid(format!(
                "the cache layout has (num_kv_heads, head_dim, num_pages) = {got:?} but the plan \
                 was made for {:?}",
                (p.num_kv_heads, p.head_dim, p.num_pages)
            )));
        }
        let Some((bufs, ws, _)) = &mut self.tables else {
            return Err(DecodeError::Invalid("run before plan".into()));
        };
        let params = DecodeParams { num_qo_heads: p.num_qo_heads, layer, sm_scale };
        decode(dev, bufs, ws, q, kv, layout, &params, out, lse)?;
        Ok(())
    }
}
