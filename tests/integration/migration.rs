//! Moving a seller's accounts in three commands: `export --set`, `plan`,
//! `run` with an undo file, against one simulator, as the README walks it.

use crate::common::*;

#[test]
fn export_set_plan_run_moves_a_sellers_accounts_and_the_undo_file_moves_them_back() {
    let sim = Sim::with_accounts(1..=300);
    let sellers_52: Vec<u64> = (1..=300)
        .filter(|id| sim.account(*id).seller == Some(52))
        .collect();
    assert!(
        sellers_52.len() > 20,
        "the simulator has accounts of seller 52"
    );
    let work = Work::new();

    // 1. The accounts of seller 52, with the seller they move to.
    let ran = work.run_against(
        &sim,
        &[
            "export",
            "--seller-id",
            "52",
            "--set",
            "seller=80",
            "-o",
            "move.csv",
            "--rate",
            "unlimited",
        ],
    );
    assert_exit(&ran, 0);
    assert!(
        ran.stderr.contains("plan move.csv -o plan.csv"),
        "what to do next is said: {}",
        ran.stderr
    );
    let moves = read_csv(&work.path("move.csv"));
    assert!(
        work.read("move.csv")
            .starts_with("client_id,seller,read_at\n"),
        "only the key and the field set: {}",
        work.read("move.csv")
    );
    let ids: Vec<u64> = moves
        .iter()
        .map(|r| r["client_id"].parse().unwrap())
        .collect();
    assert_eq!(ids, sellers_52);
    assert!(moves.iter().all(|r| r["seller"] == "80"));
    assert!(sim.patches().is_empty(), "export changes nothing");

    // 2. What would change: every one of them, 52 -> 80.
    let ran = work.plan_rows(&sim, "move.csv", "plan.csv").unpaced().ran();
    assert_exit(&ran, 0);
    let plan = work.results("plan.csv");
    assert_eq!(plan.len(), sellers_52.len());
    for row in &plan {
        assert_eq!(row["outcome"], "would_update");
        assert_eq!(row["diff"], "seller: 52 -> 80");
    }

    // 3. The move, keeping the values from before.
    let ran = work
        .run_rows(&sim, "move.csv", "results.csv")
        .args([
            "--undo-file",
            "undo.csv",
            "--rate",
            "unlimited",
            "--report",
            "report.html",
        ])
        .ran();
    assert_exit(&ran, 0);
    for id in &sellers_52 {
        assert_eq!(sim.account(*id).seller, Some(80), "account {id} moved");
    }
    let others_untouched = (1..=300)
        .filter(|id| !sellers_52.contains(id))
        .all(|id| sim.account(id).seller != Some(80));
    assert!(others_untouched);
    let patched: Vec<Vec<u8>> = sim.patches().iter().map(|p| p.raw_body.clone()).collect();
    assert_eq!(patched.len(), sellers_52.len());
    assert!(
        patched.iter().all(|b| b == br#"{"seller":80}"#),
        "only the seller is sent"
    );
    let report = work.read("report.html");
    assert!(
        report.contains("data-field=\"seller\"")
            && report.contains(&format!(
                "data-old=\"52\" data-new=\"80\" data-count=\"{}\"",
                sellers_52.len()
            )),
        "the report says seller 52 → 80 for every account"
    );

    // A second plan finds nothing left to do; the undo file puts it back.
    let ran = work
        .plan_rows(&sim, "move.csv", "check.csv")
        .unpaced()
        .ran();
    assert_exit(&ran, 0);
    assert!(
        work.results("check.csv")
            .iter()
            .all(|r| r["outcome"] == "unchanged")
    );
    let ran = work
        .run_rows(&sim, "undo.csv", "undo-results.csv")
        .unpaced()
        .ran();
    assert_exit(&ran, 0);
    for id in &sellers_52 {
        assert_eq!(sim.account(*id).seller, Some(52), "account {id} is back");
    }
}

#[test]
fn set_values_are_checked_with_the_messages_input_cells_get() {
    let sim = Sim::with_accounts(1..=3);
    let work = Work::new();
    // What an input cell `8o` in the seller column gets.
    work.write("in.csv", "client_id,seller\n1,8o\n");
    let ran = work.run(&["run", "in.csv", "-o", "dry.csv", "--dry-run"]);
    assert_exit(&ran, 1);
    let cell_error = work.results("dry.csv")[0]["error"].clone();
    assert!(!cell_error.is_empty());

    for (set, message) in [
        ("seller=8o", cell_error.as_str()),
        ("reseller=null", "(null) is not allowed here"),
        ("email=someone", "is not an email address"),
        ("is_test=maybe", "is not one of true, false, 1, 0"),
        ("seller=", "empty"),
        ("sellers=80", "not a field a row can change"),
        ("seller80", "FIELD=VALUE"),
    ] {
        let ran = work.run_against(
            &sim,
            &[
                "export",
                "--set",
                set,
                "-o",
                "move.csv",
                "--rate",
                "unlimited",
            ],
        );
        assert_exit(&ran, 2);
        assert!(
            ran.stderr.contains(message),
            "--set {set}: wanted `{message}` in {}",
            ran.stderr
        );
        assert!(
            !work.path("move.csv").exists(),
            "nothing written for --set {set}"
        );
    }
    assert!(sim.requests().is_empty(), "refused before any request");

    // Several fields, and a null where the field allows it.
    let ran = work.run_against(
        &sim,
        &[
            "export",
            "--set",
            "seller=null",
            "--set",
            "is_test=TRUE",
            "--columns",
            "reseller",
            "-o",
            "move.csv",
            "--rate",
            "unlimited",
        ],
    );
    assert_exit(&ran, 0);
    let rows = read_csv(&work.path("move.csv"));
    assert!(
        work.read("move.csv")
            .starts_with("client_id,reseller,seller,is_test,read_at\n")
    );
    for row in rows {
        assert_eq!(row["seller"], "null");
        assert_eq!(row["is_test"], "true");
        assert!(
            !row["reseller"].is_empty(),
            "--columns still exports current values"
        );
    }
}

/// Stops the background simulator however the test ends.
struct Background(std::process::Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_readme_walk_runs_as_written_against_simulate_in_the_background() {
    use std::io::BufRead;
    let readme = include_str!("../../README.md");
    let section = &readme[readme
        .find("## Move a seller's accounts")
        .expect("the README walks a seller's move")..];
    let block = &section[section.find("```sh\n").unwrap() + 6..];
    let block = &block[..block.find("\n```").unwrap()];
    let work = Work::new();
    let mut env: Vec<(String, String)> = Vec::new();
    let mut simulator: Option<Background> = None;
    let mut url = String::new();
    let mut ran_commands = 0;
    for line in block.lines() {
        // A comment starts after a space.
        let line = line.split(" #").next().unwrap().trim();
        if line.is_empty() {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [
                "gcore-iam-bulk",
                "simulate",
                "--listen",
                listen,
                rest @ ..,
                "&",
            ] => {
                assert_eq!(*listen, "127.0.0.1:8080");
                // Port 0 here: 8080 may be taken on a test machine.
                let mut child = work
                    .command()
                    .args(["simulate", "--listen", "127.0.0.1:0"])
                    .args(rest)
                    .spawn()
                    .expect("simulate starts");
                let stdout = child.stdout.take().unwrap();
                let background = Background(child);
                let mut first = String::new();
                std::io::BufReader::new(stdout)
                    .read_line(&mut first)
                    .unwrap();
                url = first
                    .trim()
                    .strip_prefix("listening on ")
                    .unwrap_or_else(|| panic!("simulate printed {first:?}"))
                    .to_string();
                simulator = Some(background);
            }
            ["export", assignments @ ..] => {
                for assignment in assignments {
                    let (name, value) = assignment.split_once('=').unwrap();
                    let value = if name == "GCORE_BASE_URL" {
                        assert_eq!(value, "http://127.0.0.1:8080");
                        url.clone()
                    } else {
                        value.to_string()
                    };
                    env.push((name.to_string(), value));
                }
            }
            ["gcore-iam-bulk", args @ ..] => {
                let mut cmd = work.command();
                cmd.args(args).envs(env.iter().map(|(k, v)| (k, v)));
                let ran = wait(cmd.spawn().unwrap());
                assert_exit(&ran, 0);
                ran_commands += 1;
            }
            ["kill", "%1"] => drop(simulator.take()),
            other => panic!("the README walk has a line the test does not know: {other:?}"),
        }
    }
    assert_eq!(ran_commands, 5);
    let moved = read_csv(&work.path("move.csv"));
    assert!(moved.len() > 20);
    assert!(moved.iter().all(|r| r["seller"] == "80"));
    let plan = work.results("plan.csv");
    assert!(
        plan.iter().all(|r| r["diff"] == "seller: 52 -> 80"),
        "{plan:?}"
    );
    assert!(
        work.read("plan.html")
            .contains(&format!("seller</code> 52 → 80: {} accounts", moved.len()))
    );
    assert!(
        work.results("results.csv")
            .iter()
            .all(|r| r["outcome"] == "updated")
    );
    assert!(
        work.results("check.csv")
            .iter()
            .all(|r| r["outcome"] == "unchanged")
    );
    assert_eq!(work.results("undo-results.csv").len(), moved.len());
    assert!(
        work.results("undo-results.csv")
            .iter()
            .all(|r| r["outcome"] == "updated")
    );
}
