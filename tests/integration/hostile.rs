//! Input the tool must refuse cleanly: header errors stop the run before any
//! request (exit 2); bad rows become `invalid` results with nothing sent for
//! them; hostile files never make it panic.

use crate::common::*;

/// Runs `input` against a simulator and returns the run and what was sent.
fn run_input(input: &[u8]) -> (Ran, Work, Sim) {
    let sim = Sim::with_accounts(1..=20);
    let work = Work::new();
    work.write("in.csv", input);
    let ran = work.run_rows(&sim, "in.csv", "out.csv").unpaced().ran();
    (ran, work, sim)
}

#[test]
fn header_errors_exit_2_before_any_request() {
    let cases: Vec<(&[u8], &str)> = vec![
        (b"email,reseller\n1,2\n", "no key column"),
        (b"client_id,reseller,Reseller\n1,2,3\n", "`reseller` twice"),
        (b"id,client_id,reseller\n1,1,2\n", "two key columns"),
        (b"client_id,resellers\n1,2\n", "did you mean `reseller`"),
        (
            b"client_id,reseller,colour\n1,2,red\n",
            "accepted columns: client_id",
        ),
        (b"", "empty"),
        (b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\n\x00\x00", "binary"),
        // Not UTF-8: read as Windows-1252, so the mistake shows as written.
        (
            b"client_id,r\xe9seller\n1,2\n",
            "`r\u{e9}seller` (column 2; did you mean `reseller`?)",
        ),
    ];
    for (input, message) in cases {
        let (ran, work, sim) = run_input(input);
        assert_exit(&ran, 2);
        assert!(
            ran.stderr.contains(message),
            "wanted `{message}` in: {}",
            ran.stderr
        );
        assert!(sim.requests().is_empty(), "{message}: requests were sent");
        // Nothing is lost: no results file pretends the run happened.
        assert!(
            !work.path("out.csv").exists() || work.read("out.csv").is_empty(),
            "{message}: a results file was written"
        );
    }
}

#[test]
fn a_header_with_only_the_key_makes_every_row_invalid() {
    let (ran, work, sim) = run_input(b"client_id\n1\n2\n");
    assert_exit(&ran, 1);
    let rows = work.results("out.csv");
    assert_eq!(rows.len(), 2);
    for row in rows {
        assert_eq!(row["outcome"], "invalid");
        assert!(row["error"].contains("no column to change"), "{row:?}");
    }
    assert!(sim.patches().is_empty());
}

#[test]
fn every_invalid_row_rule_sends_nothing_for_that_row() {
    let input = "client_id,email,reseller,seller,is_test,name\n\
        1,ok@example.com,,,,\n\
        2,not-an-email,,,,\n\
        3,,-4,,,\n\
        4,,,1.5,,\n\
        5,,,,maybe,\n\
        6,null,,,,\n\
        7,,null,,,\n\
        8,,,,,\n\
        1,,5,,,\n\
        abc,,5,,,\n\
        0,,5,,,\n\
        9,,5\n\
        10,,5,,,,extra\n\
        11,a b@example.com,,,,\n\
        12,x@y,,,,\n\
        13,,,,null,\n\
        14,,,null,,null\n";
    let (ran, work, sim) = run_input(input.as_bytes());
    assert_exit(&ran, 1);
    let rows = work.results_by_line("out.csv");
    let expect = [
        (2, "updated", ""),
        (3, "invalid", "email: `not-an-email`"),
        (4, "invalid", "reseller: `-4` is not a whole number"),
        (5, "invalid", "seller: `1.5` is not a whole number"),
        (
            6,
            "invalid",
            "is_test: `maybe` is not one of true, false, 1, 0",
        ),
        (7, "invalid", "email: `null` (null) is not allowed"),
        (8, "invalid", "reseller: `null` (null) is not allowed"),
        (9, "invalid", "sets no field"),
        (10, "invalid", "client_id 1 already appeared on line 2"),
        (11, "invalid", "client_id: `abc`"),
        (12, "invalid", "client_id: `0`"),
        (13, "invalid", "has 3 fields, the header has 6"),
        (14, "invalid", "has 7 fields, the header has 6"),
        (15, "invalid", "contains a space"),
        (16, "invalid", "the domain has no dot"),
        (17, "invalid", "is_test: `null` (null) is not allowed"),
        (18, "updated", ""),
    ];
    for (line, outcome, error) in expect {
        let row = &rows[&line];
        assert_eq!(row["outcome"], outcome, "line {line}: {row:?}");
        assert!(
            row["error"].contains(error),
            "line {line}: wanted `{error}` in `{}`",
            row["error"]
        );
        if outcome == "invalid" {
            assert_eq!(row["attempts"], "0");
            assert_eq!(row["http_status"], "");
        }
    }
    assert_eq!(rows[&11]["client_id"], "abc", "the raw key is kept");
    // Only lines 2 and 18 (accounts 1 and 14) were sent.
    let mut sent: Vec<_> = sim.patches().iter().filter_map(|p| p.client_id).collect();
    sent.sort();
    assert_eq!(sent, vec![1, 14]);
}

#[test]
fn line_numbers_count_blank_lines_and_multiline_cells() {
    let input = b"client_id,name\n1,a\n\n\n2,\"two\nlines\"\n\n1,dup\n";
    let (ran, work, _sim) = run_input(input);
    assert_exit(&ran, 1);
    let rows = work.results_by_line("out.csv");
    assert_eq!(rows.keys().copied().collect::<Vec<_>>(), vec![2, 5, 8]);
    assert_eq!(rows[&8]["error"], "client_id 1 already appeared on line 2");
}

#[test]
fn bad_utf8_rows_and_huge_cells_are_invalid_and_the_rest_go_on() {
    // UTF-8 (the first row has an ü written as UTF-8) with a damaged byte on
    // the next: a file with no UTF-8 character at all would be read as
    // Windows-1252 instead (see `spreadsheet`).
    let mut input = b"client_id,name\n1,Z\xc3\xbcrich\n2,caf\xe9\n3,".to_vec();
    input.extend(std::iter::repeat_n(b'x', 70_000));
    input.extend(b"\n4,fine\n5,\"never closed\n6,lost\n");
    let (ran, work, sim) = run_input(&input);
    assert_exit(&ran, 1);
    let rows = work.results_by_line("out.csv");
    assert_eq!(rows[&2]["outcome"], "updated");
    assert_eq!(rows[&3]["outcome"], "invalid");
    assert!(
        rows[&3]["error"].contains("not valid UTF-8"),
        "{:?}",
        rows[&3]
    );
    assert_eq!(rows[&4]["outcome"], "invalid");
    assert!(rows[&4]["error"].contains("64 KiB"), "{:?}", rows[&4]);
    assert_eq!(rows[&5]["outcome"], "updated");
    assert_eq!(rows[&6]["outcome"], "invalid");
    assert!(rows[&6]["error"].contains("never closed"), "{:?}", rows[&6]);
    assert_eq!(rows.len(), 5);
    assert_eq!(sim.patches().len(), 2);
}

#[test]
fn hostile_files_exit_2_with_a_reason() {
    let work = Work::new();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty.csv", vec![], "empty"),
        ("zeros.bin", vec![0u8; 4096], "binary"),
        (
            "random.bin",
            (0..4096u32)
                .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
                .collect(),
            "",
        ),
        ("latin1.csv", b"client_id,n\xe4me\n1,x\n".to_vec(), "UTF-8"),
    ];
    for (name, bytes, message) in cases {
        work.write(name, &bytes);
        let out = format!("{name}.out");
        let ran = work.run(&["run", name, "-o", &out, "--dry-run"]);
        assert_exit(&ran, 2);
        assert!(ran.stderr.contains(message), "{name}: {}", ran.stderr);
        assert!(!ran.stderr.contains("panicked"), "{name}: {}", ran.stderr);
    }
    let ran = work.run(&["run", "missing.csv", "-o", "x.csv", "--dry-run"]);
    assert_exit(&ran, 2);
    assert!(
        ran.stderr.contains("cannot open missing.csv"),
        "{}",
        ran.stderr
    );
}

#[test]
fn bad_flags_exit_2_and_say_what_to_fix() {
    let work = Work::new();
    work.write("in.csv", "client_id,reseller\n1,2\n");
    for (args, message) in [
        (vec!["--rate", "fast"], "not a rate"),
        (vec!["--rate", "5/d"], "s, m or h"),
        (vec!["--timeout", "soon"], "not a duration"),
        (vec!["--concurrency", "0"], "concurrency"),
        (vec!["--max-failure-rate", "2"], "between 0 and 1"),
        (vec!["--null-token", " "], "--null-token cannot be empty"),
        (vec!["--shard", "3/3"], "out of range"),
        (vec!["--resume", "--force"], "cannot be used with"),
        (vec!["--rate", "1e-9/s"], "at least one request a day"),
    ] {
        let mut full = vec!["run", "in.csv", "-o", "out.csv", "--dry-run"];
        full.extend(args.iter().copied());
        let ran = work.run(&full);
        assert_exit(&ran, 2);
        assert!(ran.stderr.contains(message), "{args:?}: {}", ran.stderr);
    }
}
