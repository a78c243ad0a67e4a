"""Shared helpers: tolerance checks with the max error in the message, random trees and block
tables, a fake CUDA DLPack producer (to test device checks on a machine without a GPU), and the
loud skip of CUDA tests."""

import ctypes

import numpy as np
import pytest
import torch

import treepo


def assert_close(got, ref, atol, rtol, what):
    """``|got - ref| <= atol + rtol * |ref|`` elementwise; the message reports the max error."""
    got = torch.as_tensor(got).double()
    ref = torch.as_tensor(ref).double()
    assert got.shape == ref.shape, f"{what}: shape {tuple(got.shape)} != {tuple(ref.shape)}"
    assert torch.isfinite(got).all(), f"{what}: non-finite values in the result"
    err = (got - ref).abs()
    bound = atol + rtol * ref.abs()
    worst = (err - bound).max().item()
    assert worst <= 0, (
        f"{what}: max abs error {err.max().item():.3e} exceeds atol {atol} + rtol {rtol}*|ref| "
        f"by {worst:.3e}"
    )


def random_forest(rng, max_trees=3, max_depth=4, max_children=3):
    """A random forest in DFS pre-order: ``(parents, num_tokens)`` (parent -1 for roots). Roots
    hold 1..24 tokens, other nodes 0..12 (empty nodes included)."""
    parents, counts = [], []

    def grow(parent, depth):
        me = len(parents)
        parents.append(parent)
        counts.append(int(rng.integers(1, 25)) if parent == -1 else int(rng.integers(0, 13)))
        if depth < max_depth:
            for _ in range(int(rng.integers(0, max_children + 1))):
                grow(me, depth + 1)

    for _ in range(int(rng.integers(1, max_trees + 1))):
        grow(-1, 0)
    return parents, counts


def sdpa_reference(q, k, v, mask, sm_scale=None):
    """SDPA in float64 on ``[N, H, D]`` tensors with a ``[N, N]`` bool mask (GQA by
    ``enable_gqa``)."""
    qt, kt, vt = (x.double().transpose(0, 1) for x in (q, k, v))
    o = torch.nn.functional.scaled_dot_product_attention(
        qt, kt, vt, attn_mask=mask, scale=sm_scale, enable_gqa=q.shape[1] != k.shape[1]
    )
    return o.transpose(0, 1)


def random_block_tables(rng, batch, page_size, num_pages, shared_pages, max_own_pages):
    """FlashInfer CSR block tables: the first ``shared_pages`` pages are a prefix shared by all
    sequences (some sequences share a second-level prefix too), then each sequence's own pages,
    all drawn without replacement from a shuffled pool of ``num_pages`` ids."""
    pool = list(rng.permutation(num_pages))
    prefix = [pool.pop() for _ in range(shared_pages)]
    mid = [pool.pop() for _ in range(int(rng.integers(0, 3)))]
    indptr, indices, last = [0], [], []
    for b in range(batch):
        own = [pool.pop() for _ in range(int(rng.integers(1, max_own_pages + 1)))]
        pages = prefix + (mid if b % 2 == 0 else []) + own
        indices += pages
        indptr.append(len(indices))
        last.append(int(rng.integers(1, page_size + 1)))
    as32 = lambda x: np.asarray(x, dtype=np.int32)  # noqa: E731
    return as32(indptr), as32(indices), as32(last)


class _DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class _DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _DLTensor(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("device", _DLDevice),
        ("ndim", ctypes.c_int32),
        ("dtype", _DLDataType),
        ("shape", ctypes.POINTER(ctypes.c_int64)),
        ("strides", ctypes.POINTER(ctypes.c_int64)),
        ("byte_offset", ctypes.c_uint64),
    ]


class _DLManagedTensor(ctypes.Structure):
    _fields_ = [
        ("dl_tensor", _DLTensor),
        ("manager_ctx", ctypes.c_void_p),
        ("deleter", ctypes.c_void_p),
    ]


class FakeDeviceTensor:
    """A DLPack producer claiming its (host) memory lives on DLPack device ``device_type``
    (2 = CUDA): enough to test device checks, which run before any memory is touched. The
    float32 buffer is kept alive by this object."""

    def __init__(self, shape, device_type=2, device_id=0):
        self._host = np.zeros(shape, dtype=np.float32)
        self._shape = (ctypes.c_int64 * len(shape))(*shape)
        strides = [s // 4 for s in self._host.strides]
        self._strides = (ctypes.c_int64 * len(shape))(*strides)
        self._device = (device_type, device_id)
        self.shape = tuple(shape)
        self._managed = []  # every export stays alive as long as this object

    def __dlpack_device__(self):
        return self._device

    def __dlpack__(self, stream=None, max_version=None, dl_device=None, copy=None):
        m = _DLManagedTensor()
        m.dl_tensor.data = self._host.ctypes.data
        m.dl_tensor.device = _DLDevice(*self._device)
        m.dl_tensor.ndim = len(self.shape)
        m.dl_tensor.dtype = _DLDataType(2, 32, 1)
        m.dl_tensor.shape = self._shape
        m.dl_tensor.strides = self._strides
        self._managed.append(m)
        new = ctypes.pythonapi.PyCapsule_New
        new.restype = ctypes.py_object
        new.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
        return new(ctypes.addressof(m), b"dltensor", None)


requires_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="SKIP cuda: torch.cuda.is_available() is False (no GPU, or a CPU-only torch); "
    "the CUDA tests of the treepo bindings did NOT run",
)


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


__all__ = ["treepo"]
