//! Files as spreadsheets save them: semicolons and tabs, Windows-1252 and
//! UTF-16, and `--excel` for files Excel opens right.

use std::io::Write;
use std::process::Stdio;

use crate::common::*;

const BOM: &str = "\u{feff}";

fn run(work: &Work, sim: &Sim, input: &str, extra: &[&str]) -> Ran {
    let mut args = vec!["run", input, "-o", "out.csv", "--rate", "unlimited"];
    args.extend_from_slice(extra);
    work.run_against(sim, &args)
}

#[test]
fn a_semicolon_separated_file_is_read_and_the_delimiter_is_named() {
    let sim = Sim::with_accounts(1..=3);
    let work = Work::new();
    // Excel's "CSV" where the decimal separator is a comma.
    work.write(
        "in.csv",
        "client_id;reseller;seller;name\r\n1;900002;80;\"Doe; John\"\r\n2;900003;null;\r\n",
    );
    let ran = run(&work, &sim, "in.csv", &[]);
    assert_exit(&ran, 0);
    assert!(ran.stderr.contains("semicolon-separated"), "{}", ran.stderr);
    assert_eq!(sim.account(1).seller, Some(80));
    assert_eq!(sim.account(1).name.as_deref(), Some("Doe; John"));
    assert_eq!(sim.account(2).reseller, 900003);
    assert_eq!(sim.account(2).seller, None);
    let rows = work.results_by_line("out.csv");
    assert_eq!(rows[&2]["outcome"], "updated");
    assert_eq!(rows[&3]["outcome"], "updated");

    // Tabs, too; a plan and a dry run read them the same way.
    work.write("tabs.tsv", "client_id\tseller\n3\t81\n");
    let ran = work.plan_rows(&sim, "tabs.tsv", "plan.csv").unpaced().ran();
    assert_exit(&ran, 0);
    assert!(ran.stderr.contains("tab-separated"), "{}", ran.stderr);
    assert_eq!(work.results("plan.csv")[0]["outcome"], "would_update");
}

#[test]
fn delimiter_forces_one() {
    let sim = Sim::with_accounts(1..=3);
    let work = Work::new();
    work.write("in.csv", "client_id,reseller\n1,900002\n");
    let ran = run(&work, &sim, "in.csv", &["--delimiter", ";"]);
    assert_exit(&ran, 2);
    assert!(
        ran.stderr.contains("as --delimiter says") && ran.stderr.contains("`client_id,reseller`"),
        "{}",
        ran.stderr
    );
    let ran = run(&work, &sim, "in.csv", &["--delimiter", "comma"]);
    assert_exit(&ran, 0);
    let ran = run(&work, &sim, "in.csv", &["--delimiter", "|", "--force"]);
    assert_exit(&ran, 2);
    assert!(ran.stderr.contains("not a delimiter"), "{}", ran.stderr);
}

#[test]
fn a_windows_1252_file_is_read_as_such_and_says_so() {
    let sim = Sim::with_accounts(1..=3);
    let work = Work::new();
    // What Excel's plain "CSV" writes on Western-European Windows.
    work.write(
        "in.csv",
        b"client_id;name;companyName\r\n1;Siobh\xe1n O'Brien;Caf\xe9 M\xfcller \x80\r\n".as_slice(),
    );
    let ran = run(&work, &sim, "in.csv", &[]);
    assert_exit(&ran, 0);
    assert_eq!(sim.account(1).name.as_deref(), Some("Siobhán O'Brien"));
    assert_eq!(sim.account(1).company_name, "Café Müller €");
    assert!(
        ran.stderr.contains("Windows-1252") && ran.stderr.contains("File › Save As › CSV UTF-8"),
        "{}",
        ran.stderr
    );

    // The same bytes through a pipe: judged by the first lines.
    let mut cmd = work.command();
    cmd.args(["run", "-", "-o", "piped.csv", "--rate", "unlimited"])
        .args(["--api-url", &sim.url])
        .env("GCORE_API_KEY", TOKEN)
        .stdin(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"client_id,name\n2,J\xfcrgen\n")
        .unwrap();
    let ran = wait(child);
    assert_exit(&ran, 0);
    assert_eq!(sim.account(2).name.as_deref(), Some("Jürgen"));
}

#[test]
fn a_damaged_utf8_file_stays_utf8_and_its_bad_row_says_what_to_do() {
    let sim = Sim::with_accounts(1..=3);
    let work = Work::new();
    work.write(
        "in.csv",
        b"client_id,name\n1,Z\xc3\xbcrich\n2,caf\xe9\n".as_slice(),
    );
    let ran = run(&work, &sim, "in.csv", &[]);
    assert_exit(&ran, 1);
    assert_eq!(sim.account(1).name.as_deref(), Some("Zürich"));
    let rows = work.results_by_line("out.csv");
    assert!(
        rows[&3]["error"].contains("not valid UTF-8") && rows[&3]["error"].contains("CSV UTF-8"),
        "{:?}",
        rows[&3]
    );
}

fn utf16(text: &str, little_endian: bool) -> Vec<u8> {
    let mut bytes = if little_endian {
        vec![0xFF, 0xFE]
    } else {
        vec![0xFE, 0xFF]
    };
    for unit in text.encode_utf16() {
        bytes.extend(if little_endian {
            unit.to_le_bytes()
        } else {
            unit.to_be_bytes()
        });
    }
    bytes
}

#[test]
fn utf16_with_a_byte_order_mark_is_read_and_without_one_is_refused_with_the_fix() {
    let sim = Sim::with_accounts(1..=3);
    let work = Work::new();
    // Excel's "Unicode Text": UTF-16 little-endian, tab-separated.
    work.write("le.txt", utf16("client_id\tname\r\n2\tZoë Ωmega\r\n", true));
    let ran = run(&work, &sim, "le.txt", &[]);
    assert_exit(&ran, 0);
    assert!(ran.stderr.contains("UTF-16"), "{}", ran.stderr);
    assert_eq!(sim.account(2).name.as_deref(), Some("Zoë Ωmega"));
    work.write("be.csv", utf16("client_id,name\n3,Ærøskøbing\n", false));
    let ran = run(&work, &sim, "be.csv", &["--force"]);
    assert_exit(&ran, 0);
    assert_eq!(sim.account(3).name.as_deref(), Some("Ærøskøbing"));

    let mut no_mark = utf16("client_id,name\n1,x\n", true);
    no_mark.drain(..2);
    work.write("nomark.csv", no_mark);
    sim.clear_requests();
    let ran = run(&work, &sim, "nomark.csv", &["--force"]);
    assert_exit(&ran, 2);
    assert!(
        ran.stderr.contains("UTF-16") && ran.stderr.contains("File › Save As › CSV UTF-8"),
        "{}",
        ran.stderr
    );
    assert!(sim.patches().is_empty());
}

#[test]
fn excel_writes_a_byte_order_mark_and_every_command_reads_such_files_back() {
    let sim = Sim::with_accounts(1..=6);
    let work = Work::new();
    work.write("in.csv", "client_id,name\n1,Siobhán\n2,Zoë\n3,José\n");

    // Results: the mark, then UTF-8; --resume appends below it.
    let ran = work
        .run_rows(&sim, "in.csv", "out.csv")
        .args(["--excel", "--limit", "2"])
        .unpaced()
        .ran();
    assert_exit(&ran, 0);
    let out = work.read("out.csv");
    assert!(
        out.starts_with(&format!("{BOM}line,client_id,outcome,")),
        "{out}"
    );
    let ran = work
        .run_rows(&sim, "in.csv", "out.csv")
        .args(["--excel", "--resume"])
        .unpaced()
        .ran();
    assert_exit(&ran, 0);
    let out = work.read("out.csv");
    assert_eq!(out.matches(BOM).count(), 1, "one mark, at the start");
    assert_eq!(out.lines().count(), 4, "the header and three rows: {out}");
    assert!(ran.stderr.contains("already updated"), "{}", ran.stderr);

    // `results` and `report` read it; `results --excel` writes the mark.
    let ran = work.run(&["results", "out.csv", "-o", "final.csv", "--excel"]);
    assert_exit(&ran, 0);
    assert!(work.read("final.csv").starts_with(&format!("{BOM}line,")));
    let ran = work.run(&["report", "out.csv", "-o", "report.html"]);
    assert_exit(&ran, 0);
    assert!(
        work.read("report.html")
            .contains("data-outcome=\"updated\" data-count=\"3\"")
    );

    // An export with the mark is an input as it is, for plan and run.
    let ran = work.run_against(
        &sim,
        &[
            "export",
            "-o",
            "export.csv",
            "--columns",
            "name",
            "--excel",
            "--rate",
            "unlimited",
        ],
    );
    assert_exit(&ran, 0);
    let export = work.read("export.csv");
    assert!(export.starts_with(&format!("{BOM}client_id,name,read_at\n")));
    assert!(export.contains("Siobhán"));
    let ran = work
        .plan_rows(&sim, "export.csv", "plan.csv")
        .args(["--excel"])
        .unpaced()
        .ran();
    assert_exit(&ran, 0);
    assert!(work.read("plan.csv").starts_with(&format!("{BOM}line,")));
    let plan = read_csv(&work.path("plan.csv"));
    assert_eq!(plan.len(), 6);
    assert!(plan.iter().all(|r| r["outcome"] == "unchanged"));
}
