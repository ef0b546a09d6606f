//! Connection synchronisation between directors (IPVS's sync daemon, done the
//! rvs way): the VRRP master streams new and changed connections to the
//! backups, which install them on their workers, so established connections
//! survive a failover in every forwarding mode (FULLNAT's local address and
//! port included). A director that starts or becomes backup asks the master for
//! a bulk resync of every connection it has.
//!
//! # Trust
//!
//! Sync trusts only holders of the shared key (`sync.key`, or the environment
//! variable `RVS_SYNC_KEY`, which wins; required, at least 16 bytes):
//!
//! * the daemon binds the sync instance's own address (its VRRP instance's
//!   `unicast_src_ip`, else the first address of the port it runs on), never
//!   0.0.0.0; with multicast it also receives the group on that interface;
//! * with unicast `peers`, only datagrams from `PEER:port` (a configured peer's
//!   address and the sync port) are looked at; with multicast (no peers) the
//!   HMAC is the only gate;
//! * every datagram carries an HMAC-SHA256 over all its other bytes, checked in
//!   constant time;
//! * replays are refused: a datagram whose timestamp is more than
//!   [`MAX_SKEW_MS`] away from the receiver's clock is stale (directors' clocks
//!   must agree within a minute: run NTP), and per sender address the receiver
//!   keeps the newest (epoch, sequence) and a [`REPLAY_WINDOW`]-datagram bitmap
//!   below it (IPsec-style): a sequence seen before, one older than the window,
//!   or an epoch older than the sender's current one is refused. The epoch is
//!   the sender's start time, so a restarted sender (sequence from 0 again) is
//!   accepted;
//! * a master answers at most one bulk resync request per requesting address
//!   per [`BULK_INTERVAL`], and only authenticated ones.
//!
//! Everything refused is dropped and counted by reason ([`Reason`]); decoding
//! works on byte slices and never panics.
//!
//! # Wire format (version 4)
//!
//! UDP datagrams from `LOCAL:port` (default port 8848) to the configured peers'
//! `PEER:port`, or to the multicast group 224.0.0.81. All integers big-endian.
//!
//! ```text
//! header  (32 bytes): "RVSS" | version u8 = 4 | kind u8 | sync id u8 | count u8
//!                     | epoch u64 (sender start, ms since the Unix epoch)
//!                     | sequence u64 (per sender epoch, from 0)
//!                     | timestamp u64 (send time, ms since the Unix epoch)
//!   kind 1 = connections (count entries follow), 2 = bulk resync request (no entries),
//!   3 = connections with an IPv6 address (count IPv6 entries follow)
//! entry   (44 bytes): protocol u8 (6 tcp, 17 udp) | forward u8 (0 dr, 1 nat, 2 tun, 3 fullnat)
//!                     | state u8 (IPVS state number) | flags u8 (bit 0: local address present,
//!                       bit 1: a persistence template: client = the client network, port 0)
//!                     | client ip4 port2 | vip ip4 port2 | real ip4 port2 | local ip4 port2
//!                     | FULLNAT sequence delta u32 | seconds left u32
//!                     | SYN proxy phase u8 (0 not proxied, 2 open) | server wscale u8
//!                     | client view wscale u8 | inbound shift u8 | SYN proxy delta u32
//! entry6  (96 bytes): as an entry, with every address in 16 bytes (IPv4 ones,
//!                     a NAT64 connection's real server and local address,
//!                     IPv4-mapped); its SYN proxy fields as an entry's
//! trailer (32 bytes): HMAC-SHA256(key, every byte before the trailer)
//! ```
//!
//! The SYN proxy fields carry a proxied connection's translation
//! ([`rvs_dataplane::synproxy::Translation`]): the backup translates its
//! packets exactly as the master did. They are all zero for a connection
//! that is not proxied; a scale over 14, another phase, or proxy fields on a
//! connection that cannot be proxied (not TCP, not NAT or FULLNAT) make the
//! datagram `malformed`. A proxied connection whose handshake with the real
//! server is still in progress (at most 3 s) is never sent, in updates or
//! bulk resyncs: the master holds its client's packets, which cannot be
//! synced. Such a connection does not survive a failover (the new master
//! cannot verify the old one's cookies; see `deploy/docs/ha.md`).
//!
//! # Versions
//!
//! A receiver also decodes version 3 datagrams ([`PREVIOUS_VERSION`]: entries
//! of 36 bytes, the first 36 of version 4's, no SYN proxy fields), so an old
//! master syncing to an upgraded backup keeps working during a rolling
//! upgrade. An old (version 3) backup refuses version 4 datagrams with its
//! version error, counted as `version`: upgrade the backups first.
//!
//! A receiver checks, in order: the sender (`not_peer`), the length and magic
//! (`malformed`), the version (`version`), the HMAC (`bad_auth`), the sync id
//! (`sync_id`), the kind, count and entries (`malformed`; an unknown kind is
//! counted there too), then the timestamp and sequence (`replay`).
//! Version 1 (no authentication) and 2 (no FULLNAT sequence delta) are no
//! longer spoken or read.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use hmac::{Hmac, Mac};
use rvs_dataplane::conn::TcpState;
use rvs_dataplane::snapshot::{ForwardMode, Protocol};
use rvs_dataplane::stats::ConnInfo;
use rvs_dataplane::synproxy::seq::{Phase, Translation};
use sha2::Sha256;

use crate::config::Config;
use crate::ha::{SyncConfig, SyncKey};

/// Magic at the start of every datagram.
pub const MAGIC: [u8; 4] = *b"RVSS";
/// Format version sent.
pub const VERSION: u8 = 4;
/// The previous format version, still decoded (no SYN proxy fields).
pub const PREVIOUS_VERSION: u8 = 3;
/// Multicast group used when no peers are configured (IPVS's).
pub const GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 81);
/// Bytes of the header.
pub const HEADER_LEN: usize = 32;
/// Bytes of one entry.
pub const ENTRY_LEN: usize = 44;
/// Bytes of one entry of a [`PREVIOUS_VERSION`] datagram.
pub const PREVIOUS_ENTRY_LEN: usize = 36;
/// Bytes of the HMAC trailer.
pub const MAC_LEN: usize = 32;
/// Entries per datagram (keeps datagrams under 1400 bytes).
pub const MAX_ENTRIES: usize = 30;
/// The environment variable holding the sync key; it wins over `sync.key`.
pub const KEY_ENV: &str = "RVS_SYNC_KEY";
/// Shortest accepted key, in bytes.
pub const MIN_KEY_LEN: usize = 16;
/// Largest accepted distance between a datagram's timestamp and the receiver's clock.
pub const MAX_SKEW_MS: u64 = 60_000;
/// Datagrams below a sender's newest sequence that are still accepted (once each).
pub const REPLAY_WINDOW: u64 = 64;
/// A master answers one bulk request per requesting address per this interval.
pub const BULK_INTERVAL: Duration = Duration::from_secs(1);
/// Senders (addresses) a receiver keeps replay and rate state for; datagrams
/// from further authenticated senders are refused as `not_peer`.
pub const MAX_SENDERS: usize = 256;

const KIND_CONNS: u8 = 1;
const KIND_BULK_REQUEST: u8 = 2;
/// Connections with an IPv6 address (IPv6 and NAT64 ones), in entries of
/// [`ENTRY6_LEN`] bytes: every address in 16 bytes, IPv4 ones IPv4-mapped.
const KIND_CONNS6: u8 = 3;
/// Entry flag: a persistence template (client = the client network, port 0).
const FLAG_TEMPLATE: u8 = 2;
/// Bytes of an IPv6 entry: flags (4), client, VIP, real, local (18 each),
/// sequence shift (4), expiry (4), SYN proxy fields (8, as an IPv4 entry's).
pub const ENTRY6_LEN: usize = 4 + 4 * 18 + 4 + 4 + 8;
/// IPv6 entries per datagram (it stays under 1400 bytes).
pub const MAX_ENTRIES6: usize = 13;

type HmacSha256 = Hmac<Sha256>;

/// A decoded sync message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// New or changed connections.
    Conns(Vec<ConnInfo>),
    /// "Send me everything you have."
    BulkRequest,
}

/// The replay-protection fields of a datagram's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// The sender's start time (ms since the Unix epoch).
    pub epoch: u64,
    /// The datagram's number within the epoch.
    pub sequence: u64,
    /// Send time (ms since the Unix epoch).
    pub timestamp: u64,
}

/// An authenticated, decoded datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datagram {
    /// Its header's epoch, sequence and timestamp.
    pub stamp: Stamp,
    /// What it says.
    pub message: Message,
}

/// Why a datagram was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    /// Not from a configured peer (address and sync port).
    #[error("sync datagram from {0}, which is not a configured peer")]
    NotPeer(SocketAddr),
    /// Too short, wrong magic, a count that does not fit, a bad entry.
    #[error("malformed sync datagram: {0}")]
    Malformed(&'static str),
    /// Another format version.
    #[error("sync version {0} is not supported (this director sends version {VERSION} and also reads {PREVIOUS_VERSION})")]
    Version(u8),
    /// The HMAC does not match (another key, or altered bytes).
    #[error("sync datagram fails authentication (another sync.key, or altered)")]
    BadAuth,
    /// Another sync id.
    #[error("sync id {got} is not ours ({want})")]
    SyncId {
        /// Id in the datagram.
        got: u8,
        /// Our id.
        want: u8,
    },
    /// A kind this version does not know.
    #[error("unknown sync message kind {0}")]
    Kind(u8),
    /// Stale, duplicate or from an older run of its sender.
    #[error("sync datagram replayed: {0}")]
    Replay(&'static str),
    /// A bulk request within [`BULK_INTERVAL`] of the last one answered.
    #[error("bulk resync request from {0} ignored: one per second")]
    BulkRateLimited(IpAddr),
}

impl SyncError {
    /// The counter this refusal goes to.
    pub fn reason(&self) -> Reason {
        match self {
            SyncError::NotPeer(_) => Reason::NotPeer,
            SyncError::Malformed(_) | SyncError::Kind(_) => Reason::Malformed,
            SyncError::Version(_) => Reason::Version,
            SyncError::BadAuth => Reason::BadAuth,
            SyncError::SyncId { .. } => Reason::SyncId,
            SyncError::Replay(_) => Reason::Replay,
            SyncError::BulkRateLimited(_) => Reason::BulkRateLimited,
        }
    }
}

/// Why datagrams are dropped, as counted (`rejected` in `GET /api/v1/ha`,
/// `rvs_sync_rejected_total{reason=...}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Not from a configured peer.
    NotPeer,
    /// Wrong HMAC.
    BadAuth,
    /// Stale or duplicate.
    Replay,
    /// Unparseable (or an unknown kind).
    Malformed,
    /// Another version.
    Version,
    /// Another sync id.
    SyncId,
    /// A bulk request over the rate.
    BulkRateLimited,
}

impl Reason {
    /// Every reason, in counter order.
    pub const ALL: [Reason; 7] =
        [Reason::NotPeer, Reason::BadAuth, Reason::Replay, Reason::Malformed, Reason::Version, Reason::SyncId, Reason::BulkRateLimited];

    /// The label value.
    pub fn name(self) -> &'static str {
        match self {
            Reason::NotPeer => "not_peer",
            Reason::BadAuth => "bad_auth",
            Reason::Replay => "replay",
            Reason::Malformed => "malformed",
            Reason::Version => "version",
            Reason::SyncId => "sync_id",
            Reason::BulkRateLimited => "bulk_rate_limited",
        }
    }
}

/// What the sync daemon did, for `GET /api/v1/ha` and `/metrics`.
#[derive(Debug, Default)]
pub struct SyncCounters {
    received: AtomicU64,
    sent: AtomicU64,
    send_errors: AtomicU64,
    installed: AtomicU64,
    bulk_answered: AtomicU64,
    rejected: [AtomicU64; 7],
}

impl SyncCounters {
    fn bump(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts a dropped datagram.
    pub fn reject(&self, reason: Reason) {
        let i = Reason::ALL.iter().position(|r| *r == reason).unwrap_or(0);
        Self::bump(&self.rejected[i], 1);
    }

    /// Datagrams refused for `reason` so far.
    pub fn rejected(&self, reason: Reason) -> u64 {
        let i = Reason::ALL.iter().position(|r| *r == reason).unwrap_or(0);
        self.rejected[i].load(Ordering::Relaxed)
    }

    /// `{"datagrams": {"received", "sent"}, "send_errors", "installed",
    /// "bulk_answered", "rejected": {REASON: n, ...}}`.
    pub fn to_json(&self) -> serde_json::Value {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let rejected: serde_json::Map<String, serde_json::Value> =
            Reason::ALL.iter().map(|r| (r.name().to_owned(), self.rejected(*r).into())).collect();
        serde_json::json!({
            "datagrams": { "received": load(&self.received), "sent": load(&self.sent) },
            "send_errors": load(&self.send_errors),
            "installed": load(&self.installed),
            "bulk_answered": load(&self.bulk_answered),
            "rejected": rejected,
        })
    }
}

/// The keyed HMAC, prepared once.
#[derive(Clone)]
pub struct Auth {
    mac: HmacSha256,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Auth(<key>)")
    }
}

impl Auth {
    /// Prepares the HMAC of `key` (HMAC takes keys of any length; the error
    /// is the crate's signature only).
    pub fn new(key: &SyncKey) -> Result<Auth, SyncSetupError> {
        let mac = <HmacSha256 as Mac>::new_from_slice(key.as_bytes()).map_err(|_| SyncSetupError::KeyRejected)?;
        Ok(Auth { mac })
    }

    fn sign(&self, data: &[u8]) -> [u8; MAC_LEN] {
        self.mac.clone().chain_update(data).finalize().into_bytes().into()
    }

    fn verify(&self, data: &[u8], tag: &[u8]) -> bool {
        self.mac.clone().chain_update(data).verify_slice(tag).is_ok()
    }
}

/// Numbers a sender's datagrams: its epoch and the next sequence.
#[derive(Debug)]
pub struct Stamper {
    epoch: u64,
    next: AtomicU64,
}

impl Stamper {
    /// A sender that started at `epoch` (ms since the Unix epoch).
    pub fn new(epoch: u64) -> Self {
        Stamper { epoch, next: AtomicU64::new(0) }
    }

    /// The stamp of the next datagram, sent at `now_ms`.
    pub fn stamp(&self, now_ms: u64) -> Stamp {
        Stamp { epoch: self.epoch, sequence: self.next.fetch_add(1, Ordering::Relaxed), timestamp: now_ms }
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn forward_code(f: ForwardMode) -> u8 {
    match f {
        ForwardMode::Dr => 0,
        ForwardMode::Nat => 1,
        ForwardMode::Tun => 2,
        ForwardMode::FullNat => 3,
    }
}

fn forward_from(code: u8) -> Option<ForwardMode> {
    Some(match code {
        0 => ForwardMode::Dr,
        1 => ForwardMode::Nat,
        2 => ForwardMode::Tun,
        3 => ForwardMode::FullNat,
        _ => return None,
    })
}

/// Writes an IPv4 socket address ([`syncable`] lets only IPv4 connections here;
/// anything else is written as 0.0.0.0:0).
fn put_sock(buf: &mut Vec<u8>, s: SocketAddr) {
    let s = match s {
        SocketAddr::V4(s) => s,
        SocketAddr::V6(_) => SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
    };
    buf.extend_from_slice(&s.ip().octets());
    buf.extend_from_slice(&s.port().to_be_bytes());
}

fn get_sock(b: &[u8]) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(b[0], b[1], b[2], b[3]), u16::from_be_bytes([b[4], b[5]])))
}

/// Encodes `msg` into authenticated datagrams, stamped by `stamper` at `now_ms`.
pub fn encode(auth: &Auth, sync_id: u8, msg: &Message, stamper: &Stamper, now_ms: u64) -> Vec<Vec<u8>> {
    let datagram = |kind: u8, entries: &[ConnInfo]| {
        let mut b = Vec::with_capacity(HEADER_LEN + entries.len() * ENTRY6_LEN + MAC_LEN);
        let stamp = stamper.stamp(now_ms);
        b.extend_from_slice(&MAGIC);
        b.extend_from_slice(&[VERSION, kind, sync_id, entries.len() as u8]);
        b.extend_from_slice(&stamp.epoch.to_be_bytes());
        b.extend_from_slice(&stamp.sequence.to_be_bytes());
        b.extend_from_slice(&stamp.timestamp.to_be_bytes());
        for c in entries {
            let state = TcpState::from_name(&c.state).unwrap_or(TcpState::None) as u8;
            let flags = u8::from(c.local.is_some()) | u8::from(c.template) << 1;
            b.extend_from_slice(&[c.protocol.ip_proto(), forward_code(c.forward), state, flags]);
            let none = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
            let put = if kind == KIND_CONNS6 { put_sock6 } else { put_sock };
            put(&mut b, c.client);
            put(&mut b, c.vip);
            put(&mut b, c.real);
            put(&mut b, c.local.unwrap_or(none));
            b.extend_from_slice(&c.seq_delta.to_be_bytes());
            let secs = u32::try_from(c.expires_ms / 1000).unwrap_or(u32::MAX);
            b.extend_from_slice(&secs.to_be_bytes());
            let t = c.syn_proxy.unwrap_or_default();
            b.extend_from_slice(&[t.phase as u8, t.server_wscale, t.client_view_wscale, t.inbound_shift]);
            b.extend_from_slice(&t.delta.to_be_bytes());
        }
        let tag = auth.sign(&b);
        b.extend_from_slice(&tag);
        b
    };
    match msg {
        Message::BulkRequest => vec![datagram(KIND_BULK_REQUEST, &[])],
        Message::Conns(conns) => {
            let (v4, v6): (Vec<ConnInfo>, Vec<ConnInfo>) = conns.iter().filter(|c| syncable(c)).cloned().partition(all_ipv4);
            let v4s = v4.chunks(MAX_ENTRIES).map(|chunk| datagram(KIND_CONNS, chunk));
            v4s.chain(v6.chunks(MAX_ENTRIES6).map(|chunk| datagram(KIND_CONNS6, chunk))).collect()
        }
    }
}

/// Whether a connection is sent at all: not while its SYN proxy handshake
/// is in progress (the master holds its client's packets; a backup could
/// not complete it). Bulk resyncs list every connection, so they are
/// filtered here too.
fn syncable(c: &ConnInfo) -> bool {
    c.syn_proxy.is_none_or(|t| t.phase == Phase::Open)
}

/// Whether every address of a connection is IPv4 (an IPv4 entry carries
/// it; others go in IPv6 entries).
fn all_ipv4(c: &ConnInfo) -> bool {
    [Some(c.client), Some(c.vip), Some(c.real), c.local].into_iter().flatten().all(|a| a.is_ipv4())
}

/// Writes a socket address in 18 bytes: IPv6, or IPv4-mapped.
fn put_sock6(buf: &mut Vec<u8>, s: SocketAddr) {
    let ip = match s.ip() {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    };
    buf.extend_from_slice(&ip.octets());
    buf.extend_from_slice(&s.port().to_be_bytes());
}

/// Reads an 18-byte socket address; an IPv4-mapped one is IPv4.
fn get_sock6(b: &[u8]) -> SocketAddr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[..16]);
    let ip = std::net::Ipv6Addr::from(a);
    let ip = ip.to_ipv4_mapped().map_or(IpAddr::V6(ip), IpAddr::V4);
    SocketAddr::new(ip, u16::from_be_bytes([b[16], b[17]]))
}

/// The SYN proxy fields of a version 4 IPv4 or IPv6 entry (its last 8 bytes), checked
/// against the entry's protocol and forwarding method.
fn proxy_from(e: &[u8], protocol: Protocol, forward: ForwardMode) -> Result<Option<Translation>, SyncError> {
    let delta = u32::from_be_bytes([e[4], e[5], e[6], e[7]]);
    let t = match e[0] {
        0 if e[1..8].iter().all(|b| *b == 0) => return Ok(None),
        0 => return Err(SyncError::Malformed("SYN proxy fields on a connection that is not proxied")),
        1 => return Err(SyncError::Malformed("a SYN proxy handshake in progress is never synced")),
        2 => Translation { delta, phase: Phase::Open, server_wscale: e[1], client_view_wscale: e[2], inbound_shift: e[3] },
        _ => return Err(SyncError::Malformed("unknown SYN proxy phase")),
    };
    if !t.scales_valid() {
        return Err(SyncError::Malformed("SYN proxy window scale over 14"));
    }
    if protocol != Protocol::Tcp || !matches!(forward, ForwardMode::Nat | ForwardMode::FullNat) {
        return Err(SyncError::Malformed("SYN proxy on a connection that is not TCP NAT or FULLNAT"));
    }
    Ok(Some(t))
}

fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

/// Authenticates and decodes one datagram (no sender or replay checks: see [`Gate`]).
pub fn decode(buf: &[u8], auth: &Auth, sync_id: u8) -> Result<Datagram, SyncError> {
    if buf.len() < HEADER_LEN + MAC_LEN || buf[..4] != MAGIC {
        return Err(SyncError::Malformed("no RVSS header"));
    }
    let entry_len = match buf[4] {
        VERSION => ENTRY_LEN,
        PREVIOUS_VERSION => PREVIOUS_ENTRY_LEN,
        other => return Err(SyncError::Version(other)),
    };
    let (signed, tag) = buf.split_at(buf.len() - MAC_LEN);
    if !auth.verify(signed, tag) {
        return Err(SyncError::BadAuth);
    }
    if buf[6] != sync_id {
        return Err(SyncError::SyncId { got: buf[6], want: sync_id });
    }
    let stamp = Stamp { epoch: be_u64(&buf[8..16]), sequence: be_u64(&buf[16..24]), timestamp: be_u64(&buf[24..32]) };
    let count = usize::from(buf[7]);
    let body = &signed[HEADER_LEN..];
    let message = match buf[5] {
        KIND_BULK_REQUEST if body.is_empty() => Message::BulkRequest,
        KIND_BULK_REQUEST => return Err(SyncError::Malformed("a bulk request has no entries")),
        KIND_CONNS6 => {
            if buf[4] != VERSION || body.len() != count * ENTRY6_LEN {
                return Err(SyncError::Malformed("length does not match the entry count"));
            }
            let mut conns = Vec::with_capacity(count);
            for e in body.chunks_exact(ENTRY6_LEN) {
                let protocol = Protocol::from_ip_proto(e[0]).ok_or(SyncError::Malformed("unknown protocol"))?;
                let forward = forward_from(e[1]).ok_or(SyncError::Malformed("unknown forwarding method"))?;
                let state = state_from(e[2]).ok_or(SyncError::Malformed("unknown state"))?;
                let at = |i: usize| 4 + 18 * i;
                let local = (e[3] & 1 == 1).then(|| get_sock6(&e[at(3)..at(4)]));
                let tail = &e[at(4)..];
                let syn_proxy = proxy_from(&tail[8..16], protocol, forward)?;
                conns.push(ConnInfo {
                    worker: 0,
                    protocol,
                    client: get_sock6(&e[at(0)..at(1)]),
                    vip: get_sock6(&e[at(1)..at(2)]),
                    real: get_sock6(&e[at(2)..at(3)]),
                    local,
                    forward,
                    state: state.name().into(),
                    expires_ms: u64::from(u32::from_be_bytes([tail[4], tail[5], tail[6], tail[7]])) * 1000,
                    template: e[3] & FLAG_TEMPLATE != 0,
                    seq_delta: u32::from_be_bytes([tail[0], tail[1], tail[2], tail[3]]),
                    syn_proxy,
                });
            }
            Message::Conns(conns)
        }
        KIND_CONNS => {
            if body.len() != count * entry_len {
                return Err(SyncError::Malformed("length does not match the entry count"));
            }
            let mut conns = Vec::with_capacity(count);
            for e in body.chunks_exact(entry_len) {
                let protocol = Protocol::from_ip_proto(e[0]).ok_or(SyncError::Malformed("unknown protocol"))?;
                let forward = forward_from(e[1]).ok_or(SyncError::Malformed("unknown forwarding method"))?;
                let state = state_from(e[2]).ok_or(SyncError::Malformed("unknown state"))?;
                let local = (e[3] & 1 == 1).then(|| get_sock(&e[22..28]));
                let syn_proxy = match e.get(PREVIOUS_ENTRY_LEN..) {
                    Some(proxy) if proxy.len() == ENTRY_LEN - PREVIOUS_ENTRY_LEN => proxy_from(proxy, protocol, forward)?,
                    _ => None,
                };
                conns.push(ConnInfo {
                    worker: 0,
                    protocol,
                    client: get_sock(&e[4..10]),
                    vip: get_sock(&e[10..16]),
                    real: get_sock(&e[16..22]),
                    local,
                    forward,
                    state: state.name().into(),
                    expires_ms: u64::from(u32::from_be_bytes([e[32], e[33], e[34], e[35]])) * 1000,
                    template: e[3] & FLAG_TEMPLATE != 0,
                    seq_delta: u32::from_be_bytes([e[28], e[29], e[30], e[31]]),
                    syn_proxy,
                });
            }
            Message::Conns(conns)
        }
        other => return Err(SyncError::Kind(other)),
    };
    Ok(Datagram { stamp, message })
}

/// Per sender: its current epoch, the newest sequence accepted and which of
/// the [`REPLAY_WINDOW`] sequences below it were seen (bit i = newest − i).
#[derive(Clone, Copy, Debug)]
struct ReplayWindow {
    epoch: u64,
    top: u64,
    seen: u64,
}

impl ReplayWindow {
    fn new(stamp: Stamp) -> Self {
        ReplayWindow { epoch: stamp.epoch, top: stamp.sequence, seen: 1 }
    }

    /// Records `stamp` if it is new.
    fn accept(&mut self, stamp: Stamp) -> Result<(), SyncError> {
        if stamp.epoch < self.epoch {
            return Err(SyncError::Replay("from an earlier run of the sender"));
        }
        if stamp.epoch > self.epoch {
            *self = ReplayWindow::new(stamp);
            return Ok(());
        }
        if stamp.sequence > self.top {
            let shift = stamp.sequence - self.top;
            self.seen = if shift >= REPLAY_WINDOW { 1 } else { (self.seen << shift) | 1 };
            self.top = stamp.sequence;
            return Ok(());
        }
        let behind = self.top - stamp.sequence;
        if behind >= REPLAY_WINDOW {
            return Err(SyncError::Replay("sequence older than the replay window"));
        }
        if self.seen & (1 << behind) != 0 {
            return Err(SyncError::Replay("sequence seen before"));
        }
        self.seen |= 1 << behind;
        Ok(())
    }
}

/// The receiving side's checks: sender, authentication, replay, bulk rate.
#[derive(Debug)]
pub struct Gate {
    auth: Auth,
    sync_id: u8,
    port: u16,
    peers: Vec<Ipv4Addr>,
    replay: HashMap<IpAddr, ReplayWindow>,
    bulk: HashMap<IpAddr, Instant>,
}

impl Gate {
    /// The gate of `config` (peers, port, sync id) with `auth`'s key.
    pub fn new(config: &SyncConfig, auth: Auth) -> Self {
        Gate { auth, sync_id: config.sync_id, port: config.port, peers: config.peers.clone(), replay: HashMap::new(), bulk: HashMap::new() }
    }

    /// Checks a datagram from `from`, received when the wall clock read `now_ms`.
    pub fn check(&mut self, buf: &[u8], from: SocketAddr, now_ms: u64) -> Result<Message, SyncError> {
        if !self.peers.is_empty() {
            let peer = match from {
                SocketAddr::V4(a) => a.port() == self.port && self.peers.contains(a.ip()),
                SocketAddr::V6(_) => false,
            };
            if !peer {
                return Err(SyncError::NotPeer(from));
            }
        }
        let d = decode(buf, &self.auth, self.sync_id)?;
        if d.stamp.timestamp.abs_diff(now_ms) > MAX_SKEW_MS {
            return Err(SyncError::Replay("timestamp more than a minute away from our clock"));
        }
        let (sender, senders) = (from.ip(), self.replay.len());
        match self.replay.get_mut(&sender) {
            Some(w) => w.accept(d.stamp)?,
            None if senders >= MAX_SENDERS => return Err(SyncError::NotPeer(from)),
            None => {
                self.replay.insert(sender, ReplayWindow::new(d.stamp));
            }
        }
        Ok(d.message)
    }

    /// Whether an (authenticated) bulk request from `from` may be answered at
    /// `now`: one per address per [`BULK_INTERVAL`].
    pub fn allow_bulk(&mut self, from: IpAddr, now: Instant) -> Result<(), SyncError> {
        match self.bulk.get(&from) {
            Some(last) if now.saturating_duration_since(*last) < BULK_INTERVAL => Err(SyncError::BulkRateLimited(from)),
            None if self.bulk.len() >= MAX_SENDERS => Err(SyncError::BulkRateLimited(from)),
            _ => {
                self.bulk.insert(from, now);
                Ok(())
            }
        }
    }
}

/// Why connection sync cannot start with this config.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SyncSetupError {
    /// No key in the config or the environment.
    #[error(
        "sync.key: connection sync needs a shared key of at least {MIN_KEY_LEN} bytes, the same on every director; \
         set `sync.key` in the config or the environment variable {KEY_ENV}"
    )]
    MissingKey,
    /// The environment's key is too short (`sync.key`'s length is checked with the config).
    #[error("{KEY_ENV} (the sync.key): {0} bytes is too short; use at least {MIN_KEY_LEN}")]
    ShortEnvKey(usize),
    /// The HMAC implementation refused the key.
    #[error("sync.key: the key cannot be used for HMAC-SHA256")]
    KeyRejected,
    /// `sync.instance` left out.
    #[error("sync.instance: required (the VRRP instance whose master sends connections)")]
    NoInstance,
    /// `sync.instance` names no VRRP instance.
    #[error("sync.instance: no vrrp instance `{0}` (sync follows a VRRP instance)")]
    UnknownInstance(String),
    /// No address to bind.
    #[error(
        "sync.instance: vrrp instance `{instance}` runs on `{interface}`, which is not a port with a `tap` and an \
         address; give the port an address or set the instance's unicast_src_ip"
    )]
    NoAddress {
        /// The VRRP instance.
        instance: String,
        /// Its interface.
        interface: String,
    },
}

/// Everything the sync daemon needs, resolved from the config and the environment.
#[derive(Clone, Debug)]
pub struct SyncSettings {
    /// The `sync` section.
    pub config: SyncConfig,
    /// The prepared key.
    pub auth: Auth,
    /// The address the daemon binds: the instance's `unicast_src_ip`, else the
    /// first address of the port the instance runs on.
    pub local: Ipv4Addr,
}

impl SyncSettings {
    /// Resolves `config.sync` (None without one) with the key `env_key` (the
    /// value of [`KEY_ENV`]; wins over `sync.key` when set and not empty).
    pub fn resolve(config: &Config, env_key: Option<String>) -> Result<Option<SyncSettings>, SyncSetupError> {
        let Some(sc) = &config.sync else {
            return Ok(None);
        };
        let key = match env_key.filter(|k| !k.is_empty()) {
            Some(k) if k.len() < MIN_KEY_LEN => return Err(SyncSetupError::ShortEnvKey(k.len())),
            Some(k) => SyncKey::new(k),
            None => sc.key.clone().filter(|k| k.len() >= MIN_KEY_LEN).ok_or(SyncSetupError::MissingKey)?,
        };
        if sc.instance.is_empty() {
            return Err(SyncSetupError::NoInstance);
        }
        let inst = config
            .vrrp
            .instances
            .iter()
            .find(|i| i.name == sc.instance)
            .ok_or_else(|| SyncSetupError::UnknownInstance(sc.instance.clone()))?;
        let port = config.ports.iter().find(|p| p.tap.is_some() && (p.name == inst.interface || p.tap.as_deref() == Some(&inst.interface)));
        // Sync runs over IPv4: an IPv6 instance's source is no sync address.
        let local = inst
            .unicast_src_ip
            .and_then(rvs_dataplane::snapshot::v4)
            .or_else(|| port.and_then(|p| p.addresses.iter().find_map(|a| rvs_dataplane::snapshot::v4(a.addr))))
            .ok_or_else(|| SyncSetupError::NoAddress { instance: inst.name.clone(), interface: inst.interface.clone() })?;
        Ok(Some(SyncSettings { config: sc.clone(), auth: Auth::new(&key)?, local }))
    }

    /// [`SyncSettings::resolve`] with the key from the environment variable [`KEY_ENV`].
    pub fn from_env(config: &Config) -> Result<Option<SyncSettings>, SyncSetupError> {
        Self::resolve(config, std::env::var(KEY_ENV).ok())
    }
}

fn state_from(n: u8) -> Option<TcpState> {
    use TcpState::*;
    [None, Established, SynSent, SynRecv, FinWait, TimeWait, Close, CloseWait, LastAck, Listen, SynAck, Udp]
        .into_iter()
        .find(|s| *s as u8 == n)
}

/// What the sync threads need from the dataplane.
pub trait SyncDataplane: Send + Sync + 'static {
    /// Connection updates the workers produced since the last call.
    fn drain_updates(&self) -> Vec<ConnInfo>;
    /// Every connection (for a bulk resync).
    fn all_connections(&self) -> Vec<ConnInfo>;
    /// Installs connections from the master on the workers.
    fn install(&self, conns: Vec<ConnInfo>);
}

/// The running sync daemon: a sender thread and a receiver thread per socket
/// (the unicast one, plus the group's with multicast).
pub struct SyncDaemon {
    shared: Arc<Shared>,
    threads: parking_lot::Mutex<Vec<std::thread::JoinHandle<()>>>,
}

/// What the threads share.
struct Shared {
    master: AtomicBool,
    stop: AtomicBool,
    /// Bound to `local:port`: sends everything, receives unicast.
    socket: UdpSocket,
    targets: Vec<SocketAddr>,
    sync_id: u8,
    auth: Auth,
    stamper: Stamper,
    gate: parking_lot::Mutex<Gate>,
    counters: Arc<SyncCounters>,
}

impl Shared {
    fn send(&self, targets: &[SocketAddr], msg: &Message) {
        for d in encode(&self.auth, self.sync_id, msg, &self.stamper, now_ms()) {
            for t in targets {
                match self.socket.send_to(&d, t) {
                    Ok(_) => SyncCounters::bump(&self.counters.sent, 1),
                    Err(e) => {
                        SyncCounters::bump(&self.counters.send_errors, 1);
                        tracing::warn!(target = %t, error = %e, "sync: send failed");
                    }
                }
            }
        }
    }

    /// Handles one received datagram.
    fn receive(&self, buf: &[u8], from: SocketAddr, dataplane: &dyn SyncDataplane) {
        SyncCounters::bump(&self.counters.received, 1);
        let checked = self.gate.lock().check(buf, from, now_ms());
        let master = self.master.load(Ordering::Relaxed);
        let result = match checked {
            Ok(Message::Conns(conns)) if !master => {
                tracing::debug!(%from, conns = conns.len(), "sync: installing connections");
                SyncCounters::bump(&self.counters.installed, conns.len() as u64);
                dataplane.install(conns);
                Ok(())
            }
            Ok(Message::BulkRequest) if master => self.gate.lock().allow_bulk(from.ip(), Instant::now()).map(|()| {
                let all = dataplane.all_connections();
                tracing::info!(%from, conns = all.len(), "sync: bulk resync requested");
                SyncCounters::bump(&self.counters.bulk_answered, 1);
                self.send(&[from], &Message::Conns(all));
            }),
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            self.counters.reject(e.reason());
            tracing::debug!(%from, error = %e, "sync: datagram refused");
        }
    }
}

impl SyncDaemon {
    /// Binds `settings.local:port` (and, with multicast, the group on that
    /// address's interface) and starts the threads. `master` says whether this
    /// node currently sends (VRRP master) or receives (backup).
    pub fn start(settings: &SyncSettings, dataplane: Arc<dyn SyncDataplane>, master: bool) -> std::io::Result<SyncDaemon> {
        let config = &settings.config;
        let local = settings.local;
        let socket = UdpSocket::bind(SocketAddrV4::new(local, config.port))?;
        let mut group = None;
        let targets: Vec<SocketAddr> = if config.peers.is_empty() {
            socket.set_multicast_loop_v4(false)?;
            // Send from the exception-path interface even without a multicast route.
            socket2::SockRef::from(&socket).set_multicast_if_v4(&local)?;
            // Receive the group on our interface only: bound to the group
            // address, joined on `local`, no other memberships of the host.
            let g = UdpSocket::bind(SocketAddrV4::new(GROUP, config.port))?;
            g.join_multicast_v4(&GROUP, &local)?;
            socket2::SockRef::from(&g).set_multicast_all_v4(false)?;
            g.set_read_timeout(Some(Duration::from_millis(100)))?;
            group = Some(g);
            vec![SocketAddr::V4(SocketAddrV4::new(GROUP, config.port))]
        } else {
            config.peers.iter().map(|p| SocketAddr::V4(SocketAddrV4::new(*p, config.port))).collect()
        };
        socket.set_read_timeout(Some(Duration::from_millis(100)))?;
        let shared = Arc::new(Shared {
            master: AtomicBool::new(master),
            stop: AtomicBool::new(false),
            socket,
            targets,
            sync_id: config.sync_id,
            auth: settings.auth.clone(),
            stamper: Stamper::new(now_ms()),
            gate: parking_lot::Mutex::new(Gate::new(config, settings.auth.clone())),
            counters: Arc::new(SyncCounters::default()),
        });
        let daemon = SyncDaemon { shared, threads: parking_lot::Mutex::new(Vec::new()) };
        daemon.spawn_sender(Arc::clone(&dataplane))?;
        daemon.spawn_receiver(Arc::clone(&dataplane), None)?;
        if let Some(g) = group {
            daemon.spawn_receiver(dataplane, Some(g))?;
        }
        if !master {
            daemon.request_bulk();
        }
        Ok(daemon)
    }

    /// The daemon's counters.
    pub fn counters(&self) -> Arc<SyncCounters> {
        Arc::clone(&self.shared.counters)
    }

    /// Switches role (on a VRRP transition). Becoming backup asks the master
    /// for a bulk resync.
    pub fn set_master(&self, master: bool) {
        let was = self.shared.master.swap(master, Ordering::SeqCst);
        if was && !master {
            self.request_bulk();
        }
    }

    /// Stops the threads and waits for them (they hold the dataplane, which
    /// must be gone before DPDK shuts down).
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for t in self.threads.lock().drain(..) {
            let _ = t.join();
        }
    }

    /// Asks the peers for every connection they have.
    pub fn request_bulk(&self) {
        self.shared.send(&self.shared.targets, &Message::BulkRequest);
    }

    fn spawn_sender(&self, dataplane: Arc<dyn SyncDataplane>) -> std::io::Result<()> {
        let shared = Arc::clone(&self.shared);
        let handle = std::thread::Builder::new().name("rvs-sync-tx".into()).spawn(move || {
            while !shared.stop.load(Ordering::Relaxed) {
                let updates = dataplane.drain_updates();
                if updates.is_empty() {
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                }
                if shared.master.load(Ordering::Relaxed) {
                    shared.send(&shared.targets, &Message::Conns(updates));
                }
            }
        })?;
        self.threads.lock().push(handle);
        Ok(())
    }

    /// A receiver on `group`, or on the unicast socket when `None`.
    fn spawn_receiver(&self, dataplane: Arc<dyn SyncDataplane>, group: Option<UdpSocket>) -> std::io::Result<()> {
        let shared = Arc::clone(&self.shared);
        let name = if group.is_some() { "rvs-sync-rx-mc" } else { "rvs-sync-rx" };
        let handle = std::thread::Builder::new().name(name.into()).spawn(move || {
            let mut buf = vec![0u8; 2048];
            let socket = group.as_ref().unwrap_or(&shared.socket);
            while !shared.stop.load(Ordering::Relaxed) {
                let Ok((n, from)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                shared.receive(&buf[..n], from, dataplane.as_ref());
            }
        })?;
        self.threads.lock().push(handle);
        Ok(())
    }
}

impl Drop for SyncDaemon {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(i: u16, fnat: bool) -> ConnInfo {
        ConnInfo {
            worker: 0,
            protocol: if i.is_multiple_of(2) { Protocol::Tcp } else { Protocol::Udp },
            client: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 40000 + i).into(),
            vip: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 100), 80).into(),
            real: SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, 11), 8080).into(),
            local: fnat.then(|| SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, 200), 5000 + i).into()),
            forward: if fnat { ForwardMode::FullNat } else { ForwardMode::Dr },
            state: if i.is_multiple_of(2) { "ESTABLISHED".into() } else { "UDP".into() },
            expires_ms: 900_000,
            template: false,
            seq_delta: if fnat { 0xa1b2_c3d4 ^ u32::from(i) } else { 0 },
            syn_proxy: None,
        }
    }

    /// A SYN-proxied TCP connection (NAT, or FULLNAT with `fnat`), open.
    fn proxied(i: u16, fnat: bool) -> ConnInfo {
        let t = Translation {
            delta: 0x8765_4321 ^ u32::from(i),
            phase: Phase::Open,
            server_wscale: 9,
            client_view_wscale: 7,
            inbound_shift: (i % 15) as u8,
        };
        ConnInfo {
            protocol: Protocol::Tcp,
            state: "ESTABLISHED".into(),
            forward: if fnat { ForwardMode::FullNat } else { ForwardMode::Nat },
            syn_proxy: Some(t),
            ..conn(2 * i, fnat)
        }
    }

    /// Re-signs an altered datagram with the test key (a sender with the key and a bug).
    fn resign(mut d: Vec<u8>) -> Vec<u8> {
        d.truncate(d.len() - MAC_LEN);
        let tag = key().sign(&d);
        d.extend_from_slice(&tag);
        d
    }

    const T0: u64 = 1_700_000_000_000;

    fn auth(key: &str) -> Auth {
        Auth::new(&SyncKey::new(key)).expect("key")
    }

    fn key() -> Auth {
        auth("0123456789abcdef-lab-key")
    }

    fn sync_config(peers: &[Ipv4Addr]) -> SyncConfig {
        SyncConfig { instance: "VI_1".into(), port: 8848, peers: peers.to_vec(), sync_id: 7, key: None }
    }

    const PEER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 3);

    fn from_peer() -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(PEER, 8848))
    }

    fn gate() -> Gate {
        Gate::new(&sync_config(&[PEER]), key())
    }

    fn enc(stamper: &Stamper, msg: &Message) -> Vec<Vec<u8>> {
        encode(&key(), 7, msg, stamper, T0)
    }

    #[test]
    fn persistence_templates_round_trip_in_both_entry_kinds() {
        let template4 = ConnInfo {
            client: SocketAddr::new(Ipv4Addr::new(10, 0, 0, 0).into(), 0),
            state: "NONE".into(),
            expires_ms: 300_000,
            template: true,
            ..conn(0, false)
        };
        let template6 = ConnInfo {
            client: SocketAddr::new("2001:db8:0:1::".parse::<IpAddr>().expect("v6"), 0),
            vip: SocketAddr::new("2001:db8::105".parse::<IpAddr>().expect("v6"), 80),
            real: SocketAddr::new("2001:db8:1::12".parse::<IpAddr>().expect("v6"), 80),
            ..template4.clone()
        };
        let sent = vec![conn(1, false), template4, template6];
        let datagrams = enc(&Stamper::new(T0), &Message::Conns(sent.clone()));
        assert_eq!(datagrams.len(), 2, "an IPv4 datagram and an IPv6 one");
        let mut back = Vec::new();
        for d in &datagrams {
            match decode(d, &key(), 7).expect("authentic").message {
                Message::Conns(c) => back.extend(c),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(back, sent, "the template flag survives, the connection stays a connection");
    }

    #[test]
    fn round_trip_with_auth_in_datagrams_of_bounded_size() {
        let conns: Vec<ConnInfo> = (0..100).map(|i| if i % 4 == 1 { proxied(i, i % 3 == 0) } else { conn(i, i % 3 == 0) }).collect();
        assert!(conns.iter().filter(|c| c.syn_proxy.is_some()).count() > 20);
        let stamper = Stamper::new(T0 - 5);
        let datagrams = enc(&stamper, &Message::Conns(conns.clone()));
        assert_eq!(datagrams.len(), 4);
        assert!(datagrams.iter().all(|d| d.len() <= HEADER_LEN + MAX_ENTRIES * ENTRY_LEN + MAC_LEN && d.len() < 1400));
        let mut g = gate();
        let mut back = Vec::new();
        for (i, d) in datagrams.iter().enumerate() {
            let decoded = decode(d, &key(), 7).expect("authentic");
            assert_eq!(decoded.stamp, Stamp { epoch: T0 - 5, sequence: i as u64, timestamp: T0 });
            match g.check(d, from_peer(), T0 + 10) {
                Ok(Message::Conns(c)) => back.extend(c),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(back, conns);
        let bulk = &enc(&stamper, &Message::BulkRequest)[0];
        assert_eq!(g.check(bulk, from_peer(), T0), Ok(Message::BulkRequest));
    }

    #[test]
    fn ipv6_and_nat64_connections_travel_in_ipv6_entries() {
        let v6 = |s: &str| -> std::net::SocketAddr { s.parse().expect("socket address") };
        let ipv6 = |i: u16| ConnInfo {
            client: v6(&format!("[2001:db8::2]:{}", 40000 + i)),
            vip: v6("[2001:db8::101]:80"),
            real: v6("[2001:db8:1::11]:8080"),
            forward: ForwardMode::Nat,
            ..conn(i, false)
        };
        let nat64 =
            |i: u16| ConnInfo { client: v6(&format!("[2001:db8::2]:{}", 41000 + i)), vip: v6("[2001:db8::104]:80"), ..conn(i, true) };
        let mut conns: Vec<ConnInfo> = (0..20).map(ipv6).collect();
        conns.extend((0..10).map(nat64));
        conns.extend((0..5).map(|i| conn(i, false)));
        let stamper = Stamper::new(T0 - 5);
        let datagrams = enc(&stamper, &Message::Conns(conns.clone()));
        assert_eq!(datagrams.len(), 1 + 3, "one IPv4 datagram, 30 IPv6 entries in datagrams of 13");
        assert!(datagrams.iter().all(|d| d.len() < 1400));
        let mut g = gate();
        let mut back = Vec::new();
        for d in &datagrams {
            match g.check(d, from_peer(), T0 + 10) {
                Ok(Message::Conns(c)) => back.extend(c),
                other => panic!("unexpected {other:?}"),
            }
        }
        let sorted = |mut v: Vec<ConnInfo>| {
            v.sort_by_key(|c| (c.client, c.vip));
            v
        };
        assert_eq!(sorted(back), sorted(conns), "NAT64 real servers and local addresses come back IPv4");
    }

    /// A SYN-proxied IPv6 connection's translation travels in its IPv6
    /// entry and comes back whole; bad proxy fields there are malformed, as
    /// in an IPv4 entry.
    #[test]
    fn proxied_ipv6_connections_carry_their_translation() {
        let v6 = |s: &str| -> std::net::SocketAddr { s.parse().expect("socket address") };
        let ipv6 = |i: u16, fnat: bool| ConnInfo {
            client: v6(&format!("[2001:db8::2]:{}", 40000 + i)),
            vip: v6("[2001:db8::101]:80"),
            real: v6("[2001:db8:1::11]:8080"),
            local: fnat.then(|| v6(&format!("[2001:db8:1::200]:{}", 5000 + i))),
            ..proxied(i, fnat)
        };
        let conns: Vec<ConnInfo> = (0..6).map(|i| ipv6(i, i % 2 == 1)).collect();
        let datagrams = enc(&Stamper::new(T0), &Message::Conns(conns.clone()));
        assert_eq!(datagrams.len(), 1);
        assert_eq!(decode(&datagrams[0], &key(), 7).map(|d| d.message), Ok(Message::Conns(conns)));
        let proxy = HEADER_LEN + ENTRY6_LEN - 8;
        let cases = [
            ("handshake phase", proxy, 1, "a SYN proxy handshake in progress is never synced"),
            ("server wscale 15", proxy + 1, 15, "SYN proxy window scale over 14"),
            ("proxied DR", HEADER_LEN + 1, 0, "SYN proxy on a connection that is not TCP NAT or FULLNAT"),
        ];
        for (what, at, value, want) in cases {
            let mut bad = datagrams[0].clone();
            bad[at] = value;
            assert_eq!(decode(&resign(bad), &key(), 7), Err(SyncError::Malformed(want)), "{what}");
        }
    }

    #[test]
    fn the_header_is_the_documented_bytes() {
        let stamper = Stamper::new(0x0102_0304_0506_0708);
        stamper.stamp(0);
        let d = &encode(&key(), 3, &Message::Conns(vec![conn(0, true)]), &stamper, 0x1112_1314_1516_1718)[0];
        assert_eq!(&d[..8], &[b'R', b'V', b'S', b'S', 4, 1, 3, 1]);
        assert_eq!(&d[8..16], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&d[16..24], &1u64.to_be_bytes());
        assert_eq!(&d[24..32], &[0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18]);
        assert_eq!(d.len(), 32 + 44 + 32);
        // protocol tcp, forward fullnat, state ESTABLISHED (1), local present.
        assert_eq!(&d[32..36], &[6, 3, 1, 1]);
        assert_eq!(&d[36..42], &[10, 0, 0, 2, 0x9c, 0x40]);
        assert_eq!(&d[54..60], &[10, 1, 0, 200, 0x13, 0x88]);
        assert_eq!(&d[60..64], &[0xa1, 0xb2, 0xc3, 0xd4], "FULLNAT sequence delta");
        assert_eq!(&d[64..68], &900u32.to_be_bytes());
        assert_eq!(&d[68..76], &[0; 8], "not proxied: no SYN proxy fields");
        // The trailer is HMAC-SHA256(key, header + entries).
        let mut mac = <HmacSha256 as Mac>::new_from_slice(b"0123456789abcdef-lab-key").expect("key");
        mac.update(&d[..76]);
        assert_eq!(&d[76..], mac.finalize().into_bytes().as_slice());
        // A proxied one: phase 2 (open), server scale 9, client view 7, shift 3, delta.
        let d = &encode(&key(), 3, &Message::Conns(vec![proxied(3, false)]), &stamper, 0)[0];
        assert_eq!(&d[32..36], &[6, 1, 1, 0], "tcp, nat, ESTABLISHED, no local address");
        assert_eq!(&d[68..76], &[2, 9, 7, 3, 0x87, 0x65, 0x43, 0x22]);
    }

    /// A version 3 datagram, byte by byte as a version 3 master sent it:
    /// one FULLNAT entry of 36 bytes.
    fn version_3_datagram() -> Vec<u8> {
        let mut d = b"RVSS".to_vec();
        d.extend_from_slice(&[3, 1, 7, 1]);
        d.extend_from_slice(&(T0 - 9).to_be_bytes());
        d.extend_from_slice(&5u64.to_be_bytes());
        d.extend_from_slice(&T0.to_be_bytes());
        d.extend_from_slice(&[6, 3, 1, 1]);
        d.extend_from_slice(&[10, 0, 0, 2, 0x9c, 0x41]);
        d.extend_from_slice(&[10, 0, 0, 100, 0, 80]);
        d.extend_from_slice(&[10, 1, 0, 11, 0x1f, 0x90]);
        d.extend_from_slice(&[10, 1, 0, 200, 0x13, 0x89]);
        d.extend_from_slice(&[0xa1, 0xb2, 0xc3, 0xd5]);
        d.extend_from_slice(&600u32.to_be_bytes());
        let mut mac = <HmacSha256 as Mac>::new_from_slice(b"0123456789abcdef-lab-key").expect("key");
        mac.update(&d);
        d.extend_from_slice(mac.finalize().into_bytes().as_slice());
        d
    }

    #[test]
    fn version_3_datagrams_are_still_decoded() {
        let d = version_3_datagram();
        assert_eq!(d.len(), 32 + 36 + 32);
        let want = ConnInfo {
            client: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 40001).into(),
            local: Some(SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, 200), 5001).into()),
            forward: ForwardMode::FullNat,
            protocol: Protocol::Tcp,
            state: "ESTABLISHED".into(),
            expires_ms: 600_000,
            seq_delta: 0xa1b2_c3d5,
            ..conn(0, false)
        };
        let decoded = decode(&d, &key(), 7).expect("a version 3 datagram is read");
        assert_eq!(decoded.stamp, Stamp { epoch: T0 - 9, sequence: 5, timestamp: T0 });
        assert_eq!(decoded.message, Message::Conns(vec![want]));
        assert!(matches!(gate().check(&d, from_peer(), T0), Ok(Message::Conns(c)) if c.len() == 1));
        // Version 3 entries are 36 bytes: one of version 4's length is refused.
        let mut long = d[..32 + 36].to_vec();
        long.extend_from_slice(&[0; 8]);
        let long = resign([long, vec![0; MAC_LEN]].concat());
        assert_eq!(decode(&long, &key(), 7), Err(SyncError::Malformed("length does not match the entry count")));
        // A version 4 datagram claiming version 3 fails authentication.
        let mut v4 = enc(&Stamper::new(T0), &Message::Conns(vec![conn(0, true)]))[0].clone();
        v4[4] = 3;
        assert_eq!(decode(&v4, &key(), 7), Err(SyncError::BadAuth));
    }

    #[test]
    fn pending_syn_proxy_handshakes_are_never_sent() {
        let pending = ConnInfo {
            state: "SYN_SENT".into(),
            syn_proxy: Some(Translation { phase: Phase::Handshake, ..Translation::default() }),
            ..proxied(1, false)
        };
        let stamper = Stamper::new(T0);
        assert!(enc(&stamper, &Message::Conns(vec![pending.clone()])).is_empty(), "nothing to send");
        let d = enc(&stamper, &Message::Conns(vec![pending.clone(), proxied(2, true), pending]));
        assert_eq!(d.len(), 1);
        assert_eq!(decode(&d[0], &key(), 7).map(|d| d.message), Ok(Message::Conns(vec![proxied(2, true)])));
    }

    #[test]
    fn bad_syn_proxy_fields_are_refused_and_counted_as_malformed() {
        let good = enc(&Stamper::new(T0), &Message::Conns(vec![conn(0, false), proxied(1, true)]))[0].clone();
        assert!(decode(&good, &key(), 7).is_ok());
        let second = HEADER_LEN + ENTRY_LEN;
        let proxy = |entry: usize| entry + PREVIOUS_ENTRY_LEN;
        let cases: [(&str, usize, u8, &str); 9] = [
            ("handshake phase", proxy(second), 1, "a SYN proxy handshake in progress is never synced"),
            ("unknown phase", proxy(second), 3, "unknown SYN proxy phase"),
            ("phase 255", proxy(second), 255, "unknown SYN proxy phase"),
            ("server wscale 15", proxy(second) + 1, 15, "SYN proxy window scale over 14"),
            ("client view wscale 200", proxy(second) + 2, 200, "SYN proxy window scale over 14"),
            ("inbound shift 15", proxy(second) + 3, 15, "SYN proxy window scale over 14"),
            ("proxied DR", second + 1, 0, "SYN proxy on a connection that is not TCP NAT or FULLNAT"),
            ("proxied UDP", second, 17, "SYN proxy on a connection that is not TCP NAT or FULLNAT"),
            ("fields without a phase", proxy(HEADER_LEN) + 7, 1, "SYN proxy fields on a connection that is not proxied"),
        ];
        for (what, at, value, want) in cases {
            let mut bad = good.clone();
            bad[at] = value;
            let bad = resign(bad);
            assert_eq!(decode(&bad, &key(), 7), Err(SyncError::Malformed(want)), "{what}");
            let counters = SyncCounters::default();
            if let Err(e) = gate().check(&bad, from_peer(), T0) {
                counters.reject(e.reason());
            }
            assert_eq!(counters.rejected(Reason::Malformed), 1, "{what}");
        }
        // Scale 14 is the largest TCP allows, and is taken.
        let mut edge = good.clone();
        edge[proxy(second) + 1..proxy(second) + 4].copy_from_slice(&[14, 14, 14]);
        assert!(decode(&resign(edge), &key(), 7).is_ok());
    }

    #[test]
    fn a_wrong_key_is_refused() {
        let stamper = Stamper::new(T0);
        let forged = encode(&auth("another key, also long enough"), 7, &Message::Conns(vec![conn(0, false)]), &stamper, T0);
        assert_eq!(decode(&forged[0], &key(), 7), Err(SyncError::BadAuth));
        assert_eq!(gate().check(&forged[0], from_peer(), T0), Err(SyncError::BadAuth));
        let bulk = encode(&auth("another key, also long enough"), 7, &Message::BulkRequest, &stamper, T0);
        assert_eq!(gate().check(&bulk[0], from_peer(), T0).map_err(|e| e.reason()), Err(Reason::BadAuth));
    }

    #[test]
    fn every_tampered_byte_is_refused() {
        let good = enc(&Stamper::new(T0), &Message::Conns(vec![conn(0, true), conn(1, false)]))[0].clone();
        assert!(decode(&good, &key(), 7).is_ok());
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x20;
            let err = decode(&bad, &key(), 7).expect_err("a changed byte must be refused");
            // Magic and version are checked before the HMAC; everything else fails it.
            let want = match i {
                0..=3 => Reason::Malformed,
                4 => Reason::Version,
                _ => Reason::BadAuth,
            };
            assert_eq!(err.reason(), want, "byte {i}");
        }
        // Cut short or lengthened: refused too.
        assert_eq!(decode(&good[..good.len() - 1], &key(), 7), Err(SyncError::BadAuth));
        let mut longer = good.clone();
        longer.push(0);
        assert_eq!(decode(&longer, &key(), 7), Err(SyncError::BadAuth));
    }

    #[test]
    fn replays_are_refused() {
        let stamper = Stamper::new(T0);
        let msgs: Vec<Vec<u8>> = (0..70).map(|i| enc(&stamper, &Message::Conns(vec![conn(i, false)])).remove(0)).collect();
        let mut g = gate();
        assert!(g.check(&msgs[0], from_peer(), T0).is_ok());
        assert_eq!(g.check(&msgs[0], from_peer(), T0), Err(SyncError::Replay("sequence seen before")));
        // Out of order within the window: accepted once.
        assert!(g.check(&msgs[5], from_peer(), T0).is_ok());
        assert!(g.check(&msgs[3], from_peer(), T0).is_ok());
        assert_eq!(g.check(&msgs[3], from_peer(), T0).map_err(|e| e.reason()), Err(Reason::Replay));
        assert!(g.check(&msgs[69], from_peer(), T0).is_ok());
        // 4 is now more than the window below 69.
        assert_eq!(g.check(&msgs[4], from_peer(), T0), Err(SyncError::Replay("sequence older than the replay window")));
        assert!(g.check(&msgs[68], from_peer(), T0).is_ok());
        // Stale or future timestamps.
        let later = enc(&stamper, &Message::BulkRequest).remove(0);
        assert_eq!(g.check(&later, from_peer(), T0 + MAX_SKEW_MS + 1).map_err(|e| e.reason()), Err(Reason::Replay));
        assert_eq!(g.check(&later, from_peer(), T0 - MAX_SKEW_MS - 1).map_err(|e| e.reason()), Err(Reason::Replay));
        assert!(g.check(&later, from_peer(), T0 + MAX_SKEW_MS).is_ok());
        // A restarted sender (later epoch, sequence from 0) is accepted; its
        // earlier run is not any more.
        let restarted = Stamper::new(T0 + 1000);
        assert!(g.check(&enc(&restarted, &Message::BulkRequest)[0], from_peer(), T0).is_ok());
        let old_run = enc(&stamper, &Message::BulkRequest).remove(0);
        assert_eq!(g.check(&old_run, from_peer(), T0), Err(SyncError::Replay("from an earlier run of the sender")));
    }

    #[test]
    fn only_configured_peers_on_the_sync_port_are_heard() {
        let stamper = Stamper::new(T0);
        let d = enc(&stamper, &Message::Conns(vec![conn(0, false)])).remove(0);
        let mut g = gate();
        let stranger = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 4), 8848));
        assert_eq!(g.check(&d, stranger, T0), Err(SyncError::NotPeer(stranger)));
        let other_port = SocketAddr::V4(SocketAddrV4::new(PEER, 5000));
        assert_eq!(g.check(&d, other_port, T0).map_err(|e| e.reason()), Err(Reason::NotPeer));
        let v6: SocketAddr = "[::1]:8848".parse().expect("addr");
        assert_eq!(g.check(&d, v6, T0).map_err(|e| e.reason()), Err(Reason::NotPeer));
        // A refused datagram does not count against the replay window.
        assert!(g.check(&d, from_peer(), T0).is_ok());
        // Multicast (no peers): any sender with the key.
        let mut open = Gate::new(&sync_config(&[]), key());
        assert!(open.check(&enc(&stamper, &Message::BulkRequest)[0], stranger, T0).is_ok());
        assert_eq!(
            open.check(&encode(&auth("a stranger's key.."), 7, &Message::BulkRequest, &stamper, T0)[0], stranger, T0),
            Err(SyncError::BadAuth)
        );
    }

    #[test]
    fn bulk_requests_are_answered_once_a_second_per_peer() {
        let mut g = gate();
        let t = Instant::now();
        let a: IpAddr = PEER.into();
        let b: IpAddr = Ipv4Addr::new(10, 0, 0, 5).into();
        assert!(g.allow_bulk(a, t).is_ok());
        assert_eq!(g.allow_bulk(a, t + Duration::from_millis(500)), Err(SyncError::BulkRateLimited(a)));
        assert_eq!(g.allow_bulk(a, t + Duration::from_millis(999)).map_err(|e| e.reason()), Err(Reason::BulkRateLimited));
        assert!(g.allow_bulk(b, t + Duration::from_millis(500)).is_ok(), "per peer");
        assert!(g.allow_bulk(a, t + BULK_INTERVAL).is_ok());
    }

    #[test]
    fn foreign_or_broken_datagrams_are_refused() {
        let stamper = Stamper::new(T0);
        let good = enc(&stamper, &Message::Conns(vec![conn(0, false)]))[0].clone();
        assert_eq!(decode(&good, &key(), 2), Err(SyncError::SyncId { got: 7, want: 2 }));
        let mut v = good.clone();
        v[4] = 1;
        assert_eq!(decode(&v, &key(), 7), Err(SyncError::Version(1)));
        assert!(matches!(decode(&good[..20], &key(), 7), Err(SyncError::Malformed(_))));
        assert!(matches!(decode(b"nonsense", &key(), 7), Err(SyncError::Malformed(_))));
        // Authentic but nonsensical content (a sender with the key and a bug).
        let mut k = good.clone();
        k[5] = 77;
        assert_eq!(decode(&resign(k), &key(), 7), Err(SyncError::Kind(77)));
        let mut p = good.clone();
        p[HEADER_LEN] = 1;
        assert!(matches!(decode(&resign(p), &key(), 7), Err(SyncError::Malformed(_))));
        let mut c = good;
        c[7] = 2;
        assert!(matches!(decode(&resign(c), &key(), 7), Err(SyncError::Malformed(_))));
    }

    #[test]
    fn counters_count_by_reason() {
        let c = SyncCounters::default();
        c.reject(Reason::BadAuth);
        c.reject(Reason::BadAuth);
        c.reject(Reason::BulkRateLimited);
        assert_eq!(c.rejected(Reason::BadAuth), 2);
        let j = c.to_json();
        assert_eq!(j["rejected"]["bad_auth"], 2);
        assert_eq!(j["rejected"]["bulk_rate_limited"], 1);
        assert_eq!(j["rejected"]["not_peer"], 0);
        assert_eq!(j["datagrams"]["received"], 0);
    }

    fn ha_config(sync: &str) -> Config {
        Config::from_json(&format!(
            r#"{{ "ports": [ {{ "name": "lan0", "device": "net_af_packet0,iface=dp0", "addresses": ["10.0.0.1/24", "10.1.0.1/24"], "tap": "rvs0" }},
                            {{ "name": "wan0", "device": "net_af_packet1,iface=dp1", "addresses": ["192.0.2.1/24"], "tap": "rvs1" }} ],
                 "vrrp": {{ "instances": [ {{ "name": "VI_1", "interface": "wan0", "virtual_router_id": 51, "virtual_ipaddress": ["192.0.2.100"] }},
                                          {{ "name": "VI_2", "interface": "rvs0", "virtual_router_id": 52, "virtual_ipaddress": ["10.0.0.100"],
                                             "unicast_src_ip": "10.1.0.1" }} ] }},
                 "sync": {sync} }}"#
        ))
        .expect("valid")
    }

    #[test]
    fn settings_bind_the_instance_address_and_need_a_key() {
        let long = "0123456789abcdef".to_owned();
        let s = SyncSettings::resolve(&ha_config(r#"{ "instance": "VI_1", "key": "0123456789abcdef" }"#), None)
            .expect("resolves")
            .expect("configured");
        assert_eq!(s.local, Ipv4Addr::new(192, 0, 2, 1), "first address of the instance's port");
        let s = SyncSettings::resolve(&ha_config(r#"{ "instance": "VI_2" }"#), Some(long.clone())).expect("env key").expect("configured");
        assert_eq!(s.local, Ipv4Addr::new(10, 1, 0, 1), "unicast_src_ip");
        let missing = SyncSettings::resolve(&ha_config(r#"{ "instance": "VI_1" }"#), Some(String::new())).map(|_| ());
        assert_eq!(missing, Err(SyncSetupError::MissingKey));
        let msg = SyncSetupError::MissingKey.to_string();
        assert!(msg.starts_with("sync.key") && msg.contains(KEY_ENV), "{msg}");
        assert_eq!(
            SyncSettings::resolve(&ha_config(r#"{ "instance": "VI_1" }"#), Some("short".into())).map(|_| ()),
            Err(SyncSetupError::ShortEnvKey(5))
        );
        assert_eq!(
            SyncSettings::resolve(&ha_config(r#"{ "instance": "VI_9" }"#), Some(long.clone())).map(|_| ()),
            Err(SyncSetupError::UnknownInstance("VI_9".into()))
        );
        assert_eq!(
            SyncSettings::resolve(&ha_config(r#"{ "key": "0123456789abcdef" }"#), None).map(|_| ()),
            Err(SyncSetupError::NoInstance)
        );
        // The environment's key wins over the file's.
        let file = ha_config(r#"{ "instance": "VI_1", "key": "the file's key, long" }"#);
        let s = SyncSettings::resolve(&file, Some(long)).expect("ok").expect("configured");
        let d = encode(&s.auth, 0, &Message::BulkRequest, &Stamper::new(T0), T0);
        assert!(decode(&d[0], &Auth::new(&SyncKey::new("0123456789abcdef")).expect("key"), 0).is_ok());
        assert!(format!("{s:?}").contains("Auth(<key>)") && !format!("{s:?}").contains("file's key"));
        assert!(SyncSettings::resolve(&ha_config("null"), None).expect("no sync").is_none());
    }

    proptest::proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..1500), from in 0u32..=u32::MAX, port: u16) {
            let mut g = gate();
            let from = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(from), port));
            let _ = decode(&bytes, &key(), 7);
            let _ = g.check(&bytes, from, T0);
            let _ = g.check(&bytes, from_peer(), T0);
            // A valid header in front of random bytes.
            let mut framed = b"RVSS\x02\x01\x07".to_vec();
            framed.extend_from_slice(&bytes);
            let _ = g.check(&framed, from_peer(), T0);
        }

        /// Authentic datagrams of either version with random entries: each
        /// is refused as malformed or decoded into entries that fit the
        /// wire format (an open translation with scales of at most 14, on
        /// TCP NAT or FULLNAT), never a panic.
        #[test]
        fn random_authentic_entries_never_panic(
            entries in proptest::collection::vec(proptest::collection::vec(0u8..=255, ENTRY_LEN), 0..4),
            old in proptest::bool::ANY,
        ) {
            let (version, len) = if old { (PREVIOUS_VERSION, PREVIOUS_ENTRY_LEN) } else { (VERSION, ENTRY_LEN) };
            let mut d = b"RVSS".to_vec();
            d.extend_from_slice(&[version, 1, 7, entries.len() as u8]);
            d.extend_from_slice(&[0; 24]);
            for e in &entries {
                d.extend_from_slice(&e[..len]);
            }
            d.extend_from_slice(&[0; MAC_LEN]);
            match decode(&resign(d), &key(), 7) {
                Ok(Datagram { message: Message::Conns(conns), .. }) => {
                    proptest::prop_assert_eq!(conns.len(), entries.len());
                    for c in conns {
                        if let Some(t) = c.syn_proxy {
                            proptest::prop_assert!(!old && t.is_open() && t.scales_valid() && c.protocol == Protocol::Tcp);
                            proptest::prop_assert!(matches!(c.forward, ForwardMode::Nat | ForwardMode::FullNat));
                        }
                    }
                }
                Ok(other) => proptest::prop_assert!(false, "unexpected {:?}", other),
                Err(e) => proptest::prop_assert_eq!(e.reason(), Reason::Malformed),
            }
        }

        /// Whatever translation an open proxied connection has, it comes
        /// back from the wire unchanged.
        #[test]
        fn translations_round_trip(delta: u32, scales in proptest::array::uniform3(0u8..=14), fnat: bool) {
            let c = ConnInfo {
                syn_proxy: Some(Translation {
                    delta,
                    phase: Phase::Open,
                    server_wscale: scales[0],
                    client_view_wscale: scales[1],
                    inbound_shift: scales[2],
                }),
                ..proxied(0, fnat)
            };
            let d = encode(&key(), 7, &Message::Conns(vec![c.clone()]), &Stamper::new(T0), T0);
            proptest::prop_assert_eq!(decode(&d[0], &key(), 7).map(|d| d.message), Ok(Message::Conns(vec![c])));
        }
    }
}
