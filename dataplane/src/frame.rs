//! The packet buffer abstraction the packet logic works on.
//!
//! [`Frame`] is implemented by the DPDK mbuf wrapper for the real dataplane and by
//! [`VecFrame`] for tests and benchmarks, so every line of packet logic runs
//! without EAL.

use crate::stats::{Counter, Counters};

/// A single-segment packet buffer holding one Ethernet frame.
pub trait Frame {
    /// The frame's bytes, starting at the Ethernet header.
    fn data(&self) -> &[u8];
    /// The frame's bytes, mutable.
    fn data_mut(&mut self) -> &mut [u8];
    /// Grows the frame at the front by `len` bytes (uninitialised content).
    /// Returns `false`, leaving the frame unchanged, when there is no headroom.
    fn prepend(&mut self, len: usize) -> bool;
    /// Removes `len` bytes from the front. Returns `false` when the frame is shorter.
    fn adj(&mut self, len: usize) -> bool;
    /// Grows the frame at the end by `len` bytes. Returns `false` without tailroom.
    fn append(&mut self, len: usize) -> bool;
    /// Removes `len` bytes from the end. Returns `false` when the frame is shorter.
    fn trim(&mut self, len: usize) -> bool;
    /// Frame length in bytes.
    #[inline]
    fn len(&self) -> usize {
        self.data().len()
    }
    /// True for an empty frame.
    #[inline]
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Opens a gap of `len` bytes at offset `at` by moving the first `at` bytes
    /// (the headers) to the front of new headroom; the payload does not move.
    /// Returns `false`, leaving the frame unchanged, without headroom or when
    /// `at` is beyond the frame.
    fn insert_gap(&mut self, at: usize, len: usize) -> bool {
        if at > self.len() || !self.prepend(len) {
            return false;
        }
        self.data_mut().copy_within(len..len + at, 0);
        true
    }
    /// An empty frame from the same pool (for fragments), if one is free.
    fn alloc_sibling(&self) -> Option<Self>
    where
        Self: Sized;
    /// What the receiving NIC found of the frame's IPv4 header checksum
    /// (RX checksum offload). [`RxChecksum::Unknown`] unless the frame's port
    /// verifies it: then the packet path checks the header in software.
    fn rx_ipv4_checksum(&self) -> RxChecksum {
        RxChecksum::Unknown
    }
}

/// The IPv4 header checksum status a NIC reports for a received frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RxChecksum {
    /// The NIC verified the header checksum: it is correct.
    Good,
    /// The NIC verified the header checksum: it is wrong.
    Bad,
    /// Not verified (no offload, not IPv4, or the NIC could not tell).
    #[default]
    Unknown,
}

impl RxChecksum {
    /// Whether a received IPv4 header is intact: the NIC's verdict when it gave
    /// one (counted in [`Counter::RxIpv4CsumHw`]), else `verify`, the software check.
    #[inline]
    pub fn header_ok(self, counters: &mut Counters, verify: impl FnOnce() -> bool) -> bool {
        match self {
            RxChecksum::Good => {
                counters.inc(Counter::RxIpv4CsumHw);
                true
            }
            RxChecksum::Bad => {
                counters.inc(Counter::RxIpv4CsumHw);
                false
            }
            RxChecksum::Unknown => verify(),
        }
    }
}

/// A heap buffer with DPDK-like headroom, standing in for an mbuf in tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VecFrame {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl VecFrame {
    /// Headroom given to every test frame (DPDK's RTE_PKTMBUF_HEADROOM).
    pub const HEADROOM: usize = 128;
    /// Tailroom given to every test frame.
    pub const TAILROOM: usize = 256;

    /// A frame holding a copy of `bytes`.
    pub fn new(bytes: &[u8]) -> Self {
        let mut buf = vec![0u8; Self::HEADROOM + bytes.len() + Self::TAILROOM];
        buf[Self::HEADROOM..Self::HEADROOM + bytes.len()].copy_from_slice(bytes);
        VecFrame { buf, start: Self::HEADROOM, end: Self::HEADROOM + bytes.len() }
    }

    /// Makes the frame hold a copy of `bytes` again, behind the same headroom
    /// as [`VecFrame::new`], reusing its buffer when it is big enough (as a
    /// pool reuses an mbuf: what the headroom and tailroom held before stays).
    pub fn refill(&mut self, bytes: &[u8]) {
        let size = Self::HEADROOM + bytes.len() + Self::TAILROOM;
        if self.buf.len() < size {
            *self = VecFrame::new(bytes);
            return;
        }
        self.buf[Self::HEADROOM..Self::HEADROOM + bytes.len()].copy_from_slice(bytes);
        self.start = Self::HEADROOM;
        self.end = Self::HEADROOM + bytes.len();
    }

    /// The frame's bytes as an owned vector.
    pub fn to_vec(&self) -> Vec<u8> {
        self.data().to_vec()
    }
}

impl Frame for VecFrame {
    #[inline]
    fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }
    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.end]
    }
    #[inline]
    fn prepend(&mut self, len: usize) -> bool {
        if len > self.start {
            return false;
        }
        self.start -= len;
        true
    }
    #[inline]
    fn adj(&mut self, len: usize) -> bool {
        if len > self.end - self.start {
            return false;
        }
        self.start += len;
        true
    }
    #[inline]
    fn append(&mut self, len: usize) -> bool {
        if self.end + len > self.buf.len() {
            return false;
        }
        self.end += len;
        true
    }
    #[inline]
    fn trim(&mut self, len: usize) -> bool {
        if len > self.end - self.start {
            return false;
        }
        self.end -= len;
        true
    }
    #[inline]
    fn alloc_sibling(&self) -> Option<Self> {
        // An empty buffer with an mbuf's room (RTE_MBUF_DEFAULT_DATAROOM).
        let room = 2048;
        Some(VecFrame { buf: vec![0; Self::HEADROOM + room], start: Self::HEADROOM, end: Self::HEADROOM })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vec_frame_grows_and_shrinks_within_its_room() {
        let mut f = VecFrame::new(&[1, 2, 3]);
        assert!(f.prepend(2));
        assert_eq!(f.len(), 5);
        assert!(f.adj(2));
        assert_eq!(f.data(), &[1, 2, 3]);
        assert!(!f.prepend(VecFrame::HEADROOM + 1));
        assert!(f.append(1));
        assert!(f.trim(1));
        assert!(!f.trim(4));
        assert_eq!(f.data(), &[1, 2, 3]);
    }

    #[test]
    fn rx_checksum_trusts_the_nic_and_falls_back_to_software() {
        let mut c = Counters::default();
        assert!(VecFrame::new(&[0; 20]).rx_ipv4_checksum() == RxChecksum::Unknown, "a VecFrame has no NIC");
        let mut checked = 0;
        let mut software = |ok: bool| {
            checked += 1;
            ok
        };
        assert!(RxChecksum::Good.header_ok(&mut c, || software(false)), "good from the NIC is not checked again");
        assert!(!RxChecksum::Bad.header_ok(&mut c, || software(true)), "bad from the NIC is dropped unchecked");
        assert_eq!(c.get(Counter::RxIpv4CsumHw), 2);
        assert!(RxChecksum::Unknown.header_ok(&mut c, || software(true)));
        assert!(!RxChecksum::Unknown.header_ok(&mut c, || software(false)));
        assert_eq!(checked, 2, "only unknown headers are checked in software");
        assert_eq!(c.get(Counter::RxIpv4CsumHw), 2);
    }

    #[test]
    fn insert_gap_moves_headers_only() {
        let mut f = VecFrame::new(&[1, 2, 3, 4]);
        assert!(f.insert_gap(2, 3));
        assert_eq!(f.len(), 7);
        assert_eq!(&f.data()[..2], &[1, 2]);
        assert_eq!(&f.data()[5..], &[3, 4]);
        assert!(!f.insert_gap(99, 1));
        assert_eq!(f.len(), 7);
    }
}
