//! What the sandbox received: the request log and the counters of `GET /_sandbox/stats`.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use http::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::shared::lock;

/// The ConnectPay endpoints the sandbox serves (the names used by faults, stats and the log).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    Token,
    SubmitIdv,
    GetApplication,
    GetIdv,
    InitiateApplication,
}

impl Endpoint {
    pub const ALL: [Endpoint; 5] = [
        Endpoint::Token,
        Endpoint::SubmitIdv,
        Endpoint::GetApplication,
        Endpoint::GetIdv,
        Endpoint::InitiateApplication,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Token => "token",
            Endpoint::SubmitIdv => "submit_idv",
            Endpoint::GetApplication => "get_application",
            Endpoint::GetIdv => "get_idv",
            Endpoint::InitiateApplication => "initiate_application",
        }
    }

    /// Everything but the token endpoint: what needs a bearer token and what random faults and
    /// added latency apply to.
    pub fn is_onboarding(self) -> bool {
        self != Endpoint::Token
    }

    /// Whether a request to this endpoint is about one existing application (so a fault can be
    /// limited to it).
    pub(crate) fn names_application(self) -> bool {
        matches!(
            self,
            Endpoint::GetApplication | Endpoint::GetIdv | Endpoint::InitiateApplication
        )
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Endpoint {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Endpoint::ALL
            .into_iter()
            .find(|e| e.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown endpoint {s:?}; expected one of token, submit_idv, get_application, \
                     get_idv, initiate_application"
                )
            })
    }
}

/// One request to a ConnectPay endpoint, as `GET /_sandbox/requests` lists it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordedRequest {
    pub endpoint: Endpoint,
    pub method: String,
    /// Path and query as received.
    pub path: String,
    /// The recorded headers (lowercase names); `authorization` is cut to its scheme.
    pub headers: BTreeMap<String, String>,
    /// The parsed JSON body (`null` when absent or not JSON); for the token endpoint only
    /// `{"grant_type"}`, never a code or token.
    pub body: Option<Value>,
    /// The status code answered; `null` while in flight, and for `hang`/`reset` faults.
    pub status: Option<u16>,
    /// The client went away before the answer was ready (it gave up: a deadline, a cancellation).
    #[serde(default)]
    pub abandoned: bool,
    /// When it arrived (RFC 3339, UTC, milliseconds).
    pub at: String,
}

/// Headers worth seeing in the log; everything else (cookies, lengths…) is noise.
const RECORDED_HEADERS: [&str; 6] = [
    "authorization",
    "x-request-id",
    "x-connectpay-requestid",
    "accept",
    "content-type",
    "traceparent",
];

/// The log keeps the newest requests only, so a long benchmark cannot exhaust memory.
pub(crate) const LOG_CAPACITY: usize = 10_000;

pub(crate) fn recorded_headers(headers: &HeaderMap) -> BTreeMap<String, String> {
    RECORDED_HEADERS
        .into_iter()
        .filter_map(|name| {
            let value = headers.get(name)?;
            let value = String::from_utf8_lossy(value.as_bytes());
            let value = if name == "authorization" {
                // Credentials never reach the log: keep the scheme so a test can see it.
                match value.split_once(' ') {
                    Some((scheme, _)) => format!("{scheme} …"),
                    None => "…".to_owned(),
                }
            } else {
                value.into_owned()
            };
            Some((name.to_owned(), value))
        })
        .collect()
}

/// The request log, oldest first. Entries are added when a request arrives and get their
/// status when it is answered.
#[derive(Default)]
pub(crate) struct RequestLog {
    entries: Mutex<LogEntries>,
}

#[derive(Default)]
struct LogEntries {
    next_id: u64,
    entries: VecDeque<(u64, RecordedRequest)>,
}

impl RequestLog {
    /// Adds a request; the returned id is for [`RequestLog::finish`].
    pub(crate) fn start(&self, request: RecordedRequest) -> u64 {
        let mut log = lock(&self.entries);
        let id = log.next_id;
        log.next_id += 1;
        if log.entries.len() == LOG_CAPACITY {
            log.entries.pop_front();
        }
        log.entries.push_back((id, request));
        id
    }

    pub(crate) fn finish(&self, id: u64, status: u16) {
        let mut log = lock(&self.entries);
        // Answers come soon after their requests, so the entry is near the back.
        if let Some((_, entry)) = log.entries.iter_mut().rev().find(|(i, _)| *i == id) {
            entry.status = Some(status);
        }
    }

    pub(crate) fn abandon(&self, id: u64) {
        let mut log = lock(&self.entries);
        if let Some((_, entry)) = log.entries.iter_mut().rev().find(|(i, _)| *i == id)
            && entry.status.is_none()
        {
            entry.abandoned = true;
        }
    }

    pub(crate) fn list(&self, endpoint: Option<Endpoint>) -> Vec<RecordedRequest> {
        lock(&self.entries)
            .entries
            .iter()
            .map(|(_, entry)| entry)
            .filter(|entry| endpoint.is_none_or(|e| e == entry.endpoint))
            .cloned()
            .collect()
    }

    pub(crate) fn clear(&self) {
        lock(&self.entries).entries.clear();
    }
}

/// `GET /_sandbox/stats`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub token: TokenStats,
    /// Onboarding calls answered `401` for a missing, unknown or expired bearer token.
    pub unauthorized: u64,
    /// Requests received per endpoint (every endpoint listed, `0` included).
    pub requests: BTreeMap<Endpoint, u64>,
    /// The most requests to each endpoint that were in flight at once, from arrival to answer (every
    /// endpoint listed): how far a client spread its calls.
    #[serde(rename = "peakInFlight", default)]
    pub peak_in_flight: BTreeMap<Endpoint, u64>,
}

/// Token-endpoint counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenStats {
    /// Successful authorization-code exchanges.
    pub authorization_code: u64,
    /// Successful refreshes.
    pub refresh_token: u64,
    /// `invalid_grant` answers (spent, unknown or expired codes and refresh tokens).
    pub invalid_grant: u64,
    /// `invalid_client` answers.
    pub invalid_client: u64,
}

/// Lock-free counters behind [`Stats`].
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) authorization_code: AtomicU64,
    pub(crate) refresh_token: AtomicU64,
    pub(crate) invalid_grant: AtomicU64,
    pub(crate) invalid_client: AtomicU64,
    pub(crate) unauthorized: AtomicU64,
    requests: [AtomicU64; Endpoint::ALL.len()],
    in_flight: [AtomicU64; Endpoint::ALL.len()],
    peak_in_flight: [AtomicU64; Endpoint::ALL.len()],
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn request(&self, endpoint: Endpoint) {
        Counters::bump(&self.requests[endpoint as usize]);
    }

    /// Counts a request in flight until the returned guard is dropped (answered, or abandoned).
    pub(crate) fn in_flight(&self, endpoint: Endpoint) -> InFlight<'_> {
        let slot = endpoint as usize;
        let now = self.in_flight[slot].fetch_add(1, Ordering::Relaxed) + 1;
        self.peak_in_flight[slot].fetch_max(now, Ordering::Relaxed);
        InFlight {
            counter: &self.in_flight[slot],
        }
    }

    pub(crate) fn snapshot(&self) -> Stats {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Stats {
            token: TokenStats {
                authorization_code: read(&self.authorization_code),
                refresh_token: read(&self.refresh_token),
                invalid_grant: read(&self.invalid_grant),
                invalid_client: read(&self.invalid_client),
            },
            unauthorized: read(&self.unauthorized),
            requests: Endpoint::ALL
                .into_iter()
                .map(|e| (e, read(&self.requests[e as usize])))
                .collect(),
            peak_in_flight: Endpoint::ALL
                .into_iter()
                .map(|e| (e, read(&self.peak_in_flight[e as usize])))
                .collect(),
        }
    }
}

/// One request in flight, counted until dropped.
pub(crate) struct InFlight<'a> {
    counter: &'a AtomicU64,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_authorization_to_its_scheme() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "Bearer secret-token".parse().unwrap());
        headers.insert("x-request-id", "abc".parse().unwrap());
        headers.insert("cookie", "nope".parse().unwrap());
        let recorded = recorded_headers(&headers);
        assert_eq!(recorded["authorization"], "Bearer …");
        assert_eq!(recorded["x-request-id"], "abc");
        assert!(!recorded.contains_key("cookie"));
    }

    #[test]
    fn stats_serialize_with_endpoint_names() {
        let counters = Counters::default();
        counters.request(Endpoint::GetIdv);
        let json = serde_json::to_value(counters.snapshot()).unwrap();
        assert_eq!(json["requests"]["get_idv"], 1);
        assert_eq!(json["requests"]["token"], 0);
        assert_eq!(json["token"]["invalidGrant"], 0);
        assert_eq!(json["peakInFlight"]["get_idv"], 0);
    }

    #[test]
    fn the_peak_in_flight_is_the_most_requests_answered_at_once() {
        let counters = Counters::default();
        let first = counters.in_flight(Endpoint::GetApplication);
        let second = counters.in_flight(Endpoint::GetApplication);
        drop(first);
        let third = counters.in_flight(Endpoint::GetApplication);
        drop((second, third));
        let _alone = counters.in_flight(Endpoint::GetApplication);
        let stats = counters.snapshot();
        assert_eq!(stats.peak_in_flight[&Endpoint::GetApplication], 2);
        assert_eq!(stats.peak_in_flight[&Endpoint::Token], 0);
    }
}
