//! Idle watchers per GiB of the gateway's memory.

use super::*;

pub(super) async fn run(plan: &Plan) -> Result<ScenarioResult, Error> {
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
                    open_watch(
                        connections[i / PER_CONNECTION].clone(),
                        apps[i % apps.len()].clone(),
                        format!("watch {i}"),
                    )
                })
                .buffer_unordered(plan.opens_in_flight)
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
            database_cores: None,
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
                format!(
                    "{} connections; opened at {:.0} streams/s, {} at a time",
                    connections.len(),
                    (target - from) as f64 / open_seconds,
                    plan.opens_in_flight
                ),
            ],
        });
    }
    drop(streams);
    Ok(ScenarioResult {
        scenario: "watchers".into(),
        store: "SQLite".into(),
        phases,
        processes: env.processes(),
        database_server: env.database_server(),
        stolen_share: None,
    })
}
