//! ARP for Ethernet/IPv4 (RFC 826): the 28-byte body that follows the Ethernet header.
//!
//! ```text
//!  0      2      4    5    6      8           14          18          24          28
//! +------+------+----+----+------+-----------+-----------+-----------+-----------+
//! |htype |ptype |hlen|plen| oper | sender mac| sender ip | target mac| target ip |
//! +------+------+----+----+------+-----------+-----------+-----------+-----------+
//! ```
//!
//! Only htype 1 (Ethernet), ptype 0x0800 (IPv4), hlen 6 and plen 4 are accepted. The
//! buffer may be longer than 28 bytes (Ethernet padding); the extra is ignored.

use std::net::Ipv4Addr;

use super::ethernet::{ethertype, MacAddr};
use super::WireError;

/// ARP operation codes.
pub mod op {
    /// Who-has request.
    pub const REQUEST: u16 = 1;
    /// Is-at reply.
    pub const REPLY: u16 = 2;
}

/// Length of an Ethernet/IPv4 ARP body.
pub const LEN: usize = 28;

/// Hardware type for Ethernet.
pub const HTYPE_ETHERNET: u16 = 1;

mod field {
    use std::ops::Range;
    pub const HTYPE: Range<usize> = 0..2;
    pub const PTYPE: Range<usize> = 2..4;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: Range<usize> = 6..8;
    pub const SHA: Range<usize> = 8..14;
    pub const SPA: Range<usize> = 14..18;
    pub const THA: Range<usize> = 18..24;
    pub const TPA: Range<usize> = 24..28;
}

/// A view of an Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Wraps `buffer` without validation.
    pub fn new_unchecked(buffer: T) -> Self {
        ArpPacket { buffer }
    }

    /// Wraps `buffer`, checking it holds 28 bytes of Ethernet/IPv4 ARP.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let p = Self::new_unchecked(buffer);
        p.check()?;
        Ok(p)
    }

    /// Validates length and the fixed header fields.
    pub fn check(&self) -> Result<(), WireError> {
        let b = self.buffer.as_ref();
        if b.len() < LEN {
            return Err(WireError::Truncated);
        }
        if self.hardware_type() != HTYPE_ETHERNET {
            return Err(WireError::Malformed("arp: hardware type is not ethernet"));
        }
        if self.protocol_type() != ethertype::IPV4 {
            return Err(WireError::Malformed("arp: protocol type is not ipv4"));
        }
        if b[field::HLEN] != 6 || b[field::PLEN] != 4 {
            return Err(WireError::Malformed("arp: bad address lengths"));
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

    fn read_mac(&self, r: std::ops::Range<usize>) -> MacAddr {
        let mut m = [0u8; 6];
        m.copy_from_slice(&self.buffer.as_ref()[r]);
        MacAddr(m)
    }

    fn read_ip(&self, r: std::ops::Range<usize>) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[r];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    /// Hardware type (1 for Ethernet).
    pub fn hardware_type(&self) -> u16 {
        self.read_u16(field::HTYPE)
    }

    /// Protocol type (0x0800 for IPv4).
    pub fn protocol_type(&self) -> u16 {
        self.read_u16(field::PTYPE)
    }

    /// Operation: [`op::REQUEST`] or [`op::REPLY`] (other values are passed through).
    pub fn operation(&self) -> u16 {
        self.read_u16(field::OPER)
    }

    /// Sender hardware address.
    pub fn sender_mac(&self) -> MacAddr {
        self.read_mac(field::SHA)
    }

    /// Sender protocol address.
    pub fn sender_ip(&self) -> Ipv4Addr {
        self.read_ip(field::SPA)
    }

    /// Target hardware address.
    pub fn target_mac(&self) -> MacAddr {
        self.read_mac(field::THA)
    }

    /// Target protocol address.
    pub fn target_ip(&self) -> Ipv4Addr {
        self.read_ip(field::TPA)
    }

    /// True for a gratuitous ARP (sender ip == target ip).
    pub fn is_gratuitous(&self) -> bool {
        self.sender_ip() == self.target_ip()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    /// Writes htype 1, ptype IPv4, hlen 6, plen 4.
    pub fn set_fixed_header(&mut self) {
        let b = self.buffer.as_mut();
        b[field::HTYPE].copy_from_slice(&HTYPE_ETHERNET.to_be_bytes());
        b[field::PTYPE].copy_from_slice(&ethertype::IPV4.to_be_bytes());
        b[field::HLEN] = 6;
        b[field::PLEN] = 4;
    }

    /// Sets the operation.
    pub fn set_operation(&mut self, value: u16) {
        self.buffer.as_mut()[field::OPER].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the sender hardware address.
    pub fn set_sender_mac(&mut self, mac: MacAddr) {
        self.buffer.as_mut()[field::SHA].copy_from_slice(&mac.0);
    }

    /// Sets the sender protocol address.
    pub fn set_sender_ip(&mut self, ip: Ipv4Addr) {
        self.buffer.as_mut()[field::SPA].copy_from_slice(&ip.octets());
    }

    /// Sets the target hardware address.
    pub fn set_target_mac(&mut self, mac: MacAddr) {
        self.buffer.as_mut()[field::THA].copy_from_slice(&mac.0);
    }

    /// Sets the target protocol address.
    pub fn set_target_ip(&mut self, ip: Ipv4Addr) {
        self.buffer.as_mut()[field::TPA].copy_from_slice(&ip.octets());
    }
}

fn fill(buf: &mut [u8], oper: u16, sha: MacAddr, spa: Ipv4Addr, tha: MacAddr, tpa: Ipv4Addr) {
    let mut p = ArpPacket::new_unchecked(&mut buf[..LEN]);
    p.set_fixed_header();
    p.set_operation(oper);
    p.set_sender_mac(sha);
    p.set_sender_ip(spa);
    p.set_target_mac(tha);
    p.set_target_ip(tpa);
}

/// Writes a 28-byte ARP request body "who has `target_ip`? tell `src_ip`" at the start
/// of `buf` (target MAC zero).
///
/// # Panics
/// If `buf` is shorter than [`LEN`] bytes.
pub fn fill_request(buf: &mut [u8], src_mac: MacAddr, src_ip: Ipv4Addr, target_ip: Ipv4Addr) {
    fill(buf, op::REQUEST, src_mac, src_ip, MacAddr::ZERO, target_ip);
}

/// Writes a 28-byte ARP reply body "`src_ip` is at `src_mac`", addressed to
/// `dst_mac`/`dst_ip`, at the start of `buf`.
///
/// # Panics
/// If `buf` is shorter than [`LEN`] bytes.
pub fn fill_reply(buf: &mut [u8], src_mac: MacAddr, src_ip: Ipv4Addr, dst_mac: MacAddr, dst_ip: Ipv4Addr) {
    fill(buf, op::REPLY, src_mac, src_ip, dst_mac, dst_ip);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A captured-style request: who has 192.168.1.1? tell 192.168.1.20, with the 18
    /// bytes of Ethernet padding a NIC delivers after it.
    const REQUEST: [u8; 46] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, // htype, ptype, hlen, plen, op
        0x52, 0x54, 0x00, 0xab, 0xcd, 0xef, 0xc0, 0xa8, 0x01, 0x14, // sha, spa
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc0, 0xa8, 0x01, 0x01, // tha, tpa
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // padding
    ];

    #[test]
    fn parse_request() {
        let p = ArpPacket::new_checked(&REQUEST[..]).expect("valid");
        assert_eq!(p.operation(), op::REQUEST);
        assert_eq!(p.sender_mac(), MacAddr([0x52, 0x54, 0x00, 0xab, 0xcd, 0xef]));
        assert_eq!(p.sender_ip(), Ipv4Addr::new(192, 168, 1, 20));
        assert_eq!(p.target_mac(), MacAddr::ZERO);
        assert_eq!(p.target_ip(), Ipv4Addr::new(192, 168, 1, 1));
        assert!(!p.is_gratuitous());
        assert!(ArpPacket::new_checked(&REQUEST[..LEN]).is_ok());
    }

    #[test]
    fn fill_matches_capture() {
        let mut buf = [0u8; LEN];
        fill_request(
            &mut buf,
            MacAddr([0x52, 0x54, 0x00, 0xab, 0xcd, 0xef]),
            Ipv4Addr::new(192, 168, 1, 20),
            Ipv4Addr::new(192, 168, 1, 1),
        );
        assert_eq!(buf, REQUEST[..LEN]);
    }

    #[test]
    fn reply_round_trip() {
        let mut buf = [0xeeu8; 30];
        let (sm, dm) = (MacAddr([2, 0, 0, 0, 0, 1]), MacAddr([2, 0, 0, 0, 0, 2]));
        let (si, di) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        fill_reply(&mut buf, sm, si, dm, di);
        assert_eq!(&buf[28..], &[0xee, 0xee]);
        let mut p = ArpPacket::new_checked(&mut buf[..]).expect("valid");
        assert_eq!(p.operation(), op::REPLY);
        assert_eq!((p.sender_mac(), p.sender_ip(), p.target_mac(), p.target_ip()), (sm, si, dm, di));
        p.set_operation(op::REQUEST);
        p.set_sender_mac(dm);
        p.set_sender_ip(di);
        p.set_target_mac(sm);
        p.set_target_ip(si);
        assert_eq!(p.operation(), op::REQUEST);
        assert_eq!((p.sender_mac(), p.sender_ip(), p.target_mac(), p.target_ip()), (dm, di, sm, si));
    }

    #[test]
    fn rejects_bad() {
        assert_eq!(ArpPacket::new_checked(&REQUEST[..27]).err(), Some(WireError::Truncated));
        assert_eq!(ArpPacket::new_checked(&[][..]).err(), Some(WireError::Truncated));
        for (i, v) in [(1usize, 6u8), (2, 0x86), (4, 8), (5, 16)] {
            let mut b = REQUEST;
            b[i] = v;
            assert!(matches!(ArpPacket::new_checked(&b[..]), Err(WireError::Malformed(_))), "byte {i}");
        }
    }

    proptest! {
        #[test]
        fn never_panics(mut data in proptest::collection::vec(any::<u8>(), 0..40), fix in any::<bool>()) {
            if fix && data.len() >= 6 {
                data[..6].copy_from_slice(&[0, 1, 8, 0, 6, 4]);
            }
            if let Ok(mut p) = ArpPacket::new_checked(data) {
                let _ = (p.operation(), p.sender_mac(), p.sender_ip(), p.target_mac(), p.target_ip(), p.is_gratuitous());
                p.set_operation(2);
                p.set_sender_mac(MacAddr::ZERO);
                p.set_sender_ip(Ipv4Addr::UNSPECIFIED);
                p.set_target_mac(MacAddr::ZERO);
                p.set_target_ip(Ipv4Addr::UNSPECIFIED);
                prop_assert!(p.check().is_ok());
            }
        }
    }
}
