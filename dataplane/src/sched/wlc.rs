//! Weighted least connections (IPVS `wlc`).
//!
//! IPVS's algorithm: the server with the lowest `overhead / weight` wins, where
//! overhead is `active × 256 + inactive`. IPVS avoids division by comparing
//! cross products: a later server `d` replaces the current best `b` when
//! `overhead(b) × weight(d) > overhead(d) × weight(b)`, so ties keep the first
//! in order. Weight 0 (quiescent) and overloaded servers are never picked.

use super::common::wlc_pick;
use super::SchedFlow;
use super::{Candidates, Scheduler};

/// Weighted least-connection scheduler (stateless).
#[derive(Debug, Default)]
pub struct WeightedLeastConnection;

impl WeightedLeastConnection {
    /// A weighted least-connection scheduler.
    pub fn new() -> Self {
        WeightedLeastConnection
    }
}

impl Scheduler for WeightedLeastConnection {
    fn pick(&mut self, c: &Candidates<'_>, _flow: &dyn SchedFlow) -> Option<usize> {
        wlc_pick(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::test_util::{counts, flow, reals};

    /// (weights, active, inactive, expected pick).
    type Row = (&'static [u32], &'static [u32], &'static [u32], Option<usize>);

    #[test]
    fn hand_computed_choices() {
        // (weights, active, inactive, expected), loads worked out by hand as
        // (256·active + inactive) / weight.
        let table: &[Row] = &[
            // 256/1 = 256 vs 512/3 = 170.7: B.
            (&[1, 3], &[1, 2], &[0, 0], Some(1)),
            // 768/3 = 256 vs 256/1 = 256: tie, first.
            (&[3, 1], &[3, 1], &[0, 0], Some(0)),
            // 1024/4 = 256, 0/0 quiescent, 300/1 = 300: A.
            (&[4, 0, 1], &[4, 0, 1], &[0, 0, 44], Some(0)),
            // Inactive counts break an active tie: (256+10)/1 vs (256+9)/1: B.
            (&[1, 1], &[1, 1], &[10, 9], Some(1)),
            // Idle servers: 0 overhead everywhere, first available.
            (&[0, 2, 5], &[0, 0, 0], &[0, 0, 0], Some(1)),
            // 2560/10 = 256 vs 257/1: A.
            (&[10, 1], &[10, 1], &[0, 1], Some(0)),
            (&[0], &[0], &[0], None),
        ];
        for (i, &(w, a, ina, want)) in table.iter().enumerate() {
            let rs = reals(w);
            assert_eq!(WeightedLeastConnection::new().pick(&counts(&rs, a, ina, &[]), &flow(1)), want, "row {i}");
        }
    }

    #[test]
    fn huge_counts_do_not_overflow() {
        let rs = reals(&[u32::MAX, 1]);
        let c = counts(&rs, &[u32::MAX, u32::MAX / 2], &[u32::MAX, 0], &[]);
        // (2^32·256)/2^32 ≈ 256 vs (2^31·256)/1: A.
        assert_eq!(WeightedLeastConnection::new().pick(&c, &flow(1)), Some(0));
    }
}
