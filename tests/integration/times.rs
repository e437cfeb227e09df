//! Times in the ledger: every results row says when it ended (and how often
//! it was retried and throttled); plans, exports and undo files say when
//! they read each account.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common::*;

/// Milliseconds since the epoch of an RFC 3339 `…Z` time with milliseconds;
/// panics on anything else.
fn millis(text: &str) -> u64 {
    assert!(
        text.len() == "2026-12-01T15:52:07.123Z".len()
            && text.ends_with('Z')
            && text.as_bytes()[19] == b'.',
        "not RFC 3339 in UTC with milliseconds: {text:?}"
    );
    let t = humantime::parse_rfc3339(text).expect("RFC 3339");
    t.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn every_results_row_says_when_it_ended() {
    let sim = Sim::with_accounts(1..=6);
    let work = Work::new();
    work.write(
        "in.csv",
        "client_id,reseller\n1,900002\n2,900002\nx,900002\n3,900002\n",
    );
    let before = now_millis();
    let ran = work.run_rows(&sim, "in.csv", "out.csv").unpaced().ran();
    let after = now_millis();
    assert_exit(&ran, 1);
    let header = work.read("out.csv").lines().next().unwrap().to_string();
    assert!(
        header.ends_with(",undo_file,finished_at,retries,throttled"),
        "finished_at comes after the existing columns: {header}"
    );
    let rows = work.results_by_line("out.csv");
    assert_eq!(rows.len(), 4);
    for row in rows.values() {
        let at = millis(&row["finished_at"]);
        assert!(
            (before..=after).contains(&at),
            "{at} is not within the run ({before}..{after}): {row:?}"
        );
    }
    assert_eq!(
        rows[&4]["outcome"], "invalid",
        "invalid rows have a time too"
    );

    // "When was account 2 changed?": between the start of its PATCH and
    // the time on its row.
    let row = &rows[&3];
    let ended = millis(&row["finished_at"]);
    let took: u64 = row["duration_ms"].parse().unwrap();
    assert!(ended - took >= before && ended <= after);
    assert_eq!(sim.patches_for(2).len(), 1);

    // A dry run's rows, formatted by the reader's fast path, have times too.
    let ran = work.run(&["run", "in.csv", "-o", "dry.csv", "--dry-run"]);
    assert_exit(&ran, 1);
    for row in work.results("dry.csv") {
        assert!(millis(&row["finished_at"]) >= before);
        assert_eq!(row["retries"], "0");
        assert_eq!(row["throttled"], "0");
    }
}

#[test]
fn retries_and_429s_are_counted_per_row() {
    let sim = Sim::with_faults(
        1..=3,
        faults(vec![
            rule(
                Fault::TooManyRequests {
                    retry_after: Some("0".into()),
                },
                Trigger::Ids(vec![2]),
            )
            .on_method("PATCH"),
        ]),
    );
    let work = Work::new();
    work.write("in.csv", reseller_moves(1..=3, 900002));
    let ran = work
        .run_rows(&sim, "in.csv", "out.csv")
        .args([
            "--rate",
            "unlimited",
            "--max-attempts",
            "3",
            "--undo-file",
            "undo.csv",
        ])
        .ran();
    assert_exit(&ran, 1);
    let rows = work.results_by_line("out.csv");
    // Read first for the undo file: two requests, two attempts, no retry.
    assert_eq!(rows[&2]["attempts"], "2");
    assert_eq!(rows[&2]["retries"], "0");
    assert_eq!(rows[&2]["throttled"], "0");
    // GET once, PATCH three times, each answered 429.
    assert_eq!(rows[&3]["outcome"], "failed");
    assert_eq!(rows[&3]["attempts"], "4");
    assert_eq!(rows[&3]["retries"], "2");
    assert_eq!(rows[&3]["throttled"], "3");
}

#[test]
fn plans_exports_and_undo_files_say_when_they_read_each_account() {
    let sim = Sim::with_accounts(1..=5);
    let work = Work::new();
    let before = now_millis();
    let ran = work.run_against(
        &sim,
        &[
            "export",
            "-o",
            "export.csv",
            "--columns",
            "seller",
            "--rate",
            "unlimited",
        ],
    );
    assert_exit(&ran, 0);
    let export = work.read("export.csv");
    assert!(export.starts_with("client_id,seller,read_at\n"), "{export}");
    let after = now_millis();
    for row in work.results("export.csv") {
        assert!((before..=after).contains(&millis(&row["read_at"])));
    }

    // The export is an input as it is: read_at is read over.
    let ran = work
        .plan_rows(&sim, "export.csv", "plan.csv")
        .unpaced()
        .ran();
    assert_exit(&ran, 0);
    let plan = work.results("plan.csv");
    assert_eq!(plan.len(), 5);
    for row in &plan {
        assert_eq!(row["outcome"], "unchanged");
        // In a plan, a row ends when its account was read.
        assert!(millis(&row["finished_at"]) >= before);
    }

    let originals: Vec<Account> = (1..=5).map(|id| sim.account(id)).collect();
    work.write("moves.csv", reseller_moves(1..=5, 900003));
    let ran = work
        .run_rows(&sim, "moves.csv", "out.csv")
        .args(["--undo-file", "undo.csv"])
        .unpaced()
        .ran();
    assert_exit(&ran, 0);
    let undo = work.read("undo.csv");
    assert!(
        undo.starts_with("\u{feff}client_id,reseller,read_at\n"),
        "{undo}"
    );
    let results = work.results_by_line("out.csv");
    let undo_rows = read_csv(&work.path("undo.csv"));
    assert_eq!(undo_rows.len(), 5);
    for row in &undo_rows {
        // (The csv crate reads past the byte-order mark.)
        let id = row["client_id"].clone();
        let read = millis(&row["read_at"]);
        let result = results
            .values()
            .find(|r| r["client_id"] == id)
            .expect("a result for each undo row");
        assert!(
            read <= millis(&result["finished_at"]),
            "read before it was changed"
        );
    }
    // The undo file still puts everything back.
    let ran = work.run_rows(&sim, "undo.csv", "back.csv").unpaced().ran();
    assert_exit(&ran, 0);
    for original in originals {
        assert_eq!(
            sim.account(original.id),
            original,
            "account {} is back",
            original.id
        );
    }
}

#[test]
fn resume_refuses_a_ledger_without_times_and_results_still_reads_it() {
    let sim = Sim::with_accounts(1..=3);
    let work = Work::new();
    work.write("in.csv", reseller_moves(1..=3, 9));
    let old = "line,client_id,outcome,http_status,attempts,account_status,error,request,duration_ms,diff,requested,undo_file\n\
               2,1,updated,200,1,active,,\"{\"\"reseller\"\":9}\",5,,\"{\"\"reseller\"\":9}\",\n";
    work.write("old.csv", old);
    let ran = work
        .run_rows(&sim, "in.csv", "old.csv")
        .args(["--resume"])
        .ran();
    assert_exit(&ran, 2);
    assert!(
        ran.stderr.contains("written by an older gcore-iam-bulk")
            && ran.stderr.contains("new results file"),
        "{}",
        ran.stderr
    );
    assert!(sim.patches().is_empty(), "nothing sent");
    assert_eq!(
        work.read("old.csv"),
        old,
        "the old ledger is left as it was"
    );

    let ran = work.run(&["results", "old.csv", "-o", "final.csv"]);
    assert_exit(&ran, 0);
    let rows = work.results("final.csv");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["finished_at"], "");
    assert_eq!(rows[0]["source"], "old.csv");
}

#[test]
fn a_resumed_run_appends_rows_with_later_times() {
    let sim = Sim::with_faults(
        1..=4,
        faults(vec![
            rule(Fault::Status(404), Trigger::Ids(vec![3])).on_method("PATCH"),
        ]),
    );
    let work = Work::new();
    work.write("in.csv", reseller_moves(1..=4, 900002));
    let ran = work.run_rows(&sim, "in.csv", "out.csv").unpaced().ran();
    assert_exit(&ran, 1);
    let first = work.results("out.csv");
    let first_end = first
        .iter()
        .map(|r| millis(&r["finished_at"]))
        .max()
        .unwrap();
    sim.set_faults(Faults::default());
    // The second run ends in a later millisecond than the first.
    wait_until(
        "millisecond after the first run",
        Duration::from_secs(1),
        || {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .is_ok_and(|now| now.as_millis() as u64 > first_end)
        },
    );
    let ran = work
        .run_rows(&sim, "in.csv", "out.csv")
        .args(["--resume"])
        .unpaced()
        .ran();
    assert_exit(&ran, 0);
    let all = work.results("out.csv");
    assert_eq!(all.len(), 5, "one row appended: {all:?}");
    let redone = &all[4];
    assert_eq!(redone["client_id"], "3");
    assert!(millis(&redone["finished_at"]) > first_end);
}
