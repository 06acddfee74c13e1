//! The stream checker: records every message a consumer received over a watch and all its resumptions,
//! and checks what a consumer relies on — ordered, no duplicate, no gap, resumable, and heartbeat tokens
//! never ahead of the events.

use std::time::Duration;

use onboarding_gateway::grpc::pb::{
    ApplicationStatus, WatchApplicationResponse, onboarding_client::OnboardingClient,
    watch_application_response::Event,
};
use tonic::transport::Channel;

#[derive(Debug, Default, Clone)]
pub struct StreamRecord {
    /// Every snapshot or change, in arrival order, across resumptions.
    pub messages: Vec<WatchApplicationResponse>,
    /// Where each resumption started: the token it passed.
    pub resumed_from: Vec<String>,
    /// The token of the last snapshot or change: where to resume.
    pub last_token: String,
    heartbeat_problems: Vec<String>,
}

impl StreamRecord {
    /// Takes one message of the current segment.
    pub fn take(&mut self, message: WatchApplicationResponse) {
        match &message.event {
            Some(Event::Heartbeat(_)) => {
                if message.resume_token != self.last_token {
                    self.heartbeat_problems.push(format!(
                        "heartbeat token {} is not the last event's {}",
                        message.resume_token, self.last_token
                    ));
                }
            }
            Some(_) => {
                self.last_token = message.resume_token.clone();
                self.messages.push(message);
            }
            None => self
                .heartbeat_problems
                .push("a message without an event".into()),
        }
    }

    /// A new segment resumes from the last token.
    pub fn resuming(&mut self) -> String {
        self.resumed_from.push(self.last_token.clone());
        self.last_token.clone()
    }

    pub fn statuses(&self) -> Vec<ApplicationStatus> {
        self.messages
            .iter()
            .map(|m| ApplicationStatus::try_from(super::application(m).status).unwrap())
            .collect()
    }

    /// Panics with everything recorded if any guarantee was broken.
    pub fn check(&self) {
        let fail = |why: String| panic!("stream check failed: {why}\n{self:#?}");
        if !self.heartbeat_problems.is_empty() {
            fail(self.heartbeat_problems.join("; "));
        }
        let Some(first) = self.messages.first() else {
            return fail("nothing was delivered".into());
        };
        if !matches!(first.event, Some(Event::Snapshot(_))) {
            fail("the first message is not a snapshot".into());
        }
        if self.messages[1..]
            .iter()
            .any(|m| !matches!(m.event, Some(Event::Change(_))))
        {
            fail("a later message is not a change (a resumption sent a snapshot)".into());
        }
        for pair in self.messages.windows(2) {
            let (a, b) = (super::application(&pair[0]), super::application(&pair[1]));
            if a.application_id != b.application_id {
                fail("messages about two applications".into());
            }
            if b.version != a.version + 1 {
                fail(format!(
                    "version {} followed by {}: a gap or a duplicate",
                    a.version, b.version
                ));
            }
            if pair[0].resume_token == pair[1].resume_token {
                fail("two messages share a resume token".into());
            }
        }
        let statuses = self.statuses();
        if statuses[..statuses.len() - 1]
            .iter()
            .any(|s| is_terminal(*s))
        {
            fail("a message after a terminal status".into());
        }
    }
}

pub fn is_terminal(status: ApplicationStatus) -> bool {
    use ApplicationStatus as S;
    matches!(
        status,
        S::IdvDeclined | S::IdvTokenExpired | S::AccountIssued | S::ApplicationDeclined
    )
}

/// Follows a watch to its terminal status, resuming with the last token whenever the stream breaks (the
/// gateway restarting, say), for at most `within`. With several `clients` (replicas), each resumption goes
/// to the next one.
pub async fn follow(
    clients: Vec<OnboardingClient<Channel>>,
    application_id: &str,
    within: Duration,
) -> StreamRecord {
    let mut record = StreamRecord::default();
    let until = tokio::time::Instant::now() + within;
    for attempt in 0.. {
        assert!(
            tokio::time::Instant::now() < until,
            "never reached a terminal status: {record:#?}"
        );
        let mut client = clients[attempt % clients.len()].clone();
        let token = if record.messages.is_empty() {
            String::new()
        } else {
            record.resuming()
        };
        let opened = super::watch(&mut client, super::by_id(application_id), &token).await;
        let mut stream = match opened {
            Ok(stream) => stream,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        loop {
            match tokio::time::timeout_at(until, stream.message()).await {
                Err(_) => panic!("never reached a terminal status: {record:#?}"),
                Ok(Ok(Some(message))) => record.take(message),
                // Ended OK: only after a terminal status.
                Ok(Ok(None)) => return record,
                // Broken: resume.
                Ok(Err(_)) => break,
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    unreachable!("the loop only ends by returning")
}

/// The HTTP/2 layer under `status` says the server went away gracefully (`GOAWAY`, `NO_ERROR`) before
/// taking the request: it was never processed. tonic reports it as `INTERNAL` ("h2 protocol error")
/// when it sends a request on a connection that has just been told to go away.
pub fn refused_by_goaway(status: &tonic::Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(error) = source {
        if let Some(h2) = error.downcast_ref::<h2::Error>() {
            return h2.is_go_away() && h2.is_remote() && h2.reason() == Some(h2::Reason::NO_ERROR);
        }
        source = error.source();
    }
    false
}

/// Repeats `attempt` (given the attempt's number, to pick a replica, say) while it fails in a way a
/// retrying client may retry — the gateway restarting (including a request refused by a replica's
/// `GOAWAY`), a request still in progress, an outcome unknown — for at most `within`.
pub async fn with_retries<T, F, Fut>(within: Duration, mut attempt: F) -> Result<T, tonic::Status>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    use tonic::Code;
    let until = tokio::time::Instant::now() + within;
    for n in 0.. {
        match attempt(n).await {
            Err(status)
                if (matches!(
                    status.code(),
                    Code::Unavailable
                        | Code::Unknown
                        | Code::Aborted
                        | Code::DeadlineExceeded
                        | Code::Cancelled
                ) || refused_by_goaway(&status))
                    && tokio::time::Instant::now() < until =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            result => return result,
        }
    }
    unreachable!("the loop only ends by returning")
}
