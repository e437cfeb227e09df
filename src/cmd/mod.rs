//! One module per command. What they share lives here: connecting (token,
//! client, pacer, the optional built-in simulator), the token check before
//! the first change, and how a run ends (summary, report files, exit code).

pub mod completions;
pub mod config;
pub mod export;
pub mod man;
pub mod plan;
pub mod report;
pub mod results;
pub mod run;
pub mod simulate;

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use crate::cli::{ConnectionArgs, PacingArgs, ReportArgs};
use crate::client::api::{ApiClient, Request};
use crate::client::call::{CallEnd, Caller};
use crate::client::network::Trust;
use crate::client::pacing::Pacer;
use crate::client::retry::{Reply, RetryPolicy};
use crate::client::token::ApiToken;
use crate::error::{Ending, Fatal, Finished, Unfinished};
use crate::logging::{Console, Severity};
use crate::run::stats::Stats;
use crate::run::stop::StopSignal;
use crate::run::summary::{RunSummary, write_atomically};
use crate::sim::{
    Account, Fault, FaultRule, Faults, ServerLimit, Shape, SimConfig, Simulator, Trigger,
};

/// Where requests go: the real API, or a built-in simulator kept alive for
/// the run.
pub struct Target {
    pub base_url: String,
    pub token: Option<ApiToken>,
    pub trust: Trust,
    pub simulator: Option<Simulator>,
}

impl Target {
    /// The API named by `--api-url` with the token from `--api-key-file` or
    /// `api_key` (`GCORE_API_KEY`), which must be there when `needs_token`.
    pub fn api(
        connection: &ConnectionArgs,
        api_key: Option<String>,
        needs_token: bool,
    ) -> Result<Target, Fatal> {
        crate::client::api::check_base_url(&connection.api_url)?;
        let token = ApiToken::load(connection.api_key_file.as_deref(), api_key)?;
        if needs_token && token.is_none() {
            return Err(Fatal::Usage(
                "no API token: set GCORE_API_KEY, or put the token on the first line of a \
                 file and pass --api-key-file PATH (--dry-run needs none)"
                    .into(),
            ));
        }
        let trust = Trust::load(&connection.ca_cert)?;
        Ok(Target {
            base_url: connection.api_url.trim_end_matches('/').to_string(),
            token,
            trust,
            simulator: None,
        })
    }

    /// A built-in simulator on 127.0.0.1 holding `accounts`, with a few
    /// transient faults so that retries show.
    pub async fn simulator(accounts: Vec<Account>) -> Result<Target, Fatal> {
        let token = format!("sim-{:016x}", fastrand::u64(..));
        let mut config = SimConfig::new(token.clone());
        config.accounts = accounts;
        config.faults = demo_faults();
        let listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        let simulator = Simulator::start(config, listen)
            .await
            .map_err(|e| Fatal::Usage(format!("cannot start the built-in simulator: {e}")))?;
        tracing::info!(
            "built-in simulator of the Gcore API serving on {} (nothing leaves this machine)",
            simulator.base_url()
        );
        Ok(Target {
            base_url: simulator.base_url(),
            token: Some(ApiToken::new(token)?),
            trust: Trust::default(),
            simulator: Some(simulator),
        })
    }

    /// The paced, retrying caller every request of the run goes through.
    pub fn caller(
        &self,
        pacing: &PacingArgs,
        rate: crate::client::pacing::Rate,
        stats: Arc<Stats>,
        stop: Arc<StopSignal>,
    ) -> Result<Caller, Fatal> {
        let api = ApiClient::new(
            &self.base_url,
            self.token.clone(),
            pacing.concurrency as usize,
            pacing.timeout,
            &self.trust,
        )?;
        Ok(Caller {
            api,
            pacer: Pacer::new(rate, pacing.burst),
            slots: Arc::new(tokio::sync::Semaphore::new(
                (pacing.concurrency as usize).max(1),
            )),
            policy: RetryPolicy {
                throttle_statuses: pacing.throttle_status.clone(),
                ..RetryPolicy::new(pacing.max_attempts)
            },
            stats,
            stop,
            announced_pause: Default::default(),
        })
    }
}

/// What the built-in simulator does to show retries and pacing at work: a
/// limit of [`DEMO_LIMIT`] requests in any second, answering 429 with `Retry-After` as
/// Django REST framework's throttle does (Gcore's error bodies are DRF's),
/// and about one PATCH in ten answered 503. Every row still ends `updated`
/// (five attempts each). (One PATCH in thirty answered 429 at random, with
/// no limit behind it, made a long demo cut its pace at each: 1,000 rows
/// asked 100/s went at 1/s.)
fn demo_faults() -> Faults {
    Faults {
        rules: vec![FaultRule::new(Fault::Status(503), Trigger::Share(0.1)).on_method("PATCH")],
        limit: Some(ServerLimit::new(Shape::Sliding {
            n: DEMO_LIMIT,
            seconds: 1.0,
        })),
        latency: std::time::Duration::from_millis(20),
        seed: 7,
        ..Faults::default()
    }
}

/// Requests per second the built-in simulator takes.
const DEMO_LIMIT: u32 = 20;

/// `GET /iam/clients/me` before the first change: a rejected token stops the
/// run with nothing sent, an unreachable API too, and so does a base URL
/// that is not the API's (a 404 or a redirect there would answer every row
/// the same way). A 403 is only warned about: a token may be allowed to
/// change accounts without reading its own.
pub async fn check_token(caller: &Caller, base_url: &str) -> Result<(), Fatal> {
    let called = caller.call(&Request::Me, &"GET /iam/clients/me").await;
    match &called.end {
        CallEnd::Success(_) => {
            tracing::debug!("the API accepted the token");
            Ok(())
        }
        CallEnd::Unauthorized(e) => Err(Fatal::Unauthorized(format!(
            "the API rejected the token ({}): check GCORE_API_KEY or --api-key-file; \
             nothing was sent",
            e.describe_failure()
        ))),
        CallEnd::NotStarted | CallEnd::Interrupted(_) | CallEnd::Abandoned => {
            Err(Fatal::Interrupted)
        }
        CallEnd::Failed(e) if matches!(e.reply, Reply::Transport(_)) => {
            let proxy_advice = match caller.api.proxy() {
                Some(_) => {
                    "; the proxy comes from HTTPS_PROXY, HTTP_PROXY or ALL_PROXY \
                     (hosts listed in NO_PROXY go direct)"
                }
                None => "",
            };
            Err(Fatal::Usage(format!(
                "cannot reach the API at {base_url}: {}{proxy_advice}; nothing was sent: check \
                 --api-url (or GCORE_BASE_URL) and the network, then run the command again",
                e.describe_failure()
            )))
        }
        CallEnd::Failed(e) if e.status == Some(404) => Err(Fatal::Usage(format!(
            "GET {base_url}/iam/clients/me answered {}: the API is not at this base URL. \
             --api-url (or GCORE_BASE_URL) is the host only, such as https://api.gcore.com{}; \
             nothing was sent",
            e.describe_failure(),
            match path_of(base_url) {
                Some(path) => format!(", without the path `{path}`"),
                None => String::new(),
            }
        ))),
        CallEnd::Failed(e) if e.status.is_some_and(|s| (300..400).contains(&s)) => {
            Err(Fatal::Usage(format!(
                "GET {base_url}/iam/clients/me answered {}: the API is not at this base URL; \
                 pass the base the server points to as --api-url (the host only, such as \
                 https://api.gcore.com); nothing was sent",
                e.describe_failure()
            )))
        }
        CallEnd::Failed(e) => {
            tracing::warn!(
                "could not check the token with GET /iam/clients/me ({}); going on",
                e.describe_failure()
            );
            Ok(())
        }
    }
}

/// The command line as typed, for the summary and the report. No flag takes
/// the token, but a value could still hold it (pasted into a URL, say): the
/// token from `GCORE_API_KEY` or `--api-key-file` is masked wherever it
/// stands, and so is a password in a URL.
pub fn command_line() -> String {
    let mut args: Vec<String> = std::env::args().collect();
    // The program as people call it, not where it was installed.
    if let Some(program) = args.first_mut()
        && let Some(name) = Path::new(program.as_str()).file_name()
    {
        *program = name.to_string_lossy().into_owned();
    }
    let mut secrets: Vec<String> = Vec::new();
    if let Ok(token) = std::env::var("GCORE_API_KEY") {
        secrets.push(token.trim().to_string());
    }
    for (i, arg) in args.iter().enumerate() {
        let file = match arg.strip_prefix("--api-key-file=") {
            Some(path) => Some(path),
            None if arg == "--api-key-file" => args.get(i + 1).map(String::as_str),
            None => None,
        };
        if let Some(text) = file.and_then(|path| std::fs::read_to_string(path).ok())
            && let Some(first) = text.lines().next()
        {
            secrets.push(first.trim().to_string());
        }
    }
    secrets.retain(|s| s.len() >= 4);
    mask_command_line(&args, &secrets)
}

/// The arguments quoted for a shell, each secret replaced by `***`, and the
/// password part of a URL (`scheme://user:password@host`) too.
fn mask_command_line(args: &[String], secrets: &[String]) -> String {
    args.iter()
        .map(|arg| {
            let mut arg = arg.clone();
            for secret in secrets {
                arg = arg.replace(secret.as_str(), "***");
            }
            if let Some(scheme) = arg.find("://") {
                let rest = &arg[scheme + 3..];
                let host_end = rest.find('/').unwrap_or(rest.len());
                if let Some(at) = rest[..host_end].rfind('@') {
                    arg = format!("{}***@{}", &arg[..scheme + 3], &rest[at + 1..]);
                }
            }
            crate::hint::shell_quote(&arg)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// What `finish` writes besides the summary files: `--report`, built from
/// the results file the command wrote (none when it was refused).
pub struct HtmlReport<'a> {
    pub path: Option<&'a Path>,
    pub results: Option<&'a Path>,
}

/// The path of a base URL, when it has one besides `/`.
fn path_of(base_url: &str) -> Option<String> {
    let url = reqwest::Url::parse(base_url).ok()?;
    Some(url.path().trim_end_matches('/').to_string()).filter(|p| !p.is_empty())
}

/// How a command ends: the summary, the report files, the exit code.
#[allow(clippy::too_many_arguments)]
pub fn finish(
    result: Result<RunSummary, Fatal>,
    command: &'static str,
    report: &ReportArgs,
    console: Console,
    started_at: SystemTime,
    input: Option<&Path>,
    output: &Path,
    html_report: HtmlReport<'_>,
) -> Ending {
    let started = result.is_ok();
    // A command refused for its flags, files or input (exit 2) leaves no
    // report: nothing happened to report. One stopped by the API or a
    // signal before it started reports why.
    let refused = matches!(result, Err(Fatal::Usage(_) | Fatal::Input(_)));
    // Whatever `-q`: a command that does not end with exit 0 says why, in
    // one line, and what to type next.
    let summary = match result {
        Ok(summary) => {
            summary.print(console);
            if let Some(verdict) = summary.verdict() {
                let severity = match summary.ending {
                    Ok(Finished { rows_failed: true }) | Err(Unfinished::Interrupted) => {
                        Severity::Warning
                    }
                    _ => Severity::Error,
                };
                crate::logging::always(console, severity, &verdict);
            }
            summary
        }
        Err(fatal) => {
            crate::logging::always(console, Severity::Error, &fatal.to_string());
            RunSummary {
                command,
                snapshot: Stats::new().snapshot(),
                rate_changes: 0,
                learned: None,
                asked_rate: None,
                ending: Err(fatal.unfinished()),
                input: None,
                output: output.display().to_string(),
                started_at,
                ended_at: SystemTime::now(),
                stopped: Some(fatal.to_string()),
                next: None,
                exported: None,
                command_line: Some(command_line()),
            }
        }
    };
    // A report path that names the input, the output, an undo file or a
    // ledger was refused; it is not written over now either.
    let may_write = |path: &Path| crate::results::files::report_may_write(path, input, output);
    if let Some(path) = &report.summary_json
        && may_write(path)
        && let Err(e) = write_atomically(path, &summary.to_json())
    {
        tracing::error!(
            "cannot write the summary to {}: {}",
            path.display(),
            crate::error::describe_write_error(&e)
        );
    }
    if let Some(path) = &report.metrics_file
        && may_write(path)
        && let Err(e) = write_atomically(path, &summary.to_prometheus())
    {
        tracing::error!(
            "cannot write the metrics to {}: {}",
            path.display(),
            crate::error::describe_write_error(&e)
        );
    }
    if let Some(path) = html_report.path
        && !refused
        && may_write(path)
    {
        // A command refused before it started reports the refusal alone:
        // the results file, if any, is not its own.
        let results: Vec<&Path> = html_report
            .results
            .filter(|p| started && p.as_os_str() != "-")
            .into_iter()
            .collect();
        let written = crate::html_report::read_results(&results)
            .map(|tally| {
                crate::html_report::render(
                    &tally,
                    &[crate::html_report::RunFacts::of_summary(&summary)],
                    None,
                )
            })
            .and_then(|html| {
                crate::html_report::write(path, &html)
                    .map_err(|e| crate::error::describe_write_error(&e))
            });
        match written {
            Ok(()) => tracing::info!("report: {}", path.display()),
            Err(e) => tracing::error!("cannot write the report to {}: {e}", path.display()),
        }
    }
    summary.ending
}

/// Writes a generated document to standard output. A reader that stops
/// early (`| head`) is not an error.
pub fn write_stdout(bytes: &[u8]) -> Ending {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(Finished::CLEAN),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(Finished::CLEAN),
        Err(e) => {
            eprintln!("error: cannot write to standard output: {e}");
            Err(Unfinished::Aborted)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_never_shows_the_token_or_a_password() {
        let args: Vec<String> = [
            "gcore-iam-bulk",
            "run",
            "in file.csv",
            "--api-url",
            "https://user:pa55@api.example/v1?key=T0KEN-123",
        ]
        .map(String::from)
        .to_vec();
        let line = mask_command_line(&args, &["T0KEN-123".into()]);
        assert_eq!(
            line,
            "gcore-iam-bulk run 'in file.csv' --api-url 'https://***@api.example/v1?key=***'"
        );
    }
}
