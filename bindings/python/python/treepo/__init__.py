"""treepo: tree-structured RL rollouts — Rust kernels for PyTorch and numpy.

* :class:`TreeDecode` — decode attention over a paged KV cache that reads each shared page once
  (plan once per step from FlashInfer-style CSR block tables, run per layer).
* :func:`tree_attention` / :class:`PackedTree` — packed tree-masked attention for training,
  differentiable, at linear mask memory.
* :func:`merge_state` / :func:`merge_states` — combine attention states (natural-log LSE).
* :class:`TreeKvCache` — the prefix-shared paged KV cache bookkeeping.

Tensors cross through DLPack without copies (torch tensors, numpy arrays); outputs passed by
the caller are written in place; CUDA work runs on the caller's current stream. See
``docs/python.md``.
"""

from . import _treepo
from .cache import CsrExport, Fork, Prefill, TreeKvCache
from .decode import LOG2E, TreeDecode
from .merge import merge_state, merge_states
from .packed import PackedTree, dense_mask, tree_attention

__version__ = _treepo.__version__

__all__ = [
    "CsrExport",
    "Fork",
    "LOG2E",
    "PackedTree",
    "Prefill",
    "TreeDecode",
    "TreeKvCache",
    "dense_mask",
    "merge_state",
    "merge_states",
    "tree_attention",
]
