//! Pacing: every HTTP attempt, retries included, waits here for a permit.
//!
//! When the next request may start is the [`Controller`]'s decision, a pure
//! state machine: the asked `--rate`/`--burst` until the server pushes back,
//! then the limit it learns from the server's rate-limit headers, or from
//! its 429s and the successes around them (see `controller.rs`).
//!
//! Permits are handed out in arrival order by one pacer thread that sleeps on a
//! condition variable until the next permit is due. Nothing is reserved ahead:
//! a change of pace or a pause applies to the very next permit, and a waiter
//! that gives up (the run stopping) costs nothing. The thread's sleeps are
//! precise to tens of microseconds, where async timers round to whole
//! milliseconds — at 50/s that difference alone would cost a few percent of
//! the rate.

pub mod controller;
mod mirror;
pub mod quota;

pub use controller::{Controller, Learned, Permit, Source};
pub use quota::Quota;

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

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
        if count.is_nan() {
            return Err(format!(
                "`{s}` is not a rate: write N/s, N/m, N/h, N (per second) or unlimited"
            ));
        }
        if count <= 0.0 {
            return Err(format!("`{s}`: the rate must be more than 0"));
        }
        // 1e400 parses as infinity: too large, not zero.
        let per_second = count / seconds;
        if per_second < 1.0 / 86_400.0 {
            return Err(format!(
                "`{s}`: the rate must be at least one request a day"
            ));
        }
        if per_second > 1_000_000.0 {
            return Err(format!(
                "`{s}` is too large: the most is 1000000/s; use `unlimited` for no limit"
            ));
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

/// Shared by every worker of a run.
pub struct Pacer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    /// The controller's decisions are made in seconds since this instant.
    origin: Instant,
    rate_changes: AtomicU64,
}

struct State {
    queue: VecDeque<oneshot::Sender<Permit>>,
    controller: Controller,
    shutdown: bool,
}

impl Pacer {
    pub fn new(rate: Rate, burst: u32) -> Pacer {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                controller: Controller::new(rate.per_second(), burst),
                shutdown: false,
            }),
            wake: Condvar::new(),
            origin: Instant::now(),
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
    pub async fn acquire(&self, stop: &CancellationToken) -> Result<Permit, Stopped> {
        let receiver = {
            let mut state = self.shared.lock();
            let now = self.shared.now();
            if state.queue.is_empty() && state.controller.ready_at() <= now {
                return Ok(state.controller.grant(now));
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

    /// The request of `permit` was answered with anything but a 429: it
    /// passed the server's limit. `quota` is what the answer said of it.
    pub fn on_success(&self, permit: Permit, quota: Option<Quota>) {
        let mut state = self.shared.lock();
        let now = self.shared.now();
        let before = state.controller.pace();
        state.controller.on_success(permit, now, quota);
        self.after_change(state, before);
    }

    /// The request of `permit` got no answer (a transport error, or given
    /// up in flight), or one that says nothing of the limit (a 401): it is
    /// no longer on the way.
    pub fn on_lost(&self, permit: Permit) {
        let mut state = self.shared.lock();
        let before = state.controller.pace();
        state.controller.on_lost(permit);
        // (A waiter may have waited for that answer.)
        self.after_change(state, before);
    }

    /// The request of `permit` was answered 429. Returns the least time
    /// before that request may be sent again (its `Retry-After`); the
    /// controller slows and, if needed, pauses the whole run.
    pub fn on_throttled(
        &self,
        permit: Permit,
        retry_after: Option<Duration>,
        quota: Option<Quota>,
    ) -> Duration {
        let mut state = self.shared.lock();
        let now = self.shared.now();
        let before = state.controller.pace();
        let wait =
            state
                .controller
                .on_throttled(permit, now, retry_after.map(|d| d.as_secs_f64()), quota);
        self.after_change(state, before);
        Duration::from_secs_f64(wait.clamp(0.0, 86_400.0))
    }

    /// Logs a change of pace, and wakes the pacer thread to look again when
    /// a request waits for it. With nobody waiting the thread sleeps until
    /// the next `acquire` queues one, and the controller is asked afresh
    /// then: a wake per answer (a futex call, and the thread scheduled only
    /// to find the queue empty) was two system calls a row unlimited.
    fn after_change(&self, state: MutexGuard<'_, State>, before: Option<f64>) {
        let after = state.controller.pace();
        let learned = state.controller.learned();
        let waiting = !state.queue.is_empty();
        drop(state);
        if after != before {
            self.shared.rate_changes.fetch_add(1, Ordering::Relaxed);
            if let Some(pace) = after {
                let why = match learned.map(|l| l.source) {
                    Some(Source::Headers) => "the server's rate-limit headers",
                    _ => "HTTP 429",
                };
                if before.is_none_or(|b| pace < b) {
                    tracing::info!("{why}: lowering the request rate to {}", format_rate(pace));
                } else {
                    tracing::info!(
                        "no 429 for a while: raising the request rate to {}",
                        format_rate(pace)
                    );
                }
            }
        }
        if waiting {
            self.shared.wake.notify_one();
        }
    }

    /// The request rate now in force, per second; `None` when unlimited.
    pub fn current_rate(&self) -> Option<f64> {
        self.shared.lock().controller.pace()
    }

    /// When the pause the whole run is in ends (after a 429), if it is in one.
    pub fn paused_until(&self) -> Option<Instant> {
        let until = self.shared.lock().controller.pause_until();
        let now = self.shared.now();
        // The time left, bounded: `until` may be far off, never infinite.
        (until > now).then(|| Instant::now() + Duration::from_secs_f64((until - now).min(86_400.0)))
    }

    /// What the run has learned of the server's limit, once anything is.
    pub fn learned(&self) -> Option<Learned> {
        self.shared.lock().controller.learned()
    }

    /// How many times the pace changed.
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
        // A panic elsewhere cannot leave the pacing state half-changed: the
        // controller's updates do not panic.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now(&self) -> f64 {
        self.origin.elapsed().as_secs_f64()
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
            }
            if state.queue.is_empty() {
                state = self.wake.wait(state).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            let now = self.now();
            let ready = state.controller.ready_at();
            if ready > now {
                let wait = Duration::from_secs_f64((ready - now).min(86_400.0));
                state = self
                    .wake
                    .wait_timeout(state, wait)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
                continue;
            }
            if let Some(waiter) = state.queue.pop_front() {
                let permit = state.controller.grant(now);
                if let Err(unused) = waiter.send(permit) {
                    // The waiter gave up between the check and the grant:
                    // the permit was counted, which only errs on the slow
                    // side; nothing is on the way for it.
                    state.controller.on_lost(unused);
                }
            }
        }
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
        for huge in ["1e400", "1e400/s", "inf", "2000000"] {
            let e = huge.parse::<Rate>().unwrap_err();
            assert!(e.contains("too large") && !e.contains("more than 0"), "{e}");
        }
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
        let mut permits = Vec::new();
        for _ in 0..5 {
            permits.push(pacer.acquire(&stop).await.unwrap());
        }
        // The burst goes at once; each later permit waits one period. The
        // permit times are the pacer's own decisions, whatever the host.
        let since_first: Vec<f64> = permits.iter().map(|p| p.at - permits[0].at).collect();
        assert!(since_first[3] >= 0.05 - 1e-9, "{since_first:?}");
        assert!(since_first[4] >= 0.1 - 1e-9, "{since_first:?}");
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
    async fn a_throttle_slows_and_spaces_the_next_permits() {
        let pacer = Pacer::new(Rate::PerSecond(100.0), 1);
        let stop = CancellationToken::new();
        let first = pacer.acquire(&stop).await.unwrap();
        let wait = pacer.on_throttled(first, Some(Duration::from_millis(100)), None);
        assert_eq!(wait, Duration::from_millis(100));
        assert_eq!(pacer.current_rate(), Some(50.0));
        let a = pacer.acquire(&stop).await.unwrap();
        let b = pacer.acquire(&stop).await.unwrap();
        // The whole run paused, then went on at the new pace: not together.
        assert!(a.at - first.at >= 0.04 - 1e-6, "{a:?} after {first:?}");
        assert!(b.at - a.at >= 0.02 - 1e-6, "{b:?} after {a:?}");
        assert_eq!(pacer.rate_changes(), 1);
        assert!(pacer.learned().is_some());
    }

    /// Found in review: a request reported lost did not wake the pacer
    /// thread, so a row waiting for that answer slept until the two-second
    /// deadline for a lost answer.
    #[tokio::test]
    async fn a_lost_request_wakes_those_waiting_for_its_answer() {
        let pacer = Arc::new(Pacer::new(Rate::PerSecond(100.0), 1));
        let stop = CancellationToken::new();
        let first = pacer.acquire(&stop).await.unwrap();
        pacer.on_throttled(first, None, None);
        // The probe after the pause: the others wait for its answer.
        let probe = pacer.acquire(&stop).await.unwrap();
        let waiter = {
            let (pacer, stop) = (Arc::clone(&pacer), stop.clone());
            tokio::spawn(async move { pacer.acquire(&stop).await })
        };
        tokio::task::yield_now().await;
        pacer.on_lost(probe);
        let next = waiter.await.unwrap().unwrap();
        // (The deadline is two seconds; the wake comes at once, and a busy
        // host may delay it a little.)
        assert!(next.at - probe.at < 1.5, "{next:?} after {probe:?}");
    }

    #[tokio::test]
    async fn a_long_pause_is_seen_until_it_ends() {
        let pacer = Pacer::new(Rate::PerSecond(100.0), 1);
        let stop = CancellationToken::new();
        assert_eq!(pacer.paused_until(), None);
        let first = pacer.acquire(&stop).await.unwrap();
        let asked = Duration::from_secs(600);
        pacer.on_throttled(first, Some(asked), None);
        let until = pacer.paused_until().expect("paused");
        let left = until.saturating_duration_since(Instant::now());
        assert!(left > Duration::from_secs(590) && left <= asked, "{left:?}");
    }
}
