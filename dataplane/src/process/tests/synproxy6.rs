//! The SYN proxy for IPv6 NAT and FULLNAT services through one worker:
//! client ↔ director ↔ real server, every frame built by etherparse and
//! every frame the director sends read back by it (TCP checksums over the
//! IPv6 pseudo-header checked).

use std::net::Ipv6Addr;

use super::ipv6::{processor6, snapshot6, CLIENT6, DR6, FNAT6, LIP6, NAT6, NAT64, RS6};
use super::synproxy::{seg_of, step, tcp_frame, Tcp};
use super::*;
use crate::snapshot::{SynFlood, SynProxy};
use crate::synproxy::seq::Phase;
use crate::synproxy::Secret;
use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TcpOptionElement, TransportSlice};

const NOW: u64 = 1_000;
const CLIENT_ISN: u32 = 0xffff_fff0;
const SECRET: Secret = Secret::new(*b"rvs synproxy key");
const SYN_OPTIONS: [TcpOptionElement; 4] = [
    TcpOptionElement::MaximumSegmentSize(1440),
    TcpOptionElement::SelectiveAcknowledgementPermitted,
    TcpOptionElement::Noop,
    TcpOptionElement::WindowScale(7),
];

/// [`snapshot6`] with the SYN proxy set to `mode` on every IPv6 service.
fn proxy6(mode: SynProxy) -> Processor<VecFrame> {
    proxy6_flood(mode, SynFlood::default())
}

/// [`proxy6`] with the SYN-flood settings `flood`.
fn proxy6_flood(mode: SynProxy, flood: SynFlood) -> Processor<VecFrame> {
    let mut p = processor6(1500);
    let mut s = (*snapshot6(1500)).clone();
    for svc in &mut s.services {
        if svc.key.vip.is_ipv6() {
            svc.syn_proxy = mode;
        }
    }
    s.syn_flood = SynFlood { proxy_window_scale: 7, ..flood };
    p.adopt(Arc::new(s.finish()));
    p.set_syn_cookie_secret(SECRET);
    p
}

/// A TCP segment over IPv6 as etherparse reads it.
type Seg = super::synproxy::Seg<Ipv6Addr>;

/// Parses a frame the director sent to `dst_mac`, checking its TCP checksum.
fn parse(frame: &[u8], dst_mac: MacAddr) -> Seg {
    let p = SlicedPacket::from_ethernet(frame).expect("ethernet");
    assert_eq!(&frame[..6], &dst_mac.0, "destination MAC");
    let Some(NetSlice::Ipv6(v6)) = &p.net else { panic!("not ipv6") };
    let Some(TransportSlice::Tcp(t)) = &p.transport else { panic!("not tcp") };
    let ip = v6.header().to_header();
    let h = t.to_header();
    assert_eq!(h.calc_checksum_ipv6(&ip, t.payload()).expect("sum"), h.checksum, "tcp checksum");
    seg_of(&h, t.payload(), Ipv6Addr::from(ip.source), Ipv6Addr::from(ip.destination))
}

/// A frame from `from` (MAC, address, port) to the director for `to`.
fn frame(mac: MacAddr, from: (Ipv6Addr, u16), to: (Ipv6Addr, u16), t: &Tcp<'_>) -> Vec<u8> {
    tcp_frame(PacketBuilder::ethernet2(mac.0, DIR_MAC.0).ipv6(from.0.octets(), to.0.octets(), 61), (from.1, to.1), t)
}

/// The client's SYN to `vip` and the cookie SYN-ACK it gets: the cookie.
fn cookie_of(p: &mut Processor<VecFrame>, vip: Ipv6Addr, sport: u16) -> u32 {
    let syn = frame(
        CLIENT_MAC,
        (CLIENT6, sport),
        (vip, 80),
        &Tcp { seq: CLIENT_ISN, syn: true, window: 64240, options: &SYN_OPTIONS, ..Tcp::default() },
    );
    let before = p.counters().get(Counter::SynCookieSent);
    let conns = p.connections(&ConnFilter::default(), NOW).len();
    let sent = step(p, syn.clone(), NOW);
    assert_eq!(sent.len(), 1, "the SYN is answered");
    assert!(sent[0].len() <= syn.len(), "the answer is not longer than the SYN");
    let synack = parse(&sent[0], CLIENT_MAC);
    assert_eq!((synack.src, synack.dst), ((vip, 80), (CLIENT6, sport)));
    assert!(synack.syn && synack.ack_flag && !synack.rst);
    assert_eq!(synack.ack, CLIENT_ISN.wrapping_add(1));
    assert_eq!(
        synack.options,
        vec![TcpOptionElement::MaximumSegmentSize(1440), TcpOptionElement::Noop, TcpOptionElement::WindowScale(7)],
        "the IPv6 MSS table's 1440, the director's window scale"
    );
    assert_eq!(p.counters().get(Counter::SynCookieSent), before + 1);
    assert_eq!(p.connections(&ConnFilter::default(), NOW).len(), conns, "a SYN creates nothing");
    synack.seq
}

/// The client's cookie ACK carrying `data`: the SYN sent to the real server.
fn cookie_ack(p: &mut Processor<VecFrame>, vip: Ipv6Addr, sport: u16, cookie: u32, data: &[u8]) -> Seg {
    let ack = frame(
        CLIENT_MAC,
        (CLIENT6, sport),
        (vip, 80),
        &Tcp { seq: CLIENT_ISN.wrapping_add(1), ack: Some(cookie.wrapping_add(1)), payload: data, ..Tcp::default() },
    );
    let sent = step(p, ack, NOW + 5);
    assert_eq!(sent.len(), 1, "the cookie ACK sends the SYN to the real server, nothing else");
    let syn = parse(&sent[0], RS1_MAC);
    assert!(syn.syn && !syn.ack_flag && syn.payload.is_empty());
    assert_eq!(syn.dst, (RS6, 8080));
    assert_eq!(syn.window, 64256, "the client's window (502 << 7) as an unscaled SYN window");
    assert_eq!(syn.options, vec![TcpOptionElement::MaximumSegmentSize(1440), TcpOptionElement::Noop, TcpOptionElement::WindowScale(7)]);
    let listed = p.connections(&ConnFilter::default(), NOW + 5);
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].state.to_string().as_str(), listed[0].syn_proxy.map(|t| t.phase)), ("SYN_SENT", Some(Phase::Handshake)));
    syn
}

/// The real server's SYN-ACK (ISN `server_isn`, window scale 9) to `syn`: the frames sent.
fn server_accepts(p: &mut Processor<VecFrame>, syn: &Seg, server_isn: u32) -> Vec<Seg> {
    let options = [TcpOptionElement::MaximumSegmentSize(1400), TcpOptionElement::Noop, TcpOptionElement::WindowScale(9)];
    let synack = frame(
        RS1_MAC,
        syn.dst,
        syn.src,
        &Tcp { seq: server_isn, ack: Some(syn.seq.wrapping_add(1)), syn: true, window: 29200, options: &options, ..Tcp::default() },
    );
    step(p, synack, NOW + 6).iter().map(|f| parse(f, RS1_MAC)).collect()
}

/// NAT and FULLNAT: the handshake, the client's first data held and then
/// released, and sequence numbers translated both ways.
#[test]
fn nat_and_fullnat_proxy_the_handshake_hold_data_and_translate_both_ways() {
    for (vip, sport, server_isn) in [(NAT6, 41000, 0x7000_0000u32), (FNAT6, 41001, 0x0000_0010)] {
        let mut p = proxy6(SynProxy::On);
        let cookie = cookie_of(&mut p, vip, sport);
        let syn = cookie_ack(&mut p, vip, sport, cookie, b"GET / HTTP/1.1\r\n\r\n");
        let fullnat = vip == FNAT6;
        assert_eq!(syn.src.0, if fullnat { LIP6 } else { CLIENT6 }, "{vip}");
        let seq_delta = syn.seq.wrapping_sub(CLIENT_ISN);
        assert_eq!(seq_delta == 0, !fullnat, "FULLNAT shifts the client's ISN, NAT does not");
        assert_eq!(p.syn_proxy_pending(), 1);

        let sent = server_accepts(&mut p, &syn, server_isn);
        assert_eq!(sent.len(), 2, "the ACK completing the handshake, then the held data");
        let (ack, data) = (&sent[0], &sent[1]);
        assert!(ack.ack_flag && !ack.syn && ack.payload.is_empty());
        assert_eq!((ack.src, ack.dst), (syn.src, syn.dst));
        assert_eq!((ack.seq, ack.ack), (syn.seq.wrapping_add(1), server_isn.wrapping_add(1)));
        assert_eq!(p.counters().get(Counter::ToaInserted), u64::from(fullnat), "FULLNAT: the TOA rides on the ACK");
        assert_eq!(data.payload, b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(data.ack, server_isn.wrapping_add(1), "the held data acknowledges in the real server's space");
        assert_eq!(data.seq, CLIENT_ISN.wrapping_add(1).wrapping_add(seq_delta));
        assert_eq!(p.syn_proxy_pending(), 0);
        assert_eq!(p.connections(&ConnFilter::default(), NOW + 6)[0].state.to_string(), "ESTABLISHED");

        // The real server's reply: into the client's space, window rescaled from 9 to 7.
        let reply = frame(
            RS1_MAC,
            syn.dst,
            syn.src,
            &Tcp {
                seq: server_isn.wrapping_add(1),
                ack: Some(data.seq.wrapping_add(18)),
                window: 100,
                payload: b"HTTP/1.1 200 OK",
                ..Tcp::default()
            },
        );
        let sent = step(&mut p, reply, NOW + 7);
        assert_eq!(sent.len(), 1);
        let r = parse(&sent[0], CLIENT_MAC);
        assert_eq!((r.src, r.dst), ((vip, 80), (CLIENT6, sport)));
        assert_eq!(r.seq, cookie.wrapping_add(1), "the client's view of the server's sequence");
        assert_eq!(r.ack, CLIENT_ISN.wrapping_add(1 + 18), "the client's own sequence space");
        assert_eq!(r.window, 400, "100 << 9 >> 7");
        assert_eq!(r.payload, b"HTTP/1.1 200 OK");

        // The client's next segment: its acknowledgement into the real server's space.
        let more = frame(
            CLIENT_MAC,
            (CLIENT6, sport),
            (vip, 80),
            &Tcp { seq: CLIENT_ISN.wrapping_add(19), ack: Some(cookie.wrapping_add(16)), payload: b"bye", ..Tcp::default() },
        );
        let sent = step(&mut p, more, NOW + 8);
        assert_eq!(sent.len(), 1);
        let m = parse(&sent[0], RS1_MAC);
        assert_eq!((m.seq, m.ack), (CLIENT_ISN.wrapping_add(19).wrapping_add(seq_delta), server_isn.wrapping_add(16)));
    }
}

#[test]
fn a_refusing_real_server_resets_the_client_in_its_sequence_space() {
    let mut p = proxy6(SynProxy::On);
    let cookie = cookie_of(&mut p, NAT6, 41002);
    let syn = cookie_ack(&mut p, NAT6, 41002, cookie, b"");
    let rst = frame(RS1_MAC, syn.dst, syn.src, &Tcp { seq: 0, ack: Some(syn.seq.wrapping_add(1)), rst: true, ..Tcp::default() });
    let sent = step(&mut p, rst, NOW + 6);
    assert_eq!(sent.len(), 1);
    let r = parse(&sent[0], CLIENT_MAC);
    assert_eq!((r.src, r.dst, r.seq, r.rst, r.ack_flag), ((NAT6, 80), (CLIENT6, 41002), cookie.wrapping_add(1), true, false));
    assert_eq!(p.connections(&ConnFilter::default(), NOW + 6).len(), 0);
    assert_eq!(p.counters().get(Counter::SynProxyHandshakeFailed), 1);
}

#[test]
fn invalid_cookie_acks_are_dropped_and_counted() {
    let mut p = proxy6(SynProxy::On);
    let cookie = cookie_of(&mut p, NAT6, 41003);
    let cases = [
        ("wrong cookie", CLIENT_ISN.wrapping_add(1), cookie.wrapping_add(2), 41003),
        ("wrong ISN", CLIENT_ISN.wrapping_add(2), cookie.wrapping_add(1), 41003),
        ("another port", CLIENT_ISN.wrapping_add(1), cookie.wrapping_add(1), 41004),
    ];
    for (what, seq, ack, sport) in cases {
        let before = p.counters().get(Counter::SynCookieAckInvalid);
        let f = frame(CLIENT_MAC, (CLIENT6, sport), (NAT6, 80), &Tcp { seq, ack: Some(ack), ..Tcp::default() });
        assert!(step(&mut p, f, NOW + 5).is_empty(), "{what}");
        assert_eq!(p.counters().get(Counter::SynCookieAckInvalid), before + 1, "{what}");
    }
    assert_eq!(p.connections(&ConnFilter::default(), NOW + 5).len(), 0);
    assert_eq!(p.counters().get(Counter::SynCookieAckValid), 0);
}

#[test]
fn auto_proxies_syns_only_under_pressure_but_always_takes_cookie_acks() {
    let mut p = proxy6(SynProxy::Auto);
    assert!(!p.under_pressure());
    let syn = frame(CLIENT_MAC, (CLIENT6, 41005), (NAT6, 80), &Tcp { seq: CLIENT_ISN, syn: true, options: &SYN_OPTIONS, ..Tcp::default() });
    let sent = step(&mut p, syn, NOW);
    assert_eq!(parse(&sent[0], RS1_MAC).dst, (RS6, 8080), "not under pressure: the SYN goes to the real server");
    assert_eq!(p.counters().get(Counter::SynCookieSent), 0);
    // A cookie made earlier (under pressure) is still honoured.
    let key = FlowKey { proto: 6, src: CLIENT6, dst: NAT6, sport: 41006, dport: 80 };
    let cookie = crate::synproxy::cookie::encode(&SECRET, &key, CLIENT_ISN, 1440, Some(7), NOW);
    let ack = frame(
        CLIENT_MAC,
        (CLIENT6, 41006),
        (NAT6, 80),
        &Tcp { seq: CLIENT_ISN.wrapping_add(1), ack: Some(cookie.wrapping_add(1)), ..Tcp::default() },
    );
    let sent = step(&mut p, ack, NOW + 1);
    assert_eq!(sent.len(), 1);
    let syn = parse(&sent[0], RS1_MAC);
    assert!(syn.syn && !syn.ack_flag, "the SYN to the real server");
    assert_eq!(p.counters().get(Counter::SynCookieAckValid), 1);
}

#[test]
fn auto_answers_syns_with_cookies_once_the_ipv6_table_brings_pressure() {
    // Pressure from 11 entries on (1 % of the 1024-entry IPv6 table),
    // judged before each new connection: on from the twelfth.
    let flood = SynFlood { pressure_table_percent: 1, new_conns_per_prefix_per_sec: 0, ..SynFlood::default() };
    let mut p = proxy6_flood(SynProxy::Auto, flood);
    for port in 0..12 {
        let syn = frame(CLIENT_MAC, (CLIENT6, 20_000 + port), (DR6, 80), &Tcp { seq: 1, syn: true, ..Tcp::default() });
        assert_eq!(step(&mut p, syn, NOW).len(), 1, "DR: forwarded");
    }
    assert!(p.under_pressure());
    cookie_of(&mut p, NAT6, 41008);
    assert_eq!(p.counters().get(Counter::SynCookieSent), 1);
}

#[test]
fn icmpv6_errors_about_replies_reach_the_real_server_in_its_sequence_space() {
    let mut p = proxy6(SynProxy::On);
    let cookie = cookie_of(&mut p, NAT6, 41009);
    let syn = cookie_ack(&mut p, NAT6, 41009, cookie, b"");
    let server_isn = 0x2000_0000;
    server_accepts(&mut p, &syn, server_isn);
    // A router on the client's side cannot pass a reply the client sees as seq cookie + 1.
    let mut quoted = Vec::new();
    PacketBuilder::ipv6(NAT6.octets(), CLIENT6.octets(), 60)
        .tcp(80, 41009, cookie.wrapping_add(1), 100)
        .ack(CLIENT_ISN.wrapping_add(1))
        .write(&mut quoted, &[0x55; 1400])
        .expect("quoted");
    let router = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x99);
    let mut err = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC.0, DIR_MAC.0)
        .ipv6(router.octets(), NAT6.octets(), 61)
        .icmpv6(etherparse::Icmpv6Type::PacketTooBig { mtu: 1400 })
        .write(&mut err, &quoted[..80])
        .expect("error");
    let sent = step(&mut p, err, NOW + 9);
    assert_eq!(sent.len(), 1, "forwarded to the real server");
    let got = SlicedPacket::from_ethernet(&sent[0]).expect("parse");
    let Some(NetSlice::Ipv6(v6)) = &got.net else { panic!("ipv6") };
    assert_eq!(v6.header().destination_addr(), RS6);
    let Some(TransportSlice::Icmpv6(icmp)) = &got.transport else { panic!("icmpv6") };
    let q = icmp.payload();
    assert_eq!(Ipv6Addr::from(<[u8; 16]>::try_from(&q[8..24]).expect("src")), RS6, "quoted source: the real server");
    let seq = u32::from_be_bytes([q[44], q[45], q[46], q[47]]);
    assert_eq!(seq, server_isn.wrapping_add(1), "quoted sequence number in the real server's space");
}

#[test]
fn nat64_services_are_not_proxied() {
    let mut p = proxy6(SynProxy::On);
    let syn =
        frame(CLIENT_MAC, (CLIENT6, 41007), (NAT64, 80), &Tcp { seq: CLIENT_ISN, syn: true, options: &SYN_OPTIONS, ..Tcp::default() });
    let sent = step(&mut p, syn, NOW);
    assert_eq!(sent.len(), 1);
    assert_eq!(&sent[0][12..14], &[8, 0], "the SYN goes to the IPv4 real server");
    assert_eq!(p.counters().get(Counter::SynCookieSent), 0);
}

/// A proxied IPv6 connection installed on a backup from the master's
/// listing entry (what sync carries) translates as on the master.
#[test]
fn a_synced_proxied_ipv6_connection_is_translated_on_the_backup() {
    for (vip, sport) in [(NAT6, 41010), (FNAT6, 41011)] {
        let mut master = proxy6(SynProxy::On);
        let cookie = cookie_of(&mut master, vip, sport);
        let syn = cookie_ack(&mut master, vip, sport, cookie, b"");
        let pending = master.connections(&ConnFilter::default(), NOW + 5).remove(0);
        let server_isn = 0x1234_5678;
        server_accepts(&mut master, &syn, server_isn);
        let info = master.connections(&ConnFilter::default(), NOW + 6).remove(0);
        assert_eq!(info.syn_proxy.map(|t| (t.phase, t.delta)), Some((Phase::Open, server_isn.wrapping_sub(cookie))));

        let mut backup = proxy6(SynProxy::On);
        backup.set_syn_cookie_secret(Secret::new(*b"another director"));
        let mut out = Output::with_capacity(8);
        assert!(!backup.install(&pending, NOW + 5, &mut out), "a handshake in progress is not installed");
        assert!(backup.install(&info, NOW + 6, &mut out), "installed");
        let reply = frame(
            RS1_MAC,
            syn.dst,
            syn.src,
            &Tcp { seq: server_isn.wrapping_add(1), ack: Some(syn.seq.wrapping_add(1)), window: 700, payload: b"pong", ..Tcp::default() },
        );
        let (m, b) = (step(&mut master, reply.clone(), NOW + 10), step(&mut backup, reply, NOW + 10));
        assert_eq!(m.len(), 1);
        assert_eq!(parse(&m[0], CLIENT_MAC).seq, cookie.wrapping_add(1));
        assert_eq!(b, m, "real server → client: the same frame");
        let data = frame(
            CLIENT_MAC,
            (CLIENT6, sport),
            (vip, 80),
            &Tcp { seq: CLIENT_ISN.wrapping_add(1), ack: Some(cookie.wrapping_add(5)), payload: b"ping", ..Tcp::default() },
        );
        let (m, b) = (step(&mut master, data.clone(), NOW + 11), step(&mut backup, data, NOW + 11));
        assert_eq!(parse(&m[0], RS1_MAC).ack, server_isn.wrapping_add(5));
        assert_eq!(b, m, "client → real server: the same frame");
    }
}
