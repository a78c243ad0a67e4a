//! Conformance of `ops::fill`: writes exactly the viewed range, any value.

use treepo_kernels::testing::{Rng, poisoned};
use treepo_kernels::{Device, ops, per_backend};

fn fills_the_view(dev: &Device) {
    let mut rng = Rng::fresh("fill");
    for (len, off, n) in [(1usize, 0usize, 1usize), (1000, 3, 997), (70_001, 17, 69_000)] {
        let init = rng.normals(len, 1.0);
        let mut x = dev.upload(&init).unwrap();
        let value = rng.normal() as f32;
        ops::fill(dev, x.slice_mut(off..off + n).unwrap(), value, n).unwrap();
        let got = dev.download(&x).unwrap();
        for (i, (&g, &w)) in got.iter().zip(&init).enumerate() {
            let want = if (off..off + n).contains(&i) { value } else { w };
            assert_eq!(g.to_bits(), want.to_bits(), "fill len={len} off={off}: element {i}");
        }
    }
    // Zeroing a poisoned buffer; a NaN fill is allowed.
    let mut x = poisoned::<f32>(dev, 513).unwrap();
    ops::fill(dev, &mut x, 0.0, 513).unwrap();
    assert!(dev.download(&x).unwrap().iter().all(|&v| v == 0.0));
    ops::fill(dev, &mut x, f32::NAN, 513).unwrap();
    assert!(dev.download(&x).unwrap().iter().all(|v| v.is_nan()));
}

fn rejects_bad_args(dev: &Device) {
    let mut x = dev.zeros::<f32>(8).unwrap();
    let err = ops::fill(dev, &mut x, 1.0, 9).unwrap_err();
    assert!(err.to_string().contains("`x` holds 8 elements but the shape needs 9"), "{err}");
}

per_backend!(fills_the_view, rejects_bad_args);
