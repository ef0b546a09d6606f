//! The SYN proxy end to end through one worker: client ↔ director ↔ real
//! server, every frame built and read by etherparse (checksums included).

use super::*;
use crate::snapshot::SynProxy;
use crate::synproxy::Secret;
use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TcpOptionElement, TransportSlice};

const FNAT_VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 102);
const NOW: u64 = 1_000;

/// The fixture's snapshot with the proxy on for the NAT service, a FULLNAT
/// service (TOA on) and the DR service (which is never proxied).
fn proxy_snapshot(window_scale: u8) -> Arc<Snapshot> {
    let mut s = (*snapshot(2, nat_reals())).clone();
    for svc in &mut s.services {
        svc.syn_proxy = SynProxy::On;
    }
    let mut fnat = Service::new(
        ServiceKey { protocol: Protocol::Tcp, vip: FNAT_VIP.into(), port: 80 },
        SchedulerKind::Rr,
        vec![real(RS1, 8080, ForwardMode::FullNat)],
    );
    fnat.local_addrs = vec![DIR_IN];
    fnat.toa = true;
    fnat.syn_proxy = SynProxy::On;
    s.services.push(fnat);
    s.syn_flood.proxy_window_scale = window_scale;
    Arc::new(s.finish())
}

fn proxy(window_scale: u8) -> Processor<VecFrame> {
    let mut p = warmed_processor();
    p.adopt(proxy_snapshot(window_scale));
    p.set_syn_cookie_secret(Secret::new(*b"rvs synproxy key"));
    p
}

/// A TCP segment's fields as etherparse reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Seg<A = Ipv4Addr> {
    pub(super) src: (A, u16),
    pub(super) dst: (A, u16),
    pub(super) seq: u32,
    pub(super) ack: u32,
    pub(super) syn: bool,
    pub(super) ack_flag: bool,
    pub(super) rst: bool,
    pub(super) window: u16,
    pub(super) options: Vec<TcpOptionElement>,
    pub(super) options_raw: Vec<u8>,
    pub(super) payload: Vec<u8>,
}

/// The segment of TCP header `h` and `payload` from `src` to `dst`.
pub(super) fn seg_of<A>(h: &etherparse::TcpHeader, payload: &[u8], src: A, dst: A) -> Seg<A> {
    Seg {
        src: (src, h.source_port),
        dst: (dst, h.destination_port),
        seq: h.sequence_number,
        ack: h.acknowledgment_number,
        syn: h.syn,
        ack_flag: h.ack,
        rst: h.rst,
        window: h.window_size,
        options: h.options_iterator().map_while(Result::ok).collect(),
        options_raw: h.options.as_slice().to_vec(),
        payload: payload.to_vec(),
    }
}

/// Parses a frame sent by the director, checking both checksums and the MACs.
fn parse(frame: &[u8], dst_mac: MacAddr) -> Seg {
    let p = SlicedPacket::from_ethernet(frame).expect("ethernet");
    assert_eq!(&frame[..6], &dst_mac.0, "destination MAC");
    assert_eq!(&frame[6..12], &DIR_MAC.0, "source MAC");
    let Some(NetSlice::Ipv4(v4)) = &p.net else { panic!("not ipv4") };
    let Some(TransportSlice::Tcp(t)) = &p.transport else { panic!("not tcp") };
    let ip = v4.header().to_header();
    assert_eq!(ip.header_checksum, ip.calc_header_checksum(), "ip checksum");
    let h = t.to_header();
    assert_eq!(h.calc_checksum_ipv4(&ip, t.payload()).expect("sum"), h.checksum, "tcp checksum");
    seg_of(&h, t.payload(), Ipv4Addr::from(ip.source), Ipv4Addr::from(ip.destination))
}

/// What a segment to build carries.
pub(super) struct Tcp<'a> {
    pub(super) seq: u32,
    pub(super) ack: Option<u32>,
    pub(super) syn: bool,
    pub(super) rst: bool,
    pub(super) window: u16,
    pub(super) options: &'a [TcpOptionElement],
    pub(super) payload: &'a [u8],
}

impl Default for Tcp<'_> {
    fn default() -> Self {
        Tcp { seq: 0, ack: None, syn: false, rst: false, window: 502, options: &[], payload: b"" }
    }
}

/// A frame from `from` (MAC, address, port) to the director for `to`.
fn frame(mac: MacAddr, from: (Ipv4Addr, u16), to: (Ipv4Addr, u16), t: &Tcp<'_>) -> Vec<u8> {
    tcp_frame(PacketBuilder::ethernet2(mac.0, DIR_MAC.0).ipv4(from.0.octets(), to.0.octets(), 61), (from.1, to.1), t)
}

/// The segment `t` from port `ports.0` to `ports.1` behind the headers `ip` (either family).
pub(super) fn tcp_frame(ip: etherparse::PacketBuilderStep<etherparse::IpHeaders>, ports: (u16, u16), t: &Tcp<'_>) -> Vec<u8> {
    let b = ip.tcp(ports.0, ports.1, t.seq, t.window);
    let b = if t.syn { b.syn() } else { b };
    let b = if t.rst { b.rst() } else { b };
    let b = match t.ack {
        Some(a) => b.ack(a),
        None => b,
    };
    let b = b.options(t.options).expect("options");
    let mut v = Vec::new();
    b.write(&mut v, t.payload).expect("build");
    v
}

/// Hands one frame to the processor at `now`; the frames it sent.
pub(super) fn step(p: &mut Processor<VecFrame>, input: Vec<u8>, now: u64) -> Vec<Vec<u8>> {
    let mut out = Output::with_capacity(8);
    p.handle(0, VecFrame::new(&input), now, &mut out);
    out.tx.iter().map(|(_, f)| f.to_vec()).collect()
}

const CLIENT_ISN: u32 = 0xffff_fff0;
const SYN_OPTIONS: [TcpOptionElement; 5] = [
    TcpOptionElement::MaximumSegmentSize(1460),
    TcpOptionElement::SelectiveAcknowledgementPermitted,
    TcpOptionElement::Timestamp(11, 0),
    TcpOptionElement::Noop,
    TcpOptionElement::WindowScale(7),
];

/// The client's SYN and the cookie SYN-ACK it gets: the cookie.
fn handshake_with_director(p: &mut Processor<VecFrame>, vip: Ipv4Addr, sport: u16, announced: u8) -> u32 {
    let syn = frame(
        CLIENT_MAC,
        (CLIENT, sport),
        (vip, 80),
        &Tcp { seq: CLIENT_ISN, syn: true, window: 64240, options: &SYN_OPTIONS, ..Tcp::default() },
    );
    let sent = step(p, syn.clone(), NOW);
    assert_eq!(sent.len(), 1, "the SYN is answered");
    assert!(sent[0].len() <= syn.len(), "the answer is not longer than the SYN");
    let synack = parse(&sent[0], CLIENT_MAC);
    assert_eq!((synack.src, synack.dst), ((vip, 80), (CLIENT, sport)));
    assert!(synack.syn && synack.ack_flag && !synack.rst);
    assert_eq!(synack.ack, CLIENT_ISN.wrapping_add(1));
    assert_eq!(
        synack.options,
        vec![TcpOptionElement::MaximumSegmentSize(1460), TcpOptionElement::Noop, TcpOptionElement::WindowScale(announced)],
        "MSS and window scale only: no SACK, no timestamps"
    );
    assert_eq!(p.conns().len(), 0, "a SYN creates nothing");
    synack.seq
}

/// The rest of the handshake: the client's ACK (with `first_data`), the SYN
/// to the real server, its SYN-ACK (window scale `server_ws`); returns
/// (real server address as it sees itself, the address it sees the client as,
/// the frames sent after the SYN-ACK).
fn open(
    p: &mut Processor<VecFrame>,
    vip: Ipv4Addr,
    sport: u16,
    cookie: u32,
    server_isn: u32,
    server_ws: Option<u8>,
    first_data: &[u8],
) -> (Seg, Vec<Seg>) {
    let ack = frame(
        CLIENT_MAC,
        (CLIENT, sport),
        (vip, 80),
        &Tcp { seq: CLIENT_ISN.wrapping_add(1), ack: Some(cookie.wrapping_add(1)), payload: first_data, ..Tcp::default() },
    );
    let sent = step(p, ack, NOW + 5);
    assert_eq!(sent.len(), 1, "the cookie ACK sends the SYN to the real server, nothing else");
    let dst_mac = if sent[0][30..34] == RS1.octets() { RS1_MAC } else { RS2_MAC };
    let syn = parse(&sent[0], dst_mac);
    assert!(syn.syn && !syn.ack_flag);
    assert_eq!(syn.window, 64256, "the client's window (502 << 7) as an unscaled SYN window");
    assert_eq!(syn.options, vec![TcpOptionElement::MaximumSegmentSize(1460), TcpOptionElement::Noop, TcpOptionElement::WindowScale(7)]);
    assert_eq!(p.conns().len(), 1);
    let state = p.connections(&ConnFilter::default(), NOW + 5)[0].state.to_string();
    assert_eq!(state, "SYN_SENT");
    let mut options = vec![TcpOptionElement::MaximumSegmentSize(1400)];
    if let Some(ws) = server_ws {
        options.extend([TcpOptionElement::Noop, TcpOptionElement::WindowScale(ws)]);
    }
    let synack = frame(
        dst_mac,
        syn.dst,
        syn.src,
        &Tcp { seq: server_isn, ack: Some(syn.seq.wrapping_add(1)), syn: true, window: 29200, options: &options, ..Tcp::default() },
    );
    let sent = step(p, synack, NOW + 6);
    let segs = sent.iter().map(|f| parse(f, dst_mac)).collect();
    (syn, segs)
}

#[test]
fn nat_handshake_data_both_ways_and_window_rescaling() {
    let mut p = proxy(7);
    let cookie = handshake_with_director(&mut p, NAT_VIP, 40000, 7);
    let server_isn = 0x5000_0000;
    let (syn, sent) = open(&mut p, NAT_VIP, 40000, cookie, server_isn, Some(9), b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(syn.src, (CLIENT, 40000), "NAT: the real server sees the client");
    assert_eq!(syn.seq, CLIENT_ISN, "the client's own ISN");
    let real = syn.dst;
    assert_eq!(real.1, 8080);
    let rs_mac = if real.0 == RS1 { RS1_MAC } else { RS2_MAC };
    // The ACK completing the real server's handshake, then the held data.
    assert_eq!(sent.len(), 2, "{sent:?}");
    let ack = &sent[0];
    assert_eq!((ack.src, ack.dst, ack.seq, ack.ack), ((CLIENT, 40000), real, CLIENT_ISN.wrapping_add(1), server_isn + 1));
    assert!(ack.ack_flag && !ack.syn && ack.payload.is_empty());
    assert_eq!(ack.window, 502, "the real server scales the client's window as the client does");
    let data = &sent[1];
    assert_eq!((data.src, data.dst, data.seq, data.ack), ((CLIENT, 40000), real, CLIENT_ISN.wrapping_add(1), server_isn + 1));
    assert_eq!(data.payload, b"GET / HTTP/1.1\r\n\r\n", "the data of the client's first ACK");
    assert_eq!(p.connections(&ConnFilter::default(), NOW + 6)[0].state.to_string(), "ESTABLISHED");

    // Real server → client: seq back to the cookie's space, window rescaled 9 → 7.
    let reply = frame(
        rs_mac,
        real,
        (CLIENT, 40000),
        &Tcp {
            seq: server_isn + 1,
            ack: Some(CLIENT_ISN.wrapping_add(19)),
            window: 1000,
            payload: b"HTTP/1.1 200 OK\r\n",
            ..Tcp::default()
        },
    );
    let sent = step(&mut p, reply, NOW + 7);
    assert_eq!(sent.len(), 1);
    let r = parse(&sent[0], CLIENT_MAC);
    assert_eq!((r.src, r.dst, r.seq, r.ack), ((NAT_VIP, 80), (CLIENT, 40000), cookie.wrapping_add(1), CLIENT_ISN.wrapping_add(19)));
    assert_eq!(r.window, 4000, "1000 << 9 >> 7");
    assert_eq!(r.payload, b"HTTP/1.1 200 OK\r\n");

    // Client → real server again: ack into the real server's space.
    let more = frame(
        CLIENT_MAC,
        (CLIENT, 40000),
        (NAT_VIP, 80),
        &Tcp { seq: CLIENT_ISN.wrapping_add(19), ack: Some(cookie.wrapping_add(18)), payload: b"bye", ..Tcp::default() },
    );
    let sent = step(&mut p, more, NOW + 8);
    let m = parse(&sent[0], rs_mac);
    assert_eq!((m.src, m.dst, m.seq, m.ack, m.window), ((CLIENT, 40000), real, CLIENT_ISN.wrapping_add(19), server_isn + 18, 502));
    assert_eq!(m.payload, b"bye");

    let c = p.counters();
    assert_eq!((c.get(Counter::SynCookieSent), c.get(Counter::SynCookieAckValid), c.get(Counter::SynProxyHandshakeFailed)), (1, 1, 0));
    assert_eq!(p.syn_proxy_pending(), 0);
}

#[test]
fn fullnat_handshake_keeps_its_own_sequence_shift_and_toa() {
    let mut p = proxy(7);
    let cookie = handshake_with_director(&mut p, FNAT_VIP, 40001, 7);
    let server_isn = 0x7000_0000;
    let (syn, sent) = open(&mut p, FNAT_VIP, 40001, cookie, server_isn, Some(7), b"");
    assert_eq!(syn.src.0, DIR_IN, "FULLNAT: the real server sees the local address");
    assert_eq!(syn.dst, (RS1, 8080));
    let fnat_delta = syn.seq.wrapping_sub(CLIENT_ISN);
    // Nothing was held: only the ACK, with the client's address in a TOA option.
    assert_eq!(sent.len(), 1);
    let ack = &sent[0];
    assert_eq!((ack.src, ack.dst, ack.seq, ack.ack), (syn.src, syn.dst, syn.seq + 1, server_isn + 1));
    let toa = [254, 8, 0x9c, 0x41, 10, 0, 0, 2];
    assert!(ack.options_raw.windows(8).any(|w| w == toa), "TOA names the client: {:?}", ack.options_raw);
    assert_eq!(p.counters().get(Counter::ToaInserted), 1);

    // Data both ways: the client's seq carries FULLNAT's shift, its ack the proxy's.
    let local = syn.src;
    let data = frame(
        CLIENT_MAC,
        (CLIENT, 40001),
        (FNAT_VIP, 80),
        &Tcp { seq: CLIENT_ISN.wrapping_add(1), ack: Some(cookie.wrapping_add(1)), payload: b"ping", ..Tcp::default() },
    );
    let d = parse(&step(&mut p, data, NOW + 7)[0], RS1_MAC);
    assert_eq!((d.src, d.dst, d.seq, d.ack), (local, (RS1, 8080), CLIENT_ISN.wrapping_add(1).wrapping_add(fnat_delta), server_isn + 1));
    assert!(d.options_raw.is_empty(), "TOA only once");
    let reply = frame(
        RS1_MAC,
        (RS1, 8080),
        local,
        &Tcp { seq: server_isn + 1, ack: Some(d.seq + 4), window: 300, payload: b"pong", ..Tcp::default() },
    );
    let r = parse(&step(&mut p, reply, NOW + 8)[0], CLIENT_MAC);
    assert_eq!(
        (r.src, r.dst, r.seq, r.ack, r.window),
        ((FNAT_VIP, 80), (CLIENT, 40001), cookie.wrapping_add(1), CLIENT_ISN.wrapping_add(5), 300)
    );
    assert_eq!(r.payload, b"pong");
}

#[test]
fn a_refusing_real_server_resets_the_client_in_its_sequence_space() {
    let mut p = proxy(7);
    let cookie = handshake_with_director(&mut p, NAT_VIP, 40002, 7);
    let ack = frame(
        CLIENT_MAC,
        (CLIENT, 40002),
        (NAT_VIP, 80),
        &Tcp { seq: CLIENT_ISN.wrapping_add(1), ack: Some(cookie.wrapping_add(1)), payload: b"early", ..Tcp::default() },
    );
    let sent = step(&mut p, ack, NOW + 5);
    let rs_mac = if sent[0][30..34] == RS1.octets() { RS1_MAC } else { RS2_MAC };
    let syn = parse(&sent[0], rs_mac);
    // A reset that does not acknowledge our SYN is not believed.
    let stray = frame(rs_mac, syn.dst, syn.src, &Tcp { seq: 0, ack: Some(syn.seq.wrapping_add(2)), rst: true, ..Tcp::default() });
    assert!(step(&mut p, stray, NOW + 6).is_empty());
    assert_eq!(p.conns().len(), 1);
    // The real answer: RST|ACK acknowledging the SYN.
    let rst = frame(rs_mac, syn.dst, syn.src, &Tcp { seq: 0, ack: Some(syn.seq.wrapping_add(1)), rst: true, window: 0, ..Tcp::default() });
    let sent = step(&mut p, rst, NOW + 7);
    assert_eq!(sent.len(), 1);
    let r = parse(&sent[0], CLIENT_MAC);
    assert_eq!((r.src, r.dst, r.seq), ((NAT_VIP, 80), (CLIENT, 40002), cookie.wrapping_add(1)));
    assert!(r.rst && !r.syn && r.payload.is_empty());
    assert_eq!(p.conns().len(), 0, "the connection is gone");
    assert_eq!(p.syn_proxy_pending(), 0);
    let c = p.counters();
    assert_eq!(c.get(Counter::SynProxyHandshakeFailed), 1);
    assert_eq!(c.get(Counter::SynProxyDataDropped), 1, "the held data was freed");
}

#[test]
fn invalid_cookie_acks_are_dropped_and_counted() {
    let mut p = proxy(7);
    let cookie = handshake_with_director(&mut p, NAT_VIP, 40003, 7);
    let cases = [
        ("wrong cookie", CLIENT_ISN.wrapping_add(1), cookie.wrapping_add(2), 40003),
        ("wrong ISN", CLIENT_ISN.wrapping_add(2), cookie.wrapping_add(1), 40003),
        ("another port", CLIENT_ISN.wrapping_add(1), cookie.wrapping_add(1), 40004),
    ];
    for (what, seq, ack, sport) in cases {
        let before = p.counters().get(Counter::SynCookieAckInvalid);
        let f = frame(CLIENT_MAC, (CLIENT, sport), (NAT_VIP, 80), &Tcp { seq, ack: Some(ack), ..Tcp::default() });
        assert!(step(&mut p, f, NOW + 5).is_empty(), "{what}");
        assert_eq!(p.counters().get(Counter::SynCookieAckInvalid), before + 1, "{what}");
    }
    // Two periods later the right cookie is refused too.
    let late = frame(
        CLIENT_MAC,
        (CLIENT, 40003),
        (NAT_VIP, 80),
        &Tcp { seq: CLIENT_ISN.wrapping_add(1), ack: Some(cookie.wrapping_add(1)), ..Tcp::default() },
    );
    assert!(step(&mut p, late.clone(), NOW + 2 * crate::synproxy::cookie::PERIOD_MS).is_empty());
    assert_eq!(p.counters().get(Counter::SynCookieAckInvalid), 4);
    assert_eq!(p.conns().len(), 0);
    // In the next period it is still good.
    assert_eq!(step(&mut p, late, NOW + crate::synproxy::cookie::PERIOD_MS).len(), 1);
    assert_eq!(p.conns().len(), 1);
}

#[test]
fn a_thousand_spoofed_syns_create_no_connection() {
    let mut p = proxy(7);
    let mut out = Output::with_capacity(1024);
    for i in 0..1000u32 {
        let src = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 0, 0)) | (i % 200 + 3));
        let syn = frame(
            CLIENT_MAC,
            (src, 1024 + i as u16),
            (NAT_VIP, 80),
            &Tcp { seq: i.wrapping_mul(7919), syn: true, options: &SYN_OPTIONS, ..Tcp::default() },
        );
        p.handle(0, VecFrame::new(&syn), NOW, &mut out);
    }
    assert_eq!(p.conns().len(), 0);
    assert_eq!(p.syn_proxy_pending(), 0);
    assert_eq!(p.counters().get(Counter::SynCookieSent), 1000);
    assert_eq!(out.tx.len() + out.drop.len(), 1000, "every SYN answered (or queued for ARP) and nothing else");
}

#[test]
fn dr_services_are_never_proxied() {
    let mut p = proxy(7);
    let syn =
        frame(CLIENT_MAC, (CLIENT, 40005), (DR_VIP, 80), &Tcp { seq: CLIENT_ISN, syn: true, options: &SYN_OPTIONS, ..Tcp::default() });
    let sent = step(&mut p, syn, NOW);
    assert_eq!(sent.len(), 1);
    assert!(sent[0][..6] == RS1_MAC.0 || sent[0][..6] == RS2_MAC.0, "the SYN goes to a real server");
    assert_eq!(p.conns().len(), 1);
    assert_eq!(p.counters().get(Counter::SynCookieSent), 0);
}

#[test]
fn auto_proxies_syns_only_under_pressure_but_always_takes_cookie_acks() {
    let mut s = (*proxy_snapshot(7)).clone();
    for svc in &mut s.services {
        svc.syn_proxy = SynProxy::Auto;
    }
    let mut p = proxy(7);
    p.adopt(Arc::new(s.finish()));
    assert!(!p.under_pressure());
    // Not under pressure: the SYN makes a connection as in IPVS.
    let syn =
        frame(CLIENT_MAC, (CLIENT, 40006), (NAT_VIP, 80), &Tcp { seq: CLIENT_ISN, syn: true, options: &SYN_OPTIONS, ..Tcp::default() });
    step(&mut p, syn, NOW);
    assert_eq!((p.conns().len(), p.counters().get(Counter::SynCookieSent)), (1, 0));
    // A cookie made earlier (under pressure) is still honoured.
    let key = FlowKey { proto: 6, src: CLIENT, dst: NAT_VIP, sport: 40007, dport: 80 };
    let cookie = crate::synproxy::cookie::encode(&Secret::new(*b"rvs synproxy key"), &key, CLIENT_ISN, 1460, Some(7), NOW);
    let ack = frame(
        CLIENT_MAC,
        (CLIENT, 40007),
        (NAT_VIP, 80),
        &Tcp { seq: CLIENT_ISN.wrapping_add(1), ack: Some(cookie.wrapping_add(1)), ..Tcp::default() },
    );
    assert_eq!(step(&mut p, ack, NOW + 1).len(), 1, "the SYN to the real server");
    assert_eq!(p.counters().get(Counter::SynCookieAckValid), 1);
}

#[test]
fn a_real_server_without_window_scaling_gets_the_clients_windows_scaled() {
    let mut p = proxy(7);
    let cookie = handshake_with_director(&mut p, NAT_VIP, 40008, 7);
    let (syn, sent) = open(&mut p, NAT_VIP, 40008, cookie, 0x10, None, b"");
    let real = syn.dst;
    let rs_mac = if real.0 == RS1 { RS1_MAC } else { RS2_MAC };
    assert_eq!(sent[0].window, 64256, "the client's 502 << 7, unscaled for the real server");
    let data = frame(
        CLIENT_MAC,
        (CLIENT, 40008),
        (NAT_VIP, 80),
        &Tcp { seq: CLIENT_ISN.wrapping_add(1), ack: Some(cookie.wrapping_add(1)), window: 1024, payload: b"x", ..Tcp::default() },
    );
    assert_eq!(parse(&step(&mut p, data, NOW + 7)[0], rs_mac).window, 65535, "saturated");
    let reply =
        frame(rs_mac, real, (CLIENT, 40008), &Tcp { seq: 0x11, ack: Some(CLIENT_ISN.wrapping_add(2)), window: 29200, ..Tcp::default() });
    assert_eq!(parse(&step(&mut p, reply, NOW + 8)[0], CLIENT_MAC).window, 228, "29200 >> 7 for the client");
}

#[test]
fn client_packets_wait_for_the_handshake_within_bounds_and_expire_with_it() {
    let mut p = proxy(7);
    let cookie = handshake_with_director(&mut p, NAT_VIP, 40009, 7);
    let seg = |n: u32, now: u64, p: &mut Processor<VecFrame>| {
        let f = frame(
            CLIENT_MAC,
            (CLIENT, 40009),
            (NAT_VIP, 80),
            &Tcp { seq: CLIENT_ISN.wrapping_add(1 + n), ack: Some(cookie.wrapping_add(1)), payload: b"z", ..Tcp::default() },
        );
        step(p, f, now)
    };
    assert_eq!(seg(0, NOW + 5, &mut p).len(), 1, "the first ACK sends the SYN and is held");
    for n in 1..super::super::synproxy::HELD_PER_CONN as u32 {
        assert!(seg(n, NOW + 6, &mut p).is_empty(), "held");
    }
    assert_eq!(p.counters().get(Counter::SynProxyDataDropped), 0);
    assert!(seg(99, NOW + 6, &mut p).is_empty());
    assert_eq!(p.counters().get(Counter::SynProxyDataDropped), 1, "over the bound");
    // A second later a client packet sends the SYN again.
    let again = seg(100, NOW + 5 + super::super::synproxy::SYN_RESEND_MS, &mut p);
    assert_eq!(again.len(), 1);
    assert_eq!(p.counters().get(Counter::SynProxyDataDropped), 2, "the packet that sent the SYN again is over the bound too");
    assert!(parse(&again[0], if again[0][30..34] == RS1.octets() { RS1_MAC } else { RS2_MAC }).syn);
    // The real server never answers: the handshake expires, its packets are freed.
    let mut out = Output::with_capacity(64);
    let late = NOW + 10 + super::super::synproxy::HANDSHAKE_TIMEOUT_MS;
    for _ in 0..8 {
        p.tick(late, &mut out);
    }
    assert_eq!(p.conns().len(), 0);
    assert_eq!(p.syn_proxy_pending(), 0);
    assert_eq!(p.counters().get(Counter::SynProxyHandshakeFailed), 1);
    assert_eq!(p.counters().get(Counter::SynProxyDataDropped), 2 + 16, "the 16 held ones are freed");
}

#[test]
fn any_worker_of_the_process_takes_any_workers_cookie() {
    // No secret set: every worker uses the process's.
    let mut workers: Vec<Processor<VecFrame>> = (0..2)
        .map(|w| {
            let mut p = Processor::for_worker(proxy_snapshot(7), 1024, w, 2);
            let mut out = Output::with_capacity(8);
            for (ip, mac) in [(CLIENT, CLIENT_MAC), (RS1, RS1_MAC), (RS2, RS2_MAC)] {
                let target = if ip.octets()[1] == 0 { DIR_OUT } else { DIR_IN };
                p.handle(0, VecFrame::new(&arp_frame(mac, DIR_MAC, arp::op::REPLY, mac, ip, DIR_MAC, target)), 0, &mut out);
            }
            p
        })
        .collect();
    let cookie = handshake_with_director(&mut workers[0], NAT_VIP, 40010, 7);
    let ack = frame(
        CLIENT_MAC,
        (CLIENT, 40010),
        (NAT_VIP, 80),
        &Tcp { seq: CLIENT_ISN.wrapping_add(1), ack: Some(cookie.wrapping_add(1)), ..Tcp::default() },
    );
    assert_eq!(step(&mut workers[1], ack, NOW + 5).len(), 1, "worker 1 sends the SYN for worker 0's cookie");
    assert_eq!(workers[1].counters().get(Counter::SynCookieAckValid), 1);
}

#[test]
fn bursts_give_the_same_frames_as_one_at_a_time() {
    let mut one = proxy(7);
    let mut burst = proxy(7);
    let syn =
        frame(CLIENT_MAC, (CLIENT, 40011), (NAT_VIP, 80), &Tcp { seq: CLIENT_ISN, syn: true, options: &SYN_OPTIONS, ..Tcp::default() });
    let cookie = parse(&step(&mut one, syn.clone(), NOW)[0], CLIENT_MAC).seq;
    let via_burst = |p: &mut Processor<VecFrame>, frames: &[Vec<u8>], now: u64| {
        let mut out = Output::with_capacity(8);
        let mut rx: Vec<VecFrame> = frames.iter().map(|f| VecFrame::new(f)).collect();
        p.handle_burst(0, &mut rx, now, &mut out);
        out.tx.iter().map(|(_, f)| f.to_vec()).collect::<Vec<_>>()
    };
    assert_eq!(parse(&via_burst(&mut burst, &[syn], NOW)[0], CLIENT_MAC).seq, cookie, "the same cookie");
    // The cookie ACK with data and a second data segment in one burst.
    let ack = |n: u32, data: &[u8]| {
        frame(
            CLIENT_MAC,
            (CLIENT, 40011),
            (NAT_VIP, 80),
            &Tcp { seq: CLIENT_ISN.wrapping_add(1 + n), ack: Some(cookie.wrapping_add(1)), payload: data, ..Tcp::default() },
        )
    };
    let inputs = [ack(0, b"abc"), ack(3, b"defg")];
    let mut sent_one = Vec::new();
    for f in &inputs {
        sent_one.extend(step(&mut one, f.clone(), NOW + 5));
    }
    let sent_burst = via_burst(&mut burst, &inputs, NOW + 5);
    assert_eq!(sent_one, sent_burst);
    assert_eq!(sent_one.len(), 1, "only the SYN: both segments are held");
    let rs_mac = if sent_one[0][30..34] == RS1.octets() { RS1_MAC } else { RS2_MAC };
    let syn_out = parse(&sent_one[0], rs_mac);
    let synack = frame(
        rs_mac,
        syn_out.dst,
        syn_out.src,
        &Tcp {
            seq: 9,
            ack: Some(CLIENT_ISN.wrapping_add(1)),
            syn: true,
            options: &[TcpOptionElement::MaximumSegmentSize(1460)],
            ..Tcp::default()
        },
    );
    let a = step(&mut one, synack.clone(), NOW + 6);
    let b = via_burst(&mut burst, &[synack], NOW + 6);
    assert_eq!(a, b);
    let payloads: Vec<Vec<u8>> = a.iter().map(|f| parse(f, rs_mac).payload).collect();
    assert_eq!(payloads, vec![b"".to_vec(), b"abc".to_vec(), b"defg".to_vec()], "the ACK, then the held segments in order");
}

#[test]
fn icmp_errors_about_replies_reach_the_real_server_in_its_sequence_space() {
    use etherparse::icmpv4::DestUnreachableHeader;
    use etherparse::Icmpv4Type;
    let mut p = proxy(7);
    let cookie = handshake_with_director(&mut p, NAT_VIP, 40012, 7);
    let server_isn = 0x2000_0000;
    let (syn, _) = open(&mut p, NAT_VIP, 40012, cookie, server_isn, Some(7), b"");
    let real = syn.dst;
    // A router on the client's side cannot pass a reply the client sees as seq cookie + 1.
    let mut quoted = Vec::new();
    PacketBuilder::ipv4(NAT_VIP.octets(), CLIENT.octets(), 60)
        .tcp(80, 40012, cookie.wrapping_add(1), 100)
        .ack(CLIENT_ISN.wrapping_add(1))
        .write(&mut quoted, &[0x55; 1400])
        .expect("quoted");
    let mut err = Vec::new();
    PacketBuilder::ethernet2(OTHER_MAC.0, DIR_MAC.0)
        .ipv4(REMOTE.octets(), NAT_VIP.octets(), 61)
        .icmpv4(Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: 1400 }))
        .write(&mut err, &quoted[..48])
        .expect("error");
    let sent = step(&mut p, err, NOW + 9);
    assert_eq!(sent.len(), 1, "forwarded to the real server");
    let got = SlicedPacket::from_ethernet(&sent[0]).expect("parse");
    let Some(NetSlice::Ipv4(v4)) = &got.net else { panic!("ipv4") };
    assert_eq!(Ipv4Addr::from(v4.header().destination()), real.0);
    let Some(TransportSlice::Icmpv4(icmp)) = &got.transport else { panic!("icmp") };
    let q = icmp.payload();
    assert_eq!((Ipv4Addr::new(q[12], q[13], q[14], q[15]), u16::from_be_bytes([q[20], q[21]])), real, "quoted source: the real server");
    assert_eq!(u32::from_be_bytes([q[24], q[25], q[26], q[27]]), server_isn + 1, "quoted seq in the real server's space");
}

#[test]
fn a_persistent_services_cookie_ack_is_taken_by_the_template_owner() {
    let mut s = (*proxy_snapshot(7)).clone();
    for svc in &mut s.services {
        svc.persistence = Some(crate::snapshot::Persistence { timeout_s: 300, prefix_len: 32 });
    }
    let snap = Arc::new(s.finish());
    let mut workers: Vec<Processor<VecFrame>> = (0..2)
        .map(|w| {
            let mut p = Processor::for_worker(Arc::clone(&snap), 1024, w, 2);
            let mut out = Output::with_capacity(8);
            for (ip, mac) in [(CLIENT, CLIENT_MAC), (RS1, RS1_MAC), (RS2, RS2_MAC)] {
                let target = if ip.octets()[1] == 0 { DIR_OUT } else { DIR_IN };
                p.handle(0, VecFrame::new(&arp_frame(mac, DIR_MAC, arp::op::REPLY, mac, ip, DIR_MAC, target)), 0, &mut out);
            }
            p
        })
        .collect();
    // Both workers answer the SYN alike (nothing is kept).
    let cookie = handshake_with_director(&mut workers[0], NAT_VIP, 40013, 7);
    assert_eq!(handshake_with_director(&mut workers[1], NAT_VIP, 40013, 7), cookie);
    let ack = frame(
        CLIENT_MAC,
        (CLIENT, 40013),
        (NAT_VIP, 80),
        &Tcp { seq: CLIENT_ISN.wrapping_add(1), ack: Some(cookie.wrapping_add(1)), ..Tcp::default() },
    );
    let owner = crate::process::persistence::template_owner(CLIENT.into(), 2);
    let other = 1 - owner;
    let mut out = Output::with_capacity(8);
    workers[other].handle(0, VecFrame::new(&ack), NOW + 5, &mut out);
    assert_eq!(out.redirect.len(), 1, "the cookie ACK goes to the template's owner");
    assert_eq!(out.redirect[0].0, owner);
    assert_eq!(workers[other].conns().len(), 0);
    let (_, port, f) = out.redirect.pop().expect("redirected");
    let mut out = Output::with_capacity(8);
    workers[owner].handle_redirected(port, f, NOW + 5, &mut out);
    assert_eq!(out.tx.len(), 1, "the owner sends the SYN to the real server");
    assert_eq!(workers[owner].conns().len(), 1);
    assert_eq!(workers[owner].counters().get(Counter::SynCookieAckValid), 1);
}

/// The backup director of a failover: the same services, its own cookie secret.
fn backup() -> Processor<VecFrame> {
    let mut b = proxy(7);
    b.set_syn_cookie_secret(Secret::new(*b"another director"));
    b
}

/// Hands the same frame to `a` and `b`: the frames each sent.
fn both(a: &mut Processor<VecFrame>, b: &mut Processor<VecFrame>, input: Vec<u8>, now: u64) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    (step(a, input.clone(), now), step(b, input, now))
}

/// A proxied connection installed from the master's listing entry (what
/// connection sync carries) on a backup translates the next packets both
/// ways exactly as the master does: NAT with the real server scaling its
/// windows differently, FULLNAT with a real server that refused scaling.
#[test]
fn a_synced_proxied_connection_is_translated_on_the_backup_exactly_as_on_the_master() {
    struct Case {
        vip: Ipv4Addr,
        sport: u16,
        server_isn: u32,
        server_ws: Option<u8>,
    }
    let cases = [
        Case { vip: NAT_VIP, sport: 40020, server_isn: 0x9000_0000, server_ws: Some(9) },
        Case { vip: FNAT_VIP, sport: 40021, server_isn: 0x0000_0100, server_ws: None },
    ];
    for c in cases {
        let mut master = proxy(7);
        let cookie = handshake_with_director(&mut master, c.vip, c.sport, 7);
        let (syn, _) = open(&mut master, c.vip, c.sport, cookie, c.server_isn, c.server_ws, b"");
        let listed = master.connections(&ConnFilter::default(), NOW + 6);
        assert_eq!(listed.len(), 1);
        let info = listed[0].clone();
        let t = info.syn_proxy.expect("the listing shows the translation");
        assert_eq!((t.phase, t.delta), (crate::synproxy::seq::Phase::Open, c.server_isn.wrapping_sub(cookie)));

        let mut backup = backup();
        let mut out = Output::with_capacity(8);
        assert!(backup.install(&info, NOW + 6, &mut out), "installed");
        let mut relisted = backup.connections(&ConnFilter::default(), NOW + 6);
        relisted[0].worker = info.worker;
        assert_eq!(relisted, vec![info.clone()], "the backup lists the same connection");

        // Client → real server, then the real server's reply, then the client again.
        let rs_mac = if syn.dst.0 == RS1 { RS1_MAC } else { RS2_MAC };
        let data = frame(
            CLIENT_MAC,
            (CLIENT, c.sport),
            (c.vip, 80),
            &Tcp { seq: CLIENT_ISN.wrapping_add(1), ack: Some(cookie.wrapping_add(1)), window: 300, payload: b"ping", ..Tcp::default() },
        );
        let (m, b) = both(&mut master, &mut backup, data, NOW + 10);
        assert_eq!(m.len(), 1);
        assert_eq!(parse(&m[0], rs_mac).ack, c.server_isn + 1, "translated into the real server's space");
        assert_eq!(b, m, "client → real server: the same frame");
        let reply = frame(
            rs_mac,
            syn.dst,
            syn.src,
            &Tcp { seq: c.server_isn + 1, ack: Some(syn.seq.wrapping_add(5)), window: 700, payload: b"pong", ..Tcp::default() },
        );
        let (m, b) = both(&mut master, &mut backup, reply, NOW + 11);
        assert_eq!(m.len(), 1);
        assert_eq!(parse(&m[0], CLIENT_MAC).seq, cookie.wrapping_add(1), "translated into the client's space");
        assert_eq!(b, m, "real server → client: the same frame");
        let more = frame(
            CLIENT_MAC,
            (CLIENT, c.sport),
            (c.vip, 80),
            &Tcp { seq: CLIENT_ISN.wrapping_add(5), ack: Some(cookie.wrapping_add(5)), window: 280, payload: b"bye", ..Tcp::default() },
        );
        let (m, b) = both(&mut master, &mut backup, more, NOW + 12);
        assert_eq!(b, m, "and again");
        assert!(!b.is_empty());
    }
}

/// A proxied handshake in progress is listed as such, and a backup refuses
/// to install it (only the master holds its client's packets); a synced
/// translation a backup could not use is refused too.
#[test]
fn a_pending_or_unusable_proxied_connection_is_not_installed() {
    use crate::synproxy::seq::{Phase, Translation};
    let mut master = proxy(7);
    let cookie = handshake_with_director(&mut master, NAT_VIP, 40022, 7);
    let ack = frame(
        CLIENT_MAC,
        (CLIENT, 40022),
        (NAT_VIP, 80),
        &Tcp { seq: CLIENT_ISN.wrapping_add(1), ack: Some(cookie.wrapping_add(1)), ..Tcp::default() },
    );
    assert_eq!(step(&mut master, ack, NOW + 5).len(), 1, "the SYN to the real server");
    let pending = master.connections(&ConnFilter::default(), NOW + 5).remove(0);
    assert_eq!(pending.syn_proxy.map(|t| t.phase), Some(Phase::Handshake));
    let mut backup = backup();
    let mut out = Output::with_capacity(8);
    assert!(!backup.install(&pending, NOW + 5, &mut out), "a handshake in progress");
    let open = Translation { delta: 5, phase: Phase::Open, server_wscale: 7, client_view_wscale: 7, inbound_shift: 0 };
    let established = ConnInfo { state: "ESTABLISHED".into(), syn_proxy: Some(open), ..pending.clone() };
    let unusable = [
        ConnInfo { syn_proxy: Some(Translation { server_wscale: 15, ..open }), ..established.clone() },
        ConnInfo { syn_proxy: Some(Translation { inbound_shift: 200, ..open }), ..established.clone() },
        ConnInfo { forward: ForwardMode::Dr, ..established.clone() },
        ConnInfo { protocol: Protocol::Udp, state: "UDP".into(), ..established.clone() },
    ];
    for u in &unusable {
        assert!(!backup.install(u, NOW + 5, &mut out), "{u:?}");
    }
    assert_eq!(backup.conns().len(), 0);
    assert!(backup.install(&established, NOW + 5, &mut out), "the same connection, open, is taken");
    assert_eq!(backup.conns().len(), 1);
}
