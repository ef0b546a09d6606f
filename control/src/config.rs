//! The JSON configuration of rvsd: one serde schema for the config file and the REST API.
//!
//! Every object rejects unknown fields, so a typo (`"wieght"`) is an error, not a
//! silently ignored setting. Parsing ([`Config::from_json`], [`Config::load`]) always
//! runs [`Config::validate`], which names the offending field in JSON-path form
//! (`services[1].reals[0].weight`).
//!
//! # Example
//!
//! ```json
//! {
//!   "eal": ["--no-huge", "-m", "512", "--no-pci", "--file-prefix", "rvs-lab"],
//!   "main_lcore": 0,
//!   "workers": [1],
//!   "mbufs": 8191,
//!   "idle_sleep_us": 50,
//!   "conn_table_size": 65536,
//!   "api": { "listen": "127.0.0.1:9090" },
//!   "ports": [ { "name": "lan0", "device": "net_af_packet0,iface=dp0",
//!                "addresses": ["10.0.0.1/24", "10.1.0.1/24"] } ],
//!   "routes": [ { "prefix": "0.0.0.0/0", "via": "10.0.0.254", "port": "lan0" } ],
//!   "timeouts": { "tcp": 900, "tcp_fin": 120, "tcp_syn": 60, "udp": 300 },
//!   "services": [
//!     { "protocol": "tcp", "vip": "10.0.0.100", "port": 80, "scheduler": "rr", "forward": "dr",
//!       "reals": [ { "address": "10.1.0.11", "weight": 1 },
//!                  { "address": "10.1.0.12", "port": 80, "weight": 1, "forward": "dr" } ] }
//!   ]
//! }
//! ```
//!
//! # Defaults
//!
//! | field | default |
//! |---|---|
//! | `eal` | `[]` |
//! | `main_lcore` | `0` |
//! | `workers` | `[1]` |
//! | `mbufs` | `8191` |
//! | `idle_sleep_us` | `50` |
//! | `conn_table_size` | `65536` |
//! | `conn_table_size_ipv6` | a sixteenth of `conn_table_size`, at least 1024 |
//! | `api.listen` | `"127.0.0.1:9090"` |
//! | `routes` | `[]` |
//! | `timeouts` | IPVS's: tcp 900, tcp_fin 120, tcp_syn 60, udp 300 (each field on its own) |
//! | `services` | `[]` |
//! | `services[].scheduler` | `"wlc"` (ipvsadm's default) |
//! | `services[].forward` | `"dr"` (ipvsadm's `-g`) |
//! | `services[].reals` | `[]` |
//! | `services[].reals[].port` | the service's port |
//! | `services[].reals[].weight` | `1` |
//! | `services[].reals[].forward` | the service's `forward` |
//! | `services[].syn_proxy` | `"off"` (`"on"`: every SYN is answered with a cookie; `"auto"`: while the worker is under pressure) |
//! | `syn_flood` | each field on its own: see the table below |
//!
//! # `syn_flood`
//!
//! SYN-flood and table-pressure defences of every worker (`deploy/docs/synflood.md`).
//! A worker is *under pressure* while its connection table is at least
//! `pressure_table_percent` full or its SYN_RECV entries reach
//! `pressure_syn_recv_percent` of its capacity.
//!
//! | field | default | range |
//! |---|---|---|
//! | `syn_flood.pressure_table_percent` | `50` | 1..=100 |
//! | `syn_flood.pressure_syn_recv_percent` | `25` | 1..=100 |
//! | `syn_flood.drop_entry` | `true` | evict a SYN_RECV entry when the table is full (IPVS `drop_entry`) |
//! | `syn_flood.syn_recv_timeout_under_pressure` | `3` | 0 (keep `timeouts.tcp_syn`) ..= 2147483 seconds |
//! | `syn_flood.new_conns_per_prefix_per_sec` | `1000` | 0 (no bound) or more, under pressure only |
//! | `syn_flood.prefix_len` | `24` | 1..=32 |
//! | `syn_flood.prefix_len_ipv6` | `64` | 1..=128 (IPv6 clients) |
//! | `syn_flood.proxy_window_scale` | `7` | 0..=14 |
//!
//! `services[].syn_proxy` other than `"off"` needs a TCP service whose real
//! servers (and sorry server) are all `nat` or `fullnat` (the director must see
//! both directions to translate sequence numbers), and no `sloppy`.
//!
//! `ports` has no default: at least one port is required.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::str::FromStr;

use rvs_dataplane::sched::SchedOptions;
use rvs_dataplane::snapshot::{ForwardMode, Protocol, SchedulerKind, ServiceKey, SynFlood, SynProxy, Timeouts};
use serde::{Deserialize, Serialize};

pub use crate::error::ConfigError;

/// Highest lcore id accepted (DPDK's default `RTE_MAX_LCORE` is 128).
pub const MAX_LCORE: u32 = 128;
/// Smallest mbuf pool accepted.
pub const MIN_MBUFS: u32 = 1023;
/// Largest connection table accepted, per worker (16 Mi entries).
pub const MAX_CONN_TABLE_SIZE: u32 = 16 * 1024 * 1024;
/// Largest timeout accepted, in seconds: 2^31 − 1 ms (24.8 days), what the
/// dataplane's 32-bit connection clock holds and IPVS's own limit at HZ 1000.
pub const MAX_TIMEOUT_S: u32 = 2_147_483;
/// Largest persistence timeout accepted, in seconds: ipvsadm's and the
/// kernel's 31 days (`MAX_TIMEOUT` in ipvsadm.c).
pub const MAX_PERSISTENCE_TIMEOUT_S: u32 = 86_400 * 31;
/// Largest connection threshold accepted: ipvsadm's `INT_MAX`.
pub const MAX_THRESHOLD: u32 = i32::MAX as u32;
/// Largest real server weight (IPVS's range is 0..=65535).
pub const MAX_WEIGHT: u32 = 65_535;
/// Largest `idle_sleep_us` accepted (one second).
pub const MAX_IDLE_SLEEP_US: u32 = 1_000_000;

/// The whole rvsd configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Extra DPDK EAL arguments (the lcore list is derived from `main_lcore` and `workers`).
    #[serde(default)]
    pub eal: Vec<String>,
    /// The lcore running the control plane.
    #[serde(default)]
    pub main_lcore: u32,
    /// Lcores running a forwarding worker each.
    #[serde(default = "default_workers")]
    pub workers: Vec<u32>,
    /// Mbufs in the packet pool (2^n - 1 is most memory-efficient).
    #[serde(default = "default_mbufs")]
    pub mbufs: u32,
    /// How long an idle worker sleeps between empty polls, in microseconds (0 = busy poll).
    #[serde(default = "default_idle_sleep_us")]
    pub idle_sleep_us: u32,
    /// Connection table entries per worker.
    #[serde(default = "default_conn_table_size")]
    pub conn_table_size: u32,
    /// IPv6 (and NAT64) connection table entries per worker, a table of its
    /// own (an entry is 100 bytes against 52); absent: a sixteenth of
    /// `conn_table_size`, at least 1024.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conn_table_size_ipv6: Option<u32>,
    /// The REST API.
    #[serde(default)]
    pub api: ApiConfig,
    /// Dataplane ports; a port's index is its position here.
    pub ports: Vec<PortConfig>,
    /// Static routes (connected networks of the port addresses are implicit).
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Connection idle timeouts, in seconds.
    #[serde(default)]
    pub timeouts: Timeouts,
    /// FULLNAT local ports, `[first, last]`, split between the workers (default `[1024, 65535]`).
    #[serde(default = "default_local_port_range")]
    pub local_port_range: [u16; 2],
    /// Bounds of each worker's IPv4 and IPv6 fragment reassembly.
    #[serde(default, skip_serializing_if = "FragmentsConfig::is_default")]
    pub fragments: FragmentsConfig,
    /// Virtual services.
    #[serde(default)]
    pub services: Vec<ServiceConfig>,
    /// VRRP instances, sync groups and track scripts.
    #[serde(default, skip_serializing_if = "crate::ha::VrrpConfig::is_empty")]
    pub vrrp: crate::ha::VrrpConfig,
    /// Connection synchronisation with the other directors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<crate::ha::SyncConfig>,
    /// Drop the connections of removed real servers at their next packet
    /// (IPVS sysctl `expire_nodest_conn`); default: they run to their end.
    #[serde(default, skip_serializing_if = "is_false")]
    pub expire_nodest_conn: bool,
    /// Scale-out behind ECMP: the BIRD 2 include rvsd rewrites with the VIPs
    /// it announces, `birdc`, and the drain grace period (see
    /// [`crate::cluster`]). Absent: no routes are announced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bgp: Option<crate::cluster::BgpConfig>,
    /// SYN-flood and table-pressure defences of every worker: pressure
    /// thresholds, `drop_entry`, the short SYN_RECV timeout, the per-prefix
    /// rate bound, the SYN proxy's window scale (module docs: `# syn_flood`).
    #[serde(default, skip_serializing_if = "is_default_syn_flood")]
    pub syn_flood: SynFlood,
}

fn is_default_syn_flood(s: &SynFlood) -> bool {
    *s == SynFlood::default()
}

/// Checks the `syn_flood` settings; `path` prefixes every field name
/// (`"syn_flood"` in a config, `""` for the body of `PUT /api/v1/syn_flood`).
pub fn validate_syn_flood(s: &SynFlood, path: &str) -> Result<(), ConfigError> {
    let ranges = [
        ("pressure_table_percent", u32::from(s.pressure_table_percent), 1, 100),
        ("pressure_syn_recv_percent", u32::from(s.pressure_syn_recv_percent), 1, 100),
        ("syn_recv_timeout_under_pressure", s.syn_recv_timeout_under_pressure, 0, MAX_TIMEOUT_S),
        ("prefix_len", u32::from(s.prefix_len), 1, 32),
        ("prefix_len_ipv6", u32::from(s.prefix_len_ipv6), 1, 128),
        ("proxy_window_scale", u32::from(s.proxy_window_scale), 0, 14),
    ];
    for (field, value, lo, hi) in ranges {
        if !(lo..=hi).contains(&value) {
            return Err(ConfigError::invalid(join(path, field), format!("{value} is out of range {lo}..={hi}")));
        }
    }
    Ok(())
}

/// Bounds of each worker's IPv4 and IPv6 fragment reassembly (incomplete datagrams
/// hold their fragments' buffers until complete or timed out).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FragmentsConfig {
    /// Incomplete datagrams held at once per worker (1..=4096, default 64).
    pub max_datagrams: u32,
    /// Fragments per datagram (2..=1024, default 45: 64 KB at a 1500-byte MTU).
    pub max_fragments: u32,
    /// Milliseconds an incomplete datagram is held (100..=60000, default 2000).
    pub timeout_ms: u32,
}

impl Default for FragmentsConfig {
    fn default() -> Self {
        let d = rvs_dataplane::frag::FragLimits::default();
        FragmentsConfig { max_datagrams: d.max_datagrams as u32, max_fragments: d.max_fragments as u32, timeout_ms: d.timeout_ms as u32 }
    }
}

impl FragmentsConfig {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let ranges = [
            ("fragments.max_datagrams", self.max_datagrams, 1, 4096),
            ("fragments.max_fragments", self.max_fragments, 2, 1024),
            ("fragments.timeout_ms", self.timeout_ms, 100, 60_000),
        ];
        for (field, value, lo, hi) in ranges {
            if !(lo..=hi).contains(&value) {
                return Err(ConfigError::invalid(field, format!("{value} is out of range {lo}..={hi}")));
            }
        }
        Ok(())
    }
}

/// The REST API listener.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Address and port to listen on, e.g. `"127.0.0.1:9090"`.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Bearer token required by every request that changes something
    /// (`Authorization: Bearer <token>`); absent = no token required. The
    /// environment variable `RVS_API_TOKEN`, when set and not empty, wins.
    /// Never shown by `GET /api/v1/config`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Serve the read-only status page at `GET /status` (and `/`) without a
    /// token (default true). It shows what the open `GET` endpoints show,
    /// never a secret; `false` answers 404 there (the JSON API is unchanged).
    /// Changes live.
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    pub status_page: bool,
}

fn default_true() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig { listen: default_listen(), token: None, status_page: true }
    }
}

/// The kernel interface an af_packet port captures on (`dp0` in
/// `net_af_packet0,iface=dp0`); `None` for any other device.
pub fn af_packet_iface(device: &str) -> Option<&str> {
    if !device.starts_with("net_af_packet") {
        return None;
    }
    device.split(',').find_map(|kv| kv.strip_prefix("iface="))
}

/// A dataplane port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortConfig {
    /// Operator-given name, referenced by routes.
    pub name: String,
    /// DPDK device: a PCI address or a vdev spec such as `net_af_packet0,iface=dp0`.
    pub device: String,
    /// The appliance's addresses on this port, with their connected prefix.
    #[serde(default)]
    pub addresses: Vec<Cidr>,
    /// IP MTU (576..=9000, default 1500); TUN answers "fragmentation needed" above it.
    #[serde(default = "default_mtu")]
    pub mtu: u16,
    /// Exception path: name of a kernel TAP interface rvsd creates for this port.
    /// Traffic for the appliance that the dataplane does not answer itself
    /// (TCP/UDP to the port addresses, VRRP, ARP replies) goes to the kernel
    /// through it, and what the kernel sends on it leaves through the port — so
    /// health checks, VRRP, sync, ssh use ordinary sockets. Absent: such traffic
    /// is dropped and counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tap: Option<String>,
    /// 802.1Q VLAN id (1..=4094) the port is on: frames are received and sent
    /// with this tag, and frames with another tag (or none) are dropped and
    /// counted (`drop_vlan_foreign`). Absent: untagged. One VLAN per port;
    /// the TAP (`tap`) is untagged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
}

/// A static route.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Destination network, e.g. `"0.0.0.0/0"`.
    pub prefix: Cidr,
    /// Gateway, of the prefix's family; must lie in a connected network of
    /// `port`. Absent: the destination is on-link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<IpAddr>,
    /// Name of the egress port.
    pub port: String,
}

/// A virtual service (ipvsadm `-A`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// `"tcp"` or `"udp"`.
    pub protocol: Protocol,
    /// Virtual IP address, IPv4 or IPv6.
    pub vip: IpAddr,
    /// Virtual port (1..=65535).
    pub port: u16,
    /// Scheduler, by ipvsadm's name (`rr`, `wrr`, `lc`, `wlc`, `sed`, `nq`, `sh`, `dh`,
    /// `lblc`, `lblcr`, `fo`, `ovf`, `twos`, `mh`) or `maglev`; default `wlc` as in ipvsadm.
    #[serde(default = "default_scheduler")]
    pub scheduler: SchedulerKind,
    /// Default forwarding mode of the reals: `"dr"` or `"nat"`; default `"dr"`.
    #[serde(default = "default_forward")]
    pub forward: ForwardMode,
    /// Real servers.
    #[serde(default)]
    pub reals: Vec<RealConfig>,
    /// Client persistence (ipvsadm `-p [timeout] -M netmask`, `-M prefix-length` for IPv6); absent = none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistence: Option<PersistenceConfig>,
    /// FULLNAT local addresses (DPVS `laddr`). May be empty, as in DPVS: the
    /// service's `fullnat` reals then get no connection (`drop_no_laddr`).
    /// The family of the real servers they reach (IPv4 local addresses for IPv4 reals).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub local_addresses: Vec<IpAddr>,
    /// FULLNAT: insert the client's address as a TOA TCP option.
    #[serde(default, skip_serializing_if = "is_false")]
    pub toa: bool,
    /// Scheduler options: `{"hash": "src_addr"|"src_addr_port", "fallback": bool, "table_size": prime}`.
    #[serde(default, skip_serializing_if = "is_default_sched_options")]
    pub sched_options: SchedOptions,
    /// Expire the connections of a real server set to weight 0 instead of letting them finish.
    #[serde(default, skip_serializing_if = "is_false")]
    pub expire_quiescent: bool,
    /// Adopt mid-stream TCP packets that match no connection (IPVS `sloppy_tcp`; a cluster
    /// behind ECMP): the connection is created in ESTABLISHED to the real server the
    /// consistent hash picks. Needs scheduler `mh` or `maglev` and DR/TUN reals only.
    #[serde(default, skip_serializing_if = "is_false")]
    pub sloppy: bool,
    /// SYN proxy (DPVS `-j`, Keepalived `syn_proxy`): `"off"` (default), `"on"`
    /// (clients' SYNs are answered with a SYN cookie; the real server sees a
    /// connection only after the client's valid ACK) or `"auto"` (on while the
    /// worker is under `syn_flood` pressure). TCP services with NAT/FULLNAT
    /// reals only, not with `sloppy`.
    #[serde(default, skip_serializing_if = "is_syn_proxy_off")]
    pub syn_proxy: SynProxy,
    /// Health checking: delay_loop, quorum, hysteresis, sorry server, alpha/omega, quorum scripts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<crate::ha::ServiceHealth>,
}

/// Client persistence of a service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersistenceConfig {
    /// Seconds a client's template outlives its last connection (ipvsadm default 300).
    #[serde(default = "default_persistence_timeout")]
    pub timeout: u32,
    /// How clients are grouped (ipvsadm `-M`): a dotted netmask for an IPv4
    /// service (absent = 255.255.255.255), a prefix length 1..=128 for an
    /// IPv6 one (absent = 128). Either way, absent = one client per template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netmask: Option<PersistenceNetmask>,
}

impl PersistenceConfig {
    /// Persistence for `timeout` seconds, one client per template.
    pub fn per_client(timeout: u32) -> Self {
        PersistenceConfig { timeout, netmask: None }
    }

    /// The leading bits of a client's address that name its network, for a
    /// service at `vip` (validated: the netmask's form fits the family).
    pub fn prefix_len(&self, vip: IpAddr) -> u8 {
        match self.netmask {
            Some(PersistenceNetmask::Mask(m)) => u32::from(m).leading_ones() as u8,
            Some(PersistenceNetmask::PrefixLen(n)) => n,
            None => max_prefix_len(vip),
        }
    }
}

/// A persistent service's client grouping (`persistence.netmask`, ipvsadm
/// `-M`): IPv4 services take a dotted netmask, IPv6 services a prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum PersistenceNetmask {
    /// An IPv4 service's netmask, written `"255.255.255.0"`.
    Mask(Ipv4Addr),
    /// An IPv6 service's prefix length, written `64`.
    PrefixLen(u8),
}

impl fmt::Display for PersistenceNetmask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PersistenceNetmask::Mask(m) => write!(f, "{m}"),
            PersistenceNetmask::PrefixLen(n) => write!(f, "{n}"),
        }
    }
}

impl<'de> Deserialize<'de> for PersistenceNetmask {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = PersistenceNetmask;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a dotted IPv4 netmask such as \"255.255.255.0\" (IPv4 services) or a prefix length such as 64 (IPv6 services)")
            }

            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Self::Value, E> {
                s.parse().map(PersistenceNetmask::Mask).map_err(|_| {
                    E::custom(format!(
                        "`{s}` is not a dotted IPv4 netmask; use one such as \"255.255.255.0\" for an IPv4 service, a prefix length such as 64 for an IPv6 one"
                    ))
                })
            }

            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Self::Value, E> {
                u8::try_from(n)
                    .map(PersistenceNetmask::PrefixLen)
                    .map_err(|_| E::custom(format!("prefix length {n} is out of range 1..=128")))
            }

            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Self::Value, E> {
                u64::try_from(n)
                    .map_err(|_| E::custom(format!("prefix length {n} is out of range 1..=128")))
                    .and_then(|n| self.visit_u64(n))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// True for an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`): rvs keeps those
/// for NAT64 connections, so no configured address may be one.
fn is_ipv4_mapped(addr: IpAddr) -> bool {
    matches!(addr, IpAddr::V6(a) if a.to_ipv4_mapped().is_some())
}

/// The longest prefix of `addr`'s family: 32 or 128.
fn max_prefix_len(addr: IpAddr) -> u8 {
    if addr.is_ipv4() {
        32
    } else {
        128
    }
}

/// True for an address that can name one host: not unspecified, not
/// multicast, not IPv4's limited broadcast.
fn is_unicast(addr: IpAddr) -> bool {
    let broadcast = matches!(addr, IpAddr::V4(a) if a.is_broadcast());
    !(addr.is_unspecified() || addr.is_multicast() || broadcast)
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_syn_proxy_off(p: &SynProxy) -> bool {
    *p == SynProxy::Off
}

/// Lowercase name of a [`SynProxy`] setting, as the config spells it.
pub fn syn_proxy_name(p: SynProxy) -> &'static str {
    match p {
        SynProxy::Off => "off",
        SynProxy::On => "on",
        SynProxy::Auto => "auto",
    }
}

fn is_default_sched_options(o: &SchedOptions) -> bool {
    *o == SchedOptions::default()
}

fn default_mtu() -> u16 {
    1500
}

fn default_persistence_timeout() -> u32 {
    300
}

fn default_local_port_range() -> [u16; 2] {
    let (lo, hi) = rvs_dataplane::snapshot::DEFAULT_LOCAL_PORT_RANGE;
    [lo, hi]
}

/// A real server of a service (ipvsadm `-a`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RealConfig {
    /// Real server address: the VIP's family (IPv4 reals behind an IPv6 VIP
    /// through FULLNAT, NAT64, are not served yet).
    pub address: IpAddr,
    /// Real server port; default the service's port (and it must equal it in DR mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Scheduling weight 0..=65535; 0 takes no new connections. Default 1.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Forwarding mode; default the service's `forward`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward: Option<ForwardMode>,
    /// Upper connection threshold (ipvsadm `-x`): above this many connections
    /// the real server takes no new ones. 0 (default) = no limit.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub upper_threshold: u32,
    /// Lower connection threshold (ipvsadm `-y`): an overloaded real server
    /// takes new connections again below it. 0 (default) = unset; must not
    /// exceed `upper_threshold`, also when that is 0 (IPVS refuses it).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub lower_threshold: u32,
    /// Health checks and what a failure does (inhibit_on_failure, notify scripts).
    #[serde(default, skip_serializing_if = "crate::ha::RealHealth::is_empty")]
    pub health: crate::ha::RealHealth,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

fn default_workers() -> Vec<u32> {
    vec![1]
}
fn default_mbufs() -> u32 {
    8191
}
fn default_idle_sleep_us() -> u32 {
    50
}
fn default_conn_table_size() -> u32 {
    65536
}
fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9090))
}
fn default_scheduler() -> SchedulerKind {
    // ipvsadm's default.
    SchedulerKind::Wlc
}
fn default_forward() -> ForwardMode {
    ForwardMode::Dr
}
fn default_weight() -> u32 {
    1
}

/// An address with a prefix length, written `"a.b.c.d/len"` (len 0..=32)
/// or `"2001:db8::1/len"` (len 0..=128).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cidr {
    /// The address (an interface address, or a network address in a route).
    pub addr: IpAddr,
    /// Prefix length, 0..=32 (IPv4) or 0..=128 (IPv6).
    pub prefix_len: u8,
}

impl Cidr {
    /// Builds a CIDR; `None` when `prefix_len` exceeds the family's bits.
    pub fn new(addr: impl Into<IpAddr>, prefix_len: u8) -> Option<Self> {
        let addr = addr.into();
        (prefix_len <= max_prefix_len(addr)).then_some(Cidr { addr, prefix_len })
    }

    /// The network address: `addr` with the host bits cleared.
    pub fn network(&self) -> IpAddr {
        match self.addr {
            IpAddr::V4(_) if self.prefix_len == 0 => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & (u32::MAX << (32 - u32::from(self.prefix_len.min(32)))))),
            IpAddr::V6(_) if self.prefix_len == 0 => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
            IpAddr::V6(a) => {
                IpAddr::V6(std::net::Ipv6Addr::from(u128::from(a) & (u128::MAX << (128 - u32::from(self.prefix_len.min(128))))))
            }
        }
    }

    /// True when `addr` lies in this network (never for the other family).
    pub fn contains(&self, addr: IpAddr) -> bool {
        rvs_dataplane::snapshot::ip_prefix_contains(self.addr, self.prefix_len, addr)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("invalid CIDR `{s}`: expected a.b.c.d/len with len 0..=32, or an IPv6 address/len with len 0..=128");
        let (addr, len) = s.split_once('/').ok_or_else(bad)?;
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let len: u8 = len.parse().map_err(|_| bad())?;
        Cidr::new(addr, len).ok_or_else(bad)
    }
}

impl TryFrom<String> for Cidr {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Cidr> for String {
    fn from(c: Cidr) -> String {
        c.to_string()
    }
}

impl ServiceConfig {
    /// The service's identity: protocol, VIP, port.
    pub fn key(&self) -> ServiceKey {
        ServiceKey { protocol: self.protocol, vip: self.vip, port: self.port }
    }

    /// Index of the real server at `address:port` (port after defaults), if any.
    pub fn real_index(&self, address: IpAddr, port: u16) -> Option<usize> {
        self.reals.iter().position(|r| r.address == address && r.port_for(self) == port)
    }

    /// Checks this service on its own. `path` prefixes every field name
    /// (`"services[2]"`, or `""` for paths relative to the service);
    /// `own_addrs` are the appliance's interface addresses.
    pub fn validate_at(&self, path: &str, own_addrs: &[IpAddr]) -> Result<(), ConfigError> {
        if self.port == 0 {
            return Err(ConfigError::invalid(join(path, "port"), "port 0 is not allowed; use 1..=65535"));
        }
        let vip = self.vip;
        if !is_unicast(vip) || is_ipv4_mapped(vip) {
            return Err(ConfigError::invalid(join(path, "vip"), format!("{vip} cannot be a virtual address; use a unicast address")));
        }
        if vip.is_ipv6() {
            self.validate_ipv6_limits(path)?;
        }
        if let Some(p) = &self.persistence {
            if !(1..=MAX_PERSISTENCE_TIMEOUT_S).contains(&p.timeout) {
                return Err(ConfigError::invalid(
                    join(path, "persistence.timeout"),
                    format!("{} is out of range 1..={MAX_PERSISTENCE_TIMEOUT_S} seconds (31 days)", p.timeout),
                ));
            }
            validate_persistence_netmask(p.netmask, vip, &join(path, "persistence.netmask"))?;
        }
        let mut lips = HashSet::new();
        for (j, lip) in self.local_addresses.iter().enumerate() {
            let field = join(path, &format!("local_addresses[{j}]"));
            if !is_unicast(*lip) || *lip == vip {
                return Err(ConfigError::invalid(
                    field,
                    format!("{lip} cannot be a local address; use a unicast address that is not the VIP"),
                ));
            }
            if lip.is_ipv6() && vip.is_ipv4() {
                return Err(ConfigError::invalid(
                    field,
                    format!("{lip} is IPv6, but an IPv4 service has IPv4 real servers only; use an IPv4 local address"),
                ));
            }
            if !lips.insert(*lip) {
                return Err(ConfigError::invalid(field, format!("duplicate local address {lip}")));
            }
        }
        if let Err(e) = rvs_dataplane::sched::validate_options(self.scheduler, &self.sched_options, self.reals.len()) {
            return Err(ConfigError::invalid(join(path, "sched_options"), e));
        }
        if self.sloppy {
            if !matches!(self.scheduler, SchedulerKind::Mh | SchedulerKind::Maglev) {
                return Err(ConfigError::invalid(
                    join(path, "sloppy"),
                    format!(
                        "needs a consistent-hash scheduler (`mh` or `maglev`) so every node picks the same real server, not `{}`",
                        self.scheduler
                    ),
                ));
            }
            if self.protocol != Protocol::Tcp {
                return Err(ConfigError::invalid(join(path, "sloppy"), "applies to TCP services only (UDP has no connection start)"));
            }
            if let Some(j) = self.reals.iter().position(|r| matches!(r.forward_for(self), ForwardMode::Nat | ForwardMode::FullNat)) {
                return Err(ConfigError::invalid(
                    join(path, "sloppy"),
                    format!(
                        "reals[{j}] is forwarded by {}: NAT/FULLNAT replies return through the node that made the connection, so a moved flow cannot be adopted; use dr or tun",
                        self.reals[j].forward_for(self)
                    ),
                ));
            }
        }
        self.validate_syn_proxy(path)?;
        let mut seen: HashMap<(IpAddr, u16), usize> = HashMap::new();
        for (j, real) in self.reals.iter().enumerate() {
            let rpath = join(path, &format!("reals[{j}]"));
            let addr = real.address;
            if !is_unicast(addr) {
                return Err(ConfigError::invalid(
                    join(&rpath, "address"),
                    format!("{addr} cannot be a real server address; use a unicast address"),
                ));
            }
            if addr == vip {
                return Err(ConfigError::invalid(join(&rpath, "address"), format!("{addr} is the service's own virtual address")));
            }
            if addr.is_ipv4() != vip.is_ipv4() {
                // Tunnels of either family (IPv4 in IPv6, IPv6 in IPv4: IPVS
                // allows mixed families for tunnelling only) and NAT64 (an
                // IPv6 VIP, IPv4 real servers through FULLNAT).
                let forward = real.forward_for(self);
                let mixed_ok = forward == ForwardMode::Tun || (vip.is_ipv6() && forward == ForwardMode::FullNat);
                if !mixed_ok {
                    return Err(ConfigError::invalid(
                        join(&rpath, "address"),
                        format!(
                            "{addr} is not of the virtual address's family ({vip}): a real server of the other family is reached \
                             through \"tun\", or through \"fullnat\" (NAT64) for IPv4 real servers of an IPv6 service; \
                             use an address of the same family or one of those modes"
                        ),
                    ));
                }
            }
            if own_addrs.contains(&addr) {
                return Err(ConfigError::invalid(join(&rpath, "address"), format!("{addr} is one of this appliance's own port addresses")));
            }
            let port = real.port_for(self);
            if port == 0 {
                return Err(ConfigError::invalid(join(&rpath, "port"), "port 0 is not allowed; use 1..=65535"));
            }
            if real.weight > MAX_WEIGHT {
                return Err(ConfigError::invalid(join(&rpath, "weight"), format!("{} is out of range 0..={MAX_WEIGHT}", real.weight)));
            }
            check_thresholds(real, &rpath)?;
            let forward = real.forward_for(self);
            if matches!(forward, ForwardMode::Dr | ForwardMode::Tun) && port != self.port {
                return Err(ConfigError::invalid(
                    join(&rpath, "port"),
                    format!(
                        "{port} differs from the service port {}; {forward} forwarding cannot change the port \
                         (use the service port, or \"forward\": \"nat\" or \"fullnat\")",
                        self.port
                    ),
                ));
            }
            if let Some(first) = seen.insert((addr, port), j) {
                return Err(ConfigError::invalid(
                    join(&rpath, "address"),
                    format!("duplicate real server {addr}:{port} (also reals[{first}])"),
                ));
            }
        }
        Ok(())
    }
}

/// A persistent service's `netmask` (at `field`) fits its virtual address
/// `vip`'s family: a contiguous dotted netmask for IPv4, a prefix length
/// 1..=128 for IPv6.
fn validate_persistence_netmask(netmask: Option<PersistenceNetmask>, vip: IpAddr, field: &str) -> Result<(), ConfigError> {
    match (netmask, vip) {
        (None, _) => Ok(()),
        (Some(PersistenceNetmask::Mask(m)), IpAddr::V4(_)) => {
            let bits = u32::from(m);
            if bits == 0 || bits.leading_ones() + bits.trailing_zeros() != 32 {
                return Err(ConfigError::invalid(field, format!("{m} is not a netmask; use contiguous ones such as 255.255.255.0")));
            }
            Ok(())
        }
        (Some(PersistenceNetmask::PrefixLen(n)), IpAddr::V4(_)) => Err(ConfigError::invalid(
            field,
            format!("{n} is a prefix length, which IPv6 services take; an IPv4 service takes a dotted netmask such as \"255.255.255.0\""),
        )),
        (Some(PersistenceNetmask::Mask(m)), IpAddr::V6(_)) => Err(ConfigError::invalid(
            field,
            format!("\"{m}\" is an IPv4 netmask; an IPv6 service takes a prefix length 1..=128 such as 64 (ipvsadm -M 64)"),
        )),
        (Some(PersistenceNetmask::PrefixLen(n)), IpAddr::V6(_)) if n == 0 || n > 128 => {
            Err(ConfigError::invalid(field, format!("prefix length {n} is out of range 1..=128")))
        }
        (Some(PersistenceNetmask::PrefixLen(_)), IpAddr::V6(_)) => Ok(()),
    }
}

impl ServiceConfig {
    /// What IPv6 services do not have yet, each refused naming its field:
    /// the SYN proxy of a NAT64 service (an IPv4 real or sorry server).
    fn validate_ipv6_limits(&self, path: &str) -> Result<(), ConfigError> {
        if self.syn_proxy == SynProxy::Off {
            return Ok(());
        }
        let sorry = self.health.as_ref().and_then(|h| h.sorry_server.as_ref()).map(|s| ("health.sorry_server".to_string(), s.address));
        let reals = self.reals.iter().enumerate().map(|(j, r)| (format!("reals[{j}]"), r.address));
        match reals.chain(sorry).find(|(_, a)| a.is_ipv4()) {
            Some((which, addr)) => Err(ConfigError::invalid(
                join(path, "syn_proxy"),
                format!(
                    "the SYN proxy is not supported for NAT64: {which} ({addr}) is IPv4 behind the IPv6 VIP {}; \
                     use IPv6 real servers, or syn_proxy \"off\"",
                    self.vip
                ),
            )),
            None => Ok(()),
        }
    }

    /// A SYN proxy answers the client itself and later translates sequence
    /// numbers in both directions: a TCP service whose every real server (and
    /// sorry server) is reached by NAT or FULLNAT, and not `sloppy`.
    fn validate_syn_proxy(&self, path: &str) -> Result<(), ConfigError> {
        if self.syn_proxy == SynProxy::Off {
            return Ok(());
        }
        let field = join(path, "syn_proxy");
        let setting = syn_proxy_name(self.syn_proxy);
        if self.protocol != Protocol::Tcp {
            return Err(ConfigError::invalid(
                field,
                format!("`{setting}` applies to TCP services only (a SYN proxy answers TCP SYNs); use \"off\""),
            ));
        }
        if self.sloppy {
            return Err(ConfigError::invalid(
                field,
                format!("`{setting}` cannot be combined with `sloppy`: an adopted mid-stream flow has no proxied handshake to translate; set one of them off"),
            ));
        }
        let direct = |f: ForwardMode| matches!(f, ForwardMode::Dr | ForwardMode::Tun);
        if let Some(j) = self.reals.iter().position(|r| direct(r.forward_for(self))) {
            return Err(ConfigError::invalid(
                field,
                format!(
                    "`{setting}` needs NAT or FULLNAT real servers, but reals[{j}] is forwarded by {}: its replies bypass the director, \
                     which must see both directions to translate sequence numbers; use \"nat\" or \"fullnat\", or syn_proxy \"off\"",
                    self.reals[j].forward_for(self)
                ),
            ));
        }
        if let Some(sorry) = self.health.as_ref().and_then(|h| h.sorry_server.as_ref()) {
            let forward = sorry.forward.unwrap_or(self.forward);
            if direct(forward) {
                return Err(ConfigError::invalid(
                    field,
                    format!(
                        "`{setting}` needs NAT or FULLNAT real servers, but health.sorry_server is forwarded by {forward}; \
                         give it \"forward\": \"nat\" or \"fullnat\", or syn_proxy \"off\""
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl RealConfig {
    /// The real server's port after defaults (the service's port when unset).
    pub fn port_for(&self, service: &ServiceConfig) -> u16 {
        self.port.unwrap_or(service.port)
    }

    /// The forwarding mode after defaults (the service's when unset).
    pub fn forward_for(&self, service: &ServiceConfig) -> ForwardMode {
        self.forward.unwrap_or(service.forward)
    }
}

/// IPVS's connection thresholds: each in ipvsadm's range `0..=INT_MAX`, and
/// the lower one never above the upper one — also when the upper one is 0
/// (no limit), as `ip_vs_add_dest`/`ip_vs_edit_dest` refuse it (`-ERANGE`).
fn check_thresholds(real: &RealConfig, rpath: &str) -> Result<(), ConfigError> {
    for (field, value) in [("upper_threshold", real.upper_threshold), ("lower_threshold", real.lower_threshold)] {
        if value > MAX_THRESHOLD {
            return Err(ConfigError::invalid(join(rpath, field), format!("{value} is out of range 0..={MAX_THRESHOLD}")));
        }
    }
    if real.lower_threshold > real.upper_threshold {
        return Err(ConfigError::invalid(
            join(rpath, "lower_threshold"),
            format!(
                "{} is above upper_threshold {}; the lower threshold must not exceed the upper one \
                 (IPVS refuses it even when upper_threshold is 0, no limit)",
                real.lower_threshold, real.upper_threshold
            ),
        ));
    }
    Ok(())
}

/// `prefix.field`, or `field` when the prefix is empty.
fn join(prefix: &str, field: &str) -> String {
    if prefix.is_empty() {
        field.to_string()
    } else {
        format!("{prefix}.{field}")
    }
}

fn check_timeout(field: &str, value: u32) -> Result<(), ConfigError> {
    if (1..=MAX_TIMEOUT_S).contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::invalid(format!("timeouts.{field}"), format!("{value} is out of range 1..={MAX_TIMEOUT_S} seconds")))
    }
}

/// Parses JSON text into `T` (a [`Config`] or a part of one, as the REST API
/// receives it); a data error names its field in JSON-path form.
pub fn parse_json<T: serde::de::DeserializeOwned>(text: &[u8]) -> Result<T, ConfigError> {
    let mut de = serde_json::Deserializer::from_slice(text);
    let value: T =
        serde_path_to_error::deserialize(&mut de).map_err(|e| ConfigError::from_json_error(Some(e.path().to_string()), e.inner()))?;
    de.end().map_err(|e| ConfigError::from_json_error(None, &e))?;
    Ok(value)
}

impl Config {
    /// Parses and validates a config from JSON text.
    pub fn from_json(text: &str) -> Result<Config, ConfigError> {
        let config: Config = parse_json(text.as_bytes())?;
        config.validate()?;
        Ok(config)
    }

    /// Reads, parses and validates the config file at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io { path: path.to_path_buf(), source })?;
        Config::from_json(&text)
    }

    /// Serializes the config as pretty JSON (what [`Config::from_json`] reads back).
    pub fn to_json_pretty(&self) -> String {
        // Serializing plain structs, strings and numbers into a String cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// IPv6 connection table entries per worker (`conn_table_size_ipv6` or its default).
    pub fn conn_table_size6(&self) -> usize {
        match self.conn_table_size_ipv6 {
            Some(n) => n as usize,
            None => rvs_dataplane::process::default_capacity6(self.conn_table_size as usize),
        }
    }

    /// The appliance's own addresses, over all ports.
    pub fn own_addresses(&self) -> Vec<IpAddr> {
        self.ports.iter().flat_map(|p| p.addresses.iter().map(|c| c.addr)).collect()
    }

    /// Index of the service with `key`, if any.
    pub fn service_index(&self, key: &ServiceKey) -> Option<usize> {
        self.services.iter().position(|s| s.key() == *key)
    }

    /// Checks every rule; the first violation is returned with its JSON path.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_lcores()?;
        self.validate_ports()?;
        self.validate_routes()?;
        self.validate_timeouts()?;
        validate_syn_flood(&self.syn_flood, "syn_flood")?;
        self.validate_api()?;
        self.validate_sync()?;
        if let Some(bgp) = &self.bgp {
            bgp.validate()?;
        }
        self.validate_services()?;
        self.validate_check_paths()?;
        self.validate_vrrp()
    }

    /// VRRP runs on the exception path: every instance's `interface` is a
    /// port with a `tap` (by the port's name or the TAP's); the rest is
    /// checked as the engine will at start ([`crate::vrrp::validate`]).
    fn validate_vrrp(&self) -> Result<(), ConfigError> {
        let interfaces: HashMap<String, String> = self.ports.iter().filter_map(|p| p.tap.clone().map(|t| (p.name.clone(), t))).collect();
        for (i, inst) in self.vrrp.instances.iter().enumerate() {
            if !interfaces.contains_key(&inst.interface) && !interfaces.values().any(|t| *t == inst.interface) {
                return Err(ConfigError::invalid(
                    format!("vrrp.instances[{i}].interface"),
                    format!("`{}` is not a port with a `tap` (VRRP runs on the exception path: set ports[].tap)", inst.interface),
                ));
            }
        }
        crate::vrrp::validate(&self.vrrp, &interfaces).map_err(|e| ConfigError::invalid("vrrp", e.to_string()))
    }

    /// The index of the port the dataplane sends packets for `addr` through:
    /// the longest matching prefix among the connected networks of the port
    /// addresses and the routes (as the snapshot's routing table), None when
    /// nothing matches.
    pub fn egress_port(&self, addr: IpAddr) -> Option<usize> {
        let connected = self.ports.iter().enumerate().flat_map(|(i, p)| p.addresses.iter().map(move |c| (c.network(), c.prefix_len, i)));
        let routed = self
            .routes
            .iter()
            .filter_map(|r| self.ports.iter().position(|p| p.name == r.port).map(|i| (r.prefix.network(), r.prefix.prefix_len, i)));
        connected
            .chain(routed)
            .filter(|(net, len, _)| rvs_dataplane::snapshot::ip_prefix_contains(*net, *len, addr))
            .fold(None, |best: Option<(u8, usize)>, (_, len, i)| match best {
                Some((l, _)) if l >= len => best,
                _ => Some((len, i)),
            })
            .map(|(_, i)| i)
    }

    /// Health checks open ordinary kernel sockets: a check whose target is
    /// reached through a dataplane port needs that port's exception path (its
    /// `tap`), or the kernel answers "Network is unreachable" and the check
    /// fails forever. MISC_CHECK (a script) and targets on 127.0.0.0/8 or on
    /// no dataplane port (the management network) are not concerned.
    fn validate_check_paths(&self) -> Result<(), ConfigError> {
        for (i, service) in self.services.iter().enumerate() {
            for (j, real) in service.reals.iter().enumerate() {
                for (k, check) in real.health.checks.iter().enumerate() {
                    if matches!(check.kind, crate::ha::CheckKind::MiscCheck { .. }) {
                        continue;
                    }
                    let (to, _) = crate::health::target(check, real.address, real.port_for(service));
                    if to.ip().is_loopback() {
                        continue;
                    }
                    let Some(p) = self.egress_port(to.ip()) else { continue };
                    let port = &self.ports[p];
                    if port.tap.is_none() {
                        return Err(ConfigError::invalid(
                            format!("services[{i}].reals[{j}].health.checks[{k}]"),
                            format!(
                                "{} to {to} needs an exception path: {} is reached through port `{}`, which has no \
                                 `tap`, so the kernel cannot send the check (\"Network is unreachable\") and the real \
                                 server would stay down; set ports[{p}].tap",
                                crate::health::kind_name(&check.kind),
                                to.ip(),
                                port.name
                            ),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    fn validate_lcores(&self) -> Result<(), ConfigError> {
        if self.main_lcore >= MAX_LCORE {
            return Err(ConfigError::invalid("main_lcore", format!("lcore {} is out of range 0..{MAX_LCORE}", self.main_lcore)));
        }
        if self.workers.is_empty() {
            return Err(ConfigError::invalid("workers", "at least one worker lcore is required"));
        }
        let mut seen = HashSet::new();
        for (i, &lcore) in self.workers.iter().enumerate() {
            let field = format!("workers[{i}]");
            if lcore >= MAX_LCORE {
                return Err(ConfigError::invalid(field, format!("lcore {lcore} is out of range 0..{MAX_LCORE}")));
            }
            if lcore == self.main_lcore {
                return Err(ConfigError::invalid(field, format!("lcore {lcore} is the main lcore; workers need lcores of their own")));
            }
            if !seen.insert(lcore) {
                return Err(ConfigError::invalid(field, format!("lcore {lcore} is listed twice")));
            }
        }
        if self.mbufs < MIN_MBUFS {
            return Err(ConfigError::invalid("mbufs", format!("{} is too small; use at least {MIN_MBUFS}", self.mbufs)));
        }
        if self.idle_sleep_us > MAX_IDLE_SLEEP_US {
            return Err(ConfigError::invalid("idle_sleep_us", format!("{} is out of range 0..={MAX_IDLE_SLEEP_US}", self.idle_sleep_us)));
        }
        if !(1..=MAX_CONN_TABLE_SIZE).contains(&self.conn_table_size) {
            return Err(ConfigError::invalid(
                "conn_table_size",
                format!("{} is out of range 1..={MAX_CONN_TABLE_SIZE}", self.conn_table_size),
            ));
        }
        if let Some(n) = self.conn_table_size_ipv6.filter(|n| !(1..=MAX_CONN_TABLE_SIZE).contains(n)) {
            return Err(ConfigError::invalid("conn_table_size_ipv6", format!("{n} is out of range 1..={MAX_CONN_TABLE_SIZE}")));
        }
        self.fragments.validate()
    }

    /// Every worker polls one queue of every port: a device whose arguments
    /// fix its queue count ([`crate::queues`]) must have one per worker.
    fn validate_port_queues(&self, i: usize) -> Result<(), ConfigError> {
        let field = format!("ports[{i}].device");
        let fixed = crate::queues::fixed_queue_count(&self.ports[i].device).map_err(|e| ConfigError::invalid(&field, e))?;
        let workers = self.workers.len();
        match fixed {
            Some(q) if usize::from(q.count) != workers => Err(ConfigError::invalid(
                field,
                format!(
                    "{}={} gives {} queue pair(s) but `workers` lists {workers} lcore(s); every worker polls one queue \
                     of every port, so {}; set {}={workers} or list {} worker(s)",
                    q.arg,
                    q.count,
                    q.count,
                    if usize::from(q.count) > workers {
                        "the packets the device puts on the other queues would never be read"
                    } else {
                        "the port cannot start"
                    },
                    q.arg,
                    q.count
                ),
            )),
            _ => Ok(()),
        }
    }

    fn validate_ports(&self) -> Result<(), ConfigError> {
        if self.ports.is_empty() {
            return Err(ConfigError::invalid("ports", "at least one port is required"));
        }
        if self.ports.len() > usize::from(u16::MAX) {
            return Err(ConfigError::invalid("ports", "too many ports"));
        }
        let mut names: HashMap<&str, usize> = HashMap::new();
        let mut addrs: HashMap<IpAddr, String> = HashMap::new();
        for (i, port) in self.ports.iter().enumerate() {
            if port.name.trim().is_empty() {
                return Err(ConfigError::invalid(format!("ports[{i}].name"), "must not be empty"));
            }
            if let Some(first) = names.insert(port.name.as_str(), i) {
                return Err(ConfigError::invalid(
                    format!("ports[{i}].name"),
                    format!("duplicate port name `{}` (also ports[{first}])", port.name),
                ));
            }
            if let Some(tap) = &port.tap {
                let ok =
                    (1..=15).contains(&tap.len()) && tap.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
                if !ok {
                    return Err(ConfigError::invalid(
                        format!("ports[{i}].tap"),
                        format!("`{tap}` is not a valid interface name: 1 to 15 letters, digits, '-', '_' or '.'"),
                    ));
                }
                if self.ports[..i].iter().any(|p| p.tap.as_deref() == Some(tap.as_str())) {
                    return Err(ConfigError::invalid(format!("ports[{i}].tap"), format!("duplicate TAP name `{tap}`")));
                }
            }
            if let Some(vlan) = port.vlan.filter(|v| !(1..=4094).contains(v)) {
                return Err(ConfigError::invalid(
                    format!("ports[{i}].vlan"),
                    format!("{vlan} is not a VLAN id: use 1..=4094, or leave vlan out for an untagged port"),
                ));
            }
            if port.device.trim().is_empty() {
                return Err(ConfigError::invalid(
                    format!("ports[{i}].device"),
                    "must not be empty; give a PCI address or a vdev such as net_af_packet0,iface=eth1",
                ));
            }
            self.validate_port_queues(i)?;
            for (j, cidr) in port.addresses.iter().enumerate() {
                let field = format!("ports[{i}].addresses[{j}]");
                let max = max_prefix_len(cidr.addr);
                if !(1..=max).contains(&cidr.prefix_len) {
                    return Err(ConfigError::invalid(
                        field,
                        format!("{cidr}: prefix length {} is out of range 1..={max}", cidr.prefix_len),
                    ));
                }
                let a = cidr.addr;
                if !is_unicast(a) || is_ipv4_mapped(a) {
                    return Err(ConfigError::invalid(field, format!("{a} cannot be an interface address")));
                }
                if let Some(first) = addrs.insert(a, field.clone()) {
                    return Err(ConfigError::invalid(field, format!("duplicate address {a} (also {first})")));
                }
            }
        }
        Ok(())
    }

    fn validate_routes(&self) -> Result<(), ConfigError> {
        let mut seen: HashMap<(IpAddr, u8), usize> = HashMap::new();
        for (i, route) in self.routes.iter().enumerate() {
            let Some(port) = self.ports.iter().find(|p| p.name == route.port) else {
                let known: Vec<&str> = self.ports.iter().map(|p| p.name.as_str()).collect();
                return Err(ConfigError::invalid(
                    format!("routes[{i}].port"),
                    format!("no port named `{}`; known ports: {}", route.port, known.join(", ")),
                ));
            };
            let prefix = route.prefix;
            if prefix.network() != prefix.addr {
                return Err(ConfigError::invalid(
                    format!("routes[{i}].prefix"),
                    format!("{prefix} has host bits set; did you mean {}/{}?", prefix.network(), prefix.prefix_len),
                ));
            }
            if let Some(first) = seen.insert((prefix.addr, prefix.prefix_len), i) {
                return Err(ConfigError::invalid(
                    format!("routes[{i}].prefix"),
                    format!("duplicate route {prefix} (also routes[{first}])"),
                ));
            }
            if let Some(via) = route.via {
                let field = format!("routes[{i}].via");
                if !is_unicast(via) {
                    return Err(ConfigError::invalid(field, format!("{via} cannot be a gateway")));
                }
                if via.is_ipv4() != prefix.addr.is_ipv4() {
                    return Err(ConfigError::invalid(field, format!("{via} is not of the family of the route's prefix {prefix}")));
                }
                if port.addresses.iter().any(|c| c.addr == via) {
                    return Err(ConfigError::invalid(field, format!("{via} is this appliance's own address")));
                }
                if !port.addresses.iter().any(|c| c.contains(via)) {
                    let nets: Vec<String> = port.addresses.iter().map(|c| format!("{}/{}", c.network(), c.prefix_len)).collect();
                    return Err(ConfigError::invalid(
                        field,
                        format!(
                            "gateway {via} is not in a connected network of port `{}` (connected: {})",
                            port.name,
                            if nets.is_empty() { "none".to_string() } else { nets.join(", ") }
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    fn validate_api(&self) -> Result<(), ConfigError> {
        if self.api.token.as_deref().is_some_and(|t| t.trim().is_empty()) {
            return Err(ConfigError::invalid("api.token", "must not be empty; leave it out for no token"));
        }
        Ok(())
    }

    fn validate_sync(&self) -> Result<(), ConfigError> {
        let Some(sync) = &self.sync else {
            return Ok(());
        };
        if sync.port == 0 {
            return Err(ConfigError::invalid("sync.port", "port 0 is not allowed; use 1..=65535"));
        }
        for (i, p) in sync.peers.iter().enumerate() {
            if p.is_unspecified() || p.is_broadcast() || p.is_multicast() {
                return Err(ConfigError::invalid(format!("sync.peers[{i}]"), format!("{p} cannot be a peer; use a unicast address")));
            }
        }
        if let Some(key) = &sync.key {
            if key.len() < crate::sync::MIN_KEY_LEN {
                return Err(ConfigError::invalid(
                    "sync.key",
                    format!("{} bytes is too short; use at least {} (the same on every director)", key.len(), crate::sync::MIN_KEY_LEN),
                ));
            }
        }
        Ok(())
    }

    fn validate_timeouts(&self) -> Result<(), ConfigError> {
        let t = &self.timeouts;
        check_timeout("tcp", t.tcp)?;
        check_timeout("tcp_fin", t.tcp_fin)?;
        check_timeout("tcp_syn", t.tcp_syn)?;
        check_timeout("udp", t.udp)
    }

    fn validate_services(&self) -> Result<(), ConfigError> {
        let own = self.own_addresses();
        let mut seen: HashMap<ServiceKey, usize> = HashMap::new();
        for (i, service) in self.services.iter().enumerate() {
            let path = format!("services[{i}]");
            service.validate_at(&path, &own)?;
            if let Some(first) = seen.insert(service.key(), i) {
                return Err(ConfigError::invalid(path, format!("duplicate service {} (also services[{first}])", service.key())));
            }
        }
        Ok(())
    }
}

/// The example config of the module docs, for tests.
#[cfg(test)]
pub(crate) const EXAMPLE: &str = r#"{
  "eal": ["--no-huge", "-m", "512", "--no-pci", "--file-prefix", "rvs-lab"],
  "main_lcore": 0,
  "workers": [1],
  "mbufs": 8191,
  "idle_sleep_us": 50,
  "conn_table_size": 65536,
  "api": { "listen": "127.0.0.1:9090" },
  "ports": [ { "name": "lan0", "device": "net_af_packet0,iface=dp0", "addresses": ["10.0.0.1/24", "10.1.0.1/24"] } ],
  "routes": [ { "prefix": "0.0.0.0/0", "via": "10.0.0.254", "port": "lan0" } ],
  "timeouts": { "tcp": 900, "tcp_fin": 120, "tcp_syn": 60, "udp": 300 },
  "services": [
    { "protocol": "tcp", "vip": "10.0.0.100", "port": 80, "scheduler": "rr", "forward": "dr",
      "reals": [ { "address": "10.1.0.11", "weight": 1 }, { "address": "10.1.0.12", "port": 80, "weight": 1, "forward": "dr" } ] }
  ]
}"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> Config {
        Config::from_json(EXAMPLE).expect("example config is valid")
    }

    /// Applies `edit` to the example and returns the field named by the validation error.
    fn invalid_field(edit: impl FnOnce(&mut Config)) -> String {
        let mut c = example();
        edit(&mut c);
        match c.validate() {
            Err(ConfigError::Invalid { field, message }) => {
                assert!(!message.is_empty());
                field
            }
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    fn parse_err(text: &str) -> (usize, usize, String) {
        match Config::from_json(text) {
            Err(ConfigError::Parse { line, column, message, .. }) => (line, column, message),
            other => panic!("expected a parse error, got {other:?}"),
        }
    }

    #[test]
    fn egress_port_is_the_longest_matching_prefix() {
        let mut c = example();
        c.ports.push(PortConfig {
            name: "wan0".into(),
            device: "net_af_packet1,iface=dp1".into(),
            addresses: vec!["192.0.2.1/24".parse().expect("cidr")],
            mtu: 1500,
            tap: None,
            vlan: None,
        });
        c.routes.push(RouteConfig { prefix: "10.1.0.128/25".parse().expect("cidr"), via: None, port: "wan0".into() });
        assert_eq!(c.egress_port(Ipv4Addr::new(10, 1, 0, 11).into()), Some(0), "connected /24");
        assert_eq!(c.egress_port(Ipv4Addr::new(10, 1, 0, 200).into()), Some(1), "the /25 route is longer");
        assert_eq!(c.egress_port(Ipv4Addr::new(192, 0, 2, 9).into()), Some(1));
        assert_eq!(c.egress_port(Ipv4Addr::new(8, 8, 8, 8).into()), Some(0), "default route");
        c.routes.clear();
        assert_eq!(c.egress_port(Ipv4Addr::new(8, 8, 8, 8).into()), None);
    }

    #[test]
    fn checks_need_the_exception_path_of_their_port() {
        let tcp: crate::ha::HealthCheck = serde_json::from_str(r#"{"type": "tcp_check"}"#).expect("check");
        let mut c = example();
        c.services[0].reals[1].health.checks = vec![tcp.clone()];
        let err = c.validate().expect_err("no tap on lan0");
        assert_eq!(err.field(), Some("services[0].reals[1].health.checks[0]"));
        let text = err.to_string();
        assert!(text.contains("needs an exception path") && text.contains("set ports[0].tap"), "{text}");
        assert!(text.contains("TCP_CHECK to 10.1.0.12:80"), "{text}");
        // With a tap it is fine; so are scripts, loopback targets and targets
        // on no dataplane port (the management network).
        c.ports[0].tap = Some("rvs0".into());
        assert!(c.validate().is_ok());
        c.ports[0].tap = None;
        c.routes.clear();
        let mut other = tcp.clone();
        other.connect_ip = Some(Ipv4Addr::new(192, 168, 50, 5).into());
        c.services[0].reals[1].health.checks = vec![other];
        assert!(c.validate().is_ok(), "connect_ip on the management network");
        let mut lo = tcp;
        lo.connect_ip = Some(Ipv4Addr::LOCALHOST.into());
        let misc: crate::ha::HealthCheck = serde_json::from_str(r#"{"type": "misc_check", "path": "true"}"#).expect("check");
        c.services[0].reals[1].health.checks = vec![lo, misc];
        assert!(c.validate().is_ok());
    }

    #[test]
    fn example_parses() {
        let c = example();
        assert_eq!(c.eal.len(), 6);
        assert_eq!(c.workers, vec![1]);
        assert_eq!(c.api.listen, "127.0.0.1:9090".parse::<SocketAddr>().expect("addr"));
        assert_eq!(c.ports[0].addresses[1], Cidr { addr: Ipv4Addr::new(10, 1, 0, 1).into(), prefix_len: 24 });
        assert_eq!(c.routes[0].via, Some(Ipv4Addr::new(10, 0, 0, 254).into()));
        let s = &c.services[0];
        assert_eq!(s.key(), ServiceKey { protocol: Protocol::Tcp, vip: Ipv4Addr::new(10, 0, 0, 100).into(), port: 80 });
        assert_eq!(s.scheduler, SchedulerKind::Rr);
        assert_eq!(s.reals[0].port, None);
        assert_eq!(s.reals[0].port_for(s), 80);
        assert_eq!(s.reals[1].forward, Some(ForwardMode::Dr));
        assert_eq!(s.real_index(Ipv4Addr::new(10, 1, 0, 12).into(), 80), Some(1));
    }

    #[test]
    fn defaults_apply() {
        let c = Config::from_json(
            r#"{"ports": [{"name": "p", "device": "d"}],
                "timeouts": {"tcp": 10},
                "services": [{"protocol": "udp", "vip": "10.9.0.1", "port": 53,
                              "reals": [{"address": "10.9.1.1"}]}]}"#,
        )
        .expect("valid");
        assert!(c.eal.is_empty());
        assert_eq!(c.main_lcore, 0);
        assert_eq!(c.workers, vec![1]);
        assert_eq!(c.mbufs, 8191);
        assert_eq!(c.idle_sleep_us, 50);
        assert_eq!(c.conn_table_size, 65536);
        assert_eq!(c.api, ApiConfig::default());
        assert!(c.routes.is_empty());
        assert_eq!(c.timeouts, Timeouts { tcp: 10, ..Timeouts::default() });
        let s = &c.services[0];
        assert_eq!(s.scheduler, SchedulerKind::Wlc);
        assert_eq!(s.forward, ForwardMode::Dr);
        assert_eq!(s.reals[0].weight, 1);
        assert_eq!(s.reals[0].forward_for(s), ForwardMode::Dr);
        assert_eq!(s.reals[0].port_for(s), 53);
    }

    #[test]
    fn round_trips() {
        let c = example();
        let json = serde_json::to_string(&c).expect("serialize");
        let back = Config::from_json(&json).expect("reparse");
        assert_eq!(c, back);
        let pretty = Config::from_json(&c.to_json_pretty()).expect("reparse pretty");
        assert_eq!(c, pretty);
    }

    #[test]
    fn cidr_parsing() {
        assert_eq!("10.0.0.0/8".parse::<Cidr>(), Ok(Cidr { addr: Ipv4Addr::new(10, 0, 0, 0).into(), prefix_len: 8 }));
        assert!("10.0.0.0".parse::<Cidr>().is_err());
        assert!("10.0.0/8".parse::<Cidr>().is_err());
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("10.0.0.0/x".parse::<Cidr>().is_err());
        let c = Cidr { addr: Ipv4Addr::new(10, 1, 2, 3).into(), prefix_len: 16 };
        assert_eq!(c.network(), Ipv4Addr::new(10, 1, 0, 0));
        assert_eq!(c.to_string(), "10.1.2.3/16");
        assert_eq!(Cidr { addr: Ipv4Addr::new(1, 2, 3, 4).into(), prefix_len: 0 }.network(), Ipv4Addr::UNSPECIFIED);
    }

    #[test]
    fn bad_cidr_is_a_parse_error() {
        let text = EXAMPLE.replace("10.1.0.1/24", "10.1.0.1/40");
        let (line, _, message) = parse_err(&text);
        assert_eq!(line, 9);
        assert!(message.contains("10.1.0.1/40"), "{message}");
    }

    #[test]
    fn unknown_field_is_named() {
        let text = EXAMPLE.replace("\"weight\": 1 }", "\"wieght\": 1 }");
        let (line, column, message) = parse_err(&text);
        assert!(message.contains("unknown field `wieght`"), "{message}");
        assert_eq!(line, 14);
        assert!(column > 0);
        // Top level and nested objects alike.
        let (_, _, message) = parse_err(&EXAMPLE.replace("\"mbufs\"", "\"mbuf\""));
        assert!(message.contains("unknown field `mbuf`"), "{message}");
        let (_, _, message) = parse_err(&EXAMPLE.replace("\"tcp_syn\"", "\"syn\""));
        assert!(message.contains("unknown field `syn`"), "{message}");
        let (_, _, message) = parse_err(&EXAMPLE.replace("\"listen\"", "\"bind\""));
        assert!(message.contains("unknown field `bind`"), "{message}");
    }

    #[test]
    fn wrong_type_is_rejected() {
        let (_, _, message) = parse_err(&EXAMPLE.replace("\"mbufs\": 8191", "\"mbufs\": \"lots\""));
        assert!(message.contains("invalid type: string \"lots\""), "{message}");
        let (_, _, message) = parse_err(&EXAMPLE.replace("\"scheduler\": \"rr\"", "\"scheduler\": \"fastest\""));
        assert!(message.contains("unknown variant `fastest`"), "{message}");
        let (_, _, message) = parse_err(&EXAMPLE.replace("10.0.0.100", "10.0.0"));
        assert!(message.contains("invalid IP address syntax"), "{message}");
        let (_, _, message) = parse_err(&EXAMPLE.replace("\"port\": 80,", "\"port\": 70000,"));
        assert!(message.contains("70000"), "{message}");
        let (_, _, message) = parse_err(r#"{"workers": [1]}"#);
        assert!(message.contains("missing field `ports`"), "{message}");
    }

    #[test]
    fn parse_errors_name_their_field() {
        let field_of = |text: &str| match Config::from_json(text) {
            Err(e @ ConfigError::Parse { .. }) => (e.field().map(str::to_owned), e.to_string()),
            other => panic!("expected a parse error, got {other:?}"),
        };
        let cases: &[(&str, &str, &str)] = &[
            ("bad CIDR", "10.1.0.1/24", "ports[0].addresses[1]"),
            ("bad VIP", "\"vip\": \"10.0.0.100\"", "services[0].vip"),
            ("unknown scheduler", "\"scheduler\": \"rr\"", "services[0].scheduler"),
            ("wrong type", "\"mbufs\": 8191", "mbufs"),
            ("unknown field", "\"weight\": 1 }", "services[0].reals[0].wieght"),
            ("unknown top-level field", "\"idle_sleep_us\"", "idle_sleep"),
            ("wrong type in a list", "\"workers\": [1]", "workers[0]"),
        ];
        let replacements = [
            "10.1.0.1/40",
            "\"vip\": \"10.0.0\"",
            "\"scheduler\": \"fastest\"",
            "\"mbufs\": \"lots\"",
            "\"wieght\": 1 }",
            "\"idle_sleep\"",
            "\"workers\": [\"one\"]",
        ];
        for ((what, from, field), to) in cases.iter().zip(replacements) {
            let (got, text) = field_of(&EXAMPLE.replacen(from, to, 1));
            assert_eq!(got.as_deref(), Some(*field), "{what}: {text}");
            assert!(text.contains(&format!(": {field}: ")), "{what}: the message names the field: {text}");
        }
        // A syntax error is about no field.
        let (got, _) = field_of(&EXAMPLE.replace("\"mbufs\": 8191,", "\"mbufs\": 8191,,"));
        assert_eq!(got, None);
        let (got, text) = field_of(&format!("{EXAMPLE} trailing"));
        assert_eq!(got, None, "{text}");
    }

    #[test]
    fn syntax_error_has_line_and_column() {
        let text = EXAMPLE.replace("\"mbufs\": 8191,", "\"mbufs\": 8191,,");
        let (line, column, message) = parse_err(&text);
        assert_eq!(line, 5);
        assert_eq!(column, 17);
        assert!(!message.contains(" at line "), "{message}");
        let err = Config::from_json(&text).expect_err("invalid");
        assert!(err.to_string().starts_with("invalid config at line 5, column 17: "), "{err}");
    }

    #[test]
    fn load_reads_files_and_names_missing_ones() {
        let dir = std::env::temp_dir().join(format!("rvs-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let path = dir.join("rvs.json");
        std::fs::write(&path, EXAMPLE).expect("write");
        assert_eq!(Config::load(&path).expect("load"), example());
        let missing = dir.join("nope.json");
        let err = Config::load(&missing).expect_err("missing file");
        assert!(matches!(err, ConfigError::Io { .. }));
        assert!(err.to_string().contains("nope.json"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn weight_message_names_field_and_range() {
        let mut c = example();
        c.services[0].reals[1].weight = 70000;
        let err = c.validate().expect_err("invalid");
        assert_eq!(err.to_string(), "services[0].reals[1].weight: 70000 is out of range 0..=65535");
    }

    #[test]
    fn vrrp_is_checked_before_anything_starts() {
        let vrrp = |interface: &str, priority: u8| -> crate::ha::VrrpConfig {
            serde_json::from_value(serde_json::json!({ "instances": [{ "name": "VI_1", "interface": interface,
                "virtual_router_id": 51, "priority": priority, "virtual_ipaddress": ["10.0.0.100"] }] }))
            .expect("vrrp json")
        };
        let with_tap = |c: &mut Config| c.ports[0].tap = Some("rvs0".to_owned());
        let name = example().ports[0].name.clone();
        // No exception path on the port: refused, naming the field.
        assert_eq!(invalid_field(|c| c.vrrp = vrrp(&name, 100)), "vrrp.instances[0].interface");
        // The port's name or its TAP's are both accepted.
        for interface in [name.as_str(), "rvs0"] {
            let mut c = example();
            with_tap(&mut c);
            c.vrrp = vrrp(interface, 100);
            c.validate().expect("valid");
        }
        // What the engine would refuse at start is refused now.
        let err = invalid_field(|c| {
            with_tap(c);
            c.vrrp = vrrp("rvs0", 0);
        });
        assert_eq!(err, "vrrp");
    }

    #[test]
    fn port_rules() {
        assert_eq!(invalid_field(|c| c.ports.clear()), "ports");
        assert_eq!(
            invalid_field(|c| {
                let mut p = c.ports[0].clone();
                p.addresses.clear();
                c.ports.push(p);
            }),
            "ports[1].name"
        );
        assert_eq!(invalid_field(|c| c.ports[0].name = " ".into()), "ports[0].name");
        assert_eq!(invalid_field(|c| c.ports[0].device = String::new()), "ports[0].device");
        for vlan in [0, 4095, 5000] {
            assert_eq!(invalid_field(|c| c.ports[0].vlan = Some(vlan)), "ports[0].vlan", "vlan {vlan}");
        }
        let mut tagged = example();
        tagged.ports[0].vlan = Some(100);
        tagged.validate().expect("VLAN 100 is valid");
        assert_eq!(invalid_field(|c| c.ports[0].addresses[1].prefix_len = 0), "ports[0].addresses[1]");
        assert_eq!(
            invalid_field(|c| c.ports[0].addresses[0] = Cidr { addr: Ipv4Addr::UNSPECIFIED.into(), prefix_len: 8 }),
            "ports[0].addresses[0]"
        );
        assert_eq!(
            invalid_field(|c| c.ports.push(PortConfig {
                name: "lan1".into(),
                device: "d".into(),
                addresses: vec![Cidr { addr: Ipv4Addr::new(10, 1, 0, 1).into(), prefix_len: 16 }],
                mtu: 1500,
                tap: None,
                vlan: None,
            })),
            "ports[1].addresses[0]"
        );
    }

    #[test]
    fn fixed_queue_counts_must_match_the_workers() {
        // One worker polls only queue 0: af_packet's second queue would never be read.
        let field = invalid_field(|c| c.ports[0].device = "net_af_packet0,iface=dp0,qpairs=2".into());
        assert_eq!(field, "ports[0].device");
        let mut c = example();
        c.ports[0].device = "net_af_packet0,iface=dp0,qpairs=2".into();
        let message = c.validate().expect_err("qpairs=2, one worker").to_string();
        assert!(message.contains("qpairs=2") && message.contains("`workers` lists 1"), "{message}");
        // Two workers need two queue pairs (qpairs defaults to 1).
        assert_eq!(invalid_field(|c| c.workers = vec![1, 2]), "ports[0].device");
        assert_eq!(invalid_field(|c| c.ports[0].device = "net_af_packet0,iface=dp0,qpairs=0".into()), "ports[0].device");
        c.workers = vec![1, 2];
        c.validate().expect("qpairs=2 with two workers");
        // Devices that take any queue count.
        c.ports[0].device = "net_memif0,role=server,socket=/run/rvs.sock".into();
        c.validate().expect("memif");
    }

    #[test]
    fn route_rules() {
        assert_eq!(invalid_field(|c| c.routes[0].port = "wan0".into()), "routes[0].port");
        assert_eq!(invalid_field(|c| c.routes[0].prefix = "10.9.0.5/16".parse().expect("cidr")), "routes[0].prefix");
        assert_eq!(invalid_field(|c| c.routes[0].via = Some(Ipv4Addr::new(192, 168, 1, 1).into())), "routes[0].via");
        assert_eq!(invalid_field(|c| c.routes[0].via = Some(Ipv4Addr::new(10, 0, 0, 1).into())), "routes[0].via");
        assert_eq!(invalid_field(|c| c.routes.push(c.routes[0].clone())), "routes[1].prefix");
        // On-link routes need no gateway.
        let mut c = example();
        c.routes.push(RouteConfig { prefix: "10.2.0.0/16".parse().expect("cidr"), via: None, port: "lan0".into() });
        assert!(c.validate().is_ok());
    }

    #[test]
    fn lcore_and_size_rules() {
        assert_eq!(invalid_field(|c| c.workers.clear()), "workers");
        assert_eq!(invalid_field(|c| c.workers = vec![1, 2, 1]), "workers[2]");
        assert_eq!(invalid_field(|c| c.workers = vec![1, 0]), "workers[1]");
        assert_eq!(invalid_field(|c| c.workers = vec![128]), "workers[0]");
        assert_eq!(invalid_field(|c| c.main_lcore = 200), "main_lcore");
        assert_eq!(invalid_field(|c| c.mbufs = 1000), "mbufs");
        assert_eq!(invalid_field(|c| c.conn_table_size = 0), "conn_table_size");
        assert_eq!(invalid_field(|c| c.conn_table_size = MAX_CONN_TABLE_SIZE + 1), "conn_table_size");
        assert_eq!(invalid_field(|c| c.idle_sleep_us = MAX_IDLE_SLEEP_US + 1), "idle_sleep_us");
        assert_eq!(invalid_field(|c| c.timeouts.tcp = 0), "timeouts.tcp");
        assert_eq!(invalid_field(|c| c.timeouts.tcp_fin = MAX_TIMEOUT_S + 1), "timeouts.tcp_fin");
        assert_eq!(invalid_field(|c| c.timeouts.tcp_syn = 0), "timeouts.tcp_syn");
        assert_eq!(invalid_field(|c| c.timeouts.udp = 0), "timeouts.udp");
        assert_eq!(invalid_field(|c| c.fragments.max_datagrams = 0), "fragments.max_datagrams");
        assert_eq!(invalid_field(|c| c.fragments.max_fragments = 1025), "fragments.max_fragments");
        assert_eq!(invalid_field(|c| c.fragments.timeout_ms = 99), "fragments.timeout_ms");
    }

    #[test]
    fn fragment_limits_default_and_parse() {
        let c = Config::from_json(r#"{"ports": [{"name": "p", "device": "net_ring0"}]}"#).expect("defaults");
        assert_eq!(c.fragments, FragmentsConfig { max_datagrams: 64, max_fragments: 45, timeout_ms: 2000 });
        let j = r#"{"ports": [{"name": "p", "device": "net_ring0"}], "fragments": {"timeout_ms": 500}}"#;
        let c = Config::from_json(j).expect("one field set");
        assert_eq!((c.fragments.timeout_ms, c.fragments.max_datagrams), (500, 64));
        let j = r#"{"ports": [{"name": "p", "device": "net_ring0"}], "fragments": {"timeout": 500}}"#;
        assert!(Config::from_json(j).is_err(), "unknown field");
    }

    #[test]
    fn service_rules() {
        assert_eq!(invalid_field(|c| c.services.push(c.services[0].clone())), "services[1]");
        assert_eq!(invalid_field(|c| c.services[0].port = 0), "services[0].port");
        assert_eq!(invalid_field(|c| c.services[0].vip = Ipv4Addr::UNSPECIFIED.into()), "services[0].vip");
        assert_eq!(invalid_field(|c| c.services[0].vip = Ipv4Addr::BROADCAST.into()), "services[0].vip");
        assert_eq!(invalid_field(|c| c.services[0].vip = Ipv4Addr::new(224, 0, 0, 1).into()), "services[0].vip");
        let v6: IpAddr = "2001:db8::100".parse().expect("v6");
        assert_eq!(invalid_field(|c| c.services[0].vip = v6), "services[0].reals[0].address", "IPv4 DR reals behind an IPv6 VIP");
        // IPv6 reals: valid; the SYN proxy still needs NAT or FULLNAT reals.
        let ipv6_service = |c: &mut Config| {
            c.services[0].vip = v6;
            for (i, r) in c.services[0].reals.iter_mut().enumerate() {
                r.address = format!("2001:db8:1::{}", i + 11).parse().expect("v6");
            }
        };
        let mut c = example();
        ipv6_service(&mut c);
        c.validate().expect("an IPv6 DR service");
        assert_eq!(
            invalid_field(|c| {
                ipv6_service(c);
                c.services[0].syn_proxy = SynProxy::On
            }),
            "services[0].syn_proxy"
        );
        // NAT64: an IPv6 VIP, IPv4 real servers through FULLNAT, IPv4 local addresses.
        let mut c = example();
        c.services[0].vip = v6;
        c.services[0].forward = ForwardMode::FullNat;
        c.services[0].local_addresses = vec![Ipv4Addr::new(10, 1, 0, 200).into()];
        c.services[0].reals.iter_mut().for_each(|r| r.forward = None);
        c.validate().expect("a NAT64 service");
        c.services[0].syn_proxy = SynProxy::On;
        match c.validate() {
            Err(e @ ConfigError::Invalid { .. }) => {
                assert!(e.to_string().contains("services[0].syn_proxy") && e.to_string().contains("NAT64"), "{e}")
            }
            other => panic!("the SYN proxy of a NAT64 service: {other:?}"),
        }
        // An IPv6 NAT or FULLNAT service takes the SYN proxy.
        for forward in [ForwardMode::Nat, ForwardMode::FullNat] {
            let mut c = example();
            ipv6_service(&mut c);
            c.services[0].forward = forward;
            c.services[0].reals.iter_mut().for_each(|r| r.forward = None);
            if forward == ForwardMode::FullNat {
                c.services[0].local_addresses = vec!["2001:db8:1::200".parse().expect("v6")];
            }
            c.services[0].syn_proxy = SynProxy::On;
            c.validate().unwrap_or_else(|e| panic!("an IPv6 {forward} service with the SYN proxy: {e}"));
        }
        assert_eq!(invalid_field(|c| c.services[0].vip = "ff02::1".parse().expect("v6")), "services[0].vip");
        // Same VIP and port with another protocol is a different service.
        let mut c = example();
        let mut udp = c.services[0].clone();
        udp.protocol = Protocol::Udp;
        c.services.push(udp);
        assert!(c.validate().is_ok());
    }

    /// `persistence.netmask` by family: IPv4 services a dotted netmask, IPv6
    /// services a prefix length 1..=128 (ipvsadm `-M 64`); absent = one client.
    #[test]
    fn persistence_netmask_fits_the_services_family() {
        let v6: IpAddr = "2001:db8::100".parse().expect("v6");
        let ipv6_service = |c: &mut Config, netmask: Option<PersistenceNetmask>| {
            c.services[0].vip = v6;
            for (i, r) in c.services[0].reals.iter_mut().enumerate() {
                r.address = format!("2001:db8:1::{}", i + 11).parse().expect("v6");
            }
            c.services[0].persistence = Some(PersistenceConfig { timeout: 300, netmask });
        };
        for netmask in [
            None,
            Some(PersistenceNetmask::PrefixLen(64)),
            Some(PersistenceNetmask::PrefixLen(1)),
            Some(PersistenceNetmask::PrefixLen(128)),
        ] {
            let mut c = example();
            ipv6_service(&mut c, netmask);
            c.validate().unwrap_or_else(|e| panic!("{netmask:?}: {e}"));
            let want = match netmask {
                Some(PersistenceNetmask::PrefixLen(n)) => n,
                _ => 128,
            };
            assert_eq!(c.services[0].persistence.as_ref().map(|p| p.prefix_len(v6)), Some(want));
        }
        for bad in [
            PersistenceNetmask::PrefixLen(0),
            PersistenceNetmask::PrefixLen(129),
            PersistenceNetmask::Mask(Ipv4Addr::new(255, 255, 255, 0)),
        ] {
            assert_eq!(invalid_field(|c| ipv6_service(c, Some(bad))), "services[0].persistence.netmask", "{bad:?} on IPv6");
        }
        // IPv4: a contiguous dotted netmask, not a prefix length.
        let ipv4 = |c: &mut Config, netmask| c.services[0].persistence = Some(PersistenceConfig { timeout: 300, netmask: Some(netmask) });
        let mut c = example();
        ipv4(&mut c, PersistenceNetmask::Mask(Ipv4Addr::new(255, 255, 255, 0)));
        c.validate().expect("a /24 netmask");
        assert_eq!(c.services[0].persistence.as_ref().map(|p| p.prefix_len(c.services[0].vip)), Some(24));
        assert_eq!(PersistenceConfig::per_client(300).prefix_len(c.services[0].vip), 32);
        for bad in [
            PersistenceNetmask::PrefixLen(24),
            PersistenceNetmask::Mask(Ipv4Addr::new(255, 0, 255, 0)),
            PersistenceNetmask::Mask(Ipv4Addr::UNSPECIFIED),
        ] {
            assert_eq!(invalid_field(|c| ipv4(c, bad)), "services[0].persistence.netmask", "{bad:?} on IPv4");
        }
        // The JSON forms: a string or an integer; anything else names the field.
        let json = |netmask: &str| {
            EXAMPLE.replacen("\"scheduler\": \"rr\"", &format!("\"scheduler\": \"rr\", \"persistence\": {{\"netmask\": {netmask}}}"), 1)
        };
        assert_ne!(json("64"), EXAMPLE, "the example has an rr service");
        let netmask_of = |text: &str| parse_json::<PersistenceConfig>(text.as_bytes()).expect("parses").netmask;
        assert_eq!(netmask_of(r#"{"netmask": 64}"#), Some(PersistenceNetmask::PrefixLen(64)));
        assert_eq!(netmask_of(r#"{"netmask": "255.255.0.0"}"#), Some(PersistenceNetmask::Mask(Ipv4Addr::new(255, 255, 0, 0))));
        assert_eq!(netmask_of(r#"{"timeout": 5}"#), None);
        // The family is judged by validation, naming the field.
        match Config::from_json(&json("64")) {
            Err(ConfigError::Invalid { field, .. }) => assert_eq!(field, "services[0].persistence.netmask"),
            other => panic!("a prefix length on an IPv4 service: {other:?}"),
        }
        for bad in ["\"/64\"", "300", "-1", "true"] {
            match Config::from_json(&json(bad)) {
                Err(e @ ConfigError::Parse { .. }) => assert_eq!(e.field(), Some("services[0].persistence.netmask"), "{bad}: {e}"),
                other => panic!("{bad}: expected a parse error, got {other:?}"),
            }
        }
        // Serialised as written, absent when absent.
        let text =
            serde_json::to_string(&PersistenceConfig { timeout: 60, netmask: Some(PersistenceNetmask::PrefixLen(48)) }).expect("json");
        assert_eq!(text, r#"{"timeout":60,"netmask":48}"#);
        assert_eq!(serde_json::to_string(&PersistenceConfig::per_client(60)).expect("json"), r#"{"timeout":60}"#);
    }

    /// `sloppy` on an IPv6 service: the same rules as IPv4 (consistent hash, DR/TUN reals).
    #[test]
    fn sloppy_is_accepted_for_ipv6_services_with_the_ipv4_rules() {
        let sloppy6 = |c: &mut Config, scheduler: SchedulerKind| {
            c.services[0].vip = "2001:db8::100".parse().expect("v6");
            for (i, r) in c.services[0].reals.iter_mut().enumerate() {
                r.address = format!("2001:db8:1::{}", i + 11).parse().expect("v6");
                r.forward = Some(ForwardMode::Dr);
            }
            c.services[0].scheduler = scheduler;
            c.services[0].sloppy = true;
        };
        let mut c = example();
        sloppy6(&mut c, SchedulerKind::Maglev);
        c.validate().expect("a sloppy IPv6 maglev DR service");
        assert_eq!(invalid_field(|c| sloppy6(c, SchedulerKind::Wlc)), "services[0].sloppy");
        assert_eq!(
            invalid_field(|c| {
                sloppy6(c, SchedulerKind::Maglev);
                c.services[0].syn_proxy = SynProxy::On;
            }),
            "services[0].syn_proxy",
            "sloppy and the SYN proxy do not mix, for IPv6 too"
        );
    }

    #[test]
    fn real_rules() {
        assert_eq!(invalid_field(|c| c.services[0].reals[1].address = Ipv4Addr::new(10, 1, 0, 11).into()), "services[0].reals[1].address");
        // Duplicate after defaults: port None equals explicit service port.
        assert_eq!(invalid_field(|c| c.services[0].reals[0].address = Ipv4Addr::new(10, 1, 0, 12).into()), "services[0].reals[1].address");
        assert_eq!(invalid_field(|c| c.services[0].reals[0].weight = 65536), "services[0].reals[0].weight");
        assert_eq!(invalid_field(|c| c.services[0].reals[1].port = Some(8080)), "services[0].reals[1].port");
        assert_eq!(invalid_field(|c| c.services[0].reals[1].port = Some(0)), "services[0].reals[1].port");
        assert_eq!(invalid_field(|c| c.services[0].reals[0].address = Ipv4Addr::UNSPECIFIED.into()), "services[0].reals[0].address");
        assert_eq!(invalid_field(|c| c.services[0].reals[0].address = Ipv4Addr::new(239, 1, 1, 1).into()), "services[0].reals[0].address");
        assert_eq!(invalid_field(|c| c.services[0].reals[0].address = Ipv4Addr::new(10, 0, 0, 100).into()), "services[0].reals[0].address");
        assert_eq!(invalid_field(|c| c.services[0].reals[0].address = Ipv4Addr::new(10, 1, 0, 1).into()), "services[0].reals[0].address");
        let v6: IpAddr = "2001:db8::11".parse().expect("v6");
        assert_eq!(invalid_field(|c| c.services[0].reals[0].address = v6), "services[0].reals[0].address", "not the VIP's family");
        // Tunnelled, an IPv4 service may have an IPv6 real server (IPv4 in IPv6).
        let mut c = example();
        c.services[0].reals[0].address = v6;
        c.services[0].reals[0].forward = Some(ForwardMode::Tun);
        assert!(c.validate().is_ok(), "{:?}", c.validate());
        assert_eq!(invalid_field(|c| c.services[0].local_addresses = vec![v6]), "services[0].local_addresses[0]");
        // Weight bounds are inclusive; NAT may change the port.
        let mut c = example();
        c.services[0].reals[0].weight = 0;
        c.services[0].reals[1].weight = 65535;
        c.services[0].reals[1].port = Some(8080);
        c.services[0].reals[1].forward = Some(ForwardMode::Nat);
        assert!(c.validate().is_ok());
        // A NAT service lets every real change the port.
        let mut c = example();
        c.services[0].forward = ForwardMode::Nat;
        c.services[0].reals[1].forward = None;
        c.services[0].reals[1].port = Some(8080);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn thresholds_and_token_rules() {
        assert_eq!(
            invalid_field(|c| {
                c.services[0].reals[0].upper_threshold = 10;
                c.services[0].reals[0].lower_threshold = 11;
            }),
            "services[0].reals[0].lower_threshold"
        );
        // IPVS refuses l_threshold > u_threshold also when u_threshold is 0 (no limit).
        assert_eq!(invalid_field(|c| c.services[0].reals[1].lower_threshold = 5), "services[0].reals[1].lower_threshold");
        // ipvsadm's range is 0..=INT_MAX.
        assert_eq!(invalid_field(|c| c.services[0].reals[0].upper_threshold = 1 << 31), "services[0].reals[0].upper_threshold");
        assert_eq!(invalid_field(|c| c.api.token = Some(" ".into())), "api.token");
        let mut c = example();
        c.services[0].reals[0].upper_threshold = 10;
        c.services[0].reals[0].lower_threshold = 10;
        c.services[0].reals[1].upper_threshold = i32::MAX as u32;
        c.api.token = Some("secret".into());
        assert!(c.validate().is_ok());
        let json = serde_json::to_value(&c).expect("serialize");
        assert_eq!(json["services"][0]["reals"][0]["upper_threshold"], 10);
        assert!(json["services"][0]["reals"][1].get("lower_threshold").is_none(), "0 is left out");
    }

    #[test]
    fn relative_paths_for_a_lone_service() {
        let mut s = example().services[0].clone();
        s.reals[1].weight = 70000;
        let err = s.validate_at("", &[]).expect_err("invalid");
        assert_eq!(err.field(), Some("reals[1].weight"));
    }

    #[test]
    fn sloppy_needs_a_consistent_hash_tcp_service_with_dr_or_tun_reals() {
        let sloppy = |c: &mut Config, scheduler: SchedulerKind| {
            c.services[0].sloppy = true;
            c.services[0].scheduler = scheduler;
        };
        for ok in [SchedulerKind::Maglev, SchedulerKind::Mh] {
            let mut c = example();
            sloppy(&mut c, ok);
            c.services[0].forward = ForwardMode::Dr;
            c.services[0].reals[0].forward = Some(ForwardMode::Tun);
            assert!(c.validate().is_ok(), "{ok}: {:?}", c.validate());
        }
        assert_eq!(invalid_field(|c| sloppy(c, SchedulerKind::Wlc)), "services[0].sloppy");
        assert_eq!(
            invalid_field(|c| {
                sloppy(c, SchedulerKind::Maglev);
                c.services[0].forward = ForwardMode::Dr;
                c.services[0].reals[1].forward = Some(ForwardMode::Nat);
            }),
            "services[0].sloppy"
        );
        assert_eq!(
            invalid_field(|c| {
                sloppy(c, SchedulerKind::Mh);
                c.services[0].forward = ForwardMode::Dr;
                c.services[0].protocol = Protocol::Udp;
            }),
            "services[0].sloppy"
        );
    }

    /// The example's TCP service made NAT, with `syn_proxy` set.
    fn syn_proxy_example(setting: SynProxy) -> Config {
        let mut c = example();
        c.services[0].forward = ForwardMode::Nat;
        c.services[0].reals[1].forward = None;
        c.services[0].syn_proxy = setting;
        c
    }

    #[test]
    fn syn_proxy_parses_defaults_and_round_trips() {
        assert_eq!(example().services[0].syn_proxy, SynProxy::Off);
        let json = serde_json::to_value(example()).expect("serialize");
        assert!(json["services"][0].get("syn_proxy").is_none(), "off is left out");
        for (setting, name) in [(SynProxy::On, "on"), (SynProxy::Auto, "auto")] {
            let c = syn_proxy_example(setting);
            assert!(c.validate().is_ok(), "{name}: {:?}", c.validate());
            let json = serde_json::to_value(&c).expect("serialize");
            assert_eq!(json["services"][0]["syn_proxy"], name);
            assert_eq!(Config::from_json(&c.to_json_pretty()).expect("reads back"), c);
        }
        // FULLNAT reals (per real) are fine too.
        let mut c = syn_proxy_example(SynProxy::On);
        c.services[0].reals[0].forward = Some(ForwardMode::FullNat);
        assert!(c.validate().is_ok(), "{:?}", c.validate());
        // A value other than off/on/auto is a parse error naming the field.
        let text = EXAMPLE.replace(r#""forward": "dr","#, r#""forward": "nat", "syn_proxy": "yes","#);
        match Config::from_json(&text) {
            Err(e @ ConfigError::Parse { .. }) => assert!(e.to_string().contains("services[0].syn_proxy"), "{e}"),
            other => panic!("expected a parse error, got {other:?}"),
        }
    }

    #[test]
    fn syn_proxy_needs_a_tcp_service_with_nat_or_fullnat_reals_and_no_sloppy() {
        let edit = |setting: SynProxy, f: &dyn Fn(&mut Config)| {
            let mut c = syn_proxy_example(setting);
            f(&mut c);
            match c.validate() {
                Err(ConfigError::Invalid { field, message }) => (field, message),
                other => panic!("expected a validation error, got {other:?}"),
            }
        };
        for setting in [SynProxy::On, SynProxy::Auto] {
            let (field, message) = edit(setting, &|c| c.services[0].protocol = Protocol::Udp);
            assert_eq!(field, "services[0].syn_proxy");
            assert!(message.contains("TCP services only"), "{message}");
            // A DR real (its own forward) and a TUN service default.
            let (field, message) = edit(setting, &|c| c.services[0].reals[1].forward = Some(ForwardMode::Dr));
            assert_eq!(field, "services[0].syn_proxy");
            assert!(message.contains("reals[1] is forwarded by dr"), "{message}");
            let (field, message) = edit(setting, &|c| c.services[0].forward = ForwardMode::Tun);
            assert_eq!(field, "services[0].syn_proxy");
            assert!(message.contains("reals[0] is forwarded by tun"), "{message}");
            // sloppy with DR reals passes its own rule, then syn_proxy refuses the pair.
            let (field, message) = edit(setting, &|c| {
                c.services[0].forward = ForwardMode::Dr;
                c.services[0].scheduler = SchedulerKind::Maglev;
                c.services[0].sloppy = true;
            });
            assert_eq!(field, "services[0].syn_proxy");
            assert!(message.contains("sloppy"), "{message}");
            // A DR sorry server would take the service's traffic while the quorum is lost.
            let (field, message) = edit(setting, &|c| {
                c.services[0].health = Some(crate::ha::ServiceHealth {
                    sorry_server: Some(crate::ha::SorryServer {
                        address: Ipv4Addr::new(10, 1, 0, 99).into(),
                        port: None,
                        forward: Some(ForwardMode::Dr),
                    }),
                    ..Default::default()
                });
            });
            assert_eq!(field, "services[0].syn_proxy");
            assert!(message.contains("sorry_server"), "{message}");
        }
        // Off puts no constraint on the service.
        let mut c = syn_proxy_example(SynProxy::Off);
        c.services[0].protocol = Protocol::Udp;
        c.services[0].forward = ForwardMode::Dr;
        assert!(c.validate().is_ok());
    }

    #[test]
    fn syn_flood_defaults_parse_and_ranges() {
        let c = Config::from_json(r#"{"ports": [{"name": "p", "device": "net_ring0"}]}"#).expect("defaults");
        assert_eq!(c.syn_flood, SynFlood::default());
        assert!(serde_json::to_value(&c).expect("serialize").get("syn_flood").is_none(), "defaults are left out");
        let j = r#"{"ports": [{"name": "p", "device": "net_ring0"}], "syn_flood": {"drop_entry": false, "prefix_len": 32}}"#;
        let c = Config::from_json(j).expect("two fields set");
        assert_eq!(c.syn_flood, SynFlood { drop_entry: false, prefix_len: 32, ..SynFlood::default() });
        assert_eq!(Config::from_json(&c.to_json_pretty()).expect("reads back"), c);
        let j = r#"{"ports": [{"name": "p", "device": "net_ring0"}], "syn_flood": {"prefix": 24}}"#;
        match Config::from_json(j) {
            Err(e @ ConfigError::Parse { .. }) => assert!(e.to_string().contains("syn_flood"), "unknown field: {e}"),
            other => panic!("expected a parse error, got {other:?}"),
        }
        assert_eq!(invalid_field(|c| c.syn_flood.pressure_table_percent = 0), "syn_flood.pressure_table_percent");
        assert_eq!(invalid_field(|c| c.syn_flood.pressure_table_percent = 101), "syn_flood.pressure_table_percent");
        assert_eq!(invalid_field(|c| c.syn_flood.pressure_syn_recv_percent = 0), "syn_flood.pressure_syn_recv_percent");
        assert_eq!(invalid_field(|c| c.syn_flood.pressure_syn_recv_percent = 150), "syn_flood.pressure_syn_recv_percent");
        assert_eq!(invalid_field(|c| c.syn_flood.prefix_len = 0), "syn_flood.prefix_len");
        assert_eq!(invalid_field(|c| c.syn_flood.prefix_len = 33), "syn_flood.prefix_len");
        assert_eq!(invalid_field(|c| c.syn_flood.proxy_window_scale = 15), "syn_flood.proxy_window_scale");
        assert_eq!(
            invalid_field(|c| c.syn_flood.syn_recv_timeout_under_pressure = MAX_TIMEOUT_S + 1),
            "syn_flood.syn_recv_timeout_under_pressure"
        );
        // The bounds themselves are accepted.
        let mut c = example();
        c.syn_flood = SynFlood {
            pressure_table_percent: 100,
            pressure_syn_recv_percent: 1,
            drop_entry: true,
            syn_recv_timeout_under_pressure: 0,
            new_conns_per_prefix_per_sec: 0,
            prefix_len: 1,
            prefix_len_ipv6: 128,
            proxy_window_scale: 14,
        };
        assert!(c.validate().is_ok(), "{:?}", c.validate());
        let err = validate_syn_flood(&SynFlood { prefix_len: 40, ..SynFlood::default() }, "").expect_err("relative path");
        assert_eq!(err.field(), Some("prefix_len"));
        let err = validate_syn_flood(&SynFlood { prefix_len_ipv6: 129, ..SynFlood::default() }, "syn_flood").expect_err("too long");
        assert_eq!(err.field(), Some("syn_flood.prefix_len_ipv6"));
        let err = validate_syn_flood(&SynFlood { prefix_len_ipv6: 0, ..SynFlood::default() }, "syn_flood").expect_err("empty");
        assert_eq!(err.field(), Some("syn_flood.prefix_len_ipv6"));
    }
}
