//! Weighted random twos choice (IPVS `twos`, "power of two choices").
//!
//! IPVS's algorithm: draw two servers at random, each with probability
//! proportional to its weight among the available ones (independently, so both
//! draws may name the same server); keep the second draw only when its load is
//! lower, load being `overhead / weight` with IPVS's overhead
//! `active × 256 + inactive`, compared by cross-multiplication (ties keep the
//! first draw). Weight 0 and overloaded servers are never drawn.
//!
//! The draw here is exact: `r` uniform in `0 .. total weight`, and the server
//! whose cumulative-weight interval contains `r`. (IPVS draws `r` in
//! `0 ..= total` and takes the first server whose cumulative weight reaches
//! `r`, which gives the first server one extra share.)
//!
//! The random numbers come from a SplitMix64 generator owned by the scheduler:
//! [`new_scheduler`](super::new_scheduler) seeds each instance differently (so
//! worker cores do not make the same draws), tests seed it explicitly.

use super::common::{conn_overhead, SplitMix64};
use super::SchedFlow;
use super::{Candidates, Scheduler};

/// Twos-choice scheduler: its random generator.
#[derive(Debug)]
pub struct TwoChoices {
    rng: SplitMix64,
}

impl TwoChoices {
    /// A scheduler drawing from a generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        TwoChoices { rng: SplitMix64::new(seed) }
    }

    /// The available server whose cumulative-weight interval contains `r`.
    fn weighted(c: &Candidates<'_>, r: u64) -> Option<usize> {
        let mut cum = 0u64;
        for i in (0..c.len()).filter(|&i| c.available(i)) {
            cum += u64::from(c.weight(i));
            if r < cum {
                return Some(i);
            }
        }
        None
    }
}

impl Scheduler for TwoChoices {
    fn pick(&mut self, c: &Candidates<'_>, _flow: &dyn SchedFlow) -> Option<usize> {
        let total: u64 = (0..c.len()).filter(|&i| c.available(i)).map(|i| u64::from(c.weight(i))).sum();
        if total == 0 {
            return None;
        }
        let first = Self::weighted(c, self.rng.below(total))?;
        let second = Self::weighted(c, self.rng.below(total))?;
        let (oh1, oh2) = (u128::from(conn_overhead(c, first)), u128::from(conn_overhead(c, second)));
        if u128::from(c.weight(second)) * oh1 > u128::from(c.weight(first)) * oh2 {
            Some(second)
        } else {
            Some(first)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::common::SplitMix64;
    use crate::sched::test_util::{counts, flow, reals};
    use crate::sched::Candidates;

    #[test]
    fn takes_the_less_loaded_of_its_two_draws() {
        // Replay the generator to know the two draws, then check the choice.
        let rs = reals(&[1, 2, 3, 4]);
        let active = [5u32, 1, 8, 2];
        let zeros = [0u32; 4];
        let c = counts(&rs, &active, &zeros, &[]);
        let mut s = TwoChoices::new(42);
        let mut replay = SplitMix64::new(42);
        let cum = [1u64, 3, 6, 10];
        let draw = |r: u64| cum.iter().position(|&x| r < x).unwrap_or(9);
        for _ in 0..1000 {
            let (a, b) = (draw(replay.below(10)), draw(replay.below(10)));
            // Load = 256·active / weight; keep b only when strictly lower.
            let load = |i: usize| f64::from(active[i]) / f64::from(rs[i].weight);
            let want = if load(b) < load(a) { b } else { a };
            assert_eq!(s.pick(&c, &flow(1)), Some(want));
        }
    }

    #[test]
    fn draws_follow_weights_when_idle() {
        // All idle: loads tie, so the first draw is kept: shares follow weights.
        let rs = reals(&[1, 0, 3]);
        let mut s = TwoChoices::new(7);
        let mut seen = [0usize; 3];
        for _ in 0..40_000 {
            seen[s.pick(&Candidates::idle(&rs), &flow(1)).unwrap_or(1)] += 1;
        }
        assert_eq!(seen[1], 0);
        assert!((9_500..10_500).contains(&seen[0]) && (29_500..30_500).contains(&seen[2]), "{seen:?}");
    }

    #[test]
    fn prefers_less_loaded_servers_over_time() {
        // Equal weights, connections never close: two choices keep the spread
        // far tighter than one random choice would.
        let rs = reals(&[1; 8]);
        let mut s = TwoChoices::new(3);
        let mut active = [0u32; 8];
        for _ in 0..8_000 {
            let c = counts(&rs, &active, &[0; 8], &[]);
            if let Some(i) = s.pick(&c, &flow(1)) {
                active[i] += 1;
            }
        }
        let (min, max) = (active.iter().min().copied().unwrap_or(0), active.iter().max().copied().unwrap_or(0));
        assert!(max - min <= 10, "{active:?}");
    }

    #[test]
    fn reproducible_for_a_seed() {
        let rs = reals(&[2, 3, 5]);
        let run = |seed| {
            let mut s = TwoChoices::new(seed);
            (0..50).map(|_| s.pick(&Candidates::idle(&rs), &flow(1))).collect::<Vec<_>>()
        };
        assert_eq!(run(9), run(9));
        assert_ne!(run(9), run(10));
    }
}
