//! Unary overhead: `GetApplication` through the gateway against a direct GET of the same application.

use super::*;

pub(super) async fn run(plan: &Plan) -> Result<ScenarioResult, Error> {
    let env = Env::start(plan, "sqlite", 16).await?;
    let clients = env.clients(4).await?;
    let apps = Arc::new(seed(&clients, if plan.smoke { 50 } else { 1000 }, "unary").await?);
    let http = http_client()?;
    let token = direct_token(&http, &env.sandbox_url).await?;
    let paths = Paths {
        clients: clients.clone(),
        http: http.clone(),
        token,
        direct_urls: Arc::new(direct_urls(&env.sandbox_url, &apps)?),
        apps: apps.clone(),
    };
    // Warm-up: connections, caches, the allocator.
    let warm_up = Duration::from_secs(1);
    both_paths(&env, &paths, 500.0, warm_up, Turns::Together, "warm-up").await?;

    let mut phases = Vec::new();
    for &rate in &plan.unary_rates {
        let name = format!("{} req/s", grouped(rate as u64));
        phases.push(both_paths(&env, &paths, rate, plan.phase, Turns::Together, &name).await?);
    }

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
    let slice = (plan.phase / 4).min(Duration::from_millis(500));
    phases.push(
        both_paths(
            &env,
            &paths,
            seventy,
            plan.phase,
            Turns::Slices(slice),
            "70 % of maximum",
        )
        .await?,
    );
    Ok(ScenarioResult {
        scenario: "unary".into(),
        store: "SQLite".into(),
        phases,
        processes: env.processes(),
        database_server: env.database_server(),
        stolen_share: None,
    })
}

#[derive(Clone)]
struct Paths {
    clients: Vec<Client>,
    http: reqwest::Client,
    token: String,
    /// The direct GET of each application, parsed once: at 15,000 calls/s, parsing each request's URL
    /// was a visible share of the generator's CPU, which it shares with the sandbox.
    direct_urls: Arc<Vec<reqwest::Url>>,
    apps: Arc<Vec<String>>,
}

fn direct_urls(sandbox: &str, apps: &[String]) -> Result<Vec<reqwest::Url>, Error> {
    apps.iter()
        .map(|id| {
            reqwest::Url::parse(&format!(
                "{sandbox}/baas/onboarding/personal/applications/{id}"
            ))
            .map_err(|e| e.to_string())
        })
        .collect()
}

pub(super) fn get(id: &str) -> pb::GetApplicationRequest {
    pb::GetApplicationRequest {
        key: Some(get_application_request::Key::ApplicationId(id.to_owned())),
    }
}

/// How the two paths share a phase's ticks.
#[derive(Clone, Copy)]
enum Turns {
    /// Every tick asks both ways, which of the two first alternating: the closest comparison, while the
    /// sandbox's core has room for both.
    Together,
    /// The paths take turns, each alone at the full rate for a slice of this length. At 70 % of the
    /// maximum, both at once would ask the sandbox for 1.4 times what it answered at the maximum, on the
    /// core it shares with the generator, and measure that core's overload instead of the gateway.
    Slices(Duration),
}

impl Turns {
    /// Which paths tick `i` of a phase at `rate` takes: `(through the gateway, direct)`.
    fn paths(self, i: u64, rate: f64) -> (bool, bool) {
        match self {
            Turns::Together => (true, true),
            Turns::Slices(slice) => {
                let turn = (i as f64 / rate / slice.as_secs_f64()) as u64;
                let gateway_turn = turn.is_multiple_of(2);
                (gateway_turn, !gateway_turn)
            }
        }
    }

    /// The share of the phase each path had.
    fn share(self) -> f64 {
        match self {
            Turns::Together => 1.0,
            Turns::Slices(_) => 0.5,
        }
    }
}

/// One open-loop phase at `rate`: each tick asks for one application through the gateway, directly from
/// the sandbox, or both, as `turns` says.
async fn both_paths(
    env: &Env,
    paths: &Paths,
    rate: f64,
    duration: Duration,
    turns: Turns,
    name: &str,
) -> Result<Phase, Error> {
    let requests = (rate * duration.as_secs_f64()).round().max(1.0) as u64;
    let (via_gateway, direct) = (Recorder::default(), Recorder::default());
    // Failed calls through the gateway, by gRPC status code.
    let refused = load::Tally::default();
    let before = env.gateway.usage();
    let started = Instant::now();
    let ticks = (
        paths.clone(),
        via_gateway.clone(),
        direct.clone(),
        refused.clone(),
    );
    let lateness = load::paced(rate, requests, move |i, tasks| {
        let (paths, via_gateway, direct, refused) = &ticks;
        let index = i as usize % paths.apps.len();
        let id = paths.apps[index].clone();
        let gateway_call = {
            let mut client = paths.clients[i as usize % paths.clients.len()].clone();
            let (recorder, id, refused) = (via_gateway.clone(), id.clone(), refused.clone());
            async move {
                let sent = Instant::now();
                let answer = client.get_application(get(&id)).await;
                recorder.record(sent.elapsed(), answer.is_ok());
                if let Err(status) = answer {
                    refused.count(format!("{:?}", status.code()));
                }
            }
        };
        let direct_call = {
            let request = paths
                .http
                .get(paths.direct_urls[index].clone())
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
        match turns.paths(i, rate) {
            (true, true) if i % 2 == 0 => {
                tasks.push(tokio::spawn(gateway_call));
                tasks.push(tokio::spawn(direct_call));
            }
            (true, true) => {
                tasks.push(tokio::spawn(direct_call));
                tasks.push(tokio::spawn(gateway_call));
            }
            (true, false) => tasks.push(tokio::spawn(gateway_call)),
            (false, _) => tasks.push(tokio::spawn(direct_call)),
        }
    })
    .await
    .map_err(|e| format!("the pacing timer: {e}"))?;
    // With turns, the gateway's rate and cores are over its own slices: it idles through the others.
    let seconds = started.elapsed().as_secs_f64() * turns.share();
    let cpu = cpu_between(before, env.gateway.usage());
    let (g, d) = (via_gateway.latency(), direct.latency());
    let added = Added {
        p50: g.p50_us as i64 - d.p50_us as i64,
        p90: g.p90_us as i64 - d.p90_us as i64,
        p99: g.p99_us as i64 - d.p99_us as i64,
        p999: g.p999_us as i64 - d.p999_us as i64,
    };
    let achieved = (g.requests - g.errors) as f64 / seconds;
    Ok(Phase {
        name: name.to_owned(),
        offered_per_s: Some(rate),
        achieved_per_s: achieved,
        seconds,
        gateway_cpu_seconds: cpu,
        gateway_cores: cpu / seconds,
        per_gateway_core: achieved / (cpu / seconds).max(1e-9),
        database_cores: None,
        latencies: vec![
            ("GetApplication via gateway".into(), g),
            ("GET direct from the sandbox".into(), d),
        ],
        added_us: Some(added),
        generator_lateness: Some(lateness),
        notes: turns_note(turns)
            .into_iter()
            .chain(refused.notes("calls through the gateway", |code| format!(" with {code}")))
            .collect(),
    })
}

fn turns_note(turns: Turns) -> Option<String> {
    match turns {
        Turns::Together => None,
        Turns::Slices(slice) => Some(format!(
            "the paths took turns, each alone at the full rate for {} ms at a time; \
             seconds, rate and cores are the gateway's own slices",
            slice.as_millis()
        )),
    }
}
