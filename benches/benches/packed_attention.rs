//! Tree-masked packed attention vs the same leaves flattened one by one (per-leaf causal
//! attention over each leaf's own sequence: what per-branch training computes), forward and
//! forward+backward, per available backend.
//!
//! For each scenario the summary line gives the token-reduction ratio (flat tokens / tree
//! tokens), the measured time ratio (flat / tree; medians of `REPS` runs in this process) and
//! useful FLOP/s (unmasked pairs only: forward `4·D·H_q` per visible query×key pair, backward
//! 2.5× that), and that rate as a fraction of the same-shape GEMM's, measured in the same run:
//! `[N·H_q/H_kv, D] × [N, D]ᵀ`, the dense score product of one KV head's query heads (issue
//! target on the CPU: fwd+bwd of the TreePO tree ≥ 40 %, printed as a `TARGET` line). Criterion
//! then times each case.
//!
//! Run: `cargo bench -p treepo-benches --bench packed_attention` (`-- --quick` for a short run).

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use tree_attn::packed::{
    PackNode, PackedAttentionGrads, PackedAttentionParams, PackedAttentionSaved, PackedTree,
    TreeMask, packed_attention_bwd, packed_attention_fwd,
};
use treepo_kernels::ops::{GemmSpec, gemm};
use treepo_kernels::testing::{Rng, skip};
use treepo_kernels::{AdapterPolicy, BackendKind, Buffer, Device, Result};

const REPS: usize = 5;

/// TreePO-like: a 64-token prompt, then 6 segments of 32 tokens per leaf; the first segment is
/// shared, the next four split in two (16 leaves), the last continues each leaf.
fn treepo_tree() -> Vec<PackNode> {
    let mut nodes = vec![PackNode::root(64), PackNode::child(0, 32)];
    fn split(nodes: &mut Vec<PackNode>, parent: u32, levels: usize) {
        for _ in 0..2 {
            let id = nodes.len() as u32;
            nodes.push(PackNode::child(parent, 32));
            if levels > 1 {
                split(nodes, id, levels - 1);
            } else {
                nodes.push(PackNode::child(id, 32));
            }
        }
    }
    split(&mut nodes, 1, 4);
    nodes
}

/// Two levels: one 512-token prefix, 16 suffixes of 64 tokens.
fn two_level_tree() -> Vec<PackNode> {
    let mut nodes = vec![PackNode::root(512)];
    nodes.extend((0..16).map(|_| PackNode::child(0, 64)));
    nodes
}

/// The leaves of `tree` as independent chains (one single-node tree per leaf).
fn flattened(tree: &PackedTree) -> Vec<PackNode> {
    (0..tree.num_leaves()).map(|l| PackNode::root(tree.leaf_tokens(l).len() as u32)).collect()
}

struct Case {
    mask: TreeMask,
    n: usize,
    q: Buffer<f32>,
    kv: Buffer<f32>,
    o: Buffer<f32>,
    lse: Buffer<f32>,
    grads: [Buffer<f32>; 4],
}

impl Case {
    fn new(dev: &Device, tree: &PackedTree, p: &PackedAttentionParams) -> Result<Case> {
        let n = tree.num_tokens();
        let mut rng = Rng::new(n as u64);
        let (nq, nkv) = (n * p.num_qo_heads * p.head_dim, n * p.num_kv_heads * p.head_dim);
        Ok(Case {
            mask: tree.upload_mask(dev)?,
            n,
            q: dev.upload(&rng.normals(nq, 1.0))?,
            kv: dev.upload(&rng.normals(nkv, 1.0))?,
            o: dev.zeros(nq)?,
            lse: dev.zeros(p.num_qo_heads * n)?,
            grads: [
                dev.zeros(nq)?,
                dev.zeros(nkv)?,
                dev.zeros(nkv)?,
                dev.zeros(p.num_qo_heads * n)?,
            ],
        })
    }

    fn fwd(&mut self, dev: &Device, p: &PackedAttentionParams) -> Result<()> {
        packed_attention_fwd(
            dev,
            &self.q,
            &self.kv,
            &self.kv,
            &self.mask,
            &mut self.o,
            &mut self.lse,
            p,
        )?;
        dev.synchronize()
    }

    fn fwd_bwd(&mut self, dev: &Device, p: &PackedAttentionParams) -> Result<()> {
        packed_attention_fwd(
            dev,
            &self.q,
            &self.kv,
            &self.kv,
            &self.mask,
            &mut self.o,
            &mut self.lse,
            p,
        )?;
        let saved = PackedAttentionSaved {
            q: self.q.view(),
            k: self.kv.view(),
            v: self.kv.view(),
            o: self.o.view(),
            lse: self.lse.view(),
        };
        let [dq, dk, dv, delta] = &mut self.grads;
        let grads = PackedAttentionGrads {
            dq: dq.view_mut(),
            dk: dk.view_mut(),
            dv: dv.view_mut(),
            delta: delta.view_mut(),
        };
        // d_o = o's buffer shape; any values do (q is a fine stand-in).
        packed_attention_bwd(dev, saved, &self.q, &self.mask, grads, p)?;
        dev.synchronize()
    }
}

fn median(mut f: impl FnMut() -> Result<()>) -> Result<Duration> {
    f()?;
    let mut t: Vec<Duration> = (0..REPS)
        .map(|_| {
            let s = Instant::now();
            f().map(|_| s.elapsed())
        })
        .collect::<Result<_>>()?;
    t.sort();
    Ok(t[REPS / 2])
}

/// GFLOP/s of the same-shape GEMM (see the module doc) on `dev`.
fn gemm_rate(dev: &Device, n: usize, p: &PackedAttentionParams) -> Result<f64> {
    let m = n * p.num_qo_heads / p.num_kv_heads;
    let spec = GemmSpec::linear(m, n, p.head_dim);
    let mut rng = Rng::new(7);
    let a = dev.upload(&rng.normals(m * p.head_dim, 1.0))?;
    let b = dev.upload(&rng.normals(n * p.head_dim, 1.0))?;
    let mut c = dev.zeros::<f32>(m * n)?;
    let t = median(|| {
        gemm(dev, &a, &b, &mut c, &spec)?;
        dev.synchronize()
    })?;
    Ok(spec.flops() / t.as_secs_f64() / 1e9)
}

/// Seconds of the readable reference twin's forward + backward (`cpu::packed_attention_*`,
/// what the CPU backend ran before its fast twin) on `tree`: the same run's baseline.
fn reference_twin(tree: &PackedTree, p: &PackedAttentionParams) -> Duration {
    use treepo_kernels::cpu::packed_attention_bwd::{BwdInputs, backward};
    use treepo_kernels::cpu::packed_attention_fwd::{Mask, Shape, TILE, forward};
    let ends = tree.kv_row_end();
    let n = ends.len();
    let bounds: Vec<i32> = ends
        .chunks(TILE)
        .flat_map(|c| [*c.iter().min().unwrap_or(&0), *c.iter().max().unwrap_or(&0)])
        .collect();
    let mask = Mask { kv_row_end: ends, block_bounds: &bounds };
    let s = Shape {
        num_tokens: n,
        num_qo_heads: p.num_qo_heads,
        num_kv_heads: p.num_kv_heads,
        head_dim: p.head_dim,
        sm_scale: 1.0 / (p.head_dim as f32).sqrt(),
    };
    let mut rng = Rng::new(5);
    let (nq, nkv) = (n * p.num_qo_heads * p.head_dim, n * p.num_kv_heads * p.head_dim);
    let (q, kv) = (rng.normals(nq, 1.0), rng.normals(nkv, 1.0));
    let (mut o, mut lse, mut delta) =
        (vec![0f32; nq], vec![0f32; p.num_qo_heads * n], vec![0f32; p.num_qo_heads * n]);
    let (mut dq, mut dk, mut dv) = (vec![0f32; nq], vec![0f32; nkv], vec![0f32; nkv]);
    median(|| {
        forward(&q, &kv, &kv, mask, &mut o, &mut lse, s);
        let x = BwdInputs { q: &q, k: &kv, v: &kv, o: &o, d_o: &q, lse: &lse };
        backward(x, mask, &mut delta, &mut dq, &mut dk, &mut dv, s);
        Ok(())
    })
    .unwrap_or(Duration::MAX)
}

fn devices() -> Vec<Device> {
    let mut out = vec![Device::cpu()];
    match Device::wgpu(AdapterPolicy::AllowSoftware) {
        Ok(d) => out.push(d),
        Err(e) => skip("packed_attention wgpu", &e.to_string()),
    }
    match Device::cuda(0) {
        Ok(d) => out.push(d),
        Err(e) => skip("packed_attention cuda", &e.to_string()),
    }
    out
}

fn bench(c: &mut Criterion) {
    treepo_benches::print_load_once();
    let scenarios =
        [("treepo 64+6x32 w16", treepo_tree()), ("2-level 512+16x64", two_level_tree())];
    for dev in devices() {
        // CUDA: Llama-3-8B-like heads; elsewhere smaller so a 2-core machine finishes.
        let p = if dev.kind() == BackendKind::Cuda {
            PackedAttentionParams::new(32, 8, 128)
        } else {
            PackedAttentionParams::new(8, 2, 64)
        };
        let name = dev.kind().name();
        for (label, nodes) in &scenarios {
            let tree = PackedTree::pack(nodes).expect("scenario trees are valid");
            let flat = PackedTree::pack(&flattened(&tree)).expect("flattened leaves are valid");
            let (mut t, mut f) = match (Case::new(&dev, &tree, &p), Case::new(&dev, &flat, &p)) {
                (Ok(t), Ok(f)) => (t, f),
                (Err(e), _) | (_, Err(e)) => {
                    skip(&format!("packed_attention {name} {label}"), &e.to_string());
                    continue;
                }
            };
            let pairs = (t.mask.visible_pairs(), f.mask.visible_pairs());
            for (pass, bwd) in [("fwd", false), ("fwd+bwd", true)] {
                let run = |c: &mut Case| if bwd { c.fwd_bwd(&dev, &p) } else { c.fwd(&dev, &p) };
                let (tt, tf) = match (median(|| run(&mut t)), median(|| run(&mut f))) {
                    (Ok(a), Ok(b)) => (a, b),
                    (Err(e), _) | (_, Err(e)) => {
                        skip(&format!("packed_attention {name} {label} {pass}"), &e.to_string());
                        continue;
                    }
                };
                let mult = if bwd { 3.5 } else { 1.0 };
                let gflops =
                    |pairs: u64, d: Duration| p.flops(pairs) * mult / d.as_secs_f64() / 1e9;
                println!(
                    "packed_attention {name} [{label}] {pass}: tokens tree {} flat {} (reduction {:.2}x) | \
                     time tree {:.3} ms flat {:.3} ms (ratio {:.2}x) | useful GFLOP/s tree {:.2} flat {:.2}",
                    t.n,
                    f.n,
                    tree.token_reduction(),
                    tt.as_secs_f64() * 1e3,
                    tf.as_secs_f64() * 1e3,
                    tf.as_secs_f64() / tt.as_secs_f64(),
                    gflops(pairs.0, tt),
                    gflops(pairs.1, tf),
                );
                match gemm_rate(&dev, t.n, &p) {
                    Ok(peak) => {
                        let frac = gflops(pairs.0, tt) / peak;
                        println!(
                            "packed_attention {name} [{label}] {pass}: tree {:.2} useful GFLOP/s = \
                             {:.0} % of the same-shape GEMM ({peak:.1} GFLOP/s)",
                            gflops(pairs.0, tt),
                            frac * 100.0
                        );
                        if bwd && dev.kind() == BackendKind::Cpu {
                            let r = reference_twin(&tree, &p);
                            println!(
                                "packed_attention cpu [{label}] fwd+bwd: reference twin {:.3} ms \
                                 ({:.2} useful GFLOP/s, {:.0} % of the GEMM); fast twin {:.2}x \
                                 faster",
                                r.as_secs_f64() * 1e3,
                                gflops(pairs.0, r),
                                gflops(pairs.0, r) / peak * 100.0,
                                r.as_secs_f64() / tt.as_secs_f64()
                            );
                        }
                        if bwd && dev.kind() == BackendKind::Cpu && label.starts_with("treepo") {
                            println!(
                                "TARGET packed attention fwd+bwd >= 40 % of the GEMM rate on the \
                                 CPU: {:.0} % {}",
                                frac * 100.0,
                                if frac >= 0.40 { "met" } else { "MISSED" },
                            );
                            treepo_benches::print_load();
                        }
                    }
                    Err(e) => skip(&format!("packed_attention {name} gemm rate"), &e.to_string()),
                }
                let mut g = c.benchmark_group(format!("packed_attention/{name}/{label}/{pass}"));
                g.sample_size(10).warm_up_time(Duration::from_millis(200));
                g.measurement_time(Duration::from_secs(2));
                g.bench_function("tree", |b| b.iter(|| run(&mut t).expect("validated above")));
                g.bench_function("flat", |b| b.iter(|| run(&mut f).expect("validated above")));
                g.finish();
            }
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
