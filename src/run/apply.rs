//! What each mode does with one valid row: `run` (read first when asked,
//! PATCH, verify), `plan` (read and compare) and `--dry-run` (nothing sent).

use std::sync::Arc;
use std::time::Instant;

use crate::client::api::Request;
use crate::client::call::{AccountRequest, CallEnd, Called, Caller};
use crate::fields::{AccountView, ClientPatch};
use crate::results::undo::UndoWriter;
use crate::results::writer::{Outcome, RowResult};

/// A row that validated, on its way to a worker.
#[derive(Debug, Clone)]
pub struct ValidRow {
    pub line: u64,
    pub key: String,
    pub patch: ClientPatch,
    /// `--resume`: the ledger recorded this account done with other values.
    pub changed_since_last_run: bool,
}

/// How `run` treats each row.
#[derive(Default, Clone)]
pub struct ApplyOptions {
    /// Read the account first and send only the fields that differ.
    pub skip_unchanged: bool,
    /// Read the account first and record its previous values here.
    pub undo: Option<Arc<UndoWriter>>,
}

impl ApplyOptions {
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
    fn new(row: &ValidRow) -> RowRecord {
        RowRecord {
            result: RowResult {
                line: row.line,
                client_id: row.key.clone(),
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
        self.result.finished_at = crate::results::writer::now_millis();
        Some(self.result)
    }
}

/// `--dry-run`: the row is valid; record the body it would send.
pub fn dry_run(row: ValidRow) -> RowResult {
    RowResult {
        request: row.patch.body(),
        requested: row.patch.requested(),
        outcome: Outcome::DryRun,
        ..RowResult::invalid(row.line, row.key, String::new())
    }
}

/// Reads the account; `Err` carries the row's end when that failed (`None`
/// when the run stopped first: the row was not sent and gets no result).
async fn read_account(
    caller: &Caller,
    record: &mut RowRecord,
    client_id: u64,
    context: &str,
) -> Result<AccountView, Option<()>> {
    let what = AccountRequest("GET", client_id);
    let called = caller.call(&Request::Get { client_id }, &what).await;
    record.add(&called);
    match &called.end {
        CallEnd::NotStarted | CallEnd::Interrupted(_) | CallEnd::Abandoned => Err(None),
        CallEnd::Success(exchange) => match AccountView::parse(&exchange.body) {
            // Another account's values must never be taken for this one's
            // (the undo file would put them on the wrong account).
            Some(account) if account.id() != Some(client_id) => {
                record.result.error = format!(
                    "{context}the API answered with {} instead of account {client_id}; \
                     nothing was sent",
                    describe_id(&account)
                );
                Err(Some(()))
            }
            Some(account) => {
                record.result.account_status = account.status();
                Ok(account)
            }
            None => {
                record.result.error = format!(
                    "{context}HTTP {} but the body is not a JSON account",
                    exchange.status.unwrap_or(200)
                );
                Err(Some(()))
            }
        },
        _ => {
            record.result.error =
                format!("{context}{}", called.failure(caller.policy.max_attempts));
            Err(Some(()))
        }
    }
}

/// "account 43", or what stood in its place.
fn describe_id(account: &AccountView) -> String {
    match account.id() {
        Some(id) => format!("account {id}"),
        None => "an account without a usable id".to_string(),
    }
}

/// `run`: PATCH the row (after reading the account when asked) and check that
/// the returned account holds what was sent. `None` when the run stopped
/// before anything was sent for the row.
pub async fn apply(caller: &Caller, row: ValidRow, options: &ApplyOptions) -> Option<RowResult> {
    let mut record = RowRecord::new(&row);
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
            Ok(account) => account,
            Err(None) => return None,
            Err(Some(())) => {
                let error = std::mem::take(&mut record.result.error);
                return record.end(Outcome::Failed, error);
            }
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
                    crate::results::writer::describe_write_error(&e),
                    record.result.line
                )));
            return None;
        }
    }

    let body = patch.body();
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
        CallEnd::Success(exchange) if exchange.unreadable.is_some() => record.end(
            Outcome::Mismatch,
            format!(
                "HTTP {} but the answer could not be read ({}), so the change could not be \
                 checked (it was probably applied; it is not sent again)",
                exchange.status.unwrap_or(200),
                exchange.unreadable.as_deref().unwrap_or_default()
            ),
        ),
        CallEnd::Success(exchange) => match AccountView::parse(&exchange.body) {
            None => record.end(
                Outcome::Mismatch,
                format!(
                    "HTTP {} but the answer could not be read (it is not a JSON account), so \
                     the change could not be checked (it was probably applied)",
                    exchange.status.unwrap_or(200)
                ),
            ),
            Some(account) if account.id() != Some(client_id) => record.end(
                Outcome::Mismatch,
                format!(
                    "HTTP {} but the answer is for {}, not account {client_id}, so the change \
                     could not be checked (it was probably applied)",
                    exchange.status.unwrap_or(200),
                    describe_id(&account)
                ),
            ),
            Some(account) => {
                record.result.account_status = account.status();
                let unheld = patch.unheld(&account);
                if unheld.is_empty() {
                    record.end(Outcome::Updated, String::new())
                } else {
                    record.end(
                        Outcome::Mismatch,
                        format!(
                            "the returned account does not hold what was sent: {}",
                            unheld.join("; ")
                        ),
                    )
                }
            }
        },
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
pub async fn plan(caller: &Caller, row: ValidRow) -> Option<RowResult> {
    let mut record = RowRecord::new(&row);
    record.result.request = row.patch.body();
    match read_account(caller, &mut record, row.patch.client_id, "").await {
        Ok(account) => {
            let diff = row.patch.diff(&account);
            let outcome = if diff.is_empty() {
                Outcome::Unchanged
            } else {
                Outcome::WouldUpdate
            };
            record.result.diff = diff;
            record.end(outcome, String::new())
        }
        Err(None) => None,
        Err(Some(())) => {
            let error = std::mem::take(&mut record.result.error);
            record.end(Outcome::Failed, error)
        }
    }
}
