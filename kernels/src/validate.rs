//! Helpers for the one validation boundary: every public op checks its arguments with these
//! before any launch, and kernels assume what was checked.

use crate::{Device, Element, KernelError, Result, View, ViewMut};

/// `view` lives on `dev` and holds at least `need` elements.
pub(crate) fn input<T: Element>(
    dev: &Device,
    op: &'static str,
    name: &'static str,
    view: &View<'_, T>,
    need: usize,
) -> Result<()> {
    dev.check_same(op, name, view.backend())?;
    if view.len() < need {
        return Err(KernelError::Invalid {
            op,
            msg: format!("`{name}` holds {} elements but the shape needs {need}", view.len()),
        });
    }
    Ok(())
}

/// `view` lives on `dev` and holds at least `need` elements (the checks of [`input`]).
pub(crate) fn output<T: Element>(
    dev: &Device,
    op: &'static str,
    name: &'static str,
    view: &ViewMut<'_, T>,
    need: usize,
) -> Result<()> {
    input(dev, op, name, &view.as_view(), need)
}

/// `a * b * ...` without overflow.
pub(crate) fn product(op: &'static str, dims: &[usize]) -> Result<usize> {
    dims.iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| KernelError::Invalid { op, msg: format!("shape {dims:?} overflows usize") })
}

/// Dimensions a kernel indexes with 32-bit integers must fit.
pub(crate) fn fits_u32(op: &'static str, what: &str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| KernelError::Invalid {
        op,
        msg: format!("{what} = {v} does not fit the kernels' 32-bit indices"),
    })
}

/// A float parameter is finite.
pub(crate) fn finite(op: &'static str, what: &str, v: f32) -> Result<()> {
    if !v.is_finite() {
        return Err(KernelError::Invalid { op, msg: format!("{what} = {v} is not finite") });
    }
    Ok(())
}
