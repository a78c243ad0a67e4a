//! Helpers of the tests that run the `treepo` binary: scratch directories, a tiny run
//! configuration of a few seconds, and config edits.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A fresh scratch directory under the system's temp dir (never the source tree).
pub fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("treepo-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs `treepo` with `args`.
pub fn treepo(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_treepo")).args(args).output().unwrap()
}

/// Lossy UTF-8 of a process's output.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A run of a few seconds: parity of 4 bits, a 1-layer model, one SFT step, one RL step.
pub fn tiny(out: &Path) -> String {
    format!(
        r#"
[run]
device = "cpu"
out_dir = "{}"
checkpoint_every = 0
kv_pages = 256

[task]
name = "parity-cot"
min_bits = 4
max_bits = 4

[model]
hidden_size = 16
intermediate_size = 32
layers = 1
heads = 2
kv_heads = 1
max_positions = 64

[sft]
steps = 1
batch_size = 2

[rl]
steps = 1
queries_per_step = 2
mini_batches = 1
dynamic_sampling_rounds = -1

[rl.sampler]
tree_max_depth = 2
tree_max_token_per_step = 4
tree_fixed_step_div = 2
tree_max_width = 4

[eval]
problems = 2
k = 2
"#,
        out.display()
    )
}

/// `base` with `key = value` set in `[section]` (appended after the section header).
pub fn with(base: &str, section: &str, kv: &str) -> String {
    let header = format!("[{section}]\n");
    let Some(at) = base.find(&header).map(|at| at + header.len()) else {
        return format!("{base}\n{header}{kv}\n");
    };
    let mut lines: Vec<&str> = base[at..].lines().collect();
    let key = kv.split('=').next().unwrap().trim();
    lines.retain(|l| l.split('=').next().map(str::trim) != Some(key));
    format!("{}{kv}\n{}\n", &base[..at], lines.join("\n"))
}

/// The process succeeded; its stdout (the failure message shows both streams).
pub fn ok(o: &Output) -> String {
    assert!(o.status.success(), "stdout:\n{}\nstderr:\n{}", text(&o.stdout), text(&o.stderr));
    text(&o.stdout)
}

/// The process failed without panicking and its stderr holds every one of `needles`.
pub fn fails_with(o: &Output, needles: &[&str]) {
    let e = text(&o.stderr);
    assert!(!o.status.success(), "accepted; stderr:\n{e}");
    assert!(!e.contains("panicked"), "{e}");
    for n in needles {
        assert!(e.contains(n), "{n:?} missing from:\n{e}");
    }
}
