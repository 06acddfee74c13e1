//! Webhook → watcher: the time from a notification's POST to its change on a `WatchApplication`
//! stream (and on `WatchApplications`), through the confirming GET and the durable commit.

use super::*;

pub(super) async fn run(plan: &Plan, store: &str) -> Result<ScenarioResult, Error> {
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
            let opening = open_watch(
                connections[i / 100].clone(),
                apps[i].clone(),
                "watch".into(),
            );
            let (sent, recorder) = (sent.clone(), to_watcher.clone());
            async move {
                let mut stream = opening.await?;
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
    let delivered = deliver(&env, &http, &apps, 0..count, rate, &sent).await?;
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
    let delivered = deliver(&env, &http, &apps, range, rate, &sent).await?;
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
        database_server: env.database_server(),
        stolen_share: None,
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
    /// A local PostgreSQL server's CPU seconds before and after.
    database: Option<(f64, f64)>,
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
            database_cores: self
                .database
                .map(|(before, after)| (after - before) / seconds),
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
) -> Result<Delivered, Error> {
    let acknowledged = Recorder::default();
    let before = env.gateway.usage();
    let database_before = env.database_cpu_seconds();
    let started = Instant::now();
    let url = format!("http://{}/webhooks/connectpay", env.addrs.webhook);
    let first = range.start;
    let ticks = (
        http.clone(),
        apps.clone(),
        sent.clone(),
        acknowledged.clone(),
    );
    let lateness = load::paced(rate, range.len() as u64, move |n, posts| {
        let (http, apps, sent, acknowledged) = &ticks;
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
    .await
    .map_err(|e| format!("the pacing timer: {e}"))?;
    Ok(Delivered {
        acknowledged: acknowledged.latency(),
        lateness,
        seconds: started.elapsed().as_secs_f64(),
        before,
        gateway: env.gateway.usage(),
        database: database_before.zip(env.database_cpu_seconds()),
        rate,
    })
}
