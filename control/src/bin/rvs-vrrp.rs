//! rvs-vrrp: rvsd's VRRP engine on its own, for tests and debugging.
//!
//! ```text
//! rvs-vrrp [--manage-vips] CONFIG.json
//! ```
//!
//! CONFIG.json is either a `VrrpConfig` (the `vrrp` object of rvsd's config)
//! or `{"vrrp": {...}, "interfaces": {"lan0": "eth0"}, "manage_vips": true}`
//! where `interfaces` maps instance interfaces to kernel interfaces.
//!
//! Every state change is printed on stdout as one JSON line:
//! `{"event":"state","instance":"VI_1","state":"MASTER","priority":150,
//!   "virtual_ipaddress":["10.0.0.100"],"monotonic":1234.567,"time":1700000000.1}`
//! where `monotonic` is CLOCK_MONOTONIC in seconds (Python's
//! `time.monotonic()`), so a test can time failovers across processes.
//! With `--manage-vips` the VIPs are added to (MASTER) and removed from
//! (other states) the kernel interface with `ip addr` (IPv4, `/32`) or
//! `ip -6 addr ... nodad` (IPv6, `/128`, no duplicate address detection:
//! the address must answer at once), as Keepalived does.
//! SIGTERM / SIGINT resign (priority-0 adverts) and exit 0.

use std::collections::HashMap;
use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use rvs_control::ha::VrrpConfig;
use rvs_control::vrrp::{VrrpEngine, VrrpEvent, VrrpState};
use serde::Deserialize;
use tokio::signal::unix::{signal, SignalKind};

#[derive(Parser, Debug)]
#[command(name = "rvs-vrrp", about = "Run rvs's VRRP engine from a JSON file (test/debug tool)")]
struct Args {
    /// Add the VIPs to the interface as master, remove them otherwise.
    #[arg(long)]
    manage_vips: bool,
    /// The JSON file.
    config: PathBuf,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct File {
    vrrp: VrrpConfig,
    #[serde(default)]
    interfaces: HashMap<String, String>,
    #[serde(default)]
    manage_vips: bool,
}

fn load(path: &PathBuf) -> Result<File, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    if value.get("vrrp").is_some() {
        serde_json::from_value(value).map_err(|e| format!("{}: {e}", path.display()))
    } else {
        let vrrp = serde_json::from_value(value).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(File { vrrp, interfaces: HashMap::new(), manage_vips: false })
    }
}

fn monotonic() -> f64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).map(|t| t.tv_sec() as f64 + t.tv_nsec() as f64 / 1e9).unwrap_or(0.0)
}

fn wall() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

fn print(line: serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// The `ip` arguments adding (`present`) or removing `vip` on `ifname`.
fn ip_args(ifname: &str, vip: IpAddr, present: bool) -> Vec<String> {
    let verb = if present { "add" } else { "del" };
    let mut args: Vec<String> = match vip {
        IpAddr::V4(v4) => vec!["addr".into(), verb.into(), format!("{v4}/32")],
        IpAddr::V6(v6) => vec!["-6".into(), "addr".into(), verb.into(), format!("{v6}/128")],
    };
    args.extend(["dev".to_owned(), ifname.to_owned()]);
    if vip.is_ipv6() && present {
        args.push("nodad".to_owned());
    }
    args
}

fn set_vips(ifname: &str, vips: &[IpAddr], present: bool) {
    for vip in vips {
        let verb = if present { "add" } else { "del" };
        let status = std::process::Command::new("ip").args(ip_args(ifname, *vip, present)).stderr(std::process::Stdio::null()).status();
        if let Err(e) = status {
            eprintln!("rvs-vrrp: ip addr {verb} {vip}: {e}");
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let file = match load(&args.config) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("rvs-vrrp: {e}");
            return ExitCode::from(2);
        }
    };
    let manage_vips = args.manage_vips || file.manage_vips;
    let ifname_of: HashMap<String, String> = file
        .vrrp
        .instances
        .iter()
        .map(|i| {
            let k = file.interfaces.get(&i.interface).cloned().unwrap_or_else(|| i.interface.clone());
            (i.name.clone(), k)
        })
        .collect();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let engine = match VrrpEngine::start(&file.vrrp, file.interfaces.clone(), Arc::new(|_: &str| None), tx) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("rvs-vrrp: {e}");
            return ExitCode::from(1);
        }
    };
    print(serde_json::json!({"event": "started", "pid": std::process::id(), "monotonic": monotonic()}));
    let (mut term, mut int) = match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(t), Ok(i)) => (t, i),
        _ => {
            eprintln!("rvs-vrrp: cannot install signal handlers");
            return ExitCode::from(1);
        }
    };
    let handle = |ev: VrrpEvent, engine: &VrrpEngine| {
        let VrrpEvent::State { instance, state, virtual_ipaddress } = ev;
        let priority = engine.states().into_iter().find(|s| s.name == instance).map_or(0, |s| s.priority);
        if manage_vips {
            if let Some(ifname) = ifname_of.get(&instance) {
                set_vips(ifname, &virtual_ipaddress, state == VrrpState::Master);
            }
        }
        print(serde_json::json!({
            "event": "state", "instance": instance, "state": state, "priority": priority,
            "virtual_ipaddress": virtual_ipaddress, "monotonic": monotonic(), "time": wall(),
        }));
    };
    loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                Some(ev) => handle(ev, &engine),
                None => break,
            },
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    engine.shutdown();
    while let Ok(ev) = rx.try_recv() {
        let VrrpEvent::State { instance, state, virtual_ipaddress } = ev;
        if manage_vips {
            if let Some(ifname) = ifname_of.get(&instance) {
                set_vips(ifname, &virtual_ipaddress, false);
            }
        }
        print(serde_json::json!({"event": "state", "instance": instance, "state": state,
            "virtual_ipaddress": virtual_ipaddress, "monotonic": monotonic(), "time": wall()}));
    }
    print(serde_json::json!({"event": "stopped", "monotonic": monotonic()}));
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_commands_per_family() {
        let v4: IpAddr = "10.0.0.100".parse().expect("address");
        let v6: IpAddr = "2001:db8::100".parse().expect("address");
        assert_eq!(ip_args("eth0", v4, true), ["addr", "add", "10.0.0.100/32", "dev", "eth0"]);
        assert_eq!(ip_args("eth0", v6, true), ["-6", "addr", "add", "2001:db8::100/128", "dev", "eth0", "nodad"]);
        assert_eq!(ip_args("eth0", v6, false), ["-6", "addr", "del", "2001:db8::100/128", "dev", "eth0"]);
    }
}
