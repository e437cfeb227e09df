//! A local simulator of Gcore's IAM clients API, for tests, the demo and
//! benchmarks.
//!
//! It serves `GET /iam/clients`, `GET /iam/clients/me` and
//! `GET`/`PATCH /iam/clients/{id}` the way Gcore's reference describes them
//! (see `shared/reference/`), keeps accounts in memory, records every request,
//! and injects faults on demand: error statuses, throttling, connection
//! resets, lost answers, hangs, proxy HTML pages, non-JSON and truncated
//! bodies, and a server-side rate limit.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use gcore_iam_bulk::sim::{SimConfig, Simulator};
//! let config = SimConfig::new("sim-token").with_generated_accounts(1..=100);
//! let sim = Simulator::start(config, "127.0.0.1:0".parse().expect("literal address")).await?;
//! println!("{}", sim.base_url());
//! sim.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! Each `/iam` request goes through, in order: recording, `latency`, the
//! server rate limit (429), fault rules (first match wins), authentication
//! (401), then the route.
//!
//! Control routes, without authentication and not recorded, serve scripts
//! that drive the `simulate` subcommand: `GET /_sim/requests` (the log as
//! JSON, `at_seconds` since start), `DELETE /_sim/requests` (clear it),
//! `GET /_sim/accounts` and `GET /_sim/accounts/{id}` (stored accounts).

mod account;
mod api;
mod auth;
mod cli;
mod connection;
mod control;
mod faults;
mod limit;
mod list;
mod patch;
mod record;
mod server;
mod state;
mod tls;

#[cfg(test)]
mod tests;

pub use account::{Account, GENERATED_RESELLERS, GENERATED_SELLERS};
pub use cli::{AccountIds, SimulateArgs, serve_cli};
pub use faults::{
    Admission, Fault, FaultRule, Faults, ServerLimit, ServerRate, Trigger, exclusive_share_rules,
};
pub use limit::{HeaderStyle, Limiter, Refused, Shape, Standing};
pub use patch::PATCH_FIELDS;
pub use record::RecordedRequest;
pub use server::{SimConfig, Simulator};
