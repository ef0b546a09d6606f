//! Persistence and `sloppy` adoption for IPv6 services: client networks by
//! prefix length (ipvsadm `-M 64`), templates that outlive their
//! connections, NAT64 templates naming IPv4 real servers, the template
//! owner among workers, and a mid-stream IPv6 ACK adopted. Input frames are
//! built with etherparse ([`tcp6`]); forwarded frames are read back with it.

use std::net::{Ipv6Addr, SocketAddr};

use etherparse::{NetSlice, SlicedPacket};

use super::ipv6::{processor6, snapshot6, tcp6, CLIENT6, LIP4, RS6};
use super::*;
use crate::sched::{HashFields, SchedOptions};
use crate::snapshot::Persistence;

/// A persistent DR service (rr over two IPv6 real servers).
const P6_VIP: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x105);
/// A persistent NAT64 service (rr over two IPv4 real servers through FULLNAT).
const P64_VIP: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x106);
/// A `sloppy` maglev service with one IPv6 DR real server.
const SLOPPY6_VIP: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x107);
/// The second IPv6 real server.
const RS6B: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x12);

/// A client address in the /64 `net` (the fourth group), host `host`.
fn client(net: u16, host: u16) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0, net, 0, 0, 0, host)
}

/// [`snapshot6`] plus the persistent services (`-M prefix_len`, `timeout_s`)
/// and the sloppy one (`sloppy` as given).
fn snapshot_p6(prefix_len: u8, timeout_s: u32, sloppy: bool) -> Arc<Snapshot> {
    let persistence = Some(Persistence { timeout_s, prefix_len });
    let key = |vip: Ipv6Addr| ServiceKey { protocol: Protocol::Tcp, vip: vip.into(), port: 80 };
    let mut s = (*snapshot6(1500)).clone();
    s.generation += 1;
    let reals6 = vec![RealServer::new(RS6, 80, 1, ForwardMode::Dr), RealServer::new(RS6B, 80, 1, ForwardMode::Dr)];
    let mut dr = Service::new(key(P6_VIP), SchedulerKind::Rr, reals6);
    dr.persistence = persistence;
    s.services.push(dr);
    let reals4 = vec![real(RS1, 8080, ForwardMode::FullNat), real(RS2, 8080, ForwardMode::FullNat)];
    let mut nat64 = Service::new(key(P64_VIP), SchedulerKind::Rr, reals4);
    nat64.local_addrs = vec![LIP4];
    nat64.persistence = persistence;
    s.services.push(nat64);
    let mut adopting = Service::new(key(SLOPPY6_VIP), SchedulerKind::Maglev, vec![RealServer::new(RS6, 80, 1, ForwardMode::Dr)]);
    adopting.sched_options = SchedOptions { hash: HashFields::SrcAddrPort, ..Default::default() };
    adopting.sloppy = sloppy;
    s.services.push(adopting);
    Arc::new(s.finish())
}

/// [`processor6`] (it knows the client's and RS6's MACs) on [`snapshot_p6`].
fn processor_p6(prefix_len: u8, timeout_s: u32, sloppy: bool) -> Processor<VecFrame> {
    let mut p = processor6(1500);
    p.adopt(snapshot_p6(prefix_len, timeout_s, sloppy));
    p
}

/// A client's SYN from `src` port `sport` to `vip` port 80 at `now`.
fn syn6(p: &mut Processor<VecFrame>, src: Ipv6Addr, sport: u16, vip: Ipv6Addr, now: u64) -> Output<VecFrame> {
    let mut out = Output::with_capacity(8);
    p.handle(0, VecFrame::new(&tcp6(CLIENT_MAC, (src, sport), (vip, 80), true, false, b"")), now, &mut out);
    out
}

/// The real server of the connection from `src` port `sport`, as listed.
fn real_of(p: &Processor<VecFrame>, src: Ipv6Addr, sport: u16, now: u64) -> Option<SocketAddr> {
    let conns = p.connections(&ConnFilter::default(), now);
    conns.into_iter().find(|c| c.client == SocketAddr::new(src.into(), sport)).map(|c| c.real)
}

/// The persistence templates listed, as (client network, virtual service, real server).
fn templates(p: &Processor<VecFrame>, now: u64) -> Vec<(SocketAddr, SocketAddr, SocketAddr)> {
    let all = p.connections(&ConnFilter { templates: true, ..Default::default() }, now);
    all.into_iter().filter(|c| c.template).map(|c| (c.client, c.vip, c.real)).collect()
}

#[test]
fn clients_of_one_slash_64_keep_one_real_server_and_another_64_may_not() {
    let mut p = processor_p6(64, 300, false);
    syn6(&mut p, client(0, 2), 1000, P6_VIP, 0);
    let first = real_of(&p, client(0, 2), 1000, 0).expect("scheduled");
    // rr alternates between the two reals; the /64's template holds.
    for host in 3..12 {
        syn6(&mut p, client(0, host), 1000 + host, P6_VIP, 0);
        assert_eq!(real_of(&p, client(0, host), 1000 + host, 0), Some(first), "host {host} of the same /64");
    }
    assert_eq!(p.templates(), 1);
    // A client of another /64 is scheduled afresh: rr's next real server.
    syn6(&mut p, client(7, 2), 2000, P6_VIP, 0);
    let other = real_of(&p, client(7, 2), 2000, 0).expect("scheduled");
    assert_ne!(other, first, "another /64 has no template: rr moves on");
    assert_eq!(p.templates(), 2);
    // Listed as ipvsadm -lnc shows templates: the network, port 0, the VIP, the real.
    let mut listed = templates(&p, 0);
    listed.sort();
    let vip = SocketAddr::new(P6_VIP.into(), 80);
    let mut want = vec![(SocketAddr::new(client(0, 0).into(), 0), vip, first), (SocketAddr::new(client(7, 0).into(), 0), vip, other)];
    want.sort();
    assert_eq!(listed, want);
}

#[test]
fn with_slash_128_each_ipv6_client_is_its_own_network() {
    let mut p = processor_p6(128, 300, false);
    syn6(&mut p, client(0, 2), 1000, P6_VIP, 0);
    syn6(&mut p, client(0, 3), 1000, P6_VIP, 0);
    let (a, b) = (real_of(&p, client(0, 2), 1000, 0), real_of(&p, client(0, 3), 1000, 0));
    assert!(a.is_some() && b.is_some());
    assert_ne!(a, b, "two clients, two templates, rr alternates");
    assert_eq!(p.templates(), 2);
}

#[test]
fn an_ipv6_template_outlives_its_connections_by_the_timeout_then_is_forgotten() {
    let mut p = processor_p6(64, 10, false);
    syn6(&mut p, client(0, 2), 1000, P6_VIP, 0);
    let first = real_of(&p, client(0, 2), 1000, 0).expect("scheduled");
    // The connection times out (SYN_RECV 60 s); the template lives 10 s more.
    let mut out = Output::with_capacity(8);
    p.tick(60_001, &mut out);
    assert_eq!(p.conns6.len(), 0, "the connection expired");
    assert_eq!(p.templates(), 1, "its template did not");
    syn6(&mut p, client(0, 9), 1001, P6_VIP, 65_000);
    assert_eq!(real_of(&p, client(0, 9), 1001, 65_000), Some(first), "template still alive");
    p.tick(125_001, &mut out);
    p.tick(135_002, &mut out);
    assert_eq!(p.templates(), 0, "forgotten once its last connection is 10 s gone");
    // Scheduled afresh: rr moves on (template connections never advanced it).
    syn6(&mut p, client(0, 2), 1002, P6_VIP, 135_003);
    assert_ne!(real_of(&p, client(0, 2), 1002, 135_003), Some(first), "without a template the scheduler decides again");
}

#[test]
fn a_nat64_service_keeps_a_slash_64_on_one_ipv4_real_server() {
    let mut p = processor_p6(64, 300, false);
    for host in 2..8 {
        let out = syn6(&mut p, client(0, host), 3000, P64_VIP, 0);
        // Translated to IPv4, towards the template's real server.
        let (_, frame) = out.tx.first().expect("sent");
        let sent = SlicedPacket::from_ethernet(frame.data()).expect("a frame etherparse reads");
        let Some(NetSlice::Ipv4(ip)) = sent.net else { panic!("NAT64 sends IPv4") };
        assert_eq!(ip.header().source_addr(), LIP4);
    }
    let reals: std::collections::HashSet<_> = (2..8).map(|h| real_of(&p, client(0, h), 3000, 0)).collect();
    assert_eq!(reals.len(), 1, "one real server for the /64: {reals:?}");
    let real = reals.into_iter().next().flatten().expect("scheduled");
    assert!(matches!(real, SocketAddr::V4(r) if [RS1, RS2].contains(r.ip()) && r.port() == 8080), "{real}");
    // The template names the IPv4 real server, as ipvsadm -lnc would.
    assert_eq!(templates(&p, 0), vec![(SocketAddr::new(client(0, 0).into(), 0), SocketAddr::new(P64_VIP.into(), 80), real)]);
}

#[test]
fn a_persistent_ipv6_connection_is_made_on_its_templates_owner() {
    let snap = snapshot_p6(64, 300, false);
    let owner = crate::process::persistence::template_owner(client(0, 0).into(), 2);
    let other = 1 - owner;
    let mut workers: Vec<Processor<VecFrame>> = (0..2).map(|w| Processor::for_worker(Arc::clone(&snap), 64, w, 2)).collect();
    for host in 2..6 {
        // Every client of the /64 arrives first on the other worker, which hands it over.
        let mut out = Output::with_capacity(8);
        let frame = tcp6(CLIENT_MAC, (client(0, host), 4000), (P6_VIP, 80), true, false, b"");
        workers[other].handle(0, VecFrame::new(&frame), 0, &mut out);
        assert_eq!(out.redirect.len(), 1, "the SYN goes to the worker holding the /64's template");
        assert_eq!(out.redirect[0].0, owner);
        assert_eq!(workers[other].conns6.len(), 0);
        let (_, port, redirected) = out.redirect.pop().expect("redirected");
        let mut out = Output::with_capacity(8);
        workers[owner].handle_redirected(port, redirected, 0, &mut out);
        assert!(out.redirect.is_empty(), "the owner does not bounce it back");
    }
    assert_eq!(workers[owner].conns6.len(), 4);
    assert_eq!(workers[owner].templates(), 1);
    assert_eq!(workers[other].templates(), 0);
    let reals: std::collections::HashSet<_> = (2..6).map(|h| real_of(&workers[owner], client(0, h), 4000, 0)).collect();
    assert_eq!(reals.len(), 1, "one real server for the /64");
}

#[test]
fn a_sloppy_ipv6_service_adopts_a_mid_stream_ack() {
    for sloppy in [false, true] {
        let mut p = processor_p6(128, 300, sloppy);
        let mut out = Output::with_capacity(8);
        let ack = tcp6(CLIENT_MAC, (CLIENT6, 5000), (SLOPPY6_VIP, 80), false, true, b"hello");
        p.handle(0, VecFrame::new(&ack), 0, &mut out);
        let conns = p.connections(&ConnFilter::default(), 0);
        if !sloppy {
            assert!(out.tx.is_empty(), "no connection, not sloppy: dropped");
            assert!(conns.is_empty());
            assert_eq!(p.counters().get(Counter::DropNoConnection), 1);
            continue;
        }
        assert_eq!(p.counters().get(Counter::ConnAdopted), 1);
        assert_eq!(conns.len(), 1);
        assert_eq!((conns[0].real, conns[0].state.as_ref()), (SocketAddr::new(RS6.into(), 80), "ESTABLISHED"));
        // DR: the very segment goes to the real server's MAC, addresses unchanged.
        let (_, frame) = out.tx.first().expect("forwarded");
        assert_eq!(frame.data()[..6], RS1_MAC.0, "to the real server's MAC");
        let sent = SlicedPacket::from_ethernet(frame.data()).expect("a frame etherparse reads");
        let Some(NetSlice::Ipv6(ip)) = sent.net else { panic!("IPv6") };
        assert_eq!((ip.header().source_addr(), ip.header().destination_addr()), (CLIENT6, SLOPPY6_VIP));
        assert_eq!(ip.payload().payload.len(), 20 + 5, "TCP header and the segment's data");
        // A SYN is not adopted: it opens its connection the usual way.
        let mut out = Output::with_capacity(8);
        let syn_only = tcp6(CLIENT_MAC, (CLIENT6, 5001), (SLOPPY6_VIP, 80), true, false, b"");
        p.handle(0, VecFrame::new(&syn_only), 0, &mut out);
        assert_eq!(p.counters().get(Counter::ConnAdopted), 1, "a SYN opens a connection the usual way");
    }
}

#[test]
fn templates_reach_the_backup_and_keep_client_networks_after_a_failover() {
    let mut master = processor6(1500);
    let mut s = (*snapshot_p6(64, 300, false)).clone();
    s.sync_send = true;
    s.generation += 1;
    master.adopt(Arc::new(s));
    let out = syn6(&mut master, client(1, 1), 1000, P6_VIP, 10);
    let chosen = real_of(&master, client(1, 1), 1000, 10).expect("the master's connection");
    assert_eq!(out.sync.len(), 2, "the connection and its template: {:?}", out.sync);
    let template = out.sync.iter().find(|c| c.template).expect("the template is synced");
    assert_eq!((template.client, template.real), (SocketAddr::new(client(1, 0).into(), 0), chosen));
    assert_eq!(template.expires_ms, 300_000, "in use: the whole persistence timeout");
    let mut backup = processor_p6(64, 300, false);
    let mut installed = Output::with_capacity(8);
    for info in &out.sync {
        assert!(backup.install(info, 20, &mut installed), "{info:?}");
    }
    assert_eq!(backup.templates(), 1);
    // The backup takes over: new connections of the /64 keep the master's
    // choice, where rr alone would alternate between the two reals.
    for port in [2000, 2001, 2002] {
        syn6(&mut backup, client(1, 7), port, P6_VIP, 30);
        assert_eq!(real_of(&backup, client(1, 7), port, 30), Some(chosen), "port {port}");
    }
}
