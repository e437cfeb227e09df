//! What a report says, worked out from results files: every record read
//! once, in the order given, into figures whose size does not grow with the
//! number of files (a line's final answer, per-second counts, durations).
//!
//! Pure: no HTML here, so each figure is tested on its own.

use std::collections::{BTreeMap, BTreeSet};

use csv::ByteRecord;

use crate::fields::Field;
use crate::outcome::Outcome;
use crate::results::format::parse_stamp;

/// The timeline's finest grain, in milliseconds.
pub const SLOT_MS: u64 = 100;

/// The last record of one input line (its final answer), kept small: a
/// ledger may have millions of lines.
#[derive(Debug, Clone)]
pub struct FinalRow {
    pub outcome: Outcome,
    /// The run read the account before changing it (it kept an undo file),
    /// so an empty `diff` means nothing differed.
    pub read_first: bool,
    pub client_id: Box<str>,
    /// What the page shows of a row that went wrong (its error) or changed
    /// something (its diff and body); nothing for the rest.
    detail: Option<Box<Detail>>,
}

#[derive(Debug, Clone, Default)]
struct Detail {
    error: String,
    diff: String,
    request: String,
}

impl FinalRow {
    pub fn error(&self) -> &str {
        self.detail.as_ref().map_or("", |d| &d.error)
    }

    pub fn diff(&self) -> &str {
        self.detail.as_ref().map_or("", |d| &d.diff)
    }

    pub fn request(&self) -> &str {
        self.detail.as_ref().map_or("", |d| &d.request)
    }
}

/// Rows that ended in one second (or one longer bucket of the timeline).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bucket {
    /// Rows that ended `updated`, `unchanged`, `would_update` or `dry_run`.
    pub ok: u64,
    /// Rows that ended `failed` or `mismatch`.
    pub failed: u64,
    /// Attempts after the first, of the rows that ended here.
    pub retries: u64,
    /// HTTP 429 answers those rows got.
    pub throttled: u64,
    /// HTTP attempts of those rows (each row's, at the time it ended).
    pub requests: u64,
}

/// One results file read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    pub path: String,
    pub records: u64,
    /// Written before `finished_at` existed: its rows have no time.
    pub without_times: bool,
}

/// Everything read from the results files.
#[derive(Debug, Default)]
pub struct Tally {
    pub sources: Vec<SourceFile>,
    /// Records read in all (a line recorded twice counts twice).
    pub records: u64,
    /// Line → its last record.
    pub finals: BTreeMap<u64, FinalRow>,
    /// Slot of [`SLOT_MS`] since the Unix epoch → what ended in it.
    pub slots: BTreeMap<u64, Bucket>,
    /// `duration_ms` of every record that sent a request.
    pub durations: Vec<u64>,
    /// When the first recorded row started and the last ended (Unix ms).
    pub first_start_ms: Option<u64>,
    pub last_end_ms: Option<u64>,
    pub attempts: u64,
    pub retries: u64,
    pub throttled: u64,
    /// Undo files the rows name.
    pub undo_files: BTreeSet<String>,
    /// Records that could not be read (torn or malformed lines), skipped.
    pub skipped: u64,
}

/// Where each known column stands in one file's header.
struct Columns {
    line: usize,
    client_id: usize,
    outcome: usize,
    attempts: Option<usize>,
    error: Option<usize>,
    request: Option<usize>,
    duration_ms: Option<usize>,
    diff: Option<usize>,
    undo_file: Option<usize>,
    finished_at: Option<usize>,
    retries: Option<usize>,
    throttled: Option<usize>,
}

impl Columns {
    fn of(header: &ByteRecord) -> Option<Columns> {
        let names: Vec<String> = header
            .iter()
            .map(|c| {
                String::from_utf8_lossy(c)
                    .trim_start_matches('\u{feff}')
                    .trim()
                    .to_string()
            })
            .collect();
        let at = |name: &str| names.iter().position(|n| n == name);
        Some(Columns {
            line: at("line")?,
            client_id: at("client_id")?,
            outcome: at("outcome")?,
            attempts: at("attempts"),
            error: at("error"),
            request: at("request"),
            duration_ms: at("duration_ms"),
            diff: at("diff"),
            undo_file: at("undo_file"),
            finished_at: at("finished_at"),
            retries: at("retries"),
            throttled: at("throttled"),
        })
    }
}

impl Tally {
    /// Reads one results file (a run's ledger, a plan, or `results`' final
    /// answers). Files are read in the order given, each top to bottom: a
    /// line's last record is its final answer, as `results` has it.
    pub fn read(&mut self, path: &str, source: impl std::io::Read) -> Result<(), String> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(source);
        let mut record = ByteRecord::new();
        match reader.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => {
                self.sources.push(SourceFile {
                    path: path.to_string(),
                    records: 0,
                    without_times: false,
                });
                return Ok(());
            }
            Err(e) => return Err(e.to_string()),
        }
        let columns = Columns::of(&record).ok_or_else(|| {
            "it is not a results file: its header has no line, client_id and outcome columns"
                .to_string()
        })?;
        let width = record.len();
        let mut file = SourceFile {
            path: path.to_string(),
            records: 0,
            without_times: columns.finished_at.is_none(),
        };
        loop {
            match reader.read_byte_record(&mut record) {
                Ok(true) => {}
                Ok(false) => break,
                // A line torn by a kill at the very end: what came before stands.
                Err(_) => {
                    self.skipped += 1;
                    break;
                }
            }
            if record.len() != width || !self.add(&columns, &record) {
                self.skipped += 1;
                continue;
            }
            file.records += 1;
        }
        self.sources.push(file);
        Ok(())
    }

    /// Adds one record; false when it is not a results row.
    fn add(&mut self, columns: &Columns, record: &ByteRecord) -> bool {
        let text = |i: Option<usize>| -> String {
            i.and_then(|i| record.get(i))
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .unwrap_or_default()
        };
        let number = |i: Option<usize>| -> u64 { text(i).trim().parse().unwrap_or(0) };
        let Ok(line) = text(Some(columns.line)).trim().parse::<u64>() else {
            return false;
        };
        let Some(outcome) = Outcome::parse(text(Some(columns.outcome)).trim()) else {
            return false;
        };
        self.records += 1;
        let attempts = number(columns.attempts);
        let duration = number(columns.duration_ms);
        let throttled = number(columns.throttled);
        let retries = number(columns.retries);
        // The cells come from a file: nothing here may overflow on them.
        self.attempts = self.attempts.saturating_add(attempts);
        self.retries = self.retries.saturating_add(retries);
        self.throttled = self.throttled.saturating_add(throttled);
        if attempts > 0 {
            self.durations.push(duration);
        }
        let undo = text(columns.undo_file);
        if !undo.trim().is_empty() && !self.undo_files.contains(undo.trim()) {
            self.undo_files.insert(undo.trim().to_string());
        }
        if let Some(end) = parse_stamp(&text(columns.finished_at)) {
            let start = end.saturating_sub(duration);
            self.first_start_ms = Some(self.first_start_ms.map_or(start, |f| f.min(start)));
            self.last_end_ms = Some(self.last_end_ms.map_or(end, |l| l.max(end)));
            let bucket = self.slots.entry(end / SLOT_MS).or_default();
            match outcome {
                Outcome::Failed | Outcome::Mismatch => bucket.failed += 1,
                Outcome::Invalid => {}
                _ => bucket.ok += 1,
            }
            bucket.retries = bucket.retries.saturating_add(retries);
            bucket.throttled = bucket.throttled.saturating_add(throttled);
            bucket.requests = bucket.requests.saturating_add(attempts);
        }
        // A line's answer keeps only what the page shows of its outcome:
        // the error of a row that went wrong, what changed of one that
        // changed.
        let detail = match outcome {
            Outcome::Failed | Outcome::Mismatch | Outcome::Invalid => Some(Detail {
                error: text(columns.error),
                ..Detail::default()
            }),
            Outcome::Updated | Outcome::WouldUpdate => Some(Detail {
                diff: text(columns.diff),
                request: text(columns.request),
                ..Detail::default()
            }),
            Outcome::DryRun | Outcome::Unchanged => None,
        };
        self.finals.insert(
            line,
            FinalRow {
                outcome,
                read_first: !undo.trim().is_empty(),
                client_id: text(Some(columns.client_id)).into_boxed_str(),
                detail: detail.map(Box::new),
            },
        );
        true
    }

    /// Lines by final outcome, in [`Outcome::ALL`] order.
    pub fn outcome_counts(&self) -> [u64; Outcome::ALL.len()] {
        let mut counts = [0; Outcome::ALL.len()];
        for row in self.finals.values() {
            counts[row.outcome as usize] += 1;
        }
        counts
    }

    /// `run`'s rule for the exit code, from the final answers.
    pub fn exit_code_by_rows(&self) -> u8 {
        let bad = self.finals.values().any(|r| {
            matches!(
                r.outcome,
                Outcome::Failed | Outcome::Invalid | Outcome::Mismatch
            )
        });
        crate::error::exit_code(Ok(crate::error::Finished { rows_failed: bad }))
    }

    /// Whether the rows are a plan's (read, not changed).
    pub fn is_plan(&self) -> bool {
        self.finals
            .values()
            .any(|r| r.outcome == Outcome::WouldUpdate)
            && !self.finals.values().any(|r| r.outcome == Outcome::Updated)
    }

    /// Errors of the lines that ended `failed` or `mismatch`, grouped.
    pub fn error_groups(&self) -> Vec<Group> {
        let mut groups = Groups::default();
        for (line, row) in &self.finals {
            if matches!(row.outcome, Outcome::Failed | Outcome::Mismatch) {
                groups.add(
                    (row.outcome.as_str().to_string(), error_key(row.error())),
                    row.error(),
                    *line,
                    &row.client_id,
                );
            }
        }
        groups.into_sorted()
    }

    /// Problems of the lines that ended `invalid`, grouped by field and problem.
    pub fn invalid_groups(&self) -> Vec<Group> {
        let mut groups = Groups::default();
        for (line, row) in &self.finals {
            if row.outcome != Outcome::Invalid {
                continue;
            }
            for problem in split_problems(row.error()) {
                let (field, what) = field_and_problem(&problem);
                groups.add((field, what), &problem, *line, &row.client_id);
            }
        }
        groups.into_sorted()
    }

    /// What changed (or, in a plan, would change), per field: `old → new`
    /// with the number of accounts, from the `diff` column, or from the
    /// body sent when the accounts were not read first.
    pub fn changes(&self) -> Vec<FieldChanges> {
        let mut fields: BTreeMap<Field, BTreeMap<(Option<String>, String), u64>> = BTreeMap::new();
        for row in self.finals.values() {
            if !matches!(row.outcome, Outcome::Updated | Outcome::WouldUpdate) {
                continue;
            }
            let pairs = if !row.diff().trim().is_empty() {
                parse_diff(row.diff())
                    .into_iter()
                    .map(|(f, old, new)| (f, Some(old), new))
                    .collect::<Vec<_>>()
            } else if row.read_first || row.outcome == Outcome::WouldUpdate {
                // Read, and nothing differed: the PATCH changed nothing.
                Vec::new()
            } else {
                parse_request(row.request())
                    .into_iter()
                    .map(|(f, new)| (f, None, new))
                    .collect()
            };
            for (field, old, new) in pairs {
                *fields
                    .entry(field)
                    .or_default()
                    .entry((old, new))
                    .or_insert(0) += 1;
            }
        }
        fields
            .into_iter()
            .map(|(field, pairs)| {
                let accounts = pairs.values().sum();
                let mut pairs: Vec<Change> = pairs
                    .into_iter()
                    .map(|((old, new), accounts)| Change { old, new, accounts })
                    .collect();
                pairs.sort_by(|a, b| b.accounts.cmp(&a.accounts).then(a.new.cmp(&b.new)));
                FieldChanges {
                    field,
                    accounts,
                    pairs,
                }
            })
            .collect()
    }

    /// Latency figures of the records that sent a request.
    pub fn latency(&self) -> Option<Latency> {
        if self.durations.is_empty() {
            return None;
        }
        let mut sorted = self.durations.clone();
        sorted.sort_unstable();
        let at = |q: f64| {
            // Nearest rank: the smallest value with at least q of the rows
            // at or below it.
            let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
            sorted[rank - 1]
        };
        Some(Latency {
            count: sorted.len() as u64,
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            max: sorted[sorted.len() - 1],
            mean: sorted.iter().map(|d| *d as f64).sum::<f64>() / sorted.len() as f64,
            sorted,
        })
    }

    /// The timeline: what ended in each bucket of time from the first
    /// recorded row, the bucket as narrow as can be (half a second for a
    /// short run) while a long run still shows as at most `most` bars.
    pub fn timeline(&self, most: u64) -> Option<Timeline> {
        let (&first, _) = self.slots.first_key_value()?;
        let (&last, _) = self.slots.last_key_value()?;
        let span_ms = (last - first + 1) * SLOT_MS;
        let most = most.max(1);
        let bucket_ms = [
            500, 1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000, 600_000,
            900_000, 1_800_000, 3_600_000,
        ]
        .into_iter()
        .find(|b| span_ms.div_ceil(*b) <= most)
        .unwrap_or_else(|| span_ms.div_ceil(most).div_ceil(SLOT_MS).max(1) * SLOT_MS);
        let start_ms = first * SLOT_MS;
        let end_ms = (last + 1) * SLOT_MS;
        let mut buckets = vec![Bucket::default(); (end_ms - start_ms).div_ceil(bucket_ms) as usize];
        for (slot, counts) in &self.slots {
            let b = &mut buckets[((slot * SLOT_MS - start_ms) / bucket_ms) as usize];
            b.ok += counts.ok;
            b.failed += counts.failed;
            b.retries = b.retries.saturating_add(counts.retries);
            b.throttled = b.throttled.saturating_add(counts.throttled);
            b.requests = b.requests.saturating_add(counts.requests);
        }
        Some(Timeline {
            start_ms,
            bucket_ms,
            buckets,
        })
    }
}

/// Latency figures, in milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Latency {
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
    pub mean: f64,
    /// Every duration, sorted (for the histogram).
    pub sorted: Vec<u64>,
}

/// Rows per bucket of time.
#[derive(Debug, Clone, PartialEq)]
pub struct Timeline {
    /// When the first bucket starts (Unix ms).
    pub start_ms: u64,
    pub bucket_ms: u64,
    pub buckets: Vec<Bucket>,
}

impl Timeline {
    /// The busiest bucket's successes per second.
    pub fn peak_per_second(&self) -> f64 {
        self.buckets.iter().map(|b| b.ok).max().unwrap_or(0) as f64 * 1000.0 / self.bucket_ms as f64
    }
}

/// Rows that share a problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// What the rows share: (kind or field, problem).
    pub key: (String, String),
    /// The first message of the group, as written.
    pub example: String,
    pub count: u64,
    /// The first input lines, in order.
    pub lines: Vec<u64>,
    /// The first accounts.
    pub accounts: Vec<String>,
}

/// Lines and accounts listed per group, at most.
pub const EXAMPLES: usize = 5;

#[derive(Default)]
struct Groups(BTreeMap<(String, String), Group>);

impl Groups {
    fn add(&mut self, key: (String, String), message: &str, line: u64, account: &str) {
        let group = self.0.entry(key.clone()).or_insert_with(|| Group {
            key,
            example: message.to_string(),
            count: 0,
            lines: Vec::new(),
            accounts: Vec::new(),
        });
        group.count += 1;
        if group.lines.len() < EXAMPLES {
            group.lines.push(line);
        }
        if group.accounts.len() < EXAMPLES && !group.accounts.iter().any(|a| a == account) {
            group.accounts.push(account.to_string());
        }
    }

    fn into_sorted(self) -> Vec<Group> {
        let mut groups: Vec<Group> = self.0.into_values().collect();
        groups.sort_by(|a, b| b.count.cmp(&a.count).then(a.lines.cmp(&b.lines)));
        groups
    }
}

/// One field's changes.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldChanges {
    pub field: Field,
    /// Accounts whose field changed.
    pub accounts: u64,
    /// Each `old → new`, most accounts first.
    pub pairs: Vec<Change>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The value before, as JSON text; `None` when it was not read.
    pub old: Option<String>,
    /// The value after, as JSON text.
    pub new: String,
    pub accounts: u64,
}

/// Replaces the values quoted in backquotes with `…`, so that rows failing
/// for the same reason with different values group together.
fn without_values(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut quoted = false;
    for c in text.chars() {
        if c == '`' {
            if !quoted {
                out.push_str("`…`");
            }
            quoted = !quoted;
        } else if !quoted {
            out.push(c);
        }
    }
    out
}

/// Replaces numbers after the given words ("account 43", "line 7") with `N`.
fn without_numbers_after(text: &str, words: &[&str]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        let hit = words
            .iter()
            .filter_map(|w| rest.find(w).map(|i| (i, w.len())))
            .min();
        let Some((at, len)) = hit else {
            out.push_str(rest);
            break;
        };
        out.push_str(&rest[..at + len]);
        rest = &rest[at + len..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 {
            out.push('N');
            rest = &rest[digits..];
        }
    }
    out
}

/// The key an error groups by: the message without the values and account
/// numbers that differ from row to row.
pub fn error_key(error: &str) -> String {
    without_numbers_after(
        &without_values(error.trim()),
        &["account ", "client ", "client_id ", "line "],
    )
}

/// Names a problem of an invalid row may start with.
fn starts_a_problem(segment: &str) -> bool {
    let field_prefix = |name: &str| {
        segment
            .strip_prefix(name)
            .is_some_and(|rest| rest.starts_with(':') || rest.starts_with(' '))
    };
    field_prefix("client_id")
        || Field::ALL.into_iter().any(|f| field_prefix(f.api_name()))
        || segment.starts_with("the row ")
        || segment.starts_with("column `")
        || segment.starts_with("a quoted field")
}

/// An invalid row's error as its problems: they are joined by `; `, which
/// also stands inside some problems ("… is 300 characters long; the most
/// is 254"): a piece that does not start a problem belongs to the one before.
pub fn split_problems(error: &str) -> Vec<String> {
    let mut problems: Vec<String> = Vec::new();
    for piece in error.split("; ") {
        match problems.last_mut() {
            Some(last) if !starts_a_problem(piece) => {
                last.push_str("; ");
                last.push_str(piece);
            }
            _ => problems.push(piece.to_string()),
        }
    }
    problems.retain(|p| !p.trim().is_empty());
    problems
}

/// The field a problem is about (`row` for the row as a whole), and the
/// problem without the values that differ from row to row.
pub fn field_and_problem(problem: &str) -> (String, String) {
    let problem = problem.trim();
    if let Some(rest) = problem.strip_prefix("column `")
        && let Some((name, what)) = rest.split_once('`')
    {
        let what = what.trim_start_matches(':').trim();
        let what = what.split(" (").next().unwrap_or(what);
        let what = if what.contains("64 KiB") {
            "the cell is over the 64 KiB limit"
        } else {
            what
        };
        return (name.to_string(), what.to_string());
    }
    if problem.starts_with("client_id ") && problem.contains("already appeared on line") {
        return (
            "client_id".into(),
            "already appeared on an earlier line".into(),
        );
    }
    if problem.starts_with("the row has ") && problem.contains("the header has") {
        return (
            "row".into(),
            "the row has another number of fields than the header".into(),
        );
    }
    if let Some((field, what)) = problem.split_once(": ")
        && (field == "client_id"
            || Field::from_header(field).is_some_and(|f| f.api_name() == field))
    {
        let what = without_values(what);
        let what = what.strip_prefix("`…` ").unwrap_or(&what);
        return (field.to_string(), what.to_string());
    }
    ("row".into(), without_values(problem))
}

/// The `field: old -> new` pairs of a `diff` cell. Values are JSON text, so
/// each is read as JSON: a `; ` or ` -> ` inside a text value does not
/// split it.
pub fn parse_diff(diff: &str) -> Vec<(Field, String, String)> {
    let mut pairs = Vec::new();
    let mut rest = diff.trim();
    while !rest.is_empty() {
        let Some((name, after)) = rest.split_once(": ") else {
            break;
        };
        let Some(field) = Field::from_header(name) else {
            break;
        };
        let Some((old, after)) = json_prefix(after) else {
            break;
        };
        let Some(after) = after.strip_prefix(" -> ") else {
            break;
        };
        let Some((new, after)) = json_prefix(after) else {
            break;
        };
        pairs.push((field, old, new));
        rest = after.strip_prefix("; ").unwrap_or(after).trim_start();
        if after.len() == rest.len() && !rest.is_empty() {
            break;
        }
    }
    pairs
}

/// The JSON value at the start of `text`, as written, and what follows it:
/// a string or an array or object up to its matching close (quotes and
/// escapes followed), anything else (a number, `true`, `null`) up to the
/// next space or `;`. The piece must then parse as JSON.
fn json_prefix(text: &str) -> Option<(String, &str)> {
    let bytes = text.as_bytes();
    let end = match bytes.first()? {
        b'"' | b'[' | b'{' => {
            let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
            let mut end = None;
            for (i, &b) in bytes.iter().enumerate() {
                if in_string {
                    match b {
                        _ if escaped => escaped = false,
                        b'\\' => escaped = true,
                        b'"' => in_string = false,
                        _ => {}
                    }
                    if !in_string && depth == 0 {
                        end = Some(i + 1);
                        break;
                    }
                    continue;
                }
                match b {
                    b'"' => in_string = true,
                    b'[' | b'{' => depth += 1,
                    b']' | b'}' => {
                        depth = depth.checked_sub(1)?;
                        if depth == 0 {
                            end = Some(i + 1);
                            break;
                        }
                    }
                    _ => {}
                }
            }
            end?
        }
        _ => bytes
            .iter()
            .position(|&b| b == b' ' || b == b';')
            .unwrap_or(bytes.len()),
    };
    let value = &text[..end];
    serde_json::from_str::<serde_json::Value>(value).ok()?;
    Some((value.to_string(), &text[end..]))
}

/// The fields a PATCH body set, with their values as JSON text.
pub fn parse_request(request: &str) -> Vec<(Field, String)> {
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str(request) else {
        return Vec::new();
    };
    map.into_iter()
        .filter_map(|(name, value)| {
            Field::ALL
                .into_iter()
                .find(|f| f.api_name() == name)
                .map(|f| (f, value.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::format::RESULT_HEADER;

    fn ledger(rows: &[&str]) -> String {
        let mut text = format!("{}\n", RESULT_HEADER.join(","));
        for row in rows {
            text.push_str(row);
            text.push('\n');
        }
        text
    }

    #[test]
    fn final_answers_counts_and_times_across_files() {
        let mut tally = Tally::default();
        let first = ledger(&[
            "2,5,updated,200,1,,,{},120,seller: 52 -> 80,{},/u.csv,2026-11-30T01:33:20.500Z,0,0",
            "3,6,failed,503,5,,gave up after 5 attempts: HTTP 503,{},900,,{},/u.csv,2026-11-30T01:33:21.100Z,4,1",
            "4,x,invalid,,0,,client_id: `x` is not a whole number ≥ 1,,0,,,/u.csv,2026-11-30T01:33:20.000Z,0,0",
        ]);
        let resumed = ledger(&[
            "3,6,updated,200,2,,,{},300,seller: 52 -> 80,{},/u.csv,2026-11-30T01:40:00.000Z,1,1",
        ]);
        tally.read("a.csv", first.as_bytes()).unwrap();
        tally.read("b.csv", resumed.as_bytes()).unwrap();
        assert_eq!(tally.records, 4);
        assert_eq!(tally.finals.len(), 3);
        let counts = tally.outcome_counts();
        assert_eq!(counts[Outcome::Updated as usize], 2);
        assert_eq!(counts[Outcome::Failed as usize], 0, "resumed and updated");
        assert_eq!(counts[Outcome::Invalid as usize], 1);
        assert_eq!(tally.exit_code_by_rows(), 1);
        assert_eq!(tally.retries, 4 + 1);
        assert_eq!(tally.throttled, 2);
        assert_eq!(tally.first_start_ms, Some(1_796_002_400_000));
        assert_eq!(tally.last_end_ms, Some(1_796_002_800_000));
        assert_eq!(tally.undo_files.len(), 1);
        let changes = tally.changes();
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].field, Field::Seller);
        assert_eq!(
            changes[0].pairs,
            vec![Change {
                old: Some("52".into()),
                new: "80".into(),
                accounts: 2
            }]
        );
        assert_eq!(tally.durations, vec![120, 900, 300]);
        // Read first (an undo file was kept) and nothing differed: no change.
        let mut tally = Tally::default();
        let same = ledger(&[
            "2,5,updated,200,2,,,\"{\"\"seller\"\":80}\",120,,{},/u.csv,2026-11-30T01:33:20.500Z,0,0",
        ]);
        tally.read("c.csv", same.as_bytes()).unwrap();
        assert!(tally.changes().is_empty());
    }

    #[test]
    fn older_ledgers_and_final_answers_are_read_by_column_name() {
        let mut tally = Tally::default();
        let old = "line,client_id,outcome,http_status,attempts,account_status,error,request,duration_ms,diff,requested,undo_file\n\
                   2,5,updated,200,1,,,\"{\"\"seller\"\":80}\",3,,{},\n";
        tally.read("old.csv", old.as_bytes()).unwrap();
        assert!(tally.sources[0].without_times);
        assert!(tally.slots.is_empty());
        assert_eq!(tally.changes()[0].pairs[0].old, None);
        assert_eq!(tally.changes()[0].pairs[0].new, "80");
        let bom = format!(
            "\u{feff}{}",
            ledger(&["2,5,updated,200,1,,,{},3,,{},,,0,0"])
        );
        tally.read("bom.csv", bom.as_bytes()).unwrap();
        assert!(
            Tally::default()
                .read("x", "client_id,name\n1,A\n".as_bytes())
                .unwrap_err()
                .contains("not a results file")
        );
    }

    #[test]
    fn errors_group_by_message_without_values() {
        assert_eq!(
            error_key("the API answered with account 43 instead of account 42; nothing was sent"),
            "the API answered with account N instead of account N; nothing was sent"
        );
        assert_eq!(
            error_key("HTTP 404 Not Found: no such account"),
            "HTTP 404 Not Found: no such account",
            "status codes stay"
        );
        let mut tally = Tally::default();
        let text = ledger(&[
            "2,5,failed,404,1,,HTTP 404: not found,{},1,,{},,2026-11-30T01:33:20.500Z,0,0",
            "3,6,failed,404,1,,HTTP 404: not found,{},1,,{},,2026-11-30T01:33:20.500Z,0,0",
            "4,7,mismatch,200,1,,the returned account does not hold what was sent: seller sent 80 but the account holds 52,{},1,,{},,2026-11-30T01:33:20.500Z,0,0",
        ]);
        tally.read("r.csv", text.as_bytes()).unwrap();
        let groups = tally.error_groups();
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].count, 2);
        assert_eq!(groups[0].lines, vec![2, 3]);
        assert_eq!(groups[0].accounts, vec!["5", "6"]);
        assert_eq!(groups[1].key.0, "mismatch");
    }

    #[test]
    fn invalid_rows_group_by_field_and_problem() {
        assert_eq!(
            split_problems(
                "client_id: `x` is not a whole number ≥ 1; email: `a b` contains a space; \
                 is_test: `maybe` is not one of true, false, 1, 0"
            )
            .len(),
            3
        );
        assert_eq!(
            split_problems("email: `aaa…` is 300 characters long; the most is 254"),
            vec!["email: `aaa…` is 300 characters long; the most is 254"]
        );
        assert_eq!(
            field_and_problem("seller: `-1` is not a whole number ≥ 0"),
            ("seller".into(), "is not a whole number ≥ 0".into())
        );
        assert_eq!(
            field_and_problem("client_id 1 already appeared on line 2"),
            (
                "client_id".into(),
                "already appeared on an earlier line".into()
            )
        );
        assert_eq!(
            field_and_problem("the row has 2 fields, the header has 4").0,
            "row"
        );
        assert_eq!(
            field_and_problem(
                "column `name` is not valid UTF-8 (bad byte at offset 3 of the cell): save it"
            ),
            ("name".into(), "is not valid UTF-8".into())
        );
        assert_eq!(
            field_and_problem(
                "email: `null` (null) is not allowed here; only custom_id can be cleared"
            )
            .0,
            "email"
        );
    }

    #[test]
    fn diffs_parse_as_json_values() {
        assert_eq!(
            parse_diff(r#"seller: 52 -> 80; name: "a; b -> c" -> null; reseller: 1 -> 2"#),
            vec![
                (Field::Seller, "52".into(), "80".into()),
                (Field::Name, r#""a; b -> c""#.into(), "null".into()),
                (Field::Reseller, "1".into(), "2".into()),
            ]
        );
        assert!(parse_diff("garbage").is_empty());
        assert!(parse_diff("seller: 52 ->").is_empty());
        assert_eq!(
            parse_request(r#"{"seller":80,"is_test":true}"#),
            vec![(Field::IsTest, "true".into()), (Field::Seller, "80".into())]
        );
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let tally = Tally {
            durations: (1..=100).collect(),
            ..Tally::default()
        };
        let l = tally.latency().unwrap();
        assert_eq!((l.p50, l.p90, l.p99, l.max), (50, 90, 99, 100));
        assert_eq!(Tally::default().latency(), None);
    }

    #[test]
    fn a_long_run_gets_wider_buckets() {
        let mut tally = Tally::default();
        for s in 0..7200 {
            tally.slots.insert(
                (1_000_000 + s) * 10,
                Bucket {
                    ok: 2,
                    ..Bucket::default()
                },
            );
        }
        let t = tally.timeline(300).unwrap();
        assert_eq!(t.bucket_ms, 30_000);
        assert_eq!(t.buckets.len(), 240);
        assert_eq!(t.buckets[0].ok, 60);
        assert!((t.peak_per_second() - 2.0).abs() < 1e-9);
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let mut tally = Tally::default();
            let mut text = format!("{}\n", RESULT_HEADER.join(",")).into_bytes();
            text.extend(bytes);
            let _ = tally.read("x", &text[..]);
            let _ = (tally.error_groups(), tally.invalid_groups(), tally.changes(), tally.latency(), tally.timeline(300));
        }

        #[test]
        fn any_text_splits_without_panic(text in ".{0,80}") {
            for p in split_problems(&text) {
                let _ = field_and_problem(&p);
            }
            let _ = (parse_diff(&text), error_key(&text));
        }
    }
}
