//! One module per command. What they share lives here: connecting (token,
//! client, pacer, the optional built-in simulator), the token check before
//! the first change, and how a run ends (summary, report files, exit code).

pub mod export;
pub mod results;
pub mod rows;

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use crate::api::{ApiClient, Request};
use crate::call::{CallEnd, Caller};
use crate::cli::{ConnectionArgs, PacingArgs, ReportArgs};
use crate::error::Fatal;
use crate::logging::{Console, Severity};
use crate::network::Trust;
use crate::pacing::Pacer;
use crate::report::{RunSummary, write_atomically};
use crate::retry::{Reply, RetryPolicy};
use crate::sim::{Account, Fault, FaultRule, Faults, SimConfig, Simulator, Trigger};
use crate::stats::Stats;
use crate::stop::StopSignal;
use crate::token::ApiToken;

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
    /// `GCORE_API_KEY`, which must be there when `needs_token`.
    pub fn api(connection: &ConnectionArgs, needs_token: bool) -> Result<Target, Fatal> {
        crate::api::check_base_url(&connection.api_url)?;
        let token = ApiToken::load(
            connection.api_key_file.as_deref(),
            std::env::var("GCORE_API_KEY").ok(),
        )?;
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
        rate: crate::pacing::Rate,
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
            policy: RetryPolicy::new(pacing.max_attempts),
            stats,
            stop,
            announced_pause: Default::default(),
        })
    }
}

/// What the built-in simulator gets wrong on purpose: about one PATCH in ten
/// is answered 503 and one in thirty 429, so that a demo shows retries and
/// pacing at work. Every row still ends `updated` (five attempts each).
fn demo_faults() -> Faults {
    Faults {
        rules: vec![
            FaultRule::new(
                Fault::TooManyRequests {
                    retry_after: Some("1".into()),
                },
                Trigger::Share(0.03),
            )
            .on_method("PATCH"),
            FaultRule::new(Fault::Status(503), Trigger::Share(0.1)).on_method("PATCH"),
        ],
        latency: std::time::Duration::from_millis(20),
        seed: 7,
        ..Faults::default()
    }
}

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

/// The path of a base URL, when it has one besides `/`.
fn path_of(base_url: &str) -> Option<String> {
    let url = reqwest::Url::parse(base_url).ok()?;
    Some(url.path().trim_end_matches('/').to_string()).filter(|p| !p.is_empty())
}

/// How a command ends: the summary, the report files, the exit code.
pub fn finish(
    result: Result<RunSummary, Fatal>,
    command: &'static str,
    report: &ReportArgs,
    console: Console,
    started_at: SystemTime,
    input: Option<&Path>,
    output: &Path,
) -> u8 {
    // Whatever `-q`: a command that does not end with exit 0 says why, in
    // one line, and what to type next.
    let summary = match result {
        Ok(summary) => {
            summary.print(console);
            if let Some(verdict) = summary.verdict() {
                let severity = match summary.exit_code {
                    crate::error::exit::ROWS_FAILED | crate::error::exit::INTERRUPTED => {
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
                exit_code: fatal.exit_code(),
                input: None,
                output: output.display().to_string(),
                started_at,
                ended_at: SystemTime::now(),
                stopped: Some(fatal.to_string()),
                next: None,
                exported: None,
            }
        }
    };
    // A report path that names the input, the output, an undo file or a
    // ledger was refused; it is not written over now either.
    let may_write = |path: &Path| crate::outputs::report_may_write(path, input, output);
    if let Some(path) = &report.summary_json
        && may_write(path)
        && let Err(e) = write_atomically(path, &summary.to_json())
    {
        tracing::error!(
            "cannot write the summary to {}: {}",
            path.display(),
            crate::output::describe_write_error(&e)
        );
    }
    if let Some(path) = &report.metrics_file
        && may_write(path)
        && let Err(e) = write_atomically(path, &summary.to_prometheus())
    {
        tracing::error!(
            "cannot write the metrics to {}: {}",
            path.display(),
            crate::output::describe_write_error(&e)
        );
    }
    summary.exit_code
}
