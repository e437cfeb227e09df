//! The simulated `/iam/...` endpoints. Every request passes, in this order:
//! recording, latency, the server-side rate limit, fault rules, authentication,
//! then the route (`GET /iam/clients`, `GET /iam/clients/me`,
//! `GET`/`PATCH /iam/clients/{id}`).

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Query, Request, State};
use axum::http::header::{
    ALLOW, AUTHORIZATION, CONTENT_TYPE, HOST, LOCATION, RETRY_AFTER, WWW_AUTHENTICATE,
};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;

use super::account::{Account, ClientView};
use super::auth::check_authorization;
use super::connection::{ConnectionKill, TruncatedBody};
use super::faults::{Fault, Faults, detail_for_status};
use super::list::{page_links, parse_query};
use super::patch::parse_patch;
use super::record::RecordedRequest;
use super::state::SimState;

/// Larger bodies are refused; a PATCH body is a few hundred bytes.
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Which `/iam` resource a path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IamTarget {
    ClientList,
    Me,
    Client(u64),
    /// Anything else, including `/iam/clients/{id}` with a non-integer id
    /// (Django's `<int:...>` route does not match it).
    Unknown,
}

impl IamTarget {
    pub fn from_path(path: &str) -> IamTarget {
        match path.strip_prefix("/iam/clients") {
            Some("") => IamTarget::ClientList,
            Some("/me") => IamTarget::Me,
            Some(rest) => match rest.strip_prefix('/') {
                Some(id) if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) => {
                    id.parse().map_or(IamTarget::Unknown, IamTarget::Client)
                }
                _ => IamTarget::Unknown,
            },
            None => IamTarget::Unknown,
        }
    }

    pub fn client_id(self) -> Option<u64> {
        match self {
            IamTarget::Client(id) => Some(id),
            _ => None,
        }
    }
}

/// The axum handler for every request under `/iam`.
pub(crate) async fn handle_iam(State(sim): State<Arc<SimState>>, request: Request) -> Response {
    let mut rate_headers = Vec::new();
    let mut response = answer_iam(sim, request, &mut rate_headers).await;
    for (name, value) in rate_headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response
                .headers_mut()
                .insert(HeaderName::from_static(name), value);
        }
    }
    response
}

/// Answers one `/iam` request; `rate_headers` receives the rate-limit header
/// fields the answer carries.
async fn answer_iam(
    sim: Arc<SimState>,
    request: Request,
    rate_headers: &mut Vec<(&'static str, String)>,
) -> Response {
    let kill = request.extensions().get::<ConnectionKill>().cloned();
    let (parts, body) = request.into_parts();
    let (raw_body, body_unreadable) = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(bytes) => (bytes, false),
        Err(_) => (Bytes::new(), true),
    };
    let target = IamTarget::from_path(parts.uri.path());
    let seq = sim.record(RecordedRequest {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        client_id: target.client_id(),
        body: serde_json::from_slice(&raw_body).ok(),
        raw_body: raw_body.to_vec(),
        at: std::time::Duration::ZERO, // stamped by `record`
        status: None,
        authorized: check_authorization(parts.headers.get(AUTHORIZATION), &sim.token).is_ok(),
    });

    let faults = sim.faults();
    if !faults.latency.is_zero() {
        tokio::time::sleep(faults.latency).await;
    }
    let admission = sim.admit();
    *rate_headers = admission.headers;
    if let Some(retry_after) = admission.refused {
        // 429, or what the limit was set to refuse with (nginx: 503).
        let status = faults
            .limit
            .as_ref()
            .and_then(|limit| StatusCode::from_u16(limit.status).ok())
            .unwrap_or(StatusCode::TOO_MANY_REQUESTS);
        let answer = match retry_after {
            Some(seconds) if status == StatusCode::TOO_MANY_REQUESTS => Answer::detail(
                status,
                format!("Request was throttled. Expected available in {seconds} seconds."),
            )
            .with_header(RETRY_AFTER, HeaderValue::from(seconds)),
            Some(seconds) => Answer::detail(status, detail_for_status(status.as_u16()))
                .with_header(RETRY_AFTER, HeaderValue::from(seconds)),
            None => Answer::detail(status, detail_for_status(status.as_u16())),
        };
        return sim.answered(seq, answer.into_response());
    }
    if body_unreadable {
        let answer = Answer::detail(
            StatusCode::BAD_REQUEST,
            "The request body could not be read.".to_owned(),
        );
        return sim.answered(seq, answer.into_response());
    }

    let request = IamRequest {
        sim: &sim,
        faults: &faults,
        parts: &parts,
        body: &raw_body,
        target,
    };
    match sim.pick_fault(parts.method.as_str(), target.client_id()) {
        None => sim.answered(seq, request.respond().into_response()),
        Some(Fault::Status(code)) => {
            let status = status_code(code);
            let answer = Answer::detail(status, detail_for_status(status.as_u16()));
            sim.answered(seq, answer.into_response())
        }
        Some(Fault::TooManyRequests { retry_after }) => {
            let mut answer = Answer::detail(
                StatusCode::TOO_MANY_REQUESTS,
                detail_for_status(StatusCode::TOO_MANY_REQUESTS.as_u16()),
            );
            // A value that cannot be a header is left out rather than mangled.
            if let Some(value) = retry_after.and_then(|v| HeaderValue::from_str(&v).ok()) {
                answer = answer.with_header(RETRY_AFTER, value);
            }
            sim.answered(seq, answer.into_response())
        }
        Some(Fault::Html(code)) => sim.answered(seq, html_error_page(status_code(code))),
        Some(Fault::Slow(delay)) => {
            tokio::time::sleep(delay).await;
            sim.answered(seq, request.respond().into_response())
        }
        Some(Fault::Reset) => drop_connection(kill).await,
        Some(Fault::ResetAfterApply) => {
            let _lost = request.respond();
            drop_connection(kill).await
        }
        // Dropped with the connection: when the client gives up or the
        // simulator shuts down.
        Some(Fault::Hang) => std::future::pending().await,
        Some(Fault::NotJson) => sim.answered(seq, request.respond().into_text_response()),
        Some(Fault::Truncated) => sim.answered(seq, request.respond().into_truncated_response()),
        Some(Fault::OtherAccount(other)) => {
            let answer = request.respond();
            let answer = match (answer.status, sim.account(other)) {
                (StatusCode::OK, Some(account)) => {
                    Answer::json(StatusCode::OK, &account.client_view())
                }
                _ => answer,
            };
            sim.answered(seq, answer.into_response())
        }
        Some(Fault::HugeBody) => sim.answered(seq, request.respond().into_huge_response()),
        Some(Fault::Redirect(location)) => {
            let mut page = html_error_page(StatusCode::MOVED_PERMANENTLY);
            // A location that cannot be a header is left out rather than mangled.
            if let Ok(value) = HeaderValue::from_str(&location) {
                page.headers_mut().insert(LOCATION, value);
            }
            sim.answered(seq, page)
        }
    }
}

/// Ends the connection with a TCP reset, without answering.
async fn drop_connection(kill: Option<ConnectionKill>) -> Response {
    match kill {
        Some(kill) => {
            kill.reset();
            // The connection task drops this future together with the socket.
            std::future::pending().await
        }
        // Only the simulator's own server inserts the kill switch; a router
        // driven some other way cannot drop its connection.
        None => Answer::detail(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Connection reset fault outside the simulator's server.".to_owned(),
        )
        .into_response(),
    }
}

fn status_code(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// One `/iam` request past the fault rules: authentication, then the route.
struct IamRequest<'a> {
    sim: &'a SimState,
    faults: &'a Faults,
    parts: &'a Parts,
    body: &'a [u8],
    target: IamTarget,
}

impl IamRequest<'_> {
    fn respond(&self) -> Answer {
        if let Err(detail) =
            check_authorization(self.parts.headers.get(AUTHORIZATION), &self.sim.token)
        {
            return Answer::detail(StatusCode::UNAUTHORIZED, detail.to_owned())
                .with_header(WWW_AUTHENTICATE, HeaderValue::from_static("APIKey"));
        }
        let method = &self.parts.method;
        match self.target {
            IamTarget::ClientList if method == Method::GET => self.list_clients(),
            IamTarget::Me if method == Method::GET => {
                Answer::json(StatusCode::OK, &self.sim.owner.client_view())
            }
            IamTarget::Client(id) if method == Method::GET => self.get_client(id),
            IamTarget::Client(id) if method == Method::PATCH => self.patch_client(id),
            IamTarget::ClientList | IamTarget::Me => method_not_allowed(method, "GET"),
            IamTarget::Client(_) => method_not_allowed(method, "GET, PATCH"),
            IamTarget::Unknown => not_found(),
        }
    }

    fn get_client(&self, id: u64) -> Answer {
        if self.faults.forbidden_ids.contains(&id) {
            return forbidden();
        }
        match self.sim.account(id) {
            Some(account) => Answer::json(StatusCode::OK, &account.client_view()),
            None => not_found(),
        }
    }

    /// In DRF's order: the object (404, 403), then the media type (415), then
    /// the body (400).
    fn patch_client(&self, id: u64) -> Answer {
        if self.faults.forbidden_ids.contains(&id) {
            return forbidden();
        }
        if self.sim.account(id).is_none() {
            return not_found();
        }
        if let Some(media_type) = self.parts.headers.get(CONTENT_TYPE)
            && !is_json_media_type(media_type)
        {
            let shown = String::from_utf8_lossy(media_type.as_bytes()).into_owned();
            return Answer::detail(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("Unsupported media type \"{shown}\" in request."),
            );
        }
        let patch = match parse_patch(self.body) {
            Ok(patch) => patch,
            Err(rejection) => return Answer::json(StatusCode::BAD_REQUEST, &rejection.to_json()),
        };
        match self.sim.update_account(id, |account| {
            patch.apply(account, &self.faults.ignore_fields)
        }) {
            Some(account) => Answer::json(StatusCode::OK, &account.client_view()),
            None => not_found(),
        }
    }

    fn list_clients(&self) -> Answer {
        let Ok(Query(pairs)) = Query::<Vec<(String, String)>>::try_from_uri(&self.parts.uri) else {
            return Answer::detail(
                StatusCode::BAD_REQUEST,
                "Malformed query string.".to_owned(),
            );
        };
        let query = match parse_query(&pairs) {
            Ok(query) => query,
            Err(errors) => {
                return Answer::json(StatusCode::BAD_REQUEST, &json!({ "errors": errors }));
            }
        };
        let (count, accounts) = self.sim.select_accounts(&query);
        let results: Vec<ClientView> = accounts.iter().map(Account::client_view).collect();
        let Some(page) = query.page else {
            return Answer::json(StatusCode::OK, &results);
        };
        let host = self
            .parts
            .headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .map_or_else(|| self.sim.addr.to_string(), str::to_owned);
        let base = format!("http://{host}{}", self.parts.uri.path());
        let (next, previous) = page_links(
            &base,
            self.parts.uri.query().unwrap_or_default(),
            page,
            count,
        );
        Answer::json(
            StatusCode::OK,
            &ClientPage {
                count,
                next,
                previous,
                results,
            },
        )
    }
}

fn is_json_media_type(value: &HeaderValue) -> bool {
    value
        .to_str()
        .ok()
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

fn not_found() -> Answer {
    Answer::detail(StatusCode::NOT_FOUND, "Not found.".to_owned())
}

fn forbidden() -> Answer {
    Answer::detail(
        StatusCode::FORBIDDEN,
        "You do not have permission to perform this action.".to_owned(),
    )
}

fn method_not_allowed(method: &Method, allowed: &'static str) -> Answer {
    Answer::detail(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("Method \"{method}\" not allowed."),
    )
    .with_header(ALLOW, HeaderValue::from_static(allowed))
}

/// What a proxy in front of the API answers with: an nginx error page.
fn html_error_page(status: StatusCode) -> Response {
    let title = format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error")
    );
    let page = format!(
        "<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n\
         <center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    );
    (
        status,
        [(CONTENT_TYPE, HeaderValue::from_static("text/html"))],
        page,
    )
        .into_response()
}

/// The paginated shape of `GET /iam/clients`.
#[derive(Serialize)]
struct ClientPage<'a> {
    count: usize,
    next: Option<String>,
    previous: Option<String>,
    results: Vec<ClientView<'a>>,
}

/// A JSON answer before it becomes a response, so faults can still mangle it.
struct Answer {
    status: StatusCode,
    body: Bytes,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Answer {
    fn json(status: StatusCode, body: &impl Serialize) -> Answer {
        // Our own types and `Value`s always serialise; were one not to, the
        // empty body would fail any test at once.
        let body = serde_json::to_vec(body).unwrap_or_default();
        Answer {
            status,
            body: Bytes::from(body),
            headers: Vec::new(),
        }
    }

    /// DRF's error shape: `{"detail": "..."}`.
    fn detail(status: StatusCode, detail: String) -> Answer {
        Answer::json(status, &json!({ "detail": detail }))
    }

    fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Answer {
        self.headers.push((name, value));
        self
    }

    fn into_response(self) -> Response {
        let body = Body::from(self.body.clone());
        self.build(HeaderValue::from_static("application/json"), body)
    }

    /// The `NotJson` fault: same status, a plain-text body.
    fn into_text_response(self) -> Response {
        let text = format!(
            "{} {}\n",
            self.status.as_u16(),
            self.status.canonical_reason().unwrap_or_default()
        );
        self.build(HeaderValue::from_static("text/plain"), Body::from(text))
    }

    /// The `HugeBody` fault: the JSON body followed by 17 MiB of spaces.
    fn into_huge_response(mut self) -> Response {
        let mut body = self.body.to_vec();
        body.resize(body.len() + 17 * 1024 * 1024, b' ');
        self.body = Bytes::from(body);
        self.into_response()
    }

    /// The `Truncated` fault: `Content-Length` of the whole body, half of it
    /// sent, then the connection closes.
    fn into_truncated_response(self) -> Response {
        let promised = self.body.len();
        let sent = self.body.slice(..promised / 2);
        let mut response = self.build(
            HeaderValue::from_static("application/json"),
            Body::new(TruncatedBody::new(sent)),
        );
        response.headers_mut().insert(
            axum::http::header::CONTENT_LENGTH,
            HeaderValue::from(promised),
        );
        response
    }

    fn build(self, content_type: HeaderValue, body: Body) -> Response {
        let mut response = Response::new(body);
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, content_type);
        for (name, value) in self.headers {
            headers.insert(name, value);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_their_targets() {
        assert_eq!(IamTarget::from_path("/iam/clients"), IamTarget::ClientList);
        assert_eq!(IamTarget::from_path("/iam/clients/me"), IamTarget::Me);
        assert_eq!(
            IamTarget::from_path("/iam/clients/42"),
            IamTarget::Client(42)
        );
        assert_eq!(
            IamTarget::from_path("/iam/clients/007"),
            IamTarget::Client(7)
        );
        for unknown in [
            "/iam/clients/",
            "/iam/clients/abc",
            "/iam/clients/-1",
            "/iam/clients/1.5",
            "/iam/clients/99999999999999999999999",
            "/iam/clients/1/",
            "/iam/clients/1/services",
            "/iam/users",
            "/iam",
        ] {
            assert_eq!(
                IamTarget::from_path(unknown),
                IamTarget::Unknown,
                "{unknown}"
            );
        }
    }

    #[test]
    fn json_media_types() {
        assert!(is_json_media_type(&HeaderValue::from_static(
            "application/json"
        )));
        assert!(is_json_media_type(&HeaderValue::from_static(
            "Application/JSON; charset=utf-8"
        )));
        assert!(!is_json_media_type(&HeaderValue::from_static("text/plain")));
    }
}
