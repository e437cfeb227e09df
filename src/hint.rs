//! The commands the tool prints for the user to type next. Each is this
//! process's own command line, changed only by the flags that make it do
//! what the advice says, so that it is accepted as printed (the integration
//! tests run every one): `run` goes on with `--resume`, which `plan` and
//! `--dry-run` do not need (they start again with `--force`).

/// What the printed command is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Again {
    /// The same job, skipping what is done: `--resume` (never with `--force`).
    Resume,
    /// The same job from the start, over its own output: `--force` (never
    /// with `--resume`).
    Restart,
    /// The same command as typed.
    Same,
}

/// This process's command line, changed for `again`; with `without_limit`,
/// `--limit N` is dropped too (a canary that is to go on with the rest).
pub fn command(again: Again, without_limit: bool) -> String {
    render(&edit(std::env::args().collect(), again, without_limit))
}

fn edit(args: Vec<String>, again: Again, without_limit: bool) -> Vec<String> {
    let (drop, add) = match again {
        Again::Resume => (Some("--force"), Some("--resume")),
        Again::Restart => (Some("--resume"), Some("--force")),
        Again::Same => (None, None),
    };
    let mut out = Vec::with_capacity(args.len() + 1);
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if Some(arg.as_str()) == drop {
            continue;
        }
        if without_limit {
            if arg == "--limit" {
                args.next();
                continue;
            }
            if arg.starts_with("--limit=") {
                continue;
            }
        }
        out.push(arg);
    }
    if let Some(add) = add
        && !out.iter().any(|a| a == add)
    {
        out.push(add.to_string());
    }
    out
}

/// One line a shell reads back as `args`, with no credentials in any URL.
fn render(args: &[String]) -> String {
    args.iter()
        .map(|a| shell_quote(&crate::client::api::without_credentials(a)))
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn shell_quote(arg: &str) -> String {
    let safe = !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b));
    if safe {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split(' ').map(str::to_string).collect()
    }

    #[test]
    fn resume_and_restart_never_carry_the_flag_they_conflict_with() {
        let typed = args("gib run in.csv -o out.csv --force --limit 10");
        assert_eq!(
            edit(typed.clone(), Again::Resume, false).join(" "),
            "gib run in.csv -o out.csv --limit 10 --resume"
        );
        assert_eq!(
            edit(typed.clone(), Again::Resume, true).join(" "),
            "gib run in.csv -o out.csv --resume"
        );
        let typed = args("gib run in.csv -o out.csv --dry-run --resume --limit=3");
        assert_eq!(
            edit(typed.clone(), Again::Restart, true).join(" "),
            "gib run in.csv -o out.csv --dry-run --force"
        );
        assert_eq!(edit(typed.clone(), Again::Same, false), typed);
    }

    #[test]
    fn quotes_for_the_shell_and_hides_credentials() {
        assert_eq!(shell_quote("results.csv"), "results.csv");
        assert_eq!(shell_quote("my file.csv"), "'my file.csv'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(
            render(&args("gib --api-url=http://u:p@h:1")),
            "gib '--api-url=http://***@h:1'"
        );
    }
}
