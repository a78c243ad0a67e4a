"""Every bad call raises a Python exception of the right type whose message says what was
wrong — never a crash. Table-driven: each entry is one distinct bad call."""

import numpy as np
import pytest
import torch
from conftest import FakeDeviceTensor

import treepo
from treepo import _treepo

PS, HQ, HKV, D, PAGES = 4, 4, 2, 32, 16
I32 = np.int32
INDPTR = np.array([0, 2, 4], I32)
INDICES = np.array([3, 0, 3, 1], I32)
LAST = np.array([2, 3], I32)


def planned(**kw):
    dec = treepo.TreeDecode()
    dec.plan(INDPTR, INDICES, LAST, HQ, HKV, D, PS, num_pages=PAGES, **kw)
    return dec


def kv(layout="NHD", pages=PAGES, heads=HKV):
    shape = (pages, 2, PS, heads, D) if layout == "NHD" else (pages, 2, heads, PS, D)
    return torch.randn(shape)


def q(rows=2, heads=HQ, d=D, dtype=torch.float32):
    return torch.randn(rows, heads, d, dtype=dtype)


TREE = treepo.PackedTree.pack([-1, 0, 0], [4, 2, 2])
N = TREE.num_tokens


def qkv(n=N, hq=4, hkv=2, d=32, dtype=torch.float32):
    return (torch.randn(n, hq, d, dtype=dtype), torch.randn(n, hkv, d, dtype=dtype),
            torch.randn(n, hkv, d, dtype=dtype))


def attn(q_, k_, v_, tree=TREE):
    return treepo.tree_attention(q_, k_, v_, tree)


def _kv_swapped():
    c = kv()
    return planned().run(q(), (c[:, 1], c[:, 0]))


def _readonly_out():
    out = np.zeros((2, HQ, D), np.float32)
    out.setflags(write=False)
    return planned().run(q().numpy(), kv().numpy(), out=out)


def _out_aliases_q():
    qq = q()
    return planned().run(qq, kv(), out=qq)


def _fake_cuda_mixed():
    qq, k, v = qkv()
    return _treepo.packed_attention_forward(
        FakeDeviceTensor(tuple(qq.shape)), k, v, TREE._inner, torch.empty_like(qq),
        torch.empty(4, N),
    )


def _fake_cuda_all():
    shapes = [(N, 4, 32), (N, 2, 32), (N, 2, 32), (N, 4, 32), (4, N)]
    t = [FakeDeviceTensor(s) for s in shapes]
    return _treepo.packed_attention_forward(t[0], t[1], t[2], TREE._inner, t[3], t[4])


def _fake_other_device():
    fake = FakeDeviceTensor((2, HQ, D), device_type=8)  # kDLMetal
    return planned()._inner.run(fake, kv(), torch.empty(2, HQ, D))


def _unaligned_indptr():
    raw = np.zeros(13, np.uint8)
    indptr = np.frombuffer(raw.data, dtype=np.int32, count=3, offset=1)
    return treepo.TreeDecode().plan(indptr, INDICES, LAST, HQ, HKV, D, PS)


def _cache():
    c = treepo.TreeKvCache(8, 4)
    return c, c.create_root([1, 2, 3, 4, 5])


def _release_twice():
    c, r = _cache()
    f = c.fork(r.node, 1)
    c.release(f.children[0])
    c.release(f.children[0])


def _append_frozen():
    c, r = _cache()
    c.fork(r.node, 2)
    c.append(r.node, [6])


def _export_not_leaf():
    c, r = _cache()
    c.fork(r.node, 2)
    c.export([r.node])


# (id, callable, exception type, message fragment)
BAD = [
    # --- tree_attention / PackedTree ---
    ("q float64", lambda: attn(*qkv(dtype=torch.float64)), TypeError,
     "q: expected a float32, float16 or bfloat16 tensor, got float64"),
    ("k dtype != q", lambda: attn(qkv()[0], *[x.half() for x in qkv()[1:]]), TypeError,
     "k: dtype float16 differs from q's float32"),
    ("f16 on the CPU backend", lambda: attn(*qkv(dtype=torch.float16)), TypeError,
     "not supported on the cpu backend"),
    ("q not contiguous", lambda: attn(torch.randn(N, 32, 4).transpose(1, 2), *qkv()[1:]),
     ValueError, "q: expected a C-contiguous"),
    ("q rows != tree tokens", lambda: attn(*qkv(n=N + 1)), ValueError,
     "q: expected shape [8, 4, 32]"),
    ("H_q not a multiple of H_kv", lambda: attn(*qkv(hq=3)), ValueError,
     "must be a positive multiple of num_kv_heads"),
    ("k head_dim != q", lambda: attn(qkv()[0], torch.randn(N, 2, 16), torch.randn(N, 2, 16)),
     ValueError, "k: expected shape [8, 2, 32]"),
    ("q 2-D", lambda: attn(torch.randn(N, 32), *qkv()[1:]), ValueError,
     "q: expected 3 dimensions"),
    ("q a list", lambda: attn([[0.0]], *qkv()[1:]), TypeError,
     "q: expected a tensor supporting DLPack"),
    ("tensors on two devices", _fake_cuda_mixed, ValueError, "all tensors must be on one device"),
    ("tensor on an unsupported device", _fake_other_device, ValueError,
     "must be on the CPU or a CUDA device"),
    ("pack: parent after child", lambda: treepo.PackedTree.pack([-1, 2, 0], [1, 1, 1]),
     ValueError, "is not before it in DFS pre-order"),
    ("pack: not pre-order", lambda: treepo.PackedTree.pack([-1, 0, 0, 1], [1, 1, 1, 1]),
     ValueError, "not in pre-order"),
    ("pack: empty", lambda: treepo.PackedTree.pack([], []), ValueError, "no nodes"),
    ("pack: length mismatch", lambda: treepo.PackedTree.pack([-1, 0], [3]), ValueError,
     "parents has 2 entries but num_tokens has 1"),
    ("pack: negative count", lambda: treepo.PackedTree.pack([-1], [-3]), ValueError,
     "num_tokens[0] = -3"),
    ("kv_row_end not a tree", lambda: treepo.PackedTree.from_kv_row_end([2, 3, 3]),
     ValueError, "nested or disjoint"),
    ("kv_row_end int64", lambda: treepo.PackedTree.from_kv_row_end(torch.tensor([1, 2])),
     TypeError, "kv_row_end: expected a int32 tensor, got int64"),
    ("out of leaf range", lambda: TREE.leaf_tokens(5), ValueError, "leaf 5 out of range"),
    # --- TreeDecode.plan ---
    ("indptr not monotone", lambda: treepo.TreeDecode().plan(
        np.array([0, 3, 2, 4], I32), np.array([0, 1, 2, 3], I32), np.array([1, 1, 1], I32),
        HQ, HKV, D, PS), ValueError, "indptr decreases at sequence 1"),
    ("indptr[0] != 0", lambda: treepo.TreeDecode().plan(
        np.array([1, 2], I32), INDICES, np.array([1], I32), HQ, HKV, D, PS), ValueError,
     "indptr[0] = 1 (must be 0)"),
    ("indptr length", lambda: treepo.TreeDecode().plan(
        np.array([0, 2], I32), INDICES, LAST, HQ, HKV, D, PS), ValueError,
     "indptr holds 2 entries but last_page_len has 2 sequences"),
    ("page id out of range", lambda: treepo.TreeDecode().plan(
        INDPTR, np.array([3, 0, 3, 99], I32), LAST, HQ, HKV, D, PS, num_pages=PAGES),
     ValueError, "99"),
    ("negative page id", lambda: treepo.TreeDecode().plan(
        INDPTR, np.array([3, -1, 3, 1], I32), LAST, HQ, HKV, D, PS), ValueError, "negative"),
    ("last_page_len 0", lambda: treepo.TreeDecode().plan(
        INDPTR, INDICES, np.array([0, 3], I32), HQ, HKV, D, PS), ValueError,
     "last_page_len[0] = 0 is outside 1..=4"),
    ("last_page_len > page_size", lambda: treepo.TreeDecode().plan(
        INDPTR, INDICES, np.array([2, 5], I32), HQ, HKV, D, PS), ValueError,
     "last_page_len[1] = 5 is outside 1..=4"),
    ("page_size not a power of two", lambda: treepo.TreeDecode().plan(
        INDPTR, INDICES, LAST, HQ, HKV, D, 3), ValueError, "not a power of two"),
    ("indptr misaligned", _unaligned_indptr, ValueError, "indptr: data at 0x"),
    ("indptr int64", lambda: treepo.TreeDecode().plan(
        INDPTR.astype(np.int64), INDICES, LAST, HQ, HKV, D, PS), TypeError,
     "indptr: expected a int32 tensor, got int64"),
    ("q_rows > sequence length", lambda: treepo.TreeDecode().plan(
        INDPTR, INDICES, LAST, HQ, HKV, D, PS, q_rows=[1, 9]), ValueError,
     "asks for 9 query rows"),
    ("plan heads not a multiple", lambda: treepo.TreeDecode().plan(
        INDPTR, INDICES, LAST, 3, 2, D, PS), ValueError, "is not a positive multiple"),
    ("unknown plan kind", lambda: treepo.TreeDecode().plan(
        INDPTR, INDICES, LAST, HQ, HKV, D, PS, kind="bogus"), ValueError, "kind must be one of"),
    # --- TreeDecode.run ---
    ("run before plan", lambda: treepo.TreeDecode().run(q(), kv()), RuntimeError,
     "run() called before plan()"),
    ("q rows != plan rows", lambda: planned().run(q(rows=3), kv()), ValueError,
     "q: expected shape [2, 4, 32]"),
    ("cache heads != plan", lambda: planned().run(q(), kv(heads=1)), ValueError,
     "but the plan was made for"),
    ("cache smaller than the plan", lambda: planned().run(q(), kv(pages=3)), ValueError,
     "holds 3 pages but the plan addresses 16"),
    ("bad kv_layout", lambda: planned().run(q(), kv(), kv_layout="XYZ"), ValueError,
     'kv_layout must be "NHD" or "HND"'),
    ("cache without the K/V dim", lambda: planned().run(q(), torch.randn(PAGES, PS, HKV, D)),
     ValueError, "paged_kv_cache: expected [num_pages, 2,"),
    ("K/V dim not 2", lambda: planned().run(q(), torch.randn(PAGES, 3, PS, HKV, D)),
     ValueError, "dimension 1 must be 2 (K and V)"),
    ("head_dim not contiguous", lambda: planned().run(
        q(), torch.randn(PAGES, 2, PS, D, HKV).transpose(3, 4)), ValueError,
     "head_dim dimension must be contiguous"),
    ("(k, v) from two allocations", lambda: planned().run(
        q(), (kv()[:, 0].clone(), kv()[:, 1].clone())), ValueError, "ONE allocation"),
    ("(v, k) swapped", _kv_swapped, ValueError, "V after K"),
    ("layer out of range", lambda: planned().run(q(), kv(), layer=1), ValueError,
     "layer = 1 but the cache holds 1 layers"),
    ("cache dtype != q", lambda: planned().run(q(), kv().half()), TypeError,
     "paged_kv_cache: dtype float16 differs from q's float32"),
    ("lse dtype", lambda: planned().run(q(), kv(), lse=torch.empty(2, HQ, dtype=torch.float64)),
     TypeError, "lse: expected a float32 tensor, got float64"),
    ("lse shape", lambda: planned().run(q(), kv(), lse=torch.empty(HQ, 2)), ValueError,
     "lse: expected shape [2, 4]"),
    ("read-only out", _readonly_out, ValueError, "out: the tensor is read-only"),
    ("out aliases q", _out_aliases_q, ValueError, "out overlaps q in memory"),
    # --- merge_states ---
    ("merge v float16", lambda: treepo.merge_states(torch.randn(2, 2, 2, 8).half(),
                                                     torch.randn(2, 2, 2)), TypeError,
     "v: expected a float32 tensor, got float16"),
    ("merge s shape", lambda: treepo.merge_states(torch.randn(2, 2, 2, 8), torch.randn(2, 3, 2)),
     ValueError, "s: expected shape [2, 2, 2]"),
    ("merge out float16 on the CPU", lambda: treepo.merge_states(
        torch.randn(2, 2, 2, 8), torch.randn(2, 2, 2), out=torch.empty(2, 2, 8).half()),
     TypeError, "not supported on the cpu backend"),
    # --- TreeKvCache ---
    ("cache page_size 3", lambda: treepo.TreeKvCache(8, 3), ValueError, "power of two"),
    ("cache 0 pages", lambda: treepo.TreeKvCache(0), ValueError, "num_pages 0"),
    ("release twice", _release_twice, ValueError, "unknown node"),
    ("append to a forked node", _append_frozen, ValueError, "frozen"),
    ("fork into 0", lambda: treepo.TreeKvCache(8).fork(0, 0), ValueError, "unknown node"),
    ("export a non-leaf", _export_not_leaf, ValueError, "only leaves can be exported"),
    ("negative token id", lambda: treepo.TreeKvCache(8).create_root([1, -2]), ValueError,
     "tokens[1] = -2"),
]


@pytest.mark.parametrize("call,exc,fragment", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_call(call, exc, fragment):
    with pytest.raises(exc) as info:
        call()
    assert fragment in str(info.value), f"message was: {info.value}"


def test_fake_cuda_tensors_fail_cleanly():
    """All arguments 'on CUDA' (host memory behind a CUDA DLPack device): without a usable GPU
    the CUDA backend is unavailable (RuntimeError); with one, the driver rejects the host
    pointer as not being device memory (ValueError). Never a crash."""
    with pytest.raises((RuntimeError, ValueError)) as info:
        _fake_cuda_all()
    assert "cuda" in str(info.value).lower(), str(info.value)


def test_count():
    ids = [b[0] for b in BAD]
    assert len(set(ids)) == len(ids) and len(ids) >= 20
    print(f"\n{len(ids) + 2} distinct bad calls checked (type and message)")


def test_rust_panics_become_exceptions():
    """A panic inside the Rust call is caught at the boundary: an exception, never an abort.
    (An indptr entry past the end of `indices` currently panics inside
    `tree_attn::CsrForest::from_csr`; the planner should reject it as a ValueError — until
    then the boundary turns it into a RuntimeError naming the panic.)"""
    with pytest.raises((ValueError, RuntimeError)) as info:
        treepo.TreeDecode().plan(
            np.array([0, 5, 3], I32), np.array([0, 1, 2], I32), np.array([1, 1], I32),
            2, 1, 8, 4,
        )
    if isinstance(info.value, RuntimeError):
        assert "panic" in str(info.value)
