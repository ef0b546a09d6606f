//! Frame templates: one valid frame per (protocol, flags, size), patched per
//! packet with the client tuple, a sequence number and a timestamp. Checksums
//! are updated incrementally (RFC 1624), so stamping a packet costs a few
//! nanoseconds and every frame on the wire is valid.
//!
//! Where the stamps go (64-byte frames leave only 6 bytes of TCP payload):
//! * TCP: the sequence number's low 32 bits in the TCP sequence-number field and
//!   again in the first 4 payload bytes, the timestamp's low 32 bits in the
//!   acknowledgment-number field. The generator reads the payload copy: FULLNAT
//!   shifts the sequence-number field by a per-connection offset (and may insert
//!   a TOA option, moving the payload); no mode touches an inbound ACK field.
//! * UDP: sequence number and timestamp as two big-endian u64 at the start of
//!   the payload (a 64-byte UDP frame has 18 payload bytes).

use std::net::{Ipv4Addr, Ipv6Addr};

use rvs_dataplane::wire::builder::{tcp6_frame, tcp_frame, udp_frame, Tcp6Params, TcpParams, UdpParams, MIN_FRAME_LEN};
use rvs_dataplane::wire::checksum;
use rvs_dataplane::wire::tcp::flags;
use rvs_dataplane::wire::MacAddr;

/// Ethernet header length of the (untagged) templates.
pub const ETH: usize = 14;
/// Offset of the IPv4 header checksum.
pub const IP_CSUM: usize = ETH + 10;
/// Offset of the IPv4 source address.
pub const IP_SRC: usize = ETH + 12;
/// Offset of the IPv4 destination address.
pub const IP_DST: usize = ETH + 16;
/// Offset of the L4 header.
pub const L4: usize = ETH + 20;
/// Offset of the TCP sequence number.
pub const TCP_SEQ: usize = L4 + 4;
/// Offset of the TCP acknowledgment number.
pub const TCP_ACK: usize = L4 + 8;
/// Offset of the TCP flags byte.
pub const TCP_FLAGS: usize = L4 + 13;
/// Offset of the TCP data-offset byte.
pub const TCP_DOFF: usize = L4 + 12;
/// Offset of the TCP payload in a template (no options).
pub const TCP_PAYLOAD: usize = L4 + 20;
/// Offset of the TCP checksum.
pub const TCP_CSUM: usize = L4 + 16;
/// Offset of the UDP checksum.
pub const UDP_CSUM: usize = L4 + 6;
/// Offset of the UDP payload.
pub const UDP_PAYLOAD: usize = L4 + 8;

/// Transport protocol of the generated traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Proto {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// What a template frame is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A TCP SYN (or, for UDP, any datagram).
    Syn,
    /// A TCP ACK|PSH data segment (or, for UDP, any datagram).
    Data,
}

/// A prepared frame and the values its checksums were computed with.
#[derive(Clone, Debug)]
pub struct Template {
    bytes: Vec<u8>,
    proto: Proto,
    base_src: Ipv4Addr,
    base_sport: u16,
}

impl Template {
    /// A frame of `wire_size` bytes on the wire (FCS included, as Pktgen-DPDK and
    /// RFC 2544 count; so 64 gives a 60-byte buffer) from `src_mac` to `dst_mac`,
    /// client → `dst:dport`.
    pub fn new(proto: Proto, kind: Kind, wire_size: usize, src_mac: MacAddr, dst_mac: MacAddr, dst: Ipv4Addr, dport: u16) -> Self {
        let len = wire_size.saturating_sub(4).max(MIN_FRAME_LEN);
        let (base_src, base_sport) = (Ipv4Addr::new(172, 16, 0, 1), 1024);
        let bytes = match proto {
            Proto::Tcp => {
                let payload = vec![0u8; len - L4 - 20];
                tcp_frame(&TcpParams {
                    src_mac,
                    dst_mac,
                    src: base_src,
                    dst,
                    sport: base_sport,
                    dport,
                    seq: 0,
                    ack: 0,
                    flags: match kind {
                        Kind::Syn => flags::SYN,
                        Kind::Data => flags::ACK | flags::PSH,
                    },
                    ident: 0,
                    ttl: 64,
                    payload,
                    ..TcpParams::default()
                })
            }
            Proto::Udp => {
                let payload = vec![0u8; len - UDP_PAYLOAD];
                udp_frame(&UdpParams {
                    src_mac,
                    dst_mac,
                    src: base_src,
                    dst,
                    sport: base_sport,
                    dport,
                    ident: 0,
                    ttl: 64,
                    payload,
                    ..UdpParams::default()
                })
            }
        };
        debug_assert_eq!(bytes.len(), len);
        Template { bytes, proto, base_src, base_sport }
    }

    /// The template's bytes (client 172.16.0.1:1024, sequence 0, stamp 0).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Frame length in bytes (without FCS).
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Always false: a template holds a whole frame.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The protocol.
    pub fn proto(&self) -> Proto {
        self.proto
    }

    /// Writes the template into `buf` (exactly [`Template::len`] bytes) for client
    /// `src:sport`, with sequence number `seq` and timestamp `stamp`.
    #[inline]
    pub fn write(&self, buf: &mut [u8], src: Ipv4Addr, sport: u16, seq: u64, stamp: u64) {
        buf.copy_from_slice(&self.bytes);
        self.patch(buf, src, sport, seq, stamp);
    }

    /// Patches a buffer that holds this template's bytes (see [`Template::write`]).
    #[inline]
    pub fn patch(&self, buf: &mut [u8], src: Ipv4Addr, sport: u16, seq: u64, stamp: u64) {
        let old_src = u32::from(self.base_src);
        let new_src = u32::from(src);
        buf[IP_SRC..IP_SRC + 4].copy_from_slice(&new_src.to_be_bytes());
        let ipc = checksum::update_u32(be16(buf, IP_CSUM), old_src, new_src);
        buf[IP_CSUM..IP_CSUM + 2].copy_from_slice(&ipc.to_be_bytes());
        buf[L4..L4 + 2].copy_from_slice(&sport.to_be_bytes());
        match self.proto {
            Proto::Tcp => {
                let (s, a) = (seq as u32, stamp as u32);
                buf[TCP_SEQ..TCP_SEQ + 4].copy_from_slice(&s.to_be_bytes());
                buf[TCP_ACK..TCP_ACK + 4].copy_from_slice(&a.to_be_bytes());
                buf[TCP_PAYLOAD..TCP_PAYLOAD + 4].copy_from_slice(&s.to_be_bytes());
                let mut c = be16(buf, TCP_CSUM);
                c = checksum::update_u32(c, old_src, new_src);
                c = checksum::update_u16(c, self.base_sport, sport);
                c = checksum::update_u32(c, 0, s);
                c = checksum::update_u32(c, 0, a);
                c = checksum::update_u32(c, 0, s);
                buf[TCP_CSUM..TCP_CSUM + 2].copy_from_slice(&c.to_be_bytes());
            }
            Proto::Udp => {
                buf[UDP_PAYLOAD..UDP_PAYLOAD + 8].copy_from_slice(&seq.to_be_bytes());
                buf[UDP_PAYLOAD + 8..UDP_PAYLOAD + 16].copy_from_slice(&stamp.to_be_bytes());
                let mut c = be16(buf, UDP_CSUM);
                c = checksum::update_u32(c, old_src, new_src);
                c = checksum::update_u16(c, self.base_sport, sport);
                c = checksum::update_u32(c, 0, (seq >> 32) as u32);
                c = checksum::update_u32(c, 0, seq as u32);
                c = checksum::update_u32(c, 0, (stamp >> 32) as u32);
                c = checksum::update_u32(c, 0, stamp as u32);
                // 0 means "no checksum" in UDP; its one's-complement twin is 0xffff.
                let c = if c == 0 { 0xffff } else { c };
                buf[UDP_CSUM..UDP_CSUM + 2].copy_from_slice(&c.to_be_bytes());
            }
        }
    }
}

/// Offset of the IPv6 source address.
pub const IP6_SRC: usize = ETH + 8;
/// Offset of the L4 header after an IPv6 header without extensions.
pub const L4_6: usize = ETH + 40;
/// Offset of the TCP sequence number over IPv6.
pub const TCP6_SEQ: usize = L4_6 + 4;
/// Offset of the TCP acknowledgment number over IPv6.
pub const TCP6_ACK: usize = L4_6 + 8;
/// Offset of the TCP checksum over IPv6.
pub const TCP6_CSUM: usize = L4_6 + 16;
/// Offset of the TCP payload over IPv6 (no options).
pub const TCP6_PAYLOAD: usize = L4_6 + 20;
/// The smallest IPv6 template: Ethernet, IPv6, TCP and the 4-byte sequence
/// stamp (78 bytes; 82 on the wire). A 64-byte frame cannot hold IPv6 and TCP.
pub const MIN_FRAME_LEN6: usize = TCP6_PAYLOAD + 4;

/// A prepared TCP over IPv6 frame (no extension headers, no TCP options),
/// patched per packet like [`Template`]: client address and port, the
/// sequence number's low 32 bits in the sequence-number field and the first 4
/// payload bytes, the timestamp's low 32 bits in the acknowledgment field.
#[derive(Clone, Debug)]
pub struct Template6 {
    bytes: Vec<u8>,
    base_src: Ipv6Addr,
    base_sport: u16,
}

impl Template6 {
    /// A frame of `wire_size` bytes on the wire (FCS included; at least
    /// [`MIN_FRAME_LEN6`] + 4) from `src_mac` to `dst_mac`, client → `dst:dport`:
    /// a SYN or an ACK|PSH data segment.
    pub fn new(kind: Kind, wire_size: usize, src_mac: MacAddr, dst_mac: MacAddr, dst: Ipv6Addr, dport: u16) -> Self {
        let len = wire_size.saturating_sub(4).max(MIN_FRAME_LEN6);
        let (base_src, base_sport) = (Ipv6Addr::new(0x2001, 0xdb8, 0xc, 0, 0, 0, 0, 1), 1024);
        let bytes = tcp6_frame(&Tcp6Params {
            src_mac,
            dst_mac,
            src: base_src,
            dst,
            sport: base_sport,
            dport,
            seq: 0,
            ack: 0,
            flags: match kind {
                Kind::Syn => flags::SYN,
                Kind::Data => flags::ACK | flags::PSH,
            },
            hop_limit: 64,
            payload: vec![0u8; len - TCP6_PAYLOAD],
            ..Tcp6Params::default()
        });
        debug_assert_eq!(bytes.len(), len);
        Template6 { bytes, base_src, base_sport }
    }

    /// The template's bytes (client `[2001:db8:c::1]:1024`, sequence 0, stamp 0).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Frame length in bytes (without FCS).
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Always false: a template holds a whole frame.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Writes the template into `buf` (exactly [`Template6::len`] bytes) for
    /// client `src:sport`, with sequence number `seq` and timestamp `stamp`.
    #[inline]
    pub fn write(&self, buf: &mut [u8], src: Ipv6Addr, sport: u16, seq: u64, stamp: u64) {
        buf.copy_from_slice(&self.bytes);
        let (s, a) = (seq as u32, stamp as u32);
        buf[IP6_SRC..IP6_SRC + 16].copy_from_slice(&src.octets());
        buf[L4_6..L4_6 + 2].copy_from_slice(&sport.to_be_bytes());
        buf[TCP6_SEQ..TCP6_SEQ + 4].copy_from_slice(&s.to_be_bytes());
        buf[TCP6_ACK..TCP6_ACK + 4].copy_from_slice(&a.to_be_bytes());
        buf[TCP6_PAYLOAD..TCP6_PAYLOAD + 4].copy_from_slice(&s.to_be_bytes());
        let mut c = be16(buf, TCP6_CSUM);
        c = checksum::update_addr_v6(c, self.base_src, src);
        c = checksum::update_u16(c, self.base_sport, sport);
        c = checksum::update_u32(c, 0, s);
        c = checksum::update_u32(c, 0, a);
        c = checksum::update_u32(c, 0, s);
        buf[TCP6_CSUM..TCP6_CSUM + 2].copy_from_slice(&c.to_be_bytes());
    }
}

/// Reads the sequence number and timestamp a template stamped into `frame`
/// (untagged Ethernet/IPv4 without IP options; TCP options are skipped). For
/// TCP only the low 32 bits of each survive.
#[inline]
pub fn read_stamps(proto: Proto, frame: &[u8]) -> Option<(u64, u64)> {
    match proto {
        Proto::Tcp if frame.len() >= L4 + 20 => {
            let payload = L4 + usize::from(frame[TCP_DOFF] >> 4) * 4;
            let seq = frame.get(payload..payload + 4)?;
            Some((u64::from(be32(seq, 0)), u64::from(be32(frame, TCP_ACK))))
        }
        Proto::Udp if frame.len() >= UDP_PAYLOAD + 16 => {
            let seq = u64::from_be_bytes(frame[UDP_PAYLOAD..UDP_PAYLOAD + 8].try_into().ok()?);
            let stamp = u64::from_be_bytes(frame[UDP_PAYLOAD + 8..UDP_PAYLOAD + 16].try_into().ok()?);
            Some((seq, stamp))
        }
        _ => None,
    }
}

/// Big-endian u16 at `at`.
#[inline]
pub fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Big-endian u32 at `at`.
#[inline]
pub fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[cfg(test)]
mod tests {
    use super::*;
    use rvs_dataplane::wire::{EthernetFrame, Ipv4Packet, TcpSegment, UdpDatagram};

    const A: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
    const B: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);

    fn check(frame: &[u8], proto: Proto, src: Ipv4Addr, sport: u16) {
        let eth = EthernetFrame::new_checked(frame).expect("eth");
        let ip = Ipv4Packet::new_checked(eth.payload()).expect("ip");
        assert!(ip.verify_checksum(), "ip checksum");
        assert_eq!(ip.src_addr(), src);
        match proto {
            Proto::Tcp => {
                let t = TcpSegment::new_checked(ip.payload()).expect("tcp");
                assert!(t.verify_checksum(ip.src_addr(), ip.dst_addr()), "tcp checksum");
                assert_eq!(t.src_port(), sport);
            }
            Proto::Udp => {
                let u = UdpDatagram::new_checked(ip.payload()).expect("udp");
                assert!(u.verify_checksum(ip.src_addr(), ip.dst_addr()), "udp checksum");
                assert_eq!(u.src_port(), sport);
            }
        }
    }

    #[test]
    fn patched_frames_have_valid_checksums() {
        for proto in [Proto::Tcp, Proto::Udp] {
            for size in [64, 65, 128, 1518] {
                for kind in [Kind::Syn, Kind::Data] {
                    let t = Template::new(proto, kind, size, A, B, Ipv4Addr::new(10, 0, 0, 100), 80);
                    assert_eq!(t.len(), size - 4);
                    let mut buf = vec![0u8; t.len()];
                    for (i, (seq, stamp)) in [(0u64, 0u64), (1, 2), (u64::MAX, 0xdead_beef_0bad_cafe), (1 << 40, 7)].into_iter().enumerate()
                    {
                        let src = Ipv4Addr::new(172, 16, i as u8, 200);
                        let sport = 60000 + i as u16;
                        t.write(&mut buf, src, sport, seq, stamp);
                        check(&buf, proto, src, sport);
                        let (s, ts) = read_stamps(proto, &buf).expect("stamps");
                        match proto {
                            Proto::Tcp => assert_eq!((s, ts), (seq & 0xffff_ffff, stamp & 0xffff_ffff)),
                            Proto::Udp => assert_eq!((s, ts), (seq, stamp)),
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn the_tcp_sequence_survives_a_fullnat_shift_and_a_toa_option() {
        let t = Template::new(Proto::Tcp, Kind::Data, 64, A, B, Ipv4Addr::new(10, 0, 0, 103), 80);
        let mut buf = vec![0u8; t.len()];
        t.write(&mut buf, Ipv4Addr::new(172, 16, 0, 1), 1024, 0x1_2345_6789, 0xabcd);
        check(&buf, Proto::Tcp, Ipv4Addr::new(172, 16, 0, 1), 1024);
        // FULLNAT adds its offset to the sequence-number field ...
        let shifted = be32(&buf, TCP_SEQ).wrapping_add(0x9000_0003);
        buf[TCP_SEQ..TCP_SEQ + 4].copy_from_slice(&shifted.to_be_bytes());
        assert_eq!(read_stamps(Proto::Tcp, &buf), Some((0x2345_6789, 0xabcd)));
        // ... and may insert an 8-byte TOA option before the payload.
        let mut toa = buf[..TCP_PAYLOAD].to_vec();
        toa[TCP_DOFF] = 7 << 4;
        toa.extend_from_slice(&[254, 8, 4, 0, 172, 16, 0, 1]);
        toa.extend_from_slice(&buf[TCP_PAYLOAD..]);
        assert_eq!(read_stamps(Proto::Tcp, &toa), Some((0x2345_6789, 0xabcd)));
        assert_eq!(read_stamps(Proto::Tcp, &toa[..TCP_PAYLOAD + 10]), None, "a payload cut short is refused");
    }

    #[test]
    fn patched_ipv6_frames_have_valid_checksums() {
        use etherparse::{NetSlice, SlicedPacket, TransportSlice};
        let vip = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100);
        for kind in [Kind::Syn, Kind::Data] {
            for size in [64, 82, 128] {
                let t = Template6::new(kind, size, A, B, vip, 80);
                assert_eq!(t.len(), (size - 4).max(MIN_FRAME_LEN6));
                let mut buf = vec![0u8; t.len()];
                for (i, (seq, stamp)) in [(0u64, 0u64), (1, 2), (u64::MAX, 0xdead_beef_0bad_cafe)].into_iter().enumerate() {
                    let src = Ipv6Addr::new(0x2001, 0xdb8, 0xd, i as u16, 0xffff, 0, 7, 200 + i as u16);
                    let sport = 60000 + i as u16;
                    t.write(&mut buf, src, sport, seq, stamp);
                    // etherparse recomputes the checksum from scratch.
                    let p = SlicedPacket::from_ethernet(&buf).expect("an IPv6 frame");
                    let Some(NetSlice::Ipv6(ip)) = p.net else { panic!("not IPv6") };
                    assert_eq!(ip.header().source_addr(), src);
                    assert_eq!(ip.header().destination_addr(), vip);
                    let Some(TransportSlice::Tcp(tcp)) = p.transport else { panic!("not TCP") };
                    let want = tcp.to_header().calc_checksum_ipv6_raw(src.octets(), vip.octets(), tcp.payload()).expect("checksum");
                    assert_eq!(tcp.checksum(), want, "TCP checksum");
                    assert_eq!((tcp.source_port(), tcp.destination_port()), (sport, 80));
                    assert_eq!(tcp.sequence_number(), seq as u32);
                    assert_eq!(tcp.acknowledgment_number(), stamp as u32);
                    assert_eq!(tcp.syn(), kind == Kind::Syn);
                    assert_eq!(&tcp.payload()[..4], &(seq as u32).to_be_bytes());
                }
            }
        }
    }
}
