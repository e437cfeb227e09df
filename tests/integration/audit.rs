//! The audit round trip: plan, --skip-unchanged, verification after each
//! write, the undo file, export.

use std::collections::BTreeMap;

use crate::common::*;

const ALL_COLUMNS: &str =
    "client_id,email,companyName,custom_id,name,phone,reseller,seller,is_test";

#[test]
fn plan_reports_every_difference_and_sends_no_patch() {
    let sim = Sim::with_accounts(1..=6);
    let a: Vec<Account> = (1..=6).map(|id| sim.account(id)).collect();
    let work = Work::new();
    let input = format!(
        "client_id,email,reseller,seller,name\n\
         1,{},{},,\n\
         2,{},,,\n\
         3,,{},{},\n\
         4,,,null,\n\
         5,,,,null\n\
         6,,,,\"New, Name\"\n\
         404,,5,,\n\
         x,,5,,\n",
        a[0].email,
        a[0].reseller,
        a[1].email.to_uppercase(),
        a[2].reseller + 1,
        a[2].seller.map_or("null".into(), |s| (s + 100).to_string()),
    );
    work.write("in.csv", &input);
    let ran = work.plan_rows(&sim, "in.csv", "plan.csv").unpaced().ran();
    assert_exit(&ran, 1);
    assert!(sim.patches().is_empty(), "plan sent a PATCH");
    let rows = work.results_by_line("plan.csv");
    assert_eq!(rows[&2]["outcome"], "unchanged");
    assert_eq!(rows[&2]["diff"], "");
    assert_eq!(
        rows[&3]["outcome"], "unchanged",
        "emails compare case-insensitively"
    );
    assert_eq!(rows[&4]["outcome"], "would_update");
    let seller_before = a[2].seller.map_or("null".into(), |s| s.to_string());
    let seller_after = a[2].seller.map_or("null".into(), |s| (s + 100).to_string());
    let mut want = format!("reseller: {} -> {}", a[2].reseller, a[2].reseller + 1);
    if seller_before != seller_after {
        want.push_str(&format!("; seller: {seller_before} -> {seller_after}"));
    }
    assert_eq!(rows[&4]["diff"], want);
    let null_equal = |have: bool, line: u64, diff: String| {
        if have {
            assert_eq!(rows[&line]["outcome"], "would_update");
            assert_eq!(rows[&line]["diff"], diff);
        } else {
            assert_eq!(
                rows[&line]["outcome"], "unchanged",
                "null equals a missing value"
            );
        }
    };
    null_equal(
        a[3].seller.is_some(),
        5,
        format!("seller: {} -> null", a[3].seller.unwrap_or(0)),
    );
    null_equal(
        a[4].name.is_some(),
        6,
        format!(
            "name: \"{}\" -> null",
            a[4].name.clone().unwrap_or_default()
        ),
    );
    assert_eq!(rows[&7]["outcome"], "would_update");
    let old = a[5]
        .name
        .as_ref()
        .map_or("null".into(), |n| format!("\"{n}\""));
    assert_eq!(rows[&7]["diff"], format!("name: {old} -> \"New, Name\""));
    assert_eq!(rows[&8]["outcome"], "failed");
    assert_eq!(rows[&8]["http_status"], "404");
    assert_eq!(rows[&9]["outcome"], "invalid");
    assert!(!rows[&4]["account_status"].is_empty());
    // Nothing changed on the server.
    for (i, account) in a.iter().enumerate() {
        assert_eq!(&sim.account(i as u64 + 1), account);
    }
}

#[test]
fn skip_unchanged_sends_only_the_differing_rows_and_fields() {
    let sim = Sim::with_accounts(1..=3);
    let a: Vec<Account> = (1..=3).map(|id| sim.account(id)).collect();
    let work = Work::new();
    work.write(
        "in.csv",
        format!(
            "client_id,email,reseller,phone\n\
             1,{},{},\n\
             2,{},{},+1 555 0100\n\
             3,{},{},\n",
            a[0].email,
            a[0].reseller,
            a[1].email,
            a[1].reseller,
            a[2].email,
            a[2].reseller + 7
        ),
    );
    let ran = work
        .run_rows(&sim, "in.csv", "out.csv")
        .args(["--skip-unchanged"])
        .unpaced()
        .ran();
    assert_exit(&ran, 0);
    let rows = work.results_by_line("out.csv");
    assert_eq!(rows[&2]["outcome"], "unchanged");
    assert_eq!(rows[&2]["attempts"], "1", "one GET, no PATCH");
    assert_eq!(rows[&3]["outcome"], "updated");
    assert_eq!(rows[&4]["outcome"], "updated");
    assert!(sim.patches_for(1).is_empty());
    assert_eq!(
        sim.patches_for(2)[0].body,
        Some(serde_json::json!({"phone": "+1 555 0100"}))
    );
    assert_eq!(
        sim.patches_for(3)[0].body,
        Some(serde_json::json!({"reseller": a[2].reseller + 7}))
    );
    assert_eq!(
        rows[&4]["diff"],
        format!("reseller: {} -> {}", a[2].reseller, a[2].reseller + 7)
    );
}

#[test]
fn a_field_the_server_ignores_is_a_mismatch() {
    let sim = Sim::with_faults(
        1..=2,
        Faults {
            ignore_fields: vec!["seller".into()],
            ..Faults::default()
        },
    );
    let work = Work::new();
    work.write("in.csv", "client_id,seller,name\n1,999,Ann\n2,,Bob\n");
    let ran = work.run_rows(&sim, "in.csv", "out.csv").unpaced().ran();
    assert_exit(&ran, 1);
    let rows = work.results_by_line("out.csv");
    assert_eq!(rows[&2]["outcome"], "mismatch");
    assert!(
        rows[&2]["error"].contains("seller sent 999"),
        "{:?}",
        rows[&2]
    );
    assert!(
        !rows[&2]["error"].contains("name"),
        "name was stored: {:?}",
        rows[&2]
    );
    assert_eq!(rows[&3]["outcome"], "updated");
}

#[test]
fn the_undo_file_puts_every_field_back() {
    let ids: Vec<u64> = (1..=12).collect();
    let sim = Sim::with_accounts(ids.clone());
    let originals: BTreeMap<u64, Account> = ids.iter().map(|&id| (id, sim.account(id))).collect();
    let work = Work::new();
    // Every field type, nulls both set and cleared; some rows set only some fields.
    let mut input = String::from(ALL_COLUMNS);
    input.push('\n');
    for &id in &ids {
        let seller = if id % 2 == 0 {
            "null".to_string()
        } else {
            "53".to_string()
        };
        let custom = if id % 3 == 0 {
            "null".to_string()
        } else {
            format!("NEW-{id}")
        };
        let phone = if id % 4 == 0 {
            String::new()
        } else {
            "null".to_string()
        };
        input.push_str(&format!(
            "{id},moved{id}@example.org,\"Moved {id}, Inc.\",{custom},\"Zoë {id}\",{phone},900003,{seller},{}\n",
            id % 2 == 0
        ));
    }
    work.write("in.csv", &input);
    let ran = work
        .run_rows(&sim, "in.csv", "out.csv")
        .args(["--undo-file", "undo.csv"])
        .unpaced()
        .ran();
    assert_exit(&ran, 0);
    for &id in &ids {
        assert_eq!(sim.account(id).email, format!("moved{id}@example.org"));
    }
    let undo = work.read("undo.csv");
    assert!(
        undo.starts_with(&format!("\u{feff}{ALL_COLUMNS},read_at\n")),
        "a byte-order mark marks an undo file, read_at says when each account was read: {undo}"
    );

    let ran = work
        .run_rows(&sim, "undo.csv", "restored.csv")
        .unpaced()
        .ran();
    assert_exit(&ran, 0);
    for &id in &ids {
        assert_eq!(
            sim.account(id),
            originals[&id],
            "account {id} is back as it was"
        );
    }
}

#[test]
fn undo_survives_a_resume_without_recording_new_values_as_old() {
    let sim = Sim::with_accounts(1..=60);
    let originals: Vec<Account> = (1..=60).map(|id| sim.account(id)).collect();
    let work = Work::new();
    work.write(
        "in.csv",
        "client_id,reseller,custom_id\n".to_string()
            + &(1..=60)
                .map(|id| format!("{id},900003,R-{id}\n"))
                .collect::<String>(),
    );
    let mut child = work.spawn_against(
        &sim,
        &[
            "run",
            "in.csv",
            "-o",
            "out.csv",
            "--undo-file",
            "undo.csv",
            "--rate",
            "40/s",
        ],
    );
    sim.wait_for_patches(20, std::time::Duration::from_secs(30));
    child.kill().unwrap();
    child.wait().unwrap();
    let ran = work
        .run_rows(&sim, "in.csv", "out.csv")
        .args(["--undo-file", "undo.csv", "--resume"])
        .unpaced()
        .ran();
    assert_exit(&ran, 0);
    let undo = work.results("undo.csv");
    assert_eq!(undo.len(), 60, "one undo row per account");

    // --force starts the results afresh but never empties the undo file.
    let ran = work
        .run_rows(&sim, "in.csv", "out.csv")
        .args(["--undo-file", "undo.csv", "--force"])
        .ran();
    assert_exit(&ran, 2);
    assert!(
        ran.stderr.contains("add --resume to go on"),
        "{}",
        ran.stderr
    );
    assert_eq!(work.results("undo.csv").len(), 60);
    assert_eq!(
        work.results("out.csv").len(),
        60,
        "the refusal left the results alone"
    );
    let ran = work
        .run_rows(&sim, "undo.csv", "restored.csv")
        .unpaced()
        .ran();
    assert_exit(&ran, 0);
    for original in originals {
        assert_eq!(sim.account(original.id), original);
    }
}

#[test]
fn export_filters_across_pages_and_plans_as_unchanged() {
    let sim = Sim::with_accounts(1..=80);
    let all: Vec<Account> = (1..=80).map(|id| sim.account(id)).collect();
    let work = Work::new();
    let reseller = all[0].reseller;
    let seller = all.iter().find_map(|a| a.seller).unwrap();
    type Admits = Box<dyn Fn(&Account) -> bool>;
    let cases: Vec<(Vec<String>, Admits)> = vec![
        (vec![], Box::new(|_| true)),
        (
            vec!["--reseller-id".into(), reseller.to_string()],
            Box::new(move |a| a.reseller == reseller),
        ),
        (
            vec!["--seller-id".into(), seller.to_string()],
            Box::new(move |a| a.seller == Some(seller)),
        ),
        (
            vec!["--is-test".into(), "true".into()],
            Box::new(|a| a.is_test),
        ),
        (
            vec!["--is-test".into(), "false".into()],
            Box::new(|a| !a.is_test),
        ),
        (
            vec!["--client-type".into(), "common".into()],
            Box::new(|a| a.client_type == "common"),
        ),
    ];
    for (filter, admits) in cases {
        let mut args = vec![
            "export",
            "-o",
            "export.csv",
            "--page-size",
            "7",
            "--rate",
            "unlimited",
        ];
        args.extend(filter.iter().map(String::as_str));
        let ran = work.run_against(&sim, &args);
        assert_exit(&ran, 0);
        let exported: Vec<u64> = work
            .results("export.csv")
            .iter()
            .map(|r| r["client_id"].parse().unwrap())
            .collect();
        let expected: Vec<u64> = all.iter().filter(|a| admits(a)).map(|a| a.id).collect();
        assert!(!expected.is_empty(), "{filter:?} matches nothing");
        assert_eq!(exported, expected, "{filter:?}");
        let lists = sim
            .requests()
            .iter()
            .filter(|r| r.path == "/iam/clients")
            .count();
        assert!(
            lists >= expected.len() / 7,
            "{filter:?}: paged in {lists} requests"
        );
        sim.clear_requests();
    }

    // The unedited export plans as unchanged, every row, every column.
    let ran = work.run_against(&sim, &["export", "-o", "export.csv", "--rate", "unlimited"]);
    assert_exit(&ran, 0);
    assert!(
        work.read("export.csv")
            .starts_with(&format!("{ALL_COLUMNS},read_at\n"))
    );
    let ran = work
        .plan_rows(&sim, "export.csv", "plan.csv")
        .unpaced()
        .ran();
    assert_exit(&ran, 0);
    let plan = work.results("plan.csv");
    assert_eq!(plan.len(), 80);
    for row in &plan {
        assert_eq!(row["outcome"], "unchanged", "{row:?}");
    }

    // Chosen columns only; `run` accepts the file as it is.
    let ran = work.run_against(
        &sim,
        &[
            "export",
            "-o",
            "some.csv",
            "--columns",
            "reseller,seller",
            "--rate",
            "unlimited",
        ],
    );
    assert_exit(&ran, 0);
    assert!(
        work.read("some.csv")
            .starts_with("client_id,reseller,seller,read_at\n")
    );
    let ran = work
        .run_rows(&sim, "some.csv", "same.csv")
        .args(["--dry-run"])
        .ran();
    assert_exit(&ran, 0);
}
