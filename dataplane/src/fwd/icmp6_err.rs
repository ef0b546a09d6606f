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
}
