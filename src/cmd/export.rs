//! `export`: current accounts, page by page, as a CSV that `run` and `plan`
//! accept as it is. Memory holds one page, whatever the number of accounts.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::Deserialize;

use crate::cli::ExportArgs;
use crate::client::api::Request;
use crate::client::call::CallEnd;
use crate::cmd::{Target, check_token, finish};
use crate::error::{Ending, Fatal, Finished};
use crate::fields::{AccountView, Field, Value, unrepresentable};
use crate::hint::{self, Again};
use crate::logging::Console;
use crate::results::files::{self, Role};
use crate::run::stats::Stats;
use crate::run::stop::{StopSignal, watch_signals};
use crate::run::summary::RunSummary;

pub async fn export(args: ExportArgs, console: Console) -> Ending {
    let started_at = SystemTime::now();
    let result = execute(&args, started_at).await;
    finish(
        result,
        "export",
        &args.report,
        console,
        started_at,
        None,
        &args.output,
        crate::cmd::HtmlReport {
            path: None,
            results: None,
        },
    )
}

/// The filters, applied by the API and checked again on each account (a
/// server that ignores a filter must not widen the export).
#[derive(Debug, Clone, Default)]
struct Filters {
    reseller_id: Option<u64>,
    seller_id: Option<u64>,
    is_test: Option<bool>,
    client_type: Option<String>,
}

impl Filters {
    fn query(&self) -> Vec<(&'static str, String)> {
        let mut query = Vec::new();
        if let Some(id) = self.reseller_id {
            query.push(("reseller_id", id.to_string()));
        }
        if let Some(id) = self.seller_id {
            query.push(("seller_id", id.to_string()));
        }
        if let Some(b) = self.is_test {
            query.push(("is_test", b.to_string()));
        }
        if let Some(t) = &self.client_type {
            query.push(("client_type", t.clone()));
        }
        query
    }

    fn admits(&self, account: &AccountView) -> bool {
        let differs = |field: Field, want: Value| {
            account.get(field).is_some() && account.value(field) != want
        };
        if let Some(id) = self.reseller_id
            && differs(Field::Reseller, Value::Number(id))
        {
            return false;
        }
        if let Some(id) = self.seller_id
            && differs(Field::Seller, Value::Number(id))
        {
            return false;
        }
        if let Some(b) = self.is_test
            && differs(Field::IsTest, Value::Bool(b))
        {
            return false;
        }
        if let (Some(want), Some(serde_json::Value::String(have))) =
            (&self.client_type, &account.client_type)
            && want != have
        {
            return false;
        }
        true
    }
}

/// `GET /iam/clients` answers a plain array without `limit`, a page object with it.
#[derive(Deserialize)]
#[serde(untagged)]
enum Listing {
    Page {
        /// `Some(Null)` for `"next": null`, `None` when there is no `next`.
        #[serde(default, deserialize_with = "present")]
        next: Option<serde_json::Value>,
        #[serde(default)]
        count: Option<u64>,
        results: Vec<AccountView>,
    },
    All(Vec<AccountView>),
}

/// Keeps a `null` as `Some(Null)`, so that it differs from an absent field.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(d).map(Some)
}

/// Whether another page follows. The API's `next` decides when it is there
/// (a server may cap the page size below `limit`), then `count`, and only
/// without either a short page.
fn more_pages(
    next: Option<&serde_json::Value>,
    count: Option<u64>,
    offset: u64,
    got: usize,
    limit: u32,
) -> bool {
    if got == 0 {
        return false;
    }
    match (next, count) {
        (Some(next), _) => !next.is_null(),
        (None, Some(count)) => offset < count,
        (None, None) => got as u64 >= u64::from(limit),
    }
}

/// `--set FIELD=VALUE`: the target values written into every exported row.
/// Values pass the rules an input cell passes, with the same messages.
fn parse_sets(sets: &[String], null_token: &str) -> Result<Vec<(Field, Value)>, Fatal> {
    let mut parsed: Vec<(Field, Value)> = Vec::new();
    for set in sets {
        let Some((name, value)) = set.split_once('=') else {
            return Err(Fatal::Usage(format!(
                "--set `{set}`: write FIELD=VALUE, such as --set seller=80"
            )));
        };
        let (name, value) = (name.trim(), value.trim());
        let field = Field::from_header(name).ok_or_else(|| {
            Fatal::Usage(format!(
                "--set {set}: `{name}` is not a field a row can change; choose from {}",
                Field::ALL.map(Field::api_name).join(", ")
            ))
        })?;
        if parsed.iter().any(|(f, _)| *f == field) {
            return Err(Fatal::Usage(format!(
                "--set names `{}` twice",
                field.api_name()
            )));
        }
        if value.is_empty() {
            return Err(Fatal::Usage(format!(
                "--set {set}: the value is empty, and an empty cell leaves the field as it \
                 is; give a value, or {null_token} to clear it"
            )));
        }
        let value = crate::fields::parse_cell(field, value, null_token)
            .map_err(|e| Fatal::Usage(format!("--set {set}: {e}")))?;
        parsed.push((field, value));
    }
    Ok(parsed)
}

/// The columns written: `--columns` (all fields without it), or with
/// `--set` only the fields set, unless `--columns` names more.
fn columns_with_sets(names: &[String], sets: &[(Field, Value)]) -> Result<Vec<Field>, Fatal> {
    if sets.is_empty() {
        return parse_columns(names);
    }
    let mut columns = if names.is_empty() {
        Vec::new()
    } else {
        parse_columns(names)?
    };
    for (field, _) in sets {
        if !columns.contains(field) {
            columns.push(*field);
        }
    }
    Ok(columns)
}

fn parse_columns(names: &[String]) -> Result<Vec<Field>, Fatal> {
    if names.is_empty() {
        return Ok(Field::ALL.to_vec());
    }
    let mut columns = Vec::new();
    for name in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        let field = Field::from_header(name).ok_or_else(|| {
            let hint = match crate::input::header::suggest(name) {
                Some(close) if Field::from_header(close).is_some() => {
                    format!(" (did you mean `{close}`?)")
                }
                // A key name: the key is always written, first.
                Some(_) => " (client_id is always the first column)".to_string(),
                None => String::new(),
            };
            Fatal::Usage(format!(
                "--columns: {} is not a patch column{hint}; choose from {}",
                crate::fields::quote(name),
                Field::ALL.map(Field::api_name).join(", ")
            ))
        })?;
        if columns.contains(&field) {
            return Err(Fatal::Usage(format!(
                "--columns names `{name}` twice; name each column once"
            )));
        }
        columns.push(field);
    }
    if columns.is_empty() {
        return Err(Fatal::Usage(
            "--columns names no column; name at least one, such as --columns reseller,seller"
                .into(),
        ));
    }
    Ok(columns)
}

async fn execute(args: &ExportArgs, started_at: SystemTime) -> Result<RunSummary, Fatal> {
    if let Some(t) = &args.client_type
        && !matches!(t.as_str(), "common" | "reseller" | "sales")
    {
        return Err(Fatal::Usage(format!(
            "--client-type {} is not one of common, reseller, sales",
            crate::fields::quote(t)
        )));
    }
    if args.null_token.trim().is_empty() {
        return Err(Fatal::Usage(
            "--null-token cannot be empty: an empty cell means \"leave unchanged\"; give a text \
             such as null or -"
                .into(),
        ));
    }
    let null_token = args.null_token.trim();
    let sets = parse_sets(&args.set, null_token)?;
    let columns = columns_with_sets(&args.columns, &sets)?;
    let filters = Filters {
        reseller_id: args.reseller_id,
        seller_id: args.seller_id,
        is_test: args.is_test,
        client_type: args.client_type.clone(),
    };

    // Watched before anything is created or sent, as in `run`: the first
    // signal stops the export (the token check and a page in flight are
    // given up at once), the second exits at once; either way no temporary
    // file is left.
    let stats = Arc::new(Stats::new());
    let stop = StopSignal::new();
    let temp_path: Arc<Mutex<Option<std::path::PathBuf>>> = Arc::default();
    {
        let temp_path = Arc::clone(&temp_path);
        watch_signals(Arc::clone(&stop), move || {
            if let Some(path) = temp_path.lock().unwrap_or_else(|e| e.into_inner()).take() {
                let _ = std::fs::remove_file(path);
            }
            crate::error::exit_interrupted();
        });
    }

    let target = if args.connection.simulator {
        Target::simulator((1..=250).map(crate::sim::Account::generated).collect()).await?
    } else {
        Target::api(&args.connection, std::env::var("GCORE_API_KEY").ok(), true)?
    };

    let mut outputs = vec![("-o", args.output.as_path(), Role::Export)];
    for (flag, path) in [
        ("--summary-json", &args.report.summary_json),
        ("--metrics-file", &args.report.metrics_file),
    ] {
        if let Some(path) = path {
            outputs.push((flag, path, Role::Report));
        }
    }
    files::check(None, &outputs)?;

    // Written beside the destination and renamed over it at the end: a failed
    // or interrupted export never leaves a file that looks complete.
    let to_stdout = args.output.as_os_str() == "-";
    let mut temp = if to_stdout {
        None
    } else {
        Some(
            files::Replacement::beside(&args.output, ".gcore-iam-bulk-export-").map_err(|e| {
                Fatal::Usage(format!(
                    "-o {}: cannot write in {}: {e}; check that the directory exists and can be \
                     written",
                    args.output.display(),
                    files::directory_of(&args.output).display()
                ))
            })?,
        )
    };
    if let Some(temp) = &temp {
        *temp_path.lock().unwrap_or_else(|e| e.into_inner()) = Some(temp.path().to_path_buf());
    }
    let sink: Box<dyn Write> = match &mut temp {
        Some(t) => Box::new(
            t.file()
                .try_clone()
                .map_err(|e| Fatal::Usage(e.to_string()))?,
        ),
        None => Box::new(std::io::stdout()),
    };
    let mut sink = sink;
    if args.spreadsheet.excel {
        sink.write_all(crate::results::undo::BOM)
            .map_err(|e| Fatal::Aborted(format!("cannot write {}: {e}", args.output.display())))?;
    }
    let mut csv = csv::WriterBuilder::new().from_writer(sink);
    let write_err = |e: &dyn std::fmt::Display| {
        let text = e.to_string();
        let text = if text.contains("os error 28") {
            format!("the disk is full ({text})")
        } else {
            text
        };
        Fatal::Aborted(format!("cannot write {}: {text}", args.output.display()))
    };
    // read_at: when each account was read (its page came back).
    let header: Vec<&str> = std::iter::once("client_id")
        .chain(columns.iter().map(|f| f.api_name()))
        .chain(std::iter::once(crate::input::header::READ_AT))
        .collect();
    csv.write_record(&header).map_err(|e| write_err(&e))?;

    let caller = target.caller(
        &args.pacing,
        args.pacing.rate,
        Arc::clone(&stats),
        Arc::clone(&stop),
    )?;
    check_token(&caller, &target.base_url).await?;

    let limit = args.page_size;
    let mut offset: u64 = 0;
    let mut last_id: Option<u64> = None;
    let mut ordered = true;
    let mut exported: u64 = 0;
    loop {
        let mut query = vec![
            ("limit", limit.to_string()),
            ("offset", offset.to_string()),
            ("ordering", "id".to_string()),
        ];
        query.extend(filters.query());
        let what = format!("GET /iam/clients (offset {offset})");
        let called = caller.call(&Request::List { query }, &what).await;
        let read_at = crate::results::undo::read_at(crate::outcome::now_millis());
        let body = match &called.end {
            CallEnd::Success(exchange) => exchange.body.clone(),
            CallEnd::NotStarted | CallEnd::Interrupted(_) | CallEnd::Abandoned => break,
            _ => {
                return Err(Fatal::Aborted(format!(
                    "listing accounts failed at offset {offset}: {}; nothing was written to {}: \
                     run the export again once the API answers",
                    called.failure(caller.policy.max_attempts),
                    args.output.display()
                )));
            }
        };
        let (accounts, more) = match serde_json::from_slice::<Listing>(&body) {
            Ok(Listing::Page {
                next,
                count,
                results,
            }) => {
                let after = offset + results.len() as u64;
                let more = more_pages(next.as_ref(), count, after, results.len(), limit);
                (results, more)
            }
            Ok(Listing::All(all)) => (all, false),
            Err(e) => {
                return Err(Fatal::Aborted(format!(
                    "the account list at offset {offset} is not what the API documents ({e}); \
                     nothing was written to {}: check that --api-url is the Gcore API",
                    args.output.display()
                )));
            }
        };
        offset += accounts.len() as u64;
        let page_sorted = accounts
            .windows(2)
            .all(|w| matches!((w[0].id(), w[1].id()), (Some(a), Some(b)) if a < b));
        if ordered && !page_sorted {
            ordered = false;
            tracing::warn!(
                "the API does not return accounts ordered by id; an account repeated by \
                 paging cannot be dropped"
            );
        }
        for account in &accounts {
            let Some(id) = account.id() else {
                tracing::warn!("an account in the list has no id; skipped");
                continue;
            };
            // Paging by offset while accounts change can repeat an account;
            // ordered by id, a repeat shows as an id not above the last one.
            if ordered && last_id.is_some_and(|last| id <= last) {
                continue;
            }
            last_id = Some(id);
            stats.rows_read(1);
            if !filters.admits(account) {
                continue;
            }
            let mut row = Vec::with_capacity(columns.len() + 1);
            row.push(id.to_string());
            for field in &columns {
                if let Some((_, target)) = sets.iter().find(|(f, _)| f == field) {
                    row.push(export_cell(*field, target.clone(), null_token));
                    continue;
                }
                let value = account.value(*field);
                if let Some(why) = unrepresentable(*field, &value, null_token)
                    && (value != Value::Null || field.nullable())
                {
                    tracing::warn!(
                        "client {id}: {} {why}; check that cell before using the file as input",
                        field.api_name()
                    );
                }
                row.push(export_cell(*field, value, null_token));
            }
            row.push(read_at.clone());
            csv.write_record(&row).map_err(|e| write_err(&e))?;
            exported += 1;
        }
        if !more || accounts.is_empty() || stop.is_stopped() {
            break;
        }
    }
    csv.flush().map_err(|e| write_err(&e))?;
    drop(csv);

    let stopped = stop.reason();
    if stopped.is_none()
        && let Some(temp) = temp
    {
        temp.commit(&args.output).map_err(|e| write_err(&e))?;
        temp_path.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
    if !sets.is_empty() && stop.reason().is_none() && !to_stdout {
        let file = crate::hint::shell_quote(&args.output.display().to_string());
        tracing::info!(
            "next: `gcore-iam-bulk plan {file} -o plan.csv` shows what would change; then \
             `gcore-iam-bulk run {file} -o results.csv --undo-file undo.csv` applies it"
        );
    }
    let snapshot = stats.snapshot();
    Ok(RunSummary {
        command: "export",
        ending: stopped
            .as_ref()
            .map_or(Ok(Finished::CLEAN), |r| Err(r.unfinished())),
        next: stopped.is_some().then(|| {
            format!(
                "nothing was written to {}; to export again: {}",
                args.output.display(),
                hint::command(Again::Same, false)
            )
        }),
        stopped: stopped.map(|r| r.describe()),
        rate_changes: caller.pacer.rate_changes(),
        learned: caller.pacer.learned(),
        asked_rate: args.pacing.rate.per_second(),
        snapshot,
        input: None,
        output: args.output.display().to_string(),
        started_at,
        ended_at: SystemTime::now(),
        exported: Some(exported),
        command_line: Some(crate::cmd::command_line()),
    })
}

/// The cell for an account's value: the null token for a null in a field that
/// can be cleared, empty (leave as it is) for a missing value in one that cannot.
fn export_cell(field: Field, value: Value, null_token: &str) -> String {
    match value {
        Value::Null if field.nullable() => null_token.to_string(),
        Value::Null => String::new(),
        other => other.to_cell(null_token),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_parse_and_refuse() {
        assert_eq!(parse_columns(&[]).unwrap().len(), 8);
        assert_eq!(
            parse_columns(&["Reseller".into(), " seller".into()]).unwrap(),
            vec![Field::Reseller, Field::Seller]
        );
        assert!(parse_columns(&["resellers".into()]).is_err());
        let typo = parse_columns(&["reseler".into()]).unwrap_err().to_string();
        assert!(typo.contains("did you mean `reseller`?"), "{typo}");
        let key = parse_columns(&["client_id".into()])
            .unwrap_err()
            .to_string();
        assert!(key.contains("always the first column"), "{key}");
        assert!(parse_columns(&["email".into(), "email".into()]).is_err());
    }

    #[test]
    fn sets_are_checked_as_input_cells_are() {
        let set =
            |a: &[&str]| parse_sets(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>(), "null");
        assert_eq!(
            set(&["seller=80", " IS_TEST = true "]).unwrap(),
            vec![
                (Field::Seller, Value::Number(80)),
                (Field::IsTest, Value::Bool(true))
            ]
        );
        assert_eq!(
            set(&["seller=null"]).unwrap(),
            vec![(Field::Seller, Value::Null)]
        );
        let e = |a: &[&str]| set(a).unwrap_err().to_string();
        // The same message an input cell gets.
        let cell = crate::fields::parse_cell(Field::Seller, "8o", "null").unwrap_err();
        assert_eq!(e(&["seller=8o"]), format!("--set seller=8o: {cell}"));
        assert!(e(&["reseller=null"]).contains("(null) is not allowed here"));
        assert!(e(&["seller"]).contains("FIELD=VALUE"));
        assert!(e(&["sellers=1"]).contains("not a field a row can change"));
        assert!(e(&["client_id=1"]).contains("not a field a row can change"));
        assert!(e(&["seller=1", "Seller=2"]).contains("twice"));
        assert!(e(&["seller="]).contains("empty"));
        assert!(e(&["email=a@b"]).contains("the domain has no dot"));
        let sets = set(&["seller=80"]).unwrap();
        assert_eq!(columns_with_sets(&[], &sets).unwrap(), vec![Field::Seller]);
        assert_eq!(
            columns_with_sets(&["reseller".into()], &sets).unwrap(),
            vec![Field::Reseller, Field::Seller]
        );
        assert_eq!(columns_with_sets(&[], &[]).unwrap().len(), 8);
    }

    #[test]
    fn cells() {
        assert_eq!(export_cell(Field::Seller, Value::Null, "null"), "null");
        assert_eq!(export_cell(Field::Reseller, Value::Null, "null"), "");
        assert_eq!(
            export_cell(Field::IsTest, Value::Bool(true), "null"),
            "true"
        );
    }

    #[test]
    fn paging_follows_next_then_count_then_short_pages() {
        let null = serde_json::Value::Null;
        let link = serde_json::json!("http://x/iam/clients?offset=50");
        // A server capping pages at 50 while asked for 100: `next` says go on.
        assert!(more_pages(Some(&link), Some(230), 50, 50, 100));
        assert!(!more_pages(Some(&null), Some(230), 230, 30, 100));
        assert!(more_pages(None, Some(230), 50, 50, 100));
        assert!(!more_pages(None, Some(230), 230, 30, 100));
        assert!(more_pages(None, None, 100, 100, 100));
        assert!(!more_pages(None, None, 130, 30, 100));
        assert!(
            !more_pages(Some(&link), None, 0, 0, 100),
            "an empty page ends it"
        );
    }

    #[test]
    fn listing_shapes() {
        let page: Listing = serde_json::from_str(
            r#"{"count": 3, "next": null, "previous": null, "results": [{"id": 1}]}"#,
        )
        .unwrap();
        assert!(matches!(page, Listing::Page { ref results, .. } if results.len() == 1));
        let all: Listing = serde_json::from_str(r#"[{"id": 1}, {"id": 2}]"#).unwrap();
        assert!(matches!(all, Listing::All(ref v) if v.len() == 2));
    }
}
