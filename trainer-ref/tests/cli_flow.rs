//! `treepo flow`: the quick demo writes its run directory and improves nothing it should not
//! break; bad configurations are typed errors that name the key; an existing run is refused.

use crate::common::cli::{fails_with, ok, tmpdir, treepo};

/// The quick demo (both methods) writes the report, the grids and loadable checkpoints; a
/// second run is refused without `--force`.
#[test]
fn flow_demo_quick_writes_its_run() {
    let dir = tmpdir("flow-demo");
    let out = dir.to_str().unwrap();
    for method in ["treegrpo", "dancegrpo"] {
        let stdout =
            ok(&treepo(&["flow", "demo", "--quick", "--force", "--method", method, "--out", out]));
        assert!(
            stdout.contains(&format!("flow {method}")) && stdout.contains("after RL"),
            "{stdout}"
        );
        let run = dir.join("flow-demo-quick");
        for f in [
            "config.toml",
            "metrics.jsonl",
            "summary.json",
            "samples_before.png",
            "samples_after.png",
            "reward_vs_step.svg",
            "reward_vs_nfe.svg",
            "reward_vs_time.svg",
            "checkpoints/pretrained.safetensors",
            "checkpoints/final.safetensors",
            "checkpoints/classifier.safetensors",
        ] {
            let len = std::fs::metadata(run.join(f)).map(|m| m.len()).unwrap_or(0);
            assert!(len > 0, "{method}: {f} missing or empty");
        }
        let summary: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap())
                .unwrap();
        assert_eq!(summary["method"], method);
        let dev = treepo_kernels::Device::cpu();
        let net =
            treepo_flow::net::VelocityNet::load(&dev, &run.join("checkpoints/final.safetensors"))
                .unwrap();
        assert_eq!(net.config, treepo_flow::config::FlowConfig::quick().model);
    }
    fails_with(
        &treepo(&["flow", "demo", "--quick", "--out", out]),
        &["already holds a run", "--force"],
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Configurations the method cannot run are refused before any work, naming the key.
#[test]
fn flow_bad_configs_are_typed_errors() {
    let dir = tmpdir("flow-bad");
    let out = dir.to_str().unwrap();
    let cases: &[(&str, &[&str])] = &[
        ("--rl.w=11", &["rl.w = 11", "sampling.steps"]),
        ("--rl.k=0", &["rl.k = 0"]),
        ("--rl.w=0", &["rl.w = 0"]),
        ("--sampling.steps=0", &["sampling.steps"]),
        ("--rl.group=0", &["rl.group = 0"]),
        ("--rl.method=nope", &["rl.method"]),
        ("--rl.nope=1", &["rl.nope"]),
        ("--sampling.noise_level=-1", &["noise_level"]),
    ];
    for (o, needles) in cases {
        fails_with(&treepo(&["flow", "demo", "--quick", "--force", "--out", out, o]), needles);
        assert!(!dir.join("flow-demo-quick").exists(), "{o}: a run directory was created");
    }
    fails_with(&treepo(&["flow", "experiment", "--seeds", "0", "--out", out]), &["--seeds 0"]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The experiment runs both methods from one pretrained generator per seed and reports the
/// cost comparison.
#[test]
fn flow_experiment_quick_reports_both_methods() {
    let dir = tmpdir("flow-exp");
    let out = dir.to_str().unwrap();
    let stdout = ok(&treepo(&["flow", "experiment", "--quick", "--seeds", "2", "--out", out]));
    for needle in ["| treegrpo |", "| dancegrpo |", "DanceGRPO's final reward"] {
        assert!(stdout.contains(needle), "{needle:?} missing from:\n{stdout}");
    }
    let report = std::fs::read_to_string(dir.join("flow-quick/report.md")).unwrap();
    assert!(report.contains("| 1 |"), "no row for seed 1:\n{report}");
    let _ = std::fs::remove_dir_all(&dir);
}
