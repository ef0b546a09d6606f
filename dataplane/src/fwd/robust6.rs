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
