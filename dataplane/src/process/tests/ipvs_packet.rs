//! Linux-IPVS packet behaviour, against frames written by an independent
//! Python generator (`struct` + a ones-complement sum), never by rvs's own
//! builder: TTL per mode, answers to packets IPVS answers (ICMP time
//! exceeded, port unreachable, a reset after expire_nodest_conn), 802.1Q tags
//! that belong to ports, partial checksums completed, and the rule that every
//! received frame ends in exactly one counter.

use super::*;
use crate::wire::builder::from_hex;

const DR_IN: &str = "02d00000000102c000000002080045000028004d40000206641e0a0000020a0000649c400050000003e80000000050020200f9040000";
const DR_OUT: &str = "02aa0000001102d000000001080045000028004d40000106651e0a0000020a0000649c400050000003e80000000050020200f9040000";
pub(super) const NAT_TTL1_IN: &str =
    "02d00000000102c000000002080045000028004e40000106651c0a0000020a0000659c410050000003e80000000050020200f9020000";
const NAT_TTL1_OUT: &str = "02c00000000202d000000001080045000038000000004001665f0a0000650a0000020b0054860000000045000028004e40000106651c0a0000020a0000659c410050000003e8";
const NAT_REPLY_TTL1_IN: &str =
    "02d00000000102aa00000011080045000028004f4000010665740a01000b0a0000021f909c4100002328000003e950120200b6e20000";
const NAT_REPLY_TTL1_OUT: &str = "02aa0000001102d00000000108004500003800000000400166b80a0100010a01000b0b0016060000000045000028004f4000010665740a01000b0a0000021f909c4100002328";
const NOREAL_UDP_IN: &str = "02d00000000102c00000000208004500002100504000401126120a0000020a00006914e90035000d86637175657279";
const NOREAL_UDP_OUT: &str = "02c00000000202d000000001080045000038000000004001665b0a0000690a0000020303616e000000004500002100504000401126120a0000020a00006914e90035000d8663";
pub(super) const NOREAL_SYN_IN: &str =
    "02d00000000102c00000000208004500002800514000400626150a0000020a0000699c420050000003e80000000050020200f8fd0000";
const NOREAL_SYN_OUT: &str = "02c00000000202d000000001080045000038000000004001665b0a0000690a00000203035c82000000004500002800514000400626150a0000020a0000699c420050000003e8";
const NODEST_IN: &str =
    "02d00000000102c00000000208004500002d005240004006260e0a0000020a00006a9c430050000003e900001b595018020013210000474554202f";
const NODEST_OUT: &str = "02c00000000202d00000000108004500002800004000400626650a00006a0a00000200509c4300001b590000000050040000e3880000";
pub(super) const VLAN_IN: &str =
    "02d00000000102c0000000028100006408004500002800534000400626170a0000020a0000659c440050000003e80000000050020200f8ff0000";
const VLAN_OUT: &str = "02aa0000001102d000000002080045000028005340003f0627700a0000020a01000b9c441f90000003e80000000050020200da180000";
const VLAN_REPLY_IN: &str = "02d00000000202aa00000011080045000028005440004006266f0a01000b0a0000021f909c4400002328000003e950120200b6df0000";
const VLAN_REPLY_OUT: &str =
    "02c00000000202d00000000181000064080045000028005440003f0627160a0000650a00000200509c4400002328000003e950120200d5c60000";
const VLAN_ARP_IN: &str =
    "ffffffffffff02c000000002810000640806000108000604000102c0000000020a0000020000000000000a000065000000000000000000000000000000000000";
const VLAN_ARP_OUT: &str =
    "02c00000000202d000000001810000640806000108000604000202d0000000010a00006502c0000000020a000002000000000000000000000000000000000000";
pub(super) const PARTIAL_IN: &str =
    "02d00000000102c00000000208004500002800554000400626150a0000020a0000659c450050000003e8000000005002faf014810000";
const PARTIAL_OUT: &str = "02aa0000001102d000000001080045000028005540003f06276e0a0000020a01000b9c451f90000003e8000000005002faf0e1260000";
const VLAN_CLIENT_ARP_REPLY: &str =
    "02d00000000102c000000002810000640806000108000604000202c0000000020a00000202d0000000010a000001000000000000000000000000000000000000";
const VLAN_ARP_REQUEST: &str =
    "ffffffffffff02d000000001810000640806000108000604000102d0000000010a0000010000000000000a000002000000000000000000000000000000000000";

const DIR2_MAC: MacAddr = MacAddr([0x02, 0xd0, 0, 0, 0, 0x02]);
/// No real server in [`answering_snapshot`]: UDP without reals, TCP with weight-0 ones.
const EMPTY_VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 105);
/// A NAT service whose real server is removed, in [`answering_snapshot`].
const NODEST_VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 106);

fn step(what: &'static str, input: &str, expect: &str) -> Step {
    Step { what, input: from_hex(input), expect: Expect::Tx(from_hex(expect)) }
}

/// The test snapshot plus services that IPVS answers for: no real server,
/// and (with `expire_nodest_conn`) one whose real server `nodest_reals` lost.
fn answering_snapshot(generation: u64, nodest_reals: Vec<RealServer>) -> Arc<Snapshot> {
    let mut s = (*snapshot(generation, nat_reals())).clone();
    let key = |protocol, vip: Ipv4Addr, port| ServiceKey { protocol, vip: vip.into(), port };
    let mut drained = vec![real(RS1, 80, ForwardMode::Nat)];
    drained[0].weight = 0;
    s.services.push(Service::new(key(Protocol::Udp, EMPTY_VIP, 53), SchedulerKind::Rr, vec![]));
    s.services.push(Service::new(key(Protocol::Tcp, EMPTY_VIP, 80), SchedulerKind::Rr, drained));
    s.services.push(Service::new(key(Protocol::Tcp, NODEST_VIP, 80), SchedulerKind::Rr, nodest_reals));
    s.expire_nodest_conn = true;
    Arc::new(s.finish())
}

#[test]
fn ttl_is_decremented_and_expired_packets_answered_per_mode() {
    let mut p = warmed_processor();
    run_steps(
        &mut p,
        vec![
            step("DR: TTL 2 leaves as 1 (the IP packet is otherwise untouched)", DR_IN, DR_OUT),
            step("NAT: a SYN with TTL 1 is answered with time exceeded from the VIP", NAT_TTL1_IN, NAT_TTL1_OUT),
            step(
                "NAT reply with TTL 1: time exceeded to the real server, from our address on its network",
                NAT_REPLY_TTL1_IN,
                NAT_REPLY_TTL1_OUT,
            ),
        ],
    );
    assert_eq!(p.counters().get(Counter::DropTtlExceeded), 2);
    assert_eq!(p.counters().get(Counter::IcmpErrorsSent), 2);
}

#[test]
fn tun_decrements_the_inner_ttl_and_the_outer_header_copies_it() {
    let mut s = (*snapshot(1, nat_reals())).clone();
    s.services[0].reals = vec![real(RS1, 80, ForwardMode::Tun)];
    let mut p = warmed_processor();
    p.adopt(Arc::new(s.finish()));
    let mut out = Output::with_capacity(4);
    p.handle(0, VecFrame::new(&from_hex(DR_IN)), 1, &mut out);
    let frame = out.tx.first().map(|(_, f)| f.to_vec()).expect("tunnelled");
    let outer = Ipv4Packet::new_checked(&frame[14..]).expect("outer");
    let inner = Ipv4Packet::new_checked(outer.payload()).expect("inner");
    assert_eq!((outer.ttl(), inner.ttl()), (1, 1), "the client's TTL 2 less one, inside and out");
    assert!(outer.verify_checksum() && inner.verify_checksum());
    // The inner packet is DR_OUT's IP packet: TTL 1 with its checksum patched.
    assert_eq!(outer.payload(), &from_hex(DR_OUT)[14..]);

    let mut ttl1 = from_hex(DR_IN);
    ttl1[14 + 8] = 1;
    ttl1[14 + 10] += 1; // the header checksum of TTL 1 (one less in the high byte of the word)
    let mut out = Output::with_capacity(4);
    p.handle(0, VecFrame::new(&ttl1), 3, &mut out);
    assert_eq!(out.tx.len(), 1, "a tunnelled packet that dies here is answered too");
    let answer = out.tx[0].1.to_vec();
    assert_eq!(answer[14 + 20], icmp::msg_type::TIME_EXCEEDED);
}

#[test]
fn no_real_server_is_answered_with_port_unreachable() {
    let mut p = warmed_processor();
    p.adopt(answering_snapshot(2, vec![real(RS1, 80, ForwardMode::Nat)]));
    run_steps(
        &mut p,
        vec![
            step("UDP to a service without real servers", NOREAL_UDP_IN, NOREAL_UDP_OUT),
            step("a TCP SYN to a service whose real servers all have weight 0", NOREAL_SYN_IN, NOREAL_SYN_OUT),
            Step {
                what: "a segment that is no SYN is not scheduled, so not answered (IPVS only schedules SYNs)",
                input: tcp(CLIENT_MAC, DIR_MAC, (CLIENT, 40009), (EMPTY_VIP, 80), flags::ACK, b""),
                expect: Expect::Drop(Counter::DropNoConnection),
            },
        ],
    );
    assert_eq!(p.counters().get(Counter::DropNoRealServer), 2);
    assert_eq!(p.conns().len(), 0);
}

#[test]
fn answers_are_rate_limited() {
    let mut p = warmed_processor();
    p.adopt(answering_snapshot(2, vec![real(RS1, 80, ForwardMode::Nat)]));
    let mut out = Output::with_capacity(256);
    for _ in 0..200 {
        p.handle(0, VecFrame::new(&from_hex(NOREAL_UDP_IN)), 7, &mut out);
    }
    let sent = icmp_err::ANSWER_BURST as usize;
    assert_eq!((out.tx.len(), out.drop.len()), (sent, 200 - sent));
    assert_eq!(p.counters().get(Counter::AnswersRateLimited), 200 - sent as u64);
    assert_eq!(p.counters().get(Counter::DropNoRealServer), 200, "every refusal is counted, answered or not");
}

#[test]
fn expire_nodest_conn_resets_the_client_and_a_new_syn_is_rescheduled() {
    let mut p = warmed_processor();
    p.adopt(answering_snapshot(2, vec![real(RS1, 80, ForwardMode::Nat), real(RS2, 80, ForwardMode::Nat)]));
    let mut out = Output::with_capacity(4);
    p.handle(0, VecFrame::new(&tcp(CLIENT_MAC, DIR_MAC, (CLIENT, 40003), (NODEST_VIP, 80), flags::SYN, b"")), 1, &mut out);
    assert_eq!(out.tx.first().map(|(_, f)| f.data()[0..6].to_vec()), Some(RS1_MAC.0.to_vec()), "rr starts at rs1");
    // rs1 is removed; expire_nodest_conn is on.
    p.adopt(answering_snapshot(3, vec![real(RS2, 80, ForwardMode::Nat)]));
    run_steps(&mut p, vec![step("the client's next segment is answered with a reset from VIP:80", NODEST_IN, NODEST_OUT)]);
    assert_eq!(p.counters().get(Counter::DropNoDest), 1);
    assert_eq!(p.counters().get(Counter::TcpResetsSent), 1);
    assert_eq!(p.conns().len(), 0);

    // Another connection to rs1, then a new SYN on it once rs1 is gone: rescheduled (IPVS), not reset.
    p.adopt(answering_snapshot(4, vec![real(RS1, 80, ForwardMode::Nat), real(RS2, 80, ForwardMode::Nat)]));
    let mut out = Output::with_capacity(4);
    let syn = tcp(CLIENT_MAC, DIR_MAC, (CLIENT, 40010), (NODEST_VIP, 80), flags::SYN, b"");
    for _ in 0..2 {
        p.handle(0, VecFrame::new(&syn), 2, &mut out);
        if out.tx.last().is_some_and(|(_, f)| f.data()[0..6] == RS1_MAC.0) {
            break;
        }
    }
    p.adopt(answering_snapshot(5, vec![real(RS2, 80, ForwardMode::Nat)]));
    let mut out = Output::with_capacity(4);
    p.handle(0, VecFrame::new(&syn), 3, &mut out);
    assert_eq!(out.tx.len(), 1);
    assert_eq!(out.tx[0].1.data()[0..6], RS2_MAC.0, "the SYN is scheduled again, to rs2");
    assert_eq!(p.counters().get(Counter::TcpResetsSent), 1, "no reset for a SYN");
}

/// Two ports: the clients' on VLAN 100, the real servers' untagged.
fn two_port_processor() -> Processor<VecFrame> {
    let mut lan0 = PortInfo::new("lan0", DIR_MAC);
    lan0.vlan = Some(100);
    let snap = Snapshot {
        generation: 1,
        ports: vec![lan0, PortInfo::new("lan1", DIR2_MAC)],
        addresses: vec![InterfaceAddr { port: 0, addr: DIR_OUT, prefix_len: 24 }, InterfaceAddr { port: 1, addr: DIR_IN, prefix_len: 24 }],
        routes: vec![
            Route { prefix: Ipv4Addr::new(10, 0, 0, 0), prefix_len: 24, via: None, port: 0 },
            Route { prefix: Ipv4Addr::new(10, 1, 0, 0), prefix_len: 24, via: None, port: 1 },
        ],
        services: vec![Service::new(
            ServiceKey { protocol: Protocol::Tcp, vip: NAT_VIP.into(), port: 80 },
            SchedulerKind::Rr,
            vec![real(RS1, 8080, ForwardMode::Nat)],
        )],
        ..Default::default()
    };
    let mut p = Processor::new(Arc::new(snap.finish()), 64);
    let mut out = Output::with_capacity(4);
    p.handle(0, VecFrame::new(&from_hex(VLAN_CLIENT_ARP_REPLY)), 0, &mut out);
    let rs1_arp = crate::wire::builder::arp_frame(RS1_MAC, DIR2_MAC, arp::op::REPLY, RS1_MAC, RS1, DIR2_MAC, DIR_IN);
    p.handle(1, VecFrame::new(&rs1_arp), 0, &mut out);
    assert_eq!(p.counters().get(Counter::ArpRepliesConsumed), 2, "both neighbours learned on their own port");
    p
}

#[test]
fn vlan_tags_belong_to_ports() {
    let mut p = two_port_processor();
    let send = |p: &mut Processor<VecFrame>, port: u16, frame: &[u8]| {
        let mut out = Output::with_capacity(4);
        p.handle(port, VecFrame::new(frame), 1, &mut out);
        (out.tx.iter().map(|(port, f)| (*port, f.to_vec())).collect::<Vec<_>>(), out.drop.len())
    };
    assert_eq!(send(&mut p, 0, &from_hex(VLAN_IN)), (vec![(1, from_hex(VLAN_OUT))], 0), "VLAN 100 in, untagged out to the real server");
    assert_eq!(send(&mut p, 1, &from_hex(VLAN_REPLY_IN)), (vec![(0, from_hex(VLAN_REPLY_OUT))], 0), "the reply gets port 0's tag");
    assert_eq!(send(&mut p, 0, &from_hex(VLAN_ARP_IN)), (vec![(0, from_hex(VLAN_ARP_OUT))], 0), "ARP on VLAN 100 answered on it");

    let mut other_vlan = from_hex(VLAN_IN);
    other_vlan[15] = 200;
    let untagged: Vec<u8> = from_hex(VLAN_IN)[..12].iter().chain(&from_hex(VLAN_IN)[16..]).copied().collect();
    for (what, port, frame) in [
        ("VLAN 200 on the VLAN 100 port", 0, other_vlan),
        ("untagged on the VLAN 100 port", 0, untagged),
        ("VLAN 100 on the untagged port", 1, from_hex(VLAN_IN)),
    ] {
        let before = p.counters().get(Counter::DropVlanForeign);
        assert_eq!(send(&mut p, port, &frame), (vec![], 1), "{what}");
        assert_eq!(p.counters().get(Counter::DropVlanForeign), before + 1, "{what}");
    }
    assert_eq!(ControlFrame::arp_request(DIR_MAC, Some(100), DIR_OUT, CLIENT).bytes(), &from_hex(VLAN_ARP_REQUEST)[..]);
}

#[test]
fn partial_checksums_are_completed_before_the_rewrite() {
    let mut p = warmed_processor();
    run_steps(&mut p, vec![step("NAT SYN with a partial checksum leaves with a full, correct one", PARTIAL_IN, PARTIAL_OUT)]);
    assert_eq!(p.counters().get(Counter::RxL4CsumPartial), 1);
    assert_eq!(p.take_partial_csum_port(), Some(0));
    assert_eq!(p.take_partial_csum_port(), None);
}

/// Where a frame handed to [`Processor::handle`] can end: every path counts
/// exactly one of these (a frame turned into an answer counts its reason and
/// then the answer's fate, see [`ANSWERS`]).
const OUTCOMES: &[Counter] = &[
    Counter::TxPackets,
    Counter::NeighQueued,
    Counter::KernelIn,
    Counter::RedirectOut,
    Counter::ArpIgnored,
    Counter::ArpRepliesConsumed,
    Counter::DropMalformed,
    Counter::DropBadChecksum,
    Counter::DropNotForUs,
    Counter::DropUnsupported,
    Counter::DropFragment,
    Counter::DropNoService,
    Counter::DropNoConnection,
    Counter::DropNoRealServer,
    Counter::DropConnTableFull,
    Counter::DropNoRoute,
    Counter::DropNeighQueueFull,
    Counter::DropLocal,
    Counter::DropNoLocalPort,
    Counter::DropTooBig,
    Counter::DropNoRoom,
    Counter::DropNoDest,
    Counter::DropQuiescent,
    Counter::DropStandby,
    Counter::DropTtlExceeded,
    Counter::DropVlanForeign,
    Counter::DropFragTableFull,
    Counter::DropNoLaddr,
    Counter::DropNewConnRate,
    Counter::DropNdInvalid,
    Counter::DropIpv4Mapped,
    Counter::DropNat64Untranslatable,
];
/// Frames that became an answer (counted under their reason, then sent).
const ANSWERS: &[Counter] = &[Counter::IcmpErrorsSent, Counter::TcpResetsSent];
/// Drop counters of frames that already had their outcome, or never reached
/// `handle`: counted by the I/O layer or by `tick`.
const LATER_DROPS: &[Counter] = &[
    Counter::TxQueueFull,
    Counter::DropMultiSegment,
    Counter::DropNeighUnresolved,
    Counter::RedirectDropped,
    Counter::DropKernel,
    Counter::DropLinkDown,
    // Per datagram, when its fragments are given up (a held fragment's own
    // outcome comes with its datagram's).
    Counter::DropFragTooMany,
    Counter::DropFragBad,
];

fn outcomes(p: &Processor<VecFrame>) -> u64 {
    let c = p.counters();
    OUTCOMES.iter().map(|&o| c.get(o)).sum::<u64>() - ANSWERS.iter().map(|&a| c.get(a)).sum::<u64>()
}

#[test]
fn every_drop_counter_is_classified() {
    for &c in Counter::ALL {
        if c.name().starts_with("drop_") {
            assert!(OUTCOMES.contains(&c) || LATER_DROPS.contains(&c), "{} is neither an outcome nor a later drop", c.name());
        }
    }
}

#[test]
fn every_received_frame_ends_in_exactly_one_outcome_counter() {
    let mut p = warmed_processor();
    p.adopt(answering_snapshot(2, vec![real(RS1, 80, ForwardMode::Nat)]));
    let garp_other =
        crate::wire::builder::arp_frame(OTHER_MAC, MacAddr::BROADCAST, arp::op::REQUEST, OTHER_MAC, REMOTE, MacAddr::ZERO, REMOTE);
    let arp_reply_unasked = crate::wire::builder::arp_frame(OTHER_MAC, DIR_MAC, arp::op::REPLY, OTHER_MAC, REMOTE, DIR_MAC, DIR_OUT);
    let arp_for_other =
        crate::wire::builder::arp_frame(CLIENT_MAC, MacAddr::BROADCAST, arp::op::REQUEST, CLIENT_MAC, CLIENT, MacAddr::ZERO, REMOTE);
    let arp_for_vip =
        crate::wire::builder::arp_frame(CLIENT_MAC, MacAddr::BROADCAST, arp::op::REQUEST, CLIENT_MAC, CLIENT, MacAddr::ZERO, DR_VIP);
    let mut arp_odd_op = arp_for_vip.clone();
    arp_odd_op[21] = 9;
    let mut runt_arp = arp_for_vip.clone();
    runt_arp.truncate(20);
    let echo = icmp_echo_frame(CLIENT_MAC, DIR_MAC, CLIENT, DR_VIP, 1, 1, b"ping");
    let echo_elsewhere = icmp_echo_frame(CLIENT_MAC, DIR_MAC, CLIENT, REMOTE, 1, 1, b"ping");
    let mut bad_ip_csum = from_hex(DR_IN);
    bad_ip_csum[14 + 10] ^= 0xff;
    let mut ipv6 = from_hex(DR_IN);
    ipv6[12..14].copy_from_slice(&ethertype::IPV6.to_be_bytes());
    let mut multicast_ip = from_hex(DR_IN);
    multicast_ip[0..6].copy_from_slice(&[0x01, 0x00, 0x5e, 0, 0, 0x12]);
    let mut multicast_other = arp_for_vip.clone();
    multicast_other[0..6].copy_from_slice(&[0x01, 0x80, 0xc2, 0, 0, 0]);
    let mut foreign_vlan = from_hex(VLAN_IN);
    foreign_vlan[15] = 7;
    let mut not_our_mac = from_hex(DR_IN);
    not_our_mac[0..6].copy_from_slice(&OTHER_MAC.0);
    let mut gre = from_hex(DR_IN);
    gre[14 + 9] = 47;
    Ipv4Packet::new_unchecked(&mut gre[14..]).fill_checksum();
    let frames: Vec<(&str, Vec<u8>)> = vec![
        ("DR SYN", from_hex(DR_IN)),
        ("NAT SYN with TTL 1 (answered)", from_hex(NAT_TTL1_IN)),
        ("NAT reply with TTL 1 (answered)", from_hex(NAT_REPLY_TTL1_IN)),
        ("NAT SYN with a partial checksum", from_hex(PARTIAL_IN)),
        ("UDP without a real server (answered)", from_hex(NOREAL_UDP_IN)),
        ("SYN without a real server (answered)", from_hex(NOREAL_SYN_IN)),
        ("data without a connection", tcp(CLIENT_MAC, DIR_MAC, (CLIENT, 9), (NAT_VIP, 80), flags::ACK, b"x")),
        ("no service on the port", tcp(CLIENT_MAC, DIR_MAC, (CLIENT, 9), (NAT_VIP, 81), flags::SYN, b"")),
        ("TCP to our own address", tcp(CLIENT_MAC, DIR_MAC, (CLIENT, 9), (DIR_OUT, 22), flags::SYN, b"")),
        ("ARP request for a VIP", arp_for_vip),
        ("ARP request for another host", arp_for_other),
        ("gratuitous ARP of another host", garp_other),
        ("ARP reply we did not ask for", arp_reply_unasked),
        ("ARP with an unknown operation", arp_odd_op),
        ("truncated ARP", runt_arp),
        ("ICMP echo to a VIP", echo),
        ("ICMP echo to someone else", echo_elsewhere),
        ("bad IP checksum", bad_ip_csum),
        ("IPv6", ipv6),
        ("IPv4 multicast", multicast_ip),
        ("other multicast", multicast_other),
        ("tagged on an untagged port", foreign_vlan),
        ("not our MAC", not_our_mac),
        ("GRE to a VIP", gre),
        ("runt", vec![0u8; 9]),
    ];
    let fed = frames.len() as u64;
    for (what, frame) in frames {
        let before = outcomes(&p);
        let mut out = Output::with_capacity(8);
        p.handle(0, VecFrame::new(&frame), 5, &mut out);
        assert_eq!(outcomes(&p), before + 1, "{what}: exactly one outcome counter");
    }
    assert_eq!(outcomes(&p), fed + 4, "the 4 ARP replies of warmed_processor() included");
}
