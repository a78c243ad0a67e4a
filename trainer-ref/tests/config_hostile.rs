//! Hostile run configurations, checkpoints and flags (issue 13, items 8 and 14): every value that
//! used to be truncated, clamped or ignored, and every invalid combination that used to fail only
//! after SFT had run, is an error naming the file and the key (or the flag) — raised before the
//! run directory is even created. A pool too small for the rollouts is recorded in the `rl`
//! metrics and warned about.

use std::path::Path;
use std::process::Output;

use treepo_trainer::run::RunConfig;

use crate::common::cli::{text, tiny, tmpdir, treepo, with};

/// Hostile values of single keys: each is refused, naming the file, the key and the value.
#[test]
fn hostile_values_are_refused_naming_file_and_key() {
    let base = tiny(Path::new("unused"));
    RunConfig::from_toml(&base, Path::new("ok.toml")).unwrap();
    let cases: &[(&str, &str, &[&str])] = &[
        // `as u32` truncated this to 2.
        ("run", "kv_pages = 4294967298", &["run.kv_pages", "4294967298"]),
        ("run", "kv_pages = 0", &["run.kv_pages", "= 0"]),
        ("run", "kv_pages = 134217728", &["run.kv_pages"]),
        // A negative coefficient turned KL off.
        ("rl.loss", "kl_coef = -1.0", &["rl.loss.kl_coef", "-1"]),
        ("rl.loss", "kl_coef = nan", &["rl.loss.kl_coef", "NaN"]),
        ("rl.loss", "kl_coef = inf", &["rl.loss.kl_coef", "inf"]),
        ("rl.loss", "entropy_coef = -0.5", &["rl.loss.entropy_coef"]),
        ("rl.loss", "clip_ratio_c = -3.0", &["rl.loss.clip_ratio_c"]),
        ("rl.loss", "clip_ratio_c = 0.5", &["rl.loss.clip_ratio_c"]),
        ("rl.loss", "clip_ratio_low = 1.5", &["rl.loss", "clip_ratio_low"]),
        // Accuracy over zero problems was reported as 0.0.
        ("eval", "problems = 0", &["eval.problems"]),
        ("eval", "temperature = inf", &["eval.temperature"]),
        ("rl", "mini_batches = 3", &["rl.mini_batches = 3", "rl.queries_per_step = 2"]),
        ("rl", "dynamic_sampling_rounds = -5", &["rl.dynamic_sampling_rounds", "-5"]),
        ("rl", "overlong_buffer = 9", &["rl.overlong_buffer = 9", "8 tokens"]),
        // Responses longer than the context were cut at it silently.
        ("model", "max_positions = 6", &["model.max_positions = 6", "d·l = 8"]),
        // Evaluation (k samples) with branching 2 failed only after SFT.
        ("eval", "k = 1", &["eval.k = 1", "tree_fixed_step_div b = 2"]),
    ];
    // Every case is tried; the failures are listed together.
    let mut failures = Vec::new();
    for (section, kv, needles) in cases {
        let e =
            match RunConfig::from_toml(&with(&base, section, kv), Path::new("hostile/file.toml")) {
                Ok(_) => {
                    failures.push(format!("[{section}] {kv}: accepted"));
                    continue;
                }
                Err(e) => e.to_string(),
            };
        if !e.contains("hostile/file.toml") {
            failures.push(format!("[{section}] {kv}: no file in {e:?}"));
        }
        for n in *needles {
            if !e.contains(n) {
                failures.push(format!("[{section}] {kv}: {n:?} missing from {e:?}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// Runs `treepo train` on `cfg` (written as `<dir>/hostile.toml`) with `extra` flags.
fn train(dir: &Path, cfg: &str, extra: &[&str]) -> Output {
    let path = dir.join("hostile.toml");
    std::fs::write(&path, cfg).unwrap();
    let mut args = vec!["train", "--config", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    treepo(&args)
}

/// Checks that only need the task (prompt lengths, the pool against one batch) and the config
/// file's own errors are raised by the binary before the run directory exists, naming the file.
#[test]
fn invalid_runs_fail_before_any_work() {
    let dir = tmpdir("preflight");
    let out = dir.join("runs");
    let base = tiny(&out);
    let cases: &[(&str, &str, &[&str])] = &[
        ("run", "kv_pages = 4294967298", &["run.kv_pages"]),
        ("run", "kv_pages = 0", &["run.kv_pages"]),
        ("rl.loss", "kl_coef = -1.0", &["rl.loss.kl_coef"]),
        ("eval", "k = 1", &["eval.k = 1"]),
        // Prompts of 40 bits (~42 tokens) do not fit 32 positions; the response (8) does.
        ("task", "max_bits = 40", &["model.max_positions = 32", "prompts of up to"]),
        // One RL batch's prompts alone need more than 2 pages.
        ("run", "kv_pages = 2", &["run.kv_pages = 2", "rl.queries_per_step = 2"]),
    ];
    let mut failures = Vec::new();
    for (section, kv, needles) in cases {
        let mut cfg = with(&base, section, kv);
        if kv.starts_with("max_bits") {
            cfg = with(&with(&cfg, "task", "min_bits = 40"), "model", "max_positions = 32");
        }
        let _ = std::fs::remove_dir_all(&out);
        let o = train(&dir, &cfg, &["--name", "r"]);
        let err = text(&o.stderr);
        let last = err.lines().last().unwrap_or("").to_string();
        if o.status.success() {
            failures.push(format!("[{section}] {kv}: accepted: {last}"));
        }
        if !err.contains("hostile.toml") {
            failures.push(format!("[{section}] {kv}: no file in {last}"));
        }
        for n in *needles {
            if !err.contains(n) {
                failures.push(format!("[{section}] {kv}: {n:?} missing from {last}"));
            }
        }
        if out.join("r").exists() {
            failures.push(format!("[{section}] {kv}: work started before the error"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--name` must stay inside `run.out_dir`.
#[test]
fn run_names_cannot_escape_the_out_dir() {
    let dir = tmpdir("names");
    let cfg = tiny(&dir.join("runs"));
    let abs = dir.join("elsewhere");
    for name in ["../escaped", "a/b", "..", ".", "", abs.to_str().unwrap(), "x/../../y"] {
        let o = train(&dir, &cfg, &["--name", name]);
        let err = text(&o.stderr);
        assert!(!o.status.success(), "--name {name:?} accepted");
        assert!(err.contains("--name"), "--name {name:?}: {err}");
    }
    assert!(!dir.join("escaped").exists() && !abs.exists() && !dir.join("runs").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A checkpoint whose `trainer_state.json` is damaged is refused on resume, naming the file.
#[test]
fn damaged_trainer_state_is_refused_on_resume() {
    let dir = tmpdir("state");
    let cfg = tiny(&dir.join("runs"));
    let path = dir.join("hostile.toml");
    std::fs::write(&path, &cfg).unwrap();
    let o = treepo(&["sft", "--config", path.to_str().unwrap(), "--name", "r"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let ckpts = dir.join("runs/r/checkpoints");
    let latest = std::fs::read_to_string(ckpts.join("latest")).unwrap();
    let state = ckpts.join(latest.trim()).join("trainer_state.json");
    let good = std::fs::read_to_string(&state).unwrap();
    let bogus = good.replace("\"sft\"", "\"bogus\"");
    assert_ne!(bogus, good);
    let mut failures = Vec::new();
    for (content, needle) in [
        (bogus.as_str(), "\"bogus\""),
        ("", "trainer_state.json"),
        ("{\"phase\": ", "trainer_state.json"),
        ("[1, 2]", "trainer_state.json"),
    ] {
        std::fs::write(&state, content).unwrap();
        let o = treepo(&["train", "--config", path.to_str().unwrap(), "--name", "r", "--resume"]);
        let err = text(&o.stderr);
        let last = err.lines().last().unwrap_or("").to_string();
        if o.status.success() {
            failures.push(format!("{content:?}: accepted: {last}"));
        } else if !err.contains(state.to_str().unwrap()) || !err.contains(needle) {
            failures.push(format!("{content:?}: file or {needle:?} not named in {last}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// An empty or garbled config file is an error naming it.
#[test]
fn garbled_config_files_are_named() {
    let dir = tmpdir("garbled");
    // (An empty file is the default configuration, a whole valid run: not tried here.)
    for content in ["[run", "kv_pages = ", "\u{0}\u{1}"] {
        let o = train(&dir, content, &["--name", "r"]);
        let err = text(&o.stderr);
        assert!(!o.status.success(), "{content:?} accepted");
        assert!(err.contains("hostile.toml"), "{content:?}: {err}");
    }
    let o = treepo(&["train", "--config", dir.join("missing.toml").to_str().unwrap()]);
    assert!(text(&o.stderr).contains("missing.toml"), "{}", text(&o.stderr));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A pool that passes the checks but is too small for the trees: the rollouts are cut short,
/// and the `rl` record says so (with a warning) instead of nothing.
#[test]
fn kv_exhaustion_is_recorded_in_rl_metrics() {
    let dir = tmpdir("kv");
    let out = dir.join("runs");
    // 2 queries × (1 prompt page + 1) = 4 pages pass; 4-wide trees of 8 tokens need more.
    let cfg = with(&with(&tiny(&out), "run", "kv_pages = 4"), "rl.sampler", "tree_max_width = 4");
    let cfg = with(&cfg, "eval", "problems = 1");
    let o = train(&dir, &cfg, &["--name", "r"]);
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    let metrics = std::fs::read_to_string(out.join("r/metrics.jsonl")).unwrap();
    let rl: Vec<serde_json::Value> = metrics
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["phase"] == "rl")
        .collect();
    assert_eq!(rl.len(), 1, "{metrics}");
    let kv = &rl[0]["kv_exhausted"];
    assert!(kv["events"].as_u64().unwrap() > 0, "{kv}");
    assert!(kv["leaves"].as_u64().unwrap() + kv["queries"].as_u64().unwrap() > 0, "{kv}");
    assert!(err.contains("run.kv_pages = 4") && err.contains("warning"), "{err}");
    // A roomy pool records zeros and prints no warning.
    let o = train(&dir, &tiny(&out), &["--name", "roomy"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let metrics = std::fs::read_to_string(out.join("roomy/metrics.jsonl")).unwrap();
    assert!(metrics.contains("\"kv_exhausted\":{\"events\":0,\"leaves\":0,\"queries\":0}"));
    assert!(!text(&o.stderr).contains("KV pool"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `treepo sample` / `treepo eval` errors name the flags typed, not the sampler's config keys.
#[test]
fn cli_errors_name_the_flags() {
    use treepo_kernels::Device;
    use treepo_trainer::model::{CharTokenizer, Model, ModelConfig, Tokenizer};
    use treepo_trainer::tasks::SYNTHETIC_VOCAB;
    let dir = tmpdir("flags");
    let tok = Tokenizer::Char(CharTokenizer::new(SYNTHETIC_VOCAB).unwrap());
    let mut mc = ModelConfig::tiny(tok.vocab_size());
    mc.num_hidden_layers = 1;
    Model::random(&Device::cpu(), mc, 3).unwrap().save(&dir, &tok).unwrap();
    let d = dir.to_str().unwrap();
    let sample = |extra: &[&str]| {
        let mut a = vec!["sample", "--model", d, "--prompt", "1011", "--device", "cpu"];
        for (k, v) in [("--depth", "2"), ("--segment", "4")] {
            if !extra.contains(&k) {
                a.extend_from_slice(&[k, v]);
            }
        }
        a.extend_from_slice(extra);
        text(&treepo(&a).stderr)
    };
    let cases: &[(&[&str], &[&str])] = &[
        (&["--width", "2", "--branch", "3"], &["--branch 3", "--width 2"]),
        (&["--width", "0"], &["--width"]),
        (&["--branch", "0"], &["--branch"]),
        (&["--top-p", "0"], &["--top-p"]),
        (&["--temperature=-1"], &["--temperature"]),
        (&["--depth", "9223372036854775807", "--segment", "4"], &["--depth", "--segment"]),
    ];
    for (extra, needles) in cases {
        let err = sample(extra);
        for n in *needles {
            assert!(err.contains(n), "{extra:?}: {n:?} missing from {err}");
        }
        assert!(!err.contains("tree_") && !err.contains("panicked"), "{extra:?}: {err}");
    }
    let eval = |extra: &[&str]| {
        let mut a = vec!["eval", "--model", d, "--task", "parity-cot", "--device", "cpu"];
        a.extend_from_slice(&["--problems", "2", "--max-tokens", "8"]);
        a.extend_from_slice(extra);
        treepo(&a)
    };
    // `--k 1` used to fail on the hidden branch factor 2 (`tree_fixed_step_div b = 2 exceeds
    // tree_max_width w = 1`).
    let o = eval(&["--k", "1"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    for (extra, needle) in [
        (&["--k", "0"][..], "--k"),
        (&["--problems", "0"][..], "--problems"),
        (&["--max-tokens", "0"][..], "--max-tokens"),
        (&["--temperature", "nan"][..], "--temperature"),
    ] {
        let o = eval(extra);
        let err = text(&o.stderr);
        assert!(!o.status.success(), "{extra:?} accepted");
        assert!(err.contains(needle) && !err.contains("tree_"), "{extra:?}: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
