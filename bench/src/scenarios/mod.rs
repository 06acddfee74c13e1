//! The scenarios: unary overhead against direct calls, webhook → watcher latency, idle watchers per GiB,
//! and durable webhook ingestion. Each starts its own sandbox and gateway, so no scenario inherits another's
//! state.

mod fanout;
mod ingest;
pub mod instructions;
mod machine;
mod unary;
mod watchers;

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, OnceLock},
    time::{Duration, Instant},
};

use futures::{StreamExt, stream};
use onboarding_gateway::grpc::pb::{
    self, get_application_request, onboarding_client::OnboardingClient, watch_application_request,
    watch_applications_response,
};
use serde::Serialize;
use serde_json::json;
use tonic::transport::{Channel, Endpoint};

use crate::{
    load::{self, Latency, Recorder},
    procs::{self, GatewayAddrs, GatewayLaunch, Proc, Store, Usage},
};

pub use machine::Machine;

#[derive(Clone)]
pub struct Binaries {
    pub gateway: PathBuf,
    pub sandbox: PathBuf,
}

#[derive(Clone)]
pub struct Plan {
    pub binaries: Binaries,
    pub smoke: bool,
    pub phase: Duration,
    pub watchers: Vec<usize>,
    pub opens_in_flight: usize,
    pub gateway_cpu: usize,
    pub driver_cpu: usize,
    pub sandbox_cpu: usize,
    pub postgres: String,
    /// Whether a local PostgreSQL server is held on the driver CPU while a measuring scenario runs.
    pub postgres_pinned: bool,
    /// The rates of the unary scenario's light-load phases, both paths at once (default: 1,000 req/s).
    pub unary_rates: Vec<f64>,
    /// The command the gateway runs under (empty: none); `instructions` puts it under callgrind.
    pub gateway_wrapper: Vec<String>,
}

type Error = String;

/// One process's cost over a whole scenario.
#[derive(Debug, Serialize)]
pub struct ProcessUsage {
    pub name: &'static str,
    pub cpu: Option<usize>,
    pub cpu_seconds: f64,
    pub peak_rss_mib: f64,
}

/// One measured phase: an offered load, what was achieved, what it cost the gateway, and latencies.
#[derive(Debug, Serialize)]
pub struct Phase {
    pub name: String,
    /// Requests (or webhooks) per second offered; `None` for a closed-loop run.
    pub offered_per_s: Option<f64>,
    pub achieved_per_s: f64,
    pub seconds: f64,
    pub gateway_cpu_seconds: f64,
    /// Gateway CPU seconds per second of the phase.
    pub gateway_cores: f64,
    /// Achieved requests per second ÷ gateway cores.
    pub per_gateway_core: f64,
    /// A local PostgreSQL server's CPU seconds per second of the phase; `None` without one.
    pub database_cores: Option<f64>,
    pub latencies: Vec<(String, Latency)>,
    /// Latency added by the gateway, in µs: through the gateway − direct, per percentile.
    pub added_us: Option<Added>,
    pub generator_lateness: Option<Latency>,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Added {
    pub p50: i64,
    pub p90: i64,
    pub p99: i64,
    pub p999: i64,
}

#[derive(Debug, Serialize)]
pub struct ScenarioResult {
    pub scenario: String,
    pub store: String,
    pub phases: Vec<Phase>,
    pub processes: Vec<ProcessUsage>,
    /// Where a PostgreSQL server's processes ran during the scenario, or why they were not pinned;
    /// `None` when the store is SQLite (inside the gateway).
    pub database_server: Option<String>,
    /// CPU time the host took from this virtual machine during the scenario (`steal` in /proc/stat), as a
    /// share of all its CPUs' time: a disturbed run shows here. `None` where the kernel does not count it.
    pub stolen_share: Option<f64>,
}

impl ScenarioResult {
    pub fn summary(&self) -> String {
        let mut out = String::new();
        for phase in &self.phases {
            out.push_str(&format!(
                "{}: offered {} /s, achieved {:.0} /s over {:.1} s; gateway {:.2} cores → {:.0} /s per gateway core{}\n",
                phase.name,
                phase
                    .offered_per_s
                    .map_or("closed loop".to_owned(), |r| format!("{r:.0}")),
                phase.achieved_per_s,
                phase.seconds,
                phase.gateway_cores,
                phase.per_gateway_core,
                phase
                    .database_cores
                    .map_or(String::new(), |c| format!("; PostgreSQL server {c:.2} cores")),
            ));
            for (what, l) in &phase.latencies {
                out.push_str(&format!(
                    "  {what:<28} n={:<7} err={:<4} p50={:>6}µs p90={:>6}µs p99={:>6}µs p99.9={:>6}µs max={:>7}µs\n",
                    l.requests, l.errors, l.p50_us, l.p90_us, l.p99_us, l.p999_us, l.max_us
                ));
            }
            if let Some(a) = &phase.added_us {
                out.push_str(&format!(
                    "  added by the gateway: p50 {}µs p90 {}µs p99 {}µs p99.9 {}µs\n",
                    a.p50, a.p90, a.p99, a.p999
                ));
            }
            if let Some(l) = &phase.generator_lateness {
                out.push_str(&format!(
                    "  generator lateness: p50 {}µs p99 {}µs max {}µs\n",
                    l.p50_us, l.p99_us, l.max_us
                ));
            }
            for note in &phase.notes {
                out.push_str(&format!("  {note}\n"));
            }
        }
        for p in &self.processes {
            out.push_str(&format!(
                "{} (CPU {}): {:.2} CPU s, peak RSS {:.1} MiB\n",
                p.name,
                p.cpu.map_or("-".to_owned(), |c| c.to_string()),
                p.cpu_seconds,
                p.peak_rss_mib
            ));
        }
        if let Some(server) = &self.database_server {
            out.push_str(&format!("PostgreSQL server: {server}\n"));
        }
        if let Some(share) = self.stolen_share {
            out.push_str(&format!(
                "CPU time taken by the host (steal): {:.1} %\n",
                share * 100.0
            ));
        }
        out
    }
}

/// A sandbox and a gateway for one scenario, with the gateway's store. Fields drop in order: the
/// processes are killed before their directory and database go.
struct Env {
    sandbox: Proc,
    gateway: Proc,
    addrs: GatewayAddrs,
    sandbox_url: String,
    driver_cpu: usize,
    _dir: tempfile::TempDir,
    database: Option<PostgresDatabase>,
}

impl Env {
    async fn start(plan: &Plan, store: &str, webhook_workers: u32) -> Result<Env, Error> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let (database, store) = match store {
            "sqlite" => (None, Store::Sqlite(dir.path().join("gateway.db"), "full")),
            // Commits that survive a killed process but do not wait for the disk.
            "sqlite-normal" => (None, Store::Sqlite(dir.path().join("gateway.db"), "normal")),
            "postgres" => {
                let mut database = PostgresDatabase::create(&plan.postgres)?;
                // Off the gateway's CPU, like the sandbox and the generator, unless asked otherwise; a
                // smoke run measures nothing and leaves the server as it is.
                if plan.postgres_pinned && !plan.smoke {
                    database.keep_off(plan.driver_cpu);
                }
                let url = database.url.clone();
                (Some(database), Store::Postgres(url))
            }
            other => return Err(format!("unknown store {other}")),
        };
        let (sandbox, sandbox_url) =
            procs::start_sandbox(&plan.binaries.sandbox, Some(plan.sandbox_cpu), dir.path());
        let launch = GatewayLaunch {
            binary: &plan.binaries.gateway,
            cpu: Some(plan.gateway_cpu),
            wrapper: &plan.gateway_wrapper,
        };
        let (gateway, addrs) =
            procs::start_gateway(launch, dir.path(), &sandbox_url, &store, webhook_workers).await;
        Ok(Env {
            sandbox,
            gateway,
            addrs,
            sandbox_url,
            driver_cpu: plan.driver_cpu,
            _dir: dir,
            database,
        })
    }

    fn database_server(&self) -> Option<String> {
        self.database.as_ref().map(|d| d.placement.clone())
    }

    /// A local PostgreSQL server's CPU seconds so far (`procs::server_cpu_seconds`).
    fn database_cpu_seconds(&self) -> Option<f64> {
        let postmaster = self.database.as_ref()?.postmaster?;
        Some(procs::server_cpu_seconds(postmaster))
    }

    fn processes(&self) -> Vec<ProcessUsage> {
        let usage = |p: &Proc| {
            let u = p.usage();
            ProcessUsage {
                name: p.name,
                cpu: p.cpu,
                cpu_seconds: u.cpu_seconds,
                peak_rss_mib: u.peak_rss_bytes as f64 / MIB,
            }
        };
        let own = procs::usage_of(std::process::id());
        vec![
            usage(&self.gateway),
            usage(&self.sandbox),
            ProcessUsage {
                name: "load generator",
                cpu: Some(self.driver_cpu),
                cpu_seconds: own.cpu_seconds,
                peak_rss_mib: own.peak_rss_bytes as f64 / MIB,
            },
        ]
    }

    async fn clients(&self, connections: usize) -> Result<Vec<Client>, Error> {
        let mut clients = Vec::new();
        for _ in 0..connections {
            clients.push(connect(self.addrs.grpc).await?);
        }
        Ok(clients)
    }
}

/// 1234567 as "1,234,567".
pub(crate) fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

const MIB: f64 = 1024.0 * 1024.0;
const GIB: f64 = 1024.0 * MIB;

/// A database of its own on the PostgreSQL server, dropped afterwards.
struct PostgresDatabase {
    server: String,
    name: String,
    url: String,
    /// The server's processes held on the driver CPU; put back as they were once the database is dropped.
    pinning: Option<procs::ServerPinning>,
    /// Where the server's processes run, as the scenario's result records it.
    placement: String,
    /// The server's postmaster, when the server runs on this machine.
    postmaster: Option<u32>,
}

impl PostgresDatabase {
    fn create(server: &str) -> Result<Self, Error> {
        let name = format!(
            "bench_{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis())
        );
        psql(server, &format!("CREATE DATABASE {name}"))?;
        let postmaster = psql_value(server, "SHOW data_directory")
            .and_then(|directory| procs::postmaster(std::path::Path::new(&directory)));
        Ok(PostgresDatabase {
            server: server.to_owned(),
            url: format!("{}/{name}", server.trim_end_matches('/')),
            name,
            pinning: None,
            placement: match &postmaster {
                Ok(_) => "left to the kernel".to_owned(),
                Err(e) => format!("not on this machine, or not readable ({e})"),
            },
            postmaster: postmaster.ok(),
        })
    }

    /// Holds the server's processes on `cpu` while the database lives, when the server runs on this
    /// machine; says on stderr when it cannot.
    fn keep_off(&mut self, cpu: usize) {
        let Some(postmaster) = self.postmaster else {
            return;
        };
        match procs::ServerPinning::to(cpu, postmaster) {
            Ok(pinning) => {
                self.pinning = Some(pinning);
                self.placement = format!("its processes held on CPU {cpu}");
            }
            Err(e) => {
                eprintln!("PostgreSQL's processes are not pinned to CPU {cpu}: {e}");
                self.placement = format!("not pinned ({e})");
            }
        }
    }
}

impl Drop for PostgresDatabase {
    fn drop(&mut self) {
        let _ = psql(
            &self.server,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

/// The one value `query` returns.
fn psql_value(server: &str, query: &str) -> Result<String, Error> {
    let out = std::process::Command::new("psql")
        .arg(format!("{}/postgres", server.trim_end_matches('/')))
        .args(["-v", "ON_ERROR_STOP=1", "-At", "-c", query])
        .output()
        .map_err(|e| format!("psql: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(format!(
            "psql: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn psql(server: &str, statement: &str) -> Result<(), Error> {
    psql_value(server, statement).map(drop)
}

type Client = OnboardingClient<Channel>;

async fn connect(addr: std::net::SocketAddr) -> Result<Client, Error> {
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| e.to_string())?
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|e| format!("connect: {e}"))?;
    Ok(OnboardingClient::new(channel))
}

/// Creates `count` applications through the gateway; their ids.
/// Opens a `WatchApplication` stream on application `id` and reads its snapshot; `what` names it in errors.
async fn open_watch(
    mut client: Client,
    id: String,
    what: String,
) -> Result<tonic::Streaming<pb::WatchApplicationResponse>, Error> {
    let mut stream = client
        .watch_application(pb::WatchApplicationRequest {
            key: Some(watch_application_request::Key::ApplicationId(id)),
            resume_token: String::new(),
        })
        .await
        .map_err(|e| format!("{what}: {e}"))?
        .into_inner();
    stream.message().await.map_err(|e| format!("{what}: {e}"))?;
    Ok(stream)
}

async fn seed(clients: &[Client], count: usize, prefix: &str) -> Result<Vec<String>, Error> {
    let results: Vec<Result<String, Error>> = stream::iter(0..count)
        .map(|i| {
            let mut client = clients[i % clients.len()].clone();
            let prefix = prefix.to_owned();
            async move {
                let answer = client
                    .submit_idv_session(pb::SubmitIdvSessionRequest {
                        external_reference: format!("{prefix}-{i}"),
                        session_id: format!("{prefix}-session-{i}"),
                        provider_id: "ONDATO".into(),
                        request_id: String::new(),
                    })
                    .await
                    .map_err(|e| format!("seeding: {e}"))?;
                answer
                    .into_inner()
                    .application
                    .map(|a| a.application_id)
                    .ok_or_else(|| "seeding: no application".to_owned())
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    results.into_iter().collect()
}

fn http_client() -> Result<reqwest::Client, Error> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        // As a sender should: the gateway disconnects a keep-alive connection left idle for
        // `webhook.read_timeout` (10 s here), and a post sent on one just as it does fails ("connection
        // closed before message completed"). With reqwest's 90 s default, 2 of about 130,000 ingestion
        // posts did, from connections the pool had left unused that long.
        .pool_idle_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .build()
        .map_err(|e| e.to_string())
}

/// An access token for the harness's own direct calls to the sandbox.
async fn direct_token(http: &reqwest::Client, sandbox: &str) -> Result<String, Error> {
    let answer: serde_json::Value = http
        .post(format!("{sandbox}/auth/v1/oauth2/token"))
        .basic_auth(procs::CLIENT_ID, Some(procs::CLIENT_SECRET))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=authorization_code&code={}",
            procs::DIRECT_AUTH_CODE
        ))
        .send()
        .await
        .map_err(|e| format!("token: {e}"))?
        .json()
        .await
        .map_err(|e| format!("token: {e}"))?;
    answer["access_token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("token: no access_token in {answer}"))
}

/// A closed-loop phase: `(answered per second, seconds, gateway CPU seconds)` and the latency of `what`.
fn closed_loop_phase(name: String, run: (f64, f64, f64), what: &str, latency: Latency) -> Phase {
    let (rate, seconds, cpu) = run;
    Phase {
        name,
        offered_per_s: None,
        achieved_per_s: rate,
        seconds,
        gateway_cpu_seconds: cpu,
        gateway_cores: cpu / seconds,
        per_gateway_core: rate / (cpu / seconds).max(1e-9),
        database_cores: None,
        latencies: vec![(what.to_owned(), latency)],
        added_us: None,
        generator_lateness: None,
        notes: vec![],
    }
}

fn store_label(store: &str) -> &'static str {
    if store == "postgres" {
        "PostgreSQL"
    } else {
        "SQLite"
    }
}

fn cpu_between(before: Usage, after: Usage) -> f64 {
    after.cpu_seconds - before.cpu_seconds
}

pub async fn run(plan: &Plan, scenario: &str, store: &str) -> Result<ScenarioResult, Error> {
    let before = machine::cpu_times();
    let mut result = match scenario {
        "unary" => unary::run(plan).await,
        "fanout" => fanout::run(plan, store).await,
        "watchers" => watchers::run(plan).await,
        "ingest" => ingest::run(plan, store).await,
        other => Err(format!("unknown scenario {other}")),
    }?;
    result.stolen_share = before.and_then(machine::stolen_share_since);
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouped_puts_commas_between_thousands() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(171_145), "171,145");
        assert_eq!(grouped(342_290_586), "342,290,586");
    }
}
