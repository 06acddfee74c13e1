//! ConnectPay's JSON bodies as the sandbox writes them. Kept apart from the gateway's own types
//! on purpose: a misreading of the contract must not be able to pass on both sides unseen.

use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::mode::{Responses, WebhookBody};
use crate::status::Status;

/// The `{"application": {…}}` wrapper of the older documentation.
#[derive(Serialize)]
pub(crate) struct Wrapped<T> {
    pub(crate) application: T,
}

/// Wraps `body` in `{"application": …}` or not, as the `responses` switch says.
pub(crate) fn shaped<T: Serialize>(responses: Responses, body: T) -> Value {
    let value = match responses {
        Responses::Wrapped => serde_json::to_value(Wrapped { application: body }),
        Responses::Unwrapped => serde_json::to_value(body),
    };
    // Serializing these plain structs cannot fail; `Null` keeps this total anyway.
    value.unwrap_or(Value::Null)
}

/// Answer of the IDV submission. Wrapped, `personId` sits beside the wrapper, as the
/// newer documentation places it next to the older example's `application`.
pub(crate) fn submit_idv_answer(
    responses: Responses,
    application_id: Uuid,
    person_id: Uuid,
    status: &Status,
) -> Value {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Application<'a> {
        application_id: Uuid,
        status: &'a Status,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct WrappedAnswer<'a> {
        application: Application<'a>,
        person_id: Uuid,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Flat<'a> {
        application_id: Uuid,
        person_id: Uuid,
        status: &'a Status,
    }
    let value = match responses {
        Responses::Wrapped => serde_json::to_value(WrappedAnswer {
            application: Application {
                application_id,
                status,
            },
            person_id,
        }),
        Responses::Unwrapped => serde_json::to_value(Flat {
            application_id,
            person_id,
            status,
        }),
    };
    value.unwrap_or(Value::Null)
}

/// An application as the application GET and the `application` webhook body show it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ApplicationBody<'a> {
    pub(crate) application_id: Uuid,
    pub(crate) person_id: Uuid,
    pub(crate) status: &'a Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) baas_client_id: Option<&'a str>,
}

/// Answer of the IDV GET.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct IdvAnswer<'a> {
    pub(crate) person_id: Uuid,
    pub(crate) status: &'a Status,
    pub(crate) application_id: Uuid,
}

/// Answer of the KYC submission.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct KycAnswer<'a> {
    pub(crate) application_id: Uuid,
    pub(crate) status: &'a Status,
}

/// Answer of the token endpoint. The two lifetimes differ in type exactly as in ConnectPay's
/// own example: `expires_in` a number, `refresh_token_expires_in` a string.
#[derive(Serialize)]
pub(crate) struct TokenAnswer {
    pub(crate) token_type: &'static str,
    pub(crate) access_token: String,
    pub(crate) refresh_token: String,
    pub(crate) expires_in: u64,
    pub(crate) client_customer_name: &'static str,
    pub(crate) scope: &'static str,
    pub(crate) refresh_token_expires_in: String,
}

/// The body of the webhook announcing `application`'s status; `None` when that status has no
/// event in `event` mode (it is then not delivered).
pub(crate) fn webhook_body(shape: WebhookBody, application: &ApplicationBody<'_>) -> Option<Value> {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Event<'a> {
        event_type: &'static str,
        event_id: Uuid,
        data: EventData<'a>,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct EventData<'a> {
        // IDV events name the person only, as the newer documentation suggests.
        #[serde(skip_serializing_if = "Option::is_none")]
        application_id: Option<Uuid>,
        person_id: Uuid,
        status: &'a Status,
        #[serde(skip_serializing_if = "Option::is_none")]
        baas_client_id: Option<&'a str>,
    }
    let value = match shape {
        WebhookBody::Application => serde_json::to_value(Wrapped { application }),
        WebhookBody::Event => {
            let event_type = application.status.event_type()?;
            let idv = application.status.is_idv_stage();
            serde_json::to_value(Event {
                event_type,
                event_id: Uuid::new_v4(),
                data: EventData {
                    application_id: (!idv).then_some(application.application_id),
                    person_id: application.person_id,
                    status: application.status,
                    baas_client_id: application.baas_client_id,
                },
            })
        }
    };
    value.ok()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn body(status: &Status) -> ApplicationBody<'_> {
        ApplicationBody {
            application_id: Uuid::nil(),
            person_id: Uuid::max(),
            status,
            baas_client_id: None,
        }
    }

    #[test]
    fn submit_answer_shapes() {
        let status = Status::IdvTokenGenerated;
        let wrapped = submit_idv_answer(Responses::Wrapped, Uuid::nil(), Uuid::max(), &status);
        assert_eq!(
            wrapped,
            json!({"application": {"applicationId": Uuid::nil(), "status": "IDV_TOKEN_GENERATED"},
                   "personId": Uuid::max()})
        );
        let flat = submit_idv_answer(Responses::Unwrapped, Uuid::nil(), Uuid::max(), &status);
        assert_eq!(
            flat,
            json!({"applicationId": Uuid::nil(), "personId": Uuid::max(),
                   "status": "IDV_TOKEN_GENERATED"})
        );
    }

    #[test]
    fn idv_events_carry_no_application_id() {
        let status = Status::IdvApproved;
        let event = webhook_body(WebhookBody::Event, &body(&status)).unwrap();
        assert_eq!(event["eventType"], "BaaSPersonIdv.Approved");
        assert_eq!(
            event["data"],
            json!({"personId": Uuid::max(), "status": "IDV_APPROVED"})
        );
        let captured = Status::ApplicationCaptured;
        assert!(webhook_body(WebhookBody::Event, &body(&captured)).is_none());
        let wrapped = webhook_body(WebhookBody::Application, &body(&captured)).unwrap();
        assert_eq!(wrapped["application"]["status"], "APPLICATION_CAPTURED");
    }
}
