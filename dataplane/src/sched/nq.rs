//! Never queue (IPVS `nq`).
//!
//! IPVS's algorithm: walking the servers in order, the first available one with
//! no active connection wins at once (a connection is never queued behind
//! another while some server is idle); when every server is busy, the pick is
//! `sed`'s: lowest `(active + 1) / weight` by cross-multiplication, ties to the
//! first. Weight 0 and overloaded servers are skipped.

use super::common::least_weighted;
use super::sed::sed_overhead;
use super::SchedFlow;
use super::{Candidates, Scheduler};

/// Never-queue scheduler (stateless).
#[derive(Debug, Default)]
pub struct NeverQueue;

impl NeverQueue {
    /// A never-queue scheduler.
    pub fn new() -> Self {
        NeverQueue
    }
}

impl Scheduler for NeverQueue {
    fn pick(&mut self, c: &Candidates<'_>, _flow: &dyn SchedFlow) -> Option<usize> {
        if let Some(idle) = (0..c.len()).find(|&i| c.available(i) && c.active(i) == 0) {
            return Some(idle);
        }
        least_weighted(c, 0..c.len(), |i| sed_overhead(c, i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::test_util::{counts, flow, reals};

    /// (weights, active, overloaded, expected pick).
    type Row = (&'static [u32], &'static [u32], &'static [bool], Option<usize>);

    #[test]
    fn hand_computed_choices() {
        // (weights, active, overloaded, expected).
        let table: &[Row] = &[
            // B is idle: wins although sed would pick C (1/1 vs 2/100).
            (&[1, 1, 100], &[3, 0, 1], &[false, false, false], Some(1)),
            // First idle wins, not the heaviest idle.
            (&[1, 5], &[0, 0], &[false, false], Some(0)),
            // An idle but quiescent or overloaded server does not count.
            (&[0, 1, 1], &[0, 0, 2], &[false, true, false], Some(2)),
            // Nobody idle: sed. 3/1 vs 5/2 = 2.5 vs 4/1: B.
            (&[1, 2, 1], &[2, 4, 3], &[false, false, false], Some(1)),
            // Nobody idle, tie 2/1 vs 4/2: first.
            (&[1, 2], &[1, 3], &[false, false], Some(0)),
        ];
        for (i, &(w, a, o, want)) in table.iter().enumerate() {
            let rs = reals(w);
            let ina = vec![0; w.len()];
            assert_eq!(NeverQueue::new().pick(&counts(&rs, a, &ina, o), &flow(1)), want, "row {i}");
        }
    }
}
