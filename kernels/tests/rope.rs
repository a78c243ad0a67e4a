//! Conformance of `ops::rope` against a direct f64 implementation of HF's formula
//! `q·cos + rotate_half(q)·sin`, on strided views of a fused QKV buffer, with arbitrary
//! (non-monotone) positions; inverse round trips; HF's `inv_freq`.

use treepo_kernels::ops::{
    ROPE_MAX_POSITION, RopeDirection, RopeScaling, RopeShape, rope, rope_inv_freq,
};
use treepo_kernels::testing::{Rng, Tol, assert_close};
use treepo_kernels::{Device, Indices, per_backend};

/// HF: `cos = cat(freqs, freqs).cos()`, `rotate_half(x) = cat(-x2, x1)`,
/// `out = x·cos + rotate_half(x)·sin`, with `freqs = f32(pos) · inv_freq` computed in f32 as
/// HF does; cos/sin and the rest in f64. `sign = -1` rotates by `-angle`.
fn reference(x: &[f32], pos: &[i32], inv: &[f32], s: &RopeShape, sign: f64) -> Vec<f64> {
    let mut out: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    let (d, half) = (s.head_dim, s.head_dim / 2);
    for (t, &p) in pos.iter().enumerate().take(s.tokens) {
        let emb: Vec<f64> = (0..d).map(|k| (p as f32 * inv[k % half]) as f64).collect();
        for h in 0..s.num_heads {
            let o = t * s.token_stride + h * s.head_stride;
            let q: Vec<f64> = x[o..o + d].iter().map(|&v| v as f64).collect();
            let rot: Vec<f64> =
                (0..d).map(|k| if k < half { -q[k + half] } else { q[k - half] }).collect();
            for k in 0..d {
                out[o + k] = q[k] * emb[k].cos() + rot[k] * sign * emb[k].sin();
            }
        }
    }
    out
}

fn positions(rng: &mut Rng, tokens: usize) -> Vec<i32> {
    // Tree depths: arbitrary order, repeats, 0 and values near the maximum.
    let mut p: Vec<i32> = (0..tokens).map(|_| rng.below(60_000) as i32).collect();
    p[0] = 0;
    if tokens > 2 {
        p[1] = (ROPE_MAX_POSITION - 1) as i32;
        p[2] = p[tokens - 1];
    }
    if tokens > 4 {
        p[3] = 1;
        p[4] = rng.below(ROPE_MAX_POSITION) as i32;
    }
    p
}

fn run(
    dev: &Device,
    x: &[f32],
    pos: &[i32],
    inv: &[f32],
    s: &RopeShape,
    dir: RopeDirection,
) -> Vec<f32> {
    let mut dx = dev.upload(x).unwrap();
    let dp = Indices::upload(dev, pos, ROPE_MAX_POSITION).unwrap();
    let df = dev.upload(inv).unwrap();
    rope(dev, &mut dx, &dp, &df, s, dir).unwrap();
    dev.download(&dx).unwrap()
}

fn rotates_like_hf(dev: &Device) {
    let mut rng = Rng::fresh("rope");
    let llama = RopeScaling::Llama3 {
        factor: 32.0,
        low_freq_factor: 1.0,
        high_freq_factor: 4.0,
        original_max_position_embeddings: 8192,
    };
    // (tokens, heads, head_dim, theta, scaling): a single pair, off-tile sizes, Qwen and Llama
    // head dims, a non-power-of-two head_dim.
    for (tokens, heads, d, theta, scaling) in [
        (1usize, 1usize, 2usize, 10_000.0f32, RopeScaling::None),
        (37, 3, 64, 1e6, RopeScaling::None),
        (5, 2, 128, 5e5, llama),
        (9, 4, 6, 10_000.0, RopeScaling::None),
        (300, 2, 64, 5e5, llama),
    ] {
        let s = RopeShape::contiguous(tokens, heads, d);
        let x = rng.normals(tokens * heads * d, 2.0);
        let pos = positions(&mut rng, tokens);
        let inv = rope_inv_freq(d, theta, scaling).unwrap();
        for (dir, sign) in [(RopeDirection::Forward, 1.0), (RopeDirection::Inverse, -1.0)] {
            let got = run(dev, &x, &pos, &inv, &s, dir);
            let want = reference(&x, &pos, &inv, &s, sign);
            let err = assert_close(
                &format!("rope {dir:?} tokens={tokens} heads={heads} d={d}"),
                &got,
                &want,
                Tol { atol: 2e-6, rtol: 2e-6 },
            );
            eprintln!("rope {dir:?} {tokens}x{heads}x{d}: max err {err:e}");
        }
    }
}

fn rotates_views_of_fused_qkv(dev: &Device) {
    // [tokens, (nH + 2·nKV)·D + pad]: Q and K are strided views; V and the padding must not move.
    let mut rng = Rng::fresh("rope qkv");
    let (tokens, nh, nkv, d, pad) = (13usize, 4usize, 2usize, 16usize, 3usize);
    let width = (nh + 2 * nkv) * d + pad;
    let qkv = rng.normals(tokens * width, 1.0);
    let pos = positions(&mut rng, tokens);
    let inv = rope_inv_freq(d, 1e6, RopeScaling::None).unwrap();
    let mut buf = dev.upload(&qkv).unwrap();
    let dp = Indices::upload(dev, &pos, ROPE_MAX_POSITION).unwrap();
    let df = dev.upload(&inv).unwrap();
    let qs = RopeShape { tokens, num_heads: nh, head_dim: d, token_stride: width, head_stride: d };
    let ks = RopeShape { num_heads: nkv, ..qs };
    let q_len = qs.extent().unwrap();
    let k_len = ks.extent().unwrap();
    rope(dev, buf.slice_mut(0..q_len).unwrap(), &dp, &df, &qs, RopeDirection::Forward).unwrap();
    rope(
        dev,
        buf.slice_mut(nh * d..nh * d + k_len).unwrap(),
        &dp,
        &df,
        &ks,
        RopeDirection::Forward,
    )
    .unwrap();
    let got = dev.download(&buf).unwrap();
    let mut want = reference(&qkv, &pos, &inv, &qs, 1.0);
    let k_want = reference(&qkv[nh * d..], &pos, &inv, &ks, 1.0);
    for t in 0..tokens {
        for c in 0..nkv * d {
            let i = t * width + nh * d + c;
            want[i] = k_want[i - nh * d];
        }
    }
    assert_close("rope fused qkv", &got, &want, Tol { atol: 1e-6, rtol: 2e-6 });
    for t in 0..tokens {
        let rest = t * width + (nh + nkv) * d..(t + 1) * width;
        for i in rest {
            assert_eq!(got[i].to_bits(), qkv[i].to_bits(), "V/padding element {i} changed");
        }
    }
    // Heads with gaps between them (head_stride > head_dim): the gaps stay untouched.
    let s = RopeShape { tokens: 3, num_heads: 2, head_dim: 4, token_stride: 13, head_stride: 6 };
    let x = rng.normals(s.extent().unwrap(), 1.0);
    let got = run(
        dev,
        &x,
        &[7, 0, 3],
        &rope_inv_freq(4, 100.0, RopeScaling::None).unwrap(),
        &s,
        RopeDirection::Forward,
    );
    let want =
        reference(&x, &[7, 0, 3], &rope_inv_freq(4, 100.0, RopeScaling::None).unwrap(), &s, 1.0);
    assert_close("rope gaps", &got, &want, Tol { atol: 1e-6, rtol: 2e-6 });
}

fn inverse_round_trips(dev: &Device) {
    let mut rng = Rng::fresh("rope inverse");
    let (tokens, heads, d) = (50, 3, 128);
    let s = RopeShape::contiguous(tokens, heads, d);
    let x = rng.normals(tokens * heads * d, 3.0);
    let pos = positions(&mut rng, tokens);
    let inv = rope_inv_freq(d, 1e6, RopeScaling::None).unwrap();
    let mut dx = dev.upload(&x).unwrap();
    let dp = Indices::upload(dev, &pos, ROPE_MAX_POSITION).unwrap();
    let df = dev.upload(&inv).unwrap();
    rope(dev, &mut dx, &dp, &df, &s, RopeDirection::Forward).unwrap();
    rope(dev, &mut dx, &dp, &df, &s, RopeDirection::Inverse).unwrap();
    let back = dev.download(&dx).unwrap();
    let want: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    let err =
        assert_close("rope inverse(forward(x))", &back, &want, Tol { atol: 4e-6, rtol: 2e-6 });
    eprintln!("rope round trip: max err {err:e}");
}

fn host_only_inv_freq() {
    // Default: 1 / θ^(2j/D) in f32, checked against f64 within 2 ulp.
    for (d, theta) in [(64usize, 1e6f32), (128, 5e5), (2, 10_000.0), (6, 10_000.0)] {
        let inv = rope_inv_freq(d, theta, RopeScaling::None).unwrap();
        assert_eq!(inv.len(), d / 2);
        assert_eq!(inv[0], 1.0);
        for (j, &f) in inv.iter().enumerate() {
            let want = 1.0 / (theta as f64).powf(2.0 * j as f64 / d as f64);
            assert!(((f as f64) - want).abs() <= 2.5e-7 * want, "inv_freq[{j}] {f} vs {want}");
        }
    }
    // Llama-3.2-1B: head_dim 64, θ 5e5, factor 32, low 1, high 4, original 8192.
    let base = rope_inv_freq(64, 5e5, RopeScaling::None).unwrap();
    let inv = rope_inv_freq(
        64,
        5e5,
        RopeScaling::Llama3 {
            factor: 32.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 8192,
        },
    )
    .unwrap();
    let (mut hi, mut lo, mut mid) = (0, 0, 0);
    for (j, (&f, &b)) in inv.iter().zip(&base).enumerate() {
        let wavelen = 2.0 * std::f64::consts::PI / b as f64;
        if wavelen < 2048.0 {
            assert_eq!(f, b, "high frequency {j} unchanged");
            hi += 1;
        } else if wavelen > 8192.0 {
            assert_eq!(f, b / 32.0, "low frequency {j} divided by the factor");
            lo += 1;
        } else {
            let s = (8192.0 / wavelen - 1.0) / 3.0;
            let want = (1.0 - s) * b as f64 / 32.0 + s * b as f64;
            assert!(
                ((f as f64) - want).abs() <= 1e-6 * want,
                "medium frequency {j}: {f} vs {want}"
            );
            mid += 1;
        }
    }
    assert!(hi > 0 && lo > 0 && mid > 0, "all three bands occur ({hi}, {mid}, {lo})");
    for (d, theta, what) in
        [(7usize, 1e4f32, "even"), (0, 1e4, "even"), (8, 0.0, "theta"), (8, f32::NAN, "theta")]
    {
        let err = rope_inv_freq(d, theta, RopeScaling::None).unwrap_err();
        assert!(err.to_string().contains(what), "{err}");
    }
    let bad = RopeScaling::Llama3 {
        factor: 8.0,
        low_freq_factor: 4.0,
        high_freq_factor: 1.0,
        original_max_position_embeddings: 8192,
    };
    let err = rope_inv_freq(8, 1e4, bad).unwrap_err();
    assert!(err.to_string().contains("low_freq_factor < high_freq_factor"), "{err}");
}

#[test]
fn inv_freq_matches_hf() {
    host_only_inv_freq();
}

fn rejects_bad_args(dev: &Device) {
    let mut x = dev.zeros::<f32>(64).unwrap();
    let pos = Indices::upload(dev, &[0, 1], 2).unwrap();
    let inv = dev.upload(&[1.0f32; 4]).unwrap();
    let fwd = RopeDirection::Forward;
    let msg = |s: RopeShape, x: &mut treepo_kernels::Buffer<f32>| {
        rope(dev, x, &pos, &inv, &s, fwd).unwrap_err().to_string()
    };
    let e = msg(RopeShape::contiguous(2, 2, 7), &mut x);
    assert!(e.contains("head_dim = 7 must be even"), "{e}");
    let e = msg(RopeShape { head_stride: 4, ..RopeShape::contiguous(2, 2, 8) }, &mut x);
    assert!(e.contains("heads would overlap"), "{e}");
    let e = msg(RopeShape { token_stride: 8, ..RopeShape::contiguous(2, 2, 8) }, &mut x);
    assert!(e.contains("tokens would overlap"), "{e}");
    let e = msg(RopeShape::contiguous(2, 5, 8), &mut x);
    assert!(e.contains("`x` holds 64 elements but the shape needs 80"), "{e}");
    let e = msg(RopeShape::contiguous(3, 2, 8), &mut x);
    assert!(e.contains("`positions` holds 2 elements but the shape needs 3"), "{e}");
    let e = msg(RopeShape::contiguous(1, 1, 10), &mut x);
    assert!(e.contains("`inv_freq` holds 4 elements but the shape needs 5"), "{e}");
    let far = Indices::upload(dev, &[0, 1], ROPE_MAX_POSITION + 1).unwrap();
    let e = rope(dev, &mut x, &far, &inv, &RopeShape::contiguous(2, 2, 8), fwd).unwrap_err();
    assert!(e.to_string().contains("RoPE positions must be < 1048576"), "{e}");
}

per_backend!(rotates_like_hf, rotates_views_of_fused_qkv, inverse_round_trips, rejects_bad_args);
