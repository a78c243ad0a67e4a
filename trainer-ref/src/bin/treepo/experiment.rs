//! `treepo experiment`: the paper's comparisons at small scale, on one base configuration
//! (`configs/experiment.toml`), several seeds, one shared SFT checkpoint per seed, and a
//! markdown report with mean ± standard deviation (written to `<out>/<name>/report.md`).
//!
//! | name | compares |
//! |---|---|
//! | `algos` | TreePO vs GRPO vs GRPO with tree sampling: accuracy and sampling cost |
//! | `shape` | depth × segment length at a fixed token budget d·l |
//! | `width` | trajectories per query: tree vs sequential throughput |
//! | `advantage` | TreePO's average vs size-weighted aggregation vs subgroup rejection vs scale-only whitening |
//! | `init` | fixed vs more initial divergence |
//! | `branching` | even split vs log-prob-steered branching |

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, ValueEnum};
use treepo_sampler::DivPolicy;
use treepo_trainer::pipeline::Algo;
use treepo_trainer::rl::AdvantageConfig;
use treepo_trainer::rl::advantage::{
    AdvantageEstimator, SubgroupAggregation, SubgroupRejection, TreepoOptions, Whitening,
};
use treepo_trainer::run::{RunConfig, checkpoint};

use crate::runner::{self, Phases, Summary};

/// Which comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Which {
    /// TreePO vs GRPO vs GRPO with tree sampling.
    Algos,
    /// Depth × segment length at a fixed d·l.
    Shape,
    /// Trajectories per query vs throughput, tree vs sequential.
    Width,
    /// Advantage aggregation ablation.
    Advantage,
    /// Fixed vs more initial divergence.
    Init,
    /// Even vs log-prob-steered branching.
    Branching,
    /// All of the above.
    All,
}

/// Arguments of `treepo experiment`.
#[derive(Args, Debug)]
pub struct ExperimentArgs {
    /// The comparison.
    #[arg(value_enum)]
    which: Which,
    /// Base configuration.
    #[arg(long, default_value = "configs/experiment.toml")]
    config: PathBuf,
    /// Seeds per arm.
    #[arg(long, default_value_t = 3)]
    seeds: u64,
    /// Output directory.
    #[arg(long, default_value = "runs/experiments")]
    out: PathBuf,
    /// Override `run.device`.
    #[arg(long)]
    device: Option<String>,
}

struct Arm {
    name: String,
    apply: Box<dyn Fn(&mut RunConfig)>,
}

fn arm(name: &str, apply: impl Fn(&mut RunConfig) + 'static) -> Arm {
    Arm { name: name.to_string(), apply: Box::new(apply) }
}

fn arms(which: Which, base: &RunConfig) -> Vec<Arm> {
    match which {
        Which::Algos => vec![
            arm("treepo", |c| c.rl.algo = Algo::Treepo),
            arm("grpo", |c| c.rl.algo = Algo::Grpo),
            arm("grpo-tree", |c| c.rl.algo = Algo::GrpoTree),
        ],
        Which::Shape => {
            let budget = base.rl.sampler.tree_max_depth * base.rl.sampler.tree_max_token_per_step;
            [2usize, 4, 8]
                .into_iter()
                .filter(|d| budget.is_multiple_of(*d))
                .map(|d| {
                    let l = budget / d;
                    arm(&format!("d{d}xl{l}"), move |c| {
                        c.rl.sampler.tree_max_depth = d;
                        c.rl.sampler.tree_max_token_per_step = l;
                    })
                })
                .collect()
        }
        Which::Advantage => {
            let base_treepo = base.rl.advantage.unwrap_or_default().treepo;
            let mk = move |agg, rej| AdvantageConfig {
                estimator: AdvantageEstimator::Treepo,
                treepo: TreepoOptions { aggregation: agg, rejection: rej, ..base_treepo },
                ..AdvantageConfig::default()
            };
            vec![
                arm("average", move |c| {
                    c.rl.advantage =
                        Some(mk(SubgroupAggregation::Average, SubgroupRejection::KeepAll))
                }),
                arm("size-weighted", move |c| {
                    c.rl.advantage =
                        Some(mk(SubgroupAggregation::GroupSize, SubgroupRejection::KeepAll))
                }),
                arm("size-weighted+rejection", move |c| {
                    c.rl.advantage =
                        Some(mk(SubgroupAggregation::GroupSize, SubgroupRejection::RejectZeroStd))
                }),
                arm("average+scale-only-whitening", move |c| {
                    let mut a = mk(SubgroupAggregation::Average, SubgroupRejection::KeepAll);
                    a.treepo.whitening = Whitening::ScaleOnly;
                    c.rl.advantage = Some(a);
                }),
            ]
        }
        Which::Init => vec![
            arm("fixed-init", |c| {
                c.rl.sampler.tree_random_first_div_min = None;
                c.rl.sampler.tree_random_first_div_max = None;
            }),
            arm("more-init", |c| {
                let w = c.rl.sampler.tree_max_width;
                c.rl.sampler.tree_random_first_div_min = Some(c.rl.sampler.tree_fixed_step_div);
                c.rl.sampler.tree_random_first_div_max = Some(w.min(8));
            }),
        ],
        Which::Branching => vec![
            arm("even", |c| c.rl.sampler.tree_div_policy = DivPolicy::FixedAvg),
            arm("low-prob-encourage", |c| {
                c.rl.sampler.tree_div_policy = DivPolicy::NodeLogprobWeightedDiv
            }),
        ],
        Which::Width | Which::All => Vec::new(),
    }
}

/// Runs the command.
pub fn run(a: ExperimentArgs, overrides: &[String]) -> Result<()> {
    let text = std::fs::read_to_string(&a.config)
        .with_context(|| format!("--config {}", a.config.display()))?;
    let mut base = RunConfig::from_toml_with_overrides(&text, &a.config, overrides)?;
    crate::common::set_config_origin(&a.config);
    if let Some(d) = &a.device {
        base.run.device = d.clone();
    }
    let list = match a.which {
        Which::All => vec![
            Which::Algos,
            Which::Shape,
            Which::Width,
            Which::Advantage,
            Which::Init,
            Which::Branching,
        ],
        w => vec![w],
    };
    let mut combined = String::new();
    for which in list {
        let report =
            if which == Which::Width { width(&a, &base)? } else { compare(&a, &base, which)? };
        println!("{report}");
        combined.push_str(&report);
        combined.push('\n');
    }
    let results = a.out.join("results.md");
    std::fs::write(&results, combined).with_context(|| format!("writing {}", results.display()))?;
    println!("reports: {}", a.out.display());
    Ok(())
}

/// One SFT checkpoint per seed, shared by every arm.
fn sft_checkpoint(a: &ExperimentArgs, base: &RunConfig, seed: u64) -> Result<PathBuf> {
    let dir = a.out.join(format!("sft-s{seed}"));
    let mut cfg = base.clone();
    cfg.run.seed = seed;
    // An earlier invocation's SFT is reused — continued if it was interrupted — when it was
    // trained with the same task, model and SFT settings.
    let existing = checkpoint::latest(&dir)?;
    if let Some(ck) = &existing
        && let Some(saved) = checkpoint::run_config(ck)?
        && (saved.task != cfg.task || saved.model != cfg.model || saved.sft != cfg.sft)
    {
        bail!(
            "{} holds an SFT run of another configuration ([task], [model] or [sft] differ \
             from {}); delete it or choose another --out",
            dir.display(),
            a.config.display()
        );
    }
    let s = runner::run(&cfg, &dir, Phases { sft: true, rl: false }, existing.is_some(), true)?;
    if s.interrupted {
        bail!("interrupted during the SFT of seed {seed}; rerun the command to continue it");
    }
    checkpoint::latest(&dir)?.ok_or_else(|| anyhow!("SFT of seed {seed} wrote no checkpoint"))
}

fn name_of(w: Which) -> &'static str {
    match w {
        Which::Algos => "algos",
        Which::Shape => "shape",
        Which::Width => "width",
        Which::Advantage => "advantage",
        Which::Init => "init",
        Which::Branching => "branching",
        Which::All => "all",
    }
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let m = v.iter().sum::<f64>() / n;
    let s = if v.len() > 1 {
        (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    (m, s)
}

fn compare(a: &ExperimentArgs, base: &RunConfig, which: Which) -> Result<String> {
    let dir = a.out.join(name_of(which));
    let mut rows: Vec<(String, Vec<Summary>)> = Vec::new();
    let mut run_dirs = Vec::new();
    for arm in arms(which, base) {
        let mut sums = Vec::new();
        for seed in 0..a.seeds {
            let ck = sft_checkpoint(a, base, seed)?;
            let mut cfg = base.clone();
            cfg.run.seed = seed;
            cfg.model.path = Some(ck);
            (arm.apply)(&mut cfg);
            cfg.validate().with_context(|| format!("arm {}", arm.name))?;
            let rd = dir.join(format!("{}-s{seed}", arm.name));
            if rd.exists() {
                std::fs::remove_dir_all(&rd)?;
            }
            eprintln!("{} / {} / seed {seed}", name_of(which), arm.name);
            let s = runner::run(&cfg, &rd, Phases { sft: false, rl: true }, false, true)?;
            if s.interrupted {
                // The arms are short and rerun from the shared SFT checkpoint.
                bail!(
                    "interrupted during {} / seed {seed}; rerun the command (SFT checkpoints \
                     are reused, arms start over)",
                    arm.name
                );
            }
            sums.push(s);
            if seed == 0 {
                run_dirs.push(rd);
            }
        }
        rows.push((arm.name, sums));
    }
    runner::plots(&dir, &run_dirs)?;
    let mut md = String::new();
    let k = base.eval.k;
    writeln!(
        md,
        "### {} ({} seeds; command: `treepo experiment {} --config {} --seeds {}`)\n",
        name_of(which),
        a.seeds,
        name_of(which),
        a.config.display(),
        a.seeds
    )?;
    writeln!(
        md,
        "| arm | avg@{k} after SFT | avg@{k} after RL | gain | tokens decoded in RL | sampling s | cost vs first arm |"
    )?;
    writeln!(md, "|---|---|---|---|---|---|---|")?;
    let first_cost = rows
        .first()
        .map(|(_, s)| mean_std(&s.iter().map(|x| x.rl_tokens_decoded as f64).collect::<Vec<_>>()).0)
        .unwrap_or(1.0);
    for (name, sums) in &rows {
        let before: Vec<f64> =
            sums.iter().filter_map(|s| s.before.as_ref().map(|r| r.avg_at_k)).collect();
        let after: Vec<f64> =
            sums.iter().filter_map(|s| s.after.as_ref().map(|r| r.avg_at_k)).collect();
        let gain: Vec<f64> = before.iter().zip(&after).map(|(b, a)| a - b).collect();
        let tok: Vec<f64> = sums.iter().map(|s| s.rl_tokens_decoded as f64).collect();
        let secs: Vec<f64> = sums.iter().map(|s| s.rl_sample_seconds).collect();
        let (b, bs) = mean_std(&before);
        let (af, afs) = mean_std(&after);
        let (g, gs) = mean_std(&gain);
        let (t, _) = mean_std(&tok);
        let (sc, _) = mean_std(&secs);
        writeln!(
            md,
            "| {name} | {b:.3} ± {bs:.3} | {af:.3} ± {afs:.3} | {g:+.3} ± {gs:.3} | {t:.0} | {sc:.1} | {:.2}× |",
            t / first_cost.max(1.0)
        )?;
    }
    writeln!(
        md,
        "\nPlots (seed 0): `{}/eval_acc_vs_step.svg`, `eval_acc_vs_tokens.svg`.",
        dir.display()
    )?;
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("report.md"), &md)
        .with_context(|| format!("writing {}", dir.join("report.md").display()))?;
    Ok(md)
}

fn width(a: &ExperimentArgs, base: &RunConfig) -> Result<String> {
    let ck = sft_checkpoint(a, base, 0)?;
    let dev = crate::common::device(&base.run.device)?;
    let model = treepo_trainer::model::Model::load(&dev, &ck)?;
    let task = crate::common::task(base)?;
    let tok = crate::common::tokenizer(task.as_ref(), Some(&ck), Some(model.config().vocab_size))?;
    let problems = treepo_trainer::tasks::problems(
        task.as_ref(),
        treepo_trainer::tasks::Split::Eval,
        0..base.rl.queries_per_step as u64,
    )
    .map_err(|e| anyhow!("{e}"))?;
    let prompts: Vec<Vec<u32>> =
        problems.iter().map(|p| tok.encode(&p.prompt)).collect::<Result<_, _>>()?;
    let mut md = String::new();
    writeln!(
        md,
        "### width (command: `treepo experiment width --config {}`)\n",
        a.config.display()
    )?;
    writeln!(
        md,
        "| w | tree traj/s | sequential traj/s | traj/s ratio | tree tokens/s | sequential tokens/s | tokens/s ratio |"
    )?;
    writeln!(md, "|---|---|---|---|---|---|---|")?;
    for w in [4usize, 8, 16, 32] {
        let mut cfg =
            crate::common::sampler_config(&base.rl.sampler, task.as_ref(), &tok, &model, 0)?;
        cfg.tree_max_width = w;
        let mut best = [(f64::MAX, 0f64, 0f64); 2];
        for _ in 0..2 {
            for (i, tree) in [true, false].into_iter().enumerate() {
                let (secs, out) = crate::bench_cmd::measure(&model, &cfg, &prompts, tree)?;
                let leaves = out.total_leaves() as f64;
                let resp = out.total_response_tokens();
                if secs < best[i].0 {
                    best[i] = (secs, leaves / secs, resp as f64 / secs);
                }
            }
        }
        let (t, s) = (best[0], best[1]);
        writeln!(
            md,
            "| {w} | {:.1} | {:.1} | {:.2}× | {:.1} | {:.1} | {:.2}× |",
            t.1,
            s.1,
            t.1 / s.1,
            t.2,
            s.2,
            t.2 / s.2
        )?;
    }
    let dir = a.out.join("width");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("report.md"), &md)
        .with_context(|| format!("writing {}", dir.join("report.md").display()))?;
    Ok(md)
}
