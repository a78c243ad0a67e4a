//! The sampling schedule and its two step kinds against the formulas of `sde.rs`'s module doc,
//! written out again here in f64: the SDE step's coefficients, mean and Gaussian
//! log-probability, the log-probability's velocity gradient (against central differences), and
//! the rectified-flow sanity of both steps with the exact velocity `v = ε − x_0`.

use crate::common::{Errors, normal, rng};
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};
use treepo_flow::data::DIM;
use treepo_flow::sde::{self, Schedule};

/// The `(T, a)` schedules the tests sweep.
const SCHEDULES: [(usize, f64); 6] =
    [(1, 0.7), (2, 0.7), (4, 0.7), (10, 0.7), (10, 0.3), (25, 1.5)];

/// The steps checked of a schedule of `t` steps: the first, the second, the middle and the last.
fn steps_of(t: usize) -> Vec<usize> {
    let mut s = vec![0, 1.min(t - 1), t / 2, t - 1];
    s.sort_unstable();
    s.dedup();
    s
}

/// Step `i` of `Schedule::new(steps, a)`, from the module doc's formulas.
struct Step {
    t: f64,
    dt: f64,
    sigma: f64,
    /// `μ = cx·x + cv·v`.
    cx: f64,
    cv: f64,
    /// `s = σ·√(−dt)`.
    s: f64,
}

fn reference_step(steps: usize, a: f64, i: usize) -> Step {
    let n = steps as f64;
    // t_i = 1 − i/T, dt = t_{i+1} − t_i = −1/T.
    let t = 1.0 - i as f64 / n;
    let t_next = 1.0 - (i + 1) as f64 / n;
    let dt = t_next - t;
    // σ = a·√(t/(1 − t)); at t = 1 (i = 0) the doc puts 1 − t_1 = 1/T in place of 1 − t.
    let one_minus_t = if i == 0 { 1.0 / n } else { 1.0 - t };
    let sigma = a * (t / one_minus_t).sqrt();
    // μ = x·(1 + σ²·dt/(2t)) + v·(1 + σ²(1 − t)/(2t))·dt (here the plain 1 − t, 0 at t = 1).
    let cx = 1.0 + sigma * sigma * dt / (2.0 * t);
    let cv = (1.0 + sigma * sigma * (1.0 - t) / (2.0 * t)) * dt;
    Step { t, dt, sigma, cx, cv, s: sigma * (-dt).sqrt() }
}

/// `ln N(y; μ, s²)` in f64.
fn ln_normal(y: f64, mu: f64, s: f64) -> f64 {
    -(y - mu).powi(2) / (2.0 * s * s) - s.ln() - 0.5 * (2.0 * std::f64::consts::PI).ln()
}

/// The mean over pixels of `ln N(next_d; μ_d, s²)` with `μ = cx·x + cv·v`, all in f64.
fn reference_log_prob(st: &Step, x: &[f32], v: &[f64], next: &[f32]) -> f64 {
    let sum: f64 =
        (0..DIM).map(|d| ln_normal(next[d] as f64, st.cx * x[d] as f64 + st.cv * v[d], st.s)).sum();
    sum / DIM as f64
}

#[test]
fn coefficients_follow_the_module_doc() {
    let mut err = Errors::new("coeffs (t, dt, cx, cv, std) vs the doc's formulas", 1e-14, 1e-12);
    for (steps, a) in SCHEDULES {
        let sched = Schedule::new(steps, a).unwrap();
        for i in 0..steps {
            let c = sched.coeffs(i);
            let r = reference_step(steps, a, i);
            let at = format!("T={steps} a={a} i={i}");
            err.add(sched.time(i), r.t, format!("{at} time"));
            err.add(c.t, r.t, format!("{at} t"));
            err.add(c.dt, r.dt, format!("{at} dt"));
            err.add(c.cx, r.cx, format!("{at} cx"));
            err.add(c.cv, r.cv, format!("{at} cv"));
            err.add(c.std, r.s, format!("{at} std"));
            assert!(c.std > 0.0 && c.std.is_finite(), "{at}: std {} (σ = {})", c.std, r.sigma);
        }
        // The grid ends at the data: t_T = 0.
        assert_eq!(sched.time(steps), 0.0, "T={steps}: t_T");
    }
    err.check();
}

#[test]
fn log_prob_is_the_mean_gaussian_log_density() {
    let mut mean_err = Errors::new("sde_mean vs cx·x + cv·v in f64", 1e-6, 1e-6);
    let mut lp_err = Errors::new("log_prob vs mean_d ln N(x'_d; μ_d, s²) in f64", 1e-6, 1e-7);
    let mut r = rng(11);
    for (steps, a) in SCHEDULES {
        let sched = Schedule::new(steps, a).unwrap();
        for i in steps_of(steps) {
            let st = reference_step(steps, a, i);
            let c = sched.coeffs(i);
            for rep in 0..3 {
                let x = normal(&mut r, DIM, 1.0);
                let v = normal(&mut r, DIM, 1.5);
                let v64: Vec<f64> = v.iter().map(|&v| v as f64).collect();
                // x' = μ + s·z with μ in f64.
                let next: Vec<f32> = (0..DIM)
                    .map(|d| {
                        let z: f64 = StandardNormal.sample(&mut r);
                        (st.cx * x[d] as f64 + st.cv * v64[d] + st.s * z) as f32
                    })
                    .collect();
                let mean = sde::sde_mean(&c, &x, &v);
                for d in 0..DIM {
                    mean_err.add(
                        mean[d] as f64,
                        st.cx * x[d] as f64 + st.cv * v64[d],
                        format!("T={steps} a={a} i={i} rep={rep} d={d}"),
                    );
                }
                let got = sde::log_prob(&c, &mean, &next);
                let want = reference_log_prob(&st, &x, &v64, &next);
                lp_err.add(got, want, format!("T={steps} a={a} i={i} rep={rep}"));
                // At the mean itself the density peaks at −ln s − ln √(2π).
                let peak = sde::log_prob(&c, &mean, &mean);
                let want_peak = -st.s.ln() - 0.5 * (2.0 * std::f64::consts::PI).ln();
                lp_err.add(peak, want_peak, format!("T={steps} a={a} i={i} peak"));
            }
        }
    }
    mean_err.check();
    lp_err.check();
}

#[test]
fn dlog_prob_dv_matches_central_differences() {
    // Two references: (1) the doc's formula in f64, differenced in f64 (log π is quadratic in v,
    // so the central difference has no truncation error); (2) the implementation itself,
    // `log_prob ∘ sde_mean`, differenced through f32 velocities (the f32 mean's rounding is the
    // error there).
    let mut f64_err = Errors::new("dlog_prob_dv vs central diff of the f64 formula", 1e-7, 1e-4);
    let mut impl_err = Errors::new("dlog_prob_dv vs central diff of log_prob∘sde_mean", 1e-6, 2e-3);
    let mut r = rng(12);
    for (steps, a) in SCHEDULES {
        let sched = Schedule::new(steps, a).unwrap();
        for i in steps_of(steps) {
            let st = reference_step(steps, a, i);
            let c = sched.coeffs(i);
            let x = normal(&mut r, DIM, 1.0);
            let v = normal(&mut r, DIM, 1.0);
            let mean = sde::sde_mean(&c, &x, &v);
            let next: Vec<f32> = (0..DIM)
                .map(|d| {
                    let z: f64 = StandardNormal.sample(&mut r);
                    (mean[d] as f64 + c.std * z) as f32
                })
                .collect();
            let g: f64 = if r.random::<bool>() { 1.0 } else { -0.37 };
            let mut grad = vec![f32::NAN; DIM];
            sde::dlog_prob_dv(&c, &mean, &next, g, &mut grad);
            // Twelve random pixels per step.
            for _ in 0..12 {
                let d = r.random_range(0..DIM);
                let at = format!("T={steps} a={a} i={i} d={d} g={g}");
                // (1) f64 formula.
                let h = 1e-3;
                let mut vp: Vec<f64> = v.iter().map(|&v| v as f64).collect();
                let mut vm = vp.clone();
                vp[d] += h;
                vm[d] -= h;
                let fd = (reference_log_prob(&st, &x, &vp, &next)
                    - reference_log_prob(&st, &x, &vm, &next))
                    / (2.0 * h);
                f64_err.add(grad[d] as f64, g * fd, &at);
                // (2) the implementation, through f32.
                let h = 1e-2f32;
                let (mut vp, mut vm) = (v.clone(), v.clone());
                vp[d] += h;
                vm[d] -= h;
                let lp = sde::log_prob(&c, &sde::sde_mean(&c, &x, &vp), &next);
                let lm = sde::log_prob(&c, &sde::sde_mean(&c, &x, &vm), &next);
                let fd = (lp - lm) / (vp[d] as f64 - vm[d] as f64);
                impl_err.add(grad[d] as f64, g * fd, &at);
            }
        }
    }
    f64_err.check();
    impl_err.check();
}

#[test]
fn ode_step_with_the_exact_velocity_stays_on_the_straight_line() {
    // x_t = (1 − t)·x0 + t·ε and v = ε − x0: x_t + dt·v = (1 − (t + dt))·x0 + (t + dt)·ε exactly.
    let mut one = Errors::new("ode_step(x_t, ε − x0) vs x_{t+dt}", 1e-6, 1e-6);
    let mut chain = Errors::new("T ODE steps from ε with v = ε − x0 vs x0", 1e-5, 1e-5);
    let mut r = rng(13);
    for (steps, a) in SCHEDULES {
        let sched = Schedule::new(steps, a).unwrap();
        let x0: Vec<f32> = (0..DIM).map(|_| r.random_range(-1.0f32..1.0)).collect();
        let eps = normal(&mut r, DIM, 1.0);
        let v: Vec<f32> = (0..DIM).map(|d| eps[d] - x0[d]).collect();
        let on_line = |t: f64, d: usize| (1.0 - t) * x0[d] as f64 + t * eps[d] as f64;
        // One step from the exact x_{t_i}, for every i.
        for i in 0..steps {
            let (t, dt) = (1.0 - i as f64 / steps as f64, -1.0 / steps as f64);
            let mut x: Vec<f32> = (0..DIM).map(|d| on_line(t, d) as f32).collect();
            sde::ode_step(&mut x, &v, sched.coeffs(i).dt);
            for (d, &xd) in x.iter().enumerate() {
                one.add(xd as f64, on_line(t + dt, d), format!("T={steps} i={i} d={d}"));
            }
        }
        // The whole walk from x_1 = ε lands on x0.
        let mut x = eps.clone();
        for i in 0..steps {
            sde::ode_step(&mut x, &v, sched.coeffs(i).dt);
        }
        for d in 0..DIM {
            chain.add(x[d] as f64, x0[d] as f64, format!("T={steps} d={d}"));
        }
    }
    one.check();
    chain.check();
}

#[test]
fn sde_mean_is_the_ode_step_plus_the_score_correction() {
    // With the exact v = ε − x0: x_t + (1 − t)·v = ε, so
    // μ = x_t + v·dt + σ²·dt/(2t)·(x_t + (1 − t)·v) = x_{t+dt} + σ²·dt/(2t)·ε,
    // the drift v − (σ²/2)·∇log p_t(x_t | x0) with ∇log p_t = −ε/t.
    let mut err = Errors::new("sde_mean(x_t, ε − x0) vs x_{t+dt} + σ²dt/(2t)·ε", 1e-6, 1e-6);
    let mut r = rng(14);
    for (steps, a) in SCHEDULES {
        let sched = Schedule::new(steps, a).unwrap();
        let x0: Vec<f32> = (0..DIM).map(|_| r.random_range(-1.0f32..1.0)).collect();
        let eps = normal(&mut r, DIM, 1.0);
        let v: Vec<f32> = (0..DIM).map(|d| eps[d] - x0[d]).collect();
        for i in 0..steps {
            let st = reference_step(steps, a, i);
            let x: Vec<f32> = (0..DIM)
                .map(|d| ((1.0 - st.t) * x0[d] as f64 + st.t * eps[d] as f64) as f32)
                .collect();
            let mean = sde::sde_mean(&sched.coeffs(i), &x, &v);
            let tn = st.t + st.dt;
            let corr = st.sigma * st.sigma * st.dt / (2.0 * st.t);
            for d in 0..DIM {
                let want = (1.0 - tn) * x0[d] as f64 + tn * eps[d] as f64 + corr * eps[d] as f64;
                err.add(mean[d] as f64, want, format!("T={steps} a={a} i={i} d={d}"));
            }
        }
    }
    err.check();
}
