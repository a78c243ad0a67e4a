"""Packed tree-masked attention (training): every token of one or several rollout trees packed
once in DFS pre-order, attending through the tree mask; forward and backward in Rust."""

import numpy as np

from . import _treepo
from ._util import _torch, arg, check_tensor, empty, f32, float32_of, i32, i64, is_torch, stream_of


class PackedTree:
    """A forest packed in DFS pre-order, and its tree mask.

    Key ``j`` is visible to query rows ``[j, kv_row_end[j])``: itself, the later tokens of its
    node and its node's whole subtree. Build it with :meth:`pack` (parents + token counts, DFS
    pre-order) or :meth:`from_kv_row_end` (the mask alone). ``position_ids`` give each token's
    depth (for RoPE); :meth:`dense_mask` the equivalent ``[N, N]`` boolean mask (True = attend,
    SDPA's convention) for comparisons with SDPA / FlexAttention.
    """

    def __init__(self, inner):
        self._inner = inner

    @classmethod
    def pack(cls, parents, num_tokens):
        """``parents[i]``: index of node i's parent (an earlier node) or None/-1 for the root of
        a new tree; ``num_tokens[i]``: its token count. Nodes must be in DFS pre-order."""
        ps = [-1 if p is None else int(p) for p in parents]
        return cls(_treepo.PackedTree.pack(ps, [int(n) for n in num_tokens]))

    @classmethod
    def from_nodes(cls, nodes):
        """From ``(parent, num_tokens)`` pairs in DFS pre-order (parent None/-1 for a root)."""
        nodes = list(nodes)
        return cls.pack([p for p, _ in nodes], [n for _, n in nodes])

    @classmethod
    def from_kv_row_end(cls, kv_row_end):
        """From a raw ``kv_row_end`` (int32 CPU tensor/array or a sequence of ints); only the
        mask and position ids are then known."""
        if is_torch(kv_row_end) and kv_row_end.is_cuda:
            kv_row_end = kv_row_end.cpu()
        return cls(_treepo.PackedTree.from_kv_row_end(kv_row_end))

    @property
    def num_tokens(self):
        """N, the packed tokens."""
        return self._inner.num_tokens

    @property
    def kv_row_end(self):
        """int32 ``[N]``: the tree mask."""
        return i32(self._inner._kv_row_end())

    @property
    def position_ids(self):
        """int64 ``[N]``: each token's position in every root-to-leaf sequence through it."""
        return i64(self._inner._position_ids())

    @property
    def token_node(self):
        """int64 ``[N]``: the node of each token (needs :meth:`pack`)."""
        return i64(self._inner._token_node())

    @property
    def leaves_under_token(self):
        """int64 ``[N]``: how many leaf sequences contain each token (needs :meth:`pack`)."""
        return i64(self._inner._leaves_under_token())

    @property
    def node_indptr(self):
        """int64 ``[num_nodes + 1]``: node i's tokens are ``node_indptr[i]:node_indptr[i+1]``."""
        return i64(self._inner._node_indptr())

    @property
    def token_weights(self):
        """float32 ``[N]``: the weight of each token in a loss averaged over the leaves of its
        tree (``leaves_under_token / leaves_in_tree``)."""
        return f32(self._inner._token_weights())

    def leaf_tokens(self, leaf):
        """int64: the packed indices of leaf ``leaf``'s sequence, root first (to gather its
        tokens, labels or per-token losses)."""
        return i64(self._inner._leaf_tokens(leaf))

    def leaf_node(self, leaf):
        """The node that ends leaf ``leaf``'s sequence."""
        return self._inner.leaf_node(leaf)

    def node_range(self, node):
        """``(start, end)``: node ``node``'s packed tokens."""
        return self._inner.node_range(node)

    def tree_range(self, tree):
        """``(start, end)``: tree ``tree``'s packed tokens."""
        return self._inner.tree_range(tree)

    num_nodes = property(lambda self: self._inner.num_nodes, doc="Nodes packed.")
    num_leaves = property(lambda self: self._inner.num_leaves, doc="Leaf sequences.")
    num_trees = property(lambda self: self._inner.num_trees, doc="Trees in the forest.")
    flat_tokens = property(
        lambda self: self._inner.flat_tokens, doc="Tokens of the leaves unpacked."
    )
    token_reduction = property(
        lambda self: self._inner.token_reduction, doc="flat_tokens / num_tokens."
    )
    visible_pairs = property(
        lambda self: self._inner.visible_pairs, doc="Query/key pairs the mask leaves visible."
    )

    def dense_mask(self, device=None):
        """The equivalent ``[N, N]`` boolean mask, ``mask[i, j] = j <= i < kv_row_end[j]``
        (True = attend): a torch tensor on ``device`` if given (or torch is importable), else
        numpy. For ``scaled_dot_product_attention(attn_mask=...)`` or a FlexAttention
        ``mask_mod``."""
        kv = self.kv_row_end
        i = np.arange(len(kv))[:, None]
        j = np.arange(len(kv))[None, :]
        mask = (j <= i) & (i < kv[None, :])
        torch = _torch()
        if torch is None:
            if device is not None:
                raise ValueError("dense_mask(device=...) needs torch")
            return mask
        return torch.from_numpy(mask).to(device if device is not None else "cpu")

    def __repr__(self):
        return repr(self._inner)


def dense_mask(tree, device=None):
    """``tree.dense_mask(device)``: the ``[N, N]`` boolean mask equivalent to ``tree``."""
    return tree.dense_mask(device)


def _forward(q, k, v, tree, sm_scale):
    check_tensor(q, "q")
    check_tensor(k, "k")
    check_tensor(v, "v")
    out = empty(tuple(q.shape), q.dtype, q)
    lse = empty((q.shape[1], q.shape[0]), float32_of(q), q)
    _treepo.packed_attention_forward(
        arg(q), arg(k), arg(v), tree._inner, out, lse, sm_scale=sm_scale, stream=stream_of(q)
    )
    return out, lse


def _make_function():
    torch = _torch()
    if torch is None:
        return None

    class TreeAttentionFunction(torch.autograd.Function):
        """Autograd of packed tree attention: forward saves ``lse``, backward recomputes the
        probabilities from it (FlashAttention-2 style)."""

        @staticmethod
        def forward(ctx, q, k, v, tree, sm_scale):
            out, lse = _forward(q, k, v, tree, sm_scale)
            ctx.save_for_backward(q, k, v, out, lse)
            ctx.tree, ctx.sm_scale = tree, sm_scale
            ctx.mark_non_differentiable(lse)
            return out, lse

        @staticmethod
        def backward(ctx, d_o, _d_lse):
            q, k, v, out, lse = ctx.saved_tensors
            d_o = d_o.contiguous()
            dq = torch.empty(q.shape, dtype=q.dtype, device=q.device)
            dk = torch.empty(k.shape, dtype=k.dtype, device=k.device)
            dv = torch.empty(v.shape, dtype=v.dtype, device=v.device)
            delta = torch.empty(lse.shape, dtype=torch.float32, device=q.device)
            _treepo.packed_attention_backward(
                q.detach(), k.detach(), v.detach(), out.detach(), lse, d_o,
                ctx.tree._inner, dq, dk, dv, delta,
                sm_scale=ctx.sm_scale, stream=stream_of(q),
            )
            return dq, dk, dv, None, None

    return TreeAttentionFunction


_FUNCTION = None


def tree_attention(q, k, v, tree, *, sm_scale=None, return_lse=False):
    """Tree-masked attention over packed tokens, differentiable in ``q``, ``k`` and ``v``.

    ``q [N, H_q, D]``, ``k, v [N, H_kv, D]`` (``H_q`` a multiple of ``H_kv``: GQA), C-contiguous,
    on one device; ``tree`` a :class:`PackedTree` with ``N`` tokens. Equivalent to
    ``scaled_dot_product_attention(q, k, v, attn_mask=tree.dense_mask())`` per head (with the
    ``[N, H, D]`` layout), at linear mask memory. ``sm_scale`` defaults to ``1/sqrt(D)``.

    Dtypes: float32 everywhere; float16/bfloat16 on CUDA (the CPU backend raises TypeError).
    With ``return_lse=True`` also returns the natural-log ``lse [H_q, N]`` (float32,
    not differentiable). torch tensors go through autograd; numpy arrays run the forward only.
    """
    global _FUNCTION
    if not is_torch(q):
        out, lse = _forward(q, k, v, tree, sm_scale)
        return (out, lse) if return_lse else out
    if _FUNCTION is None:
        _FUNCTION = _make_function()
    out, lse = _FUNCTION.apply(q, k, v, tree, sm_scale)
    return (out, lse) if return_lse else out
