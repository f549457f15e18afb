//! `--progress json`: the build's events as JSON lines on stderr, for CI.
//!
//! Version 1 of the protocol; its schema is `docs/progress.schema.json`
//! (`mediabuild schema progress`). Every line is one object with `"v":1`, a
//! `type` and `t` (seconds since the command started): `start`, `diagnostic`,
//! `begin`, `progress`, `end`, `warning`, and exactly one `result` last.
//! `progress` lines are rate-limited per phase (at most one per
//! [`PROGRESS_INTERVAL`]), and the last one of a phase is always emitted
//! before its `end`, so a reader always sees the final byte count. Nothing
//! here holds a secret: diagnostics and warnings never carry one, and the
//! result holds paths, sizes and digests only.

use mediabuild::build::{BuildReport, BuiltOutput};
use mediabuild::diag::Diagnostic;
use mediabuild::plan::{Checked, Plan};
use mediabuild::progress::{Event, Reporter};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The protocol version every line carries as `v`.
pub const VERSION: u32 = 1;

/// At most one `progress` line per phase in this interval (5 per second).
pub const PROGRESS_INTERVAL: Duration = Duration::from_millis(200);

/// The JSON Schema of a line, committed and printed by `mediabuild schema progress`.
pub const SCHEMA: &str = include_str!("../../docs/progress.schema.json");

/// One line's body; `type` is the variant name.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Line<'a> {
    /// The command starts.
    Start {
        command: &'a str,
        recipe: &'a Path,
        mediabuild: &'a str,
        wimlib: String,
    },
    /// A problem found while checking the recipe (the same object as `check --json`).
    Diagnostic(&'a Diagnostic),
    Begin {
        phase: &'a str,
        total: u64,
    },
    Progress {
        phase: &'a str,
        done: u64,
        total: u64,
    },
    End {
        phase: &'a str,
        elapsed_s: f64,
    },
    Warning {
        message: &'a str,
    },
    /// The outcome; always the last line.
    Result(&'a Outcome),
}

/// What the command ended with, as the `result` line says it.
#[derive(Serialize, Debug, Clone)]
pub struct Outcome {
    /// `ok` or `failed`.
    pub status: &'static str,
    /// The process exit code.
    pub exit_code: i32,
    /// The artefacts written (none on failure: a failed build writes none).
    pub outputs: Vec<BuiltOutput>,
    /// Seconds per build phase, in order.
    pub phases: Vec<PhaseTime>,
    /// Every warning of the build (also sent as `warning` lines).
    pub warnings: Vec<String>,
    /// Error diagnostics found in the recipe (0 when it was valid).
    pub errors: usize,
    /// Why it failed; `null` on success.
    pub error: Option<String>,
    pub elapsed_s: f64,
}

#[derive(Serialize, Debug, Clone)]
pub struct PhaseTime {
    pub name: String,
    pub elapsed_s: f64,
}

impl Outcome {
    fn new(status: &'static str, exit_code: i32, elapsed: Duration) -> Outcome {
        Outcome {
            status,
            exit_code,
            outputs: Vec::new(),
            phases: Vec::new(),
            warnings: Vec::new(),
            errors: 0,
            error: None,
            elapsed_s: secs(elapsed),
        }
    }

    /// Every output was written.
    pub fn built(r: &BuildReport, elapsed: Duration) -> Outcome {
        Outcome {
            outputs: r.outputs.clone(),
            phases: r
                .phases
                .iter()
                .map(|(name, d)| PhaseTime {
                    name: name.clone(),
                    elapsed_s: secs(*d),
                })
                .collect(),
            warnings: r.warnings.clone(),
            ..Outcome::new("ok", 0, elapsed)
        }
    }

    /// Nothing was asked to be built (`demo --no-build`).
    pub fn nothing(elapsed: Duration) -> Outcome {
        Outcome::new("ok", 0, elapsed)
    }

    /// The recipe has errors (sent as `diagnostic` lines before).
    pub fn invalid(errors: usize, elapsed: Duration) -> Outcome {
        Outcome {
            errors,
            error: Some(format!(
                "the recipe has {errors} error(s); nothing was built"
            )),
            ..Outcome::new("failed", 2, elapsed)
        }
    }

    /// `--locked` refused: inputs differ from the lockfile (exit 1, a
    /// negative answer rather than an error).
    pub fn drifted(inputs: usize, elapsed: Duration) -> Outcome {
        Outcome {
            error: Some(format!(
                "{inputs} input(s) drifted from the lockfile; nothing was built"
            )),
            ..Outcome::new("failed", 1, elapsed)
        }
    }

    /// The build broke; the message is the whole error chain (which never holds a secret).
    pub fn failed(e: &anyhow::Error, elapsed: Duration) -> Outcome {
        Outcome {
            error: Some(super::error_text(e)),
            ..Outcome::new("failed", 2, elapsed)
        }
    }
}

/// A JSON document of the other commands, with the same `v` as the lines.
#[derive(Serialize)]
pub struct Versioned<'a, T: Serialize> {
    pub v: u32,
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(flatten)]
    pub body: &'a T,
}

/// `check --json`: the same diagnostic objects as the `diagnostic` lines.
#[derive(Serialize)]
pub struct CheckJson<'a> {
    pub v: u32,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub file: &'a Path,
    pub ok: bool,
    pub errors: usize,
    pub warnings: usize,
    pub diagnostics: &'a [Diagnostic],
}

pub fn check_json(c: &Checked) -> CheckJson<'_> {
    let errors = c.diags.iter().filter(|d| d.is_error()).count();
    CheckJson {
        v: VERSION,
        kind: "check",
        file: &c.file,
        ok: errors == 0,
        errors,
        warnings: c.diags.len() - errors,
        diagnostics: &c.diags,
    }
}

/// `plan --json`: the plan with `v` and `type` in front.
pub fn plan_json(p: &Plan) -> Versioned<'_, Plan> {
    Versioned {
        v: VERSION,
        kind: "plan",
        body: p,
    }
}

/// When the command started: `t` of every line counts from here.
pub fn started() -> Instant {
    static STARTED: OnceLock<Instant> = OnceLock::new();
    *STARTED.get_or_init(Instant::now)
}

/// Seconds with millisecond precision: enough for CI, and short lines.
pub fn secs(d: Duration) -> f64 {
    (d.as_millis() as f64) / 1000.0
}

#[derive(Serialize)]
struct Envelope<'a> {
    v: u32,
    t: f64,
    #[serde(flatten)]
    line: &'a Line<'a>,
}

/// Per-phase rate limiting of `progress` lines, on a clock given by the caller.
#[derive(Default)]
pub struct Limiter {
    phases: BTreeMap<&'static str, PhaseState>,
}

#[derive(Default)]
struct PhaseState {
    last: Option<Instant>,
    /// The latest (done, total) not yet emitted.
    pending: Option<(u64, u64)>,
}

impl Limiter {
    /// A phase starts: forget what an earlier phase of that name left.
    pub fn begin(&mut self, phase: &'static str) {
        self.phases.insert(phase, PhaseState::default());
    }

    /// Returns what to emit now, if anything; otherwise keeps it as pending.
    pub fn progress(
        &mut self,
        phase: &'static str,
        done: u64,
        total: u64,
        now: Instant,
    ) -> Option<(u64, u64)> {
        let st = self.phases.entry(phase).or_default();
        let due = st
            .last
            .is_none_or(|last| now.duration_since(last) >= PROGRESS_INTERVAL);
        if due {
            st.last = Some(now);
            st.pending = None;
            Some((done, total))
        } else {
            st.pending = Some((done, total));
            None
        }
    }

    /// The phase ended: the progress held back, so that the last one is never lost.
    pub fn end(&mut self, phase: &'static str) -> Option<(u64, u64)> {
        self.phases.remove(phase).and_then(|st| st.pending)
    }
}

/// The `--progress json` reporter: writes each line to stderr as it happens.
pub struct JsonLines {
    started: Instant,
    limiter: Mutex<Limiter>,
}

impl JsonLines {
    pub fn new() -> JsonLines {
        JsonLines {
            started: started(),
            limiter: Mutex::new(Limiter::default()),
        }
    }

    /// Writes one line. A closed or failing stderr must not fail the build,
    /// so write errors are dropped.
    pub fn emit(&self, line: &Line) {
        // The time is taken under stderr's lock: lines from two threads then
        // reach the reader in the order of their `t`.
        let mut err = std::io::stderr().lock();
        let env = Envelope {
            v: VERSION,
            t: secs(self.started.elapsed()),
            line,
        };
        if let Ok(mut s) = serde_json::to_string(&env) {
            s.push('\n');
            let _ = err.write_all(s.as_bytes());
            let _ = err.flush();
        }
    }

    pub fn start(&self, command: &str, recipe: &Path) {
        self.emit(&Line::Start {
            command,
            recipe,
            mediabuild: env!("CARGO_PKG_VERSION"),
            wimlib: mediabuild::wim::version().to_string(),
        });
    }

    pub fn diagnostics(&self, diags: &[Diagnostic]) {
        for d in diags {
            self.emit(&Line::Diagnostic(d));
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

impl Reporter for JsonLines {
    fn event(&self, e: Event) {
        match e {
            Event::Begin { phase, total } => {
                if let Ok(mut l) = self.limiter.lock() {
                    l.begin(phase);
                }
                self.emit(&Line::Begin { phase, total });
            }
            Event::Progress { phase, done, total } => {
                let due = self
                    .limiter
                    .lock()
                    .ok()
                    .and_then(|mut l| l.progress(phase, done, total, Instant::now()));
                if let Some((done, total)) = due {
                    self.emit(&Line::Progress { phase, done, total });
                }
            }
            Event::End { phase, elapsed } => {
                let pending = self.limiter.lock().ok().and_then(|mut l| l.end(phase));
                if let Some((done, total)) = pending {
                    self.emit(&Line::Progress { phase, done, total });
                }
                self.emit(&Line::End {
                    phase,
                    elapsed_s: secs(elapsed),
                });
            }
            Event::Warning(w) => self.emit(&Line::Warning { message: &w }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_emits_at_most_one_line_per_interval_and_always_the_last() {
        let mut l = Limiter::default();
        let t0 = Instant::now();
        l.begin("hash");
        let mut emitted = Vec::new();
        // 100 events over one second, one every 10 ms.
        for i in 0..100u64 {
            let now = t0 + Duration::from_millis(10 * i);
            if let Some(p) = l.progress("hash", i + 1, 100, now) {
                emitted.push((now, p));
            }
        }
        // 0, 200, 400, 600, 800 ms: five in the second.
        assert_eq!(emitted.len(), 5, "{emitted:?}");
        for w in emitted.windows(2) {
            assert!(w[1].0 - w[0].0 >= PROGRESS_INTERVAL);
        }
        // The last one (100 of 100) was held back and comes out at the end.
        assert_eq!(l.end("hash"), Some((100, 100)));
        assert_eq!(l.end("hash"), None);
    }

    #[test]
    fn limiter_has_nothing_pending_when_the_last_was_emitted() {
        let mut l = Limiter::default();
        let t0 = Instant::now();
        l.begin("prepare");
        assert_eq!(l.progress("prepare", 1, 2, t0), Some((1, 2)));
        assert_eq!(
            l.progress("prepare", 2, 2, t0 + PROGRESS_INTERVAL),
            Some((2, 2))
        );
        assert_eq!(l.end("prepare"), None);
    }

    #[test]
    fn phases_are_limited_separately() {
        let mut l = Limiter::default();
        let t0 = Instant::now();
        assert!(l.progress("a", 1, 9, t0).is_some());
        assert!(l.progress("b", 1, 9, t0).is_some());
        assert!(l.progress("a", 2, 9, t0).is_none());
        assert_eq!(l.end("b"), None);
        assert_eq!(l.end("a"), Some((2, 9)));
    }

    #[test]
    fn lines_carry_version_type_and_time() {
        let env = Envelope {
            v: VERSION,
            t: 0.25,
            line: &Line::Progress {
                phase: "hash",
                done: 5,
                total: 10,
            },
        };
        let v: serde_json::Value = serde_json::to_value(&env).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"v": 1, "t": 0.25, "type": "progress", "phase": "hash", "done": 5, "total": 10})
        );
    }
}
