//! How an input file is written, as spreadsheets save it: its text encoding
//! (UTF-8, UTF-16 with a byte-order mark, or Windows-1252, Excel's "CSV" on
//! Western-European Windows) and its delimiter (`,`, `;` as Excel writes in
//! much of Europe, or a tab). Detected once, before the first row is read;
//! every later reader of the input decodes it the same way.

use std::io::{self, Read};

use encoding_rs::{UTF_16BE, UTF_16LE, WINDOWS_1252};

use crate::error::Fatal;

/// What to tell someone whose file is not UTF-8 and could not be read as such.
pub const SAVE_AS_UTF8: &str = "save it as CSV UTF-8 (in Excel: File › Save As › CSV UTF-8)";

/// The text encoding of an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextEncoding {
    /// UTF-8, with or without a byte-order mark: read as it is.
    Utf8,
    /// UTF-16 little-endian with a byte-order mark (Excel's "Unicode Text").
    Utf16Le,
    /// UTF-16 big-endian with a byte-order mark.
    Utf16Be,
    /// Not UTF-8 and no byte-order mark: Windows-1252 (a superset of
    /// Latin-1), what Excel's plain "CSV" writes on Western-European Windows.
    Windows1252,
}

impl TextEncoding {
    pub fn name(self) -> &'static str {
        match self {
            TextEncoding::Utf8 => "UTF-8",
            TextEncoding::Utf16Le => "UTF-16 (little-endian)",
            TextEncoding::Utf16Be => "UTF-16 (big-endian)",
            TextEncoding::Windows1252 => "Windows-1252",
        }
    }
}

/// The field delimiter: `,`, `;` or a tab.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delimiter(pub u8);

impl Default for Delimiter {
    fn default() -> Self {
        Delimiter::COMMA
    }
}

impl Delimiter {
    pub const COMMA: Delimiter = Delimiter(b',');
    pub const SEMICOLON: Delimiter = Delimiter(b';');
    pub const TAB: Delimiter = Delimiter(b'\t');

    pub fn describe(self) -> &'static str {
        match self.0 {
            b';' => "semicolon-separated",
            b'\t' => "tab-separated",
            _ => "comma-separated",
        }
    }
}

impl std::str::FromStr for Delimiter {
    type Err = String;

    fn from_str(s: &str) -> Result<Delimiter, String> {
        match s {
            "," | "comma" => Ok(Delimiter::COMMA),
            ";" | "semicolon" => Ok(Delimiter::SEMICOLON),
            "\t" | "tab" | "\\t" => Ok(Delimiter::TAB),
            _ => Err(format!(
                "`{s}` is not a delimiter: choose `,` (comma), `;` (semicolon) or tab"
            )),
        }
    }
}

/// How an input is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dialect {
    pub encoding: TextEncoding,
    pub delimiter: Delimiter,
    /// The delimiter was named by `--delimiter`, not detected.
    pub forced: bool,
}

impl Default for Dialect {
    fn default() -> Self {
        Dialect {
            encoding: TextEncoding::Utf8,
            delimiter: Delimiter::COMMA,
            forced: false,
        }
    }
}

impl Dialect {
    /// One line for stderr: how the input is read, and what to do if that
    /// is wrong.
    pub fn describe(&self, label: &str) -> String {
        let how = if self.forced {
            "as --delimiter says"
        } else {
            "detected from the header; --delimiter to choose"
        };
        let mut text = format!(
            "reading {label} as {} text, {} ({how})",
            self.encoding.name(),
            self.delimiter.describe()
        );
        if self.encoding == TextEncoding::Windows1252 {
            text.push_str(&format!(
                "; it is not UTF-8: if letters such as é or ñ look wrong in the results, \
                 {SAVE_AS_UTF8}"
            ));
        }
        text
    }

    /// Wraps a reader of the raw input so that it yields UTF-8.
    pub fn decode(&self, raw: Box<dyn Read + Send>) -> Box<dyn Read + Send> {
        let encoding = match self.encoding {
            // The CSV reader strips a UTF-8 byte-order mark itself.
            TextEncoding::Utf8 => return raw,
            TextEncoding::Utf16Le => UTF_16LE,
            TextEncoding::Utf16Be => UTF_16BE,
            TextEncoding::Windows1252 => WINDOWS_1252,
        };
        Box::new(
            encoding_rs_io::DecodeReaderBytesBuilder::new()
                .encoding(Some(encoding))
                // A byte-order mark decides, and is dropped.
                .bom_override(true)
                .strip_bom(true)
                .build(raw),
        )
    }
}

/// The encoding its first bytes say, if they say one.
fn encoding_from_bom(head: &[u8]) -> Option<TextEncoding> {
    if head.starts_with(&[0xEF, 0xBB, 0xBF]) {
        Some(TextEncoding::Utf8)
    } else if head.starts_with(&[0xFF, 0xFE]) {
        Some(TextEncoding::Utf16Le)
    } else if head.starts_with(&[0xFE, 0xFF]) {
        Some(TextEncoding::Utf16Be)
    } else {
        None
    }
}

/// What a scan of an input's bytes found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Utf8Scan {
    /// A byte sequence that is not UTF-8.
    pub invalid: bool,
    /// A well-formed multi-byte UTF-8 character (an é written as UTF-8).
    pub multibyte: bool,
}

impl Utf8Scan {
    /// Bytes that are not UTF-8 and no character that is: text in a
    /// single-byte encoding. A UTF-8 file with a damaged byte or two has
    /// well-formed characters too, and stays UTF-8: reading it as
    /// Windows-1252 would turn every accent into two wrong letters, and
    /// those would be sent to the accounts.
    pub fn is_single_byte_text(&self) -> bool {
        self.invalid && !self.multibyte
    }

    /// Adds a piece of the input; returns how many bytes at its end are a
    /// character cut short (to be scanned again with what follows).
    fn add(&mut self, mut bytes: &[u8], at_end: bool) -> usize {
        // Most inputs are ASCII: one quick pass settles a piece of one (this
        // scan reads the whole input before the run starts).
        if bytes.is_ascii() {
            return 0;
        }
        loop {
            match std::str::from_utf8(bytes) {
                Ok(text) => {
                    self.multibyte |= !text.is_ascii();
                    return 0;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    self.multibyte |= !bytes[..valid].is_ascii();
                    match e.error_len() {
                        Some(bad) => {
                            self.invalid = true;
                            bytes = &bytes[valid + bad..];
                        }
                        None if at_end => {
                            self.invalid = true;
                            return 0;
                        }
                        None => return bytes.len() - valid,
                    }
                }
            }
        }
    }
}

/// Scans `source` for UTF-8 (in chunks: memory stays flat).
pub fn scan_utf8(mut source: impl Read) -> io::Result<Utf8Scan> {
    let mut scan = Utf8Scan::default();
    let mut buf = vec![0u8; 64 * 1024];
    // Bytes of a character split between two reads, carried over.
    let mut carried = 0;
    loop {
        let n = match source.read(&mut buf[carried..]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let filled = carried + n;
        let cut = scan.add(&buf[..filled], n == 0);
        buf.copy_within(filled - cut..filled, 0);
        carried = cut;
        if n == 0 {
            return Ok(scan);
        }
    }
}

/// The encoding of an input whose first bytes are `head`; `whole` is the
/// scan of the whole input when it could be read twice (a file), else only
/// `head` is judged.
pub fn detect_encoding(head: &[u8], whole: Option<Utf8Scan>) -> TextEncoding {
    if let Some(encoding) = encoding_from_bom(head) {
        return encoding;
    }
    let scan = whole.unwrap_or_else(|| {
        let mut scan = Utf8Scan::default();
        // A character cut by the end of the head is no evidence.
        scan.add(head, false);
        scan
    });
    if scan.is_single_byte_text() {
        TextEncoding::Windows1252
    } else {
        TextEncoding::Utf8
    }
}

/// The delimiter of a header line: the most frequent of `,`, `;` and tab
/// outside quotes; a comma when there is none (a header of one column).
pub fn delimiter_of(header_line: &str) -> Delimiter {
    let mut counts = [0usize; 3];
    let mut quoted = false;
    for c in header_line.chars() {
        match c {
            '"' => quoted = !quoted,
            '\n' | '\r' if !quoted => break,
            ',' if !quoted => counts[0] += 1,
            ';' if !quoted => counts[1] += 1,
            '\t' if !quoted => counts[2] += 1,
            _ => {}
        }
    }
    let candidates = [Delimiter::COMMA, Delimiter::SEMICOLON, Delimiter::TAB];
    let mut best = 0;
    for i in 1..3 {
        if counts[i] > counts[best] {
            best = i;
        }
    }
    candidates[best]
}

/// The first line of an input as text, decoded.
fn first_line(head: &[u8], encoding: TextEncoding) -> String {
    let encoding = match encoding {
        TextEncoding::Utf8 => encoding_rs::UTF_8,
        TextEncoding::Utf16Le => UTF_16LE,
        TextEncoding::Utf16Be => UTF_16BE,
        TextEncoding::Windows1252 => WINDOWS_1252,
    };
    let (text, _, _) = encoding.decode(head);
    text.lines().next().unwrap_or_default().to_string()
}

/// Decides the dialect of an input from its first bytes (`head`, the first
/// line at least when there is one).
pub fn detect(head: &[u8], whole: Option<Utf8Scan>, forced: Option<Delimiter>) -> Dialect {
    let encoding = detect_encoding(head, whole);
    let delimiter = forced.unwrap_or_else(|| delimiter_of(&first_line(head, encoding)));
    Dialect {
        encoding,
        delimiter,
        forced: forced.is_some(),
    }
}

/// A header that holds NUL bytes without a byte-order mark: binary, or
/// UTF-16 saved without its mark. The message says what to do.
pub fn refuse_nul_header() -> Fatal {
    Fatal::Input(format!(
        "the first line contains NUL bytes: this looks like a binary file, or text in \
         UTF-16 without a byte-order mark, not a CSV file with a header row; {SAVE_AS_UTF8}"
    ))
}

/// Reads the first bytes of `source`: up to the end of the first line (or
/// 64 KiB). Reads what is there without waiting for more, so that a pipe
/// that sends its rows slowly is not held up.
pub fn read_head(source: &mut dyn Read) -> io::Result<Vec<u8>> {
    const MOST: usize = 64 * 1024;
    let mut head = Vec::new();
    let mut buf = [0u8; 8192];
    while head.len() < MOST {
        let n = match source.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
        // In UTF-16 a line break is two bytes, one of them the newline byte.
        if memchr::memchr(b'\n', &head).is_some() {
            break;
        }
    }
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delimiters_from_the_header() {
        assert_eq!(delimiter_of("client_id,reseller,seller"), Delimiter::COMMA);
        assert_eq!(
            delimiter_of("client_id;reseller;seller"),
            Delimiter::SEMICOLON
        );
        assert_eq!(delimiter_of("client_id\treseller"), Delimiter::TAB);
        assert_eq!(delimiter_of("client_id"), Delimiter::COMMA);
        assert_eq!(
            delimiter_of("\"a;b\",c"),
            Delimiter::COMMA,
            "quoted text does not count"
        );
        assert_eq!(
            delimiter_of("client_id;name\n1,2,3,4,5"),
            Delimiter::SEMICOLON,
            "only the first line counts"
        );
    }

    #[test]
    fn encodings_from_bytes() {
        assert_eq!(detect_encoding(b"client_id\n", None), TextEncoding::Utf8);
        assert_eq!(
            detect_encoding(b"\xef\xbb\xbfclient_id\n", None),
            TextEncoding::Utf8
        );
        assert_eq!(
            detect_encoding(b"\xff\xfec\x00", None),
            TextEncoding::Utf16Le
        );
        assert_eq!(
            detect_encoding(b"\xfe\xff\x00c", None),
            TextEncoding::Utf16Be
        );
        assert_eq!(
            detect_encoding(b"client_id,name\n1,Siobh\xe1n\n", None),
            TextEncoding::Windows1252
        );
        let later = scan_utf8(&b"client_id,name\n1,A\n2,Siobh\xe1n\n"[..]).unwrap();
        assert_eq!(
            detect_encoding(b"client_id,name\n", Some(later)),
            TextEncoding::Windows1252,
            "a later line that is not UTF-8 decides"
        );
        let damaged = scan_utf8(&b"client_id,name\n1,Z\xc3\xbcrich\n2,caf\xe9\n"[..]).unwrap();
        assert_eq!(
            detect_encoding(b"client_id,name\n", Some(damaged)),
            TextEncoding::Utf8,
            "UTF-8 with a damaged byte stays UTF-8: its bad rows are invalid"
        );
        assert_eq!(
            detect_encoding("Zürich".as_bytes().split_at(2).0, None),
            TextEncoding::Utf8,
            "a character cut by the end of the head is no evidence"
        );
    }

    #[test]
    fn utf8_scan_streams_across_chunks() {
        struct Trickle(Vec<u8>);
        impl Read for Trickle {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = buf.len().min(self.0.len()).min(1);
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0.drain(..n);
                Ok(n)
            }
        }
        let scan = |b: &[u8]| scan_utf8(Trickle(b.to_vec())).unwrap();
        assert_eq!(
            scan("a,Zürich,Ωμέγα\n".as_bytes()),
            Utf8Scan {
                invalid: false,
                multibyte: true
            }
        );
        assert!(scan(b"a,Siobh\xe1n\n").is_single_byte_text());
        assert!(scan(b"a,\xc3").invalid, "cut at the end");
        assert!(!scan(b"ok,Z\xc3\xbcrich\n2,\xff\n").is_single_byte_text());
        assert_eq!(scan(b""), Utf8Scan::default());
    }

    #[test]
    fn decodes_windows_1252_and_utf16_to_utf8() {
        let read = |dialect: Dialect, bytes: &'static [u8]| {
            let mut out = String::new();
            dialect
                .decode(Box::new(bytes))
                .read_to_string(&mut out)
                .unwrap();
            out
        };
        let cp1252 = Dialect {
            encoding: TextEncoding::Windows1252,
            ..Dialect::default()
        };
        assert_eq!(
            read(cp1252, b"client_id;name\r\n1;Siobh\xe1n \x80\r\n"),
            "client_id;name\r\n1;Siobhán €\r\n"
        );
        let utf16: Vec<u8> = [0xFF, 0xFE]
            .into_iter()
            .chain(
                "id\tname\n1\tZoë\n"
                    .encode_utf16()
                    .flat_map(u16::to_le_bytes),
            )
            .collect();
        let dialect = detect(&utf16, None, None);
        assert_eq!(dialect.encoding, TextEncoding::Utf16Le);
        assert_eq!(dialect.delimiter, Delimiter::TAB);
        assert_eq!(
            read(dialect, Box::leak(utf16.into_boxed_slice())),
            "id\tname\n1\tZoë\n"
        );
    }

    #[test]
    fn the_head_stops_at_the_first_line() {
        let mut source: &[u8] = b"a,b\n1,2\n";
        let head = read_head(&mut source).unwrap();
        assert!(head.starts_with(b"a,b\n"));
    }
}
