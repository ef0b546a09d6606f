//! The high-availability part of the config schema: health checks, VRRP,
//! connection sync — Keepalived's feature set, in rvs's JSON.
//!
//! These types are shared by the JSON config (see [`crate::config`]), the
//! keepalived.conf importer, the health-check engine and the VRRP engine.
//! Durations are in seconds (fractions allowed where Keepalived allows them).
//! Every object rejects unknown fields.
//!
//! ```json
//! "services": [{ "protocol": "tcp", "vip": "10.0.0.100", "port": 80, "scheduler": "wrr",
//!   "health": { "delay_loop": 2, "quorum": 1, "hysteresis": 0,
//!               "sorry_server": { "address": "10.1.0.99", "port": 80 } },
//!   "reals": [{ "address": "10.1.0.11", "weight": 1,
//!     "health": { "inhibit_on_failure": true,
//!       "checks": [{ "type": "http_get", "connect_timeout": 1, "retry": 2, "delay_before_retry": 0.5,
//!                    "urls": [{ "path": "/health", "status_code": [200] }] }] } }] }],
//! "vrrp": { "instances": [{ "name": "VI_1", "interface": "lan0", "virtual_router_id": 51,
//!   "priority": 150, "advert_int": 1, "virtual_ipaddress": ["10.0.0.100"] }] }
//! ```

use std::net::{IpAddr, Ipv4Addr};

use serde::{Deserialize, Serialize};

fn is_false(b: &bool) -> bool {
    !*b
}

fn default_delay_loop() -> f64 {
    60.0
}
fn default_connect_timeout() -> f64 {
    5.0
}
fn default_retry() -> u32 {
    1
}
fn default_delay_before_retry() -> f64 {
    1.0
}
fn default_status_codes() -> Vec<u16> {
    vec![200]
}
fn default_one() -> u32 {
    1
}
fn default_query_type() -> String {
    "A".to_owned()
}
fn default_priority() -> u8 {
    100
}
fn default_advert_int() -> f64 {
    1.0
}
fn default_vrrp_version() -> u8 {
    2
}
fn default_garp_repeat() -> u32 {
    5
}
fn default_garp_delay() -> f64 {
    5.0
}
fn default_sync_port() -> u16 {
    8848
}

/// Health-check settings of a virtual service (Keepalived `virtual_server` keywords).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceHealth {
    /// Seconds between two checks of a real server (`delay_loop`, default 60).
    #[serde(default = "default_delay_loop")]
    pub delay_loop: f64,
    /// Minimum total weight of healthy real servers (`quorum`, default 1).
    #[serde(default = "default_one")]
    pub quorum: u32,
    /// Damping of quorum changes (`hysteresis`): lost below `quorum - hysteresis`,
    /// regained at `quorum + hysteresis`.
    #[serde(default)]
    pub hysteresis: u32,
    /// Where traffic goes while the quorum is lost (`sorry_server`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sorry_server: Option<SorryServer>,
    /// Real servers start as failed until their first successful check (`alpha`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub alpha: bool,
    /// Run the down notifiers of every real server when the service is removed (`omega`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub omega: bool,
    /// Command run when the quorum is regained (`quorum_up`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum_up: Option<String>,
    /// Command run when the quorum is lost (`quorum_down`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum_down: Option<String>,
}

impl Default for ServiceHealth {
    fn default() -> Self {
        ServiceHealth {
            delay_loop: default_delay_loop(),
            quorum: 1,
            hysteresis: 0,
            sorry_server: None,
            alpha: false,
            omega: false,
            quorum_up: None,
            quorum_down: None,
        }
    }
}

/// The sorry server of a service (`sorry_server IP PORT`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SorryServer {
    /// Its address.
    pub address: IpAddr,
    /// Its port (default: the service's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Forwarding method (default: the service's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward: Option<rvs_dataplane::snapshot::ForwardMode>,
}

/// Health-check settings of a real server (Keepalived `real_server` keywords).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RealHealth {
    /// Checks; all must pass for the real server to be up. None: always up.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<HealthCheck>,
    /// On failure set the weight to 0 instead of removing the server (`inhibit_on_failure`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub inhibit_on_failure: bool,
    /// Command run when the server comes up (`notify_up`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_up: Option<String>,
    /// Command run when the server goes down (`notify_down`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_down: Option<String>,
}

impl RealHealth {
    /// True when nothing is set (so it is left out of the JSON).
    pub fn is_empty(&self) -> bool {
        *self == RealHealth::default()
    }
}

/// One health check of a real server. (Unknown fields are rejected by the
/// tagged [`CheckKind`]; serde cannot combine `deny_unknown_fields` with a
/// flattened enum here.)
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HealthCheck {
    /// What to check.
    #[serde(flatten)]
    pub kind: CheckKind,
    /// Seconds to wait for a connection or answer (`connect_timeout`, default 5).
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: f64,
    /// Failed attempts in a row before the server is declared down (`retry`,
    /// Keepalived's `nb_get_retry`; default 1).
    #[serde(default = "default_retry")]
    pub retry: u32,
    /// Seconds between the attempts of one check (`delay_before_retry`, default 1).
    #[serde(default = "default_delay_before_retry")]
    pub delay_before_retry: f64,
    /// Check this address instead of the real server's (`connect_ip`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_ip: Option<IpAddr>,
    /// Check this port instead of the real server's (`connect_port`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_port: Option<u16>,
    /// Source address of the check (`bind_ip`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_ip: Option<IpAddr>,
}

/// The kinds of check, tagged by `"type"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum CheckKind {
    /// TCP_CHECK: a TCP connection can be opened.
    TcpCheck,
    /// HTTP_GET: every URL answers with an expected status (and digest).
    HttpGet {
        /// The URLs to fetch.
        urls: Vec<UrlCheck>,
        /// Host header (`virtualhost`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        virtualhost: Option<String>,
    },
    /// SSL_GET: as HTTP_GET over TLS (certificates are not verified, as in Keepalived).
    SslGet {
        /// The URLs to fetch.
        urls: Vec<UrlCheck>,
        /// Host header and SNI (`virtualhost`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        virtualhost: Option<String>,
    },
    /// UDP_CHECK: a datagram is sent; with `require_reply` an answer must come
    /// (matching `reply` when set); without, only an ICMP error fails it.
    UdpCheck {
        /// Payload as hex (default empty).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        payload: Option<String>,
        /// An answer is required.
        #[serde(default, skip_serializing_if = "is_false")]
        require_reply: bool,
        /// Expected answer prefix, as hex.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply: Option<String>,
    },
    /// DNS_CHECK: a query is answered (RCODE NOERROR with at least one answer).
    DnsCheck {
        /// Query type (`type`: A, NS, CNAME, SOA, MX, TXT, AAAA; default A).
        #[serde(default = "default_query_type")]
        query_type: String,
        /// Name to resolve.
        name: String,
    },
    /// MISC_CHECK: a command; exit 0 = up. With `dynamic`, an exit code 2..=255
    /// sets the weight to code − 2 (Keepalived's `misc_dynamic`).
    MiscCheck {
        /// The command line (`misc_path`).
        path: String,
        /// Seconds before the command is killed (`misc_timeout`; default connect_timeout).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout: Option<f64>,
        /// Exit codes set the weight.
        #[serde(default, skip_serializing_if = "is_false")]
        dynamic: bool,
    },
}

/// One URL of an HTTP_GET / SSL_GET check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UrlCheck {
    /// Path (`path`).
    pub path: String,
    /// Accepted status codes (`status_code`; default 200).
    #[serde(default = "default_status_codes")]
    pub status_code: Vec<u16>,
    /// MD5 of the body, lowercase hex (`digest`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

/// VRRP: instances, sync groups and track scripts (Keepalived `vrrp_*`).
/// An instance with IPv6 `virtual_ipaddress` runs VRRPv3 over IPv6 (RFC 5798:
/// adverts from the interface's link-local address to ff02::12, or to IPv6
/// unicast peers; unsolicited neighbour advertisements instead of gratuitous
/// ARP, on the `garp_*` schedule).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VrrpConfig {
    /// VRRP instances.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instances: Vec<VrrpInstance>,
    /// Sync groups: instances that change state together.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sync_groups: Vec<VrrpSyncGroup>,
    /// Scripts instances can track.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scripts: Vec<TrackScript>,
}

impl VrrpConfig {
    /// True when nothing is configured.
    pub fn is_empty(&self) -> bool {
        self.instances.is_empty() && self.sync_groups.is_empty() && self.scripts.is_empty()
    }
}

/// Initial state of a VRRP instance.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum VrrpInitialState {
    /// Start as master (Keepalived still waits for adverts unless priority 255).
    Master,
    /// Start as backup.
    #[default]
    Backup,
}

/// One VRRP instance (`vrrp_instance NAME { ... }`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VrrpInstance {
    /// Instance name.
    pub name: String,
    /// Initial state (`state`).
    #[serde(default)]
    pub state: VrrpInitialState,
    /// The dataplane port it runs on (`interface`, a port name).
    pub interface: String,
    /// Virtual router id 1..=255 (`virtual_router_id`).
    pub virtual_router_id: u8,
    /// Priority 1..=255 (`priority`, default 100; 255 = address owner).
    #[serde(default = "default_priority")]
    pub priority: u8,
    /// Seconds between adverts (`advert_int`, default 1; v3 allows centiseconds).
    #[serde(default = "default_advert_int")]
    pub advert_int: f64,
    /// VRRP version 2 or 3 (`version`, default 2).
    #[serde(default = "default_vrrp_version")]
    pub version: u8,
    /// A higher-priority backup does not take over from a live master (`nopreempt`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub nopreempt: bool,
    /// Seconds to wait before preempting (`preempt_delay`).
    #[serde(default)]
    pub preempt_delay: f64,
    /// v2 PASS authentication password (`authentication { auth_type PASS auth_pass ... }`), at most 8 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_pass: Option<String>,
    /// The virtual addresses (`virtual_ipaddress`), all of one family: IPv4
    /// (VRRP v2 or v3 over IPv4) or IPv6 (VRRPv3 over IPv6, `version` 3).
    /// Mixing families is an error: use one instance per family.
    pub virtual_ipaddress: Vec<IpAddr>,
    /// Source address of adverts (`unicast_src_ip`; default the interface's
    /// first IPv4 address, or its IPv6 link-local address for an IPv6 instance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unicast_src_ip: Option<IpAddr>,
    /// Unicast peers (`unicast_peer`), of the instance's family; empty =
    /// multicast to 224.0.0.18 (IPv4) or ff02::12 (IPv6).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unicast_peer: Vec<IpAddr>,
    /// Ports whose link going down puts the instance in FAULT (`track_interface`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub track_interface: Vec<String>,
    /// Scripts tracked (`track_script`, by name).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub track_script: Vec<String>,
    /// Seconds after becoming master before the second round of gratuitous ARP (`garp_master_delay`, default 5).
    #[serde(default = "default_garp_delay")]
    pub garp_master_delay: f64,
    /// Gratuitous ARPs per round (`garp_master_repeat`, default 5).
    #[serde(default = "default_garp_repeat")]
    pub garp_master_repeat: u32,
    /// Seconds between periodic gratuitous ARP rounds while master (`garp_master_refresh`, 0 = off).
    #[serde(default)]
    pub garp_master_refresh: f64,
    /// Gratuitous ARPs per VIP a master sends when it hears a lower-priority
    /// advert (`garp_lower_prio_repeat`; default `garp_master_repeat`, 0 = none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub garp_lower_prio_repeat: Option<u32>,
    /// Seconds before the second round of those (`garp_lower_prio_delay`;
    /// default `garp_master_delay`, 0 = no second round).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub garp_lower_prio_delay: Option<f64>,
    /// A master that yields to a higher-priority advert first sends one advert
    /// of its own (`higher_prio_send_advert`), so that the new master hears a
    /// lower-priority claim and re-announces its VIPs with gratuitous ARPs:
    /// after a split brain heals, the clients follow the true master. Default
    /// on in rvs (off in Keepalived); `false` for Keepalived's behaviour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub higher_prio_send_advert: Option<bool>,
    /// Command run on becoming master (`notify_master`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_master: Option<String>,
    /// Command run on becoming backup (`notify_backup`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_backup: Option<String>,
    /// Command run on entering fault (`notify_fault`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_fault: Option<String>,
    /// Command run on every change with `INSTANCE NAME STATE PRIORITY` appended (`notify`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<String>,
}

/// A sync group (`vrrp_sync_group NAME { group { ... } }`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VrrpSyncGroup {
    /// Group name.
    pub name: String,
    /// Instance names.
    pub group: Vec<String>,
    /// Commands as for instances.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_master: Option<String>,
    /// Command on backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_backup: Option<String>,
    /// Command on fault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_fault: Option<String>,
}

/// A script instances can track (`vrrp_script NAME { script ... }`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackScript {
    /// Script name.
    pub name: String,
    /// Command line (`script`).
    pub script: String,
    /// Seconds between runs (`interval`, default 1).
    #[serde(default = "default_advert_int")]
    pub interval: f64,
    /// Seconds before the run is killed (`timeout`, default: interval).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<f64>,
    /// Priority change while the script succeeds (>0) or fails (<0) (`weight`); 0 = failure means FAULT.
    #[serde(default)]
    pub weight: i32,
    /// Successes in a row to be up (`rise`, default 1).
    #[serde(default = "default_one")]
    pub rise: u32,
    /// Failures in a row to be down (`fall`, default 1).
    #[serde(default = "default_one")]
    pub fall: u32,
}

/// The shared secret of connection sync (`sync.key`). It is written to the
/// config file like any other field, but never shown by `Debug` (so never
/// logged) and left out of `GET /api/v1/config`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SyncKey(String);

impl SyncKey {
    /// Wraps a key.
    pub fn new(key: impl Into<String>) -> Self {
        SyncKey(key.into())
    }

    /// The key's bytes (for the HMAC only).
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True for an empty key.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for SyncKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SyncKey(<redacted>)")
    }
}

/// Connection synchronisation between directors (IPVS `--start-daemon`, keepalived `lvs_sync_daemon`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncConfig {
    /// Follow this VRRP instance: its master sends, its backups receive.
    /// Required to run sync; only a base config for `--keepalived` (whose
    /// `lvs_sync_daemon` names the instance) may leave it out and give just `key`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub instance: String,
    /// UDP port of the sync stream (default 8848, IPVS's).
    #[serde(default = "default_sync_port")]
    pub port: u16,
    /// Peers to send to (unicast); empty = multicast 224.0.0.81 (IPVS's group).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<Ipv4Addr>,
    /// Sync id: only messages with this id are accepted (`syncid`, default 0).
    #[serde(default)]
    pub sync_id: u8,
    /// Shared key authenticating every sync datagram (HMAC-SHA256), at least
    /// 16 bytes; the environment variable `RVS_SYNC_KEY`, when set and not
    /// empty, wins. Required to run sync. Never shown by `GET /api/v1/config`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<SyncKey>,
}
