"""The TreePO segment sampler (docs/treepo.md §1), run by the Rust crate ``treepo-sampler``,
driving an inference engine written in Python.

The engine is any object with these methods (node handles are any Python objects it chooses):

* ``prefill(prompts: list[list[int]]) -> list[handle]`` — one root node per prompt;
* ``fork(node, n: int) -> list[handle]`` — ``n`` new empty children sharing ``node``'s context;
* ``decode_segment(requests: list[SegmentRequest], params: DecodeParams) -> list[output]`` —
  appends up to ``req.max_tokens`` tokens to each ``req.node``, stopping right after a token in
  ``params.stop``; token ``i`` of a request is drawn with the uniform ``req.uniform(i)``; each
  output is a :class:`SegmentOutput` (or a dict with the same keys, or a ``(tokens, logprobs)``
  tuple): the new tokens and their log-probs under the processed distribution they were drawn
  from (temperature, top-k, top-p applied: :func:`sample_logits` does it the sampler's way);
* ``release(node)`` — the handle is dead; its context may be freed once no descendant needs it;
* ``kv_pages_in_use() -> int`` (optional).

An exception raised by the engine ends sampling (every node still held is released first) and
is re-raised as is; raise :class:`KvExhausted` instead to tell the sampler the KV pool is full
(it then degrades gracefully, see docs/treepo.md §1.1).
"""

from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np

from . import _treepo

SegmentRequest = _treepo.SegmentRequest
DecodeParams = _treepo.DecodeParams

__all__ = [
    "DecodeParams",
    "KvExhausted",
    "Leaf",
    "QueryResult",
    "RolloutResult",
    "SegmentOutput",
    "SegmentRequest",
    "TreeSampler",
    "sample_logits",
]


class KvExhausted(Exception):
    """Raised by an engine whose KV pool cannot hold the operation (recoverable)."""

    def __init__(self, requested=0, free=0):
        super().__init__(f"KV pool exhausted: {requested} pages requested, {free} free")
        self.requested = requested
        self.free = free


@dataclass
class SegmentOutput:
    """What one request produced. ``end``: ``"max_tokens"``, ``"stop"`` or ``"kv_exhausted"``
    (``None``: ``"stop"`` when the last token is a stop token, else ``"max_tokens"``)."""

    tokens: List[int]
    logprobs: List[float]
    end: Optional[str] = None
    entropies: Optional[List[float]] = None


def sample_logits(logits, params, u):
    """Draws one token from a logits row exactly as the sampler's own engines do
    (``treepo_sampler::logits``): temperature, then top-k, then top-p (ties kept), then the
    inverse-CDF draw with uniform ``u`` in token-id order. Returns ``(token, logprob, entropy)``,
    the log-prob and entropy (``None`` unless ``params.entropy``) under that processed
    distribution. ``logits``: a 1-D float array / tensor (cast to float32)."""
    mod = type(logits).__module__
    if mod.startswith("torch"):
        logits = logits.detach().float().cpu().numpy()
    row = np.ascontiguousarray(logits, dtype=np.float32).reshape(-1)
    return _treepo.sample_logits(row.tobytes(), float(params.temperature), int(params.top_k),
                                 float(params.top_p), float(u), bool(params.entropy))


@dataclass
class Leaf:
    """One trajectory: its last node, the node ids below the prompt node down to it (``path``:
    what ``treepo.advantages`` reads), its response tokens and their log-probs."""

    node: int
    path: List[int]
    tokens: np.ndarray
    logprobs: np.ndarray
    finish_reason: str
    response_len: int
    step: int


@dataclass
class QueryResult:
    """The tree of one query. Node 0 is the prompt node; node ``n`` is one segment whose parent
    is ``parents[n]`` (-1 for node 0), tokens ``node_tokens[n]``."""

    id: int
    prompt: List[int]
    status: str
    parents: np.ndarray
    depths: np.ndarray
    ordinals: np.ndarray
    node_tokens: List[np.ndarray]
    node_logprobs: List[np.ndarray]
    node_entropies: List[Optional[np.ndarray]]
    leaves: List[Leaf]
    initial_fanout: int
    fallbacks: int

    @property
    def num_nodes(self):
        return len(self.parents)


@dataclass
class RolloutResult:
    """A sampling run: one :class:`QueryResult` per prompt (input order), the cost counters and
    the config warnings."""

    mode: str
    queries: List[QueryResult]
    cost: dict
    warnings: List[str] = field(default_factory=list)

    @property
    def leaves(self):
        """Every leaf, queries in order, leaves in finishing order (the flat order used below)."""
        return [leaf for q in self.queries for leaf in q.leaves]

    def _flat_rewards(self, rewards):
        n = len(self.leaves)
        if len(rewards) == len(self.queries) and n != len(self.queries) and all(
                hasattr(r, "__len__") for r in rewards):
            flat = [x for r in rewards for x in r]
        else:
            flat = list(rewards)
        if len(flat) != n:
            raise ValueError(f"rewards: expected {n} values (one per leaf) or one list per query, "
                             f"got {len(flat)}")
        return flat

    def advantage_inputs(self, rewards):
        """The keyword arguments of :func:`treepo.advantages.compute` for these leaves:
        ``queries`` (index of the query in this result), ``paths``, ``rewards``, ``num_tokens``.
        ``rewards``: one per leaf in :attr:`leaves` order, or one list per query."""
        flat = self._flat_rewards(rewards)
        queries = [qi for qi, q in enumerate(self.queries) for _ in q.leaves]
        return {
            "queries": queries,
            "paths": [leaf.path for leaf in self.leaves],
            "rewards": flat,
            "num_tokens": [leaf.response_len for leaf in self.leaves],
        }

    def topology(self, rewards):
        """The forest for :func:`treepo.advantages.compute_edges`, as ``(kwargs, origin)``:
        ``kwargs`` holds ``parents``, ``rewards``, ``old_logprob_sum`` and ``num_tokens`` (each
        segment's summed log-probs and token count), and topology node ``j`` is node
        ``origin[j] = (query index, node id)`` of this result. Nodes below which no trajectory
        ends (a path dropped under KV exhaustion) are left out, and a leaf whose node was later
        forked by fallback gets a zero-token child carrying its reward (its ``origin`` is the
        leaf's node), so every trajectory ends at a childless node."""
        flat = self._flat_rewards(rewards)
        parents, rs, lps, toks, origin = [], [], [], [], []
        k = 0
        for qi, q in enumerate(self.queries):
            keep = np.zeros(q.num_nodes, bool)
            keep[0] = True
            for leaf in q.leaves:
                keep[leaf.path] = True
            has_child = np.zeros(q.num_nodes, bool)
            kept = np.flatnonzero(keep)
            has_child[q.parents[kept[1:]]] = True
            new = {}
            for i in kept:
                i = int(i)
                new[i] = len(parents)
                parents.append(None if i == 0 else new[int(q.parents[i])])
                rs.append(None)
                lps.append(float(np.sum(q.node_logprobs[i], dtype=np.float64)))
                toks.append(len(q.node_tokens[i]))
                origin.append((qi, i))
            for leaf in q.leaves:
                if has_child[leaf.node]:
                    parents.append(new[leaf.node])
                    rs.append(flat[k])
                    lps.append(0.0)
                    toks.append(0)
                    origin.append((qi, leaf.node))
                else:
                    rs[new[leaf.node]] = flat[k]
                k += 1
        kwargs = {"parents": parents, "rewards": rs, "old_logprob_sum": lps, "num_tokens": toks}
        return kwargs, origin


def _query(d):
    leaves = [
        Leaf(node=l["node"], path=list(l["path"]), tokens=np.asarray(l["tokens"], np.int64),
             logprobs=np.asarray(l["logprobs"], np.float32), finish_reason=l["finish_reason"],
             response_len=l["response_len"], step=l["step"])
        for l in d["leaves"]
    ]
    return QueryResult(
        id=d["id"], prompt=list(d["prompt"]), status=d["status"],
        parents=np.asarray(d["parents"], np.int64), depths=np.asarray(d["depths"], np.int64),
        ordinals=np.asarray(d["ordinals"], np.int64),
        node_tokens=[np.asarray(t, np.int64) for t in d["node_tokens"]],
        node_logprobs=[np.asarray(t, np.float32) for t in d["node_logprobs"]],
        node_entropies=[None if e is None else np.asarray(e, np.float32)
                        for e in d["node_entropies"]],
        leaves=leaves, initial_fanout=d["initial_fanout"], fallbacks=d["fallbacks"],
    )


class TreeSampler:
    """The TreePO sampler over a config: ``TreeSampler({"tree_max_depth": 4, ...})`` or
    ``TreeSampler(tree_max_depth=4, ...)`` (keyword arguments override the dict). Keys are those
    of the Rust ``TreeConfig`` (TreePO's ``tree_*`` names; see docs/treepo.md §1): the shape
    ``tree_max_depth`` (d), ``tree_max_token_per_step`` (l), ``tree_fixed_step_div`` (b),
    ``tree_max_width`` (w), the policies, ``stop_token_ids``, ``temperature``, ``top_k``,
    ``top_p``, ``tree_entropy`` (``"skip"``/``"compute"``), ``seed``. Unknown keys and invalid
    values raise ``ValueError``.

    ``has_answer`` / ``is_repetition``: optional callables on a segment's token ids (the task
    hooks of docs/treepo.md §1.3; default: never). A hook call that raises counts as ``False``;
    sampling goes on, and the first such exception is re-raised when ``sample`` returns."""

    def __init__(self, config=None, *, has_answer=None, is_repetition=None, **kwargs):
        cfg = dict(config or {})
        cfg.update(kwargs)
        self._core = _treepo.TreeSampler(cfg)
        self.has_answer = has_answer
        self.is_repetition = is_repetition

    @property
    def config_toml(self):
        """The resolved config (defaults included) as TOML text."""
        return self._core.config_toml()

    @property
    def warnings(self):
        """Config validation warnings."""
        return self._core.warnings

    def _run(self, engine, prompts, ids, sequential):
        prompts = [[int(t) for t in p] for p in prompts]
        ids = None if ids is None else [int(i) for i in ids]
        out = self._core.sample(engine, prompts, ids, (self.has_answer, self.is_repetition),
                                KvExhausted, sequential)
        return RolloutResult(mode=out["mode"], queries=[_query(q) for q in out["queries"]],
                             cost=out["cost"], warnings=list(out["warnings"]))

    def sample(self, engine, prompts, ids=None):
        """TreePO sampling of ``prompts`` (lists of token ids; query ids ``ids``, default
        ``0..n``, seed each query's randomness) through ``engine``; a :class:`RolloutResult`."""
        return self._run(engine, prompts, ids, False)

    def sample_sequential(self, engine, prompts, ids=None):
        """The sequential baseline (``w`` independent samples per query, docs/treepo.md §1.7)."""
        return self._run(engine, prompts, ids, True)
