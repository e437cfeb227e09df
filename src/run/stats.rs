//! Counters every part of a run adds to, read by the progress display, the
//! failure threshold and the summary.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::outcome::Outcome;

/// Live counters, shared by the workers (atomics: no lock on the hot path).
#[derive(Debug)]
pub struct Stats {
    outcomes: [AtomicU64; Outcome::ALL.len()],
    requests: AtomicU64,
    retries: AtomicU64,
    throttled: AtomicU64,
    unnamed_503: AtomicU64,
    rows_read: AtomicU64,
    already_done: AtomicU64,
    changed: AtomicU64,
    /// Rows expected in all; `u64::MAX` until known.
    total: AtomicU64,
    started: Instant,
}

/// The counters at one moment, as plain numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub outcomes: [u64; Outcome::ALL.len()],
    pub requests: u64,
    pub retries: u64,
    pub throttled: u64,
    /// 503 answers retried as server errors (503 not named by
    /// `--throttle-status`): a rate limit may be behind them.
    pub unnamed_503: u64,
    pub rows_read: u64,
    pub already_done: u64,
    /// Rows `--resume` sent again because their values changed since the
    /// run that recorded them.
    pub changed_since_last_run: u64,
    pub total: Option<u64>,
    pub elapsed: Duration,
}

impl Default for Stats {
    fn default() -> Self {
        Stats::new()
    }
}

impl Stats {
    pub fn new() -> Stats {
        Stats {
            outcomes: Default::default(),
            requests: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            unnamed_503: AtomicU64::new(0),
            rows_read: AtomicU64::new(0),
            already_done: AtomicU64::new(0),
            changed: AtomicU64::new(0),
            total: AtomicU64::new(u64::MAX),
            started: Instant::now(),
        }
    }

    pub fn finished(&self, outcome: Outcome) {
        self.finished_many(outcome, 1);
    }

    pub fn finished_many(&self, outcome: Outcome, rows: u64) {
        self.outcomes[outcome as usize].fetch_add(rows, Ordering::Relaxed);
    }

    pub fn request_sent(&self, is_retry: bool) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if is_retry {
            self.retries.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn throttled(&self) {
        self.throttled.fetch_add(1, Ordering::Relaxed);
    }

    /// A 503 retried as a server error.
    pub fn unnamed_503(&self) {
        self.unnamed_503.fetch_add(1, Ordering::Relaxed);
    }

    pub fn rows_read(&self, rows: u64) {
        self.rows_read.fetch_add(rows, Ordering::Relaxed);
    }

    pub fn already_done(&self, rows: u64) {
        self.already_done.fetch_add(rows, Ordering::Relaxed);
    }

    pub fn changed_since_last_run(&self, rows: u64) {
        self.changed.fetch_add(rows, Ordering::Relaxed);
    }

    pub fn set_total(&self, total: u64) {
        self.total.store(total, Ordering::Relaxed);
    }

    pub fn count(&self, outcome: Outcome) -> u64 {
        self.outcomes[outcome as usize].load(Ordering::Relaxed)
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    pub fn snapshot(&self) -> Snapshot {
        let total = self.total.load(Ordering::Relaxed);
        Snapshot {
            outcomes: std::array::from_fn(|i| self.outcomes[i].load(Ordering::Relaxed)),
            requests: self.requests.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            throttled: self.throttled.load(Ordering::Relaxed),
            unnamed_503: self.unnamed_503.load(Ordering::Relaxed),
            rows_read: self.rows_read.load(Ordering::Relaxed),
            already_done: self.already_done.load(Ordering::Relaxed),
            changed_since_last_run: self.changed.load(Ordering::Relaxed),
            total: (total != u64::MAX).then_some(total),
            elapsed: self.started.elapsed(),
        }
    }
}

impl Snapshot {
    pub fn count(&self, outcome: Outcome) -> u64 {
        self.outcomes[outcome as usize]
    }

    /// Rows that have a result row from this run.
    pub fn done(&self) -> u64 {
        self.outcomes.iter().sum()
    }

    /// Rows that ended `failed` or `mismatch`: the ones a failure threshold counts.
    pub fn failures(&self) -> u64 {
        self.count(Outcome::Failed) + self.count(Outcome::Mismatch)
    }

    /// Rows for which a request was made and that have ended.
    pub fn sent_rows(&self) -> u64 {
        self.done() - self.count(Outcome::Invalid) - self.count(Outcome::DryRun)
    }

    /// Rows finished per second of this run.
    pub fn rows_per_second(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.done() as f64 / secs
        } else {
            0.0
        }
    }

    /// Rows still to do, when the total is known.
    pub fn remaining(&self) -> Option<u64> {
        self.total
            .map(|t| t.saturating_sub(self.done() + self.already_done))
    }

    /// How a run that went to the end ended, by these counts.
    pub fn finished(&self) -> crate::error::Finished {
        crate::error::Finished {
            rows_failed: self.count(Outcome::Failed)
                + self.count(Outcome::Invalid)
                + self.count(Outcome::Mismatch)
                > 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Finished;

    #[test]
    fn counts_say_which_rows_failed_were_sent_and_remain() {
        let stats = Stats::new();
        stats.set_total(10);
        stats.already_done(2);
        stats.finished_many(Outcome::Updated, 3);
        stats.finished(Outcome::Mismatch);
        stats.finished(Outcome::Failed);
        stats.finished(Outcome::Invalid);
        let s = stats.snapshot();
        assert_eq!(s.done(), 6);
        assert_eq!(s.failures(), 2, "failed and mismatch; invalid is not sent");
        assert_eq!(s.sent_rows(), 5);
        assert_eq!(s.remaining(), Some(2));
        assert_eq!(s.finished(), Finished { rows_failed: true });
    }

    #[test]
    fn only_updated_unchanged_and_planned_rows_end_a_run_cleanly() {
        let stats = Stats::new();
        for outcome in [
            Outcome::Updated,
            Outcome::Unchanged,
            Outcome::WouldUpdate,
            Outcome::DryRun,
        ] {
            stats.finished(outcome);
        }
        assert_eq!(stats.snapshot().finished(), Finished::CLEAN);
        assert_eq!(stats.snapshot().total, None, "unknown until set");
        stats.finished(Outcome::Invalid);
        assert_eq!(stats.snapshot().finished(), Finished { rows_failed: true });
    }

    #[test]
    fn requests_count_retries_apart() {
        let stats = Stats::new();
        stats.request_sent(false);
        stats.request_sent(true);
        stats.request_sent(true);
        stats.throttled();
        let s = stats.snapshot();
        assert_eq!((s.requests, s.retries, s.throttled), (3, 2, 1));
    }
}
