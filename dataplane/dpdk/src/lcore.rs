//! Running closures on EAL worker lcores.

use std::os::raw::{c_int, c_void};

use rvs_ffi as ffi;

use super::error::{check, DpdkError};

type Job = Box<dyn FnOnce() -> i32 + Send + 'static>;

unsafe extern "C" fn trampoline(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the `Box<Job>` leaked by `launch_on_lcore`, handed to exactly
    // one lcore, so we take ownership back exactly once.
    let job: Box<Job> = unsafe { Box::from_raw(arg.cast::<Job>()) };
    job()
}

/// Runs `job` on the EAL worker lcore `lcore` (which must be idle).
pub fn launch_on_lcore<F>(lcore: u32, job: F) -> Result<(), DpdkError>
where
    F: FnOnce() -> i32 + Send + 'static,
{
    let boxed: Box<Job> = Box::new(Box::new(job));
    let arg = Box::into_raw(boxed).cast::<c_void>();
    // SAFETY: trampoline matches lcore_function_t; `arg` stays valid until the
    // trampoline reclaims it. On failure the job never runs and we reclaim it here.
    let ret = unsafe { ffi::rte_eal_remote_launch(Some(trampoline), arg, lcore) };
    if ret < 0 {
        // SAFETY: the launch failed, so no lcore owns `arg`; reclaim and drop it.
        drop(unsafe { Box::from_raw(arg.cast::<Job>()) });
    }
    check(|| format!("rte_eal_remote_launch(lcore {lcore})"), ret).map(|_| ())
}

/// Waits until every worker lcore has returned from its job.
pub fn wait_all_lcores() {
    // SAFETY: only waits on EAL's lcore state; safe after EAL init.
    unsafe {
        ffi::rte_eal_mp_wait_lcore();
    }
}

/// TSC ticks per second.
pub fn tsc_hz() -> u64 {
    // SAFETY: reads a value EAL measured at init.
    unsafe { ffi::rvs_tsc_hz() }
}

/// The time-stamp counter now (`rte_rdtsc`: not serialising). On x86-64 the
/// instruction itself, inlined (the shim's call around it is measurable in a
/// poll loop that reads the TSC every iteration); elsewhere through the shim.
#[inline(always)]
pub fn rdtsc() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: RDTSC reads the time-stamp counter into registers; it touches
        // no memory and every x86-64 CPU has it (what `rte_rdtsc` executes).
        unsafe { std::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        // SAFETY: reads the TSC through the shim; no memory is touched.
        unsafe { ffi::rvs_rdtsc() }
    }
}
