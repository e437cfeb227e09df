//! `plan`: reads every account the input names and records what `run`
//! would change; nothing is sent that changes an account. The job is
//! `run`'s (see `run.rs`), with a GET in place of each PATCH.

use crate::cli::PlanArgs;
use crate::cmd::config::Flags;
use crate::error::Ending;
use crate::logging::Console;

pub async fn plan(args: PlanArgs, console: Console) -> Ending {
    crate::cmd::run::job(Flags::of_plan(&args), console).await
}
