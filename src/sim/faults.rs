//! Fault injection: what can go wrong (`Fault`), which requests it hits
//! (`Trigger`), the server-side rate limit, and the runtime state that decides,
//! request by request, what happens.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::limit::{HeaderStyle, Limiter, Shape};

/// Everything the simulator does wrong on purpose. `Faults::default()` is a
/// well-behaved server.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Faults {
    /// Checked in order for each `/iam` request; the first rule that fires wins.
    pub rules: Vec<FaultRule>,
    /// Added before every `/iam` answer (and before the rate limit and rules).
    pub latency: Duration,
    /// A token bucket over all `/iam` requests; beyond it → 429 + `Retry-After`.
    /// Shorthand for a `limit` of `Shape::Bucket` with `Retry-After` and no
    /// rate-limit headers; `limit` wins when both are set.
    pub server_rate: Option<ServerRate>,
    /// A server-side limit of any shape over all `/iam` requests.
    pub limit: Option<ServerLimit>,
    /// PATCH validates these body fields but does not store them, and still
    /// answers 200 with the unchanged values (a client can detect it).
    pub ignore_fields: Vec<String>,
    /// GET/PATCH on these client ids → 403, whether the account exists or not.
    pub forbidden_ids: Vec<u64>,
    /// Seeds the random draws of `Trigger::Share`.
    pub seed: u64,
}

/// A server-side limit: `burst` requests back to back, refilled at
/// `per_second`. A `burst` of 0 counts as 1.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ServerRate {
    pub per_second: f64,
    pub burst: u32,
}

/// A server-side limit, how its 429s read, and what every answer says of it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ServerLimit {
    pub shape: Shape,
    /// 429s carry `Retry-After` (whole seconds, rounded up).
    pub retry_after: bool,
    /// Rate-limit header fields on every `/iam` answer.
    pub headers: HeaderStyle,
    /// The status a refusal is answered with: 429, or 503 as nginx's
    /// `limit_req` answers by default.
    pub status: u16,
}

impl ServerLimit {
    /// A limit answering 429 with `Retry-After` and no rate-limit headers.
    pub fn new(shape: Shape) -> ServerLimit {
        ServerLimit {
            shape,
            retry_after: true,
            headers: HeaderStyle::None,
            status: 429,
        }
    }
}

/// What the server-side limit decided for one request.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Admission {
    /// `Some` when refused (429): the `Retry-After` seconds to send, if any.
    pub refused: Option<Option<u64>>,
    /// Rate-limit header fields for the answer, accepted or not.
    pub headers: Vec<(&'static str, String)>,
}

/// One fault and the requests it applies to.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultRule {
    pub fault: Fault,
    pub trigger: Trigger,
    /// `"GET"`, `"PATCH"` (any case); `None` matches every method.
    pub method: Option<String>,
}

impl FaultRule {
    /// A rule for every method.
    pub fn new(fault: Fault, trigger: Trigger) -> FaultRule {
        FaultRule {
            fault,
            trigger,
            method: None,
        }
    }

    /// The same rule, limited to one HTTP method.
    pub fn on_method(mut self, method: impl Into<String>) -> FaultRule {
        self.method = Some(method.into());
        self
    }
}

/// Which of the requests a rule's method matches get its fault.
#[derive(Clone, Debug, PartialEq)]
pub enum Trigger {
    /// This share (0.0..=1.0) of matching requests, drawn at random from
    /// `Faults::seed`.
    Share(f64),
    /// The first n matching requests for each client id; later ones pass.
    /// Requests without a client id in the path never match.
    FirstPerAccount(u32),
    /// Every matching request for these client ids.
    Ids(Vec<u64>),
    Always,
}

/// What goes wrong. "Nothing applied" means the account is left unchanged.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// That status with a JSON `{"detail": "..."}` body; nothing applied.
    Status(u16),
    /// 429 with `{"detail": "Request was throttled."}`; `Retry-After` is sent
    /// verbatim when given (delta-seconds or an HTTP date). Nothing applied.
    TooManyRequests { retry_after: Option<String> },
    /// The connection is closed with a TCP RST and no response; nothing applied.
    Reset,
    /// The request is handled (a PATCH applied), then the connection is reset
    /// without an answer: the lost-answer case.
    ResetAfterApply,
    /// Answers normally after this extra delay.
    Slow(Duration),
    /// Never answers; the client's timeout must fire. Nothing applied.
    Hang,
    /// That status with a `text/html` error page, like a proxy; nothing applied.
    Html(u16),
    /// The request is handled (a PATCH applied), then the answer's body is
    /// replaced by plain text, keeping its status (200 on success).
    NotJson,
    /// The request is handled (a PATCH applied), then the answer's body is
    /// cut in half: `Content-Length` promises the whole body, and the
    /// connection closes after the first half.
    Truncated,
    /// The request is handled (a PATCH applied to the account asked for),
    /// then the answer carries this other account instead, like a proxy that
    /// mixed up two answers.
    OtherAccount(u64),
    /// The request is handled (a PATCH applied), then the answer's body is
    /// padded with spaces past 16 MiB: valid JSON no client should buffer.
    HugeBody,
    /// `301 Moved Permanently` to this `Location`, with nginx's page, as a
    /// server answers a URL that moved (`http://` to `https://`, say).
    /// Nothing applied.
    Redirect(String),
}

/// Rules under which each fault hits its own share of all requests, although
/// only the first rule that fires counts: a later rule's share is taken of
/// what the earlier rules left. Shares are clamped to 0..=1; past a total of 1,
/// later faults get what is left (nothing).
pub fn exclusive_share_rules(shares: &[(Fault, f64)]) -> Vec<FaultRule> {
    let mut taken = 0.0_f64;
    let mut rules = Vec::new();
    for (fault, share) in shares {
        let share = share.clamp(0.0, 1.0);
        let left = 1.0 - taken;
        if share <= 0.0 || left <= 0.0 {
            continue;
        }
        let conditional = (share / left).min(1.0);
        taken = (taken + share).min(1.0);
        rules.push(FaultRule::new(fault.clone(), Trigger::Share(conditional)));
    }
    rules
}

/// The per-simulator state behind `Faults`: the random source, per-account
/// counters and the token bucket. Replaced whole when faults change.
pub(crate) struct FaultState {
    faults: std::sync::Arc<Faults>,
    rng: fastrand::Rng,
    /// (rule index, client id) → matching requests seen so far.
    seen_per_account: HashMap<(usize, u64), u32>,
    limit: Option<(Limiter, ServerLimit, Instant)>,
}

impl FaultState {
    pub fn new(faults: Faults, now: Instant) -> FaultState {
        FaultState {
            rng: fastrand::Rng::with_seed(faults.seed),
            seen_per_account: HashMap::new(),
            limit: faults
                .limit
                .or(faults.server_rate.map(|rate| {
                    ServerLimit::new(Shape::Bucket {
                        rate: rate.per_second,
                        burst: rate.burst,
                    })
                }))
                .map(|limit| (Limiter::new(limit.shape), limit, now)),
            faults: std::sync::Arc::new(faults),
        }
    }

    /// The current configuration, cheap to hold across an await.
    pub fn faults(&self) -> std::sync::Arc<Faults> {
        self.faults.clone()
    }

    /// Asks the server-side limit, if any, to admit a request arriving now.
    pub fn admit(&mut self, now: Instant) -> Admission {
        let Some((limiter, limit, origin)) = &mut self.limit else {
            return Admission::default();
        };
        let at = now.saturating_duration_since(*origin).as_secs_f64();
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        match limiter.admit(at) {
            Ok(standing) => Admission {
                refused: None,
                headers: standing.headers(limit.headers, unix),
            },
            Err(refused) => Admission {
                // Whole seconds, rounded up, never 0: as DRF and nginx say it.
                refused: Some(
                    limit
                        .retry_after
                        .then(|| (refused.wait.ceil() as u64).max(1)),
                ),
                headers: refused.standing.headers(limit.headers, unix),
            },
        }
    }

    /// The fault of the first rule that fires for this request, if any.
    pub fn pick(&mut self, method: &str, client_id: Option<u64>) -> Option<Fault> {
        for (index, rule) in self.faults.rules.iter().enumerate() {
            if let Some(wanted) = &rule.method
                && !wanted.eq_ignore_ascii_case(method)
            {
                continue;
            }
            let fires = match &rule.trigger {
                Trigger::Always => true,
                Trigger::Share(share) => self.rng.f64() < *share,
                Trigger::Ids(ids) => client_id.is_some_and(|id| ids.contains(&id)),
                Trigger::FirstPerAccount(n) => match client_id {
                    Some(id) => {
                        let seen = self.seen_per_account.entry((index, id)).or_insert(0);
                        *seen += 1;
                        *seen <= *n
                    }
                    None => false,
                },
            };
            if fires {
                return Some(rule.fault.clone());
            }
        }
        None
    }
}

/// The `{"detail": ...}` text for a status a fault answers with, in DRF's
/// wording where DRF has one.
pub(crate) fn detail_for_status(status: u16) -> String {
    match status {
        400 => "Bad request.".to_owned(),
        401 => "Authentication credentials were not provided.".to_owned(),
        403 => "You do not have permission to perform this action.".to_owned(),
        404 => "Not found.".to_owned(),
        408 => "Request timeout.".to_owned(),
        429 => "Request was throttled.".to_owned(),
        500 => "A server error occurred.".to_owned(),
        503 => "Service temporarily unavailable, try again later.".to_owned(),
        other => axum::http::StatusCode::from_u16(other)
            .ok()
            .and_then(|s| s.canonical_reason())
            .map_or_else(|| format!("Error {other}."), |reason| format!("{reason}.")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(fault: Fault, trigger: Trigger) -> FaultRule {
        FaultRule::new(fault, trigger)
    }

    #[test]
    fn first_matching_rule_wins() {
        let faults = Faults {
            rules: vec![
                rule(Fault::Status(503), Trigger::Ids(vec![7])).on_method("patch"),
                rule(Fault::Reset, Trigger::Always),
            ],
            ..Faults::default()
        };
        let mut state = FaultState::new(faults, Instant::now());
        assert_eq!(state.pick("PATCH", Some(7)), Some(Fault::Status(503)));
        assert_eq!(state.pick("GET", Some(7)), Some(Fault::Reset));
        assert_eq!(state.pick("PATCH", Some(8)), Some(Fault::Reset));
    }

    #[test]
    fn first_per_account_counts_each_id() {
        let faults = Faults {
            rules: vec![rule(Fault::Status(500), Trigger::FirstPerAccount(2))],
            ..Faults::default()
        };
        let mut state = FaultState::new(faults, Instant::now());
        let hits: Vec<bool> = [1, 1, 2, 1, 2, 2]
            .iter()
            .map(|id| state.pick("PATCH", Some(*id)).is_some())
            .collect();
        assert_eq!(hits, [true, true, true, false, true, false]);
        assert_eq!(state.pick("GET", None), None);
    }

    #[test]
    fn share_is_seeded_and_roughly_right() {
        let faults = Faults {
            rules: vec![rule(Fault::Status(500), Trigger::Share(0.3))],
            seed: 11,
            ..Faults::default()
        };
        let draw = |faults: &Faults| {
            let mut state = FaultState::new(faults.clone(), Instant::now());
            (0..2000)
                .map(|_| state.pick("GET", None).is_some())
                .collect::<Vec<_>>()
        };
        let first = draw(&faults);
        assert_eq!(first, draw(&faults));
        let hits = first.iter().filter(|hit| **hit).count();
        assert!((450..=750).contains(&hits), "{hits} of 2000");
    }

    #[test]
    fn exclusive_shares_add_up() {
        let rules = exclusive_share_rules(&[
            (Fault::Status(500), 0.25),
            (Fault::Status(502), 0.25),
            (Fault::Reset, 0.5),
            (Fault::Hang, 0.1),
        ]);
        let shares: Vec<f64> = rules
            .iter()
            .map(|r| match r.trigger {
                Trigger::Share(s) => s,
                _ => f64::NAN,
            })
            .collect();
        assert_eq!(rules.len(), 3);
        assert!((shares[0] - 0.25).abs() < 1e-9);
        assert!((shares[1] - 1.0 / 3.0).abs() < 1e-9);
        assert!((shares[2] - 1.0).abs() < 1e-9);
    }

    fn admit_at(state: &mut FaultState, origin: Instant, seconds: f64) -> Admission {
        state.admit(origin + Duration::from_secs_f64(seconds))
    }

    #[test]
    fn bucket_allows_burst_then_says_when() {
        let start = Instant::now();
        let faults = Faults {
            server_rate: Some(ServerRate {
                per_second: 0.5,
                burst: 2,
            }),
            ..Faults::default()
        };
        let mut state = FaultState::new(faults, start);
        assert_eq!(admit_at(&mut state, start, 0.0).refused, None);
        assert_eq!(admit_at(&mut state, start, 0.0).refused, None);
        assert_eq!(admit_at(&mut state, start, 0.0).refused, Some(Some(2)));
        assert_eq!(admit_at(&mut state, start, 1.0).refused, Some(Some(1)));
        assert_eq!(admit_at(&mut state, start, 2.0).refused, None);
    }

    #[test]
    fn fast_bucket_still_says_at_least_one_second() {
        let start = Instant::now();
        let faults = Faults {
            server_rate: Some(ServerRate {
                per_second: 1000.0,
                burst: 1,
            }),
            ..Faults::default()
        };
        let mut state = FaultState::new(faults, start);
        assert_eq!(admit_at(&mut state, start, 0.0).refused, None);
        assert_eq!(admit_at(&mut state, start, 0.0).refused, Some(Some(1)));
    }

    #[test]
    fn limits_without_retry_after_and_with_headers() {
        let start = Instant::now();
        let faults = Faults {
            limit: Some(ServerLimit {
                shape: Shape::Window {
                    n: 1,
                    seconds: 10.0,
                },
                retry_after: false,
                headers: HeaderStyle::X,
                status: 429,
            }),
            ..Faults::default()
        };
        let mut state = FaultState::new(faults, start);
        let first = admit_at(&mut state, start, 0.0);
        assert_eq!(first.refused, None);
        assert!(
            first
                .headers
                .contains(&("x-ratelimit-remaining", "0".into()))
        );
        let second = admit_at(&mut state, start, 1.0);
        assert_eq!(second.refused, Some(None));
        assert!(second.headers.contains(&("x-ratelimit-reset", "9".into())));
    }
}
