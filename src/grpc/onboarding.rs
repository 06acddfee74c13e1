//! The `Onboarding` service: one thin function per RPC — convert, call the use case, convert back — and
//! one audit record per call.

use std::{pin::Pin, sync::Arc};

use futures::{Stream, StreamExt};
use secrecy::SecretString;
use tonic::{Request, Response, Status};

use super::{admission::Caller, convert, pb, status::to_status};
use crate::{
    domain::{
        Application, Error,
        error::ErrorKind,
        kyc::KycInput,
        submission::{IdvSubmission, MAX_REFERENCE_LEN, id_problem},
    },
    service::{ApplicationKey, Call, Onboarding, ResumeToken},
    telemetry::AUDIT_TARGET,
};

pub struct OnboardingApi {
    service: Arc<Onboarding>,
}

impl OnboardingApi {
    pub fn new(service: Arc<Onboarding>) -> Self {
        OnboardingApi { service }
    }
}

/// Who calls (authentication, when configured, says so in an extension) and until when they wait.
fn call<T>(request: &Request<T>) -> Call {
    Call {
        caller: request
            .extensions()
            .get::<Caller>()
            .map_or_else(|| super::auth::ANONYMOUS.to_owned(), |c| c.0.clone()),
        deadline: convert::deadline(request.metadata()),
    }
}

/// Ends a call: one audit record (who, which RPC, which application, how it ended — never a value the
/// caller sent), an operator's log line for failures, and the status for the caller.
fn finish<T>(
    call: &Call,
    rpc: &'static str,
    application_id: Option<&str>,
    result: Result<T, Error>,
) -> Result<T, Status> {
    let (outcome, reason) = match &result {
        Ok(_) => ("OK", ""),
        Err(e) => (super::status::code_name(e.kind), e.reason.as_str()),
    };
    tracing::info!(
        target: AUDIT_TARGET,
        caller = %call.caller,
        rpc,
        application_id = application_id.unwrap_or(""),
        outcome,
        reason,
        "audit"
    );
    result.map_err(|e| {
        match e.kind {
            ErrorKind::Internal | ErrorKind::Unknown => {
                tracing::warn!(rpc, reason = %e.reason, "call failed")
            }
            _ => tracing::debug!(rpc, reason = %e.reason, "call refused"),
        }
        to_status(&e)
    })
}

fn reply(app: &Application) -> Option<pb::Application> {
    Some(app.into())
}

/// The application a key names, for the audit record (by reference: unknown until resolved).
fn named(key: &ApplicationKey) -> Option<&str> {
    match key {
        ApplicationKey::Id(id) => Some(id.as_str()),
        ApplicationKey::ExternalReference(_) => None,
    }
}

#[tonic::async_trait]
impl pb::onboarding_server::Onboarding for OnboardingApi {
    async fn submit_idv_session(
        &self,
        request: Request<pb::SubmitIdvSessionRequest>,
    ) -> Result<Response<pb::SubmitIdvSessionResponse>, Status> {
        const RPC: &str = "SubmitIdvSession";
        let call = call(&request);
        let r = request.into_inner();
        let submission = IdvSubmission::new(
            r.external_reference,
            SecretString::from(r.session_id),
            r.provider_id,
            r.request_id,
            self.service.providers(),
        );
        let result = match submission {
            Ok(submission) => self.service.submit_idv_session(&call, submission).await,
            Err(e) => Err(e),
        };
        let id = result.as_ref().ok().map(|app| app.id.to_string());
        let app = finish(&call, RPC, id.as_deref(), result)?;
        Ok(Response::new(pb::SubmitIdvSessionResponse {
            application: reply(&app),
        }))
    }

    async fn get_application(
        &self,
        request: Request<pb::GetApplicationRequest>,
    ) -> Result<Response<pb::GetApplicationResponse>, Status> {
        const RPC: &str = "GetApplication";
        let call = call(&request);
        let key = match ApplicationKey::try_from(request.into_inner().key) {
            Ok(key) => key,
            Err(e) => return finish(&call, RPC, None, Err(e)),
        };
        let result = self.service.get_application(&call, key.clone()).await;
        let id = result.as_ref().ok().map(|app| app.id.to_string());
        let app = finish(&call, RPC, id.as_deref().or(named(&key)), result)?;
        Ok(Response::new(pb::GetApplicationResponse {
            application: reply(&app),
        }))
    }

    async fn initiate_onboarding(
        &self,
        request: Request<pb::InitiateOnboardingRequest>,
    ) -> Result<Response<pb::InitiateOnboardingResponse>, Status> {
        const RPC: &str = "InitiateOnboarding";
        let call = call(&request);
        let r = request.into_inner();
        let named_id = (!r.application_id.is_empty()).then(|| r.application_id.clone());
        let checked = (|| {
            let id = convert::application_id(&r.application_id, "application_id")?;
            if let Some(problem) = (!r.request_id.is_empty())
                .then(|| id_problem(&r.request_id, MAX_REFERENCE_LEN))
                .flatten()
            {
                return Err(Error::invalid_field("request_id", problem));
            }
            let kyc = r
                .kyc
                .ok_or_else(|| convert::required("kyc"))
                .and_then(KycInput::try_from)
                .and_then(|input| input.validate("kyc"))?;
            Ok((id, kyc))
        })();
        let result = match checked {
            Ok((id, kyc)) => {
                let request_id = (!r.request_id.is_empty()).then_some(r.request_id.as_str());
                self.service
                    .initiate_onboarding(&call, id, request_id, kyc)
                    .await
            }
            Err(e) => Err(e),
        };
        let app = finish(&call, RPC, named_id.as_deref(), result)?;
        Ok(Response::new(pb::InitiateOnboardingResponse {
            application: reply(&app),
        }))
    }

    type WatchApplicationStream =
        Pin<Box<dyn Stream<Item = Result<pb::WatchApplicationResponse, Status>> + Send>>;

    async fn watch_application(
        &self,
        request: Request<pb::WatchApplicationRequest>,
    ) -> Result<Response<Self::WatchApplicationStream>, Status> {
        const RPC: &str = "WatchApplication";
        let call = call(&request);
        let r = request.into_inner();
        let opened = async {
            let key = ApplicationKey::try_from(r.key)?;
            let resume = match r.resume_token.as_str() {
                "" => None,
                token => Some(ResumeToken::decode(token)?),
            };
            self.service.watch(&call.caller, key, resume).await
        }
        .await;
        // The audit records the opening; how a stream ends is in the server span and metrics.
        let stream = finish(&call, RPC, None, opened)?;
        let stream = stream.map(|item| {
            item.map(pb::WatchApplicationResponse::from)
                .map_err(|e| to_status(&e))
        });
        Ok(Response::new(Box::pin(stream)))
    }

    type WatchApplicationsStream =
        Pin<Box<dyn Stream<Item = Result<pb::WatchApplicationsResponse, Status>> + Send>>;

    async fn watch_applications(
        &self,
        request: Request<pb::WatchApplicationsRequest>,
    ) -> Result<Response<Self::WatchApplicationsStream>, Status> {
        const RPC: &str = "WatchApplications";
        let call = call(&request);
        let opened = async {
            let resume = match request.into_inner().resume_token.as_str() {
                "" => None,
                token => Some(ResumeToken::decode(token)?),
            };
            self.service.watch_all(resume).await
        }
        .await;
        let stream = finish(&call, RPC, None, opened)?;
        let stream = stream.map(|item| {
            item.map(pb::WatchApplicationsResponse::from)
                .map_err(|e| to_status(&e))
        });
        Ok(Response::new(Box::pin(stream)))
    }
}
