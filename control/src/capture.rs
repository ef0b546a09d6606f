//! Packet capture of one service's frames: `GET /api/v1/capture`.
//!
//! The DPDK-free half: the request's parameters and bounds ([`CaptureRequest`],
//! [`CaptureLimits`]), which frames belong to a service ([`ServiceMatch`]),
//! the optional BPF filter (libpcap's compiler and interpreter, through the
//! `pcap` crate: tcpdump's filter syntax), the collector that stops at the
//! first bound reached ([`Collector`]), and the pcapng file (`pcap-file`).
//! The worker side (a hook in the poll loop copying matching frames into a
//! bounded ring) is `rvs_dpdk::capture`; rvsd joins the two
//! ([`crate::Dataplane::capture`]).
//!
//! **Frames of a service** (`tcp/10.0.0.101/80`, `tcp/2001:db8::100/80`),
//! IPv4 and IPv6, as received and as sent by the dataplane:
//! - every frame to or from the virtual address and port with the service's
//!   protocol (client → VIP as received; DR's frame to the real, which keeps
//!   the VIP; NAT/FULLNAT replies rewritten back to VIP → client), also
//!   inside a tunnel (TUN's encapsulated frames, IPv4 or IPv6 in IPv4 or
//!   IPv6: the inner packet is matched);
//! - NAT reals: frames to or from a real's address and port whose other end
//!   is not a FULLNAT local address of any service (the rewritten
//!   client → real frame and the real's reply as received);
//! - FULLNAT reals: frames to or from a real's address and port whose other
//!   end is one of this service's local addresses. A NAT64 service (an IPv6
//!   VIP, IPv4 FULLNAT reals and local addresses) thus matches IPv6 frames on
//!   the client's side and IPv4 frames on the reals' side.
//!
//! IPv6 extension headers (hop-by-hop, routing, destination options,
//! fragment) are walked by the dataplane's bounded walker
//! ([`rvs_dataplane::wire::ipv6_ext`]) to the TCP/UDP header.
//!
//! Not matched: ICMP/ICMPv6 errors about the service's connections, fragments
//! after the first (IPv4 or IPv6), packets behind an IPsec header (AH, ESP),
//! ARP and neighbour discovery. Two NAT services sending to the same real
//! address and port cannot be told apart on the real's side (the headers are
//! the same).

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
use pcap_file::pcapng::blocks::interface_description::{InterfaceDescriptionBlock, InterfaceDescriptionOption};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::DataLink;
use rvs_dataplane::snapshot::{ForwardMode, ServiceKey};
use rvs_dataplane::wire::{ipv6_ext, Ipv6Packet};

use crate::config::{Config, ServiceConfig};

/// Frames captured when `count` is not given.
pub const DEFAULT_COUNT: usize = 100;
/// The most frames one capture returns.
pub const MAX_COUNT: usize = 10_000;
/// Seconds a capture runs when `seconds` is not given.
pub const DEFAULT_SECONDS: u64 = 10;
/// The longest capture, in seconds.
pub const MAX_SECONDS: u64 = 60;
/// Bytes kept of each frame when `snaplen` is not given (whole frames up to jumbo size).
pub const DEFAULT_SNAPLEN: usize = 9216;
/// The smallest `snaplen` (Ethernet + IPv4 + TCP headers with options).
pub const MIN_SNAPLEN: usize = 64;
/// The most frame bytes one capture returns (the pcapng adds 32–40 bytes of framing per frame).
pub const MAX_BYTES: usize = 16 << 20;

/// What went wrong with a capture.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// A parameter is missing or has a bad value (HTTP 400); `.0` names it.
    #[error("{0}: {1}")]
    BadParameter(&'static str, String),
    /// The service is not configured (HTTP 404).
    #[error("service: no service {0} is configured")]
    NoSuchService(String),
    /// Another capture runs (HTTP 409).
    #[error("another capture is running; one at a time")]
    Busy,
    /// This dataplane cannot capture (HTTP 501).
    #[error("this dataplane cannot capture packets")]
    Unsupported,
    /// The pcapng could not be written.
    #[error("writing the pcapng failed: {0}")]
    Pcapng(String),
}

/// The bounds of one capture: it returns at the first one reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaptureLimits {
    /// Frames.
    pub count: usize,
    /// Wall time.
    pub duration: Duration,
    /// Bytes kept of each frame.
    pub snaplen: usize,
    /// Frame bytes in all.
    pub bytes: usize,
}

/// A parsed `GET /api/v1/capture` query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureRequest {
    /// Which service.
    pub service: ServiceKey,
    /// BPF expression (tcpdump syntax), if any.
    pub filter: Option<String>,
    /// The bounds.
    pub limits: CaptureLimits,
}

/// The query parameters `GET /api/v1/capture` knows.
pub const PARAMETERS: &[&str] = &["service", "filter", "count", "seconds", "snaplen"];

impl CaptureRequest {
    /// Parses the query parameters (`get` returns a parameter's value);
    /// `parse_service` reads `protocol/vip/port`.
    pub fn parse<'a>(
        get: impl Fn(&str) -> Option<&'a str>,
        parse_service: impl Fn(&str) -> Option<ServiceKey>,
    ) -> Result<Self, CaptureError> {
        let service = match get("service") {
            None => {
                return Err(CaptureError::BadParameter(
                    "service",
                    "missing; expected protocol/vip/port, e.g. tcp/10.0.0.100/80 or tcp/2001:db8::100/80".into(),
                ))
            }
            Some(v) => parse_service(v).ok_or_else(|| {
                CaptureError::BadParameter(
                    "service",
                    format!("invalid service `{v}`; expected protocol/vip/port, e.g. tcp/10.0.0.100/80 or tcp/2001:db8::100/80"),
                )
            })?,
        };
        let number = |name: &'static str, default: usize, min: usize, max: usize| -> Result<usize, CaptureError> {
            match get(name) {
                None => Ok(default),
                Some(v) => match v.parse::<usize>() {
                    Ok(n) if (min..=max).contains(&n) => Ok(n),
                    _ => Err(CaptureError::BadParameter(name, format!("invalid value `{v}`; expected {min} ..= {max}"))),
                },
            }
        };
        let count = number("count", DEFAULT_COUNT, 1, MAX_COUNT)?;
        let seconds = number("seconds", DEFAULT_SECONDS as usize, 1, MAX_SECONDS as usize)?;
        let snaplen = number("snaplen", DEFAULT_SNAPLEN, MIN_SNAPLEN, DEFAULT_SNAPLEN)?;
        let filter = match get("filter") {
            None => None,
            Some(f) if f.trim().is_empty() => None,
            Some(f) => {
                // Compiled here so that a bad expression is a 400 before anything starts.
                compile_bpf(f)?;
                Some(f.to_owned())
            }
        };
        Ok(CaptureRequest {
            service,
            filter,
            limits: CaptureLimits { count, duration: Duration::from_secs(seconds as u64), snaplen, bytes: MAX_BYTES },
        })
    }
}

/// Compiles a BPF expression (tcpdump syntax) for Ethernet frames.
pub fn compile_bpf(expr: &str) -> Result<pcap::BpfProgram, CaptureError> {
    let dead = pcap::Capture::dead(pcap::Linktype::ETHERNET)
        .map_err(|e| CaptureError::BadParameter("filter", format!("libpcap is not usable here: {e}")))?;
    dead.compile(expr, true).map_err(|e| CaptureError::BadParameter("filter", format!("invalid BPF expression `{expr}`: {e}")))
}

/// An address and port, of either family.
type Endpoint = (IpAddr, u16);

/// Which frames belong to one service (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceMatch {
    protocol: u8,
    virtual_end: Endpoint,
    /// NAT reals: any other end but these (every service's FULLNAT local addresses).
    nat_reals: Vec<Endpoint>,
    not_local: Vec<IpAddr>,
    /// FULLNAT reals: the other end is one of these (this service's local addresses).
    fullnat_reals: Vec<Endpoint>,
    local: Vec<IpAddr>,
}

impl ServiceMatch {
    /// The match for `service` of `config`.
    pub fn new(config: &Config, service: &ServiceConfig) -> Self {
        let mut all_local: Vec<IpAddr> = config.services.iter().flat_map(|s| s.local_addresses.iter().copied()).collect();
        all_local.sort_unstable();
        all_local.dedup();
        let mut nat_reals = Vec::new();
        let mut fullnat_reals = Vec::new();
        for r in &service.reals {
            let end = (r.address, r.port.unwrap_or(service.port));
            match r.forward.unwrap_or(service.forward) {
                ForwardMode::Nat => nat_reals.push(end),
                ForwardMode::FullNat => fullnat_reals.push(end),
                ForwardMode::Dr | ForwardMode::Tun => {}
            }
        }
        ServiceMatch {
            protocol: service.protocol.ip_proto(),
            virtual_end: (service.vip, service.port),
            nat_reals,
            not_local: all_local,
            fullnat_reals,
            local: service.local_addresses.clone(),
        }
    }

    /// Whether the Ethernet frame `frame` belongs to the service.
    pub fn matches(&self, frame: &[u8]) -> bool {
        let Some((version, ip)) = ip_payload(frame) else { return false };
        self.matches_ip(version, ip, true)
    }

    /// Whether the IP packet `ip` of `version` (4 or 6) belongs to the
    /// service; `outer` packets may tunnel one inner packet, which is matched instead.
    fn matches_ip(&self, version: u8, ip: &[u8], outer: bool) -> bool {
        let Some(p) = IpPorts::parse(version, ip) else { return false };
        if outer {
            match p.protocol {
                IPPROTO_IPIP => return self.matches_ip(4, p.upper, false),
                IPPROTO_IPV6 => return self.matches_ip(6, p.upper, false),
                _ => {}
            }
        }
        if p.protocol != self.protocol {
            return false;
        }
        let Some(&[s0, s1, d0, d1]) = p.upper.get(..4) else { return false };
        let (src, dst) = ((p.src, u16::from_be_bytes([s0, s1])), (p.dst, u16::from_be_bytes([d0, d1])));
        if src == self.virtual_end || dst == self.virtual_end {
            return true;
        }
        let real_side = |reals: &[Endpoint], other_ok: &dyn Fn(IpAddr) -> bool| {
            (reals.contains(&dst) && other_ok(p.src)) || (reals.contains(&src) && other_ok(p.dst))
        };
        real_side(&self.nat_reals, &|other| !self.not_local.contains(&other))
            || real_side(&self.fullnat_reals, &|other| self.local.contains(&other))
    }
}

/// IP protocol / IPv6 next header: IPv4 encapsulated (IPIP, RFC 2003; IPv4 in IPv6, RFC 2473).
const IPPROTO_IPIP: u8 = 4;
/// IP protocol / IPv6 next header: IPv6 encapsulated (IPv6 in IPv4, RFC 4213; IPv6 in IPv6, RFC 2473).
const IPPROTO_IPV6: u8 = 41;

/// The IP packet of an Ethernet frame (after up to two VLAN tags) and its
/// version (4 or 6), if it is one.
fn ip_payload(frame: &[u8]) -> Option<(u8, &[u8])> {
    let mut at = 12;
    for _ in 0..3 {
        let ethertype = u16::from_be_bytes([*frame.get(at)?, *frame.get(at + 1)?]);
        match ethertype {
            0x0800 => return Some((4, frame.get(at + 2..)?)),
            0x86dd => return Some((6, frame.get(at + 2..)?)),
            0x8100 | 0x88a8 => at += 4,
            _ => return None,
        }
    }
    None
}

/// The addresses and upper-layer protocol of an IP packet, and the bytes
/// after its headers (first fragments and whole packets only: a later
/// fragment carries neither ports nor a tunnelled header).
struct IpPorts<'a> {
    /// IPv4 protocol, or the IPv6 next header after the extension headers.
    protocol: u8,
    src: IpAddr,
    dst: IpAddr,
    /// The upper-layer header (TCP/UDP ports first) or the tunnelled packet.
    upper: &'a [u8],
}

impl<'a> IpPorts<'a> {
    /// Parses `ip`, which must be of `version` (the ethertype's, or the tunnel's).
    fn parse(version: u8, ip: &'a [u8]) -> Option<Self> {
        match version {
            4 => Self::parse_v4(ip),
            6 => Self::parse_v6(ip),
            _ => None,
        }
    }

    fn parse_v4(ip: &'a [u8]) -> Option<Self> {
        let first = *ip.first()?;
        let header_len = usize::from(first & 0x0f) * 4;
        if first >> 4 != 4 || header_len < 20 || ip.len() < header_len {
            return None;
        }
        let fragment_offset = u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff;
        if fragment_offset != 0 {
            return None;
        }
        Some(IpPorts {
            protocol: ip[9],
            src: IpAddr::V4(Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15])),
            dst: IpAddr::V4(Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19])),
            upper: &ip[header_len..],
        })
    }

    /// The extension headers (hop-by-hop, routing, destination options,
    /// fragment) are walked by the dataplane's bounded walker, inside the
    /// payload length; a malformed or overlong chain is no match.
    fn parse_v6(ip: &'a [u8]) -> Option<Self> {
        let packet = Ipv6Packet::new_checked(ip).ok()?;
        let (first, src, dst) = (packet.next_header(), packet.src_addr(), packet.dst_addr());
        let payload = packet.into_payload();
        let chain = ipv6_ext::walk(first, payload).ok()?;
        if chain.fragment.is_some_and(|f| !f.is_first()) {
            return None;
        }
        Some(IpPorts { protocol: chain.protocol, src: IpAddr::V6(src), dst: IpAddr::V6(dst), upper: payload.get(chain.offset..)? })
    }
}

/// The per-worker frame matcher: the service, then the BPF filter if any.
pub struct FrameFilter {
    service: ServiceMatch,
    bpf: Option<pcap::BpfProgram>,
}

impl std::fmt::Debug for FrameFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameFilter").field("service", &self.service).field("bpf", &self.bpf.is_some()).finish()
    }
}

impl FrameFilter {
    /// The matcher of `service` and `filter` (compiled for this matcher alone:
    /// libpcap's program is used by one thread).
    pub fn new(service: ServiceMatch, filter: Option<&str>) -> Result<Self, CaptureError> {
        Ok(FrameFilter { service, bpf: filter.map(compile_bpf).transpose()? })
    }

    /// Whether `frame` is captured.
    pub fn matches(&self, frame: &[u8]) -> bool {
        self.service.matches(frame) && self.bpf.as_ref().is_none_or(|p| p.filter(frame))
    }
}

/// Received or sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// As received by the port.
    Inbound,
    /// As sent by the port.
    Outbound,
}

/// One captured frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedFrame {
    /// Port index (config order).
    pub port: u16,
    /// Received or sent.
    pub direction: Direction,
    /// Since the Unix epoch.
    pub timestamp: Duration,
    /// Length on the wire.
    pub orig_len: u32,
    /// The first `snaplen` bytes.
    pub data: Vec<u8>,
}

/// Why a capture ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// `count` frames captured.
    Count,
    /// `seconds` elapsed.
    Seconds,
    /// The byte bound reached.
    Bytes,
}

impl StopReason {
    /// The name shown in the `X-Rvs-Capture-Stop` header.
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::Count => "count",
            StopReason::Seconds => "seconds",
            StopReason::Bytes => "bytes",
        }
    }
}

/// Gathers frames until the first bound is reached.
#[derive(Debug)]
pub struct Collector {
    limits: CaptureLimits,
    deadline: Instant,
    frames: Vec<CapturedFrame>,
    bytes: usize,
    stopped: Option<StopReason>,
}

impl Collector {
    /// A collector started at `now`.
    pub fn new(limits: CaptureLimits, now: Instant) -> Self {
        Collector { limits, deadline: now + limits.duration, frames: Vec::new(), bytes: 0, stopped: None }
    }

    /// Adds a frame (cut to `snaplen`); false once a bound is reached (the
    /// frame that would exceed the byte bound is left out).
    pub fn push(&mut self, mut frame: CapturedFrame) -> bool {
        if self.stopped.is_some() {
            return false;
        }
        frame.data.truncate(self.limits.snaplen);
        if self.bytes + frame.data.len() > self.limits.bytes {
            self.stopped = Some(StopReason::Bytes);
            return false;
        }
        self.bytes += frame.data.len();
        self.frames.push(frame);
        if self.frames.len() >= self.limits.count {
            self.stopped = Some(StopReason::Count);
        }
        self.stopped.is_none()
    }

    /// Whether the capture is over at `now` (a bound reached or time up).
    pub fn done(&mut self, now: Instant) -> bool {
        if self.stopped.is_none() && now >= self.deadline {
            self.stopped = Some(StopReason::Seconds);
        }
        self.stopped.is_some()
    }

    /// How long until the time bound, from `now`.
    pub fn remaining(&self, now: Instant) -> Duration {
        self.deadline.saturating_duration_since(now)
    }

    /// The frames and why the capture ended.
    pub fn finish(self) -> (Vec<CapturedFrame>, StopReason) {
        (self.frames, self.stopped.unwrap_or(StopReason::Seconds))
    }
}

/// The outcome of a capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureResult {
    /// The frames, in the order they were collected.
    pub frames: Vec<CapturedFrame>,
    /// Why it ended.
    pub stopped: StopReason,
    /// Matching frames the workers could not hand over (their ring was full).
    pub ring_full: u64,
}

/// pcapng `epb_flags` direction bits.
const EPB_INBOUND: u32 = 1;
const EPB_OUTBOUND: u32 = 2;

/// The pcapng file of `frames`: one interface per port (named after it),
/// nanosecond timestamps, each frame's direction in its `epb_flags`.
pub fn to_pcapng(frames: &[CapturedFrame], port_names: &[String], snaplen: usize, comment: &str) -> Result<Vec<u8>, CaptureError> {
    let err = |e: pcap_file::PcapError| CaptureError::Pcapng(e.to_string());
    let mut writer = PcapNgWriter::new(Vec::new()).map_err(err)?;
    let ports = frames.iter().map(|f| usize::from(f.port) + 1).max().unwrap_or(0).max(port_names.len());
    for i in 0..ports {
        let name = port_names.get(i).cloned().unwrap_or_else(|| format!("port{i}"));
        let mut options = vec![InterfaceDescriptionOption::IfName(Cow::Owned(name)), InterfaceDescriptionOption::IfTsResol(9)];
        if i == 0 && !comment.is_empty() {
            options.push(InterfaceDescriptionOption::IfDescription(Cow::Owned(comment.to_owned())));
        }
        let idb = InterfaceDescriptionBlock { linktype: DataLink::ETHERNET, snaplen: snaplen as u32, options };
        writer.write_pcapng_block(idb).map_err(err)?;
    }
    for f in frames {
        let flags = match f.direction {
            Direction::Inbound => EPB_INBOUND,
            Direction::Outbound => EPB_OUTBOUND,
        };
        let epb = EnhancedPacketBlock {
            interface_id: u32::from(f.port),
            timestamp: f.timestamp,
            original_len: f.orig_len,
            data: Cow::Borrowed(&f.data),
            options: vec![EnhancedPacketOption::Flags(flags)],
        };
        writer.write_pcapng_block(epb).map_err(err)?;
    }
    Ok(writer.into_inner())
}

/// The service `key` of `config`, or the 404 error.
pub fn find_service<'a>(config: &'a Config, key: &ServiceKey) -> Result<&'a ServiceConfig, CaptureError> {
    config
        .services
        .iter()
        .find(|s| s.protocol == key.protocol && s.vip == key.vip && s.port == key.port)
        .ok_or_else(|| CaptureError::NoSuchService(format!("{}/{}/{}", key.protocol, key.vip, key.port)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rvs_dataplane::snapshot::Protocol;

    const CONFIG: &str = r#"{ "eal": ["--no-huge"], "main_lcore": 0, "workers": [1],
        "ports": [ { "name": "lan0", "device": "net_af_packet0,iface=dp0", "addresses": ["10.0.0.1/24", "10.1.0.1/24", "2001:db8::1/64", "2001:db8:1::1/64"] } ],
        "services": [
          { "protocol": "tcp", "vip": "10.0.0.101", "port": 80, "forward": "nat",
            "reals": [ { "address": "10.1.0.11" }, { "address": "10.1.0.12" } ] },
          { "protocol": "tcp", "vip": "10.0.0.101", "port": 8080, "forward": "nat",
            "reals": [ { "address": "10.1.0.11" } ] },
          { "protocol": "tcp", "vip": "10.0.0.100", "port": 80, "forward": "dr",
            "reals": [ { "address": "10.1.0.11" } ] },
          { "protocol": "tcp", "vip": "10.0.0.102", "port": 80, "forward": "tun",
            "reals": [ { "address": "10.1.0.11" } ] },
          { "protocol": "tcp", "vip": "10.0.0.103", "port": 80, "forward": "fullnat", "local_addresses": ["10.1.0.200"],
            "reals": [ { "address": "10.1.0.11" } ] },
          { "protocol": "tcp", "vip": "2001:db8::101", "port": 80, "forward": "nat",
            "reals": [ { "address": "2001:db8:1::11" }, { "address": "2001:db8:1::12", "port": 8080 } ] },
          { "protocol": "tcp", "vip": "2001:db8::103", "port": 80, "forward": "fullnat", "local_addresses": ["2001:db8:1::200"],
            "reals": [ { "address": "2001:db8:1::11" } ] },
          { "protocol": "tcp", "vip": "2001:db8::102", "port": 80, "forward": "tun",
            "reals": [ { "address": "2001:db8:1::11" }, { "address": "10.1.0.12" } ] },
          { "protocol": "tcp", "vip": "10.0.0.104", "port": 80, "forward": "tun",
            "reals": [ { "address": "2001:db8:1::12" } ] },
          { "protocol": "tcp", "vip": "2001:db8::104", "port": 80, "forward": "fullnat", "local_addresses": ["10.1.0.204"],
            "reals": [ { "address": "10.1.0.11" } ] } ] }"#;

    fn config() -> Config {
        Config::from_json(CONFIG).expect("valid config")
    }

    fn service_match(vip: &str, port: u16) -> ServiceMatch {
        let c = config();
        let key = ServiceKey { protocol: Protocol::Tcp, vip: vip.parse().expect("ip"), port };
        ServiceMatch::new(&c, find_service(&c, &key).expect("configured"))
    }

    /// An Ethernet + IPv4 + TCP frame (no checksums: the matcher does not read them).
    fn tcp(src: &str, sport: u16, dst: &str, dport: u16) -> Vec<u8> {
        let mut f = vec![0u8; 14];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f.extend(ipv4(6, src, dst, &tcp_header(sport, dport)));
        f
    }

    fn tcp_header(sport: u16, dport: u16) -> Vec<u8> {
        let mut t = vec![0u8; 20];
        t[0..2].copy_from_slice(&sport.to_be_bytes());
        t[2..4].copy_from_slice(&dport.to_be_bytes());
        t[12] = 5 << 4;
        t
    }

    fn ipv4(proto: u8, src: &str, dst: &str, payload: &[u8]) -> Vec<u8> {
        let mut ip = vec![0u8; 20];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
        ip[8] = 64;
        ip[9] = proto;
        ip[12..16].copy_from_slice(&src.parse::<Ipv4Addr>().expect("ip").octets());
        ip[16..20].copy_from_slice(&dst.parse::<Ipv4Addr>().expect("ip").octets());
        ip.extend_from_slice(payload);
        ip
    }

    #[test]
    fn nat_service_matches_both_sides_and_nothing_else() {
        let m = service_match("10.0.0.101", 80);
        // client → VIP as received, real's reply as received, rewritten frames as sent.
        assert!(m.matches(&tcp("10.0.0.2", 40000, "10.0.0.101", 80)));
        assert!(m.matches(&tcp("10.0.0.2", 40000, "10.1.0.12", 80)));
        assert!(m.matches(&tcp("10.1.0.11", 80, "10.0.0.2", 40000)));
        assert!(m.matches(&tcp("10.0.0.101", 80, "10.0.0.2", 40000)));
        // another port of the VIP, another service's real port, FULLNAT's side of the same real, UDP.
        assert!(!m.matches(&tcp("10.0.0.2", 40000, "10.0.0.101", 8080)));
        assert!(!m.matches(&tcp("10.0.0.2", 40000, "10.1.0.11", 8080)));
        assert!(!m.matches(&tcp("10.1.0.200", 5000, "10.1.0.11", 80)));
        assert!(!m.matches(&tcp("10.1.0.11", 80, "10.1.0.200", 5000)));
        let mut udp = tcp("10.0.0.2", 40000, "10.0.0.101", 80);
        udp[14 + 9] = 17;
        assert!(!m.matches(&udp));
    }

    #[test]
    fn fullnat_real_side_needs_the_local_address() {
        let m = service_match("10.0.0.103", 80);
        assert!(m.matches(&tcp("10.0.0.2", 40000, "10.0.0.103", 80)));
        assert!(m.matches(&tcp("10.1.0.200", 5000, "10.1.0.11", 80)));
        assert!(m.matches(&tcp("10.1.0.11", 80, "10.1.0.200", 5000)));
        assert!(!m.matches(&tcp("10.0.0.2", 40000, "10.1.0.11", 80)), "a NAT frame to the same real");
    }

    #[test]
    fn tun_matches_the_inner_packet_and_vlan_tags_are_skipped() {
        let m = service_match("10.0.0.102", 80);
        let inner = ipv4(6, "10.0.0.2", "10.0.0.102", &tcp_header(40000, 80));
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x81, 0x00, 0x00, 0x05, 0x08, 0x00]);
        f.extend(ipv4(IPPROTO_IPIP, "10.1.0.1", "10.1.0.11", &inner));
        assert!(m.matches(&f));
        let other = ipv4(6, "10.0.0.2", "10.0.0.100", &tcp_header(40000, 80));
        let mut g = vec![0u8; 12];
        g.extend_from_slice(&[0x08, 0x00]);
        g.extend(ipv4(IPPROTO_IPIP, "10.1.0.1", "10.1.0.11", &other));
        assert!(!m.matches(&g));
    }

    #[test]
    fn truncated_and_odd_frames_never_match_nor_panic() {
        let m = service_match("10.0.0.101", 80);
        let full = tcp("10.0.0.2", 40000, "10.0.0.101", 80);
        for len in 0..full.len() {
            let _ = m.matches(&full[..len]);
        }
        assert!(!m.matches(&full[..14 + 20 + 3]));
        let mut frag = full.clone();
        frag[14 + 7] = 8; // offset 64 bytes
        assert!(!m.matches(&frag));
        let mut bad_ihl = full;
        bad_ihl[14] = 0x44;
        assert!(!m.matches(&bad_ihl));
    }

    #[test]
    fn bpf_filter_applies_after_the_service() {
        let f = FrameFilter::new(service_match("10.0.0.101", 80), Some("src host 10.0.0.2")).expect("compiles");
        assert!(f.matches(&tcp("10.0.0.2", 40000, "10.0.0.101", 80)));
        assert!(!f.matches(&tcp("10.0.0.3", 40000, "10.0.0.101", 80)));
        assert!(!f.matches(&tcp("10.0.0.2", 40000, "10.0.0.100", 80)), "the service still decides");
    }

    // IPv6, tunnels and NAT64: frames built by etherparse, not by our own builders.

    const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 2];

    fn v6(s: &str) -> [u8; 16] {
        s.parse::<std::net::Ipv6Addr>().expect("an IPv6 address").octets()
    }

    fn v4(s: &str) -> [u8; 4] {
        s.parse::<Ipv4Addr>().expect("an IPv4 address").octets()
    }

    /// Ethernet + an IPv4 or IPv6 header (by the addresses), to be completed.
    fn ep_ip(src: &str, dst: &str) -> etherparse::PacketBuilderStep<etherparse::IpHeaders> {
        let step = etherparse::PacketBuilder::ethernet2(MAC_A, MAC_B);
        match (src.parse::<IpAddr>().expect("ip"), dst.parse::<IpAddr>().expect("ip")) {
            (IpAddr::V6(s), IpAddr::V6(d)) => step.ipv6(s.octets(), d.octets(), 64),
            (IpAddr::V4(s), IpAddr::V4(d)) => step.ipv4(s.octets(), d.octets(), 64),
            _ => panic!("addresses of one family"),
        }
    }

    /// Ethernet + IPv4 or IPv6 (by the addresses) + TCP (a few payload bytes).
    fn ep_tcp(src: &str, sport: u16, dst: &str, dport: u16) -> Vec<u8> {
        let mut f = Vec::new();
        ep_ip(src, dst).tcp(sport, dport, 1, 1024).write(&mut f, b"GET /").expect("a TCP frame");
        f
    }

    /// Asserts whether `m` matches (`want`) the TCP frame of each flow (source, source port, destination, destination port).
    fn assert_flows(m: &ServiceMatch, want: bool, flows: &[(&str, u16, &str, u16)]) {
        for &(src, sport, dst, dport) in flows {
            assert_eq!(m.matches(&ep_tcp(src, sport, dst, dport)), want, "{src} port {sport} → {dst} port {dport}");
        }
    }

    /// Ethernet + IPv6 with the extension headers `exts` + TCP.
    fn ep_tcp6_ext(src: &str, sport: u16, dst: &str, dport: u16, exts: etherparse::Ipv6Extensions) -> Vec<u8> {
        let header = etherparse::Ipv6Header { source: v6(src), destination: v6(dst), hop_limit: 64, ..Default::default() };
        let mut f = Vec::new();
        etherparse::PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ip(etherparse::IpHeaders::Ipv6(header, exts))
            .tcp(sport, dport, 1, 1024)
            .write(&mut f, b"GET /")
            .expect("an IPv6 frame with extension headers");
        f
    }

    /// An IPv4 (`inner_v4`) or IPv6 packet carrying TCP, without link layer.
    fn ep_inner(inner_v4: bool, src: &str, sport: u16, dst: &str, dport: u16) -> Vec<u8> {
        let builder = if inner_v4 {
            etherparse::PacketBuilder::ipv4(v4(src), v4(dst), 64)
        } else {
            etherparse::PacketBuilder::ipv6(v6(src), v6(dst), 64)
        };
        let mut p = Vec::new();
        builder.tcp(sport, dport, 1, 1024).write(&mut p, b"GET /").expect("an inner packet");
        p
    }

    /// Ethernet + an outer IPv6 (or IPv4, by the addresses) header tunnelling `inner`.
    fn ep_tunnel(src: &str, dst: &str, inner: &[u8]) -> Vec<u8> {
        let proto = if inner[0] >> 4 == 4 { etherparse::IpNumber::IPV4 } else { etherparse::IpNumber::IPV6 };
        let mut f = Vec::new();
        ep_ip(src, dst).write(&mut f, proto, inner).expect("a tunnel frame");
        f
    }

    fn raw_ext(payload: &[u8]) -> etherparse::Ipv6RawExtHeader {
        etherparse::Ipv6RawExtHeader::new_raw(etherparse::IpNumber::TCP, payload).expect("an extension header")
    }

    fn fragment(offset_units: u16, more: bool) -> etherparse::Ipv6FragmentHeader {
        let offset = etherparse::IpFragOffset::try_new(offset_units).expect("an offset");
        etherparse::Ipv6FragmentHeader::new(etherparse::IpNumber::TCP, offset, more, 0x1234)
    }

    #[test]
    fn ipv6_nat_service_matches_both_sides_and_nothing_else() {
        let m = service_match("2001:db8::101", 80);
        // client → VIP and VIP → client, the rewritten frame to each real (one with a port of its own) and each real's reply.
        let (client, vip, rs1, rs2, lip) = ("2001:db8::2", "2001:db8::101", "2001:db8:1::11", "2001:db8:1::12", "2001:db8:1::200");
        let both_sides = [(client, 40000, vip, 80), (vip, 80, client, 40000), (client, 40000, rs1, 80)];
        assert_flows(&m, true, &both_sides);
        assert_flows(&m, true, &[(rs1, 80, client, 40000), (client, 40000, rs2, 8080), (rs2, 8080, client, 40000)]);
        // another port, the real's other port, FULLNAT's side of the same real, the IPv4 VIP.
        assert_flows(&m, false, &[(client, 40000, vip, 81), (client, 40000, rs2, 80), (lip, 5000, rs1, 80), (rs1, 80, lip, 5000)]);
        assert_flows(&m, false, &[("10.0.0.2", 40000, "10.0.0.101", 80)]);
        // UDP to the VIP and port is another service.
        let mut udp = Vec::new();
        etherparse::PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv6(v6(client), v6(vip), 64)
            .udp(40000, 80)
            .write(&mut udp, b"x")
            .expect("a UDP frame");
        assert!(!m.matches(&udp));
        // An IPv4 service does not see the IPv6 frames.
        assert_flows(&service_match("10.0.0.101", 80), false, &both_sides);
    }

    #[test]
    fn ipv6_fullnat_real_side_needs_the_local_address() {
        let m = service_match("2001:db8::103", 80);
        let (client, rs1, lip) = ("2001:db8::2", "2001:db8:1::11", "2001:db8:1::200");
        assert_flows(&m, true, &[(client, 40000, "2001:db8::103", 80), (lip, 5000, rs1, 80), (rs1, 80, lip, 5000)]);
        // A NAT frame to the same real; a local address that is not this service's.
        assert_flows(&m, false, &[(client, 40000, rs1, 80), ("2001:db8:1::201", 5000, rs1, 80)]);
    }

    #[test]
    fn nat64_matches_the_ipv6_client_side_and_the_ipv4_real_side() {
        let m = service_match("2001:db8::104", 80);
        let (client, vip, rs1, lip) = ("2001:db8::2", "2001:db8::104", "10.1.0.11", "10.1.0.204");
        assert_flows(&m, true, &[(client, 40000, vip, 80), (vip, 80, client, 40000), (lip, 5000, rs1, 80), (rs1, 80, lip, 5000)]);
        // Another service's local address; the IPv4 NAT service's frame to the same real.
        assert_flows(&m, false, &[("10.1.0.200", 5000, rs1, 80), ("10.0.0.2", 40000, rs1, 80)]);
        // The IPv4 NAT service of that real leaves NAT64's local address out.
        assert_flows(&service_match("10.0.0.101", 80), false, &[(lip, 5000, rs1, 80)]);
    }

    #[test]
    fn tunnels_match_the_inner_packet_in_every_family_pair() {
        // 6in6: the IPv6 VIP to an IPv6 real.
        let m = service_match("2001:db8::102", 80);
        let inner6 = ep_inner(false, "2001:db8::2", 40000, "2001:db8::102", 80);
        assert!(m.matches(&ep_tunnel("2001:db8:1::1", "2001:db8:1::11", &inner6)));
        // 6in4: the same VIP to its IPv4 real.
        assert!(m.matches(&ep_tunnel("10.1.0.1", "10.1.0.12", &inner6)));
        // 4in6: an IPv4 VIP to an IPv6 real.
        let inner4 = ep_inner(true, "10.0.0.2", 40000, "10.0.0.104", 80);
        assert!(service_match("10.0.0.104", 80).matches(&ep_tunnel("2001:db8:1::1", "2001:db8:1::12", &inner4)));
        // Another service's inner packet, and the outer addresses alone, do not match.
        let other = ep_inner(false, "2001:db8::2", 40000, "2001:db8::101", 80);
        assert!(!m.matches(&ep_tunnel("2001:db8:1::1", "2001:db8:1::11", &other)));
        assert!(!m.matches(&ep_tunnel("2001:db8:1::1", "2001:db8:1::11", &inner4)));
        // A tunnel inside a tunnel is not followed.
        let nested = ep_tunnel("2001:db8:1::1", "2001:db8:1::11", &inner6);
        assert!(!m.matches(&ep_tunnel("2001:db8:1::1", "2001:db8:1::11", &nested[14..])));
        // The inner packet's version must be the one the outer header names.
        let mut lying = ep_tunnel("2001:db8:1::1", "2001:db8:1::11", &inner6);
        lying[14 + 6] = 4; // next header "IPv4", an IPv6 packet follows
        assert!(!m.matches(&lying));
    }

    #[test]
    fn ipv6_extension_headers_are_walked_to_the_ports() {
        let m = service_match("2001:db8::101", 80);
        let padn = [1, 4, 0, 0, 0, 0];
        let exts = etherparse::Ipv6Extensions {
            hop_by_hop_options: Some(raw_ext(&padn)),
            destination_options: Some(raw_ext(&padn)),
            routing: Some(etherparse::Ipv6RoutingExtensions { routing: raw_ext(&[4, 0, 0, 0, 0, 0]), final_destination_options: None }),
            fragment: None,
            auth: None,
        };
        let f = ep_tcp6_ext("2001:db8::2", 40000, "2001:db8::101", 80, exts.clone());
        assert_eq!(f[14 + 6], 0, "hop-by-hop first");
        assert!(m.matches(&f));
        assert!(!m.matches(&ep_tcp6_ext("2001:db8::2", 40000, "2001:db8::101", 81, exts)));
        // A first fragment and an atomic fragment carry the ports.
        let first = etherparse::Ipv6Extensions { fragment: Some(fragment(0, true)), ..Default::default() };
        assert!(m.matches(&ep_tcp6_ext("2001:db8::2", 40000, "2001:db8::101", 80, first)));
        let atomic = etherparse::Ipv6Extensions { fragment: Some(fragment(0, false)), ..Default::default() };
        assert!(m.matches(&ep_tcp6_ext("2001:db8:1::11", 80, "2001:db8::2", 40000, atomic)));
    }

    /// Ethernet + IPv6 + `n` destination options headers (etherparse writes one
    /// at most, so the chain is laid out by hand) + TCP to 2001:db8::101 port 80.
    fn dest_opts_chain(n: usize) -> Vec<u8> {
        let mut exts = Vec::new();
        for i in 0..n {
            let next = if i + 1 == n { 6 } else { 60 };
            exts.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]);
        }
        exts.extend_from_slice(&ep_inner(false, "2001:db8::2", 40000, "2001:db8::101", 80)[40..]);
        let mut ip = etherparse::Ipv6Header {
            source: v6("2001:db8::2"),
            destination: v6("2001:db8::101"),
            hop_limit: 64,
            next_header: etherparse::IpNumber::IPV6_DESTINATION_OPTIONS,
            ..Default::default()
        };
        ip.set_payload_length(exts.len()).expect("a payload length");
        let mut f = Vec::new();
        etherparse::Ethernet2Header { source: MAC_A, destination: MAC_B, ether_type: etherparse::EtherType::IPV6 }
            .write(&mut f)
            .expect("an Ethernet header");
        ip.write(&mut f).expect("an IPv6 header");
        f.extend_from_slice(&exts);
        f
    }

    #[test]
    fn ipv6_non_first_fragments_never_match() {
        let m = service_match("2001:db8::101", 80);
        // Bytes that look like the service's TCP header right after the fragment header.
        for more in [true, false] {
            let later = etherparse::Ipv6Extensions { fragment: Some(fragment(8, more)), ..Default::default() };
            assert!(!m.matches(&ep_tcp6_ext("2001:db8::2", 40000, "2001:db8::101", 80, later)));
        }
        let inner6 = ep_inner(false, "2001:db8::2", 40000, "2001:db8::102", 80);
        let later = etherparse::Ipv6Extensions { fragment: Some(fragment(8, true)), ..Default::default() };
        let header =
            etherparse::Ipv6Header { source: v6("2001:db8:1::1"), destination: v6("2001:db8:1::11"), hop_limit: 64, ..Default::default() };
        let mut f = Vec::new();
        etherparse::PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ip(etherparse::IpHeaders::Ipv6(header, later))
            .write(&mut f, etherparse::IpNumber::IPV6, &inner6)
            .expect("a later fragment of a tunnel");
        assert!(!service_match("2001:db8::102", 80).matches(&f), "a later fragment of a tunnel frame");
    }

    #[test]
    fn ipv6_behind_vlan_tags_matches() {
        let m = service_match("2001:db8::101", 80);
        let mut f = Vec::new();
        etherparse::PacketBuilder::ethernet2(MAC_A, MAC_B)
            .double_vlan(etherparse::VlanId::try_new(100).expect("id"), etherparse::VlanId::try_new(5).expect("id"))
            .ipv6(v6("2001:db8::2"), v6("2001:db8::101"), 64)
            .tcp(40000, 80, 1, 1024)
            .write(&mut f, b"GET /")
            .expect("a double-tagged frame");
        assert!(m.matches(&f));
    }

    #[test]
    fn truncated_and_odd_ipv6_frames_never_match_nor_panic() {
        let m = service_match("2001:db8::101", 80);
        let full = ep_tcp("2001:db8::2", 40000, "2001:db8::101", 80);
        assert!(m.matches(&full));
        for len in 0..full.len() {
            assert!(!m.matches(&full[..len]), "cut to {len} bytes (the payload length runs past it)");
        }
        let mut wrong_version = full.clone();
        wrong_version[14] = 0x40;
        assert!(!m.matches(&wrong_version));
        let mut short_payload = full.clone();
        short_payload[14 + 4..14 + 6].copy_from_slice(&3u16.to_be_bytes());
        assert!(!m.matches(&short_payload), "a payload length shorter than the ports");
        // Extension headers running past the payload, a hop-by-hop header not first, too many headers.
        let mut running_past = ep_tcp6_ext(
            "2001:db8::2",
            40000,
            "2001:db8::101",
            80,
            etherparse::Ipv6Extensions { destination_options: Some(raw_ext(&[1, 4, 0, 0, 0, 0])), ..Default::default() },
        );
        running_past[14 + 40 + 1] = 200;
        assert!(!m.matches(&running_past));
        assert!(m.matches(&dest_opts_chain(3)), "a chain of 3 destination options headers");
        assert!(!m.matches(&dest_opts_chain(20)), "more extension headers than the walker's bound");
    }

    proptest::proptest! {
        #[test]
        fn random_bytes_after_an_ipv6_ethertype_never_panic(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200), tunnel in 0u8..3) {
            let m = service_match("2001:db8::102", 80);
            let mut f = vec![0u8; 12];
            f.extend_from_slice(&[0x86, 0xdd]);
            f.extend_from_slice(&body);
            let _ = m.matches(&f);
            // The same bytes as the inner packet of a tunnel, and as a frame of their own.
            if let Some(first) = f.get_mut(14) {
                *first = (*first & 0x0f) | [0x40, 0x60, 0x00][usize::from(tunnel)];
            }
            let outer = ep_tunnel("2001:db8:1::1", "2001:db8:1::11", &f[14..].iter().copied().chain([0; 40]).collect::<Vec<u8>>());
            let _ = m.matches(&outer);
            let _ = m.matches(&body);
        }
    }

    fn params<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<&'a str> {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| *v)
    }

    fn service_key(v: &str) -> Option<ServiceKey> {
        let mut it = v.split('/');
        let protocol = match it.next()? {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            _ => return None,
        };
        Some(ServiceKey { protocol, vip: it.next()?.parse().ok()?, port: it.next()?.parse().ok()? })
    }

    #[test]
    fn parameters_are_checked_and_errors_name_them() {
        let ok = CaptureRequest::parse(params(&[("service", "tcp/10.0.0.101/80")]), service_key).expect("defaults");
        assert_eq!(ok.limits.count, DEFAULT_COUNT);
        assert_eq!(ok.limits.duration, Duration::from_secs(DEFAULT_SECONDS));
        assert_eq!(ok.filter, None);
        let r = CaptureRequest::parse(
            params(&[("service", "tcp/10.0.0.101/80"), ("count", "5"), ("seconds", "3"), ("filter", "tcp port 80"), ("snaplen", "128")]),
            service_key,
        )
        .expect("valid");
        assert_eq!(r.limits, CaptureLimits { count: 5, duration: Duration::from_secs(3), snaplen: 128, bytes: MAX_BYTES });
        assert_eq!(r.filter.as_deref(), Some("tcp port 80"));
        for (pairs, name) in [
            (&[("count", "5")][..], "service"),
            (&[("service", "tcp/10.0.0.101")][..], "service"),
            (&[("service", "tcp/10.0.0.101/80"), ("count", "0")][..], "count"),
            (&[("service", "tcp/10.0.0.101/80"), ("count", "10001")][..], "count"),
            (&[("service", "tcp/10.0.0.101/80"), ("count", "x")][..], "count"),
            (&[("service", "tcp/10.0.0.101/80"), ("seconds", "61")][..], "seconds"),
            (&[("service", "tcp/10.0.0.101/80"), ("seconds", "-1")][..], "seconds"),
            (&[("service", "tcp/10.0.0.101/80"), ("snaplen", "10")][..], "snaplen"),
            (&[("service", "tcp/10.0.0.101/80"), ("filter", "tcp port")][..], "filter"),
        ] {
            match CaptureRequest::parse(params(pairs), service_key) {
                Err(CaptureError::BadParameter(n, msg)) => assert_eq!(n, name, "{pairs:?}: {msg}"),
                other => panic!("{pairs:?}: expected a bad {name}, got {other:?}"),
            }
        }
    }

    fn frame(len: usize) -> CapturedFrame {
        CapturedFrame {
            port: 0,
            direction: Direction::Inbound,
            timestamp: Duration::from_secs(1),
            orig_len: len as u32,
            data: vec![7; len],
        }
    }

    #[test]
    fn collector_stops_at_the_first_bound() {
        let t0 = Instant::now();
        let limits = CaptureLimits { count: 3, duration: Duration::from_secs(5), snaplen: 100, bytes: 1000 };
        let mut c = Collector::new(limits, t0);
        assert!(c.push(frame(60)) && c.push(frame(200)));
        assert!(!c.done(t0 + Duration::from_secs(4)));
        assert!(!c.push(frame(60)), "the third frame reaches count");
        assert!(!c.push(frame(60)), "nothing after the end");
        assert!(c.done(t0));
        let (frames, why) = c.finish();
        assert_eq!((frames.len(), why), (3, StopReason::Count));
        assert_eq!(frames[1].data.len(), 100, "cut to snaplen");
        assert_eq!(frames[1].orig_len, 200);

        let mut c = Collector::new(CaptureLimits { bytes: 150, ..limits }, t0);
        assert!(c.push(frame(100)));
        assert!(!c.push(frame(100)), "past the byte bound");
        let (frames, why) = c.finish();
        assert_eq!((frames.len(), why), (1, StopReason::Bytes));

        let mut c = Collector::new(limits, t0);
        assert!(c.push(frame(10)));
        assert_eq!(c.remaining(t0 + Duration::from_secs(2)), Duration::from_secs(3));
        assert!(c.done(t0 + Duration::from_secs(5)));
        assert_eq!(c.finish().1, StopReason::Seconds);
    }

    #[test]
    fn pcapng_reads_back_with_directions_and_interfaces() {
        let mut a = frame(60);
        a.data = tcp("10.0.0.2", 40000, "10.0.0.101", 80);
        let mut b = a.clone();
        b.direction = Direction::Outbound;
        b.port = 1;
        b.timestamp = Duration::new(1, 500);
        let bytes = to_pcapng(&[a.clone(), b.clone()], &["lan0".into(), "lan1".into()], 9216, "rvs capture").expect("written");
        let mut reader = pcap_file::pcapng::PcapNgReader::new(&bytes[..]).expect("a pcapng");
        let mut packets = Vec::new();
        while let Some(block) = reader.next_block() {
            if let pcap_file::pcapng::Block::EnhancedPacket(p) = block.expect("a block") {
                let flags: Vec<u32> =
                    p.options.iter().filter_map(|o| if let EnhancedPacketOption::Flags(f) = o { Some(*f) } else { None }).collect();
                packets.push((p.interface_id, p.timestamp, p.data.to_vec(), flags));
            }
        }
        assert_eq!(reader.interfaces().len(), 2);
        assert_eq!(packets.len(), 2);
        assert_eq!(packets[0].2, a.data);
        assert_eq!(packets[0].3, vec![EPB_INBOUND]);
        assert_eq!((packets[1].0, packets[1].1), (1, Duration::new(1, 500)));
        assert_eq!(packets[1].3, vec![EPB_OUTBOUND]);
    }
}
