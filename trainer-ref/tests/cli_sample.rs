//! `treepo sample` end to end: a checkpoint written by `Model::save` + `Tokenizer::save` is
//! sampled (tree and sequential) on the CPU, the tree is written as SVG and DOT, and every
//! user mistake is a one-line error, never a panic.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use treepo_kernels::Device;
use treepo_trainer::model::{CharTokenizer, Model, ModelConfig, Tokenizer};
use treepo_trainer::tasks::SYNTHETIC_VOCAB;

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("treepo-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A tiny random model over the synthetic vocabulary, saved with its char tokenizer.
fn checkpoint(name: &str, model_vocab: Option<usize>) -> PathBuf {
    let dir = tmpdir(name);
    let tok = Tokenizer::Char(CharTokenizer::new(SYNTHETIC_VOCAB).unwrap());
    let mut cfg = ModelConfig::tiny(model_vocab.unwrap_or(tok.vocab_size()));
    cfg.num_hidden_layers = 2;
    Model::random(&Device::cpu(), cfg, 3).unwrap().save(&dir, &tok).unwrap();
    dir
}

fn treepo(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_treepo")).args(args).output().unwrap()
}

fn sample(dir: &Path, extra: &[&str]) -> Output {
    let d = dir.to_str().unwrap();
    let mut args = vec!["sample", "--model", d, "--prompt", "7,3,12>33:"];
    let defaults = [
        ("--width", "4"),
        ("--depth", "3"),
        ("--segment", "4"),
        ("--task", "countdown"),
        ("--device", "cpu"),
    ];
    for (k, v) in defaults {
        if !extra.contains(&k) {
            args.extend_from_slice(&[k, v]);
        }
    }
    args.extend_from_slice(extra);
    treepo(&args)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn samples_a_saved_checkpoint() {
    let dir = checkpoint("ok", None);
    let (svg, dot) = (dir.join("tree.svg"), dir.join("tree.dot"));
    let out = sample(&dir, &["--svg", svg.to_str().unwrap(), "--dot", dot.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{}", text(&out.stderr));
    assert_eq!(stdout.lines().filter(|l| l.trim_start().starts_with("trajectory")).count(), 4);
    for needle in ["tree sampling", "cost: 4 trajectories", "trajectories/s", "engine:"] {
        assert!(stdout.contains(needle), "{needle:?} missing from:\n{stdout}");
    }
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<svg"));
    assert!(std::fs::read_to_string(&dot).unwrap().contains("digraph"));
    let seq = sample(&dir, &["--sequential", "--temperature", "0"]);
    let stdout = text(&seq.stdout);
    assert!(seq.status.success(), "{}", text(&seq.stderr));
    assert!(stdout.contains("sequential sampling") && stdout.contains("cost: 4 trajectories"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn mistakes_are_clear_errors() {
    let missing = std::env::temp_dir().join("treepo-cli-no-such-dir");
    let out = sample(&missing, &[]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("no such directory"), "{}", text(&out.stderr));

    let mismatch = checkpoint("mismatch", Some(8));
    let out = sample(&mismatch, &[]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("do not belong together"), "{}", text(&out.stderr));

    let ok = checkpoint("errors", None);
    let out = sample(&ok, &["--device", "tpu"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("invalid value 'tpu'"), "{}", text(&out.stderr));
    let out = sample(&ok, &["--depth", "200"]);
    assert!(text(&out.stderr).contains("max_position_embeddings"), "{}", text(&out.stderr));
    let out = sample(&ok, &["--task", "sudoku"]);
    assert!(!out.status.success());
    let out = sample(&ok, &["--tree", "--sequential"]);
    assert!(text(&out.stderr).contains("cannot be used with"), "{}", text(&out.stderr));
    let out = sample(&ok, &["--width", "0"]);
    assert!(!out.status.success());
    assert!(!text(&out.stderr).contains("panicked"), "{}", text(&out.stderr));
    for d in [mismatch, ok] {
        let _ = std::fs::remove_dir_all(d);
    }
}
