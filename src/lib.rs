//! onboarding-gateway: a gRPC gateway to ConnectPay's Banking-as-a-Service personal onboarding API.
//!
//! Four floors, every import pointing down: transports (`grpc`) → use cases (`service`) → adapters
//! (`connectpay`, `store`) → `domain` (with `config`, `telemetry` and `shutdown` beside it). `app` wires
//! them together; `main.rs` only parses the command line. See ARCHITECTURE.md.

pub mod admin;
pub mod app;
pub mod cli;
pub mod config;
pub mod connectpay;
pub mod domain;
pub mod grpc;
pub mod service;
pub mod shutdown;
pub mod store;
pub mod telemetry;
pub mod webhook;
