//! Conformance of `ops::rmsnorm_bwd`: the closed form in f64, central finite differences of the
//! f64 forward, accumulation into non-zero dx/dw, determinism of dw, offsets, bad input.

use treepo_kernels::testing::{Rng, Tol, assert_close};
use treepo_kernels::{Device, ops, per_backend};

const EPS: f64 = 1e-6;

fn rstd_f64(row: &[f32]) -> f64 {
    let ms = row.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / row.len() as f64;
    1.0 / (ms + EPS).sqrt()
}

/// Closed form: (dx, dw) gradients (without the start values).
fn reference(dy: &[f32], x: &[f32], w: &[f32], dim: usize) -> (Vec<f64>, Vec<f64>) {
    let mut dx = Vec::with_capacity(x.len());
    let mut dw = vec![0f64; dim];
    for (dyr, xr) in dy.chunks(dim).zip(x.chunks(dim)) {
        let r = rstd_f64(xr);
        let g: Vec<f64> = dyr.iter().zip(w).map(|(&d, &wv)| d as f64 * wv as f64).collect();
        let mean = g.iter().zip(xr).map(|(g, &xv)| g * xv as f64).sum::<f64>() / dim as f64;
        for j in 0..dim {
            dx.push(r * (g[j] - xr[j] as f64 * r * r * mean));
            dw[j] += dyr[j] as f64 * xr[j] as f64 * r;
        }
    }
    (dx, dw)
}

/// L = Σ dy ⊙ rmsnorm(x, w) in f64.
fn loss(dy: &[f32], x: &[f64], w: &[f64], dim: usize) -> f64 {
    let mut l = 0.0;
    for (r, xr) in x.chunks(dim).enumerate() {
        let ms = xr.iter().map(|v| v * v).sum::<f64>() / dim as f64;
        let inv = 1.0 / (ms + EPS).sqrt();
        for j in 0..dim {
            l += dy[r * dim + j] as f64 * xr[j] * inv * w[j];
        }
    }
    l
}

struct Out {
    dx: Vec<f32>,
    dw: Vec<f32>,
}

/// Runs the op on views at offset `off` of padded buffers; dx/dw start at `dx0`/`dw0`.
#[allow(clippy::too_many_arguments)]
fn run(
    dev: &Device,
    dy: &[f32],
    x: &[f32],
    w: &[f32],
    dx0: &[f32],
    dw0: &[f32],
    rows: usize,
    dim: usize,
    off: usize,
) -> Out {
    let pad = |v: &[f32]| -> Vec<f32> {
        let mut p = vec![3.0f32; off];
        p.extend_from_slice(v);
        p.push(-3.0);
        p
    };
    let rstd: Vec<f32> = x.chunks(dim).map(|r| rstd_f64(r) as f32).collect();
    let (bdy, bx, bw, br) = (
        dev.upload(&pad(dy)).unwrap(),
        dev.upload(&pad(x)).unwrap(),
        dev.upload(&pad(w)).unwrap(),
        dev.upload(&pad(&rstd)).unwrap(),
    );
    let (mut bdx, mut bdw) = (dev.upload(&pad(dx0)).unwrap(), dev.upload(&pad(dw0)).unwrap());
    let n = rows * dim;
    ops::rmsnorm_bwd(
        dev,
        bdy.slice(off..off + n).unwrap(),
        bx.slice(off..off + n).unwrap(),
        bw.slice(off..off + dim).unwrap(),
        br.slice(off..off + rows).unwrap(),
        bdx.slice_mut(off..off + n).unwrap(),
        bdw.slice_mut(off..off + dim).unwrap(),
        rows,
        dim,
    )
    .unwrap();
    let (dx, dw) = (dev.download(&bdx).unwrap(), dev.download(&bdw).unwrap());
    assert_eq!(dx[..off], pad(dx0)[..off], "dx written before the view");
    assert_eq!(dx[off + n], -3.0, "dx written after the view");
    assert_eq!(dw[off + dim], -3.0, "dw written after the view");
    Out { dx: dx[off..off + n].to_vec(), dw: dw[off..off + dim].to_vec() }
}

fn accumulates_closed_form(dev: &Device) {
    let mut rng = Rng::fresh("rmsnorm_bwd");
    // 1 row, odd sizes, a very wide row, large magnitudes, more rows than GPU chunks.
    for (rows, dim, scale, off) in [
        (1usize, 1usize, 1.0, 0usize),
        (7, 33, 1.0, 5),
        (3, 5000, 2.0, 1),
        (5, 64, 1e3, 0),
        (1100, 40, 1.0, 2),
    ] {
        let n = rows * dim;
        let (x, dy, w) = (rng.normals(n, scale), rng.normals(n, 1.0), rng.normals(dim, 1.0));
        let (dx0, dw0) = (rng.normals(n, 1.0), rng.normals(dim, 1.0));
        let out = run(dev, &dy, &x, &w, &dx0, &dw0, rows, dim, off);
        let (gdx, gdw) = reference(&dy, &x, &w, dim);
        let want_dx: Vec<f64> = gdx.iter().zip(&dx0).map(|(g, &s)| s as f64 + g).collect();
        let want_dw: Vec<f64> = gdw.iter().zip(&dw0).map(|(g, &s)| s as f64 + g).collect();
        let what = format!("rmsnorm_bwd rows={rows} dim={dim} scale={scale}");
        // dx is O(r·|g|): scale its tolerance by 1/scale (r ~ 1/scale).
        let e1 =
            assert_close(&format!("{what} dx"), &out.dx, &want_dx, Tol { atol: 2e-5, rtol: 5e-5 });
        let e2 = assert_close(
            &format!("{what} dw"),
            &out.dw,
            &want_dw,
            Tol { atol: 2e-5 * (rows as f64).sqrt(), rtol: 5e-5 },
        );
        eprintln!("{what}: max err dx {e1:e} dw {e2:e}");
        // The dw reduction is deterministic.
        let again = run(dev, &dy, &x, &w, &dx0, &dw0, rows, dim, off);
        assert_eq!(again.dw, out.dw, "{what}: dw differs between identical calls");
        assert_eq!(again.dx, out.dx, "{what}: dx differs between identical calls");
    }
}

fn matches_finite_differences(dev: &Device) {
    let mut rng = Rng::fresh("rmsnorm_bwd fd");
    let (rows, dim) = (3usize, 7usize);
    let n = rows * dim;
    let (x, dy, w) = (rng.normals(n, 1.5), rng.normals(n, 1.0), rng.normals(dim, 1.0));
    let zeros = (vec![0f32; n], vec![0f32; dim]);
    let out = run(dev, &dy, &x, &w, &zeros.0, &zeros.1, rows, dim, 0);
    let xf: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    let wf: Vec<f64> = w.iter().map(|&v| v as f64).collect();
    let h = 1e-6;
    let fd_dx: Vec<f64> = (0..n)
        .map(|i| {
            let (mut p, mut m) = (xf.clone(), xf.clone());
            p[i] += h;
            m[i] -= h;
            (loss(&dy, &p, &wf, dim) - loss(&dy, &m, &wf, dim)) / (2.0 * h)
        })
        .collect();
    let fd_dw: Vec<f64> = (0..dim)
        .map(|j| {
            let (mut p, mut m) = (wf.clone(), wf.clone());
            p[j] += h;
            m[j] -= h;
            (loss(&dy, &xf, &p, dim) - loss(&dy, &xf, &m, dim)) / (2.0 * h)
        })
        .collect();
    let tol = Tol { atol: 1e-4, rtol: 1e-4 };
    assert_close("rmsnorm_bwd dx vs finite differences", &out.dx, &fd_dx, tol);
    assert_close("rmsnorm_bwd dw vs finite differences", &out.dw, &fd_dw, tol);
}

fn rejects_bad_args(dev: &Device) {
    let a = dev.zeros::<f32>(8).unwrap();
    let w = dev.zeros::<f32>(4).unwrap();
    let r = dev.zeros::<f32>(1).unwrap();
    let mut dx = dev.zeros::<f32>(8).unwrap();
    let mut dw = dev.zeros::<f32>(4).unwrap();
    let err = ops::rmsnorm_bwd(dev, &a, &a, &w, &r, &mut dx, &mut dw, 2, 4).unwrap_err();
    assert!(err.to_string().contains("`rstd` holds 1 elements but the shape needs 2"), "{err}");
    let err = ops::rmsnorm_bwd(dev, &a, &a, &w, &r, &mut dx, &mut dw, 1, 0).unwrap_err();
    assert!(err.to_string().contains("dim must be > 0"), "{err}");
    let err = ops::rmsnorm_bwd(dev, &a, &a, &w, &r, &mut dx, &mut dw, 1, 8).unwrap_err();
    assert!(err.to_string().contains("`w` holds 4 elements but the shape needs 8"), "{err}");
}

per_backend!(accumulates_closed_form, matches_finite_differences, rejects_bad_args);
