//! `PATCH /iam/clients/{id}`: validation per field, null rules, storing.

use serde_json::json;

use super::*;

#[tokio::test]
async fn a_valid_patch_is_stored_and_returned() {
    let sim = start(3, Faults::default()).await;
    let reply = patch(
        &sim,
        2,
        r#"{"email":"new@example.org","companyName":"New Co","custom_id":"X-1",
            "name":"Ana","phone":"+1 555","reseller":7,"seller":9,"is_test":true}"#,
    )
    .await;
    assert_eq!(reply.status, 200);
    let expected = Account {
        email: "new@example.org".into(),
        company_name: "New Co".into(),
        custom_id: Some("X-1".into()),
        name: Some("Ana".into()),
        phone: Some("+1 555".into()),
        reseller: 7,
        seller: Some(9),
        is_test: true,
        ..generated(2)
    };
    assert_eq!(sim.account(2), Some(expected.clone()));
    assert_eq!(reply.json, expected.to_client_json());
    // The reseller goes in as `reseller` and comes back as `resellers`.
    assert_eq!(reply.json["resellers"], json!(7));
    assert!(reply.json.get("reseller").is_none());
    assert_eq!(sim.account(1), Some(generated(1)));
}

#[tokio::test]
async fn only_sent_fields_change_and_unknown_fields_are_ignored() {
    let sim = start(1, Faults::default()).await;
    let reply = patch(&sim, 1, r#"{"name":"Only Me","website":"ignored","id":99}"#).await;
    assert_eq!(reply.status, 200);
    let expected = Account {
        name: Some("Only Me".into()),
        ..generated(1)
    };
    assert_eq!(sim.account(1), Some(expected));
}

#[tokio::test]
async fn nullable_fields_take_null() {
    let sim = start(10, Faults::default()).await;
    let reply = patch(
        &sim,
        4,
        r#"{"custom_id":null,"name":null,"phone":null,"seller":null}"#,
    )
    .await;
    assert_eq!(reply.status, 200);
    for field in ["custom_id", "name", "phone", "seller"] {
        assert_eq!(reply.json[field], Value::Null, "{field}");
    }
    let stored = sim.account(4).expect("account 4 exists");
    assert_eq!(
        (stored.custom_id, stored.name, stored.phone, stored.seller),
        (None, None, None, None)
    );
}

#[tokio::test]
async fn each_field_type_is_checked_and_every_bad_field_listed() {
    let sim = start(1, Faults::default()).await;
    let reply = patch(
        &sim,
        1,
        r#"{"email":"not-an-email","companyName":null,"custom_id":12,"name":true,
            "phone":["x"],"reseller":"5","seller":1.5,"is_test":"yes"}"#,
    )
    .await;
    assert_eq!(reply.status, 400);
    assert_eq!(
        reply.json,
        json!({ "errors": {
            "email": ["Enter a valid email address."],
            "companyName": ["This field may not be null."],
            "custom_id": ["Not a valid string."],
            "name": ["Not a valid string."],
            "phone": ["Not a valid string."],
            "reseller": ["A valid integer is required."],
            "seller": ["A valid integer is required."],
            "is_test": ["Must be a valid boolean."],
        }})
    );
    assert_eq!(sim.account(1), Some(generated(1)));
}

#[tokio::test]
async fn non_nullable_fields_refuse_null() {
    let sim = start(1, Faults::default()).await;
    for field in ["email", "companyName", "reseller", "is_test"] {
        let reply = patch(&sim, 1, &format!(r#"{{"{field}":null}}"#)).await;
        assert_eq!(reply.status, 400, "{field}");
        assert_eq!(
            reply.json["errors"][field],
            json!(["This field may not be null."]),
            "{field}"
        );
    }
    let reply = patch(&sim, 1, r#"{"reseller":-3}"#).await;
    assert_eq!(
        reply.json["errors"]["reseller"],
        json!(["Ensure this value is greater than or equal to 0."])
    );
}

#[tokio::test]
async fn a_body_that_is_not_a_json_object_is_a_parse_error() {
    let sim = start(1, Faults::default()).await;
    for body in ["[1,2]", "\"name\"", "{\"name\": ", "name=x", ""] {
        let reply = patch(&sim, 1, body).await;
        assert_eq!(reply.status, 400, "{body:?}");
        let message = reply.json["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with("JSON parse error - "),
            "{body:?}: {message}"
        );
    }
    assert_eq!(sim.account(1), Some(generated(1)));
}

#[tokio::test]
async fn an_unknown_account_is_not_found_before_the_body_is_read() {
    let sim = start(1, Faults::default()).await;
    let reply = patch(&sim, 99, "not json").await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.detail(), "Not found.");
}

#[tokio::test]
async fn a_non_json_content_type_is_unsupported() {
    let sim = start(1, Faults::default()).await;
    let response = http()
        .patch(format!("{}/iam/clients/1", sim.base_url()))
        .header("Authorization", api_key())
        .header("Content-Type", "text/plain")
        .body(r#"{"name":"X"}"#)
        .send()
        .await
        .expect("answered");
    let reply = Reply::read(response).await;
    assert_eq!(reply.status, 415);
    assert_eq!(
        reply.detail(),
        "Unsupported media type \"text/plain\" in request."
    );
}

#[tokio::test]
async fn ignored_fields_answer_200_but_keep_the_old_value() {
    let faults = Faults {
        ignore_fields: vec!["phone".into()],
        ..Faults::default()
    };
    let sim = start(1, faults).await;
    let before = generated(1);
    let reply = patch(&sim, 1, r#"{"phone":"+44 1","name":"Kept"}"#).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json["phone"], json!(before.phone));
    assert_eq!(reply.json["name"], "Kept");
    let stored = sim.account(1).expect("account exists");
    assert_eq!(stored.phone, before.phone);
    assert_eq!(stored.name.as_deref(), Some("Kept"));
}
