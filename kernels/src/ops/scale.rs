//! `x[i] *= s` in place (gradient clipping by the global norm).

use crate::ops::in_place::{self, InPlace};
use crate::{Device, Result, ViewMut, validate};

const OP: &str = "scale";

/// `x[i] *= s` for `i < n`; `s` must be finite.
pub fn scale<'a>(dev: &Device, x: impl Into<ViewMut<'a, f32>>, s: f32, n: usize) -> Result<()> {
    validate::finite(OP, "s", s)?;
    in_place::run(dev, InPlace::Scale, x.into(), s, n)
}
