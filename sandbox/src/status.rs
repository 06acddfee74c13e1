//! ConnectPay's application and IDV statuses, spelled as on the wire.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A ConnectPay `status` value.
///
/// The known values have variants of their own; anything else (which the control interface may
/// set, to exercise a client's handling of statuses it does not know) is kept verbatim in
/// [`Status::Other`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    IdvTokenGenerated,
    IdvApproved,
    IdvDeclined,
    IdvTokenExpired,
    ApplicationCaptured,
    ComplianceReview,
    /// The older documentation's success terminal.
    AccountIssued,
    /// The newer documentation's success terminal.
    ApplicationApproved,
    ApplicationDeclined,
    Other(String),
}

impl Status {
    const KNOWN: [Status; 9] = [
        Status::IdvTokenGenerated,
        Status::IdvApproved,
        Status::IdvDeclined,
        Status::IdvTokenExpired,
        Status::ApplicationCaptured,
        Status::ComplianceReview,
        Status::AccountIssued,
        Status::ApplicationApproved,
        Status::ApplicationDeclined,
    ];

    pub fn as_str(&self) -> &str {
        match self {
            Status::IdvTokenGenerated => "IDV_TOKEN_GENERATED",
            Status::IdvApproved => "IDV_APPROVED",
            Status::IdvDeclined => "IDV_DECLINED",
            Status::IdvTokenExpired => "IDV_TOKEN_EXPIRED",
            Status::ApplicationCaptured => "APPLICATION_CAPTURED",
            Status::ComplianceReview => "COMPLIANCE_REVIEW",
            Status::AccountIssued => "ACCOUNT_ISSUED",
            Status::ApplicationApproved => "APPLICATION_APPROVED",
            Status::ApplicationDeclined => "APPLICATION_DECLINED",
            Status::Other(raw) => raw,
        }
    }

    /// Parses a wire value; unknown values become [`Status::Other`] (exact spelling kept).
    pub fn parse(raw: &str) -> Status {
        Status::KNOWN
            .into_iter()
            .find(|known| known.as_str() == raw)
            .unwrap_or_else(|| Status::Other(raw.to_owned()))
    }

    /// One of the four statuses of the IDV stage (what the IDV GET reports).
    pub fn is_idv_stage(&self) -> bool {
        matches!(
            self,
            Status::IdvTokenGenerated
                | Status::IdvApproved
                | Status::IdvDeclined
                | Status::IdvTokenExpired
        )
    }

    /// A status after which ConnectPay sends nothing more for the application.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Status::IdvDeclined
                | Status::IdvTokenExpired
                | Status::AccountIssued
                | Status::ApplicationApproved
                | Status::ApplicationDeclined
        )
    }

    /// A success terminal, which carries a `baasClientId`.
    pub fn is_approval(&self) -> bool {
        matches!(self, Status::AccountIssued | Status::ApplicationApproved)
    }

    /// The `eventType` of the newer webhook body; `None` for statuses that have no event
    /// (they are answered synchronously, or unknown), which are then not delivered in `event`
    /// mode.
    pub(crate) fn event_type(&self) -> Option<&'static str> {
        Some(match self {
            Status::IdvApproved => "BaaSPersonIdv.Approved",
            Status::IdvDeclined => "BaaSPersonIdv.Declined",
            Status::IdvTokenExpired => "BaaSPerson.DocExpiry",
            Status::ComplianceReview => "BaasApplication.ComplianceReview",
            Status::AccountIssued | Status::ApplicationApproved => {
                "BaasApplication.ApplicationApproved"
            }
            Status::ApplicationDeclined => "BaasApplication.ApplicationDeclined",
            Status::IdvTokenGenerated | Status::ApplicationCaptured | Status::Other(_) => {
                return None;
            }
        })
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for Status {
    fn from(raw: &str) -> Self {
        Status::parse(raw)
    }
}

impl Serialize for Status {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Status {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        if raw.trim().is_empty() {
            return Err(serde::de::Error::custom("a status must not be empty"));
        }
        Ok(Status::parse(&raw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_known_and_unknown_values() {
        for known in Status::KNOWN {
            assert_eq!(Status::parse(known.as_str()), known);
        }
        assert_eq!(
            Status::parse("SOMETHING_NEW"),
            Status::Other("SOMETHING_NEW".into())
        );
        // Spelling is exact: ConnectPay never sends lowercase statuses.
        assert_eq!(
            Status::parse("idv_approved"),
            Status::Other("idv_approved".into())
        );
    }

    #[test]
    fn empty_status_is_rejected() {
        assert!(serde_json::from_str::<Status>("\"\"").is_err());
        assert_eq!(
            serde_json::from_str::<Status>("\"COMPLIANCE_REVIEW\"").unwrap(),
            Status::ComplianceReview
        );
    }
}
