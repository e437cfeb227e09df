//! The input CSV: header rules, then one validated row at a time.
//!
//! The reader streams: it holds one record, never the file. Every data row
//! becomes an [`InputRow`], valid or not; only an unusable file or header is an
//! error, and that stops the run before anything is sent.

use std::io::{self, Read};

use csv::ByteRecord;

use crate::error::Fatal;
use crate::fields::{self, ClientPatch, Field};
use crate::input::dialect::{Delimiter, Dialect, SAVE_AS_UTF8};
use crate::input::record_limit::{self, Cut, Limit, Overlong, RecordLimit};
use crate::input::seen::SeenIds;
use crate::input::shard::Shard;

/// Header names accepted for the row key, in the order they are suggested.
pub const KEY_NAMES: [&str; 3] = ["client_id", "clientId", "id"];

/// The column `export` and undo files write to say when each account was
/// read: accepted in an input, and ignored.
pub const READ_AT: &str = "read_at";

/// The largest cell a row may hold; anything longer makes the row invalid.
pub const MAX_CELL_BYTES: usize = 64 * 1024;

/// The longest record read whole. A valid row has at most 9 cells (the key
/// and 8 fields) of 64 KiB, at most 1.2 MiB written out with every byte a
/// doubled quote; a longer record is invalid without being held.
pub const MAX_RECORD_BYTES: u64 = 2 << 20;

/// The most columns a header may have: a valid one has at most 9.
pub const MAX_HEADER_COLUMNS: usize = 1000;

/// Header problems list at most this many columns, then how many more.
const COLUMNS_LISTED: usize = 10;

/// One data row of the input, valid or not.
#[derive(Debug, Clone)]
pub struct InputRow {
    /// The line where the row starts (the header is line 1).
    pub line: u64,
    /// The key cell as read, trimmed (lossily decoded when not UTF-8).
    pub key: String,
    /// The change it asks for, or what is wrong with it.
    pub patch: Result<ClientPatch, String>,
}

/// The input header: where the key is and which field each other column sets.
#[derive(Debug, Clone)]
pub struct Header {
    key: usize,
    /// One entry per column; `None` for the key column.
    columns: Vec<Option<Field>>,
    /// Column names as written, for messages.
    names: Vec<String>,
}

impl Header {
    pub fn parse(record: &ByteRecord) -> Result<Header, Fatal> {
        if record.len() > MAX_HEADER_COLUMNS {
            return Err(too_many_columns(&format!(
                "{}, more than {MAX_HEADER_COLUMNS},",
                record.len()
            )));
        }
        if record.iter().any(|cell| cell.contains(&0)) {
            return Err(crate::input::dialect::refuse_nul_header());
        }
        let mut names = Vec::with_capacity(record.len());
        for cell in record.iter() {
            match std::str::from_utf8(cell) {
                Ok(text) => names.push(text.trim().to_string()),
                Err(_) => {
                    return Err(Fatal::Input(format!(
                        "the header row is not valid UTF-8 text: {SAVE_AS_UTF8}"
                    )));
                }
            }
        }

        let mut key = None;
        let mut columns = Vec::with_capacity(names.len());
        let mut unknown = Vec::new();
        for (i, name) in names.iter().enumerate() {
            if name.eq_ignore_ascii_case(READ_AT) {
                columns.push(None);
                continue;
            }
            if KEY_NAMES.iter().any(|k| k.eq_ignore_ascii_case(name)) {
                if let Some(first) = key {
                    return Err(Fatal::Input(format!(
                        "the header has two key columns: `{}` (column {}) and `{name}` \
                         (column {}); keep one. Accepted columns: {}",
                        names[first],
                        first + 1,
                        i + 1,
                        accepted_columns()
                    )));
                }
                key = Some(i);
                columns.push(None);
                continue;
            }
            match Field::from_header(name) {
                Some(field) => {
                    if let Some(first) = columns.iter().position(|c| *c == Some(field)) {
                        return Err(Fatal::Input(format!(
                            "the header names `{}` twice (columns {} and {}); keep one. \
                             Accepted columns: {}",
                            field.api_name(),
                            first + 1,
                            i + 1,
                            accepted_columns()
                        )));
                    }
                    columns.push(Some(field));
                }
                None => {
                    unknown.push((i, name.clone()));
                    columns.push(None);
                }
            }
        }

        if !unknown.is_empty() {
            let mut listed: Vec<String> = unknown
                .iter()
                .take(COLUMNS_LISTED)
                .map(|(i, name)| {
                    let shown = if name.is_empty() {
                        "an empty column name".to_string()
                    } else {
                        fields::quote(name)
                    };
                    match suggest(name) {
                        Some(s) => format!("{shown} (column {}; did you mean `{s}`?)", i + 1),
                        None => format!("{shown} (column {})", i + 1),
                    }
                })
                .collect();
            if unknown.len() > COLUMNS_LISTED {
                listed.push(format!("and {} more", unknown.len() - COLUMNS_LISTED));
            }
            return Err(Fatal::Input(format!(
                "unknown column{} in the header: {}; accepted columns: {}: rename or remove {}",
                if unknown.len() > 1 { "s" } else { "" },
                listed.join(", "),
                accepted_columns(),
                if unknown.len() > 1 { "them" } else { "it" }
            )));
        }
        let Some(key) = key else {
            return Err(Fatal::Input(format!(
                "the header has no key column: name one column client_id (or clientId, id); \
                 found: {}. Accepted columns: {}",
                names
                    .iter()
                    .take(COLUMNS_LISTED)
                    .map(|n| fields::quote(n))
                    .collect::<Vec<_>>()
                    .join(", "),
                accepted_columns()
            )));
        };
        Ok(Header {
            key,
            columns,
            names,
        })
    }

    /// The patch fields this input sets, in column order.
    pub fn fields(&self) -> Vec<Field> {
        self.columns.iter().flatten().copied().collect()
    }

    fn width(&self) -> usize {
        self.columns.len()
    }
}

/// Cell `i` of `record` as text. `whole` is the record as text when it all
/// is (then only the cell's ends need checking), else each cell is checked.
fn cell_text<'a>(
    whole: Option<&'a str>,
    record: &'a ByteRecord,
    i: usize,
) -> Result<&'a str, std::str::Utf8Error> {
    match whole
        .zip(record.range(i))
        .and_then(|(whole, range)| whole.get(range))
    {
        Some(text) => Ok(text),
        None => std::str::from_utf8(record.get(i).unwrap_or_default()),
    }
}

/// Trims a cell: `str::trim`, with a shortcut for the usual cell that starts
/// and ends with a visible ASCII character.
fn trim(cell: &str) -> &str {
    match (cell.as_bytes().first(), cell.as_bytes().last()) {
        (Some(&first), Some(&last)) if first.is_ascii_graphic() && last.is_ascii_graphic() => cell,
        _ => cell.trim(),
    }
}

/// Every accepted column name, for error messages and `--help`.
pub fn accepted_columns() -> String {
    format!("client_id (or clientId, id), {}", patch_columns())
}

fn patch_columns() -> String {
    Field::ALL.map(Field::api_name).join(", ")
}

/// The accepted name closest to a mistyped one, when it is close.
pub fn suggest(name: &str) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    KEY_NAMES
        .into_iter()
        .chain(Field::ALL.map(Field::api_name))
        .map(|candidate| {
            (
                edit_distance(&lower, &candidate.to_ascii_lowercase()),
                candidate,
            )
        })
        .filter(|(d, _)| *d <= 2 && *d < lower.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Options that decide which rows are read and how cells parse.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    pub null_token: String,
    pub shard: Option<Shard>,
    /// Read at most this many rows (after sharding).
    pub limit: Option<u64>,
    /// The field delimiter (see `dialect`).
    pub delimiter: Delimiter,
}

/// Streams validated rows out of a CSV source.
pub struct RowReader<R: Read> {
    csv: csv::Reader<CsvBytes<RecordLimit<R>>>,
    header: Header,
    options: ReadOptions,
    /// First line on which each client id appeared.
    seen: SeenIds,
    record: ByteRecord,
    selected: u64,
}

impl<R: Read> RowReader<R> {
    /// Reads and checks the header. Fails for an empty file, a binary file, or a
    /// header the contract refuses.
    pub fn new(source: R, options: ReadOptions) -> Result<RowReader<R>, Fatal> {
        let mut csv = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .buffer_capacity(64 * 1024)
            .delimiter(options.delimiter.0)
            .from_reader(CsvBytes::with_delimiter(
                limited(source, options.delimiter.0),
                options.delimiter.0,
            ));
        let mut record = ByteRecord::new();
        let has_header = csv.read_byte_record(&mut record).map_err(header_error)?;
        if !has_header {
            return Err(Fatal::Input(
                "the input is empty: it needs a header row such as `client_id,reseller` \
                 and one row per account"
                    .into(),
            ));
        }
        let header = Header::parse(&record)?;
        Ok(RowReader {
            csv,
            header,
            options,
            seen: SeenIds::default(),
            record,
            selected: 0,
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The next row, or `None` at the end (or once `limit` rows were read).
    pub fn next_row(&mut self) -> Option<io::Result<InputRow>> {
        loop {
            if self
                .options
                .limit
                .is_some_and(|limit| self.selected >= limit)
            {
                return None;
            }
            match self.csv.read_byte_record(&mut self.record) {
                Ok(false) => return None,
                Ok(true) => {}
                Err(e) => return Some(Err(csv_to_io(e))),
            }
            // The record is checked as UTF-8 once, whole: a cell is then
            // text when its ends fall between characters.
            let whole = std::str::from_utf8(self.record.as_slice()).ok();
            let key = match self.record.get(self.header.key) {
                Some(cell) => match cell_text(whole, &self.record, self.header.key) {
                    Ok(text) => trim(text).to_string(),
                    Err(_) => String::from_utf8_lossy(cell).trim().to_string(),
                },
                None => String::new(),
            };
            if let Some(shard) = &self.options.shard
                && !shard.selects(&key)
            {
                continue;
            }
            self.selected += 1;
            let cut = self.csv.get_mut().get_mut().take_cut();
            let line = self.start_line(cut);
            let unterminated = self.csv.get_ref().ended_inside_quotes();
            let patch = validate(
                Record {
                    cells: &self.record,
                    whole,
                    line,
                    key: &key,
                    unterminated,
                    cut: cut.map(|c| c.over),
                },
                &self.header,
                &mut self.seen,
                &self.options.null_token,
            );
            return Some(Ok(InputRow { line, key, patch }));
        }
    }

    /// The line where the record just read starts. The `csv` crate's own
    /// record position counts blank lines skipped before a record as part of
    /// it; this counts back from where the record ended instead: past its
    /// line end (unless the input ended there) and the line breaks in its cells.
    /// A record cut short (`cut`) spans the lines the parser never saw too.
    fn start_line(&self, cut: Option<Cut>) -> u64 {
        let limit = self.csv.get_ref().get_ref();
        let after = self.csv.position().line() + limit.dropped_lines();
        let inside = memchr::memchr_iter(b'\n', self.record.as_slice()).count() as u64
            + cut.map_or(0, |c| c.dropped_lines);
        let ended_by_line_end = u64::from(!self.csv.get_ref().at_end());
        after.saturating_sub(inside + ended_by_line_end).max(2)
    }
}

/// One record as read, for [`validate`].
struct Record<'a> {
    cells: &'a ByteRecord,
    /// The whole record as text, when it all is.
    whole: Option<&'a str>,
    line: u64,
    key: &'a str,
    unterminated: bool,
    /// Over [`MAX_RECORD_BYTES`] or [`MAX_HEADER_COLUMNS`] fields: only its
    /// start was read.
    cut: Option<Limit>,
}

/// The contract's row rules: the change a record asks for, or what is wrong
/// with it.
fn validate(
    row: Record<'_>,
    header: &Header,
    seen: &mut SeenIds,
    null_token: &str,
) -> Result<ClientPatch, String> {
    let Record {
        cells: record,
        whole,
        line,
        key,
        unterminated,
        cut,
    } = row;
    if let Some(over) = cut {
        return Err(format!(
            "the row is {over} (a valid row has at most 9 cells of up to 64 KiB): it was not \
             read whole; check this line of the input"
        ));
    }
    if unterminated {
        return Err("a quoted field opened on this row is never closed (unterminated `\"`)".into());
    }
    if record.len() != header.width() {
        return Err(format!(
            "the row has {} field{}, the header has {}",
            record.len(),
            if record.len() == 1 { "" } else { "s" },
            header.width()
        ));
    }
    for (i, cell) in record.iter().enumerate() {
        if cell.len() > MAX_CELL_BYTES {
            return Err(format!(
                "column `{}`: the cell is {} bytes, more than the 64 KiB limit",
                header.names[i],
                cell.len()
            ));
        }
    }
    // One pass: check each cell is UTF-8 and parse it; the key is parsed
    // last, so that a row that is not text never counts as the id's first.
    let mut changes = Vec::with_capacity(header.width());
    let mut field_problems = Vec::new();
    for (i, column) in header.columns.iter().enumerate() {
        let text = match cell_text(whole, record, i) {
            Ok(text) => trim(text),
            Err(e) => {
                return Err(format!(
                    "column `{}` is not valid UTF-8 (bad byte at offset {} of the cell): \
                     {SAVE_AS_UTF8}",
                    header.names[i],
                    e.valid_up_to()
                ));
            }
        };
        let Some(field) = column else { continue };
        if text.is_empty() {
            continue;
        }
        match fields::parse_cell(*field, text, null_token) {
            Ok(value) => changes.push((*field, value)),
            Err(e) => field_problems.push(e),
        }
    }

    let mut problems = Vec::new();
    let client_id = match fields::parse_client_id(key) {
        Ok(id) => {
            if let Some(first) = seen.first_seen(id, line) {
                problems.push(format!("client_id {id} already appeared on line {first}"));
            }
            Some(id)
        }
        Err(e) => {
            problems.push(e);
            None
        }
    };
    problems.extend(field_problems);
    if problems.is_empty() && changes.is_empty() {
        problems.push(if header.fields().is_empty() {
            format!(
                "the row sets no field: the header has no column to change (add one of {})",
                patch_columns()
            )
        } else {
            "the row sets no field: every cell but client_id is empty".into()
        });
    }
    match (client_id, problems.is_empty()) {
        (Some(client_id), true) => Ok(ClientPatch { client_id, changes }),
        _ => Err(problems.join("; ")),
    }
}

impl<R: Read> Iterator for RowReader<R> {
    type Item = io::Result<InputRow>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_row()
    }
}

/// The input's bytes, never more than [`MAX_RECORD_BYTES`] of one record:
/// an over-long header is refused, an over-long row cut short.
fn limited<R: Read>(source: R, delimiter: u8) -> RecordLimit<R> {
    RecordLimit::new(source, MAX_RECORD_BYTES, MAX_HEADER_COLUMNS as u64)
        .delimiter(delimiter)
        .cut_rows()
}

/// Why the header row could not be read.
fn header_error(e: csv::Error) -> Fatal {
    match Overlong::in_csv_error(&e).map(|o| o.over) {
        Some(Limit::Bytes(max)) => Fatal::Input(format!(
            "the header is longer than {}: this is not an input file, whose first line names \
             its columns, such as `client_id,reseller`; check the file name",
            record_limit::size(max)
        )),
        Some(Limit::Fields(max)) => too_many_columns(&format!("more than {max}")),
        None => Fatal::Input(format!("cannot read the input: {e}")),
    }
}

fn too_many_columns(count: &str) -> Fatal {
    Fatal::Input(format!(
        "the header has {count} columns: an input has at most 9 (client_id and the patch \
         columns); check that this is the input file, comma-separated"
    ))
}

fn csv_to_io(e: csv::Error) -> io::Error {
    match e.into_kind() {
        csv::ErrorKind::Io(e) => e,
        other => io::Error::other(format!("{other:?}")),
    }
}

/// The bytes of a CSV source on their way to the parser. It strips a UTF-8
/// byte-order mark, turns CRLF and lone CR line ends into LF (the `csv` crate
/// ends records at either but counts lines only at LF, and `line` in the
/// results must be exact), and follows RFC 4180 quoting alongside the parser,
/// so that a quoted field still open at the end of the input can be reported
/// (the `csv` crate silently closes it). It works in the caller's buffer:
/// input without CRs is neither copied nor moved.
pub struct CsvBytes<R> {
    inner: R,
    started: bool,
    /// The last chunk ended with `\r`: a line end, emitted with the next chunk
    /// (which may begin with the `\n` of a CRLF).
    held_cr: bool,
    /// Bytes produced for a caller's buffer too small to take them.
    spill: Vec<u8>,
    state: QuoteState,
    at_eof: bool,
    delimiter: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QuoteState {
    FieldStart,
    Unquoted,
    Quoted,
    /// A quote inside a quoted field: either the close or the first of `""`.
    QuoteInQuoted,
}

const BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];

impl<R: Read> CsvBytes<R> {
    pub fn new(inner: R) -> CsvBytes<R> {
        CsvBytes::with_delimiter(inner, b',')
    }

    /// For fields separated by `delimiter` (`;` or a tab) instead of commas.
    pub fn with_delimiter(inner: R, delimiter: u8) -> CsvBytes<R> {
        CsvBytes {
            inner,
            started: false,
            held_cr: false,
            spill: Vec::new(),
            state: QuoteState::FieldStart,
            at_eof: false,
            delimiter,
        }
    }

    /// True once the source has ended inside a quoted field.
    pub fn ended_inside_quotes(&self) -> bool {
        self.at_eof && self.state == QuoteState::Quoted
    }

    /// True once the source has ended.
    pub fn at_end(&self) -> bool {
        self.at_eof
    }

    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    fn read_inner(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.inner.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }

    /// The first read: at least three bytes (or the whole input) so that a
    /// byte-order mark split over reads is still recognised.
    fn read_start(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.started = true;
        let mut n = 0;
        while n < BOM.len() {
            match self.read_inner(&mut buf[n..])? {
                0 => return Ok(n), // too short for a mark
                got => n += got,
            }
        }
        if !buf[..n].starts_with(&BOM) {
            return Ok(n);
        }
        buf.copy_within(BOM.len()..n, 0);
        match n - BOM.len() {
            0 => self.read_inner(buf),
            rest => Ok(rest),
        }
    }

    /// Turns CRLF and lone CR into LF within `buf[from..end]`, writing from
    /// `to`; returns where the output ends. A CR at the very end is held.
    fn normalize(&mut self, buf: &mut [u8], mut from: usize, end: usize, mut to: usize) -> usize {
        while let Some(offset) = memchr::memchr(b'\r', &buf[from..end]) {
            let cr = from + offset;
            if to != from {
                buf.copy_within(from..cr, to);
            }
            to += cr - from;
            if cr + 1 == end {
                self.held_cr = true;
                return to;
            }
            buf[to] = b'\n';
            to += 1;
            from = if buf[cr + 1] == b'\n' { cr + 2 } else { cr + 1 };
        }
        if to != from {
            buf.copy_within(from..end, to);
        }
        to + (end - from)
    }

    /// Follows the quoting state across `bytes`, skipping from one byte that
    /// matters to the next.
    fn track(&mut self, bytes: &[u8]) {
        let mut i = 0;
        let mut state = self.state;
        while i < bytes.len() {
            match state {
                QuoteState::Quoted => match memchr::memchr(b'"', &bytes[i..]) {
                    Some(q) => {
                        state = QuoteState::QuoteInQuoted;
                        i += q + 1;
                    }
                    None => break,
                },
                QuoteState::Unquoted => match memchr::memchr2(self.delimiter, b'\n', &bytes[i..]) {
                    Some(sep) => {
                        state = QuoteState::FieldStart;
                        i += sep + 1;
                    }
                    None => break,
                },
                QuoteState::FieldStart | QuoteState::QuoteInQuoted => {
                    state = match (state, bytes[i]) {
                        (QuoteState::QuoteInQuoted, b'"') => QuoteState::Quoted,
                        (_, b'\n') => QuoteState::FieldStart,
                        (_, b) if b == self.delimiter => QuoteState::FieldStart,
                        (QuoteState::FieldStart, b'"') => QuoteState::Quoted,
                        _ => QuoteState::Unquoted,
                    };
                    i += 1;
                }
            }
        }
        self.state = state;
    }
}

impl<R: Read> Read for CsvBytes<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if !self.spill.is_empty() {
            let n = buf.len().min(self.spill.len());
            buf[..n].copy_from_slice(&self.spill[..n]);
            self.spill.drain(..n);
            return Ok(n);
        }
        if buf.len() < 8 {
            // Too small to work in: go through a scratch buffer.
            let mut scratch = [0u8; 64];
            let n = self.read(&mut scratch)?;
            let fits = n.min(buf.len());
            buf[..fits].copy_from_slice(&scratch[..fits]);
            self.spill.extend_from_slice(&scratch[fits..n]);
            return Ok(fits);
        }
        loop {
            // A held CR becomes the line end at the front of this chunk.
            let front = usize::from(self.held_cr);
            let n = if self.started {
                self.read_inner(&mut buf[front..])?
            } else {
                self.read_start(buf)?
            };
            let out = if n == 0 {
                // A CR held at the very end is the last line end: handed on
                // now, and the end is noted at the next read, so that the
                // record it closed counts as ended by a line end.
                if std::mem::take(&mut self.held_cr) {
                    buf[0] = b'\n';
                    1
                } else {
                    self.at_eof = true;
                    return Ok(0);
                }
            } else {
                let mut from = front;
                if std::mem::take(&mut self.held_cr) {
                    buf[0] = b'\n';
                    if buf[1] == b'\n' {
                        from += 1; // the LF of a CRLF split between chunks
                    }
                }
                self.normalize(buf, from, front + n, front)
            };
            if out > 0 {
                self.track(&buf[..out]);
                return Ok(out);
            }
            // Only a held CR so far: read on.
        }
    }
}

/// Where the input comes from: a file, or standard input (`-`), which
/// `--resume` first copies to a temporary file so it can be read twice.
pub struct InputSource {
    /// The path named, unless it was `-`.
    path: Option<std::path::PathBuf>,
    /// The path is a regular file: it can be read again, and reading it
    /// never waits on a writer (unlike a pipe, a FIFO or standard input).
    regular: bool,
    spool: Option<tempfile::TempPath>,
    label: String,
    /// How the input is written: set by [`InputSource::detect`].
    dialect: Dialect,
    /// An input that cannot be read twice (standard input, a FIFO), as
    /// [`InputSource::detect`] left it: its first bytes, then the rest.
    pending: std::sync::Mutex<Option<Box<dyn Read + Send>>>,
}

impl InputSource {
    pub fn new(arg: &std::path::Path) -> InputSource {
        if arg.as_os_str() == "-" {
            return InputSource {
                path: None,
                regular: false,
                spool: None,
                label: "-".into(),
                dialect: Dialect::default(),
                pending: Default::default(),
            };
        }
        InputSource {
            path: Some(arg.to_path_buf()),
            regular: std::fs::metadata(arg).is_ok_and(|m| m.is_file()),
            spool: None,
            label: arg.display().to_string(),
            dialect: Dialect::default(),
            pending: Default::default(),
        }
    }

    /// Detects the input's encoding and delimiter (see `dialect`) from its
    /// first line, and for a file that can be read twice, whether all of it
    /// is UTF-8. Every later [`InputSource::open`] decodes it to UTF-8.
    pub fn detect(&mut self, delimiter: Option<Delimiter>) -> Result<Dialect, Fatal> {
        let fail = |e: io::Error| Fatal::Input(format!("cannot read {}: {e}", self.label));
        let mut raw = self.open_raw()?;
        let head = crate::input::dialect::read_head(&mut raw).map_err(fail)?;
        let has_bom = [&b"\xef\xbb\xbf"[..], b"\xff\xfe", b"\xfe\xff"]
            .iter()
            .any(|bom| head.starts_with(bom));
        let whole = if self.rereadable() && !has_bom {
            Some(
                crate::input::dialect::scan_utf8(io::Cursor::new(&head).chain(raw))
                    .map_err(fail)?,
            )
        } else {
            if !self.rereadable() {
                let rest: Box<dyn Read + Send> = Box::new(io::Cursor::new(head.clone()).chain(raw));
                *self.pending.lock().unwrap_or_else(|e| e.into_inner()) = Some(rest);
            }
            None
        };
        self.dialect = crate::input::dialect::detect(&head, whole, delimiter);
        Ok(self.dialect)
    }

    /// The input as the user named it (`-` for standard input).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Whether the input can be read more than once. A pipe cannot: a second
    /// reader would take rows away from the first.
    pub fn rereadable(&self) -> bool {
        self.regular || self.spool.is_some()
    }

    /// Whether a read may wait for a writer (a pipe, standard input).
    pub fn may_block(&self) -> bool {
        !self.rereadable()
    }

    /// Copies an input that cannot be read twice (standard input, a pipe)
    /// to a temporary file, which is read from then on.
    pub fn spool(&mut self) -> Result<(), Fatal> {
        if self.rereadable() {
            return Ok(());
        }
        let fail = |e: io::Error| {
            Fatal::Input(format!(
                "cannot copy {} aside into the temporary directory: {e}; check the room there \
                 (TMPDIR names another)",
                self.label
            ))
        };
        let mut source = self.open_raw()?;
        let mut temp = tempfile::NamedTempFile::new().map_err(fail)?;
        io::copy(&mut source, &mut temp).map_err(fail)?;
        self.spool = Some(temp.into_temp_path());
        Ok(())
    }

    /// The input, decoded to UTF-8 as [`InputSource::detect`] found it written.
    pub fn open(&self) -> Result<Box<dyn Read + Send>, Fatal> {
        Ok(self.dialect.decode(self.open_raw()?))
    }

    /// The input's bytes as they are.
    fn open_raw(&self) -> Result<Box<dyn Read + Send>, Fatal> {
        if let Some(pending) = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            return Ok(pending);
        }
        let path = self.spool.as_deref().or(self.path.as_deref());
        match path {
            None => Ok(Box::new(io::stdin())),
            Some(path) => match std::fs::File::open(path) {
                Ok(file) if file.metadata().is_ok_and(|m| m.is_dir()) => {
                    Err(Fatal::Input(format!(
                        "{} is a directory, not a CSV file; name the file",
                        self.label
                    )))
                }
                Ok(file) => Ok(Box::new(file)),
                Err(e) => Err(Fatal::Input(format!(
                    "cannot open {}: {e}; check the path",
                    self.label
                ))),
            },
        }
    }
}

/// Counts the data rows a run over `source` will read (after `--shard` and
/// `--limit`), without validating them: for progress and confirmation.
pub fn count_rows(source: impl Read, options: &ReadOptions) -> Result<u64, Fatal> {
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .buffer_capacity(256 * 1024)
        .delimiter(options.delimiter.0)
        .from_reader(CsvBytes::with_delimiter(
            limited(source, options.delimiter.0),
            options.delimiter.0,
        ));
    let mut record = ByteRecord::new();
    let read_err = |e: csv::Error| Fatal::Input(format!("cannot read the input: {e}"));
    if !csv.read_byte_record(&mut record).map_err(header_error)? {
        return Ok(0);
    }
    let key = Header::parse(&record)?.key;
    let mut count = 0;
    while csv.read_byte_record(&mut record).map_err(read_err)? {
        if let Some(shard) = &options.shard {
            let cell = record.get(key).unwrap_or_default();
            if !shard.selects(String::from_utf8_lossy(cell).trim()) {
                continue;
            }
        }
        count += 1;
        if options.limit.is_some_and(|limit| count >= limit) {
            break;
        }
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fields::Value;

    fn reader(text: &[u8]) -> Result<RowReader<&[u8]>, Fatal> {
        RowReader::new(
            text,
            ReadOptions {
                null_token: "null".into(),
                ..ReadOptions::default()
            },
        )
    }

    fn rows(text: &[u8]) -> Vec<InputRow> {
        reader(text).unwrap().map(|r| r.unwrap()).collect()
    }

    fn header_error(text: &[u8]) -> String {
        match reader(text) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("header accepted"),
        }
    }

    #[test]
    fn header_rules() {
        assert!(header_error(b"").contains("empty"));
        assert!(header_error(b"email,name\n").contains("no key column"));
        assert!(header_error(b"id,email,EMAIL\n").contains("`email` twice (columns 2 and 3)"));
        assert!(header_error(b"id,client_id,email\n").contains("two key columns"));
        let e = header_error(b"client_id,emial,colour\n");
        assert!(
            e.contains("`emial` (column 2; did you mean `email`?)"),
            "{e}"
        );
        assert!(e.contains("`colour` (column 3)"), "{e}");
        assert!(e.contains("accepted columns: client_id"), "{e}");
        assert!(header_error(b"client_id,email,\n").contains("an empty column name"));
        assert!(header_error(b"id,email,EMAIL\n").contains("Accepted columns: client_id"));
        assert!(header_error(b"name\n").contains("Accepted columns: client_id"));
        // A header with only the key is accepted; its rows set nothing.
        let only_key = rows(b"client_id\n1\n");
        assert!(
            only_key[0]
                .patch
                .as_ref()
                .unwrap_err()
                .contains("no column to change")
        );
        assert!(header_error(b"\x00\x01\x02,\x03\n").contains("binary"));
        assert!(header_error(b"client_id,\xff\xfe\n").contains("not valid UTF-8"));
        let ok = reader(b" ClientId , Reseller ,IS_TEST\n").unwrap();
        assert_eq!(ok.header().fields(), vec![Field::Reseller, Field::IsTest]);
        // An export's or undo file's read_at is read over.
        let export = rows(b"client_id,seller,read_at\n7,80,2026-11-30T01:33:20.007Z\n");
        assert_eq!(
            export[0].patch.as_ref().unwrap().changes,
            vec![(Field::Seller, Value::Number(80))]
        );
    }

    #[test]
    fn bom_crlf_and_quoting() {
        let text =
            "\u{feff}client_id,name,companyName\r\n1,\"Doe, \"\"J\"\"\",Zürich AG\r\n".as_bytes();
        let rows = rows(text);
        assert_eq!(rows.len(), 1);
        let patch = rows[0].patch.as_ref().unwrap();
        assert_eq!(
            patch.changes,
            vec![
                (Field::Name, Value::Text("Doe, \"J\"".into())),
                (Field::CompanyName, Value::Text("Zürich AG".into())),
            ]
        );
        assert_eq!(rows[0].line, 2);
    }

    #[test]
    fn csv_bytes_normalizes_across_reads() {
        /// Hands out its bytes a few at a time, as a pipe might.
        struct Trickle(Vec<u8>, usize);
        impl Read for Trickle {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = self.1.min(buf.len()).min(self.0.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0.drain(..n);
                Ok(n)
            }
        }
        let text = b"\xEF\xBB\xBFa,b\r\n1,\"x\r\ny\"\r\n2,z\rw\r";
        for step in 1..6 {
            let mut out = Vec::new();
            CsvBytes::new(Trickle(text.to_vec(), step))
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(out, b"a,b\n1,\"x\ny\"\n2,z\nw\n", "step {step}");
        }
    }

    #[test]
    fn crlf_line_numbers_are_exact() {
        let rows = rows(b"id,name\r\n1,a\r\n2,\"b\r\nc\"\r\n3,d\r\n");
        assert_eq!(
            rows.iter().map(|r| r.line).collect::<Vec<_>>(),
            vec![2, 3, 5]
        );
    }

    #[test]
    fn blank_lines_do_not_shift_line_numbers() {
        let rows = rows(b"client_id,name\n1,a\n\n\n\n2,b\n\n3,\"c\n\nd\"\n\n4,e");
        let lines: Vec<u64> = rows.iter().map(|r| r.line).collect();
        assert_eq!(lines, vec![2, 6, 8, 12]);
        let lone_cr = super::tests::rows(b"client_id,name\r1,a\r2,\"b\rc\"\r");
        assert_eq!(
            lone_cr.iter().map(|r| r.line).collect::<Vec<_>>(),
            vec![2, 3]
        );
        let rows = super::tests::rows(b"client_id,name\r\n\r\n1,a\r\n\r\n1,b\r\n");
        assert_eq!(rows[1].line, 5);
        assert_eq!(
            rows[1].patch.as_ref().unwrap_err(),
            "client_id 1 already appeared on line 3"
        );
    }

    #[test]
    fn line_numbers_follow_multiline_cells() {
        let rows = rows(b"id,name\n1,\"two\nlines\"\n2,x\n");
        assert_eq!(rows[0].line, 2);
        assert_eq!(rows[1].line, 4);
    }

    #[test]
    fn invalid_rows_say_why() {
        let text = b"client_id,email,seller,is_test\n\
            1,a@b.co,,\n\
            2,,,\n\
            1,c@d.co,,\n\
            x,bad,,maybe\n\
            3,a@b.co\n\
            4,,null,\n\
            5,,,\xff\n";
        let rows = rows(text);
        let errors: Vec<_> = rows
            .iter()
            .map(|r| r.patch.as_ref().err().cloned())
            .collect();
        assert_eq!(errors[0], None);
        assert!(errors[1].as_ref().unwrap().contains("sets no field"));
        assert_eq!(
            errors[2].as_deref(),
            Some("client_id 1 already appeared on line 2")
        );
        let e = errors[3].as_ref().unwrap();
        assert!(
            e.contains("client_id: `x`") && e.contains("email: `bad`") && e.contains("is_test"),
            "{e}"
        );
        assert!(
            errors[4]
                .as_ref()
                .unwrap()
                .contains("has 2 fields, the header has 4")
        );
        assert_eq!(errors[5], None);
        assert!(
            errors[6]
                .as_ref()
                .unwrap()
                .contains("`is_test` is not valid UTF-8")
        );
        assert_eq!(rows[3].key, "x");
    }

    #[test]
    fn unterminated_quote_at_the_end_is_invalid() {
        let rows = rows(b"client_id,name\n1,ok\n2,\"never closed\n3,x\n");
        assert!(rows[0].patch.is_ok());
        assert_eq!(rows.len(), 2);
        assert!(rows[1].patch.as_ref().unwrap_err().contains("never closed"));
        let closed = super::tests::rows(b"client_id,name\n2,\"closed \"\"q\"\"\"");
        assert!(closed[0].patch.is_ok());
    }

    #[test]
    fn oversized_cell_is_invalid() {
        let mut text = b"client_id,name\n1,".to_vec();
        text.extend(std::iter::repeat_n(b'a', MAX_CELL_BYTES + 1));
        text.extend(b"\n2,fine\n");
        let rows = rows(&text);
        assert!(rows[0].patch.as_ref().unwrap_err().contains("64 KiB"));
        assert!(rows[1].patch.is_ok());
    }

    #[test]
    fn overlong_headers_and_rows() {
        let wide = format!("client_id{}\n1\n", ",x".repeat(MAX_HEADER_COLUMNS));
        assert!(header_error(wide.as_bytes()).contains("more than 1000"));
        let unknown = format!(
            "client_id,{}\n",
            (0..30)
                .map(|i| format!("c{i}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        let e = header_error(unknown.as_bytes());
        assert!(
            e.contains("`c9` (column 11)") && e.contains("and 20 more"),
            "{e}"
        );
        assert!(!e.contains("`c10`"), "{e}");
        let mut long_header = b"client_id,".to_vec();
        long_header.extend(std::iter::repeat_n(b'n', MAX_RECORD_BYTES as usize));
        assert!(header_error(&long_header).contains("longer than 2 MiB"));

        let mut text = b"client_id,name\n1,\"".to_vec();
        for _ in 0..(MAX_RECORD_BYTES / 4) {
            text.extend(b"ab\r\n");
        }
        text.extend(b"\"\n2,b\n");
        let rows = rows(&text);
        assert_eq!(rows.len(), 2);
        assert!(
            rows[0]
                .patch
                .as_ref()
                .unwrap_err()
                .contains("longer than 2 MiB")
        );
        assert_eq!(rows[1].line, 2 + MAX_RECORD_BYTES / 4 + 1);
        assert!(rows[1].patch.is_ok());
    }

    #[test]
    fn limit_and_shard_select_rows() {
        let text = b"client_id,name\n1,a\n2,b\n3,c\n4,d\n";
        let mut r = RowReader::new(
            &text[..],
            ReadOptions {
                null_token: "null".into(),
                limit: Some(2),
                ..ReadOptions::default()
            },
        )
        .unwrap();
        assert_eq!(r.next_row().unwrap().unwrap().key, "1");
        assert_eq!(r.next_row().unwrap().unwrap().key, "2");
        assert!(r.next_row().is_none());
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn options() -> ReadOptions {
            ReadOptions {
                null_token: "null".into(),
                ..ReadOptions::default()
            }
        }

        /// Reads everything; rows must come in increasing line order.
        fn drain(bytes: &[u8]) -> Result<(), TestCaseError> {
            if let Ok(reader) = RowReader::new(bytes, options()) {
                let mut last = 1;
                for row in reader {
                    let row = row.map_err(|e| TestCaseError::fail(e.to_string()))?;
                    prop_assert!(row.line > last, "line {} after {}", row.line, last);
                    last = row.line;
                }
            }
            Ok(())
        }

        /// Cells that stress the parser and the validator.
        fn tricky_cell() -> impl Strategy<Value = Vec<u8>> {
            prop_oneof![
                Just(b"".to_vec()),
                Just(b"null".to_vec()),
                Just(b"\"".to_vec()),
                Just(b"\"\"".to_vec()),
                Just(b"\"a,b\"".to_vec()),
                Just(b"\r\n".to_vec()),
                Just(b"\xef\xbb\xbf".to_vec()),
                Just(b"\xff\xfe".to_vec()),
                Just(b"x@y.z".to_vec()),
                Just(b"18446744073709551616".to_vec()),
                "[0-9]{1,4}".prop_map(String::into_bytes),
                proptest::collection::vec(any::<u8>(), 0..16),
            ]
        }

        proptest! {
            #[test]
            fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
                drain(&bytes)?;
            }

            #[test]
            fn arbitrary_rows_under_a_good_header(body in proptest::collection::vec(any::<u8>(), 0..2048)) {
                let mut bytes = b"client_id,email,reseller,seller,is_test,name,phone\n".to_vec();
                bytes.extend(body);
                drain(&bytes)?;
            }

            #[test]
            fn csv_shaped_input_never_panics(
                rows in proptest::collection::vec(
                    proptest::collection::vec(tricky_cell(), 0..9), 0..20),
                crlf in any::<bool>(),
            ) {
                let mut bytes = b"client_id,email,reseller,seller,is_test,name,phone".to_vec();
                for row in rows {
                    bytes.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
                    bytes.extend(row.join(&b',').iter());
                }
                drain(&bytes)?;
            }
        }
    }
}
