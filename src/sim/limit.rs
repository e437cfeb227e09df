//! Server-side rate limits of the shapes real APIs put in front of their
//! endpoints, as pure state machines (time passed in, seconds since any fixed
//! origin). The simulator answers with them; the pacing controller's tests
//! run against the very same models on a virtual clock.
//!
//! - [`Shape::Bucket`]: a token bucket, refilled continuously. nginx
//!   `limit_req rate=R` without `burst` is a bucket of 1; `burst=N nodelay`
//!   one of N + 1.
//! - [`Shape::Sliding`]: at most N accepted requests in any window of S
//!   seconds (Django REST framework's `SimpleRateThrottle`: a log of accepted
//!   requests; `Retry-After` until the oldest leaves the window).
//! - [`Shape::Window`]: N requests per fixed window of S seconds, reset on the
//!   boundary.

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;

/// A limit's shape and size.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Shape {
    /// `rate` tokens a second, at most `burst` stored.
    Bucket { rate: f64, burst: u32 },
    /// At most `n` requests in any `seconds`-long span.
    Sliding { n: u32, seconds: f64 },
    /// `n` requests per fixed window of `seconds`, counted from the origin.
    Window { n: u32, seconds: f64 },
}

impl Shape {
    /// Requests per second the limit sustains over a long run.
    pub fn sustained_rate(&self) -> f64 {
        match *self {
            Shape::Bucket { rate, .. } => rate,
            Shape::Sliding { n, seconds } | Shape::Window { n, seconds } => f64::from(n) / seconds,
        }
    }

    /// The least time in which `rows` requests can all be accepted, starting
    /// at the origin with a fresh limit: the first accepted at 0, the last at
    /// the returned time.
    pub fn ideal_seconds(&self, rows: u64) -> f64 {
        if rows == 0 {
            return 0.0;
        }
        let rows = rows as f64;
        match *self {
            Shape::Bucket { rate, burst } => {
                let burst = f64::from(burst.max(1));
                ((rows - burst) / rate).max(0.0)
            }
            Shape::Sliding { n, seconds } | Shape::Window { n, seconds } => {
                // Whole windows of n, the last one's first request at its start.
                let n = f64::from(n.max(1));
                ((rows - 1.0) / n).floor() * seconds
            }
        }
    }

    /// The least time in which `rows` requests can all be accepted by a
    /// client that sends at most `ceiling` a second (`None`: no cap),
    /// knowing the limit exactly: the first accepted at 0, the last at the
    /// returned time. Found by sending each request as early as both allow.
    pub fn greedy_seconds(&self, rows: u64, ceiling: Option<f64>) -> f64 {
        let mut limiter = Limiter::new(*self);
        let spacing = ceiling.map_or(0.0, |c| 1.0 / c);
        let mut at = 0.0_f64;
        let mut first = None;
        for _ in 0..rows {
            loop {
                match limiter.admit(at) {
                    Ok(_) => break,
                    // Just past the moment it would accept.
                    Err(refused) => at += refused.wait.max(1e-9) + 1e-9,
                }
            }
            first.get_or_insert(at);
            at += spacing;
        }
        (at - spacing) - first.unwrap_or(0.0)
    }

    /// The quota as a `RateLimit-Policy` states it: requests per window.
    fn policy(&self) -> (u64, f64) {
        match *self {
            Shape::Bucket { rate, .. } => {
                // A bucket's long-run quota, stated per second (or per the
                // time one token takes when that is longer).
                if rate >= 1.0 {
                    (rate.floor() as u64, rate.floor() / rate)
                } else {
                    (1, 1.0 / rate)
                }
            }
            Shape::Sliding { n, seconds } | Shape::Window { n, seconds } => (u64::from(n), seconds),
        }
    }
}

impl FromStr for Shape {
    type Err = String;

    /// `bucket:R:B`, `sliding:N:S` or `window:N:S` (R, S may be fractions).
    fn from_str(s: &str) -> Result<Shape, String> {
        let parts: Vec<&str> = s.trim().split(':').collect();
        let usage =
            || format!("`{s}`: write bucket:RATE:BURST, sliding:N:SECONDS or window:N:SECONDS");
        let [kind, a, b] = parts[..] else {
            return Err(usage());
        };
        let number = |text: &str| -> Result<f64, String> {
            match text.trim().parse::<f64>() {
                Ok(v) if v.is_finite() && v > 0.0 && v <= 1e6 => Ok(v),
                _ => Err(format!("`{text}` in `{s}` must be a number above 0")),
            }
        };
        let count = |text: &str| -> Result<u32, String> {
            match text.trim().parse::<u32>() {
                Ok(v) if v >= 1 => Ok(v),
                _ => Err(format!("`{text}` in `{s}` must be a whole number ≥ 1")),
            }
        };
        match kind.trim() {
            "bucket" => Ok(Shape::Bucket {
                rate: number(a)?,
                burst: count(b)?,
            }),
            "sliding" => Ok(Shape::Sliding {
                n: count(a)?,
                seconds: number(b)?,
            }),
            "window" => Ok(Shape::Window {
                n: count(a)?,
                seconds: number(b)?,
            }),
            _ => Err(usage()),
        }
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shape::Bucket { rate, burst } => write!(f, "bucket:{rate}:{burst}"),
            Shape::Sliding { n, seconds } => write!(f, "sliding:{n}:{seconds}"),
            Shape::Window { n, seconds } => write!(f, "window:{n}:{seconds}"),
        }
    }
}

/// Which rate-limit header fields a limited server adds to its answers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum HeaderStyle {
    /// None.
    #[default]
    None,
    /// `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` (seconds)
    /// and `RateLimit-Policy: N;w=S` (the IETF draft up to -06).
    Ietf,
    /// `RateLimit: "default";r=R;t=T` and `RateLimit-Policy:
    /// "default";q=N;w=S` (the IETF draft from -07 on).
    IetfStructured,
    /// `X-RateLimit-Limit`, `-Remaining`, `-Reset` as seconds from now.
    X,
    /// The same, `-Reset` as a Unix time.
    XEpoch,
}

/// What the limit says of itself with an answer: the figures rate-limit
/// headers carry.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Standing {
    /// Requests per window.
    pub limit: u64,
    /// The window, seconds.
    pub window: f64,
    /// Requests left now.
    pub remaining: u64,
    /// Seconds until `remaining` goes up again (bucket: until the next
    /// token; sliding: until the oldest request in the span leaves; window:
    /// until the boundary).
    pub reset: f64,
}

impl Standing {
    /// The header fields of `style` for this standing. `now_unix` is the
    /// Unix time, for [`HeaderStyle::XEpoch`]. Times round up to whole
    /// seconds, as the header formats require.
    pub fn headers(&self, style: HeaderStyle, now_unix: f64) -> Vec<(&'static str, String)> {
        // Rounded up, but not past a whole second by a float's last bit.
        let reset = (self.reset - 1e-9).ceil().max(0.0) as u64;
        let window = fmt_seconds(self.window);
        match style {
            HeaderStyle::None => Vec::new(),
            HeaderStyle::Ietf => vec![
                ("ratelimit-limit", self.limit.to_string()),
                ("ratelimit-remaining", self.remaining.to_string()),
                ("ratelimit-reset", reset.to_string()),
                ("ratelimit-policy", format!("{};w={window}", self.limit)),
            ],
            HeaderStyle::IetfStructured => vec![
                (
                    "ratelimit",
                    format!("\"default\";r={};t={reset}", self.remaining),
                ),
                (
                    "ratelimit-policy",
                    format!("\"default\";q={};w={window}", self.limit),
                ),
            ],
            HeaderStyle::X => vec![
                ("x-ratelimit-limit", self.limit.to_string()),
                ("x-ratelimit-remaining", self.remaining.to_string()),
                ("x-ratelimit-reset", reset.to_string()),
            ],
            HeaderStyle::XEpoch => vec![
                ("x-ratelimit-limit", self.limit.to_string()),
                ("x-ratelimit-remaining", self.remaining.to_string()),
                (
                    "x-ratelimit-reset",
                    ((now_unix + self.reset - 1e-9).ceil() as u64).to_string(),
                ),
            ],
        }
    }
}

fn fmt_seconds(seconds: f64) -> String {
    if seconds.fract() == 0.0 {
        format!("{}", seconds as u64)
    } else {
        format!("{}", (seconds * 1000.0).round() / 1000.0)
    }
}

/// A request refused by the limit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Refused {
    /// Seconds until a request would be accepted.
    pub wait: f64,
    pub standing: Standing,
}

/// A limit and its state.
#[derive(Clone, Debug)]
pub struct Limiter {
    shape: Shape,
    /// Bucket: tokens now, as of `last`.
    tokens: f64,
    last: f64,
    /// Sliding: times of the accepted requests still in the window.
    log: VecDeque<f64>,
    /// Window: the current window's index and its count.
    window_index: i64,
    window_count: u32,
}

impl Limiter {
    /// A fresh limit (a full bucket, empty windows), its origin at time 0.
    pub fn new(shape: Shape) -> Limiter {
        let tokens = match shape {
            Shape::Bucket { burst, .. } => f64::from(burst.max(1)),
            _ => 0.0,
        };
        Limiter {
            shape,
            tokens,
            last: 0.0,
            log: VecDeque::new(),
            window_index: 0,
            window_count: 0,
        }
    }

    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// Admits or refuses a request arriving at `now` (seconds since the
    /// origin; never earlier than a previous call's).
    pub fn admit(&mut self, now: f64) -> Result<Standing, Refused> {
        let (limit, window) = self.shape.policy();
        // Whether it is accepted, then what is left and when more comes.
        let (accepted, remaining, reset) = match self.shape {
            Shape::Bucket { rate, burst } => {
                let capacity = f64::from(burst.max(1));
                let elapsed = (now - self.last).max(0.0);
                self.last = self.last.max(now);
                self.tokens = (self.tokens + elapsed * rate).min(capacity);
                // A hair of tolerance: a request exactly on time is on time.
                let accepted = self.tokens >= 1.0 - 1e-9;
                if accepted {
                    self.tokens = (self.tokens - 1.0).max(0.0);
                }
                // Until the next token.
                let reset = (1.0 - self.tokens) / rate;
                (accepted, self.tokens.floor() as u64, reset)
            }
            Shape::Sliding { n, seconds } => {
                while self.log.front().is_some_and(|&t| t <= now - seconds) {
                    self.log.pop_front();
                }
                let accepted = self.log.len() < n as usize;
                if accepted {
                    self.log.push_back(now);
                }
                // When the oldest request leaves, and the count goes down.
                let reset = self
                    .log
                    .front()
                    .map_or(0.0, |&oldest| oldest + seconds - now);
                let remaining = (n as usize).saturating_sub(self.log.len()) as u64;
                (accepted, remaining, reset)
            }
            Shape::Window { n, seconds } => {
                let index = (now / seconds).floor() as i64;
                if index != self.window_index {
                    self.window_index = index;
                    self.window_count = 0;
                }
                let accepted = self.window_count < n;
                if accepted {
                    self.window_count += 1;
                }
                // Until the boundary.
                let reset = (index + 1) as f64 * seconds - now;
                (accepted, u64::from(n - self.window_count), reset)
            }
        };
        let standing = Standing {
            limit,
            window,
            remaining,
            reset: reset.max(0.0),
        };
        if accepted {
            Ok(standing)
        } else {
            Err(Refused {
                wait: standing.reset,
                standing,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_shapes() {
        assert_eq!(
            "bucket:20:1".parse(),
            Ok(Shape::Bucket {
                rate: 20.0,
                burst: 1
            })
        );
        assert_eq!(
            "sliding:60:3".parse(),
            Ok(Shape::Sliding {
                n: 60,
                seconds: 3.0
            })
        );
        assert_eq!(
            "window:20:1.5".parse(),
            Ok(Shape::Window {
                n: 20,
                seconds: 1.5
            })
        );
        for bad in [
            "bucket:20",
            "cone:1:1",
            "bucket:0:1",
            "sliding:1.5:1",
            "window:5:-1",
        ] {
            assert!(bad.parse::<Shape>().is_err(), "{bad}");
        }
        let shape: Shape = "sliding:60:3".parse().unwrap();
        assert_eq!(shape.to_string().parse(), Ok(shape));
    }

    #[test]
    fn strict_bucket_spaces_requests() {
        let mut limit = Limiter::new(Shape::Bucket {
            rate: 20.0,
            burst: 1,
        });
        assert!(limit.admit(0.0).is_ok());
        let refused = limit.admit(0.03).unwrap_err();
        assert!((refused.wait - 0.02).abs() < 1e-9);
        assert!(limit.admit(0.05).is_ok());
        assert!(limit.admit(0.1).is_ok());
    }

    #[test]
    fn sliding_log_waits_for_the_oldest() {
        let mut limit = Limiter::new(Shape::Sliding { n: 3, seconds: 1.0 });
        for t in [0.0, 0.1, 0.2] {
            assert!(limit.admit(t).is_ok());
        }
        let refused = limit.admit(0.5).unwrap_err();
        assert!((refused.wait - 0.5).abs() < 1e-9);
        assert_eq!(refused.standing.remaining, 0);
        assert!(limit.admit(1.0).is_ok());
        assert!(limit.admit(1.05).is_err());
    }

    #[test]
    fn fixed_window_resets_on_the_boundary() {
        let mut limit = Limiter::new(Shape::Window { n: 2, seconds: 1.0 });
        assert!(limit.admit(0.9).is_ok());
        assert_eq!(limit.admit(0.95).unwrap().remaining, 0);
        assert!((limit.admit(0.99).unwrap_err().wait - 0.01).abs() < 1e-9);
        assert!(limit.admit(1.0).is_ok());
    }

    #[test]
    fn ideal_times() {
        let bucket = Shape::Bucket {
            rate: 20.0,
            burst: 1,
        };
        assert!((bucket.ideal_seconds(201) - 10.0).abs() < 1e-9);
        let window = Shape::Window {
            n: 20,
            seconds: 1.0,
        };
        assert!((window.ideal_seconds(200) - 9.0).abs() < 1e-9);
        assert!((window.ideal_seconds(201) - 10.0).abs() < 1e-9);
    }

    #[test]
    fn header_styles() {
        let standing = Standing {
            limit: 20,
            window: 1.0,
            remaining: 7,
            reset: 0.3,
        };
        assert_eq!(
            standing.headers(HeaderStyle::Ietf, 0.0),
            vec![
                ("ratelimit-limit", "20".to_string()),
                ("ratelimit-remaining", "7".to_string()),
                ("ratelimit-reset", "1".to_string()),
                ("ratelimit-policy", "20;w=1".to_string()),
            ]
        );
        assert_eq!(
            standing.headers(HeaderStyle::XEpoch, 1_700_000_000.5)[2],
            ("x-ratelimit-reset", "1700000001".to_string())
        );
    }
}
