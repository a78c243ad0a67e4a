//! Conformance of `ops::softmax` / `ops::log_softmax` against f64 references: wide rows (a
//! 152k vocabulary), ±1e4 logits, masked (−∞) entries, a fully masked row (NaN, as PyTorch).

use treepo_kernels::testing::{Rng, Tol, assert_close, poisoned};
use treepo_kernels::{Device, ops, per_backend};

/// f64 reference. The scaled logit is rounded to f32 first (the op's documented contract, as
/// PyTorch's `logits / T`); everything after is exact-ish f64. Returns (softmax, log_softmax).
fn reference(x: &[f32], cols: usize, scale: f32) -> (Vec<f64>, Vec<f64>) {
    let (mut p, mut lp) = (Vec::new(), Vec::new());
    for row in x.chunks(cols) {
        let z: Vec<f64> = row.iter().map(|&v| (scale * v) as f64).collect();
        let m = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if m == f64::NEG_INFINITY {
            p.extend(std::iter::repeat_n(f64::NAN, cols));
            lp.extend(std::iter::repeat_n(f64::NAN, cols));
            continue;
        }
        let s: f64 = z.iter().map(|&v| (v - m).exp()).sum();
        p.extend(z.iter().map(|&v| (v - m).exp() / s));
        lp.extend(z.iter().map(|&v| if v == f64::NEG_INFINITY { v } else { v - m - s.ln() }));
    }
    (p, lp)
}

fn check(dev: &Device, x: &[f32], rows: usize, cols: usize, scale: f32, what: &str) {
    let dx = dev.upload(x).unwrap();
    let mut p = poisoned::<f32>(dev, rows * cols).unwrap();
    let mut lp = poisoned::<f32>(dev, rows * cols).unwrap();
    ops::softmax(dev, &dx, &mut p, rows, cols, scale).unwrap();
    ops::log_softmax(dev, &dx, &mut lp, rows, cols, scale).unwrap();
    let (wp, wlp) = reference(x, cols, scale);
    let (gp, glp) = (dev.download(&p).unwrap(), dev.download(&lp).unwrap());
    let e1 = assert_close(
        &format!("softmax {what} {rows}x{cols} scale {scale}"),
        &gp,
        &wp,
        Tol { atol: 1e-9, rtol: 2e-5 },
    );
    let e2 = assert_close(
        &format!("log_softmax {what} {rows}x{cols} scale {scale}"),
        &glp,
        &wlp,
        Tol { atol: 2e-5, rtol: 1e-6 },
    );
    // Masked entries are exact.
    for (i, &v) in x.iter().enumerate() {
        if v == f32::NEG_INFINITY && !wp[i].is_nan() {
            assert_eq!(gp[i], 0.0, "{what}: masked softmax entry {i}");
            assert_eq!(glp[i], f32::NEG_INFINITY, "{what}: masked log_softmax entry {i}");
        }
    }
    eprintln!("softmax {what} {rows}x{cols} scale {scale}: max err p {e1:e} logp {e2:e}");
}

fn normalizes(dev: &Device) {
    let mut rng = Rng::fresh("softmax");
    // 1×1, off-tile shapes, moderate logits with a non-power-of-two scale (1/0.7).
    for (rows, cols, sd, scale) in [
        (1usize, 1usize, 1.0, 1.0f32),
        (3, 1000, 3.0, 1.0 / 0.7),
        (7, 257, 10.0, 1.3),
        (1, 33, 1.0, 1.0),
    ] {
        let x = rng.normals(rows * cols, sd);
        check(dev, &x, rows, cols, scale, "normal");
    }
}

fn wide_rows_large_logits(dev: &Device) {
    let mut rng = Rng::fresh("softmax wide");
    // A 152k vocabulary with logits of magnitude 1e4 (scales that are powers of two keep the
    // scaled logits exact, so fused multiply-adds cannot change them), and realistic logits.
    let cols = 151_936;
    let x = rng.normals(2 * cols, 1e4);
    check(dev, &x, 2, cols, 1.0, "±1e4");
    check(dev, &x, 2, cols, 0.5, "±1e4");
    let x = rng.normals(2 * cols, 4.0);
    check(dev, &x, 2, cols, 1.0 / 0.6, "vocab");
}

fn masked_entries(dev: &Device) {
    let mut rng = Rng::fresh("softmax masked");
    let (rows, cols) = (5, 1031);
    let mut x = rng.normals(rows * cols, 5.0);
    for v in x.iter_mut() {
        if rng.uniform() < 0.4 {
            *v = f32::NEG_INFINITY;
        }
    }
    // Row 1: a single finite entry (probability exactly 1, log-prob 0).
    for v in x[cols..2 * cols].iter_mut() {
        *v = f32::NEG_INFINITY;
    }
    x[cols + 500] = 2.5;
    // Row 3: fully masked: NaN like PyTorch.
    for v in x[3 * cols..4 * cols].iter_mut() {
        *v = f32::NEG_INFINITY;
    }
    check(dev, &x, rows, cols, 1.25, "masked");
    let dx = dev.upload(&x).unwrap();
    let mut p = poisoned::<f32>(dev, rows * cols).unwrap();
    ops::softmax(dev, &dx, &mut p, rows, cols, 1.0).unwrap();
    let p = dev.download(&p).unwrap();
    assert_eq!(p[cols + 500], 1.0, "single finite entry has probability 1");
    assert!(p[3 * cols..4 * cols].iter().all(|v| v.is_nan()), "all -inf row gives NaN");
    let mut lp = poisoned::<f32>(dev, rows * cols).unwrap();
    ops::log_softmax(dev, &dx, &mut lp, rows, cols, 1.0).unwrap();
    let lp = dev.download(&lp).unwrap();
    assert_eq!(lp[cols + 500], 0.0, "single finite entry has log-probability 0");
    assert!(lp[3 * cols..4 * cols].iter().all(|v| v.is_nan()), "all -inf row gives NaN");
}

fn works_on_views(dev: &Device) {
    let mut rng = Rng::fresh("softmax views");
    let (rows, cols) = (3, 70);
    let x = rng.normals(rows * cols + 9, 2.0);
    let dx = dev.upload(&x).unwrap();
    let mut y = poisoned::<f32>(dev, rows * cols + 4).unwrap();
    ops::softmax(
        dev,
        dx.slice(9..9 + rows * cols).unwrap(),
        y.slice_mut(4..4 + rows * cols).unwrap(),
        rows,
        cols,
        2.0,
    )
    .unwrap();
    let got = dev.download(&y).unwrap();
    assert!(got[..4].iter().all(|v| v.is_nan()));
    let (want, _) = reference(&x[9..], cols, 2.0);
    assert_close("softmax views", &got[4..], &want, Tol { atol: 1e-9, rtol: 2e-5 });
}

/// Every thread of a row must normalize with the same (max, sum), bit for bit: entries with
/// equal logits get equal bits. Regression: the CUDA butterfly once merged partner lanes'
/// states with an expression the compiler contracted into an FMA on one side, so partners could
/// end an ulp apart and columns of different threads were divided by different sums.
fn equal_logits_get_equal_bits(dev: &Device) {
    let mut rng = Rng::fresh("softmax equal logits");
    // 97 distinct logits repeated over wide rows: every thread sees several of them, and the
    // threads' running maxima differ, so the merges rescale by exponentials below 1.
    let (rows, cols) = (3, 20_011);
    let pattern = rng.normals(97, 3.0);
    let x: Vec<f32> = (0..rows * cols).map(|i| pattern[(i * 31 + i / cols) % 97]).collect();
    let dx = dev.upload(&x).unwrap();
    for log in [false, true] {
        let mut y = poisoned::<f32>(dev, rows * cols).unwrap();
        if log {
            ops::log_softmax(dev, &dx, &mut y, rows, cols, 1.0 / 0.7).unwrap();
        } else {
            ops::softmax(dev, &dx, &mut y, rows, cols, 1.0 / 0.7).unwrap();
        }
        let y = dev.download(&y).unwrap();
        for r in 0..rows {
            let mut first: std::collections::HashMap<u32, (usize, u32)> = Default::default();
            for c in 0..cols {
                let i = r * cols + c;
                let (c0, bits) = *first.entry(x[i].to_bits()).or_insert((c, y[i].to_bits()));
                assert_eq!(
                    y[i].to_bits(),
                    bits,
                    "log={log} row {r}: columns {c0} and {c} have equal logits but outputs {} vs {}",
                    f32::from_bits(bits),
                    y[i]
                );
            }
        }
    }
}

fn rejects_bad_args(dev: &Device) {
    let x = dev.zeros::<f32>(6).unwrap();
    let mut y = dev.zeros::<f32>(5).unwrap();
    let err = ops::softmax(dev, &x, &mut y, 2, 3, 1.0).unwrap_err();
    assert!(err.to_string().contains("`y` holds 5 elements but the shape needs 6"), "{err}");
    let err = ops::log_softmax(dev, &x, &mut y, 1, 0, 1.0).unwrap_err();
    assert!(err.to_string().contains("cols must be > 0"), "{err}");
    for bad in [0.0, -1.0, f32::NAN, f32::INFINITY] {
        let err = ops::softmax(dev, &x, &mut y, 1, 5, bad).unwrap_err();
        assert!(err.to_string().contains("must be finite and > 0"), "{err}");
    }
}

per_backend!(
    normalizes,
    wide_rows_large_logits,
    masked_entries,
    works_on_views,
    equal_logits_get_equal_bits,
    rejects_bad_args
);
