//! The report in a real browser: headless Chromium renders it with the
//! network cut off, its DOM holds the results' figures, it fetches nothing
//! (a proxy that every request would go through sees none from the page),
//! and it draws on a desktop, on a phone and on paper.
//!
//! Chromium is Debian's `chromium`; `.ci/run` installs it. Elsewhere a
//! missing browser skips these tests with a message; under CI (`CI=true`)
//! it fails them.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;
use crate::report::{assert_self_contained, data_of, mixed_run};

/// The browser, or `None` (with a message) where it may be missing.
fn chromium() -> Option<PathBuf> {
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        if let Ok(out) = Command::new("sh")
            .args(["-c", &format!("command -v {name}")])
            .output()
            && out.status.success()
        {
            let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if !path.is_empty() {
                return Some(PathBuf::from(path));
            }
        }
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("chromium is not installed, and CI must render the report (.ci/run installs it)");
    }
    // Straight to stderr: the test harness captures `eprintln!` of a
    // passing test, and a skip must be seen.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: chromium is not installed (apt-get install chromium); the report's \
         browser tests did not run"
    );
    None
}

/// Runs headless Chromium on `page` with `args`, its own profile, and
/// every background service it can do without turned off.
fn headless(browser: &Path, work: &Work, page: &Path, args: &[String]) -> Ran {
    let profile = tempfile::tempdir().expect("a profile directory");
    let mut cmd = Command::new(browser);
    cmd.current_dir(work.dir.path())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    wait(cmd.spawn().expect("chromium starts"))
}

/// A proxy that answers nothing and writes down the first line of every
/// request it is sent: with `--proxy-server` pointing at it, any fetch the
/// page makes shows here.
struct Tripwire {
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Tripwire {
    fn start() -> Tripwire {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a local port");
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (seen, stop) = (Arc::clone(&seen), Arc::clone(&stop));
            std::thread::spawn(move || {
                loop {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            stream.set_nonblocking(false).unwrap();
                            stream
                                .set_read_timeout(Some(Duration::from_secs(2)))
                                .unwrap();
                            let mut line = String::new();
                            let _ = BufReader::new(stream).read_line(&mut line);
                            seen.lock().unwrap().push(line.trim().to_string());
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            if stop.load(Ordering::SeqCst) {
                                return;
                            }
                            // The tripwire's own accept loop, polled so
                            // that it can be stopped: no test waits on it.
                            std::thread::sleep(Duration::from_millis(10));
                        }
                        Err(_) => return,
                    }
                }
            })
        };
        Tripwire {
            port,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    /// The requests seen, once the browser has exited: what it sent is in
    /// the listen queue or already read.
    fn finish(mut self) -> Vec<String> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.seen.lock().unwrap().clone()
    }
}

/// Requests for the page itself, leaving out Chromium's own calls home
/// (update checks, time, accounts), which it makes whatever the page.
fn page_requests(seen: &[String]) -> Vec<String> {
    let own = [
        "google.com",
        "googleapis.com",
        "gstatic.com",
        "googleusercontent.com",
        "gvt1.com",
    ];
    seen.iter()
        .filter(|line| {
            let target = line.split_whitespace().nth(1).unwrap_or_default();
            let host = target
                .trim_start_matches("http://")
                .trim_start_matches("https://")
                .split(['/', ':'])
                .next()
                .unwrap_or_default();
            !own.iter()
                .any(|d| host == *d || host.ends_with(&format!(".{d}")))
        })
        .cloned()
        .collect()
}

/// Width and height from a PNG's header.
fn png_size(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).expect("a screenshot");
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let be = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    (be(16), be(20))
}

#[test]
fn chromium_renders_the_report_offline_with_the_results_figures() {
    let Some(browser) = chromium() else { return };
    let work = Work::new();
    let _sim = mixed_run(&work);
    let ran = work.run(&[
        "report",
        "out.csv",
        "--summary",
        "summary.json",
        "-o",
        "report.html",
    ]);
    assert_exit(&ran, 0);
    let page = work.path("report.html");
    let html = work.read("report.html");
    assert_self_contained(&html);

    // Offline: every name unresolvable, the proxy a port nobody listens on.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let ran = headless(
        &browser,
        &work,
        &page,
        &[
            "--host-resolver-rules=MAP * ~NOTFOUND".into(),
            format!("--proxy-server=http://127.0.0.1:{closed}"),
            "--dump-dom".into(),
        ],
    );
    assert_eq!(ran.code, 0, "chromium failed: {}", ran.stderr);
    let dom = ran.stdout;
    assert!(
        dom.contains("At a glance"),
        "the page rendered: {}",
        &dom[..dom.len().min(500)]
    );
    // The figures in the DOM the browser built are the results file's.
    let rows = work.results("out.csv");
    for outcome in ["updated", "failed", "invalid"] {
        let n = rows.iter().filter(|r| r["outcome"] == outcome).count();
        assert_eq!(
            data_of(&dom, &format!("outcome-{outcome}"), "count"),
            Some(n.to_string()),
            "{outcome} in the DOM"
        );
    }
    let summary: serde_json::Value = serde_json::from_str(&work.read("summary.json")).unwrap();
    assert_eq!(
        data_of(&dom, "exit-code", "code"),
        Some(summary["exit_code"].to_string())
    );
    assert_eq!(
        data_of(&dom, "requests", "requests"),
        Some(summary["requests"].to_string())
    );
    assert!(
        dom.matches("<svg").count() >= 3,
        "the share bar and two charts"
    );
    assert!(dom.contains("<rect"), "bars were drawn");

    // Nothing fetched: a proxy every request would go through sees none
    // from the page. The same proxy does see an image a page asks for.
    let tripwire = Tripwire::start();
    let ran = headless(
        &browser,
        &work,
        &page,
        &[
            format!("--proxy-server=http://127.0.0.1:{}", tripwire.port),
            "--dump-dom".into(),
        ],
    );
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let seen = tripwire.finish();
    assert_eq!(
        page_requests(&seen),
        Vec::<String>::new(),
        "the report fetched something"
    );
    let control = work.write(
        "control.html",
        "<!DOCTYPE html><p>x<img src=\"http://tripwire.invalid/pixel.png\"></p>",
    );
    let tripwire = Tripwire::start();
    let ran = headless(
        &browser,
        &work,
        &control,
        &[
            format!("--proxy-server=http://127.0.0.1:{}", tripwire.port),
            "--dump-dom".into(),
        ],
    );
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let seen = tripwire.finish();
    assert!(
        page_requests(&seen)
            .iter()
            .any(|l| l.contains("tripwire.invalid")),
        "the tripwire sees a page's fetch: {seen:?}"
    );
}

#[test]
fn chromium_draws_the_report_on_a_desktop_a_phone_and_paper() {
    let Some(browser) = chromium() else { return };
    let work = Work::new();
    let _sim = mixed_run(&work);
    let ran = work.run(&[
        "report",
        "out.csv",
        "--summary",
        "summary.json",
        "-o",
        "report.html",
    ]);
    assert_exit(&ran, 0);
    let page = work.path("report.html");
    for (name, width, height) in [("desktop.png", 1200, 2000), ("phone.png", 390, 2400)] {
        let shot = work.path(name);
        let ran = headless(
            &browser,
            &work,
            &page,
            &[
                "--host-resolver-rules=MAP * ~NOTFOUND".into(),
                format!("--window-size={width},{height}"),
                format!("--screenshot={}", shot.display()),
            ],
        );
        assert_eq!(ran.code, 0, "{}", ran.stderr);
        assert_eq!(png_size(&shot), (width, height), "{name}");
        let size = std::fs::metadata(&shot).unwrap().len();
        assert!(size > 20_000, "{name} is {size} bytes: a blank page?");
    }
    let pdf = work.path("report.pdf");
    let ran = headless(
        &browser,
        &work,
        &page,
        &[
            "--host-resolver-rules=MAP * ~NOTFOUND".into(),
            "--no-pdf-header-footer".into(),
            format!("--print-to-pdf={}", pdf.display()),
        ],
    );
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let bytes = std::fs::read(&pdf).expect("a PDF");
    assert!(bytes.starts_with(b"%PDF-"), "printed");
    assert!(
        bytes.len() > 20_000,
        "the PDF is {} bytes: a blank page?",
        bytes.len()
    );
}
