//! Conformance of `ops::sample`, the composed logits → token step: greedy (lowest index on
//! ties), and temperature + top-k + top-p checked stage by stage in f64.

use treepo_kernels::ops::{SampleParams, sample};
use treepo_kernels::testing::{Rng, Tol, assert_close, poisoned};
use treepo_kernels::{Device, per_backend};

struct Out {
    logits: Vec<f32>,
    probs: Vec<f32>,
    tokens: Vec<i32>,
    logprobs: Vec<f32>,
    entropy: Vec<f32>,
}

fn run(dev: &Device, x: &[f32], u: &[f32], vocab: usize, params: &SampleParams) -> Out {
    let rows = u.len();
    let mut dl = dev.upload(x).unwrap();
    let mut dp = poisoned::<f32>(dev, rows * vocab).unwrap();
    let du = dev.upload(u).unwrap();
    let mut dt = poisoned::<i32>(dev, rows).unwrap();
    let mut dlp = poisoned::<f32>(dev, rows).unwrap();
    let mut de = poisoned::<f32>(dev, rows).unwrap();
    sample(dev, &mut dl, &mut dp, &du, &mut dt, &mut dlp, Some(de.view_mut()), rows, vocab, params)
        .unwrap();
    Out {
        logits: dev.download(&dl).unwrap(),
        probs: dev.download(&dp).unwrap(),
        tokens: dev.download(&dt).unwrap(),
        logprobs: dev.download(&dlp).unwrap(),
        entropy: dev.download(&de).unwrap(),
    }
}

fn greedy_is_the_lowest_argmax(dev: &Device) {
    let mut rng = Rng::fresh("sample greedy");
    let (rows, vocab) = (4, 1001);
    let mut x = rng.normals(rows * vocab, 3.0);
    // Row 0: a unique max at 700. Row 1: the max tied at 10, 500 and 999. Row 2: max at 0.
    // Row 3: masked entries and the max at the last index.
    x[700] = 50.0;
    for i in [10, 500, 999] {
        x[vocab + i] = 40.0;
    }
    x[2 * vocab] = 30.0;
    for v in x[3 * vocab..].iter_mut().step_by(2) {
        *v = f32::NEG_INFINITY;
    }
    x[4 * vocab - 1] = 20.0;
    let u: Vec<f32> = (0..rows).map(|_| rng.uniform() as f32).collect();
    let o = run(dev, &x, &u, vocab, &SampleParams::greedy());
    assert_eq!(o.tokens, vec![700, 10, 0, vocab as i32 - 1]);
    let ln3 = 3f64.ln();
    assert_close(
        "greedy logprob",
        &o.logprobs,
        &[0.0, -ln3, 0.0, 0.0],
        Tol { atol: 1e-6, rtol: 1e-6 },
    );
    assert_close(
        "greedy entropy",
        &o.entropy,
        &[0.0, ln3, 0.0, 0.0],
        Tol { atol: 1e-6, rtol: 1e-6 },
    );
    assert_eq!(o.probs[700], 1.0);
    assert_eq!(o.probs[vocab + 500], o.probs[vocab + 10]);
}

/// Checks every stage of a temperature / top-k / top-p step against f64.
fn check_stages(x: &[f32], u: &[f32], vocab: usize, p: &SampleParams, o: &Out, what: &str) {
    let scale = p.scale();
    for (r, row) in x.chunks(vocab).enumerate() {
        let masked = &o.logits[r * vocab..(r + 1) * vocab];
        // Top-k: nothing below the k-th largest value survives; entries survive unchanged.
        let mut sorted = row.to_vec();
        sorted.sort_by(|a, b| b.partial_cmp(a).unwrap());
        let kth =
            if p.top_k > 0 && p.top_k < vocab { sorted[p.top_k - 1] } else { f32::NEG_INFINITY };
        for (i, (&m, &v)) in masked.iter().zip(row).enumerate() {
            assert!(
                m == f32::NEG_INFINITY || m.to_bits() == v.to_bits(),
                "{what} row {r}: [{i}] changed"
            );
            if v < kth {
                assert_eq!(m, f32::NEG_INFINITY, "{what} row {r}: [{i}] below the top-k");
            }
        }
        // Processed distribution = softmax of the masked, scaled logits.
        let z: Vec<f64> = masked.iter().map(|&v| (scale * v) as f64).collect();
        let mz = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let lse = mz + z.iter().map(|&v| (v - mz).exp()).sum::<f64>().ln();
        let want: Vec<f64> = z.iter().map(|&v| (v - lse).exp()).collect();
        let probs = &o.probs[r * vocab..(r + 1) * vocab];
        assert_close(
            &format!("{what} probs row {r}"),
            probs,
            &want,
            Tol { atol: 1e-9, rtol: 2e-5 },
        );
        // Top-p kept mass (of the top-k survivors) reaches top_p.
        if p.top_p < 1.0 {
            let kept: f64 = want.iter().sum();
            assert!((kept - 1.0).abs() < 1e-6);
        }
        // The token lies in the CDF interval of u on the returned probs; log-prob, entropy.
        let t = o.tokens[r];
        assert!(
            t >= 0 && (t as usize) < vocab && probs[t as usize] > 0.0,
            "{what} row {r}: token {t}"
        );
        let c: f64 = probs[..t as usize].iter().map(|&v| v as f64).sum();
        let total: f64 = probs.iter().map(|&v| v as f64).sum();
        let target = u[r] as f64 * total;
        assert!(
            c <= target + 1e-5 && c + probs[t as usize] as f64 >= target - 1e-5,
            "{what} row {r}: token {t} CDF interval"
        );
        let h: f64 = -want.iter().filter(|&&q| q > 0.0).map(|&q| q * q.ln()).sum::<f64>();
        assert_close(
            &format!("{what} logprob row {r}"),
            &o.logprobs[r..r + 1],
            &[z[t as usize] - lse],
            Tol { atol: 2e-5, rtol: 1e-6 },
        );
        assert_close(
            &format!("{what} entropy row {r}"),
            &o.entropy[r..r + 1],
            &[h],
            Tol { atol: 2e-5, rtol: 2e-5 },
        );
    }
}

fn samples_processed_distribution(dev: &Device) {
    let mut rng = Rng::fresh("sample");
    for (rows, vocab, params) in [
        (1usize, 1usize, SampleParams::temperature(1.0)),
        (5, 1000, SampleParams::temperature(0.7)),
        (5, 1000, SampleParams { temperature: 1.3, top_k: 20, top_p: 1.0 }),
        (6, 777, SampleParams { temperature: 0.6, top_k: 0, top_p: 0.9 }),
        (4, 2049, SampleParams { temperature: 1.0, top_k: 50, top_p: 0.8 }),
        (2, 151_936, SampleParams { temperature: 0.8, top_k: 100, top_p: 0.95 }),
    ] {
        let x = rng.normals(rows * vocab, 3.0);
        let u: Vec<f32> = (0..rows).map(|_| rng.uniform() as f32).collect();
        let o = run(dev, &x, &u, vocab, &params);
        check_stages(&x, &u, vocab, &params, &o, &format!("{rows}x{vocab} {params:?}"));
    }
}

fn matches_the_cpu_sampler(dev: &Device) {
    // Same inputs, same tokens as the CPU pipeline (draws near a CDF edge aside: none here,
    // with overwhelming probability, for continuous random inputs).
    let mut rng = Rng::fresh("sample vs cpu");
    let (rows, vocab) = (16, 3001);
    let x = rng.normals(rows * vocab, 2.5);
    let u: Vec<f32> = (0..rows).map(|_| rng.uniform() as f32).collect();
    let params = SampleParams { temperature: 0.9, top_k: 200, top_p: 0.9 };
    let got = run(dev, &x, &u, vocab, &params);
    let want = run(&Device::cpu(), &x, &u, vocab, &params);
    let same = got.tokens.iter().zip(&want.tokens).filter(|(a, b)| a == b).count();
    assert!(same >= rows - 1, "tokens {:?} vs cpu {:?}", got.tokens, want.tokens);
}

fn rejects_bad_args(dev: &Device) {
    let mut l = dev.zeros::<f32>(6).unwrap();
    let mut p = dev.zeros::<f32>(6).unwrap();
    let u = dev.zeros::<f32>(2).unwrap();
    let mut t = dev.zeros::<i32>(2).unwrap();
    let mut lp = dev.zeros::<f32>(2).unwrap();
    let mut go = |params: SampleParams, rows: usize| {
        sample(dev, &mut l, &mut p, &u, &mut t, &mut lp, None, rows, 3, &params)
            .unwrap_err()
            .to_string()
    };
    assert!(
        go(SampleParams::temperature(-1.0), 2).contains("temperature = -1 must be finite and >= 0")
    );
    assert!(go(SampleParams::temperature(f32::NAN), 2).contains("must be finite"));
    assert!(go(SampleParams::temperature(1e-39), 2).contains("1/temperature overflows"));
    assert!(go(SampleParams { temperature: 1.0, top_k: 0, top_p: f32::NAN }, 2).contains("top_p"));
    assert!(
        go(SampleParams::temperature(1.0), 3)
            .contains("`logits` holds 6 elements but the shape needs 9")
    );
}

per_backend!(
    greedy_is_the_lowest_argmax,
    samples_processed_distribution,
    matches_the_cpu_sampler,
    rejects_bad_args
);
