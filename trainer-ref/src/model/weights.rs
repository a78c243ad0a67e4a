//! The model on a device: configuration, layout and the one parameter buffer.

use std::path::Path;

use treepo_kernels::testing::Rng;
use treepo_kernels::{Buffer, Device, ops};

use super::{ModelConfig, ModelError, ParamLayout, RopeScalingConfig, Tokenizer, checkpoint};

/// A decoder whose parameters live in one buffer on `device` (llm.c layout, see
/// [`ParamLayout`]).
pub struct Model {
    cfg: ModelConfig,
    layout: ParamLayout,
    dev: Device,
    params: Buffer<f32>,
    inv_freq: Buffer<f32>,
}

impl Model {
    /// A model with the given parameters (`params.len() == layout.total`).
    pub fn from_params(dev: &Device, cfg: ModelConfig, params: &[f32]) -> Result<Self, ModelError> {
        cfg.validate()?;
        let layout = ParamLayout::new(&cfg);
        if params.len() != layout.total {
            return Err(ModelError::Config {
                field: "parameters",
                msg: format!("{} values given, the layout holds {}", params.len(), layout.total),
            });
        }
        let scaling = match cfg.rope_scaling {
            None => ops::RopeScaling::None,
            Some(RopeScalingConfig::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            }) => ops::RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            },
        };
        let inv_freq = ops::rope_inv_freq(cfg.head_dim, cfg.rope_theta, scaling)?;
        Ok(Model {
            params: dev.upload(params)?,
            inv_freq: dev.upload(&inv_freq)?,
            dev: dev.clone(),
            layout,
            cfg,
        })
    }

    /// A freshly initialized model: normal(0, 0.02) matrices and embeddings, the residual
    /// output projections (`o_proj`, `down_proj`) scaled by `1/sqrt(2·L)` (GPT-2/nanoGPT),
    /// RMSNorm weights 1, biases 0.
    pub fn random(dev: &Device, cfg: ModelConfig, seed: u64) -> Result<Self, ModelError> {
        cfg.validate()?;
        let layout = ParamLayout::new(&cfg);
        let mut rng = Rng::new(seed);
        let mut p = vec![0f32; layout.total];
        let resid = 0.02 / (2.0 * cfg.num_hidden_layers as f64).sqrt();
        for t in &layout.tensors {
            let std = if t.name.ends_with("o_proj.weight") || t.name.ends_with("down_proj.weight") {
                resid
            } else {
                0.02
            };
            let slot = &mut p[t.range.clone()];
            if t.name.ends_with("norm.weight") {
                slot.fill(1.0);
            } else if t.name.ends_with(".bias") {
                slot.fill(0.0);
            } else {
                slot.iter_mut().for_each(|v| *v = (rng.normal() * std) as f32);
            }
        }
        Self::from_params(dev, cfg, &p)
    }

    /// Loads `config.json` and the weights of `dir` (the tokenizer: [`Tokenizer::load`]).
    pub fn load(dev: &Device, dir: &Path) -> Result<Self, ModelError> {
        let cfg = ModelConfig::load(dir)?;
        let layout = ParamLayout::new(&cfg);
        let params = checkpoint::load_weights(dir, &cfg, &layout)?;
        Self::from_params(dev, cfg, &params)
    }

    /// Writes `config.json`, `model.safetensors` and the tokenizer into `dir`.
    pub fn save(&self, dir: &Path, tok: &Tokenizer) -> Result<(), ModelError> {
        let params = self.dev.download(&self.params)?;
        checkpoint::save(dir, &self.cfg, &self.layout, &params)?;
        tok.save(dir)
    }

    /// The configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// The parameter layout.
    pub fn layout(&self) -> &ParamLayout {
        &self.layout
    }

    /// The device holding the parameters.
    pub fn device(&self) -> &Device {
        &self.dev
    }

    /// The parameter buffer.
    pub fn params(&self) -> &Buffer<f32> {
        &self.params
    }

    /// The parameter buffer, writable (the optimizer's update).
    pub fn params_mut(&mut self) -> &mut Buffer<f32> {
        &mut self.params
    }

    /// RoPE inverse frequencies `[head_dim / 2]`.
    pub fn inv_freq(&self) -> &Buffer<f32> {
        &self.inv_freq
    }

    /// The parameters, on the host.
    pub fn params_host(&self) -> Result<Vec<f32>, ModelError> {
        Ok(self.dev.download(&self.params)?)
    }
}
