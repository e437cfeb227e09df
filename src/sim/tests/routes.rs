//! `GET /iam/clients/me`, `GET /iam/clients/{id}`, and what is not a route.

use serde_json::json;

use super::*;

#[tokio::test]
async fn me_is_the_reseller_owner() {
    let sim = start(1, Faults::default()).await;
    let reply = get(&sim, "/iam/clients/me").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json, Account::default_owner().to_client_json());
    assert_eq!(reply.json["client_type"], "reseller");
}

#[tokio::test]
async fn a_client_is_the_full_client_object() {
    let sim = start(5, Faults::default()).await;
    let reply = get(&sim, "/iam/clients/3").await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.headers["content-type"].to_str().ok(),
        Some("application/json")
    );
    assert_eq!(reply.json, generated(3).to_client_json());
    assert_eq!(reply.json["resellers"], json!(generated(3).reseller));
    assert_eq!(reply.json["email"], "client3@example.com");
}

#[tokio::test]
async fn unknown_and_non_integer_ids_are_not_found() {
    let sim = start(5, Faults::default()).await;
    for path in ["/iam/clients/6", "/iam/clients/abc", "/iam/clients/-1"] {
        let reply = get(&sim, path).await;
        assert_eq!(reply.status, 404, "{path}");
        assert_eq!(reply.json, json!({ "detail": "Not found." }), "{path}");
    }
}

#[tokio::test]
async fn other_paths_and_methods() {
    let sim = start(5, Faults::default()).await;
    assert_eq!(get(&sim, "/iam/users").await.status, 404);
    assert_eq!(get(&sim, "/iam/clients/1/services").await.status, 404);

    let response = http()
        .put(format!("{}/iam/clients/1", sim.base_url()))
        .header("Authorization", api_key())
        .body("{}")
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status().as_u16(), 405);
    assert_eq!(
        response.headers()["allow"].to_str().ok(),
        Some("GET, PATCH")
    );
    let response = http()
        .delete(format!("{}/iam/clients", sim.base_url()))
        .header("Authorization", api_key())
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status().as_u16(), 405);
}

#[tokio::test]
async fn forbidden_ids_get_403_and_stay_unchanged() {
    let faults = Faults {
        forbidden_ids: vec![2],
        ..Faults::default()
    };
    let sim = start(3, faults).await;
    let reply = get(&sim, "/iam/clients/2").await;
    assert_eq!(reply.status, 403);
    assert_eq!(
        reply.detail(),
        "You do not have permission to perform this action."
    );
    assert_eq!(patch(&sim, 2, r#"{"name":"X"}"#).await.status, 403);
    assert_eq!(sim.account(2), Some(generated(2)));
    assert_eq!(get(&sim, "/iam/clients/1").await.status, 200);
}

#[tokio::test]
async fn keep_alive_serves_many_requests_on_one_client() {
    let sim = start(50, Faults::default()).await;
    let client = http();
    for id in 1..=50 {
        let response = client
            .get(format!("{}/iam/clients/{id}", sim.base_url()))
            .header("Authorization", api_key())
            .send()
            .await
            .expect("answered");
        assert_eq!(response.status().as_u16(), 200);
        response.bytes().await.expect("body reads");
    }
}

#[tokio::test]
async fn concurrent_patches_all_land() {
    let sim = start(200, Faults::default()).await;
    let client = http();
    let mut tasks = tokio::task::JoinSet::new();
    for id in 1..=200u64 {
        let request = patch_request(&client, &sim, id, &format!(r#"{{"custom_id":"C{id}"}}"#));
        tasks.spawn(async move { request.send().await.map(|r| r.status().as_u16()) });
    }
    while let Some(outcome) = tasks.join_next().await {
        assert_eq!(outcome.expect("task runs").expect("answered"), 200);
    }
    for account in sim.accounts() {
        assert_eq!(account.custom_id, Some(format!("C{}", account.id)));
    }
}

#[tokio::test]
async fn shutdown_closes_the_port() {
    let sim = start(1, Faults::default()).await;
    let url = format!("{}/iam/clients/me", sim.base_url());
    sim.shutdown().await;
    let outcome = http().get(url).send().await;
    assert!(outcome.is_err_and(|e| e.is_connect()));
}
