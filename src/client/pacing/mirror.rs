//! The run's own copy of a server's request log, for a limit that refuses in
//! spells: at most N requests in any S seconds (a sliding log, as Django
//! REST framework's throttle keeps), or N per fixed window of S seconds.
//!
//! Pacing such a limit at an even rate wastes what it allows: N requests may
//! go back to back as long as the one N before each is S seconds old. So once
//! the controller has seen the server refuse in spells, a request goes only
//! when the N-th latest request not refused is older than the span in force
//! — the server's own rule, kept on this side. Nothing more is sent than the
//! server would take, and nothing less.
//!
//! N is what the server took before it refused (the run of acceptances
//! since the previous refusal). S is learned between bounds: a refusal of a
//! request sent at t proves S > t − (the N-th latest before it); an
//! acceptance at t proves S ≤ t − (the N-th latest before it), for a log. Until
//! an acceptance bounds it, the span tried grows from the lower bound (to
//! what a `Retry-After` allows, when one is given); after, one request at a
//! time tries the midpoint of the bounds, so a wrong guess costs one 429.
//! A fixed window breaks the acceptance rule (a request just past the
//! boundary goes through, though the span since the N-th latest is short):
//! a refusal past a proven span says so, and from then the span only grows.

use std::collections::VecDeque;

/// The longest N kept: a limit taking more in one spell is paced evenly.
pub const MAX_N: usize = 4096;
/// Without an upper bound, each refusal tries a span this much longer.
const GROW: f64 = 1.5;
/// The bounds are close enough when they differ by this share.
const CLOSE: f64 = 0.08;
/// A guess below a proven span tries at most this much shorter: the proven
/// one is seldom far off, and each wrong guess costs a 429.
const SHORTER: f64 = 0.85;
/// A fixed window's span, once refused past a span it had taken, is set
/// this much past the refusal (and again, if refused again).
const WINDOW_STEP: f64 = 0.05;
/// Seconds without a refusal, once the bounds are close, before trying a
/// little shorter (the limit may have been raised).
const REPROBE_AFTER: f64 = 20.0;
/// A request tried at a guessed span and not answered in this long (a lost
/// connection) no longer holds the others back, seconds.
const PROBE_TIMEOUT: f64 = 2.0;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    InFlight,
    Accepted,
}

#[derive(Clone, Copy, Debug)]
struct Sent {
    seq: u64,
    at: f64,
    fate: Fate,
}

#[derive(Debug, Default)]
pub struct Mirror {
    /// Every request sent and not refused, oldest first (at most `MAX_N` + 1).
    log: VecDeque<Sent>,
    /// Requests the limit takes per span; 0 while not in force.
    n: usize,
    /// The span lies in `(lo, hi]`, seconds.
    lo: f64,
    hi: f64,
    /// The earliest time the `Retry-After`s since the latest acceptance
    /// say the server takes requests again.
    reopen_by: f64,
    /// ... and the latest it may be: a `Retry-After` of whole seconds is
    /// rounded up by less than one, and a refused request went before it.
    reopen_after: f64,
    /// A request sent at a guessed span, not yet answered: its sequence
    /// number and when it went.
    probe: Option<(u64, f64)>,
    /// The limit refused past a span it had taken: a fixed window, not a
    /// log. Acceptances no longer shorten the span.
    windowed: bool,
    /// The latest refusal: its sequence number (everything before it ended
    /// the run it closed) and when it was sent.
    last_refused: Option<(u64, f64)>,
    /// The run of acceptances that the latest refusal ended, as sequence
    /// numbers from ..= to (counted when needed: some of it may have been
    /// refused since, its answers coming after).
    last_run: Option<(u64, u64)>,
    /// When the bounds last changed or the latest refusal came.
    settled_at: f64,
    /// The latest answer at the limit was a refusal: the next request goes
    /// alone, so requests in flight do not draw the same refusal again.
    refused_last: bool,
    /// Recent round trips, for the margin that latency jitter needs.
    round_trips: VecDeque<f64>,
}

impl Mirror {
    pub fn new() -> Mirror {
        Mirror {
            hi: f64::INFINITY,
            reopen_by: f64::INFINITY,
            reopen_after: f64::NEG_INFINITY,
            ..Mirror::default()
        }
    }

    /// Whether it paces the run.
    pub fn in_force(&self) -> bool {
        self.n > 0
    }

    /// Takes over pacing: the run that the latest refusal ended is what the
    /// limit takes per span. Returns false when that says nothing (too few,
    /// or more than is kept).
    pub fn take_over(&mut self, now: f64) -> bool {
        let n = self.last_run_len();
        if !(2..=MAX_N).contains(&n) {
            return false;
        }
        self.n = n;
        self.settled_at = now;
        // The latest refusal bounds the span from below.
        if let Some((seq, at)) = self.last_refused
            && let Some(nth) = self.nth_before(seq)
        {
            self.lo = self.lo.max(at - nth);
        }
        true
    }

    /// Requests per second the limit allows, as far as known.
    pub fn limit(&self) -> Option<f64> {
        if !self.in_force() {
            return None;
        }
        let span = if self.hi.is_finite() {
            self.hi
        } else {
            self.trial()
        };
        Some(self.n as f64 / span)
    }

    /// The requests taken per span and the span, once an acceptance has
    /// bounded it.
    pub fn per_span(&self) -> Option<(u64, f64)> {
        (self.in_force() && self.hi.is_finite()).then_some((self.n as u64, self.hi))
    }

    /// Whether the span is known to within a few percent.
    pub fn settled(&self) -> bool {
        self.hi.is_finite() && self.hi - self.lo <= self.hi * CLOSE
    }

    /// Requests of the latest run of acceptances not refused since.
    fn last_run_len(&self) -> usize {
        self.last_run.map_or(0, |(from, to)| {
            self.log.partition_point(|s| s.seq <= to) - self.log.partition_point(|s| s.seq < from)
        })
    }

    fn sent_at(&self, seq: u64) -> Option<f64> {
        self.index_of(seq).map(|i| self.log[i].at)
    }

    fn index_of(&self, seq: u64) -> Option<usize> {
        // Sequence numbers rise along the log, with gaps where refusals
        // were taken out.
        self.log.binary_search_by(|s| s.seq.cmp(&seq)).ok()
    }

    /// When the N-th latest request not refused, sent before `seq`, went.
    fn nth_before(&self, seq: u64) -> Option<f64> {
        let end = self.log.partition_point(|s| s.seq < seq);
        (end >= self.n && self.n > 0).then(|| self.log[end - self.n].at)
    }

    /// The margin for latency jitter: a request's arrival may be late by as
    /// much as round trips vary.
    fn margin(&self) -> f64 {
        let (min, max) = self
            .round_trips
            .iter()
            .fold((f64::INFINITY, 0.0_f64), |(lo, hi), &t| {
                (lo.min(t), hi.max(t))
            });
        if min.is_finite() {
            (max - min) + 0.001
        } else {
            0.001
        }
    }

    /// The span to try while no acceptance bounds it: the next span people
    /// write in a limit's configuration (DRF's `N/s`, `N/m`, `N/h`, nginx's
    /// `r/s` and `r/m`, windows of 5, 10, 15, 30 seconds…) longer than the
    /// longest refused, or else a step longer than it. A round span is hit
    /// exactly, with no time lost past it; any other costs one more step.
    fn trial(&self) -> f64 {
        self.round_trial().unwrap_or((self.lo * GROW).max(0.01))
    }

    /// The round span to try next, if one is near enough.
    fn round_trial(&self) -> Option<f64> {
        const ROUND: [f64; 16] = [
            0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0,
            900.0, 3600.0,
        ];
        let past = self.lo * 1.05;
        ROUND
            .into_iter()
            .find(|&span| span >= past && span <= self.lo * GROW * 2.0)
    }

    /// The span the next request waits for, and whether it is a guess.
    fn span(&self) -> (f64, bool) {
        if !self.hi.is_finite() {
            return (self.trial(), true);
        }
        if self.probe.is_some() {
            (self.hi, false)
        } else if self.refused_last || self.settled() || self.windowed {
            // After a refusal, the next request tries the span alone.
            (self.hi, self.refused_last)
        } else {
            // One request tries shorter; the rest keep the proven span.
            (((self.lo + self.hi) / 2.0).max(self.hi * SHORTER), true)
        }
    }

    /// The earliest time the next request may go; `-∞` when the log does
    /// not hold it back.
    pub fn ready_at(&self) -> f64 {
        if !self.in_force() {
            return f64::NEG_INFINITY;
        }
        let Some(nth) = self.log.len().checked_sub(self.n).map(|i| self.log[i].at) else {
            return f64::NEG_INFINITY;
        };
        let (span, _) = self.span();
        let mut ready = nth + span + self.margin();
        if !self.hi.is_finite() && self.reopen_by.is_finite() {
            // The server's Retry-After, in whole seconds, places the
            // reopening within a second: one request tries the middle of
            // what is left while that is wide, then the time it said.
            let width = self.reopen_by - self.reopen_after;
            ready = if width > (self.reopen_by - nth) * CLOSE {
                (self.reopen_after + self.reopen_by) / 2.0
            } else {
                self.reopen_by
            };
            ready = ready.max(nth + self.lo);
        }
        if let Some((_, sent)) = self.probe
            && (!self.hi.is_finite() || self.refused_last)
        {
            // One guess at a time: the next waits for its answer.
            ready = ready.max(sent + PROBE_TIMEOUT);
        }
        ready
    }

    /// A request sent at `at`.
    pub fn record(&mut self, seq: u64, at: f64) {
        if self.in_force()
            && self
                .probe
                .is_none_or(|(_, sent)| at - sent >= PROBE_TIMEOUT)
            && let Some(nth) = self.log.len().checked_sub(self.n).map(|i| self.log[i].at)
        {
            let (_, guess) = self.span();
            if guess && (self.refused_last || at < nth + self.hi) {
                self.probe = Some((seq, at));
            }
        }
        self.log.push_back(Sent {
            seq,
            at,
            fate: Fate::InFlight,
        });
        while self.log.len() > MAX_N + 1 {
            self.log.pop_front();
        }
    }

    fn round_trip(&mut self, seq: u64, now: f64) {
        if let Some(at) = self.sent_at(seq) {
            self.round_trips.push_back(now - at);
            if self.round_trips.len() > 32 {
                self.round_trips.pop_front();
            }
        }
    }

    /// The request `seq` went through.
    pub fn accepted(&mut self, seq: u64, now: f64) {
        self.round_trip(seq, now);
        self.reopen_by = f64::INFINITY;
        self.reopen_after = f64::NEG_INFINITY;
        if self.probe.is_some_and(|(p, _)| p == seq) {
            self.probe = None;
            self.refused_last = false;
        }
        let Some(i) = self.index_of(seq) else { return };
        self.log[i].fate = Fate::Accepted;
        if !self.in_force() || self.windowed || i < self.n {
            return;
        }
        // All N before it taken too: the span since the N-th is enough.
        let before = self.log.range(i - self.n..i);
        if before.clone().all(|s| s.fate == Fate::Accepted) {
            let span = self.log[i].at - self.log[i - self.n].at;
            if span < self.hi {
                let round = self
                    .round_trial()
                    .is_some_and(|r| span >= r && span <= r * 1.05 + self.margin());
                if !self.hi.is_finite() && round {
                    // A round span taken at the first try: most likely the
                    // limit's own. One look a little shorter will tell.
                    self.lo = self.lo.max(span * (1.0 - 2.0 * CLOSE));
                }
                self.hi = span.max(self.lo);
                self.settled_at = now;
            }
        }
        if self.settled() && now - self.settled_at >= REPROBE_AFTER {
            // Long at the limit: try a little shorter, in case it was raised.
            self.lo = self.lo.min(self.hi * (1.0 - 2.0 * CLOSE));
            self.settled_at = now;
        }
    }

    /// The request `seq` was refused; `reopen_by` is when its `Retry-After`
    /// says the server takes requests again.
    pub fn refused(&mut self, seq: u64, now: f64, reopen_by: Option<f64>) {
        self.round_trip(seq, now);
        if self.probe.is_some_and(|(p, _)| p == seq) {
            self.probe = None;
        }
        let Some(i) = self.index_of(seq) else { return };
        let at = self.log[i].at;
        if self.last_refused.is_none_or(|(last, _)| seq > last) {
            // The run of acceptances since the previous refusal ends here.
            let from = self
                .last_refused
                .map_or(0, |(last, _)| self.log.partition_point(|s| s.seq <= last));
            // A run with nothing yet known taken (requests still in flight,
            // overtaken by this refusal) is no run of acceptances.
            if self.log.range(from..i).any(|s| s.fate == Fate::Accepted) {
                self.last_run = Some((self.log[from].seq, self.log[i - 1].seq));
            }
            self.last_refused = Some((seq, at));
        }
        self.log.remove(i);
        if let Some(reopen) = reopen_by {
            self.reopen_by = self.reopen_by.min(reopen);
            self.reopen_after = self.reopen_after.max(reopen - 1.0).max(at);
        }
        if !self.in_force() {
            return;
        }
        self.settled_at = now;
        self.refused_last = true;
        let Some(mut nth) = self.nth_before(seq) else {
            return;
        };
        let last_run = self.last_run_len();
        if at - nth >= self.hi && last_run >= 2 && last_run < self.n {
            // Refused past a span it took, after fewer than N: the limit
            // takes fewer per span than the first run showed (a first run
            // across a window's boundary takes from two windows).
            self.n = last_run;
            self.lo = 0.0;
            match self.nth_before(seq) {
                Some(fewer) => nth = fewer,
                None => return,
            }
        }
        let proven = at - nth;
        if proven >= self.hi {
            // Refused past a span it took: a fixed window, which a request
            // just past its boundary passes however short the span since
            // the N-th latest. From now on the span only grows.
            self.windowed = true;
            self.lo = proven;
            self.hi = proven * (1.0 + WINDOW_STEP);
            return;
        }
        self.lo = self.lo.max(proven);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sliding log of `n` per `span` seconds.
    struct Log {
        n: usize,
        span: f64,
        taken: VecDeque<f64>,
    }

    impl Log {
        fn admit(&mut self, now: f64) -> bool {
            while self.taken.front().is_some_and(|&t| t <= now - self.span) {
                self.taken.pop_front();
            }
            let accepted = self.taken.len() < self.n;
            if accepted {
                self.taken.push_back(now);
            }
            accepted
        }
    }

    /// Sends `count` requests as soon as the mirror allows (at most one a
    /// millisecond), each answered after `rtt`; returns the refusals.
    fn send(m: &mut Mirror, server: &mut Log, seq: &mut u64, now: &mut f64, count: u64) -> u64 {
        let rtt = 0.002;
        let mut refusals = 0;
        for _ in 0..count {
            *now = m.ready_at().max(*now + 0.001);
            *seq += 1;
            m.record(*seq, *now);
            if server.admit(*now) {
                m.accepted(*seq, *now + rtt);
            } else {
                refusals += 1;
                m.refused(*seq, *now + rtt, None);
            }
        }
        refusals
    }

    #[test]
    fn it_learns_n_from_the_run_a_refusal_ends_and_the_span_from_probes() {
        let mut server = Log {
            n: 20,
            span: 1.0,
            taken: VecDeque::new(),
        };
        let mut m = Mirror::new();
        let (mut seq, mut now) = (0, 0.0);
        // 20 taken at 1000/s, then refused: not yet in force, nothing held.
        assert_eq!(send(&mut m, &mut server, &mut seq, &mut now, 21), 1);
        assert!(m.take_over(now));
        assert_eq!(m.n, 20);
        assert!(m.lo >= 0.019 && m.lo < 0.03, "{}", m.lo);
        // The span is found, and bounded to within a few percent above a
        // second, with a handful of refusals on the way.
        let refusals = send(&mut m, &mut server, &mut seq, &mut now, 300);
        assert!(m.settled(), "{:?}", (m.lo, m.hi));
        assert!(m.hi >= 1.0 && m.hi <= 1.0 * (1.0 + 2.0 * CLOSE), "{}", m.hi);
        assert!(refusals <= 12, "{refusals}");
        // Settled: 20 a second, and no refusal but one look a little
        // shorter every 20 seconds.
        let from = now;
        assert!(send(&mut m, &mut server, &mut seq, &mut now, 200) <= 1);
        let rate = 200.0 / (now - from);
        assert!(rate > 19.0 && rate <= 20.5, "{rate}");
    }

    #[test]
    fn one_guess_at_a_time() {
        let mut m = Mirror::new();
        for seq in 0..10 {
            m.record(seq, seq as f64 * 0.001);
            m.accepted(seq, seq as f64 * 0.001);
        }
        m.record(10, 0.01);
        m.refused(10, 0.011, None);
        assert!(m.take_over(0.011));
        let first = m.ready_at();
        m.record(11, first);
        // Its answer not in: the next waits for it, or for the timeout.
        assert!(m.ready_at() >= first + PROBE_TIMEOUT - 1e-9);
        m.refused(11, first + 0.002, None);
        assert!(m.ready_at() < first + PROBE_TIMEOUT);
    }

    #[test]
    fn a_fixed_window_stops_the_span_from_shrinking() {
        let mut m = Mirror::new();
        for seq in 0..4 {
            m.record(seq, seq as f64 * 0.01);
            m.accepted(seq, seq as f64 * 0.01);
        }
        m.record(4, 0.04);
        m.refused(4, 0.041, None);
        assert!(m.take_over(0.05));
        m.hi = 1.0;
        m.lo = 0.9;
        // Refused at a span already taken: a window.
        let nth = m.nth_before(u64::MAX).expect("four sent");
        m.record(5, nth + 1.2);
        m.refused(5, nth + 1.21, None);
        assert!(m.windowed);
        assert!(m.hi > 1.2);
    }

    #[test]
    fn nothing_to_go_by_leaves_it_out_of_force() {
        let mut m = Mirror::new();
        m.record(0, 0.0);
        m.refused(0, 0.01, Some(1.0));
        assert!(!m.take_over(0.01));
        assert_eq!(m.ready_at(), f64::NEG_INFINITY);
        assert_eq!(m.limit(), None);
    }
}
