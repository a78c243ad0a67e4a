"""CUDA device memory without torch: the CUDA driver API through ctypes (on the emulated device
of scripts/cuda-emu.sh, its stand-in libcuda.so) and a minimal DLPack producer over those
allocations (DLPack device kDLCUDA), so the bindings' CUDA path runs on memory it did not
allocate, exactly as with torch CUDA tensors."""

import ctypes

import numpy as np
from conftest import _DLDataType, _DLDevice, _DLManagedTensor

KDLCUDA = 2
_DLPACK_DTYPE = {  # numpy dtype -> (DLPack type code, bits)
    np.dtype(np.float32): (2, 32),
    np.dtype(np.float16): (2, 16),
    np.dtype(np.int32): (0, 32),
    np.dtype(np.float64): (2, 64),
}


class CudaError(RuntimeError):
    """A driver call that did not return CUDA_SUCCESS."""


class Driver:
    """The CUDA driver (``libcuda.so`` found on ``LD_LIBRARY_PATH``: under scripts/cuda-emu.sh,
    the emulator's stand-in), initialized with device 0's primary context current."""

    def __init__(self, name="libcuda.so"):
        lib = ctypes.CDLL(name)
        self.lib = lib
        self.emulated = hasattr(lib, "treepo_emu_last_error")
        u64, vp, sz = ctypes.c_uint64, ctypes.c_void_p, ctypes.c_size_t
        sigs = {
            "cuInit": [ctypes.c_uint],
            "cuDeviceGet": [ctypes.POINTER(ctypes.c_int), ctypes.c_int],
            "cuDevicePrimaryCtxRetain": [ctypes.POINTER(vp), ctypes.c_int],
            "cuCtxSetCurrent": [vp],
            "cuMemAlloc_v2": [ctypes.POINTER(u64), sz],
            "cuMemFree_v2": [u64],
            "cuMemcpyHtoD_v2": [u64, vp, sz],
            "cuMemcpyDtoH_v2": [vp, u64, sz],
            "cuStreamCreate": [ctypes.POINTER(vp), ctypes.c_uint],
            "cuStreamDestroy_v2": [vp],
            "cuStreamSynchronize": [vp],
            "cuGetErrorName": [ctypes.c_int, ctypes.POINTER(ctypes.c_char_p)],
        }
        for fn, args in sigs.items():
            f = getattr(lib, fn)
            f.argtypes, f.restype = args, ctypes.c_int
        self._check("cuInit", lib.cuInit(0))
        dev = ctypes.c_int()
        self._check("cuDeviceGet", lib.cuDeviceGet(ctypes.byref(dev), 0))
        ctx = ctypes.c_void_p()
        rc = lib.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev)
        self._check("cuDevicePrimaryCtxRetain", rc)
        self.ctx = ctx
        self.current()

    def _check(self, what, rc):
        if rc != 0:
            name = ctypes.c_char_p()
            self.lib.cuGetErrorName(rc, ctypes.byref(name))
            raise CudaError(f"{what} failed: {rc} ({(name.value or b'?').decode()})")

    def current(self):
        """Makes the primary context current on the calling thread."""
        self._check("cuCtxSetCurrent", self.lib.cuCtxSetCurrent(self.ctx))

    def alloc(self, nbytes):
        p = ctypes.c_uint64()
        self._check("cuMemAlloc_v2", self.lib.cuMemAlloc_v2(ctypes.byref(p), nbytes))
        return p.value

    def free(self, ptr):
        self._check("cuMemFree_v2", self.lib.cuMemFree_v2(ptr))

    def htod(self, ptr, arr):
        arr = np.ascontiguousarray(arr)
        self._check("cuMemcpyHtoD_v2", self.lib.cuMemcpyHtoD_v2(ptr, arr.ctypes.data, arr.nbytes))

    def dtoh(self, ptr, shape, dtype):
        out = np.empty(shape, dtype=dtype)
        self._check("cuMemcpyDtoH_v2", self.lib.cuMemcpyDtoH_v2(out.ctypes.data, ptr, out.nbytes))
        return out

    def stream_create(self):
        s = ctypes.c_void_p()
        self._check("cuStreamCreate", self.lib.cuStreamCreate(ctypes.byref(s), 0))
        return s.value

    def stream_destroy(self, s):
        self._check("cuStreamDestroy_v2", self.lib.cuStreamDestroy_v2(s))

    def sync(self, s):
        self._check("cuStreamSynchronize", self.lib.cuStreamSynchronize(s))


class DeviceAllocation:
    """``nbytes`` of device memory, freed by :meth:`free` (or when collected)."""

    def __init__(self, drv, nbytes):
        self.drv, self.nbytes = drv, nbytes
        self.ptr = drv.alloc(nbytes)

    def free(self):
        if self.ptr:
            self.drv.free(self.ptr)
            self.ptr = 0

    def __del__(self):
        try:
            self.free()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


class DeviceArray:
    """A C-contiguous ``shape``/``dtype`` view of device memory at ``alloc.ptr + byte_offset``,
    exported through DLPack as kDLCUDA device 0. The shape is NOT checked against the
    allocation (tests give views that run past its end on purpose). ``streams`` records every
    ``stream=`` the consumer passed to ``__dlpack__``."""

    def __init__(self, alloc, shape, dtype, byte_offset=0, device=(KDLCUDA, 0)):
        self.alloc = alloc
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.byte_offset = byte_offset
        self.device = device
        self.streams = []
        self._keep = []  # every export (and its shape/stride arrays) lives as long as this object

    @classmethod
    def empty(cls, drv, shape, dtype):
        nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        return cls(DeviceAllocation(drv, max(nbytes, 1)), shape, dtype)

    @classmethod
    def from_numpy(cls, drv, arr):
        arr = np.ascontiguousarray(arr)
        d = cls.empty(drv, arr.shape, arr.dtype)
        drv.htod(d.ptr, arr)
        return d

    @classmethod
    def full(cls, drv, shape, dtype, value):
        return cls.from_numpy(drv, np.full(shape, value, dtype=dtype))

    @property
    def ptr(self):
        """Address of element 0."""
        return self.alloc.ptr + self.byte_offset

    @property
    def nbytes(self):
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    def numpy(self, stream=None):
        """A host copy (cuMemcpyDtoH from this array's own address), after syncing ``stream``."""
        if stream is not None:
            self.alloc.drv.sync(stream)
        return self.alloc.drv.dtoh(self.ptr, self.shape, self.dtype)

    def __dlpack_device__(self):
        return self.device

    def __dlpack__(self, stream=None, max_version=None, dl_device=None, copy=None):
        self.streams.append(stream)
        if copy:
            raise BufferError("DeviceArray exports device memory in place only (copy=True)")
        code, bits = _DLPACK_DTYPE[self.dtype]
        n = len(self.shape)
        shape = (ctypes.c_int64 * max(n, 1))(*self.shape)
        strides, acc = [0] * n, 1
        for i in reversed(range(n)):
            strides[i] = acc
            acc *= self.shape[i]
        strides = (ctypes.c_int64 * max(n, 1))(*strides)
        m = _DLManagedTensor()
        m.dl_tensor.data = self.alloc.ptr
        m.dl_tensor.byte_offset = self.byte_offset
        m.dl_tensor.device = _DLDevice(*self.device)
        m.dl_tensor.ndim = n
        m.dl_tensor.dtype = _DLDataType(code, bits, 1)
        m.dl_tensor.shape = shape
        m.dl_tensor.strides = strides
        self._keep.append((m, shape, strides))
        new = ctypes.pythonapi.PyCapsule_New
        new.restype = ctypes.py_object
        new.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
        return new(ctypes.addressof(m), b"dltensor", None)
