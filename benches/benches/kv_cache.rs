//! Paged KV cache writes on every available backend, as bandwidth (bytes read + written):
//!
//! - `paged_kv_append`: one layer's K and V of 1024 tokens × 8 KV heads × 128 dims written into
//!   shuffled slots of an HND pool (page 16) — what the model does once per layer per step;
//! - `page_copy`: 64 copy-on-write jobs (4 parents' tail pages, 15 rows each, forked into 16
//!   children) over 28 layers, K and V, in one launch — what a TreePO fork of unaligned nodes
//!   costs. The pool holds just those 68 pages (f16: 119 MiB, under lavapipe's 128 MiB storage
//!   binding limit; f32 exceeds it and is skipped there with the op's error printed).
//!
//! Criterion reports the throughput as `thrpt` in decimal GB/s. GPU timings include a
//! synchronize per iteration (launch latency included). Run with
//! `cargo bench -p treepo-benches --bench kv_cache` (CPU always; wgpu on any adapter, lavapipe
//! included; CUDA when a driver and a device are present).

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use treepo_kernels::ops::{self, PageCopyJobs, PagedKvLayout};
use treepo_kernels::testing::Rng;
use treepo_kernels::{BackendKind, DType, Device, FloatElement, Indices, f16};

const TOKENS: usize = 1024;
const HEADS: usize = 8;
const DIM: usize = 128;
const PAGE: usize = 16;
const LAYERS: usize = 28;
const PARENTS: usize = 4;
const CHILDREN: usize = 16;
const ROWS: usize = 15;

/// Every backend that opens here; the others are named with the reason.
fn devices() -> Vec<Device> {
    let mut out = Vec::new();
    for kind in [BackendKind::Cpu, BackendKind::Wgpu, BackendKind::Cuda] {
        match Device::new(kind) {
            Ok(d) => out.push(d),
            Err(e) => eprintln!("kv_cache: SKIP {kind}: {e}"),
        }
    }
    out
}

fn runs(dev: &Device, dtype: DType) -> bool {
    match dev.kind() {
        BackendKind::Cpu | BackendKind::Cuda => true,
        BackendKind::Wgpu => dtype == DType::F32 || (dtype == DType::F16 && dev.supports_f16()),
    }
}

fn random<T: FloatElement>(rng: &mut Rng, n: usize) -> Vec<T> {
    (0..n).map(|_| T::from_f32(rng.normal() as f32 + 0.125)).collect()
}

fn append<T: FloatElement>(c: &mut Criterion, dev: &Device) {
    if !runs(dev, T::DTYPE) {
        eprintln!("kv_cache: SKIP paged_kv_append {} on {}", T::DTYPE, dev.description());
        return;
    }
    let pages = 2 * TOKENS / PAGE;
    let l = PagedKvLayout::hnd(1, pages, HEADS, PAGE, DIM);
    let mut rng = Rng::new(0x5eed);
    let mut cache = dev.upload(&random::<T>(&mut rng, l.required_len().unwrap())).unwrap();
    let k = dev.upload(&random::<T>(&mut rng, TOKENS * HEADS * DIM)).unwrap();
    let v = dev.upload(&random::<T>(&mut rng, TOKENS * HEADS * DIM)).unwrap();
    // The batch fills half the pool's pages, in shuffled page order.
    let perm = rng.permutation(pages);
    let slots: Vec<i32> = (0..TOKENS).map(|i| (perm[i / PAGE] * PAGE + i % PAGE) as i32).collect();
    let ix = Indices::upload(dev, &slots, l.num_slots()).unwrap();
    let e = T::DTYPE.size();
    let bytes = 2 * (2 * TOKENS * HEADS * DIM * e) + TOKENS * 4;
    let mut g = c.benchmark_group("paged_kv_append");
    g.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::BytesDecimal(bytes as u64));
    g.bench_function(format!("{}/{}/{TOKENS}x{HEADS}x{DIM}", dev.kind(), T::DTYPE), |b| {
        b.iter(|| {
            ops::paged_kv_append(dev, &mut cache, &l, 0, &k, &v, &ix).unwrap();
            dev.synchronize().unwrap();
        })
    });
    g.finish();
}

fn copy<T: FloatElement>(c: &mut Criterion, dev: &Device) {
    if !runs(dev, T::DTYPE) {
        eprintln!("kv_cache: SKIP page_copy {} on {}", T::DTYPE, dev.description());
        return;
    }
    let jobs_n = PARENTS * CHILDREN;
    let pages = PARENTS + jobs_n;
    let l = PagedKvLayout::hnd(LAYERS, pages, HEADS, PAGE, DIM);
    let mut rng = Rng::new(0xc0c0);
    let mut cache = dev.upload(&random::<T>(&mut rng, l.required_len().unwrap())).unwrap();
    let perm = rng.permutation(pages);
    let jobs: Vec<(u32, u32, u32)> = (0..jobs_n)
        .map(|j| (perm[j / CHILDREN] as u32, perm[PARENTS + j] as u32, ROWS as u32))
        .collect();
    let dj = PageCopyJobs::upload(dev, &jobs, &l).unwrap();
    if let Err(e) = ops::page_copy(dev, &mut cache, &l, &dj) {
        eprintln!("kv_cache: SKIP page_copy {} on {}: {e}", T::DTYPE, dev.description());
        return;
    }
    let e = T::DTYPE.size();
    let bytes = 2 * (jobs_n * LAYERS * 2 * HEADS * ROWS * DIM * e) + jobs_n * 12;
    let mut g = c.benchmark_group("page_copy");
    g.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::BytesDecimal(bytes as u64));
    g.bench_function(format!("{}/{}/{jobs_n}jobs_x{LAYERS}layers", dev.kind(), T::DTYPE), |b| {
        b.iter(|| {
            ops::page_copy(dev, &mut cache, &l, &dj).unwrap();
            dev.synchronize().unwrap();
        })
    });
    g.finish();
}

fn kv_cache(c: &mut Criterion) {
    treepo_benches::print_load_once();
    for dev in devices() {
        eprintln!("kv_cache: {}", dev.description());
        append::<f32>(c, &dev);
        append::<f16>(c, &dev);
        copy::<f32>(c, &dev);
        copy::<f16>(c, &dev);
    }
}

criterion_group!(benches, kv_cache);
criterion_main!(benches);
