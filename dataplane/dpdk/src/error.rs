//! Errors from DPDK calls, with `rte_strerror`'s text.

use std::ffi::CStr;

use rvs_ffi as ffi;

/// A DPDK call failed.
#[derive(Debug, thiserror::Error)]
pub enum DpdkError {
    /// `rte_eal_init` refused the arguments or the environment.
    #[error("EAL initialisation failed: {reason} (EAL arguments: {args})")]
    EalInit {
        /// rte_strerror text.
        reason: String,
        /// The arguments given to EAL.
        args: String,
    },
    /// EAL was already started in this process.
    #[error("EAL is already initialised in this process")]
    EalAlreadyInitialised,
    /// A DPDK call returned an error code.
    #[error("{call} failed: {reason} ({code})")]
    Call {
        /// The function that failed, with context.
        call: String,
        /// rte_strerror text.
        reason: String,
        /// The (positive) errno value.
        code: i32,
    },
    /// No ethdev port has this name.
    #[error("no DPDK port named '{0}': check the device spec (vdev arguments, PCI address) and that its PMD is installed")]
    NoSuchPort(String),
    /// `rte_pdump_init` failed: dpdk-dumpcap cannot attach.
    #[error("the packet-capture server (rte_pdump_init) could not start: {0}; dpdk-dumpcap cannot attach to this rvsd")]
    Pdump(String),
    /// A string given to DPDK contained a NUL byte.
    #[error("argument contains a NUL byte: {0:?}")]
    Nul(String),
}

/// The message DPDK gives for an errno value.
pub(crate) fn strerror(code: i32) -> String {
    // SAFETY: rte_strerror returns a pointer to a static or thread-local NUL-terminated
    // string that stays valid until the next call on this thread; we copy it at once.
    unsafe {
        let ptr = ffi::rte_strerror(code);
        if ptr.is_null() {
            return format!("error {code}");
        }
        CStr::from_ptr(ptr).to_string_lossy().into_owned()
    }
}

/// The current `rte_errno`.
pub(crate) fn rte_errno() -> i32 {
    // SAFETY: rvs_rte_errno only reads DPDK's per-thread errno variable.
    unsafe { ffi::rvs_rte_errno() }
}

/// Turns a negative-errno return code into an error.
pub(crate) fn check(call: impl FnOnce() -> String, ret: i32) -> Result<i32, DpdkError> {
    if ret < 0 {
        let code = -ret;
        Err(DpdkError::Call { call: call(), reason: strerror(code), code })
    } else {
        Ok(ret)
    }
}
