//! The fast SwiGLU (`cpu::fast::swiglu`, what `ops::swiglu` runs on the CPU) against its readable
//! twin (`cpu::swiglu`) and both against f64, on fresh random inputs with NaN-poisoned outputs:
//! lengths around the 16- and 8-lane vectors, past the 4 Ki-element chunks and past 2¹⁶
//! elements (the parallel path), gates from N(0, 4²) and the edges of f32's `exp` range,
//! infinities and NaN. Each check prints its maximum absolute error
//! (`cargo test … cpu_fast_swiglu -- --nocapture`).

use treepo_kernels::Element;
use treepo_kernels::cpu::{fast, math, swiglu};
use treepo_kernels::testing::{Rng, Tol, assert_close};

/// silu(a)·u in f64 (`a / (1 + e^−a)`).
fn want(gate: &[f32], up: &[f32]) -> Vec<f64> {
    gate.iter().zip(up).map(|(&a, &u)| a as f64 / (1.0 + (-a as f64).exp()) * u as f64).collect()
}

/// Fast vs twin vs f64 on one input (max errors printed).
fn case(what: &str, gate: &[f32], up: &[f32]) {
    let n = gate.len();
    let reference = want(gate, up);
    // A few ulps of the output, and 1e-35 absolute for silu's tail below a = -88 (module docs:
    // there fast gives -0 where silu(a)·u is up to ~5e-37·|u|).
    let tol = Tol { atol: 1e-35, rtol: 4e-7 * 4.0 };
    let mut twin = vec![f32::POISON; n];
    swiglu::swiglu(gate, up, &mut twin);
    let e_twin = assert_close(&format!("{what}: twin vs f64"), &twin, &reference, tol);
    let mut got = vec![f32::POISON; n];
    fast::swiglu::swiglu(gate, up, &mut got);
    let e_fast = assert_close(&format!("{what}: fast vs f64"), &got, &reference, tol);
    let twin64: Vec<f64> = twin.iter().map(|&x| x as f64).collect();
    let e_pair = assert_close(&format!("{what}: fast vs twin"), &got, &twin64, tol);
    println!(
        "{what} n={n}: max err fast vs f64 {e_fast:.1e}, vs twin {e_pair:.1e}; twin vs f64 {e_twin:.1e}"
    );
}

#[test]
fn swiglu_matches_twin_and_f64() {
    let mut rng = Rng::fresh("cpu_fast swiglu");
    for n in [1, 7, 8, 15, 16, 17, 33, 1000, (1 << 14) + 5, 3 * (1 << 14) + 100, 1 << 18] {
        let gate = rng.normals(n, 4.0);
        let up = rng.normals(n, 1.0);
        case("normal gates", &gate, &up);
    }
    // Across exp's whole range: e^-a from underflow (a > 87) to overflow (a < -88).
    let gate: Vec<f32> = (0..4000).map(|_| (rng.uniform() as f32 - 0.5) * 200.0).collect();
    let up = rng.normals(gate.len(), 1.0);
    case("gates in [-100, 100]", &gate, &up);
}

#[test]
fn swiglu_edges_match_the_twin() {
    let gate = [
        0.0,
        -0.0,
        87.0,
        87.5,
        -87.0,
        -88.0,
        -88.5,
        -89.0,
        -1e30,
        1e30,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        f32::MIN_POSITIVE,
        -f32::MIN_POSITIVE,
        1e-30,
    ];
    let up = vec![1.5f32; gate.len()];
    let (mut twin, mut got) = (vec![f32::POISON; gate.len()], vec![f32::POISON; gate.len()]);
    swiglu::swiglu(&gate, &up, &mut twin);
    fast::swiglu::swiglu(&gate, &up, &mut got);
    for (i, (&t, &f)) in twin.iter().zip(&got).enumerate() {
        let a = gate[i];
        let same_class =
            (t.is_nan() && f.is_nan()) || t == f || (t - f).abs() <= 1e-36 + 2e-6 * t.abs();
        assert!(same_class, "silu({a})·1.5: fast {f:e}, twin {t:e}");
    }
    // The documented classes: silu(+inf) = +inf, silu(-inf) and silu(NaN) are NaN, silu(-0) = -0.
    assert_eq!(got[10], f32::INFINITY);
    assert!(got[11].is_nan() && got[12].is_nan());
    assert!(got[1] == 0.0 && got[1].is_sign_negative());
}

#[test]
fn exp_is_accurate_over_its_range() {
    let mut worst = (0f64, 0f32);
    let mut x = -87.0f32;
    while x <= 88.0 {
        let want = (x as f64).exp();
        let rel = ((math::exp(x) as f64 - want) / want).abs();
        if rel > worst.0 {
            worst = (rel, x);
        }
        x += 0.001_37;
    }
    println!("fast exp: max relative error {:.2e} at x = {}", worst.0, worst.1);
    assert!(worst.0 < 4e-7, "fast exp relative error {:.2e} at x = {}", worst.0, worst.1);
    assert_eq!(math::exp(-87.5), 0.0);
    assert_eq!(math::exp(88.5), f32::INFINITY);
    assert!(math::exp(f32::NAN).is_nan());
}
