//! One logical request: paced, sent, classified and retried until it succeeds,
//! fails for good, or the run stops.

use std::sync::Arc;

use crate::api::{ApiClient, Exchange, Request};
use crate::pacing::Pacer;
use crate::retry::{RETRY_AFTER_MAX, RetryPolicy, Verdict, classify, retry_wait};
use crate::stats::Stats;
use crate::stop::{StopReason, StopSignal};

/// Everything a request needs to be sent well; shared by all workers.
pub struct Caller {
    pub api: ApiClient,
    pub pacer: Pacer,
    pub policy: RetryPolicy,
    pub stats: Arc<Stats>,
    pub stop: Arc<StopSignal>,
}

/// How a request ended.
#[derive(Debug)]
pub enum CallEnd {
    /// A 2xx response.
    Success(Exchange),
    /// Failed for good: not retryable, or out of attempts.
    Failed(Exchange),
    /// The token was rejected (401): the run must stop.
    Unauthorized(Exchange),
    /// The run stopped before the first attempt: nothing was sent.
    NotStarted,
    /// The run stopped while waiting to retry.
    Interrupted(Exchange),
}

#[derive(Debug)]
pub struct Called {
    pub end: CallEnd,
    /// HTTP attempts made.
    pub attempts: u32,
    /// The status of the last response any attempt got (a timeout after a
    /// 503 leaves the 503).
    pub last_status: Option<u16>,
    /// Attempts answered 429.
    pub throttled: u32,
}

impl Called {
    /// One line for the `error` column when the request did not succeed.
    pub fn failure(&self, max_attempts: u32) -> String {
        match &self.end {
            CallEnd::Success(_) => String::new(),
            CallEnd::NotStarted => "not sent: the run stopped".into(),
            CallEnd::Unauthorized(e) => format!(
                "{} — the API rejected the token; the run stopped",
                e.describe_failure()
            ),
            CallEnd::Interrupted(e) => format!(
                "{} — the run stopped before the next attempt",
                e.describe_failure()
            ),
            CallEnd::Failed(e) => {
                let retryable = classify(e.reply) == Verdict::Retry;
                if retryable && self.attempts >= max_attempts && max_attempts > 1 {
                    format!(
                        "gave up after {} attempts: {}",
                        self.attempts,
                        e.describe_failure()
                    )
                } else {
                    e.describe_failure()
                }
            }
        }
    }
}

/// Names a request to one account in log lines (formatted only if logged).
pub struct AccountRequest(pub &'static str, pub u64);

impl std::fmt::Display for AccountRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} client {}", self.0, self.1)
    }
}

impl Caller {
    /// Sends `request` until it succeeds, fails for good, runs out of attempts,
    /// or the run stops. Every attempt waits for the pacer first.
    pub async fn call(&self, request: &Request, what: &(dyn std::fmt::Display + Sync)) -> Called {
        let mut attempts = 0;
        let mut last_status = None;
        let mut throttled = 0;
        let mut last: Option<Exchange> = None;
        loop {
            // Checked again after the wait: a stop that came while this attempt
            // queued must not let it out.
            let permit = match self.pacer.acquire(self.stop.token()).await {
                Ok(permit) if !self.stop.is_stopped() => permit,
                _ => {
                    let end = match last {
                        Some(exchange) => CallEnd::Interrupted(exchange),
                        None => CallEnd::NotStarted,
                    };
                    return Called {
                        end,
                        attempts,
                        last_status,
                        throttled,
                    };
                }
            };
            attempts += 1;
            self.stats.request_sent(attempts > 1);
            let exchange = self.api.send(request).await;
            last_status = exchange.status.or(last_status);
            let verdict = classify(exchange.reply);
            let end = match verdict {
                Verdict::Success => {
                    self.pacer.on_success(permit, exchange.quota);
                    CallEnd::Success(exchange)
                }
                Verdict::FailRow => CallEnd::Failed(exchange),
                Verdict::StopRun => {
                    self.stop
                        .stop(StopReason::Unauthorized(exchange.describe_failure()));
                    CallEnd::Unauthorized(exchange)
                }
                Verdict::Retry => {
                    let mut wait = retry_wait(
                        &self.policy,
                        attempts,
                        fastrand::f64(),
                        exchange.retry_after,
                    );
                    // A 429 slows the whole run, whether or not this request
                    // has attempts left.
                    if exchange.status == Some(429) {
                        throttled += 1;
                        self.stats.throttled();
                        let asked = exchange.retry_after.map(|a| a.min(RETRY_AFTER_MAX));
                        let at_least = self.pacer.on_throttled(permit, asked, exchange.quota);
                        wait = wait.max(at_least);
                    }
                    if attempts >= self.policy.max_attempts {
                        return Called {
                            end: CallEnd::Failed(exchange),
                            attempts,
                            last_status,
                            throttled,
                        };
                    }
                    tracing::debug!(
                        "{what}: attempt {attempts} failed ({}); retrying in {}",
                        exchange.describe_failure(),
                        humantime::format_duration(round_ms(wait))
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {
                            last = Some(exchange);
                            continue;
                        }
                        _ = self.stop.token().cancelled() => CallEnd::Interrupted(exchange),
                    }
                }
            };
            return Called {
                end,
                attempts,
                last_status,
                throttled,
            };
        }
    }
}

fn round_ms(d: std::time::Duration) -> std::time::Duration {
    std::time::Duration::from_millis(d.as_millis() as u64)
}
