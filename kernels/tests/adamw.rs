//! Conformance of `ops::adamw` against an f64 step-by-step reference over several steps with a
//! mixed decay mask, on views into larger buffers (the one-buffer parameter layout).

use treepo_kernels::ops::AdamWParams;
use treepo_kernels::testing::{Rng, Tol, assert_close};
use treepo_kernels::{Device, ops, per_backend};

struct State {
    p: Vec<f64>,
    m: Vec<f64>,
    v: Vec<f64>,
}

fn reference_step(s: &mut State, g: &[f32], decay: &[f32], hp: &AdamWParams) {
    let (b1, b2) = (hp.beta1 as f64, hp.beta2 as f64);
    let t = hp.step as i32;
    let (bc1, bc2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
    for i in 0..s.p.len() {
        let g = g[i] as f64;
        s.m[i] = b1 * s.m[i] + (1.0 - b1) * g;
        s.v[i] = b2 * s.v[i] + (1.0 - b2) * g * g;
        let (mh, vh) = (s.m[i] / bc1, s.v[i] / bc2);
        let wd = if decay[i] == 1.0 { hp.weight_decay as f64 } else { 0.0 };
        s.p[i] -= hp.lr as f64 * (mh / (vh.sqrt() + hp.eps as f64) + wd * s.p[i]);
    }
}

fn matches_reference_over_steps(dev: &Device) {
    let mut rng = Rng::fresh("adamw");
    for (n, off) in [(1usize, 0usize), (1000, 5), (70_001, 13)] {
        let len = n + off + 3;
        let p0 = rng.normals(len, 1.0);
        // Decay on some runs of elements, off on others (like weights vs norms/biases).
        let decay: Vec<f32> = (0..len).map(|i| if (i / 7) % 3 == 0 { 0.0 } else { 1.0 }).collect();
        let mut st = State {
            p: p0[off..off + n].iter().map(|&v| v as f64).collect(),
            m: vec![0.0; n],
            v: vec![0.0; n],
        };
        let mut params = dev.upload(&p0).unwrap();
        let mut m = dev.zeros::<f32>(len).unwrap();
        let mut v = dev.zeros::<f32>(len).unwrap();
        let bdecay = dev.upload(&decay).unwrap();
        for step in 1..=6u64 {
            let g = rng.normals(len, if step == 3 { 1e-3 } else { 0.5 });
            let bg = dev.upload(&g).unwrap();
            let hp = AdamWParams {
                lr: 1e-2 * step as f32,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 0.1,
                step,
            };
            ops::adamw(
                dev,
                params.slice_mut(off..off + n).unwrap(),
                bg.slice(off..off + n).unwrap(),
                m.slice_mut(off..off + n).unwrap(),
                v.slice_mut(off..off + n).unwrap(),
                bdecay.slice(off..off + n).unwrap(),
                &hp,
                n,
            )
            .unwrap();
            reference_step(&mut st, &g[off..off + n], &decay[off..off + n], &hp);
            let what = format!("adamw n={n} step {step}");
            let got_p = dev.download(&params).unwrap();
            let tol = Tol { atol: 2e-6, rtol: 2e-5 };
            assert_close(&format!("{what} params"), &got_p[off..off + n], &st.p, tol);
            let got_m = dev.download(&m).unwrap();
            assert_close(&format!("{what} m"), &got_m[off..off + n], &st.m, tol);
            let got_v = dev.download(&v).unwrap();
            assert_close(&format!("{what} v"), &got_v[off..off + n], &st.v, tol);
            // Outside the views nothing moved.
            for i in (0..off).chain(off + n..len) {
                assert_eq!(got_p[i], p0[i], "{what}: params[{i}] outside the view changed");
                assert_eq!(got_m[i], 0.0, "{what}: m[{i}] outside the view changed");
            }
        }
    }
}

fn weight_decay_only_where_masked(dev: &Device) {
    // Zero gradients: the Adam term is 0 and only decay moves θ, by exactly lr·wd·θ.
    let p0 = vec![1.0f32, -2.0, 3.0, -4.0];
    let decay = vec![1.0f32, 0.0, 1.0, 0.5];
    let mut params = dev.upload(&p0).unwrap();
    let g = dev.zeros::<f32>(4).unwrap();
    let (mut m, mut v) = (dev.zeros::<f32>(4).unwrap(), dev.zeros::<f32>(4).unwrap());
    let hp =
        AdamWParams { lr: 0.5, beta1: 0.9, beta2: 0.99, eps: 1e-8, weight_decay: 0.1, step: 1 };
    let d = dev.upload(&decay).unwrap();
    ops::adamw(dev, &mut params, &g, &mut m, &mut v, &d, &hp, 4).unwrap();
    let got = dev.download(&params).unwrap();
    assert_close("decay mask", &got, &[0.95, -2.0, 2.85, -4.0], Tol::F32);
}

fn rejects_bad_args(dev: &Device) {
    let mut p = dev.zeros::<f32>(8).unwrap();
    let g = dev.zeros::<f32>(8).unwrap();
    let (mut m, mut v) = (dev.zeros::<f32>(8).unwrap(), dev.zeros::<f32>(7).unwrap());
    let d = dev.zeros::<f32>(8).unwrap();
    let ok =
        AdamWParams { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, step: 1 };
    let err = ops::adamw(dev, &mut p, &g, &mut m, &mut v, &d, &ok, 8).unwrap_err();
    assert!(err.to_string().contains("`v` holds 7 elements but the shape needs 8"), "{err}");
    let mut v = dev.zeros::<f32>(8).unwrap();
    let cases = [
        (AdamWParams { lr: f32::NAN, ..ok }, "lr = NaN must be finite and >= 0"),
        (AdamWParams { lr: -1e-3, ..ok }, "lr = -0.001 must be finite and >= 0"),
        (AdamWParams { beta1: 1.0, ..ok }, "beta1 = 1 must be in [0, 1)"),
        (AdamWParams { beta2: -0.5, ..ok }, "beta2 = -0.5 must be in [0, 1)"),
        (AdamWParams { eps: 0.0, ..ok }, "eps = 0 must be finite and > 0"),
        (AdamWParams { weight_decay: f32::INFINITY, ..ok }, "weight_decay = inf must be finite"),
        (AdamWParams { step: 0, ..ok }, "step = 0: steps count from 1"),
    ];
    for (hp, msg) in cases {
        let err = ops::adamw(dev, &mut p, &g, &mut m, &mut v, &d, &hp, 8).unwrap_err();
        assert!(err.to_string().contains(msg), "{hp:?}: {err}");
    }
    // Nothing was touched by the rejected calls.
    assert!(dev.download(&p).unwrap().iter().all(|&x| x == 0.0));
}

per_backend!(matches_reference_over_steps, weight_decay_only_where_masked, rejects_bad_args);
