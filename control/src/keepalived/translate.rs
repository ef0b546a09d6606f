//! keepalived.conf statements → rvs [`Config`].

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::str::FromStr;

use rvs_dataplane::sched::HashFields;
use rvs_dataplane::snapshot::{ForwardMode, Protocol, SchedulerKind, SynProxy, Timeouts};

use super::scripts;
use super::syntax::{Node, Pos};
use super::{Imported, KeepalivedError};
use crate::config::{Config, PersistenceConfig, PersistenceNetmask, RealConfig, ServiceConfig};
use crate::error::ConfigError;
use crate::ha::{
    CheckKind, HealthCheck, RealHealth, ServiceHealth, SorryServer, SyncConfig, TrackScript, UrlCheck, VrrpConfig, VrrpInitialState,
    VrrpInstance, VrrpSyncGroup,
};

type R<T> = Result<T, KeepalivedError>;

/// Block name that stands for every checker block (`TCP_CHECK`, `HTTP_GET`, ...).
const ANY_CHECKER: &str = "checker";
/// The checkers rvs runs.
const CHECKERS: &[&str] = &["TCP_CHECK", "HTTP_GET", "SSL_GET", "UDP_CHECK", "DNS_CHECK", "MISC_CHECK"];

/// Keywords accepted and ignored because they have no meaning for rvs:
/// `(block, keyword, why)`. `checker` stands for every checker block.
pub const IGNORED_KEYWORDS: &[(&str, &str, &str)] = &[
    ("global_defs", "router_id", "names the node in notification mail, which rvs does not send"),
    ("global_defs", "lvs_id", "old name of router_id"),
    ("global_defs", "notification_email", "rvs sends no mail"),
    ("global_defs", "notification_email_from", "rvs sends no mail"),
    ("global_defs", "smtp_server", "rvs sends no mail"),
    ("global_defs", "smtp_connect_timeout", "rvs sends no mail"),
    ("global_defs", "smtp_helo_name", "rvs sends no mail"),
    ("global_defs", "smtp_alert", "rvs sends no mail"),
    ("global_defs", "smtp_alert_vrrp", "rvs sends no mail"),
    ("global_defs", "smtp_alert_checker", "rvs sends no mail"),
    ("global_defs", "lvs_flush", "rvs always starts with exactly the configured services"),
    ("global_defs", "lvs_flush_onstop", "the dataplane's tables end with rvsd"),
    ("global_defs", "vrrp_skip_check_adv_addr", "only skips a check of adverts that logs"),
    ("global_defs", "vrrp_priority", "process priority of Keepalived's VRRP daemon"),
    ("global_defs", "checker_priority", "process priority of Keepalived's checker daemon"),
    ("global_defs", "vrrp_no_swap", "memory locking of Keepalived's VRRP daemon"),
    ("global_defs", "checker_no_swap", "memory locking of Keepalived's checker daemon"),
    ("vrrp_instance", "smtp_alert", "rvs sends no mail"),
    ("vrrp_sync_group", "smtp_alert", "rvs sends no mail"),
    ("virtual_server", "smtp_alert", "rvs sends no mail"),
    ("virtual_server", "nat_mask", "obsolete; Keepalived ignores it too"),
    ("virtual_server", "ha_suspend", "rvs runs health checks on backups as well as on the master"),
    ("real_server", "smtp_alert", "rvs sends no mail"),
    ("SSL_GET", "enable_sni", "rvs always sends the virtualhost as SNI"),
];

/// Keepalived keywords rvs does not implement: `(block, keyword, why / what instead)`.
/// They are reported as [`KeepalivedError::Unsupported`] with their line.
pub const UNSUPPORTED_KEYWORDS: &[(&str, &str, &str)] = &[
    ("top level", "virtual_server_group", "list the virtual servers one by one"),
    ("top level", "static_ipaddress", "give the port addresses in the base config"),
    ("top level", "static_routes", "give the routes in the base config"),
    ("top level", "static_rules", "rvs has no policy routing"),
    ("top level", "vrrp_track_process", "use a vrrp_script"),
    ("top level", "vrrp_track_file", "use a vrrp_script"),
    ("top level", "track_file", "use a vrrp_script"),
    ("top level", "garp_group", "use garp_master_* in the instance"),
    ("top level", "bfd_instance", "rvs has no BFD"),
    ("top level", "net_namespace", "rvs runs on dataplane ports, not in a namespace"),
    ("global_defs", "vrrp_strict", "rvs does not enforce strict RFC mode; remove it"),
    ("global_defs", "enable_traps", "rvs has no SNMP; use /metrics"),
    ("global_defs", "enable_snmp_vrrp", "rvs has no SNMP; use /metrics"),
    ("global_defs", "enable_snmp_checker", "rvs has no SNMP; use /metrics"),
    ("global_defs", "enable_snmp_rfc", "rvs has no SNMP; use /metrics"),
    ("global_defs", "enable_snmp_keepalived", "rvs has no SNMP; use /metrics"),
    ("global_defs", "enable_dbus", "rvs has no D-Bus interface; use the REST API"),
    ("global_defs", "vrrp_iptables", "rvs does not drive iptables"),
    ("global_defs", "vrrp_ipsets", "rvs does not drive iptables"),
    ("global_defs", "vrrp_check_unicast_src", "not implemented"),
    ("global_defs", "vrrp_garp_master_refresh_repeat", "not implemented"),
    ("global_defs", "vrrp_lower_prio_no_advert", "not implemented"),
    ("global_defs", "vrrp_mcast_group6", "rvs sends VRRPv3 over IPv6 to ff02::12 (RFC 5798); use unicast_peer for other destinations"),
    ("global_defs", "lvs_sync_daemon_interface", "use lvs_sync_daemon IFACE INSTANCE"),
    ("global_defs", "dynamic_interfaces", "rvs ports are fixed by the base config"),
    (
        "vrrp_instance",
        "virtual_ipaddress_excluded",
        "put the addresses in virtual_ipaddress (an instance is one address family: IPv6 and IPv4 VIPs go in separate instances)",
    ),
    ("vrrp_instance", "virtual_routes", "give routes in the base config"),
    ("vrrp_instance", "virtual_rules", "rvs has no policy routing"),
    ("vrrp_instance", "use_vmac", "rvs VRRP has no virtual MAC"),
    ("vrrp_instance", "vmac_xmit_base", "rvs VRRP has no virtual MAC"),
    ("vrrp_instance", "dont_track_primary", "not implemented"),
    ("vrrp_instance", "track_process", "use a vrrp_script"),
    ("vrrp_instance", "track_file", "use a vrrp_script"),
    ("vrrp_instance", "track_bfd", "rvs has no BFD"),
    ("vrrp_instance", "notify_stop", "not implemented"),
    ("vrrp_instance", "notify_master_rx_lower_pri", "not implemented"),
    ("vrrp_instance", "garp_master_refresh_repeat", "not implemented"),
    ("vrrp_instance", "lower_prio_no_advert", "not implemented"),
    ("vrrp_instance", "accept", "not implemented"),
    ("vrrp_instance", "no_accept", "not implemented"),
    ("vrrp_instance", "strict_mode", "rvs does not enforce strict RFC mode"),
    ("vrrp_instance", "lvs_sync_daemon_interface", "use lvs_sync_daemon IFACE INSTANCE in global_defs"),
    ("vrrp_instance", "debug", "use rvsd's log level"),
    ("vrrp_sync_group", "notify", "use notify_master / notify_backup / notify_fault"),
    ("vrrp_sync_group", "global_tracking", "not implemented"),
    ("vrrp_sync_group", "sync_group_tracking_weight", "not implemented"),
    ("vrrp_sync_group", "track_interface", "track in the instances"),
    ("vrrp_sync_group", "track_script", "track in the instances"),
    ("vrrp_script", "user", "rvs runs scripts as the user of rvsd"),
    ("vrrp_script", "init_fail", "not implemented"),
    ("virtual_server", "ops", "one-packet scheduling is not implemented"),
    ("virtual_server", "hashed", "not implemented"),
    ("virtual_server", "flag-1", "not implemented"),
    ("virtual_server", "flag-2", "not implemented"),
    ("virtual_server", "flag-3", "not implemented"),
    ("virtual_server", "sorry_server_inhibit", "not implemented"),
    ("virtual_server", "warmup", "not implemented"),
    ("virtual_server", "establish_timeout", "use lvs_timeouts"),
    ("virtual_server", "bps", "rvs has no rate limits"),
    ("virtual_server", "limit_proportion", "rvs has no rate limits"),
    ("virtual_server", "hash_target", "use lb_algo with mh-port / sh-port"),
    ("virtual_server", "proxy_protocol", "not implemented"),
    ("virtual_server", "ip_family", "a service's family is its address's"),
    ("real_server", "delay_loop", "give delay_loop in the virtual_server"),
    ("real_server", "warmup", "not implemented"),
    ("real_server", "rise", "not implemented"),
    ("real_server", "fall", "not implemented"),
    ("real_server", "SMTP_CHECK", "not implemented; use MISC_CHECK"),
    ("real_server", "BFD_CHECK", "rvs has no BFD"),
    ("real_server", "FILE_CHECK", "not implemented; use MISC_CHECK"),
    ("real_server", "PING_CHECK", "not implemented; use MISC_CHECK"),
    ("checker", "bind_port", "not implemented"),
    ("checker", "bind_if", "not implemented"),
    ("checker", "fwmark", "not implemented"),
    ("checker", "warmup", "not implemented"),
    ("checker", "delay_loop", "give delay_loop in the virtual_server"),
    ("checker", "log_all_failures", "not implemented"),
    ("HTTP_GET", "http_protocol", "not implemented"),
    ("SSL_GET", "http_protocol", "not implemented"),
    ("HTTP_GET", "fast_recovery", "not implemented"),
    ("SSL_GET", "fast_recovery", "not implemented"),
    ("UDP_CHECK", "min_reply_length", "use require_reply HEX"),
    ("UDP_CHECK", "max_reply_length", "use require_reply HEX"),
    ("MISC_CHECK", "user", "rvs runs scripts as the user of rvsd"),
    ("url", "regex", "use digest or status_code"),
    ("url", "regex_no_match", "use digest or status_code"),
    ("url", "regex_options", "use digest or status_code"),
    ("url", "regex_stack", "use digest or status_code"),
    ("url", "regex_min_offset", "use digest or status_code"),
    ("url", "regex_max_offset", "use digest or status_code"),
];

fn block_matches(entry: &str, block: &str) -> bool {
    entry == block || (entry == ANY_CHECKER && CHECKERS.contains(&block))
}

// ---------------------------------------------------------------------------
// Errors and value helpers.

fn err_syntax(n: &Node, message: impl Into<String>) -> KeepalivedError {
    KeepalivedError::Syntax { file: n.pos.file.to_path_buf(), line: n.pos.line, keyword: n.keyword.clone(), message: message.into() }
}

fn err_invalid(n: &Node, message: impl Into<String>) -> KeepalivedError {
    KeepalivedError::Invalid { file: n.pos.file.to_path_buf(), line: n.pos.line, keyword: n.keyword.clone(), message: message.into() }
}

fn err_unsupported(n: &Node, keyword: &str, message: impl Into<String>) -> KeepalivedError {
    KeepalivedError::Unsupported { file: n.pos.file.to_path_buf(), line: n.pos.line, keyword: keyword.to_string(), message: message.into() }
}

/// A keyword that no supported case of `block` took: ignored, unsupported or unknown.
fn other(n: &Node, block: &str, place: &str) -> R<()> {
    let kw = n.keyword.as_str();
    if let Some((_, _, why)) = IGNORED_KEYWORDS.iter().find(|(b, k, _)| block_matches(b, block) && *k == kw) {
        tracing::info!(file = %n.pos.file.display(), line = n.pos.line, "keepalived.conf: `{kw}` in {place} ignored: {why}");
        return Ok(());
    }
    if kw.starts_with('@') {
        return Err(err_unsupported(
            n,
            kw,
            "conditional configuration (`@ID` lines, Keepalived's --config-id) is not implemented; \
             keep only the lines meant for this director",
        ));
    }
    if let Some((_, _, why)) = UNSUPPORTED_KEYWORDS.iter().find(|(b, k, _)| block_matches(b, block) && *k == kw) {
        return Err(err_unsupported(n, kw, *why));
    }
    Err(KeepalivedError::UnknownKeyword {
        file: n.pos.file.to_path_buf(),
        line: n.pos.line,
        keyword: kw.to_string(),
        message: format!("in {place}"),
    })
}

/// The statement must not have a block.
fn leaf(n: &Node) -> R<()> {
    match n.block {
        Some(_) => Err(err_syntax(n, format!("`{}` takes no {{ }} block", n.keyword))),
        None => Ok(()),
    }
}

/// The one value of a statement.
fn one(n: &Node) -> R<&str> {
    leaf(n)?;
    match n.args.as_slice() {
        [v] => Ok(v),
        [] => Err(err_syntax(n, format!("`{}` needs a value", n.keyword))),
        more => Err(err_syntax(n, format!("`{}` takes one value, found {}", n.keyword, more.len()))),
    }
}

/// A switch with an optional value (`on|off|true|false|yes|no`; none = on).
fn switch(n: &Node) -> R<bool> {
    leaf(n)?;
    match n.args.as_slice() {
        [] => Ok(true),
        [v] => match v.as_str() {
            "on" | "true" | "yes" => Ok(true),
            "off" | "false" | "no" => Ok(false),
            other => Err(err_invalid(n, format!("`{other}` is not on|off|true|false|yes|no"))),
        },
        more => Err(err_syntax(n, format!("`{}` takes at most one value, found {}", n.keyword, more.len()))),
    }
}

/// A statement without values.
fn flag(n: &Node) -> R<()> {
    leaf(n)?;
    if n.args.is_empty() {
        Ok(())
    } else {
        Err(err_syntax(n, format!("`{}` takes no value", n.keyword)))
    }
}

/// All values of a statement joined by spaces (command lines).
fn text(n: &Node) -> R<String> {
    leaf(n)?;
    if n.args.is_empty() {
        return Err(err_syntax(n, format!("`{}` needs a value", n.keyword)));
    }
    Ok(n.args.join(" "))
}

/// The block of a statement.
fn body(n: &Node) -> R<&[Node]> {
    n.block.as_deref().ok_or_else(|| err_syntax(n, format!("`{}` needs a {{ }} block", n.keyword)))
}

/// The block of a statement that has exactly one value (its name).
fn named_block(n: &Node) -> R<(&str, &[Node])> {
    let b = body(n)?;
    match n.args.as_slice() {
        [name] => Ok((name, b)),
        [] => Err(err_syntax(n, format!("`{}` needs a name", n.keyword))),
        more => Err(err_syntax(n, format!("`{}` takes one name, found {} values", n.keyword, more.len()))),
    }
}

fn num<T: FromStr>(n: &Node, s: &str, what: &str) -> R<T> {
    s.parse().map_err(|_| err_invalid(n, format!("`{s}` is not {what}")))
}

/// Seconds, fractions allowed, at least `min`.
fn secs(n: &Node, s: &str, min: f64) -> R<f64> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= min => Ok(v),
        _ => Err(err_invalid(n, format!("`{s}` is not a number of seconds >= {min}"))),
    }
}

fn ipv4(n: &Node, s: &str) -> R<Ipv4Addr> {
    if s.contains(':') {
        return Err(err_unsupported(n, &n.keyword, format!("`{s}`: an IPv6 address, where `{}` takes an IPv4 one", n.keyword)));
    }
    s.parse().map_err(|_| err_invalid(n, format!("`{s}` is not an IPv4 address")))
}

/// An IPv4 or IPv6 address (virtual and real servers, local addresses,
/// checker addresses, VRRP instances' addresses).
fn ip_addr(n: &Node, s: &str) -> R<IpAddr> {
    s.parse().map_err(|_| err_invalid(n, format!("`{s}` is not an IPv4 or IPv6 address")))
}

fn port_number(n: &Node, s: &str) -> R<u16> {
    match s.parse::<u16>() {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(err_invalid(n, format!("`{s}` is not a port 1..=65535"))),
    }
}

fn hex(n: &Node, s: &str) -> R<String> {
    if s.len() & 1 == 0 && s.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(err_invalid(n, format!("`{s}` is not hex bytes (an even number of 0-9a-f digits)")))
    }
}

fn scheduler(n: &Node, s: &str) -> R<SchedulerKind> {
    Ok(match s.to_ascii_lowercase().as_str() {
        "rr" => SchedulerKind::Rr,
        "wrr" => SchedulerKind::Wrr,
        "lc" => SchedulerKind::Lc,
        "wlc" => SchedulerKind::Wlc,
        "sed" => SchedulerKind::Sed,
        "nq" => SchedulerKind::Nq,
        "sh" => SchedulerKind::Sh,
        "dh" => SchedulerKind::Dh,
        "lblc" => SchedulerKind::Lblc,
        "lblcr" => SchedulerKind::Lblcr,
        "fo" => SchedulerKind::Fo,
        "ovf" => SchedulerKind::Ovf,
        "twos" => SchedulerKind::Twos,
        "mh" => SchedulerKind::Mh,
        "maglev" => SchedulerKind::Maglev,
        _ => {
            return Err(err_invalid(n, format!("unknown scheduler `{s}`; use rr wrr lc wlc sed nq sh dh lblc lblcr fo ovf twos mh maglev")))
        }
    })
}

fn forward(n: &Node, s: &str) -> R<ForwardMode> {
    Ok(match s.to_ascii_uppercase().as_str() {
        "NAT" => ForwardMode::Nat,
        "DR" => ForwardMode::Dr,
        "TUN" => ForwardMode::Tun,
        "FNAT" | "FULLNAT" => ForwardMode::FullNat,
        "SNAT" => return Err(err_unsupported(n, &n.keyword, "SNAT forwarding (DPVS) is not implemented")),
        _ => return Err(err_invalid(n, format!("unknown forwarding method `{s}`; use NAT, DR, TUN or FNAT"))),
    })
}

/// The kernel interface of a DPDK device spec (`iface=dp0` in `net_af_packet0,iface=dp0`).
fn device_iface(device: &str) -> Option<&str> {
    device.split(',').find_map(|kv| kv.trim().strip_prefix("iface="))
}

// ---------------------------------------------------------------------------
// Translation.

struct Ctx<'a> {
    base: &'a Config,
    /// Where each part of the result came from: (JSON path prefix, position, keyword).
    origins: Vec<(String, Pos, String)>,
}

impl Ctx<'_> {
    /// The rvs port named `iface` (by port name or by the device's `iface=`).
    fn port(&self, n: &Node, iface: &str) -> R<String> {
        let ports = &self.base.ports;
        if let Some(p) = ports.iter().find(|p| p.name == iface) {
            return Ok(p.name.clone());
        }
        if let Some(p) = ports.iter().find(|p| device_iface(&p.device) == Some(iface)) {
            return Ok(p.name.clone());
        }
        let known: Vec<String> = ports
            .iter()
            .map(|p| match device_iface(&p.device) {
                Some(i) => format!("{} (iface {i})", p.name),
                None => p.name.clone(),
            })
            .collect();
        Err(err_invalid(n, format!("no rvs port `{iface}`; the base config has: {}", known.join(", "))))
    }
}

/// `global_defs` settings used by the other blocks.
#[derive(Default)]
struct Globals {
    vrrp_version: Option<u8>,
    garp_delay: Option<f64>,
    garp_repeat: Option<u32>,
    garp_refresh: Option<f64>,
    garp_lower_prio_repeat: Option<u32>,
    garp_lower_prio_delay: Option<f64>,
    higher_prio_send_advert: Option<bool>,
    default_interface: Option<String>,
    /// `lvs_sync_daemon`, with the statement (to check the instance later).
    sync: Option<(SyncConfig, Node)>,
    /// `enable_script_security`: scripts must be writable by root only.
    script_security: bool,
}

pub(crate) fn translate(nodes: &[Node], base: &Config, main: &Path) -> R<Imported> {
    let mut ctx = Ctx { base, origins: Vec::new() };
    for n in nodes {
        match n.keyword.as_str() {
            "global_defs" | "vrrp_instance" | "vrrp_sync_group" | "vrrp_script" | "virtual_server" | "local_address_group" => {}
            _ => other(n, "top level", "the top level")?,
        }
    }
    let of = |kw: &'static str| nodes.iter().filter(move |n| n.keyword == kw);

    let mut globals = Globals::default();
    let mut timeouts = base.timeouts;
    for n in of("global_defs") {
        parse_globals(n, &mut ctx, &mut globals, &mut timeouts)?;
    }
    if globals.script_security {
        scripts::check_scripts_secure(nodes)?;
    }

    let mut laddr_groups: HashMap<String, Vec<IpAddr>> = HashMap::new();
    for n in of("local_address_group") {
        let (name, addrs) = parse_laddr_group(n, &ctx)?;
        if laddr_groups.insert(name.clone(), addrs).is_some() {
            return Err(err_invalid(n, format!("local_address_group `{name}` is defined twice")));
        }
    }

    let mut vrrp = VrrpConfig::default();
    for n in of("vrrp_script") {
        let script = parse_script(n)?;
        if vrrp.scripts.iter().any(|s| s.name == script.name) {
            return Err(err_invalid(n, format!("vrrp_script `{}` is defined twice", script.name)));
        }
        vrrp.scripts.push(script);
    }
    for n in of("vrrp_instance") {
        let inst = parse_instance(n, &ctx, &globals, &vrrp.scripts)?;
        if vrrp.instances.iter().any(|i| i.name == inst.name) {
            return Err(err_invalid(n, format!("vrrp_instance `{}` is defined twice", inst.name)));
        }
        if let Some(other) = vrrp.instances.iter().find(|i| i.interface == inst.interface && i.virtual_router_id == inst.virtual_router_id)
        {
            return Err(err_invalid(
                n,
                format!(
                    "virtual_router_id {} on `{}` is already used by vrrp_instance `{}`",
                    inst.virtual_router_id, inst.interface, other.name
                ),
            ));
        }
        ctx.origins.push((format!("vrrp.instances[{}]", vrrp.instances.len()), n.pos.clone(), n.keyword.clone()));
        vrrp.instances.push(inst);
    }
    let mut grouped: HashMap<String, String> = HashMap::new();
    for n in of("vrrp_sync_group") {
        let group = parse_sync_group(n, &vrrp.instances, &mut grouped)?;
        if vrrp.sync_groups.iter().any(|g| g.name == group.name) {
            return Err(err_invalid(n, format!("vrrp_sync_group `{}` is defined twice", group.name)));
        }
        vrrp.sync_groups.push(group);
    }

    let sync = match globals.sync.take() {
        Some((sync, node)) => {
            if !vrrp.instances.iter().any(|i| i.name == sync.instance) {
                return Err(err_invalid(&node, format!("no vrrp_instance `{}` to follow", sync.instance)));
            }
            ctx.origins.push(("sync".into(), node.pos.clone(), node.keyword.clone()));
            Some(sync)
        }
        None => None,
    };

    let mut services = Vec::new();
    let mut real_health = Vec::new();
    for n in of("virtual_server") {
        let (service, health) = parse_virtual_server(n, &mut ctx, &laddr_groups, services.len())?;
        services.push(service);
        real_health.push(health);
    }

    let mut config = base.clone();
    config.services = services;
    config.vrrp = vrrp;
    config.sync = sync;
    config.timeouts = timeouts;
    config.validate().map_err(|e| config_error(e, &ctx.origins, main))?;
    Ok(Imported { config, real_health })
}

/// Maps a validation error to the keepalived block its field came from.
fn config_error(e: ConfigError, origins: &[(String, Pos, String)], main: &Path) -> KeepalivedError {
    let (field, message) = match e {
        ConfigError::Invalid { field, message } => (field, message),
        other => (String::new(), other.to_string()),
    };
    let best = origins
        .iter()
        .filter(|(prefix, _, _)| {
            field == *prefix || field.strip_prefix(prefix.as_str()).is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
        })
        .max_by_key(|(prefix, _, _)| prefix.len());
    match best {
        Some((_, pos, keyword)) => {
            KeepalivedError::Config { file: pos.file.to_path_buf(), line: pos.line, keyword: keyword.clone(), field, message }
        }
        None => KeepalivedError::Config { file: main.to_path_buf(), line: 0, keyword: String::new(), field, message },
    }
}

fn parse_globals(n: &Node, ctx: &mut Ctx<'_>, g: &mut Globals, timeouts: &mut Timeouts) -> R<()> {
    if !n.args.is_empty() {
        return Err(err_syntax(n, "`global_defs` takes no value"));
    }
    for c in body(n)? {
        match c.keyword.as_str() {
            "vrrp_version" => g.vrrp_version = Some(vrrp_version(c)?),
            "vrrp_garp_master_delay" => g.garp_delay = Some(secs(c, one(c)?, 0.0)?),
            "vrrp_garp_master_repeat" => g.garp_repeat = Some(num(c, one(c)?, "a count")?),
            "vrrp_garp_master_refresh" => g.garp_refresh = Some(secs(c, one(c)?, 0.0)?),
            "vrrp_higher_prio_send_advert" => g.higher_prio_send_advert = Some(switch(c)?),
            "vrrp_garp_lower_prio_delay" => g.garp_lower_prio_delay = Some(secs(c, one(c)?, 0.0)?),
            "vrrp_garp_lower_prio_repeat" => g.garp_lower_prio_repeat = Some(num(c, one(c)?, "a count")?),
            "default_interface" => g.default_interface = Some(ctx.port(c, one(c)?)?),
            "vrrp_mcast_group4" => {
                if ipv4(c, one(c)?)? != Ipv4Addr::new(224, 0, 0, 18) {
                    return Err(err_unsupported(c, &c.keyword, "rvs sends VRRP adverts to 224.0.0.18 only"));
                }
            }
            "vrrp_garp_interval" | "vrrp_gna_interval" => {
                if secs(c, one(c)?, 0.0)? != 0.0 {
                    return Err(err_unsupported(c, &c.keyword, "pacing of gratuitous ARPs is not implemented (only 0)"));
                }
            }
            "lvs_timeouts" => {
                parse_lvs_timeouts(c, timeouts)?;
                ctx.origins.push(("timeouts".into(), c.pos.clone(), c.keyword.clone()));
            }
            "lvs_sync_daemon" => g.sync = Some((parse_sync_daemon(c, ctx)?, c.clone())),
            "script_user" => scripts::check_script_user(c)?,
            "enable_script_security" => {
                flag(c)?;
                g.script_security = true;
            }
            _ => other(c, "global_defs", "global_defs")?,
        }
    }
    Ok(())
}

fn vrrp_version(n: &Node) -> R<u8> {
    match one(n)? {
        "2" => Ok(2),
        "3" => Ok(3),
        v => Err(err_invalid(n, format!("`{v}`: VRRP version is 2 or 3"))),
    }
}

/// `lvs_timeouts tcp N tcpfin N udp N`.
fn parse_lvs_timeouts(n: &Node, t: &mut Timeouts) -> R<()> {
    leaf(n)?;
    if n.args.is_empty() || n.args.len() & 1 == 1 {
        return Err(err_syntax(n, "`lvs_timeouts` takes pairs: tcp N tcpfin N udp N"));
    }
    for pair in n.args.chunks(2) {
        let v: u32 = num(n, &pair[1], "a number of seconds")?;
        match pair[0].as_str() {
            "tcp" => t.tcp = v,
            "tcpfin" => t.tcp_fin = v,
            "udp" => t.udp = v,
            k => return Err(err_invalid(n, format!("unknown timeout `{k}`; use tcp, tcpfin, udp"))),
        }
    }
    Ok(())
}

/// `lvs_sync_daemon IFACE INSTANCE [id N] [maxlen N] [port N] [ttl N] [group IP]`.
fn parse_sync_daemon(n: &Node, ctx: &Ctx<'_>) -> R<SyncConfig> {
    leaf(n)?;
    let (iface, instance, rest) = match n.args.as_slice() {
        [i, inst, rest @ ..] => (i, inst, rest),
        _ => return Err(err_syntax(n, "`lvs_sync_daemon` needs an interface and a vrrp_instance name")),
    };
    ctx.port(n, iface)?;
    if rest.len() & 1 == 1 {
        return Err(err_syntax(n, "options of `lvs_sync_daemon` come in pairs (id N, port N, ...)"));
    }
    let mut sync = SyncConfig {
        instance: instance.clone(),
        port: 8848,
        peers: Vec::new(),
        sync_id: 0,
        // keepalived.conf has no place for it: the base config's `sync.key`
        // (or RVS_SYNC_KEY at startup).
        key: ctx.base.sync.as_ref().and_then(|s| s.key.clone()),
    };
    for pair in rest.chunks(2) {
        let v = pair[1].as_str();
        match pair[0].as_str() {
            "id" => sync.sync_id = num(n, v, "a sync id 0..=255")?,
            "port" => sync.port = port_number(n, v)?,
            // rvs sizes its sync messages to the port MTU itself.
            "maxlen" => {
                num::<u32>(n, v, "a length")?;
            }
            "group" => {
                if ipv4(n, v)? != Ipv4Addr::new(224, 0, 0, 81) {
                    return Err(err_unsupported(n, "group", "rvs syncs to 224.0.0.81 (IPVS's group) only"));
                }
            }
            "ttl" => return Err(err_unsupported(n, "ttl", "the TTL of sync messages is not configurable")),
            k => return Err(err_invalid(n, format!("unknown option `{k}`; use id, port, maxlen, group"))),
        }
    }
    Ok(sync)
}

/// `local_address_group NAME { IP [IFACE] | A.B.C.D-E [IFACE] ... }` (DPVS).
fn parse_laddr_group(n: &Node, ctx: &Ctx<'_>) -> R<(String, Vec<IpAddr>)> {
    let (name, entries) = named_block(n)?;
    let mut addrs = Vec::new();
    for e in entries {
        leaf(e)?;
        match e.args.as_slice() {
            [] => {}
            [iface] => {
                ctx.port(e, iface)?;
            }
            _ => return Err(err_syntax(e, "an entry is an address or range, optionally followed by an interface")),
        }
        for a in addr_range(e, &e.keyword)? {
            if addrs.contains(&a) {
                return Err(err_invalid(e, format!("{a} is listed twice in local_address_group `{name}`")));
            }
            addrs.push(a);
        }
    }
    if addrs.is_empty() {
        return Err(err_invalid(n, format!("local_address_group `{name}` is empty")));
    }
    Ok((name.to_string(), addrs))
}

/// `a.b.c.d`, an IPv6 address, `a.b.c.d-e` (last byte range) or
/// `a.b.c.d-a.b.c.e` (ranges are IPv4 only).
fn addr_range(n: &Node, s: &str) -> R<Vec<IpAddr>> {
    let Some((first, last)) = s.split_once('-') else {
        return Ok(vec![ip_addr(n, s)?]);
    };
    let first = ipv4(n, first)?;
    let last = if last.contains('.') {
        ipv4(n, last)?
    } else {
        let b: u8 = num(n, last, "a last byte 0..=255")?;
        let o = first.octets();
        Ipv4Addr::new(o[0], o[1], o[2], b)
    };
    let (lo, hi) = (u32::from(first), u32::from(last));
    if hi < lo || hi - lo >= 65536 {
        return Err(err_invalid(n, format!("`{s}` is not a range of at most 65536 addresses, low to high")));
    }
    Ok((lo..=hi).map(|a| IpAddr::V4(Ipv4Addr::from(a))).collect())
}

fn parse_script(n: &Node) -> R<TrackScript> {
    let (name, children) = named_block(n)?;
    let mut s = TrackScript { name: name.to_string(), script: String::new(), interval: 1.0, timeout: None, weight: 0, rise: 1, fall: 1 };
    for c in children {
        match c.keyword.as_str() {
            "script" => s.script = text(c)?,
            "interval" => s.interval = positive_secs(c)?,
            "timeout" => s.timeout = Some(positive_secs(c)?),
            "weight" => {
                leaf(c)?;
                match c.args.as_slice() {
                    [w] => {
                        let w: i32 = num(c, w, "a weight -253..=253")?;
                        if !(-253..=253).contains(&w) {
                            return Err(err_invalid(c, format!("{w} is out of range -253..=253")));
                        }
                        s.weight = w;
                    }
                    [_, r] if r == "reverse" => return Err(err_unsupported(c, "reverse", "not implemented")),
                    _ => return Err(err_syntax(c, "`weight` takes one value")),
                }
            }
            "rise" => s.rise = at_least_one(c)?,
            "fall" => s.fall = at_least_one(c)?,
            _ => other(c, "vrrp_script", &format!("vrrp_script {name}"))?,
        }
    }
    if s.script.is_empty() {
        return Err(err_invalid(n, format!("vrrp_script `{name}` has no `script`")));
    }
    Ok(s)
}

fn positive_secs(n: &Node) -> R<f64> {
    let v = secs(n, one(n)?, 0.0)?;
    if v > 0.0 {
        Ok(v)
    } else {
        Err(err_invalid(n, "must be more than 0 seconds"))
    }
}

fn at_least_one(n: &Node) -> R<u32> {
    let v: u32 = num(n, one(n)?, "a count")?;
    if v == 0 {
        return Err(err_invalid(n, "must be at least 1"));
    }
    Ok(v)
}

fn parse_instance(n: &Node, ctx: &Ctx<'_>, g: &Globals, scripts: &[TrackScript]) -> R<VrrpInstance> {
    let (name, children) = named_block(n)?;
    let mut inst = VrrpInstance {
        name: name.to_string(),
        state: VrrpInitialState::Backup,
        interface: String::new(),
        virtual_router_id: 0,
        priority: 100,
        advert_int: 1.0,
        version: g.vrrp_version.unwrap_or(2),
        nopreempt: false,
        preempt_delay: 0.0,
        auth_pass: None,
        virtual_ipaddress: Vec::new(),
        unicast_src_ip: None,
        unicast_peer: Vec::new(),
        track_interface: Vec::new(),
        track_script: Vec::new(),
        garp_master_delay: g.garp_delay.unwrap_or(5.0),
        garp_master_repeat: g.garp_repeat.unwrap_or(5),
        garp_master_refresh: g.garp_refresh.unwrap_or(0.0),
        garp_lower_prio_repeat: g.garp_lower_prio_repeat,
        garp_lower_prio_delay: g.garp_lower_prio_delay,
        higher_prio_send_advert: g.higher_prio_send_advert,
        notify_master: None,
        notify_backup: None,
        notify_fault: None,
        notify: None,
    };
    let place = format!("vrrp_instance {name}");
    let mut advert: Option<&Node> = None;
    let mut auth: Option<&Node> = None;
    let mut version: Option<&Node> = None;
    let mut native_ipv6: Option<&Node> = None;
    // Every address with the line it came from (the family check names it).
    let mut addr_lines: Vec<(&Node, IpAddr, &'static str)> = Vec::new();
    let mut vip_devs: Vec<(&Node, String)> = Vec::new();
    for c in children {
        match c.keyword.as_str() {
            "state" => {
                inst.state = match one(c)?.to_ascii_uppercase().as_str() {
                    "MASTER" => VrrpInitialState::Master,
                    "BACKUP" => VrrpInitialState::Backup,
                    v => return Err(err_invalid(c, format!("`{v}`: use MASTER or BACKUP"))),
                }
            }
            "interface" => inst.interface = ctx.port(c, one(c)?)?,
            "virtual_router_id" => inst.virtual_router_id = one_to_255(c)?,
            "priority" => inst.priority = one_to_255(c)?,
            "advert_int" => {
                inst.advert_int = positive_secs(c)?;
                advert = Some(c);
            }
            "version" => {
                inst.version = vrrp_version(c)?;
                version = Some(c);
            }
            "native_ipv6" => {
                flag(c)?;
                native_ipv6 = Some(c);
            }
            "nopreempt" => {
                flag(c)?;
                inst.nopreempt = true;
            }
            "preempt_delay" => {
                let v = secs(c, one(c)?, 0.0)?;
                if v > 1000.0 {
                    return Err(err_invalid(c, format!("{v} is out of range 0..=1000 seconds")));
                }
                inst.preempt_delay = v;
            }
            "authentication" => {
                inst.auth_pass = parse_auth(c)?;
                auth = Some(c);
            }
            "virtual_ipaddress" => {
                for v in body(c)? {
                    let (addr, dev) = parse_vip(v)?;
                    if inst.virtual_ipaddress.contains(&addr) {
                        return Err(err_invalid(v, format!("{addr} is listed twice")));
                    }
                    inst.virtual_ipaddress.push(addr);
                    addr_lines.push((v, addr, "virtual_ipaddress"));
                    if let Some(dev) = dev {
                        vip_devs.push((v, dev));
                    }
                }
            }
            "unicast_src_ip" | "mcast_src_ip" => {
                let addr = ip_addr(c, one(c)?)?;
                inst.unicast_src_ip = Some(addr);
                addr_lines.push((c, addr, "unicast_src_ip"));
            }
            "unicast_peer" => {
                for p in body(c)? {
                    leaf(p)?;
                    if let Some(opt) = p.args.first() {
                        return Err(err_unsupported(p, opt, "peer options (min_ttl, max_ttl) are not implemented"));
                    }
                    let addr = ip_addr(p, &p.keyword)?;
                    if inst.unicast_peer.contains(&addr) {
                        return Err(err_invalid(p, format!("{addr} is listed twice")));
                    }
                    inst.unicast_peer.push(addr);
                    addr_lines.push((p, addr, "unicast_peer"));
                }
            }
            "track_interface" => {
                for t in body(c)? {
                    leaf(t)?;
                    if let Some(opt) = t.args.first() {
                        return Err(err_unsupported(t, opt, "weighted interface tracking is not implemented"));
                    }
                    inst.track_interface.push(ctx.port(t, &t.keyword)?);
                }
            }
            "track_script" => {
                for t in body(c)? {
                    leaf(t)?;
                    if let Some(opt) = t.args.first() {
                        return Err(err_unsupported(t, opt, "set the weight in the vrrp_script"));
                    }
                    if !scripts.iter().any(|s| s.name == t.keyword) {
                        return Err(err_invalid(t, format!("no vrrp_script `{}`", t.keyword)));
                    }
                    inst.track_script.push(t.keyword.clone());
                }
            }
            "garp_master_delay" => inst.garp_master_delay = secs(c, one(c)?, 0.0)?,
            "garp_master_repeat" => inst.garp_master_repeat = num(c, one(c)?, "a count")?,
            "higher_prio_send_advert" => inst.higher_prio_send_advert = Some(switch(c)?),
            "garp_lower_prio_delay" => inst.garp_lower_prio_delay = Some(secs(c, one(c)?, 0.0)?),
            "garp_lower_prio_repeat" => inst.garp_lower_prio_repeat = Some(num(c, one(c)?, "a count")?),
            "garp_master_refresh" => inst.garp_master_refresh = secs(c, one(c)?, 0.0)?,
            "notify_master" => inst.notify_master = Some(text(c)?),
            "notify_backup" => inst.notify_backup = Some(text(c)?),
            "notify_fault" => inst.notify_fault = Some(text(c)?),
            "notify" => inst.notify = Some(text(c)?),
            _ => other(c, "vrrp_instance", &place)?,
        }
    }
    if inst.interface.is_empty() {
        match &g.default_interface {
            Some(port) => inst.interface = port.clone(),
            None => return Err(err_invalid(n, format!("vrrp_instance `{name}` has no `interface`"))),
        }
    }
    if inst.virtual_router_id == 0 {
        return Err(err_invalid(n, format!("vrrp_instance `{name}` has no `virtual_router_id`")));
    }
    // One family per instance, that of the first address (VIPs first), or
    // IPv6 with native_ipv6.
    let decider = addr_lines.iter().find(|x| x.2 == "virtual_ipaddress").or(addr_lines.first());
    let ipv6 = match (native_ipv6, decider) {
        (Some(_), _) => true,
        (None, Some((_, a, _))) => a.is_ipv6(),
        (None, None) => false,
    };
    let family = if ipv6 { "IPv6" } else { "IPv4" };
    if let Some((line, addr, field)) = addr_lines.iter().find(|(_, a, _)| a.is_ipv6() != ipv6) {
        let why = match (native_ipv6, decider) {
            (None, Some((_, first, what))) => format!("{what} `{first}` made it {family}"),
            _ => "native_ipv6 makes it IPv6".to_string(),
        };
        return Err(err_unsupported(
            line,
            field,
            format!(
                "{addr} in {family} vrrp_instance `{name}` ({why}): an instance is one address family \
                 (virtual_ipaddress_excluded is not supported); put it in a vrrp_instance of its own"
            ),
        ));
    }
    if ipv6 {
        match version {
            // Keepalived sets version 3 for IPv6 (VRRPv2 is IPv4 only); an
            // explicit `version 2` in the instance is a mistake worth naming.
            Some(v) if inst.version == 2 => {
                return Err(err_invalid(v, format!("VRRPv2 is IPv4 only: IPv6 vrrp_instance `{name}` needs version 3")));
            }
            _ => inst.version = 3,
        }
    }
    if let Some(a) = advert {
        let v = inst.advert_int;
        if inst.version == 2 && (v.fract() != 0.0 || v > 255.0) {
            return Err(err_invalid(a, format!("{v}: VRRPv2 adverts are whole seconds 1..=255 (use version 3 for less)")));
        }
        let cs = v * 100.0;
        if inst.version == 3 && ((cs - cs.round()).abs() > 1e-6 || v > 40.95) {
            return Err(err_invalid(a, format!("{v}: VRRPv3 adverts are centiseconds 0.01..=40.95")));
        }
    }
    if let (Some(a), 3) = (auth, inst.version) {
        return Err(err_invalid(a, "VRRPv3 has no authentication; remove the block or use version 2"));
    }
    for (v, dev) in vip_devs {
        let dev = ctx.port(v, &dev)?;
        if dev != inst.interface {
            return Err(err_unsupported(v, "dev", format!("a VIP on port `{dev}`, not on the instance's interface `{}`", inst.interface)));
        }
    }
    Ok(inst)
}

fn one_to_255(n: &Node) -> R<u8> {
    let v = one(n)?;
    match v.parse::<u8>() {
        Ok(x) if x != 0 => Ok(x),
        _ => Err(err_invalid(n, format!("`{v}` is out of range 1..=255"))),
    }
}

/// `authentication { auth_type PASS auth_pass SECRET }` → the password.
fn parse_auth(n: &Node) -> R<Option<String>> {
    let mut pass = None;
    let mut kind_pass = false;
    if !n.args.is_empty() {
        return Err(err_syntax(n, "`authentication` takes no value"));
    }
    for c in body(n)? {
        match c.keyword.as_str() {
            "auth_type" => match one(c)? {
                "PASS" => kind_pass = true,
                "AH" => return Err(err_unsupported(c, "auth_type AH", "use auth_type PASS, or VRRPv3 without authentication")),
                v => return Err(err_invalid(c, format!("`{v}`: use PASS"))),
            },
            "auth_pass" => {
                let p = one(c)?;
                if p.len() > 8 {
                    return Err(err_invalid(c, "a VRRPv2 password is at most 8 bytes"));
                }
                pass = Some((p.to_string(), c));
            }
            _ => other(c, "authentication", "authentication")?,
        }
    }
    match (kind_pass, pass) {
        (true, Some((p, _))) => Ok(Some(p)),
        (true, None) => Err(err_invalid(n, "auth_type PASS needs an auth_pass")),
        (false, Some((_, c))) => Err(err_invalid(c, "auth_pass needs auth_type PASS")),
        (false, None) => Ok(None),
    }
}

/// A `virtual_ipaddress` line: `IP[/LEN] [dev IFACE] [label L] [brd B] [scope S]`,
/// IPv4 or IPv6 (`2001:db8::100/64 dev eth0`).
fn parse_vip(n: &Node) -> R<(IpAddr, Option<String>)> {
    leaf(n)?;
    let (addr, len) = match n.keyword.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (n.keyword.as_str(), None),
    };
    let addr = ip_addr(n, addr)?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if let Some(l) = len {
        match l.parse::<u8>() {
            Ok(x) if x <= max => {}
            _ => return Err(err_invalid(n, format!("`{l}` is not a prefix length 0..={max}"))),
        }
    }
    if n.args.len() & 1 == 1 {
        return Err(err_syntax(n, "options of a virtual address come in pairs (dev IFACE, label L, ...)"));
    }
    let mut dev = None;
    for pair in n.args.chunks(2) {
        match pair[0].as_str() {
            "dev" => dev = Some(pair[1].clone()),
            // Kernel address attributes; rvs VIPs are not kernel addresses.
            "label" | "brd" | "broadcast" | "scope" => {}
            o => return Err(err_unsupported(n, o, "virtual address option not implemented (rvs knows dev, label, brd, scope)")),
        }
    }
    Ok((addr, dev))
}

fn parse_sync_group(n: &Node, instances: &[VrrpInstance], grouped: &mut HashMap<String, String>) -> R<VrrpSyncGroup> {
    let (name, children) = named_block(n)?;
    let mut g = VrrpSyncGroup { name: name.to_string(), group: Vec::new(), notify_master: None, notify_backup: None, notify_fault: None };
    let mut seen_group = false;
    for c in children {
        match c.keyword.as_str() {
            "group" => {
                seen_group = true;
                for m in body(c)? {
                    leaf(m)?;
                    for member in std::iter::once(&m.keyword).chain(m.args.iter()) {
                        if !instances.iter().any(|i| i.name == *member) {
                            return Err(err_invalid(m, format!("no vrrp_instance `{member}`")));
                        }
                        if let Some(first) = grouped.insert(member.clone(), name.to_string()) {
                            return Err(err_invalid(m, format!("vrrp_instance `{member}` is already in sync group `{first}`")));
                        }
                        g.group.push(member.clone());
                    }
                }
            }
            "notify_master" => g.notify_master = Some(text(c)?),
            "notify_backup" => g.notify_backup = Some(text(c)?),
            "notify_fault" => g.notify_fault = Some(text(c)?),
            _ => other(c, "vrrp_sync_group", &format!("vrrp_sync_group {name}"))?,
        }
    }
    if !seen_group || g.group.is_empty() {
        return Err(err_invalid(n, format!("vrrp_sync_group `{name}` has no instances (`group {{ ... }}`)")));
    }
    Ok(g)
}

/// Check settings given at the virtual_server or real_server level.
#[derive(Clone, Default)]
struct CheckDefaults {
    connect_timeout: Option<f64>,
    retry: Option<u32>,
    delay_before_retry: Option<f64>,
    virtualhost: Option<String>,
    inhibit_on_failure: bool,
}

impl CheckDefaults {
    /// Takes `c` when it is one of the default settings.
    fn take(&mut self, c: &Node) -> R<bool> {
        match c.keyword.as_str() {
            "connect_timeout" => self.connect_timeout = Some(positive_secs(c)?),
            "retry" | "nb_get_retry" => self.retry = Some(num(c, one(c)?, "a count")?),
            "delay_before_retry" => self.delay_before_retry = Some(secs(c, one(c)?, 0.0)?),
            "virtualhost" => self.virtualhost = Some(one(c)?.to_string()),
            "inhibit_on_failure" => {
                flag(c)?;
                self.inhibit_on_failure = true;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// A fresh service with every field at its default. Built through serde so that
/// fields added to the schema later take their defaults here too.
fn new_service(n: &Node, protocol: Protocol, vip: IpAddr, port: u16) -> R<ServiceConfig> {
    let json = serde_json::json!({ "protocol": protocol, "vip": vip, "port": port });
    serde_json::from_value(json).map_err(|e| err_invalid(n, format!("internal: {e}")))
}

/// A fresh real server with every field at its default (see [`new_service`]).
fn new_real(n: &Node, address: IpAddr) -> R<RealConfig> {
    serde_json::from_value(serde_json::json!({ "address": address })).map_err(|e| err_invalid(n, format!("internal: {e}")))
}

fn parse_virtual_server(
    n: &Node,
    ctx: &mut Ctx<'_>,
    laddr_groups: &HashMap<String, Vec<IpAddr>>,
    index: usize,
) -> R<(ServiceConfig, Vec<RealHealth>)> {
    let children = body(n)?;
    let (vip, port) = match n.args.as_slice() {
        [k, ..] if k == "fwmark" => return Err(err_unsupported(n, "fwmark", "firewall-mark services are not implemented")),
        [k, ..] if k == "group" => return Err(err_unsupported(n, "group", "virtual_server_group is not implemented; list the services")),
        [ip, port] => (ip_addr(n, ip)?, port_number(n, port)?),
        _ => return Err(err_syntax(n, "`virtual_server` needs an address and a port")),
    };
    let place = format!("virtual_server {vip} {port}");
    let mut protocol = Protocol::Tcp;
    let mut scheduler_kind = SchedulerKind::Wlc;
    let mut fwd: Option<ForwardMode> = None;
    let mut persistence_timeout: Option<u32> = None;
    let mut granularity: Option<(PersistenceNetmask, &Node)> = None;
    let mut health = ServiceHealth::default();
    let mut sorry: Option<SorryServer> = None;
    let mut sorry_fwd: Option<ForwardMode> = None;
    let mut local_addresses = Vec::new();
    let mut hash_port = false;
    let mut fallback = false;
    let mut syn_proxy: Option<&Node> = None;
    let mut defaults = CheckDefaults::default();
    let mut reals: Vec<&Node> = Vec::new();
    for c in children {
        if defaults.take(c)? {
            continue;
        }
        match c.keyword.as_str() {
            "delay_loop" => health.delay_loop = positive_secs(c)?,
            "lb_algo" | "lvs_sched" => scheduler_kind = scheduler(c, one(c)?)?,
            "lb_kind" | "lvs_method" => fwd = Some(forward(c, one(c)?)?),
            "persistence_timeout" => {
                leaf(c)?;
                persistence_timeout = Some(match c.args.as_slice() {
                    // Keepalived's default when no value is given: 6 minutes.
                    [] => 360,
                    [v] => num(c, v, "a number of seconds")?,
                    _ => return Err(err_syntax(c, "`persistence_timeout` takes one value")),
                });
            }
            "persistence_granularity" => granularity = Some((granularity_of(c, one(c)?, vip)?, c)),
            "protocol" => {
                protocol = match one(c)?.to_ascii_uppercase().as_str() {
                    "TCP" => Protocol::Tcp,
                    "UDP" => Protocol::Udp,
                    "SCTP" => return Err(err_unsupported(c, &c.keyword, "SCTP services are not implemented")),
                    v => return Err(err_invalid(c, format!("`{v}`: use TCP or UDP"))),
                }
            }
            "laddr_group_name" => {
                let g = one(c)?;
                match laddr_groups.get(g) {
                    Some(addrs) => local_addresses = addrs.clone(),
                    None => return Err(err_invalid(c, format!("no local_address_group `{g}`"))),
                }
            }
            "sorry_server" => {
                leaf(c)?;
                let (address, port) = match c.args.as_slice() {
                    [a] => (ip_addr(c, a)?, None),
                    [a, p] => (ip_addr(c, a)?, Some(port_number(c, p)?)),
                    _ => return Err(err_syntax(c, "`sorry_server` takes an address and a port")),
                };
                sorry = Some(SorryServer { address, port, forward: None });
            }
            "sorry_server_lvs_method" | "sorry_server_lb_kind" => sorry_fwd = Some(forward(c, one(c)?)?),
            "quorum" => health.quorum = at_least_one(c)?,
            "hysteresis" => health.hysteresis = num(c, one(c)?, "a number")?,
            "alpha" => {
                flag(c)?;
                health.alpha = true;
            }
            "omega" => {
                flag(c)?;
                health.omega = true;
            }
            "quorum_up" => health.quorum_up = Some(text(c)?),
            "quorum_down" => health.quorum_down = Some(text(c)?),
            "mh-port" | "sh-port" => {
                flag(c)?;
                hash_port = true;
            }
            "mh-fallback" | "sh-fallback" => {
                flag(c)?;
                fallback = true;
            }
            // DPVS's Keepalived: a flag turning the service's SYN proxy on.
            "syn_proxy" => {
                flag(c)?;
                syn_proxy = Some(c);
            }
            "real_server" => reals.push(c),
            _ => other(c, "virtual_server", &place)?,
        }
    }
    let mut service = new_service(n, protocol, vip, port)?;
    service.scheduler = scheduler_kind;
    // Keepalived's default forwarding method is NAT.
    service.forward = fwd.unwrap_or(ForwardMode::Nat);
    service.local_addresses = local_addresses;
    if hash_port {
        service.sched_options.hash = HashFields::SrcAddrPort;
    }
    service.sched_options.fallback = fallback;
    match (persistence_timeout, granularity) {
        (Some(timeout), g) => {
            service.persistence = Some(PersistenceConfig { timeout, netmask: g.map(|(m, _)| m) });
        }
        (None, Some((_, c))) => return Err(err_invalid(c, "persistence_granularity needs persistence_timeout")),
        (None, None) => {}
    }
    if let Some(mut s) = sorry {
        s.forward = sorry_fwd;
        health.sorry_server = Some(s);
    } else if let Some(c) = children.iter().find(|c| c.keyword.starts_with("sorry_server_l")) {
        return Err(err_invalid(c, "there is no sorry_server"));
    }
    service.health = Some(health);
    ctx.origins.push((format!("services[{index}]"), n.pos.clone(), n.keyword.clone()));
    if let Some(c) = syn_proxy {
        service.syn_proxy = SynProxy::On;
        // A service that cannot have it (UDP, DR/TUN reals) is reported at this line.
        ctx.origins.push((format!("services[{index}].syn_proxy"), c.pos.clone(), c.keyword.clone()));
    }
    let mut healths = Vec::new();
    for (j, r) in reals.into_iter().enumerate() {
        let (real, h) = parse_real(r, &defaults)?;
        ctx.origins.push((format!("services[{index}].reals[{j}]"), r.pos.clone(), r.keyword.clone()));
        service.reals.push(real);
        healths.push(h);
    }
    Ok((service, healths))
}

/// `persistence_granularity` of a virtual server at `vip`: for IPv4 a
/// netmask ([`netmask`]), for IPv6 a prefix length 1..=128 (Keepalived's
/// IPv6 granularity).
fn granularity_of(n: &Node, s: &str, vip: IpAddr) -> R<PersistenceNetmask> {
    if vip.is_ipv4() {
        return netmask(n, s).map(PersistenceNetmask::Mask);
    }
    match s.trim_start_matches('/').parse::<u8>() {
        Ok(len @ 1..=128) => Ok(PersistenceNetmask::PrefixLen(len)),
        _ => Err(err_invalid(n, format!("`{s}` is not an IPv6 prefix length 1..=128 (an IPv6 virtual server's granularity, such as 64)"))),
    }
}

/// A netmask: `255.255.255.0` or a prefix length `24`.
fn netmask(n: &Node, s: &str) -> R<Ipv4Addr> {
    if let Ok(len) = s.trim_start_matches('/').parse::<u8>() {
        if len == 0 || len > 32 {
            return Err(err_invalid(n, format!("`{s}` is not a prefix length 1..=32")));
        }
        return Ok(Ipv4Addr::from(u32::MAX << (32 - u32::from(len))));
    }
    let m = ipv4(n, s)?;
    let bits = u32::from(m);
    if bits == 0 || bits.leading_ones() + bits.trailing_zeros() != 32 {
        return Err(err_invalid(n, format!("`{s}` is not a netmask")));
    }
    Ok(m)
}

fn parse_real(n: &Node, vs_defaults: &CheckDefaults) -> R<(RealConfig, RealHealth)> {
    let children = body(n)?;
    let (address, port) = match n.args.as_slice() {
        [a] => (ip_addr(n, a)?, None),
        [a, p] => (ip_addr(n, a)?, Some(port_number(n, p)?)),
        _ => return Err(err_syntax(n, "`real_server` needs an address and a port")),
    };
    let place = format!("real_server {}", n.args.join(" "));
    let mut real = new_real(n, address)?;
    real.port = port;
    let mut defaults = vs_defaults.clone();
    let mut health = RealHealth::default();
    let mut checkers: Vec<&Node> = Vec::new();
    for c in children {
        if defaults.take(c)? {
            continue;
        }
        match c.keyword.as_str() {
            "weight" => real.weight = num(c, one(c)?, "a weight 0..=65535")?,
            "uthreshold" => real.upper_threshold = num(c, one(c)?, "a connection count")?,
            "lthreshold" => real.lower_threshold = num(c, one(c)?, "a connection count")?,
            "lvs_method" | "lb_kind" => real.forward = Some(forward(c, one(c)?)?),
            "notify_up" => health.notify_up = Some(text(c)?),
            "notify_down" => health.notify_down = Some(text(c)?),
            k if CHECKERS.contains(&k) => checkers.push(c),
            _ => other(c, "real_server", &place)?,
        }
    }
    health.inhibit_on_failure = defaults.inhibit_on_failure;
    for c in checkers {
        health.checks.push(parse_check(c, &defaults, &place)?);
    }
    real.health = health.clone();
    Ok((real, health))
}

fn parse_check(n: &Node, d: &CheckDefaults, real_place: &str) -> R<HealthCheck> {
    if !n.args.is_empty() {
        return Err(err_syntax(n, format!("`{}` takes no value", n.keyword)));
    }
    let kind = n.keyword.as_str();
    let place = format!("{kind} of {real_place}");
    let mut check = HealthCheck {
        kind: CheckKind::TcpCheck,
        connect_timeout: d.connect_timeout.unwrap_or(5.0),
        retry: d.retry.unwrap_or(1),
        delay_before_retry: d.delay_before_retry.unwrap_or(1.0),
        connect_ip: None,
        connect_port: None,
        bind_ip: None,
    };
    let http = matches!(kind, "HTTP_GET" | "SSL_GET");
    let mut urls = Vec::new();
    let mut virtualhost = d.virtualhost.clone();
    let mut payload = None;
    let mut require_reply = false;
    let mut reply = None;
    let mut query_type = "A".to_string();
    let mut query_name = ".".to_string();
    let mut misc_path = None;
    let mut misc_timeout = None;
    let mut misc_dynamic = false;
    for c in body(n)? {
        match (kind, c.keyword.as_str()) {
            (_, "connect_timeout") => check.connect_timeout = positive_secs(c)?,
            (_, "connect_port") => check.connect_port = Some(port_number(c, one(c)?)?),
            (_, "connect_ip") => check.connect_ip = Some(ip_addr(c, one(c)?)?),
            (_, "bind_ip") => check.bind_ip = Some(ip_addr(c, one(c)?)?),
            (_, "retry" | "nb_get_retry") => check.retry = num(c, one(c)?, "a count")?,
            (_, "delay_before_retry") => check.delay_before_retry = secs(c, one(c)?, 0.0)?,
            (_, "url") if http => urls.push(parse_url(c)?),
            (_, "virtualhost") if http => virtualhost = Some(one(c)?.to_string()),
            ("UDP_CHECK", "payload") => payload = Some(hex(c, one(c)?)?),
            ("UDP_CHECK", "require_reply") => {
                leaf(c)?;
                require_reply = true;
                reply = match c.args.as_slice() {
                    [] => None,
                    [h] => Some(hex(c, h)?),
                    _ => return Err(err_syntax(c, "`require_reply` takes at most one value")),
                };
            }
            ("DNS_CHECK", "type") => {
                let t = one(c)?.to_ascii_uppercase();
                if !["A", "NS", "CNAME", "SOA", "MX", "TXT", "AAAA"].contains(&t.as_str()) {
                    return Err(err_invalid(c, format!("`{t}`: use A, NS, CNAME, SOA, MX, TXT or AAAA")));
                }
                query_type = t;
            }
            ("DNS_CHECK", "name") => query_name = one(c)?.to_string(),
            ("MISC_CHECK", "misc_path") => misc_path = Some(text(c)?),
            ("MISC_CHECK", "misc_timeout") => misc_timeout = Some(positive_secs(c)?),
            ("MISC_CHECK", "misc_dynamic") => {
                flag(c)?;
                misc_dynamic = true;
            }
            _ => other(c, kind, &place)?,
        }
    }
    check.kind = match kind {
        "TCP_CHECK" => CheckKind::TcpCheck,
        "HTTP_GET" | "SSL_GET" => {
            if urls.is_empty() {
                return Err(err_invalid(n, format!("`{kind}` needs at least one `url {{ path ... }}`")));
            }
            if kind == "HTTP_GET" {
                CheckKind::HttpGet { urls, virtualhost }
            } else {
                CheckKind::SslGet { urls, virtualhost }
            }
        }
        "UDP_CHECK" => CheckKind::UdpCheck { payload, require_reply, reply },
        "DNS_CHECK" => CheckKind::DnsCheck { query_type, name: query_name },
        "MISC_CHECK" => match misc_path {
            Some(path) => CheckKind::MiscCheck { path, timeout: misc_timeout, dynamic: misc_dynamic },
            None => return Err(err_invalid(n, "`MISC_CHECK` needs a `misc_path`")),
        },
        _ => return Err(err_unsupported(n, kind, "not a checker rvs runs")),
    };
    Ok(check)
}

fn parse_url(n: &Node) -> R<UrlCheck> {
    if !n.args.is_empty() {
        return Err(err_syntax(n, "`url` takes no value"));
    }
    let mut path = None;
    let mut codes: Vec<u16> = Vec::new();
    let mut digest = None;
    for c in body(n)? {
        match c.keyword.as_str() {
            "path" => path = Some(one(c)?.to_string()),
            "digest" => {
                let d = one(c)?;
                if d.len() != 32 || !d.chars().all(|x| x.is_ascii_hexdigit()) {
                    return Err(err_invalid(c, format!("`{d}` is not an MD5 digest (32 hex digits)")));
                }
                digest = Some(d.to_ascii_lowercase());
            }
            "status_code" => {
                leaf(c)?;
                if c.args.is_empty() {
                    return Err(err_syntax(c, "`status_code` needs a value"));
                }
                for a in &c.args {
                    let (lo, hi) = a.split_once('-').unwrap_or((a, a));
                    let lo: u16 = status(c, lo)?;
                    let hi: u16 = status(c, hi)?;
                    if hi < lo {
                        return Err(err_invalid(c, format!("`{a}` is not a range low-high")));
                    }
                    for s in lo..=hi {
                        if !codes.contains(&s) {
                            codes.push(s);
                        }
                    }
                }
            }
            _ => other(c, "url", "url")?,
        }
    }
    let Some(path) = path else {
        return Err(err_invalid(n, "`url` needs a `path`"));
    };
    if codes.is_empty() {
        codes.push(200);
    }
    Ok(UrlCheck { path, status_code: codes, digest })
}

fn status(n: &Node, s: &str) -> R<u16> {
    match s.parse::<u16>() {
        Ok(v) if (100..=599).contains(&v) => Ok(v),
        _ => Err(err_invalid(n, format!("`{s}` is not an HTTP status 100..=599"))),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn keyword_lists_do_not_overlap() {
        let mut seen = HashSet::new();
        for (b, k, why) in IGNORED_KEYWORDS.iter().chain(UNSUPPORTED_KEYWORDS) {
            assert!(seen.insert((*b, *k)), "{b} {k} listed twice");
            assert!(!why.is_empty());
        }
    }

    #[test]
    fn device_ifaces() {
        assert_eq!(device_iface("net_af_packet0,iface=dp0"), Some("dp0"));
        assert_eq!(device_iface("net_tap0, iface=tap1,mac=x"), Some("tap1"));
        assert_eq!(device_iface("0000:01:00.0"), None);
    }
}
