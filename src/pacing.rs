//! Pacing: every HTTP attempt, retries included, waits here for a permit.
//!
//! Three things decide when the next request may start:
//! - the `--rate`/`--burst` quota, a `governor` GCRA limiter: over any span of
//!   T seconds at most `burst + rate × T` requests start;
//! - a shared "not before" instant set by a 429: the whole run pauses until the
//!   server's `Retry-After` has passed, not just the row that got it;
//! - an adaptive rate below `--rate`: each 429 halves it, and a second without
//!   one raises it by a twentieth of the ceiling (AIMD, as the AWS SDKs' adaptive
//!   retry mode), never above `--rate`.
//!
//! Permits are handed out in arrival order by one pacer thread that sleeps on a
//! condition variable until the next permit is due. Nothing is reserved ahead:
//! a rate change or a pause applies to the very next permit, and a waiter that
//! gives up (the run stopping) costs nothing. The thread's sleeps are precise to
//! tens of microseconds, where async timers round to whole milliseconds — at
//! 50/s that difference alone would cost a few percent of the rate.

use std::collections::VecDeque;
use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// `--rate`: requests started per second, or no limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    Unlimited,
    PerSecond(f64),
}

impl Rate {
    pub fn per_second(self) -> Option<f64> {
        match self {
            Rate::Unlimited => None,
            Rate::PerSecond(r) => Some(r),
        }
    }

    /// The same rate split between `n` processes.
    pub fn divided(self, n: u64) -> Rate {
        match self {
            Rate::Unlimited => Rate::Unlimited,
            Rate::PerSecond(r) => Rate::PerSecond(r / n.max(1) as f64),
        }
    }
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(s: &str) -> Result<Rate, String> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("unlimited") {
            return Ok(Rate::Unlimited);
        }
        let (count, per) = match t.split_once('/') {
            Some((n, unit)) => (n.trim(), unit.trim()),
            None => (t, "s"),
        };
        let seconds = match per {
            "s" | "sec" | "second" => 1.0,
            "m" | "min" | "minute" => 60.0,
            "h" | "hour" => 3600.0,
            _ => {
                return Err(format!(
                    "`{s}`: the period must be s, m or h (as in 5/s, 100/m, 2000/h)"
                ));
            }
        };
        let count: f64 = count.parse().map_err(|_| {
            format!("`{s}` is not a rate: write N/s, N/m, N/h, N (per second) or unlimited")
        })?;
        if !(count.is_finite() && count > 0.0) {
            return Err(format!("`{s}`: the rate must be more than 0"));
        }
        let per_second = count / seconds;
        if per_second < 1.0 / 86_400.0 {
            return Err(format!(
                "`{s}`: the rate must be at least one request a day"
            ));
        }
        if per_second > 1_000_000.0 {
            return Err(format!("`{s}`: more than 1000000/s; use `unlimited`"));
        }
        Ok(Rate::PerSecond(per_second))
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rate::Unlimited => f.write_str("unlimited"),
            Rate::PerSecond(r) => f.write_str(&format_rate(*r)),
        }
    }
}

/// A per-second rate as people write it: `50/s`, `2.5/s`, `30/m`.
pub fn format_rate(per_second: f64) -> String {
    if per_second >= 1.0 {
        let rounded = (per_second * 10.0).round() / 10.0;
        format!("{rounded}/s")
    } else {
        let per_minute = (per_second * 600.0).round() / 10.0;
        format!("{per_minute}/m")
    }
}

/// Returned when the run stops while a request waits for its permit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped;

/// How long the adaptive rate stays put after a change before rising again.
const RAISE_EVERY: Duration = Duration::from_secs(1);
/// Each 429 multiplies the adaptive rate by this.
const DECREASE_FACTOR: f64 = 0.5;
/// Each raise adds this share of the ceiling.
const RAISE_SHARE: f64 = 0.05;

/// Shared by every worker of a run.
pub struct Pacer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    /// True while the adaptive rate is below the ceiling: only then does a
    /// success need the lock.
    adapted: AtomicBool,
    rate_changes: AtomicU64,
}

struct State {
    queue: VecDeque<oneshot::Sender<()>>,
    not_before: Option<Instant>,
    base: Option<DefaultDirectRateLimiter>,
    /// The configured rate; `None` for unlimited.
    ceiling: Option<f64>,
    adaptive: Option<Adaptive>,
    /// The queue's head already holds a permit of the adaptive limiter.
    head_has_adaptive: bool,
    clock: DefaultClock,
    window: SendWindow,
    shutdown: bool,
}

struct Adaptive {
    rate: f64,
    /// The rate the first decrease started from: raises add a share of it.
    reference: f64,
    limiter: DefaultDirectRateLimiter,
    changed_at: Instant,
}

/// Counts permits per second, to know the rate an unlimited run had reached
/// when its first 429 came.
struct SendWindow {
    start: Instant,
    count: u64,
    previous: u64,
}

impl SendWindow {
    fn record(&mut self, now: Instant) {
        if now.duration_since(self.start) >= Duration::from_secs(1) {
            self.previous = self.count;
            self.count = 0;
            self.start = now;
        }
        self.count += 1;
    }

    fn observed(&self) -> f64 {
        self.previous.max(self.count).max(1) as f64
    }
}

fn limiter(per_second: f64, burst: u32) -> DefaultDirectRateLimiter {
    let period = Duration::from_secs_f64(1.0 / per_second).max(Duration::from_nanos(1));
    let quota = Quota::with_period(period)
        .expect("a positive period")
        .allow_burst(NonZeroU32::new(burst.max(1)).expect("at least 1"));
    RateLimiter::direct(quota)
}

impl Pacer {
    pub fn new(rate: Rate, burst: u32) -> Pacer {
        let ceiling = rate.per_second();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                not_before: None,
                base: ceiling.map(|r| limiter(r, burst)),
                ceiling,
                adaptive: None,
                head_has_adaptive: false,
                clock: DefaultClock::default(),
                window: SendWindow {
                    start: Instant::now(),
                    count: 0,
                    previous: 0,
                },
                shutdown: false,
            }),
            wake: Condvar::new(),
            adapted: AtomicBool::new(false),
            rate_changes: AtomicU64::new(0),
        });
        let thread = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("pacer".into())
                .spawn(move || shared.hand_out_permits())
                .expect("cannot start the pacer thread")
        };
        Pacer {
            shared,
            thread: Some(thread),
        }
    }

    /// Waits for a permit to start one HTTP attempt. `Err(Stopped)` when `stop`
    /// is cancelled first; the permit is then not used.
    pub async fn acquire(&self, stop: &CancellationToken) -> Result<(), Stopped> {
        let receiver = {
            let mut state = self.shared.lock();
            if state.try_grant_now(Instant::now()) {
                return Ok(());
            }
            let (sender, receiver) = oneshot::channel();
            state.queue.push_back(sender);
            receiver
        };
        self.shared.wake.notify_one();
        tokio::select! {
            biased;
            granted = receiver => granted.map_err(|_| Stopped),
            _ = stop.cancelled() => Err(Stopped),
        }
    }

    /// Pauses the whole run until `until` (a 429's `Retry-After`).
    pub fn pause_until(&self, until: Instant) {
        let mut state = self.shared.lock();
        if state.not_before.is_none_or(|t| t < until) {
            state.not_before = Some(until);
        }
        drop(state);
        self.shared.wake.notify_one();
    }

    /// A 429 came back for a request sent at `sent_at`: lower the rate, unless
    /// the rate was already lowered after that request left.
    pub fn on_throttled(&self, sent_at: Instant) {
        let mut state = self.shared.lock();
        let now = Instant::now();
        if let Some(a) = &state.adaptive
            && sent_at < a.changed_at
        {
            return;
        }
        let (current, reference) = match (&state.adaptive, state.ceiling) {
            (Some(a), _) => (a.rate, a.reference),
            (None, Some(ceiling)) => (ceiling, ceiling),
            (None, None) => {
                let observed = state.window.observed();
                (observed, observed)
            }
        };
        let floor = (reference / 64.0).max(1.0 / 60.0).min(current);
        let lowered = (current * DECREASE_FACTOR).max(floor);
        tracing::info!(
            "HTTP 429: lowering the request rate to {}",
            format_rate(lowered)
        );
        state.adaptive = Some(Adaptive {
            rate: lowered,
            reference,
            limiter: limiter(lowered, 1),
            changed_at: now,
        });
        state.head_has_adaptive = false;
        self.shared.adapted.store(true, Ordering::Release);
        self.shared.rate_changes.fetch_add(1, Ordering::Relaxed);
        drop(state);
        self.shared.wake.notify_one();
    }

    /// A request succeeded: after a calm second, raise a lowered rate a step.
    pub fn on_success(&self) {
        if !self.shared.adapted.load(Ordering::Acquire) {
            return;
        }
        let mut state = self.shared.lock();
        let now = Instant::now();
        let Some(a) = &state.adaptive else { return };
        if now.duration_since(a.changed_at) < RAISE_EVERY {
            return;
        }
        let raised = a.rate + (a.reference * RAISE_SHARE).max(0.05);
        let top = state.ceiling.unwrap_or(a.reference * 2.0);
        if raised >= top {
            tracing::info!(
                "no 429 for a while: request rate back to {}",
                state
                    .ceiling
                    .map_or_else(|| "unlimited".to_string(), format_rate)
            );
            state.adaptive = None;
            self.shared.adapted.store(false, Ordering::Release);
        } else {
            tracing::info!(
                "no 429 for a second: raising the request rate to {}",
                format_rate(raised)
            );
            let reference = a.reference;
            state.adaptive = Some(Adaptive {
                rate: raised,
                reference,
                limiter: limiter(raised, 1),
                changed_at: now,
            });
        }
        state.head_has_adaptive = false;
        self.shared.rate_changes.fetch_add(1, Ordering::Relaxed);
        drop(state);
        self.shared.wake.notify_one();
    }

    /// The request rate now in force, per second; `None` when unlimited.
    pub fn current_rate(&self) -> Option<f64> {
        let state = self.shared.lock();
        state.adaptive.as_ref().map(|a| a.rate).or(state.ceiling)
    }

    /// How many times the adaptive rate changed.
    pub fn rate_changes(&self) -> u64 {
        self.shared.rate_changes.load(Ordering::Relaxed)
    }
}

impl Drop for Pacer {
    fn drop(&mut self) {
        self.shared.lock().shutdown = true;
        self.shared.wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere cannot leave the pacing state half-changed: every
        // update is a single assignment.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The pacer thread: grants permits in arrival order as they come due.
    fn hand_out_permits(&self) {
        let mut state = self.lock();
        loop {
            if state.shutdown {
                return;
            }
            while state.queue.front().is_some_and(|w| w.is_closed()) {
                state.queue.pop_front();
                state.head_has_adaptive = false;
            }
            if state.queue.is_empty() {
                state = self.wake.wait(state).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            match state.next_permit_wait(Instant::now()) {
                Some(wait) => {
                    state = self
                        .wake
                        .wait_timeout(state, wait)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                None => {
                    if let Some(waiter) = state.queue.pop_front() {
                        state.head_has_adaptive = false;
                        state.window.record(Instant::now());
                        let _ = waiter.send(());
                    }
                }
            }
        }
    }
}

impl State {
    /// Grants a permit at once when nobody is queued and every limit allows it.
    fn try_grant_now(&mut self, now: Instant) -> bool {
        if !self.queue.is_empty()
            || self.adaptive.is_some()
            || self.not_before.is_some_and(|t| t > now)
        {
            return false;
        }
        if let Some(base) = &self.base
            && base.check().is_err()
        {
            return false;
        }
        self.window.record(now);
        true
    }

    /// `None` when the head of the queue may go now (its permits taken);
    /// otherwise how long to wait before looking again.
    fn next_permit_wait(&mut self, now: Instant) -> Option<Duration> {
        if let Some(t) = self.not_before
            && t > now
        {
            return Some(t - now);
        }
        if !self.head_has_adaptive
            && let Some(a) = &self.adaptive
        {
            if let Err(not_until) = a.limiter.check() {
                return Some(not_until.wait_time_from(self.clock.now()));
            }
            self.head_has_adaptive = true;
        }
        if let Some(base) = &self.base
            && let Err(not_until) = base.check()
        {
            return Some(not_until.wait_time_from(self.clock.now()));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rates() {
        assert_eq!("5/s".parse(), Ok(Rate::PerSecond(5.0)));
        assert_eq!("120/m".parse(), Ok(Rate::PerSecond(2.0)));
        assert_eq!("3600/h".parse(), Ok(Rate::PerSecond(1.0)));
        assert_eq!("7".parse(), Ok(Rate::PerSecond(7.0)));
        assert_eq!("0.5/s".parse(), Ok(Rate::PerSecond(0.5)));
        assert_eq!("Unlimited".parse(), Ok(Rate::Unlimited));
        assert!("0/s".parse::<Rate>().is_err());
        assert!("-1".parse::<Rate>().is_err());
        assert!("5/d".parse::<Rate>().is_err());
        assert!("fast".parse::<Rate>().is_err());
        assert!("NaN".parse::<Rate>().is_err());
        assert!("1e-300/s".parse::<Rate>().is_err());
        assert!("1e-12/s".parse::<Rate>().is_err());
        assert!("1e9/s".parse::<Rate>().is_err());
    }

    #[test]
    fn formats_rates() {
        assert_eq!(format_rate(50.0), "50/s");
        assert_eq!(format_rate(12.5), "12.5/s");
        assert_eq!(format_rate(0.5), "30/m");
        assert_eq!(Rate::PerSecond(100.0).divided(4).to_string(), "25/s");
    }

    #[tokio::test]
    async fn burst_then_paced() {
        let pacer = Pacer::new(Rate::PerSecond(20.0), 3);
        let stop = CancellationToken::new();
        let start = Instant::now();
        for _ in 0..3 {
            pacer.acquire(&stop).await.unwrap();
        }
        // The burst goes at once; the next permit waits one period.
        pacer.acquire(&stop).await.unwrap();
        assert!(start.elapsed() >= Duration::from_millis(40));
    }

    #[tokio::test]
    async fn stop_releases_waiters() {
        let pacer = Pacer::new(Rate::PerSecond(0.1), 1);
        let stop = CancellationToken::new();
        pacer.acquire(&stop).await.unwrap();
        stop.cancel();
        assert_eq!(pacer.acquire(&stop).await, Err(Stopped));
    }

    #[tokio::test]
    async fn pause_holds_every_permit() {
        let pacer = Pacer::new(Rate::Unlimited, 1);
        let stop = CancellationToken::new();
        let start = Instant::now();
        pacer.pause_until(start + Duration::from_millis(150));
        pacer.acquire(&stop).await.unwrap();
        assert!(start.elapsed() >= Duration::from_millis(150));
    }

    #[tokio::test]
    async fn throttling_halves_and_ignores_stale_signals() {
        let pacer = Pacer::new(Rate::PerSecond(100.0), 1);
        let before = Instant::now();
        pacer.on_throttled(Instant::now());
        assert_eq!(pacer.current_rate(), Some(50.0));
        // A 429 for a request sent before the decrease is the same signal.
        pacer.on_throttled(before);
        assert_eq!(pacer.current_rate(), Some(50.0));
        pacer.on_throttled(Instant::now());
        assert_eq!(pacer.current_rate(), Some(25.0));
        assert_eq!(pacer.rate_changes(), 2);
        for _ in 0..20 {
            pacer.on_throttled(Instant::now());
        }
        assert!(pacer.current_rate().unwrap() >= 100.0 / 64.0);
    }
}
