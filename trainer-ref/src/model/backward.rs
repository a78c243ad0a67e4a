//! The backward pass, the exact reverse of [`Model::forward`]: given `dlogits` (the loss
//! gradient with respect to the logits, from the log-prob backward), it ACCUMULATES parameter
//! gradients into a buffer of the parameter layout (llm.c: zero it before each step).
//! Activation gradients live in [`GradScratch`], reused across steps.
//!
//! Per layer, in reverse (d· is the gradient of ·):
//! ```text
//! dact  = dresid · Wdown ;           dWdown += dresidᵀ · act
//! dgate, dup = swiglu_bwd(dact)
//! dln2  = dgate · Wg + dup · Wu ;    dWg += dgateᵀ · ln2 ;  dWu += dupᵀ · ln2
//! dresid += rmsnorm_bwd(dln2)        (now the gradient of mid: the residual passes through)
//! datt  = dresid · Wo ;              dWo += dresidᵀ · att
//! dq, dk, dv = attention_bwd(datt);  RoPE⁻¹ on dq, dk (a rotation's transpose is its inverse)
//! dln1  = dq·Wq + dk·Wk + dv·Wv ;    dW{q,k,v} += d{q,k,v}ᵀ · ln1 ;  db += onesᵀ · d{q,k,v}
//! dresid += rmsnorm_bwd(dln1)        (now the gradient of resid[l])
//! ```
//! With tied embeddings the `lm_head` and `embed_tokens` gradients land in the same range.

use std::ops::Range;

use treepo_kernels::ops::{
    self, GemmSpec, PackedAttentionGrads, PackedAttentionParams, PackedAttentionSaved,
    RopeDirection, RopeShape, Transpose,
};
use treepo_kernels::{Buffer, Device, View};

use super::forward::{Activations, PackedBatch, layer, qkv_ranges};
use super::{Model, ModelConfig, ModelError};

/// Activation-gradient buffers for N tokens.
pub struct GradScratch {
    n: usize,
    dresid: Buffer<f32>,
    dln: Buffer<f32>,
    datt: Buffer<f32>,
    dq: Buffer<f32>,
    dk: Buffer<f32>,
    dv: Buffer<f32>,
    delta: Buffer<f32>,
    dact: Buffer<f32>,
    dgate: Buffer<f32>,
    dup: Buffer<f32>,
}

impl GradScratch {
    /// Buffers for `n` tokens.
    pub fn new(dev: &Device, cfg: &ModelConfig, n: usize) -> Result<Self, ModelError> {
        let (c, qd, kvd, i) = (cfg.hidden_size, cfg.q_dim(), cfg.kv_dim(), cfg.intermediate_size);
        let z = |len: usize| dev.zeros::<f32>(len);
        Ok(GradScratch {
            n,
            dresid: z(n * c)?,
            dln: z(n * c)?,
            datt: z(n * qd)?,
            dq: z(n * qd)?,
            dk: z(n * kvd)?,
            dv: z(n * kvd)?,
            delta: z(n * cfg.num_attention_heads)?,
            dact: z(n * i)?,
            dgate: z(n * i)?,
            dup: z(n * i)?,
        })
    }
}

/// `C[m,n] += A[k,m]ᵀ · B[k,n]` — a weight gradient `dW += dYᵀ · X`.
fn acc_tn(m: usize, n: usize, k: usize) -> GemmSpec {
    GemmSpec::new(m, n, k, Transpose::T, Transpose::N).scaled(1.0, 1.0)
}

impl Model {
    /// Accumulates the gradients of the loss into `dparams` (layout of [`Model::params`]),
    /// given the forward activations `acts` of `batch` and `dlogits [N, V]`.
    pub fn backward(
        &self,
        batch: &PackedBatch,
        acts: &Activations,
        dlogits: View<'_, f32>,
        scratch: &mut GradScratch,
        dparams: &mut Buffer<f32>,
    ) -> Result<(), ModelError> {
        let cfg = self.config();
        let dev = self.device();
        let n = batch.len();
        if acts.n != n || scratch.n != n {
            return Err(ModelError::Config {
                field: "backward",
                msg: format!("buffers sized for {} / {} tokens, batch has {n}", acts.n, scratch.n),
            });
        }
        let (c, qd, kvd, im, voc) =
            (cfg.hidden_size, cfg.q_dim(), cfg.kv_dim(), cfg.intermediate_size, cfg.vocab_size);
        let (hq, hkv, hd) = (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim);
        let lay = self.layout();
        let p = self.params();
        let w = |r: &Range<usize>| p.slice(r.clone());
        let s = &mut *scratch;

        // logits = lnf · Hᵀ
        ops::gemm(
            dev,
            dlogits,
            acts.lnf.view(),
            dparams.slice_mut(lay.lm_head.clone())?,
            &acc_tn(voc, c, n),
        )?;
        ops::gemm(dev, dlogits, w(&lay.lm_head)?, s.dln.view_mut(), &GemmSpec::plain(n, c, voc))?;
        dev.write(&mut s.dresid, &vec![0f32; n * c])?;
        let nl = lay.layers.len();
        ops::rmsnorm_bwd(
            dev,
            s.dln.view(),
            layer(&acts.resid, nl, n * c)?,
            w(&lay.final_norm)?,
            acts.rstdf.view(),
            s.dresid.view_mut(),
            dparams.slice_mut(lay.final_norm.clone())?,
            n,
            c,
        )?;
        let attn = PackedAttentionParams::new(hq, hkv, hd);
        for (l, lp) in lay.layers.iter().enumerate().rev() {
            // resid[l+1] = mid + act · Wdownᵀ
            ops::gemm(
                dev,
                s.dresid.view(),
                w(&lp.wdown)?,
                s.dact.view_mut(),
                &GemmSpec::plain(n, im, c),
            )?;
            ops::gemm(
                dev,
                s.dresid.view(),
                layer(&acts.act, l, n * im)?,
                dparams.slice_mut(lp.wdown.clone())?,
                &acc_tn(c, im, n),
            )?;
            ops::swiglu_bwd(
                dev,
                s.dact.view(),
                layer(&acts.gate, l, n * im)?,
                layer(&acts.up, l, n * im)?,
                s.dgate.view_mut(),
                s.dup.view_mut(),
                n * im,
            )?;
            let (wg, wu) = (
                lp.wgate_up.start..lp.wgate_up.start + im * c,
                lp.wgate_up.start + im * c..lp.wgate_up.end,
            );
            ops::gemm(dev, s.dgate.view(), w(&wg)?, s.dln.view_mut(), &GemmSpec::plain(n, c, im))?;
            ops::gemm(
                dev,
                s.dup.view(),
                w(&wu)?,
                s.dln.view_mut(),
                &GemmSpec::plain(n, c, im).scaled(1.0, 1.0),
            )?;
            let ln2 = layer(&acts.ln2, l, n * c)?;
            ops::gemm(dev, s.dgate.view(), ln2, dparams.slice_mut(wg)?, &acc_tn(im, c, n))?;
            ops::gemm(dev, s.dup.view(), ln2, dparams.slice_mut(wu)?, &acc_tn(im, c, n))?;
            ops::rmsnorm_bwd(
                dev,
                s.dln.view(),
                layer(&acts.mid, l, n * c)?,
                w(&lp.ln2)?,
                layer(&acts.rstd2, l, n)?,
                s.dresid.view_mut(),
                dparams.slice_mut(lp.ln2.clone())?,
                n,
                c,
            )?;
            // mid = resid[l] + att · Woᵀ
            ops::gemm(
                dev,
                s.dresid.view(),
                w(&lp.wo)?,
                s.datt.view_mut(),
                &GemmSpec::plain(n, qd, c),
            )?;
            ops::gemm(
                dev,
                s.dresid.view(),
                layer(&acts.att, l, n * qd)?,
                dparams.slice_mut(lp.wo.clone())?,
                &acc_tn(c, qd, n),
            )?;
            ops::packed_attention_bwd(
                dev,
                PackedAttentionSaved {
                    q: layer(&acts.q, l, n * qd)?,
                    k: layer(&acts.k, l, n * kvd)?,
                    v: layer(&acts.v, l, n * kvd)?,
                    o: layer(&acts.att, l, n * qd)?,
                    lse: layer(&acts.lse, l, n * hq)?,
                },
                s.datt.view(),
                batch.mask(),
                PackedAttentionGrads {
                    dq: s.dq.view_mut(),
                    dk: s.dk.view_mut(),
                    dv: s.dv.view_mut(),
                    delta: s.delta.view_mut(),
                },
                &attn,
            )?;
            let qs = RopeShape::contiguous(n, hq, hd);
            let ks = RopeShape::contiguous(n, hkv, hd);
            ops::rope(
                dev,
                s.dq.view_mut(),
                batch.positions(),
                self.inv_freq(),
                &qs,
                RopeDirection::Inverse,
            )?;
            ops::rope(
                dev,
                s.dk.view_mut(),
                batch.positions(),
                self.inv_freq(),
                &ks,
                RopeDirection::Inverse,
            )?;
            let [wq, wk, wv] = qkv_ranges(cfg, &lp.wqkv, c);
            ops::gemm(dev, s.dq.view(), w(&wq)?, s.dln.view_mut(), &GemmSpec::plain(n, c, qd))?;
            ops::gemm(
                dev,
                s.dk.view(),
                w(&wk)?,
                s.dln.view_mut(),
                &GemmSpec::plain(n, c, kvd).scaled(1.0, 1.0),
            )?;
            ops::gemm(
                dev,
                s.dv.view(),
                w(&wv)?,
                s.dln.view_mut(),
                &GemmSpec::plain(n, c, kvd).scaled(1.0, 1.0),
            )?;
            let ln1 = layer(&acts.ln1, l, n * c)?;
            ops::gemm(dev, s.dq.view(), ln1, dparams.slice_mut(wq)?, &acc_tn(qd, c, n))?;
            ops::gemm(dev, s.dk.view(), ln1, dparams.slice_mut(wk)?, &acc_tn(kvd, c, n))?;
            ops::gemm(dev, s.dv.view(), ln1, dparams.slice_mut(wv)?, &acc_tn(kvd, c, n))?;
            if let Some(b) = &lp.bqkv {
                let [bq, bk, bv] = qkv_ranges(cfg, b, 1);
                let ones = acts.ones.view();
                ops::gemm(dev, ones, s.dq.view(), dparams.slice_mut(bq)?, &acc_tn(1, qd, n))?;
                ops::gemm(dev, ones, s.dk.view(), dparams.slice_mut(bk)?, &acc_tn(1, kvd, n))?;
                ops::gemm(dev, ones, s.dv.view(), dparams.slice_mut(bv)?, &acc_tn(1, kvd, n))?;
            }
            ops::rmsnorm_bwd(
                dev,
                s.dln.view(),
                layer(&acts.resid, l, n * c)?,
                w(&lp.ln1)?,
                layer(&acts.rstd1, l, n)?,
                s.dresid.view_mut(),
                dparams.slice_mut(lp.ln1.clone())?,
                n,
                c,
            )?;
        }
        ops::embedding_bwd(
            dev,
            s.dresid.view(),
            batch.tokens(),
            dparams.slice_mut(lay.embed.clone())?,
            n,
            voc,
            c,
        )?;
        Ok(())
    }
}
