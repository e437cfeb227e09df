//! `run`: every row of an input file through the pipeline. `plan` (see
//! `plan.rs`) is the same job with a read in place of each PATCH.
//!
//! The flags are checked first, all together, into a `Config` (see
//! `config.rs`); `execute` then takes it through short named steps. The
//! order matters: everything that can still refuse the run (the input's
//! header, the results file, its lock and its ledger, the undo file, room on
//! the disk, the confirmation, the token check) happens before the first
//! PATCH, and a refusal removes the files it created.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use crate::cli::{PacingArgs, RunArgs};
use crate::client::call::Caller;
use crate::cmd::config::{Config, Endpoint, Env, Flags, OutputFile, Results};
use crate::cmd::{Target, check_token, finish};
use crate::error::{Ending, Fatal, Finished};
use crate::hint::{self, Again};
use crate::input::reader::{ReadOptions, RowReader};
use crate::input::source::{InputSource, count_rows};
use crate::logging::Console;
use crate::results::files::{self, Fresh};
use crate::results::format::RESULT_HEADER;
use crate::results::ledger::{self, Ledger};
use crate::results::undo::UndoWriter;
use crate::results::writer::{Destination, Flusher, ResultsSink};
use crate::run::apply::ApplyOptions;
use crate::run::mode::{Connected, Mode};
use crate::run::pipeline::Pipeline;
use crate::run::progress::{Pace, Progress, RateProbe};
use crate::run::stats::Stats;
use crate::run::stop::{StopReason, StopSignal, watch_signals};
use crate::run::summary::RunSummary;

pub async fn run(args: RunArgs, console: Console) -> Ending {
    job(Flags::of_run(&args), console).await
}

/// Runs `run` or `plan` and ends it: summary, report files, exit code. A
/// refusal of its flags ends it too, with the same summary files.
pub(super) async fn job(flags: Flags<'_>, console: Console) -> Ending {
    let started_at = SystemTime::now();
    let result = match Config::new(&flags, &Env::of_process()) {
        Ok(config) => execute(&config, console, started_at).await,
        Err(refused) => Err(refused),
    };
    finish(
        result,
        flags.mode.command(),
        flags.report,
        console,
        started_at,
        Some(flags.input),
        flags.output,
        crate::cmd::HtmlReport {
            path: flags.html_report,
            results: Some(flags.output),
        },
    )
}

/// The job, in the order that keeps its promises: everything that can
/// still refuse it (the input's header, the ledger, the undo file, room on
/// the disk, the confirmation, the token check) comes before the first
/// request that changes anything, and a refusal removes the files it
/// created.
async fn execute(
    config: &Config,
    console: Console,
    started_at: SystemTime,
) -> Result<RunSummary, Fatal> {
    let (input, reader, read_options) = open_input(config)?;
    let simulator = start_simulator(config, &input, &read_options).await?;
    let target = match config.mode.api() {
        None => None,
        Some(Endpoint::Api(target)) => Some(target),
        Some(Endpoint::Simulator) => simulator.as_ref(),
    };

    // Files this command creates are removed again if it is refused before
    // it starts.
    let mut fresh = Fresh::default();
    let files = open_files(config, &input, &read_options, &reader, &mut fresh)?;
    if let (Some(above), Some(target)) = (config.confirm_above, target) {
        confirm(&input, &read_options, above, target, &config.pacing).await?;
    }

    let stats = Arc::new(Stats::new());
    let stop = StopSignal::new();
    let flusher = watch_interrupts(&stop, &fresh);
    let mode = connect(config, target, &stats, &stop, files.undo).await?;
    // Nothing refused the command: from here on its files stay.
    fresh.keep();

    if mode.api().is_some() && input.rereadable() {
        count_rows_aside(&input, &read_options, &stats)?;
    }
    let sink = start_results(config, files.destination, files.write_header, &stop, &stats)?;
    let _ = flusher.set(sink.flusher());
    let caller = mode.api().cloned();
    let undo = mode.undo().cloned();
    let progress = Progress::start(
        console,
        config.status_interval,
        Arc::clone(&stats),
        rate_probe(caller.as_ref()),
    );
    let pipeline = Pipeline {
        mode,
        concurrency: config.pacing.concurrency as usize,
        stats: Arc::clone(&stats),
        stop: Arc::clone(&stop),
        thresholds: config.thresholds,
        ledger: files.ledger,
        judged: Default::default(),
        hand_over_each: input.may_block(),
    };
    pipeline.run(reader, sink.sender()).await;
    progress.finish().await;
    close_files(sink, undo.as_ref(), &stop).await;

    drop(simulator);
    Ok(summarise(
        config,
        &input,
        &read_options,
        caller.as_deref(),
        &stats,
        &stop,
        started_at,
    )
    .await)
}

/// The input a job reads: spooled when it must be read more than once, its
/// encoding and delimiter found, its header checked. Returns the reader of
/// its rows and the options every later reading of it takes.
fn open_input(config: &Config) -> Result<(InputSource, RowReader<Input>, ReadOptions), Fatal> {
    let mut input = InputSource::new(&config.input);
    if config.spool_input {
        input.spool()?;
    }
    let dialect = input.detect(config.delimiter)?;
    tracing::info!("{}", dialect.describe(input.label()));
    let read_options = ReadOptions {
        delimiter: dialect.delimiter,
        ..config.read_options.clone()
    };
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
    Ok((input, reader, read_options))
}

/// The rows as `InputSource::open` gives them.
type Input = Box<dyn std::io::Read + Send>;

/// `--simulator`: the built-in simulator, holding the input's accounts,
/// for a job that sends.
async fn start_simulator(
    config: &Config,
    input: &InputSource,
    read_options: &ReadOptions,
) -> Result<Option<Target>, Fatal> {
    Ok(match config.mode.api() {
        Some(Endpoint::Simulator) => {
            Some(Target::simulator(accounts_in(input, read_options)?).await?)
        }
        _ => None,
    })
}

/// The files a job writes, open and checked.
struct OpenFiles {
    destination: Destination,
    /// The results file has no header yet.
    write_header: bool,
    /// What earlier runs recorded (`--resume`).
    ledger: Ledger,
    undo: Option<Arc<UndoWriter>>,
}

/// Opens the results file (locked for the whole run, never overwritten by
/// mistake) and the undo file. With `--resume`, the ledger is read first:
/// it says which undo file the run it records kept.
fn open_files(
    config: &Config,
    input: &InputSource,
    read_options: &ReadOptions,
    reader: &RowReader<Input>,
    fresh: &mut Fresh,
) -> Result<OpenFiles, Fatal> {
    let mut results = match &config.results {
        Results::Stdout => None,
        Results::File(out) => {
            fresh.note(&out.path);
            Some((ledger::open_locked(&out.path)?, out))
        }
    };
    let mut ledger = Ledger::default();
    let mut has_header = false;
    if config.resume
        && let Some((file, out)) = results.as_mut()
    {
        has_header = read_ledger(config, input, read_options, file, out, &mut ledger)?;
    }
    // The undo file before the results file is touched: a refusal must
    // leave both as they were.
    let undo = open_undo(config.mode.undo(), reader.header().fields(), fresh)?;
    let (destination, write_header) = match results {
        None => (Destination::Stdout, true),
        Some((mut file, out)) => {
            if !config.resume {
                has_header =
                    ledger::prepare(&mut file, &out.path, &RESULT_HEADER, out.existing, |_| {})?;
            }
            ledger::check_room(&mut file, &out.path)?;
            (Destination::File(file), !has_header)
        }
    };
    Ok(OpenFiles {
        destination,
        write_header,
        ledger,
        undo,
    })
}

/// `--resume`: reads the ledger, checks it against the input's keys and the
/// undo file it recorded. Returns whether the file holds a header.
fn read_ledger(
    config: &Config,
    input: &InputSource,
    read_options: &ReadOptions,
    file: &mut std::fs::File,
    out: &OutputFile,
    ledger: &mut Ledger,
) -> Result<bool, Fatal> {
    let has_header = ledger::prepare(file, &out.path, &RESULT_HEADER, out.existing, |r| {
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
    ledger.check_against(keys, &out.path)?;
    check_undo_of_ledger(
        ledger,
        config.mode.undo().map(|undo| undo.path.as_path()),
        &out.path,
    )?;
    Ok(has_header)
}

/// Watches for interrupts from here on, so that one during the token check
/// ends the run cleanly too: before the results writer exists, no file is
/// left behind; after, its flush joins (set it in the returned cell).
fn watch_interrupts(stop: &Arc<StopSignal>, fresh: &Fresh) -> Arc<OnceLock<Flusher>> {
    let flusher: Arc<OnceLock<Flusher>> = Arc::new(OnceLock::new());
    let watched = Arc::clone(&flusher);
    let fresh = fresh.files();
    watch_signals(Arc::clone(stop), move || {
        match watched.get() {
            Some(flusher) => flusher.flush_now(),
            // Interrupted before it started: no file left behind.
            None => files::remove_fresh(&fresh),
        }
        crate::error::exit_interrupted();
    });
    flusher
}

/// Counts the input's rows on a thread of their own, for the progress
/// bar's total.
fn count_rows_aside(
    input: &InputSource,
    read_options: &ReadOptions,
    stats: &Arc<Stats>,
) -> Result<(), Fatal> {
    let (source, options, stats) = (input.open()?, read_options.clone(), Arc::clone(stats));
    std::thread::spawn(move || {
        if let Ok(total) = count_rows(source, &options) {
            stats.set_total(total);
        }
    });
    Ok(())
}

/// Starts the results writer thread.
fn start_results(
    config: &Config,
    destination: Destination,
    write_header: bool,
    stop: &Arc<StopSignal>,
    stats: &Arc<Stats>,
) -> Result<ResultsSink, Fatal> {
    // The ledger remembers the undo file, for `--resume`.
    let undo_recorded = config
        .mode
        .undo()
        .map(|undo| std::path::absolute(&undo.path).unwrap_or_else(|_| undo.path.clone()))
        .map(|path| path.display().to_string());
    ResultsSink::start(
        destination,
        write_header,
        config.excel,
        Arc::clone(stop),
        Arc::clone(stats),
        undo_recorded.as_deref(),
    )
    .map_err(|e| {
        Fatal::Aborted(format!(
            "cannot write {}: {}",
            config.output().display(),
            crate::error::describe_write_error(&e)
        ))
    })
}

/// What the job did, once its rows are done: the summary, the invalid rows
/// not shown, what a canary left.
async fn summarise(
    config: &Config,
    input: &InputSource,
    read_options: &ReadOptions,
    caller: Option<&Caller>,
    stats: &Stats,
    stop: &StopSignal,
    started_at: SystemTime,
) -> RunSummary {
    let snapshot = stats.snapshot();
    let stopped = stop.reason();
    let ending = stopped
        .as_ref()
        .map_or_else(|| Ok(snapshot.finished()), |r| Err(r.unfinished()));
    let invalid = snapshot.count(crate::outcome::Outcome::Invalid);
    if invalid > INVALID_SHOWN {
        let results = match config.results {
            Results::Stdout => "the results on standard output".to_string(),
            Results::File(ref out) => out.path.display().to_string(),
        };
        tracing::warn!(
            "… and {} more invalid rows: see the error column of {results}",
            invalid - INVALID_SHOWN
        );
    }
    if stopped.is_none()
        && let Some(limit) = read_options.limit
        && snapshot.rows_read >= limit
    {
        canary_end(config, input, read_options, limit).await;
    }
    let next = match &stopped {
        _ if ending == Ok(Finished::CLEAN) => None,
        Some(StopReason::Interrupted) => next_after_interrupt(config),
        Some(_) => next_after_abort(config),
        None => next_after_failed_rows(config),
    };
    RunSummary {
        command: config.mode.command(),
        snapshot,
        rate_changes: caller.map_or(0, |c| c.pacer.rate_changes()),
        learned: caller.and_then(|c| c.pacer.learned()),
        asked_rate: config.pacing.rate.per_second(),
        ending,
        input: Some(input.label().to_string()),
        output: config.output().display().to_string(),
        started_at,
        ended_at: SystemTime::now(),
        stopped: stopped.as_ref().map(|r| r.describe()),
        next,
        exported: None,
        command_line: Some(crate::cmd::command_line()),
    }
}

/// Invalid rows shown on stderr as they are read; the rest are counted.
const INVALID_SHOWN: u64 = crate::run::pipeline::INVALID_SHOWN;

/// Connects a job that sends (the token is checked before anything else
/// goes) and gives the mode the pipeline runs, with what it needs: the one
/// place a `Mode` gets its caller and its undo writer. A dry run connects
/// to nothing.
async fn connect(
    config: &Config,
    target: Option<&Target>,
    stats: &Arc<Stats>,
    stop: &Arc<StopSignal>,
    undo: Option<Arc<UndoWriter>>,
) -> Result<Connected, Fatal> {
    let caller = match target {
        None => return Ok(Mode::DryRun),
        Some(target) => {
            let caller = target.caller(
                &config.pacing,
                config.pacing.rate,
                Arc::clone(stats),
                Arc::clone(stop),
            )?;
            check_token(&caller, &target.base_url).await?;
            Arc::new(caller)
        }
    };
    Ok(match &config.mode {
        Mode::DryRun => Mode::DryRun,
        Mode::Plan { .. } => Mode::Plan { api: caller },
        Mode::Apply { options, .. } => Mode::Apply {
            api: caller,
            options: ApplyOptions {
                skip_unchanged: options.skip_unchanged,
                undo,
            },
        },
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
        stop.stop(StopReason::Failed(format!(
            "cannot write the undo file: {}",
            crate::error::describe_write_error(&e)
        )));
    }
    if let Some(e) = write_error {
        stop.stop(StopReason::Failed(e));
    }
}

/// Opens the undo file (`--undo-file`) by its policy: appended to with
/// `--resume`, refused when it holds rows otherwise.
fn open_undo(
    undo: Option<&OutputFile>,
    columns: Vec<crate::fields::Field>,
    fresh: &mut Fresh,
) -> Result<Option<Arc<UndoWriter>>, Fatal> {
    let Some(undo) = undo else { return Ok(None) };
    fresh.note(&undo.path);
    Ok(Some(Arc::new(UndoWriter::open(
        &undo.path,
        columns,
        undo.existing,
    )?)))
}

/// How this job goes on from where it is: `--resume` for a run that sends
/// (rows already updated are skipped), again from the start for a plan or a
/// dry run (which change nothing).
fn again(config: &Config) -> Option<Again> {
    match (&config.mode, &config.results) {
        // --resume needs a results file to read.
        (Mode::Apply { .. }, Results::Stdout) => None,
        (Mode::Apply { .. }, Results::File(_)) => Some(Again::Resume),
        (_, Results::Stdout) => Some(Again::Same),
        (_, Results::File(_)) => Some(Again::Restart),
    }
}

fn next_after_interrupt(config: &Config) -> Option<String> {
    let command = hint::command(again(config)?, false);
    Some(match config.mode {
        Mode::Apply { .. } => format!("to resume: {command}"),
        Mode::Plan { .. } => format!("to plan again: {command}"),
        Mode::DryRun => format!("to check again: {command}"),
    })
}

fn next_after_abort(config: &Config) -> Option<String> {
    let command = hint::command(again(config)?, false);
    Some(match config.mode {
        Mode::Apply { .. } => format!(
            "see the error column of {}; once the cause is fixed, resume: {command}",
            config.output().display()
        ),
        Mode::Plan { .. } => format!("once the cause is fixed, plan again: {command}"),
        Mode::DryRun => format!("once the cause is fixed, check again: {command}"),
    })
}

fn next_after_failed_rows(config: &Config) -> Option<String> {
    let command = hint::command(again(config)?, false);
    Some(match config.mode {
        Mode::Apply { .. } => format!(
            "after fixing the input or the cause, send the rows that did not succeed \
             again: {command}"
        ),
        Mode::Plan { .. } => format!("to plan again: {command}"),
        Mode::DryRun => format!("after fixing the input, check again: {command}"),
    })
}

/// A canary (`--limit N`) that left rows unread says how many, and the
/// command that goes on with them.
async fn canary_end(config: &Config, input: &InputSource, options: &ReadOptions, limit: u64) {
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
    let Some(again) = again(config) else {
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
