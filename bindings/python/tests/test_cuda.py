"""The same checks on a CUDA device, including float16/bfloat16 (tensor-core paths) against a
float32 reference with wider tolerances, the caller's stream, and zero copy on the GPU.
Skipped LOUDLY (pytest -rs prints the reason) where torch.cuda.is_available() is False."""

import math

import numpy as np
import pytest
import torch
from conftest import assert_close, random_block_tables, random_forest, requires_cuda, sdpa_reference
from test_decode import make_cache, reference

import treepo

pytestmark = [pytest.mark.cuda, requires_cuda]

TOL = {torch.float32: (1e-4, 1e-3), torch.float16: (2e-2, 2e-2), torch.bfloat16: (6e-2, 6e-2)}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("d", [64, 128])
def test_tree_attention_cuda(dtype, d):
    rng = np.random.default_rng(d)
    tree = treepo.PackedTree.pack(*random_forest(rng))
    n = tree.num_tokens
    q = torch.randn(n, 8, d, device="cuda", dtype=dtype, requires_grad=True)
    k = torch.randn(n, 2, d, device="cuda", dtype=dtype, requires_grad=True)
    v = torch.randn(n, 2, d, device="cuda", dtype=dtype, requires_grad=True)
    o = treepo.tree_attention(q, k, v, tree)
    d_o = torch.randn_like(o)
    o.backward(d_o)
    q64, k64, v64 = (x.detach().double().cpu().requires_grad_() for x in (q, k, v))
    ref = sdpa_reference(q64, k64, v64, tree.dense_mask())
    ref.backward(d_o.double().cpu())
    atol, rtol = TOL[dtype]
    assert_close(o.detach().cpu(), ref.detach(), atol, rtol, f"cuda forward {dtype} D {d}")
    for name, x, r in zip("qkv", (q, k, v), (q64, k64, v64)):
        assert_close(x.grad.cpu(), r.grad, atol * 5, rtol * 5, f"cuda d{name} {dtype} D {d}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("layout", ["NHD", "HND"])
def test_tree_decode_cuda_on_a_side_stream(dtype, layout):
    rng = np.random.default_rng(0)
    page_size, hq, hkv, d = 16, 32, 8, 128
    indptr, indices, last = random_block_tables(rng, 16, page_size, 256, 8, 4)
    kv = make_cache(256, page_size, hkv, d, layout).to("cuda", dtype)
    dec = treepo.TreeDecode("cuda")
    dec.plan(torch.from_numpy(indptr).cuda(), indices, last, hq, hkv, d, page_size, num_pages=256)
    q = torch.randn(16, hq, d, device="cuda", dtype=dtype)
    out = torch.full_like(q, math.nan)
    lse = torch.full((16, hq), math.nan, device="cuda")
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        o, l = dec.run(q, kv, out=out, lse=lse, kv_layout=layout)
    side.synchronize()
    assert o.data_ptr() == out.data_ptr() and l.data_ptr() == lse.data_ptr()
    ro, rl = reference(q.float().cpu(), kv.float().cpu(), indptr, indices, last, page_size, layout)
    atol, rtol = TOL[dtype]
    assert_close(o.float().cpu(), ro, atol, rtol, f"cuda decode {dtype} {layout}")
    assert_close(l.cpu(), rl, atol, rtol, f"cuda decode lse {dtype} {layout}")


def test_merge_states_cuda_bf16_out():
    v = torch.randn(33, 3, 8, 128, device="cuda")
    s = torch.randn(33, 3, 8, device="cuda")
    out = torch.empty(33, 8, 128, device="cuda", dtype=torch.bfloat16)
    o, l = treepo.merge_states(v, s, out=out)
    w = torch.softmax(s.double(), 1)
    ref = (w[..., None] * v.double()).sum(1)
    assert_close(o.float().cpu(), ref.cpu(), 2e-2, 2e-2, "cuda merge bf16")
    assert_close(l.cpu(), torch.logsumexp(s.double(), 1).cpu(), 1e-5, 1e-5, "cuda merge lse")


def test_cuda_and_cpu_tensors_do_not_mix():
    dec = treepo.TreeDecode("cuda")
    dec.plan([0, 1], [0], [1], 2, 1, 64, 16, num_pages=1)
    with pytest.raises(ValueError, match="one device"):
        dec.run(torch.randn(1, 2, 64, device="cuda"), torch.randn(1, 2, 16, 1, 64))
