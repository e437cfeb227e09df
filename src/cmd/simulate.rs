//! `simulate`: serves the local IAM API simulator until interrupted.

use crate::error::{Ending, Finished, Unfinished};
use crate::sim::SimulateArgs;

pub async fn simulate(args: SimulateArgs) -> Ending {
    match crate::sim::serve_cli(args).await {
        Ok(()) => Ok(Finished::CLEAN),
        Err(e) => {
            eprintln!("error: {e:#}");
            Err(Unfinished::Refused)
        }
    }
}
