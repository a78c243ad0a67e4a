//! Classifier checkpoints in safetensors.
//!
//! Four little-endian F32 tensors, PyTorch `Linear` naming and layout:
//!
//! | name         | shape                  |
//! |--------------|------------------------|
//! | `fc1.weight` | `[hidden, DIM]`        |
//! | `fc1.bias`   | `[hidden]`             |
//! | `fc2.weight` | `[NUM_CLASSES, hidden]`|
//! | `fc2.bias`   | `[NUM_CLASSES]`        |
//!
//! Loading requires exactly these four tensors with these shapes (`hidden` read from
//! `fc1.bias`, at least 1) and finite values; anything else is a [`FlowError::Format`].

use std::path::Path;

use super::Classifier;
use crate::Result;
use crate::data::{DIM, NUM_CLASSES};
use crate::tensor_io::{floats, format_err, parse, read, save_f32};

const NAMES: [&str; 4] = ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"];

impl Classifier {
    /// Writes the weights to `path` (see the module docs for the tensor names). The file is
    /// written to `path` + `.tmp` first and renamed, so a crash never leaves a truncated
    /// checkpoint under `path`.
    ///
    /// Errors: a file-system failure is a [`crate::FlowError::Io`]; an encoding failure a
    /// [`crate::FlowError::Format`].
    pub fn save(&self, path: &Path) -> Result<()> {
        let h = self.hidden;
        save_f32(
            path,
            &[
                (NAMES[0], vec![h, DIM], &self.w1),
                (NAMES[1], vec![h], &self.b1),
                (NAMES[2], vec![NUM_CLASSES, h], &self.w2),
                (NAMES[3], vec![NUM_CLASSES], &self.b2),
            ],
            None,
        )
    }

    /// Reads a checkpoint written by [`Classifier::save`].
    ///
    /// Errors: an unreadable file is a [`crate::FlowError::Io`]; a file that is not
    /// safetensors, a missing or extra tensor, a dtype other than F32, a shape that does not
    /// match the table in the module docs, or a non-finite weight is a
    /// [`crate::FlowError::Format`] naming the tensor.
    pub fn load(path: &Path) -> Result<Classifier> {
        let bytes = read(path)?;
        let st = parse(path, &bytes, &NAMES)?;
        let b1 = st
            .tensor("fc1.bias")
            .map_err(|e| format_err(path, format!("tensor fc1.bias missing ({e})")))?;
        let h = match b1.shape() {
            [h] if *h > 0 => *h,
            s => {
                return Err(format_err(
                    path,
                    format!("fc1.bias has shape {s:?}, expected [hidden ≥ 1]"),
                ));
            }
        };
        if h.checked_mul(DIM).is_none() {
            return Err(format_err(path, format!("hidden width {h} is too large")));
        }
        Ok(Classifier {
            hidden: h,
            w1: floats(path, &st, NAMES[0], &[h, DIM])?,
            b1: floats(path, &st, NAMES[1], &[h])?,
            w2: floats(path, &st, NAMES[2], &[NUM_CLASSES, h])?,
            b2: floats(path, &st, NAMES[3], &[NUM_CLASSES])?,
        })
    }
}
