//! The weight GEMM (`cpu::fast::weight_gemm`, what `ops::gemm` runs on the CPU for a B packed
//! in panel order) against its readable twin (`cpu::weight_gemm`) and both against f64, on
//! fresh random inputs with poisoned outputs: every row remainder of the 8-row tiles, row
//! chunks past 64, 32- and 16-column panels, k-blocks (k past 256), a strided A, `beta` zero
//! and not, one and two threads.

use treepo_kernels::Element;
use treepo_kernels::cpu::{fast, weight_gemm};
use treepo_kernels::testing::{Rng, Tol, assert_close};

/// One product: fast vs twin vs f64 (max errors printed).
#[allow(clippy::too_many_arguments)]
fn case(rng: &mut Rng, m: usize, n: usize, k: usize, pad: usize, beta: f32, threads: usize) {
    let lda = k + pad;
    let a = rng.normals(m * lda, 1.0);
    let b = rng.normals(k * n, 1.0);
    let bp = weight_gemm::pack(&b, k, n);
    let c0 = if beta == 0.0 { vec![f32::POISON; m * n] } else { rng.normals(m * n, 1.0) };
    let alpha = 0.5 + rng.uniform() as f32;
    let mut want = vec![0f64; m * n];
    for i in 0..m {
        for j in 0..n {
            let dot: f64 = (0..k).map(|p| a[i * lda + p] as f64 * b[p * n + j] as f64).sum();
            let prev = if beta == 0.0 { 0.0 } else { beta as f64 * c0[i * n + j] as f64 };
            want[i * n + j] = alpha as f64 * dot + prev;
        }
    }
    let mut twin = c0.clone();
    weight_gemm::gemm(m, n, k, (&a, lda), &bp, &mut twin, alpha, beta);
    let what = format!("weight_gemm m={m} n={n} k={k} pad={pad} beta={beta} threads={threads}");
    let tol = Tol { atol: 2e-6 * (k.max(1) as f64).sqrt() * 4.0, rtol: 1e-5 };
    let e_twin_ref = assert_close(&format!("{what}: twin vs f64"), &twin, &want, tol);
    if !fast::weight_gemm::available() {
        println!("{what}: twin vs f64 {e_twin_ref:.1e} (no AVX-512F: fast kernel not run)");
        return;
    }
    let mut got = c0.clone();
    fast::weight_gemm::gemm(m, n, k, (&a, lda), &bp, &mut got, alpha, beta, threads);
    let e_ref = assert_close(&format!("{what}: fast vs f64"), &got, &want, tol);
    let twin64: Vec<f64> = twin.iter().map(|&x| x as f64).collect();
    let e_twin = assert_close(&format!("{what}: fast vs twin"), &got, &twin64, tol);
    println!(
        "{what}: max err fast vs f64 {e_ref:.1e}, vs twin {e_twin:.1e}; twin vs f64 {e_twin_ref:.1e}"
    );
}

#[test]
fn weight_gemm_matches_twin_and_f64() {
    let mut rng = Rng::fresh("cpu_fast weight gemm");
    println!("weight_gemm fast kernel on this CPU: {}", fast::weight_gemm::available());
    for m in [1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 64, 70, 131] {
        // 16: one half panel; 48: a panel and a half; 400: several per thread; k = 300: a
        // full k-block and a partial one.
        for (n, k) in [(16, 1), (48, 7), (128, 128), (400, 37), (32, 300)] {
            let pad = rng.below(3) * 5;
            for beta in [0.0, 0.75] {
                for threads in [1, 2] {
                    case(&mut rng, m, n, k, pad, beta, threads);
                }
            }
        }
    }
    // The engine's down projection (k = 1536: six k-blocks), and k = 0 (C = beta·C).
    case(&mut rng, 64, 512, 1536, 0, 0.0, 2);
    case(&mut rng, 5, 32, 0, 0, 0.5, 1);
    case(&mut rng, 5, 32, 0, 0, 0.0, 2);
}

#[test]
fn panel_order_is_as_documented() {
    // k = 2, n = 48: a 32-column panel (rows of 32), then a 16-column one (rows of 16).
    let (k, n) = (2, 48);
    let b: Vec<f32> = (0..k * n).map(|i| i as f32).collect();
    let bp = weight_gemm::pack(&b, k, n);
    assert_eq!(bp[..32], b[..32]);
    assert_eq!(bp[32..64], b[48..80]);
    assert_eq!(bp[64..80], b[32..48]);
    assert_eq!(bp[80..96], b[80..96]);
    for p in 0..k {
        for j in 0..n {
            assert_eq!(weight_gemm::at(&bp, k, n, p, j), b[p * n + j], "({p}, {j})");
        }
    }
}
