//! IPv6 packets (RFC 8200).
//!
//! ```text
//!  0       4               12                              31
//! +-------+---------------+-------------------------------+
//! |version| traffic class |          flow label           |
//! +-------+---------------+-------+-----------+-----------+
//! |        payload length         |next header| hop limit |
//! +-------------------------------+-----------+-----------+
//! |                 source address (16 bytes)             |
//! |              destination address (16 bytes)           |
//! +-------------------------------------------------------+
//! ```
//!
//! The buffer may be longer than `40 + payload_len` (Ethernet padding of short
//! frames): [`Ipv6Packet::payload`] is exactly `40..40 + payload_len`. The payload
//! starts with the extension headers, if any: walk them with
//! [`Ipv6Packet::ext_headers`] (see [`super::ipv6_ext`]) to find the upper-layer
//! protocol.
//!
//! Jumbograms (RFC 2675: payload length 0 and a hop-by-hop jumbo payload option)
//! are refused by [`Ipv6Packet::check`]: Ethernet never carries them.

use std::net::Ipv6Addr;

use super::ethernet::MacAddr;
use super::ipv6_ext::{self, ExtHeaders};
use super::WireError;

/// IPv6 next-header values (the IANA protocol numbers an IPv6 header or an
/// extension header may name next).
pub mod next_header {
    /// IPv6 hop-by-hop options (only as the first header).
    pub const HOP_BY_HOP: u8 = 0;
    /// IP-in-IPv6 (IPv4 tunnelled over IPv6).
    pub const IPIP: u8 = 4;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// IPv6-in-IPv6 encapsulation.
    pub const IPV6: u8 = 41;
    /// Routing header.
    pub const ROUTING: u8 = 43;
    /// Fragment header.
    pub const FRAGMENT: u8 = 44;
    /// Encapsulating security payload (opaque: ends a walk).
    pub const ESP: u8 = 50;
    /// Authentication header (ends a walk).
    pub const AH: u8 = 51;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
    /// No next header: nothing follows.
    pub const NO_NEXT: u8 = 59;
    /// Destination options.
    pub const DEST_OPTS: u8 = 60;
}

/// Length of the fixed IPv6 header.
pub const HEADER_LEN: usize = 40;

/// The minimum link MTU every IPv6 link supports (RFC 8200 §5).
pub const MIN_MTU: u16 = 1280;

mod field {
    use std::ops::Range;
    pub const VER_TC_FLOW: Range<usize> = 0..4;
    pub const LENGTH: Range<usize> = 4..6;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC_ADDR: Range<usize> = 8..24;
    pub const DST_ADDR: Range<usize> = 24..40;
}

const FLOW_MASK: u32 = 0x000f_ffff;

/// A view of an IPv6 packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Wraps `buffer` without validation.
    pub fn new_unchecked(buffer: T) -> Self {
        Ipv6Packet { buffer }
    }

    /// Wraps `buffer`, checking: at least 40 bytes, version 6,
    /// `40 + payload_len <= buffer length`, and no jumbogram.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let p = Self::new_unchecked(buffer);
        p.check()?;
        Ok(p)
    }

    /// Validates lengths and version so that no accessor can panic.
    pub fn check(&self) -> Result<(), WireError> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if self.version() != 6 {
            return Err(WireError::Malformed("ipv6: version is not 6"));
        }
        if self.payload_len() == 0 && self.next_header() == next_header::HOP_BY_HOP {
            return Err(WireError::Malformed("ipv6: jumbogram (payload length 0 with hop-by-hop options)"));
        }
        if HEADER_LEN + usize::from(self.payload_len()) > len {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn read_ip(&self, r: std::ops::Range<usize>) -> Ipv6Addr {
        let mut a = [0u8; 16];
        if let Some(b) = self.buffer.as_ref().get(r) {
            a.copy_from_slice(b);
        }
        Ipv6Addr::from(a)
    }

    fn first_word(&self) -> u32 {
        super::be32(self.buffer.as_ref(), field::VER_TC_FLOW)
    }

    /// IP version (6).
    pub fn version(&self) -> u8 {
        (self.first_word() >> 28) as u8
    }

    /// Traffic class (DSCP in the high 6 bits, ECN in the low 2).
    pub fn traffic_class(&self) -> u8 {
        (self.first_word() >> 20) as u8
    }

    /// Flow label (20 bits).
    pub fn flow_label(&self) -> u32 {
        self.first_word() & FLOW_MASK
    }

    /// Payload length in bytes: everything after the 40-byte header, extension
    /// headers included.
    pub fn payload_len(&self) -> u16 {
        super::be16(self.buffer.as_ref(), field::LENGTH)
    }

    /// The type of the header after the fixed one (see [`next_header`]).
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NEXT_HEADER]
    }

    /// Hop limit.
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    /// Source address.
    pub fn src_addr(&self) -> Ipv6Addr {
        self.read_ip(field::SRC_ADDR)
    }

    /// Destination address.
    pub fn dst_addr(&self) -> Ipv6Addr {
        self.read_ip(field::DST_ADDR)
    }

    /// The fixed header bytes (`0..40`).
    pub fn header(&self) -> &[u8] {
        &self.buffer.as_ref()[..HEADER_LEN]
    }

    /// The payload: bytes `40..40 + payload_len` (trailing padding excluded),
    /// extension headers first.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..HEADER_LEN + usize::from(self.payload_len())]
    }

    /// An iterator over the extension headers of the payload (bounded; see
    /// [`super::ipv6_ext`]).
    pub fn ext_headers(&self) -> ExtHeaders<'_> {
        ExtHeaders::new(self.next_header(), self.payload())
    }

    /// Walks the extension headers to the upper-layer header: its protocol and
    /// offset in [`Ipv6Packet::payload`], and the fragment header's fields if
    /// there is one (see [`ipv6_ext::walk`]).
    pub fn upper_layer(&self) -> Result<ipv6_ext::Chain, WireError> {
        ipv6_ext::walk(self.next_header(), self.payload())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    fn write_first_word(&mut self, v: u32) {
        self.buffer.as_mut()[field::VER_TC_FLOW].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets version 6, keeping the traffic class and the flow label.
    pub fn set_version(&mut self) {
        let w = self.first_word();
        self.write_first_word((w & 0x0fff_ffff) | (6 << 28));
    }

    /// Sets the traffic class.
    pub fn set_traffic_class(&mut self, value: u8) {
        let w = self.first_word();
        self.write_first_word((w & 0xf00f_ffff) | (u32::from(value) << 20));
    }

    /// Sets the flow label (only its low 20 bits are kept).
    pub fn set_flow_label(&mut self, value: u32) {
        let w = self.first_word();
        self.write_first_word((w & !FLOW_MASK) | (value & FLOW_MASK));
    }

    /// Sets the payload length. Keep `40 + payload_len <= buffer length`, or
    /// [`Ipv6Packet::payload`] will panic; re-validate with [`Ipv6Packet::check`].
    pub fn set_payload_len(&mut self, value: u16) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the next header.
    pub fn set_next_header(&mut self, value: u8) {
        self.buffer.as_mut()[field::NEXT_HEADER] = value;
    }

    /// Sets the hop limit.
    pub fn set_hop_limit(&mut self, value: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = value;
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, addr: Ipv6Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&addr.octets());
    }

    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, addr: Ipv6Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&addr.octets());
    }

    /// The payload, mutable: bytes `40..40 + payload_len`.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = HEADER_LEN + usize::from(self.payload_len());
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Ipv6Packet<&'a T> {
    /// Like [`Ipv6Packet::payload`], but the slice borrows the underlying buffer rather
    /// than the view, so it outlives it.
    pub fn into_payload(self) -> &'a [u8] {
        let end = HEADER_LEN + usize::from(self.payload_len());
        &self.buffer.as_ref()[HEADER_LEN..end]
    }
}

impl<'a> Ipv6Packet<&'a mut [u8]> {
    /// Like [`Ipv6Packet::payload_mut`], but the slice borrows the underlying buffer
    /// for its whole lifetime, consuming the view.
    pub fn into_payload_mut(self) -> &'a mut [u8] {
        let end = HEADER_LEN + usize::from(self.payload_len());
        &mut self.buffer[HEADER_LEN..end]
    }
}

/// The Ethernet multicast address an IPv6 multicast address maps to (RFC 2464
/// §7): `33:33` followed by the address's last 4 bytes.
pub fn multicast_mac(addr: Ipv6Addr) -> MacAddr {
    let o = addr.octets();
    MacAddr([0x33, 0x33, o[12], o[13], o[14], o[15]])
}

/// The link-scope all-nodes multicast address `ff02::1` (destination of
/// unsolicited neighbour advertisements).
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// Writes a fixed IPv6 header (version 6, traffic class 0, flow label 0) at the
/// start of `buf` and returns its length (40). [`WireError::Truncated`] when
/// `buf` is shorter than the header.
pub fn fill_header(buf: &mut [u8], src: Ipv6Addr, dst: Ipv6Addr, next: u8, payload_len: u16, hop_limit: u8) -> Result<usize, WireError> {
    let h = buf.get_mut(..HEADER_LEN).ok_or(WireError::Truncated)?;
    h.fill(0);
    let mut p = Ipv6Packet::new_unchecked(h);
    p.set_version();
    p.set_payload_len(payload_len);
    p.set_next_header(next);
    p.set_hop_limit(hop_limit);
    p.set_src_addr(src);
    p.set_dst_addr(dst);
    Ok(HEADER_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::builder::from_hex;
    use crate::wire::test_fixtures::scapy;
    use proptest::prelude::*;

    const A_C: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
    const A_LB: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x64);

    #[test]
    fn parse_scapy_tcp() {
        let f = scapy("tcp");
        let p = Ipv6Packet::new_checked(&f[14..]).expect("valid");
        assert_eq!(p.version(), 6);
        assert_eq!(p.traffic_class(), 0xb8);
        assert_eq!(p.flow_label(), 0x12345);
        assert_eq!(usize::from(p.payload_len()), f.len() - 54);
        assert_eq!(p.next_header(), next_header::TCP);
        assert_eq!(p.hop_limit(), 64);
        assert_eq!((p.src_addr(), p.dst_addr()), (A_C, A_LB));
        assert_eq!(p.header(), &f[14..54]);
        assert_eq!(p.payload(), &f[54..]);
        let c = p.upper_layer().expect("walk");
        assert_eq!((c.protocol, c.offset, c.fragment), (next_header::TCP, 0, None));
    }

    #[test]
    fn padding_excluded() {
        let mut f = scapy("udp");
        let real = f.len();
        f.resize(real + 5, 0xee);
        let p = Ipv6Packet::new_checked(&f[14..]).expect("valid");
        assert_eq!(p.payload().len(), 11);
        assert_eq!(p.clone().into_payload(), &f[54..real]);
    }

    #[test]
    fn setters_round_trip_to_scapy_bytes() {
        let f = scapy("tcp");
        let mut b = vec![0u8; f.len() - 14];
        let mut p = Ipv6Packet::new_unchecked(&mut b[..]);
        p.set_flow_label(0xfff12345);
        p.set_traffic_class(0xb8);
        p.set_version();
        p.set_payload_len((f.len() - 54) as u16);
        p.set_next_header(next_header::TCP);
        p.set_hop_limit(64);
        p.set_src_addr(A_C);
        p.set_dst_addr(A_LB);
        p.payload_mut().copy_from_slice(&f[54..]);
        assert_eq!(p.into_inner(), &f[14..]);
        let mut b = b.clone();
        let p = Ipv6Packet::new_checked(&mut b[..]).expect("valid");
        p.into_payload_mut()[0] = 0;
        assert_eq!(b[40], 0);
    }

    #[test]
    fn rejects_bad() {
        let f = scapy("udp");
        let ip = &f[14..];
        assert_eq!(Ipv6Packet::new_checked(&ip[..39]).err(), Some(WireError::Truncated));
        assert_eq!(Ipv6Packet::new_checked(&ip[..ip.len() - 1]).err(), Some(WireError::Truncated));
        let mut v4 = ip.to_vec();
        v4[0] = 0x45;
        assert!(matches!(Ipv6Packet::new_checked(&v4[..]), Err(WireError::Malformed(_))));
        // A jumbogram: payload length 0, hop-by-hop first.
        let mut j = ip.to_vec();
        j[4] = 0;
        j[5] = 0;
        j[6] = next_header::HOP_BY_HOP;
        assert!(matches!(Ipv6Packet::new_checked(&j[..]), Err(WireError::Malformed(_))));
        // Payload length 0 with no next header is a valid, empty packet.
        j[6] = next_header::NO_NEXT;
        let p = Ipv6Packet::new_checked(&j[..40]).expect("empty");
        assert!(p.payload().is_empty());
    }

    #[test]
    fn multicast_mac_matches_scapy() {
        let rs = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0x11, 0x2233);
        let nsma = crate::wire::nd::solicited_node(rs);
        assert_eq!(multicast_mac(nsma).octets().to_vec(), from_hex("3333ff112233"));
        assert_eq!(multicast_mac(nsma), crate::wire::MacAddr(scapy("nsmac_rs").try_into().expect("6 bytes")));
        assert_eq!(multicast_mac(ALL_NODES), crate::wire::MacAddr([0x33, 0x33, 0, 0, 0, 1]));
    }

    proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..120)) {
            if let Ok(p) = Ipv6Packet::new_checked(&data[..]) {
                let _ = (p.version(), p.traffic_class(), p.flow_label(), p.next_header(), p.hop_limit());
                let _ = (p.src_addr(), p.dst_addr(), p.header(), p.payload());
                let _ = p.upper_layer();
                for h in p.ext_headers() {
                    let _ = h;
                }
            }
        }
    }
}
