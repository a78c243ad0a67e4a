"""tree_attention (packed tree-masked attention) against torch's SDPA with the equivalent dense
boolean mask, and against per-leaf causal SDPA on the gathered leaf sequences."""

import math

import numpy as np
import pytest
import torch
from conftest import assert_close, random_forest, sdpa_reference

import treepo
from treepo import _treepo

# (seed, H_q, H_kv, D): random trees × GQA groups 1/2/4 × head dims 32/64/128.
CASES = [
    (0, 2, 2, 32),
    (1, 4, 2, 64),
    (2, 8, 2, 128),
    (3, 4, 1, 64),
    (4, 8, 4, 32),
    (5, 6, 3, 128),
]


def _qkv(n, hq, hkv, d, dtype=torch.float32):
    q = torch.randn(n, hq, d, dtype=dtype, requires_grad=True)
    k = torch.randn(n, hkv, d, dtype=dtype, requires_grad=True)
    v = torch.randn(n, hkv, d, dtype=dtype, requires_grad=True)
    return q, k, v


@pytest.mark.parametrize("seed,hq,hkv,d", CASES)
def test_forward_and_grads_match_sdpa(seed, hq, hkv, d):
    rng = np.random.default_rng(seed)
    parents, counts = random_forest(rng)
    tree = treepo.PackedTree.pack(parents, counts)
    n = tree.num_tokens
    q, k, v = _qkv(n, hq, hkv, d)
    o = treepo.tree_attention(q, k, v, tree)
    d_o = torch.randn_like(o)
    o.backward(d_o)
    grads = [x.grad.clone() for x in (q, k, v)]

    q64, k64, v64 = (x.detach().double().requires_grad_() for x in (q, k, v))
    ref = sdpa_reference(q64, k64, v64, tree.dense_mask())
    ref.backward(d_o.double())
    what = f"seed {seed}, N {n}, H_q {hq}, H_kv {hkv}, D {d}"
    assert_close(o.detach(), ref.detach(), 2e-5, 1e-4, f"forward ({what})")
    for name, g, r in zip("qkv", grads, (q64.grad, k64.grad, v64.grad)):
        assert_close(g, r, 1e-4, 1e-3, f"d{name} ({what})")


def test_gqa_equals_repeat_interleave():
    tree = treepo.PackedTree.pack([-1, 0, 1, 1, 0], [9, 5, 7, 3, 0])
    n, hq, hkv, d = tree.num_tokens, 8, 2, 64
    q, k, v = _qkv(n, hq, hkv, d)
    o = treepo.tree_attention(q, k, v, tree)
    kr = k.detach().repeat_interleave(hq // hkv, dim=1)
    vr = v.detach().repeat_interleave(hq // hkv, dim=1)
    ref = sdpa_reference(q.detach(), kr, vr, tree.dense_mask())
    assert_close(o.detach(), ref, 2e-5, 1e-4, "GQA vs repeat_interleave")


def test_each_leaf_equals_causal_attention_on_its_sequence():
    """The peer that does not use our mask at all: every leaf's packed rows equal plain causal
    attention over the leaf's own (unpacked) sequence."""
    rng = np.random.default_rng(11)
    parents, counts = random_forest(rng, max_trees=2)
    tree = treepo.PackedTree.pack(parents, counts)
    q, k, v = _qkv(tree.num_tokens, 4, 2, 32)
    o = treepo.tree_attention(q, k, v, tree).detach()
    for leaf in range(tree.num_leaves):
        idx = torch.from_numpy(tree.leaf_tokens(leaf))
        qt, kt, vt = (x.detach()[idx].double().transpose(0, 1) for x in (q, k, v))
        ref = torch.nn.functional.scaled_dot_product_attention(
            qt, kt, vt, is_causal=True, enable_gqa=True
        ).transpose(0, 1)
        assert_close(o[idx], ref, 2e-5, 1e-4, f"leaf {leaf} of {tree.num_leaves}")
        # position ids are positions in the leaf's sequence
        assert (tree.position_ids[idx.numpy()] == np.arange(len(idx))).all()


def test_sm_scale_and_natural_log_lse():
    tree = treepo.PackedTree.pack([None, 0, 0], [6, 4, 3])
    n, hq, hkv, d = tree.num_tokens, 4, 2, 32
    q, k, v = _qkv(n, hq, hkv, d)
    scale = 0.3
    o, lse = treepo.tree_attention(q, k, v, tree, sm_scale=scale, return_lse=True)
    mask = tree.dense_mask()
    ref = sdpa_reference(q.detach(), k.detach(), v.detach(), mask, sm_scale=scale)
    assert_close(o.detach(), ref, 2e-5, 1e-4, "forward with sm_scale")
    kr = k.detach().double().repeat_interleave(2, dim=1)
    scores = torch.einsum("ihd,jhd->hij", q.detach().double(), kr) * scale
    scores = scores.masked_fill(~mask, -math.inf)
    assert lse.shape == (hq, n) and lse.dtype == torch.float32
    assert_close(lse, torch.logsumexp(scores, dim=-1), 1e-5, 1e-5, "natural-log lse")


def test_from_kv_row_end_matches_pack():
    tree = treepo.PackedTree.pack([-1, 0, 1, 0, -1, 4], [5, 3, 2, 4, 3, 2])
    raw = treepo.PackedTree.from_kv_row_end(torch.from_numpy(tree.kv_row_end))
    assert raw.num_tokens == tree.num_tokens
    assert (raw.position_ids == tree.position_ids).all()
    q, k, v = _qkv(tree.num_tokens, 2, 1, 32)
    a = treepo.tree_attention(q, k, v, tree).detach()
    b = treepo.tree_attention(q, k, v, raw).detach()
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="built from kv_row_end"):
        raw.num_leaves


def test_no_fully_masked_row_can_exist():
    """Every row sees at least its own key: kv_row_end[j] must be > j, so a fully masked softmax
    row is not expressible; a mask that would create one is rejected."""
    with pytest.raises(ValueError, match=r"kv_row_end\[1\] = 1 is outside \[2, 3\]"):
        treepo.PackedTree.from_kv_row_end([3, 1, 3])
    tree = treepo.PackedTree.pack([-1, 0], [1, 0])  # a 0-token leaf: its path still has a token
    assert tree.dense_mask().diagonal().all()


def test_outputs_are_written_everywhere():
    """The raw kernels write every element of caller-provided, NaN-poisoned outputs, in place."""
    rng = np.random.default_rng(3)
    tree = treepo.PackedTree.pack(*random_forest(rng))
    n, hq, hkv, d = tree.num_tokens, 4, 2, 64
    q, k, v = (x.detach() for x in _qkv(n, hq, hkv, d))
    out = torch.full((n, hq, d), math.nan)
    lse = torch.full((hq, n), math.nan)
    ptr = out.data_ptr()
    _treepo.packed_attention_forward(q, k, v, tree._inner, out, lse)
    assert out.data_ptr() == ptr and torch.isfinite(out).all() and torch.isfinite(lse).all()
    d_o = torch.randn(n, hq, d)
    dq, dk, dv = (torch.full(x.shape, math.nan) for x in (q, k, v))
    delta = torch.full((hq, n), math.nan)
    _treepo.packed_attention_backward(q, k, v, out, lse, d_o, tree._inner, dq, dk, dv, delta)
    for g in (dq, dk, dv, delta):
        assert torch.isfinite(g).all()
    assert_close(delta, (d_o * out).sum(-1).T, 1e-5, 1e-5, "delta = rowsum(dO * O)")


def test_numpy_forward():
    tree = treepo.PackedTree.pack([-1, 0, 0], [4, 3, 2])
    rng = np.random.default_rng(0)
    q = rng.standard_normal((tree.num_tokens, 2, 32), dtype=np.float32)
    k = rng.standard_normal((tree.num_tokens, 2, 32), dtype=np.float32)
    v = rng.standard_normal((tree.num_tokens, 2, 32), dtype=np.float32)
    o = treepo.tree_attention(q, k, v, tree)
    assert isinstance(o, np.ndarray)
    ref = sdpa_reference(*(torch.from_numpy(x) for x in (q, k, v)), tree.dense_mask())
    assert_close(torch.from_numpy(o), ref, 2e-5, 1e-4, "numpy forward")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_on_cpu_is_a_clear_type_error(dtype):
    """The CPU reference computes in float32 only (Device::supports_f16 is false on the CPU):
    half inputs raise TypeError naming the op, dtype and backend. The half-precision paths run
    on CUDA (tests/test_cuda.py)."""
    tree = treepo.PackedTree.pack([-1], [8])
    q, k, v = _qkv(8, 2, 2, 32, dtype)
    name = "f16" if dtype == torch.float16 else "bf16"
    with pytest.raises(TypeError, match=f"dtype {name} is not supported on the cpu backend"):
        treepo.tree_attention(q, k, v, tree)


def test_tree_properties():
    tree = treepo.PackedTree.pack([None, 0, 0], [3, 2, 2])
    assert list(tree.kv_row_end) == [7, 7, 7, 5, 5, 7, 7]
    assert list(tree.position_ids) == [0, 1, 2, 3, 4, 3, 4]
    assert (tree.num_nodes, tree.num_leaves, tree.num_trees) == (3, 2, 1)
    assert tree.flat_tokens == 10 and tree.node_range(2) == (5, 7)
    assert list(tree.leaf_tokens(1)) == [0, 1, 2, 5, 6]
    assert list(tree.leaves_under_token) == [2, 2, 2, 1, 1, 1, 1]
    assert np.allclose(tree.token_weights, [1, 1, 1, 0.5, 0.5, 0.5, 0.5])
    assert tree.visible_pairs == int(tree.dense_mask().sum())
