//! Command-line definitions (clap). Values are parsed into their real types
//! here; `cmd::config::Config` checks those of `run` and `plan` together
//! before a job opens a file.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

use crate::client::pacing::Rate;
use crate::input::dialect::Delimiter;
use crate::input::shard::ShardSpec;

#[derive(Debug, Parser)]
#[command(
    name = "gcore-iam-bulk",
    version = env!("GCORE_IAM_BULK_VERSION"),
    about = "Apply per-account changes from a CSV file to Gcore's IAM API, safely.",
    long_about = "Apply per-account changes from a CSV file to Gcore's IAM API \
                  (PATCH /iam/clients/{id}): every row checked before anything is sent, \
                  paced under the API's limit, retried when safe, every outcome recorded, \
                  resumable after a crash without sending anything twice.",
    after_help = "Examples:\n  \
        gcore-iam-bulk run moves.csv -o results.csv --dry-run\n  \
        GCORE_API_KEY=... gcore-iam-bulk run moves.csv -o results.csv --rate 10/s\n  \
        gcore-iam-bulk plan moves.csv -o plan.csv\n  \
        gcore-iam-bulk export -o move.csv --seller-id 52 --set seller=80\n  \
        gcore-iam-bulk report results.csv -o report.html\n  \
        gcore-iam-bulk run samples/reseller-migration.csv -o demo.csv --simulator"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Debug, Args)]
pub struct LogArgs {
    /// More log detail (-v debug, -vv trace). RUST_LOG overrides both.
    #[arg(short, long, action = ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Less output: -q hides progress and the summary, -qq warnings too.
    #[arg(short, long, action = ArgAction::Count, global = true, conflicts_with = "verbose")]
    pub quiet: u8,

    /// How log lines on stderr look: text for people, json (one object per line) for
    /// log collectors.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply every row of INPUT with PATCH /iam/clients/{id}.
    #[command(after_help = "Examples:\n  \
        gcore-iam-bulk run moves.csv -o results.csv --dry-run\n  \
        gcore-iam-bulk run moves.csv -o results.csv --undo-file undo.csv --rate 10/s\n  \
        gcore-iam-bulk run moves.csv -o results.csv --resume\n  \
        gcore-iam-bulk run moves.csv -o results.csv --limit 10    # a canary first\n  \
        gcore-iam-bulk run moves.csv -o results.csv --undo-file undo.csv --report report.html")]
    Run(RunArgs),
    /// Read each account of INPUT and record what `run` would change; change nothing.
    #[command(
        after_help = "Example:\n  gcore-iam-bulk plan moves.csv -o plan.csv\n  \
        # then: grep would_update plan.csv",
        // A plan has no --resume: its canary goes on by planning the whole file.
        mut_arg("limit", |limit| limit.help(
            "Process only the first N data rows (a canary); a plan of the whole file \
             then replaces it with --force."
        ))
    )]
    Plan(PlanArgs),
    /// Write current accounts as a CSV that `run` and `plan` accept.
    #[command(after_help = "Examples:\n  \
        gcore-iam-bulk export -o accounts.csv --reseller-id 42 --columns reseller,seller\n  \
        gcore-iam-bulk export -o move.csv --seller-id 52 --set seller=80   # a migration's input")]
    Export(ExportArgs),
    /// Give the final outcome of every input line, from the results files of
    /// a run, its resumed runs and its --shard workers.
    #[command(after_help = "Examples:\n  \
        gcore-iam-bulk results results.csv -o final.csv\n  \
        gcore-iam-bulk results shard-0.csv shard-1.csv shard-2.csv -o final.csv")]
    Results(ResultsArgs),
    /// Write one self-contained HTML page about a run from its results files:
    /// outcomes, timeline, latency, errors, what changed.
    #[command(after_help = "Examples:\n  \
        gcore-iam-bulk report results.csv -o report.html\n  \
        gcore-iam-bulk report shard-*.csv --summary summary.json -o report.html --title 'CHG-1234'")]
    Report(HtmlReportArgs),
    /// Serve a local simulator of the Gcore IAM API (for tests, demos and benchmarks).
    #[command(after_help = "Example:\n  \
        gcore-iam-bulk simulate --listen 127.0.0.1:0 --server-rate 20/s")]
    Simulate(crate::sim::SimulateArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish or powershell).
    #[command(after_help = "Example:\n  \
        gcore-iam-bulk completions bash > /etc/bash_completion.d/gcore-iam-bulk")]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the main manual page (roff), or write every page into a directory.
    #[command(after_help = "Examples:\n  \
        gcore-iam-bulk man --dir ~/.local/share/man/man1    # every page; then: man gcore-iam-bulk-run\n  \
        gcore-iam-bulk man > gcore-iam-bulk.1 && man ./gcore-iam-bulk.1")]
    Man {
        /// Write every page (gcore-iam-bulk.1 and one per command, such as
        /// gcore-iam-bulk-run.1) into this directory, creating it if needed,
        /// and print the path of each.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

/// Where the API is and how to authenticate.
#[derive(Debug, Clone, Args)]
pub struct ConnectionArgs {
    /// Base URL of the Gcore API.
    #[arg(
        long,
        env = "GCORE_BASE_URL",
        default_value = "https://api.gcore.com",
        value_name = "URL"
    )]
    pub api_url: String,

    /// Read the API token from the first line of this file (else GCORE_API_KEY).
    #[arg(long, value_name = "PATH")]
    pub api_key_file: Option<PathBuf>,

    /// Also trust the certificate authorities in this PEM file (it may hold
    /// several; repeatable), besides the bundled roots and the system's store
    /// (or SSL_CERT_FILE / SSL_CERT_DIR).
    #[arg(long, value_name = "PATH")]
    pub ca_cert: Vec<PathBuf>,

    /// Serve a built-in simulator of the API on 127.0.0.1 and run against it
    /// instead: no credentials needed, nothing leaves this machine.
    #[arg(long)]
    pub simulator: bool,
}

/// How fast and how persistently requests go out.
#[derive(Debug, Clone, Args)]
pub struct PacingArgs {
    /// Most requests started per period: N/s, N/m, N/h, N (per second) or unlimited.
    #[arg(long, default_value = "5/s", value_name = "RATE")]
    pub rate: Rate,

    /// Requests that may start back to back after an idle spell.
    #[arg(long, default_value_t = 1, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub burst: u32,

    /// Most requests in flight at once (a row waiting to be retried holds
    /// none of them).
    #[arg(long, default_value_t = 4, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub concurrency: u32,

    /// HTTP attempts per request, the first included (1 = no retries).
    #[arg(long, default_value_t = 5, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=100))]
    pub max_attempts: u32,

    /// Time allowed for each attempt, e.g. 500ms, 30s, 2m.
    #[arg(long, default_value = "30s", value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Also read answers with this status as the server's rate limit, as
    /// 429 is: they slow the run and teach the pace. 503 where nginx's
    /// limit_req keeps its default status. 408, 500, 502, 503 or 504;
    /// repeatable or comma-separated.
    #[arg(long, value_name = "CODE", value_delimiter = ',', value_parser = parse_throttle_status)]
    pub throttle_status: Vec<u16>,
}

/// Reports for unattended runs.
#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// Write a JSON summary of the run here at the end (written atomically,
    /// interrupted and aborted runs included).
    #[arg(long, value_name = "PATH")]
    pub summary_json: Option<PathBuf>,

    /// Write the run's figures here in the Prometheus text format, for
    /// node_exporter's textfile collector (written atomically).
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,

    /// When stderr is not a terminal, print a status line this often.
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = parse_duration)]
    pub status_interval: Duration,
}

/// Which rows of INPUT are processed and how cells read.
#[derive(Debug, Clone, Args)]
pub struct SelectionArgs {
    /// The cell text that sends JSON null (allowed for custom_id, name, phone, seller).
    #[arg(long, default_value = "null", value_name = "TEXT")]
    pub null_token: String,

    /// Process only shard K of N (by a stable hash of client_id), for running
    /// N processes side by side. `auto/N` takes K from JOB_COMPLETION_INDEX.
    /// Give each shard a rate of RATE/N.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<ShardSpec>,

    /// Process only the first N data rows (a canary run). Counted from the
    /// top of the file, rows already done included: after `--limit 10`,
    /// `--resume --limit 50` does rows 11 to 50.
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,

    /// The input's field delimiter: `,`, `;` or `tab`. Without it, the one
    /// the header line uses.
    #[arg(long, value_name = "CHAR")]
    pub delimiter: Option<Delimiter>,
}

/// Files for people and their spreadsheets.
#[derive(Debug, Clone, Args)]
pub struct SpreadsheetArgs {
    /// Start the CSV written with a UTF-8 byte-order mark, so that Excel
    /// reads accents and other letters right (the tool reads such files
    /// back as they are).
    #[arg(long)]
    pub excel: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The input CSV (`-` for standard input).
    #[arg(value_name = "INPUT")]
    pub input: PathBuf,

    /// The results CSV (`-` for standard output).
    #[arg(short, long, value_name = "RESULTS")]
    pub output: PathBuf,

    /// Validate every row and record the body it would send; send nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Continue an earlier run of this job: skip rows whose account RESULTS records as
    /// updated with the same values, append the rest (changed rows are sent again).
    #[arg(long, conflicts_with = "force")]
    pub resume: bool,

    /// Overwrite a RESULTS file that already has rows (an undo file never is:
    /// it holds the only copy of the previous values).
    #[arg(long)]
    pub force: bool,

    /// Read each account first and send only the fields that differ; a row
    /// with no difference ends `unchanged`.
    #[arg(long, conflicts_with = "dry_run")]
    pub skip_unchanged: bool,

    /// Before changing an account, record its previous values here, as an
    /// input file that puts them back (nulls written `null`). Never written
    /// over by any command.
    #[arg(long, value_name = "UNDO", conflicts_with = "dry_run")]
    pub undo_file: Option<PathBuf>,

    /// Stop once this many rows have failed (exit 3).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_failures: Option<u64>,

    /// Once 50 rows were sent, stop when more than this share of them failed
    /// (exit 3); 1 turns it off.
    #[arg(long, default_value_t = 0.5, value_name = "F", value_parser = parse_share)]
    pub max_failure_rate: f64,

    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,

    /// On a terminal, ask before a run against a remote API with more rows than this.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub confirm_above: u64,

    /// At the end (interrupted and aborted runs included), write a
    /// self-contained HTML report of the results file here.
    #[arg(long = "report", value_name = "PATH")]
    pub html_report: Option<PathBuf>,

    #[command(flatten)]
    pub spreadsheet: SpreadsheetArgs,

    #[command(flatten)]
    pub selection: SelectionArgs,

    #[command(flatten)]
    pub connection: ConnectionArgs,

    #[command(flatten)]
    pub pacing: PacingArgs,

    #[command(flatten)]
    pub report: ReportArgs,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The input CSV (`-` for standard input).
    #[arg(value_name = "INPUT")]
    pub input: PathBuf,

    /// The plan CSV (`-` for standard output).
    #[arg(short, long, value_name = "PLAN")]
    pub output: PathBuf,

    /// Overwrite a PLAN file that already has rows.
    #[arg(long)]
    pub force: bool,

    /// At the end, write a self-contained HTML report of the plan here.
    #[arg(long = "report", value_name = "PATH")]
    pub html_report: Option<PathBuf>,

    #[command(flatten)]
    pub spreadsheet: SpreadsheetArgs,

    #[command(flatten)]
    pub selection: SelectionArgs,

    #[command(flatten)]
    pub connection: ConnectionArgs,

    #[command(flatten)]
    pub pacing: PacingArgs,

    #[command(flatten)]
    pub report: ReportArgs,
}

#[derive(Debug, Args)]
pub struct ResultsArgs {
    /// Results files (ledgers) of one job: a run and its resumed runs, or its shards.
    #[arg(required = true, value_name = "RESULTS")]
    pub ledgers: Vec<PathBuf>,

    /// The final results CSV (`-` for standard output): one row per input
    /// line, the last recorded, with the file it came from.
    #[arg(short, long, value_name = "FINAL")]
    pub output: PathBuf,

    #[command(flatten)]
    pub spreadsheet: SpreadsheetArgs,
}

#[derive(Debug, Args)]
pub struct HtmlReportArgs {
    /// Results files of one job (a run and its resumed runs, or its
    /// --shard workers), read as one run; a plan's output works too.
    #[arg(required = true, value_name = "RESULTS")]
    pub results: Vec<PathBuf>,

    /// The HTML file to write (`-` for standard output).
    #[arg(short, long, value_name = "HTML")]
    pub output: PathBuf,

    /// A --summary-json file of the run (repeatable: one per shard): exit
    /// code, command line, asked rate and the learned server limit.
    #[arg(long, value_name = "JSON")]
    pub summary: Vec<PathBuf>,

    /// A title for the page, such as a change ticket's number.
    #[arg(long, value_name = "TEXT")]
    pub title: Option<String>,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The CSV to write (`-` for standard output); replaced when complete
    /// (never a results file of a run).
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,

    /// Only accounts of this reseller.
    #[arg(long, value_name = "ID")]
    pub reseller_id: Option<u64>,

    /// Only accounts of this seller.
    #[arg(long, value_name = "ID")]
    pub seller_id: Option<u64>,

    /// Only test (true) or only production (false) accounts.
    #[arg(long, value_name = "BOOL", value_parser = parse_bool_flag)]
    pub is_test: Option<bool>,

    /// Only accounts of this type: common, reseller or sales.
    #[arg(long, value_name = "TYPE")]
    pub client_type: Option<String>,

    /// The patch columns to write after client_id, comma-separated (default: all).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub columns: Vec<String>,

    /// The cell text written for a null value.
    #[arg(long, default_value = "null", value_name = "TEXT")]
    pub null_token: String,

    /// Write VALUE in FIELD's column of every account exported: the value
    /// to move them to (repeatable; checked as an input cell is). With
    /// --set, only client_id and the fields set are written, unless
    /// --columns names more.
    #[arg(long = "set", value_name = "FIELD=VALUE")]
    pub set: Vec<String>,

    #[command(flatten)]
    pub spreadsheet: SpreadsheetArgs,

    /// Accounts asked for per page.
    #[arg(long, default_value_t = 100, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub page_size: u32,

    #[command(flatten)]
    pub connection: ConnectionArgs,

    #[command(flatten)]
    pub pacing: PacingArgs,

    #[command(flatten)]
    pub report: ReportArgs,
}

impl Cli {
    /// Parses the command line. What clap answers instead of a `Cli` (a usage
    /// error, `--help`, `--version`) is printed by `crate::usage`.
    pub fn parse_args() -> Result<Cli, clap::Error> {
        Cli::try_parse()
    }
}

/// Whether the raw arguments ask for `--log-format json`, before they parse.
pub fn json_logs_asked(args: impl Iterator<Item = String>) -> bool {
    let args: Vec<String> = args.collect();
    args.windows(2)
        .any(|w| w[0] == "--log-format" && w[1] == "json")
        || args.iter().any(|a| a == "--log-format=json")
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("`{s}` is not a duration like 500ms, 30s or 2m: {e}"))?;
    if d.is_zero() {
        return Err(format!("`{s}`: the duration must be more than 0"));
    }
    Ok(d)
}

fn parse_throttle_status(s: &str) -> Result<u16, String> {
    match s.trim().parse::<u16>() {
        Ok(429) => {
            Err("`429` is always read as the rate limit; name another status (such as 503)".into())
        }
        Ok(code) if crate::client::retry::may_throttle(code) => Ok(code),
        _ => Err(format!(
            "`{s}` is not a status the tool always retries: 408, 500, 502, 503 or 504 (such as 503)"
        )),
    }
}

fn parse_share(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err(format!(
            "`{s}` is not a share between 0 and 1 (such as 0.5)"
        )),
    }
}

fn parse_bool_flag(s: &str) -> Result<bool, String> {
    crate::fields::parse_bool(s.trim()).ok_or_else(|| format!("`{s}` is not true or false"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn notices_json_logs_in_raw_args() {
        let args = |a: &[&str]| {
            a.iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .into_iter()
        };
        assert!(json_logs_asked(args(&["x", "run", "--log-format", "json"])));
        assert!(json_logs_asked(args(&["x", "--log-format=json"])));
        assert!(!json_logs_asked(args(&["x", "--log-format", "text"])));
    }
}
