//! The Environment Abstraction Layer: started once per process.

use std::ffi::CString;
use std::os::raw::c_char;
use std::sync::atomic::{AtomicBool, Ordering};

use rvs_ffi as ffi;

use super::error::{rte_errno, strerror, DpdkError};

static STARTED: AtomicBool = AtomicBool::new(false);

/// A running EAL. Dropping it calls `rte_eal_cleanup`.
#[derive(Debug)]
pub struct Eal {
    _private: (),
}

impl Eal {
    /// Starts EAL with `args` (`argv[0]` included). May be called once per process.
    /// DPDK's log goes through `tracing` from here on ([`crate::log`]).
    pub fn init(args: &[String]) -> Result<Eal, DpdkError> {
        if STARTED.swap(true, Ordering::SeqCst) {
            return Err(DpdkError::EalAlreadyInitialised);
        }
        if !crate::log::route_to_tracing() {
            tracing::warn!("DPDK's log cannot be routed through rvs's logger; it stays on stderr");
        }
        let cstrings =
            args.iter().map(|a| CString::new(a.as_str()).map_err(|_| DpdkError::Nul(a.clone()))).collect::<Result<Vec<_>, _>>()?;
        // EAL may permute argv and keeps pointers into it: leak the strings for the
        // life of the process (a few bytes, once).
        let mut argv: Vec<*mut c_char> = cstrings.into_iter().map(CString::into_raw).collect();
        let argc = i32::try_from(argv.len()).unwrap_or(i32::MAX);
        // SAFETY: argv holds argc valid NUL-terminated strings that are never freed;
        // EAL is initialised at most once (guarded by STARTED).
        let ret = unsafe { ffi::rte_eal_init(argc, argv.as_mut_ptr()) };
        std::mem::forget(argv);
        if ret < 0 {
            return Err(DpdkError::EalInit { reason: strerror(rte_errno()), args: args.join(" ") });
        }
        Ok(Eal { _private: () })
    }

    /// The lcore id of the calling thread (`u32::MAX` for a non-EAL thread).
    pub fn lcore_id() -> u32 {
        // SAFETY: reads the per-thread lcore id; valid on any thread.
        unsafe { ffi::rvs_lcore_id() }
    }

    /// Whether EAL runs on huge pages (false with `--no-huge`).
    pub fn has_hugepages() -> bool {
        // SAFETY: reads EAL's configuration; valid after init.
        unsafe { ffi::rte_eal_has_hugepages() != 0 }
    }

    /// Starts DPDK's packet-capture server (librte_pdump) so that Debian's
    /// `dpdk-dumpcap` / `dpdk-pdump`, started as secondary processes with this
    /// process's `--file-prefix`, can attach to its ports. Only useful in a
    /// primary with shared memory (huge pages, no `--in-memory`/`--no-shconf`):
    /// the caller decides. Stopped when the returned guard is dropped (before
    /// the Eal).
    pub fn start_pdump(&self) -> Result<Pdump, DpdkError> {
        // SAFETY: EAL is initialised (we hold an Eal); rte_pdump_init registers
        // a multi-process action and reserves a memzone, nothing else.
        let ret = unsafe { ffi::rte_pdump_init() };
        if ret < 0 {
            return Err(DpdkError::Pdump(strerror(rte_errno())));
        }
        Ok(Pdump { _private: () })
    }

    /// The NUMA socket of the calling lcore.
    pub fn socket_id() -> i32 {
        // SAFETY: reads per-thread EAL state; valid on any thread after init.
        let id = unsafe { ffi::rte_socket_id() };
        i32::try_from(id).unwrap_or(-1)
    }
}

/// DPDK's packet-capture server, running; dropping it stops it.
#[derive(Debug)]
pub struct Pdump {
    _private: (),
}

impl Drop for Pdump {
    fn drop(&mut self) {
        // SAFETY: rte_pdump_init succeeded and EAL still runs (the guard is
        // dropped before the Eal); uninit unregisters the action.
        unsafe {
            ffi::rte_pdump_uninit();
        }
    }
}

impl Drop for Eal {
    fn drop(&mut self) {
        // SAFETY: EAL was initialised by `init`; all ports and pools are released
        // before the Eal value (rvsd drops it last).
        unsafe {
            ffi::rte_eal_cleanup();
        }
    }
}
