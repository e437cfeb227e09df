//! `run`: every row of an input file through the pipeline. `plan` (see
//! `plan.rs`) is the same job with a read in place of each PATCH.
//!
//! The order matters: everything that can refuse the run (flags, the output
//! paths, the input's header, the token's presence, the results file, its
//! lock and its ledger, the undo file, room on the disk, the confirmation,
//! the token check) happens before the first PATCH, and a refusal removes
//! the files it created.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use crate::cli::{ConnectionArgs, PacingArgs, ReportArgs, RunArgs, SelectionArgs};
use crate::client::call::Caller;
use crate::cmd::{Target, check_token, finish};
use crate::error::{Ending, Fatal};
use crate::hint::{self, Again};
use crate::input::reader::{ReadOptions, RowReader};
use crate::input::source::{InputSource, count_rows};
use crate::logging::Console;
use crate::results::files::{self, Fresh, Role};
use crate::results::format::RESULT_HEADER;
use crate::results::ledger::{self, Existing, Ledger};
use crate::results::undo::UndoWriter;
use crate::results::writer::{Destination, Flusher, ResultsSink};
use crate::run::apply::ApplyOptions;
use crate::run::pipeline::{Mode, Pipeline, Thresholds};
use crate::run::progress::{Pace, Progress, RateProbe};
use crate::run::stats::Stats;
use crate::run::stop::{StopSignal, watch_signals};
use crate::run::summary::RunSummary;

/// The choices that differ between `run`, `run --dry-run` and `plan`.
pub(super) struct Job<'a> {
    pub command: &'static str,
    pub kind: Kind,
    pub input: &'a Path,
    pub output: &'a Path,
    pub resume: bool,
    pub force: bool,
    pub skip_unchanged: bool,
    pub undo_file: Option<&'a Path>,
    pub thresholds: Thresholds,
    pub confirm: Option<u64>,
    pub selection: &'a SelectionArgs,
    pub connection: &'a ConnectionArgs,
    pub pacing: &'a PacingArgs,
    pub report: &'a ReportArgs,
    /// `--report`: the HTML report written at the end.
    pub html_report: Option<&'a Path>,
    /// `--excel`: a byte-order mark before the header.
    pub excel: bool,
}

/// What the job does with each row, as the user asked; the pipeline's
/// `Mode` adds what each needs once connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    DryRun,
    Apply,
    Plan,
}

pub async fn run(args: RunArgs, console: Console) -> Ending {
    Job {
        command: "run",
        kind: if args.dry_run {
            Kind::DryRun
        } else {
            Kind::Apply
        },
        input: &args.input,
        output: &args.output,
        resume: args.resume,
        force: args.force,
        skip_unchanged: args.skip_unchanged,
        undo_file: args.undo_file.as_deref(),
        thresholds: Thresholds {
            max_failures: args.max_failures,
            max_failure_rate: args.max_failure_rate,
        },
        confirm: (!args.yes).then_some(args.confirm_above),
        selection: &args.selection,
        connection: &args.connection,
        pacing: &args.pacing,
        report: &args.report,
        html_report: args.html_report.as_deref(),
        excel: args.spreadsheet.excel,
    }
    .go(console)
    .await
}

impl Job<'_> {
    /// Runs the job and ends it: summary, report files, exit code.
    pub(super) async fn go(self, console: Console) -> Ending {
        let started_at = SystemTime::now();
        let result = execute(&self, console, started_at).await;
        finish(
            result,
            self.command,
            self.report,
            console,
            started_at,
            Some(self.input),
            self.output,
            crate::cmd::HtmlReport {
                path: self.html_report,
                results: Some(self.output),
            },
        )
    }
}

async fn execute(
    job: &Job<'_>,
    console: Console,
    started_at: SystemTime,
) -> Result<RunSummary, Fatal> {
    let sends = job.kind != Kind::DryRun;
    let Checked {
        mut read_options,
        to_stdout,
    } = validate(job)?;

    let mut input = InputSource::new(job.input);
    if job.resume || job.connection.simulator {
        input.spool()?;
    }
    let dialect = input.detect(job.selection.delimiter)?;
    tracing::info!("{}", dialect.describe(input.label()));
    read_options.delimiter = dialect.delimiter;
    let reader = RowReader::new(input.open()?, read_options.clone()).map_err(|e| match e {
        // The header's problem, with the file it is in.
        Fatal::Input(why) => Fatal::Input(format!(
            "{}: {why}",
            match input.label() {
                "-" => "standard input",
                label => label,
            }
        )),
        other => other,
    })?;

    let mut target = if !sends {
        None
    } else if job.connection.simulator {
        Some(Target::simulator(accounts_in(&input, &read_options)?).await?)
    } else {
        Some(Target::api(job.connection, true)?)
    };

    // Files this command creates are removed again if it is refused before
    // it starts.
    let mut fresh = Fresh::default();

    // The results file: locked for the whole run, never overwritten by
    // mistake. With --resume, its ledger is read first: it says which undo
    // file the run it records kept.
    let mut results_file = if to_stdout {
        None
    } else {
        fresh.note(job.output);
        Some(ledger::open_locked(job.output)?)
    };
    let mut ledger = Ledger::default();
    let mut has_header = false;
    if job.resume
        && let Some(file) = results_file.as_mut()
    {
        has_header = ledger::prepare(file, job.output, &RESULT_HEADER, LEDGER_APPEND, |r| {
            ledger.add(r)
        })?;
        let all_rows = ReadOptions {
            null_token: read_options.null_token.clone(),
            delimiter: read_options.delimiter,
            ..ReadOptions::default()
        };
        let keys = RowReader::new(input.open()?, all_rows)?
            .map_while(Result::ok)
            .map(|row| row.key);
        ledger.check_against(keys, job.output)?;
        check_undo_of_ledger(&ledger, job.undo_file, job.output)?;
    }

    // The undo file before the results file is touched: a refusal must leave
    // both as they were. `--force` never empties an undo file: it holds the
    // only copy of the values the accounts had before the first run changed
    // them.
    let undo = open_undo(job, reader.header().fields(), &mut fresh)?;
    let undo_recorded = job
        .undo_file
        .map(|path| std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()))
        .map(|path| path.display().to_string());

    let existing = results_policy(job);
    let (destination, write_header) = match results_file.take() {
        None => (Destination::Stdout, true),
        Some(mut file) => {
            if !job.resume {
                has_header =
                    ledger::prepare(&mut file, job.output, &RESULT_HEADER, existing, |_| {})?;
            }
            ledger::check_room(&mut file, job.output)?;
            (Destination::File(file), !has_header)
        }
    };

    if let (Some(above), Some(target)) = (job.confirm, &target) {
        confirm(&input, &read_options, above, target, job.pacing).await?;
    }

    let stats = Arc::new(Stats::new());
    let stop = StopSignal::new();
    // Watched from here on, so that an interrupt during the token check ends
    // the run cleanly too; the results writer's flush joins once it exists.
    let flusher: Arc<OnceLock<Flusher>> = Arc::new(OnceLock::new());
    {
        let flusher = Arc::clone(&flusher);
        let fresh = fresh.files();
        watch_signals(Arc::clone(&stop), move || {
            match flusher.get() {
                Some(flusher) => flusher.flush_now(),
                // Interrupted before it started: no file left behind.
                None => files::remove_fresh(&fresh),
            }
            Ending::exit_interrupted();
        });
    }
    let mode = connect(job, target.as_ref(), &stats, &stop, undo.as_ref()).await?;
    let caller = mode.caller().cloned();
    // Nothing refused the command: from here on its files stay.
    fresh.keep();

    if sends && input.rereadable() {
        let (input_for_count, options, stats) =
            (input.open()?, read_options.clone(), Arc::clone(&stats));
        std::thread::spawn(move || {
            if let Ok(total) = count_rows(input_for_count, &options) {
                stats.set_total(total);
            }
        });
    }

    let sink = ResultsSink::start(
        destination,
        write_header,
        job.excel,
        Arc::clone(&stop),
        Arc::clone(&stats),
        undo_recorded.as_deref(),
    )
    .map_err(|e| {
        Fatal::Aborted(format!(
            "cannot write {}: {}",
            job.output.display(),
            crate::error::describe_write_error(&e)
        ))
    })?;
    let _ = flusher.set(sink.flusher());
    let rate_probe = rate_probe(caller.as_ref());
    let progress = Progress::start(
        console,
        job.report.status_interval,
        Arc::clone(&stats),
        rate_probe,
    );

    let pipeline = Pipeline {
        mode,
        concurrency: job.pacing.concurrency as usize,
        stats: Arc::clone(&stats),
        stop: Arc::clone(&stop),
        thresholds: job.thresholds,
        ledger,
        judged: Default::default(),
        hand_over_each: input.may_block(),
    };
    pipeline.run(reader, sink.sender()).await;
    progress.finish().await;

    close_files(sink, undo.as_ref(), &stop).await;

    let snapshot = stats.snapshot();
    let stopped = stop.reason();
    let ending = stopped
        .as_ref()
        .map_or_else(|| snapshot.ending(), |r| r.ending());
    let invalid = snapshot.count(crate::outcome::Outcome::Invalid);
    if invalid > INVALID_SHOWN {
        let results = if to_stdout {
            "the results on standard output".to_string()
        } else {
            job.output.display().to_string()
        };
        tracing::warn!(
            "… and {} more invalid rows: see the error column of {results}",
            invalid - INVALID_SHOWN
        );
    }
    if stopped.is_none()
        && let Some(limit) = job.selection.limit
        && snapshot.rows_read >= limit
    {
        canary_end(job, &input, &read_options, limit).await;
    }
    let next = match &stopped {
        _ if ending == Ending::CLEAN => None,
        Some(crate::run::stop::StopReason::Interrupted) => job.next_after_interrupt(),
        Some(_) => job.next_after_abort(),
        None => job.next_after_failed_rows(),
    };
    drop(target.take());
    Ok(RunSummary {
        command: job.command,
        snapshot,
        rate_changes: caller.as_ref().map_or(0, |c| c.pacer.rate_changes()),
        learned: caller.as_ref().and_then(|c| c.pacer.learned()),
        asked_rate: job.pacing.rate.per_second(),
        ending,
        input: Some(input.label().to_string()),
        output: job.output.display().to_string(),
        started_at,
        ended_at: SystemTime::now(),
        stopped: stopped.as_ref().map(|r| r.describe()),
        next,
        exported: None,
        command_line: Some(crate::cmd::command_line()),
    })
}

/// A results file `--resume` appends to.
const LEDGER_APPEND: Existing = Existing::Append {
    other_header: "it is not a results file of this version of the tool; name another \
                   results file with -o (a new one starts this job's ledger afresh)",
};

/// Invalid rows shown on stderr as they are read; the rest are counted.
const INVALID_SHOWN: u64 = crate::run::pipeline::INVALID_SHOWN;

/// Connects for a job that sends (the token is checked before anything
/// else goes) and says what the pipeline does with each row; a dry run
/// connects to nothing.
async fn connect(
    job: &Job<'_>,
    target: Option<&Target>,
    stats: &Arc<Stats>,
    stop: &Arc<StopSignal>,
    undo: Option<&Arc<UndoWriter>>,
) -> Result<Mode, Fatal> {
    Ok(match target {
        None => Mode::DryRun,
        Some(target) => {
            let caller = target.caller(
                job.pacing,
                job.pacing.rate,
                Arc::clone(stats),
                Arc::clone(stop),
            )?;
            check_token(&caller, &target.base_url).await?;
            let caller = Arc::new(caller);
            if job.kind == Kind::Plan {
                Mode::Plan { caller }
            } else {
                Mode::Apply {
                    caller,
                    options: ApplyOptions {
                        skip_unchanged: job.skip_unchanged,
                        undo: undo.cloned(),
                    },
                }
            }
        }
    })
}

/// What the progress line shows of the pacer: its rate, what it learned of
/// the server's limit, and a pause a 429 imposed.
fn rate_probe(caller: Option<&Arc<Caller>>) -> Option<RateProbe> {
    caller.map(|c| {
        let c = Arc::clone(c);
        Arc::new(move || Pace {
            rate: c.pacer.current_rate(),
            learned: c.pacer.learned(),
            paused: c
                .pacer
                .paused_until()
                .map(|until| until.saturating_duration_since(std::time::Instant::now())),
        }) as RateProbe
    })
}

/// Closes the results and the undo file; a failure to write either stops
/// the run (exit 3), whatever it did before.
async fn close_files(sink: ResultsSink, undo: Option<&Arc<UndoWriter>>, stop: &StopSignal) {
    // Off the runtime: a writer stuck on a stalled pipe must not keep a
    // second interrupt from being answered.
    let write_error = match tokio::task::spawn_blocking(move || sink.finish()).await {
        Ok(result) => result.err(),
        Err(_) => Some("the results writer stopped unexpectedly".to_string()),
    };
    if let Some(undo) = undo
        && let Err(e) = undo.finish()
    {
        stop.stop(crate::run::stop::StopReason::Failed(format!(
            "cannot write the undo file: {}",
            crate::error::describe_write_error(&e)
        )));
    }
    if let Some(e) = write_error {
        stop.stop(crate::run::stop::StopReason::Failed(e));
    }
}

/// What a job's flags come to once checked, before any file is opened.
struct Checked {
    /// How the reader reads (the delimiter is filled in once the input is
    /// seen).
    read_options: ReadOptions,
    /// `-o -`: results go to standard output.
    to_stdout: bool,
}

/// Checks the flags and the output paths: anything wrong here refuses the
/// job before a file is opened (exit 2).
fn validate(job: &Job<'_>) -> Result<Checked, Fatal> {
    if job.selection.null_token.trim().is_empty() {
        return Err(Fatal::Usage(
            "--null-token cannot be empty: an empty cell already means \"leave unchanged\"; \
             give a text such as null or -"
                .into(),
        ));
    }
    let shard = job
        .selection
        .shard
        .map(|spec| spec.resolve(std::env::var("JOB_COMPLETION_INDEX").ok().as_deref()))
        .transpose()
        .map_err(Fatal::Usage)?;
    let read_options = ReadOptions {
        null_token: job.selection.null_token.trim().to_string(),
        shard,
        limit: job.selection.limit,
        delimiter: Default::default(),
    };
    let to_stdout = job.output.as_os_str() == "-";
    if job.resume && to_stdout {
        return Err(Fatal::Usage(
            "--resume needs -o to name a results file (not standard output)".into(),
        ));
    }
    if job.html_report.is_some() && to_stdout {
        return Err(Fatal::Usage(
            "--report needs -o to name a results file (the report is built from it), not \
             standard output"
                .into(),
        ));
    }

    let mut outputs = vec![(
        "-o",
        job.output,
        if job.kind == Kind::Plan {
            Role::Plan
        } else {
            Role::RunResults
        },
    )];
    if let Some(undo) = job.undo_file {
        outputs.push(("--undo-file", undo, Role::Undo));
    }
    for (flag, path) in [
        ("--summary-json", job.report.summary_json.as_deref()),
        ("--metrics-file", job.report.metrics_file.as_deref()),
        ("--report", job.html_report),
    ] {
        if let Some(path) = path {
            outputs.push((flag, path, Role::Report));
        }
    }
    files::check(Some(job.input), &outputs)?;
    for path in [
        job.report.summary_json.as_deref(),
        job.report.metrics_file.as_deref(),
        job.html_report,
    ]
    .into_iter()
    .flatten()
    {
        ledger::check_room_beside(path)?;
    }
    Ok(Checked {
        read_options,
        to_stdout,
    })
}

/// Opens the undo file (`--undo-file`): appended to with `--resume`,
/// refused when it holds rows otherwise.
fn open_undo(
    job: &Job<'_>,
    columns: Vec<crate::fields::Field>,
    fresh: &mut Fresh,
) -> Result<Option<Arc<UndoWriter>>, Fatal> {
    Ok(match job.undo_file {
        Some(path) => {
            fresh.note(path);
            Some(Arc::new(UndoWriter::open(
                path,
                columns,
                if job.resume {
                    Existing::Append {
                        other_header: "the input now sets other columns than this undo file \
                                       records, so --resume cannot go on with it: give the input \
                                       its earlier columns, or start a new job with another -o \
                                       and another --undo-file (keep this one: it holds the \
                                       previous values of the run that wrote it)",
                    }
                } else {
                    Existing::Refuse {
                        advice: "add --resume to go on with the run that wrote it, or choose \
                                 another --undo-file (delete it only once you are sure that run \
                                 need not be undone)",
                    }
                },
            )?))
        }
        None => None,
    })
}

/// What to do with a results file that already holds rows.
fn results_policy(job: &Job<'_>) -> Existing {
    match (job.resume, job.force) {
        (true, _) => LEDGER_APPEND,
        (false, true) => Existing::Overwrite,
        (false, false) if job.kind == Kind::Plan => Existing::Refuse {
            advice: "add --force to overwrite it",
        },
        (false, false) => Existing::Refuse {
            advice: "add --resume to continue the run it records, or --force to overwrite it",
        },
    }
}

impl Job<'_> {
    fn to_stdout(&self) -> bool {
        self.output.as_os_str() == "-"
    }

    /// How this job goes on from where it is: `--resume` for a run that
    /// sends (rows already updated are skipped), again from the start for a
    /// plan or a dry run (which change nothing).
    fn again(&self) -> Option<Again> {
        match (self.kind, self.to_stdout()) {
            // --resume needs a results file to read.
            (Kind::Apply, true) => None,
            (Kind::Apply, false) => Some(Again::Resume),
            (_, true) => Some(Again::Same),
            (_, false) => Some(Again::Restart),
        }
    }

    fn next_after_interrupt(&self) -> Option<String> {
        let command = hint::command(self.again()?, false);
        Some(match self.kind {
            Kind::Apply => format!("to resume: {command}"),
            Kind::Plan => format!("to plan again: {command}"),
            Kind::DryRun => format!("to check again: {command}"),
        })
    }

    fn next_after_abort(&self) -> Option<String> {
        let command = hint::command(self.again()?, false);
        Some(match self.kind {
            Kind::Apply => format!(
                "see the error column of {}; once the cause is fixed, resume: {command}",
                self.output.display()
            ),
            Kind::Plan => format!("once the cause is fixed, plan again: {command}"),
            Kind::DryRun => format!("once the cause is fixed, check again: {command}"),
        })
    }

    fn next_after_failed_rows(&self) -> Option<String> {
        let command = hint::command(self.again()?, false);
        Some(match self.kind {
            Kind::Apply => format!(
                "after fixing the input or the cause, send the rows that did not succeed \
                 again: {command}"
            ),
            Kind::Plan => format!("to plan again: {command}"),
            Kind::DryRun => format!("after fixing the input, check again: {command}"),
        })
    }
}

/// A canary (`--limit N`) that left rows unread says how many, and the
/// command that goes on with them.
async fn canary_end(job: &Job<'_>, input: &InputSource, options: &ReadOptions, limit: u64) {
    let all = ReadOptions {
        limit: None,
        ..options.clone()
    };
    let rest = if input.rereadable() {
        let Ok(source) = input.open() else { return };
        match tokio::task::spawn_blocking(move || count_rows(source, &all)).await {
            Ok(Ok(total)) if total > limit => format!("{} rows", total - limit),
            Ok(Ok(_)) => return,
            _ => "the rows".to_string(),
        }
    } else {
        "the rows (standard input cannot be read again to count them)".to_string()
    };
    let Some(again) = job.again() else {
        tracing::info!(
            "--limit {limit}: {limit} rows done; {rest} after them were not read; to go on \
             with them, name a results file with -o and add --resume"
        );
        return;
    };
    tracing::info!(
        "--limit {limit}: {limit} rows done; {rest} after them were not read; to continue: {}",
        hint::command(again, true)
    );
}

/// `--resume` goes on only with the undo file the recorded run kept: without
/// it, the accounts changed next would have no undo rows; with another, the
/// previous values would be split between two files.
fn check_undo_of_ledger(
    ledger: &Ledger,
    undo_file: Option<&Path>,
    output: &Path,
) -> Result<(), Fatal> {
    let Some(recorded) = ledger.undo_file() else {
        return Ok(());
    };
    let recorded_path = Path::new(recorded);
    match undo_file {
        None => Err(Fatal::Usage(format!(
            "{} records a run that kept its previous values in the undo file {recorded}: \
             add --undo-file {recorded} to go on (the accounts changed next need their \
             previous values there too); nothing was sent",
            output.display()
        ))),
        // The directory moved: the recorded path is gone, and a file of the
        // same name is given.
        Some(given)
            if !recorded_path.exists()
                && given.exists()
                && given.file_name() == recorded_path.file_name() =>
        {
            tracing::warn!(
                "{} records the undo file at {recorded}, which is gone; going on with {} \
                 (the same name)",
                output.display(),
                given.display()
            );
            Ok(())
        }
        Some(given) if !files::same_path(given, recorded_path) => Err(Fatal::Usage(format!(
            "{} records a run that kept its undo file at {recorded}, not {}: pass \
             --undo-file {recorded}, so that one file holds every previous value; nothing \
             was sent",
            output.display(),
            given.display()
        ))),
        Some(_) => Ok(()),
    }
}

/// The valid accounts an input names, for seeding the built-in simulator.
fn accounts_in(
    input: &InputSource,
    options: &ReadOptions,
) -> Result<Vec<crate::sim::Account>, Fatal> {
    let reader = RowReader::new(input.open()?, options.clone())?;
    Ok(reader
        .map_while(Result::ok)
        .filter_map(|row| row.patch.ok())
        .map(|patch| crate::sim::Account::generated(patch.client_id))
        .collect())
}

/// On a terminal, before a large run against a remote API: show what is about
/// to happen and ask. Never asks without a terminal (cron, CI, pipes).
async fn confirm(
    input: &InputSource,
    options: &ReadOptions,
    above: u64,
    target: &Target,
    pacing: &PacingArgs,
) -> Result<(), Fatal> {
    let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    let remote =
        target.simulator.is_none() && !crate::client::api::is_loopback_url(&target.base_url);
    if !should_ask(
        interactive,
        remote,
        input.rereadable().then_some(u64::MAX),
        above,
    ) {
        return Ok(());
    }
    let rows = count_rows(input.open()?, options)?;
    if !should_ask(interactive, remote, Some(rows), above) {
        return Ok(());
    }
    let estimate = match pacing.rate.per_second() {
        Some(per_second) => format!(
            "about {}",
            humantime::format_duration(Duration::from_secs(
                (rows as f64 / per_second).ceil() as u64
            ))
        ),
        None => "as fast as the API answers".to_string(),
    };
    eprint!(
        "About to change up to {rows} accounts at {} at {} ({estimate}).\nContinue? [y/N] ",
        target.base_url, pacing.rate
    );
    let _ = std::io::stderr().flush();
    let answer = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).map(|_| line)
    })
    .await
    .ok()
    .and_then(Result::ok)
    .unwrap_or_default();
    if matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        Ok(())
    } else {
        Err(Fatal::Usage(
            "not confirmed; nothing was sent (--yes skips the question)".into(),
        ))
    }
}

/// Only a person at a terminal is asked, only for a remote API, and only when
/// the run has more than `above` rows (`rows` is `None` when they cannot be
/// counted ahead, as for standard input).
fn should_ask(interactive: bool, remote: bool, rows: Option<u64>, above: u64) -> bool {
    interactive && remote && rows.is_some_and(|rows| rows > above)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asks_only_people_about_large_remote_runs() {
        assert!(should_ask(true, true, Some(101), 100));
        assert!(!should_ask(true, true, Some(100), 100));
        assert!(
            !should_ask(false, true, Some(10_000), 100),
            "never without a terminal"
        );
        assert!(
            !should_ask(true, false, Some(10_000), 100),
            "never for a local API"
        );
        assert!(
            !should_ask(true, true, None, 100),
            "never when rows cannot be counted"
        );
    }
}
