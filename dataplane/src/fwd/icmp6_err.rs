//! ICMPv6 errors rvs sends itself (RFC 4443), the IPv6 counterpart of
//! [`super::icmp_err::make_error`].
//!
//! * Time Exceeded (type 3, code 0) for a packet whose hop limit expires here
//!   ([`super::hop6`]);
//! * Packet Too Big (type 2) with the MTU the sender must fit, for a packet
//!   that does not fit the egress link once encapsulated (TUN): IPv6 routers,
//!   the director included, never fragment;
//! * Destination Unreachable (type 1, e.g. code 4 port unreachable when no real
//!   server is available).
//!
//! The error quotes as much of the offending packet as fits in the minimum
//! IPv6 MTU, 1280 bytes for the whole error (RFC 4443 §2.4(c)), and is never
//! sent about an ICMPv6 error, nor to a source that is unspecified (`::`) or
//! multicast (§2.4(e)), nor about a packet sent to a multicast destination
//! except Packet Too Big (§2.4(e.2, e.3)). The checksum covers the IPv6
//! pseudo-header. The caller rate-limits answers
//! ([`super::icmp_err::AnswerLimit`]).

use std::net::{Ipv6Addr, SocketAddrV6};

use crate::frame::Frame;
use crate::wire::icmpv6::{self, msg_type, MAX_ERROR_LEN};
use crate::wire::ipv6::{self, next_header};
use crate::wire::{ipv6_ext, Icmpv6Packet, Ipv6Packet, WireError};

use super::FwdError;

/// Hop limit of the errors rvs originates (Linux's default `hop_limit`).
pub const HOP_LIMIT: u8 = 64;

/// Bytes of the offending packet an error can quote: 1280 − 40 − 8.
pub const MAX_QUOTE: usize = MAX_ERROR_LEN - ipv6::HEADER_LEN - icmpv6::HEADER_LEN;

/// True when a packet from `src` may be answered with an ICMPv6 error: a
/// unicast source (not `::`, not multicast; RFC 4443 §2.4(e.4)).
pub fn may_answer6(src: Ipv6Addr) -> bool {
    !src.is_unspecified() && !src.is_multicast()
}

/// True when the IPv6 packet `ip` carries an ICMPv6 error message (after its
/// extension headers). A chain that cannot be walked counts as an error
/// (never answered), so a malformed packet never gets a reply.
pub fn carries_error(ip: &Ipv6Packet<&[u8]>) -> bool {
    match ipv6_ext::walk(ip.next_header(), ip.payload()) {
        Ok(chain) if chain.protocol == next_header::ICMPV6 => {
            chain.fragment.is_some_and(|f| !f.is_first()) || ip.payload().get(chain.offset).is_none_or(|&t| icmpv6::is_error_type(t))
        }
        Ok(_) => false,
        Err(_) => true,
    }
}

/// Turns the frame holding the IPv6 packet at `l2_len` into an ICMPv6 error
/// (`msg_type`/`code`, with `rest` as the second header word: the MTU of a
/// Packet Too Big, the pointer of a Parameter Problem, else 0) from `src` back
/// to the packet's source, quoting the packet from its IPv6 header on, cut to
/// [`MAX_QUOTE`] bytes (Ethernet padding is never quoted). Returns the address
/// the error goes to. Packets RFC 4443 §2.4(e) forbids answering fail with
/// [`FwdError::NoAnswer`], and the frame is left unchanged.
pub fn make_error6<F: Frame>(frame: &mut F, l2_len: usize, src: Ipv6Addr, msg_type: u8, code: u8, rest: u32) -> Result<Ipv6Addr, FwdError> {
    let (to, quote_len) = {
        let ip = Ipv6Packet::new_checked(frame.data().get(l2_len..).ok_or(WireError::Truncated)?)?;
        let to_multicast = ip.dst_addr().is_multicast() && msg_type != msg_type::PACKET_TOO_BIG;
        if !may_answer6(ip.src_addr()) || to_multicast || carries_error(&ip) {
            return Err(FwdError::NoAnswer);
        }
        (ip.src_addr(), (ipv6::HEADER_LEN + usize::from(ip.payload_len())).min(MAX_QUOTE))
    };
    let excess = frame.len() - l2_len - quote_len;
    if !frame.trim(excess) {
        return Err(FwdError::NoRoom);
    }
    let added = ipv6::HEADER_LEN + icmpv6::HEADER_LEN;
    if !frame.insert_gap(l2_len, added) {
        return Err(FwdError::NoRoom);
    }
    let data = frame.data_mut();
    let ip = &mut data[l2_len..];
    // Fits: quote_len + 48 <= 1280.
    let payload_len = (icmpv6::HEADER_LEN + quote_len) as u16;
    ipv6::fill_header(ip, src, to, next_header::ICMPV6, payload_len, HOP_LIMIT)?;
    let mut msg = Icmpv6Packet::new_unchecked(&mut ip[ipv6::HEADER_LEN..]);
    msg.set_msg_type(msg_type);
    msg.set_code(code);
    msg.set_rest_of_header(rest);
    msg.fill_checksum(src, to);
    Ok(to)
}

/// The flow an ICMPv6 error is about: the quoted packet's protocol and ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuotedFlow6 {
    /// TCP or UDP.
    pub protocol: u8,
    /// Source of the quoted packet.
    pub src: SocketAddrV6,
    /// Destination of the quoted packet.
    pub dst: SocketAddrV6,
}

/// The flow of the packet quoted by the ICMPv6 error message `msg` (the whole
/// ICMPv6 message), if it is TCP or UDP and its ports are quoted. The quoted
/// extension headers are walked within the quote.
pub fn quoted_flow6(msg: &[u8]) -> Option<QuotedFlow6> {
    let quote = msg.get(icmpv6::HEADER_LEN..)?;
    let header = quote.get(..ipv6::HEADER_LEN)?;
    if header[0] >> 4 != 6 {
        return None;
    }
    let chain = ipv6_ext::walk(header[6], &quote[ipv6::HEADER_LEN..]).ok()?;
    if chain.protocol != next_header::TCP && chain.protocol != next_header::UDP || chain.fragment.is_some_and(|f| !f.is_first()) {
        return None;
    }
    let ports = quote.get(ipv6::HEADER_LEN + chain.offset..ipv6::HEADER_LEN + chain.offset + 4)?;
    let addr = |r: std::ops::Range<usize>| {
        let mut a = [0u8; 16];
        a.copy_from_slice(&header[r]);
        Ipv6Addr::from(a)
    };
    Some(QuotedFlow6 {
        protocol: chain.protocol,
        src: SocketAddrV6::new(addr(8..24), u16::from_be_bytes([ports[0], ports[1]]), 0, 0),
        dst: SocketAddrV6::new(addr(24..40), u16::from_be_bytes([ports[2], ports[3]]), 0, 0),
    })
}

/// Address changes to apply to a forwarded ICMPv6 error (the IPv6
/// counterpart of [`super::icmp_err::Translation`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Translation6 {
    /// New outer source address.
    pub outer_src: Option<Ipv6Addr>,
    /// New outer destination address.
    pub outer_dst: Option<Ipv6Addr>,
    /// New source address and port of the quoted packet.
    pub quoted_src: Option<SocketAddrV6>,
    /// New destination address and port of the quoted packet.
    pub quoted_dst: Option<SocketAddrV6>,
    /// Added to the quoted TCP sequence number (FULLNAT's `seq_delta` undone).
    pub quoted_seq_shift: u32,
}

/// Applies `t` to the ICMPv6 error in the IPv6 packet `ip` about a NAT or
/// FULLNAT connection over IPv6, as [`super::icmp_err::translate`] does for
/// IPv4: the outer addresses like a packet in the error's direction, the
/// quoted packet like one in the opposite direction. Extension headers, outer
/// and quoted, are walked and kept. The quoted transport checksum, when the
/// quote holds it, is updated incrementally for the changed words (a quoted
/// UDP checksum of 0 stays 0), and the ICMPv6 checksum is recomputed over the
/// new pseudo-header. Errors: not an ICMPv6 error ([`FwdError::Protocol`] for
/// another upper layer, [`FwdError::Untranslatable`] for an informational
/// message), or a quote too short to hold the quoted ports.
pub fn translate6(ip: &mut [u8], t: &Translation6) -> Result<(), FwdError> {
    let upper = super::l4v6::locate(ip)?;
    if upper.protocol != next_header::ICMPV6 {
        return Err(FwdError::Protocol(upper.protocol));
    }
    let (head, rest) = ip.split_at_mut(upper.offset);
    let msg = rest.get_mut(..upper.len).ok_or(WireError::Truncated)?;
    if !Icmpv6Packet::new_checked(&*msg)?.is_error() {
        return Err(FwdError::Untranslatable("icmpv6: not an error message"));
    }
    let quote = &mut msg[icmpv6::HEADER_LEN..];
    let (quoted_hl, protocol) = {
        let header = quote.get(..ipv6::HEADER_LEN).ok_or(WireError::Truncated)?;
        if header[0] >> 4 != 6 {
            return Err(WireError::Malformed("ipv6: version is not 6").into());
        }
        let chain = ipv6_ext::walk(header[6], &quote[ipv6::HEADER_LEN..])?;
        if chain.protocol != next_header::TCP && chain.protocol != next_header::UDP {
            return Err(FwdError::Protocol(chain.protocol));
        }
        (ipv6::HEADER_LEN + chain.offset, chain.protocol)
    };
    let (qhead, l4) = quote.split_at_mut(quoted_hl);
    if l4.len() < 4 {
        return Err(WireError::Truncated.into());
    }
    let mut words = 0u64;
    for (addr_at, port_at, to) in [(8, 0, t.quoted_src), (24, 2, t.quoted_dst)] {
        if let Some(to) = to {
            words += replace_addr(qhead, addr_at, *to.ip());
            let old = u16::from_be_bytes([l4[port_at], l4[port_at + 1]]);
            l4[port_at..port_at + 2].copy_from_slice(&to.port().to_be_bytes());
            words += u64::from(!old) + u64::from(to.port());
        }
    }
    if protocol == next_header::TCP && t.quoted_seq_shift != 0 {
        if let Some(seq) = l4.get_mut(4..8) {
            let old = u32::from_be_bytes([seq[0], seq[1], seq[2], seq[3]]);
            let new = old.wrapping_add(t.quoted_seq_shift);
            seq.copy_from_slice(&new.to_be_bytes());
            words += u64::from(!(old >> 16) as u16) + u64::from(!(old as u16)) + u64::from(new >> 16) + u64::from(new & 0xffff);
        }
    }
    let at = super::nat6::checksum_offset(protocol);
    if let Some(field) = l4.get_mut(at..at + 2) {
        let old = u16::from_be_bytes([field[0], field[1]]);
        if !(protocol == next_header::UDP && old == 0) {
            let c = super::nat6::adjust(old, words);
            let c = if protocol == next_header::UDP && c == 0 { 0xffff } else { c };
            field.copy_from_slice(&c.to_be_bytes());
        }
    }
    if let Some(a) = t.outer_src {
        replace_addr(head, 8, a);
    }
    if let Some(a) = t.outer_dst {
        replace_addr(head, 24, a);
    }
    let outer = Ipv6Packet::new_unchecked(&*head);
    let (src, dst) = (outer.src_addr(), outer.dst_addr());
    Icmpv6Packet::new_unchecked(msg).fill_checksum(src, dst);
    Ok(())
}

/// Writes the IPv6 address `new` at `at` of `b` (which holds it) and returns
/// Σ(~old + new) over its words.
fn replace_addr(b: &mut [u8], at: usize, new: Ipv6Addr) -> u64 {
    let Some(field) = b.get_mut(at..at + 16) else { return 0 };
    let mut old = [0u8; 16];
    old.copy_from_slice(field);
    field.copy_from_slice(&new.octets());
    super::nat6::addr_words(Ipv6Addr::from(old), new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fwd::fixtures6::{fixture, frame, ip_of, L2};
    use crate::wire::icmpv6::unreachable_code;

    const DIR: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);

    #[test]
    fn errors_match_scapy() {
        let client: Ipv6Addr = "2001:db8::1".parse().expect("addr");
        let cases = [
            ("time exceeded", "te_in", msg_type::TIME_EXCEEDED, 0, 0, "te_out"),
            ("packet too big, quote cut at 1280", "ptb_in", msg_type::PACKET_TOO_BIG, 0, 1460, "ptb_out"),
            ("port unreachable", "unreach_in", msg_type::DEST_UNREACHABLE, unreachable_code::PORT_UNREACHABLE, 0, "unreach_out"),
        ];
        for (what, input, t, code, rest, expected) in cases {
            let mut f = frame(input);
            let l2 = f.to_vec()[..L2].to_vec();
            assert_eq!(make_error6(&mut f, L2, DIR, t, code, rest), Ok(client), "{what}");
            assert_eq!(ip_of(&f), fixture(expected), "{what}");
            assert!(f.len() - L2 <= MAX_ERROR_LEN, "{what}");
            assert_eq!(f.to_vec()[..L2], l2[..], "{what}: Ethernet header kept for the caller");
        }
    }

    #[test]
    fn errors_are_not_answered_where_rfc4443_forbids() {
        let cases = [
            ("an ICMPv6 error", "unreach_out", msg_type::DEST_UNREACHABLE),
            ("from the unspecified address", "from_unspecified", msg_type::DEST_UNREACHABLE),
            ("from a multicast source", "from_multicast", msg_type::TIME_EXCEEDED),
            ("to a multicast group", "to_multicast", msg_type::DEST_UNREACHABLE),
        ];
        for (what, input, t) in cases {
            let mut f = frame(input);
            let before = f.to_vec();
            assert_eq!(make_error6(&mut f, L2, DIR, t, 0, 0), Err(FwdError::NoAnswer), "{what}");
            assert_eq!(f.to_vec(), before, "{what}");
        }
        // Packet Too Big may answer a packet sent to a multicast group.
        let mut f = frame("to_multicast");
        assert!(make_error6(&mut f, L2, DIR, msg_type::PACKET_TOO_BIG, 0, 1280).is_ok());
        // An echo request is answered.
        let mut f = frame("echo6");
        assert!(make_error6(&mut f, L2, DIR, msg_type::DEST_UNREACHABLE, 0, 0).is_ok());
    }

    #[test]
    fn the_quoted_flow_is_read_back() {
        let msg = &fixture("unreach_out")[40..];
        let flow = quoted_flow6(msg).expect("udp quoted");
        assert_eq!(flow.protocol, next_header::UDP);
        assert_eq!(flow.src, SocketAddrV6::new("2001:db8::1".parse().expect("a"), 40000, 0, 0));
        assert_eq!(flow.dst, SocketAddrV6::new("2001:db8::64".parse().expect("a"), 53, 0, 0));
        assert_eq!(quoted_flow6(&msg[..8 + 40 + 3]), None, "ports cut off");
        assert_eq!(quoted_flow6(&msg[..20]), None);
    }

    #[test]
    fn forwarded_errors_match_scapy() {
        let sock = |a: &str, p: u16| SocketAddrV6::new(a.parse().expect("addr"), p, 0, 0);
        let t = Translation6 {
            outer_src: Some("2001:db8::64".parse().expect("vip")),
            outer_dst: Some("2001:db8::1".parse().expect("client")),
            quoted_src: Some(sock("2001:db8::1", 40000)),
            quoted_dst: Some(sock("2001:db8::64", 80)),
            quoted_seq_shift: 0u32.wrapping_sub(0x9000_0003),
        };
        for (what, input, expected) in [
            ("whole quote: quoted TCP checksum updated", "fwd_err_in", "fwd_err_out"),
            ("quote of header + 8 bytes", "fwd_err_short_in", "fwd_err_short_out"),
            ("quote behind a destination options header", "fwd_err_ext_in", "fwd_err_ext_out"),
        ] {
            let mut ip = fixture(input);
            assert_eq!(translate6(&mut ip, &t), Ok(()), "{what}");
            assert_eq!(ip, fixture(expected), "{what}");
        }
        let mut echo = fixture("echo6");
        assert_eq!(translate6(&mut echo, &t), Err(FwdError::Untranslatable("icmpv6: not an error message")));
        let mut tcp = fixture("nat_in_tcp");
        assert_eq!(translate6(&mut tcp, &t), Err(FwdError::Protocol(6)));
        let mut cut = fixture("fwd_err_in")[..40 + 8 + 40 + 2].to_vec();
        cut[5] = 50;
        assert!(translate6(&mut cut, &t).is_err(), "ports cut off");
    }
}
