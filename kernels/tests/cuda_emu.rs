//! The emulated CUDA device's own tests: its warp shuffles and votes, block-barrier reductions,
//! atomics, mma.m16n8k16 fragments and 16-bit float conversions give exactly what CUDA
//! documents, its detectors fail a launch that breaks a rule a GPU leaves undefined (naming the
//! rule), its launch checks reject what a GPU rejects, and no failure is sticky.
//!
//! Emulator-only: the kernels (kernels/emu/selftest/*.cu) exist only in the emulated libcuda.so
//! that scripts/cuda-emu.sh builds, and are reached through cudarc directly. Without a libcuda
//! every test prints `SKIP cuda-emu: ...` (a failure with `TREEPO_REQUIRE_CUDA=1`); on a real GPU
//! it prints `SKIP cuda-emu: device is a real GPU` and returns.
//!
//! `scripts/cuda-emu.sh cargo test -p treepo-kernels --test suite cuda_emu`, also with
//! `--schedule threads` before `cargo` (one OS thread per CUDA thread).

#![cfg(feature = "cuda")]

use std::ffi::{CStr, c_char};
use std::io::Write;
use std::sync::{Arc, Mutex, MutexGuard, Once};

use cudarc::driver::sys::{CUfunction_attribute_enum, cudaError_enum};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DeviceRepr, DriverError,
    LaunchConfig, PushKernelArg,
};
use cudarc::nvrtc::Ptx;
use treepo_kernels::BackendKind;
use treepo_kernels::testing::{Rng, required, skip};

/// Every kernel of kernels/emu/selftest, as `.entry` names of the PTX module the stand-in driver
/// loads, plus one it declares but the emulator does not have.
const KERNELS: &[&str] = &[
    "emu_selftest_shuffles",
    "emu_selftest_votes",
    "emu_selftest_bar_reduce",
    "emu_selftest_atomics",
    "emu_selftest_mma",
    "emu_selftest_ok",
    "emu_selftest_divergent_barriers",
    "emu_selftest_barrier_after_exit",
    "emu_selftest_deadlock",
    "emu_selftest_warp_diverged",
    "emu_selftest_shfl_exited",
    "emu_selftest_shfl_outside_mask",
    "emu_selftest_smem_write",
    "emu_selftest_trap",
    "emu_selftest_smem_fill",
    "emu_selftest_not_built",
];

/// `treepo_emu_last_error()` is one process-wide string: these tests run one at a time so a
/// message is always the last launch's own.
static SERIAL: Mutex<()> = Mutex::new(());

struct Emu {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    module: Arc<CudaModule>,
    _serial: MutexGuard<'static, ()>,
}

fn unavailable(reason: &str) -> Option<Emu> {
    assert!(
        !required(BackendKind::Cuda),
        "cuda-emu: TREEPO_REQUIRE_CUDA=1 but the CUDA device is unavailable: {reason}"
    );
    skip("cuda-emu", reason);
    None
}

/// The emulated device with the self-test module loaded, or `None` after a loud skip.
fn emu_or_skip() -> Option<Emu> {
    let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: only tries to load libcuda (dlopen) and drops the handle again.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return unavailable("libcuda.so is not loadable (scripts/cuda-emu.sh provides one)");
    }
    let ctx = match CudaContext::new(0) {
        Ok(ctx) => ctx,
        Err(e) => return unavailable(&format!("CudaContext::new(0): {e}")),
    };
    let name = ctx.name().expect("device name");
    if !name.contains("treepo emulated") {
        skip("cuda-emu", &format!("device is a real GPU ({name})"));
        return None;
    }
    let mut ptx = String::from(".version 8.0\n.target sm_80\n.address_size 64\n");
    for k in KERNELS {
        ptx += &format!(".visible .entry {k}()\n{{ ret; }}\n");
    }
    let module = ctx.load_module(Ptx::from_src(ptx)).expect("loading the self-test module");
    static NAMED: Once = Once::new();
    NAMED.call_once(|| {
        let _ = writeln!(std::io::stderr(), "cuda-emu: {name}");
    });
    let stream = ctx.default_stream();
    Some(Emu { ctx, stream, module, _serial: serial })
}

/// The emulator's message for the last failed launch.
fn last_error() -> String {
    let f: unsafe extern "C" fn() -> *const c_char = emu_symbol("treepo_emu_last_error");
    // SAFETY: the function takes no arguments and returns a NUL-terminated string that stays
    // valid until this thread calls it again; it is copied out at once.
    unsafe { CStr::from_ptr(f()) }.to_string_lossy().into_owned()
}

/// An entry point that only the emulated libcuda.so exports (kernels/emu/src/driver.cpp).
fn emu_symbol<T: Copy>(name: &str) -> T {
    // SAFETY: culib() is the libcuda cudarc loaded, checked to be the emulator (emu_or_skip
    // tested the device name); every caller names T as the C signature driver.cpp gives `name`.
    // The library stays loaded for the whole process, so the copied-out pointer stays valid.
    unsafe {
        *cudarc::driver::sys::culib()
            .get::<T>(name)
            .unwrap_or_else(|e| panic!("the emulated libcuda.so has no {name}: {e}"))
    }
}

impl Emu {
    fn func(&self, name: &str) -> CudaFunction {
        self.module.load_function(name).unwrap_or_else(|e| panic!("load_function({name}): {e}"))
    }
    fn up<T: DeviceRepr>(&self, v: &[T]) -> CudaSlice<T> {
        self.stream.clone_htod(v).unwrap()
    }
    fn down<T: DeviceRepr>(&self, s: &CudaSlice<T>) -> Vec<T> {
        self.stream.clone_dtoh(s).unwrap()
    }

    /// A launch that must succeed after any failure: out[t] = 3t + 1 for t < 300 of 512.
    fn good_launch(&self) {
        let f = self.func("emu_selftest_ok");
        let mut out = self.up(&vec![-1i32; 512]);
        let n = 300i32;
        let cfg = cfg((2, 1, 1), (256, 1, 1), 0);
        // SAFETY: (int* out, int n); the grid has 512 threads and writes only out[t < n].
        unsafe { self.stream.launch_builder(&f).arg(&mut out).arg(&n).launch(cfg) }
            .unwrap_or_else(|e| panic!("a good launch failed: {e}: {}", last_error()));
        let got = self.down(&out);
        for (t, &v) in got.iter().enumerate() {
            let want = if t < 300 { 3 * t as i32 + 1 } else { -1 };
            assert_eq!(v, want, "good launch: out[{t}]");
        }
    }

    /// Launches a kernel `(int* out)` (writing at most 1024 ints).
    fn launch_out(&self, name: &str, cfg: LaunchConfig) -> Result<(), DriverError> {
        let f = self.func(name);
        let mut out = self.up(&vec![0i32; 1024]);
        // SAFETY: the detector kernels take (int* out) and write at most out[threadIdx.x] for
        // blocks of at most 1024 threads.
        unsafe { self.stream.launch_builder(&f).arg(&mut out).launch(cfg) }.map(|_| ())
    }

    /// `result` must be `code` with an emulator message naming `kernel` and one of `phrases`;
    /// then a good launch on the same context must still succeed.
    fn expect_failure<T: std::fmt::Debug>(
        &self,
        kernel: &str,
        result: Result<T, DriverError>,
        code: cudaError_enum,
        phrases: &[&str],
    ) {
        let err = match result {
            Ok(v) => {
                panic!("{kernel}: the launch succeeded ({v:?}) but must fail with {phrases:?}")
            }
            Err(e) => e,
        };
        let msg = last_error();
        eprintln!("{kernel}: {err} / {msg}");
        assert_eq!(err.0, code, "{kernel}: error code ({msg})");
        assert!(msg.contains(kernel), "{kernel}: the message names another kernel: {msg}");
        assert!(
            phrases.iter().any(|p| msg.contains(p)),
            "{kernel}: the message has none of {phrases:?}: {msg}"
        );
        self.good_launch();
    }
}

fn cfg(grid: (u32, u32, u32), block: (u32, u32, u32), smem: u32) -> LaunchConfig {
    LaunchConfig { grid_dim: grid, block_dim: block, shared_mem_bytes: smem }
}

// ------------------------------------------------------------------ warp collectives

/// The lane a shuffle of `kind` (0 idx, 1 up, 2 down, 3 xor) reads for `lane` with operand
/// `arg` and segment `width`, as the CUDA C++ Programming Guide documents it: idx reads
/// `srcLane % width` of the lane's segment; up/down read `lane ∓ delta` when that stays in the
/// segment, else the lane's own value; xor reads `lane ^ laneMask` unless that lies in a later
/// segment (own value), so earlier segments may be read.
fn shfl_source(kind: usize, lane: usize, arg: usize, width: usize) -> usize {
    let base = lane / width * width;
    match kind {
        0 => base + arg % width,
        1 if lane - base >= arg => lane - arg,
        2 if lane - base + arg < width => lane + arg,
        3 if lane ^ arg < base + width => lane ^ arg,
        _ => lane,
    }
}

#[test]
fn warp_shuffles() {
    let Some(emu) = emu_or_skip() else { return };
    let mut rng = Rng::fresh("cuda_emu warp_shuffles");
    let f = emu.func("emu_selftest_shuffles");
    let (blocks, threads) = (2usize, 64usize);
    let n = blocks * threads;
    for width in [32i32, 16, 8, 4] {
        let vi: Vec<i32> =
            (0..n).map(|_| rng.below(2_000_000_000) as i32 - 1_000_000_000).collect();
        let vf = rng.normals(n, 100.0);
        // Source lanes in [0, 64) (beyond the width too), deltas and lane masks in [0, 32).
        let mut args = Vec::with_capacity(4 * n);
        args.extend((0..n).map(|_| rng.below(64) as i32));
        args.extend((0..3 * n).map(|_| rng.below(32) as i32));
        let (d_vi, d_vf, d_args) = (emu.up(&vi), emu.up(&vf), emu.up(&args));
        let mut out_i = emu.up(&vec![i32::MIN; 4 * n]);
        let mut out_f = emu.up(&vec![f32::NAN; 4 * n]);
        // SAFETY: the signature of emu_selftest_shuffles; every buffer holds what the grid of
        // n threads reads or writes (n or 4n elements).
        unsafe {
            emu.stream
                .launch_builder(&f)
                .arg(&d_vi)
                .arg(&d_vf)
                .arg(&d_args)
                .arg(&width)
                .arg(&mut out_i)
                .arg(&mut out_f)
                .launch(cfg((blocks as u32, 1, 1), (threads as u32, 1, 1), 0))
        }
        .unwrap_or_else(|e| panic!("shuffles width {width}: {e}: {}", last_error()));
        let (got_i, got_f) = (emu.down(&out_i), emu.down(&out_f));
        let names = ["__shfl_sync", "__shfl_up_sync", "__shfl_down_sync", "__shfl_xor_sync"];
        let mut own = [0usize; 4];
        for (kind, name) in names.iter().enumerate() {
            for t in 0..n {
                let (warp, lane) = (t / 32 * 32, t % 32);
                let src =
                    warp + shfl_source(kind, lane, args[kind * n + t] as usize, width as usize);
                own[kind] += usize::from(src == t);
                let arg = args[kind * n + t];
                assert_eq!(
                    got_i[kind * n + t],
                    vi[src],
                    "{name} int, width {width}, thread {t} (arg {arg}): want thread {src}'s value"
                );
                assert_eq!(
                    got_f[kind * n + t].to_bits(),
                    vf[src].to_bits(),
                    "{name} float, width {width}, thread {t} (arg {arg}): want thread {src}'s value"
                );
            }
        }
        eprintln!("shuffles width {width}: {n} threads x 4 kinds exact; own-value results {own:?}");
    }
}

#[test]
fn warp_votes() {
    let Some(emu) = emu_or_skip() else { return };
    let mut rng = Rng::fresh("cuda_emu warp_votes");
    let f = emu.func("emu_selftest_votes");
    // 112 threads a block: three full warps and one of 16 lanes.
    let (blocks, threads) = (4usize, 112usize);
    let warps_per_block = threads.div_ceil(32);
    let n = blocks * threads;
    // The vote group of thread t: its mask's index, its lane and the threads of its warp.
    let group = |t: usize| {
        let (b, i) = (t / threads, t % threads);
        let first = b * threads + i / 32 * 32;
        (b * warps_per_block + i / 32, i % 32, first..(first + 32).min((b + 1) * threads))
    };
    for round in 0..4 {
        // Per warp: a mask (full, one lane or random, within the lanes that exist) and a
        // predicate pattern (all, none, half or sparse; any non-zero int is true).
        let masks: Vec<u32> = (0..blocks * warps_per_block)
            .map(|w| {
                let exists =
                    if w % warps_per_block == warps_per_block - 1 { 0xffff } else { u32::MAX };
                let m = match (w + round) % 4 {
                    0 => u32::MAX,
                    1 => 1 << rng.below(32),
                    _ => (rng.next_u64() as u32) | (1 << rng.below(32)),
                };
                if m & exists == 0 { 1 } else { m & exists }
            })
            .collect();
        let pred: Vec<i32> = (0..n)
            .map(|t| {
                let on = match (group(t).0 + round / 2) % 4 {
                    0 => true,
                    1 => false,
                    2 => rng.below(2) == 0,
                    _ => rng.below(16) == 0,
                };
                if on { rng.next_u64() as i32 | 1 << rng.below(32) } else { 0 }
            })
            .collect();
        const SENTINEL: u32 = 0xdead_beef;
        let (d_pred, d_masks) = (emu.up(&pred), emu.up(&masks));
        let mut out = emu.up(&vec![SENTINEL; 3 * n]);
        // SAFETY: the signature of emu_selftest_votes; pred has n, masks one per warp and out
        // 3n elements for the grid of n threads.
        unsafe {
            emu.stream.launch_builder(&f).arg(&d_pred).arg(&d_masks).arg(&mut out).launch(cfg(
                (blocks as u32, 1, 1),
                (threads as u32, 1, 1),
                0,
            ))
        }
        .unwrap_or_else(|e| panic!("votes: {e}: {}", last_error()));
        let got = emu.down(&out);
        let (mut all_true, mut any_true) = (0, 0);
        for t in 0..n {
            let (w, lane, warp) = group(t);
            let mask = masks[w];
            let want = if mask >> lane & 1 == 1 {
                let first = warp.start;
                let ballot = warp
                    .filter(|&u| mask >> (u - first) & 1 == 1 && pred[u] != 0)
                    .fold(0u32, |b, u| b | 1 << (u - first));
                all_true += usize::from(ballot == mask);
                any_true += usize::from(ballot != 0);
                [ballot, u32::from(ballot != 0), u32::from(ballot == mask)]
            } else {
                [SENTINEL; 3]
            };
            for (k, name) in ["__ballot_sync", "__any_sync", "__all_sync"].iter().enumerate() {
                assert_eq!(
                    got[k * n + t],
                    want[k],
                    "{name}: thread {t} (lane {lane}, mask {mask:08x}) got {:#x} want {:#x}",
                    got[k * n + t],
                    want[k]
                );
            }
        }
        eprintln!("votes round {round}: exact; lanes where any = {any_true}, all = {all_true}");
    }
}

#[test]
fn block_barrier_reductions() {
    let Some(emu) = emu_or_skip() else { return };
    let mut rng = Rng::fresh("cuda_emu block_barrier_reductions");
    let f = emu.func("emu_selftest_bar_reduce");
    let (blocks, per) = (6usize, 256usize);
    let n = blocks * per;
    // Per block: all true, none, random half, exactly one, all but one, sparse.
    let lone = [rng.below(per), rng.below(per)];
    let pred: Vec<i32> = (0..n)
        .map(|t| {
            let (b, i) = (t / per, t % per);
            let on = match b {
                0 => true,
                1 => false,
                2 => rng.below(2) == 0,
                3 => i == lone[0],
                4 => i != lone[1],
                _ => rng.below(20) == 0,
            };
            if on { (rng.next_u64() as i32) | 1 << rng.below(32) } else { 0 }
        })
        .collect();
    let d_pred = emu.up(&pred);
    let mut out = emu.up(&vec![i32::MIN; 3 * n]);
    // SAFETY: the signature of emu_selftest_bar_reduce; pred has n and out 3n elements for
    // the grid of n threads (blocks of 32x8).
    unsafe {
        emu.stream.launch_builder(&f).arg(&d_pred).arg(&mut out).launch(cfg(
            (blocks as u32, 1, 1),
            (32, 8, 1),
            0,
        ))
    }
    .unwrap_or_else(|e| panic!("bar_reduce: {e}: {}", last_error()));
    let got = emu.down(&out);
    for b in 0..blocks {
        let count = pred[b * per..(b + 1) * per].iter().filter(|&&p| p != 0).count() as i32;
        let want = [count, i32::from(count > 0), i32::from(count == per as i32)];
        for i in 0..per {
            let t = b * per + i;
            for (k, name) in
                ["__syncthreads_count", "__syncthreads_or", "__syncthreads_and"].iter().enumerate()
            {
                assert_eq!(got[k * n + t], want[k], "{name}: block {b} thread {i} (count {count})");
            }
        }
        eprintln!("block {b}: count {count} / {per} exact");
    }
}

#[test]
fn atomics_across_blocks() {
    let Some(emu) = emu_or_skip() else { return };
    let mut rng = Rng::fresh("cuda_emu atomics_across_blocks");
    let f = emu.func("emu_selftest_atomics");
    let n = 12_345usize;
    let threads = 256usize;
    let vi: Vec<i32> = (0..n).map(|_| rng.below(20_001) as i32 - 10_000).collect();
    // Multiples of 1/8 below 125 in magnitude: every partial sum of 12345 of them is exact in
    // f32 (|sum| * 8 < 2^24), so the float sum is order-independent.
    let vf: Vec<f32> = (0..n).map(|_| (rng.below(2001) as f32 - 1000.0) / 8.0).collect();
    let (d_vi, d_vf) = (emu.up(&vi), emu.up(&vf));
    let mut isum = emu.up(&[0i32]);
    let mut fsum = emu.up(&[0f32]);
    let mut imax = emu.up(&[i32::MIN]);
    let mut imin = emu.up(&[i32::MAX]);
    let mut counter = emu.up(&[0u32]);
    let mut tickets = emu.up(&vec![u32::MAX; n]);
    let n_arg = n as i32;
    let blocks = n.div_ceil(threads) as u32;
    // SAFETY: the signature of emu_selftest_atomics; the value and ticket buffers hold n
    // elements and the threads at or past n return at once.
    unsafe {
        emu.stream
            .launch_builder(&f)
            .arg(&d_vi)
            .arg(&d_vf)
            .arg(&n_arg)
            .arg(&mut isum)
            .arg(&mut fsum)
            .arg(&mut imax)
            .arg(&mut imin)
            .arg(&mut counter)
            .arg(&mut tickets)
            .launch(cfg((blocks, 1, 1), (threads as u32, 1, 1), 0))
    }
    .unwrap_or_else(|e| panic!("atomics: {e}: {}", last_error()));
    let want_isum: i64 = vi.iter().map(|&v| v as i64).sum();
    let want_fsum: f64 = vf.iter().map(|&v| v as f64).sum();
    assert_eq!(emu.down(&isum)[0] as i64, want_isum, "atomicAdd int");
    assert_eq!(emu.down(&fsum)[0] as f64, want_fsum, "atomicAdd float (exact by construction)");
    assert_eq!(emu.down(&imax)[0], *vi.iter().max().unwrap(), "atomicMax int");
    assert_eq!(emu.down(&imin)[0], *vi.iter().min().unwrap(), "atomicMin int");
    assert_eq!(emu.down(&counter)[0], n as u32, "atomicAdd unsigned counter");
    let mut t = emu.down(&tickets);
    t.sort_unstable();
    assert!(t.iter().enumerate().all(|(i, &v)| v == i as u32), "tickets are not a permutation");
    eprintln!("atomics over {blocks} blocks: int sum {want_isum}, float sum {want_fsum} exact");
}

// ------------------------------------------------------------------ mma

#[test]
fn mma_m16n8k16_fragments() {
    let Some(emu) = emu_or_skip() else { return };
    let mut rng = Rng::fresh("cuda_emu mma_m16n8k16_fragments");
    let f = emu.func("emu_selftest_mma");
    let (blocks, threads) = (4u32, 64u32);
    let tiles = (blocks * threads / 32) as usize;
    for bf16 in [0i32, 1] {
        let dtype = if bf16 == 1 { "bf16" } else { "f16" };
        let to16 = |x: f32| {
            if bf16 == 1 {
                half::bf16::from_f32(x).to_bits()
            } else {
                half::f16::from_f32(x).to_bits()
            }
        };
        let from16 = |b: u16| {
            if bf16 == 1 {
                half::bf16::from_bits(b).to_f64()
            } else {
                half::f16::from_bits(b).to_f64()
            }
        };
        let a: Vec<u16> = rng.normals(tiles * 256, 2.0).into_iter().map(to16).collect();
        let b: Vec<u16> = rng.normals(tiles * 128, 2.0).into_iter().map(to16).collect();
        let c = rng.normals(tiles * 128, 4.0);
        let (d_a, d_b, d_c) = (emu.up(&a), emu.up(&b), emu.up(&c));
        let mut d = emu.up(&vec![f32::NAN; tiles * 128]);
        // SAFETY: the signature of emu_selftest_mma; A, B, C and D hold 256, 128, 128 and 128
        // elements per warp of the grid.
        unsafe {
            emu.stream
                .launch_builder(&f)
                .arg(&d_a)
                .arg(&d_b)
                .arg(&d_c)
                .arg(&bf16)
                .arg(&mut d)
                .launch(cfg((blocks, 1, 1), (threads, 1, 1), 0))
        }
        .unwrap_or_else(|e| panic!("mma {dtype}: {e}: {}", last_error()));
        let got = emu.down(&d);
        let (mut max_err, mut max_units) = (0f64, 0f64);
        for w in 0..tiles {
            for r in 0..16 {
                for col in 0..8 {
                    let ci = w * 128 + r * 8 + col;
                    let (mut sum, mut mag) = (c[ci] as f64, (c[ci] as f64).abs());
                    for k in 0..16 {
                        let p = from16(a[w * 256 + r * 16 + k]) * from16(b[w * 128 + k * 8 + col]);
                        sum += p;
                        mag += p.abs();
                    }
                    let err = (got[ci] as f64 - sum).abs();
                    // In units of 2^-24 of the magnitude of the terms: a few f32 roundings.
                    let units = err / (mag * 2f64.powi(-24));
                    assert!(
                        units <= 4.0,
                        "mma {dtype}: tile {w} D[{r}][{col}] = {} but A·B+C = {sum} ({units:.2} units)",
                        got[ci]
                    );
                    max_err = max_err.max(err);
                    max_units = max_units.max(units);
                }
            }
        }
        eprintln!(
            "mma {dtype}: {tiles} tiles, max |D - (A·B+C)| = {max_err:e} ({max_units:.3} x 2^-24 Σ|terms|)"
        );
    }
}

// ------------------------------------------------------------------ detectors

#[test]
fn detects_divergent_barriers() {
    let Some(emu) = emu_or_skip() else { return };
    let k = "emu_selftest_divergent_barriers";
    let r = emu.launch_out(k, cfg((1, 1, 1), (32, 1, 1), 0));
    emu.expect_failure(k, r, cudaError_enum::CUDA_ERROR_LAUNCH_FAILED, &["divergent barriers"]);
}

#[test]
fn detects_barrier_after_exit() {
    let Some(emu) = emu_or_skip() else { return };
    let k = "emu_selftest_barrier_after_exit";
    let r = emu.launch_out(k, cfg((1, 1, 1), (64, 1, 1), 0));
    emu.expect_failure(k, r, cudaError_enum::CUDA_ERROR_LAUNCH_FAILED, &["reached by 63 of 64"]);
}

#[test]
fn detects_deadlock() {
    let Some(emu) = emu_or_skip() else { return };
    let k = "emu_selftest_deadlock";
    let r = emu.launch_out(k, cfg((1, 1, 1), (32, 1, 1), 0));
    emu.expect_failure(k, r, cudaError_enum::CUDA_ERROR_LAUNCH_FAILED, &["deadlock"]);
}

#[test]
fn detects_warp_divergence() {
    let Some(emu) = emu_or_skip() else { return };
    let k = "emu_selftest_warp_diverged";
    let r = emu.launch_out(k, cfg((1, 1, 1), (32, 1, 1), 0));
    emu.expect_failure(k, r, cudaError_enum::CUDA_ERROR_LAUNCH_FAILED, &["warp 0 diverged"]);
}

#[test]
fn detects_shuffle_with_exited_lane() {
    let Some(emu) = emu_or_skip() else { return };
    let k = "emu_selftest_shfl_exited";
    let r = emu.launch_out(k, cfg((1, 1, 1), (32, 1, 1), 0));
    // Which one depends on whether lane 1 exits before or after lane 0 arrives.
    emu.expect_failure(
        k,
        r,
        cudaError_enum::CUDA_ERROR_LAUNCH_FAILED,
        &["lane 1 has exited", "lane 1 of warp 0 exited while"],
    );
}

#[test]
fn detects_shuffle_outside_mask() {
    let Some(emu) = emu_or_skip() else { return };
    let k = "emu_selftest_shfl_outside_mask";
    let r = emu.launch_out(k, cfg((1, 1, 1), (32, 1, 1), 0));
    emu.expect_failure(k, r, cudaError_enum::CUDA_ERROR_LAUNCH_FAILED, &["not in the mask"]);
}

#[test]
fn detects_dynamic_smem_overrun() {
    let Some(emu) = emu_or_skip() else { return };
    let k = "emu_selftest_smem_write";
    let f = emu.func(k);
    let bytes = 64i32;
    for (at, ok) in [(0, true), (bytes, false)] {
        let mut out = emu.up(&[0i32]);
        // SAFETY: (int* out, int bytes, int at); only out[0] is written; the write at `at` is
        // into the emulator's dynamic shared memory (past it by one byte on purpose: the
        // emulator keeps a canary there).
        let r = unsafe {
            emu.stream.launch_builder(&f).arg(&mut out).arg(&bytes).arg(&at).launch(cfg(
                (1, 1, 1),
                (32, 1, 1),
                bytes as u32,
            ))
        };
        if ok {
            r.unwrap_or_else(|e| panic!("in-bounds smem write failed: {e}: {}", last_error()));
            assert_eq!(emu.down(&out)[0], 7);
        } else {
            emu.expect_failure(k, r, cudaError_enum::CUDA_ERROR_LAUNCH_FAILED, &["overrun"]);
        }
    }
}

#[test]
fn reports_trap() {
    let Some(emu) = emu_or_skip() else { return };
    let k = "emu_selftest_trap";
    let r = emu.launch_out(k, cfg((2, 1, 1), (32, 1, 1), 0));
    emu.expect_failure(k, r, cudaError_enum::CUDA_ERROR_LAUNCH_FAILED, &["__trap() at"]);
}

#[test]
fn poisons_dynamic_smem_per_block() {
    let Some(emu) = emu_or_skip() else { return };
    let f = emu.func("emu_selftest_smem_fill");
    let (blocks, bytes) = (3usize, 1000i32);
    let nf = bytes as usize / 4;
    let mut out_f = emu.up(&vec![0f32; blocks * nf]);
    let mut out_b = emu.up(&vec![0u8; blocks * bytes as usize]);
    // SAFETY: (float* out_f, unsigned char* out_b, int bytes); out_f holds bytes/4 and out_b
    // bytes elements per block; the dynamic shared memory is `bytes` long.
    unsafe {
        emu.stream.launch_builder(&f).arg(&mut out_f).arg(&mut out_b).arg(&bytes).launch(cfg(
            (blocks as u32, 1, 1),
            (64, 1, 1),
            bytes as u32,
        ))
    }
    .unwrap_or_else(|e| panic!("smem_fill: {e}: {}", last_error()));
    let (got_f, got_b) = (emu.down(&out_f), emu.down(&out_b));
    for (i, v) in got_f.iter().enumerate() {
        assert!(v.is_nan() && v.to_bits() == u32::MAX, "float {i} of block {}: {v}", i / nf);
    }
    for (i, &v) in got_b.iter().enumerate() {
        assert_eq!(v, 0xff, "byte {i} of block {}", i / bytes as usize);
    }
    eprintln!("dynamic smem: {blocks} blocks x {bytes} bytes all 0xff (NaN) before each block");
}

#[test]
fn rejects_oversized_block() {
    let Some(emu) = emu_or_skip() else { return };
    let f = emu.func("emu_selftest_ok");
    let mut out = emu.up(&vec![0i32; 2048]);
    let n = 1025i32;
    // SAFETY: (int* out, int n); the launch is rejected before it runs (and would write only
    // out[t < 1025] of 2048).
    let r = unsafe {
        emu.stream.launch_builder(&f).arg(&mut out).arg(&n).launch(cfg((1, 1, 1), (1025, 1, 1), 0))
    };
    emu.expect_failure(
        "emu_selftest_ok",
        r,
        cudaError_enum::CUDA_ERROR_INVALID_VALUE,
        &["exceeds the device limits"],
    );
}

#[test]
fn rejects_dynamic_smem_above_limit_until_raised() {
    let Some(emu) = emu_or_skip() else { return };
    let k = "emu_selftest_smem_write";
    let f = emu.func(k);
    let bytes = 49 * 1024i32;
    let at = bytes - 2;
    let launch = || {
        let mut out = emu.up(&[0i32]);
        // SAFETY: (int* out, int bytes, int at); writes out[0] and two bytes inside the
        // `bytes` of dynamic shared memory.
        let r = unsafe {
            emu.stream.launch_builder(&f).arg(&mut out).arg(&bytes).arg(&at).launch(cfg(
                (1, 1, 1),
                (32, 1, 1),
                bytes as u32,
            ))
        };
        r.map(|_| emu.down(&out)[0])
    };
    let limit = CUfunction_attribute_enum::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES;
    assert_eq!(f.get_attribute(limit).unwrap(), 48 * 1024, "default dynamic smem limit");
    emu.expect_failure(
        k,
        launch(),
        cudaError_enum::CUDA_ERROR_INVALID_VALUE,
        &["CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES"],
    );
    f.set_attribute(limit, bytes).unwrap();
    assert_eq!(
        launch().unwrap_or_else(|e| panic!("after raising the limit: {e}: {}", last_error())),
        7
    );
    // Above the device's opt-in maximum the attribute itself is refused.
    let optin = emu
        .ctx
        .attribute(cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)
        .unwrap();
    assert!(f.set_attribute(limit, optin + 1).is_err(), "a limit above the opt-in maximum {optin}");
}

#[test]
fn rejects_pointer_outside_allocations() {
    let Some(emu) = emu_or_skip() else { return };
    let f = emu.func("emu_selftest_ok");
    let bogus = 0x1000u64;
    let n = 32i32;
    // SAFETY: (int* out, int n) with a made-up device address for `out`: the stand-in driver
    // rejects it before the kernel runs (on a GPU this would be a fault).
    let r = unsafe {
        emu.stream.launch_builder(&f).arg(&bogus).arg(&n).launch(cfg((1, 1, 1), (32, 1, 1), 0))
    };
    emu.expect_failure(
        "emu_selftest_ok",
        r,
        cudaError_enum::CUDA_ERROR_INVALID_VALUE,
        &["pointer parameter 0 (0x1000) is not inside any allocation"],
    );
}

#[test]
fn load_function_fails_for_undefined_names() {
    let Some(emu) = emu_or_skip() else { return };
    // Not in the module at all, and in the module but not compiled into the emulator.
    for name in ["emu_selftest_no_such_kernel", "emu_selftest_not_built"] {
        let err = emu.module.load_function(name).map(|_| ()).expect_err(name);
        assert_eq!(err.0, cudaError_enum::CUDA_ERROR_NOT_FOUND, "{name}");
    }
    // A kernel the emulator has but this module does not define.
    let other = emu.ctx.load_module(Ptx::from_src(
        ".version 8.0\n.target sm_80\n.address_size 64\n.visible .entry emu_selftest_ok()\n{ ret; }\n",
    ));
    let other = other.unwrap();
    assert!(other.load_function("emu_selftest_trap").is_err(), "a kernel of another module");
    other.load_function("emu_selftest_ok").unwrap();
    emu.good_launch();
}

// ------------------------------------------------------------------ 16-bit conversions

type To32 = unsafe extern "C" fn(u16) -> f32;
type From32 = unsafe extern "C" fn(f32) -> u16;

fn is_nan16(bits: u16, bf16: bool) -> bool {
    if bf16 { half::bf16::from_bits(bits).is_nan() } else { half::f16::from_bits(bits).is_nan() }
}

#[test]
fn f16_bf16_to_f32_bit_exact() {
    let Some(_emu) = emu_or_skip() else { return };
    let f16_to_f32: To32 = emu_symbol("treepo_emu_f16_to_f32");
    let bf16_to_f32: To32 = emu_symbol("treepo_emu_bf16_to_f32");
    let mut nans = 0;
    for bits in 0..=u16::MAX {
        // SAFETY: both take a 16-bit pattern and return a float, with no other effect.
        let (g16, gbf) = unsafe { (f16_to_f32(bits), bf16_to_f32(bits)) };
        let (w16, wbf) =
            (half::f16::from_bits(bits).to_f32(), half::bf16::from_bits(bits).to_f32());
        for (name, got, want) in [("f16", g16, w16), ("bf16", gbf, wbf)] {
            // NaNs too: both keep the sign and payload and set the quiet bit.
            nans += usize::from(want.is_nan());
            assert_eq!(
                got.to_bits(),
                want.to_bits(),
                "{name} {bits:#06x} -> {got} ({:#010x}), `half` {want} ({:#010x})",
                got.to_bits(),
                want.to_bits()
            );
        }
    }
    eprintln!(
        "16-bit -> f32: all 65536 patterns of f16 and bf16 bit-exact with `half` ({nans} NaNs)"
    );
}

#[test]
fn f32_to_f16_bf16_bit_exact() {
    let Some(_emu) = emu_or_skip() else { return };
    let to_f16: From32 = emu_symbol("treepo_emu_f32_to_f16");
    let to_bf16: From32 = emu_symbol("treepo_emu_f32_to_bf16");
    let mut rng = Rng::fresh("cuda_emu f32_to_f16_bf16_bit_exact");
    let up = |x: f32| f32::from_bits(x.to_bits() + 1); // next away from zero (finite x)
    let down = |x: f32| f32::from_bits(x.to_bits() - 1); // next toward zero (x != 0)
    let mut inputs: Vec<f32> = vec![
        0.0,
        f32::INFINITY,
        f32::NAN,
        f32::from_bits(0x7f80_0001), // signalling NaN
        f32::from_bits(0x7fc1_2345), // NaN with a payload
        f32::MAX,
        f32::MIN_POSITIVE,
        f32::from_bits(1), // smallest f32 subnormal
        65504.0,           // f16 max
        up(65504.0),
        65520.0, // halfway from f16 max to 2^16: rounds to inf
        down(65520.0),
        up(65520.0),
        65536.0,
        2f32.powi(-14), // f16 min normal
        down(2f32.powi(-14)),
        2f32.powi(-24), // f16 min subnormal
        2f32.powi(-25), // halfway to zero: rounds to 0 (even)
        up(2f32.powi(-25)),
        down(2f32.powi(-25)),
        3.0 * 2f32.powi(-25), // halfway between subnormals 1 and 2: rounds to 2
        2f32.powi(-26),
        f32::from_bits(0x7f7f_8000), // halfway from bf16 max to inf
        down(f32::from_bits(0x7f7f_8000)),
        1.0 + 2f32.powi(-11), // f16 halfway 1 / 1+2^-10: to 1
        1.0 + 3.0 * 2f32.powi(-11),
        1.0 + 2f32.powi(-8), // bf16 halfway
    ];
    // Halfway between every pair of adjacent finite values of each format, and its neighbours.
    for bits in 0..0x7bffu16 {
        let (lo, hi) =
            (half::f16::from_bits(bits).to_f32(), half::f16::from_bits(bits + 1).to_f32());
        let mid = (lo + hi) / 2.0; // exact: 12 significant bits
        inputs.extend([mid, up(mid), if mid > 0.0 { down(mid) } else { mid }]);
    }
    for bits in 0..0x7f7fu16 {
        let (lo, hi) =
            (half::bf16::from_bits(bits).to_f32(), half::bf16::from_bits(bits + 1).to_f32());
        let mid = lo + (hi - lo) / 2.0; // exact: 9 significant bits
        inputs.extend([mid, up(mid), if mid > 0.0 { down(mid) } else { mid }]);
    }
    let specials = inputs.len();
    // Every input with both signs; then 10^6 random bit patterns and 10^6 random values with
    // exponents around the f16 range.
    inputs.extend(inputs.clone().into_iter().map(|x| -x));
    inputs.extend((0..1_000_000).map(|_| f32::from_bits(rng.next_u64() as u32)));
    inputs.extend((0..1_000_000).map(|_| {
        let exp = 127 - 30 + rng.below(50) as u32; // 2^-30 .. 2^19
        f32::from_bits(
            (rng.next_u64() as u32 & 0x8000_0000) | exp << 23 | (rng.next_u64() as u32 & 0x7f_ffff),
        )
    }));
    let (mut nans, mut infs) = (0usize, 0usize);
    for &x in &inputs {
        // SAFETY: both take a float and return a 16-bit pattern, with no other effect.
        let (g16, gbf) = unsafe { (to_f16(x), to_bf16(x)) };
        let (w16, wbf) = (half::f16::from_f32(x).to_bits(), half::bf16::from_f32(x).to_bits());
        for (name, got, want, bf) in [("f16", g16, w16, false), ("bf16", gbf, wbf, true)] {
            if x.is_nan() {
                nans += 1;
                assert!(
                    is_nan16(got, bf),
                    "{name}({x:e} = {:#010x}) -> {got:#06x}: not NaN",
                    x.to_bits()
                );
            } else {
                infs += usize::from(got & 0x7fff == if bf { 0x7f80 } else { 0x7c00 });
                assert_eq!(
                    got,
                    want,
                    "{name}({x:e} = {:#010x}) -> {got:#06x} but `half` gives {want:#06x}",
                    x.to_bits()
                );
            }
        }
    }
    eprintln!(
        "f32 -> f16/bf16: {} inputs ({specials} specials and halfway cases, both signs) agree with `half` \
         ({nans} NaN and {infs} infinite results)",
        inputs.len()
    );
}
