//! Helpers for watch streams: open one, read it to its end, and check what it delivered.

use std::time::Duration;

use onboarding_gateway::grpc::pb::{
    self, WatchApplicationResponse, onboarding_client::OnboardingClient,
    watch_application_request::Key, watch_application_response::Event,
};
use tonic::{Streaming, transport::Channel};

pub async fn watch(
    client: &mut OnboardingClient<Channel>,
    key: Key,
    resume_token: &str,
) -> Result<Streaming<WatchApplicationResponse>, tonic::Status> {
    client
        .watch_application(pb::WatchApplicationRequest {
            key: Some(key),
            resume_token: resume_token.into(),
        })
        .await
        .map(tonic::Response::into_inner)
}

pub fn by_id(id: &str) -> Key {
    Key::ApplicationId(id.into())
}

pub fn by_reference(reference: &str) -> Key {
    Key::ExternalReference(reference.into())
}

/// The next message, or `None` when the stream ended OK; panics on an error or after `within`.
pub async fn next(
    stream: &mut Streaming<WatchApplicationResponse>,
    within: Duration,
) -> Option<WatchApplicationResponse> {
    tokio::time::timeout(within, stream.message())
        .await
        .expect("a message or the end in time")
        .expect("no stream error")
}

/// Reads until the stream ends OK; heartbeats are skipped.
pub async fn read_to_end(
    stream: &mut Streaming<WatchApplicationResponse>,
    within: Duration,
) -> Vec<WatchApplicationResponse> {
    let until = tokio::time::Instant::now() + within;
    let mut messages = Vec::new();
    loop {
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        match next(stream, left).await {
            None => return messages,
            Some(m) if matches!(m.event, Some(Event::Heartbeat(_))) => {}
            Some(m) => messages.push(m),
        }
    }
}

/// The application a snapshot or change carries.
pub fn application(message: &WatchApplicationResponse) -> &pb::Application {
    match &message.event {
        Some(Event::Snapshot(app) | Event::Change(app)) => app,
        other => panic!("not an application message: {other:?}"),
    }
}

/// Checks a stream's messages: a snapshot first (unless resumed), then changes, versions growing by
/// exactly one, statuses never going back, every message carrying a token. Returns the statuses.
pub fn check_stream(
    messages: &[WatchApplicationResponse],
    resumed: bool,
) -> Vec<pb::ApplicationStatus> {
    assert!(!messages.is_empty(), "a stream delivered nothing");
    for (i, m) in messages.iter().enumerate() {
        assert!(
            !m.resume_token.is_empty(),
            "message {i} has no resume token"
        );
        let is_snapshot = matches!(m.event, Some(Event::Snapshot(_)));
        assert_eq!(is_snapshot, i == 0 && !resumed, "message {i}: {m:?}");
    }
    for pair in messages.windows(2) {
        let (a, b) = (application(&pair[0]), application(&pair[1]));
        assert_eq!(
            b.version,
            a.version + 1,
            "versions grow by one: {messages:#?}"
        );
        assert_eq!(a.application_id, b.application_id);
    }
    messages
        .iter()
        .map(|m| pb::ApplicationStatus::try_from(application(m).status).unwrap())
        .collect()
}
