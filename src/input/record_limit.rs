//! Keeps a CSV record from growing without bound.
//!
//! The `csv` crate holds a whole record in memory before it hands it over,
//! so one line of a gigabyte, or a quoted field never closed, would be held
//! whole. [`RecordLimit`] sits under the parser, follows RFC 4180 quoting to
//! see where each record ends, and passes on at most `max` bytes of any
//! record. A longer one is either an error (the header, a results file: no
//! such file is worth reading on) or, for the rows of an input, cut short:
//! the rest of it is read and dropped, the parser is handed a well-formed
//! end (a closing quote when the cut fell inside one), and the cut is noted
//! for the row reader, which makes the row invalid and counts the lines it
//! never saw. Memory stays at one buffer and `max` bytes of record.

use std::io::{self, Read};

/// Which limit a record went over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// More bytes than this.
    Bytes(u64),
    /// More fields than this (each costs the parser a word of memory, so a
    /// record of commas is bounded too).
    Fields(u64),
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Limit::Bytes(max) => write!(f, "longer than {}", size(*max)),
            Limit::Fields(max) => write!(f, "made of more than {max} fields"),
        }
    }
}

/// A record over the limit where none may be: the error's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overlong {
    /// The line where the record starts (the first line is 1).
    pub line: u64,
    pub over: Limit,
}

impl std::fmt::Display for Overlong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {} starts a record {}", self.line, self.over)
    }
}

impl std::error::Error for Overlong {}

impl Overlong {
    /// The `Overlong` behind an error the `csv` crate returned, if it is one.
    pub fn in_csv_error(e: &csv::Error) -> Option<Overlong> {
        match e.kind() {
            csv::ErrorKind::Io(io) => io
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<Overlong>())
                .copied(),
            _ => None,
        }
    }
}

/// `2 MiB`.
pub fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

/// A record cut short: what the row reader needs to know of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cut {
    /// The line where the record starts.
    pub line: u64,
    /// Line ends in the part that was dropped (the parser never saw them).
    pub dropped_lines: u64,
    pub over: Limit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quoting {
    FieldStart,
    Unquoted,
    Quoted,
    /// A quote inside a quoted field: either the close or the first of `""`.
    QuoteInQuoted,
}

/// Where records end, and how long the current one is so far.
#[derive(Debug)]
struct Tracker {
    max: u64,
    max_fields: u64,
    delimiter: u8,
    state: Quoting,
    record_bytes: u64,
    record_fields: u64,
    /// The limit the tracker last stopped at.
    over: Limit,
    /// Records with at least one byte that ended: the first is the header.
    records: u64,
    /// Line ends seen, a CRLF counted once (as the input adapter turns it
    /// into one LF).
    line_ends: u64,
    last_cr: bool,
    /// The line where the current record starts.
    record_line: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Bytes go to the parser: stop before the first that would make the
    /// record longer than the limit.
    Pass,
    /// Bytes are dropped: stop at the end of the record (its line end is
    /// not consumed).
    Drop,
}

impl Tracker {
    /// Follows `bytes` from the current state. Returns where it stopped
    /// (see [`Mode`]), or `None` when it went through all of them.
    fn follow(&mut self, bytes: &[u8], mode: Mode) -> Option<usize> {
        let mut i = 0;
        while i < bytes.len() {
            let rest = &bytes[i..];
            if self.state == Quoting::Quoted {
                // Everything up to the next quote is the field's, line ends
                // included (counted in bulk).
                let quote = memchr::memchr(b'"', rest).unwrap_or(rest.len());
                let mut plain = &rest[..quote];
                if mode == Mode::Pass && self.record_bytes + plain.len() as u64 > self.max {
                    plain = &plain[..(self.max - self.record_bytes) as usize];
                    self.record_bytes += plain.len() as u64;
                    self.count_line_ends(plain);
                    self.over = Limit::Bytes(self.max);
                    return Some(i + plain.len());
                }
                self.record_bytes += plain.len() as u64;
                self.count_line_ends(plain);
                i += quote;
            } else {
                // Outside quotes, the stretch up to the next quote or line
                // end is taken at once, its delimiters counted in bulk: most
                // lines are one such stretch.
                let stretch = memchr::memchr3(b'"', b'\n', b'\r', rest).unwrap_or(rest.len());
                let plain = &rest[..stretch];
                // A plain loop: the compiler vectorises it, and most
                // stretches are too short to pay for a memchr call.
                let delimiter = self.delimiter;
                let fields = plain.iter().filter(|&&b| b == delimiter).count() as u64;
                let within = self.record_bytes + stretch as u64 <= self.max
                    && self.record_fields + fields <= self.max_fields;
                if let Some(&last) = plain.last() {
                    if mode == Mode::Pass && !within {
                        // Near a limit: byte by byte, to stop at the right one.
                        for (at, &byte) in plain.iter().enumerate() {
                            if self.step(byte, mode) {
                                return Some(i + at);
                            }
                        }
                    } else {
                        self.record_bytes += stretch as u64;
                        self.record_fields += fields;
                        self.last_cr = false;
                        self.state = if last == delimiter {
                            Quoting::FieldStart
                        } else {
                            Quoting::Unquoted
                        };
                    }
                }
                i += stretch;
            }
            // A quote or a line end, unless the bytes ran out.
            let Some(&byte) = bytes.get(i) else { break };
            if byte == b'\n' && mode == Mode::Pass && self.state != Quoting::Quoted && !self.last_cr
            {
                // The usual end of a record, as `step` takes it, without
                // the call (once a row).
                self.line_ends += 1;
                self.records += u64::from(self.record_bytes > 0);
                self.record_bytes = 0;
                self.record_fields = 1;
                self.record_line = self.line_ends + 1;
                self.state = Quoting::FieldStart;
                i += 1;
                continue;
            }
            if self.step(byte, mode) {
                return Some(i);
            }
            i += 1;
        }
        None
    }

    /// Follows one byte. True when it must not be followed: in `Pass`, it
    /// would go over a limit; in `Drop`, it ends the record.
    fn step(&mut self, byte: u8, mode: Mode) -> bool {
        let line_end = byte == b'\n' || byte == b'\r';
        let ends_record = line_end && self.state != Quoting::Quoted;
        if ends_record && mode == Mode::Drop {
            return true;
        }
        let next_field = self.state != Quoting::Quoted && byte == self.delimiter;
        if !ends_record && mode == Mode::Pass {
            if self.record_bytes + 1 > self.max {
                self.over = Limit::Bytes(self.max);
                return true;
            }
            if next_field && self.record_fields + 1 > self.max_fields {
                self.over = Limit::Fields(self.max_fields);
                return true;
            }
        }
        if line_end && !(byte == b'\n' && self.last_cr) {
            self.line_ends += 1;
        }
        self.last_cr = byte == b'\r';
        if ends_record {
            self.records += u64::from(self.record_bytes > 0);
            self.record_bytes = 0;
            self.record_fields = 1;
            self.record_line = self.line_ends + 1;
            self.state = Quoting::FieldStart;
        } else {
            self.record_bytes += 1;
            self.record_fields += u64::from(next_field);
            self.state = match (self.state, byte) {
                (Quoting::Quoted, b'"') => Quoting::QuoteInQuoted,
                (Quoting::Quoted, _) => Quoting::Quoted,
                (Quoting::QuoteInQuoted, b'"') => Quoting::Quoted,
                (_, b) if b == self.delimiter => Quoting::FieldStart,
                (Quoting::FieldStart, b'"') => Quoting::Quoted,
                _ => Quoting::Unquoted,
            };
        }
        false
    }

    /// Counts the line ends in `bytes`, a CRLF once (also when split from
    /// the bytes before).
    fn count_line_ends(&mut self, bytes: &[u8]) {
        let Some(&last) = bytes.last() else { return };
        if bytes.len() <= 64 {
            // A short cell: one plain pass costs less than setting up three.
            for &byte in bytes {
                if byte == b'\r' || (byte == b'\n' && !self.last_cr) {
                    self.line_ends += 1;
                }
                self.last_cr = byte == b'\r';
            }
            return;
        }
        let lf = memchr::memchr_iter(b'\n', bytes).count();
        let cr = memchr::memchr_iter(b'\r', bytes).count();
        let crlf = if lf == 0 || cr == 0 {
            0
        } else {
            memchr::memmem::find_iter(bytes, b"\r\n").count()
        };
        let split = usize::from(self.last_cr && bytes[0] == b'\n');
        self.line_ends += (lf + cr - crlf - split) as u64;
        self.last_cr = last == b'\r';
    }
}

/// A record being dropped after its cut.
#[derive(Debug, Clone, Copy)]
struct Dropping {
    /// The parser's quoting state at the cut.
    state_at_cut: Quoting,
    line: u64,
    line_ends_at_cut: u64,
    over: Limit,
}

/// Reads CSV bytes through, never more than `max` bytes of one record.
pub struct RecordLimit<R> {
    inner: R,
    buf: Box<[u8]>,
    pos: usize,
    len: usize,
    tracker: Tracker,
    /// Cut the rows after the header short instead of failing.
    cut_rows: bool,
    dropping: Option<Dropping>,
    /// A closing quote to hand the parser before the rest.
    close_quote: bool,
    /// The last record cut short, until the row reader takes it.
    cut: Option<Cut>,
    dropped_lines: u64,
    failed: Option<Overlong>,
}

const BUFFER: usize = 64 * 1024;

impl<R: Read> RecordLimit<R> {
    /// Fails (an `io::Error` holding an [`Overlong`]) at the first record
    /// longer than `max` bytes or of more than `max_fields` fields.
    pub fn new(inner: R, max: u64, max_fields: u64) -> RecordLimit<R> {
        RecordLimit {
            inner,
            buf: vec![0; BUFFER].into_boxed_slice(),
            pos: 0,
            len: 0,
            tracker: Tracker {
                max,
                max_fields,
                delimiter: b',',
                state: Quoting::FieldStart,
                record_bytes: 0,
                record_fields: 1,
                over: Limit::Bytes(max),
                records: 0,
                line_ends: 0,
                last_cr: false,
                record_line: 1,
            },
            cut_rows: false,
            dropping: None,
            close_quote: false,
            cut: None,
            dropped_lines: 0,
            failed: None,
        }
    }

    /// Cuts records after the first (the header) short instead of failing.
    pub fn cut_rows(mut self) -> RecordLimit<R> {
        self.cut_rows = true;
        self
    }

    /// The field delimiter, for where quoted fields can start (`,` unless set).
    pub fn delimiter(mut self, delimiter: u8) -> RecordLimit<R> {
        self.tracker.delimiter = delimiter;
        self
    }

    /// The record last cut short, once it has been read to its end; taken
    /// by the reader of that record.
    pub fn take_cut(&mut self) -> Option<Cut> {
        self.cut.take()
    }

    /// Line ends dropped with the records cut short so far.
    pub fn dropped_lines(&self) -> u64 {
        self.dropped_lines
    }

    fn fill(&mut self) -> io::Result<usize> {
        self.pos = 0;
        self.len = loop {
            match self.inner.read(&mut self.buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other?,
            }
        };
        Ok(self.len)
    }

    /// The record being dropped has ended (at its line end, or the input's
    /// end): the parser is handed what closes it, the cut is noted.
    fn end_drop(&mut self, dropping: Dropping) {
        let dropped = self.tracker.line_ends - dropping.line_ends_at_cut;
        // What the parser holds of the record, which its line end closes.
        self.tracker.record_bytes = self.tracker.record_bytes.min(self.tracker.max);
        self.dropped_lines += dropped;
        self.cut = Some(Cut {
            line: dropping.line,
            dropped_lines: dropped,
            over: dropping.over,
        });
        self.tracker.state = if dropping.state_at_cut == Quoting::Quoted {
            self.close_quote = true;
            Quoting::QuoteInQuoted
        } else {
            dropping.state_at_cut
        };
    }
}

impl<R: Read> Read for RecordLimit<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            if let Some(overlong) = self.failed {
                return Err(io::Error::new(io::ErrorKind::InvalidData, overlong));
            }
            if std::mem::take(&mut self.close_quote) {
                out[0] = b'"';
                return Ok(1);
            }
            if self.pos == self.len && self.fill()? == 0 {
                if let Some(dropping) = self.dropping.take() {
                    // The input ended inside the record being dropped: the
                    // parser gets no closing quote (the input adapter
                    // reports the quote left open), only the cut.
                    self.end_drop(dropping);
                    self.close_quote = false;
                }
                return Ok(0);
            }
            if let Some(dropping) = self.dropping {
                match self
                    .tracker
                    .follow(&self.buf[self.pos..self.len], Mode::Drop)
                {
                    None => self.pos = self.len,
                    Some(end) => {
                        self.pos += end;
                        self.dropping = None;
                        self.end_drop(dropping);
                    }
                }
                continue;
            }
            let take = (self.len - self.pos).min(out.len());
            let chunk = &self.buf[self.pos..self.pos + take];
            let passed = match self.tracker.follow(chunk, Mode::Pass) {
                None => take,
                Some(cut) => {
                    // The tracker stopped at the cut, inside the record.
                    if !self.cut_rows || self.tracker.records == 0 {
                        self.failed = Some(Overlong {
                            line: self.tracker.record_line,
                            over: self.tracker.over,
                        });
                        continue;
                    }
                    // What it followed of this chunk is passed, the rest of
                    // the record dropped from here.
                    self.dropping = Some(Dropping {
                        state_at_cut: self.tracker.state,
                        line: self.tracker.record_line,
                        line_ends_at_cut: self.tracker.line_ends,
                        over: self.tracker.over,
                    });
                    cut
                }
            };
            out[..passed].copy_from_slice(&self.buf[self.pos..self.pos + passed]);
            self.pos += passed;
            if passed > 0 {
                return Ok(passed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn through(input: &[u8], max: u64, step: usize) -> (io::Result<Vec<u8>>, Vec<Cut>, u64) {
        let mut limit = RecordLimit::new(Trickle(input.to_vec(), step), max, 5).cut_rows();
        let mut out = Vec::new();
        let mut cuts = Vec::new();
        let mut buf = [0u8; 7];
        loop {
            match limit.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) => return (Err(e), cuts, limit.dropped_lines()),
            }
            if let Some(cut) = limit.take_cut() {
                cuts.push(cut);
            }
        }
        if let Some(cut) = limit.take_cut() {
            cuts.push(cut);
        }
        (Ok(out), cuts, limit.dropped_lines())
    }

    #[test]
    fn records_within_the_limit_pass_unchanged() {
        let input = b"id,name\r\n1,\"a\nb, \"\"c\"\"\"\n\n2,x\r3,y";
        for step in 1..9 {
            let (out, cuts, _) = through(input, 16, step);
            assert_eq!(out.unwrap(), input.to_vec(), "step {step}");
            assert!(cuts.is_empty());
        }
    }

    #[test]
    fn a_long_row_is_cut_and_its_rest_dropped() {
        let input = b"id,name\n1,aaaaaaaaaaaaaaaaaaaa\n2,b\n";
        for step in 1..9 {
            let (out, cuts, dropped) = through(input, 8, step);
            assert_eq!(
                out.unwrap(),
                b"id,name\n1,aaaaaa\n2,b\n".to_vec(),
                "step {step}"
            );
            assert_eq!(
                cuts,
                vec![Cut {
                    line: 2,
                    dropped_lines: 0,
                    over: Limit::Bytes(8),
                }]
            );
            assert_eq!(dropped, 0);
        }
    }

    #[test]
    fn a_cut_inside_quotes_is_closed_and_its_lines_counted() {
        let input = b"id,n\n1,\"aa\r\nbb\r\ncc\ndd\"\n2,\"q\"\n";
        for step in 1..9 {
            let (out, cuts, dropped) = through(input, 6, step);
            assert_eq!(
                out.unwrap(),
                b"id,n\n1,\"aa\r\"\n2,\"q\"\n".to_vec(),
                "step {step}"
            );
            // The CR passed before the cut counts; its LF is dropped with
            // the two line ends after it.
            assert_eq!(
                cuts,
                vec![Cut {
                    line: 2,
                    dropped_lines: 2,
                    over: Limit::Bytes(6),
                }]
            );
            assert_eq!(dropped, 2);
        }
    }

    #[test]
    fn the_header_and_any_record_without_cut_rows_fail() {
        let (out, _, _) = through(b"idddddddddddd,name\n1,2\n", 8, 3);
        let e = out.unwrap_err();
        let overlong = e.get_ref().unwrap().downcast_ref::<Overlong>().unwrap();
        assert_eq!(
            overlong,
            &Overlong {
                line: 1,
                over: Limit::Bytes(8)
            }
        );
        assert_eq!(
            overlong.to_string(),
            "line 1 starts a record longer than 8 bytes"
        );
        let mut strict = RecordLimit::new(&b"a\n\n12345678901\n"[..], 8, 5);
        let e = std::io::copy(&mut strict, &mut std::io::sink()).unwrap_err();
        let overlong = e.get_ref().unwrap().downcast_ref::<Overlong>().unwrap();
        assert_eq!(overlong.line, 3);
    }

    #[test]
    fn a_record_of_too_many_fields_is_cut_before_the_field_past_the_limit() {
        let (out, cuts, _) = through(b"a,b\n1,2,3,4,5,6,7\n\"q,\",x\n", 100, 3);
        assert_eq!(out.unwrap(), b"a,b\n1,2,3,4,5\n\"q,\",x\n".to_vec());
        assert_eq!(cuts[0].over, Limit::Fields(5));
        let (header, _, _) = through(b"a,b,c,d,e,f\n1\n", 100, 3);
        let e = header.unwrap_err();
        let overlong = e.get_ref().unwrap().downcast_ref::<Overlong>().unwrap();
        assert_eq!(
            overlong.to_string(),
            "line 1 starts a record made of more than 5 fields"
        );
    }

    #[test]
    fn a_never_ending_record_is_dropped_to_the_end() {
        let mut input = b"id\n1\n\"".to_vec();
        input.extend(std::iter::repeat_n(b'x', 10_000));
        let (out, cuts, _) = through(&input, 100, 4096);
        let out = out.unwrap();
        assert_eq!(out.len(), b"id\n1\n".len() + 100);
        assert_eq!(cuts.len(), 1);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn csv_bytes() -> impl Strategy<Value = Vec<u8>> {
            proptest::collection::vec(
                prop_oneof![
                    Just(b','),
                    Just(b'"'),
                    Just(b'\n'),
                    Just(b'\r'),
                    Just(b'a'),
                    any::<u8>(),
                ],
                0..300,
            )
        }

        proptest! {
            #[test]
            fn under_the_limit_nothing_changes(input in csv_bytes(), step in 1usize..9) {
                let mut limit = RecordLimit::new(Trickle(input.clone(), step), 1 << 20, 1 << 20)
                    .cut_rows();
                let mut out = Vec::new();
                limit.read_to_end(&mut out).unwrap();
                let cuts = limit.take_cut();
                prop_assert_eq!(out, input);
                prop_assert!(cuts.is_none());
            }

            #[test]
            fn line_ends_are_counted_as_the_input_adapter_makes_them(
                input in csv_bytes(),
                step in 1usize..9,
            ) {
                let mut limit = RecordLimit::new(Trickle(input.clone(), step), 1 << 20, 1 << 20);
                std::io::copy(&mut limit, &mut std::io::sink()).unwrap();
                let crlf = input.windows(2).filter(|w| w == b"\r\n").count();
                let ends = input.iter().filter(|b| matches!(b, b'\n' | b'\r')).count() - crlf;
                prop_assert_eq!(limit.tracker.line_ends, ends as u64);
            }

            #[test]
            fn no_record_the_parser_sees_is_longer_than_the_limit(
                input in csv_bytes(),
                max in 4u64..40,
                step in 1usize..9,
            ) {
                // The header may fail; past it, every record fits.
                let mut header_ok = b"h\n".to_vec();
                header_ok.extend(&input);
                let (out, _, _) = through(&header_ok, max, step);
                let out = out.unwrap();
                let mut reader = csv::ReaderBuilder::new()
                    .has_headers(false)
                    .flexible(true)
                    .from_reader(&out[..]);
                let mut record = csv::ByteRecord::new();
                while let Ok(true) = reader.read_byte_record(&mut record) {
                    prop_assert!(record.as_slice().len() as u64 <= max);
                    prop_assert!(record.len() <= 5);
                }
            }
        }
    }

    #[test]
    fn sizes_read_plainly() {
        assert_eq!(size(2 << 20), "2 MiB");
        assert_eq!(size(64 << 10), "64 KiB");
        assert_eq!(size(10), "10 bytes");
    }
}
