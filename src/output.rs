//! The results CSV: one row per input row, written by one writer thread as
//! rows finish, flushed promptly and synced to disk at least once a second.

use std::fs::File;
use std::io::{self, Write};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// The results header. The first seven columns are the contract's; `request`,
/// `duration_ms` and `diff` follow.
pub const RESULT_HEADER: [&str; 10] = [
    "line",
    "client_id",
    "outcome",
    "http_status",
    "attempts",
    "account_status",
    "error",
    "request",
    "duration_ms",
    "diff",
];

/// How a row ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Updated,
    Failed,
    Invalid,
    DryRun,
    Unchanged,
    WouldUpdate,
    Mismatch,
}

impl Outcome {
    pub const ALL: [Outcome; 7] = [
        Outcome::Updated,
        Outcome::Failed,
        Outcome::Invalid,
        Outcome::DryRun,
        Outcome::Unchanged,
        Outcome::WouldUpdate,
        Outcome::Mismatch,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Updated => "updated",
            Outcome::Failed => "failed",
            Outcome::Invalid => "invalid",
            Outcome::DryRun => "dry_run",
            Outcome::Unchanged => "unchanged",
            Outcome::WouldUpdate => "would_update",
            Outcome::Mismatch => "mismatch",
        }
    }

    pub fn parse(text: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.as_str() == text)
    }
}

/// One results row.
#[derive(Debug, Clone, PartialEq)]
pub struct RowResult {
    pub line: u64,
    pub client_id: String,
    pub outcome: Outcome,
    pub http_status: Option<u16>,
    pub attempts: u32,
    pub account_status: Option<String>,
    pub error: String,
    pub request: String,
    pub duration_ms: u64,
    pub diff: String,
}

impl RowResult {
    /// A row that did not validate: nothing was sent.
    pub fn invalid(line: u64, client_id: String, error: String) -> RowResult {
        RowResult {
            line,
            client_id,
            outcome: Outcome::Invalid,
            http_status: None,
            attempts: 0,
            account_status: None,
            error,
            request: String::new(),
            duration_ms: 0,
            diff: String::new(),
        }
    }

    fn write_to<W: Write>(&self, csv: &mut csv::Writer<W>) -> csv::Result<()> {
        let mut line = itoa::Buffer::new();
        let mut status = itoa::Buffer::new();
        let mut attempts = itoa::Buffer::new();
        let mut duration = itoa::Buffer::new();
        csv.write_record([
            line.format(self.line).as_bytes(),
            self.client_id.as_bytes(),
            self.outcome.as_str().as_bytes(),
            self.http_status
                .map_or(&b""[..], |s| status.format(s).as_bytes()),
            attempts.format(self.attempts).as_bytes(),
            self.account_status.as_deref().unwrap_or("").as_bytes(),
            self.error.as_bytes(),
            self.request.as_bytes(),
            duration.format(self.duration_ms).as_bytes(),
            self.diff.as_bytes(),
        ])
    }
}

/// Where results go.
pub enum Destination {
    Stdout,
    /// An open, locked file positioned where writing starts.
    File(File),
}

enum Out {
    Stdout(io::Stdout),
    File(File),
}

impl Write for Out {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Out::Stdout(s) => s.write(buf),
            Out::File(f) => f.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Out::Stdout(s) => s.flush(),
            Out::File(f) => f.flush(),
        }
    }
}

impl Out {
    fn sync(&self) -> io::Result<()> {
        match self {
            Out::Stdout(_) => Ok(()),
            Out::File(f) => f.sync_data(),
        }
    }
}

/// How often written rows are forced to disk, at the least.
const SYNC_EVERY: Duration = Duration::from_secs(1);
/// The writer wakes this often when idle, to sync what it wrote.
const IDLE_WAKE: Duration = Duration::from_millis(250);
/// When fewer rows than this came in one go, rows are trickling in: the
/// writer pauses for `GATHER` so that the next ones arrive together, instead
/// of being woken for each. No row waits longer than that to be flushed.
const TRICKLE: usize = 64;
const GATHER: Duration = Duration::from_millis(10);
/// Batches waiting for the writer; a full queue holds the senders back, so
/// memory stays flat however fast rows finish.
const QUEUE: usize = 256;

/// What goes down the channel: one row from a worker, many from the reader,
/// or the end of the run.
enum Batch {
    One(RowResult),
    Many(Vec<RowResult>),
    Finish,
}

type Shared = Arc<Mutex<csv::Writer<Out>>>;

/// Sends finished rows to the writer thread.
#[derive(Clone)]
pub struct ResultSender(mpsc::SyncSender<Batch>);

impl ResultSender {
    // The writer only hangs up after a write error, which already stops the
    // run and is reported by `finish`: a failed send needs no handling here.

    /// Sends rows from a thread; waits while the writer is behind.
    pub fn send_many(&self, rows: Vec<RowResult>) {
        if !rows.is_empty() {
            let _ = self.0.send(Batch::Many(rows));
        }
    }

    /// Sends a row from an async task. While the writer is behind (a full
    /// disk, a reader of standard output that stopped reading), this waits
    /// without holding up the runtime, so signals are still answered.
    pub async fn send(&self, row: RowResult) {
        let mut batch = Batch::One(row);
        loop {
            match self.0.try_send(batch) {
                Err(mpsc::TrySendError::Full(back)) => {
                    batch = back;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Ok(()) | Err(mpsc::TrySendError::Disconnected(_)) => return,
            }
        }
    }
}

/// Writes whatever the results writer has buffered and forces it to disk,
/// now: for a second interrupt, which exits at once.
pub struct Flusher(Shared);

impl Flusher {
    /// Waits (a second at most) for a write in progress, so that the file
    /// ends on a whole row; a writer stuck on a full disk or a stalled pipe
    /// does not hold up the exit.
    pub fn flush_now(&self) {
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            match self.0.try_lock() {
                Ok(mut csv) => {
                    let _ = csv.flush();
                    let _ = csv.get_ref().sync();
                    return;
                }
                Err(std::sync::TryLockError::Poisoned(e)) => {
                    let mut csv = e.into_inner();
                    let _ = csv.flush();
                    return;
                }
                Err(std::sync::TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(std::sync::TryLockError::WouldBlock) => return,
            }
        }
    }
}

/// The results writer: a thread that owns the file and writes rows in the
/// order they finish.
pub struct ResultsSink {
    sender: Option<mpsc::SyncSender<Batch>>,
    thread: Option<JoinHandle<Result<(), String>>>,
    writer: Shared,
}

impl ResultsSink {
    /// Starts the writer. `write_header` is false when appending to a ledger
    /// that has one. A write error cancels `stop`, which ends the run.
    pub fn start(
        destination: Destination,
        write_header: bool,
        stop: CancellationToken,
    ) -> io::Result<ResultsSink> {
        let out = match destination {
            Destination::Stdout => Out::Stdout(io::stdout()),
            Destination::File(f) => Out::File(f),
        };
        let mut csv = csv::WriterBuilder::new()
            .buffer_capacity(64 * 1024)
            .from_writer(out);
        if write_header {
            csv.write_record(RESULT_HEADER)?;
            csv.flush()?;
        }
        let writer = Arc::new(Mutex::new(csv));
        let (sender, receiver) = mpsc::sync_channel(QUEUE);
        let thread = {
            let writer = Arc::clone(&writer);
            std::thread::Builder::new()
                .name("results".into())
                .spawn(move || write_rows(&writer, &receiver, &stop))?
        };
        Ok(ResultsSink {
            sender: Some(sender),
            thread: Some(thread),
            writer,
        })
    }

    pub fn sender(&self) -> ResultSender {
        ResultSender(self.sender.clone().expect("the sink is open until finish"))
    }

    /// A handle that writes out what is buffered, for a hard exit.
    pub fn flusher(&self) -> Flusher {
        Flusher(Arc::clone(&self.writer))
    }

    /// Ends the run's results: every row sent before is written, flushed and
    /// synced. A sender still held elsewhere (a reader stuck on its input
    /// after an interrupt) does not hold this up.
    pub fn finish(mut self) -> Result<(), String> {
        if let Some(sender) = self.sender.take() {
            let _ = sender.send(Batch::Finish);
        }
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err("the results writer stopped unexpectedly".into()),
            None => Ok(()),
        }
    }
}

fn write_rows(
    writer: &Shared,
    receiver: &mpsc::Receiver<Batch>,
    stop: &CancellationToken,
) -> Result<(), String> {
    let fail = |e: &dyn std::fmt::Display| {
        stop.cancel();
        format!("cannot write the results: {e}")
    };
    let mut finished = false;
    let write = |csv: &mut csv::Writer<Out>, batch: Batch, finished: &mut bool| {
        match batch {
            Batch::One(row) => row.write_to(csv).map(|()| 1),
            Batch::Many(rows) => rows
                .iter()
                .try_for_each(|row| row.write_to(csv))
                .map(|()| rows.len()),
            Batch::Finish => {
                *finished = true;
                Ok(0)
            }
        }
        .map_err(|e| fail(&e))
    };
    let mut last_sync = Instant::now();
    let mut unsynced = false;
    loop {
        let first = match receiver.recv_timeout(IDLE_WAKE) {
            Ok(batch) => Some(batch),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        if let Some(batch) = first {
            let mut csv = writer.lock().unwrap_or_else(|e| e.into_inner());
            let mut written = write(&mut csv, batch, &mut finished)?;
            // Whatever else is ready goes in the same flush.
            for batch in receiver.try_iter().take(QUEUE) {
                written += write(&mut csv, batch, &mut finished)?;
            }
            csv.flush().map_err(|e| fail(&e))?;
            drop(csv);
            unsynced = true;
            if finished {
                break;
            }
            if written < TRICKLE {
                std::thread::sleep(GATHER);
            }
        }
        if unsynced && last_sync.elapsed() >= SYNC_EVERY {
            let csv = writer.lock().unwrap_or_else(|e| e.into_inner());
            csv.get_ref().sync().map_err(|e| fail(&e))?;
            last_sync = Instant::now();
            unsynced = false;
        }
    }
    let mut csv = writer.lock().unwrap_or_else(|e| e.into_inner());
    csv.flush().map_err(|e| fail(&e))?;
    csv.get_ref().sync().map_err(|e| fail(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_written_as_csv() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        let file = File::create(&path).unwrap();
        let sink =
            ResultsSink::start(Destination::File(file), true, CancellationToken::new()).unwrap();
        let tx = sink.sender();
        tx.send_many(vec![RowResult {
            line: 2,
            client_id: "7".into(),
            outcome: Outcome::Updated,
            http_status: Some(200),
            attempts: 1,
            account_status: Some("active".into()),
            error: String::new(),
            request: r#"{"name":"a, \"b\""}"#.into(),
            duration_ms: 12,
            diff: String::new(),
        }]);
        tx.send_many(vec![RowResult::invalid(
            3,
            "x".into(),
            "client_id: `x` bad".into(),
        )]);
        drop(tx);
        sink.finish().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "line,client_id,outcome,http_status,attempts,account_status,error,request,duration_ms,diff\n\
             2,7,updated,200,1,active,,\"{\"\"name\"\":\"\"a, \\\"\"b\\\"\"\"\"}\",12,\n\
             3,x,invalid,,0,,client_id: `x` bad,,0,\n"
        );
    }

    #[test]
    fn outcome_names_round_trip() {
        for o in Outcome::ALL {
            assert_eq!(Outcome::parse(o.as_str()), Some(o));
        }
    }
}
