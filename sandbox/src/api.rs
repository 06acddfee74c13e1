//! The ConnectPay onboarding endpoints (the token endpoint is in `oauth`).

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, StatusCode, header};
use serde_json::Value;
use uuid::Uuid;

use crate::error::{ApiError, FieldError};
use crate::mode::{IdvStage, Responses, Statuses};
use crate::pipeline::{self, Call};
use crate::recorder::Endpoint;
use crate::script;
use crate::shared::{Shared, lock};
use crate::state::{Application, BaasClientId, NewApplication, World};
use crate::status::Status;
use crate::validate;
use crate::webhooks::Dispatch;
use crate::wire::{self, IdvAnswer, KycAnswer};

/// `POST /baas/onboarding/personal/idv/external`
pub(crate) async fn submit_idv(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (call, body) = Call::read(Endpoint::SubmitIdv, request).await;
    let json = body.and_then(|body| parse_json(&body));
    let work = |_| async { respond(submit(&shared, &call.headers, &json)) };
    pipeline::serve(&shared, &call, json.clone().ok(), None, work).await
}

fn submit(
    shared: &Arc<Shared>,
    headers: &HeaderMap,
    json: &Result<Value, ApiError>,
) -> Result<Response, ApiError> {
    shared.authorize(headers)?;
    require_json(headers)?;
    let body = json.as_ref().map_err(Clone::clone)?;
    let request =
        validate::submit_idv(body, &shared.config.providers).map_err(ApiError::validation)?;
    let steps = script::idv_steps(
        &request.session_id,
        Duration::from_millis(shared.config.idv_delay_ms),
    );
    let mut world = lock(&shared.world);
    let application = world.create(NewApplication {
        external_reference: request.external_reference,
        session_id: request.session_id,
        provider_id: request.provider_id,
        notification_url: request.notification_url,
    });
    let (id, person_id) = (application.id, application.person_id);
    shared.schedule(&mut world, id, steps);
    let answer = wire::submit_idv_answer(
        world.mode.responses,
        id,
        person_id,
        &Status::IdvTokenGenerated,
    );
    Ok(Json(answer).into_response())
}

/// `GET /baas/onboarding/personal/applications/{applicationId}`
pub(crate) async fn get_application(
    State(shared): State<Arc<Shared>>,
    path: Result<Path<String>, PathRejection>,
    request: Request,
) -> Response {
    let (call, _) = Call::read(Endpoint::GetApplication, request).await;
    let id = path_uuid(path);
    let work = |stale| async { respond(application(&shared, &call.headers, id, stale)) };
    pipeline::serve(&shared, &call, None, id, work).await
}

fn application(
    shared: &Shared,
    headers: &HeaderMap,
    id: Option<Uuid>,
    stale: Option<Status>,
) -> Result<Response, ApiError> {
    shared.authorize(headers)?;
    let world = lock(&shared.world);
    let application = id
        .and_then(|id| world.applications.get(&id))
        // In `separate` mode the IDV stage is only visible through the IDV GET.
        .filter(|a| !(world.mode.idv_stage == IdvStage::Separate && a.status.is_idv_stage()))
        .ok_or_else(|| ApiError::not_found("no such application"))?;
    let mut body = application.body();
    if let Some(stale) = &stale {
        body.status = stale;
    }
    Ok(Json(wire::shaped(world.mode.responses, body)).into_response())
}

/// `GET /baas/onboarding/personal/idv/{personId}`
pub(crate) async fn get_idv(
    State(shared): State<Arc<Shared>>,
    path: Result<Path<String>, PathRejection>,
    request: Request,
) -> Response {
    let (call, _) = Call::read(Endpoint::GetIdv, request).await;
    let person_id = path_uuid(path);
    let application_id = person_id.and_then(|p| lock(&shared.world).people.get(&p).copied());
    let work = |stale| async { respond(idv(&shared, &call.headers, person_id, stale)) };
    pipeline::serve(&shared, &call, None, application_id, work).await
}

fn idv(
    shared: &Shared,
    headers: &HeaderMap,
    person_id: Option<Uuid>,
    stale: Option<Status>,
) -> Result<Response, ApiError> {
    shared.authorize(headers)?;
    let world = lock(&shared.world);
    let application = person_id
        .and_then(|p| world.by_person(p))
        .ok_or_else(|| ApiError::not_found("no such person"))?;
    Ok(Json(IdvAnswer {
        person_id: application.person_id,
        status: stale.as_ref().unwrap_or(&application.idv_status),
        application_id: application.id,
    })
    .into_response())
}

/// `POST /baas/onboarding/personal/applications/{applicationId}/kyc`
pub(crate) async fn initiate_application(
    State(shared): State<Arc<Shared>>,
    path: Result<Path<String>, PathRejection>,
    request: Request,
) -> Response {
    let (call, body) = Call::read(Endpoint::InitiateApplication, request).await;
    let id = path_uuid(path);
    let json = body.and_then(|body| parse_json(&body));
    let work = |_| async { respond(initiate(&shared, &call.headers, id, &json)) };
    pipeline::serve(&shared, &call, json.clone().ok(), id, work).await
}

/// The checks run in the README's order: version, media type, application, `person.Id`, the
/// v2 constraints, then the state.
fn initiate(
    shared: &Arc<Shared>,
    headers: &HeaderMap,
    id: Option<Uuid>,
    json: &Result<Value, ApiError>,
) -> Result<Response, ApiError> {
    shared.authorize(headers)?;
    if !accepts_version_2(headers) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "UNSUPPORTED_VERSION",
            "Accept: application/json;version=2 is required",
        ));
    }
    require_json(headers)?;
    let not_found = || ApiError::not_found("no such application");
    let id = id.ok_or_else(not_found)?;
    let mut world = lock(&shared.world);
    let application = world.applications.get(&id).ok_or_else(not_found)?;
    let body = json.as_ref().map_err(Clone::clone)?;
    check_kyc(application, body)?;

    let mode = world.mode;
    let (answer, steps) = script::kyc_steps(
        validate::city(body),
        mode.statuses,
        Duration::from_millis(shared.config.review_delay_ms),
    );
    let dispatch = accept_kyc(&mut world, id, body, answer.clone());
    shared.schedule(&mut world, id, steps);
    drop(world);
    shared.dispatch(dispatch);

    let answer = KycAnswer {
        application_id: id,
        status: &answer,
    };
    // The legacy example of this answer is unwrapped even where other answers are wrapped.
    let wrapped = mode.responses == Responses::Wrapped && mode.statuses == Statuses::Newer;
    let responses = if wrapped {
        Responses::Wrapped
    } else {
        Responses::Unwrapped
    };
    Ok(Json(wire::shaped(responses, answer)).into_response())
}

fn check_kyc(application: &Application, body: &Value) -> Result<(), ApiError> {
    let person_matches = validate::person_id(body)
        .is_some_and(|given| given.eq_ignore_ascii_case(&application.person_id.to_string()));
    if !person_matches {
        return Err(ApiError::validation(vec![FieldError::new(
            "person.Id",
            "must be the personId of the application",
        )]));
    }
    let errors = validate::kyc_v2(body);
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    if application.status != Status::IdvApproved || application.kyc.is_some() {
        return Err(ApiError::invalid_state(format!(
            "KYC data needs an application in IDV_APPROVED not yet submitted; this one is {}",
            application.status
        )));
    }
    Ok(())
}

fn accept_kyc(world: &mut World, id: Uuid, body: &Value, answer: Status) -> Dispatch {
    if let Some(application) = world.applications.get_mut(&id) {
        application.kyc = Some(body.clone());
    }
    world.change_status(id, answer, BaasClientId::Keep)
}

fn respond(result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(IntoResponse::into_response)
}

/// A path id that is not a UUID names no application: `404`, like any unknown id.
fn path_uuid(path: Result<Path<String>, PathRejection>) -> Option<Uuid> {
    path.ok().and_then(|Path(id)| Uuid::parse_str(&id).ok())
}

fn parse_json(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::malformed(format!("the body is not valid JSON: {e}")))
}

fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if is_json {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            "Content-Type: application/json is required",
        ))
    }
}

/// Whether any media range of `Accept` is `application/json` with `version=2`.
fn accepts_version_2(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|range| {
            let mut parts = range.split(';').map(str::trim);
            let json = parts
                .next()
                .is_some_and(|t| t.eq_ignore_ascii_case("application/json"));
            json && parts.any(|param| {
                param.split_once('=').is_some_and(|(k, v)| {
                    k.trim().eq_ignore_ascii_case("version") && v.trim().trim_matches('"') == "2"
                })
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, value.parse().unwrap());
        headers
    }

    #[test]
    fn version_2_accept_header() {
        assert!(accepts_version_2(&accept("application/json;version=2")));
        assert!(accepts_version_2(&accept(
            "text/plain, Application/JSON; Version=\"2\""
        )));
        assert!(!accepts_version_2(&accept("application/json")));
        assert!(!accepts_version_2(&accept("application/json;version=1")));
        assert!(!accepts_version_2(&HeaderMap::new()));
    }
}
