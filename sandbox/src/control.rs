//! The control interface under `/_sandbox/`: plain JSON routes over the operations that the
//! in-process [`crate::Sandbox`] handle also offers.

use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, Path, RawQuery, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use http::StatusCode;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::ControlError;
use crate::faults::{Fault, FaultRates};
use crate::mode::{Mode, ModeUpdate};
use crate::pipeline::BODY_LIMIT;
use crate::recorder::{Endpoint, RecordedRequest, Stats};
use crate::shared::{Shared, lock};
use crate::state::SetStatus;
use crate::webhooks::{DeliveryLogEntry, Release, ReleaseOrder, Released, WebhookDelivery};

/// Answer of `GET /_sandbox/health`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub ok: bool,
}

/// `duplicate` above this is refused: it multiplies every webhook.
const MAX_DUPLICATE: u32 = 100;

impl Shared {
    pub(crate) fn stats(&self) -> Stats {
        self.counters.snapshot()
    }

    pub(crate) fn mode(&self) -> Mode {
        lock(&self.world).mode
    }

    pub(crate) fn set_mode(&self, update: ModeUpdate) -> Mode {
        let mut world = lock(&self.world);
        world.mode.apply(&update);
        world.mode
    }

    pub(crate) fn add_fault(&self, fault: Fault) -> Result<(), ControlError> {
        fault.validate()?;
        lock(&self.world).faults.add(fault);
        Ok(())
    }

    pub(crate) fn set_fault_rates(&self, rates: FaultRates) -> Result<(), ControlError> {
        rates.validate()?;
        lock(&self.world).faults.rates = rates;
        Ok(())
    }

    pub(crate) fn clear_faults(&self) {
        lock(&self.world).faults.clear();
    }

    pub(crate) fn set_webhook_delivery(
        &self,
        delivery: WebhookDelivery,
    ) -> Result<(), ControlError> {
        if delivery.duplicate > MAX_DUPLICATE {
            return Err(ControlError::bad_request(format!(
                "duplicate must be at most {MAX_DUPLICATE}"
            )));
        }
        lock(&self.world).outbox.configure(delivery);
        Ok(())
    }

    pub(crate) fn release_webhooks(self: &Arc<Self>, order: ReleaseOrder) -> Released {
        let dispatch = lock(&self.world).outbox.release(order);
        let released = dispatch.deliver.len();
        self.dispatch(dispatch);
        Released { released }
    }

    pub(crate) fn webhook_log(&self) -> Vec<DeliveryLogEntry> {
        self.deliveries.list()
    }
}

pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/health", get(|| async { Json(Health { ok: true }) }))
        .route(
            "/stats",
            get(|State(s): State<Arc<Shared>>| async move { Json(s.stats()) }),
        )
        .route("/requests", get(requests).delete(clear_requests))
        .route(
            "/auth-codes",
            post(|State(s): State<Arc<Shared>>| async move { Json(s.mint_auth_code()) }),
        )
        .route("/tokens/expire-access", post(expire_access_tokens))
        .route("/applications/{id}", get(application))
        .route("/applications/{id}/status", post(set_status))
        .route(
            "/mode",
            get(|State(s): State<Arc<Shared>>| async move { Json(s.mode()) }).put(set_mode),
        )
        .route("/faults", post(add_fault).delete(clear_faults))
        .route("/fault-rates", put(set_fault_rates))
        .route("/webhooks", get(webhook_log).put(set_webhooks))
        .route("/webhooks/release", post(release_webhooks))
}

async fn requests(
    State(shared): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
) -> Result<Json<Vec<RecordedRequest>>, ControlError> {
    let mut endpoint = None;
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        if key == "endpoint" {
            endpoint = Some(
                value
                    .parse::<Endpoint>()
                    .map_err(ControlError::BadRequest)?,
            );
        }
    }
    Ok(Json(shared.requests.list(endpoint)))
}

async fn clear_requests(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.requests.clear();
    StatusCode::NO_CONTENT
}

async fn expire_access_tokens(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.expire_access_tokens();
    StatusCode::NO_CONTENT
}

async fn application(
    State(shared): State<Arc<Shared>>,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    let found = application_id(id).and_then(|id| {
        shared
            .application(id)
            .ok_or_else(|| ControlError::NotFound(format!("no application {id}")))
    });
    found.map(Json).into_response()
}

async fn set_status(
    State(shared): State<Arc<Shared>>,
    id: Result<Path<String>, PathRejection>,
    JsonBody(request): JsonBody<SetStatus>,
) -> Response {
    application_id(id)
        .and_then(|id| shared.set_status(id, request))
        .map(Json)
        .into_response()
}

async fn set_mode(
    State(shared): State<Arc<Shared>>,
    JsonBody(update): JsonBody<ModeUpdate>,
) -> Json<Mode> {
    Json(shared.set_mode(update))
}

async fn add_fault(
    State(shared): State<Arc<Shared>>,
    JsonBody(fault): JsonBody<Fault>,
) -> Result<StatusCode, ControlError> {
    shared.add_fault(fault).map(|()| StatusCode::NO_CONTENT)
}

async fn clear_faults(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.clear_faults();
    StatusCode::NO_CONTENT
}

async fn set_fault_rates(
    State(shared): State<Arc<Shared>>,
    JsonBody(rates): JsonBody<FaultRates>,
) -> Result<StatusCode, ControlError> {
    shared
        .set_fault_rates(rates)
        .map(|()| StatusCode::NO_CONTENT)
}

async fn set_webhooks(
    State(shared): State<Arc<Shared>>,
    JsonBody(delivery): JsonBody<WebhookDelivery>,
) -> Result<StatusCode, ControlError> {
    shared
        .set_webhook_delivery(delivery)
        .map(|()| StatusCode::NO_CONTENT)
}

async fn release_webhooks(
    State(shared): State<Arc<Shared>>,
    JsonBody(release): JsonBody<Release>,
) -> Json<Released> {
    Json(shared.release_webhooks(release.order))
}

async fn webhook_log(State(shared): State<Arc<Shared>>) -> Json<Vec<DeliveryLogEntry>> {
    Json(shared.webhook_log())
}

/// An id that is not a UUID names no application.
fn application_id(id: Result<Path<String>, PathRejection>) -> Result<Uuid, ControlError> {
    let Ok(Path(id)) = id else {
        return Err(ControlError::NotFound("no such application".into()));
    };
    Uuid::parse_str(&id).map_err(|_| ControlError::NotFound(format!("no application {id}")))
}

/// A JSON body whose rejection is a JSON `400` (axum's own `Json` rejects in plain text). An
/// empty body reads as `{}`, so operations whose fields all have defaults need none.
struct JsonBody<T>(T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ControlError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let body = axum::body::to_bytes(request.into_body(), BODY_LIMIT)
            .await
            .map_err(|_| ControlError::bad_request("the body could not be read"))?;
        let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &body
        };
        serde_json::from_slice(body)
            .map(JsonBody)
            .map_err(|e| ControlError::bad_request(format!("invalid body: {e}")))
    }
}
