//! UDP datagrams (RFC 768).
//!
//! ```text
//!  0               16              31
//! +---------------+---------------+
//! |   src port    |   dst port    |
//! |    length     |   checksum    |
//! |   payload ...                 |
//! ```
//!
//! Over IPv4 a checksum of `0` means "not computed"; a computed checksum of `0` is
//! transmitted as `0xffff`. When patching a UDP checksum incrementally with
//! [`checksum::update_u16`] and friends, leave a `0` checksum untouched and map a
//! `0` result to `0xffff` (see [`UdpDatagram::update_checksum_with`]).

use std::net::Ipv4Addr;

use super::checksum;
use super::ip_proto;
use super::WireError;

/// Length of the UDP header.
pub const HEADER_LEN: usize = 8;

mod field {
    use std::ops::Range;
    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const LENGTH: Range<usize> = 4..6;
    pub const CHECKSUM: Range<usize> = 6..8;
}

/// A view of a UDP datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpDatagram<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpDatagram<T> {
    /// Wraps `buffer` without validation.
    pub fn new_unchecked(buffer: T) -> Self {
        UdpDatagram { buffer }
    }

    /// Wraps `buffer`, checking: at least 8 bytes, `8 <= length field <= buffer len`.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let d = Self::new_unchecked(buffer);
        d.check()?;
        Ok(d)
    }

    /// Validates lengths so that no accessor can panic.
    pub fn check(&self) -> Result<(), WireError> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let l = usize::from(self.len());
        if l < HEADER_LEN {
            return Err(WireError::Malformed("udp: length below 8"));
        }
        if l > len {
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

    /// Source port.
    pub fn src_port(&self) -> u16 {
        self.read_u16(field::SRC_PORT)
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        self.read_u16(field::DST_PORT)
    }

    /// The length field (header + payload).
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u16 {
        self.read_u16(field::LENGTH)
    }

    /// Checksum as stored (`0` = none).
    pub fn checksum(&self) -> u16 {
        self.read_u16(field::CHECKSUM)
    }

    /// Payload bytes `8..len`.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..usize::from(self.len())]
    }

    fn full_sum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> u32 {
        let l = self.len();
        checksum::pseudo_header_v4(src, dst, ip_proto::UDP, l) + checksum::sum(&self.buffer.as_ref()[..usize::from(l)])
    }

    /// True when the checksum is absent (`0`) or correct.
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        self.checksum() == 0 || checksum::fold(self.full_sum(src, dst)) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpDatagram<T> {
    fn write_u16(&mut self, r: std::ops::Range<usize>, v: u16) {
        self.buffer.as_mut()[r].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the source port.
    pub fn set_src_port(&mut self, value: u16) {
        self.write_u16(field::SRC_PORT, value);
    }

    /// Sets the destination port.
    pub fn set_dst_port(&mut self, value: u16) {
        self.write_u16(field::DST_PORT, value);
    }

    /// Sets the length field. Keep `8 <= len <= buffer length`, or
    /// [`UdpDatagram::payload`] will panic; re-validate with [`UdpDatagram::check`].
    pub fn set_len(&mut self, value: u16) {
        self.write_u16(field::LENGTH, value);
    }

    /// Sets the stored checksum.
    pub fn set_checksum(&mut self, value: u16) {
        self.write_u16(field::CHECKSUM, value);
    }

    /// Payload bytes `8..len`, mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let l = usize::from(self.len());
        &mut self.buffer.as_mut()[HEADER_LEN..l]
    }

    /// Computes and stores the checksum; a computed `0` is stored as `0xffff`.
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let c = !checksum::fold(self.full_sum(src, dst));
        self.set_checksum(if c == 0 { 0xffff } else { c });
    }

    /// Applies an incremental update `f` (e.g. `|c| checksum::update_addr(c, old, new)`)
    /// to the stored checksum, honouring UDP's rules: a `0` (absent) checksum is left
    /// alone and a `0` result is stored as `0xffff`.
    pub fn update_checksum_with(&mut self, f: impl FnOnce(u16) -> u16) {
        let c = self.checksum();
        if c != 0 {
            let n = f(c);
            self.set_checksum(if n == 0 { 0xffff } else { n });
        }
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> UdpDatagram<&'a T> {
    /// Like [`UdpDatagram::payload`], but the slice borrows the underlying buffer rather
    /// than the view, so it outlives it (handy for parsing down the layers).
    pub fn into_payload(self) -> &'a [u8] {
        let r = HEADER_LEN..usize::from(self.len());
        &self.buffer.as_ref()[r]
    }
}

impl<'a> UdpDatagram<&'a mut [u8]> {
    /// Like [`UdpDatagram::payload_mut`], but the slice borrows the underlying buffer for
    /// its whole lifetime, consuming the view.
    pub fn into_payload_mut(self) -> &'a mut [u8] {
        let r = HEADER_LEN..usize::from(self.len());
        &mut self.buffer[r]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SRC: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 31);
    const DST: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 30);

    /// A captured-style DNS-ish datagram 192.168.0.31:20 -> 192.168.0.30:10,
    /// payload "Hi", followed by 2 bytes of padding that are not part of it.
    fn dgram() -> Vec<u8> {
        let mut d = vec![0x00, 0x14, 0x00, 0x0a, 0x00, 0x0a, 0x00, 0x00, b'H', b'i', 0xaa, 0xbb];
        let c = !checksum::fold(checksum::pseudo_header_v4(SRC, DST, 17, 10) + checksum::sum(&d[..10]));
        d[6..8].copy_from_slice(&c.to_be_bytes());
        d
    }

    #[test]
    fn parse() {
        let b = dgram();
        let d = UdpDatagram::new_checked(&b[..]).expect("valid");
        assert_eq!(d.src_port(), 20);
        assert_eq!(d.dst_port(), 10);
        assert_eq!(d.len(), 10);
        assert_eq!(d.payload(), b"Hi");
        assert_eq!(d.checksum(), 0x35c5);
        assert!(d.verify_checksum(SRC, DST));
        assert!(!d.verify_checksum(DST, Ipv4Addr::new(1, 1, 1, 1)));
    }

    #[test]
    fn round_trip_and_zero_checksum() {
        let mut b = [0u8; 12];
        let mut d = UdpDatagram::new_unchecked(&mut b[..]);
        d.set_src_port(53);
        d.set_dst_port(5353);
        d.set_len(12);
        d.payload_mut().copy_from_slice(&[1, 2, 3, 4]);
        d.fill_checksum(SRC, DST);
        let mut d = UdpDatagram::new_checked(d.into_inner()).expect("valid");
        assert_eq!((d.src_port(), d.dst_port(), d.len()), (53, 5353, 12));
        assert_eq!(d.payload(), &[1, 2, 3, 4]);
        assert!(d.verify_checksum(SRC, DST));
        d.set_checksum(0);
        assert!(d.verify_checksum(SRC, DST), "zero means no checksum");
        d.update_checksum_with(|c| checksum::update_u16(c, 1, 2));
        assert_eq!(d.checksum(), 0, "absent checksum stays absent");
    }

    /// Choose payload bytes so the computed checksum is 0: it must go out as 0xffff,
    /// verify, and survive an incremental update round trip.
    #[test]
    fn computed_zero_sent_as_ffff() {
        let mut b = vec![0x12, 0x34, 0x56, 0x78, 0x00, 0x0a, 0x00, 0x00, 0x00, 0x00];
        let s = checksum::fold(checksum::pseudo_header_v4(SRC, DST, 17, 10) + checksum::sum(&b));
        b[8..10].copy_from_slice(&(0xffff - s).to_be_bytes());
        let mut d = UdpDatagram::new_checked(&mut b[..]).expect("valid");
        d.fill_checksum(SRC, DST);
        assert_eq!(d.checksum(), 0xffff);
        assert!(d.verify_checksum(SRC, DST));
        let new = Ipv4Addr::new(10, 9, 8, 7);
        d.update_checksum_with(|c| checksum::update_addr(c, DST, new));
        assert!(d.verify_checksum(SRC, new));
        d.update_checksum_with(|c| checksum::update_addr(c, new, DST));
        assert_eq!(d.checksum(), 0xffff);
        assert!(d.verify_checksum(SRC, DST));
    }

    #[test]
    fn rejects_bad() {
        let b = dgram();
        assert_eq!(UdpDatagram::new_checked(&b[..7]).err(), Some(WireError::Truncated));
        assert_eq!(UdpDatagram::new_checked(&b[..9]).err(), Some(WireError::Truncated));
        let mut short = b.clone();
        short[5] = 7;
        assert!(matches!(UdpDatagram::new_checked(&short[..]), Err(WireError::Malformed(_))));
        let mut long = b.clone();
        long[5] = 13;
        assert_eq!(UdpDatagram::new_checked(&long[..]).err(), Some(WireError::Truncated));
    }

    proptest! {
        #[test]
        fn never_panics(mut data in proptest::collection::vec(any::<u8>(), 0..40), fix in any::<bool>()) {
            if fix && data.len() >= 8 {
                data[4] = 0;
                data[5] = 8 + data[5] % (data.len() as u8 - 7);
            }
            if let Ok(mut d) = UdpDatagram::new_checked(data) {
                let _ = (d.src_port(), d.dst_port(), d.len(), d.checksum(), d.payload());
                d.fill_checksum(SRC, DST);
                prop_assert!(d.checksum() != 0);
                prop_assert!(d.verify_checksum(SRC, DST));
                d.set_src_port(1);
                d.set_dst_port(2);
                let _ = d.payload_mut();
            }
        }

        /// Incremental address/port rewrite matches full recomputation.
        #[test]
        fn incremental_matches_full(payload in proptest::collection::vec(any::<u8>(), 0..40), sp in any::<u16>(), dp in any::<u16>(), new_dst in any::<u32>(), new_dp in any::<u16>()) {
            let mut b = vec![0u8; 8 + payload.len()];
            let mut d = UdpDatagram::new_unchecked(&mut b[..]);
            d.set_src_port(sp);
            d.set_dst_port(dp);
            d.set_len((8 + payload.len()) as u16);
            d.payload_mut().copy_from_slice(&payload);
            d.fill_checksum(SRC, DST);
            let nd = Ipv4Addr::from(new_dst);
            d.update_checksum_with(|c| checksum::update_u16(checksum::update_addr(c, DST, nd), dp, new_dp));
            d.set_dst_port(new_dp);
            let inc = d.checksum();
            d.fill_checksum(SRC, nd);
            prop_assert_eq!(inc, d.checksum());
        }
    }
}
