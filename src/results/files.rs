//! Which paths a command may write. No output (`-o`, `--undo-file`,
//! `--summary-json`, `--metrics-file`, export's `-o`) may name the input, an
//! undo file, or a results ledger it does not own, `--force` or not; and a
//! command refused before it starts leaves no file behind.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::error::Fatal;
use crate::results::ledger::same_file;

/// What an existing file holds, judged from its first line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// No such file, or an empty one.
    Absent,
    /// The results of a run or a plan; `run_ledger` when a row says an
    /// account was (or was to be) changed by `run`.
    Results { run_ledger: bool },
    /// An undo file (a row file that starts with a byte-order mark; an input
    /// saved by a spreadsheet looks the same, and is as precious).
    Undo,
    /// A file `run` would take as input (an export, an input, an old undo
    /// file without the mark).
    Rows,
    /// The final answers `results` wrote.
    Final,
    /// Anything else (an earlier summary, say).
    Other,
}

impl FileKind {
    pub fn of(path: &Path) -> FileKind {
        // Only a regular file is read: opening a FIFO would wait for a writer.
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_file() => {}
            Ok(_) => return FileKind::Other,
            Err(_) => return FileKind::Absent,
        }
        let Ok(file) = std::fs::File::open(path) else {
            return FileKind::Absent;
        };
        let mut head = Vec::new();
        if file.take(64 * 1024).read_to_end(&mut head).is_err() || head.is_empty() {
            return if head.is_empty() {
                FileKind::Absent
            } else {
                FileKind::Other
            };
        }
        let (bom, text) = match head.strip_prefix(crate::results::undo::BOM) {
            Some(rest) => (true, rest),
            None => (false, &head[..]),
        };
        let first_line = text.split(|&b| b == b'\n').next().unwrap_or_default();
        if first_line.starts_with(b"line,client_id,outcome,")
            && first_line.trim_ascii_end().ends_with(b",source")
        {
            return FileKind::Final;
        }
        if first_line.starts_with(b"line,client_id,outcome,") {
            return FileKind::Results {
                run_ledger: records_a_run(path),
            };
        }
        // An input saved by a spreadsheet may be separated by `;` or tabs.
        let delimiter = crate::input::dialect::delimiter_of(&String::from_utf8_lossy(first_line));
        let header = csv::ReaderBuilder::new()
            .has_headers(false)
            .delimiter(delimiter.0)
            .from_reader(first_line)
            .byte_records()
            .next()
            .and_then(Result::ok);
        match header.map(|h| crate::input::header::Header::parse(&h).is_ok()) {
            Some(true) if bom => FileKind::Undo,
            Some(true) => FileKind::Rows,
            _ => FileKind::Other,
        }
    }
}

/// Whether a results file records a `run` (a row `updated`, `mismatch` or
/// `dry_run`) rather than a plan.
fn records_a_run(path: &Path) -> bool {
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    // A line too long for a results file ends the reading (an error), not
    // the memory.
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(
        crate::input::record_limit::RecordLimit::new(
            std::io::BufReader::new(file),
            crate::results::ledger::MAX_RECORD_BYTES,
            crate::results::ledger::MAX_FIELDS,
        ),
    );
    let mut record = csv::ByteRecord::new();
    while let Ok(true) = reader.read_byte_record(&mut record) {
        if matches!(record.get(2), Some(b"updated" | b"mismatch" | b"dry_run")) {
            return true;
        }
    }
    false
}

/// An output a command is about to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `run -o`: its own ledger (appended with `--resume`, replaced with
    /// `--force`).
    RunResults,
    /// `plan -o`.
    Plan,
    /// `--undo-file`.
    Undo,
    /// `--summary-json`, `--metrics-file`.
    Report,
    /// `export -o`: may replace an earlier export.
    Export,
    /// `results -o`: may replace earlier final answers.
    Final,
}

/// Refuses outputs that name the input, each other, or a file this role
/// must not write over. `-` (standard output) is never checked.
pub fn check(input: Option<&Path>, outputs: &[(&str, &Path, Role)]) -> Result<(), Fatal> {
    let named: Vec<&(&str, &Path, Role)> = outputs
        .iter()
        .filter(|(_, path, _)| path.as_os_str() != "-")
        .collect();
    for (i, (flag, path, role)) in named.iter().enumerate() {
        if let Some(input) = input
            && input.as_os_str() != "-"
            && same_path(input, path)
        {
            return Err(Fatal::Usage(format!(
                "{flag} {} is the input file itself; choose another file",
                path.display()
            )));
        }
        for (other_flag, other, _) in &named[..i] {
            if same_path(path, other) {
                return Err(Fatal::Usage(format!(
                    "{other_flag} and {flag} name the same file, {}; give each its own",
                    path.display()
                )));
            }
        }
        let refused = match (role, FileKind::of(path)) {
            (_, FileKind::Absent) => None,
            (Role::Undo, FileKind::Undo) | (Role::RunResults, FileKind::Results { .. }) => None,
            (Role::Plan, FileKind::Results { run_ledger: false }) => None,
            (Role::Export, FileKind::Rows) | (Role::Final, FileKind::Final) => None,
            // Not a file this tool would miss: the usual rules apply (`run`
            // and `plan` replace it only with --force).
            (_, FileKind::Other) => None,
            (_, FileKind::Undo) => Some(
                "it is an undo file (the only copy of the values from before a run), or a file \
                 of rows saved with a byte-order mark (by a spreadsheet, or --excel)"
                    .to_string(),
            ),
            (_, FileKind::Results { .. }) => {
                Some("it holds the results of a run (its ledger)".to_string())
            }
            (Role::Undo, FileKind::Rows) => Some(
                "it is a file of rows, not an undo file this tool wrote (undo files start \
                 with a byte-order mark)"
                    .to_string(),
            ),
            (_, FileKind::Rows) => {
                Some("it is a file of rows that `run` takes as input".to_string())
            }
            (_, FileKind::Final) => Some("it holds the final answers of `results`".to_string()),
        };
        if let Some(why) = refused {
            return Err(Fatal::Usage(format!(
                "{flag} {}: {why}; nothing writes over it, --force or not: choose another file",
                path.display()
            )));
        }
    }
    Ok(())
}

/// Whether a summary or metrics file may be written at `path` at the end of
/// a command whose input and output are given: never over the input, the
/// output, an undo file or a file of rows.
pub fn report_may_write(path: &Path, input: Option<&Path>, output: &Path) -> bool {
    let clash =
        |other: Option<&Path>| other.is_some_and(|o| o.as_os_str() != "-" && same_path(o, path));
    !clash(input)
        && !clash(Some(output))
        && matches!(FileKind::of(path), FileKind::Absent | FileKind::Other)
}

/// The same file, or (when neither exists yet) the same absolute path.
pub fn same_path(a: &Path, b: &Path) -> bool {
    same_file(a, b)
        || match (std::path::absolute(a), std::path::absolute(b)) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        }
}

/// Files a command created before it started its work: removed if it is
/// refused (or interrupted) after all, so that it leaves no file behind.
#[derive(Debug, Default)]
pub struct Fresh(FreshFiles);

/// The list of [`Fresh`] files, for a signal handler that exits at once.
pub type FreshFiles = Arc<Mutex<Vec<PathBuf>>>;

impl Fresh {
    /// Notes `path` if it does not exist yet (it is about to be created).
    pub fn note(&mut self, path: &Path) {
        if path.as_os_str() != "-" && std::fs::symlink_metadata(path).is_err() {
            lock(&self.0).push(path.to_path_buf());
        }
    }

    /// The command started: its files stay.
    pub fn keep(&mut self) {
        lock(&self.0).clear();
    }

    /// The list, shared: [`remove_fresh`] empties it from elsewhere.
    pub fn files(&self) -> FreshFiles {
        Arc::clone(&self.0)
    }
}

/// Removes the files still listed (none once the command started).
pub fn remove_fresh(files: &FreshFiles) {
    for path in lock(files).drain(..) {
        let _ = std::fs::remove_file(path);
    }
}

fn lock(files: &FreshFiles) -> std::sync::MutexGuard<'_, Vec<PathBuf>> {
    files.lock().unwrap_or_else(|e| e.into_inner())
}

impl Drop for Fresh {
    fn drop(&mut self) {
        remove_fresh(&self.0);
    }
}

/// A file written beside its destination and renamed over it once complete:
/// readers see the old file or the new one, never half of one, and a command
/// that fails or is interrupted leaves the destination as it was.
pub struct Replacement {
    temp: tempfile::NamedTempFile,
}

impl Replacement {
    /// Creates the temporary file (private, named `{prefix}…`) in the
    /// directory `dest` is in.
    pub fn beside(dest: &Path, prefix: &str) -> std::io::Result<Replacement> {
        let temp = tempfile::Builder::new()
            .prefix(prefix)
            .tempfile_in(directory_of(dest))?;
        Ok(Replacement { temp })
    }

    /// The temporary file, to write to.
    pub fn file(&self) -> &std::fs::File {
        self.temp.as_file()
    }

    /// Where the temporary file is (removed by a signal handler that exits
    /// before [`Replacement::commit`]).
    pub fn path(&self) -> &Path {
        self.temp.path()
    }

    /// Syncs what was written and renames it over `dest`.
    pub fn commit(self, dest: &Path) -> std::io::Result<()> {
        self.temp.as_file().sync_all()?;
        self.temp.persist(dest).map_err(|e| e.error)?;
        Ok(())
    }
}

/// The directory a file is (to be) in: `.` for a bare name.
pub fn directory_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_of_files() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &[u8]| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        assert_eq!(FileKind::of(&dir.path().join("none")), FileKind::Absent);
        assert_eq!(FileKind::of(&write("e", b"")), FileKind::Absent);
        assert_eq!(
            FileKind::of(&write("u", b"\xef\xbb\xbfclient_id,name\n1,A\n")),
            FileKind::Undo
        );
        assert_eq!(
            FileKind::of(&write("i", b"client_id,name\n1,A\n")),
            FileKind::Rows
        );
        assert_eq!(
            FileKind::of(&write("r", b"line,client_id,outcome,x\n2,1,updated,\n")),
            FileKind::Results { run_ledger: true }
        );
        assert_eq!(
            FileKind::of(&write(
                "p",
                b"line,client_id,outcome,x\n2,1,would_update,\n"
            )),
            FileKind::Results { run_ledger: false }
        );
        assert_eq!(FileKind::of(&write("j", b"{}")), FileKind::Other);
        assert_eq!(
            FileKind::of(&write("s", b"client_id;seller\r\n1;80\r\n")),
            FileKind::Rows,
            "an input Excel saved with semicolons is an input too"
        );
    }

    #[test]
    fn refusals() {
        let dir = tempfile::tempdir().unwrap();
        let undo = dir.path().join("undo.csv");
        std::fs::write(&undo, b"\xef\xbb\xbfclient_id,name\n1,A\n").unwrap();
        let input = dir.path().join("in.csv");
        std::fs::write(&input, b"client_id,name\n1,A\n").unwrap();
        let new = dir.path().join("new.csv");
        for (flag, path, role) in [
            ("--summary-json", &undo, Role::Report),
            ("-o", &undo, Role::RunResults),
            ("-o", &undo, Role::Export),
            ("--metrics-file", &input, Role::Report),
        ] {
            assert!(
                check(Some(&input), &[(flag, path, role)]).is_err(),
                "{flag}"
            );
        }
        assert!(check(Some(&input), &[("--undo-file", &undo, Role::Undo)]).is_ok());
        assert!(check(Some(&input), &[("-o", &new, Role::RunResults)]).is_ok());
        let e = check(
            Some(&input),
            &[
                ("-o", &new, Role::RunResults),
                ("--summary-json", &new, Role::Report),
            ],
        )
        .unwrap_err();
        assert!(e.to_string().contains("name the same file"));
        assert!(!report_may_write(&undo, None, &new));
        assert!(!report_may_write(&new, None, &new));
    }

    #[test]
    fn fresh_files_go_unless_kept() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        {
            let mut fresh = Fresh::default();
            fresh.note(&a);
            std::fs::write(&a, "x").unwrap();
        }
        assert!(!a.exists());
        {
            let mut fresh = Fresh::default();
            fresh.note(&a);
            std::fs::write(&a, "x").unwrap();
            fresh.keep();
        }
        assert!(a.exists());
    }
}
