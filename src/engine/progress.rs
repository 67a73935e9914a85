//! Progress of a long write phase (a first sync, a resync): a bar per pair when stdout is a
//! terminal, plain log lines every few seconds when it is not (a pipe, a journal).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tracing::info;

/// Told by the engine how a pair's writes are going.
pub trait Progress: Send + Sync {
    /// `total` writes are about to start.
    fn start(&self, pair: &str, total: u64);
    /// One more is done (written, failed or skipped).
    fn advance(&self, pair: &str);
    fn finish(&self, pair: &str);
}

/// Bars on the terminal, one per pair.
pub struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl Bars {
    pub fn new() -> Bars {
        Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stdout()),
            bars: Mutex::default(),
        }
    }
}

impl Default for Bars {
    fn default() -> Self {
        Bars::new()
    }
}

impl Progress for Bars {
    fn start(&self, pair: &str, total: u64) {
        let bar = self.multi.add(ProgressBar::new(total));
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>16} [{bar:32}] {pos}/{len} items  {rate:>9}  ETA {eta}",
            )
            .expect("a valid template")
            .with_key(
                "rate",
                |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{:.1}/s", s.per_sec());
                },
            )
            .progress_chars("=> "),
        );
        bar.set_prefix(pair.to_string());
        self.bars
            .lock()
            .expect("not poisoned")
            .insert(pair.to_string(), bar);
    }

    fn advance(&self, pair: &str) {
        if let Some(b) = self.bars.lock().expect("not poisoned").get(pair) {
            b.inc(1);
        }
    }

    fn finish(&self, pair: &str) {
        if let Some(b) = self.bars.lock().expect("not poisoned").remove(pair) {
            b.finish();
        }
    }
}

struct Line {
    total: u64,
    done: u64,
    started: Instant,
    printed: Instant,
}

/// Plain log lines: at the start, every `every`, and at the end.
pub struct Lines {
    every: Duration,
    pairs: Mutex<HashMap<String, Line>>,
}

impl Lines {
    pub fn new(every: Duration) -> Lines {
        Lines {
            every,
            pairs: Mutex::default(),
        }
    }
}

fn say(pair: &str, l: &Line) {
    let secs = l.started.elapsed().as_secs_f64();
    let rate = if secs > 0.0 {
        l.done as f64 / secs
    } else {
        0.0
    };
    let eta = if rate > 0.0 {
        humantime::format_duration(Duration::from_secs(
            ((l.total - l.done.min(l.total)) as f64 / rate).ceil() as u64,
        ))
        .to_string()
    } else {
        "-".to_string()
    };
    info!(
        target: "tandem::engine::progress",
        pair,
        done = l.done,
        total = l.total,
        "progress {}/{} items ({rate:.1}/s, ETA {eta})",
        l.done,
        l.total
    );
}

impl Progress for Lines {
    fn start(&self, pair: &str, total: u64) {
        let now = Instant::now();
        let l = Line {
            total,
            done: 0,
            started: now,
            printed: now,
        };
        say(pair, &l);
        self.pairs
            .lock()
            .expect("not poisoned")
            .insert(pair.to_string(), l);
    }

    fn advance(&self, pair: &str) {
        let mut pairs = self.pairs.lock().expect("not poisoned");
        if let Some(l) = pairs.get_mut(pair) {
            l.done += 1;
            if l.printed.elapsed() >= self.every {
                l.printed = Instant::now();
                say(pair, l);
            }
        }
    }

    fn finish(&self, pair: &str) {
        if let Some(l) = self.pairs.lock().expect("not poisoned").remove(pair) {
            say(pair, &l);
        }
    }
}
