//! The core contract: bodies as sent, dry runs, outcomes, exit codes, 403/404,
//! retries of transient failures, 401, and the token kept secret.

use serde_json::json;

use crate::common::*;

#[test]
fn bodies_arrive_exactly_as_the_rows_say() {
    let sim = Sim::with_accounts([1, 2, 3, 4]);
    let work = Work::new();
    let input = "\u{feff}Client_ID , Name,custom_id,seller,is_test,companyName,phone\r\n\
        1,\"Doe, \"\"J\"\"\",null,null,TRUE,Zürich AG ✓,\r\n\
        2,,,7,0,,+41 44 000 00 00\r\n\
        3,  Ann  ,,,,,null\r\n\
        4,\"multi\nline\",,,,,\r\n";
    work.write("in.csv", input);
    let ran = work.run_rows(&sim, "in.csv", "out.csv").unpaced().ran();
    assert_exit(&ran, 0);

    let body = |id| sim.patches_for(id)[0].body.clone().expect("a JSON body");
    assert_eq!(
        body(1),
        json!({"name": "Doe, \"J\"", "custom_id": null, "seller": null, "is_test": true,
               "companyName": "Zürich AG ✓"})
    );
    assert_eq!(
        body(2),
        json!({"seller": 7, "is_test": false, "phone": "+41 44 000 00 00"})
    );
    assert_eq!(body(3), json!({"name": "Ann", "phone": null}));
    assert_eq!(body(4), json!({"name": "multi\nline"}));
    assert_eq!(sim.account(1).name.as_deref(), Some("Doe, \"J\""));
    assert_eq!(sim.account(1).seller, None);

    let results = work.results_by_line("out.csv");
    assert_eq!(
        results.keys().copied().collect::<Vec<_>>(),
        vec![2, 3, 4, 5]
    );
    for row in results.values() {
        assert_eq!(row["outcome"], "updated");
        assert_eq!(row["http_status"], "200");
        assert_eq!(row["attempts"], "1");
        assert_eq!(row["error"], "");
        assert!(!row["account_status"].is_empty());
    }
    let sent: serde_json::Value = serde_json::from_str(&results[&2]["request"]).unwrap();
    assert_eq!(sent, body(1));
}

#[test]
fn results_header_starts_with_the_contract_columns() {
    let sim = Sim::with_accounts([1]);
    let work = Work::new();
    work.write("in.csv", "client_id,reseller\n1,5\n");
    let ran = work.run_rows(&sim, "in.csv", "out.csv").ran();
    assert_exit(&ran, 0);
    let text = work.read("out.csv");
    assert!(
        text.starts_with(
            "line,client_id,outcome,http_status,attempts,account_status,error,request,duration_ms"
        ),
        "{text}"
    );
}

#[test]
fn dry_run_sends_nothing_and_needs_no_token() {
    let sim = Sim::with_accounts([1, 2]);
    let work = Work::new();
    work.write(
        "in.csv",
        "client_id,reseller,email\n1,5,\n2,x,\n3,,a@b.co\n",
    );
    let mut cmd = work.command();
    cmd.args([
        "run",
        "in.csv",
        "-o",
        "out.csv",
        "--dry-run",
        "--api-url",
        &sim.url,
    ]);
    let ran = wait(cmd.spawn().unwrap());
    assert_exit(&ran, 1);
    assert!(sim.requests().is_empty(), "a dry run sent requests");
    let rows = work.results_by_line("out.csv");
    assert_eq!(rows[&2]["outcome"], "dry_run");
    assert_eq!(rows[&2]["request"], r#"{"reseller":5}"#);
    assert_eq!(rows[&2]["attempts"], "0");
    assert_eq!(rows[&3]["outcome"], "invalid");
    assert_eq!(rows[&4]["outcome"], "dry_run");

    work.write("ok.csv", "client_id,reseller\n1,5\n");
    let ran = work.run(&["run", "ok.csv", "-o", "ok-out.csv", "--dry-run"]);
    assert_exit(&ran, 0);
}

#[test]
fn a_real_run_without_a_token_says_where_to_put_it() {
    let work = Work::new();
    work.write("in.csv", "client_id,reseller\n1,5\n");
    let ran = work.run(&[
        "run",
        "in.csv",
        "-o",
        "out.csv",
        "--api-url",
        "http://127.0.0.1:9",
    ]);
    assert_exit(&ran, 2);
    assert!(
        ran.stderr.contains("GCORE_API_KEY") && ran.stderr.contains("--api-key-file"),
        "{}",
        ran.stderr
    );
    assert!(
        !work.path("out.csv").exists(),
        "refused with the flags, before any file is created"
    );
}

#[test]
fn an_api_url_with_a_query_is_refused() {
    let work = Work::new();
    work.write("in.csv", "client_id,reseller\n1,5\n");
    let mut cmd = work.command();
    cmd.args([
        "run",
        "in.csv",
        "-o",
        "out.csv",
        "--api-url",
        "http://127.0.0.1:9/?a=b",
    ])
    .env("GCORE_API_KEY", TOKEN);
    let ran = wait(cmd.spawn().unwrap());
    assert_exit(&ran, 2);
    assert!(
        ran.stderr.contains("must not have a query"),
        "{}",
        ran.stderr
    );
}

#[test]
fn token_from_a_file_is_used() {
    let sim = Sim::with_accounts([1]);
    let work = Work::new();
    work.write("in.csv", "client_id,reseller\n1,5\n");
    work.write("key", format!("{TOKEN}\n"));
    let mut cmd = work.command();
    cmd.args([
        "run",
        "in.csv",
        "-o",
        "out.csv",
        "--api-key-file",
        "key",
        "--api-url",
        &sim.url,
    ]);
    let ran = wait(cmd.spawn().unwrap());
    assert_exit(&ran, 0);
    assert!(sim.patches()[0].authorized);
}

#[test]
fn standard_input_and_output() {
    let sim = Sim::with_accounts([1, 2]);
    let work = Work::new();
    let mut cmd = work.command();
    cmd.args(["run", "-", "-o", "-", "--api-url", &sim.url])
        .env("GCORE_API_KEY", TOKEN)
        .stdin(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"client_id,seller\n1,3\n2,null\n").unwrap();
    }
    let ran = wait(child);
    assert_exit(&ran, 0);
    let mut reader = csv::Reader::from_reader(ran.stdout.as_bytes());
    let outcomes: Vec<String> = reader
        .records()
        .map(|r| r.unwrap()[2].to_string())
        .collect();
    assert_eq!(outcomes, vec!["updated", "updated"]);
    assert_eq!(sim.account(2).seller, None);
}

#[test]
fn forbidden_and_unknown_accounts_fail_only_their_row_once() {
    let sim = Sim::with_faults(
        [1, 2, 3],
        Faults {
            forbidden_ids: vec![2],
            ..Faults::default()
        },
    );
    let work = Work::new();
    work.write("in.csv", reseller_moves([1, 2, 3, 404], 9));
    let ran = work.run_rows(&sim, "in.csv", "out.csv").unpaced().ran();
    assert_exit(&ran, 1);
    let rows = work.results_by_line("out.csv");
    assert_eq!(rows[&2]["outcome"], "updated");
    assert_eq!(rows[&3]["outcome"], "failed");
    assert_eq!(rows[&3]["http_status"], "403");
    assert_eq!(rows[&3]["attempts"], "1");
    assert!(
        rows[&3]["error"].contains("permission"),
        "{}",
        rows[&3]["error"]
    );
    assert_eq!(rows[&5]["outcome"], "failed");
    assert_eq!(rows[&5]["http_status"], "404");
    assert_eq!(rows[&5]["attempts"], "1");
    assert_eq!(rows[&4]["outcome"], "updated");
    assert_eq!(sim.patches_for(2).len(), 1);
    assert_eq!(sim.patches_for(404).len(), 1);
}

#[test]
fn numbers_beyond_64_bits_are_invalid_not_sent() {
    let sim = Sim::with_accounts([1]);
    let work = Work::new();
    work.write("in.csv", "client_id,reseller\n1,99999999999999999999\n");
    let ran = work.run_rows(&sim, "in.csv", "out.csv").ran();
    assert_exit(&ran, 1);
    let rows = work.results("out.csv");
    assert_eq!(rows[0]["outcome"], "invalid");
    assert!(sim.patches().is_empty());
}

#[test]
fn transient_failures_end_updated_within_max_attempts() {
    use std::time::Duration;
    let cases: Vec<(&str, Fault)> = vec![
        ("500", Fault::Status(500)),
        ("502", Fault::Status(502)),
        ("503", Fault::Status(503)),
        ("504", Fault::Status(504)),
        ("408", Fault::Status(408)),
        (
            "429",
            Fault::TooManyRequests {
                retry_after: Some("1".into()),
            },
        ),
        ("reset", Fault::Reset),
        ("html 502", Fault::Html(502)),
        ("timeout", Fault::Slow(Duration::from_secs(5))),
    ];
    for (name, fault) in cases {
        let sim = Sim::with_faults(
            [1, 2, 3],
            faults(vec![
                rule(fault, Trigger::FirstPerAccount(2)).on_method("PATCH"),
            ]),
        );
        let work = Work::new();
        work.write("in.csv", reseller_moves([1, 2, 3], 9));
        let ran = work
            .run_rows(&sim, "in.csv", "out.csv")
            .args([
                "--rate",
                "unlimited",
                "--max-attempts",
                "3",
                "--timeout",
                "1s",
            ])
            .ran();
        assert_exit(&ran, 0);
        for row in work.results("out.csv") {
            assert_eq!(row["outcome"], "updated", "{name}: {row:?}");
            assert_eq!(row["attempts"], "3", "{name}: {row:?}");
        }
        for id in [1, 2, 3] {
            assert_eq!(sim.patches_for(id).len(), 3, "{name}");
            assert_eq!(sim.account(id).reseller, 9, "{name}");
        }
    }
}

#[test]
fn retries_stop_at_max_attempts() {
    let sim = Sim::with_faults([1], faults(vec![rule(Fault::Status(503), Trigger::Always)]));
    let work = Work::new();
    work.write("in.csv", reseller_moves([1], 9));
    let ran = work
        .run_rows(&sim, "in.csv", "out.csv")
        .args(["--rate", "unlimited", "--max-attempts", "2"])
        .ran();
    assert_exit(&ran, 1);
    let row = &work.results("out.csv")[0];
    assert_eq!(row["outcome"], "failed");
    assert_eq!(row["attempts"], "2");
    assert_eq!(row["http_status"], "503");
    assert!(
        row["error"].starts_with("gave up after 2 attempts: HTTP 503"),
        "{}",
        row["error"]
    );
}

#[test]
fn a_429_pauses_the_whole_run_for_retry_after() {
    use std::time::Duration;
    // One row's retry waits out Retry-After.
    let throttle_first = |ids: Trigger| {
        faults(vec![
            rule(
                Fault::TooManyRequests {
                    retry_after: Some("2".into()),
                },
                ids,
            )
            .on_method("PATCH"),
        ])
    };
    let sim = Sim::with_faults([1], throttle_first(Trigger::FirstPerAccount(1)));
    let work = Work::new();
    work.write("in.csv", reseller_moves([1], 9));
    let ran = work.run_rows(&sim, "in.csv", "out.csv").unpaced().ran();
    assert_exit(&ran, 0);
    let patches = sim.patches();
    assert_eq!(patches.len(), 2);
    let gap = patches[1].at - patches[0].at;
    assert!(gap >= Duration::from_millis(1900), "retried after {gap:?}");

    // Every other row waits too. Account 1 is always throttled; 20 ms of
    // latency keeps the other worker from finishing every row before the
    // 429 comes back.
    let mut faults = throttle_first(Trigger::Ids(vec![1]));
    faults.latency = Duration::from_millis(20);
    let sim = Sim::with_faults(1..=8, faults);
    let work = Work::new();
    work.write("in.csv", reseller_moves(1..=8, 9));
    let ran = work
        .run_rows(&sim, "in.csv", "out.csv")
        .args([
            "--rate",
            "unlimited",
            "--concurrency",
            "2",
            "--max-attempts",
            "2",
        ])
        .ran();
    assert_exit(&ran, 1);
    let patches = sim.patches();
    let t429 = patches.iter().find(|p| p.client_id == Some(1)).unwrap().at;
    let during_pause: Vec<_> = patches
        .iter()
        .filter(|p| {
            p.at > t429 + Duration::from_millis(60) && p.at < t429 + Duration::from_millis(1900)
        })
        .map(|p| (p.client_id, p.at))
        .collect();
    assert!(
        during_pause.is_empty(),
        "requests during the pause: {during_pause:?}"
    );
    let after = patches
        .iter()
        .filter(|p| p.at >= t429 + Duration::from_millis(1900))
        .count();
    assert!(
        after >= 4,
        "the other rows should have waited for the pause"
    );
}

#[test]
fn retry_after_as_an_http_date_is_honoured() {
    let when =
        httpdate::fmt_http_date(std::time::SystemTime::now() + std::time::Duration::from_secs(3));
    let sim = Sim::with_faults(
        [1],
        faults(vec![rule(
            Fault::TooManyRequests {
                retry_after: Some(when),
            },
            Trigger::FirstPerAccount(1),
        )]),
    );
    let work = Work::new();
    work.write("in.csv", reseller_moves([1], 9));
    let ran = work.run_rows(&sim, "in.csv", "out.csv").unpaced().ran();
    assert_exit(&ran, 0);
    let patches = sim.patches();
    let gap = patches[1].at - patches[0].at;
    // An HTTP date has whole seconds: at least two of the three remain.
    assert!(
        gap >= std::time::Duration::from_millis(1900),
        "retried after {gap:?}"
    );
}

#[test]
fn a_rejected_token_stops_the_run_with_exit_3() {
    let sim = Sim::with_accounts(1..=50);
    let work = Work::new();
    work.write("in.csv", reseller_moves(1..=50, 9));
    let mut cmd = work.command();
    cmd.args([
        "run",
        "in.csv",
        "-o",
        "out.csv",
        "--api-url",
        &sim.url,
        "--rate",
        "unlimited",
    ])
    .env("GCORE_API_KEY", "wrong-token-value");
    let ran = wait(cmd.spawn().unwrap());
    assert_exit(&ran, 3);
    assert!(ran.stderr.contains("token"), "{}", ran.stderr);
    assert!(
        sim.patches().is_empty(),
        "the preflight check must stop before any PATCH"
    );
    assert!(ran.elapsed < std::time::Duration::from_secs(30));
}

#[test]
fn a_401_mid_run_stops_new_requests_and_records_in_flight_ones() {
    let sim = Sim::with_faults(
        1..=40,
        faults(vec![
            rule(Fault::Status(401), Trigger::Ids(vec![10])).on_method("PATCH"),
        ]),
    );
    let work = Work::new();
    work.write("in.csv", reseller_moves(1..=40, 9));
    let ran = work
        .run_rows(&sim, "in.csv", "out.csv")
        .args(["--rate", "unlimited", "--concurrency", "2"])
        .ran();
    assert_exit(&ran, 3);
    let rows = work.results("out.csv");
    let patched = sim.patches();
    assert!(patched.len() < 40, "the run went on after the 401");
    // Every PATCH the server answered is in the results.
    assert_eq!(rows.len(), patched.len());
    let row_10 = rows.iter().find(|r| r["client_id"] == "10").unwrap();
    assert_eq!(row_10["outcome"], "failed");
    assert_eq!(row_10["http_status"], "401");
    assert_eq!(row_10["attempts"], "1");
}

#[test]
fn the_token_never_appears_in_output_even_at_trace_level() {
    let sim = Sim::with_faults(
        [1, 2, 3],
        faults(vec![
            rule(Fault::Status(503), Trigger::FirstPerAccount(1)).on_method("PATCH"),
        ]),
    );
    let work = Work::new();
    work.write("in.csv", "client_id,name\n1,a\n2,b\n3,c\n4,d\n");
    let mut cmd = work.command();
    cmd.args([
        "run",
        "in.csv",
        "-o",
        "out.csv",
        "--api-url",
        &sim.url,
        "--rate",
        "unlimited",
        "-vv",
    ])
    .env("GCORE_API_KEY", TOKEN)
    .env("RUST_LOG", "trace");
    let ran = wait(cmd.spawn().unwrap());
    assert_exit(&ran, 1);
    assert!(
        ran.stderr.len() > 1000,
        "trace logging produced little: {}",
        ran.stderr
    );
    let secret = TOKEN.split('$').nth(1).unwrap();
    for (what, text) in [
        ("stdout", ran.stdout.as_str()),
        ("stderr", ran.stderr.as_str()),
        ("results", &work.read("out.csv")),
    ] {
        assert!(!text.contains(secret), "the token leaked into {what}");
        assert!(!text.contains(TOKEN), "the token leaked into {what}");
    }
}

#[test]
fn exit_code_one_when_any_row_failed_or_was_invalid() {
    let sim = Sim::with_accounts([1]);
    let work = Work::new();
    work.write("in.csv", "client_id,reseller\n1,5\nabc,5\n");
    let ran = work.run_rows(&sim, "in.csv", "out.csv").ran();
    assert_exit(&ran, 1);
    assert_eq!(sim.patches().len(), 1);
}
