//! Authentication: `APIKey <token>`, and DRF's 401 texts otherwise.

use super::*;

async fn get_me(sim: &Simulator, authorization: Option<&str>) -> Reply {
    let mut request = http().get(format!("{}/iam/clients/me", sim.base_url()));
    if let Some(value) = authorization {
        request = request.header("Authorization", value);
    }
    Reply::read(request.send().await.expect("request gets an answer")).await
}

#[tokio::test]
async fn the_token_is_accepted_with_any_scheme_case() {
    let sim = start(1, Faults::default()).await;
    for scheme in ["APIKey", "apikey", "APIKEY"] {
        let reply = get_me(&sim, Some(&format!("{scheme} {TOKEN}"))).await;
        assert_eq!(reply.status, 200, "{scheme}");
    }
}

#[tokio::test]
async fn missing_wrong_and_bearer_tokens_get_drf_texts() {
    let sim = start(1, Faults::default()).await;
    let cases = [
        (None, "Authentication credentials were not provided."),
        (Some("APIKey 4242$wrong-guess"), "Invalid token."),
        (
            Some("Bearer 4242$s3cr3t-T0ken"),
            "Given token not valid for any token type",
        ),
        (
            Some("APIKey  4242$s3cr3t-T0ken"),
            "Invalid token header. Token string should not contain spaces.",
        ),
    ];
    for (authorization, detail) in cases {
        let reply = get_me(&sim, authorization).await;
        assert_eq!(reply.status, 401, "{authorization:?}");
        assert_eq!(reply.detail(), detail, "{authorization:?}");
        assert!(!reply.text.contains("wrong-guess"));
        assert!(!reply.text.contains("s3cr3t"));
    }
}

#[tokio::test]
async fn both_token_separators_work() {
    for token in ["17$abc", "17_abc"] {
        let config = SimConfig::new(token);
        let sim = Simulator::start(config, "127.0.0.1:0".parse().expect("literal"))
            .await
            .expect("starts");
        let reply = get_me(&sim, Some(&format!("APIKey {token}"))).await;
        assert_eq!(reply.status, 200, "{token}");
    }
}

#[tokio::test]
async fn an_unauthorized_patch_changes_nothing() {
    let sim = start(3, Faults::default()).await;
    let response = http()
        .patch(format!("{}/iam/clients/2", sim.base_url()))
        .header("Authorization", "APIKey nope")
        .header("Content-Type", "application/json")
        .body(r#"{"name":"Mallory"}"#)
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status().as_u16(), 401);
    assert_eq!(sim.account(2), Some(generated(2)));
    let recorded = sim.requests();
    assert_eq!(recorded.len(), 1);
    assert!(!recorded[0].authorized);
    assert_eq!(recorded[0].status, Some(401));
}
