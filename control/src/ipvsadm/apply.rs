//! The table-changing commands, applied to a copy of the config with
//! ipvsadm's semantics; rvsadm then sends the whole config back in one
//! `PUT /api/v1/config` (so `-R` is all-or-nothing) and rvsd validates it.
//!
//! Semantics kept from ipvsadm/IPVS:
//! * `-E` sets everything `-A` sets: an option left out takes its default
//!   (scheduler `wlc`, no persistence, no scheduler flags, and, as DPVS's
//!   `-E` without `-j`, the SYN proxy off).
//! * `-e` likewise sets weight (default 1), forwarding method and thresholds.
//! * A real server's port defaults to the service port, and is the service
//!   port for direct routing and tunnelling whatever `-r` says.
//! * `--set` leaves a timeout given as 0 unchanged.
//!
//! rvs's own rule: a real server added without `-g/-m/-i/-b` uses the
//! service's default forwarding method (`dr`, i.e. `-g`, unless the config
//! file says otherwise); an explicit method equal to it is stored as the
//! default, so a config round-trips unchanged.

use std::net::{IpAddr, Ipv4Addr};

use rvs_dataplane::sched::{HashFields, SchedOptions};
use rvs_dataplane::snapshot::{ForwardMode, Protocol, SchedulerKind, ServiceKey};
use serde_json::json;

use crate::config::{Config, PersistenceConfig, RealConfig, ServiceConfig};
use crate::ipvsadm::parse::{Command, Endpoint, Invocation};

/// A command IPVS would refuse, with ipvsadm's message (`Service already exists`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpError(pub String);

impl std::fmt::Display for OpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn err<T>(message: impl Into<String>) -> Result<T, OpError> {
    Err(OpError(message.into()))
}

/// The service key of `-t/-u host:port`.
pub fn service_key(inv: &Invocation) -> Option<ServiceKey> {
    inv.service.map(|(protocol, ep)| ServiceKey { protocol, vip: ep.addr, port: ep.port.unwrap_or(0) })
}

fn scheduler(name: Option<&str>) -> Result<SchedulerKind, OpError> {
    let name = name.unwrap_or("wlc");
    serde_json::from_value(json!(name)).or_else(|_| err("Scheduler not found"))
}

/// `--sched-flags` as [`SchedOptions`] (IPVS: flag-1 is the fallback flag, flag-2 the port flag).
fn sched_options(flags: &[String], kind: SchedulerKind, keep_table_size: Option<u32>) -> Result<SchedOptions, OpError> {
    let mut o = SchedOptions { table_size: keep_table_size, ..SchedOptions::default() };
    for flag in flags {
        let needs = |s: SchedulerKind| {
            if kind == s {
                Ok(())
            } else {
                err(format!("incompatible scheduler flag `{flag}'"))
            }
        };
        match flag.as_str() {
            "sh-fallback" => needs(SchedulerKind::Sh).map(|()| o.fallback = true)?,
            "sh-port" => needs(SchedulerKind::Sh).map(|()| o.hash = HashFields::SrcAddrPort)?,
            "mh-fallback" => needs(SchedulerKind::Mh).map(|()| o.fallback = true)?,
            "mh-port" => needs(SchedulerKind::Mh).map(|()| o.hash = HashFields::SrcAddrPort)?,
            "flag-1" => o.fallback = true,
            "flag-2" => o.hash = HashFields::SrcAddrPort,
            _ => return err(format!("invalid scheduler flag `{flag}'")),
        }
    }
    Ok(o)
}

fn persistence(inv: &Invocation) -> Option<PersistenceConfig> {
    inv.persistent.map(|timeout| PersistenceConfig { timeout, netmask: inv.netmask })
}

fn find_service(config: &Config, key: &ServiceKey, missing: &str) -> Result<usize, OpError> {
    config.service_index(key).map_or_else(|| err(missing), Ok)
}

/// The real server's key (address, port) as ipvsadm computes it for `-a`/`-e`/`-d`.
fn real_endpoint(inv: &Invocation, svc: &ServiceConfig, forward: ForwardMode, forced: bool) -> (IpAddr, u16) {
    let ep = inv.server.unwrap_or(Endpoint { addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED), port: None });
    let mut port = ep.port.unwrap_or(svc.port);
    if forced && matches!(forward, ForwardMode::Dr | ForwardMode::Tun) {
        port = svc.port;
    }
    (ep.addr, port)
}

/// IPVS's `ip_vs_add_dest`/`ip_vs_edit_dest` refuse a lower threshold above
/// the upper one, also when the upper one is 0 (`-y 5` alone): `-ERANGE`,
/// which ipvsadm prints as `strerror(ERANGE)`.
fn check_thresholds(real: &RealConfig) -> Result<(), OpError> {
    if real.lower_threshold > real.upper_threshold {
        return err("Numerical result out of range");
    }
    Ok(())
}

/// Applies one table-changing command to `config`. Returns what was done, for messages.
pub fn apply(config: &mut Config, inv: &Invocation) -> Result<String, OpError> {
    match inv.command {
        Command::Flush => {
            config.services.clear();
            Ok("cleared the table".into())
        }
        Command::SetTimeout => {
            let [tcp, tcp_fin, udp] = inv.timeouts.unwrap_or([0, 0, 0]);
            if tcp != 0 {
                config.timeouts.tcp = tcp;
            }
            if tcp_fin != 0 {
                config.timeouts.tcp_fin = tcp_fin;
            }
            if udp != 0 {
                config.timeouts.udp = udp;
            }
            Ok(format!("set timeouts {tcp} {tcp_fin} {udp}"))
        }
        Command::AddService => {
            let key = service_key(inv).ok_or_else(|| OpError("missing service".into()))?;
            if key.port == 0 {
                return err("rvs needs a virtual port: services on port 0 (all ports) are not supported");
            }
            if config.service_index(&key).is_some() {
                return err("Service already exists");
            }
            let kind = scheduler(inv.scheduler.as_deref())?;
            let opts = sched_options(&inv.sched_flags, kind, None)?;
            let mut service: ServiceConfig = serde_json::from_value(json!({
                "protocol": key.protocol, "vip": key.vip, "port": key.port, "scheduler": kind,
            }))
            .map_err(|e| OpError(e.to_string()))?;
            service.persistence = persistence(inv);
            service.sched_options = opts;
            service.syn_proxy = inv.syn_proxy.unwrap_or_default();
            config.services.push(service);
            Ok(format!("added service {key}"))
        }
        Command::EditService => {
            let key = service_key(inv).ok_or_else(|| OpError("missing service".into()))?;
            let i = find_service(config, &key, "No such service")?;
            let kind = scheduler(inv.scheduler.as_deref())?;
            let svc = &mut config.services[i];
            let keep = if kind == svc.scheduler { svc.sched_options.table_size } else { None };
            svc.sched_options = sched_options(&inv.sched_flags, kind, keep)?;
            svc.scheduler = kind;
            svc.persistence = persistence(inv);
            svc.syn_proxy = inv.syn_proxy.unwrap_or_default();
            Ok(format!("edited service {key}"))
        }
        Command::DeleteService => {
            let key = service_key(inv).ok_or_else(|| OpError("missing service".into()))?;
            let i = find_service(config, &key, "No such service")?;
            config.services.remove(i);
            Ok(format!("deleted service {key}"))
        }
        Command::AddServer => {
            let key = service_key(inv).ok_or_else(|| OpError("missing service".into()))?;
            let i = find_service(config, &key, "Service not defined")?;
            let svc = &mut config.services[i];
            let forward = inv.forward.unwrap_or(svc.forward);
            let (addr, port) = real_endpoint(inv, svc, forward, true);
            if svc.real_index(addr, port).is_some() {
                return err("Destination already exists");
            }
            let mut real: RealConfig = serde_json::from_value(json!({ "address": addr })).map_err(|e| OpError(e.to_string()))?;
            real.port = (port != svc.port).then_some(port);
            real.weight = inv.weight.unwrap_or(1);
            real.forward = (forward != svc.forward).then_some(forward);
            real.upper_threshold = inv.u_threshold.unwrap_or(0);
            real.lower_threshold = inv.l_threshold.unwrap_or(0);
            check_thresholds(&real)?;
            svc.reals.push(real);
            Ok(format!("added real server {addr}:{port} to {key}"))
        }
        Command::EditServer => {
            let key = service_key(inv).ok_or_else(|| OpError("missing service".into()))?;
            let i = find_service(config, &key, "Service not defined")?;
            let svc = &mut config.services[i];
            let forward = inv.forward.unwrap_or(svc.forward);
            let (addr, port) = real_endpoint(inv, svc, forward, true);
            let Some(j) = svc.real_index(addr, port) else {
                return err("No such destination");
            };
            let svc_forward = svc.forward;
            let real = &mut svc.reals[j];
            real.weight = inv.weight.unwrap_or(1);
            real.forward = (forward != svc_forward).then_some(forward);
            real.upper_threshold = inv.u_threshold.unwrap_or(0);
            real.lower_threshold = inv.l_threshold.unwrap_or(0);
            check_thresholds(real)?;
            Ok(format!("edited real server {addr}:{port} of {key}"))
        }
        Command::DeleteServer => {
            let key = service_key(inv).ok_or_else(|| OpError("missing service".into()))?;
            let i = find_service(config, &key, "Service not defined")?;
            let svc = &mut config.services[i];
            let (addr, port) = real_endpoint(inv, svc, ForwardMode::Nat, false);
            let Some(j) = svc.real_index(addr, port) else {
                return err("No such destination");
            };
            svc.reals.remove(j);
            Ok(format!("deleted real server {addr}:{port} of {key}"))
        }
        Command::AddLaddr => {
            let key = service_key(inv).ok_or_else(|| OpError("missing service".into()))?;
            let i = find_service(config, &key, "No such service")?;
            let lip = inv.laddr.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
            let svc = &mut config.services[i];
            if svc.local_addresses.contains(&lip) {
                return err("Local address already exists");
            }
            svc.local_addresses.push(lip);
            Ok(format!("added local address {lip} to {key}"))
        }
        Command::DelLaddr => {
            let key = service_key(inv).ok_or_else(|| OpError("missing service".into()))?;
            let i = find_service(config, &key, "No such service")?;
            let lip = inv.laddr.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
            let svc = &mut config.services[i];
            let Some(j) = svc.local_addresses.iter().position(|a| *a == lip) else {
                return err("No such local address");
            };
            svc.local_addresses.remove(j);
            Ok(format!("deleted local address {lip} of {key}"))
        }
        other => err(format!("the '{}' command does not change the table", other.name())),
    }
}

/// The protocol letter ipvsadm uses for a service (`-t`/`-u`), for messages.
pub fn protocol_flag(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "-t",
        Protocol::Udp => "-u",
    }
}
