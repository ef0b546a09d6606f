//! Round robin (IPVS `rr`): each real server with a non-zero weight in turn.

use super::SchedFlow;
use super::{Candidates, Scheduler};

/// Round-robin state: the index of the last real server picked.
#[derive(Debug, Default)]
pub struct RoundRobin {
    last: Option<usize>,
}

impl RoundRobin {
    /// A scheduler that starts with the first real server.
    pub fn new() -> Self {
        RoundRobin { last: None }
    }
}

impl Scheduler for RoundRobin {
    fn pick(&mut self, c: &Candidates<'_>, _flow: &dyn SchedFlow) -> Option<usize> {
        let n = c.len();
        if n == 0 {
            return None;
        }
        // The one after the last pick (the list may have shrunk since).
        let mut i = match self.last {
            Some(l) if l + 1 < n => l + 1,
            Some(l) => (l + 1) % n,
            None => 0,
        };
        // Weight 0 (quiescent) and overloaded servers are skipped, as in IPVS.
        for _ in 0..n {
            if c.available(i) {
                self.last = Some(i);
                return Some(i);
            }
            i = if i + 1 == n { 0 } else { i + 1 };
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
    fn alternates_evenly() {
        let rs = reals(&[1, 1]);
        let mut s = RoundRobin::new();
        assert_eq!(spread(&mut s, &rs, 100), vec![50, 50]);
    }

    #[test]
    fn ignores_weights_but_skips_quiescent_servers() {
        let rs = reals(&[5, 0, 1]);
        let mut s = RoundRobin::new();
        let picks: Vec<_> = (0..4).map(|i| s.pick(&Candidates::idle(&rs), &flow(i))).collect();
        assert_eq!(picks, vec![Some(0), Some(2), Some(0), Some(2)]);
    }

    #[test]
    fn nothing_to_pick() {
        let mut s = RoundRobin::new();
        assert_eq!(s.pick(&Candidates::idle(&[]), &flow(1)), None);
        assert_eq!(s.pick(&Candidates::idle(&reals(&[0, 0])), &flow(1)), None);
    }

    proptest::proptest! {
        /// The pick is the first available server after the last pick,
        /// counting round (`(last + 1 + i) % n`), over lists that change
        /// length and availability between picks.
        #[test]
        fn picks_the_next_available_server_round_the_list(
            lists in proptest::collection::vec(proptest::collection::vec(0u32..3, 0..6), 1..30),
        ) {
            let mut s = RoundRobin::new();
            let mut last: Option<usize> = None;
            for weights in lists {
                let rs = reals(&weights);
                let c = Candidates::idle(&rs);
                let n = rs.len();
                let expected = if n == 0 {
                    None
                } else {
                    let start = last.map_or(0, |l| (l + 1) % n);
                    (0..n).map(|i| (start + i) % n).find(|&i| c.available(i))
                };
                let got = s.pick(&c, &flow(1));
                proptest::prop_assert_eq!(got, expected);
                if got.is_some() {
                    last = got;
                }
            }
        }
    }

    #[test]
    fn survives_a_shrinking_server_list() {
        let mut s = RoundRobin::new();
        let three = reals(&[1, 1, 1]);
        for i in 0..3 {
            s.pick(&Candidates::idle(&three), &flow(i));
        }
        let one = reals(&[1]);
        assert_eq!(s.pick(&Candidates::idle(&one), &flow(9)), Some(0));
    }
}
