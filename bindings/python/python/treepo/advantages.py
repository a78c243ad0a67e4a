"""Advantage estimators over rollout trees (docs/treepo.md §2), computed by the Rust crate
``treepo-rl`` itself: the values are exactly the trainer's.

Leaf-level estimators take one entry per leaf (trajectory): its query id, its path of node ids
below the query's root, its reward and its response token count::

    adv = treepo.advantages.compute(queries, paths, rewards, num_tokens, estimator="treepo")

Edge-level estimators (``tree_grpo``, ``tree_rl``, ``spo_tree``) take the tree itself, one entry
per node (:func:`compute_edges`). Inputs may be lists, numpy arrays or torch tensors; results are
float64 numpy arrays, or float64 torch tensors on the rewards' device when the rewards are a
torch tensor. Bad input raises ``ValueError`` with the Rust message (``TypeError`` for values
that are not numbers at all).
"""

import numpy as np

from . import _treepo
from ._util import _torch, is_torch

LEAF_ESTIMATORS = ("treepo", "grpo", "dr_grpo", "rloo", "reinforce_pp")
EDGE_ESTIMATORS = ("tree_grpo", "tree_rl", "spo_tree")
_WHITENED = ("treepo", "tree_reinforce_plus_plus_baseline", "reinforce_pp",
             "reinforce_plus_plus_baseline")

__all__ = [
    "EDGE_ESTIMATORS",
    "LEAF_ESTIMATORS",
    "compute",
    "compute_edges",
    "dr_grpo",
    "grpo",
    "reinforce_pp",
    "rloo",
    "spo_tree",
    "tree_grpo",
    "tree_rl",
    "treepo",
    "treepo_raw",
    "treepo_subgroup_terms",
    "whiten",
]


def _array(x, dtype, name):
    """A 1-D contiguous numpy array of ``dtype`` from a list, numpy array or torch tensor."""
    if is_torch(x):
        x = x.detach().cpu().numpy()
    if isinstance(x, (str, bytes)) or x is None:
        raise TypeError(f"{name}: expected a sequence of numbers, got {type(x).__name__}")
    try:
        a = np.asarray(x)
        if a.dtype == object:
            a = np.asarray(x, dtype=np.float64 if dtype == np.float64 else np.int64)
        if np.issubdtype(dtype, np.integer):
            if a.size and not np.issubdtype(a.dtype, np.integer):
                if not np.issubdtype(a.dtype, np.floating) or not np.all(np.mod(a, 1) == 0):
                    raise TypeError(f"{name}: expected integers, got dtype {a.dtype}")
        elif a.size and not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_):
            raise TypeError(f"{name}: expected numbers, got dtype {a.dtype}")
        a = np.ascontiguousarray(a, dtype=dtype)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name}: expected a sequence of numbers ({e})") from None
    if a.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D sequence, got shape {a.shape}")
    return a


def _paths(paths, n):
    """Ragged paths -> (offsets, flat ids) as int64 arrays."""
    if is_torch(paths) or isinstance(paths, np.ndarray):
        if paths.ndim != 2:
            raise ValueError(f"paths: expected a list of paths or a 2-D array, got shape "
                             f"{tuple(paths.shape)}")
        paths = list(paths)
    if isinstance(paths, (str, bytes)) or not hasattr(paths, "__len__"):
        raise TypeError(f"paths: expected a list of node-id sequences, got {type(paths).__name__}")
    if len(paths) != n:
        raise ValueError(f"paths: expected length {n}, got {len(paths)}")
    parts = [_array(p, np.int64, f"paths[{i}]") for i, p in enumerate(paths)]
    offsets = np.zeros(n + 1, dtype=np.int64)
    if n:
        np.cumsum([len(p) for p in parts], out=offsets[1:])
    flat = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    return offsets, flat.astype(np.int64, copy=False)


def _out(values, like):
    """float64 numpy, or torch on ``like``'s device when ``like`` is a torch tensor."""
    if is_torch(like):
        return _torch().from_numpy(values).to(like.device)
    return values


def _from_bytes(b):
    return np.frombuffer(b, dtype=np.float64).copy()


def _leaf(estimator, queries, paths, rewards, num_tokens, aggregation="average",
          rejection="keep_all", whitening="center"):
    r = _array(rewards, np.float64, "rewards")
    q = _array(queries, np.int64, "queries")
    n = len(q)
    if num_tokens is None:
        if estimator in _WHITENED:
            raise ValueError(f"estimator {estimator!r} whitens over response tokens: pass "
                             "num_tokens (each leaf's response length)")
        num_tokens = np.zeros(n, dtype=np.int64)
    t = _array(num_tokens, np.int64, "num_tokens")
    if paths is None:
        if estimator in ("treepo", "treepo_raw", "tree_reinforce_plus_plus_baseline"):
            raise ValueError(f"estimator {estimator!r} needs the leaves' paths")
        offsets, flat = np.zeros(n + 1, dtype=np.int64), np.zeros(0, dtype=np.int64)
    else:
        offsets, flat = _paths(paths, n)
    out = _treepo.adv_leaf(str(estimator), q.tobytes(), offsets.tobytes(), flat.tobytes(),
                           r.tobytes(), t.tobytes(), aggregation, rejection, whitening)
    return _out(_from_bytes(out), rewards)


def compute(queries, paths, rewards, num_tokens=None, *, estimator="treepo",
            aggregation="average", rejection="keep_all", whitening="center"):
    """One advantage per leaf, in input order, from a leaf-level estimator.

    * ``queries[i]``: leaf ``i``'s query id (any non-negative int; leaves of a query share it);
    * ``paths[i]``: node ids from the query root's child down to the leaf (root excluded; two
      leaves of one query may not share a path). Only TreePO reads them (``None`` is fine for
      the flat baselines);
    * ``rewards[i]``: the scalar reward (finite);
    * ``num_tokens[i]``: response tokens, the leaf's weight in the batch whitening of ``treepo``
      and ``reinforce_pp`` (required by those two, ignored by the others).

    ``estimator``: ``treepo`` (alias ``tree_reinforce_plus_plus_baseline``), ``grpo``,
    ``dr_grpo``, ``rloo``, ``reinforce_pp``. TreePO's options: ``aggregation`` = ``average`` |
    ``group_size``, ``rejection`` = ``keep_all`` | ``reject_zero_std``, ``whitening`` =
    ``center`` | ``scale_only`` (docs/treepo.md §2.1).
    """
    return _leaf(estimator, queries, paths, rewards, num_tokens, aggregation, rejection,
                 whitening)


def treepo(queries, paths, rewards, num_tokens, **options):
    """TreePO's tree REINFORCE++ baseline (docs/treepo.md §2.1), whitened over the batch."""
    return compute(queries, paths, rewards, num_tokens, estimator="treepo", **options)


def treepo_raw(queries, paths, rewards, *, aggregation="average", rejection="keep_all"):
    """TreePO's per-leaf averages of subgroup terms, before the batch whitening."""
    return _leaf("treepo_raw", queries, paths, rewards, None, aggregation, rejection)


def treepo_subgroup_terms(queries, paths, rewards, *, rejection="keep_all"):
    """Per leaf, its kept subgroup terms ``[(depth, value, size), ...]`` by ascending depth."""
    q = _array(queries, np.int64, "queries")
    r = _array(rewards, np.float64, "rewards")
    offsets, flat = _paths(paths, len(q))
    return _treepo.adv_subgroup_terms(q.tobytes(), offsets.tobytes(), flat.tobytes(),
                                      r.tobytes(), rejection)


def grpo(queries, rewards):
    """GRPO: ``(R − mean_g) / (std_g + 1e-6)``, unbiased std, per query group."""
    return compute(queries, None, rewards, estimator="grpo")


def dr_grpo(queries, rewards):
    """Dr.GRPO: ``R − mean_g``."""
    return compute(queries, None, rewards, estimator="dr_grpo")


def rloo(queries, rewards):
    """RLOO: ``R − mean of the other n − 1 rewards of the group``."""
    return compute(queries, None, rewards, estimator="rloo")


def reinforce_pp(queries, rewards, num_tokens):
    """REINFORCE++ baseline: ``R − mean_g``, then the token-weighted batch whitening."""
    return compute(queries, None, rewards, num_tokens, estimator="reinforce_pp")


def whiten(values, num_tokens, *, shift_mean=True):
    """Token-weighted whitening ``(x − μ) / sqrt(var + 1e-8)`` (``shift_mean=False``: ``x / σ``)."""
    v = _array(values, np.float64, "values")
    t = _array(num_tokens, np.int64, "num_tokens")
    return _out(_from_bytes(_treepo.adv_whiten(v.tobytes(), t.tobytes(), bool(shift_mean))), values)


def _node_rewards(rewards):
    """Per-node rewards with None (or NaN) for nodes without one -> float64 with NaN."""
    if is_torch(rewards) or isinstance(rewards, np.ndarray):
        return _array(rewards, np.float64, "rewards")
    if isinstance(rewards, (str, bytes)) or not hasattr(rewards, "__len__"):
        raise TypeError(f"rewards: expected a sequence, got {type(rewards).__name__}")
    return _array([np.nan if r is None else r for r in rewards], np.float64, "rewards")


def compute_edges(parents, rewards, *, estimator="tree_grpo", old_logprob_sum=None,
                  num_tokens=None, window=None, std="population", weights="uniform",
                  reduce="sum", temperature=1.0, eps=1e-6, aggregation="average",
                  rejection="keep_all", whitening="center"):
    """Advantages on a rollout forest given node by node (docs/treepo.md §2.3).

    * ``parents[n]``: the parent of node ``n`` (``None`` or ``-1`` for a query root); parents
      precede their children;
    * ``rewards[n]``: the reward of a leaf (a node without children), ``None``/NaN elsewhere;
    * ``old_logprob_sum[n]``, ``num_tokens[n]``: statistics of the edge into ``n`` (defaults 0
      and 1), read by TreeGRPO's softmax weights and by the leaf-level estimators' whitening;
    * ``window[n]``: whether TreeGRPO trains the edge into ``n`` (default all True).

    Edge-level estimators (``tree_grpo``, ``tree_rl``, ``spo_tree``) return one value per node:
    the advantage of the edge into it, NaN where the edge is not trained (roots, edges outside
    the window, SPO's zero edges). Leaf-level ones return ``(leaf_nodes, values)`` with the leaf
    node ids ascending. TreeGRPO's options: ``std`` = ``population`` | ``sample``, ``weights`` =
    ``uniform`` | ``softmax`` (with ``reduce`` = ``sum`` | ``mean`` and ``temperature``), ``eps``.
    """
    if is_torch(parents) or isinstance(parents, np.ndarray):
        p = _array(parents, np.int64, "parents")
    elif isinstance(parents, (str, bytes)) or not hasattr(parents, "__len__"):
        raise TypeError(f"parents: expected a sequence, got {type(parents).__name__}")
    else:
        p = _array([-1 if x is None else x for x in parents], np.int64, "parents")
    n = len(p)
    r = _node_rewards(rewards)
    lp = np.zeros(n) if old_logprob_sum is None else _array(old_logprob_sum, np.float64,
                                                              "old_logprob_sum")
    t = np.ones(n, np.int64) if num_tokens is None else _array(num_tokens, np.int64, "num_tokens")
    w = np.ones(n, np.int64) if window is None else _array(window, np.int64, "window")
    options = (aggregation, rejection, whitening, std, weights, reduce, float(temperature),
               float(eps))
    per_edge, nodes, values = _treepo.adv_topology(
        str(estimator), p.tobytes(), r.tobytes(), lp.tobytes(), t.tobytes(), w.tobytes(), options)
    values = _out(_from_bytes(values), rewards)
    if per_edge:
        return values
    return np.asarray(nodes, dtype=np.int64), values


def tree_grpo(parents, rewards, **options):
    """TreeGRPO's advantage backup, one value per node (NaN: not trained)."""
    return compute_edges(parents, rewards, estimator="tree_grpo", **options)


def tree_rl(parents, rewards):
    """TreeRL's edge advantages, one value per node (NaN for roots)."""
    return compute_edges(parents, rewards, estimator="tree_rl")


def spo_tree(parents, rewards):
    """SPO-tree's edge advantages, one value per node (NaN: root or exactly-zero edge)."""
    return compute_edges(parents, rewards, estimator="spo_tree")
