//! Element types a buffer can hold.

use std::fmt;

pub use half::{bf16, f16};

/// Runtime tag of an [`Element`] type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit IEEE float.
    F32,
    /// 16-bit IEEE float.
    F16,
    /// bfloat16.
    BF16,
    /// 32-bit signed integer (page tables, token ids, indptrs).
    I32,
    /// 32-bit unsigned integer.
    U32,
}

impl DType {
    /// Size of one element in bytes.
    pub const fn size(self) -> usize {
        match self {
            DType::F32 | DType::I32 | DType::U32 => 4,
            DType::F16 | DType::BF16 => 2,
        }
    }

    /// The suffix of kernel symbols for this dtype (`{op}_{suffix}`, candle's convention).
    pub const fn suffix(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::I32 => "i32",
            DType::U32 => "u32",
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.suffix())
    }
}

#[cfg(feature = "cuda")]
mod repr {
    /// Types cudarc can copy to and from the device (and zero-fill).
    pub trait DeviceRepr: cudarc::driver::DeviceRepr + cudarc::driver::ValidAsZeroBits {}
    impl<T: cudarc::driver::DeviceRepr + cudarc::driver::ValidAsZeroBits> DeviceRepr for T {}
}
#[cfg(not(feature = "cuda"))]
mod repr {
    /// Without the CUDA backend every type qualifies.
    pub trait DeviceRepr {}
    impl<T> DeviceRepr for T {}
}

/// A type that can live in a device [`Buffer`](crate::Buffer).
pub trait Element:
    bytemuck::Pod + Copy + Send + Sync + fmt::Debug + PartialEq + 'static + repr::DeviceRepr
{
    /// The runtime tag.
    const DTYPE: DType;
    /// The value written into outputs before a test run so an unwritten element is caught
    /// (NaN for floats, an out-of-range sentinel for integers).
    const POISON: Self;
}

impl Element for f32 {
    const DTYPE: DType = DType::F32;
    const POISON: Self = f32::NAN;
}
impl Element for f16 {
    const DTYPE: DType = DType::F16;
    const POISON: Self = f16::NAN;
}
impl Element for bf16 {
    const DTYPE: DType = DType::BF16;
    const POISON: Self = bf16::NAN;
}
impl Element for i32 {
    const DTYPE: DType = DType::I32;
    const POISON: Self = i32::MIN;
}
impl Element for u32 {
    const DTYPE: DType = DType::U32;
    const POISON: Self = u32::MAX;
}

/// Float element types the attention and cache kernels accept (computation is always f32).
pub trait FloatElement: Element {
    /// Widen to f32.
    fn to_f32(self) -> f32;
    /// Round from f32 (round to nearest even).
    fn from_f32(x: f32) -> Self;
}
impl FloatElement for f32 {
    fn to_f32(self) -> f32 {
        self
    }
    fn from_f32(x: f32) -> Self {
        x
    }
}
impl FloatElement for f16 {
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
    fn from_f32(x: f32) -> Self {
        f16::from_f32(x)
    }
}
impl FloatElement for bf16 {
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }
    fn from_f32(x: f32) -> Self {
        bf16::from_f32(x)
    }
}
