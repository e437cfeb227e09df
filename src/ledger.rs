//! Files a run appends to across runs (the results ledger, the undo file):
//! the lock that keeps two runs apart, the refusal to overwrite by accident,
//! and the repair of a line torn by a killed process.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use csv::ByteRecord;

use crate::error::Fatal;

/// Opens `path` for writing without truncating it, and takes an exclusive OS
/// lock on it. The lock dies with the process, so a `kill -9` leaves none
/// behind.
pub fn open_locked(path: &Path) -> Result<File, Fatal> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| Fatal::Usage(format!("cannot open {}: {e}", path.display())))?;
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
    /// Append to it (`--resume`).
    Append,
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
    let len = file.metadata().map_err(io_err)?.len();
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
        Existing::Append => {}
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
        .from_reader(io::BufReader::new(&*file));
    let mut found = ByteRecord::new();
    let read = |reader: &mut csv::Reader<_>, record: &mut ByteRecord| {
        reader
            .read_byte_record(record)
            .map_err(|e| Fatal::Usage(format!("cannot read {}: {e}", path.display())))
    };
    read(&mut reader, &mut found)?;
    let found_header: Vec<String> = found
        .iter()
        .map(|c| String::from_utf8_lossy(c).trim().to_string())
        .collect();
    let header_complete = ends_with_newline || reader.position().byte() < len;
    if found_header != header {
        if !header_complete && header.join(",").starts_with(&found_header.join(",")) {
            // Killed while writing the header itself: start afresh.
            file.set_len(0).map_err(io_err)?;
            file.seek(SeekFrom::Start(0)).map_err(io_err)?;
            return Ok(false);
        }
        return Err(Fatal::Usage(format!(
            "{} has the header `{}`, not `{}`: it was not written by this command over \
             this input; choose another file, or --force to overwrite it",
            path.display(),
            found_header.join(","),
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
                "the last line of {} was cut short (a run was killed while writing it); \
                 it is dropped and its row will be processed again",
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

/// Whether `file` holds exactly `header` as one line and nothing more.
fn holds_only(file: &mut File, header: &[&str]) -> io::Result<bool> {
    let expected = format!("{}\n", header.join(","));
    if file.metadata()?.len() != expected.len() as u64 {
        return Ok(false);
    }
    let mut text = String::new();
    file.seek(SeekFrom::Start(0))?;
    file.read_to_string(&mut text)?;
    Ok(text == expected)
}

/// The rows an earlier run recorded, indexed for `--resume`.
#[derive(Debug, Default)]
pub struct Ledger {
    /// `(line, hash of client_id, ended updated)`, sorted by line.
    entries: Vec<(u64, u64, bool)>,
}

impl Ledger {
    /// Adds one results record.
    pub fn add(&mut self, record: &ByteRecord) {
        let Some(line) = record
            .get(0)
            .and_then(|l| std::str::from_utf8(l).ok())
            .and_then(|l| l.trim().parse().ok())
        else {
            return;
        };
        let key = record
            .get(1)
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        let updated = record.get(2) == Some(b"updated");
        self.entries.push((line, key_hash(&key), updated));
    }

    /// Sorts the index; a line recorded more than once counts as done when any
    /// of its records says `updated`.
    pub fn seal(mut self) -> Ledger {
        self.entries.sort_unstable();
        self.entries.dedup_by(|later, earlier| {
            if later.0 == earlier.0 && later.1 == earlier.1 {
                earlier.2 |= later.2;
                true
            } else {
                false
            }
        });
        self.entries.shrink_to_fit();
        self
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether the row at `line` with this key already ended `updated`.
    pub fn is_done(&self, line: u64, key: &str) -> bool {
        if self.entries.is_empty() {
            return false;
        }
        let hash = key_hash(key);
        let start = self.entries.partition_point(|e| e.0 < line);
        self.entries[start..]
            .iter()
            .take_while(|e| e.0 == line)
            .any(|e| e.1 == hash && e.2)
    }

    /// Checks the ledger against the input's `(line, client_id)` pairs, in
    /// line order. Refuses a ledger none of whose lines match the input.
    pub fn check_against(
        &self,
        rows: impl Iterator<Item = (u64, String)>,
        ledger_path: &Path,
    ) -> Result<(), Fatal> {
        let mut matched = 0u64;
        let mut first_mismatch = None;
        let mut i = 0;
        for (line, key) in rows {
            while i < self.entries.len() && self.entries[i].0 < line {
                i += 1;
            }
            let hash = key_hash(&key);
            let mut j = i;
            let mut seen_line = false;
            let mut same = false;
            while j < self.entries.len() && self.entries[j].0 == line {
                seen_line = true;
                same |= self.entries[j].1 == hash;
                j += 1;
            }
            if same {
                matched += 1;
            } else if seen_line && first_mismatch.is_none() {
                first_mismatch = Some((line, key));
            }
        }
        if matched == 0 && !self.entries.is_empty() {
            let example = match first_mismatch {
                Some((line, key)) => format!(
                    " (line {line} has client_id `{key}` in the input but another id in the results)"
                ),
                None => String::new(),
            };
            return Err(Fatal::Usage(format!(
                "{} does not record any row of this input{example}: it belongs to another \
                 input file; choose another -o file, or --force to start it afresh",
                ledger_path.display()
            )));
        }
        if let Some((line, key)) = first_mismatch {
            tracing::warn!(
                "the input changed since the results were written: line {line} now has \
                 client_id `{key}`; rows are matched by line and client_id, so changed lines \
                 are processed again"
            );
        }
        Ok(())
    }
}

fn key_hash(key: &str) -> u64 {
    crate::shard::fnv1a(key.trim().as_bytes())
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
        let result = prepare(&mut file, &path, &HEADER, Existing::Append, |r| {
            seen.push(String::from_utf8_lossy(r.as_slice()).into_owned())
        });
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

    #[test]
    fn ledger_index() {
        let mut ledger = Ledger::default();
        for rec in [
            ["2", "5", "failed"],
            ["3", "6", "updated"],
            ["2", "5", "updated"],
            ["4", "7", "invalid"],
        ] {
            ledger.add(&ByteRecord::from(rec.to_vec()));
        }
        let ledger = ledger.seal();
        assert!(ledger.is_done(2, "5"));
        assert!(ledger.is_done(3, "6"));
        assert!(!ledger.is_done(3, "7"));
        assert!(!ledger.is_done(4, "7"));
        let path = Path::new("r.csv");
        assert!(
            ledger
                .check_against(vec![(2, "5".into()), (3, "6".into())].into_iter(), path)
                .is_ok()
        );
        let e = ledger
            .check_against(vec![(2, "9".into()), (3, "8".into())].into_iter(), path)
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("does not record any row of this input")
        );
    }
}
