//! Integration tests over real sockets: one binary, one module per area.

mod common;
mod control;
mod faults;
mod oauth;
mod onboarding;
mod tls;
mod webhooks;
