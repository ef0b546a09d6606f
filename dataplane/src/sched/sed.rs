//! Shortest expected delay (IPVS `sed`).
//!
//! IPVS's algorithm: the expected delay of a server is `(active + 1) / weight`
//! (the connection about to be placed counts, and inactive ones do not); the
//! lowest wins, compared by cross-multiplication as in `wlc` (a later server
//! `d` replaces the best `b` when `(active_b + 1) × weight_d > (active_d + 1) ×
//! weight_b`), ties to the first. Weight 0 and overloaded servers are skipped.

use super::common::least_weighted;
use super::SchedFlow;
use super::{Candidates, Scheduler};

/// The `sed`/`nq` overhead of real server `i`: active connections + 1.
pub(crate) fn sed_overhead(c: &Candidates<'_>, i: usize) -> u64 {
    u64::from(c.active(i)) + 1
}

/// Shortest-expected-delay scheduler (stateless).
#[derive(Debug, Default)]
pub struct ShortestExpectedDelay;

impl ShortestExpectedDelay {
    /// A shortest-expected-delay scheduler.
    pub fn new() -> Self {
        ShortestExpectedDelay
    }
}

impl Scheduler for ShortestExpectedDelay {
    fn pick(&mut self, c: &Candidates<'_>, _flow: &dyn SchedFlow) -> Option<usize> {
        least_weighted(c, 0..c.len(), |i| sed_overhead(c, i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::test_util::{counts, flow, reals};

    #[test]
    fn hand_computed_choices() {
        // (weights, active, expected); delays worked out as (active+1)/weight.
        let table: &[(&[u32], &[u32], Option<usize>)] = &[
            // 1/1 = 1 vs 1/3: B even though both are idle (wlc would say A).
            (&[1, 3], &[0, 0], Some(1)),
            // 2/1 = 2 vs 4/2 = 2: tie, first.
            (&[1, 2], &[1, 3], Some(0)),
            // 3/1 = 3 vs 7/2 = 3.5 vs 10/3 = 3.33: A.
            (&[1, 2, 3], &[2, 6, 9], Some(0)),
            // 4/1 vs 7/2 = 3.5 vs 10/3 = 3.33: C.
            (&[1, 2, 3], &[3, 6, 9], Some(2)),
            // Quiescent C is not picked even though 1/0 looks "infinite" the other way.
            (&[1, 1, 0], &[5, 6, 0], Some(0)),
        ];
        for (i, &(w, a, want)) in table.iter().enumerate() {
            let rs = reals(w);
            let ina = vec![1000; w.len()]; // inactive connections do not count
            assert_eq!(ShortestExpectedDelay::new().pick(&counts(&rs, a, &ina, &[]), &flow(1)), want, "row {i}");
        }
    }
}
