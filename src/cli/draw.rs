//! Drawing progress events: indicatif bars on a terminal, plain lines when
//! stderr is not a terminal (CI logs), JSON lines with `--progress json`
//! (`progress_json`), nothing with `--quiet` / `--progress none`.

use super::progress_json::JsonLines;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use mediabuild::progress::{Event, Reporter};
use mediabuild::units::human;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// `--progress`: how a build shows its progress on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// Bars on a terminal, plain lines otherwise.
    Auto,
    /// indicatif bars (drawn only on a terminal).
    Bars,
    /// A plain line per phase and at most one every 5 s within it.
    Plain,
    /// Versioned JSON lines (docs/progress.schema.json), for CI.
    Json,
    /// Nothing (same as --quiet).
    None,
}

/// Phases may run at the same time (the WIM and the disk image are written
/// side by side): bars and line timers are kept per phase.
pub enum Draw {
    Quiet,
    Bars(MultiProgress, Mutex<BTreeMap<&'static str, ProgressBar>>),
    Lines(Mutex<BTreeMap<&'static str, Instant>>),
    Json(JsonLines),
}

fn bars() -> Draw {
    Draw::Bars(
        MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
        Mutex::new(BTreeMap::new()),
    )
}

impl Draw {
    pub fn new(mode: ProgressMode) -> Draw {
        match mode {
            ProgressMode::None => Draw::Quiet,
            ProgressMode::Json => Draw::Json(JsonLines::new()),
            ProgressMode::Bars => bars(),
            ProgressMode::Plain => Draw::Lines(Mutex::default()),
            ProgressMode::Auto if std::io::stderr().is_terminal() => bars(),
            ProgressMode::Auto => Draw::Lines(Mutex::default()),
        }
    }

    /// The JSON-lines reporter, when that is the mode.
    pub fn json(&self) -> Option<&JsonLines> {
        match self {
            Draw::Json(j) => Some(j),
            _ => None,
        }
    }

    /// Runs `f` as a phase of its own in JSON mode, so that a reader sees what
    /// the time before the build goes to (the other modes show the build's phases only).
    pub fn phase<T>(&self, phase: &'static str, f: impl FnOnce() -> T) -> T {
        let Some(j) = self.json() else { return f() };
        let t = Instant::now();
        j.event(Event::Begin { phase, total: 0 });
        let r = f();
        j.event(Event::End {
            phase,
            elapsed: t.elapsed(),
        });
        r
    }
}

impl Reporter for Draw {
    fn event(&self, e: Event) {
        match self {
            Draw::Quiet => {}
            Draw::Json(j) => j.event(e),
            Draw::Bars(multi, bars) => {
                let Ok(mut bars) = bars.lock() else { return };
                match e {
                    Event::Begin { phase, total } => {
                        let b = multi.add(ProgressBar::new(total));
                        b.set_style(
                            ProgressStyle::with_template(
                                "{prefix:>14} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
                            )
                            .unwrap_or_else(|_| ProgressStyle::default_bar())
                            .progress_chars("=> "),
                        );
                        b.set_prefix(phase);
                        if let Some(old) = bars.insert(phase, b) {
                            old.finish_and_clear();
                        }
                    }
                    Event::Progress { phase, done, total } => {
                        if let Some(b) = bars.get(phase) {
                            b.set_length(total.max(done));
                            b.set_position(done);
                        }
                    }
                    Event::End { phase, elapsed } => {
                        if let Some(b) = bars.remove(phase) {
                            b.finish_and_clear();
                            multi.remove(&b);
                        }
                        let _ = multi.println(format!(
                            "{phase:>14} done in {:.2} s",
                            elapsed.as_secs_f64()
                        ));
                    }
                    Event::Warning(w) => {
                        let _ = multi.println(format!("warning: {w}"));
                    }
                }
            }
            Draw::Lines(state) => {
                let Ok(mut st) = state.lock() else { return };
                match e {
                    Event::Begin { phase, total } => {
                        st.insert(phase, Instant::now());
                        eprintln!("{phase}: start ({})", human(total));
                    }
                    // At most one line every 5 s per phase: CI logs stay readable.
                    Event::Progress { phase, done, total } => {
                        let last = st.entry(phase).or_insert_with(Instant::now);
                        if last.elapsed() >= Duration::from_secs(5) {
                            *last = Instant::now();
                            let pct = (done * 100).checked_div(total).unwrap_or(0);
                            eprintln!("{phase}: {} of {} ({pct}%)", human(done), human(total));
                        }
                    }
                    Event::End { phase, elapsed } => {
                        st.remove(phase);
                        eprintln!("{phase}: done in {:.2} s", elapsed.as_secs_f64())
                    }
                    Event::Warning(w) => eprintln!("warning: {w}"),
                }
            }
        }
    }
}
