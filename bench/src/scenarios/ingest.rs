//! Webhook ingestion: authenticated, committed to the inbox, acknowledged — with no worker confirming
//! them, so that only ingestion is measured.

use super::*;

pub(super) async fn run(plan: &Plan, store: &str) -> Result<ScenarioResult, Error> {
    let env = Env::start(plan, store, 0).await?;
    let clients = env.clients(2).await?;
    let apps = Arc::new(seed(&clients, if plan.smoke { 50 } else { 1000 }, "ingest").await?);
    let http = http_client()?;
    let url = Arc::new(format!("http://{}/webhooks/connectpay", env.addrs.webhook));
    let mut phases = Vec::new();
    for workers in [16usize, 64] {
        let before = env.gateway.usage();
        let database_before = env.database_cpu_seconds();
        let started = Instant::now();
        // Failed posts, by what the generator saw: a status, or why no answer came.
        let failures = load::Tally::default();
        let post = {
            let (http, url, apps) = (http.clone(), url.clone(), apps.clone());
            let failures = failures.clone();
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
                let failures = failures.clone();
                async move {
                    let failure = match request.send().await {
                        Ok(answer) if answer.status().is_success() => return true,
                        Ok(answer) => format!("answered {}", answer.status()),
                        Err(e) => format!("no answer: {}", innermost(&e)),
                    };
                    failures.count(failure);
                    false
                }
            }
        };
        let (rate, latency) = load::saturate(workers, plan.phase, post).await;
        let seconds = started.elapsed().as_secs_f64();
        let cpu = cpu_between(before, env.gateway.usage());
        let mut phase = closed_loop_phase(
            format!("closed loop, {workers} webhooks in flight"),
            (rate, seconds, cpu),
            "webhook acknowledged",
            latency,
        );
        phase.database_cores = database_before
            .zip(env.database_cpu_seconds())
            .map(|(before, after)| (after - before) / seconds);
        phase
            .notes
            .extend(failures.notes("posts", |failure| format!(": {failure}")));
        phases.push(phase);
    }
    Ok(ScenarioResult {
        scenario: "ingest".into(),
        store: store_label(store).into(),
        phases,
        processes: env.processes(),
        database_server: env.database_server(),
        stolen_share: None,
    })
}

/// The deepest cause of a failed post (reqwest's own message only names the request).
fn innermost(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}
