//! Conformance of `ops::embedding_bwd`: f64 reference with many repeated ids, accumulation into
//! a non-zero table, bit-identical agreement with the CPU reference, finite differences of the
//! f64 forward (a row gather), several column tiles and id chunks, offsets, bad input.

use treepo_kernels::testing::{Rng, Tol, assert_close};
use treepo_kernels::{Device, Indices, ops, per_backend};

fn reference(dout: &[f32], ids: &[i32], table0: &[f32], dim: usize) -> Vec<f64> {
    let mut t: Vec<f64> = table0.iter().map(|&v| v as f64).collect();
    for (k, &id) in ids.iter().enumerate() {
        for j in 0..dim {
            t[id as usize * dim + j] += dout[k * dim + j] as f64;
        }
    }
    t
}

/// Runs on `dev` with dout/dtable views at offset `off`; returns the whole table.
fn run(
    dev: &Device,
    dout: &[f32],
    ids: &[i32],
    table0: &[f32],
    vocab: usize,
    dim: usize,
    off: usize,
) -> Vec<f32> {
    let tokens = ids.len();
    let mut pd = vec![9.0f32; off];
    pd.extend_from_slice(dout);
    let mut pt = vec![9.0f32; off];
    pt.extend_from_slice(table0);
    pt.push(-9.0);
    let bd = dev.upload(&pd).unwrap();
    let idx = Indices::upload(dev, ids, vocab).unwrap();
    let mut bt = dev.upload(&pt).unwrap();
    ops::embedding_bwd(
        dev,
        bd.slice(off..off + tokens * dim).unwrap(),
        &idx,
        bt.slice_mut(off..off + vocab * dim).unwrap(),
        tokens,
        vocab,
        dim,
    )
    .unwrap();
    let got = dev.download(&bt).unwrap();
    assert!(got[..off].iter().all(|&v| v == 9.0), "dtable written before the view");
    assert_eq!(got[off + vocab * dim], -9.0, "dtable written after the view");
    got[off..off + vocab * dim].to_vec()
}

fn accumulates_repeated_ids(dev: &Device) {
    let mut rng = Rng::fresh("embedding_bwd");
    // (tokens, vocab, dim, off): few ids (many repeats), > 256 tokens (several id chunks),
    // dim > 1024 and not a multiple of 256 (several column tiles), one token, one id for all.
    for (tokens, vocab, dim, off) in
        [(1usize, 1usize, 1usize, 0usize), (300, 10, 33, 3), (600, 700, 2500, 1), (77, 5000, 64, 0)]
    {
        let ids: Vec<i32> = (0..tokens).map(|_| rng.below(vocab) as i32).collect();
        let dout = rng.normals(tokens * dim, 1.0);
        let table0 = rng.normals(vocab * dim, 1.0);
        let got = run(dev, &dout, &ids, &table0, vocab, dim, off);
        let want = reference(&dout, &ids, &table0, dim);
        let what = format!("embedding_bwd tokens={tokens} vocab={vocab} dim={dim}");
        let e = assert_close(&what, &got, &want, Tol { atol: 1e-5, rtol: 1e-5 });
        eprintln!("{what}: max err {e:e}");
        // Bit-identical to the CPU reference (same order of f32 additions).
        let cpu = run(&Device::cpu(), &dout, &ids, &table0, vocab, dim, off);
        let same = got.iter().zip(&cpu).all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(same, "{what}: differs from the CPU reference bitwise");
    }
    // Every token on one id (the last), 520 tokens: one block sums them all.
    let (tokens, vocab, dim) = (520usize, 3usize, 300usize);
    let ids = vec![2i32; tokens];
    let dout = rng.normals(tokens * dim, 1.0);
    let table0 = rng.normals(vocab * dim, 1.0);
    let got = run(dev, &dout, &ids, &table0, vocab, dim, 0);
    assert_close(
        "embedding_bwd one id",
        &got,
        &reference(&dout, &ids, &table0, dim),
        Tol { atol: 1e-4, rtol: 1e-5 },
    );
}

/// L = Σ dout ⊙ table[ids] in f64; central differences on every table element.
fn matches_finite_differences(dev: &Device) {
    let mut rng = Rng::fresh("embedding_bwd fd");
    let (tokens, vocab, dim) = (9usize, 4usize, 3usize);
    let ids: Vec<i32> = (0..tokens).map(|_| rng.below(vocab) as i32).collect();
    let dout = rng.normals(tokens * dim, 1.0);
    let zeros = vec![0f32; vocab * dim];
    let got = run(dev, &dout, &ids, &zeros, vocab, dim, 0);
    let table: Vec<f64> = rng.normals(vocab * dim, 1.0).iter().map(|&v| v as f64).collect();
    let loss = |t: &[f64]| -> f64 {
        let mut l = 0.0;
        for (k, &id) in ids.iter().enumerate() {
            for j in 0..dim {
                l += dout[k * dim + j] as f64 * t[id as usize * dim + j];
            }
        }
        l
    };
    let h = 1e-3;
    let fd: Vec<f64> = (0..vocab * dim)
        .map(|i| {
            let (mut p, mut m) = (table.clone(), table.clone());
            p[i] += h;
            m[i] -= h;
            (loss(&p) - loss(&m)) / (2.0 * h)
        })
        .collect();
    assert_close("embedding_bwd vs finite differences", &got, &fd, Tol { atol: 1e-5, rtol: 1e-5 });
}

fn rejects_bad_args(dev: &Device) {
    let dout = dev.zeros::<f32>(12).unwrap();
    let ids = Indices::upload(dev, &[0, 1, 2, 3], 100).unwrap();
    let mut table = dev.zeros::<f32>(300).unwrap();
    let err = ops::embedding_bwd(dev, &dout, &ids, &mut table, 4, 50, 3).unwrap_err();
    assert!(err.to_string().contains("`ids` values may reach 99 but only 50 exist"), "{err}");
    let ids = Indices::upload(dev, &[0, 1, 2, 3], 50).unwrap();
    let err = ops::embedding_bwd(dev, &dout, &ids, &mut table, 5, 50, 3).unwrap_err();
    assert!(err.to_string().contains("`dout` holds 12 elements but the shape needs 15"), "{err}");
    let err = ops::embedding_bwd(dev, &dout, &ids, &mut table, 4, 101, 3).unwrap_err();
    assert!(
        err.to_string().contains("`dtable` holds 300 elements but the shape needs 303"),
        "{err}"
    );
    let err = ops::embedding_bwd(dev, &dout, &ids, &mut table, 4, 50, 0).unwrap_err();
    assert!(err.to_string().contains("dim must be > 0"), "{err}");
    let big = dev.zeros::<f32>(15).unwrap();
    let err = ops::embedding_bwd(dev, &big, &ids, &mut table, 5, 50, 3).unwrap_err();
    assert!(err.to_string().contains("`ids` holds 4 elements but the shape needs 5"), "{err}");
    // An id outside the vocabulary is refused when uploaded, naming its position.
    let err = Indices::upload(dev, &[0, 7, 50], 50).unwrap_err();
    assert!(err.to_string().contains("value 50 at position 2 is outside [0, 50)"), "{err}");
}

per_backend!(accumulates_repeated_ids, matches_finite_differences, rejects_bad_args);
