//! Generator checkpoints: one safetensors file, one F32 tensor per [`NetLayout`] entry (names
//! `w_in`, `blocks.{b}.norm`, `blocks.{b}.w_gate`, `blocks.{b}.w_up`, `blocks.{b}.w_down`,
//! `norm_f`, `w_out`; matrices `[out, in]` as PyTorch's `nn.Linear`), the shape in the metadata
//! (`hidden`, `ffn`, `blocks`).

use std::collections::HashMap;
use std::path::Path;

use treepo_kernels::Device;

use crate::Result;
use crate::net::{NetConfig, NetLayout, VelocityNet};
use crate::tensor_io::{Named, floats, format_err, parse, read, save_f32};

impl VelocityNet {
    /// Writes the parameters to `path` (atomically: `path.tmp`, then a rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        let host = self.host_params()?;
        let tensors: Vec<Named<'_>> = self
            .layout
            .tensors
            .iter()
            .map(|t| (t.name.as_str(), t.shape.clone(), &host[t.range.clone()]))
            .collect();
        let c = &self.config;
        let meta = HashMap::from([
            ("hidden".to_string(), c.hidden.to_string()),
            ("ffn".to_string(), c.ffn.to_string()),
            ("blocks".to_string(), c.blocks.to_string()),
        ]);
        save_f32(path, &tensors, Some(meta))
    }

    /// Reads a checkpoint written by [`VelocityNet::save`] onto `dev`. A file that is not
    /// safetensors, lacks the shape metadata, or whose tensors do not match the layout that
    /// metadata implies is a [`crate::FlowError::Format`].
    pub fn load(dev: &Device, path: &Path) -> Result<Self> {
        let bytes = read(path)?;
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| format_err(path, format!("not a safetensors file: {e}")))?;
        let meta = meta.metadata().clone().unwrap_or_default();
        let field = |k: &str| -> Result<usize> {
            meta.get(k)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format_err(path, format!("metadata `{k}` missing or not a number")))
        };
        let config =
            NetConfig { hidden: field("hidden")?, ffn: field("ffn")?, blocks: field("blocks")? };
        config.validate().map_err(|e| format_err(path, e.to_string()))?;
        let layout = NetLayout::new(&config);
        let names: Vec<&str> = layout.tensors.iter().map(|t| t.name.as_str()).collect();
        let st = parse(path, &bytes, &names)?;
        let mut host = vec![0f32; layout.len];
        for t in &layout.tensors {
            host[t.range.clone()].copy_from_slice(&floats(path, &st, &t.name, &t.shape)?);
        }
        VelocityNet::from_host(dev, config, &host)
    }
}
