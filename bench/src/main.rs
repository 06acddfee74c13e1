//! onboarding-bench: starts the ConnectPay sandbox and the gateway as separate processes (each pinned to its
//! own CPU), drives them over loopback, and reports latency percentiles, throughput, and each process's CPU
//! seconds and peak memory. BENCHMARKS.md holds the results and how they were produced.
//!
//! ```sh
//! cargo run --release -p onboarding-bench -- --out bench-results.json
//! cargo run --release -p onboarding-bench -- --smoke          # seconds per scenario: does it still run?
//! cargo run --release -p onboarding-bench -- instructions     # per GetApplication, under callgrind
//! ```

mod load;
mod procs;
mod scenarios;

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::Parser;
use serde::Serialize;

// The generator shares its CPU with the sandbox, so what it spends on allocation is taken from the system
// it measures: the gateway's allocator, which costs less here than glibc's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "onboarding-bench", about = "The gateway's benchmark harness")]
struct Args {
    /// A few seconds per scenario, small counts: proves the harness runs and produces results (CI).
    #[arg(long)]
    smoke: bool,
    /// The scenarios to run (default: all): unary, fanout, watchers, ingest.
    #[arg(long = "scenario", value_delimiter = ',')]
    scenarios: Vec<String>,
    /// The stores to run the store-dependent scenarios (fanout, ingest) on: sqlite, postgres, and
    /// sqlite-normal (SQLite with `store.durability = "normal"`: commits survive a killed process but do
    /// not wait for the disk).
    #[arg(long = "store", value_delimiter = ',', default_values = ["sqlite", "postgres"])]
    stores: Vec<String>,
    /// PostgreSQL server for the postgres store: a database with a unique name is created there and
    /// dropped afterwards.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
    postgres: String,
    /// Leave a local PostgreSQL server's processes where the kernel puts them, on either CPU, instead of
    /// holding them on the driver CPU for each measuring scenario.
    #[arg(long)]
    postgres_unpinned: bool,
    /// Seconds each measured phase lasts (default 10, or 1 with --smoke).
    #[arg(long)]
    seconds: Option<u64>,
    /// Idle watchers for the memory scenario (default 10000,100000; 500 with --smoke).
    #[arg(long, value_delimiter = ',')]
    watchers: Vec<usize>,
    /// How many WatchApplication streams the memory scenario opens at once.
    #[arg(long, default_value_t = 512)]
    opens_in_flight: usize,
    /// The rates at which the unary scenario compares the two paths side by side before its closed loop
    /// (default: 1000): more of them show how the added latency moves with the load.
    #[arg(long, value_delimiter = ',', default_values = ["1000"])]
    unary_rates: Vec<f64>,
    /// The CPU the gateway is pinned to; the sandbox and the load generator share the other one.
    #[arg(long, default_value_t = 1)]
    gateway_cpu: usize,
    #[arg(long, default_value_t = 0)]
    driver_cpu: usize,
    /// The CPU the sandbox is pinned to (default: the driver's). `--sandbox-cpu 1` puts it beside the
    /// gateway, so that the generator reaches its server across the CPUs on both unary paths.
    #[arg(long)]
    sandbox_cpu: Option<usize>,
    /// Where the release binaries are (default: beside this one).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Write every result as JSON to this file.
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Subcommand>,
}

#[derive(Debug, clap::Subcommand)]
enum Subcommand {
    /// Count, under valgrind's callgrind, the instructions the gateway spends per GetApplication, and
    /// which functions spend them: a measure that repeats on any machine, where timings move.
    Instructions {
        /// Calls counted, one at a time, 2 ms apart.
        #[arg(long, default_value_t = 2000)]
        calls: usize,
        /// Functions listed, by the instructions they spent themselves.
        #[arg(long, default_value_t = 25)]
        top: usize,
        /// Where the callgrind file is written (default: a new temporary directory, kept).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

/// Everything one run measured, as written to `--out`.
#[derive(Debug, Serialize)]
struct Report {
    command: String,
    machine: scenarios::Machine,
    smoke: bool,
    results: Vec<scenarios::ScenarioResult>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    // reqwest is built without a TLS provider of its own; every client here speaks plain HTTP, but a
    // provider must still be installed before one is built.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let bin_dir = args.bin_dir.clone().unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("target/release"))
    });
    let binaries = scenarios::Binaries {
        gateway: bin_dir.join("onboarding-gateway"),
        sandbox: bin_dir.join("connectpay-sandbox"),
    };
    for binary in [&binaries.gateway, &binaries.sandbox] {
        if !binary.is_file() {
            eprintln!(
                "{} is missing: build it first, in the same profile as this harness \
                 (cargo build --release --workspace --bins)",
                binary.display()
            );
            return ExitCode::from(2);
        }
    }
    if let Some(rate) = args
        .unary_rates
        .iter()
        .find(|r| !(r.is_finite() && **r >= 1.0))
    {
        eprintln!("--unary-rates: {rate} is not a rate of at least 1 call per second");
        return ExitCode::from(2);
    }
    let seconds = args.seconds.unwrap_or(if args.smoke { 1 } else { 10 });
    let watchers = if !args.watchers.is_empty() {
        args.watchers.clone()
    } else if args.smoke {
        vec![500]
    } else {
        vec![10_000, 100_000]
    };
    let all = ["unary", "fanout", "watchers", "ingest"];
    let wanted: Vec<&str> = if args.scenarios.is_empty() {
        all.to_vec()
    } else {
        all.iter()
            .copied()
            .filter(|s| args.scenarios.iter().any(|w| w == s))
            .collect()
    };
    let plan = scenarios::Plan {
        binaries,
        smoke: args.smoke,
        phase: Duration::from_secs(seconds),
        watchers,
        opens_in_flight: args.opens_in_flight.max(1),
        gateway_cpu: args.gateway_cpu,
        driver_cpu: args.driver_cpu,
        sandbox_cpu: args.sandbox_cpu.unwrap_or(args.driver_cpu),
        postgres: args.postgres.clone(),
        postgres_pinned: !args.postgres_unpinned,
        unary_rates: args.unary_rates.clone(),
        gateway_wrapper: Vec::new(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        // The generator shares one CPU with the sandbox: one worker thread keeps it from competing with
        // itself.
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    if let Some(Subcommand::Instructions { calls, top, dir }) = &args.command {
        let dir = match dir {
            Some(dir) => dir.clone(),
            None => match tempfile::Builder::new()
                .prefix("gateway-instructions-")
                .tempdir()
            {
                Ok(dir) => dir.keep(),
                Err(e) => {
                    eprintln!("cannot make a directory for the callgrind file: {e}");
                    return ExitCode::FAILURE;
                }
            },
        };
        return match runtime.block_on(scenarios::instructions::count(&plan, *calls, &dir)) {
            Ok(counted) => {
                print!("{}", counted.summary(*top));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("instructions: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let machine = scenarios::Machine::describe(&plan);
    println!("{}", machine.summary());
    let mut results = Vec::new();
    for scenario in wanted {
        let stores: Vec<&str> = match scenario {
            "fanout" | "ingest" => args.stores.iter().map(String::as_str).collect(),
            _ => vec!["sqlite"],
        };
        for store in stores {
            println!("\n## {scenario} ({store})");
            let result = runtime.block_on(scenarios::run(&plan, scenario, store));
            match result {
                Ok(result) => {
                    println!("{}", result.summary());
                    results.push(result);
                }
                Err(e) => {
                    eprintln!("{scenario} ({store}) failed: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    let report = Report {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        machine,
        smoke: args.smoke,
        results,
    };
    if let Some(out) = &args.out
        && let Err(e) = std::fs::write(
            out,
            serde_json::to_vec_pretty(&report).expect("a report serialises"),
        )
    {
        eprintln!("cannot write {}: {e}", out.display());
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
