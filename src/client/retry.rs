//! The retry policy as pure functions: what an attempt's result means for the
//! row, how long to wait before the next attempt, and what `Retry-After` says.

use std::time::{Duration, SystemTime};

/// The contract's backoff: exponential from 500 ms, capped at 30 s, full jitter.
pub const BACKOFF_BASE: Duration = Duration::from_millis(500);
pub const BACKOFF_CAP: Duration = Duration::from_secs(30);

/// The longest `Retry-After` honoured. A server asking for more is most likely
/// wrong, and an unattended run must not sleep for a day.
pub const RETRY_AFTER_MAX: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// HTTP attempts per request, the first included.
    pub max_attempts: u32,
    pub base: Duration,
    pub cap: Duration,
    /// Statuses besides 429 that mean the server's rate limit refused the
    /// request (`--throttle-status`: 503 where nginx's `limit_req` keeps
    /// its default status). Each is retried as before and slows the run
    /// as a 429 does.
    pub throttle_statuses: Vec<u16>,
}

impl RetryPolicy {
    pub fn new(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            base: BACKOFF_BASE,
            cap: BACKOFF_CAP,
            throttle_statuses: Vec::new(),
        }
    }

    /// Whether an answer with `status` is the server's rate limit refusing.
    pub fn is_throttle(&self, status: u16) -> bool {
        status == 429 || self.throttle_statuses.contains(&status)
    }
}

/// Whether `--throttle-status` may name `status`: one the retry table
/// retries whatever its body (408, 500, 502, 503, 504), so reading it as
/// the limit's changes only the pace, never whether a row is tried again.
pub fn may_throttle(status: u16) -> bool {
    matches!(status, 408 | 500 | 502 | 503 | 504)
}

/// How an attempt ended, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// A complete response.
    Status { code: u16, body_is_json: bool },
    /// No complete response.
    Transport(Transport),
}

/// Why no complete response came back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Could not connect (refused, unreachable, DNS, TLS handshake).
    Connect,
    /// The attempt's `--timeout` passed.
    Timeout,
    /// The connection was reset or closed before the response was complete.
    Reset,
    /// The response body was cut short or could not be read.
    BodyCut,
    /// A local failure that retrying cannot fix.
    Other,
}

/// What to do after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Success,
    /// Safe and worth trying again.
    Retry,
    /// The row fails; the run goes on.
    FailRow,
    /// Every further request would fail the same way: stop the run (a 401).
    StopRun,
}

/// The contract's retry table.
pub fn classify(reply: Reply) -> Verdict {
    match reply {
        Reply::Status { code, .. } if (200..300).contains(&code) => Verdict::Success,
        Reply::Status { code: 401, .. } => Verdict::StopRun,
        Reply::Status {
            code: 408 | 429 | 500 | 502 | 503 | 504,
            ..
        } => Verdict::Retry,
        // Another 5xx with a body that is not the API's JSON comes from a proxy
        // or load balancer in front of it: transient.
        Reply::Status {
            code: 500..=599,
            body_is_json: false,
        } => Verdict::Retry,
        Reply::Status { .. } => Verdict::FailRow,
        Reply::Transport(Transport::Other) => Verdict::FailRow,
        Reply::Transport(_) => Verdict::Retry,
    }
}

/// The wait before the next attempt after attempt number `failed_attempt`
/// (1-based) failed: full jitter over `min(cap, base × 2^(n-1))`. `unit` is a
/// uniform random number in `[0, 1)`.
pub fn backoff_delay(policy: &RetryPolicy, failed_attempt: u32, unit: f64) -> Duration {
    let exponent = failed_attempt.saturating_sub(1).min(30);
    let ceiling = policy.base.saturating_mul(1u32 << exponent).min(policy.cap);
    ceiling.mul_f64(unit.clamp(0.0, 1.0))
}

/// The wait before the next attempt: the jittered backoff, but never less than
/// what the server asked for with `Retry-After` (itself capped at
/// [`RETRY_AFTER_MAX`]).
pub fn retry_wait(
    policy: &RetryPolicy,
    failed_attempt: u32,
    unit: f64,
    retry_after: Option<Duration>,
) -> Duration {
    let backoff = backoff_delay(policy, failed_attempt, unit);
    match retry_after {
        Some(asked) => backoff.max(asked.min(RETRY_AFTER_MAX)),
        None => backoff,
    }
}

/// Parses a `Retry-After` value: delta-seconds or an HTTP date (RFC 9110
/// §10.2.3). A date in the past means no wait. `None` when unparseable.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    // Not RFC-conforming, but seen in the wild: fractional seconds.
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(1e9)));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> Verdict {
        classify(Reply::Status {
            code,
            body_is_json: true,
        })
    }

    #[test]
    fn classification_table() {
        for code in [200, 201, 204] {
            assert_eq!(status(code), Verdict::Success, "{code}");
        }
        assert_eq!(status(401), Verdict::StopRun);
        for code in [408, 429, 500, 502, 503, 504] {
            assert_eq!(status(code), Verdict::Retry, "{code}");
        }
        for code in [301, 400, 403, 404, 405, 409, 410, 422, 501, 505] {
            assert_eq!(status(code), Verdict::FailRow, "{code}");
        }
        let html = |code| {
            classify(Reply::Status {
                code,
                body_is_json: false,
            })
        };
        assert_eq!(html(520), Verdict::Retry);
        assert_eq!(html(501), Verdict::Retry);
        assert_eq!(html(404), Verdict::FailRow);
        assert_eq!(html(200), Verdict::Success);
        for t in [
            Transport::Connect,
            Transport::Timeout,
            Transport::Reset,
            Transport::BodyCut,
        ] {
            assert_eq!(classify(Reply::Transport(t)), Verdict::Retry, "{t:?}");
        }
        assert_eq!(
            classify(Reply::Transport(Transport::Other)),
            Verdict::FailRow
        );
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let p = RetryPolicy::new(5);
        assert_eq!(
            backoff_delay(&p, 1, 0.999_999),
            Duration::from_millis(500).mul_f64(0.999_999)
        );
        assert_eq!(backoff_delay(&p, 2, 0.5), Duration::from_millis(500));
        assert_eq!(backoff_delay(&p, 3, 0.5), Duration::from_millis(1000));
        assert_eq!(backoff_delay(&p, 7, 1.0), Duration::from_secs(30));
        assert_eq!(backoff_delay(&p, 200, 1.0), Duration::from_secs(30));
        assert_eq!(backoff_delay(&p, 4, 0.0), Duration::ZERO);
        for attempt in 1..40 {
            for unit in [0.0, 0.1, 0.5, 0.9, 0.999] {
                let d = backoff_delay(&p, attempt, unit);
                assert!(d <= BACKOFF_CAP);
                assert!(d <= BACKOFF_BASE * 2u32.pow((attempt - 1).min(10)));
            }
        }
    }

    #[test]
    fn retry_after_is_the_least_wait() {
        let p = RetryPolicy::new(5);
        assert_eq!(
            retry_wait(&p, 1, 0.0, Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
        assert_eq!(
            retry_wait(&p, 10, 1.0, Some(Duration::from_secs(3))),
            Duration::from_secs(30)
        );
        assert_eq!(
            retry_wait(&p, 1, 0.0, Some(Duration::from_secs(86_400))),
            RETRY_AFTER_MAX
        );
    }

    #[test]
    fn retry_after_forms() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("1.5", now),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Sunday, 06-Nov-94 08:49:40 GMT", now),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            parse_retry_after("Sun Nov  6 08:49:38 1994", now),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("-5", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("", now), None);
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
    }
}
