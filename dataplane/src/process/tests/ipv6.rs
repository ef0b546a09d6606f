//! IPv6 through the processor: neighbour discovery and echo for our
//! addresses and VIPs, every mode (DR, NAT, FULLNAT with TOA, TUN with
//! Packet Too Big), NAT64 both ways, and IPv4-mapped addresses refused.
//! Input frames are built with etherparse; outputs are checked field by
//! field and their checksums recomputed by etherparse.

use std::net::Ipv6Addr;

use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};

use super::*;
use crate::snapshot::{InterfaceAddr6, Route6};

pub(super) const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);
pub(super) const DIR6_OUT: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
const DIR6_IN: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
pub(super) const DR6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100);
pub(super) const NAT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x101);
pub(super) const TUN6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x102);
pub(super) const FNAT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x103);
pub(super) const NAT64: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x104);
pub(super) const RS6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x11);
pub(super) const LIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x200);
pub(super) const LIP4: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 204);

fn svc(vip: Ipv6Addr, port: u16, real: RealServer) -> Service {
    Service::new(ServiceKey { protocol: Protocol::Tcp, vip: vip.into(), port }, SchedulerKind::Rr, vec![real])
}

/// The IPv4 test snapshot plus IPv6 addresses, routes and one service per mode.
pub(super) fn snapshot6(mtu: u16) -> Arc<Snapshot> {
    let mut s = (*snapshot(1, nat_reals())).clone();
    s.ports[0].mtu = mtu;
    s.addresses6 =
        vec![InterfaceAddr6 { port: 0, addr: DIR6_OUT, prefix_len: 64 }, InterfaceAddr6 { port: 0, addr: DIR6_IN, prefix_len: 64 }];
    s.routes6 = vec![
        Route6 { prefix: Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), prefix_len: 64, via: None, port: 0 },
        Route6 { prefix: Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0), prefix_len: 64, via: None, port: 0 },
    ];
    s.services.push(svc(DR6, 80, real6(ForwardMode::Dr, 80)));
    s.services.push(svc(NAT6, 80, real6(ForwardMode::Nat, 8080)));
    s.services.push(svc(TUN6, 80, real6(ForwardMode::Tun, 80)));
    let mut fnat = svc(FNAT6, 80, real6(ForwardMode::FullNat, 8080));
    fnat.local_addrs6 = vec![LIP6];
    fnat.toa = true;
    s.services.push(fnat);
    let mut nat64 = svc(NAT64, 80, RealServer::new(RS1, 8080, 1, ForwardMode::FullNat));
    nat64.local_addrs = vec![LIP4];
    s.services.push(nat64);
    Arc::new(s.finish())
}

fn real6(forward: ForwardMode, port: u16) -> RealServer {
    RealServer::new(RS6, port, 1, forward)
}

/// A processor on [`snapshot6`] that knows the MACs of the client and the
/// reals of both families (IPv6 ones from their neighbour advertisements).
pub(super) fn processor6(mtu: u16) -> Processor<VecFrame> {
    let mut p = warmed_processor();
    p.adopt(snapshot6(mtu));
    let mut out = Output::with_capacity(8);
    for (ip, mac) in [(CLIENT6, CLIENT_MAC), (RS6, RS1_MAC)] {
        // Unsolicited advertisements do not create entries (RFC 4861 7.2.5):
        // the neighbours solicit us first, then advertise.
        p.handle(0, VecFrame::new(&solicitation(mac, ip, DIR6_OUT)), 0, &mut out);
        p.handle(0, VecFrame::new(&advertisement(mac, ip)), 0, &mut out);
    }
    p
}

/// An ICMPv6 neighbour solicitation from `src` at `mac` for `target`, to its solicited-node address.
pub(super) fn solicitation(mac: MacAddr, src: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
    let t = target.octets();
    let dst = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff00 | u16::from(t[13]), u16::from_be_bytes([t[14], t[15]]));
    let mut body = vec![0u8; 4];
    body.extend_from_slice(&t);
    body.extend_from_slice(&[1, 1]);
    body.extend_from_slice(&mac.0);
    let dst_mac = MacAddr([0x33, 0x33, 0xff, t[13], t[14], t[15]]);
    icmpv6_frame(mac, dst_mac, src, dst, 255, etherparse::Icmpv6Type::Unknown { type_u8: 135, code_u8: 0, bytes5to8: [0; 4] }, &body[4..])
}

/// A solicited, overriding advertisement for `ip` at `mac`, to the director.
pub(super) fn advertisement(mac: MacAddr, ip: Ipv6Addr) -> Vec<u8> {
    let mut body = ip.octets().to_vec();
    body.extend_from_slice(&[2, 1]);
    body.extend_from_slice(&mac.0);
    let t = etherparse::Icmpv6Type::Unknown { type_u8: 136, code_u8: 0, bytes5to8: [0x60, 0, 0, 0] };
    icmpv6_frame(mac, DIR_MAC, ip, DIR6_OUT, 255, t, &body)
}

fn icmpv6_frame(
    src_mac: MacAddr,
    dst_mac: MacAddr,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hops: u8,
    t: etherparse::Icmpv6Type,
    body: &[u8],
) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(src_mac.0, dst_mac.0).ipv6(src.octets(), dst.octets(), hops).icmpv6(t);
    let mut v = Vec::with_capacity(b.size(body.len()));
    b.write(&mut v, body).expect("icmpv6 frame");
    v
}

/// A TCP frame over IPv6, hop limit 64.
pub(super) fn tcp6(src_mac: MacAddr, src: (Ipv6Addr, u16), dst: (Ipv6Addr, u16), syn: bool, ack: bool, payload: &[u8]) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2(src_mac.0, DIR_MAC.0).ipv6(src.0.octets(), dst.0.octets(), 64).tcp(src.1, dst.1, 1000, 64240);
    if syn {
        b = b.syn();
    }
    if ack {
        b = b.ack(5000);
    }
    let mut v = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut v, payload).expect("tcp6 frame");
    v
}

/// A TCP frame over IPv4 (a NAT64 real server's reply), TTL 64.
pub(super) fn tcp4(src_mac: MacAddr, src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(src_mac.0, DIR_MAC.0)
        .ipv4(src.0.octets(), dst.0.octets(), 64)
        .tcp(src.1, dst.1, 7000, 64240)
        .syn()
        .ack(1001);
    let mut v = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut v, payload).expect("tcp4 frame");
    v
}

/// One sent frame: its destination MAC, addresses, ports and hop limit/TTL,
/// after checking its transport checksum with etherparse.
#[derive(Debug, PartialEq)]
struct Seen {
    dst_mac: [u8; 6],
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    hops: u8,
}

fn seen(frame: &[u8]) -> Seen {
    let p = SlicedPacket::from_ethernet(frame).expect("a frame etherparse reads");
    let dst_mac: [u8; 6] = frame[..6].try_into().expect("mac");
    let (src, dst, hops, pseudo) = match p.net.expect("ip") {
        NetSlice::Ipv6(ip) => {
            let h = ip.header();
            (IpAddr::from(h.source_addr()), IpAddr::from(h.destination_addr()), h.hop_limit(), true)
        }
        NetSlice::Ipv4(ip) => {
            let h = ip.header();
            let rebuilt = h.to_header();
            assert_eq!(rebuilt.header_checksum, rebuilt.calc_header_checksum(), "IPv4 header checksum");
            (IpAddr::from(h.source_addr()), IpAddr::from(h.destination_addr()), h.ttl(), false)
        }
        other => panic!("not IP: {other:?}"),
    };
    let Some(TransportSlice::Tcp(t)) = p.transport else { panic!("not TCP") };
    let want = match (src, dst) {
        (IpAddr::V6(s), IpAddr::V6(d)) if pseudo => t.to_header().calc_checksum_ipv6_raw(s.octets(), d.octets(), t.payload()),
        (IpAddr::V4(s), IpAddr::V4(d)) => t.to_header().calc_checksum_ipv4_raw(s.octets(), d.octets(), t.payload()),
        _ => panic!("mixed families"),
    }
    .expect("checksum");
    assert_eq!(t.checksum(), want, "TCP checksum after the rewrite");
    Seen { dst_mac, src, dst, sport: t.source_port(), dport: t.destination_port(), hops }
}

fn run(p: &mut Processor<VecFrame>, frame: &[u8]) -> Output<VecFrame> {
    let mut out = Output::with_capacity(8);
    p.handle(0, VecFrame::new(frame), 10, &mut out);
    out
}

#[test]
fn neighbour_solicitations_and_echo_for_vips_are_answered() {
    let mut p = processor6(1500);
    let out = run(&mut p, &solicitation(CLIENT_MAC, CLIENT6, DR6));
    assert_eq!(out.tx.len(), 1, "an advertisement for the VIP");
    let na = out.tx[0].1.data();
    assert_eq!(&na[..6], &CLIENT_MAC.0);
    assert_eq!(na[54], 136, "ICMPv6 neighbour advertisement");
    assert_eq!(&na[62..78], &DR6.octets(), "its target is the VIP");
    let echo = icmpv6_frame(
        CLIENT_MAC,
        DIR_MAC,
        CLIENT6,
        NAT6,
        64,
        etherparse::Icmpv6Type::EchoRequest(etherparse::IcmpEchoHeader { id: 7, seq: 1 }),
        b"ping",
    );
    let out = run(&mut p, &echo);
    assert_eq!(out.tx.len(), 1);
    let r = SlicedPacket::from_ethernet(out.tx[0].1.data()).expect("echo reply");
    let Some(NetSlice::Ipv6(ip)) = r.net else { panic!("ipv6") };
    assert_eq!((ip.header().source_addr(), ip.header().destination_addr()), (NAT6, CLIENT6));
    assert!(p.counters().get(Counter::NdSolicitsIn) >= 3);
    assert_eq!(p.counters().get(Counter::IcmpEchoReplies), 1);
}

#[test]
fn each_mode_rewrites_ipv6_as_its_policy_says() {
    let mut p = processor6(1500);
    let rs = IpAddr::V6(RS6);
    let client = IpAddr::V6(CLIENT6);
    // DR: only the MAC and the hop limit.
    let out = run(&mut p, &tcp6(CLIENT_MAC, (CLIENT6, 40000), (DR6, 80), true, false, b""));
    let want = Seen { dst_mac: RS1_MAC.0, src: client, dst: DR6.into(), sport: 40000, dport: 80, hops: 63 };
    assert_eq!(seen(out.tx[0].1.data()), want);
    // NAT: to the real server; its reply from the VIP.
    let out = run(&mut p, &tcp6(CLIENT_MAC, (CLIENT6, 40001), (NAT6, 80), true, false, b""));
    assert_eq!(seen(out.tx[0].1.data()), Seen { dst_mac: RS1_MAC.0, src: client, dst: rs, sport: 40001, dport: 8080, hops: 63 });
    let out = run(&mut p, &tcp6(RS1_MAC, (RS6, 8080), (CLIENT6, 40001), true, true, b""));
    assert_eq!(seen(out.tx[0].1.data()), Seen { dst_mac: CLIENT_MAC.0, src: NAT6.into(), dst: client, sport: 80, dport: 40001, hops: 63 });
    // FULLNAT: from the IPv6 local address; the reply back to the client from the VIP.
    let out = run(&mut p, &tcp6(CLIENT_MAC, (CLIENT6, 40002), (FNAT6, 80), true, false, b""));
    let s = seen(out.tx[0].1.data());
    assert_eq!((s.src, s.dst, s.dport), (IpAddr::V6(LIP6), rs, 8080));
    let lport = s.sport;
    let out = run(&mut p, &tcp6(RS1_MAC, (RS6, 8080), (LIP6, lport), true, true, b""));
    assert_eq!(seen(out.tx[0].1.data()), Seen { dst_mac: CLIENT_MAC.0, src: FNAT6.into(), dst: client, sport: 80, dport: 40002, hops: 63 });
    // The client's ACK that completes the handshake carries its TOA (kind 254, length 20).
    let out = run(&mut p, &tcp6(CLIENT_MAC, (CLIENT6, 40002), (FNAT6, 80), false, true, b""));
    let sent = out.tx[0].1.data();
    let toa = crate::fwd::fnat6::find_toa6(&sent[14 + 40 + 20..]).expect("a TOA option");
    assert_eq!((*toa.ip(), toa.port()), (CLIENT6, 40002));
    assert_eq!(p.counters().get(Counter::ToaInserted), 1);
    // TUN: IPv6 in IPv6 from our address on the reals' network to the real server.
    let out = run(&mut p, &tcp6(CLIENT_MAC, (CLIENT6, 40003), (TUN6, 80), true, false, b""));
    let outer = out.tx[0].1.data();
    assert_eq!(u16::from_be_bytes([outer[12], outer[13]]), 0x86dd);
    assert_eq!(outer[14 + 6], 41, "next header: IPv6");
    assert_eq!(&outer[14 + 8..14 + 24], &DIR6_IN.octets());
    assert_eq!(&outer[14 + 24..14 + 40], &RS6.octets());
    assert_eq!(seen(&[&outer[..14], &outer[54..]].concat()).dst, IpAddr::V6(TUN6), "the inner packet still goes to the VIP");
    assert_eq!(p.counters().get(Counter::ConnActive6), 0, "gauges are set on ticks");
    let mut out = Output::with_capacity(8);
    p.tick(20, &mut out);
    assert_eq!(p.counters().get(Counter::ConnActive6), 4);
}

#[test]
fn nat64_translates_both_ways() {
    let mut p = processor6(1500);
    let out = run(&mut p, &tcp6(CLIENT_MAC, (CLIENT6, 40010), (NAT64, 80), true, false, b"hello"));
    let s = seen(out.tx[0].1.data());
    assert_eq!((s.dst_mac, s.src, s.dst, s.dport, s.hops), (RS1_MAC.0, IpAddr::V4(LIP4), IpAddr::V4(RS1), 8080, 63));
    let out = run(&mut p, &tcp4(RS1_MAC, (RS1, 8080), (LIP4, s.sport), b"world"));
    let back = seen(out.tx[0].1.data());
    assert_eq!(back, Seen { dst_mac: CLIENT_MAC.0, src: NAT64.into(), dst: CLIENT6.into(), sport: 80, dport: 40010, hops: 63 });
    assert_eq!(p.counters().get(Counter::Nat64Packets), 2);
    // Listed as ipvsadm lists it: the IPv6 client and VIP, the IPv4 real server and local address.
    let conns = p.connections(&ConnFilter::default(), 10);
    let c = conns.iter().find(|c| c.client.port() == 40010).expect("the NAT64 connection is listed");
    assert_eq!((c.client.to_string(), c.vip.to_string()), ("[2001:db8::2]:40010".to_owned(), "[2001:db8::104]:80".to_owned()));
    assert_eq!(c.real, std::net::SocketAddr::from((RS1, 8080)));
    assert_eq!(c.local.map(|l| l.ip()), Some(IpAddr::V4(LIP4)));
    let by_client = ConnFilter { client: Some(CLIENT6.into()), ..Default::default() };
    assert_eq!(p.connections(&by_client, 10).len(), 1);
}

#[test]
fn too_big_for_the_tunnel_is_answered_with_packet_too_big() {
    let mut p = processor6(1400);
    let out = run(&mut p, &tcp6(CLIENT_MAC, (CLIENT6, 40020), (TUN6, 80), true, false, &[7u8; 1320]));
    let nonzero: Vec<_> = Counter::ALL.iter().filter(|c| p.counters().get(**c) > 0).map(|c| (c.name(), p.counters().get(*c))).collect();
    assert_eq!(out.tx.len(), 1, "{nonzero:?}");
    let r = SlicedPacket::from_ethernet(out.tx[0].1.data()).expect("an ICMPv6 error");
    let Some(NetSlice::Ipv6(ip)) = r.net else { panic!("ipv6") };
    assert_eq!((ip.header().source_addr(), ip.header().destination_addr()), (TUN6, CLIENT6));
    let Some(TransportSlice::Icmpv6(icmp)) = r.transport else { panic!("icmpv6") };
    assert_eq!(icmp.icmp_type(), etherparse::Icmpv6Type::PacketTooBig { mtu: 1360 });
    assert_eq!(p.counters().get(Counter::DropTooBig), 1);
}

#[test]
fn ipv4_mapped_addresses_are_refused() {
    let mut p = processor6(1500);
    let mapped = Ipv4Addr::new(10, 1, 0, 11).to_ipv6_mapped();
    let out = run(&mut p, &tcp6(CLIENT_MAC, (mapped, 8080), (NAT64, 80), true, true, b""));
    assert!(out.tx.is_empty());
    assert_eq!(p.counters().get(Counter::DropIpv4Mapped), 1);
}

#[test]
fn an_advertisement_on_one_worker_releases_what_another_worker_held() {
    let snap = snapshot6(1500);
    let mut w0 = Processor::for_worker(Arc::clone(&snap), 1024, 0, 2);
    let mut w1 = Processor::for_worker(snap, 1024, 1, 2);
    // Worker 1 knows the client (it solicited us), not the real server: the SYN waits.
    let mut out = Output::with_capacity(8);
    w1.handle(0, VecFrame::new(&solicitation(CLIENT_MAC, CLIENT6, DIR6_OUT)), 0, &mut out);
    let mut out = Output::with_capacity(8);
    w1.handle(0, VecFrame::new(&tcp6(CLIENT_MAC, (CLIENT6, 40030), (DR6, 80), true, false, b"")), 0, &mut out);
    assert!(out.tx.is_empty());
    assert_eq!(out.control.len(), 1, "a solicitation for the real server");
    // The real server's answer reaches worker 0, which never asked.
    let mut out0 = Output::with_capacity(8);
    w0.handle(0, VecFrame::new(&advertisement(RS1_MAC, RS6)), 1, &mut out0);
    let told: Vec<_> = out0.messages.iter().filter(|m| matches!(m, WorkerMsg::Neighbour6 { .. })).copied().collect();
    assert_eq!(told, vec![WorkerMsg::Neighbour6 { ip: RS6, mac: RS1_MAC, port: 0 }]);
    let mut out1 = Output::with_capacity(8);
    w1.handle_message(told[0], 2, &mut out1);
    assert_eq!(out1.tx.len(), 1, "the held SYN leaves");
    assert_eq!(&out1.tx[0].1.data()[..6], &RS1_MAC.0);
}

#[test]
fn icmpv6_errors_about_a_nat_connection_reach_the_real_server_translated() {
    let mut p = processor6(1500);
    let out = run(&mut p, &tcp6(CLIENT_MAC, (CLIENT6, 40040), (NAT6, 80), true, false, b""));
    assert_eq!(out.tx.len(), 1, "the connection exists");
    // The client says a reply (from the VIP) was too big for its link.
    let reply = tcp6(RS1_MAC, (NAT6, 80), (CLIENT6, 40040), true, true, b"");
    let quoted = &reply[14..];
    let err = icmpv6_frame(CLIENT_MAC, DIR_MAC, CLIENT6, NAT6, 64, etherparse::Icmpv6Type::PacketTooBig { mtu: 1280 }, quoted);
    let out = run(&mut p, &err);
    assert_eq!(out.tx.len(), 1, "forwarded");
    let sent = out.tx[0].1.data();
    let r = SlicedPacket::from_ethernet(sent).expect("an ICMPv6 error");
    let Some(NetSlice::Ipv6(ip)) = &r.net else { panic!("ipv6") };
    assert_eq!((ip.header().source_addr(), ip.header().destination_addr()), (CLIENT6, RS6), "to the real server");
    let Some(TransportSlice::Icmpv6(icmp)) = &r.transport else { panic!("icmpv6") };
    assert_eq!(icmp.icmp_type(), etherparse::Icmpv6Type::PacketTooBig { mtu: 1280 });
    let want = icmp.icmp_type().calc_checksum(CLIENT6.octets(), RS6.octets(), icmp.payload()).expect("checksum");
    assert_eq!(icmp.checksum(), want, "ICMPv6 checksum over the new pseudo-header");
    // The quote now shows the real server's address and port as its source.
    let q = icmp.payload();
    assert_eq!(&q[8..24], &RS6.octets());
    assert_eq!(u16::from_be_bytes([q[40], q[41]]), 8080);
    assert_eq!(p.counters().get(Counter::IcmpErrorsForwarded), 1);
}

#[test]
fn a_synced_nat64_connection_carries_on_on_the_backup() {
    let mut master = processor6(1500);
    let out = run(&mut master, &tcp6(CLIENT_MAC, (CLIENT6, 40050), (NAT64, 80), true, false, b""));
    let lport = seen(out.tx[0].1.data()).sport;
    let info = master.connections(&ConnFilter::default(), 10).into_iter().find(|c| c.client.port() == 40050).expect("listed");
    let mut backup = processor6(1500);
    let mut out = Output::with_capacity(8);
    assert!(backup.install(&info, 10, &mut out), "installed in the IPv6 table");
    assert_eq!(backup.counters().get(Counter::ConnSynced), 1);
    let out = run(&mut backup, &tcp4(RS1_MAC, (RS1, 8080), (LIP4, lport), b""));
    let back = seen(out.tx[0].1.data());
    assert_eq!((back.src, back.dst, back.dport), (IpAddr::V6(NAT64), IpAddr::V6(CLIENT6), 40050), "the reply goes to the client");
    // An IPv6 entry with a SYN proxy translation is refused (IPv6 services have none).
    let proxied = ConnInfo { syn_proxy: Some(crate::synproxy::seq::Translation::default()), ..info };
    assert!(!processor6(1500).install(&proxied, 10, &mut Output::with_capacity(8)));
}

#[test]
fn a_sync_master_streams_its_ipv6_connections() {
    let mut p = processor6(1500);
    let mut snap = (*snapshot6(1500)).clone();
    snap.sync_send = true;
    snap.generation = 2;
    p.adopt(Arc::new(snap));
    let out = run(&mut p, &tcp6(CLIENT_MAC, (CLIENT6, 40060), (NAT6, 80), true, false, b""));
    assert_eq!(out.sync.len(), 1, "a new connection is sent");
    assert_eq!(out.sync[0].client, std::net::SocketAddr::from((CLIENT6, 40060)));
    let out = run(&mut p, &tcp6(RS1_MAC, (RS6, 8080), (CLIENT6, 40060), true, true, b""));
    assert!(out.sync.is_empty(), "no state change, recently synced");
    let out = run(&mut p, &tcp6(CLIENT_MAC, (CLIENT6, 40060), (NAT6, 80), false, true, b""));
    assert_eq!(out.sync.len(), 1, "ESTABLISHED is sent");
    assert_eq!(out.sync[0].state, "ESTABLISHED");
}
