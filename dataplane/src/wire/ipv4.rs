//! IPv4 packets (RFC 791).
//!
//! ```text
//!  0       4       8              16    19                 31
//! +-------+-------+--------------+------------------------+
//! |version|  IHL  |  DSCP/ECN    |      total length      |
//! +-------+-------+--------------+-----+------------------+
//! |        identification        |flags| fragment offset  |
//! +---------------+--------------+-----+------------------+
//! |      TTL      |   protocol   |    header checksum     |
//! +---------------+--------------+------------------------+
//! |                    source address                     |
//! |                  destination address                  |
//! |                  options (IHL > 5) ...                |
//! ```
//!
//! The buffer may be longer than `total_len` (Ethernet padding of short frames):
//! [`Ipv4Packet::payload`] is exactly `header_len..total_len`.

use std::net::Ipv4Addr;

use super::checksum;
use super::WireError;

/// IP protocol numbers.
pub mod ip_proto {
    /// ICMP.
    pub const ICMP: u8 = 1;
    /// IP-in-IP encapsulation (used by LVS tunnel mode).
    pub const IPIP: u8 = 4;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
}

/// Length of an IPv4 header without options.
pub const HEADER_LEN: usize = 20;

mod field {
    use std::ops::Range;
    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: Range<usize> = 2..4;
    pub const IDENT: Range<usize> = 4..6;
    pub const FLG_OFF: Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC_ADDR: Range<usize> = 12..16;
    pub const DST_ADDR: Range<usize> = 16..20;
}

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;

/// A view of an IPv4 packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wraps `buffer` without validation.
    pub fn new_unchecked(buffer: T) -> Self {
        Ipv4Packet { buffer }
    }

    /// Wraps `buffer`, checking: at least 20 bytes, version 4, IHL >= 5,
    /// `header_len <= total_len <= buffer length`.
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
        if self.version() != 4 {
            return Err(WireError::Malformed("ipv4: version is not 4"));
        }
        let hl = self.header_len();
        if hl < HEADER_LEN {
            return Err(WireError::Malformed("ipv4: header length below 20"));
        }
        let tl = usize::from(self.total_len());
        if tl < hl {
            return Err(WireError::Malformed("ipv4: total length below header length"));
        }
        if tl > len {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn read_u16(&self, r: std::ops::Range<usize>) -> u16 {
        super::be16(self.buffer.as_ref(), r)
    }

    fn read_ip(&self, r: std::ops::Range<usize>) -> Ipv4Addr {
        Ipv4Addr::from(super::be32(self.buffer.as_ref(), r))
    }

    /// IP version (4).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL * 4), options included.
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// The DSCP/ECN (former TOS) byte.
    pub fn dscp_ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN]
    }

    /// Total length (header + payload) in bytes.
    pub fn total_len(&self) -> u16 {
        self.read_u16(field::LENGTH)
    }

    /// Identification.
    pub fn ident(&self) -> u16 {
        self.read_u16(field::IDENT)
    }

    /// The don't-fragment flag.
    pub fn dont_frag(&self) -> bool {
        self.read_u16(field::FLG_OFF) & FLAG_DF != 0
    }

    /// The more-fragments flag.
    pub fn more_frags(&self) -> bool {
        self.read_u16(field::FLG_OFF) & FLAG_MF != 0
    }

    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> u16 {
        (self.read_u16(field::FLG_OFF) & OFFSET_MASK) << 3
    }

    /// True for any fragment (MF set or non-zero offset).
    pub fn is_fragment(&self) -> bool {
        self.read_u16(field::FLG_OFF) & (FLAG_MF | OFFSET_MASK) != 0
    }

    /// Time to live.
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// Payload protocol (see [`ip_proto`]).
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    /// Header checksum as stored.
    pub fn checksum(&self) -> u16 {
        self.read_u16(field::CHECKSUM)
    }

    /// Source address.
    pub fn src_addr(&self) -> Ipv4Addr {
        self.read_ip(field::SRC_ADDR)
    }

    /// Destination address.
    pub fn dst_addr(&self) -> Ipv4Addr {
        self.read_ip(field::DST_ADDR)
    }

    /// The header bytes (`0..header_len`), options included.
    pub fn header(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.header_len()]
    }

    /// The option bytes (`20..header_len`), empty without options.
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }

    /// True when the header checksum is correct.
    pub fn verify_checksum(&self) -> bool {
        checksum::fold(checksum::sum(self.header())) == 0xffff
    }

    /// The payload: bytes `header_len..total_len` (trailing padding excluded).
    pub fn payload(&self) -> &[u8] {
        let (hl, tl) = (self.header_len(), usize::from(self.total_len()));
        &self.buffer.as_ref()[hl..tl]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    fn write_u16(&mut self, r: std::ops::Range<usize>, v: u16) {
        self.buffer.as_mut()[r].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets version 4 and the header length in bytes (rounded down to 4; must be
    /// 20..=60 for a valid packet).
    pub fn set_version_and_header_len(&mut self, header_len: usize) {
        let ihl = ((header_len / 4) & 0x0f) as u8;
        self.buffer.as_mut()[field::VER_IHL] = 0x40 | ihl;
    }

    /// Sets the DSCP/ECN byte.
    pub fn set_dscp_ecn(&mut self, value: u8) {
        self.buffer.as_mut()[field::DSCP_ECN] = value;
    }

    /// Sets the total length. Keep `header_len <= total_len <= buffer length`, or
    /// [`Ipv4Packet::payload`] will panic; re-validate with [`Ipv4Packet::check`].
    pub fn set_total_len(&mut self, value: u16) {
        self.write_u16(field::LENGTH, value);
    }

    /// Sets the identification.
    pub fn set_ident(&mut self, value: u16) {
        self.write_u16(field::IDENT, value);
    }

    /// Sets or clears the don't-fragment flag.
    pub fn set_dont_frag(&mut self, value: bool) {
        let f = self.read_u16(field::FLG_OFF);
        self.write_u16(field::FLG_OFF, if value { f | FLAG_DF } else { f & !FLAG_DF });
    }

    /// Sets or clears the more-fragments flag.
    pub fn set_more_frags(&mut self, value: bool) {
        let f = self.read_u16(field::FLG_OFF);
        self.write_u16(field::FLG_OFF, if value { f | FLAG_MF } else { f & !FLAG_MF });
    }

    /// Sets the fragment offset in bytes (must be a multiple of 8; rounded down).
    pub fn set_frag_offset(&mut self, bytes: u16) {
        let f = self.read_u16(field::FLG_OFF);
        self.write_u16(field::FLG_OFF, (f & !OFFSET_MASK) | ((bytes >> 3) & OFFSET_MASK));
    }

    /// Sets the time to live.
    pub fn set_ttl(&mut self, value: u8) {
        self.buffer.as_mut()[field::TTL] = value;
    }

    /// Sets the payload protocol.
    pub fn set_protocol(&mut self, value: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = value;
    }

    /// Sets the stored header checksum.
    pub fn set_checksum(&mut self, value: u16) {
        self.write_u16(field::CHECKSUM, value);
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&addr.octets());
    }

    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&addr.octets());
    }

    /// Computes and stores the header checksum.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::internet(self.header());
        self.set_checksum(c);
    }

    /// The payload, mutable: bytes `header_len..total_len`.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (hl, tl) = (self.header_len(), usize::from(self.total_len()));
        &mut self.buffer.as_mut()[hl..tl]
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Ipv4Packet<&'a T> {
    /// Like [`Ipv4Packet::payload`], but the slice borrows the underlying buffer rather
    /// than the view, so it outlives it (handy for parsing down the layers).
    pub fn into_payload(self) -> &'a [u8] {
        let r = self.header_len()..usize::from(self.total_len());
        &self.buffer.as_ref()[r]
    }
}

impl<'a> Ipv4Packet<&'a mut [u8]> {
    /// Like [`Ipv4Packet::payload_mut`], but the slice borrows the underlying buffer for
    /// its whole lifetime, consuming the view.
    pub fn into_payload_mut(self) -> &'a mut [u8] {
        let r = self.header_len()..usize::from(self.total_len());
        &mut self.buffer[r]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A captured-style IPv4/TCP SYN header (10.1.1.2 -> 10.1.1.100, DF, TTL 64,
    /// total length 60) followed by 40 bytes of TCP and 6 bytes of Ethernet padding.
    fn syn_packet() -> Vec<u8> {
        let mut v =
            vec![0x45, 0x00, 0x00, 0x3c, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x06, 0x00, 0x00, 0x0a, 0x01, 0x01, 0x02, 0x0a, 0x01, 0x01, 0x64];
        v.extend((0..40u8).map(|i| i.wrapping_mul(7)));
        v.extend([0u8; 6]);
        let c = checksum::internet(&v[..20]);
        v[10..12].copy_from_slice(&c.to_be_bytes());
        v
    }

    /// The well-known header with checksum 0xb861.
    const KNOWN: [u8; 20] =
        [0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7];

    #[test]
    fn parse_known_header() {
        let mut b = KNOWN.to_vec();
        b.resize(0x73, 0);
        let p = Ipv4Packet::new_checked(&b[..]).expect("valid");
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.total_len(), 0x73);
        assert!(p.dont_frag() && !p.more_frags() && !p.is_fragment());
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), ip_proto::UDP);
        assert_eq!(p.checksum(), 0xb861);
        assert!(p.verify_checksum());
        assert_eq!(p.src_addr(), Ipv4Addr::new(192, 168, 0, 1));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(192, 168, 0, 199));
        assert_eq!(p.payload().len(), 0x73 - 20);
    }

    #[test]
    fn padding_excluded() {
        let b = syn_packet();
        let p = Ipv4Packet::new_checked(&b[..]).expect("valid");
        assert_eq!(b.len(), 66);
        assert_eq!(p.payload().len(), 40);
        assert_eq!(p.payload()[1], 7);
        assert!(p.verify_checksum());
        assert_eq!(p.ident(), 0x1c46);
        assert_eq!(p.dscp_ecn(), 0);
        assert!(p.options().is_empty());
    }

    #[test]
    fn options_and_fragments() {
        let mut b = syn_packet();
        b[0] = 0x46; // IHL 6: 4 bytes of options (the first 4 TCP bytes here)
        b[6] = 0x20; // MF
        b[7] = 0x03; // offset 3 * 8 = 24
        let mut p = Ipv4Packet::new_checked(&mut b[..]).expect("valid");
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.options().len(), 4);
        assert_eq!(p.payload().len(), 36);
        assert!(p.more_frags() && !p.dont_frag() && p.is_fragment());
        assert_eq!(p.frag_offset(), 24);
        assert!(!p.verify_checksum());
        p.fill_checksum();
        assert!(p.verify_checksum());
        p.set_more_frags(false);
        assert!(p.is_fragment());
        p.set_frag_offset(0);
        assert!(!p.is_fragment());
        p.set_frag_offset(8 * 0x1fff);
        assert_eq!(p.frag_offset(), 8 * 0x1fff);
        assert!(!p.dont_frag() && !p.more_frags());
    }

    #[test]
    fn setters_round_trip() {
        let mut b = [0u8; 28];
        let mut p = Ipv4Packet::new_unchecked(&mut b[..]);
        p.set_version_and_header_len(20);
        p.set_dscp_ecn(0xb8);
        p.set_total_len(28);
        p.set_ident(0xbeef);
        p.set_dont_frag(true);
        p.set_ttl(3);
        p.set_protocol(ip_proto::ICMP);
        p.set_src_addr(Ipv4Addr::new(1, 2, 3, 4));
        p.set_dst_addr(Ipv4Addr::new(5, 6, 7, 8));
        p.payload_mut().copy_from_slice(&[9; 8]);
        p.fill_checksum();
        let p = Ipv4Packet::new_checked(p.into_inner()).expect("valid");
        assert_eq!(p.version(), 4);
        assert_eq!(p.dscp_ecn(), 0xb8);
        assert_eq!(p.ident(), 0xbeef);
        assert!(p.dont_frag());
        assert_eq!(p.ttl(), 3);
        assert_eq!(p.protocol(), ip_proto::ICMP);
        assert_eq!(p.src_addr(), Ipv4Addr::new(1, 2, 3, 4));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(5, 6, 7, 8));
        assert_eq!(p.payload(), &[9; 8]);
        assert!(p.verify_checksum());
        let mut b = p.into_inner().to_vec();
        let mut p = Ipv4Packet::new_checked(&mut b[..]).expect("valid");
        p.set_dont_frag(false);
        p.set_checksum(0x1234);
        assert!(!p.dont_frag());
        assert_eq!(p.checksum(), 0x1234);
        assert!(!p.verify_checksum());
    }

    #[test]
    fn incremental_update_verifies() {
        let mut b = syn_packet();
        let mut p = Ipv4Packet::new_checked(&mut b[..]).expect("valid");
        let old = p.dst_addr();
        let new = Ipv4Addr::new(192, 168, 10, 7);
        p.set_dst_addr(new);
        let c = checksum::update_addr(p.checksum(), old, new);
        p.set_checksum(c);
        assert!(p.verify_checksum());
        let ttl = p.ttl();
        p.set_ttl(ttl - 1);
        // TTL shares a 16-bit word with the protocol.
        let proto = u16::from(p.protocol());
        let c = checksum::update_u16(p.checksum(), u16::from(ttl) << 8 | proto, u16::from(ttl - 1) << 8 | proto);
        p.set_checksum(c);
        assert!(p.verify_checksum());
    }

    #[test]
    fn rejects_bad() {
        let b = syn_packet();
        assert_eq!(Ipv4Packet::new_checked(&b[..19]).err(), Some(WireError::Truncated));
        assert_eq!(Ipv4Packet::new_checked(&b[..59]).err(), Some(WireError::Truncated));
        assert!(Ipv4Packet::new_checked(&b[..60]).is_ok());
        let mut v6 = b.clone();
        v6[0] = 0x65;
        assert!(matches!(Ipv4Packet::new_checked(&v6[..]), Err(WireError::Malformed(_))));
        let mut ihl4 = b.clone();
        ihl4[0] = 0x44;
        assert!(matches!(Ipv4Packet::new_checked(&ihl4[..]), Err(WireError::Malformed(_))));
        let mut short_total = b.clone();
        short_total[3] = 19;
        assert!(matches!(Ipv4Packet::new_checked(&short_total[..]), Err(WireError::Malformed(_))));
        let mut big_ihl = b.clone();
        big_ihl[0] = 0x4f; // 60-byte header == total length 60: valid, empty payload
        assert_eq!(Ipv4Packet::new_checked(&big_ihl[..]).map(|p| p.payload().len()), Ok(0));
        big_ihl[3] = 59; // header longer than total length
        assert!(matches!(Ipv4Packet::new_checked(&big_ihl[..]), Err(WireError::Malformed(_))));
    }

    proptest! {
        #[test]
        fn never_panics(mut data in proptest::collection::vec(any::<u8>(), 0..100), fix in any::<bool>()) {
            if fix && data.len() >= 4 {
                data[0] = 0x40 | (data[0] & 0x0f);
                let l = data.len() as u16;
                let tl = u16::from(data[3]) % (l + 1);
                data[2..4].copy_from_slice(&tl.to_be_bytes());
            }
            if let Ok(mut p) = Ipv4Packet::new_checked(data) {
                let _ = (p.version(), p.header_len(), p.dscp_ecn(), p.total_len(), p.ident());
                let _ = (p.dont_frag(), p.more_frags(), p.frag_offset(), p.is_fragment(), p.ttl());
                let _ = (p.protocol(), p.checksum(), p.src_addr(), p.dst_addr(), p.header(), p.options());
                let _ = p.payload();
                p.fill_checksum();
                prop_assert!(p.verify_checksum());
                p.set_ident(1);
                p.set_dont_frag(true);
                p.set_ttl(1);
                p.set_protocol(6);
                p.set_src_addr(Ipv4Addr::LOCALHOST);
                p.set_dst_addr(Ipv4Addr::LOCALHOST);
                let _ = p.payload_mut();
            }
        }
    }
}
