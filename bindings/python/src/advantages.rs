//! The advantage estimators of `treepo-rl` (docs/treepo.md §2): TreePO, GRPO, Dr.GRPO, RLOO,
//! REINFORCE++ over leaf records, and TreeGRPO, TreeRL, SPO-tree over a rollout topology. The
//! Python layer (`python/treepo/advantages.py`) turns lists, numpy arrays and torch tensors into
//! native-endian `i64`/`f64` bytes; the results come back as `f64` bytes. Every value is the Rust
//! crate's own result; an `RlError` becomes a `ValueError` with its message.

use pyo3::prelude::*;
use pyo3::types::PyBytes;
use treepo_rl::advantage::{
    BackupWeights, LogProbReduce, StdKind, SubgroupAggregation, SubgroupRejection, TreeGrpoOptions,
    TreepoOptions, Whitening, treepo_raw_advantages, treepo_subgroup_terms,
    whiten_token_weighted_with,
};
use treepo_rl::{
    AdvantageConfig, AdvantageEstimator, Advantages, BranchingWindow, EdgeStats, LeafRecord,
    RlError, RolloutTopology, compute_advantages, compute_leaf_advantages,
};

use crate::errors::{Error, Result, guarded, value_err};

/// Inputs larger than this many elements are computed with the GIL released.
const DETACH_ABOVE: usize = 4096;

fn rl(e: RlError) -> Error {
    Error::Value(e.to_string())
}

fn words<const N: usize>(bytes: &[u8], what: &str) -> Result<Vec<[u8; N]>> {
    if !bytes.len().is_multiple_of(N) {
        return value_err!(
            "{what}: {} bytes is not a whole number of {N}-byte values",
            bytes.len()
        );
    }
    Ok(bytes.chunks_exact(N).map(|c| c.try_into().unwrap_or([0; N])).collect())
}

fn f64s(bytes: &[u8], what: &str) -> Result<Vec<f64>> {
    Ok(words::<8>(bytes, what)?.into_iter().map(f64::from_ne_bytes).collect())
}

fn i64s(bytes: &[u8], what: &str) -> Result<Vec<i64>> {
    Ok(words::<8>(bytes, what)?.into_iter().map(i64::from_ne_bytes).collect())
}

fn counts(bytes: &[u8], what: &str) -> Result<Vec<usize>> {
    i64s(bytes, what)?
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            usize::try_from(v).map_err(|_| Error::Value(format!("{what}[{i}] = {v} is negative")))
        })
        .collect()
}

fn f64_bytes<'py>(py: Python<'py>, v: &[f64]) -> Bound<'py, PyBytes> {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_ne_bytes()).collect();
    PyBytes::new(py, &bytes)
}

fn check_len(what: &str, expected: usize, got: usize) -> Result<()> {
    if expected == got {
        Ok(())
    } else {
        value_err!("{what}: expected length {expected}, got {got}")
    }
}

/// Runs `f` with the GIL released when the input is large, and catches panics either way.
fn run<T: Send>(py: Python<'_>, size: usize, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    if size > DETACH_ABOVE { py.detach(|| guarded(f)) } else { guarded(f) }
}

fn estimator(name: &str) -> Result<AdvantageEstimator> {
    Ok(match name {
        "treepo" | "tree_reinforce_plus_plus_baseline" => AdvantageEstimator::Treepo,
        "grpo" => AdvantageEstimator::Grpo,
        "dr_grpo" => AdvantageEstimator::DrGrpo,
        "rloo" => AdvantageEstimator::Rloo,
        "reinforce_pp" | "reinforce_plus_plus_baseline" => AdvantageEstimator::ReinforcePp,
        "tree_grpo" => AdvantageEstimator::TreeGrpo,
        "tree_rl" => AdvantageEstimator::TreeRl,
        "spo_tree" => AdvantageEstimator::SpoTree,
        other => {
            return value_err!(
                "estimator = {other:?}: expected one of treepo, grpo, dr_grpo, rloo, reinforce_pp, \
                 tree_grpo, tree_rl, spo_tree"
            );
        }
    })
}

/// Parses one string option against its allowed values.
fn choice<T: Copy>(what: &str, got: &str, options: &[(&str, T)]) -> Result<T> {
    match options.iter().find(|(name, _)| *name == got) {
        Some(&(_, v)) => Ok(v),
        None => {
            let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
            value_err!("{what} = {got:?}: expected one of {}", names.join(", "))
        }
    }
}

fn treepo_options(aggregation: &str, rejection: &str, whitening: &str) -> Result<TreepoOptions> {
    Ok(TreepoOptions {
        aggregation: choice(
            "aggregation",
            aggregation,
            &[
                ("average", SubgroupAggregation::Average),
                ("group_size", SubgroupAggregation::GroupSize),
            ],
        )?,
        rejection: choice(
            "rejection",
            rejection,
            &[
                ("keep_all", SubgroupRejection::KeepAll),
                ("reject_zero_std", SubgroupRejection::RejectZeroStd),
            ],
        )?,
        whitening: choice(
            "whitening",
            whitening,
            &[("center", Whitening::Center), ("scale_only", Whitening::ScaleOnly)],
        )?,
    })
}

/// Leaf records from flat arrays: `path_ids[path_offsets[i]..path_offsets[i + 1]]` is leaf
/// `i`'s path.
fn leaf_records(
    queries: &[u8],
    path_offsets: &[u8],
    path_ids: &[u8],
    rewards: &[u8],
    num_tokens: &[u8],
) -> Result<Vec<LeafRecord>> {
    let queries = counts(queries, "queries")?;
    let rewards = f64s(rewards, "rewards")?;
    let num_tokens = counts(num_tokens, "num_tokens")?;
    let offsets = counts(path_offsets, "path offsets")?;
    let ids = i64s(path_ids, "path ids")?;
    let n = queries.len();
    check_len("rewards", n, rewards.len())?;
    check_len("num_tokens", n, num_tokens.len())?;
    check_len("paths", n + 1, offsets.len())?;
    let mut leaves = Vec::with_capacity(n);
    for i in 0..n {
        let (a, b) = (offsets[i], offsets[i + 1]);
        if a > b || b > ids.len() {
            return value_err!("paths: bad offsets {a}..{b} for leaf {i}");
        }
        let path = ids[a..b]
            .iter()
            .map(|&id| {
                u32::try_from(id).map_err(|_| {
                    Error::Value(format!("paths[{i}] holds node id {id}, not in 0..2^32"))
                })
            })
            .collect::<Result<Vec<u32>>>()?;
        leaves.push(LeafRecord {
            query: queries[i],
            path,
            reward: rewards[i],
            num_tokens: num_tokens[i],
        });
    }
    Ok(leaves)
}

/// One value per leaf (input order) from a leaf-level estimator; `"treepo_raw"` is TreePO before
/// whitening. Edge-level names raise the crate's `WrongLevel` error.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn adv_leaf<'py>(
    py: Python<'py>,
    estimator_name: &str,
    queries: &[u8],
    path_offsets: &[u8],
    path_ids: &[u8],
    rewards: &[u8],
    num_tokens: &[u8],
    aggregation: &str,
    rejection: &str,
    whitening: &str,
) -> Result<Bound<'py, PyBytes>> {
    let treepo = treepo_options(aggregation, rejection, whitening)?;
    let raw = estimator_name == "treepo_raw";
    let est = if raw { AdvantageEstimator::Treepo } else { estimator(estimator_name)? };
    let size = queries.len() / 8 + path_ids.len() / 8;
    let values = run(py, size, || {
        let leaves = leaf_records(queries, path_offsets, path_ids, rewards, num_tokens)?;
        if raw {
            return treepo_raw_advantages(&leaves, &treepo).map_err(rl);
        }
        let config = AdvantageConfig { estimator: est, treepo, ..AdvantageConfig::default() };
        compute_leaf_advantages(&config, &leaves).map_err(rl)
    })?;
    Ok(f64_bytes(py, &values))
}

/// TreePO's kept subgroup terms per leaf: `[(depth, value, size), ...]` by ascending depth.
#[pyfunction]
fn adv_subgroup_terms(
    py: Python<'_>,
    queries: &[u8],
    path_offsets: &[u8],
    path_ids: &[u8],
    rewards: &[u8],
    rejection: &str,
) -> Result<Vec<Vec<(usize, f64, usize)>>> {
    let options = treepo_options("average", rejection, "center")?;
    let n = queries.len() / 8;
    let zeros = vec![0u8; n * 8];
    run(py, n + path_ids.len() / 8, || {
        let leaves = leaf_records(queries, path_offsets, path_ids, rewards, &zeros)?;
        let terms = treepo_subgroup_terms(&leaves, &options).map_err(rl)?;
        Ok(terms
            .into_iter()
            .map(|t| t.into_iter().map(|t| (t.depth, t.value, t.size)).collect())
            .collect())
    })
}

/// Token-weighted batch whitening (docs/treepo.md §2.1).
#[pyfunction]
fn adv_whiten<'py>(
    py: Python<'py>,
    values: &[u8],
    num_tokens: &[u8],
    shift_mean: bool,
) -> Result<Bound<'py, PyBytes>> {
    let out = run(py, values.len() / 8, || {
        let values = f64s(values, "values")?;
        let num_tokens = counts(num_tokens, "num_tokens")?;
        whiten_token_weighted_with(&values, &num_tokens, shift_mean).map_err(rl)
    })?;
    Ok(f64_bytes(py, &out))
}

/// TreeGRPO's options from their Python spellings.
fn tree_grpo_options(
    std: &str,
    weights: &str,
    reduce: &str,
    temperature: f64,
    eps: f64,
) -> Result<TreeGrpoOptions> {
    let std =
        choice("std", std, &[("population", StdKind::Population), ("sample", StdKind::Sample)])?;
    let reduce =
        choice("reduce", reduce, &[("sum", LogProbReduce::Sum), ("mean", LogProbReduce::Mean)])?;
    let weights = choice("weights", weights, &[("uniform", false), ("softmax", true)])?;
    let weights = if weights {
        BackupWeights::Softmax { reduce, temperature }
    } else {
        BackupWeights::Uniform
    };
    Ok(TreeGrpoOptions { std, weights, eps })
}

/// Topology from flat arrays: `parents[i] < 0` marks a root, `rewards[i]` NaN "no reward",
/// `window[i] == 0` an edge outside TreeGRPO's branching window.
fn topology(
    parents: &[u8],
    rewards: &[u8],
    old_logprob_sum: &[u8],
    num_tokens: &[u8],
    window: &[u8],
) -> Result<RolloutTopology> {
    let parents: Vec<Option<usize>> =
        i64s(parents, "parents")?.into_iter().map(|p| usize::try_from(p).ok()).collect();
    let n = parents.len();
    let rewards: Vec<Option<f64>> =
        f64s(rewards, "rewards")?.into_iter().map(|r| (!r.is_nan()).then_some(r)).collect();
    let logprobs = f64s(old_logprob_sum, "old_logprob_sum")?;
    let num_tokens = counts(num_tokens, "num_tokens")?;
    let window = i64s(window, "window")?;
    check_len("old_logprob_sum", n, logprobs.len())?;
    check_len("num_tokens", n, num_tokens.len())?;
    check_len("window", n, window.len())?;
    let edges = (0..n)
        .map(|i| EdgeStats {
            old_logprob_sum: logprobs[i],
            num_tokens: num_tokens[i],
            window: if window[i] != 0 { BranchingWindow::Inside } else { BranchingWindow::Outside },
        })
        .collect();
    RolloutTopology::new(parents, edges, rewards).map_err(rl)
}

/// Any estimator on a topology; `options` are `(aggregation, rejection, whitening, std, weights,
/// reduce, temperature, eps)`. Returns `(per_edge, nodes, values)`: edge-level estimators give
/// one value per node (NaN: not trained) and `nodes` empty; leaf-level ones give the leaf node ids
/// (ascending) and one value per leaf.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn adv_topology<'py>(
    py: Python<'py>,
    estimator_name: &str,
    parents: &[u8],
    rewards: &[u8],
    old_logprob_sum: &[u8],
    num_tokens: &[u8],
    window: &[u8],
    options: (String, String, String, String, String, String, f64, f64),
) -> Result<(bool, Vec<usize>, Bound<'py, PyBytes>)> {
    let (aggregation, rejection, whitening, std, weights, reduce, temperature, eps) = options;
    let config = AdvantageConfig {
        estimator: estimator(estimator_name)?,
        treepo: treepo_options(&aggregation, &rejection, &whitening)?,
        tree_grpo: tree_grpo_options(&std, &weights, &reduce, temperature, eps)?,
    };
    let (per_edge, nodes, values) = run(py, parents.len() / 8, || {
        let topo = topology(parents, rewards, old_logprob_sum, num_tokens, window)?;
        Ok(match compute_advantages(&config, &topo).map_err(rl)? {
            Advantages::PerLeaf { leaves, values } => (false, leaves, values),
            Advantages::PerEdge(e) => {
                (true, Vec::new(), e.as_slice().iter().map(|v| v.unwrap_or(f64::NAN)).collect())
            }
        })
    })?;
    Ok((per_edge, nodes, f64_bytes(py, &values)))
}

/// Registers the functions (private: `treepo.advantages` wraps them).
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(adv_leaf, m)?)?;
    m.add_function(wrap_pyfunction!(adv_subgroup_terms, m)?)?;
    m.add_function(wrap_pyfunction!(adv_whiten, m)?)?;
    m.add_function(wrap_pyfunction!(adv_topology, m)?)?;
    Ok(())
}
