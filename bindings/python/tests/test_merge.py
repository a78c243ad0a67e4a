"""merge_state / merge_states against a torch reference and the cascade identity
attend(A ∪ B) = merge(attend(A), attend(B))."""

import math

import numpy as np
import torch
from conftest import assert_close

import treepo


def merge_reference(v, s):
    """``v [n, k, H, D]``, ``s [n, k, H]`` (natural log) -> merged ``(v, s)`` in float64."""
    v, s = v.double(), s.double()
    w = torch.softmax(s, dim=1).nan_to_num(0.0)
    out = (w[..., None] * v.nan_to_num(0.0)).sum(1)
    return out, torch.logsumexp(s, dim=1)


def test_merge_states_matches_reference():
    n, k, h, d = 17, 5, 4, 64
    v = torch.randn(n, k, h, d)
    s = torch.randn(n, k, h) * 3
    out = torch.full((n, h, d), math.nan)
    lse = torch.full((n, h), math.nan)
    o, l = treepo.merge_states(v, s, out=out, lse=lse)
    assert o.data_ptr() == out.data_ptr() and l.data_ptr() == lse.data_ptr()
    ro, rl = merge_reference(v, s)
    assert_close(o, ro, 1e-6, 1e-5, "merged v")
    assert_close(l, rl, 1e-6, 1e-6, "merged lse")


def test_empty_states_are_skipped():
    n, k, h, d = 4, 3, 2, 8
    v = torch.randn(n, k, h, d)
    s = torch.randn(n, k, h)
    s[0, 1] = -math.inf
    v[0, 1] = math.nan  # never read
    s[2] = -math.inf  # a row with no state at all
    o, l = treepo.merge_states(v, s)
    ro, rl = merge_reference(v, s)
    assert torch.isfinite(o).all()
    assert (o[2] == 0).all() and torch.isneginf(l[2]).all()
    keep = [0, 1, 3]
    assert_close(o[keep], ro[keep], 1e-6, 1e-5, "merge with empty states")
    assert_close(l[keep], rl[keep], 1e-6, 1e-6, "lse with empty states")


def test_merge_state_pair_is_the_cascade_identity():
    n, h, d, keys = 9, 4, 32, 40
    q = torch.randn(n, h, d)
    kk = torch.randn(keys, h, d)
    vv = torch.randn(keys, h, d)

    def attend(idx):
        s = torch.einsum("nhd,jhd->nhj", q.double(), kk[idx].double()) / math.sqrt(d)
        o = torch.einsum("nhj,jhd->nhd", torch.softmax(s, -1), vv[idx].double())
        return o.float(), torch.logsumexp(s, -1).float()

    a, b = torch.arange(0, 25), torch.arange(25, keys)
    (va, sa), (vb, sb) = attend(a), attend(b)
    v, s = treepo.merge_state(va, sa, vb, sb)
    rv, rs = attend(torch.arange(keys))
    assert_close(v, rv, 1e-5, 1e-4, "merge_state == attention over the union")
    assert_close(s, rs, 1e-5, 1e-5, "merged lse")


def test_numpy_merge():
    rng = np.random.default_rng(0)
    v = rng.standard_normal((3, 2, 2, 16), dtype=np.float32)
    s = rng.standard_normal((3, 2, 2), dtype=np.float32)
    o, l = treepo.merge_states(v, s)
    ro, rl = merge_reference(torch.from_numpy(v), torch.from_numpy(s))
    assert isinstance(o, np.ndarray)
    assert_close(torch.from_numpy(o), ro, 1e-6, 1e-5, "numpy merge")
    assert_close(torch.from_numpy(l), rl, 1e-6, 1e-6, "numpy merge lse")
