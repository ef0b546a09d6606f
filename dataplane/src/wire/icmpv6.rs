//! ICMPv6 messages (RFC 4443).
//!
//! ```text
//!  0       8       16              31
//! +-------+-------+---------------+
//! | type  | code  |   checksum    |
//! |  rest of header (echo: ident, seq; too big: MTU; parameter problem: pointer)
//! |  body ...                     |
//! ```
//!
//! An [`Icmpv6Packet`] covers the whole message (the upper-layer bytes after the
//! IPv6 extension headers). Unlike ICMPv4, its checksum covers the IPv6
//! pseudo-header ([`checksum::pseudo_header_v6`]) too, so computing and verifying
//! take the addresses. Neighbour discovery messages have their own views in
//! [`super::nd`].

use std::net::Ipv6Addr;

use super::checksum;
use super::ipv6::next_header;
use super::WireError;

/// ICMPv6 message types.
pub mod msg_type {
    /// Destination unreachable (error; see [`super::unreachable_code`]).
    pub const DEST_UNREACHABLE: u8 = 1;
    /// Packet too big (error; the rest of header is the next-hop MTU).
    pub const PACKET_TOO_BIG: u8 = 2;
    /// Time exceeded (error; code 0 hop limit, 1 reassembly).
    pub const TIME_EXCEEDED: u8 = 3;
    /// Parameter problem (error; the rest of header points at the bad byte).
    pub const PARAM_PROBLEM: u8 = 4;
    /// Echo request.
    pub const ECHO_REQUEST: u8 = 128;
    /// Echo reply.
    pub const ECHO_REPLY: u8 = 129;
    /// Router solicitation (RFC 4861).
    pub const ROUTER_SOLICIT: u8 = 133;
    /// Router advertisement (RFC 4861).
    pub const ROUTER_ADVERT: u8 = 134;
    /// Neighbour solicitation (RFC 4861).
    pub const NEIGHBOR_SOLICIT: u8 = 135;
    /// Neighbour advertisement (RFC 4861).
    pub const NEIGHBOR_ADVERT: u8 = 136;
    /// Redirect (RFC 4861).
    pub const REDIRECT: u8 = 137;
}

/// Codes of [`msg_type::DEST_UNREACHABLE`].
pub mod unreachable_code {
    /// No route to destination.
    pub const NO_ROUTE: u8 = 0;
    /// Communication administratively prohibited.
    pub const ADMIN_PROHIBITED: u8 = 1;
    /// Address unreachable (neighbour resolution failed).
    pub const ADDR_UNREACHABLE: u8 = 3;
    /// Port unreachable.
    pub const PORT_UNREACHABLE: u8 = 4;
}

/// Codes of [`msg_type::PARAM_PROBLEM`].
pub mod param_problem_code {
    /// Erroneous header field.
    pub const ERRONEOUS_FIELD: u8 = 0;
    /// Unrecognised next header type.
    pub const UNRECOGNIZED_NEXT_HEADER: u8 = 1;
    /// Unrecognised IPv6 option.
    pub const UNRECOGNIZED_OPTION: u8 = 2;
    /// The first fragment lacks the upper-layer header (RFC 7112).
    pub const INCOMPLETE_CHAIN: u8 = 3;
}

/// Length of the fixed ICMPv6 header (type, code, checksum, 4 bytes rest of header).
pub const HEADER_LEN: usize = 8;

/// The most an ICMPv6 error may carry in all, its IPv6 header included (RFC 4443
/// §2.4(c)): the minimum MTU.
pub const MAX_ERROR_LEN: usize = 1280;

mod field {
    use std::ops::Range;
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Range<usize> = 2..4;
    pub const REST: Range<usize> = 4..8;
    pub const ECHO_IDENT: Range<usize> = 4..6;
    pub const ECHO_SEQ: Range<usize> = 6..8;
}

/// True for an error message type (0..=127; RFC 4443 §2.1): never answered with
/// another error.
pub fn is_error_type(t: u8) -> bool {
    t < 128
}

/// A view of an ICMPv6 message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Icmpv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv6Packet<T> {
    /// Wraps `buffer` without validation.
    pub fn new_unchecked(buffer: T) -> Self {
        Icmpv6Packet { buffer }
    }

    /// Wraps `buffer`, checking it holds the 8-byte header.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let p = Self::new_unchecked(buffer);
        p.check()?;
        Ok(p)
    }

    /// Validates the length so that no accessor can panic.
    pub fn check(&self) -> Result<(), WireError> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The whole message.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    fn read_u16(&self, r: std::ops::Range<usize>) -> u16 {
        super::be16(self.buffer.as_ref(), r)
    }

    /// Message type (see [`msg_type`]).
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    /// Message code.
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    /// Checksum as stored.
    pub fn checksum(&self) -> u16 {
        self.read_u16(field::CHECKSUM)
    }

    /// True for an error message (type below 128).
    pub fn is_error(&self) -> bool {
        is_error_type(self.msg_type())
    }

    /// The 4 rest-of-header bytes as a big-endian word.
    pub fn rest_of_header(&self) -> u32 {
        super::be32(self.buffer.as_ref(), field::REST)
    }

    /// Echo identifier (bytes 4..6; meaningful for echo request/reply).
    pub fn echo_ident(&self) -> u16 {
        self.read_u16(field::ECHO_IDENT)
    }

    /// Echo sequence number (bytes 6..8).
    pub fn echo_seq(&self) -> u16 {
        self.read_u16(field::ECHO_SEQ)
    }

    /// The next-hop MTU of a packet-too-big message (the rest of header).
    pub fn mtu(&self) -> u32 {
        self.rest_of_header()
    }

    /// The offset of the offending byte of a parameter problem (the rest of header).
    pub fn pointer(&self) -> u32 {
        self.rest_of_header()
    }

    /// Bytes after the 8-byte header: echo data, or the invoking packet (as much
    /// of it as fits) of an error.
    pub fn body(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }

    /// True when the checksum over the IPv6 pseudo-header (`src`, `dst`) and the
    /// whole message is correct.
    pub fn verify_checksum(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        checksum::upper_layer_v6(src, dst, next_header::ICMPV6, self.buffer.as_ref()) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv6Packet<T> {
    fn write_u16(&mut self, r: std::ops::Range<usize>, v: u16) {
        self.buffer.as_mut()[r].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the message type.
    pub fn set_msg_type(&mut self, value: u8) {
        self.buffer.as_mut()[field::TYPE] = value;
    }

    /// Sets the code.
    pub fn set_code(&mut self, value: u8) {
        self.buffer.as_mut()[field::CODE] = value;
    }

    /// Sets the stored checksum.
    pub fn set_checksum(&mut self, value: u16) {
        self.write_u16(field::CHECKSUM, value);
    }

    /// Sets the 4 rest-of-header bytes (an MTU, a pointer, or ident and seq).
    pub fn set_rest_of_header(&mut self, value: u32) {
        self.buffer.as_mut()[field::REST].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the echo identifier.
    pub fn set_echo_ident(&mut self, value: u16) {
        self.write_u16(field::ECHO_IDENT, value);
    }

    /// Sets the echo sequence number.
    pub fn set_echo_seq(&mut self, value: u16) {
        self.write_u16(field::ECHO_SEQ, value);
    }

    /// The body, mutable.
    pub fn body_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }

    /// Computes and stores the checksum over the IPv6 pseudo-header and the whole
    /// message.
    pub fn fill_checksum(&mut self, src: Ipv6Addr, dst: Ipv6Addr) {
        self.set_checksum(0);
        let c = checksum::upper_layer_v6(src, dst, next_header::ICMPV6, self.buffer.as_ref());
        self.set_checksum(c);
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Icmpv6Packet<&'a T> {
    /// Like [`Icmpv6Packet::body`], but the slice borrows the underlying buffer.
    pub fn into_body(self) -> &'a [u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::test_fixtures::scapy;
    use crate::wire::{ipv6, Ipv6Packet, TcpSegment, UdpDatagram};
    use proptest::prelude::*;

    fn parse(f: &[u8]) -> (Ipv6Packet<&[u8]>, Icmpv6Packet<&[u8]>) {
        let ip = Ipv6Packet::new_checked(&f[14..]).expect("ipv6");
        let c = ip.upper_layer().expect("walk");
        assert_eq!(c.protocol, next_header::ICMPV6);
        let m = Icmpv6Packet::new_checked(&ip.clone().into_payload()[c.offset..]).expect("icmpv6");
        (ip, m)
    }

    #[test]
    fn scapy_echo() {
        let f = scapy("echo");
        let (ip, m) = parse(&f);
        assert_eq!((m.msg_type(), m.code(), m.is_error()), (msg_type::ECHO_REQUEST, 0, false));
        assert_eq!((m.echo_ident(), m.echo_seq()), (0x1234, 1));
        assert_eq!(m.checksum(), 0x8013);
        assert_eq!(m.body(), b"abcdefgh");
        assert!(m.verify_checksum(ip.src_addr(), ip.dst_addr()));
        assert!(!m.verify_checksum(ip.src_addr(), ipv6::ALL_NODES));
    }

    /// An echo request turned into its reply in place equals scapy's reply.
    #[test]
    fn echo_to_reply_equals_scapy() {
        let mut f = scapy("echo");
        let want = scapy("echo_reply");
        f[0..6].copy_from_slice(&want[0..6]);
        f[6..12].copy_from_slice(&want[6..12]);
        let mut ip = Ipv6Packet::new_checked(&mut f[14..]).expect("ipv6");
        let (s, d) = (ip.src_addr(), ip.dst_addr());
        ip.set_src_addr(d);
        ip.set_dst_addr(s);
        let mut m = Icmpv6Packet::new_checked(ip.into_payload_mut()).expect("icmpv6");
        // Incremental: the type/code word changes, the addresses only swap.
        let c = checksum::update_u16(m.checksum(), u16::from(msg_type::ECHO_REQUEST) << 8, u16::from(msg_type::ECHO_REPLY) << 8);
        m.set_msg_type(msg_type::ECHO_REPLY);
        m.set_checksum(c);
        assert!(m.verify_checksum(d, s));
        assert_eq!(f, want);
        let mut g = want.clone();
        let mut m = Icmpv6Packet::new_checked(&mut g[54..]).expect("icmpv6");
        m.fill_checksum(d, s);
        assert_eq!(g, want);
    }

    #[test]
    fn scapy_errors() {
        let f = scapy("too_big");
        let (ip, m) = parse(&f);
        assert!(m.is_error());
        assert_eq!((m.msg_type(), m.code(), m.mtu()), (msg_type::PACKET_TOO_BIG, 0, 1280));
        assert!(m.verify_checksum(ip.src_addr(), ip.dst_addr()));
        let inner = Ipv6Packet::new_checked(m.clone().into_body()).expect("quoted");
        let seg = TcpSegment::new_checked(inner.payload()).expect("quoted tcp");
        assert_eq!(seg.dst_port(), 80);
        assert!(seg.verify_checksum_v6(inner.src_addr(), inner.dst_addr()));

        let f = scapy("unreach");
        let (ip, m) = parse(&f);
        assert!(m.is_error());
        assert_eq!((m.msg_type(), m.code()), (msg_type::DEST_UNREACHABLE, unreachable_code::PORT_UNREACHABLE));
        assert!(m.verify_checksum(ip.src_addr(), ip.dst_addr()));
        let inner = Ipv6Packet::new_checked(m.body()).expect("quoted");
        assert_eq!(UdpDatagram::new_checked(inner.payload()).expect("udp").dst_port(), 53);
    }

    #[test]
    fn setters_and_short() {
        assert_eq!(Icmpv6Packet::new_checked(&[0u8; 7][..]).err(), Some(WireError::Truncated));
        let mut b = [0u8; 12];
        let mut m = Icmpv6Packet::new_checked(&mut b[..]).expect("8+");
        m.set_msg_type(msg_type::PARAM_PROBLEM);
        m.set_code(param_problem_code::UNRECOGNIZED_NEXT_HEADER);
        m.set_rest_of_header(6);
        m.body_mut().copy_from_slice(&[1, 2, 3, 4]);
        m.fill_checksum(Ipv6Addr::LOCALHOST, ipv6::ALL_NODES);
        assert!(m.verify_checksum(Ipv6Addr::LOCALHOST, ipv6::ALL_NODES));
        assert_eq!((m.pointer(), m.body()), (6, &[1u8, 2, 3, 4][..]));
        m.set_echo_ident(9);
        m.set_echo_seq(10);
        assert_eq!(m.rest_of_header(), 0x0009_000a);
        assert!(is_error_type(msg_type::TIME_EXCEEDED) && !is_error_type(msg_type::NEIGHBOR_SOLICIT));
        assert_eq!(m.into_inner().len(), 12);
    }

    proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..40), src in any::<[u8; 16]>()) {
            if let Ok(mut p) = Icmpv6Packet::new_checked(data) {
                let s = Ipv6Addr::from(src);
                let _ = (p.msg_type(), p.code(), p.checksum(), p.echo_ident(), p.echo_seq(), p.mtu(), p.body(), p.is_error());
                p.fill_checksum(s, ipv6::ALL_NODES);
                prop_assert!(p.verify_checksum(s, ipv6::ALL_NODES));
                let _ = p.body_mut();
            }
        }
    }
}
