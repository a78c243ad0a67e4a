//! Resumable checkpoints: the model in Hugging Face format (config.json, model.safetensors, the
//! tokenizer) plus the trainer state (AdamW moments in `optimizer.safetensors`, step counters and
//! the RNG state in `trainer_state.json`).
//!
//! Crash safety: a `kill -9` at any instant of [`save`] leaves `latest` naming a complete
//! checkpoint (the previous one or the new one). The new checkpoint is written under a temporary
//! name, every file and the directory are fsynced, it is renamed into place — never over an
//! existing directory: a re-save of the same step (a resumed finished run, Ctrl-C at a
//! checkpoint step) takes a fresh name `<phase>-<step>.<n>` — and only then is `latest` switched
//! (write, fsync, rename, fsync of the directory). Superseded copies of the step and stray
//! temporaries are removed after the switch. [`latest`] also recovers the state an older,
//! non-atomic save could leave: `latest` naming a missing directory whose complete data sits in
//! `.tmp-<name>`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use serde::{Deserialize, Serialize};

use super::{RunConfig, fault};
use crate::model::{Model, Tokenizer, sync_dir, write_atomic};
use crate::train::{TrainError, Trainer};

/// Counters and random state needed to continue a run exactly.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// `sft` or `rl`.
    pub phase: String,
    /// Completed steps of the phase.
    pub step: u64,
    /// Completed SFT steps (kept when the RL phase runs).
    pub sft_steps: u64,
    /// Next train-split problem index.
    pub next_problem: u64,
    /// The run's random state (problem order, demonstrations).
    pub rng: u64,
    /// Tokens decoded so far in the RL phase (for cost-axis plots).
    pub tokens_decoded: u64,
    /// Seconds spent sampling so far.
    pub sample_seconds: f64,
    /// The SFT demonstration stream's state at this checkpoint (a resumed SFT draws exactly
    /// what an uninterrupted one would); absent in RL checkpoints and older files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sft_rng: Option<u64>,
}

/// Largest parameter magnitude a checkpoint may hold. The models here keep weights of order 1
/// (initialized at ~0.02, trained by AdamW with weight decay); weights past this bound are an
/// exploded run (an absurd learning rate reached 5e15 and 1.5e38 while staying finite), and
/// saving them as `latest` would make every resume fail later, at sampling.
pub const MAX_ABS_WEIGHT: f32 = 1e4;

/// Refuses weights or optimizer moments that are non-finite or exploded ([`MAX_ABS_WEIGHT`]):
/// checked before a checkpoint is written and after one is loaded, so `latest` always names a
/// healthy state. `what` names the state in the message.
pub fn check_health(
    params: &[f32],
    layout: &crate::model::ParamLayout,
    moments: [&[f32]; 2],
    what: &str,
) -> Result<(), TrainError> {
    let tensor_of = |i: usize| {
        layout
            .tensors
            .iter()
            .find(|t| t.range.contains(&i))
            .map_or("?".to_string(), |t| t.name.clone())
    };
    if let Some((i, w)) =
        params.iter().enumerate().find(|(_, w)| !w.is_finite() || w.abs() > MAX_ABS_WEIGHT)
    {
        return Err(TrainError::Config(format!(
            "{what}: weight {w} in {} (element {i}) is {}; refusing it (lower the learning \
             rate, or resume from an earlier checkpoint)",
            tensor_of(i),
            if w.is_finite() { "exploded (|w| > 1e4)" } else { "not finite" }
        )));
    }
    for (name, m) in ["exp_avg", "exp_avg_sq"].iter().zip(moments) {
        if let Some((i, x)) = m.iter().enumerate().find(|(_, x)| !x.is_finite()) {
            return Err(TrainError::Config(format!(
                "{what}: optimizer {name} of {} (element {i}) is {x}; refusing it",
                tensor_of(i)
            )));
        }
    }
    Ok(())
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> TrainError + '_ {
    move |e| TrainError::Config(format!("{}: {e}", path.display()))
}

/// Saves `trainer` and `state` as `<dir>/checkpoints/<phase>-<step>` (or `<phase>-<step>.<n>`
/// when that name is taken) and points `latest` at it, durably (see the [module docs](self)).
/// `run_config`, when given, is saved beside the weights as `run.toml` ([`RUN_CONFIG_FILE`]):
/// the task and evaluation settings the model was trained with, which `treepo eval` and
/// `treepo sample` use by default ([`run_config`]). Returns the checkpoint directory.
pub fn save(
    run_dir: &Path,
    trainer: &Trainer,
    tok: &Tokenizer,
    state: &TrainerState,
    run_config: Option<&RunConfig>,
) -> Result<PathBuf, TrainError> {
    let root = run_dir.join("checkpoints");
    let name = format!("{}-{:06}", state.phase, state.step);
    let (m, v, steps) = trainer.optim.state(trainer.device())?;
    let what = format!("{} step {}", state.phase, state.step);
    check_health(&trainer.model.params_host()?, trainer.model.layout(), [&m, &v], &what)?;
    std::fs::create_dir_all(&root).map_err(io(&root))?;
    let tmp = root.join(format!(".tmp-{name}"));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    trainer.model.save(&tmp, tok)?;
    fault::point("save:model-written");
    let mut views = BTreeMap::new();
    let (mb, vb): (&[u8], &[u8]) = (bytemuck::cast_slice(&m), bytemuck::cast_slice(&v));
    for (k, b, len) in [("exp_avg", mb, m.len()), ("exp_avg_sq", vb, v.len())] {
        views.insert(
            k.to_string(),
            TensorView::new(Dtype::F32, vec![len], b)
                .map_err(|e| TrainError::Config(e.to_string()))?,
        );
    }
    let meta =
        std::collections::HashMap::from([("optimizer_steps".to_string(), steps.to_string())]);
    let opt_path = tmp.join("optimizer.safetensors");
    safetensors::serialize_to_file(views, Some(meta), &opt_path)
        .map_err(|e| TrainError::Config(format!("{}: {e}", opt_path.display())))?;
    if let Some(cfg) = run_config {
        write_atomic(&tmp.join(RUN_CONFIG_FILE), cfg.to_toml()?.as_bytes())?;
    }
    let state_json =
        serde_json::to_string_pretty(state).map_err(|e| TrainError::Config(e.to_string()))?;
    fault::point("save:before-state");
    // Written last: its presence marks a complete checkpoint directory.
    write_atomic(&tmp.join(STATE_FILE), state_json.as_bytes())?;
    sync_tree(&tmp)?;
    fault::point("save:before-rename");
    let final_name = (0..)
        .map(|n| if n == 0 { name.clone() } else { format!("{name}.{n}") })
        .find(|n| !root.join(n).exists())
        .unwrap_or_else(|| name.clone());
    let dst = root.join(&final_name);
    std::fs::rename(&tmp, &dst).map_err(io(&dst))?;
    sync_dir(&root).map_err(io(&root))?;
    fault::point("save:before-latest");
    write_atomic(&root.join(LATEST), final_name.as_bytes())?;
    fault::point("save:before-cleanup");
    remove_stale(&root, &name, &final_name);
    Ok(dst)
}

const LATEST: &str = "latest";
const STATE_FILE: &str = "trainer_state.json";
/// The run configuration a checkpoint was trained with (TOML, as `config.toml` of the run).
pub const RUN_CONFIG_FILE: &str = "run.toml";

/// The run configuration saved in the checkpoint `dir` ([`RUN_CONFIG_FILE`]), or `None` for a
/// checkpoint without one (saved by an older version, or a model from elsewhere). A file that
/// is there but does not parse is an error naming it.
pub fn run_config(dir: &Path) -> Result<Option<RunConfig>, TrainError> {
    let path = dir.join(RUN_CONFIG_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    RunConfig::from_toml(&text, &path).map(Some)
}

/// fsync of every file in `dir`, then of `dir` itself.
fn sync_tree(dir: &Path) -> Result<(), TrainError> {
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        if path.is_file() {
            std::fs::File::open(&path).and_then(|f| f.sync_all()).map_err(io(&path))?;
        }
    }
    sync_dir(dir).map_err(io(dir))
}

/// After `latest` names `keep`: removes the other copies of the step `name` (`name`,
/// `name.<n>`), temporaries (`.tmp-*`) and stray `latest.tmp*` files. Best effort: what cannot
/// be removed now is removed by the next save.
fn remove_stale(root: &Path, name: &str, keep: &str) {
    let Ok(entries) = std::fs::read_dir(root) else { return };
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some(f) = file.to_str() else { continue };
        let copy = f == name || f.strip_prefix(name).is_some_and(|r| r.starts_with('.'));
        if f != keep && (copy || f.starts_with(".tmp-")) {
            let _ = std::fs::remove_dir_all(entry.path());
        } else if f.starts_with("latest.tmp") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Keeps the newest `keep_last` checkpoints of the run (by phase, SFT before RL, then step)
/// and deletes the others; never the one `latest` names. 0 keeps all. Returns how many were
/// deleted.
pub fn prune(run_dir: &Path, keep_last: usize) -> Result<usize, TrainError> {
    let root = run_dir.join("checkpoints");
    if keep_last == 0 || !root.is_dir() {
        return Ok(0);
    }
    let current = std::fs::read_to_string(root.join(LATEST)).unwrap_or_default();
    let mut found: Vec<((u8, u64), PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(&root).map_err(io(&root))? {
        let path = entry.map_err(io(&root))?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
        let base = name.split('.').next().unwrap_or(name);
        let key = match base.split_once('-') {
            Some(("sft", step)) => step.parse().ok().map(|s| (0u8, s)),
            Some(("rl", step)) => step.parse().ok().map(|s| (1u8, s)),
            _ => None,
        };
        if let Some(key) = key
            && path.join(STATE_FILE).is_file()
        {
            found.push((key, path));
        }
    }
    found.sort();
    let excess = found.len().saturating_sub(keep_last);
    let mut deleted = 0;
    for (_, path) in &found[..excess] {
        if path.file_name().and_then(|n| n.to_str()) != Some(current.trim()) {
            std::fs::remove_dir_all(path).map_err(io(path))?;
            deleted += 1;
        }
    }
    Ok(deleted)
}

/// The checkpoint a `model.path` / `--model` value names: a checkpoint directory itself
/// (`config.json` in it), a run directory (its `checkpoints/latest`) or a run's `checkpoints/`
/// directory (its `latest`). `what` names the key or flag in the errors.
pub fn resolve(path: &Path, what: &str) -> Result<PathBuf, TrainError> {
    if !path.exists() {
        return Err(TrainError::Config(format!("{what} {}: no such directory", path.display())));
    }
    if path.join("config.json").is_file() {
        return Ok(path.to_path_buf());
    }
    let run_dir = if path.join("checkpoints").is_dir() {
        Some(path.to_path_buf())
    } else if path.join(LATEST).is_file() {
        path.parent().map(Path::to_path_buf)
    } else {
        None
    };
    let Some(run_dir) = run_dir else {
        return Err(TrainError::Config(format!(
            "{what} {}: not a checkpoint (no config.json), a run directory (no checkpoints/) or \
             a checkpoints/ directory (no latest); pass e.g. runs/demo or \
             runs/demo/checkpoints/rl-000040",
            path.display()
        )));
    };
    latest(&run_dir)
        .map_err(|e| TrainError::Config(format!("{what} {}: {e}", path.display())))?
        .ok_or_else(|| {
            TrainError::Config(format!("{what} {}: the run has no checkpoint yet", path.display()))
        })
}

/// The checkpoint `latest` points at, if any. Recovers a checkpoint an interrupted older save
/// left complete in `.tmp-<name>` while `latest` already named `<name>`.
pub fn latest(run_dir: &Path) -> Result<Option<PathBuf>, TrainError> {
    let root = run_dir.join("checkpoints");
    let p = root.join(LATEST);
    if !p.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&p).map_err(io(&p))?;
    let name = text.trim();
    if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
        return Err(TrainError::Config(format!(
            "{}: {:?} is not a checkpoint name (expected e.g. rl-000040); delete the file to \
             start over",
            p.display(),
            name
        )));
    }
    let dir = root.join(name);
    let tmp = root.join(format!(".tmp-{name}"));
    if !dir.is_dir() && tmp.join(STATE_FILE).is_file() {
        std::fs::rename(&tmp, &dir).map_err(io(&dir))?;
        sync_dir(&root).map_err(io(&root))?;
        eprintln!("recovered the checkpoint {} from an interrupted save", dir.display());
    }
    if !dir.is_dir() {
        return Err(TrainError::Config(format!(
            "{} names {} which does not exist",
            p.display(),
            dir.display()
        )));
    }
    Ok(Some(dir))
}

/// Restores the weights, optimizer moments and state of the checkpoint `dir` into `trainer`.
pub fn restore(dir: &Path, trainer: &mut Trainer) -> Result<TrainerState, TrainError> {
    let dev = trainer.device().clone();
    let model = Model::load(&dev, dir)?;
    if model.layout() != trainer.model.layout() {
        return Err(TrainError::Config(format!(
            "{}: the checkpoint's model does not match the configured one",
            dir.display()
        )));
    }
    let params = model.params_host()?;
    dev.write(trainer.model.params_mut(), &params)?;
    let opt_path = dir.join("optimizer.safetensors");
    let bytes = std::fs::read(&opt_path).map_err(io(&opt_path))?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| TrainError::Config(format!("{}: {e}", opt_path.display())))?;
    let read = |k: &str| -> Result<Vec<f32>, TrainError> {
        let t = st
            .tensor(k)
            .map_err(|e| TrainError::Config(format!("{}: {k}: {e}", opt_path.display())))?;
        if t.dtype() != Dtype::F32 {
            return Err(TrainError::Config(format!("{}: {k} is not f32", opt_path.display())));
        }
        Ok(t.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
    };
    let (m, v) = (read("exp_avg")?, read("exp_avg_sq")?);
    check_health(&params, trainer.model.layout(), [&m, &v], &dir.display().to_string())?;
    let (_, meta) =
        SafeTensors::read_metadata(&bytes).map_err(|e| TrainError::Config(e.to_string()))?;
    let steps = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get("optimizer_steps"))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| TrainError::Config(format!("{}: no optimizer_steps", opt_path.display())))?;
    trainer.optim.restore(&dev, &m, &v, steps)?;
    let sp = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&sp).map_err(io(&sp))?;
    serde_json::from_str(&text).map_err(|e| TrainError::Config(format!("{}: {e}", sp.display())))
}
