//! The pipeline: a reader thread streams rows from the input, workers take
//! them as they free up (so memory does not grow with the file), and every
//! finished row goes to the results writer.
//!
//! ```text
//! input ──reader thread──▶ bounded channel ──▶ N workers ──▶ results thread
//!              │ invalid / dry-run rows                          ▲
//!              └─────────────────────────────────────────────────┘
//! ```
//!
//! Rows travel in small chunks, so that neither the reader nor a worker is
//! woken for every row; at most a few chunks are read ahead.

use std::collections::VecDeque;
use std::future::Future;
use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{Mutex, mpsc};

use crate::client::call::ROWS_PER_SLOT;
use crate::fields::ClientPatch;
use crate::input::reader::{InputRow, RowReader};
use crate::outcome::{Outcome, RowResult};
use crate::results::ledger::{Ledger, Resume};
use crate::results::writer::{PackedRows, ResultSender};
use crate::run::apply::{self, ValidRow};
use crate::run::mode::{Connected, Mode};
use crate::run::stats::Stats;
use crate::run::stop::{StopReason, StopSignal};

/// `--max-failures` and `--max-failure-rate`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    pub max_failures: Option<u64>,
    /// `1.0` turns the rate check off.
    pub max_failure_rate: f64,
}

/// The failure rate is judged only after this many rows were sent.
pub const FAILURE_RATE_MIN_SENT: u64 = 50;

/// How long a stopped run waits for the reader to hand over its last rows.
const READER_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

/// Valid rows handed to the workers at once, at most. The reader is woken
/// once a chunk: at 32, its wake-ups were a third of a fast run's futex
/// calls, each one taken on the runtime thread.
const CHUNK: usize = 128;
/// Chunks read ahead of the workers.
const CHUNKS_AHEAD: usize = 2;
/// Invalid rows shown on stderr as they are read (a dry run's errors would
/// otherwise be only in the file); the rest are counted at the end.
pub const INVALID_SHOWN: u64 = 5;

/// Bytes of invalid and dry-run rows the reader packs before handing them to
/// the results writer.
const RECORDS_BATCH: usize = 64 * 1024;

/// What the reader finished itself (invalid and dry-run rows), packed for
/// the results writer, and its counts. Both reach the shared side in batches
/// (an atomic add per row and counter was a few percent of a dry run);
/// outcomes are counted by the writer once their rows are on disk, so that
/// the summary matches the results file.
struct Finished<'a> {
    stats: &'a Stats,
    results: &'a ResultSender,
    rows: PackedRows,
    read: u64,
    already_done: u64,
    changed: u64,
    /// The clock as last read (ms since the epoch), and the rows stamped
    /// with it since: see [`Finished::now`].
    clock: Option<u64>,
    stamped: u32,
}

/// Rows a reading of the clock stamps, at most. Reading it was a sixth of
/// the reader's time in a dry run on a virtual machine (a `clock_gettime`
/// costs tens of nanoseconds there); between two readings the reader only
/// computes (a wait, for the input or for the writer, forgets the reading),
/// so rows stamped with it ended within microseconds of it, in the same
/// millisecond but for the odd one at its edge.
const STAMPS_PER_CLOCK_READ: u32 = 16;

impl<'a> Finished<'a> {
    fn new(stats: &'a Stats, results: &'a ResultSender) -> Finished<'a> {
        Finished {
            stats,
            results,
            rows: PackedRows::with_capacity(RECORDS_BATCH + 4096),
            read: 0,
            already_done: 0,
            changed: 0,
            clock: None,
            stamped: 0,
        }
    }

    /// When a row ends: the clock, read again after a wait or every
    /// [`STAMPS_PER_CLOCK_READ`] rows.
    fn now(&mut self) -> u64 {
        match self.clock {
            Some(millis) if self.stamped < STAMPS_PER_CLOCK_READ => {
                self.stamped += 1;
                millis
            }
            _ => {
                let millis = crate::outcome::now_millis();
                self.clock = Some(millis);
                self.stamped = 1;
                millis
            }
        }
    }

    /// The reader may have waited: the next row reads the clock again.
    fn forget_clock(&mut self) {
        self.clock = None;
    }

    fn push(
        &mut self,
        line: u64,
        key: &str,
        outcome: Outcome,
        error: &str,
        request: Option<&ClientPatch>,
    ) {
        let finished_at = self.now();
        self.rows
            .push(line, finished_at, key, outcome, error, request);
    }

    /// Hands the packed rows to the writer and publishes the counts.
    fn hand_over(&mut self) {
        let take = |n: &mut u64| Some(std::mem::take(n)).filter(|n| *n > 0);
        if !self.rows.is_empty() {
            // A full batch is followed by another of the same size; rows
            // handed over one by one (input from a pipe) need no more room
            // than they take.
            let room = if self.rows.len() >= RECORDS_BATCH {
                RECORDS_BATCH + 4096
            } else {
                0
            };
            let rows = std::mem::replace(&mut self.rows, PackedRows::with_capacity(room));
            self.results.send_packed(rows);
        }
        if let Some(n) = take(&mut self.read) {
            self.stats.rows_read(n);
        }
        if let Some(n) = take(&mut self.already_done) {
            self.stats.already_done(n);
        }
        if let Some(n) = take(&mut self.changed) {
            self.stats.changed_since_last_run(n);
        }
        // Handing over may have waited for room.
        self.forget_clock();
    }
}

/// Valid rows waiting for a worker: a chunk being taken apart, and the
/// channel the next chunks come from.
struct WorkQueue {
    rows: VecDeque<ValidRow>,
    chunks: mpsc::Receiver<Vec<ValidRow>>,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            max_failures: None,
            max_failure_rate: 0.5,
        }
    }
}

impl Thresholds {
    /// Names the threshold crossed by `failures` out of `sent` rows, if any.
    pub fn crossed(&self, failures: u64, sent: u64) -> Option<String> {
        if let Some(max) = self.max_failures
            && failures >= max
        {
            return Some(format!(
                "--max-failures {max} reached: {failures} rows failed"
            ));
        }
        if self.max_failure_rate < 1.0
            && sent >= FAILURE_RATE_MIN_SENT
            && failures as f64 > self.max_failure_rate * sent as f64
        {
            return Some(format!(
                "--max-failure-rate {} crossed: {failures} of {sent} rows sent failed ({:.0}%)",
                self.max_failure_rate,
                100.0 * failures as f64 / sent as f64
            ));
        }
        None
    }
}

/// Rows judged by the failure thresholds.
#[derive(Debug, Default)]
pub struct Judged {
    sent: AtomicU64,
    failures: AtomicU64,
}

/// Everything the workers share.
pub struct Pipeline {
    pub mode: Connected,
    pub concurrency: usize,
    pub stats: Arc<Stats>,
    pub stop: Arc<StopSignal>,
    pub thresholds: Thresholds,
    /// What earlier runs recorded (`--resume`).
    pub ledger: Ledger,
    /// Rows that ended `failed` or `mismatch`, and rows sent, as they end:
    /// for the failure thresholds, which cannot wait for the writer.
    pub judged: Judged,
    /// The input may keep the reader waiting (a pipe, standard input): rows
    /// it finishes itself are handed over one by one rather than in batches,
    /// so that none is held back while it waits.
    pub hand_over_each: bool,
}

impl Pipeline {
    /// Runs every row of `reader` through the pipeline and returns when all
    /// are done or the run stopped and its in-flight rows are recorded.
    pub async fn run<R: Read + Send + 'static>(self, reader: RowReader<R>, results: ResultSender) {
        let shared = Arc::new(self);
        let (chunks_tx, chunks_rx) = mpsc::channel::<Vec<ValidRow>>(CHUNKS_AHEAD);
        let queue = Arc::new(Mutex::new(WorkQueue {
            rows: VecDeque::with_capacity(CHUNK),
            chunks: chunks_rx,
        }));

        // What the workers do with each row, with what that needs. A dry run
        // sends nothing: no worker starts and the reader finishes every row.
        let workers = match &shared.mode {
            Mode::DryRun => Vec::new(),
            Mode::Apply { api, options } => shared.start_workers(&queue, &results, |worker| {
                let (api, options) = (Arc::clone(api), options.clone());
                async move { worker.work(|row| apply::apply(&api, row, &options)).await }
            }),
            Mode::Plan { api } => shared.start_workers(&queue, &results, |worker| {
                let api = Arc::clone(api);
                async move { worker.work(|row| apply::plan(&api, row)).await }
            }),
        };
        // Without workers the reader keeps every row.
        let chunks_tx = (!workers.is_empty()).then_some(chunks_tx);

        let reading = {
            let shared = Arc::clone(&shared);
            let results = results.clone();
            tokio::task::spawn_blocking(move || shared.read_rows(reader, chunks_tx, &results))
        };

        for worker in workers {
            if let Err(e) = worker.await {
                shared
                    .stop
                    .stop(StopReason::Failed(format!("a worker failed: {e}")));
            }
        }
        // Rows still queued were never started: they get no result, and
        // closing the channel tells the reader to stop.
        queue.lock().await.chunks.close();
        // After a stop the reader may be blocked on its input (a pipe whose
        // writer went quiet): it gets a moment to hand over the rows it
        // finished, then is left behind rather than waited for.
        let mut reading = reading;
        let read = tokio::select! {
            read = &mut reading => read,
            _ = shared.stop.token().cancelled() => {
                match tokio::time::timeout(READER_GRACE, &mut reading).await {
                    Ok(read) => read,
                    Err(_) => return,
                }
            }
        };
        if read.is_err() {
            shared
                .stop
                .stop(StopReason::Failed("the input reader failed".into()));
        }
    }

    /// The reader thread: validates rows, records invalid and dry-run rows
    /// itself, and hands valid rows to the workers in chunks.
    fn read_rows<R: Read>(
        &self,
        mut reader: RowReader<R>,
        chunks: Option<mpsc::Sender<Vec<ValidRow>>>,
        results: &ResultSender,
    ) {
        let mut finished = Finished::new(&self.stats, results);
        let mut chunk = Vec::with_capacity(CHUNK);
        let mut invalid_shown = 0;
        // One row read into again and again: the rows finished here (invalid
        // and dry-run rows) are packed from it, and only a row handed to the
        // workers takes its buffers along.
        let mut row = InputRow::default();
        let mut input_reads = reader.input_reads();
        loop {
            if self.stop.is_stopped() {
                break;
            }
            match reader.next_row_into(&mut row) {
                None => break,
                Some(Ok(())) => {}
                Some(Err(e)) => {
                    self.stop
                        .stop(StopReason::Failed(format!("cannot read the input: {e}")));
                    break;
                }
            }
            if reader.input_reads() != input_reads {
                // This row waited for the input.
                input_reads = reader.input_reads();
                finished.forget_clock();
            }
            finished.read += 1;
            let mut changed_since_last_run = false;
            if let Ok(patch) = &row.patch
                && !self.ledger.is_empty()
            {
                match self.ledger.resume(&row.key, &patch.requested()) {
                    Resume::Done => {
                        finished.already_done += 1;
                        continue;
                    }
                    Resume::Changed => changed_since_last_run = true,
                    Resume::Send => {}
                }
            }
            match (&row.patch, &chunks) {
                (Err(error), _) => {
                    if invalid_shown < INVALID_SHOWN {
                        invalid_shown += 1;
                        let key = match row.key.as_str() {
                            "" => "(empty)".to_string(),
                            key => crate::fields::shorten(key),
                        };
                        tracing::warn!("line {}, client_id {key}: {error}", row.line);
                        // Writing to stderr may have waited (a stalled pipe).
                        finished.forget_clock();
                    } else {
                        tracing::debug!(line = row.line, client_id = row.key, "invalid: {error}");
                    }
                    finished.push(row.line, &row.key, Outcome::Invalid, error, None);
                }
                (Ok(patch), None) => {
                    finished.changed += u64::from(changed_since_last_run);
                    finished.push(row.line, &row.key, Outcome::DryRun, "", Some(patch));
                }
                (Ok(_), Some(chunks)) => {
                    if let Ok(patch) = std::mem::replace(&mut row.patch, Err(String::new())) {
                        chunk.push(ValidRow {
                            line: row.line,
                            key: std::mem::take(&mut row.key),
                            patch,
                            changed_since_last_run,
                        });
                    }
                    // A full chunk waits for room; a partial one goes only
                    // when there is room already, so idle workers are fed at
                    // once and busy ones get whole chunks.
                    let ready = chunk.len() >= CHUNK || chunks.capacity() > 0;
                    if ready {
                        finished.hand_over();
                        let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
                        if chunks.blocking_send(full).is_err() {
                            return;
                        }
                        finished.forget_clock();
                    }
                }
            }
            if self.hand_over_each || finished.rows.len() >= RECORDS_BATCH {
                finished.hand_over();
            }
        }
        finished.hand_over();
        if let Some(chunks) = &chunks
            && !chunk.is_empty()
            && !self.stop.is_stopped()
        {
            let _ = chunks.blocking_send(chunk);
        }
    }

    /// Starts a worker per row kept open (`ROWS_PER_SLOT` per request that
    /// may be in flight, one at least), each running what `worker` makes of
    /// its handles. The caller's slots keep `concurrency` requests in flight
    /// at most.
    fn start_workers<W, Fut>(
        self: &Arc<Self>,
        queue: &Arc<Mutex<WorkQueue>>,
        results: &ResultSender,
        worker: W,
    ) -> Vec<tokio::task::JoinHandle<()>>
    where
        W: Fn(Worker) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        (0..self.concurrency.max(1) * ROWS_PER_SLOT)
            .map(|_| {
                tokio::spawn(worker(Worker {
                    pipeline: Arc::clone(self),
                    queue: Arc::clone(queue),
                    results: results.clone(),
                }))
            })
            .collect()
    }

    /// Counts a finished row and stops the run when a failure threshold is
    /// crossed.
    fn tally(&self, outcome: Outcome, line: u64, client_id: &str, error: &str) {
        tracing::debug!(line, client_id, outcome = outcome.as_str(), "{error}");
        let sent = self.judged.sent.fetch_add(1, Ordering::Relaxed) + 1;
        if matches!(outcome, Outcome::Failed | Outcome::Mismatch) {
            let failures = self.judged.failures.fetch_add(1, Ordering::Relaxed) + 1;
            if let Some(why) = self.thresholds.crossed(failures, sent) {
                self.stop.stop(StopReason::Threshold(why));
            }
        }
    }
}

/// One worker's handles: the pipeline it works for, the queue it takes
/// rows from and where their results go.
struct Worker {
    pipeline: Arc<Pipeline>,
    queue: Arc<Mutex<WorkQueue>>,
    results: ResultSender,
}

impl Worker {
    /// Takes rows until the input ends or the run stops, and does
    /// `row_work` with each: `run`'s or `plan`'s, chosen in `Pipeline::run`.
    async fn work<F, Fut>(self, row_work: F)
    where
        F: Fn(ValidRow) -> Fut,
        Fut: Future<Output = Option<RowResult>>,
    {
        let pipeline = &*self.pipeline;
        loop {
            if pipeline.stop.is_stopped() {
                return;
            }
            let row = {
                let mut queue = self.queue.lock().await;
                match queue.rows.pop_front() {
                    Some(row) => Some(row),
                    None => {
                        let chunk = tokio::select! {
                            chunk = queue.chunks.recv() => chunk,
                            _ = pipeline.stop.token().cancelled() => None,
                        };
                        chunk.and_then(|chunk| {
                            queue.rows.extend(chunk);
                            queue.rows.pop_front()
                        })
                    }
                }
            };
            let Some(row) = row else { return };
            let changed = row.changed_since_last_run;
            if let Some(result) = row_work(row).await {
                // Counted only for a row that ended: one never sent was not
                // sent again either.
                if changed {
                    tracing::info!(
                        line = result.line,
                        client_id = result.client_id,
                        "changed since the last run: sent again"
                    );
                    pipeline.stats.changed_since_last_run(1);
                }
                pipeline.tally(
                    result.outcome,
                    result.line,
                    &result.client_id,
                    &result.error,
                );
                self.results.send(result).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds() {
        let t = Thresholds {
            max_failures: Some(3),
            max_failure_rate: 0.5,
        };
        assert_eq!(t.crossed(2, 10), None);
        assert!(t.crossed(3, 10).unwrap().contains("--max-failures 3"));
        let rate = Thresholds::default();
        assert_eq!(rate.crossed(40, 49), None, "too few rows sent to judge");
        assert_eq!(
            rate.crossed(25, 50),
            None,
            "exactly half is not more than half"
        );
        assert!(
            rate.crossed(26, 50)
                .unwrap()
                .contains("--max-failure-rate 0.5")
        );
        let off = Thresholds {
            max_failures: None,
            max_failure_rate: 1.0,
        };
        assert_eq!(off.crossed(1000, 1000), None);
    }
}
