//! Progress while a run goes: an indicatif bar on a terminal, a plain status
//! line every `--status-interval` elsewhere (no control characters), nothing
//! with `-q`.

use std::sync::Arc;
use std::time::Duration;

use indicatif::ProgressStyle;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing_indicatif::span_ext::IndicatifSpanExt;

use crate::client::pacing::Learned;
use crate::logging::Console;
use crate::outcome::Outcome;
use crate::run::stats::{Snapshot, Stats};

/// Reads the request rate in force (it changes under adaptive pacing).
pub type RateProbe = Arc<dyn Fn() -> Pace + Send + Sync>;

/// The pacing as the progress line shows it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Pace {
    /// Requests per second now; `None` when unlimited.
    pub rate: Option<f64>,
    pub learned: Option<Learned>,
    /// Time left in a pause of the whole run (after a 429), if in one.
    pub paused: Option<Duration>,
}

/// `paused, 9m 58s left`.
fn paused_text(left: Duration) -> String {
    format!(
        "paused, {} left",
        humantime::format_duration(crate::client::call::whole_seconds(left))
    )
}

pub struct Progress {
    task: Option<JoinHandle<()>>,
    done: CancellationToken,
}

const BAR_TICK: Duration = Duration::from_millis(200);

impl Progress {
    pub fn start(
        console: Console,
        status_interval: Duration,
        stats: Arc<Stats>,
        rate: Option<RateProbe>,
    ) -> Progress {
        let done = CancellationToken::new();
        let task = if console.quiet {
            None
        } else if console.bar {
            Some(tokio::spawn(run_bar(stats, rate, done.clone())))
        } else {
            Some(tokio::spawn(run_status(
                stats,
                rate,
                status_interval,
                console.json(),
                done.clone(),
            )))
        };
        Progress { task, done }
    }

    pub async fn finish(mut self) {
        self.done.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

async fn run_bar(stats: Arc<Stats>, rate: Option<RateProbe>, done: CancellationToken) {
    let span = tracing::info_span!("progress", indicatif.pb_show = tracing::field::Empty);
    let rows_per_second = |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
        let _ = write!(w, "{:.1} rows/s", state.per_sec());
    };
    let with_total = ProgressStyle::with_template(
        "{spinner} {elapsed_precise} [{wide_bar}] {pos}/{len} rows · {rate} · ETA {eta}{msg}",
    )
    .expect("a valid template")
    .with_key("rate", rows_per_second)
    .progress_chars("=> ");
    let without_total =
        ProgressStyle::with_template("{spinner} {elapsed_precise} {pos} rows · {rate}{msg}")
            .expect("a valid template")
            .with_key("rate", rows_per_second);
    span.pb_set_style(&without_total);
    span.pb_start();
    let mut has_total = false;
    let mut tick = tokio::time::interval(BAR_TICK);
    loop {
        tokio::select! {
            _ = tick.tick() => {},
            _ = done.cancelled() => break,
        }
        let now = stats.snapshot();
        if let Some(total) = now.total {
            if !has_total {
                span.pb_set_style(&with_total);
                has_total = true;
            }
            span.pb_set_length(total);
        }
        span.pb_set_position(now.done() + now.already_done);
        let mut message = problems(&now);
        let pace = rate.as_ref().map(|probe| probe()).unwrap_or_default();
        if let Some(left) = pace.paused {
            message.push_str(" · ");
            message.push_str(&paused_text(left));
        }
        if let Some(learned) = pace.learned {
            message.push_str(" · ");
            message.push_str(&learned.describe());
        }
        span.pb_set_message(&message);
    }
}

/// `· 3 failed · 1 invalid` for the bar, empty when all is well.
fn problems(now: &Snapshot) -> String {
    [Outcome::Failed, Outcome::Invalid, Outcome::Mismatch]
        .into_iter()
        .filter(|o| now.count(*o) > 0)
        .map(|o| format!(" · {} {}", now.count(o), o.as_str()))
        .collect()
}

async fn run_status(
    stats: Arc<Stats>,
    rate: Option<RateProbe>,
    interval: Duration,
    json: bool,
    done: CancellationToken,
) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    let mut previous = stats.snapshot();
    loop {
        tokio::select! {
            _ = tick.tick() => {},
            _ = done.cancelled() => return,
        }
        let now = stats.snapshot();
        let recent = (now.done() - previous.done()) as f64
            / (now.elapsed - previous.elapsed).as_secs_f64().max(1e-3);
        let pace = rate.as_ref().map(|probe| probe()).unwrap_or_default();
        let line = StatusLine {
            now: &now,
            recent,
            limit: pace.rate,
            learned: pace.learned,
            paused: pace.paused,
        };
        if json {
            tracing::info!(
                done = now.done() + now.already_done,
                total = now.total,
                updated = now.count(Outcome::Updated),
                failed = now.count(Outcome::Failed),
                invalid = now.count(Outcome::Invalid),
                rows_per_second = round1(recent),
                eta_seconds = line.eta().map(|d| d.as_secs()),
                server_limit_per_second = pace.learned.map(|l| round1(l.limit)),
                paused_seconds_left = pace.paused.map(|d| d.as_secs()),
                "status"
            );
        } else {
            eprintln!("{line}");
        }
        previous = now;
    }
}

struct StatusLine<'a> {
    now: &'a Snapshot,
    recent: f64,
    limit: Option<f64>,
    learned: Option<Learned>,
    paused: Option<Duration>,
}

impl StatusLine<'_> {
    fn eta(&self) -> Option<Duration> {
        let remaining = self.now.remaining()?;
        (self.recent > 0.0).then(|| Duration::from_secs((remaining as f64 / self.recent) as u64))
    }
}

impl std::fmt::Display for StatusLine<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let now = self.now;
        let position = now.done() + now.already_done;
        match now.total {
            Some(total) if total > 0 => write!(
                f,
                "status: {position}/{total} rows ({:.0}%)",
                100.0 * position as f64 / total as f64
            )?,
            _ => write!(f, "status: {position} rows")?,
        }
        for outcome in Outcome::ALL {
            if now.count(outcome) > 0 {
                write!(f, ", {} {}", now.count(outcome), outcome.as_str())?;
            }
        }
        write!(f, "; {:.1} rows/s", self.recent)?;
        if let Some(limit) = self.limit {
            write!(f, " (limit {})", crate::client::pacing::format_rate(limit))?;
        }
        if let Some(left) = self.paused {
            write!(f, "; {}", paused_text(left))?;
        }
        if let Some(learned) = self.learned {
            write!(f, "; {}", learned.describe())?;
        }
        match self.eta() {
            Some(eta) => write!(f, "; ETA {}", humantime::format_duration(eta)),
            None => Ok(()),
        }
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_line_reads_plainly() {
        let mut outcomes = [0; Outcome::ALL.len()];
        outcomes[Outcome::Updated as usize] = 40;
        outcomes[Outcome::Failed as usize] = 2;
        let now = Snapshot {
            outcomes,
            requests: 50,
            retries: 8,
            throttled: 0,
            unnamed_503: 0,
            rows_read: 42,
            already_done: 8,
            changed_since_last_run: 0,
            total: Some(100),
            elapsed: Duration::from_secs(10),
        };
        let line = StatusLine {
            now: &now,
            recent: 5.0,
            limit: Some(5.0),
            learned: None,
            paused: None,
        }
        .to_string();
        assert_eq!(
            line,
            "status: 50/100 rows (50%), 40 updated, 2 failed; 5.0 rows/s (limit 5/s); ETA 10s"
        );
        assert!(line.chars().all(|c| !c.is_control()));
        let paused = StatusLine {
            now: &now,
            recent: 0.0,
            limit: Some(5.0),
            learned: None,
            paused: Some(Duration::from_millis(598_400)),
        }
        .to_string();
        assert_eq!(
            paused,
            "status: 50/100 rows (50%), 40 updated, 2 failed; 0.0 rows/s (limit 5/s); paused, \
             9m 58s left"
        );
    }
}
