//! Progress events: the library reports, the CLI draws (bars on a terminal,
//! plain lines otherwise). Nothing here prints.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// One thing that happened during a build.
#[derive(Debug, Clone)]
pub enum Event {
    /// A phase starts; `total` is in bytes (0 when unknown).
    Begin { phase: &'static str, total: u64 },
    /// Bytes done so far in the current phase (and the total, which may change).
    Progress {
        phase: &'static str,
        done: u64,
        total: u64,
    },
    /// A phase ended.
    End {
        phase: &'static str,
        elapsed: Duration,
    },
    /// Something the user should know (never a secret).
    Warning(String),
}

/// Receives events. Implementations must be cheap: `Progress` may come often.
pub trait Reporter: Sync {
    fn event(&self, e: Event);
}

/// Discards everything (tests, `--quiet`).
pub struct Silent;

impl Reporter for Silent {
    fn event(&self, _: Event) {}
}

/// The cancellation flag every long loop checks (Ctrl-C sets it).
pub struct Cancel(AtomicBool);

impl Cancel {
    pub const fn new() -> Cancel {
        Cancel(AtomicBool::new(false))
    }
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst)
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
    pub fn flag(&self) -> &AtomicBool {
        &self.0
    }
}

impl Default for Cancel {
    fn default() -> Self {
        Cancel::new()
    }
}
