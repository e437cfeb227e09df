//! The input CSV: header rules, then one validated row at a time.
//!
//! The reader streams: it holds one record, never the file. Every data row
//! becomes an [`InputRow`], valid or not; only an unusable file or header is an
//! error, and that stops the run before anything is sent.

use std::io::{self, Read};

use csv::ByteRecord;

use crate::error::Fatal;
use crate::fields::{self, ClientPatch};
use crate::input::csv_bytes::CsvBytes;
use crate::input::dialect::{Delimiter, SAVE_AS_UTF8};
use crate::input::header::{
    Header, MAX_HEADER_COLUMNS, cell_text, patch_columns, too_many_columns, trim,
};
use crate::input::record_limit::{self, Cut, Limit, Overlong, RecordLimit};
use crate::input::seen::SeenIds;
use crate::input::shard::Shard;

/// The largest cell a row may hold; anything longer makes the row invalid.
pub const MAX_CELL_BYTES: usize = 64 * 1024;

/// The longest record read whole. A valid row has at most 9 cells (the key
/// and 8 fields) of 64 KiB, at most 1.2 MiB written out with every byte a
/// doubled quote; a longer record is invalid without being held.
pub const MAX_RECORD_BYTES: u64 = 2 << 20;

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

impl Default for InputRow {
    fn default() -> InputRow {
        InputRow {
            line: 0,
            key: String::new(),
            patch: Err(String::new()),
        }
    }
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

    /// Reads of the input so far (see [`CsvBytes::reads`]).
    pub fn input_reads(&self) -> u64 {
        self.csv.get_ref().reads()
    }

    /// The next row, or `None` at the end (or once `limit` rows were read).
    pub fn next_row(&mut self) -> Option<io::Result<InputRow>> {
        let mut row = InputRow::default();
        self.next_row_into(&mut row).map(|read| read.map(|()| row))
    }

    /// [`RowReader::next_row`] into `row`, reusing its buffers (the key's
    /// text, the list of changes) when it still holds them: a row finished
    /// on the spot (invalid, or a dry run's) then costs no allocation.
    pub fn next_row_into(&mut self, row: &mut InputRow) -> Option<io::Result<()>> {
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
            let key = &mut row.key;
            key.clear();
            if let Some(cell) = self.record.get(self.header.key) {
                match cell_text(whole, &self.record, self.header.key) {
                    Ok(text) => key.push_str(trim(text)),
                    Err(_) => key.push_str(String::from_utf8_lossy(cell).trim()),
                }
            }
            if let Some(shard) = &self.options.shard
                && !shard.selects(key)
            {
                continue;
            }
            self.selected += 1;
            let cut = self.csv.get_mut().get_mut().take_cut();
            let line = self.start_line(cut);
            let unterminated = self.csv.get_ref().ended_inside_quotes();
            let changes = match std::mem::replace(&mut row.patch, Err(String::new())) {
                Ok(patch) => patch.changes,
                Err(_) => Vec::new(),
            };
            row.line = line;
            row.patch = validate(
                Record {
                    cells: &self.record,
                    whole,
                    line,
                    key: &row.key,
                    unterminated,
                    cut: cut.map(|c| c.over),
                },
                &self.header,
                &mut self.seen,
                &self.options.null_token,
                changes,
            );
            return Some(Ok(()));
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
        let record = self.record.as_slice();
        // A plain count for the usual short record: setting up a search
        // costs more than it saves there.
        let inside = if record.len() <= 64 {
            record.iter().filter(|&&b| b == b'\n').count()
        } else {
            memchr::memchr_iter(b'\n', record).count()
        } as u64
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
    mut changes: Vec<(fields::Field, fields::Value)>,
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
    changes.clear();
    changes.reserve(header.width());
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
    if !field_problems.is_empty() {
        problems.extend(field_problems);
    }
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
pub(crate) fn limited<R: Read>(source: R, delimiter: u8) -> RecordLimit<R> {
    RecordLimit::new(source, MAX_RECORD_BYTES, MAX_HEADER_COLUMNS as u64)
        .delimiter(delimiter)
        .cut_rows()
}

/// Why the header row could not be read.
pub(crate) fn header_error(e: csv::Error) -> Fatal {
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

pub(crate) fn csv_to_io(e: csv::Error) -> io::Error {
    match e.into_kind() {
        csv::ErrorKind::Io(e) => e,
        other => io::Error::other(format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fields::{Field, Value};
    use crate::input::csv_bytes::CsvBytes;

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
