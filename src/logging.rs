//! Log set-up: `tracing` to stderr, as text or one JSON object per line,
//! filtered by `RUST_LOG` or `-v`/`-q`, and kept clear of the progress bar.

use std::io::IsTerminal;

use tracing_indicatif::IndicatifLayer;
use tracing_indicatif::filter::IndicatifFilter;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::{Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

use crate::cli::{LogArgs, LogFormat};

/// How the run shows itself on stderr, decided once at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Console {
    pub format: LogFormat,
    /// An indicatif bar (stderr is a terminal, text logs, not quiet).
    pub bar: bool,
    /// Progress and the summary are hidden (`-q`).
    pub quiet: bool,
}

impl Console {
    pub fn json(&self) -> bool {
        self.format == LogFormat::Json
    }
}

/// Installs the global subscriber. Safe to call once per process.
pub fn init(args: &LogArgs) -> Console {
    let terminal = std::io::stderr().is_terminal();
    let quiet = args.quiet > 0;
    let console = Console {
        format: args.log_format,
        bar: terminal && args.log_format == LogFormat::Text && !quiet,
        quiet,
    };
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => EnvFilter::new(spec),
        _ => EnvFilter::new(default_filter(args.verbose, args.quiet)),
    };
    let ansi = terminal && std::env::var_os("NO_COLOR").is_none();
    let registry = tracing_subscriber::registry().with(filter);
    match (console.format, console.bar) {
        (LogFormat::Json, _) => {
            let _ = registry
                .with(
                    tracing_subscriber::fmt::layer()
                        .json()
                        .flatten_event(true)
                        .with_current_span(false)
                        .with_span_list(false)
                        .with_writer(std::io::stderr),
                )
                .try_init();
        }
        (LogFormat::Text, true) => {
            let bars = IndicatifLayer::new();
            let _ = registry
                .with(
                    tracing_subscriber::fmt::layer()
                        .with_target(false)
                        .with_ansi(ansi)
                        .with_writer(bars.get_stderr_writer()),
                )
                .with(bars.with_filter(IndicatifFilter::new(false)))
                .try_init();
        }
        (LogFormat::Text, false) => {
            let _ = registry
                .with(
                    tracing_subscriber::fmt::layer()
                        .with_target(false)
                        .with_ansi(ansi)
                        .with_writer(std::io::stderr),
                )
                .try_init();
        }
    }
    console
}

/// How bad what [`always`] says is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Warning,
    Error,
}

/// Says why a command ended with a non-zero exit, whatever `-q`, `-qq` or
/// `RUST_LOG`: `error: …` (or `warning: …`), or one JSON object like the
/// log lines for `--log-format json`.
pub fn always(console: Console, severity: Severity, message: &str) {
    if console.json() {
        let level = match severity {
            Severity::Warning => "WARN",
            Severity::Error => "ERROR",
        };
        eprintln!("{}", json_line(level, message));
    } else {
        let prefix = match severity {
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        eprintln!("{prefix}: {message}");
    }
}

/// One log event as `--log-format json` writes it.
pub fn json_line(level: &str, message: &str) -> String {
    serde_json::json!({
        "timestamp": humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string(),
        "level": level,
        "message": message,
    })
    .to_string()
}

fn default_filter(verbose: u8, quiet: u8) -> &'static str {
    match (quiet, verbose) {
        (2.., _) => "error",
        (1, _) => "warn",
        (0, 0) => "warn,gcore_iam_bulk=info",
        (0, 1) => "warn,gcore_iam_bulk=debug",
        (0, 2) => "info,gcore_iam_bulk=trace",
        _ => "trace",
    }
}
