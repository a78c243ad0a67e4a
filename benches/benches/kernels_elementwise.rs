//! Memory-bound kernels per backend: softmax over a 152k vocabulary, RMSNorm, RoPE, SwiGLU,
//! embedding gather and the full sampling step. Rates are bytes read + written once per call.
//! wgpu binds at most 128 MiB per storage buffer on common adapters, so its SwiGLU and
//! embedding cases are smaller; a software adapter (lavapipe) samples 8 rows instead of 64.
//! Sizes are in the case names.
//!
//! Before the criterion cases it prints, for the CPU's fast twins of SwiGLU, RoPE and RMSNorm's
//! reduction, the time per call of the fast twin and of its readable reference at the engine's
//! token-step shapes (64 rows of the demo model, C = 128, I = 384; and of the big one, C = 512,
//! I = 1536), single-threaded, best of 7 batches, with the ratio (`TWIN` lines). RoPE is timed
//! twice: at the positions of the previous call (the fast twin's table hit: every call of a
//! forward pass after the first) and at new positions every call (a miss).

use treepo_benches::{Work, bench, criterion, devices, is_software};
use treepo_kernels::ops::{self, RopeDirection, RopeScaling, RopeShape, SampleParams};
use treepo_kernels::testing::Rng;
use treepo_kernels::{Device, Indices};

const VOCAB: usize = 151_936;

fn run(c: &mut criterion::Criterion, dev: &Device) {
    let kind = dev.kind();
    let wgpu = kind == treepo_kernels::BackendKind::Wgpu;
    let mut rng = Rng::new(7);
    let mut g = c.benchmark_group(format!("elementwise/{kind}"));

    // softmax [64, 151936]
    let (rows, n) = (64, 64 * VOCAB);
    let x = dev.upload(&rng.normals(n, 3.0)).unwrap();
    let mut y = dev.zeros::<f32>(n).unwrap();
    bench(&mut g, dev, &format!("{kind} softmax 64x{VOCAB}"), Work::Bytes(8.0 * n as f64), || {
        ops::softmax(dev, &x, &mut y, rows, VOCAB, 1.0 / 0.7).unwrap()
    });

    // sample [64, 151936]: temperature, top-k 50, top-p 0.9 (logits re-uploaded per call are
    // not timed: masking in place is idempotent for fixed parameters).
    let rows = if is_software(dev) { 8 } else { 64 };
    let n = rows * VOCAB;
    let mut logits = dev.upload(&rng.normals(n, 3.0)).unwrap();
    let mut probs = dev.zeros::<f32>(n).unwrap();
    let u = dev.upload(&(0..rows).map(|_| rng.uniform() as f32).collect::<Vec<_>>()).unwrap();
    let mut tok = dev.zeros::<i32>(rows).unwrap();
    let mut lp = dev.zeros::<f32>(rows).unwrap();
    let p = SampleParams { temperature: 0.7, top_k: 50, top_p: 0.9 };
    bench(
        &mut g,
        dev,
        &format!("{kind} sample {rows}x{VOCAB} k50 p0.9"),
        Work::Bytes(8.0 * n as f64),
        || {
            ops::sample(dev, &mut logits, &mut probs, &u, &mut tok, &mut lp, None, rows, VOCAB, &p)
                .unwrap()
        },
    );
    let p = SampleParams::temperature(1.0);
    bench(
        &mut g,
        dev,
        &format!("{kind} sample {rows}x{VOCAB} plain"),
        Work::Bytes(8.0 * n as f64),
        || {
            ops::sample(dev, &mut logits, &mut probs, &u, &mut tok, &mut lp, None, rows, VOCAB, &p)
                .unwrap()
        },
    );
    drop((logits, probs, x, y));

    // rmsnorm [4096, 4096]
    let (rows, dim) = (4096, 4096);
    let x = dev.upload(&rng.normals(rows * dim, 1.0)).unwrap();
    let w = dev.upload(&rng.normals(dim, 1.0)).unwrap();
    let mut y = dev.zeros::<f32>(rows * dim).unwrap();
    bench(
        &mut g,
        dev,
        &format!("{kind} rmsnorm {rows}x{dim}"),
        Work::Bytes(8.0 * (rows * dim) as f64),
        || ops::rmsnorm(dev, &x, &w, &mut y, None, rows, dim, 1e-6).unwrap(),
    );
    drop((x, y));

    // rope on Q of a fused QKV buffer: 4096 tokens, 32 q heads + 2×8 kv heads, head_dim 128.
    let (tokens, nh, nkv, d) = (4096, 32, 8, 128);
    let width = (nh + 2 * nkv) * d;
    let mut qkv = dev.upload(&rng.normals(tokens * width, 1.0)).unwrap();
    let pos: Vec<i32> = (0..tokens).map(|_| rng.below(8192) as i32).collect();
    let pos = Indices::upload(dev, &pos, 8192).unwrap();
    let inv = dev.upload(&ops::rope_inv_freq(d, 5e5, RopeScaling::None).unwrap()).unwrap();
    let s = RopeShape { tokens, num_heads: nh, head_dim: d, token_stride: width, head_stride: d };
    let q_len = s.extent().unwrap();
    bench(
        &mut g,
        dev,
        &format!("{kind} rope q {tokens}x{nh}x{d}"),
        Work::Bytes(8.0 * (tokens * nh * d) as f64),
        || {
            ops::rope(dev, qkv.slice_mut(0..q_len).unwrap(), &pos, &inv, &s, RopeDirection::Forward)
                .unwrap()
        },
    );
    drop(qkv);

    // swiglu over [4096, 11008] ([2048, 11008] on wgpu)
    let tokens = if wgpu { 2048 } else { 4096 };
    let n = tokens * 11008;
    let a = dev.upload(&rng.normals(n, 1.0)).unwrap();
    let b = dev.upload(&rng.normals(n, 1.0)).unwrap();
    let mut o = dev.zeros::<f32>(n).unwrap();
    bench(
        &mut g,
        dev,
        &format!("{kind} swiglu {tokens}x11008"),
        Work::Bytes(12.0 * n as f64),
        || ops::swiglu(dev, &a, &b, &mut o, n).unwrap(),
    );
    drop((a, b, o));

    // embedding: 4096 tokens of a [151936, 1024] table ([151936, 128] on wgpu)
    let (tokens, dim) = (4096, if wgpu { 128 } else { 1024 });
    let table = dev.upload(&rng.normals(VOCAB * dim, 1.0)).unwrap();
    let ids: Vec<i32> = (0..tokens).map(|_| rng.below(VOCAB) as i32).collect();
    let ids = Indices::upload(dev, &ids, VOCAB).unwrap();
    let mut out = dev.zeros::<f32>(tokens * dim).unwrap();
    bench(
        &mut g,
        dev,
        &format!("{kind} embedding {tokens}x{dim}"),
        Work::Bytes(8.0 * (tokens * dim) as f64),
        || ops::embedding(dev, &table, &ids, &mut out, tokens, VOCAB, dim).unwrap(),
    );
    g.finish();
}

/// Best time per call (seconds) of `f`, over 7 batches of `reps` calls.
fn best(reps: usize, mut f: impl FnMut(usize)) -> f64 {
    (0..7)
        .map(|_| {
            let t = std::time::Instant::now();
            for i in 0..reps {
                f(i);
            }
            t.elapsed().as_secs_f64() / reps as f64
        })
        .fold(f64::INFINITY, f64::min)
}

/// One `TWIN` line: reference vs fast time per call.
fn twin_line(what: &str, reference: f64, fast: f64) {
    println!(
        "TWIN cpu {what}: reference {:.2} us, fast {:.2} us per call: {:.2}x",
        reference * 1e6,
        fast * 1e6,
        reference / fast
    );
}

/// The `TWIN` lines (module docs), on one thread.
fn twins() {
    use treepo_kernels::cpu::{fast, rmsnorm, rope, swiglu};
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("pool");
    pool.install(|| {
        let mut rng = Rng::new(11);
        for (c, i, heads, d) in [(128, 384, 4, 32), (512, 1536, 8, 64)] {
            let rows = 64;
            let (g, u) = (rng.normals(rows * i, 2.0), rng.normals(rows * i, 1.0));
            let mut o = vec![0f32; rows * i];
            let reference = best(200, |_| swiglu::swiglu(&g, &u, &mut o));
            let quick = best(200, |_| fast::swiglu::swiglu(&g, &u, &mut o));
            twin_line(&format!("swiglu {rows}x{i}"), reference, quick);

            let s = RopeShape::contiguous(rows, heads, d);
            let inv = ops::rope_inv_freq(d, 1e4, RopeScaling::None).expect("inv_freq");
            let mut x = rng.normals(rows * heads * d, 1.0);
            let pos: Vec<Vec<i32>> =
                (0..2).map(|k| (0..rows).map(|r| (r * 7 + k) as i32).collect()).collect();
            let fwd = RopeDirection::Forward;
            let reference = best(200, |_| rope::rope(&mut x, &pos[0], &inv, &s, fwd));
            let hit = best(200, |_| fast::rope::rope(&mut x, &pos[0], &inv, &s, fwd));
            let miss = best(200, |k| fast::rope::rope(&mut x, &pos[k % 2], &inv, &s, fwd));
            twin_line(&format!("rope {rows}x{heads}x{d}, table hit"), reference, hit);
            twin_line(&format!("rope {rows}x{heads}x{d}, table miss"), reference, miss);

            let (xn, w) = (rng.normals(rows * c, 1.0), rng.normals(c, 1.0));
            let mut y = vec![0f32; rows * c];
            let lanes = best(500, |_| rmsnorm::rmsnorm(&xn, &w, &mut y, None, c, 1e-6));
            // The reduction the norm had before its 16 lanes: one running sum per row.
            let serial = best(500, |_| {
                for (yr, xr) in y.chunks_mut(c).zip(xn.chunks(c)) {
                    let ss: f32 = xr.iter().map(|v| v * v).sum();
                    let inv = 1.0 / (ss / c as f32 + 1e-6).sqrt();
                    for ((yv, xv), wv) in yr.iter_mut().zip(xr).zip(&w) {
                        *yv = xv * inv * wv;
                    }
                }
            });
            twin_line(&format!("rmsnorm {rows}x{c} (one running sum vs 16 lanes)"), serial, lanes);
        }
    });
}

fn main() {
    treepo_benches::print_load_once();
    twins();
    let mut c = criterion();
    for dev in devices() {
        run(&mut c, &dev);
    }
    c.final_summary();
}
