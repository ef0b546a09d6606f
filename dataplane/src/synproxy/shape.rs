//! The packets the SYN proxy sends: the cookie SYN-ACK to the client, the
//! replayed SYN to the real server, the ACK completing the real server's
//! handshake, and the reset telling the client the real server refused.
//! Every one is written in full (headers without IP options or IPv6
//! extension headers, checksums computed), in the frame it answers when it
//! fits there. Each works on IPv4 and IPv6 packets alike: the family of the
//! packet it reads decides the family of the one it writes.

use std::net::{IpAddr, SocketAddr};

use crate::frame::Frame;
use crate::fwd::FwdError;
use crate::wire::tcp::flags;
use crate::wire::{checksum, ethernet, ip_proto, ipv4, ipv6, tcp, Ipv4Packet, Ipv6Packet, TcpSegment, WireError};

use super::cookie::CookieInfo;

/// TCP option kinds read or written here.
mod option {
    pub const END: u8 = 0;
    pub const NOP: u8 = 1;
    pub const MSS: u8 = 2;
    pub const WSCALE: u8 = 3;
}

/// The MSS assumed when a SYN has no MSS option (RFC 9293 3.7.1).
pub const DEFAULT_MSS: u16 = 536;

/// The MSS assumed when an IPv6 SYN has no MSS option (RFC 9293 3.7.1:
/// the IPv6 minimum MTU, 1280, less 60 bytes of headers).
pub const DEFAULT_MSS6: u16 = 1220;

/// The window of the cookie SYN-ACK (unscaled, as in any SYN): ten
/// segments of 1460 bytes, what a client may send before the real server's
/// handshake completes (see the hold bounds in `process/synproxy.rs`).
pub const COOKIE_WINDOW: u16 = 14600;

/// The MSS and window scale options of a SYN.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SynOptions {
    /// MSS option (None: absent).
    pub mss: Option<u16>,
    /// Window scale option (None: absent).
    pub wscale: Option<u8>,
}

/// Reads the MSS and window scale options of a TCP header's option bytes,
/// stopping at the end-of-list option or the first malformed length.
pub fn syn_options(options: &[u8]) -> SynOptions {
    let mut found = SynOptions::default();
    let mut i = 0;
    while let Some(&kind) = options.get(i) {
        match kind {
            option::END => break,
            option::NOP => i += 1,
            _ => {
                let Some(len) = options.get(i + 1).map(|&l| usize::from(l)).filter(|&l| l >= 2) else { break };
                let Some(bytes) = options.get(i..i + len) else { break };
                match (kind, len) {
                    (option::MSS, 4) => found.mss = Some(u16::from_be_bytes([bytes[2], bytes[3]])),
                    (option::WSCALE, 3) => found.wscale = Some(bytes[2]),
                    _ => {}
                }
                i += len;
            }
        }
    }
    found
}

/// The options the proxy writes: MSS, then NOP + window scale if any (8 bytes at most).
fn write_options(mss: u16, wscale: Option<u8>) -> ([u8; 8], usize) {
    let mut o = [0u8; 8];
    o[..4].copy_from_slice(&[option::MSS, 4, (mss >> 8) as u8, mss as u8]);
    match wscale {
        Some(ws) => {
            o[4..].copy_from_slice(&[option::NOP, option::WSCALE, 3, ws]);
            (o, 8)
        }
        None => (o, 4),
    }
}

/// The frame length of a segment with `options` option bytes behind an
/// Ethernet header of `l2_len` and an IP header of `ip_header_len`.
fn segment_len(l2_len: usize, ip_header_len: usize, options: usize) -> usize {
    l2_len + ip_header_len + tcp::HEADER_LEN + options
}

/// Whether the cookie SYN-ACK may offer window scaling, answering an IPv4
/// SYN frame of `syn_len` bytes (Ethernet header `l2_len`): the answer is
/// never longer than the SYN once padded to the Ethernet minimum, so nobody
/// is answered with more bytes than they sent.
pub fn answer_fits_wscale(syn_len: usize, l2_len: usize) -> bool {
    answer_fits(syn_len, l2_len, ipv4::HEADER_LEN)
}

/// [`answer_fits_wscale`] for a SYN of either family: the answer's IP
/// header is `ip_header_len` bytes (20 or 40).
pub fn answer_fits(syn_len: usize, l2_len: usize, ip_header_len: usize) -> bool {
    let padded = syn_len.max(crate::wire::builder::MIN_FRAME_LEN + l2_len - ethernet::HEADER_LEN);
    segment_len(l2_len, ip_header_len, 8) <= padded
}

/// The IP header length of the proxy's packets of the family of `addr`.
fn ip_header_len(addr: SocketAddr) -> usize {
    match addr {
        SocketAddr::V4(_) => ipv4::HEADER_LEN,
        SocketAddr::V6(_) => ipv6::HEADER_LEN,
    }
}

/// The fields of a TCP segment the proxy writes.
struct Segment<'a> {
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    options: &'a [u8],
    ttl: u8,
    ident: u16,
}

/// Writes an IP header of the family of `s`'s addresses and the TCP
/// segment `s` (no payload) at the start of `ip`, checksums computed;
/// returns the IP length. `ip` must hold it.
fn write_segment(ip: &mut [u8], s: &Segment<'_>) -> Result<usize, FwdError> {
    match (s.src, s.dst) {
        (SocketAddr::V4(src), SocketAddr::V4(dst)) => write_segment4(ip, s, *src.ip(), *dst.ip()),
        (SocketAddr::V6(src), SocketAddr::V6(dst)) => write_segment6(ip, s, *src.ip(), *dst.ip()),
        _ => Err(FwdError::Wire(WireError::Malformed("syn proxy: addresses of two families"))),
    }
}

/// Writes the TCP header of `s` (no payload) at the start of `seg`, checksum 0.
fn write_tcp(seg: &mut [u8], s: &Segment<'_>) {
    let mut t = TcpSegment::new_unchecked(seg);
    t.set_src_port(s.src.port());
    t.set_dst_port(s.dst.port());
    t.set_seq_number(s.seq);
    t.set_ack_number(s.ack);
    t.set_header_len(tcp::HEADER_LEN + s.options.len());
    t.set_flags(s.flags);
    t.set_window(s.window);
    t.set_urgent_ptr(0);
    t.set_checksum(0);
    t.into_inner()[tcp::HEADER_LEN..].copy_from_slice(s.options);
}

/// [`write_segment`] with a fixed IPv6 header (hop limit `s.ttl`).
fn write_segment6(ip: &mut [u8], s: &Segment<'_>, src: std::net::Ipv6Addr, dst: std::net::Ipv6Addr) -> Result<usize, FwdError> {
    let seg_len = tcp::HEADER_LEN + s.options.len();
    let total = ipv6::HEADER_LEN + seg_len;
    let ip = ip.get_mut(..total).ok_or(FwdError::NoRoom)?;
    ipv6::fill_header(ip, src, dst, ip_proto::TCP, seg_len as u16, s.ttl)?;
    let seg = &mut ip[ipv6::HEADER_LEN..];
    write_tcp(seg, s);
    let sum = checksum::upper_layer_v6(src, dst, ip_proto::TCP, seg);
    TcpSegment::new_unchecked(seg).set_checksum(sum);
    Ok(total)
}

/// [`write_segment`] with an option-less IPv4 header (DF set).
fn write_segment4(ip: &mut [u8], s: &Segment<'_>, src: std::net::Ipv4Addr, dst: std::net::Ipv4Addr) -> Result<usize, FwdError> {
    let total = ipv4::HEADER_LEN + tcp::HEADER_LEN + s.options.len();
    let ip = ip.get_mut(..total).ok_or(FwdError::NoRoom)?;
    let mut pkt = Ipv4Packet::new_unchecked(ip);
    pkt.set_version_and_header_len(ipv4::HEADER_LEN);
    pkt.set_dscp_ecn(0);
    pkt.set_total_len(total as u16);
    pkt.set_ident(s.ident);
    pkt.set_frag_offset(0);
    pkt.set_more_frags(false);
    pkt.set_dont_frag(true);
    pkt.set_ttl(s.ttl);
    pkt.set_protocol(ip_proto::TCP);
    pkt.set_src_addr(src);
    pkt.set_dst_addr(dst);
    pkt.fill_checksum();
    write_tcp(pkt.payload_mut(), s);
    let mut seg = TcpSegment::new_unchecked(&mut pkt.payload_mut()[..]);
    seg.fill_checksum(src, dst);
    Ok(total)
}

/// The addresses, sequence numbers, window, TTL (hop limit) and
/// identification (0 for IPv6) of the TCP segment in the IP packet `ip`.
struct Read {
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    ack: u32,
    window: u16,
    ttl: u8,
    ident: u16,
    options: SynOptions,
}

fn read(ip: &[u8]) -> Result<Read, FwdError> {
    let (src, dst, ttl, ident, seg) = match ip.first().map(|b| b >> 4) {
        Some(6) => {
            let pkt = Ipv6Packet::new_checked(ip)?;
            let upper = crate::fwd::l4v6::transport(ip)?;
            if upper.protocol != ip_proto::TCP {
                return Err(FwdError::Protocol(upper.protocol));
            }
            let seg = ip.get(upper.offset..upper.offset + upper.len).ok_or(WireError::Truncated)?;
            (IpAddr::V6(pkt.src_addr()), IpAddr::V6(pkt.dst_addr()), pkt.hop_limit(), 0, seg)
        }
        _ => {
            let pkt = Ipv4Packet::new_checked(ip)?;
            if pkt.protocol() != ip_proto::TCP {
                return Err(FwdError::Protocol(pkt.protocol()));
            }
            (IpAddr::V4(pkt.src_addr()), IpAddr::V4(pkt.dst_addr()), pkt.ttl(), pkt.ident(), pkt.into_payload())
        }
    };
    let seg = TcpSegment::new_checked(seg)?;
    Ok(Read {
        src: SocketAddr::new(src, seg.src_port()),
        dst: SocketAddr::new(dst, seg.dst_port()),
        seq: seg.seq_number(),
        ack: seg.ack_number(),
        window: seg.window(),
        ttl,
        ident,
        options: syn_options(seg.options()),
    })
}

/// Resizes `frame` to `len` bytes.
fn set_len<F: Frame>(frame: &mut F, len: usize) -> Result<(), FwdError> {
    let ok = match frame.len().checked_sub(len) {
        Some(excess) => frame.trim(excess),
        None => frame.append(len - frame.len()),
    };
    ok.then_some(()).ok_or(FwdError::NoRoom)
}

/// Turns the frame holding a client's SYN (IPv4 or IPv6 at `l2_len`) into
/// the cookie SYN-ACK answering it, in place: MACs swapped (the VLAN tag
/// stays), VIP:vport → client:cport, seq = `cookie`, ack = the client's
/// ISN + 1, options MSS `mss` and window scale `wscale` when given, TTL
/// (hop limit) 64. Returns the client's address.
pub fn cookie_syn_ack<F: Frame>(frame: &mut F, l2_len: usize, cookie: u32, mss: u16, wscale: Option<u8>) -> Result<IpAddr, FwdError> {
    let syn = read(frame.data().get(l2_len..).ok_or(WireError::Truncated)?)?;
    let (options, n) = write_options(mss, wscale);
    set_len(frame, segment_len(l2_len, ip_header_len(syn.src), n))?;
    let data = frame.data_mut();
    let (macs, ip) = data.split_at_mut(l2_len);
    let mut dst_mac = [0u8; 6];
    dst_mac.copy_from_slice(&macs[6..12]);
    macs.copy_within(0..6, 6);
    macs[..6].copy_from_slice(&dst_mac);
    let answer = Segment {
        src: syn.dst,
        dst: syn.src,
        seq: cookie,
        ack: syn.seq.wrapping_add(1),
        flags: flags::SYN | flags::ACK,
        window: COOKIE_WINDOW,
        options: &options[..n],
        ttl: 64,
        ident: 0,
    };
    write_segment(ip, &answer)?;
    Ok(syn.src.ip())
}

/// Writes into the empty frame `out` the SYN the client would have sent,
/// from the frame `ack` holding its cookie ACK (IP at `l2_len`): the same
/// Ethernet header, addresses, TTL and identification, seq = the client's
/// ISN (the ACK's seq − 1), the MSS and window scale the cookie carried,
/// and the ACK's window as an unscaled SYN window (`client window << its
/// scale`, at most 65535). The caller forwards it as the client's packet.
pub fn client_syn<F: Frame>(ack: &[u8], l2_len: usize, out: &mut F, info: CookieInfo) -> Result<(), FwdError> {
    let a = read(ack.get(l2_len..).ok_or(WireError::Truncated)?)?;
    let (options, n) = write_options(info.mss, info.wscale);
    set_len(out, segment_len(l2_len, ip_header_len(a.src), n))?;
    let data = out.data_mut();
    data[..l2_len].copy_from_slice(ack.get(..l2_len).ok_or(WireError::Truncated)?);
    let syn = Segment {
        src: a.src,
        dst: a.dst,
        seq: a.seq.wrapping_sub(1),
        ack: 0,
        flags: flags::SYN,
        window: super::seq::rescale_window(a.window, info.wscale.unwrap_or(0), 0),
        options: &options[..n],
        ttl: a.ttl,
        ident: a.ident,
    };
    write_segment(&mut data[l2_len..], &syn)?;
    Ok(())
}

/// What the real server's SYN-ACK says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SynAck {
    /// The real server's ISN.
    pub isn: u32,
    /// Its acknowledgement number (the proxy's SYN + 1, in the real server's space).
    pub ack: u32,
    /// The window scale it announced, if any.
    pub wscale: Option<u8>,
}

/// Reads the real server's SYN-ACK in the IP packet `ip`.
pub fn syn_ack(ip: &[u8]) -> Result<SynAck, FwdError> {
    let r = read(ip)?;
    Ok(SynAck { isn: r.seq, ack: r.ack, wscale: r.options.wscale })
}

/// Turns the real server's SYN-ACK (the IP packet `ip`) into the ACK that
/// completes its handshake, in place: ends swapped, seq = its ack, ack = its
/// ISN + 1, no options, `window` (the client's, as the real server reads
/// it). Returns the new IP length (the caller trims the frame to it).
pub fn ack_from_syn_ack(ip: &mut [u8], window: u16) -> Result<usize, FwdError> {
    let s = read(ip)?;
    let ack = Segment {
        src: s.dst,
        dst: s.src,
        seq: s.ack,
        ack: s.seq.wrapping_add(1),
        flags: flags::ACK,
        window,
        options: &[],
        ttl: 64,
        ident: 0,
    };
    write_segment(ip, &ack)
}

/// Turns the real server's reset (the IP packet `ip`) into the reset the
/// client accepts, in place: `vip` → `client` (both of one family), seq =
/// `seq` (the cookie + 1, what the client expects next), no ACK. Returns
/// the new IP length.
pub fn reset_to_client(ip: &mut [u8], vip: impl Into<SocketAddr>, client: impl Into<SocketAddr>, seq: u32) -> Result<usize, FwdError> {
    read(ip)?;
    let rst = Segment { src: vip.into(), dst: client.into(), seq, ack: 0, flags: flags::RST, window: 0, options: &[], ttl: 64, ident: 0 };
    write_segment(ip, &rst)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::VecFrame;
    use etherparse::{LinkSlice, NetSlice, PacketBuilder, SlicedPacket, TcpOptionElement, TransportSlice};
    use std::net::{Ipv4Addr, SocketAddrV4};

    const CLIENT_MAC: [u8; 6] = [2, 0xc0, 0, 0, 0, 2];
    const DIR_MAC: [u8; 6] = [2, 0xd0, 0, 0, 0, 1];

    fn syn(options: &[TcpOptionElement], vlan: Option<u16>) -> Vec<u8> {
        let eth = PacketBuilder::ethernet2(CLIENT_MAC, DIR_MAC);
        let ip = match vlan {
            Some(v) => eth.single_vlan(v.try_into().expect("vid")).ipv4([10, 0, 0, 2], [10, 0, 0, 101], 61),
            None => eth.ipv4([10, 0, 0, 2], [10, 0, 0, 101], 61),
        };
        let b = ip.tcp(40000, 80, 0x1111_0000, 64240).syn().options(options).expect("options");
        let mut v = Vec::new();
        b.write(&mut v, &[]).expect("build");
        v
    }

    /// TCP header, source and destination address, source and destination MAC, VLAN.
    type Parsed = (etherparse::TcpHeader, [u8; 4], [u8; 4], [u8; 6], [u8; 6], Option<u16>);

    /// The TCP part of a frame as etherparse reads it, checksum checked.
    fn tcp_of(frame: &[u8]) -> Parsed {
        let p = SlicedPacket::from_ethernet(frame).expect("parse");
        let Some(LinkSlice::Ethernet2(eth)) = &p.link else { panic!("ethernet") };
        let vlan = p.vlan_ids().first().map(|v| v.value());
        let Some(NetSlice::Ipv4(v4)) = &p.net else { panic!("ipv4") };
        let Some(TransportSlice::Tcp(t)) = &p.transport else { panic!("tcp") };
        let h = t.to_header();
        let ip = v4.header().to_header();
        assert_eq!(ip.header_checksum, ip.calc_header_checksum(), "ip checksum");
        assert_eq!(h.calc_checksum_ipv4(&ip, t.payload()).expect("sum"), h.checksum, "tcp checksum");
        (h, ip.source, ip.destination, eth.source(), eth.destination(), vlan)
    }

    #[test]
    fn syn_options_are_read_and_malformed_ones_stop_the_walk() {
        assert_eq!(
            syn_options(&[2, 4, 5, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7]),
            SynOptions { mss: Some(1460), wscale: Some(7) }
        );
        assert_eq!(syn_options(&[1, 1, 2, 4, 2, 0x18]), SynOptions { mss: Some(536), wscale: None });
        assert_eq!(syn_options(&[3, 3, 9, 0, 2, 4, 5, 0xb4]), SynOptions { mss: None, wscale: Some(9) }, "END stops");
        assert_eq!(syn_options(&[2, 0, 3, 3, 9]), SynOptions::default(), "zero length stops");
        assert_eq!(syn_options(&[3, 3]), SynOptions::default(), "truncated");
    }

    #[test]
    fn the_cookie_syn_ack_answers_in_place_and_never_grows_past_the_padded_syn() {
        for vlan in [None, Some(42)] {
            let l2 = if vlan.is_some() { 18 } else { 14 };
            let input = syn(
                &[
                    TcpOptionElement::MaximumSegmentSize(1460),
                    TcpOptionElement::SelectiveAcknowledgementPermitted,
                    TcpOptionElement::Noop,
                    TcpOptionElement::WindowScale(7),
                ],
                vlan,
            );
            assert!(answer_fits_wscale(input.len(), l2));
            let mut f = VecFrame::new(&input);
            assert_eq!(cookie_syn_ack(&mut f, l2, 0xabcd_ef01, 1460, Some(9)), Ok(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2))));
            let out = f.to_vec();
            assert!(out.len() <= input.len().max(60 + l2 - 14), "{} bytes answer {}", out.len(), input.len());
            let (h, src, dst, smac, dmac, got_vlan) = tcp_of(&out);
            assert_eq!((src, dst, smac, dmac, got_vlan), ([10, 0, 0, 101], [10, 0, 0, 2], DIR_MAC, CLIENT_MAC, vlan));
            assert_eq!(
                (h.source_port, h.destination_port, h.sequence_number, h.acknowledgment_number),
                (80, 40000, 0xabcd_ef01, 0x1111_0001)
            );
            assert!(h.syn && h.ack && !h.rst && !h.fin);
            assert_eq!(h.window_size, COOKIE_WINDOW);
            let opts: Vec<_> = h.options_iterator().map(|o| o.expect("option")).collect();
            assert_eq!(opts, vec![TcpOptionElement::MaximumSegmentSize(1460), TcpOptionElement::Noop, TcpOptionElement::WindowScale(9)]);
        }
    }

    #[test]
    fn a_short_syn_gets_no_window_scale_offer() {
        // 14 + 20 + 20 + 4 (window scale and a NOP) = 58 bytes, padded 60: no room for 8 option bytes.
        let input = syn(&[TcpOptionElement::Noop, TcpOptionElement::WindowScale(7)], None);
        assert_eq!(input.len(), 58);
        assert!(!answer_fits_wscale(input.len(), 14));
        // With no options at all, the MSS option still fits the padding.
        let bare = syn(&[], None);
        let mut f = VecFrame::new(&bare);
        cookie_syn_ack(&mut f, 14, 5, 536, None).expect("answer");
        assert_eq!(f.len(), 58);
        let (h, ..) = tcp_of(&f.to_vec());
        assert_eq!(h.options_iterator().map(|o| o.expect("option")).collect::<Vec<_>>(), vec![TcpOptionElement::MaximumSegmentSize(536)]);
    }

    #[test]
    fn the_replayed_syn_carries_the_clients_isn_and_the_cookies_options() {
        let mut v = Vec::new();
        PacketBuilder::ethernet2(CLIENT_MAC, DIR_MAC)
            .ipv4([10, 0, 0, 2], [10, 0, 0, 101], 61)
            .tcp(40000, 80, 0x1111_0001, 502)
            .ack(0xabcd_ef02)
            .psh()
            .write(&mut v, b"hello")
            .expect("build");
        let mut out = VecFrame::new(&[]);
        client_syn(&v, 14, &mut out, CookieInfo { mss: 1440, wscale: Some(7) }).expect("syn");
        let (h, src, dst, smac, dmac, _) = tcp_of(&out.to_vec());
        assert_eq!((src, dst, smac, dmac), ([10, 0, 0, 2], [10, 0, 0, 101], CLIENT_MAC, DIR_MAC));
        assert_eq!((h.sequence_number, h.acknowledgment_number, h.syn, h.ack), (0x1111_0000, 0, true, false));
        assert_eq!(h.window_size, 64256, "502 << 7");
        let opts: Vec<_> = h.options_iterator().map(|o| o.expect("option")).collect();
        assert_eq!(opts, vec![TcpOptionElement::MaximumSegmentSize(1440), TcpOptionElement::Noop, TcpOptionElement::WindowScale(7)]);
    }

    /// The TCP header of an IPv6 frame as etherparse reads it, checksum
    /// checked, with the addresses and the IPv6 header's next header.
    fn tcp6_of(frame: &[u8]) -> (etherparse::TcpHeader, [u8; 16], [u8; 16], u8) {
        let p = SlicedPacket::from_ethernet(frame).expect("parse");
        let Some(NetSlice::Ipv6(v6)) = &p.net else { panic!("ipv6") };
        let Some(TransportSlice::Tcp(t)) = &p.transport else { panic!("tcp") };
        let (h, ip) = (t.to_header(), v6.header().to_header());
        assert_eq!(h.calc_checksum_ipv6(&ip, t.payload()).expect("sum"), h.checksum, "tcp checksum");
        (h, ip.source, ip.destination, ip.next_header.0)
    }

    #[test]
    fn ipv6_packets_are_answered_in_ipv6_without_extension_headers() {
        let (client, vip) =
            ([0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2], [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1]);
        // A SYN behind a hop-by-hop options header (8 bytes of padding).
        let mut syn = Vec::new();
        PacketBuilder::ethernet2(CLIENT_MAC, DIR_MAC)
            .ipv6(client, vip, 61)
            .tcp(40000, 80, 0x1111_0000, 64240)
            .syn()
            .options(&[TcpOptionElement::MaximumSegmentSize(1440), TcpOptionElement::Noop, TcpOptionElement::WindowScale(7)])
            .expect("options")
            .write(&mut syn, &[])
            .expect("build");
        syn[20] = 0; // next header: hop-by-hop
        syn.splice(54..54, [6, 0, 1, 4, 0, 0, 0, 0]);
        let payload_len = u16::from_be_bytes([syn[18], syn[19]]) + 8;
        syn[18..20].copy_from_slice(&payload_len.to_be_bytes());
        assert!(answer_fits(syn.len(), 14, ipv6::HEADER_LEN));
        let mut f = VecFrame::new(&syn);
        assert_eq!(cookie_syn_ack(&mut f, 14, 0xabcd_ef01, 1420, Some(9)), Ok(IpAddr::from(client)));
        assert_eq!(f.len(), 14 + 40 + 20 + 8);
        let (h, src, dst, next) = tcp6_of(&f.to_vec());
        assert_eq!((src, dst, next), (vip, client, 6), "a plain IPv6 header, VIP → client");
        assert_eq!((h.sequence_number, h.acknowledgment_number, h.syn, h.ack), (0xabcd_ef01, 0x1111_0001, true, true));
        let opts: Vec<_> = h.options_iterator().map(|o| o.expect("option")).collect();
        assert_eq!(opts, vec![TcpOptionElement::MaximumSegmentSize(1420), TcpOptionElement::Noop, TcpOptionElement::WindowScale(9)]);
        // The replayed SYN from the client's ACK, then the reset to the client.
        let mut ack = Vec::new();
        PacketBuilder::ethernet2(CLIENT_MAC, DIR_MAC)
            .ipv6(client, vip, 61)
            .tcp(40000, 80, 0x1111_0001, 502)
            .ack(0xabcd_ef02)
            .write(&mut ack, b"hi")
            .expect("build");
        let mut out = VecFrame::new(&[]);
        client_syn(&ack, 14, &mut out, CookieInfo { mss: 1420, wscale: Some(7) }).expect("syn");
        let (h, src, dst, _) = tcp6_of(&out.to_vec());
        assert_eq!((src, dst, h.sequence_number, h.syn, h.ack, h.window_size), (client, vip, 0x1111_0000, true, false, 64256));
        let ip = &mut ack[14..];
        let v = SocketAddr::new(IpAddr::from(vip), 80);
        let c = SocketAddr::new(IpAddr::from(client), 40000);
        let len = reset_to_client(ip, v, c, 0xabcd_ef02).expect("rst");
        let frame = [&ack[..14], &ack[14..14 + len]].concat();
        let (h, src, dst, _) = tcp6_of(&frame);
        assert_eq!((src, dst, h.sequence_number, h.rst, h.ack), (vip, client, 0xabcd_ef02, true, false));
    }

    #[test]
    fn the_real_servers_syn_ack_becomes_the_ack_and_its_reset_the_clients() {
        let mut ip = Vec::new();
        PacketBuilder::ipv4([10, 1, 0, 11], [10, 0, 0, 2], 64)
            .tcp(8080, 40000, 0x5000_0000, 29200)
            .syn()
            .ack(0x1111_0001)
            .options(&[TcpOptionElement::MaximumSegmentSize(1460), TcpOptionElement::Noop, TcpOptionElement::WindowScale(10)])
            .expect("options")
            .write(&mut ip, &[])
            .expect("build");
        assert_eq!(syn_ack(&ip), Ok(SynAck { isn: 0x5000_0000, ack: 0x1111_0001, wscale: Some(10) }));
        let mut frame = [DIR_MAC.as_slice(), CLIENT_MAC.as_slice(), &[8, 0]].concat();
        let len = ack_from_syn_ack(&mut ip, 502).expect("ack");
        frame.extend_from_slice(&ip[..len]);
        let (h, src, dst, ..) = tcp_of(&frame);
        assert_eq!((src, dst, h.source_port, h.destination_port), ([10, 0, 0, 2], [10, 1, 0, 11], 40000, 8080));
        assert_eq!((h.sequence_number, h.acknowledgment_number, h.window_size), (0x1111_0001, 0x5000_0001, 502));
        assert!(h.ack && !h.syn && h.options.is_empty());

        let vip = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 101), 80);
        let client = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 40000);
        let len = reset_to_client(&mut ip, vip, client, 0xabcd_ef02).expect("rst");
        let mut frame = [CLIENT_MAC.as_slice(), DIR_MAC.as_slice(), &[8, 0]].concat();
        frame.extend_from_slice(&ip[..len]);
        let (h, src, dst, ..) = tcp_of(&frame);
        assert_eq!((src, dst, h.source_port, h.destination_port), ([10, 0, 0, 101], [10, 0, 0, 2], 80, 40000));
        assert_eq!((h.sequence_number, h.rst, h.ack, h.syn), (0xabcd_ef02, true, false, false));
    }
}
