//! Compiles the gRPC API from `proto/` with protox (pure Rust), so building needs no system `protoc`.
//! The encoded descriptor set is kept for the reflection service.

use std::{env, fs, path::PathBuf};

use prost::Message as _;

/// Messages that carry personal data or an IDV session: their `Debug` is written by hand (in
/// `src/grpc/mod.rs`) and prints no values, so no `{:?}` anywhere can leak them.
const REDACTED: &[&str] = &[
    ".connectpay.onboarding.v1.PersonalKyc",
    ".connectpay.onboarding.v1.Pep",
    ".connectpay.onboarding.v1.Address",
    ".connectpay.onboarding.v1.SubmitIdvSessionRequest",
    ".connectpay.onboarding.v1.InitiateOnboardingRequest",
];

const PROTOS: &[&str] = &[
    "connectpay/onboarding/v1/application.proto",
    "connectpay/onboarding/v1/kyc.proto",
    "connectpay/onboarding/v1/onboarding.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    // `sqlx::migrate!` embeds `migrations/` when the crate compiles: a migration added later must
    // compile it again, which running this script again does.
    println!("cargo:rerun-if-changed=migrations");
    let descriptors = protox::compile(PROTOS, ["proto"])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(
        out_dir.join("onboarding_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .skip_debug(REDACTED)
        // Same prost encoding, a smaller per-response encode buffer: see src/grpc/codec.rs.
        .codec_path("crate::grpc::codec::LeanProstCodec")
        .compile_fds(descriptors)?;
    Ok(())
}
