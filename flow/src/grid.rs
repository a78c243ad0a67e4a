//! Sample grids as 8-bit grayscale PNG files, for looking at what the generator draws.
//!
//! Layout: `rows × cols` cells, row-major (image `k` is in row `k / cols`, column `k % cols`),
//! each a `DIM`-pixel image upscaled `scale×` by nearest neighbour, separated by `scale`-pixel
//! gaps of mid grey ([`GAP`]); no outer border. So the grid is
//! `cols·SIDE·scale + (cols−1)·scale` pixels wide and likewise high.

use std::path::Path;

use crate::data::{DIM, SIDE};
use crate::{FlowError, Result};

/// The byte of the gaps between cells (the byte pixel value 0.0 maps to).
pub const GAP: u8 = 128;

/// The largest grid rendered, in pixels (256 Mi): a bound on the buffer a bad `scale` could
/// ask for.
pub const MAX_PIXELS: usize = 1 << 28;

/// The byte of one pixel: `[-1, 1]` maps linearly onto `[0, 255]`, rounding to nearest
/// (so −1 → 0, 0 → 128, 1 → 255); values outside are clamped. The caller rejects NaN.
pub fn pixel_byte(v: f32) -> u8 {
    ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8
}

/// Renders the grid: `(width, height, bytes)` with `bytes` row-major, one byte per pixel.
///
/// Errors: `rows`, `cols` or `scale` zero, or a grid of more than [`MAX_PIXELS`] pixels →
/// [`FlowError::Config`];
/// `images.len() != rows·cols·DIM` → [`FlowError::Shape`]; a NaN or infinite pixel →
/// [`FlowError::NonFinite`] naming the image and pixel.
pub fn grid_pixels(
    images: &[f32],
    rows: usize,
    cols: usize,
    scale: usize,
) -> Result<(usize, usize, Vec<u8>)> {
    for (key, v) in [("rows", rows), ("cols", cols), ("scale", scale)] {
        if v == 0 {
            return Err(FlowError::Config(format!("grid {key} must be > 0")));
        }
    }
    let too_big = || FlowError::Config(format!("grid {rows}×{cols} at scale {scale} is too large"));
    // A side of n cells is n·SIDE·scale image pixels plus (n−1)·scale gap pixels.
    let side = |n: usize| {
        n.checked_mul(SIDE + 1).and_then(|v| (v - 1).checked_mul(scale)).ok_or_else(too_big)
    };
    let (width, height) = (side(cols)?, side(rows)?);
    let total = width.checked_mul(height).filter(|&t| t <= MAX_PIXELS).ok_or_else(too_big)?;
    let cells = rows.checked_mul(cols).ok_or_else(too_big)?;
    if Some(images.len()) != cells.checked_mul(DIM) {
        return Err(FlowError::Shape(format!(
            "{} pixels for a {rows}×{cols} grid; expected {cells} × DIM ({DIM})",
            images.len()
        )));
    }
    crate::data::check_finite(images)?;
    let mut bytes = vec![GAP; total];
    let cell = (SIDE + 1) * scale;
    for (k, img) in images.chunks_exact(DIM).enumerate() {
        let (top, left) = (k / cols * cell, k % cols * cell);
        for (i, &v) in img.iter().enumerate() {
            let b = pixel_byte(v);
            let (y0, x0) = (top + i / SIDE * scale, left + i % SIDE * scale);
            for y in y0..y0 + scale {
                bytes[y * width + x0..y * width + x0 + scale].fill(b);
            }
        }
    }
    Ok((width, height, bytes))
}

/// Writes [`grid_pixels`] of the arguments to `path` as an 8-bit grayscale PNG (overwriting
/// any file there).
///
/// Errors: those of [`grid_pixels`] (checked before the file is created); a file-system
/// failure → [`FlowError::Io`]; an encoder failure → [`FlowError::Format`].
pub fn write_grid_png(
    path: &Path,
    images: &[f32],
    rows: usize,
    cols: usize,
    scale: usize,
) -> Result<()> {
    let (width, height, bytes) = grid_pixels(images, rows, cols, scale)?;
    let png_err = |e: png::EncodingError| FlowError::Format(format!("{}: {e}", path.display()));
    let too_big = |_| FlowError::Config(format!("grid {width}×{height} exceeds PNG's u32 sides"));
    let (w, h) = (u32::try_from(width).map_err(too_big)?, u32::try_from(height).map_err(too_big)?);
    // Encoded in memory, then written in one call, so every I/O error surfaces here (a
    // `BufWriter` dropped by the encoder would swallow its final flush's error).
    let mut encoded = Vec::new();
    let mut encoder = png::Encoder::new(&mut encoded, w, h);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(png_err)?;
    writer.write_image_data(&bytes).map_err(png_err)?;
    writer.finish().map_err(png_err)?;
    std::fs::write(path, encoded)
        .map_err(|source| FlowError::Io { path: path.display().to_string(), source })
}
