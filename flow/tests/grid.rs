//! Sample grids: the byte layout, the PNG file, and the typed errors.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use treepo_flow::FlowError;
use treepo_flow::data::{DIM, NUM_CLASSES, SIDE, Split, dataset};
use treepo_flow::grid::{GAP, grid_pixels, pixel_byte, write_grid_png};

fn temp_png(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("treepo-flow-grid-{}-{name}.png", std::process::id()))
}

/// Decodes an 8-bit grayscale PNG into `(width, height, bytes)`.
fn decode(path: &Path) -> (usize, usize, Vec<u8>) {
    let decoder = png::Decoder::new(BufReader::new(File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Grayscale);
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    buf.truncate(info.buffer_size());
    (info.width as usize, info.height as usize, buf)
}

#[test]
fn pixel_mapping() {
    assert_eq!(pixel_byte(-1.0), 0);
    assert_eq!(pixel_byte(1.0), 255);
    assert_eq!(pixel_byte(0.0), GAP);
    assert_eq!(pixel_byte(-7.0), 0);
    assert_eq!(pixel_byte(3.0), 255);
}

#[test]
fn known_images_land_at_known_positions() {
    // Two images side by side: the first black with a white pixel at (row 2, col 3), the
    // second white with a black pixel at (row 11, col 0).
    let mut images = vec![-1.0f32; DIM];
    images[2 * SIDE + 3] = 1.0;
    let mut second = vec![1.0f32; DIM];
    second[11 * SIDE] = -1.0;
    images.extend(second);
    let scale = 2;
    let (w, h, px) = grid_pixels(&images, 1, 2, scale).unwrap();
    assert_eq!((w, h), (2 * SIDE * scale + scale, SIDE * scale));
    let at = |x: usize, y: usize| px[y * w + x];
    // The white pixel covers a 2×2 block.
    for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
        assert_eq!(at(3 * scale + dx, 2 * scale + dy), 255);
    }
    assert_eq!(at(3 * scale + 2, 2 * scale), 0);
    assert_eq!(at(0, 0), 0);
    // The gap column(s) between the cells are mid grey, for every row.
    for y in 0..h {
        for x in SIDE * scale..(SIDE + 1) * scale {
            assert_eq!(at(x, y), GAP);
        }
    }
    // The second cell starts after the gap.
    let left = (SIDE + 1) * scale;
    assert_eq!(at(left, 11 * scale + 1), 0);
    assert_eq!(at(left + 1, 11 * scale - 1), 255);
    assert_eq!(at(w - 1, h - 1), 255);
}

#[test]
fn png_file_decodes_to_the_same_bytes() {
    let ds = dataset(Split::Train, 2 * NUM_CLASSES, 0).unwrap();
    let path = temp_png("data");
    write_grid_png(&path, &ds.images, 2, NUM_CLASSES, 4).unwrap();
    let expected = grid_pixels(&ds.images, 2, NUM_CLASSES, 4).unwrap();
    assert_eq!(decode(&path), expected);
    eprintln!("wrote {}", path.display());
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn bad_grids_are_typed_errors() {
    let one = vec![0.0f32; DIM];
    for (r, c, s) in [(0, 1, 1), (1, 0, 1), (1, 1, 0)] {
        assert!(matches!(grid_pixels(&one, r, c, s), Err(FlowError::Config(_))));
    }
    assert!(matches!(grid_pixels(&one, 1, 1, usize::MAX), Err(FlowError::Config(_))));
    assert!(matches!(grid_pixels(&one, 1, 2, 1), Err(FlowError::Shape(_))));
    assert!(matches!(grid_pixels(&one[1..], 1, 1, 1), Err(FlowError::Shape(_))));
    let mut nan = one.clone();
    nan[7] = f32::NAN;
    assert!(matches!(grid_pixels(&nan, 1, 1, 1), Err(FlowError::NonFinite(_))));
    let path = temp_png("never");
    assert!(matches!(write_grid_png(&path, &nan, 1, 1, 1), Err(FlowError::NonFinite(_))));
    assert!(!path.exists(), "nothing written on a bad grid");
    let dir = std::env::temp_dir().join("treepo-flow-no-such-dir").join("x.png");
    assert!(matches!(write_grid_png(&dir, &one, 1, 1, 1), Err(FlowError::Io { .. })));
}
