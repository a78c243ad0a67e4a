//! [`EngineConfig`] (pool geometry, plan kind, batch limits) and [`EngineStats`] (counters).

use tree_attn::PlanKind;
use treepo_kernels::ops::ROPE_MAX_POSITION;

/// How a [`ModelEngine`](super::ModelEngine) sizes its KV pool and batches its work.
#[derive(Clone, Debug, PartialEq)]
pub struct EngineConfig {
    /// Pages in the KV pool (one page id is valid in every layer). The KV buffer holds
    /// `layers · num_pages · 2 · num_kv_heads · page_size · head_dim` f32 values.
    pub num_pages: u32,
    /// Tokens per page; a power of two (default 16, vLLM's and FlashInfer's).
    pub page_size: u32,
    /// How tree decode attention cuts its work (default [`PlanKind::Tree`]: each node's KV is
    /// read once for all leaves below it; [`PlanKind::Naive`] reads every leaf's whole path).
    pub plan: PlanKind,
    /// The tree plans share a node's KV only if the node (with the short nodes folded into it
    /// from above) holds at least this many tokens; shorter ones are read with each child
    /// ([`tree_attn::PlanOptions::min_shared`]). Default 64: on the CPU a shared 16-token
    /// segment costs a work item and a partial state per leaf for little saved reading;
    /// `docs/engine.md` has the measurement. 0 shares every node.
    pub plan_min_shared: u32,
    /// Most token rows in one forward pass. Larger prefills are chunked, larger decode batches
    /// are split into groups decoded one after the other (per-position uniforms make the result
    /// independent of the split). Activation buffers grow up to this many rows (default 256).
    pub max_batch_rows: usize,
    /// Longest context (prompt + response) a path may reach; `None`: the model's
    /// `max_position_embeddings`. A request that reaches it ends its segment early
    /// ([`treepo_sampler::SegmentEnd::MaxTokens`]); a longer prompt is an invalid request.
    pub max_context: Option<usize>,
    /// Head size of the attention kernels; `None`: the backend's choice (the model's `head_dim`
    /// on the CPU; 64 or 128 on CUDA and wgpu, whose decode kernels are built for those). A
    /// larger value zero-pads q, k, v and the `o_proj` columns, which leaves every result
    /// unchanged (the padding contributes exact zeros).
    pub attn_head_dim: Option<usize>,
    /// CPU only: while a prefill or decode call runs, the other workers of rayon's pool poll
    /// for its parallel work instead of sleeping between ops (default `true`). A small model's
    /// token step is dozens of short parallel regions; a worker that sleeps between them costs
    /// a futex wake-up per region (10–50 µs on a VM). The cost: the polling workers keep their
    /// cores busy for the call's duration (they run other rayon work they find meanwhile), and
    /// on an oversubscribed machine a poller takes time slices from the thread it waits for:
    /// turn it off where the cores are shared with other busy processes. llama.cpp's thread
    /// pool polls between a graph's ops for the same reason. While it polls, the engine holds
    /// `treepo_kernels::cpu::regions::PollingWorkers`, so the CPU kernels split smaller loops
    /// and GEMMs across the workers (a fork-join then costs ~1 µs).
    pub cpu_spin: bool,
    /// CPU only: store the large linear weights in the weight GEMM's panel order where the CPU
    /// runs that kernel (AVX-512F; default `true`; see `engine::weights`). `false` keeps every
    /// CPU weight `[in, out]` for the `gemm` crate — for an A/B of the layout.
    pub cpu_weight_panels: bool,
    /// Sum the wall time of each kind of op of the forward passes, for
    /// [`ModelEngine::op_times`](super::ModelEngine::op_times) (default `false`; see
    /// [`OpTimes`](super::OpTimes): meaningful on the CPU backend, where ops run synchronously).
    pub op_times: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            num_pages: 1024,
            page_size: 16,
            plan: PlanKind::Tree,
            plan_min_shared: 64,
            max_batch_rows: 256,
            max_context: None,
            attn_head_dim: None,
            cpu_spin: true,
            cpu_weight_panels: true,
            op_times: false,
        }
    }
}

impl EngineConfig {
    /// The defaults with a pool of `num_pages` pages.
    pub fn with_pages(num_pages: u32) -> Self {
        EngineConfig { num_pages, ..EngineConfig::default() }
    }

    /// Checks the fields that do not depend on the model; the error names the field.
    pub(crate) fn check(&self) -> Result<(), String> {
        if u64::from(self.num_pages) * u64::from(self.page_size) > i32::MAX as u64 {
            return Err(format!(
                "num_pages * page_size = {} * {} exceeds the int32 slot range",
                self.num_pages, self.page_size
            ));
        }
        if self.max_batch_rows == 0 {
            return Err("max_batch_rows must be >= 1".into());
        }
        if let Some(c) = self.max_context
            && !(2..=ROPE_MAX_POSITION).contains(&c)
        {
            return Err(format!("max_context = {c} must be in [2, {ROPE_MAX_POSITION}]"));
        }
        Ok(())
    }
}

/// Work counters of a [`ModelEngine`](super::ModelEngine) since it was built.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Forward passes through the layer stack (one per decode step, one or more per prefill).
    pub forwards: u64,
    /// Token rows those passes computed (prompt rows + fed tokens).
    pub rows: u64,
    /// Prompt tokens whose KV was reused from the prefix cache instead of computed.
    pub cached_prompt_tokens: u64,
    /// Sampling steps (one logits GEMM + one `sample` launch each).
    pub decode_steps: u64,
    /// Tokens sampled and returned.
    pub sampled_tokens: u64,
    /// Partial tail pages copied on forks.
    pub page_copies: u64,
}
