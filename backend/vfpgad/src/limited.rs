//! Reports a peer can trigger, logged at most every ten seconds per source: what a
//! guest, a network peer or a board sends must never flood the host's log. A report
//! held back is counted and the next one says how many there were.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Fewest seconds between two reports from one source.
pub const EVERY: Duration = Duration::from_secs(10);

/// One source of reports (a guest, a listener, a call site).
#[derive(Debug, Default)]
pub struct Limited {
    last: Mutex<Option<Instant>>,
    quiet: AtomicU64,
}

impl Limited {
    /// A source nothing was reported from yet.
    pub const fn new() -> Self {
        Self {
            last: Mutex::new(None),
            quiet: AtomicU64::new(0),
        }
    }

    /// Whether a report is due now: `Some(n)` with the `n` reports held back since the
    /// last one, or `None` (this one is held back and counted).
    pub fn due(&self) -> Option<u64> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < EVERY) {
            self.quiet.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *last = Some(now);
        Some(self.quiet.swap(0, Ordering::Relaxed))
    }
}

/// Logs a warning (fields and message as `tracing::warn!` takes them) if `source` is
/// due a report, with `held_back` = the reports held back since the last one.
#[macro_export]
macro_rules! warn_limited {
    ($source:expr, $($arg:tt)+) => {
        if let Some(held) = $source.due() {
            if held > 0 {
                tracing::warn!(held_back = held, $($arg)+);
            } else {
                tracing::warn!($($arg)+);
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_one_report_and_a_count() {
        let l = Limited::new();
        assert_eq!(l.due(), Some(0));
        for _ in 0..1000 {
            assert_eq!(l.due(), None);
        }
        // Ten seconds later (set back by hand: no test waits that long).
        *l.last.lock().unwrap() = Some(Instant::now() - EVERY);
        assert_eq!(l.due(), Some(1000));
    }
}
