//! Control routes under `/_sim` for scripts that run the `simulate`
//! subcommand (benchmarks, the demo): read and clear the request log, read the
//! stored accounts. No authentication, no faults, not recorded.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::state::SimState;

/// `GET /_sim/requests`: every recorded `/iam` request, in arrival order.
pub(crate) async fn list_requests(State(sim): State<Arc<SimState>>) -> Json<Value> {
    Json(Value::Array(
        sim.requests().iter().map(|r| r.to_json()).collect(),
    ))
}

/// `DELETE /_sim/requests`: forget the recorded requests.
pub(crate) async fn clear_requests(State(sim): State<Arc<SimState>>) -> StatusCode {
    sim.clear_requests();
    StatusCode::NO_CONTENT
}

/// `GET /_sim/accounts`: every stored account, by id.
pub(crate) async fn list_accounts(State(sim): State<Arc<SimState>>) -> Json<Vec<super::Account>> {
    Json(sim.accounts())
}

/// `GET /_sim/accounts/{id}`: one stored account (PATCH field names).
pub(crate) async fn get_account(
    State(sim): State<Arc<SimState>>,
    Path(id): Path<String>,
) -> Response {
    match id.parse().ok().and_then(|id| sim.account(id)) {
        Some(account) => Json(account).into_response(),
        None => not_found(),
    }
}

/// Anything outside `/iam` and the control routes.
pub(crate) async fn not_found_fallback() -> Response {
    not_found()
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({ "detail": "Not found." })),
    )
        .into_response()
}
