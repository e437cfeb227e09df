//! Where the input comes from (a file, or standard input spooled when it
//! must be read twice), its dialect, and counting its rows ahead of a run.

use std::io::{self, Read};

use csv::ByteRecord;

use crate::error::Fatal;
use crate::input::csv_bytes::CsvBytes;
use crate::input::dialect::{Delimiter, Dialect};
use crate::input::header::Header;
use crate::input::reader::{ReadOptions, header_error, limited};

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
