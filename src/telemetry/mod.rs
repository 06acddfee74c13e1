//! Logs, traces and metrics.
//!
//! Logs: structured JSON for collectors, readable text on a terminal. Traces: OpenTelemetry, exported over
//! OTLP when the standard `OTEL_*` variables ask for it, off otherwise. Metrics: a Prometheus registry
//! (`metrics.rs`), served on the admin port. `context.rs` carries W3C trace context across the gateway's
//! edges. Nothing here imports from the rest of the crate.

pub mod context;
pub mod metrics;

use std::io::IsTerminal;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::{Resource, trace::SdkTracerProvider};
use tracing_subscriber::{EnvFilter, Layer, fmt, prelude::*};

use crate::config::{LogConfig, LogFormat};

/// The target of audit records: one per call, shippable apart from the other logs.
pub const AUDIT_TARGET: &str = "audit";

/// Keeps the trace exporter alive; [`Telemetry::shutdown`] flushes what is still buffered.
#[must_use]
pub struct Telemetry {
    traces: Option<SdkTracerProvider>,
}

impl Telemetry {
    pub fn exporting_traces(&self) -> bool {
        self.traces.is_some()
    }

    /// Exports the spans still buffered. Call before the process exits.
    pub fn shutdown(self) {
        if let Some(provider) = self.traces
            && let Err(e) = provider.shutdown()
        {
            tracing::warn!(error = %e, "could not flush the last spans");
        }
    }
}

/// Whether the standard variables ask for OTLP trace export (the gateway exports nothing unless told).
fn otlp_requested() -> bool {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    if var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return false;
    }
    match var("OTEL_TRACES_EXPORTER") {
        Some(exporter) => exporter
            .split(',')
            .any(|e| e.trim().eq_ignore_ascii_case("otlp")),
        None => {
            var("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
                || var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some()
        }
    }
}

fn trace_provider() -> Option<SdkTracerProvider> {
    if !otlp_requested() {
        return None;
    }
    // Protocol, endpoint, headers and timeout come from the OTEL_EXPORTER_OTLP_* variables.
    let exporter = match opentelemetry_otlp::SpanExporter::builder().build() {
        Ok(exporter) => exporter,
        Err(e) => {
            eprintln!("OTLP trace export is configured but cannot start: {e}");
            return None;
        }
    };
    let mut resource = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name("onboarding-gateway");
    }
    Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build(),
    )
}

/// Installs logging (and, when configured, trace export) for the process. Must run inside the Tokio
/// runtime (the gRPC exporter needs it). Safe to call more than once: later calls keep the first setup,
/// which embedding applications and tests rely on.
pub fn init(config: &LogConfig) -> Telemetry {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match config.format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let logs = if json {
        fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .with_writer(std::io::stderr)
            .boxed()
    } else {
        fmt::layer().with_writer(std::io::stderr).boxed()
    };
    let traces = trace_provider();
    let otel = traces.as_ref().map(|provider| {
        tracing_opentelemetry::layer().with_tracer(provider.tracer("onboarding-gateway"))
    });
    context::install_propagator();
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(logs)
        .with(otel)
        .try_init();
    if installed.is_err() {
        // Someone (a test, an embedding application) installed a subscriber first: keep theirs.
        return Telemetry { traces: None };
    }
    Telemetry { traces }
}
