//! The crash-safety contract, proven on the real binary: a `treepo train` run killed at any
//! instant — including inside a checkpoint save and inside a metrics write — and resumed with
//! `--resume` ends with weights byte-identical to an uninterrupted run,
//! and with the same metrics records, none duplicated.
//!
//! Kills come two ways: deterministic crash points (`TREEPO_FAULT=<point>:<n>`, see
//! `treepo_trainer::run::fault`: the process aborts there, without cleanup, like SIGKILL) at
//! every instant where a crash used to lose data, and SIGKILL from outside at random times.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use treepo_trainer::run::{MetricsLog, RunConfig};

fn tmpdir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("treepo-kill-harness-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A short run: 12 SFT steps, 4 RL steps, a checkpoint every 3 steps of each phase, an eval
/// every 2 RL steps, two checkpoints kept.
fn config(out: &Path) -> PathBuf {
    let demo =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/demo.toml"))
            .unwrap();
    let mut cfg = RunConfig::from_toml(&demo, Path::new("configs/demo.toml")).unwrap();
    cfg.run.device = "cpu".into();
    cfg.run.out_dir = out.to_path_buf();
    cfg.run.checkpoint_every = 3;
    cfg.run.keep_last = 2;
    cfg.sft.steps = 12;
    cfg.rl.steps = 4;
    cfg.rl.queries_per_step = 4;
    cfg.eval.problems = 4;
    cfg.eval.k = 2;
    cfg.eval.every = 2;
    let path = out.join("kill.toml");
    std::fs::write(&path, cfg.to_toml().unwrap()).unwrap();
    path
}

fn train(cfg: &Path, name: &str, fault: Option<&str>) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_treepo"));
    c.args(["train", "--config"]).arg(cfg).args(["--name", name, "--resume"]);
    c.env_remove("TREEPO_FAULT").stdout(Stdio::null()).stderr(Stdio::piped());
    if let Some(f) = fault {
        c.env("TREEPO_FAULT", f);
    }
    c
}

/// Resumes `name` (no crash point this time): it must complete.
fn resume_to_end(cfg: &Path, name: &str) {
    let out = train(cfg, name, None).output().unwrap();
    assert!(
        out.status.success(),
        "resuming {name} failed: {}",
        String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")
    );
}

/// The final weights and the metrics records (phase, step, and the SFT loss / RL reward).
fn outcome(run: &Path) -> (Vec<u8>, Vec<String>) {
    let latest = std::fs::read_to_string(run.join("checkpoints/latest")).unwrap();
    let weights =
        std::fs::read(run.join("checkpoints").join(latest.trim()).join("model.safetensors"))
            .unwrap();
    let records = MetricsLog::read(&run.join("metrics.jsonl"))
        .unwrap()
        .iter()
        .map(|r| {
            let v = |k: &str| r.get(k).map(|x| x.to_string()).unwrap_or_default();
            let reward = r.get("stats").and_then(|s| s.get("reward")).map(|x| x.to_string());
            format!(
                "{} {} {} {} {}",
                v("phase"),
                v("step"),
                v("when"),
                v("loss"),
                reward.unwrap_or_default()
            )
        })
        .collect();
    (weights, records)
}

#[test]
fn killed_runs_resume_to_identical_weights() {
    let base = tmpdir();
    let cfg = config(&base);
    let t0 = Instant::now();
    let out = train(&cfg, "reference", None).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let reference_secs = t0.elapsed().as_secs_f64();
    let (want_w, want_m) = outcome(&base.join("reference"));
    assert_eq!(
        want_m.len(),
        12 + 1 + 4 + 1 + 1,
        "12 sft, eval after sft, 4 rl, 1 eval during, 1 after"
    );
    let check = |name: &str, how: &str| {
        let (w, m) = outcome(&base.join(name));
        assert_eq!(m, want_m, "{how}: metrics records differ from the uninterrupted run");
        assert!(w == want_w, "{how}: final weights differ from the uninterrupted run");
        let kept = std::fs::read_dir(base.join(name).join("checkpoints")).unwrap().count();
        assert!(kept <= 3, "{how}: {kept} entries in checkpoints/ (keep_last = 2, plus latest)");
    };

    // Every crash point, at several arrivals (the n-th save / write of the run).
    let points = [
        ("save:model-written", &[1u64, 3][..]),
        ("save:before-state", &[2]),
        ("write_atomic:before-rename", &[1, 5, 9]),
        ("save:before-rename", &[1, 4]),
        ("save:before-latest", &[2, 5]),
        ("save:before-cleanup", &[3]),
        ("metrics:record", &[1, 7, 13, 16, 19]),
    ];
    let mut kills = 0;
    for (point, arrivals) in points {
        for n in arrivals {
            let name = format!("fault-{}-{n}", point.replace(':', "-"));
            let fault = format!("{point}:{n}");
            let out = train(&cfg, &name, Some(&fault)).output().unwrap();
            assert!(!out.status.success(), "{fault}: the run was not killed (point never reached)");
            kills += 1;
            resume_to_end(&cfg, &name);
            check(&name, &fault);
        }
    }

    // SIGKILL from outside at random instants, twice per run, then resume to the end.
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64 ^ u64::from(std::process::id());
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % 1000) as f64 / 1000.0
    };
    for trial in 0..4 {
        let name = format!("sigkill-{trial}");
        for _ in 0..2 {
            let mut child = train(&cfg, &name, None).stderr(Stdio::null()).spawn().unwrap();
            std::thread::sleep(Duration::from_secs_f64(rand() * reference_secs));
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap();
                kills += 1;
            }
            child.wait().unwrap();
        }
        resume_to_end(&cfg, &name);
        check(&name, &format!("SIGKILL trial {trial}"));
    }
    eprintln!(
        "kill harness: {kills} kills survived (crash points and SIGKILLs); reference run {:.1} s",
        reference_secs
    );
    let _ = std::fs::remove_dir_all(&base);
}
