//! What each mode does with one valid row: `run` (read first when asked,
//! PATCH, verify) and `plan` (read and compare). A dry run sends nothing, so
//! its rows never come here (the reader finishes them). Which outcome an
//! answer gives is decided in `crate::outcome`; this file sends the requests
//! and puts the row's result together.

use std::sync::Arc;
use std::time::Instant;

use crate::client::api::Request;
use crate::client::call::{AccountRequest, CallEnd, Called, Caller};
use crate::fields::{AccountView, ClientPatch};
use crate::outcome::{Outcome, RowResult, outcome_of_patch, outcome_of_read};
use crate::results::undo::UndoWriter;

/// A row that validated, on its way to a worker.
#[derive(Debug, Clone)]
pub struct ValidRow {
    pub line: u64,
    pub key: String,
    pub patch: ClientPatch,
    /// `--resume`: the ledger recorded this account done with other values.
    pub changed_since_last_run: bool,
}

/// How `run` treats each row. `U` is the undo file: its path and policy
/// while the run is configured, its writer once open (see `run::mode`).
#[derive(Debug, Clone)]
pub struct ApplyOptions<U = Arc<UndoWriter>> {
    /// Read the account first and send only the fields that differ.
    pub skip_unchanged: bool,
    /// Read the account first and record its previous values here.
    pub undo: Option<U>,
}

impl<U> Default for ApplyOptions<U> {
    fn default() -> Self {
        ApplyOptions {
            skip_unchanged: false,
            undo: None,
        }
    }
}

impl<U> ApplyOptions<U> {
    fn reads_first(&self) -> bool {
        self.skip_unchanged || self.undo.is_some()
    }
}

/// A row's result under construction.
struct RowRecord {
    result: RowResult,
    started: Instant,
}

impl RowRecord {
    /// The record of `row`, which hands over its key (a row is finished
    /// once; its key need not be copied).
    fn new(row: &mut ValidRow) -> RowRecord {
        RowRecord {
            result: RowResult {
                line: row.line,
                client_id: std::mem::take(&mut row.key),
                outcome: Outcome::Failed,
                http_status: None,
                attempts: 0,
                account_status: None,
                error: String::new(),
                request: String::new(),
                duration_ms: 0,
                diff: String::new(),
                requested: row.patch.requested(),
                finished_at: 0,
                retries: 0,
                throttled: 0,
            },
            started: Instant::now(),
        }
    }

    /// Adds a request's attempts. Its last response's status becomes the
    /// row's: a PATCH that got no answer after a successful read leaves the
    /// status empty, not the read's 200.
    fn add(&mut self, called: &Called) {
        self.result.attempts += called.attempts;
        self.result.retries += called.attempts.saturating_sub(1);
        self.result.throttled += called.throttled;
        if called.attempts > 0 {
            self.result.http_status = called.last_status;
        }
    }

    fn end(mut self, outcome: Outcome, error: String) -> Option<RowResult> {
        self.result.outcome = outcome;
        self.result.error = error;
        self.result.duration_ms = self.started.elapsed().as_millis() as u64;
        self.result.finished_at = crate::outcome::now_millis();
        Some(self.result)
    }
}

/// How reading an account went.
enum AccountRead {
    /// The account, as the API holds it now.
    Read(Box<AccountView>),
    /// The read failed; the row ends `failed` with this error.
    Failed(String),
    /// The run stopped first: the row was not sent and gets no result.
    Stopped,
}

/// Reads the account, adding the request's attempts to the row's record.
async fn read_account(
    caller: &Caller,
    record: &mut RowRecord,
    client_id: u64,
    context: &str,
) -> AccountRead {
    let what = AccountRequest("GET", client_id);
    let called = caller.call(&Request::Get { client_id }, &what).await;
    record.add(&called);
    match &called.end {
        CallEnd::NotStarted | CallEnd::Interrupted(_) | CallEnd::Abandoned => AccountRead::Stopped,
        CallEnd::Success(exchange) => {
            match outcome_of_read(exchange.status, &exchange.body, client_id, context) {
                Ok(account) => {
                    record.result.account_status = account.status();
                    AccountRead::Read(Box::new(account))
                }
                Err(error) => AccountRead::Failed(error),
            }
        }
        _ => AccountRead::Failed(format!(
            "{context}{}",
            called.failure(caller.policy.max_attempts)
        )),
    }
}

/// `run`: PATCH the row (after reading the account when asked) and check that
/// the returned account holds what was sent. `None` when the run stopped
/// before anything was sent for the row.
pub async fn apply(
    caller: &Caller,
    mut row: ValidRow,
    options: &ApplyOptions,
) -> Option<RowResult> {
    let mut record = RowRecord::new(&mut row);
    let client_id = row.patch.client_id;
    let mut patch = row.patch;

    if options.reads_first() {
        let account = match read_account(
            caller,
            &mut record,
            client_id,
            "reading the account first: ",
        )
        .await
        {
            AccountRead::Read(account) => *account,
            AccountRead::Failed(error) => return record.end(Outcome::Failed, error),
            AccountRead::Stopped => return None,
        };
        record.result.diff = patch.diff(&account);
        if options.skip_unchanged {
            patch = patch.only_differences(&account);
            if patch.changes.is_empty() {
                return record.end(Outcome::Unchanged, String::new());
            }
        }
        if let Some(undo) = &options.undo
            && let Err(e) = record_previous(undo, &account, &patch).await
        {
            // Nothing was sent: the row gets no result, and the run stops.
            caller
                .stop
                .stop(crate::run::stop::StopReason::Failed(format!(
                    "cannot write the undo file: {}; line {} (client_id {client_id}) and the \
                 rows after it were not sent",
                    crate::error::describe_write_error(&e),
                    record.result.line
                )));
            return None;
        }
    }

    // Sent as read and its fields in name order: the body is the
    // `requested` already written (most rows), not written again.
    let body = if !options.reads_first()
        && patch
            .changes
            .is_sorted_by_key(|(field, _)| field.api_name())
    {
        record.result.requested.clone()
    } else {
        patch.body()
    };
    record.result.request = body.clone();
    let what = AccountRequest("PATCH", client_id);
    let called = caller
        .call(
            &Request::Patch {
                client_id,
                body: body.into(),
            },
            &what,
        )
        .await;
    record.add(&called);
    match &called.end {
        // The PATCH never left: whatever was read first, nothing changed.
        // (A PATCH is never abandoned in flight; only reads are.)
        CallEnd::NotStarted | CallEnd::Abandoned => None,
        CallEnd::Success(exchange) => {
            let verdict = outcome_of_patch(
                exchange.status,
                exchange.unreadable.as_deref(),
                &exchange.body,
                client_id,
                &patch,
            );
            if let Some(status) = verdict.account_status {
                record.result.account_status = status;
            }
            record.end(verdict.outcome, verdict.error)
        }
        _ => {
            let error = called.failure(caller.policy.max_attempts);
            record.end(Outcome::Failed, error)
        }
    }
}

/// Writes the undo row off the async thread: the file is flushed (and now
/// and then synced) before the PATCH may go, and a slow disk must not hold up
/// every other request, nor the answer to an interrupt.
async fn record_previous(
    undo: &Arc<UndoWriter>,
    account: &AccountView,
    patch: &ClientPatch,
) -> std::io::Result<()> {
    let (undo, account, patch) = (Arc::clone(undo), account.clone(), patch.clone());
    tokio::task::spawn_blocking(move || undo.record(&account, &patch))
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
}

/// `plan`: read the account and record what `run` would change.
pub async fn plan(caller: &Caller, mut row: ValidRow) -> Option<RowResult> {
    let mut record = RowRecord::new(&mut row);
    record.result.request = row.patch.body();
    match read_account(caller, &mut record, row.patch.client_id, "").await {
        AccountRead::Read(account) => {
            let diff = row.patch.diff(&account);
            let outcome = if diff.is_empty() {
                Outcome::Unchanged
            } else {
                Outcome::WouldUpdate
            };
            record.result.diff = diff;
            record.end(outcome, String::new())
        }
        AccountRead::Failed(error) => record.end(Outcome::Failed, error),
        AccountRead::Stopped => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fields::{Field, Value};
    use crate::sim::{Fault, FaultRule, Simulator, Trigger};

    const TOKEN: &str = "apply-unit-test-token";

    /// A simulator on 127.0.0.1 holding accounts 1 to 3, and a caller that
    /// makes one attempt per request.
    async fn against(rules: Vec<FaultRule>) -> (Simulator, Caller) {
        let sim = crate::client::call::test_simulator(TOKEN, 1..=3, rules).await;
        let caller = Caller::for_tests(&sim.base_url(), TOKEN, 1);
        (sim, caller)
    }

    fn rename(client_id: u64, name: &str) -> ValidRow {
        ValidRow {
            line: 2,
            key: client_id.to_string(),
            patch: ClientPatch {
                client_id,
                changes: vec![(Field::Name, Value::Text(name.into()))],
            },
            changed_since_last_run: false,
        }
    }

    fn patch_fault(fault: Fault) -> Vec<FaultRule> {
        vec![FaultRule::new(fault, Trigger::Always).on_method("PATCH")]
    }

    #[tokio::test]
    async fn a_patch_the_account_holds_is_updated_and_records_its_request() {
        let (sim, caller) = against(vec![]).await;
        let row = apply(&caller, rename(1, "Ann"), &ApplyOptions::default())
            .await
            .expect("sent");
        assert_eq!(row.outcome, Outcome::Updated, "{row:?}");
        assert_eq!(row.http_status, Some(200));
        assert_eq!((row.attempts, row.retries), (1, 0));
        assert_eq!(row.request, r#"{"name":"Ann"}"#);
        assert_eq!(row.requested, r#"{"name":"Ann"}"#);
        assert!(row.finished_at > 0);
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn an_answer_for_another_account_is_a_mismatch() {
        let (sim, caller) = against(patch_fault(Fault::OtherAccount(2))).await;
        let row = apply(&caller, rename(1, "Ann"), &ApplyOptions::default())
            .await
            .expect("sent");
        assert_eq!(row.outcome, Outcome::Mismatch, "{row:?}");
        assert!(row.error.contains("not account 1"), "{}", row.error);
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn a_failed_patch_is_failed_with_the_caller_s_message() {
        let (sim, caller) = against(patch_fault(Fault::Status(500))).await;
        let row = apply(&caller, rename(1, "Ann"), &ApplyOptions::default())
            .await
            .expect("sent");
        assert_eq!(row.outcome, Outcome::Failed, "{row:?}");
        assert_eq!(row.http_status, Some(500));
        assert!(!row.error.is_empty());
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn skip_unchanged_reads_first_and_sends_nothing_the_account_holds() {
        let (sim, caller) = against(vec![]).await;
        let options = ApplyOptions {
            skip_unchanged: true,
            undo: None,
        };
        let first = apply(&caller, rename(3, "Zed"), &options).await.unwrap();
        assert_eq!(first.outcome, Outcome::Updated, "{first:?}");
        assert_eq!(first.attempts, 2, "a GET, then the PATCH");
        let again = apply(&caller, rename(3, "Zed"), &options).await.unwrap();
        assert_eq!(again.outcome, Outcome::Unchanged, "{again:?}");
        assert_eq!(again.attempts, 1, "the GET alone");
        assert_eq!(again.request, "");
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn a_read_of_another_account_fails_the_row_before_anything_is_sent() {
        let rules = vec![FaultRule::new(Fault::OtherAccount(2), Trigger::Always).on_method("GET")];
        let (sim, caller) = against(rules).await;
        let options = ApplyOptions {
            skip_unchanged: true,
            undo: None,
        };
        let row = apply(&caller, rename(1, "Ann"), &options).await.unwrap();
        assert_eq!(row.outcome, Outcome::Failed, "{row:?}");
        assert!(
            row.error.starts_with("reading the account first: "),
            "{}",
            row.error
        );
        assert!(row.error.ends_with("nothing was sent"), "{}", row.error);
        assert_eq!(row.request, "");
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn plan_reads_and_compares() {
        let (sim, caller) = against(vec![]).await;
        apply(&caller, rename(2, "Bea"), &ApplyOptions::default())
            .await
            .unwrap();
        let same = plan(&caller, rename(2, "Bea")).await.unwrap();
        assert_eq!(same.outcome, Outcome::Unchanged, "{same:?}");
        let other = plan(&caller, rename(2, "Cy")).await.unwrap();
        assert_eq!(other.outcome, Outcome::WouldUpdate, "{other:?}");
        assert!(other.diff.contains("name"), "{}", other.diff);
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn a_stopped_run_sends_nothing_and_records_no_row() {
        let (sim, caller) = against(vec![]).await;
        caller.stop.stop(crate::run::stop::StopReason::Interrupted);
        assert!(
            apply(&caller, rename(1, "Ann"), &ApplyOptions::default())
                .await
                .is_none()
        );
        assert!(plan(&caller, rename(1, "Ann")).await.is_none());
        sim.shutdown().await;
    }
}
