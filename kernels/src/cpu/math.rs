//! Scalar math the CPU kernels share, written so that loops over it vectorize.

/// `e^x` in f32 for any `x`: `x = n·ln2 + r` with `n` an integer (Cody–Waite split of ln 2,
/// so `r` is exact to an ulp), `e^r` by a degree-7 Taylor polynomial on `|r| <= ln2/2`, `2^n`
/// by exponent bits. Relative error below 4e-7 on `[−87, 88]` (9e-8 measured by the tests); 0
/// below −87 (where the true value is below 1.7e-38, at the bottom of f32's normal range), +∞
/// above 88 (f32's range ends at 88.72); NaN stays NaN.
/// Branch-free (selects) and free of float→int casts (the integer `n` is read from the bits of
/// `y + 1.5·2^23`), so loops over it vectorize.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // y + MAGIC rounds y to an integer n held in the low mantissa bits: bits = MAGIC_BITS + n.
    const MAGIC: f32 = 12_582_912.0;
    const MAGIC_BITS: u32 = 0x4b40_0000;
    let xc = x.clamp(-87.0, 88.0);
    let t = xc * LOG2E + MAGIC;
    let n = t - MAGIC;
    let r = (xc - n * LN2_HI) - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0
                        + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    // n in [-126, 127]: the biased exponent n + 127 is in [1, 254], a normal power of two.
    let scale = f32::from_bits(t.to_bits().wrapping_sub(MAGIC_BITS).wrapping_add(127) << 23);
    if x < -87.0 {
        0.0
    } else if x > 88.0 {
        f32::INFINITY
    } else {
        p * scale
    }
}
