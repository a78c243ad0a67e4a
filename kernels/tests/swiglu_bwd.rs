//! Conformance of `ops::swiglu_bwd`: closed form in f64, central finite differences of the f64
//! forward `out = silu(a)·b`, large |a|, offsets, NaN-poisoned outputs.

use treepo_kernels::testing::{Rng, Tol, assert_close, poisoned};
use treepo_kernels::{Device, ops, per_backend};

fn silu(a: f64) -> f64 {
    a / (1.0 + (-a).exp())
}

/// Closed form: (dgate, dup).
fn reference(dout: &[f32], a: &[f32], b: &[f32]) -> (Vec<f64>, Vec<f64>) {
    let mut dg = Vec::new();
    let mut du = Vec::new();
    for i in 0..a.len() {
        let (d, a, b) = (dout[i] as f64, a[i] as f64, b[i] as f64);
        let s = 1.0 / (1.0 + (-a).exp());
        dg.push(d * b * s * (1.0 + a * (1.0 - s)));
        du.push(d * silu(a));
    }
    (dg, du)
}

fn run(dev: &Device, dout: &[f32], a: &[f32], b: &[f32], off: usize) -> (Vec<f32>, Vec<f32>) {
    let n = a.len();
    let pad = |v: &[f32]| -> Vec<f32> {
        let mut p = vec![7.0f32; off];
        p.extend_from_slice(v);
        p.push(-7.0);
        p
    };
    let (bd, ba, bb) = (
        dev.upload(&pad(dout)).unwrap(),
        dev.upload(&pad(a)).unwrap(),
        dev.upload(&pad(b)).unwrap(),
    );
    let mut dg = poisoned::<f32>(dev, n + off + 1).unwrap();
    let mut du = poisoned::<f32>(dev, n + off + 1).unwrap();
    ops::swiglu_bwd(
        dev,
        bd.slice(off..off + n).unwrap(),
        ba.slice(off..off + n).unwrap(),
        bb.slice(off..off + n).unwrap(),
        dg.slice_mut(off..off + n).unwrap(),
        du.slice_mut(off..off + n).unwrap(),
        n,
    )
    .unwrap();
    let (g, u) = (dev.download(&dg).unwrap(), dev.download(&du).unwrap());
    // Outside the views nothing was written.
    assert!(g[..off].iter().chain(&g[off + n..]).all(|v| v.is_nan()), "dgate written outside");
    assert!(u[..off].iter().chain(&u[off + n..]).all(|v| v.is_nan()), "dup written outside");
    (g[off..off + n].to_vec(), u[off..off + n].to_vec())
}

fn matches_closed_form(dev: &Device) {
    let mut rng = Rng::fresh("swiglu_bwd");
    for (n, off, scale) in [(1usize, 0usize, 1.0), (1000, 3, 3.0), (70_001, 11, 8.0)] {
        let (dout, a, b) = (rng.normals(n, 1.0), rng.normals(n, scale), rng.normals(n, 1.0));
        let (g, u) = run(dev, &dout, &a, &b, off);
        let (wg, wu) = reference(&dout, &a, &b);
        let tol = Tol { atol: 1e-6, rtol: 1e-5 };
        let e1 = assert_close(&format!("dgate n={n}"), &g, &wg, tol);
        let e2 = assert_close(&format!("dup n={n}"), &u, &wu, tol);
        eprintln!("swiglu_bwd n={n}: max err dgate {e1:e} dup {e2:e}");
    }
}

fn large_gate_is_finite(dev: &Device) {
    let a: Vec<f32> =
        vec![-1e4, -200.0, -100.0, -88.0, -30.0, 0.0, 30.0, 88.0, 100.0, 200.0, 1e4, -0.0];
    let n = a.len();
    let dout = vec![1.5f32; n];
    let b = vec![-2.0f32; n];
    let (g, u) = run(dev, &dout, &a, &b, 1);
    assert!(g.iter().chain(&u).all(|v| v.is_finite()), "non-finite gradients: {g:?} {u:?}");
    let (wg, wu) = reference(&dout, &a, &b);
    assert_close("dgate (large |a|)", &g, &wg, Tol { atol: 1e-6, rtol: 1e-5 });
    assert_close("dup (large |a|)", &u, &wu, Tol { atol: 1e-6, rtol: 1e-5 });
}

/// Central differences of L = Σ dout·silu(a)·b in f64.
fn matches_finite_differences(dev: &Device) {
    let mut rng = Rng::fresh("swiglu_bwd fd");
    let n = 64;
    let (dout, a, b) = (rng.normals(n, 1.0), rng.normals(n, 4.0), rng.normals(n, 1.0));
    let (g, u) = run(dev, &dout, &a, &b, 0);
    let mut fd_g = Vec::new();
    let mut fd_u = Vec::new();
    for i in 0..n {
        let (d, ai, bi) = (dout[i] as f64, a[i] as f64, b[i] as f64);
        let h = 1e-5 * ai.abs().max(1.0);
        fd_g.push(d * bi * (silu(ai + h) - silu(ai - h)) / (2.0 * h));
        let hb = 1e-5 * bi.abs().max(1.0);
        fd_u.push(d * silu(ai) * ((bi + hb) - (bi - hb)) / (2.0 * hb));
    }
    assert_close("dgate vs finite differences", &g, &fd_g, Tol { atol: 1e-5, rtol: 1e-4 });
    assert_close("dup vs finite differences", &u, &fd_u, Tol { atol: 1e-5, rtol: 1e-4 });
}

fn rejects_bad_args(dev: &Device) {
    let x = dev.zeros::<f32>(8).unwrap();
    let short = dev.zeros::<f32>(7).unwrap();
    let mut dg = dev.zeros::<f32>(8).unwrap();
    let mut du = dev.zeros::<f32>(7).unwrap();
    let err = ops::swiglu_bwd(dev, &x, &short, &x, &mut dg, &mut du, 8).unwrap_err();
    assert!(err.to_string().contains("`gate` holds 7 elements but the shape needs 8"), "{err}");
    let err = ops::swiglu_bwd(dev, &x, &x, &x, &mut dg, &mut du, 8).unwrap_err();
    assert!(err.to_string().contains("`dup` holds 7 elements but the shape needs 8"), "{err}");
}

per_backend!(
    matches_closed_form,
    large_gate_is_finite,
    matches_finite_differences,
    rejects_bad_args
);
