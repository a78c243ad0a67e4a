"""The package's CUDA path end to end WITHOUT torch CUDA: device memory allocated through the
CUDA driver API (ctypes), exported through DLPack as kDLCUDA, run through the bindings
(Buffer::from_cuda_ptr on a Device for the caller's stream, cudarc launches), read back with
cuMemcpyDtoH and compared with NumPy references.

Meant for the emulated CUDA device (docs/cuda-emu.md):

    scripts/cuda-emu.sh env TREEPO_EMU_CUDA=1 \
        python -m pytest bindings/python/tests/test_cuda_emu.py

(`TREEPO_PY_CUDA_EMU=1 scripts/python-test.sh` runs exactly that after the main suite). Skipped
loudly unless TREEPO_EMU_CUDA=1; with it set, anything that keeps the tests from running
(no libcuda, no NVRTC, no CUDA backend in the extension) FAILS.

Streams: the public wrappers take the caller's stream from torch (`torch.cuda.current_stream`)
unless `stream=` is given, as a CuPy or driver-API caller does. Here the driver (emulated) is
not torch's, so the tests pass the stream they created (fixture `on_stream`) as `stream=`; the
tests of the extension functions pass `stream=` themselves."""

import math
import os
import sys

import numpy as np
import pytest

if os.environ.get("TREEPO_EMU_CUDA") != "1":
    pytest.skip(
        "SKIP cuda-emu: TREEPO_EMU_CUDA is not 1; the CUDA path on the emulated device did NOT "
        "run (TREEPO_PY_CUDA_EMU=1 scripts/python-test.sh, or scripts/cuda-emu.sh env "
        "TREEPO_EMU_CUDA=1 python -m pytest bindings/python/tests/test_cuda_emu.py)",
        allow_module_level=True,
    )

from _dlpack_cuda import DeviceAllocation, DeviceArray, Driver  # noqa: E402
from conftest import FakeDeviceTensor, random_block_tables, random_forest  # noqa: E402

import treepo  # noqa: E402
import treepo.decode  # noqa: E402
import treepo.merge  # noqa: E402
from treepo import _treepo  # noqa: E402

pytestmark = pytest.mark.cuda

# (atol, rtol) against a float64 reference of the (rounded) inputs.
TOL = {np.float32: (1e-4, 1e-3), np.float16: (2e-2, 2e-2)}
MAX_ERR = {}  # what -> max abs error, printed at the end (pytest -s) and by test_report


def check_close(got, ref, atol, rtol, what):
    """``|got - ref| <= atol + rtol*|ref|`` elementwise; records and reports the max error."""
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert got.shape == ref.shape, f"{what}: shape {got.shape} != {ref.shape}"
    assert np.isfinite(got).all(), f"{what}: non-finite values in the result (not written?)"
    err = np.abs(got - ref)
    worst = (err - (atol + rtol * np.abs(ref))).max()
    MAX_ERR[what] = float(err.max())
    assert worst <= 0, (
        f"{what}: max abs error {err.max():.3e} exceeds atol {atol} + rtol {rtol}*|ref| by "
        f"{worst:.3e}"
    )


@pytest.fixture(scope="module")
def drv():
    d = Driver()  # fails (not skips) when libcuda cannot be loaded or initialized
    assert d.emulated, (
        "libcuda.so on LD_LIBRARY_PATH is not the emulator's stand-in (no "
        "treepo_emu_last_error): run under scripts/cuda-emu.sh"
    )
    return d


@pytest.fixture(scope="module")
def stream(drv):
    s = drv.stream_create()
    assert s, "cuStreamCreate returned a null stream"
    yield s
    drv.stream_destroy(s)


@pytest.fixture
def on_stream(stream):
    """The caller's stream, passed to the public wrappers as ``stream=``."""
    return stream


def _current_stream_seen(*arrays, expect):
    """Every DLPack export of ``arrays`` was asked for consumer stream ``expect``."""
    for a in arrays:
        assert a.streams, "the bindings never called __dlpack__"
        assert all(s == expect for s in a.streams), f"__dlpack__ got streams {a.streams}"


# ---------------------------------------------------------------------------------------------
# NumPy references (float64)


def decode_reference(q, kv, indptr, indices, last, page_size, layout, sm_scale=None):
    """One query row per sequence attends to its gathered pages: ``(o [B, H_q, D], lse [B,
    H_q])``, natural-log LSE."""
    q, kv = q.astype(np.float64), kv.astype(np.float64)
    hq, d = q.shape[1], q.shape[2]
    scale = sm_scale if sm_scale is not None else 1 / math.sqrt(d)
    outs, lses = [], []
    for b in range(len(last)):
        pages = np.asarray(indices[indptr[b] : indptr[b + 1]], dtype=np.int64)
        length = (len(pages) - 1) * page_size + int(last[b])
        k, v = kv[pages, 0], kv[pages, 1]
        if layout == "HND":  # [pages, H, S, D] -> [pages, S, H, D]
            k, v = k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3)
        hkv = k.shape[2]
        k = np.repeat(k.reshape(-1, hkv, d)[:length], hq // hkv, axis=1)
        v = np.repeat(v.reshape(-1, hkv, d)[:length], hq // hkv, axis=1)
        s = np.einsum("hd,jhd->hj", q[b], k) * scale
        m = s.max(-1, keepdims=True)
        p = np.exp(s - m)
        den = p.sum(-1, keepdims=True)
        outs.append(np.einsum("hj,jhd->hd", p / den, v))
        lses.append((m + np.log(den))[:, 0])
    return np.stack(outs), np.stack(lses)


def tree_reference(q, k, v, mask, sm_scale=None):
    """Masked softmax attention, ``q [N, H_q, D]``, ``k, v [N, H_kv, D]``, ``mask [N, N]``
    (True = attend): ``(o [N, H_q, D], lse [H_q, N])``."""
    q, k, v = (x.astype(np.float64) for x in (q, k, v))
    g = q.shape[1] // k.shape[1]
    k, v = np.repeat(k, g, axis=1), np.repeat(v, g, axis=1)
    scale = sm_scale if sm_scale is not None else 1 / math.sqrt(q.shape[2])
    s = np.einsum("ihd,jhd->hij", q, k) * scale
    s = np.where(mask[None], s, -np.inf)
    m = s.max(-1, keepdims=True)
    p = np.exp(s - m)
    den = p.sum(-1, keepdims=True)
    return np.einsum("hij,jhd->ihd", p / den, v), (m + np.log(den))[..., 0]


def cache_shape(num_pages, page_size, hkv, d, layout):
    if layout == "NHD":
        return (num_pages, 2, page_size, hkv, d)
    return (num_pages, 2, hkv, page_size, d)


# ---------------------------------------------------------------------------------------------
# TreeDecode


DECODE = [  # (layout, dtype, H_q, H_kv, D, kind)
    ("NHD", np.float32, 8, 2, 128, "tree"),
    ("HND", np.float32, 8, 2, 64, "tree"),
    ("NHD", np.float16, 8, 2, 64, "tree"),
    ("HND", np.float16, 4, 1, 128, "tree"),
    ("NHD", np.float32, 4, 4, 64, "cascade"),
    ("HND", np.float16, 8, 2, 128, "naive"),
]


@pytest.mark.parametrize(
    "layout,dtype,hq,hkv,d,kind",
    DECODE,
    ids=[f"{c[0]}-{np.dtype(c[1]).name}-{c[2]}x{c[3]}-D{c[4]}-{c[5]}" for c in DECODE],
)
def test_tree_decode_on_device(drv, on_stream, layout, dtype, hq, hkv, d, kind):
    """Public API: plan on "cuda:0" from CSR tables with shared prefix pages, run with q/kv/
    out/lse in device memory; out/lse written in place at the caller's addresses."""
    rng = np.random.default_rng(d + hq)
    page_size, num_pages, batch = 16, 48, 6
    indptr, indices, last = random_block_tables(rng, batch, page_size, num_pages, 3, 3)
    q_h = rng.standard_normal((batch, hq, d)).astype(dtype)
    kv_h = rng.standard_normal(cache_shape(num_pages, page_size, hkv, d, layout)).astype(dtype)
    q, kv = DeviceArray.from_numpy(drv, q_h), DeviceArray.from_numpy(drv, kv_h)
    out = DeviceArray.full(drv, (batch, hq, d), dtype, np.nan)
    lse = DeviceArray.full(drv, (batch, hq), np.float32, np.nan)
    out_ptr, lse_ptr = out.ptr, lse.ptr

    dec = treepo.TreeDecode(device="cuda:0")
    assert dec.device == "cuda:0"
    rows = dec.plan(indptr, indices, last, hq, hkv, d, page_size, kind=kind, num_pages=num_pages,
                    stream=on_stream)
    assert rows == batch
    o, l_ = dec.run(q, kv, out=out, lse=lse, kv_layout=layout, stream=on_stream)

    # Zero copy: the very objects passed are returned, at the same device addresses, and what
    # is read back from those addresses is the result.
    assert o is out and l_ is lse
    assert (out.ptr, lse.ptr) == (out_ptr, lse_ptr)
    got_o, got_l = out.numpy(on_stream), lse.numpy(on_stream)
    ro, rl = decode_reference(q_h, kv_h, indptr, indices, last, page_size, layout)
    atol, rtol = TOL[dtype]
    what = f"decode {layout} {np.dtype(dtype).name} {hq}x{hkv} D{d} {kind}"
    check_close(got_o, ro, atol, rtol, what)
    check_close(got_l, rl, TOL[np.float32][0] * 10, TOL[np.float32][1], what + " lse")
    # Inputs untouched.
    np.testing.assert_array_equal(q.numpy(), q_h)
    np.testing.assert_array_equal(kv.numpy(), kv_h)
    _current_stream_seen(q, kv, out, lse, expect=on_stream)

    # A second layer through the same plan, base-2 LSE, after the cache changed in place.
    kv_h2 = rng.standard_normal(kv_h.shape).astype(dtype)
    drv.htod(kv.ptr, kv_h2)
    dec.run(q, kv, out=out, lse=lse, kv_layout=layout, stream=on_stream)
    ro2, rl2 = decode_reference(q_h, kv_h2, indptr, indices, last, page_size, layout)
    check_close(out.numpy(on_stream), ro2, atol, rtol, what + " (2nd run)")
    check_close(lse.numpy(on_stream), rl2, 1e-3, 1e-3, what + " lse (2nd run)")


def test_tree_decode_default_stream_multilayer(drv):
    """The extension's own entry points with the legacy default stream (stream=0, sent to the
    producer as DLPack's 1), a [layers, pages, 2, ...] cache and layer=1, a custom sm_scale."""
    rng = np.random.default_rng(7)
    page_size, num_pages, batch, hq, hkv, d = 8, 24, 5, 4, 2, 64
    indptr, indices, last = random_block_tables(rng, batch, page_size, num_pages, 2, 2)
    q_h = rng.standard_normal((batch, hq, d)).astype(np.float32)
    kv_h = rng.standard_normal((2,) + cache_shape(num_pages, page_size, hkv, d, "NHD"))
    kv_h = kv_h.astype(np.float32)
    q, kv = DeviceArray.from_numpy(drv, q_h), DeviceArray.from_numpy(drv, kv_h)
    out = DeviceArray.full(drv, (batch, hq, d), np.float32, np.nan)
    lse = DeviceArray.full(drv, (batch, hq), np.float32, np.nan)
    inner = _treepo.TreeDecode()
    inner.plan(indptr, indices, last, hq, hkv, d, page_size, num_pages=num_pages,
               device_ordinal=0, stream=0)
    inner.run(q, kv, out, lse=lse, kv_layout="NHD", layer=1, sm_scale=0.07, stream=0)
    ro, rl = decode_reference(q_h, kv_h[1], indptr, indices, last, page_size, "NHD", 0.07)
    check_close(out.numpy(0), ro, 1e-4, 1e-3, "decode layer 1, stream 0")
    check_close(lse.numpy(0), rl, 1e-4, 1e-3, "decode layer 1, stream 0 lse")
    _current_stream_seen(q, kv, out, lse, expect=1)  # DLPack's legacy default stream


# ---------------------------------------------------------------------------------------------
# merge_states


@pytest.mark.parametrize("out_dtype", [np.float32, np.float16])
def test_merge_states_on_device(drv, on_stream, out_dtype):
    rng = np.random.default_rng(3)
    n, ns, h, d = 19, 3, 4, 128
    v_h = rng.standard_normal((n, ns, h, d)).astype(np.float32)
    s_h = (rng.standard_normal((n, ns, h)) * 3).astype(np.float32)
    s_h[0, 1] = -np.inf  # an empty state: skipped, its v never read
    v_h[0, 1] = np.nan
    v, s = DeviceArray.from_numpy(drv, v_h), DeviceArray.from_numpy(drv, s_h)
    out = DeviceArray.full(drv, (n, h, d), out_dtype, np.nan)
    lse = DeviceArray.full(drv, (n, h), np.float32, np.nan)
    o, l_ = treepo.merge_states(v, s, out=out, lse=lse, stream=on_stream)
    assert o is out and l_ is lse
    s64 = s_h.astype(np.float64)
    m = s64.max(1, keepdims=True)
    w = np.exp(s64 - m)
    ref_l = (m + np.log(w.sum(1, keepdims=True)))[:, 0]
    w = w / w.sum(1, keepdims=True)
    ref_v = (w[..., None] * np.nan_to_num(v_h.astype(np.float64))).sum(1)
    atol, rtol = TOL[out_dtype]
    what = f"merge_states out {np.dtype(out_dtype).name}"
    check_close(out.numpy(on_stream), ref_v, atol, rtol, what)
    check_close(lse.numpy(on_stream), ref_l, 1e-5, 1e-5, what + " lse")
    _current_stream_seen(v, s, out, lse, expect=on_stream)


# ---------------------------------------------------------------------------------------------
# tree_attention forward


@pytest.mark.parametrize("dtype,d", [(np.float32, 64), (np.float16, 128)],
                         ids=["float32-D64", "float16-D128"])
def test_tree_attention_forward_on_device(drv, stream, dtype, d):
    """`treepo.tree_attention` allocates its outputs like its input (numpy for anything that is
    not a torch tensor: host memory) and its backward is a torch.autograd.Function, so on device
    memory without torch it cannot be called; the function it wraps,
    `_treepo.packed_attention_forward` (what `treepo.packed._forward` calls), takes the caller's
    out/lse and stream and is exercised here."""
    rng = np.random.default_rng(d)
    tree = treepo.PackedTree.pack(*random_forest(rng, max_trees=2, max_depth=3))
    n, hq, hkv = tree.num_tokens, 4, 2
    q_h = rng.standard_normal((n, hq, d)).astype(dtype)
    k_h = rng.standard_normal((n, hkv, d)).astype(dtype)
    v_h = rng.standard_normal((n, hkv, d)).astype(dtype)
    q, k, v = (DeviceArray.from_numpy(drv, x) for x in (q_h, k_h, v_h))
    out = DeviceArray.full(drv, (n, hq, d), dtype, np.nan)
    lse = DeviceArray.full(drv, (hq, n), np.float32, np.nan)
    _treepo.packed_attention_forward(q, k, v, tree._inner, out, lse, stream=stream)
    mask = np.asarray(tree.dense_mask(), dtype=bool)
    ro, rl = tree_reference(q_h, k_h, v_h, mask)
    atol, rtol = TOL[dtype]
    what = f"tree_attention fwd {np.dtype(dtype).name} D{d} N{n}"
    check_close(out.numpy(stream), ro, atol, rtol, what)
    check_close(lse.numpy(stream), rl, 1e-3, 1e-3, what + " lse")
    _current_stream_seen(q, k, v, out, lse, expect=stream)


def test_public_tree_attention_needs_torch_for_device_memory(drv):
    """What the previous test works around: the public function given non-torch device arrays
    allocates host outputs and is refused as a device mix (a clean ValueError)."""
    tree = treepo.PackedTree.pack([-1, 0], [4, 4])
    q = DeviceArray.empty(drv, (8, 2, 64), np.float32)
    k = DeviceArray.empty(drv, (8, 2, 64), np.float32)
    with pytest.raises(ValueError, match="all tensors must be on one device"):
        treepo.tree_attention(q, k, DeviceArray.empty(drv, (8, 2, 64), np.float32), tree)


# ---------------------------------------------------------------------------------------------
# Bad inputs on the CUDA path

PS, HQ, HKV, D, PAGES, B = 16, 4, 2, 64, 8, 2
INDPTR = np.array([0, 2, 4], np.int32)
INDICES = np.array([3, 0, 3, 1], np.int32)
LAST = np.array([5, 16], np.int32)


class Call:
    """Device arrays for one planned decode call (each test builds what it breaks)."""

    def __init__(self, drv):
        self.drv = drv
        self.dec = _treepo.TreeDecode()
        self.dec.plan(INDPTR, INDICES, LAST, HQ, HKV, D, PS, num_pages=PAGES, device_ordinal=0)
        self.q = DeviceArray.full(drv, (B, HQ, D), np.float32, 0.5)
        self.kv = DeviceArray.full(drv, cache_shape(PAGES, PS, HKV, D, "NHD"), np.float32, 0.25)
        self.out = DeviceArray.empty(drv, (B, HQ, D), np.float32)
        self.lse = DeviceArray.empty(drv, (B, HQ), np.float32)

    def run(self, **kw):
        args = dict(q=self.q, kv=self.kv, out=self.out, lse=self.lse, stream=0)
        args.update(kw)
        return self.dec.run(args.pop("q"), args.pop("kv"), args.pop("out"), **args)


def short(drv, shape, dtype=np.float32, missing_bytes=4):
    """A view whose DLPack shape runs ``missing_bytes`` past the end of its allocation."""
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    return DeviceArray(DeviceAllocation(drv, nbytes - missing_bytes), shape, dtype)


def _host_kv(c):
    return c.run(kv=np.zeros(cache_shape(PAGES, PS, HKV, D, "NHD"), np.float32))


def _out_past_end(c):
    return c.run(out=short(c.drv, (B, HQ, D)))


def _lse_past_end(c):
    return c.run(lse=short(c.drv, (B, HQ)))


def _q_offset_past_end(c):
    a = DeviceAllocation(c.drv, B * HQ * D * 4)
    return c.run(q=DeviceArray(a, (B, HQ, D), np.float32, byte_offset=64))


def _kv_past_end(c):  # the planned pages reach past the cache's allocation
    return c.run(kv=short(c.drv, cache_shape(PAGES, PS, HKV, D, "NHD"), missing_bytes=256))


def _freed_q(c):
    dead = DeviceAllocation(c.drv, B * HQ * D * 4)
    arr = DeviceArray(dead, (B, HQ, D), np.float32)
    ptr = dead.ptr
    dead.free()
    dead.ptr = ptr  # the export still names the freed address
    try:
        return c.run(q=arr)
    finally:
        dead.ptr = 0  # nothing left to free


def _host_memory_as_cuda(c):
    return c.run(q=FakeDeviceTensor((B, HQ, D)))


def _stream_str(c):
    return c.run(stream="the current stream")


def _stream_negative(c):
    return c.run(stream=-1)


def _stream_float(c):
    return c.run(stream=1.5)


def _host_tensors_cuda_plan(c):
    return c.run(q=np.zeros((B, HQ, D), np.float32), kv=np.zeros(c.kv.shape, np.float32),
                 out=np.zeros((B, HQ, D), np.float32), lse=np.zeros((B, HQ), np.float32))


def _device_indices(c):
    return c.dec.plan(INDPTR, DeviceArray.from_numpy(c.drv, INDICES), LAST, HQ, HKV, D, PS,
                      device_ordinal=0)


def _out_aliases_q(c):
    return c.run(out=c.q)


def _out_f16(c):
    return c.run(out=DeviceArray.empty(c.drv, (B, HQ, D), np.float16))


def _merge_past_end(c):
    v = short(c.drv, (3, 2, 2, 64), missing_bytes=4)
    s = DeviceArray.full(c.drv, (3, 2, 2), np.float32, 0.0)
    return _treepo.merge_states(v, s, DeviceArray.empty(c.drv, (3, 2, 64), np.float32), stream=0)


def _merge_host_mixed(c):
    v = DeviceArray.full(c.drv, (3, 2, 2, 64), np.float32, 0.0)
    return treepo.merge_states(v, np.zeros((3, 2, 2), np.float32),
                               out=DeviceArray.empty(c.drv, (3, 2, 64), np.float32))


def _packed_past_end(c):
    tree = treepo.PackedTree.pack([-1], [4])
    q = DeviceArray.full(c.drv, (4, 2, 64), np.float32, 0.0)
    k = short(c.drv, (4, 2, 64), missing_bytes=2 * 64 * 4)  # one token short
    v = DeviceArray.full(c.drv, (4, 2, 64), np.float32, 0.0)
    return _treepo.packed_attention_forward(
        q, k, v, tree._inner, DeviceArray.empty(c.drv, (4, 2, 64), np.float32),
        DeviceArray.empty(c.drv, (2, 4), np.float32), stream=0,
    )


def _merge_on(c, devices):
    """merge_states with v, s, out claiming CUDA devices ``devices`` (memory of device 0)."""
    shapes = [(3, 2, 2, 64), (3, 2, 2), (3, 2, 64)]
    arrs = [DeviceArray(DeviceArray.full(c.drv, sh, np.float32, 0.0).alloc, sh, np.float32,
                        device=(2, dev)) for sh, dev in zip(shapes, devices)]
    return _treepo.merge_states(*arrs, stream=0)


# (id, call, exception type, message fragment)
BAD = [
    ("cuda:0 mixed with cuda:1", lambda c: _merge_on(c, (0, 1, 0)), ValueError,
     "all tensors must be on one device: v is on cuda:0 but s is on cuda:1"),
    ("a CUDA device that does not exist", lambda c: _merge_on(c, (1, 1, 1)), RuntimeError,
     "device 1 requested but only 1 exist"),
    ("host kv with device q/out/lse", _host_kv, ValueError,
     "all tensors must be on one device: q is on cuda:0 but paged_kv_cache is on cpu"),
    ("host tensors on a cuda plan", _host_tensors_cuda_plan, ValueError,
     "the plan was made for cuda:0 but the tensors are on cpu"),
    ("out past its allocation", _out_past_end, ValueError,
     "run past the end of their allocation"),
    ("lse past its allocation", _lse_past_end, ValueError,
     "run past the end of their allocation"),
    ("q byte_offset past its allocation", _q_offset_past_end, ValueError,
     "run past the end of their allocation"),
    ("cache pages past its allocation", _kv_past_end, ValueError,
     "run past the end of their allocation"),
    ("freed device memory", _freed_q, ValueError, "is not device memory of cuda:0"),
    ("host memory exported as CUDA", _host_memory_as_cuda, ValueError,
     "is not device memory of cuda:0"),
    ("stream a str", _stream_str, TypeError, "'str' object cannot be interpreted as an integer"),
    ("stream negative", _stream_negative, OverflowError, "can't convert negative int"),
    ("stream a float", _stream_float, TypeError, "'float' object cannot be"),
    ("device index array to plan", _device_indices, ValueError,
     "indices: index arrays given to plan() are read on the host"),
    ("out aliases q", _out_aliases_q, ValueError, "out overlaps q in memory"),
    ("out float16, q float32", _out_f16, TypeError, "out: dtype float16 differs from q's float32"),
    ("merge v past its allocation", _merge_past_end, ValueError,
     "run past the end of their allocation"),
    ("merge host s with device v", _merge_host_mixed, ValueError,
     "all tensors must be on one device"),
    ("packed k past its allocation", _packed_past_end, ValueError,
     "run past the end of their allocation"),
]


@pytest.mark.parametrize("call,exc,fragment", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_cuda_call(drv, call, exc, fragment):
    c = Call(drv)
    with pytest.raises(exc) as info:
        call(c)
    assert fragment in str(info.value), f"message was: {info.value}"
    if call.__name__.startswith("_stream") and sys.version_info >= (3, 11):
        # pyo3 names the argument in an exception note, not in the message.
        notes = getattr(info.value, "__notes__", [])
        assert "while processing 'stream'" in notes, f"notes were: {notes}"
    # The failed call left the device usable: a good call right after works.
    c2 = Call(drv)
    c2.run()
    assert np.isfinite(c2.out.numpy(0)).all()


def test_report(capsys, drv):
    """Prints every max error recorded by the tests above (straight to the terminal)."""
    with capsys.disabled():
        print()
        for what, err in sorted(MAX_ERR.items()):
            print(f"cuda-emu max abs error {err:.3e}  {what}")
