//! The training forward pass over a packed batch: every token of one or several rollout trees
//! (or plain sequences), packed in DFS pre-order, through the decoder with tree-masked
//! attention — shared prefixes are computed once. Activations the backward pass needs are kept
//! in [`Activations`], one buffer per kind with a slice per layer (llm.c style).
//!
//! Shapes (N tokens, C hidden, qd = H_q·D, kvd = H_kv·D, I MLP width, V vocab):
//! ```text
//! resid[0]  = embed[tokens]                                   [N, C]
//! per layer l:
//!   ln1     = rmsnorm(resid[l]) · w1            (rstd1 saved) [N, C]
//!   q, k, v = ln1 · W{q,k,v}ᵀ (+ b)   then RoPE on q, k        [N, qd], [N, kvd]
//!   att     = tree_attention(q, k, v)           (lse saved)   [N, qd]
//!   mid     = resid[l] + att · Woᵀ                             [N, C]
//!   ln2     = rmsnorm(mid) · w2                 (rstd2 saved) [N, C]
//!   gate,up = ln2 · W{g,u}ᵀ ;  act = silu(gate) ⊙ up           [N, I]
//!   resid[l+1] = mid + act · Wdownᵀ                            [N, C]
//! lnf    = rmsnorm(resid[L]) · wf               (rstdf saved) [N, C]
//! logits = lnf · lm_headᵀ                                      [N, V]
//! ```
//! Biases are added as a rank-1 GEMM with a ones column (`ones[N,1] · b[1,n]`), so no extra
//! kernel is needed; the backward pass sums bias gradients the same way.

use std::ops::Range;

use treepo_kernels::ops::{
    self, GemmSpec, PackedAttentionParams, RopeDirection, RopeShape, TreeMask,
};
use treepo_kernels::{Buffer, Device, Indices, View, ViewMut};

use super::{Model, ModelConfig, ModelError};

/// One packed batch on the device: token ids, RoPE positions and the tree mask.
pub struct PackedBatch {
    n: usize,
    tokens: Indices,
    positions: Indices,
    mask: TreeMask,
}

impl PackedBatch {
    /// A batch from host arrays: `tokens[N]`, `positions[N]` (depth of each token in its
    /// root→leaf sequence) and `kv_row_end[N]` (the tree mask, see [`TreeMask`]).
    pub fn new(
        dev: &Device,
        cfg: &ModelConfig,
        tokens: &[u32],
        positions: &[u32],
        kv_row_end: &[i32],
    ) -> Result<Self, ModelError> {
        let n = tokens.len();
        if positions.len() != n || kv_row_end.len() != n {
            return Err(ModelError::Config {
                field: "batch",
                msg: format!(
                    "{n} tokens but {} positions and {} mask entries",
                    positions.len(),
                    kv_row_end.len()
                ),
            });
        }
        let to_i32 =
            |v: &[u32]| -> Vec<i32> { v.iter().map(|&x| x.min(i32::MAX as u32) as i32).collect() };
        Ok(PackedBatch {
            n,
            tokens: Indices::upload(dev, &to_i32(tokens), cfg.vocab_size)?,
            positions: Indices::upload(
                dev,
                &to_i32(positions),
                cfg.max_position_embeddings.max(n) + 1,
            )?,
            mask: TreeMask::upload(dev, kv_row_end)?,
        })
    }

    /// One plain sequence (a chain tree: causal attention, positions `0..N`).
    pub fn causal(dev: &Device, cfg: &ModelConfig, tokens: &[u32]) -> Result<Self, ModelError> {
        let n = tokens.len() as u32;
        let positions: Vec<u32> = (0..n).collect();
        Self::new(dev, cfg, tokens, &positions, &vec![n as i32; n as usize])
    }

    /// Number of packed tokens.
    pub fn len(&self) -> usize {
        self.n
    }

    /// True when the batch is empty (never, by construction).
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Token ids.
    pub fn tokens(&self) -> &Indices {
        &self.tokens
    }

    /// The tree mask.
    pub fn mask(&self) -> &TreeMask {
        &self.mask
    }

    /// RoPE positions.
    pub fn positions(&self) -> &Indices {
        &self.positions
    }
}

/// Saved activations of one forward pass over N tokens (see the module docs).
pub struct Activations {
    pub(crate) n: usize,
    pub(crate) resid: Buffer<f32>,
    pub(crate) ln1: Buffer<f32>,
    pub(crate) rstd1: Buffer<f32>,
    pub(crate) q: Buffer<f32>,
    pub(crate) k: Buffer<f32>,
    pub(crate) v: Buffer<f32>,
    pub(crate) att: Buffer<f32>,
    pub(crate) lse: Buffer<f32>,
    pub(crate) mid: Buffer<f32>,
    pub(crate) ln2: Buffer<f32>,
    pub(crate) rstd2: Buffer<f32>,
    pub(crate) gate: Buffer<f32>,
    pub(crate) up: Buffer<f32>,
    pub(crate) act: Buffer<f32>,
    pub(crate) lnf: Buffer<f32>,
    pub(crate) rstdf: Buffer<f32>,
    pub(crate) logits: Buffer<f32>,
    pub(crate) ones: Buffer<f32>,
}

impl Activations {
    /// Buffers for `n` tokens of `cfg` on `dev`.
    pub fn new(dev: &Device, cfg: &ModelConfig, n: usize) -> Result<Self, ModelError> {
        let l = cfg.num_hidden_layers;
        let (c, qd, kvd, i, v) =
            (cfg.hidden_size, cfg.q_dim(), cfg.kv_dim(), cfg.intermediate_size, cfg.vocab_size);
        let z = |len: usize| dev.zeros::<f32>(len);
        Ok(Activations {
            n,
            resid: z((l + 1) * n * c)?,
            ln1: z(l * n * c)?,
            rstd1: z(l * n)?,
            q: z(l * n * qd)?,
            k: z(l * n * kvd)?,
            v: z(l * n * kvd)?,
            att: z(l * n * qd)?,
            lse: z(l * n * cfg.num_attention_heads)?,
            mid: z(l * n * c)?,
            ln2: z(l * n * c)?,
            rstd2: z(l * n)?,
            gate: z(l * n * i)?,
            up: z(l * n * i)?,
            act: z(l * n * i)?,
            lnf: z(n * c)?,
            rstdf: z(n)?,
            logits: z(n * v)?,
            ones: dev.full(n, 1.0f32)?,
        })
    }

    /// Number of tokens these buffers hold.
    pub fn len(&self) -> usize {
        self.n
    }

    /// True for zero tokens.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The logits `[N, V]` of the last forward pass.
    pub fn logits(&self) -> &Buffer<f32> {
        &self.logits
    }
}

/// Per-layer slice `l` of a buffer holding `per` elements per layer.
pub(crate) fn layer(buf: &Buffer<f32>, l: usize, per: usize) -> Result<View<'_, f32>, ModelError> {
    Ok(buf.slice(l * per..(l + 1) * per)?)
}

/// Mutable per-layer slice.
pub(crate) fn layer_mut(
    buf: &mut Buffer<f32>,
    l: usize,
    per: usize,
) -> Result<ViewMut<'_, f32>, ModelError> {
    Ok(buf.slice_mut(l * per..(l + 1) * per)?)
}

/// Sub-ranges of a fused `[q; k; v]` block whose rows are `q_dim`, `kv_dim`, `kv_dim` long,
/// `cols` wide (`cols = C` for weights, 1 for biases).
pub(crate) fn qkv_ranges(
    cfg: &ModelConfig,
    block: &Range<usize>,
    cols: usize,
) -> [Range<usize>; 3] {
    let (qd, kvd) = (cfg.q_dim(), cfg.kv_dim());
    let q = block.start..block.start + qd * cols;
    let k = q.end..q.end + kvd * cols;
    let v = k.end..k.end + kvd * cols;
    [q, k, v]
}

impl Model {
    /// Runs the forward pass of `batch`, filling `acts` (sized for `batch.len()` tokens).
    pub fn forward(&self, batch: &PackedBatch, acts: &mut Activations) -> Result<(), ModelError> {
        let cfg = self.config();
        let dev = self.device();
        let n = batch.len();
        if acts.n != n {
            return Err(ModelError::Config {
                field: "activations",
                msg: format!("sized for {} tokens, batch has {n}", acts.n),
            });
        }
        let (c, qd, kvd, im, voc) =
            (cfg.hidden_size, cfg.q_dim(), cfg.kv_dim(), cfg.intermediate_size, cfg.vocab_size);
        let (hq, hkv, hd) = (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim);
        let eps = cfg.rms_norm_eps;
        let p = self.params();
        let lay = self.layout();
        let w = |r: &Range<usize>| p.slice(r.clone());

        ops::embedding(
            dev,
            w(&lay.embed)?,
            batch.tokens(),
            layer_mut(&mut acts.resid, 0, n * c)?,
            n,
            voc,
            c,
        )?;
        let attn = PackedAttentionParams::new(hq, hkv, hd);
        for (l, lp) in lay.layers.iter().enumerate() {
            let a = &mut *acts;
            ops::rmsnorm(
                dev,
                layer(&a.resid, l, n * c)?,
                w(&lp.ln1)?,
                layer_mut(&mut a.ln1, l, n * c)?,
                Some(layer_mut(&mut a.rstd1, l, n)?),
                n,
                c,
                eps,
            )?;
            let [wq, wk, wv] = qkv_ranges(cfg, &lp.wqkv, c);
            let ln1 = layer(&a.ln1, l, n * c)?;
            ops::gemm(
                dev,
                ln1,
                w(&wq)?,
                layer_mut(&mut a.q, l, n * qd)?,
                &GemmSpec::linear(n, qd, c),
            )?;
            ops::gemm(
                dev,
                ln1,
                w(&wk)?,
                layer_mut(&mut a.k, l, n * kvd)?,
                &GemmSpec::linear(n, kvd, c),
            )?;
            ops::gemm(
                dev,
                ln1,
                w(&wv)?,
                layer_mut(&mut a.v, l, n * kvd)?,
                &GemmSpec::linear(n, kvd, c),
            )?;
            if let Some(b) = &lp.bqkv {
                let [bq, bk, bv] = qkv_ranges(cfg, b, 1);
                let ones = a.ones.view();
                let bias = |k: usize| GemmSpec::plain(n, k, 1).scaled(1.0, 1.0);
                ops::gemm(dev, ones, w(&bq)?, layer_mut(&mut a.q, l, n * qd)?, &bias(qd))?;
                ops::gemm(dev, ones, w(&bk)?, layer_mut(&mut a.k, l, n * kvd)?, &bias(kvd))?;
                ops::gemm(dev, ones, w(&bv)?, layer_mut(&mut a.v, l, n * kvd)?, &bias(kvd))?;
            }
            let qs = RopeShape::contiguous(n, hq, hd);
            let ks = RopeShape::contiguous(n, hkv, hd);
            ops::rope(
                dev,
                layer_mut(&mut a.q, l, n * qd)?,
                batch.positions(),
                self.inv_freq(),
                &qs,
                RopeDirection::Forward,
            )?;
            ops::rope(
                dev,
                layer_mut(&mut a.k, l, n * kvd)?,
                batch.positions(),
                self.inv_freq(),
                &ks,
                RopeDirection::Forward,
            )?;
            ops::packed_attention_fwd(
                dev,
                layer(&a.q, l, n * qd)?,
                layer(&a.k, l, n * kvd)?,
                layer(&a.v, l, n * kvd)?,
                batch.mask(),
                layer_mut(&mut a.att, l, n * qd)?,
                layer_mut(&mut a.lse, l, n * hq)?,
                &attn,
            )?;
            ops::gemm(
                dev,
                layer(&a.att, l, n * qd)?,
                w(&lp.wo)?,
                layer_mut(&mut a.mid, l, n * c)?,
                &GemmSpec::linear(n, c, qd),
            )?;
            ops::residual_add(
                dev,
                layer_mut(&mut a.mid, l, n * c)?,
                layer(&a.resid, l, n * c)?,
                n * c,
            )?;
            ops::rmsnorm(
                dev,
                layer(&a.mid, l, n * c)?,
                w(&lp.ln2)?,
                layer_mut(&mut a.ln2, l, n * c)?,
                Some(layer_mut(&mut a.rstd2, l, n)?),
                n,
                c,
                eps,
            )?;
            let (wg, wu) = (
                lp.wgate_up.start..lp.wgate_up.start + im * c,
                lp.wgate_up.start + im * c..lp.wgate_up.end,
            );
            let ln2 = layer(&a.ln2, l, n * c)?;
            ops::gemm(
                dev,
                ln2,
                w(&wg)?,
                layer_mut(&mut a.gate, l, n * im)?,
                &GemmSpec::linear(n, im, c),
            )?;
            ops::gemm(
                dev,
                ln2,
                w(&wu)?,
                layer_mut(&mut a.up, l, n * im)?,
                &GemmSpec::linear(n, im, c),
            )?;
            ops::swiglu(
                dev,
                layer(&a.gate, l, n * im)?,
                layer(&a.up, l, n * im)?,
                layer_mut(&mut a.act, l, n * im)?,
                n * im,
            )?;
            ops::gemm(
                dev,
                layer(&a.act, l, n * im)?,
                w(&lp.wdown)?,
                layer_mut(&mut a.resid, l + 1, n * c)?,
                &GemmSpec::linear(n, c, im),
            )?;
            ops::residual_add(
                dev,
                layer_mut(&mut a.resid, l + 1, n * c)?,
                layer(&a.mid, l, n * c)?,
                n * c,
            )?;
        }
        let nl = lay.layers.len();
        ops::rmsnorm(
            dev,
            layer(&acts.resid, nl, n * c)?,
            w(&lay.final_norm)?,
            acts.lnf.view_mut(),
            Some(acts.rstdf.view_mut()),
            n,
            c,
            eps,
        )?;
        ops::gemm(
            dev,
            acts.lnf.view(),
            w(&lay.lm_head)?,
            acts.logits.view_mut(),
            &GemmSpec::linear(n, voc, c),
        )?;
        Ok(())
    }
}
