//! Hugging Face checkpoint files: `config.json` + `model.safetensors` (or a sharded
//! `model.safetensors.index.json`), read into and written from the flat parameter buffer.
//!
//! Reading converts F32/F16/BF16 to f32 and checks every tensor's presence and shape against
//! the layout; errors name the tensor and the file. Writing is atomic (temporary file, then
//! rename), so an interrupted save never leaves a truncated checkpoint.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors, tensor::TensorView};

use super::{ModelConfig, ModelError, ParamLayout};

/// The single-file weights name.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// The sharded index name.
pub const INDEX_FILE: &str = "model.safetensors.index.json";

/// Reads the weights of `dir` into a buffer laid out by `layout`.
pub fn load_weights(
    dir: &Path,
    cfg: &ModelConfig,
    layout: &ParamLayout,
) -> Result<Vec<f32>, ModelError> {
    // Sizes first: a config too large for this machine is refused before the buffer exists,
    // and a layout that is not `cfg`'s cannot index past it.
    cfg.validate()?;
    let expected = ParamLayout::try_new(cfg)?;
    if layout.total != expected.total || layout.tensors != expected.tensors {
        return Err(ModelError::Checkpoint {
            path: dir.to_path_buf(),
            msg: format!(
                "the parameter layout given ({} values) is not the layout of the config ({})",
                layout.total, expected.total
            ),
        });
    }
    let files = weight_files(dir)?;
    let mut params = vec![f32::NAN; layout.total];
    let mut seen = vec![false; layout.tensors.len()];
    for file in &files {
        let bytes =
            std::fs::read(file).map_err(|e| ModelError::Io { path: file.clone(), source: e })?;
        let st = SafeTensors::deserialize(&bytes).map_err(|e| ModelError::Checkpoint {
            path: file.clone(),
            msg: format!("not a safetensors file: {e}"),
        })?;
        for (name, view) in st.iter() {
            match layout.tensors.iter().position(|t| t.name == name) {
                Some(i) => {
                    let spec = &layout.tensors[i];
                    if view.shape() != spec.shape.as_slice() {
                        return Err(ModelError::Tensor {
                            name: name.to_string(),
                            msg: format!(
                                "shape {:?} in {} but the config expects {:?}",
                                view.shape(),
                                file.display(),
                                spec.shape
                            ),
                        });
                    }
                    let slot =
                        params.get_mut(spec.range.clone()).ok_or_else(|| ModelError::Tensor {
                            name: name.to_string(),
                            msg: format!(
                                "elements {:?} lie outside the {}-value parameter buffer",
                                spec.range, layout.total
                            ),
                        })?;
                    convert(name, &view, slot)?;
                    seen[i] = true;
                }
                None if ignorable(name, cfg) => {}
                None => {
                    return Err(ModelError::Tensor {
                        name: name.to_string(),
                        msg: format!(
                            "present in {} but not part of a {:?} model with this config",
                            file.display(),
                            cfg.model_type
                        ),
                    });
                }
            }
        }
    }
    if let Some(i) = seen.iter().position(|s| !s) {
        return Err(ModelError::Tensor {
            name: layout.tensors[i].name.clone(),
            msg: format!("missing from the checkpoint in {}", dir.display()),
        });
    }
    Ok(params)
}

/// Tensors real checkpoints carry that this model recomputes or shares.
fn ignorable(name: &str, cfg: &ModelConfig) -> bool {
    name.ends_with("rotary_emb.inv_freq") || (cfg.tie_word_embeddings && name == "lm_head.weight")
}

fn weight_files(dir: &Path) -> Result<Vec<PathBuf>, ModelError> {
    let single = dir.join(WEIGHTS_FILE);
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join(INDEX_FILE);
    if !index.is_file() {
        return Err(ModelError::Checkpoint {
            path: dir.to_path_buf(),
            msg: format!("neither {WEIGHTS_FILE} nor {INDEX_FILE} exists"),
        });
    }
    let text = std::fs::read_to_string(&index)
        .map_err(|e| ModelError::Io { path: index.clone(), source: e })?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| ModelError::Checkpoint {
        path: index.clone(),
        msg: format!("invalid JSON: {e}"),
    })?;
    let map = v.get("weight_map").and_then(serde_json::Value::as_object).ok_or_else(|| {
        ModelError::Checkpoint { path: index.clone(), msg: "no `weight_map` object".into() }
    })?;
    let mut files: Vec<PathBuf> = Vec::new();
    for (tensor, file) in map {
        let f = file.as_str().ok_or_else(|| ModelError::Checkpoint {
            path: index.clone(),
            msg: format!("weight_map[{tensor}] is not a file name"),
        })?;
        if f.contains('/') || f.contains("..") {
            return Err(ModelError::Checkpoint {
                path: index.clone(),
                msg: format!("shard name `{f}` must be a plain file name"),
            });
        }
        let p = dir.join(f);
        if !files.contains(&p) {
            files.push(p);
        }
    }
    files.sort();
    Ok(files)
}

fn convert(name: &str, view: &TensorView<'_>, out: &mut [f32]) -> Result<(), ModelError> {
    let data = view.data();
    let bad = |msg: String| ModelError::Tensor { name: name.to_string(), msg };
    match view.dtype() {
        Dtype::F32 => {
            for (o, c) in out.iter_mut().zip(data.chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        Dtype::F16 => {
            for (o, c) in out.iter_mut().zip(data.chunks_exact(2)) {
                *o = half::f16::from_le_bytes([c[0], c[1]]).to_f32();
            }
        }
        Dtype::BF16 => {
            for (o, c) in out.iter_mut().zip(data.chunks_exact(2)) {
                *o = half::bf16::from_le_bytes([c[0], c[1]]).to_f32();
            }
        }
        other => return Err(bad(format!("dtype {other:?} is not supported (F32, F16, BF16)"))),
    }
    if let Some(i) = out.iter().position(|v| !v.is_finite()) {
        return Err(bad(format!("element {i} is {} (not finite)", out[i])));
    }
    Ok(())
}

/// Writes `config.json` and `model.safetensors` (f32) into `dir`, each atomically.
pub fn save(
    dir: &Path,
    cfg: &ModelConfig,
    layout: &ParamLayout,
    params: &[f32],
) -> Result<(), ModelError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| ModelError::Io { path: dir.to_path_buf(), source: e })?;
    if params.len() != layout.total {
        return Err(ModelError::Checkpoint {
            path: dir.to_path_buf(),
            msg: format!("{} parameters given but the layout holds {}", params.len(), layout.total),
        });
    }
    let bytes: &[u8] = bytemuck::cast_slice(params);
    let mut views = BTreeMap::new();
    for t in &layout.tensors {
        let data = &bytes[t.range.start * 4..t.range.end * 4];
        let view = TensorView::new(Dtype::F32, t.shape.clone(), data)
            .map_err(|e| ModelError::Tensor { name: t.name.clone(), msg: e.to_string() })?;
        views.insert(t.name.clone(), view);
    }
    let path = dir.join(WEIGHTS_FILE);
    let meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize_to_file(views, Some(meta), &path)
        .map_err(|e| ModelError::Checkpoint { path: path.clone(), msg: e.to_string() })?;
    write_atomic(&dir.join("config.json"), cfg.to_json().as_bytes())
}

/// Writes `bytes` to `path` durably and atomically: a temporary sibling, fsync, rename over
/// `path`, fsync of the directory. A crash at any instant leaves the old file or the new one,
/// never a mix or nothing.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ModelError> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let io = |e| ModelError::Io { path: path.to_path_buf(), source: e };
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(bytes).and_then(|_| f.sync_all()).map_err(io)?;
    }
    crate::run::fault::point("write_atomic:before-rename");
    std::fs::rename(&tmp, path).map_err(io)?;
    sync_dir(path.parent().unwrap_or(Path::new("."))).map_err(io)
}

/// fsync of a directory: makes the renames and creations inside it durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}
