//! Conformance of `ops::categorical`: the chosen index's CDF interval contains `u·total` (f64,
//! within 1e-5·total), choices equal the f64 inverse CDF away from interval edges, zero-weight
//! indices are never chosen, empty rows give -1.

use treepo_kernels::testing::{Rng, poisoned};
use treepo_kernels::{Device, ops, per_backend};

/// f64 inverse CDF: the smallest i with p > 0 and C_i > u·T, else the last positive, else -1.
fn reference(row: &[f32], u: f32) -> (i32, Vec<f64>, f64) {
    let mut c = Vec::with_capacity(row.len());
    let mut acc = 0f64;
    for &p in row {
        acc += p as f64;
        c.push(acc);
    }
    let total = acc;
    if !(total > 0.0 && total.is_finite()) {
        return (-1, c, total);
    }
    let target = u as f64 * total;
    let pick = row.iter().zip(&c).position(|(&p, &ci)| p > 0.0 && ci > target);
    let last = row.iter().rposition(|&p| p > 0.0).map(|i| i as i32).unwrap_or(-1);
    (pick.map(|i| i as i32).unwrap_or(last), c, total)
}

fn check(dev: &Device, probs: &[f32], u: &[f32], cols: usize, what: &str) -> usize {
    let rows = u.len();
    let (dp, du) = (dev.upload(probs).unwrap(), dev.upload(u).unwrap());
    let mut tok = poisoned::<i32>(dev, rows).unwrap();
    ops::categorical(dev, &dp, &du, &mut tok, rows, cols).unwrap();
    let got = dev.download(&tok).unwrap();
    let mut near_edge = 0;
    for r in 0..rows {
        let row = &probs[r * cols..(r + 1) * cols];
        let (want, c, total) = reference(row, u[r]);
        let g = got[r];
        if want == -1 {
            assert_eq!(g, -1, "{what} row {r}: no distribution");
            continue;
        }
        assert!(g >= 0 && (g as usize) < cols, "{what} row {r}: token {g} out of range");
        let gi = g as usize;
        assert!(row[gi] > 0.0, "{what} row {r}: chose index {gi} with p = 0");
        let target = u[r] as f64 * total;
        let tol = 1e-5 * total;
        let lo = if gi == 0 { 0.0 } else { c[gi - 1] };
        assert!(
            lo <= target + tol && c[gi] >= target - tol,
            "{what} row {r}: [{lo}, {}] does not contain {target}",
            c[gi]
        );
        let wi = want as usize;
        let wlo = if wi == 0 { 0.0 } else { c[wi - 1] };
        if (target - wlo).abs() > tol && (c[wi] - target).abs() > tol {
            assert_eq!(g, want, "{what} row {r}: u·total = {target} is not near an edge");
        } else {
            near_edge += 1;
        }
    }
    near_edge
}

fn draws_by_inverse_cdf(dev: &Device) {
    let mut rng = Rng::fresh("categorical");
    for (rows, cols, zero_frac, scale) in [
        (1usize, 1usize, 0.0, 1.0f64),
        (9, 5, 0.3, 1.0),
        (16, 1000, 0.5, 7.3),
        (5, 4097, 0.2, 0.01),
        (3, 151_936, 0.9, 1.0),
    ] {
        let probs: Vec<f32> = (0..rows * cols)
            .map(|_| if rng.uniform() < zero_frac { 0.0 } else { (rng.uniform() * scale) as f32 })
            .collect();
        let mut u: Vec<f32> = (0..rows).map(|_| rng.uniform() as f32).collect();
        u[0] = 0.0; // the first positive index
        if rows > 1 {
            u[1] = 0.999_999_94; // the largest f32 below 1
        }
        let near = check(dev, &probs, &u, cols, &format!("{rows}x{cols}"));
        eprintln!("categorical {rows}x{cols}: {near} draws near an edge");
    }
}

fn never_picks_zero_weight(dev: &Device) {
    let mut rng = Rng::fresh("categorical zeros");
    let cols = 3000;
    // Row 0: leading and trailing zeros, u near 1 (rounding must not run into the zeros).
    // Row 1: one positive entry. Row 2: all zero (-1). Row 3: NaN (softmax of an all -inf row).
    // Row 4: a peaked distribution with tiny tails.
    let mut probs = vec![0f32; 5 * cols];
    for v in probs[100..2000].iter_mut() {
        *v = rng.uniform() as f32;
    }
    probs[cols + 1234] = 0.25;
    for v in probs[3 * cols..4 * cols].iter_mut() {
        *v = f32::NAN;
    }
    for v in probs[4 * cols..5 * cols].iter_mut() {
        *v = 1e-9;
    }
    probs[4 * cols + 17] = 1.0;
    for u in [0.0f32, 0.5, 0.999_999_94] {
        let us = vec![u; 5];
        check(dev, &probs, &us, cols, &format!("edge rows u={u}"));
        let (dp, du) = (dev.upload(&probs).unwrap(), dev.upload(&us).unwrap());
        let mut tok = poisoned::<i32>(dev, 5).unwrap();
        ops::categorical(dev, &dp, &du, &mut tok, 5, cols).unwrap();
        let got = dev.download(&tok).unwrap();
        assert!((100..2000).contains(&(got[0] as usize)), "row 0 picked {}", got[0]);
        assert_eq!(got[1], 1234);
        assert_eq!(got[2], -1);
        assert_eq!(got[3], -1);
    }
}

fn rejects_bad_args(dev: &Device) {
    let p = dev.zeros::<f32>(6).unwrap();
    let u = dev.zeros::<f32>(1).unwrap();
    let mut t = dev.zeros::<i32>(2).unwrap();
    let err = ops::categorical(dev, &p, &u, &mut t, 2, 3).unwrap_err();
    assert!(err.to_string().contains("`uniforms` holds 1 elements but the shape needs 2"), "{err}");
    let u = dev.zeros::<f32>(3).unwrap();
    let err = ops::categorical(dev, &p, &u, &mut t, 3, 2).unwrap_err();
    assert!(err.to_string().contains("`tokens` holds 2 elements but the shape needs 3"), "{err}");
    let err = ops::categorical(dev, &p, &u, &mut t, 2, 4).unwrap_err();
    assert!(err.to_string().contains("`probs` holds 6 elements but the shape needs 8"), "{err}");
}

per_backend!(draws_by_inverse_cdf, never_picks_zero_weight, rejects_bad_args);
