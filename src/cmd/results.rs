//! `results`: the final outcome of every input line, from the ledgers a run,
//! its resumed runs and its `--shard` workers appended to.
//!
//! A resumed run appends a new row for each row it processes again, and
//! none for a row already done; shards write one file each. The last row
//! recorded for a line is its final answer (files are read in the order
//! given, each from top to bottom). The exit code follows `run`'s rules.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use csv::ByteRecord;

use crate::cli::ResultsArgs;
use crate::error::{Ending, Fatal, Finished, Unfinished};
use crate::input::record_limit::{Overlong, RecordLimit};
use crate::logging::Console;
use crate::outcome::Outcome;
use crate::results::files::{self, Role};
use crate::results::format::{RESULT_HEADER, RESULT_HEADER_WITHOUT_TIMES};

/// The final answer of each line: its last record and the file it came from.
#[derive(Debug, Default)]
pub struct FinalAnswers {
    lines: BTreeMap<u64, (ByteRecord, usize)>,
}

impl FinalAnswers {
    /// Adds one ledger's complete records; a torn or malformed line is
    /// skipped (the run that resumes redoes its row).
    pub fn read(&mut self, source: usize, ledger: impl std::io::Read) -> Result<(), String> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(RecordLimit::new(
                ledger,
                crate::results::ledger::MAX_RECORD_BYTES,
                crate::results::ledger::MAX_FIELDS,
            ));
        let too_long = |overlong: Overlong| {
            format!(
                "line {} is {}, which no results file of this tool has: name the results \
                 files of a run, its resumed runs or its shards",
                overlong.line, overlong.over
            )
        };
        let mut record = ByteRecord::new();
        match reader.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => return Ok(()),
            Err(e) => return Err(Overlong::in_csv_error(&e).map_or(e.to_string(), too_long)),
        }
        // A file written with --excel starts with a byte-order mark.
        let header: Vec<&[u8]> = record
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == 0 {
                    c.strip_prefix(b"\xef\xbb\xbf").unwrap_or(c)
                } else {
                    c
                }
            })
            .collect();
        let is = |expected: &[&str]| {
            header
                .iter()
                .copied()
                .eq(expected.iter().map(|h| h.as_bytes()))
        };
        // A ledger from before `finished_at` is read too; its rows get the
        // new columns empty.
        let width = if is(&RESULT_HEADER) {
            RESULT_HEADER.len()
        } else if is(&RESULT_HEADER_WITHOUT_TIMES) {
            RESULT_HEADER_WITHOUT_TIMES.len()
        } else {
            return Err(format!(
                "its header is not the results header `{}`: name results files of `run` or \
                 `plan`",
                RESULT_HEADER.join(",")
            ));
        };
        loop {
            match reader.read_byte_record(&mut record) {
                Ok(true) => {}
                Ok(false) => break,
                // A line torn by a kill at the very end: what came before stands.
                Err(e) => match Overlong::in_csv_error(&e) {
                    Some(overlong) => return Err(too_long(overlong)),
                    None => break,
                },
            }
            if record.len() != width {
                continue;
            }
            while record.len() < RESULT_HEADER.len() {
                record.push_field(b"");
            }
            let Some(line) = std::str::from_utf8(&record[0])
                .ok()
                .and_then(|l| l.trim().parse::<u64>().ok())
            else {
                continue;
            };
            if std::str::from_utf8(&record[2])
                .ok()
                .and_then(Outcome::parse)
                .is_none()
            {
                continue;
            }
            self.lines.insert(line, (record.clone(), source));
        }
        Ok(())
    }

    /// Rows by final outcome.
    pub fn counts(&self) -> BTreeMap<&str, u64> {
        let mut counts = BTreeMap::new();
        for (record, _) in self.lines.values() {
            let outcome = std::str::from_utf8(&record[2]).unwrap_or_default();
            *counts.entry(outcome).or_insert(0) += 1;
        }
        counts
    }

    /// `run`'s rule: rows failed when any line ended `failed`, `invalid` or
    /// `mismatch`.
    pub fn finished(&self) -> Finished {
        let bad = self
            .lines
            .values()
            .any(|(r, _)| matches!(&r[2], b"failed" | b"invalid" | b"mismatch"));
        Finished { rows_failed: bad }
    }

    /// Writes the header and one row per line, in line order, each with the
    /// ledger it came from; `bom` starts it with a byte-order mark (`--excel`).
    pub fn write(&self, mut out: impl Write, sources: &[String], bom: bool) -> csv::Result<()> {
        if bom {
            out.write_all(crate::results::undo::BOM)?;
        }
        let mut csv = csv::WriterBuilder::new().from_writer(out);
        let mut header = ByteRecord::from(RESULT_HEADER.to_vec());
        header.push_field(b"source");
        csv.write_byte_record(&header)?;
        for (record, source) in self.lines.values() {
            let mut row = record.clone();
            row.push_field(sources[*source].as_bytes());
            csv.write_byte_record(&row)?;
        }
        csv.flush()?;
        Ok(())
    }
}

/// The temporary file the final answers are being written to, if any: a
/// signal removes it.
type TempSlot = Arc<Mutex<Option<PathBuf>>>;

/// `results` with signals handled as in every command: SIGINT or SIGTERM
/// exits 130 at once (nothing is sent, so there is nothing to finish), and
/// leaves no temporary file. The work runs off the runtime, so that a signal
/// is answered even while a read blocks (a FIFO no one writes, say).
pub async fn results(args: ResultsArgs, console: Console) -> Ending {
    use tokio::signal::unix::{SignalKind, signal};
    let temp = TempSlot::default();
    if let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        let temp = Arc::clone(&temp);
        let output = args.output.display().to_string();
        tokio::spawn(async move {
            tokio::select! {
                _ = int.recv() => {},
                _ = term.recv() => {},
            }
            if let Some(path) = temp.lock().unwrap_or_else(|e| e.into_inner()).take() {
                let _ = std::fs::remove_file(path);
            }
            crate::logging::always(
                console,
                crate::logging::Severity::Warning,
                &format!(
                    "interrupted; nothing was written to {output}; to read the results again: {}",
                    crate::hint::command(crate::hint::Again::Same, false)
                ),
            );
            crate::error::exit_interrupted();
        });
    }
    tokio::task::spawn_blocking(move || report(&args, console, &temp))
        .await
        .unwrap_or(Err(Unfinished::Aborted))
}

fn report(args: &ResultsArgs, console: Console, temp: &TempSlot) -> Ending {
    match execute(args, temp) {
        Ok((answers, finished)) => {
            if !console.quiet {
                let counts: Vec<String> = answers
                    .counts()
                    .iter()
                    .map(|(o, n)| format!("{n} {o}"))
                    .collect();
                eprintln!(
                    "results: {} lines\n  {}\n  final answers: {}",
                    answers.lines.len(),
                    counts.join(" · "),
                    args.output.display()
                );
            }
            if finished != Finished::CLEAN {
                // Whatever -q: a non-zero exit says why.
                let bad: Vec<String> = answers
                    .counts()
                    .iter()
                    .filter(|(o, _)| matches!(**o, "failed" | "invalid" | "mismatch"))
                    .map(|(o, n)| format!("{n} {o}"))
                    .collect();
                crate::logging::always(
                    console,
                    crate::logging::Severity::Warning,
                    &format!(
                        "lines whose last record did not succeed: {} (see the error column of {})",
                        bad.join(", "),
                        if args.output.as_os_str() == "-" {
                            "the final answers on standard output".to_string()
                        } else {
                            args.output.display().to_string()
                        }
                    ),
                );
            }
            Ok(finished)
        }
        Err(fatal) => {
            crate::logging::always(console, crate::logging::Severity::Error, &fatal.to_string());
            Err(fatal.unfinished())
        }
    }
}

fn execute(args: &ResultsArgs, temp: &TempSlot) -> Result<(FinalAnswers, Finished), Fatal> {
    let outputs_list = [("-o", args.output.as_path(), Role::Final)];
    for ledger in &args.ledgers {
        if args.output.as_os_str() != "-" && files::same_path(ledger, &args.output) {
            return Err(Fatal::Usage(format!(
                "-o {} is one of the results files read; choose another file",
                args.output.display()
            )));
        }
    }
    files::check(None, &outputs_list)?;

    let mut answers = FinalAnswers::default();
    let mut sources = Vec::new();
    for (i, path) in args.ledgers.iter().enumerate() {
        let file = std::fs::File::open(path).map_err(|e| {
            Fatal::Usage(format!(
                "cannot read {}: {e}; check the path",
                path.display()
            ))
        })?;
        answers
            .read(i, std::io::BufReader::new(file))
            .map_err(|e| Fatal::Usage(format!("cannot use {}: {e}", path.display())))?;
        sources.push(path.display().to_string());
    }

    if args.output.as_os_str() == "-" {
        answers
            .write(std::io::stdout().lock(), &sources, args.spreadsheet.excel)
            .map_err(|e| Fatal::Aborted(format!("cannot write the final answers: {e}")))?;
    } else {
        write_final(
            &args.output,
            &answers,
            &sources,
            args.spreadsheet.excel,
            temp,
        )?;
    }
    let finished = answers.finished();
    Ok((answers, finished))
}

/// Written beside the destination (private) and renamed over it.
fn write_final(
    path: &Path,
    answers: &FinalAnswers,
    sources: &[String],
    bom: bool,
    slot: &TempSlot,
) -> Result<(), Fatal> {
    let fail =
        |e: &dyn std::fmt::Display| Fatal::Aborted(format!("cannot write {}: {e}", path.display()));
    let temp = files::Replacement::beside(path, ".gcore-iam-bulk-results-")
        .map_err(|e| fail(&crate::error::describe_write_error(&e)))?;
    *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(temp.path().to_path_buf());
    answers
        .write(std::io::BufWriter::new(temp.file()), sources, bom)
        .map_err(|e| fail(&e))?;
    temp.commit(path)
        .map_err(|e| fail(&crate::error::describe_write_error(&e)))?;
    slot.lock().unwrap_or_else(|e| e.into_inner()).take();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger(rows: &[&str]) -> String {
        let mut text = format!("{}\n", RESULT_HEADER.join(","));
        for row in rows {
            text.push_str(row);
            text.push('\n');
        }
        text
    }

    #[test]
    fn the_last_record_of_a_line_is_its_answer() {
        let mut answers = FinalAnswers::default();
        let first = ledger(&[
            "2,5,updated,200,1,,,{},3,,{},,2026-11-30T01:33:20.500Z,0,0",
            "3,6,failed,503,5,,gave up,{},3,,{},,2026-11-30T01:33:20.500Z,4,0",
        ]);
        let resumed = ledger(&["3,6,updated,200,1,,,{},3,,{},,2026-11-30T01:33:20.500Z,0,0"]);
        answers.read(0, first.as_bytes()).unwrap();
        answers
            .read(0, format!("{resumed}4,7,upd").as_bytes())
            .unwrap_or(());
        assert_eq!(answers.lines.len(), 2);
        assert_eq!(answers.finished(), Finished::CLEAN);
        let mut out = Vec::new();
        answers.write(&mut out, &["r.csv".into()], false).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.lines()
                .next()
                .unwrap()
                .ends_with(",undo_file,finished_at,retries,throttled,source")
        );
        assert_eq!(text.lines().filter(|l| l.contains(",updated,")).count(), 2);
    }

    #[test]
    fn a_line_that_failed_last_sets_exit_1_and_other_files_are_refused() {
        let mut answers = FinalAnswers::default();
        answers
            .read(
                0,
                ledger(&["2,5,failed,503,5,,x,{},3,,{},,,0,0"]).as_bytes(),
            )
            .unwrap();
        assert_eq!(answers.finished(), Finished { rows_failed: true });
        assert!(answers.read(1, "client_id,name\n1,A\n".as_bytes()).is_err());
    }

    #[test]
    fn older_ledgers_and_a_byte_order_mark_are_read() {
        let mut answers = FinalAnswers::default();
        let old = format!(
            "{}\n2,5,updated,200,1,,,{{}},3,,{{}},\n",
            RESULT_HEADER_WITHOUT_TIMES.join(",")
        );
        answers.read(0, old.as_bytes()).unwrap();
        let bom = format!(
            "\u{feff}{}",
            ledger(&["3,6,updated,200,1,,,{},3,,{},,2026-11-30T01:33:20.500Z,0,0"])
        );
        answers.read(1, bom.as_bytes()).unwrap();
        assert_eq!(answers.lines.len(), 2);
        let mut out = Vec::new();
        answers
            .write(&mut out, &["old.csv".into(), "new.csv".into()], true)
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("\u{feff}line,client_id,"));
        let mut reader = csv::Reader::from_reader(text.trim_start_matches('\u{feff}').as_bytes());
        assert!(
            reader
                .records()
                .all(|r| r.unwrap().len() == RESULT_HEADER.len() + 1)
        );
    }
}
