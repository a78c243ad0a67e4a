"""The prefix-shared paged KV cache bookkeeping (host side): which physical page holds which
token rows of which path. It owns no tensors: an engine writes K/V rows where it says."""

from collections import namedtuple


from . import _treepo
from ._util import _torch, i32, i64

CsrExport = namedtuple("CsrExport", ["indptr", "indices", "last_page_len"])
CsrExport.__doc__ = """FlashInfer's paged-KV CSR page tables of a set of leaves (int32):
sequence ``i`` reads pages ``indices[indptr[i]:indptr[i+1]]``, ``last_page_len[i]`` rows of the
last one."""

Fork = namedtuple("Fork", ["children", "copies"])
Fork.__doc__ = """The result of :meth:`TreeKvCache.fork`: the new children (node ids) and the
copy-on-write jobs ``copies [k, 3]`` int32 rows ``(src_page, dst_page, rows)``: copy rows
``[0, rows)`` of page ``src`` into page ``dst`` (every layer, K and V) before attending the
child that owns ``dst``."""

Prefill = namedtuple("Prefill", ["node", "cached_tokens", "slots"])
Prefill.__doc__ = """The result of :meth:`TreeKvCache.create_root` / ``prefill``: the node,
the leading tokens found in the cache (their K/V is already there) and the flat slots
(``page * page_size + row``, int64) of the other tokens, in order."""


class TreeKvCache:
    """A pool of ``num_pages`` pages of ``page_size`` tokens with a tree of nodes over it:
    forks share every full page (refcounts) and copy only a partial tail page; full pages are
    indexed by content for prefix reuse across requests. Node ids are ints.

    The K/V storage itself is the caller's (per layer ``[num_pages, 2, ...]``, one page id
    addressing the same page in every layer); this object says where to write (``slots``),
    which page copies to run (``Fork.copies``) and which pages each leaf reads
    (:meth:`export`, :meth:`treepo.TreeDecode.plan_from_cache`).
    """

    def __init__(self, num_pages, page_size=16):
        self._inner = _treepo.TreeKvCache(num_pages, page_size)

    page_size = property(lambda self: self._inner.page_size, doc="Tokens per page.")
    num_pages = property(lambda self: self._inner.num_pages, doc="Pages in the pool.")

    @property
    def num_free(self):
        """Pages on the free list."""
        return self._inner.counts()[0]

    @property
    def num_cached(self):
        """Unreferenced pages kept for prefix reuse (evictable)."""
        return self._inner.counts()[1]

    @property
    def num_referenced(self):
        """Pages held by live nodes."""
        return self._inner.counts()[2]

    @property
    def num_nodes(self):
        """Live (or released-but-kept) nodes."""
        return self._inner.counts()[3]

    def create_root(self, prompt):
        """A new root for ``prompt`` (token ids), reusing cached full pages."""
        node, cached, slots = self._inner.create_root([int(t) for t in prompt])
        return Prefill(node, cached, i64(slots))

    def prefill(self, node, tokens):
        """Appends ``tokens`` to leaf ``node``, reusing cached full pages that continue it."""
        node, cached, slots = self._inner.prefill(int(node), [int(t) for t in tokens])
        return Prefill(node, cached, i64(slots))

    def append(self, node, tokens):
        """Appends ``tokens`` to leaf ``node``; returns the flat slots (int64) to write their
        K/V rows to."""
        return i64(self._inner.append(int(node), [int(t) for t in tokens]))

    def fork(self, node, n):
        """Creates ``n`` children of ``node`` (which is frozen from now on)."""
        children, copies = self._inner.fork(int(node), int(n))
        return Fork(list(children), i32(copies).reshape(-1, 3))

    def release(self, node):
        """Gives ``node`` up; its pages return to the pool (full ones stay cached) once no
        descendant reads them."""
        self._inner.release(int(node))

    def match_prefix(self, tokens):
        """``(pages int32, tokens)``: the longest cached page-aligned prefix of ``tokens``."""
        pages, n = self._inner.match_prefix([int(t) for t in tokens])
        return i32(pages), n

    def leaf_path(self, node):
        """``(pages int32, last_page_len)``: the page list of the path ending at ``node``."""
        pages, last = self._inner.leaf_path(int(node))
        return i32(pages), last

    def node_info(self, node):
        """A dict: parent, depth, start, end, pages, children, released, forked."""
        return self._inner.node_info(int(node))

    def export(self, leaves, *, as_torch=False, device=None):
        """The per-step CSR page tables of ``leaves`` (node ids, in the order given): numpy
        int32 arrays, or torch tensors (on ``device``) with ``as_torch=True``."""
        indptr, indices, last = self._inner.export_csr([int(x) for x in leaves])
        arrays = [i32(indptr), i32(indices), i32(last)]
        if as_torch:
            torch = _torch()
            arrays = [torch.from_numpy(a).to(device or "cpu") for a in arrays]
        return CsrExport(*arrays)

    def evict_all(self):
        """Frees every cached page; returns how many."""
        return self._inner.evict_all()

    def check_invariants(self):
        """Audits the bookkeeping (ValueError on a broken invariant)."""
        self._inner.check_invariants()

    def __repr__(self):
        return (
            f"TreeKvCache(num_pages={self.num_pages}, page_size={self.page_size}, "
            f"free={self.num_free}, cached={self.num_cached}, referenced={self.num_referenced}, "
            f"nodes={self.num_nodes})"
        )


