//! Table-driven packet fixtures: input frame → expected verdict and output frame.
//!
//! Expected frames are built from scratch by `wire::builder` (full checksum
//! computation), so every rewrite's incremental checksums are checked against a
//! full recomputation.

use std::net::Ipv4Addr;
use std::sync::Arc;

use super::accounting::overload_after;
use super::*;
use crate::frame::VecFrame;
use crate::snapshot::{InterfaceAddr, PortInfo, RealServer, Route, SchedulerKind, Service, Timeouts};
use crate::stats::ConnFilter;
use crate::wire::builder::{arp_frame, icmp_echo_frame, tcp_frame, udp_frame, TcpParams, UdpParams};
use crate::wire::tcp::flags;

const DIR_MAC: MacAddr = MacAddr([0x02, 0xd0, 0, 0, 0, 0x01]);
const CLIENT_MAC: MacAddr = MacAddr([0x02, 0xc0, 0, 0, 0, 0x02]);
const RS1_MAC: MacAddr = MacAddr([0x02, 0xaa, 0, 0, 0, 0x11]);
const RS2_MAC: MacAddr = MacAddr([0x02, 0xaa, 0, 0, 0, 0x12]);
const OTHER_MAC: MacAddr = MacAddr([0x02, 0xee, 0, 0, 0, 0xee]);

const DIR_OUT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const DIR_IN: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const DR_VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);
const NAT_VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 101);
const RS1: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 11);
const RS2: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 12);
const REMOTE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);
const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 254);

fn real(addr: Ipv4Addr, port: u16, forward: ForwardMode) -> RealServer {
    RealServer::new(addr, port, 1, forward)
}

fn snapshot(generation: u64, nat_reals: Vec<RealServer>) -> Arc<Snapshot> {
    let key = |protocol, vip: Ipv4Addr, port| ServiceKey { protocol, vip: vip.into(), port };
    Arc::new(
        Snapshot {
            generation,
            ports: vec![PortInfo::new("lan0", DIR_MAC)],
            addresses: vec![
                InterfaceAddr { port: 0, addr: DIR_OUT, prefix_len: 24 },
                InterfaceAddr { port: 0, addr: DIR_IN, prefix_len: 24 },
            ],
            routes: vec![
                Route { prefix: Ipv4Addr::new(10, 0, 0, 0), prefix_len: 24, via: None, port: 0 },
                Route { prefix: Ipv4Addr::new(10, 1, 0, 0), prefix_len: 24, via: None, port: 0 },
                Route { prefix: Ipv4Addr::UNSPECIFIED, prefix_len: 0, via: Some(GATEWAY), port: 0 },
            ],
            services: vec![
                Service::new(
                    key(Protocol::Tcp, DR_VIP, 80),
                    SchedulerKind::Rr,
                    vec![real(RS1, 80, ForwardMode::Dr), real(RS2, 80, ForwardMode::Dr)],
                ),
                Service::new(key(Protocol::Tcp, NAT_VIP, 80), SchedulerKind::Rr, nat_reals.clone()),
                Service::new(key(Protocol::Udp, NAT_VIP, 53), SchedulerKind::Rr, nat_reals),
            ],
            timeouts: Timeouts::default(),
            ..Default::default()
        }
        .finish(),
    )
}

fn nat_reals() -> Vec<RealServer> {
    vec![real(RS1, 8080, ForwardMode::Nat), real(RS2, 8080, ForwardMode::Nat)]
}

/// A processor that already knows the MACs of the client, both reals and the gateway.
fn warmed_processor() -> Processor<VecFrame> {
    let mut p = Processor::new(snapshot(1, nat_reals()), 1024);
    let mut out = Output::with_capacity(8);
    for (ip, mac) in [(CLIENT, CLIENT_MAC), (RS1, RS1_MAC), (RS2, RS2_MAC), (GATEWAY, OTHER_MAC)] {
        let target = if ip.octets()[1] == 0 { DIR_OUT } else { DIR_IN };
        let reply = arp_frame(mac, DIR_MAC, arp::op::REPLY, mac, ip, DIR_MAC, target);
        p.handle(0, VecFrame::new(&reply), 0, &mut out);
    }
    assert!(out.tx.is_empty());
    assert_eq!(p.counters().get(Counter::ArpRepliesIn), 4);
    p
}

/// A TCP frame with TTL 61; frames from the director's MAC are ones it
/// forwarded, one hop later: TTL 60 (IPVS decrements the TTL in every mode).
fn tcp(src_mac: MacAddr, dst_mac: MacAddr, src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), fl: u8, payload: &[u8]) -> Vec<u8> {
    tcp_frame(&TcpParams {
        src_mac,
        dst_mac,
        src: src.0,
        sport: src.1,
        dst: dst.0,
        dport: dst.1,
        seq: 1000,
        ack: if fl & flags::ACK != 0 { 5000 } else { 0 },
        flags: fl,
        ident: 77,
        ttl: if src_mac == DIR_MAC { 60 } else { 61 },
        payload: payload.to_vec(),
        ..TcpParams::default()
    })
}

#[derive(Debug)]
enum Expect {
    /// Sent on port 0 with exactly these bytes.
    Tx(Vec<u8>),
    /// Dropped and counted under this counter.
    Drop(Counter),
}

struct Step {
    what: &'static str,
    input: Vec<u8>,
    expect: Expect,
}

fn run_steps(p: &mut Processor<VecFrame>, steps: Vec<Step>) {
    for step in steps {
        let mut out = Output::with_capacity(8);
        let before = p.counters().clone();
        p.handle(0, VecFrame::new(&step.input), 1, &mut out);
        match &step.expect {
            Expect::Tx(bytes) => {
                assert_eq!(out.tx.len(), 1, "{}: expected one frame sent, got {:?}", step.what, out);
                assert_eq!(out.tx[0].0, 0, "{}: egress port", step.what);
                assert_eq!(&out.tx[0].1.to_vec(), bytes, "{}: output frame", step.what);
                assert!(out.drop.is_empty(), "{}", step.what);
            }
            Expect::Drop(counter) => {
                assert!(out.tx.is_empty(), "{}: nothing may be sent", step.what);
                assert_eq!(out.drop.len(), 1, "{}", step.what);
                assert_eq!(p.counters().get(*counter), before.get(*counter) + 1, "{}: counter {}", step.what, counter.name());
            }
        }
    }
}

#[test]
fn dr_and_nat_rewrites() {
    let mut p = warmed_processor();
    let syn_payload: &[u8] = b"";
    let data: &[u8] = b"GET / HTTP/1.1\r\nHost: vip\r\n\r\n";
    let steps = vec![
        Step {
            what: "DR: SYN to the VIP goes to rs1's MAC, IP packet untouched",
            input: tcp(CLIENT_MAC, DIR_MAC, (CLIENT, 40000), (DR_VIP, 80), flags::SYN, syn_payload),
            expect: Expect::Tx(tcp(DIR_MAC, RS1_MAC, (CLIENT, 40000), (DR_VIP, 80), flags::SYN, syn_payload)),
        },
        Step {
            what: "DR: next connection goes to rs2 (rr)",
            input: tcp(CLIENT_MAC, DIR_MAC, (CLIENT, 40001), (DR_VIP, 80), flags::SYN, syn_payload),
            expect: Expect::Tx(tcp(DIR_MAC, RS2_MAC, (CLIENT, 40001), (DR_VIP, 80), flags::SYN, syn_payload)),
        },
        Step {
            what: "DR: data on the first connection sticks to rs1",
            input: tcp(CLIENT_MAC, DIR_MAC, (CLIENT, 40000), (DR_VIP, 80), flags::ACK | flags::PSH, data),
            expect: Expect::Tx(tcp(DIR_MAC, RS1_MAC, (CLIENT, 40000), (DR_VIP, 80), flags::ACK | flags::PSH, data)),
        },
        Step {
            what: "NAT: SYN is DNATed to rs1:8080",
            input: tcp(CLIENT_MAC, DIR_MAC, (CLIENT, 40002), (NAT_VIP, 80), flags::SYN, syn_payload),
            expect: Expect::Tx(tcp(DIR_MAC, RS1_MAC, (CLIENT, 40002), (RS1, 8080), flags::SYN, syn_payload)),
        },
        Step {
            what: "NAT: the SYN-ACK from rs1:8080 leaves as VIP:80 towards the client",
            input: tcp(RS1_MAC, DIR_MAC, (RS1, 8080), (CLIENT, 40002), flags::SYN | flags::ACK, syn_payload),
            expect: Expect::Tx(tcp(DIR_MAC, CLIENT_MAC, (NAT_VIP, 80), (CLIENT, 40002), flags::SYN | flags::ACK, syn_payload)),
        },
        Step {
            what: "NAT: request data DNATed",
            input: tcp(CLIENT_MAC, DIR_MAC, (CLIENT, 40002), (NAT_VIP, 80), flags::ACK | flags::PSH, data),
            expect: Expect::Tx(tcp(DIR_MAC, RS1_MAC, (CLIENT, 40002), (RS1, 8080), flags::ACK | flags::PSH, data)),
        },
        Step {
            what: "NAT: reply data SNATed",
            input: tcp(RS1_MAC, DIR_MAC, (RS1, 8080), (CLIENT, 40002), flags::ACK | flags::PSH, b"rs1\n"),
            expect: Expect::Tx(tcp(DIR_MAC, CLIENT_MAC, (NAT_VIP, 80), (CLIENT, 40002), flags::ACK | flags::PSH, b"rs1\n")),
        },
        Step {
            what: "NAT UDP: datagram DNATed (rr: rs1), reply SNATed",
            input: udp_frame(&UdpParams {
                src_mac: CLIENT_MAC,
                dst_mac: DIR_MAC,
                src: CLIENT,
                sport: 5353,
                dst: NAT_VIP,
                dport: 53,
                payload: b"q".to_vec(),
                ..UdpParams::default()
            }),
            expect: Expect::Tx(udp_frame(&UdpParams {
                src_mac: DIR_MAC,
                dst_mac: RS1_MAC,
                src: CLIENT,
                sport: 5353,
                dst: RS1,
                dport: 8080,
                payload: b"q".to_vec(),
                ttl: 63,
                ..UdpParams::default()
            })),
        },
        Step {
            what: "NAT UDP reply",
            input: udp_frame(&UdpParams {
                src_mac: RS1_MAC,
                dst_mac: DIR_MAC,
                src: RS1,
                sport: 8080,
                dst: CLIENT,
                dport: 5353,
                payload: b"answer".to_vec(),
                ..UdpParams::default()
            }),
            expect: Expect::Tx(udp_frame(&UdpParams {
                src_mac: DIR_MAC,
                dst_mac: CLIENT_MAC,
                src: NAT_VIP,
                sport: 53,
                dst: CLIENT,
                dport: 5353,
                payload: b"answer".to_vec(),
                ttl: 63,
                ..UdpParams::default()
            })),
        },
    ];
    run_steps(&mut p, steps);
    assert_eq!(p.conns().len(), 4);
    assert_eq!(p.counters().get(Counter::ConnCreated), 4);
}

#[test]
fn local_answers_arp_and_icmp_echo() {
    let mut p = warmed_processor();
    let steps = vec![
        Step {
            what: "ARP request for the DR VIP gets our MAC",
            input: arp_frame(CLIENT_MAC, MacAddr::BROADCAST, arp::op::REQUEST, CLIENT_MAC, CLIENT, MacAddr::ZERO, DR_VIP),
            expect: Expect::Tx(arp_frame(DIR_MAC, CLIENT_MAC, arp::op::REPLY, DIR_MAC, DR_VIP, CLIENT_MAC, CLIENT)),
        },
        Step {
            what: "ARP request for an interface address gets our MAC",
            input: arp_frame(RS1_MAC, MacAddr::BROADCAST, arp::op::REQUEST, RS1_MAC, RS1, MacAddr::ZERO, DIR_IN),
            expect: Expect::Tx(arp_frame(DIR_MAC, RS1_MAC, arp::op::REPLY, DIR_MAC, DIR_IN, RS1_MAC, RS1)),
        },
        Step {
            what: "ICMP echo to our address is answered",
            input: icmp_echo_frame(CLIENT_MAC, DIR_MAC, CLIENT, DIR_OUT, 7, 1, b"ping"),
            // The reply keeps the request's IP ident and data, with TTL 64.
            expect: Expect::Tx(crate::wire::builder::icmp_frame(
                DIR_MAC,
                CLIENT_MAC,
                DIR_OUT,
                CLIENT,
                icmp::msg_type::ECHO_REPLY,
                0,
                (7 << 16) | 1,
                b"ping",
            )),
        },
        Step {
            what: "ARP request for someone else is not answered",
            input: arp_frame(
                CLIENT_MAC,
                MacAddr::BROADCAST,
                arp::op::REQUEST,
                CLIENT_MAC,
                CLIENT,
                MacAddr::ZERO,
                Ipv4Addr::new(10, 0, 0, 77),
            ),
            expect: Expect::Drop(Counter::ArpRequestsIn).invert(),
        },
    ];
    run_steps(&mut p, steps);
}

impl Expect {
    /// For frames that are consumed without a counter of their own: nothing sent.
    fn invert(self) -> Expect {
        Expect::Drop(Counter::RxPackets)
    }
}

#[test]
fn drops_are_counted_by_reason() {
    let mut p = warmed_processor();
    let mut bad_csum = tcp(CLIENT_MAC, DIR_MAC, (CLIENT, 1), (NAT_VIP, 80), flags::SYN, b"");
    bad_csum[14 + 10] ^= 0xff;
    let mut fragment = tcp(CLIENT_MAC, DIR_MAC, (CLIENT, 1), (NAT_VIP, 80), flags::SYN, b"");
    {
        let mut ip = Ipv4Packet::new_unchecked(&mut fragment[14..]);
        ip.set_more_frags(true);
        ip.fill_checksum();
    }
    let mut ipv6 = tcp(CLIENT_MAC, DIR_MAC, (CLIENT, 1), (NAT_VIP, 80), flags::SYN, b"");
    ipv6[12..14].copy_from_slice(&ethertype::IPV6.to_be_bytes());
    let mut bad_ihl = tcp(CLIENT_MAC, DIR_MAC, (CLIENT, 1), (NAT_VIP, 80), flags::SYN, b"");
    bad_ihl[14] = 0x44;
    let full = tcp(CLIENT_MAC, DIR_MAC, (CLIENT, 1), (NAT_VIP, 80), flags::SYN, b"");
    let steps = vec![
        Step {
            what: "ACK without a connection",
            input: tcp(CLIENT_MAC, DIR_MAC, (CLIENT, 9), (NAT_VIP, 80), flags::ACK, b""),
            expect: Expect::Drop(Counter::DropNoConnection),
        },
        Step {
            what: "VIP port without a service",
            input: tcp(CLIENT_MAC, DIR_MAC, (CLIENT, 9), (NAT_VIP, 443), flags::SYN, b""),
            expect: Expect::Drop(Counter::DropNoService),
        },
        Step {
            what: "TCP to our own address",
            input: tcp(CLIENT_MAC, DIR_MAC, (CLIENT, 9), (DIR_OUT, 22), flags::SYN, b""),
            expect: Expect::Drop(Counter::DropLocal),
        },
        Step {
            what: "not our address",
            input: tcp(CLIENT_MAC, DIR_MAC, (CLIENT, 9), (REMOTE, 80), flags::SYN, b""),
            expect: Expect::Drop(Counter::DropNotForUs),
        },
        Step {
            what: "not our MAC",
            input: tcp(CLIENT_MAC, OTHER_MAC, (CLIENT, 9), (NAT_VIP, 80), flags::SYN, b""),
            expect: Expect::Drop(Counter::DropNotForUs),
        },
        Step { what: "bad IP checksum", input: bad_csum, expect: Expect::Drop(Counter::DropBadChecksum) },
        Step {
            what: "fragment of 20 bytes with more to come (not a multiple of 8)",
            input: fragment,
            expect: Expect::Drop(Counter::DropFragBad),
        },
        Step { what: "IPv4 bytes behind the IPv6 ethertype", input: ipv6, expect: Expect::Drop(Counter::DropMalformed) },
        Step { what: "IHL below 5", input: bad_ihl, expect: Expect::Drop(Counter::DropMalformed) },
        Step { what: "runt frame", input: vec![0u8; 10], expect: Expect::Drop(Counter::DropMalformed) },
        Step { what: "truncated inside the IP header", input: full[..14 + 12].to_vec(), expect: Expect::Drop(Counter::DropMalformed) },
        Step {
            what: "truncated inside the TCP header",
            input: {
                let mut f = full[..14 + 20 + 10].to_vec();
                f[14 + 3] = 30;
                f[14 + 2] = 0;
                let mut ip = Ipv4Packet::new_unchecked(&mut f[14..]);
                ip.fill_checksum();
                f
            },
            expect: Expect::Drop(Counter::DropMalformed),
        },
    ];
    run_steps(&mut p, steps);
    assert_eq!(p.conns().len(), 0, "no drop may create a connection");
}

#[test]
fn unresolved_next_hop_queues_then_releases() {
    let mut p: Processor<VecFrame> = Processor::new(snapshot(1, nat_reals()), 64);
    let mut out = Output::with_capacity(8);
    let syn = tcp(CLIENT_MAC, DIR_MAC, (CLIENT, 40000), (DR_VIP, 80), flags::SYN, b"");
    p.handle(0, VecFrame::new(&syn), 0, &mut out);
    assert!(out.tx.is_empty() && out.drop.is_empty(), "the SYN waits for ARP");
    assert_eq!(out.control.len(), 1);
    let req = out.control[0].1;
    let expected_req = arp_frame(DIR_MAC, MacAddr::BROADCAST, arp::op::REQUEST, DIR_MAC, DIR_IN, MacAddr::ZERO, RS1);
    assert_eq!(req.bytes(), &expected_req[..], "ARP request from our address in rs1's network");
    out.control.clear();

    // A retransmitted SYN joins the queue without a second request.
    p.handle(0, VecFrame::new(&syn), 10, &mut out);
    assert!(out.control.is_empty());

    let reply = arp_frame(RS1_MAC, DIR_MAC, arp::op::REPLY, RS1_MAC, RS1, DIR_MAC, DIR_IN);
    p.handle(0, VecFrame::new(&reply), 20, &mut out);
    let expected = tcp(DIR_MAC, RS1_MAC, (CLIENT, 40000), (DR_VIP, 80), flags::SYN, b"");
    assert_eq!(out.tx.len(), 2, "both queued frames leave once rs1 is resolved");
    assert!(out.tx.iter().all(|(port, f)| *port == 0 && f.to_vec() == expected));
}

#[test]
fn unanswered_arp_drops_the_queue_after_a_while() {
    let mut p: Processor<VecFrame> = Processor::new(snapshot(1, nat_reals()), 64);
    let mut out = Output::with_capacity(8);
    p.handle(0, VecFrame::new(&tcp(CLIENT_MAC, DIR_MAC, (CLIENT, 1), (DR_VIP, 80), flags::SYN, b"")), 0, &mut out);
    p.tick(1_500, &mut out);
    assert_eq!(out.control.len(), 2, "request retried");
    p.tick(3_500, &mut out);
    assert_eq!(out.drop.len(), 1);
    assert_eq!(p.counters().get(Counter::DropNeighUnresolved), 1);
}

#[test]
fn new_snapshot_keeps_established_connections() {
    let mut p = warmed_processor();
    let mut out = Output::with_capacity(8);
    // Connection to rs1 (rr starts at rs1).
    p.handle(0, VecFrame::new(&tcp(CLIENT_MAC, DIR_MAC, (CLIENT, 50000), (NAT_VIP, 80), flags::SYN, b"")), 1, &mut out);
    assert_eq!(out.tx[0].1.to_vec(), tcp(DIR_MAC, RS1_MAC, (CLIENT, 50000), (RS1, 8080), flags::SYN, b""));
    out.tx.clear();

    // rs1 is removed from the NAT service.
    let old = p.adopt(snapshot(2, vec![real(RS2, 8080, ForwardMode::Nat)]));
    assert_eq!(old.generation, 1);
    assert_eq!(p.counters().get(Counter::Generation), 2);

    // The established connection still reaches rs1, both ways.
    p.handle(0, VecFrame::new(&tcp(CLIENT_MAC, DIR_MAC, (CLIENT, 50000), (NAT_VIP, 80), flags::ACK, b"more")), 2, &mut out);
    assert_eq!(out.tx[0].1.to_vec(), tcp(DIR_MAC, RS1_MAC, (CLIENT, 50000), (RS1, 8080), flags::ACK, b"more"));
    p.handle(0, VecFrame::new(&tcp(RS1_MAC, DIR_MAC, (RS1, 8080), (CLIENT, 50000), flags::ACK, b"ok")), 2, &mut out);
    assert_eq!(out.tx[1].1.to_vec(), tcp(DIR_MAC, CLIENT_MAC, (NAT_VIP, 80), (CLIENT, 50000), flags::ACK, b"ok"));
    out.tx.clear();

    // New connections only go to rs2.
    for port in 50001..50005 {
        p.handle(0, VecFrame::new(&tcp(CLIENT_MAC, DIR_MAC, (CLIENT, port), (NAT_VIP, 80), flags::SYN, b"")), 3, &mut out);
    }
    assert_eq!(out.tx.len(), 4);
    assert!(out.tx.iter().all(|(_, f)| f.data()[0..6] == RS2_MAC.0));
}

/// Next hops cached for connections follow ARP (a new MAC is used at once,
/// an ageing entry is still confirmed) and start over with a new snapshot.
#[test]
fn cached_next_hops_follow_arp_and_snapshots() {
    let mut p = warmed_processor();
    let mut out = Output::with_capacity(8);
    let to_rs1 = |p: &mut Processor<VecFrame>, out: &mut Output<VecFrame>, now| {
        p.handle(0, VecFrame::new(&tcp(CLIENT_MAC, DIR_MAC, (CLIENT, 50100), (NAT_VIP, 80), flags::ACK, b"data")), now, out);
        out.tx.pop().map(|(_, f)| MacAddr(f.data()[0..6].try_into().unwrap_or([0; 6])))
    };
    let to_client = |p: &mut Processor<VecFrame>, out: &mut Output<VecFrame>, now| {
        p.handle(0, VecFrame::new(&tcp(RS1_MAC, DIR_MAC, (RS1, 8080), (CLIENT, 50100), flags::ACK, b"ok")), now, out);
        out.tx.pop().map(|(_, f)| MacAddr(f.data()[0..6].try_into().unwrap_or([0; 6])))
    };
    p.handle(0, VecFrame::new(&tcp(CLIENT_MAC, DIR_MAC, (CLIENT, 50100), (NAT_VIP, 80), flags::SYN, b"")), 1, &mut out);
    out.tx.clear();
    assert_eq!(to_rs1(&mut p, &mut out, 2), Some(RS1_MAC));
    assert_eq!(to_client(&mut p, &mut out, 2), Some(CLIENT_MAC));
    assert_eq!((to_rs1(&mut p, &mut out, 3), to_client(&mut p, &mut out, 3)), (Some(RS1_MAC), Some(CLIENT_MAC)), "from the cache");

    // Both neighbours move to new MACs: the next packets follow at once.
    let (rs1_moved, client_moved) = (MacAddr([0x02, 0xaa, 0, 0, 0, 0x99]), MacAddr([0x02, 0xc0, 0, 0, 0, 0x99]));
    p.handle(0, VecFrame::new(&arp_frame(rs1_moved, DIR_MAC, arp::op::REPLY, rs1_moved, RS1, DIR_MAC, DIR_IN)), 4, &mut out);
    p.handle(0, VecFrame::new(&arp_frame(client_moved, DIR_MAC, arp::op::REPLY, client_moved, CLIENT, DIR_MAC, DIR_OUT)), 4, &mut out);
    out.drop.clear();
    assert_eq!((to_rs1(&mut p, &mut out, 5), to_client(&mut p, &mut out, 5)), (Some(rs1_moved), Some(client_moved)));

    // A minute later the entries age: packets still go, and ARP confirms them, as without a cache.
    out.control.clear();
    let later = 4 + crate::neigh::REFRESH_MS + 1;
    assert_eq!(to_rs1(&mut p, &mut out, later), Some(rs1_moved));
    assert_eq!(to_client(&mut p, &mut out, later), Some(client_moved));
    let asked: Vec<Ipv4Addr> =
        out.control.iter().filter_map(|(_, c)| ArpPacket::new_checked(&c.bytes()[14..]).ok().map(|a| a.target_ip())).collect();
    assert_eq!(asked, vec![RS1, CLIENT], "ageing neighbours are confirmed");

    // A new snapshot with a smaller MTU: a DF packet above it is answered, not sent through a stale hop.
    let mut snap = (*snapshot(2, nat_reals())).clone();
    snap.ports[0].mtu = 60;
    p.adopt(Arc::new(snap.finish()));
    out.tx.clear();
    let mut big = tcp(CLIENT_MAC, DIR_MAC, (CLIENT, 50100), (NAT_VIP, 80), flags::ACK, &[7u8; 40]);
    big[14 + 6] |= 0x40; // DF
    big[14 + 10..14 + 12].copy_from_slice(&[0, 0]);
    let sum = crate::wire::checksum::internet(&big[14..34]);
    big[14 + 10..14 + 12].copy_from_slice(&sum.to_be_bytes());
    let too_big = p.counters().get(Counter::DropTooBig);
    p.handle(0, VecFrame::new(&big), later + 1, &mut out);
    assert_eq!(p.counters().get(Counter::DropTooBig), too_big + 1);
}

#[test]
fn closing_connection_is_rescheduled_by_a_new_syn() {
    let mut p = warmed_processor();
    let mut out = Output::with_capacity(8);
    let syn = tcp(CLIENT_MAC, DIR_MAC, (CLIENT, 41000), (DR_VIP, 80), flags::SYN, b"");
    p.handle(0, VecFrame::new(&syn), 1, &mut out);
    p.handle(0, VecFrame::new(&tcp(CLIENT_MAC, DIR_MAC, (CLIENT, 41000), (DR_VIP, 80), flags::ACK, b"")), 2, &mut out);
    p.handle(0, VecFrame::new(&tcp(CLIENT_MAC, DIR_MAC, (CLIENT, 41000), (DR_VIP, 80), flags::FIN | flags::ACK, b"")), 3, &mut out);
    out.tx.clear();
    // Same client port again: rr moves on to rs2.
    p.handle(0, VecFrame::new(&syn), 4, &mut out);
    assert_eq!(&out.tx[0].1.data()[0..6], &RS2_MAC.0);
    assert_eq!(p.conns().len(), 1);
}

#[test]
fn idle_connections_expire() {
    let mut p = warmed_processor();
    let mut out = Output::with_capacity(8);
    p.handle(0, VecFrame::new(&tcp(CLIENT_MAC, DIR_MAC, (CLIENT, 42000), (DR_VIP, 80), flags::SYN, b"")), 0, &mut out);
    assert_eq!(p.conns().len(), 1);
    let syn_timeout = u64::from(Timeouts::default().tcp_syn) * 1000;
    p.tick(syn_timeout, &mut out);
    assert_eq!(p.conns().len(), 1);
    p.tick(syn_timeout + 1, &mut out);
    assert_eq!(p.conns().len(), 0);
    assert_eq!(p.counters().get(Counter::ConnExpired), 1);
}

mod fuzz {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Arbitrary bytes, and arbitrary corruptions of valid frames, never panic
        /// and never produce more than one frame out per frame in.
        #[test]
        fn arbitrary_frames_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut p = warmed_processor();
            let mut out = Output::with_capacity(8);
            p.handle(0, VecFrame::new(&bytes), 1, &mut out);
            prop_assert!(out.tx.len() + out.drop.len() <= 1);
        }

        #[test]
        fn corrupted_valid_frames_never_panic(pos in 0usize..80, val in any::<u8>(), cut in 0usize..80, nat in any::<bool>()) {
            let mut p = warmed_processor();
            let mut out = Output::with_capacity(8);
            let vip = if nat { NAT_VIP } else { DR_VIP };
            let mut f = tcp(CLIENT_MAC, DIR_MAC, (CLIENT, 40000), (vip, 80), flags::SYN, b"payload!");
            if pos < f.len() { f[pos] = val; }
            f.truncate(f.len().saturating_sub(cut));
            p.handle(0, VecFrame::new(&f), 1, &mut out);
            prop_assert!(out.tx.len() + out.drop.len() <= 1);
        }
    }
}

mod semantics {
    //! Issue-4 connection semantics: thresholds, quiescent servers, removed
    //! servers, persistence, state timeouts.
    use super::*;
    use crate::snapshot::Persistence;

    const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 105);

    fn snap_with(generation: u64, reals: Vec<RealServer>, edit: impl Fn(&mut Service), nodest: bool) -> Arc<Snapshot> {
        let mut svc = Service::new(ServiceKey { protocol: Protocol::Tcp, vip: VIP.into(), port: 80 }, SchedulerKind::Rr, reals);
        edit(&mut svc);
        let base = snapshot(generation, nat_reals());
        let mut s = (*base).clone();
        s.services.push(svc);
        s.expire_nodest_conn = nodest;
        Arc::new(s.finish())
    }

    fn warmed(snap: Arc<Snapshot>) -> Processor<VecFrame> {
        let mut p = warmed_processor();
        p.adopt(snap);
        p
    }

    fn syn(p: &mut Processor<VecFrame>, sport: u16, now: u64) -> Option<MacAddr> {
        let mut out = Output::with_capacity(4);
        p.handle(0, VecFrame::new(&tcp(CLIENT_MAC, DIR_MAC, (CLIENT, sport), (VIP, 80), flags::SYN, b"")), now, &mut out);
        out.tx.first().map(|(_, f)| MacAddr::from_bytes(&f.data()[0..6]).expect("mac"))
    }

    fn ack(p: &mut Processor<VecFrame>, sport: u16, now: u64) -> (usize, usize) {
        let mut out = Output::with_capacity(4);
        p.handle(0, VecFrame::new(&tcp(CLIENT_MAC, DIR_MAC, (CLIENT, sport), (VIP, 80), flags::ACK, b"x")), now, &mut out);
        (out.tx.len(), out.drop.len())
    }

    #[test]
    fn upper_threshold_overloads_until_below_the_lower_one() {
        let mut r1 = real(RS1, 80, ForwardMode::Nat);
        r1.upper_threshold = 2;
        r1.lower_threshold = 1;
        let mut p = warmed(snap_with(2, vec![r1, real(RS2, 80, ForwardMode::Nat)], |_| {}, false));
        // rr: rs1, rs2, rs1 -> rs1 now has 2 = upper: overloaded.
        assert_eq!(syn(&mut p, 1, 0), Some(RS1_MAC));
        assert_eq!(syn(&mut p, 2, 0), Some(RS2_MAC));
        assert_eq!(syn(&mut p, 3, 0), Some(RS1_MAC));
        for sport in 4..8 {
            assert_eq!(syn(&mut p, sport, 0), Some(RS2_MAC), "overloaded rs1 gets nothing");
        }
        let (_, counts) = (0, p.service_counts(3).expect("service"));
        assert_eq!(counts.1[0], 2);
        // Only when rs1's connections expire (SYN_RECV: 60 s) below the lower threshold (1) does it come back.
        let mut out = Output::with_capacity(4);
        p.tick(61_000, &mut out);
        assert_eq!(syn(&mut p, 100, 61_001), Some(RS1_MAC));
    }

    #[test]
    fn no_lower_threshold_means_three_quarters_of_the_upper() {
        assert!(overload_after(false, true, 4, 4, 0));
        assert!(overload_after(true, false, 3, 4, 0), "3*4 >= 4*3: still overloaded");
        assert!(!overload_after(true, false, 2, 4, 0));
        assert!(overload_after(true, false, 2, 4, 2), "lower 2: 2 is not below it");
        assert!(!overload_after(true, false, 1, 4, 2));
        assert!(!overload_after(false, true, 100, 0, 0), "no threshold, no overload");
    }

    #[test]
    fn quiescent_server_keeps_its_connections_unless_asked_to_expire_them() {
        for expire in [false, true] {
            let reals = vec![real(RS1, 80, ForwardMode::Nat), real(RS2, 80, ForwardMode::Nat)];
            let mut p = warmed(snap_with(2, reals.clone(), |_| {}, false));
            assert_eq!(syn(&mut p, 1, 0), Some(RS1_MAC));
            assert_eq!(ack(&mut p, 1, 1), (1, 0));
            let mut drained = reals;
            drained[0].weight = 0;
            p.adopt(snap_with(3, drained, |s| s.expire_quiescent = expire, false));
            if expire {
                assert_eq!(ack(&mut p, 1, 2), (0, 1), "expire_quiescent ends the connection");
                assert_eq!(p.counters().get(Counter::DropQuiescent), 1);
            } else {
                assert_eq!(ack(&mut p, 1, 2), (1, 0), "the established connection continues");
            }
            for sport in 10..14 {
                assert_eq!(syn(&mut p, sport, 3), Some(RS2_MAC), "no new connection to a weight-0 server");
            }
        }
    }

    #[test]
    fn removed_server_connections_continue_unless_expire_nodest_conn() {
        for nodest in [false, true] {
            let mut p = warmed(snap_with(2, vec![real(RS1, 80, ForwardMode::Nat), real(RS2, 80, ForwardMode::Nat)], |_| {}, nodest));
            assert_eq!(syn(&mut p, 1, 0), Some(RS1_MAC));
            p.adopt(snap_with(3, vec![real(RS2, 80, ForwardMode::Nat)], |_| {}, nodest));
            let got = ack(&mut p, 1, 1);
            // With expire_nodest_conn the client's segment is answered with a reset.
            assert_eq!(got, (1, 0), "nodest={nodest}");
            assert_eq!(p.counters().get(Counter::TcpResetsSent), u64::from(nodest), "nodest={nodest}");
            assert_eq!(p.conns().len(), usize::from(!nodest));
        }
    }

    #[test]
    fn persistence_sends_a_client_back_to_its_server_until_the_template_expires() {
        let persistence = Persistence { timeout_s: 10, prefix_len: 24 };
        let reals = vec![real(RS1, 80, ForwardMode::Nat), real(RS2, 80, ForwardMode::Nat)];
        let mut p = warmed(snap_with(2, reals, |s| s.persistence = Some(persistence), false));
        let first = syn(&mut p, 1, 0).expect("scheduled");
        for sport in 2..20 {
            assert_eq!(syn(&mut p, sport, 0), Some(first), "rr would alternate; the template holds");
        }
        assert_eq!(p.templates(), 1);
        // Connections time out (SYN_RECV 60 s); the template lives 10 s more.
        let mut out = Output::with_capacity(4);
        p.tick(60_001, &mut out);
        assert_eq!(p.conns().len(), 0);
        assert_eq!(syn(&mut p, 50, 65_000), Some(first), "template still alive");
        p.tick(125_001, &mut out);
        p.tick(135_002, &mut out);
        assert_eq!(p.templates(), 0, "template expired after its connections");
        // Scheduled afresh: rr moves on to the other server (the template
        // connections never advanced it), and a new template holds from there.
        let next = syn(&mut p, 200, 135_003).expect("scheduled");
        assert_ne!(next, first, "without a template the scheduler decides again");
        assert_eq!(syn(&mut p, 201, 135_004), Some(next));
    }

    #[test]
    fn persistent_connections_are_created_on_the_template_owner() {
        let persistence = Persistence { timeout_s: 300, prefix_len: 32 };
        let reals = vec![real(RS1, 80, ForwardMode::Nat), real(RS2, 80, ForwardMode::Nat)];
        let snap = snap_with(2, reals, |s| s.persistence = Some(persistence), false);
        let owner = super::super::persistence::template_owner(CLIENT.into(), 2);
        let other = 1 - owner;
        let mut p: Processor<VecFrame> = Processor::for_worker(snap, 64, other, 2);
        let mut out = Output::with_capacity(4);
        p.handle(0, VecFrame::new(&tcp(CLIENT_MAC, DIR_MAC, (CLIENT, 7), (VIP, 80), flags::SYN, b"")), 0, &mut out);
        assert_eq!(out.redirect.len(), 1, "the SYN goes to the worker holding this client's template");
        assert_eq!(out.redirect[0].0, owner);
        assert_eq!(p.conns().len(), 0);
    }

    #[test]
    fn tcp_states_follow_a_real_exchange() {
        let mut p = warmed_processor();
        let mut out = Output::with_capacity(8);
        let c = (CLIENT, 45000);
        let v = (NAT_VIP, 80);
        let r = (RS1, 8080);
        let mut send = |p: &mut Processor<VecFrame>, inbound: bool, fl: u8, now: u64| {
            let f = if inbound { tcp(CLIENT_MAC, DIR_MAC, c, v, fl, b"") } else { tcp(RS1_MAC, DIR_MAC, r, c, fl, b"") };
            p.handle(0, VecFrame::new(&f), now, &mut out);
            let info = p.connections(&ConnFilter::default(), now);
            (info[0].state.clone(), info[0].expires_ms)
        };
        assert_eq!(send(&mut p, true, flags::SYN, 0), ("SYN_RECV".into(), 60_000));
        assert_eq!(send(&mut p, false, flags::SYN | flags::ACK, 1), ("SYN_RECV".into(), 60_000));
        assert_eq!(send(&mut p, true, flags::ACK, 2), ("ESTABLISHED".into(), 900_000));
        assert_eq!(send(&mut p, true, flags::FIN | flags::ACK, 3), ("CLOSE_WAIT".into(), 60_000));
        assert_eq!(send(&mut p, false, flags::FIN | flags::ACK, 4), ("TIME_WAIT".into(), 120_000));
        assert_eq!(send(&mut p, true, flags::RST, 5), ("CLOSE".into(), 10_000));
        let (active, inactive) = p.service_counts(1).expect("nat service");
        assert_eq!((active[0], inactive[0]), (0, 1));
    }

    #[test]
    fn fullnat_without_local_address_drops_new_connections_until_one_is_added() {
        // DPVS's order: the service and its FULLNAT reals first, the local address later.
        let fnat = vec![real(RS1, 8080, ForwardMode::FullNat)];
        let mut p = warmed(snap_with(2, fnat.clone(), |_| {}, false));
        let before = p.counters().get(Counter::DropNoLaddr);
        assert_eq!(syn(&mut p, 7001, 1), None);
        assert_eq!(p.counters().get(Counter::DropNoLaddr), before + 1);
        assert_eq!(p.counters().get(Counter::DropNoLocalPort), 0);
        assert_eq!(p.conns().len(), 0);
        p.adopt(snap_with(3, fnat, |s| s.local_addrs = vec![DIR_IN], false));
        assert_eq!(syn(&mut p, 7002, 2), Some(RS1_MAC));
        assert_eq!(p.counters().get(Counter::DropNoLaddr), before + 1);
    }
}

#[test]
fn a_client_packet_on_the_wrong_worker_goes_to_the_owner() {
    let snap = snapshot(1, nat_reals());
    let mut w0: Processor<VecFrame> = Processor::for_worker(Arc::clone(&snap), 64, 0, 2);
    let mut w1: Processor<VecFrame> = Processor::for_worker(snap, 64, 1, 2);
    let mut out = Output::with_capacity(8);
    w0.handle(0, VecFrame::new(&tcp(CLIENT_MAC, DIR_MAC, (CLIENT, 47000), (DR_VIP, 80), flags::SYN, b"")), 0, &mut out);
    assert_eq!(w0.conns().len(), 1);
    let messages: Vec<WorkerMsg> = out.messages.drain(..).collect();
    assert!(messages.iter().any(|m| matches!(m, WorkerMsg::FlowOwner { owner: 0, .. })), "the owner announces the flow");
    let mut out1 = Output::with_capacity(8);
    for m in messages {
        w1.handle_message(m, 0, &mut out1);
    }
    // The NIC (af_packet rollover) hands the client's ACK to worker 1.
    w1.handle(0, VecFrame::new(&tcp(CLIENT_MAC, DIR_MAC, (CLIENT, 47000), (DR_VIP, 80), flags::ACK, b"x")), 1, &mut out1);
    assert_eq!(out1.redirect.len(), 1, "redirected, not dropped");
    assert_eq!(out1.redirect[0].0, 0);
    assert_eq!(w1.conns().len(), 0);
}

/// A client that reuses its port towards another service of the same real
/// server (CI saw it: a curl that timed out) makes a NAT connection whose reply
/// key equals an older one's on another worker. The reply must reach the new
/// connection's worker, not be rewritten for the old service.
#[test]
fn the_newest_connection_owns_a_reused_reply_key() {
    let rs = vec![real(RS1, 8080, ForwardMode::Nat)];
    let mut s = (*snapshot(1, rs.clone())).clone();
    s.services.push(Service::new(ServiceKey { protocol: Protocol::Tcp, vip: NAT_VIP.into(), port: 81 }, SchedulerKind::Rr, rs));
    let snap = Arc::new(s.finish());
    let mut w0: Processor<VecFrame> = Processor::for_worker(Arc::clone(&snap), 64, 0, 2);
    let mut w1: Processor<VecFrame> = Processor::for_worker(snap, 64, 1, 2);
    let (mut out0, mut out1) = (Output::with_capacity(8), Output::with_capacity(8));
    let client = (CLIENT, 40_000);
    // The old connection (to :80, closing) lives on worker 0 ...
    w0.handle(0, VecFrame::new(&tcp(CLIENT_MAC, DIR_MAC, client, (NAT_VIP, 80), flags::SYN, b"")), 0, &mut out0);
    assert_eq!(w0.conns().len(), 1);
    for m in out0.messages.drain(..) {
        w1.handle_message(m, 0, &mut out1);
    }
    // ... the same client port opens :81 on worker 1 (same real, same reply key).
    w1.handle(0, VecFrame::new(&tcp(CLIENT_MAC, DIR_MAC, client, (NAT_VIP, 81), flags::SYN, b"")), 10, &mut out1);
    assert_eq!(w1.conns().len(), 1);
    for m in out1.messages.drain(..) {
        w0.handle_message(m, 10, &mut out0);
    }
    assert_eq!(w0.conns().len(), 0, "the stale connection is gone");
    assert_eq!(w0.counters().get(Counter::ConnSuperseded), 1);
    // Its FlowGone messages must not erase worker 0's knowledge of the new owner
    // on worker 1 either (worker 1 owns the key itself).
    for m in out0.messages.drain(..) {
        w1.handle_message(m, 10, &mut out1);
    }
    assert_eq!(w1.conns().len(), 1, "the new connection survives");
    // The real server's SYN-ACK lands on worker 0: it goes to worker 1.
    out0.redirect.clear();
    w0.handle(0, VecFrame::new(&tcp(RS1_MAC, DIR_MAC, (RS1, 8080), client, flags::SYN | flags::ACK, b"")), 11, &mut out0);
    assert_eq!(out0.redirect.len(), 1, "redirected to the new connection's worker");
    assert_eq!(out0.redirect[0].0, 1);
    assert!(out0.tx.is_empty(), "not rewritten for the old service");
}

#[test]
fn a_flow_gone_message_only_erases_its_own_owner() {
    let snap = snapshot(1, nat_reals());
    let mut w2: Processor<VecFrame> = Processor::for_worker(snap, 64, 2, 3);
    let mut out = Output::with_capacity(8);
    let key = FlowKey { proto: ip_proto::TCP, src: RS1, dst: CLIENT, sport: 8080, dport: 40_000 };
    // Worker 1's newer connection is announced before worker 0's old one is gone.
    w2.handle_message(WorkerMsg::FlowOwner { key, owner: 1 }, 0, &mut out);
    w2.handle_message(WorkerMsg::FlowGone { key, owner: 0 }, 0, &mut out);
    w2.handle(0, VecFrame::new(&tcp(RS1_MAC, DIR_MAC, (RS1, 8080), (CLIENT, 40_000), flags::ACK, b"x")), 1, &mut out);
    assert_eq!(out.redirect.len(), 1);
    assert_eq!(out.redirect[0].0, 1);
    w2.handle_message(WorkerMsg::FlowGone { key, owner: 1 }, 0, &mut out);
    out.redirect.clear();
    w2.handle(0, VecFrame::new(&tcp(RS1_MAC, DIR_MAC, (RS1, 8080), (CLIENT, 40_000), flags::ACK, b"x")), 2, &mut out);
    assert!(out.redirect.is_empty(), "the owner's own FlowGone erases it");
}

/// A connection from the sync master lives on one worker of the backup, which
/// announces it: after a failover, its packets on any queue reach that worker.
#[test]
fn a_synced_connection_lives_on_one_worker_that_announces_it() {
    use std::net::SocketAddrV4;
    let info = ConnInfo {
        worker: 0,
        protocol: Protocol::Tcp,
        client: SocketAddrV4::new(CLIENT, 41_001).into(),
        vip: SocketAddrV4::new(NAT_VIP, 80).into(),
        real: SocketAddrV4::new(RS1, 8080).into(),
        local: None,
        forward: ForwardMode::Nat,
        state: "ESTABLISHED".into(),
        expires_ms: 900_000,
        template: false,
        seq_delta: 0,
        syn_proxy: None,
    };
    let owner = install_worker(&info, 2);
    assert_eq!(owner, install_worker(&info, 2), "the same worker for every update");
    let fnat = ConnInfo { local: Some(SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, 200), 5001).into()), ..info.clone() };
    assert_eq!(install_worker(&fnat, 2), owner_of_port(5001, 2), "FULLNAT: the owner of the local port");
    assert_eq!(install_worker(&info, 1), 0);

    let snap = snapshot(1, nat_reals());
    let mut w: Vec<Processor<VecFrame>> = (0..2).map(|i| Processor::for_worker(Arc::clone(&snap), 64, i, 2)).collect();
    let mut out = Output::with_capacity(8);
    assert!(w[owner].install(&info, 0, &mut out));
    assert_eq!((w[0].conns().len() + w[1].conns().len()), 1, "installed once");
    let other = 1 - owner;
    let mut out_other = Output::with_capacity(8);
    for m in out.messages.drain(..) {
        w[other].handle_message(m, 0, &mut out_other);
    }
    // The client's next segment and the real server's reply land on the other worker.
    w[other].handle(0, VecFrame::new(&tcp(CLIENT_MAC, DIR_MAC, (CLIENT, 41_001), (NAT_VIP, 80), flags::ACK, b"x")), 1, &mut out_other);
    w[other].handle(0, VecFrame::new(&tcp(RS1_MAC, DIR_MAC, (RS1, 8080), (CLIENT, 41_001), flags::ACK, b"y")), 1, &mut out_other);
    let to: Vec<usize> = out_other.redirect.iter().map(|r| r.0).collect();
    assert_eq!(to, vec![owner, owner], "both directions go to the installing worker");
}

#[test]
fn arp_requests_for_our_addresses_also_reach_the_kernel() {
    // With an exception path, the kernel learns its peers (VRRP unicast
    // peers above all) from requests for its addresses; the dataplane answers.
    let mut snap = (*snapshot(1, nat_reals())).clone();
    snap.ports[0].kernel = true;
    let mut p = Processor::new(Arc::new(snap), 1024);
    let mut out = Output::with_capacity(8);
    let request = arp_frame(RS1_MAC, MacAddr::BROADCAST, arp::op::REQUEST, RS1_MAC, RS1, MacAddr::ZERO, DIR_IN);
    p.handle(0, VecFrame::new(&request), 0, &mut out);
    let sent: Vec<Vec<u8>> = out.tx.drain(..).map(|(_, f)| f.to_vec()).collect();
    assert_eq!(sent, vec![arp_frame(DIR_MAC, RS1_MAC, arp::op::REPLY, DIR_MAC, DIR_IN, RS1_MAC, RS1)]);
    let copies: Vec<Vec<u8>> = out
        .kernel_control
        .drain(..)
        .map(|(port, c)| {
            assert_eq!(port, 0);
            c.bytes().to_vec()
        })
        .collect();
    assert_eq!(copies, vec![request[..42].to_vec()], "the kernel gets the request as it came");

    // A VIP is the dataplane's alone: answered, no copy.
    let for_vip = arp_frame(CLIENT_MAC, MacAddr::BROADCAST, arp::op::REQUEST, CLIENT_MAC, CLIENT, MacAddr::ZERO, DR_VIP);
    p.handle(0, VecFrame::new(&for_vip), 0, &mut out);
    assert_eq!(out.tx.len(), 1);
    assert!(out.kernel_control.is_empty());

    // Another host's gratuitous ARP is consumed and counted.
    let garp = arp_frame(
        OTHER_MAC,
        MacAddr::BROADCAST,
        arp::op::REQUEST,
        OTHER_MAC,
        Ipv4Addr::new(10, 0, 0, 3),
        MacAddr::BROADCAST,
        Ipv4Addr::new(10, 0, 0, 3),
    );
    p.handle(0, VecFrame::new(&garp), 0, &mut out);
    assert_eq!(p.counters().get(Counter::ArpIgnored), 1);
}

/// A UDP datagram to NAT_VIP:53 from CLIENT:5353 (40 payload bytes) in three
/// 16-byte fragments, IP ident 0x4242, TTL 61, and rs1's answer (the payload
/// reversed, ident 0x0707); written with Python's `struct` and its own
/// checksum, not our builder. Forwarded fragments leave with TTL 60 (IPVS
/// decrements it), their header checksums recomputed the same way.
const QUERY_IN: [&str; 3] = [
    "02d00000000102c000000002080045000024424220003d1107210a0000020a00006514e9003500303f5f4142434445464748",
    "02d00000000102c000000002080045000024424220023d11071f0a0000020a000065494a4b4c4d4e4f505152535455565758",
    "02d00000000102c000000002080045000024424200043d11271d0a0000020a000065595a5b5c5d5e5f606162636465666768",
];
const QUERY_OUT: [&str; 3] = [
    "02aa0000001102d000000001080045000024424220003c11087a0a0000020a01000b14e91f900030205d4142434445464748",
    "02aa0000001102d000000001080045000024424220023c1108780a0000020a01000b494a4b4c4d4e4f505152535455565758",
    "02aa0000001102d000000001080045000024424200043c1128760a0000020a01000b595a5b5c5d5e5f606162636465666768",
];
const ANSWER_IN: [&str; 3] = [
    "02d00000000102aa00000011080045000024070720003d1142b50a01000b0a0000021f9014e900300c716867666564636261",
    "02d00000000102aa00000011080045000024070720023d1142b30a01000b0a000002605f5e5d5c5b5a595857565554535251",
    "02d00000000102aa00000011080045000024070700043d1162b10a01000b0a000002504f4e4d4c4b4a494847464544434241",
];
const ANSWER_OUT: [&str; 3] = [
    "02c00000000202d000000001080045000024070720003c11435c0a0000650a000002003514e900302b736867666564636261",
    "02c00000000202d000000001080045000024070720023c11435a0a0000650a000002605f5e5d5c5b5a595857565554535251",
    "02c00000000202d000000001080045000024070700043c1163580a0000650a000002504f4e4d4c4b4a494847464544434241",
];

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
}

fn sent(out: &mut Output<VecFrame>) -> Vec<Vec<u8>> {
    out.tx.drain(..).map(|(_, f)| f.to_vec()).collect()
}

#[test]
fn fragmented_datagrams_are_held_then_follow_their_first_fragment() {
    let mut p = warmed_processor();
    let mut out = Output::with_capacity(8);
    // Out of order: the last, the first, then the middle one completes it.
    for (i, at) in [(2, 10), (0, 11)] {
        p.handle(0, VecFrame::new(&unhex(QUERY_IN[i])), at, &mut out);
        assert!(out.tx.is_empty() && out.drop.is_empty(), "fragment {i} is held");
    }
    p.handle(0, VecFrame::new(&unhex(QUERY_IN[1])), 12, &mut out);
    let expected: Vec<Vec<u8>> = QUERY_OUT.iter().map(|h| unhex(h)).collect();
    assert_eq!(sent(&mut out), expected, "DNATed to rs1:8080, first fragment first");
    assert_eq!(p.conns().len(), 1);
    // The answer comes back in fragments too and is SNATed.
    for h in ANSWER_IN {
        p.handle(0, VecFrame::new(&unhex(h)), 20, &mut out);
    }
    let expected: Vec<Vec<u8>> = ANSWER_OUT.iter().map(|h| unhex(h)).collect();
    assert_eq!(sent(&mut out), expected, "SNATed back to the VIP");
    assert_eq!(p.counters().get(Counter::FragReassembled), 2);
    assert!(out.drop.is_empty());
}

#[test]
fn incomplete_datagrams_time_out_and_bad_ones_are_dropped() {
    let mut p = warmed_processor();
    let mut out = Output::with_capacity(8);
    p.handle(0, VecFrame::new(&unhex(QUERY_IN[0])), 100, &mut out);
    p.handle(0, VecFrame::new(&unhex(QUERY_IN[2])), 100, &mut out);
    let timeout = crate::frag::FragLimits::default().timeout_ms;
    p.tick(100 + timeout - 1, &mut out);
    assert!(out.drop.is_empty(), "held until the timeout");
    p.tick(100 + timeout, &mut out);
    assert_eq!(out.drop.len(), 2, "both held fragments freed");
    assert_eq!(p.counters().get(Counter::FragTimeout), 1);
    out.drop.clear();
    // The middle fragment alone cannot complete anything now.
    p.handle(0, VecFrame::new(&unhex(QUERY_IN[1])), 5000, &mut out);
    assert!(out.tx.is_empty());
    // The first fragment twice overlaps itself: the datagram is dropped.
    p.handle(0, VecFrame::new(&unhex(QUERY_IN[0])), 5001, &mut out);
    assert!(out.drop.is_empty());
    p.handle(0, VecFrame::new(&unhex(QUERY_IN[0])), 5002, &mut out);
    assert_eq!(out.drop.len(), 3, "the datagram's fragments are freed");
    assert_eq!(p.counters().get(Counter::DropFragBad), 1);
    assert_eq!(p.conns().len(), 0);
}

#[test]
fn egress_fragments_above_the_mtu_and_answers_df_with_fragmentation_needed() {
    let mut p = warmed_processor();
    let mut out = Output::with_capacity(8);
    let big = |df: bool, sport: u16| {
        let mut f = udp_frame(&UdpParams {
            src_mac: CLIENT_MAC,
            dst_mac: DIR_MAC,
            src: CLIENT,
            sport,
            dst: NAT_VIP,
            dport: 53,
            payload: vec![7u8; 2000],
            ..UdpParams::default()
        });
        let mut ip = Ipv4Packet::new_unchecked(&mut f[14..]);
        ip.set_dont_frag(df);
        ip.fill_checksum();
        f
    };
    p.handle(0, VecFrame::new(&big(false, 6000)), 1, &mut out);
    let frames = sent(&mut out);
    assert_eq!(frames.len(), 2, "2028 bytes over a 1500-byte MTU");
    let mut payload = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        let ip = Ipv4Packet::new_checked(&f[14..]).expect("ip");
        assert!(ip.verify_checksum());
        assert!(usize::from(ip.total_len()) <= 1500);
        assert_eq!(ip.dst_addr(), RS1);
        assert_eq!(usize::from(ip.frag_offset()), i * 1480);
        assert_eq!(ip.more_frags(), i == 0);
        payload.extend_from_slice(ip.payload());
    }
    let udp = UdpDatagram::new_checked(&payload[..]).expect("reassembled udp");
    assert_eq!((udp.dst_port(), udp.payload().len()), (8080, 2000));
    assert!(udp.verify_checksum(CLIENT, RS1));
    assert_eq!(p.counters().get(Counter::FragOut), 1);

    p.handle(0, VecFrame::new(&big(true, 6001)), 2, &mut out);
    let frames = sent(&mut out);
    assert_eq!(frames.len(), 1);
    let ip = Ipv4Packet::new_checked(&frames[0][14..]).expect("ip");
    assert_eq!((ip.src_addr(), ip.dst_addr(), ip.protocol()), (NAT_VIP, CLIENT, ip_proto::ICMP));
    let icmp = IcmpPacket::new_checked(ip.payload()).expect("icmp");
    assert_eq!((icmp.msg_type(), icmp.code()), (icmp::msg_type::DEST_UNREACHABLE, 4));
    assert_eq!(icmp.rest_of_header(), 1500, "next-hop MTU");
    assert_eq!(p.counters().get(Counter::DropTooBig), 1);
}

mod burst;
mod frag6;
mod ipv6;
mod ipvs_packet;
mod nat64;
mod persistence6;
mod pressure;
mod pressure6;
mod sloppy;
mod synproxy;
mod synproxy6;
mod tun4in6;

/// `mh`/`maglev` tables are built by `Snapshot::finish` on the control plane;
/// workers share them (adopting a snapshot builds nothing on the packet path).
#[test]
fn workers_share_the_snapshots_lookup_tables() {
    let key = ServiceKey { protocol: Protocol::Tcp, vip: NAT_VIP.into(), port: 8443 };
    let mut snap = (*snapshot(1, nat_reals())).clone();
    snap.services.push(Service::new(key, SchedulerKind::Maglev, nat_reals()));
    let snap = Arc::new(snap.finish());
    let table = snap.service(&key).and_then(|(_, s)| s.lookup_table.clone()).expect("finish builds the maglev table");
    let before = table.holders();
    let first: Processor<VecFrame> = Processor::new(Arc::clone(&snap), 64);
    let mut second: Processor<VecFrame> = Processor::new(Arc::clone(&snap), 64);
    assert_eq!(table.holders(), before + 2, "each worker's scheduler holds the shared table");
    // A new generation with the same service: the table is rebuilt off the
    // worker, the worker keeps its scheduler state (equal service).
    let mut next = (*snap).clone();
    next.generation = 2;
    let next = Arc::new(next.finish());
    let old = second.adopt(Arc::clone(&next));
    drop(old);
    drop(first);
    assert_eq!(table.holders(), before + 1, "{}", table.holders());
}
