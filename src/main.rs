use std::process::ExitCode;

fn main() -> ExitCode {
    let ending = match gcore_iam_bulk::cli::Cli::parse_args() {
        Ok(cli) => gcore_iam_bulk::run(cli),
        Err(answer) => gcore_iam_bulk::usage(answer),
    };
    ExitCode::from(gcore_iam_bulk::error::exit_code(ending))
}
