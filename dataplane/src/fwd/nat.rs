//! Masquerading (`ipvsadm -m`, keepalived `lb_kind NAT`).
//!
//! Inbound, the destination (VIP:vport) becomes the real server (RIP:rport).
//! The real server routes its replies back through rvs, whose source
//! (RIP:rport) is rewritten back to VIP:vport before they go to the client. The
//! IP header checksum and the TCP/UDP checksum (whose pseudo-header covers the
//! addresses) are updated incrementally.

use std::net::SocketAddrV4;
use std::ops::Range;

use crate::conn::Conn;
use crate::wire::{checksum, ip_proto, WireError};

use super::{read_u16, read_u32, FwdError, NextHop, Parsed};

/// Rewrites a client packet for the real server (DNAT) and says where it goes.
#[inline]
pub fn xmit_inbound(ip: &mut [u8], conn: &Conn) -> Result<NextHop, FwdError> {
    xmit_inbound_parsed(ip, transport_header(ip)?, conn)
}

/// [`xmit_inbound`] of a packet whose headers its parse checked (`parsed`).
#[inline]
pub fn xmit_inbound_parsed(ip: &mut [u8], parsed: Parsed, conn: &Conn) -> Result<NextHop, FwdError> {
    // rewrite_ends_l4 directly: inlined here for a destination-only rewrite.
    rewrite_ends_l4(ip, parsed, None, Some(conn.real), SeqShift::None)?;
    Ok(NextHop::Routed(*conn.real.ip()))
}

/// Rewrites a real server's reply to come from the VIP and says where it goes.
#[inline]
pub fn xmit_reply(ip: &mut [u8], conn: &Conn) -> Result<NextHop, FwdError> {
    xmit_reply_parsed(ip, transport_header(ip)?, conn)
}

/// [`xmit_reply`] of a packet whose headers its parse checked (`parsed`).
#[inline]
pub fn xmit_reply_parsed(ip: &mut [u8], parsed: Parsed, conn: &Conn) -> Result<NextHop, FwdError> {
    // rewrite_ends_l4 directly: inlined here for a source-only rewrite.
    rewrite_ends_l4(ip, parsed, Some(conn.vip), None, SeqShift::None)?;
    Ok(NextHop::Routed(*conn.client.ip()))
}

/// Which address/port pair of a packet to rewrite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// Source address and port.
    Source,
    /// Destination address and port.
    Destination,
}

/// Sets the source or destination address and port of an IPv4 TCP or UDP
/// packet, updating the IP and transport checksums incrementally.
pub fn rewrite(ip: &mut [u8], field: Field, to: SocketAddrV4) -> Result<(), FwdError> {
    match field {
        Field::Source => rewrite_ends(ip, Some(to), None),
        Field::Destination => rewrite_ends(ip, None, Some(to)),
    }
}

/// Sets the source (`src`) and/or destination (`dst`) address and port of an
/// IPv4 TCP or UDP packet in one pass over its headers: both checksums are
/// updated once for all the words that changed (RFC 1624 eqn. 3 over their
/// sum, which gives the same checksum as updating word by word). Only the
/// transport header is touched, so a first fragment (which holds just the
/// start of the datagram) is rewritten the same way.
pub fn rewrite_ends(ip: &mut [u8], src: Option<SocketAddrV4>, dst: Option<SocketAddrV4>) -> Result<(), FwdError> {
    rewrite_ends_l4(ip, transport_header(ip)?, src, dst, SeqShift::None).map(|_| ())
}

/// A change of a TCP header's sequence or acknowledgement number that
/// [`rewrite_ends_l4`] makes together with the addresses and ports, in the
/// same checksum update (FULLNAT's `seq_delta`). Ignored for UDP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SeqShift {
    /// Sequence and acknowledgement numbers stay.
    None,
    /// `seq += delta` (a client's packet towards the real server).
    Seq(u32),
    /// `ack -= delta` when the ACK flag is set (a real server's reply).
    Ack(u32),
}

/// What [`rewrite_ends_l4`] found: where the transport bytes are in `ip` (the
/// IP payload, `header_len..total_len`, checked to be within `ip`) and the
/// transport protocol, so a caller that rewrites more of the transport header
/// need not parse the IP header again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Transport {
    /// The IP payload's range in `ip`.
    pub range: Range<usize>,
    /// `ip_proto::TCP` or `ip_proto::UDP`.
    pub proto: u8,
}

/// [`rewrite_ends`], also shifting a TCP header's sequence or acknowledgement
/// number (`shift`), with one checksum update per header for everything that
/// changed (RFC 1624 eqn. 3 over the sum of the changed words, which gives the
/// same checksum as updating field by field), in the packet `ip` laid out
/// as `parsed` says ([`transport_header`] or the processor's parse). Returns
/// where the transport bytes are.
#[inline(always)]
pub(super) fn rewrite_ends_l4(
    ip: &mut [u8],
    parsed: Parsed,
    src: Option<SocketAddrV4>,
    dst: Option<SocketAddrV4>,
    shift: SeqShift,
) -> Result<Transport, FwdError> {
    let Parsed { header_len, total_len, proto } = parsed;
    let (head, l4) = ip.split_at_mut_checked(header_len).ok_or(WireError::Truncated)?;
    // Fixed-size views: one length check each (the parse checked them
    // already), none per field.
    let head: &mut [u8; IPV4_HEADER] = head.first_chunk_mut().ok_or(WireError::Truncated)?;
    // Σ(!old + new) over the changed words, in native byte order (see
    // checksum::update_sum): the addresses count in both checksums (through
    // the pseudo-header), the ports and sequence numbers in the transport one.
    let (mut ip_words, mut l4_words) = (0u64, 0u64);
    let (mut src_port, mut dst_port) = (None, None);
    if let Some(to) = src {
        let addr = set_addr(head, SRC_ADDR, to.ip().octets());
        ip_words += addr;
        l4_words += addr;
        src_port = Some(to.port());
    }
    if let Some(to) = dst {
        let addr = set_addr(head, DST_ADDR, to.ip().octets());
        ip_words += addr;
        l4_words += addr;
        dst_port = Some(to.port());
    }
    if ip_words != 0 {
        let c = checksum::update_sum(read_ne16(head, IP_CHECKSUM), ip_words);
        head[IP_CHECKSUM..IP_CHECKSUM + 2].copy_from_slice(&c.to_ne_bytes());
    }
    if proto == ip_proto::TCP {
        let tcp: &mut [u8; TCP_HEADER] = l4.first_chunk_mut().ok_or(WireError::Truncated)?;
        l4_words += set_ports(tcp, src_port, dst_port);
        match shift {
            SeqShift::None => {}
            SeqShift::Seq(delta) => {
                let seq = read_u32(tcp, TCP_SEQ);
                l4_words += set_u32_always(tcp, TCP_SEQ, seq.wrapping_add(delta));
            }
            SeqShift::Ack(delta) => {
                if tcp[TCP_FLAGS] & crate::wire::tcp::flags::ACK != 0 {
                    let ack = read_u32(tcp, TCP_ACK);
                    l4_words += set_u32_always(tcp, TCP_ACK, ack.wrapping_sub(delta));
                }
            }
        }
        let c = checksum::update_sum(read_ne16(tcp, TCP_CHECKSUM), l4_words);
        tcp[TCP_CHECKSUM..TCP_CHECKSUM + 2].copy_from_slice(&c.to_ne_bytes());
    } else {
        let udp: &mut [u8; UDP_HEADER] = l4.first_chunk_mut().ok_or(WireError::Truncated)?;
        l4_words += set_ports(udp, src_port, dst_port);
        let old = read_ne16(udp, UDP_CHECKSUM);
        // A zero UDP checksum means "none" and stays zero; a computed zero is
        // sent as 0xffff (both the same in either byte order).
        let c = match old {
            0 => 0,
            _ => match checksum::update_sum(old, l4_words) {
                0 => 0xffff,
                c => c,
            },
        };
        udp[UDP_CHECKSUM..UDP_CHECKSUM + 2].copy_from_slice(&c.to_ne_bytes());
    }
    Ok(Transport { range: header_len..total_len, proto })
}

/// Writes the ports that are given into the transport header `l4` (TCP or
/// UDP: the ports are its first four bytes) and returns `!old + new` over
/// them, in native byte order.
#[inline]
fn set_ports(l4: &mut [u8], src: Option<u16>, dst: Option<u16>) -> u64 {
    let mut words = 0;
    if let Some(port) = src {
        words += set_ne16(l4, SRC_PORT, port.to_be_bytes());
    }
    if let Some(port) = dst {
        words += set_ne16(l4, DST_PORT, port.to_be_bytes());
    }
    words
}

/// Writes the address `new` at `at` and returns `!old + new` over its
/// 32 bits in native byte order (0 when nothing changed).
#[inline]
fn set_addr(b: &mut [u8; IPV4_HEADER], at: usize, new: [u8; 4]) -> u64 {
    let old = read_ne32(b, at);
    let new_word = u32::from_ne_bytes(new);
    if old == new_word {
        return 0;
    }
    b[at..at + 4].copy_from_slice(&new);
    u64::from(!old) + u64::from(new_word)
}

/// Writes the big-endian `new` at `at` and returns `!old + new` over its
/// 32 bits in native byte order, even when nothing changed (as
/// [`checksum::update_u32`] does).
#[inline]
fn set_u32_always(b: &mut [u8], at: usize, new: u32) -> u64 {
    let old = read_ne32(b, at);
    let new = new.to_be_bytes();
    b[at..at + 4].copy_from_slice(&new);
    u64::from(!old) + u64::from(u32::from_ne_bytes(new))
}

/// Writes the bytes `new` at `at` and returns `!old + new` over them in
/// native byte order.
#[inline]
fn set_ne16(b: &mut [u8], at: usize, new: [u8; 2]) -> u64 {
    let old = read_ne16(b, at);
    b[at..at + 2].copy_from_slice(&new);
    u64::from(!old) + u64::from(u16::from_ne_bytes(new))
}

/// The two bytes at `at` in native byte order (for checksum sums only).
#[inline]
fn read_ne16(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

/// The four bytes at `at` in native byte order (for checksum sums only).
#[inline]
fn read_ne32(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Offsets of the IPv4 source and destination addresses.
const SRC_ADDR: usize = 12;
const DST_ADDR: usize = 16;
/// Offsets of the TCP/UDP source and destination ports.
const SRC_PORT: usize = 0;
const DST_PORT: usize = 2;
/// Offset of the IPv4 header checksum.
const IP_CHECKSUM: usize = 10;
/// Length of an IPv4 header without options, of a TCP header without
/// options, of a UDP header.
const IPV4_HEADER: usize = crate::wire::ipv4::HEADER_LEN;
const TCP_HEADER: usize = crate::wire::tcp::HEADER_LEN;
const UDP_HEADER: usize = crate::wire::udp::HEADER_LEN;
/// Offsets of the TCP sequence number, acknowledgement number and flags.
const TCP_SEQ: usize = 4;
const TCP_ACK: usize = 8;
const TCP_FLAGS: usize = 13;
/// Offset of the TCP checksum in its header.
const TCP_CHECKSUM: usize = 16;
/// Offset of the UDP checksum in its header.
const UDP_CHECKSUM: usize = 6;

/// The header length, total length and protocol of the IPv4 packet `ip`,
/// once it is known to be a TCP or UDP packet whose IP payload holds the
/// transport header (and `ip` holds its total length).
pub(super) fn transport_header(ip: &[u8]) -> Result<Parsed, FwdError> {
    let Some(h) = ip.get(..crate::wire::ipv4::HEADER_LEN) else { return Err(WireError::Truncated.into()) };
    let (header_len, total_len, proto) = (usize::from(h[0] & 0x0f) * 4, usize::from(read_u16(h, 2)), h[9]);
    let l4_min = match proto {
        ip_proto::TCP => crate::wire::tcp::HEADER_LEN,
        ip_proto::UDP => crate::wire::udp::HEADER_LEN,
        _ => return Err(FwdError::Protocol(proto)),
    };
    if h[0] >> 4 != 4 || header_len < crate::wire::ipv4::HEADER_LEN {
        return Err(WireError::Malformed("ipv4: bad version or header length").into());
    }
    if total_len < header_len + l4_min || total_len > ip.len() {
        return Err(WireError::Truncated.into());
    }
    Ok(Parsed { header_len, total_len, proto })
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::wire::builder::{tcp_frame, udp_frame, TcpParams, UdpParams};
    use crate::wire::ethernet::HEADER_LEN;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    fn sock(a: [u8; 4], p: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::from(a), p)
    }

    /// Rewriting must give exactly the packet the builder makes (with full
    /// checksum computation) for the rewritten addresses.
    #[test]
    fn rewrites_match_full_recomputation() {
        struct Case {
            what: &'static str,
            field: Field,
            from: (SocketAddrV4, SocketAddrV4),
            to: SocketAddrV4,
            expect: (SocketAddrV4, SocketAddrV4),
        }
        let client = sock([10, 0, 0, 2], 40000);
        let vip = sock([10, 0, 0, 101], 80);
        let real = sock([10, 1, 0, 11], 8080);
        let cases = [
            Case { what: "dnat to real", field: Field::Destination, from: (client, vip), to: real, expect: (client, real) },
            Case { what: "snat reply to vip", field: Field::Source, from: (real, client), to: vip, expect: (vip, client) },
            Case {
                what: "same address, port only",
                field: Field::Destination,
                from: (client, vip),
                to: sock([10, 0, 0, 101], 81),
                expect: (client, sock([10, 0, 0, 101], 81)),
            },
        ];
        for case in &cases {
            for payload in [vec![], b"GET / HTTP/1.1\r\n\r\n".to_vec(), vec![0xff; 1]] {
                let mk = |(s, d): (SocketAddrV4, SocketAddrV4)| {
                    tcp_frame(&TcpParams {
                        src: *s.ip(),
                        dst: *d.ip(),
                        sport: s.port(),
                        dport: d.port(),
                        seq: 0x1234_5678,
                        payload: payload.clone(),
                        ..TcpParams::default()
                    })
                };
                let mut got = mk(case.from);
                rewrite(&mut got[HEADER_LEN..], case.field, case.to).expect(case.what);
                assert_eq!(got, mk(case.expect), "tcp: {} (payload {} bytes)", case.what, payload.len());

                let mku = |(s, d): (SocketAddrV4, SocketAddrV4)| {
                    udp_frame(&UdpParams {
                        src: *s.ip(),
                        dst: *d.ip(),
                        sport: s.port(),
                        dport: d.port(),
                        payload: payload.clone(),
                        ..UdpParams::default()
                    })
                };
                let mut got = mku(case.from);
                rewrite(&mut got[HEADER_LEN..], case.field, case.to).expect(case.what);
                assert_eq!(got, mku(case.expect), "udp: {} (payload {} bytes)", case.what, payload.len());
            }
        }
    }

    #[test]
    fn udp_without_checksum_keeps_none() {
        let mut f = udp_frame(&UdpParams::default());
        // Clear the UDP checksum (offset: eth 14 + ip 20 + 6).
        f[HEADER_LEN + 26] = 0;
        f[HEADER_LEN + 27] = 0;
        rewrite(&mut f[HEADER_LEN..], Field::Destination, sock([10, 1, 0, 12], 53)).expect("udp");
        assert_eq!(&f[HEADER_LEN + 26..HEADER_LEN + 28], &[0, 0]);
    }

    #[test]
    fn refuses_other_protocols_and_garbage() {
        let mut icmp = crate::wire::builder::icmp_echo_frame(
            crate::wire::MacAddr::ZERO,
            crate::wire::MacAddr::ZERO,
            Ipv4Addr::new(1, 1, 1, 1),
            Ipv4Addr::new(2, 2, 2, 2),
            1,
            1,
            b"x",
        );
        assert_eq!(rewrite(&mut icmp[HEADER_LEN..], Field::Source, sock([1, 2, 3, 4], 1)), Err(FwdError::Protocol(1)));
        let mut short = vec![0x45u8; 10];
        assert!(rewrite(&mut short, Field::Source, sock([1, 2, 3, 4], 1)).is_err());
        // A TCP packet whose IP length claims less than a TCP header.
        let mut f = tcp_frame(&TcpParams::default());
        let ip = &mut f[HEADER_LEN..];
        ip[2] = 0;
        ip[3] = 30;
        assert!(rewrite(ip, Field::Source, sock([1, 2, 3, 4], 1)).is_err());
    }

    /// Writes `new` at `at` and returns `~old + new` over its two 16-bit
    /// words (0 when nothing changed). For the reference implementation.
    fn set_u32(b: &mut [u8], at: usize, new: u32) -> u32 {
        let old = read_u32(b, at);
        if old == new {
            return 0;
        }
        b[at..at + 4].copy_from_slice(&new.to_be_bytes());
        u32::from(!((old >> 16) as u16)) + u32::from(!(old as u16)) + (new >> 16) + (new & 0xffff)
    }

    /// Writes `new` at `at` and returns `~old + new`. For the reference implementation.
    fn set_u16(b: &mut [u8], at: usize, new: u16) -> u32 {
        let old = read_u16(b, at);
        b[at..at + 2].copy_from_slice(&new.to_be_bytes());
        u32::from(!old) + u32::from(new)
    }

    /// The implementation before [`SeqShift`] and the fixed-size views,
    /// kept as the reference the current one must agree with.
    pub(in crate::fwd) fn reference_rewrite_ends_l4(
        ip: &mut [u8],
        src: Option<SocketAddrV4>,
        dst: Option<SocketAddrV4>,
    ) -> Result<Range<usize>, FwdError> {
        let Parsed { header_len, total_len, proto } = transport_header(ip)?;
        let (head, l4) = ip.split_at_mut(header_len);
        let (mut ip_words, mut l4_words) = (0u32, 0u32);
        if let Some(to) = src {
            let addr = set_u32(head, SRC_ADDR, u32::from(*to.ip()));
            ip_words += addr;
            l4_words += addr + set_u16(l4, SRC_PORT, to.port());
        }
        if let Some(to) = dst {
            let addr = set_u32(head, DST_ADDR, u32::from(*to.ip()));
            ip_words += addr;
            l4_words += addr + set_u16(l4, DST_PORT, to.port());
        }
        if ip_words != 0 {
            let c = !checksum::fold(u32::from(!read_u16(head, IP_CHECKSUM)) + ip_words);
            head[IP_CHECKSUM..IP_CHECKSUM + 2].copy_from_slice(&c.to_be_bytes());
        }
        let at = if proto == ip_proto::TCP { TCP_CHECKSUM } else { UDP_CHECKSUM };
        let old = read_u16(l4, at);
        let c = match (proto, old) {
            (ip_proto::UDP, 0) => 0,
            (ip_proto::UDP, _) => match !checksum::fold(u32::from(!old) + l4_words) {
                0 => 0xffff,
                c => c,
            },
            _ => !checksum::fold(u32::from(!old) + l4_words),
        };
        l4[at..at + 2].copy_from_slice(&c.to_be_bytes());
        Ok(header_len..total_len)
    }

    /// Random IPv4 packets to rewrite: TCP or UDP frames with random
    /// fields, then up to `mutations` random bytes overwritten (versions,
    /// header lengths, protocols, flags, data offsets, zero checksums...).
    pub(in crate::fwd) fn random_packet(mutations: usize) -> impl Strategy<Value = Vec<u8>> {
        let params = (any::<[u8; 4]>(), any::<[u8; 4]>(), any::<u16>(), any::<u16>(), any::<u32>(), any::<u32>(), any::<u8>());
        (
            any::<bool>(),
            params,
            proptest::collection::vec(any::<u8>(), 0..40),
            proptest::collection::vec((any::<usize>(), any::<u8>()), 0..=mutations),
        )
            .prop_map(|(is_tcp, (s, d, sport, dport, seq, ack, flags), payload, muts)| {
                let frame = if is_tcp {
                    tcp_frame(&TcpParams { src: s.into(), dst: d.into(), sport, dport, seq, ack, flags, payload, ..TcpParams::default() })
                } else {
                    udp_frame(&UdpParams { src: s.into(), dst: d.into(), sport, dport, payload, ..UdpParams::default() })
                };
                let mut ip = frame[HEADER_LEN..].to_vec();
                for (at, value) in muts {
                    // Mostly the headers, where the changes matter.
                    let at = at % ip.len().min(48);
                    ip[at] = value;
                }
                ip
            })
    }

    fn any_end() -> impl Strategy<Value = Option<SocketAddrV4>> {
        proptest::option::of((any::<[u8; 4]>(), any::<u16>()).prop_map(|(a, p)| sock(a, p)))
    }

    proptest! {
        /// The one-pass rewrite gives exactly the reference's bytes and result.
        #[test]
        fn rewrite_ends_agrees_with_the_reference(ip in random_packet(3), src in any_end(), dst in any_end()) {
            let (mut got, mut want) = (ip.clone(), ip);
            let result = transport_header(&got).and_then(|parsed| rewrite_ends_l4(&mut got, parsed, src, dst, SeqShift::None)).map(|t| t.range);
            let expected = reference_rewrite_ends_l4(&mut want, src, dst);
            prop_assert_eq!(&result, &expected);
            if result.is_ok() {
                prop_assert_eq!(got, want);
            }
        }

        /// Unchanged addresses (only the ports change, or nothing) too.
        #[test]
        fn rewrite_ends_agrees_when_addresses_stay(ip in random_packet(2), sport in any::<u16>(), dport in any::<u16>()) {
            let src = Some(sock([ip[12], ip[13], ip[14], ip[15]], sport));
            let dst = Some(sock([ip[16], ip[17], ip[18], ip[19]], dport));
            let (mut got, mut want) = (ip.clone(), ip);
            let result = transport_header(&got).and_then(|parsed| rewrite_ends_l4(&mut got, parsed, src, dst, SeqShift::None)).map(|t| t.range);
            prop_assert_eq!(&result, &reference_rewrite_ends_l4(&mut want, src, dst));
            if result.is_ok() {
                prop_assert_eq!(got, want);
            }
        }
    }
}
