//! Surviving faults: kill -9 and resume, signals, the overlap lock, refusing to
//! overwrite, torn ledgers, the failure threshold, hostile HTTP answers.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::*;

fn updated_lines(rows: &[BTreeMap<String, String>]) -> Vec<(String, String)> {
    rows.iter()
        .filter(|r| r["outcome"] == "updated")
        .map(|r| (r["line"].clone(), r["client_id"].clone()))
        .collect()
}

#[test]
fn kill_9_then_resume_sends_nothing_twice_and_finishes_the_job() {
    let sim = Sim::with_accounts(1..=120);
    let work = Work::new();
    work.write("in.csv", reseller_moves(1..=120, 9));
    let mut child = work.spawn_against(
        &sim,
        &[
            "run",
            "in.csv",
            "-o",
            "out.csv",
            "--rate",
            "40/s",
            "--concurrency",
            "4",
        ],
    );
    // Let it get part of the way, then kill it without warning.
    sim.wait_for_patches(40, std::time::Duration::from_secs(30));
    child.kill().expect("kill -9");
    child.wait().unwrap();
    let before = work.results("out.csv");
    let done_before = updated_lines(&before);
    assert!(
        !done_before.is_empty() && done_before.len() < 120,
        "killed at {}",
        done_before.len()
    );
    let sent_before = sim.patches().len();

    let ran = work
        .run_rows(&sim, "in.csv", "out.csv")
        .args(["--rate", "unlimited", "--resume"])
        .ran();
    assert_exit(&ran, 0);
    assert!(ran.stderr.contains("already updated"), "{}", ran.stderr);

    // No row recorded `updated` before the resume was sent again.
    let resumed: Vec<u64> = sim.patches()[sent_before..]
        .iter()
        .filter_map(|p| p.client_id)
        .collect();
    for (_, id) in &done_before {
        let id: u64 = id.parse().unwrap();
        assert!(
            !resumed.contains(&id),
            "account {id} was sent again after it was recorded"
        );
    }
    // Every account holds the new value; the ledger has each line updated once.
    for id in 1..=120 {
        assert_eq!(sim.account(id).reseller, 9, "account {id}");
    }
    let after = work.results("out.csv");
    let mut lines: Vec<_> = updated_lines(&after).into_iter().map(|(l, _)| l).collect();
    let count = lines.len();
    lines.sort();
    lines.dedup();
    assert_eq!(lines.len(), 120, "every line updated");
    assert_eq!(count, 120, "no line recorded updated twice");
}

#[test]
fn sigint_finishes_in_flight_rows_records_them_and_exits_130() {
    let sim = Sim::with_faults(
        1..=200,
        Faults {
            latency: Duration::from_millis(50),
            ..Faults::default()
        },
    );
    let work = Work::new();
    work.write("in.csv", reseller_moves(1..=200, 9));
    let child = work.spawn_against(
        &sim,
        &[
            "run",
            "in.csv",
            "-o",
            "out.csv",
            "--rate",
            "50/s",
            "--concurrency",
            "8",
        ],
    );
    sim.wait_for_patches(20, std::time::Duration::from_secs(30));
    signal(&child, "INT");
    let ran = wait(child);
    assert_exit(&ran, 130);
    assert!(
        ran.stderr.contains("--resume"),
        "the resume command is printed: {}",
        ran.stderr
    );

    let rows = work.results("out.csv");
    assert!(rows.len() < 200, "the run stopped early");
    // Every 200 the simulator answered is in the ledger.
    let recorded: Vec<String> = updated_lines(&rows).into_iter().map(|(_, id)| id).collect();
    for patch in sim.patches() {
        if patch.status == Some(200) {
            let id = patch.client_id.unwrap().to_string();
            assert!(
                recorded.contains(&id),
                "account {id} was answered 200 but is not in the ledger"
            );
        }
    }
    // And the resume finishes the job.
    let ran = work
        .run_rows(&sim, "in.csv", "out.csv")
        .args(["--rate", "unlimited", "--resume"])
        .ran();
    assert_exit(&ran, 0);
    assert_eq!(updated_lines(&work.results("out.csv")).len(), 200);
}

#[test]
fn sigterm_behaves_like_sigint() {
    let sim = Sim::with_accounts(1..=100);
    let work = Work::new();
    work.write("in.csv", reseller_moves(1..=100, 9));
    let child = work
        .run_rows(&sim, "in.csv", "out.csv")
        .args(["--rate", "20/s"])
        .spawn();
    sim.wait_for_patches(10, Duration::from_secs(20));
    signal(&child, "TERM");
    let ran = wait(child);
    assert_exit(&ran, 130);
    let rows = work.results("out.csv");
    assert!(!rows.is_empty() && rows.len() < 100);
}

#[test]
fn a_second_run_on_the_same_results_file_is_refused() {
    let sim = Sim::with_accounts(1..=30);
    let work = Work::new();
    work.write("in.csv", reseller_moves(1..=30, 9));
    let mut first = work.spawn_against(&sim, &["run", "in.csv", "-o", "out.csv", "--rate", "5/s"]);
    sim.wait_for_patches(1, std::time::Duration::from_secs(20));
    let second = work
        .run_rows(&sim, "in.csv", "out.csv")
        .args(["--resume"])
        .unpaced()
        .ran();
    assert_exit(&second, 2);
    assert!(
        second.stderr.contains("another gcore-iam-bulk run"),
        "{}",
        second.stderr
    );
    first.kill().unwrap();
    first.wait().unwrap();
    // The lock died with the process: a resume now works.
    let ran = work
        .run_rows(&sim, "in.csv", "out.csv")
        .args(["--resume"])
        .unpaced()
        .ran();
    assert_exit(&ran, 0);
}

#[test]
fn an_existing_results_file_is_not_overwritten_without_force() {
    let sim = Sim::with_accounts([1]);
    let work = Work::new();
    work.write("in.csv", reseller_moves([1], 9));
    work.write("out.csv", "precious\n");
    let ran = work.run_rows(&sim, "in.csv", "out.csv").ran();
    assert_exit(&ran, 2);
    assert!(
        ran.stderr.contains("--resume") && ran.stderr.contains("--force"),
        "{}",
        ran.stderr
    );
    assert_eq!(work.read("out.csv"), "precious\n");
    assert!(sim.requests().is_empty());
    let ran = work
        .run_rows(&sim, "in.csv", "out.csv")
        .args(["--force"])
        .ran();
    assert_exit(&ran, 0);
    assert_eq!(work.results("out.csv").len(), 1);
}

#[test]
fn resume_refuses_a_ledger_of_another_input() {
    let sim = Sim::with_accounts(1..=10);
    let work = Work::new();
    work.write("a.csv", reseller_moves(1..=5, 9));
    work.write("b.csv", reseller_moves(6..=10, 9));
    assert_exit(&work.run_rows(&sim, "a.csv", "out.csv").ran(), 0);
    let sent = sim.requests().len();
    let ran = work
        .run_rows(&sim, "b.csv", "out.csv")
        .args(["--resume"])
        .ran();
    assert_exit(&ran, 2);
    assert!(
        ran.stderr
            .contains("does not record any account of this input"),
        "{}",
        ran.stderr
    );
    assert_eq!(sim.requests().len(), sent, "nothing sent");

    work.write("other.csv", "a,b\n1,2\n");
    let ran = work
        .run_rows(&sim, "a.csv", "other.csv")
        .args(["--resume"])
        .ran();
    assert_exit(&ran, 2);
    assert!(ran.stderr.contains("has the header"), "{}", ran.stderr);
}

#[test]
fn a_torn_last_line_is_dropped_and_its_row_redone() {
    let sim = Sim::with_accounts(1..=3);
    let work = Work::new();
    work.write("in.csv", reseller_moves(1..=3, 9));
    work.write(
        "out.csv",
        "line,client_id,outcome,http_status,attempts,account_status,error,request,duration_ms,diff,requested,undo_file,finished_at,retries,throttled\n\
         2,1,updated,200,1,active,,\"{\"\"reseller\"\":9}\",5,,\"{\"\"reseller\"\":9}\",,2026-11-30T00:53:20.007Z,0,0\n\
         3,2,upd",
    );
    let ran = work
        .run_rows(&sim, "in.csv", "out.csv")
        .args(["--resume"])
        .ran();
    assert_exit(&ran, 0);
    let rows = work.results_by_line("out.csv");
    assert_eq!(rows.len(), 3);
    assert!(rows.values().all(|r| r["outcome"] == "updated"));
    let sent: Vec<_> = sim.patches().iter().filter_map(|p| p.client_id).collect();
    assert_eq!(sent.len(), 2);
    assert!(!sent.contains(&1));
}

#[test]
fn a_run_where_every_row_fails_stops_early() {
    // No account exists: every PATCH is a 404.
    let sim = Sim::with_accounts([]);
    let work = Work::new();
    work.write("in.csv", reseller_moves(1..=300, 9));
    let ran = work.run_rows(&sim, "in.csv", "out.csv").unpaced().ran();
    assert_exit(&ran, 3);
    assert!(
        ran.stderr.contains("--max-failure-rate 0.5"),
        "{}",
        ran.stderr
    );
    let rows = work.results("out.csv");
    assert!(
        rows.len() >= 50 && rows.len() < 100,
        "stopped after {} rows",
        rows.len()
    );

    let work = Work::new();
    work.write("in.csv", reseller_moves(1..=300, 9));
    let ran = work
        .run_rows(&sim, "in.csv", "out.csv")
        .args([
            "--rate",
            "unlimited",
            "--max-failures",
            "5",
            "--concurrency",
            "1",
        ])
        .ran();
    assert_exit(&ran, 3);
    assert!(ran.stderr.contains("--max-failures 5"), "{}", ran.stderr);
    assert_eq!(work.results("out.csv").len(), 5);

    // Invalid rows do not count; `1` turns the rate check off.
    let work = Work::new();
    work.write("in.csv", reseller_moves(1..=80, 9));
    let ran = work
        .run_rows(&sim, "in.csv", "out.csv")
        .args(["--rate", "unlimited", "--max-failure-rate", "1"])
        .ran();
    assert_exit(&ran, 1);
    assert_eq!(work.results("out.csv").len(), 80);
}

#[test]
fn hostile_answers_are_named_and_retried_where_safe() {
    let sim = Sim::with_faults(
        1..=5,
        faults(vec![
            rule(Fault::NotJson, Trigger::Ids(vec![1])).on_method("PATCH"),
            rule(Fault::Truncated, Trigger::FirstPerAccount(1)).on_method("PATCH"),
        ]),
    );
    // A 200 cut short was applied: it is a mismatch, and never sent again.
    let work = Work::new();
    work.write("in.csv", reseller_moves(1..=5, 9));
    let ran = work.run_rows(&sim, "in.csv", "out.csv").unpaced().ran();
    assert_exit(&ran, 1);
    let rows = work.results_by_line("out.csv");
    assert_eq!(rows[&2]["outcome"], "mismatch");
    assert!(
        rows[&2]["error"].contains("not a JSON account"),
        "{:?}",
        rows[&2]
    );
    for line in 3..=6 {
        assert_eq!(rows[&line]["outcome"], "mismatch", "{:?}", rows[&line]);
        assert!(rows[&line]["error"].contains("the answer could not be read"));
        assert_eq!(rows[&line]["attempts"], "1");
    }
    for id in 2..=5 {
        assert_eq!(sim.patches_for(id).len(), 1, "account {id} sent once");
    }

    let sim = Sim::with_faults([1], faults(vec![rule(Fault::Hang, Trigger::Always)]));
    let work = Work::new();
    work.write("in.csv", reseller_moves([1], 9));
    let ran = work
        .run_rows(&sim, "in.csv", "out.csv")
        .args(["--timeout", "300ms", "--max-attempts", "2"])
        .ran();
    // The hang stops the token check: nothing can be reached.
    assert_exit(&ran, 2);
    assert!(ran.stderr.contains("timed out"), "{}", ran.stderr);

    let sim = Sim::with_faults(
        [1],
        faults(vec![rule(Fault::Hang, Trigger::Always).on_method("PATCH")]),
    );
    let ran = work
        .run_rows(&sim, "in.csv", "out2.csv")
        .args(["--timeout", "300ms", "--max-attempts", "2"])
        .ran();
    assert_exit(&ran, 1);
    let row = &work.results("out2.csv")[0];
    assert_eq!(row["outcome"], "failed");
    assert!(row["error"].contains("timed out"), "{row:?}");
    assert_eq!(row["attempts"], "2");

    let sim = Sim::with_faults(
        [1],
        faults(vec![
            rule(Fault::Html(520), Trigger::Always).on_method("PATCH"),
        ]),
    );
    let ran = work
        .run_rows(&sim, "in.csv", "out3.csv")
        .args(["--max-attempts", "2"])
        .ran();
    assert_exit(&ran, 1);
    let row = &work.results("out3.csv")[0];
    assert_eq!(row["attempts"], "2", "an HTML 5xx page is retried");
    assert_eq!(row["http_status"], "520");
}

#[test]
fn a_second_sigint_stops_at_once_and_leaves_valid_csv() {
    // Accounts 5 and up never get an answer: after the first SIGINT the run
    // would wait out --timeout for them; the second ends it at once.
    let sim = Sim::with_faults(
        1..=40,
        faults(vec![
            rule(Fault::Hang, Trigger::Ids((5..=40).collect())).on_method("PATCH"),
        ]),
    );
    let work = Work::new();
    work.write("in.csv", reseller_moves(1..=40, 9));
    let mut run = Running::watch(work.spawn_against(
        &sim,
        &[
            "run",
            "in.csv",
            "-o",
            "out.csv",
            "--rate",
            "unlimited",
            "--timeout",
            "60s",
            "--status-interval",
            "1s",
        ],
    ));
    sim.wait_for_patches(8, std::time::Duration::from_secs(20));
    run.signal("INT");
    // The first SIGINT waits for requests in flight: the run says so, and a
    // status line after that shows it still going.
    run.wait_until_stderr("a status line after the first SIGINT", |stderr| {
        stderr
            .split_once("interrupted:")
            .is_some_and(|(_, after)| after.lines().any(|l| l.starts_with("status:")))
    });
    assert!(
        run.is_running(),
        "the first SIGINT waits for requests in flight"
    );
    let second = std::time::Instant::now();
    run.signal("INT");
    let ran = run.finish();
    assert_exit(&ran, 130);
    assert!(
        second.elapsed() < Duration::from_secs(10),
        "took {:?}",
        second.elapsed()
    );
    let rows = work.results("out.csv");
    assert_eq!(updated_lines(&rows).len(), 4, "{rows:?}");
}

#[test]
fn a_stalled_reader_of_standard_output_cannot_make_the_run_unstoppable() {
    // Results go to a pipe nobody reads: once it is full the writer blocks.
    // Signals must still be answered.
    let sim = Sim::with_accounts(1..=20_000);
    let work = Work::new();
    work.write("in.csv", reseller_moves(1..=20_000, 9));
    let run = Running::leaving_stdout_unread(
        work.spawn_against(&sim, &["run", "in.csv", "-o", "-", "--rate", "unlimited"]),
    );
    sim.wait_for_patches(3_000, std::time::Duration::from_secs(30));
    run.signal("INT");
    run.wait_for("interrupted:", Duration::from_secs(10));
    run.signal("INT");
    let ran = run.finish_within(Duration::from_secs(10));
    assert_exit(&ran, 130);
}

#[test]
fn a_results_file_that_is_the_input_is_refused() {
    let work = Work::new();
    work.write("in.csv", reseller_moves(1..=3, 9));
    let ran = work.run(&["run", "in.csv", "-o", "./in.csv", "--dry-run", "--force"]);
    assert_exit(&ran, 2);
    assert!(
        ran.stderr.contains("is the input file itself"),
        "{}",
        ran.stderr
    );
    assert_eq!(work.read("in.csv"), reseller_moves(1..=3, 9));
}

#[test]
fn an_echoed_token_is_masked_everywhere() {
    // A server that repeats the Authorization header in its error messages.
    use axum::http::HeaderMap;
    use axum::routing::{get, patch};
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let url = runtime.block_on(async {
        let echo = |status: u16| {
            move |headers: HeaderMap| async move {
                let auth = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                (
                    axum::http::StatusCode::from_u16(status).unwrap(),
                    axum::Json(
                        serde_json::json!({ "detail": format!("token {auth} may not do this") }),
                    ),
                )
            }
        };
        let app = axum::Router::new()
            .route(
                "/iam/clients/me",
                get(|| async { axum::Json(serde_json::json!({"id": 1})) }),
            )
            .route("/iam/clients/{id}", patch(echo(403)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    });
    let work = Work::new();
    work.write("in.csv", reseller_moves(1..=2, 9));
    let mut cmd = work.command();
    cmd.args(["run", "in.csv", "-o", "out.csv", "--api-url", &url, "-vv"])
        .env("GCORE_API_KEY", TOKEN);
    let ran = wait(cmd.spawn().unwrap());
    assert_exit(&ran, 1);
    let results = work.read("out.csv");
    assert!(
        results.contains("HTTP 403: token APIKey *** may not do this"),
        "{results}"
    );
    let secret = TOKEN.split('$').nth(1).unwrap();
    for (what, text) in [("stderr", &ran.stderr), ("results", &results)] {
        assert!(
            !text.contains(secret),
            "the token leaked into {what}: {text}"
        );
    }
    drop(runtime);
}

/// A FIFO in the work directory, fed by a thread: `rows` are written with a
/// pause after each, then the FIFO stays open until `hold` has passed. Its
/// sleeps are the slow writer being simulated, not a wait for anything.
fn fifo_input(
    work: &Work,
    text: Vec<String>,
    pause: Duration,
    hold: Duration,
) -> std::thread::JoinHandle<()> {
    let path = work.path("in.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&path)
        .status()
        .unwrap();
    assert!(made.success());
    std::thread::spawn(move || {
        use std::io::Write;
        let mut fifo = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        for line in text {
            if fifo.write_all(line.as_bytes()).is_err() {
                return;
            }
            let _ = fifo.flush();
            std::thread::sleep(pause);
        }
        std::thread::sleep(hold);
    })
}

#[test]
fn a_pipe_as_input_loses_no_row() {
    let sim = Sim::with_accounts(1..=20);
    let work = Work::new();
    let mut text = vec!["client_id,reseller\n".to_string()];
    text.extend((1..=20).map(|id| format!("{id},9\n")));
    let feeder = fifo_input(&work, text, Duration::from_millis(20), Duration::ZERO);
    let ran = work.run_rows(&sim, "in.fifo", "out.csv").unpaced().ran();
    feeder.join().unwrap();
    assert_exit(&ran, 0);
    assert_eq!(work.results("out.csv").len(), 20);
    assert_eq!(sim.patches().len(), 20);
}

#[test]
fn rows_finished_while_the_input_waits_are_written_at_once() {
    // Two invalid rows, then the writer of the pipe goes quiet: their results
    // must not wait for more input, and an interrupt must not lose them.
    let sim = Sim::with_accounts([1]);
    let work = Work::new();
    let text = vec!["client_id,reseller\n1,9\nx,9\n2,no\n".to_string()];
    let feeder = fifo_input(&work, text, Duration::ZERO, Duration::from_secs(20));
    let child = work.spawn_against(
        &sim,
        &["run", "in.fifo", "-o", "out.csv", "--rate", "unlimited"],
    );
    let lines = || std::fs::read_to_string(work.path("out.csv")).map_or(0, |t| t.lines().count());
    wait_until(
        "header and three rows while the input still waits",
        Duration::from_secs(10),
        || lines() >= 4,
    );
    assert_eq!(lines(), 4);
    signal(&child, "INT");
    let ran = wait(child);
    assert_exit(&ran, 130);
    assert_eq!(work.results("out.csv").len(), 3);
    drop(feeder);
}

#[test]
fn a_retry_cut_short_by_an_interrupt_says_it_was_sent() {
    let sim = Sim::with_faults(
        [1],
        faults(vec![
            rule(
                Fault::TooManyRequests {
                    retry_after: Some("30".into()),
                },
                Trigger::Always,
            )
            .on_method("PATCH"),
        ]),
    );
    let work = Work::new();
    work.write("in.csv", reseller_moves([1], 9));
    let run = Running::watch(work.spawn_against(&sim, &["run", "in.csv", "-o", "out.csv"]));
    // Interrupted once the 429 is in and the run waits to retry.
    run.wait_for(
        "HTTP 429: the server asks to wait 30s",
        Duration::from_secs(20),
    );
    run.signal("INT");
    let ran = run.finish();
    assert_exit(&ran, 130);
    let row = &work.results("out.csv")[0];
    assert_eq!(row["outcome"], "failed");
    assert_eq!(row["http_status"], "429");
    assert_eq!(row["attempts"], "1");
    assert!(row["error"].contains("before the next attempt"), "{row:?}");
}
