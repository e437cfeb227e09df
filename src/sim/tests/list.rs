//! `GET /iam/clients`: plain and paginated shapes, filters, ordering.

use serde_json::json;

use super::*;

fn ids(clients: &Value) -> Vec<u64> {
    clients
        .as_array()
        .map(|list| list.iter().filter_map(|c| c["id"].as_u64()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn without_limit_a_plain_array_of_everything_by_id() {
    let sim = start(30, Faults::default()).await;
    let reply = get(&sim, "/iam/clients").await;
    assert_eq!(reply.status, 200);
    assert_eq!(ids(&reply.json), (1..=30).collect::<Vec<_>>());
    assert_eq!(reply.json[0], generated(1).to_client_json());

    let reply = get(&sim, "/iam/clients?ordering=-id").await;
    assert_eq!(ids(&reply.json), (1..=30).rev().collect::<Vec<_>>());
}

#[tokio::test]
async fn with_limit_pages_link_to_each_other() {
    let sim = start(7, Faults::default()).await;
    let base = sim.base_url();
    let first = get(&sim, "/iam/clients?limit=3").await;
    assert_eq!(first.status, 200);
    assert_eq!(first.json["count"], json!(7));
    assert_eq!(ids(&first.json["results"]), [1, 2, 3]);
    assert_eq!(first.json["previous"], Value::Null);
    let next = first.json["next"].as_str().expect("a next link");
    assert_eq!(next, format!("{base}/iam/clients?limit=3&offset=3"));

    let second = get(&sim, next.trim_start_matches(&base)).await;
    assert_eq!(ids(&second.json["results"]), [4, 5, 6]);
    assert_eq!(
        second.json["previous"],
        json!(format!("{base}/iam/clients?limit=3"))
    );

    let last = get(&sim, "/iam/clients?limit=3&offset=6").await;
    assert_eq!(ids(&last.json["results"]), [7]);
    assert_eq!(last.json["next"], Value::Null);

    let past_the_end = get(&sim, "/iam/clients?limit=3&offset=50").await;
    assert_eq!(past_the_end.json["count"], json!(7));
    assert_eq!(past_the_end.json["results"], json!([]));
}

#[tokio::test]
async fn page_links_keep_filters() {
    let sim = start(40, Faults::default()).await;
    let reply = get(&sim, "/iam/clients?deleted=false&limit=2&ordering=-id").await;
    let next = reply.json["next"].as_str().expect("a next link");
    assert!(next.contains("deleted=false"), "{next}");
    assert!(next.contains("ordering=-id"), "{next}");
    assert!(next.ends_with("limit=2&offset=2"), "{next}");
}

#[tokio::test]
async fn every_filter_selects_its_accounts() {
    let sim = start(120, Faults::default()).await;
    let all = sim.accounts();
    let expect = |f: &dyn Fn(&Account) -> bool| -> Vec<u64> {
        all.iter().filter(|a| f(a)).map(|a| a.id).collect()
    };
    let some_reseller = all[0].reseller;
    let some_seller = all
        .iter()
        .find_map(|a| a.seller)
        .expect("some account has a seller");
    let with_custom_id = all
        .iter()
        .find(|a| a.custom_id.is_some())
        .expect("some account has a custom id");
    let custom_id = with_custom_id.custom_id.clone().unwrap_or_default();
    let cases: Vec<(String, Vec<u64>)> = vec![
        (
            format!("reseller_id={some_reseller}"),
            expect(&|a| a.reseller == some_reseller),
        ),
        (
            format!("seller_id={some_seller}"),
            expect(&|a| a.seller == Some(some_seller)),
        ),
        ("is_test=true".into(), expect(&|a| a.is_test)),
        ("is_test=false".into(), expect(&|a| !a.is_test)),
        (
            "client_type=reseller".into(),
            expect(&|a| a.client_type == "reseller"),
        ),
        ("email=CLIENT17@example.com".into(), vec![17]),
        (format!("custom_id={custom_id}"), vec![with_custom_id.id]),
        ("deleted=true".into(), expect(&|a| a.deleted)),
        ("deleted=false".into(), expect(&|a| !a.deleted)),
        ("deleted=anything".into(), expect(&|_| true)),
    ];
    for (query, expected) in cases {
        assert!(!expected.is_empty(), "{query} selects something");
        let reply = get(&sim, &format!("/iam/clients?{query}")).await;
        assert_eq!(reply.status, 200, "{query}");
        assert_eq!(ids(&reply.json), expected, "{query}");
        let paged = get(&sim, &format!("/iam/clients?{query}&limit=1000")).await;
        assert_eq!(paged.json["count"], json!(expected.len()), "{query}");
    }
}

#[tokio::test]
async fn bad_limit_offset_and_filters_are_400() {
    let sim = start(3, Faults::default()).await;
    for query in [
        "limit=abc",
        "limit=0",
        "limit=-5",
        "limit=2&offset=x",
        "limit=2&offset=-1",
        "reseller_id=abc",
        "is_test=perhaps",
        "client_type=vip",
    ] {
        let reply = get(&sim, &format!("/iam/clients?{query}")).await;
        assert_eq!(reply.status, 400, "{query}");
        assert!(reply.json["errors"].is_object(), "{query}: {}", reply.text);
    }
}
