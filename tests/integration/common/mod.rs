//! Shared test helpers: a simulator on its own runtime, a temporary working
//! directory, running the binary with a deadline, reading results back as CSV.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub use gcore_iam_bulk::sim::{
    Account, Fault, FaultRule, Faults, HeaderStyle, RecordedRequest, ServerLimit, ServerRate,
    Shape, SimConfig, Simulator, Trigger,
};

/// The token the simulator accepts in tests. Long and distinctive, so a leak
/// anywhere is easy to find.
pub const TOKEN: &str = "77001$tOkEnSeCrEt9f8e7d6c5b4a";

/// A simulator running on its own runtime for the length of a test.
pub struct Sim {
    runtime: tokio::runtime::Runtime,
    sim: Option<Simulator>,
    pub url: String,
}

impl Sim {
    pub fn start(config: SimConfig) -> Sim {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        let sim = runtime
            .block_on(Simulator::start(config, "127.0.0.1:0".parse().unwrap()))
            .expect("the simulator starts");
        let url = sim.base_url();
        Sim {
            runtime,
            sim: Some(sim),
            url,
        }
    }

    /// Generated accounts for `ids`, no faults.
    pub fn with_accounts(ids: impl IntoIterator<Item = u64>) -> Sim {
        Sim::start(SimConfig::new(TOKEN).with_generated_accounts(ids))
    }

    pub fn with_faults(ids: impl IntoIterator<Item = u64>, faults: Faults) -> Sim {
        Sim::start(
            SimConfig::new(TOKEN)
                .with_generated_accounts(ids)
                .with_faults(faults),
        )
    }

    fn sim(&self) -> &Simulator {
        self.sim.as_ref().expect("running")
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.sim().requests()
    }

    /// The PATCH requests received, in arrival order.
    pub fn patches(&self) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "PATCH")
            .collect()
    }

    pub fn patches_for(&self, id: u64) -> Vec<RecordedRequest> {
        self.patches()
            .into_iter()
            .filter(|r| r.client_id == Some(id))
            .collect()
    }

    pub fn account(&self, id: u64) -> Account {
        self.sim().account(id).expect("the account exists")
    }

    pub fn set_faults(&self, faults: Faults) {
        self.sim().set_faults(faults);
    }

    pub fn clear_requests(&self) {
        self.sim().clear_requests();
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if let Some(sim) = self.sim.take() {
            self.runtime.block_on(sim.shutdown());
        }
    }
}

pub fn rule(fault: Fault, trigger: Trigger) -> FaultRule {
    FaultRule::new(fault, trigger)
}

pub fn faults(rules: Vec<FaultRule>) -> Faults {
    Faults {
        rules,
        ..Faults::default()
    }
}

/// What a run of the binary left behind.
#[derive(Debug)]
pub struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

/// A temporary working directory for one test.
pub struct Work {
    pub dir: tempfile::TempDir,
}

/// No test run may take longer than this: a hang fails the test instead of
/// blocking the suite.
pub const DEADLINE: Duration = Duration::from_secs(90);

impl Work {
    pub fn new() -> Work {
        Work {
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, contents).expect("write a test file");
        path
    }

    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).expect("read a file the run wrote")
    }

    /// The binary, in this directory, with a clean environment: no token, no
    /// base URL, no log filter from the caller's shell.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gcore-iam-bulk"));
        cmd.current_dir(self.dir.path())
            .env_remove("GCORE_API_KEY")
            .env_remove("GCORE_BASE_URL")
            .env_remove("RUST_LOG")
            .env_remove("JOB_COMPLETION_INDEX")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // The caller's certificate and proxy settings would change what the
        // tests see; a test that needs them sets them on its own child.
        for var in [
            "SSL_CERT_FILE",
            "SSL_CERT_DIR",
            "HTTPS_PROXY",
            "https_proxy",
            "HTTP_PROXY",
            "http_proxy",
            "ALL_PROXY",
            "all_proxy",
            "NO_PROXY",
            "no_proxy",
        ] {
            cmd.env_remove(var);
        }
        cmd
    }

    /// Runs the binary with `args` and no API.
    pub fn run(&self, args: &[&str]) -> Ran {
        wait(
            self.command()
                .args(args)
                .spawn()
                .expect("the binary starts"),
        )
    }

    /// Runs the binary against `sim` with the test token.
    pub fn run_against(&self, sim: &Sim, args: &[&str]) -> Ran {
        let mut cmd = self.command();
        cmd.args(args)
            .args(["--api-url", &sim.url])
            .env("GCORE_API_KEY", TOKEN);
        wait(cmd.spawn().expect("the binary starts"))
    }

    /// Starts the binary against `sim` without waiting for it.
    pub fn spawn_against(&self, sim: &Sim, args: &[&str]) -> Child {
        let mut cmd = self.command();
        cmd.args(args)
            .args(["--api-url", &sim.url])
            .env("GCORE_API_KEY", TOKEN);
        cmd.spawn().expect("the binary starts")
    }

    /// `run INPUT -o OUTPUT` against `sim`, the command most tests run; add
    /// flags with [`Invocation::args`], then [`Invocation::ran`] it.
    pub fn run_rows<'a>(&'a self, sim: &'a Sim, input: &str, output: &str) -> Invocation<'a> {
        Invocation {
            work: self,
            sim,
            args: vec!["run".into(), input.into(), "-o".into(), output.into()],
        }
    }

    /// `plan INPUT -o OUTPUT` against `sim`.
    pub fn plan_rows<'a>(&'a self, sim: &'a Sim, input: &str, output: &str) -> Invocation<'a> {
        Invocation {
            args: vec!["plan".into(), input.into(), "-o".into(), output.into()],
            ..self.run_rows(sim, input, output)
        }
    }

    /// The results file as rows of column → value.
    pub fn results(&self, name: &str) -> Vec<BTreeMap<String, String>> {
        read_csv(&self.path(name))
    }

    /// Results rows keyed by `line`.
    pub fn results_by_line(&self, name: &str) -> BTreeMap<u64, BTreeMap<String, String>> {
        self.results(name)
            .into_iter()
            .map(|row| (row["line"].parse().expect("line is a number"), row))
            .collect()
    }
}

/// A command line being put together against a simulator.
pub struct Invocation<'a> {
    work: &'a Work,
    sim: &'a Sim,
    args: Vec<String>,
}

impl Invocation<'_> {
    /// Adds flags (and their values) after the ones already given.
    pub fn args<const N: usize>(mut self, args: [&str; N]) -> Self {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// `--rate unlimited`: no pacing, for tests that are not about it.
    pub fn unpaced(self) -> Self {
        self.args(["--rate", "unlimited"])
    }

    /// Runs it to the end (at most [`DEADLINE`]).
    pub fn ran(self) -> Ran {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        self.work.run_against(self.sim, &args)
    }

    /// Starts it without waiting.
    pub fn spawn(self) -> Child {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        self.work.spawn_against(self.sim, &args)
    }
}

/// Waits for a child to end (at most [`DEADLINE`]) and collects its output.
pub fn wait(child: Child) -> Ran {
    Running::watch(child).finish()
}

/// A running binary whose stderr is read line by line as it comes, so that
/// a test waits for what it is about to act on (a line saying the run got
/// an interrupt, say) instead of sleeping and hoping.
pub struct Running {
    pub child: Child,
    /// What stderr said so far, and a wake-up for each line.
    stderr: Arc<(Mutex<String>, Condvar)>,
    stderr_reader: std::thread::JoinHandle<()>,
    /// `None` when stdout is left unread until the end.
    stdout_reader: Option<std::thread::JoinHandle<String>>,
    start: Instant,
}

impl Running {
    /// Reads the child's stderr and stdout as they come.
    pub fn watch(mut child: Child) -> Running {
        let stdout = child.stdout.take().expect("piped");
        let stdout_reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = BufReader::new(stdout).read_to_string(&mut s);
            s
        });
        Running {
            stdout_reader: Some(stdout_reader),
            ..Running::leaving_stdout_unread(child)
        }
    }

    /// Reads the child's stderr as it comes; stdout is left unread until the
    /// child ends (for a reader of the results that stalls).
    pub fn leaving_stdout_unread(mut child: Child) -> Running {
        let stderr = child.stderr.take().expect("piped");
        let text = Arc::new((Mutex::new(String::new()), Condvar::new()));
        let stderr_reader = {
            let text = Arc::clone(&text);
            std::thread::spawn(move || {
                let mut stderr = BufReader::new(stderr);
                let mut line = Vec::new();
                while matches!(stderr.read_until(b'\n', &mut line), Ok(n) if n > 0) {
                    text.0
                        .lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&line));
                    text.1.notify_all();
                    line.clear();
                }
            })
        };
        Running {
            child,
            stderr: text,
            stderr_reader,
            stdout_reader: None,
            start: Instant::now(),
        }
    }

    /// Waits until a line of stderr holds `needle` and returns it; fails the
    /// test, showing stderr so far, after `within`.
    pub fn wait_for(&self, needle: &str, within: Duration) -> String {
        self.wait_for_stderr(&format!("line with `{needle}`"), within, |stderr| {
            stderr
                .lines()
                .find(|l| l.contains(needle))
                .map(str::to_string)
        })
    }

    /// Waits (at most 30 s) until stderr so far makes `seen` true; fails the
    /// test, naming `what` and showing stderr, otherwise.
    pub fn wait_until_stderr(&self, what: &str, mut seen: impl FnMut(&str) -> bool) {
        self.wait_for_stderr(what, Duration::from_secs(30), |stderr| {
            seen(stderr).then_some(())
        });
    }

    /// Waits until `found` finds something in stderr so far, woken by each
    /// line as it arrives (no polling); fails the test after `within`.
    fn wait_for_stderr<T>(
        &self,
        what: &str,
        within: Duration,
        mut found: impl FnMut(&str) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + within;
        let (text, arrived) = &*self.stderr;
        let mut stderr = text.lock().unwrap();
        loop {
            if let Some(it) = found(&stderr) {
                return it;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no {what} within {within:?}; stderr so far:\n{stderr}"
            );
            stderr = arrived.wait_timeout(stderr, left).unwrap().0;
        }
    }

    /// Sends `signal` (`INT`, `TERM`).
    pub fn signal(&self, name: &str) {
        signal(&self.child, name);
    }

    /// Whether the child is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .try_wait()
            .expect("wait for the binary")
            .is_none()
    }

    /// Waits for the child to end (at most [`DEADLINE`]) and collects its
    /// output.
    pub fn finish(self) -> Ran {
        self.finish_within(DEADLINE)
    }

    /// Waits for the child to end, failing the test after `within` (the
    /// child is killed then), and collects its output.
    pub fn finish_within(mut self, within: Duration) -> Ran {
        let waited = Instant::now();
        // Polled (`Child::wait` could not be given up on), every `POLL`.
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for the binary") {
                break status;
            }
            if waited.elapsed() > within {
                let _ = self.child.kill();
                panic!("the run took longer than {within:?}");
            }
            std::thread::sleep(POLL);
        };
        let elapsed = self.start.elapsed();
        let stdout = match (self.stdout_reader, self.child.stdout.take()) {
            (Some(reader), _) => reader.join().unwrap_or_default(),
            (None, Some(mut unread)) => {
                let mut s = String::new();
                let _ = unread.read_to_string(&mut s);
                s
            }
            (None, None) => String::new(),
        };
        let _ = self.stderr_reader.join();
        let stderr = self.stderr.0.lock().unwrap().clone();
        Ran {
            code: status.code().unwrap_or(-1),
            stdout,
            stderr,
            elapsed,
        }
    }
}

pub fn read_csv(path: &Path) -> Vec<BTreeMap<String, String>> {
    let mut reader = csv::Reader::from_path(path).expect("a CSV file");
    let headers = reader.headers().expect("a header").clone();
    reader
        .records()
        .map(|record| {
            let record = record.expect("a well-formed record");
            headers
                .iter()
                .zip(record.iter())
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

/// An input file with `client_id` and `reseller` for each id.
pub fn reseller_moves(ids: impl IntoIterator<Item = u64>, reseller: u64) -> String {
    let mut text = String::from("client_id,reseller\n");
    for id in ids {
        text.push_str(&format!("{id},{reseller}\n"));
    }
    text
}

/// Asserts a run's exit code, showing its stderr when it differs.
#[track_caller]
pub fn assert_exit(ran: &Ran, code: i32) {
    assert_eq!(
        ran.code, code,
        "exit code {} (wanted {code}); stderr:\n{}",
        ran.code, ran.stderr
    );
}

impl Sim {
    /// Waits (at most 30 s, then fails) until the simulator has seen `n`
    /// requests of any kind.
    #[track_caller]
    pub fn wait_for_requests(&self, n: usize) {
        wait_until(&format!("{n} requests"), Duration::from_secs(30), || {
            self.requests().len() >= n
        });
    }

    /// Waits (at most `within`, then fails) until the simulator has seen `n`
    /// PATCHes: a test that acts next (a signal, a kill) acts on that.
    #[track_caller]
    pub fn wait_for_patches(&self, n: usize, within: Duration) {
        wait_until(&format!("{n} PATCHes"), within, || {
            self.patches().len() >= n
        });
    }
}

/// How often [`wait_until`] looks: a polling interval, not a guess at how
/// long anything takes.
const POLL: Duration = Duration::from_millis(10);

/// Waits until `done()` holds, looking every [`POLL`]; fails the test,
/// naming `what` it waited for, after `within`.
#[track_caller]
pub fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < within, "no {what} within {within:?}");
        std::thread::sleep(POLL);
    }
}

/// Sends `signal` (`INT`, `TERM`) to a running child.
pub fn signal(child: &Child, signal: &str) {
    let sent = Command::new("kill")
        .args([format!("-{signal}"), child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(sent.success(), "kill -{signal} failed");
}
