//! Conformance of `ops::gemm` against an f64 triple loop, on every backend.

use treepo_kernels::ops::{GemmSpec, Transpose, gemm, pack_panels};
use treepo_kernels::testing::{Rng, Tol, assert_close, poisoned};
use treepo_kernels::{Device, per_backend};

/// f64 reference of `alpha·op(A)·op(B) + beta·C` over a batch.
fn reference(s: &GemmSpec, a: &[f32], b: &[f32], c0: &[f32]) -> Vec<f64> {
    let (ars, acs) = s.a_strides();
    let (brs, bcs) = s.b_strides();
    let mut out = vec![0f64; s.batch * s.stride_c];
    for bi in 0..s.batch {
        for i in 0..s.m {
            for j in 0..s.n {
                let mut acc = 0f64;
                for p in 0..s.k {
                    acc += a[bi * s.stride_a + i * ars + p * acs] as f64
                        * b[bi * s.stride_b + p * brs + j * bcs] as f64;
                }
                let ci = bi * s.stride_c + i * s.n + j;
                let prev = if s.beta == 0.0 { 0.0 } else { s.beta as f64 * c0[ci] as f64 };
                out[ci] = s.alpha as f64 * acc + prev;
            }
        }
    }
    out
}

fn check(dev: &Device, s: GemmSpec, rng: &mut Rng) {
    let a = rng.normals((s.batch - 1) * s.stride_a + s.m * s.k, 1.0);
    let b = rng.normals((s.batch - 1) * s.stride_b + s.k * s.n, 1.0);
    let c_len = (s.batch - 1) * s.stride_c + s.m * s.n;
    let (da, db) = (dev.upload(&a).unwrap(), dev.upload(&b).unwrap());
    // beta == 0 must ignore C entirely, so C starts poisoned (NaN); otherwise random.
    let (mut dc, c0) = if s.beta == 0.0 {
        (poisoned::<f32>(dev, c_len).unwrap(), vec![f32::NAN; c_len])
    } else {
        let c0 = rng.normals(c_len, 1.0);
        (dev.upload(&c0).unwrap(), c0)
    };
    gemm(dev, &da, &db, &mut dc, &s).unwrap();
    let got = dev.download(&dc).unwrap();
    let want = reference(&s, &a, &b, &c0);
    let tol = Tol { atol: 2e-5 * (s.k as f64).sqrt() * 4.0, rtol: 1e-4 };
    let err = assert_close(&format!("{s:?} on {}", dev.kind()), &got, &want, tol);
    eprintln!(
        "gemm m={} n={} k={} batch={} {:?}{:?}: max err {err:e}",
        s.m, s.n, s.k, s.batch, s.trans_a, s.trans_b
    );
}

fn shapes(dev: &Device) {
    let mut rng = Rng::fresh("gemm shapes");
    // Sizes not a multiple of any tile, a single row, a very wide row, a long inner dimension.
    for (m, n, k) in [(1, 1, 1), (17, 33, 65), (1, 4099, 7), (64, 48, 300), (5, 3, 1031)] {
        for (ta, tb) in [
            (Transpose::N, Transpose::T),
            (Transpose::N, Transpose::N),
            (Transpose::T, Transpose::N),
            (Transpose::T, Transpose::T),
        ] {
            check(dev, GemmSpec::new(m, n, k, ta, tb), &mut rng);
        }
    }
}

fn batched_and_scaled(dev: &Device) {
    let mut rng = Rng::fresh("gemm batched");
    check(dev, GemmSpec::linear(9, 13, 21).batched(3), &mut rng);
    check(
        dev,
        GemmSpec::new(7, 5, 16, Transpose::T, Transpose::N).batched(4).scaled(0.5, 1.0),
        &mut rng,
    );
    check(dev, GemmSpec::linear(33, 17, 40).scaled(-2.0, 0.25), &mut rng);
}

/// The engine's fused launches: two products sharing A (`stride_a = 0`), each B and C its own,
/// above and below the CPU's threshold for running the batches in parallel, with an odd row
/// count and with accumulation into C; and a single product of many rows.
fn shared_operand_batches(dev: &Device) {
    let mut rng = Rng::fresh("gemm shared operand");
    for (m, n, k, tb, beta) in [
        (64, 96, 80, Transpose::T, 0.0),
        (77, 64, 72, Transpose::N, 1.0),
        (33, 40, 64, Transpose::T, 1.0),
    ] {
        let mut s = GemmSpec::new(m, n, k, Transpose::N, tb).scaled(1.0, beta);
        s.batch = 2;
        s.stride_a = 0;
        s.stride_b = n * k;
        s.stride_c = m * n;
        check(dev, s, &mut rng);
    }
    check(dev, GemmSpec::linear(300, 40, 64), &mut rng);
}

fn views_with_offsets(dev: &Device) {
    // One parameter buffer with named views (llm.c layout): A and B live inside one buffer.
    let mut rng = Rng::fresh("gemm views");
    let (m, n, k) = (6, 10, 12);
    let params = rng.normals(3 + m * k + 5 + n * k, 1.0);
    let buf = dev.upload(&params).unwrap();
    let a = buf.slice(3..3 + m * k).unwrap();
    let b = buf.slice(3 + m * k + 5..params.len()).unwrap();
    let mut out = poisoned::<f32>(dev, 2 + m * n).unwrap();
    let s = GemmSpec::linear(m, n, k);
    gemm(dev, a, b, out.slice_mut(2..2 + m * n).unwrap(), &s).unwrap();
    let got = dev.download(out.slice(2..2 + m * n).unwrap()).unwrap();
    let want = reference(&s, &params[3..3 + m * k], &params[3 + m * k + 5..], &[]);
    assert_close("gemm through views", &got, &want, Tol { atol: 1e-4, rtol: 1e-4 });
}

fn rejects_bad_shapes(dev: &Device) {
    let a = dev.zeros::<f32>(6).unwrap();
    let b = dev.zeros::<f32>(6).unwrap();
    let mut c = dev.zeros::<f32>(4).unwrap();
    let mut short = dev.zeros::<f32>(3).unwrap();
    let err = gemm(dev, &a, &b, &mut short, &GemmSpec::linear(2, 2, 3)).unwrap_err();
    assert!(err.to_string().contains("`c` holds 3 elements but the shape needs 4"), "{err}");
    let err = gemm(dev, &a, &b, &mut c, &GemmSpec::linear(2, 3, 3)).unwrap_err();
    assert!(err.to_string().contains("`b` holds 6 elements but the shape needs 9"), "{err}");
    let err =
        gemm(dev, &a, &b, &mut c, &GemmSpec::linear(2, 2, 3).scaled(f32::NAN, 0.0)).unwrap_err();
    assert!(err.to_string().contains("alpha"), "{err}");
    let mut s = GemmSpec::linear(1, 2, 3).batched(2);
    s.stride_c = 1;
    let err = gemm(dev, &a, &b, &mut c, &s).unwrap_err();
    assert!(err.to_string().contains("would overlap"), "{err}");
}

/// B in panel order (`b_panels`, the CPU engine's packed weights): on the CPU against the f64
/// reference of the row-major B — single products of 1–131 rows (one and two threads by the
/// work threshold), the engine's fused pairs sharing A, accumulation into C; elsewhere, and
/// with a transposed operand or `n % 16 != 0`, a typed refusal.
fn panel_weights(dev: &Device) {
    let mut rng = Rng::fresh("gemm panels");
    let cpu = dev.kind() == treepo_kernels::BackendKind::Cpu;
    for (m, n, k, batch, beta) in [
        (1, 48, 40, 1, 0.0),
        (13, 400, 37, 1, 0.0),
        (64, 512, 300, 1, 0.5),
        (131, 96, 64, 1, 0.0),
        (64, 128, 128, 2, 0.0),
        (7, 32, 20, 2, 1.0),
    ] {
        let mut s = GemmSpec::plain(m, n, k).scaled(1.5, beta);
        s.batch = batch;
        s.stride_a = 0;
        s.stride_b = n * k;
        s.stride_c = m * n;
        let a = rng.normals(m * k, 1.0);
        let b = rng.normals(batch * k * n, 1.0);
        let c0 = if beta == 0.0 {
            vec![f32::NAN; batch * m * n]
        } else {
            rng.normals(batch * m * n, 1.0)
        };
        let packed: Vec<f32> =
            b.chunks(k * n).flat_map(|bi| pack_panels(bi, k, n).unwrap()).collect();
        let (da, db, mut dc) =
            (dev.upload(&a).unwrap(), dev.upload(&packed).unwrap(), dev.upload(&c0).unwrap());
        let res = gemm(dev, &da, &db, &mut dc, &s.with_b_panels());
        if !cpu {
            let err = res.unwrap_err().to_string();
            assert!(err.contains("b_panels") && err.contains("CPU layout"), "{err}");
            continue;
        }
        res.unwrap();
        let got = dev.download(&dc).unwrap();
        let want = reference(&s, &a, &b, &c0);
        let tol = Tol { atol: 2e-5 * (k as f64).sqrt() * 4.0, rtol: 1e-4 };
        let err = assert_close(&format!("{s:?} b_panels"), &got, &want, tol);
        eprintln!("gemm b_panels m={m} n={n} k={k} batch={batch}: max err {err:e}");
    }
    let (a, b) = (dev.zeros::<f32>(64).unwrap(), dev.zeros::<f32>(64).unwrap());
    let mut c = dev.zeros::<f32>(64).unwrap();
    for (s, what) in [
        (GemmSpec::linear(2, 16, 2), "trans_a = trans_b = N"),
        (GemmSpec::plain(2, 8, 2), "n % 16 == 0"),
    ] {
        let err = gemm(dev, &a, &b, &mut c, &s.with_b_panels()).unwrap_err().to_string();
        let want = if cpu { what } else { "CPU layout" };
        assert!(err.contains(want), "{err}");
    }
    let err = pack_panels(&[0.0; 24], 2, 12).unwrap_err().to_string();
    assert!(err.contains("not a multiple of 16"), "{err}");
    let err = pack_panels(&[0.0; 24], 2, 16).unwrap_err().to_string();
    assert!(err.contains("B has 24 elements"), "{err}");
}

/// Products while the workers poll (`PollingWorkers`), in a 4-thread pool: on the CPU, single
/// products of 32–256 rows and `k <= 512` then split into row blocks across the workers. Each
/// result matches f64 and has the same bits as without the hint (the row split is
/// bit-neutral, `cpu::gemm`); odd row counts (a 1-row last block is not split), `k` past 512
/// (not split), every transpose, `beta` zero (poisoned C) and not. Other backends ignore the
/// hint.
fn while_workers_poll(dev: &Device) {
    let mut rng = Rng::fresh("gemm polling");
    let pool = rayon::ThreadPoolBuilder::new().num_threads(4).build().unwrap();
    let shapes = [
        (32, 128, 128),
        (33, 48, 70),
        (64, 128, 384),
        (65, 16, 512),
        (100, 16, 300),
        (256, 64, 40),
        (64, 32, 600),
    ];
    for (m, n, k) in shapes {
        for (ta, tb) in [
            (Transpose::N, Transpose::N),
            (Transpose::N, Transpose::T),
            (Transpose::T, Transpose::N),
            (Transpose::T, Transpose::T),
        ] {
            for s in
                [GemmSpec::new(m, n, k, ta, tb), GemmSpec::new(m, n, k, ta, tb).scaled(0.5, 1.0)]
            {
                let a = rng.normals(m * k, 1.0);
                let b = rng.normals(k * n, 1.0);
                let c0 =
                    if s.beta == 0.0 { vec![f32::NAN; m * n] } else { rng.normals(m * n, 1.0) };
                let run = |hint: bool| {
                    let (da, db, mut dc) = (
                        dev.upload(&a).unwrap(),
                        dev.upload(&b).unwrap(),
                        dev.upload(&c0).unwrap(),
                    );
                    pool.install(|| {
                        let guard = hint.then(treepo_kernels::cpu::regions::PollingWorkers::start);
                        gemm(dev, &da, &db, &mut dc, &s).unwrap();
                        drop(guard);
                    });
                    dev.download(&dc).unwrap()
                };
                let (with, without) = (run(true), run(false));
                let tol = Tol { atol: 2e-5 * (k as f64).sqrt() * 4.0, rtol: 1e-4 };
                let err = assert_close(
                    &format!("{s:?} polling"),
                    &with,
                    &reference(&s, &a, &b, &c0),
                    tol,
                );
                let same = with.iter().zip(&without).all(|(x, y)| x.to_bits() == y.to_bits());
                assert!(same, "{s:?}: the polling hint changed the bits");
                eprintln!(
                    "gemm polling m={m} n={n} k={k} {ta:?}{tb:?} beta={}: max err {err:e}",
                    s.beta
                );
            }
        }
    }
}

per_backend!(
    while_workers_poll,
    panel_weights,
    shapes,
    batched_and_scaled,
    shared_operand_batches,
    views_with_offsets,
    rejects_bad_shapes
);
