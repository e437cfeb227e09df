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
            .chain(std::iter::once(crate::input::reader::READ_AT))
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
