//! The velocity network `v_θ(x_t, t, class)`: a residual SwiGLU MLP on the `treepo-kernels` ops
//! (GEMM, RMSNorm, SwiGLU and their backward ops), so it runs on every backend the kernels run on.
//!
//! ```text
//! f   = [x_t (DIM) | sin/cos(π·2^j·t), j < 8 (16) | one-hot(class) | 1]      (host-built)
//! h_0 = f·W_inᵀ
//! h_{b+1} = h_b + swiglu(n_b·W_gᵀ, n_b·W_uᵀ)·W_dᵀ,   n_b = rmsnorm(h_b; g_b)    (b < blocks)
//! v   = rmsnorm(h_L; g_f)·W_outᵀ
//! ```
//!
//! The constant-1 input plays the bias of `W_in`; the other layers have none (as in Llama). All
//! parameters live in one flat device buffer in [`NetLayout`] order, so one AdamW call updates
//! them and a checkpoint is one list of named tensors.

use std::ops::Range;

use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};
use treepo_kernels::ops::{self, GemmSpec, Transpose};
use treepo_kernels::{Buffer, Device};

use crate::data::{DIM, NUM_CLASSES};
use crate::{FlowError, Result};

/// Time features: `sin` and `cos` of `π·2^j·t` for `j < TIME_FREQS`.
pub const TIME_FREQS: usize = 8;
/// Width of the host-built input row.
pub const IN_DIM: usize = DIM + 2 * TIME_FREQS + NUM_CLASSES + 1;
const NORM_EPS: f32 = 1e-5;

/// Network shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetConfig {
    /// Residual width `H`.
    pub hidden: usize,
    /// SwiGLU inner width `F`.
    pub ffn: usize,
    /// Residual blocks.
    pub blocks: usize,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig { hidden: 128, ffn: 256, blocks: 2 }
    }
}

impl NetConfig {
    /// Every width must be > 0 (blocks may be 0) and the parameter count must fit the kernels'
    /// 32-bit sizes.
    pub fn validate(&self) -> Result<()> {
        if self.hidden == 0 || self.ffn == 0 {
            return Err(FlowError::Config(format!(
                "model.hidden = {} and model.ffn = {} must both be > 0",
                self.hidden, self.ffn
            )));
        }
        let n = NetLayout::new(self).len;
        if n > u32::MAX as usize / 4 {
            return Err(FlowError::Config(format!("model has {n} parameters; at most 2^30")));
        }
        Ok(())
    }
}

/// One named tensor of the flat parameter buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tensor {
    /// Its name in checkpoints.
    pub name: String,
    /// Row-major shape.
    pub shape: Vec<usize>,
    /// Its elements in the flat buffer.
    pub range: Range<usize>,
    /// Whether AdamW's weight decay applies (matrices yes, norm gains no).
    pub decay: bool,
}

/// Where each tensor lives in the flat buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetLayout {
    /// The tensors, in buffer order.
    pub tensors: Vec<Tensor>,
    /// Total elements.
    pub len: usize,
}

/// Indices into [`NetLayout::tensors`] of one block.
#[derive(Clone, Copy, Debug)]
struct BlockIds {
    norm: usize,
    gate: usize,
    up: usize,
    down: usize,
}

impl NetLayout {
    /// The layout of `cfg`: `w_in`, then per block `norm, w_gate, w_up, w_down`, then `norm_f`,
    /// `w_out`.
    pub fn new(cfg: &NetConfig) -> Self {
        let (h, f) = (cfg.hidden, cfg.ffn);
        let mut tensors = Vec::new();
        let mut len = 0;
        let mut push = |name: String, shape: Vec<usize>, decay: bool| {
            let n: usize = shape.iter().product();
            tensors.push(Tensor { name, shape, range: len..len + n, decay });
            len += n;
        };
        push("w_in".into(), vec![h, IN_DIM], true);
        for b in 0..cfg.blocks {
            push(format!("blocks.{b}.norm"), vec![h], false);
            push(format!("blocks.{b}.w_gate"), vec![f, h], true);
            push(format!("blocks.{b}.w_up"), vec![f, h], true);
            push(format!("blocks.{b}.w_down"), vec![h, f], true);
        }
        push("norm_f".into(), vec![h], false);
        push("w_out".into(), vec![DIM, h], true);
        NetLayout { tensors, len }
    }

    fn block(&self, b: usize) -> BlockIds {
        let base = 1 + 4 * b;
        BlockIds { norm: base, gate: base + 1, up: base + 2, down: base + 3 }
    }

    fn range(&self, i: usize) -> Range<usize> {
        self.tensors[i].range.clone()
    }
}

/// What a forward pass keeps for its backward pass.
pub struct Activations {
    rows: usize,
    input: Buffer<f32>,
    /// `h_b` for `b ≤ blocks` (block inputs, then the final residual).
    resid: Vec<Buffer<f32>>,
    /// Per block: normed input, its rstd, gate, up, swiglu output.
    normed: Vec<Buffer<f32>>,
    rstd: Vec<Buffer<f32>>,
    gate: Vec<Buffer<f32>>,
    up: Vec<Buffer<f32>>,
    act: Vec<Buffer<f32>>,
    final_normed: Buffer<f32>,
    final_rstd: Buffer<f32>,
    /// The velocity, `[rows, DIM]`.
    pub velocity: Buffer<f32>,
}

/// The network: its shape, its layout and its parameters on a device.
pub struct VelocityNet {
    /// Shape.
    pub config: NetConfig,
    /// Parameter layout.
    pub layout: NetLayout,
    /// Flat parameters.
    pub params: Buffer<f32>,
    dev: Device,
}

/// One host-built input row: `x_t`, the time features, the class one-hot and the constant 1.
pub fn input_row(x: &[f32], t: f32, class: usize, out: &mut [f32]) {
    out[..DIM].copy_from_slice(x);
    for j in 0..TIME_FREQS {
        let a = std::f32::consts::PI * (1u32 << j) as f32 * t;
        out[DIM + 2 * j] = a.sin();
        out[DIM + 2 * j + 1] = a.cos();
    }
    let c = DIM + 2 * TIME_FREQS;
    out[c..c + NUM_CLASSES].fill(0.0);
    out[c + class] = 1.0;
    out[IN_DIM - 1] = 1.0;
}

impl VelocityNet {
    /// A freshly initialised network: matrices `N(0, 1/fan_in)`, the output matrix scaled by
    /// 0.1 (a near-zero initial velocity), norm gains 1. Deterministic in `seed`.
    pub fn init(dev: &Device, config: NetConfig, seed: u64) -> Result<Self> {
        config.validate()?;
        let layout = NetLayout::new(&config);
        let mut host = vec![0f32; layout.len];
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        for t in &layout.tensors {
            if t.shape.len() == 1 {
                host[t.range.clone()].fill(1.0);
                continue;
            }
            let fan_in = t.shape[1] as f32;
            let gain = if t.name == "w_out" { 0.1 } else { 1.0 };
            let normal = Normal::new(0.0, gain / fan_in.sqrt())
                .map_err(|e| FlowError::Config(format!("init: {e}")))?;
            for v in &mut host[t.range.clone()] {
                *v = normal.sample(&mut rng);
            }
        }
        Self::from_host(dev, config, &host)
    }

    /// A network with the given flat parameters (length checked against the layout).
    pub fn from_host(dev: &Device, config: NetConfig, params: &[f32]) -> Result<Self> {
        config.validate()?;
        let layout = NetLayout::new(&config);
        if params.len() != layout.len {
            return Err(FlowError::Shape(format!(
                "{} parameters given for a network of {}",
                params.len(),
                layout.len
            )));
        }
        Ok(VelocityNet { config, layout, params: dev.upload(params)?, dev: dev.clone() })
    }

    /// The device the parameters live on.
    pub fn device(&self) -> &Device {
        &self.dev
    }

    /// The parameters, on the host.
    pub fn host_params(&self) -> Result<Vec<f32>> {
        Ok(self.dev.download(&self.params)?)
    }

    /// Forward pass over `rows` host-built input rows (`input.len() == rows·IN_DIM`).
    pub fn forward(&self, input: &[f32], rows: usize) -> Result<Activations> {
        if input.len() != rows * IN_DIM {
            return Err(FlowError::Shape(format!(
                "{} input values for {rows} rows of {IN_DIM}",
                input.len()
            )));
        }
        let (dev, l, p) = (&self.dev, &self.layout, &self.params);
        let (h, f) = (self.config.hidden, self.config.ffn);
        let input = dev.upload(input)?;
        let mut h0 = dev.zeros::<f32>(rows * h)?;
        ops::gemm(dev, &input, p.slice(l.range(0))?, &mut h0, &GemmSpec::linear(rows, h, IN_DIM))?;
        let mut resid = vec![h0];
        let (mut normed, mut rstd, mut gate, mut up, mut act) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for b in 0..self.config.blocks {
            let ids = l.block(b);
            let x = &resid[b];
            let mut n = dev.zeros::<f32>(rows * h)?;
            let mut r = dev.zeros::<f32>(rows)?;
            ops::rmsnorm(
                dev,
                x,
                p.slice(l.range(ids.norm))?,
                &mut n,
                Some(r.view_mut()),
                rows,
                h,
                NORM_EPS,
            )?;
            let mut g = dev.zeros::<f32>(rows * f)?;
            let mut u = dev.zeros::<f32>(rows * f)?;
            ops::gemm(dev, &n, p.slice(l.range(ids.gate))?, &mut g, &GemmSpec::linear(rows, f, h))?;
            ops::gemm(dev, &n, p.slice(l.range(ids.up))?, &mut u, &GemmSpec::linear(rows, f, h))?;
            let mut a = dev.zeros::<f32>(rows * f)?;
            ops::swiglu(dev, &g, &u, &mut a, rows * f)?;
            // h_{b+1} = h_b + a·W_dᵀ (a copy of h_b, then the GEMM with beta = 1).
            let mut next = dev.zeros::<f32>(rows * h)?;
            ops::residual_add(dev, &mut next, x, rows * h)?;
            let spec = GemmSpec::linear(rows, h, f).scaled(1.0, 1.0);
            ops::gemm(dev, &a, p.slice(l.range(ids.down))?, &mut next, &spec)?;
            resid.push(next);
            normed.push(n);
            rstd.push(r);
            gate.push(g);
            up.push(u);
            act.push(a);
        }
        let nf_id = 1 + 4 * self.config.blocks;
        let last = &resid[self.config.blocks]; // h_L: h_0 plus one entry per block
        let mut final_normed = dev.zeros::<f32>(rows * h)?;
        let mut final_rstd = dev.zeros::<f32>(rows)?;
        ops::rmsnorm(
            dev,
            last,
            p.slice(l.range(nf_id))?,
            &mut final_normed,
            Some(final_rstd.view_mut()),
            rows,
            h,
            NORM_EPS,
        )?;
        let mut velocity = dev.zeros::<f32>(rows * DIM)?;
        let spec = GemmSpec::linear(rows, DIM, h);
        ops::gemm(dev, &final_normed, p.slice(l.range(nf_id + 1))?, &mut velocity, &spec)?;
        Ok(Activations {
            rows,
            input,
            resid,
            normed,
            rstd,
            gate,
            up,
            act,
            final_normed,
            final_rstd,
            velocity,
        })
    }

    /// The velocity of `rows` input rows, on the host (`[rows, DIM]`).
    pub fn velocity(&self, input: &[f32], rows: usize) -> Result<Vec<f32>> {
        let acts = self.forward(input, rows)?;
        Ok(self.dev.download(&acts.velocity)?)
    }

    /// Backward pass: ADDS `dL/dθ` to `grads` (a buffer of the layout's length) given
    /// `dL/dv` (`[rows, DIM]`, host) for the rows of `acts`.
    pub fn backward(&self, acts: &Activations, dv: &[f32], grads: &mut Buffer<f32>) -> Result<()> {
        let rows = acts.rows;
        if dv.len() != rows * DIM || grads.len() != self.layout.len {
            return Err(FlowError::Shape(format!(
                "backward: {} velocity gradients for {rows} rows of {DIM}, {} gradients for {} \
                 parameters",
                dv.len(),
                grads.len(),
                self.layout.len
            )));
        }
        if acts.resid.len() != self.config.blocks + 1
            || acts.final_normed.len() != rows * self.config.hidden
            || acts.act.first().is_some_and(|a| a.len() != rows * self.config.ffn)
        {
            return Err(FlowError::Shape(
                "backward: the activations come from a network of another shape".into(),
            ));
        }
        let (dev, l, p) = (&self.dev, &self.layout, &self.params);
        let (h, f) = (self.config.hidden, self.config.ffn);
        let dv = dev.upload(dv)?;
        let acc = |m, n, k| GemmSpec::new(m, n, k, Transpose::T, Transpose::N).scaled(1.0, 1.0);
        let nf_id = 1 + 4 * self.config.blocks;
        // Output layer: dW_out += dvᵀ·n_f; dn_f = dv·W_out.
        ops::gemm(
            dev,
            &dv,
            &acts.final_normed,
            grads.slice_mut(l.range(nf_id + 1))?,
            &acc(DIM, h, rows),
        )?;
        let mut dn = dev.zeros::<f32>(rows * h)?;
        ops::gemm(dev, &dv, p.slice(l.range(nf_id + 1))?, &mut dn, &GemmSpec::plain(rows, h, DIM))?;
        // dh accumulates dL/dh_b as the loop walks down the residual stream.
        let mut dh = dev.zeros::<f32>(rows * h)?;
        let last = &acts.resid[self.config.blocks];
        let (w, dw) = (p.slice(l.range(nf_id))?, grads.slice_mut(l.range(nf_id))?);
        ops::rmsnorm_bwd(dev, &dn, last, w, &acts.final_rstd, &mut dh, dw, rows, h)?;
        let mut da = dev.zeros::<f32>(rows * f)?;
        let mut dgate = dev.zeros::<f32>(rows * f)?;
        let mut dup = dev.zeros::<f32>(rows * f)?;
        for b in (0..self.config.blocks).rev() {
            let ids = l.block(b);
            // a·W_dᵀ: dW_d += dhᵀ·a; da = dh·W_d.
            ops::gemm(
                dev,
                &dh,
                &acts.act[b],
                grads.slice_mut(l.range(ids.down))?,
                &acc(h, f, rows),
            )?;
            ops::gemm(
                dev,
                &dh,
                p.slice(l.range(ids.down))?,
                &mut da,
                &GemmSpec::plain(rows, f, h),
            )?;
            ops::swiglu_bwd(dev, &da, &acts.gate[b], &acts.up[b], &mut dgate, &mut dup, rows * f)?;
            ops::gemm(
                dev,
                &dgate,
                &acts.normed[b],
                grads.slice_mut(l.range(ids.gate))?,
                &acc(f, h, rows),
            )?;
            ops::gemm(
                dev,
                &dup,
                &acts.normed[b],
                grads.slice_mut(l.range(ids.up))?,
                &acc(f, h, rows),
            )?;
            ops::gemm(
                dev,
                &dgate,
                p.slice(l.range(ids.gate))?,
                &mut dn,
                &GemmSpec::plain(rows, h, f),
            )?;
            let spec = GemmSpec::plain(rows, h, f).scaled(1.0, 1.0);
            ops::gemm(dev, &dup, p.slice(l.range(ids.up))?, &mut dn, &spec)?;
            // rmsnorm_bwd adds into dh: dL/dh_b = dL/dh_{b+1} + (the path through the norm).
            let (w, dw) = (p.slice(l.range(ids.norm))?, grads.slice_mut(l.range(ids.norm))?);
            ops::rmsnorm_bwd(dev, &dn, &acts.resid[b], w, &acts.rstd[b], &mut dh, dw, rows, h)?;
        }
        // h_0 = f·W_inᵀ: dW_in += dh_0ᵀ·f.
        ops::gemm(dev, &dh, &acts.input, grads.slice_mut(l.range(0))?, &acc(h, IN_DIM, rows))?;
        Ok(())
    }

    /// The 0/1 weight-decay mask of the layout.
    pub fn decay_mask(&self) -> Vec<f32> {
        let mut mask = vec![0f32; self.layout.len];
        for t in self.layout.tensors.iter().filter(|t| t.decay) {
            mask[t.range.clone()].fill(1.0);
        }
        mask
    }
}
