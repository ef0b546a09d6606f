//! TCP segments (RFC 9293).
//!
//! ```text
//!  0               16              31
//! +---------------+---------------+
//! |   src port    |   dst port    |
//! |        sequence number        |
//! |     acknowledgment number     |
//! |off|rsv| flags |    window     |
//! |   checksum    |  urgent ptr   |
//! |   options (off > 5) ...       |
//! |   payload ...                 |
//! ```
//!
//! A [`TcpSegment`] covers exactly the L4 bytes (the IPv4 payload), since the
//! checksum covers the whole segment.

use std::net::Ipv4Addr;

use super::checksum;
use super::ip_proto;
use super::WireError;

/// TCP flag bits (the low byte of the flags word).
pub mod flags {
    /// No more data from sender.
    pub const FIN: u8 = 0x01;
    /// Synchronise sequence numbers.
    pub const SYN: u8 = 0x02;
    /// Reset the connection.
    pub const RST: u8 = 0x04;
    /// Push.
    pub const PSH: u8 = 0x08;
    /// Acknowledgment field is significant.
    pub const ACK: u8 = 0x10;
    /// Urgent pointer field is significant.
    pub const URG: u8 = 0x20;
}

/// Length of a TCP header without options.
pub const HEADER_LEN: usize = 20;

mod field {
    use std::ops::Range;
    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const SEQ_NUM: Range<usize> = 4..8;
    pub const ACK_NUM: Range<usize> = 8..12;
    pub const DATA_OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WIN_SIZE: Range<usize> = 14..16;
    pub const CHECKSUM: Range<usize> = 16..18;
    pub const URGENT: Range<usize> = 18..20;
}

/// A view of a TCP segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpSegment<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpSegment<T> {
    /// Wraps `buffer` without validation.
    pub fn new_unchecked(buffer: T) -> Self {
        TcpSegment { buffer }
    }

    /// Wraps `buffer`, checking: at least 20 bytes, data offset >= 5 and the header
    /// (data offset * 4) fits in the buffer.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let s = Self::new_unchecked(buffer);
        s.check()?;
        Ok(s)
    }

    /// Validates lengths so that no accessor can panic.
    pub fn check(&self) -> Result<(), WireError> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let hl = self.header_len();
        if hl < HEADER_LEN {
            return Err(WireError::Malformed("tcp: data offset below 5"));
        }
        if hl > len {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The whole segment (header and payload).
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    fn read_u16(&self, r: std::ops::Range<usize>) -> u16 {
        super::be16(self.buffer.as_ref(), r)
    }

    fn read_u32(&self, r: std::ops::Range<usize>) -> u32 {
        super::be32(self.buffer.as_ref(), r)
    }

    /// Source port.
    pub fn src_port(&self) -> u16 {
        self.read_u16(field::SRC_PORT)
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        self.read_u16(field::DST_PORT)
    }

    /// Sequence number.
    pub fn seq_number(&self) -> u32 {
        self.read_u32(field::SEQ_NUM)
    }

    /// Acknowledgment number.
    pub fn ack_number(&self) -> u32 {
        self.read_u32(field::ACK_NUM)
    }

    /// Header length in bytes (data offset * 4), options included.
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::DATA_OFF] >> 4) * 4
    }

    /// The flag byte (see [`flags`]); the NS/reserved bits are not included.
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// FIN flag.
    pub fn fin(&self) -> bool {
        self.flags() & flags::FIN != 0
    }

    /// SYN flag.
    pub fn syn(&self) -> bool {
        self.flags() & flags::SYN != 0
    }

    /// RST flag.
    pub fn rst(&self) -> bool {
        self.flags() & flags::RST != 0
    }

    /// PSH flag.
    pub fn psh(&self) -> bool {
        self.flags() & flags::PSH != 0
    }

    /// ACK flag.
    pub fn ack(&self) -> bool {
        self.flags() & flags::ACK != 0
    }

    /// URG flag.
    pub fn urg(&self) -> bool {
        self.flags() & flags::URG != 0
    }

    /// Window size (unscaled).
    pub fn window(&self) -> u16 {
        self.read_u16(field::WIN_SIZE)
    }

    /// Checksum as stored.
    pub fn checksum(&self) -> u16 {
        self.read_u16(field::CHECKSUM)
    }

    /// Urgent pointer.
    pub fn urgent_ptr(&self) -> u16 {
        self.read_u16(field::URGENT)
    }

    /// Option bytes (`20..header_len`).
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }

    /// Payload bytes (`header_len..`).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }

    fn full_sum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> u32 {
        let b = self.buffer.as_ref();
        let len = u16::try_from(b.len()).unwrap_or(u16::MAX);
        checksum::pseudo_header_v4(src, dst, ip_proto::TCP, len) + checksum::sum(b)
    }

    /// True when the checksum (over the IPv4 pseudo-header and the whole buffer) is
    /// correct.
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        checksum::fold(self.full_sum(src, dst)) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpSegment<T> {
    fn write_u16(&mut self, r: std::ops::Range<usize>, v: u16) {
        self.buffer.as_mut()[r].copy_from_slice(&v.to_be_bytes());
    }

    fn write_u32(&mut self, r: std::ops::Range<usize>, v: u32) {
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

    /// Sets the sequence number.
    pub fn set_seq_number(&mut self, value: u32) {
        self.write_u32(field::SEQ_NUM, value);
    }

    /// Sets the acknowledgment number.
    pub fn set_ack_number(&mut self, value: u32) {
        self.write_u32(field::ACK_NUM, value);
    }

    /// Sets the header length in bytes (rounded down to 4; keep it 20..=60 and
    /// within the buffer), clearing the reserved bits.
    pub fn set_header_len(&mut self, len: usize) {
        self.buffer.as_mut()[field::DATA_OFF] = (((len / 4) & 0x0f) as u8) << 4;
    }

    /// Sets the flag byte.
    pub fn set_flags(&mut self, value: u8) {
        self.buffer.as_mut()[field::FLAGS] = value;
    }

    /// Sets the window size.
    pub fn set_window(&mut self, value: u16) {
        self.write_u16(field::WIN_SIZE, value);
    }

    /// Sets the stored checksum.
    pub fn set_checksum(&mut self, value: u16) {
        self.write_u16(field::CHECKSUM, value);
    }

    /// Sets the urgent pointer.
    pub fn set_urgent_ptr(&mut self, value: u16) {
        self.write_u16(field::URGENT, value);
    }

    /// Payload bytes, mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        &mut self.buffer.as_mut()[hl..]
    }

    /// Computes and stores the checksum over the pseudo-header and the whole buffer.
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let c = !checksum::fold(self.full_sum(src, dst));
        self.set_checksum(c);
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> TcpSegment<&'a T> {
    /// Like [`TcpSegment::payload`], but the slice borrows the underlying buffer rather
    /// than the view, so it outlives it (handy for parsing down the layers).
    pub fn into_payload(self) -> &'a [u8] {
        let r = self.header_len()..;
        &self.buffer.as_ref()[r]
    }
}

impl<'a> TcpSegment<&'a mut [u8]> {
    /// Like [`TcpSegment::payload_mut`], but the slice borrows the underlying buffer for
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

    const SRC: Ipv4Addr = Ipv4Addr::new(10, 1, 1, 2);
    const DST: Ipv4Addr = Ipv4Addr::new(10, 1, 1, 100);

    /// A captured-style SYN, 10.1.1.2:51234 -> 10.1.1.100:80, with MSS, SACK-permitted,
    /// timestamps, NOP and window-scale options (40 bytes, data offset 10).
    fn syn() -> Vec<u8> {
        let mut s = vec![
            0xc8, 0x22, 0x00, 0x50, // ports
            0x7a, 0x1b, 0x2c, 0x3d, // seq
            0x00, 0x00, 0x00, 0x00, // ack
            0xa0, 0x02, 0xfa, 0xf0, // off 10, SYN, window 64240
            0x00, 0x00, 0x00, 0x00, // checksum, urgent
            0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, 0x00, 0x01, 0x02, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x03, 0x07,
        ];
        let c = !checksum::fold(checksum::pseudo_header_v4(SRC, DST, 6, 40) + checksum::sum(&s));
        s[16..18].copy_from_slice(&c.to_be_bytes());
        s
    }

    #[test]
    fn parse_syn() {
        let b = syn();
        let s = TcpSegment::new_checked(&b[..]).expect("valid");
        assert_eq!(s.src_port(), 51234);
        assert_eq!(s.dst_port(), 80);
        assert_eq!(s.seq_number(), 0x7a1b2c3d);
        assert_eq!(s.ack_number(), 0);
        assert_eq!(s.header_len(), 40);
        assert_eq!(s.flags(), flags::SYN);
        assert!(s.syn() && !s.ack() && !s.fin() && !s.rst() && !s.psh() && !s.urg());
        assert_eq!(s.window(), 64240);
        assert_eq!(s.urgent_ptr(), 0);
        assert_eq!(s.options().len(), 20);
        assert_eq!(&s.options()[..4], &[0x02, 0x04, 0x05, 0xb4]);
        assert!(s.payload().is_empty());
        assert!(s.verify_checksum(SRC, DST));
        assert!(!s.verify_checksum(SRC, Ipv4Addr::new(10, 1, 1, 101)));
    }

    #[test]
    fn construct_round_trip() {
        let mut b = [0u8; 25];
        let mut s = TcpSegment::new_unchecked(&mut b[..]);
        s.set_header_len(20);
        s.set_src_port(1);
        s.set_dst_port(2);
        s.set_seq_number(3);
        s.set_ack_number(4);
        s.set_flags(flags::PSH | flags::ACK | flags::FIN | flags::RST | flags::URG);
        s.set_window(5);
        s.set_urgent_ptr(6);
        s.payload_mut().copy_from_slice(b"hello");
        s.fill_checksum(SRC, DST);
        let s = TcpSegment::new_checked(s.into_inner()).expect("valid");
        assert_eq!((s.src_port(), s.dst_port(), s.seq_number(), s.ack_number()), (1, 2, 3, 4));
        assert!(s.psh() && s.ack() && s.fin() && s.rst() && s.urg() && !s.syn());
        assert_eq!((s.window(), s.urgent_ptr()), (5, 6));
        assert_eq!(s.payload(), b"hello");
        assert!(s.options().is_empty());
        assert!(s.verify_checksum(SRC, DST));
    }

    #[test]
    fn nat_rewrite_incremental() {
        let mut b = syn();
        let mut s = TcpSegment::new_checked(&mut b[..]).expect("valid");
        let rs = Ipv4Addr::new(192, 168, 5, 5);
        let mut c = checksum::update_addr(s.checksum(), DST, rs);
        c = checksum::update_u16(c, s.dst_port(), 8080);
        s.set_dst_port(8080);
        s.set_checksum(c);
        assert!(s.verify_checksum(SRC, rs));
        let before = s.checksum();
        s.fill_checksum(SRC, rs);
        assert_eq!(s.checksum(), before);
    }

    #[test]
    fn rejects_bad() {
        let b = syn();
        assert_eq!(TcpSegment::new_checked(&b[..19]).err(), Some(WireError::Truncated));
        assert_eq!(TcpSegment::new_checked(&b[..39]).err(), Some(WireError::Truncated));
        let mut low = b.clone();
        low[12] = 0x40;
        assert!(matches!(TcpSegment::new_checked(&low[..]), Err(WireError::Malformed(_))));
        let mut high = b.clone();
        high[12] = 0xf0;
        assert_eq!(TcpSegment::new_checked(&high[..]).err(), Some(WireError::Truncated));
    }

    proptest! {
        #[test]
        fn never_panics(mut data in proptest::collection::vec(any::<u8>(), 0..80), fix in any::<bool>()) {
            if fix && data.len() > 12 {
                data[12] = 0x50;
            }
            if let Ok(mut s) = TcpSegment::new_checked(data) {
                let _ = (s.src_port(), s.dst_port(), s.seq_number(), s.ack_number(), s.header_len());
                let _ = (s.flags(), s.syn(), s.ack(), s.fin(), s.rst(), s.psh(), s.urg());
                let _ = (s.window(), s.checksum(), s.urgent_ptr(), s.options(), s.payload());
                s.fill_checksum(SRC, DST);
                prop_assert!(s.verify_checksum(SRC, DST));
                s.set_src_port(1);
                s.set_dst_port(2);
                s.set_seq_number(3);
                s.set_ack_number(4);
                let _ = s.payload_mut();
            }
        }
    }
}
