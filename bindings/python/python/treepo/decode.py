"""Tree decode attention over a paged KV cache: plan once per step, run per layer."""

import math

from . import _treepo
from ._util import (
    arg,
    check_tensor,
    device_stream,
    empty,
    float32_of,
    host_index,
    parse_device,
    same_allocation,
    stream_of,
)

LOG2E = 1.0 / math.log(2.0)
"""Multiply our natural-log LSE by this to get FlashInfer's base-2 LSE."""


class TreeDecode:
    """Batch decode attention that reads each shared KV page once for all the sequences that
    hold it (FlashInfer's ``BatchDecodeWithPagedKVCacheWrapper`` shape).

    ``plan`` takes an engine's own block tables — FlashInfer's paged-KV CSR arrays — and
    recovers the prefix tree from the page ids (sequences starting with the same physical pages
    share them); ``plan_from_cache`` takes a :class:`treepo.TreeKvCache`. ``run`` is then called
    once per layer. The plan lives on ``device`` (``"cpu"`` or ``"cuda[:N]"``).

    Query rows are the sequences' rows in batch order: one per sequence for decode, or
    ``q_rows[i]`` (the sequence's last positions, causal among themselves) for a segment append.
    """

    def __init__(self, device="cpu"):
        self._ordinal = parse_device(device)
        self._inner = _treepo.TreeDecode()

    @property
    def device(self):
        """``"cpu"`` or ``"cuda:N"``: where the plan lives and ``run`` must be called."""
        return "cpu" if self._ordinal is None else f"cuda:{self._ordinal}"

    def plan(
        self,
        indptr,
        indices,
        last_page_len,
        num_qo_heads,
        num_kv_heads,
        head_dim,
        page_size,
        *,
        q_rows=None,
        kind="tree",
        num_pages=None,
        max_chunk=None,
        units=None,
        stream=None,
        min_shared=0,
    ):
        """Plans one step from raw CSR block tables.

        ``indptr [batch+1]``, ``indices [indptr[-1]]`` (page ids), ``last_page_len [batch]``
        (in ``1..=page_size``) are int32 (CPU tensors/arrays or sequences of ints; CUDA tensors
        are copied to the host). ``q_rows [batch]``: query rows per sequence (default 1).
        ``kind``: ``"tree"`` (default), ``"naive"`` (per-sequence, no sharing), ``"cascade"``,
        ``"tree_split"`` (``max_chunk`` tokens per piece), ``"tree_fill"`` (``units``
        parallel workers per KV head). ``num_pages``: pages of the cache the plan may address
        (default ``max(indices) + 1``; the cache passed to ``run`` may hold more). ``stream``
        (CUDA): the stream the tables are uploaded on (see :meth:`run`). ``min_shared``
        (tree kinds): a shared node shorter than this many tokens is read with each child's
        chunk instead of as a work item of its own (default 0: every node shared; the Rust
        engine uses 64 on the CPU).

        Returns the number of query rows ``run`` expects.
        """
        return self._inner.plan(
            host_index(indptr),
            host_index(indices),
            host_index(last_page_len),
            num_qo_heads,
            num_kv_heads,
            head_dim,
            page_size,
            q_rows=host_index(q_rows) if q_rows is not None else None,
            kind=kind,
            max_chunk=max_chunk,
            units=units,
            num_pages=num_pages,
            device_ordinal=self._ordinal,
            stream=device_stream(self._ordinal, stream),
            min_shared=min_shared,
        )

    def plan_from_cache(
        self, cache, leaves, num_qo_heads, num_kv_heads, head_dim, *, q_rows=None, kind="tree",
        max_chunk=None, units=None, stream=None, min_shared=0,
    ):
        """Plans one step for the paths ending at ``leaves`` (node ids) of ``cache`` (a
        :class:`treepo.TreeKvCache`); query rows are the leaves' rows in the order given."""
        return self._inner.plan_from_cache(
            cache._inner,
            [int(x) for x in leaves],
            num_qo_heads,
            num_kv_heads,
            head_dim,
            q_rows=q_rows,
            kind=kind,
            max_chunk=max_chunk,
            units=units,
            device_ordinal=self._ordinal,
            stream=device_stream(self._ordinal, stream),
            min_shared=min_shared,
        )

    @property
    def plan_info(self):
        """``(rows, num_qo_heads, num_kv_heads, head_dim, page_size, num_pages)`` or None."""
        return self._inner.plan_info()

    def run(
        self,
        q,
        paged_kv_cache,
        *,
        layer=0,
        sm_scale=None,
        out=None,
        lse=None,
        kv_layout="NHD",
        lse_base2=False,
        stream=None,
    ):
        """One layer of attention with the current plan; returns ``(o, lse)``.

        ``q [rows, num_qo_heads, head_dim]`` (float32/float16/bfloat16; the CPU backend computes
        in float32 only). ``paged_kv_cache``: one tensor ``[num_pages, 2, page_size,
        num_kv_heads, head_dim]`` (NHD) or ``[num_pages, 2, num_kv_heads, page_size,
        head_dim]`` (HND), optionally with a leading ``[num_layers, ...]`` dimension (then
        ``layer`` picks one), or a ``(k_cache, v_cache)`` pair of views of ONE allocation
        (e.g. ``kv[:, 0], kv[:, 1]``). Any strides work for the cache as long as ``head_dim``
        is contiguous; ``q``, ``out`` and ``lse`` must be C-contiguous.

        ``out`` (dtype of q) and ``lse`` (``[rows, num_qo_heads]`` float32) are written in place
        when given, else allocated. ``lse`` is the NATURAL-log sum of exponentials of the scaled
        scores (FlashInfer returns base 2: pass ``lse_base2=True`` to get that, or multiply by
        :data:`LOG2E`). CUDA: runs on ``stream`` (an int ``CUstream``/``cudaStream_t``
        handle, or an object with ``cuda_stream`` (torch) or ``ptr`` (CuPy)) when given, else
        on torch's current stream for torch tensors, else on the legacy default stream (0).
        """
        if isinstance(paged_kv_cache, (tuple, list)):
            if len(paged_kv_cache) != 2:
                raise ValueError(
                    "paged_kv_cache: expected one tensor or a (k_cache, v_cache) pair, got a "
                    f"sequence of {len(paged_kv_cache)}"
                )
            k_cache, v_cache = paged_kv_cache
            if not same_allocation(k_cache, v_cache):
                raise ValueError(
                    "paged_kv_cache: (k_cache, v_cache) must be two views of ONE allocation "
                    "(e.g. kv[:, 0] and kv[:, 1] of a [num_pages, 2, ...] tensor): the kernels "
                    "address V at a fixed offset from K. Allocate K and V together, or pass the "
                    "single [num_pages, 2, ...] tensor."
                )
        else:
            k_cache, v_cache = paged_kv_cache, None
        check_tensor(q, "q")
        if out is None:
            out = empty(tuple(q.shape), q.dtype, q)
        if lse is None:
            lse = empty(tuple(q.shape[:2]), float32_of(q), q)
        self._inner.run(
            arg(q),
            arg(k_cache),
            out,
            v=arg(v_cache) if v_cache is not None else None,
            lse=lse,
            kv_layout=kv_layout,
            layer=layer,
            sm_scale=sm_scale,
            stream=stream_of(q, stream),
        )
        if lse_base2:
            lse *= LOG2E
        return out, lse

    def __repr__(self):
        return f"TreeDecode(device={self.device!r}, plan={self.plan_info})"


