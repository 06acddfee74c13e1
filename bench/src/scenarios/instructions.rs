//! Instructions per `GetApplication`, counted by valgrind's callgrind.
//!
//! Wall-clock numbers on a shared virtual machine move from run to run and from machine to machine
//! (BENCHMARKS.md); instruction counts do not: the same binaries and inputs give the same count whatever
//! else the machine is doing. This is how a change to the unary path is judged before it is timed.
//!
//! The gateway runs under callgrind, started and configured as in every scenario (SQLite store). After 50
//! applications are created and 300 calls warm it up, its counters are zeroed; `calls` sequential
//! `GetApplication` calls follow, 2 ms apart, so that each finds the gateway idle as at a light load; then
//! the counters are dumped and read.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::Command,
};

use super::*;

/// The count of one run.
pub struct Counted {
    pub calls: usize,
    pub seconds: f64,
    /// The callgrind file, for `callgrind_annotate`.
    pub dump: PathBuf,
    /// Instructions each function spent itself, the most first.
    pub functions: Vec<(String, u64)>,
}

impl Counted {
    pub fn total(&self) -> u64 {
        self.functions.iter().map(|(_, cost)| cost).sum()
    }

    pub fn summary(&self, top: usize) -> String {
        let (calls, total) = (self.calls.max(1) as u64, self.total());
        let mut out = format!(
            "{} GetApplication calls in {:.1} s under callgrind\n\
             instructions: {} in all, {} per call\n\
             callgrind file: {} (callgrind_annotate --inclusive=yes --tree=calling {})\n\
             {:>14} {:>6} {:>9}  function (its own instructions)\n",
            self.calls,
            self.seconds,
            grouped(total),
            grouped(total / calls),
            self.dump.display(),
            self.dump.display(),
            "instructions",
            "share",
            "per call",
        );
        for (function, cost) in self.functions.iter().take(top) {
            let name: String = function.chars().take(140).collect();
            out.push_str(&format!(
                "{:>14} {:>5.1}% {:>9}  {name}\n",
                grouped(*cost),
                100.0 * *cost as f64 / total.max(1) as f64,
                grouped(cost / calls),
            ));
        }
        out
    }
}

/// Runs the gateway under callgrind, writing its counters into `dir`, and counts `calls` calls.
pub async fn count(plan: &Plan, calls: usize, dir: &Path) -> Result<Counted, Error> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    // A run starts afresh: a file left by an earlier one would be read as this run's.
    for entry in std::fs::read_dir(dir).map_err(|e| e.to_string())?.flatten() {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with("callgrind.out")
        {
            std::fs::remove_file(entry.path()).map_err(|e| e.to_string())?;
        }
    }
    let out_file = dir.join("callgrind.out");
    let plan = Plan {
        gateway_wrapper: vec![
            "valgrind".into(),
            "--tool=callgrind".into(),
            format!("--callgrind-out-file={}", out_file.display()),
        ],
        ..plan.clone()
    };
    let env = Env::start(&plan, "sqlite", 16).await?;
    let clients = env.clients(1).await?;
    let apps = seed(&clients, 50, "instructions").await?;
    let mut client = clients[0].clone();
    for i in 0..300 {
        get(&mut client, &apps, i).await?;
    }
    let pid = env.gateway.pid();
    callgrind_control("-z", pid)?;
    let started = Instant::now();
    for i in 0..calls {
        get(&mut client, &apps, i).await?;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    callgrind_control("-d", pid)?;
    drop(env);

    // The dump that `callgrind_control -d` asked for: the first, `callgrind.out.1`.
    let dump = dir.join("callgrind.out.1");
    let text = std::fs::read_to_string(&dump).map_err(|e| format!("{}: {e}", dump.display()))?;
    let mut functions: Vec<(String, u64)> = self_costs(&text).into_iter().collect();
    functions.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Ok(Counted {
        calls,
        seconds,
        dump,
        functions,
    })
}

async fn get(client: &mut Client, apps: &[String], i: usize) -> Result<(), Error> {
    client
        .get_application(unary::get(&apps[i % apps.len()]))
        .await
        .map(drop)
        .map_err(|e| format!("GetApplication: {e}"))
}

fn callgrind_control(flag: &str, pid: u32) -> Result<(), Error> {
    let out = Command::new("callgrind_control")
        .args([flag, &pid.to_string()])
        .output()
        .map_err(|e| format!("callgrind_control: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "callgrind_control {flag}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Instructions each function spent itself, from a callgrind file with one event (instructions) and
/// compressed names: `fn=(7) name` defines name 7, a later `fn=(7)` refers to it. The cost line after a
/// `calls=` line is the callee's inclusive cost, charged to the call, not to the caller's own.
fn self_costs(text: &str) -> HashMap<String, u64> {
    let mut names: HashMap<&str, &str> = HashMap::new();
    let mut costs: HashMap<String, u64> = HashMap::new();
    let mut current: Option<&str> = None;
    let mut after_call = false;
    for line in text.lines() {
        if let Some(token) = line.strip_prefix("fn=") {
            current = Some(resolve(&mut names, token));
        } else if let Some(token) = line.strip_prefix("cfn=") {
            resolve(&mut names, token);
        } else if line.starts_with("calls=") {
            after_call = true;
        } else if line
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit() || "+-*".contains(c))
        {
            if std::mem::take(&mut after_call) {
                continue;
            }
            let cost = line
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse::<u64>().ok());
            if let (Some(function), Some(cost)) = (current, cost) {
                *costs.entry(function.to_owned()).or_default() += cost;
            }
        }
    }
    costs
}

/// The name `(id) name` defines, or the one `(id)` refers to.
fn resolve<'a>(names: &mut HashMap<&'a str, &'a str>, token: &'a str) -> &'a str {
    let Some(rest) = token.strip_prefix('(') else {
        return token;
    };
    let Some((id, tail)) = rest.split_once(')') else {
        return token;
    };
    match tail.strip_prefix(' ') {
        Some(name) if !name.is_empty() => {
            names.insert(id, name);
            name
        }
        _ => names.get(id).copied().unwrap_or(id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_costs_resolve_names_and_leave_calls_to_the_callee() {
        let text = "events: Ir\n\
                    fn=(1) main\n\
                    10 5\n\
                    +1 3\n\
                    cfn=(2) work\n\
                    calls=1 0\n\
                    * 100\n\
                    fn=(2)\n\
                    20 100\n\
                    fn=(1)\n\
                    * 2\n";
        let costs = self_costs(text);
        assert_eq!(costs.get("main"), Some(&10));
        assert_eq!(costs.get("work"), Some(&100));
        assert_eq!(costs.len(), 2);
    }
}
