//! The log of requests the simulator received on `/iam/...`: what tests and
//! scripts inspect to see what a client really sent, when, and what it got.

use std::time::Duration;

use serde_json::{Value, json};

/// One request as it arrived, and what was answered.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// From the path, when it is `/iam/clients/{id}` with an integer id.
    pub client_id: Option<u64>,
    /// The body parsed as JSON, when it parsed.
    pub body: Option<Value>,
    pub raw_body: Vec<u8>,
    /// Arrival time since the simulator started (monotonic clock).
    pub at: Duration,
    /// The status answered; `None` while pending, and for a reset or a hang.
    pub status: Option<u16>,
    /// The `Authorization` header carried the accepted token.
    pub authorized: bool,
}

impl RecordedRequest {
    /// The shape `GET /_sim/requests` answers with.
    pub fn to_json(&self) -> Value {
        json!({
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "client_id": self.client_id,
            "body": self.body,
            "at_seconds": self.at.as_secs_f64(),
            "status": self.status,
            "authorized": self.authorized,
        })
    }
}

/// Arrival-ordered records. Each gets a sequence number so its status can be
/// filled in later, even after earlier records were cleared.
#[derive(Default)]
pub(crate) struct RequestLog {
    next_seq: u64,
    entries: Vec<(u64, RecordedRequest)>,
}

impl RequestLog {
    /// Appends a record; the returned number identifies it for `answered`.
    pub fn push(&mut self, request: RecordedRequest) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.entries.push((seq, request));
        seq
    }

    /// Notes the status answered to record `seq` (if it is still kept).
    pub fn answered(&mut self, seq: u64, status: u16) {
        // Sequence numbers only grow, so the entries stay sorted by them.
        if let Ok(index) = self.entries.binary_search_by_key(&seq, |(s, _)| *s) {
            self.entries[index].1.status = Some(status);
        }
    }

    pub fn snapshot(&self) -> Vec<RecordedRequest> {
        self.entries.iter().map(|(_, r)| r.clone()).collect()
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(path: &str) -> RecordedRequest {
        RecordedRequest {
            method: "GET".into(),
            path: path.into(),
            query: None,
            client_id: None,
            body: None,
            raw_body: Vec::new(),
            at: Duration::ZERO,
            status: None,
            authorized: true,
        }
    }

    #[test]
    fn status_lands_on_the_right_record_after_a_clear() {
        let mut log = RequestLog::default();
        let first = log.push(request("/a"));
        log.clear();
        let second = log.push(request("/b"));
        log.answered(first, 500);
        log.answered(second, 200);
        let kept = log.snapshot();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].path, "/b");
        assert_eq!(kept[0].status, Some(200));
    }
}
