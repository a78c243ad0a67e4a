//! A `RolloutTree` as plain Python data: per query its nodes (parents, segments, log-probs) and
//! its leaves (node, path, finish reason, response tokens and log-probs), plus the run's cost and
//! warnings. `python/treepo/sampler.py` turns the lists into numpy arrays.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use treepo_sampler::{QueryStatus, QueryTree, RolloutTree, SamplingMode};

fn query_to_py<'py>(py: Python<'py>, q: &QueryTree) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("id", q.id())?;
    d.set_item("prompt", q.prompt().to_vec())?;
    let status = match q.status() {
        QueryStatus::Complete => "complete",
        QueryStatus::KvLimited => "kv_limited",
    };
    d.set_item("status", status)?;
    d.set_item("initial_fanout", q.initial_fanout())?;
    d.set_item("fallbacks", q.fallbacks().len())?;
    let nodes = q.nodes();
    let parents: Vec<i64> =
        nodes.iter().map(|n| n.parent().map_or(-1, |p| i64::from(p.0))).collect();
    d.set_item("parents", parents)?;
    d.set_item("ordinals", nodes.iter().map(|n| n.ordinal()).collect::<Vec<_>>())?;
    d.set_item("depths", nodes.iter().map(|n| n.depth()).collect::<Vec<_>>())?;
    d.set_item("node_steps", nodes.iter().map(|n| n.step()).collect::<Vec<_>>())?;
    d.set_item("node_starts", nodes.iter().map(|n| n.span().start).collect::<Vec<_>>())?;
    let tokens = PyList::new(py, nodes.iter().map(|n| n.tokens().to_vec()))?;
    d.set_item("node_tokens", tokens)?;
    let logprobs = PyList::new(py, nodes.iter().map(|n| n.logprobs().to_vec()))?;
    d.set_item("node_logprobs", logprobs)?;
    let entropies = PyList::new(py, nodes.iter().map(|n| n.entropies().map(<[f32]>::to_vec)))?;
    d.set_item("node_entropies", entropies)?;
    let leaves = PyList::empty(py);
    for (i, leaf) in q.leaves().iter().enumerate() {
        let l = PyDict::new(py);
        l.set_item("node", leaf.node().0)?;
        // The path below the prompt node: the leaf's `LeafRecord.path` for the advantages.
        let path: Vec<u32> = q.leaf_path(i).iter().skip(1).map(|n| n.0).collect();
        l.set_item("path", path)?;
        l.set_item("finish_reason", leaf.reason().label())?;
        l.set_item("response_len", leaf.response_len())?;
        l.set_item("step", leaf.step())?;
        l.set_item("tokens", q.response_tokens(i))?;
        l.set_item("logprobs", q.response_logprobs(i))?;
        leaves.append(l)?;
    }
    d.set_item("leaves", leaves)?;
    Ok(d)
}

fn cost_to_py<'py>(py: Python<'py>, tree: &RolloutTree) -> PyResult<Bound<'py, PyDict>> {
    let c = tree.cost();
    let d = PyDict::new(py);
    d.set_item("prefill_tokens", c.prefill_tokens)?;
    d.set_item("tokens_decoded", c.tokens_decoded)?;
    d.set_item("engine_steps", c.engine_steps)?;
    d.set_item("segments_decoded", c.segments_decoded)?;
    d.set_item("forks", c.forks)?;
    d.set_item("fork_children", c.fork_children)?;
    d.set_item("fallbacks", c.fallbacks)?;
    d.set_item("releases", c.releases)?;
    d.set_item("peak_kv_pages", c.peak_kv_pages)?;
    d.set_item("kv_exhausted_events", c.kv_exhausted_events)?;
    d.set_item("engine_seconds", c.time.engine().as_secs_f64())?;
    d.set_item("scheduler_seconds", c.time.scheduler.as_secs_f64())?;
    d.set_item("total_seconds", c.time.total.as_secs_f64())?;
    Ok(d)
}

/// The whole run: `{"mode", "queries", "cost", "warnings"}`.
pub fn to_py<'py>(py: Python<'py>, tree: &RolloutTree) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    let mode = match tree.mode() {
        SamplingMode::Tree => "tree",
        SamplingMode::Sequential => "sequential",
    };
    d.set_item("mode", mode)?;
    let queries = PyList::empty(py);
    for q in tree.queries() {
        queries.append(query_to_py(py, q)?)?;
    }
    d.set_item("queries", queries)?;
    d.set_item("cost", cost_to_py(py, tree)?)?;
    let warnings: Vec<String> = tree.warnings().iter().map(ToString::to_string).collect();
    d.set_item("warnings", warnings)?;
    Ok(d)
}
