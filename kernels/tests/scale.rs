//! Conformance of `ops::scale` (in place) against an f64 reference.

use treepo_kernels::testing::{Rng, Tol, assert_close};
use treepo_kernels::{Device, ops, per_backend};

fn scales_in_place(dev: &Device) {
    let mut rng = Rng::fresh("scale");
    for (len, off, n, s) in
        [(1usize, 0usize, 1usize, 0.5f32), (1000, 5, 990, -3.25), (70_001, 1, 70_000, 1e-3)]
    {
        let init = rng.normals(len, 10.0);
        let mut x = dev.upload(&init).unwrap();
        ops::scale(dev, x.slice_mut(off..off + n).unwrap(), s, n).unwrap();
        let want: Vec<f64> = init
            .iter()
            .enumerate()
            .map(|(i, &v)| if (off..off + n).contains(&i) { v as f64 * s as f64 } else { v as f64 })
            .collect();
        assert_close(&format!("scale len={len}"), &dev.download(&x).unwrap(), &want, Tol::F32);
    }
}

fn rejects_bad_args(dev: &Device) {
    let mut x = dev.zeros::<f32>(8).unwrap();
    let err = ops::scale(dev, &mut x, 1.0, 9).unwrap_err();
    assert!(err.to_string().contains("`x` holds 8 elements but the shape needs 9"), "{err}");
    let err = ops::scale(dev, &mut x, f32::INFINITY, 8).unwrap_err();
    assert!(err.to_string().contains("s = inf is not finite"), "{err}");
}

per_backend!(scales_in_place, rejects_bad_args);
