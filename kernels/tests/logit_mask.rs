//! Conformance of `ops::top_k_mask` / `ops::top_p_mask`: exact sets for top-k (ties at the
//! boundary kept), a validity check in f64 for top-p (the smallest high-probability set with
//! mass >= top_p, ties kept, top entry always kept), wide rows, −∞ entries, ±0 ties.

use treepo_kernels::testing::Rng;
use treepo_kernels::{Device, ops, per_backend};

/// HF semantics: drop `x < (k-th largest value)`.
fn top_k_reference(x: &[f32], cols: usize, k: usize) -> Vec<f32> {
    let mut out = x.to_vec();
    if k == 0 || k >= cols {
        return out;
    }
    for row in out.chunks_mut(cols) {
        let mut sorted = row.to_vec();
        sorted.sort_by(|a, b| b.partial_cmp(a).unwrap());
        let thr = sorted[k - 1];
        for v in row.iter_mut() {
            if *v < thr {
                *v = f32::NEG_INFINITY;
            }
        }
    }
    out
}

fn assert_same_bits(what: &str, got: &[f32], want: &[f32]) {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            g.to_bits() == w.to_bits() || (*g == 0.0 && *w == 0.0),
            "{what}: [{i}] got {g} want {w}"
        );
    }
}

/// Ties on purpose: values on a grid of 1/4.
fn tied_logits(rng: &mut Rng, n: usize, sd: f64) -> Vec<f32> {
    (0..n).map(|_| ((rng.normal() * sd * 4.0).round() / 4.0) as f32).collect()
}

fn run_top_k(dev: &Device, x: &[f32], rows: usize, cols: usize, k: usize) -> Vec<f32> {
    let mut d = dev.upload(x).unwrap();
    ops::top_k_mask(dev, &mut d, rows, cols, k).unwrap();
    dev.download(&d).unwrap()
}

fn run_top_p(dev: &Device, x: &[f32], rows: usize, cols: usize, scale: f32, p: f32) -> Vec<f32> {
    let mut d = dev.upload(x).unwrap();
    ops::top_p_mask(dev, &mut d, rows, cols, scale, p).unwrap();
    dev.download(&d).unwrap()
}

fn top_k_keeps_boundary_ties(dev: &Device) {
    let mut rng = Rng::fresh("top_k");
    for (rows, cols, ks) in [
        (1usize, 1usize, vec![0usize, 1, 2]),
        (1, 7, vec![1, 3, 6, 7]),
        (5, 1000, vec![1, 5, 50, 999, 1000, 0]),
        (3, 257, vec![2, 64, 256]),
    ] {
        let mut x = tied_logits(&mut rng, rows * cols, 2.0);
        // Masked entries already present; a row of ±0 ties.
        for v in x.iter_mut().step_by(7) {
            *v = f32::NEG_INFINITY;
        }
        if cols >= 7 {
            for (i, v) in x[..cols].iter_mut().enumerate() {
                *v = if i % 2 == 0 { 0.0 } else { -0.0 };
            }
            x[0] = 1.0;
        }
        for k in ks {
            let got = run_top_k(dev, &x, rows, cols, k);
            assert_same_bits(
                &format!("top_k {rows}x{cols} k={k}"),
                &got,
                &top_k_reference(&x, cols, k),
            );
        }
    }
    // A 152k vocabulary, realistic logits.
    let cols = 151_936;
    let x = rng.normals(2 * cols, 3.0);
    for k in [1, 50, 20_000] {
        let got = run_top_k(dev, &x, 2, cols, k);
        assert_same_bits(&format!("top_k vocab k={k}"), &got, &top_k_reference(&x, cols, k));
    }
    // Large magnitudes and a row with fewer finite entries than k.
    let mut x = rng.normals(3 * 300, 1e4);
    for v in x[300..600].iter_mut().skip(3) {
        *v = f32::NEG_INFINITY;
    }
    let got = run_top_k(dev, &x, 3, 300, 10);
    assert_same_bits("top_k ±1e4", &got, &top_k_reference(&x, 300, 10));
}

/// Checks that `got` is a valid top-p result for `x`: a threshold set that keeps the top entry,
/// has mass >= top_p and would fall short of it without its boundary tie group (within `tol`).
fn check_top_p(what: &str, x: &[f32], got: &[f32], cols: usize, scale: f32, top_p: f32) {
    let tol = 1e-5;
    for (r, (xr, gr)) in x.chunks(cols).zip(got.chunks(cols)).enumerate() {
        let finite: Vec<f32> = xr.iter().copied().filter(|v| *v != f32::NEG_INFINITY).collect();
        if finite.is_empty() || top_p >= 1.0 {
            assert_same_bits(&format!("{what} row {r} unchanged"), gr, xr);
            continue;
        }
        for (i, (&g, &v)) in gr.iter().zip(xr).enumerate() {
            assert!(
                g == f32::NEG_INFINITY || g.to_bits() == v.to_bits(),
                "{what} row {r}: [{i}] {g} is neither {v} nor -inf"
            );
        }
        let kept: Vec<f32> = gr.iter().copied().filter(|v| *v != f32::NEG_INFINITY).collect();
        let t = kept.iter().copied().fold(f32::INFINITY, f32::min);
        let max = finite.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        assert!(
            !kept.is_empty() && kept.contains(&max),
            "{what} row {r}: the top entry is dropped"
        );
        for (i, (&g, &v)) in gr.iter().zip(xr).enumerate() {
            assert_eq!(
                v >= t && v != f32::NEG_INFINITY,
                g != f32::NEG_INFINITY,
                "{what} row {r}: [{i}] = {v} vs threshold {t}"
            );
        }
        let zmax = (scale * max) as f64;
        let e: Vec<f64> = xr
            .iter()
            .map(|&v| if v == f32::NEG_INFINITY { 0.0 } else { ((scale * v) as f64 - zmax).exp() })
            .collect();
        let total: f64 = e.iter().sum();
        let ge: f64 =
            xr.iter().zip(&e).filter(|(v, _)| **v >= t).map(|(_, e)| e).sum::<f64>() / total;
        let gt: f64 =
            xr.iter().zip(&e).filter(|(v, _)| **v > t).map(|(_, e)| e).sum::<f64>() / total;
        let p = top_p as f64;
        assert!(ge >= p - tol, "{what} row {r}: kept mass {ge} < top_p {p}");
        assert!(
            t == max || gt < p + tol,
            "{what} row {r}: mass above the boundary {gt} already reaches top_p {p}"
        );
    }
}

fn top_p_keeps_the_nucleus(dev: &Device) {
    let mut rng = Rng::fresh("top_p");
    // Hand-made distributions far from any rounding boundary.
    let probs = [0.5f32, 0.3, 0.1, 0.1];
    let x: Vec<f32> = probs.iter().map(|p| p.ln()).collect();
    let got = run_top_p(dev, &x, 1, 4, 1.0, 0.7);
    assert_eq!(got.iter().filter(|v| **v != f32::NEG_INFINITY).count(), 2, "{got:?}");
    let got = run_top_p(dev, &x, 1, 4, 1.0, 0.85);
    assert_eq!(
        got.iter().filter(|v| **v != f32::NEG_INFINITY).count(),
        4,
        "ties with the boundary kept: {got:?}"
    );
    let got = run_top_p(dev, &x, 1, 4, 1.0, 0.0);
    assert_eq!(
        got.iter().filter(|v| **v != f32::NEG_INFINITY).count(),
        1,
        "top_p 0 keeps the top: {got:?}"
    );
    // Random rows: ties, masked entries, several scales and top_p values.
    for (rows, cols) in [(1usize, 1usize), (4, 33), (6, 1000), (2, 4099)] {
        let mut x = tied_logits(&mut rng, rows * cols, 1.5);
        for v in x.iter_mut().skip(3).step_by(5) {
            *v = f32::NEG_INFINITY;
        }
        if rows > 2 {
            for v in x[2 * cols..3 * cols].iter_mut() {
                *v = f32::NEG_INFINITY; // a fully masked row stays as it is
            }
        }
        for (scale, p) in [(1.0f32, 0.9f32), (1.0 / 0.7, 0.5), (0.5, 0.95), (2.0, 0.1), (1.0, 1.0)]
        {
            let got = run_top_p(dev, &x, rows, cols, scale, p);
            check_top_p(
                &format!("top_p {rows}x{cols} scale={scale} p={p}"),
                &x,
                &got,
                cols,
                scale,
                p,
            );
        }
    }
    // A 152k vocabulary and ±1e4 logits.
    let cols = 151_936;
    let x = rng.normals(2 * cols, 3.0);
    for p in [0.9f32, 0.999] {
        let got = run_top_p(dev, &x, 2, cols, 1.0 / 0.8, p);
        check_top_p(&format!("top_p vocab p={p}"), &x, &got, cols, 1.0 / 0.8, p);
    }
    let x = rng.normals(3 * 500, 1e4);
    let got = run_top_p(dev, &x, 3, 500, 1.0, 0.9);
    check_top_p("top_p ±1e4", &x, &got, 500, 1.0, 0.9);
}

fn backends_agree_off_the_boundary(dev: &Device) {
    // The CPU result is the reference; the set must match exactly when no boundary is within
    // rounding (random continuous logits make that overwhelmingly likely; the check above
    // covers the rest).
    let mut rng = Rng::fresh("top_p vs cpu");
    let (rows, cols) = (8, 513);
    let x = rng.normals(rows * cols, 2.0);
    let got = run_top_p(dev, &x, rows, cols, 1.1, 0.8);
    let want = run_top_p(&Device::cpu(), &x, rows, cols, 1.1, 0.8);
    check_top_p("top_p vs cpu", &x, &got, cols, 1.1, 0.8);
    let differ = got.iter().zip(&want).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
    assert!(differ <= 2, "{differ} entries differ from the CPU reference");
}

fn rejects_bad_args(dev: &Device) {
    let mut x = dev.zeros::<f32>(6).unwrap();
    let err = ops::top_k_mask(dev, &mut x, 2, 4, 2).unwrap_err();
    assert!(err.to_string().contains("`logits` holds 6 elements but the shape needs 8"), "{err}");
    let err = ops::top_k_mask(dev, &mut x, 1, 0, 2).unwrap_err();
    assert!(err.to_string().contains("cols must be > 0"), "{err}");
    for bad in [-0.1f32, f32::NAN] {
        let err = ops::top_p_mask(dev, &mut x, 2, 3, 1.0, bad).unwrap_err();
        assert!(err.to_string().contains("top_p"), "{err}");
    }
    let err = ops::top_p_mask(dev, &mut x, 2, 3, 0.0, 0.9).unwrap_err();
    assert!(err.to_string().contains("must be finite and > 0"), "{err}");
}

per_backend!(
    top_k_keeps_boundary_ties,
    top_p_keeps_the_nucleus,
    backends_agree_off_the_boundary,
    rejects_bad_args
);
