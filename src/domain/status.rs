//! The statuses of an application and the order they move in.

use std::fmt;

/// Where an application stands, in the gateway's vocabulary (ConnectPay's spellings are mapped onto these
/// by the ConnectPay adapter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    IdvTokenGenerated,
    IdvApproved,
    IdvDeclined,
    IdvTokenExpired,
    ApplicationCaptured,
    ComplianceReview,
    AccountIssued,
    ApplicationDeclined,
    /// A status this version does not know; the raw string is kept beside it.
    Other,
}

impl Status {
    pub const ALL: [Status; 9] = [
        Status::IdvTokenGenerated,
        Status::IdvApproved,
        Status::IdvDeclined,
        Status::IdvTokenExpired,
        Status::ApplicationCaptured,
        Status::ComplianceReview,
        Status::AccountIssued,
        Status::ApplicationDeclined,
        Status::Other,
    ];

    /// A terminal status absorbs everything that comes after it (but see `Application::apply` for the one
    /// enrichment an `AccountIssued` may still receive).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Status::IdvDeclined
                | Status::IdvTokenExpired
                | Status::AccountIssued
                | Status::ApplicationDeclined
        )
    }

    /// Position in the forward-only order: a known status may only replace one of a lower rank.
    /// Statuses of equal rank are alternatives (approved or declined), never successors.
    /// `Other` has no rank of its own: it sits wherever the last known status left the application.
    pub(crate) fn rank(self) -> Option<u8> {
        match self {
            Status::IdvTokenGenerated => Some(0),
            Status::IdvApproved | Status::IdvDeclined | Status::IdvTokenExpired => Some(1),
            Status::ApplicationCaptured => Some(2),
            Status::ComplianceReview => Some(3),
            Status::AccountIssued | Status::ApplicationDeclined => Some(4),
            Status::Other => None,
        }
    }

    /// Whether the application is still in the IDV stage (its KYC data has not been submitted).
    pub fn is_idv_stage(self) -> bool {
        matches!(
            self,
            Status::IdvTokenGenerated
                | Status::IdvApproved
                | Status::IdvDeclined
                | Status::IdvTokenExpired
        )
    }

    /// The stable name used in logs, metrics labels and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::IdvTokenGenerated => "IDV_TOKEN_GENERATED",
            Status::IdvApproved => "IDV_APPROVED",
            Status::IdvDeclined => "IDV_DECLINED",
            Status::IdvTokenExpired => "IDV_TOKEN_EXPIRED",
            Status::ApplicationCaptured => "APPLICATION_CAPTURED",
            Status::ComplianceReview => "COMPLIANCE_REVIEW",
            Status::AccountIssued => "ACCOUNT_ISSUED",
            Status::ApplicationDeclined => "APPLICATION_DECLINED",
            Status::Other => "OTHER",
        }
    }

    /// The inverse of [`Status::as_str`].
    pub fn from_name(name: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for status in Status::ALL {
            assert_eq!(Status::from_name(status.as_str()), Some(status));
        }
        assert_eq!(Status::from_name("idv_approved"), None);
    }

    #[test]
    fn terminal_statuses_are_the_documented_four() {
        let terminal: Vec<_> = Status::ALL
            .into_iter()
            .filter(|s| s.is_terminal())
            .collect();
        assert_eq!(
            terminal,
            [
                Status::IdvDeclined,
                Status::IdvTokenExpired,
                Status::AccountIssued,
                Status::ApplicationDeclined
            ]
        );
    }
}
