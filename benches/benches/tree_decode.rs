//! Tree decode attention vs naive per-leaf paged decode, one decode step of one layer, on every
//! available backend (CPU always; wgpu with a hardware adapter, or lavapipe with
//! `TREEPO_BENCH_WGPU=software`; CUDA when a GPU is present — otherwise a `SKIP` line).
//!
//! Cases (page size 16, one query row per leaf): 16×(1k prefix + 64), 16×(1k+256), 16×(4k+64),
//! 64×(1k+64), the 3-level tree 1k → 4×256 → 16×64, and the degenerate single leaf 1×(1k+64).
//! Heads: CPU 8 q / 2 kv, head_dim 128, f32; GPUs Llama-3-8B-like 32 q / 8 kv, head_dim 128,
//! bf16 on CUDA and f16 (else f32) on wgpu.
//!
//! Variants on identical data: `naive` = `ops::paged_decode` over a per-leaf CSR page table
//! (each leaf reads its whole path); `tree` = `tree_attn::decode` with `PlanKind::Auto { units }`
//! (the default plan, split only where the shape needs it; units = parallel workers per KV head:
//! CPU threads / KV heads, 128 / KV heads on a GPU); `nosplit` = `PlanKind::Tree`; `split256` =
//! `PlanKind::TreeSplit { max_chunk: 256 }`; `cascade` = `PlanKind::Cascade` (FlashInfer's
//! 2-level cascade).
//!
//! Timing is interleaved — each round runs every variant once — because the machines this runs
//! on are shared: a slow phase hits all variants alike. Printed per case, measured in this run:
//! median times, the ratio naive/tree (median of the per-round ratios), achieved GB/s of
//! DISTINCT K/V bytes (the IO floor: every distinct byte once) for the tree, and the merge's share
//! of the tree time (tree_decode and merge_states timed separately). On CUDA also cold-L2 times
//! (a 256 MiB write between runs); host-timed, so each GPU figure includes one launch latency.
//! Computed, not measured: `cuda_kv_x`, the K/V re-read factor of the CUDA decode tile on the
//! tree plan for the table's dtype and heads (`ops::cuda_kv_reread`, sm_80+ paths): each work
//! item's K/V is read once per pass of 64 (tensor cores) or 16 query vectors, averaged over the
//! items weighted by their tokens; 1.00 = one pass per item, the floor for that plan.
//! Then criterion's own measurements of `naive` and `tree`, and (x86_64) the `TILE_WIDTHS` table:
//! one thread's useful GFLOP/s of the CPU tile per kernel set (reference, 8-lane AVX2, 16-lane
//! AVX-512) by query vectors `m`, with the set the tile picks for that `m`.
//!
//! Targets (CPU, checked every run, each `TARGET` line next to the machine's load: ratios taken
//! under load from other jobs are skewed): tree ≥ 3× naive at 16×(1k+64), ≥ 4× at 16×(4k+64),
//! ≥ 0.95× for the single leaf 1×(1k+64).
//!
//! `cargo bench -p treepo-benches --bench tree_decode` (filters go to criterion only).

use std::time::{Duration, Instant};

use criterion::Criterion;
use tree_attn::plan::plan;
use tree_attn::{
    DecodeWorkspace, LeafPageTable, LeafQuery, NodeKv, PlanKind, PlanOptions, TreeKvView,
};
use treepo_kernels::ops::{self, DecodeParams, DecodePlanBuffers, PageTable, PagedKvLayout};
use treepo_kernels::testing::Rng;
use treepo_kernels::{AdapterPolicy, BackendKind, Buffer, Device, FloatElement, bf16, f16};

const PAGE: u32 = 16;
const CASES: &[(&str, &[(usize, u32)])] = &[
    ("16x(1k+64)", &[(1, 1024), (16, 64)]),
    ("16x(1k+256)", &[(1, 1024), (16, 256)]),
    ("16x(4k+64)", &[(1, 4096), (16, 64)]),
    ("64x(1k+64)", &[(1, 1024), (64, 64)]),
    ("1k>4x256>16x64", &[(1, 1024), (4, 256), (4, 64)]),
    ("1x(1k+64)", &[(1, 1024), (1, 64)]),
];
/// Parallel workers assumed on a GPU for `Auto` (about an H100's 132 SMs).
const GPU_UNITS: u32 = 128;

/// The variants on identical data: `naive` first, the default tree plan second.
fn variants(units: u32) -> [(&'static str, Option<PlanKind>); 5] {
    [
        ("naive", None),
        ("tree", Some(PlanKind::Auto { units })),
        ("nosplit", Some(PlanKind::Tree)),
        ("split256", Some(PlanKind::TreeSplit { max_chunk: 256 })),
        ("cascade", Some(PlanKind::Cascade)),
    ]
}

/// One backend's configuration.
struct Config {
    dev: Device,
    hq: usize,
    hkv: usize,
    d: usize,
    /// Software adapter or test mode: one timed round, no criterion.
    slow: bool,
    /// `Auto` units: parallel workers per KV head.
    units: u32,
}

/// A tree built level by level: `levels[i] = (children per node of level i-1, tokens)`.
struct Tree {
    nodes: Vec<NodeKv>,
    page_ids: Vec<i32>,
    leaves: Vec<LeafQuery>,
    num_pages: usize,
}

impl Tree {
    fn build(levels: &[(usize, u32)], rng: &mut Rng) -> Tree {
        let mut nodes: Vec<NodeKv> = Vec::new();
        let mut frontier: Vec<Option<u32>> = vec![None];
        for &(fanout, tokens) in levels {
            let mut next = Vec::new();
            for &parent in &frontier {
                for _ in 0..fanout {
                    let start = parent.map_or(0, |p| nodes[p as usize].kv_end);
                    nodes.push(NodeKv {
                        parent,
                        kv_start: start,
                        kv_end: start + tokens,
                        pages: 0..0,
                    });
                    next.push(Some(nodes.len() as u32 - 1));
                }
            }
            frontier = next;
        }
        let need: u32 = nodes.iter().map(|n| (n.kv_end - n.kv_start).div_ceil(PAGE)).sum();
        let num_pages = need as usize + 8;
        let mut pool: Vec<i32> = rng.permutation(num_pages).into_iter().map(|p| p as i32).collect();
        let mut page_ids = Vec::new();
        for n in &mut nodes {
            let start = page_ids.len() as u32;
            for _ in 0..(n.kv_end - n.kv_start).div_ceil(PAGE) {
                page_ids.push(pool.pop().unwrap_or(0));
            }
            n.pages = start..page_ids.len() as u32;
        }
        let leaves = frontier.iter().flatten().map(|&node| LeafQuery { node, q_rows: 1 }).collect();
        Tree { nodes, page_ids, leaves, num_pages }
    }

    fn view(&self) -> TreeKvView<'_> {
        TreeKvView { page_size: PAGE, nodes: &self.nodes, page_ids: &self.page_ids }
    }
}

/// Everything one case needs on the device.
struct Setup<T: FloatElement> {
    layout: PagedKvLayout,
    kv: Buffer<T>,
    q: Buffer<T>,
    out: Buffer<T>,
    table: PageTable,
    plans: Vec<(DecodePlanBuffers, DecodeWorkspace)>,
    params: DecodeParams,
    distinct_bytes: f64,
    /// `ops::cuda_kv_reread` of the default tree plan.
    cuda_kv_x: f64,
}

impl<T: FloatElement> Setup<T> {
    fn new(cfg: &Config, tree: &Tree, rng: &mut Rng) -> Setup<T> {
        let dev = &cfg.dev;
        let layout = PagedKvLayout::hnd(1, tree.num_pages, cfg.hkv, PAGE as usize, cfg.d);
        let n = layout.required_len().expect("layout size");
        let kv: Vec<T> = rng.normals(n, 1.0).into_iter().map(T::from_f32).collect();
        let rows = tree.leaves.len();
        let q: Vec<T> =
            rng.normals(rows * cfg.hq * cfg.d, 1.0).into_iter().map(T::from_f32).collect();
        let mut table = LeafPageTable::new();
        table.build_into(&tree.view(), &tree.leaves).expect("leaf table");
        let group = (cfg.hq / cfg.hkv) as u32;
        let mut plans = Vec::new();
        let mut distinct = 0;
        let mut cuda_kv_x = 0.0;
        for (i, &(_, kind)) in variants(cfg.units).iter().skip(1).enumerate() {
            let kind = kind.expect("plan kinds");
            let p = plan(&tree.view(), &tree.leaves, &PlanOptions::new(kind, group)).expect("plan");
            distinct = p.distinct_tokens();
            if i == 0 {
                cuda_kv_x = ops::cuda_kv_reread(T::DTYPE, group as usize, p.work(), true);
            }
            let bufs = p.upload(dev, tree.num_pages).expect("upload plan");
            let ws = DecodeWorkspace::new(dev, &bufs, cfg.hq, cfg.d).expect("workspace");
            plans.push((bufs, ws));
        }
        Setup {
            layout,
            kv: dev.upload(&kv).expect("upload kv"),
            q: dev.upload(&q).expect("upload q"),
            out: dev.zeros(rows * cfg.hq * cfg.d).expect("out"),
            table: table.upload(dev, tree.num_pages).expect("upload table"),
            plans,
            params: DecodeParams {
                num_qo_heads: cfg.hq,
                layer: 0,
                sm_scale: (cfg.d as f32).powf(-0.5),
            },
            distinct_bytes: distinct as f64 * (2 * cfg.hkv * cfg.d * T::DTYPE.size()) as f64,
            cuda_kv_x,
        }
    }

    /// Runs variant `v` (0 = naive) once, without waiting.
    fn run(&mut self, dev: &Device, v: usize) {
        let r = if v == 0 {
            tree_attn::naive(
                dev,
                &self.table,
                &self.q,
                &self.kv,
                &self.layout,
                &self.params,
                &mut self.out,
                None,
            )
        } else {
            let (bufs, ws) = &mut self.plans[v - 1];
            tree_attn::decode(
                dev,
                bufs,
                ws,
                &self.q,
                &self.kv,
                &self.layout,
                &self.params,
                &mut self.out,
                None,
            )
        };
        r.expect("decode");
    }

    /// The default tree plan's two halves, once each.
    fn run_half(&mut self, dev: &Device, merge: bool) {
        let (bufs, ws) = &mut self.plans[0];
        let (p, layout) = (&self.params, &self.layout);
        let r = if merge {
            tree_attn::decode::merge_only(dev, bufs, ws, p, layout.head_dim, self.out.view_mut())
        } else {
            tree_attn::decode::tree_decode_only(
                dev,
                bufs,
                ws,
                &self.q,
                &self.kv,
                layout,
                p,
                self.out.view_mut(),
                None,
            )
        };
        r.expect("half");
    }

    fn output(&self, dev: &Device) -> Vec<f32> {
        dev.download(&self.out).expect("download").into_iter().map(|x| x.to_f32()).collect()
    }
}

/// Interleaved timing: each round runs every variant `0..n` once, in order, each run followed
/// by a device synchronize (`flush`, when given, runs untimed before each). Returns
/// `samples[variant][round]`.
fn interleaved(
    dev: &Device,
    slow: bool,
    n: usize,
    mut run: impl FnMut(usize),
    mut flush: Option<&mut dyn FnMut()>,
) -> Vec<Vec<Duration>> {
    let (min_rounds, budget) =
        if slow { (1, Duration::ZERO) } else { (9, Duration::from_millis(1500)) };
    for v in 0..n {
        run(v);
    }
    dev.synchronize().expect("sync");
    let mut samples = vec![Vec::new(); n];
    let start = Instant::now();
    while samples[0].len() < min_rounds || (start.elapsed() < budget && samples[0].len() < 400) {
        for (v, out) in samples.iter_mut().enumerate() {
            if let Some(fl) = flush.as_mut() {
                fl();
                dev.synchronize().expect("sync");
            }
            let t = Instant::now();
            run(v);
            dev.synchronize().expect("sync");
            out.push(t.elapsed());
        }
    }
    samples
}

fn median<T: Copy + PartialOrd>(v: &[T]) -> T {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v[v.len() / 2]
}

/// Median over rounds of `a[i] / b[i]` (robust to load that drifts between rounds).
fn ratio(a: &[Duration], b: &[Duration]) -> f64 {
    let r: Vec<f64> = a.iter().zip(b).map(|(x, y)| x.as_secs_f64() / y.as_secs_f64()).collect();
    median(&r)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The summary table of one backend, then (when `criterion`) criterion's groups.
fn summary<T: FloatElement>(cfg: &Config, name: &str, c: &mut Criterion, criterion: bool) {
    let dev = &cfg.dev;
    println!(
        "\nTREE_DECODE backend={name} device=\"{}\" heads={}q/{}kv head_dim={} dtype={} \
         page={PAGE} tree=Auto{{units: {}}} (one layer, one query row per leaf; medians of \
         interleaved rounds; ratio = median of per-round naive/tree)",
        dev.description(),
        cfg.hq,
        cfg.hkv,
        cfg.d,
        T::DTYPE,
        cfg.units,
    );
    let cuda = dev.kind() == BackendKind::Cuda;
    let mut flush_bufs = if cuda {
        let n = 64 << 20; // 256 MiB of f32: larger than any L2
        Some((dev.zeros::<f32>(n).expect("flush"), dev.zeros::<f32>(n).expect("flush"), n))
    } else {
        None
    };
    println!(
        "{:<16} {:>10} {:>10} {:>7} {:>10} {:>11} {:>10} {:>11} {:>9} {:>7} {:>9}{}",
        "case",
        "naive_ms",
        "tree_ms",
        "ratio",
        "nosplit_ms",
        "split256_ms",
        "cascade_ms",
        "distinct_MB",
        "tree_GB/s",
        "merge%",
        "cuda_kv_x",
        if cuda { "  cold: naive_ms tree_ms ratio" } else { "" }
    );
    let mut rng = Rng::new(0x7ee_dec0de);
    for &(case, levels) in CASES {
        let tree = Tree::build(levels, &mut rng);
        let mut s = Setup::<T>::new(cfg, &tree, &mut rng);
        let vars = variants(cfg.units);
        let samples = interleaved(dev, cfg.slow, vars.len(), |v| s.run(dev, v), None);
        let times: Vec<Duration> = samples.iter().map(|v| median(v)).collect();
        let speedup = ratio(&samples[0], &samples[1]);
        // Same data, same answer: the tree output against the naive one.
        s.run(dev, 0);
        let want = s.output(dev);
        s.run(dev, 1);
        let err = s.output(dev).iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        let halves = interleaved(dev, cfg.slow, 2, |h| s.run_half(dev, h == 1), None);
        let (t_attn, t_merge) = (median(&halves[0]), median(&halves[1]));
        let merge_pct = 100.0 * t_merge.as_secs_f64() / (t_attn + t_merge).as_secs_f64();
        let gbs = s.distinct_bytes / times[1].as_secs_f64() / 1e9;
        let mut cold = String::new();
        if let Some((a, b, n)) = flush_bufs.as_mut() {
            let mut fl = || ops::residual_add(dev, &mut *a, &*b, *n).expect("flush");
            let c = interleaved(dev, cfg.slow, 2, |v| s.run(dev, v), Some(&mut fl));
            let (cn, ct) = (median(&c[0]), median(&c[1]));
            cold = format!("  cold: {:.4} {:.4} {:.2}x", ms(cn), ms(ct), ratio(&c[0], &c[1]));
        }
        println!(
            "{case:<16} {:>10.4} {:>10.4} {:>6.2}x {:>10.4} {:>11.4} {:>10.4} {:>11.2} {:>9.2} \
             {:>6.1}% {:>9.2}{cold}   (max |tree-naive| {err:.1e})",
            ms(times[0]),
            ms(times[1]),
            speedup,
            ms(times[2]),
            ms(times[3]),
            ms(times[4]),
            s.distinct_bytes / 1e6,
            gbs,
            merge_pct,
            s.cuda_kv_x,
        );
        if dev.kind() == BackendKind::Cpu {
            let target = match case {
                "16x(1k+64)" => Some(3.0),
                "16x(4k+64)" => Some(4.0),
                "1x(1k+64)" => Some(0.95),
                _ => None,
            };
            if let Some(t) = target {
                let verdict = if speedup >= t { "MET" } else { "MISSED" };
                treepo_benches::print_load();
                println!(
                    "TARGET cpu {case}: tree/naive speedup {speedup:.2}x, target >= {t}x: {verdict}"
                );
            }
        }
        if criterion {
            let mut g = c.benchmark_group(format!("tree_decode/{name}/{case}"));
            for (v, &(vname, _)) in vars.iter().enumerate().take(2) {
                g.bench_function(vname, |b| {
                    b.iter(|| {
                        s.run(dev, v);
                        dev.synchronize().expect("sync");
                    })
                });
            }
            g.finish();
        }
    }
}

fn main() {
    treepo_benches::print_load_once();
    let full = std::env::args().any(|a| a == "--bench");
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .configure_from_args();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
    let cpu = Config {
        dev: Device::cpu(),
        hq: 8,
        hkv: 2,
        d: 128,
        slow: !full,
        units: (threads / 2).max(1),
    };
    summary::<f32>(&cpu, "cpu", &mut c, full);
    #[cfg(target_arch = "x86_64")]
    treepo_benches::tile_widths::print();
    let software = std::env::var("TREEPO_BENCH_WGPU").is_ok_and(|v| v == "software");
    let policy = if software { AdapterPolicy::AllowSoftware } else { AdapterPolicy::HardwareOnly };
    match Device::wgpu(policy) {
        Ok(dev) => {
            // A real GPU gets the Llama-3-8B-like heads; lavapipe the CPU's.
            let (hq, hkv) = if software { (8, 2) } else { (32, 8) };
            let f16 = dev.supports_f16() && !software;
            let units = (GPU_UNITS / hkv as u32).max(1);
            let cfg = Config { dev, hq, hkv, d: 128, slow: software || !full, units };
            if f16 {
                summary::<f16>(&cfg, "wgpu", &mut c, full && !software);
            } else {
                summary::<f32>(&cfg, "wgpu", &mut c, full && !software);
            }
        }
        Err(e) => {
            println!("SKIP wgpu: {e} (TREEPO_BENCH_WGPU=software runs lavapipe, one timed round)")
        }
    }
    match Device::cuda(0) {
        Ok(dev) => {
            let cfg = Config { dev, hq: 32, hkv: 8, d: 128, slow: !full, units: GPU_UNITS / 8 };
            summary::<bf16>(&cfg, "cuda", &mut c, full);
        }
        Err(e) => println!("SKIP cuda: {e}"),
    }
    c.final_summary();
}
