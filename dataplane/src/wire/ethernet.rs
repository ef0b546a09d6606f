//! Ethernet II frames with an optional single 802.1Q VLAN tag, and MAC addresses.
//!
//! ```text
//!  0      6      12         14
//! +------+------+----------+---------
//! | dst  | src  | ethertype| payload        (untagged, 14-byte header)
//! +------+------+----------+---------
//! | dst  | src  | 0x8100 | TCI | ethertype | payload   (tagged, 18-byte header)
//! ```
//!
//! Only one 802.1Q tag (TPID 0x8100) is understood. Any other ethertype, including
//! QinQ (0x88a8), is reported as-is by [`EthernetFrame::ethertype`].

use std::fmt;
use std::str::FromStr;

use super::WireError;

/// Well-known ethertypes.
pub mod ethertype {
    /// IPv4.
    pub const IPV4: u16 = 0x0800;
    /// ARP.
    pub const ARP: u16 = 0x0806;
    /// 802.1Q VLAN tag (TPID).
    pub const VLAN: u16 = 0x8100;
    /// 802.1ad QinQ service tag (TPID).
    pub const QINQ: u16 = 0x88a8;
    /// IPv6.
    pub const IPV6: u16 = 0x86dd;
}

/// Length of an untagged Ethernet header.
pub const HEADER_LEN: usize = 14;
/// Length of an Ethernet header carrying one 802.1Q tag.
pub const VLAN_HEADER_LEN: usize = 18;

mod field {
    use std::ops::Range;
    pub const DST: Range<usize> = 0..6;
    pub const SRC: Range<usize> = 6..12;
    pub const ETHERTYPE: Range<usize> = 12..14;
    pub const VLAN_TCI: Range<usize> = 14..16;
    pub const VLAN_ETHERTYPE: Range<usize> = 16..18;
}

/// A 48-bit Ethernet MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// `ff:ff:ff:ff:ff:ff`.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    /// `00:00:00:00:00:00`.
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    /// Builds an address from a 6-byte slice; `None` if the slice is not 6 bytes long.
    pub fn from_bytes(b: &[u8]) -> Option<MacAddr> {
        <[u8; 6]>::try_from(b).ok().map(MacAddr)
    }

    /// The six octets.
    pub const fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// True for `ff:ff:ff:ff:ff:ff`.
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// True when the group (I/G) bit is set; includes broadcast.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// True when the group bit is clear (an individual address).
    pub fn is_unicast(&self) -> bool {
        !self.is_multicast()
    }

    /// True for `00:00:00:00:00:00`.
    pub fn is_zero(&self) -> bool {
        *self == Self::ZERO
    }
}

impl From<[u8; 6]> for MacAddr {
    fn from(b: [u8; 6]) -> Self {
        MacAddr(b)
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3], b[4], b[5])
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for MacAddr {
    type Err = WireError;

    /// Parses `aa:bb:cc:dd:ee:ff` (also accepts `-` as separator; hex is
    /// case-insensitive; each octet is one or two hex digits).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let sep = if s.contains('-') { '-' } else { ':' };
        let mut out = [0u8; 6];
        let mut parts = s.split(sep);
        for o in out.iter_mut() {
            let p = parts.next().ok_or(WireError::Malformed("mac address: too few octets"))?;
            if p.is_empty() || p.len() > 2 || !p.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(WireError::Malformed("mac address: bad octet"));
            }
            *o = u8::from_str_radix(p, 16).map_err(|_| WireError::Malformed("mac address: bad octet"))?;
        }
        if parts.next().is_some() {
            return Err(WireError::Malformed("mac address: too many octets"));
        }
        Ok(MacAddr(out))
    }
}

/// Writes an Ethernet header (untagged, or with one 802.1Q tag when `vlan` is
/// `Some`) at the start of `buf` and returns its length (14 or 18).
///
/// `vlan` is masked to 12 bits (PCP and DEI are zero). Fails with `Truncated` when
/// `buf` is too short.
pub fn fill_header(buf: &mut [u8], dst: MacAddr, src: MacAddr, vlan: Option<u16>, ethertype: u16) -> Result<usize, WireError> {
    let need = if vlan.is_some() { VLAN_HEADER_LEN } else { HEADER_LEN };
    let hdr = buf.get_mut(..need).ok_or(WireError::Truncated)?;
    hdr[field::DST].copy_from_slice(&dst.0);
    hdr[field::SRC].copy_from_slice(&src.0);
    match vlan {
        Some(vid) => {
            hdr[field::ETHERTYPE].copy_from_slice(&ethertype::VLAN.to_be_bytes());
            hdr[field::VLAN_TCI].copy_from_slice(&(vid & 0x0fff).to_be_bytes());
            hdr[field::VLAN_ETHERTYPE].copy_from_slice(&ethertype.to_be_bytes());
        }
        None => hdr[field::ETHERTYPE].copy_from_slice(&ethertype.to_be_bytes()),
    }
    Ok(need)
}

/// A view of an Ethernet II frame, optionally 802.1Q tagged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps `buffer` without validation.
    pub fn new_unchecked(buffer: T) -> Self {
        EthernetFrame { buffer }
    }

    /// Wraps `buffer`, checking it holds the whole header (14 bytes, or 18 when the
    /// outer ethertype is 802.1Q).
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let f = Self::new_unchecked(buffer);
        f.check_len()?;
        Ok(f)
    }

    /// Checks the buffer is long enough for every accessor.
    pub fn check_len(&self) -> Result<(), WireError> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if b.len() < self.header_len() {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The whole underlying buffer.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    fn read_u16(&self, r: std::ops::Range<usize>) -> u16 {
        super::be16(self.buffer.as_ref(), r)
    }

    fn outer_ethertype(&self) -> u16 {
        self.read_u16(field::ETHERTYPE)
    }

    /// True when the frame carries an 802.1Q tag.
    pub fn has_vlan(&self) -> bool {
        self.outer_ethertype() == ethertype::VLAN
    }

    /// Destination MAC address.
    pub fn dst_mac(&self) -> MacAddr {
        let mut m = [0u8; 6];
        m.copy_from_slice(&self.buffer.as_ref()[field::DST]);
        MacAddr(m)
    }

    /// Source MAC address.
    pub fn src_mac(&self) -> MacAddr {
        let mut m = [0u8; 6];
        m.copy_from_slice(&self.buffer.as_ref()[field::SRC]);
        MacAddr(m)
    }

    /// The raw 802.1Q tag control information (PCP, DEI, VID), if tagged.
    pub fn vlan_tci(&self) -> Option<u16> {
        self.has_vlan().then(|| self.read_u16(field::VLAN_TCI))
    }

    /// The 12-bit VLAN id, if tagged.
    pub fn vlan_id(&self) -> Option<u16> {
        self.vlan_tci().map(|tci| tci & 0x0fff)
    }

    /// The ethertype of the payload (the inner one after a VLAN tag).
    pub fn ethertype(&self) -> u16 {
        if self.has_vlan() {
            self.read_u16(field::VLAN_ETHERTYPE)
        } else {
            self.outer_ethertype()
        }
    }

    /// Header length: 18 when tagged, 14 otherwise.
    pub fn header_len(&self) -> usize {
        if self.has_vlan() {
            VLAN_HEADER_LEN
        } else {
            HEADER_LEN
        }
    }

    /// The bytes after the header (may include trailing padding).
    pub fn payload(&self) -> &[u8] {
        let hl = self.header_len();
        &self.buffer.as_ref()[hl..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Sets the destination MAC address.
    pub fn set_dst_mac(&mut self, mac: MacAddr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&mac.0);
    }

    /// Sets the source MAC address.
    pub fn set_src_mac(&mut self, mac: MacAddr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&mac.0);
    }

    /// Sets the payload ethertype (the inner one when tagged).
    ///
    /// Writing [`ethertype::VLAN`] into an untagged frame turns it into a tagged one;
    /// re-validate with [`EthernetFrame::check_len`] before using accessors again.
    pub fn set_ethertype(&mut self, value: u16) {
        let r = if self.has_vlan() { field::VLAN_ETHERTYPE } else { field::ETHERTYPE };
        self.buffer.as_mut()[r].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the 12-bit VLAN id of a tagged frame, keeping PCP/DEI. Does nothing on an
    /// untagged frame (changing the header length is the caller's business).
    pub fn set_vlan_id(&mut self, vid: u16) {
        if let Some(tci) = self.vlan_tci() {
            let tci = (tci & 0xf000) | (vid & 0x0fff);
            self.buffer.as_mut()[field::VLAN_TCI].copy_from_slice(&tci.to_be_bytes());
        }
    }

    /// The bytes after the header, mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        &mut self.buffer.as_mut()[hl..]
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> EthernetFrame<&'a T> {
    /// Like [`EthernetFrame::payload`], but the slice borrows the underlying buffer rather
    /// than the view, so it outlives it (handy for parsing down the layers).
    pub fn into_payload(self) -> &'a [u8] {
        let r = self.header_len()..;
        &self.buffer.as_ref()[r]
    }
}

impl<'a> EthernetFrame<&'a mut [u8]> {
    /// Like [`EthernetFrame::payload_mut`], but the slice borrows the underlying buffer for
    /// its whole lifetime, consuming the view.
    pub fn into_payload_mut(self) -> &'a mut [u8] {
        let r = self.header_len()..;
        &mut self.buffer[r]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // An untagged frame start: dst 00:1b:21:3a:4f:10, src 52:54:00:12:34:56, IPv4.
    const UNTAGGED: [u8; 18] = [0x00, 0x1b, 0x21, 0x3a, 0x4f, 0x10, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x08, 0x00, 0x45, 0x00, 0x00, 0x14];
    // Tagged VLAN 100 (PCP 5), inner ARP.
    const TAGGED: [u8; 20] =
        [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x81, 0x00, 0xa0, 0x64, 0x08, 0x06, 0x00, 0x01];

    #[test]
    fn parse_untagged() {
        let f = EthernetFrame::new_checked(&UNTAGGED[..]).expect("valid");
        assert_eq!(f.dst_mac(), MacAddr([0x00, 0x1b, 0x21, 0x3a, 0x4f, 0x10]));
        assert_eq!(f.src_mac().to_string(), "52:54:00:12:34:56");
        assert_eq!(f.vlan_id(), None);
        assert_eq!(f.ethertype(), ethertype::IPV4);
        assert_eq!(f.header_len(), HEADER_LEN);
        assert_eq!(f.payload(), &[0x45, 0x00, 0x00, 0x14]);
    }

    #[test]
    fn parse_tagged() {
        let f = EthernetFrame::new_checked(&TAGGED[..]).expect("valid");
        assert!(f.dst_mac().is_broadcast());
        assert_eq!(f.vlan_id(), Some(100));
        assert_eq!(f.vlan_tci(), Some(0xa064));
        assert_eq!(f.ethertype(), ethertype::ARP);
        assert_eq!(f.header_len(), VLAN_HEADER_LEN);
        assert_eq!(f.payload(), &[0x00, 0x01]);
    }

    #[test]
    fn truncated() {
        assert_eq!(EthernetFrame::new_checked(&UNTAGGED[..13]).err(), Some(WireError::Truncated));
        assert!(EthernetFrame::new_checked(&UNTAGGED[..14]).is_ok());
        assert_eq!(EthernetFrame::new_checked(&TAGGED[..17]).err(), Some(WireError::Truncated));
        assert!(EthernetFrame::new_checked(&TAGGED[..18]).is_ok());
        assert_eq!(EthernetFrame::new_checked(&[][..]).err(), Some(WireError::Truncated));
    }

    #[test]
    fn setters_round_trip() {
        let mut buf = [0u8; 64];
        let hl = fill_header(&mut buf, MacAddr::BROADCAST, MacAddr([2, 0, 0, 0, 0, 1]), Some(4095), ethertype::IPV4).expect("room");
        assert_eq!(hl, 18);
        let mut f = EthernetFrame::new_checked(&mut buf[..]).expect("valid");
        assert_eq!(f.vlan_id(), Some(4095));
        f.set_dst_mac(MacAddr([2, 0, 0, 0, 0, 2]));
        f.set_src_mac(MacAddr([2, 0, 0, 0, 0, 3]));
        f.set_ethertype(ethertype::ARP);
        f.set_vlan_id(7);
        f.payload_mut()[0] = 0xaa;
        assert_eq!(f.dst_mac(), MacAddr([2, 0, 0, 0, 0, 2]));
        assert_eq!(f.src_mac(), MacAddr([2, 0, 0, 0, 0, 3]));
        assert_eq!(f.ethertype(), ethertype::ARP);
        assert_eq!(f.vlan_id(), Some(7));
        let buf = f.into_inner();
        assert_eq!(buf[18], 0xaa);
        assert_eq!(&buf[12..14], &[0x81, 0x00]);

        let mut small = [0u8; 17];
        assert_eq!(fill_header(&mut small, MacAddr::ZERO, MacAddr::ZERO, Some(1), 0).err(), Some(WireError::Truncated));
        assert_eq!(fill_header(&mut small, MacAddr::ZERO, MacAddr::ZERO, None, 0x0800), Ok(14));
        let f = EthernetFrame::new_checked(&small[..]).expect("valid");
        assert_eq!(f.ethertype(), 0x0800);
        assert_eq!(f.payload().len(), 3);
    }

    #[test]
    fn mac_addr() {
        let m: MacAddr = "AA:bb:0c:dd:ee:ff".parse().expect("parses");
        assert_eq!(m, MacAddr([0xaa, 0xbb, 0x0c, 0xdd, 0xee, 0xff]));
        assert_eq!(m.to_string(), "aa:bb:0c:dd:ee:ff");
        assert_eq!(format!("{m:?}"), "aa:bb:0c:dd:ee:ff");
        assert_eq!("02-00-00-00-00-01".parse::<MacAddr>(), Ok(MacAddr([2, 0, 0, 0, 0, 1])));
        assert!(m.is_unicast() && !m.is_multicast());
        assert!(MacAddr::BROADCAST.is_broadcast() && MacAddr::BROADCAST.is_multicast());
        assert!(MacAddr([0x01, 0x00, 0x5e, 0, 0, 1]).is_multicast());
        assert!(!MacAddr([0x01, 0x00, 0x5e, 0, 0, 1]).is_broadcast());
        assert!(MacAddr::ZERO.is_zero() && MacAddr::ZERO.is_unicast());
        for bad in [
            "",
            "aa:bb:cc:dd:ee",
            "aa:bb:cc:dd:ee:ff:00",
            "aa:bb:cc:dd:ee:fg",
            "aaa:bb:cc:dd:ee:ff",
            "aa::cc:dd:ee:ff",
            "+a:bb:cc:dd:ee:ff",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
        assert_eq!(MacAddr::from_bytes(&[1, 2, 3, 4, 5, 6]), Some(MacAddr([1, 2, 3, 4, 5, 6])));
        assert_eq!(MacAddr::from_bytes(&[1, 2, 3]), None);
    }

    proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(mut f) = EthernetFrame::new_checked(data) {
                let _ = (f.dst_mac(), f.src_mac(), f.vlan_id(), f.vlan_tci(), f.ethertype());
                prop_assert!(f.header_len() + f.payload().len() == f.as_bytes().len());
                f.set_ethertype(1);
                f.set_vlan_id(1);
                f.set_dst_mac(MacAddr::ZERO);
                f.set_src_mac(MacAddr::ZERO);
                let _ = f.payload_mut();
            }
        }

        #[test]
        fn mac_display_parse_round_trip(b in any::<[u8; 6]>()) {
            let m = MacAddr(b);
            prop_assert_eq!(m.to_string().parse::<MacAddr>(), Ok(m));
        }

        #[test]
        fn mac_parse_never_panics(s in ".{0,24}") {
            let _ = s.parse::<MacAddr>();
        }
    }
}
