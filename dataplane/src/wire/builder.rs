//! Constructors for complete, valid Ethernet frames, for tests, benchmarks and
//! fixtures across the crate.
//!
//! Every frame has correct IPv4 and L4 checksums. IPv4 headers carry no options,
//! DF set, DSCP 0. TCP/UDP/ICMP frames are not padded (a NIC would pad frames shorter
//! than 60 bytes; the views handle both); ARP frames are padded to 60 bytes.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::ethernet::{self, ethertype, MacAddr};
use super::{arp, icmp, icmpv6, ip_proto, ipv4, ipv6, nd, tcp, udp};
use super::{ArpPacket, IcmpPacket, Icmpv6Packet, Ipv4Packet, Ipv6Packet, TcpSegment, UdpDatagram};

/// Minimum Ethernet frame length without the FCS, as delivered by a NIC.
pub const MIN_FRAME_LEN: usize = 60;

/// Window advertised by [`tcp_frame`].
pub const TCP_WINDOW: u16 = 65535;

const DEFAULT_SRC_MAC: MacAddr = MacAddr([0x02, 0x00, 0x00, 0x00, 0x00, 0x01]);
const DEFAULT_DST_MAC: MacAddr = MacAddr([0x02, 0x00, 0x00, 0x00, 0x00, 0x02]);
const DEFAULT_SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const DEFAULT_DST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);

/// Parameters of [`tcp_frame`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpParams {
    /// Ethernet source.
    pub src_mac: MacAddr,
    /// Ethernet destination.
    pub dst_mac: MacAddr,
    /// 802.1Q VLAN id, if tagged.
    pub vlan: Option<u16>,
    /// IPv4 source.
    pub src: Ipv4Addr,
    /// IPv4 destination.
    pub dst: Ipv4Addr,
    /// TCP source port.
    pub sport: u16,
    /// TCP destination port.
    pub dport: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number.
    pub ack: u32,
    /// Flag byte (see [`tcp::flags`]).
    pub flags: u8,
    /// IPv4 TTL.
    pub ttl: u8,
    /// IPv4 identification.
    pub ident: u16,
    /// TCP payload.
    pub payload: Vec<u8>,
}

impl Default for TcpParams {
    /// A SYN from 10.0.0.1:40000 to 10.0.0.100:80, MACs 02:00:00:00:00:01 ->
    /// 02:00:00:00:00:02, untagged, seq 1, ack 0, TTL 64, ident 1, no payload.
    fn default() -> Self {
        TcpParams {
            src_mac: DEFAULT_SRC_MAC,
            dst_mac: DEFAULT_DST_MAC,
            vlan: None,
            src: DEFAULT_SRC,
            dst: DEFAULT_DST,
            sport: 40000,
            dport: 80,
            seq: 1,
            ack: 0,
            flags: tcp::flags::SYN,
            ttl: 64,
            ident: 1,
            payload: Vec::new(),
        }
    }
}

/// Parameters of [`udp_frame`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpParams {
    /// Ethernet source.
    pub src_mac: MacAddr,
    /// Ethernet destination.
    pub dst_mac: MacAddr,
    /// 802.1Q VLAN id, if tagged.
    pub vlan: Option<u16>,
    /// IPv4 source.
    pub src: Ipv4Addr,
    /// IPv4 destination.
    pub dst: Ipv4Addr,
    /// UDP source port.
    pub sport: u16,
    /// UDP destination port.
    pub dport: u16,
    /// IPv4 TTL.
    pub ttl: u8,
    /// IPv4 identification.
    pub ident: u16,
    /// UDP payload.
    pub payload: Vec<u8>,
}

impl Default for UdpParams {
    /// 10.0.0.1:40000 -> 10.0.0.100:53, same MACs as [`TcpParams::default`],
    /// untagged, TTL 64, ident 1, no payload.
    fn default() -> Self {
        UdpParams {
            src_mac: DEFAULT_SRC_MAC,
            dst_mac: DEFAULT_DST_MAC,
            vlan: None,
            src: DEFAULT_SRC,
            dst: DEFAULT_DST,
            sport: 40000,
            dport: 53,
            ttl: 64,
            ident: 1,
            payload: Vec::new(),
        }
    }
}

/// Ethernet header length for an optional VLAN tag.
fn eth_len(vlan: Option<u16>) -> usize {
    if vlan.is_some() {
        ethernet::VLAN_HEADER_LEN
    } else {
        ethernet::HEADER_LEN
    }
}

/// Clamps a length to the 16-bit IPv4 total-length field.
fn len16(n: usize) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

/// Writes the Ethernet and IPv4 headers into `frame` (already sized to the full frame
/// length) and returns the offset of the L4 header. The IPv4 checksum is filled.
#[allow(clippy::too_many_arguments)]
fn write_eth_ipv4(
    frame: &mut [u8],
    src_mac: MacAddr,
    dst_mac: MacAddr,
    vlan: Option<u16>,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    ttl: u8,
    ident: u16,
) -> usize {
    let l2 = ethernet::fill_header(frame, dst_mac, src_mac, vlan, ethertype::IPV4).unwrap_or(0);
    let total = len16(frame.len() - l2);
    let mut ip = Ipv4Packet::new_unchecked(&mut frame[l2..]);
    ip.set_version_and_header_len(ipv4::HEADER_LEN);
    ip.set_dscp_ecn(0);
    ip.set_total_len(total);
    ip.set_ident(ident);
    ip.set_dont_frag(true);
    ip.set_ttl(ttl);
    ip.set_protocol(proto);
    ip.set_src_addr(src);
    ip.set_dst_addr(dst);
    ip.fill_checksum();
    l2 + ipv4::HEADER_LEN
}

/// The bytes of a hex string (fixtures written by tools other than this
/// builder); panics on a malformed string, which only tests pass.
pub fn from_hex(hex: &str) -> Vec<u8> {
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("fixture: hex digits")).collect()
}

/// An Ethernet(+802.1Q)/IPv4/TCP frame with correct checksums, window 65535, no
/// options.
pub fn tcp_frame(p: &TcpParams) -> Vec<u8> {
    let l4_len = tcp::HEADER_LEN + p.payload.len();
    let mut frame = vec![0u8; eth_len(p.vlan) + ipv4::HEADER_LEN + l4_len];
    let l4 = write_eth_ipv4(&mut frame, p.src_mac, p.dst_mac, p.vlan, p.src, p.dst, ip_proto::TCP, p.ttl, p.ident);
    let mut seg = TcpSegment::new_unchecked(&mut frame[l4..]);
    seg.set_src_port(p.sport);
    seg.set_dst_port(p.dport);
    seg.set_seq_number(p.seq);
    seg.set_ack_number(p.ack);
    seg.set_header_len(tcp::HEADER_LEN);
    seg.set_flags(p.flags);
    seg.set_window(TCP_WINDOW);
    seg.payload_mut().copy_from_slice(&p.payload);
    seg.fill_checksum(p.src, p.dst);
    frame
}

/// An Ethernet(+802.1Q)/IPv4/UDP frame with correct checksums.
pub fn udp_frame(p: &UdpParams) -> Vec<u8> {
    let l4_len = udp::HEADER_LEN + p.payload.len();
    let mut frame = vec![0u8; eth_len(p.vlan) + ipv4::HEADER_LEN + l4_len];
    let l4 = write_eth_ipv4(&mut frame, p.src_mac, p.dst_mac, p.vlan, p.src, p.dst, ip_proto::UDP, p.ttl, p.ident);
    let mut d = UdpDatagram::new_unchecked(&mut frame[l4..]);
    d.set_src_port(p.sport);
    d.set_dst_port(p.dport);
    d.set_len(len16(l4_len));
    d.payload_mut().copy_from_slice(&p.payload);
    d.fill_checksum(p.src, p.dst);
    frame
}

/// An untagged Ethernet/ARP frame, zero-padded to 60 bytes like a real NIC delivers.
pub fn arp_frame(
    src_mac: MacAddr,
    dst_mac: MacAddr,
    op: u16,
    sender_mac: MacAddr,
    sender_ip: Ipv4Addr,
    target_mac: MacAddr,
    target_ip: Ipv4Addr,
) -> Vec<u8> {
    let mut frame = vec![0u8; MIN_FRAME_LEN];
    let l2 = ethernet::fill_header(&mut frame, dst_mac, src_mac, None, ethertype::ARP).unwrap_or(0);
    let mut a = ArpPacket::new_unchecked(&mut frame[l2..l2 + arp::LEN]);
    a.set_fixed_header();
    a.set_operation(op);
    a.set_sender_mac(sender_mac);
    a.set_sender_ip(sender_ip);
    a.set_target_mac(target_mac);
    a.set_target_ip(target_ip);
    frame
}

/// An untagged Ethernet/IPv4/ICMP echo request with correct checksums.
pub fn icmp_echo_frame(src_mac: MacAddr, dst_mac: MacAddr, src: Ipv4Addr, dst: Ipv4Addr, ident: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let rest = (u32::from(ident) << 16) | u32::from(seq);
    icmp_frame(src_mac, dst_mac, src, dst, icmp::msg_type::ECHO_REQUEST, 0, rest, payload)
}

/// An untagged Ethernet/IPv4/ICMP message of any type with correct checksums:
/// `rest` is the 4 rest-of-header bytes (echo ident/seq, or the MTU of a
/// "fragmentation needed"), `data` follows the 8-byte ICMP header (e.g. the quoted
/// IP header + 8 bytes of an error). IPv4 TTL 64, ident 0.
#[allow(clippy::too_many_arguments)]
pub fn icmp_frame(
    src_mac: MacAddr,
    dst_mac: MacAddr,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    msg_type: u8,
    code: u8,
    rest: u32,
    data: &[u8],
) -> Vec<u8> {
    let l4_len = icmp::HEADER_LEN + data.len();
    let mut frame = vec![0u8; ethernet::HEADER_LEN + ipv4::HEADER_LEN + l4_len];
    let l4 = write_eth_ipv4(&mut frame, src_mac, dst_mac, None, src, dst, ip_proto::ICMP, 64, 0);
    let mut m = IcmpPacket::new_unchecked(&mut frame[l4..]);
    m.set_msg_type(msg_type);
    m.set_code(code);
    m.set_rest_of_header(rest);
    m.data_mut().copy_from_slice(data);
    m.fill_checksum();
    frame
}

/// Default IPv6 source of the IPv6 builders (`2001:db8::1`).
pub const DEFAULT_SRC6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
/// Default IPv6 destination of the IPv6 builders (`2001:db8::64`).
pub const DEFAULT_DST6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x64);

/// Parameters of [`tcp6_frame`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tcp6Params {
    /// Ethernet source.
    pub src_mac: MacAddr,
    /// Ethernet destination.
    pub dst_mac: MacAddr,
    /// 802.1Q VLAN id, if tagged.
    pub vlan: Option<u16>,
    /// IPv6 source.
    pub src: Ipv6Addr,
    /// IPv6 destination.
    pub dst: Ipv6Addr,
    /// TCP source port.
    pub sport: u16,
    /// TCP destination port.
    pub dport: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number.
    pub ack: u32,
    /// Flag byte (see [`tcp::flags`]).
    pub flags: u8,
    /// IPv6 hop limit.
    pub hop_limit: u8,
    /// IPv6 traffic class.
    pub traffic_class: u8,
    /// IPv6 flow label (20 bits).
    pub flow_label: u32,
    /// TCP payload.
    pub payload: Vec<u8>,
}

impl Default for Tcp6Params {
    /// A SYN from `[2001:db8::1]:40000` to `[2001:db8::64]:80`, the MACs of
    /// [`TcpParams::default`], untagged, seq 1, ack 0, hop limit 64, traffic
    /// class and flow label 0, no payload.
    fn default() -> Self {
        Tcp6Params {
            src_mac: DEFAULT_SRC_MAC,
            dst_mac: DEFAULT_DST_MAC,
            vlan: None,
            src: DEFAULT_SRC6,
            dst: DEFAULT_DST6,
            sport: 40000,
            dport: 80,
            seq: 1,
            ack: 0,
            flags: tcp::flags::SYN,
            hop_limit: 64,
            traffic_class: 0,
            flow_label: 0,
            payload: Vec::new(),
        }
    }
}

/// Parameters of [`udp6_frame`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Udp6Params {
    /// Ethernet source.
    pub src_mac: MacAddr,
    /// Ethernet destination.
    pub dst_mac: MacAddr,
    /// 802.1Q VLAN id, if tagged.
    pub vlan: Option<u16>,
    /// IPv6 source.
    pub src: Ipv6Addr,
    /// IPv6 destination.
    pub dst: Ipv6Addr,
    /// UDP source port.
    pub sport: u16,
    /// UDP destination port.
    pub dport: u16,
    /// IPv6 hop limit.
    pub hop_limit: u8,
    /// UDP payload.
    pub payload: Vec<u8>,
}

impl Default for Udp6Params {
    /// `[2001:db8::1]:40000` -> `[2001:db8::64]:53`, the MACs of
    /// [`TcpParams::default`], untagged, hop limit 64, no payload.
    fn default() -> Self {
        Udp6Params {
            src_mac: DEFAULT_SRC_MAC,
            dst_mac: DEFAULT_DST_MAC,
            vlan: None,
            src: DEFAULT_SRC6,
            dst: DEFAULT_DST6,
            sport: 40000,
            dport: 53,
            hop_limit: 64,
            payload: Vec::new(),
        }
    }
}

/// Writes the Ethernet and IPv6 headers into `frame` (already sized to the full
/// frame length; no extension headers) and returns the offset of the upper-layer
/// header.
#[allow(clippy::too_many_arguments)]
fn write_eth_ipv6(
    frame: &mut [u8],
    src_mac: MacAddr,
    dst_mac: MacAddr,
    vlan: Option<u16>,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    next: u8,
    hop_limit: u8,
) -> usize {
    let l2 = ethernet::fill_header(frame, dst_mac, src_mac, vlan, ethertype::IPV6).unwrap_or(0);
    let payload_len = len16(frame.len() - l2 - ipv6::HEADER_LEN);
    let l3 = ipv6::fill_header(&mut frame[l2..], src, dst, next, payload_len, hop_limit).unwrap_or(0);
    l2 + l3
}

/// An Ethernet(+802.1Q)/IPv6/TCP frame with a correct checksum, window 65535, no
/// options.
pub fn tcp6_frame(p: &Tcp6Params) -> Vec<u8> {
    let l4_len = tcp::HEADER_LEN + p.payload.len();
    let mut frame = vec![0u8; eth_len(p.vlan) + ipv6::HEADER_LEN + l4_len];
    let l4 = write_eth_ipv6(&mut frame, p.src_mac, p.dst_mac, p.vlan, p.src, p.dst, ipv6::next_header::TCP, p.hop_limit);
    let mut ip = Ipv6Packet::new_unchecked(&mut frame[l4 - ipv6::HEADER_LEN..]);
    ip.set_traffic_class(p.traffic_class);
    ip.set_flow_label(p.flow_label);
    let mut seg = TcpSegment::new_unchecked(&mut frame[l4..]);
    seg.set_src_port(p.sport);
    seg.set_dst_port(p.dport);
    seg.set_seq_number(p.seq);
    seg.set_ack_number(p.ack);
    seg.set_header_len(tcp::HEADER_LEN);
    seg.set_flags(p.flags);
    seg.set_window(TCP_WINDOW);
    seg.payload_mut().copy_from_slice(&p.payload);
    seg.fill_checksum_v6(p.src, p.dst);
    frame
}

/// An Ethernet(+802.1Q)/IPv6/UDP frame with a correct (never zero) checksum.
pub fn udp6_frame(p: &Udp6Params) -> Vec<u8> {
    let l4_len = udp::HEADER_LEN + p.payload.len();
    let mut frame = vec![0u8; eth_len(p.vlan) + ipv6::HEADER_LEN + l4_len];
    let l4 = write_eth_ipv6(&mut frame, p.src_mac, p.dst_mac, p.vlan, p.src, p.dst, ipv6::next_header::UDP, p.hop_limit);
    let mut d = UdpDatagram::new_unchecked(&mut frame[l4..]);
    d.set_src_port(p.sport);
    d.set_dst_port(p.dport);
    d.set_len(len16(l4_len));
    d.payload_mut().copy_from_slice(&p.payload);
    d.fill_checksum_v6(p.src, p.dst);
    frame
}

/// An untagged Ethernet/IPv6/ICMPv6 message of any type with a correct checksum:
/// `rest` is the 4 rest-of-header bytes (echo ident/seq, the MTU of a packet too
/// big, the pointer of a parameter problem), `body` follows the 8-byte header
/// (echo data, or the invoking packet of an error). Hop limit 64.
#[allow(clippy::too_many_arguments)]
pub fn icmpv6_frame(
    src_mac: MacAddr,
    dst_mac: MacAddr,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    msg_type: u8,
    code: u8,
    rest: u32,
    body: &[u8],
) -> Vec<u8> {
    let mut frame = vec![0u8; ethernet::HEADER_LEN + ipv6::HEADER_LEN + icmpv6::HEADER_LEN + body.len()];
    let l4 = write_eth_ipv6(&mut frame, src_mac, dst_mac, None, src, dst, ipv6::next_header::ICMPV6, 64);
    let mut m = Icmpv6Packet::new_unchecked(&mut frame[l4..]);
    m.set_msg_type(msg_type);
    m.set_code(code);
    m.set_rest_of_header(rest);
    m.body_mut().copy_from_slice(body);
    m.fill_checksum(src, dst);
    frame
}

/// An untagged Ethernet/IPv6/ICMPv6 echo request with a correct checksum.
pub fn icmpv6_echo_frame(src_mac: MacAddr, dst_mac: MacAddr, src: Ipv6Addr, dst: Ipv6Addr, ident: u16, seq: u16, data: &[u8]) -> Vec<u8> {
    let rest = (u32::from(ident) << 16) | u32::from(seq);
    icmpv6_frame(src_mac, dst_mac, src, dst, icmpv6::msg_type::ECHO_REQUEST, 0, rest, data)
}

/// An untagged neighbour solicitation for `target` from `src`/`src_mac` (see
/// [`nd::fill_ns`]).
pub fn ns_frame(src_mac: MacAddr, src: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
    let mut frame = vec![0u8; nd::MAX_FRAME_LEN];
    let n = nd::fill_ns(&mut frame, src_mac, None, src, target).unwrap_or(0);
    frame.truncate(n);
    frame
}

/// An untagged unsolicited neighbour advertisement of `addr` at `mac` to all
/// nodes (see [`nd::fill_unsolicited_na`]).
pub fn unsolicited_na_frame(mac: MacAddr, addr: Ipv6Addr) -> Vec<u8> {
    let mut frame = vec![0u8; nd::MAX_FRAME_LEN];
    let n = nd::fill_unsolicited_na(&mut frame, mac, None, addr).unwrap_or(0);
    frame.truncate(n);
    frame
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::EthernetFrame;
    use proptest::prelude::*;

    fn parse_ip(frame: &[u8]) -> (EthernetFrame<&[u8]>, Ipv4Packet<&[u8]>) {
        let eth = EthernetFrame::new_checked(frame).expect("eth");
        assert_eq!(eth.ethertype(), ethertype::IPV4);
        let ip = Ipv4Packet::new_checked(eth.clone().into_payload()).expect("ipv4");
        assert!(ip.verify_checksum());
        assert_eq!(usize::from(ip.total_len()), eth.payload().len());
        assert!(ip.dont_frag() && !ip.is_fragment());
        (eth, ip)
    }

    #[test]
    fn tcp_default() {
        let p = TcpParams::default();
        let f = tcp_frame(&p);
        assert_eq!(f.len(), 54);
        let (eth, ip) = parse_ip(&f);
        assert_eq!((eth.src_mac(), eth.dst_mac(), eth.vlan_id()), (p.src_mac, p.dst_mac, None));
        assert_eq!((ip.src_addr(), ip.dst_addr(), ip.ttl(), ip.ident()), (p.src, p.dst, 64, 1));
        assert_eq!(ip.protocol(), ip_proto::TCP);
        let s = TcpSegment::new_checked(ip.payload()).expect("tcp");
        assert!(s.verify_checksum(p.src, p.dst));
        assert!(s.syn() && !s.ack());
        assert_eq!((s.src_port(), s.dst_port(), s.seq_number(), s.ack_number()), (40000, 80, 1, 0));
        assert_eq!(s.window(), 65535);
        assert!(s.payload().is_empty());
    }

    #[test]
    fn tcp_vlan_payload() {
        let p = TcpParams {
            vlan: Some(42),
            flags: tcp::flags::ACK | tcp::flags::PSH,
            payload: b"GET / HTTP/1.0\r\n\r\n".to_vec(),
            seq: 0xdeadbeef,
            ack: 0xfeedface,
            ..TcpParams::default()
        };
        let f = tcp_frame(&p);
        let (eth, ip) = parse_ip(&f);
        assert_eq!(eth.vlan_id(), Some(42));
        assert_eq!(eth.header_len(), 18);
        let s = TcpSegment::new_checked(ip.payload()).expect("tcp");
        assert!(s.verify_checksum(p.src, p.dst));
        assert_eq!(s.payload(), &p.payload[..]);
        assert_eq!(s.flags(), tcp::flags::ACK | tcp::flags::PSH);
        assert_eq!((s.seq_number(), s.ack_number()), (0xdeadbeef, 0xfeedface));
    }

    #[test]
    fn udp_frames() {
        for vlan in [None, Some(7)] {
            let p = UdpParams { vlan, payload: vec![1, 2, 3], ..UdpParams::default() };
            let f = udp_frame(&p);
            let (eth, ip) = parse_ip(&f);
            assert_eq!(eth.vlan_id(), vlan);
            assert_eq!(ip.protocol(), ip_proto::UDP);
            let d = UdpDatagram::new_checked(ip.payload()).expect("udp");
            assert_ne!(d.checksum(), 0);
            assert!(d.verify_checksum(p.src, p.dst));
            assert_eq!((d.src_port(), d.dst_port(), d.len()), (40000, 53, 11));
            assert_eq!(d.payload(), &[1, 2, 3]);
        }
    }

    #[test]
    fn arp_padded() {
        let (a, b) = (MacAddr([2, 0, 0, 0, 0, 0xa]), MacAddr([2, 0, 0, 0, 0, 0xb]));
        let f =
            arp_frame(a, MacAddr::BROADCAST, arp::op::REQUEST, a, Ipv4Addr::new(10, 0, 0, 1), MacAddr::ZERO, Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(f.len(), 60);
        assert!(f[42..].iter().all(|&x| x == 0));
        let eth = EthernetFrame::new_checked(&f[..]).expect("eth");
        assert_eq!(eth.ethertype(), ethertype::ARP);
        assert!(eth.dst_mac().is_broadcast());
        let p = ArpPacket::new_checked(eth.payload()).expect("arp");
        assert_eq!(p.operation(), arp::op::REQUEST);
        assert_eq!((p.sender_mac(), p.sender_ip()), (a, Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!((p.target_mac(), p.target_ip()), (MacAddr::ZERO, Ipv4Addr::new(10, 0, 0, 2)));
        // Same body as fill_request.
        let mut body = [0u8; arp::LEN];
        arp::fill_request(&mut body, a, Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(&f[14..42], &body);
        let r = arp_frame(b, a, arp::op::REPLY, b, Ipv4Addr::new(10, 0, 0, 2), a, Ipv4Addr::new(10, 0, 0, 1));
        arp::fill_reply(&mut body, b, Ipv4Addr::new(10, 0, 0, 2), a, Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(&r[14..42], &body);
    }

    #[test]
    fn icmp_echo() {
        let (a, b) = (MacAddr([2, 0, 0, 0, 0, 0xa]), MacAddr([2, 0, 0, 0, 0, 0xb]));
        let (s, d) = (Ipv4Addr::new(172, 16, 0, 1), Ipv4Addr::new(172, 16, 0, 2));
        let f = icmp_echo_frame(a, b, s, d, 0x1234, 5, b"abcdefgh");
        let (eth, ip) = parse_ip(&f);
        assert_eq!((eth.src_mac(), eth.dst_mac()), (a, b));
        assert_eq!(ip.protocol(), ip_proto::ICMP);
        let m = IcmpPacket::new_checked(ip.payload()).expect("icmp");
        assert!(m.verify_checksum());
        assert_eq!((m.msg_type(), m.code()), (icmp::msg_type::ECHO_REQUEST, 0));
        assert_eq!((m.echo_ident(), m.echo_seq()), (0x1234, 5));
        assert_eq!(m.data(), b"abcdefgh");
    }

    #[test]
    fn icmp_frag_needed_quotes_inner() {
        let inner = tcp_frame(&TcpParams::default());
        let quoted = &inner[14..14 + 28];
        let f = icmp_frame(
            MacAddr::ZERO,
            MacAddr::ZERO,
            Ipv4Addr::new(10, 0, 0, 254),
            Ipv4Addr::new(10, 0, 0, 1),
            icmp::msg_type::DEST_UNREACHABLE,
            4,
            1400,
            quoted,
        );
        let (_, ip) = parse_ip(&f);
        let m = IcmpPacket::new_checked(ip.payload()).expect("icmp");
        assert!(m.verify_checksum());
        assert_eq!(m.rest_of_header() & 0xffff, 1400);
        // The quoted header is truncated after 8 L4 bytes but is still a view-able IP
        // header; its total_len exceeds the quote, so new_checked reports truncation.
        assert_eq!(Ipv4Packet::new_checked(m.data()).err(), Some(crate::wire::WireError::Truncated));
        let q = Ipv4Packet::new_unchecked(m.data());
        assert_eq!(q.dst_addr(), Ipv4Addr::new(10, 0, 0, 100));
    }

    #[test]
    fn padded_frame_still_parses() {
        let mut f = tcp_frame(&TcpParams::default());
        f.resize(MIN_FRAME_LEN, 0);
        let (_, ip) = parse_ip(&f[..54]);
        assert_eq!(ip.payload().len(), 20);
        let eth = EthernetFrame::new_checked(&f[..]).expect("eth");
        let ip = Ipv4Packet::new_checked(eth.payload()).expect("ipv4");
        assert_eq!(ip.payload().len(), 20);
        assert!(TcpSegment::new_checked(ip.payload()).expect("tcp").verify_checksum(ip.src_addr(), ip.dst_addr()));
    }

    /// Parsing down the layers with `into_payload`, and rewriting in place with
    /// `into_payload_mut`.
    #[test]
    fn layered_views() {
        let mut f = tcp_frame(&TcpParams { vlan: Some(3), ..TcpParams::default() });
        let tcp_bytes = {
            let eth = EthernetFrame::new_checked(&f[..]).expect("eth");
            let ip = Ipv4Packet::new_checked(eth.into_payload()).expect("ip");
            TcpSegment::new_checked(ip.into_payload()).expect("tcp").into_inner()
        };
        assert_eq!(tcp_bytes.len(), 20);
        let new_dst = Ipv4Addr::new(192, 168, 1, 9);
        {
            let eth = EthernetFrame::new_checked(&mut f[..]).expect("eth");
            let mut ip = Ipv4Packet::new_checked(eth.into_payload_mut()).expect("ip");
            let old_dst = ip.dst_addr();
            ip.set_dst_addr(new_dst);
            let c = crate::wire::checksum::update_addr(ip.checksum(), old_dst, new_dst);
            ip.set_checksum(c);
            let mut seg = TcpSegment::new_checked(ip.into_payload_mut()).expect("tcp");
            let c = crate::wire::checksum::update_addr(seg.checksum(), old_dst, new_dst);
            let c = crate::wire::checksum::update_u16(c, seg.dst_port(), 8080);
            seg.set_dst_port(8080);
            seg.set_checksum(c);
            assert_eq!(seg.into_payload_mut().len(), 0);
        }
        let (_, ip) = parse_ip(&f);
        assert_eq!(ip.dst_addr(), new_dst);
        let seg = TcpSegment::new_checked(ip.payload()).expect("tcp");
        assert_eq!(seg.dst_port(), 8080);
        assert!(seg.verify_checksum(ip.src_addr(), new_dst));
        // The remaining into_* helpers.
        let u = udp_frame(&UdpParams { payload: vec![5, 6], ..UdpParams::default() });
        let d = UdpDatagram::new_checked(&u[34..]).expect("udp");
        assert_eq!(d.into_payload(), &[5, 6]);
        let mut i = icmp_echo_frame(MacAddr::ZERO, MacAddr::ZERO, DEFAULT_SRC, DEFAULT_DST, 1, 2, b"xy");
        let m = IcmpPacket::new_checked(&i[34..]).expect("icmp");
        assert_eq!(m.into_data(), b"xy");
        let m = IcmpPacket::new_checked(&mut i[34..]).expect("icmp");
        m.into_data_mut()[0] = b'z';
        assert_eq!(i[42], b'z');
        let mut u = u;
        let d = UdpDatagram::new_checked(&mut u[34..]).expect("udp");
        d.into_payload_mut()[1] = 9;
        assert_eq!(u[43], 9);
    }

    proptest! {
        #[test]
        fn tcp_any_params_verify(
            src in any::<u32>(), dst in any::<u32>(), sport in any::<u16>(), dport in any::<u16>(),
            seq in any::<u32>(), ack in any::<u32>(), flags in any::<u8>(), ttl in any::<u8>(),
            ident in any::<u16>(), vlan in proptest::option::of(0u16..4096),
            payload in proptest::collection::vec(any::<u8>(), 0..100),
        ) {
            let p = TcpParams {
                vlan, src: Ipv4Addr::from(src), dst: Ipv4Addr::from(dst), sport, dport, seq, ack,
                flags, ttl, ident, payload, ..TcpParams::default()
            };
            let f = tcp_frame(&p);
            let eth = EthernetFrame::new_checked(&f[..]).expect("eth");
            prop_assert_eq!(eth.vlan_id(), vlan);
            let ip = Ipv4Packet::new_checked(eth.payload()).expect("ip");
            prop_assert!(ip.verify_checksum());
            prop_assert_eq!((ip.ttl(), ip.ident()), (ttl, ident));
            let s = TcpSegment::new_checked(ip.payload()).expect("tcp");
            prop_assert!(s.verify_checksum(p.src, p.dst));
            prop_assert_eq!((s.src_port(), s.dst_port(), s.seq_number(), s.ack_number(), s.flags()), (sport, dport, seq, ack, flags));
            prop_assert_eq!(s.payload(), &p.payload[..]);
        }

        #[test]
        fn udp_any_params_verify(
            src in any::<u32>(), dst in any::<u32>(), sport in any::<u16>(), dport in any::<u16>(),
            payload in proptest::collection::vec(any::<u8>(), 0..100),
        ) {
            let p = UdpParams { src: Ipv4Addr::from(src), dst: Ipv4Addr::from(dst), sport, dport, payload, ..UdpParams::default() };
            let f = udp_frame(&p);
            let eth = EthernetFrame::new_checked(&f[..]).expect("eth");
            let ip = Ipv4Packet::new_checked(eth.payload()).expect("ip");
            prop_assert!(ip.verify_checksum());
            let d = UdpDatagram::new_checked(ip.payload()).expect("udp");
            prop_assert!(d.checksum() != 0);
            prop_assert!(d.verify_checksum(p.src, p.dst));
            prop_assert_eq!(d.payload(), &p.payload[..]);
        }
    }

    /// The IPv6 builders against scapy's frames (its own builders and checksums).
    mod v6 {
        use super::*;
        use crate::wire::test_fixtures::scapy;

        const MAC_C: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
        const MAC_LB: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);

        #[test]
        fn tcp6_equals_scapy() {
            let p = Tcp6Params {
                flags: tcp::flags::PSH | tcp::flags::ACK,
                seq: 0xdeadbeef,
                ack: 0xfeedface,
                traffic_class: 0xb8,
                flow_label: 0x12345,
                payload: b"GET / HTTP/1.0\r\n\r\n".to_vec(),
                ..Tcp6Params::default()
            };
            assert_eq!(tcp6_frame(&p), scapy("tcp"));
        }

        #[test]
        fn udp6_equals_scapy() {
            assert_eq!(udp6_frame(&Udp6Params { payload: b"abc".to_vec(), ..Udp6Params::default() }), scapy("udp"));
            let f = udp6_frame(&Udp6Params { vlan: Some(9), ..Udp6Params::default() });
            let eth = crate::wire::EthernetFrame::new_checked(&f[..]).expect("eth");
            assert_eq!((eth.vlan_id(), eth.ethertype()), (Some(9), ethertype::IPV6));
            let ip = Ipv6Packet::new_checked(eth.payload()).expect("ipv6");
            let d = UdpDatagram::new_checked(ip.payload()).expect("udp");
            assert!(d.verify_checksum_v6(ip.src_addr(), ip.dst_addr()));
        }

        #[test]
        fn icmpv6_equal_scapy() {
            assert_eq!(icmpv6_echo_frame(MAC_C, MAC_LB, DEFAULT_SRC6, DEFAULT_DST6, 0x1234, 1, b"abcdefgh"), scapy("echo"));
            let want = scapy("too_big");
            let lb_in = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
            let f = icmpv6_frame(MAC_LB, MAC_C, lb_in, DEFAULT_SRC6, icmpv6::msg_type::PACKET_TOO_BIG, 0, 1280, &want[62..]);
            assert_eq!(f, want);
            // The quoted SYN is this builder's default SYN but for scapy's window (8192).
            let mut syn = tcp6_frame(&Tcp6Params::default());
            let mut seg = TcpSegment::new_checked(&mut syn[54..]).expect("tcp");
            seg.set_window(8192);
            seg.fill_checksum_v6(DEFAULT_SRC6, DEFAULT_DST6);
            assert_eq!(&want[62..], &syn[14..]);
        }

        #[test]
        fn nd_equal_scapy() {
            let rs = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0x11, 0x2233);
            let lb_in = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
            assert_eq!(ns_frame(MAC_LB, lb_in, rs), scapy("ns_out"));
            let vip2 = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0xabcd, 0xef01);
            assert_eq!(unsolicited_na_frame(MAC_LB, vip2), scapy("na_unsolicited"));
        }

        proptest! {
            #[test]
            fn tcp6_any_params_verify(
                src in any::<[u8; 16]>(), dst in any::<[u8; 16]>(), sport in any::<u16>(), dport in any::<u16>(),
                seq in any::<u32>(), flags in any::<u8>(), hop_limit in any::<u8>(), flow_label in 0u32..(1 << 20),
                vlan in proptest::option::of(0u16..4096), payload in proptest::collection::vec(any::<u8>(), 0..100),
            ) {
                let p = Tcp6Params {
                    vlan, src: Ipv6Addr::from(src), dst: Ipv6Addr::from(dst), sport, dport, seq, flags, hop_limit,
                    flow_label, payload, ..Tcp6Params::default()
                };
                let f = tcp6_frame(&p);
                let eth = crate::wire::EthernetFrame::new_checked(&f[..]).expect("eth");
                let ip = Ipv6Packet::new_checked(eth.payload()).expect("ipv6");
                prop_assert_eq!((ip.hop_limit(), ip.flow_label(), ip.src_addr(), ip.dst_addr()), (hop_limit, flow_label, p.src, p.dst));
                let s = TcpSegment::new_checked(ip.payload()).expect("tcp");
                prop_assert!(s.verify_checksum_v6(p.src, p.dst));
                prop_assert_eq!((s.src_port(), s.dst_port(), s.seq_number(), s.flags()), (sport, dport, seq, flags));
                prop_assert_eq!(s.payload(), &p.payload[..]);
            }
        }
    }
}
