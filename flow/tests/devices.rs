//! The generator on every backend: the velocity and the parameter gradient of the flow loss on
//! CUDA and wgpu equal the CPU's (fresh random weights and inputs per run; `atol + rtol·|ref|`,
//! the worst element reported). A backend that is absent prints SKIP, or fails under
//! `TREEPO_REQUIRE_<BACKEND>=1`.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use treepo_flow::data::{DIM, NUM_CLASSES};
use treepo_flow::net::{IN_DIM, NetConfig, VelocityNet, input_row};
use treepo_kernels::testing::{Tol, assert_close};
use treepo_kernels::{Device, per_backend};

fn matches_cpu(dev: &Device) {
    let seed: u64 = rand::rng().random();
    let cfg = NetConfig { hidden: 32, ffn: 64, blocks: 2 };
    let cpu = VelocityNet::init(&Device::cpu(), cfg, seed).unwrap();
    let params = cpu.host_params().unwrap();
    let net = VelocityNet::from_host(dev, cfg, &params).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let rows = 37;
    let mut input = vec![0f32; rows * IN_DIM];
    for row in input.chunks_exact_mut(IN_DIM) {
        let x: Vec<f32> = (0..DIM).map(|_| rng.random_range(-2.0..2.0)).collect();
        input_row(&x, rng.random(), rng.random_range(0..NUM_CLASSES), row);
    }
    let dv: Vec<f32> = (0..rows * DIM).map(|_| rng.random_range(-1.0..1.0)).collect();
    let run = |n: &VelocityNet| {
        let acts = n.forward(&input, rows).unwrap();
        let v = n.device().download(&acts.velocity).unwrap();
        let mut grads = n.device().zeros::<f32>(n.layout.len).unwrap();
        n.backward(&acts, &dv, &mut grads).unwrap();
        (v, n.device().download(&grads).unwrap())
    };
    let (v_ref, g_ref) = run(&cpu);
    let (v, g) = run(&net);
    let f64s = |x: &[f32]| x.iter().map(|&y| y as f64).collect::<Vec<_>>();
    let tol = Tol { atol: 1e-4, rtol: 1e-3 };
    let ev =
        assert_close(&format!("velocity on {} (seed {seed})", dev.kind()), &v, &f64s(&v_ref), tol);
    let eg =
        assert_close(&format!("gradient on {} (seed {seed})", dev.kind()), &g, &f64s(&g_ref), tol);
    eprintln!("{}: max error velocity {ev:.2e}, gradient {eg:.2e}", dev.kind());
}

per_backend!(matches_cpu);
