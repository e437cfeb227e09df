use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = gcore_iam_bulk::cli::Cli::parse_or_exit();
    ExitCode::from(gcore_iam_bulk::run(cli).exit_code())
}
