//! Conformance of `ops::sum_squares`: f64 reference, 1M elements, NaN/Inf propagation,
//! determinism, offsets.

use treepo_kernels::testing::Rng;
use treepo_kernels::{BackendKind, Device, ops, per_backend};

fn reference(x: &[f32]) -> f64 {
    x.iter().map(|&v| v as f64 * v as f64).sum()
}

/// f64 accumulation on the CPU and CUDA; f32 partials of 4096 squares on wgpu.
fn rtol(dev: &Device) -> f64 {
    if dev.kind() == BackendKind::Wgpu { 5e-6 } else { 1e-12 }
}

fn sums_squares(dev: &Device) {
    let mut rng = Rng::fresh("sum_squares");
    for (len, off, n) in
        [(1usize, 0usize, 1usize), (4097, 3, 4093), (1 << 20, 0, 1 << 20), (1_000_003, 7, 999_990)]
    {
        let x = rng.normals(len, 3.0);
        let b = dev.upload(&x).unwrap();
        let got = ops::sum_squares(dev, b.slice(off..off + n).unwrap(), n).unwrap();
        let want = reference(&x[off..off + n]);
        let err = (got - want).abs() / want;
        assert!(err <= rtol(dev), "sum_squares n={n}: got {got} want {want} (rel err {err:e})");
        // Deterministic: the same call gives the same bits.
        let again = ops::sum_squares(dev, b.slice(off..off + n).unwrap(), n).unwrap();
        assert_eq!(got.to_bits(), again.to_bits(), "sum_squares n={n} is not deterministic");
        eprintln!("sum_squares n={n}: rel err {err:e}");
    }
    // Large magnitudes that would overflow an f32 sum (2^64 · 1000 squares) are fine in f64.
    if dev.kind() != BackendKind::Wgpu {
        let x = vec![4.0e18f32; 1000];
        let got = ops::sum_squares(dev, &dev.upload(&x).unwrap(), 1000).unwrap();
        let want = reference(&x);
        assert!(((got - want) / want).abs() < 1e-12, "large: got {got} want {want}");
    }
    let empty = dev.zeros::<f32>(4).unwrap();
    assert_eq!(ops::sum_squares(dev, &empty, 0).unwrap(), 0.0);
}

fn propagates_non_finite(dev: &Device) {
    let mut rng = Rng::fresh("sum_squares non-finite");
    let n = 1 << 20;
    for (bad, expect_nan) in [(f32::NAN, true), (f32::INFINITY, false), (f32::NEG_INFINITY, false)]
    {
        let mut x = rng.normals(n, 1.0);
        x[rng.below(n)] = bad;
        let got = ops::sum_squares(dev, &dev.upload(&x).unwrap(), n).unwrap();
        if expect_nan {
            assert!(got.is_nan(), "a NaN input gave {got}");
        } else {
            assert_eq!(got, f64::INFINITY, "an infinite input gave {got}");
        }
    }
    // NaN and Inf together: NaN.
    let mut x = rng.normals(5000, 1.0);
    x[10] = f32::INFINITY;
    x[4999] = f32::NAN;
    assert!(ops::sum_squares(dev, &dev.upload(&x).unwrap(), 5000).unwrap().is_nan());
}

fn rejects_bad_args(dev: &Device) {
    let x = dev.zeros::<f32>(8).unwrap();
    let err = ops::sum_squares(dev, &x, 9).unwrap_err();
    assert!(err.to_string().contains("`x` holds 8 elements but the shape needs 9"), "{err}");
}

per_backend!(sums_squares, propagates_non_finite, rejects_bad_args);
