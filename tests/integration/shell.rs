//! What a user installs around the binary: completion scripts loaded into
//! real shells, and the manual pages.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use crate::common::*;

/// Whether CI asked for every shell to be there (`.ci/run` installs zsh and
/// fish); elsewhere a missing zsh or fish skips its check, loudly.
fn shell_required() -> bool {
    std::env::var_os("GCORE_IAM_BULK_TEST_ALL_SHELLS").is_some()
}

fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn skip_unless(program: &str) -> bool {
    if have(program) {
        return false;
    }
    assert!(
        !shell_required(),
        "{program} is not installed, and GCORE_IAM_BULK_TEST_ALL_SHELLS asks for it"
    );
    eprintln!("SKIPPED: {program} is not installed (apt-get install {program})");
    true
}

/// What bash offers for `words` (the last one being completed), after
/// loading the script the binary prints, the way bash-completion would.
fn bash_complete(work: &Work, words: &[&str]) -> BTreeSet<String> {
    let ran = work.run(&["completions", "bash"]);
    assert_exit(&ran, 0);
    work.write("completion.bash", &ran.stdout);
    let script = r#"
        source ./completion.bash || exit 97
        # The function bash would call, as the script registered it.
        spec=$(complete -p gcore-iam-bulk) || exit 98
        func=$(sed -E 's/.*-F ([^ ]+) .*/\1/' <<<"$spec")
        COMP_WORDS=("$@")
        COMP_CWORD=$(( $# - 1 ))
        COMP_LINE="$*"
        COMP_POINT=${#COMP_LINE}
        "$func" gcore-iam-bulk "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
        printf '%s\n' "${COMPREPLY[@]}"
    "#;
    let out = Command::new("bash")
        .current_dir(work.dir.path())
        .args(["--norc", "--noprofile", "-c", script, "bash"])
        .args(words)
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "bash: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn bash_completes_options_of_subcommands() {
    let work = Work::new();
    assert_eq!(
        bash_complete(&work, &["gcore-iam-bulk", "run", "--s"]),
        set(&[
            "--shard",
            "--simulator",
            "--skip-unchanged",
            "--status-interval",
            "--summary-json"
        ])
    );
    assert_eq!(
        bash_complete(&work, &["gcore-iam-bulk", "export", "--col"]),
        set(&["--columns"])
    );
    assert_eq!(
        bash_complete(&work, &["gcore-iam-bulk", "plan", "--ca"]),
        set(&["--ca-cert"])
    );
    // The top level still works.
    assert!(bash_complete(&work, &["gcore-iam-bulk", "ex"]).contains("export"));
}

#[test]
fn fish_completes_options_of_subcommands() {
    if skip_unless("fish") {
        return;
    }
    let work = Work::new();
    let ran = work.run(&["completions", "fish"]);
    assert_exit(&ran, 0);
    work.write("completion.fish", &ran.stdout);
    let complete = |line: &str| -> BTreeSet<String> {
        let out = Command::new("fish")
            .current_dir(work.dir.path())
            .args([
                "--no-config",
                "-c",
                &format!("source ./completion.fish; and complete -C '{line}'"),
            ])
            .output()
            .expect("fish runs");
        assert!(
            out.status.success(),
            "fish: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split('\t').next())
            .map(str::to_string)
            .collect()
    };
    assert_eq!(
        complete("gcore-iam-bulk run --s"),
        set(&[
            "--shard",
            "--simulator",
            "--skip-unchanged",
            "--status-interval",
            "--summary-json"
        ])
    );
    assert_eq!(complete("gcore-iam-bulk export --col"), set(&["--columns"]));
}

#[test]
fn zsh_script_parses_and_is_named_for_the_binary() {
    let work = Work::new();
    let ran = work.run(&["completions", "zsh"]);
    assert_exit(&ran, 0);
    assert!(
        ran.stdout.starts_with("#compdef gcore-iam-bulk\n"),
        "{}",
        &ran.stdout[..100.min(ran.stdout.len())]
    );
    assert!(ran.stdout.contains("_gcore-iam-bulk() {"));
    assert!(ran.stdout.contains("--skip-unchanged[") && ran.stdout.contains("--columns=["));
    if skip_unless("zsh") {
        return;
    }
    work.write("_gcore-iam-bulk", &ran.stdout);
    // Parse only (-n): completing needs an interactive line editor.
    let out = Command::new("zsh")
        .current_dir(work.dir.path())
        .args(["-n", "_gcore-iam-bulk"])
        .output()
        .expect("zsh runs");
    assert!(
        out.status.success(),
        "zsh -n: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn completions_and_man_survive_a_closed_pipe() {
    let work = Work::new();
    for args in [&["completions", "fish"][..], &["man"][..]] {
        let mut child = work
            .command()
            .args(args)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("the binary starts");
        // Close the read end at once, as `| head -0` would.
        drop(child.stdout.take());
        let ran = wait_no_stdout(child);
        assert_eq!(ran.0, 0, "{args:?}: {}", ran.1);
        assert!(!ran.1.contains("panicked"), "{args:?}: {}", ran.1);
    }
}

/// Waits for a child whose stdout was already closed; its exit code and stderr.
fn wait_no_stdout(child: std::process::Child) -> (i32, String) {
    let out = child.wait_with_output().expect("the binary ends");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The pages a roff text refers to, as `name(section)`, hyphens unescaped.
fn references(roff: &str) -> BTreeSet<String> {
    let text = roff
        .replace("\\-", "-")
        .replace("\\fB", "")
        .replace("\\fR", "");
    let mut found = BTreeSet::new();
    for (at, _) in text.match_indices("(1)") {
        let name: String = text[..at]
            .chars()
            .rev()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        if !name.is_empty() {
            found.insert(format!("{name}.1"));
        }
    }
    found
}

#[test]
fn man_dir_writes_a_page_per_command_and_every_reference_exists() {
    let work = Work::new();
    let ran = work.run(&["man", "--dir", "man/man1"]);
    assert_exit(&ran, 0);
    let dir = work.path("man/man1");
    let pages: BTreeSet<String> = std::fs::read_dir(&dir)
        .expect("the directory exists")
        .map(|e| {
            e.expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let expected = set(&[
        "gcore-iam-bulk.1",
        "gcore-iam-bulk-run.1",
        "gcore-iam-bulk-plan.1",
        "gcore-iam-bulk-export.1",
        "gcore-iam-bulk-results.1",
        "gcore-iam-bulk-report.1",
        "gcore-iam-bulk-simulate.1",
        "gcore-iam-bulk-completions.1",
        "gcore-iam-bulk-man.1",
    ]);
    assert_eq!(pages, expected);
    // Each written path is printed.
    assert_eq!(ran.stdout.lines().count(), expected.len(), "{}", ran.stdout);

    let read = |name: &str| std::fs::read_to_string(dir.join(name)).expect("a page");
    for page in &pages {
        let roff = read(page);
        let title = page.trim_end_matches(".1");
        assert!(roff.contains(&format!(".TH {title} 1")), "{page}");
        for reference in references(&roff) {
            assert!(
                pages.contains(&reference),
                "{page} refers to {reference}, which was not written"
            );
        }
    }

    let main = read("gcore-iam-bulk.1");
    for section in [
        "INPUT CSV",
        "RESULTS CSV",
        "OUTCOMES",
        "EXIT STATUS",
        "ENVIRONMENT",
        "FILES",
        "SEE ALSO",
    ] {
        assert!(
            main.contains(&format!(".SH \"{section}\""))
                || main.contains(&format!(".SH {section}\n")),
            "no {section}"
        );
    }
    for needle in [
        "would_update",
        "GCORE_API_KEY",
        "SSL_CERT_FILE",
        "HTTPS_PROXY",
        "130",
    ] {
        assert!(main.contains(needle), "the main page lacks {needle}");
    }
    let run = read("gcore-iam-bulk-run.1");
    for option in ["skip\\-unchanged", "undo\\-file", "ca\\-cert", "EXAMPLES"] {
        assert!(run.contains(option), "the run page lacks {option}");
    }

    // `man` without --dir still prints the main page.
    let ran = work.run(&["man"]);
    assert_exit(&ran, 0);
    assert_eq!(ran.stdout, main);

    // Every page renders without a warning, where groff is installed.
    if have("groff") {
        for page in &pages {
            let out = Command::new("groff")
                .args(["-man", "-Tutf8", "-ww", "-z"])
                .arg(Path::new(&dir).join(page))
                .output()
                .expect("groff runs");
            assert!(
                out.stderr.is_empty(),
                "{page}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// git's answer in the source tree, or `None` where git cannot tell.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

#[test]
fn version_names_the_commit_it_was_built_from() {
    let work = Work::new();
    let ran = work.run(&["--version"]);
    assert_exit(&ran, 0);
    let package = env!("CARGO_PKG_VERSION");
    let expected = match (
        git(&["rev-parse", "--short", "HEAD"]),
        git(&["log", "-1", "--format=%cs"]),
    ) {
        (Some(commit), Some(date)) => format!("gcore-iam-bulk {package} ({commit} {date})\n"),
        // Built outside a git checkout: the package version alone.
        _ => format!("gcore-iam-bulk {package}\n"),
    };
    assert_eq!(ran.stdout, expected);
}
