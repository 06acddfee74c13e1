//! The processes under test: the ConnectPay sandbox and the gateway, each started from its release binary,
//! pinned to a CPU with `taskset`, and measured from `/proc` (CPU seconds, resident and peak memory).

use std::{
    ffi::OsString,
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// Credentials the sandbox accepts and the gateway presents.
pub const CLIENT_ID: &str = "bench-client";
pub const CLIENT_SECRET: &str = "bench-secret";
pub const GATEWAY_AUTH_CODE: &str = "bench-gateway-code";
/// The harness's own authorization code, for its direct calls to the sandbox.
pub const DIRECT_AUTH_CODE: &str = "bench-direct-code";
pub const WEBHOOK_TOKEN: &str = "bench-webhook-token-0123456789abcdef";
/// base64 of 32 bytes.
const STORE_KEY: &str = "YmVuY2htYXJrLW9ubHktc3RvcmUta2V5LTMyLWJ5dGU=";

/// A started process, killed when dropped.
pub struct Proc {
    pub name: &'static str,
    child: Child,
    pub cpu: Option<usize>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What `/proc` says of a process at one moment.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    /// User and system CPU seconds since the process started.
    pub cpu_seconds: f64,
    pub rss_bytes: u64,
    /// The peak resident set (VmHWM).
    pub peak_rss_bytes: u64,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn usage(&self) -> Usage {
        usage_of(self.pid())
    }

    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
}

pub fn usage_of(pid: u32) -> Usage {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at ")".
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of stat(5); index 11 and 12 after the command.
    let cpu_seconds = (ticks(11) + ticks(12)) / clock_ticks_per_second();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    Usage {
        cpu_seconds,
        rss_bytes: kib("VmRSS:"),
        peak_rss_bytes: kib("VmHWM:"),
    }
}

fn clock_ticks_per_second() -> f64 {
    // USER_HZ is 100 on every Linux this runs on; `getconf` says so when it is there.
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// The command, under `taskset -c CPU` when a CPU is given and taskset exists.
fn pinned(program: &Path, cpu: Option<usize>) -> (Command, Option<usize>) {
    wrapped(&[], program, cpu)
}

/// `program` run by the `wrapper` command (such as `valgrind --tool=callgrind`), if any, and pinned to
/// `cpu` where `taskset` is available. Each execs the next, so the process keeps its pid throughout.
fn wrapped(wrapper: &[String], program: &Path, cpu: Option<usize>) -> (Command, Option<usize>) {
    let cpu = cpu.filter(|_| has_taskset());
    let mut line: Vec<OsString> = Vec::new();
    if let Some(cpu) = cpu {
        line.extend(["taskset".into(), "-c".into(), cpu.to_string().into()]);
    }
    line.extend(wrapper.iter().map(OsString::from));
    line.push(program.into());
    let mut command = Command::new(&line[0]);
    command.args(&line[1..]);
    (command, cpu)
}

pub fn has_taskset() -> bool {
    Command::new("taskset")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Pins this process (the load generator) to `cpu`.
pub fn pin_self(cpu: usize) -> bool {
    has_taskset() && set_affinity(std::process::id(), &cpu.to_string())
}

/// Sets the CPU affinity of `pid` and all its threads with `taskset`; `cpus` is a CPU list ("0", "0-1").
fn set_affinity(pid: u32, cpus: &str) -> bool {
    Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Raises this process's open-file limit to its hard limit (children inherit it) and returns the limit:
/// idle watchers need a descriptor per connection only, but the generator keeps many. Raising the hard
/// limit itself needs privileges a sandbox may not give, so it is not tried.
pub fn raise_open_files() -> u64 {
    let pid = std::process::id().to_string();
    // Soft and hard limit, from the "Max open files" line of /proc/PID/limits.
    let limits = || -> Option<(String, String)> {
        let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
        let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
        let mut values = line.split_whitespace().skip(3);
        Some((values.next()?.to_owned(), values.next()?.to_owned()))
    };
    if let Some((soft, hard)) = limits()
        && soft != hard
    {
        // `prlimit` is part of util-linux, like taskset; without it the limit stays.
        let _ = Command::new("prlimit")
            .args(["--pid", &pid, &format!("--nofile={hard}:{hard}")])
            .stderr(Stdio::null())
            .status();
    }
    limits()
        .and_then(|(soft, _)| soft.parse().ok())
        .unwrap_or(0)
}

pub fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
}

/// Starts the sandbox; returns it with its base URL. Decisions are delayed by an hour, so applications
/// stay where the benchmark puts them, and its own webhooks are switched off by the scenarios that send
/// their own.
pub fn start_sandbox(binary: &Path, cpu: Option<usize>, dir: &Path) -> (Proc, String) {
    let (mut command, cpu) = pinned(binary, cpu);
    let log = std::fs::File::create(dir.join("sandbox.log")).expect("sandbox log");
    command
        .args(["--listen", "127.0.0.1:0"])
        .args(["--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET])
        .args([
            "--auth-code",
            GATEWAY_AUTH_CODE,
            "--auth-code",
            DIRECT_AUTH_CODE,
        ])
        .args(["--idv-delay-ms", "3600000", "--review-delay-ms", "3600000"])
        .args(["--webhook-token", WEBHOOK_TOKEN])
        .env("RUST_LOG", "warn,connectpay_sandbox=info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(log);
    let mut child = command.spawn().expect("the sandbox starts");
    let stdout = child.stdout.take().expect("piped");
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(at) = line.find("http://") {
                let url: String = line[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || ":/.".contains(*c))
                    .collect();
                let _ = sender.send(url);
            }
        }
    });
    let url = receiver
        .recv_timeout(Duration::from_secs(20))
        .expect("the sandbox prints its URL");
    (
        Proc {
            name: "sandbox",
            child,
            cpu,
        },
        url,
    )
}

/// Where the gateway keeps its state.
#[derive(Debug, Clone)]
pub enum Store {
    /// The database file, and `store.durability` (`full`, the default, or `normal`).
    Sqlite(PathBuf, &'static str),
    Postgres(String),
}

/// The gateway's listening addresses.
#[derive(Debug, Clone, Copy)]
pub struct GatewayAddrs {
    pub grpc: SocketAddr,
    pub webhook: SocketAddr,
    pub admin: SocketAddr,
}

/// How the gateway is started: its binary, the CPU it is pinned to, and the command that runs it, if any
/// (empty: the binary itself).
pub struct GatewayLaunch<'a> {
    pub binary: &'a Path,
    pub cpu: Option<usize>,
    pub wrapper: &'a [String],
}

/// Starts `onboarding-gateway serve` against the sandbox at `sandbox_url`; waits until it listens.
pub async fn start_gateway(
    launch: GatewayLaunch<'_>,
    dir: &Path,
    sandbox_url: &str,
    store: &Store,
    webhook_workers: u32,
) -> (Proc, GatewayAddrs) {
    let addrs = GatewayAddrs {
        grpc: free_port(),
        webhook: free_port(),
        admin: free_port(),
    };
    let (store_url, durability) = match store {
        Store::Sqlite(path, durability) => (
            format!("sqlite://{}", path.display()),
            format!("durability = \"{durability}\""),
        ),
        Store::Postgres(url) => (url.clone(), String::new()),
    };
    // Callers are not authenticated (loopback only); polls are an hour apart so that only the benchmark's
    // own calls and notifications move applications; streams per connection are raised for idle watchers.
    let config = format!(
        r#"
[grpc]
listen = "{grpc}"
max_concurrent_streams = 2000
[admin]
listen = "{admin}"
[auth]
allow_unauthenticated = true
[webhook]
listen = "{webhook}"
tokens = ["{WEBHOOK_TOKEN}"]
allowed_sources = ["127.0.0.0/8"]
workers = {webhook_workers}
[store]
url = "{store_url}"
key = "{STORE_KEY}"
{durability}
[poll]
idv_interval = "1h"
review_interval = "1h"
[connectpay]
base_url = "{sandbox_url}"
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"
auth_code = "{GATEWAY_AUTH_CODE}"
notification_url = "http://{webhook}/webhooks/connectpay"
allow_insecure_http = true
[shutdown]
drain_delay = "0s"
grace_period = "5s"
[log]
level = "warn"
"#,
        grpc = addrs.grpc,
        admin = addrs.admin,
        webhook = addrs.webhook,
    );
    let config_path = dir.join("gateway.toml");
    std::fs::write(&config_path, config).expect("gateway configuration");
    let (mut command, cpu) = wrapped(launch.wrapper, launch.binary, launch.cpu);
    command
        .arg("--config")
        .arg(&config_path)
        .arg("serve")
        .env_remove("RUST_LOG")
        .stdout(std::fs::File::create(dir.join("gateway.out")).expect("gateway log"))
        .stderr(std::fs::File::create(dir.join("gateway.log")).expect("gateway log"));
    let child = command.spawn().expect("the gateway starts");
    let mut proc = Proc {
        name: "gateway",
        child,
        cpu,
    };
    let started = Instant::now();
    loop {
        if proc.exited() {
            let log = std::fs::read_to_string(dir.join("gateway.log")).unwrap_or_default();
            panic!("the gateway exited:\n{log}");
        }
        if tokio::net::TcpStream::connect(addrs.grpc).await.is_ok()
            && tokio::net::TcpStream::connect(addrs.webhook).await.is_ok()
        {
            break;
        }
        // Under a wrapper such as callgrind the gateway starts tens of times slower.
        let patience = Duration::from_secs(if launch.wrapper.is_empty() { 30 } else { 300 });
        assert!(
            started.elapsed() < patience,
            "the gateway did not listen within {patience:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (proc, addrs)
}

/// A PostgreSQL server on this machine, its processes held on one CPU for the length of a scenario and put
/// back as they were when dropped. Left alone, the kernel runs the database's processes on the gateway's
/// CPU as often as not: the gateway then gets about half of its core (BENCHMARKS.md §9).
pub struct ServerPinning {
    /// Each process pinned, with the CPUs it could run on before (`taskset -c -p`'s list).
    pinned: Vec<(u32, String)>,
}

impl ServerPinning {
    /// Pins the server's postmaster (so that connections opened from now on are served on `cpu`) and the
    /// processes it has already started. `Err` says why nothing was pinned (no taskset, no permission).
    pub fn to(cpu: usize, postmaster: u32) -> Result<ServerPinning, String> {
        if !has_taskset() {
            return Err("taskset unavailable".into());
        }
        let mut pinning = ServerPinning { pinned: Vec::new() };
        for pid in std::iter::once(postmaster).chain(children(postmaster)) {
            let Some(cpus) = affinity(pid) else { continue };
            if set_affinity(pid, &cpu.to_string()) {
                pinning.pinned.push((pid, cpus));
            } else if pid == postmaster {
                return Err(format!("cannot pin process {pid}"));
            }
        }
        Ok(pinning)
    }
}

/// The postmaster of the PostgreSQL server whose data directory is `data_directory` (`SHOW
/// data_directory`), from its `postmaster.pid`; `Err` when the server is not on this machine.
pub fn postmaster(data_directory: &Path) -> Result<u32, String> {
    let pid_file = data_directory.join("postmaster.pid");
    std::fs::read_to_string(&pid_file)
        .map_err(|e| format!("{}: {e}", pid_file.display()))?
        .lines()
        .next()
        .and_then(|line| line.trim().parse().ok())
        .ok_or_else(|| format!("{}: no process id", pid_file.display()))
}

/// CPU seconds of a PostgreSQL server so far: its postmaster and the processes it runs now (backends,
/// writers). A backend that exits takes its share with it, so a difference counts the processes alive
/// at both readings; the pool's connections live as long as the gateway.
pub fn server_cpu_seconds(postmaster: u32) -> f64 {
    std::iter::once(postmaster)
        .chain(children(postmaster))
        .map(|pid| usage_of(pid).cpu_seconds)
        .sum()
}

impl Drop for ServerPinning {
    fn drop(&mut self) {
        for (pid, cpus) in &self.pinned {
            set_affinity(*pid, cpus);
        }
    }
}

/// The CPUs `pid` may run on, as `taskset -c -p` prints them (a CPU list).
fn affinity(pid: u32) -> Option<String> {
    let out = Command::new("taskset")
        .args(["-c", "-p", &pid.to_string()])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    Some(text.rsplit(':').next()?.trim().to_owned()).filter(|m| !m.is_empty())
}

/// The processes whose parent is `parent`, from `/proc`.
fn children(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            // The parent is the second field after the command name, which is in parentheses.
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    let after_name = stat.rsplit_once(')')?.1;
                    after_name.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(parent)
        })
        .collect()
}
