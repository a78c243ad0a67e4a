//! A run from a [`RunConfig`]: supervised warm-up, evaluation, RL, evaluation — with a run
//! directory (resolved config, metrics JSONL, checkpoints, plots, summary) that can be resumed
//! from its last checkpoint.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, anyhow};
use serde::Serialize;
use treepo_trainer::pipeline::{self, EvalReport};
use treepo_trainer::run::{MetricsLog, RunConfig, TrainerState, checkpoint, plot, setup};
use treepo_trainer::tasks::{Split, TaskRng, problems};
use treepo_trainer::train::{AdamW, Trainer};

use crate::common::{self, interrupted};
use crate::progress::Progress;

/// Which phases to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Phases {
    /// Supervised warm-up.
    pub sft: bool,
    /// Reinforcement learning.
    pub rl: bool,
}

/// What a finished run reports.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    /// The run directory.
    pub run_dir: PathBuf,
    /// Evaluation before RL (after SFT).
    pub before: Option<EvalReport>,
    /// Evaluation after RL.
    pub after: Option<EvalReport>,
    /// Tokens the engine decoded during RL.
    pub rl_tokens_decoded: u64,
    /// Seconds spent sampling during RL.
    pub rl_sample_seconds: f64,
    /// Wall-clock seconds of the whole run.
    pub seconds: f64,
    /// Whether Ctrl-C stopped the run early (callers turn it into [`common::Interrupted`]).
    pub interrupted: bool,
    /// A few sampled answers after SFT (empty for quiet runs and runs resumed past SFT).
    pub before_examples: Vec<pipeline::Example>,
    /// The same problems' answers after RL.
    pub after_examples: Vec<pipeline::Example>,
}

/// Runs `cfg` into `run_dir`.
pub fn run(
    cfg: &RunConfig,
    run_dir: &Path,
    phases: Phases,
    resume: bool,
    quiet: bool,
) -> Result<Summary> {
    let t0 = Instant::now();
    // Every check that does not need training, before anything is created or trained.
    common::preflight(cfg)?;
    std::fs::create_dir_all(run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    let existing = checkpoint::latest(run_dir)?;
    if existing.is_some() && !resume {
        return Err(anyhow!(
            "{} already holds a run: pass --resume to continue it, --force to delete it and start \
             over, or choose another --name/--out",
            run_dir.display()
        ));
    }
    let config_path = run_dir.join("config.toml");
    std::fs::write(&config_path, cfg.to_toml()?)
        .with_context(|| format!("writing {}", config_path.display()))?;
    let dev = common::device(&cfg.run.device)?;
    let task = common::task(cfg)?;
    let (model, tok) = common::model(&dev, cfg, task.as_ref())?;
    if !quiet {
        eprintln!(
            "run {}: task {}, model {} params ({} layers, C {}), device {}",
            run_dir.display(),
            task.name(),
            model.layout().total,
            model.config().num_hidden_layers,
            model.config().hidden_size,
            dev.description()
        );
    }
    let hooks = common::hooks(task.as_ref(), &tok)?;
    let rl_sampler =
        common::sampler_config(&cfg.rl.sampler, task.as_ref(), &tok, &model, cfg.run.seed)?;
    let mut eval_sampler = rl_sampler.clone();
    eval_sampler.temperature = cfg.eval.temperature;
    eval_sampler.seed = common::eval_seed(cfg.run.seed);
    let mut sample = common::sample_fn(&tok, &hooks, cfg.run.kv_pages);
    let eval_problems = problems(task.as_ref(), Split::Eval, 0..cfg.eval.problems as u64)
        .map_err(|e| anyhow!("{e}"))?;

    let sft_optim = AdamW::new(&model, cfg.sft.optim)?;
    let mut trainer = Trainer::new(model, sft_optim);
    let mut state = TrainerState { phase: "sft".into(), rng: cfg.run.seed, ..Default::default() };
    if let Some(dir) = &existing {
        // The checkpoint's phase decides which optimizer its moments belong to.
        // Names the file in every error and refuses an unknown phase.
        let saved = common::saved_state(dir)?;
        if saved.phase == "rl" {
            trainer.optim = AdamW::new(&trainer.model, cfg.rl.optim)?;
        }
        state = checkpoint::restore(dir, &mut trainer)?;
        eprintln!("resuming from {} ({} step {})", dir.display(), state.phase, state.step);
        // What the lost interval logged is logged again by the resumed run.
        let dropped = MetricsLog::resume(&run_dir.join("metrics.jsonl"), &state.phase, state.step)?;
        if dropped > 0 {
            eprintln!("metrics.jsonl: dropped {dropped} records logged after that checkpoint");
        }
    }
    if existing.is_none() {
        // A fresh start: records of an earlier attempt that never reached a checkpoint go.
        MetricsLog::resume(&run_dir.join("metrics.jsonl"), "sft", 0)?;
    }
    let mut metrics = MetricsLog::open(&run_dir.join("metrics.jsonl"))?;
    let mut summary = Summary { run_dir: run_dir.to_path_buf(), ..Default::default() };

    // Supervised warm-up.
    if phases.sft && state.phase == "sft" && (state.step as usize) < cfg.sft.steps {
        // Resumed mid-SFT: the demonstration stream continues where the checkpoint left it.
        let mut rng =
            state.sft_rng.map_or_else(|| TaskRng::for_query(state.rng, 0), TaskRng::from_state);
        let mut pb = Progress::new(cfg.sft.steps as u64, "sft");
        pb.set_position(state.step);
        let batch = cfg.sft.batch_size;
        while (state.step as usize) < cfg.sft.steps {
            if interrupted() {
                break;
            }
            let first = state.next_problem;
            let t_step = Instant::now();
            let reports = pipeline::sft_steps(
                &mut trainer,
                task.as_ref(),
                &tok,
                first,
                batch,
                1,
                &mut rng,
                |_, _| {},
            )?;
            let secs = t_step.elapsed().as_secs_f64();
            let r = &reports[0];
            state.step += 1;
            state.sft_steps = state.step;
            state.next_problem += batch as u64;
            let tokens_per_s = r.tokens as f64 / secs.max(1e-9);
            metrics.log(
                "sft",
                state.step,
                &serde_json::json!({"loss": r.loss, "lr": r.step.lr, "grad_norm": r.step.grad_norm,
                    "clipped": r.step.clipped, "tokens": r.tokens, "tokens_per_s": tokens_per_s,
                    "seconds": secs}),
            )?;
            pb.set_message(format!(
                "loss {:.4} lr {:.1e} grad norm {:.3} | {:.0} tok/s",
                r.loss, r.step.lr, r.step.grad_norm, tokens_per_s
            ));
            pb.inc();
            // Periodic checkpoints (the last step's is the one below).
            let every = cfg.run.checkpoint_every;
            if every > 0
                && state.step.is_multiple_of(every)
                && (state.step as usize) < cfg.sft.steps
            {
                state.sft_rng = Some(rng.state());
                save(run_dir, &trainer, &tok, &state, cfg)?;
            }
        }
        pb.finish();
        if (state.step as usize) < cfg.sft.steps {
            // Interrupted: the stream's state, and the run's seed untouched until SFT ends.
            state.sft_rng = Some(rng.state());
        } else {
            state.rng = state.rng.wrapping_add(state.step);
            state.sft_rng = None;
        }
        save(run_dir, &trainer, &tok, &state, cfg)?;
        if interrupted() {
            summary.interrupted = true;
            return Ok(summary);
        }
    }

    // Evaluation: logged with the KV exhaustion it met (a cut sample scores as wrong).
    let eval = |trainer: &Trainer,
                sample: &mut pipeline::SampleFn<'_>,
                metrics: &mut MetricsLog,
                (when, step, tokens): (&str, u64, u64)|
     -> Result<EvalReport> {
        let kv_before = common::kv_exhaustion();
        let r = pipeline::evaluate(
            sample,
            &trainer.model,
            &eval_sampler,
            task.as_ref(),
            &tok,
            &eval_problems,
            cfg.eval.k,
        )?;
        let kv = common::kv_exhaustion().since(kv_before);
        if kv.any() {
            eprintln!(
                "warning: eval {when}: the KV pool (run.kv_pages = {}) ran out: {} samples cut \
                 short; raise run.kv_pages",
                cfg.run.kv_pages, kv.leaves
            );
        }
        let record = serde_json::json!({"when": when, "tokens_decoded": tokens, "report": &r,
            "kv_exhausted": &kv});
        metrics.log("eval", step, &record)?;
        Ok(r)
    };
    // A few answers for people to read, before and after RL (not for the quiet experiment runs).
    let n_examples = if quiet { 0 } else { eval_problems.len().min(3) };
    let examples = |trainer: &Trainer, sample: &mut pipeline::SampleFn<'_>| {
        let problems = &eval_problems[..n_examples];
        pipeline::examples(sample, &trainer.model, &eval_sampler, task.as_ref(), &tok, problems)
    };
    if phases.rl && state.phase == "sft" {
        let before = eval(&trainer, &mut sample, &mut metrics, ("after_sft", 0, 0))?;
        summary.before_examples = examples(&trainer, &mut sample)?;
        if !quiet {
            eprintln!(
                "after SFT: avg@{k} {:.3}, pass@{k} {:.3}, maj@{k} {:.3}, length {:.1}",
                before.avg_at_k,
                before.pass_at_k,
                before.maj_at_k,
                before.response_len,
                k = before.k
            );
        }
        summary.before = Some(before);
        trainer.optim = AdamW::new(&trainer.model, cfg.rl.optim)?;
        state.phase = "rl".into();
        state.step = 0;
    }

    // Reinforcement learning.
    if phases.rl {
        let mut settings = setup::rl_settings(cfg, &rl_sampler);
        if settings.loss.kl.is_some() {
            trainer.reference = Some(treepo_trainer::model::Model::from_params(
                trainer.device(),
                trainer.model.config().clone(),
                &trainer.model.params_host()?,
            )?);
        }
        let mut pb = Progress::new(cfg.rl.steps, cfg.rl.algo.name());
        pb.set_position(state.step);
        let q = cfg.rl.queries_per_step;
        let mut next_index = state.next_problem.max(setup::RL_FIRST_PROBLEM);
        while state.step < cfg.rl.steps {
            if interrupted() {
                break;
            }
            let mut next = || {
                let p = problems(task.as_ref(), Split::Train, next_index..next_index + q as u64)
                    .map_err(|e| treepo_trainer::train::TrainError::Batch(e.to_string()));
                next_index += q as u64;
                p
            };
            // A fresh, reproducible sampler seed per step: resuming at step k draws what an
            // uninterrupted run would have drawn.
            settings.sampler.seed = setup::step_seed(rl_sampler.seed, state.step);
            let kv_before = common::kv_exhaustion();
            let t_step = Instant::now();
            let stats = pipeline::rl_iteration(
                &mut trainer,
                &mut sample,
                task.as_ref(),
                &tok,
                &settings,
                &mut next,
            )?;
            state.step += 1;
            state.next_problem = next_index;
            state.tokens_decoded += stats.tokens_decoded as u64;
            state.sample_seconds += stats.time_sample;
            let kv = common::kv_exhaustion().since(kv_before);
            metrics.log("rl", state.step, &serde_json::json!({"algo": cfg.rl.algo.name(), "tokens_decoded_total": state.tokens_decoded, "stats": &stats, "kv_exhausted": &kv}))?;
            if kv.any() {
                pb.suspend(|| eprintln!(
                    "warning: RL step {}: the KV pool (run.kv_pages = {}) ran out: {} rollouts cut short, {} queries limited; raise run.kv_pages",
                    state.step, cfg.run.kv_pages, kv.leaves, kv.queries
                ));
            }
            pb.set_message(format!(
                "reward {:+.3} acc {:.3} len {:.1} | {:.0} tok/s",
                stats.reward,
                stats.acc,
                stats.response_len,
                stats.tokens_decoded as f64 / t_step.elapsed().as_secs_f64().max(1e-9)
            ));
            pb.inc();
            if cfg.eval.every > 0
                && state.step.is_multiple_of(cfg.eval.every)
                && state.step < cfg.rl.steps
            {
                let at = ("during_rl", state.step, state.tokens_decoded);
                eval(&trainer, &mut sample, &mut metrics, at)?;
            }
            // Periodic checkpoints (the last step's is the one after the loop).
            if cfg.run.checkpoint_every > 0
                && state.step.is_multiple_of(cfg.run.checkpoint_every)
                && state.step < cfg.rl.steps
            {
                save(run_dir, &trainer, &tok, &state, cfg)?;
            }
        }
        pb.finish();
        save(run_dir, &trainer, &tok, &state, cfg)?;
        summary.rl_tokens_decoded = state.tokens_decoded;
        summary.rl_sample_seconds = state.sample_seconds;
        if interrupted() {
            summary.interrupted = true;
            return Ok(summary);
        }
        let at = ("after_rl", state.step, state.tokens_decoded);
        summary.after = Some(eval(&trainer, &mut sample, &mut metrics, at)?);
        summary.after_examples = examples(&trainer, &mut sample)?;
    }
    summary.seconds = t0.elapsed().as_secs_f64();
    let summary_path = run_dir.join("summary.json");
    std::fs::write(&summary_path, serde_json::to_string_pretty(&summary)?)
        .with_context(|| format!("writing {}", summary_path.display()))?;
    plots(run_dir, &[run_dir.to_path_buf()])?;
    Ok(summary)
}

/// Saves a checkpoint (durably; healthy weights only) with the run's configuration, then prunes
/// to the newest `run.keep_last`.
fn save(
    run_dir: &Path,
    trainer: &Trainer,
    tok: &treepo_trainer::model::Tokenizer,
    state: &TrainerState,
    cfg: &RunConfig,
) -> Result<()> {
    checkpoint::save(run_dir, trainer, tok, state, Some(cfg))?;
    checkpoint::prune(run_dir, usize::try_from(cfg.run.keep_last).unwrap_or(usize::MAX))?;
    Ok(())
}

/// The plots of the phases the runs logged, one line per run directory (labelled with its
/// algorithm), written into `out`: the SFT loss vs step (`sft_loss_vs_step.svg`); for RL, eval
/// accuracy vs RL step and vs tokens decoded and the rollouts' accuracy vs step.
pub fn plots(out: &Path, runs: &[PathBuf]) -> Result<()> {
    let mut by_step = Vec::new();
    let mut by_tokens = Vec::new();
    let mut train_acc = Vec::new();
    let mut sft_loss = Vec::new();
    for dir in runs {
        let records = MetricsLog::read(&dir.join("metrics.jsonl"))?;
        let algo = records
            .iter()
            .find_map(|r| r.get("algo").and_then(|a| a.as_str()).map(String::from))
            .unwrap_or_else(|| {
                dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
            });
        let label = if runs.len() > 1 {
            format!(
                "{algo} ({})",
                dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
            )
        } else {
            algo
        };
        let mut s = Vec::new();
        let mut t = Vec::new();
        for r in records.iter().filter(|r| r.get("phase").and_then(|p| p.as_str()) == Some("eval"))
        {
            let step = r.get("step").and_then(|v| v.as_f64()).unwrap_or(0.0);
            let tokens = r.get("tokens_decoded").and_then(|v| v.as_f64()).unwrap_or(0.0);
            if let Some(acc) =
                r.get("report").and_then(|x| x.get("avg_at_k")).and_then(|v| v.as_f64())
            {
                s.push((step, acc));
                t.push((tokens, acc));
            }
        }
        let a: Vec<(f64, f64)> = records
            .iter()
            .filter(|r| r.get("phase").and_then(|p| p.as_str()) == Some("rl"))
            .filter_map(|r| Some((r.get("step")?.as_f64()?, r.get("stats")?.get("acc")?.as_f64()?)))
            .collect();
        let loss: Vec<(f64, f64)> = records
            .iter()
            .filter(|r| r.get("phase").and_then(|p| p.as_str()) == Some("sft"))
            .filter_map(|r| Some((r.get("step")?.as_f64()?, r.get("loss")?.as_f64()?)))
            .collect();
        by_step.push(plot::Series { label: label.clone(), points: s });
        by_tokens.push(plot::Series { label: label.clone(), points: t });
        train_acc.push(plot::Series { label: label.clone(), points: a });
        sft_loss.push(plot::Series { label, points: loss });
    }
    if sft_loss.iter().any(|s| !s.points.is_empty()) {
        plot::line_plot(
            &out.join("sft_loss_vs_step.svg"),
            "SFT loss (mean NLL of the response tokens) vs step",
            "SFT step",
            "loss",
            &sft_loss,
        )?;
    }
    if by_step.iter().chain(&train_acc).all(|s| s.points.is_empty()) {
        return Ok(());
    }
    plot::line_plot(
        &out.join("eval_acc_vs_step.svg"),
        "eval accuracy (avg@k) vs RL step",
        "RL step",
        "avg@k",
        &by_step,
    )?;
    plot::line_plot(
        &out.join("eval_acc_vs_tokens.svg"),
        "eval accuracy vs tokens decoded in RL",
        "tokens decoded",
        "avg@k",
        &by_tokens,
    )?;
    plot::line_plot(
        &out.join("train_acc_vs_step.svg"),
        "accuracy of sampled rollouts vs RL step",
        "RL step",
        "acc",
        &train_acc,
    )?;
    Ok(())
}
