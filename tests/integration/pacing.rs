//! Pacing as the server sees it: never more than `burst + rate × T` requests
//! in any span T, retries included; adaptive pacing under a server-side limit.

use std::time::Duration;

use crate::common::*;

/// The most requests in any span, checked over every pair of arrivals. The
/// exact pacing is the controller's decision and its unit tests assert it on
/// permit times; here, on a host that may be busy, the allowance is loose:
/// two requests the pacer spaced can reach the server together when the
/// worker that sends one is scheduled late. What this still catches is a
/// storm: a pause releasing its waiters at once, or no pacing at all.
fn assert_paced(arrivals: &[Duration], rate: f64, burst: u32) {
    const JITTER: f64 = 0.25;
    for i in 0..arrivals.len() {
        for j in i + 1..arrivals.len() {
            let span = (arrivals[j] - arrivals[i]).as_secs_f64();
            let count = (j - i + 1) as f64;
            let allowed = f64::from(burst) + rate * (span + JITTER);
            assert!(
                count <= allowed.floor() + 1e-9,
                "{count} requests within {span:.3}s; at most {allowed:.2} allowed"
            );
        }
    }
}

#[test]
fn the_server_never_sees_more_than_burst_plus_rate_times_t() {
    let sim = Sim::with_accounts(1..=60);
    let work = Work::new();
    work.write("in.csv", reseller_moves(1..=60, 9));
    let ran = work
        .run_rows(&sim, "in.csv", "out.csv")
        .args(["--rate", "20/s", "--burst", "3", "--concurrency", "8"])
        .ran();
    assert_exit(&ran, 0);
    let arrivals: Vec<Duration> = sim.requests().iter().map(|r| r.at).collect();
    assert_eq!(arrivals.len(), 61, "the token check and 60 PATCHes");
    assert_paced(&arrivals, 20.0, 3);
}

#[test]
fn retries_wait_for_the_limiter_too() {
    let sim = Sim::with_faults(
        1..=20,
        faults(vec![
            rule(Fault::Status(503), Trigger::FirstPerAccount(2)).on_method("PATCH"),
        ]),
    );
    let work = Work::new();
    work.write("in.csv", reseller_moves(1..=20, 9));
    let ran = work
        .run_rows(&sim, "in.csv", "out.csv")
        .args(["--rate", "25/s", "--concurrency", "8"])
        .ran();
    assert_exit(&ran, 0);
    let arrivals: Vec<Duration> = sim.requests().iter().map(|r| r.at).collect();
    assert_eq!(arrivals.len(), 61);
    assert_paced(&arrivals, 25.0, 1);
}

#[test]
fn adaptive_pacing_meets_a_server_limit_below_the_asked_rate() {
    // The server allows 20 requests/s; the run asks for 100/s. Target: every
    // row updated, under 1.3 requests per row, within 1.5× the time the
    // server's limit allows (200 rows at 20/s: 10 s).
    let sim = Sim::with_faults(
        1..=200,
        Faults {
            server_rate: Some(ServerRate {
                per_second: 20.0,
                burst: 20,
            }),
            ..Faults::default()
        },
    );
    let work = Work::new();
    work.write("in.csv", reseller_moves(1..=200, 9));
    let ran = work
        .run_rows(&sim, "in.csv", "out.csv")
        .args(["--rate", "100/s", "--summary-json", "s.json"])
        .ran();
    assert_exit(&ran, 0);
    let rows = work.results("out.csv");
    assert_eq!(rows.len(), 200);
    assert!(rows.iter().all(|r| r["outcome"] == "updated"));
    let patches = sim.patches().len();
    assert!(patches < 260, "{patches} PATCHes for 200 rows");
    let summary: serde_json::Value = serde_json::from_str(&work.read("s.json")).unwrap();
    let elapsed = summary["elapsed_seconds"].as_f64().unwrap();
    assert!(
        elapsed <= 15.0,
        "took {elapsed:.1}s; the server's limit allows 10s"
    );
    assert!(
        ran.stderr.contains("lowering the request rate"),
        "{}",
        ran.stderr
    );
}

/// Runs 200 rows asking 5× a server limit of `shape`, and returns the
/// seconds from the first success to the last, the 429s, and the summary.
fn run_against_limit(
    limit: ServerLimit,
    rows: u64,
    asked: &str,
) -> (f64, u64, serde_json::Value, String) {
    run_against_limit_with(limit, rows, asked, &[])
}

/// [`run_against_limit`] with more flags for `run`; the refusals counted
/// are the answers with the limit's own status.
fn run_against_limit_with(
    limit: ServerLimit,
    rows: u64,
    asked: &str,
    flags: &[&str],
) -> (f64, u64, serde_json::Value, String) {
    let refusal = limit.status;
    let sim = Sim::with_faults(
        1..=rows,
        Faults {
            limit: Some(limit),
            ..Faults::default()
        },
    );
    let work = Work::new();
    work.write("in.csv", reseller_moves(1..=rows, 9));
    let mut args = vec![
        "run",
        "in.csv",
        "-o",
        "out.csv",
        "--rate",
        asked,
        "--concurrency",
        "8",
        "--summary-json",
        "s.json",
    ];
    args.extend_from_slice(flags);
    let ran = work.run_against(&sim, &args);
    assert_exit(&ran, 0);
    let results = work.results("out.csv");
    assert_eq!(results.len() as u64, rows);
    assert!(results.iter().all(|r| r["outcome"] == "updated"));
    let requests = sim.requests();
    let successes: Vec<f64> = requests
        .iter()
        .filter(|r| r.method == "PATCH" && r.status == Some(200))
        .map(|r| r.at.as_secs_f64())
        .collect();
    let throttled = requests
        .iter()
        .filter(|r| r.status == Some(refusal))
        .count() as u64;
    let span = successes.last().unwrap() - successes.first().unwrap();
    let summary: serde_json::Value = serde_json::from_str(&work.read("s.json")).unwrap();
    (span, throttled, summary, ran.stderr)
}

/// nginx `limit_req rate=20r/s` without burst and without Retry-After: the
/// strictest common limit. The run ends near the limit's own time (loosely
/// here, on a possibly busy host: the controller's unit tests assert 1.15×),
/// draws few 429s, and says what it learned and what to ask next time.
#[test]
fn a_strict_limit_without_retry_after_is_learned() {
    strict_limit_is_learned(429, &[]);
}

/// nginx's `limit_req` keeps answering 503 unless `limit_req_status` says
/// otherwise. Read as a server error, each 503 was retried at the asked
/// pace and the run never slowed: rows ran out of attempts. Named with
/// `--throttle-status 503`, the limit is learned as a 429's would be, and
/// the summary counts those answers as throttled.
#[test]
fn a_limit_answering_503_is_learned_when_named() {
    strict_limit_is_learned(503, &["--throttle-status", "503"]);
}

/// 200 rows asked 100/s against a bucket of 20/s holding one, refusing
/// with `status` and no Retry-After, run with `flags`.
fn strict_limit_is_learned(status: u16, flags: &[&str]) {
    let limit = ServerLimit {
        status,
        retry_after: false,
        ..ServerLimit::new(Shape::Bucket {
            rate: 20.0,
            burst: 1,
        })
    };
    let (span, refused, summary, stderr) = run_against_limit_with(limit, 200, "100/s", flags);
    assert!(span < 10.0 * 1.5, "took {span:.1}s; the limit needs 10s");
    assert!(refused <= 20, "{refused} × {status}");
    assert_eq!(
        summary["throttled_429"].as_u64(),
        Some(refused),
        "{summary}"
    );
    let learned = &summary["server_limit"];
    let per_second = learned["per_second"].as_f64().unwrap();
    assert!((15.0..=25.0).contains(&per_second), "{learned}");
    assert_eq!(learned["source"], "throttling");
    assert!(learned["suggested_rate"].as_str().is_some(), "{learned}");
    assert!(stderr.contains("server limit ≈"), "{stderr}");
    assert!(stderr.contains("next time use --rate"), "{stderr}");
}

/// Unnamed, the same limit's 503s are server errors: nothing is learned,
/// and the summary says which flag would pace the run under them.
#[test]
fn unnamed_503s_are_retried_and_the_summary_names_the_flag() {
    let sim = Sim::with_faults(
        1..=40,
        Faults {
            limit: Some(ServerLimit {
                status: 503,
                retry_after: false,
                ..ServerLimit::new(Shape::Bucket {
                    rate: 20.0,
                    burst: 1,
                })
            }),
            ..Faults::default()
        },
    );
    let work = Work::new();
    work.write("in.csv", reseller_moves(1..=40, 9));
    let ran = work
        .run_rows(&sim, "in.csv", "out.csv")
        .args([
            "--rate",
            "100/s",
            "--concurrency",
            "8",
            "--summary-json",
            "s.json",
        ])
        .ran();
    // (Rows may run out of attempts: 1 is a run that ended with failures.)
    assert!(matches!(ran.code, 0 | 1), "{}: {}", ran.code, ran.stderr);
    let summary: serde_json::Value = serde_json::from_str(&work.read("s.json")).unwrap();
    assert_eq!(summary["throttled_429"], 0, "{summary}");
    assert!(summary["server_limit"].is_null(), "{summary}");
    assert!(
        summary["answers_503_as_server_errors"].as_u64() >= Some(10),
        "{summary}"
    );
    assert!(
        ran.stderr
            .contains("--throttle-status 503 paces the run under it"),
        "{}",
        ran.stderr
    );
}

/// `--throttle-status` names only what is retried anyway: a 404 (or 429,
/// which always is the limit) is refused with a message that says what
/// to use instead.
#[test]
fn throttle_status_names_only_statuses_that_are_retried() {
    let work = Work::new();
    work.write("in.csv", reseller_moves(1..=1, 9));
    for (status, says) in [
        ("404", "408, 500, 502, 503 or 504"),
        ("501", "408, 500, 502, 503 or 504"),
        ("429", "always"),
    ] {
        let ran = work.run(&["run", "in.csv", "--dry-run", "--throttle-status", status]);
        assert_exit(&ran, 2);
        assert!(ran.stderr.contains(says), "{status}: {}", ran.stderr);
    }
}

/// A server that states its limit in `RateLimit` headers is not pushed into
/// 429s: none on the controller's virtual clock (its unit tests); here a
/// busy host's scheduling may bunch two requests, so a few are allowed.
#[test]
fn a_stated_limit_is_kept_without_a_429() {
    for headers in [
        HeaderStyle::Ietf,
        HeaderStyle::IetfStructured,
        HeaderStyle::X,
    ] {
        let limit = ServerLimit {
            shape: Shape::Bucket {
                rate: 40.0,
                burst: 5,
            },
            retry_after: true,
            headers,
            status: 429,
        };
        let (_span, throttled, summary, _stderr) = run_against_limit(limit, 100, "200/s");
        assert!(throttled <= 3, "{throttled} × 429 with {headers:?}");
        assert_eq!(summary["server_limit"]["source"], "headers", "{headers:?}");
    }
}

/// Django REST framework's throttle (a sliding log answering Retry-After)
/// and a fixed window without Retry-After: every row ends updated, the
/// limit is learned, and the run stays well clear of a 429 storm. (How
/// close to the limit's own time is measured by the controller's unit
/// tests and in BENCHMARKS.md; a busy host would blur it here.)
#[test]
fn windows_and_sliding_logs_are_learned_end_to_end() {
    for limit in [
        ServerLimit {
            shape: Shape::Sliding {
                n: 20,
                seconds: 1.0,
            },
            retry_after: true,
            headers: HeaderStyle::None,
            status: 429,
        },
        ServerLimit {
            shape: Shape::Window {
                n: 20,
                seconds: 1.0,
            },
            retry_after: false,
            headers: HeaderStyle::None,
            status: 429,
        },
    ] {
        let (span, throttled, summary, _stderr) = run_against_limit(limit, 100, "100/s");
        assert!(
            span < 5.0 * 2.0,
            "{limit:?}: took {span:.1}s; the limit needs about 5s"
        );
        assert!(throttled <= 30, "{limit:?}: {throttled} × 429");
        let per_second = summary["server_limit"]["per_second"].as_f64().unwrap();
        assert!((10.0..=40.0).contains(&per_second), "{limit:?}: {summary}");
        // Told from a bucket: what it takes per span.
        let per_span = summary["server_limit"]["requests_per_span"].as_u64();
        assert!(
            per_span.is_some_and(|n| (15..=25).contains(&n)),
            "{limit:?}: {summary}"
        );
    }
}

/// Found in the pacing harness: a row told `Retry-After: 1` held its
/// worker for that second, so once every worker's row was refused the run
/// stood still, though the pacer would have let other rows go (a bucket
/// holding 5, asked 50×: 1.17× its time). A row waiting to retry now leaves
/// its slot to another row, and requests in flight stay within
/// `--concurrency`.
#[test]
fn a_row_waiting_out_its_retry_after_leaves_its_slot_to_another() {
    let slow = Duration::from_millis(300);
    let sim = Sim::with_faults(
        1..=3,
        faults(vec![
            rule(
                Fault::TooManyRequests {
                    retry_after: Some("1".into()),
                },
                Trigger::Ids(vec![1]),
            )
            .on_method("PATCH"),
            rule(Fault::Slow(slow), Trigger::Ids(vec![2, 3])).on_method("PATCH"),
        ]),
    );
    let work = Work::new();
    work.write("in.csv", reseller_moves(1..=3, 9));
    let ran = work
        .run_rows(&sim, "in.csv", "out.csv")
        .args([
            "--rate",
            "10/s",
            "--concurrency",
            "1",
            "--max-attempts",
            "2",
        ])
        .ran();
    let rows = work.results("out.csv");
    let outcome = |id: &str| {
        rows.iter()
            .find(|r| r["client_id"] == id)
            .map(|r| r["outcome"].clone())
    };
    assert_eq!(outcome("1").as_deref(), Some("failed"), "{}", ran.stderr);
    assert_eq!(outcome("2").as_deref(), Some("updated"));
    assert_eq!(outcome("3").as_deref(), Some("updated"));
    let refused = sim.patches_for(1);
    assert_eq!(refused.len(), 2);
    let other = &sim.patches_for(2)[0];
    assert!(
        other.at < refused[1].at,
        "account 2 sent at {:?}, only after account 1's retry at {:?}",
        other.at,
        refused[1].at
    );
    // One request in flight at a time: a slow answer holds the only slot.
    let patches = sim.patches();
    for pair in patches.windows(2) {
        if matches!(pair[0].client_id, Some(2 | 3)) {
            assert!(
                pair[1].at >= pair[0].at + slow,
                "{:?} sent while {:?} was in flight",
                pair[1].client_id,
                pair[0].client_id
            );
        }
    }
}
