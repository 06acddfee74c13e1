//! `erase`: delete everything the gateway holds about one application, at once.

use std::{path::Path, process::ExitCode};

use super::serve::load;
use crate::{app, config::Mode, domain::ApplicationId, telemetry};

pub fn run(file: Option<&Path>, application_id: &str) -> ExitCode {
    let Some(id) = ApplicationId::parse(application_id) else {
        eprintln!("--application-id: not an application id");
        return ExitCode::from(2);
    };
    let config = match load(file, Mode::Production) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let runtime = match super::runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    // The audit record of the erasure goes where the gateway's logs go.
    let _logs = runtime.block_on(async { telemetry::init(&config.log) });
    match runtime.block_on(app::erase(&config, &id)) {
        Ok(true) => {
            println!("erased {id}: the application, its events and everything else held about it");
            ExitCode::SUCCESS
        }
        Ok(false) => {
            eprintln!("the store holds nothing about {id}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
