//! Conformance of `ops::target_logprob` and `LogprobTargets`: an f64 reference over CSR targets
//! with 0, 1 and several targets per row (repeats included), large (±1e4) and masked (−inf)
//! logits, a 151 936-token vocabulary, offsets, NaN-poisoned outputs and bad input.

use treepo_kernels::ops::LogprobTargets;
use treepo_kernels::testing::{Rng, Tol, assert_close, poisoned};
use treepo_kernels::{Device, ops, per_backend};

/// (log p of every token, entropy) of one row in f64.
fn reference_row(row: &[f32], scale: f32) -> (Vec<f64>, f64) {
    let z: Vec<f64> = row.iter().map(|&l| scale as f64 * l as f64).collect();
    let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let s: f64 = z.iter().filter(|v| v.is_finite()).map(|v| (v - m).exp()).sum();
    let logp: Vec<f64> = z.iter().map(|v| v - m - s.ln()).collect();
    let h = -logp.iter().filter(|v| v.is_finite()).map(|lp| lp.exp() * lp).sum::<f64>();
    (logp, h)
}

fn reference(
    logits: &[f32],
    row_ptr: &[i32],
    tokens: &[i32],
    vocab: usize,
    scale: f32,
) -> (Vec<f64>, Vec<f64>) {
    let mut logp = vec![0f64; tokens.len()];
    let mut ent = Vec::new();
    for (r, row) in logits.chunks(vocab).enumerate() {
        let (lp, h) = reference_row(row, scale);
        for i in row_ptr[r] as usize..row_ptr[r + 1] as usize {
            logp[i] = lp[tokens[i] as usize];
        }
        ent.push(h);
    }
    (logp, ent)
}

/// Runs the op with every buffer viewed at offset `off`; returns (logp, entropy).
fn run(
    dev: &Device,
    logits: &[f32],
    row_ptr: &[i32],
    tokens: &[i32],
    vocab: usize,
    scale: f32,
    off: usize,
) -> (Vec<f32>, Vec<f32>) {
    let rows = row_ptr.len() - 1;
    let mut padded = vec![1.0f32; off];
    padded.extend_from_slice(logits);
    let bl = dev.upload(&padded).unwrap();
    let t = LogprobTargets::upload(dev, row_ptr, tokens, vocab).unwrap();
    assert_eq!((t.rows(), t.len(), t.vocab()), (rows, tokens.len(), vocab));
    let nt = tokens.len();
    let mut lp = poisoned::<f32>(dev, off + nt + 1).unwrap();
    let mut h = poisoned::<f32>(dev, off + rows + 1).unwrap();
    ops::target_logprob(
        dev,
        bl.slice(off..off + rows * vocab).unwrap(),
        &t,
        lp.slice_mut(off..off + nt).unwrap(),
        Some(h.slice_mut(off..off + rows).unwrap()),
        rows,
        vocab,
        scale,
    )
    .unwrap();
    let (lp_all, h_all) = (dev.download(&lp).unwrap(), dev.download(&h).unwrap());
    assert!(
        lp_all[..off].iter().chain(&lp_all[off + nt..]).all(|v| v.is_nan()),
        "logp written outside its view"
    );
    assert!(
        h_all[..off].iter().chain(&h_all[off + rows..]).all(|v| v.is_nan()),
        "entropy written outside its view"
    );
    // Without the entropy the log-probs are the same.
    let mut lp2 = poisoned::<f32>(dev, nt).unwrap();
    ops::target_logprob(
        dev,
        bl.slice(off..off + rows * vocab).unwrap(),
        &t,
        &mut lp2,
        None,
        rows,
        vocab,
        scale,
    )
    .unwrap();
    let lp2 = dev.download(&lp2).unwrap();
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&lp2), bits(&lp_all[off..off + nt]), "logp differs without entropy");
    (lp_all[off..off + nt].to_vec(), h_all[off..off + rows].to_vec())
}

#[allow(clippy::too_many_arguments)]
fn check(
    dev: &Device,
    what: &str,
    logits: &[f32],
    row_ptr: &[i32],
    tokens: &[i32],
    vocab: usize,
    scale: f32,
    off: usize,
    tol: Tol,
) {
    let (lp, h) = run(dev, logits, row_ptr, tokens, vocab, scale, off);
    let (wlp, wh) = reference(logits, row_ptr, tokens, vocab, scale);
    let e1 = assert_close(&format!("{what} logp"), &lp, &wlp, tol);
    let e2 = assert_close(&format!("{what} entropy"), &h, &wh, tol);
    eprintln!("{what}: max err logp {e1:e} entropy {e2:e}");
}

fn csr_rows(dev: &Device) {
    let mut rng = Rng::fresh("target_logprob");
    // Rows with 0, 1, 3 (one repeated), 0, 2 and 1 targets; the last row has none.
    let counts = [0usize, 1, 3, 0, 2, 1, 0];
    let vocab = 1000;
    let rows = counts.len();
    let mut row_ptr = vec![0i32];
    let mut tokens = Vec::new();
    for &c in &counts {
        for k in 0..c {
            tokens.push(if k == 2 { tokens[tokens.len() - 2] } else { rng.below(vocab) as i32 });
        }
        row_ptr.push(tokens.len() as i32);
    }
    let logits = rng.normals(rows * vocab, 3.0);
    let tol = Tol { atol: 1e-5, rtol: 1e-5 };
    check(dev, "csr T=1", &logits, &row_ptr, &tokens, vocab, 1.0, 0, tol);
    check(dev, "csr T=0.7", &logits, &row_ptr, &tokens, vocab, 1.0 / 0.7, 3, tol);
    // No targets at all: entropies only.
    check(dev, "no targets", &logits, &vec![0; rows + 1], &[], vocab, 1.0, 1, tol);
    // One column.
    check(dev, "vocab 1", &[0.5, -2.0], &[0, 1, 2], &[0, 0], 1, 1.0, 0, tol);
}

fn large_and_masked_logits(dev: &Device) {
    let mut rng = Rng::fresh("target_logprob large/masked");
    let vocab = 777;
    // Row 0: ±1e4 logits; row 1: half masked; row 2: one finite logit (p = 1, H = 0).
    let mut logits: Vec<f32> = (0..vocab)
        .map(|_| (if rng.uniform() < 0.5 { 1e4f32 } else { -1e4 }) * rng.uniform() as f32)
        .collect();
    logits.extend(
        (0..vocab).map(|j| if j % 2 == 0 { f32::NEG_INFINITY } else { rng.normal() as f32 }),
    );
    logits.extend((0..vocab).map(|j| if j == 5 { 3.0 } else { f32::NEG_INFINITY }));
    let argmax = (0..vocab).max_by(|&a, &b| logits[a].total_cmp(&logits[b])).unwrap() as i32;
    let row_ptr = [0, 3, 5, 6];
    let tokens = [argmax, 1, 2, 1, 3, 5];
    // log p of row 0 reaches −2e4 (f32 spacing 2e-3 there): relative tolerance.
    let tol = Tol { atol: 1e-5, rtol: 1e-6 };
    check(dev, "large/masked", &logits, &row_ptr, &tokens, vocab, 1.0, 2, tol);
    let (lp, h) = run(dev, &logits, &row_ptr, &tokens, vocab, 1.0, 0);
    assert_eq!((lp[5], h[2]), (0.0, 0.0), "a single finite logit has p = 1 and H = 0");
    assert!(h.iter().all(|v| v.is_finite()), "entropies {h:?}");
}

fn qwen_vocab_row(dev: &Device) {
    let mut rng = Rng::fresh("target_logprob 151936");
    let vocab = 151_936;
    let logits = rng.normals(vocab, 4.0);
    let tokens: Vec<i32> =
        (0..5).map(|_| rng.below(vocab) as i32).chain([vocab as i32 - 1]).collect();
    check(
        dev,
        "vocab 151936",
        &logits,
        &[0, 6],
        &tokens,
        vocab,
        1.25,
        1,
        Tol { atol: 2e-5, rtol: 2e-5 },
    );
}

/// A NaN logit poisons its row (log-probs and entropy), never silently dropped; other rows are
/// unaffected.
fn nan_logit_poisons_its_row(dev: &Device) {
    let mut rng = Rng::fresh("target_logprob NaN");
    let vocab = 300;
    let mut logits = rng.normals(2 * vocab, 1.0);
    logits[vocab + 123] = f32::NAN;
    logits[vocab + 7] = f32::NEG_INFINITY;
    let (row_ptr, tokens) = ([0, 2, 4], [1, 2, 7, 200]);
    let (lp, h) = run(dev, &logits, &row_ptr, &tokens, vocab, 1.0, 0);
    assert!(
        lp[2..].iter().all(|v| v.is_nan()) && h[1].is_nan(),
        "NaN row: logp {lp:?} entropy {h:?}"
    );
    let (wlp, wh) = reference(&logits[..vocab], &row_ptr[..2], &tokens[..2], vocab, 1.0);
    assert_close("clean row logp", &lp[..2], &wlp, Tol { atol: 1e-5, rtol: 1e-5 });
    assert_close("clean row entropy", &h[..1], &wh, Tol { atol: 1e-5, rtol: 1e-5 });
}

fn rejects_bad_targets(dev: &Device) {
    let cases: [(&[i32], &[i32], &str); 6] = [
        (&[], &[], "row_ptr is empty"),
        (&[1, 2], &[3, 4], "row_ptr[0] = 1 but must be 0"),
        (
            &[0, 2, 1, 3],
            &[1, 2, 3],
            "row_ptr[2] = 1 < row_ptr[1] = 2: row_ptr must be non-decreasing",
        ),
        (&[0, 1, 3], &[1, 2], "row_ptr[2] = 3 but 2 tokens were given"),
        (&[0, 1, 3], &[1, 2, 50], "tokens[2] = 50 is outside [0, 50)"),
        (&[0, 2], &[0, -1], "tokens[1] = -1 is outside [0, 50)"),
    ];
    for (rp, tk, msg) in cases {
        let err = LogprobTargets::upload(dev, rp, tk, 50).unwrap_err();
        assert!(err.to_string().contains(msg), "{rp:?} {tk:?}: {err}");
    }
}

fn rejects_bad_args(dev: &Device) {
    let logits = dev.zeros::<f32>(100).unwrap();
    let t = LogprobTargets::upload(dev, &[0, 1, 3], &[1, 2, 3], 50).unwrap();
    let mut lp = dev.zeros::<f32>(3).unwrap();
    let mut short = dev.zeros::<f32>(2).unwrap();
    let e = |r: treepo_kernels::Result<()>| r.unwrap_err().to_string();
    let err = e(ops::target_logprob(dev, &logits, &t, &mut lp, None, 3, 10, 1.0));
    assert!(err.contains("targets have 2 rows but rows = 3"), "{err}");
    let err = e(ops::target_logprob(dev, &logits, &t, &mut lp, None, 2, 40, 1.0));
    assert!(err.contains("targets were checked against vocab 50 > 40"), "{err}");
    let err = e(ops::target_logprob(dev, &logits, &t, &mut lp, None, 2, 51, 1.0));
    assert!(err.contains("`logits` holds 100 elements but the shape needs 102"), "{err}");
    let err = e(ops::target_logprob(dev, &logits, &t, &mut short, None, 2, 50, 1.0));
    assert!(err.contains("`logp` holds 2 elements but the shape needs 3"), "{err}");
    let mut h = dev.zeros::<f32>(1).unwrap();
    let err = e(ops::target_logprob(dev, &logits, &t, &mut lp, Some(h.view_mut()), 2, 50, 1.0));
    assert!(err.contains("`entropy` holds 1 elements but the shape needs 2"), "{err}");
    for s in [0.0, -1.0, f32::NAN, f32::INFINITY] {
        let err = e(ops::target_logprob(dev, &logits, &t, &mut lp, None, 2, 50, s));
        assert!(err.contains("must be finite and > 0"), "scale {s}: {err}");
    }
    let err = e(ops::target_logprob(dev, &logits, &t, &mut lp, None, 2, 0, 1.0));
    assert!(err.contains("vocab must be > 0"), "{err}");
}

per_backend!(
    csr_rows,
    large_and_masked_logits,
    qwen_vocab_row,
    nan_logit_poisons_its_row,
    rejects_bad_targets,
    rejects_bad_args
);
