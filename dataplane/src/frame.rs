//! The packet buffer abstraction the packet logic works on.
//!
//! [`Frame`] is implemented by the DPDK mbuf wrapper for the real dataplane and by
//! [`VecFrame`] for tests and benchmarks, so every line of packet logic runs
//! without EAL.

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
    fn len(&self) -> usize {
        self.data().len()
    }
    /// True for an empty frame.
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

    /// The frame's bytes as an owned vector.
    pub fn to_vec(&self) -> Vec<u8> {
        self.data().to_vec()
    }
}

impl Frame for VecFrame {
    fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }
    fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.end]
    }
    fn prepend(&mut self, len: usize) -> bool {
        if len > self.start {
            return false;
        }
        self.start -= len;
        true
    }
    fn adj(&mut self, len: usize) -> bool {
        if len > self.end - self.start {
            return false;
        }
        self.start += len;
        true
    }
    fn append(&mut self, len: usize) -> bool {
        if self.end + len > self.buf.len() {
            return false;
        }
        self.end += len;
        true
    }
    fn trim(&mut self, len: usize) -> bool {
        if len > self.end - self.start {
            return false;
        }
        self.end -= len;
        true
    }
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
