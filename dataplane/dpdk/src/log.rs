//! DPDK's own log (EAL, PMDs, mempools) through rvs's logger.
//!
//! DPDK writes its log to a stdio `FILE` (`rte_openlog_stream`), by default
//! stderr, with no severity a reader can see: under systemd every EAL line
//! landed in the journal at the unit's default priority and outside the
//! `<N>` prefixes rvsd's own lines carry. This module gives DPDK a `FILE`
//! made with glibc's `fopencookie(3)` whose write function hands each message,
//! with DPDK's level for it (`rte_log_cur_msg_loglevel`), to `tracing`, so
//! DPDK's lines (`dpdk: EAL: …`) get the same format, filter (`RUST_LOG`,
//! target `dpdk`) and journald severity as the rest of rvsd.
//!
//! Why not a pipe and a reader thread: the level is only known on the thread
//! that logs, while the message is being written.

use std::os::raw::{c_char, c_int, c_void};
use std::sync::atomic::{AtomicBool, Ordering};

use rvs_ffi as ffi;

/// glibc's `cookie_io_functions_t` (stdio.h, `_GNU_SOURCE`): the four
/// callbacks of a cookie stream; `None` = the operation is not supported.
#[repr(C)]
struct CookieIoFunctions {
    read: Option<unsafe extern "C" fn(*mut c_void, *mut c_char, usize) -> isize>,
    write: Option<unsafe extern "C" fn(*mut c_void, *const c_char, usize) -> isize>,
    seek: Option<unsafe extern "C" fn(*mut c_void, *mut i64, c_int) -> c_int>,
    close: Option<unsafe extern "C" fn(*mut c_void) -> c_int>,
}

extern "C" {
    /// glibc's `fopencookie(3)` (not in the `libc` crate).
    fn fopencookie(cookie: *mut c_void, mode: *const c_char, functions: CookieIoFunctions) -> *mut ffi::FILE;
}

static ROUTED: AtomicBool = AtomicBool::new(false);

/// DPDK's log levels (rte_log.h, `RTE_LOG_EMERG` = 1 … `RTE_LOG_DEBUG` = 8)
/// as tracing levels: EMERG..ERR are errors, WARNING a warning, NOTICE and
/// INFO information, DEBUG debug.
pub fn level_of(rte_level: u32) -> tracing::Level {
    match rte_level {
        0..=4 => tracing::Level::ERROR,
        5 => tracing::Level::WARN,
        6 | 7 => tracing::Level::INFO,
        _ => tracing::Level::DEBUG,
    }
}

/// Emits one DPDK message (one or more lines) at `level`, line by line, each
/// as `dpdk: <line>` so that a reader can tell DPDK's lines from rvsd's.
pub fn emit(level: tracing::Level, message: &[u8]) {
    let text = String::from_utf8_lossy(message);
    for line in text.lines().map(str::trim_end).filter(|l| !l.is_empty()) {
        match level {
            tracing::Level::ERROR => tracing::error!(target: "dpdk", "dpdk: {line}"),
            tracing::Level::WARN => tracing::warn!(target: "dpdk", "dpdk: {line}"),
            tracing::Level::INFO => tracing::info!(target: "dpdk", "dpdk: {line}"),
            _ => tracing::debug!(target: "dpdk", "dpdk: {line}"),
        }
    }
}

/// The cookie stream's write function: called by stdio with DPDK's message.
unsafe extern "C" fn write_to_tracing(_cookie: *mut c_void, buf: *const c_char, size: usize) -> isize {
    if buf.is_null() || size == 0 {
        return 0;
    }
    // SAFETY: stdio passes `size` readable bytes at `buf`, valid for this call.
    let bytes = unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), size) };
    // SAFETY: reads the calling thread's current DPDK log message level; valid
    // on any thread, before and after rte_eal_init.
    let rte_level = unsafe { ffi::rte_log_cur_msg_loglevel() };
    emit(level_of(u32::try_from(rte_level).unwrap_or(8)), bytes);
    isize::try_from(size).unwrap_or(isize::MAX)
}

/// Routes DPDK's log to `tracing` for the rest of the process. Call before
/// `rte_eal_init` so that EAL's start-up lines are routed too; later calls do
/// nothing. Returns false if the stream could not be made (DPDK then keeps
/// logging to stderr).
pub fn route_to_tracing() -> bool {
    if ROUTED.swap(true, Ordering::SeqCst) {
        return true;
    }
    let functions = CookieIoFunctions { read: None, write: Some(write_to_tracing), seek: None, close: None };
    // SAFETY: a write-only cookie stream with no cookie state; the mode string is
    // NUL-terminated and static. The stream lives until the process exits.
    let stream = unsafe { fopencookie(std::ptr::null_mut(), c"w".as_ptr(), functions) };
    if stream.is_null() {
        ROUTED.store(false, Ordering::SeqCst);
        return false;
    }
    // SAFETY: `stream` is a valid FILE that is never closed; DPDK only writes
    // (and flushes) it, from any thread, under its own stdio lock.
    unsafe { ffi::rte_openlog_stream(stream) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dpdk_levels_map_to_journal_severities() {
        assert_eq!(level_of(1), tracing::Level::ERROR, "EMERG");
        assert_eq!(level_of(4), tracing::Level::ERROR, "ERR");
        assert_eq!(level_of(5), tracing::Level::WARN, "WARNING");
        assert_eq!(level_of(6), tracing::Level::INFO, "NOTICE");
        assert_eq!(level_of(7), tracing::Level::INFO, "INFO");
        assert_eq!(level_of(8), tracing::Level::DEBUG, "DEBUG");
    }
}
