//! The fast packed attention twin (`cpu::fast::packed_attention`, what the CPU backend runs)
//! against its readable reference (`cpu::packed_attention_fwd`, `cpu::packed_attention_bwd`) on
//! fresh random forests with NaN-poisoned outputs: GQA groups of 1, 2 and 4 (vectors around the
//! 8-lane panels), head sizes 8, 20, 64 and 128, token counts around the 16-row tiles, deep and
//! wide trees (partial, full and empty blocks). Forward `o`, `lse`; backward `delta`, `dq`,
//! `dk`, `dv`. The dense f64 conformance of the CPU backend (hence of this twin) is
//! tree-attn's `packed_attention_*` suite. Each check prints its maximum error
//! (`-- --nocapture`).

use treepo_kernels::Element;
use treepo_kernels::cpu::fast::packed_attention as fast;
use treepo_kernels::cpu::packed_attention_bwd::{self as bwd, BwdInputs};
use treepo_kernels::cpu::packed_attention_fwd::{self as fwd, Mask, Shape, TILE};
use treepo_kernels::testing::{Rng, Tol, assert_close};

/// Both f32, different summation orders (and the fast twin's polynomial exp).
const TOL: Tol = Tol { atol: 3e-5, rtol: 3e-5 };

/// A random forest in DFS order: per token its `kv_row_end` (the end of its node's subtree),
/// and the per-block `(min, max)` bounds.
fn random_mask(rng: &mut Rng, n_target: usize) -> (Vec<i32>, Vec<i32>) {
    let mut ends = Vec::new();
    fn grow(rng: &mut Rng, ends: &mut Vec<i32>, depth: usize, budget: usize) {
        let len = 1 + rng.below(24);
        let start = ends.len();
        ends.extend(std::iter::repeat_n(0, len));
        if depth < 4 {
            for _ in 0..rng.below(4) {
                if ends.len() < budget {
                    grow(rng, ends, depth + 1, budget);
                }
            }
        }
        let end = ends.len() as i32;
        ends[start..start + len].fill(end);
    }
    while ends.len() < n_target {
        grow(rng, &mut ends, 0, n_target);
    }
    let bounds = ends
        .chunks(TILE)
        .flat_map(|c| [*c.iter().min().unwrap(), *c.iter().max().unwrap()])
        .collect();
    (ends, bounds)
}

/// A backward pass's signature (the reference's and the fast twin's).
type Backward = fn(BwdInputs<'_>, Mask<'_>, &mut [f32], &mut [f32], &mut [f32], &mut [f32], Shape);

fn poison(n: usize) -> Vec<f32> {
    vec![f32::POISON; n]
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

fn case(rng: &mut Rng, n_target: usize, hq: usize, hkv: usize, d: usize) {
    let (ends, bounds) = random_mask(rng, n_target);
    let n = ends.len();
    let mask = Mask { kv_row_end: &ends, block_bounds: &bounds };
    let s = Shape {
        num_tokens: n,
        num_qo_heads: hq,
        num_kv_heads: hkv,
        head_dim: d,
        sm_scale: 1.0 / (d as f32).sqrt(),
    };
    let (nq, nkv) = (n * hq * d, n * hkv * d);
    let (q, k, v, d_o) =
        (rng.normals(nq, 1.0), rng.normals(nkv, 1.0), rng.normals(nkv, 1.0), rng.normals(nq, 1.0));
    let what = format!("N={n} heads {hq}/{hkv} D={d}");
    let (mut o_r, mut l_r) = (poison(nq), poison(hq * n));
    fwd::forward(&q, &k, &v, mask, &mut o_r, &mut l_r, s);
    let (mut o_f, mut l_f) = (poison(nq), poison(hq * n));
    fast::forward(&q, &k, &v, mask, &mut o_f, &mut l_f, s);
    let e_o = assert_close(&format!("{what}: o"), &o_f, &f64s(&o_r), TOL);
    let e_l = assert_close(&format!("{what}: lse"), &l_f, &f64s(&l_r), TOL);
    let x = BwdInputs { q: &q, k: &k, v: &v, o: &o_r, d_o: &d_o, lse: &l_r };
    let run = |f: Backward| {
        let (mut de, mut dq, mut dk, mut dv) =
            (poison(hq * n), poison(nq), poison(nkv), poison(nkv));
        f(x, mask, &mut de, &mut dq, &mut dk, &mut dv, s);
        (de, dq, dk, dv)
    };
    let r = run(bwd::backward);
    let f = run(fast::backward);
    let e_de = assert_close(&format!("{what}: delta"), &f.0, &f64s(&r.0), TOL);
    let e_dq = assert_close(&format!("{what}: dq"), &f.1, &f64s(&r.1), TOL);
    let e_dk = assert_close(&format!("{what}: dk"), &f.2, &f64s(&r.2), TOL);
    let e_dv = assert_close(&format!("{what}: dv"), &f.3, &f64s(&r.3), TOL);
    println!(
        "{what}: max err vs reference twin o {e_o:.1e} lse {e_l:.1e} delta {e_de:.1e} dq \
         {e_dq:.1e} dk {e_dk:.1e} dv {e_dv:.1e}"
    );
}

#[test]
fn packed_attention_matches_reference_twin() {
    let mut rng = Rng::fresh("cpu_fast packed_attention");
    println!("AVX2 kernels on this CPU: {}", treepo_kernels::cpu::fast::decode_tile::available());
    for (hq, hkv) in [(1, 1), (4, 2), (8, 2), (3, 3)] {
        for d in [8, 20, 64, 128] {
            let n = [1, 15, 17, 64, 150][rng.below(5)];
            case(&mut rng, n, hq, hkv, d);
        }
    }
    // Long enough for several 128-column chunks in one query tile.
    case(&mut rng, 400, 8, 2, 64);
}
