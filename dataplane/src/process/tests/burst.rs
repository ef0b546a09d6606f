//! The burst pipeline decides exactly what frame-at-a-time processing
//! decides: the same frames sent (bytes, ports, order), dropped, handed to the
//! kernel, the same messages, sync updates and counters, for any mix of
//! frames cut into bursts anywhere.

use proptest::prelude::*;

use super::*;

/// A pool of frames of every kind the parse stage must tell apart: flows of
/// each mode both ways (new, established, reused ports), ARP, ICMP echo,
/// fragments, VLAN-tagged, foreign, truncated and corrupted ones.
fn pool() -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    for sport in [40000u16, 40001, 40002] {
        for vip in [DR_VIP, NAT_VIP] {
            frames.push(tcp(CLIENT_MAC, DIR_MAC, (CLIENT, sport), (vip, 80), flags::SYN, b""));
            frames.push(tcp(CLIENT_MAC, DIR_MAC, (CLIENT, sport), (vip, 80), flags::ACK, b""));
            frames.push(tcp(CLIENT_MAC, DIR_MAC, (CLIENT, sport), (vip, 80), flags::ACK | flags::PSH, b"GET /"));
            frames.push(tcp(CLIENT_MAC, DIR_MAC, (CLIENT, sport), (vip, 80), flags::FIN | flags::ACK, b""));
            frames.push(tcp(CLIENT_MAC, DIR_MAC, (CLIENT, sport), (vip, 80), flags::RST, b""));
        }
        for rs in [RS1, RS2] {
            frames.push(tcp(RS1_MAC, DIR_MAC, (rs, 8080), (CLIENT, sport), flags::SYN | flags::ACK, b""));
            frames.push(tcp(RS1_MAC, DIR_MAC, (rs, 8080), (CLIENT, sport), flags::ACK | flags::PSH, b"200 OK"));
        }
        let udp = |src, sport, dst, dport| {
            udp_frame(&UdpParams {
                src_mac: CLIENT_MAC,
                dst_mac: DIR_MAC,
                src,
                sport,
                dst,
                dport,
                payload: b"q".to_vec(),
                ..UdpParams::default()
            })
        };
        frames.push(udp(CLIENT, sport, NAT_VIP, 53));
        frames.push(udp(RS2, 8080, CLIENT, sport));
    }
    // IPv6 flows both ways, a solicitation for a VIP, a mapped address (not
    // FULLNAT or NAT64 flows: each processor's local ports start at a random
    // point of its share, so two processors pick different ones).
    for sport in [40100u16, 40101] {
        for vip in [ipv6::DR6, ipv6::NAT6, ipv6::TUN6] {
            frames.push(ipv6::tcp6(CLIENT_MAC, (ipv6::CLIENT6, sport), (vip, 80), true, false, b""));
            frames.push(ipv6::tcp6(CLIENT_MAC, (ipv6::CLIENT6, sport), (vip, 80), false, true, b"GET /"));
        }
        frames.push(ipv6::tcp6(RS1_MAC, (ipv6::RS6, 8080), (ipv6::CLIENT6, sport), true, true, b""));
        frames.push(ipv6::tcp4(RS1_MAC, (RS1, 8080), (ipv6::LIP4, sport), b""));
    }
    frames.push(ipv6::solicitation(CLIENT_MAC, ipv6::CLIENT6, ipv6::NAT6));
    frames.push(ipv6::tcp6(CLIENT_MAC, (Ipv4Addr::new(10, 9, 9, 9).to_ipv6_mapped(), 1), (ipv6::NAT6, 80), true, false, b""));
    // No service, someone else's address, our own address.
    frames.push(tcp(CLIENT_MAC, DIR_MAC, (CLIENT, 41000), (NAT_VIP, 81), flags::SYN, b""));
    frames.push(tcp(CLIENT_MAC, DIR_MAC, (CLIENT, 41000), (REMOTE, 80), flags::SYN, b""));
    frames.push(tcp(CLIENT_MAC, DIR_MAC, (CLIENT, 41000), (DIR_OUT, 22), flags::SYN, b""));
    // Not our MAC; broadcast; TTL 1.
    frames.push(tcp(CLIENT_MAC, OTHER_MAC, (CLIENT, 40000), (DR_VIP, 80), flags::ACK, b""));
    frames.push(tcp(CLIENT_MAC, MacAddr::BROADCAST, (CLIENT, 40000), (DR_VIP, 80), flags::ACK, b""));
    frames.push(tcp_frame(&TcpParams {
        src_mac: CLIENT_MAC,
        dst_mac: DIR_MAC,
        src: CLIENT,
        sport: 40000,
        dst: NAT_VIP,
        dport: 80,
        flags: flags::ACK,
        ttl: 1,
        ..TcpParams::default()
    }));
    // ARP, ICMP echo.
    frames.push(arp_frame(CLIENT_MAC, MacAddr::BROADCAST, arp::op::REQUEST, CLIENT_MAC, CLIENT, MacAddr([0; 6]), DR_VIP));
    frames.push(arp_frame(RS2_MAC, DIR_MAC, arp::op::REPLY, RS2_MAC, RS2, DIR_MAC, DIR_IN));
    frames.push(icmp_echo_frame(CLIENT_MAC, DIR_MAC, CLIENT, NAT_VIP, 9, 1, b"ping"));
    // IPVS fixtures: VLAN-tagged, partial checksum, TTL 1 NAT, no real server.
    for hex in [ipvs_packet::VLAN_IN, ipvs_packet::PARTIAL_IN, ipvs_packet::NAT_TTL1_IN, ipvs_packet::NOREAL_SYN_IN] {
        frames.push(unhex(hex));
    }
    // A fragment; truncated and corrupted copies of a flow's packet.
    let mut frag = tcp(CLIENT_MAC, DIR_MAC, (CLIENT, 40000), (NAT_VIP, 80), flags::ACK | flags::PSH, b"0123456789abcdef");
    frag[14 + 6] |= 0x20; // more fragments
    frag[14 + 10] = 0;
    frag[14 + 11] = 0;
    let sum = crate::wire::checksum::internet(&frag[14..34]);
    frag[14 + 10..14 + 12].copy_from_slice(&sum.to_be_bytes());
    frames.push(frag);
    let good = tcp(CLIENT_MAC, DIR_MAC, (CLIENT, 40001), (NAT_VIP, 80), flags::ACK, b"");
    frames.push(good[..30].to_vec());
    frames.push(good[..40].to_vec());
    let mut bad_sum = good.clone();
    bad_sum[14 + 8] ^= 0x10;
    frames.push(bad_sum);
    let mut bad_len = good.clone();
    bad_len[14 + 3] = 0xff;
    frames.push(bad_len);
    frames
}

/// Everything one call produced, comparable.
fn produced(out: &mut Output<VecFrame>) -> String {
    let tx: Vec<(u16, Vec<u8>)> = out.tx.drain(..).map(|(p, f)| (p, f.to_vec())).collect();
    let kernel: Vec<(u16, Vec<u8>)> = out.kernel.drain(..).map(|(p, f)| (p, f.to_vec())).collect();
    let redirect: Vec<(usize, u16, Vec<u8>)> = out.redirect.drain(..).map(|(w, p, f)| (w, p, f.to_vec())).collect();
    let dropped: Vec<Vec<u8>> = out.drop.drain(..).map(|f| f.to_vec()).collect();
    let s = format!(
        "tx {tx:?}\nkernel {kernel:?}\nredirect {redirect:?}\ndrop {dropped:?}\ncontrol {:?}\nkernel_control {:?}\nmessages {:?}\nsync {:?}",
        out.control, out.kernel_control, out.messages, out.sync
    );
    out.control.clear();
    out.kernel_control.clear();
    out.messages.clear();
    out.sync.clear();
    s
}

fn check_same(picks: &[usize], cuts: &[usize], workers: usize) -> Result<(), TestCaseError> {
    let frames = pool();
    let snap = ipv6::snapshot6(1500);
    let mut one = Processor::<VecFrame>::for_worker(Arc::clone(&snap), 64, 0, workers);
    let mut burst = Processor::<VecFrame>::for_worker(snap, 64, 0, workers);
    let mut out_one = Output::with_capacity(32);
    let mut out_burst = Output::with_capacity(32);
    for p in [&mut one, &mut burst] {
        let mut out = Output::with_capacity(8);
        for (ip, mac) in [(CLIENT, CLIENT_MAC), (RS1, RS1_MAC), (GATEWAY, OTHER_MAC)] {
            let target = if ip.octets()[1] == 0 { DIR_OUT } else { DIR_IN };
            p.handle(0, VecFrame::new(&arp_frame(mac, DIR_MAC, arp::op::REPLY, mac, ip, DIR_MAC, target)), 0, &mut out);
        }
        for (ip, mac) in [(ipv6::CLIENT6, CLIENT_MAC), (ipv6::RS6, RS1_MAC)] {
            p.handle(0, VecFrame::new(&ipv6::solicitation(mac, ip, ipv6::DIR6_OUT)), 0, &mut out);
            p.handle(0, VecFrame::new(&ipv6::advertisement(mac, ip)), 0, &mut out);
        }
    }
    let mut at = 0;
    let mut now = 1;
    for (round, &cut) in cuts.iter().enumerate() {
        let end = (at + cut).min(picks.len());
        let mut batch: Vec<VecFrame> = picks[at..end].iter().map(|&i| VecFrame::new(&frames[i % frames.len()])).collect();
        for f in batch.iter().cloned() {
            one.handle(0, f, now, &mut out_one);
        }
        burst.handle_burst(0, &mut batch, now, &mut out_burst);
        prop_assert!(batch.is_empty(), "the burst is drained");
        prop_assert_eq!(produced(&mut out_one), produced(&mut out_burst), "round {}", round);
        now += 700;
        one.tick(now, &mut out_one);
        burst.tick(now, &mut out_burst);
        prop_assert_eq!(produced(&mut out_one), produced(&mut out_burst), "tick after round {}", round);
        at = end;
    }
    prop_assert_eq!(one.counters(), burst.counters());
    prop_assert_eq!(one.conns().len(), burst.conns().len());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]
    #[test]
    fn bursts_decide_what_single_frames_decide(
        picks in proptest::collection::vec(0usize..1000, 1..120),
        cuts in proptest::collection::vec(1usize..40, 1..12),
        workers in 1usize..3,
    ) {
        check_same(&picks, &cuts, workers)?;
    }
}

#[test]
fn every_pool_frame_in_one_burst() {
    let n = pool().len();
    let picks: Vec<usize> = (0..n).chain(0..n).collect();
    for workers in [1, 2] {
        if let Err(e) = check_same(&picks, &[picks.len()], workers) {
            panic!("{workers} workers: {e}");
        }
    }
}

/// Bursts of one frame take their own path (no descriptor vector, no
/// prefetches): every pool frame through it decides what `handle` decides.
#[test]
fn every_pool_frame_in_bursts_of_one() {
    let n = pool().len();
    let picks: Vec<usize> = (0..n).chain(0..n).collect();
    let cuts = vec![1; picks.len()];
    for workers in [1, 2] {
        if let Err(e) = check_same(&picks, &cuts, workers) {
            panic!("{workers} workers: {e}");
        }
    }
}
