//! `run` and `plan`, configured. Their flags as typed ([`Flags`], close to
//! clap's `RunArgs` and `PlanArgs`) are checked together into one
//! [`Config`] before anything starts: no connection, no file created, no
//! thread. Every refusal that flags, output paths or the environment earn
//! (exit 2) is made here, so the steps of `cmd::run` check none of them
//! again; what is left to refuse later depends on the files' contents or
//! the API's answer (the input's header, a ledger, an undo file with rows,
//! a full disk, the token check).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::{ConnectionArgs, PacingArgs, PlanArgs, ReportArgs, RunArgs, SelectionArgs};
use crate::cmd::Target;
use crate::error::Fatal;
use crate::input::dialect::Delimiter;
use crate::input::reader::ReadOptions;
use crate::results::files::{self, Role};
use crate::results::ledger::{self, Existing};
use crate::run::apply::ApplyOptions;
use crate::run::mode::Mode;
use crate::run::pipeline::Thresholds;

/// What the user typed for `run` or `plan`, side by side: `plan` is `run`
/// with a read in place of each PATCH and fewer flags.
pub struct Flags<'a> {
    /// What to do with each row, as asked; the undo file as given.
    pub mode: Mode<(), &'a Path>,
    pub input: &'a Path,
    pub output: &'a Path,
    pub resume: bool,
    pub force: bool,
    pub thresholds: Thresholds,
    /// Ask before a run of more rows than this (`None`: `--yes`, or a plan).
    pub confirm_above: Option<u64>,
    pub selection: &'a SelectionArgs,
    pub connection: &'a ConnectionArgs,
    pub pacing: &'a PacingArgs,
    pub report: &'a ReportArgs,
    /// `--report`: the HTML report written at the end.
    pub html_report: Option<&'a Path>,
    /// `--excel`: a byte-order mark before the header.
    pub excel: bool,
}

impl<'a> Flags<'a> {
    pub fn of_run(args: &'a RunArgs) -> Flags<'a> {
        Flags {
            mode: if args.dry_run {
                Mode::DryRun
            } else {
                Mode::Apply {
                    api: (),
                    options: ApplyOptions {
                        skip_unchanged: args.skip_unchanged,
                        undo: args.undo_file.as_deref(),
                    },
                }
            },
            input: &args.input,
            output: &args.output,
            resume: args.resume,
            force: args.force,
            thresholds: Thresholds {
                max_failures: args.max_failures,
                max_failure_rate: args.max_failure_rate,
            },
            confirm_above: (!args.yes).then_some(args.confirm_above),
            selection: &args.selection,
            connection: &args.connection,
            pacing: &args.pacing,
            report: &args.report,
            html_report: args.html_report.as_deref(),
            excel: args.spreadsheet.excel,
        }
    }

    pub fn of_plan(args: &'a PlanArgs) -> Flags<'a> {
        Flags {
            mode: Mode::Plan { api: () },
            input: &args.input,
            output: &args.output,
            resume: false,
            force: args.force,
            // A plan changes nothing: its failures stop nothing.
            thresholds: Thresholds {
                max_failures: None,
                max_failure_rate: 1.0,
            },
            confirm_above: None,
            selection: &args.selection,
            connection: &args.connection,
            pacing: &args.pacing,
            report: &args.report,
            html_report: args.html_report.as_deref(),
            excel: args.spreadsheet.excel,
        }
    }
}

/// What the environment adds to the flags, read once, so that a `Config`
/// can be built (and tested) from given values.
#[derive(Clone, Default)]
pub struct Env {
    /// `GCORE_API_KEY`.
    pub api_key: Option<String>,
    /// `JOB_COMPLETION_INDEX`, for `--shard auto/N`.
    pub job_completion_index: Option<String>,
}

/// The token never shows, whatever formats an `Env`.
impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env")
            .field("api_key", &self.api_key.as_ref().map(|_| "***"))
            .field("job_completion_index", &self.job_completion_index)
            .finish()
    }
}

impl Env {
    pub fn of_process() -> Env {
        Env {
            api_key: std::env::var("GCORE_API_KEY").ok(),
            job_completion_index: std::env::var("JOB_COMPLETION_INDEX").ok(),
        }
    }
}

/// Where a job that sends connects to.
pub enum Endpoint {
    /// `--simulator`: a built-in simulator, started once the input is read
    /// (it holds the input's accounts).
    Simulator,
    /// The API: its base URL checked, its token and certificates loaded.
    Api(Target),
}

/// A file the job writes, and what to do when it already holds rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputFile {
    pub path: PathBuf,
    pub existing: Existing,
}

/// Where the results go (`-o`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Results {
    /// `-o -`.
    Stdout,
    File(OutputFile),
}

/// A `run` or a `plan`, checked: everything in it is valid together.
pub struct Config {
    /// What to do with each row: where to connect, and the undo file.
    pub mode: Mode<Endpoint, OutputFile>,
    pub input: PathBuf,
    pub results: Results,
    /// `--resume`: the results file is a ledger to go on with (never
    /// standard output).
    pub resume: bool,
    /// How the reader reads; the delimiter is filled in once the input is
    /// seen.
    pub read_options: ReadOptions,
    /// `--delimiter`, when given.
    pub delimiter: Option<Delimiter>,
    /// The input is read more than once (for `--resume`'s keys, or the
    /// simulator's accounts): standard input is spooled to a file first.
    pub spool_input: bool,
    pub thresholds: Thresholds,
    pub confirm_above: Option<u64>,
    pub pacing: PacingArgs,
    /// How often a status line is printed when stderr is no terminal.
    pub status_interval: Duration,
    pub excel: bool,
}

/// A results file `--resume` appends to.
pub const LEDGER_APPEND: Existing = Existing::Append {
    other_header: "it is not a results file of this version of the tool; name another \
                   results file with -o (a new one starts this job's ledger afresh)",
};

impl Config {
    /// Checks the flags, the output paths and the connection settings
    /// together: anything wrong refuses the job here (exit 2), before a
    /// file is opened.
    pub fn new(flags: &Flags<'_>, env: &Env) -> Result<Config, Fatal> {
        let read_options = read_options(flags.selection, env)?;
        let to_stdout = flags.output.as_os_str() == "-";
        if flags.resume && to_stdout {
            return Err(Fatal::Usage(
                "--resume needs -o to name a results file (not standard output)".into(),
            ));
        }
        if flags.html_report.is_some() && to_stdout {
            return Err(Fatal::Usage(
                "--report needs -o to name a results file (the report is built from it), not \
                 standard output"
                    .into(),
            ));
        }
        check_outputs(flags)?;
        let endpoint = || -> Result<Endpoint, Fatal> {
            Ok(if flags.connection.simulator {
                Endpoint::Simulator
            } else {
                Endpoint::Api(Target::api(flags.connection, env.api_key.clone(), true)?)
            })
        };
        let mode = match &flags.mode {
            Mode::DryRun => Mode::DryRun,
            Mode::Plan { api: () } => Mode::Plan { api: endpoint()? },
            Mode::Apply { api: (), options } => Mode::Apply {
                api: endpoint()?,
                options: ApplyOptions {
                    skip_unchanged: options.skip_unchanged,
                    undo: options.undo.map(|path| OutputFile {
                        path: path.to_path_buf(),
                        existing: undo_policy(flags.resume),
                    }),
                },
            },
        };
        Ok(Config {
            results: if to_stdout {
                Results::Stdout
            } else {
                Results::File(OutputFile {
                    path: flags.output.to_path_buf(),
                    existing: results_policy(flags),
                })
            },
            mode,
            input: flags.input.to_path_buf(),
            resume: flags.resume,
            read_options,
            delimiter: flags.selection.delimiter,
            spool_input: flags.resume || flags.connection.simulator,
            thresholds: flags.thresholds,
            confirm_above: flags.confirm_above,
            pacing: flags.pacing.clone(),
            status_interval: flags.report.status_interval,
            excel: flags.excel,
        })
    }

    /// `-o` as given: `-` for standard output.
    pub fn output(&self) -> &Path {
        match &self.results {
            Results::Stdout => Path::new("-"),
            Results::File(file) => &file.path,
        }
    }
}

/// `--null-token`, `--shard` (its `auto` index from the environment) and
/// `--limit`.
fn read_options(selection: &SelectionArgs, env: &Env) -> Result<ReadOptions, Fatal> {
    if selection.null_token.trim().is_empty() {
        return Err(Fatal::Usage(
            "--null-token cannot be empty: an empty cell already means \"leave unchanged\"; \
             give a text such as null or -"
                .into(),
        ));
    }
    let shard = selection
        .shard
        .map(|spec| spec.resolve(env.job_completion_index.as_deref()))
        .transpose()
        .map_err(Fatal::Usage)?;
    Ok(ReadOptions {
        null_token: selection.null_token.trim().to_string(),
        shard,
        limit: selection.limit,
        delimiter: Default::default(),
    })
}

/// No output may be the input, another output, or a file this tool must not
/// write over; the files written at the end need room beside them.
fn check_outputs(flags: &Flags<'_>) -> Result<(), Fatal> {
    let role = match flags.mode {
        Mode::Plan { .. } => Role::Plan,
        Mode::DryRun | Mode::Apply { .. } => Role::RunResults,
    };
    let mut outputs = vec![("-o", flags.output, role)];
    if let Some(&undo) = flags.mode.undo() {
        outputs.push(("--undo-file", undo, Role::Undo));
    }
    let reports = [
        ("--summary-json", flags.report.summary_json.as_deref()),
        ("--metrics-file", flags.report.metrics_file.as_deref()),
        ("--report", flags.html_report),
    ];
    for (flag, path) in reports {
        if let Some(path) = path {
            outputs.push((flag, path, Role::Report));
        }
    }
    files::check(Some(flags.input), &outputs)?;
    for (_, path) in reports {
        if let Some(path) = path {
            ledger::check_room_beside(path)?;
        }
    }
    Ok(())
}

/// What to do with a results file that already holds rows.
fn results_policy(flags: &Flags<'_>) -> Existing {
    match (flags.resume, flags.force, &flags.mode) {
        (true, _, _) => LEDGER_APPEND,
        (false, true, _) => Existing::Overwrite,
        (false, false, Mode::Plan { .. }) => Existing::Refuse {
            advice: "add --force to overwrite it",
        },
        (false, false, _) => Existing::Refuse {
            advice: "add --resume to continue the run it records, or --force to overwrite it",
        },
    }
}

/// What to do with an undo file that already holds rows: go on with it
/// (`--resume`), or refuse. `--force` never empties one: it holds the only
/// copy of the values the accounts had before the first run changed them.
fn undo_policy(resume: bool) -> Existing {
    if resume {
        Existing::Append {
            other_header: "the input now sets other columns than this undo file records, so \
                           --resume cannot go on with it: give the input its earlier columns, \
                           or start a new job with another -o and another --undo-file (keep \
                           this one: it holds the previous values of the run that wrote it)",
        }
    } else {
        Existing::Refuse {
            advice: "add --resume to go on with the run that wrote it, or choose another \
                     --undo-file (delete it only once you are sure that run need not be undone)",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    /// A directory no test creates: every path in it is absent, so the
    /// output checks read nothing.
    const NOWHERE: &str = "/nonexistent-gcore-iam-bulk-config-test";

    /// Parses a command line as `main` does and builds its `Config` with
    /// `env`: the words after the program name, paths taken in `NOWHERE`.
    fn config(words: &str, env: &Env) -> Result<Config, Fatal> {
        let args = std::iter::once("gcore-iam-bulk".to_string())
            .chain(words.split_whitespace().map(|w| w.replace("DIR", NOWHERE)));
        let cli = Cli::try_parse_from(args).expect("a command line clap accepts");
        match &cli.command {
            Command::Run(args) => Config::new(&Flags::of_run(args), env),
            Command::Plan(args) => Config::new(&Flags::of_plan(args), env),
            _ => panic!("not run or plan: {words}"),
        }
    }

    fn with_token() -> Env {
        Env {
            api_key: Some("77001$tOkEnSeCrEt".into()),
            ..Env::default()
        }
    }

    fn refusal(words: &str, env: &Env) -> String {
        match config(words, env) {
            Err(Fatal::Usage(why)) => why,
            Err(other) => panic!("{words}: refused, but not for its usage: {other}"),
            Ok(_) => panic!("{words}: not refused"),
        }
    }

    #[test]
    fn each_mode_carries_what_it_needs() {
        let env = with_token();
        let run = config(
            "run DIR/in.csv -o DIR/out.csv --undo-file DIR/undo.csv --skip-unchanged",
            &env,
        )
        .unwrap();
        let Mode::Apply {
            api: Endpoint::Api(target),
            options,
        } = &run.mode
        else {
            panic!("run sends to the API");
        };
        assert_eq!(target.base_url, "https://api.gcore.com");
        assert!(target.token.is_some());
        assert!(options.skip_unchanged);
        assert_eq!(
            options.undo.as_ref().map(|u| u.path.clone()),
            Some(PathBuf::from(format!("{NOWHERE}/undo.csv")))
        );

        let plan = config("plan DIR/in.csv -o DIR/plan.csv --simulator", &env).unwrap();
        assert!(matches!(
            plan.mode,
            Mode::Plan {
                api: Endpoint::Simulator
            }
        ));
        assert!(plan.spool_input, "the simulator is seeded from the input");
        assert_eq!(plan.thresholds.max_failure_rate, 1.0, "a plan never stops");
        assert_eq!(plan.confirm_above, None);

        let dry = config("run DIR/in.csv -o - --dry-run", &Env::default()).unwrap();
        assert!(matches!(dry.mode, Mode::DryRun), "needs no token");
        assert_eq!(dry.results, Results::Stdout);
        assert_eq!(dry.output(), Path::new("-"));
    }

    #[test]
    fn a_job_that_sends_needs_a_token_unless_it_runs_on_the_simulator() {
        let why = refusal("run DIR/in.csv -o DIR/out.csv", &Env::default());
        assert!(why.starts_with("no API token"), "{why}");
        let why = refusal("plan DIR/in.csv -o DIR/plan.csv", &Env::default());
        assert!(why.starts_with("no API token"), "{why}");
        assert!(config("run DIR/in.csv -o DIR/out.csv --simulator", &Env::default()).is_ok());
        assert!(config("run DIR/in.csv -o DIR/out.csv --dry-run", &Env::default()).is_ok());
    }

    #[test]
    fn a_base_url_with_a_password_is_refused_without_repeating_it() {
        let why = refusal(
            "run DIR/in.csv -o DIR/out.csv --api-url https://me:s3cret@api.example",
            &with_token(),
        );
        assert!(why.contains("user name or password"), "{why}");
        assert!(!why.contains("s3cret"), "{why}");
        assert!(!why.contains("tOkEnSeCrEt"), "{why}");
    }

    #[test]
    fn flags_that_cannot_go_together_are_refused() {
        let env = with_token();
        let why = refusal("run DIR/in.csv -o - --resume", &env);
        assert!(why.starts_with("--resume needs -o"), "{why}");
        let why = refusal("plan DIR/in.csv -o - --report DIR/r.html", &env);
        assert!(why.starts_with("--report needs -o"), "{why}");
        let why = refusal("run DIR/in.csv -o DIR/out.csv --null-token=", &env);
        assert!(why.starts_with("--null-token cannot be empty"), "{why}");
    }

    #[test]
    fn outputs_that_name_the_input_or_each_other_are_refused() {
        let env = with_token();
        let why = refusal("run DIR/in.csv -o DIR/in.csv", &env);
        assert!(why.contains("is the input file itself"), "{why}");
        let why = refusal(
            "run DIR/in.csv -o DIR/out.csv --undo-file DIR/out.csv",
            &env,
        );
        assert!(
            why.contains("-o and --undo-file name the same file"),
            "{why}"
        );
        let why = refusal(
            "plan DIR/in.csv -o DIR/plan.csv --summary-json DIR/plan.csv",
            &env,
        );
        assert!(why.contains("name the same file"), "{why}");
    }

    #[test]
    fn shard_auto_takes_its_index_from_the_environment() {
        let why = refusal(
            "run DIR/in.csv -o - --dry-run --shard auto/4",
            &Env::default(),
        );
        assert!(why.contains("JOB_COMPLETION_INDEX"), "{why}");
        let env = Env {
            job_completion_index: Some("3".into()),
            ..Env::default()
        };
        let dry = config("run DIR/in.csv -o - --dry-run --shard auto/4", &env).unwrap();
        let shard = dry.read_options.shard.expect("a shard");
        assert_eq!((shard.index, shard.count), (3, 4));
        let env = Env {
            job_completion_index: Some("4".into()),
            ..Env::default()
        };
        let why = refusal("run DIR/in.csv -o - --dry-run --shard auto/4", &env);
        assert!(why.contains("out of range"), "{why}");
    }

    #[test]
    fn the_file_policy_follows_resume_and_force() {
        let env = with_token();
        let policy = |words: &str| match config(words, &env).unwrap().results {
            Results::File(file) => file.existing,
            Results::Stdout => panic!("{words}: results on standard output"),
        };
        assert_eq!(
            policy("run DIR/in.csv -o DIR/out.csv --resume"),
            LEDGER_APPEND
        );
        assert_eq!(
            policy("run DIR/in.csv -o DIR/out.csv --force"),
            Existing::Overwrite
        );
        assert!(matches!(
            policy("run DIR/in.csv -o DIR/out.csv"),
            Existing::Refuse { advice } if advice.contains("--resume")
        ));
        assert!(matches!(
            policy("plan DIR/in.csv -o DIR/plan.csv"),
            Existing::Refuse { advice } if !advice.contains("--resume")
        ));

        let undo = |words: &str| {
            config(words, &env)
                .unwrap()
                .mode
                .undo()
                .map(|u| u.existing)
                .expect("an undo file")
        };
        assert!(matches!(
            undo("run DIR/in.csv -o DIR/out.csv --undo-file DIR/u.csv --resume"),
            Existing::Append { .. }
        ));
        assert!(
            matches!(
                undo("run DIR/in.csv -o DIR/out.csv --undo-file DIR/u.csv --force"),
                Existing::Refuse { .. }
            ),
            "--force never empties an undo file"
        );
    }

    #[test]
    fn the_token_never_shows_in_debug() {
        let env = Env {
            api_key: Some("secret-token-42".into()),
            job_completion_index: None,
        };
        assert!(!format!("{env:?}").contains("secret-token-42"));
    }
}
