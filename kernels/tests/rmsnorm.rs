//! Conformance of `ops::rmsnorm` against an f64 reference.

use treepo_kernels::testing::{Rng, Tol, assert_close, poisoned};
use treepo_kernels::{Device, ops, per_backend};

fn reference(x: &[f32], w: &[f32], dim: usize, eps: f32) -> (Vec<f64>, Vec<f64>) {
    let mut y = Vec::with_capacity(x.len());
    let mut rstd = Vec::new();
    for row in x.chunks(dim) {
        let ms = row.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>() / dim as f64;
        let r = 1.0 / (ms + eps as f64).sqrt();
        rstd.push(r);
        y.extend(row.iter().zip(w).map(|(&v, &wv)| v as f64 * r * wv as f64));
    }
    (y, rstd)
}

fn normalizes(dev: &Device) {
    let mut rng = Rng::fresh("rmsnorm");
    // A 1-row case, rows not a multiple of anything, a very wide row, large magnitudes, and rows
    // whose mean square is of the order of eps (where eps's placement matters: a kernel that
    // adds eps to the sum of squares instead of the mean passes every other case).
    let cases = [(1usize, 1usize, 1.0), (7, 33, 1.0), (3, 5000, 2.0), (5, 64, 1e3), (4, 96, 1e-3)];
    for (rows, dim, scale) in cases {
        let x = rng.normals(rows * dim, scale);
        let w = rng.normals(dim, 1.0);
        let (dx, dw) = (dev.upload(&x).unwrap(), dev.upload(&w).unwrap());
        let mut y = poisoned::<f32>(dev, rows * dim).unwrap();
        let mut r = poisoned::<f32>(dev, rows).unwrap();
        ops::rmsnorm(dev, &dx, &dw, &mut y, Some(r.view_mut()), rows, dim, 1e-6).unwrap();
        let (wy, wr) = reference(&x, &w, dim, 1e-6);
        let tol = Tol { atol: 1e-5, rtol: 2e-5 };
        let e1 = assert_close(
            &format!("rmsnorm y rows={rows} dim={dim}"),
            &dev.download(&y).unwrap(),
            &wy,
            tol,
        );
        let e2 = assert_close(
            "rmsnorm rstd",
            &dev.download(&r).unwrap(),
            &wr,
            Tol { atol: 1e-9, rtol: 2e-5 },
        );
        eprintln!("rmsnorm {rows}x{dim}: max err y {e1:e} rstd {e2:e}");
        // Without rstd the output is the same.
        let mut y2 = poisoned::<f32>(dev, rows * dim).unwrap();
        ops::rmsnorm(dev, &dx, &dw, &mut y2, None, rows, dim, 1e-6).unwrap();
        assert_close("rmsnorm y (no rstd)", &dev.download(&y2).unwrap(), &wy, tol);
    }
}

fn rejects_bad_args(dev: &Device) {
    let x = dev.zeros::<f32>(8).unwrap();
    let w = dev.zeros::<f32>(3).unwrap();
    let mut y = dev.zeros::<f32>(8).unwrap();
    let err = ops::rmsnorm(dev, &x, &w, &mut y, None, 2, 4, 1e-6).unwrap_err();
    assert!(err.to_string().contains("`w` holds 3 elements but the shape needs 4"), "{err}");
    let err = ops::rmsnorm(dev, &x, &w, &mut y, None, 2, 0, 1e-6).unwrap_err();
    assert!(err.to_string().contains("dim must be > 0"), "{err}");
    let err = ops::rmsnorm(dev, &x, &w, &mut y, None, 8, 1, f32::NAN).unwrap_err();
    assert!(err.to_string().contains("eps"), "{err}");
}

per_backend!(normalizes, rejects_bad_args);
