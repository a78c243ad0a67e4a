//! The engine's view of the model: its dimensions ([`Dims`]) and the attention weights the
//! KV-cached forward multiplies by ([`AttnWeights`]).
//!
//! The GPU decode kernels are built for head sizes 64 and 128. A model with another `head_dim`
//! (the tiny demo model has 32) runs them at an attention head size `da >= head_dim` by
//! zero-padding: each head's rows of `q_proj`/`k_proj`/`v_proj` (and biases) get `da - head_dim`
//! zero rows, `o_proj` gets zero columns. q, k and v then carry exact zeros in the padded
//! dimensions (RoPE rotates only the first `head_dim`), so `q·k`, the softmax and the output
//! are unchanged, and the padded output columns meet zero weights. When `da == head_dim` the
//! ranges point straight into the model's parameter buffer and nothing is copied.

use std::ops::Range;

use treepo_kernels::{Buffer, KernelError};

use crate::model::{Model, ModelConfig};

/// Sizes the forward pass needs (B/T/C vocabulary: `c` hidden, `im` MLP width).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Dims {
    pub layers: usize,
    pub c: usize,
    pub hq: usize,
    pub hkv: usize,
    /// The model's head size (RoPE rotates these dimensions).
    pub hd: usize,
    /// The attention kernels' head size (`>= hd`, see the module docs).
    pub da: usize,
    pub im: usize,
    pub vocab: usize,
    pub eps: f32,
    pub sm_scale: f32,
}

impl Dims {
    pub fn new(cfg: &ModelConfig, da: usize) -> Dims {
        Dims {
            layers: cfg.num_hidden_layers,
            c: cfg.hidden_size,
            hq: cfg.num_attention_heads,
            hkv: cfg.num_key_value_heads,
            hd: cfg.head_dim,
            da,
            im: cfg.intermediate_size,
            vocab: cfg.vocab_size,
            eps: cfg.rms_norm_eps,
            sm_scale: (cfg.head_dim as f32).powf(-0.5),
        }
    }

    /// Width of a q row: `hq · da`.
    pub fn qa(&self) -> usize {
        self.hq * self.da
    }

    /// Width of a fused k|v row: `2 · hkv · da`.
    pub fn kva2(&self) -> usize {
        2 * self.hkv * self.da
    }
}

/// Element ranges of one layer's attention weights, in [`AttnWeights::buffer`].
#[derive(Clone, Debug)]
pub(crate) struct AttnLayer {
    /// `[hq·da, C]`.
    pub wq: Range<usize>,
    /// `[2·hkv·da, C]`: k rows then v rows (adjacent in the model's fused block).
    pub wkv: Range<usize>,
    /// `[hq·da]`.
    pub bq: Option<Range<usize>>,
    /// `[2·hkv·da]`.
    pub bkv: Option<Range<usize>>,
    /// `[C, hq·da]`.
    pub wo: Range<usize>,
}

/// Attention weights at head size `da`: views into the model's buffer, or a padded copy.
pub(crate) struct AttnWeights {
    padded: Option<Buffer<f32>>,
    pub layers: Vec<AttnLayer>,
}

impl AttnWeights {
    /// The weights of `model` at attention head size `d.da` (a padded copy when it differs
    /// from `head_dim`, made once here).
    pub fn new(model: &Model, d: &Dims) -> Result<AttnWeights, KernelError> {
        let (c, lay) = (d.c, model.layout());
        if d.da == d.hd {
            let qd = d.hq * d.hd;
            let layers = lay
                .layers
                .iter()
                .map(|lp| {
                    let s = lp.wqkv.start;
                    AttnLayer {
                        wq: s..s + qd * c,
                        wkv: s + qd * c..lp.wqkv.end,
                        bq: lp.bqkv.as_ref().map(|b| b.start..b.start + qd),
                        bkv: lp.bqkv.as_ref().map(|b| b.start + qd..b.end),
                        wo: lp.wo.clone(),
                    }
                })
                .collect();
            return Ok(AttnWeights { padded: None, layers });
        }
        let host = model.device().download(model.params())?;
        let mut out = Vec::new();
        let mut layers = Vec::with_capacity(lay.layers.len());
        // Appends the `heads` heads of `hd` rows (each `cols` wide) at `src`, each padded to
        // `da` rows with zeros; returns the range written.
        let heads = |out: &mut Vec<f32>, src: usize, heads: usize, cols: usize| {
            let start = out.len();
            for h in 0..heads {
                let at = src + h * d.hd * cols;
                out.extend_from_slice(&host[at..at + d.hd * cols]);
                out.resize(out.len() + (d.da - d.hd) * cols, 0.0);
            }
            start..out.len()
        };
        for lp in &lay.layers {
            let (qd, kvd) = (d.hq * d.hd, d.hkv * d.hd);
            let s = lp.wqkv.start;
            let wq = heads(&mut out, s, d.hq, c);
            let wk = heads(&mut out, s + qd * c, d.hkv, c);
            let wv = heads(&mut out, s + (qd + kvd) * c, d.hkv, c);
            let (bq, bkv) = match &lp.bqkv {
                Some(b) => {
                    let bq = heads(&mut out, b.start, d.hq, 1);
                    let bk = heads(&mut out, b.start + qd, d.hkv, 1);
                    let bv = heads(&mut out, b.start + qd + kvd, d.hkv, 1);
                    (Some(bq), Some(bk.start..bv.end))
                }
                None => (None, None),
            };
            // o_proj [C, hq·hd] → [C, hq·da]: each row's head blocks padded with zero columns.
            let wo_start = out.len();
            for r in 0..c {
                heads(&mut out, lp.wo.start + r * qd, d.hq, 1);
            }
            layers.push(AttnLayer { wq, wkv: wk.start..wv.end, bq, bkv, wo: wo_start..out.len() });
        }
        let padded = model.device().upload(&out)?;
        Ok(AttnWeights { padded: Some(padded), layers })
    }

    /// The buffer the ranges index: the padded copy, or the model's parameters.
    pub fn buffer<'a>(&'a self, model: &'a Model) -> &'a Buffer<f32> {
        self.padded.as_ref().unwrap_or(model.params())
    }
}
