//! Procedural 12×12 grayscale shape images: the generator's training data and the classifier
//! reward's (disjoint) training data.
//!
//! Every image is drawn from a signed distance function `d(p)` of one of [`NUM_CLASSES`] shape
//! classes (negative inside the ink), rendered with a one-pixel anti-aliasing ramp: a pixel's
//! ink coverage is `clamp(0.5 − d(centre), 0, 1)`, so a stroke edge crossing a pixel turns it
//! grey in proportion to how much of it lies inside. Pixels live in `[-1, 1]`: background is
//! exactly −1 and full coverage is the image's ink level (in `[0.8, 1]`, jittered per image).
//! Position, size, stroke thickness and ink level are jittered, so each class is a
//! distribution, not one template. No additive pixel noise: the background is flat, which is
//! what the aesthetic reward (`reward::aesthetic`) measures against.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{FlowError, Result};

/// Side of an image in pixels.
pub const SIDE: usize = 12;
/// Pixels per image (`SIDE * SIDE`), row-major: pixel `(row, col)` is at `row * SIDE + col`.
pub const DIM: usize = SIDE * SIDE;
/// Number of shape classes.
pub const NUM_CLASSES: usize = 6;
/// The shape classes, by class index. Chosen to be told apart at 12×12 by stroke direction and
/// topology rather than by fine detail:
///
/// 0. `hbar` — one horizontal stroke;
/// 1. `vbar` — one vertical stroke;
/// 2. `plus` — a horizontal and a vertical stroke crossing at the centre;
/// 3. `square` — an axis-aligned square outline (straight sides, sharp corners);
/// 4. `xcross` — two diagonal strokes crossing at the centre;
/// 5. `ring` — a circle outline (no corners, unlike `square`).
pub const CLASS_NAMES: [&str; NUM_CLASSES] = ["hbar", "vbar", "plus", "square", "xcross", "ring"];

/// Which of the two disjoint data streams to draw from.
///
/// The classifier reward is trained on [`Split::Heldout`] and the generator on
/// [`Split::Train`], so the reward model never sees an image the generator was fitted to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Split {
    /// The generator's training stream.
    Train,
    /// The reward model's stream, disjoint from [`Split::Train`].
    Heldout,
}

impl Split {
    /// The ChaCha stream of this split. Two streams of one key never share a block of output,
    /// so the splits are disjoint for every seed (also when both use the same seed).
    fn stream(self) -> u64 {
        match self {
            Split::Train => 0,
            Split::Heldout => 1,
        }
    }
}

/// A labelled batch of images.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// `[n, DIM]` row-major pixels in `[-1, 1]`.
    pub images: Vec<f32>,
    /// `[n]` class indices, each `< NUM_CLASSES`.
    pub labels: Vec<usize>,
}

impl Dataset {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the dataset holds no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Pixels of image `i` (`DIM` values), or `None` past the end.
    pub fn image(&self, i: usize) -> Option<&[f32]> {
        self.images.get(i.checked_mul(DIM)?..i.checked_add(1)?.checked_mul(DIM)?)
    }
}

/// Draws `n` images of `split`, balanced (image `i` has label `i % NUM_CLASSES`), as a
/// deterministic function of `(split, n, seed)`: the same arguments give the same bits, and a
/// longer draw extends a shorter one (image `i` does not depend on `n`).
///
/// The generator is `ChaCha8Rng::seed_from_u64(seed)` on the split's own stream (see
/// [`Split`]). `n = 0` gives an empty dataset.
pub fn dataset(split: Split, n: usize, seed: u64) -> Result<Dataset> {
    let total = n.checked_mul(DIM).ok_or_else(|| {
        FlowError::Config(format!("dataset size n = {n} overflows n * DIM ({DIM})"))
    })?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(split.stream());
    let mut images = Vec::with_capacity(total);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let class = i % NUM_CLASSES;
        images.extend(draw(class, &mut rng)?);
        labels.push(class);
    }
    Ok(Dataset { images, labels })
}

/// Draws one image (`DIM` pixels in `[-1, 1]`) of shape class `class`.
///
/// Errors: `class >= NUM_CLASSES` is a [`FlowError::Config`].
pub fn draw(class: usize, rng: &mut impl Rng) -> Result<Vec<f32>> {
    let shape = Shape::random(class, rng)?;
    let ink = rng.random_range(0.8f32..=1.0);
    let mut img = Vec::with_capacity(DIM);
    for row in 0..SIDE {
        for col in 0..SIDE {
            let p = (col as f32 + 0.5, row as f32 + 0.5);
            let coverage = (0.5 - shape.distance(p)).clamp(0.0, 1.0);
            img.push(-1.0 + (1.0 + ink) * coverage);
        }
    }
    Ok(img)
}

/// A point `(x, y)` in pixel units: `x` grows to the right (columns), `y` downwards (rows);
/// the image covers `[0, SIDE]²` and pixel `(row, col)` has its centre at `(col + ½, row + ½)`.
type Point = (f32, f32);

/// One drawn shape: its geometry and half its stroke thickness.
enum Shape {
    /// A union of straight strokes (bars, plus, diagonal cross).
    Strokes { segments: Vec<(Point, Point)>, half: f32 },
    /// A square outline: centre, half side (to the middle of the stroke), half thickness.
    Square { c: Point, side: f32, half: f32 },
    /// A circle outline: centre, radius (to the middle of the stroke), half thickness.
    Ring { c: Point, r: f32, half: f32 },
}

impl Shape {
    /// Samples the jittered geometry of `class` (checked first, so a bad class consumes no
    /// randomness). The centre moves ±1 px (bars: ±2.5 px across the stroke); half-size plus
    /// half-thickness stays ≤ 5.7 px, so at the extreme jitter at most ~0.7 px of a stroke end
    /// leaves the frame and every shape keeps its topology.
    fn random(class: usize, rng: &mut impl Rng) -> Result<Shape> {
        if class >= NUM_CLASSES {
            return Err(FlowError::Config(format!(
                "shape class {class} is out of range (NUM_CLASSES = {NUM_CLASSES})"
            )));
        }
        let mid = SIDE as f32 / 2.0;
        let mut jitter = |amp: f32| mid + rng.random_range(-amp..=amp);
        let (cx, cy) = (jitter(1.0), jitter(1.0));
        let across = jitter(2.5);
        let shape = match class {
            0 | 1 => {
                let a = rng.random_range(3.0f32..=4.2);
                let half = rng.random_range(1.0f32..=1.5);
                let seg = if class == 0 {
                    ((cx - a, across), (cx + a, across))
                } else {
                    ((across, cy - a), (across, cy + a))
                };
                Shape::Strokes { segments: vec![seg], half }
            }
            2 => {
                let a = rng.random_range(3.0f32..=4.3);
                let half = rng.random_range(0.9f32..=1.3);
                let segments = vec![((cx - a, cy), (cx + a, cy)), ((cx, cy - a), (cx, cy + a))];
                Shape::Strokes { segments, half }
            }
            4 => {
                // `a` is the half extent along each axis, so the arms are √2·a long.
                let a = rng.random_range(2.6f32..=3.8);
                let half = rng.random_range(0.8f32..=1.2);
                let segments = vec![
                    ((cx - a, cy - a), (cx + a, cy + a)),
                    ((cx - a, cy + a), (cx + a, cy - a)),
                ];
                Shape::Strokes { segments, half }
            }
            3 => Shape::Square {
                c: (cx, cy),
                side: rng.random_range(2.8f32..=4.0),
                half: rng.random_range(0.7f32..=1.1),
            },
            // 5: the ring (`class < NUM_CLASSES` was checked above).
            _ => Shape::Ring {
                c: (cx, cy),
                r: rng.random_range(3.0f32..=4.2),
                half: rng.random_range(0.7f32..=1.1),
            },
        };
        Ok(shape)
    }

    /// Signed distance from `p` to the ink (negative inside).
    fn distance(&self, p: Point) -> f32 {
        match self {
            Shape::Strokes { segments, half } => {
                segments.iter().map(|&(a, b)| segment_distance(p, a, b)).fold(f32::MAX, f32::min)
                    - half
            }
            Shape::Square { c, side, half } => {
                box_distance((p.0 - c.0, p.1 - c.1), *side).abs() - half
            }
            Shape::Ring { c, r, half } => ((p.0 - c.0).hypot(p.1 - c.1) - r).abs() - half,
        }
    }
}

/// Euclidean distance from `p` to the segment `ab`.
fn segment_distance(p: Point, a: Point, b: Point) -> f32 {
    let (abx, aby) = (b.0 - a.0, b.1 - a.1);
    let (apx, apy) = (p.0 - a.0, p.1 - a.1);
    let len2 = abx * abx + aby * aby;
    let t = if len2 > 0.0 { ((apx * abx + apy * aby) / len2).clamp(0.0, 1.0) } else { 0.0 };
    (apx - t * abx).hypot(apy - t * aby)
}

/// Exact signed distance from `q` (relative to the centre) to a filled square of half side
/// `h`; its absolute value is the distance to the square's outline.
fn box_distance(q: Point, h: f32) -> f32 {
    let (dx, dy) = (q.0.abs() - h, q.1.abs() - h);
    dx.max(0.0).hypot(dy.max(0.0)) + dx.max(dy).min(0.0)
}

/// Checks every pixel of `images` (`[n, DIM]`) is finite; the error names the image and pixel.
pub fn check_finite(images: &[f32]) -> Result<()> {
    match images.iter().position(|v| !v.is_finite()) {
        Some(k) => Err(FlowError::NonFinite(format!(
            "pixel {} of image {} is {}",
            k % DIM,
            k / DIM,
            images[k]
        ))),
        None => Ok(()),
    }
}
