//! The page itself, written with `maud` (every value escaped): a verdict in
//! one sentence, the run at a glance, then the timeline, latency, errors,
//! invalid rows, what changed and the files read. Figures carry `id`s and
//! `data-` attributes, so a browser test can read them back.

use std::time::{Duration, UNIX_EPOCH};

use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::model::{Group, Tally};
use super::{RunFacts, charts};
use crate::outcome::Outcome;

/// Everything the page shows.
pub struct Page<'a> {
    pub tally: &'a Tally,
    pub runs: &'a [RunFacts],
    pub title: Option<&'a str>,
    pub generated_at_ms: u64,
}

const STYLE: &str = r#"
:root{--ok:#2e7d32;--bad:#c62828;--warn:#ef6c00;--ink:#1c2326;--muted:#5a666b;--line:#d9dee0}
*{box-sizing:border-box}
body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:var(--ink);background:#fff}
main{max-width:62rem;margin:0 auto;padding:1rem 1.2rem}
h1{font-size:1.45rem;margin:.3rem 0 .1rem;line-height:1.25}
h2{font-size:1.15rem;margin:2rem 0 .6rem;padding-bottom:.25rem;border-bottom:2px solid var(--line)}
h3{font-size:1rem;margin:1.1rem 0 .3rem}
p{margin:.4rem 0}
.sub,.note,figcaption{color:var(--muted)}
.sub{margin:0;font-size:.92rem}
.note,figcaption{font-size:.9rem}
.verdict{padding:.75rem 1rem;border-radius:6px;font-weight:600;margin:1rem 0;border-left:6px solid;font-size:1.05rem}
.verdict.ok{background:#e8f5e9;border-color:var(--ok)}
.verdict.warn{background:#fff3e0;border-color:var(--warn)}
.verdict.bad{background:#ffebee;border-color:var(--bad)}
.scroll{overflow-x:auto;-webkit-overflow-scrolling:touch}
table{border-collapse:collapse;width:100%;margin:.3rem 0}
th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid var(--line);vertical-align:top}
th{font-weight:600}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.88em;overflow-wrap:anywhere}
.facts th{width:12rem;color:var(--muted);font-weight:500}
.outcomes{max-width:30rem}
.swatch{display:inline-block;width:.8em;height:.8em;border-radius:2px;margin-right:.45em;vertical-align:-.05em}
svg.share{display:block;width:100%;height:1.3rem;margin:.5rem 0 .2rem;border-radius:4px}
figure{margin:.6rem 0}
figure svg{width:100%;height:auto;display:block}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(7.5rem,1fr));gap:.5rem;margin:.5rem 0}
.card{border:1px solid var(--line);border-radius:6px;padding:.4rem .6rem}
.card b{display:block;font-size:1.25rem;font-variant-numeric:tabular-nums}
.card span{color:var(--muted);font-size:.85rem}
.legend{font-size:.88rem;margin:.2rem 0}
.legend>span{margin-right:1.1rem;white-space:nowrap;display:inline-block}
footer{margin:2.5rem 0 1rem;color:var(--muted);font-size:.85rem;border-top:1px solid var(--line);padding-top:.6rem}
@media (max-width:640px){
 body{font-size:14px} main{padding:.6rem .7rem}
 figure .scroll svg{min-width:520px}
 .facts th,.facts td{display:block;border:0;padding:.05rem 0;width:auto}
 .facts tr{display:block;border-bottom:1px solid var(--line);padding:.35rem 0}
}
@media print{
 body{font-size:10pt} main{max-width:none;padding:0}
 section{break-inside:avoid-page} h2{break-after:avoid}
 .verdict,.swatch,svg{-webkit-print-color-adjust:exact;print-color-adjust:exact}
 figure svg{max-height:8.5cm}
 .scroll{overflow:visible}
}
"#;

/// The colour each outcome has on the page.
fn colour(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Updated => "#2e7d32",
        Outcome::Unchanged => "#78909c",
        Outcome::WouldUpdate => "#1565c0",
        Outcome::DryRun => "#4fc3f7",
        Outcome::Failed => "#c62828",
        Outcome::Mismatch => "#880e4f",
        Outcome::Invalid => "#ef6c00",
    }
}

/// "2026-12-01 15:52:07 UTC".
pub fn utc(ms: u64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms);
    let text = humantime::format_rfc3339_seconds(t).to_string();
    format!("{} UTC", text.trim_end_matches('Z').replacen('T', " ", 1))
}

/// "1h 2m 3s", "850ms".
fn duration(ms: u64) -> String {
    let d = if ms >= 10_000 {
        Duration::from_secs(ms.div_ceil(1000))
    } else {
        Duration::from_millis(ms)
    };
    humantime::format_duration(d).to_string()
}

/// What an exit code means, in a few words.
pub fn exit_meaning(code: u8) -> &'static str {
    match code {
        0 => "every row ended well",
        1 => "the run finished; some rows failed, were invalid or did not hold",
        2 => "usage, setup or input error; nothing was sent",
        3 => "aborted: token rejected, failure threshold crossed, or a file could not be written",
        130 => "interrupted (SIGINT or SIGTERM); rerun with --resume to finish",
        _ => "",
    }
}

/// "1 row", "24 rows".
fn rows(n: u64) -> String {
    if n == 1 {
        "1 row".into()
    } else {
        format!("{n} rows")
    }
}

fn accounts(n: u64) -> String {
    if n == 1 {
        "1 account".into()
    } else {
        format!("{n} accounts")
    }
}

fn join_numbers(lines: &[u64]) -> String {
    lines
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl Page<'_> {
    fn exit_code(&self) -> u8 {
        self.runs
            .iter()
            .filter_map(|r| r.exit_code)
            .max()
            .unwrap_or_else(|| self.tally.exit_code_by_rows())
    }

    fn is_plan(&self) -> bool {
        match self.runs.iter().find_map(|r| r.command.as_deref()) {
            Some(command) => command == "plan",
            None => self.tally.is_plan(),
        }
    }

    fn started(&self) -> Option<u64> {
        let runs = self.runs.iter().filter_map(|r| r.started_at_ms).min();
        match (runs, self.tally.first_start_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn ended(&self) -> Option<u64> {
        let runs = self.runs.iter().filter_map(|r| r.ended_at_ms).max();
        match (runs, self.tally.last_end_ms) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// The rate asked for by the whole job: the shards' rates add up.
    fn asked_rate(&self) -> Option<f64> {
        if self.runs.is_empty() || self.runs.iter().any(|r| r.asked_rate.is_none()) {
            return None;
        }
        Some(self.runs.iter().filter_map(|r| r.asked_rate).sum())
    }

    /// The limits learned, summed over the runs (the timeline's line): only
    /// those known well enough to go by.
    fn server_limit(&self) -> Option<f64> {
        let limits: Vec<f64> = self
            .runs
            .iter()
            .filter_map(|r| r.server_limit.as_ref().filter(|l| l.firm))
            .map(|l| l.per_second)
            .collect();
        (!limits.is_empty()).then(|| limits.iter().sum())
    }

    fn title(&self) -> String {
        if let Some(title) = self.title {
            return title.to_string();
        }
        let what = if self.is_plan() { "plan" } else { "run" };
        let input = self.runs.iter().find_map(|r| r.input.as_deref());
        match (input, self.tally.sources.first()) {
            (Some(input), Some(first)) => {
                format!("gcore-iam-bulk {what}: {input} → {}", first.path)
            }
            (None, Some(first)) => format!("gcore-iam-bulk {what}: {}", first.path),
            (_, None) => format!("gcore-iam-bulk {what}"),
        }
    }

    /// The page in one sentence, and how it should look.
    fn verdict(&self) -> (&'static str, String) {
        let counts = self.tally.outcome_counts();
        let n = |o: Outcome| counts[o as usize];
        let total: u64 = counts.iter().sum();
        let bad = n(Outcome::Failed) + n(Outcome::Invalid) + n(Outcome::Mismatch);
        let code = self.exit_code();
        let stopped = self.runs.iter().find_map(|r| r.stopped.clone());
        let mut text = if self.is_plan() {
            format!(
                "{} would change, {} already hold the values",
                accounts(n(Outcome::WouldUpdate)),
                n(Outcome::Unchanged)
            )
        } else if total > 0 && bad == 0 && n(Outcome::DryRun) == total {
            format!("Dry run: all {} valid; nothing was sent", rows(total))
        } else if n(Outcome::DryRun) > 0 && n(Outcome::Updated) == 0 {
            format!(
                "Dry run: {} of {} valid; nothing was sent",
                n(Outcome::DryRun),
                rows(total)
            )
        } else if total > 0 && bad == 0 {
            let mut text = format!(
                "All {} ended well: {} updated",
                rows(total),
                n(Outcome::Updated)
            );
            if n(Outcome::Unchanged) > 0 {
                text.push_str(&format!(
                    ", {} already held the values",
                    n(Outcome::Unchanged)
                ));
            }
            text
        } else {
            format!("{} updated of {}", n(Outcome::Updated), rows(total))
        };
        if bad > 0 {
            let kinds: Vec<String> = [Outcome::Failed, Outcome::Invalid, Outcome::Mismatch]
                .into_iter()
                .filter(|o| n(*o) > 0)
                .map(|o| format!("{} {}", n(o), o.as_str()))
                .collect();
            text.push_str(&format!(
                "; {} {} a look ({})",
                rows(bad),
                if bad == 1 { "needs" } else { "need" },
                kinds.join(", ")
            ));
        }
        if let Some(why) = stopped {
            text.push_str(&format!(". Stopped early: {why}"));
        }
        let class = match code {
            0 => "ok",
            1 => "warn",
            _ => "bad",
        };
        (class, text)
    }

    fn glance(&self) -> Markup {
        let counts = self.tally.outcome_counts();
        let total: u64 = counts.iter().sum();
        let code = self.exit_code();
        let started = self.started();
        let ended = self.ended();
        let total_of = |figure: fn(&RunFacts) -> Option<u64>| {
            self.runs
                .iter()
                .try_fold(0u64, |sum, r| figure(r).map(|n| sum.saturating_add(n)))
        };
        let requests = total_of(|r| r.requests);
        let retries = total_of(|r| r.retries);
        let throttled = total_of(|r| r.throttled);
        let from_runs = !self.runs.is_empty();
        let (requests, retries, throttled) = if from_runs {
            (
                requests.unwrap_or(self.tally.attempts),
                retries.unwrap_or(self.tally.retries),
                throttled.unwrap_or(self.tally.throttled),
            )
        } else {
            (
                self.tally.attempts,
                self.tally.retries,
                self.tally.throttled,
            )
        };
        let already_done = self
            .runs
            .iter()
            .filter_map(|r| r.already_done)
            .fold(0u64, u64::saturating_add);
        let changes = self.tally.changes();
        // The share bar: each outcome's segment, left to right.
        let mut x = 0.0;
        let segments: Vec<(Outcome, u64, f64, f64)> = Outcome::ALL
            .into_iter()
            .filter(|o| counts[*o as usize] > 0)
            .map(|o| {
                let n = counts[o as usize];
                let w = 1000.0 * n as f64 / total.max(1) as f64;
                x += w;
                (o, n, x - w, w)
            })
            .collect();
        html! {
            section id="glance" {
                h2 { "At a glance" }
                @if total > 0 {
                    svg.share viewBox="0 0 1000 20" preserveAspectRatio="none" role="img"
                        aria-label="rows by outcome" {
                        @for (outcome, n, x, w) in &segments {
                            rect x=(format!("{x:.2}")) y="0" width=(format!("{w:.2}")) height="20"
                                fill=(colour(*outcome)) { title { (outcome.as_str()) ": " (n) } }
                        }
                    }
                }
                div.scroll {
                    table.outcomes id="outcomes" {
                        thead { tr { th { "outcome" } th.num { "rows" } th.num { "share" } } }
                        tbody {
                            @for outcome in Outcome::ALL {
                                @let n = counts[outcome as usize];
                                @if n > 0 {
                                    tr id=(format!("outcome-{}", outcome.as_str()))
                                        data-outcome=(outcome.as_str()) data-count=(n) {
                                        td { span.swatch style=(format!("background:{}", colour(outcome))) {} (outcome.as_str()) }
                                        td.num { (n) }
                                        td.num { (format!("{:.1} %", 100.0 * n as f64 / total as f64)) }
                                    }
                                }
                            }
                        }
                        tfoot {
                            tr id="outcome-total" data-count=(total) {
                                th { "input lines with a final answer" } th.num { (total) } th.num { "" }
                            }
                        }
                    }
                }
                @if already_done > 0 {
                    p.note { (rows(already_done)) " were skipped by the last run as already done by an earlier one (their records are counted above)." }
                }
                div.scroll {
                    table.facts id="facts" {
                        tr { th { "exit code" } td id="exit-code" data-code=(code) { b { (code) } " — " (exit_meaning(code)) } }
                        @if let Some(s) = started { tr { th { "started" } td id="started" { (utc(s)) } } }
                        @if let Some(e) = ended { tr { th { "ended" } td id="ended" { (utc(e)) } } }
                        @if let (Some(s), Some(e)) = (started, ended) {
                            tr { th { "duration" } td id="duration" data-ms=(e.saturating_sub(s)) { (duration(e.saturating_sub(s))) } }
                        }
                        @for (i, run) in self.runs.iter().enumerate() {
                            @if let Some(line) = &run.command_line {
                                tr { th { @if self.runs.len() > 1 { "command " (i + 1) } @else { "command" } } td { code.command { (line) } } }
                            }
                        }
                        @if !self.runs.is_empty() && self.runs.iter().all(|r| r.asked_rate_known) {
                            tr { th { "rate asked" } td id="asked-rate" {
                                @match self.asked_rate() {
                                    Some(r) => { (crate::client::pacing::format_rate(r)) @if self.runs.len() > 1 { " (all runs together)" } },
                                    None => "unlimited",
                                }
                            } }
                        }
                        @for run in self.runs {
                            @if let Some(limit) = &run.server_limit {
                                tr { th { "server limit learned" } td id="server-limit" data-per-second=(format!("{:.3}", limit.per_second)) {
                                    @if !limit.firm {
                                        "not yet clear (" (limit.learned_from_429s) " × 429 so far)"
                                    } @else {
                                        "≈ " (crate::client::pacing::format_rate(limit.per_second))
                                        @if limit.source == "headers" { " (from its rate-limit headers)" }
                                        @else { " (learned from " (limit.learned_from_429s) " × 429)" }
                                        @if let Some(next) = &limit.suggested_rate { "; next time use " code { "--rate " (next) } }
                                    }
                                } }
                            }
                        }
                        tr { th { "requests" } td id="requests" data-requests=(requests) {
                            (requests) " ("
                            span id="retries" data-retries=(retries) { (retries) } " retries, "
                            span id="throttled" data-throttled=(throttled) { (throttled) } " throttled)"
                        } }
                        @if !changes.is_empty() {
                            tr { th { @if self.is_plan() { "would change" } @else { "changed" } } td id="changed" {
                                @for (i, field) in changes.iter().enumerate() {
                                    @if i > 0 { br; }
                                    @if let Some(top) = field.pairs.first() {
                                        code { (field.field.api_name()) } " "
                                        @if field.pairs.len() > 1 && field.pairs.iter().all(|c| c.new == top.new) {
                                            // All to one value, from several: say where from.
                                            "→ " (top.new) ": " (accounts(field.accounts))
                                            span.note { " (from "
                                                (field.pairs.iter().take(4).map(|c| format!("{} {}", c.old.as_deref().unwrap_or("?"), c.accounts)).collect::<Vec<_>>().join(", "))
                                                @if field.pairs.len() > 4 { ", …" }
                                                ")" }
                                        } @else if top.accounts > 1 || field.pairs.len() == 1 {
                                            @if let Some(old) = &top.old { (old) " " }
                                            "→ " (top.new) ": " (accounts(top.accounts))
                                            @if field.pairs.len() > 1 {
                                                span.note { " (" (accounts(field.accounts)) " in all, " (field.pairs.len()) " different changes)" }
                                            }
                                        } @else {
                                            (accounts(field.accounts)) ", each to its own value"
                                        }
                                    }
                                }
                            } }
                        }
                        @for undo in &self.tally.undo_files {
                            tr { th { "undo file" } td {
                                code { (undo) } br;
                                span.note { "to put every account back: " }
                                code { "gcore-iam-bulk run " (crate::hint::shell_quote(undo)) " -o undo-results.csv" }
                            } }
                        }
                    }
                }
            }
        }
    }

    fn timeline(&self) -> Markup {
        let tally = self.tally;
        let Some(timeline) = tally.timeline(240) else {
            return html! {
                section id="timeline" {
                    h2 { "Timeline" }
                    p.note { "These results record no times (they were written before the finished_at column existed), so there is no timeline." }
                }
            };
        };
        let asked = self.asked_rate();
        let limit = self.server_limit();
        let svg = charts::timeline(&timeline, asked, limit);
        let ok: u64 = timeline.buckets.iter().map(|b| b.ok).sum();
        let failed: u64 = timeline.buckets.iter().map(|b| b.failed).sum();
        html! {
            section id="timeline" {
                h2 { "Timeline" }
                figure {
                    div.scroll {
                        @match svg {
                            Ok(svg) => (PreEscaped(svg)),
                            Err(e) => p.note { "The chart could not be drawn: " (e) },
                        }
                    }
                    div.legend {
                        span { span.swatch style=(format!("background:{}", charts::css(charts::OK))) {} "succeeded" }
                        span { span.swatch style=(format!("background:{}", charts::css(charts::FAILED))) {} "failed" }
                        span { span style=(format!("color:{};font-weight:700", charts::css(charts::REQUESTS))) { "— " } "requests" }
                        span { span style=(format!("color:{}", charts::css(charts::RETRY))) { "▲ " } "retried" }
                        span { span style=(format!("color:{}", charts::css(charts::THROTTLED))) { "✕ " } "HTTP 429" }
                        @if let Some(rate) = asked { span { span style=(format!("color:{}", charts::css(charts::ASKED))) { "– – " } "asked " (crate::client::pacing::format_rate(rate)) " (requests)" } }
                        @if let Some(limit) = limit { span { span style=(format!("color:{}", charts::css(charts::LIMIT))) { "· · · " } "server limit ≈ " (crate::client::pacing::format_rate(limit)) } }
                    }
                    figcaption {
                        "Rows and their requests per second, by when the rows ended (one bar per "
                        (duration(timeline.bucket_ms)) ", from " (utc(timeline.start_ms)) "): "
                        span id="timeline-ok" data-count=(ok) { (ok) } " succeeded, "
                        span id="timeline-failed" data-count=(failed) { (failed) } " failed; peak "
                        (format!("{:.1}", timeline.peak_per_second())) " rows/s. A row's requests, retries and 429s are counted when the row ended, so the requests line runs a little behind the pacing it shows."
                    }
                }
            }
        }
    }

    fn latency(&self) -> Markup {
        let Some(l) = self.tally.latency() else {
            return html! {
                section id="latency" { h2 { "Latency" } p.note { "No row sent a request." } }
            };
        };
        let svg = charts::latency_histogram(&l);
        html! {
            section id="latency" {
                h2 { "Latency" }
                div.cards {
                    div.card id="p50" data-ms=(l.p50) { b { (l.p50) " ms" } span { "median (p50)" } }
                    div.card id="p90" data-ms=(l.p90) { b { (l.p90) " ms" } span { "p90" } }
                    div.card id="p99" data-ms=(l.p99) { b { (l.p99) " ms" } span { "p99" } }
                    div.card id="max" data-ms=(l.max) { b { (l.max) " ms" } span { "slowest" } }
                    div.card id="mean" { b { (format!("{:.0}", l.mean)) " ms" } span { "mean" } }
                }
                figure {
                    div.scroll {
                        @match svg {
                            Ok(svg) => (PreEscaped(svg)),
                            Err(e) => p.note { "The chart could not be drawn: " (e) },
                        }
                    }
                    figcaption { "Time spent on each of " (l.count) " rows that sent requests (" code { "duration_ms" } ", retries and waits included)." }
                }
            }
        }
    }

    fn groups(id: &str, heading: &str, first: &str, groups: &[Group], none: &str) -> Markup {
        html! {
            section id=(id) {
                h2 { (heading) }
                @if groups.is_empty() {
                    p.note { (none) }
                } @else {
                    div.scroll {
                        table {
                            thead { tr { th.num { "rows" } th { (first) } th { "message" } th { "first lines" } th { "accounts" } } }
                            tbody {
                                @for g in groups {
                                    tr.group data-count=(g.count) {
                                        td.num { (g.count) }
                                        td { (g.key.0) }
                                        td { @if id == "invalid" { (g.key.1) br; span.note { "e.g. " (g.example) } } @else { (g.example) } }
                                        td { (join_numbers(&g.lines)) @if g.count > g.lines.len() as u64 { ", …" } }
                                        td { code { (g.accounts.join(", ")) } @if g.count > g.accounts.len() as u64 { ", …" } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    fn changes(&self) -> Markup {
        const SHOWN: usize = 10;
        let changes = self.tally.changes();
        let plan = self.is_plan();
        html! {
            section id="changes" {
                h2 { @if plan { "What would change" } @else { "What changed" } }
                @if changes.is_empty() {
                    p.note { @if plan { "No account would change." } @else { "No account was changed." } }
                }
                @for field in &changes {
                    h3 { code { (field.field.api_name()) } ": " (accounts(field.accounts)) }
                    div.scroll {
                        table.changes data-field=(field.field.api_name()) {
                            thead { tr { th { "before" } th { "after" } th.num { "accounts" } } }
                            tbody {
                                @for c in field.pairs.iter().take(SHOWN) {
                                    tr.change data-old=(c.old.as_deref().unwrap_or("")) data-new=(c.new) data-count=(c.accounts) {
                                        td { @match &c.old { Some(old) => code { (old) }, None => span.note { "not read" } } }
                                        td { "→ " code { (c.new) } }
                                        td.num { (c.accounts) }
                                    }
                                }
                                @if field.pairs.len() > SHOWN {
                                    @let rest: u64 = field.pairs[SHOWN..].iter().map(|c| c.accounts).sum();
                                    tr { td colspan="2" { "and " (field.pairs.len() - SHOWN) " other changes" } td.num { (rest) } }
                                }
                            }
                        }
                    }
                }
                @if changes.iter().any(|f| f.pairs.iter().any(|c| c.old.is_none())) {
                    p.note { "“not read”: the run did not read the accounts first, so their previous values are not in the results; " code { "--undo-file" } " or " code { "--skip-unchanged" } " records them." }
                }
            }
        }
    }

    fn files(&self) -> Markup {
        html! {
            section id="files" {
                h2 { "Files read" }
                div.scroll {
                    table {
                        thead { tr { th { "results file" } th.num { "records" } } }
                        tbody {
                            @for f in &self.tally.sources {
                                tr { td { code { (f.path) } @if f.without_times { " " span.note { "(no times: written by an older version)" } } } td.num { (f.records) } }
                            }
                        }
                    }
                }
                @if self.tally.skipped > 0 {
                    p.note { (self.tally.skipped) " malformed or torn lines were skipped." }
                }
                p.note { "A line recorded more than once (a resumed run) counts by its last record, as " code { "gcore-iam-bulk results" } " has it." }
            }
        }
    }
}

/// The whole page.
pub fn render(page: &Page<'_>) -> String {
    let (class, verdict) = page.verdict();
    let title = page.title();
    let errors = page.tally.error_groups();
    let invalid = page.tally.invalid_groups();
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="generator" content=(concat!("gcore-iam-bulk ", env!("CARGO_PKG_VERSION")));
                title { (title) }
                style { (PreEscaped(STYLE)) }
            }
            body {
                main {
                    header {
                        h1 { (title) }
                        p.sub { "Report of " (page.tally.records) " results records in "
                            (page.tally.sources.len()) " file" @if page.tally.sources.len() != 1 { "s" }
                            ", " (page.tally.finals.len()) " input lines." }
                        p id="verdict" class=(format!("verdict {class}")) { (verdict) }
                    }
                    (page.glance())
                    (page.timeline())
                    (page.latency())
                    (Page::groups("errors", "Errors", "outcome", &errors, "No row failed."))
                    (Page::groups("invalid", "Invalid rows", "field", &invalid, "No row was invalid."))
                    (page.changes())
                    (page.files())
                    footer {
                        "Written by gcore-iam-bulk " (env!("GCORE_IAM_BULK_VERSION")) " at " (utc(page.generated_at_ms))
                        ". Times are UTC. The results files are the full record: one row per input line, with " code { "finished_at" } " for each."
                    }
                }
            }
        }
    };
    markup.into_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::format::RESULT_HEADER;
    use proptest::prelude::*;

    fn render_rows(rows: &[String], runs: &[RunFacts]) -> String {
        let mut text = format!("{}\n", RESULT_HEADER.join(","));
        for row in rows {
            text.push_str(row);
            text.push('\n');
        }
        let mut tally = Tally::default();
        tally.read("r.csv", text.as_bytes()).unwrap();
        render(&Page {
            tally: &tally,
            runs,
            title: None,
            generated_at_ms: 0,
        })
    }

    #[test]
    fn an_empty_ledger_and_a_refusal_render() {
        let html = render_rows(&[], &[]);
        assert!(html.contains("No row sent a request"));
        let refused = RunFacts {
            exit_code: Some(3),
            stopped: Some("the API rejected the token".into()),
            ..RunFacts::default()
        };
        let html = render_rows(&[], &[refused]);
        assert!(html.contains("data-code=\"3\""));
        assert!(html.contains("Stopped early: the API rejected the token"));
    }

    #[test]
    fn a_dry_run_says_nothing_was_sent() {
        let html = render_rows(
            &[
                "2,1,dry_run,,0,,,{},0,,,,2026-11-30T00:53:20.007Z,0,0".to_string(),
                "3,x,invalid,,0,,client_id: `x` bad,,0,,,,2026-11-30T00:53:20.007Z,0,0".to_string(),
            ],
            &[],
        );
        assert!(
            html.contains(
                "Dry run: 1 of 2 rows valid; nothing was sent; 1 row needs a look (1 invalid)"
            ),
            "{html}"
        );
    }

    /// A limit known well enough suggests a rate; one learned from a lone
    /// 429 (the demo's random ones) is not yet clear and suggests none.
    #[test]
    fn a_limit_not_yet_clear_suggests_no_rate() {
        let row = "2,1,updated,200,1,,,{},5,,{},,2026-11-30T00:53:20.007Z,0,0".to_string();
        let run = |firm: bool| RunFacts {
            server_limit: Some(crate::html_report::ServerLimit {
                per_second: 8.6,
                source: "throttling".into(),
                learned_from_429s: 1,
                firm,
                // (Even given one, a limit not yet clear shows none.)
                suggested_rate: Some("8.5/s".to_string()),
            }),
            ..RunFacts::default()
        };
        let html = render_rows(std::slice::from_ref(&row), &[run(true)]);
        assert!(
            html.contains("≈ 8.6/s (learned from 1 × 429); next time use"),
            "{html}"
        );
        assert!(
            html.contains("server limit ≈ 8.6/s"),
            "the timeline's line: {html}"
        );
        let html = render_rows(&[row], &[run(false)]);
        assert!(html.contains("not yet clear (1 × 429 so far)"), "{html}");
        assert!(!html.contains("next time use"), "{html}");
        assert!(!html.contains("server limit ≈"), "no line drawn: {html}");
    }

    #[test]
    fn values_are_escaped() {
        let html = render_rows(
            &["2,<b>,failed,500,1,,<script>alert(1)</script>,{},5,,{},,2026-11-30T00:53:20.007Z,0,0"
                .to_string()],
            &[],
        );
        assert!(!html.contains("<script>"));
        assert!(html.contains("&lt;script&gt;"));
    }

    proptest! {
        #[test]
        fn any_rows_render_without_panic(
            rows in proptest::collection::vec(
                (1u64..50, "[0-9a-z]{0,4}", 0usize..7, 0u64..u64::MAX, 0u64..4_102_444_800_000,
                 0u32..10, ".{0,30}"),
                0..30),
        ) {
            let rows: Vec<String> = rows
                .into_iter()
                .map(|(line, id, outcome, duration, at, retries, error)| {
                    let mut stamps = crate::results::format::Stamps::default();
                    let mut time = Vec::new();
                    stamps.push(&mut time, at);
                    let mut record = csv::Writer::from_writer(Vec::new());
                    record
                        .write_record([
                            line.to_string(),
                            id,
                            Outcome::ALL[outcome].as_str().to_string(),
                            "200".into(),
                            (retries + 1).to_string(),
                            String::new(),
                            error.clone(),
                            "{\"seller\":1}".into(),
                            duration.to_string(),
                            format!("seller: {retries} -> 1"),
                            String::new(),
                            String::new(),
                            String::from_utf8(time).unwrap(),
                            retries.to_string(),
                            retries.to_string(),
                        ])
                        .unwrap();
                    String::from_utf8(record.into_inner().unwrap()).unwrap().trim_end().to_string()
                })
                .collect();
            let html = render_rows(&rows, &[RunFacts { asked_rate: Some(5.0), asked_rate_known: true, ..RunFacts::default() }]);
            prop_assert!(html.starts_with("<!DOCTYPE html>"));
        }
    }
}
