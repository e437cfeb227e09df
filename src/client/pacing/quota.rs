//! What a server says of its own rate limit, read from the answer's header
//! fields: the IETF httpapi draft's `RateLimit-Limit` / `-Remaining` /
//! `-Reset` / `RateLimit-Policy` (up to draft -06), its later structured
//! `RateLimit` / `RateLimit-Policy` (from -07), and the common
//! `X-RateLimit-Limit` / `-Remaining` / `-Reset`, whose reset is either
//! seconds from now or a Unix time.

/// The figures of one answer. Any of them may be missing.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Quota {
    /// Requests allowed per window.
    pub limit: Option<u64>,
    /// The window, seconds (from a policy field).
    pub window: Option<f64>,
    /// Requests left.
    pub remaining: Option<u64>,
    /// Seconds until the quota grows again.
    pub reset: Option<f64>,
}

/// An X-RateLimit-Reset above this is a Unix time, not a number of seconds
/// (2001-09-09; no window lasts 30 years).
const UNIX_TIME_FROM: f64 = 1e9;
/// ... and above this, a Unix time in milliseconds.
const UNIX_MILLIS_FROM: f64 = 1e11;
/// No figure is taken past these: a reset over ten minutes (as long as a
/// `Retry-After` is honoured), or more requests than a run could send.
const MAX_RESET: f64 = 600.0;
const MAX_COUNT: u64 = 1_000_000_000;

impl Quota {
    /// Reads the figures from header fields; `get` looks one up by its
    /// lower-case name. `now_unix` turns a Unix-time reset into seconds from
    /// now. `None` when the answer carries none of them.
    pub fn from_headers<'a>(get: impl Fn(&str) -> Option<&'a str>, now_unix: f64) -> Option<Quota> {
        let mut quota = Quota::default();
        if let Some(value) = get("ratelimit") {
            // `"default";r=50;t=30`: the first item's parameters.
            let first = value.split(',').next().unwrap_or("");
            quota.remaining = parameter(first, "r").and_then(whole);
            quota.reset = parameter(first, "t").and_then(seconds);
        }
        if let Some(value) = get("ratelimit-policy") {
            let first = value.split(',').next().unwrap_or("");
            // `10;w=1` (old draft) or `"default";q=10;w=1` (new).
            let item = first.split(';').next().unwrap_or("").trim();
            quota.limit = parameter(first, "q")
                .and_then(whole)
                .or_else(|| whole(item));
            quota.window = parameter(first, "w").and_then(seconds).filter(|w| *w > 0.0);
        }
        for prefix in ["ratelimit-", "x-ratelimit-"] {
            let field = |name: &str| get(&format!("{prefix}{name}"));
            if quota.limit.is_none() {
                // `RateLimit-Limit: 10, 10;w=1` lists a policy after the figure.
                quota.limit = field("limit").and_then(|v| whole(v.split(',').next()?));
            }
            if quota.remaining.is_none() {
                quota.remaining = field("remaining").and_then(whole);
            }
            if quota.reset.is_none() {
                quota.reset = field("reset").and_then(seconds).map(|value| {
                    // Seconds from now, a Unix time, or one in milliseconds.
                    if value > UNIX_MILLIS_FROM {
                        (value / 1000.0 - now_unix).max(0.0)
                    } else if value > UNIX_TIME_FROM {
                        (value - now_unix).max(0.0)
                    } else {
                        value
                    }
                });
            }
        }
        quota.reset = quota.reset.map(|r| r.min(MAX_RESET));
        quota.remaining = quota.remaining.map(|r| r.min(MAX_COUNT));
        quota.limit = quota.limit.map(|l| l.min(MAX_COUNT));
        (quota != Quota::default()).then_some(quota)
    }
}

/// The value of `;name=value` among an item's parameters.
fn parameter<'a>(item: &'a str, name: &str) -> Option<&'a str> {
    item.split(';').skip(1).find_map(|p| {
        let (key, value) = p.split_once('=')?;
        (key.trim().eq_ignore_ascii_case(name)).then(|| value.trim())
    })
}

fn whole(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

fn seconds(text: &str) -> Option<f64> {
    let value: f64 = text.trim().parse().ok()?;
    (value.is_finite() && value >= 0.0).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(fields: &[(&str, &str)]) -> Option<Quota> {
        Quota::from_headers(
            |name| fields.iter().find(|(n, _)| *n == name).map(|(_, v)| *v),
            1_700_000_000.0,
        )
    }

    #[test]
    fn ietf_draft_fields() {
        let quota = read(&[
            ("ratelimit-limit", "20"),
            ("ratelimit-remaining", "7"),
            ("ratelimit-reset", "1"),
            ("ratelimit-policy", "20;w=2"),
        ])
        .unwrap();
        assert_eq!(
            quota,
            Quota {
                limit: Some(20),
                window: Some(2.0),
                remaining: Some(7),
                reset: Some(1.0)
            }
        );
    }

    #[test]
    fn structured_fields() {
        let quota = read(&[
            ("ratelimit", "\"default\";r=50;t=30"),
            (
                "ratelimit-policy",
                "\"default\";q=100;w=60, \"daily\";q=1000;w=86400",
            ),
        ])
        .unwrap();
        assert_eq!(quota.limit, Some(100));
        assert_eq!(quota.window, Some(60.0));
        assert_eq!(quota.remaining, Some(50));
        assert_eq!(quota.reset, Some(30.0));
    }

    #[test]
    fn x_fields_in_seconds_or_unix_time() {
        let relative = read(&[
            ("x-ratelimit-limit", "60"),
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", "12"),
        ])
        .unwrap();
        assert_eq!(relative.reset, Some(12.0));
        assert_eq!(relative.window, None);
        let absolute = read(&[("x-ratelimit-reset", "1700000003")]).unwrap();
        assert_eq!(absolute.reset, Some(3.0));
        let past = read(&[("x-ratelimit-reset", "1600000000")]).unwrap();
        assert_eq!(past.reset, Some(0.0));
    }

    #[test]
    fn resets_as_unix_times_or_milliseconds_and_never_past_ten_minutes() {
        let unix = read(&[("ratelimit-reset", "1700000005")]).unwrap();
        assert_eq!(unix.reset, Some(5.0));
        let millis = read(&[("x-ratelimit-reset", "1700000002000")]).unwrap();
        assert_eq!(millis.reset, Some(2.0));
        let far = read(&[("ratelimit-reset", "86400")]).unwrap();
        assert_eq!(far.reset, Some(600.0));
        let huge = read(&[("x-ratelimit-remaining", "18446744073709551615")]).unwrap();
        assert_eq!(huge.remaining, Some(1_000_000_000));
    }

    #[test]
    fn nothing_or_nonsense() {
        assert_eq!(read(&[]), None);
        assert_eq!(read(&[("x-ratelimit-limit", "lots")]), None);
        assert_eq!(read(&[("ratelimit-reset", "-3")]), None);
    }
}
