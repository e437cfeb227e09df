//! Puts the git commit into `--version` when built from a git checkout:
//! `0.1.0 (abc1234 2026-12-01)`, as cargo and rustc do. Without git, or
//! outside a checkout (a crate tarball, a container build without .git), the
//! version is the package version alone.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let version = env!("CARGO_PKG_VERSION");
    let full = match (
        git(&["rev-parse", "--short", "HEAD"]),
        git(&["log", "-1", "--format=%cs"]),
    ) {
        (Some(commit), Some(date)) => {
            watch_head();
            format!("{version} ({commit} {date})")
        }
        _ => version.to_string(),
    };
    println!("cargo:rustc-env=GCORE_IAM_BULK_VERSION={full}");
}

/// A line of git's output, or `None` when git is missing or fails.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!text.is_empty()).then_some(text)
}

/// Builds again when HEAD moves: a new commit, a checkout, a reset. Only
/// files that exist are named, since a missing one would rerun this script
/// on every build.
fn watch_head() {
    let mut files = vec![git(&["rev-parse", "--git-path", "HEAD"])];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        files.push(git(&["rev-parse", "--git-path", &branch]));
    }
    files.push(git(&["rev-parse", "--git-path", "packed-refs"]));
    for file in files.into_iter().flatten().map(PathBuf::from) {
        if file.exists() {
            println!("cargo:rerun-if-changed={}", file.display());
        }
    }
}
