//! Files a run appends to across runs (the results ledger, the undo file):
//! the lock that keeps two runs apart, the refusal to overwrite by accident,
//! and the repair of a line torn by a killed process.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use csv::ByteRecord;

use crate::error::Fatal;
use crate::input::record_limit::{Overlong, RecordLimit};

/// The longest line of a results or undo file read whole. The tool's own
/// lines stay far below it (a row's cells are at most 64 KiB, error texts
/// are cut short); a longer one means the file is not one the tool wrote.
pub const MAX_RECORD_BYTES: u64 = 16 << 20;

/// The most fields a line of a results or undo file may have (they have 12
/// and at most 9).
pub const MAX_FIELDS: u64 = 1000;

/// Why a results or undo file cannot be read, naming the line at fault
/// when one is too long to be read whole.
pub fn read_error(path: &Path, e: &csv::Error) -> String {
    match Overlong::in_csv_error(e) {
        Some(overlong) => format!(
            "{}: line {} is {}, which no file of this tool has: it was not written by \
             gcore-iam-bulk; name another file",
            path.display(),
            overlong.line,
            overlong.over
        ),
        None => format!("cannot read {}: {e}", path.display()),
    }
}

/// Opens `path` for writing without truncating it, and takes an exclusive OS
/// lock on it. The lock dies with the process, so a `kill -9` leaves none
/// behind. A new file is created `rw-------`: results and undo files hold
/// names, emails, phones and previous values.
pub fn open_locked(path: &Path) -> Result<File, Fatal> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            Fatal::Usage(format!(
                "cannot open {}: {e}; check that its directory exists and can be written",
                path.display()
            ))
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Fatal::Usage(format!(
            "another gcore-iam-bulk run is using {} (it holds the lock); wait for it to end, \
             or write to another file",
            path.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(Fatal::Usage(format!("cannot lock {}: {e}", path.display())))
        }
    }
}

/// Whether two paths name the same existing file.
pub fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Whether `path` holds the results of a run (its header starts with the
/// results columns): a ledger that nothing but `run --resume` may write to.
pub fn holds_results(path: &Path) -> bool {
    let Ok(file) = File::open(path) else {
        return false;
    };
    let mut first = String::new();
    let _ = io::BufRead::read_line(&mut io::BufReader::new(file.take(512)), &mut first);
    first.starts_with("line,client_id,outcome,")
}

/// What to do with a file that already has rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Refuse (exit 2) unless it is empty, saying what to do instead.
    Refuse { advice: &'static str },
    /// Append to it (`--resume`); `other_header` says what to do when its
    /// header is not the one this run writes (`--force`, which conflicts
    /// with `--resume`, is no way on).
    Append { other_header: &'static str },
    /// Start it afresh (`--force`).
    Overwrite,
}

/// Prepares a locked file for writing. With [`Existing::Append`], checks the
/// header, hands every complete record to `visit`, and cuts a torn last line.
/// Returns true when the file already holds a header (nothing to write first).
pub fn prepare(
    file: &mut File,
    path: &Path,
    header: &[&str],
    existing: Existing,
    mut visit: impl FnMut(&ByteRecord),
) -> Result<bool, Fatal> {
    let io_err = |e: io::Error| Fatal::Usage(format!("cannot use {}: {e}", path.display()));
    let len = drop_probe(file).map_err(io_err)?;
    match existing {
        _ if len == 0 => return Ok(false),
        // A header and nothing else (a run stopped before its first row):
        // nothing to lose.
        Existing::Refuse { .. } | Existing::Overwrite
            if holds_only(file, header).map_err(io_err)? =>
        {
            file.set_len(0).map_err(io_err)?;
            file.seek(SeekFrom::Start(0)).map_err(io_err)?;
            return Ok(false);
        }
        Existing::Refuse { advice } => {
            return Err(Fatal::Usage(format!(
                "{} already exists and is not empty: {advice}",
                path.display()
            )));
        }
        Existing::Overwrite => {
            file.set_len(0).map_err(io_err)?;
            file.seek(SeekFrom::Start(0)).map_err(io_err)?;
            return Ok(false);
        }
        Existing::Append { .. } => {}
    }

    file.seek(SeekFrom::Start(0)).map_err(io_err)?;
    let ends_with_newline = {
        let mut last = [0u8];
        file.seek(SeekFrom::End(-1)).map_err(io_err)?;
        file.read_exact(&mut last).map_err(io_err)?;
        file.seek(SeekFrom::Start(0)).map_err(io_err)?;
        last[0] == b'\n'
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        // The raw bytes, not the input adapter: the byte offsets are used to
        // cut a torn line, so they must be the file's own.
        // The limit only ever fails: no record is cut, so offsets stay
        // the file's own.
        .from_reader(RecordLimit::new(
            io::BufReader::new(&*file),
            MAX_RECORD_BYTES,
            MAX_FIELDS,
        ));
    let mut found = ByteRecord::new();
    let read = |reader: &mut csv::Reader<_>, record: &mut ByteRecord| {
        reader
            .read_byte_record(record)
            .map_err(|e| Fatal::Usage(read_error(path, &e)))
    };
    read(&mut reader, &mut found)?;
    // An undo file starts with a byte-order mark (see `undo`).
    let found_header: Vec<String> = found
        .iter()
        .map(|c| {
            String::from_utf8_lossy(c)
                .trim_start_matches('\u{feff}')
                .trim()
                .to_string()
        })
        .collect();
    let header_complete = ends_with_newline || reader.position().byte() < len;
    if found_header != header {
        if !header_complete && header.join(",").starts_with(&found_header.join(",")) {
            // Killed while writing the header itself: start afresh.
            file.set_len(0).map_err(io_err)?;
            file.seek(SeekFrom::Start(0)).map_err(io_err)?;
            return Ok(false);
        }
        if header == crate::results::format::RESULT_HEADER
            && found_header == crate::results::format::RESULT_HEADER_WITHOUT_TIMES
        {
            return Err(Fatal::Usage(format!(
                "{} was written by an older gcore-iam-bulk (its rows have no finished_at \
                 column): --resume does not append to it; finish that job with the version \
                 that wrote it, or start this one in a new results file (`results` and \
                 `report` still read the old one)",
                path.display()
            )));
        }
        let advice = match existing {
            Existing::Append { other_header } => other_header,
            _ => "choose another file",
        };
        return Err(Fatal::Usage(format!(
            "{} has the header `{}`, not `{}`: {advice}",
            path.display(),
            crate::fields::shorten_to(&found_header.join(","), 200),
            header.join(",")
        )));
    }

    // Each record is handed on once the next one shows it was complete.
    let mut pending: Option<(ByteRecord, u64)> = None;
    let mut record = ByteRecord::new();
    let mut skipped = 0u64;
    loop {
        let start = reader.position().byte();
        if !read(&mut reader, &mut record)? {
            break;
        }
        if let Some((previous, _)) = pending.take() {
            if previous.len() == header.len() {
                visit(&previous);
            } else {
                skipped += 1;
            }
        }
        pending = Some((record.clone(), start));
    }
    if let Some((last, start)) = pending {
        let torn = !ends_with_newline || last.len() != header.len();
        if torn {
            tracing::warn!(
                "the last line of {} was cut short (a run was killed, or could not write \
                 it, while writing it); it is dropped and its row will be processed again",
                path.display()
            );
            // The csv crate ends a CRLF record at the CR: the LF before the
            // torn line belongs to the record before it.
            let mut byte = [0u8];
            file.seek(SeekFrom::Start(start)).map_err(io_err)?;
            let cut = match file.read(&mut byte) {
                Ok(1) if byte[0] == b'\n' => start + 1,
                _ => start,
            };
            file.set_len(cut).map_err(io_err)?;
        } else {
            visit(&last);
        }
    }
    if skipped > 0 {
        tracing::warn!(
            "{} has {skipped} malformed line(s); they are ignored",
            path.display()
        );
    }
    file.seek(SeekFrom::End(0)).map_err(io_err)?;
    Ok(true)
}

/// Whether `file` holds exactly `header` as one line and nothing more (after
/// a byte-order mark, for an undo file).
fn holds_only(file: &mut File, header: &[&str]) -> io::Result<bool> {
    let expected = format!("{}\n", header.join(","));
    let len = file.metadata()?.len();
    if len != expected.len() as u64 && len != expected.len() as u64 + 3 {
        return Ok(false);
    }
    let mut text = String::new();
    file.seek(SeekFrom::Start(0))?;
    file.read_to_string(&mut text)?;
    Ok(text.trim_start_matches('\u{feff}') == expected)
}

/// Cuts the zeros [`check_room`] leaves at the end of a file when the process
/// is killed between writing and removing them. Returns the length.
fn drop_probe(file: &mut File) -> io::Result<u64> {
    let len = file.metadata()?.len();
    let tail = len.min(ROOM as u64 + 1);
    let mut bytes = vec![0u8; tail as usize];
    file.seek(SeekFrom::Start(len - tail))?;
    file.read_exact(&mut bytes)?;
    let zeros = bytes.iter().rev().take_while(|&&b| b == 0).count() as u64;
    if zeros > 0 {
        file.set_len(len - zeros)?;
    }
    Ok(len - zeros)
}

/// Bytes a file must be able to grow by before a run sends anything.
const ROOM: usize = 16 * 1024;

/// Checks, before the first change, that `file` can grow: writes 16 KiB at
/// its end, forces them to disk, and cuts them off again. A full disk
/// refuses here rather than after PATCHes whose results it cannot record.
pub fn check_room(file: &mut File, path: &Path) -> Result<(), Fatal> {
    use std::io::Write;
    let fail = |e: io::Error| {
        let text = crate::error::describe_write_error(&e);
        let message = format!("cannot write {}: {text}; nothing was sent", path.display());
        if text.starts_with("the disk is full") {
            Fatal::Aborted(message)
        } else {
            Fatal::Usage(message)
        }
    };
    let len = file.seek(SeekFrom::End(0)).map_err(fail)?;
    let probe = file.write_all(&[0u8; ROOM]).and_then(|()| file.sync_data());
    let restore = file
        .set_len(len)
        .and_then(|()| file.seek(SeekFrom::Start(len)).map(drop));
    probe.map_err(fail)?;
    restore.map_err(fail)
}

/// The same check for a file written at the end of a run (`--summary-json`,
/// `--metrics-file`): a temporary file in its directory takes 16 KiB.
pub fn check_room_beside(path: &Path) -> Result<(), Fatal> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let fail = |e: io::Error| {
        let text = crate::error::describe_write_error(&e);
        let message = format!("cannot write {}: {text}; nothing was sent", path.display());
        if text.starts_with("the disk is full") {
            Fatal::Aborted(message)
        } else {
            Fatal::Usage(message)
        }
    };
    let mut temp = tempfile::Builder::new()
        .prefix(".gcore-iam-bulk-")
        .tempfile_in(dir)
        .map_err(fail)?;
    temp.write_all(&[0u8; ROOM])
        .and_then(|()| temp.as_file().sync_data())
        .map_err(fail)
}

/// What the ledger says about one account: its last record that could have
/// changed it, in file order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Recorded {
    /// It ended `updated` or `unchanged`.
    done: bool,
    /// Hash of the values the row asked for.
    requested: u64,
}

/// What `--resume` does with a valid row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// The account's last record is `updated` (or `unchanged`) with these
    /// very values: nothing to send.
    Done,
    /// The account was done with other values: the row changed since.
    Changed,
    /// Not done (never recorded, or its last record failed): send it.
    Send,
}

/// The rows earlier runs recorded, indexed by account for `--resume`. Rows
/// are matched by account and requested values, never by line: a corrected
/// value is sent again, and rows moved, reordered or inserted are found
/// wherever they stand.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Hash of the normalised client id → its last record.
    accounts: HashMap<u64, Recorded>,
    /// The undo file the recorded runs kept (the last one named).
    undo_file: Option<String>,
    /// A row ended `would_update`: this is a plan, not a run's ledger.
    plan: bool,
}

impl Ledger {
    /// Adds one results record. Rows that sent nothing (`invalid`,
    /// `dry_run`) or only read (`would_update`) say nothing about the account.
    pub fn add(&mut self, record: &ByteRecord) {
        let text = |i: usize| record.get(i).map(String::from_utf8_lossy);
        if let Some(undo) = text(11).filter(|u| !u.trim().is_empty()) {
            self.undo_file = Some(undo.into_owned());
        }
        let Some(key) = text(1) else {
            return;
        };
        self.plan |= record.get(2) == Some(b"would_update");
        let done = match record.get(2) {
            Some(b"updated" | b"unchanged") => true,
            Some(b"failed" | b"mismatch") => false,
            _ => return,
        };
        let requested = key_hash(&text(10).unwrap_or_default());
        self.accounts
            .insert(key_hash(&normal_key(&key)), Recorded { done, requested });
    }

    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty() && self.undo_file.is_none()
    }

    /// What to do with a valid row for `key` asking `requested` (see
    /// [`crate::fields::ClientPatch::requested`]).
    pub fn resume(&self, key: &str, requested: &str) -> Resume {
        match self.accounts.get(&key_hash(&normal_key(key))) {
            Some(r) if r.done && r.requested == key_hash(requested) => Resume::Done,
            Some(r) if r.done => Resume::Changed,
            _ => Resume::Send,
        }
    }

    /// The undo file the recorded runs kept, if any.
    pub fn undo_file(&self) -> Option<&str> {
        self.undo_file.as_deref()
    }

    /// Refuses a plan, and a ledger that records none of the input's
    /// accounts: it belongs to another job (most likely another night's).
    pub fn check_against(
        &self,
        keys: impl Iterator<Item = String>,
        ledger_path: &Path,
    ) -> Result<(), Fatal> {
        if self.plan {
            return Err(Fatal::Usage(format!(
                "{} is the output of `plan` (it has `would_update` rows), not the ledger of \
                 a run: --resume needs the results file of a run; choose another -o",
                ledger_path.display()
            )));
        }
        if self.accounts.is_empty() {
            return Ok(());
        }
        let mut any = false;
        for key in keys {
            if self.accounts.contains_key(&key_hash(&normal_key(&key))) {
                any = true;
                break;
            }
        }
        if any {
            return Ok(());
        }
        Err(Fatal::Usage(format!(
            "{} does not record any account of this input: it is the ledger of another \
             job; give each job (each night's input, say) its own results file, such as \
             results-$(date +%F).csv, or use --force instead of --resume to start this one \
             afresh",
            ledger_path.display()
        )))
    }
}

/// A client id as the ledger keys it: a number without leading zeros, else
/// the trimmed text.
fn normal_key(key: &str) -> String {
    match crate::fields::parse_whole_number(key.trim()) {
        Some(n) => n.to_string(),
        None => key.trim().to_string(),
    }
}

fn key_hash(key: &str) -> u64 {
    crate::input::shard::fnv1a(key.trim().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const HEADER: [&str; 3] = ["line", "client_id", "outcome"];

    fn scan(text: &[u8]) -> (Result<bool, Fatal>, Vec<String>, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.csv");
        std::fs::write(&path, text).unwrap();
        let mut file = open_locked(&path).unwrap();
        let mut seen = Vec::new();
        let result = prepare(
            &mut file,
            &path,
            &HEADER,
            Existing::Append { other_header: "x" },
            |r| seen.push(String::from_utf8_lossy(r.as_slice()).into_owned()),
        );
        if result.is_ok() {
            file.write_all(b"").unwrap();
        }
        let after = std::fs::read(&path).unwrap();
        (result, seen, after)
    }

    #[test]
    fn complete_ledger_is_read_whole() {
        let (r, seen, after) = scan(b"line,client_id,outcome\n2,5,updated\n3,6,failed\n");
        assert!(r.unwrap());
        assert_eq!(seen, vec!["25updated", "36failed"]);
        assert_eq!(after, b"line,client_id,outcome\n2,5,updated\n3,6,failed\n");
    }

    #[test]
    fn torn_last_line_is_cut() {
        let (r, seen, after) = scan(b"line,client_id,outcome\n2,5,updated\n3,6,upd");
        assert!(r.unwrap());
        assert_eq!(seen, vec!["25updated"]);
        assert_eq!(after, b"line,client_id,outcome\n2,5,updated\n");
        let (_, seen, after) = scan(b"line,client_id,outcome\n2,5,updated\n3,\"6\n");
        assert_eq!(seen, vec!["25updated"]);
        assert_eq!(after, b"line,client_id,outcome\n2,5,updated\n");
    }

    #[test]
    fn a_torn_line_is_cut_at_its_own_bytes_in_a_crlf_file() {
        let (r, seen, after) =
            scan(b"line,client_id,outcome\r\n2,5,updated\r\n3,6,updated\r\n4,7,upd");
        assert!(r.unwrap());
        assert_eq!(seen, vec!["25updated", "36updated"]);
        assert_eq!(
            after,
            b"line,client_id,outcome\r\n2,5,updated\r\n3,6,updated\r\n"
        );
    }

    #[test]
    fn zeros_left_by_a_probe_cut_short_are_dropped() {
        let mut text = b"line,client_id,outcome\n2,5,updated\n".to_vec();
        text.extend_from_slice(&[0; 100]);
        let (r, seen, after) = scan(&text);
        assert!(r.unwrap());
        assert_eq!(seen, vec!["25updated"]);
        assert_eq!(after, b"line,client_id,outcome\n2,5,updated\n");
        let (r, _, after) = scan(&[0; ROOM]);
        assert!(!r.unwrap());
        assert!(after.is_empty());
    }

    #[test]
    fn torn_header_starts_afresh_and_other_headers_are_refused() {
        let (r, _, after) = scan(b"line,clie");
        assert!(!r.unwrap());
        assert!(after.is_empty());
        let (r, _, _) = scan(b"a,b,c\n1,2,3\n");
        assert!(
            r.unwrap_err()
                .to_string()
                .contains("has the header `a,b,c`")
        );
    }

    #[test]
    fn refuses_or_overwrites_existing_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        std::fs::write(&path, "x\n").unwrap();
        let mut file = open_locked(&path).unwrap();
        let refuse = Existing::Refuse {
            advice: "add --resume or --force",
        };
        let e = prepare(&mut file, &path, &HEADER, refuse, |_| {}).unwrap_err();
        assert!(e.to_string().contains("--resume") && e.to_string().contains("--force"));
        assert!(!prepare(&mut file, &path, &HEADER, Existing::Overwrite, |_| {}).unwrap());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    }

    #[test]
    fn a_header_alone_is_no_reason_to_refuse() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        std::fs::write(&path, "line,client_id,outcome\n").unwrap();
        let mut file = open_locked(&path).unwrap();
        let refuse = Existing::Refuse { advice: "" };
        assert!(!prepare(&mut file, &path, &HEADER, refuse, |_| {}).unwrap());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    }

    #[test]
    fn recognises_the_same_file_and_a_results_file() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.csv");
        std::fs::write(&a, "line,client_id,outcome,http_status\n").unwrap();
        let b = dir.path().join("b.csv");
        std::fs::write(&b, "client_id,reseller\n").unwrap();
        assert!(same_file(&a, &dir.path().join(".").join("a.csv")));
        assert!(!same_file(&a, &b));
        assert!(!same_file(&a, &dir.path().join("missing")));
        assert!(holds_results(&a));
        assert!(!holds_results(&b));
    }

    #[test]
    fn second_lock_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        let _held = open_locked(&path).unwrap();
        let e = open_locked(&path).unwrap_err();
        assert!(e.to_string().contains("another gcore-iam-bulk run"));
    }

    fn record(fields: [&str; 12]) -> ByteRecord {
        ByteRecord::from(fields.to_vec())
    }

    #[test]
    fn ledger_matches_by_account_and_values() {
        let mut ledger = Ledger::default();
        let row = |line, id, outcome, requested| {
            record([
                line, id, outcome, "", "1", "", "", "", "0", "", requested, "",
            ])
        };
        ledger.add(&row("2", "5", "failed", r#"{"seller":1}"#));
        ledger.add(&row("3", "6", "updated", r#"{"seller":1}"#));
        ledger.add(&row("2", "5", "updated", r#"{"seller":1}"#));
        ledger.add(&row("4", "7", "invalid", ""));
        ledger.add(&row("5", "8", "updated", r#"{"seller":1}"#));
        ledger.add(&row("9", "8", "failed", r#"{"seller":2}"#));
        assert_eq!(ledger.resume("5", r#"{"seller":1}"#), Resume::Done);
        assert_eq!(ledger.resume("005", r#"{"seller":1}"#), Resume::Done);
        assert_eq!(ledger.resume("6", r#"{"seller":2}"#), Resume::Changed);
        assert_eq!(ledger.resume("7", r#"{"seller":1}"#), Resume::Send);
        assert_eq!(
            ledger.resume("8", r#"{"seller":1}"#),
            Resume::Send,
            "the last record of 8 failed: it may hold 2 now"
        );
        assert_eq!(ledger.undo_file(), None);
        let path = Path::new("r.csv");
        assert!(
            ledger
                .check_against(["9".into(), "6".into()].into_iter(), path)
                .is_ok()
        );
        let e = ledger
            .check_against(["10".into(), "11".into()].into_iter(), path)
            .unwrap_err();
        assert!(e.to_string().contains("does not record any account"));
        ledger.add(&row("6", "9", "would_update", r#"{"seller":1}"#));
        let e = ledger
            .check_against(["9".into()].into_iter(), path)
            .unwrap_err();
        assert!(e.to_string().contains("output of `plan`"));
    }

    #[test]
    fn ledger_remembers_the_undo_file() {
        let mut ledger = Ledger::default();
        ledger.add(&record([
            "2",
            "5",
            "updated",
            "200",
            "1",
            "",
            "",
            "",
            "0",
            "",
            "{}",
            "/data/undo.csv",
        ]));
        assert_eq!(ledger.undo_file(), Some("/data/undo.csv"));
    }
}
