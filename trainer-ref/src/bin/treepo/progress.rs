//! Progress of a long phase (SFT, RL): an indicatif bar on a terminal; anywhere else (a CI log,
//! `nohup`, a pipe) indicatif draws nothing, so a timestamped line is printed instead every
//! `TREEPO_LOG_EVERY` seconds (default 10) and at the end:
//!
//! ```text
//! 2026-12-07T02:10:03Z sft 120/800 (15%) loss 0.5123 lr 3.0e-4 grad norm 0.412 | 9120 tok/s, 1.71 steps/s, elapsed 1m 10s, ETA 6m 38s
//! ```

use std::io::IsTerminal;
use std::time::{Duration, Instant, SystemTime};

use indicatif::{ProgressBar, ProgressStyle};

/// A phase's progress: `len` steps, a message updated every step.
pub struct Progress {
    bar: ProgressBar,
    log: Option<LineLog>,
}

/// The state of the line log (no terminal).
struct LineLog {
    what: String,
    len: u64,
    pos: u64,
    /// Where this process started (a resumed run's rate counts its own steps only).
    first: Option<u64>,
    t0: Instant,
    last: Instant,
    every: Duration,
    msg: String,
    /// The step of the last line printed (the final line is not repeated).
    printed: Option<u64>,
}

impl Progress {
    /// `len` steps of the phase `what`.
    pub fn new(len: u64, what: &str) -> Self {
        let bar = ProgressBar::new(len);
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>6} [{bar:30}] {pos}/{len} {elapsed_precise} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_prefix(what.to_string());
        let log = (!std::io::stderr().is_terminal()).then(|| {
            let secs = std::env::var("TREEPO_LOG_EVERY")
                .ok()
                .and_then(|s| s.parse::<f64>().ok())
                .filter(|s| s.is_finite() && *s >= 0.0)
                .unwrap_or(10.0);
            let now = Instant::now();
            LineLog {
                what: what.to_string(),
                len,
                pos: 0,
                first: None,
                t0: now,
                last: now,
                every: Duration::from_secs_f64(secs),
                msg: String::new(),
                printed: None,
            }
        });
        Progress { bar, log }
    }

    /// Jumps to step `pos` (a resumed run).
    pub fn set_position(&mut self, pos: u64) {
        self.bar.set_position(pos);
        if let Some(l) = &mut self.log {
            l.pos = pos;
        }
    }

    /// The text after the counters (loss, reward, ...).
    pub fn set_message(&mut self, msg: String) {
        if let Some(l) = &mut self.log {
            l.msg.clone_from(&msg);
        }
        self.bar.set_message(msg);
    }

    /// One step done; prints a line when the interval has passed.
    pub fn inc(&mut self) {
        self.bar.inc(1);
        if let Some(l) = &mut self.log {
            l.first.get_or_insert(l.pos);
            l.pos += 1;
            if l.last.elapsed() >= l.every {
                l.print();
            }
        }
    }

    /// Runs `f` (which prints) with the bar out of the way.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        self.bar.suspend(f)
    }

    /// The phase is over (finished or interrupted): a last line.
    pub fn finish(&mut self) {
        self.bar.finish();
        if let Some(l) = &mut self.log
            && l.first.is_some()
            && l.printed != Some(l.pos)
        {
            l.print();
        }
    }
}

impl LineLog {
    fn print(&mut self) {
        self.last = Instant::now();
        self.printed = Some(self.pos);
        let elapsed = self.t0.elapsed().as_secs_f64();
        let done = self.pos - self.first.unwrap_or(self.pos);
        let rate = if elapsed > 0.0 { done as f64 / elapsed } else { 0.0 };
        let left = self.len.saturating_sub(self.pos);
        let eta =
            if rate > 0.0 { format!(", ETA {}", human(left as f64 / rate)) } else { String::new() };
        let pct = self.pos.saturating_mul(100).checked_div(self.len).unwrap_or(100);
        eprintln!(
            "{} {} {}/{} ({pct}%) {}, {rate:.2} steps/s, elapsed {}{eta}",
            humantime::format_rfc3339_seconds(SystemTime::now()),
            self.what,
            self.pos,
            self.len,
            self.msg,
            human(elapsed),
        );
    }
}

/// Whole seconds, as humantime writes durations (`1m 10s`).
fn human(secs: f64) -> humantime::FormattedDuration {
    humantime::format_duration(Duration::from_secs(secs.round() as u64))
}
