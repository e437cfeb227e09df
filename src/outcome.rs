//! How a row ended: the outcome vocabulary every stage shares (`Outcome`,
//! `RowResult`), and the pure decisions that pick a row's outcome from what
//! the API answered. Nothing here sends, waits or writes; `run::apply` calls
//! these, and the results writer, the counts, the progress line and the
//! reports only name what is defined here.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::fields::{AccountView, ClientPatch};

/// How a row ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Updated,
    Failed,
    Invalid,
    DryRun,
    Unchanged,
    WouldUpdate,
    Mismatch,
}

impl Outcome {
    pub const ALL: [Outcome; 7] = [
        Outcome::Updated,
        Outcome::Failed,
        Outcome::Invalid,
        Outcome::DryRun,
        Outcome::Unchanged,
        Outcome::WouldUpdate,
        Outcome::Mismatch,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Updated => "updated",
            Outcome::Failed => "failed",
            Outcome::Invalid => "invalid",
            Outcome::DryRun => "dry_run",
            Outcome::Unchanged => "unchanged",
            Outcome::WouldUpdate => "would_update",
            Outcome::Mismatch => "mismatch",
        }
    }

    pub fn parse(text: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.as_str() == text)
    }
}

/// One results row.
#[derive(Debug, Clone, PartialEq)]
pub struct RowResult {
    pub line: u64,
    pub client_id: String,
    pub outcome: Outcome,
    pub http_status: Option<u16>,
    pub attempts: u32,
    pub account_status: Option<String>,
    pub error: String,
    pub request: String,
    pub duration_ms: u64,
    pub diff: String,
    /// The values the input row asked for, fields in name order (see
    /// [`ClientPatch::requested`]): what `--resume` compares. Empty for a row
    /// that did not validate.
    pub requested: String,
    /// When the row ended, in milliseconds since the Unix epoch.
    pub finished_at: u64,
    /// Attempts beyond the first of each of the row's requests.
    pub retries: u32,
    /// Answers of the server's limit refusing the row's requests got (HTTP
    /// 429, and any `--throttle-status`).
    pub throttled: u32,
}

impl RowResult {
    /// A row that did not validate: nothing was sent.
    pub fn invalid(line: u64, client_id: String, error: String) -> RowResult {
        RowResult {
            line,
            client_id,
            outcome: Outcome::Invalid,
            http_status: None,
            attempts: 0,
            account_status: None,
            error,
            request: String::new(),
            duration_ms: 0,
            diff: String::new(),
            requested: String::new(),
            finished_at: now_millis(),
            retries: 0,
            throttled: 0,
        }
    }
}

/// A moment as the results record it: milliseconds since the Unix epoch.
pub fn unix_millis(t: SystemTime) -> u64 {
    // Seconds and milliseconds apart: `as_millis` divides a u128, which a
    // dry run paid once a row.
    t.duration_since(UNIX_EPOCH).map_or(0, |d| {
        d.as_secs()
            .saturating_mul(1000)
            .saturating_add(u64::from(d.subsec_millis()))
    })
}

/// Now, in milliseconds since the Unix epoch.
pub fn now_millis() -> u64 {
    unix_millis(SystemTime::now())
}

/// What a successful read (a 2xx to a GET) says: the account, or why it
/// cannot be taken for `client_id`'s (the row then ends `failed`; `context`
/// starts the message).
pub fn outcome_of_read(
    status: Option<u16>,
    body: &[u8],
    client_id: u64,
    context: &str,
) -> Result<AccountView, String> {
    match AccountView::parse(body) {
        // Another account's values must never be taken for this one's (the
        // undo file would put them on the wrong account).
        Some(account) if account.id() != Some(client_id) => Err(format!(
            "{context}the API answered with {} instead of account {client_id}; nothing was sent",
            describe_id(&account)
        )),
        Some(account) => Ok(account),
        None => Err(format!(
            "{context}HTTP {} but the body is not a JSON account",
            status.unwrap_or(200)
        )),
    }
}

/// How a row ends after its PATCH was answered with a 2xx.
#[derive(Debug, Clone)]
pub struct PatchVerdict {
    /// `Updated` when the returned account holds what was sent, `Mismatch`
    /// otherwise (or when the answer cannot be checked).
    pub outcome: Outcome,
    /// Why, for a `Mismatch`; empty for `Updated`.
    pub error: String,
    /// When the answer could be read and is this account's: its `status`,
    /// if it has one.
    pub account_status: Option<Option<String>>,
}

/// The outcome of a PATCH answered with a 2xx: the change was applied, so
/// the row ends `updated` when the returned account holds what was sent and
/// `mismatch` otherwise. `unreadable` says why the answer's body could not be
/// read (cut short, or too large), when it could not.
pub fn outcome_of_patch(
    status: Option<u16>,
    unreadable: Option<&str>,
    body: &[u8],
    client_id: u64,
    sent: &ClientPatch,
) -> PatchVerdict {
    let status = status.unwrap_or(200);
    let mismatch = |error: String| PatchVerdict {
        outcome: Outcome::Mismatch,
        error,
        account_status: None,
    };
    if let Some(why) = unreadable {
        return mismatch(format!(
            "HTTP {status} but the answer could not be read ({why}), so the change could not be \
             checked (it was probably applied; it is not sent again)"
        ));
    }
    // The usual answer, checked without building the account; any other is
    // read whole below, which says what is wrong with it.
    if let Some(account_status) = crate::fields::confirms(body, client_id, sent) {
        return PatchVerdict {
            outcome: Outcome::Updated,
            error: String::new(),
            account_status: Some(account_status),
        };
    }
    let Some(account) = AccountView::parse(body) else {
        return mismatch(format!(
            "HTTP {status} but the answer could not be read (it is not a JSON account), so the \
             change could not be checked (it was probably applied)"
        ));
    };
    if account.id() != Some(client_id) {
        return mismatch(format!(
            "HTTP {status} but the answer is for {}, not account {client_id}, so the change \
             could not be checked (it was probably applied)",
            describe_id(&account)
        ));
    }
    let unheld = sent.unheld(&account);
    PatchVerdict {
        outcome: if unheld.is_empty() {
            Outcome::Updated
        } else {
            Outcome::Mismatch
        },
        error: if unheld.is_empty() {
            String::new()
        } else {
            format!(
                "the returned account does not hold what was sent: {}",
                unheld.join("; ")
            )
        },
        account_status: Some(account.status()),
    }
}

/// "account 43", or what stood in its place.
fn describe_id(account: &AccountView) -> String {
    match account.id() {
        Some(id) => format!("account {id}"),
        None => "an account without a usable id".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fields::{Field, Value};

    fn rename(client_id: u64, name: &str) -> ClientPatch {
        ClientPatch {
            client_id,
            changes: vec![(Field::Name, Value::Text(name.into()))],
        }
    }

    #[test]
    fn outcome_names_round_trip() {
        for outcome in Outcome::ALL {
            assert_eq!(Outcome::parse(outcome.as_str()), Some(outcome));
        }
        assert_eq!(Outcome::parse("Updated"), None);
    }

    #[test]
    fn a_patch_whose_answer_holds_what_was_sent_is_updated() {
        let body = br#"{"id": 7, "name": "Ann", "status": "active"}"#;
        let verdict = outcome_of_patch(Some(200), None, body, 7, &rename(7, "Ann"));
        assert_eq!(verdict.outcome, Outcome::Updated);
        assert_eq!(verdict.error, "");
        assert_eq!(verdict.account_status, Some(Some("active".to_string())));
    }

    #[test]
    fn a_patch_whose_answer_holds_other_values_is_a_mismatch_that_names_them() {
        let body = br#"{"id": 7, "name": "Bob"}"#;
        let verdict = outcome_of_patch(Some(200), None, body, 7, &rename(7, "Ann"));
        assert_eq!(verdict.outcome, Outcome::Mismatch);
        assert_eq!(
            verdict.error,
            "the returned account does not hold what was sent: \
             name sent \"Ann\" but the account holds \"Bob\""
        );
    }

    #[test]
    fn a_patch_answer_that_cannot_be_checked_is_a_mismatch() {
        let patch = rename(7, "Ann");
        let cut = outcome_of_patch(Some(200), Some("cut short"), b"{", 7, &patch);
        assert_eq!(cut.outcome, Outcome::Mismatch);
        assert!(cut.error.contains("(cut short)"), "{}", cut.error);
        assert!(cut.error.contains("it is not sent again"), "{}", cut.error);

        let not_json = outcome_of_patch(Some(204), None, b"ok", 7, &patch);
        assert_eq!(not_json.outcome, Outcome::Mismatch);
        assert!(
            not_json
                .error
                .starts_with("HTTP 204 but the answer could not be read (it is not")
        );

        let other = outcome_of_patch(None, None, br#"{"id": 8, "name": "Ann"}"#, 7, &patch);
        assert_eq!(other.outcome, Outcome::Mismatch);
        assert!(
            other
                .error
                .starts_with("HTTP 200 but the answer is for account 8, not account 7"),
            "{}",
            other.error
        );
        assert!(other.account_status.is_none());
    }

    #[test]
    fn a_read_gives_the_account_only_when_it_is_the_one_asked_for() {
        let account = outcome_of_read(Some(200), br#"{"id": "7", "status": "new"}"#, 7, "");
        assert_eq!(account.map(|a| a.status()), Ok(Some("new".to_string())));

        assert_eq!(
            outcome_of_read(Some(200), br#"{"name": "x"}"#, 7, "reading: ").err(),
            Some(
                "reading: the API answered with an account without a usable id instead of \
                 account 7; nothing was sent"
                    .to_string()
            )
        );
        assert_eq!(
            outcome_of_read(Some(203), b"<html>", 7, "").err(),
            Some("HTTP 203 but the body is not a JSON account".to_string())
        );
    }
}
