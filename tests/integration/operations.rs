//! Running unattended: summary and metrics files, JSON logs, status lines,
//! sharding, canaries, completions and help.

use std::collections::BTreeMap;

use crate::common::*;

fn count_outcomes(rows: &[BTreeMap<String, String>]) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for row in rows {
        *counts.entry(row["outcome"].clone()).or_insert(0) += 1;
    }
    counts
}

/// Parses Prometheus text: `# HELP`/`# TYPE` lines, then `name{labels} value`.
fn parse_prometheus(text: &str) -> BTreeMap<String, f64> {
    let mut samples = BTreeMap::new();
    let mut typed = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            typed.push(parts.next().unwrap().to_string());
            assert_eq!(parts.next(), Some("gauge"), "{line}");
            continue;
        }
        if line.starts_with("# HELP ") || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("a sample line");
        let name = series.split('{').next().unwrap();
        assert!(name.starts_with("gcore_iam_bulk_"), "{line}");
        assert!(typed.iter().any(|t| t == name), "{name} has no TYPE line");
        assert!(series.ends_with('}') || !series.contains('{'), "{line}");
        samples.insert(series.to_string(), value.parse::<f64>().expect("a number"));
    }
    samples
}

#[test]
fn summary_and_metrics_match_the_results() {
    let sim = Sim::with_faults(
        1..=30,
        faults(vec![
            rule(Fault::Status(503), Trigger::FirstPerAccount(1)).on_method("PATCH"),
        ]),
    );
    let work = Work::new();
    let mut input = reseller_moves(1..=30, 9);
    input.push_str("bad,9\n404,9\n");
    work.write("in.csv", input);
    let ran = work
        .run_rows(&sim, "in.csv", "out.csv")
        .args([
            "--rate",
            "unlimited",
            "--summary-json",
            "summary.json",
            "--metrics-file",
            "metrics.prom",
        ])
        .ran();
    assert_exit(&ran, 1);
    let counts = count_outcomes(&work.results("out.csv"));
    let summary: serde_json::Value = serde_json::from_str(&work.read("summary.json")).unwrap();
    for (outcome, n) in &counts {
        assert_eq!(summary["outcomes"][outcome].as_u64(), Some(*n), "{outcome}");
    }
    assert_eq!(summary["exit_code"], 1);
    assert_eq!(summary["rows_read"], 32);
    assert_eq!(
        summary["requests"].as_u64(),
        Some(sim.requests().len() as u64)
    );
    // Each account's first PATCH is a 503, unknown account 404 included.
    assert_eq!(summary["retries"], 31);
    assert_eq!(summary["input"], "in.csv");
    assert_eq!(summary["output"], "out.csv");
    for key in ["started_at", "ended_at"] {
        let t = summary[key].as_str().unwrap();
        assert!(humantime::parse_rfc3339(t).is_ok(), "{key}: {t}");
    }
    assert!(summary["elapsed_seconds"].as_f64().unwrap() > 0.0);
    assert!(summary["effective_rate"].as_f64().unwrap() > 0.0);
    for key in ["throttled_429", "rate_changes"] {
        assert!(summary[key].is_u64(), "{key}");
    }

    let metrics = parse_prometheus(&work.read("metrics.prom"));
    for (outcome, n) in &counts {
        let key = format!("gcore_iam_bulk_rows{{command=\"run\",outcome=\"{outcome}\"}}");
        assert_eq!(metrics[&key], *n as f64, "{key}");
    }
    assert_eq!(
        metrics["gcore_iam_bulk_last_run_exit_code{command=\"run\"}"],
        1.0
    );
    assert_eq!(metrics["gcore_iam_bulk_retries{command=\"run\"}"], 31.0);
    let start = metrics["gcore_iam_bulk_last_run_start_timestamp_seconds{command=\"run\"}"];
    let end = metrics["gcore_iam_bulk_last_run_end_timestamp_seconds{command=\"run\"}"];
    assert!(start > 1.7e9 && end >= start);
    assert!(metrics.contains_key("gcore_iam_bulk_last_run_duration_seconds{command=\"run\"}"));
    assert!(metrics.contains_key("gcore_iam_bulk_requests{command=\"run\"}"));
}

#[test]
fn summary_is_written_for_runs_that_stop_early_too() {
    let work = Work::new();
    work.write("in.csv", "client_id,colour\n1,red\n");
    let ran = work.run(&[
        "run",
        "in.csv",
        "-o",
        "out.csv",
        "--dry-run",
        "--summary-json",
        "s.json",
        "--metrics-file",
        "m.prom",
    ]);
    assert_exit(&ran, 2);
    let summary: serde_json::Value = serde_json::from_str(&work.read("s.json")).unwrap();
    assert_eq!(summary["exit_code"], 2);
    assert!(
        summary["stopped"]
            .as_str()
            .unwrap()
            .contains("unknown column")
    );
    let metrics = parse_prometheus(&work.read("m.prom"));
    assert_eq!(
        metrics["gcore_iam_bulk_last_run_exit_code{command=\"run\"}"],
        2.0
    );

    let sim = Sim::with_accounts([]);
    work.write("in.csv", reseller_moves(1..=200, 9));
    let ran = work
        .run_rows(&sim, "in.csv", "out.csv")
        .args(["--rate", "unlimited", "--summary-json", "s.json"])
        .ran();
    assert_exit(&ran, 3);
    let summary: serde_json::Value = serde_json::from_str(&work.read("s.json")).unwrap();
    assert_eq!(summary["exit_code"], 3);
    assert!(
        summary["stopped"]
            .as_str()
            .unwrap()
            .contains("--max-failure-rate")
    );
}

#[test]
fn json_logs_are_one_object_per_line_and_nothing_else() {
    let sim = Sim::with_faults(
        1..=20,
        Faults {
            rules: vec![
                rule(
                    Fault::TooManyRequests {
                        retry_after: Some("1".into()),
                    },
                    Trigger::Ids(vec![3]),
                )
                .on_method("PATCH"),
            ],
            latency: std::time::Duration::from_millis(30),
            ..Faults::default()
        },
    );
    let work = Work::new();
    work.write("in.csv", format!("{}x,1\n", reseller_moves(1..=20, 9)));
    let ran = work
        .run_rows(&sim, "in.csv", "out.csv")
        .args([
            "--rate",
            "unlimited",
            "--log-format",
            "json",
            "--status-interval",
            "300ms",
            "--max-attempts",
            "2",
            "-v",
        ])
        .ran();
    assert_exit(&ran, 1);
    let lines: Vec<&str> = ran.stderr.lines().collect();
    assert!(lines.len() >= 3, "{}", ran.stderr);
    let mut messages = Vec::new();
    for line in lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            v["timestamp"].is_string() && v["level"].is_string(),
            "{line}"
        );
        messages.push(v["message"].as_str().unwrap_or_default().to_string());
    }
    assert!(messages.iter().any(|m| m == "summary"), "{messages:?}");
    assert!(messages.iter().any(|m| m == "status"), "{messages:?}");
    assert!(messages.iter().any(|m| m.contains("429")), "{messages:?}");

    // Errors before and after the command line parses are JSON too.
    for args in [
        vec!["run", "in.csv", "--log-format", "json"],
        vec![
            "run",
            "missing.csv",
            "-o",
            "x.csv",
            "--dry-run",
            "--log-format",
            "json",
        ],
    ] {
        let ran = work.run(&args);
        assert_exit(&ran, 2);
        for line in ran.stderr.lines() {
            let v: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            assert_eq!(v["level"], "ERROR", "{line}");
        }
    }
}

#[test]
fn without_a_terminal_status_lines_appear_and_no_control_characters() {
    let sim = Sim::with_faults(
        1..=40,
        Faults {
            latency: std::time::Duration::from_millis(20),
            ..Faults::default()
        },
    );
    let work = Work::new();
    work.write("in.csv", reseller_moves(1..=40, 9));
    let ran = work
        .run_rows(&sim, "in.csv", "out.csv")
        .args(["--rate", "40/s", "--status-interval", "250ms"])
        .ran();
    assert_exit(&ran, 0);
    let status: Vec<&str> = ran
        .stderr
        .lines()
        .filter(|l| l.starts_with("status: "))
        .collect();
    assert!(status.len() >= 2, "{}", ran.stderr);
    assert!(status.iter().any(|l| l.contains("/40 rows")), "{status:?}");
    assert!(
        ran.stderr.chars().all(|c| c == '\n' || !c.is_control()),
        "control characters on stderr: {:?}",
        ran.stderr
    );
}

#[test]
fn shards_are_disjoint_and_cover_the_input() {
    let work = Work::new();
    let mut input = reseller_moves(1..=300, 9);
    input.push_str("not-a-number,9\n");
    work.write("in.csv", &input);
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for k in 0..3 {
        let out = format!("shard{k}.csv");
        let shard = format!("{k}/3");
        let ran = work.run(&["run", "in.csv", "-o", &out, "--dry-run", "--shard", &shard]);
        assert!(ran.code == 0 || ran.code == 1, "{}", ran.stderr);
        let rows = work.results(&out);
        assert!(rows.len() > 50, "shard {k} has {} rows", rows.len());
        for row in rows {
            *seen.entry(row["line"].clone()).or_default() += 1;
        }
    }
    assert_eq!(seen.len(), 301, "every row in some shard");
    assert!(seen.values().all(|&n| n == 1), "a row in two shards");

    // auto/N takes K from JOB_COMPLETION_INDEX (Kubernetes Indexed Jobs).
    let mut cmd = work.command();
    cmd.args([
        "run",
        "in.csv",
        "-o",
        "auto.csv",
        "--dry-run",
        "--shard",
        "auto/3",
    ])
    .env("JOB_COMPLETION_INDEX", "1");
    let ran = wait(cmd.spawn().unwrap());
    assert!(ran.code == 0 || ran.code == 1, "{}", ran.stderr);
    // The same rows, but for when each ended.
    let without_times = |name: &str| -> Vec<Vec<String>> {
        work.results(name)
            .into_iter()
            .map(|mut row| {
                assert!(row.remove("finished_at").is_some_and(|t| t.ends_with('Z')));
                row.into_values().collect()
            })
            .collect()
    };
    assert_eq!(without_times("auto.csv"), without_times("shard1.csv"));
    let ran = work.run(&[
        "run",
        "in.csv",
        "-o",
        "none.csv",
        "--dry-run",
        "--shard",
        "auto/3",
    ]);
    assert_exit(&ran, 2);
    assert!(
        ran.stderr.contains("JOB_COMPLETION_INDEX"),
        "{}",
        ran.stderr
    );
}

#[test]
fn limit_runs_a_canary_and_resume_takes_the_rest() {
    let sim = Sim::with_accounts(1..=50);
    let work = Work::new();
    work.write("in.csv", reseller_moves(1..=50, 9));
    let ran = work
        .run_rows(&sim, "in.csv", "out.csv")
        .args(["--rate", "unlimited", "--limit", "5"])
        .ran();
    assert_exit(&ran, 0);
    assert_eq!(work.results("out.csv").len(), 5);
    assert_eq!(sim.patches().len(), 5);
    let ran = work
        .run_rows(&sim, "in.csv", "out.csv")
        .args(["--rate", "unlimited", "--resume"])
        .ran();
    assert_exit(&ran, 0);
    assert_eq!(work.results("out.csv").len(), 50);
    assert_eq!(
        sim.patches().len(),
        50,
        "the canary rows were not sent again"
    );
}

#[test]
fn without_a_terminal_the_run_never_asks() {
    // stdin is not a terminal here: even far above --confirm-above, the run
    // goes ahead without a question.
    let sim = Sim::with_accounts(1..=20);
    let work = Work::new();
    work.write("in.csv", reseller_moves(1..=20, 9));
    let ran = work
        .run_rows(&sim, "in.csv", "out.csv")
        .args(["--rate", "unlimited", "--confirm-above", "1"])
        .ran();
    assert_exit(&ran, 0);
    assert!(!ran.stderr.contains("Continue?"), "{}", ran.stderr);
}

#[test]
fn completions_for_every_shell_and_help_with_examples() {
    let work = Work::new();
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef gcore-iam-bulk"),
        ("fish", "complete -c gcore-iam-bulk"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let ran = work.run(&["completions", shell]);
        assert_exit(&ran, 0);
        assert!(
            ran.stdout.contains(marker),
            "{shell}: {}",
            &ran.stdout[..200.min(ran.stdout.len())]
        );
        assert!(ran.stdout.contains("dry-run"), "{shell}");
    }
    for command in ["run", "plan", "export", "simulate"] {
        let ran = work.run(&[command, "--help"]);
        assert_exit(&ran, 0);
        assert!(
            ran.stdout.contains("Example"),
            "{command} --help has no example"
        );
    }
    let ran = work.run(&["man"]);
    assert_exit(&ran, 0);
    assert!(
        ran.stdout.contains(".TH gcore-iam-bulk"),
        "{}",
        &ran.stdout[..100.min(ran.stdout.len())]
    );
}
