//! The mode switches that select which generation of ConnectPay's documentation is simulated.

use serde::{Deserialize, Deserializer, Serialize};

/// Whether answers carry the `{"application": {…}}` wrapper.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Responses {
    Wrapped,
    Unwrapped,
}

/// Which status names the application stage uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Statuses {
    /// KYC answers `COMPLIANCE_REVIEW`, success is `ACCOUNT_ISSUED`.
    Legacy,
    /// KYC answers `APPLICATION_CAPTURED`, success is `APPLICATION_APPROVED`.
    Newer,
}

/// The shape of webhook bodies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookBody {
    /// `{"application": {…}}`
    Application,
    /// `{"eventType", "eventId", "data": {…}}`
    Event,
}

/// Whether the application GET can see an application that is still in the IDV stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdvStage {
    Shared,
    /// The application GET answers `404` until KYC data has moved it out of the IDV stage.
    Separate,
}

/// A whole documentation generation: sets every switch at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Generation {
    Legacy,
    Newer,
}

/// The current value of every mode switch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Mode {
    pub responses: Responses,
    pub statuses: Statuses,
    pub webhook_body: WebhookBody,
    pub idv_stage: IdvStage,
}

impl Mode {
    pub const fn legacy() -> Mode {
        Mode {
            responses: Responses::Wrapped,
            statuses: Statuses::Legacy,
            webhook_body: WebhookBody::Application,
            idv_stage: IdvStage::Shared,
        }
    }

    pub const fn newer() -> Mode {
        Mode {
            responses: Responses::Unwrapped,
            statuses: Statuses::Newer,
            webhook_body: WebhookBody::Event,
            idv_stage: IdvStage::Separate,
        }
    }

    pub const fn for_generation(generation: Generation) -> Mode {
        match generation {
            Generation::Legacy => Mode::legacy(),
            Generation::Newer => Mode::newer(),
        }
    }

    /// Applies the switches present in `update`, keeping the others.
    pub fn apply(&mut self, update: &ModeUpdate) {
        let ModeUpdate {
            responses,
            statuses,
            webhook_body,
            idv_stage,
        } = *update;
        self.responses = responses.unwrap_or(self.responses);
        self.statuses = statuses.unwrap_or(self.statuses);
        self.webhook_body = webhook_body.unwrap_or(self.webhook_body);
        self.idv_stage = idv_stage.unwrap_or(self.idv_stage);
    }
}

impl Default for Mode {
    fn default() -> Self {
        Mode::legacy()
    }
}

impl From<Generation> for Mode {
    fn from(generation: Generation) -> Self {
        Mode::for_generation(generation)
    }
}

/// Accepts either a generation name (`"newer"`) or an object of switches, the missing ones
/// taking their `legacy` value — so a config file can say `mode = "newer"` or
/// `mode = { responses = "unwrapped" }`.
impl<'de> Deserialize<'de> for Mode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Generation(Generation),
            Switches(ModeUpdate),
        }
        Ok(match Repr::deserialize(deserializer)? {
            Repr::Generation(generation) => Mode::for_generation(generation),
            Repr::Switches(update) => {
                let mut mode = Mode::legacy();
                mode.apply(&update);
                mode
            }
        })
    }
}

/// A partial change of the mode switches (`PUT /_sandbox/mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ModeUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub responses: Option<Responses>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statuses: Option<Statuses>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_body: Option<WebhookBody>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idv_stage: Option<IdvStage>,
}

impl From<Mode> for ModeUpdate {
    fn from(mode: Mode) -> Self {
        ModeUpdate {
            responses: Some(mode.responses),
            statuses: Some(mode.statuses),
            webhook_body: Some(mode.webhook_body),
            idv_stage: Some(mode.idv_stage),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deserializes_from_a_generation_or_switches() {
        let newer: Mode = serde_json::from_str("\"newer\"").unwrap();
        assert_eq!(newer, Mode::newer());
        let partial: Mode = serde_json::from_str(r#"{"responses": "unwrapped"}"#).unwrap();
        assert_eq!(
            partial,
            Mode {
                responses: Responses::Unwrapped,
                ..Mode::legacy()
            }
        );
        assert!(serde_json::from_str::<Mode>(r#"{"responses": "sideways"}"#).is_err());
    }

    #[test]
    fn serializes_camel_case() {
        let json = serde_json::to_value(Mode::newer()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"responses": "unwrapped", "statuses": "newer",
                               "webhookBody": "event", "idvStage": "separate"})
        );
    }
}
