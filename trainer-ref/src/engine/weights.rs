//! The engine's view of the model: its dimensions ([`Dims`]) and the weights the KV-cached
//! forward multiplies by ([`EngineWeights`]), laid out once, at construction, for the backend.
//!
//! *Head padding.* The GPU decode kernels are built for head sizes 64 and 128. A model with
//! another `head_dim` (the tiny demo model has 32) runs them at an attention head size
//! `da >= head_dim` by zero-padding: each head's rows of `q_proj`/`k_proj`/`v_proj` (and biases)
//! get `da - head_dim` zero rows, `o_proj` gets zero columns. q, k and v then carry exact zeros
//! in the padded dimensions (RoPE rotates only the first `head_dim`), so `q·k`, the softmax and
//! the output are unchanged, and the padded output columns meet zero weights.
//!
//! *Layout.* Each linear weight is the `B` of `Y = X·op(B)`: PyTorch's `[out, in]`
//! (`trans_b = T`) or transposed `[in, out]` (`trans_b = N`). On the CPU the `gemm` crate (with
//! its AVX-512 kernels, feature `x86-v4`) runs `[in, out]` much faster at every batch of 4 rows
//! and more (2-core VM, idle, the `engine_step` bench's `GEMM m=…` lines, GFLOP/s `[out, in]`
//! vs `[in, out]` at m = 64: `[128,128]` 121 vs 246, `[384,128]` 137 vs 151, `[128,384]` 126 vs
//! 166, `[512,512]` 85 vs 335, `[1536,512]` 138 vs 237, `[512,1536]` 82 vs 257; at m = 4 the
//! `[out, in]` path falls to 5–24); only single-row GEMVs (m = 1) are ~20 % faster `[out, in]`.
//! So the CPU engine stores every matrix of at most [`KN_MAX`] elements transposed, once, here
//! (a second copy, in host memory: the engine's weights take twice the model's memory) and
//! keeps larger ones (a huge LM head) in the model's layout; GPU backends keep `[out, in]`
//! (cuBLAS and the WGSL kernel take either) and copy only for head padding.
//!
//! *Panel order.* Where the CPU runs the weight GEMM (`ops::panels_supported`: AVX-512F) and
//! `EngineConfig::cpu_weight_panels` is on (the default), an
//! `[in, out]` linear weight of at least [`PANELS_MIN`] elements with `out % 16 == 0` is stored
//! in its panel order (`ops::pack_panels`) and multiplied with `GemmSpec::b_panels`: the `gemm`
//! crate would repack it on every call. Smaller weights stay in L2, where the crate's
//! micro-kernel is faster than ours and its per-call pack is cheap (the measurements are in
//! `treepo_kernels::cpu::fast::weight_gemm` and `docs/engine.md`). The demo model's matrices
//! are all below the threshold, so its results are unchanged by this layout.
//!
//! *Fusion.* q|k|v and gate|up stay adjacent (each block laid out on its own, same layout):
//! the forward computes gate and up — and q and k|v when `hq·da == 2·hkv·da` — with one
//! batched GEMM (batch 2, the activations shared through `stride_a = 0`): one launch.
//!
//! Matrices that keep the model's layout at the model's head size are views into the model's
//! parameter buffer; the others live in one engine-owned copy.

use std::ops::Range;

use treepo_kernels::ops::{self, GemmSpec, Transpose};
use treepo_kernels::{BackendKind, Buffer, KernelError, View};

use crate::model::{Model, ModelConfig};

/// The largest matrix (elements) the CPU engine stores `[in, out]` (see the module docs).
pub(crate) const KN_MAX: usize = 1 << 24; // 64 MiB of f32

/// The smallest matrix (elements) the CPU engine stores in panel order (see the module docs).
pub(crate) const PANELS_MIN: usize = 1 << 17; // 512 KiB of f32

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

    /// Whether q and k|v have the same width (one batched GEMM computes both).
    pub fn qkv_batched(&self) -> bool {
        self.qa() == self.kva2()
    }
}

/// One weight matrix (or two adjacent ones of the same shape and layout).
#[derive(Clone, Debug)]
pub(crate) struct Mat {
    /// In the engine's copy (`true`) or the model's parameters.
    own: bool,
    /// Element range (both matrices when adjacent).
    pub at: Range<usize>,
    /// `T`: stored `[out, in]`; `N`: stored `[in, out]`.
    pub trans_b: Transpose,
    /// `[in, out]` in the CPU weight GEMM's panel order (`ops::pack_panels`; `trans_b` is N).
    pub panels: bool,
}

impl Mat {
    /// `Y[m, n] = X[m, k] · W` for this matrix.
    pub fn linear(&self, m: usize, n: usize, k: usize) -> GemmSpec {
        let spec = GemmSpec::new(m, n, k, Transpose::N, self.trans_b);
        if self.panels { spec.with_b_panels() } else { spec }
    }
}

/// One layer's weights (the forward splits two-block matrices at the first block's end).
#[derive(Clone, Debug)]
pub(crate) struct LayerWeights {
    /// q then k|v: `[hq·da, C]` then `[2·hkv·da, C]` (or each transposed), each block whole.
    pub wqkv: Mat,
    /// q bias then k|v bias: `[hq·da + 2·hkv·da]`.
    pub bqkv: Option<Mat>,
    /// `[C, hq·da]` (or transposed).
    pub wo: Mat,
    /// gate then up: `[I, C]` each (or each transposed).
    pub wgu: Mat,
    /// `[C, I]` (or transposed).
    pub wdown: Mat,
}

/// The weights of the forward pass (see the module docs).
pub(crate) struct EngineWeights {
    copy: Option<Buffer<f32>>,
    pub layers: Vec<LayerWeights>,
    /// `[V, C]` (or transposed).
    pub lm_head: Mat,
}

/// Host staging of the engine's copy.
struct Builder<'h> {
    host: &'h [f32],
    out: Vec<f32>,
    /// Store matrices of at most [`KN_MAX`] elements `[in, out]` (else as the model has them).
    kn: bool,
    /// Store those `[in, out]` matrices in panel order where `out % 16 == 0` (the CPU has the
    /// weight GEMM's fast kernel: `ops::panels_supported`).
    panels: bool,
}

impl Builder<'_> {
    /// Appends `blocks` matrices of `cols` columns, adjacent, all in one layout. A block is a
    /// list of segments `(at, count)`: `count·unit` elements of the model's host copy from
    /// `at`, or `count·unit` zeros where `at == usize::MAX` (head padding). A linear weight
    /// (`linear`) may be packed in panel order; a bias (a plain GEMM's `[1, width]` B) is not.
    fn push(
        &mut self,
        blocks: &[Vec<(usize, usize)>],
        unit: usize,
        cols: usize,
        linear: bool,
    ) -> Result<Mat, KernelError> {
        let start = self.out.len();
        let len = |segs: &[(usize, usize)]| segs.iter().map(|s| s.1 * unit).sum::<usize>();
        let largest = blocks.iter().map(|b| len(b)).max().unwrap_or(0);
        let kn = self.kn && largest <= KN_MAX;
        let panels = kn
            && linear
            && self.panels
            && largest >= PANELS_MIN
            && blocks.iter().all(|b| (len(b) / cols).is_multiple_of(16));
        for segs in blocks {
            let mut m: Vec<f32> = Vec::with_capacity(len(segs));
            for &(at, count) in segs {
                if at == usize::MAX {
                    m.resize(m.len() + count * unit, 0.0);
                } else {
                    m.extend_from_slice(&self.host[at..at + count * unit]);
                }
            }
            if kn {
                let rows = m.len() / cols;
                let m = &m;
                let t: Vec<f32> =
                    (0..cols).flat_map(|j| (0..rows).map(move |r| m[r * cols + j])).collect();
                if panels {
                    self.out.extend(ops::pack_panels(&t, cols, rows)?);
                } else {
                    self.out.extend(t);
                }
            } else {
                self.out.extend_from_slice(&m);
            }
        }
        let trans_b = if kn { Transpose::N } else { Transpose::T };
        Ok(Mat { own: true, at: start..self.out.len(), trans_b, panels })
    }
}

impl EngineWeights {
    /// The weights of `model` at attention head size `d.da`, laid out for `backend` (a copy
    /// made once here where the layout or the padding differs from the model's buffer);
    /// `panels`: the CPU may use panel order (`EngineConfig::cpu_weight_panels`).
    pub fn new(
        model: &Model,
        d: &Dims,
        backend: BackendKind,
        panels: bool,
    ) -> Result<Self, KernelError> {
        let (c, im, lay) = (d.c, d.im, model.layout());
        let kn = backend == BackendKind::Cpu;
        let view = |r: &Range<usize>| Mat {
            own: false,
            at: r.clone(),
            trans_b: Transpose::T,
            panels: false,
        };
        if d.da == d.hd && !kn {
            let layers = lay
                .layers
                .iter()
                .map(|lp| LayerWeights {
                    wqkv: view(&lp.wqkv),
                    bqkv: lp.bqkv.as_ref().map(view),
                    wo: view(&lp.wo),
                    wgu: view(&lp.wgate_up),
                    wdown: view(&lp.wdown),
                })
                .collect();
            return Ok(EngineWeights { copy: None, layers, lm_head: view(&lay.lm_head) });
        }
        let host = model.device().download(model.params())?;
        let panels = kn && panels && ops::panels_supported(model.device());
        let mut b = Builder { host: &host, out: Vec::new(), kn, panels };
        let (qd, kvd, pad) = (d.hq * d.hd, d.hkv * d.hd, d.da - d.hd);
        // The row segments of `heads` heads of `hd` rows at `src` (row width `cols`), each
        // followed by `pad` zero rows.
        let heads = |src: usize, heads: usize, cols: usize| -> Vec<(usize, usize)> {
            let mut v = Vec::new();
            for h in 0..heads {
                v.push((src + h * d.hd * cols, d.hd));
                if pad > 0 {
                    v.push((usize::MAX, pad));
                }
            }
            v
        };
        let mut layers = Vec::with_capacity(lay.layers.len());
        // Whether a matrix of `elems` elements is stored `[in, out]` (as `push` decides).
        let small = |elems: usize| kn && elems <= KN_MAX;
        for lp in &lay.layers {
            let s = lp.wqkv.start;
            let q = heads(s, d.hq, c);
            let mut kv = heads(s + qd * c, d.hkv, c);
            kv.extend(heads(s + (qd + kvd) * c, d.hkv, c));
            // Views where neither padding nor the layout asks for a copy.
            let wqkv = if pad == 0 && !small(qd.max(2 * kvd) * c) {
                view(&lp.wqkv)
            } else {
                b.push(&[q, kv], c, c, true)?
            };
            // Biases are `[1, width]` rows of a plain GEMM (`ones · b`); layout-free.
            let bqkv = lp
                .bqkv
                .as_ref()
                .map(|r| {
                    if pad == 0 {
                        return Ok(Mat { trans_b: Transpose::N, ..view(r) });
                    }
                    let mut v = heads(r.start, d.hq, 1);
                    v.extend(heads(r.start + qd, d.hkv, 1));
                    v.extend(heads(r.start + qd + kvd, d.hkv, 1));
                    Ok::<_, KernelError>(Mat {
                        trans_b: Transpose::N,
                        ..b.push(&[v], 1, 1, false)?
                    })
                })
                .transpose()?;
            // o_proj [C, hq·hd] → [C, hq·da]: each row's head blocks padded with zero columns.
            let wo_rows: Vec<(usize, usize)> =
                (0..c).flat_map(|r| heads(lp.wo.start + r * qd, d.hq, 1)).collect();
            let wo = if pad == 0 && !small(qd * c) {
                view(&lp.wo)
            } else {
                b.push(&[wo_rows], 1, d.qa(), true)?
            };
            let wgu = if small(im * c) {
                let (g, u) = (lp.wgate_up.start, lp.wgate_up.start + im * c);
                b.push(&[vec![(g, im)], vec![(u, im)]], c, c, true)?
            } else {
                view(&lp.wgate_up)
            };
            let wdown = if small(im * c) {
                b.push(&[vec![(lp.wdown.start, c)]], im, im, true)?
            } else {
                view(&lp.wdown)
            };
            layers.push(LayerWeights { wqkv, bqkv, wo, wgu, wdown });
        }
        let lm_head = if small(d.vocab * c) {
            b.push(&[vec![(lay.lm_head.start, d.vocab)]], c, c, true)?
        } else {
            view(&lay.lm_head)
        };
        let copy = if b.out.is_empty() { None } else { Some(model.device().upload(&b.out)?) };
        Ok(EngineWeights { copy, layers, lm_head })
    }

    /// The view of `m` (in the copy or the model's parameters).
    pub fn get<'a>(&'a self, model: &'a Model, m: &Mat) -> Result<View<'a, f32>, KernelError> {
        match (&self.copy, m.own) {
            (Some(b), true) => b.slice(m.at.clone()),
            _ => model.params().slice(m.at.clone()),
        }
    }
}
