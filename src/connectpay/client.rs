//! One async fn per ConnectPay endpoint.

use http::Method;
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use secrecy::ExposeSecret;

use super::{
    Endpoint, UpstreamError,
    retry::CallKind,
    transformers,
    transport::{Call, Transport},
    wire::{ApplicationAnswer, ApplicationFields, SubmitIdvRequest},
};
use crate::{
    config::PathsConfig,
    domain::{ApplicationId, Deadline, Observation, PersonalKyc, submission::IdvSubmission},
};

/// Characters escaped in a path segment: everything outside RFC 3986's unreserved set would do, but ids are
/// UUIDs in practice, so this mainly guards against `/`, `?` and `#` in hostile input.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}');

/// The version-2 personal application is selected by media type.
const KYC_V2: &str = "application/json;version=2";

pub struct ConnectPayClient {
    transport: Transport,
    paths: PathsConfig,
    notification_url: String,
}

/// What ConnectPay answered about one application.
#[derive(Debug, Clone)]
pub struct Reported {
    pub application_id: Option<ApplicationId>,
    pub observation: Observation,
}

impl ConnectPayClient {
    pub fn new(transport: Transport, paths: PathsConfig, notification_url: String) -> Self {
        ConnectPayClient {
            transport,
            paths,
            notification_url,
        }
    }

    pub fn breaker_state(&self) -> super::BreakerState {
        self.transport.breaker_state()
    }

    fn path(template: &str, placeholder: &str, value: &str) -> String {
        // Borrowed when nothing needed escaping, as with ConnectPay's UUIDs: no formatting per request.
        let encoded: std::borrow::Cow<'_, str> = utf8_percent_encode(value, SEGMENT).into();
        template.replace(placeholder, &encoded)
    }

    /// Step 1: hands the IDV session to ConnectPay. A `Submit`: never repeated once it may have arrived.
    pub async fn submit_idv_session(
        &self,
        submission: &IdvSubmission,
        deadline: Deadline,
    ) -> Result<Reported, UpstreamError> {
        let body = serde_json::to_value(SubmitIdvRequest {
            external_reference: &submission.external_reference,
            session_id: submission.session_id.expose_secret(),
            provider_id: &submission.provider_id,
            notification_url: &self.notification_url,
        })
        .map_err(|_| UpstreamError::BadResponse)?;
        let call = Call {
            endpoint: Endpoint::SubmitIdv,
            method: Method::POST,
            path: self.paths.submit_idv.clone(),
            kind: CallKind::Submit,
            json: Some(&body),
            accept: None,
        };
        let fields = self.application_call(&call, deadline).await?;
        let reported = reported(fields)?;
        // Without an id the application cannot be followed: the answer is useless even though it succeeded.
        if reported.application_id.is_none() {
            return Err(UpstreamError::BadResponse);
        }
        Ok(reported)
    }

    /// Step 3 (polling form): the application's current status.
    pub async fn get_application(
        &self,
        id: &ApplicationId,
        deadline: Deadline,
    ) -> Result<Reported, UpstreamError> {
        let call = Call {
            endpoint: Endpoint::GetApplication,
            method: Method::GET,
            path: Self::path(&self.paths.get_application, "{applicationId}", id.as_str()),
            kind: CallKind::Read,
            json: None,
            accept: None,
        };
        reported(self.application_call(&call, deadline).await?)
    }

    /// The IDV stage's own status, by ConnectPay's person id.
    pub async fn get_idv_status(
        &self,
        person_id: &str,
        deadline: Deadline,
    ) -> Result<Reported, UpstreamError> {
        let call = Call {
            endpoint: Endpoint::GetIdv,
            method: Method::GET,
            path: Self::path(&self.paths.get_idv, "{personId}", person_id),
            kind: CallKind::Read,
            json: None,
            accept: None,
        };
        reported(self.application_call(&call, deadline).await?)
    }

    /// Step 5: the full KYC data. The body is built (and checked) before anything is sent.
    pub async fn initiate_application(
        &self,
        id: &ApplicationId,
        person_id: &str,
        kyc: &PersonalKyc,
        deadline: Deadline,
    ) -> Result<Reported, UpstreamError> {
        let body = transformers::kyc_body(person_id, kyc).map_err(UpstreamError::Invalid)?;
        let call = Call {
            endpoint: Endpoint::InitiateApplication,
            method: Method::POST,
            path: Self::path(
                &self.paths.initiate_application,
                "{applicationId}",
                id.as_str(),
            ),
            kind: CallKind::Submit,
            json: Some(&body),
            accept: Some(KYC_V2),
        };
        reported(self.application_call(&call, deadline).await?)
    }

    async fn application_call(
        &self,
        call: &Call<'_>,
        deadline: Deadline,
    ) -> Result<ApplicationFields, UpstreamError> {
        let answer = self.transport.execute(call, deadline).await?;
        let parsed: ApplicationAnswer =
            serde_json::from_slice(&answer.body).map_err(|_| UpstreamError::BadResponse)?;
        Ok(parsed.merged())
    }
}

fn reported(fields: ApplicationFields) -> Result<Reported, UpstreamError> {
    let observation = transformers::observation(&fields).ok_or(UpstreamError::BadResponse)?;
    Ok(Reported {
        application_id: transformers::application_id(&fields),
        observation,
    })
}
