"""Merging attention states computed over disjoint key sets (FlashInfer's ``merge_state`` /
``merge_states``), with NATURAL-log LSEs."""

import numpy as np

from . import _treepo
from ._util import _torch, arg, check_tensor, empty, float32_of, is_torch, stream_of


def merge_states(v, s, *, out=None, lse=None, stream=None):
    """Merges ``num_states`` states per row: ``v [seq_len, num_states, num_heads, head_dim]``
    and their natural-log LSEs ``s [seq_len, num_states, num_heads]`` (both float32) into
    ``(v_merged [seq_len, num_heads, head_dim], s_merged [seq_len, num_heads])``:
    ``v = Σ exp(s_i − m) v_i / Σ exp(s_i − m)``, ``s = m + ln Σ exp(s_i − m)``, ``m = max s_i``.

    A state with ``s = -inf`` is empty and skipped (its ``v`` is never read, NaN is fine); a row
    with only empty states gets ``v = 0, s = -inf``. ``out`` may be any float dtype the backend
    writes (float32 on the CPU) and is written in place, as is ``lse`` (float32).

    FlashInfer's ``s`` is base 2: convert with ``s_nat = s_base2 * ln 2`` before and
    ``s_base2 = s_nat * log2(e)`` after. ``stream``: as in :meth:`TreeDecode.run`.
    """
    check_tensor(v, "v")
    check_tensor(s, "s")
    if out is None:
        out = empty((v.shape[0], v.shape[2], v.shape[3]), v.dtype, v)
    if lse is None:
        lse = empty((v.shape[0], v.shape[2]), float32_of(v), v)
    _treepo.merge_states(arg(v), arg(s), out, lse, stream=stream_of(v, stream))
    return out, lse


def merge_state(v_a, s_a, v_b, s_b, *, out=None, lse=None):
    """Merges two states per row: ``v_a, v_b [seq_len, num_heads, head_dim]``,
    ``s_a, s_b [seq_len, num_heads]`` (float32, natural-log LSEs) -> ``(v, s)``. The pair is
    stacked into one ``[seq_len, 2, ...]`` buffer (a copy) and merged by :func:`merge_states`."""
    if is_torch(v_a):
        torch = _torch()
        vs = torch.stack([arg(v_a), arg(v_b)], dim=1)
        ss = torch.stack([arg(s_a), arg(s_b)], dim=1)
    else:
        vs = np.stack([v_a, v_b], axis=1)
        ss = np.stack([s_a, s_b], axis=1)
    return merge_states(vs, ss, out=out, lse=lse)
