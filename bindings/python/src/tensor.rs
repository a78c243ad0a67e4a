//! Tensors in, zero copy: any object with `__dlpack__` (torch tensors, numpy arrays) is
//! imported through dlpark, checked (dtype, device, shape, strides, writability) with an
//! error naming the argument, and wrapped as a non-owning `treepo_kernels::Buffer` over the
//! caller's memory (`Buffer::from_host_ptr` / `Buffer::from_cuda_ptr`).

use std::ffi::c_void;

use dlpark::DlpackFlags;
use dlpark::ffi::{DLDataType, DLDataTypeCode, DLDevice, DLDeviceType};
use dlpark::python::consumer::stream;
use dlpark::python::{DlpackStream, ImportRequest, ImportedDlpack, StreamArg};
use pyo3::prelude::*;
use treepo_kernels::{Buffer, DType, Device, Element};

use crate::devices::Loc;
use crate::errors::{Error, Result, type_err, value_err};

/// A tensor's element type as DLPack describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dt {
    /// One the kernels know.
    Known(DType),
    /// Anything else (code, bits, lanes), named in errors.
    Other(u8, u8, u16),
}

impl Dt {
    fn of(t: DLDataType) -> Dt {
        let known = match (t.code, t.bits, t.lanes) {
            (DLDataTypeCode::FLOAT, 32, 1) => Some(DType::F32),
            (DLDataTypeCode::FLOAT, 16, 1) => Some(DType::F16),
            (DLDataTypeCode::BFLOAT, 16, 1) => Some(DType::BF16),
            (DLDataTypeCode::INT, 32, 1) => Some(DType::I32),
            _ => None,
        };
        known.map_or(Dt::Other(t.code.0, t.bits, t.lanes), Dt::Known)
    }
}

/// numpy/torch-style dtype names.
pub fn dtype_name(d: DType) -> &'static str {
    match d {
        DType::F32 => "float32",
        DType::F16 => "float16",
        DType::BF16 => "bfloat16",
        DType::I32 => "int32",
        DType::U32 => "uint32",
    }
}

impl std::fmt::Display for Dt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Dt::Known(d) => write!(f, "{}", dtype_name(d)),
            Dt::Other(code, bits, lanes) => {
                let kind = match DLDataTypeCode(code) {
                    DLDataTypeCode::INT => "int",
                    DLDataTypeCode::UINT => "uint",
                    DLDataTypeCode::FLOAT => "float",
                    DLDataTypeCode::BFLOAT => "bfloat",
                    DLDataTypeCode::BOOL => return write!(f, "bool"),
                    DLDataTypeCode::COMPLEX => "complex",
                    _ => {
                        return write!(f, "dlpack dtype (code {code}, {bits} bits, {lanes} lanes)");
                    }
                };
                if lanes == 1 {
                    write!(f, "{kind}{bits}")
                } else {
                    write!(f, "{kind}{bits}x{lanes}")
                }
            }
        }
    }
}

/// The caller's CUDA stream, handed to the producer so the tensor is ready on it.
struct CudaStream(usize);

// SAFETY: `as_python_arg` encodes the stream handle the Python layer passed for this tensor's
// device (torch's current stream, alive during the call) with dlpark's CUDA convention.
unsafe impl DlpackStream for CudaStream {
    fn as_python_arg(&self, _py: Python<'_>, _device: DLDevice) -> PyResult<StreamArg> {
        Ok(stream::cuda(self.0 as *mut c_void))
    }

    unsafe fn wait_for_producer(&self, _device: DLDevice, producer: *mut c_void) -> PyResult<bool> {
        // Ready without any wait when the producer works on our stream (the usual case: we run
        // on torch's current stream); otherwise fall back to `__dlpack__(stream=...)`, where
        // the producer orders its stream before ours.
        Ok(producer as usize == self.0)
    }
}

/// An imported tensor: the producer's export (kept alive while this lives) and its metadata.
pub struct Tensor {
    /// The argument name, for errors.
    pub name: &'static str,
    _owner: ImportedDlpack,
    /// Element type.
    pub dtype: Dt,
    /// Device.
    pub loc: Loc,
    /// Shape.
    pub shape: Vec<usize>,
    /// Strides in elements.
    pub strides: Vec<i64>,
    /// Address of element 0 (byte offset applied).
    pub ptr: usize,
    read_only: bool,
    copied: bool,
}

impl Tensor {
    /// Imports `obj` (argument `name`) without copying. `stream` is the caller's CUDA stream
    /// (ignored for host tensors).
    pub fn import(obj: &Bound<'_, PyAny>, name: &'static str, stream: usize) -> Result<Tensor> {
        if !obj.hasattr("__dlpack__").unwrap_or(false) {
            let ty = obj.get_type().name().map(|n| n.to_string()).unwrap_or_default();
            return type_err!(
                "{name}: expected a tensor supporting DLPack (torch.Tensor, numpy.ndarray), \
                 got {ty}"
            );
        }
        let wrap = |e: PyErr| Error::Value(format!("{name}: DLPack import failed: {e}"));
        let req = ImportRequest::new(obj.as_borrowed()).map_err(wrap)?;
        let cuda = match req.device() {
            Ok(d) if d.device_type == DLDeviceType::CUDA => Some(CudaStream(stream)),
            _ => None,
        };
        let imported =
            req.import(cuda.as_ref().map(|s| s as &dyn DlpackStream), None).map_err(wrap)?;
        let (flags, t) = (imported.flags(), imported.validate());
        let t = t.map_err(|e| Error::Value(format!("{name}: invalid DLPack tensor: {e}")))?;
        let dev = t.device();
        let loc = match dev.device_type {
            DLDeviceType::CPU => Loc::Cpu,
            DLDeviceType::CUDA => match usize::try_from(dev.device_id) {
                Ok(i) => Loc::Cuda(i),
                Err(_) => return value_err!("{name}: negative CUDA device id {}", dev.device_id),
            },
            other => {
                return value_err!(
                    "{name}: tensors must be on the CPU or a CUDA device, this one is on DLPack \
                     device type {} (device {})",
                    other.0,
                    dev.device_id
                );
            }
        };
        let shape = t.shape().iter().map(|&s| s as usize).collect::<Vec<_>>();
        let strides = t
            .strides_or_compact()
            .map_err(|e| Error::Value(format!("{name}: bad strides: {e}")))?
            .into_owned();
        let numel = t.num_elements();
        // SAFETY: only the address is computed (no dereference); DLPack guarantees the
        // adjusted pointer lies in the producer's allocation for a non-empty tensor.
        let ptr = unsafe { t.offset_bytes_ptr() }
            .map_err(|e| Error::Value(format!("{name}: bad data pointer: {e}")))?
            as usize;
        let dtype = Dt::of(t.dtype());
        Ok(Tensor {
            name,
            dtype,
            loc,
            shape,
            strides,
            ptr: if numel == 0 { 0 } else { ptr },
            read_only: flags.contains(DlpackFlags::READ_ONLY),
            copied: flags.contains(DlpackFlags::IS_COPIED),
            _owner: imported,
        })
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The float dtype (f32/f16/bf16) or a `TypeError`.
    pub fn float_dtype(&self) -> Result<DType> {
        match self.dtype {
            Dt::Known(d @ (DType::F32 | DType::F16 | DType::BF16)) => Ok(d),
            other => type_err!(
                "{}: expected a float32, float16 or bfloat16 tensor, got {other}",
                self.name
            ),
        }
    }

    /// `TypeError` unless the dtype is `want`.
    pub fn require_dtype(&self, want: DType) -> Result<()> {
        if self.dtype != Dt::Known(want) {
            return type_err!(
                "{}: expected a {} tensor, got {}",
                self.name,
                dtype_name(want),
                self.dtype
            );
        }
        Ok(())
    }

    /// `ValueError` unless the shape is `want` (`what` names the dimensions).
    pub fn require_shape(&self, want: &[usize], what: &str) -> Result<()> {
        if self.shape != want {
            return value_err!(
                "{}: expected shape {want:?} ({what}), got {:?}",
                self.name,
                self.shape
            );
        }
        Ok(())
    }

    /// `ValueError` unless the tensor has `n` dimensions.
    pub fn require_ndim(&self, n: usize, what: &str) -> Result<()> {
        if self.shape.len() != n {
            return value_err!(
                "{}: expected {n} dimensions ({what}), got shape {:?}",
                self.name,
                self.shape
            );
        }
        Ok(())
    }

    /// `ValueError` unless the tensor is C-contiguous (dimensions of size 1 may have any
    /// stride, as in torch's `is_contiguous`).
    pub fn require_contiguous(&self) -> Result<()> {
        let mut expect = 1i64;
        let mut ok = true;
        for (&n, &s) in self.shape.iter().zip(&self.strides).rev() {
            if n == 0 {
                return Ok(());
            }
            if n != 1 && s != expect {
                ok = false;
            }
            expect = expect.saturating_mul(n as i64);
        }
        if !ok {
            return value_err!(
                "{}: expected a C-contiguous tensor, got shape {:?} with strides {:?} \
                 (call .contiguous() / numpy.ascontiguousarray first)",
                self.name,
                self.shape,
                self.strides
            );
        }
        Ok(())
    }

    /// `ValueError` if the data may not be written in place (a read-only or copied export).
    pub fn require_writable(&self) -> Result<()> {
        if self.read_only {
            return value_err!(
                "{}: the tensor is read-only; outputs are written in place",
                self.name
            );
        }
        if self.copied {
            return value_err!(
                "{}: the producer exported a copy; outputs must be written in place",
                self.name
            );
        }
        Ok(())
    }

    /// `[first byte, one past the last byte)` the tensor can reach (empty: `(0, 0)`).
    pub fn byte_range(&self) -> (usize, usize) {
        if self.numel() == 0 {
            return (0, 0);
        }
        let size = match self.dtype {
            Dt::Known(d) => d.size(),
            Dt::Other(_, bits, lanes) => (bits as usize * lanes as usize).div_ceil(8),
        } as i64;
        let (mut lo, mut hi) = (0i64, 0i64);
        for (&n, &s) in self.shape.iter().zip(&self.strides) {
            let span = (n as i64 - 1).saturating_mul(s);
            if span < 0 { lo = lo.saturating_add(span) } else { hi = hi.saturating_add(span) }
        }
        let base = self.ptr as i64;
        (
            base.saturating_add(lo.saturating_mul(size)) as usize,
            base.saturating_add(hi.saturating_add(1).saturating_mul(size)) as usize,
        )
    }

    /// Copies a 1-D int32 host tensor (plan tables are read on the host).
    pub fn host_i32(&self) -> Result<Vec<i32>> {
        self.require_dtype(DType::I32)?;
        self.require_ndim(1, "a 1-D index array")?;
        self.require_contiguous()?;
        if self.loc != Loc::Cpu {
            return value_err!(
                "{}: index arrays given to plan() are read on the host; pass a CPU tensor \
                 (got one on {})",
                self.name,
                self.loc
            );
        }
        let n = self.numel();
        if n == 0 {
            return Ok(Vec::new());
        }
        if !self.ptr.is_multiple_of(std::mem::align_of::<i32>()) {
            return value_err!("{}: data at 0x{:x} is not aligned for int32", self.name, self.ptr);
        }
        // SAFETY: a non-empty, contiguous, int32 CPU tensor of `n` elements at `ptr` (DLPack
        // guarantees alignment of the element type); the export is kept alive by `self`.
        Ok(unsafe { std::slice::from_raw_parts(self.ptr as *const i32, n) }.to_vec())
    }

    /// Wraps `len` elements from the tensor's address as a non-owning buffer of `dev`.
    ///
    /// # Safety
    /// `[ptr, ptr + len)` must be memory the tensor can reach (its strides and shape span it),
    /// and the buffer must be dropped before `self`; an output must not overlap any other
    /// argument ([`check_disjoint`]).
    pub unsafe fn buffer<T: Element>(&self, dev: &Device, len: usize) -> Result<Buffer<T>> {
        let buf = match self.loc {
            Loc::Cpu => {
                let ptr = if len == 0 || self.ptr == 0 {
                    std::ptr::NonNull::<T>::dangling().as_ptr()
                } else {
                    self.ptr as *mut T
                };
                let len = if self.ptr == 0 { 0 } else { len };
                // SAFETY: per this function's contract the range belongs to the tensor, which
                // the imported export keeps alive while `self` lives.
                unsafe { Buffer::from_host_ptr(ptr, len) }
            }
            // SAFETY: as above; the driver also checks that the range is one allocation of
            // `dev`'s context.
            Loc::Cuda(_) => unsafe { Buffer::from_cuda_ptr(dev, self.ptr as u64, len) },
        };
        buf.map_err(|e| Error::Value(format!("{}: {e}", self.name)))
    }
}

/// The one device of all `tensors` (they must agree).
pub fn same_loc(tensors: &[&Tensor]) -> Result<Loc> {
    let first = tensors.first().map_or(Loc::Cpu, |t| t.loc);
    for t in tensors {
        if t.loc != first {
            return value_err!(
                "all tensors must be on one device: {} is on {first} but {} is on {}",
                tensors[0].name,
                t.name,
                t.loc
            );
        }
    }
    Ok(first)
}

/// `ValueError` if an output shares memory with any other argument.
pub fn check_disjoint(outputs: &[&Tensor], all: &[&Tensor]) -> Result<()> {
    for o in outputs {
        let (a0, a1) = o.byte_range();
        for t in all {
            if std::ptr::eq(*o, *t) {
                continue;
            }
            let (b0, b1) = t.byte_range();
            if a0 < a1 && b0 < b1 && a0 < b1 && b0 < a1 {
                return value_err!(
                    "{} overlaps {} in memory; outputs must not alias any other argument",
                    o.name,
                    t.name
                );
            }
        }
    }
    Ok(())
}

/// Imports an optional argument (`None` stays `None`).
pub fn import_opt(
    obj: Option<&Bound<'_, PyAny>>,
    name: &'static str,
    stream: usize,
) -> Result<Option<Tensor>> {
    match obj {
        Some(o) if !o.is_none() => Tensor::import(o, name, stream).map(Some),
        _ => Ok(None),
    }
}
