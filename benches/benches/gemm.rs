//! GEMM GFLOP/s per backend: square 1024³ and 2048³, and the linear shape
//! `[M, 4096] × [11008, 4096]ᵀ` (an MLP up-projection), M = 4096 on CUDA. Other backends run
//! smaller cases (sizes are in the case names): the CPU M = 256 for the linear shape; wgpu
//! K = 2048 for it (a 180 MB weight exceeds the 128 MiB storage binding of common adapters); a
//! software wgpu adapter (lavapipe, ~0.05 GFLOP/s: 43 s for one 1024³ call) only 256³ and
//! `[16, 1024] × [2048, 1024]ᵀ`.

use treepo_benches::{Work, bench, criterion, devices, is_software};
use treepo_kernels::Device;
use treepo_kernels::ops::{GemmSpec, gemm};
use treepo_kernels::testing::Rng;

fn case(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    dev: &Device,
    name: &str,
    s: GemmSpec,
) {
    let mut rng = Rng::new(11);
    let a = dev.upload(&rng.normals(s.m * s.k, 1.0)).unwrap();
    let b = dev.upload(&rng.normals(s.k * s.n, 1.0)).unwrap();
    let mut c = dev.zeros::<f32>(s.m * s.n).unwrap();
    let id = format!("{} gemm {name} m={} n={} k={}", dev.kind(), s.m, s.n, s.k);
    bench(g, dev, &id, Work::Flops(s.flops()), || gemm(dev, &a, &b, &mut c, &s).unwrap());
}

fn main() {
    treepo_benches::print_load_once();
    let mut c = criterion();
    for dev in devices() {
        let mut g = c.benchmark_group(format!("gemm/{}", dev.kind()));
        let cuda = dev.kind() == treepo_kernels::BackendKind::Cuda;
        let wgpu = dev.kind() == treepo_kernels::BackendKind::Wgpu;
        if is_software(&dev) {
            case(&mut g, &dev, "square", GemmSpec::plain(256, 256, 256));
            case(&mut g, &dev, "linear", GemmSpec::linear(16, 2048, 1024));
        } else {
            case(&mut g, &dev, "square", GemmSpec::plain(1024, 1024, 1024));
            case(&mut g, &dev, "square", GemmSpec::plain(2048, 2048, 2048));
            let m = if cuda || wgpu { 4096 } else { 256 };
            let k = if wgpu { 2048 } else { 4096 };
            case(&mut g, &dev, "linear", GemmSpec::linear(m, 11008, k));
        }
        g.finish();
    }
    c.final_summary();
}
