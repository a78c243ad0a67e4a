//! GEMM GFLOP/s per backend: square 1024³ and 2048³, and the linear shape
//! `[M, 4096] × [11008, 4096]ᵀ` (an MLP up-projection), M = 4096 on CUDA. Slow backends run
//! smaller cases (printed in the case name): the CPU M = 256 for the linear shape; a software
//! wgpu adapter (lavapipe) 1024³ and M = 64 only.

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
    let mut c = criterion();
    for dev in devices() {
        let mut g = c.benchmark_group(format!("gemm/{}", dev.kind()));
        let cuda = dev.kind() == treepo_kernels::BackendKind::Cuda;
        let soft = is_software(&dev);
        case(&mut g, &dev, "square", GemmSpec::plain(1024, 1024, 1024));
        if !soft {
            case(&mut g, &dev, "square", GemmSpec::plain(2048, 2048, 2048));
        }
        let m = if cuda {
            4096
        } else if soft {
            64
        } else {
            256
        };
        case(&mut g, &dev, "linear", GemmSpec::linear(m, 11008, 4096));
        g.finish();
    }
    c.final_summary();
}
