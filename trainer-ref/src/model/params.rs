//! llm.c-style parameter memory: every tensor of the model is a named view into ONE contiguous
//! f32 buffer, so gradients and AdamW moments are buffers of the same layout and the optimizer
//! is one loop over a flat array.
//!
//! Order (and HF names): `model.embed_tokens.weight [V, C]`; per layer `l`:
//! `input_layernorm.weight [C]`, `self_attn.{q,k,v}_proj.weight [q_dim|kv_dim, C]` (+ `.bias`
//! when `attention_bias`), `self_attn.o_proj.weight [C, q_dim]`,
//! `post_attention_layernorm.weight [C]`, `mlp.{gate,up}_proj.weight [I, C]`,
//! `mlp.down_proj.weight [C, I]`; then `model.norm.weight [C]` and `lm_head.weight [V, C]`
//! (absent when tied). Within a layer q, k and v are adjacent, so one GEMM against the
//! `[q_dim + 2·kv_dim, C]` block computes the fused QKV projection.

use std::ops::Range;

use super::{ModelConfig, ModelError};

/// One named tensor of the layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorSpec {
    /// HF name.
    pub name: String,
    /// Shape, outermost first.
    pub shape: Vec<usize>,
    /// Element range in the parameter buffer.
    pub range: Range<usize>,
    /// Whether AdamW's weight decay applies (matrices and embeddings; not norms or biases).
    pub decay: bool,
}

/// Element ranges of one decoder layer's tensors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerParams {
    /// `input_layernorm.weight`.
    pub ln1: Range<usize>,
    /// The fused `[q_dim + 2·kv_dim, C]` block: q, k and v projection weights in order.
    pub wqkv: Range<usize>,
    /// The fused `[q_dim + 2·kv_dim]` q/k/v bias block, when the model has biases.
    pub bqkv: Option<Range<usize>>,
    /// `o_proj.weight [C, q_dim]`.
    pub wo: Range<usize>,
    /// `post_attention_layernorm.weight`.
    pub ln2: Range<usize>,
    /// The fused `[2·I, C]` block: gate then up projection weights.
    pub wgate_up: Range<usize>,
    /// `down_proj.weight [C, I]`.
    pub wdown: Range<usize>,
}

/// Where every parameter lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamLayout {
    /// All tensors in buffer order.
    pub tensors: Vec<TensorSpec>,
    /// `embed_tokens [V, C]`.
    pub embed: Range<usize>,
    /// Per-layer ranges.
    pub layers: Vec<LayerParams>,
    /// `model.norm.weight`.
    pub final_norm: Range<usize>,
    /// `lm_head [V, C]` (equal to `embed` when tied).
    pub lm_head: Range<usize>,
    /// Total number of f32 parameters.
    pub total: usize,
}

impl ParamLayout {
    /// The layout of `cfg`, after [`ModelConfig::check_sizes`]: a config whose sizes are out of
    /// range is a [`ModelError::Config`] naming the field, before anything is allocated.
    pub fn try_new(cfg: &ModelConfig) -> Result<Self, ModelError> {
        cfg.check_sizes()?;
        Ok(Self::build(cfg))
    }

    /// The layout of a validated `cfg` ([`ModelConfig::validate`]; every path that reads a
    /// config validates it).
    ///
    /// # Panics
    ///
    /// If `cfg`'s sizes fail [`ModelConfig::check_sizes`]; use [`Self::try_new`] for a config
    /// that has not been validated.
    pub fn new(cfg: &ModelConfig) -> Self {
        match Self::try_new(cfg) {
            Ok(layout) => layout,
            Err(e) => panic!("ParamLayout::new on a config that was not validated: {e}"),
        }
    }

    /// The layout; `cfg` has passed [`ModelConfig::check_sizes`], so no product or offset below
    /// exceeds [`ModelConfig::MAX_PARAMS`] (the arithmetic is checked all the same).
    fn build(cfg: &ModelConfig) -> Self {
        let (v, c, i) = (cfg.vocab_size, cfg.hidden_size, cfg.intermediate_size);
        let (qd, kvd) = (cfg.q_dim(), cfg.kv_dim());
        let mut tensors = Vec::new();
        let mut at = 0usize;
        let mut push = |name: String, shape: Vec<usize>, decay: bool| -> Range<usize> {
            let end = shape
                .iter()
                .try_fold(1usize, |n, &d| n.checked_mul(d))
                .and_then(|n| at.checked_add(n))
                .filter(|&end| end <= ModelConfig::MAX_PARAMS)
                .unwrap_or_else(|| unreachable!("check_sizes bounds every tensor ({name})"));
            let range = at..end;
            at = end;
            tensors.push(TensorSpec { name, shape, range: range.clone(), decay });
            range
        };
        let embed = push("model.embed_tokens.weight".into(), vec![v, c], true);
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for l in 0..cfg.num_hidden_layers {
            let p = format!("model.layers.{l}.");
            let ln1 = push(format!("{p}input_layernorm.weight"), vec![c], false);
            let wq = push(format!("{p}self_attn.q_proj.weight"), vec![qd, c], true);
            let _wk = push(format!("{p}self_attn.k_proj.weight"), vec![kvd, c], true);
            let wv = push(format!("{p}self_attn.v_proj.weight"), vec![kvd, c], true);
            let bqkv = if cfg.attention_bias {
                let bq = push(format!("{p}self_attn.q_proj.bias"), vec![qd], false);
                push(format!("{p}self_attn.k_proj.bias"), vec![kvd], false);
                let bv = push(format!("{p}self_attn.v_proj.bias"), vec![kvd], false);
                Some(bq.start..bv.end)
            } else {
                None
            };
            let wo = push(format!("{p}self_attn.o_proj.weight"), vec![c, qd], true);
            let ln2 = push(format!("{p}post_attention_layernorm.weight"), vec![c], false);
            let wg = push(format!("{p}mlp.gate_proj.weight"), vec![i, c], true);
            let wu = push(format!("{p}mlp.up_proj.weight"), vec![i, c], true);
            let wdown = push(format!("{p}mlp.down_proj.weight"), vec![c, i], true);
            layers.push(LayerParams {
                ln1,
                wqkv: wq.start..wv.end,
                bqkv,
                wo,
                ln2,
                wgate_up: wg.start..wu.end,
                wdown,
            });
        }
        let final_norm = push("model.norm.weight".into(), vec![c], false);
        let lm_head = if cfg.tie_word_embeddings {
            embed.clone()
        } else {
            push("lm_head.weight".into(), vec![v, c], true)
        };
        ParamLayout { tensors, embed, layers, final_norm, lm_head, total: at }
    }

    /// The tensor called `name`.
    pub fn get(&self, name: &str) -> Option<&TensorSpec> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Per-element weight-decay mask (1 where AdamW decays).
    pub fn decay_mask(&self) -> Vec<bool> {
        let mut m = vec![false; self.total];
        for t in &self.tensors {
            if t.decay {
                m[t.range.clone()].iter_mut().for_each(|x| *x = true);
            }
        }
        m
    }
}
