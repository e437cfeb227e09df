//! gcore-iam-bulk: apply per-account changes from a CSV file to Gcore's IAM
//! API (`PATCH /iam/clients/{id}`), safely.
//!
//! A row's path follows the folders: `input` reads and validates it, `run`
//! hands it to a worker and decides what to send (`run::apply`), `client`
//! paces, sends and retries each request, and `results` records the result.
//! `cmd` holds one file per subcommand; `sim` is the local IAM API simulator.

pub mod cli;
pub mod client;
pub mod cmd;
pub mod error;
pub mod fields;
pub mod hint;
pub mod html_report;
pub mod input;
pub mod logging;
pub mod outcome;
pub mod results;
pub mod run;
pub mod sim;

use crate::cli::{Cli, Command};
use crate::error::{Ending, Finished, Unfinished};

/// Prints what clap answered instead of running a command (a usage error,
/// `--help`, `--version`) and says how that ended. A usage error is one JSON
/// object when `--log-format json` was asked for, so that a log collector
/// reading stderr sees nothing but JSON.
pub fn usage(answer: clap::Error) -> Ending {
    let ending = if answer.use_stderr() {
        Err(Unfinished::Refused)
    } else {
        Ok(Finished::CLEAN)
    };
    if answer.use_stderr() && cli::json_logs_asked(std::env::args()) {
        eprintln!("{}", logging::json_line("ERROR", answer.to_string().trim()));
    } else {
        // As clap's own exit: a reader that stopped early (`--help | head`)
        // is not an error.
        let _ = answer.print();
    }
    ending
}

/// Runs the command line: `Ok` when the command went to its end (some rows
/// may have failed), `Err` when it was refused or stopped. What went wrong
/// has been said by then; `main` turns the answer into the exit code.
pub fn run(cli: Cli) -> Result<Finished, Unfinished> {
    let console = logging::init(&cli.log);
    match cli.command {
        Command::Completions { shell } => cmd::completions::completions(shell),
        Command::Man { dir } => cmd::man::man(dir.as_deref()),
        Command::Run(args) => block_on(cmd::run::run(args, console)),
        Command::Plan(args) => block_on(cmd::plan::plan(args, console)),
        Command::Export(args) => block_on(cmd::export::export(args, console)),
        Command::Results(args) => block_on(cmd::results::results(args, console)),
        Command::Report(args) => cmd::report::report(&args, console),
        Command::Simulate(args) => block_on(cmd::simulate::simulate(args)),
    }
}

/// Runs a command on a current-thread runtime: one thread moves every request
/// (the reader, the results writer and the pacer have threads of their own),
/// which measured faster than a multi-threaded one, whose wake-ups between its
/// threads cost more than they gave. Anything still running when it
/// returns (a signal watcher, say) is dropped, not waited for.
fn block_on(command: impl std::future::Future<Output = Ending>) -> Ending {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => {
            let code = runtime.block_on(command);
            runtime.shutdown_background();
            code
        }
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            Err(Unfinished::Aborted)
        }
    }
}
