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
