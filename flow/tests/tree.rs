//! The sampler's layouts: the tree's shape (leaves, transitions, paths, parents, NFE), the flat
//! groups and the ODE evaluation; that the recorded transitions are the steps the sampler took;
//! one advantage per transition; the window's motion over iterations; determinism in the seed.

use crate::common::{Errors, TINY, net, rng};
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};
use treepo_flow::advantage::{flat_advantages, tree_advantages, tree_options};
use treepo_flow::config::{FlowConfig, Method};
use treepo_flow::data::{DIM, NUM_CLASSES};
use treepo_flow::net::{IN_DIM, VelocityNet, input_row};
use treepo_flow::rollout::{Layout, Rollouts, sample};
use treepo_flow::sde::{Schedule, log_prob, ode_step, sde_mean};

/// `(k, window start, w, T)` combinations: window at the start, in the middle, at the end, the
/// whole schedule, `k = 1`, `T = 1`.
const TREES: [(usize, usize, usize, usize); 8] = [
    (2, 0, 2, 4),
    (3, 3, 1, 4),
    (2, 1, 3, 5),
    (1, 1, 2, 3),
    (2, 0, 4, 4),
    (3, 2, 2, 6),
    (4, 0, 1, 1),
    (2, 4, 2, 10),
];

fn classes(r: &mut impl Rng, prompts: usize) -> Vec<usize> {
    (0..prompts).map(|_| r.random_range(0..NUM_CLASSES)).collect()
}

/// The velocity of one state, evaluated on its own.
fn velocity(net: &VelocityNet, x: &[f32], t: f64, class: usize) -> Vec<f32> {
    let mut row = vec![0f32; IN_DIM];
    input_row(x, t as f32, class, &mut row);
    net.velocity(&row, 1).unwrap()
}

/// Checks that every transition records the step the sampler took: `x'` of a recorded step
/// has `log π_old(x' | x)` under the network's velocity at `x` (re-evaluated here), and the
/// ODE steps after the last SDE step lead from its `x'` to the leaf's image.
fn check_recorded_steps(net: &VelocityNet, sched: &Schedule, r: &Rollouts, what: &str) {
    let mut lp = Errors::new(format!("{what}: logp_old vs log_prob re-evaluated"), 1e-6, 1e-6);
    for (ti, t) in r.transitions.iter().enumerate() {
        let c = sched.coeffs(t.step);
        let v = velocity(net, &t.x, sched.time(t.step), r.classes[t.prompt]);
        lp.add(
            log_prob(&c, &sde_mean(&c, &t.x, &v), &t.next),
            t.logp_old,
            format!("transition {ti}"),
        );
    }
    lp.check();
    let mut img = Errors::new(format!("{what}: leaf image vs ODE from its last x'"), 1e-5, 1e-5);
    for (li, leaf) in r.leaves.iter().enumerate() {
        let Some(&last) = leaf.path.last() else { continue };
        let t = &r.transitions[last];
        let mut x = t.next.clone();
        for i in t.step + 1..sched.steps {
            let v = velocity(net, &x, sched.time(i), r.classes[leaf.prompt]);
            ode_step(&mut x, &v, sched.coeffs(i).dt);
        }
        let image = &r.images[li * DIM..(li + 1) * DIM];
        for d in 0..DIM {
            img.add(image[d] as f64, x[d] as f64, format!("leaf {li} pixel {d}"));
        }
    }
    img.check();
}

#[test]
fn tree_shape() {
    let net = net(TINY, 1);
    let mut r = rng(21);
    for (case, &(k, start, w, steps)) in TREES.iter().enumerate() {
        for prompts in [1, 3] {
            let sched = Schedule::new(steps, 0.7).unwrap();
            let layout = Layout::Tree { k, window: start..start + w };
            let cls = classes(&mut r, prompts);
            let ro = sample(&net, &sched, &layout, &cls, 100 + case as u64).unwrap();
            let what = format!("k={k} window={start}..{} T={steps} P={prompts}", start + w);
            let kw = k.pow(w as u32);
            // Leaves P·k^w, prompt by prompt; transitions P·(k + k² + … + k^w).
            assert_eq!(ro.classes, cls, "{what}");
            assert_eq!(ro.leaves.len(), prompts * kw, "{what}: leaves");
            assert_eq!(ro.images.len(), prompts * kw * DIM, "{what}: image pixels");
            assert!(ro.images.iter().all(|p| p.is_finite()), "{what}: non-finite pixel");
            let per_prompt: usize = (1..=w).map(|j| k.pow(j as u32)).sum();
            assert_eq!(ro.transitions.len(), prompts * per_prompt, "{what}: transitions");
            for (li, leaf) in ro.leaves.iter().enumerate() {
                assert_eq!(leaf.prompt, li / kw, "{what}: leaf {li} prompt");
            }
            // NFE: one state per prompt before the window, k^j at window step j, k^w after.
            let in_window: usize = (0..w).map(|j| k.pow(j as u32)).sum();
            let nfe = prompts * (start + in_window + kw * (steps - start - w));
            assert_eq!(ro.nfe, nfe, "{what}: nfe");
            // Every leaf path: w transitions at steps start.., chained by parents, of its prompt.
            let mut on_path = vec![0usize; ro.transitions.len()];
            let mut children = vec![0usize; ro.transitions.len()];
            for (li, leaf) in ro.leaves.iter().enumerate() {
                assert_eq!(leaf.path.len(), w, "{what}: leaf {li} path {:?}", leaf.path);
                for (j, &ti) in leaf.path.iter().enumerate() {
                    let t = &ro.transitions[ti];
                    assert_eq!(t.step, start + j, "{what}: leaf {li} transition {ti} step");
                    assert_eq!(t.prompt, leaf.prompt, "{what}: leaf {li} transition {ti} prompt");
                    let want_parent = if j == 0 { None } else { Some(leaf.path[j - 1]) };
                    assert_eq!(t.parent, want_parent, "{what}: leaf {li} transition {ti} parent");
                }
                on_path[*leaf.path.last().unwrap()] += 1;
            }
            // Each last-window transition ends exactly one leaf.
            for (ti, t) in ro.transitions.iter().enumerate() {
                let last = t.step == start + w - 1;
                assert_eq!(on_path[ti], usize::from(last), "{what}: transition {ti} leaf count");
            }
            // Parents precede children; a child continues from its parent's x' (consecutive
            // window steps); k children per window state; every root transition of a prompt
            // starts from the same state.
            for (ti, t) in ro.transitions.iter().enumerate() {
                assert!(t.logp_old.is_finite(), "{what}: transition {ti} logp_old {}", t.logp_old);
                match t.parent {
                    Some(p) => {
                        assert!(p < ti, "{what}: transition {ti} has parent {p} after it");
                        let pt = &ro.transitions[p];
                        assert_eq!(pt.step + 1, t.step, "{what}: transition {ti} step");
                        assert_eq!(pt.prompt, t.prompt, "{what}: transition {ti} prompt");
                        assert_eq!(pt.next, t.x, "{what}: transition {ti} x ≠ parent's x'");
                        children[p] += 1;
                    }
                    None => {
                        assert_eq!(t.step, start, "{what}: root transition {ti} step");
                        let first = ro
                            .transitions
                            .iter()
                            .find(|u| u.parent.is_none() && u.prompt == t.prompt)
                            .unwrap();
                        assert_eq!(first.x, t.x, "{what}: root transitions of one prompt");
                    }
                }
            }
            for (ti, t) in ro.transitions.iter().enumerate() {
                let want = if t.step + 1 < start + w { k } else { 0 };
                assert_eq!(children[ti], want, "{what}: children of transition {ti}");
            }
            let roots = ro.transitions.iter().filter(|t| t.parent.is_none()).count();
            assert_eq!(roots, prompts * k, "{what}: root transitions");
            // Each window edge gets exactly one advantage.
            let rewards: Vec<f64> =
                (0..ro.leaves.len()).map(|_| r.random_range(-1.0..1.0)).collect();
            let adv = tree_advantages(&ro, &rewards, &tree_options()).unwrap();
            assert_eq!(adv.len(), ro.transitions.len(), "{what}: advantages");
            assert!(adv.iter().all(|a| a.is_finite()), "{what}: advantages {adv:?}");
            if prompts == 3 && case < 3 {
                check_recorded_steps(&net, &sched, &ro, &what);
            }
        }
    }
}

#[test]
fn tree_advantages_back_up_on_sampled_trees() {
    // On real trees: the leaf edges carry the prompt's z-scores (mean 0 when k^w ≥ 2), and every
    // other edge the softmax(log π_old)-weighted mean of its children's.
    let net = net(TINY, 2);
    let mut r = rng(22);
    let sched = Schedule::new(5, 0.7).unwrap();
    let layout = Layout::Tree { k: 3, window: 1..4 };
    let cls = classes(&mut r, 2);
    let ro = sample(&net, &sched, &layout, &cls, 5).unwrap();
    let rewards: Vec<f64> = (0..ro.leaves.len()).map(|_| StandardNormal.sample(&mut r)).collect();
    let adv = tree_advantages(&ro, &rewards, &tree_options()).unwrap();
    let mut err = Errors::new("sampled tree: edge A vs softmax-weighted children", 1e-12, 1e-12);
    for (ti, _) in ro.transitions.iter().enumerate() {
        let kids: Vec<usize> =
            (0..ro.transitions.len()).filter(|&c| ro.transitions[c].parent == Some(ti)).collect();
        if kids.is_empty() {
            continue;
        }
        let m = kids.iter().map(|&c| ro.transitions[c].logp_old).fold(f64::MIN, f64::max);
        let e: Vec<f64> = kids.iter().map(|&c| (ro.transitions[c].logp_old - m).exp()).collect();
        let z: f64 = e.iter().sum();
        let want: f64 = kids.iter().zip(&e).map(|(&c, e)| e / z * adv[c]).sum();
        err.add(adv[ti], want, format!("transition {ti}"));
    }
    let mut zsum = Errors::new("sampled tree: Σ leaf-edge A per prompt vs 0", 1e-9, 0.0);
    for p in 0..cls.len() {
        let s: f64 =
            ro.leaves.iter().filter(|l| l.prompt == p).map(|l| adv[*l.path.last().unwrap()]).sum();
        zsum.add(s, 0.0, format!("prompt {p}"));
    }
    err.check();
    zsum.check();
}

#[test]
fn flat_and_ode_shapes() {
    let net = net(TINY, 3);
    let mut r = rng(23);
    for (steps, group, prompts) in [(1, 1, 1), (3, 2, 2), (4, 3, 3), (6, 2, 1)] {
        let sched = Schedule::new(steps, 0.7).unwrap();
        let cls = classes(&mut r, prompts);
        let what = format!("flat T={steps} G={group} P={prompts}");
        let ro = sample(&net, &sched, &Layout::Flat { group }, &cls, 7).unwrap();
        assert_eq!(ro.leaves.len(), prompts * group, "{what}: leaves");
        assert_eq!(ro.images.len(), prompts * group * DIM, "{what}: pixels");
        assert_eq!(ro.transitions.len(), prompts * group * steps, "{what}: transitions");
        assert_eq!(ro.nfe, prompts * group * steps, "{what}: nfe");
        let mut seen = vec![0usize; ro.transitions.len()];
        for (li, leaf) in ro.leaves.iter().enumerate() {
            assert_eq!(leaf.prompt, li / group, "{what}: leaf {li} prompt");
            assert_eq!(leaf.path.len(), steps, "{what}: leaf {li} path");
            for (i, &ti) in leaf.path.iter().enumerate() {
                let t = &ro.transitions[ti];
                seen[ti] += 1;
                assert_eq!(
                    (t.step, t.prompt),
                    (i, leaf.prompt),
                    "{what}: leaf {li} transition {ti}"
                );
                let want_parent = if i == 0 { None } else { Some(leaf.path[i - 1]) };
                assert_eq!(t.parent, want_parent, "{what}: leaf {li} transition {ti} parent");
                if let Some(p) = t.parent {
                    assert!(p < ti, "{what}: parent {p} after {ti}");
                    assert_eq!(ro.transitions[p].next, t.x, "{what}: transition {ti} x");
                }
            }
            // The last step is an SDE step: the image is its x'.
            let last = &ro.transitions[*leaf.path.last().unwrap()];
            assert_eq!(&ro.images[li * DIM..(li + 1) * DIM], &last.next[..], "{what}: leaf {li}");
        }
        assert!(seen.iter().all(|&n| n == 1), "{what}: each transition on exactly one path");
        let rewards: Vec<f64> = (0..ro.leaves.len()).map(|_| r.random_range(-1.0..1.0)).collect();
        let adv = flat_advantages(&ro, &rewards).unwrap();
        assert_eq!(adv.len(), ro.transitions.len(), "{what}: advantages");
        for leaf in &ro.leaves {
            let a = adv[leaf.path[0]];
            assert!(leaf.path.iter().all(|&t| adv[t] == a), "{what}: one advantage per trajectory");
        }
        if steps == 3 {
            check_recorded_steps(&net, &sched, &ro, &what);
        }
        let what = format!("ode T={steps} G={group} P={prompts}");
        let ro = sample(&net, &sched, &Layout::Ode { group }, &cls, 7).unwrap();
        assert!(ro.transitions.is_empty(), "{what}: transitions");
        assert_eq!(ro.leaves.len(), prompts * group, "{what}: leaves");
        assert!(ro.leaves.iter().all(|l| l.path.is_empty()), "{what}: paths");
        assert_eq!(ro.images.len(), prompts * group * DIM, "{what}: pixels");
        assert_eq!(ro.nfe, prompts * group * steps, "{what}: nfe");
    }
}

#[test]
fn window_moves_by_s_every_tau_iterations() {
    // start = (s·⌊iteration/τ⌋) mod (T − w + 1), worked out by hand.
    let mut cfg = FlowConfig::default();
    cfg.rl.method = Method::Treegrpo;
    cfg.sampling.steps = 10;
    cfg.rl.k = 2;
    cfg.rl.w = 3;
    // T − w + 1 = 8 positions. s = 1, τ = 1: 0, 1, …, 7, 0, 1.
    cfg.rl.s = 1;
    cfg.rl.tau = 1;
    let want = [0, 1, 2, 3, 4, 5, 6, 7, 0, 1];
    // s = 3, τ = 2: ⌊it/2⌋ = 0 0 1 1 2 2 3 3 4 4 → 3·that mod 8 = 0 0 3 3 6 6 1 1 4 4.
    let want_s3 = [0, 0, 3, 3, 6, 6, 1, 1, 4, 4];
    for (s, tau, want) in [(1, 1, want), (3, 2, want_s3)] {
        cfg.rl.s = s;
        cfg.rl.tau = tau;
        cfg.validate().unwrap();
        for (it, &start) in want.iter().enumerate() {
            let layout = cfg.layout(it).unwrap();
            assert_eq!(
                layout,
                Layout::Tree { k: 2, window: start..start + 3 },
                "s={s} τ={tau} it={it}"
            );
        }
    }
    // w = T: the window never moves.
    cfg.rl.w = 10;
    cfg.rl.s = 1;
    cfg.rl.tau = 1;
    for it in 0..5 {
        assert_eq!(cfg.layout(it).unwrap(), Layout::Tree { k: 2, window: 0..10 }, "w=T it={it}");
    }
    // DanceGRPO: the flat layout of G trajectories.
    cfg.rl.method = Method::Dancegrpo;
    cfg.rl.group = 5;
    assert_eq!(cfg.layout(3).unwrap(), Layout::Flat { group: 5 });
}

#[test]
fn sampling_is_deterministic_in_the_seed() {
    let net = net(TINY, 4);
    let sched = Schedule::new(4, 0.7).unwrap();
    let cls = [0, 3, 5];
    for layout in
        [Layout::Tree { k: 2, window: 1..3 }, Layout::Flat { group: 3 }, Layout::Ode { group: 2 }]
    {
        let a = sample(&net, &sched, &layout, &cls, 42).unwrap();
        let b = sample(&net, &sched, &layout, &cls, 42).unwrap();
        assert_eq!(a, b, "{layout:?}: same seed, different rollouts");
        let c = sample(&net, &sched, &layout, &cls, 43).unwrap();
        let differ = a.images.iter().zip(&c.images).filter(|(x, y)| x != y).count();
        assert!(
            differ * 10 > a.images.len() * 9,
            "{layout:?}: seeds 42 and 43 share {} of {} pixels",
            a.images.len() - differ,
            a.images.len()
        );
    }
}
