//! ipvsadm's listings, character for character: the format strings of
//! ipvsadm.c's `print_title`, `print_service_entry`, `print_largenum`,
//! `list_conn`/`print_conn`, `list_timeout`, the `-S` rules, and DPVS's
//! `-G` local address listing.
//!
//! Differences, all documented in `deploy/docs/rvsadm.md`:
//! * the header line names rvs's version and its connection capacity
//!   (`IP Virtual Server version 0.1.0 (size=131072)`);
//! * without `-n`, ports are named from `/etc/services` as ipvsadm does, but
//!   addresses are not resolved (no reverse DNS);
//! * FULLNAT real servers show `FullNat` and save as `-b`, local addresses
//!   save as DPVS's `-P ... -z LIP` lines, thresholds save as `-x`/`-y`
//!   (ipvsadm's `-S` drops them, so its restore loses them);
//! * a FULLNAT service without local addresses ends its line with
//!   [`NO_LADDR_NOTE`] in the default listing;
//! * the SYN proxy shows as DPVS's ` synproxy` flag (` synproxy auto` for
//!   rvs's `auto`) and saves as `-j enable` / `-j auto` (DPVS's `-S` leaves
//!   it out, so its restore loses it).

use std::collections::HashMap;
use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use rvs_dataplane::sched::HashFields;
use rvs_dataplane::snapshot::{ForwardMode, Protocol, SchedulerKind, ServiceKey, SynProxy, Timeouts};
use rvs_dataplane::stats::ConnInfo;

use crate::api::{RealStatsView, ServiceStatsView};
use crate::config::{Config, PersistenceConfig, ServiceConfig};
use crate::ipvsadm::order;
use crate::ipvsadm::parse::Format;

/// Port names from `/etc/services`.
#[derive(Clone, Debug, Default)]
pub struct ServiceNames {
    by_port: HashMap<(u16, Protocol), String>,
    by_name: HashMap<(String, Protocol), u16>,
}

impl ServiceNames {
    /// Parses the text of an `/etc/services` file.
    pub fn parse(text: &str) -> Self {
        let mut names = ServiceNames::default();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or_default();
            let mut words = line.split_whitespace();
            let (Some(name), Some(spec)) = (words.next(), words.next()) else { continue };
            let Some((port, proto)) = spec.split_once('/') else { continue };
            let Ok(port) = port.parse::<u16>() else { continue };
            let proto = match proto {
                "tcp" => Protocol::Tcp,
                "udp" => Protocol::Udp,
                _ => continue,
            };
            names.by_port.entry((port, proto)).or_insert_with(|| name.to_string());
            names.by_name.entry((name.to_string(), proto)).or_insert(port);
            for alias in words {
                names.by_name.entry((alias.to_string(), proto)).or_insert(port);
            }
        }
        names
    }

    /// The system's names (empty when `/etc/services` cannot be read).
    pub fn system() -> Self {
        std::fs::read_to_string("/etc/services").map(|t| Self::parse(&t)).unwrap_or_default()
    }

    /// The port of a service name.
    pub fn port(&self, name: &str, protocol: Protocol) -> Option<u16> {
        self.by_name.get(&(name.to_string(), protocol)).copied()
    }

    /// The name of a port.
    pub fn name(&self, port: u16, protocol: Protocol) -> Option<&str> {
        self.by_port.get(&(port, protocol)).map(String::as_str)
    }
}

/// ipvsadm's `addrport_to_anyname`: `addr:port` (`[addr]:port` for IPv6),
/// the port by name unless numeric.
fn addrport(addr: IpAddr, port: u16, protocol: Protocol, numeric: bool, names: &ServiceNames) -> String {
    let host = match addr {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    };
    match (numeric, names.name(port, protocol)) {
        (false, Some(name)) => format!("{host}:{name}"),
        _ => format!("{host}:{port}"),
    }
}

/// Cuts `s` to at most `n` characters (ipvsadm's `name[n] = '\0'`).
fn truncate(mut s: String, n: usize) -> String {
    if let Some((i, _)) = s.char_indices().nth(n) {
        s.truncate(i);
    }
    s
}

/// ipvsadm's `print_largenum`.
pub fn largenum(out: &mut String, i: u64, exact: bool) {
    if exact {
        let len = i.to_string().len();
        let width = if len <= 8 { 9 } else { len + 1 };
        let _ = write!(out, "{i:>width$}");
    } else if i < 100_000_000 {
        let _ = write!(out, "{i:>9}");
    } else if i < 1_000_000_000 {
        let _ = write!(out, "{:>8}K", i / 1000);
    } else if i < 100_000_000_000 {
        let _ = write!(out, "{:>8}M", i / 1_000_000);
    } else if i < 100_000_000_000_000 {
        let _ = write!(out, "{:>8}G", i / 1_000_000_000);
    } else {
        let _ = write!(out, "{:>8}T", i / 1_000_000_000_000);
    }
}

/// ipvsadm's `fwd_name`, plus DPVS's `FullNat`.
pub fn fwd_name(f: ForwardMode) -> &'static str {
    match f {
        ForwardMode::Dr => "Route",
        ForwardMode::Nat => "Masq",
        ForwardMode::Tun => "Tunnel",
        ForwardMode::FullNat => "FullNat",
    }
}

/// ipvsadm's `fwd_switch`, plus DPVS's `-b`.
pub fn fwd_switch(f: ForwardMode) -> &'static str {
    match f {
        ForwardMode::Dr => "-g",
        ForwardMode::Nat => "-m",
        ForwardMode::Tun => "-i",
        ForwardMode::FullNat => "-b",
    }
}

fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "TCP",
        Protocol::Udp => "UDP",
    }
}

fn protocol_option(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "-t",
        Protocol::Udp => "-u",
    }
}

/// The scheduler flags of a service as ipvsadm names them (`sh-fallback,sh-port`).
pub fn sched_flags(s: &ServiceConfig) -> Vec<String> {
    let o = &s.sched_options;
    let prefix = match s.scheduler {
        SchedulerKind::Sh => Some("sh"),
        SchedulerKind::Mh => Some("mh"),
        _ => None,
    };
    let mut flags = Vec::new();
    if o.fallback {
        flags.push(prefix.map_or("flag-1".to_string(), |p| format!("{p}-fallback")));
    }
    if o.hash == HashFields::SrcAddrPort {
        flags.push(prefix.map_or("flag-2".to_string(), |p| format!("{p}-port")));
    }
    flags
}

/// Everything a listing shows.
#[derive(Clone, Copy, Debug)]
pub struct ListInput<'a> {
    /// The config in force.
    pub config: &'a Config,
    /// Counters, connection counts and rates ([`crate::api::stats_view`]).
    pub stats: &'a [ServiceStatsView],
    /// Persistence templates per real server, for `--persistent-conn`.
    pub persist_conns: &'a HashMap<(ServiceKey, IpAddr, u16), u32>,
    /// Port names for listings without `-n`.
    pub names: &'a ServiceNames,
}

/// The header line of a full listing, shaped as IPVS's.
pub fn version_line(config: &Config) -> String {
    let size = u64::from(config.conn_table_size) * config.workers.len() as u64;
    format!("IP Virtual Server version {} (size={size})\n", env!("CARGO_PKG_VERSION"))
}

/// ipvsadm's `print_title` (nothing for `-S`).
pub fn title(fmt: &Format) -> String {
    if fmt.stats {
        format!(
            "{:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n  -> RemoteAddress:Port\n",
            "Prot LocalAddress:Port", "Conns", "InPkts", "OutPkts", "InBytes", "OutBytes"
        )
    } else if fmt.rate {
        format!(
            "{:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n  -> RemoteAddress:Port\n",
            "Prot LocalAddress:Port", "CPS", "InPPS", "OutPPS", "InBPS", "OutBPS"
        )
    } else if fmt.thresholds {
        format!(
            "{:<33} {:<10} {:<10} {:<10} {:<10}\n  -> RemoteAddress:Port\n",
            "Prot LocalAddress:Port", "Uthreshold", "Lthreshold", "ActiveConn", "InActConn"
        )
    } else if fmt.persistent_conn {
        format!(
            "{:<33} {:<9} {:<11} {:<10} {:<10}\n  -> RemoteAddress:Port\n",
            "Prot LocalAddress:Port", "Weight", "PersistConn", "ActiveConn", "InActConn"
        )
    } else if fmt.tun_info {
        "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn\n"
            .to_string()
    } else {
        "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n".to_string()
    }
}

/// What the service line of a FULLNAT service without local addresses ends
/// with: its FULLNAT real servers get no connection (counted as `drop_no_laddr`)
/// until `-P ... -z` adds one, as in DPVS.
pub const NO_LADDR_NOTE: &str = " [fullnat: no local address, -P -z to add one]";

/// The `-M` ipvsadm prints for persistence `p` of a service at `vip`
/// (print_service_entry): nothing for one client per template
/// (255.255.255.255, /128), a dotted netmask for IPv4, the prefix length for IPv6.
fn shown_netmask(p: &PersistenceConfig, vip: IpAddr) -> Option<String> {
    let len = u32::from(p.prefix_len(vip));
    match vip {
        IpAddr::V4(_) if len < 32 => Some(Ipv4Addr::from(u32::MAX.checked_shl(32 - len).unwrap_or(0)).to_string()),
        IpAddr::V6(_) if len < 128 => Some(len.to_string()),
        _ => None,
    }
}

/// True when a FULLNAT real server of `svc` cannot be used for want of a local address.
fn waits_for_laddr(svc: &ServiceConfig) -> bool {
    svc.local_addresses.is_empty() && svc.reals.iter().any(|r| r.forward_for(svc) == ForwardMode::FullNat)
}

/// ipvsadm's `print_service_entry` for one service (rules when `rule`).
fn service_entry(out: &mut String, input: &ListInput<'_>, svc: &ServiceConfig, fmt: &Format, rule: bool) {
    let key = svc.key();
    let vname = addrport(svc.vip, svc.port, svc.protocol, fmt.numeric, input.names);
    let svc_name = if rule {
        format!("{} {vname}", protocol_option(svc.protocol))
    } else {
        let name = format!("{:<4} {vname}", protocol_name(svc.protocol));
        // ipvsadm cuts IPv4 names to the column, never IPv6 ones.
        if svc.vip.is_ipv4() {
            truncate(name, 33)
        } else {
            name
        }
    };
    let stats = input.stats.iter().find(|s| s.protocol == svc.protocol && s.vip == svc.vip && s.port == svc.port);
    let zero = ServiceStatsView {
        protocol: svc.protocol,
        vip: svc.vip,
        port: svc.port,
        traffic: Default::default(),
        active: 0,
        inactive: 0,
        rates: Default::default(),
        reals: Vec::new(),
    };
    let stats = stats.unwrap_or(&zero);
    let flags = sched_flags(svc);
    if rule {
        let _ = write!(out, "-A {svc_name} -s {}", svc.scheduler);
        if let Some(p) = &svc.persistence {
            let _ = write!(out, " -p {}", p.timeout);
            if let Some(m) = shown_netmask(p, svc.vip) {
                let _ = write!(out, " -M {m}");
            }
        }
        if !flags.is_empty() {
            let _ = write!(out, " -b {}", flags.join(","));
        }
        match svc.syn_proxy {
            SynProxy::Off => {}
            SynProxy::On => out.push_str(" -j enable"),
            SynProxy::Auto => out.push_str(" -j auto"),
        }
    } else if fmt.stats {
        let _ = write!(out, "{svc_name:<33}");
        let t = stats.traffic;
        for v in [t.conns, t.in_pkts, t.out_pkts, t.in_bytes, t.out_bytes] {
            largenum(out, v, fmt.exact);
        }
    } else if fmt.rate {
        let _ = write!(out, "{svc_name:<33}");
        let r = stats.rates;
        for v in [r.cps, r.in_pps, r.out_pps, r.in_bps, r.out_bps] {
            largenum(out, v, fmt.exact);
        }
    } else {
        let _ = write!(out, "{svc_name} {}", svc.scheduler);
        if !flags.is_empty() {
            let _ = write!(out, " ({})", flags.join(","));
        }
        if let Some(p) = &svc.persistence {
            let _ = write!(out, " persistent {}", p.timeout);
            if let Some(m) = shown_netmask(p, svc.vip) {
                let _ = write!(out, " mask {m}");
            }
        }
        // DPVS's print_service_entry: " synproxy" after persistence.
        match svc.syn_proxy {
            SynProxy::Off => {}
            SynProxy::On => out.push_str(" synproxy"),
            SynProxy::Auto => out.push_str(" synproxy auto"),
        }
        if waits_for_laddr(svc) {
            out.push_str(NO_LADDR_NOTE);
        }
    }
    out.push('\n');

    if rule {
        for lip in &svc.local_addresses {
            let _ = writeln!(out, "-P {svc_name} -z {lip}");
        }
    }

    for real in order::reals(svc, fmt.nosort) {
        let port = real.port_for(svc);
        let forward = real.forward_for(svc);
        let dname = addrport(real.address, port, svc.protocol, fmt.numeric, input.names);
        let rs = stats.reals.iter().find(|r| r.address == real.address && r.port == port);
        let zero_real =
            RealStatsView { address: real.address, port, traffic: Default::default(), active: 0, inactive: 0, rates: Default::default() };
        let rs = rs.unwrap_or(&zero_real);
        if rule {
            let _ = write!(out, "-a {svc_name} -r {dname} {} -w {}", fwd_switch(forward), real.weight);
            if forward == ForwardMode::Tun {
                // ipvsadm 1.31's print_tunnel_rule for IPIP.
                out.push_str(" --tun-type ipip");
            }
            if real.upper_threshold != 0 {
                let _ = write!(out, " -x {}", real.upper_threshold);
            }
            if real.lower_threshold != 0 {
                let _ = write!(out, " -y {}", real.lower_threshold);
            }
            out.push('\n');
            continue;
        }
        let dname = if svc.vip.is_ipv4() { truncate(dname, 28) } else { dname };
        if fmt.stats {
            let _ = write!(out, "  -> {dname:<28}");
            let t = rs.traffic;
            for v in [t.conns, t.in_pkts, t.out_pkts, t.in_bytes, t.out_bytes] {
                largenum(out, v, fmt.exact);
            }
            out.push('\n');
        } else if fmt.rate {
            let r = rs.rates;
            let _ = write!(out, "  -> {dname:<28} {:>8} {:>8} {:>8}", r.cps, r.in_pps, r.out_pps);
            largenum(out, r.in_bps, fmt.exact);
            largenum(out, r.out_bps, fmt.exact);
            out.push('\n');
        } else if fmt.thresholds {
            let _ = writeln!(
                out,
                "  -> {dname:<28} {:<10} {:<10} {:<10} {:<10}",
                real.upper_threshold, real.lower_threshold, rs.active, rs.inactive
            );
        } else if fmt.persistent_conn {
            let persist = input.persist_conns.get(&(key, real.address, port)).copied().unwrap_or(0);
            let _ = writeln!(out, "  -> {dname:<28} {:<9} {:<11} {:<10} {:<10}", real.weight, persist, rs.active, rs.inactive);
        } else if fmt.tun_info {
            let ti = if forward == ForwardMode::Tun { "ipip" } else { "n/a" };
            let _ = writeln!(
                out,
                "  -> {dname:<28} {:<7} {:<13} {:<6} {:<10} {:<10}",
                fwd_name(forward),
                ti,
                real.weight,
                rs.active,
                rs.inactive
            );
        } else {
            let _ = writeln!(out, "  -> {dname:<28} {:<7} {:<6} {:<10} {:<10}", fwd_name(forward), real.weight, rs.active, rs.inactive);
        }
    }
}

/// `-L` without a service: header, title, every service.
pub fn list_all(input: &ListInput<'_>, fmt: &Format) -> String {
    let mut out = version_line(input.config);
    out.push_str(&title(fmt));
    for svc in order::services(&input.config.services, fmt.nosort) {
        service_entry(&mut out, input, svc, fmt, false);
    }
    out
}

/// `-L -t/-u service`: title and that service (`None` when it does not exist).
pub fn list_service(input: &ListInput<'_>, key: &ServiceKey, fmt: &Format) -> Option<String> {
    let svc = input.config.services.iter().find(|s| s.key() == *key)?;
    let mut out = title(fmt);
    service_entry(&mut out, input, svc, fmt, false);
    Some(out)
}

/// `-S`: the table as commands that `-R` replays.
pub fn save(input: &ListInput<'_>, fmt: &Format) -> String {
    let mut out = String::new();
    for svc in order::services(&input.config.services, fmt.nosort) {
        service_entry(&mut out, input, svc, fmt, true);
    }
    out
}

/// `-L --timeout`.
pub fn list_timeout(t: &Timeouts) -> String {
    format!("Timeout (tcp tcpfin udp): {} {} {}\n", t.tcp, t.tcp_fin, t.udp)
}

/// `-L -c` (with `--persistent-conn`: ipvsadm's extra title columns).
pub fn list_connections(conns: &[ConnInfo], fmt: &Format, names: &ServiceNames) -> String {
    let mut out = String::from("IPVS connection entries\n");
    if fmt.persistent_conn {
        let _ =
            writeln!(out, "pro expire {:<11} {:<18} {:<18} {:<18} {:<16} pe_data", "state", "source", "virtual", "destination", "pe name");
    } else {
        let _ = writeln!(out, "pro expire {:<11} {:<18} {:<18} destination", "state", "source", "virtual");
    }
    for c in conns {
        let secs = c.expires_ms / 1000;
        let expire = format!("{:02}:{:02}", secs / 60, secs % 60);
        let p = c.protocol;
        let cname = addrport(c.client.ip(), c.client.port(), p, fmt.numeric, names);
        let vname = addrport(c.vip.ip(), c.vip.port(), p, fmt.numeric, names);
        let dname = addrport(c.real.ip(), c.real.port(), p, fmt.numeric, names);
        let _ = writeln!(out, "{:<3} {expire:<6} {:<11} {cname:<18} {vname:<18} {dname}", protocol_name(p), c.state);
    }
    out
}

/// DPVS's `-G`: local addresses per service, with the connections using each.
pub fn list_laddrs(config: &Config, only: Option<&ServiceKey>, conns_per_laddr: &HashMap<(ServiceKey, IpAddr), u32>) -> String {
    let mut out = format!("{:<20} {:<8} {:<20} {:<10} {:<10}\n", "VIP:VPORT", "TOTAL", "SNAT_IP", "CONFLICTS", "CONNS");
    for svc in order::services(&config.services, false) {
        let key = svc.key();
        if only.is_some_and(|k| *k != key) {
            continue;
        }
        let _ = writeln!(out, "{:<20} {:<8} ", SocketAddr::new(svc.vip, svc.port).to_string(), svc.local_addresses.len());
        for lip in &svc.local_addresses {
            let conns = conns_per_laddr.get(&(key, *lip)).copied().unwrap_or(0);
            let _ = writeln!(out, "{:<20} {:<8} {:<20} {:<10} {:<10}", "", "", lip.to_string(), 0, conns);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn largenum_scales_like_ipvsadm() {
        let f = |i, exact| {
            let mut s = String::new();
            largenum(&mut s, i, exact);
            s
        };
        assert_eq!(f(0, false), "        0");
        assert_eq!(f(99_999_999, false), " 99999999");
        assert_eq!(f(100_000_000, false), "  100000K");
        assert_eq!(f(999_999_999, false), "  999999K");
        assert_eq!(f(1_000_000_000, false), "    1000M");
        assert_eq!(f(99_999_999_999, false), "   99999M");
        assert_eq!(f(100_000_000_000, false), "     100G");
        assert_eq!(f(100_000_000_000_000, false), "     100T");
        assert_eq!(f(12, true), "       12");
        assert_eq!(f(123_456_789, true), " 123456789");
        assert_eq!(f(12_345_678_901, true), " 12345678901");
    }

    #[test]
    fn service_names_parse() {
        let n = ServiceNames::parse("http 80/tcp www # web\nhttp 80/udp\ndomain 53/udp\n# c\nbad line\n");
        assert_eq!(n.name(80, Protocol::Tcp), Some("http"));
        assert_eq!(n.port("www", Protocol::Tcp), Some(80));
        assert_eq!(n.port("domain", Protocol::Tcp), None);
        assert_eq!(n.port("domain", Protocol::Udp), Some(53));
        assert_eq!(addrport(Ipv4Addr::new(1, 2, 3, 4).into(), 80, Protocol::Tcp, false, &n), "1.2.3.4:http");
        assert_eq!(addrport(Ipv4Addr::new(1, 2, 3, 4).into(), 80, Protocol::Tcp, true, &n), "1.2.3.4:80");
        let v6: IpAddr = "2001:db8::1".parse().expect("v6");
        assert_eq!(addrport(v6, 80, Protocol::Tcp, false, &n), "[2001:db8::1]:http");
        assert_eq!(addrport(v6, 80, Protocol::Tcp, true, &n), "[2001:db8::1]:80");
    }
}
