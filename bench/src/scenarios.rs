//! The scenarios: unary overhead against direct calls, webhook → watcher latency, idle watchers per GiB,
//! and durable webhook ingestion. Each starts its own sandbox and gateway, so no scenario inherits another's
//! state.

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
    procs::{self, GatewayAddrs, Proc, Store, Usage},
};

pub struct Binaries {
    pub gateway: PathBuf,
    pub sandbox: PathBuf,
}

pub struct Plan {
    pub binaries: Binaries,
    pub smoke: bool,
    pub phase: Duration,
    pub watchers: Vec<usize>,
    pub gateway_cpu: usize,
    pub driver_cpu: usize,
    pub postgres: String,
}

type Error = String;

/// The machine a run was made on.
#[derive(Debug, Serialize)]
pub struct Machine {
    pub date: String,
    pub cpus: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub memory_gib: f64,
    /// How the processes were pinned (`taskset -c`), or why they were not.
    pub pinning: String,
    pub open_files: u64,
}

impl Machine {
    pub fn describe(plan: &Plan) -> Machine {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let cpu_model = read("/proc/cpuinfo")
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
            .unwrap_or_default();
        let memory_gib = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
            / (1024.0 * 1024.0);
        // Counted before this process pins itself to one of them.
        let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
        let pinned = procs::pin_self(plan.driver_cpu);
        let pinning = if pinned {
            format!(
                "gateway on CPU {}; sandbox and load generator on CPU {}",
                plan.gateway_cpu, plan.driver_cpu
            )
        } else {
            "not pinned (taskset unavailable)".to_owned()
        };
        Machine {
            date: command_output("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
            cpus,
            cpu_model,
            kernel: command_output("uname", &["-sr"]),
            memory_gib,
            pinning,
            open_files: procs::raise_open_files(),
        }
    }

    pub fn summary(&self) -> String {
        format!(
            "{} · {} × {} · {:.1} GiB · {} · {} · open files {}",
            self.date,
            self.cpus,
            self.cpu_model,
            self.memory_gib,
            self.kernel,
            self.pinning,
            self.open_files
        )
    }
}

fn command_output(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

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
}

impl ScenarioResult {
    pub fn summary(&self) -> String {
        let mut out = String::new();
        for phase in &self.phases {
            out.push_str(&format!(
                "{}: offered {} /s, achieved {:.0} /s over {:.1} s; gateway {:.2} cores → {:.0} /s per gateway core\n",
                phase.name,
                phase
                    .offered_per_s
                    .map_or("closed loop".to_owned(), |r| format!("{r:.0}")),
                phase.achieved_per_s,
                phase.seconds,
                phase.gateway_cores,
                phase.per_gateway_core,
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
    _database: Option<PostgresDatabase>,
}

impl Env {
    async fn start(plan: &Plan, store: &str, webhook_workers: u32) -> Result<Env, Error> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let (database, store) = match store {
            "sqlite" => (None, Store::Sqlite(dir.path().join("gateway.db"))),
            "postgres" => {
                let database = PostgresDatabase::create(&plan.postgres)?;
                let url = database.url.clone();
                (Some(database), Store::Postgres(url))
            }
            other => return Err(format!("unknown store {other}")),
        };
        let (sandbox, sandbox_url) =
            procs::start_sandbox(&plan.binaries.sandbox, Some(plan.driver_cpu), dir.path());
        let (gateway, addrs) = procs::start_gateway(
            &plan.binaries.gateway,
            Some(plan.gateway_cpu),
            dir.path(),
            &sandbox_url,
            &store,
            webhook_workers,
        )
        .await;
        Ok(Env {
            sandbox,
            gateway,
            addrs,
            sandbox_url,
            driver_cpu: plan.driver_cpu,
            _dir: dir,
            _database: database,
        })
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

const MIB: f64 = 1024.0 * 1024.0;
const GIB: f64 = 1024.0 * MIB;

/// A database of its own on the PostgreSQL server, dropped afterwards.
struct PostgresDatabase {
    server: String,
    name: String,
    url: String,
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
        Ok(PostgresDatabase {
            server: server.to_owned(),
            url: format!("{}/{name}", server.trim_end_matches('/')),
            name,
        })
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

fn psql(server: &str, statement: &str) -> Result<(), Error> {
    let out = std::process::Command::new("psql")
        .arg(format!("{}/postgres", server.trim_end_matches('/')))
        .args(["-v", "ON_ERROR_STOP=1", "-q", "-c", statement])
        .output()
        .map_err(|e| format!("psql: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "psql: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
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
    match scenario {
        "unary" => unary(plan).await,
        "fanout" => fanout(plan, store).await,
        "watchers" => watchers(plan).await,
        "ingest" => ingest(plan, store).await,
        other => Err(format!("unknown scenario {other}")),
    }
}

// ---------------------------------------------------------------------------------------------------------
// 1. Unary overhead: GetApplication through the gateway against a direct GET of the same application.
// ---------------------------------------------------------------------------------------------------------

async fn unary(plan: &Plan) -> Result<ScenarioResult, Error> {
    let env = Env::start(plan, "sqlite", 16).await?;
    let clients = env.clients(4).await?;
    let apps = Arc::new(seed(&clients, if plan.smoke { 50 } else { 1000 }, "unary").await?);
    let http = http_client()?;
    let token = direct_token(&http, &env.sandbox_url).await?;
    let paths = Paths {
        clients: clients.clone(),
        http: http.clone(),
        token,
        sandbox: env.sandbox_url.clone(),
        apps: apps.clone(),
    };
    // Warm-up: connections, caches, the allocator.
    both_paths(&env, &paths, 500.0, Duration::from_secs(1), "warm-up").await;

    let mut phases = vec![both_paths(&env, &paths, 1000.0, plan.phase, "1,000 req/s").await];

    // The most the gateway answers: closed loop, 64 calls in flight over 4 connections.
    let before = env.gateway.usage();
    let started = Instant::now();
    let saturating = {
        let (clients, apps) = (clients.clone(), apps.clone());
        move |i: u64| {
            let mut client = clients[i as usize % clients.len()].clone();
            let id = apps[i as usize % apps.len()].clone();
            async move { client.get_application(get(&id)).await.is_ok() }
        }
    };
    let (max, latency) = load::saturate(64, plan.phase, saturating).await;
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_between(before, env.gateway.usage());
    phases.push(closed_loop_phase(
        "maximum (closed loop, 64 in flight)".into(),
        (max, seconds, cpu),
        "GetApplication via gateway",
        latency,
    ));
    let seventy = (max * 0.7).floor();
    phases.push(both_paths(&env, &paths, seventy, plan.phase, "70 % of maximum").await);
    Ok(ScenarioResult {
        scenario: "unary".into(),
        store: "SQLite".into(),
        phases,
        processes: env.processes(),
    })
}

#[derive(Clone)]
struct Paths {
    clients: Vec<Client>,
    http: reqwest::Client,
    token: String,
    sandbox: String,
    apps: Arc<Vec<String>>,
}

fn get(id: &str) -> pb::GetApplicationRequest {
    pb::GetApplicationRequest {
        key: Some(get_application_request::Key::ApplicationId(id.to_owned())),
    }
}

/// One open-loop phase at `rate`: each tick asks for one application through the gateway and, directly,
/// from the sandbox (which of the two goes first alternates).
async fn both_paths(env: &Env, paths: &Paths, rate: f64, duration: Duration, name: &str) -> Phase {
    let requests = (rate * duration.as_secs_f64()).round().max(1.0) as u64;
    let (via_gateway, direct) = (Recorder::default(), Recorder::default());
    // Failed calls through the gateway, by gRPC status code.
    let refused: Arc<std::sync::Mutex<std::collections::BTreeMap<String, u64>>> = Arc::default();
    let mut tasks = Vec::with_capacity(requests as usize * 2);
    let before = env.gateway.usage();
    let started = Instant::now();
    let lateness = load::paced(rate, requests, |i| {
        let id = paths.apps[i as usize % paths.apps.len()].clone();
        let gateway_call = {
            let mut client = paths.clients[i as usize % paths.clients.len()].clone();
            let (recorder, id, refused) = (via_gateway.clone(), id.clone(), refused.clone());
            async move {
                let sent = Instant::now();
                let answer = client.get_application(get(&id)).await;
                recorder.record(sent.elapsed(), answer.is_ok());
                if let Err(status) = answer {
                    *refused
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .entry(format!("{:?}", status.code()))
                        .or_default() += 1;
                }
            }
        };
        let direct_call = {
            let request = paths
                .http
                .get(format!(
                    "{}/baas/onboarding/personal/applications/{id}",
                    paths.sandbox
                ))
                .bearer_auth(&paths.token);
            let recorder = direct.clone();
            async move {
                let sent = Instant::now();
                let ok = match request.send().await {
                    Ok(answer) if answer.status().is_success() => answer.bytes().await.is_ok(),
                    _ => false,
                };
                recorder.record(sent.elapsed(), ok);
            }
        };
        if i % 2 == 0 {
            tasks.push(tokio::spawn(gateway_call));
            tasks.push(tokio::spawn(direct_call));
        } else {
            tasks.push(tokio::spawn(direct_call));
            tasks.push(tokio::spawn(gateway_call));
        }
    })
    .await;
    for task in tasks {
        let _ = task.await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_between(before, env.gateway.usage());
    let (g, d) = (via_gateway.latency(), direct.latency());
    let added = Added {
        p50: g.p50_us as i64 - d.p50_us as i64,
        p90: g.p90_us as i64 - d.p90_us as i64,
        p99: g.p99_us as i64 - d.p99_us as i64,
        p999: g.p999_us as i64 - d.p999_us as i64,
    };
    let achieved = (g.requests - g.errors) as f64 / seconds;
    Phase {
        name: name.to_owned(),
        offered_per_s: Some(rate),
        achieved_per_s: achieved,
        seconds,
        gateway_cpu_seconds: cpu,
        gateway_cores: cpu / seconds,
        per_gateway_core: achieved / (cpu / seconds).max(1e-9),
        latencies: vec![
            ("GetApplication via gateway".into(), g),
            ("GET direct from the sandbox".into(), d),
        ],
        added_us: Some(added),
        generator_lateness: Some(lateness),
        notes: refused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(code, n)| format!("{n} calls through the gateway failed with {code}"))
            .collect(),
    }
}

// ---------------------------------------------------------------------------------------------------------
// 2. Webhook → watcher: the time from a notification's POST to its change on a WatchApplication stream (and
//    on WatchApplications), through the confirming GET and the durable commit.
// ---------------------------------------------------------------------------------------------------------

async fn fanout(plan: &Plan, store: &str) -> Result<ScenarioResult, Error> {
    let env = Env::start(plan, store, 16).await?;
    let http = http_client()?;
    // The harness plays ConnectPay's notifications itself, so it knows when each was sent.
    http.put(format!("{}/_sandbox/webhooks", env.sandbox_url))
        .json(&json!({"mode": "drop"}))
        .send()
        .await
        .and_then(|a| a.error_for_status())
        .map_err(|e| format!("switching the sandbox's webhooks off: {e}"))?;
    let rate = if plan.smoke { 200.0 } else { 1000.0 };
    let count = (rate * plan.phase.as_secs_f64()) as usize;
    let watchers = if plan.smoke { count } else { count.max(10_000) };
    let consumers = if plan.smoke { 10 } else { 100 };
    let seed_clients = env.clients(4).await?;
    // The watched applications, then as many again for the WatchApplications phase.
    let apps = Arc::new(seed(&seed_clients, watchers + count, "fanout").await?);
    let index: Arc<HashMap<String, usize>> = Arc::new(
        apps.iter()
            .enumerate()
            .map(|(i, id)| (id.clone(), i))
            .collect(),
    );
    let sent: Arc<Vec<OnceLock<Instant>>> =
        Arc::new((0..apps.len()).map(|_| OnceLock::new()).collect());
    approve_at_the_sandbox(&http, &env.sandbox_url, &apps).await?;

    // Phase 1: one WatchApplication stream per application, 100 streams per connection.
    let connections = env.clients(watchers.div_ceil(100)).await?;
    let to_watcher = Recorder::default();
    let opened: Vec<Result<tokio::task::JoinHandle<()>, Error>> = stream::iter(0..watchers)
        .map(|i| {
            let mut client = connections[i / 100].clone();
            let (id, sent, recorder) = (apps[i].clone(), sent.clone(), to_watcher.clone());
            async move {
                let mut stream = client
                    .watch_application(pb::WatchApplicationRequest {
                        key: Some(watch_application_request::Key::ApplicationId(id)),
                        resume_token: String::new(),
                    })
                    .await
                    .map_err(|e| format!("watch: {e}"))?
                    .into_inner();
                // The snapshot first.
                stream.message().await.map_err(|e| format!("watch: {e}"))?;
                Ok(tokio::spawn(async move {
                    while let Ok(Some(message)) = stream.message().await {
                        if let Some(pb::watch_application_response::Event::Change(_)) =
                            message.event
                        {
                            if let Some(at) = sent.get(i).and_then(OnceLock::get) {
                                recorder.record(at.elapsed(), true);
                            }
                            return;
                        }
                    }
                }))
            }
        })
        .buffer_unordered(256)
        .collect()
        .await;
    let watching: Vec<_> = opened.into_iter().collect::<Result<_, _>>()?;
    let delivered = deliver(&env, &http, &apps, 0..count, rate, &sent).await;
    wait_for(watching.iter().take(count)).await;
    let first = delivered.phase(
        format!(
            "{rate:.0} webhooks/s on distinct applications, {watchers} WatchApplication streams over {} connections",
            watchers.div_ceil(100)
        ),
        count,
        vec![("webhook → WatchApplication".into(), expect(to_watcher.latency(), count as u64))],
    );
    for task in watching {
        task.abort();
    }

    // Phase 2: WatchApplications consumers, each on its own connection, each receiving every change.
    let to_consumer = Recorder::default();
    let mut consumer_tasks = Vec::new();
    let range = watchers..watchers + count;
    for _ in 0..consumers {
        let mut client = connect(env.addrs.grpc).await?;
        let mut stream = client
            .watch_applications(pb::WatchApplicationsRequest {
                resume_token: String::new(),
            })
            .await
            .map_err(|e| format!("watch all: {e}"))?
            .into_inner();
        let (index, sent, recorder) = (index.clone(), sent.clone(), to_consumer.clone());
        let range = range.clone();
        consumer_tasks.push(tokio::spawn(async move {
            let mut seen = 0;
            while let Ok(Some(message)) = stream.message().await {
                if let Some(watch_applications_response::Event::Change(app)) = message.event
                    && let Some(i) = index.get(&app.application_id).filter(|i| range.contains(i))
                    && let Some(at) = sent.get(*i).and_then(OnceLock::get)
                {
                    recorder.record(at.elapsed(), true);
                    seen += 1;
                    if seen == range.len() {
                        return;
                    }
                }
            }
        }));
    }
    let delivered = deliver(&env, &http, &apps, range, rate, &sent).await;
    wait_for(consumer_tasks.iter()).await;
    let second = delivered.phase(
        format!("{rate:.0} webhooks/s, {consumers} WatchApplications consumers"),
        count,
        vec![(
            "webhook → WatchApplications".into(),
            expect(to_consumer.latency(), (count * consumers) as u64),
        )],
    );
    for task in consumer_tasks {
        task.abort();
    }
    Ok(ScenarioResult {
        scenario: "fanout".into(),
        store: store_label(store).into(),
        phases: vec![first, second],
        processes: env.processes(),
    })
}

/// Moves every application to IDV_APPROVED at the sandbox (ConnectPay's side of the change), before any
/// clock starts: the gateway learns of it only from the notifications the harness sends.
async fn approve_at_the_sandbox(
    http: &reqwest::Client,
    sandbox: &str,
    apps: &[String],
) -> Result<(), Error> {
    let changed: Vec<Result<(), Error>> = stream::iter(apps.iter())
        .map(|id| {
            let request = http
                .post(format!("{sandbox}/_sandbox/applications/{id}/status"))
                .json(&json!({"status": "IDV_APPROVED"}));
            async move {
                request
                    .send()
                    .await
                    .and_then(|a| a.error_for_status())
                    .map(|_| ())
                    .map_err(|e| format!("sandbox status: {e}"))
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    changed
        .into_iter()
        .collect::<Result<Vec<()>, _>>()
        .map(drop)
}

/// Waits for tasks to finish, 30 s at most in all.
async fn wait_for<'a>(tasks: impl Iterator<Item = &'a tokio::task::JoinHandle<()>>) {
    let give_up = Instant::now() + Duration::from_secs(30);
    for task in tasks {
        while !task.is_finished() && Instant::now() < give_up {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// `latency` over `expected` deliveries: those that never came are errors.
fn expect(mut latency: Latency, expected: u64) -> Latency {
    latency.errors = expected.saturating_sub(latency.requests);
    latency.requests = expected;
    latency
}

/// What sending a run of notifications cost and how they were acknowledged.
struct Delivered {
    acknowledged: Latency,
    lateness: Latency,
    /// From the first notification sent to the last one acknowledged.
    seconds: f64,
    before: Usage,
    gateway: Usage,
    rate: f64,
}

impl Delivered {
    fn phase(self, name: String, count: usize, mut latencies: Vec<(String, Latency)>) -> Phase {
        let seconds = self.seconds;
        let cpu = cpu_between(self.before, self.gateway);
        latencies.insert(0, ("webhook acknowledged".into(), self.acknowledged));
        Phase {
            name,
            offered_per_s: Some(self.rate),
            achieved_per_s: count as f64 / seconds,
            seconds,
            gateway_cpu_seconds: cpu,
            gateway_cores: cpu / seconds,
            per_gateway_core: count as f64 / seconds / (cpu / seconds).max(1e-9),
            latencies,
            added_us: None,
            generator_lateness: Some(self.lateness),
            notes: vec![
                "stream rows count as errors the changes that never arrived within 30 s".into(),
            ],
        }
    }
}

/// Sends, at `rate`, the notification of each application in `range` (IDV approved), as ConnectPay would.
async fn deliver(
    env: &Env,
    http: &reqwest::Client,
    apps: &Arc<Vec<String>>,
    range: std::ops::Range<usize>,
    rate: f64,
    sent: &Arc<Vec<OnceLock<Instant>>>,
) -> Delivered {
    let acknowledged = Recorder::default();
    let before = env.gateway.usage();
    let started = Instant::now();
    let url = format!("http://{}/webhooks/connectpay", env.addrs.webhook);
    let mut posts = Vec::with_capacity(range.len());
    let first = range.start;
    let lateness = load::paced(rate, range.len() as u64, |n| {
        let i = first + n as usize;
        let body = json!({"application": {"applicationId": apps[i], "status": "IDV_APPROVED"}});
        let request = http
            .post(&url)
            .header("x-connectpay-webhook-token", procs::WEBHOOK_TOKEN)
            .json(&body);
        let (sent, recorder) = (sent.clone(), acknowledged.clone());
        posts.push(tokio::spawn(async move {
            let at = Instant::now();
            let _ = sent[i].set(at);
            let ok = request.send().await.is_ok_and(|a| a.status().is_success());
            recorder.record(at.elapsed(), ok);
        }));
    })
    .await;
    for post in posts {
        let _ = post.await;
    }
    Delivered {
        acknowledged: acknowledged.latency(),
        lateness,
        seconds: started.elapsed().as_secs_f64(),
        before,
        gateway: env.gateway.usage(),
        rate,
    }
}

// ---------------------------------------------------------------------------------------------------------
// 3. Idle watchers per GiB of the gateway's memory.
// ---------------------------------------------------------------------------------------------------------

async fn watchers(plan: &Plan) -> Result<ScenarioResult, Error> {
    let env = Env::start(plan, "sqlite", 16).await?;
    let clients = env.clients(4).await?;
    let apps = Arc::new(seed(&clients, if plan.smoke { 10 } else { 100 }, "idle").await?);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let base = env.gateway.usage();
    let mut phases = Vec::new();
    let mut streams = Vec::new();
    let mut connections: Vec<Client> = Vec::new();
    let mut targets = plan.watchers.clone();
    targets.sort_unstable();
    // 1,000 streams per connection (the gateway allows up to max_concurrent_streams, here 2,000).
    const PER_CONNECTION: usize = 1000;
    for target in targets {
        let started = Instant::now();
        while connections.len() < target.div_ceil(PER_CONNECTION) {
            connections.push(connect(env.addrs.grpc).await?);
        }
        let from = streams.len();
        let opened: Vec<Result<tonic::Streaming<pb::WatchApplicationResponse>, Error>> =
            stream::iter(from..target)
                .map(|i| {
                    let mut client = connections[i / PER_CONNECTION].clone();
                    let id = apps[i % apps.len()].clone();
                    async move {
                        let mut stream = client
                            .watch_application(pb::WatchApplicationRequest {
                                key: Some(watch_application_request::Key::ApplicationId(id)),
                                resume_token: String::new(),
                            })
                            .await
                            .map_err(|e| format!("watch {i}: {e}"))?
                            .into_inner();
                        stream
                            .message()
                            .await
                            .map_err(|e| format!("watch {i}: {e}"))?;
                        Ok(stream)
                    }
                })
                .buffer_unordered(512)
                .collect()
                .await;
        for stream in opened {
            streams.push(stream?);
        }
        let open_seconds = started.elapsed().as_secs_f64();
        // Let the allocator settle after the burst of opens.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = env.gateway.usage();
        let grown = now.rss_bytes.saturating_sub(base.rss_bytes) as f64;
        let per_gib = target as f64 / (grown / GIB).max(1e-9);
        phases.push(Phase {
            name: format!("{target} idle WatchApplication streams"),
            offered_per_s: None,
            achieved_per_s: (target - from) as f64 / open_seconds,
            seconds: open_seconds,
            gateway_cpu_seconds: cpu_between(base, now),
            gateway_cores: 0.0,
            per_gateway_core: 0.0,
            latencies: vec![],
            added_us: None,
            generator_lateness: None,
            notes: vec![
                format!(
                    "gateway RSS {:.1} MiB (before the streams {:.1} MiB): {:.1} KiB per stream → {:.0} idle watchers per GiB",
                    now.rss_bytes as f64 / MIB,
                    base.rss_bytes as f64 / MIB,
                    grown / 1024.0 / target as f64,
                    per_gib
                ),
                format!("{} connections; opened at {:.0} streams/s", connections.len(), (target - from) as f64 / open_seconds),
            ],
        });
    }
    drop(streams);
    Ok(ScenarioResult {
        scenario: "watchers".into(),
        store: "SQLite".into(),
        phases,
        processes: env.processes(),
    })
}

// ---------------------------------------------------------------------------------------------------------
// 4. Webhook ingestion: authenticated, committed to the inbox, acknowledged — with no worker confirming them,
//    so that only ingestion is measured.
// ---------------------------------------------------------------------------------------------------------

async fn ingest(plan: &Plan, store: &str) -> Result<ScenarioResult, Error> {
    let env = Env::start(plan, store, 0).await?;
    let clients = env.clients(2).await?;
    let apps = Arc::new(seed(&clients, if plan.smoke { 50 } else { 1000 }, "ingest").await?);
    let http = http_client()?;
    let url = Arc::new(format!("http://{}/webhooks/connectpay", env.addrs.webhook));
    let mut phases = Vec::new();
    for workers in [16usize, 64] {
        let before = env.gateway.usage();
        let started = Instant::now();
        let post = {
            let (http, url, apps) = (http.clone(), url.clone(), apps.clone());
            let run = started.elapsed().as_nanos();
            move |i: u64| {
                let body = json!({
                    "eventType": "BaaSPersonIdv.Approved",
                    "eventId": format!("bench-{workers}-{run}-{i}"),
                    "data": {"applicationId": apps[i as usize % apps.len()], "status": "IDV_APPROVED"},
                });
                let request = http
                    .post(url.as_str())
                    .header("x-connectpay-webhook-token", procs::WEBHOOK_TOKEN)
                    .json(&body);
                async move { request.send().await.is_ok_and(|a| a.status().is_success()) }
            }
        };
        let (rate, latency) = load::saturate(workers, plan.phase, post).await;
        let seconds = started.elapsed().as_secs_f64();
        let cpu = cpu_between(before, env.gateway.usage());
        phases.push(closed_loop_phase(
            format!("closed loop, {workers} webhooks in flight"),
            (rate, seconds, cpu),
            "webhook acknowledged",
            latency,
        ));
    }
    Ok(ScenarioResult {
        scenario: "ingest".into(),
        store: store_label(store).into(),
        phases,
        processes: env.processes(),
    })
}
