//! Conformance of `ops::swiglu` against an f64 reference.

use treepo_kernels::testing::{Rng, Tol, assert_close, poisoned};
use treepo_kernels::{Device, ops, per_backend};

fn reference(gate: &[f32], up: &[f32]) -> Vec<f64> {
    gate.iter()
        .zip(up)
        .map(|(&a, &b)| {
            let a = a as f64;
            a / (1.0 + (-a).exp()) * b as f64
        })
        .collect()
}

fn activates(dev: &Device) {
    let mut rng = Rng::fresh("swiglu");
    // One element, sizes off every tile, a long vector, large magnitudes (saturated sigmoid both
    // ways, exp(-a) overflowing for a < -88).
    for (n, scale) in [(1usize, 1.0), (255, 3.0), (257, 1.0), (70_001, 4.0), (1000, 120.0)] {
        let gate = rng.normals(n, scale);
        let up = rng.normals(n, 2.0);
        let (dg, du) = (dev.upload(&gate).unwrap(), dev.upload(&up).unwrap());
        let mut out = poisoned::<f32>(dev, n).unwrap();
        ops::swiglu(dev, &dg, &du, &mut out, n).unwrap();
        let err = assert_close(
            &format!("swiglu n={n} scale={scale}"),
            &dev.download(&out).unwrap(),
            &reference(&gate, &up),
            Tol { atol: 1e-30, rtol: 4e-6 },
        );
        eprintln!("swiglu n={n} |gate|~{scale}: max err {err:e}");
    }
}

fn works_on_views(dev: &Device) {
    // gate and up are halves of one fused [gate | up] buffer; out is a view at an offset.
    let mut rng = Rng::fresh("swiglu views");
    let n = 37;
    let fused = rng.normals(2 * n + 3, 2.0);
    let buf = dev.upload(&fused).unwrap();
    let mut out = poisoned::<f32>(dev, n + 5).unwrap();
    ops::swiglu(
        dev,
        buf.slice(0..n).unwrap(),
        buf.slice(n + 3..2 * n + 3).unwrap(),
        out.slice_mut(5..n + 5).unwrap(),
        n,
    )
    .unwrap();
    let got = dev.download(&out).unwrap();
    assert!(got[..5].iter().all(|v| v.is_nan()), "wrote before the view");
    let want = reference(&fused[..n], &fused[n + 3..]);
    assert_close("swiglu views", &got[5..], &want, Tol { atol: 1e-30, rtol: 4e-6 });
}

fn rejects_bad_args(dev: &Device) {
    let a = dev.zeros::<f32>(4).unwrap();
    let b = dev.zeros::<f32>(3).unwrap();
    let mut y = dev.zeros::<f32>(4).unwrap();
    let err = ops::swiglu(dev, &a, &b, &mut y, 4).unwrap_err();
    assert!(err.to_string().contains("`up` holds 3 elements but the shape needs 4"), "{err}");
    let err = ops::swiglu(dev, &a, &a, &mut y, 5).unwrap_err();
    assert!(err.to_string().contains("`gate` holds 4 elements but the shape needs 5"), "{err}");
}

per_backend!(activates, works_on_views, rejects_bad_args);
