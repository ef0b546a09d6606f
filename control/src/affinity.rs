//! Keeping rvsd's control threads off the CPUs its workers poll on.
//!
//! A worker busy-polls its lcore's CPU; any other thread the kernel runs
//! there preempts it, and packets wait (and, in the worker's own cycle
//! count, the preemption counts as busy time). EAL keeps its own control
//! threads off the lcores, but rvsd starts its control plane's runtime
//! (signals, API, health checks, VRRP) before EAL: those threads keep the
//! affinity the process started with, worker CPUs included. Once the
//! workers run, [`keep_off`] narrows every such thread to its own CPUs
//! minus the workers'. A thread left with no CPU (every CPU it may use is a
//! worker's: an lcore thread itself, or a machine where the control plane
//! shares the workers' CPUs on purpose) is left as it is. Threads created
//! later inherit the narrowed affinity from the thread that creates them.
//!
//! Each worker reports the CPUs it runs on ([`current_thread_cpus`], called
//! on its lcore), which covers any `--lcores` mapping EAL was given.

use std::path::Path;

use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::unistd::Pid;

/// The CPUs the calling thread may run on (for a worker: its lcore's).
pub fn current_thread_cpus() -> Result<Vec<usize>, String> {
    let set = sched_getaffinity(Pid::from_raw(0)).map_err(|e| format!("sched_getaffinity: {e}"))?;
    Ok(cpus_of(&set))
}

/// What [`keep_off`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeptOff {
    /// Threads whose affinity now excludes the workers' CPUs.
    pub narrowed: usize,
    /// Threads already off them, or with no other CPU to run on.
    pub unchanged: usize,
    /// Threads whose affinity could not be changed.
    pub failed: usize,
    /// Why the last of them failed.
    pub last_error: Option<String>,
}

/// Narrows every thread of this process that may run on one of
/// `worker_cpus` (and on other CPUs too) to its CPUs without them.
pub fn keep_off(worker_cpus: &[usize]) -> Result<KeptOff, String> {
    let tasks = std::fs::read_dir(Path::new("/proc/self/task")).map_err(|e| format!("/proc/self/task: {e}"))?;
    let mut kept = KeptOff::default();
    for task in tasks.flatten() {
        // A thread that exits meanwhile is simply skipped.
        let Some(tid) = task.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        let Ok(current) = sched_getaffinity(Pid::from_raw(tid)) else { continue };
        match narrowed(&current, worker_cpus) {
            Some(set) => match sched_setaffinity(Pid::from_raw(tid), &set) {
                Ok(()) => kept.narrowed += 1,
                Err(e) => {
                    kept.failed += 1;
                    kept.last_error = Some(format!("sched_setaffinity(thread {tid}): {e}"));
                }
            },
            None => kept.unchanged += 1,
        }
    }
    Ok(kept)
}

/// `current` without `worker_cpus`: None when that removes nothing or
/// leaves no CPU.
pub fn narrowed(current: &CpuSet, worker_cpus: &[usize]) -> Option<CpuSet> {
    let mut set = *current;
    let mut removed = false;
    for &cpu in worker_cpus {
        if set.is_set(cpu).unwrap_or(false) {
            set.unset(cpu).ok()?;
            removed = true;
        }
    }
    (removed && !cpus_of(&set).is_empty()).then_some(set)
}

/// The CPUs in `set`, ascending.
fn cpus_of(set: &CpuSet) -> Vec<usize> {
    (0..CpuSet::count()).filter(|&cpu| set.is_set(cpu).unwrap_or(false)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(cpus: &[usize]) -> CpuSet {
        let mut s = CpuSet::new();
        for &c in cpus {
            s.set(c).expect("cpu in range");
        }
        s
    }

    #[test]
    fn a_control_thread_loses_the_worker_cpus_only() {
        let got = narrowed(&set(&[0, 1, 2, 3]), &[1, 3]).expect("narrowed");
        assert_eq!(cpus_of(&got), vec![0, 2]);
    }

    #[test]
    fn a_thread_off_the_workers_or_only_on_them_is_left_alone() {
        // Already off the workers' CPUs (EAL's own control threads).
        assert!(narrowed(&set(&[0]), &[1]).is_none());
        // Only on workers' CPUs: an lcore thread, or a control plane that
        // shares the workers' CPUs on purpose.
        assert!(narrowed(&set(&[1]), &[1]).is_none());
        assert!(narrowed(&set(&[1, 2]), &[1, 2, 3]).is_none());
    }

    #[test]
    fn the_calling_thread_has_cpus() {
        assert!(!current_thread_cpus().expect("affinity").is_empty());
    }
}
