//! Full NAT over IPv6 (DPVS `-b` with an IPv6 VIP, IPv6 local addresses and
//! IPv6 real servers; keepalived `lb_kind FNAT`).
//!
//! As IPv4 [`super::fnat`]: inbound, `[client]:cport` → `[VIP]:vport` becomes
//! `[LIP]:lport` → `[RIP]:rport`; replies `[RIP]:rport` → `[LIP]:lport` leave as
//! `[VIP]:vport` → `[client]:cport`. The addresses and ports are rewritten with
//! [`super::nat6::rewrite_ends`] (extension headers walked and kept, the
//! transport checksum updated incrementally), and TCP sequence numbers are
//! shifted exactly as IPv4 FULLNAT does (the same functions: `seq += delta`
//! and timestamps stripped from the SYN inbound; `ack -= delta` and SACK
//! edges `-= delta` in replies; see [`super::fnat`] for why).
//!
//! **TOA for IPv6 clients.** DPVS's IPv6 TOA option (`kmod/toa/toa.h`,
//! `struct toa_ip6_data`): kind 254, length 20, then the client's port (2
//! bytes) and IPv6 address (16 bytes), all in network order. It is inserted,
//! like the IPv4 option ([`super::fnat::insert_toa`]), after the existing
//! options of the client's first ACK, when the TCP header has 20 bytes of
//! room. The same 20-byte option carries an IPv6 client to an IPv4 real
//! server through NAT64 ([`insert_toa6`] works on both IP versions), as in
//! DPVS. The MSS is not lowered for the option: the IPv4 path does not do it
//! either, and the option only travels in the handshake's last ACK (which
//! carries no more than the client's first data, when any).

use std::net::{Ipv6Addr, SocketAddrV6};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::frame::Frame;
use crate::wire::ipv6::next_header;
use crate::wire::{Ipv4Packet, Ipv6Packet, TcpSegment, WireError};

use super::fnat::{find_toa_option, shift_segment_seq, unshift_segment_ack, TOA_KIND};
use super::{l4v6, nat6, FwdError, NextHop6};

/// Length of the IPv6 TOA option: kind, length, port, 16-byte address.
pub const TOA6_LEN: usize = 20;
/// Largest TCP header.
const MAX_TCP_HEADER: usize = 60;

/// FULLNAT inbound over IPv6: rewrites a client packet `ip` to `local` →
/// `real` (TCP: sequence number shifted by `seq_delta`, timestamps removed
/// from a SYN; UDP: addresses and ports only) and says where it goes.
pub fn xmit_inbound(ip: &mut [u8], local: SocketAddrV6, real: SocketAddrV6, seq_delta: u32) -> Result<NextHop6, FwdError> {
    nat6::rewrite_ends(ip, Some(local), Some(real))?;
    if let Some(segment) = tcp_segment(ip)? {
        shift_segment_seq(segment, seq_delta)?;
    }
    Ok(NextHop6::Routed(*real.ip()))
}

/// FULLNAT reply over IPv6: rewrites a real server's reply `ip` to `vip` →
/// `client` (TCP: acknowledgement and SACK blocks shifted back by
/// `seq_delta`) and says where it goes.
pub fn xmit_reply(ip: &mut [u8], vip: SocketAddrV6, client: SocketAddrV6, seq_delta: u32) -> Result<NextHop6, FwdError> {
    nat6::rewrite_ends(ip, Some(vip), Some(client))?;
    if let Some(segment) = tcp_segment(ip)? {
        unshift_segment_ack(segment, seq_delta)?;
    }
    Ok(NextHop6::Routed(*client.ip()))
}

/// The TCP segment of the IPv6 packet `ip` (up to the end of its payload),
/// `None` for UDP.
fn tcp_segment(ip: &mut [u8]) -> Result<Option<&mut [u8]>, FwdError> {
    let upper = l4v6::transport(ip)?;
    if upper.protocol != next_header::TCP {
        return Ok(None);
    }
    Ok(ip.get_mut(upper.offset..upper.offset + upper.len))
}

/// The `seq_delta` of a new FULLNAT TCP connection whose client SYN is the
/// IPv6 packet `ip`, leaving from `local` towards `real`, at the current wall
/// clock (RFC 6528 `M + F`, as [`super::fnat::new_seq_delta`]).
pub fn new_seq_delta(ip: &[u8], local: SocketAddrV6, real: SocketAddrV6) -> Result<u32, FwdError> {
    let isn = client_isn(ip)?;
    let wall_ns = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    Ok(initial_seq(local, real, wall_ns).wrapping_sub(isn))
}

/// The sequence number of the TCP segment of the IPv6 packet `ip`.
pub fn client_isn(ip: &[u8]) -> Result<u32, FwdError> {
    let upper = l4v6::transport(ip)?;
    if upper.protocol != next_header::TCP {
        return Err(FwdError::Protocol(upper.protocol));
    }
    let segment = ip.get(upper.offset..upper.offset + upper.len).ok_or(WireError::Truncated)?;
    Ok(TcpSegment::new_checked(segment)?.seq_number())
}

/// rvs's initial sequence number towards `real` from `local` at `wall_ns`:
/// the 64 ns clock plus a fixed hash of the IPv6 4-tuple (the IPv6
/// counterpart of [`super::fnat::initial_seq`]).
pub fn initial_seq(local: SocketAddrV6, real: SocketAddrV6, wall_ns: u64) -> u32 {
    let fold = |a: &Ipv6Addr| {
        let b = a.to_bits();
        (b >> 64) as u64 ^ (b as u64).rotate_left(17)
    };
    let ports = u64::from(local.port()) << 48 | u64::from(real.port()) << 16;
    let x = super::fnat::mix(fold(local.ip()) ^ ports) as u64 ^ fold(real.ip()).rotate_left(32);
    ((wall_ns >> 6) as u32).wrapping_add(super::fnat::mix(x))
}

/// Inserts the 20-byte TOA option carrying `client` (DPVS's IPv6 layout, see
/// the module documentation) after the options of the TCP segment of the IP
/// packet at `l2_len`: an IPv6 packet (FULLNAT over IPv6) or an IPv4 packet
/// (NAT64, where the real server is IPv4 and the client IPv6). Lengths and
/// checksums are updated. Returns `Ok(false)`, the frame unchanged, when the
/// TCP header has no room for 20 more bytes.
pub fn insert_toa6<F: Frame>(frame: &mut F, l2_len: usize, client: SocketAddrV6) -> Result<bool, FwdError> {
    let ip = frame.data().get(l2_len..).ok_or(WireError::Truncated)?;
    let version = ip.first().map(|b| b >> 4);
    // Offset of the TCP header in the IP packet and its header length.
    let (l4, tcp_hl) = if version == Some(6) {
        let upper = l4v6::transport(ip)?;
        if upper.protocol != next_header::TCP {
            return Err(FwdError::Protocol(upper.protocol));
        }
        (upper.offset, TcpSegment::new_checked(&ip[upper.offset..upper.offset + upper.len])?.header_len())
    } else {
        let pkt = Ipv4Packet::new_checked(ip)?;
        if pkt.protocol() != next_header::TCP {
            return Err(FwdError::Protocol(pkt.protocol()));
        }
        (pkt.header_len(), TcpSegment::new_checked(pkt.payload())?.header_len())
    };
    if tcp_hl + TOA6_LEN > MAX_TCP_HEADER {
        return Ok(false);
    }
    let headers = l2_len + l4 + tcp_hl;
    if !frame.insert_gap(headers, TOA6_LEN) {
        return Err(FwdError::NoRoom);
    }
    let data = frame.data_mut();
    let toa = &mut data[headers..headers + TOA6_LEN];
    toa[0] = TOA_KIND;
    toa[1] = TOA6_LEN as u8;
    toa[2..4].copy_from_slice(&client.port().to_be_bytes());
    toa[4..].copy_from_slice(&client.ip().octets());
    let ip = &mut data[l2_len..];
    if version == Some(6) {
        let mut pkt = Ipv6Packet::new_unchecked(&mut *ip);
        let len = u16::try_from(usize::from(pkt.payload_len()) + TOA6_LEN).map_err(|_| FwdError::NoRoom)?;
        pkt.set_payload_len(len);
        let (src, dst) = (pkt.src_addr(), pkt.dst_addr());
        let end = crate::wire::ipv6::HEADER_LEN + usize::from(len);
        let mut tcp = TcpSegment::new_unchecked(&mut ip[l4..end]);
        tcp.set_header_len(tcp_hl + TOA6_LEN);
        tcp.fill_checksum_v6(src, dst);
    } else {
        let mut pkt = Ipv4Packet::new_unchecked(&mut *ip);
        let len = u16::try_from(usize::from(pkt.total_len()) + TOA6_LEN).map_err(|_| FwdError::NoRoom)?;
        pkt.set_total_len(len);
        pkt.fill_checksum();
        let (src, dst) = (pkt.src_addr(), pkt.dst_addr());
        let mut tcp = TcpSegment::new_unchecked(pkt.payload_mut());
        tcp.set_header_len(tcp_hl + TOA6_LEN);
        tcp.fill_checksum(src, dst);
    }
    Ok(true)
}

/// Finds the IPv6 TOA option (kind 254, length 20) in TCP options, returning
/// the client it names.
pub fn find_toa6(options: &[u8]) -> Option<SocketAddrV6> {
    let o = find_toa_option(options, TOA6_LEN)?;
    let mut addr = [0u8; 16];
    addr.copy_from_slice(&o[4..]);
    Some(SocketAddrV6::new(Ipv6Addr::from(addr), u16::from_be_bytes([o[2], o[3]]), 0, 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fwd::fixtures6::{fixture, frame, ip_of, L2};

    fn sock(a: &str, port: u16) -> SocketAddrV6 {
        SocketAddrV6::new(a.parse().expect("addr"), port, 0, 0)
    }

    /// The fixtures' `seq_delta`.
    const DELTA: u32 = 0x9000_0003;

    fn ends() -> (SocketAddrV6, SocketAddrV6, SocketAddrV6, SocketAddrV6) {
        (sock("2001:db8::1", 40000), sock("2001:db8::64", 80), sock("2001:db8:1::200", 5001), sock("2001:db8:1::11", 8080))
    }

    #[test]
    fn fullnat6_rewrites_match_scapy() {
        let (client, vip, local, real) = ends();
        let cases = [
            ("SYN: both ends, seq + delta, timestamps become NOPs", "fnat_syn_in", "fnat_syn_out", true),
            ("data: seq + delta", "fnat_data_in", "fnat_data_out", true),
            ("udp: ends only", "fnat_udp_in", "fnat_udp_out", true),
            ("reply: ack and SACK edges - delta", "fnat_reply_in", "fnat_reply_out", false),
            ("udp reply", "fnat_udp_reply_in", "fnat_udp_reply_out", false),
            ("destination options kept", "fnat_dst_opts_in", "fnat_dst_opts_out", true),
        ];
        for (what, input, expected, inbound) in cases {
            let mut ip = fixture(input);
            let hop = if inbound { xmit_inbound(&mut ip, local, real, DELTA) } else { xmit_reply(&mut ip, vip, client, DELTA) };
            assert_eq!(ip, fixture(expected), "{what}");
            assert_eq!(hop, Ok(NextHop6::Routed(if inbound { *real.ip() } else { *client.ip() })), "{what}");
        }
    }

    #[test]
    fn the_initial_sequence_number_moves_with_the_clock_and_differs_per_tuple() {
        let (_, _, local, real) = ends();
        let t0 = 1_800_000_000_000_000_000u64;
        let first = initial_seq(local, real, t0);
        assert_eq!(initial_seq(local, real, t0 + 60_000_000_000).wrapping_sub(first), (60_000_000_000u64 >> 6) as u32);
        assert_ne!(initial_seq(sock("2001:db8:1::200", 5002), real, t0), first, "another local port");
        assert_ne!(initial_seq(local, sock("2001:db8:1::12", 8080), t0), first, "another real server");
        assert_ne!(initial_seq(sock("2001:db8:1::201", 5001), real, t0), first, "another local address");
        let syn = fixture("fnat_syn_in");
        assert_eq!(client_isn(&syn), Ok(0x7f00_0010));
        assert!(new_seq_delta(&syn, local, real).is_ok());
        assert!(new_seq_delta(&syn[..60], local, real).is_err(), "a truncated SYN is refused");
        assert_eq!(client_isn(&fixture("fnat_udp_in")), Err(FwdError::Protocol(17)));
    }

    #[test]
    fn toa6_is_inserted_as_dpvs_lays_it_out() {
        let (client, ..) = ends();
        for (what, input, expected) in [
            ("ipv6 (fullnat)", "toa6_in", "toa6_out"),
            ("ipv4 (nat64)", "toa64_in", "toa64_out"),
            ("ipv6 after options", "toa6_opts_in", "toa6_opts_out"),
        ] {
            let mut f = frame(input);
            let l2 = f.to_vec()[..L2].to_vec();
            assert_eq!(insert_toa6(&mut f, L2, client), Ok(true), "{what}");
            assert_eq!(ip_of(&f), fixture(expected), "{what}");
            assert_eq!(f.to_vec()[..L2], l2[..], "{what}");
            let out = fixture(expected);
            let at = if out[0] >> 4 == 6 { 40 } else { 20 };
            assert_eq!(find_toa6(TcpSegment::new_checked(&out[at..]).expect("tcp").options()), Some(client), "{what}");
        }
        // No room: a 48-byte TCP header.
        let mut f = frame("toa6_full");
        let before = f.to_vec();
        assert_eq!(insert_toa6(&mut f, L2, client), Ok(false));
        assert_eq!(f.to_vec(), before);
        let mut f = frame("fnat_udp_in");
        assert_eq!(insert_toa6(&mut f, L2, client), Err(FwdError::Protocol(17)));
    }

    #[test]
    fn toa6_parser_walks_options() {
        let mut opts = vec![1, 1, 254, 20, 0x9c, 0x40];
        opts.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().expect("a").octets());
        assert_eq!(find_toa6(&opts), Some(ends().0));
        assert_eq!(find_toa6(&opts[..opts.len() - 1]), None, "cut short");
        assert_eq!(find_toa6(&[254, 8, 0x9c, 0x40, 10, 0, 0, 2]), None, "the IPv4 option");
        assert_eq!(find_toa6(&[2, 0]), None);
        assert_eq!(find_toa6(&[0, 254, 20]), None);
    }
}
