//! `WatchApplication` as a use case: a cursor over one application's event log.
//!
//! A new watch starts with a snapshot of the current version, then every later version in order; a resumed
//! watch replays exactly the versions after its token. The stream ends after a terminal status, and with
//! `Unavailable` when the gateway shuts down (the caller resumes with its last token).

use std::{sync::Arc, time::SystemTime};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use futures::Stream;

use super::{ApplicationKey, Onboarding, store_failed};
use crate::{
    connectpay::CallKind,
    domain::{
        Application, Error,
        error::{ErrorKind, Reason},
    },
};

/// How many log entries one read takes; a stream far behind catches up in batches of this size.
const BATCH: usize = 64;

/// Why a waiting stream woke up.
enum Wake {
    Grew,
    Idle,
    Stopping,
}

/// An opaque position in the event log, handed to callers so they can resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ResumeToken(u64);

impl ResumeToken {
    const PREFIX: &'static str = "w1.";

    pub fn encode(self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}{}", Self::PREFIX, self.0))
    }

    /// Parses a token this gateway issued; anything else is the caller's mistake.
    pub fn decode(raw: &str) -> Result<ResumeToken, Error> {
        let invalid = || Error::invalid_field("resume_token", "is not a token this gateway issued");
        let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| invalid())?;
        let text = std::str::from_utf8(&bytes).map_err(|_| invalid())?;
        let seq = text
            .strip_prefix(Self::PREFIX)
            .and_then(|n| n.parse().ok())
            .ok_or_else(invalid)?;
        Ok(ResumeToken(seq))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    Snapshot(Application),
    Change(Application),
    Heartbeat(SystemTime),
}

/// One message of a watch stream, with the token that resumes after it.
#[derive(Debug, Clone)]
pub struct WatchItem {
    pub event: WatchEvent,
    pub token: ResumeToken,
}

impl Onboarding {
    /// Opens a watch. Errors that concern the request itself (unknown application, bad token) come back
    /// at once; later ones end the stream.
    pub async fn watch(
        self: &Arc<Self>,
        caller: &str,
        key: ApplicationKey,
        resume: Option<ResumeToken>,
    ) -> Result<impl Stream<Item = Result<WatchItem, Error>> + Send + 'static, Error> {
        let current = self.known_event(caller, &key).await?;
        self.check_resumable(resume).await?;
        let id = current.application.id.clone();
        let this = self.clone();
        Ok(async_stream::try_stream! {
            let mut subscription = this.watchers.subscribe(&id);
            // The last version delivered, when known: then the next ones may come from memory.
            let mut version = None;
            let mut cursor = match resume {
                // A resumed watch of an application that ended at or before the token: nothing to replay.
                Some(ResumeToken(seq))
                    if current.application.status.is_terminal() && current.seq <= seq => return,
                Some(ResumeToken(seq)) => seq,
                None => {
                    // Re-read after subscribing: nothing recorded from here on can be missed.
                    let current = this
                        .store
                        .current(&id)
                        .await
                        .map_err(|e| store_failed(e, CallKind::Read))?
                        .unwrap_or(current);
                    let terminal = current.application.status.is_terminal();
                    version = Some(current.application.version);
                    yield WatchItem {
                        event: WatchEvent::Snapshot(current.application),
                        token: ResumeToken(current.seq),
                    };
                    if terminal {
                        return;
                    }
                    current.seq
                }
            };
            // A snapshot is the newest version unless a later one was announced since subscribing: then
            // the stream waits at once. (Reading the log here anyway cost every new stream a store read.)
            let mut caught_up = resume.is_none() && subscription.latest() <= cursor;
            loop {
                if caught_up {
                    caught_up = false;
                } else {
                    let remembered = version
                        .map(|v| this.recent.after_version(&id, v, BATCH))
                        .unwrap_or_default();
                    let from_memory = !remembered.is_empty();
                    let events = if from_memory {
                        remembered
                    } else {
                        this.store
                            .events_after(&id, cursor, BATCH)
                            .await
                            .map_err(|e| store_failed(e, CallKind::Read))?
                    };
                    let full_batch = events.len() == BATCH;
                    for event in events {
                        cursor = event.seq;
                        version = Some(event.application.version);
                        let terminal = event.application.status.is_terminal();
                        yield WatchItem {
                            event: WatchEvent::Change(event.application),
                            token: ResumeToken(cursor),
                        };
                        if terminal {
                            return;
                        }
                    }
                    // Memory may hold only part of what was announced (another replica's events are not
                    // there): read again, from the store if need be, before waiting.
                    if full_batch || (from_memory && subscription.latest() > cursor) {
                        continue;
                    }
                }
                let woken = tokio::select! {
                    () = subscription.changed() => Wake::Grew,
                    () = tokio::time::sleep(this.settings.heartbeat_interval) => Wake::Idle,
                    () = this.stopping.cancelled() => Wake::Stopping,
                };
                match woken {
                    Wake::Grew => {}
                    Wake::Idle => yield WatchItem {
                        event: WatchEvent::Heartbeat(SystemTime::now()),
                        token: ResumeToken(cursor),
                    },
                    Wake::Stopping => Err(Error::new(ErrorKind::Unavailable, Reason::ShuttingDown))?,
                }
            }
        })
    }
}

impl Onboarding {
    /// Fails when events after `resume` may have been deleted: a resumed stream never has a silent gap.
    async fn check_resumable(&self, resume: Option<ResumeToken>) -> Result<(), Error> {
        let Some(ResumeToken(seq)) = resume else {
            return Ok(());
        };
        let horizon = self
            .store
            .log_horizon()
            .await
            .map_err(|e| store_failed(e, CallKind::Read))?;
        if seq < horizon {
            return Err(Error::new(
                ErrorKind::FailedPrecondition,
                Reason::ResumeTokenExpired,
            ));
        }
        Ok(())
    }

    /// `WatchApplications`: every application's changes in sequence (commit) order, from now or after
    /// `resume`. Ends only when the gateway stops.
    pub async fn watch_all(
        self: &Arc<Self>,
        resume: Option<ResumeToken>,
    ) -> Result<impl Stream<Item = Result<WatchItem, Error>> + Send + 'static, Error> {
        self.check_resumable(resume).await?;
        let this = self.clone();
        let mut subscription = self.watchers.subscribe_all();
        // Read after subscribing, so nothing recorded from here on can be missed.
        let mut cursor = match resume {
            Some(ResumeToken(seq)) => seq,
            None => self
                .store
                .last_seq()
                .await
                .map_err(|e| store_failed(e, CallKind::Read))?,
        };
        Ok(async_stream::try_stream! {
            loop {
                let remembered = this.recent.after_seq(cursor, BATCH);
                let from_memory = !remembered.is_empty();
                let events = if from_memory {
                    remembered
                } else {
                    this.store
                        .all_events_after(cursor, BATCH)
                        .await
                        .map_err(|e| store_failed(e, CallKind::Read))?
                };
                let full_batch = events.len() == BATCH;
                for event in events {
                    cursor = event.seq;
                    yield WatchItem {
                        event: WatchEvent::Change(event.application),
                        token: ResumeToken(cursor),
                    };
                }
                // Memory holds only unbroken runs: whatever was announced beyond is read again.
                if full_batch || (from_memory && subscription.latest() > cursor) {
                    continue;
                }
                let woken = tokio::select! {
                    () = subscription.changed() => Wake::Grew,
                    () = tokio::time::sleep(this.settings.heartbeat_interval) => Wake::Idle,
                    () = this.stopping.cancelled() => Wake::Stopping,
                };
                match woken {
                    Wake::Grew => {}
                    Wake::Idle => yield WatchItem {
                        event: WatchEvent::Heartbeat(SystemTime::now()),
                        token: ResumeToken(cursor),
                    },
                    Wake::Stopping => Err(Error::new(ErrorKind::Unavailable, Reason::ShuttingDown))?,
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_strangers_are_refused() {
        for seq in [0, 1, 42, u64::MAX] {
            let token = ResumeToken(seq);
            assert_eq!(ResumeToken::decode(&token.encode()).unwrap(), token);
        }
        for bad in [
            "",
            "abc",
            "dzEu",
            &URL_SAFE_NO_PAD.encode("w1.-1"),
            &URL_SAFE_NO_PAD.encode("x1.5"),
        ] {
            let e = ResumeToken::decode(bad).unwrap_err();
            assert_eq!(e.field_violations()[0].field, "resume_token", "{bad}");
        }
    }
}
