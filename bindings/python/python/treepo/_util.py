"""Helpers shared by the wrappers: torch detection, devices, streams, output allocation."""

import sys

import numpy as np


def _torch():
    """The torch module if it is already imported or importable, else None."""
    mod = sys.modules.get("torch")
    if mod is not None:
        return mod
    try:
        import torch
    except ImportError:
        return None
    return torch


def is_torch(x):
    """Whether ``x`` is a ``torch.Tensor`` (without importing torch for numpy users)."""
    mod = sys.modules.get("torch")
    return mod is not None and isinstance(x, mod.Tensor)


def arg(x):
    """What crosses into Rust: torch tensors are detached (``__dlpack__`` refuses tensors that
    require grad; ``detach`` is a view, no copy)."""
    if is_torch(x) and x.requires_grad:
        return x.detach()
    return x


def check_tensor(x, name):
    """TypeError unless ``x`` speaks DLPack (checked before outputs are allocated like it)."""
    if not hasattr(x, "__dlpack__"):
        raise TypeError(
            f"{name}: expected a tensor supporting DLPack (torch.Tensor, numpy.ndarray), got "
            f"{type(x).__name__}"
        )


def cuda_ordinal(x):
    """The CUDA device index of a torch tensor, or None (host memory)."""
    if is_torch(x) and x.is_cuda:
        return x.device.index if x.device.index is not None else _torch().cuda.current_device()
    return None


def _stream_handle(stream):
    """An explicit ``stream=`` argument as an int handle: an int (a ``CUstream`` /
    ``cudaStream_t`` value, 0 = the legacy default stream) or any object with a ``cuda_stream``
    (torch) or ``ptr`` (CuPy) attribute."""
    for attr in ("cuda_stream", "ptr"):
        if hasattr(stream, attr):
            stream = getattr(stream, attr)
            break
    if isinstance(stream, bool) or not isinstance(stream, int) or stream < 0:
        raise TypeError(
            "stream: expected a CUDA stream handle (a non-negative int, or an object with a "
            f"`cuda_stream` or `ptr` attribute), got {stream!r}"
        )
    return stream


def stream_of(x, stream=None):
    """The CUDA stream to launch on for ``x`` as an int: ``stream`` when given; else torch's
    current stream for a torch CUDA tensor; else 0 (the legacy default stream; host tensors
    ignore it). Our kernels launch on it, ordered with the caller's own work, without
    synchronizing."""
    if stream is not None:
        return _stream_handle(stream)
    if is_torch(x) and x.is_cuda:
        return int(_torch().cuda.current_stream(x.device).cuda_stream)
    return 0


def parse_device(device):
    """``"cpu"``, ``"cuda"``, ``"cuda:1"``, a ``torch.device`` or an int -> CUDA ordinal or None."""
    if device is None:
        return None
    if isinstance(device, int):
        return device
    s = str(device)
    if s == "cpu":
        return None
    if s == "cuda":
        torch = _torch()
        # torch's current device when torch drives CUDA here; device 0 otherwise (a CUDA build
        # of torch on a machine without a driver, CuPy/driver-API callers).
        if torch is not None and torch.cuda.is_available():
            return torch.cuda.current_device()
        return 0
    if s.startswith("cuda:"):
        return int(s.split(":", 1)[1])
    raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")


def device_stream(ordinal, stream=None):
    """The stream to use on CUDA device ``ordinal`` as an int: ``stream`` when given, else
    torch's current stream there when torch drives CUDA, else 0 (the legacy default stream;
    also for the CPU)."""
    if ordinal is None:
        return 0
    if stream is not None:
        return _stream_handle(stream)
    torch = _torch()
    if torch is None or not torch.cuda.is_available():
        return 0
    return int(torch.cuda.current_stream(ordinal).cuda_stream)


def empty(shape, dtype, like):
    """An uninitialized array/tensor of ``shape`` on ``like``'s device and library. ``dtype`` is
    a torch dtype for torch, a numpy dtype (or name) for numpy."""
    if is_torch(like):
        return _torch().empty(shape, dtype=dtype, device=like.device)
    return np.empty(shape, dtype=dtype)


def float32_of(like):
    """float32 in ``like``'s library."""
    return _torch().float32 if is_torch(like) else np.float32


def host_index(x):
    """Plan inputs are read on the host: a CUDA torch tensor is copied to the CPU (a
    synchronizing copy, as in FlashInfer's plan); anything else is passed as is and checked in
    Rust (int32 tensor/array or a sequence of ints)."""
    if is_torch(x) and x.is_cuda:
        return x.cpu()
    return x


def same_allocation(a, b):
    """Whether two arrays/tensors are views of one allocation (torch: one storage; numpy: one
    base array)."""
    if is_torch(a) and is_torch(b):
        return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):

        def root(x):
            while isinstance(x, np.ndarray) and x.base is not None:
                x = x.base
            return x

        return root(a) is root(b)
    return False


def i32(buf):
    """int32 bytes from Rust -> a writable numpy array."""
    return np.frombuffer(bytearray(buf), dtype=np.int32)


def i64(buf):
    """int64 bytes from Rust -> a writable numpy array."""
    return np.frombuffer(bytearray(buf), dtype=np.int64)


def f32(buf):
    """float32 bytes from Rust -> a writable numpy array."""
    return np.frombuffer(bytearray(buf), dtype=np.float32)
