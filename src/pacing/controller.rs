//! The pacing controller: when the next request may start, and what the
//! server's answers teach about its limit. A pure state machine — time comes
//! in as seconds since the run's origin, nothing here sleeps, spawns or
//! sends — so its tests run hundreds of seconds of pacing against models of
//! real limits ([`crate::sim::Limiter`]) on a virtual clock in milliseconds.
//! The pacer thread (`super::Pacer`) drives it in real time.
//!
//! How it paces:
//! - Until the server pushes back, at the asked `--rate` with its `--burst`
//!   (a GCRA: over any span T at most `burst + rate × T` permits).
//! - When answers carry the server's own figures (`RateLimit-*`,
//!   `X-RateLimit-*`), at just under the quota they state, after spending
//!   the first answer's `remaining` at the asked rate: no 429 is needed.
//! - Otherwise it learns from 429s and successes: each 429 bounds the limit
//!   from above (the pace that drew it), each stretch of calm sending bounds
//!   it from below (the pace that held), and the pace moves by bisection
//!   between the two until they are within a few percent; then it stays
//!   just under, probing upward rarely.
//! - After the first 429 every permit is spaced (no burst), so a pause — a
//!   `Retry-After`, or the gap after a 429 — never releases the requests that
//!   waited together, and a change of pace never makes a permit due at once.

use std::collections::VecDeque;

use super::quota::Quota;

/// How close the bounds must be (as a share of the lower) to stop bisecting.
const CONVERGED: f64 = 0.04;
/// The pace stays this far under the lowest pace that drew a 429.
const UNDER: f64 = 0.97;
/// Paced under a stated quota by this share.
const UNDER_QUOTA: f64 = 0.97;
/// Seconds of calm sending that prove a pace holds.
const CALM: f64 = 1.0;
/// Seconds of calm sending, once converged, before probing upward.
const PROBE_AFTER: f64 = 20.0;
/// Each upward probe lifts the upper bound by this share.
const PROBE_STEP: f64 = 0.02;
/// Without a lower bound, each 429 cuts the pace by this factor.
const CUT: f64 = 0.5;
/// The lowest pace: one request a minute.
const FLOOR: f64 = 1.0 / 60.0;

/// Where the learned limit comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The 429s and the successes around them.
    Throttling,
    /// The server's rate-limit header fields.
    Headers,
}

/// What the run has learned of the server's limit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Learned {
    /// Requests per second the server sustains, as best known.
    pub limit: f64,
    /// The pace in force.
    pub pace: f64,
    pub source: Source,
    /// 429s the estimate was learned from.
    pub throttles: u64,
}

impl Learned {
    /// `server limit ≈ 19.7/s (learned from 6 × 429)`.
    pub fn describe(&self) -> String {
        let how = match self.source {
            Source::Headers => "from its rate-limit headers".to_string(),
            Source::Throttling => format!("learned from {} × 429", self.throttles),
        };
        format!("server limit ≈ {} ({how})", super::format_rate(self.limit))
    }

    /// The `--rate` to ask for next time, when the asked one was above the
    /// limit: the pace that held, rounded down.
    pub fn suggested_rate(&self, asked: Option<f64>) -> Option<String> {
        if asked.is_some_and(|a| a <= self.limit) {
            return None;
        }
        let pace = self.pace.min(self.limit);
        Some(if pace >= 10.0 {
            format!("{}/s", pace.floor())
        } else if pace >= 1.0 {
            format!("{}/s", (pace * 10.0).floor() / 10.0)
        } else {
            format!("{}/m", (pace * 60.0).floor().max(1.0))
        })
    }
}

/// A permit handed out: when, and its place in the sequence.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Permit {
    pub at: f64,
    pub seq: u64,
}

#[derive(Debug)]
pub struct Controller {
    /// The asked rate; `None` for unlimited.
    ceiling: Option<f64>,
    /// The pace now; `None` while unlimited and nothing is learned.
    pace: Option<f64>,
    /// GCRA tolerance, seconds: the asked burst, until the first 429.
    tolerance: f64,
    /// GCRA theoretical arrival time of the next permit.
    tat: f64,
    last_grant: Option<f64>,
    next_seq: u64,
    pause_until: f64,
    /// The limit lies in `lower ..= upper` (per second).
    lower: f64,
    upper: f64,
    /// Set at each decrease: a 429 for a request sent before it is the same
    /// signal again.
    decreased_at: f64,
    /// Seconds of sending without a 429 at the current pace (pauses and idle
    /// time left out).
    calm: f64,
    /// Every 429, and those that taught something.
    throttles: u64,
    learning_throttles: u64,
    /// After a pause cut shorter than a `Retry-After`: the permit sequence
    /// number from which answers tell whether the cut was safe.
    cut_pause_from: Option<u64>,
    /// A cut pause drew another 429: honour `Retry-After` in full from now on.
    trust_retry_after: bool,
    /// Permit times over the last second, for an unlimited run's first 429.
    recent: VecDeque<f64>,
    /// From header fields.
    stated: Option<Stated>,
    /// Longest `reset` seen, standing in for a window no policy states.
    longest_reset: f64,
}

#[derive(Clone, Copy, Debug)]
struct Stated {
    rate: f64,
    /// Permits up to this sequence number may go at the asked rate (the
    /// first answer's `remaining`).
    burst_until_seq: u64,
    /// After that burst, none before this time (that answer's reset).
    after_burst: f64,
}

impl Controller {
    /// `ceiling`: the asked rate (`None` for unlimited); `burst`: permits
    /// that may go back to back at the start.
    pub fn new(ceiling: Option<f64>, burst: u32) -> Controller {
        let tolerance = match ceiling {
            Some(rate) => f64::from(burst.max(1) - 1) / rate,
            None => 0.0,
        };
        Controller {
            ceiling,
            pace: ceiling,
            tolerance,
            tat: 0.0,
            last_grant: None,
            next_seq: 0,
            pause_until: 0.0,
            lower: 0.0,
            upper: f64::INFINITY,
            decreased_at: f64::NEG_INFINITY,
            calm: 0.0,
            throttles: 0,
            learning_throttles: 0,
            cut_pause_from: None,
            trust_retry_after: false,
            recent: VecDeque::new(),
            stated: None,
            longest_reset: 0.0,
        }
    }

    /// The earliest time the next permit may be granted.
    pub fn ready_at(&self) -> f64 {
        let paced = match self.pace {
            Some(_) => self.tat - self.tolerance,
            None => f64::NEG_INFINITY,
        };
        let mut ready = paced.max(self.pause_until);
        if let Some(stated) = self.stated {
            if self.next_seq <= stated.burst_until_seq {
                // Spending the stated remaining at the asked rate.
                ready = self.pause_until.max(self.ceiling_ready());
            } else {
                ready = ready.max(stated.after_burst);
            }
        }
        ready
    }

    fn ceiling_ready(&self) -> f64 {
        match (self.ceiling, self.last_grant) {
            (Some(rate), Some(last)) => last + 1.0 / rate,
            _ => f64::NEG_INFINITY,
        }
    }

    /// Grants a permit at `now` (not before [`Controller::ready_at`]).
    pub fn grant(&mut self, now: f64) -> Permit {
        if let (Some(pace), Some(last)) = (self.pace, self.last_grant) {
            // Only time spent sending counts as calm: a gap longer than a
            // couple of intervals was a pause or an idle spell.
            let gap = (now - last).max(0.0);
            self.calm += gap.min(2.0 / pace);
        }
        let bursting = self
            .stated
            .is_some_and(|stated| self.next_seq <= stated.burst_until_seq);
        if let Some(pace) = self.pace {
            // A permit of the stated remaining is not paid back: the
            // server counted it in what it said was left.
            self.tat = self.tat.max(now) + if bursting { 0.0 } else { 1.0 / pace };
        }
        self.last_grant = Some(now);
        self.recent.push_back(now);
        while self.recent.front().is_some_and(|&t| t < now - 1.0) {
            self.recent.pop_front();
        }
        let permit = Permit {
            at: now,
            seq: self.next_seq,
        };
        self.next_seq += 1;
        self.raise_if_calm(now);
        permit
    }

    /// A success for `permit`, answered at `now`, with the server's figures
    /// if it gave any.
    pub fn on_success(&mut self, permit: Permit, now: f64, quota: Option<Quota>) {
        if let Some(from) = self.cut_pause_from
            && permit.seq >= from
        {
            // A request sent after a pause cut short went through.
            self.cut_pause_from = None;
        }
        if let Some(quota) = quota {
            self.on_quota(permit, now, quota);
        }
    }

    /// A 429 for `permit`, answered at `now`. Returns how long that request
    /// must wait before its next attempt (at least its `Retry-After`).
    pub fn on_throttled(
        &mut self,
        permit: Permit,
        now: f64,
        retry_after: Option<f64>,
        quota: Option<Quota>,
    ) -> f64 {
        self.throttles += 1;
        self.tolerance = 0.0;
        if let Some(quota) = quota {
            self.on_quota(permit, now, quota);
        }
        if let Some(from) = self.cut_pause_from.take()
            && permit.seq >= from
        {
            // Sent after a pause cut shorter than Retry-After, and refused:
            // this server means what its Retry-After says.
            self.trust_retry_after = true;
        }
        let row_wait = retry_after.unwrap_or(0.0);
        if permit.at < self.decreased_at {
            return row_wait;
        }
        self.learning_throttles += 1;
        let sent_pace = match self.pace {
            Some(pace) => pace,
            // Unlimited so far: the rate it reached is the first bound.
            None => (self.recent.len() as f64).max(1.0),
        };
        self.upper = self.upper.min(sent_pace);
        if self.lower >= self.upper {
            // The limit fell, or a lucky stretch overstated it.
            self.lower = self.upper * CUT;
        }
        let stated_rate = self.stated.map(|s| s.rate);
        let next = if let Some(rate) = stated_rate {
            rate.min(self.upper * UNDER)
        } else if self.lower > 0.0 {
            self.bisect()
        } else {
            sent_pace * CUT
        };
        self.set_pace(next.max(FLOOR), now);
        // The whole run waits a moment; a Retry-After in full once a pause
        // cut short has drawn another 429.
        let gap = 2.0 / next.max(FLOOR);
        let pause = match retry_after {
            Some(asked) if self.trust_retry_after => asked,
            Some(asked) => {
                let cut = asked.min(gap.max(0.25));
                if cut < asked {
                    self.cut_pause_from = Some(self.next_seq);
                }
                cut
            }
            None => gap,
        };
        self.pause_until = self.pause_until.max(now + pause);
        self.tat = self.tat.max(self.pause_until);
        row_wait
    }

    /// The midpoint of the bounds, kept under the upper one.
    fn bisect(&self) -> f64 {
        ((self.lower + self.upper) / 2.0)
            .min(self.upper * UNDER)
            .max(self.lower)
    }

    fn converged(&self) -> bool {
        self.upper.is_finite() && self.upper - self.lower <= self.lower * CONVERGED
    }

    /// After a calm stretch at the current pace: it holds, so it bounds the
    /// limit from below; move halfway to the upper bound, or, once the bounds
    /// meet, probe upward now and then.
    fn raise_if_calm(&mut self, now: f64) {
        let Some(pace) = self.pace else { return };
        if !self.upper.is_finite() || self.stated.is_some() {
            return;
        }
        let needed = if self.converged() { PROBE_AFTER } else { CALM };
        if self.calm < needed {
            return;
        }
        self.lower = self.lower.max(pace);
        if self.converged() {
            self.upper *= 1.0 + PROBE_STEP;
        }
        let next = self.bisect();
        if next > pace * 1.001 {
            let capped = self.ceiling.map_or(next, |c| next.min(c));
            self.set_pace(capped, now);
        } else {
            self.calm = 0.0;
        }
    }

    /// A new pace: the next permit is spaced from the last at the new pace,
    /// never due at once.
    fn set_pace(&mut self, pace: f64, now: f64) {
        let pace = self.ceiling.map_or(pace, |c| pace.min(c));
        if pace < self.pace.unwrap_or(f64::INFINITY) {
            self.decreased_at = now;
        }
        self.pace = Some(pace);
        self.calm = 0.0;
        self.tat = match self.last_grant {
            Some(last) => last + 1.0 / pace,
            None => now,
        };
    }

    fn on_quota(&mut self, permit: Permit, now: f64, quota: Quota) {
        if let Some(reset) = quota.reset {
            self.longest_reset = self.longest_reset.max(reset);
        }
        // Without a policy, the longest reset seen stands in for the window,
        // in whole seconds (an X-RateLimit-Reset as a Unix time is late by
        // up to a second).
        let window = quota
            .window
            .or((self.longest_reset > 0.0).then_some(self.longest_reset.floor().max(1.0)));
        let (Some(limit), Some(window)) = (quota.limit, window) else {
            return;
        };
        if limit == 0 {
            return;
        }
        let rate = (limit as f64 / window * UNDER_QUOTA).max(FLOOR);
        let rate = self.ceiling.map_or(rate, |c| rate.min(c));
        match &mut self.stated {
            Some(stated) => {
                if (stated.rate - rate).abs() > rate * 1e-6 {
                    stated.rate = rate;
                    self.set_pace(rate, now);
                }
            }
            None => {
                let remaining = quota.remaining.unwrap_or(0);
                self.stated = Some(Stated {
                    rate,
                    burst_until_seq: permit.seq + remaining,
                    after_burst: if remaining > 0 {
                        now + quota.reset.unwrap_or(0.0)
                    } else {
                        f64::NEG_INFINITY
                    },
                });
                self.tolerance = 0.0;
                self.pace = Some(rate);
                self.tat = self.last_grant.map_or(now, |last| last + 1.0 / rate);
            }
        }
    }

    /// The pace in force, per second; `None` while unlimited.
    pub fn pace(&self) -> Option<f64> {
        self.pace
    }

    /// Every 429 seen.
    pub fn throttles(&self) -> u64 {
        self.throttles
    }

    /// What is known of the server's limit, once anything is.
    pub fn learned(&self) -> Option<Learned> {
        let pace = self.pace?;
        if let Some(stated) = self.stated {
            return Some(Learned {
                limit: stated.rate / UNDER_QUOTA,
                pace,
                source: Source::Headers,
                throttles: self.learning_throttles,
            });
        }
        if !self.upper.is_finite() {
            return None;
        }
        let limit = if self.lower > 0.0 {
            (self.lower + self.upper) / 2.0
        } else {
            self.upper * CUT
        };
        Some(Learned {
            limit,
            pace,
            source: Source::Throttling,
            throttles: self.learning_throttles,
        })
    }
}

#[cfg(test)]
#[path = "shapes_tests.rs"]
mod shapes_tests;
