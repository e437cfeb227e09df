//! What a user reads on stderr: every stop says why and what to type next
//! (whatever `-q`), every command the tool prints is one it accepts, no
//! input can make it hold more than a bounded amount, signals mean the same
//! in every command, and the messages name what is at fault.

use std::time::Duration;

use crate::common::*;

const BIN: &str = env!("CARGO_BIN_EXE_gcore-iam-bulk");

/// Runs the binary with the test token, a base URL of the test's choosing
/// (unlike `run_against`, which adds its own) and extra environment.
fn run_with(work: &Work, args: &[&str], env: &[(&str, &str)]) -> Ran {
    let mut cmd = work.command();
    cmd.args(args).env("GCORE_API_KEY", TOKEN);
    for (name, value) in env {
        cmd.env(name, value);
    }
    wait(cmd.spawn().expect("the binary starts"))
}

/// The command lines the tool printed for the user to type: every line that
/// names the binary, from the binary on, split as a shell would.
fn printed_commands(stderr: &str) -> Vec<Vec<String>> {
    stderr
        .lines()
        .filter_map(|line| line.find(BIN).map(|at| shell_words(&line[at..])))
        .collect()
}

/// Splits a command line the way `sh` would for the quoting the tool uses:
/// plain words and single-quoted ones (`'\''` for a quote inside).
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quoted = false;
    for c in line.trim_end().chars() {
        match (quoted, c) {
            (true, '\'') => quoted = false,
            (true, c) => word.push(c),
            (false, '\'') => {
                quoted = true;
                in_word = true;
            }
            (false, '\\') => in_word = true,
            (false, ' ') => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (false, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// Runs the one command the tool printed, as printed, in the same place and
/// with the same token.
fn run_printed(work: &Work, stderr: &str) -> (Vec<String>, Ran) {
    let commands = printed_commands(stderr);
    assert_eq!(
        commands.len(),
        1,
        "wanted exactly one command to type; stderr:\n{stderr}"
    );
    let words = commands.into_iter().next().unwrap();
    assert_eq!(words[0], BIN);
    let mut cmd = work.command();
    cmd.args(&words[1..]).env("GCORE_API_KEY", TOKEN);
    (words, wait(cmd.spawn().expect("the binary starts")))
}

fn slow_sim(ids: std::ops::RangeInclusive<u64>) -> Sim {
    Sim::with_faults(
        ids,
        Faults {
            latency: Duration::from_millis(100),
            ..Faults::default()
        },
    )
}

// ---------------------------------------------------------------------------
// Every stop says why, whatever -q.

#[test]
fn quiet_runs_still_say_why_they_stopped() {
    let sim = Sim::with_faults(
        1..=30,
        faults(vec![
            rule(Fault::Status(404), Trigger::Always).on_method("PATCH"),
        ]),
    );
    let work = Work::new();
    work.write("in.csv", reseller_moves(1..=30, 9));
    let base = [
        "run",
        "in.csv",
        "-o",
        "out.csv",
        "--rate",
        "unlimited",
        "--concurrency",
        "1",
        "--max-failures",
        "2",
        "--force",
    ];
    for quiet in ["-q", "-qq"] {
        let mut args = base.to_vec();
        args.push(quiet);
        let ran = work.run_against(&sim, &args);
        assert_exit(&ran, 3);
        let why: Vec<&str> = ran
            .stderr
            .lines()
            .filter(|l| l.contains("--max-failures 2"))
            .collect();
        assert_eq!(why.len(), 1, "{quiet}: {}", ran.stderr);
        assert!(why[0].contains("out.csv"), "{quiet}: {}", ran.stderr);
        if quiet == "-qq" {
            assert_eq!(ran.stderr.lines().count(), 1, "{}", ran.stderr);
        }
    }

    // Exit 1 (rows invalid) and exit 2, with -qq: one line each.
    work.write("bad.csv", "client_id,seller\n1,x\n");
    let ran = work.run(&["run", "bad.csv", "-o", "bad.out", "--dry-run", "-qq"]);
    assert_exit(&ran, 1);
    assert_eq!(ran.stderr.lines().count(), 1, "{}", ran.stderr);
    assert!(
        ran.stderr.contains("1 invalid") && ran.stderr.contains("bad.out"),
        "{}",
        ran.stderr
    );
    let ran = work.run(&["run", "missing.csv", "-o", "x.out", "--dry-run", "-qq"]);
    assert_exit(&ran, 2);
    assert_eq!(ran.stderr.lines().count(), 1, "{}", ran.stderr);

    // The same as one JSON object for a log collector.
    let mut args = base.to_vec();
    args.extend(["-qq", "--log-format", "json"]);
    let ran = work.run_against(&sim, &args);
    assert_exit(&ran, 3);
    let lines: Vec<&str> = ran.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{}", ran.stderr);
    let event: serde_json::Value = serde_json::from_str(lines[0]).expect("one JSON object");
    assert_eq!(event["level"], "ERROR");
    assert!(
        event["message"]
            .as_str()
            .unwrap()
            .contains("--max-failures 2"),
        "{event}"
    );
}

// ---------------------------------------------------------------------------
// The token check catches a wrong URL.

#[test]
fn a_base_url_with_a_path_stops_at_the_token_check() {
    let sim = Sim::with_accounts(1..=5);
    let work = Work::new();
    work.write("in.csv", reseller_moves(1..=5, 9));
    let url = format!("{}/iam", sim.url);
    let ran = run_with(
        &work,
        &["run", "in.csv", "-o", "out.csv", "--api-url", &url],
        &[],
    );
    assert_exit(&ran, 2);
    assert!(sim.patches().is_empty(), "a PATCH was sent");
    for needle in [
        "HTTP 404",
        "/iam",
        "https://api.gcore.com",
        "nothing was sent",
    ] {
        assert!(ran.stderr.contains(needle), "`{needle}` in {}", ran.stderr);
    }
    // The same from the environment.
    let ran = run_with(
        &work,
        &["plan", "in.csv", "-o", "plan.csv"],
        &[("GCORE_BASE_URL", &url)],
    );
    assert_exit(&ran, 2);
    assert!(ran.stderr.contains("host only"), "{}", ran.stderr);
}

#[test]
fn a_forbidden_token_check_warns_and_goes_on() {
    let sim = Sim::with_faults(
        1..=3,
        faults(vec![
            rule(Fault::Status(403), Trigger::Always).on_method("GET"),
        ]),
    );
    let work = Work::new();
    work.write("in.csv", reseller_moves(1..=3, 9));
    let ran = work.run_rows(&sim, "in.csv", "out.csv").unpaced().ran();
    assert_exit(&ran, 0);
    assert!(
        ran.stderr.contains("HTTP 403") && ran.stderr.contains("going on"),
        "{}",
        ran.stderr
    );
    assert_eq!(sim.patches().len(), 3);
}

#[test]
fn a_redirect_names_its_location() {
    let moved = "https://api.example.com/iam/clients/me";
    let sim = Sim::with_faults(
        1..=3,
        faults(vec![
            rule(Fault::Redirect(moved.into()), Trigger::Always).on_method("GET"),
        ]),
    );
    let work = Work::new();
    work.write("in.csv", reseller_moves(1..=3, 9));
    let ran = work.run_rows(&sim, "in.csv", "out.csv").ran();
    assert_exit(&ran, 2);
    assert!(
        ran.stderr.contains("HTTP 301") && ran.stderr.contains(&format!("Location: {moved}")),
        "{}",
        ran.stderr
    );
    assert!(sim.patches().is_empty());

    // A row's own redirect is in its error column.
    let row_moved = "https://api.example.com/iam/clients/1";
    sim.set_faults(faults(vec![
        rule(Fault::Redirect(row_moved.into()), Trigger::Ids(vec![1])).on_method("PATCH"),
    ]));
    let ran = work.run_rows(&sim, "in.csv", "out.csv").unpaced().ran();
    assert_exit(&ran, 1);
    let rows = work.results_by_line("out.csv");
    assert!(
        rows[&2]["error"].contains(&format!(
            "HTTP 301 Moved Permanently (Location: {row_moved})"
        )),
        "{:?}",
        rows[&2]
    );
}

// ---------------------------------------------------------------------------
// No credentials in URLs.

#[test]
fn credentials_in_the_base_url_are_refused_without_echoing_them() {
    let sim = Sim::with_accounts(1..=3);
    let work = Work::new();
    work.write("in.csv", reseller_moves(1..=3, 9));
    let host = sim.url.trim_start_matches("http://");
    for url in [
        format!("http://alice:s3cretpw@{host}"),
        format!("http://alice@{host}"),
        format!("http://alice:s3cret pw@{host}"),
    ] {
        for (args, env) in [
            (
                vec![
                    "run",
                    "in.csv",
                    "-o",
                    "out.csv",
                    "--api-url",
                    url.as_str(),
                    "--summary-json",
                    "s.json",
                ],
                vec![],
            ),
            (
                vec!["export", "-o", "e.csv", "--summary-json", "s.json"],
                vec![("GCORE_BASE_URL", url.as_str())],
            ),
        ] {
            let ran = run_with(&work, &args, &env);
            assert_exit(&ran, 2);
            assert!(
                ran.stderr.contains("user name or password"),
                "{url}: {}",
                ran.stderr
            );
            let summary = work.read("s.json");
            for secret in ["alice", "s3cret"] {
                assert!(!ran.stderr.contains(secret), "{url}: {}", ran.stderr);
                assert!(!summary.contains(secret), "{url}: {summary}");
            }
        }
    }
    assert!(sim.requests().is_empty(), "a request was sent");
}

// ---------------------------------------------------------------------------
// Every command the tool prints is one it accepts.

#[test]
fn plan_help_does_not_offer_resume() {
    let work = Work::new();
    let ran = work.run(&["plan", "--help"]);
    assert_exit(&ran, 0);
    assert!(!ran.stdout.contains("--resume"), "{}", ran.stdout);
    let ran = work.run(&["run", "--help"]);
    assert!(ran.stdout.contains("--resume --limit 50"), "{}", ran.stdout);
}

#[test]
fn an_interrupted_run_prints_a_resume_command_that_finishes_it() {
    let sim = slow_sim(1..=200);
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
            "unlimited",
            "--concurrency",
            "2",
        ],
    );
    sim.wait_for_patches(4, Duration::from_secs(30));
    signal(&child, "INT");
    let ran = wait(child);
    assert_exit(&ran, 130);
    let (words, again) = run_printed(&work, &ran.stderr);
    assert!(words.contains(&"--resume".to_string()), "{words:?}");
    assert_exit(&again, 0);
    assert_eq!(
        work.results("out.csv")
            .iter()
            .filter(|r| r["outcome"] == "updated")
            .count(),
        200
    );
}

#[test]
fn an_interrupted_plan_prints_a_command_plan_accepts() {
    let sim = slow_sim(1..=200);
    let work = Work::new();
    work.write("in.csv", reseller_moves(1..=200, 9));
    let child = work.spawn_against(
        &sim,
        &[
            "plan",
            "in.csv",
            "-o",
            "plan.csv",
            "--rate",
            "unlimited",
            "--concurrency",
            "2",
        ],
    );
    sim.wait_for_requests(4);
    signal(&child, "INT");
    let ran = wait(child);
    assert_exit(&ran, 130);
    let (words, again) = run_printed(&work, &ran.stderr);
    assert!(!words.contains(&"--resume".to_string()), "{words:?}");
    assert_exit(&again, 0);
    assert_eq!(work.results("plan.csv").len(), 200);
}

#[test]
fn a_run_with_failed_rows_prints_a_command_that_retries_them() {
    let sim = Sim::with_faults(
        1..=6,
        faults(vec![
            rule(Fault::Status(404), Trigger::Ids(vec![2, 3])).on_method("PATCH"),
        ]),
    );
    let work = Work::new();
    work.write("in.csv", reseller_moves(1..=6, 9));
    let ran = work.run_rows(&sim, "in.csv", "out.csv").unpaced().ran();
    assert_exit(&ran, 1);
    sim.set_faults(Faults::default());
    sim.clear_requests();
    let (words, again) = run_printed(&work, &ran.stderr);
    assert!(words.contains(&"--resume".to_string()), "{words:?}");
    assert_exit(&again, 0);
    let mut sent: Vec<u64> = sim.patches().iter().filter_map(|p| p.client_id).collect();
    sent.sort();
    assert_eq!(sent, vec![2, 3], "only the failed rows go again");
}

#[test]
fn a_run_stopped_by_a_threshold_prints_a_command_that_resumes_it() {
    let sim = Sim::with_faults(
        1..=30,
        faults(vec![
            rule(Fault::Status(404), Trigger::Always).on_method("PATCH"),
        ]),
    );
    let work = Work::new();
    work.write("in.csv", reseller_moves(1..=30, 9));
    let ran = work
        .run_rows(&sim, "in.csv", "out.csv")
        .args([
            "--rate",
            "unlimited",
            "--concurrency",
            "1",
            "--max-failures",
            "3",
        ])
        .ran();
    assert_exit(&ran, 3);
    sim.set_faults(Faults::default());
    let (_, again) = run_printed(&work, &ran.stderr);
    assert_exit(&again, 0);
}

#[test]
fn a_dry_run_with_invalid_rows_prints_a_command_that_checks_again() {
    let work = Work::new();
    work.write("in.csv", "client_id,seller\n1,x\n2,3\n");
    let ran = work.run(&["run", "in.csv", "-o", "out.csv", "--dry-run"]);
    assert_exit(&ran, 1);
    work.write("in.csv", "client_id,seller\n1,4\n2,3\n");
    let (_, again) = run_printed(&work, &ran.stderr);
    assert_exit(&again, 0);
}

#[test]
fn a_canary_says_how_many_rows_remain_and_how_to_continue() {
    let sim = Sim::with_accounts(1..=10);
    let work = Work::new();
    work.write("in.csv", reseller_moves(1..=10, 9));
    let ran = work
        .run_rows(&sim, "in.csv", "out.csv")
        .args(["--rate", "unlimited", "--limit", "3"])
        .ran();
    assert_exit(&ran, 0);
    assert!(
        ran.stderr
            .contains("--limit 3: 3 rows done; 7 rows after them were not read"),
        "{}",
        ran.stderr
    );
    let (words, again) = run_printed(&work, &ran.stderr);
    assert!(!words.contains(&"--limit".to_string()), "{words:?}");
    assert_exit(&again, 0);
    assert_eq!(sim.patches().len(), 10, "each account once");
    // A canary of a plan goes on with a plan.
    let ran = work
        .plan_rows(&sim, "in.csv", "plan.csv")
        .args(["--limit", "4"])
        .ran();
    assert_exit(&ran, 0);
    assert!(ran.stderr.contains("6 rows after them"), "{}", ran.stderr);
    let (_, again) = run_printed(&work, &ran.stderr);
    assert_exit(&again, 0);
    assert_eq!(work.results("plan.csv").len(), 10);
}

#[test]
fn an_interrupted_export_prints_a_command_that_exports_again() {
    let sim = Sim::with_faults(
        1..=250,
        Faults {
            latency: Duration::from_millis(200),
            ..Faults::default()
        },
    );
    let work = Work::new();
    let child = work.spawn_against(
        &sim,
        &[
            "export",
            "-o",
            "e.csv",
            "--page-size",
            "10",
            "--rate",
            "unlimited",
        ],
    );
    sim.wait_for_requests(3);
    signal(&child, "INT");
    let ran = wait(child);
    assert_exit(&ran, 130);
    assert!(!work.path("e.csv").exists());
    let (_, again) = run_printed(&work, &ran.stderr);
    assert_exit(&again, 0);
    assert_eq!(read_csv(&work.path("e.csv")).len(), 250);
}

#[test]
fn a_changed_undo_header_is_refused_with_advice_that_works() {
    let sim = Sim::with_accounts(1..=3);
    let work = Work::new();
    work.write("in.csv", reseller_moves(1..=3, 9));
    let args = [
        "run",
        "in.csv",
        "-o",
        "out.csv",
        "--undo-file",
        "undo.csv",
        "--rate",
        "unlimited",
    ];
    assert_exit(&work.run_against(&sim, &args), 0);
    work.write("in.csv", "client_id,reseller,seller\n1,8,1\n2,8,1\n3,8,1\n");
    let mut resumed = args.to_vec();
    resumed.push("--resume");
    let ran = work.run_against(&sim, &resumed);
    assert_exit(&ran, 2);
    assert!(!ran.stderr.contains("--force"), "{}", ran.stderr);
    assert!(ran.stderr.contains("--undo-file"), "{}", ran.stderr);
}

// ---------------------------------------------------------------------------
// Where the issue is silent: every error names what is at fault (file, line,
// column or flag) and ends with what to do.

#[test]
fn errors_name_what_is_at_fault_and_what_to_do() {
    let work = Work::new();
    work.write("in.csv", "client_id,reseller\n1,2\n");
    work.write("colour.csv", "client_id,colour\n1,red\n");
    std::fs::create_dir(work.path("dir.csv")).unwrap();
    let sim = Sim::with_accounts(1..=2);
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            vec!["run", "missing.csv", "-o", "o.csv", "--dry-run"],
            vec!["missing.csv", "check the path"],
        ),
        (
            vec!["run", "dir.csv", "-o", "o.csv", "--dry-run"],
            vec!["dir.csv", "name the file"],
        ),
        (
            vec!["run", "colour.csv", "-o", "o.csv", "--dry-run"],
            vec!["colour.csv", "`colour` (column 2)", "rename or remove it"],
        ),
        (
            vec!["run", "in.csv", "-o", "no-such-dir/o.csv", "--dry-run"],
            vec!["no-such-dir/o.csv", "check that its directory exists"],
        ),
        (
            vec![
                "run",
                "in.csv",
                "-o",
                "o.csv",
                "--dry-run",
                "--null-token",
                " ",
            ],
            vec!["--null-token", "give a text such as"],
        ),
    ];
    for (args, needles) in cases {
        let ran = work.run(&args);
        assert_exit(&ran, 2);
        for needle in needles {
            assert!(
                ran.stderr.contains(needle),
                "{args:?}: `{needle}` in {}",
                ran.stderr
            );
        }
    }
    for (args, needles) in [
        (
            vec!["export", "-o", "e.csv", "--columns", "email,email"],
            vec!["--columns", "name each column once"],
        ),
        (
            vec!["export", "-o", "no-such-dir/e.csv"],
            vec!["-o no-such-dir/e.csv", "check that the directory exists"],
        ),
    ] {
        let ran = work.run_against(&sim, &args);
        assert_exit(&ran, 2);
        for needle in needles {
            assert!(
                ran.stderr.contains(needle),
                "{args:?}: `{needle}` in {}",
                ran.stderr
            );
        }
    }
    // The API cannot be reached: which URL, and what to check.
    let ran = run_with(
        &work,
        &[
            "run",
            "in.csv",
            "-o",
            "o.csv",
            "--api-url",
            "http://127.0.0.1:9",
            "--force",
        ],
        &[],
    );
    assert_exit(&ran, 2);
    assert!(
        ran.stderr.contains("http://127.0.0.1:9") && ran.stderr.contains("check --api-url"),
        "{}",
        ran.stderr
    );
}

// ---------------------------------------------------------------------------
// Memory bounded by design: the behaviour (scripts/bench-hostile.sh measures
// the memory of the same files).

/// `bytes` of `byte`, in one unquoted cell.
fn long_cell(bytes: usize) -> Vec<u8> {
    vec![b'x'; bytes]
}

#[test]
fn a_record_longer_than_the_limit_is_invalid_and_the_rest_go_on() {
    let work = Work::new();
    let mut input = b"client_id,name\n1,a\n2,".to_vec();
    input.extend(long_cell(3 << 20));
    input.extend(b"\n3,b\n4,\"");
    // A quoted cell that never ends within the limit, over many lines.
    for _ in 0..300_000 {
        input.extend(b"yyyyyyyyy\r\n");
    }
    input.extend(b"\"\n5,c\n");
    work.write("in.csv", &input);
    let ran = work.run(&["run", "in.csv", "-o", "out.csv", "--dry-run"]);
    assert_exit(&ran, 1);
    let rows = work.results_by_line("out.csv");
    let lines: Vec<u64> = rows.keys().copied().collect();
    assert_eq!(lines, vec![2, 3, 4, 5, 300_006]);
    for line in [3, 5] {
        assert_eq!(rows[&line]["outcome"], "invalid");
        assert!(
            rows[&line]["error"].contains("longer than 2 MiB"),
            "{:?}",
            rows[&line]
        );
        assert!(rows[&line]["error"].len() < 300);
    }
    assert_eq!(rows[&4]["outcome"], "dry_run");
    assert_eq!(rows[&300_006]["outcome"], "dry_run");
    assert_eq!(rows[&300_006]["client_id"], "5");
}

#[test]
fn hostile_headers_are_refused_at_once_with_a_short_message() {
    let work = Work::new();
    let mut huge_cell = b"client_id,".to_vec();
    huge_cell.extend(long_cell(5 << 20));
    huge_cell.extend(b"\n1,2\n");
    let many_columns: Vec<u8> = (0..1_000_000)
        .flat_map(|_| *b"c,")
        .chain(*b"client_id\n1\n")
        .collect();
    let some_unknown = format!(
        "client_id,{}\n1\n",
        (0..500)
            .map(|i| format!("extra{i}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let mut long_name = b"client_id,".to_vec();
    long_name.extend(long_cell(100_000));
    long_name.extend(b"\n1,2\n");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("huge-cell.csv", huge_cell, "longer than 2 MiB"),
        ("many-columns.csv", many_columns, "more than 1000"),
        (
            "some-unknown.csv",
            some_unknown.into_bytes(),
            "and 490 more",
        ),
        ("long-name.csv", long_name, "unknown column"),
    ];
    for (name, bytes, message) in cases {
        work.write(name, &bytes);
        let ran = work.run(&["run", name, "-o", "out.csv", "--dry-run"]);
        assert_exit(&ran, 2);
        assert!(ran.stderr.contains(message), "{name}: {}", ran.stderr);
        assert!(ran.stderr.contains(name), "{name}: {}", ran.stderr);
        assert!(
            ran.stderr.len() < 1500,
            "{name}: {} bytes of message",
            ran.stderr.len()
        );
        assert!(!ran.stderr.contains("panicked"), "{name}: {}", ran.stderr);
    }
}

#[test]
fn a_never_ending_line_on_standard_input_is_refused_in_the_header() {
    let work = Work::new();
    let mut child = work
        .command()
        .args(["run", "-", "-o", "out.csv", "--dry-run"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let mut stdin = child.stdin.take().expect("piped");
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let chunk = vec![b'a'; 1 << 16];
        // Until the reader goes away: at most 1 GiB.
        for _ in 0..(1 << 14) {
            if stdin.write_all(&chunk).is_err() {
                return;
            }
        }
    });
    let ran = wait(child);
    let _ = writer.join();
    assert_exit(&ran, 2);
    assert!(ran.stderr.contains("longer than 2 MiB"), "{}", ran.stderr);
}

#[test]
fn a_results_file_with_a_huge_line_is_refused_briefly() {
    let sim = Sim::with_accounts(1..=3);
    let work = Work::new();
    work.write("in.csv", reseller_moves(1..=3, 9));
    assert_exit(&work.run_rows(&sim, "in.csv", "out.csv").unpaced().ran(), 0);
    let mut ledger = std::fs::read(work.path("out.csv")).unwrap();
    ledger.extend(b"5,4,failed,,1,,");
    ledger.extend(long_cell(20 << 20));
    ledger.extend(b",,,,,\n");
    work.write("out.csv", &ledger);
    let ran = work
        .run_rows(&sim, "in.csv", "out.csv")
        .args(["--rate", "unlimited", "--resume"])
        .ran();
    assert_exit(&ran, 2);
    assert!(ran.stderr.contains("longer than 16 MiB"), "{}", ran.stderr);
    assert!(ran.stderr.len() < 1500, "{} bytes", ran.stderr.len());
    let ran = work.run(&["results", "out.csv", "-o", "final.csv"]);
    assert_exit(&ran, 2);
    assert!(ran.stderr.contains("longer than 16 MiB"), "{}", ran.stderr);
    assert!(ran.stderr.len() < 1500, "{} bytes", ran.stderr.len());
}

// ---------------------------------------------------------------------------
// Signals mean the same in every command; pauses are announced.

/// A simulator whose token check never answers.
fn hanging_token_check() -> Sim {
    Sim::with_faults(
        1..=5,
        faults(vec![rule(Fault::Hang, Trigger::Always).on_method("GET")]),
    )
}

#[test]
fn export_stopped_during_the_token_check_exits_130_and_leaves_no_file() {
    for sig in ["TERM", "INT"] {
        let sim = hanging_token_check();
        let work = Work::new();
        // A timeout longer than the test's deadline: only stopping at once passes.
        let child = work.spawn_against(&sim, &["export", "-o", "e.csv", "--timeout", "10m"]);
        sim.wait_for_requests(1);
        signal(&child, sig);
        let ran = wait(child);
        assert_exit(&ran, 130);
        let left: Vec<_> = std::fs::read_dir(work.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "{sig}: left behind {left:?}");
    }
}

#[test]
fn run_stopped_during_the_token_check_stops_at_once() {
    let sim = hanging_token_check();
    let work = Work::new();
    work.write("in.csv", reseller_moves(1..=5, 9));
    let child = work.spawn_against(
        &sim,
        &["run", "in.csv", "-o", "out.csv", "--timeout", "10m"],
    );
    sim.wait_for_requests(1);
    signal(&child, "TERM");
    let ran = wait(child);
    assert_exit(&ran, 130);
    assert!(sim.patches().is_empty());
    assert!(!work.path("out.csv").exists(), "a results file was left");
}

#[test]
fn results_stopped_by_a_signal_exits_130_and_leaves_no_file() {
    use std::os::unix::fs::OpenOptionsExt;
    let work = Work::new();
    let fifo = work.path("ledger.csv");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo runs");
    assert!(made.success());
    let child = work
        .command()
        .args(["results", "ledger.csv", "-o", "final.csv"])
        .spawn()
        .expect("the binary starts");
    // Opening the FIFO to write without blocking succeeds once `results` has
    // opened it to read (before, it fails with ENXIO); `results` then waits
    // for lines that never come.
    const O_NONBLOCK: i32 = 0o4000; // Linux's value
    let mut writer = None;
    wait_until(
        "`results` opening the FIFO",
        Duration::from_secs(30),
        || {
            writer = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(O_NONBLOCK)
                .open(&fifo)
                .ok();
            writer.is_some()
        },
    );
    signal(&child, "TERM");
    let ran = wait(child);
    drop(writer);
    assert_exit(&ran, 130);
    assert!(!work.path("final.csv").exists());
}

#[test]
fn a_long_retry_after_pause_is_announced_shown_and_ended_by_a_signal() {
    let sim = Sim::with_faults(
        1..=5,
        faults(vec![
            rule(
                Fault::TooManyRequests {
                    retry_after: Some("600".into()),
                },
                Trigger::FirstPerAccount(1),
            )
            .on_method("PATCH"),
        ]),
    );
    let work = Work::new();
    work.write("in.csv", reseller_moves(1..=5, 9));
    let run = Running::watch(work.spawn_against(
        &sim,
        &["run", "in.csv", "-o", "out.csv", "--status-interval", "1s"],
    ));
    let announced = run.wait_for("HTTP 429: the server asks to wait", Duration::from_secs(30));
    assert!(
        announced.contains("wait 10m; pausing until ") && announced.ends_with(" UTC"),
        "{announced}"
    );
    let status = run.wait_for("paused", Duration::from_secs(30));
    assert!(status.starts_with("status:"), "{status}");
    assert!(status.contains("left"), "{status}");
    run.signal("TERM");
    let ran = run.finish();
    assert_exit(&ran, 130);
}

// ---------------------------------------------------------------------------
// Messages that say more.

#[test]
fn too_large_numbers_say_the_limit() {
    let work = Work::new();
    work.write(
        "in.csv",
        "client_id,seller,reseller\n\
         1,999999999999999999999,\n\
         2,,18446744073709551616\n\
         99999999999999999999999,1,\n",
    );
    let ran = work.run(&["run", "in.csv", "-o", "out.csv", "--dry-run"]);
    assert_exit(&ran, 1);
    let rows = work.results_by_line("out.csv");
    assert_eq!(
        rows[&2]["error"],
        "seller: `999999999999999999999` is larger than the largest allowed, \
         18446744073709551615"
    );
    assert!(
        rows[&3]["error"].contains("reseller: `18446744073709551616` is larger than the largest"),
        "{:?}",
        rows[&3]
    );
    assert!(
        rows[&4]["error"].contains("client_id: `99999999999999999999999` is larger than"),
        "{:?}",
        rows[&4]
    );
}

#[test]
fn null_where_a_field_cannot_be_cleared_says_which_can() {
    let work = Work::new();
    work.write("in.csv", "client_id,companyName\n1,null\n");
    let ran = work.run(&["run", "in.csv", "-o", "out.csv", "--dry-run"]);
    assert_exit(&ran, 1);
    let error = &work.results("out.csv")[0]["error"];
    assert!(
        error.contains("only custom_id, name, phone and seller can be cleared"),
        "{error}"
    );
    assert!(error.contains("leave the cell empty"), "{error}");
    assert!(error.contains("--null-token"), "{error}");
}

#[test]
fn export_columns_with_a_typo_get_a_suggestion() {
    let sim = Sim::with_accounts(1..=3);
    let work = Work::new();
    let ran = work.run_against(&sim, &["export", "-o", "e.csv", "--columns", "reseler"]);
    assert_exit(&ran, 2);
    assert!(
        ran.stderr.contains("`reseler`") && ran.stderr.contains("did you mean `reseller`?"),
        "{}",
        ran.stderr
    );
}

#[test]
fn token_files_with_a_byte_order_mark_or_a_blank_first_line() {
    let sim = Sim::with_accounts(1..=2);
    let work = Work::new();
    work.write("in.csv", reseller_moves(1..=2, 9));
    let run = |key: &str| {
        let mut cmd = work.command();
        cmd.args([
            "run",
            "in.csv",
            "-o",
            "out.csv",
            "--force",
            "--api-key-file",
            key,
            "--api-url",
            &sim.url,
        ]);
        wait(cmd.spawn().expect("the binary starts"))
    };
    let key = work.write("bom.key", format!("\u{feff}{TOKEN}\r\n"));
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    assert_exit(&run("bom.key"), 0);

    let key = work.write("blank.key", format!("\n  \n{TOKEN}\n"));
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let ran = run("blank.key");
    assert_exit(&ran, 2);
    assert!(
        ran.stderr
            .contains("the first line of the API key file blank.key is blank")
            && ran.stderr.contains("line 3 is the first with text"),
        "{}",
        ran.stderr
    );
    assert!(!ran.stderr.contains(TOKEN));
}

#[test]
fn a_rate_too_large_says_so() {
    let work = Work::new();
    work.write("in.csv", "client_id,reseller\n1,2\n");
    for rate in ["1e400", "1e400/s", "2000000/s"] {
        let ran = work.run(&[
            "run",
            "in.csv",
            "-o",
            "out.csv",
            "--dry-run",
            "--rate",
            rate,
        ]);
        assert_exit(&ran, 2);
        assert!(ran.stderr.contains("too large"), "{rate}: {}", ran.stderr);
        assert!(
            !ran.stderr.contains("more than 0"),
            "{rate}: {}",
            ran.stderr
        );
    }
}

#[test]
fn a_dry_run_shows_the_first_row_errors_and_counts_the_rest() {
    let work = Work::new();
    let mut input = String::from("client_id,seller\n");
    for id in 1..=12 {
        input.push_str(&format!("{id},x{id}\n"));
    }
    input.push_str("13,5\n");
    work.write("in.csv", &input);
    let ran = work.run(&["run", "in.csv", "-o", "out.csv", "--dry-run"]);
    assert_exit(&ran, 1);
    for id in 1..=5 {
        let line = id + 1;
        assert!(
            ran.stderr
                .contains(&format!("line {line}, client_id {id}: seller: `x{id}`")),
            "{}",
            ran.stderr
        );
    }
    assert!(!ran.stderr.contains("`x6`"), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("and 7 more invalid rows"),
        "{}",
        ran.stderr
    );
}
