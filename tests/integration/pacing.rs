//! Pacing as the server sees it: never more than `burst + rate × T` requests
//! in any span T, retries included; adaptive pacing under a server-side limit.

use std::time::Duration;

use crate::common::*;

/// The most requests in any span, checked over every pair of arrivals. The
/// allowance covers loopback jitter between sending and arrival.
fn assert_paced(arrivals: &[Duration], rate: f64, burst: u32) {
    const JITTER: f64 = 0.004;
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
    let ran = work.run_against(
        &sim,
        &[
            "run",
            "in.csv",
            "-o",
            "out.csv",
            "--rate",
            "20/s",
            "--burst",
            "3",
            "--concurrency",
            "8",
        ],
    );
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
    let ran = work.run_against(
        &sim,
        &[
            "run",
            "in.csv",
            "-o",
            "out.csv",
            "--rate",
            "25/s",
            "--concurrency",
            "8",
        ],
    );
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
    let ran = work.run_against(
        &sim,
        &[
            "run",
            "in.csv",
            "-o",
            "out.csv",
            "--rate",
            "100/s",
            "--summary-json",
            "s.json",
        ],
    );
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
