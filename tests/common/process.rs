//! The gateway as a separate process, so a test can kill it (SIGKILL: no goodbye) and start it again on
//! the same ports and the same database.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use onboarding_gateway::grpc::pb::onboarding_client::OnboardingClient;
use tokio::process::{Child, Command};
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use super::{CLIENT_ID, CLIENT_SECRET, STORE_KEY, TestSandbox};

pub struct GatewayProcess {
    child: Option<Child>,
    /// Environment variables passed as they are (OTEL_*, say).
    pub raw_env: Vec<(String, String)>,
    store_url: Option<String>,
    pub grpc: SocketAddr,
    pub webhook: SocketAddr,
    pub admin: SocketAddr,
    dir: tempfile::TempDir,
    base_url: String,
    auth_code: String,
    starts: u32,
}

fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

impl GatewayProcess {
    /// Starts `onboarding-gateway serve` against `sandbox`; `env` overrides its configuration
    /// (`ONBOARDING_GATEWAY_…` variables).
    pub async fn start(
        sandbox: &TestSandbox,
        auth_code: &str,
        env: &[(&str, &str)],
    ) -> GatewayProcess {
        let mut gateway = Self::prepare(sandbox, auth_code);
        gateway.first_launch(env).await;
        gateway
    }

    /// The first start: free ports are found by binding and releasing them, so another process may take
    /// one in between; then the gateway cannot listen, and new ports are tried.
    async fn first_launch(&mut self, env: &[(&str, &str)]) {
        for _ in 0..5 {
            match self.try_launch(env).await {
                Ok(()) => return,
                Err(logs) if logs.contains("Address already in use") => {
                    self.grpc = free_port();
                    self.webhook = free_port();
                    self.admin = free_port();
                    self.write_config();
                }
                Err(logs) => panic!("the gateway exited:\n{logs}"),
            }
        }
        panic!("no free ports after five tries");
    }

    /// Writes the configuration without starting anything (an empty `auth_code` configures none).
    pub fn prepare(sandbox: &TestSandbox, auth_code: &str) -> GatewayProcess {
        Self::prepare_with_store(sandbox, auth_code, None)
    }

    /// One replica of a cluster sharing the PostgreSQL database at `store_url`.
    pub async fn start_replica(
        sandbox: &TestSandbox,
        auth_code: &str,
        store_url: &str,
        env: &[(&str, &str)],
    ) -> GatewayProcess {
        let mut gateway = Self::prepare_with_store(sandbox, auth_code, Some(store_url));
        gateway.first_launch(env).await;
        gateway
    }

    fn prepare_with_store(
        sandbox: &TestSandbox,
        auth_code: &str,
        store_url: Option<&str>,
    ) -> GatewayProcess {
        let gateway = GatewayProcess {
            raw_env: Vec::new(),
            store_url: store_url.map(str::to_owned),
            child: None,
            grpc: free_port(),
            webhook: free_port(),
            admin: free_port(),
            dir: tempfile::tempdir().unwrap(),
            base_url: sandbox.base_url().to_owned(),
            auth_code: auth_code.to_owned(),
            starts: 0,
        };
        gateway.write_config();
        gateway
    }

    pub fn database(&self) -> PathBuf {
        self.dir.path().join("gateway.db")
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("gateway.toml")
    }

    /// (Re)starts the process with the same ports and database; `env` overrides the configuration. The
    /// first start of a prepared gateway may move it to new ports, as [`GatewayProcess::start`] does.
    pub async fn launch(&mut self, env: &[(&str, &str)]) {
        if self.starts == 0 {
            return self.first_launch(env).await;
        }
        if let Err(logs) = self.try_launch(env).await {
            panic!("the gateway exited:\n{logs}");
        }
    }

    async fn try_launch(&mut self, env: &[(&str, &str)]) -> Result<(), String> {
        self.starts += 1;
        let log_path = self.dir.path().join(format!("gateway-{}.log", self.starts));
        let child = Command::new(env!("CARGO_BIN_EXE_onboarding-gateway"))
            .args(["--config", self.config_path().to_str().unwrap(), "serve"])
            .env_remove("RUST_LOG")
            .envs(
                env.iter()
                    .map(|(k, v)| (format!("ONBOARDING_GATEWAY_{k}"), *v)),
            )
            .envs(self.raw_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(std::fs::File::create(log_path.with_extension("out")).unwrap())
            .stderr(std::fs::File::create(log_path).unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("the gateway binary starts");
        self.child = Some(child);
        self.wait_until_serving().await
    }

    fn write_config(&self) {
        let auth_code = if self.auth_code.is_empty() {
            String::new()
        } else {
            format!("auth_code = \"{}\"", self.auth_code)
        };
        let config = format!(
            r#"
[grpc]
listen = "{grpc}"
[admin]
listen = "{admin}"
[webhook]
listen = "{webhook}"
tokens = ["{token}"]
allowed_sources = ["127.0.0.0/8"]
[store]
url = "{store_url}"
max_connections = 4
key = "{STORE_KEY}"
[connectpay]
base_url = "{base}"
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"
{auth_code}
notification_url = "http://{webhook}/webhooks/connectpay"
allow_insecure_http = true
[auth]
allow_unauthenticated = true
[shutdown]
drain_delay = "0s"
grace_period = "10s"
[log]
format = "text"
level = "onboarding_gateway=debug,info"
"#,
            grpc = self.grpc,
            webhook = self.webhook,
            admin = self.admin,
            token = connectpay_sandbox::DEFAULT_WEBHOOK_TOKEN,
            store_url = self
                .store_url
                .clone()
                .unwrap_or_else(|| format!("sqlite://{}", self.database().display())),
            base = self.base_url,
        );
        std::fs::write(self.config_path(), config).unwrap();
    }

    /// `Err` with the logs when the process exited instead.
    async fn wait_until_serving(&mut self) -> Result<(), String> {
        let until = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(format!("exit {status}:\n{}", self.logs()));
            }
            if let Ok(channel) = self.endpoint().connect().await {
                let answer = HealthClient::new(channel)
                    .check(HealthCheckRequest {
                        service: String::new(),
                    })
                    .await;
                if answer.is_ok_and(|a| a.into_inner().status() == ServingStatus::Serving) {
                    return Ok(());
                }
            }
            assert!(
                tokio::time::Instant::now() < until,
                "the gateway never served:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, as Kubernetes stops a pod, and waits for the process to exit.
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let pid = child.id().expect("a process id");
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        child.wait().await.unwrap()
    }

    /// SIGKILL: the process gets no chance to finish anything.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.start_kill().unwrap();
            child.wait().await.unwrap();
        }
    }

    fn endpoint(&self) -> Endpoint {
        Endpoint::from_shared(format!("http://{}", self.grpc))
            .unwrap()
            .connect_timeout(Duration::from_secs(1))
    }

    /// A client whose channel reconnects by itself after a restart.
    pub fn client(&self) -> OnboardingClient<Channel> {
        OnboardingClient::new(self.endpoint().connect_lazy())
    }

    /// Every log the process wrote, for failure messages.
    pub fn logs(&self) -> String {
        (1..=self.starts)
            .map(|n| {
                std::fs::read_to_string(self.dir.path().join(format!("gateway-{n}.log")))
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n--- restart ---\n")
    }

    /// Everything the process wrote to standard output and standard error, over every start.
    pub fn output(&self) -> String {
        (1..=self.starts)
            .flat_map(|n| {
                ["log", "out"].map(|ext| self.dir.path().join(format!("gateway-{n}.{ext}")))
            })
            .map(|file| std::fs::read_to_string(file).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The directory holding the configuration, the database and the logs.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    pub fn webhook_url(&self) -> String {
        format!("http://{}/webhooks/connectpay", self.webhook)
    }
}
