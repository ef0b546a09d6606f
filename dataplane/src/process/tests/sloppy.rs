//! Sloppy adoption: two nodes of a cluster, each with its own snapshot built
//! independently from the same config; a flow started on one continues on
//! the other (ECMP moved it) to the same real server.

use super::*;
use crate::sched::{HashFields, SchedOptions};

const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 110);
const TUN_VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 111);

/// One node's snapshot, built from scratch (nothing shared with another
/// node's): a maglev DR service and an mh TUN service, `sloppy` as given,
/// reals forwarded by `mode` on the DR service.
fn node_snapshot(sloppy: bool, mode: ForwardMode) -> Arc<Snapshot> {
    let opts = SchedOptions { hash: HashFields::SrcAddrPort, ..Default::default() };
    let mut dr = Service::new(
        ServiceKey { protocol: Protocol::Tcp, vip: VIP.into(), port: 80 },
        SchedulerKind::Maglev,
        vec![real(RS1, 80, mode), real(RS2, 80, mode)],
    );
    dr.sched_options = opts;
    dr.sloppy = sloppy;
    let mut tun = Service::new(
        ServiceKey { protocol: Protocol::Tcp, vip: TUN_VIP.into(), port: 80 },
        SchedulerKind::Mh,
        vec![real(RS1, 80, ForwardMode::Tun), real(RS2, 80, ForwardMode::Tun)],
    );
    tun.sched_options = opts;
    tun.sloppy = sloppy;
    let mut s = (*snapshot(1, nat_reals())).clone();
    s.services.push(dr);
    s.services.push(tun);
    Arc::new(s.finish())
}

fn node(sloppy: bool, mode: ForwardMode) -> Processor<VecFrame> {
    let mut p = warmed_processor();
    p.adopt(node_snapshot(sloppy, mode));
    p
}

/// Sends one client segment to `vip`; the frame sent, if any.
fn send(p: &mut Processor<VecFrame>, vip: Ipv4Addr, sport: u16, fl: u8, payload: &[u8]) -> Option<Vec<u8>> {
    let mut out = Output::with_capacity(4);
    p.handle(0, VecFrame::new(&tcp(CLIENT_MAC, DIR_MAC, (CLIENT, sport), (vip, 80), fl, payload)), 5, &mut out);
    out.tx.first().map(|(_, f)| f.to_vec())
}

fn conn_state(p: &Processor<VecFrame>, sport: u16) -> Option<(std::net::SocketAddr, String)> {
    let c = p.connections(&ConnFilter::default(), 5).into_iter().find(|c| c.client.port() == sport)?;
    Some((c.real, c.state.to_string()))
}

#[test]
fn a_moved_flow_continues_to_the_same_real_server_on_another_node() {
    let mut a = node(true, ForwardMode::Dr);
    let mut b = node(true, ForwardMode::Dr);
    let mut reals_seen = std::collections::HashSet::new();
    for sport in 40000..40032u16 {
        // The flow starts on node A ...
        assert!(send(&mut a, VIP, sport, flags::SYN, b"").is_some());
        assert!(send(&mut a, VIP, sport, flags::ACK, b"").is_some());
        let (real_a, state_a) = conn_state(&a, sport).expect("connection on A");
        assert_eq!(state_a, "ESTABLISHED");
        // ... and ECMP moves it to B mid-stream: B never saw its SYN.
        let data = send(&mut b, VIP, sport, flags::ACK | flags::PSH, b"hello").expect("B adopts the flow");
        let (real_b, state_b) = conn_state(&b, sport).expect("connection on B");
        assert_eq!(real_a, real_b, "flow {sport}: both nodes pick the same real server");
        assert_eq!(state_b, "ESTABLISHED");
        // DR: the very segment, to the real server's MAC, one hop later.
        let rs_mac = if real_b.ip() == RS1 { RS1_MAC } else { RS2_MAC };
        let mut expected = tcp(DIR_MAC, rs_mac, (CLIENT, sport), (VIP, 80), flags::ACK | flags::PSH, b"hello");
        expected[6..12].copy_from_slice(&DIR_MAC.0);
        assert_eq!(data, expected, "flow {sport}: the adopted segment is forwarded untouched but for MACs and TTL");
        // The next segment uses the adopted connection.
        assert!(send(&mut b, VIP, sport, flags::ACK, b"more").is_some());
        reals_seen.insert(real_b);
    }
    assert_eq!(reals_seen.len(), 2, "flows spread over both real servers");
    assert_eq!(b.counters().get(Counter::ConnAdopted), 32);
    assert_eq!(b.counters().get(Counter::ConnCreated), 32);
    assert_eq!(a.counters().get(Counter::ConnAdopted), 0);
}

#[test]
fn tun_flows_are_adopted_too() {
    let mut a = node(true, ForwardMode::Dr);
    let mut b = node(true, ForwardMode::Dr);
    for sport in 41000..41008u16 {
        assert!(send(&mut a, TUN_VIP, sport, flags::SYN, b"").is_some());
        assert!(send(&mut b, TUN_VIP, sport, flags::ACK, b"x").is_some(), "flow {sport}");
        assert_eq!(conn_state(&a, sport).map(|c| c.0), conn_state(&b, sport).map(|c| c.0));
    }
    assert_eq!(b.counters().get(Counter::ConnAdopted), 8);
}

#[test]
fn without_sloppy_or_for_nat_a_mid_stream_packet_is_dropped() {
    for (sloppy, mode) in [(false, ForwardMode::Dr), (true, ForwardMode::Nat), (true, ForwardMode::FullNat)] {
        let mut b = node(sloppy, mode);
        let before = b.counters().get(Counter::DropNoConnection);
        assert!(send(&mut b, VIP, 42000, flags::ACK, b"x").is_none(), "{sloppy} {mode}");
        assert_eq!(b.counters().get(Counter::DropNoConnection), before + 1, "{sloppy} {mode}");
        assert_eq!(b.counters().get(Counter::ConnAdopted), 0);
        assert!(conn_state(&b, 42000).is_none());
    }
}

#[test]
fn resets_are_not_adopted_and_a_fin_moves_the_adopted_state_on() {
    let mut b = node(true, ForwardMode::Dr);
    assert!(send(&mut b, VIP, 43000, flags::RST | flags::ACK, b"").is_none());
    assert!(conn_state(&b, 43000).is_none(), "a reset creates nothing");
    assert!(send(&mut b, VIP, 43001, flags::FIN | flags::ACK, b"").is_some());
    assert_eq!(conn_state(&b, 43001).map(|c| c.1).as_deref(), Some("CLOSE_WAIT"), "IPVS input table: ESTABLISHED + FIN");
    // A SYN still starts a connection the usual way.
    assert!(send(&mut b, VIP, 43002, flags::SYN, b"").is_some());
    assert_eq!(conn_state(&b, 43002).map(|c| c.1).as_deref(), Some("SYN_RECV"));
    assert_eq!(b.counters().get(Counter::ConnAdopted), 1);
}

/// Every node builds the same `maglev` and `mh` tables from the same config:
/// the premise of cluster-consistent picks.
#[test]
fn lookup_tables_are_identical_across_independently_built_snapshots() {
    let one = node_snapshot(true, ForwardMode::Dr);
    let two = node_snapshot(true, ForwardMode::Dr);
    for vip in [VIP, TUN_VIP] {
        let key = ServiceKey { protocol: Protocol::Tcp, vip: vip.into(), port: 80 };
        let t1 = one.service(&key).and_then(|(_, s)| s.lookup_table.clone()).expect("table");
        let t2 = two.service(&key).and_then(|(_, s)| s.lookup_table.clone()).expect("table");
        assert!(!t1.shares(&t2), "built independently");
        assert_eq!(t1.entries(), t2.entries(), "{vip}");
        assert!(t1.entries().contains(&0) && t1.entries().contains(&1));
    }
}
