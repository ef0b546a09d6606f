//! An owned mbuf, exposed to the packet logic as a [`Frame`].

use std::ptr::NonNull;

use rvs_ffi as ffi;

use rvs_dataplane::frame::Frame;

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

    /// Number of segments; the packet path handles single-segment mbufs only.
    pub fn segments(&self) -> u16 {
        // SAFETY: reads a field of a valid mbuf we own.
        unsafe { ffi::rvs_pktmbuf_nb_segs(self.raw.as_ptr()) }
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

impl Frame for Mbuf {
    fn data(&self) -> &[u8] {
        // SAFETY: mtod points at data_len initialised bytes inside the mbuf's buffer,
        // which lives as long as we own the mbuf; &self prevents concurrent mutation.
        unsafe {
            let m = self.raw.as_ptr();
            std::slice::from_raw_parts(ffi::rvs_pktmbuf_mtod(m).cast::<u8>(), usize::from(ffi::rvs_pktmbuf_data_len(m)))
        }
    }

    fn data_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `data`, and &mut self makes this the only reference.
        unsafe {
            let m = self.raw.as_ptr();
            std::slice::from_raw_parts_mut(ffi::rvs_pktmbuf_mtod(m).cast::<u8>(), usize::from(ffi::rvs_pktmbuf_data_len(m)))
        }
    }

    fn prepend(&mut self, len: usize) -> bool {
        let Ok(len) = u16::try_from(len) else { return false };
        // SAFETY: prepend checks headroom and returns NULL without changing the mbuf.
        !unsafe { ffi::rvs_pktmbuf_prepend(self.raw.as_ptr(), len) }.is_null()
    }

    fn adj(&mut self, len: usize) -> bool {
        let Ok(len) = u16::try_from(len) else { return false };
        // SAFETY: adj checks the length and returns NULL without changing the mbuf.
        !unsafe { ffi::rvs_pktmbuf_adj(self.raw.as_ptr(), len) }.is_null()
    }

    fn append(&mut self, len: usize) -> bool {
        let Ok(len) = u16::try_from(len) else { return false };
        // SAFETY: append checks tailroom and returns NULL without changing the mbuf.
        !unsafe { ffi::rvs_pktmbuf_append(self.raw.as_ptr(), len) }.is_null()
    }

    fn trim(&mut self, len: usize) -> bool {
        let Ok(len) = u16::try_from(len) else { return false };
        // SAFETY: trim checks the length and returns -1 without changing the mbuf.
        unsafe { ffi::rvs_pktmbuf_trim(self.raw.as_ptr(), len) == 0 }
    }

    fn alloc_sibling(&self) -> Option<Self> {
        // SAFETY: every mbuf records the (valid, live) pool it came from; alloc
        // returns NULL or a fresh mbuf we then own exclusively.
        let raw = unsafe { ffi::rvs_pktmbuf_alloc(ffi::rvs_pktmbuf_pool(self.raw.as_ptr())) };
        // SAFETY: non-NULL means a freshly allocated, exclusively owned mbuf.
        NonNull::new(raw).map(|p| unsafe { Mbuf::from_raw(p) })
    }
}

impl Drop for Mbuf {
    fn drop(&mut self) {
        // SAFETY: we own the mbuf; freeing returns it to its pool exactly once.
        unsafe { ffi::rvs_pktmbuf_free(self.raw.as_ptr()) }
    }
}
