//! Reading and checking a configuration the way rvsd starts from it, without
//! DPDK: `rvsd --check-config` and `rvsadm --check-config` both end here, so a
//! management host without libdpdk can validate a file before it is copied to
//! the appliance or applied with `systemctl reload`.
//!
//! Exit codes (rvsd's): 0 valid; 2 invalid JSON config or sync settings;
//! 10-15 keepalived.conf errors; 3 the machine cannot run it (pre-flight:
//! lcores, interfaces, privileges, hugepages).

use std::path::Path;
use std::process::ExitCode;

use crate::sync::SyncSettings;
use crate::{preflight, Config};

/// Reads the config as rvsd's command line says: the JSON file, or the JSON
/// base plus a keepalived.conf. The error is the message and the exit code.
pub fn load_config(config: &Path, keepalived: Option<&Path>) -> Result<Config, (String, u8)> {
    let base = Config::load(config).map_err(|e| (format!("invalid configuration {}: {e}", config.display()), 2))?;
    match keepalived {
        None => Ok(base),
        Some(path) => crate::keepalived::load(path, &base).map_err(|e| (e.to_string(), e.exit_code())),
    }
}

/// Loads the config and checks what rvsd needs before anything starts: the
/// connection sync settings (key, addresses, from the environment too).
pub fn load_for_start(config: &Path, keepalived: Option<&Path>) -> Result<Config, (String, u8)> {
    let loaded = load_config(config, keepalived)?;
    SyncSettings::from_env(&loaded).map_err(|e| (format!("invalid configuration {}: {e}", config.display()), 2))?;
    Ok(loaded)
}

/// Runs the pre-flight checks, printing each problem as `program: problem`.
/// True when there is none.
pub fn preflight_ok(program: &str, config: &Config, when: preflight::When) -> bool {
    let problems = preflight::check(config, &preflight::Host::system(), when);
    for p in &problems {
        crate::systemd::print_error(program, p);
    }
    problems.is_empty()
}

/// The whole `--check-config`: load, validate, pre-flight (without the
/// checks that only a start can make, such as the EAL file prefix's lock).
pub fn check_config(program: &str, config: &Path, keepalived: Option<&Path>) -> ExitCode {
    let loaded = match load_for_start(config, keepalived) {
        Ok(c) => c,
        Err((message, code)) => {
            crate::systemd::print_error(program, message);
            return ExitCode::from(code);
        }
    };
    if !preflight_ok(program, &loaded, preflight::When::CheckOnly) {
        return ExitCode::from(3);
    }
    println!("{program}: configuration {} is valid", keepalived.unwrap_or(config).display());
    ExitCode::SUCCESS
}
