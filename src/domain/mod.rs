//! The domain: the application model, its status machine, the KYC rules and the error type.
//!
//! Pure: no I/O, no proto, no ConnectPay wire types. Every other floor imports from here; this imports from
//! nothing in the crate.

pub mod application;
pub mod deadline;
pub mod error;
pub mod kyc;
pub mod poll;
pub mod status;
pub mod submission;

pub use application::{Application, ApplicationId, Observation};
pub use deadline::Deadline;
pub use error::{Error, FieldViolation, Reason};
pub use kyc::PersonalKyc;
pub use status::Status;

/// The current time at the precision the store keeps (microseconds), so that a version read back from
/// the store is identical to the one first returned.
pub fn now() -> std::time::SystemTime {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    std::time::UNIX_EPOCH + std::time::Duration::from_micros(since.as_micros() as u64)
}
