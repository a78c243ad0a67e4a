"""treepo: tree-structured RL rollouts — Rust kernels for PyTorch and numpy.

* :class:`TreeDecode` — decode attention over a paged KV cache that reads each shared page once
  (plan once per step from FlashInfer-style CSR block tables, run per layer).
* :func:`tree_attention` / :class:`PackedTree` — packed tree-masked attention for training,
  differentiable, at linear mask memory.
* :func:`merge_state` / :func:`merge_states` — combine attention states (natural-log LSE).
* :class:`TreeKvCache` — the prefix-shared paged KV cache bookkeeping.
* :mod:`treepo.advantages` — the advantage estimators of the RL core (TreePO, GRPO, Dr.GRPO,
  RLOO, REINFORCE++, TreeGRPO, TreeRL, SPO-tree), exactly the Rust crate's values.
* :class:`TreeSampler` — the TreePO segment sampler driving an engine written in Python;
  :class:`HFEngine` (``treepo.hf``) is that engine for a Hugging Face causal LM.

Tensors cross through DLPack without copies (torch tensors, numpy arrays); outputs passed by
the caller are written in place; CUDA work runs on the caller's current stream. See
``docs/python.md``.
"""

from . import _treepo, advantages
from .cache import CsrExport, Fork, Prefill, TreeKvCache
from .decode import LOG2E, TreeDecode
from .merge import merge_state, merge_states
from .packed import PackedTree, dense_mask, tree_attention
from .sampler import (
    KvExhausted,
    RolloutResult,
    SegmentOutput,
    TreeSampler,
    sample_logits,
)

__version__ = _treepo.__version__

__all__ = [
    "CsrExport",
    "Fork",
    "KvExhausted",
    "LOG2E",
    "PackedTree",
    "Prefill",
    "RolloutResult",
    "SegmentOutput",
    "TreeDecode",
    "TreeKvCache",
    "TreeSampler",
    "advantages",
    "dense_mask",
    "merge_state",
    "merge_states",
    "sample_logits",
    "tree_attention",
]


def __getattr__(name):
    # HFEngine imports torch: loaded on first use, so numpy-only users never import it.
    if name == "HFEngine":
        from .hf import HFEngine

        return HFEngine
    raise AttributeError(f"module 'treepo' has no attribute {name!r}")
