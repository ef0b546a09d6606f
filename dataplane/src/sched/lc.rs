//! Least connections (IPVS `lc`).
//!
//! IPVS's algorithm: the connection overhead of a server is
//! `active × 256 + inactive` (an active connection weighs as much as 256
//! inactive ones, which only wait out their timeouts); the available server
//! with the lowest overhead wins, the first in order on a tie. Weights only
//! matter as 0 (quiescent: never picked); overloaded servers are skipped.

use super::common::conn_overhead;
use super::SchedFlow;
use super::{Candidates, Scheduler};

/// Least-connection scheduler (stateless).
#[derive(Debug, Default)]
pub struct LeastConnection;

impl LeastConnection {
    /// A least-connection scheduler.
    pub fn new() -> Self {
        LeastConnection
    }
}

impl Scheduler for LeastConnection {
    fn pick(&mut self, c: &Candidates<'_>, _flow: &dyn SchedFlow) -> Option<usize> {
        let mut best: Option<(usize, u64)> = None;
        for i in (0..c.len()).filter(|&i| c.available(i)) {
            let oh = conn_overhead(c, i);
            if best.is_none_or(|(_, boh)| oh < boh) {
                best = Some((i, oh));
            }
        }
        best.map(|(i, _)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::test_util::{counts, flow, reals};

    /// (weights, active, inactive, expected pick).
    type Row = (&'static [u32], &'static [u32], &'static [u32], Option<usize>);

    #[test]
    fn overhead_is_active_times_256_plus_inactive() {
        // (weights, active, inactive, expected): overheads worked out by hand.
        let table: &[Row] = &[
            // 1*256+0 = 256 vs 0*256+255 = 255: B.
            (&[1, 1], &[1, 0], &[0, 255], Some(1)),
            // 256 vs 256: tie, first.
            (&[1, 1], &[1, 0], &[0, 256], Some(0)),
            // 256 vs 257: A.
            (&[1, 1], &[1, 0], &[0, 257], Some(0)),
            // Weights do not matter (except 0): 3*256 = 768 vs 2*256+300 = 812.
            (&[1, 100], &[3, 2], &[0, 300], Some(0)),
            // Weight 0 never picked even when idle.
            (&[1, 0], &[5, 0], &[0, 0], Some(0)),
            (&[0, 0], &[0, 0], &[0, 0], None),
        ];
        for (i, &(w, a, ina, want)) in table.iter().enumerate() {
            let rs = reals(w);
            assert_eq!(LeastConnection::new().pick(&counts(&rs, a, ina, &[]), &flow(1)), want, "row {i}");
        }
    }

    #[test]
    fn skips_overloaded() {
        let rs = reals(&[1, 1, 1]);
        let c = counts(&rs, &[0, 3, 5], &[0, 0, 0], &[true, false, false]);
        assert_eq!(LeastConnection::new().pick(&c, &flow(1)), Some(1));
    }
}
