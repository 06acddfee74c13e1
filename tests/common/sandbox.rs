//! The ConnectPay sandbox for tests: in-process or as its own process, driven through its HTTP control
//! interface either way (the same interface a person would use).

use std::{process::Stdio, time::Duration};

use connectpay_sandbox::{Sandbox, SandboxConfig};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

use super::{CLIENT_ID, CLIENT_SECRET};

pub enum Running {
    InProcess(Sandbox),
    Process(Child),
}

pub struct TestSandbox {
    pub running: Running,
    base_url: String,
    http: reqwest::Client,
}

/// Auth codes every test sandbox accepts, one per gateway a test starts.
pub const AUTH_CODES: [&str; 4] = ["code-1", "code-2", "code-3", "code-4"];

impl TestSandbox {
    fn config() -> SandboxConfig {
        SandboxConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            client_id: CLIENT_ID.into(),
            client_secret: CLIENT_SECRET.into(),
            auth_codes: AUTH_CODES.iter().map(|c| c.to_string()).collect(),
            idv_delay_ms: 150,
            review_delay_ms: 300,
            ..SandboxConfig::default()
        }
    }

    /// An in-process sandbox; `adjust` changes its configuration first.
    pub async fn in_process(adjust: impl FnOnce(&mut SandboxConfig)) -> TestSandbox {
        super::init_logging();
        let mut config = Self::config();
        adjust(&mut config);
        let sandbox = Sandbox::start(config).await.expect("sandbox starts");
        let base_url = sandbox.base_url();
        TestSandbox {
            running: Running::InProcess(sandbox),
            base_url,
            http: reqwest::Client::new(),
        }
    }

    /// The `connectpay-sandbox` binary as a separate process, with extra command-line `args`.
    pub async fn process(args: &[&str]) -> TestSandbox {
        super::init_logging();
        let config = Self::config();
        let mut command = Command::new(env!("CARGO_BIN_EXE_connectpay-sandbox"));
        command
            .args(["--listen", "127.0.0.1:0"])
            .args(["--client-id", &config.client_id])
            .args(["--client-secret", &config.client_secret])
            .args(["--idv-delay-ms", &config.idv_delay_ms.to_string()])
            .args(["--review-delay-ms", &config.review_delay_ms.to_string()]);
        for code in AUTH_CODES {
            command.args(["--auth-code", code]);
        }
        let mut child = command
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("the sandbox binary starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("the sandbox announces its address in time")
            .unwrap()
            .expect("a first line");
        let base_url = line
            .strip_prefix("connectpay-sandbox listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line}"))
            .trim()
            .to_owned();
        TestSandbox {
            running: Running::Process(child),
            base_url,
            http: reqwest::Client::new(),
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn handle(&self) -> &Sandbox {
        match &self.running {
            Running::InProcess(sandbox) => sandbox,
            Running::Process(_) => panic!("a separate process has no in-process handle"),
        }
    }

    async fn control(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self
            .http
            .request(method, format!("{}/_sandbox/{path}", self.base_url));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("sandbox control call");
        assert!(
            response.status().is_success(),
            "control {path}: {}",
            response.status()
        );
        let bytes = response.bytes().await.unwrap();
        if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        }
    }

    pub async fn stats(&self) -> Value {
        self.control(reqwest::Method::GET, "stats", None).await
    }

    /// The requests the sandbox received on one endpoint (`token`, `submit_idv`, `get_application`,
    /// `get_idv`, `initiate_application`).
    /// `endpoint` empty: every request.
    pub async fn requests(&self, endpoint: &str) -> Vec<Value> {
        let path = if endpoint.is_empty() {
            "requests".to_owned()
        } else {
            format!("requests?endpoint={endpoint}")
        };
        let all = self.control(reqwest::Method::GET, &path, None).await;
        all.as_array().cloned().unwrap_or_default()
    }

    pub async fn set_mode(&self, mode: Value) {
        self.control(reqwest::Method::PUT, "mode", Some(mode)).await;
    }

    pub async fn set_status(&self, application_id: &str, status: &str) {
        self.control(
            reqwest::Method::POST,
            &format!("applications/{application_id}/status"),
            Some(json!({ "status": status })),
        )
        .await;
    }

    pub async fn add_fault(&self, fault: Value) {
        self.control(reqwest::Method::POST, "faults", Some(fault))
            .await;
    }

    pub async fn control_put(&self, path: &str, body: Value) {
        self.control(reqwest::Method::PUT, path, Some(body)).await;
    }

    pub async fn application(&self, id: &str) -> Value {
        self.control(reqwest::Method::GET, &format!("applications/{id}"), None)
            .await
    }

    pub async fn webhook_log(&self) -> Vec<Value> {
        let log = self.control(reqwest::Method::GET, "webhooks", None).await;
        log.as_array().cloned().unwrap_or_default()
    }

    pub async fn control_post(&self, path: &str) {
        self.control(reqwest::Method::POST, path, None).await;
    }

    pub async fn mint_auth_code(&self) -> String {
        let answer = self
            .control(reqwest::Method::POST, "auth-codes", None)
            .await;
        answer["code"].as_str().expect("a code").to_owned()
    }
}
