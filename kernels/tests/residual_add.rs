//! Conformance of `ops::residual_add`.

use treepo_kernels::testing::{Rng, Tol, assert_close};
use treepo_kernels::{Device, ops, per_backend};

fn adds(dev: &Device) {
    let mut rng = Rng::fresh("residual_add");
    for n in [1usize, 255, 257, 100_003] {
        let y0 = rng.normals(n, 3.0);
        let x = rng.normals(n, 3.0);
        let mut y = dev.upload(&y0).unwrap();
        let dx = dev.upload(&x).unwrap();
        ops::residual_add(dev, &mut y, &dx, n).unwrap();
        let want: Vec<f64> = y0.iter().zip(&x).map(|(a, b)| (*a as f64) + (*b as f64)).collect();
        assert_close(&format!("residual_add n={n}"), &dev.download(&y).unwrap(), &want, Tol::F32);
    }
}

fn partial_views(dev: &Device) {
    // Only the viewed range changes; neighbours keep their values.
    let y0: Vec<f32> = (0..10).map(|i| i as f32).collect();
    let mut y = dev.upload(&y0).unwrap();
    let x = dev.upload(&[100f32; 4]).unwrap();
    ops::residual_add(dev, y.slice_mut(3..7).unwrap(), &x, 4).unwrap();
    let got = dev.download(&y).unwrap();
    assert_eq!(got, vec![0., 1., 2., 103., 104., 105., 106., 7., 8., 9.]);
}

fn rejects_short_inputs(dev: &Device) {
    let mut y = dev.zeros::<f32>(3).unwrap();
    let x = dev.zeros::<f32>(2).unwrap();
    let err = ops::residual_add(dev, &mut y, &x, 3).unwrap_err();
    assert!(err.to_string().contains("`x` holds 2 elements but the shape needs 3"), "{err}");
}

per_backend!(adds, partial_views, rejects_short_inputs);
