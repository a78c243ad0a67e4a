//! `x[i] = value` on the device (zeroing gradients without a host upload).

use crate::ops::in_place::{self, InPlace};
use crate::{Device, Result, ViewMut};

/// `x[i] = value` for `i < n`. Any value is accepted (NaN included: tests poison with it).
pub fn fill<'a>(dev: &Device, x: impl Into<ViewMut<'a, f32>>, value: f32, n: usize) -> Result<()> {
    in_place::run(dev, InPlace::Fill, x.into(), value, n)
}
