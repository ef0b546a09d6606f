//! Packet buffer pools.

use std::ffi::CString;
use std::ptr::NonNull;

use rvs_ffi as ffi;

use super::error::{rte_errno, strerror, DpdkError};
use super::mbuf::Mbuf;

/// An mbuf pool (`rte_pktmbuf_pool_create`).
#[derive(Debug)]
pub struct Mempool {
    raw: NonNull<ffi::rte_mempool>,
    size: u32,
}

// SAFETY: DPDK mempools are multi-producer/multi-consumer safe; the pointer is
// valid for the pool's life and may be used from any lcore.
unsafe impl Send for Mempool {}
// SAFETY: see Send; all operations through &Mempool are thread-safe DPDK calls.
unsafe impl Sync for Mempool {}

impl Mempool {
    /// Creates a pool of `size` mbufs with the default data room on `socket`.
    pub fn new(name: &str, size: u32, cache: u32, socket: i32) -> Result<Mempool, DpdkError> {
        let cname = CString::new(name).map_err(|_| DpdkError::Nul(name.to_owned()))?;
        // SAFETY: plain constructor call with a valid C string.
        let buf_size = unsafe { ffi::rvs_mbuf_default_buf_size() };
        // SAFETY: all arguments are valid; a NULL return is handled below.
        let raw = unsafe { ffi::rte_pktmbuf_pool_create(cname.as_ptr(), size, cache, 0, buf_size, socket) };
        match NonNull::new(raw) {
            Some(raw) => Ok(Mempool { raw, size }),
            None => Err(DpdkError::Call {
                call: format!("rte_pktmbuf_pool_create({name}, {size} mbufs)"),
                reason: strerror(rte_errno()),
                code: rte_errno(),
            }),
        }
    }

    /// Allocates one mbuf, or `None` when the pool is empty.
    pub fn alloc(&self) -> Option<Mbuf> {
        // SAFETY: the pool pointer is valid; alloc returns NULL or an owned mbuf.
        let raw = unsafe { ffi::rvs_pktmbuf_alloc(self.raw.as_ptr()) };
        // SAFETY: a non-NULL mbuf just allocated is exclusively ours.
        NonNull::new(raw).map(|p| unsafe { Mbuf::from_raw(p) })
    }

    /// Mbufs currently free in the pool.
    pub fn available(&self) -> u32 {
        // SAFETY: read-only query on a valid pool.
        unsafe { ffi::rvs_mempool_avail_count(self.raw.as_ptr()) }
    }

    /// Total mbufs in the pool.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// The raw pool pointer, for queue setup.
    pub(crate) fn as_ptr(&self) -> *mut ffi::rte_mempool {
        self.raw.as_ptr()
    }
}

impl Drop for Mempool {
    fn drop(&mut self) {
        // SAFETY: the pool is ours; ports using it are stopped before it is dropped.
        unsafe { ffi::rte_mempool_free(self.raw.as_ptr()) }
    }
}
