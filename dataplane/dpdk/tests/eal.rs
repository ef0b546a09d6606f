//! EAL-based test: the real DPDK path (EAL, mempool, mbufs, an ethdev port and
//! its queues) on a `net_ring` loopback port, with the packet logic on top.
//!
//! One test function, because EAL can be started once per process. It needs no
//! hugepages, no PCI devices and no root: `--no-huge --no-pci --no-shconf`.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::net::Ipv4Addr;

use rvs_dataplane::frame::Frame;
use rvs_dataplane::process::{Output, Processor};
use rvs_dataplane::stats::Counter;
use rvs_dataplane::wire::arp;
use rvs_dataplane::wire::builder::{arp_frame, tcp_frame, TcpParams};
use rvs_dpdk::{Eal, Mbuf, Mempool, Port};

use common::{nat_snapshot, CLIENT, CLIENT_MAC, RS, RS_MAC, VIP};

fn send_and_receive(port: &Port, pool: &Mempool, frames: &[Vec<u8>]) -> Vec<Mbuf> {
    let mut tx: Vec<Mbuf> = frames
        .iter()
        .map(|f| {
            let mut m = pool.alloc().expect("pool has mbufs");
            assert!(m.fill(f));
            m
        })
        .collect();
    let q = port.queue(0);
    assert_eq!(q.tx_burst(&mut tx), frames.len());
    assert!(tx.is_empty());
    let mut rx = Vec::new();
    q.rx_burst(&mut rx);
    rx
}

#[test]
fn nat_through_a_real_dpdk_port() {
    let args: Vec<String> =
        ["eal-test", "-l", "0", "--no-huge", "-m", "256", "--no-pci", "--no-shconf", "--vdev", "net_ring0", "--log-level", "lib.eal:error"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    let eal = Eal::init(&args).expect("EAL starts without hugepages");
    assert!(Eal::init(&args).is_err(), "EAL can only be started once");

    let pool = Mempool::new("eal_test_pool", 1023, 0, Eal::socket_id()).expect("mempool");
    let port = Port::open("net_ring0", 1, &pool, 256, 256).expect("ring port");
    assert!(Port::open("net_nonexistent0", 1, &pool, 256, 256).is_err());
    let mac = port.mac();
    // net_ring has no rte_flow: the steering probe says so instead of failing silently.
    let probe = rvs_dpdk::steer_dst_port(port.id(), Ipv4Addr::new(10, 1, 0, 200), 6, 1, 0, 0, true);
    assert!(probe.is_err(), "net_ring cannot steer by flow rules");

    let (vip, client, rs) = (VIP, CLIENT, RS);
    let snapshot = nat_snapshot("ring", mac);
    let mut processor: Processor<Mbuf> = Processor::new(snapshot, 1024);
    let mut out = Output::with_capacity(32);

    // The real server's MAC is learned from an ARP reply that crossed the port.
    let arp_reply = arp_frame(RS_MAC, mac, arp::op::REPLY, RS_MAC, rs, mac, Ipv4Addr::new(10, 1, 0, 1));
    for m in send_and_receive(&port, &pool, &[arp_reply]) {
        processor.handle(0, m, 0, &mut out);
    }
    assert_eq!(processor.counters().get(Counter::ArpRepliesIn), 1);
    out.drop.clear();

    // A client SYN crosses the port, is DNATed, sent, and comes back rewritten.
    let syn =
        tcp_frame(&TcpParams { src_mac: CLIENT_MAC, dst_mac: mac, src: client, dst: vip, sport: 33000, dport: 80, ..TcpParams::default() });
    let available_before = pool.available();
    for m in send_and_receive(&port, &pool, &[syn]) {
        assert_eq!(m.segments(), 1);
        processor.handle(0, m, 1, &mut out);
    }
    assert_eq!(out.tx.len(), 1);
    let (egress, frame) = out.tx.pop().expect("one frame");
    assert_eq!(egress, 0);
    let mut tx = vec![frame];
    assert_eq!(port.queue(0).tx_burst(&mut tx), 1);
    let mut rx = Vec::new();
    port.queue(0).rx_burst(&mut rx);
    // One router hop later: TTL 64 - 1.
    let expected = tcp_frame(&TcpParams {
        src_mac: mac,
        dst_mac: RS_MAC,
        src: client,
        dst: rs,
        sport: 33000,
        dport: 8080,
        ttl: 63,
        ..TcpParams::default()
    });
    assert_eq!(rx.len(), 1);
    assert_eq!(rx[0].data(), &expected[..]);
    drop(rx);
    assert_eq!(pool.available(), available_before, "every mbuf went back to the pool");
    assert!(port.stats().opackets >= 3);

    drop(processor);
    drop(port);
    drop(pool);
    drop(eal);
}
