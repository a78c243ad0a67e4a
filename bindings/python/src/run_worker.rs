//! `RunWorker`: one process's share of a `treepo train` run, for `treepo.distributed`
//! (docs/distributed.md). It holds the run's setup (task, tokenizer, settings from the TOML
//! config) and a trainer (model + optimizer); a rollout worker samples slices of RL steps with
//! it, a learner prepares its rank's share of the update, returns its gradient and applies the
//! ranks' sum. Arrays cross as bytes (native endianness); `python/treepo/distributed/` wraps
//! them as numpy arrays.

use std::path::Path;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use treepo_kernels::Device;
use treepo_trainer::distributed::{RankUpdate, RolloutShard, apply_gradient};
use treepo_trainer::model::Model;
use treepo_trainer::pipeline;
use treepo_trainer::run::RunConfig;
use treepo_trainer::run::setup::{RunSetup, sample_fresh};
use treepo_trainer::train::{AdamW, TrainError, Trainer};

use crate::devices::{Loc, device_for};
use crate::errors::{Error, Result, guarded, value_err};

fn train(e: TrainError) -> Error {
    match e {
        TrainError::Kernel(k) => Error::Kernel(k),
        TrainError::Model(m) => Error::Runtime(m.to_string()),
        e => Error::Value(e.to_string()),
    }
}

/// `bytes` as `T` values (any alignment); the length must be a whole number of them.
fn pods<T: bytemuck::Pod>(bytes: &[u8], what: &str) -> Result<Vec<T>> {
    let size = std::mem::size_of::<T>();
    if !bytes.len().is_multiple_of(size) {
        return value_err!(
            "{what}: {} bytes is not a whole number of {size}-byte values",
            bytes.len()
        );
    }
    Ok(bytemuck::pod_collect_to_vec(bytes))
}

fn to_bytes<'py, T: bytemuck::Pod>(py: Python<'py>, v: &[T]) -> Bound<'py, PyBytes> {
    PyBytes::new(py, bytemuck::cast_slice(v))
}

/// One process's share of a run (see the module doc).
#[pyclass(module = "treepo._treepo", name = "RunWorker")]
pub struct RunWorker {
    setup: RunSetup,
    trainer: Trainer,
    version: u64,
    update: Option<(u64, RankUpdate)>,
}

impl RunWorker {
    fn settings(&self, step: u64) -> pipeline::RlSettings {
        self.setup.step_settings(step)
    }

    /// With a KL penalty, the frozen reference is the current weights (the policy RL starts
    /// from, as `treepo train` takes it after SFT).
    fn reset_reference(&mut self) -> Result<()> {
        self.trainer.reference = match self.setup.rl.loss.kl {
            None => None,
            Some(_) => {
                let m = &self.trainer.model;
                let p = m.params_host().map_err(|e| Error::Runtime(e.to_string()))?;
                Some(
                    Model::from_params(m.device(), m.config().clone(), &p)
                        .map_err(|e| Error::Runtime(e.to_string()))?,
                )
            }
        };
        Ok(())
    }
}

#[pymethods]
impl RunWorker {
    /// A worker for the run `config` (TOML text) with `overrides` (`section.key=value`)
    /// applied, on `device` (`"cpu"` or `"cuda:N"`). Its model is the checkpoint `model.path`
    /// names (a checkpoint, a run directory or its `checkpoints/`), else the config's fresh
    /// model (`run.seed`'s initialisation), at policy version 0.
    #[new]
    #[pyo3(signature = (config, overrides=Vec::new(), device="cpu"))]
    fn new(py: Python<'_>, config: &str, overrides: Vec<String>, device: &str) -> Result<Self> {
        let loc = match device {
            "cpu" => Loc::Cpu,
            d => match d.strip_prefix("cuda:").and_then(|i| i.parse().ok()) {
                Some(i) => Loc::Cuda(i),
                None if d == "cuda" => Loc::Cuda(0),
                None => {
                    return value_err!("device {d:?}: expected \"cpu\", \"cuda\" or \"cuda:N\"");
                }
            },
        };
        let config = config.to_string();
        py.detach(move || {
            guarded(|| {
                let dev: Device = device_for(loc, 0)?;
                let cfg =
                    RunConfig::from_toml_with_overrides(&config, Path::new("<config>"), &overrides)
                        .map_err(train)?;
                let (setup, model) = RunSetup::new(cfg, &dev).map_err(train)?;
                let optim = AdamW::new(&model, setup.cfg.rl.optim).map_err(train)?;
                let trainer = Trainer::new(model, optim);
                let mut w = RunWorker { setup, trainer, version: 0, update: None };
                w.reset_reference()?;
                Ok(w)
            })
        })
    }

    /// The resolved configuration, as TOML.
    fn config_toml(&self) -> Result<String> {
        self.setup.cfg.to_toml().map_err(train)
    }

    /// Queries per RL step (`rl.queries_per_step`).
    #[getter]
    fn queries_per_step(&self) -> usize {
        self.setup.cfg.rl.queries_per_step
    }

    /// RL steps of the run (`rl.steps`).
    #[getter]
    fn rl_steps(&self) -> u64 {
        self.setup.cfg.rl.steps
    }

    /// The algorithm's name (`rl.algo`).
    #[getter]
    fn algo(&self) -> &'static str {
        self.setup.cfg.rl.algo.name()
    }

    /// Parameters of the model.
    #[getter]
    fn num_params(&self) -> usize {
        self.trainer.model.layout().total
    }

    /// The policy version: optimizer steps applied since version 0, or the version given with
    /// the last `set_weights`.
    #[getter]
    fn version(&self) -> u64 {
        self.version
    }

    /// `model.path`, as the config gives it (`None`: the config's fresh model).
    #[getter]
    fn model_path(&self) -> Option<String> {
        self.setup.cfg.model.path.as_ref().map(|p| p.display().to_string())
    }

    /// `rl.dynamic_sampling_rounds` (negative: off).
    #[getter]
    fn dynamic_sampling_rounds(&self) -> i64 {
        self.setup.cfg.rl.dynamic_sampling_rounds
    }

    /// Every parameter (float32, the model's layout order) as bytes.
    fn get_weights<'py>(&self, py: Python<'py>) -> Result<Bound<'py, PyBytes>> {
        let p = self.trainer.model.params_host().map_err(|e| Error::Runtime(e.to_string()))?;
        Ok(to_bytes(py, &p))
    }

    /// Replaces every parameter (float32 bytes, `get_weights`' layout) and sets the policy
    /// version. With `reset_optimizer`, the optimizer restarts from zero moments and these
    /// weights become the KL reference (a learner taking over weights trained elsewhere, e.g.
    /// after SFT).
    #[pyo3(signature = (weights, version, reset_optimizer=false))]
    fn set_weights(
        &mut self,
        py: Python<'_>,
        weights: &[u8],
        version: u64,
        reset_optimizer: bool,
    ) -> Result<()> {
        let w: Vec<f32> = pods(weights, "weights")?;
        let n = self.trainer.model.layout().total;
        if w.len() != n {
            return value_err!("weights: {} float32 values for a model of {n} parameters", w.len());
        }
        if let Some(i) = w.iter().position(|x| !x.is_finite()) {
            return value_err!("weights: value {i} is not finite");
        }
        py.detach(|| {
            guarded(|| {
                let dev = self.trainer.model.device().clone();
                dev.write(self.trainer.model.params_mut(), &w)?;
                if reset_optimizer {
                    self.trainer.optim =
                        AdamW::new(&self.trainer.model, self.setup.cfg.rl.optim).map_err(train)?;
                    self.reset_reference()?;
                }
                self.version = version;
                self.update = None;
                Ok(())
            })
        })
    }

    /// Runs the config's `[sft]` phase on this worker's model (as `treepo train` does) and
    /// returns each step's mean loss; leaves a fresh RL optimizer. The version stays.
    fn sft(&mut self, py: Python<'_>) -> Result<Vec<f64>> {
        py.detach(|| {
            guarded(|| {
                let mut losses = Vec::new();
                self.setup.sft(&mut self.trainer, |_, r| losses.push(r.loss)).map_err(train)?;
                self.reset_reference()?;
                Ok(losses)
            })
        })
    }

    /// Samples queries `first..first + count` of RL step `step`'s batch with the current
    /// weights (query ids = batch positions, so any split of a batch draws the same trees) and
    /// scores them. Returns `(arrays, policy_version, tokens_decoded)`: `arrays` maps each
    /// array of the shard layout (docs/distributed.md) to its bytes.
    fn sample<'py>(
        &self,
        py: Python<'py>,
        step: u64,
        first: usize,
        count: usize,
    ) -> PyResult<(Bound<'py, PyDict>, u64, u64)> {
        let q = self.setup.cfg.rl.queries_per_step;
        if count == 0 || first.checked_add(count).is_none_or(|e| e > q) {
            let e: Result<()> = value_err!(
                "sample: queries {first}..{} of a step of {q} (rl.queries_per_step)",
                first.saturating_add(count)
            );
            e?;
        }
        let settings = self.settings(step);
        let shard = py.detach(|| {
            guarded(|| {
                let problems = self.setup.step_problems(step).map_err(train)?;
                let problems = &problems[first..first + count];
                let tree = sample_fresh(
                    &self.trainer.model,
                    self.setup.cfg.run.kv_pages,
                    &settings.sampler,
                    &self.setup.hooks,
                    &self.setup.tok,
                    settings.sampling,
                    problems,
                    first as u64,
                )
                .map_err(train)?;
                RolloutShard::collect(
                    &tree,
                    problems,
                    self.setup.task.as_ref(),
                    &self.setup.tok,
                    settings.overlong.as_ref(),
                    self.version,
                )
                .map_err(train)
            })
        })?;
        let d = PyDict::new(py);
        d.set_item("problem_index", to_bytes(py, &shard.problem_index))?;
        d.set_item("node_ptr", to_bytes(py, &shard.node_ptr))?;
        d.set_item("parent", to_bytes(py, &shard.parent))?;
        d.set_item("token_ptr", to_bytes(py, &shard.token_ptr))?;
        d.set_item("tokens", to_bytes(py, &shard.tokens))?;
        d.set_item("logprobs", to_bytes(py, &shard.logprobs))?;
        d.set_item("leaf_ptr", to_bytes(py, &shard.leaf_ptr))?;
        d.set_item("leaf_node", to_bytes(py, &shard.leaf_node))?;
        d.set_item("reward", to_bytes(py, &shard.reward))?;
        d.set_item("task_reward", to_bytes(py, &shard.task_reward))?;
        d.set_item("correct", to_bytes(py, &shard.correct))?;
        d.set_item("well_formed", to_bytes(py, &shard.well_formed))?;
        d.set_item("finish", to_bytes(py, &shard.finish))?;
        Ok((d, shard.policy_version, shard.tokens_decoded))
    }

    /// Prepares rank `rank` of `world`'s share of RL step `step`'s update from the step's
    /// shards (each `(arrays, policy_version)` as `sample` returned them, in batch order):
    /// every shard must have been sampled at this worker's version. Returns the advantage of
    /// every leaf of the whole batch (float64 bytes) and the number of mini-batches.
    fn prepare<'py>(
        &mut self,
        py: Python<'py>,
        step: u64,
        shards: Vec<(Bound<'py, PyDict>, u64)>,
        rank: usize,
        world: usize,
    ) -> Result<(Bound<'py, PyBytes>, usize)> {
        let mut parsed = Vec::with_capacity(shards.len());
        for (i, (d, version)) in shards.iter().enumerate() {
            if *version != self.version {
                return value_err!(
                    "shard {i} was sampled by policy version {version}, this learner is at \
                     version {}: training on it would be off-policy",
                    self.version
                );
            }
            parsed.push(shard_of(d, *version, i)?);
        }
        let settings = self.settings(step);
        let up = py.detach(|| {
            guarded(|| {
                let refs: Vec<&RolloutShard> = parsed.iter().collect();
                let rollouts = RolloutShard::to_rollouts(&refs, &self.setup.tok).map_err(train)?;
                let want = self.setup.cfg.rl.queries_per_step;
                if rollouts.trees.len() != want {
                    return value_err!(
                        "the shards hold {} queries, a step has {want}",
                        rollouts.trees.len()
                    );
                }
                RankUpdate::prepare(&mut self.trainer, &rollouts, &settings, rank, world)
                    .map_err(train)
            })
        })?;
        let out = (to_bytes(py, &up.advantages), up.mini_batches());
        self.update = Some((step, up));
        Ok(out)
    }

    /// This rank's gradient of mini-batch `mb` of the prepared step under the current weights
    /// (float32 bytes) and its statistics: `pg_loss`, `kl_loss`, `entropy_loss`, `num_tokens`,
    /// `clipped_low`, `clipped_high`, `dual_clipped`, `old_minus_new_logp`, `entropy_sum`,
    /// `train_tokens`.
    fn gradient<'py>(
        &mut self,
        py: Python<'py>,
        mb: usize,
    ) -> PyResult<(Bound<'py, PyBytes>, Bound<'py, PyDict>)> {
        let Some((step, up)) = self.update.take() else {
            return Err(Error::Runtime("gradient before prepare".into()).into());
        };
        let settings = self.settings(step);
        let r =
            py.detach(|| guarded(|| up.gradient(&mut self.trainer, &settings, mb).map_err(train)));
        self.update = Some((step, up));
        let g = r?;
        let d = PyDict::new(py);
        let s = &g.stats;
        d.set_item("pg_loss", s.pg_loss)?;
        d.set_item("kl_loss", s.kl_loss)?;
        d.set_item("entropy_loss", s.entropy_loss)?;
        d.set_item("num_tokens", s.num_tokens)?;
        d.set_item("clipped_low", s.clipped_low)?;
        d.set_item("clipped_high", s.clipped_high)?;
        d.set_item("dual_clipped", s.dual_clipped)?;
        d.set_item("old_minus_new_logp", s.old_minus_new_logp)?;
        d.set_item("entropy_sum", g.entropy_sum)?;
        d.set_item("train_tokens", g.train_tokens)?;
        Ok((to_bytes(py, &g.grad), d))
    }

    /// Applies `grad` (float32 bytes: the ranks' gradients summed in rank order) with the
    /// optimizer and advances the version. Returns the step's `lr`, `grad_norm`, `clipped`.
    fn apply<'py>(&mut self, py: Python<'py>, grad: &[u8]) -> PyResult<Bound<'py, PyDict>> {
        let g: Vec<f32> = pods(grad, "grad")?;
        let r = py.detach(|| guarded(|| apply_gradient(&mut self.trainer, &g).map_err(train)))?;
        self.version += 1;
        let d = PyDict::new(py);
        d.set_item("lr", r.lr)?;
        d.set_item("grad_norm", r.grad_norm)?;
        d.set_item("clipped", r.clipped)?;
        Ok(d)
    }

    /// Evaluates the current weights as `treepo train` does (`eval.problems` problems, `eval.k`
    /// samples each, the eval seed): `avg_at_k`, `pass_at_k`, `maj_at_k`, `response_len`, `k`,
    /// `problems`, `tokens_decoded`.
    fn evaluate<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let r = py.detach(|| {
            guarded(|| {
                let s = &self.setup;
                let problems = s.eval_problems().map_err(train)?;
                let mut sample = |m: &Model, c: &treepo_sampler::TreeConfig, mode, ps: &[_]| {
                    sample_fresh(m, s.cfg.run.kv_pages, c, &s.hooks, &s.tok, mode, ps, 0)
                };
                pipeline::evaluate(
                    &mut sample,
                    &self.trainer.model,
                    &s.eval_sampler,
                    s.task.as_ref(),
                    &s.tok,
                    &problems,
                    s.cfg.eval.k,
                )
                .map_err(train)
            })
        })?;
        let d = PyDict::new(py);
        d.set_item("avg_at_k", r.avg_at_k)?;
        d.set_item("pass_at_k", r.pass_at_k)?;
        d.set_item("maj_at_k", r.maj_at_k)?;
        d.set_item("response_len", r.response_len)?;
        d.set_item("k", r.k)?;
        d.set_item("problems", r.problems)?;
        d.set_item("tokens_decoded", r.tokens_decoded)?;
        Ok(d)
    }
}

/// The shard of `sample`'s arrays `d` (every array present, as bytes).
fn shard_of(d: &Bound<'_, PyDict>, version: u64, i: usize) -> Result<RolloutShard> {
    fn get<T: bytemuck::Pod>(d: &Bound<'_, PyDict>, key: &str, i: usize) -> Result<Vec<T>> {
        let Some(v) = d.get_item(key).map_err(|e| Error::Value(e.to_string()))? else {
            return value_err!("shard {i}: no `{key}` array");
        };
        let b = v
            .cast::<PyBytes>()
            .map_err(|_| Error::Type(format!("shard {i}: `{key}` must be bytes")))?;
        pods(b.as_bytes(), &format!("shard {i}: {key}"))
    }
    Ok(RolloutShard {
        policy_version: version,
        tokens_decoded: 0,
        problem_index: get(d, "problem_index", i)?,
        node_ptr: get(d, "node_ptr", i)?,
        parent: get(d, "parent", i)?,
        token_ptr: get(d, "token_ptr", i)?,
        tokens: get(d, "tokens", i)?,
        logprobs: get(d, "logprobs", i)?,
        leaf_ptr: get(d, "leaf_ptr", i)?,
        leaf_node: get(d, "leaf_node", i)?,
        reward: get(d, "reward", i)?,
        task_reward: get(d, "task_reward", i)?,
        correct: get(d, "correct", i)?,
        well_formed: get(d, "well_formed", i)?,
        finish: get(d, "finish", i)?,
    })
}

/// Registers `RunWorker`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<RunWorker>()
}
