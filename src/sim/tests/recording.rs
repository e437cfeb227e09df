//! The request log, and the `/_sim` control routes scripts use.

use serde_json::json;

use super::*;

#[tokio::test]
async fn requests_are_recorded_in_arrival_order_with_their_answers() {
    let sim = start(3, Faults::default()).await;
    get(&sim, "/iam/clients?limit=2").await;
    patch(&sim, 2, r#"{"name":"R"}"#).await;
    patch(&sim, 3, "{broken").await;
    get(&sim, "/iam/clients/abc").await;

    let recorded = sim.requests();
    assert_eq!(recorded.len(), 4);
    let list = &recorded[0];
    assert_eq!(
        (list.method.as_str(), list.path.as_str()),
        ("GET", "/iam/clients")
    );
    assert_eq!(list.query.as_deref(), Some("limit=2"));
    assert_eq!(list.client_id, None);
    assert_eq!(list.status, Some(200));
    assert!(list.authorized);

    let good = &recorded[1];
    assert_eq!(good.method, "PATCH");
    assert_eq!(good.client_id, Some(2));
    assert_eq!(good.body, Some(json!({ "name": "R" })));
    assert_eq!(good.raw_body, br#"{"name":"R"}"#);
    assert_eq!(good.status, Some(200));

    let broken = &recorded[2];
    assert_eq!(broken.body, None);
    assert_eq!(broken.raw_body, b"{broken");
    assert_eq!(broken.status, Some(400));

    assert_eq!(recorded[3].client_id, None);
    assert_eq!(recorded[3].status, Some(404));
    assert!(recorded.windows(2).all(|w| w[0].at <= w[1].at));

    sim.clear_requests();
    assert!(sim.requests().is_empty());
}

#[tokio::test]
async fn control_routes_serve_the_log_and_accounts_without_auth() {
    let sim = start(3, Faults::default()).await;
    patch(&sim, 1, r#"{"is_test":true}"#).await;
    let base = sim.base_url();
    let client = http();

    let log: Value = serde_json::from_slice(
        &client
            .get(format!("{base}/_sim/requests"))
            .send()
            .await
            .expect("answered")
            .bytes()
            .await
            .expect("body reads"),
    )
    .expect("JSON log");
    let entries = log.as_array().expect("an array");
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["method"], "PATCH");
    assert_eq!(entries[0]["client_id"], 1);
    assert_eq!(entries[0]["body"], json!({ "is_test": true }));
    assert_eq!(entries[0]["status"], 200);
    assert_eq!(entries[0]["authorized"], true);
    assert!(entries[0]["at_seconds"].is_f64());

    let account: Value = serde_json::from_slice(
        &client
            .get(format!("{base}/_sim/accounts/1"))
            .send()
            .await
            .expect("answered")
            .bytes()
            .await
            .expect("body reads"),
    )
    .expect("JSON account");
    assert_eq!(account["is_test"], true);
    assert_eq!(account["companyName"], json!(generated(1).company_name));
    let missing = client
        .get(format!("{base}/_sim/accounts/99"))
        .send()
        .await
        .expect("answered");
    assert_eq!(missing.status().as_u16(), 404);

    let cleared = client
        .delete(format!("{base}/_sim/requests"))
        .send()
        .await
        .expect("answered");
    assert!(cleared.status().is_success());
    // Control requests are not recorded themselves.
    assert!(sim.requests().is_empty());
}
