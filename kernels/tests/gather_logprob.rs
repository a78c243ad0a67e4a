//! Conformance of `ops::gather_logprob` against an f64 log-softmax and entropy.

use treepo_kernels::testing::{Rng, Tol, assert_close, poisoned};
use treepo_kernels::{Device, Indices, ops, per_backend};

/// (log p[token], −Σ p log p) in f64 from scaled logits rounded to f32 (the op's contract).
fn reference(x: &[f32], tokens: &[i32], cols: usize, scale: f32) -> (Vec<f64>, Vec<f64>) {
    let (mut lp, mut h) = (Vec::new(), Vec::new());
    for (row, &t) in x.chunks(cols).zip(tokens) {
        let z: Vec<f64> = row.iter().map(|&v| (scale * v) as f64).collect();
        let m = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if m == f64::NEG_INFINITY {
            lp.push(f64::NAN);
            h.push(f64::NAN);
            continue;
        }
        let lse = m + z.iter().map(|&v| (v - m).exp()).sum::<f64>().ln();
        lp.push(z[t as usize] - lse);
        h.push(
            -z.iter().filter(|v| v.is_finite()).map(|&v| (v - lse).exp() * (v - lse)).sum::<f64>(),
        );
    }
    (lp, h)
}

fn check(dev: &Device, x: &[f32], tokens: &[i32], cols: usize, scale: f32, what: &str) {
    let rows = tokens.len();
    let dx = dev.upload(x).unwrap();
    let dt = Indices::upload(dev, tokens, cols).unwrap();
    let mut out = poisoned::<f32>(dev, rows).unwrap();
    let mut ent = poisoned::<f32>(dev, rows + 2).unwrap();
    ops::gather_logprob(
        dev,
        &dx,
        &dt,
        &mut out,
        Some(ent.slice_mut(2..rows + 2).unwrap()),
        rows,
        cols,
        scale,
    )
    .unwrap();
    let (wl, wh) = reference(x, tokens, cols, scale);
    let gl = dev.download(&out).unwrap();
    let gh = dev.download(&ent).unwrap();
    assert!(gh[..2].iter().all(|v| v.is_nan()), "{what}: wrote before the entropy view");
    let e1 = assert_close(&format!("logprob {what}"), &gl, &wl, Tol { atol: 2e-5, rtol: 1e-6 });
    let e2 =
        assert_close(&format!("entropy {what}"), &gh[2..], &wh, Tol { atol: 2e-5, rtol: 2e-5 });
    // Without the entropy the log-probs are the same.
    let mut out2 = poisoned::<f32>(dev, rows).unwrap();
    ops::gather_logprob(dev, &dx, &dt, &mut out2, None, rows, cols, scale).unwrap();
    assert_close(
        &format!("logprob {what} (no entropy)"),
        &dev.download(&out2).unwrap(),
        &wl,
        Tol { atol: 2e-5, rtol: 1e-6 },
    );
    eprintln!("gather_logprob {what}: max err logp {e1:e} entropy {e2:e}");
}

fn gathers(dev: &Device) {
    let mut rng = Rng::fresh("gather_logprob");
    for (rows, cols, sd, scale) in [
        (1usize, 1usize, 1.0, 1.0f32),
        (7, 1000, 3.0, 1.0 / 0.7),
        (3, 257, 1e4, 1.0),
        (2, 151_936, 4.0, 1.0 / 0.6),
    ] {
        let x = rng.normals(rows * cols, sd);
        let tokens: Vec<i32> = (0..rows).map(|_| rng.below(cols) as i32).collect();
        check(dev, &x, &tokens, cols, scale, &format!("{rows}x{cols} sd={sd}"));
    }
}

fn masked_rows(dev: &Device) {
    let mut rng = Rng::fresh("gather_logprob masked");
    let cols = 300;
    let mut x = rng.normals(4 * cols, 2.0);
    for v in x.iter_mut().step_by(3) {
        *v = f32::NEG_INFINITY;
    }
    for v in x[2 * cols..3 * cols].iter_mut() {
        *v = f32::NEG_INFINITY; // fully masked: NaN
    }
    // Row 0 picks a masked token (-inf), row 1 an unmasked one, row 3 the only finite entry.
    for v in x[3 * cols..].iter_mut() {
        *v = f32::NEG_INFINITY;
    }
    x[3 * cols + 5] = 1.5;
    let tokens = [0, 1, 7, 5];
    check(dev, &x, &tokens, cols, 1.3, "masked");
    let dx = dev.upload(&x).unwrap();
    let dt = Indices::upload(dev, &tokens, cols).unwrap();
    let mut out = poisoned::<f32>(dev, 4).unwrap();
    let mut ent = poisoned::<f32>(dev, 4).unwrap();
    ops::gather_logprob(dev, &dx, &dt, &mut out, Some(ent.view_mut()), 4, cols, 1.0).unwrap();
    let (o, e) = (dev.download(&out).unwrap(), dev.download(&ent).unwrap());
    assert_eq!(o[0], f32::NEG_INFINITY);
    assert!(o[2].is_nan() && e[2].is_nan(), "all -inf row gives NaN");
    assert_eq!((o[3], e[3]), (0.0, 0.0), "a single finite entry: log p = 0, entropy 0");
}

fn rejects_bad_args(dev: &Device) {
    let x = dev.zeros::<f32>(6).unwrap();
    let mut out = dev.zeros::<f32>(2).unwrap();
    let t = Indices::upload(dev, &[0, 3], 4).unwrap();
    let err = ops::gather_logprob(dev, &x, &t, &mut out, None, 2, 3, 1.0).unwrap_err();
    assert!(err.to_string().contains("`tokens` values may reach 3 but only 3 exist"), "{err}");
    let t = Indices::upload(dev, &[0, 2], 3).unwrap();
    let err = ops::gather_logprob(dev, &x, &t, &mut out, None, 2, 3, -1.0).unwrap_err();
    assert!(err.to_string().contains("must be finite and > 0"), "{err}");
    let mut short = dev.zeros::<f32>(1).unwrap();
    let err =
        ops::gather_logprob(dev, &x, &t, &mut out, Some(short.view_mut()), 2, 3, 1.0).unwrap_err();
    assert!(err.to_string().contains("`entropy` holds 1 elements but the shape needs 2"), "{err}");
}

per_backend!(gathers, masked_rows, rejects_bad_args);
