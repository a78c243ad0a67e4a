//! Finite-difference checks of the generator's gradients on a tiny two-block network on the
//! CPU: `VelocityNet::backward` itself (L = Σ c·v), the rectified-flow loss and the clipped
//! policy loss over sampled SDE transitions. Each perturbs ~44 parameters spread over every
//! tensor of the layout (through `VelocityNet::from_host`) and compares the central difference
//! with the gradient the code ADDS into its buffer.

use crate::common::{Errors, TINY2, normal, rng};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use treepo_flow::data::{DIM, NUM_CLASSES};
use treepo_flow::net::{IN_DIM, VelocityNet, input_row};
use treepo_flow::rollout::{Layout, sample};
use treepo_flow::sde::Schedule;
use treepo_flow::train::{FlowBatch, flow_loss, policy_loss};
use treepo_kernels::Device;
use treepo_rl::ClipConfig;

/// Parameters perturbed per tensor.
const PER_TENSOR: usize = 4;
/// The f32 central-difference step.
const H: f32 = 1e-2;
/// `rtol` of `atol + rtol·|fd|` (f32 forward passes differenced over 2h = 0.02); each check
/// picks an `atol` below its gradients' scale.
const RTOL: f64 = 2e-2;

/// Random parameters of the tiny network: the init's matrices, the output matrix at gain 1
/// (not 0.1, so the inner tensors' gradients are not tiny), norm gains `1 + 0.2·N(0, 1)`.
fn params(r: &mut ChaCha8Rng) -> Vec<f32> {
    let net = VelocityNet::init(&Device::cpu(), TINY2, r.random()).unwrap();
    let mut host = net.host_params().unwrap();
    for t in &net.layout.tensors {
        if t.shape.len() == 1 {
            for (p, z) in host[t.range.clone()].iter_mut().zip(normal(r, t.range.len(), 0.2)) {
                *p = 1.0 + z;
            }
        } else if t.name == "w_out" {
            host[t.range.clone()].iter_mut().for_each(|p| *p *= 10.0);
        }
    }
    host
}

/// Random input rows: `x ~ N(0, 1)`, `t ~ U(0, 1)`, a random class.
fn inputs(r: &mut ChaCha8Rng, rows: usize) -> Vec<f32> {
    let mut input = vec![0f32; rows * IN_DIM];
    for row in input.chunks_exact_mut(IN_DIM) {
        let x = normal(r, DIM, 1.0);
        let t: f32 = r.random_range(0.0..1.0);
        input_row(&x, t, r.random_range(0..NUM_CLASSES), row);
    }
    input
}

/// Compares `grad` with central differences of `loss` on `PER_TENSOR` random parameters of every
/// tensor, against `atol + RTOL·|fd|`; the largest |gradient| checked must exceed `100·atol`
/// (the check is not vacuous).
fn fd_check(
    what: &str,
    r: &mut ChaCha8Rng,
    host: &[f32],
    grad: &[f32],
    atol: f64,
    loss: impl Fn(&VelocityNet) -> f64,
) {
    let dev = Device::cpu();
    let layout = VelocityNet::from_host(&dev, TINY2, host).unwrap().layout;
    assert_eq!(grad.len(), layout.len, "{what}: gradient length");
    assert_eq!(layout.tensors.len(), 3 + 4 * TINY2.blocks, "{what}: tensors");
    let mut err = Errors::new(format!("{what}: gradient vs central differences"), atol, RTOL);
    let (mut lo, mut hi) = (f64::INFINITY, 0f64);
    for t in &layout.tensors {
        for _ in 0..PER_TENSOR {
            let i = r.random_range(t.range.clone());
            let (mut plus, mut minus) = (host.to_vec(), host.to_vec());
            plus[i] += H;
            minus[i] -= H;
            let lp = loss(&VelocityNet::from_host(&dev, TINY2, &plus).unwrap());
            let lm = loss(&VelocityNet::from_host(&dev, TINY2, &minus).unwrap());
            let fd = (lp - lm) / (plus[i] as f64 - minus[i] as f64);
            err.add(grad[i] as f64, fd, format!("{}[{}]", t.name, i - t.range.start));
            lo = lo.min(fd.abs());
            hi = hi.max(fd.abs());
        }
    }
    eprintln!("{what}: |gradient| checked spans {lo:.2e} .. {hi:.2e}");
    err.check();
    assert!(hi > 100.0 * atol, "{what}: largest checked gradient {hi:e}: the check is vacuous");
}

#[test]
fn backward_matches_central_differences_of_a_linear_functional() {
    let dev = Device::cpu();
    let mut r = rng(41);
    let host = params(&mut r);
    let net = VelocityNet::from_host(&dev, TINY2, &host).unwrap();
    let rows = 6;
    let input = inputs(&mut r, rows);
    let c = normal(&mut r, rows * DIM, 1.0);
    let acts = net.forward(&input, rows).unwrap();
    let mut grads = dev.zeros::<f32>(net.layout.len).unwrap();
    net.backward(&acts, &c, &mut grads).unwrap();
    let grad = dev.download(&grads).unwrap();
    let loss = |n: &VelocityNet| -> f64 {
        let v = n.velocity(&input, rows).unwrap();
        v.iter().zip(&c).map(|(&v, &c)| v as f64 * c as f64).sum()
    };
    fd_check("backward (L = Σ c·v)", &mut r, &host, &grad, 1e-4, loss);

    // backward ADDS: from a buffer holding g0 it leaves g0 + ∇L.
    let g0 = normal(&mut r, net.layout.len, 1.0);
    let mut grads = dev.upload(&g0).unwrap();
    net.backward(&acts, &c, &mut grads).unwrap();
    let got = dev.download(&grads).unwrap();
    let mut err = Errors::new("backward into g0 vs g0 + ∇L", 1e-5, 1e-5);
    for i in 0..got.len() {
        err.add(got[i] as f64, g0[i] as f64 + grad[i] as f64, i);
    }
    err.check();
}

#[test]
fn flow_loss_gradient_matches_central_differences() {
    let dev = Device::cpu();
    let mut r = rng(42);
    let host = params(&mut r);
    let net = VelocityNet::from_host(&dev, TINY2, &host).unwrap();
    let rows = 8;
    let batch =
        FlowBatch { input: inputs(&mut r, rows), target: normal(&mut r, rows * DIM, 1.0), rows };
    let mut grads = dev.zeros::<f32>(net.layout.len).unwrap();
    let l0 = flow_loss(&net, &batch, &mut grads).unwrap();
    let grad = dev.download(&grads).unwrap();
    // The loss is the mean squared velocity error, computed here directly.
    let v = net.velocity(&batch.input, rows).unwrap();
    let mse =
        v.iter().zip(&batch.target).map(|(&p, &y)| (p as f64 - y as f64).powi(2)).sum::<f64>()
            / (rows * DIM) as f64;
    let mut err = Errors::new("flow_loss vs mean squared velocity error", 1e-9, 1e-6);
    err.add(l0, mse, "loss");
    err.check();
    let loss = |n: &VelocityNet| {
        let mut scratch = dev.zeros::<f32>(n.layout.len).unwrap();
        flow_loss(n, &batch, &mut scratch).unwrap()
    };
    fd_check("flow_loss", &mut r, &host, &grad, 1e-5, loss);
}

#[test]
fn policy_loss_gradient_matches_central_differences() {
    let dev = Device::cpu();
    let mut r = rng(43);
    let host = params(&mut r);
    let net = VelocityNet::from_host(&dev, TINY2, &host).unwrap();
    // Wide clips: no ratio within ±h of the sampling weights reaches a clip boundary.
    let clip = ClipConfig { clip_ratio_low: 0.9, clip_ratio_high: 10.0, clip_ratio_c: None };
    for (name, steps, layout) in [
        ("tree k=2 window 1..3, T=4", 4, Layout::Tree { k: 2, window: 1..3 }),
        ("flat G=2, T=3", 3, Layout::Flat { group: 2 }),
    ] {
        let sched = Schedule::new(steps, 0.7).unwrap();
        let ro = sample(&net, &sched, &layout, &[1, 4], r.random()).unwrap();
        // Non-zero advantages of both signs, |A| ∈ [0.2, 1.5].
        let adv: Vec<f64> = (0..ro.transitions.len())
            .map(|_| {
                let a = r.random_range(0.2..1.5);
                if r.random::<bool>() { a } else { -a }
            })
            .collect();
        let mut grads = dev.zeros::<f32>(net.layout.len).unwrap();
        let stats = policy_loss(&net, &sched, &ro, &adv, &clip, &mut grads).unwrap();
        assert_eq!(stats.transitions, ro.transitions.len(), "{name}");
        assert_eq!(stats.clip_frac, 0.0, "{name}: clipped at the sampling weights");
        // At the sampling weights ρ = 1 (up to the batch's f32 rounding): the loss is −mean(A).
        let mut err =
            Errors::new(format!("{name}: loss at ρ = 1 vs −mean(A); approx KL vs 0"), 1e-5, 1e-5);
        err.add(stats.loss, -adv.iter().sum::<f64>() / adv.len() as f64, "loss");
        err.add(stats.approx_kl, 0.0, "approx_kl");
        err.check();
        let grad = dev.download(&grads).unwrap();
        let loss = |n: &VelocityNet| {
            let mut scratch = dev.zeros::<f32>(n.layout.len).unwrap();
            let s = policy_loss(n, &sched, &ro, &adv, &clip, &mut scratch).unwrap();
            assert_eq!(s.clip_frac, 0.0, "{name}: a perturbed ratio was clipped");
            s.loss
        };
        fd_check(&format!("policy_loss {name}"), &mut r, &host, &grad, 1e-6, loss);
    }
}
