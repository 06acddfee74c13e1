//! The gRPC transport: the only code that knows the generated proto types.

pub mod admission;
pub mod auth;
pub mod codec;
mod convert;
pub mod observe;
mod onboarding;
pub mod server;
mod status;
pub mod tls;

/// The generated API (`connectpay.onboarding.v1`).
pub mod pb {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("connectpay.onboarding.v1");

    #[cfg(test)]
    mod tests {
        #[test]
        fn requests_with_personal_data_print_no_values() {
            let request = super::InitiateOnboardingRequest {
                application_id: "app-1".into(),
                request_id: String::new(),
                kyc: Some(super::PersonalKyc {
                    is_ubo: Some(true),
                    pep: Some(super::Pep {
                        is_pep: Some(true),
                        position: "Minister-of-Canaries".into(),
                    }),
                    address: Some(super::Address {
                        country_code: "LT".into(),
                        address_line1: "Canary-street-1".into(),
                        address_line2: String::new(),
                        city: "Canaryville".into(),
                        postcode: "C-0001".into(),
                    }),
                    account_purposes: vec!["CANARY_PURPOSE".into()],
                    additional_fields: None,
                }),
            };
            let printed = format!("{request:?} {request:#?}");
            for value in ["Canary", "Minister", "C-0001", "CANARY", "LT"] {
                assert!(!printed.contains(value), "{value} in {printed}");
            }
            assert!(printed.contains("app-1"), "{printed}");
            let submit = super::SubmitIdvSessionRequest {
                external_reference: "client-1".into(),
                session_id: "canary-session".into(),
                provider_id: "ONDATO".into(),
                request_id: String::new(),
            };
            assert!(!format!("{submit:?}").contains("canary-session"));
        }
    }

    /// The API's descriptors, served by reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("onboarding_descriptor");

    // The messages that carry personal data or an IDV session print which fields are set, never a
    // value (build.rs lists them): a `{:?}` of a request is safe in any log or panic message.

    use std::fmt;

    const REDACTED: &str = "[redacted]";

    fn set(value: &str) -> &'static str {
        if value.is_empty() { "" } else { REDACTED }
    }

    impl fmt::Debug for PersonalKyc {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("PersonalKyc")
                .field("is_ubo", &self.is_ubo.map(|_| REDACTED))
                .field("pep", &self.pep)
                .field("address", &self.address)
                .field("account_purposes", &self.account_purposes.len())
                .field(
                    "additional_fields",
                    &self.additional_fields.as_ref().map(|s| s.fields.len()),
                )
                .finish()
        }
    }

    impl fmt::Debug for Pep {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("Pep")
                .field("is_pep", &self.is_pep.map(|_| REDACTED))
                .field("position", &set(&self.position))
                .finish()
        }
    }

    impl fmt::Debug for Address {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("Address")
                .field("country_code", &set(&self.country_code))
                .field("address_line1", &set(&self.address_line1))
                .field("address_line2", &set(&self.address_line2))
                .field("city", &set(&self.city))
                .field("postcode", &set(&self.postcode))
                .finish()
        }
    }

    impl fmt::Debug for SubmitIdvSessionRequest {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("SubmitIdvSessionRequest")
                .field("external_reference", &self.external_reference)
                .field("session_id", &set(&self.session_id))
                .field("provider_id", &self.provider_id)
                .field("request_id", &self.request_id)
                .finish()
        }
    }

    impl fmt::Debug for InitiateOnboardingRequest {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("InitiateOnboardingRequest")
                .field("application_id", &self.application_id)
                .field("request_id", &self.request_id)
                .field("kyc", &self.kyc)
                .finish()
        }
    }
}

/// `google.rpc.ErrorInfo.domain` of every error the gateway returns.
pub const ERROR_DOMAIN: &str = "onboarding-gateway";
