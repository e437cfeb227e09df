//! `--undo-file`: before a row is sent, the account's previous values of the
//! fields it changes, as a row that `run` accepts. Running the undo file puts
//! every account back.

use std::collections::HashSet;
use std::fs::File;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::Fatal;
use crate::fields::{AccountView, ClientPatch, Field, Value, unrepresentable};
use crate::results::ledger::{self, Existing};

/// A `read_at` cell: RFC 3339 in UTC, with milliseconds.
pub fn read_at(millis: u64) -> String {
    let mut out = Vec::new();
    crate::results::format::Stamps::default().push(&mut out, millis);
    String::from_utf8(out).expect("a timestamp is ASCII")
}

/// How an undo file writes a null: the default `--null-token`.
pub const UNDO_NULL: &str = "null";

/// An undo file starts with a UTF-8 byte-order mark. `run` and spreadsheets
/// read it as UTF-8, and every command knows the file by it: nothing but the
/// run that keeps it may write to it (see `results::files`).
pub const BOM: &[u8] = b"\xef\xbb\xbf";

pub struct UndoWriter {
    inner: Mutex<Inner>,
    columns: Vec<Field>,
    null_token: String,
}

struct Inner {
    csv: csv::Writer<File>,
    /// Accounts already in the file: their first recorded values are the
    /// originals, and a resumed run must not overwrite them with values it
    /// changed itself.
    recorded: HashSet<u64>,
    last_sync: Instant,
}

impl UndoWriter {
    /// Opens (and locks) the undo file for an input that sets `columns`.
    /// Nulls are always written `null`, whatever `--null-token` the run
    /// reads its input with: `run undo.csv` reads them back with the default.
    pub fn open(path: &Path, columns: Vec<Field>, existing: Existing) -> Result<UndoWriter, Fatal> {
        let null_token = UNDO_NULL;
        let mut file = ledger::open_locked(path)?;
        // read_at: when each account was read, just before its change.
        let header: Vec<&str> = std::iter::once("client_id")
            .chain(columns.iter().map(|f| f.api_name()))
            .chain(std::iter::once(crate::input::header::READ_AT))
            .collect();
        let mut recorded = HashSet::new();
        let has_header = ledger::prepare(&mut file, path, &header, existing, |record| {
            if let Some(id) = record
                .get(0)
                .and_then(|c| std::str::from_utf8(c).ok())
                .and_then(crate::fields::parse_whole_number)
            {
                recorded.insert(id);
            }
        })?;
        ledger::check_room(&mut file, path)?;
        if !has_header {
            use std::io::Write;
            file.write_all(BOM)
                .map_err(|e| Fatal::Usage(format!("cannot write {}: {e}", path.display())))?;
        }
        let mut csv = csv::WriterBuilder::new().from_writer(file);
        if !has_header {
            csv.write_record(&header)
                .and_then(|()| csv.flush().map_err(Into::into))
                .map_err(|e| Fatal::Usage(format!("cannot write {}: {e}", path.display())))?;
        }
        Ok(UndoWriter {
            inner: Mutex::new(Inner {
                csv,
                recorded,
                last_sync: Instant::now(),
            }),
            columns,
            null_token: null_token.to_string(),
        })
    }

    /// Records the account's values of the fields `patch` is about to change,
    /// and flushes them before returning: the PATCH goes out only after its
    /// undo row is written.
    pub fn record(&self, account: &AccountView, patch: &ClientPatch) -> std::io::Result<()> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if !inner.recorded.insert(patch.client_id) {
            return Ok(());
        }
        let mut row = Vec::with_capacity(self.columns.len() + 1);
        row.push(patch.client_id.to_string());
        for column in &self.columns {
            let cell = if patch.changes.iter().any(|(f, _)| f == column) {
                self.cell(*column, account.value(*column), patch.client_id)
            } else {
                String::new()
            };
            row.push(cell);
        }
        row.push(read_at(crate::outcome::now_millis()));
        inner.csv.write_record(&row)?;
        inner.csv.flush()?;
        if inner.last_sync.elapsed() >= Duration::from_secs(1) {
            inner.csv.get_ref().sync_data()?;
            inner.last_sync = Instant::now();
        }
        Ok(())
    }

    /// The cell that restores `value`. A value no cell can restore exactly
    /// (see [`unrepresentable`]) is written as well as it can be, with a
    /// warning naming the account and the field.
    fn cell(&self, field: Field, value: Value, client_id: u64) -> String {
        if let Some(why) = unrepresentable(field, &value, &self.null_token) {
            tracing::warn!(
                "client {client_id}: the previous {} {why}; the undo file cannot restore it exactly",
                field.api_name()
            );
        }
        match value {
            Value::Null if !field.nullable() => String::new(),
            other => other.to_cell(&self.null_token),
        }
    }

    /// Flushes and syncs the file.
    pub fn finish(&self) -> std::io::Result<()> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.csv.flush()?;
        inner.csv.get_ref().sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(json: &str) -> AccountView {
        AccountView::parse(json.as_bytes()).expect("a JSON account")
    }

    fn refuse() -> Existing {
        Existing::Refuse { advice: "test" }
    }

    #[test]
    fn records_the_previous_values_of_the_fields_sent_once_per_account() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("undo.csv");
        let undo = UndoWriter::open(&path, vec![Field::Name, Field::Seller], refuse()).unwrap();
        let patch = ClientPatch {
            client_id: 7,
            changes: vec![(Field::Name, Value::Text("New".into()))],
        };
        undo.record(
            &account(r#"{"id": 7, "name": "Old, Ltd", "seller": 3}"#),
            &patch,
        )
        .unwrap();
        // The second read is of a value this run set: not the original.
        undo.record(&account(r#"{"id": 7, "name": "New", "seller": 3}"#), &patch)
            .unwrap();
        undo.finish().unwrap();

        let bytes = std::fs::read(&path).unwrap();
        assert!(bytes.starts_with(BOM), "an undo file starts with a BOM");
        let mut reader = csv::Reader::from_reader(&bytes[BOM.len()..]);
        assert_eq!(
            reader.headers().unwrap().iter().collect::<Vec<_>>(),
            ["client_id", "name", "seller", "read_at"]
        );
        let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 1);
        assert_eq!(&rows[0][0], "7");
        assert_eq!(&rows[0][1], "Old, Ltd");
        assert_eq!(
            &rows[0][2], "",
            "seller was not sent: left unchanged by the undo"
        );
    }

    #[test]
    fn a_resumed_run_keeps_the_first_values_it_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("undo.csv");
        let patch = |id| ClientPatch {
            client_id: id,
            changes: vec![(Field::Name, Value::Text("New".into()))],
        };
        let first = UndoWriter::open(&path, vec![Field::Name], refuse()).unwrap();
        first
            .record(&account(r#"{"id": 1, "name": "Orig"}"#), &patch(1))
            .unwrap();
        first.finish().unwrap();
        drop(first);

        let append = Existing::Append {
            other_header: "other columns",
        };
        let again = UndoWriter::open(&path, vec![Field::Name], append).unwrap();
        again
            .record(&account(r#"{"id": 1, "name": "New"}"#), &patch(1))
            .unwrap();
        again
            .record(&account(r#"{"id": 2, "name": "Two"}"#), &patch(2))
            .unwrap();
        again.finish().unwrap();

        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("1,Orig,"), "{text}");
        assert!(!text.contains("1,New,"), "{text}");
        assert!(text.contains("2,Two,"), "{text}");
        assert_eq!(text.matches("client_id").count(), 1, "one header: {text}");
    }

    #[test]
    fn an_undo_file_with_rows_is_never_overwritten_without_resume() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("undo.csv");
        let first = UndoWriter::open(&path, vec![Field::Name], refuse()).unwrap();
        first
            .record(
                &account(r#"{"id": 1, "name": "Orig"}"#),
                &ClientPatch {
                    client_id: 1,
                    changes: vec![(Field::Name, Value::Text("x".into()))],
                },
            )
            .unwrap();
        drop(first);
        let Err(refused) = UndoWriter::open(&path, vec![Field::Name], refuse()) else {
            panic!("an undo file with rows was opened again");
        };
        assert!(refused.to_string().contains("test"), "{refused}");
        assert!(std::fs::read_to_string(&path).unwrap().contains("Orig"));
    }
}
