//! Helpers for conformance tests, shared by every crate that tests kernels: backend selection
//! with loud skips, NaN-poisoned outputs, seeded random inputs and `atol + rtol·|ref|`
//! comparisons that report the worst element.
//!
//! A conformance test is one function `fn(&Device)` instantiated per backend with
//! [`per_backend!`](crate::per_backend). A backend that is absent prints
//! `SKIP <backend>: <reason>` and the test returns; with `TREEPO_REQUIRE_<BACKEND>=1` in the
//! environment the absence is a failure instead, so CI cannot pass silently.

use std::sync::OnceLock;

use crate::{AdapterPolicy, BackendKind, Buffer, Device, Element, Result};

/// The environment variable that turns a skipped backend into a failure.
pub fn require_var(kind: BackendKind) -> &'static str {
    match kind {
        BackendKind::Cpu => "TREEPO_REQUIRE_CPU",
        BackendKind::Cuda => "TREEPO_REQUIRE_CUDA",
        BackendKind::Wgpu => "TREEPO_REQUIRE_WGPU",
    }
}

/// Whether `TREEPO_REQUIRE_<kind>` is set to a true value.
pub fn required(kind: BackendKind) -> bool {
    std::env::var(require_var(kind))
        .map(|v| v == "1" || v.eq_ignore_ascii_case("true"))
        .unwrap_or(false)
}

/// The shared test device of `kind` (created once per process), or `None` after printing
/// `SKIP <kind>: <reason>`. Panics when the backend is required but absent.
pub fn device_or_skip(kind: BackendKind) -> Option<Device> {
    static CUDA: OnceLock<std::result::Result<Device, String>> = OnceLock::new();
    static WGPU: OnceLock<std::result::Result<Device, String>> = OnceLock::new();
    let r = match kind {
        BackendKind::Cpu => return Some(Device::cpu()),
        BackendKind::Cuda => CUDA.get_or_init(|| Device::cuda(0).map_err(|e| e.to_string())),
        BackendKind::Wgpu => WGPU
            .get_or_init(|| Device::wgpu(AdapterPolicy::AllowSoftware).map_err(|e| e.to_string())),
    };
    match r {
        Ok(d) => Some(d.clone()),
        Err(reason) => {
            if required(kind) {
                panic!("{kind} is required ({}=1) but unavailable: {reason}", require_var(kind));
            }
            skip(kind.name(), reason);
            None
        }
    }
}

/// Prints `SKIP <what>: <reason>` straight to the process's stderr, bypassing libtest's output
/// capture, so a skipped backend is visible in every `cargo test` run.
pub fn skip(what: &str, reason: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIP {what}: {reason}");
}

/// Instantiates conformance tests once per backend: for each `name`, a module `name` with
/// `#[test] fn cpu/wgpu/cuda` calling `name(&Device)`.
#[macro_export]
macro_rules! per_backend {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            fn run(kind: $crate::BackendKind) {
                if let Some(dev) = $crate::testing::device_or_skip(kind) {
                    super::$name(&dev);
                }
            }
            #[test]
            fn cpu() { run($crate::BackendKind::Cpu) }
            #[test]
            fn wgpu() { run($crate::BackendKind::Wgpu) }
            #[test]
            fn cuda() { run($crate::BackendKind::Cuda) }
        }
    )*};
}

/// An output buffer of `len` elements filled with [`Element::POISON`], so an element the
/// kernel forgot to write fails the comparison.
pub fn poisoned<T: Element>(dev: &Device, len: usize) -> Result<Buffer<T>> {
    dev.full(len, T::POISON)
}

/// Error bound of a comparison: `|got - want| <= atol + rtol·|want|`.
#[derive(Clone, Copy, Debug)]
pub struct Tol {
    /// Absolute part.
    pub atol: f64,
    /// Relative part.
    pub rtol: f64,
}

impl Tol {
    /// f32 results of short reductions.
    pub const F32: Tol = Tol { atol: 1e-5, rtol: 1e-5 };
    /// A tolerance of `eps_units` units of `dtype`'s epsilon (f32 2⁻²³, f16 2⁻¹⁰, bf16 2⁻⁷),
    /// absolute and relative.
    pub fn eps(dtype: crate::DType, eps_units: f64) -> Tol {
        let eps = match dtype {
            crate::DType::F16 => 2f64.powi(-10),
            crate::DType::BF16 => 2f64.powi(-7),
            _ => 2f64.powi(-23),
        };
        Tol { atol: eps * eps_units, rtol: eps * eps_units }
    }
}

/// Compares `got` with the f64 reference `want`; panics with the worst element, the first bad
/// index and the count of bad elements. NaN or infinity in `got` where `want` is finite fails.
/// Returns the maximum absolute error.
pub fn assert_close(what: &str, got: &[f32], want: &[f64], tol: Tol) -> f64 {
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: length {} != reference length {}",
        got.len(),
        want.len()
    );
    let mut max_err = 0f64;
    let mut worst = 0usize;
    let mut first_bad: Option<usize> = None;
    let mut bad = 0usize;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let g = g as f64;
        let ok_special = (w.is_nan() && g.is_nan()) || (w.is_infinite() && g == w);
        let err = if ok_special { 0.0 } else { (g - w).abs() };
        let err = if err.is_nan() { f64::INFINITY } else { err };
        if err > max_err {
            max_err = err;
            worst = i;
        }
        let bound = tol.atol + tol.rtol * if w.is_finite() { w.abs() } else { 0.0 };
        if err > bound {
            bad += 1;
            first_bad.get_or_insert(i);
        }
    }
    if let Some(i) = first_bad {
        panic!(
            "{what}: {bad}/{} elements out of tolerance (atol {:e}, rtol {:e}); first bad [{i}] got {} want {}; \
             max abs error {max_err:e} at [{worst}] (got {} want {})",
            got.len(),
            tol.atol,
            tol.rtol,
            got[i],
            want[i],
            got[worst],
            want[worst]
        );
    }
    max_err
}

/// A small, seeded, dependency-free generator (SplitMix64) for test inputs.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }
    /// A generator seeded from the clock and a counter: fresh inputs every run. The seed is
    /// printed so a failure can be replayed with [`Rng::new`].
    pub fn fresh(what: &str) -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let seed = t ^ COUNTER.fetch_add(1, Ordering::Relaxed).wrapping_mul(0xd6e8_feb8_6659_fd93);
        eprintln!("{what}: seed {seed:#x}");
        Rng::new(seed)
    }
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `[0, 1)`.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform integer in `[0, n)` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(1e-300);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
    /// `n` normals scaled by `scale`, as f32.
    pub fn normals(&mut self, n: usize, scale: f64) -> Vec<f32> {
        (0..n).map(|_| (self.normal() * scale) as f32).collect()
    }
    /// A random permutation of `0..n`.
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut p: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            p.swap(i, self.below(i + 1));
        }
        p
    }
}
