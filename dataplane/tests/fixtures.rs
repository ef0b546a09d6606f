//! Processor-level fixtures (issue 13): an input frame goes through
//! `Processor::handle`, and what comes out is compared byte for byte with a
//! frame built independently of rvs: every input and every expected frame is
//! written with `etherparse` (its own header writers and checksums), never
//! with `rvs_dataplane::wire`. Only the crate's public API is used.
//!
//! The table is one conversation on one worker: later cases run on the
//! connections earlier ones opened. Values rvs chooses itself (the FULLNAT
//! local port and sequence delta, the tunnel's IP identification) are read
//! back from the case's output, checked on their own (port range and worker
//! share, a new identification per tunnel packet), and the expected frame is
//! built with them: a case's `build` runs once for its input, and again for
//! its expectation after the output was read. Every mismatch of every case
//! is reported, with the byte, the field it falls in, and a hex diff.

use std::net::Ipv4Addr;
use std::sync::Arc;

use etherparse::icmpv4::{DestUnreachableHeader, TimeExceededCode};
use etherparse::{
    ArpEthIpv4Packet, ArpOperation, ArpPacket, EtherType, Ethernet2Header, Icmpv4Header, Icmpv4Type, IpDscp, IpNumber, Ipv4Header,
    TcpHeader, TcpOptionElement, UdpHeader,
};
use rvs_dataplane::frame::VecFrame;
use rvs_dataplane::process::{Output, Processor};
use rvs_dataplane::snapshot::{
    ForwardMode, InterfaceAddr, PortInfo, Protocol, RealServer, Route, SchedulerKind, Service, ServiceKey, Snapshot,
};
use rvs_dataplane::stats::Counter;
use rvs_dataplane::wire::MacAddr;

type Mac = [u8; 6];
const DIR0_MAC: Mac = [0x02, 0xd0, 0, 0, 0, 0x01];
const DIR1_MAC: Mac = [0x02, 0xd0, 0, 0, 0, 0x02];
const CLIENT_MAC: Mac = [0x02, 0xc0, 0, 0, 0, 0x02];
const RS1_MAC: Mac = [0x02, 0xaa, 0, 0, 0, 0x11];

const DIR_OUT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const DIR_IN: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const RS1: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 11);
const LIP: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 200);
const DR_VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);
const NAT_VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 101);
const FNAT_VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 102);
const TUN_VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 103);
/// The real servers' network (port 1) has a smaller MTU than the clients' (port 0).
const MTU_IN: u16 = 1400;
const LOCAL_PORTS: (u16, u16) = (61000, 61999);
/// The fixtures run as worker 0 of this many: FULLNAT ports must be in its share.
const WORKERS: usize = 2;
/// The client's initial sequence number on every FULLNAT connection.
const ISN: u32 = 1000;
/// The real server's initial sequence number.
const RS_ISN: u32 = 7000;

/// Two ports (clients on 0, real servers on 1), one TCP service per mode on
/// rs1, a second FULLNAT service without TOA and a UDP TUN service.
fn snapshot() -> Arc<Snapshot> {
    let key = |protocol, vip, port| ServiceKey { protocol, vip, port };
    let one = |vip: Ipv4Addr, port, rport, forward, protocol| {
        Service::new(key(protocol, vip.into(), port), SchedulerKind::Rr, vec![RealServer::new(RS1, rport, 1, forward)])
    };
    let fnat = |port, toa| Service { local_addrs: vec![LIP], toa, ..one(FNAT_VIP, port, 8080, ForwardMode::FullNat, Protocol::Tcp) };
    let mut inner = PortInfo::new("in0", MacAddr(DIR1_MAC));
    inner.mtu = MTU_IN;
    Arc::new(
        Snapshot {
            generation: 1,
            ports: vec![PortInfo::new("out0", MacAddr(DIR0_MAC)), inner],
            addresses: vec![
                InterfaceAddr { port: 0, addr: DIR_OUT, prefix_len: 24 },
                InterfaceAddr { port: 1, addr: DIR_IN, prefix_len: 24 },
            ],
            routes: vec![
                Route { prefix: Ipv4Addr::new(10, 0, 0, 0), prefix_len: 24, via: None, port: 0 },
                Route { prefix: Ipv4Addr::new(10, 1, 0, 0), prefix_len: 24, via: None, port: 1 },
            ],
            services: vec![
                one(DR_VIP, 80, 80, ForwardMode::Dr, Protocol::Tcp),
                one(NAT_VIP, 80, 8080, ForwardMode::Nat, Protocol::Tcp),
                fnat(80, true),
                fnat(81, false),
                one(TUN_VIP, 80, 80, ForwardMode::Tun, Protocol::Tcp),
                one(TUN_VIP, 53, 53, ForwardMode::Tun, Protocol::Udp),
            ],
            local_port_range: LOCAL_PORTS,
            workers: WORKERS,
            ..Default::default()
        }
        .finish(),
    )
}

// ---- frames, written with etherparse only ----

/// An IPv4 header's variable parts.
#[derive(Clone, Copy)]
struct Ip {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ttl: u8,
    ident: u16,
    df: bool,
    tos: u8,
}

/// A host's packet: TTL 64, DF, identification 0x77.
fn ip(src: Ipv4Addr, dst: Ipv4Addr) -> Ip {
    Ip { src, dst, ttl: 64, ident: 0x77, df: true, tos: 0 }
}

impl Ip {
    /// The same header one router hop later.
    fn hop(self) -> Ip {
        Ip { ttl: self.ttl - 1, ..self }
    }
    /// An ICMP error as a host's stack sends it: no DF.
    fn no_df(self) -> Ip {
        Ip { df: false, ..self }
    }
    fn ttl(self, ttl: u8) -> Ip {
        Ip { ttl, ..self }
    }
}

fn ipv4(h: Ip, proto: IpNumber, payload: &[u8]) -> Vec<u8> {
    let mut hdr = Ipv4Header::new(payload.len() as u16, h.ttl, proto, h.src.octets(), h.dst.octets()).expect("payload fits");
    hdr.identification = h.ident;
    hdr.dont_fragment = h.df;
    hdr.dscp = IpDscp::try_new(h.tos >> 2).expect("dscp");
    let mut out = Vec::new();
    hdr.write(&mut out).expect("write"); // computes the header checksum
    out.extend_from_slice(payload);
    out
}

/// A TCP segment: ports, seq, ack, flags, options.
#[derive(Clone)]
struct Tcp {
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: &'static str,
    options: Vec<TcpOptionElement>,
    raw_options: Vec<u8>,
    payload: Vec<u8>,
}

fn tcp(sport: u16, dport: u16, seq: u32, ack: u32, flags: &'static str) -> Tcp {
    Tcp { sport, dport, seq, ack, flags, options: vec![], raw_options: vec![], payload: vec![] }
}

impl Tcp {
    fn opts(self, options: Vec<TcpOptionElement>) -> Tcp {
        Tcp { options, ..self }
    }
    fn raw(self, raw_options: Vec<u8>) -> Tcp {
        Tcp { raw_options, ..self }
    }
    fn data(self, payload: &[u8]) -> Tcp {
        Tcp { payload: payload.to_vec(), ..self }
    }
}

fn tcp_packet(h: Ip, t: &Tcp) -> Vec<u8> {
    let mut th = TcpHeader::new(t.sport, t.dport, t.seq, 64240);
    th.acknowledgment_number = t.ack;
    (th.syn, th.ack, th.psh, th.fin) = (t.flags.contains('S'), t.flags.contains('A'), t.flags.contains('P'), t.flags.contains('F'));
    if t.raw_options.is_empty() {
        th.set_options(&t.options).expect("options fit");
    } else {
        th.set_options_raw(&t.raw_options).expect("options fit");
    }
    th.checksum = th.calc_checksum_ipv4_raw(h.src.octets(), h.dst.octets(), &t.payload).expect("segment fits");
    ipv4(h, IpNumber::TCP, &[&th.to_bytes()[..], &t.payload].concat())
}

fn udp_packet(h: Ip, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut uh = UdpHeader { source_port: sport, destination_port: dport, length: (8 + payload.len()) as u16, checksum: 0 };
    uh.checksum = uh.calc_checksum_ipv4_raw(h.src.octets(), h.dst.octets(), payload).expect("datagram fits");
    ipv4(h, IpNumber::UDP, &[&uh.to_bytes()[..], payload].concat())
}

fn icmp_packet(h: Ip, ty: Icmpv4Type, quote: &[u8]) -> Vec<u8> {
    let hdr = Icmpv4Header::with_checksum(ty, quote);
    ipv4(h, IpNumber::ICMP, &[&hdr.to_bytes()[..], quote].concat())
}

/// What an ICMP error quotes: the IP header and 8 bytes of the packet.
fn quote(packet: Vec<u8>) -> Vec<u8> {
    packet[..28].to_vec()
}

fn frag_needed(mtu: u16) -> Icmpv4Type {
    Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: mtu })
}

fn port_unreachable() -> Icmpv4Type {
    Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Port)
}

fn eth(src: Mac, dst: Mac, ip_packet: Vec<u8>) -> Vec<u8> {
    let hdr = Ethernet2Header { source: src, destination: dst, ether_type: EtherType::IPV4 };
    [&hdr.to_bytes()[..], &ip_packet].concat()
}

fn from_client(ip_packet: Vec<u8>) -> Vec<u8> {
    eth(CLIENT_MAC, DIR0_MAC, ip_packet)
}
fn from_rs1(ip_packet: Vec<u8>) -> Vec<u8> {
    eth(RS1_MAC, DIR1_MAC, ip_packet)
}
/// Sent on port 0 to the client.
fn to_client(ip_packet: Vec<u8>) -> Expected {
    Expected::Frames(vec![(0, eth(DIR0_MAC, CLIENT_MAC, ip_packet))])
}
/// Sent on port 1 to rs1.
fn to_rs1(ip_packet: Vec<u8>) -> Expected {
    Expected::Frames(vec![(1, eth(DIR1_MAC, RS1_MAC, ip_packet))])
}

/// The IPIP packet rvs sends to rs1: outer header from our address on rs1's
/// network, copying the inner TOS, TTL and DF bit (as Linux IPVS does).
fn tunnelled(inner: Ip, ident: u16, inner_packet: Vec<u8>) -> Vec<u8> {
    ipv4(Ip { src: DIR_IN, dst: RS1, ident, ..inner }, IpNumber::IPV4, &inner_packet)
}

/// An error rvs originates: TTL 64, identification 0, no DF, TOS 0.
///
/// Differs from Linux (kept, as today's behaviour): `icmp_send` sets TOS
/// 0xc0 (precedence "internetwork control"), picks an identification with
/// `ip_select_ident` and quotes as much of the packet as fits in 576 bytes;
/// rvs quotes the header and 8 bytes (RFC 792, see [`quote`]).
fn originated(src: Ipv4Addr, dst: Ipv4Addr) -> Ip {
    Ip { src, dst, ttl: 64, ident: 0, df: false, tos: 0 }
}

// ---- the table ----

/// What a case must produce.
enum Expected {
    /// Exactly these frames, on these ports.
    Frames(Vec<(u16, Vec<u8>)>),
    /// `packet` (an IPv4 packet) in fragments of at most `mtu` bytes, sent on
    /// port 1 to rs1.
    Fragments { packet: Vec<u8>, mtu: usize },
    /// Nothing sent; the frame dropped under this counter.
    Drop(Counter),
}

struct Case {
    input: Vec<u8>,
    expected: Expected,
    /// Counters that must move by exactly this much.
    bumps: Vec<(Counter, u64)>,
}

/// What to read back from a case's output before building its expectation.
#[derive(Clone, Copy, PartialEq)]
enum Learn {
    Nothing,
    /// The local port and sequence delta of FULLNAT connection `slot`, from its SYN.
    Fnat(usize),
    /// The outer IP identification of a tunnel packet.
    TunIdent,
}

#[derive(Default)]
struct Learned {
    /// (local port, seq delta) per FULLNAT connection.
    fnat: [(u16, u32); 2],
    tun_ident: u16,
    tun_idents: Vec<u16>,
}

type Build = fn(&Learned) -> Case;

fn case(input: Vec<u8>, expected: Expected) -> Case {
    Case { input, expected, bumps: vec![] }
}

impl Case {
    fn bump(mut self, counter: Counter, by: u64) -> Case {
        self.bumps.push((counter, by));
        self
    }
}

const MSS: TcpOptionElement = TcpOptionElement::MaximumSegmentSize(1460);
const SACK_OK: TcpOptionElement = TcpOptionElement::SelectiveAcknowledgementPermitted;
const NOP: TcpOptionElement = TcpOptionElement::Noop;
const WSCALE: TcpOptionElement = TcpOptionElement::WindowScale(7);

/// A Linux client's SYN options, and what FULLNAT leaves of them (the
/// timestamps overwritten with NOPs, the header keeps its length).
fn syn_options() -> Vec<TcpOptionElement> {
    vec![MSS, SACK_OK, TcpOptionElement::Timestamp(0x1111, 0), NOP, WSCALE]
}
fn syn_options_stripped() -> Vec<TcpOptionElement> {
    [vec![MSS, SACK_OK], vec![NOP; 10], vec![NOP, WSCALE]].concat()
}

fn toa(client_port: u16, client: Ipv4Addr) -> Vec<u8> {
    let p = client_port.to_be_bytes();
    let a = client.octets();
    vec![254, 8, p[0], p[1], a[0], a[1], a[2], a[3]]
}

const GET: &[u8] = b"GET / HTTP/1.0\r\n\r\n";
const OK: &[u8] = b"HTTP/1.0 200 OK\r\n";

fn table() -> Vec<(&'static str, Learn, Build)> {
    use Learn::*;
    vec![
        // ---- DR ----
        ("DR: a SYN goes to rs1's MAC on port 1, only the TTL changes", Nothing, |_| {
            let t = tcp(40100, 80, ISN, 0, "S");
            case(from_client(tcp_packet(ip(CLIENT, DR_VIP), &t)), to_rs1(tcp_packet(ip(CLIENT, DR_VIP).hop(), &t)))
        }),
        ("DR: an error from the client quoting rs1's direct reply is forwarded, only the TTL changes", Nothing, |_| {
            let q = quote(tcp_packet(ip(DR_VIP, CLIENT).hop(), &tcp(80, 40100, RS_ISN, ISN + 1, "SA")));
            let h = ip(CLIENT, DR_VIP).no_df();
            case(from_client(icmp_packet(h, port_unreachable(), &q)), to_rs1(icmp_packet(h.hop(), port_unreachable(), &q)))
                .bump(Counter::IcmpErrorsForwarded, 1)
        }),
        ("DR: an error from rs1 about the client's packet is not the director's: dropped", Nothing, |_| {
            let q = quote(tcp_packet(ip(CLIENT, DR_VIP).hop(), &tcp(40100, 80, ISN + 1, RS_ISN + 1, "A")));
            case(from_rs1(icmp_packet(ip(RS1, CLIENT).no_df(), port_unreachable(), &q)), Expected::Drop(Counter::DropNoConnection))
        }),
        // ---- NAT ----
        ("NAT: a SYN is sent to rs1:8080", Nothing, |_| {
            let t = tcp(40200, 80, ISN, 0, "S").opts(syn_options());
            let out = Tcp { dport: 8080, ..t.clone() };
            case(from_client(tcp_packet(ip(CLIENT, NAT_VIP), &t)), to_rs1(tcp_packet(ip(CLIENT, RS1).hop(), &out)))
        }),
        ("NAT: the SYN-ACK leaves as VIP:80", Nothing, |_| {
            let t = tcp(8080, 40200, RS_ISN, ISN + 1, "SA").opts(vec![MSS, SACK_OK, NOP, WSCALE]);
            let out = Tcp { sport: 80, ..t.clone() };
            case(from_rs1(tcp_packet(ip(RS1, CLIENT), &t)), to_client(tcp_packet(ip(NAT_VIP, CLIENT).hop(), &out)))
        }),
        ("NAT: a DF packet above port 1's MTU is answered with frag-needed (the MTU) from the VIP", Nothing, |_| {
            let h = ip(CLIENT, NAT_VIP);
            let t = tcp(40200, 80, ISN + 1, RS_ISN + 1, "PA").data(&[4; MTU_IN as usize - 39]);
            let answer = icmp_packet(originated(NAT_VIP, CLIENT), frag_needed(MTU_IN), &quote(tcp_packet(h.hop(), &t)));
            case(from_client(tcp_packet(h, &t)), to_client(answer)).bump(Counter::DropTooBig, 1).bump(Counter::IcmpErrorsSent, 1)
        }),
        ("NAT: frag-needed from rs1 reaches the client from the VIP, the quoted destination is VIP:80", Nothing, |_| {
            let seg = tcp(40200, 8080, ISN + 1, RS_ISN + 1, "PA").data(&[7; 1400]);
            let h = ip(RS1, CLIENT).no_df();
            let input = icmp_packet(h, frag_needed(1300), &quote(tcp_packet(ip(CLIENT, RS1).hop(), &seg)));
            let q = quote(tcp_packet(ip(CLIENT, NAT_VIP).hop(), &Tcp { dport: 80, ..seg }));
            case(from_rs1(input), to_client(icmp_packet(Ip { src: NAT_VIP, ..h.hop() }, frag_needed(1300), &q)))
                .bump(Counter::IcmpErrorsForwarded, 1)
        }),
        ("NAT: an error from the client quoting a reply goes to rs1, the quoted source is rs1:8080", Nothing, |_| {
            let seg = tcp(80, 40200, RS_ISN + 1, ISN + 1, "PA");
            let h = ip(CLIENT, NAT_VIP).no_df();
            let input = icmp_packet(h, port_unreachable(), &quote(tcp_packet(ip(NAT_VIP, CLIENT).hop(), &seg)));
            let q = quote(tcp_packet(ip(RS1, CLIENT).hop(), &Tcp { sport: 8080, ..seg }));
            case(from_client(input), to_rs1(icmp_packet(Ip { dst: RS1, ..h.hop() }, port_unreachable(), &q)))
        }),
        ("NAT: an error arriving with TTL 1 is dropped, never answered (RFC 1812)", Nothing, |_| {
            let q = quote(tcp_packet(ip(NAT_VIP, CLIENT).hop(), &tcp(80, 40200, RS_ISN + 1, ISN + 1, "A")));
            case(from_client(icmp_packet(ip(CLIENT, NAT_VIP).ttl(1), port_unreachable(), &q)), Expected::Drop(Counter::DropTtlExceeded))
                .bump(Counter::IcmpErrorsSent, 0)
        }),
        ("TTL 1: a SYN to the NAT VIP is answered with time exceeded from the VIP", Nothing, |_| {
            let packet = tcp_packet(ip(CLIENT, NAT_VIP).ttl(1), &tcp(40201, 80, ISN, 0, "S"));
            let ty = Icmpv4Type::TimeExceeded(TimeExceededCode::TtlExceededInTransit);
            let answer = icmp_packet(originated(NAT_VIP, CLIENT), ty, &quote(packet.clone()));
            case(from_client(packet), to_client(answer)).bump(Counter::DropTtlExceeded, 1).bump(Counter::IcmpErrorsSent, 1)
        }),
        ("TTL 1: a NAT reply is answered with time exceeded from our address on rs1's network", Nothing, |_| {
            let packet = tcp_packet(ip(RS1, CLIENT).ttl(1), &tcp(8080, 40200, RS_ISN + 1, ISN + 1, "A"));
            let ty = Icmpv4Type::TimeExceeded(TimeExceededCode::TtlExceededInTransit);
            let answer = icmp_packet(originated(DIR_IN, RS1), ty, &quote(packet.clone()));
            case(from_rs1(packet), to_rs1(answer)).bump(Counter::DropTtlExceeded, 1)
        }),
        // ---- FULLNAT ----
        ("FULLNAT: a SYN leaves from LIP:lport with seq + delta, timestamps become NOPs", Fnat(0), |l| {
            let (lport, delta) = l.fnat[0];
            let t = tcp(40300, 80, ISN, 0, "S").opts(syn_options());
            let out = Tcp { sport: lport, dport: 8080, seq: ISN.wrapping_add(delta), ..t.clone() }.opts(syn_options_stripped());
            case(from_client(tcp_packet(ip(CLIENT, FNAT_VIP), &t)), to_rs1(tcp_packet(ip(LIP, RS1).hop(), &out)))
                .bump(Counter::ConnCreated, 1)
        }),
        ("FULLNAT: the SYN-ACK leaves as VIP:80 → client with ack - delta", Nothing, |l| {
            let (lport, delta) = l.fnat[0];
            let t = tcp(8080, lport, RS_ISN, (ISN + 1).wrapping_add(delta), "SA").opts(vec![MSS, SACK_OK, NOP, WSCALE]);
            let out = Tcp { sport: 80, dport: 40300, ack: ISN + 1, ..t.clone() };
            case(from_rs1(tcp_packet(ip(RS1, LIP), &t)), to_client(tcp_packet(ip(FNAT_VIP, CLIENT).hop(), &out)))
        }),
        ("FULLNAT + toa: the first ACK carries TOA (client port and address)", Nothing, |l| {
            let (lport, delta) = l.fnat[0];
            let t = tcp(40300, 80, ISN + 1, RS_ISN + 1, "A");
            let out = Tcp { sport: lport, dport: 8080, seq: (ISN + 1).wrapping_add(delta), ..t.clone() }.raw(toa(40300, CLIENT));
            case(from_client(tcp_packet(ip(CLIENT, FNAT_VIP), &t)), to_rs1(tcp_packet(ip(LIP, RS1).hop(), &out)))
                .bump(Counter::ToaInserted, 1)
        }),
        ("FULLNAT + toa: data after the handshake has seq + delta and no TOA", Nothing, |l| {
            let (lport, delta) = l.fnat[0];
            let t = tcp(40300, 80, ISN + 1, RS_ISN + 1, "PA").data(GET);
            let out = Tcp { sport: lport, dport: 8080, seq: (ISN + 1).wrapping_add(delta), ..t.clone() };
            case(from_client(tcp_packet(ip(CLIENT, FNAT_VIP), &t)), to_rs1(tcp_packet(ip(LIP, RS1).hop(), &out)))
                .bump(Counter::ToaInserted, 0)
        }),
        ("FULLNAT: a reply with SACK has its ack and SACK edges - delta", Nothing, |l| {
            let (lport, delta) = l.fnat[0];
            let acked = ISN + 1 + GET.len() as u32;
            let sack = |base: u32| {
                let edges = (base.wrapping_add(delta).wrapping_add(100), base.wrapping_add(delta).wrapping_add(200));
                vec![NOP, NOP, TcpOptionElement::SelectiveAcknowledgement(edges, [None; 3])]
            };
            let t = tcp(8080, lport, RS_ISN + 1, acked.wrapping_add(delta), "PA").opts(sack(acked)).data(OK);
            let out = Tcp { sport: 80, dport: 40300, ack: acked, ..t.clone() }.opts(sack(acked.wrapping_sub(delta)));
            case(from_rs1(tcp_packet(ip(RS1, LIP), &t)), to_client(tcp_packet(ip(FNAT_VIP, CLIENT).hop(), &out)))
        }),
        ("FULLNAT: frag-needed from rs1 reaches the client as VIP → client, quoting client → VIP with seq - delta", Nothing, |l| {
            let (lport, delta) = l.fnat[0];
            let seq = ISN + 1 + GET.len() as u32;
            let seg = tcp(lport, 8080, seq.wrapping_add(delta), RS_ISN + 1, "PA").data(&[7; 1400]);
            let h = ip(RS1, LIP).no_df();
            let input = icmp_packet(h, frag_needed(1300), &quote(tcp_packet(ip(LIP, RS1).hop(), &seg)));
            let q = quote(tcp_packet(ip(CLIENT, FNAT_VIP).hop(), &Tcp { sport: 40300, dport: 80, seq, ..seg }));
            let out = Ip { src: FNAT_VIP, dst: CLIENT, ..h.hop() };
            case(from_rs1(input), to_client(icmp_packet(out, frag_needed(1300), &q))).bump(Counter::IcmpErrorsForwarded, 1)
        }),
        ("FULLNAT: an error from the client quoting a reply goes LIP → rs1, quoting rs1:8080 → LIP:lport", Nothing, |l| {
            let (lport, _) = l.fnat[0];
            let seg = tcp(80, 40300, RS_ISN + 1, ISN + 1, "PA");
            let h = ip(CLIENT, FNAT_VIP).no_df();
            let input = icmp_packet(h, port_unreachable(), &quote(tcp_packet(ip(FNAT_VIP, CLIENT).hop(), &seg)));
            // The quoted ack stays in the client's sequence space: only 8 bytes are quoted.
            let q = quote(tcp_packet(ip(RS1, LIP).hop(), &Tcp { sport: 8080, dport: lport, ..seg }));
            let out = Ip { src: LIP, dst: RS1, ..h.hop() };
            case(from_client(input), to_rs1(icmp_packet(out, port_unreachable(), &q)))
        }),
        ("FULLNAT without toa: a SYN gets its own local port", Fnat(1), |l| {
            let (lport, delta) = l.fnat[1];
            let t = tcp(40301, 81, ISN, 0, "S");
            let out = Tcp { sport: lport, dport: 8080, seq: ISN.wrapping_add(delta), ..t.clone() };
            case(from_client(tcp_packet(ip(CLIENT, FNAT_VIP), &t)), to_rs1(tcp_packet(ip(LIP, RS1).hop(), &out)))
        }),
        ("FULLNAT without toa: the SYN-ACK leaves as VIP:81", Nothing, |l| {
            let (lport, delta) = l.fnat[1];
            let t = tcp(8080, lport, RS_ISN, (ISN + 1).wrapping_add(delta), "SA");
            let out = Tcp { sport: 81, dport: 40301, ack: ISN + 1, ..t.clone() };
            case(from_rs1(tcp_packet(ip(RS1, LIP), &t)), to_client(tcp_packet(ip(FNAT_VIP, CLIENT).hop(), &out)))
        }),
        ("FULLNAT without toa: the first ACK has no TOA", Nothing, |l| {
            let (lport, delta) = l.fnat[1];
            let t = tcp(40301, 81, ISN + 1, RS_ISN + 1, "A");
            let out = Tcp { sport: lport, dport: 8080, seq: (ISN + 1).wrapping_add(delta), ..t.clone() };
            case(from_client(tcp_packet(ip(CLIENT, FNAT_VIP), &t)), to_rs1(tcp_packet(ip(LIP, RS1).hop(), &out)))
                .bump(Counter::ToaInserted, 0)
        }),
        // ---- TUN ----
        ("TUN: a SYN is wrapped in IPIP from DIR_IN to rs1, TOS, TTL and DF copied", TunIdent, |l| {
            let h = Ip { tos: 0x28, ..ip(CLIENT, TUN_VIP) };
            let t = tcp(40400, 80, ISN, 0, "S").opts(syn_options());
            case(from_client(tcp_packet(h, &t)), to_rs1(tunnelled(h.hop(), l.tun_ident, tcp_packet(h.hop(), &t))))
        }),
        ("TUN: a packet without DF gets an outer header without DF", TunIdent, |l| {
            let h = ip(CLIENT, TUN_VIP).no_df();
            let t = tcp(40400, 80, ISN + 1, RS_ISN + 1, "A");
            case(from_client(tcp_packet(h, &t)), to_rs1(tunnelled(h.hop(), l.tun_ident, tcp_packet(h.hop(), &t))))
        }),
        ("TUN: a DF packet of exactly MTU - 20 is tunnelled whole", TunIdent, |l| {
            let h = ip(CLIENT, TUN_VIP);
            let t = tcp(40400, 80, ISN + 1, RS_ISN + 1, "PA").data(&[1; MTU_IN as usize - 60]);
            case(from_client(tcp_packet(h, &t)), to_rs1(tunnelled(h.hop(), l.tun_ident, tcp_packet(h.hop(), &t))))
                .bump(Counter::TunFragments, 0)
        }),
        ("TUN: a DF packet above MTU - 20 is answered with frag-needed (MTU - 20) from the VIP", Nothing, |_| {
            let h = ip(CLIENT, TUN_VIP);
            let t = tcp(40400, 80, ISN + 1, RS_ISN + 1, "PA").data(&[2; MTU_IN as usize - 59]);
            // The quote is the packet after this hop's TTL decrement (as IPVS: decrement, then the MTU check).
            let q = quote(tcp_packet(h.hop(), &t));
            let answer = icmp_packet(originated(TUN_VIP, CLIENT), frag_needed(MTU_IN - 20), &q);
            case(from_client(tcp_packet(h, &t)), to_client(answer)).bump(Counter::DropTooBig, 1).bump(Counter::IcmpErrorsSent, 1)
        }),
        ("TUN: a UDP datagram without DF above MTU - 20 is tunnelled in (three) outer fragments", TunIdent, |l| {
            let h = ip(CLIENT, TUN_VIP).no_df();
            let inner = |h: Ip| udp_packet(h, 5353, 53, &[3; 2952]);
            let packet = tunnelled(h.hop(), l.tun_ident, inner(h.hop()));
            case(from_client(inner(h)), Expected::Fragments { packet, mtu: usize::from(MTU_IN) }).bump(Counter::TunFragments, 2)
        }),
        ("TUN: an error from the client quoting rs1's direct reply is tunnelled, only the TTL changes", TunIdent, |l| {
            let q = quote(tcp_packet(ip(TUN_VIP, CLIENT).hop(), &tcp(80, 40400, RS_ISN + 1, ISN + 1, "A")));
            let h = ip(CLIENT, TUN_VIP).no_df();
            let inner = |h: Ip| icmp_packet(h, port_unreachable(), &q);
            case(from_client(inner(h)), to_rs1(tunnelled(h.hop(), l.tun_ident, inner(h.hop())))).bump(Counter::IcmpErrorsForwarded, 1)
        }),
    ]
}

// ---- the runner ----

/// A processor for worker 0 of [`WORKERS`] that knows the client's and rs1's MACs.
fn warmed() -> Processor<VecFrame> {
    let mut p = Processor::for_worker(snapshot(), 1024, 0, WORKERS);
    let mut out = Output::with_capacity(8);
    for (port, (mac, addr), ours) in [(0, (CLIENT_MAC, CLIENT), DIR_OUT), (1, (RS1_MAC, RS1), DIR_IN)] {
        let dir_mac = if port == 0 { DIR0_MAC } else { DIR1_MAC };
        let arp = ArpPacket::from(ArpEthIpv4Packet {
            operation: ArpOperation::REPLY,
            sender_mac: mac,
            sender_ipv4: addr.octets(),
            target_mac: dir_mac,
            target_ipv4: ours.octets(),
        });
        let hdr = Ethernet2Header { source: mac, destination: dir_mac, ether_type: EtherType::ARP };
        let frame = [&hdr.to_bytes()[..], &arp.to_bytes()[..]].concat();
        p.handle(port, VecFrame::new(&frame), 0, &mut out);
    }
    assert!(out.tx.is_empty(), "ARP replies are not answered");
    assert_eq!(p.counters().get(Counter::ArpRepliesIn), 2);
    p
}

fn sent(out: &Output<VecFrame>) -> Vec<(u16, Vec<u8>)> {
    out.tx.iter().map(|(port, f)| (*port, f.to_vec())).collect()
}

/// The IPv4 header at `at` of the first sent frame.
fn first_ip(out: &[(u16, Vec<u8>)], at: usize) -> Option<Ipv4Header> {
    out.first().and_then(|(_, f)| Ipv4Header::from_slice(f.get(at..)?).ok()).map(|(h, _)| h)
}

/// Reads what rvs chose from the output; failures are the choices' own checks.
fn learn(what: Learn, out: &[(u16, Vec<u8>)], l: &mut Learned) -> Vec<String> {
    let mut bad = vec![];
    match what {
        Learn::Nothing => {}
        Learn::Fnat(slot) => {
            let parsed = first_ip(out, 14).zip(out.first().and_then(|(_, f)| TcpHeader::from_slice(f.get(34..)?).ok()));
            let Some((iph, (th, _))) = parsed else { return vec!["no TCP/IPv4 frame to read the local port from".into()] };
            let lport = th.source_port;
            l.fnat[slot] = (lport, th.sequence_number.wrapping_sub(ISN));
            if iph.source != LIP.octets() {
                bad.push(format!("local address {:?} is not the configured {LIP}", iph.source));
            }
            if !(LOCAL_PORTS.0..=LOCAL_PORTS.1).contains(&lport) {
                bad.push(format!("local port {lport} outside the configured range {LOCAL_PORTS:?}"));
            }
            if usize::from(lport) % WORKERS != 0 {
                bad.push(format!("local port {lport} is not in worker 0's share (port % {WORKERS} == 0)"));
            }
            if l.fnat.iter().enumerate().any(|(i, &(p, _))| i != slot && p == lport) {
                bad.push(format!("local port {lport} handed out twice"));
            }
        }
        Learn::TunIdent => {
            let Some(iph) = first_ip(out, 14) else { return vec!["no IPv4 frame to read the tunnel identification from".into()] };
            if l.tun_idents.contains(&iph.identification) {
                bad.push(format!("tunnel identification {} reused", iph.identification));
            }
            l.tun_ident = iph.identification;
            l.tun_idents.push(iph.identification);
        }
    }
    bad
}

/// The name of the field byte `at` of an Ethernet + IPv4 frame falls in.
fn field(frame: &[u8], at: usize) -> String {
    match at {
        0..=5 => "eth.dst".into(),
        6..=11 => "eth.src".into(),
        12..=13 => "eth.type".into(),
        _ => ip_field(&frame[14..], at - 14, "ip"),
    }
}

fn ip_field(p: &[u8], at: usize, name: &str) -> String {
    let ihl = p.first().map_or(20, |b| usize::from(b & 0xf) * 4).max(20);
    if at < ihl {
        let f = match at {
            0 => "version/ihl",
            1 => "tos",
            2 | 3 => "total_len",
            4 | 5 => "ident",
            6 | 7 => "flags/frag_offset",
            8 => "ttl",
            9 => "protocol",
            10 | 11 => "checksum",
            12..=15 => "src",
            16..=19 => "dst",
            _ => "options",
        };
        return format!("{name}.{f}");
    }
    let (l4, at) = (p.get(ihl..).unwrap_or(&[]), at - ihl);
    let fragment = p.get(6..8).is_some_and(|b| u16::from_be_bytes([b[0], b[1]]) & 0x1fff != 0);
    let f = match (p.get(9).copied().filter(|_| !fragment), at) {
        (Some(4), _) => return ip_field(l4, at, &format!("{name}.inner")),
        (Some(1), 8..) => return ip_field(l4.get(8..).unwrap_or(&[]), at - 8, &format!("{name}.icmp.quoted")),
        (Some(1), _) => {
            ["icmp.type", "icmp.code", "icmp.checksum", "icmp.checksum", "icmp.rest", "icmp.rest", "icmp.rest", "icmp.rest"][at]
        }
        (Some(6), 0 | 1) => "tcp.sport",
        (Some(6), 2 | 3) => "tcp.dport",
        (Some(6), 4..=7) => "tcp.seq",
        (Some(6), 8..=11) => "tcp.ack",
        (Some(6), 12) => "tcp.data_offset",
        (Some(6), 13) => "tcp.flags",
        (Some(6), 14 | 15) => "tcp.window",
        (Some(6), 16 | 17) => "tcp.checksum",
        (Some(6), 18 | 19) => "tcp.urgent",
        (Some(6), _) if at < l4.get(12).map_or(20, |b| usize::from(b >> 4) * 4) => "tcp.options",
        (Some(17), 0..=7) => ["udp.sport", "udp.sport", "udp.dport", "udp.dport", "udp.len", "udp.len", "udp.checksum", "udp.checksum"][at],
        _ => "payload",
    };
    format!("{name}.{f}")
}

/// A readable account of how `got` differs from `want`.
fn diff(got: &[u8], want: &[u8]) -> String {
    let mut s = format!("length got {} want {}\n", got.len(), want.len());
    let differing: Vec<usize> = (0..got.len().max(want.len())).filter(|&i| got.get(i) != want.get(i)).collect();
    for &i in differing.iter().take(12) {
        let show = |b: Option<&u8>| b.map_or("--".to_string(), |b| format!("{b:02x}"));
        s += &format!("  byte {i} [{}]: got {} want {}\n", field(want, i), show(got.get(i)), show(want.get(i)));
    }
    if differing.len() > 12 {
        s += &format!("  … {} differing bytes in all\n", differing.len());
    }
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(" ");
    for line in 0..got.len().max(want.len()).div_ceil(16) {
        let r = |b: &[u8]| b.get(line * 16..((line + 1) * 16).min(b.len())).map(hex).unwrap_or_default();
        let (g, w) = (r(got), r(want));
        if g != w {
            s += &format!("  {:04x} got  {g}\n  {:04x} want {w}\n", line * 16, line * 16);
        }
    }
    s
}

/// Checks the fragments of an IPv4 packet sent to rs1 and reassembles them.
fn check_fragments(got: &[(u16, Vec<u8>)], packet: &[u8], mtu: usize) -> Vec<String> {
    let mut bad = vec![];
    let Ok((want, payload)) = Ipv4Header::from_slice(packet) else { return vec!["expected packet does not parse".into()] };
    if got.len() < 2 {
        bad.push(format!("{} frame(s) sent, expected at least 2 fragments", got.len()));
    }
    let mut joined = Vec::new();
    for (i, (port, f)) in got.iter().enumerate() {
        let last = i + 1 == got.len();
        let l2 = Ethernet2Header { source: DIR1_MAC, destination: RS1_MAC, ether_type: EtherType::IPV4 }.to_bytes();
        if *port != 1 || f.get(..14) != Some(&l2[..]) {
            bad.push(format!("fragment {i}: sent on port {port} with Ethernet header {:02x?}, want port 1 DIR1 → rs1", f.get(..14)));
        }
        let Ok((h, data)) = Ipv4Header::from_slice(f.get(14..).unwrap_or(&[])) else {
            bad.push(format!("fragment {i} does not parse"));
            continue;
        };
        let data = data.get(..usize::from(h.total_len).saturating_sub(h.header_len())).unwrap_or(data);
        if h.header_checksum != h.calc_header_checksum() {
            bad.push(format!("fragment {i}: header checksum {:04x}, want {:04x}", h.header_checksum, h.calc_header_checksum()));
        }
        if usize::from(h.total_len) > mtu {
            bad.push(format!("fragment {i}: {} bytes above the MTU {mtu}", h.total_len));
        }
        let same = |a: &Ipv4Header, b: &Ipv4Header| {
            (a.dscp, a.ecn, a.identification, a.dont_fragment, a.time_to_live, a.protocol, a.source, a.destination)
                == (b.dscp, b.ecn, b.identification, b.dont_fragment, b.time_to_live, b.protocol, b.source, b.destination)
        };
        if !same(&h, &want) {
            bad.push(format!("fragment {i}: header {h:?} differs from the tunnel packet's {want:?}"));
        }
        if usize::from(h.fragment_offset.byte_offset()) != joined.len() || h.more_fragments == last || (!last && data.len() % 8 != 0) {
            let (off, mf) = (h.fragment_offset.byte_offset(), h.more_fragments);
            bad.push(format!("fragment {i}: offset {off} MF {mf} with {} bytes, after {} bytes", data.len(), joined.len()));
        }
        joined.extend_from_slice(data);
    }
    if joined != payload {
        bad.push(format!("reassembled payload differs from the tunnel packet's:\n{}", diff(&joined, payload)));
    }
    bad
}

#[test]
fn in_packet_out_packet_fixtures() {
    let mut p = warmed();
    let mut learned = Learned::default();
    let mut failures = Vec::new();
    let table = table();
    let cases = table.len();
    for (i, (name, what, build)) in table.into_iter().enumerate() {
        let input = build(&learned).input;
        let before = p.counters().clone();
        let mut out = Output::with_capacity(8);
        p.handle(if input[..6] == DIR0_MAC { 0 } else { 1 }, VecFrame::new(&input), 1000 + i as u64, &mut out);
        let got = sent(&out);
        let mut bad = learn(what, &got, &mut learned);
        let case = build(&learned);
        match &case.expected {
            Expected::Frames(want) => {
                if got.len() != want.len() {
                    bad.push(format!("{} frame(s) sent, want {}", got.len(), want.len()));
                }
                for ((gp, g), (wp, w)) in got.iter().zip(want) {
                    if gp != wp {
                        bad.push(format!("sent on port {gp}, want port {wp}"));
                    }
                    if g != w {
                        bad.push(format!("frame differs:\n{}", diff(g, w)));
                    }
                }
                if !out.drop.is_empty() {
                    bad.push(format!("{} frame(s) dropped as well", out.drop.len()));
                }
            }
            Expected::Fragments { packet, mtu } => bad.extend(check_fragments(&got, packet, *mtu)),
            Expected::Drop(counter) => {
                if !got.is_empty() || out.drop.len() != 1 {
                    bad.push(format!("{} frame(s) sent and {} dropped, want one drop", got.len(), out.drop.len()));
                }
                if p.counters().get(*counter) != before.get(*counter) + 1 {
                    bad.push(format!("counter {} did not count the drop", counter.name()));
                }
            }
        }
        for (counter, by) in &case.bumps {
            let moved = p.counters().get(*counter) - before.get(*counter);
            if moved != *by {
                bad.push(format!("counter {} moved by {moved}, want {by}", counter.name()));
            }
        }
        if !out.redirect.is_empty() || !out.kernel.is_empty() {
            bad.push("frame redirected to another worker or sent to the kernel".into());
        }
        for b in bad {
            failures.push(format!("case {i} «{name}»: {b}"));
        }
    }
    assert!(failures.is_empty(), "{} mismatch(es) in {cases} cases:\n{}", failures.len(), failures.join("\n"));
}
