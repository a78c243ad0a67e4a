//! The TreePO sampler of `treepo-sampler` (docs/treepo.md §1) driving an engine written in
//! Python (`bridge`): `TreeSampler(config).sample(engine, prompts)`, the request and parameter
//! objects the engine receives, the sampler's logits rules (`sample_logits`) for engines that
//! draw tokens on the host, and the result as plain Python data (`python/treepo/sampler.py`
//! wraps it).

mod bridge;
mod result;

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyFrozenSet, PyList, PySet, PyTuple};
use treepo_sampler::logits::{SamplingParams, sample_row};
use treepo_sampler::{BranchKey, EntropyMode, Query, SampleError, TreeConfig, TreeSampler};

use crate::errors::{Error, Result, guarded, value_err};

/// One leaf to extend in `engine.decode_segment` (the sampler's `SegmentRequest`).
#[pyclass(frozen, module = "treepo._treepo", name = "SegmentRequest")]
pub struct SegmentRequest {
    /// The engine's handle of the node to append to.
    #[pyo3(get)]
    pub(crate) node: Py<PyAny>,
    /// The branch's randomness key.
    pub(crate) key: BranchKey,
    /// Response position of the first token this call appends.
    #[pyo3(get)]
    pub(crate) response_offset: u64,
    /// At most this many tokens are appended.
    #[pyo3(get)]
    pub(crate) max_tokens: usize,
}

#[pymethods]
impl SegmentRequest {
    /// The uniform in [0, 1) for the `i`-th new token: `key.uniform(response_offset + i)`.
    fn uniform(&self, i: u64) -> f64 {
        self.key.uniform(self.response_offset + i)
    }

    /// The branch key's 64 bits.
    #[getter]
    fn key(&self) -> u64 {
        self.key.bits()
    }

    /// The uniforms of the first `n` new tokens (default `max_tokens`).
    #[pyo3(signature = (n=None))]
    fn uniforms(&self, n: Option<u64>) -> Vec<f64> {
        let n = n.unwrap_or(self.max_tokens as u64);
        (0..n).map(|i| self.key.uniform(self.response_offset + i)).collect()
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let node = self.node.bind(py).repr().map(|r| r.to_string()).unwrap_or_default();
        format!(
            "SegmentRequest(node={node}, key={:#018x}, response_offset={}, max_tokens={})",
            self.key.bits(),
            self.response_offset,
            self.max_tokens
        )
    }
}

/// Parameters shared by every request of one decode call (the sampler's `DecodeParams`).
#[pyclass(frozen, module = "treepo._treepo", name = "DecodeParams")]
pub struct DecodeParams {
    /// Stop token ids (sorted): a request ends right after emitting any of them.
    #[pyo3(get)]
    pub(crate) stop: Vec<u32>,
    /// Softmax temperature (0 = greedy).
    #[pyo3(get)]
    pub(crate) temperature: f32,
    /// Top-k (0 = off).
    #[pyo3(get)]
    pub(crate) top_k: usize,
    /// Top-p (1 = off).
    #[pyo3(get)]
    pub(crate) top_p: f32,
    /// Whether per-token entropies are wanted.
    #[pyo3(get)]
    pub(crate) entropy: bool,
}

#[pymethods]
impl DecodeParams {
    fn __repr__(&self) -> String {
        format!(
            "DecodeParams(stop={:?}, temperature={}, top_k={}, top_p={}, entropy={})",
            self.stop, self.temperature, self.top_k, self.top_p, self.entropy
        )
    }
}

/// Config keys whose values are floats (a Python int is accepted for them).
const FLOAT_KEYS: [&str; 3] = ["temperature", "top_p", "tree_logprob_div_temperature"];

fn to_toml(key: &str, v: &Bound<'_, PyAny>) -> Result<toml::Value> {
    use toml::Value as T;
    if let Ok(b) = v.cast::<pyo3::types::PyBool>() {
        return Ok(T::Boolean(b.is_true()));
    }
    if let Ok(i) = v.extract::<i64>()
        && !v.is_instance_of::<pyo3::types::PyFloat>()
    {
        return Ok(if FLOAT_KEYS.contains(&key) { T::Float(i as f64) } else { T::Integer(i) });
    }
    if let Ok(f) = v.cast::<pyo3::types::PyFloat>() {
        return Ok(T::Float(f.value()));
    }
    if let Ok(s) = v.extract::<String>() {
        return Ok(T::String(s));
    }
    if v.is_instance_of::<PyList>()
        || v.is_instance_of::<PyTuple>()
        || v.is_instance_of::<PySet>()
        || v.is_instance_of::<PyFrozenSet>()
    {
        let items: Vec<Bound<'_, PyAny>> =
            v.try_iter().and_then(|it| it.collect()).map_err(|e| Error::Value(e.to_string()))?;
        return Ok(T::Array(items.iter().map(|x| to_toml(key, x)).collect::<Result<_>>()?));
    }
    Err(Error::Type(format!(
        "config key {key}: a {} is not a config value (int, float, str, bool or a list of ints)",
        v.get_type().name().map(|n| n.to_string()).unwrap_or_default()
    )))
}

/// A `TreeConfig` from a dict of its keys (`None` values are left at their defaults).
fn config_from_dict(d: &Bound<'_, PyDict>) -> Result<TreeConfig> {
    let mut table = toml::Table::new();
    for (k, v) in d.iter() {
        let key: String = k.extract().map_err(|_| Error::Type("config keys must be str".into()))?;
        if !v.is_none() {
            let value = to_toml(&key, &v)?;
            table.insert(key, value);
        }
    }
    toml::Value::Table(table)
        .try_into()
        .map_err(|e| Error::Value(format!("bad sampler config: {e}")))
}

/// The sampler: a validated config (see `treepo.TreeSampler`).
#[pyclass(frozen, module = "treepo._treepo", name = "TreeSampler")]
pub struct PyTreeSampler {
    config: TreeConfig,
    warnings: Vec<String>,
}

#[pymethods]
impl PyTreeSampler {
    #[new]
    fn new(config: &Bound<'_, PyDict>) -> Result<Self> {
        let config = config_from_dict(config)?;
        let warnings = config
            .validate()
            .map_err(|e| Error::Value(format!("invalid sampler config: {e}")))?
            .iter()
            .map(ToString::to_string)
            .collect();
        Ok(Self { config, warnings })
    }

    /// The resolved config as TOML text (every key, defaults included).
    fn config_toml(&self) -> Result<String> {
        self.config.to_toml_string().map_err(|e| Error::Runtime(e.to_string()))
    }

    /// Validation warnings.
    #[getter]
    fn warnings(&self) -> Vec<String> {
        self.warnings.clone()
    }

    /// Samples `prompts` (ids `ids`, default 0..n) through `engine`; `hooks` is
    /// `(has_answer, is_repetition)`, each a callable or None. Returns the rollout as dicts.
    #[pyo3(signature = (engine, prompts, ids, hooks, kv_exhausted, sequential=false))]
    fn sample<'py>(
        &self,
        engine: &Bound<'py, PyAny>,
        prompts: Vec<Vec<u32>>,
        ids: Option<Vec<u64>>,
        hooks: (Option<Bound<'py, PyAny>>, Option<Bound<'py, PyAny>>),
        kv_exhausted: Bound<'py, PyAny>,
        sequential: bool,
    ) -> PyResult<Bound<'py, PyDict>> {
        let py = engine.py();
        let ids = ids.unwrap_or_else(|| (0..prompts.len() as u64).collect());
        if ids.len() != prompts.len() {
            return Err(PyValueError::new_err(format!(
                "ids has {} entries for {} prompts",
                ids.len(),
                prompts.len()
            )));
        }
        let queries: Vec<Query<'_>> =
            ids.iter().zip(&prompts).map(|(&id, p)| Query::new(id, p)).collect();
        let hooks = bridge::PyHooks {
            has_answer: hooks.0.filter(|h| !h.is_none()),
            is_repetition: hooks.1.filter(|h| !h.is_none()),
            error: bridge::FirstError::default(),
        };
        let mut eng = bridge::PyEngine::new(engine.clone(), kv_exhausted);
        let outcome = guarded(|| {
            let sampler = TreeSampler::new(self.config.clone(), &hooks)
                .map_err(|e| Error::Value(format!("invalid sampler config: {e}")))?;
            let run = if sequential {
                sampler.sample_sequential(&mut eng, &queries)
            } else {
                sampler.sample(&mut eng, &queries)
            };
            Ok(run)
        });
        // The engine's own exception first (it caused the failure), then a hook's.
        if let Some(e) = eng.error.take().or_else(|| hooks.error.take()) {
            return Err(e);
        }
        match outcome? {
            Ok(tree) => result::to_py(py, &tree),
            Err(e @ (SampleError::Config(_) | SampleError::DuplicateQueryId(_))) => {
                Err(PyValueError::new_err(e.to_string()))
            }
            Err(e) => Err(PyRuntimeError::new_err(e.to_string())),
        }
    }
}

/// The sampler's logits rules on one row (`treepo_sampler::logits::sample_row`): temperature,
/// top-k, top-p, the inverse-CDF draw with uniform `u`; returns `(token, logprob, entropy)`
/// under the processed distribution.
#[pyfunction]
#[pyo3(signature = (logits, temperature, top_k, top_p, u, entropy=false))]
fn sample_logits(
    logits: &[u8],
    temperature: f32,
    top_k: usize,
    top_p: f32,
    u: f64,
    entropy: bool,
) -> Result<(u32, f32, Option<f32>)> {
    if !logits.len().is_multiple_of(4) {
        return value_err!("logits: {} bytes is not a whole number of float32", logits.len());
    }
    let mut row: Vec<f32> =
        logits.chunks_exact(4).map(|c| f32::from_ne_bytes([c[0], c[1], c[2], c[3]])).collect();
    let params = SamplingParams { temperature, top_k, top_p };
    let mode = if entropy { EntropyMode::Compute } else { EntropyMode::Skip };
    let s = guarded(|| {
        sample_row(&mut row, &params, u, mode).map_err(|e| Error::Value(e.to_string()))
    })?;
    Ok((s.token, s.logprob, s.entropy))
}

/// Registers the classes and functions (private: `treepo.sampler` wraps them).
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyTreeSampler>()?;
    m.add_class::<SegmentRequest>()?;
    m.add_class::<DecodeParams>()?;
    m.add_function(wrap_pyfunction!(sample_logits, m)?)?;
    Ok(())
}
