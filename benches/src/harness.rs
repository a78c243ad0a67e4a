//! Shared benchmark harness: criterion settings for a 2-core machine, the devices to run on
//! (CPU always; wgpu and CUDA when present, a `SKIP` line otherwise) and timing helpers.
use std::cell::Cell;
use std::sync::Once;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion};
use treepo_kernels::{AdapterPolicy, Device};

/// A 1-minute load average above this skews the printed ratios.
pub const LOAD_WARN: f64 = 1.5;

/// The 1-minute load average (`/proc/loadavg`), or `None` where it is unknown (other OSes, or
/// an unreadable file).
pub fn load_average() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/loadavg").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// The CPUs this process may run on.
pub fn cpu_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The `LOAD` line for `load` on `cpus` CPUs, plus a `WARNING` line above [`LOAD_WARN`].
pub fn load_lines(load: Option<f64>, cpus: usize) -> String {
    match load {
        Some(l) if l > LOAD_WARN => format!(
            "LOAD 1-min {l:.2} on {cpus} CPUs\nWARNING: load {l:.2} > {LOAD_WARN}: ratios below are \
             skewed (other jobs slow the naive and tree sides differently)"
        ),
        Some(l) => format!("LOAD 1-min {l:.2} on {cpus} CPUs"),
        None => format!("LOAD 1-min unknown (no /proc/loadavg on this OS) on {cpus} CPUs"),
    }
}

/// Prints the machine's load now ([`load_lines`]): benchmark figures taken under load from
/// other jobs are skewed, so every bench says what it ran under.
pub fn print_load() {
    println!("{}", load_lines(load_average(), cpu_count()));
}

/// [`print_load`] once per process: call it at the start of every bench function.
pub fn print_load_once() {
    static ONCE: Once = Once::new();
    ONCE.call_once(print_load);
}

/// Short runs: the development machine has two cores and lavapipe is slow.
pub fn criterion() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args()
}

/// The CPU, then wgpu and CUDA when present (a `SKIP` line for each absent one).
pub fn devices() -> Vec<Device> {
    let mut out = vec![Device::cpu()];
    match Device::wgpu(AdapterPolicy::AllowSoftware) {
        Ok(d) => out.push(d),
        Err(e) => eprintln!("SKIP wgpu: {e}"),
    }
    match Device::cuda(0) {
        Ok(d) => out.push(d),
        Err(e) => eprintln!("SKIP cuda: {e}"),
    }
    out
}

/// Whether `dev` is a software rasterizer (lavapipe): benches shrink their largest cases.
pub fn is_software(dev: &Device) -> bool {
    dev.description().contains("Cpu")
}

/// What a case's work is measured in.
#[derive(Clone, Copy, Debug)]
pub enum Work {
    /// Bytes read + written per call (printed as GB/s).
    Bytes(f64),
    /// Floating-point operations per call (printed as GFLOP/s).
    Flops(f64),
}

/// Benchmarks `f` (one call = one op, followed by a device synchronize) as `id` in `group` and
/// prints `RESULT id: <best ms/call>, <rate>` from the fastest criterion sample (nothing when a
/// command-line filter skipped the case).
pub fn bench(
    group: &mut BenchmarkGroup<'_, WallTime>,
    dev: &Device,
    id: &str,
    work: Work,
    mut f: impl FnMut(),
) {
    let best = Cell::new(f64::INFINITY);
    group.bench_function(id, |b| {
        b.iter_custom(|iters| {
            dev.synchronize().expect("synchronize");
            let t = Instant::now();
            for _ in 0..iters {
                f();
            }
            dev.synchronize().expect("synchronize");
            let el = t.elapsed();
            best.set(best.get().min(el.as_secs_f64() / iters as f64));
            el
        })
    });
    let s = best.get();
    if !s.is_finite() {
        return; // filtered out on the command line
    }
    let rate = match work {
        Work::Bytes(b) => format!("{} GB/s", sig3(b / s / 1e9)),
        Work::Flops(fl) => format!("{} GFLOP/s", sig3(fl / s / 1e9)),
    };
    println!("RESULT {id}: {:.3} ms/call, {rate} ({})", s * 1e3, dev.description());
}

/// `v` with three significant digits (software adapters run at a few MB/s).
fn sig3(v: f64) -> String {
    let digits = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else if v >= 1.0 {
        2
    } else {
        3 + (-v.log10()).floor().max(0.0) as usize
    };
    format!("{v:.digits$}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_lines_warn_only_above_the_threshold() {
        assert_eq!(load_lines(Some(0.5), 2), "LOAD 1-min 0.50 on 2 CPUs");
        let hi = load_lines(Some(2.25), 2);
        assert!(hi.starts_with("LOAD 1-min 2.25 on 2 CPUs\nWARNING: load 2.25 > 1.5"), "{hi}");
        assert!(load_lines(None, 4).contains("unknown"));
    }
}
