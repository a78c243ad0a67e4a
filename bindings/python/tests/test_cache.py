"""TreeKvCache round trips: fork/append/release with invariant audits, and the CSR export
checked against the tokens actually written through the returned slots and copy jobs."""

import numpy as np
import pytest
import torch

import treepo


class TokenPages:
    """What a device would hold: the token id written to each (page, row), replayed from the
    slots and copy jobs the cache hands out."""

    def __init__(self, cache):
        self.ps = cache.page_size
        self.rows = np.full((cache.num_pages, self.ps), -1, dtype=np.int64)

    def write(self, slots, tokens):
        assert len(slots) == len(tokens)
        for slot, t in zip(slots, tokens):
            self.rows[slot // self.ps, slot % self.ps] = t

    def copy(self, copies):
        for src, dst, n in copies:
            self.rows[dst, :n] = self.rows[src, :n]

    def read(self, pages, last):
        seq = self.rows[np.asarray(pages, dtype=np.int64)].reshape(-1)
        return list(seq[: (len(pages) - 1) * self.ps + last])


def test_fork_append_release_round_trip():
    cache = treepo.TreeKvCache(64, 4)
    dev = TokenPages(cache)
    prompt = list(range(1000, 1010))
    root = cache.create_root(prompt)
    assert root.cached_tokens == 0
    dev.write(root.slots, prompt)
    seqs = {}
    fork = cache.fork(root.node, 3)
    assert fork.copies.shape[1] == 3 and len(fork.copies) == 2  # one child claims the tail
    dev.copy(fork.copies)
    for i, child in enumerate(fork.children):
        toks = [i * 10 + t for t in range(1 + 3 * i)]
        dev.write(cache.append(child, toks), toks)
        seqs[child] = prompt + toks
        cache.check_invariants()
    sub = cache.fork(fork.children[2], 2)
    dev.copy(sub.copies)
    for j, child in enumerate(sub.children):
        toks = [500 + j] * (2 + j)
        dev.write(cache.append(child, toks), toks)
        seqs[child] = seqs[fork.children[2]] + toks
    leaves = [fork.children[0], sub.children[1], fork.children[1], sub.children[0]]
    exp = cache.export(leaves)
    assert exp.indptr.dtype == np.int32 and len(exp.indptr) == len(leaves) + 1
    for i, leaf in enumerate(leaves):
        pages = exp.indices[exp.indptr[i] : exp.indptr[i + 1]]
        assert 1 <= exp.last_page_len[i] <= cache.page_size
        assert dev.read(pages, exp.last_page_len[i]) == seqs[leaf], f"leaf {i}"
    info = cache.node_info(sub.children[0])
    assert info["parent"] == fork.children[2] and not info["forked"]
    assert cache.node_info(fork.children[2])["forked"]

    # a decode step on every leaf: the export follows
    for leaf in leaves:
        dev.write(cache.append(leaf, [9]), [9])
        seqs[leaf].append(9)
    exp = cache.export(leaves, as_torch=True)
    assert isinstance(exp.indptr, torch.Tensor) and exp.indptr.dtype == torch.int32
    for i, leaf in enumerate(leaves):
        pages = exp.indices[exp.indptr[i] : exp.indptr[i + 1]].numpy()
        assert dev.read(pages, int(exp.last_page_len[i])) == seqs[leaf]

    # release everything: nothing referenced, full pages stay cached for prefix reuse
    cache.release(root.node)
    for n in fork.children + sub.children:
        cache.release(n)
        cache.check_invariants()
    assert (cache.num_referenced, cache.num_nodes) == (0, 0)
    again = cache.create_root(prompt)
    assert again.cached_tokens == 8  # two full pages of 4 reused, the rest computed
    pages, n = cache.match_prefix(prompt)
    assert n == 8 and len(pages) == 2
    cache.release(again.node)
    cache.evict_all()
    assert cache.num_free == 64


def test_errors_are_value_errors():
    cache = treepo.TreeKvCache(4, 4)
    root = cache.create_root([1, 2, 3])
    cache.fork(root.node, 1)
    with pytest.raises(ValueError, match="frozen"):
        cache.append(root.node, [4])
    with pytest.raises(ValueError, match="pool"):
        cache.append(cache.node_info(root.node)["children"][0], list(range(64)))
    cache.check_invariants()
