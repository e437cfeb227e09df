//! The `simulate` subcommand: run a simulator until SIGINT or SIGTERM, for
//! scripts, benchmarks and the demo. It prints one line, `listening on
//! http://ADDR` (`https://` with `--tls-cert`), once it accepts connections.

use std::io::Write;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};

use super::faults::{Fault, Faults, ServerLimit, exclusive_share_rules};
use super::limit::{HeaderStyle, Shape};
use super::patch::PATCH_FIELDS;
use super::server::{SimConfig, Simulator};

/// More accounts than this would only measure memory, not the tool.
const MAX_ACCOUNTS: u64 = 1_000_000;

/// Serve a local simulator of Gcore's IAM clients API (tests, demo, benchmarks)
/// until SIGINT or SIGTERM.
#[derive(Clone, Debug, clap::Args)]
pub struct SimulateArgs {
    /// Address to listen on; port 0 picks a free port (the printed line says which).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// The API token the simulator accepts, sent as `Authorization: APIKey TEXT`.
    #[arg(long, value_name = "TEXT", default_value = "sim-token")]
    pub token: String,

    /// Ids of the generated accounts: `1-1000`, `42`, or a comma list of both.
    #[arg(long, value_name = "RANGE", default_value = "1-1000", value_parser = parse_account_ids)]
    pub accounts: AccountIds,

    /// Delay added before every /iam answer, e.g. `100ms`.
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = humantime::parse_duration)]
    pub latency: Duration,

    /// Server-side rate limit: `N/s`, `N/m`, `N/h` or `N` (per second);
    /// requests beyond it get 429 with `Retry-After`.
    #[arg(long, value_name = "N/s", value_parser = parse_rate)]
    pub server_rate: Option<f64>,

    /// Requests the server-side limit lets through back to back.
    #[arg(long, value_name = "N", default_value_t = 1, requires = "server_rate")]
    pub server_burst: u32,

    /// Server-side limit of a given shape: `bucket:RATE:BURST` (a token
    /// bucket; nginx `limit_req` without `burst` is `bucket:R:1`),
    /// `sliding:N:SECONDS` (at most N in any span of SECONDS, as Django REST
    /// framework's throttle) or `window:N:SECONDS` (N per fixed window).
    #[arg(long, value_name = "SHAPE", conflicts_with = "server_rate", value_parser = parse_shape)]
    pub limit: Option<Shape>,

    /// Rate-limit header fields on every /iam answer while a limit is set:
    /// `ietf` (RateLimit-Limit/-Remaining/-Reset/-Policy), `ietf-structured`
    /// (RateLimit and RateLimit-Policy), `x` (X-RateLimit-*, reset in
    /// seconds) or `x-epoch` (reset as a Unix time).
    #[arg(long, value_name = "STYLE", value_enum, default_value = "none")]
    pub ratelimit_headers: HeaderStyle,

    /// The server-side limit's 429s carry no `Retry-After` (as nginx).
    #[arg(long)]
    pub no_retry_after: bool,

    /// The status the server-side limit refuses with: 429, or 503 as
    /// nginx's `limit_req` does by default.
    #[arg(long, value_name = "CODE", default_value_t = 429,
          value_parser = clap::value_parser!(u16).range(400..=599))]
    pub limit_status: u16,

    /// Share of /iam requests (0 to 1) answered 500, 502 or 503, in equal parts.
    #[arg(long, value_name = "F", default_value_t = 0.0, value_parser = parse_share)]
    pub fail_share: f64,

    /// Share of /iam requests (0 to 1) answered 429.
    #[arg(long, value_name = "F", default_value_t = 0.0, value_parser = parse_share)]
    pub throttle_share: f64,

    /// `Retry-After` seconds sent with `--throttle-share` answers (none if unset).
    #[arg(long, value_name = "SECS", requires = "throttle_share")]
    pub retry_after: Option<u64>,

    /// Share of /iam requests (0 to 1) whose connection is reset unanswered.
    #[arg(long, value_name = "F", default_value_t = 0.0, value_parser = parse_share)]
    pub reset_share: f64,

    /// A PATCH field the server accepts but silently does not store (repeatable).
    #[arg(long = "ignore-field", value_name = "NAME", value_parser = parse_patch_field)]
    pub ignore_fields: Vec<String>,

    /// Seed for the random choice of faulty requests.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub seed: u64,

    /// Serve HTTPS with this certificate chain (PEM, the server's certificate
    /// first); needs --tls-key.
    #[arg(long, value_name = "PATH", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "PATH", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

/// Account ids as ranges, e.g. from `1-1000,5000`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountIds(pub Vec<RangeInclusive<u64>>);

impl AccountIds {
    pub fn ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.0.iter().flat_map(|range| range.clone())
    }
}

impl SimulateArgs {
    /// The simulator configuration these flags describe.
    pub fn config(&self) -> anyhow::Result<SimConfig> {
        let total_share = self.fail_share + self.throttle_share + self.reset_share;
        if total_share > 1.0 + 1e-9 {
            bail!(
                "--fail-share, --throttle-share and --reset-share add up to {total_share}; \
                 at most 1 is possible"
            );
        }
        let third = self.fail_share / 3.0;
        let rules = exclusive_share_rules(&[
            (Fault::Reset, self.reset_share),
            (
                Fault::TooManyRequests {
                    retry_after: self.retry_after.map(|s| s.to_string()),
                },
                self.throttle_share,
            ),
            (Fault::Status(500), third),
            (Fault::Status(502), third),
            (Fault::Status(503), third),
        ]);
        let faults = Faults {
            rules,
            latency: self.latency,
            server_rate: None,
            limit: self
                .limit
                .or(self.server_rate.map(|rate| Shape::Bucket {
                    rate,
                    burst: self.server_burst,
                }))
                .map(|shape| ServerLimit {
                    shape,
                    retry_after: !self.no_retry_after,
                    headers: self.ratelimit_headers,
                    status: self.limit_status,
                }),
            ignore_fields: self.ignore_fields.clone(),
            forbidden_ids: Vec::new(),
            seed: self.seed,
        };
        let config = SimConfig::new(self.token.clone())
            .with_generated_accounts(self.accounts.ids())
            .with_faults(faults);
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => {
                let read = |path: &PathBuf| {
                    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
                };
                config.with_tls_pem(&read(cert)?, &read(key)?)
            }
            _ => Ok(config),
        }
    }
}

/// Runs `gcore-iam-bulk simulate`: serves until SIGINT or SIGTERM.
pub async fn serve_cli(args: SimulateArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    // Listen for signals before announcing the port: a script may signal as
    // soon as it reads the line, and a signal before the handler is lost.
    let stop_requested = shutdown_signal().context("cannot listen for SIGINT/SIGTERM")?;
    let simulator = Simulator::start(config, args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    {
        // Scripts wait for this line to learn the port; flush it now.
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening on {}", simulator.base_url())?;
        stdout.flush()?;
    }
    tracing::info!(addr = %simulator.addr(), "simulator serving");
    stop_requested.await;
    simulator.shutdown().await;
    tracing::info!("simulator stopped");
    Ok(())
}

/// A future that ends at the first SIGINT or SIGTERM; the handlers are in
/// place when this returns.
#[cfg(unix)]
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}

#[cfg(not(unix))]
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    Ok(async {
        // Without Ctrl-C support there is no way to stop but killing.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    })
}

fn parse_account_ids(text: &str) -> Result<AccountIds, String> {
    let mut ranges = Vec::new();
    let mut total: u64 = 0;
    for part in text.split(',').map(str::trim) {
        let (first, last) = match part.split_once('-') {
            Some((first, last)) => (first.trim(), last.trim()),
            None => (part, part),
        };
        let parse = |n: &str| {
            n.parse::<u64>()
                .map_err(|_| format!("`{part}` is not an id or a range like 1-1000"))
        };
        let (first, last) = (parse(first)?, parse(last)?);
        if first > last {
            return Err(format!("`{part}`: the range ends before it starts"));
        }
        total = total.saturating_add(last - first + 1);
        ranges.push(first..=last);
    }
    if total > MAX_ACCOUNTS {
        return Err(format!(
            "{total} accounts; at most {MAX_ACCOUNTS} are supported"
        ));
    }
    Ok(AccountIds(ranges))
}

fn parse_shape(text: &str) -> Result<Shape, String> {
    text.parse()
}

/// `N/s`, `N/m`, `N/h` or `N` (per second) → requests per second.
fn parse_rate(text: &str) -> Result<f64, String> {
    let (count, period) = match text.split_once('/') {
        Some((count, unit)) => {
            let seconds = match unit.trim() {
                "s" => 1.0,
                "m" => 60.0,
                "h" => 3600.0,
                other => return Err(format!("unknown period `{other}`: use s, m or h")),
            };
            (count.trim(), seconds)
        }
        None => (text.trim(), 1.0),
    };
    match count.parse::<f64>() {
        Ok(n) if n.is_finite() && n > 0.0 => Ok(n / period),
        _ => Err(format!("`{text}` is not a rate like 50/s")),
    }
}

fn parse_share(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(share) if (0.0..=1.0).contains(&share) => Ok(share),
        _ => Err(format!("`{text}` is not a share between 0 and 1")),
    }
}

fn parse_patch_field(text: &str) -> Result<String, String> {
    if PATCH_FIELDS.contains(&text) {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "`{text}` is not a PATCH field; one of: {}",
            PATCH_FIELDS.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        simulate: SimulateArgs,
    }

    fn parse(args: &[&str]) -> Result<SimulateArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("simulate").chain(args.iter().copied()))
            .map(|cli| cli.simulate)
    }

    #[test]
    fn defaults() {
        let args = parse(&[]).expect("defaults parse");
        assert_eq!(args.listen, "127.0.0.1:8080".parse().expect("literal"));
        assert_eq!(args.token, "sim-token");
        assert_eq!(args.accounts.ids().count(), 1000);
        let config = args.config().expect("defaults are valid");
        assert!(config.faults.rules.is_empty());
        assert_eq!(config.faults.limit, None);
    }

    #[test]
    fn limit_shapes() {
        let args = parse(&[
            "--limit=sliding:60:3",
            "--ratelimit-headers=x-epoch",
            "--no-retry-after",
            "--limit-status=503",
        ])
        .expect("flags parse");
        let config = args.config().expect("valid flags");
        assert_eq!(
            config.faults.limit,
            Some(ServerLimit {
                shape: Shape::Sliding {
                    n: 60,
                    seconds: 3.0
                },
                retry_after: false,
                headers: HeaderStyle::XEpoch,
                status: 503,
            })
        );
        assert!(parse(&["--limit=bucket:5:1", "--server-rate=5"]).is_err());
        assert!(parse(&["--limit=funnel:5:1"]).is_err());
    }

    #[test]
    fn every_flag() {
        let args = parse(&[
            "--listen=127.0.0.1:0",
            "--token=t",
            "--accounts=1-3,10",
            "--latency=100ms",
            "--server-rate=120/m",
            "--server-burst=4",
            "--fail-share=0.3",
            "--throttle-share=0.1",
            "--retry-after=2",
            "--reset-share=0.05",
            "--ignore-field=phone",
            "--ignore-field=seller",
            "--seed=9",
        ])
        .expect("flags parse");
        let config = args.config().expect("valid flags");
        let ids: Vec<u64> = config.accounts.iter().map(|a| a.id).collect();
        assert_eq!(ids, [1, 2, 3, 10]);
        assert_eq!(config.faults.latency, Duration::from_millis(100));
        assert_eq!(
            config.faults.limit,
            Some(ServerLimit::new(Shape::Bucket {
                rate: 2.0,
                burst: 4
            }))
        );
        assert_eq!(config.faults.rules.len(), 5);
        assert_eq!(config.faults.ignore_fields, ["phone", "seller"]);
        assert_eq!(config.faults.seed, 9);
    }

    #[test]
    fn refuses_bad_values() {
        for bad in [
            &["--accounts=5-1"][..],
            &["--accounts=a-b"],
            &["--accounts=1-2000000"],
            &["--server-rate=0/s"],
            &["--server-rate=5/d"],
            &["--fail-share=1.5"],
            &["--ignore-field=website"],
            &["--server-burst=3"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let too_much = parse(&["--fail-share=0.7", "--reset-share=0.5"]).expect("each parses");
        assert!(too_much.config().is_err());
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("50/s"), Ok(50.0));
        assert_eq!(parse_rate("50"), Ok(50.0));
        assert_eq!(parse_rate("3600/h"), Ok(1.0));
        assert!(parse_rate("fast").is_err());
    }
}
