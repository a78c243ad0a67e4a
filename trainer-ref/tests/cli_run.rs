//! The CLI tells the truth (issue 13, items 11–14): `eval` and `sample` use the configuration a
//! checkpoint was trained with, `--model` takes a run directory, runs log progress without a
//! terminal and record SFT metrics, Ctrl-C exits non-zero with a resumable checkpoint, runs are
//! never overwritten without `--force`, and `--section.key=value` overrides any config key.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use treepo_trainer::run::MetricsLog;

use crate::common::cli::{fails_with, ok, text, tiny, tmpdir, treepo, with};

/// `tiny` with enough eval problems for a meaningful figure.
fn config(out: &Path) -> String {
    with(&tiny(out), "eval", "problems = 16")
}

/// `treepo <cmd> --config <dir>/run.toml --name <name> <extra>`.
fn run(cmd: &str, dir: &Path, cfg: &str, name: &str, extra: &[&str]) -> Output {
    let path = dir.join("run.toml");
    std::fs::write(&path, cfg).unwrap();
    let mut args = vec![cmd, "--config", path.to_str().unwrap(), "--name", name];
    args.extend_from_slice(extra);
    treepo(&args)
}

/// The number after `key` in `s` (`avg@2 0.4375`).
fn figure(s: &str, key: &str) -> f64 {
    let at = s.find(key).unwrap_or_else(|| panic!("{key:?} not in {s:?}")) + key.len();
    s[at..].split_whitespace().next().unwrap().parse().unwrap()
}

/// `treepo eval --model <run dir>` with no other flag reproduces the run's final accuracy: the
/// checkpoint carries its task (4-bit parity here, not the task's 12-bit default) and its eval
/// settings. A different `--task` is warned about; `--task math` needs `--data`.
#[test]
fn eval_reproduces_the_runs_accuracy() {
    let dir = tmpdir("eval");
    let out = dir.join("runs");
    ok(&run("train", &dir, &config(&out), "r", &[]));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("r/summary.json")).unwrap())
            .unwrap();
    let want = summary["after"]["avg_at_k"].as_f64().unwrap();
    let run_dir = out.join("r");
    for model in [run_dir.clone(), run_dir.join("checkpoints")] {
        let got = figure(&ok(&treepo(&["eval", "--model", model.to_str().unwrap()])), "avg@2");
        assert!((got - want).abs() < 1e-4, "eval {}: {got} vs the run's {want}", model.display());
    }
    let o = treepo(&["eval", "--model", run_dir.to_str().unwrap(), "--k", "3"]);
    assert!(text(&o.stderr).contains("--k 3 overrides the run's eval.k = 2"), "{o:?}");
    ok(&o);
    let m = run_dir.to_str().unwrap();
    let o = treepo(&["eval", "--model", m, "--task", "countdown", "--problems", "2"]);
    assert!(text(&o.stderr).contains("overrides the task the checkpoint was trained on"));
    fails_with(&treepo(&["eval", "--model", m, "--task", "math"]), &["--task math needs --data"]);
    fails_with(
        &treepo(&["eval", "--model", m, "--data", "x.jsonl"]),
        &["--data is for --task math"],
    );
    // `--model` pointing above a run says what to pass; a missing path says so once.
    fails_with(&treepo(&["eval", "--model", out.to_str().unwrap()]), &["pass e.g. runs/demo"]);
    let missing = dir.join("nope");
    fails_with(&treepo(&["eval", "--model", missing.to_str().unwrap()]), &["no such directory"]);
    // A checkpoint with no run.toml (an older one) asks for --task.
    let ck = std::fs::read_dir(run_dir.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.join("run.toml").is_file())
        .unwrap();
    std::fs::remove_file(ck.join("run.toml")).unwrap();
    fails_with(&treepo(&["eval", "--model", ck.to_str().unwrap()]), &["pass --task NAME"]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `sample` on a run directory uses the run's task and tree shape; `--prompt-ids` takes token
/// ids; a shape past the context shrinks `d` and says so.
#[test]
fn sample_uses_the_runs_settings() {
    let dir = tmpdir("sample-run");
    let out = dir.join("runs");
    ok(&run("train", &dir, &config(&out), "r", &[]));
    let m = out.join("r");
    let m = m.to_str().unwrap();
    let s = ok(&treepo(&["sample", "--model", m, "--prompt", "0110:", "--device", "cpu"]));
    assert!(s.contains("tree sampling: w=4 b=2 d=2 l=4"), "{s}");
    let o = treepo(&["sample", "--model", m, "--prompt-ids", "1,2,3", "--device", "cpu"]);
    assert!(ok(&o).contains("(3 tokens)"));
    let o = treepo(&["sample", "--model", m, "--prompt-ids", "1,999", "--device", "cpu"]);
    fails_with(&o, &["--prompt-ids: token 999 is outside the vocabulary"]);
    let o = treepo(&["sample", "--model", m, "--prompt", "0110:", "--segment", "40"]);
    assert!(text(&o.stderr).contains("note: d = 1 segments of 40 tokens"), "{o:?}");
    assert!(ok(&o).contains("d=1 l=40"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Without a terminal, progress is a timestamped line per interval; SFT records its learning
/// rate, gradient norm, tokens/s and time; `treepo sft` plots the loss, not empty RL plots.
#[test]
fn runs_log_progress_and_sft_metrics() {
    let dir = tmpdir("progress");
    let out = dir.join("runs");
    let cfg = with(&config(&out), "sft", "steps = 3");
    let path = dir.join("run.toml");
    std::fs::write(&path, cfg).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_treepo"))
        .args(["sft", "--config", path.to_str().unwrap(), "--name", "s"])
        .env("TREEPO_LOG_EVERY", "0")
        .output()
        .unwrap();
    ok(&o);
    let e = text(&o.stderr);
    let line = e.lines().find(|l| l.contains(" sft 3/3 (100%) loss ")).unwrap_or_else(|| {
        panic!("no progress line in:\n{e}");
    });
    assert!(line.contains("grad norm") && line.contains("steps/s"), "{line}");
    assert!(line.starts_with("20") && line.split(' ').next().unwrap().ends_with('Z'), "{line}");
    let records = MetricsLog::read(&out.join("s/metrics.jsonl")).unwrap();
    let sft: Vec<_> = records.iter().filter(|r| r["phase"] == "sft").collect();
    assert_eq!(sft.len(), 3);
    for r in &sft {
        for k in ["loss", "lr", "grad_norm", "tokens", "tokens_per_s", "time"] {
            assert!(r[k].as_f64().is_some_and(f64::is_finite), "{k} missing from {r:?}");
        }
    }
    assert!(out.join("s/sft_loss_vs_step.svg").is_file());
    assert!(!out.join("s/eval_acc_vs_step.svg").exists(), "an SFT run wrote empty RL plots");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Ctrl-C saves a checkpoint, says how to resume and exits with 130; the run then resumes.
#[test]
fn ctrl_c_exits_130_with_a_resumable_run() {
    let dir = tmpdir("ctrl-c");
    let out = dir.join("runs");
    let path = dir.join("run.toml");
    std::fs::write(&path, with(&config(&out), "sft", "steps = 1000000")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_treepo"))
        .args(["train", "--config", path.to_str().unwrap(), "--name", "c"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for a few SFT steps, then interrupt.
    let metrics = out.join("c/metrics.jsonl");
    let t0 = Instant::now();
    while std::fs::read_to_string(&metrics).map_or(0, |s| s.lines().count()) < 3 {
        assert!(t0.elapsed() < Duration::from_secs(120), "the run logged no SFT step");
        std::thread::sleep(Duration::from_millis(50));
    }
    let kill = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let o = child.wait_with_output().unwrap();
    let e = text(&o.stderr);
    assert_eq!(o.status.code(), Some(130), "{e}");
    assert!(e.contains("the run is resumable") && e.contains("--resume"), "{e}");
    let state = out.join("c/checkpoints/latest");
    let latest = std::fs::read_to_string(&state).unwrap();
    let step: u64 = latest.trim().trim_start_matches("sft-").parse().unwrap();
    // Resume to two steps past the checkpoint (an override of the step count), then RL.
    let steps = format!("--sft.steps={}", step + 2);
    let s = ok(&run(
        "train",
        &dir,
        &with(&config(&out), "sft", "steps = 1000000"),
        "c",
        &["--resume", &steps],
    ));
    assert!(s.contains("after RL"), "{s}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A run directory is never overwritten without `--force` (`train` and `demo` alike), and
/// `--force` deletes only what looks like a run.
#[test]
fn runs_are_not_overwritten_without_force() {
    let dir = tmpdir("overwrite");
    let out = dir.join("runs");
    let cfg = config(&out);
    ok(&run("sft", &dir, &cfg, "o", &[]));
    fails_with(&run("sft", &dir, &cfg, "o", &[]), &["already holds a run", "--force"]);
    ok(&run("sft", &dir, &cfg, "o", &["--force"]));
    fails_with(&run("sft", &dir, &cfg, "o", &["--force", "--resume"]), &["cannot be used with"]);
    // The demo: an existing run is refused before any work.
    let demo = out.join("demo-quick");
    std::fs::create_dir_all(demo.join("checkpoints")).unwrap();
    let src = out.join("o/checkpoints");
    let name = std::fs::read_to_string(src.join("latest")).unwrap();
    std::fs::rename(src.join(name.trim()), demo.join("checkpoints").join(name.trim())).unwrap();
    std::fs::write(demo.join("checkpoints/latest"), &name).unwrap();
    let o = out.to_str().unwrap();
    fails_with(&treepo(&["demo", "--quick", "--out", o]), &["already holds a run", "--force"]);
    // `--force` on a directory that is not a run leaves it alone.
    let precious = dir.join("p/demo-quick");
    std::fs::create_dir_all(&precious).unwrap();
    std::fs::write(precious.join("notes.txt"), "keep").unwrap();
    let p = dir.join("p");
    let o = treepo(&["demo", "--quick", "--force", "--out", p.to_str().unwrap()]);
    fails_with(&o, &["does not look like a run directory"]);
    assert!(precious.join("notes.txt").is_file());
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--section.key=value` overrides any key of the run's TOML; mistakes name the override.
#[test]
fn config_keys_are_overridden_from_the_command_line() {
    let dir = tmpdir("overrides");
    let out = dir.join("runs");
    let cfg = config(&out);
    ok(&run("train", &dir, &cfg, "o", &["--rl.steps=2", "--eval.problems=3"]));
    let records = MetricsLog::read(&out.join("o/metrics.jsonl")).unwrap();
    assert_eq!(records.iter().filter(|r| r["phase"] == "rl").count(), 2);
    let resolved = std::fs::read_to_string(out.join("o/config.toml")).unwrap();
    assert!(resolved.contains("problems = 3"), "{resolved}");
    let cases: &[(&[&str], &[&str])] = &[
        (&["--rl.stpes=2"], &["override \"rl.stpes=2\"", "unknown field `stpes`"]),
        (&["--rl.steps=many"], &["override \"rl.steps=many\""]),
        (&["--rl.steps"], &["write it as --rl.steps=VALUE"]),
        (&["--run.seed.x=1"], &["override \"run.seed.x=1\"", "run.seed"]),
        (&["--run.device.x=1"], &["run.device is a value, not a table"]),
        (&["--rl.queries_per_step=0"], &["rl.queries_per_step"]),
    ];
    for (i, (extra, needles)) in cases.iter().enumerate() {
        fails_with(&run("train", &dir, &cfg, &format!("bad{i}"), extra), needles);
    }
    let o = treepo(&["eval", "--model", "x", "--rl.steps=2"]);
    fails_with(&o, &["`treepo eval` has no run configuration to override"]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `eval --task math --data FILE` evaluates on the file's questions (a random model over a
/// character tokenizer that covers the prompts; the figure is meaningless, the path is not).
#[test]
fn eval_runs_math_from_a_data_file() {
    use treepo_kernels::Device;
    use treepo_trainer::model::{CharTokenizer, Model, ModelConfig, Tokenizer};
    let dir = tmpdir("math");
    let printable: String = (' '..='~').chain(['\n']).collect();
    let tok = Tokenizer::Char(CharTokenizer::new(&printable).unwrap());
    let mut mc = ModelConfig::tiny(tok.vocab_size());
    mc.num_hidden_layers = 1;
    mc.eos_token_ids = vec![tok.token_id("#").unwrap()];
    let ck = dir.join("ck");
    Model::random(&Device::cpu(), mc, 5).unwrap().save(&ck, &tok).unwrap();
    let data = dir.join("q.jsonl");
    let lines = [
        "{\"question\": \"What is 2+3?\", \"answer\": \"5\"}",
        "{\"question\": \"7*6?\", \"answer\": \"42\"}",
    ];
    std::fs::write(&data, lines.join("\n")).unwrap();
    let (c, d) = (ck.to_str().unwrap(), data.to_str().unwrap());
    let args = ["eval", "--model", c, "--task", "math", "--data", d, "--problems", "2", "--k", "2"];
    let s = ok(&treepo(&[&args[..], &["--max-tokens", "8", "--device", "cpu"]].concat()));
    assert!(s.contains("2 problems × 2 samples: avg@2"), "{s}");
    let _ = std::fs::remove_dir_all(&dir);
}
