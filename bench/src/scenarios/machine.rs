//! What a run was made on: the machine, how its idle CPUs wait, and how much CPU time the host took.

use serde::Serialize;

use super::Plan;
use crate::procs;

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
    /// How an idle CPU waits for work (the cpuidle driver, and the guest's halt polling where there is
    /// one): on a virtual machine, waking a halted CPU is a large part of a lightly loaded call's latency
    /// (BENCHMARKS.md §12), so runs with different settings do not compare.
    pub idle: String,
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
            // A local PostgreSQL server's placement is recorded with each scenario that uses it.
            if plan.sandbox_cpu == plan.driver_cpu {
                format!(
                    "gateway on CPU {}; sandbox and load generator on CPU {}",
                    plan.gateway_cpu, plan.driver_cpu
                )
            } else {
                format!(
                    "gateway on CPU {}; sandbox on CPU {}; load generator on CPU {}",
                    plan.gateway_cpu, plan.sandbox_cpu, plan.driver_cpu
                )
            }
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
            idle: idle_setting(),
        }
    }

    pub fn summary(&self) -> String {
        format!(
            "{} · {} × {} · {:.1} GiB · {} · {} · open files {} · idle CPUs: {}",
            self.date,
            self.cpus,
            self.cpu_model,
            self.memory_gib,
            self.kernel,
            self.pinning,
            self.open_files,
            self.idle
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

/// The machine's CPU time so far, in ticks: all of it, and what the host took (`steal`).
#[derive(Clone, Copy)]
pub(super) struct CpuTimes {
    total: u64,
    steal: u64,
}

pub(super) fn cpu_times() -> Option<CpuTimes> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal guest guest_nice: guest time is already in user.
    // A kernel too old to count steal has fewer fields, and no share is reported.
    Some(CpuTimes {
        total: fields.iter().take(8).sum(),
        steal: *fields.get(7)?,
    })
}

/// The cpuidle driver and, with the `haltpoll` driver, how long an idle CPU polls before it halts: the
/// limit, where the adaptive window starts, and whether it may shrink again. The halt-polling settings
/// are read only for that driver: they are the `haltpoll` governor's, and without the driver (`none`, or
/// another) an idle CPU does not poll in the guest, whatever they say.
fn idle_setting() -> String {
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .map(|s| s.trim().to_owned())
            .ok()
    };
    let haltpoll = |name: &str| {
        read(&format!(
            "/sys/module/haltpoll/parameters/guest_halt_poll_{name}"
        ))
    };
    let Some(driver) = read("/sys/devices/system/cpu/cpuidle/current_driver") else {
        return "unknown (no cpuidle in sysfs)".to_owned();
    };
    if driver == "none" {
        return "none (no cpuidle driver: an idle CPU halts at once, no polling in the guest)"
            .to_owned();
    }
    if driver != "haltpoll" {
        return driver;
    }
    match (
        haltpoll("ns"),
        haltpoll("grow_start"),
        haltpoll("allow_shrink"),
    ) {
        (Some(limit), Some(start), Some(shrink)) => format!(
            "{driver}, halt polling up to {limit} ns (window starting at {start} ns, shrinking: {shrink})"
        ),
        _ => driver,
    }
}

/// The share of all CPU time since `before` that the host took from this virtual machine.
pub(super) fn stolen_share_since(before: CpuTimes) -> Option<f64> {
    let after = cpu_times()?;
    let total = after.total.saturating_sub(before.total).max(1);
    Some(after.steal.saturating_sub(before.steal) as f64 / total as f64)
}
