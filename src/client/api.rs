//! The Gcore IAM client: one HTTP attempt at a time, over a keep-alive pool.
//!
//! Each attempt comes back as an [`Exchange`]: the status and body when a
//! response arrived, or what went wrong on the way. Deciding whether to retry
//! is `retry`'s job; pacing is `pacing`'s.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, USER_AGENT};

use crate::client::network::Trust;
use crate::client::pacing::Quota;
use crate::client::retry::{Reply, Transport, parse_retry_after};
use crate::client::token::ApiToken;
use crate::error::Fatal;

/// The largest response body read; a longer one is refused, not buffered.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Connecting never waits longer than this, whatever `--timeout` says.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Raw error text is cut to this many characters in results and logs.
const RAW_TEXT_MAX: usize = 200;

/// The API's own error messages are cut to this many characters: a server
/// that answers with megabytes of them must not fill every results line.
const MESSAGE_MAX: usize = 500;

/// One call to the API.
#[derive(Debug, Clone)]
pub enum Request {
    Patch { client_id: u64, body: Bytes },
    Get { client_id: u64 },
    Me,
    List { query: Vec<(&'static str, String)> },
}

impl Request {
    /// A read whose answer nothing records and that changes nothing: the
    /// token check and a page of the account list. A stop gives it up at
    /// once rather than waiting for its answer.
    pub fn changes_nothing(&self) -> bool {
        matches!(self, Request::Me | Request::List { .. })
    }
}

/// The result of one HTTP attempt.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub reply: Reply,
    pub status: Option<u16>,
    pub body: Bytes,
    pub retry_after: Option<Duration>,
    /// What the answer's rate-limit header fields say, if it has any.
    pub quota: Option<Quota>,
    /// One line saying what went wrong (a network error, or the status and the
    /// API's message), with any echo of the token masked. `None` on a 2xx.
    pub failure: Option<String>,
    /// A 2xx whose body could not be read (cut short, or too large): the
    /// request was applied, so it counts as answered and is never sent
    /// again; this says why the answer cannot be checked.
    pub unreadable: Option<String>,
}

impl Exchange {
    /// One line saying what failed and why: the status and the API's message,
    /// or the kind of network error. Never holds the token.
    pub fn describe_failure(&self) -> String {
        match (&self.failure, self.status) {
            (Some(text), _) => text.clone(),
            (None, Some(code)) => format!("HTTP {code} {}", reason(code)),
            (None, None) => "no response".into(),
        }
    }
}

/// The server's rate-limit figures, from whichever header fields it sends.
fn read_quota(headers: &HeaderMap) -> Option<Quota> {
    // Most answers carry none: skip the work.
    if !headers
        .keys()
        .any(|name| name.as_str().contains("ratelimit"))
    {
        return None;
    }
    let now_unix = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    Quota::from_headers(|name| headers.get(name)?.to_str().ok(), now_unix)
}

/// `HTTP 404: Not found.`, from the status and the error body.
fn describe_status(code: u16, body: &[u8]) -> String {
    let message = describe_error_body(body);
    if message.is_empty() {
        format!("HTTP {code} {}", reason(code))
    } else {
        format!("HTTP {code}: {message}")
    }
}

fn reason(code: u16) -> &'static str {
    reqwest::StatusCode::from_u16(code)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("")
}

/// A Gcore IAM API client bound to one base URL and token.
#[derive(Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    /// `{base}/iam/clients`, parsed once: each request's URL is a copy with a
    /// path segment added, never parsed again.
    clients_url: reqwest::Url,
    timeout: Duration,
    token: Option<ApiToken>,
    /// The proxy requests go through (`scheme://host:port`), named in
    /// connection errors.
    proxy: Option<String>,
}

impl ApiClient {
    pub fn new(
        base_url: &str,
        token: Option<ApiToken>,
        concurrency: usize,
        timeout: Duration,
        trust: &Trust,
    ) -> Result<ApiClient, Fatal> {
        let url = check_base_url(base_url)?;
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("gcore-iam-bulk/", env!("CARGO_PKG_VERSION"))),
        );
        if let Some(token) = &token {
            headers.insert(AUTHORIZATION, token.header_value());
        }
        let mut builder = reqwest::Client::builder()
            .default_headers(headers)
            .pool_max_idle_per_host(concurrency.max(1))
            .tcp_nodelay(true)
            .connect_timeout(CONNECT_TIMEOUT.min(timeout))
            .redirect(reqwest::redirect::Policy::none());
        for root in &trust.extra_roots {
            builder = builder.add_root_certificate(root.clone());
        }
        // An API on this machine is never proxied (as in Go's net/http): a
        // proxy could not reach it, and a simulator run must work anywhere.
        let proxy = if is_loopback(&url) {
            builder = builder.no_proxy();
            None
        } else {
            crate::client::network::proxy_for(&url)
        };
        if let Some(proxy) = &proxy {
            tracing::debug!("requests to {} go through the proxy {proxy}", url);
        }
        let http = builder
            .build()
            .map_err(|e| Fatal::Usage(format!("cannot set up the HTTP client: {e}")))?;
        Ok(ApiClient {
            http,
            clients_url: reqwest::Url::parse(&format!(
                "{}/iam/clients",
                base_url.trim_end_matches('/')
            ))
            .map_err(|e| {
                Fatal::Usage(format!(
                    "--api-url `{}` is not a URL: {e}",
                    without_credentials(base_url)
                ))
            })?,
            timeout,
            token,
            proxy,
        })
    }

    /// Makes one attempt.
    pub async fn send(&self, request: &Request) -> Exchange {
        let builder = match request {
            Request::Patch { client_id, body } => self
                .http
                .patch(self.client_url(itoa::Buffer::new().format(*client_id)))
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                .body(body.clone()),
            Request::Get { client_id } => self
                .http
                .get(self.client_url(itoa::Buffer::new().format(*client_id))),
            Request::Me => self.http.get(self.client_url("me")),
            Request::List { query } => self.http.get(self.clients_url.clone()).query(query),
        };
        let response = match builder.timeout(self.timeout).send().await {
            Ok(response) => response,
            Err(e) => return self.failed(self.transport_of(&e)),
        };
        let status = response.status().as_u16();
        // Redirects are not followed (a PATCH must not land elsewhere), so
        // where the server points is what the user needs to see.
        let location = (300..400).contains(&status).then(|| {
            response.headers().get(reqwest::header::LOCATION).map(|v| {
                cut(
                    &one_line(&without_credentials(&String::from_utf8_lossy(v.as_bytes()))),
                    RAW_TEXT_MAX,
                )
            })
        });
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let quota = read_quota(response.headers());
        match read_body(response).await {
            Ok(body) => {
                // Only a 5xx needs to know: its retry depends on it.
                let body_is_json = !(500..600).contains(&status)
                    || serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_ok();
                let failure = (!(200..300).contains(&status)).then(|| {
                    self.mask(&match &location {
                        Some(Some(to)) => {
                            format!("HTTP {status} {} (Location: {to})", reason(status))
                        }
                        Some(None) => {
                            format!("HTTP {status} {} (no Location given)", reason(status))
                        }
                        None => describe_status(status, &body),
                    })
                });
                Exchange {
                    reply: Reply::Status {
                        code: status,
                        body_is_json,
                    },
                    status: Some(status),
                    body,
                    retry_after,
                    quota,
                    failure,
                    unreadable: None,
                }
            }
            // A PATCH whose success body is lost is still a success: the
            // server acted on it, and sending it again could act twice. A
            // read is simply tried again.
            Err(e) if (200..300).contains(&status) && matches!(request, Request::Patch { .. }) => {
                Exchange {
                    reply: Reply::Status {
                        code: status,
                        body_is_json: false,
                    },
                    status: Some(status),
                    body: Bytes::new(),
                    retry_after,
                    quota,
                    failure: None,
                    unreadable: Some(self.mask(&match e {
                        BodyError::Http(e) => transport_of(&e, self.timeout).1,
                        BodyError::TooLarge => "its body is over 16 MiB; not read".to_string(),
                    })),
                }
            }
            Err(BodyError::Http(e)) => {
                let (kind, text) = self.transport_of(&e);
                let kind = if kind == Transport::Timeout {
                    kind
                } else {
                    Transport::BodyCut
                };
                Exchange {
                    status: Some(status),
                    retry_after,
                    ..self.failed((kind, format!("HTTP {status}, then {text}")))
                }
            }
            Err(BodyError::TooLarge) => Exchange {
                status: Some(status),
                ..self.failed((
                    Transport::Other,
                    format!("HTTP {status} with a response body over 16 MiB; not read"),
                ))
            },
        }
    }

    /// `{base}/iam/clients/{segment}`.
    fn client_url(&self, segment: &str) -> reqwest::Url {
        let mut url = self.clients_url.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().push(segment);
        }
        url
    }

    fn failed(&self, (kind, text): (Transport, String)) -> Exchange {
        Exchange {
            reply: Reply::Transport(kind),
            status: None,
            body: Bytes::new(),
            retry_after: None,
            quota: None,
            failure: Some(self.mask(&text)),
            unreadable: None,
        }
    }

    /// [`transport_of`], naming the proxy when one carried the request.
    fn transport_of(&self, e: &reqwest::Error) -> (Transport, String) {
        let (kind, text) = transport_of(e, self.timeout);
        match &self.proxy {
            Some(proxy) => (kind, format!("{text} (through the proxy {proxy})")),
            None => (kind, text),
        }
    }

    /// The proxy requests go through, if any (`scheme://host:port`).
    pub fn proxy(&self) -> Option<&str> {
        self.proxy.as_deref()
    }

    /// Masks any echo of the token in text that came from the network.
    pub fn mask(&self, text: &str) -> String {
        match &self.token {
            Some(token) => token.mask(text),
            None => text.to_string(),
        }
    }
}

/// Checks `--api-url` (or `GCORE_BASE_URL`): an http:// or https:// URL
/// with a host, and nothing a base URL cannot hold. A user name or password
/// is refused, and never echoed: the HTTP client would send them as
/// `Authorization: Basic` instead of the token, and they would end up in
/// messages and reports.
pub fn check_base_url(base_url: &str) -> Result<reqwest::Url, Fatal> {
    let shown = without_credentials(base_url);
    if shown != base_url {
        return Err(Fatal::Usage(format!(
            "--api-url (or GCORE_BASE_URL) `{shown}` holds a user name or password: the API \
             token goes in GCORE_API_KEY or --api-key-file, never in the URL; give the URL \
             without them, such as https://api.gcore.com; nothing was sent"
        )));
    }
    let url = reqwest::Url::parse(base_url).map_err(|e| {
        Fatal::Usage(format!(
            "--api-url `{shown}` is not a URL ({e}): give the API's base URL, such as \
             https://api.gcore.com"
        ))
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(Fatal::Usage(format!(
            "--api-url `{shown}` must be an http:// or https:// URL with a host, such as \
             https://api.gcore.com"
        )));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(Fatal::Usage(format!(
            "--api-url `{shown}` must not have a query or a fragment: give the base, such as \
             https://api.gcore.com"
        )));
    }
    Ok(url)
}

/// `text` with the user name and password of every URL in it replaced by
/// `***` (`http://***@host/`). Works on text that does not parse as a URL.
pub fn without_credentials(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        let authority_end = after.find(['/', '?', '#']).unwrap_or(after.len());
        match after[..authority_end].rfind('@') {
            Some(user_end) => {
                out.push_str("***");
                rest = &after[user_end..];
            }
            None => rest = after,
        }
    }
    out.push_str(rest);
    out
}

fn is_loopback(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether a base URL points at this machine (no confirmation asked, no proxy).
pub fn is_loopback_url(base_url: &str) -> bool {
    reqwest::Url::parse(base_url).is_ok_and(|u| is_loopback(&u))
}

enum BodyError {
    Http(reqwest::Error),
    TooLarge,
}

async fn read_body(mut response: reqwest::Response) -> Result<Bytes, BodyError> {
    let first = match response.chunk().await.map_err(BodyError::Http)? {
        Some(chunk) => chunk,
        None => return Ok(Bytes::new()),
    };
    let Some(second) = response.chunk().await.map_err(BodyError::Http)? else {
        return Ok(first);
    };
    let mut body = Vec::with_capacity(first.len() + second.len());
    body.extend_from_slice(&first);
    body.extend_from_slice(&second);
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Http)? {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(body))
}

/// Sorts a reqwest error into a retry kind and a one-line description that
/// names the kind of failure (never the URL, which the row already names).
fn transport_of(e: &reqwest::Error, timeout: Duration) -> (Transport, String) {
    let cause = root_cause(e);
    if e.is_timeout() {
        (
            Transport::Timeout,
            format!(
                "timed out: no complete answer within {}",
                humantime::format_duration(timeout)
            ),
        )
    } else if let Some(advice) = crate::client::network::certificate_advice(e) {
        // Retrying cannot make the certificate trusted.
        (
            Transport::Other,
            format!("could not connect: {cause}: {advice}"),
        )
    } else if e.is_connect() {
        (Transport::Connect, format!("could not connect: {cause}"))
    } else if e.is_body() || e.is_decode() {
        (
            Transport::BodyCut,
            format!("the response body was cut short: {cause}"),
        )
    } else if e.is_builder() || e.is_redirect() {
        (Transport::Other, format!("request not sent: {cause}"))
    } else {
        (
            Transport::Reset,
            format!("the connection closed before a complete response: {cause}"),
        )
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last: &(dyn std::error::Error + 'static) = e;
    while let Some(next) = last.source() {
        last = next;
    }
    one_line(&last.to_string())
}

/// Describes an error body leniently: `{"errors": {field: [msgs]}}` as
/// `field: msg; …`, then `message`, then `detail`, else the raw text cut short.
/// A `request_id` is kept: support asks for it.
pub fn describe_error_body(body: &[u8]) -> String {
    let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let Some(serde_json::Value::Object(map)) = json else {
        return raw_text(body);
    };
    let mut text = String::new();
    if let Some(errors) = map.get("errors") {
        text = describe_errors(errors);
    }
    for key in ["message", "detail", "error"] {
        if !text.is_empty() {
            break;
        }
        if let Some(v) = map.get(key) {
            text = match v {
                serde_json::Value::String(s) => s.clone(),
                other => describe_errors(other),
            };
        }
    }
    if text.is_empty() {
        text = raw_text(body);
    }
    let mut text = cut(&one_line(&text), MESSAGE_MAX);
    if let Some(id) = map.get("request_id").filter(|v| !v.is_null()) {
        let id = match id {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        text.push_str(&format!(" (request_id: {})", one_line(&id)));
    }
    text
}

fn describe_errors(errors: &serde_json::Value) -> String {
    use serde_json::Value;
    match errors {
        Value::Object(fields) => fields
            .iter()
            .map(|(field, msgs)| format!("{field}: {}", describe_errors(msgs)))
            .collect::<Vec<_>>()
            .join("; "),
        Value::Array(items) => items
            .iter()
            .map(describe_errors)
            .collect::<Vec<_>>()
            .join(" "),
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Raw body text for a message: an HTML page's title when it has one, else the
/// text on one line, cut to 200 characters.
fn raw_text(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    if let Some(title) = html_title(&text) {
        return cut(&one_line(title), RAW_TEXT_MAX);
    }
    cut(&one_line(&text), RAW_TEXT_MAX)
}

fn html_title(text: &str) -> Option<&str> {
    let lower = text.to_ascii_lowercase();
    let start = lower.find("<title>")? + "<title>".len();
    let end = start + lower[start..].find("</title>")?;
    Some(text[start..end].trim()).filter(|t| !t.is_empty())
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn cut(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_errors_become_one_line() {
        let body = br#"{"errors": {"email": ["Enter a valid email address."], "seller": ["A valid integer is required.", "Second."]}}"#;
        assert_eq!(
            describe_error_body(body),
            "email: Enter a valid email address.; seller: A valid integer is required. Second."
        );
    }

    #[test]
    fn message_then_detail_then_raw() {
        assert_eq!(
            describe_error_body(br#"{"message": "JSON parse error - x", "detail": "no"}"#),
            "JSON parse error - x"
        );
        assert_eq!(
            describe_error_body(br#"{"detail": "Not found."}"#),
            "Not found."
        );
        assert_eq!(
            describe_error_body(
                br#"{"exception_class": "E", "message": "boom", "request_id": "r-1"}"#
            ),
            "boom (request_id: r-1)"
        );
        assert_eq!(describe_error_body(b"plain\n  text"), "plain text");
        assert_eq!(describe_error_body(br#"{"other": 1}"#), r#"{"other": 1}"#);
        let long = "x".repeat(500);
        assert_eq!(describe_error_body(long.as_bytes()).chars().count(), 201);
        assert_eq!(
            describe_error_body("é".repeat(300).as_bytes())
                .chars()
                .count(),
            201
        );
    }

    #[test]
    fn credentials_are_taken_out_of_urls() {
        assert_eq!(
            without_credentials("http://alice:pw@host:8080/x?y=a@b"),
            "http://***@host:8080/x?y=a@b"
        );
        assert_eq!(
            without_credentials("see http://a b:c@d@host and https://h/"),
            "see http://***@host and https://h/"
        );
        assert_eq!(
            without_credentials("https://api.gcore.com"),
            "https://api.gcore.com"
        );
        assert_eq!(
            without_credentials("no url at all @ here"),
            "no url at all @ here"
        );
        for url in [
            "http://alice:s3cret@h",
            "http://alice@h",
            "http://alice:s3 cret@h/p",
        ] {
            let e = check_base_url(url).unwrap_err().to_string();
            assert!(e.contains("user name or password"), "{e}");
            assert!(!e.contains("alice") && !e.contains("s3"), "{e}");
        }
        assert!(check_base_url("ftp://h").is_err());
        assert!(check_base_url("https://h/?x=1").is_err());
        assert!(check_base_url("https://api.gcore.com").is_ok());
    }

    #[test]
    fn long_messages_are_cut() {
        let body = format!(r#"{{"errors": {{"name": ["{}"]}}}}"#, "x".repeat(5000));
        assert_eq!(describe_error_body(body.as_bytes()).chars().count(), 501);
    }

    #[test]
    fn html_pages_give_their_title() {
        let page =
            b"<html><head><title>502 Bad Gateway</title></head><body><h1>nginx</h1></body></html>";
        assert_eq!(describe_error_body(page), "502 Bad Gateway");
    }

    #[test]
    fn invalid_bytes_do_not_panic() {
        assert_eq!(
            describe_error_body(b"\xff\xfe oops"),
            "\u{fffd}\u{fffd} oops"
        );
        assert_eq!(describe_error_body(b""), "");
    }
}
