//! End-to-end tests: a `Simulator` on 127.0.0.1 and a real HTTP client.
//! One file per area; the helpers here keep each test about its feature.

mod auth;
mod faults;
mod list;
mod patch;
mod recording;
mod routes;

use std::time::Duration;

use serde_json::Value;

use super::{Account, Faults, SimConfig, Simulator};

pub(super) const TOKEN: &str = "4242$s3cr3t-T0ken";

/// A simulator with generated accounts 1..=`accounts` and these faults.
pub(super) async fn start(accounts: u64, faults: Faults) -> Simulator {
    let config = SimConfig::new(TOKEN)
        .with_generated_accounts(1..=accounts)
        .with_faults(faults);
    Simulator::start(config, "127.0.0.1:0".parse().expect("literal address"))
        .await
        .expect("simulator starts on an ephemeral port")
}

pub(super) fn http() -> reqwest::Client {
    http_with_timeout(Duration::from_secs(10))
}

pub(super) fn http_with_timeout(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .expect("client builds")
}

/// A response read whole: status, headers and the body as text and JSON.
#[derive(Debug)]
pub(super) struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    pub json: Value,
}

impl Reply {
    pub async fn read(response: reqwest::Response) -> Reply {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body reads");
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            text,
            json,
        }
    }

    pub fn detail(&self) -> &str {
        self.json["detail"].as_str().unwrap_or_default()
    }
}

pub(super) fn api_key() -> String {
    format!("APIKey {TOKEN}")
}

/// `GET path` with the right token.
pub(super) async fn get(sim: &Simulator, path: &str) -> Reply {
    let response = http()
        .get(format!("{}{path}", sim.base_url()))
        .header("Authorization", api_key())
        .send()
        .await
        .expect("request gets an answer");
    Reply::read(response).await
}

/// `PATCH /iam/clients/{id}` with a JSON body and the right token.
pub(super) async fn patch(sim: &Simulator, id: u64, body: &str) -> Reply {
    let response = patch_request(&http(), sim, id, body)
        .send()
        .await
        .expect("request gets an answer");
    Reply::read(response).await
}

pub(super) fn patch_request(
    client: &reqwest::Client,
    sim: &Simulator,
    id: u64,
    body: &str,
) -> reqwest::RequestBuilder {
    client
        .patch(format!("{}/iam/clients/{id}", sim.base_url()))
        .header("Authorization", api_key())
        .header("Content-Type", "application/json")
        .body(body.to_owned())
}

/// The account as generated, for comparing against what the simulator holds.
pub(super) fn generated(id: u64) -> Account {
    Account::generated(id)
}
