//! The HTML report, read as text: its figures against the results files it
//! was made from, several files as one run, `--report` at the end of every
//! kind of run, the paths it may not write, and nothing it could load.
//! (`browser` renders it in Chromium.)

use std::collections::BTreeMap;

use crate::common::*;

/// The `data-NAME="…"` value on the element whose `id` is `id`.
pub fn data_of(html: &str, id: &str, name: &str) -> Option<String> {
    let at = html.find(&format!("id=\"{id}\""))?;
    let tag_end = html[at..].find('>')? + at;
    let tag_start = html[..at].rfind('<')?;
    let tag = &html[tag_start..tag_end];
    let key = format!("data-{name}=\"");
    let from = tag.find(&key)? + key.len();
    let to = tag[from..].find('"')? + from;
    Some(tag[from..to].to_string())
}

/// Outcome → lines, counting each line's last record, as `results` does.
fn final_outcomes(rows: &[BTreeMap<String, String>]) -> BTreeMap<String, u64> {
    let mut last: BTreeMap<String, String> = BTreeMap::new();
    for row in rows {
        last.insert(row["line"].clone(), row["outcome"].clone());
    }
    let mut counts = BTreeMap::new();
    for outcome in last.values() {
        *counts.entry(outcome.clone()).or_insert(0) += 1;
    }
    counts
}

/// The nearest-rank percentile of the rows' `duration_ms` that sent requests.
fn percentile(rows: &[BTreeMap<String, String>], q: f64) -> u64 {
    let mut d: Vec<u64> = rows
        .iter()
        .filter(|r| r["attempts"] != "0")
        .map(|r| r["duration_ms"].parse().unwrap())
        .collect();
    d.sort_unstable();
    let rank = ((q * d.len() as f64).ceil() as usize).clamp(1, d.len());
    d[rank - 1]
}

/// A run with every kind of row: updated, failed (404), invalid, retried.
pub fn mixed_run(work: &Work) -> Sim {
    let sim = Sim::with_faults(
        1..=40,
        faults(vec![
            rule(Fault::Status(404), Trigger::Ids(vec![7, 8, 9])).on_method("PATCH"),
            rule(Fault::Status(503), Trigger::FirstPerAccount(1)).on_method("PATCH"),
        ]),
    );
    let mut input = String::from("client_id,seller,email\n");
    for id in 1..=30 {
        input.push_str(&format!("{id},80,\n"));
    }
    input.push_str("x,80,\n31,eighty,\n32,81,not-an-email\n33,,\n");
    work.write("in.csv", input);
    let ran = work
        .run_rows(&sim, "in.csv", "out.csv")
        .args([
            "--rate",
            "100/s",
            "--undo-file",
            "undo.csv",
            "--summary-json",
            "summary.json",
        ])
        .ran();
    assert_exit(&ran, 1);
    sim
}

#[test]
fn report_figures_match_the_results_file() {
    let work = Work::new();
    let _sim = mixed_run(&work);
    let ran = work.run(&[
        "report",
        "out.csv",
        "--summary",
        "summary.json",
        "-o",
        "report.html",
        "--title",
        "CHG-1234 seller 80",
    ]);
    assert_exit(&ran, 0);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(work.path("report.html"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "created rw-------");

    let html = work.read("report.html");
    let rows = work.results("out.csv");
    let outcomes = final_outcomes(&rows);
    assert_eq!(outcomes["updated"], 27);
    assert_eq!(outcomes["failed"], 3);
    assert_eq!(outcomes["invalid"], 4);
    for (outcome, n) in &outcomes {
        assert_eq!(
            data_of(&html, &format!("outcome-{outcome}"), "count"),
            Some(n.to_string()),
            "{outcome}"
        );
    }
    assert_eq!(data_of(&html, "outcome-total", "count"), Some("34".into()));
    assert_eq!(data_of(&html, "exit-code", "code"), Some("1".into()));
    for (id, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99)] {
        assert_eq!(
            data_of(&html, id, "ms"),
            Some(percentile(&rows, q).to_string()),
            "{id}"
        );
    }
    let retries: u64 = rows
        .iter()
        .map(|r| r["retries"].parse::<u64>().unwrap())
        .sum();
    assert!(
        retries >= 27,
        "every PATCH but the 404s' was answered 503 once"
    );
    assert_eq!(
        data_of(&html, "retries", "retries"),
        Some(retries.to_string())
    );
    assert!(html.contains("<title>CHG-1234 seller 80</title>"));
    assert!(
        html.contains("gcore-iam-bulk run in.csv -o out.csv"),
        "the command line"
    );
    assert!(html.contains("rate asked") && html.contains("100/s"));

    // Errors grouped by message: the three 404s are one group.
    let errors = &html[html.find("id=\"errors\"").unwrap()..html.find("id=\"invalid\"").unwrap()];
    assert_eq!(errors.matches("class=\"group\"").count(), 1, "{errors}");
    assert!(errors.contains("data-count=\"3\"") && errors.contains("404"));
    assert!(errors.contains("8, 9, 10"), "the first lines");
    // Invalid rows by field and problem.
    let invalid = &html[html.find("id=\"invalid\"").unwrap()..html.find("id=\"changes\"").unwrap()];
    for field in ["client_id", "seller", "email", "row"] {
        assert!(
            invalid.contains(&format!("<td>{field}</td>")),
            "{field}: {invalid}"
        );
    }
    // What changed, from the diff column.
    let changes = &html[html.find("id=\"changes\"").unwrap()..];
    let moved: u64 = rows
        .iter()
        .filter(|r| r["outcome"] == "updated" && !r["diff"].is_empty())
        .count() as u64;
    assert!(moved > 0);
    let counted: u64 = changes
        .match_indices("class=\"change\"")
        .map(|(at, _)| {
            let tag = &changes[at..at + changes[at..].find('>').unwrap()];
            let from = tag.find("data-count=\"").unwrap() + 12;
            tag[from..from + tag[from..].find('"').unwrap()]
                .parse::<u64>()
                .unwrap()
        })
        .sum();
    assert_eq!(counted, moved, "every account whose seller changed");
    // The way back.
    assert!(html.contains("gcore-iam-bulk run") && html.contains("undo.csv -o undo-results.csv"));
}

#[test]
fn report_reads_shards_and_resumed_runs_as_one_run() {
    let sim = Sim::with_faults(
        1..=60,
        faults(vec![
            rule(Fault::Status(404), Trigger::Ids(vec![5])).on_method("PATCH"),
        ]),
    );
    let work = Work::new();
    work.write("in.csv", reseller_moves(1..=60, 900003));
    for k in 0..2 {
        let out = format!("shard-{k}.csv");
        let shard = format!("{k}/2");
        let ran = work.run_against(
            &sim,
            &[
                "run",
                "in.csv",
                "-o",
                &out,
                "--shard",
                &shard,
                "--rate",
                "unlimited",
            ],
        );
        assert!(ran.code == 0 || ran.code == 1, "{}", ran.stderr);
    }
    // The shard that had account 5 resumes once the API lets it through.
    sim.set_faults(Faults::default());
    let with_5 = (0..2)
        .map(|k| format!("shard-{k}.csv"))
        .find(|f| work.results(f).iter().any(|r| r["client_id"] == "5"))
        .unwrap();
    let shard = if with_5 == "shard-0.csv" {
        "0/2"
    } else {
        "1/2"
    };
    let ran = work.run_against(
        &sim,
        &[
            "run",
            "in.csv",
            "-o",
            &with_5,
            "--shard",
            shard,
            "--resume",
            "--rate",
            "unlimited",
        ],
    );
    assert_exit(&ran, 0);

    let ran = work.run(&["report", "shard-0.csv", "shard-1.csv", "-o", "report.html"]);
    assert_exit(&ran, 0);
    let html = work.read("report.html");
    assert_eq!(
        data_of(&html, "outcome-updated", "count"),
        Some("60".into())
    );
    assert_eq!(
        data_of(&html, "outcome-failed", "count"),
        None,
        "resumed, then updated"
    );
    assert_eq!(data_of(&html, "exit-code", "code"), Some("0".into()));
    assert!(
        html.contains("61 results records in 2 files, 60 input lines"),
        "{}",
        &html[..2000]
    );
    assert!(
        ran.stderr.contains("60 input lines from 2 results files"),
        "{}",
        ran.stderr
    );
}

#[test]
fn run_and_plan_write_the_report_at_the_end_however_they_end() {
    // Interrupted: exit 130, the report says so and counts what was done.
    let sim = Sim::with_faults(
        1..=300,
        Faults {
            latency: std::time::Duration::from_millis(20),
            ..Faults::default()
        },
    );
    let work = Work::new();
    work.write("in.csv", reseller_moves(1..=300, 900003));
    let child = work.spawn_against(
        &sim,
        &[
            "run",
            "in.csv",
            "-o",
            "out.csv",
            "--rate",
            "50/s",
            "--report",
            "report.html",
        ],
    );
    sim.wait_for_patches(10, std::time::Duration::from_secs(30));
    signal(&child, "INT");
    let ran = wait(child);
    assert_exit(&ran, 130);
    let html = work.read("report.html");
    let done = work.results("out.csv").len();
    assert!(done < 300);
    assert_eq!(data_of(&html, "exit-code", "code"), Some("130".into()));
    assert_eq!(
        data_of(&html, "outcome-total", "count"),
        Some(done.to_string())
    );
    assert!(
        html.contains("Stopped early: interrupted"),
        "the verdict says why"
    );

    // Aborted by the failure threshold: exit 3.
    let sim = Sim::with_faults(
        1..=80,
        faults(vec![
            rule(Fault::Status(404), Trigger::Always).on_method("PATCH"),
        ]),
    );
    let work = Work::new();
    work.write("in.csv", reseller_moves(1..=80, 900003));
    let ran = work
        .run_rows(&sim, "in.csv", "out.csv")
        .args([
            "--rate",
            "unlimited",
            "--max-failures",
            "5",
            "--report",
            "report.html",
        ])
        .ran();
    assert_exit(&ran, 3);
    let html = work.read("report.html");
    assert_eq!(data_of(&html, "exit-code", "code"), Some("3".into()));
    assert!(html.contains("--max-failures 5"), "why it stopped");

    // Refused before it started (the token was rejected): the refusal alone.
    let work = Work::new();
    work.write("in.csv", reseller_moves(1..=3, 900003));
    let mut cmd = work.command();
    cmd.args(["run", "in.csv", "-o", "out.csv", "--report", "report.html"])
        .args(["--api-url", &sim.url])
        .env("GCORE_API_KEY", "not-the-token");
    let ran = wait(cmd.spawn().unwrap());
    assert_exit(&ran, 3);
    assert!(
        !work.path("out.csv").exists(),
        "no results file left behind"
    );
    let html = work.read("report.html");
    assert_eq!(data_of(&html, "exit-code", "code"), Some("3".into()));
    assert!(html.contains("rejected the token"));

    // A plan: what would change.
    let sim = Sim::with_accounts(1..=5);
    let work = Work::new();
    work.write("in.csv", reseller_moves(1..=5, 900003));
    let ran = work
        .plan_rows(&sim, "in.csv", "plan.csv")
        .args(["--rate", "unlimited", "--report", "plan.html"])
        .ran();
    assert_exit(&ran, 0);
    let html = work.read("plan.html");
    assert!(html.contains("What would change"));
    let would = work
        .results("plan.csv")
        .iter()
        .filter(|r| r["outcome"] == "would_update")
        .count();
    assert_eq!(
        data_of(&html, "outcome-would_update", "count"),
        Some(would.to_string())
    );
}

#[test]
fn report_paths_are_protected_like_other_outputs() {
    let sim = Sim::with_accounts(1..=3);
    let work = Work::new();
    work.write("in.csv", reseller_moves(1..=3, 900003));
    for (report, why) in [
        ("in.csv", "is the input file itself"),
        ("out.csv", "name the same file"),
    ] {
        let ran = work.run_against(
            &sim,
            &["run", "in.csv", "-o", "out.csv", "--report", report],
        );
        assert_exit(&ran, 2);
        assert!(
            ran.stderr.contains(why),
            "--report {report}: {}",
            ran.stderr
        );
    }
    let ran = work
        .run_rows(&sim, "in.csv", "-")
        .args(["--report", "r.html"])
        .ran();
    assert_exit(&ran, 2);
    assert!(ran.stderr.contains("--report needs -o"), "{}", ran.stderr);
    assert!(
        !work.path("r.html").exists(),
        "a refused command leaves no report"
    );
    assert!(
        sim.patches().is_empty(),
        "nothing sent for a refused report path"
    );

    let ran = work.run_rows(&sim, "in.csv", "out.csv").unpaced().ran();
    assert_exit(&ran, 0);
    let before = work.read("out.csv");
    let ran = work.run(&["report", "out.csv", "-o", "out.csv"]);
    assert_exit(&ran, 2);
    assert!(
        ran.stderr.contains("one of the files read"),
        "{}",
        ran.stderr
    );
    let ran = work.run(&["report", "out.csv", "-o", "in.csv"]);
    assert_exit(&ran, 2);
    assert!(ran.stderr.contains("a file of rows"), "{}", ran.stderr);
    assert_eq!(work.read("out.csv"), before);
    assert_eq!(work.read("in.csv"), reseller_moves(1..=3, 900003));
    let ran = work.run(&["report", "in.csv", "-o", "r.html"]);
    assert_exit(&ran, 2);
    assert!(ran.stderr.contains("not a results file"), "{}", ran.stderr);
    assert!(!work.path("r.html").exists());
    // To standard output.
    let ran = work.run(&["report", "out.csv", "-o", "-"]);
    assert_exit(&ran, 0);
    assert!(ran.stdout.starts_with("<!DOCTYPE html>"));
}

#[test]
fn the_report_loads_nothing_and_never_holds_the_token() {
    let work = Work::new();
    let sim = Sim::with_accounts(1..=4);
    work.write("in.csv", reseller_moves(1..=4, 900003));
    // The token stands in a value (a file name, here): it is masked.
    let summary = format!("summary-{TOKEN}.json");
    let ran = work.run_against(
        &sim,
        &[
            "run",
            "in.csv",
            "-o",
            "out.csv",
            "--rate",
            "unlimited",
            "--report",
            "report.html",
            "--summary-json",
            &summary,
        ],
    );
    assert_exit(&ran, 0);
    let html = work.read("report.html");
    assert!(!html.contains(TOKEN), "the token is in the report");
    assert!(html.contains("summary-***.json"), "masked where it stood");
    let json = std::fs::read_to_string(work.path(&summary)).unwrap();
    let command_line: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(
        !command_line["command_line"]
            .as_str()
            .unwrap()
            .contains(TOKEN)
    );

    assert_self_contained(&html);
}

/// Nothing in the page can make a browser fetch anything: no script, no
/// link, no image, no frame, no font, no `src`/`href` anywhere, no CSS
/// `url(` or `@import`, no attribute whose value is a web address.
pub fn assert_self_contained(html: &str) {
    let lower = html.to_ascii_lowercase();
    for needle in [
        "<script",
        "<link",
        "<img",
        "<iframe",
        "<object",
        "<embed",
        "<video",
        "<audio",
        "<source",
        " src=",
        " href=",
        "xlink:href",
        "url(",
        "@import",
        "@font-face",
        "=\"http",
        "='http",
        "=http",
        "=\"//",
    ] {
        // The one namespace declaration on inline SVG is not fetched.
        let hits = lower.matches(needle).count();
        let declarations = if needle == "=\"http" {
            lower
                .matches("xmlns=\"http://www.w3.org/2000/svg\"")
                .count()
        } else {
            0
        };
        assert_eq!(hits, declarations, "`{needle}` in the report");
    }
    assert!(
        lower.contains("<meta name=\"viewport\""),
        "readable on a phone"
    );
    assert!(lower.contains("@media print"), "printable");
}
