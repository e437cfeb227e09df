//! `report`: one self-contained HTML page about a run, from its results
//! files (a run and its resumed runs, or its `--shard` workers, read as one)
//! and, when given, its `--summary-json` files.

use std::path::Path;

use crate::cli::HtmlReportArgs;
use crate::error::{Ending, Fatal, Finished};
use crate::html_report::{self, RunFacts};
use crate::logging::Console;
use crate::results::files::{self, Role};

pub fn report(args: &HtmlReportArgs, console: Console) -> Ending {
    match execute(args) {
        Ok(lines) => {
            if !console.quiet && args.output.as_os_str() != "-" {
                eprintln!(
                    "report: {lines} input lines from {} results file{} → {}",
                    args.results.len(),
                    if args.results.len() == 1 { "" } else { "s" },
                    args.output.display()
                );
            }
            Ok(Finished::CLEAN)
        }
        Err(fatal) => {
            if console.json() {
                tracing::error!("{fatal}");
            } else {
                eprintln!("error: {fatal}");
            }
            Err(fatal.unfinished())
        }
    }
}

fn execute(args: &HtmlReportArgs) -> Result<usize, Fatal> {
    let to_stdout = args.output.as_os_str() == "-";
    for read in args.results.iter().chain(&args.summary) {
        if !to_stdout && files::same_path(read, &args.output) {
            return Err(Fatal::Usage(format!(
                "-o {} is one of the files read; choose another file",
                args.output.display()
            )));
        }
    }
    files::check(None, &[("-o", args.output.as_path(), Role::Report)])?;

    let paths: Vec<&Path> = args.results.iter().map(|p| p.as_path()).collect();
    let tally = html_report::read_results(&paths).map_err(Fatal::Usage)?;
    let mut runs = Vec::new();
    for path in &args.summary {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Fatal::Usage(format!("cannot read {}: {e}", path.display())))?;
        runs.push(
            RunFacts::of_summary_json(&text)
                .map_err(|e| Fatal::Usage(format!("cannot use {}: {e}", path.display())))?,
        );
    }
    let html = html_report::render(&tally, &runs, args.title.as_deref());
    if to_stdout {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        out.write_all(html.as_bytes())
            .and_then(|()| out.flush())
            .map_err(|e| Fatal::Aborted(format!("cannot write the report: {e}")))?;
    } else {
        html_report::write(&args.output, &html).map_err(|e| {
            Fatal::Aborted(format!(
                "cannot write {}: {}",
                args.output.display(),
                crate::error::describe_write_error(&e)
            ))
        })?;
    }
    Ok(tally.finals.len())
}
