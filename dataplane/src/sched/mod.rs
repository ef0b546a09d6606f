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

/// What a scheduler sees of a service's real servers when it picks one.
///
/// All slices have one entry per real server, in the service's order.
#[derive(Clone, Copy, Debug)]
pub struct Candidates<'a> {
    /// The real servers (address, port, weight, forwarding mode).
    pub reals: &'a [RealServer],
    /// Active connections per real server (IPVS `activeconns`).
    pub active: &'a [u32],
    /// Inactive connections per real server (IPVS `inactconns`).
    pub inactive: &'a [u32],
    /// True for a real server over its upper connection threshold (IPVS
    /// `IP_VS_DEST_F_OVERLOAD`): it must not be picked.
    pub overloaded: &'a [bool],
}

impl<'a> Candidates<'a> {
    /// Candidates with no connections and nobody overloaded.
    pub fn idle(reals: &'a [RealServer]) -> Self {
        Candidates { reals, active: &[], inactive: &[], overloaded: &[] }
    }

    /// Number of real servers.
    pub fn len(&self) -> usize {
        self.reals.len()
    }

    /// True when there is no real server.
    pub fn is_empty(&self) -> bool {
        self.reals.is_empty()
    }

    /// Weight of real server `i` (0 when out of range).
    pub fn weight(&self, i: usize) -> u32 {
        self.reals.get(i).map_or(0, |r| r.weight)
    }

    /// Active connections of real server `i` (0 when not tracked).
    pub fn active(&self, i: usize) -> u32 {
        self.active.get(i).copied().unwrap_or(0)
    }

    /// Inactive connections of real server `i` (0 when not tracked).
    pub fn inactive(&self, i: usize) -> u32 {
        self.inactive.get(i).copied().unwrap_or(0)
    }

    /// True when real server `i` is over its upper threshold.
    pub fn is_overloaded(&self, i: usize) -> bool {
        self.overloaded.get(i).copied().unwrap_or(false)
    }

    /// True when real server `i` may take a new connection: weight > 0 and not
    /// overloaded (IPVS's test in every scheduler).
    pub fn available(&self, i: usize) -> bool {
        self.weight(i) > 0 && !self.is_overloaded(i)
    }
}

/// A scheduling algorithm's per-service state.
pub trait Scheduler: Send {
    /// Picks a real server for a new connection with `flow`, as an index into
    /// `c.reals`, or `None` when no real server may take one.
    fn pick(&mut self, c: &Candidates<'_>, flow: &FlowKey) -> Option<usize>;
}

/// Which packet fields hash-based schedulers hash.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HashFields {
    /// The client's address (IPVS default).
    #[default]
    SrcAddr,
    /// The client's address and port (`sh-port`, `mh-port`).
    SrcAddrPort,
}

/// Scheduler options (ipvsadm `-b sh-fallback,sh-port,...`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct SchedOptions {
    /// Fields hashed by sh, mh and maglev.
    pub hash: HashFields,
    /// sh/mh: fall back to another server when the hashed one is unavailable.
    pub fallback: bool,
    /// maglev: table size (a prime); `None` = the default.
    pub table_size: Option<u32>,
}

/// A fresh scheduler state of `kind` for a service with `reals`.
pub fn new_scheduler(kind: SchedulerKind, reals: &[RealServer], _options: &SchedOptions) -> Box<dyn Scheduler> {
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
            if let Some(r) = s.pick(&super::Candidates::idle(reals), &flow(i as u16)) {
                counts[r] += 1;
            }
        }
        counts
    }
}
