//! `metrics.jsonl` under kills (`run::MetricsLog`): one write per record, a torn last line is
//! skipped by readers, and resuming from a checkpoint cuts the log back to that checkpoint so
//! the resumed run neither duplicates records nor glues one onto a torn line.

use std::path::PathBuf;

use serde_json::json;
use treepo_trainer::run::MetricsLog;

fn tmpfile(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("treepo-metrics-test-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    let p = d.join(format!("{name}.jsonl"));
    let _ = std::fs::remove_file(&p);
    p
}

/// A run's log: SFT 1..=3, the eval after SFT, RL 1..=4 with evals after 2 and 4, the final eval.
fn write_run(path: &std::path::Path) {
    let mut m = MetricsLog::open(path).unwrap();
    for s in 1..=3 {
        m.log("sft", s, &json!({"loss": 1.0 / s as f64})).unwrap();
    }
    m.log("eval", 0, &json!({"when": "after_sft"})).unwrap();
    for s in 1..=4 {
        m.log("rl", s, &json!({"reward": s})).unwrap();
        if s % 2 == 0 {
            m.log("eval", s, &json!({"when": "during_rl"})).unwrap();
        }
    }
    m.log("eval", 4, &json!({"when": "after_rl"})).unwrap();
}

fn steps(path: &std::path::Path) -> Vec<(String, u64)> {
    MetricsLog::read(path)
        .unwrap()
        .iter()
        .map(|r| (r["phase"].as_str().unwrap().to_string(), r["step"].as_u64().unwrap()))
        .collect()
}

#[test]
fn a_torn_last_line_is_skipped_and_a_torn_middle_line_is_an_error() {
    let p = tmpfile("torn");
    write_run(&p);
    let n = MetricsLog::read(&p).unwrap().len();
    assert_eq!(n, 11);
    // A kill in the middle of a write: half a record, no newline.
    let mut text = std::fs::read_to_string(&p).unwrap();
    text.push_str("{\"phase\": \"rl\", \"st");
    std::fs::write(&p, &text).unwrap();
    assert_eq!(MetricsLog::read(&p).unwrap().len(), n);
    // Appending after it (what the old two-write logger let happen) glues records: an error
    // naming the line.
    text.push_str("ep\": 5}{\"phase\": \"rl\"}\n{\"phase\": \"rl\", \"step\": 6}\n");
    std::fs::write(&p, &text).unwrap();
    let e = MetricsLog::read(&p).unwrap_err().to_string();
    assert!(e.contains(&format!("torn.jsonl:{}: not a JSON object", n + 1)), "{e}");
}

#[test]
fn resume_cuts_the_log_back_to_the_checkpoint() {
    let sft = |s: u64| ("sft".to_string(), s);
    let rl = |s: u64| ("rl".to_string(), s);
    let ev = |s: u64| ("eval".to_string(), s);
    type Case = (&'static str, u64, Vec<(String, u64)>);
    let cases: [Case; 5] = [
        ("sft", 2, vec![sft(1), sft(2)]),
        ("sft", 3, vec![sft(1), sft(2), sft(3)]),
        ("rl", 1, vec![sft(1), sft(2), sft(3), ev(0), rl(1)]),
        ("rl", 2, vec![sft(1), sft(2), sft(3), ev(0), rl(1), rl(2), ev(2)]),
        ("rl", 4, vec![sft(1), sft(2), sft(3), ev(0), rl(1), rl(2), ev(2), rl(3), rl(4), ev(4)]),
    ];
    for (phase, step, want) in cases {
        let p = tmpfile(&format!("resume-{phase}-{step}"));
        write_run(&p);
        // Plus a torn line at the end.
        let mut text = std::fs::read_to_string(&p).unwrap();
        text.push_str("{\"phase\"");
        std::fs::write(&p, &text).unwrap();
        let dropped = MetricsLog::resume(&p, phase, step).unwrap();
        assert_eq!(steps(&p), want, "resume from {phase} {step}");
        assert_eq!(dropped, 11 - want.len(), "resume from {phase} {step}");
        assert!(std::fs::read_to_string(&p).unwrap().ends_with('\n') || want.is_empty());
        // The resumed run appends cleanly.
        MetricsLog::open(&p).unwrap().log(phase, step + 1, &json!({})).unwrap();
        assert_eq!(MetricsLog::read(&p).unwrap().len(), want.len() + 1);
    }
    // A fresh start drops everything; a missing file is fine.
    let p = tmpfile("fresh");
    write_run(&p);
    assert_eq!(MetricsLog::resume(&p, "sft", 0).unwrap(), 11);
    assert!(MetricsLog::read(&p).unwrap().is_empty());
    assert_eq!(MetricsLog::resume(&tmpfile("missing"), "rl", 3).unwrap(), 0);
}
