//! What a user reads on stderr: every stop says why and what to type next
//! (whatever `-q`), every command the tool prints is one it accepts, no
//! input can make it hold more than a bounded amount, signals mean the same
//! in every command, and the messages name what is at fault.

use crate::common::*;

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
