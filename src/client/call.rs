//! One logical request: paced, sent, classified and retried until it succeeds,
//! fails for good, or the run stops.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::Semaphore;

use crate::client::api::{ApiClient, Exchange, Request};
use crate::client::pacing::Pacer;
use crate::client::retry::{RETRY_AFTER_MAX, RetryPolicy, Verdict, classify, retry_wait};
use crate::run::stats::Stats;
use crate::run::stop::{StopReason, StopSignal};

/// Everything a request needs to be sent well; shared by all workers.
pub struct Caller {
    pub api: ApiClient,
    pub pacer: Pacer,
    /// One permit per request that may be in flight (`--concurrency`):
    /// taken before the pacer's permit, given back when the answer comes,
    /// so that a request waiting to be retried holds none.
    pub slots: Arc<Semaphore>,
    pub policy: RetryPolicy,
    pub stats: Arc<Stats>,
    pub stop: Arc<StopSignal>,
    /// The end of the last pause announced: one line per pause, however many
    /// workers were refused.
    pub announced_pause: Mutex<Option<Instant>>,
}

/// Rows a run keeps open per request that may be in flight: a row waiting
/// out its `Retry-After` or backoff leaves its slot to another row. With one
/// row per slot, eight rows told `Retry-After: 1` stopped the whole run for
/// a second, though the pacer would have let others go.
pub const ROWS_PER_SLOT: usize = 2;

/// A pause at least this long is announced: shorter ones pass before a
/// status line would show them.
const LONG_PAUSE: Duration = Duration::from_secs(10);

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
    /// The run stopped while a read that records nothing (the token check,
    /// a page of the account list) was in flight: it was given up at once,
    /// its answer not awaited.
    Abandoned,
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
            CallEnd::Abandoned => "given up: the run stopped while it was in flight".into(),
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
            // A slot first, then the pacer's permit: the permit's time is
            // when the request goes.
            let slot = tokio::select! {
                biased;
                _ = self.stop.token().cancelled() => None,
                slot = Arc::clone(&self.slots).acquire_owned() => slot.ok(),
            };
            // Checked again after the wait: a stop that came while this attempt
            // queued must not let it out.
            let permit = match slot {
                Some(_) => self.pacer.acquire(self.stop.token()).await,
                None => Err(crate::client::pacing::Stopped),
            };
            let permit = match permit {
                Ok(permit) if !self.stop.is_stopped() => permit,
                unused => {
                    if let Ok(permit) = unused {
                        // Granted, but the run stopped: never sent.
                        self.pacer.on_lost(permit);
                    }
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
            let exchange = if request.changes_nothing() {
                // Nothing to record and nothing changed: a stop need not wait
                // out --timeout for it.
                tokio::select! {
                    biased;
                    _ = self.stop.token().cancelled() => {
                        self.pacer.on_lost(permit);
                        return Called {
                            end: CallEnd::Abandoned,
                            attempts,
                            last_status,
                            throttled,
                        };
                    }
                    exchange = self.api.send(request) => exchange,
                }
            } else {
                self.api.send(request).await
            };
            // (The slot is given back once the pacer has heard the answer:
            // a request let go meanwhile must meet the pace it sets.)
            last_status = exchange.status.or(last_status);
            let verdict = classify(exchange.reply);
            let end = match verdict {
                Verdict::Success => {
                    self.pacer.on_success(permit, exchange.quota);
                    CallEnd::Success(exchange)
                }
                Verdict::FailRow => {
                    // Refused for its own sake (a 404, a 403), but it passed
                    // the server's limit: the limit took it.
                    if exchange.status.is_some() {
                        self.pacer.on_success(permit, exchange.quota);
                    } else {
                        self.pacer.on_lost(permit);
                    }
                    CallEnd::Failed(exchange)
                }
                Verdict::StopRun => {
                    self.pacer.on_lost(permit);
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
                    // A 429 (or a --throttle-status) slows the whole run,
                    // whether or not this request has attempts left.
                    match exchange.status {
                        Some(code) if self.policy.is_throttle(code) => {
                            throttled += 1;
                            self.stats.throttled();
                            let asked = exchange.retry_after.map(|a| a.min(RETRY_AFTER_MAX));
                            let at_least = self.pacer.on_throttled(permit, asked, exchange.quota);
                            wait = wait.max(at_least);
                            self.announce_pause(code, exchange.retry_after);
                        }
                        // A 5xx that came back passed the limit too.
                        Some(code) => {
                            if code == 503 {
                                self.stats.unnamed_503();
                            }
                            self.pacer.on_success(permit, exchange.quota);
                        }
                        // No answer: the connection failed or timed out.
                        None => self.pacer.on_lost(permit),
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
                    // Waiting to retry holds no slot: another row may go.
                    drop(slot);
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

impl Caller {
    /// Says, once per pause, that the whole run pauses for a while and until
    /// when (UTC: the only clock the tool can name without a time zone
    /// database), so that a run at "0.0 rows/s" is not taken for stuck.
    fn announce_pause(&self, status: u16, asked: Option<Duration>) {
        let Some(until) = self.pacer.paused_until() else {
            return;
        };
        let left = until.saturating_duration_since(Instant::now());
        if left < LONG_PAUSE {
            return;
        }
        {
            let mut announced = self
                .announced_pause
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if announced.is_some_and(|a| until <= a + Duration::from_secs(1)) {
                return;
            }
            *announced = Some(until);
        }
        let clock = utc_clock(SystemTime::now() + left);
        match asked {
            Some(asked) => tracing::warn!(
                "HTTP {status}: the server asks to wait {}; pausing until {clock} UTC",
                humantime::format_duration(whole_seconds(asked))
            ),
            None => tracing::warn!(
                "HTTP {status}: pausing for {}, until {clock} UTC",
                humantime::format_duration(whole_seconds(left))
            ),
        }
    }
}

/// `02:41:07`, the time of day of `t` in UTC.
pub fn utc_clock(t: SystemTime) -> String {
    let stamp = humantime::format_rfc3339_seconds(t).to_string();
    stamp.get(11..19).unwrap_or(&stamp).to_string()
}

/// A duration rounded to whole seconds, for people.
pub fn whole_seconds(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs_f64().round() as u64)
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

/// A simulator on 127.0.0.1 for unit tests: accounts `ids`, faults `rules`.
#[cfg(test)]
pub(crate) async fn test_simulator(
    token: &str,
    ids: std::ops::RangeInclusive<u64>,
    rules: Vec<crate::sim::FaultRule>,
) -> crate::sim::Simulator {
    let faults = crate::sim::Faults {
        rules,
        ..Default::default()
    };
    let config = crate::sim::SimConfig::new(token)
        .with_generated_accounts(ids)
        .with_faults(faults);
    crate::sim::Simulator::start(config, "127.0.0.1:0".parse().expect("an address"))
        .await
        .expect("the simulator starts")
}

/// A caller for unit tests: no pacing, `max_attempts` per request.
#[cfg(test)]
impl Caller {
    pub(crate) fn for_tests(base_url: &str, token: &str, max_attempts: u32) -> Caller {
        Caller {
            api: ApiClient::new(
                base_url,
                Some(crate::client::token::ApiToken::new(token.into()).expect("printable")),
                1,
                Duration::from_secs(10),
                &Default::default(),
            )
            .expect("a loopback URL"),
            pacer: Pacer::new(crate::client::pacing::Rate::Unlimited, 1),
            slots: Arc::new(Semaphore::new(8)),
            policy: RetryPolicy::new(max_attempts),
            stats: Arc::new(Stats::new()),
            stop: StopSignal::new(),
            announced_pause: Default::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{Fault, FaultRule, Simulator, Trigger};

    const TOKEN: &str = "call-unit-test-token";

    async fn simulator(rules: Vec<FaultRule>) -> Simulator {
        test_simulator(TOKEN, 1..=2, rules).await
    }

    fn get(client_id: u64) -> Request {
        Request::Get { client_id }
    }

    #[tokio::test]
    async fn a_retryable_answer_is_tried_again_and_counted_as_a_retry() {
        let sim = simulator(vec![FaultRule::new(
            Fault::Status(503),
            Trigger::FirstPerAccount(1),
        )])
        .await;
        let caller = Caller::for_tests(&sim.base_url(), TOKEN, 2);
        let called = caller.call(&get(1), &AccountRequest("GET", 1)).await;
        assert!(
            matches!(called.end, CallEnd::Success(_)),
            "{:?}",
            called.end
        );
        assert_eq!(called.attempts, 2);
        assert_eq!(called.last_status, Some(200));
        let stats = caller.stats.snapshot();
        assert_eq!((stats.requests, stats.retries), (2, 1));
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn out_of_attempts_the_call_fails_and_says_how_many_it_made() {
        let sim = simulator(vec![FaultRule::new(Fault::Status(503), Trigger::Always)]).await;
        let caller = Caller::for_tests(&sim.base_url(), TOKEN, 2);
        let called = caller.call(&get(1), &AccountRequest("GET", 1)).await;
        assert!(
            !matches!(called.end, CallEnd::Success(_)),
            "{:?}",
            called.end
        );
        assert_eq!(called.attempts, 2);
        assert_eq!(called.last_status, Some(503));
        assert!(!called.failure(2).is_empty());
        assert!(
            !caller.stop.is_stopped(),
            "one row's failure does not stop the run"
        );
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn a_rejected_token_stops_the_run() {
        let sim = simulator(vec![]).await;
        let caller = Caller::for_tests(&sim.base_url(), "not-the-token", 3);
        let called = caller.call(&get(1), &AccountRequest("GET", 1)).await;
        assert!(
            matches!(called.end, CallEnd::Unauthorized(_)),
            "{:?}",
            called.end
        );
        assert_eq!(called.attempts, 1, "a 401 is not retried");
        assert!(matches!(
            caller.stop.reason(),
            Some(StopReason::Unauthorized(_))
        ));
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn nothing_starts_once_the_run_stopped() {
        let sim = simulator(vec![]).await;
        let caller = Caller::for_tests(&sim.base_url(), TOKEN, 3);
        caller.stop.stop(StopReason::Interrupted);
        let called = caller.call(&get(1), &AccountRequest("GET", 1)).await;
        assert!(
            matches!(called.end, CallEnd::NotStarted),
            "{:?}",
            called.end
        );
        assert_eq!(called.attempts, 0);
        assert_eq!(caller.stats.snapshot().requests, 0);
        sim.shutdown().await;
    }

    #[test]
    fn clocks_and_durations_for_people() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + 9_667);
        assert_eq!(utc_clock(t), "10:41:07");
        assert_eq!(
            humantime::format_duration(whole_seconds(Duration::from_millis(599_600))).to_string(),
            "10m"
        );
    }
}
