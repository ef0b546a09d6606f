//! Weighted round robin (IPVS `wrr`).
//!
//! IPVS's algorithm: walk the servers in order, lowering a current weight `cw`
//! by the gcd of all weights each time the walk wraps (resetting it to the
//! maximum weight when it reaches 0); pick the next server whose weight is at
//! least `cw`. Weights 3:1 give A A A B, repeating.

use super::SchedFlow;
use super::{Candidates, Scheduler};
use crate::snapshot::RealServer;

/// Weighted round-robin state.
#[derive(Debug)]
pub struct WeightedRoundRobin {
    /// Index of the last server considered (`None` before the first pick).
    index: Option<usize>,
    /// Current weight threshold.
    cw: i64,
    /// Maximum weight.
    mw: i64,
    /// Gcd of all non-zero weights.
    di: i64,
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

impl WeightedRoundRobin {
    /// Scheduler state for `reals` (weights are read from them at each pick,
    /// but the gcd and maximum are taken now, as IPVS does on every update).
    pub fn new(reals: &[RealServer]) -> Self {
        let mw = reals.iter().map(|r| r.weight).max().unwrap_or(0);
        let di = reals.iter().map(|r| r.weight).filter(|&w| w > 0).fold(0, gcd);
        WeightedRoundRobin { index: None, cw: 0, mw: i64::from(mw), di: i64::from(di.max(1)) }
    }
}

impl Scheduler for WeightedRoundRobin {
    fn pick(&mut self, c: &Candidates<'_>, _flow: &dyn SchedFlow) -> Option<usize> {
        let n = c.len();
        if n == 0 || self.mw == 0 {
            return None;
        }
        // At most one full pass per weight level, bounded for safety.
        let bound = n.saturating_mul((self.mw / self.di) as usize + 1);
        for _ in 0..bound {
            let i = match self.index {
                Some(i) if i + 1 < n => i + 1,
                _ => {
                    self.cw -= self.di;
                    if self.cw <= 0 {
                        self.cw = self.mw;
                    }
                    0
                }
            };
            self.index = Some(i);
            if c.available(i) && i64::from(c.weight(i)) >= self.cw {
                return Some(i);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::test_util::{flow, reals, spread};
    use crate::sched::Candidates;

    #[test]
    fn three_to_one_repeats_a_a_a_b() {
        let rs = reals(&[3, 1]);
        let mut s = WeightedRoundRobin::new(&rs);
        let picks: Vec<_> = (0..8).filter_map(|i| s.pick(&Candidates::idle(&rs), &flow(i))).collect();
        assert_eq!(picks, vec![0, 0, 0, 1, 0, 0, 0, 1]);
        let mut s = WeightedRoundRobin::new(&rs);
        assert_eq!(spread(&mut s, &rs, 100), vec![75, 25]);
    }

    #[test]
    fn matches_ipvs_sequence_for_4_3_2() {
        // Independently worked out from IPVS's ip_vs_wrr_schedule: gcd 1, mw 4.
        // cw=4: A; cw=3: A B; cw=2: A B C; cw=1: A B C; then again.
        let rs = reals(&[4, 3, 2]);
        let mut s = WeightedRoundRobin::new(&rs);
        let picks: Vec<_> = (0..9).filter_map(|i| s.pick(&Candidates::idle(&rs), &flow(i))).collect();
        assert_eq!(picks, vec![0, 0, 1, 0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn gcd_steps_and_zero_weights() {
        let rs = reals(&[4, 0, 2]);
        let mut s = WeightedRoundRobin::new(&rs);
        assert_eq!(spread(&mut s, &rs, 60), vec![40, 0, 20]);
        let none = reals(&[0, 0]);
        let mut s = WeightedRoundRobin::new(&none);
        assert_eq!(s.pick(&Candidates::idle(&none), &flow(1)), None);
    }
}
