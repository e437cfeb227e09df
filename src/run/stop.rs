//! Stopping a run: why it stopped (first reason wins) and the token every
//! worker watches. Also the signal handling that triggers it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use crate::error::Unfinished;

/// Why a run stopped before reading all its input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// SIGINT or SIGTERM.
    Interrupted,
    /// The API rejected the token (401).
    Unauthorized(String),
    /// `--max-failures` or `--max-failure-rate` was crossed.
    Threshold(String),
    /// The input could not be read, or the results could not be written.
    Failed(String),
}

impl StopReason {
    /// Why a run stopped for this reason did not go to its end.
    pub fn unfinished(&self) -> Unfinished {
        match self {
            StopReason::Interrupted => Unfinished::Interrupted,
            _ => Unfinished::Aborted,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            StopReason::Interrupted => "interrupted".into(),
            StopReason::Unauthorized(why) => {
                format!(
                    "aborted: the API rejected the token ({why}); check GCORE_API_KEY or --api-key-file"
                )
            }
            StopReason::Threshold(why) => format!("aborted: {why}"),
            StopReason::Failed(why) => format!("aborted: {why}"),
        }
    }
}

/// Shared by every part of a run: once stopped, no new request starts.
#[derive(Debug, Default)]
pub struct StopSignal {
    token: CancellationToken,
    /// Mirrors the token for the reader, which asks once per row: a plain
    /// load instead of the token's lock.
    stopped: AtomicBool,
    reason: Mutex<Option<StopReason>>,
}

impl StopSignal {
    pub fn new() -> Arc<StopSignal> {
        Arc::new(StopSignal::default())
    }

    /// Stops the run for `reason`, unless it already stopped for another.
    pub fn stop(&self, reason: StopReason) {
        let mut slot = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(reason);
        }
        drop(slot);
        self.stopped.store(true, Ordering::Release);
        self.token.cancel();
    }

    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    pub fn reason(&self) -> Option<StopReason> {
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Watches SIGINT and SIGTERM. The first stops the run gracefully; the second
/// calls `hard_exit`, which must flush what it can and exit at once.
pub fn watch_signals(stop: Arc<StopSignal>, hard_exit: impl Fn() + Send + 'static) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::warn!("cannot watch for SIGINT/SIGTERM; an interrupt will end the run at once");
        return;
    };
    tokio::spawn(async move {
        tokio::select! {
            _ = int.recv() => {},
            _ = term.recv() => {},
        }
        tracing::warn!(
            "interrupted: starting no new rows, letting requests in flight finish \
             (interrupt again to stop at once)"
        );
        stop.stop(StopReason::Interrupted);
        tokio::select! {
            _ = int.recv() => {},
            _ = term.recv() => {},
        }
        hard_exit();
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::exit_code;

    #[test]
    fn the_first_reason_wins_and_every_watcher_sees_the_stop() {
        let stop = StopSignal::new();
        assert!(!stop.is_stopped());
        assert!(!stop.token().is_cancelled());
        assert_eq!(stop.reason(), None);
        stop.stop(StopReason::Threshold("--max-failures 2 reached".into()));
        stop.stop(StopReason::Interrupted);
        assert!(stop.is_stopped());
        assert!(stop.token().is_cancelled());
        assert_eq!(
            stop.reason(),
            Some(StopReason::Threshold("--max-failures 2 reached".into()))
        );
    }

    #[test]
    fn an_interrupt_exits_130_and_every_other_stop_3() {
        assert_eq!(exit_code(Err(StopReason::Interrupted.unfinished())), 130);
        for reason in [
            StopReason::Unauthorized("HTTP 401".into()),
            StopReason::Threshold("x".into()),
            StopReason::Failed("y".into()),
        ] {
            assert_eq!(exit_code(Err(reason.unfinished())), 3);
        }
    }

    #[test]
    fn each_reason_is_described_in_one_line() {
        assert_eq!(StopReason::Interrupted.describe(), "interrupted");
        assert_eq!(
            StopReason::Failed("cannot read the input".into()).describe(),
            "aborted: cannot read the input"
        );
        let unauthorized = StopReason::Unauthorized("HTTP 401".into()).describe();
        assert!(unauthorized.starts_with("aborted: the API rejected the token (HTTP 401)"));
        assert!(unauthorized.contains("GCORE_API_KEY"));
    }
}
