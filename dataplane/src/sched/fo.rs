//! Weighted failover (IPVS `fo`).
//!
//! IPVS's algorithm: every new connection goes to the available server with
//! the highest weight; on a tie, the first in order. Weight 0 and overloaded
//! servers are skipped, so lowering the active server's weight (or it becoming
//! overloaded) fails over to the next heaviest one.

use super::SchedFlow;
use super::{Candidates, Scheduler};

/// Weighted-failover scheduler (stateless).
#[derive(Debug, Default)]
pub struct WeightedFailover;

impl WeightedFailover {
    /// A weighted-failover scheduler.
    pub fn new() -> Self {
        WeightedFailover
    }
}

impl Scheduler for WeightedFailover {
    fn pick(&mut self, c: &Candidates<'_>, _flow: &dyn SchedFlow) -> Option<usize> {
        let mut best: Option<usize> = None;
        for i in (0..c.len()).filter(|&i| c.available(i)) {
            if best.is_none_or(|b| c.weight(i) > c.weight(b)) {
                best = Some(i);
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::test_util::{counts, flow, reals};

    #[test]
    fn highest_weight_first_in_order_on_ties() {
        // (weights, overloaded, expected).
        let table: &[(&[u32], &[bool], Option<usize>)] = &[
            (&[1, 5, 3], &[], Some(1)),
            (&[4, 5, 5], &[], Some(1)),
            (&[4, 5, 5], &[false, true, false], Some(2)),
            (&[4, 5, 5], &[false, true, true], Some(0)),
            (&[0, 0, 1], &[], Some(2)),
            (&[2, 2], &[true, true], None),
        ];
        for (i, &(w, o, want)) in table.iter().enumerate() {
            let rs = reals(w);
            let zeros = vec![0; w.len()];
            // Connection counts do not matter: give the winner lots.
            let active: Vec<u32> = (0..w.len()).map(|j| if Some(j) == want { 1000 } else { 0 }).collect();
            assert_eq!(WeightedFailover::new().pick(&counts(&rs, &active, &zeros, o), &flow(1)), want, "row {i}");
        }
    }
}
