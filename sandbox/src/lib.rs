//! A ConnectPay Banking-as-a-Service simulator: a real HTTP(S) server speaking the
//! personal-onboarding contract, with scripted outcomes, webhooks, fault injection and a
//! control interface for tests. See the crate's README for the full specification.
//!
//! ```no_run
//! # async fn example() -> std::io::Result<()> {
//! use connectpay_sandbox::{Sandbox, SandboxConfig};
//!
//! let sandbox = Sandbox::start(SandboxConfig {
//!     listen: "127.0.0.1:0".parse().unwrap(),
//!     ..SandboxConfig::default()
//! })
//! .await?;
//! println!("ConnectPay at {}", sandbox.base_url());
//! sandbox.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod api;
pub mod cli;
mod clock;
mod config;
mod control;
mod delivery;
mod error;
mod faults;
mod mode;
mod oauth;
mod pipeline;
mod recorder;
mod sandbox;
mod script;
mod server;
mod shared;
mod state;
mod status;
mod tls;
mod validate;
mod webhooks;
mod wire;

pub use config::{DEFAULT_WEBHOOK_TOKEN, SandboxConfig, TlsConfig};
pub use control::Health;
pub use error::{ControlError, FieldError};
pub use faults::{Fault, FaultAction, FaultRates};
pub use mode::{Generation, IdvStage, Mode, ModeUpdate, Responses, Statuses, WebhookBody};
pub use oauth::AuthCode;
pub use recorder::{Endpoint, RecordedRequest, Stats, TokenStats};
pub use sandbox::Sandbox;
pub use state::{ApplicationView, SetStatus};
pub use status::Status;
pub use webhooks::{
    DeliveryLogEntry, DeliveryMode, Release, ReleaseOrder, Released, WebhookDelivery,
};
