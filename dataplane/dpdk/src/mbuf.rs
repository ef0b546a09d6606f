//! An owned mbuf, exposed to the packet logic as a [`Frame`].

use std::ptr::NonNull;

use rvs_ffi as ffi;

use rvs_dataplane::frame::{Frame, RxChecksum};

/// An owned, single-owner `rte_mbuf`. Dropping it frees it to its pool.
#[repr(transparent)]
#[derive(Debug)]
pub struct Mbuf {
    raw: NonNull<ffi::rte_mbuf>,
}

// SAFETY: an Mbuf is exclusively owned; moving it to another lcore moves ownership.
unsafe impl Send for Mbuf {}

impl Mbuf {
    /// Wraps a raw mbuf.
    ///
    /// # Safety
    /// `raw` must be a valid mbuf exclusively owned by the caller.
    pub unsafe fn from_raw(raw: NonNull<ffi::rte_mbuf>) -> Mbuf {
        Mbuf { raw }
    }

    /// Gives up ownership, returning the raw pointer (e.g. to a tx queue).
    pub fn into_raw(self) -> *mut ffi::rte_mbuf {
        let raw = self.raw.as_ptr();
        std::mem::forget(self);
        raw
    }

    /// The mbuf's header, read in Rust from bindgen's `rte_mbuf` layout so
    /// every accessor below inlines (no call into the C shim).
    #[inline]
    fn hdr(&self) -> &ffi::rte_mbuf {
        // SAFETY: `raw` is a valid mbuf owned by this value alone (from_raw's
        // contract), so nothing else writes its header while &self lives.
        unsafe { self.raw.as_ref() }
    }

    /// The mbuf's header, mutable.
    #[inline]
    fn hdr_mut(&mut self) -> &mut ffi::rte_mbuf {
        // SAFETY: as in `hdr`, and &mut self makes this the only reference.
        unsafe { self.raw.as_mut() }
    }

    /// The last segment of the chain (the mbuf itself when it has one segment).
    #[inline]
    fn last_segment(&self) -> NonNull<ffi::rte_mbuf> {
        let mut seg = self.raw;
        // SAFETY: every `next` of a chain we own is NULL or a valid segment that
        // belongs to the same packet; we only read the pointer.
        while let Some(next) = NonNull::new(unsafe { seg.as_ref() }.next) {
            seg = next;
        }
        seg
    }

    /// Number of segments; the packet path handles single-segment mbufs only.
    #[inline]
    pub fn segments(&self) -> u16 {
        self.hdr().nb_segs
    }

    /// Bytes of data in this (first) segment (`rte_pktmbuf_data_len`).
    #[inline]
    pub fn data_len(&self) -> u16 {
        self.hdr().data_len
    }

    /// Bytes of data in the whole chain (`rte_pktmbuf_pkt_len`).
    #[inline]
    pub fn pkt_len(&self) -> u32 {
        self.hdr().pkt_len
    }

    /// Free bytes before the data (`rte_pktmbuf_headroom`, the `data_off` field).
    #[inline]
    pub fn headroom(&self) -> u16 {
        self.hdr().data_off
    }

    /// Free bytes after the data of this segment (`rte_pktmbuf_tailroom`).
    #[inline]
    pub fn tailroom(&self) -> u16 {
        tailroom(self.hdr())
    }

    /// The mbuf's offload flags (`ol_flags`), as the PMD set them on receive.
    #[inline]
    pub fn ol_flags(&self) -> u64 {
        self.hdr().ol_flags
    }

    /// Replaces the content with `bytes` (for frames the dataplane originates).
    /// Returns false when the mbuf is too small.
    pub fn fill(&mut self, bytes: &[u8]) -> bool {
        let have = self.len();
        if bytes.len() > have && !self.append(bytes.len() - have) {
            return false;
        }
        if bytes.len() < have && !self.trim(have - bytes.len()) {
            return false;
        }
        self.data_mut().copy_from_slice(bytes);
        true
    }
}

/// Frees every mbuf in `mbufs` with one bulk call (emptying the vector).
pub fn free_bulk(mbufs: &mut Vec<Mbuf>) {
    if mbufs.is_empty() {
        return;
    }
    let n = u32::try_from(mbufs.len()).unwrap_or(u32::MAX);
    let ptr = mbufs.as_mut_ptr().cast::<*mut ffi::rte_mbuf>();
    // SAFETY: Mbuf is repr(transparent) over a non-null owned rte_mbuf pointer,
    // so the vector is an array of `n` valid mbufs; after the bulk free we forget
    // them (set_len(0) without running Drop).
    unsafe {
        ffi::rvs_pktmbuf_free_bulk(ptr, n);
        mbufs.set_len(0);
    }
}

/// `rte_pktmbuf_tailroom`: the buffer minus headroom minus data, in DPDK's
/// 16-bit arithmetic.
#[inline]
fn tailroom(seg: &ffi::rte_mbuf) -> u16 {
    seg.buf_len.wrapping_sub(seg.data_off).wrapping_sub(seg.data_len)
}

/// `ol_flags` bits of the IPv4 header checksum status.
const RX_IP_CKSUM_MASK: u64 = ffi::RTE_MBUF_F_RX_IP_CKSUM_MASK as u64;
const RX_IP_CKSUM_GOOD: u64 = ffi::RTE_MBUF_F_RX_IP_CKSUM_GOOD as u64;
const RX_IP_CKSUM_BAD: u64 = ffi::RTE_MBUF_F_RX_IP_CKSUM_BAD as u64;

impl Frame for Mbuf {
    #[inline]
    fn data(&self) -> &[u8] {
        let h = self.hdr();
        // SAFETY: buf_addr + data_off (DPDK's mtod) points at data_len initialised
        // bytes inside the mbuf's buffer, which lives as long as we own the mbuf;
        // the bytes are not the header, and &self prevents mutation meanwhile.
        unsafe { std::slice::from_raw_parts(h.buf_addr.cast::<u8>().add(usize::from(h.data_off)).cast_const(), usize::from(h.data_len)) }
    }

    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        let h = self.hdr();
        let (addr, off, len) = (h.buf_addr.cast::<u8>(), usize::from(h.data_off), usize::from(h.data_len));
        // SAFETY: as in `data`; the buffer is disjoint from the header, and &mut
        // self makes the slice the only reference to those bytes.
        unsafe { std::slice::from_raw_parts_mut(addr.add(off), len) }
    }

    #[inline]
    fn len(&self) -> usize {
        // The first segment's data, as `data()` gives it (the packet path
        // takes single-segment frames only).
        usize::from(self.hdr().data_len)
    }

    #[inline]
    fn prepend(&mut self, len: usize) -> bool {
        // rte_pktmbuf_prepend: refused, unchanged, beyond the headroom.
        let Ok(len) = u16::try_from(len) else { return false };
        let h = self.hdr_mut();
        if len > h.data_off {
            return false;
        }
        h.data_off -= len;
        h.data_len = h.data_len.wrapping_add(len);
        h.pkt_len = h.pkt_len.wrapping_add(u32::from(len));
        true
    }

    #[inline]
    fn adj(&mut self, len: usize) -> bool {
        // rte_pktmbuf_adj: refused, unchanged, beyond the first segment's data.
        let Ok(len) = u16::try_from(len) else { return false };
        let h = self.hdr_mut();
        if len > h.data_len {
            return false;
        }
        h.data_len -= len;
        h.data_off = h.data_off.wrapping_add(len);
        h.pkt_len = h.pkt_len.wrapping_sub(u32::from(len));
        true
    }

    #[inline]
    fn append(&mut self, len: usize) -> bool {
        // rte_pktmbuf_append: grows the last segment, refused beyond its tailroom.
        let Ok(len) = u16::try_from(len) else { return false };
        let mut last = self.last_segment();
        {
            // SAFETY: the last segment belongs to the packet we own exclusively;
            // this reference ends before the head's header is borrowed below.
            let last = unsafe { last.as_mut() };
            if len > tailroom(last) {
                return false;
            }
            last.data_len = last.data_len.wrapping_add(len);
        }
        let h = self.hdr_mut();
        h.pkt_len = h.pkt_len.wrapping_add(u32::from(len));
        true
    }

    #[inline]
    fn trim(&mut self, len: usize) -> bool {
        // rte_pktmbuf_trim: shrinks the last segment, refused beyond its data.
        let Ok(len) = u16::try_from(len) else { return false };
        let mut last = self.last_segment();
        {
            // SAFETY: as in `append`.
            let last = unsafe { last.as_mut() };
            if len > last.data_len {
                return false;
            }
            last.data_len -= len;
        }
        let h = self.hdr_mut();
        h.pkt_len = h.pkt_len.wrapping_sub(u32::from(len));
        true
    }

    fn alloc_sibling(&self) -> Option<Self> {
        // SAFETY: every mbuf records the (valid, live) pool it came from; alloc
        // returns NULL or a fresh mbuf we then own exclusively.
        let raw = unsafe { ffi::rvs_pktmbuf_alloc(self.hdr().pool) };
        // SAFETY: non-NULL means a freshly allocated, exclusively owned mbuf.
        NonNull::new(raw).map(|p| unsafe { Mbuf::from_raw(p) })
    }

    #[inline]
    fn rx_ipv4_checksum(&self) -> RxChecksum {
        // NONE (both bits: header intact, checksum field not filled, e.g.
        // virtio) counts as unknown: rvs rewrites checksums incrementally and
        // needs a correct one, so software decides as without offload.
        match self.ol_flags() & RX_IP_CKSUM_MASK {
            RX_IP_CKSUM_GOOD => RxChecksum::Good,
            RX_IP_CKSUM_BAD => RxChecksum::Bad,
            _ => RxChecksum::Unknown,
        }
    }
}

impl Drop for Mbuf {
    fn drop(&mut self) {
        // SAFETY: we own the mbuf; freeing returns it to its pool exactly once.
        unsafe { ffi::rvs_pktmbuf_free(self.raw.as_ptr()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Eal, Mempool};

    /// The mbuf's fields as DPDK's own C code (the shim) reads them.
    fn c_view(m: &Mbuf) -> (usize, u16, u32, u16, u16, u16) {
        let p = m.raw.as_ptr();
        // SAFETY: read-only shim calls on a valid mbuf we own.
        unsafe {
            (
                ffi::rvs_pktmbuf_mtod(p) as usize,
                ffi::rvs_pktmbuf_data_len(p),
                ffi::rvs_pktmbuf_pkt_len(p),
                ffi::rvs_pktmbuf_nb_segs(p),
                ffi::rvs_pktmbuf_headroom(p),
                ffi::rvs_pktmbuf_tailroom(p),
            )
        }
    }

    /// The same fields as the Rust accessors read them.
    fn rust_view(m: &Mbuf) -> (usize, u16, u32, u16, u16, u16) {
        (m.data().as_ptr() as usize, m.data_len(), m.pkt_len(), m.segments(), m.headroom(), m.tailroom())
    }

    #[derive(Clone, Copy, Debug)]
    enum Op {
        Prepend(u16),
        Adj(u16),
        Append(u16),
        Trim(u16),
    }

    /// Applies `op` through the Rust `Frame` methods.
    fn rust_op(m: &mut Mbuf, op: Op) -> bool {
        match op {
            Op::Prepend(n) => m.prepend(usize::from(n)),
            Op::Adj(n) => m.adj(usize::from(n)),
            Op::Append(n) => m.append(usize::from(n)),
            Op::Trim(n) => m.trim(usize::from(n)),
        }
    }

    /// Applies `op` through DPDK's C functions (the shim).
    fn c_op(m: &mut Mbuf, op: Op) -> bool {
        let p = m.raw.as_ptr();
        // SAFETY: DPDK's length adjustments check their bounds and leave the
        // mbuf unchanged when they refuse.
        unsafe {
            match op {
                Op::Prepend(n) => !ffi::rvs_pktmbuf_prepend(p, n).is_null(),
                Op::Adj(n) => !ffi::rvs_pktmbuf_adj(p, n).is_null(),
                Op::Append(n) => !ffi::rvs_pktmbuf_append(p, n).is_null(),
                Op::Trim(n) => ffi::rvs_pktmbuf_trim(p, n) == 0,
            }
        }
    }

    /// Fields relative to the buffer, comparable across two mbufs.
    fn shape(m: &Mbuf) -> (u16, u32, u16, u16, u16) {
        let (_, dl, pl, segs, head, tail) = c_view(m);
        (dl, pl, segs, head, tail)
    }

    fn check_sequence(pool: &Mempool, initial: &[u8], ops: &[Op]) {
        let mut a = pool.alloc().expect("mbuf");
        let mut b = pool.alloc().expect("mbuf");
        assert!(a.fill(initial) && b.fill(initial));
        assert_eq!(rust_view(&a), c_view(&a));
        for &op in ops {
            let (ra, rb) = (rust_op(&mut a, op), c_op(&mut b, op));
            assert_eq!(ra, rb, "{op:?} accepted differently after {initial_len} bytes", initial_len = initial.len());
            assert_eq!(shape(&a), shape(&b), "{op:?}: Rust and C leave different mbufs");
            assert_eq!(rust_view(&a), c_view(&a), "{op:?}: Rust accessors disagree with C on the Rust-adjusted mbuf");
            assert_eq!(rust_view(&b), c_view(&b), "{op:?}: Rust accessors disagree with C on the C-adjusted mbuf");
        }
    }

    #[test]
    fn rust_mbuf_fields_agree_with_dpdk_on_real_mbufs() {
        let args: Vec<String> =
            ["mbuf-test", "-l", "0", "--no-huge", "-m", "128", "--no-pci", "--no-shconf", "--log-level", "lib.eal:error"]
                .iter()
                .map(|s| s.to_string())
                .collect();
        let _eal = Eal::init(&args).expect("EAL starts without hugepages");
        let pool = Mempool::new("mbuf_test_pool", 255, 0, Eal::socket_id()).expect("mempool");

        let fresh = pool.alloc().expect("mbuf");
        assert_eq!(rust_view(&fresh), c_view(&fresh));
        assert_eq!(usize::from(fresh.headroom()), ffi::RTE_PKTMBUF_HEADROOM as usize);
        assert_eq!((fresh.data_len(), fresh.pkt_len(), fresh.segments()), (0, 0, 1));
        assert_eq!(fresh.rx_ipv4_checksum(), RxChecksum::Unknown, "a fresh mbuf has no rx flags");
        let room = fresh.tailroom();
        drop(fresh);

        let head = u16::try_from(ffi::RTE_PKTMBUF_HEADROOM).expect("headroom fits u16");
        // Edge lengths: nothing, exactly the room, one past it, far past it.
        for len in [0usize, 1, 14, 60, 1514, usize::from(room) - 1, usize::from(room)] {
            let initial: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let l = u16::try_from(len).expect("len fits u16");
            let tail = room - l;
            check_sequence(
                &pool,
                &initial,
                &[
                    Op::Prepend(0),
                    Op::Prepend(head),
                    Op::Prepend(1),
                    Op::Adj(head),
                    Op::Adj(l + 1),
                    Op::Append(tail),
                    Op::Append(1),
                    Op::Trim(tail),
                    Op::Trim(l + 1),
                    Op::Adj(l),
                    Op::Prepend(u16::MAX),
                    Op::Append(u16::MAX),
                    Op::Prepend(20),
                    Op::Append(20),
                    Op::Trim(40),
                    Op::Adj(1),
                ],
            );
        }
        // A pseudo-random walk over all four operations.
        let mut x: u32 = 0x2545_f491;
        let ops: Vec<Op> = (0..400)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                let n = (x >> 8) as u16 % 300;
                match x % 4 {
                    0 => Op::Prepend(n),
                    1 => Op::Adj(n),
                    2 => Op::Append(n),
                    _ => Op::Trim(n),
                }
            })
            .collect();
        check_sequence(&pool, &[0xab; 100], &ops);

        // A two-segment chain: append and trim work on the last segment.
        let mut first = pool.alloc().expect("mbuf");
        let mut second = pool.alloc().expect("mbuf");
        assert!(first.fill(&[1; 100]) && second.fill(&[2; 50]));
        let second_tail = second.tailroom();
        let second = second.into_raw();
        {
            let h = first.hdr_mut();
            h.next = second;
            h.nb_segs = 2;
            h.pkt_len = 150;
        }
        assert_eq!(rust_view(&first), c_view(&first));
        assert!(first.append(10));
        assert_eq!((first.data_len(), first.pkt_len()), (100, 160), "append grew the second segment");
        assert!(!first.trim(61), "trim is limited to the last segment's 60 bytes");
        assert!(first.trim(60));
        assert_eq!((first.data_len(), first.pkt_len()), (100, 100));
        // The second segment is empty now: its room is its tailroom plus the 50 bytes trimmed.
        assert!(!first.append(usize::from(second_tail) + 51));
        assert!(first.append(usize::from(second_tail) + 50));
        assert_eq!(first.pkt_len(), 100 + u32::from(second_tail) + 50);
        assert_eq!(rust_view(&first), c_view(&first));
        drop(first); // frees both segments
        assert_eq!(pool.available(), pool.size(), "every mbuf went back to the pool");
    }
}
