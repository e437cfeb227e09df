//! The run's own copy of a server's request log, for a limit that refuses in
//! spells: at most N requests in any S seconds (a sliding log, as Django
//! REST framework's throttle keeps), or N per fixed window of S seconds.
//!
//! Pacing such a limit at an even rate wastes what it allows: N requests may
//! go back to back as long as the one N before each is S seconds old. So once
//! the controller has seen the server refuse in spells, a request goes only
//! when the N-th latest request not refused is older than the span in force
//! — the server's own rule, kept on this side. Nothing more is sent than the
//! server would take, and nothing less. (So N requests may go back to back,
//! at the asked rate: that is what such a limit allows.)
//!
//! N is what the server took before it refused: the requests known taken
//! since the refusals before (answers overtaking each other do not cut
//! that run short, and requests still in flight are not counted). It grows
//! when the server takes more within a span it is known to exceed, and
//! shrinks when it refuses with fewer than N within a span it had taken (or
//! after fewer than N in a run begun at a reopening, or, once the limit is
//! known for a fixed window, in a burst begun after a quiet: a first run
//! across a window's boundary takes from two).
//! S is learned between bounds: a refusal of a request sent at t proves S >
//! t − (the N-th latest before it); an acceptance at t proves S ≤ t − (the
//! N-th latest before it), for a log. (A request far slower on its round
//! trip than the rest, as the first over a new connection is, may have
//! reached the server a little late: it counts from then.) Until an
//! acceptance bounds it, the
//! span tried is what a `Retry-After` said, or the next round span (0.25,
//! 0.5, 1, 2, 3, 5, 10 … 3600 s) past the longest refused; after, one
//! request at a time tries shorter, so a wrong guess costs one 429. A
//! fixed window breaks the acceptance rule (a request just past the
//! boundary goes through, though the span since the N-th latest is short):
//! a refusal past a proven span says so. The span is then looked for again
//! at round spans past the refusal, set no longer than the round span
//! under the look that was taken (if one lies past the refusal), and not
//! shortened by acceptances until a long calm lets it look shorter again.
//!
//! Once a span was taken, while the end of a refusal is looked for again, a
//! look goes at least once a minute (the controller waits out a longer
//! `Retry-After` by pausing the run). Refusals that come at random
//! (a bucket shared with another client) fit no log: the controller gives
//! the mirror up ([`Mirror::release`]) once its span has stretched far past
//! the first it saw taken.

use std::collections::VecDeque;

/// The longest N kept: a limit taking more in one run (or a run longer than
/// the log keeps) is left to the controller's even pacing.
pub const MAX_N: usize = 4096;
/// Without an upper bound or a round span near, each refusal tries a span
/// this much longer.
const GROW: f64 = 1.5;
/// The bounds are close enough when they differ by this share.
const CLOSE: f64 = 0.08;
/// A guess below a proven span tries at most this much shorter: the proven
/// one is seldom far off, and each wrong guess costs a 429.
const SHORTER: f64 = 0.85;
/// Seconds without a refusal, once the bounds are close, before trying a
/// little shorter (the limit may have been raised).
const REPROBE_AFTER: f64 = 20.0;
/// A request tried alone and not answered in this long (a lost connection)
/// no longer holds the others back, seconds.
const PROBE_TIMEOUT: f64 = 2.0;
/// The spans limits are configured in: DRF's `N/s`, `N/m`, `N/h`, nginx's
/// `r/s` and `r/m`, windows of 5, 10, 15, 30 seconds…
const ROUND: [f64; 16] = [
    0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 3600.0,
];
/// While the end of a refusal is looked for again, once a span was taken,
/// the longest wait after a refusal before the next look, seconds.
const SEARCH_WAIT_MAX: f64 = 60.0;
/// The margin for latency jitter is at most this share of the span.
const MARGIN_SHARE: f64 = 0.05;
/// A request slow on its round trip is taken to have reached the server
/// late by at most this share of the span: enough for a new connection's
/// few milliseconds, little for an answer slow with the server's own time
/// (a tail of slow answers, 10 % of them 50–300 ms slower, costs 0.3 % of
/// the time this way, 1.3 % at the margin's share).
const LATE_SHARE: f64 = 0.01;
/// A refusal whose N-th latest request is older than this many spans says
/// nothing of the span: another client took the quota, or another limit.
const FOREIGN: f64 = 2.0;

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
    /// Its round trip, once answered (NaN before).
    trip: f64,
}

#[derive(Debug, Default)]
pub struct Mirror {
    /// Every request sent and not refused, oldest first (at most `MAX_N` + 1);
    /// sequence numbers and times rise along it.
    log: VecDeque<Sent>,
    /// Requests the limit takes per span; 0 while not in force.
    n: usize,
    /// The span lies in `(lo, hi]`, seconds.
    lo: f64,
    hi: f64,
    /// The latest time the `Retry-After`s since the latest acceptance say
    /// the server takes requests again...
    reopen_by: f64,
    /// ... and the earliest: a `Retry-After` of whole seconds is rounded up
    /// by less than one, and a refused request went before it.
    reopen_after: f64,
    /// A request sent alone (at a guessed span, or after a refusal), not
    /// yet answered: its sequence number and when it went.
    probe: Option<(u64, f64)>,
    /// The limit refused past a span it had taken: a fixed window, not a
    /// log. Acceptances no longer shorten the span.
    windowed: bool,
    /// The latest answer was a refusal: the next request goes alone, so
    /// requests in flight do not draw the same refusal again.
    refused_last: bool,
    /// The current run of acceptances counts requests from this sequence
    /// number on (those sent after the refusals before it).
    run_from: u64,
    /// The run the latest spell of refusals ended counts from here.
    ended_run_from: u64,
    /// The highest sequence number refused, and when that request went.
    last_refused: Option<(u64, f64)>,
    /// Requests from this sequence number on were sent after the latest
    /// refusal was known.
    sent_since_refusal: u64,
    /// The latest sequence number let go from the log's front.
    dropped: Option<u64>,
    /// When the bounds last changed or the latest refusal came.
    settled_at: f64,
    /// N was lowered in the current spell of refusals.
    shrunk: bool,
    /// Given up for the rest of the run.
    released: bool,
    /// When the latest refusal came.
    refused_at: f64,
    /// The first span an acceptance proved enough (0 before one).
    first_proven: f64,
    /// N was set once by what a burst after a quiet took, a fixed window
    /// recognised.
    burst_counted: bool,
    /// The run N was counted from: its first sequence number, and when
    /// the refusal that ended it went (plus the margin for jitter).
    counted: Option<(u64, f64)>,
    /// A refusal long after the N-th latest was set aside as another's.
    foreign_seen: bool,
    /// A refusal came at or after the time a Retry-After said: they are
    /// not believed until something is taken.
    retry_after_spent: bool,
    /// Recent round trips, for the margin that latency jitter needs, and
    /// how much they vary (the slowest quarter left out).
    round_trips: VecDeque<f64>,
    spread: f64,
    /// The fastest of those round trips.
    fastest: f64,
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

    #[cfg(test)]
    pub fn debug(&self) -> String {
        format!(
            "n {} lo {:.3} hi {:.3} windowed {} probe {:?} refused_last {} runs {}/{} log {} reopen {:.3}..{:.3} margin {:.4}",
            self.n,
            self.lo,
            self.hi,
            self.windowed,
            self.probe,
            self.refused_last,
            self.ended_run_from,
            self.run_from,
            self.log.len(),
            self.reopen_after,
            self.reopen_by,
            self.margin()
        )
    }

    /// Whether it paces the run.
    pub fn in_force(&self) -> bool {
        self.n > 0
    }

    /// Whether the span in force (or tried) is more than `factor` times
    /// the first an acceptance proved enough.
    pub fn stretched_past(&self, factor: f64) -> bool {
        let span = self.span_in_force();
        self.in_force() && self.first_proven > 0.0 && span > factor * self.first_proven
    }

    /// Gives up pacing for the rest of the run: the server's answers are
    /// not a log's or a window's.
    pub fn release(&mut self) {
        self.n = 0;
        self.released = true;
        self.probe = None;
    }

    /// Takes over pacing: the requests known taken in the run the latest
    /// refusals ended are what the limit takes per span. Returns false when
    /// that says nothing (too few), or more than the log keeps.
    pub fn take_over(&mut self, now: f64) -> bool {
        if self.released {
            return false;
        }
        if self.dropped.is_some_and(|seq| seq >= self.ended_run_from) {
            // The run began before the oldest request kept.
            return false;
        }
        let n = self.taken_from(self.ended_run_from);
        if !(2..=MAX_N).contains(&n) {
            return false;
        }
        self.n = n;
        self.settled_at = now;
        // The latest refusal bounds the span from below: the N-th latest
        // before it went longer ago than the span, or, when fewer than N
        // went before it (the rest overtook it on the way), the run's first.
        if let Some((seq, at)) = self.last_refused
            && let Some(nth) = self.nth_before(seq).or_else(|| {
                let start = self.log.partition_point(|s| s.seq < self.ended_run_from);
                self.log.get(start).map(|s| s.at)
            })
        {
            self.lo = self.lo.max(at - nth);
        }
        // (With that bound, not before: the margin for jitter is at most a
        // share of the span tried, and nothing was tried yet.)
        self.counted = self
            .last_refused
            .map(|(_, at)| (self.ended_run_from, at + self.margin()));
        true
    }

    /// Requests known taken, sent from sequence number `from` on.
    fn taken_from(&self, from: u64) -> usize {
        let start = self.log.partition_point(|s| s.seq < from);
        self.log
            .range(start..)
            .filter(|s| s.fate == Fate::Accepted)
            .count()
    }

    /// Requests per second the limit allows, as far as known.
    pub fn limit(&self) -> Option<f64> {
        if !self.in_force() {
            return None;
        }
        let span = self.span_in_force();
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

    fn index_of(&self, seq: u64) -> Option<usize> {
        // Sequence numbers rise along the log, with gaps where refusals
        // were taken out.
        self.log.binary_search_by(|s| s.seq.cmp(&seq)).ok()
    }

    /// When the N-th latest request not refused, sent before `seq`, went.
    fn nth_before(&self, seq: u64) -> Option<f64> {
        self.nth_entry_before(seq).map(|s| s.at)
    }

    /// The N-th latest request not refused, sent before `seq`.
    fn nth_entry_before(&self, seq: u64) -> Option<Sent> {
        let end = self.log.partition_point(|s| s.seq < seq);
        (end >= self.n && self.n > 0).then(|| self.log[end - self.n])
    }

    /// Requests sent from `from` (inclusive) until the one at index
    /// `before` (exclusive): known taken, or (`in_flight`) also those whose
    /// answer has not come.
    fn taken_between(&self, from: f64, before: usize, in_flight: bool) -> usize {
        let start = self.log.partition_point(|s| s.at < from);
        self.log
            .range(start.min(before)..before)
            .filter(|s| in_flight || s.fate == Fate::Accepted)
            .count()
    }

    /// The latest time a request may have reached the server, as far as
    /// its round trip tells. One far slower than the others (more than
    /// twice as much as they vary: the first request over a new connection
    /// is some milliseconds late) may have arrived that much later than it
    /// went, up to [`LATE_SHARE`] of the span (a slow answer may also be
    /// the server's own time, after its limit counted the request). A round
    /// trip within the usual variation is the margin's to cover: the
    /// request went when it was sent.
    fn arrived_by(&self, sent: &Sent) -> f64 {
        let late = sent.trip - self.fastest;
        if late > 2.0 * self.spread + 0.001 {
            sent.at + late.min(self.span_in_force() * LATE_SHARE)
        } else {
            sent.at
        }
    }

    /// The span proven, or else the one tried.
    fn span_in_force(&self) -> f64 {
        if self.hi.is_finite() {
            self.hi
        } else {
            self.trial()
        }
    }

    /// The margin for latency jitter: a request's arrival may be late by as
    /// much as round trips vary (the slowest quarter left out: a slow answer
    /// is most often the server's work, not the way there), and by no more
    /// than a small share of the span.
    fn margin(&self) -> f64 {
        let span = self.span_in_force();
        self.spread.min(span * MARGIN_SHARE) + 0.001
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
        ROUND
            .into_iter()
            .find(|&span| span > self.lo && span <= self.lo * GROW * 2.0)
    }

    /// The span the next request waits for, and whether it goes alone.
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

    /// Whether the request out alone holds the others back.
    fn holds_back(&self) -> bool {
        self.probe.is_some() && (!self.hi.is_finite() || self.refused_last)
    }

    /// The earliest time the next request may go; `-∞` when the log does
    /// not hold it back.
    pub fn ready_at(&self) -> f64 {
        if !self.in_force() {
            return f64::NEG_INFINITY;
        }
        let mut ready = f64::NEG_INFINITY;
        if let Some(nth) = self.log.len().checked_sub(self.n).map(|i| self.log[i]) {
            let (span, _) = self.span();
            let nth = self.arrived_by(&nth);
            ready = nth + span + self.margin();
            if !self.hi.is_finite() && self.reopen_by.is_finite() {
                // The server's Retry-After, in whole seconds, places the
                // reopening within a second: one request tries the middle
                // of what is left while that is wide, then the time it said.
                let width = self.reopen_by - self.reopen_after;
                ready = if width > (self.reopen_by - nth) * CLOSE {
                    (self.reopen_after + self.reopen_by) / 2.0
                } else {
                    self.reopen_by
                };
                ready = ready.max(nth + self.lo);
            }
            if !self.hi.is_finite() && self.first_proven > 0.0 {
                // Looked for again after a span was once taken: at least
                // once a minute, as the controller's own pauses (refusals
                // that come at random would otherwise stretch it to days).
                ready = ready.min(self.refused_at + SEARCH_WAIT_MAX);
            }
        }
        if self.holds_back()
            && let Some((_, sent)) = self.probe
        {
            // One at a time: the next waits for its answer.
            ready = ready.max(sent + PROBE_TIMEOUT);
        }
        ready
    }

    /// A request sent at `at`.
    pub fn record(&mut self, seq: u64, at: f64) {
        if self
            .probe
            .is_some_and(|(_, sent)| at - sent >= PROBE_TIMEOUT)
        {
            // Its answer never came (a lost connection): it holds nothing
            // back any more, and nothing is learned from it.
            self.probe = None;
            self.refused_last = false;
        }
        if self.in_force() && self.probe.is_none() {
            let nth = self.log.len().checked_sub(self.n).map(|i| self.log[i].at);
            let (_, alone) = self.span();
            // Sent before the proven span after its N-th latest, or inside
            // the margin past it (the run's own pace held it there): it goes
            // as the one trial, and the rest wait out the margin.
            let guessed = nth.is_none_or(|nth| at < nth + self.hi + self.margin());
            if alone && (self.refused_last || guessed) {
                self.probe = Some((seq, at));
            }
        }
        self.log.push_back(Sent {
            seq,
            at,
            fate: Fate::InFlight,
            trip: f64::NAN,
        });
        while self.log.len() > MAX_N + 1 {
            self.dropped = self.log.pop_front().map(|s| s.seq);
        }
    }

    fn round_trip(&mut self, seq: u64, now: f64) {
        if let Some(i) = self.index_of(seq) {
            let trip = now - self.log[i].at;
            self.log[i].trip = trip;
            self.round_trips.push_back(trip);
            if self.round_trips.len() > 32 {
                self.round_trips.pop_front();
            }
            // Worked out here, once an answer, not at every look at the log.
            let mut trips: Vec<f64> = self.round_trips.iter().copied().collect();
            trips.sort_by(f64::total_cmp);
            self.spread = trips[trips.len() * 3 / 4] - trips[0];
            self.fastest = trips[0];
        }
    }

    /// The request `seq` went through.
    pub fn accepted(&mut self, seq: u64, now: f64) {
        self.round_trip(seq, now);
        self.reopen_by = f64::INFINITY;
        self.reopen_after = f64::NEG_INFINITY;
        self.retry_after_spent = false;
        if self.probe.is_some_and(|(p, _)| p == seq) {
            self.probe = None;
        }
        if self.refused_last && seq >= self.sent_since_refusal {
            self.shrunk = false;
            // A request sent after the latest refusal was known went
            // through: a new run of acceptances, from the requests sent
            // since. (One sent before, overtaking or overtaken, belongs to
            // the run the refusal ended.)
            self.refused_last = false;
            self.run_from = self.sent_since_refusal;
        }
        let Some(i) = self.index_of(seq) else { return };
        let was_in_flight = self.log[i].fate == Fate::InFlight;
        self.log[i].fate = Fate::Accepted;
        if !self.in_force() {
            return;
        }
        let at = self.log[i].at;
        if was_in_flight
            && self
                .counted
                .is_some_and(|(from, until)| seq >= from && at <= until)
            && self.n < MAX_N
        {
            // Taken in the run N was counted from (sent before the refusal
            // that ended it, or so soon after as to overtake it on the
            // way), but answered after it: N was counted one short.
            self.n += 1;
        }
        if !self.windowed && self.lo > 0.0 && i >= self.n {
            // Taken with N or more taken within a span it is known to
            // exceed: the limit takes more than N.
            let within = self.taken_between(at - self.lo + self.margin(), i, false);
            if within >= self.n {
                self.n = (within + 1).min(MAX_N);
            }
        }
        let counted = seq < self.sent_since_refusal;
        if (!self.windowed || !self.hi.is_finite()) && !counted && i >= self.n {
            // All N before it taken too: the span since the N-th is enough.
            // (Not for a request of the run N was counted from: one of
            // those overtaken means N was counted one short.)
            let before = self.log.range(i - self.n..i);
            if before.clone().all(|s| s.fate == Fate::Accepted) {
                let span = at - self.log[i - self.n].at;
                if span < self.hi {
                    let round = self
                        .round_trial()
                        .is_some_and(|r| span >= r && span <= r * 1.05 + self.margin());
                    if !self.hi.is_finite() && round {
                        // A round span taken at the first try: most likely
                        // the limit's own. One look a little shorter will
                        // tell.
                        self.lo = self.lo.max(span * (1.0 - 2.0 * CLOSE));
                    }
                    // Sent together, answers say nothing of the order they
                    // arrived in: no span shorter than the jitter is proven.
                    let mut span = span;
                    if self.windowed {
                        // A fixed window's boundary passed somewhere before
                        // this request: the span is at most this, most
                        // likely the longest round span under it.
                        if let Some(round) =
                            ROUND.into_iter().rev().find(|&r| r > self.lo && r <= span)
                        {
                            span = round;
                        }
                    }
                    self.hi = span.max(self.lo).max(2.0 * self.margin());
                    if self.first_proven == 0.0 {
                        self.first_proven = self.hi;
                    }
                    self.settled_at = now;
                }
            }
        }
        if (self.settled() || self.windowed) && now - self.settled_at >= REPROBE_AFTER {
            // Long at the limit: try a little shorter, in case it was
            // raised (a window, too: it may have been a log all along).
            self.windowed = false;
            self.lo = self.lo.min(self.hi * (1.0 - 2.0 * CLOSE));
            self.settled_at = now;
        }
    }

    /// The request `seq` was refused; `reopen_by` is when its `Retry-After`
    /// says the server takes requests again.
    pub fn refused(&mut self, seq: u64, now: f64, reopen_by: Option<f64>) {
        self.round_trip(seq, now);
        self.refused_at = now;
        if self.probe.is_some_and(|(p, _)| p == seq) {
            self.probe = None;
        }
        let Some(i) = self.index_of(seq) else { return };
        let at = self.log[i].at;
        self.sent_since_refusal = self.log.back().map_or(seq, |s| s.seq) + 1;
        if !self.refused_last {
            // A spell of refusals begins: it ends the current run.
            self.ended_run_from = self.run_from;
        }
        self.refused_last = true;
        if self.last_refused.is_none_or(|(last, _)| seq > last) {
            self.last_refused = Some((seq, at));
        }
        self.log.remove(i);
        if at >= self.reopen_by || reopen_by.is_some_and(|reopen| reopen <= now) {
            // Refused at or after the time it said, or told to come back
            // at once: its Retry-After says nothing (a server saying 1, or
            // 0, whatever the wait). Until something is taken, the search
            // goes on without it.
            self.reopen_by = f64::INFINITY;
            self.reopen_after = f64::NEG_INFINITY;
            self.retry_after_spent = true;
        }
        if let Some(reopen) = reopen_by.filter(|_| !self.retry_after_spent) {
            self.reopen_by = self.reopen_by.min(reopen);
            self.reopen_after = self.reopen_after.max(reopen - 1.0).max(at);
        }
        if !self.in_force() {
            return;
        }
        self.settled_at = now;
        let Some(nth) = self.nth_entry_before(seq) else {
            return;
        };
        // (From when the N-th latest may have arrived: a refusal that its
        // lateness explains proves no span past a proven one.)
        let proven = at - self.arrived_by(&nth);
        if self.hi.is_finite() && proven > FOREIGN * self.hi && !self.foreign_seen {
            // The N-th latest went long ago (after an idle spell or a
            // pause): this refusal may be another client's doing, or
            // another limit's, and say nothing of this one's span. Once;
            // the next such refusal is believed.
            self.foreign_seen = true;
            return;
        }
        if proven >= self.hi {
            // Refused past a span it took. If fewer than N were taken within
            // that span, the limit takes fewer (a first run across a
            // window's boundary takes from two windows).
            // (Those still in flight count as taken: they may well be.)
            // At most halved, and once a spell: the requests after the first
            // refusal, counted with the smaller N, would shrink it again.
            let mut within = self.taken_between(at - self.hi - self.margin(), i, true);
            if self.run_from > 0 {
                // A run that began when the limit reopened after refusals:
                // a fixed window reopens whole at its boundary, so what the
                // run got before this refusal is what a window takes (a
                // first run across a boundary took from two).
                let start = self.log.partition_point(|s| s.seq < self.run_from);
                within = within.min(i.saturating_sub(start));
            }
            if !self.windowed && !self.shrunk && (2..self.n).contains(&within) {
                self.n = within.max(self.n / 2);
                self.shrunk = true;
                if let Some(nth) = self.nth_before(seq) {
                    self.lo = (at - nth).min(self.hi);
                }
                return;
            }
            // Else a fixed window, which a request just past its boundary
            // passes however short the span since the N-th latest: the span
            // is looked for again, at round spans past this refusal, and
            // an acceptance no longer shortens it once found.
            self.windowed = true;
            let mut proven = proven;
            if !self.burst_counted
                && let Some(burst) = self.burst_after_quiet(i, self.hi / 2.0)
                && (self.n / 2..self.n).contains(&burst)
                && burst >= 2
            {
                self.burst_counted = true;
                // A window takes no more than the burst that began after a
                // quiet (of half the span it had taken, in which a boundary
                // passed) got before this refusal: a first run across a
                // boundary took from two windows, up to twice what one
                // takes. Once: later bursts would count short.
                self.n = burst;
                if let Some(nth) = self.nth_before(seq) {
                    proven = at - nth;
                }
            }
            self.lo = proven;
            self.hi = f64::INFINITY;
            return;
        }
        self.lo = self.lo.max(proven);
    }

    /// The requests taken in the burst that ends before index `end` (each
    /// sent less than half of `quiet` after the one before), if a quiet of
    /// at least `quiet` came before it.
    fn burst_after_quiet(&self, end: usize, quiet: f64) -> Option<usize> {
        if !quiet.is_finite() || end == 0 || end > self.log.len() {
            return None;
        }
        let mut start = end - 1;
        while start > 0 && self.log[start].at - self.log[start - 1].at < quiet / 2.0 {
            start -= 1;
        }
        (start > 0 && self.log[start].at - self.log[start - 1].at >= quiet).then(|| {
            self.log
                .range(start..end)
                .filter(|s| s.fate == Fate::Accepted)
                .count()
        })
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

    /// A mirror in force after `n` requests `gap` apart were taken and the
    /// next was refused.
    fn taken_over(n: u64, gap: f64) -> Mirror {
        let mut m = Mirror::new();
        for seq in 0..n {
            m.record(seq, seq as f64 * gap);
            m.accepted(seq, seq as f64 * gap);
        }
        let at = n as f64 * gap;
        m.record(n, at);
        m.refused(n, at + 0.001, None);
        assert!(m.take_over(at + 0.001));
        m
    }

    /// Found at 25 ms from a 100-per-5 s window: the 100th request taken
    /// was answered after the 101st's refusal (it had been overtaken on the
    /// way back, or had overtaken the refused one on the way there), so
    /// the mirror counted 99 per span, and the run's last row waited a
    /// whole window (2.08×).
    #[test]
    fn a_request_of_the_run_answered_after_its_refusal_is_counted() {
        for last in [98, 100] {
            let mut m = Mirror::new();
            for seq in 0..=100 {
                m.record(seq, seq as f64 * 0.001);
            }
            for seq in (0..=100).filter(|&seq| seq != last && seq != 99) {
                m.accepted(seq, 0.05 + seq as f64 * 0.001);
            }
            m.refused(99, 0.151, Some(5.0));
            assert!(m.take_over(0.151));
            assert_eq!(m.n, 99);
            m.accepted(last, 0.152);
            assert_eq!(m.n, 100, "taken {last} answered late");
        }
    }

    #[test]
    fn one_guess_at_a_time() {
        let mut m = taken_over(10, 0.001);
        let first = m.ready_at();
        m.record(11, first);
        // Its answer not in: the next waits for it, or for the timeout.
        assert!(m.ready_at() >= first + PROBE_TIMEOUT - 1e-9);
        m.refused(11, first + 0.002, None);
        assert!(m.ready_at() < first + PROBE_TIMEOUT);
    }

    #[test]
    fn a_fixed_window_stops_the_span_from_shrinking() {
        let mut m = taken_over(4, 0.01);
        m.hi = 1.0;
        m.lo = 0.9;
        // Refused at a span already taken: a window.
        let nth = m.nth_before(u64::MAX).expect("four sent");
        m.record(5, nth + 1.2);
        m.refused(5, nth + 1.21, None);
        assert!(m.windowed);
        // Looked for again, at the next round span past the refusal.
        assert!(m.lo >= 1.2 && !m.hi.is_finite());
        assert!(
            (m.ready_at() - (nth + 2.0)).abs() < 0.01,
            "{}",
            m.ready_at()
        );
        // Taken a little past it: the span is the round span under the look,
        // and acceptances no longer shorten it.
        m.record(6, nth + 2.3);
        m.accepted(6, nth + 2.302);
        assert_eq!(m.hi, 2.0);
        m.record(7, nth + 2.31);
        m.accepted(7, nth + 2.312);
        assert_eq!(m.hi, 2.0);
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

    fn log(n: usize, span: f64) -> Log {
        Log {
            n,
            span,
            taken: VecDeque::new(),
        }
    }

    /// Found in review: two requests overtaking a third at the limit's
    /// edge made a "run" of 2 where the limit takes 10, and N never grew.
    #[test]
    fn answers_overtaking_each_other_do_not_cut_n_short() {
        let mut m = Mirror::new();
        for seq in 0..12 {
            m.record(seq, seq as f64 * 0.001);
        }
        // The server (10 per second) saw 0..=7, 9, 10, 8, 11.
        for seq in 0..8 {
            m.accepted(seq, 0.02);
        }
        m.refused(8, 0.021, None);
        m.accepted(9, 0.021);
        m.accepted(10, 0.021);
        m.refused(11, 0.022, None);
        assert!(m.take_over(0.03));
        assert_eq!(m.n, 10);
    }

    /// Found in review: a Retry-After that always says 1 (or 0) drew a 429
    /// on every round trip once its time had passed.
    #[test]
    fn a_retry_after_that_always_says_the_same_is_not_believed_for_ever() {
        for retry_after in [None, Some(1.0), Some(0.0)] {
            let mut m = Mirror::new();
            let mut server = log(20, 10.0);
            for seq in 0..20 {
                let at = seq as f64 * 0.001;
                m.record(seq, at);
                assert!(server.admit(at));
                m.accepted(seq, at + 0.002);
            }
            let mut now = 0.02;
            m.record(20, now);
            assert!(!server.admit(now));
            m.refused(20, now + 0.002, retry_after.map(|r: f64| now + 0.002 + r));
            assert!(m.take_over(now + 0.002));
            let (mut seq, mut refusals) = (21, 0);
            while now < 9.9 {
                now = m.ready_at().max(now + 0.003);
                m.record(seq, now);
                if server.admit(now) {
                    m.accepted(seq, now + 0.002);
                } else {
                    refusals += 1;
                    m.refused(seq, now + 0.002, retry_after.map(|r| now + 0.002 + r));
                }
                seq += 1;
            }
            // (As many as with no Retry-After at all: about ten; it was
            // one a round trip, 2965.)
            assert!(
                refusals <= 15,
                "Retry-After {retry_after:?}: {refusals} refusals in 10 s"
            );
        }
    }

    /// Found in review: the request sent alone after a refusal, its answer
    /// lost, was held for good, and the next refusal let the requests in
    /// flight go together again.
    #[test]
    fn a_lost_answer_holds_nothing_back_for_long() {
        let mut m = Mirror::new();
        let mut server = log(20, 1.0);
        let (mut seq, mut now) = (0, 0.0);
        send(&mut m, &mut server, &mut seq, &mut now, 21);
        assert!(m.take_over(now));
        send(&mut m, &mut server, &mut seq, &mut now, 300);
        // A refusal (another client took a slot); the request after it is lost.
        seq += 1;
        m.record(seq, now + 0.0001);
        m.refused(seq, now + 0.002, None);
        now += 0.002;
        let lost_at = m.ready_at().max(now);
        seq += 1;
        m.record(seq, lost_at);
        assert_eq!(m.probe.map(|(p, _)| p), Some(seq));
        // Held until the timeout at most, then forgotten.
        assert!(m.ready_at() <= lost_at + PROBE_TIMEOUT + 1e-9);
        now = lost_at + PROBE_TIMEOUT;
        send(&mut m, &mut server, &mut seq, &mut now, 100);
        assert!(m.probe.is_none_or(|(p, _)| p != seq - 100), "{:?}", m.probe);
    }

    /// Found in review: after an idle spell, one refusal the log did not
    /// predict set the span to the idle gap, for good (0.75/s against 20/s).
    #[test]
    fn a_refusal_after_an_idle_spell_does_not_set_the_span() {
        let mut m = Mirror::new();
        let mut server = log(20, 1.0);
        let (mut seq, mut now) = (0, 0.0);
        send(&mut m, &mut server, &mut seq, &mut now, 21);
        assert!(m.take_over(now));
        send(&mut m, &mut server, &mut seq, &mut now, 300);
        assert!(m.settled() && m.hi < 1.1, "{} {}", m.lo, m.hi);
        now += 30.0;
        seq += 1;
        m.record(seq, now);
        m.refused(seq, now + 0.002, None);
        let from = now;
        send(&mut m, &mut server, &mut seq, &mut now, 100);
        let rate = 100.0 / (now - from);
        assert!(rate > 15.0, "{rate}/s against 20/s; span {}", m.hi);
    }

    /// A run longer than the log keeps is left to even pacing.
    #[test]
    fn a_run_past_what_the_log_keeps_does_not_take_over() {
        let mut m = Mirror::new();
        for seq in 0..5000 {
            m.record(seq, seq as f64 * 0.0001);
            m.accepted(seq, seq as f64 * 0.0001 + 0.001);
        }
        m.record(5000, 0.5);
        m.refused(5000, 0.501, None);
        assert!(!m.take_over(0.501), "took over as n = {}", m.n);
    }

    /// Found with 2–22 ms of jitter each way against 20 per rolling second:
    /// a request the run's own pace held until just past the proven span
    /// went neither as the one trial nor with the margin for jitter, so it
    /// and the next few reached the server inside the span of requests
    /// sent a second before; the refusal read as "the limit takes fewer",
    /// N was halved, and the run took twice as long (4 seeds in 30).
    #[test]
    fn a_request_sent_inside_the_margin_is_the_one_trial() {
        let mut m = taken_over(20, 0.001);
        m.hi = 1.0;
        m.lo = 0.8;
        m.spread = 0.02;
        m.refused_last = false;
        let margin = m.margin();
        assert!(margin > 0.02, "{margin}");
        // The N-th latest went at 0: past the proven span, inside the margin.
        m.record(21, 1.0 + margin / 2.0);
        // The next waits out the proven span and the margin after its N-th
        // latest (which went at 0.001), not the shorter span a trial tries.
        let ready = m.ready_at();
        assert!(ready >= 0.001 + 1.0 + margin - 1e-9, "ready at {ready}");
    }

    /// Found with 2–22 ms of jitter against 100 per 5 s: three requests
    /// sent after the refused one overtook it and were taken, so fewer
    /// than N went before the refusal and it set no lower bound on the
    /// span. The margin for jitter, a share of a span not yet bounded, was
    /// then a millisecond, those three (answered after the refusal) were
    /// not counted as the run's, and the last rows waited a whole window
    /// (1.95×, 8 seeds in 30).
    #[test]
    fn requests_overtaking_the_refused_one_are_counted_in_its_run() {
        let mut m = Mirror::new();
        let sent = |seq: u64| seq as f64 * 0.001;
        // Round trips of 10–30 ms.
        let answered = |seq: u64| sent(seq) + 0.01 + (seq % 5) as f64 * 0.005;
        for seq in 0..=102 {
            m.record(seq, sent(seq));
        }
        for seq in (0..=96).chain([98]) {
            m.accepted(seq, answered(seq));
        }
        m.refused(97, 0.127, Some(5.0));
        assert!(m.take_over(0.127));
        assert_eq!(m.n, 98);
        assert!(m.lo >= 0.09, "{}", m.lo);
        m.accepted(99, 0.13);
        m.accepted(102, 0.131);
        m.refused(100, 0.132, Some(5.0));
        m.refused(101, 0.133, Some(5.0));
        assert_eq!(m.n, 100);
    }

    /// Replays a run's own times (sequence number, sent, answered, taken)
    /// in the order they happened; the controller hands pacing over after
    /// the refusal of `take_over_at`.
    fn replay(run: &[(u64, f64, f64, bool)], take_over_at: u64) -> Mirror {
        let mut events: Vec<(f64, u64, Option<bool>)> = Vec::new();
        for &(seq, sent, answered, taken) in run {
            events.push((sent, seq, None));
            events.push((answered, seq, Some(taken)));
        }
        events.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut m = Mirror::new();
        for (now, seq, answer) in events {
            match answer {
                None => m.record(seq, now),
                Some(true) => m.accepted(seq, now),
                Some(false) => {
                    m.refused(seq, now, None);
                    if seq == take_over_at {
                        assert!(m.take_over(now));
                    }
                }
            }
        }
        m
    }

    /// The first run of a real one against the simulator's 20 per rolling
    /// second (`--no-retry-after`, asked 1000/s, concurrency 8): taken
    /// back to back, then refused, and a request every round span looks for
    /// the end of the refusal.
    const FIRST_RUN: [(u64, f64, f64, bool); 24] = [
        (0, 0.000117, 0.0011, true),
        (1, 0.001922, 0.0024, true),
        (2, 0.002997, 0.0033, true),
        (3, 0.004086, 0.0044, true),
        (4, 0.005165, 0.0054, true),
        (5, 0.006253, 0.0067, true),
        (6, 0.007343, 0.0076, true),
        // Over a new connection: answered 4.7 ms after it went.
        (7, 0.008480, 0.0132, true),
        (8, 0.012714, 0.0133, true),
        (9, 0.013751, 0.0140, true),
        (10, 0.015468, 0.0158, true),
        (11, 0.016568, 0.0173, true),
        (12, 0.017798, 0.0181, true),
        (13, 0.018880, 0.0190, true),
        (14, 0.019966, 0.0203, true),
        (15, 0.021046, 0.0212, true),
        (16, 0.022127, 0.0223, true),
        (17, 0.023215, 0.0235, true),
        (18, 0.024332, 0.0245, true),
        (19, 0.025436, 0.0262, true),
        (20, 0.026519, 0.0267, false),
        (21, 0.032015, 0.0324, false),
        (22, 0.250722, 0.2513, false),
        (23, 0.501692, 0.5024, false),
    ];

    /// Found in real runs against the simulator's 20 per rolling second,
    /// 3 in 20 taking 1.4–1.9×: the 8th request of the first run went over
    /// a new connection and reached the server some 4 ms after it was sent.
    /// A second later the request 20 after it went at the proven span from
    /// its sending, was refused, and the refusal read as "the limit takes
    /// fewer": N was halved to 10 for the rest of the run. A request far
    /// slower on its round trip than the rest is now taken to have arrived
    /// that much later: the next waits for it, and a refusal that its
    /// lateness explains says nothing of N.
    #[test]
    fn a_request_late_to_the_server_is_waited_for_and_does_not_cut_n() {
        let mut run = FIRST_RUN.to_vec();
        run.extend([
            (24, 1.001798, 1.0023, true),
            (25, 1.002902, 1.0036, true),
            (26, 1.003988, 1.0042, true),
            (27, 1.005082, 1.0054, true),
            (28, 1.006181, 1.0063, true),
            (29, 1.007286, 1.0075, true),
            (30, 1.008381, 1.0085, true),
        ]);
        let mut m = replay(&run, 22);
        assert_eq!(m.n, 20);
        // Sent at the proven span after the 8th (the one trial shorter, as
        // far as the send times tell), and refused.
        m.record(31, 1.009484);
        m.refused(31, 1.0098, None);
        assert_eq!(m.n, 20, "{}", m.debug());
        // The 8th was answered at 0.0132: the next goes alone, a span
        // after that, near enough.
        let ready = m.ready_at();
        assert!(ready >= 0.0125 + m.hi, "ready at {ready}: {}", m.debug());
    }

    /// Found in review: an answer slow with the server's own time (its
    /// limit counted the request on time) was read as a late arrival, and
    /// the request N after it waited 5 % of the span, a delay every N-th
    /// request after it kept. A late arrival is now taken as at most 1 % of
    /// the span: the few milliseconds of a new connection.
    #[test]
    fn an_answer_slow_with_the_server_s_time_holds_little_back() {
        let mut m = Mirror::new();
        for seq in 0..20u64 {
            let at = seq as f64 * 0.001;
            m.record(seq, at);
            let trip = if seq == 5 {
                0.2
            } else {
                0.002 + (seq % 3) as f64 * 0.0005
            };
            m.accepted(seq, at + trip);
        }
        m.record(20, 0.02);
        m.refused(20, 0.022, None);
        assert!(m.take_over(0.022));
        m.hi = 1.0;
        m.lo = 0.99;
        m.refused_last = false;
        let mut sent: Vec<f64> = Vec::new();
        for seq in 21..=66u64 {
            let at = m.ready_at().max(sent.last().map_or(0.0, |t| t + 0.001));
            m.record(seq, at);
            m.accepted(seq, at + 0.002);
            sent.push(at);
        }
        // The 26th went 20 after the slow one (sent at 0.005), the 46th and
        // the 66th one and two spans later.
        for (i, span) in [(5, 1.0), (25, 2.0), (45, 3.0)] {
            let late = sent[i] - (0.005 + span);
            assert!(late < 0.015, "{} went {late:.4} s past its time", 21 + i);
        }
    }
}
