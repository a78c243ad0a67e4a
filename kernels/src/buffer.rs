//! Typed device buffers and borrowed views into them.
//!
//! A [`Buffer<T>`] owns memory on exactly one backend. Ops take [`View`]/[`ViewMut`] (a buffer
//! plus an element range), so one allocation can hold many tensors — the llm.c layout of one
//! parameter buffer with named views — and Rust's borrow rules keep an op from reading and
//! writing the same buffer through two arguments.
//!
//! A buffer may also wrap memory the caller owns — a host slice, a CUDA device pointer, a wgpu
//! buffer — without copying it ([`external`](crate::external)): views and ops treat it exactly
//! like our own, and dropping it frees nothing.

use std::ops::Range;

use crate::{BackendKind, DType, Element, KernelError, Result};

/// Memory of one backend. `pub(crate)`: backends match on it, users never see it.
pub(crate) enum Store<T: Element> {
    Cpu(Vec<T>),
    /// Caller-owned host memory (see [`crate::external`]); never freed here.
    Host(crate::external::HostPtr<T>),
    #[cfg(feature = "cuda")]
    Cuda(cudarc::driver::CudaSlice<T>),
    /// Caller-owned device memory: a `CUdeviceptr`; never freed here.
    #[cfg(feature = "cuda")]
    CudaExternal(u64),
    /// Ours or the caller's (then `Buffer::external` is set): a wgpu buffer is a shared handle.
    #[cfg(feature = "wgpu")]
    Wgpu(::wgpu::Buffer),
}

/// An owned, typed buffer of `len` elements on one backend.
pub struct Buffer<T: Element> {
    pub(crate) len: usize,
    pub(crate) store: Store<T>,
    /// The memory belongs to the caller (wrapped, not allocated, by this crate).
    pub(crate) external: bool,
}

impl<T: Element> std::fmt::Debug for Buffer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Buffer<{}>[{}] on {}", T::DTYPE, self.len, self.backend())
    }
}

impl<T: Element> Buffer<T> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the buffer holds no element.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Element type tag.
    pub fn dtype(&self) -> DType {
        T::DTYPE
    }

    /// The backend whose memory holds this buffer.
    pub fn backend(&self) -> BackendKind {
        match &self.store {
            Store::Cpu(_) | Store::Host(_) => BackendKind::Cpu,
            #[cfg(feature = "cuda")]
            Store::Cuda(_) | Store::CudaExternal(_) => BackendKind::Cuda,
            #[cfg(feature = "wgpu")]
            Store::Wgpu(_) => BackendKind::Wgpu,
        }
    }

    /// A view of the whole buffer.
    pub fn view(&self) -> View<'_, T> {
        View { buf: self, offset: 0, len: self.len }
    }

    /// A mutable view of the whole buffer.
    pub fn view_mut(&mut self) -> ViewMut<'_, T> {
        let len = self.len;
        ViewMut { buf: self, offset: 0, len }
    }

    /// A view of `range` (in elements); an error if it does not fit.
    pub fn slice(&self, range: Range<usize>) -> Result<View<'_, T>> {
        check_range(self.len, &range)?;
        Ok(View { buf: self, offset: range.start, len: range.end - range.start })
    }

    /// A mutable view of `range` (in elements); an error if it does not fit.
    pub fn slice_mut(&mut self, range: Range<usize>) -> Result<ViewMut<'_, T>> {
        check_range(self.len, &range)?;
        Ok(ViewMut { buf: self, offset: range.start, len: range.end - range.start })
    }

    /// The host slice of a CPU buffer (`None` on other backends).
    pub fn as_cpu_slice(&self) -> Option<&[T]> {
        match &self.store {
            Store::Cpu(v) => Some(v),
            Store::Host(p) => Some(p.slice(0, self.len)),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    /// True when the memory belongs to the caller ([`crate::external`]): dropping the buffer
    /// frees nothing.
    pub fn is_external(&self) -> bool {
        self.external
    }
}

fn check_range(len: usize, range: &Range<usize>) -> Result<()> {
    if range.start > range.end || range.end > len {
        return Err(KernelError::Invalid {
            op: "slice",
            msg: format!(
                "range {}..{} is outside a buffer of {len} elements",
                range.start, range.end
            ),
        });
    }
    Ok(())
}

/// A borrowed range `[offset, offset + len)` of a buffer, read-only.
pub struct View<'a, T: Element> {
    pub(crate) buf: &'a Buffer<T>,
    pub(crate) offset: usize,
    pub(crate) len: usize,
}

impl<T: Element> Clone for View<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T: Element> Copy for View<'_, T> {}

impl<'a, T: Element> View<'a, T> {
    /// Number of elements in the view.
    pub fn len(&self) -> usize {
        self.len
    }
    /// True when the view is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// First element's index in the underlying buffer.
    pub fn offset(&self) -> usize {
        self.offset
    }
    /// The backend of the underlying buffer.
    pub fn backend(&self) -> BackendKind {
        self.buf.backend()
    }
    /// The underlying buffer.
    pub fn buffer(&self) -> &'a Buffer<T> {
        self.buf
    }
    /// A sub-view, relative to this view.
    pub fn slice(&self, range: Range<usize>) -> Result<View<'a, T>> {
        check_range(self.len, &range)?;
        Ok(View { buf: self.buf, offset: self.offset + range.start, len: range.end - range.start })
    }
    /// The host slice of a CPU view.
    pub(crate) fn cpu(&self) -> &'a [T] {
        match &self.buf.store {
            Store::Cpu(v) => &v[self.offset..self.offset + self.len],
            Store::Host(p) => p.slice(self.offset, self.len),
            #[allow(unreachable_patterns)]
            _ => unreachable!("backend mismatch is rejected at the validation boundary"),
        }
    }
}

/// A borrowed range of a buffer, writable.
pub struct ViewMut<'a, T: Element> {
    pub(crate) buf: &'a mut Buffer<T>,
    pub(crate) offset: usize,
    pub(crate) len: usize,
}

impl<T: Element> ViewMut<'_, T> {
    /// Number of elements in the view.
    pub fn len(&self) -> usize {
        self.len
    }
    /// True when the view is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// First element's index in the underlying buffer.
    pub fn offset(&self) -> usize {
        self.offset
    }
    /// The backend of the underlying buffer.
    pub fn backend(&self) -> BackendKind {
        self.buf.backend()
    }
    /// Reborrow as a shorter-lived mutable view.
    pub fn reborrow(&mut self) -> ViewMut<'_, T> {
        ViewMut { buf: self.buf, offset: self.offset, len: self.len }
    }
    /// Reborrow as a read-only view.
    pub fn as_view(&self) -> View<'_, T> {
        View { buf: self.buf, offset: self.offset, len: self.len }
    }
    /// A mutable sub-view, relative to this view.
    pub fn slice_mut(&mut self, range: Range<usize>) -> Result<ViewMut<'_, T>> {
        check_range(self.len, &range)?;
        Ok(ViewMut {
            buf: self.buf,
            offset: self.offset + range.start,
            len: range.end - range.start,
        })
    }
    /// The host slice of a CPU view.
    pub(crate) fn cpu(&mut self) -> &mut [T] {
        match &mut self.buf.store {
            Store::Cpu(v) => &mut v[self.offset..self.offset + self.len],
            Store::Host(p) => p.slice_mut(self.offset, self.len),
            #[allow(unreachable_patterns)]
            _ => unreachable!("backend mismatch is rejected at the validation boundary"),
        }
    }
}

impl<'a, T: Element> From<&'a Buffer<T>> for View<'a, T> {
    fn from(b: &'a Buffer<T>) -> Self {
        b.view()
    }
}
impl<'a, T: Element> From<&'a mut Buffer<T>> for ViewMut<'a, T> {
    fn from(b: &'a mut Buffer<T>) -> Self {
        b.view_mut()
    }
}
impl<'a, T: Element> From<&'a mut Buffer<T>> for View<'a, T> {
    fn from(b: &'a mut Buffer<T>) -> Self {
        b.view()
    }
}
