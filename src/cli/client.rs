//! `client`: the gateway's RPCs from a terminal, printing answers as proto3 JSON.

use std::{collections::BTreeMap, process::ExitCode};

use clap::Subcommand;
use serde_json::{Value, json};
use tonic::{Code, Status};
use tonic_types::StatusExt;

use std::path::PathBuf;

use tonic::{
    metadata::{AsciiMetadataValue, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity},
};

use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::grpc::pb::{self, onboarding_client::OnboardingClient};

/// How to reach a gateway that authenticates its callers.
#[derive(Debug, Clone, clap::Args)]
pub struct Connection {
    /// PEM CA certificate(s) the gateway's certificate must chain to (for an https:// address).
    #[arg(long, global = true, env = "ONBOARDING_GATEWAY_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// The name the gateway's certificate must carry, when it is not the address's host.
    #[arg(long, global = true)]
    pub tls_domain: Option<String>,
    /// PEM client certificate chain to present (mutual TLS), with --key-file.
    #[arg(long, global = true, env = "ONBOARDING_GATEWAY_CERT_FILE")]
    pub cert_file: Option<PathBuf>,
    #[arg(long, global = true, env = "ONBOARDING_GATEWAY_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// A file holding a bearer token (JWT) to send; a file, so the token never shows in a process list.
    #[arg(long, global = true, env = "ONBOARDING_GATEWAY_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
}

/// Adds the bearer token, when there is one, to every call.
#[derive(Clone)]
struct Bearer(Option<AsciiMetadataValue>);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

type Client = OnboardingClient<InterceptedService<Channel, Bearer>>;

fn read(path: &PathBuf, what: &str) -> Result<Vec<u8>, Status> {
    std::fs::read(path).map_err(|e| {
        Status::invalid_argument(format!("{what}: cannot read {}: {e}", path.display()))
    })
}

async fn connect(addr: String, connection: &Connection) -> Result<Client, Status> {
    let (channel, bearer) = channel(addr, connection).await?;
    Ok(OnboardingClient::with_interceptor(channel, bearer))
}

/// A connected channel, and the bearer token to add to its calls.
async fn channel(addr: String, connection: &Connection) -> Result<(Channel, Bearer), Status> {
    let mut endpoint = Endpoint::from_shared(addr)
        .map_err(|e| Status::invalid_argument(format!("--addr: {e}")))?;
    if endpoint.uri().scheme_str() == Some("https") {
        let ca = connection
            .ca_file
            .as_ref()
            .ok_or_else(|| Status::invalid_argument("an https:// address needs --ca-file"))?;
        let mut tls =
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca, "--ca-file")?));
        if let Some(domain) = &connection.tls_domain {
            tls = tls.domain_name(domain.clone());
        }
        match (&connection.cert_file, &connection.key_file) {
            (Some(cert), Some(key)) => {
                tls = tls.identity(Identity::from_pem(
                    read(cert, "--cert-file")?,
                    read(key, "--key-file")?,
                ));
            }
            (None, None) => {}
            _ => {
                return Err(Status::invalid_argument(
                    "--cert-file and --key-file go together",
                ));
            }
        }
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|e| Status::invalid_argument(format!("TLS: {e}")))?;
    }
    let bearer = match &connection.token_file {
        Some(file) => {
            let token = String::from_utf8(read(file, "--token-file")?)
                .map_err(|_| Status::invalid_argument("--token-file: not text"))?;
            let value = MetadataValue::try_from(format!("Bearer {}", token.trim()))
                .map_err(|_| Status::invalid_argument("--token-file: not a token"))?;
            Some(value)
        }
        None => None,
    };
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| Status::unavailable(format!("cannot connect: {e}")))?;
    Ok((channel, Bearer(bearer)))
}

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// SubmitIdvSession: hand an IDV provider's session to ConnectPay.
    Submit {
        #[arg(long)]
        external_reference: String,
        /// The IDV provider's session id or token.
        #[arg(long)]
        session_id: String,
        #[arg(long, default_value = "ONDATO")]
        provider_id: String,
        /// Idempotency key.
        #[arg(long, default_value = "")]
        request_id: String,
    },
    /// GetApplication: an application's current state, by id or by external reference.
    Get {
        #[command(flatten)]
        target: Target,
        /// Keep asking (every half second) until the application reaches this status, e.g. IDV_APPROVED.
        #[arg(long, value_name = "STATUS")]
        wait_for: Option<String>,
        /// How long --wait-for waits, in seconds.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// WatchApplication: print every change (one JSON object per line) until the application ends.
    Watch {
        #[command(flatten)]
        target: Target,
        /// Resume after the message that carried this token.
        #[arg(long, default_value = "")]
        resume_token: String,
        /// Stop once the application reaches this status, e.g. IDV_APPROVED.
        #[arg(long, value_name = "STATUS")]
        until: Option<String>,
    },
    /// grpc.health.v1 Check: prints the serving status; succeeds only when it is SERVING. Usable as an exec
    /// probe where the kubelet cannot reach the gateway itself (it listens on loopback with --sandbox).
    Health {
        /// The health service name: "" for the whole server, or health.liveness_service /
        /// health.readiness_service ("liveness", "readiness").
        #[arg(long, default_value = "")]
        service: String,
    },
    /// InitiateOnboarding: submit the full KYC data of an application whose IDV was approved.
    Initiate {
        #[command(flatten)]
        target: Target,
        /// Idempotency key.
        #[arg(long, default_value = "")]
        request_id: String,
        #[arg(long)]
        is_ubo: bool,
        #[arg(long)]
        is_pep: bool,
        #[arg(long, default_value = "")]
        pep_position: String,
        #[arg(long)]
        country_code: String,
        #[arg(long)]
        address_line1: String,
        #[arg(long, default_value = "")]
        address_line2: String,
        #[arg(long)]
        city: String,
        #[arg(long)]
        postcode: String,
        /// An account purpose (repeatable), e.g. SALARY.
        #[arg(long = "account-purpose")]
        account_purposes: Vec<String>,
        /// An extra field for ConnectPay's `person` object, as name=value (value parsed as JSON when it is
        /// JSON, else taken as a string). Repeatable.
        #[arg(long = "field", value_parser = parse_field)]
        fields: Vec<(String, Value)>,
    },
}

/// Which application: by id, or the latest for an external reference.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub struct Target {
    #[arg(long)]
    application_id: Option<String>,
    /// The most recent application for this external reference.
    #[arg(long)]
    external_reference: Option<String>,
}

impl Target {
    fn key(self) -> pb::get_application_request::Key {
        use pb::get_application_request::Key;
        match (self.application_id, self.external_reference) {
            (Some(id), _) => Key::ApplicationId(id),
            (None, reference) => Key::ExternalReference(reference.unwrap_or_default()),
        }
    }
}

fn parse_field(raw: &str) -> Result<(String, Value), String> {
    let (name, value) = raw.split_once('=').ok_or("expected name=value")?;
    let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_owned()));
    Ok((name.to_owned(), value))
}

/// grpc.health.v1 Check of `service`: SERVING is the answer wanted, any other status an `UNAVAILABLE`
/// naming it.
async fn health(addr: String, connection: &Connection, service: String) -> Result<Value, Status> {
    let (channel, bearer) = channel(addr, connection).await?;
    let status = HealthClient::with_interceptor(channel, bearer)
        .check(HealthCheckRequest { service })
        .await?
        .into_inner()
        .status();
    match status {
        ServingStatus::Serving => Ok(json!({ "status": status.as_str_name() })),
        other => Err(Status::unavailable(other.as_str_name())),
    }
}

pub fn run(addr: &str, connection: &Connection, command: ClientCommand) -> ExitCode {
    let runtime = match super::runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let answer = match command {
        // Health is its own service, and answers with a status rather than an application.
        ClientCommand::Health { service } => {
            runtime.block_on(health(addr.to_owned(), connection, service))
        }
        command => runtime
            .block_on(call(addr.to_owned(), connection, command))
            .map(|application| application_json(application.as_ref())),
    };
    match answer {
        Ok(answer) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&answer).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Err(status) => {
            eprintln!(
                "{}",
                serde_json::to_string_pretty(&status_json(&status)).unwrap_or_default()
            );
            ExitCode::FAILURE
        }
    }
}

async fn call(
    addr: String,
    connection: &Connection,
    command: ClientCommand,
) -> Result<Option<pb::Application>, Status> {
    let mut client = connect(addr, connection).await?;
    let application = match command {
        // Answered by `health`, before any of this.
        ClientCommand::Health { .. } => return Ok(None),
        ClientCommand::Submit {
            external_reference,
            session_id,
            provider_id,
            request_id,
        } => {
            client
                .submit_idv_session(pb::SubmitIdvSessionRequest {
                    external_reference,
                    session_id,
                    provider_id,
                    request_id,
                })
                .await?
                .into_inner()
                .application
        }
        ClientCommand::Get {
            target,
            wait_for,
            timeout,
        } => {
            let request = pb::GetApplicationRequest {
                key: Some(target.key()),
            };
            let Some(wanted) = wait_for else {
                return Ok(client
                    .get_application(request)
                    .await?
                    .into_inner()
                    .application);
            };
            let wanted = wanted
                .trim_start_matches("APPLICATION_STATUS_")
                .to_ascii_uppercase();
            let give_up = tokio::time::Instant::now() + std::time::Duration::from_secs(timeout);
            loop {
                let application = client
                    .get_application(request.clone())
                    .await?
                    .into_inner()
                    .application;
                let status = application
                    .as_ref()
                    .and_then(|a| pb::ApplicationStatus::try_from(a.status).ok())
                    .map(|s| {
                        s.as_str_name()
                            .trim_start_matches("APPLICATION_STATUS_")
                            .to_owned()
                    });
                if status.as_deref() == Some(wanted.as_str()) {
                    break application;
                }
                if tokio::time::Instant::now() >= give_up {
                    return Err(Status::deadline_exceeded(format!(
                        "still {} after {timeout}s",
                        status.unwrap_or_default()
                    )));
                }
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        }
        ClientCommand::Watch {
            target,
            resume_token,
            until,
        } => {
            watch(&mut client, target, resume_token, until).await?;
            return Ok(None);
        }
        ClientCommand::Initiate {
            target,
            request_id,
            is_ubo,
            is_pep,
            pep_position,
            country_code,
            address_line1,
            address_line2,
            city,
            postcode,
            account_purposes,
            fields,
        } => {
            let kyc = pb::PersonalKyc {
                is_ubo: Some(is_ubo),
                pep: Some(pb::Pep {
                    is_pep: Some(is_pep),
                    position: pep_position,
                }),
                address: Some(pb::Address {
                    country_code,
                    address_line1,
                    address_line2,
                    city,
                    postcode,
                }),
                account_purposes,
                additional_fields: (!fields.is_empty()).then(|| to_struct(fields)),
            };
            // The RPC takes an id; a reference is resolved to its latest application first.
            let application_id = match target.key() {
                pb::get_application_request::Key::ApplicationId(id) => id,
                key => client
                    .get_application(pb::GetApplicationRequest { key: Some(key) })
                    .await?
                    .into_inner()
                    .application
                    .map(|a| a.application_id)
                    .unwrap_or_default(),
            };
            client
                .initiate_onboarding(pb::InitiateOnboardingRequest {
                    application_id,
                    request_id,
                    kyc: Some(kyc),
                })
                .await?
                .into_inner()
                .application
        }
    };
    Ok(application)
}

/// Prints each message as one line of JSON; stops at the stream's end or at the wanted status.
async fn watch(
    client: &mut Client,
    target: Target,
    resume_token: String,
    until: Option<String>,
) -> Result<(), Status> {
    use pb::{watch_application_request::Key as WatchKey, watch_application_response::Event};
    let key = match target.key() {
        pb::get_application_request::Key::ApplicationId(id) => WatchKey::ApplicationId(id),
        pb::get_application_request::Key::ExternalReference(r) => WatchKey::ExternalReference(r),
    };
    let wanted = until.map(|s| {
        s.trim_start_matches("APPLICATION_STATUS_")
            .to_ascii_uppercase()
    });
    let mut stream = client
        .watch_application(pb::WatchApplicationRequest {
            key: Some(key),
            resume_token,
        })
        .await?
        .into_inner();
    while let Some(message) = stream.message().await? {
        let (kind, body, app) = match &message.event {
            Some(Event::Snapshot(app)) => ("snapshot", application_json(Some(app)), Some(app)),
            Some(Event::Change(app)) => ("change", application_json(Some(app)), Some(app)),
            Some(Event::Heartbeat(beat)) => (
                "heartbeat",
                json!({"time": beat.time.as_ref().map(ToString::to_string)}),
                None,
            ),
            None => continue,
        };
        println!(
            "{}",
            json!({ kind: body, "resumeToken": message.resume_token })
        );
        let reached = app
            .and_then(|a| pb::ApplicationStatus::try_from(a.status).ok())
            .map(|s| {
                s.as_str_name()
                    .trim_start_matches("APPLICATION_STATUS_")
                    .to_owned()
            });
        if wanted.is_some() && reached == wanted {
            break;
        }
    }
    Ok(())
}

fn to_struct(fields: Vec<(String, Value)>) -> prost_types::Struct {
    prost_types::Struct {
        fields: fields
            .into_iter()
            .map(|(k, v)| (k, to_value(v)))
            .collect::<BTreeMap<_, _>>(),
    }
}

fn to_value(value: Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match value {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        Value::String(s) => Kind::StringValue(s),
        Value::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.into_iter().map(to_value).collect(),
        }),
        Value::Object(map) => Kind::StructValue(to_struct(map.into_iter().collect())),
    };
    prost_types::Value { kind: Some(kind) }
}

/// The proto3 JSON form (lowerCamelCase names, enum names, RFC 3339 times).
fn application_json(app: Option<&pb::Application>) -> Value {
    let Some(app) = app else { return Value::Null };
    let status = pb::ApplicationStatus::try_from(app.status)
        .map(|s| s.as_str_name().to_owned())
        .unwrap_or_else(|_| app.status.to_string());
    json!({
        "applicationId": app.application_id,
        "externalReference": app.external_reference,
        "personId": app.person_id,
        "status": status,
        "upstreamStatus": app.upstream_status,
        "baasClientId": app.baas_client_id,
        "version": app.version.to_string(),
        "updateTime": app.update_time.as_ref().map(ToString::to_string),
        "createTime": app.create_time.as_ref().map(ToString::to_string),
    })
}

fn status_json(status: &Status) -> Value {
    let details = status.get_error_details();
    let code = if status.code() == Code::Ok {
        Code::Unknown
    } else {
        status.code()
    };
    json!({
        "code": format!("{code:?}"),
        "message": status.message(),
        "reason": details.error_info().map(|i| i.reason.clone()),
        "fieldViolations": details.bad_request().map(|b| {
            b.field_violations.iter().map(|v| json!({"field": v.field, "description": v.description})).collect::<Vec<_>>()
        }),
        "retryDelay": details.retry_info().and_then(|r| r.retry_delay).map(|d| format!("{}s", d.as_secs_f64())),
    })
}
