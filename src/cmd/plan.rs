//! `plan`: reads every account the input names and records what `run`
//! would change; nothing is sent that changes an account. The job is
//! `run`'s (see `run.rs`), with a GET in place of each PATCH.

use crate::cli::PlanArgs;
use crate::cmd::run::{Job, Kind};
use crate::error::Ending;
use crate::logging::Console;
use crate::run::pipeline::Thresholds;

pub async fn plan(args: PlanArgs, console: Console) -> Ending {
    Job {
        command: "plan",
        kind: Kind::Plan,
        input: &args.input,
        output: &args.output,
        resume: false,
        force: args.force,
        skip_unchanged: false,
        undo_file: None,
        thresholds: Thresholds {
            max_failures: None,
            max_failure_rate: 1.0,
        },
        confirm: None,
        selection: &args.selection,
        connection: &args.connection,
        pacing: &args.pacing,
        report: &args.report,
        html_report: args.html_report.as_deref(),
        excel: args.spreadsheet.excel,
    }
    .go(console)
    .await
}
