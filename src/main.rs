use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = gcore_iam_bulk::cli::Cli::parse();
    ExitCode::from(gcore_iam_bulk::run(cli))
}
