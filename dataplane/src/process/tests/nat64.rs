//! NAT64 connections beyond their packets' translation. ICMP errors about
//! them cross the family boundary (RFC 7915 §4.2 and §5.2): an ICMPv4 error from the IPv4 side reaches the IPv6 client
//! as an ICMPv6 error from the VIP quoting the client's own packet, and an
//! ICMPv6 error from the client's side reaches the IPv4 real server as an
//! ICMPv4 error from the local address quoting its own reply. A sync master
//! sends the state changes the real server's replies make. Inputs are
//! built with etherparse; outputs are read and their checksums recomputed
//! by etherparse.

use etherparse::{Icmpv4Type, Icmpv6Type, NetSlice, PacketBuilder, SlicedPacket, TransportSlice};

use super::ipv6::{icmpv6_frame, processor6, run, tcp4, tcp6, CLIENT6, LIP4, NAT64};
use super::*;

/// A router on the real servers' network (it sends the ICMPv4 errors).
const ROUTER4: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 254);

/// Opens a NAT64 connection from `CLIENT6:cport` and returns the IPv4
/// packet the director sent to the real server (IP header on) and its
/// local port.
fn open(p: &mut Processor<VecFrame>, cport: u16) -> (Vec<u8>, u16) {
    let out = run(p, &tcp6(CLIENT_MAC, (CLIENT6, cport), (NAT64, 80), true, false, b""));
    assert_eq!(out.tx.len(), 1, "the SYN is translated");
    let sent = out.tx[0].1.data().to_vec();
    let r = SlicedPacket::from_ethernet(&sent).expect("ipv4");
    let Some(TransportSlice::Tcp(t)) = r.transport else { panic!("tcp") };
    let lport = t.source_port();
    (sent[14..].to_vec(), lport)
}

/// An ICMPv4 error from `ROUTER4` to the local address quoting `quoted`.
fn icmp4_error(t: Icmpv4Type, quoted: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(RS1_MAC.0, DIR_MAC.0).ipv4(ROUTER4.octets(), LIP4.octets(), 64).icmpv4(t);
    let mut v = Vec::with_capacity(b.size(quoted.len()));
    b.write(&mut v, quoted).expect("icmpv4 frame");
    v
}

#[test]
fn fragmentation_needed_on_the_ipv4_side_reaches_the_client_as_packet_too_big() {
    let mut p = processor6(1500);
    let (quoted, _) = open(&mut p, 40060);
    let frag_needed =
        Icmpv4Type::DestinationUnreachable(etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: 1400 });
    let out = run(&mut p, &icmp4_error(frag_needed, &quoted));
    assert_eq!(out.tx.len(), 1, "translated and sent");
    let sent = out.tx[0].1.data();
    assert_eq!(&sent[..6], &CLIENT_MAC.0, "to the client");
    let r = SlicedPacket::from_ethernet(sent).expect("an ICMPv6 error");
    let Some(NetSlice::Ipv6(ip)) = &r.net else { panic!("ipv6") };
    assert_eq!((ip.header().source_addr(), ip.header().destination_addr()), (NAT64, CLIENT6), "from the VIP");
    assert_eq!(ip.header().hop_limit(), 63, "the TTL became the hop limit, less one");
    let Some(TransportSlice::Icmpv6(icmp)) = &r.transport else { panic!("icmpv6") };
    assert_eq!(icmp.icmp_type(), Icmpv6Type::PacketTooBig { mtu: 1420 }, "the IPv4 MTU plus the 20 bytes IPv6's header adds");
    let want = icmp.icmp_type().calc_checksum(NAT64.octets(), CLIENT6.octets(), icmp.payload()).expect("checksum");
    assert_eq!(icmp.checksum(), want);
    // The quote is the client's own SYN: its addresses, ports and sequence number.
    let q = etherparse::Ipv6HeaderSlice::from_slice(icmp.payload()).expect("a quoted IPv6 header");
    assert_eq!((q.source_addr(), q.destination_addr()), (CLIENT6, NAT64));
    let tcp = &icmp.payload()[40..];
    assert_eq!(u16::from_be_bytes([tcp[0], tcp[1]]), 40060);
    assert_eq!(u16::from_be_bytes([tcp[2], tcp[3]]), 80);
    assert_eq!(u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]), 1000, "the client's sequence number, unshifted");
    assert_eq!(p.counters().get(Counter::IcmpErrorsForwarded), 1);
}

#[test]
fn an_icmpv6_error_from_the_client_reaches_the_real_server_as_icmpv4() {
    let mut p = processor6(1500);
    let (_, lport) = open(&mut p, 40061);
    // The client says a reply (VIP → client) reached a closed port.
    let reply = tcp6(RS1_MAC, (NAT64, 80), (CLIENT6, 40061), true, true, b"");
    let unreachable = Icmpv6Type::DestinationUnreachable(etherparse::icmpv6::DestUnreachableCode::Port);
    let err = icmpv6_frame(CLIENT_MAC, DIR_MAC, CLIENT6, NAT64, 64, unreachable, &reply[14..]);
    let out = run(&mut p, &err);
    assert_eq!(out.tx.len(), 1, "translated and sent");
    let sent = out.tx[0].1.data();
    assert_eq!(&sent[..6], &RS1_MAC.0, "to the real server");
    let r = SlicedPacket::from_ethernet(sent).expect("an ICMPv4 error");
    let Some(NetSlice::Ipv4(ip)) = &r.net else { panic!("ipv4") };
    let h = ip.header().to_header();
    assert_eq!(h.header_checksum, h.calc_header_checksum());
    assert_eq!((ip.header().source_addr(), ip.header().destination_addr()), (LIP4, RS1), "from the local address");
    let Some(TransportSlice::Icmpv4(icmp)) = &r.transport else { panic!("icmpv4") };
    let port_unreachable = Icmpv4Type::DestinationUnreachable(etherparse::icmpv4::DestUnreachableHeader::Port);
    assert_eq!(icmp.icmp_type(), port_unreachable);
    assert_eq!(icmp.checksum(), icmp.icmp_type().calc_checksum(icmp.payload()));
    // The quote is the real server's own reply: RS1:8080 → LIP4:lport.
    let q = etherparse::Ipv4HeaderSlice::from_slice(icmp.payload()).expect("a quoted IPv4 header");
    assert_eq!((q.source_addr(), q.destination_addr()), (RS1, LIP4));
    let tcp = &icmp.payload()[20..];
    assert_eq!((u16::from_be_bytes([tcp[0], tcp[1]]), u16::from_be_bytes([tcp[2], tcp[3]])), (8080, lport));
    assert_eq!(p.counters().get(Counter::IcmpErrorsForwarded), 1);
}

#[test]
fn what_rfc_7915_does_not_translate_is_a_counted_drop() {
    let mut p = processor6(1500);
    let (quoted, _) = open(&mut p, 40062);
    // Host precedence violation (code 14) has no ICMPv6 equivalent.
    let raw = Icmpv4Type::Unknown { type_u8: 3, code_u8: 14, bytes5to8: [0; 4] };
    let out = run(&mut p, &icmp4_error(raw, &quoted));
    assert!(out.tx.is_empty());
    assert_eq!(p.counters().get(Counter::DropNat64Untranslatable), 1);
    // An error quoting a flow of nobody's is not translated either.
    let stranger = tcp4(RS1_MAC, (LIP4, 1), (RS1, 8080), b"");
    let frag_needed =
        Icmpv4Type::DestinationUnreachable(etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: 1400 });
    let out = run(&mut p, &icmp4_error(frag_needed, &stranger[14..]));
    assert!(out.tx.is_empty());
    assert_eq!(p.counters().get(Counter::IcmpErrorsForwarded), 0);
}

#[test]
fn a_state_change_made_by_the_real_servers_reply_is_synced() {
    let mut p = processor6(1500);
    let mut snap = (*super::ipv6::snapshot6(1500)).clone();
    snap.sync_send = true;
    snap.generation = 2;
    p.adopt(Arc::new(snap));
    let out = run(&mut p, &tcp6(CLIENT_MAC, (CLIENT6, 40063), (NAT64, 80), true, false, b""));
    assert_eq!(out.sync.len(), 1, "a new connection is sent");
    let lport = {
        let r = SlicedPacket::from_ethernet(out.tx[0].1.data()).expect("ipv4");
        let Some(TransportSlice::Tcp(t)) = r.transport else { panic!("tcp") };
        t.source_port()
    };
    let out = run(&mut p, &tcp6(CLIENT_MAC, (CLIENT6, 40063), (NAT64, 80), false, true, b""));
    assert_eq!(out.sync.len(), 1, "ESTABLISHED is sent");
    // The real server resets the connection: its IPv4 reply changes the state.
    let b = PacketBuilder::ethernet2(RS1_MAC.0, DIR_MAC.0).ipv4(RS1.octets(), LIP4.octets(), 64).tcp(8080, lport, 7001, 0).rst();
    let mut rst = Vec::with_capacity(b.size(0));
    b.write(&mut rst, &[]).expect("rst frame");
    let out = run(&mut p, &rst);
    assert_eq!(out.tx.len(), 1, "the reset reaches the client");
    assert_eq!(out.sync.len(), 1, "the state change is sent to the backups");
    assert_eq!(out.sync[0].state, "CLOSE");
    assert_eq!(out.sync[0].client, std::net::SocketAddr::from((CLIENT6, 40063)));
}
