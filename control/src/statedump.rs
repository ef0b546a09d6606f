//! State dumps on a signal, as Keepalived gives them: SIGUSR1 writes the
//! data (services and real servers as the dataplane runs them, health, VRRP,
//! connection sync) and SIGUSR2 the statistics, each as JSON to a file under
//! rvsd's runtime directory and as a short summary to the log.
//!
//! Keepalived writes `/tmp/keepalived.data`; rvsd writes under `/run/rvsd`
//! instead (systemd's `RuntimeDirectory=`), never to a fixed name in a
//! world-writable directory, where a planted symlink would make root write
//! elsewhere. Secrets (`api.token`, `sync.key`) are never in a dump.

use std::io;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::api::{without_secrets, ApiState};

/// Where dumps go unless `--dump-dir` says otherwise.
pub const DEFAULT_DIR: &str = "/run/rvsd";
/// The SIGUSR1 dump's file name.
pub const DATA_FILE: &str = "rvsd.data";
/// The SIGUSR2 dump's file name.
pub const STATS_FILE: &str = "rvsd.stats";

/// The SIGUSR1 dump: generation, the effective config's services (without
/// secrets) and SYN-flood settings, every checked real server's health, VRRP
/// instances and sync.
pub async fn data(state: &ApiState) -> Value {
    let (config, generation) = state.effective_config().await;
    let overlay = state.overlay_status();
    json!({
        "generation": generation,
        "syn_flood": config.syn_flood,
        "services": without_secrets(config).services,
        "health": state.health(),
        "vrrp": overlay.get("vrrp").cloned().unwrap_or(Value::Null),
        "sync": overlay.get("sync").cloned().unwrap_or(Value::Null),
        "sync_master": overlay.get("sync_master").cloned().unwrap_or(Value::Null),
    })
}

/// The SIGUSR2 dump: per-service counters and the dataplane's statistics
/// (asks the workers: call it off the async threads).
pub fn stats(state: &ApiState) -> Value {
    json!({ "services": state.service_stats(), "dataplane": state.dataplane_stats() })
}

/// One log line per service, real server and VRRP instance of a [`data`] dump.
pub fn summary(data: &Value) -> Vec<String> {
    let mut lines = Vec::new();
    let empty = Vec::new();
    let health = data["health"]["reals"].as_array().unwrap_or(&empty);
    for s in data["services"].as_array().unwrap_or(&empty) {
        let (protocol, vip, port) = (text(&s["protocol"]), text(&s["vip"]), text(&s["port"]));
        let mut line = format!("service {protocol} {vip}:{port} scheduler {} forward {}", text(&s["scheduler"]), text(&s["forward"]));
        // Left out of the JSON when off, as DPVS's Keepalived dump says "SYN proxy is OFF".
        if let Some(proxy) = s["syn_proxy"].as_str() {
            line.push_str(&format!(" syn_proxy {proxy}"));
        }
        lines.push(line);
        for r in s["reals"].as_array().unwrap_or(&empty) {
            let rport = if r["port"].is_null() { port.clone() } else { text(&r["port"]) };
            let checked = health.iter().find(|h| {
                h["service"]["vip"] == s["vip"]
                    && h["service"]["port"] == s["port"]
                    && h["service"]["protocol"] == s["protocol"]
                    && h["address"] == r["address"]
                    && text(&h["port"]) == rport
            });
            let state = checked.map_or("unchecked".to_owned(), |h| text(&h["state"]));
            lines.push(format!("  real {}:{rport} weight {} health {state}", text(&r["address"]), text(&r["weight"])));
        }
    }
    for v in data["vrrp"].as_array().unwrap_or(&empty) {
        lines.push(format!("VRRP instance {} state {} priority {}", text(&v["instance"]), text(&v["state"]), text(&v["priority"])));
    }
    if !data["sync"].is_null() {
        lines.push(format!("sync instance {} master {}", text(&data["sync"]["instance"]), text(&data["sync_master"])));
    }
    lines
}

/// A JSON value as log text: strings without their quotes.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

/// Writes `value` (pretty JSON) to `dir/name` atomically, creating `dir`
/// (mode 0755) when missing; the file is readable by its owner only.
pub fn write(dir: &Path, name: &str, value: &Value) -> io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o755).create(dir)?;
    let path = dir.join(name);
    let text = serde_json::to_string_pretty(value).map_err(io::Error::other)?;
    crate::persist::write_atomic(&path, format!("{text}\n").as_bytes())?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_names_every_service_real_and_instance() {
        let data = json!({
            "services": [{ "protocol": "tcp", "vip": "10.0.0.100", "port": 80, "scheduler": "wlc", "forward": "nat",
                           "reals": [{ "address": "10.1.0.11", "weight": 2 }, { "address": "10.1.0.12", "port": 8080, "weight": 0 }] },
                         { "protocol": "tcp", "vip": "10.0.0.100", "port": 443, "scheduler": "rr", "forward": "fullnat",
                           "syn_proxy": "auto", "reals": [] }],
            "health": { "reals": [{ "service": { "protocol": "tcp", "vip": "10.0.0.100", "port": 80 },
                                    "address": "10.1.0.11", "port": 80, "state": "up" }] },
            "vrrp": [{ "instance": "VI_1", "state": "Master", "priority": 150 }],
            "sync": null,
        });
        assert_eq!(
            summary(&data),
            [
                "service tcp 10.0.0.100:80 scheduler wlc forward nat",
                "  real 10.1.0.11:80 weight 2 health up",
                "  real 10.1.0.12:8080 weight 0 health unchecked",
                "service tcp 10.0.0.100:443 scheduler rr forward fullnat syn_proxy auto",
                "VRRP instance VI_1 state Master priority 150",
            ]
        );
    }

    #[test]
    fn write_creates_the_directory_and_an_owner_only_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("rvs-dump-{}", std::process::id())).join("run");
        let _ = std::fs::remove_dir_all(&dir);
        let path = write(&dir, DATA_FILE, &json!({ "generation": 3 })).expect("write");
        let back: Value = serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
        assert_eq!(back["generation"], 3);
        assert_eq!(std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777, 0o600);
        let _ = std::fs::remove_dir_all(dir.parent().expect("parent"));
    }
}
