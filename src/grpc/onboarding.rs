//! The `Onboarding` service: one thin function per RPC — convert, call the use case, convert back.

use std::{pin::Pin, sync::Arc};

use futures::{Stream, StreamExt};
use secrecy::SecretString;
use tonic::{Request, Response, Status};

use super::{convert, pb, status::to_status};
use crate::{
    domain::{
        Error,
        error::ErrorKind,
        kyc::KycInput,
        submission::{IdvSubmission, MAX_REFERENCE_LEN, id_problem},
    },
    service::{ApplicationKey, Call, Onboarding, ResumeToken},
};

pub struct OnboardingApi {
    service: Arc<Onboarding>,
}

impl OnboardingApi {
    pub fn new(service: Arc<Onboarding>) -> Self {
        OnboardingApi { service }
    }
}

/// Turns a use case's error into a status, logging what operators need (reason and code, never values).
fn reply<T>(rpc: &'static str, result: Result<T, Error>) -> Result<T, Status> {
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

fn application(app: &crate::domain::Application) -> Option<pb::Application> {
    Some(app.into())
}

/// Callers are not authenticated yet: they all share one identity (and one idempotency-key space).
fn call<T>(request: &Request<T>) -> Call {
    Call {
        caller: "anonymous".into(),
        deadline: convert::deadline(request.metadata()),
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
        let submission = reply(
            RPC,
            IdvSubmission::new(
                r.external_reference,
                SecretString::from(r.session_id),
                r.provider_id,
                r.request_id,
                self.service.providers(),
            ),
        )?;
        let app = reply(
            RPC,
            self.service.submit_idv_session(&call, submission).await,
        )?;
        Ok(Response::new(pb::SubmitIdvSessionResponse {
            application: application(&app),
        }))
    }

    async fn get_application(
        &self,
        request: Request<pb::GetApplicationRequest>,
    ) -> Result<Response<pb::GetApplicationResponse>, Status> {
        const RPC: &str = "GetApplication";
        let call = call(&request);
        let key = reply(RPC, ApplicationKey::try_from(request.into_inner().key))?;
        let app = reply(RPC, self.service.get_application(&call, key).await)?;
        Ok(Response::new(pb::GetApplicationResponse {
            application: application(&app),
        }))
    }

    async fn initiate_onboarding(
        &self,
        request: Request<pb::InitiateOnboardingRequest>,
    ) -> Result<Response<pb::InitiateOnboardingResponse>, Status> {
        const RPC: &str = "InitiateOnboarding";
        let call = call(&request);
        let r = request.into_inner();
        let id = reply(
            RPC,
            convert::application_id(&r.application_id, "application_id"),
        )?;
        if let Some(problem) = (!r.request_id.is_empty())
            .then(|| id_problem(&r.request_id, MAX_REFERENCE_LEN))
            .flatten()
        {
            return reply(RPC, Err(Error::invalid_field("request_id", problem)));
        }
        let kyc = reply(
            RPC,
            r.kyc
                .ok_or_else(|| convert::required("kyc"))
                .and_then(KycInput::try_from)
                .and_then(|input| input.validate("kyc")),
        )?;
        let request_id = (!r.request_id.is_empty()).then_some(r.request_id.as_str());
        let app = reply(
            RPC,
            self.service
                .initiate_onboarding(&call, id, request_id, kyc)
                .await,
        )?;
        Ok(Response::new(pb::InitiateOnboardingResponse {
            application: application(&app),
        }))
    }

    type WatchApplicationStream =
        Pin<Box<dyn Stream<Item = Result<pb::WatchApplicationResponse, Status>> + Send>>;

    async fn watch_application(
        &self,
        request: Request<pb::WatchApplicationRequest>,
    ) -> Result<Response<Self::WatchApplicationStream>, Status> {
        const RPC: &str = "WatchApplication";
        let r = request.into_inner();
        let key = reply(RPC, ApplicationKey::try_from(r.key))?;
        let resume = match r.resume_token.as_str() {
            "" => None,
            token => Some(reply(RPC, ResumeToken::decode(token))?),
        };
        let stream = reply(RPC, self.service.watch(key, resume).await)?;
        let stream = stream.map(|item| reply(RPC, item.map(pb::WatchApplicationResponse::from)));
        Ok(Response::new(Box::pin(stream)))
    }

    type WatchApplicationsStream =
        Pin<Box<dyn Stream<Item = Result<pb::WatchApplicationsResponse, Status>> + Send>>;

    async fn watch_applications(
        &self,
        request: Request<pb::WatchApplicationsRequest>,
    ) -> Result<Response<Self::WatchApplicationsStream>, Status> {
        const RPC: &str = "WatchApplications";
        let resume = match request.into_inner().resume_token.as_str() {
            "" => None,
            token => Some(reply(RPC, ResumeToken::decode(token))?),
        };
        let stream = reply(RPC, self.service.watch_all(resume).await)?;
        let stream = stream.map(|item| reply(RPC, item.map(pb::WatchApplicationsResponse::from)));
        Ok(Response::new(Box::pin(stream)))
    }
}
