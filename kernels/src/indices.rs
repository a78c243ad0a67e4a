//! Index arrays validated when they cross from the host to the device.
//!
//! Kernels index memory with page ids, slot ids and token ids that live on the device; checking
//! them at every launch would cost a download. Instead an [`Indices`] buffer can only be built
//! from host data whose every value was checked against an exclusive upper `bound`, so an op
//! that receives one needs only compare `bound` with its own capacity.

use crate::{Buffer, Device, KernelError, Result, View};

/// A device buffer of `i32` values, each in `[0, bound)`.
#[derive(Debug)]
pub struct Indices {
    buf: Buffer<i32>,
    bound: usize,
}

impl Indices {
    /// Uploads `values` after checking `0 <= v < bound` for each; the error names the first
    /// offending position.
    pub fn upload(dev: &Device, values: &[i32], bound: usize) -> Result<Indices> {
        check(values, bound)?;
        Ok(Indices { buf: dev.upload(values)?, bound })
    }

    /// Replaces the contents (same length) after the same check; `bound` may change.
    pub fn update(&mut self, dev: &Device, values: &[i32], bound: usize) -> Result<()> {
        check(values, bound)?;
        if values.len() != self.buf.len() {
            self.buf = dev.upload(values)?;
        } else {
            dev.write(&mut self.buf, values)?;
        }
        self.bound = bound;
        Ok(())
    }

    /// Every value is `< bound`.
    pub fn bound(&self) -> usize {
        self.bound
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The device buffer (read-only: writing through it would void the check).
    pub fn view(&self) -> View<'_, i32> {
        self.buf.view()
    }

    /// Errors unless every value is below `capacity` (what the op can address).
    pub fn check_bound(&self, op: &'static str, name: &str, capacity: usize) -> Result<()> {
        if self.bound > capacity {
            return Err(KernelError::Invalid {
                op,
                msg: format!(
                    "`{name}` values may reach {} but only {capacity} exist",
                    self.bound - 1
                ),
            });
        }
        Ok(())
    }
}

fn check(values: &[i32], bound: usize) -> Result<()> {
    if let Some((i, v)) = values.iter().enumerate().find(|(_, v)| **v < 0 || **v as usize >= bound)
    {
        return Err(KernelError::Invalid {
            op: "indices",
            msg: format!("value {v} at position {i} is outside [0, {bound})"),
        });
    }
    Ok(())
}
