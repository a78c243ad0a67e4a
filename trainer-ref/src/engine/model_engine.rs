//! [`ModelEngine`]: construction, accessors, fork, release and the [`Engine`] impl.

use std::sync::atomic::{AtomicBool, Ordering};

use tree_attn::PlanOptions;
use tree_kv::{CacheConfig, PageCopy, TreeKvCache};
use treepo_kernels::cpu::regions::PollingWorkers;
use treepo_kernels::ops::{self, PageCopyJobs, PagedKvLayout, ROPE_MAX_POSITION};
use treepo_kernels::{BackendKind, Device};
use treepo_sampler::{
    DecodeParams, Engine, EngineError, EngineNode, InvalidNodeReason, SegmentOutput, SegmentRequest,
};

use super::error::{backend, kv};
use super::forward::Core;
use super::nodes::{NodeEntry, NodeTable};
use super::sample::Drawn;
use super::step::StepPlan;
use super::weights::{Dims, EngineWeights};
use super::workspace::Workspace;
use super::{EngineConfig, EngineStats, OpTimes};
use crate::model::Model;

/// The [`Engine`] of the reference model: tree-kv bookkeeping, one paged KV buffer for all
/// layers, tree decode attention. See the [module docs](super) for the design.
pub struct ModelEngine<'m> {
    pub(super) core: Core<'m>,
    pub(super) cache: TreeKvCache,
    pub(super) nodes: NodeTable,
    pub(super) config: EngineConfig,
    pub(super) stats: EngineStats,
    pub(super) drawn: Drawn,
    pub(super) scratch: super::decode::Scratch,
    /// Set by the first backend failure: the KV contents are unspecified from then on.
    failed: Option<String>,
}

/// The attention head size for `head_dim` on `dev` (see [`EngineConfig::attn_head_dim`]).
fn attn_head_dim(dev: &Device, hd: usize, forced: Option<usize>) -> Result<usize, EngineError> {
    let gpu = dev.kind() != BackendKind::Cpu;
    let bad = |m: String| Err(EngineError::InvalidRequest(m));
    match forced {
        Some(da) if da < hd => bad(format!("attn_head_dim {da} is below the model's {hd}")),
        Some(da) if gpu && da != 64 && da != 128 => {
            bad(format!("attn_head_dim {da}: the {} decode kernels need 64 or 128", dev.kind()))
        }
        Some(da) => Ok(da),
        None if !gpu => Ok(hd),
        None if hd <= 64 => Ok(64),
        None if hd <= 128 => Ok(128),
        None => {
            bad(format!("head_dim {hd}: the {} decode kernels support at most 128", dev.kind()))
        }
    }
}

impl<'m> ModelEngine<'m> {
    /// An engine for `model` on the model's device. Errors: an invalid config
    /// ([`EngineError::InvalidRequest`], naming the field) or a KV buffer the device cannot
    /// allocate ([`EngineError::Backend`]).
    pub fn new(model: &'m Model, config: EngineConfig) -> Result<Self, EngineError> {
        config.check().map_err(EngineError::InvalidRequest)?;
        let mc = model.config();
        let dev = model.device().clone();
        let da = attn_head_dim(&dev, mc.head_dim, config.attn_head_dim)?;
        let d = Dims::new(mc, da);
        let cache =
            TreeKvCache::new(CacheConfig::new(config.num_pages).with_page_size(config.page_size))
                .map_err(|e| EngineError::InvalidRequest(e.to_string()))?;
        let layout = PagedKvLayout::hnd(
            d.layers,
            config.num_pages as usize,
            d.hkv,
            config.page_size as usize,
            da,
        );
        let len = layout.required_len().map_err(backend)?;
        let kv_buf = dev.zeros::<f32>(len).map_err(|e| {
            EngineError::Backend(format!(
                "cannot allocate the KV pool ({} MiB for {} pages; lower num_pages): {e}",
                (len * 4) >> 20,
                config.num_pages
            ))
        })?;
        let w =
            EngineWeights::new(model, &d, dev.kind(), config.cpu_weight_panels).map_err(backend)?;
        let group = (d.hq / d.hkv) as u32;
        let max_context =
            config.max_context.unwrap_or(mc.max_position_embeddings).min(ROPE_MAX_POSITION);
        let ws = Workspace::new(&dev, &d, config.max_batch_rows.min(64)).map_err(backend)?;
        let core = Core {
            model,
            dev,
            d,
            w,
            kv: kv_buf,
            layout,
            step: StepPlan::new(
                PlanOptions::new(config.plan, group).with_min_shared(config.plan_min_shared),
            ),
            ws,
            max_rows: config.max_batch_rows,
            max_context,
            copy_jobs: None,
            times: config.op_times.then(OpTimes::default),
        };
        Ok(ModelEngine {
            core,
            cache,
            nodes: NodeTable::default(),
            config,
            stats: EngineStats::default(),
            drawn: Drawn::default(),
            scratch: Default::default(),
            failed: None,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Work counters since construction.
    pub fn stats(&self) -> EngineStats {
        self.stats
    }

    /// The wall time per kind of op of every forward pass so far, when
    /// [`EngineConfig::op_times`] is on (else `None`).
    pub fn op_times(&self) -> Option<&OpTimes> {
        self.core.times.as_ref()
    }

    /// Starts [`Self::op_times`] again from zero.
    pub fn reset_op_times(&mut self) {
        if let Some(t) = &mut self.core.times {
            t.reset();
        }
    }

    /// The model.
    pub fn model(&self) -> &'m Model {
        self.core.model
    }

    /// The KV bookkeeping (read-only: page states, invariants, the prefix index).
    pub fn cache(&self) -> &TreeKvCache {
        &self.cache
    }

    /// The head size the attention kernels run at (see [`EngineConfig::attn_head_dim`]).
    pub fn attn_head_dim(&self) -> usize {
        self.core.d.da
    }

    /// The longest context a path may reach.
    pub fn max_context(&self) -> usize {
        self.core.max_context
    }

    /// Handles that are still valid.
    pub fn live_nodes(&self) -> usize {
        self.nodes.live()
    }

    /// Context length (prompt + response so far) of a live node.
    pub fn context_len(&self, node: EngineNode) -> Result<usize, EngineError> {
        let e = self.nodes.get(node)?;
        Ok(self.cache.node(e.kv).map_err(|e| kv("node", e))?.end as usize)
    }

    /// The logits `[V]` of the token that would follow `node`'s context (its pending hidden
    /// state times `lm_head`ᵀ): what the next `decode_segment` step samples from.
    pub fn node_logits(&mut self, node: EngineNode) -> Result<Vec<f32>, EngineError> {
        self.healthy()?;
        let hidden = self.nodes.get(node)?.hidden.clone();
        let r = self.core.put_hidden(&hidden).and_then(|()| self.core.logits(1));
        self.note(r)?;
        let v = self.core.d.vocab;
        let view = self.core.ws.logits.slice(0..v).map_err(backend)?;
        self.core.dev.download(view).map_err(backend)
    }

    /// Drops every cached (unreferenced) page of the prefix index; returns how many. With every
    /// node released this empties the pool.
    pub fn clear_prefix_cache(&mut self) -> u32 {
        self.cache.evict_all()
    }

    /// Runs `f` on a worker thread of rayon's global pool when the engine runs on the CPU. The
    /// CPU kernels parallelize with rayon; called from a thread outside the pool, every launch
    /// hands its job to a worker and blocks on a latch (a futex wake and wait per op, about a
    /// quarter of a small decode step measured with perf). From inside the pool the same loops
    /// run inline and split by work stealing. With [`EngineConfig::cpu_spin`] the other
    /// workers poll for that work meanwhile ([`poll_until`]).
    pub(super) fn on_pool<T: Send>(&mut self, f: impl FnOnce(&mut Self) -> T + Send) -> T {
        if self.core.dev.kind() != BackendKind::Cpu {
            return f(self);
        }
        let spin = self.config.cpu_spin;
        let body = move |e: &mut Self| {
            let Some(home) = rayon::current_thread_index() else { return f(e) };
            if !spin || rayon::current_num_threads() < 2 {
                return f(e);
            }
            let done = AtomicBool::new(false);
            rayon::scope(|s| {
                for _ in 1..rayon::current_num_threads() {
                    s.spawn(|_| poll_until(&done, home));
                }
                let hint = PollingWorkers::start();
                let r = f(e);
                drop(hint);
                done.store(true, Ordering::Release);
                r
            })
        };
        if rayon::current_thread_index().is_some() {
            body(self)
        } else {
            rayon::scope(|_| body(self))
        }
    }

    /// Fails if an earlier backend error left the KV contents unspecified.
    pub(super) fn healthy(&self) -> Result<(), EngineError> {
        match &self.failed {
            Some(m) => Err(EngineError::Backend(format!(
                "the engine failed earlier ({m}); release its nodes and build a new one"
            ))),
            None => Ok(()),
        }
    }

    /// Remembers a backend failure (see [`Self::healthy`]).
    pub(super) fn note<T>(&mut self, r: Result<T, EngineError>) -> Result<T, EngineError> {
        if let Err(EngineError::Backend(m)) = &r {
            self.failed.get_or_insert_with(|| m.clone());
        }
        r
    }

    /// The tree-kv node of `node` if it may be appended to (never forked), else `Frozen`.
    pub(super) fn appendable(&self, node: EngineNode) -> Result<tree_kv::NodeId, EngineError> {
        let id = self.nodes.get(node)?.kv;
        if self.cache.node(id).map_err(|e| kv("node", e))?.forked {
            return Err(EngineError::InvalidNode { node, reason: InvalidNodeReason::Frozen });
        }
        Ok(id)
    }

    fn fork_impl(&mut self, node: EngineNode, n: usize) -> Result<Vec<EngineNode>, EngineError> {
        let e = self.nodes.get(node)?;
        let (id, hidden) = (e.kv, e.hidden.clone());
        if n == 0 {
            return Ok(Vec::new());
        }
        let n32 = u32::try_from(n)
            .map_err(|_| EngineError::InvalidRequest(format!("fork into {n} children")))?;
        let fork = self.cache.fork(id, n32).map_err(|e| kv("fork", e))?;
        let children: Vec<EngineNode> = fork
            .children
            .iter()
            .map(|&c| self.nodes.insert(NodeEntry { kv: c, hidden: hidden.clone() }))
            .collect();
        if !fork.copies.is_empty() {
            self.core.copy_pages(&fork.copies)?;
            self.stats.page_copies += fork.copies.len() as u64;
        }
        Ok(children)
    }
}

impl Core<'_> {
    /// Runs tree-kv's copy-on-write jobs (all layers, K and V) in one launch.
    fn copy_pages(&mut self, copies: &[PageCopy]) -> Result<(), EngineError> {
        let jobs: Vec<(u32, u32, u32)> =
            copies.iter().map(|c| (c.src.0, c.dst.0, c.rows)).collect();
        match &mut self.copy_jobs {
            Some(j) => j.update(&self.dev, &jobs, &self.layout).map_err(backend)?,
            None => {
                self.copy_jobs =
                    Some(PageCopyJobs::upload(&self.dev, &jobs, &self.layout).map_err(backend)?);
            }
        }
        let jobs = self.copy_jobs.as_ref().ok_or_else(|| backend("page copy jobs not uploaded"))?;
        ops::page_copy(&self.dev, &mut self.kv, &self.layout, jobs).map_err(backend)
    }
}

impl Engine for ModelEngine<'_> {
    fn prefill(&mut self, prompts: &[&[u32]]) -> Result<Vec<EngineNode>, EngineError> {
        self.healthy()?;
        let r = self.on_pool(|e| e.prefill_impl(prompts));
        self.note(r)
    }

    fn fork(&mut self, node: EngineNode, n: usize) -> Result<Vec<EngineNode>, EngineError> {
        self.healthy()?;
        let r = self.fork_impl(node, n);
        self.note(r)
    }

    fn decode_segment(
        &mut self,
        reqs: &[SegmentRequest],
        params: &DecodeParams,
    ) -> Result<Vec<SegmentOutput>, EngineError> {
        self.healthy()?;
        let r = self.on_pool(|e| e.decode_impl(reqs, params));
        self.note(r)
    }

    /// Works after a backend failure too, so a caller can always return the pool to empty.
    fn release(&mut self, node: EngineNode) -> Result<(), EngineError> {
        let e = self.nodes.remove(node)?;
        self.cache.release(e.kv).map_err(|e| kv("release", e))
    }

    /// Pages held by live nodes (cached prefix pages are free for reuse and not counted).
    fn kv_pages_in_use(&self) -> usize {
        self.cache.num_referenced() as usize
    }
}

/// A polling worker of [`ModelEngine::on_pool`]: runs whatever rayon work it finds (the
/// engine's parallel regions) until `done`, spinning in between instead of sleeping. On the
/// engine's own thread (`home`: it popped this job while waiting inside the call) it returns
/// at once — the call it would wait for is suspended beneath it.
fn poll_until(done: &AtomicBool, home: usize) {
    if rayon::current_thread_index() == Some(home) {
        return;
    }
    while !done.load(Ordering::Acquire) {
        if rayon::yield_now() != Some(rayon::Yield::Executed) {
            std::hint::spin_loop();
        }
    }
}
