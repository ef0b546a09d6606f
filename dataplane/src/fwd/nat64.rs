//! NAT64 through FULLNAT: an IPv6 VIP served by IPv4 real servers, as DPVS
//! does it (`src/ipvs/ip_vs_nat64.c`, the `fnat64` paths of `ip_vs_xmit.c`).
//!
//! Inbound, a client packet `[client]:cport` → `[VIP]:vport` (IPv6) becomes the
//! IPv4 packet LIP:lport → RIP:rport, from one of the worker's IPv4 local
//! addresses; the real server's replies RIP:rport → LIP:lport become
//! `[VIP]:vport` → `[client]:cport` again. TCP sequence numbers are shifted as in
//! every FULLNAT connection ([`super::fnat`]), and the client's address can
//! reach the real server in the 20-byte IPv6 TOA option
//! ([`super::fnat6::insert_toa6`], which works on the translated IPv4 packet).
//!
//! # Header translation (RFC 7915, the header rules DPVS applies)
//!
//! IPv6 → IPv4 (§5.1): version 4, header length 20; TOS = traffic class;
//! total length = upper-layer length + 20; identification 0, DF set, MF clear,
//! offset 0 (the translator's default; the optional "DF clear for packets of
//! at most 1280 bytes" is not used, like DPVS); TTL = hop limit (the caller
//! has already decremented it, [`super::hop6`]); protocol = the upper layer's
//! next header. Hop-by-hop, destination options and routing headers with no
//! segments left are dropped. An atomic fragment (offset 0, M clear) is
//! translated by §5.1.1: identification = the low 16 bits of the fragment
//! header's, DF clear. Any other fragment is refused
//! ([`FwdError::Untranslatable`]; the caller reassembles or drops), since only
//! a whole datagram can be given new ports and checksum.
//!
//! IPv4 → IPv6 (§4.1): traffic class = TOS, flow label 0, payload length =
//! total length − header length, next header = protocol, hop limit = TTL.
//! IPv4 options are not translated (§4.1: ignored), but a packet carrying a
//! loose or strict source route is refused. IPv4 fragments are refused
//! (the caller reassembles first). A packet with DF clear is translated
//! without a fragment header; the caller checks the egress MTU as for any
//! IPv6 packet (an IPv6 router never fragments).
//!
//! The TCP/UDP checksum is updated incrementally: the pseudo-headers of both
//! versions hold the same length and protocol, so only the address words
//! (two IPv4 words each, eight IPv6 words each) and the ports change in the
//! sum. A UDP datagram with no checksum (0) from the IPv4 side gets a full
//! checksum computed (mandatory over IPv6, RFC 7915 §4.5); a zero UDP checksum
//! from the IPv6 side is invalid and refused.
//!
//! **MSS.** The real server's SYN-ACK advertises an MSS for 20-byte IPv4
//! headers; the client's packets carry 40-byte IPv6 headers, so the MSS option
//! of a SYN-ACK is lowered by 20 on the way back (DPVS lowers it in the same
//! place, `tcp_out_adjust_mss`).
//!
//! # ICMP errors (RFC 7915 §4.2, §4.3, §5.2, §5.3)
//!
//! An ICMPv4 error about a NAT64 flow (it quotes LIP:lport → RIP:rport) is
//! turned into an ICMPv6 error to the client quoting `[client]:cport` →
//! `[VIP]:vport` ([`icmp4_to_6`]), and an ICMPv6 error from the client side about
//! a reply becomes an ICMPv4 error to the real server ([`icmp6_to_4`]). Types
//! and codes follow the RFC's tables; Packet Too Big and "fragmentation
//! needed" carry the MTU adjusted by the header difference (+20 / −20);
//! parameter problem pointers are mapped field to field. The quoted packet is
//! translated like the outer one (header rewritten, transport checksum
//! adjusted incrementally for the quoted words), and the result is cut to
//! 1280 bytes (IPv6) or 576 bytes (IPv4). Whatever the tables do not
//! translate (source quench, redirects, informational messages, codes
//! without a mapping) is refused with [`FwdError::Untranslatable`] naming it:
//! the caller drops and counts it.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::frame::Frame;
use crate::wire::ipv6::{self, next_header};
use crate::wire::{
    checksum, icmp, icmpv6, ip_proto, ipv4, ipv6_ext, IcmpPacket, Icmpv6Packet, Ipv4Packet, Ipv6Packet, TcpSegment, WireError,
};

use super::fnat::{shift_segment_seq, unshift_segment_ack};
use super::nat6::{adjust, checksum_offset};
use super::{l4v6, FwdError, NextHop, NextHop6};

/// Header size difference between IPv6 and IPv4 (no options).
pub const HEADER_DIFF: usize = ipv6::HEADER_LEN - ipv4::HEADER_LEN;

/// NAT64 inbound: translates the client's IPv6 packet at `l2_len` into the
/// IPv4 packet `local` → `real` (TCP: sequence number shifted by `seq_delta`,
/// timestamps stripped from a SYN) and says where it goes. The frame shrinks
/// by 20 bytes and its extension headers; the ethertype before `l2_len` is
/// set to IPv4.
pub fn xmit_inbound<F: Frame>(
    frame: &mut F,
    l2_len: usize,
    local: SocketAddrV4,
    real: SocketAddrV4,
    seq_delta: u32,
) -> Result<NextHop, FwdError> {
    let (upper, tc, hop, src, dst, plen) = {
        let ip = frame.data().get(l2_len..).ok_or(WireError::Truncated)?;
        let pkt = Ipv6Packet::new_checked(ip)?;
        let upper = l4v6::transport(ip)?;
        (upper, pkt.traffic_class(), pkt.hop_limit(), pkt.src_addr(), pkt.dst_addr(), usize::from(pkt.payload_len()))
    };
    let atomic = match upper.fragment {
        Some(f) if !f.is_atomic() => return Err(FwdError::Untranslatable("nat64: fragmented ipv6 packet")),
        f => f,
    };
    let total = u16::try_from(ipv4::HEADER_LEN + upper.len).map_err(|_| FwdError::NoRoom)?;
    {
        let l4 = frame.data_mut().get_mut(l2_len + upper.offset..).ok_or(WireError::Truncated)?;
        let at = checksum_offset(upper.protocol);
        let old = crate::wire::be16(l4, at..at + 2);
        if upper.protocol == next_header::UDP && old == 0 {
            return Err(WireError::Malformed("udp over ipv6: zero checksum").into());
        }
        let words = v6_words_out(src)
            + v6_words_out(dst)
            + v4_words_in(*local.ip())
            + v4_words_in(*real.ip())
            + set_ports(l4, local.port(), real.port());
        let c = adjust(old, words);
        let c = if upper.protocol == next_header::UDP && c == 0 { 0xffff } else { c };
        l4[at..at + 2].copy_from_slice(&c.to_be_bytes());
    }
    trim_padding(frame, l2_len, ipv6::HEADER_LEN + plen)?;
    replace_l3_header(frame, l2_len, upper.offset, ipv4::HEADER_LEN)?;
    super::set_ethertype(frame, l2_len, crate::wire::ethertype::IPV4);
    let data = frame.data_mut();
    {
        // The setters keep the bits they do not own (the reserved flag):
        // start from a clean header, not from the old IPv6 bytes.
        data[l2_len..l2_len + ipv4::HEADER_LEN].fill(0);
        let mut pkt = Ipv4Packet::new_unchecked(&mut data[l2_len..]);
        pkt.set_version_and_header_len(ipv4::HEADER_LEN);
        pkt.set_dscp_ecn(tc);
        pkt.set_total_len(total);
        pkt.set_ident(atomic.map_or(0, |f| f.ident as u16));
        pkt.set_frag_offset(0);
        pkt.set_more_frags(false);
        pkt.set_dont_frag(atomic.is_none());
        pkt.set_ttl(hop);
        pkt.set_protocol(upper.protocol);
        pkt.set_src_addr(*local.ip());
        pkt.set_dst_addr(*real.ip());
        pkt.fill_checksum();
    }
    if upper.protocol == next_header::TCP {
        let start = l2_len + ipv4::HEADER_LEN;
        shift_segment_seq(data.get_mut(start..start + upper.len).ok_or(WireError::Truncated)?, seq_delta)?;
    }
    Ok(NextHop::Routed(*real.ip()))
}

/// NAT64 reply: translates the real server's IPv4 packet at `l2_len` into the
/// IPv6 packet `vip` → `client` (TCP: acknowledgement and SACK edges shifted
/// back by `seq_delta`, a SYN-ACK's MSS lowered by 20) and says where it goes.
/// The frame grows by 20 bytes (less any IPv4 options); the ethertype before
/// `l2_len` is set to IPv6.
pub fn xmit_reply<F: Frame>(
    frame: &mut F,
    l2_len: usize,
    vip: SocketAddrV6,
    client: SocketAddrV6,
    seq_delta: u32,
) -> Result<NextHop6, FwdError> {
    let (hl, total, proto, tos, ttl, src, dst) = {
        let pkt = Ipv4Packet::new_checked(frame.data().get(l2_len..).ok_or(WireError::Truncated)?)?;
        if pkt.more_frags() || pkt.frag_offset() != 0 {
            return Err(FwdError::Untranslatable("nat64: fragmented ipv4 packet"));
        }
        if has_source_route(pkt.options()) {
            return Err(FwdError::Untranslatable("nat64: ipv4 source route option"));
        }
        let proto = pkt.protocol();
        let min = match proto {
            ip_proto::TCP => crate::wire::tcp::HEADER_LEN,
            ip_proto::UDP => crate::wire::udp::HEADER_LEN,
            p => return Err(FwdError::Protocol(p)),
        };
        if pkt.payload().len() < min {
            return Err(WireError::Truncated.into());
        }
        // Checked before anything is rewritten, so a refused packet is left as it came.
        if proto == ip_proto::TCP {
            TcpSegment::new_checked(pkt.payload())?;
        } else {
            crate::wire::UdpDatagram::new_checked(pkt.payload())?;
        }
        (pkt.header_len(), usize::from(pkt.total_len()), proto, pkt.dscp_ecn(), pkt.ttl(), pkt.src_addr(), pkt.dst_addr())
    };
    let plen = u16::try_from(total - hl).map_err(|_| FwdError::NoRoom)?;
    {
        let l4 = frame.data_mut().get_mut(l2_len + hl..l2_len + total).ok_or(WireError::Truncated)?;
        if proto == ip_proto::TCP {
            let tcp = TcpSegment::new_checked(&*l4)?;
            if tcp.syn() && tcp.ack() {
                lower_mss(l4, HEADER_DIFF as u16);
            }
            unshift_segment_ack(l4, seq_delta)?;
        }
        let at = checksum_offset(proto);
        let old = crate::wire::be16(l4, at..at + 2);
        let words = v4_words_out(src)
            + v4_words_out(dst)
            + v6_words_in(*vip.ip())
            + v6_words_in(*client.ip())
            + set_ports(l4, vip.port(), client.port());
        if proto == ip_proto::UDP && old == 0 {
            crate::wire::UdpDatagram::new_checked(&mut *l4)?.fill_checksum_v6(*vip.ip(), *client.ip());
        } else {
            let c = adjust(old, words);
            let c = if proto == ip_proto::UDP && c == 0 { 0xffff } else { c };
            l4[at..at + 2].copy_from_slice(&c.to_be_bytes());
        }
    }
    trim_padding(frame, l2_len, total)?;
    replace_l3_header(frame, l2_len, hl, ipv6::HEADER_LEN)?;
    super::set_ethertype(frame, l2_len, crate::wire::ethertype::IPV6);
    let ip = &mut frame.data_mut()[l2_len..];
    ipv6::fill_header(ip, *vip.ip(), *client.ip(), proto, plen, ttl)?;
    Ipv6Packet::new_unchecked(ip).set_traffic_class(tos);
    Ok(NextHop6::Routed(*client.ip()))
}

/// The path MTU check before [`xmit_inbound`]: `None` when the client's IPv6
/// packet `ip` fits the IPv4 egress MTU `mtu4` once translated, else the MTU
/// to put in the ICMPv6 Packet Too Big the client must get instead
/// ([`super::icmp6_err::make_error6`]): `mtu4` + 20 (RFC 7915 §5.1; the
/// translated packet has DF set, so nothing on the IPv4 side would fragment it).
pub fn too_big_inbound(ip: &[u8], mtu4: usize) -> Result<Option<u16>, FwdError> {
    let upper = l4v6::transport(ip)?;
    let translated = ipv4::HEADER_LEN + upper.len;
    Ok((translated > mtu4).then(|| (mtu4 + HEADER_DIFF).min(usize::from(u16::MAX)) as u16))
}

/// The path MTU check before [`xmit_reply`]: `None` when the real server's
/// IPv4 packet `ip` fits the IPv6 egress MTU `mtu6` once translated, else the
/// MTU to put in the ICMP "fragmentation needed" the real server must get
/// instead ([`super::icmp_err::make_error`]): `mtu6` − 20. A packet without DF
/// that does not fit is refused ([`FwdError::Untranslatable`]): RFC 7915 §4.1
/// would have the translator fragment it in IPv6, which rvs does not do.
pub fn too_big_reply(ip: &[u8], mtu6: usize) -> Result<Option<u16>, FwdError> {
    let pkt = Ipv4Packet::new_checked(ip)?;
    let translated = usize::from(pkt.total_len()) - pkt.header_len() + ipv6::HEADER_LEN;
    if translated <= mtu6 {
        return Ok(None);
    }
    if !pkt.dont_frag() {
        return Err(FwdError::Untranslatable("nat64: ipv4 packet without DF above the ipv6 mtu"));
    }
    Ok(Some(mtu6.saturating_sub(HEADER_DIFF).min(usize::from(u16::MAX)) as u16))
}

/// The `seq_delta` of a new NAT64 TCP connection whose client SYN is the
/// IPv6 packet `ip`, leaving from `local` towards `real` (the IPv4 tuple's
/// RFC 6528 ISN, [`super::fnat::initial_seq`], at the current wall clock).
pub fn new_seq_delta(ip: &[u8], local: SocketAddrV4, real: SocketAddrV4) -> Result<u32, FwdError> {
    let isn = super::fnat6::client_isn(ip)?;
    let wall_ns = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    Ok(super::fnat::initial_seq(local, real, wall_ns).wrapping_sub(isn))
}

/// How an ICMPv4 error about a NAT64 flow is turned into an ICMPv6 error for
/// the client ([`icmp4_to_6`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Icmp4To6 {
    /// Source of the ICMPv6 error (the VIP: the only address of the path the
    /// client knows).
    pub outer_src: Ipv6Addr,
    /// The client.
    pub outer_dst: Ipv6Addr,
    /// The quoted packet's new source: `[client]:cport`.
    pub quoted_src: SocketAddrV6,
    /// The quoted packet's new destination: `[VIP]:vport`.
    pub quoted_dst: SocketAddrV6,
    /// Added to the quoted TCP sequence number (`0 - seq_delta`: the client
    /// finds its own sequence space).
    pub quoted_seq_shift: u32,
    /// MTU of the IPv6 link towards the client: a Packet Too Big never
    /// advertises more.
    pub mtu6: u16,
}

/// How an ICMPv6 error from the client's side about a NAT64 reply is turned
/// into an ICMPv4 error for the real server ([`icmp6_to_4`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Icmp6To4 {
    /// Source of the ICMPv4 error (the connection's IPv4 local address).
    pub outer_src: Ipv4Addr,
    /// The real server.
    pub outer_dst: Ipv4Addr,
    /// The quoted packet's new source: RIP:rport.
    pub quoted_src: SocketAddrV4,
    /// The quoted packet's new destination: LIP:lport.
    pub quoted_dst: SocketAddrV4,
    /// Added to the quoted TCP sequence number (0 for a quoted reply: its
    /// sequence numbers are the real server's own).
    pub quoted_seq_shift: u32,
    /// MTU of the IPv4 link towards the real server: a "fragmentation needed"
    /// never advertises more.
    pub mtu4: u16,
}

/// Largest ICMPv4 error rvs sends (RFC 1812 4.3.2.3).
pub const MAX_ICMP4_ERROR: usize = 576;

/// Translates the ICMPv4 error at `l2_len` (outer IPv4 header on, the caller
/// has matched its quoted packet to a NAT64 connection) into an ICMPv6 error
/// (RFC 7915 §4.2, §4.3): type and code mapped, the quoted IPv4 packet
/// translated to IPv6 with `t`'s addresses, the whole cut to 1280 bytes.
/// Outer traffic class and hop limit copy the outer TOS and TTL. Returns the
/// address the error goes to; errors the RFC does not translate fail with
/// [`FwdError::Untranslatable`], the frame unchanged.
pub fn icmp4_to_6<F: Frame>(frame: &mut F, l2_len: usize, t: &Icmp4To6) -> Result<Ipv6Addr, FwdError> {
    let mut out = [0u8; icmpv6::MAX_ERROR_LEN];
    let len = {
        let pkt = Ipv4Packet::new_checked(frame.data().get(l2_len..).ok_or(WireError::Truncated)?)?;
        if pkt.protocol() != ip_proto::ICMP {
            return Err(FwdError::Protocol(pkt.protocol()));
        }
        if pkt.is_fragment() {
            return Err(FwdError::Untranslatable("nat64: fragmented icmp error"));
        }
        let msg = IcmpPacket::new_checked(pkt.payload())?;
        let quote = msg.data();
        let (msg_type, code, rest) = map_icmp4(msg.msg_type(), msg.code(), msg.rest_of_header(), quote, t.mtu6)?;
        let (_, body) = out.split_at_mut(ipv6::HEADER_LEN + icmpv6::HEADER_LEN);
        let quoted = quote_4to6(quote, body, t)?;
        let payload_len = (icmpv6::HEADER_LEN + quoted) as u16;
        ipv6::fill_header(&mut out, t.outer_src, t.outer_dst, next_header::ICMPV6, payload_len, pkt.ttl())?;
        Ipv6Packet::new_unchecked(&mut out[..]).set_traffic_class(pkt.dscp_ecn());
        let mut m = Icmpv6Packet::new_unchecked(&mut out[ipv6::HEADER_LEN..ipv6::HEADER_LEN + usize::from(payload_len)]);
        m.set_msg_type(msg_type);
        m.set_code(code);
        m.set_rest_of_header(rest);
        m.fill_checksum(t.outer_src, t.outer_dst);
        ipv6::HEADER_LEN + usize::from(payload_len)
    };
    write_l3(frame, l2_len, &out[..len])?;
    super::set_ethertype(frame, l2_len, crate::wire::ethertype::IPV6);
    Ok(t.outer_dst)
}

/// Translates the ICMPv6 error at `l2_len` (IPv6 header on; the caller has
/// matched its quoted packet to a NAT64 connection) into an ICMPv4 error
/// (RFC 7915 §5.2, §5.3): type and code mapped, the quoted IPv6 packet
/// translated to IPv4 with `t`'s addresses, the whole cut to
/// [`MAX_ICMP4_ERROR`] bytes. Outer TOS and TTL copy the traffic class and hop
/// limit; DF clear, identification 0. Returns the address the error goes to;
/// errors the RFC does not translate fail with [`FwdError::Untranslatable`],
/// the frame unchanged.
pub fn icmp6_to_4<F: Frame>(frame: &mut F, l2_len: usize, t: &Icmp6To4) -> Result<Ipv4Addr, FwdError> {
    let mut out = [0u8; MAX_ICMP4_ERROR];
    let len = {
        let ip = frame.data().get(l2_len..).ok_or(WireError::Truncated)?;
        let pkt = Ipv6Packet::new_checked(ip)?;
        let upper = l4v6::locate(ip)?;
        if upper.protocol != next_header::ICMPV6 {
            return Err(FwdError::Protocol(upper.protocol));
        }
        if upper.fragment.is_some_and(|f| !f.is_atomic()) {
            return Err(FwdError::Untranslatable("nat64: fragmented icmpv6 error"));
        }
        let msg = Icmpv6Packet::new_checked(ip.get(upper.offset..upper.offset + upper.len).ok_or(WireError::Truncated)?)?;
        let (msg_type, code, rest) = map_icmp6(msg.msg_type(), msg.code(), msg.rest_of_header(), t.mtu4)?;
        let (_, body) = out.split_at_mut(ipv4::HEADER_LEN + icmp::HEADER_LEN);
        let quoted = quote_6to4(msg.body(), body, t)?;
        let total = ipv4::HEADER_LEN + icmp::HEADER_LEN + quoted;
        let mut o = Ipv4Packet::new_unchecked(&mut out[..total]);
        write_ipv4_header(&mut o, pkt.traffic_class(), total as u16, false, pkt.hop_limit(), ip_proto::ICMP, t.outer_src, t.outer_dst);
        let mut m = IcmpPacket::new_unchecked(o.payload_mut());
        m.set_msg_type(msg_type);
        m.set_code(code);
        m.set_rest_of_header(rest);
        m.fill_checksum();
        total
    };
    write_l3(frame, l2_len, &out[..len])?;
    super::set_ethertype(frame, l2_len, crate::wire::ethertype::IPV4);
    Ok(t.outer_dst)
}

/// ICMPv4 type/code/rest → ICMPv6 (RFC 7915 §4.2). `quote` is the quoted
/// IPv4 packet (its total length picks the plateau MTU of an old router's
/// "fragmentation needed" without one).
fn map_icmp4(msg_type: u8, code: u8, rest: u32, quote: &[u8], mtu6: u16) -> Result<(u8, u8, u32), FwdError> {
    use icmpv6::{msg_type as v6, param_problem_code as pp, unreachable_code as un};
    let unreachable = |c: u8| Ok((v6::DEST_UNREACHABLE, c, 0));
    match (msg_type, code) {
        (icmp::msg_type::DEST_UNREACHABLE, 0 | 1 | 5..=8 | 11 | 12) => unreachable(un::NO_ROUTE),
        (icmp::msg_type::DEST_UNREACHABLE, 9 | 10 | 13 | 15) => unreachable(un::ADMIN_PROHIBITED),
        (icmp::msg_type::DEST_UNREACHABLE, 2) => Ok((v6::PARAM_PROBLEM, pp::UNRECOGNIZED_NEXT_HEADER, 6)),
        (icmp::msg_type::DEST_UNREACHABLE, 3) => unreachable(un::PORT_UNREACHABLE),
        (icmp::msg_type::DEST_UNREACHABLE, 4) => {
            let advertised = (rest & 0xffff) as u16;
            let mtu4 = if advertised == 0 { plateau(crate::wire::be16(quote, 2..4)) } else { advertised };
            Ok((v6::PACKET_TOO_BIG, 0, u32::from(mtu4.saturating_add(HEADER_DIFF as u16).min(mtu6))))
        }
        (icmp::msg_type::DEST_UNREACHABLE, _) => Err(FwdError::Untranslatable("nat64: icmpv4 unreachable code without icmpv6 equivalent")),
        (icmp::msg_type::TIME_EXCEEDED, _) => Ok((v6::TIME_EXCEEDED, code, 0)),
        (PARAMETER_PROBLEM, 0 | 2) => match pointer_4to6((rest >> 24) as u8) {
            Some(p) => Ok((v6::PARAM_PROBLEM, pp::ERRONEOUS_FIELD, u32::from(p))),
            None => Err(FwdError::Untranslatable("nat64: parameter problem pointer without ipv6 field")),
        },
        _ => Err(FwdError::Untranslatable("nat64: icmpv4 type not translated")),
    }
}

/// ICMPv6 type/code/rest → ICMPv4 (RFC 7915 §5.2).
fn map_icmp6(msg_type: u8, code: u8, rest: u32, mtu4: u16) -> Result<(u8, u8, u32), FwdError> {
    use icmpv6::msg_type as v6;
    let unreachable = |c: u8| Ok((icmp::msg_type::DEST_UNREACHABLE, c, 0));
    match (msg_type, code) {
        (v6::DEST_UNREACHABLE, 0 | 2 | 3) => unreachable(1),
        (v6::DEST_UNREACHABLE, 1) => unreachable(10),
        (v6::DEST_UNREACHABLE, 4) => unreachable(3),
        (v6::DEST_UNREACHABLE, _) => Err(FwdError::Untranslatable("nat64: icmpv6 unreachable code without icmpv4 equivalent")),
        (v6::PACKET_TOO_BIG, _) => {
            let mtu = rest.saturating_sub(HEADER_DIFF as u32).min(u32::from(mtu4)).max(MIN_MTU4);
            Ok((icmp::msg_type::DEST_UNREACHABLE, 4, mtu))
        }
        (v6::TIME_EXCEEDED, _) => Ok((icmp::msg_type::TIME_EXCEEDED, code, 0)),
        (v6::PARAM_PROBLEM, 0) => match pointer_6to4(rest) {
            Some(p) => Ok((PARAMETER_PROBLEM, 0, u32::from(p) << 24)),
            None => Err(FwdError::Untranslatable("nat64: parameter problem pointer without ipv4 field")),
        },
        (v6::PARAM_PROBLEM, 1) => unreachable(2),
        _ => Err(FwdError::Untranslatable("nat64: icmpv6 type not translated")),
    }
}

/// ICMPv4 parameter problem.
const PARAMETER_PROBLEM: u8 = 12;
/// Smallest IPv4 MTU (RFC 791).
const MIN_MTU4: u32 = 68;

/// The IPv6 header byte an IPv4 header byte's field became (RFC 7915 §4.2,
/// figure 3); `None` for fields IPv6 does not have.
pub fn pointer_4to6(p: u8) -> Option<u8> {
    match p {
        0 | 1 => Some(p),
        2 | 3 => Some(4),
        8 => Some(7),
        9 => Some(6),
        12..=15 => Some(8),
        16..=19 => Some(24),
        _ => None,
    }
}

/// The IPv4 header byte an IPv6 header byte's field became (RFC 7915 §5.2,
/// figure 6); `None` for fields IPv4 does not have.
pub fn pointer_6to4(p: u32) -> Option<u8> {
    match p {
        0 | 1 => Some(p as u8),
        4 | 5 => Some(2),
        6 => Some(9),
        7 => Some(8),
        8..=23 => Some(12),
        24..=39 => Some(16),
        _ => None,
    }
}

/// The plateau MTU (RFC 1191 §7) below an IPv4 total length, for a
/// "fragmentation needed" that advertises none (RFC 7915 §4.2).
pub fn plateau(total_len: u16) -> u16 {
    const PLATEAUS: [u16; 10] = [32000, 17914, 8166, 4352, 2002, 1492, 1006, 508, 296, 68];
    PLATEAUS.into_iter().find(|&p| p < total_len).unwrap_or(68)
}

/// Writes the quoted IPv4 packet `quote` (header and at least 8 bytes of TCP
/// or UDP) translated to IPv6 into `out`; returns its length.
fn quote_4to6(quote: &[u8], out: &mut [u8], t: &Icmp4To6) -> Result<usize, FwdError> {
    let header = quote.get(..ipv4::HEADER_LEN).ok_or(WireError::Truncated)?;
    let hl = usize::from(header[0] & 0x0f) * 4;
    if header[0] >> 4 != 4 || hl < ipv4::HEADER_LEN {
        return Err(WireError::Malformed("ipv4: bad version or header length").into());
    }
    let inner = Ipv4Packet::new_unchecked(header);
    if inner.frag_offset() != 0 {
        return Err(FwdError::Untranslatable("nat64: quoted non-first fragment"));
    }
    let proto = inner.protocol();
    if proto != ip_proto::TCP && proto != ip_proto::UDP {
        return Err(FwdError::Untranslatable("nat64: quoted packet is neither tcp nor udp"));
    }
    let l4 = quote.get(hl..).filter(|l| l.len() >= QUOTED_L4).ok_or(WireError::Truncated)?;
    let plen = usize::from(inner.total_len()).saturating_sub(hl) as u16;
    let room = out.len() - ipv6::HEADER_LEN;
    let take = l4.len().min(room);
    ipv6::fill_header(out, *t.quoted_src.ip(), *t.quoted_dst.ip(), proto, plen, inner.ttl())?;
    Ipv6Packet::new_unchecked(&mut *out).set_traffic_class(inner.dscp_ecn());
    let q = &mut out[ipv6::HEADER_LEN..ipv6::HEADER_LEN + take];
    q.copy_from_slice(&l4[..take]);
    let words =
        v4_words_out(inner.src_addr()) + v4_words_out(inner.dst_addr()) + v6_words_in(*t.quoted_src.ip()) + v6_words_in(*t.quoted_dst.ip());
    fix_quoted_l4(q, proto, words, t.quoted_src.port(), t.quoted_dst.port(), t.quoted_seq_shift);
    Ok(ipv6::HEADER_LEN + take)
}

/// Writes the quoted IPv6 packet `quote` (header, extension headers, and at
/// least 8 bytes of TCP or UDP) translated to IPv4 into `out`; returns its
/// length.
fn quote_6to4(quote: &[u8], out: &mut [u8], t: &Icmp6To4) -> Result<usize, FwdError> {
    let header = quote.get(..ipv6::HEADER_LEN).ok_or(WireError::Truncated)?;
    let inner = Ipv6Packet::new_unchecked(header);
    if inner.version() != 6 {
        return Err(WireError::Malformed("ipv6: version is not 6").into());
    }
    let chain = ipv6_ext::walk(inner.next_header(), &quote[ipv6::HEADER_LEN..])?;
    if chain.fragment.is_some_and(|f| !f.is_first()) {
        return Err(FwdError::Untranslatable("nat64: quoted non-first fragment"));
    }
    let proto = chain.protocol;
    if proto != ip_proto::TCP && proto != ip_proto::UDP {
        return Err(FwdError::Untranslatable("nat64: quoted packet is neither tcp nor udp"));
    }
    let l4 = quote.get(ipv6::HEADER_LEN + chain.offset..).filter(|l| l.len() >= QUOTED_L4).ok_or(WireError::Truncated)?;
    let total = (usize::from(inner.payload_len()).saturating_sub(chain.offset) + ipv4::HEADER_LEN).min(usize::from(u16::MAX)) as u16;
    let take = l4.len().min(out.len() - ipv4::HEADER_LEN);
    let mut o = Ipv4Packet::new_unchecked(&mut *out);
    let (src, dst) = (*t.quoted_src.ip(), *t.quoted_dst.ip());
    write_ipv4_header(&mut o, inner.traffic_class(), total, true, inner.hop_limit(), proto, src, dst);
    let q = &mut out[ipv4::HEADER_LEN..ipv4::HEADER_LEN + take];
    q.copy_from_slice(&l4[..take]);
    let words = v6_words_out(inner.src_addr()) + v6_words_out(inner.dst_addr()) + v4_words_in(src) + v4_words_in(dst);
    fix_quoted_l4(q, proto, words, t.quoted_src.port(), t.quoted_dst.port(), t.quoted_seq_shift);
    Ok(ipv4::HEADER_LEN + take)
}

/// Bytes of the quoted transport header an error must hold: the ports and
/// TCP's sequence number (RFC 792's 8 bytes).
const QUOTED_L4: usize = 8;

/// Rewrites the ports (and TCP sequence number, by `seq_shift`) of a quoted
/// transport header `q` (at least 8 bytes) and adjusts its checksum, when
/// quoted, by `words` (the address change) plus those changes. A quoted UDP
/// checksum of 0 stays 0.
fn fix_quoted_l4(q: &mut [u8], proto: u8, words: u64, sport: u16, dport: u16, seq_shift: u32) {
    let mut words = words + set_ports(q, sport, dport);
    if proto == ip_proto::TCP && seq_shift != 0 {
        let old = crate::wire::be32(q, 4..8);
        let new = old.wrapping_add(seq_shift);
        if let Some(b) = q.get_mut(4..8) {
            b.copy_from_slice(&new.to_be_bytes());
            words += u64::from(!(old >> 16) as u16) + u64::from(!(old as u16)) + u64::from(new >> 16) + u64::from(new & 0xffff);
        }
    }
    let at = checksum_offset(proto);
    let Some(field) = q.get_mut(at..at + 2) else { return };
    let old = u16::from_be_bytes([field[0], field[1]]);
    if proto == ip_proto::UDP && old == 0 {
        return;
    }
    let c = adjust(old, words);
    let c = if proto == ip_proto::UDP && c == 0 { 0xffff } else { c };
    field.copy_from_slice(&c.to_be_bytes());
}

/// Fills an option-less IPv4 header (identification 0, not a fragment).
#[allow(clippy::too_many_arguments)]
fn write_ipv4_header(
    p: &mut Ipv4Packet<&mut [u8]>,
    tos: u8,
    total: u16,
    dont_frag: bool,
    ttl: u8,
    proto: u8,
    src: Ipv4Addr,
    dst: Ipv4Addr,
) {
    p.set_version_and_header_len(ipv4::HEADER_LEN);
    p.set_dscp_ecn(tos);
    p.set_total_len(total);
    p.set_ident(0);
    p.set_frag_offset(0);
    p.set_more_frags(false);
    p.set_dont_frag(dont_frag);
    p.set_ttl(ttl);
    p.set_protocol(proto);
    p.set_src_addr(src);
    p.set_dst_addr(dst);
    p.fill_checksum();
}

/// Replaces the IP packet at `l2_len` (and any padding) by `bytes`, growing
/// into tailroom or trimming.
fn write_l3<F: Frame>(frame: &mut F, l2_len: usize, bytes: &[u8]) -> Result<(), FwdError> {
    let old = frame.len().checked_sub(l2_len).ok_or(WireError::Truncated)?;
    let fits = if bytes.len() > old { frame.append(bytes.len() - old) } else { frame.trim(old - bytes.len()) };
    if !fits {
        return Err(FwdError::NoRoom);
    }
    frame.data_mut()[l2_len..].copy_from_slice(bytes);
    Ok(())
}

/// Writes the ports at the start of a TCP/UDP header and returns Σ(~old + new).
fn set_ports(l4: &mut [u8], src: u16, dst: u16) -> u64 {
    let mut words = 0u64;
    for (at, new) in [(0, src), (2, dst)] {
        let old = crate::wire::be16(l4, at..at + 2);
        if let Some(b) = l4.get_mut(at..at + 2) {
            b.copy_from_slice(&new.to_be_bytes());
            words += u64::from(!old) + u64::from(new);
        }
    }
    words
}

/// Σ ~word over an IPv6 address leaving the checksum.
fn v6_words_out(a: Ipv6Addr) -> u64 {
    a.segments().iter().map(|&w| u64::from(!w)).sum()
}

/// Σ word over an IPv6 address entering the checksum.
fn v6_words_in(a: Ipv6Addr) -> u64 {
    a.segments().iter().map(|&w| u64::from(w)).sum()
}

/// Σ ~word over an IPv4 address leaving the checksum.
fn v4_words_out(a: Ipv4Addr) -> u64 {
    let b = u32::from(a);
    u64::from(!(b >> 16) as u16) + u64::from(!(b as u16))
}

/// Σ word over an IPv4 address entering the checksum.
fn v4_words_in(a: Ipv4Addr) -> u64 {
    let b = u32::from(a);
    u64::from(b >> 16) + u64::from(b & 0xffff)
}

/// True when IPv4 options hold a loose (131) or strict (137) source route.
fn has_source_route(options: &[u8]) -> bool {
    let mut i = 0;
    while let Some(&kind) = options.get(i) {
        match kind {
            0 => return false,
            1 => i += 1,
            131 | 137 => return true,
            _ => match options.get(i + 1) {
                Some(&len) if len >= 2 => i += usize::from(len),
                _ => return false,
            },
        }
    }
    false
}

/// Lowers the MSS option of the TCP segment `segment` by `by` (never below
/// 1), updating its checksum. Without an MSS option nothing changes.
fn lower_mss(segment: &mut [u8], by: u16) {
    let Ok(tcp) = TcpSegment::new_checked(&*segment) else { return };
    let header_len = tcp.header_len();
    let mut i = crate::wire::tcp::HEADER_LEN;
    while i + 1 < header_len {
        match segment[i] {
            0 => return,
            1 => i += 1,
            kind => {
                let len = usize::from(segment[i + 1]);
                if len < 2 || i + len > header_len {
                    return;
                }
                if kind == 2 && len == 4 {
                    let at = i + 2;
                    let old = crate::wire::be16(segment, at..at + 2);
                    let new = old.saturating_sub(by).max(1);
                    segment[at..at + 2].copy_from_slice(&new.to_be_bytes());
                    fix_checksum_after(segment, at, old, new);
                    return;
                }
                i += len;
            }
        }
    }
}

/// Updates the TCP checksum of `segment` after the 16-bit value at `at`
/// changed from `old` to `new` (at an odd offset the bytes are swapped in the
/// ones-complement sum, RFC 1071).
fn fix_checksum_after(segment: &mut [u8], at: usize, old: u16, new: u16) {
    let (o, n) = if at.is_multiple_of(2) { (old, new) } else { (old.swap_bytes(), new.swap_bytes()) };
    let c = crate::wire::be16(segment, 16..18);
    let c = checksum::update_u16(c, o, n);
    segment[16..18].copy_from_slice(&c.to_be_bytes());
}

/// Removes Ethernet padding after an IP packet of `ip_len` bytes at `l2_len`.
fn trim_padding<F: Frame>(frame: &mut F, l2_len: usize, ip_len: usize) -> Result<(), FwdError> {
    let padding = frame.len().checked_sub(l2_len + ip_len).ok_or(WireError::Truncated)?;
    if padding > 0 && !frame.trim(padding) {
        return Err(FwdError::NoRoom);
    }
    Ok(())
}

/// Replaces the first `old_len` bytes of the IP packet at `l2_len` by
/// `new_len` bytes (content to be written by the caller), keeping the L2
/// header in front and what follows in place: headroom is taken or given back.
fn replace_l3_header<F: Frame>(frame: &mut F, l2_len: usize, old_len: usize, new_len: usize) -> Result<(), FwdError> {
    if new_len > old_len {
        if !frame.insert_gap(l2_len, new_len - old_len) {
            return Err(FwdError::NoRoom);
        }
    } else if old_len > new_len {
        let shrink = old_len - new_len;
        if frame.len() < l2_len + old_len {
            return Err(WireError::Truncated.into());
        }
        frame.data_mut().copy_within(0..l2_len, shrink);
        if !frame.adj(shrink) {
            return Err(FwdError::NoRoom);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::VecFrame;
    use crate::fwd::fixtures6::{fixture, frame, ip_of, L2};

    const DELTA: u32 = 0x9000_0003;

    fn v6(a: &str, port: u16) -> SocketAddrV6 {
        SocketAddrV6::new(a.parse().expect("addr"), port, 0, 0)
    }

    fn v4(a: &str, port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(a.parse().expect("addr"), port)
    }

    fn client() -> SocketAddrV6 {
        v6("2001:db8::1", 40000)
    }
    fn vip() -> SocketAddrV6 {
        v6("2001:db8::64", 80)
    }
    fn local() -> SocketAddrV4 {
        v4("10.1.0.200", 5001)
    }
    fn real() -> SocketAddrV4 {
        v4("10.1.0.11", 8080)
    }

    /// The frame's ethertype (the two bytes before the IP packet).
    fn ethertype(f: &VecFrame) -> [u8; 2] {
        let d = f.to_vec();
        [d[L2 - 2], d[L2 - 1]]
    }

    #[test]
    fn ipv6_client_packets_become_ipv4_as_scapy_builds_them() {
        let cases = [
            ("SYN: seq + delta, timestamps stripped, traffic class to TOS", "n64_syn_in", "n64_syn_out"),
            ("data", "n64_data_in", "n64_data_out"),
            ("udp", "n64_udp_in", "n64_udp_out"),
            ("hop-by-hop and destination options dropped", "n64_chain_in", "n64_chain_out"),
            ("atomic fragment: ID from the fragment header, DF clear", "n64_atomic_in", "n64_atomic_out"),
        ];
        for (what, input, expected) in cases {
            let mut f = frame(input);
            let mac = f.to_vec()[..L2 - 2].to_vec();
            assert_eq!(xmit_inbound(&mut f, L2, local(), real(), DELTA), Ok(NextHop::Routed(*real().ip())), "{what}");
            assert_eq!(ip_of(&f), fixture(expected), "{what}");
            assert_eq!(ethertype(&f), [0x08, 0x00], "{what}");
            assert_eq!(f.to_vec()[..L2 - 2], mac[..], "{what}: MAC addresses kept for the caller");
        }
    }

    #[test]
    fn ipv4_replies_become_ipv6_as_scapy_builds_them() {
        let cases = [
            ("SYN-ACK: ack - delta, MSS - 20, TOS to traffic class", "n64_synack_in", "n64_synack_out"),
            ("SYN-ACK: MSS at an odd offset", "n64_synack_odd_in", "n64_synack_odd_out"),
            ("ack and SACK edges - delta", "n64_sack_in", "n64_sack_out"),
            ("udp", "n64_reply_udp_in", "n64_reply_udp_out"),
            ("udp without checksum gets one", "n64_reply_udp0_in", "n64_reply_udp_out"),
            ("ipv4 options are not translated", "n64_reply_opts_in", "n64_reply_udp_out"),
        ];
        for (what, input, expected) in cases {
            let mut f = frame(input);
            assert_eq!(xmit_reply(&mut f, L2, vip(), client(), DELTA), Ok(NextHop6::Routed(*client().ip())), "{what}");
            assert_eq!(ip_of(&f), fixture(expected), "{what}");
            assert_eq!(ethertype(&f), [0x86, 0xdd], "{what}");
        }
        // Ethernet padding after a short IPv4 packet is not translated.
        let mut padded = frame("n64_reply_udp_in").to_vec();
        padded.resize(64, 0);
        let mut f = VecFrame::new(&padded);
        xmit_reply(&mut f, L2, vip(), client(), DELTA).expect("padded");
        assert_eq!(ip_of(&f), fixture("n64_reply_udp_out"));
    }

    #[test]
    fn what_nat64_does_not_translate_is_refused_unchanged() {
        let inbound: [(&str, &str, FwdError); 3] = [
            ("a fragment", "n64_frag_in", FwdError::Untranslatable("nat64: fragmented ipv6 packet")),
            ("icmpv6", "echo6", FwdError::Protocol(58)),
            ("zero udp checksum", "udp_zero_csum6", FwdError::Wire(WireError::Malformed("udp over ipv6: zero checksum"))),
        ];
        for (what, input, err) in inbound {
            let mut f = frame(input);
            let before = f.to_vec();
            assert_eq!(xmit_inbound(&mut f, L2, local(), real(), DELTA), Err(err), "{what}");
            assert_eq!(f.to_vec(), before, "{what}");
        }
        let reply: [(&str, &str, FwdError); 3] = [
            ("a source route", "n64_reply_lsrr_in", FwdError::Untranslatable("nat64: ipv4 source route option")),
            ("a fragment", "n64_reply_frag_in", FwdError::Untranslatable("nat64: fragmented ipv4 packet")),
            ("icmp", "n64_icmp_port_in", FwdError::Protocol(1)),
        ];
        for (what, input, err) in reply {
            let mut f = frame(input);
            let before = f.to_vec();
            assert_eq!(xmit_reply(&mut f, L2, vip(), client(), DELTA), Err(err), "{what}");
            assert_eq!(f.to_vec(), before, "{what}");
        }
        // A UDP length below the header: refused before any byte changes.
        let mut bad = frame("n64_reply_udp_in").to_vec();
        bad[L2 + 20 + 5] = 4;
        let mut f = VecFrame::new(&bad);
        assert_eq!(xmit_reply(&mut f, L2, vip(), client(), DELTA), Err(WireError::Malformed("udp: length below 8").into()));
        assert_eq!(f.to_vec(), bad);
    }

    #[test]
    fn the_seq_delta_gives_the_real_server_the_ipv4_tuple_isn() {
        let syn = fixture("n64_syn_in");
        let delta = new_seq_delta(&syn, local(), real()).expect("syn");
        let mut f = frame("n64_syn_in");
        xmit_inbound(&mut f, L2, local(), real(), delta).expect("translate");
        let out = ip_of(&f);
        let seen = TcpSegment::new_checked(&out[20..]).expect("tcp").seq_number();
        assert_eq!(seen, 0x7f00_0010u32.wrapping_add(delta));
        assert!(new_seq_delta(&fixture("n64_udp_in"), local(), real()).is_err());
    }

    fn to6() -> Icmp4To6 {
        Icmp4To6 {
            outer_src: *vip().ip(),
            outer_dst: *client().ip(),
            quoted_src: client(),
            quoted_dst: vip(),
            quoted_seq_shift: 0u32.wrapping_sub(DELTA),
            mtu6: 1500,
        }
    }

    fn to4() -> Icmp6To4 {
        Icmp6To4 {
            outer_src: *local().ip(),
            outer_dst: *real().ip(),
            quoted_src: real(),
            quoted_dst: local(),
            quoted_seq_shift: 0,
            mtu4: 1500,
        }
    }

    #[test]
    fn icmpv4_errors_become_icmpv6_errors_by_rfc7915() {
        let cases = [
            ("fragmentation needed → packet too big, MTU + 20", "n64_icmp_fn_in", "n64_icmp_fn_out"),
            ("port unreachable", "n64_icmp_port_in", "n64_icmp_port_out"),
            ("protocol unreachable → parameter problem, next header", "n64_icmp_proto_in", "n64_icmp_proto_out"),
            ("communication administratively prohibited", "n64_icmp_admin_in", "n64_icmp_admin_out"),
            ("parameter problem: TTL → hop limit", "n64_icmp_param_in", "n64_icmp_param_out"),
            ("time exceeded quoting 8 bytes", "n64_icmp_te_in", "n64_icmp_te_out"),
        ];
        for (what, input, expected) in cases {
            let mut f = frame(input);
            assert_eq!(icmp4_to_6(&mut f, L2, &to6()), Ok(*client().ip()), "{what}");
            assert_eq!(ip_of(&f), fixture(expected), "{what}");
            assert_eq!(ethertype(&f), [0x86, 0xdd], "{what}");
        }
        // The IPv6 link's MTU caps the advertised one.
        let mut f = frame("n64_icmp_fn_in");
        icmp4_to_6(&mut f, L2, &Icmp4To6 { mtu6: 1400, ..to6() }).expect("ptb");
        assert_eq!(Icmpv6Packet::new_checked(&ip_of(&f)[40..]).expect("icmpv6").mtu(), 1400);
    }

    #[test]
    fn icmpv6_errors_become_icmpv4_errors_by_rfc7915() {
        let cases = [
            ("packet too big → fragmentation needed, MTU - 20", "n64_icmp6_ptb_in", "n64_icmp6_ptb_out"),
            ("port unreachable", "n64_icmp6_port_in", "n64_icmp6_port_out"),
            ("time exceeded", "n64_icmp6_te_in", "n64_icmp6_te_out"),
            ("parameter problem: destination address", "n64_icmp6_param_in", "n64_icmp6_param_out"),
            ("unrecognised next header → protocol unreachable", "n64_icmp6_nh_in", "n64_icmp6_nh_out"),
            ("a long quote is cut to 576 bytes", "n64_icmp6_big_in", "n64_icmp6_big_out"),
        ];
        for (what, input, expected) in cases {
            let mut f = frame(input);
            assert_eq!(icmp6_to_4(&mut f, L2, &to4()), Ok(*real().ip()), "{what}");
            assert_eq!(ip_of(&f), fixture(expected), "{what}");
            assert_eq!(ethertype(&f), [0x08, 0x00], "{what}");
        }
        let mut f = frame("n64_icmp6_ptb_in");
        icmp6_to_4(&mut f, L2, &Icmp6To4 { mtu4: 1200, ..to4() }).expect("frag needed");
        assert_eq!(IcmpPacket::new_checked(&ip_of(&f)[20..]).expect("icmp").rest_of_header(), 1200);
    }

    #[test]
    fn untranslatable_errors_are_refused_with_a_reason() {
        let v4_cases: [(&str, &str, &str); 5] = [
            ("redirect", "n64_icmp_redirect_in", "nat64: icmpv4 type not translated"),
            ("source quench", "n64_icmp_quench_in", "nat64: icmpv4 type not translated"),
            ("host precedence violation", "n64_icmp_precedence_in", "nat64: icmpv4 unreachable code without icmpv6 equivalent"),
            ("pointer into the options", "n64_icmp_param_opt_in", "nat64: parameter problem pointer without ipv6 field"),
            ("quoting an echo", "n64_icmp_echo_quoted_in", "nat64: quoted packet is neither tcp nor udp"),
        ];
        for (what, input, reason) in v4_cases {
            let mut f = frame(input);
            let before = f.to_vec();
            assert_eq!(icmp4_to_6(&mut f, L2, &to6()), Err(FwdError::Untranslatable(reason)), "{what}");
            assert_eq!(f.to_vec(), before, "{what}");
        }
        let mut f = frame("n64_icmp6_flow_in");
        let before = f.to_vec();
        assert_eq!(icmp6_to_4(&mut f, L2, &to4()), Err(FwdError::Untranslatable("nat64: parameter problem pointer without ipv4 field")));
        assert_eq!(f.to_vec(), before);
        let mut f = frame("echo6");
        assert_eq!(icmp6_to_4(&mut f, L2, &to4()), Err(FwdError::Untranslatable("nat64: icmpv6 type not translated")));
    }

    #[test]
    fn mtu_tables() {
        assert_eq!(plateau(1500), 1492);
        assert_eq!(plateau(1492), 1006);
        assert_eq!(plateau(60), 68);
        assert_eq!((pointer_4to6(3), pointer_4to6(9), pointer_4to6(10), pointer_4to6(19)), (Some(4), Some(6), None, Some(24)));
        assert_eq!((pointer_6to4(5), pointer_6to4(7), pointer_6to4(3), pointer_6to4(40)), (Some(2), Some(8), None, None));
    }

    #[test]
    fn path_mtu_checks_around_the_translation() {
        // n64_data_in: 40 + 20 + 27 bytes of IPv6, 67 bytes once IPv4.
        let ip6 = fixture("n64_data_in");
        assert_eq!(too_big_inbound(&ip6, 67), Ok(None));
        assert_eq!(too_big_inbound(&ip6, 66), Ok(Some(86)));
        assert!(too_big_inbound(&ip6[..50], 1500).is_err());
        // n64_sack_in: 20 + 40 + 4 bytes of IPv4 with DF, 84 once IPv6.
        let ip4 = fixture("n64_sack_in");
        assert_eq!(ip4.len(), 64);
        assert_eq!(too_big_reply(&ip4, 84), Ok(None));
        assert_eq!(too_big_reply(&ip4, 83), Ok(Some(63)));
        let no_df = fixture("n64_reply_udp_in");
        assert_eq!(too_big_reply(&no_df, 40), Err(FwdError::Untranslatable("nat64: ipv4 packet without DF above the ipv6 mtu")));
        assert_eq!(too_big_reply(&no_df, 1500), Ok(None));
    }
}
