//! Shared by the packed-attention tests: random forests, the dense f64 reference with an
//! explicit boolean mask built from the tree's parents (not from `kv_row_end`), and device
//! runners generic over the element type.

#![allow(dead_code)]

use tree_attn::packed::{
    PackNode, PackedAttentionGrads, PackedAttentionParams, PackedAttentionSaved, PackedTree,
    TreeMask, packed_attention_bwd, packed_attention_fwd,
};
use treepo_kernels::testing::{Rng, Tol, poisoned};
use treepo_kernels::{BackendKind, DType, Device, FloatElement, bf16, f16};

/// A random forest in DFS pre-order: `trees` trees, unbalanced, up to `depth` levels below the
/// root, 0..=`max_children` children per node, 1..=`max_tokens` tokens per node (a non-root node
/// occasionally has none).
pub fn random_forest(
    rng: &mut Rng,
    trees: usize,
    depth: usize,
    max_children: usize,
    max_tokens: usize,
) -> Vec<PackNode> {
    let mut nodes = Vec::new();
    for _ in 0..trees {
        let root = nodes.len() as u32;
        nodes.push(PackNode::root(1 + rng.below(max_tokens) as u32));
        grow(rng, &mut nodes, root, depth, max_children, max_tokens);
    }
    nodes
}

/// [`random_forest`] redrawn until it packs to at most `max_tokens_total` tokens (test sizes stay
/// within the dense reference's budget and the software adapter's loop budget).
pub fn bounded_forest(
    rng: &mut Rng,
    trees: usize,
    depth: usize,
    max_children: usize,
    max_tokens: usize,
    max_tokens_total: usize,
) -> Vec<PackNode> {
    loop {
        let nodes = random_forest(rng, trees, depth, max_children, max_tokens);
        if nodes.iter().map(|n| n.num_tokens as usize).sum::<usize>() <= max_tokens_total {
            return nodes;
        }
    }
}

fn grow(
    rng: &mut Rng,
    nodes: &mut Vec<PackNode>,
    parent: u32,
    depth: usize,
    max_children: usize,
    max_tokens: usize,
) {
    if depth == 0 {
        return;
    }
    // Unbalanced: a node is a leaf with probability 1/3, else has 1..=max_children children.
    let children = if rng.below(3) == 0 { 0 } else { 1 + rng.below(max_children) };
    for _ in 0..children {
        let id = nodes.len() as u32;
        let tokens = if rng.below(12) == 0 { 0 } else { 1 + rng.below(max_tokens) as u32 };
        nodes.push(PackNode::child(parent, tokens));
        grow(rng, nodes, id, depth - 1, max_children, max_tokens);
    }
}

/// `visible[i * n + j]`: token `j`'s node is an ancestor of token `i`'s node, or the same node
/// with `j <= i` — computed by walking parents.
pub fn dense_mask(nodes: &[PackNode], tree: &PackedTree) -> Vec<bool> {
    let n = tree.num_tokens();
    let mut vis = vec![false; n * n];
    for i in 0..n {
        let own = tree.token_node()[i] as usize;
        let mut u = Some(own);
        while let Some(a) = u {
            for j in tree.node_range(a) {
                vis[i * n + j] = a != own || j <= i;
            }
            u = nodes[a].parent.map(|p| p as usize);
        }
    }
    vis
}

/// Plain causal mask over `n` tokens.
pub fn causal_mask(n: usize) -> Vec<bool> {
    (0..n * n).map(|x| x % n <= x / n).collect()
}

/// Inputs of one problem (host, f32; already rounded to the dtype under test).
#[derive(Clone, Debug)]
pub struct Problem {
    pub n: usize,
    pub p: PackedAttentionParams,
    pub q: Vec<f32>,
    pub k: Vec<f32>,
    pub v: Vec<f32>,
    pub d_o: Vec<f32>,
}

impl Problem {
    pub fn random(rng: &mut Rng, n: usize, p: PackedAttentionParams, dtype: DType) -> Problem {
        let (nq, nkv) = (n * p.num_qo_heads * p.head_dim, n * p.num_kv_heads * p.head_dim);
        let r = |x: Vec<f32>| round_to(dtype, x);
        Problem {
            n,
            p,
            q: r(rng.normals(nq, 1.0)),
            k: r(rng.normals(nkv, 1.0)),
            v: r(rng.normals(nkv, 1.0)),
            d_o: r(rng.normals(nq, 1.0)),
        }
    }
}

/// Rounds values to `dtype` and back.
pub fn round_to(dtype: DType, x: Vec<f32>) -> Vec<f32> {
    match dtype {
        DType::F16 => x.into_iter().map(|v| f16::from_f32(v).to_f32()).collect(),
        DType::BF16 => x.into_iter().map(|v| bf16::from_f32(v).to_f32()).collect(),
        _ => x,
    }
}

/// Dense f64 forward: `(o [N, H_q, D], lse [H_q, N])`.
pub fn reference_fwd(x: &Problem, vis: &[bool]) -> (Vec<f64>, Vec<f64>) {
    let (n, hq, hkv, d) = (x.n, x.p.num_qo_heads, x.p.num_kv_heads, x.p.head_dim);
    let scale = x.p.sm_scale as f64;
    let mut o = vec![0f64; n * hq * d];
    let mut lse = vec![0f64; hq * n];
    for h in 0..hq {
        let g = h / (hq / hkv);
        for i in 0..n {
            let s: Vec<(usize, f64)> = (0..n)
                .filter(|&j| vis[i * n + j])
                .map(|j| {
                    (
                        j,
                        scale
                            * dot64(&x.q[(i * hq + h) * d..][..d], &x.k[(j * hkv + g) * d..][..d]),
                    )
                })
                .collect();
            let m = s.iter().map(|t| t.1).fold(f64::NEG_INFINITY, f64::max);
            let l: f64 = s.iter().map(|t| (t.1 - m).exp()).sum();
            for &(j, sj) in &s {
                let pj = (sj - m).exp() / l;
                for e in 0..d {
                    o[(i * hq + h) * d + e] += pj * x.v[(j * hkv + g) * d + e] as f64;
                }
            }
            lse[h * n + i] = m + l.ln();
        }
    }
    (o, lse)
}

/// Dense f64 backward with `do = x.d_o`: `(dq, dk, dv)`.
pub fn reference_bwd(x: &Problem, vis: &[bool]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (n, hq, hkv, d) = (x.n, x.p.num_qo_heads, x.p.num_kv_heads, x.p.head_dim);
    let scale = x.p.sm_scale as f64;
    let (o, lse) = reference_fwd(x, vis);
    let mut dq = vec![0f64; n * hq * d];
    let mut dk = vec![0f64; n * hkv * d];
    let mut dv = vec![0f64; n * hkv * d];
    for h in 0..hq {
        let g = h / (hq / hkv);
        for i in 0..n {
            let (qi, doi) = (&x.q[(i * hq + h) * d..][..d], &x.d_o[(i * hq + h) * d..][..d]);
            let delta: f64 = (0..d).map(|e| doi[e] as f64 * o[(i * hq + h) * d + e]).sum();
            for j in (0..n).filter(|&j| vis[i * n + j]) {
                let (kj, vj) = (&x.k[(j * hkv + g) * d..][..d], &x.v[(j * hkv + g) * d..][..d]);
                let p = (scale * dot64(qi, kj) - lse[h * n + i]).exp();
                let ds = p * (dot64(doi, vj) - delta);
                for e in 0..d {
                    dq[(i * hq + h) * d + e] += scale * ds * kj[e] as f64;
                    dk[(j * hkv + g) * d + e] += scale * ds * qi[e] as f64;
                    dv[(j * hkv + g) * d + e] += p * doi[e] as f64;
                }
            }
        }
    }
    (dq, dk, dv)
}

fn dot64(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
}

/// The dtypes `dev` runs packed attention in.
pub fn dtypes(dev: &Device) -> Vec<DType> {
    match dev.kind() {
        BackendKind::Cpu => vec![DType::F32],
        BackendKind::Wgpu if dev.supports_f16() => vec![DType::F32, DType::F16],
        BackendKind::Wgpu => vec![DType::F32],
        BackendKind::Cuda => vec![DType::F32, DType::F16, DType::BF16],
    }
}

/// Tolerances of outputs and gradients for `dtype`.
pub fn tol(dtype: DType) -> (Tol, Tol) {
    match dtype {
        DType::F16 => (Tol { atol: 4e-3, rtol: 1e-2 }, Tol { atol: 1e-2, rtol: 2e-2 }),
        DType::BF16 => (Tol { atol: 3e-2, rtol: 4e-2 }, Tol { atol: 6e-2, rtol: 6e-2 }),
        _ => (Tol { atol: 5e-5, rtol: 1e-4 }, Tol { atol: 2e-4, rtol: 5e-4 }),
    }
}

/// Forward and backward on `dev` in dtype `T`: `(o, lse, dq, dk, dv, delta)`, from NaN-poisoned
/// outputs.
pub struct DeviceRun {
    pub o: Vec<f32>,
    pub lse: Vec<f32>,
    pub dq: Vec<f32>,
    pub dk: Vec<f32>,
    pub dv: Vec<f32>,
    pub delta: Vec<f32>,
}

fn up<T: FloatElement>(dev: &Device, x: &[f32]) -> treepo_kernels::Buffer<T> {
    dev.upload(&x.iter().map(|&v| T::from_f32(v)).collect::<Vec<T>>()).unwrap()
}

fn down<T: FloatElement>(dev: &Device, b: &treepo_kernels::Buffer<T>) -> Vec<f32> {
    dev.download(b).unwrap().into_iter().map(|v| v.to_f32()).collect()
}

/// Runs forward (and backward when `backward`) of problem `x` under `mask`.
pub fn run<T: FloatElement>(
    dev: &Device,
    x: &Problem,
    mask: &TreeMask,
    backward: bool,
) -> DeviceRun {
    let (n, hq, hkv, d) = (x.n, x.p.num_qo_heads, x.p.num_kv_heads, x.p.head_dim);
    let (nq, nkv) = (n * hq * d, n * hkv * d);
    let (q, k, v) = (up::<T>(dev, &x.q), up::<T>(dev, &x.k), up::<T>(dev, &x.v));
    let mut o = poisoned::<T>(dev, nq).unwrap();
    let mut lse = poisoned::<f32>(dev, hq * n).unwrap();
    packed_attention_fwd(dev, &q, &k, &v, mask, &mut o, &mut lse, &x.p).unwrap();
    let mut r = DeviceRun {
        o: down(dev, &o),
        lse: dev.download(&lse).unwrap(),
        dq: vec![],
        dk: vec![],
        dv: vec![],
        delta: vec![],
    };
    if backward {
        let d_o = up::<T>(dev, &x.d_o);
        let mut dq = poisoned::<T>(dev, nq).unwrap();
        let mut dk = poisoned::<T>(dev, nkv).unwrap();
        let mut dv = poisoned::<T>(dev, nkv).unwrap();
        let mut delta = poisoned::<f32>(dev, hq * n).unwrap();
        let saved = PackedAttentionSaved {
            q: q.view(),
            k: k.view(),
            v: v.view(),
            o: o.view(),
            lse: lse.view(),
        };
        let grads = PackedAttentionGrads {
            dq: dq.view_mut(),
            dk: dk.view_mut(),
            dv: dv.view_mut(),
            delta: delta.view_mut(),
        };
        packed_attention_bwd(dev, saved, &d_o, mask, grads, &x.p).unwrap();
        r.dq = down(dev, &dq);
        r.dk = down(dev, &dk);
        r.dv = down(dev, &dv);
        r.delta = dev.download(&delta).unwrap();
    }
    r
}

/// [`run`] with the element type chosen at run time.
pub fn run_dtype(
    dev: &Device,
    dtype: DType,
    x: &Problem,
    mask: &TreeMask,
    backward: bool,
) -> DeviceRun {
    match dtype {
        DType::F16 => run::<f16>(dev, x, mask, backward),
        DType::BF16 => run::<bf16>(dev, x, mask, backward),
        _ => run::<f32>(dev, x, mask, backward),
    }
}

/// `(H_q, H_kv)` pairs covering GQA groups 1, 4 and 8.
pub const HEADS: [(usize, usize); 3] = [(2, 2), (4, 1), (8, 1)];

/// Gathers rows `idx` of a `[N, heads, d]` array.
pub fn gather_rows(x: &[f32], idx: &[u32], row_len: usize) -> Vec<f32> {
    idx.iter().flat_map(|&i| x[i as usize * row_len..][..row_len].iter().copied()).collect()
}
