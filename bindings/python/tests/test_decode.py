"""TreeDecode (plan from CSR block tables / from a TreeKvCache, run per layer) against SDPA
over each sequence's gathered pages."""

import math

import numpy as np
import pytest
import torch
from conftest import assert_close, random_block_tables

import treepo


def gather(kv, pages, length, layout):
    """K and V ``[length, H_kv, D]`` of one sequence from a single-layer cache tensor."""
    idx = torch.as_tensor(np.asarray(pages, dtype=np.int64))
    k, v = kv[idx, 0], kv[idx, 1]
    if layout == "HND":  # [pages, H, S, D] -> [pages, S, H, D]
        k, v = k.permute(0, 2, 1, 3), v.permute(0, 2, 1, 3)
    h, d = k.shape[2], k.shape[3]
    return k.reshape(-1, h, d)[:length], v.reshape(-1, h, d)[:length]


def reference(q, kv, indptr, indices, last, page_size, layout, q_rows=None, sm_scale=None):
    """Per sequence: its last ``q_rows[b]`` positions attend (causally) to its gathered K/V;
    returns ``(o, lse)`` in float64, lse natural log."""
    outs, lses, row = [], [], 0
    for b in range(len(last)):
        pages = indices[indptr[b] : indptr[b + 1]]
        length = (len(pages) - 1) * page_size + int(last[b])
        k, v = gather(kv, pages, length, layout)
        r = 1 if q_rows is None else int(q_rows[b])
        qb = q[row : row + r].double()
        row += r
        group = qb.shape[1] // k.shape[1]
        k = k.double().repeat_interleave(group, dim=1)
        v = v.double().repeat_interleave(group, dim=1)
        scale = sm_scale if sm_scale is not None else 1 / math.sqrt(qb.shape[2])
        s = torch.einsum("rhd,jhd->hrj", qb, k) * scale
        pos = torch.arange(length - r, length)[:, None]
        s = s.masked_fill(torch.arange(length)[None, :] > pos, -math.inf)
        outs.append(torch.einsum("hrj,jhd->rhd", torch.softmax(s, -1), v))
        lses.append(torch.logsumexp(s, -1).T)
    return torch.cat(outs), torch.cat(lses)


def make_cache(num_pages, page_size, hkv, d, layout, layers=None, dtype=torch.float32):
    shape = (num_pages, 2, page_size, hkv, d) if layout == "NHD" else (num_pages, 2, hkv, page_size, d)
    if layers is not None:
        shape = (layers,) + shape
    return torch.randn(shape, dtype=dtype)


# (seed, layout, page_size, H_q, H_kv, D, kind)
CASES = [
    (0, "NHD", 16, 4, 4, 64, "tree"),
    (1, "HND", 16, 8, 2, 128, "tree"),
    (2, "NHD", 4, 8, 2, 64, "cascade"),
    (3, "HND", 8, 4, 1, 64, "naive"),
    (4, "NHD", 4, 16, 4, 32, "tree_split"),
    (5, "HND", 16, 8, 4, 128, "tree_fill"),
]


@pytest.mark.parametrize("seed,layout,page_size,hq,hkv,d,kind", CASES)
def test_run_matches_sdpa_over_gathered_pages(seed, layout, page_size, hq, hkv, d, kind):
    rng = np.random.default_rng(seed)
    num_pages = 64
    batch = int(rng.integers(1, 9))
    indptr, indices, last = random_block_tables(rng, batch, page_size, num_pages, 3, 4)
    kv = make_cache(num_pages, page_size, hkv, d, layout)
    dec = treepo.TreeDecode()
    rows = dec.plan(
        indptr, indices, last, hq, hkv, d, page_size, kind=kind, num_pages=num_pages,
        max_chunk=page_size, units=4,
    )
    assert rows == batch
    q = torch.randn(rows, hq, d)
    o, lse = dec.run(q, kv, kv_layout=layout)
    ro, rl = reference(q, kv, indptr, indices, last, page_size, layout)
    what = f"seed {seed} {layout} kind {kind} batch {batch}"
    assert_close(o, ro, 2e-5, 1e-4, f"o ({what})")
    assert_close(lse, rl, 2e-5, 1e-5, f"lse ({what})")


def test_min_shared_folds_short_nodes_and_keeps_the_result():
    """``min_shared`` changes how the work is cut (none, short nodes, every node folded), not the
    attention: every setting matches the reference."""
    rng = np.random.default_rng(11)
    page_size, hq, hkv, d, num_pages = 4, 8, 2, 64, 96
    indptr, indices, last = random_block_tables(rng, 8, page_size, num_pages, 3, 4)
    kv = make_cache(num_pages, page_size, hkv, d, "HND")
    q = torch.randn(8, hq, d)
    ro, rl = reference(q, kv, indptr, indices, last, page_size, "HND")
    for min_shared in [0, 2 * page_size, 1 << 30]:
        dec = treepo.TreeDecode()
        rows = dec.plan(
            indptr, indices, last, hq, hkv, d, page_size, num_pages=num_pages,
            min_shared=min_shared,
        )
        assert rows == 8
        o, lse = dec.run(q, kv, kv_layout="HND")
        assert_close(o, ro, 2e-5, 1e-4, f"o (min_shared {min_shared})")
        assert_close(lse, rl, 2e-5, 1e-5, f"lse (min_shared {min_shared})")


def test_segment_append_rows_are_causal():
    rng = np.random.default_rng(7)
    page_size, hq, hkv, d = 8, 4, 2, 64
    indptr, indices, last = random_block_tables(rng, 5, page_size, 48, 2, 3)
    q_rows = np.array([1, 3, 2, 5, 1], dtype=np.int32)
    kv = make_cache(48, page_size, hkv, d, "NHD")
    dec = treepo.TreeDecode()
    rows = dec.plan(indptr, indices, last, hq, hkv, d, page_size, q_rows=q_rows, num_pages=48)
    assert rows == int(q_rows.sum())
    q = torch.randn(rows, hq, d)
    o, lse = dec.run(q, kv, sm_scale=0.2)
    ro, rl = reference(q, kv, indptr, indices, last, page_size, "NHD", q_rows, sm_scale=0.2)
    assert_close(o, ro, 2e-5, 1e-4, "segment append o")
    assert_close(lse, rl, 2e-5, 1e-5, "segment append lse")


@pytest.mark.parametrize("layout", ["NHD", "HND"])
def test_kv_pair_layers_and_strided_cache(layout):
    rng = np.random.default_rng(1)
    page_size, hq, hkv, d, layers = 16, 8, 2, 64, 3
    indptr, indices, last = random_block_tables(rng, 4, page_size, 32, 2, 3)
    kv = make_cache(32, page_size, hkv, d, layout, layers=layers)
    dec = treepo.TreeDecode()
    dec.plan(indptr, indices, last, hq, hkv, d, page_size, num_pages=32)
    q = torch.randn(4, hq, d)
    for layer in range(layers):
        ro, rl = reference(q, kv[layer], indptr, indices, last, page_size, layout)
        o1, _ = dec.run(q, kv, layer=layer, kv_layout=layout)
        o2, l2 = dec.run(q, (kv[:, :, 0], kv[:, :, 1]), layer=layer, kv_layout=layout)
        assert_close(o1, ro, 2e-5, 1e-4, f"layer {layer} single tensor")
        assert_close(o2, ro, 2e-5, 1e-4, f"layer {layer} (k, v) pair")
        assert_close(l2, rl, 2e-5, 1e-5, f"layer {layer} lse")
    # A strided view: every other page of a bigger pool (page stride doubled), zero copy.
    big = make_cache(64, page_size, hkv, d, layout)
    view = big[::2]
    assert not view.is_contiguous()
    o, _ = dec.run(q, view, kv_layout=layout)
    ro, _ = reference(q, view, indptr, indices, last, page_size, layout)
    assert_close(o, ro, 2e-5, 1e-4, "strided cache view")


def test_out_and_lse_written_in_place():
    rng = np.random.default_rng(2)
    indptr, indices, last = random_block_tables(rng, 6, 16, 40, 2, 2)
    kv = make_cache(40, 16, 2, 64, "NHD")
    dec = treepo.TreeDecode()
    dec.plan(indptr, indices, last, 4, 2, 64, 16, num_pages=40)
    q = torch.randn(6, 4, 64)
    out = torch.full((6, 4, 64), math.nan)
    lse = torch.full((6, 4), math.nan)
    o, l = dec.run(q, kv, out=out, lse=lse)
    assert o is out and l is lse
    assert o.data_ptr() == out.data_ptr() and l.data_ptr() == lse.data_ptr()
    ro, rl = reference(q, kv, indptr, indices, last, 16, "NHD")
    assert_close(out, ro, 2e-5, 1e-4, "in-place out")
    assert_close(lse, rl, 2e-5, 1e-5, "in-place lse")
    # FlashInfer's base-2 LSE on request
    _, l2 = dec.run(q, kv, lse_base2=True)
    assert_close(l2, rl / math.log(2), 1e-5, 1e-5, "base-2 lse")


def test_cache_larger_than_planned_pages_and_numpy():
    rng = np.random.default_rng(5)
    indptr, indices, last = random_block_tables(rng, 3, 4, 20, 1, 2)
    kv = make_cache(50, 4, 1, 32, "NHD")  # more pages than max(indices) + 1
    dec = treepo.TreeDecode()
    dec.plan(indptr.tolist(), indices.tolist(), last.tolist(), 2, 1, 32, 4)
    q = torch.randn(3, 2, 32)
    o, _ = dec.run(q.numpy(), kv.numpy())
    assert isinstance(o, np.ndarray)
    ro, _ = reference(q, kv, indptr, indices, last, 4, "NHD")
    assert_close(torch.from_numpy(o), ro, 2e-5, 1e-4, "numpy, larger cache")


def test_plan_from_cache_matches_csr_plan_and_reference():
    page_size, hq, hkv, d = 4, 4, 2, 32
    cache = treepo.TreeKvCache(64, page_size)
    kv = make_cache(64, page_size, hkv, d, "NHD")
    root = cache.create_root(list(range(10)))
    fork = cache.fork(root.node, 3)
    leaves = []
    for i, child in enumerate(fork.children):
        cache.append(child, [100 + i] * (3 + 2 * i))
    sub = cache.fork(fork.children[0], 2)
    for child in sub.children:
        cache.append(child, [7, 8])
    leaves = [sub.children[1], fork.children[2], sub.children[0], fork.children[1]]
    # copy-on-write: the children's private tail copies hold the parent's rows
    for src, dst, rows in np.concatenate([fork.copies, sub.copies]):
        kv[dst, :, :rows] = kv[src, :, :rows]
    exp = cache.export(leaves)
    q = torch.randn(len(leaves), hq, d)
    a, b = treepo.TreeDecode(), treepo.TreeDecode()
    assert a.plan_from_cache(cache, leaves, hq, hkv, d) == len(leaves)
    b.plan(exp.indptr, exp.indices, exp.last_page_len, hq, hkv, d, page_size, num_pages=64)
    oa, la = a.run(q, kv)
    ob, lb = b.run(q, kv)
    ro, rl = reference(q, kv, exp.indptr, exp.indices, exp.last_page_len, page_size, "NHD")
    assert_close(oa, ro, 2e-5, 1e-4, "plan_from_cache")
    assert_close(ob, ro, 2e-5, 1e-4, "plan from exported CSR")
    assert_close(la, rl, 2e-5, 1e-5, "plan_from_cache lse")
    # each leaf's exported pages are its leaf_path
    for i, leaf in enumerate(leaves):
        pages, last = cache.leaf_path(leaf)
        assert list(pages) == list(exp.indices[exp.indptr[i] : exp.indptr[i + 1]])
        assert last == exp.last_page_len[i]
