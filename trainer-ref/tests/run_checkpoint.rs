//! Checkpoint saves that survive being killed at any instant (`run::checkpoint`): a re-save of
//! the same step never deletes the directory `latest` names, stray temporaries are cleaned up,
//! the state an older non-atomic save could leave is recovered, and a broken `latest` is an
//! error naming the file.

use std::path::{Path, PathBuf};

use treepo_kernels::Device;
use treepo_trainer::model::{CharTokenizer, ModelType, Tokenizer};
use treepo_trainer::run::checkpoint::{latest, restore, run_config, save};
use treepo_trainer::run::{RunConfig, TrainerState};
use treepo_trainer::train::OptimConfig;

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("treepo-ckpt-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn tok() -> Tokenizer {
    Tokenizer::Char(CharTokenizer::new("_#0123456789+-*/=,>:A").unwrap())
}

#[test]
fn resaving_a_step_never_removes_what_latest_names() {
    let dir = tmpdir("resave");
    let cfg = crate::common::tiny_config(true, ModelType::Qwen2);
    let dev = Device::cpu();
    let tr = crate::common::trainer(&dev, cfg.clone(), 3, OptimConfig::default());
    let state = TrainerState { phase: "rl".into(), step: 60, ..Default::default() };
    let first = save(&dir, &tr, &tok(), &state, None).unwrap();
    assert_eq!(first.file_name().unwrap(), "rl-000060");
    // Stray temporaries of killed saves, of this step and of another.
    let root = dir.join("checkpoints");
    std::fs::create_dir_all(root.join(".tmp-rl-000070")).unwrap();
    std::fs::write(root.join("latest.tmp4242"), "rl-000070").unwrap();
    // The same step again (a resumed finished run): a fresh name, then the old copy goes.
    let second = save(&dir, &tr, &tok(), &state, None).unwrap();
    assert_eq!(second.file_name().unwrap(), "rl-000060.1");
    assert_eq!(latest(&dir).unwrap().unwrap(), second);
    assert_eq!(entries(&root), ["latest", "rl-000060.1"]);
    // And again: back to the plain name.
    let third = save(&dir, &tr, &tok(), &state, None).unwrap();
    assert_eq!(third.file_name().unwrap(), "rl-000060");
    assert_eq!(entries(&root), ["latest", "rl-000060"]);
    let mut back = crate::common::trainer(&dev, cfg, 9, OptimConfig::default());
    assert_eq!(restore(&third, &mut back).unwrap(), state);
    assert_eq!(back.model.params_host().unwrap(), tr.model.params_host().unwrap());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn latest_recovers_an_interrupted_old_style_save() {
    let dir = tmpdir("recover");
    let cfg = crate::common::tiny_config(false, ModelType::Llama);
    let tr = crate::common::trainer(&Device::cpu(), cfg, 5, OptimConfig::default());
    let state = TrainerState { phase: "rl".into(), step: 40, ..Default::default() };
    let ck = save(&dir, &tr, &tok(), &state, None).unwrap();
    // What the old save left when killed between `remove_dir_all(dst)` and the rename.
    let root = dir.join("checkpoints");
    std::fs::rename(&ck, root.join(".tmp-rl-000040")).unwrap();
    assert_eq!(latest(&dir).unwrap().unwrap(), ck, "recovered from .tmp-rl-000040");
    assert!(ck.join("trainer_state.json").is_file());
    // An incomplete temporary (no trainer_state.json: killed mid-write) is not recovered.
    std::fs::rename(&ck, root.join(".tmp-rl-000040")).unwrap();
    std::fs::remove_file(root.join(".tmp-rl-000040/trainer_state.json")).unwrap();
    let e = latest(&dir).unwrap_err().to_string();
    assert!(e.contains("latest") && e.contains("does not exist"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_broken_latest_is_an_error_naming_the_file() {
    let dir = tmpdir("broken");
    let root = dir.join("checkpoints");
    std::fs::create_dir_all(&root).unwrap();
    for bad in ["", "\n", "../../etc", ".tmp-rl-000001", "a/b"] {
        std::fs::write(root.join("latest"), bad).unwrap();
        let e = latest(&dir).unwrap_err().to_string();
        assert!(
            e.contains("checkpoints/latest") && e.contains("not a checkpoint name"),
            "{bad:?}: {e}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Exploded or non-finite weights, or non-finite optimizer moments, are never saved: `save`
/// refuses them and `latest` stays on the last good checkpoint; a checkpoint holding them
/// (written by an older version) is refused at load, naming it.
#[test]
fn unhealthy_states_are_never_saved_nor_loaded() {
    let dir = tmpdir("health");
    let cfg = crate::common::tiny_config(true, ModelType::Qwen2);
    let dev = Device::cpu();
    let mut tr = crate::common::trainer(&dev, cfg.clone(), 4, OptimConfig::default());
    let good = TrainerState { phase: "rl".into(), step: 1, ..Default::default() };
    let first = save(&dir, &tr, &tok(), &good, None).unwrap();
    let params = tr.model.params_host().unwrap();
    for (i, bad) in [(3usize, f32::NAN), (5, f32::INFINITY), (7, 5e15), (9, -1.5e38)] {
        let mut p = params.clone();
        p[i] = bad;
        dev.write(tr.model.params_mut(), &p).unwrap();
        let state = TrainerState { phase: "rl".into(), step: 2, ..Default::default() };
        let e = save(&dir, &tr, &tok(), &state, None).unwrap_err().to_string();
        assert!(e.contains("rl step 2") && e.contains("refusing"), "{bad}: {e}");
        assert_eq!(latest(&dir).unwrap().unwrap(), first, "latest moved to an unhealthy state");
    }
    dev.write(tr.model.params_mut(), &params).unwrap();
    // Non-finite moments in a checkpoint on disk: restore refuses them.
    let (m, v, steps) = tr.optim.state(&dev).unwrap();
    let mut m2 = m.clone();
    m2[2] = f32::NAN;
    tr.optim.restore(&dev, &m2, &v, steps).unwrap();
    let state = TrainerState { phase: "rl".into(), step: 3, ..Default::default() };
    assert!(save(&dir, &tr, &tok(), &state, None).unwrap_err().to_string().contains("exp_avg"));
    tr.optim.restore(&dev, &m, &v, steps).unwrap();
    let e = restore(&first, &mut crate::common::trainer(&dev, cfg, 1, OptimConfig::default()));
    assert!(e.is_ok(), "the good checkpoint loads");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `prune` keeps the newest `keep_last` checkpoints (SFT before RL, then by step) and never
/// the one `latest` names.
#[test]
fn prune_keeps_the_newest() {
    let dir = tmpdir("prune");
    let cfg = crate::common::tiny_config(true, ModelType::Qwen2);
    let tr = crate::common::trainer(&Device::cpu(), cfg, 6, OptimConfig::default());
    for (phase, step) in [("sft", 3), ("sft", 6), ("rl", 1), ("rl", 2), ("rl", 10)] {
        let state = TrainerState { phase: phase.into(), step, ..Default::default() };
        save(&dir, &tr, &tok(), &state, None).unwrap();
    }
    assert_eq!(treepo_trainer::run::checkpoint::prune(&dir, 0).unwrap(), 0);
    assert_eq!(treepo_trainer::run::checkpoint::prune(&dir, 2).unwrap(), 3);
    let root = dir.join("checkpoints");
    assert_eq!(entries(&root), ["latest", "rl-000002", "rl-000010"]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A checkpoint carries the run's configuration (`run.toml`), read back equal; one saved
/// without it reads as `None`, and a damaged one is an error naming the file.
#[test]
fn checkpoints_carry_the_run_configuration() {
    let dir = tmpdir("run-config");
    let tr = crate::common::trainer(
        &Device::cpu(),
        crate::common::tiny_config(true, ModelType::Qwen2),
        2,
        OptimConfig::default(),
    );
    let mut cfg = RunConfig::default();
    cfg.eval.k = 3;
    cfg.task = treepo_trainer::tasks::TaskConfig::from_name("countdown").unwrap();
    let state = TrainerState { phase: "sft".into(), step: 1, ..Default::default() };
    let ck = save(&dir, &tr, &tok(), &state, Some(&cfg)).unwrap();
    assert_eq!(run_config(&ck).unwrap(), Some(cfg));
    let state = TrainerState { phase: "sft".into(), step: 2, ..Default::default() };
    let bare = save(&dir, &tr, &tok(), &state, None).unwrap();
    assert_eq!(run_config(&bare).unwrap(), None);
    std::fs::write(ck.join("run.toml"), "[eval]\nk = \"four\"\n").unwrap();
    let e = run_config(&ck).unwrap_err().to_string();
    assert!(e.contains("run.toml") && e.contains("four"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
