//! The fast RoPE (`cpu::fast::rope`, what `ops::rope` runs on the CPU) against its readable twin
//! (`cpu::rope`) — the same bits — and both against f64, on fresh random inputs: head sizes 8 to
//! 256, fused q|k|v strides, positions up to `ROPE_MAX_POSITION`, both directions, token counts
//! on both sides of the parallel split; and its per-thread sin/cos table across calls whose
//! positions or frequencies change. Each check prints its maximum error (`-- --nocapture`).

use treepo_kernels::cpu::{fast, rope};
use treepo_kernels::ops::{
    ROPE_MAX_POSITION, RopeDirection, RopeScaling, RopeShape, rope_inv_freq,
};
use treepo_kernels::testing::{Rng, Tol, assert_close};

/// The rotation in f64 of the f32 angles `pos · inv_freq[j]` (what both twins rotate by).
fn want(x: &[f32], pos: &[i32], inv: &[f32], s: &RopeShape, sign: f64) -> Vec<f64> {
    let mut y: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    let half = s.head_dim / 2;
    for (t, &p) in pos.iter().enumerate() {
        for (j, &f) in inv[..half].iter().enumerate() {
            let ang = (p as f32 * f) as f64;
            let (sn, cs) = (sign * ang.sin(), ang.cos());
            for h in 0..s.num_heads {
                let k = t * s.token_stride + h * s.head_stride + j;
                let (a, b) = (x[k] as f64, x[k + half] as f64);
                y[k] = a * cs - b * sn;
                y[k + half] = b * cs + a * sn;
            }
        }
    }
    y
}

#[test]
fn rope_matches_twin_and_f64() {
    let mut rng = Rng::fresh("cpu_fast rope");
    // (tokens, q heads, head_dim, extra columns after the heads: a fused q|k|v row)
    for (tokens, heads, d, extra) in [
        (1, 1, 8, 0),
        (3, 2, 20, 5),
        (64, 4, 32, 128),
        (64, 8, 64, 0),
        (200, 2, 128, 64),
        (5, 1, 256, 0),
    ] {
        let s = RopeShape {
            tokens,
            num_heads: heads,
            head_dim: d,
            token_stride: heads * d + extra,
            head_stride: d,
        };
        let inv = rope_inv_freq(d, 10_000.0, RopeScaling::None).expect("inv_freq");
        let pos: Vec<i32> = (0..tokens)
            .map(|i| match i % 3 {
                0 => rng.below(64) as i32,
                1 => rng.below(ROPE_MAX_POSITION) as i32,
                _ => (ROPE_MAX_POSITION - 1 - rng.below(8)) as i32,
            })
            .collect();
        let x = rng.normals(tokens * s.token_stride, 1.0);
        for (dir, sign) in [(RopeDirection::Forward, 1.0), (RopeDirection::Inverse, -1.0)] {
            let reference = want(&x, &pos, &inv, &s, sign);
            let (mut twin, mut got) = (x.clone(), x.clone());
            rope::rope(&mut twin, &pos, &inv, &s, dir);
            fast::rope::rope(&mut got, &pos, &inv, &s, dir);
            // |x| < ~5: an ulp or two of sin/cos times two terms.
            let tol = Tol { atol: 2e-6, rtol: 2e-6 };
            let what = format!("rope tokens={tokens} heads={heads} d={d} extra={extra} {dir:?}");
            let e_twin = assert_close(&format!("{what}: twin vs f64"), &twin, &reference, tol);
            let e_fast = assert_close(&format!("{what}: fast vs f64"), &got, &reference, tol);
            assert_eq!(got, twin, "{what}: fast differs from the twin");
            // Columns past the heads are not touched.
            for t in 0..tokens {
                let row = t * s.token_stride;
                let tail = row + heads * d..row + s.token_stride;
                assert_eq!(got[tail.clone()], x[tail], "{what}: token {t} past its heads");
            }
            println!("{what}: max err fast vs f64 {e_fast:.1e} (= twin); twin vs f64 {e_twin:.1e}");
        }
    }
}

#[test]
fn the_table_follows_positions_and_frequencies() {
    let mut rng = Rng::fresh("cpu_fast rope table");
    let s = RopeShape::contiguous(16, 2, 32);
    let inv_a = rope_inv_freq(32, 10_000.0, RopeScaling::None).expect("inv_freq");
    let inv_b = rope_inv_freq(32, 1_000_000.0, RopeScaling::None).expect("inv_freq");
    let pos_a: Vec<i32> = (0..16).map(|_| rng.below(4096) as i32).collect();
    let mut pos_b = pos_a.clone();
    pos_b[7] += 1;
    let x = rng.normals(16 * 64, 1.0);
    // Same positions twice (a hit), one position changed, other frequencies, back again.
    for (pos, inv) in
        [(&pos_a, &inv_a), (&pos_a, &inv_a), (&pos_b, &inv_a), (&pos_b, &inv_b), (&pos_a, &inv_a)]
    {
        let (mut twin, mut got) = (x.clone(), x.clone());
        rope::rope(&mut twin, pos, inv, &s, RopeDirection::Forward);
        fast::rope::rope(&mut got, pos, inv, &s, RopeDirection::Forward);
        assert_eq!(got, twin, "fast rope after a table change differs from the twin");
    }
    // One token whose stride is 0 (`ops::rope` checks the stride only between tokens).
    let s1 = RopeShape { tokens: 1, num_heads: 2, head_dim: 32, token_stride: 0, head_stride: 40 };
    let (mut twin, mut got) = (x[..72].to_vec(), x[..72].to_vec());
    rope::rope(&mut twin, &pos_a[..1], &inv_a, &s1, RopeDirection::Forward);
    fast::rope::rope(&mut got, &pos_a[..1], &inv_a, &s1, RopeDirection::Forward);
    assert_eq!(got, twin, "fast rope of one token with stride 0 differs from the twin");
    assert_ne!(got, x[..72].to_vec(), "one token with stride 0 was not rotated");
    // Fewer tokens than the table holds: a prefix of the positions is another key.
    let s8 = RopeShape::contiguous(8, 2, 32);
    let (mut twin, mut got) = (x[..8 * 64].to_vec(), x[..8 * 64].to_vec());
    rope::rope(&mut twin, &pos_b[1..9], &inv_a, &s8, RopeDirection::Inverse);
    fast::rope::rope(&mut got, &pos_b[1..9], &inv_a, &s8, RopeDirection::Inverse);
    assert_eq!(got, twin, "fast rope on a shorter call differs from the twin");
}
