//! `treepo flow experiment`: TreeGRPO vs the flat DanceGRPO baseline, each seed with one shared
//! pretrained generator and one shared reward classifier, the same RL iterations for both; a
//! markdown report (`report.md`) with reward vs NFE and wall time, mean ± standard deviation
//! over seeds, and the cost TreeGRPO needs to reach the baseline's final reward.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use treepo_flow::config::{FlowConfig, Method};
use treepo_flow::net::VelocityNet;
use treepo_flow::system::{CurvePoint, Rewards};
use treepo_trainer::run::MetricsLog;

use crate::common;
use crate::flow_cmd::{Stopped, configure, fresh_dir, plots, pretrain, train_rl};

/// Arguments of `treepo flow experiment`.
#[derive(Args, Debug)]
pub struct ExperimentArgs {
    /// Seeds (0, 1, ..).
    #[arg(long, default_value_t = 3)]
    seeds: u64,
    /// The demo's `--quick` sizes (CI smoke test).
    #[arg(long)]
    quick: bool,
    /// Output directory (the run goes to `<out>/flow`).
    #[arg(long, default_value = "runs/experiments")]
    out: PathBuf,
    /// Device (auto, cpu, cuda, wgpu).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Delete an existing report directory and start over.
    #[arg(long)]
    force: bool,
}

const METHODS: [Method; 2] = [Method::Treegrpo, Method::Dancegrpo];

/// Runs the experiment.
pub fn run(a: ExperimentArgs, overrides: &[String]) -> Result<()> {
    if a.seeds == 0 {
        bail!("--seeds 0: the experiment needs at least one seed");
    }
    let base = if a.quick { FlowConfig::quick() } else { FlowConfig::default() };
    let base = configure(&base, overrides)?;
    let dir = a.out.join(if a.quick { "flow-quick" } else { "flow" });
    let dev = common::device(&a.device)?;
    fresh_dir(&dir, a.force, &base)?;
    let mut log = MetricsLog::open(&dir.join("metrics.jsonl"))?;
    // curves[method][seed]
    let mut curves: Vec<Vec<Vec<CurvePoint>>> = vec![Vec::new(); METHODS.len()];
    for seed in 0..a.seeds {
        let mut cfg = base;
        cfg.seed = seed;
        let rewards = Rewards::train(seed)?;
        let label = format!("[seed {seed}] ");
        let Some(pretrained) = pretrain(&dev, &cfg, &mut log, &label)? else {
            return Err(Stopped { checkpoint: dir.join("checkpoints") }.into());
        };
        pretrained.save(&dir.join(format!("checkpoints/pretrained-seed{seed}.safetensors")))?;
        let params = pretrained.host_params()?;
        for (m, &method) in METHODS.iter().enumerate() {
            cfg.rl.method = method;
            let mut net = VelocityNet::from_host(&dev, cfg.model, &params)?;
            let label = format!("[seed {seed} {}] ", method.name());
            let curve = train_rl(&mut net, &cfg, &rewards, &mut log, &label)?;
            if common::interrupted() {
                return Err(Stopped { checkpoint: dir.join("checkpoints") }.into());
            }
            curves[m].push(curve);
        }
    }
    let means: Vec<(String, Vec<CurvePoint>)> =
        METHODS.iter().zip(&curves).map(|(m, c)| (m.name().to_string(), mean_curve(c))).collect();
    plots(&dir, &means)?;
    let json: Vec<_> = METHODS
        .iter()
        .zip(&curves)
        .map(|(m, c)| serde_json::json!({ "method": m.name(), "curves": c }))
        .collect();
    std::fs::write(dir.join("curves.json"), serde_json::to_string(&json)?)?;
    let report = report(&base, a.seeds, &curves);
    std::fs::write(dir.join("report.md"), &report)?;
    println!("{report}");
    println!("report: {}/report.md (reward_vs_*.svg, curves.json, metrics.jsonl)", dir.display());
    Ok(())
}

/// Point-wise mean over seeds (the seeds share evaluation iterations).
fn mean_curve(seeds: &[Vec<CurvePoint>]) -> Vec<CurvePoint> {
    let n = seeds.len() as f64;
    let len = seeds.iter().map(Vec::len).min().unwrap_or(0);
    (0..len)
        .map(|i| {
            let mut p = seeds[0][i].clone();
            p.nfe = (seeds.iter().map(|c| c[i].nfe as f64).sum::<f64>() / n).round() as usize;
            p.seconds = seeds.iter().map(|c| c[i].seconds).sum::<f64>() / n;
            p.eval.total = seeds.iter().map(|c| c[i].eval.total).sum::<f64>() / n;
            p
        })
        .collect()
}

/// `mean ± sd` (population sd over seeds).
fn mean_sd(xs: &[f64]) -> (f64, f64) {
    let n = xs.len().max(1) as f64;
    let m = xs.iter().sum::<f64>() / n;
    (m, (xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / n).sqrt())
}

/// The first evaluation of `curve` whose reward reaches `target`.
fn first_reaching(curve: &[CurvePoint], target: f64) -> Option<&CurvePoint> {
    curve.iter().find(|p| p.iteration > 0 && p.eval.total >= target)
}

fn report(cfg: &FlowConfig, seeds: u64, curves: &[Vec<Vec<CurvePoint>>]) -> String {
    let mut s = String::new();
    let rl = &cfg.rl;
    let _ = writeln!(s, "# TreeGRPO vs DanceGRPO on the flow generator\n");
    let _ = writeln!(
        s,
        "{seeds} seeds; per seed one pretrained generator ({} steps) and one reward classifier \
         shared by both methods; {} RL iterations of {} prompts each; T = {} steps; TreeGRPO \
         k = {}, w = {}, s = {}, τ = {} ({} leaves per prompt); DanceGRPO G = {}. Reward = \
         classifier + aesthetic, mean over {} ODE samples from fixed noise. NFE = sampler \
         network evaluations + 3 per trained transition (forward + backward).\n",
        cfg.pretrain.steps,
        rl.iterations,
        rl.prompts,
        cfg.sampling.steps,
        rl.k,
        rl.w,
        rl.s,
        rl.tau,
        rl.k.pow(rl.w as u32),
        rl.group,
        cfg.eval.per_class * treepo_flow::data::NUM_CLASSES,
    );
    let _ = writeln!(
        s,
        "| method | pretrained | final reward | RL NFE | RL seconds | NFE / iteration |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|");
    for (m, c) in METHODS.iter().zip(curves) {
        let first: Vec<f64> = c.iter().map(|c| c[0].eval.total).collect();
        let last: Vec<&CurvePoint> = c.iter().filter_map(|c| c.last()).collect();
        let fin: Vec<f64> = last.iter().map(|p| p.eval.total).collect();
        let nfe: Vec<f64> = last.iter().map(|p| p.nfe as f64).collect();
        let sec: Vec<f64> = last.iter().map(|p| p.seconds).collect();
        let per: Vec<f64> = last.iter().map(|p| p.nfe as f64 / p.iteration.max(1) as f64).collect();
        let f = |xs: &[f64], d: usize| {
            let (m, sd) = mean_sd(xs);
            format!("{m:.d$} ± {sd:.d$}")
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} |",
            m.name(),
            f(&first, 4),
            f(&fin, 4),
            f(&nfe, 0),
            f(&sec, 2),
            f(&per, 0)
        );
    }
    let _ = writeln!(s, "\nCost for TreeGRPO to reach DanceGRPO's final reward (per seed):\n");
    let _ =
        writeln!(s, "| seed | DanceGRPO final | TreeGRPO reaches it at | NFE ratio | time ratio |");
    let _ = writeln!(s, "|---|---|---|---|---|");
    let (mut nfe_ratios, mut time_ratios) = (Vec::new(), Vec::new());
    for (seed, (tree, flat)) in curves[0].iter().zip(&curves[1]).enumerate() {
        let Some(target) = flat.last() else { continue };
        match first_reaching(tree, target.eval.total) {
            Some(p) => {
                let (rn, rt) = (target.nfe as f64 / p.nfe as f64, target.seconds / p.seconds);
                nfe_ratios.push(rn);
                time_ratios.push(rt);
                let _ = writeln!(
                    s,
                    "| {seed} | {:.4} | iteration {} ({} NFE, {:.2} s) | {rn:.2}× | {rt:.2}× |",
                    target.eval.total, p.iteration, p.nfe, p.seconds
                );
            }
            None => {
                let _ = writeln!(s, "| {seed} | {:.4} | not reached | – | – |", target.eval.total);
            }
        }
    }
    let reached = nfe_ratios.len();
    if reached > 0 {
        let (rn, sdn) = mean_sd(&nfe_ratios);
        let (rt, sdt) = mean_sd(&time_ratios);
        let _ = writeln!(
            s,
            "\nReached on {reached} of {seeds} seeds; DanceGRPO's cost / TreeGRPO's cost at equal \
             reward: {rn:.2} ± {sdn:.2}× in NFE, {rt:.2} ± {sdt:.2}× in wall time."
        );
    } else {
        let _ = writeln!(s, "\nTreeGRPO reached DanceGRPO's final reward on no seed.");
    }
    s
}
