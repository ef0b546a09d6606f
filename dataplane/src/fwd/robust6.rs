//! Malformed input for every IPv6 and NAT64 function of [`super`]: truncated
//! headers, extension chains past the buffer, lengths that lie, random bytes.
//! Each must return an error or a packet, never panic, and a rewrite that
//! succeeds on a mutated packet must leave a packet that still parses.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

use proptest::prelude::*;

use super::fixtures6::{fixture, L2};
use super::{fnat6, hop6, icmp6_err, nat6, nat64, tun6};
use crate::frame::{Frame, VecFrame};
use crate::wire::Ipv6Packet;

/// Fixtures the mutations start from: every kind of packet the functions take.
const SEEDS: [&str; 14] = [
    "nat_in_tcp",
    "nat_in_chain",
    "nat_in_atomic",
    "fnat_syn_in",
    "fnat_reply_in",
    "n64_synack_in",
    "n64_reply_opts_in",
    "n64_icmp_fn_in",
    "n64_icmp_te_in",
    "n64_icmp6_ptb_in",
    "tun_4in6_big",
    "chain_past_end",
    "fwd_err_ext_in",
    "frag_second",
];

fn v6(port: u16) -> SocketAddrV6 {
    SocketAddrV6::new(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1), port, 0, 0)
}

fn v4(port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, 200), port)
}

fn frame_of(ip: &[u8]) -> VecFrame {
    let mut bytes = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x86, 0xdd];
    bytes.extend_from_slice(ip);
    VecFrame::new(&bytes)
}

/// Runs every function on `ip`; panics only if one of them does, or if a
/// successful IPv6 rewrite leaves a packet that no longer parses.
fn exercise(ip: &[u8]) {
    let mut b = ip.to_vec();
    let _ = hop6::decrement(&mut b);
    let mut b = ip.to_vec();
    if nat6::rewrite_ends(&mut b, Some(v6(1)), Some(v6(2))).is_ok() {
        assert!(Ipv6Packet::new_checked(&b[..]).is_ok());
    }
    let mut b = ip.to_vec();
    let _ = fnat6::xmit_inbound(&mut b, v6(1), v6(2), 0x9000_0003);
    let mut b = ip.to_vec();
    let _ = fnat6::xmit_reply(&mut b, v6(1), v6(2), 0x9000_0003);
    let _ = fnat6::client_isn(ip);
    let _ = fnat6::find_toa6(ip);
    let _ = icmp6_err::quoted_flow6(ip);
    let t = icmp6_err::Translation6 {
        outer_src: Some(*v6(0).ip()),
        quoted_src: Some(v6(1)),
        quoted_dst: Some(v6(2)),
        quoted_seq_shift: 3,
        ..Default::default()
    };
    let mut b = ip.to_vec();
    let _ = icmp6_err::translate6(&mut b, &t);
    let mut b = ip.to_vec();
    let _ = nat6::rewrite_fragment_addrs(&mut b, Some(*v6(1).ip()), Some(*v6(2).ip()));
    let _ = fnat6::insert_toa6(&mut frame_of(ip), L2, v6(3));
    let mut f = frame_of(ip);
    if icmp6_err::make_error6(&mut f, L2, Ipv6Addr::LOCALHOST, 3, 0, 0).is_ok() {
        assert!(f.len() - L2 <= crate::wire::icmpv6::MAX_ERROR_LEN);
    }
    let _ = nat64::too_big_inbound(ip, 576);
    let _ = nat64::too_big_reply(ip, 1280);
    let _ = nat64::xmit_inbound(&mut frame_of(ip), L2, v4(1), v4(2), 7);
    let _ = nat64::xmit_reply(&mut frame_of(ip), L2, v6(1), v6(2), 7);
    let to6 = nat64::Icmp4To6 {
        outer_src: *v6(0).ip(),
        outer_dst: *v6(0).ip(),
        quoted_src: v6(1),
        quoted_dst: v6(2),
        quoted_seq_shift: 5,
        mtu6: 1500,
    };
    let _ = nat64::icmp4_to_6(&mut frame_of(ip), L2, &to6);
    let to4 = nat64::Icmp6To4 {
        outer_src: *v4(0).ip(),
        outer_dst: *v4(0).ip(),
        quoted_src: v4(1),
        quoted_dst: v4(2),
        quoted_seq_shift: 0,
        mtu4: 1500,
    };
    let _ = nat64::icmp6_to_4(&mut frame_of(ip), L2, &to4);
    let _ = tun6::transmit6(&mut frame_of(ip), L2, *v6(0).ip(), *v6(1).ip(), 1500, &mut Vec::new());
    let _ = tun6::transmit6(&mut frame_of(ip), L2, *v6(0).ip(), *v6(1).ip(), 600, &mut Vec::new());
    let _ = tun6::transmit_6in4(&mut frame_of(ip), L2, *v4(0).ip(), *v4(1).ip(), 1500, &mut 0);
}

#[test]
fn every_truncation_of_every_seed_is_handled() {
    for name in SEEDS {
        let ip = fixture(name);
        for len in 0..=ip.len() {
            exercise(&ip[..len]);
        }
    }
}

proptest! {
    /// Random bytes, a version nibble of 4 or 6 mostly.
    #[test]
    fn random_bytes_never_panic(first in prop_oneof![Just(0x60u8), Just(0x45u8), Just(0x46u8), any::<u8>()],
                                rest in proptest::collection::vec(any::<u8>(), 0..160)) {
        let mut ip = vec![first];
        ip.extend_from_slice(&rest);
        exercise(&ip);
    }

    /// A seed with bytes overwritten: lengths that lie, chains that run past
    /// the buffer, bad header lengths, quotes that are cut.
    #[test]
    fn mutated_packets_never_panic(seed in 0..SEEDS.len(),
                                   edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
                                   cut in any::<usize>()) {
        let mut ip = fixture(SEEDS[seed]);
        for (at, value) in edits {
            let n = ip.len();
            ip[at % n] = value;
        }
        let len = ip.len();
        ip.truncate(len - cut % (len / 4 + 1));
        exercise(&ip);
    }
}

/// Packets written by etherparse (its own builder and checksums, not rvs's).
mod independent {
    use etherparse::{Ipv4Header, PacketBuilder, TcpHeader, UdpHeader};

    /// An IPv6 (`v6`) or IPv4 TCP (`tcp`) or UDP packet with `payload`.
    pub fn packet(v6: bool, tcp: bool, src: [u8; 16], dst: [u8; 16], ports: (u16, u16), seq: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let v4 = |a: [u8; 16]| [a[0], a[1], a[2], a[3]];
        let ip = if v6 { PacketBuilder::ipv6(src, dst, 64) } else { PacketBuilder::ipv4(v4(src), v4(dst), 64) };
        let written = if tcp {
            ip.tcp(ports.0, ports.1, seq, 4096).ack(seq ^ 0x5555_5555).write(&mut out, payload)
        } else {
            ip.udp(ports.0, ports.1).write(&mut out, payload)
        };
        written.expect("etherparse writes the packet");
        out
    }

    /// The addresses of the pseudo-header.
    enum Ends {
        V6([u8; 16], [u8; 16]),
        V4([u8; 4], [u8; 4]),
    }

    /// True when the packet's IPv4 header checksum (if IPv4) and its TCP/UDP
    /// checksum (no extension headers, no IPv4 options) are right, by
    /// etherparse's computation.
    pub fn checksums_ok(ip: &[u8]) -> bool {
        let (ends, proto, l4) = match ip.first().map(|b| b >> 4) {
            Some(6) if ip.len() >= 40 => {
                let plen = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
                let a = |r: std::ops::Range<usize>| <[u8; 16]>::try_from(&ip[r]).expect("16 bytes");
                (Ends::V6(a(8..24), a(24..40)), ip[6], ip.get(40..40 + plen).unwrap_or(&[]))
            }
            Some(4) => {
                let Ok((h, rest)) = Ipv4Header::from_slice(ip) else { return false };
                if h.header_checksum != h.calc_header_checksum() {
                    return false;
                }
                (Ends::V4(h.source, h.destination), h.protocol.0, rest)
            }
            _ => return false,
        };
        match proto {
            6 => {
                let Ok((h, payload)) = TcpHeader::from_slice(l4) else { return false };
                let want = match ends {
                    Ends::V6(s, d) => h.calc_checksum_ipv6_raw(s, d, payload),
                    Ends::V4(s, d) => h.calc_checksum_ipv4_raw(s, d, payload),
                };
                want.is_ok_and(|c| c == h.checksum)
            }
            17 => {
                let Ok((h, payload)) = UdpHeader::from_slice(l4) else { return false };
                let want = match ends {
                    Ends::V6(s, d) => h.calc_checksum_ipv6_raw(s, d, payload),
                    Ends::V4(s, d) => h.calc_checksum_ipv4_raw(s, d, payload),
                };
                want.is_ok_and(|c| c == h.checksum)
            }
            _ => false,
        }
    }
}

proptest! {
    /// Whatever the addresses, ports, sequence shift and payload, the
    /// incremental updates of NAT, FULLNAT and NAT64 leave checksums that
    /// etherparse computes the same.
    #[test]
    fn rewritten_checksums_match_a_full_computation(tcp in any::<bool>(),
                                                    a in any::<[u8; 16]>(), b in any::<[u8; 16]>(),
                                                    c in any::<[u8; 16]>(), d in any::<[u8; 16]>(),
                                                    ports in any::<(u16, u16, u16, u16)>(), seq in any::<u32>(), delta in any::<u32>(),
                                                    payload in proptest::collection::vec(any::<u8>(), 0..80)) {
        let (s6, t6) = (SocketAddrV6::new(c.into(), ports.2, 0, 0), SocketAddrV6::new(d.into(), ports.3, 0, 0));
        let (s4, t4) = (SocketAddrV4::new([c[0], c[1], c[2], c[3]].into(), ports.2), SocketAddrV4::new([d[0], d[1], d[2], d[3]].into(), ports.3));
        let input6 = independent::packet(true, tcp, a, b, (ports.0, ports.1), seq, &payload);
        prop_assert!(independent::checksums_ok(&input6));

        let mut ip = input6.clone();
        prop_assert!(nat6::rewrite_ends(&mut ip, Some(s6), Some(t6)).is_ok());
        prop_assert!(independent::checksums_ok(&ip), "nat6");
        let mut ip = input6.clone();
        prop_assert!(fnat6::xmit_inbound(&mut ip, s6, t6, delta).is_ok());
        prop_assert!(independent::checksums_ok(&ip), "fnat6 inbound");
        let mut ip = input6.clone();
        prop_assert!(fnat6::xmit_reply(&mut ip, s6, t6, delta).is_ok());
        prop_assert!(independent::checksums_ok(&ip), "fnat6 reply");
        let mut f = frame_of(&input6);
        prop_assert!(nat64::xmit_inbound(&mut f, L2, s4, t4, delta).is_ok());
        prop_assert!(independent::checksums_ok(&super::fixtures6::ip_of(&f)), "nat64 inbound");

        let input4 = independent::packet(false, tcp, a, b, (ports.0, ports.1), seq, &payload);
        prop_assert!(independent::checksums_ok(&input4));
        let mut f = frame_of(&input4);
        prop_assert!(nat64::xmit_reply(&mut f, L2, s6, t6, delta).is_ok());
        prop_assert!(independent::checksums_ok(&super::fixtures6::ip_of(&f)), "nat64 reply");
        if tcp {
            let mut f = frame_of(&input6);
            prop_assert_eq!(fnat6::insert_toa6(&mut f, L2, s6), Ok(true));
            prop_assert!(independent::checksums_ok(&super::fixtures6::ip_of(&f)), "toa6");
        }
    }
}
