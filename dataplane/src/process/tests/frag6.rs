//! IPv6 fragments through the processor: held until their datagram is
//! complete, then the first one takes the connection's path and the others
//! follow it with its rewritten addresses (NAT replies, DR, TUN, several
//! workers), whatever order they arrive in; NAT64 does not translate
//! fragments. Input datagrams are built with etherparse and cut into
//! fragments with etherparse's headers; the fragments sent are reassembled by
//! etherparse's defragmenter and their UDP checksum recomputed.

use std::net::Ipv6Addr;

use etherparse::defrag::IpDefragPool;
use etherparse::{
    EtherType, Ethernet2Header, IpFragOffset, IpNumber, Ipv4Header, Ipv6FragmentHeader, Ipv6Header, NetSlice, PacketBuilder, SlicedPacket,
    UdpHeader,
};

use super::ipv6::{advertisement, processor6, solicitation, CLIENT6, DIR6_IN, DIR6_OUT, DR6, LIP4, NAT6, NAT64, RS6, TUN6};
use super::*;

/// The DNS port of the UDP services added to [`super::ipv6::snapshot6`].
const DNS: u16 = 53;
/// The port the NAT real server listens on.
const REAL_PORT: u16 = 5353;
/// Bytes of each fragment's fragmentable part (a multiple of 8): a
/// 3008-byte UDP datagram makes 3 fragments of 1232, 1232 and 544 bytes.
const CHUNK: usize = 1232;

/// A processor whose snapshot adds a UDP service on port 53 of the DR, NAT,
/// TUN and NAT64 VIPs.
fn processor() -> Processor<VecFrame> {
    let mut p = processor6(1500);
    let mut s = (**p.snapshot()).clone();
    let udp = |vip: Ipv6Addr, real: RealServer| {
        Service::new(ServiceKey { protocol: Protocol::Udp, vip: vip.into(), port: DNS }, SchedulerKind::Rr, vec![real])
    };
    s.services.push(udp(DR6, RealServer::new(RS6, DNS, 1, ForwardMode::Dr)));
    s.services.push(udp(NAT6, RealServer::new(RS6, REAL_PORT, 1, ForwardMode::Nat)));
    s.services.push(udp(TUN6, RealServer::new(RS6, DNS, 1, ForwardMode::Tun)));
    let mut nat64 = udp(NAT64, RealServer::new(RS1, REAL_PORT, 1, ForwardMode::FullNat));
    nat64.local_addrs = vec![LIP4];
    s.services.push(nat64);
    p.adopt(Arc::new(s.finish()));
    p
}

/// `len` bytes that are not all alike.
fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

/// A whole UDP datagram over IPv6 (IP header on), hop limit 64.
fn udp6(src: (Ipv6Addr, u16), dst: (Ipv6Addr, u16), payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ipv6(src.0.octets(), dst.0.octets(), 64).udp(src.1, dst.1);
    let mut v = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut v, payload).expect("udp6 packet");
    v
}

/// The IPv6 packet `whole` (no extension headers) cut into fragments of
/// [`CHUNK`] bytes with identification `ident`, each an Ethernet frame from
/// `src_mac` to the director.
fn fragments(src_mac: MacAddr, whole: &[u8], ident: u32) -> Vec<Vec<u8>> {
    let (ip, upper) = Ipv6Header::from_slice(whole).expect("an IPv6 packet");
    let eth = Ethernet2Header { source: src_mac.0, destination: DIR_MAC.0, ether_type: EtherType::IPV6 };
    let pieces: Vec<&[u8]> = upper.chunks(CHUNK).collect();
    pieces
        .iter()
        .enumerate()
        .map(|(i, piece)| {
            let offset = IpFragOffset::try_new((i * CHUNK / 8) as u16).expect("offset");
            let frag = Ipv6FragmentHeader::new(ip.next_header, offset, i + 1 < pieces.len(), ident);
            let header =
                Ipv6Header { payload_length: (8 + piece.len()) as u16, next_header: IpNumber::IPV6_FRAGMENTATION_HEADER, ..ip.clone() };
            [&eth.to_bytes()[..], &header.to_bytes(), &frag.to_bytes(), piece].concat()
        })
        .collect()
}

/// A whole UDP datagram over IPv6 from the client to `vip`, as an Ethernet frame.
fn request(vip: Ipv6Addr, cport: u16) -> Vec<u8> {
    let eth = Ethernet2Header { source: CLIENT_MAC.0, destination: DIR_MAC.0, ether_type: EtherType::IPV6 };
    [&eth.to_bytes()[..], &udp6((CLIENT6, cport), (vip, DNS), b"query")].concat()
}

/// What etherparse makes of the fragments `ips` (IPv6 packets, IP header
/// on): their addresses and hop limits (each), and the reassembled UDP
/// datagram's ports and payload, after checking its checksum.
#[derive(PartialEq)]
struct Reassembled {
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hops: Vec<u8>,
    sport: u16,
    dport: u16,
    payload: Vec<u8>,
}

impl std::fmt::Debug for Reassembled {
    /// The payload by its length and first bytes (a failure stays readable).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let head = &self.payload[..self.payload.len().min(8)];
        write!(
            f,
            "{} → {} hops {:?} ports {} → {}, {} bytes {head:?}…",
            self.src,
            self.dst,
            self.hops,
            self.sport,
            self.dport,
            self.payload.len()
        )
    }
}

fn reassemble(ips: &[&[u8]]) -> Reassembled {
    let mut pool: IpDefragPool<(), ()> = IpDefragPool::new();
    let mut ends = None;
    let mut hops = Vec::new();
    let mut done = None;
    for ip in ips {
        let slice = SlicedPacket::from_ip(ip).expect("a packet etherparse reads");
        let Some(NetSlice::Ipv6(v6)) = &slice.net else { panic!("not IPv6") };
        let h = v6.header();
        let these = (h.source_addr(), h.destination_addr());
        assert_eq!(*ends.get_or_insert(these), these, "every fragment has the same addresses");
        hops.push(h.hop_limit());
        assert!(v6.is_payload_fragmented(), "a fragment, not a whole packet");
        if let Some(whole) = pool.process_sliced_packet(&slice, (), ()).expect("fragments that fit together") {
            done = Some(whole);
        }
    }
    let whole = done.expect("the fragments make a whole datagram");
    assert_eq!(whole.ip_number, IpNumber::UDP);
    let (src, dst) = ends.expect("fragments");
    let (udp, payload) = UdpHeader::from_slice(&whole.payload).expect("a UDP header");
    assert_eq!(usize::from(udp.length), whole.payload.len(), "UDP length");
    let want = udp.calc_checksum_ipv6_raw(src.octets(), dst.octets(), payload).expect("checksum");
    assert_eq!(udp.checksum, want, "UDP checksum of the reassembled datagram");
    Reassembled { src, dst, hops, sport: udp.source_port, dport: udp.destination_port, payload: payload.to_vec() }
}

/// The IP packets of the frames sent, each after its Ethernet header, and
/// checks they go to `mac`.
fn sent_ips(out: &Output<VecFrame>, mac: MacAddr) -> Vec<Vec<u8>> {
    out.tx
        .iter()
        .map(|(_, f)| {
            assert_eq!(&f.data()[..6], &mac.0, "destination MAC");
            f.data()[14..].to_vec()
        })
        .collect()
}

fn feed(p: &mut Processor<VecFrame>, frames: &[Vec<u8>]) -> Output<VecFrame> {
    let mut out = Output::with_capacity(8);
    for f in frames {
        p.handle(0, VecFrame::new(f), 10, &mut out);
    }
    out
}

#[test]
fn a_real_servers_fragmented_reply_leaves_the_nat_director_from_the_vip_in_three_fragments() {
    let mut p = processor();
    let out = feed(&mut p, &[request(NAT6, 41000)]);
    assert_eq!(out.tx.len(), 1, "the query reaches the real server");
    // The real server answers with 3000 bytes: 3 fragments.
    let answer = data(3000);
    let reply = fragments(RS1_MAC, &udp6((RS6, REAL_PORT), (CLIENT6, 41000), &answer), 0x1234_5678);
    assert_eq!(reply.len(), 3);
    let out = feed(&mut p, &reply[..2]);
    assert!(out.tx.is_empty() && out.drop.is_empty(), "held until the datagram is complete");
    let out = feed(&mut p, &reply[2..]);
    let ips = sent_ips(&out, CLIENT_MAC);
    assert_eq!(ips.len(), 3, "three fragments leave");
    let got = reassemble(&ips.iter().map(Vec::as_slice).collect::<Vec<_>>());
    let want = Reassembled { src: NAT6, dst: CLIENT6, hops: vec![63; 3], sport: DNS, dport: 41000, payload: answer };
    assert_eq!(got, want, "from the VIP's port, every fragment's hop limit less one");
    assert_eq!(p.counters().get(Counter::FragReassembled), 1);
    assert_eq!(p.counters().get(Counter::ReplyPackets), 1, "one datagram");
}

#[test]
fn a_clients_datagram_arriving_last_fragment_first_reaches_the_nat_real_server() {
    let mut p = processor();
    let query = data(3000);
    let mut frames = fragments(CLIENT_MAC, &udp6((CLIENT6, 41001), (NAT6, DNS), &query), 7);
    frames.reverse();
    let out = feed(&mut p, &frames[..2]);
    assert!(out.tx.is_empty() && out.drop.is_empty(), "held: the first fragment is still missing");
    assert_eq!(p.conns6.len(), 0, "nothing is scheduled before the first fragment");
    let out = feed(&mut p, &frames[2..]);
    let ips = sent_ips(&out, RS1_MAC);
    let got = reassemble(&ips.iter().map(Vec::as_slice).collect::<Vec<_>>());
    let want = Reassembled { src: CLIENT6, dst: RS6, hops: vec![63; 3], sport: 41001, dport: REAL_PORT, payload: query };
    assert_eq!(got, want);
    assert_eq!(p.conns6.len(), 1);
}

#[test]
fn a_clients_fragmented_datagram_goes_through_dr_unchanged_but_the_hop_limit() {
    let mut p = processor();
    let query = data(3000);
    // One burst (the pipeline's parse stage leaves fragments to the frame path).
    let mut burst: Vec<VecFrame> =
        fragments(CLIENT_MAC, &udp6((CLIENT6, 41002), (DR6, DNS), &query), 8).iter().map(|f| VecFrame::new(f)).collect();
    let mut out = Output::with_capacity(8);
    p.handle_burst(0, &mut burst, 10, &mut out);
    let ips = sent_ips(&out, RS1_MAC);
    let got = reassemble(&ips.iter().map(Vec::as_slice).collect::<Vec<_>>());
    let want = Reassembled { src: CLIENT6, dst: DR6, hops: vec![63; 3], sport: 41002, dport: DNS, payload: query };
    assert_eq!(got, want);
}

#[test]
fn a_clients_fragmented_datagram_is_tunnelled_one_fragment_per_tunnel_packet() {
    let mut p = processor();
    let query = data(3000);
    let out = feed(&mut p, &fragments(CLIENT_MAC, &udp6((CLIENT6, 41003), (TUN6, DNS), &query), 9));
    let outer = sent_ips(&out, RS1_MAC);
    assert_eq!(outer.len(), 3, "each fragment encapsulated whole");
    let mut inner = Vec::new();
    for ip in &outer {
        let (h, rest) = Ipv6Header::from_slice(ip).expect("an outer IPv6 header");
        assert_eq!((Ipv6Addr::from(h.source), Ipv6Addr::from(h.destination)), (DIR6_IN, RS6), "from our address to the real server");
        assert_eq!(h.next_header, IpNumber::IPV6, "IPv6 in IPv6");
        inner.push(rest);
    }
    let got = reassemble(&inner);
    let want = Reassembled { src: CLIENT6, dst: TUN6, hops: vec![63; 3], sport: 41003, dport: DNS, payload: query };
    assert_eq!(got, want);
}

#[test]
fn nat64_does_not_translate_fragments_either_way() {
    let mut p = processor();
    let before = p.counters().get(Counter::DropFragment);
    let out = feed(&mut p, &fragments(CLIENT_MAC, &udp6((CLIENT6, 41004), (NAT64, DNS), &data(3000)), 10));
    assert!(out.tx.is_empty());
    assert_eq!(out.drop.len(), 3);
    assert_eq!(p.counters().get(Counter::DropFragment) - before, 3, "each fragment counted");

    // The real server's fragmented IPv4 reply to a NAT64 connection.
    let out = feed(&mut p, &[request(NAT64, 41005)]);
    assert_eq!(out.tx.len(), 1, "a whole datagram is translated");
    let sent = SlicedPacket::from_ethernet(out.tx[0].1.data()).expect("ipv4");
    let Some(etherparse::TransportSlice::Udp(u)) = sent.transport else { panic!("udp") };
    let lport = u.source_port();
    let b = PacketBuilder::ipv4(RS1.octets(), LIP4.octets(), 64).udp(REAL_PORT, lport);
    let mut whole = Vec::new();
    b.write(&mut whole, &data(2000)).expect("udp4 packet");
    let upper = &whole[20..];
    let eth = Ethernet2Header { source: RS1_MAC.0, destination: DIR_MAC.0, ether_type: EtherType::IPV4 };
    let pieces: Vec<Vec<u8>> = upper
        .chunks(1480)
        .enumerate()
        .map(|(i, piece)| {
            let mut h = Ipv4Header::new(piece.len() as u16, 64, IpNumber::UDP, RS1.octets(), LIP4.octets()).expect("ipv4 header");
            h.identification = 99;
            h.more_fragments = i == 0;
            h.fragment_offset = IpFragOffset::try_new((i * 1480 / 8) as u16).expect("offset");
            h.header_checksum = h.calc_header_checksum();
            [&eth.to_bytes()[..], &h.to_bytes(), piece].concat()
        })
        .collect();
    let before = p.counters().get(Counter::DropFragment);
    let out = feed(&mut p, &pieces);
    assert!(out.tx.is_empty());
    assert_eq!(p.counters().get(Counter::DropFragment) - before, 2);
}

#[test]
fn held_fragments_follow_their_datagram_to_the_worker_that_owns_the_connection() {
    let snap = Arc::clone(processor().snapshot());
    let mut workers: Vec<Processor<VecFrame>> = (0..2).map(|w| Processor::for_worker(Arc::clone(&snap), 64, w, 2)).collect();
    // Both workers know the neighbours.
    let mut out = Output::with_capacity(8);
    for w in workers.iter_mut() {
        for (ip, mac) in [(CLIENT6, CLIENT_MAC), (RS6, RS1_MAC)] {
            w.handle(0, VecFrame::new(&solicitation(mac, ip, DIR6_OUT)), 0, &mut out);
            w.handle(0, VecFrame::new(&advertisement(mac, ip)), 0, &mut out);
        }
    }
    let mut out0 = Output::with_capacity(8);
    workers[0].handle(0, VecFrame::new(&request(NAT6, 41006)), 10, &mut out0);
    assert_eq!(out0.tx.len(), 1, "worker 0 owns the connection");
    let mut out1 = Output::with_capacity(8);
    for m in out0.messages.drain(..) {
        workers[1].handle_message(m, 10, &mut out1);
    }
    // The NIC hands the reply's fragments (hashed by their addresses) to worker 1.
    let answer = data(3000);
    for f in fragments(RS1_MAC, &udp6((RS6, REAL_PORT), (CLIENT6, 41006), &answer), 11) {
        workers[1].handle(0, VecFrame::new(&f), 10, &mut out1);
    }
    assert!(out1.tx.is_empty());
    assert_eq!(out1.redirect.len(), 3, "every fragment follows the first one to the owner");
    let mut out0 = Output::with_capacity(8);
    for (to, port, f) in out1.redirect.drain(..) {
        assert_eq!(to, 0);
        workers[0].handle_redirected(port, f, 10, &mut out0);
    }
    let ips = sent_ips(&out0, CLIENT_MAC);
    let got = reassemble(&ips.iter().map(Vec::as_slice).collect::<Vec<_>>());
    assert_eq!((got.src, got.sport, got.dport, got.payload), (NAT6, DNS, 41006, answer));
}
