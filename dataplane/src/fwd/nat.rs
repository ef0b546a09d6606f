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

use super::{FwdError, NextHop};

/// Rewrites a client packet for the real server (DNAT) and says where it goes.
pub fn xmit_inbound(ip: &mut [u8], conn: &Conn) -> Result<NextHop, FwdError> {
    rewrite(ip, Field::Destination, conn.real)?;
    Ok(NextHop::Routed(*conn.real.ip()))
}

/// Rewrites a real server's reply to come from the VIP and says where it goes.
pub fn xmit_reply(ip: &mut [u8], conn: &Conn) -> Result<NextHop, FwdError> {
    rewrite(ip, Field::Source, conn.vip)?;
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
    rewrite_ends_l4(ip, src, dst).map(|_| ())
}

/// [`rewrite_ends`], returning where the transport bytes are in `ip` (the
/// IP payload, `header_len..total_len`, checked to be within `ip`), so a
/// caller that rewrites more of the transport header need not parse the
/// IP header again.
pub(super) fn rewrite_ends_l4(ip: &mut [u8], src: Option<SocketAddrV4>, dst: Option<SocketAddrV4>) -> Result<Range<usize>, FwdError> {
    let (header_len, total_len, proto) = transport_header(ip)?;
    let (head, l4) = ip.split_at_mut(header_len);
    // Σ(~old + new) over the changed 16-bit words: the addresses count in
    // both checksums (through the pseudo-header), the ports in the transport one.
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
    // A zero UDP checksum means "none" and stays zero; a computed zero is sent as 0xffff.
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

/// Writes `new` at `at` and returns `~old + new` over its two 16-bit words
/// (0 when nothing changed).
#[inline]
fn set_u32(b: &mut [u8], at: usize, new: u32) -> u32 {
    let old = read_u32(b, at);
    if old == new {
        return 0;
    }
    b[at..at + 4].copy_from_slice(&new.to_be_bytes());
    u32::from(!((old >> 16) as u16)) + u32::from(!(old as u16)) + (new >> 16) + (new & 0xffff)
}

/// Writes `new` at `at` and returns `~old + new`.
#[inline]
fn set_u16(b: &mut [u8], at: usize, new: u16) -> u32 {
    let old = read_u16(b, at);
    b[at..at + 2].copy_from_slice(&new.to_be_bytes());
    u32::from(!old) + u32::from(new)
}

/// Offsets of the IPv4 source and destination addresses.
const SRC_ADDR: usize = 12;
const DST_ADDR: usize = 16;
/// Offsets of the TCP/UDP source and destination ports.
const SRC_PORT: usize = 0;
const DST_PORT: usize = 2;
/// Offset of the IPv4 header checksum.
const IP_CHECKSUM: usize = 10;
/// Offset of the TCP checksum in its header.
const TCP_CHECKSUM: usize = 16;
/// Offset of the UDP checksum in its header.
const UDP_CHECKSUM: usize = 6;

/// The header length, total length and protocol of the IPv4 packet `ip`,
/// once it is known to be a TCP or UDP packet whose IP payload holds the
/// transport header (and `ip` holds its total length).
fn transport_header(ip: &[u8]) -> Result<(usize, usize, u8), FwdError> {
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
    Ok((header_len, total_len, proto))
}

fn read_u16(b: &[u8], at: usize) -> u16 {
    crate::wire::be16(b, at..at + 2)
}

fn read_u32(b: &[u8], at: usize) -> u32 {
    crate::wire::be32(b, at..at + 4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::builder::{tcp_frame, udp_frame, TcpParams, UdpParams};
    use crate::wire::ethernet::HEADER_LEN;
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
}
