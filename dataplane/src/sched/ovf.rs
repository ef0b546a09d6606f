//! Weighted overflow (IPVS `ovf`).
//!
//! IPVS's algorithm: among the available servers whose active connections do
//! not exceed their weight (`active <= weight`: the weight is the number of
//! connections a server should hold), the one with the highest weight wins, the
//! first in order on a tie. Connections thus stay on the heaviest server until
//! it holds more than `weight`, then overflow to the next heaviest. When every
//! server is past its weight, there is no pick. Only active connections count,
//! so this suits TCP better than UDP.

use super::SchedFlow;
use super::{Candidates, Scheduler};

/// Weighted-overflow scheduler (stateless).
#[derive(Debug, Default)]
pub struct WeightedOverflow;

impl WeightedOverflow {
    /// A weighted-overflow scheduler.
    pub fn new() -> Self {
        WeightedOverflow
    }
}

impl Scheduler for WeightedOverflow {
    fn pick(&mut self, c: &Candidates<'_>, _flow: &dyn SchedFlow) -> Option<usize> {
        let mut best: Option<usize> = None;
        for i in (0..c.len()).filter(|&i| c.available(i) && c.active(i) <= c.weight(i)) {
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
    fn fills_heaviest_then_overflows_in_weight_order() {
        // (weights, active, expected).
        let table: &[(&[u32], &[u32], Option<usize>)] = &[
            (&[2, 5, 3], &[0, 0, 0], Some(1)),
            // B at its weight still takes one (IPVS skips only active > weight).
            (&[2, 5, 3], &[0, 5, 0], Some(1)),
            (&[2, 5, 3], &[0, 6, 0], Some(2)),
            (&[2, 5, 3], &[0, 6, 4], Some(0)),
            (&[2, 5, 3], &[3, 6, 4], None),
            // Equal weights: first in order until it overflows.
            (&[3, 3], &[3, 0], Some(0)),
            (&[3, 3], &[4, 0], Some(1)),
            (&[0, 1], &[0, 0], Some(1)),
        ];
        for (i, &(w, a, want)) in table.iter().enumerate() {
            let rs = reals(w);
            let zeros = vec![0; w.len()];
            assert_eq!(WeightedOverflow::new().pick(&counts(&rs, a, &zeros, &[]), &flow(1)), want, "row {i}");
        }
    }

    #[test]
    fn sequence_as_connections_accumulate() {
        // Weights 2 and 1, connections never close: A takes 3 (active 0,1,2),
        // then B takes 2 (active 0,1), then nobody.
        let rs = reals(&[2, 1]);
        let mut active = [0u32; 2];
        let mut seq = vec![];
        for _ in 0..6 {
            let p = WeightedOverflow::new().pick(&counts(&rs, &active, &[0, 0], &[]), &flow(1));
            if let Some(i) = p {
                active[i] += 1;
            }
            seq.push(p);
        }
        assert_eq!(seq, vec![Some(0), Some(0), Some(0), Some(1), Some(1), None]);
    }
}
