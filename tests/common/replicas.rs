//! One onboarding driven across several replicas: each call goes to the next replica until one answers,
//! as a caller behind a load balancer would see it. Used by `cluster.rs`.

use std::time::Duration;

use base64::Engine;
use onboarding_gateway::grpc::pb::{
    self, ApplicationStatus as S, onboarding_client::OnboardingClient,
};
use tonic::transport::Channel;

use super::{
    checker::{StreamRecord, follow, is_terminal, with_retries},
    status_of, valid_kyc,
};

/// How long a step across replicas may take, restarts and failovers included.
pub const LONG: Duration = Duration::from_secs(90);

/// Polling fast enough that a flow whose webhooks are dropped still ends within a test.
pub const FAST_POLLS: [(&str, &str); 4] = [
    ("POLL__IDV_INTERVAL", "300ms"),
    ("POLL__REVIEW_INTERVAL", "300ms"),
    ("POLL__MAX_INTERVAL", "1s"),
    ("POLL__MAX_REQUESTS_PER_SECOND", "100"),
];

async fn submit_to(
    clients: &[OnboardingClient<Channel>],
    reference: String,
    session: String,
) -> pb::Application {
    let request_id = uuid::Uuid::new_v4().to_string();
    with_retries(LONG, |n| {
        let mut client = clients[n % clients.len()].clone();
        let request = pb::SubmitIdvSessionRequest {
            external_reference: reference.clone(),
            session_id: session.clone(),
            provider_id: "ONDATO".into(),
            request_id: request_id.clone(),
        };
        async move {
            client
                .submit_idv_session(request)
                .await
                .map(|r| r.into_inner().application.unwrap())
        }
    })
    .await
    .expect("the submit succeeds on some replica")
}

async fn initiate_on(clients: &[OnboardingClient<Channel>], id: &str, kyc: pb::PersonalKyc) {
    let request_id = uuid::Uuid::new_v4().to_string();
    with_retries(LONG, |n| {
        let mut client = clients[n % clients.len()].clone();
        let request = pb::InitiateOnboardingRequest {
            application_id: id.into(),
            request_id: request_id.clone(),
            kyc: Some(kyc.clone()),
        };
        async move { client.initiate_onboarding(request).await.map(drop) }
    })
    .await
    .expect("the KYC submit succeeds on some replica");
}

pub async fn read_on(clients: &[OnboardingClient<Channel>], id: &str) -> pb::Application {
    with_retries(LONG, |n| {
        let mut client = clients[n % clients.len()].clone();
        let id = id.to_owned();
        async move { super::get(&mut client, &id).await }
    })
    .await
    .expect("a replica answers")
}

/// A whole flow across replicas: submit, wait for the IDV approval, KYC, and the end.
pub async fn flow(
    clients: Vec<OnboardingClient<Channel>>,
    n: usize,
    follow_it: bool,
) -> (String, Option<StreamRecord>) {
    let app = submit_to(
        &clients,
        format!("cluster-{n}"),
        format!("cluster-session-{n}"),
    )
    .await;
    let id = app.application_id.clone();
    let follower = follow_it.then(|| {
        let (clients, id) = (clients.clone(), id.clone());
        tokio::spawn(async move { follow(clients, &id, LONG).await })
    });
    let until = tokio::time::Instant::now() + LONG;
    while status_of(&read_on(&clients, &id).await) != S::IdvApproved {
        assert!(
            tokio::time::Instant::now() < until,
            "{id} was never approved"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    initiate_on(&clients, &id, valid_kyc()).await;
    let record = match follower {
        Some(follower) => Some(follower.await.unwrap()),
        None => {
            while !is_terminal(status_of(&read_on(&clients, &id).await)) {
                assert!(tokio::time::Instant::now() < until, "{id} never ended");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            None
        }
    };
    (id, record)
}

/// The position a `WatchApplications` resume token stands for.
pub fn decode_token(token: &str) -> u64 {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .unwrap();
    String::from_utf8(raw)
        .unwrap()
        .strip_prefix("w1.")
        .unwrap()
        .parse()
        .unwrap()
}
