//! `CsvBytes`: the adapter between a CSV source and the parser (byte-order
//! mark, line ends, an unclosed quote at the end).

use std::io::{self, Read};

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
    /// Reads asked of this adapter so far.
    reads: u64,
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
            reads: 0,
        }
    }

    /// True once the source has ended inside a quoted field.
    pub fn ended_inside_quotes(&self) -> bool {
        self.at_eof && self.state == QuoteState::Quoted
    }

    /// How many reads were asked of the source so far: a row read without
    /// one waited for nothing.
    pub fn reads(&self) -> u64 {
        self.reads
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

    /// Follows the quoting state across `bytes`, skipping from one quote to
    /// the next: outside quotes only a quote matters, and whether it opens a
    /// quoted field depends only on the byte before it. Input without quotes
    /// costs one search per read (a search per field was a few percent of a
    /// dry run).
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
                QuoteState::QuoteInQuoted => {
                    state = self.step(state, bytes[i]);
                    i += 1;
                }
                QuoteState::FieldStart | QuoteState::Unquoted => {
                    let rest = &bytes[i..];
                    let quote = memchr::memchr(b'"', rest).unwrap_or(rest.len());
                    // After bytes that are not quotes, a field starts just
                    // when the last of them ended one.
                    if let Some(&last) = rest[..quote].last() {
                        state = self.step(QuoteState::Unquoted, last);
                    }
                    if quote == rest.len() {
                        break;
                    }
                    state = self.step(state, b'"');
                    i += quote + 1;
                }
            }
        }
        self.state = state;
    }

    /// The quoting state after `byte`, outside a quoted field's text.
    fn step(&self, state: QuoteState, byte: u8) -> QuoteState {
        match (state, byte) {
            (QuoteState::QuoteInQuoted, b'"') => QuoteState::Quoted,
            (_, b'\n') => QuoteState::FieldStart,
            (_, b) if b == self.delimiter => QuoteState::FieldStart,
            (QuoteState::FieldStart, b'"') => QuoteState::Quoted,
            _ => QuoteState::Unquoted,
        }
    }
}

impl<R: Read> Read for CsvBytes<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reads += 1;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The quoting state byte by byte, as the parser follows it.
    fn state_after(bytes: &[u8], delimiter: u8) -> QuoteState {
        bytes
            .iter()
            .fold(QuoteState::FieldStart, |state, &byte| match (state, byte) {
                (QuoteState::Quoted, b'"') => QuoteState::QuoteInQuoted,
                (QuoteState::Quoted, _) => QuoteState::Quoted,
                (QuoteState::QuoteInQuoted, b'"') => QuoteState::Quoted,
                (_, b'\n') => QuoteState::FieldStart,
                (_, b) if b == delimiter => QuoteState::FieldStart,
                (QuoteState::FieldStart, b'"') => QuoteState::Quoted,
                _ => QuoteState::Unquoted,
            })
    }

    proptest::proptest! {
        #[test]
        fn tracking_skips_nothing_that_matters(
            bytes in proptest::collection::vec(
                proptest::sample::select(b"\"\"\",;\nab ".to_vec()), 0..64),
            split in 0usize..64,
            semicolon in proptest::bool::ANY,
        ) {
            let delimiter = if semicolon { b';' } else { b',' };
            let mut csv = CsvBytes::with_delimiter(&b""[..], delimiter);
            let split = split.min(bytes.len());
            csv.track(&bytes[..split]);
            csv.track(&bytes[split..]);
            proptest::prop_assert_eq!(csv.state, state_after(&bytes, delimiter));
        }
    }
}
