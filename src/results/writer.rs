//! The results CSV: one row per input row, written by one writer thread as
//! rows finish, flushed promptly and synced to disk at least once a second.

use std::fs::File;
use std::io::{self, Seek, Write};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::fields::{ClientPatch, Field, Value};
use crate::outcome::{Outcome, RowResult};
use crate::results::format::{Cells, RESULT_HEADER, Stamps, undo_cell, write_row};
use crate::run::stats::Stats;
use crate::run::stop::{StopReason, StopSignal};

/// Rows the reader thread finished itself (invalid or dry-run: nothing was
/// sent for them), packed into one buffer as they come, and formatted by the
/// writer thread. The reader makes no heap object per row this way, and the
/// formatting runs on the other core: a dry run over a large file is split
/// between two threads that never touch the same allocation.
#[derive(Default)]
pub struct PackedRows {
    bytes: Vec<u8>,
    /// Rows packed, by outcome: counted once they are written.
    counts: [u64; Outcome::ALL.len()],
}

impl PackedRows {
    pub fn with_capacity(bytes: usize) -> PackedRows {
        PackedRows {
            bytes: Vec::with_capacity(bytes),
            counts: Default::default(),
        }
    }

    /// Packs a row: its line, when it ended, its key, outcome, error and,
    /// for a valid row, the request it would send, as its fields and values:
    /// the writer writes the JSON body (see [`write_request`]). The reader
    /// sets a dry run's pace; the writer has time to spare.
    pub fn push(
        &mut self,
        line: u64,
        finished_at: u64,
        key: &str,
        outcome: Outcome,
        error: &str,
        request: Option<&ClientPatch>,
    ) {
        self.counts[outcome as usize] += 1;
        self.bytes.extend_from_slice(&line.to_le_bytes());
        self.bytes.extend_from_slice(&finished_at.to_le_bytes());
        self.bytes.push(outcome as u8);
        self.push_text(key.as_bytes());
        self.push_text(error.as_bytes());
        let at = self.bytes.len();
        self.bytes.extend_from_slice(&[0; 4]);
        if let Some(patch) = request {
            self.bytes.push(1);
            for (field, value) in &patch.changes {
                self.bytes.push(*field as u8);
                match value {
                    Value::Null => self.bytes.push(0),
                    Value::Text(text) => {
                        self.bytes.push(1);
                        self.push_text(text.as_bytes());
                    }
                    Value::Number(n) => {
                        self.bytes.push(2);
                        self.bytes.extend_from_slice(&n.to_le_bytes());
                    }
                    Value::Bool(b) => {
                        self.bytes.push(3);
                        self.bytes.push(u8::from(*b));
                    }
                }
            }
        }
        let len = (self.bytes.len() - at - 4) as u32;
        self.bytes[at..at + 4].copy_from_slice(&len.to_le_bytes());
    }

    fn push_text(&mut self, text: &[u8]) {
        self.bytes
            .extend_from_slice(&(text.len() as u32).to_le_bytes());
        self.bytes.extend_from_slice(text);
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Formats every packed row as a CSV record onto `out`.
    fn write_to(&self, out: &mut Vec<u8>, undo_cell: &[u8], stamps: &mut Stamps) {
        let mut rest = &self.bytes[..];
        let mut body = Vec::new();
        while let Some(row) = Unpacked::take(&mut rest) {
            body.clear();
            let request = match write_request(row.request, &mut body) {
                Some(()) => &body[..],
                None => b"",
            };
            let cells = Cells::unsent(
                row.line,
                row.key,
                row.outcome,
                row.error,
                request,
                row.finished_at,
            );
            write_row(out, &cells, undo_cell, stamps);
        }
    }
}

/// Writes the JSON body of a request packed by [`PackedRows::push`], as
/// [`ClientPatch::write_body`] writes it. `None` for a row without one.
fn write_request(packed: &[u8], out: &mut Vec<u8>) -> Option<()> {
    let (_, mut rest) = packed.split_first()?;
    out.push(b'{');
    let mut first = true;
    while let Some((&field, tail)) = rest.split_first() {
        let field = Field::ALL.get(usize::from(field))?;
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
        out.push(b'"');
        out.extend_from_slice(field.api_name().as_bytes());
        out.extend_from_slice(b"\":");
        let (&kind, tail) = tail.split_first()?;
        rest = match kind {
            0 => {
                Value::Null.write_json(out);
                tail
            }
            1 => {
                let len = u32::from_le_bytes(tail.get(..4)?.try_into().ok()?) as usize;
                let text = std::str::from_utf8(tail.get(4..4 + len)?).ok()?;
                serde_json::to_writer(&mut *out, text).ok()?;
                &tail[4 + len..]
            }
            2 => {
                let n = u64::from_le_bytes(tail.get(..8)?.try_into().ok()?);
                Value::Number(n).write_json(out);
                &tail[8..]
            }
            3 => {
                Value::Bool(*tail.first()? != 0).write_json(out);
                &tail[1..]
            }
            _ => return None,
        };
    }
    out.push(b'}');
    Some(())
}

/// One row read back from [`PackedRows`].
struct Unpacked<'a> {
    line: u64,
    finished_at: u64,
    outcome: Outcome,
    key: &'a [u8],
    error: &'a [u8],
    request: &'a [u8],
}

impl<'a> Unpacked<'a> {
    fn take(rest: &mut &'a [u8]) -> Option<Unpacked<'a>> {
        let line = u64::from_le_bytes(rest.get(..8)?.try_into().ok()?);
        let finished_at = u64::from_le_bytes(rest.get(8..16)?.try_into().ok()?);
        let outcome = *Outcome::ALL.get(usize::from(*rest.get(16)?))?;
        *rest = &rest[17..];
        let mut text = || {
            let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
            let text = rest.get(4..4 + len)?;
            *rest = &rest[4 + len..];
            Some(text)
        };
        Some(Unpacked {
            line,
            finished_at,
            outcome,
            key: text()?,
            error: text()?,
            request: text()?,
        })
    }
}

/// The results file and the bytes not yet written to it.
struct ResultFile {
    out: Out,
    buffer: Vec<u8>,
    /// The `undo_file` cell of every row.
    undo_cell: Vec<u8>,
    stamps: Stamps,
    /// Bytes in the file up to the end of the last batch written whole: a
    /// failed write is cut back to here, so the file never ends in half a row.
    good_len: u64,
}

/// Bytes gathered before a write, at most.
const WRITE_CHUNK: usize = 64 * 1024;

impl ResultFile {
    fn write_row(&mut self, row: &RowResult) -> io::Result<()> {
        row.write_to(&mut self.buffer, &self.undo_cell, &mut self.stamps);
        if self.buffer.len() >= WRITE_CHUNK {
            self.out.write_all(&self.buffer)?;
            self.buffer.clear();
        }
        Ok(())
    }

    fn write_packed(&mut self, rows: &PackedRows) -> io::Result<()> {
        rows.write_to(&mut self.buffer, &self.undo_cell, &mut self.stamps);
        if self.buffer.len() >= WRITE_CHUNK {
            self.out.write_all(&self.buffer)?;
            self.buffer.clear();
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.write_all(&self.buffer)?;
        self.buffer.clear();
        self.out.flush()
    }

    /// Marks everything written so far as whole rows.
    fn mark_good(&mut self) {
        if let Out::File(f) = &mut self.out {
            self.good_len = f.stream_position().unwrap_or(self.good_len);
        }
    }

    /// After a failed write: drops what was not written and cuts the file
    /// back to its last whole batch.
    fn cut_back(&mut self) {
        self.buffer.clear();
        if let Out::File(f) = &mut self.out {
            let _ = f.set_len(self.good_len);
            let _ = f.seek(io::SeekFrom::Start(self.good_len));
        }
    }

    fn sync(&self) -> io::Result<()> {
        self.out.sync()
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
/// Written rows are also forced to disk whenever this many bytes were
/// written since the last time. Syncing oftener changes nothing of what is
/// promised, and spreads the disk's work over the run: a dry run of 400 000
/// rows (34 MB of results) otherwise waited about 14 ms at the end for one
/// sync of it all, a sixth of its time, while here the syncs overlap with the
/// reader's work (the writer keeps up with room to spare).
const SYNC_BYTES: u64 = 4 << 20;
/// The writer wakes this often when idle, to sync what it wrote.
const IDLE_WAKE: Duration = Duration::from_millis(250);
/// When fewer rows than this came in one go, rows are trickling in: the
/// writer pauses for `GATHER` so that the next ones arrive together, instead
/// of being woken for each. No row waits longer than that to be flushed.
const TRICKLE: usize = 64;
const GATHER: Duration = Duration::from_millis(5);
/// Finished rows waiting for the writer, at most. A full inbox holds the
/// senders back, so memory stays flat however fast rows finish.
const INBOX_ROWS: usize = 4096;
/// The same bound for rows the reader packed.
const INBOX_BYTES: usize = 512 * 1024;

type Shared = Arc<Mutex<ResultFile>>;

/// Finished rows on their way to the writer. The writer takes them all at
/// once, so it is woken once per batch rather than once per row.
#[derive(Default)]
struct Inbox {
    state: Mutex<InboxState>,
    /// Rows arrived (or the run ended): for the writer.
    filled: Condvar,
    /// The writer took the rows: for senders waiting for room.
    emptied: Condvar,
}

#[derive(Default)]
struct InboxState {
    rows: Vec<RowResult>,
    /// Rows the reader thread finished and packed, batch by batch as they
    /// came: kept apart rather than copied onto one another.
    packed: Vec<PackedRows>,
    /// The bytes of those batches.
    packed_bytes: usize,
    /// The run's results are complete: the writer ends once it has the rest.
    finished: bool,
    /// Nothing more is taken: the results were finished, or the writer failed.
    closed: bool,
    /// The writer sleeps on `filled` and nobody has woken it yet: only then
    /// does a sender wake it. A wake is a system call, and on a virtual
    /// machine an interrupt to the other core; waking a writer that was
    /// busy or pausing (see `GATHER`) cost the runtime thread one for every
    /// few rows of a fast run.
    writer_waits: bool,
    /// Senders of packed rows waiting on `emptied` for room.
    senders_wait: u32,
}

impl Inbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, InboxState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl InboxState {
    fn is_empty(&self) -> bool {
        self.rows.is_empty() && self.packed.is_empty()
    }
}

/// Sends finished rows to the writer thread.
#[derive(Clone)]
pub struct ResultSender(Arc<Inbox>);

impl ResultSender {
    /// Sends rows packed by the reader thread; waits while the writer is
    /// behind. False when the writer takes no more rows (it failed, or the
    /// run's results were already closed): those rows are not written.
    pub fn send_packed(&self, rows: PackedRows) -> bool {
        if rows.is_empty() {
            return true;
        }
        let mut state = self.0.lock();
        while state.packed_bytes >= INBOX_BYTES && !state.closed {
            state.senders_wait += 1;
            state = self
                .0
                .emptied
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
            state.senders_wait -= 1;
        }
        if state.closed {
            return false;
        }
        state.packed_bytes += rows.len();
        state.packed.push(rows);
        let wake = std::mem::take(&mut state.writer_waits);
        drop(state);
        if wake {
            self.0.filled.notify_one();
        }
        true
    }

    /// Sends a row from an async task. While the writer is behind (a full
    /// disk, a reader of standard output that stopped reading), this waits
    /// without holding up the runtime, so signals are still answered.
    pub async fn send(&self, row: RowResult) {
        let mut row = Some(row);
        while let Some(waiting) = row.take() {
            {
                let mut state = self.0.lock();
                if state.rows.len() >= INBOX_ROWS && !state.closed {
                    row = Some(waiting);
                } else if !state.closed {
                    state.rows.push(waiting);
                    let wake = std::mem::take(&mut state.writer_waits);
                    drop(state);
                    if wake {
                        self.0.filled.notify_one();
                    }
                } else {
                    drop(state);
                    not_recorded(&waiting);
                }
            }
            if row.is_some() {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    }
}

/// Writes every finished row the writer has not written yet and forces it to
/// disk, now: for a second interrupt, which exits at once.
pub struct Flusher {
    file: Shared,
    inbox: Arc<Inbox>,
}

impl Flusher {
    /// Waits (a second at most) for a write in progress, so that the file
    /// ends on a whole row, then writes what waits in the inbox too. A writer
    /// stuck on a full disk or a stalled pipe does not hold up the exit. The
    /// file stays locked afterwards, so nothing else writes half a row before
    /// the process ends.
    pub fn flush_now(&self) {
        let deadline = Instant::now() + Duration::from_secs(1);
        let mut file = loop {
            match self.file.try_lock() {
                Ok(file) => break file,
                Err(std::sync::TryLockError::Poisoned(e)) => break e.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(std::sync::TryLockError::WouldBlock) => return,
            }
        };
        let (rows, packed) = {
            let mut state = self.inbox.lock();
            state.closed = true;
            state.packed_bytes = 0;
            (
                std::mem::take(&mut state.rows),
                std::mem::take(&mut state.packed),
            )
        };
        for batch in &packed {
            let _ = file.write_packed(batch);
        }
        for row in &rows {
            let _ = file.write_row(row);
        }
        let _ = file.flush();
        let _ = file.sync();
        std::mem::forget(file);
    }
}

/// The results writer: a thread that owns the file and writes rows in the
/// order they finish.
pub struct ResultsSink {
    inbox: Arc<Inbox>,
    thread: Option<JoinHandle<Result<(), String>>>,
    writer: Shared,
}

impl ResultsSink {
    /// Starts the writer. `write_header` is false when appending to a ledger
    /// that has one; `bom` puts a UTF-8 byte-order mark before a header
    /// (`--excel`). A write error stops the run.
    pub fn start(
        destination: Destination,
        write_header: bool,
        bom: bool,
        stop: Arc<StopSignal>,
        stats: Arc<Stats>,
        undo_file: Option<&str>,
    ) -> io::Result<ResultsSink> {
        let out = match destination {
            Destination::Stdout => Out::Stdout(io::stdout()),
            Destination::File(f) => Out::File(f),
        };
        let mut file = ResultFile {
            out,
            buffer: Vec::with_capacity(WRITE_CHUNK + 4096),
            undo_cell: undo_cell(undo_file),
            stamps: Stamps::default(),
            good_len: 0,
        };
        if write_header {
            if bom {
                file.buffer.extend_from_slice(crate::results::undo::BOM);
            }
            file.buffer
                .extend_from_slice(RESULT_HEADER.join(",").as_bytes());
            file.buffer.push(b'\n');
            file.flush()?;
        }
        file.mark_good();
        let writer = Arc::new(Mutex::new(file));
        let inbox = Arc::new(Inbox::default());
        let thread = {
            let writer = Arc::clone(&writer);
            let inbox = Arc::clone(&inbox);
            std::thread::Builder::new()
                .name("results".into())
                .spawn(move || write_rows(&writer, &inbox, &stop, &stats))?
        };
        Ok(ResultsSink {
            inbox,
            thread: Some(thread),
            writer,
        })
    }

    pub fn sender(&self) -> ResultSender {
        ResultSender(Arc::clone(&self.inbox))
    }

    /// A handle that writes out what is waiting, for a hard exit.
    pub fn flusher(&self) -> Flusher {
        Flusher {
            file: Arc::clone(&self.writer),
            inbox: Arc::clone(&self.inbox),
        }
    }

    /// Ends the run's results: every row sent before is written, flushed and
    /// synced. A sender still held elsewhere (a reader stuck on its input
    /// after an interrupt) does not hold this up.
    pub fn finish(mut self) -> Result<(), String> {
        {
            let mut state = self.inbox.lock();
            state.finished = true;
            state.closed = true;
        }
        self.inbox.filled.notify_one();
        self.inbox.emptied.notify_all();
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err("the results writer stopped unexpectedly".into()),
            None => Ok(()),
        }
    }
}

/// Says that a finished row could not be recorded: the account may have
/// changed, and the results file does not say so.
fn not_recorded(row: &RowResult) {
    if row.attempts > 0 {
        tracing::error!(
            "line {}, client_id {} ended `{}` but could not be recorded in the results",
            row.line,
            row.client_id,
            row.outcome.as_str()
        );
    }
}

fn write_rows(
    writer: &Shared,
    inbox: &Inbox,
    stop: &StopSignal,
    stats: &Stats,
) -> Result<(), String> {
    // The run stops at the first failed write: what was being written is cut
    // from the file, and each row that cannot be recorded is named.
    let fail = |e: &io::Error, file: &mut ResultFile, lost: &[RowResult]| {
        file.cut_back();
        let message = format!(
            "cannot write the results: {}",
            crate::error::describe_write_error(e)
        );
        // Logged as well: a run already stopping keeps its first reason.
        tracing::error!("{message}");
        stop.stop(StopReason::Failed(message.clone()));
        let mut state = inbox.lock();
        state.closed = true;
        let waiting = std::mem::take(&mut state.rows);
        drop(state);
        inbox.emptied.notify_all();
        for row in lost.iter().chain(&waiting) {
            not_recorded(row);
        }
        message
    };
    let mut last_sync = Instant::now();
    // Where the file ended at the last sync, and where it ends now.
    let mut synced_len = writer.lock().unwrap_or_else(|e| e.into_inner()).good_len;
    let mut file_len = synced_len;
    let mut unsynced = false;
    let (mut spare_rows, mut spare_packed) = (Vec::new(), Vec::new());
    loop {
        let (rows, packed, finished, senders_wait) = {
            let mut state = inbox.lock();
            if state.is_empty() && !state.finished {
                state.writer_waits = true;
                state = inbox
                    .filled
                    .wait_timeout(state, IDLE_WAKE)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
                state.writer_waits = false;
            }
            let rows = std::mem::replace(&mut state.rows, std::mem::take(&mut spare_rows));
            let packed = std::mem::replace(&mut state.packed, std::mem::take(&mut spare_packed));
            state.packed_bytes = 0;
            (rows, packed, state.finished, state.senders_wait > 0)
        };
        // Packed rows come in large batches: they never count as a trickle.
        let written = rows.len() + if packed.is_empty() { 0 } else { TRICKLE };
        if written > 0 {
            if senders_wait {
                inbox.emptied.notify_all();
            }
            let mut file = writer.lock().unwrap_or_else(|e| e.into_inner());
            let mut result = Ok(());
            for batch in &packed {
                if result.is_ok() {
                    result = file.write_packed(batch);
                }
            }
            for row in &rows {
                if result.is_ok() {
                    result = file.write_row(row);
                }
            }
            if let Err(e) = result.and_then(|()| file.flush()) {
                return Err(fail(&e, &mut file, &rows));
            }
            file.mark_good();
            file_len = file.good_len;
            drop(file);
            // Counted once on disk: the summary counts recorded rows.
            for batch in &packed {
                for (outcome, n) in Outcome::ALL.iter().zip(batch.counts) {
                    if n > 0 {
                        stats.finished_many(*outcome, n);
                    }
                }
            }
            for row in &rows {
                stats.finished(row.outcome);
            }
            unsynced = true;
        }
        if finished && inbox.lock().is_empty() {
            break;
        }
        spare_rows = rows;
        spare_rows.clear();
        spare_packed = packed;
        spare_packed.clear();
        if unsynced
            && (last_sync.elapsed() >= SYNC_EVERY
                || file_len.saturating_sub(synced_len) >= SYNC_BYTES)
        {
            let mut file = writer.lock().unwrap_or_else(|e| e.into_inner());
            if let Err(e) = file.sync() {
                return Err(fail(&e, &mut file, &[]));
            }
            last_sync = Instant::now();
            synced_len = file_len;
            unsynced = false;
        }
        if written > 0 && written < TRICKLE {
            // Senders do not wake a pausing writer (it is not waiting for
            // rows); the end of the results does, so that the last rows of a
            // run are not held for the rest of the pause (a sleep was, adding
            // up to 5 ms to every command).
            let state = inbox.lock();
            if !state.finished {
                drop(
                    inbox
                        .filled
                        .wait_timeout_while(state, GATHER, |state| !state.finished),
                );
            }
        }
    }
    let mut file = writer.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(e) = file.flush().and_then(|()| file.sync()) {
        return Err(fail(&e, &mut file, &[]));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::format::parse_stamp;

    #[test]
    fn rows_are_written_as_csv() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        let file = File::create(&path).unwrap();
        let stats = Arc::new(Stats::new());
        let sink = ResultsSink::start(
            Destination::File(file),
            true,
            false,
            StopSignal::new(),
            Arc::clone(&stats),
            Some("/u.csv"),
        )
        .unwrap();
        let tx = sink.sender();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(tx.send(RowResult {
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
            requested: r#"{"name":"a, \"b\""}"#.into(),
            finished_at: 1_796_000_000_123,
            retries: 3,
            throttled: 2,
        }));
        runtime.block_on(tx.send(RowResult {
            finished_at: 1_796_000_001_000,
            ..RowResult::invalid(3, "x".into(), "client_id: `x` bad".into())
        }));
        drop(tx);
        sink.finish().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "line,client_id,outcome,http_status,attempts,account_status,error,request,duration_ms,diff,requested,undo_file,finished_at,retries,throttled\n\
             2,7,updated,200,1,active,,\"{\"\"name\"\":\"\"a, \\\"\"b\\\"\"\"\"}\",12,,\"{\"\"name\"\":\"\"a, \\\"\"b\\\"\"\"\"}\",/u.csv,2026-11-30T00:53:20.123Z,3,2\n\
             3,x,invalid,,0,,client_id: `x` bad,,0,,,/u.csv,2026-11-30T00:53:21.000Z,0,0\n"
        );
        let counted = stats.snapshot();
        assert_eq!(counted.count(Outcome::Updated), 1, "counted once written");
        assert_eq!(counted.count(Outcome::Invalid), 1);
    }

    #[test]
    fn a_failed_write_stops_the_run_counts_nothing_and_says_the_disk_is_full() {
        // /dev/full answers every write with ENOSPC, as a full disk does.
        let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") else {
            return;
        };
        let stats = Arc::new(Stats::new());
        let stop = StopSignal::new();
        let sink = ResultsSink::start(
            Destination::File(full),
            false,
            false,
            Arc::clone(&stop),
            Arc::clone(&stats),
            None,
        )
        .unwrap();
        let tx = sink.sender();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut row = RowResult::invalid(2, "7".into(), String::new());
        row.outcome = Outcome::Updated;
        row.attempts = 1;
        runtime.block_on(tx.send(row));
        let e = sink.finish().unwrap_err();
        assert!(e.contains("the disk is full"), "{e}");
        assert!(stop.is_stopped(), "the run stops at the first failed write");
        assert_eq!(
            stats.snapshot().done(),
            0,
            "nothing recorded, nothing counted"
        );
    }

    #[test]
    fn packed_rows_format_like_results() {
        let patch = ClientPatch {
            client_id: 7,
            changes: vec![
                (Field::Name, Value::Text("a, \"b\" \\ é\n".into())),
                (Field::Reseller, Value::Number(u64::MAX)),
                (Field::Seller, Value::Null),
                (Field::IsTest, Value::Bool(false)),
                (Field::Email, Value::Text("x@y.co".into())),
            ],
        };
        let mut packed = PackedRows::default();
        packed.push(2, 1_796_000_000_001, "7", Outcome::DryRun, "", Some(&patch));
        packed.push(
            3,
            1_796_000_000_001,
            "x,y",
            Outcome::Invalid,
            "client_id: `x,y` bad",
            None,
        );
        let mut out = Vec::new();
        packed.write_to(&mut out, b"u", &mut Stamps::default());
        let mut expected = Vec::new();
        let mut stamps = Stamps::default();
        RowResult {
            request: patch.body(),
            outcome: Outcome::DryRun,
            finished_at: 1_796_000_000_001,
            ..RowResult::invalid(2, "7".into(), String::new())
        }
        .write_to(&mut expected, b"u", &mut stamps);
        RowResult {
            finished_at: 1_796_000_000_001,
            ..RowResult::invalid(3, "x,y".into(), "client_id: `x,y` bad".into())
        }
        .write_to(&mut expected, b"u", &mut stamps);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            String::from_utf8(expected).unwrap()
        );
    }

    #[test]
    fn stamps_are_rfc3339_utc_with_milliseconds_and_read_back() {
        let mut out = Vec::new();
        let mut stamps = Stamps::default();
        stamps.push(&mut out, 0);
        out.push(b' ');
        stamps.push(&mut out, 1_796_000_000_007);
        out.push(b' ');
        stamps.push(&mut out, 1_796_000_000_007);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "1970-01-01T00:00:00.000Z 2026-11-30T00:53:20.007Z 2026-11-30T00:53:20.007Z"
        );
        assert_eq!(
            parse_stamp("2026-11-30T00:53:20.007Z"),
            Some(1_796_000_000_007)
        );
        assert_eq!(parse_stamp("yesterday"), None);
    }

    proptest::proptest! {
        #[test]
        fn the_csv_crate_reads_back_every_record(
            client_id in ".{0,12}",
            error in "[a-z,\"\n\r ]{0,20}",
            request in proptest::string::string_regex("[{}\":,a-z0-9\\\\\n]{0,30}").unwrap(),
            diff in ".{0,20}",
            finished_at in 0u64..4_102_444_800_000,
            retries in 0u32..100,
            throttled in 0u32..1000,
        ) {
            let row = RowResult {
                line: 7,
                client_id,
                outcome: Outcome::Failed,
                http_status: Some(503),
                attempts: 2,
                account_status: None,
                error,
                request,
                duration_ms: 9,
                diff,
                requested: "{}".into(),
                finished_at,
                retries,
                throttled,
            };
            let mut bytes = Vec::new();
            let mut stamps = Stamps::default();
            row.write_to(&mut bytes, b"", &mut stamps);
            row.write_to(&mut bytes, b"\"a,b\"", &mut stamps);
            let mut reader = csv::ReaderBuilder::new().has_headers(false).from_reader(&bytes[..]);
            let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
            proptest::prop_assert_eq!(records.len(), 2);
            for (record, undo) in records.into_iter().zip(["", "a,b"]) {
                let fields: Vec<&str> = record.iter().collect();
                proptest::prop_assert_eq!(fields.len(), RESULT_HEADER.len());
                proptest::prop_assert_eq!(parse_stamp(fields[12]), Some(finished_at));
                let (retries, throttled) = (retries.to_string(), throttled.to_string());
                proptest::prop_assert_eq!(
                    fields,
                    vec!["7", row.client_id.as_str(), "failed", "503", "2", "",
                         row.error.as_str(), row.request.as_str(), "9", row.diff.as_str(),
                         "{}", undo, record.get(12).unwrap_or_default(), retries.as_str(),
                         throttled.as_str()]
                );
            }
        }

        /// The reader's packed rows and the workers' rows are formatted by
        /// two functions: they must write the same bytes for the same row.
        #[test]
        fn packed_and_plain_rows_agree(
            key in ".{0,12}",
            error in "[a-z,\"\n\r ]{0,20}",
            name in ".{0,12}",
            finished_at in 0u64..4_102_444_800_000,
            invalid in proptest::bool::ANY,
        ) {
            let patch = ClientPatch {
                client_id: 7,
                changes: vec![(crate::fields::Field::Name, crate::fields::Value::Text(name))],
            };
            let outcome = if invalid { Outcome::Invalid } else { Outcome::DryRun };
            let mut packed = PackedRows::default();
            packed.push(9, finished_at, &key, outcome, &error, (!invalid).then_some(&patch));
            let mut out = Vec::new();
            packed.write_to(&mut out, b"\"u,v\"", &mut Stamps::default());
            let mut expected = Vec::new();
            RowResult {
                request: if invalid { String::new() } else { patch.body() },
                outcome,
                finished_at,
                ..RowResult::invalid(9, key.clone(), error.clone())
            }
            .write_to(&mut expected, b"\"u,v\"", &mut Stamps::default());
            proptest::prop_assert_eq!(out, expected);
        }
    }
}
