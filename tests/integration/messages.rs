//! What a user reads on stderr: every stop says why and what to type next
//! (whatever `-q`), every command the tool prints is one it accepts, no
//! input can make it hold more than a bounded amount, signals mean the same
//! in every command, and the messages name what is at fault.

use crate::common::*;

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
    let ran = work.run_against(
        &sim,
        &["run", "in.csv", "-o", "out.csv", "--rate", "unlimited"],
    );
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
    let ran = work.run_against(&sim, &["run", "in.csv", "-o", "out.csv"]);
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
    let ran = work.run_against(
        &sim,
        &["run", "in.csv", "-o", "out.csv", "--rate", "unlimited"],
    );
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
