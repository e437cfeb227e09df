//! The one formatter of results rows: the header, the cells in column
//! order, and the CSV quoting. Rows built by a worker (`RowResult`) and rows
//! the reader finished itself (the packed fast path) both go through
//! [`write_row`], so the columns cannot drift apart.

use std::time::{Duration, UNIX_EPOCH};

use crate::outcome::{Outcome, RowResult, unix_millis};

/// The results header. The first seven columns are the contract's; `request`,
/// `duration_ms`, `diff`, `requested` (the values the input row asked for,
/// which `--resume` compares), `undo_file` (the undo file the run kept),
/// `finished_at` (when the row ended, UTC), `retries` (attempts beyond the
/// first of each request) and `throttled` (the answers of the server's limit
/// refusing the row got: HTTP 429, and any `--throttle-status`)
/// follow.
pub const RESULT_HEADER: [&str; 15] = [
    "line",
    "client_id",
    "outcome",
    "http_status",
    "attempts",
    "account_status",
    "error",
    "request",
    "duration_ms",
    "diff",
    "requested",
    "undo_file",
    "finished_at",
    "retries",
    "throttled",
];

/// The header results files had before `finished_at` and the rest (issue
/// 10): `results` and `report` still read them; `--resume` does not append
/// to them.
pub const RESULT_HEADER_WITHOUT_TIMES: [&str; 12] = [
    "line",
    "client_id",
    "outcome",
    "http_status",
    "attempts",
    "account_status",
    "error",
    "request",
    "duration_ms",
    "diff",
    "requested",
    "undo_file",
];

/// Formats times as RFC 3339 in UTC with milliseconds
/// (`2026-12-01T15:52:07.123Z`). Rows finished in the same millisecond (a
/// dry run finishes thousands in one) reuse the text formatted last.
#[derive(Debug, Default)]
pub struct Stamps {
    millis: Option<u64>,
    text: Vec<u8>,
}

impl Stamps {
    pub fn push(&mut self, out: &mut Vec<u8>, millis: u64) {
        if self.millis != Some(millis) {
            self.text.clear();
            let t = UNIX_EPOCH + Duration::from_millis(millis);
            let _ = std::io::Write::write_fmt(
                &mut self.text,
                format_args!("{}", humantime::format_rfc3339_millis(t)),
            );
            self.millis = Some(millis);
        }
        out.extend_from_slice(&self.text);
    }
}

/// Parses a `finished_at` cell back into milliseconds since the epoch.
pub fn parse_stamp(text: &str) -> Option<u64> {
    humantime::parse_rfc3339(text.trim()).ok().map(unix_millis)
}

/// One results row's cells, borrowed, in column order (the `undo_file`
/// cell is the run's, passed to [`write_row`] already quoted).
pub struct Cells<'a> {
    pub line: u64,
    pub client_id: &'a [u8],
    pub outcome: Outcome,
    pub http_status: Option<u16>,
    pub attempts: u32,
    pub account_status: &'a [u8],
    pub error: &'a [u8],
    pub request: &'a [u8],
    pub duration_ms: u64,
    pub diff: &'a [u8],
    pub requested: &'a [u8],
    pub finished_at: u64,
    pub retries: u32,
    pub throttled: u32,
}

impl<'a> Cells<'a> {
    /// The cells of a row a worker finished.
    pub fn of(row: &'a RowResult) -> Cells<'a> {
        Cells {
            line: row.line,
            client_id: row.client_id.as_bytes(),
            outcome: row.outcome,
            http_status: row.http_status,
            attempts: row.attempts,
            account_status: row.account_status.as_deref().unwrap_or("").as_bytes(),
            error: row.error.as_bytes(),
            request: row.request.as_bytes(),
            duration_ms: row.duration_ms,
            diff: row.diff.as_bytes(),
            requested: row.requested.as_bytes(),
            finished_at: row.finished_at,
            retries: row.retries,
            throttled: row.throttled,
        }
    }

    /// The cells of a row nothing was sent for (invalid, or a dry run): no
    /// status, no attempts, no time spent.
    pub fn unsent(
        line: u64,
        client_id: &'a [u8],
        outcome: Outcome,
        error: &'a [u8],
        request: &'a [u8],
        finished_at: u64,
    ) -> Cells<'a> {
        Cells {
            line,
            client_id,
            outcome,
            http_status: None,
            attempts: 0,
            account_status: b"",
            error,
            request,
            duration_ms: 0,
            diff: b"",
            requested: b"",
            finished_at,
            retries: 0,
            throttled: 0,
        }
    }
}

/// Appends one row as one CSV record, columns as in [`RESULT_HEADER`];
/// `undo_cell` is the run's `undo_file` column, already quoted.
pub fn write_row(out: &mut Vec<u8>, row: &Cells<'_>, undo_cell: &[u8], stamps: &mut Stamps) {
    let mut number = itoa::Buffer::new();
    out.extend_from_slice(number.format(row.line).as_bytes());
    out.push(b',');
    push_field(out, row.client_id);
    out.push(b',');
    out.extend_from_slice(row.outcome.as_str().as_bytes());
    out.push(b',');
    if let Some(status) = row.http_status {
        out.extend_from_slice(number.format(status).as_bytes());
    }
    out.push(b',');
    push_small(out, &mut number, u64::from(row.attempts));
    out.push(b',');
    push_field(out, row.account_status);
    out.push(b',');
    push_field(out, row.error);
    out.push(b',');
    push_field(out, row.request);
    out.push(b',');
    push_small(out, &mut number, row.duration_ms);
    out.push(b',');
    push_field(out, row.diff);
    out.push(b',');
    push_field(out, row.requested);
    out.push(b',');
    out.extend_from_slice(undo_cell);
    out.push(b',');
    stamps.push(out, row.finished_at);
    out.push(b',');
    push_small(out, &mut number, u64::from(row.retries));
    out.push(b',');
    push_small(out, &mut number, u64::from(row.throttled));
    out.push(b'\n');
}

impl RowResult {
    /// Appends the row as one CSV record (see [`write_row`]).
    pub fn write_to(&self, out: &mut Vec<u8>, undo_cell: &[u8], stamps: &mut Stamps) {
        write_row(out, &Cells::of(self), undo_cell, stamps);
    }
}

/// Appends a number that is usually a single digit (attempts, retries,
/// throttled answers, milliseconds of a row nothing was sent for).
fn push_small(out: &mut Vec<u8>, number: &mut itoa::Buffer, n: u64) {
    if n < 10 {
        out.push(b'0' + n as u8);
    } else {
        out.extend_from_slice(number.format(n).as_bytes());
    }
}

/// The `undo_file` cell of a run's rows: the undo file's path, quoted.
pub fn undo_cell(undo_file: Option<&str>) -> Vec<u8> {
    let mut cell = Vec::new();
    if let Some(path) = undo_file {
        push_field(&mut cell, path.as_bytes());
    }
    cell
}

/// Appends one CSV field, quoted (RFC 4180) only when it holds a comma, a
/// quote or a line break. The results writer formats rows itself: with the
/// JSON bodies, quoting is most of its work, and copying the stretches between
/// quotes beats the `csv` crate's byte-by-byte writer several times over. The
/// tests check that the `csv` crate reads every record back as written.
fn push_field(out: &mut Vec<u8>, field: &[u8]) {
    // Most rows leave most cells empty.
    if field.is_empty() {
        return;
    }
    if field.len() <= SHORT_FIELD {
        push_short_field(out, field);
        return;
    }
    let special = memchr::memchr3(b',', b'"', b'\n', field).is_some()
        || memchr::memchr(b'\r', field).is_some();
    if !special {
        out.extend_from_slice(field);
        return;
    }
    out.push(b'"');
    let mut rest = field;
    while let Some(quote) = memchr::memchr(b'"', rest) {
        out.extend_from_slice(&rest[..=quote]);
        out.push(b'"');
        rest = &rest[quote + 1..];
    }
    out.extend_from_slice(rest);
    out.push(b'"');
}

/// Fields up to this long are quoted byte by byte: a row's request body
/// holds several quotes, and a search and a copy per quote cost more.
const SHORT_FIELD: usize = 64;

/// [`push_field`] for a short field.
fn push_short_field(out: &mut Vec<u8>, field: &[u8]) {
    if !field
        .iter()
        .any(|&b| matches!(b, b',' | b'"' | b'\n' | b'\r'))
    {
        out.extend_from_slice(field);
        return;
    }
    out.reserve(2 * field.len() + 2);
    out.push(b'"');
    for &b in field {
        out.push(b);
        if b == b'"' {
            out.push(b'"');
        }
    }
    out.push(b'"');
}
