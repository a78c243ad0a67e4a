//! `treepo flow`: TreeGRPO on a small rectified-flow image generator (docs/flow.md).
//!
//! ```text
//! treepo flow demo [--quick] [--method treegrpo|dancegrpo]   pretrain, RL, evaluation, grids
//! treepo flow experiment [--seeds 3]                         TreeGRPO vs DanceGRPO, a report
//! ```
//!
//! Both take `--section.key=value` overrides of the flow configuration (`--rl.k=3`,
//! `--pretrain.steps=500`; the keys are those of `config.toml` in a run directory).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use treepo_flow::config::{FlowConfig, Method};
use treepo_flow::data::NUM_CLASSES;
use treepo_flow::grid::write_grid_png;
use treepo_flow::net::VelocityNet;
use treepo_flow::system::{self, CurvePoint, EvalReport, Flow, Rewards};
use treepo_kernels::Device;
use treepo_trainer::run::plot::{Series, line_plot};
use treepo_trainer::run::{MetricsLog, apply_overrides};

use crate::common;
use crate::flow_experiment::{self, ExperimentArgs};

/// Arguments of `treepo flow`.
#[derive(Args, Debug)]
pub struct FlowArgs {
    #[command(subcommand)]
    command: FlowCommand,
}

#[derive(Subcommand, Debug)]
enum FlowCommand {
    /// Pretrain a class-conditional flow generator, then RL (TreeGRPO by default); prints the
    /// rewards before and after and writes sample grids.
    Demo(DemoArgs),
    /// TreeGRPO vs the flat DanceGRPO baseline over several seeds: reward vs NFE and wall time.
    Experiment(ExperimentArgs),
}

/// Arguments of `treepo flow demo`.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// A shortened run (CI smoke test, seconds).
    #[arg(long)]
    quick: bool,
    /// The RL algorithm.
    #[arg(long, value_enum, default_value = "treegrpo")]
    method: MethodArg,
    /// Where the run directory goes.
    #[arg(long, default_value = "runs")]
    out: PathBuf,
    /// Device (auto, cpu, cuda, wgpu).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Delete an existing run directory of the demo and start over.
    #[arg(long)]
    force: bool,
}

/// `--method`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum MethodArg {
    /// Tree rollouts with TreeGRPO's edge advantages.
    Treegrpo,
    /// Flat SDE groups with GRPO advantages (DanceGRPO / Flow-GRPO).
    Dancegrpo,
}

impl From<MethodArg> for Method {
    fn from(m: MethodArg) -> Method {
        match m {
            MethodArg::Treegrpo => Method::Treegrpo,
            MethodArg::Dancegrpo => Method::Dancegrpo,
        }
    }
}

/// A flow run stopped by Ctrl-C: `main` prints it and exits with 130.
#[derive(Debug)]
pub struct Stopped {
    /// Where the model of the last finished iteration is.
    pub checkpoint: PathBuf,
}

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "interrupted: the model of the last finished iteration is in {}; flow runs take a \
             minute and do not resume: rerun with --force to start over",
            self.checkpoint.display()
        )
    }
}

impl std::error::Error for Stopped {}

/// Runs `treepo flow ...`.
pub fn run(a: FlowArgs, overrides: &[String]) -> Result<()> {
    match a.command {
        FlowCommand::Demo(d) => demo(d, overrides),
        FlowCommand::Experiment(e) => flow_experiment::run(e, overrides),
    }
}

/// `base` with the `--section.key=value` overrides applied and validated.
pub fn configure(base: &FlowConfig, overrides: &[String]) -> Result<FlowConfig> {
    let text = toml::to_string(base).context("serializing the flow configuration")?;
    let merged = apply_overrides::<FlowConfig>(&text, Path::new("flow configuration"), overrides)?;
    let cfg: FlowConfig = toml::from_str(&merged).context("flow configuration")?;
    cfg.validate()?;
    Ok(cfg)
}

/// Creates a fresh run directory (refusing to overwrite one unless `force`) and writes the
/// configuration into it.
pub fn fresh_dir(dir: &Path, force: bool, cfg: &FlowConfig) -> Result<()> {
    if force {
        common::remove_run_dir(dir)?;
    } else if dir.exists() {
        bail!("{} already holds a run: pass --force to delete it and start over", dir.display());
    }
    std::fs::create_dir_all(dir.join("checkpoints"))
        .with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join("config.toml"), toml::to_string(cfg)?)
        .with_context(|| format!("writing {}/config.toml", dir.display()))
}

/// Pretrains with progress lines and metrics; `None` when Ctrl-C stopped it.
pub fn pretrain(
    dev: &Device,
    cfg: &FlowConfig,
    log: &mut MetricsLog,
    label: &str,
) -> Result<Option<VelocityNet>> {
    let every = (cfg.pretrain.steps / 5).max(1);
    let mut log_err = None;
    let net = system::pretrain(dev, cfg, |step, loss| {
        if let Err(e) = log.log("pretrain", step as u64, &serde_json::json!({ "loss": loss })) {
            log_err = Some(e);
        }
        if (step + 1) % every == 0 {
            eprintln!("{label}pretrain {:>5}/{}  loss {loss:.4}", step + 1, cfg.pretrain.steps);
        }
        if common::interrupted() || log_err.is_some() { Flow::Stop } else { Flow::Continue }
    })?;
    if let Some(e) = log_err {
        return Err(e.into());
    }
    Ok((!common::interrupted()).then_some(net))
}

/// RL with progress lines and metrics.
pub fn train_rl(
    net: &mut VelocityNet,
    cfg: &FlowConfig,
    rewards: &Rewards,
    log: &mut MetricsLog,
    label: &str,
) -> Result<Vec<CurvePoint>> {
    let mut log_err = None;
    let curve = system::train_rl(net, cfg, rewards, |s, point| {
        let mut fields = serde_json::to_value(s).unwrap_or_default();
        if let (Some(p), Some(obj)) = (point, fields.as_object_mut()) {
            obj.insert("eval_total".into(), p.eval.total.into());
            for (name, v) in &p.eval.rewards {
                obj.insert(format!("eval_{name}"), (*v).into());
            }
            eprintln!(
                "{label}rl {:>4}/{}  eval reward {:.4} ({})  NFE {}  {:.1} s",
                p.iteration,
                cfg.rl.iterations,
                p.eval.total,
                describe(&p.eval),
                p.nfe,
                p.seconds
            );
        }
        if let Err(e) = log.log("rl", s.iteration as u64, &fields) {
            log_err = Some(e);
        }
        if common::interrupted() || log_err.is_some() { Flow::Stop } else { Flow::Continue }
    })?;
    if let Some(e) = log_err {
        return Err(e.into());
    }
    Ok(curve)
}

/// `classifier 0.952, aesthetic 0.731`.
pub fn describe(e: &EvalReport) -> String {
    e.rewards.iter().map(|(n, v)| format!("{n} {v:.3}")).collect::<Vec<_>>().join(", ")
}

fn demo(a: DemoArgs, overrides: &[String]) -> Result<()> {
    let mut base = if a.quick { FlowConfig::quick() } else { FlowConfig::default() };
    base.seed = a.seed;
    base.rl.method = a.method.into();
    let cfg = configure(&base, overrides)?;
    let name = if a.quick { "flow-demo-quick" } else { "flow-demo" };
    let dir = a.out.join(name);
    let dev = common::device(&a.device)?;
    fresh_dir(&dir, a.force, &cfg)?;
    let t0 = std::time::Instant::now();
    let mut log = MetricsLog::open(&dir.join("metrics.jsonl"))?;
    let rewards = Rewards::train(cfg.seed)?;
    rewards.classifier.save(&dir.join("checkpoints/classifier.safetensors"))?;
    let Some(mut net) = pretrain(&dev, &cfg, &mut log, "")? else {
        return Err(Stopped { checkpoint: dir.join("checkpoints") }.into());
    };
    net.save(&dir.join("checkpoints/pretrained.safetensors"))?;
    let curve = train_rl(&mut net, &cfg, &rewards, &mut log, "")?;
    net.save(&dir.join("checkpoints/final.safetensors"))?;
    if common::interrupted() {
        return Err(Stopped { checkpoint: dir.join("checkpoints/final.safetensors") }.into());
    }
    let (before, after) = (&curve[0], curve.last().unwrap_or(&curve[0]));
    let per_class = cfg.eval.per_class;
    write_grid_png(
        &dir.join("samples_before.png"),
        &before.eval.images,
        NUM_CLASSES,
        per_class,
        4,
    )?;
    write_grid_png(&dir.join("samples_after.png"), &after.eval.images, NUM_CLASSES, per_class, 4)?;
    plots(&dir, &[(cfg.rl.method.name().to_string(), curve.clone())])?;
    let summary = serde_json::json!({
        "method": cfg.rl.method.name(),
        "seed": cfg.seed,
        "before": before.eval,
        "after": after.eval,
        "rl_iterations": after.iteration,
        "rl_nfe": after.nfe,
        "rl_seconds": after.seconds,
        "seconds": t0.elapsed().as_secs_f64(),
    });
    std::fs::write(dir.join("summary.json"), serde_json::to_string_pretty(&summary)?)?;
    println!();
    println!(
        "flow {}: rewards of {} ODE samples ({per_class} per class, fixed noise)",
        cfg.rl.method.name(),
        NUM_CLASSES * per_class
    );
    println!("  pretrained: total {:.4}  ({})", before.eval.total, describe(&before.eval));
    println!("  after RL  : total {:.4}  ({})", after.eval.total, describe(&after.eval));
    println!(
        "  RL: {} iterations, {} NFE, {:.1} s; whole demo {:.1} s",
        after.iteration,
        after.nfe,
        after.seconds,
        t0.elapsed().as_secs_f64()
    );
    println!(
        "report: {} (samples_before.png, samples_after.png, reward_vs_*.svg, metrics.jsonl, \
         checkpoints/)",
        dir.display()
    );
    Ok(())
}

/// Reward vs iteration, NFE and wall time, one line per named curve.
pub fn plots(dir: &Path, curves: &[(String, Vec<CurvePoint>)]) -> Result<()> {
    type Axis = fn(&CurvePoint) -> f64;
    let axes: [(&str, &str, Axis); 3] = [
        ("reward_vs_step.svg", "RL iteration", |p| p.iteration as f64),
        ("reward_vs_nfe.svg", "NFE (sampling + 3 per trained transition)", |p| p.nfe as f64),
        ("reward_vs_time.svg", "RL wall time (s)", |p| p.seconds),
    ];
    for (file, x_label, x) in axes {
        let series: Vec<Series> = curves
            .iter()
            .map(|(label, c)| Series {
                label: label.clone(),
                points: c.iter().map(|p| (x(p), p.eval.total)).collect(),
            })
            .collect();
        line_plot(
            &dir.join(file),
            "eval reward (classifier + aesthetic)",
            x_label,
            "reward",
            &series,
        )?;
    }
    Ok(())
}
