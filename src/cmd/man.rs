//! The manual: a page per command, rendered by clap_mangen from the command
//! definitions, and a main page that adds what flags cannot say (the CSV
//! formats, outcomes, exit status, environment and files).

use clap::CommandFactory;
use clap_mangen::roff::{Roff, bold, italic, roman};

use crate::cli::Cli;
use crate::cmd::write_stdout;
use crate::error::{Ending, Finished, Unfinished};

/// One manual page: its file name (`gcore-iam-bulk-run.1`) and roff text.
pub struct Page {
    pub file_name: String,
    pub roff: Vec<u8>,
}

/// `man`: the main page to standard output, or every page into `dir`.
pub fn man(dir: Option<&std::path::Path>) -> Ending {
    let Some(dir) = dir else {
        return write_stdout(&main_page().roff);
    };
    match write_manual(dir) {
        Ok(()) => Ok(Finished::CLEAN),
        Err(e) => {
            eprintln!(
                "error: cannot write the manual pages into {}: {e}",
                dir.display()
            );
            Err(Unfinished::Aborted)
        }
    }
}

/// Writes every manual page into `dir` and prints the path of each.
fn write_manual(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut written = String::new();
    for page in all_pages() {
        let path = dir.join(&page.file_name);
        std::fs::write(&path, &page.roff)?;
        written.push_str(&format!("{}\n", path.display()));
    }
    // The pages are written; a list that cannot be shown is said on stderr
    // (by `write_stdout`) but does not change how `man` ended.
    let _ = write_stdout(written.as_bytes());
    Ok(())
}

/// The main page, `gcore-iam-bulk(1)`.
pub fn main_page() -> Page {
    let command = command();
    let see_also = command
        .get_subcommands()
        .map(|sub| format!("{}(1)", page_name(sub)))
        .collect::<Vec<_>>();
    render(&command, &main_sections(&see_also))
}

/// Every page: the main page, then one per command.
pub fn all_pages() -> Vec<Page> {
    let command = command();
    let mut pages = vec![main_page()];
    for sub in command.get_subcommands() {
        let mut extra = Roff::new();
        extra.control("SH", ["SEE ALSO"]).text([
            bold("gcore-iam-bulk"),
            roman("(1), for the CSV formats, outcomes, exit status, environment and files."),
        ]);
        pages.push(render(sub, &extra.to_roff()));
    }
    pages
}

/// The command tree as the pages show it: built, so that each subcommand
/// knows its page name, and without clap's `help` subcommand, which has no
/// page.
fn command() -> clap::Command {
    let mut command = Cli::command().disable_help_subcommand(true);
    command.build();
    command
}

fn page_name(command: &clap::Command) -> String {
    command
        .get_display_name()
        .unwrap_or_else(|| command.get_name())
        .to_string()
}

/// Renders `command`'s page with `sections` (roff) before its VERSION
/// section, or at the end when it has none.
fn render(command: &clap::Command, sections: &str) -> Page {
    let man = clap_mangen::Man::new(command.clone())
        .manual("gcore-iam-bulk manual")
        .source(format!("gcore-iam-bulk {}", env!("GCORE_IAM_BULK_VERSION")));
    let file_name = man.get_filename();
    let mut rendered = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = man.render(&mut rendered);
    // Every command's after-help holds its examples.
    let text = String::from_utf8_lossy(&rendered).replace("\n.SH EXTRA\n", "\n.SH EXAMPLES\n");
    let text = match text.find("\n.SH VERSION") {
        Some(at) => format!("{}\n{}{}", &text[..at], sections, &text[at + 1..]),
        None => format!("{text}{sections}"),
    };
    Page {
        file_name,
        roff: text.into_bytes(),
    }
}

/// `.TP` items: a bold term, then its description.
fn items(roff: &mut Roff, items: &[(&str, &str)]) {
    for (term, text) in items {
        roff.control("TP", [])
            .text([bold(*term)])
            .text([roman(*text)]);
    }
}

fn paragraph(roff: &mut Roff, text: &str) {
    roff.control("PP", []).text([roman(text)]);
}

fn main_sections(see_also: &[String]) -> String {
    let mut r = Roff::new();

    r.control("SH", ["INPUT CSV"]);
    paragraph(
        &mut r,
        "A header row, RFC 4180 quoting; a byte-order mark and CRLF line ends are accepted. \
         The delimiter (comma, semicolon or tab) is the one the header line uses, or \
         --delimiter. UTF-8, UTF-16 with a byte-order mark, and Windows-1252 (a file with no \
         UTF-8 character and bytes that are not UTF-8) are read; stderr says which. A \
         read_at column (export and undo files write one) is ignored. INPUT may be - for \
         standard input.",
    );
    paragraph(
        &mut r,
        "The key column is client_id (also clientId or id). The other columns are the API's \
         field names: email, companyName, custom_id, name, phone, reseller, seller, is_test; \
         any subset, in any order. Headers match case-insensitively after trimming spaces. \
         An unknown or duplicated column, or a missing key, stops the run before any request \
         (exit 2), naming the column and listing the accepted ones.",
    );
    paragraph(
        &mut r,
        "Cells are trimmed. An empty cell leaves the field unchanged (it is not sent). The \
         cell null (see --null-token) sends JSON null, allowed only for custom_id, name, phone \
         and seller. client_id is a whole number of at least 1; reseller and seller whole \
         numbers of at least 0; is_test is true, false, 1 or 0; email has one @ with text on \
         both sides, a dot in the domain, no spaces, at most 254 characters.",
    );
    paragraph(
        &mut r,
        "A row that breaks a rule, sets no field, repeats an earlier client_id, has the wrong \
         number of fields or invalid UTF-8 becomes an invalid result; nothing is sent for it \
         and the run goes on.",
    );

    r.control("SH", ["RESULTS CSV"]);
    paragraph(
        &mut r,
        "One row per input row, written as soon as the row finishes (in completion order), \
         with the columns line, client_id, outcome, http_status, attempts, account_status, \
         error, request, duration_ms, diff, requested, undo_file, finished_at, retries and \
         throttled. line is the input line where the row starts (the header is line 1); \
         attempts is 0 when nothing was sent; error is empty on success and otherwise one \
         line saying what failed and why; finished_at is when the row ended (UTC, RFC 3339 \
         with milliseconds); retries and throttled count attempts beyond the first and the \
         answers that were the server's limit refusing (HTTP 429, and any --throttle-status). -o - writes to standard output; --excel starts the file with a UTF-8 \
         byte-order mark. report RESULTS... -o report.html makes one HTML page of it.",
    );

    r.control("SH", ["OUTCOMES"]);
    items(
        &mut r,
        &[
            (
                "updated",
                "the PATCH succeeded and the account holds every value sent",
            ),
            ("failed", "the request was tried and did not succeed"),
            ("invalid", "the row did not validate; nothing was sent"),
            ("dry_run", "--dry-run: the row is valid; nothing was sent"),
            (
                "unchanged",
                "the account already held every value (plan, --skip-unchanged)",
            ),
            (
                "would_update",
                "plan: the account differs in at least one field",
            ),
            (
                "mismatch",
                "the PATCH answered 200 but the returned account does not hold what was sent",
            ),
        ],
    );

    r.control("SH", ["EXIT STATUS"]);
    items(
        &mut r,
        &[
            (
                "0",
                "every row ended updated, dry_run, unchanged or would_update",
            ),
            (
                "1",
                "the run finished, and some rows ended failed, invalid or mismatch",
            ),
            (
                "2",
                "usage, configuration or input-header error, another run holds the results \
                 file, or the API could not be reached before the first change; nothing was sent",
            ),
            (
                "3",
                "aborted: the token was rejected (401), a failure threshold was crossed, or the \
                 results could not be written",
            ),
            (
                "130",
                "interrupted by SIGINT or SIGTERM; rerun with --resume",
            ),
        ],
    );

    r.control("SH", ["ENVIRONMENT"]);
    items(
        &mut r,
        &[
            (
                "GCORE_API_KEY",
                "the API token, when --api-key-file is not given. It is never written \
                 anywhere: results, logs and errors mask it.",
            ),
            ("GCORE_BASE_URL", "the API's base URL (--api-url)"),
            (
                "SSL_CERT_FILE, SSL_CERT_DIR",
                "certificates to trust instead of the system's store (the bundled roots and \
                 --ca-cert still count)",
            ),
            (
                "HTTPS_PROXY, HTTP_PROXY, ALL_PROXY",
                "the proxy for https:// and http:// API URLs, or for both (lower-case names \
                 work too; http://user:password@host:port for credentials). An API on this \
                 machine is never proxied.",
            ),
            (
                "NO_PROXY",
                "hosts, domains and networks that bypass the proxy, comma-separated (* for all)",
            ),
            (
                "JOB_COMPLETION_INDEX",
                "the shard number for --shard auto/N (Kubernetes Indexed Jobs)",
            ),
            ("RUST_LOG", "a log filter that overrides -v and -q"),
            ("NO_COLOR", "no colours in log lines on a terminal"),
        ],
    );

    r.control("SH", ["FILES"]);
    items(
        &mut r,
        &[
            (
                "RESULTS (-o)",
                "the ledger of a run: appended to by --resume, locked while a run uses it, \
                 never overwritten without --force",
            ),
            (
                "UNDO (--undo-file)",
                "the previous values of every changed account, as an input file that puts \
                 them back; never emptied",
            ),
            ("--api-key-file PATH", "the API token on its first line"),
            (
                "--ca-cert PATH",
                "certificate authorities (PEM) to trust besides the system's",
            ),
            (
                "--summary-json PATH, --metrics-file PATH",
                "a JSON summary and Prometheus gauges of the run, written atomically at its end",
            ),
        ],
    );

    r.control("SH", ["SEE ALSO"]);
    let mut refs = Vec::new();
    for (i, name) in see_also.iter().enumerate() {
        if i > 0 {
            refs.push(roman(", "));
        }
        refs.push(bold(name.clone()));
    }
    r.text(refs);
    r.control("PP", []).text([
        roman("The project's "),
        italic("README.md"),
        roman(" (with worked examples for audits, cron and Kubernetes) and "),
        italic("CHANGELOG.md"),
        roman("."),
    ]);
    r.to_roff()
}
