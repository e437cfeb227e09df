//! Each fault, observed from the client side: what the client sees, and
//! whether the account changed.

use std::time::Instant;

use super::super::{Fault, FaultRule, ServerRate, Trigger};
use super::*;

fn always(fault: Fault) -> Faults {
    Faults {
        rules: vec![FaultRule::new(fault, Trigger::Always)],
        ..Faults::default()
    }
}

const RENAME: &str = r#"{"name":"Changed"}"#;

fn renamed(sim: &Simulator, id: u64) -> bool {
    sim.account(id)
        .is_some_and(|a| a.name.as_deref() == Some("Changed"))
}

/// The connection ended with a TCP RST (ECONNRESET), not an orderly close.
fn mentions_reset(error: &reqwest::Error) -> bool {
    let mut source: Option<&dyn std::error::Error> = Some(error);
    while let Some(cause) = source {
        if cause.to_string().to_lowercase().contains("reset") {
            return true;
        }
        source = cause.source();
    }
    false
}

#[tokio::test]
async fn status_answers_json_detail_and_applies_nothing() {
    let sim = start(1, always(Fault::Status(503))).await;
    let reply = patch(&sim, 1, RENAME).await;
    assert_eq!(reply.status, 503);
    assert!(!reply.detail().is_empty());
    assert!(!renamed(&sim, 1));
}

#[tokio::test]
async fn too_many_requests_sends_retry_after_verbatim() {
    let date = "Wed, 21 Oct 2015 07:28:00 GMT";
    for (retry_after, expected) in [
        (Some("7"), Some("7")),
        (Some(date), Some(date)),
        (None, None),
    ] {
        let sim = start(
            1,
            always(Fault::TooManyRequests {
                retry_after: retry_after.map(str::to_owned),
            }),
        )
        .await;
        let reply = patch(&sim, 1, RENAME).await;
        assert_eq!(reply.status, 429);
        let header = reply
            .headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok());
        assert_eq!(header, expected);
        assert!(!renamed(&sim, 1));
    }
}

#[tokio::test]
async fn reset_is_a_connection_error_and_applies_nothing() {
    let sim = start(1, always(Fault::Reset)).await;
    let client = http();
    let started = Instant::now();
    let outcome = patch_request(&client, &sim, 1, RENAME).send().await;
    let error = outcome.expect_err("a reset gets no answer");
    assert!(!error.is_timeout(), "{error:?}");
    assert!(mentions_reset(&error), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(!renamed(&sim, 1));
    assert_eq!(sim.requests()[0].status, None);

    // The same client recovers on a fresh connection.
    sim.set_faults(Faults::default());
    let response = patch_request(&client, &sim, 1, RENAME).send().await;
    assert_eq!(response.expect("answered").status().as_u16(), 200);
}

#[tokio::test]
async fn reset_after_apply_loses_the_answer_but_keeps_the_change() {
    let sim = start(1, always(Fault::ResetAfterApply)).await;
    let outcome = patch_request(&http(), &sim, 1, RENAME).send().await;
    let error = outcome.expect_err("the answer is lost");
    assert!(mentions_reset(&error), "{error:?}");
    assert!(renamed(&sim, 1));
    assert_eq!(sim.requests()[0].status, None);
}

#[tokio::test]
async fn slow_answers_normally_after_the_delay() {
    let sim = start(1, always(Fault::Slow(Duration::from_millis(300)))).await;
    let started = Instant::now();
    let reply = patch(&sim, 1, RENAME).await;
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert_eq!(reply.status, 200);
    assert!(renamed(&sim, 1));
}

#[tokio::test]
async fn hang_makes_the_client_time_out_and_applies_nothing() {
    let sim = start(1, always(Fault::Hang)).await;
    let client = http_with_timeout(Duration::from_millis(400));
    let error = patch_request(&client, &sim, 1, RENAME)
        .send()
        .await
        .expect_err("no answer ever comes");
    assert!(error.is_timeout(), "{error:?}");
    assert!(!renamed(&sim, 1));
    assert_eq!(sim.requests()[0].status, None);
}

#[tokio::test]
async fn html_is_a_proxy_error_page() {
    let sim = start(1, always(Fault::Html(502))).await;
    let reply = patch(&sim, 1, RENAME).await;
    assert_eq!(reply.status, 502);
    assert_eq!(
        reply.headers["content-type"].to_str().ok(),
        Some("text/html")
    );
    assert!(
        reply.text.contains("<h1>502 Bad Gateway</h1>"),
        "{}",
        reply.text
    );
    assert_eq!(reply.json, Value::Null);
    assert!(!renamed(&sim, 1));
}

#[tokio::test]
async fn not_json_applies_then_answers_200_text() {
    let sim = start(1, always(Fault::NotJson)).await;
    let reply = patch(&sim, 1, RENAME).await;
    assert_eq!(reply.status, 200);
    assert!(
        serde_json::from_str::<Value>(&reply.text).is_err(),
        "{}",
        reply.text
    );
    assert!(renamed(&sim, 1));
}

#[tokio::test]
async fn truncated_applies_then_the_body_breaks_off() {
    let sim = start(1, always(Fault::Truncated)).await;
    let response = patch_request(&http(), &sim, 1, RENAME)
        .send()
        .await
        .expect("the head arrives");
    assert_eq!(response.status().as_u16(), 200);
    let promised = response.content_length().expect("a Content-Length");
    assert!(promised > 100);
    assert!(response.bytes().await.is_err());
    assert!(renamed(&sim, 1));
    assert_eq!(sim.requests()[0].status, Some(200));
}

#[tokio::test]
async fn first_per_account_hits_only_the_first_attempts() {
    let faults = Faults {
        rules: vec![
            FaultRule::new(Fault::Status(500), Trigger::FirstPerAccount(2)).on_method("PATCH"),
        ],
        ..Faults::default()
    };
    let sim = start(2, faults).await;
    let mut statuses = Vec::new();
    for id in [1, 2, 1, 2, 1, 2] {
        statuses.push(patch(&sim, id, RENAME).await.status);
    }
    assert_eq!(statuses, [500, 500, 500, 500, 200, 200]);
    // GET does not match the rule, and does not count.
    assert_eq!(get(&sim, "/iam/clients/1").await.status, 200);
}

#[tokio::test]
async fn ids_hit_only_those_accounts() {
    let faults = Faults {
        rules: vec![FaultRule::new(Fault::Status(502), Trigger::Ids(vec![2]))],
        ..Faults::default()
    };
    let sim = start(3, faults).await;
    assert_eq!(patch(&sim, 1, RENAME).await.status, 200);
    assert_eq!(patch(&sim, 2, RENAME).await.status, 502);
    assert_eq!(get(&sim, "/iam/clients/2").await.status, 502);
    assert_eq!(get(&sim, "/iam/clients/3").await.status, 200);
}

#[tokio::test]
async fn share_is_repeatable_for_a_seed() {
    let faults = Faults {
        rules: vec![FaultRule::new(Fault::Status(500), Trigger::Share(0.5))],
        seed: 3,
        ..Faults::default()
    };
    let sim = start(1, faults.clone()).await;
    let mut runs = Vec::new();
    for _ in 0..2 {
        sim.set_faults(faults.clone());
        let mut statuses = Vec::new();
        for _ in 0..40 {
            statuses.push(get(&sim, "/iam/clients/1").await.status);
        }
        runs.push(statuses);
    }
    assert_eq!(runs[0], runs[1]);
    let failed = runs[0].iter().filter(|s| **s == 500).count();
    assert!((5..=35).contains(&failed), "{failed} of 40");
}

#[tokio::test]
async fn faults_come_before_authentication() {
    let sim = start(1, always(Fault::Status(503))).await;
    let response = http()
        .get(format!("{}/iam/clients/1", sim.base_url()))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status().as_u16(), 503);
}

#[tokio::test]
async fn server_rate_limit_answers_429_with_retry_after_once_the_burst_is_spent() {
    let faults = Faults {
        // Slow enough that no token comes back while the test runs, even on
        // a loaded machine.
        server_rate: Some(ServerRate {
            per_second: 0.1,
            burst: 3,
        }),
        ..Faults::default()
    };
    let sim = start(1, faults).await;
    for _ in 0..3 {
        assert_eq!(get(&sim, "/iam/clients/1").await.status, 200);
    }
    let reply = get(&sim, "/iam/clients/1").await;
    assert_eq!(reply.status, 429);
    let retry_after: u64 = reply.headers["retry-after"]
        .to_str()
        .ok()
        .and_then(|v| v.parse().ok())
        .expect("whole seconds");
    assert!((1..=10).contains(&retry_after), "{retry_after}");
    assert!(!reply.detail().is_empty());
}

#[tokio::test]
async fn latency_delays_every_answer() {
    let faults = Faults {
        latency: Duration::from_millis(200),
        ..Faults::default()
    };
    let sim = start(1, faults).await;
    let started = Instant::now();
    assert_eq!(get(&sim, "/iam/clients/1").await.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(150));
}

#[tokio::test]
async fn shutdown_ends_hanging_requests() {
    let sim = start(1, always(Fault::Hang)).await;
    let request = patch_request(&http(), &sim, 1, RENAME).send();
    let pending = tokio::spawn(request);
    // Let the request arrive before stopping.
    while sim.requests().is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::timeout(Duration::from_secs(5), sim.shutdown())
        .await
        .expect("shutdown does not wait for the hang");
    let outcome = pending.await.expect("task runs");
    assert!(outcome.is_err_and(|e| !e.is_timeout()));
}

#[tokio::test]
async fn redirect_names_its_location_and_applies_nothing() {
    let location = "https://api.example.com/iam/clients/1";
    let sim = start(1, always(Fault::Redirect(location.into()))).await;
    // Never followed: the location is not on this machine.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client builds");
    let response = patch_request(&client, &sim, 1, RENAME).send().await;
    let reply = Reply::read(response.expect("answered")).await;
    assert_eq!(reply.status, 301);
    let header = reply.headers.get("location").and_then(|v| v.to_str().ok());
    assert_eq!(header, Some(location));
    assert!(!renamed(&sim, 1));
}
