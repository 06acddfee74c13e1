//! AIP-155 request ids for the submitting RPCs.
//!
//! Per caller and method: the same key with the same request gets the first definite outcome again without
//! calling ConnectPay; with a different request, `INVALID_ARGUMENT`; while the first attempt still runs,
//! `ABORTED` with a retry delay. An outcome that is unknown (the upstream call may or may not have happened)
//! is never replayed: the next attempt first finds out what happened, and acts only if nothing did.

use std::{future::Future, time::Duration};

use super::{Call, Onboarding, store_failed};
use crate::{
    connectpay::CallKind,
    domain::{
        Application, Error,
        error::{Detail, ErrorKind, Reason},
    },
    store::{Begin, RequestKey, StoredOutcome},
};

/// An attempt still marked in progress after this long is taken to have died with its process.
const IN_PROGRESS_STALE_AFTER: Duration = Duration::from_secs(120);
/// What a caller racing its own earlier attempt is told to wait.
const RETRY_IN_PROGRESS_AFTER: Duration = Duration::from_secs(1);

pub(super) struct Idempotent {
    key: Option<RequestKey>,
    fingerprint: Vec<u8>,
}

impl Idempotent {
    pub(super) fn new(
        call: &Call,
        method: &'static str,
        request_id: Option<&str>,
        fingerprint: Vec<u8>,
    ) -> Self {
        Idempotent {
            key: request_id.map(|id| RequestKey {
                caller: call.caller.clone(),
                method,
                request_id: id.to_owned(),
            }),
            fingerprint,
        }
    }
}

/// Whether an error settles the request (replayed to later attempts) or leaves it open.
fn definite(error: &Error) -> bool {
    matches!(
        error.kind,
        ErrorKind::InvalidArgument | ErrorKind::FailedPrecondition | ErrorKind::NotFound
    )
}

impl Onboarding {
    /// Runs `act` under the request's key, where acting again is always safe to decide by `act` itself.
    pub(super) async fn idempotently<F, Fut>(
        &self,
        request: Idempotent,
        act: F,
    ) -> Result<Application, Error>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Application, Error>>,
    {
        self.idempotently_reconciled(request, || async { Ok(None) }, act)
            .await
    }

    /// Like [`Onboarding::idempotently`], with `reconcile` to find out, after an unknown outcome, whether
    /// the earlier attempt took effect (`Some`: its result).
    pub(super) async fn idempotently_reconciled<R, RFut, F, Fut>(
        &self,
        request: Idempotent,
        reconcile: R,
        act: F,
    ) -> Result<Application, Error>
    where
        R: FnOnce() -> RFut,
        RFut: Future<Output = Result<Option<Application>, Error>>,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Application, Error>>,
    {
        let Some(key) = request.key else {
            return act().await;
        };
        let begin = self
            .store
            .begin_request(
                &key,
                &request.fingerprint,
                &self.instance,
                IN_PROGRESS_STALE_AFTER,
            )
            .await
            .map_err(|e| store_failed(e, CallKind::Read))?;
        let result = match begin {
            Begin::Done(StoredOutcome::Application(app)) => return Ok(app),
            Begin::Done(StoredOutcome::Error(e)) => return Err(e),
            Begin::Mismatch => {
                return Err(
                    Error::new(ErrorKind::InvalidArgument, Reason::IdempotencyKeyReused)
                        .with_detail(Detail::Fields(vec![crate::domain::FieldViolation::new(
                            "request_id",
                            "was already used for a different request",
                        )])),
                );
            }
            Begin::InProgress => {
                return Err(Error::new(ErrorKind::Aborted, Reason::RequestInProgress)
                    .with_detail(Detail::RetryAfter(RETRY_IN_PROGRESS_AFTER)));
            }
            Begin::Reconcile => match reconcile().await {
                Ok(Some(settled)) => Ok(settled),
                Ok(None) => act().await,
                Err(e) => Err(e),
            },
            Begin::Proceed => act().await,
        };
        let outcome = match &result {
            Ok(app) => Some(StoredOutcome::Application(app.clone())),
            Err(e) if definite(e) => Some(StoredOutcome::Error(e.clone())),
            Err(_) => None,
        };
        if let Err(e) = self.store.finish_request(&key, outcome.as_ref()).await {
            // The attempt stays "in progress" until it goes stale; a retry then reconciles.
            tracing::warn!(error = %e, "could not record an idempotent request's outcome");
        }
        result
    }
}
