//! The gRPC transport: the only code that knows the generated proto types.

pub mod admission;
mod convert;
pub mod observe;
mod onboarding;
pub mod server;
mod status;

/// The generated API (`connectpay.onboarding.v1`).
pub mod pb {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("connectpay.onboarding.v1");

    /// The API's descriptors, served by reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("onboarding_descriptor");
}

/// `google.rpc.ErrorInfo.domain` of every error the gateway returns.
pub const ERROR_DOMAIN: &str = "onboarding-gateway";
