//! ICMPv4 messages (RFC 792).
//!
//! ```text
//!  0       8       16              31
//! +-------+-------+---------------+
//! | type  | code  |   checksum    |
//! |  rest of header (echo: ident, seq; errors: unused/MTU)
//! |  data ...                     |
//! ```
//!
//! An [`IcmpPacket`] covers the whole message (the IPv4 payload); its checksum
//! covers all of it, without a pseudo-header.

use super::checksum;
use super::WireError;

/// ICMP message types.
pub mod msg_type {
    /// Echo reply.
    pub const ECHO_REPLY: u8 = 0;
    /// Destination unreachable (code 4: fragmentation needed).
    pub const DEST_UNREACHABLE: u8 = 3;
    /// Echo request.
    pub const ECHO_REQUEST: u8 = 8;
    /// Time exceeded.
    pub const TIME_EXCEEDED: u8 = 11;
}

/// Length of the fixed ICMP header (type, code, checksum, 4 bytes rest-of-header).
pub const HEADER_LEN: usize = 8;

mod field {
    use std::ops::Range;
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Range<usize> = 2..4;
    pub const REST: Range<usize> = 4..8;
    pub const ECHO_IDENT: Range<usize> = 4..6;
    pub const ECHO_SEQ: Range<usize> = 6..8;
}

/// A view of an ICMP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IcmpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> IcmpPacket<T> {
    /// Wraps `buffer` without validation.
    pub fn new_unchecked(buffer: T) -> Self {
        IcmpPacket { buffer }
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

    /// Echo identifier (bytes 4..6; meaningful for echo request/reply).
    pub fn echo_ident(&self) -> u16 {
        self.read_u16(field::ECHO_IDENT)
    }

    /// Echo sequence number (bytes 6..8).
    pub fn echo_seq(&self) -> u16 {
        self.read_u16(field::ECHO_SEQ)
    }

    /// The 4 rest-of-header bytes as a big-endian word (e.g. next-hop MTU in its low
    /// 16 bits for "fragmentation needed").
    pub fn rest_of_header(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::REST];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// Bytes after the 8-byte header (echo data, or the quoted IP header of errors).
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }

    /// True when the checksum over the whole message is correct.
    pub fn verify_checksum(&self) -> bool {
        checksum::fold(checksum::sum(self.buffer.as_ref())) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> IcmpPacket<T> {
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

    /// Sets the echo identifier.
    pub fn set_echo_ident(&mut self, value: u16) {
        self.write_u16(field::ECHO_IDENT, value);
    }

    /// Sets the echo sequence number.
    pub fn set_echo_seq(&mut self, value: u16) {
        self.write_u16(field::ECHO_SEQ, value);
    }

    /// Sets the 4 rest-of-header bytes.
    pub fn set_rest_of_header(&mut self, value: u32) {
        self.buffer.as_mut()[field::REST].copy_from_slice(&value.to_be_bytes());
    }

    /// Bytes after the header, mutable.
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }

    /// Computes and stores the checksum over the whole message.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::internet(self.buffer.as_ref());
        self.set_checksum(c);
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> IcmpPacket<&'a T> {
    /// Like [`IcmpPacket::data`], but the slice borrows the underlying buffer rather
    /// than the view, so it outlives it (handy for parsing down the layers).
    pub fn into_data(self) -> &'a [u8] {
        let r = HEADER_LEN..;
        &self.buffer.as_ref()[r]
    }
}

impl<'a> IcmpPacket<&'a mut [u8]> {
    /// Like [`IcmpPacket::data_mut`], but the slice borrows the underlying buffer for
    /// its whole lifetime, consuming the view.
    pub fn into_data_mut(self) -> &'a mut [u8] {
        let r = HEADER_LEN..;
        &mut self.buffer[r]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A captured `ping` echo request (Linux, ident 0x1234, seq 1, 16 data bytes).
    const ECHO: [u8; 24] = [
        0x08, 0x00, 0x00, 0x00, 0x12, 0x34, 0x00, 0x01, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d,
        0x1e, 0x1f,
    ];

    fn echo() -> Vec<u8> {
        let mut b = ECHO.to_vec();
        let c = checksum::internet(&b);
        b[2..4].copy_from_slice(&c.to_be_bytes());
        b
    }

    #[test]
    fn parse_echo() {
        let b = echo();
        let p = IcmpPacket::new_checked(&b[..]).expect("valid");
        assert_eq!(p.msg_type(), msg_type::ECHO_REQUEST);
        assert_eq!(p.code(), 0);
        assert_eq!(p.echo_ident(), 0x1234);
        assert_eq!(p.echo_seq(), 1);
        assert_eq!(p.rest_of_header(), 0x1234_0001);
        assert_eq!(p.data(), &ECHO[8..]);
        assert!(p.verify_checksum());
    }

    #[test]
    fn echo_to_reply_round_trip() {
        let mut b = echo();
        let mut p = IcmpPacket::new_checked(&mut b[..]).expect("valid");
        // Incremental: the type/code word changes from 0x0800 to 0x0000.
        let c = checksum::update_u16(p.checksum(), 0x0800, 0x0000);
        p.set_msg_type(msg_type::ECHO_REPLY);
        p.set_checksum(c);
        assert!(p.verify_checksum());
        let inc = p.checksum();
        p.fill_checksum();
        assert_eq!(p.checksum(), inc);
        p.set_code(3);
        p.set_echo_ident(7);
        p.set_echo_seq(9);
        p.data_mut()[0] = 0xff;
        assert!(!p.verify_checksum());
        p.fill_checksum();
        assert!(p.verify_checksum());
        assert_eq!((p.code(), p.echo_ident(), p.echo_seq(), p.data()[0]), (3, 7, 9, 0xff));
        p.set_rest_of_header(1500);
        assert_eq!(p.echo_seq(), 1500);
        assert_eq!(p.into_inner().len(), 24);
    }

    #[test]
    fn rejects_short() {
        assert_eq!(IcmpPacket::new_checked(&ECHO[..7]).err(), Some(WireError::Truncated));
        assert_eq!(IcmpPacket::new_checked(&ECHO[..8]).map(|p| p.data().len()), Ok(0));
    }

    proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(mut p) = IcmpPacket::new_checked(data) {
                let _ = (p.msg_type(), p.code(), p.checksum(), p.echo_ident(), p.echo_seq(), p.rest_of_header(), p.data());
                p.fill_checksum();
                prop_assert!(p.verify_checksum());
                p.set_msg_type(0);
                p.set_code(0);
                let _ = p.data_mut();
            }
        }
    }
}
