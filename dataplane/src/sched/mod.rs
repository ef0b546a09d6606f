//! Schedulers: which real server gets a new connection.
//!
//! One file per algorithm, each behind the [`Scheduler`] trait, with IPVS's
//! definitions. A worker keeps one scheduler state per service; the state is
//! per core, so two workers each run their own round robin (with one worker,
//! the spread is exact; with N, each core's share is exact).

mod rr;
mod wrr;

pub use rr::RoundRobin;
pub use wrr::WeightedRoundRobin;

use crate::conn::FlowKey;
use crate::snapshot::{RealServer, SchedulerKind};

/// A scheduling algorithm's per-service state.
pub trait Scheduler: Send {
    /// Picks a real server for a new connection with `flow`, as an index into
    /// `reals`, or `None` when no real server may take one (all weights 0).
    fn pick(&mut self, reals: &[RealServer], flow: &FlowKey) -> Option<usize>;
}

/// A fresh scheduler state of `kind` for a service with `reals`.
pub fn new_scheduler(kind: SchedulerKind, reals: &[RealServer]) -> Box<dyn Scheduler> {
    match kind {
        SchedulerKind::Rr => Box::new(RoundRobin::new()),
        SchedulerKind::Wrr => Box::new(WeightedRoundRobin::new(reals)),
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    use std::net::Ipv4Addr;

    use crate::conn::FlowKey;
    use crate::snapshot::{ForwardMode, RealServer};

    pub fn reals(weights: &[u32]) -> Vec<RealServer> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &weight)| RealServer {
                addr: Ipv4Addr::new(10, 1, 0, 11 + i as u8),
                port: 80,
                weight,
                forward: ForwardMode::Nat,
            })
            .collect()
    }

    pub fn flow(sport: u16) -> FlowKey {
        FlowKey { proto: 6, src: Ipv4Addr::new(10, 0, 0, 2), sport, dst: Ipv4Addr::new(10, 0, 0, 100), dport: 80 }
    }

    /// How many of `n` picks each real server gets.
    pub fn spread(s: &mut dyn super::Scheduler, reals: &[RealServer], n: usize) -> Vec<usize> {
        let mut counts = vec![0; reals.len()];
        for i in 0..n {
            if let Some(r) = s.pick(reals, &flow(i as u16)) {
                counts[r] += 1;
            }
        }
        counts
    }
}
