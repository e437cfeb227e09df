//! The controller against models of real limits on a virtual clock: a run of
//! hundreds of rows at concurrency 8, every attempt paced by the controller,
//! every answer decided by [`Limiter`], retries by the real retry policy.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use super::*;
use crate::client::retry::{RetryPolicy, retry_wait};
use crate::sim::{HeaderStyle, Limiter, Refused, Shape};

/// One-way network delay, seconds, plus up to as much again of jitter.
const LATENCY: f64 = 0.001;

/// The one-way delay and its jitter, seconds: [`LATENCY`] and as much
/// again, or `PACING_LATENCY="0.025 0.002"` (25 ms plus up to 2 ms), to
/// see the controller at an internet's distance from the server.
fn latency() -> (f64, f64) {
    std::env::var("PACING_LATENCY")
        .ok()
        .and_then(|v| {
            let mut words = v.split_whitespace().map(|w| w.parse::<f64>());
            match (words.next(), words.next()) {
                (Some(Ok(base)), Some(Ok(jitter))) => Some((base, jitter)),
                _ => None,
            }
        })
        .unwrap_or((LATENCY, LATENCY))
}
/// The server's own time on each request, seconds, between the two figures
/// of `PACING_PROCESSING="0.05 0.5"` (none unless set): after its limit
/// took or refused it, before the answer goes back.
fn processing() -> Option<(f64, f64)> {
    let v = std::env::var("PACING_PROCESSING").ok()?;
    let mut words = v.split_whitespace().map(|w| w.parse::<f64>());
    match (words.next(), words.next()) {
        (Some(Ok(lo)), Some(Ok(hi))) if lo >= 0.0 && hi >= lo => Some((lo, hi)),
        _ => None,
    }
}
const UNIX_ORIGIN: f64 = 1_700_000_000.0;

#[derive(Debug)]
pub struct Outcome {
    pub updated: u64,
    pub failed: u64,
    pub throttles: u64,
    pub first_success: f64,
    pub last_success: f64,
    pub learned: Option<Learned>,
    /// The lowest the controller ever bounded the limit from above.
    pub lowest_upper: f64,
    /// Every permit's time, in order.
    pub permits: Vec<f64>,
}

impl Outcome {
    /// First-to-last success, over the least time `server`'s limit allows
    /// for `rows` at `asked`.
    pub fn ratio(&self, server: Server, rows: u64, asked: Option<f64>) -> f64 {
        (self.last_success - self.first_success) / server.shape.greedy_seconds(rows, asked)
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Server {
    pub shape: Shape,
    pub retry_after: bool,
    pub headers: HeaderStyle,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Ready,
    Arrive,
    Answer,
}

/// Runs `rows` rows through the controller against `server`.
pub fn run(server: Server, rows: u64, asked: Option<f64>, burst: u32, seed: u64) -> Outcome {
    run_around(server, rows, asked, burst, seed, Around::from_env())
}

/// [`run`], the server's clock `phase` seconds ahead of the run's.
pub fn run_at(
    server: Server,
    rows: u64,
    asked: Option<f64>,
    burst: u32,
    seed: u64,
    phase: f64,
) -> Outcome {
    let around = Around {
        phase,
        ..Around::from_env()
    };
    run_around(server, rows, asked, burst, seed, around)
}

/// What surrounds a run besides the limit itself.
#[derive(Clone, Copy, Debug)]
pub struct Around {
    /// How far the server's clock stands ahead of the run's, seconds.
    pub phase: f64,
    /// Another client taking from the same limit from `.0` seconds on,
    /// `.1` requests a second (not in step with the run).
    pub other: Option<(f64, f64)>,
    /// The one-way network delay and up to how much more, seconds.
    pub delay: f64,
    pub jitter: f64,
    /// The server's own time on each request, between the two figures
    /// (seconds, evenly spread), after its limit decides.
    pub processing: Option<(f64, f64)>,
    /// The share of requests the server refuses (429, `Retry-After: 1`) at
    /// random, whatever its limit says: the built-in simulator's demo
    /// fault, or a gateway in front of the API.
    pub refused_at_random: f64,
    /// The limit spent before the run begins (a run started right after
    /// another, or another client just used it up).
    pub drained: bool,
}

impl Around {
    /// `delay` each way plus up to `jitter`, nothing else around the run.
    pub fn at(delay: f64, jitter: f64) -> Around {
        Around {
            phase: 0.0,
            other: None,
            delay,
            jitter,
            processing: None,
            refused_at_random: 0.0,
            drained: false,
        }
    }

    /// What the environment asks for: `PHASE=0.3` (the server's clock that
    /// far into its window, seconds, when the run begins),
    /// `PACING_LATENCY` and `PACING_PROCESSING`.
    pub fn from_env() -> Around {
        let (delay, jitter) = latency();
        Around {
            phase: std::env::var("PHASE").map_or(0.0, |p| p.parse().unwrap_or(0.0)),
            processing: processing(),
            ..Around::at(delay, jitter)
        }
    }
}

/// [`run`] in the surroundings `around`.
pub fn run_around(
    server: Server,
    rows: u64,
    asked: Option<f64>,
    burst: u32,
    seed: u64,
    around: Around,
) -> Outcome {
    let Around {
        phase,
        other,
        delay,
        jitter,
        processing,
        refused_at_random,
        drained,
    } = around;
    let mut random_rng = fastrand::Rng::with_seed(seed ^ 0x7a11);
    let mut other_next = other.map_or(f64::INFINITY, |(from, _)| from);
    let mut last_admit = f64::NEG_INFINITY;
    let mut other_rng = fastrand::Rng::with_seed(seed ^ 0x5eed);
    let mut processing_rng = fastrand::Rng::with_seed(seed ^ 0x9e37);
    let mut controller = Controller::new(asked, burst);
    let mut limiter = Limiter::new(server.shape);
    if drained {
        while limiter.admit(phase).is_ok() {}
    }
    let policy = RetryPolicy::new(5);
    let mut rng = fastrand::Rng::with_seed(seed);
    // (time in ns, tie-breaker, kind, worker)
    let mut events: BinaryHeap<Reverse<(u64, u64, Kind, usize)>> = BinaryHeap::new();
    let ns = |t: f64| (t * 1e9).round() as u64;
    let mut tie = 0;
    let mut push = |events: &mut BinaryHeap<_>, t: f64, kind: Kind, worker: usize| {
        tie += 1;
        events.push(Reverse((ns(t), tie, kind, worker)));
    };
    let concurrency = 8;
    // Rows open at once, as a run keeps them (`WORKERS=8` for another
    // count): a row waiting to retry holds none of the `concurrency` slots
    // for requests in flight.
    let open = concurrency * crate::client::call::ROWS_PER_SLOT;
    let workers: usize = std::env::var("WORKERS").map_or(open, |w| w.parse().unwrap_or(open));
    let mut in_flight = 0;
    // Per worker: its row's attempts, the permit in flight, the answer.
    let mut attempts = vec![0u32; workers];
    let mut permit_of = vec![None::<Permit>; workers];
    // The server's answer and when it gave it.
    let mut answer_of: Vec<Option<(Result<crate::sim::Standing, crate::sim::Refused>, f64)>> =
        vec![None; workers];
    let mut next_row = 0;
    for worker in 0..workers {
        if next_row < rows {
            next_row += 1;
            push(&mut events, 0.0, Kind::Ready, worker);
        }
    }
    let mut waiting: VecDeque<usize> = VecDeque::new();
    let mut out = Outcome {
        updated: 0,
        failed: 0,
        throttles: 0,
        first_success: f64::NAN,
        last_success: f64::NAN,
        learned: None,
        lowest_upper: f64::INFINITY,
        permits: Vec::new(),
    };
    let mut clock = 0.0_f64;
    // PACING_TRACE="window:20:1 retry-after=true headers=None asked=100"
    // prints the run of that one cell, event by event.
    let label = format!(
        "{} retry-after={} headers={:?} asked={}",
        server.shape,
        server.retry_after,
        server.headers,
        asked.map_or("unlimited".to_string(), |a| a.to_string())
    );
    let trace = std::env::var("PACING_TRACE").is_ok_and(|wanted| wanted == label);
    let mut last_pace = None;
    loop {
        if trace && controller.pace() != last_pace {
            last_pace = controller.pace();
            let (lower, upper) = controller.bounds();
            eprintln!(
                "{clock:7.3} pace {:?} bounds {lower:.2}..{upper:.2} ok {} 429 {}",
                last_pace.map(|p| (p * 100.0).round() / 100.0),
                out.updated,
                out.throttles
            );
        }
        let next_event = events.peek().map(|Reverse((t, ..))| *t as f64 / 1e9);
        let next_permit = (!waiting.is_empty() && in_flight < concurrency)
            .then(|| controller.ready_at().max(clock));
        let permit_first = match (next_permit, next_event) {
            (Some(p), Some(e)) => p <= e,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        if permit_first {
            let t = next_permit.expect("checked");
            clock = t;
            let worker = waiting.pop_front().expect("checked");
            let permit = controller.grant(t);
            if trace
                && (std::env::var("TRACE_ALL").is_ok()
                    || permit.seq < 22
                    || permit.seq.is_multiple_of(20)
                    || permit.seq > 190)
            {
                eprintln!("{t:7.3} permit {} {}", permit.seq, controller.debug_line());
            }
            out.permits.push(t);
            in_flight += 1;
            permit_of[worker] = Some(permit);
            attempts[worker] += 1;
            let up = delay + jitter * rng.f64();
            push(&mut events, t + up, Kind::Arrive, worker);
            continue;
        }
        let Reverse((t, _, kind, worker)) = events.pop().expect("checked");
        clock = t as f64 / 1e9;
        match kind {
            Kind::Ready => waiting.push_back(worker),
            Kind::Arrive => {
                // (What it sent long ago weighs on no limit here.)
                other_next = other_next.max(clock - 10.0);
                while other_next <= clock
                    && let Some((_, rate)) = other
                {
                    // The other client's requests due by now, in order.
                    last_admit = last_admit.max(other_next);
                    let _ = limiter.admit(last_admit + phase);
                    // Not in step with the run: a client of its own.
                    other_next += (0.5 + other_rng.f64()) / rate;
                }
                last_admit = last_admit.max(clock);
                let mut answer = limiter.admit(last_admit + phase);
                if refused_at_random > 0.0
                    && random_rng.f64() < refused_at_random
                    && let Ok(standing) = answer
                {
                    answer = Err(Refused {
                        wait: 1.0,
                        standing,
                    });
                }
                answer_of[worker] = Some((answer, clock));
                let mut down = delay + jitter * rng.f64();
                if let Some((lo, hi)) = processing {
                    down += lo + (hi - lo) * processing_rng.f64();
                }
                push(&mut events, clock + down, Kind::Answer, worker);
            }
            Kind::Answer => {
                in_flight -= 1;
                out.lowest_upper = out.lowest_upper.min(controller.bounds().1);
                let permit = permit_of[worker].expect("sent");
                let (answer, answered_at) = answer_of[worker].take().expect("arrived");
                let standing = match &answer {
                    Ok(s) => *s,
                    Err(r) => r.standing,
                };
                // Written at the server's time (a Unix-time reset from the
                // server's clock, which is the run's).
                let fields = standing.headers(server.headers, UNIX_ORIGIN + answered_at);
                let quota = super::super::quota::Quota::from_headers(
                    |name| {
                        fields
                            .iter()
                            .find(|(n, _)| *n == name)
                            .map(|(_, v)| v.as_str())
                    },
                    UNIX_ORIGIN + clock,
                );
                let next_row_for = |next_row: &mut u64, events: &mut BinaryHeap<_>, push: &mut dyn FnMut(&mut BinaryHeap<_>, f64, Kind, usize)| {
                    if *next_row < rows {
                        *next_row += 1;
                        push(events, clock, Kind::Ready, worker);
                    }
                };
                match answer {
                    Ok(_) => {
                        controller.on_success(permit, clock, quota);
                        out.updated += 1;
                        if out.first_success.is_nan() {
                            out.first_success = clock;
                        }
                        out.last_success = clock;
                        attempts[worker] = 0;
                        next_row_for(&mut next_row, &mut events, &mut push);
                    }
                    Err(refused) => {
                        out.throttles += 1;
                        if trace {
                            eprintln!(
                                "{clock:7.3} 429 seq {} sent {:.3} {quota:?} {fields:?}",
                                permit.seq, permit.at
                            );
                        }
                        let retry_after = server.retry_after.then(|| refused.wait.ceil().max(1.0));
                        let row_wait = controller.on_throttled(permit, clock, retry_after, quota);
                        if attempts[worker] >= policy.max_attempts {
                            out.failed += 1;
                            attempts[worker] = 0;
                            next_row_for(&mut next_row, &mut events, &mut push);
                        } else {
                            let wait = retry_wait(
                                &policy,
                                attempts[worker],
                                rng.f64(),
                                retry_after.map(std::time::Duration::from_secs_f64),
                            )
                            .as_secs_f64()
                            .max(row_wait);
                            push(&mut events, clock + wait, Kind::Ready, worker);
                        }
                    }
                }
            }
        }
    }
    out.lowest_upper = out.lowest_upper.min(controller.bounds().1);
    out.learned = controller.learned();
    out
}

/// First-to-last success of a client that knows the limit exactly: each
/// request goes when the server will take it (and no faster than asked),
/// with the same concurrency, network and server time as [`run_around`]
/// (drawn alike, not the same draws). With the server's own time varying,
/// eight requests in flight carry only so many a second, and a greedy
/// client's time (`greedy_seconds`) is out of anyone's reach: this is.
pub fn oracle_seconds(
    server: Server,
    rows: u64,
    asked: Option<f64>,
    seed: u64,
    around: Around,
) -> f64 {
    let Around {
        phase,
        delay,
        jitter,
        processing,
        drained,
        ..
    } = around;
    let mut limiter = Limiter::new(server.shape);
    if drained {
        while limiter.admit(phase).is_ok() {}
    }
    let mut rng = fastrand::Rng::with_seed(seed ^ 0x0a11);
    let concurrency = 8;
    // When each slot is free again.
    let mut free = vec![0.0_f64; concurrency];
    let mut last_send = f64::NEG_INFINITY;
    let mut last_arrival = f64::NEG_INFINITY;
    let spacing = asked.map_or(0.0, |a| 1.0 / a);
    let (mut first, mut last) = (f64::INFINITY, f64::NEG_INFINITY);
    for _ in 0..rows {
        let slot = (0..concurrency)
            .min_by(|&a, &b| free[a].total_cmp(&free[b]))
            .expect("slots");
        let up = delay + jitter * rng.f64();
        let send = free[slot].max(last_send + spacing);
        let mut arrival = (send + up).max(last_arrival);
        let mut peek = limiter.clone();
        for _ in 0..100 {
            match peek.admit(arrival + phase) {
                Ok(_) => break,
                Err(refused) => {
                    arrival += refused.wait.max(1e-9) + 1e-9;
                    peek = limiter.clone();
                }
            }
        }
        let _ = limiter.admit(arrival + phase);
        last_arrival = arrival;
        last_send = arrival - up;
        let mut down = delay + jitter * rng.f64();
        if let Some((lo, hi)) = processing {
            down += lo + (hi - lo) * rng.f64();
        }
        let answered = arrival + down;
        free[slot] = answered;
        first = first.min(answered);
        last = last.max(answered);
    }
    last - first
}

/// One line for a cell that missed its goal.
fn missed_cell(server: Server, asked: f64, seed: u64, ratio: f64, throttles: u64) -> String {
    format!(
        "{} retry-after {} {:?} asked {asked} seed {seed}: {ratio:.3}, {throttles} × 429",
        server.shape, server.retry_after, server.headers
    )
}

/// A limit of `shape` (as `simulate --limit` writes it) stating nothing of
/// itself.
fn silent(shape: &str, retry_after: bool) -> Server {
    Server {
        shape: shape.parse().expect("a shape"),
        retry_after,
        headers: HeaderStyle::None,
    }
}

fn every_server() -> Vec<Server> {
    let shapes = [
        Shape::Bucket {
            rate: 20.0,
            burst: 1,
        },
        Shape::Bucket {
            rate: 20.0,
            burst: 5,
        },
        Shape::Bucket {
            rate: 20.0,
            burst: 40,
        },
        Shape::Sliding {
            n: 20,
            seconds: 1.0,
        },
        Shape::Sliding {
            n: 60,
            seconds: 3.0,
        },
        Shape::Window {
            n: 20,
            seconds: 1.0,
        },
        Shape::Window {
            n: 100,
            seconds: 5.0,
        },
    ];
    let mut servers = Vec::new();
    for shape in shapes {
        for retry_after in [true, false] {
            for headers in [
                HeaderStyle::None,
                HeaderStyle::Ietf,
                HeaderStyle::IetfStructured,
                HeaderStyle::X,
                HeaderStyle::XEpoch,
            ] {
                servers.push(Server {
                    shape,
                    retry_after,
                    headers,
                });
            }
        }
    }
    servers
}

struct Cell {
    server: Server,
    asked: f64,
    out: Outcome,
    ratio: f64,
}

impl Cell {
    fn line(&self) -> String {
        format!(
            "{:<16} retry-after {:<5} headers {:<15?} asked {:<5} ratio {:.3} 429s {:3} updated {} learned {:?}",
            self.server.shape.to_string(),
            self.server.retry_after,
            self.server.headers,
            self.asked,
            self.ratio,
            self.out.throttles,
            self.out.updated,
            self.out.learned.map(|l| (l.limit * 10.0).round() / 10.0)
        )
    }

    fn meets_the_goal(&self, rows: u64) -> bool {
        self.out.updated == rows
            && self.ratio <= 1.15
            && self.out.throttles as f64 <= 0.05 * rows as f64
    }
}

const ROWS: u64 = 200;

fn every_cell() -> Vec<Cell> {
    let mut cells = Vec::new();
    for server in every_server() {
        for asked in [100.0, 1000.0] {
            let out = run(server, ROWS, Some(asked), 1, 7);
            let ratio = out.ratio(server, ROWS, Some(asked));
            cells.push(Cell {
                server,
                asked,
                out,
                ratio,
            });
        }
    }
    cells
}

/// Whatever the shape, every row ends updated: no row runs out of attempts.
#[test]
fn every_shape_ends_with_every_row_updated() {
    for cell in every_cell() {
        assert_eq!(cell.out.updated, ROWS, "{}", cell.line());
        assert_eq!(cell.out.failed, 0, "{}", cell.line());
        assert!(cell.out.learned.is_some(), "{}", cell.line());
    }
}

/// The goal — within 1.15× of the least time the limit allows at the asked
/// rate, 429s on at most 5 % of the rows — for every shape, with and
/// without Retry-After and rate-limit headers, asked 5× and 50× the limit.
#[test]
fn meets_the_goal_for_every_shape() {
    let mut missed = Vec::new();
    for cell in every_cell() {
        eprintln!("{}", cell.line());
        if !cell.meets_the_goal(ROWS) {
            missed.push(cell.line());
        }
    }
    assert!(missed.is_empty(), "missed:\n{}", missed.join("\n"));
}

/// Found at 50× a bucket of one stating nothing (seed 9: 11 × 429 on 200
/// rows, and 10 in most other seeds): under it by half after the first
/// refusals, the pace climbed by bisection, a step past the limit each
/// time it sat just over the pace (five 429s from 19.2/s to 19.9/s against
/// 20/s). Such a bucket refuses the first request that comes too soon, so
/// a step past its rate costs one 429: the climb now goes from a 10 %
/// step, doubled while steps hold. Over ten seeds, asked 5× and 50×: the goal every time (and
/// over a hundred, BENCHMARKS.md).
#[test]
fn a_bucket_of_one_is_climbed_to_in_growing_steps() {
    for asked in [100.0, 1000.0] {
        for retry_after in [true, false] {
            let server = Server {
                shape: Shape::Bucket {
                    rate: 20.0,
                    burst: 1,
                },
                retry_after,
                headers: HeaderStyle::None,
            };
            for seed in 1..=10 {
                let out = run(server, ROWS, Some(asked), 1, seed);
                let ratio = out.ratio(server, ROWS, Some(asked));
                let line = format!(
                    "asked {asked}, retry-after {retry_after}, seed {seed}: {ratio:.3}, {} × 429",
                    out.throttles
                );
                assert_eq!(out.updated, ROWS, "{line}");
                assert!(ratio <= 1.15, "{line}");
                assert!(out.throttles <= ROWS / 20, "{line}");
            }
        }
    }
}

/// Against a server without a limit, the permits are the asked pacing: at
/// most `burst + rate × T` in any span T — decided by the controller, so it
/// holds however busy the host.
#[test]
fn permits_never_exceed_burst_plus_rate_times_t() {
    let server = Server {
        shape: Shape::Bucket {
            rate: 1e6,
            burst: 1_000_000,
        },
        retry_after: true,
        headers: HeaderStyle::None,
    };
    for (rate, burst) in [(20.0, 3), (25.0, 1), (50.0, 10)] {
        let out = run(server, 120, Some(rate), burst, 3);
        let permits = &out.permits;
        for i in 0..permits.len() {
            for j in i + 1..permits.len() {
                let span = permits[j] - permits[i];
                let count = (j - i + 1) as f64;
                assert!(
                    count <= f64::from(burst) + rate * span + 1e-6,
                    "{count} permits in {span:.4}s at {rate}/s burst {burst}"
                );
            }
        }
    }
}

/// After a 429, waiting requests are never released together: every permit
/// is spaced by the pace in force, whatever the pause.
#[test]
fn after_a_pause_permits_are_spaced() {
    let server = Server {
        shape: Shape::Bucket {
            rate: 20.0,
            burst: 1,
        },
        retry_after: true,
        headers: HeaderStyle::None,
    };
    let out = run(server, 100, Some(100.0), 1, 5);
    let gaps: Vec<f64> = out.permits.windows(2).map(|p| p[1] - p[0]).collect();
    // The first two go 1/100 s apart; after the first 429 no two permits are
    // closer than the slowest pace the run used could allow at 100/s.
    assert!(gaps.iter().skip(1).all(|g| *g >= 0.01 - 1e-9), "{gaps:?}");
}

/// Found at 50× a bucket of 40 stating `X-RateLimit-Limit: 20` and no
/// window: its reset reads 0 while a token is left, so the quota was first
/// known at the 429 that ended the burst; the 40 requests before were
/// charged to the pace as a window's would be (2 s of nothing), and the
/// 429 paused the run for the whole second its reset rounded up to (1.3×
/// the least time). More remaining than the stated limit is a bucket, whose
/// credit is not charged and which refills within an interval.
#[test]
fn a_bucket_stating_no_window_is_not_paced_as_a_window() {
    for headers in [HeaderStyle::X, HeaderStyle::XEpoch] {
        let server = Server {
            shape: Shape::Bucket {
                rate: 20.0,
                burst: 40,
            },
            retry_after: false,
            headers,
        };
        for seed in 1..=4 {
            let out = run(server, ROWS, Some(1000.0), 1, seed);
            let ratio = out.ratio(server, ROWS, Some(1000.0));
            assert_eq!(out.updated, ROWS);
            assert!(ratio <= 1.08, "{headers:?} seed {seed}: {ratio:.3}");
            assert!(
                out.throttles <= 5,
                "{headers:?} seed {seed}: {}",
                out.throttles
            );
        }
    }
}

/// Found at 50× a bucket holding a burst, stating nothing (seed 7: 13 and
/// 14 × 429): the pace came down by halves past a measure of the rate
/// between two 429s, then climbed back on calm stretches that were only
/// the burst draining, each such "proof" a 429 later, and the lower bound
/// it left a false one. Now the successes between two refusals bound the
/// rate from below for certain and set the pace, and only what the bucket
/// took since it was last found empty proves a pace. Over ten seeds, 429s
/// on about 5 % of the rows (one seed in forty draws 11), none past 1.15×.
#[test]
fn a_bucket_holding_a_burst_is_measured_between_its_429s() {
    for burst in [5, 40] {
        for retry_after in [true, false] {
            let server = Server {
                shape: Shape::Bucket { rate: 20.0, burst },
                retry_after,
                headers: HeaderStyle::None,
            };
            let mut total = 0;
            for seed in 1..=10 {
                let out = run(server, ROWS, Some(1000.0), 1, seed);
                let ratio = out.ratio(server, ROWS, Some(1000.0));
                let line = format!(
                    "{server:?} seed {seed}: {ratio:.3}, {} × 429",
                    out.throttles
                );
                assert_eq!(out.updated, ROWS, "{line}");
                assert!(ratio <= 1.15, "{line}");
                assert!(out.throttles <= 11, "{line}");
                total += out.throttles;
            }
            assert!(total <= 10 * 10, "{server:?}: {total} × 429 over ten seeds");
        }
    }
}

/// Every cell over ten seeds (jitter and retry waits differ): the worst
/// ratio and 429s of each. `cargo test --lib across_seeds -- --ignored
/// --nocapture` prints it (`ASKED="27"` for other asked rates); a tuning
/// aid, not a check.
#[test]
#[ignore]
fn across_seeds() {
    // ASKED="27 100": other asked rates (the limits allow 20/s).
    let asked_rates: Vec<f64> = std::env::var("ASKED").map_or(vec![100.0, 1000.0], |v| {
        v.split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect()
    });
    for server in every_server() {
        for &asked in &asked_rates {
            let (mut worst, mut most, mut sum) = (0.0_f64, 0, 0.0);
            let mut worst_oracle = 0.0_f64;
            for seed in 1..=10 {
                let out = run(server, ROWS, Some(asked), 1, seed);
                let ratio = out.ratio(server, ROWS, Some(asked));
                worst = worst.max(ratio);
                sum += ratio;
                most = most.max(out.throttles);
                let oracle = oracle_seconds(server, ROWS, Some(asked), seed, Around::from_env());
                worst_oracle = worst_oracle.max((out.last_success - out.first_success) / oracle);
            }
            eprintln!(
                "{:<16} retry-after {:<5} headers {:<15?} asked {:<5} mean {:.3} worst {:.3} most-429s {} vs-oracle {:.3}",
                server.shape.to_string(),
                server.retry_after,
                server.headers,
                asked,
                sum / 10.0,
                worst,
                most,
                worst_oracle
            );
        }
    }
}

/// One cell over ten seeds: `CELL="window:20:1 false 1000 [Ietf]" cargo test
/// --lib one_cell_by_seed -- --ignored --nocapture` (and `SEEDS=3` for one
/// seed, with `PACING_TRACE` to follow it).
#[test]
#[ignore]
fn one_cell_by_seed() {
    let Ok(cell) = std::env::var("CELL") else {
        return;
    };
    let words: Vec<&str> = cell.split_whitespace().collect();
    let (shape, retry_after, asked, headers) = match words[..] {
        [shape, retry_after, asked] => (shape, retry_after, asked, "None"),
        [shape, retry_after, asked, headers] => (shape, retry_after, asked, headers),
        _ => panic!("CELL=\"SHAPE RETRY-AFTER ASKED [HEADERS]\""),
    };
    let headers = [
        HeaderStyle::None,
        HeaderStyle::Ietf,
        HeaderStyle::IetfStructured,
        HeaderStyle::X,
        HeaderStyle::XEpoch,
    ]
    .into_iter()
    .find(|style| format!("{style:?}") == headers)
    .expect("None, Ietf, IetfStructured, X or XEpoch");
    let server = Server {
        shape: shape.parse().expect("a shape"),
        retry_after: retry_after == "true",
        headers,
    };
    let asked: f64 = asked.parse().expect("a rate");
    // SEEDS=3 for one seed, SEEDS=1..100 for a range.
    let seeds = std::env::var("SEEDS").map_or(1..=10, |s| match s.split_once("..") {
        Some((from, to)) => from.parse().expect("a seed")..=to.parse().expect("a seed"),
        None => {
            let n: u64 = s.parse().expect("a seed");
            n..=n
        }
    });
    for seed in seeds {
        let out = run(server, ROWS, Some(asked), 1, seed);
        let ratio = out.ratio(server, ROWS, Some(asked));
        eprintln!("seed {seed} ratio {ratio:.3} 429s {}", out.throttles);
    }
}

/// Random sliding logs and fixed windows (2–60 per 0.2–5.2 s), asked
/// 100/s, 1000/s or unlimited at concurrency 8, with 1–21 ms each way of
/// jitter (answers overtaking each other), now and then an answer lost or
/// three seconds slow, and Retry-After honest, absent or always 1: two
/// minutes of sending each. Found in review: a run cut short by answers
/// overtaking each other, requests in flight counted as taken, a stale
/// Retry-After drawing a 429 per round trip, one slow answer stretching
/// every span, a lost probe held for good. Now no seed stalls, none draws a
/// storm of 429s, and none goes below a fifth of what the limit allows
/// (the slowest: windows of a fifth of a second, paced evenly).
/// (`SEEDS=2000` for more; the worst are printed.)
#[test]
fn random_limits_with_jitter_reordering_and_lost_answers() {
    let seeds: u64 = std::env::var("SEEDS").map_or(300, |s| s.parse().unwrap_or(300));
    let mut below_half = 0;
    for seed in 0..seeds {
        let mut rng = fastrand::Rng::with_seed(seed);
        let ceiling = [None, Some(1000.0), Some(100.0)][rng.usize(0..3)];
        let mut c = Controller::new(ceiling, 1);
        let n = rng.usize(2..60);
        let span = 0.2 + rng.f64() * 5.0;
        let window = rng.bool();
        let retry_after = rng.u8(0..3); // none, honest, always 1
        let (lose, slow) = (rng.u8(0..4) == 0, rng.u8(0..4) == 0);
        let mut log: VecDeque<f64> = VecDeque::new();
        let (mut window_start, mut window_count) = (0.0_f64, 0_usize);
        // (answered at, permit, taken, the server's wait)
        let mut in_flight: Vec<(f64, Permit, bool, f64)> = Vec::new();
        let (mut now, mut taken, mut refused) = (0.0_f64, 0_u64, 0_u64);
        while now < 120.0 {
            let ready = c.ready_at();
            assert!(!ready.is_nan(), "seed {seed}");
            assert!(
                ready < now + 700.0,
                "seed {seed}: stalled until {ready} at {now}"
            );
            let next = in_flight.iter().map(|x| x.0).fold(f64::INFINITY, f64::min);
            if in_flight.len() < 8 && ready.max(now) <= next {
                now = ready.max(now);
                let permit = c.grant(now);
                let arrive = now + 0.001 + rng.f64() * 0.02;
                let (ok, wait) = if window {
                    if arrive >= window_start + span {
                        window_start = (arrive / span).floor() * span;
                        window_count = 0;
                    }
                    let ok = window_count < n;
                    window_count += usize::from(ok);
                    (ok, window_start + span - arrive)
                } else {
                    while log.front().is_some_and(|&t| t <= arrive - span) {
                        log.pop_front();
                    }
                    let ok = log.len() < n;
                    if ok {
                        log.push_back(arrive);
                    }
                    (ok, log.front().map_or(0.0, |&t| t + span - arrive))
                };
                let mut back = 0.001 + rng.f64() * 0.02;
                if slow && rng.u8(0..20) == 0 {
                    back += 3.0;
                }
                if lose && rng.u8(0..40) == 0 {
                    continue; // no answer: the worker gives up on it
                }
                in_flight.push((arrive + back, permit, ok, wait));
            } else if next.is_finite() {
                let i = in_flight.iter().position(|x| x.0 == next).expect("found");
                let (at, permit, ok, wait) = in_flight.swap_remove(i);
                now = at;
                if ok {
                    taken += 1;
                    c.on_success(permit, now, None);
                } else {
                    refused += 1;
                    let asked = match retry_after {
                        0 => None,
                        1 => Some(wait.ceil().max(1.0)),
                        _ => Some(1.0),
                    };
                    c.on_throttled(permit, now, asked, None);
                }
            } else {
                now = ready.max(now + 0.001);
            }
        }
        // What 8 workers can send when one answer in twenty takes 3 s
        // longer bounds it too.
        let round_trip = 0.022 + if slow { 0.15 } else { 0.0 };
        let allowed = (n as f64 / span)
            .min(ceiling.unwrap_or(f64::INFINITY))
            .min(8.0 / round_trip)
            * 120.0;
        let share = taken as f64 / allowed;
        let line = format!(
            "seed {seed}: {} {n} per {span:.2} s, retry-after {retry_after}, ceiling {ceiling:?}, lose {lose} slow {slow}: {share:.2} of allowed, {refused} × 429, {:?}",
            if window { "window" } else { "log" },
            c.learned().map(|l| l.describe())
        );
        if share < 0.5 {
            below_half += 1;
            eprintln!("{line}");
        }
        assert!(share >= 0.2, "{line}");
        assert!(
            refused as f64 <= 0.2 * taken as f64 + 25.0,
            "a storm of 429s: {line}"
        );
    }
    eprintln!("{below_half} of {seeds} below half of what the limit allows");
}

/// Found by bench step (g): a fixed window whose boundary does not fall where
/// the run began (the simulator's clock is its own) took 1.6× the least
/// time. Swept across where the boundary falls, it took up to 1.8× (2.4×
/// asked 50×): a refusal past a span it had taken stretched the span in
/// steps that overshot and never came back; a Retry-After's middle, or a
/// look a little shorter, proved a span a window only happened to take; a
/// refusal that ended at the boundary soon after it began was read as a
/// bucket's and cut the pace to a tenth. Now a window refused past its
/// span is looked for again at round spans, an accepted look sets it no
/// longer than the round span under it, a refusal longer than the proven
/// pace allows is a spell. A first burst across a boundary takes from two
/// windows; once the limit is known for a window, a burst after a quiet
/// that is refused early says what one takes (once, and by half at most).
/// Open: a boundary in the first twentieth of the run's first burst,
/// without Retry-After, still costs 1.45× over 200 rows (1.8× asked 50×):
/// the end of the refusal is looked for at round spans from the burst's
/// first request, which went in the window before, so each look lands
/// just short of a boundary.
#[test]
fn a_fixed_window_out_of_step_with_the_run() {
    for retry_after in [true, false] {
        let server = Server {
            shape: Shape::Window {
                n: 20,
                seconds: 1.0,
            },
            retry_after,
            headers: HeaderStyle::None,
        };
        let mut phases = vec![0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95];
        if retry_after {
            phases.push(0.99);
        }
        for phase in phases {
            for seed in 1..=3 {
                for asked in [100.0, 1000.0] {
                    let out = run_at(server, ROWS, Some(asked), 1, seed, phase);
                    let ratio = out.ratio(server, ROWS, Some(asked));
                    let cell = format!(
                        "retry-after {retry_after} phase {phase} seed {seed} asked {asked}: \
                         {ratio:.3}, {} × 429",
                        out.throttles
                    );
                    assert_eq!(out.updated, ROWS, "{cell}");
                    assert!(ratio <= 1.15, "{cell}");
                    let most = if asked > 100.0 { 20 } else { 10 };
                    assert!(out.throttles <= most, "{cell}");
                }
            }
        }
    }
}

/// Found asking 50× of a limit that refuses in spells and says nothing of
/// itself (no Retry-After, no header fields): over ten seeds 10–11 × 429
/// on 200 rows. After the run's first 429 the look that told a spell from
/// a bucket went a twentieth of a second after the episode began, and was
/// refused: one 429 that taught the log mirror nothing it would not learn
/// at its first round span (and, when the start took only ~20 ms, a span
/// so short its search first tried half a round span more). Now that look
/// goes no sooner than a quarter second after the run's first request, and
/// is the search's first round span: at most 10 × 429 in every seed (8 for
/// spans of a second), none past 1.15×.
#[test]
fn a_silent_spell_is_told_from_a_bucket_at_the_first_round_span() {
    let shapes = [
        ("sliding:20:1", 8),
        ("window:20:1", 8),
        ("sliding:60:3", 10),
        ("window:100:5", 10),
    ];
    for (shape, most) in shapes {
        let server = Server {
            shape: shape.parse().expect("a shape"),
            retry_after: false,
            headers: HeaderStyle::None,
        };
        for seed in 1..=10 {
            let out = run(server, ROWS, Some(1000.0), 1, seed);
            let ratio = out.ratio(server, ROWS, Some(1000.0));
            let line = format!("{shape} seed {seed}: {ratio:.3}, {} × 429", out.throttles);
            assert_eq!(out.updated, ROWS, "{line}");
            assert!(ratio <= 1.15, "{line}");
            assert!(out.throttles <= most, "{line}");
        }
    }
}

/// Found in review: a bucket holding a burst but spent when the run began
/// (a rerun right after another) refuses the run's first request, and was
/// taken for a bucket of one, whose pace three answers proved: at 100/s its
/// refilled credit "proved" 22.6, 61, 81, then 90/s within 0.1 s, and the
/// refusals after that false bound read as a window's spells. 50,000 rows
/// took up to 2.8× the least time (7 of 20 seeds). A bucket of one is now
/// one that took exactly one request before refusing, and its pace needs
/// the calm a bucket's does.
#[test]
fn a_spent_bucket_is_not_taken_for_a_bucket_of_one() {
    for shape in ["bucket:20:10", "bucket:20:40"] {
        let server = silent(shape, true);
        for seed in 1..=10 {
            let around = Around {
                drained: true,
                ..Around::at(LATENCY, LATENCY)
            };
            let rows = 2000;
            let out = run_around(server, rows, Some(100.0), 1, seed, around);
            let least = oracle_seconds(server, rows, Some(100.0), seed, around);
            let ratio = (out.last_success - out.first_success) / least;
            assert_eq!(out.updated, rows, "{shape} seed {seed}");
            assert!(ratio <= 1.15, "{shape} seed {seed}: {ratio:.3}");
        }
    }
    // Also found in review: with 50–500 ms of the server's own time, a
    // bucket of 5 whose first answers came back out of order was taken for
    // one, and answers to pairs sent after idle spells (credit refilled)
    // proved 505/s: seed 34 took 3.7× the least time (1.29× before).
    let server = silent("bucket:20:5", true);
    for seed in 1..=40 {
        let around = Around {
            processing: Some((0.05, 0.5)),
            ..Around::at(LATENCY, LATENCY)
        };
        let out = run_around(server, ROWS, Some(1000.0), 1, seed, around);
        let ratio = out.ratio(server, ROWS, Some(1000.0));
        assert_eq!(out.updated, ROWS, "seed {seed}");
        assert!(
            ratio <= 1.5,
            "bucket:20:5, server time, seed {seed}: {ratio:.3}"
        );
    }
}

/// Found tracing the worst of thirty seeds of the test below (a bucket of
/// one, no Retry-After, 5,007 s for 200 rows): once the log mirror was
/// given up, the pace went back to the one proven before, but the same
/// 429 then measured the limit from the successes since the episode before
/// the mirror took over, a minute of its searches: 11 in 68 s, so the pace
/// fell from 17.2/s to 0.16/s for the rest of the run. The mirror's reign
/// no longer counts as a measure. Over thirty seeds the mean was then 415 s
/// (was 636 s) and the worst 2,575 s (375 s and 2,433 s once the bucket of
/// one's climb changed); still minutes, as each refusal at random still
/// cuts the pace (the test below).
#[test]
fn a_log_given_up_measures_nothing_across_its_searches() {
    let (mean, worst) = shared_midway(false);
    assert!(
        mean < 500.0 && worst < 3000.0,
        "mean {mean:.0} s, worst {worst:.0} s"
    );
}

/// A bucket of one that another client (10/s, not in step) starts sharing
/// 4 s in, 200 rows asked 100/s, thirty seeds: the mean and the worst of
/// when the last row was updated, seconds.
fn shared_midway(retry_after: bool) -> (f64, f64) {
    let server = silent("bucket:20:1", retry_after);
    let (mut total, mut worst) = (0.0, 0.0_f64);
    for seed in 1..=30 {
        let around = Around {
            other: Some((4.0, 10.0)),
            ..Around::at(LATENCY, LATENCY)
        };
        let out = run_around(server, ROWS, Some(100.0), 1, seed, around);
        assert_eq!(out.updated + out.failed, ROWS, "seed {seed}");
        total += out.last_success;
        worst = worst.max(out.last_success);
    }
    (total / 30.0, worst)
}

/// A limit shared midway: from 4 s on, another client (not in step with
/// the run) takes half of a 20/s limit. Found in review: against a bucket
/// of one, whose refusals then come at random whatever the pace, the log
/// mirror took every refusal for a longer span and looked for the end of
/// it at spans of hours, then days: the run's 200 rows took 21,162
/// (virtual) seconds, and up to 1.5 billion after this session's first
/// changes to the mirror. Now the mirror looks at least once a minute
/// while no Retry-After says longer, and is given up once its span is 8
/// times the first it saw taken and it allows under a quarter of the pace
/// proven before. Open: the controller still cuts its pace at each such
/// refusal, as it cannot tell them from a limit's, so a bucket of one
/// shared this way ends in minutes, not seconds, and which seed goes worst
/// moves with any change to the controller (over thirty seeds without
/// Retry-After, 375 s on average, 2,433 s at worst; with it 145 s and
/// 1,045 s; seed 3 with it went from 4 to 129 × 429 for 200 rows when
/// the bucket of one's climb changed). With the other
/// client there from the start (`SHARED_FROM=0`), hours, and about one
/// 429 a row. Telling refusals at random from a limit's is the next step;
/// one try (comparing the share refused at paces far apart) held paces
/// over what was left of a shared limit with a burst, and was taken out.
#[test]
fn a_limit_shared_midway_never_stalls_the_run() {
    for shape in ["bucket:20:1", "bucket:20:5", "sliding:20:1", "window:20:1"] {
        for retry_after in [true, false] {
            let server = silent(shape, retry_after);
            for seed in 1..=3 {
                let from = std::env::var("SHARED_FROM").map_or(4.0, |v| v.parse().unwrap_or(4.0));
                let around = Around {
                    other: Some((from, 10.0)),
                    ..Around::at(LATENCY, LATENCY)
                };
                let out = run_around(server, ROWS, Some(100.0), 1, seed, around);
                let cell = format!(
                    "{shape} retry-after {retry_after} seed {seed}: {} × 429, {} failed, ends {:.1} s",
                    out.throttles, out.failed, out.last_success
                );
                eprintln!("{cell}");
                assert_eq!(out.updated + out.failed, ROWS, "{cell}");
                let (most_seconds, most_429s) = if shape == "bucket:20:1" {
                    (3600.0, 150)
                } else {
                    (30.0, 25)
                };
                assert!(out.last_success < most_seconds, "{cell}");
                assert!(out.throttles <= most_429s, "{cell}");
            }
        }
    }
}

/// Found in review: looking at least once a minute for the end of a
/// refusal, meant for refusals that come at random, also held for the
/// first search against an hourly limit that says nothing: 64 × 429 where
/// round spans take 12, and rows out of attempts. Now only once a span
/// was taken.
#[test]
fn an_hourly_limit_is_looked_for_at_round_spans() {
    for shape in ["sliding:100:3600", "window:100:3600"] {
        let server = Server {
            shape: shape.parse().expect("a shape"),
            retry_after: false,
            headers: HeaderStyle::None,
        };
        let out = run(server, ROWS, Some(10.0), 1, 1);
        let cell = format!("{shape}: {} × 429, {} failed", out.throttles, out.failed);
        assert_eq!(out.updated, ROWS, "{cell}");
        assert!(out.throttles <= 15, "{cell}");
    }
}

/// Found by running the matrix at an internet's distance from the server
/// (`PACING_LATENCY="0.025 0.002"`): against a bucket of one, a request
/// sent before the first 429 came back was taken, the next refused, and
/// "refused for 93 ms since the first refusal" bounded the bucket's rate
/// below 10.8/s for the rest of the run: 1.92× asked 5×. A refusal that
/// lasts is now counted from the latest request taken since.
#[test]
fn a_request_taken_during_a_refusal_ends_what_it_proves() {
    let server = Server {
        shape: "bucket:20:1".parse().expect("a shape"),
        retry_after: true,
        headers: HeaderStyle::None,
    };
    for seed in 1..=10 {
        let around = Around::at(0.025, 0.002);
        let out = run_around(server, ROWS, Some(100.0), 1, seed, around);
        let ratio = out.ratio(server, ROWS, Some(100.0));
        assert_eq!(out.updated, ROWS);
        assert!(
            ratio <= 1.25,
            "seed {seed}: {ratio:.3}, {} × 429",
            out.throttles
        );
    }
}

/// The shape matrix 25 ms from the server, with up to 2 ms of jitter each
/// way: where a user's cron host stands, not 1 ms away. Found there, each
/// now fixed: an answer whose request overtook the one before read as a
/// window refilling; a 429 at the stated pace paused a whole second; a
/// window's new quota went at the quota's pace; the credit margin grew by
/// one per 429; the first 429 bounded the limit by the asked rate, not by
/// the rate the requests on the way allowed; and climbing back by halves
/// drew a 429 for each of the eight requests on the way. Every limit that
/// states itself meets the goal there, the run begun at a window's start
/// (it missed in 48 cells; begun late, see the test after); of the
/// silent ones asked 50×, windows and logs keep to the time and to 20 ×
/// 429 (they drew 36–40, up to 1.45×), and so do buckets holding a burst
/// (30–33 × 429, up to 2.35×: the probe after the first pause was refused
/// because a request sent before it took the token, and the answer coming
/// a round trip later read as a refusal that lasts, a window's).
#[test]
fn far_from_the_server_stated_limits_meet_the_goal_and_silent_ones_draw_fewer_429s() {
    let around = Around::at(0.025, 0.002);
    let mut missed = Vec::new();
    for server in every_server() {
        let stated = server.headers != HeaderStyle::None;
        let silent_log = !stated
            && server.retry_after
            && matches!(
                server.shape,
                Shape::Window { n: 20, .. } | Shape::Sliding { n: 20, .. }
            );
        let silent_burst =
            !stated && matches!(server.shape, Shape::Bucket { burst, .. } if burst > 1);
        if !stated && !silent_log && !silent_burst {
            continue;
        }
        for asked in [100.0, 1000.0] {
            if !stated && asked < 1000.0 {
                continue;
            }
            for seed in 1..=3 {
                let out = run_around(server, ROWS, Some(asked), 1, seed, around);
                let ratio = out.ratio(server, ROWS, Some(asked));
                let most = if stated { ROWS / 20 } else { 20 };
                if out.updated != ROWS || ratio > 1.15 || out.throttles > most {
                    missed.push(missed_cell(server, asked, seed, ratio, out.throttles));
                }
            }
        }
    }
    assert!(missed.is_empty(), "missed:\n{}", missed.join("\n"));
}

/// Asked a little over the limit (27/s against 20 per second), a fixed
/// window or log refused the run's first request after its first pause,
/// 0.15 s after the first refusal, and its boundary then ended the
/// refusal: read as a bucket's, "refused 0.15 s" bounded the limit under
/// 6.6/s, and the run crept up from there 2 % per 20 s (3.0× the time the
/// limit needs). Such a bound is now given up once the pace under it is
/// calm, for the lowest pace that drew a 429. (Still 1.24–1.7×: a calm
/// second proves a pace a 1 s window may not hold; open.)
#[test]
fn a_short_refusal_read_as_a_bucket_s_is_given_up_once_calm() {
    for shape in ["window:20:1", "sliding:20:1"] {
        for retry_after in [true, false] {
            let server = silent(shape, retry_after);
            for seed in 1..=3 {
                let out = run_at(server, ROWS, Some(27.0), 1, seed, 0.0);
                let ratio = out.ratio(server, ROWS, Some(27.0));
                assert_eq!(out.updated, ROWS);
                assert!(
                    ratio < 2.0,
                    "{shape} retry-after {retry_after} seed {seed}: {ratio:.3}, {} × 429",
                    out.throttles
                );
            }
        }
    }
}

/// Found in review, 25 ms from the server: a run that began late in a
/// stated 1 s window (0.9 s in) read the new window's quota as a bucket
/// refilling, and drew 42–44 × 429 in 200 rows (216 in 1,000); and a
/// stated bucket of one shared with another client at 5/s went at 2.4/s,
/// each 429 at random widening the spacing, with 335 × 429 in 1,000 rows.
#[test]
fn far_from_the_server_a_window_begun_late_and_a_shared_bucket_hold() {
    let late = Around {
        phase: 0.9,
        ..Around::at(0.025, 0.002)
    };
    let window = Server {
        shape: Shape::Window {
            n: 20,
            seconds: 1.0,
        },
        retry_after: true,
        headers: HeaderStyle::Ietf,
    };
    let out = run_around(window, 1000, Some(1000.0), 1, 1, late);
    assert!(
        out.updated == 1000 && out.throttles <= 50,
        "window begun late: {} × 429 in 1000 rows, pace {:?}",
        out.throttles,
        out.learned.map(|l| l.pace)
    );
    let shared = Around {
        other: Some((0.0, 5.0)),
        ..Around::at(0.025, 0.002)
    };
    let bucket = Server {
        shape: Shape::Bucket {
            rate: 20.0,
            burst: 1,
        },
        retry_after: false,
        headers: HeaderStyle::Ietf,
    };
    let out = run_around(bucket, 1000, Some(1000.0), 1, 1, shared);
    let achieved = (out.updated - 1) as f64 / (out.last_success - out.first_success);
    assert!(
        out.updated == 1000 && achieved >= 7.5 && out.throttles <= 100,
        "shared bucket: {achieved:.2}/s with {} × 429 in 1000 rows",
        out.throttles
    );
}

/// With the server's own time varying (50–500 ms after its limit decides)
/// and rows free to go while others wait to retry, buckets holding a burst
/// were bounded at 7.3–11.4/s where they allow 20/s: a measure between two
/// 429s, and a refusal read as a bucket's, counted none of the requests
/// still on the way (the controller's unit tests hold each). No bound
/// falls below what the bucket allows now.
#[test]
fn with_the_server_s_own_time_a_bucket_is_never_bounded_below_its_rate() {
    let mut lowest = f64::INFINITY;
    for shape in ["bucket:20:5", "bucket:20:40"] {
        for asked in [100.0, 1000.0] {
            for seed in 1..=10 {
                let around = Around {
                    processing: Some((0.05, 0.5)),
                    ..Around::at(LATENCY, LATENCY)
                };
                let out = run_around(silent(shape, false), ROWS, Some(asked), 1, seed, around);
                eprintln!("{shape} {asked} {seed}: {:.2}", out.lowest_upper);
                lowest = lowest.min(out.lowest_upper);
            }
        }
    }
    assert!(lowest >= 20.0 * 0.9, "bounded at {lowest:.2}/s");
}

/// With the server's own time varying (50–500 ms after its limit decides),
/// measured against a client that knows the limit under the same
/// concurrency, network and server time: a stated window's credit held
/// back every request sent within the round trips' spread (the server's
/// time) before each answer's, so a window's last request waited for the
/// next window though every answer was in and the last said one remained
/// (`window:100:5` at 1.25× the oracle). Once every request sent before
/// the answers of a window is answered, the least they state (each from
/// its own request) is the window's end, and with nothing on the way the
/// least remaining is what remains. Every limit that states itself now
/// ends within 1.15× of the oracle.
#[test]
fn with_the_server_s_own_time_stated_limits_end_near_a_client_that_knows_them() {
    let around = Around {
        processing: Some((0.05, 0.5)),
        ..Around::at(LATENCY, LATENCY)
    };
    let mut missed = Vec::new();
    for server in every_server() {
        if server.headers == HeaderStyle::None {
            continue;
        }
        for asked in [100.0, 1000.0] {
            for seed in 1..=3 {
                let out = run_around(server, ROWS, Some(asked), 1, seed, around);
                let oracle = oracle_seconds(server, ROWS, Some(asked), seed, around);
                let ratio = (out.last_success - out.first_success) / oracle;
                if out.updated != ROWS || ratio > 1.15 || out.throttles > 10 {
                    missed.push(missed_cell(server, asked, seed, ratio, out.throttles));
                }
            }
        }
    }
    assert!(missed.is_empty(), "missed:\n{}", missed.join("\n"));
}

/// Found in review, with 20–40 ms each way (requests sent 1 ms apart reach
/// the server far out of order) and up to 300 ms of server time: the least
/// any answer of a window stated was taken afresh whenever requests that
/// overtook others made the quota seem to grow all at once, and the first
/// answer stating the quota was left out of it: 138 × 429 over 30 runs of
/// 400 rows against a 10-per-second window, where none came before.
#[test]
fn a_window_s_credit_holds_when_requests_reach_the_server_out_of_order() {
    let around = Around {
        processing: Some((0.0, 0.3)),
        ..Around::at(0.02, 0.02)
    };
    let mut refused = 0;
    for headers in [HeaderStyle::Ietf, HeaderStyle::X] {
        let server = Server {
            shape: "window:10:1".parse().expect("a shape"),
            retry_after: true,
            headers,
        };
        refused += refused_over_seeds(server, 1..=30, around);
    }
    assert_eq!(refused, 0);
}

/// The 429s of 400 rows asked 1000/s, summed over `seeds`; every row ends
/// updated.
fn refused_over_seeds(server: Server, seeds: std::ops::RangeInclusive<u64>, around: Around) -> u64 {
    seeds
        .map(|seed| {
            let out = run_around(server, 400, Some(1000.0), 1, seed, around);
            assert_eq!(out.updated, 400);
            out.throttles
        })
        .sum()
}

/// Found in review, 25 ms away with 50–500 ms of server time and the run
/// begun 0.9 s into a 1 s window stating itself: the credit once every
/// answer was in let two more requests go just before the boundary; they
/// landed in the next window, the quota seemed to grow while spent, and
/// the window was taken for a bucket for the rest of the run (133 × 429
/// over 20 runs of 400 rows, none before). Until the quota is known to come
/// back all at once, that credit goes only while the answers say the
/// window cannot turn before the requests arrive.
#[test]
fn a_window_begun_late_is_not_taken_for_a_bucket_by_its_last_credit() {
    let around = Around {
        phase: 0.9,
        processing: Some((0.05, 0.5)),
        ..Around::at(0.025, 0.002)
    };
    let server = Server {
        shape: "window:10:1".parse().expect("a shape"),
        retry_after: true,
        headers: HeaderStyle::X,
    };
    assert_eq!(refused_over_seeds(server, 1..=20, around), 0);
}

/// Found with 2–22 ms of jitter each way (answers and requests overtaking
/// each other): against 20 per rolling second, requests the run's pace
/// held just past the proven span went without the margin for jitter, and
/// the refusal halved N (about 2× in 4 seeds of 30); against 100 per 5 s,
/// requests that overtook the refused one were not counted, N was one
/// short, and the last rows waited a whole window (1.95× in 8 of 30).
#[test]
fn a_sliding_log_behind_jitter_keeps_what_it_takes() {
    let around = Around::at(0.002, 0.02);
    let mut missed = Vec::new();
    for (shape, asked) in [("sliding:20:1", 100.0), ("sliding:100:5", 1000.0)] {
        let server = silent(shape, true);
        for seed in 1..=30 {
            let out = run_around(server, ROWS, Some(asked), 1, seed, around);
            assert_eq!(out.updated, ROWS);
            let ratio = out.ratio(server, ROWS, Some(asked));
            if ratio > 1.3 || out.throttles > ROWS / 20 {
                missed.push(missed_cell(server, asked, seed, ratio, out.throttles));
            }
        }
    }
    assert!(missed.is_empty(), "{missed:#?}");
}

/// Open, and the largest gap left: 429s that come at random whatever the
/// pace (a gateway in front of the API, another client's share of a
/// limit, the built-in simulator's old demo fault). No limit behind them,
/// 3 % of requests refused with `Retry-After: 1`, asked 100/s, 1,000 rows
/// 20 ms away: each refusal is read as the limit's and cuts the pace, and
/// the runs take 33–56 s where 10 s would do (the real tool against the
/// old demo, with its 503s too: 1/s, 3 min 19 s); at 10 % (`SHARE=0.1`,
/// `ROWS_N=500`), 39–472 s where 5 s would do. Telling such refusals from
/// a limit (cutting the pace does not cut the share refused) is the next
/// step; `SHARE=0.01`, `ROWS_N=5000` for other runs. A tuning aid, not a
/// check.
#[test]
#[ignore]
fn refusals_at_random_with_no_limit_behind_them() {
    let server = Server {
        shape: "bucket:100000:100000".parse().expect("shape"),
        retry_after: true,
        headers: HeaderStyle::None,
    };
    let share: f64 = std::env::var("SHARE").map_or(0.03, |s| s.parse().unwrap());
    let rows: u64 = std::env::var("ROWS_N").map_or(1000, |s| s.parse().unwrap());
    for seed in 1..=5 {
        let around = Around {
            refused_at_random: share,
            ..Around::at(0.02, 0.002)
        };
        let out = run_around(server, rows, Some(100.0), 1, seed, around);
        eprintln!(
            "seed {seed}: {} updated {} failed, {} × 429, took {:.1} s (ideal {:.1}), {:?}",
            out.updated,
            out.failed,
            out.throttles,
            out.last_success - out.first_success,
            rows as f64 / 100.0,
            out.learned.map(|l| l.describe())
        );
    }
}
