//! The end of a run: the summary on stderr, `--summary-json` and
//! `--metrics-file` (both written atomically, whatever way the run ended).

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::client::pacing::{Learned, Source};
use crate::error::{Ending, Finished, exit_code};
use crate::logging::Console;
use crate::outcome::Outcome;
use crate::run::stats::Snapshot;

/// 503 answers, not named by `--throttle-status`, from which the summary
/// suggests it: a few are an outage's; many, in a run no 429 slowed, may
/// be a limit's. (A run that got 429s has its limit's answers already:
/// the built-in simulator's demo answers some 503s at random besides.)
const UNNAMED_503_HINT: u64 = 10;

/// Everything known about a finished run.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub command: &'static str,
    pub snapshot: Snapshot,
    pub rate_changes: u64,
    /// What pacing learned of the server's limit.
    pub learned: Option<Learned>,
    /// The `--rate` asked for; `None` for unlimited.
    pub asked_rate: Option<f64>,
    /// How the command ended; the summary records its exit code.
    pub ending: Ending,
    pub input: Option<String>,
    pub output: String,
    pub started_at: SystemTime,
    pub ended_at: SystemTime,
    /// Why the run stopped early, when it did.
    pub stopped: Option<String>,
    /// What to do next, with the command to type, when the command did not
    /// end with exit 0 (or a canary left rows unread).
    pub next: Option<String>,
    /// Accounts written, for `export`.
    pub exported: Option<u64>,
    /// The command line as typed, secrets masked (see `cmd::command_line`).
    pub command_line: Option<String>,
}

impl RunSummary {
    /// Requests per second over the run.
    pub fn request_rate(&self) -> f64 {
        let secs = self.snapshot.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.snapshot.requests as f64 / secs
        } else {
            0.0
        }
    }

    /// The summary printed on stderr at the end.
    pub fn text(&self) -> String {
        let s = &self.snapshot;
        let elapsed =
            humantime::format_duration(Duration::from_millis(s.elapsed.as_millis() as u64));
        let mut out = match self.exported {
            Some(accounts) => format!("{}: {accounts} accounts in {elapsed}", self.command),
            None => format!(
                "{}: {} rows in {elapsed} ({:.1} rows/s)",
                self.command,
                s.done(),
                s.rows_per_second()
            ),
        };
        let counts: Vec<String> = Outcome::ALL
            .into_iter()
            .filter(|o| s.count(*o) > 0)
            .map(|o| format!("{} {}", s.count(o), o.as_str()))
            .collect();
        if !counts.is_empty() {
            let _ = write!(out, "\n  {}", counts.join(" · "));
        }
        if s.already_done > 0 {
            let _ = write!(
                out,
                "\n  {} rows already updated by an earlier run (skipped)",
                s.already_done
            );
        }
        if s.changed_since_last_run > 0 {
            let _ = write!(
                out,
                "\n  {} rows changed since the last run (sent again)",
                s.changed_since_last_run
            );
        }
        if s.requests > 0 {
            let _ = write!(
                out,
                "\n  {} requests ({} retries, {} × HTTP 429, {} rate changes; {:.1} requests/s)",
                s.requests,
                s.retries,
                s.throttled,
                self.rate_changes,
                self.request_rate()
            );
        }
        if s.unnamed_503 >= UNNAMED_503_HINT && s.throttled == 0 {
            let _ = write!(
                out,
                "\n  {} × HTTP 503, read as server errors: if the server's rate limit \
                 answers 503 (nginx's limit_req does by default), --throttle-status 503 \
                 paces the run under it",
                s.unnamed_503
            );
        }
        if let Some(learned) = &self.learned {
            let _ = write!(out, "\n  {}", learned.describe());
            if let Some(rate) = learned.suggested_rate(self.asked_rate) {
                let _ = write!(out, "; next time use --rate {rate}");
            }
        }
        let _ = write!(out, "\n  results: {}", self.output);
        out
    }

    /// Why the command did not end with exit 0, in one line, and what to do
    /// next: printed whatever `-q` (see `cmd::finish`).
    pub fn verdict(&self) -> Option<String> {
        if self.ending == Ok(Finished::CLEAN) {
            return None;
        }
        let why = match &self.stopped {
            Some(why) => why.clone(),
            None => {
                let s = &self.snapshot;
                let problems: Vec<String> = [Outcome::Failed, Outcome::Invalid, Outcome::Mismatch]
                    .into_iter()
                    .filter(|o| s.count(*o) > 0)
                    .map(|o| format!("{} {}", s.count(o), o.as_str()))
                    .collect();
                format!(
                    "{} (see the error column of {})",
                    problems.join(", "),
                    self.output_named()
                )
            }
        };
        Some(match &self.next {
            Some(next) => format!("{why}; {next}"),
            None => why,
        })
    }

    /// The results file, or what stands for standard output.
    pub fn output_named(&self) -> String {
        if self.output == "-" {
            "the results on standard output".to_string()
        } else {
            self.output.clone()
        }
    }

    /// Prints the summary: plain text, or one JSON log event.
    pub fn print(&self, console: Console) {
        if console.quiet {
            return;
        }
        if console.json() {
            let s = &self.snapshot;
            let stopped = self.stopped.is_some().then(|| self.verdict()).flatten();
            tracing::info!(
                command = self.command,
                rows = s.done(),
                updated = s.count(Outcome::Updated),
                failed = s.count(Outcome::Failed),
                invalid = s.count(Outcome::Invalid),
                dry_run = s.count(Outcome::DryRun),
                unchanged = s.count(Outcome::Unchanged),
                would_update = s.count(Outcome::WouldUpdate),
                mismatch = s.count(Outcome::Mismatch),
                already_done = s.already_done,
                changed_since_last_run = s.changed_since_last_run,
                requests = s.requests,
                retries = s.retries,
                throttled = s.throttled,
                elapsed_seconds = s.elapsed.as_secs_f64(),
                exit_code = exit_code(self.ending),
                stopped = stopped.as_deref(),
                "summary"
            );
        } else {
            eprintln!("{}", self.text());
        }
    }

    pub fn to_json(&self) -> String {
        let s = &self.snapshot;
        let elapsed = s.elapsed.as_secs_f64();
        let doc = SummaryJson {
            command: self.command,
            exit_code: exit_code(self.ending),
            outcomes: Outcome::ALL
                .into_iter()
                .map(|o| (o.as_str(), s.count(o)))
                .collect(),
            rows: s.done(),
            rows_read: s.rows_read,
            already_done: s.already_done,
            changed_since_last_run: s.changed_since_last_run,
            requests: s.requests,
            retries: s.retries,
            throttled_429: s.throttled,
            answers_503_as_server_errors: s.unnamed_503,
            rate_changes: self.rate_changes,
            server_limit: self.learned.map(|l| ServerLimitJson {
                per_second: round3(l.limit),
                pace_per_second: round3(l.pace),
                source: match l.source {
                    Source::Headers => "headers",
                    Source::Throttling => "throttling",
                },
                learned_from_429s: l.throttles,
                firm: l.firm,
                suggested_rate: l.suggested_rate(self.asked_rate),
                requests_per_span: l.per_span.map(|(requests, _)| requests),
                span_seconds: l.per_span.map(|(_, span)| round3(span)),
            }),
            elapsed_seconds: round3(elapsed),
            effective_rate: round3(s.rows_per_second()),
            request_rate: round3(self.request_rate()),
            input: self.input.as_deref(),
            output: &self.output,
            started_at: rfc3339(self.started_at),
            ended_at: rfc3339(self.ended_at),
            stopped: self.stopped.is_some().then(|| self.verdict()).flatten(),
            accounts_exported: self.exported,
            command_line: self.command_line.as_deref(),
            asked_rate_per_second: self.asked_rate.map(round3),
        };
        serde_json::to_string_pretty(&doc).expect("the summary always serializes")
    }

    /// The run's figures in the Prometheus text exposition format.
    pub fn to_prometheus(&self) -> String {
        let s = &self.snapshot;
        let label = format!("command=\"{}\"", self.command);
        let mut out = String::new();
        let mut gauge = |name: &str, help: &str, samples: &[(String, f64)]| {
            let _ = writeln!(out, "# HELP gcore_iam_bulk_{name} {help}");
            let _ = writeln!(out, "# TYPE gcore_iam_bulk_{name} gauge");
            for (labels, value) in samples {
                let _ = writeln!(out, "gcore_iam_bulk_{name}{{{labels}}} {value}");
            }
        };
        let rows: Vec<(String, f64)> = Outcome::ALL
            .into_iter()
            .map(|o| {
                (
                    format!("{label},outcome=\"{}\"", o.as_str()),
                    s.count(o) as f64,
                )
            })
            .collect();
        gauge("rows", "Rows of the last run, by outcome.", &rows);
        let one = |v: f64| vec![(label.clone(), v)];
        gauge(
            "rows_read",
            "Input rows the last run read.",
            &one(s.rows_read as f64),
        );
        gauge(
            "rows_already_done",
            "Rows the last run skipped as updated by an earlier run (--resume).",
            &one(s.already_done as f64),
        );
        gauge(
            "rows_changed_since_last_run",
            "Rows the last run sent again because their values changed since they were recorded (--resume).",
            &one(s.changed_since_last_run as f64),
        );
        gauge(
            "requests",
            "HTTP requests the last run sent.",
            &one(s.requests as f64),
        );
        gauge(
            "retries",
            "HTTP retries in the last run.",
            &one(s.retries as f64),
        );
        gauge(
            "throttled",
            "Answers of the server's limit refusing (HTTP 429, and any --throttle-status) the last run received.",
            &one(s.throttled as f64),
        );
        if let Some(learned) = &self.learned {
            gauge(
                "server_limit_per_second",
                "The server's rate limit as the last run learned it (requests/s).",
                &one(round3(learned.limit)),
            );
            gauge(
                "server_limit_firm",
                "1 when that limit is known well enough to suggest a --rate from, else 0.",
                &one(if learned.firm { 1.0 } else { 0.0 }),
            );
        }
        gauge(
            "last_run_start_timestamp_seconds",
            "When the last run started (Unix time).",
            &one(unix_seconds(self.started_at)),
        );
        gauge(
            "last_run_end_timestamp_seconds",
            "When the last run ended (Unix time).",
            &one(unix_seconds(self.ended_at)),
        );
        gauge(
            "last_run_duration_seconds",
            "How long the last run took.",
            &one(round3(s.elapsed.as_secs_f64())),
        );
        gauge(
            "last_run_exit_code",
            "The last run's exit code (0 all done, 1 some rows failed, 2 usage, 3 aborted, 130 interrupted).",
            &one(f64::from(exit_code(self.ending))),
        );
        out
    }
}

#[derive(Serialize)]
struct SummaryJson<'a> {
    command: &'a str,
    exit_code: u8,
    outcomes: std::collections::BTreeMap<&'a str, u64>,
    rows: u64,
    rows_read: u64,
    already_done: u64,
    changed_since_last_run: u64,
    requests: u64,
    retries: u64,
    throttled_429: u64,
    /// 503s not named by `--throttle-status`, read as server errors.
    answers_503_as_server_errors: u64,
    rate_changes: u64,
    /// Absent when nothing was learned (no 429, no rate-limit headers).
    #[serde(skip_serializing_if = "Option::is_none")]
    server_limit: Option<ServerLimitJson>,
    elapsed_seconds: f64,
    effective_rate: f64,
    request_rate: f64,
    input: Option<&'a str>,
    output: &'a str,
    started_at: String,
    ended_at: String,
    stopped: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    accounts_exported: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    command_line: Option<&'a str>,
    /// `--rate` per second; null for unlimited.
    asked_rate_per_second: Option<f64>,
}

#[derive(Serialize)]
struct ServerLimitJson {
    per_second: f64,
    pace_per_second: f64,
    source: &'static str,
    learned_from_429s: u64,
    /// Known well enough to go by (stated, measured, or bounded closely):
    /// `per_second` is otherwise the pace proven so far.
    firm: bool,
    suggested_rate: Option<String>,
    /// For a limit that refuses in spells: what it takes per span.
    #[serde(skip_serializing_if = "Option::is_none")]
    requests_per_span: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    span_seconds: Option<f64>,
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

fn unix_seconds(t: SystemTime) -> f64 {
    round3(
        t.duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64(),
    )
}

/// Writes `contents` to `path` atomically: a temporary file beside it, synced,
/// then renamed over it. Readers see the old file or the new one, never half.
pub fn write_atomically(path: &Path, contents: &str) -> std::io::Result<()> {
    let temp = crate::results::files::Replacement::beside(path, ".gcore-iam-bulk-")?;
    temp.file().write_all(contents.as_bytes())?;
    give_mode_of(temp.file(), path)?;
    temp.commit(path)
}

/// Gives a temporary file about to replace `path` the mode `path` has, or
/// `rw-------` for a new file: a summary names files and counts accounts.
/// An existing file keeps its mode, so a metrics file made readable for
/// node_exporter (`chmod 644`) stays readable.
pub fn give_mode_of(temp: &std::fs::File, path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).map_or(0o600, |m| m.permissions().mode() & 0o7777);
    temp.set_permissions(std::fs::Permissions::from_mode(mode))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary() -> RunSummary {
        let mut outcomes = [0; Outcome::ALL.len()];
        outcomes[Outcome::Updated as usize] = 9;
        outcomes[Outcome::Invalid as usize] = 1;
        RunSummary {
            command: "run",
            snapshot: Snapshot {
                outcomes,
                requests: 12,
                retries: 3,
                throttled: 1,
                unnamed_503: 0,
                rows_read: 10,
                already_done: 0,
                changed_since_last_run: 0,
                total: Some(10),
                elapsed: Duration::from_secs(2),
            },
            rate_changes: 1,
            learned: None,
            asked_rate: Some(50.0),
            ending: Ok(Finished { rows_failed: true }),
            input: Some("in.csv".into()),
            output: "out.csv".into(),
            started_at: UNIX_EPOCH + Duration::from_secs(1_800_000_000),
            ended_at: UNIX_EPOCH + Duration::from_secs(1_800_000_002),
            stopped: None,
            next: None,
            exported: None,
            command_line: Some("gcore-iam-bulk run in.csv -o out.csv".into()),
        }
    }

    /// Many 503s read as server errors may be a limit answering 503
    /// (nginx's default): the summary names the flag that paces for it;
    /// a few (an outage's), or many in a run that 429s slowed (the demo's
    /// random 503s), say nothing.
    #[test]
    fn many_503s_suggest_throttle_status() {
        let mut s = summary();
        s.snapshot.throttled = 0;
        s.snapshot.unnamed_503 = UNNAMED_503_HINT - 1;
        assert!(!s.text().contains("--throttle-status"), "{}", s.text());
        s.snapshot.unnamed_503 = 400;
        let text = s.text();
        assert!(
            text.contains("400 × HTTP 503, read as server errors")
                && text.contains("--throttle-status 503 paces the run under it"),
            "{text}"
        );
        let json: serde_json::Value = serde_json::from_str(&s.to_json()).unwrap();
        assert_eq!(json["answers_503_as_server_errors"], 400);
        s.snapshot.throttled = 3;
        assert!(!s.text().contains("--throttle-status"), "{}", s.text());
    }

    #[test]
    fn the_learned_limit_and_the_rate_to_use_next_time() {
        let mut s = summary();
        s.asked_rate = Some(100.0);
        s.learned = Some(Learned {
            limit: 19.72,
            pace: 19.3,
            source: Source::Throttling,
            throttles: 6,
            firm: true,
            per_span: None,
        });
        let text = s.text();
        assert!(
            text.contains(
                "server limit ≈ 19.7/s (learned from 6 × 429); next time use --rate 19/s"
            ),
            "{text}"
        );
        let json: serde_json::Value = serde_json::from_str(&s.to_json()).unwrap();
        assert_eq!(json["server_limit"]["per_second"], 19.72);
        assert_eq!(json["server_limit"]["suggested_rate"], "19/s");
        assert!(
            s.to_prometheus()
                .contains("gcore_iam_bulk_server_limit_per_second{command=\"run\"} 19.72")
        );
        assert!(
            s.to_prometheus()
                .contains("gcore_iam_bulk_server_limit_firm{command=\"run\"} 1")
        );
        // Asked below the limit, or learned from a lone 429: nothing to suggest.
        s.asked_rate = Some(10.0);
        assert!(!s.text().contains("next time"));
        s.asked_rate = Some(100.0);
        s.learned = s.learned.map(|l| Learned { firm: false, ..l });
        assert!(!s.text().contains("next time"), "{}", s.text());
        assert!(summary().to_json().find("server_limit").is_none());
        // (And says it is not yet clear.)
        assert!(
            s.text()
                .contains("server limit not yet clear (6 × 429 so far; pacing at 19.3/s)"),
            "{}",
            s.text()
        );
        assert!(
            s.to_prometheus()
                .contains("gcore_iam_bulk_server_limit_firm{command=\"run\"} 0")
        );
        // A limit that refuses in spells says what it takes per span, once
        // a span was found, settled or not (settled, it suggests a rate).
        s.learned = s.learned.map(|l| Learned {
            per_span: Some((20, 1.012)),
            ..l
        });
        assert!(
            s.text()
                .contains("server limit ≈ 19.7/s (20 per 1.01 s, learned from 6 × 429)")
                && !s.text().contains("next time"),
            "{}",
            s.text()
        );
        s.learned = s.learned.map(|l| Learned { firm: true, ..l });
        assert!(
            s.text().contains("next time use --rate 19/s"),
            "{}",
            s.text()
        );
        let json: serde_json::Value = serde_json::from_str(&s.to_json()).unwrap();
        assert_eq!(json["server_limit"]["requests_per_span"], 20);
        assert_eq!(json["server_limit"]["span_seconds"], 1.012);
    }

    #[test]
    fn the_verdict_says_why_and_what_next_in_one_line() {
        let mut s = summary();
        s.next = Some("to retry: gcore-iam-bulk run in.csv -o out.csv --resume".into());
        assert_eq!(
            s.verdict().unwrap(),
            "1 invalid (see the error column of out.csv); to retry: gcore-iam-bulk run in.csv \
             -o out.csv --resume"
        );
        s.ending = Err(crate::error::Unfinished::Aborted);
        s.stopped = Some("aborted: --max-failures 2 reached: 2 rows failed".into());
        let verdict = s.verdict().unwrap();
        assert!(
            verdict.starts_with("aborted: --max-failures 2"),
            "{verdict}"
        );
        assert!(!verdict.contains('\n'));
        let json: serde_json::Value = serde_json::from_str(&s.to_json()).unwrap();
        assert_eq!(json["stopped"], verdict.as_str());
        assert!(!s.text().contains("aborted"), "said once, by the verdict");
        s.ending = Ok(Finished::CLEAN);
        assert_eq!(s.verdict(), None);
    }

    #[test]
    fn json_summary_has_every_figure() {
        let v: serde_json::Value = serde_json::from_str(&summary().to_json()).unwrap();
        assert_eq!(v["outcomes"]["updated"], 9);
        assert_eq!(v["outcomes"]["invalid"], 1);
        assert_eq!(v["requests"], 12);
        assert_eq!(v["throttled_429"], 1);
        assert_eq!(v["effective_rate"], 5.0);
        assert_eq!(v["started_at"], "2027-01-15T08:00:00.000Z");
        assert_eq!(v["exit_code"], 1);
    }

    #[test]
    fn metrics_are_prometheus_text() {
        let text = summary().to_prometheus();
        assert!(text.contains("gcore_iam_bulk_rows{command=\"run\",outcome=\"updated\"} 9\n"));
        assert!(text.contains("gcore_iam_bulk_last_run_exit_code{command=\"run\"} 1\n"));
        assert!(text.contains(
            "gcore_iam_bulk_last_run_start_timestamp_seconds{command=\"run\"} 1800000000\n"
        ));
    }

    #[test]
    fn atomic_write_replaces_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        write_atomically(&path, "one").unwrap();
        write_atomically(&path, "two").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "private unless made otherwise");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        write_atomically(&path, "three").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640, "an existing file keeps its mode");
    }
}
