//! The simulated ConnectPay: applications, their status changes and the webhooks those changes
//! produce.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use tokio::task::AbortHandle;
use tracing::debug;
use uuid::Uuid;

use crate::clock;
use crate::error::ControlError;
use crate::faults::Faults;
use crate::mode::Mode;
use crate::oauth::TokenStore;
use crate::shared::{Shared, lock};
use crate::status::Status;
use crate::webhooks::{Dispatch, Notification, Outbox};
use crate::wire::{self, ApplicationBody};

/// Everything that changes while the sandbox runs, behind one mutex.
#[derive(Default)]
pub(crate) struct World {
    pub(crate) applications: HashMap<Uuid, Application>,
    /// `personId` → `applicationId`.
    pub(crate) people: HashMap<Uuid, Uuid>,
    pub(crate) tokens: TokenStore,
    pub(crate) mode: Mode,
    pub(crate) faults: Faults,
    pub(crate) outbox: Outbox,
    /// Source of script ids; see [`Script`].
    pub(crate) next_script: u64,
}

pub(crate) struct Application {
    pub(crate) id: Uuid,
    pub(crate) person_id: Uuid,
    pub(crate) external_reference: String,
    pub(crate) session_id: String,
    pub(crate) provider_id: String,
    pub(crate) notification_url: String,
    pub(crate) status: Status,
    /// The last IDV-stage status reached: what the IDV GET reports.
    pub(crate) idv_status: Status,
    pub(crate) baas_client_id: Option<String>,
    pub(crate) history: Vec<Status>,
    /// The KYC body as received; `Some` once KYC data was accepted.
    pub(crate) kyc: Option<Value>,
    pub(crate) script: Script,
}

/// The application's pending scripted steps. A step only applies while the application's
/// script id is still its own: aborting the task alone is not enough, as a step that already
/// woke up may be waiting for the lock while its script is being replaced.
#[derive(Default)]
pub(crate) struct Script {
    pub(crate) id: u64,
    pub(crate) task: Option<AbortHandle>,
}

/// What the submitted IDV session says about the person.
pub(crate) struct NewApplication {
    pub(crate) external_reference: String,
    pub(crate) session_id: String,
    pub(crate) provider_id: String,
    pub(crate) notification_url: String,
}

/// How a status change treats the `baasClientId`.
pub(crate) enum BaasClientId {
    Keep,
    /// Keep the one the application has, or issue a new UUID.
    Issue,
    Set(Option<String>),
}

impl Application {
    pub(crate) fn body(&self) -> ApplicationBody<'_> {
        ApplicationBody {
            application_id: self.id,
            person_id: self.person_id,
            status: &self.status,
            baas_client_id: self.baas_client_id.as_deref(),
        }
    }
}

impl World {
    pub(crate) fn create(&mut self, new: NewApplication) -> &mut Application {
        let id = Uuid::new_v4();
        let person_id = Uuid::new_v4();
        self.people.insert(person_id, id);
        self.applications.entry(id).or_insert(Application {
            id,
            person_id,
            external_reference: new.external_reference,
            session_id: new.session_id,
            provider_id: new.provider_id,
            notification_url: new.notification_url,
            status: Status::IdvTokenGenerated,
            idv_status: Status::IdvTokenGenerated,
            baas_client_id: None,
            history: vec![Status::IdvTokenGenerated],
            kyc: None,
            script: Script::default(),
        })
    }

    pub(crate) fn by_person(&self, person_id: Uuid) -> Option<&Application> {
        self.applications.get(self.people.get(&person_id)?)
    }

    /// Moves an application to `status` and routes the webhook announcing it. Every change is
    /// announced, even to the same status (the control interface uses that for repeats).
    pub(crate) fn change_status(
        &mut self,
        id: Uuid,
        status: Status,
        baas_client_id: BaasClientId,
    ) -> Dispatch {
        let Some(application) = self.applications.get_mut(&id) else {
            return Dispatch::default();
        };
        match baas_client_id {
            BaasClientId::Keep => {}
            BaasClientId::Issue => {
                if application.baas_client_id.is_none() {
                    application.baas_client_id = Some(Uuid::new_v4().to_string());
                }
            }
            BaasClientId::Set(value) => application.baas_client_id = value,
        }
        if status.is_idv_stage() {
            application.idv_status = status.clone();
        }
        debug!(application = %id, %status, "status changed");
        application.history.push(status.clone());
        application.status = status;

        let Some(body) = wire::webhook_body(self.mode.webhook_body, &application.body()) else {
            return Dispatch::default();
        };
        let notification = Notification {
            seq: self.outbox.next_seq(),
            application_id: id,
            status: application.status.clone(),
            url: application.notification_url.clone(),
            timestamp: clock::now(),
            body: serde_json::to_vec(&body).unwrap_or_default().into(),
        };
        self.outbox.route(notification)
    }
}

/// What the control interface shows of an application.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationView {
    pub application_id: Uuid,
    pub person_id: Uuid,
    pub external_reference: String,
    pub session_id: String,
    pub provider_id: String,
    pub status: Status,
    /// The last IDV-stage status reached.
    pub idv_status: Status,
    pub baas_client_id: Option<String>,
    /// Every status it has had, oldest first, starting with `IDV_TOKEN_GENERATED`.
    pub history: Vec<Status>,
    pub notification_url: String,
    /// The KYC body as received, once accepted.
    pub kyc: Option<Value>,
}

impl From<&Application> for ApplicationView {
    fn from(application: &Application) -> Self {
        ApplicationView {
            application_id: application.id,
            person_id: application.person_id,
            external_reference: application.external_reference.clone(),
            session_id: application.session_id.clone(),
            provider_id: application.provider_id.clone(),
            status: application.status.clone(),
            idv_status: application.idv_status.clone(),
            baas_client_id: application.baas_client_id.clone(),
            history: application.history.clone(),
            notification_url: application.notification_url.clone(),
            kyc: application.kyc.clone(),
        }
    }
}

/// `POST /_sandbox/applications/{id}/status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetStatus {
    pub status: Status,
    /// `None`: not given (an approval gets a `baasClientId` if it has none, anything else
    /// keeps its own); `Some(None)`: explicitly `null` (removed); `Some(Some(id))`: this one.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub baas_client_id: Option<Option<String>>,
}

impl SetStatus {
    pub fn new(status: impl Into<Status>) -> SetStatus {
        SetStatus {
            status: status.into(),
            baas_client_id: None,
        }
    }

    pub fn with_baas_client_id(mut self, baas_client_id: Option<String>) -> SetStatus {
        self.baas_client_id = Some(baas_client_id);
        self
    }
}

/// Tells an explicit `null` apart from a missing field (which `default` covers).
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(deserializer).map(Some)
}

impl Shared {
    pub(crate) fn application(&self, id: Uuid) -> Option<ApplicationView> {
        lock(&self.world)
            .applications
            .get(&id)
            .map(ApplicationView::from)
    }

    /// Sets a status by hand: cancels the pending scripted steps and announces the change.
    pub(crate) fn set_status(
        self: &Arc<Self>,
        id: Uuid,
        request: SetStatus,
    ) -> Result<ApplicationView, ControlError> {
        let (view, dispatch) = {
            let mut world = lock(&self.world);
            let Some(application) = world.applications.get_mut(&id) else {
                return Err(ControlError::NotFound(format!("no application {id}")));
            };
            application.script.cancel();
            let baas_client_id = match request.baas_client_id {
                Some(value) => BaasClientId::Set(value),
                None if request.status.is_approval() => BaasClientId::Issue,
                None => BaasClientId::Keep,
            };
            let dispatch = world.change_status(id, request.status, baas_client_id);
            let view = world.applications.get(&id).map(ApplicationView::from);
            (view, dispatch)
        };
        self.dispatch(dispatch);
        view.ok_or_else(|| ControlError::NotFound(format!("no application {id}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_status_tells_null_from_missing() {
        let missing: SetStatus = serde_json::from_str(r#"{"status": "ACCOUNT_ISSUED"}"#).unwrap();
        assert_eq!(missing.baas_client_id, None);
        let null: SetStatus =
            serde_json::from_str(r#"{"status": "ACCOUNT_ISSUED", "baasClientId": null}"#).unwrap();
        assert_eq!(null.baas_client_id, Some(None));
        let given: SetStatus =
            serde_json::from_str(r#"{"status": "ACCOUNT_ISSUED", "baasClientId": "b"}"#).unwrap();
        assert_eq!(given.baas_client_id, Some(Some("b".into())));
        assert!(serde_json::from_str::<SetStatus>(r#"{"status": ""}"#).is_err());
    }

    #[test]
    fn change_status_tracks_history_idv_status_and_client_id() {
        let mut world = World::default();
        let id = world
            .create(NewApplication {
                external_reference: "r".into(),
                session_id: "s".into(),
                provider_id: "ONDATO".into(),
                notification_url: "http://127.0.0.1:1/".into(),
            })
            .id;
        let dispatch = world.change_status(id, Status::IdvApproved, BaasClientId::Keep);
        assert_eq!(dispatch.deliver.len(), 1);
        let _ = world.change_status(id, Status::AccountIssued, BaasClientId::Issue);
        let application = &world.applications[&id];
        assert_eq!(application.idv_status, Status::IdvApproved);
        assert_eq!(
            application.history,
            [
                Status::IdvTokenGenerated,
                Status::IdvApproved,
                Status::AccountIssued
            ]
        );
        assert!(application.baas_client_id.is_some());
    }
}
