//! `inbox` and `waiting`: what an operator looks at when news seems to have stopped.

use std::{
    path::Path,
    process::ExitCode,
    time::{Duration, SystemTime},
};

use super::serve::load;
use crate::{app, config::Mode};

fn age(since: SystemTime) -> String {
    let secs = SystemTime::now()
        .duration_since(since)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86_400 => format!("{}h {}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d {}h", secs / 86_400, secs % 86_400 / 3600),
    }
}

fn run(file: Option<&Path>, limit: usize) -> Result<app::Report, ExitCode> {
    let config = load(file, Mode::Production)?;
    let runtime = super::runtime()?;
    runtime.block_on(app::report(&config, limit)).map_err(|e| {
        eprintln!("{e}");
        ExitCode::FAILURE
    })
}

pub fn inbox(file: Option<&Path>) -> ExitCode {
    match run(file, 0) {
        Ok(report) => {
            match report.inbox_oldest {
                None => println!("no notification waiting"),
                Some(oldest) => println!(
                    "{} notification(s) waiting for confirmation; the oldest for {}",
                    report.inbox_waiting,
                    age(oldest)
                ),
            }
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

pub fn waiting(file: Option<&Path>, limit: usize) -> ExitCode {
    match run(file, limit) {
        Ok(report) => {
            if report.waiting.is_empty() {
                println!("no unfinished application");
            } else {
                println!(
                    "{:<38} {:<22} {:>10}  external reference",
                    "application", "status", "unchanged"
                );
                for app in report.waiting {
                    println!(
                        "{:<38} {:<22} {:>10}  {}",
                        app.id,
                        app.status,
                        age(app.update_time),
                        app.external_reference
                    );
                }
            }
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}
