//! IPv4 in IPv6 through the processor: an IPv4 VIP whose TUN real server is
//! an IPv6 address. Inputs are built with etherparse or the test frame
//! builder; outputs are read with etherparse.

use std::net::{Ipv6Addr, SocketAddr};

use etherparse::{Icmpv4Type, NetSlice, PacketBuilder, SlicedPacket, TransportSlice};

use super::ipv6::{processor6, snapshot6, DIR6_IN, RS6};
use super::*;

/// The IPv4 VIP tunnelled to [`RS6`].
const VIP4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 150);

/// [`processor6`] plus the TCP service `VIP4:80` with the IPv6 TUN real
/// server `[RS6]:80`, on ports of MTU `mtu`.
fn processor4in6(mtu: u16) -> Processor<VecFrame> {
    let mut p = processor6(mtu);
    p.adopt(snapshot4in6(mtu, 2));
    p
}

fn snapshot4in6(mtu: u16, generation: u64) -> Arc<Snapshot> {
    let mut s = (*snapshot6(mtu)).clone();
    let key = ServiceKey { protocol: Protocol::Tcp, vip: VIP4.into(), port: 80 };
    s.services.push(Service::new(key, SchedulerKind::Rr, vec![RealServer::new(RS6, 80, 1, ForwardMode::Tun)]));
    s.generation = generation;
    Arc::new(s.finish())
}

/// A client's TCP frame to `VIP4:80` from `CLIENT:cport` (TTL 64, DF as
/// given) with `payload`.
fn to_vip(cport: u16, syn: bool, dont_frag: bool, payload: &[u8]) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2(CLIENT_MAC.0, DIR_MAC.0).ipv4(CLIENT.octets(), VIP4.octets(), 64).tcp(cport, 80, 1000, 64240);
    b = if syn { b.syn() } else { b.ack(5000) };
    let mut v = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut v, payload).expect("tcp frame");
    let mut h = etherparse::Ipv4Header::from_slice(&v[14..]).expect("ipv4").0;
    h.dont_fragment = dont_frag;
    h.header_checksum = h.calc_header_checksum();
    v.splice(14..34, h.to_bytes());
    v
}

fn run(p: &mut Processor<VecFrame>, frame: &[u8]) -> Output<VecFrame> {
    let mut out = Output::with_capacity(8);
    p.handle(0, VecFrame::new(frame), 10, &mut out);
    out
}

/// An outer IPv6 header's source, destination and next header.
type Outer = (Ipv6Addr, Ipv6Addr, u8);
/// An inner IPv4 packet's source, destination, TTL and TCP ports.
type Inner = (Ipv4Addr, Ipv4Addr, u8, u16, u16);

/// The outer and inner headers of a sent frame.
fn tunnelled(frame: &[u8]) -> (Outer, Inner) {
    let outer = etherparse::Ipv6HeaderSlice::from_slice(&frame[14..]).expect("an outer IPv6 header");
    assert_eq!(u16::from_be_bytes([frame[12], frame[13]]), 0x86dd, "ethertype IPv6");
    assert_eq!(usize::from(outer.payload_length()), frame.len() - 14 - 40);
    let inner = SlicedPacket::from_ip(&frame[54..]).expect("an inner IPv4 packet");
    let Some(NetSlice::Ipv4(ip)) = &inner.net else { panic!("inner ipv4") };
    let h = ip.header().to_header();
    assert_eq!(h.header_checksum, h.calc_header_checksum(), "inner header checksum after the TTL step");
    let ports = match &inner.transport {
        Some(TransportSlice::Tcp(t)) => (t.source_port(), t.destination_port()),
        _ => (0, 0),
    };
    (
        (outer.source_addr(), outer.destination_addr(), outer.next_header().0),
        (ip.header().source_addr(), ip.header().destination_addr(), ip.header().ttl(), ports.0, ports.1),
    )
}

#[test]
fn an_ipv4_vip_tunnels_to_its_ipv6_real_server() {
    let mut p = processor4in6(1500);
    for syn in [true, false] {
        let out = run(&mut p, &to_vip(40100, syn, true, b"hi"));
        assert_eq!(out.tx.len(), 1, "tunnelled");
        let frame = out.tx[0].1.data();
        assert_eq!(&frame[..6], &RS1_MAC.0, "to the real server's MAC");
        let (outer, inner) = tunnelled(frame);
        assert_eq!(outer, (DIR6_IN, RS6, 4), "IPv4 in IPv6 from our address on the real server's network");
        assert_eq!(inner, (CLIENT, VIP4, 63, 40100, 80), "the client's packet, one hop later");
    }
    assert_eq!(p.counters().get(Counter::ConnCreated), 1, "one connection for both packets");
    assert_eq!(p.counters().get(Counter::InboundPackets), 2);
    // Listed with its IPv4 client and VIP and its IPv6 real server.
    let conns = p.connections(&ConnFilter::default(), 10);
    let c = conns.iter().find(|c| c.client.port() == 40100).expect("listed");
    assert_eq!((c.client, c.vip), (SocketAddr::from((CLIENT, 40100)), SocketAddr::from((VIP4, 80))));
    assert_eq!(c.real, SocketAddr::from((RS6, 80)));
    assert_eq!(c.state, "ESTABLISHED");
}

#[test]
fn too_big_for_the_ipv6_tunnel_is_answered_or_fragmented_by_df() {
    let mut p = processor4in6(1400);
    // DF: "fragmentation needed" from the VIP, MTU less the outer header.
    let out = run(&mut p, &to_vip(40101, true, true, &[1u8; 1370]));
    assert_eq!(out.tx.len(), 1, "answered");
    let r = SlicedPacket::from_ethernet(out.tx[0].1.data()).expect("an ICMP error");
    let Some(NetSlice::Ipv4(ip)) = &r.net else { panic!("ipv4") };
    assert_eq!((ip.header().source_addr(), ip.header().destination_addr()), (VIP4, CLIENT));
    let Some(TransportSlice::Icmpv4(icmp)) = &r.transport else { panic!("icmp") };
    let want = Icmpv4Type::DestinationUnreachable(etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: 1360 });
    assert_eq!(icmp.icmp_type(), want);
    assert_eq!(p.counters().get(Counter::DropTooBig), 1);
    // No DF: the inner packet is fragmented, each fragment tunnelled whole.
    let out = run(&mut p, &to_vip(40102, true, false, &[2u8; 1370]));
    assert_eq!(out.tx.len(), 2, "two tunnelled fragments");
    for (_, f) in &out.tx {
        assert!(f.data().len() - 14 <= 1400, "each fits the MTU");
        assert_eq!(&f.data()[14 + 24..14 + 40], &RS6.octets());
    }
    assert_eq!(p.counters().get(Counter::TunFragments), 1);
}

#[test]
fn a_synced_ipv4_in_ipv6_connection_carries_on_on_the_backup() {
    let mut master = processor4in6(1500);
    run(&mut master, &to_vip(40103, true, true, b""));
    let info = master.connections(&ConnFilter::default(), 10).into_iter().find(|c| c.client.port() == 40103).expect("listed");
    let mut backup = processor4in6(1500);
    let mut out = Output::with_capacity(8);
    assert!(backup.install(&info, 10, &mut out), "installed in the IPv6 table");
    let out = run(&mut backup, &to_vip(40103, false, true, b"more"));
    assert_eq!(out.tx.len(), 1);
    let (outer, inner) = tunnelled(out.tx[0].1.data());
    assert_eq!((outer.1, inner.1), (RS6, VIP4));
    assert_eq!(backup.counters().get(Counter::ConnCreated), 0, "the synced connection, not a new one");
}

#[test]
fn a_persistent_ipv4_service_keeps_a_client_network_on_one_ipv6_real_server() {
    let mut p = processor6(1500);
    let mut s = (*snapshot6(1500)).clone();
    let key = ServiceKey { protocol: Protocol::Tcp, vip: VIP4.into(), port: 80 };
    let rs6b = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x12);
    let reals = vec![RealServer::new(RS6, 80, 1, ForwardMode::Tun), RealServer::new(rs6b, 80, 1, ForwardMode::Tun)];
    let mut svc = Service::new(key, SchedulerKind::Rr, reals);
    svc.persistence = Some(crate::snapshot::Persistence { timeout_s: 300, prefix_len: 24 });
    s.services.push(svc);
    s.generation = 2;
    p.adopt(Arc::new(s.finish()));
    for port in 40200..40204 {
        run(&mut p, &to_vip(port, true, true, b""));
    }
    let conns = p.connections(&ConnFilter { templates: true, ..Default::default() }, 20);
    let reals: std::collections::BTreeSet<_> = conns.iter().filter(|c| !c.template).map(|c| c.real).collect();
    assert_eq!(conns.iter().filter(|c| !c.template).count(), 4);
    assert_eq!(reals.len(), 1, "one client network, one real server: {conns:?}");
    let template = conns.iter().find(|c| c.template).expect("the /24's template is listed");
    assert_eq!(template.client.ip(), IpAddr::V4(Ipv4Addr::new(10, 0, 0, 0)));
    assert!(template.real.is_ipv6());
}
