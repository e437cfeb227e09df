//! The floor of the tool's HTTP stack, for `scripts/bench.sh` (a): the same
//! reqwest and tokio, built the same way the tool builds them (one
//! current-thread runtime, a keep-alive pool, `TCP_NODELAY`, no redirects,
//! the same default headers), sending the same PATCH with the same number in
//! flight — and nothing else: no CSV, no validation, no pacing, no JSON, no
//! results. What the tool reaches next to this is what its own work costs.
//!
//!   cargo run --release --example floor -- URL ROWS CONCURRENCY
//!
//! Prints the seconds the ROWS requests took; exits 1 on any answer that is
//! not a 2xx.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, USER_AGENT};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, rows, concurrency] = &args[..] else {
        eprintln!("usage: floor URL ROWS CONCURRENCY");
        std::process::exit(2);
    };
    let (Ok(rows), Ok(concurrency)) = (rows.parse::<u64>(), concurrency.parse::<usize>()) else {
        eprintln!("floor: ROWS and CONCURRENCY are whole numbers");
        std::process::exit(2);
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let failures = runtime.block_on(send_all(url.trim_end_matches('/'), rows, concurrency));
    if failures > 0 {
        eprintln!("floor: {failures} answers were not 2xx");
        std::process::exit(1);
    }
}

async fn send_all(base: &str, rows: u64, concurrency: usize) -> u64 {
    let mut headers = HeaderMap::new();
    headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
    headers.insert(USER_AGENT, HeaderValue::from_static("gcore-iam-bulk-floor"));
    headers.insert(AUTHORIZATION, HeaderValue::from_static("APIKey sim-token"));
    let client = reqwest::Client::builder()
        .default_headers(headers)
        .pool_max_idle_per_host(concurrency.max(1))
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .expect("an HTTP client");
    let body = bytes::Bytes::from_static(b"{\"reseller\":900002}");
    let next = Arc::new(AtomicU64::new(1));
    let failures = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (client, next, failures, body) = (
            client.clone(),
            Arc::clone(&next),
            Arc::clone(&failures),
            body.clone(),
        );
        let base = base.to_string();
        workers.spawn(async move {
            loop {
                let id = next.fetch_add(1, Ordering::Relaxed);
                if id > rows {
                    return;
                }
                let sent = client
                    .patch(format!("{base}/iam/clients/{id}"))
                    .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                    .body(body.clone())
                    .timeout(Duration::from_secs(30))
                    .send()
                    .await;
                let ok = match sent {
                    Ok(response) => {
                        let status = response.status();
                        response.bytes().await.is_ok() && status.is_success()
                    }
                    Err(_) => false,
                };
                if !ok {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    while workers.join_next().await.is_some() {}
    println!("{:.6}", started.elapsed().as_secs_f64());
    failures.load(Ordering::Relaxed)
}
