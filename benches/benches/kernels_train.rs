//! Training-kernel benchmarks, per available backend (CPU always; CUDA and wgpu when present —
//! wgpu includes software adapters such as lavapipe, whose figures are not GPU figures):
//!
//! 1. `rmsnorm_bwd` over [4096 × 4096]: moves ≥ 16 B/element (reads dy, x, dx; writes dx).
//! 2. `target_logprob_bwd` over [64 × 151 936] (a Qwen vocabulary, one target per row, with the
//!    entropy term): ≥ 8 B/element (reads logits, writes dlogits; the kernel reads logits three
//!    times, so this is a lower bound on its traffic).
//! 3. `adamw` over 100M parameters on CUDA, 10M elsewhere: 32 B/element (reads θ, g, m, v,
//!    mask; writes θ, m, v).
//!
//! Each prints its effective bandwidth (bytes above / median time of 5 synchronized runs) before
//! criterion times it. Run: `cargo bench -p treepo-benches --bench kernels_train`.

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use treepo_kernels::ops::{self, AdamWParams, LogprobTargets};
use treepo_kernels::{BackendKind, Buffer, Device};

fn devices() -> Vec<Device> {
    let mut out = vec![Device::cpu()];
    for kind in [BackendKind::Cuda, BackendKind::Wgpu] {
        match Device::new(kind) {
            Ok(d) => out.push(d),
            Err(e) => println!("SKIP {kind}: {e}"),
        }
    }
    out
}

fn buf(dev: &Device, n: usize, seed: u32) -> Buffer<f32> {
    // Cheap deterministic values in [-1, 1): no zeros, no NaN.
    let v: Vec<f32> = (0..n)
        .map(|i| {
            let h = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed.wrapping_mul(97));
            (h >> 8) as f32 / (1u32 << 23) as f32 - 1.0
        })
        .collect();
    match dev.upload(&v) {
        Ok(b) => b,
        Err(e) => panic!("upload of {n} floats on {}: {e}", dev.description()),
    }
}

/// Median seconds of 5 synchronized runs of `f` (after one warm-up).
fn median_secs(dev: &Device, f: &mut dyn FnMut()) -> f64 {
    f();
    sync(dev);
    let mut t: Vec<f64> = (0..5)
        .map(|_| {
            let s = Instant::now();
            f();
            sync(dev);
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[2]
}

fn sync(dev: &Device) {
    if let Err(e) = dev.synchronize() {
        panic!("synchronize: {e}");
    }
}

fn report(dev: &Device, what: &str, bytes: f64, secs: f64) {
    println!(
        "{:<8} {what:<42} {:>9.3} ms  {:>8.1} GB/s",
        dev.kind().name(),
        secs * 1e3,
        bytes / secs / 1e9
    );
}

fn timed(c: &mut Criterion, dev: &Device, name: &str, bytes: f64, f: &mut dyn FnMut()) {
    report(dev, name, bytes, median_secs(dev, f));
    let mut g = c.benchmark_group(format!("kernels_train/{}", dev.kind().name()));
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let s = Instant::now();
            for _ in 0..iters {
                f();
            }
            sync(dev);
            s.elapsed()
        })
    });
    g.finish();
}

fn ok(r: treepo_kernels::Result<()>) {
    if let Err(e) = r {
        panic!("{e}");
    }
}

fn bench(c: &mut Criterion) {
    treepo_benches::print_load_once();
    println!("\n== kernels_train: effective bandwidth (median of 5 synchronized runs) ==");
    for dev in devices() {
        println!("-- {}", dev.description());
        // 1. rmsnorm_bwd [4096 x 4096].
        let (rows, dim) = (4096usize, 4096usize);
        let n = rows * dim;
        let (dy, x, w) = (buf(&dev, n, 1), buf(&dev, n, 2), buf(&dev, dim, 3));
        let rstd = buf(&dev, rows, 4);
        let (mut dx, mut dw) = (buf(&dev, n, 5), buf(&dev, dim, 6));
        timed(c, &dev, "rmsnorm_bwd 4096x4096", 16.0 * n as f64, &mut || {
            ok(ops::rmsnorm_bwd(&dev, &dy, &x, &w, &rstd, &mut dx, &mut dw, rows, dim))
        });
        drop((dy, x, dx));

        // 2. target_logprob_bwd [64 x 151936], one target per row, entropy term on.
        let (rows, vocab) = (64usize, 151_936usize);
        let n = rows * vocab;
        let logits = buf(&dev, n, 7);
        let row_ptr: Vec<i32> = (0..=rows as i32).collect();
        let tokens: Vec<i32> = (0..rows as i32).map(|r| (r * 2371) % vocab as i32).collect();
        let targets = match LogprobTargets::upload(&dev, &row_ptr, &tokens, vocab) {
            Ok(t) => t,
            Err(e) => panic!("{e}"),
        };
        let (g, ge) = (buf(&dev, rows, 8), buf(&dev, rows, 9));
        let mut dl = buf(&dev, n, 10);
        timed(c, &dev, "target_logprob_bwd 64x151936", 8.0 * n as f64, &mut || {
            ok(ops::target_logprob_bwd(
                &dev,
                &logits,
                &targets,
                &g,
                Some(ge.view()),
                &mut dl,
                rows,
                vocab,
                1.0,
            ))
        });
        drop((logits, dl));

        // 3. adamw: 100M parameters on CUDA, 10M elsewhere.
        let n = if dev.kind() == BackendKind::Cuda { 100_000_000 } else { 10_000_000 };
        let (mut p, grad, mut m) = (buf(&dev, n, 11), buf(&dev, n, 12), buf(&dev, n, 13));
        let mut v = match dev.full(n, 0.25f32) {
            Ok(b) => b,
            Err(e) => panic!("{e}"),
        };
        let decay = match dev.full(n, 1.0f32) {
            Ok(b) => b,
            Err(e) => panic!("{e}"),
        };
        let hp = AdamWParams {
            lr: 1e-6,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.1,
            step: 10,
        };
        let name = format!("adamw {}M params", n / 1_000_000);
        timed(c, &dev, &name, 32.0 * n as f64, &mut || {
            ok(ops::adamw(&dev, &mut p, &grad, &mut m, &mut v, &decay, &hp, n))
        });
    }
    println!();
}

criterion_group!(benches, bench);
criterion_main!(benches);
