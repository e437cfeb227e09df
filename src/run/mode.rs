//! What a job does with each valid row: the one list of modes (`run`,
//! `run --dry-run`, `plan`), each with what it needs.
//!
//! What a mode needs is not there from the start: the caller exists only
//! once connected, the undo writer once its file is open. So the variants
//! are written once and what they carry is a type parameter: `S` is what
//! sends the requests and `U` where the previous values go.
//!
//! - `Mode<(), &Path>`: as the user asked (`cmd::config::Flags`);
//! - `Mode<Endpoint, OutputFile>`: validated, with where to connect and the
//!   undo file's policy (`cmd::config::Config`);
//! - [`Connected`]: with the caller and the open undo writer, what the
//!   pipeline runs; `cmd::run::connect` is the one place that builds it.

use std::sync::Arc;

use crate::client::call::Caller;
use crate::results::undo::UndoWriter;
use crate::run::apply::ApplyOptions;

/// What the job does with each valid row, with what that needs.
#[derive(Debug, Clone)]
pub enum Mode<S, U> {
    /// `run --dry-run`: nothing is sent; the reader finishes every row
    /// itself and no worker starts.
    DryRun,
    /// `run`: PATCH each row (after reading the account when asked).
    Apply { api: S, options: ApplyOptions<U> },
    /// `plan`: read each account and compare.
    Plan { api: S },
}

/// The mode the pipeline runs: connected, its undo file open.
pub type Connected = Mode<Arc<Caller>, Arc<UndoWriter>>;

impl<S, U> Mode<S, U> {
    /// What sends the requests; `None` for a dry run, which sends nothing.
    pub fn api(&self) -> Option<&S> {
        match self {
            Mode::DryRun => None,
            Mode::Apply { api, .. } | Mode::Plan { api } => Some(api),
        }
    }

    /// `--undo-file`, which only `run` keeps.
    pub fn undo(&self) -> Option<&U> {
        match self {
            Mode::Apply { options, .. } => options.undo.as_ref(),
            Mode::DryRun | Mode::Plan { .. } => None,
        }
    }

    /// The subcommand that runs this mode.
    pub fn command(&self) -> &'static str {
        match self {
            Mode::DryRun | Mode::Apply { .. } => "run",
            Mode::Plan { .. } => "plan",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_run_keeps_an_undo_file_and_only_a_dry_run_sends_nothing() {
        let apply: Mode<(), &str> = Mode::Apply {
            api: (),
            options: ApplyOptions {
                skip_unchanged: false,
                undo: Some("undo.csv"),
            },
        };
        assert_eq!(apply.undo(), Some(&"undo.csv"));
        assert_eq!(apply.api(), Some(&()));
        assert_eq!(apply.command(), "run");
        let plan: Mode<(), &str> = Mode::Plan { api: () };
        assert_eq!((plan.undo(), plan.command()), (None, "plan"));
        let dry: Mode<(), &str> = Mode::DryRun;
        assert_eq!((dry.api(), dry.command()), (None, "run"));
    }
}
