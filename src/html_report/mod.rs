//! The HTML report: one self-contained page about a run, built from its
//! results files (several read as one: resumed runs, `--shard` workers) and,
//! when there is one, its summary (exit code, command line, asked rate, the
//! server limit learned). `model` works the figures out, `charts` draws them
//! as inline SVG, `page` lays the page out.
//!
//! The page loads nothing: no script, no font, no image, no stylesheet from
//! elsewhere. It must open from an e-mail attachment on a machine with no
//! network, read on a phone, and print.

pub mod charts;
pub mod model;
pub mod page;

use std::path::Path;

use crate::run::summary::RunSummary;

pub use model::Tally;

/// What a run's summary says that its rows do not.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunFacts {
    pub command: Option<String>,
    pub exit_code: Option<u8>,
    /// The command line, as typed (it never holds the token: no flag takes it).
    pub command_line: Option<String>,
    /// `--rate` per second; `None` when unlimited or not known.
    pub asked_rate: Option<f64>,
    pub asked_rate_known: bool,
    pub server_limit: Option<ServerLimit>,
    pub started_at_ms: Option<u64>,
    pub ended_at_ms: Option<u64>,
    pub stopped: Option<String>,
    pub requests: Option<u64>,
    pub retries: Option<u64>,
    pub throttled: Option<u64>,
    pub already_done: Option<u64>,
    pub input: Option<String>,
}

/// The server's limit as the run learned it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerLimit {
    pub per_second: f64,
    /// `headers` or `throttling`.
    pub source: String,
    pub learned_from_429s: u64,
    /// Known well enough to show as a figure: firm, or a span found for a
    /// limit that refuses in spells (as the summary's text). A file from
    /// before `firm` was written: yes.
    pub firm: bool,
    pub suggested_rate: Option<String>,
}

impl RunFacts {
    /// The facts of a run that just ended.
    pub fn of_summary(summary: &RunSummary) -> RunFacts {
        let s = &summary.snapshot;
        RunFacts {
            command: Some(summary.command.to_string()),
            exit_code: Some(crate::error::exit_code(summary.ending)),
            command_line: summary.command_line.clone(),
            asked_rate: summary.asked_rate,
            asked_rate_known: true,
            server_limit: summary.learned.map(|l| ServerLimit {
                per_second: l.limit,
                source: match l.source {
                    crate::client::pacing::Source::Headers => "headers".into(),
                    crate::client::pacing::Source::Throttling => "throttling".into(),
                },
                learned_from_429s: l.throttles,
                firm: l.clear(),
                suggested_rate: l.suggested_rate(summary.asked_rate),
            }),
            started_at_ms: Some(crate::outcome::unix_millis(summary.started_at)),
            ended_at_ms: Some(crate::outcome::unix_millis(summary.ended_at)),
            stopped: summary.stopped.clone(),
            requests: Some(s.requests),
            retries: Some(s.retries),
            throttled: Some(s.throttled),
            already_done: Some(s.already_done),
            input: summary.input.clone(),
        }
    }

    /// The facts a `--summary-json` file holds.
    pub fn of_summary_json(text: &str) -> Result<RunFacts, String> {
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("it is not JSON ({e})"))?;
        if !v.is_object() || v.get("exit_code").is_none() {
            return Err("it is not a --summary-json file (it has no exit_code)".into());
        }
        let text_of = |k: &str| v.get(k).and_then(|x| x.as_str()).map(String::from);
        let number = |k: &str| v.get(k).and_then(serde_json::Value::as_u64);
        let stamp = |k: &str| text_of(k).and_then(|t| crate::results::format::parse_stamp(&t));
        let limit = v.get("server_limit").filter(|l| l.is_object());
        Ok(RunFacts {
            command: text_of("command"),
            exit_code: number("exit_code").and_then(|c| u8::try_from(c).ok()),
            command_line: text_of("command_line"),
            asked_rate: v.get("asked_rate_per_second").and_then(|r| r.as_f64()),
            asked_rate_known: v.get("asked_rate_per_second").is_some(),
            server_limit: limit.and_then(|l| {
                Some(ServerLimit {
                    per_second: l.get("per_second")?.as_f64()?,
                    source: l
                        .get("source")
                        .and_then(|s| s.as_str())
                        .unwrap_or_default()
                        .to_string(),
                    learned_from_429s: l
                        .get("learned_from_429s")
                        .and_then(|n| n.as_u64())
                        .unwrap_or(0),
                    firm: l.get("firm").and_then(|f| f.as_bool()).unwrap_or(true)
                        || l.get("requests_per_span").is_some(),
                    suggested_rate: l
                        .get("suggested_rate")
                        .and_then(|s| s.as_str())
                        .map(String::from),
                })
            }),
            started_at_ms: stamp("started_at"),
            ended_at_ms: stamp("ended_at"),
            stopped: text_of("stopped"),
            requests: number("requests"),
            retries: number("retries"),
            throttled: number("throttled_429"),
            already_done: number("already_done"),
            input: text_of("input"),
        })
    }
}

/// Reads results files into a tally; the error names the file.
pub fn read_results(paths: &[&Path]) -> Result<Tally, String> {
    let mut tally = Tally::default();
    for path in paths {
        let file = std::fs::File::open(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        tally
            .read(
                &path.display().to_string(),
                std::io::BufReader::with_capacity(256 * 1024, file),
            )
            .map_err(|e| format!("cannot use {}: {e}", path.display()))?;
    }
    Ok(tally)
}

/// The page for `tally` and the runs' facts, as HTML text.
pub fn render(tally: &Tally, runs: &[RunFacts], title: Option<&str>) -> String {
    page::render(&page::Page {
        tally,
        runs,
        title,
        generated_at_ms: crate::outcome::now_millis(),
    })
}

/// Writes a report atomically (`rw-------` when created).
pub fn write(path: &Path, html: &str) -> std::io::Result<()> {
    crate::run::summary::write_atomically(path, html)
}
