//! Conformance of `ops::target_logprob_bwd`: the closed form in f64, central finite differences
//! of the f64 forward `L = Σ g_i·logp_i + Σ ge_r·H_r`, CSR rows with 0/1/several (repeated)
//! targets, large (±1e4) and masked (−inf) logits, a 151 936-token row, offsets, bad input.

use treepo_kernels::ops::LogprobTargets;
use treepo_kernels::testing::{Rng, Tol, assert_close, poisoned};
use treepo_kernels::{Device, ops, per_backend};

struct Case {
    logits: Vec<f32>,
    row_ptr: Vec<i32>,
    tokens: Vec<i32>,
    g: Vec<f32>,
    ge: Option<Vec<f32>>,
    vocab: usize,
    scale: f32,
}

impl Case {
    fn rows(&self) -> usize {
        self.row_ptr.len() - 1
    }
}

/// (log p, entropy) of one row in f64 from f64 logits.
fn row_fwd(row: &[f64], scale: f64) -> (Vec<f64>, f64) {
    let z: Vec<f64> = row.iter().map(|&l| scale * l).collect();
    let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let s: f64 = z.iter().filter(|v| v.is_finite()).map(|v| (v - m).exp()).sum();
    let logp: Vec<f64> = z.iter().map(|v| v - m - s.ln()).collect();
    let h = -logp.iter().filter(|v| v.is_finite()).map(|lp| lp.exp() * lp).sum::<f64>();
    (logp, h)
}

/// L = Σ g_i·logp_i + Σ ge_r·H_r in f64.
fn loss(c: &Case, logits: &[f64]) -> f64 {
    let mut l = 0.0;
    for (r, row) in logits.chunks(c.vocab).enumerate() {
        let (lp, h) = row_fwd(row, c.scale as f64);
        for i in c.row_ptr[r] as usize..c.row_ptr[r + 1] as usize {
            l += c.g[i] as f64 * lp[c.tokens[i] as usize];
        }
        if let Some(ge) = &c.ge {
            l += ge[r] as f64 * h;
        }
    }
    l
}

/// The closed form in f64.
fn reference(c: &Case) -> Vec<f64> {
    let s = c.scale as f64;
    let mut out = Vec::new();
    for (r, row) in c.logits.chunks(c.vocab).enumerate() {
        let row64: Vec<f64> = row.iter().map(|&v| v as f64).collect();
        let (lp, h) = row_fwd(&row64, s);
        let targets = c.row_ptr[r] as usize..c.row_ptr[r + 1] as usize;
        let g_sum: f64 = c.g[targets.clone()].iter().map(|&v| v as f64).sum();
        let mut d: Vec<f64> = lp
            .iter()
            .map(|&lp| {
                let p = lp.exp();
                let mut v = -s * g_sum * p;
                if let (Some(ge), true) = (&c.ge, lp.is_finite()) {
                    v += ge[r] as f64 * (-s * p * (lp + h));
                }
                v
            })
            .collect();
        for i in targets {
            d[c.tokens[i] as usize] += s * c.g[i] as f64;
        }
        out.extend(d);
    }
    out
}

/// Runs the op with every buffer viewed at offset `off`; returns dlogits.
fn run(dev: &Device, c: &Case, off: usize) -> Vec<f32> {
    let (rows, vocab, nt) = (c.rows(), c.vocab, c.tokens.len());
    let pad = |v: &[f32]| -> Vec<f32> {
        let mut p = vec![0.25f32; off];
        p.extend_from_slice(v);
        p
    };
    let bl = dev.upload(&pad(&c.logits)).unwrap();
    let bg = dev.upload(&pad(&c.g)).unwrap();
    let bge = c.ge.as_ref().map(|ge| dev.upload(&pad(ge)).unwrap());
    let t = LogprobTargets::upload(dev, &c.row_ptr, &c.tokens, vocab).unwrap();
    let mut dl = poisoned::<f32>(dev, off + rows * vocab + 1).unwrap();
    ops::target_logprob_bwd(
        dev,
        bl.slice(off..off + rows * vocab).unwrap(),
        &t,
        bg.slice(off..off + nt).unwrap(),
        bge.as_ref().map(|b| b.slice(off..off + rows).unwrap()),
        dl.slice_mut(off..off + rows * vocab).unwrap(),
        rows,
        vocab,
        c.scale,
    )
    .unwrap();
    let all = dev.download(&dl).unwrap();
    assert!(
        all[..off].iter().all(|v| v.is_nan()) && all[off + rows * vocab].is_nan(),
        "dlogits written outside its view"
    );
    all[off..off + rows * vocab].to_vec()
}

/// CSR rows with 0, 1, 3 (one repeated) and 2 targets, the last row without.
fn random_case(rng: &mut Rng, vocab: usize, scale: f32, entropy: bool) -> Case {
    let counts = [0usize, 1, 3, 2, 0];
    let mut row_ptr = vec![0i32];
    let mut tokens = Vec::new();
    for &c in &counts {
        for k in 0..c {
            tokens.push(if k == 2 { tokens[tokens.len() - 1] } else { rng.below(vocab) as i32 });
        }
        row_ptr.push(tokens.len() as i32);
    }
    let rows = counts.len();
    Case {
        logits: rng.normals(rows * vocab, 2.0),
        g: rng.normals(tokens.len(), 1.0),
        ge: entropy.then(|| rng.normals(rows, 1.0)),
        row_ptr,
        tokens,
        vocab,
        scale,
    }
}

const TOL: Tol = Tol { atol: 2e-6, rtol: 1e-4 };

fn matches_closed_form(dev: &Device) {
    let mut rng = Rng::fresh("target_logprob_bwd");
    for (vocab, scale, entropy, off) in [
        (1000usize, 1.0f32, false, 0usize),
        (1000, 1.0 / 0.7, true, 3),
        (37, 2.0, true, 1),
        (1, 1.0, true, 0),
    ] {
        let c = random_case(&mut rng, vocab, scale, entropy);
        let e = assert_close(
            &format!("dlogits vocab={vocab} scale={scale} entropy={entropy}"),
            &run(dev, &c, off),
            &reference(&c),
            TOL,
        );
        eprintln!("target_logprob_bwd vocab={vocab} entropy={entropy}: max err {e:e}");
    }
}

fn matches_finite_differences(dev: &Device) {
    let mut rng = Rng::fresh("target_logprob_bwd fd");
    for entropy in [false, true] {
        let c = random_case(&mut rng, 9, 1.0 / 0.8, entropy);
        let got = run(dev, &c, 0);
        let l64: Vec<f64> = c.logits.iter().map(|&v| v as f64).collect();
        let h = 1e-5;
        let fd: Vec<f64> = (0..l64.len())
            .map(|i| {
                let (mut p, mut m) = (l64.clone(), l64.clone());
                p[i] += h;
                m[i] -= h;
                (loss(&c, &p) - loss(&c, &m)) / (2.0 * h)
            })
            .collect();
        assert_close(
            &format!("dlogits vs finite differences (entropy {entropy})"),
            &got,
            &fd,
            Tol { atol: 1e-5, rtol: 1e-4 },
        );
    }
}

fn large_and_masked_logits(dev: &Device) {
    let mut rng = Rng::fresh("target_logprob_bwd large/masked");
    let vocab = 513;
    let mut logits: Vec<f32> = (0..vocab).map(|_| ((rng.uniform() - 0.5) * 2e4) as f32).collect();
    let masked: Vec<bool> = (0..vocab).map(|j| j % 3 == 1).collect();
    logits.extend(
        (0..vocab).map(|j| if masked[j] { f32::NEG_INFINITY } else { rng.normal() as f32 }),
    );
    let argmax = (0..vocab).max_by(|&a, &b| logits[a].total_cmp(&logits[b])).unwrap() as i32;
    let c = Case {
        logits,
        row_ptr: vec![0, 2, 4],
        tokens: vec![argmax, 7, 0, 2],
        g: rng.normals(4, 1.0),
        ge: Some(rng.normals(2, 1.0)),
        vocab,
        scale: 1.0,
    };
    let got = run(dev, &c, 2);
    assert_close("dlogits large/masked", &got, &reference(&c), TOL);
    for j in (0..vocab).filter(|&j| masked[j]) {
        assert_eq!(got[vocab + j], 0.0, "masked logit {j} got gradient {}", got[vocab + j]);
    }
}

fn qwen_vocab_row(dev: &Device) {
    let mut rng = Rng::fresh("target_logprob_bwd 151936");
    let vocab = 151_936;
    let tokens: Vec<i32> = (0..4).map(|_| rng.below(vocab) as i32).collect();
    let c = Case {
        logits: rng.normals(vocab, 4.0),
        row_ptr: vec![0, 4],
        g: rng.normals(4, 1.0),
        ge: Some(vec![0.5]),
        tokens,
        vocab,
        scale: 1.0,
    };
    assert_close(
        "dlogits vocab 151936",
        &run(dev, &c, 1),
        &reference(&c),
        Tol { atol: 1e-7, rtol: 1e-4 },
    );
}

/// A NaN logit makes its row's gradient NaN (except masked entries, which stay 0); other rows
/// are unaffected.
fn nan_logit_poisons_its_row(dev: &Device) {
    let mut rng = Rng::fresh("target_logprob_bwd NaN");
    let vocab = 300;
    let mut c = random_case(&mut rng, vocab, 1.0, true);
    let r = 2; // a row with targets
    c.logits[r * vocab + 42] = f32::NAN;
    c.logits[r * vocab + 43] = f32::NEG_INFINITY;
    let got = run(dev, &c, 0);
    for (j, v) in got[r * vocab..(r + 1) * vocab].iter().enumerate() {
        assert!(if j == 43 { *v == 0.0 } else { v.is_nan() }, "NaN row, column {j}: {v}");
    }
    let want = reference(&c);
    let clean: Vec<usize> = (0..c.rows() * vocab).filter(|i| i / vocab != r).collect();
    let g: Vec<f32> = clean.iter().map(|&i| got[i]).collect();
    let w: Vec<f64> = clean.iter().map(|&i| want[i]).collect();
    assert_close("dlogits of the clean rows", &g, &w, TOL);
}

fn rejects_bad_args(dev: &Device) {
    let logits = dev.zeros::<f32>(100).unwrap();
    let t = LogprobTargets::upload(dev, &[0, 1, 3], &[1, 2, 3], 50).unwrap();
    let g = dev.zeros::<f32>(3).unwrap();
    let short = dev.zeros::<f32>(1).unwrap();
    let mut dl = dev.zeros::<f32>(100).unwrap();
    let e = |r: treepo_kernels::Result<()>| r.unwrap_err().to_string();
    let err = e(ops::target_logprob_bwd(dev, &logits, &t, &short, None, &mut dl, 2, 50, 1.0));
    assert!(err.contains("`grad_logp` holds 1 elements but the shape needs 3"), "{err}");
    let err =
        e(ops::target_logprob_bwd(dev, &logits, &t, &g, Some(short.view()), &mut dl, 2, 50, 1.0));
    assert!(err.contains("`grad_entropy` holds 1 elements but the shape needs 2"), "{err}");
    let mut small = dev.zeros::<f32>(99).unwrap();
    let err = e(ops::target_logprob_bwd(dev, &logits, &t, &g, None, &mut small, 2, 50, 1.0));
    assert!(err.contains("`dlogits` holds 99 elements but the shape needs 100"), "{err}");
    let err = e(ops::target_logprob_bwd(dev, &logits, &t, &g, None, &mut dl, 1, 50, 1.0));
    assert!(err.contains("targets have 2 rows but rows = 1"), "{err}");
    let err = e(ops::target_logprob_bwd(dev, &logits, &t, &g, None, &mut dl, 2, 50, f32::NAN));
    assert!(err.contains("scale = NaN must be finite and > 0"), "{err}");
}

per_backend!(
    matches_closed_form,
    matches_finite_differences,
    large_and_masked_logits,
    qwen_vocab_row,
    nan_logit_poisons_its_row,
    rejects_bad_args
);
