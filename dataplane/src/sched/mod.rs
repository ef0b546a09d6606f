//! Schedulers: which real server gets a new connection.
//!
//! One file per algorithm, each behind the [`Scheduler`] trait, with IPVS's
//! definitions (each file's documentation states the algorithm and where rvs
//! departs from the kernel):
//!
//! | kind | file | picks |
//! |------|------|-------|
//! | `rr` | `rr.rs` | each server with weight > 0 in turn |
//! | `wrr` | `wrr.rs` | in turn, in proportion to weights (gcd-stepped) |
//! | `lc` | `lc.rs` | lowest `256·active + inactive` |
//! | `wlc` | `wlc.rs` | lowest `(256·active + inactive) / weight` |
//! | `sed` | `sed.rs` | lowest `(active + 1) / weight` |
//! | `nq` | `nq.rs` | the first idle server, else as `sed` |
//! | `sh` | `sh.rs` | 256-bucket weighted table by source address (+ port) |
//! | `dh` | `dh.rs` | 256-bucket table by destination address |
//! | `lblc` | `lblc.rs` | the server remembered for the destination, else `wlc` |
//! | `lblcr` | `lblcr.rs` | least loaded of the destination's server set, grown by `wlc` |
//! | `fo` | `fo.rs` | the heaviest available server |
//! | `ovf` | `ovf.rs` | the heaviest server with `active <= weight` |
//! | `twos` | `twos.rs` | the less loaded of two weighted random draws |
//! | `mh` | `mh.rs` | IPVS's Maglev table (4093 entries) by source address (+ port) |
//! | `maglev` | `maglev.rs` | weighted Maglev table (65537 entries), identical on every node |
//!
//! Every scheduler skips servers with weight 0 (quiescent: they keep their
//! connections but get no new one) and servers flagged overloaded (over their
//! upper connection threshold); [`Candidates::available`] is the test.
//! Scheduler-specific options ([`SchedOptions`]: ipvsadm's `sh-port`,
//! `sh-fallback`, `mh-port`, `mh-fallback`, and Maglev table sizes) are fixed
//! when the scheduler is built; [`validate_options`] checks them.
//!
//! # Per-core by design
//!
//! A worker keeps one scheduler state per service, built by [`new_scheduler`]
//! and rebuilt when the service's definition changes; nothing in it is shared
//! with other cores, locked or atomic. Precomputed tables (`sh`/`dh` buckets,
//! Maglev tables) are built in the constructor, so each core holds its own
//! copy, identical on every core (and, for `maglev`, on every node).
//!
//! * State-only schedulers (`rr`, `wrr`) run one sequence per core: each
//!   core's own share is exact, and the total is the sum of the cores' exact
//!   sequences.
//! * Hashing schedulers (`sh`, `dh`, `mh`, `maglev`) need no shared state at
//!   all: the same key gives the same server on every core.
//! * Connection-count schedulers (`lc`, `wlc`, `sed`, `nq`, `lblc`, `lblcr`,
//!   `ovf`, `twos`) read [`Candidates::active`] and [`Candidates::inactive`].
//!   The worker fills them with its *own* counts, exact, plus the *other*
//!   workers' counts as they last published them: each worker stores its
//!   per-server counts into shared atomics with relaxed stores every few
//!   milliseconds — no lock, no read-modify-write on the packet path, and no
//!   cache line written by two cores. The view is therefore exact for the
//!   local core and at most one publication interval stale for each other
//!   core: the count a core sees for a server differs from the true total by
//!   at most the number of connections the other cores opened (or ended) on it
//!   since their last publication — over all servers, at most the number of
//!   connections the other cores created (or ended) in one publication
//!   interval. For `wlc` with connections that stay open this bounds the
//!   imbalance: if K is that number of unpublished connections, then at any
//!   time, for any two servers x and y, `active_x / w_x − active_y / w_y ≤
//!   (K + 1) / w_x` (one core, K = 0, is IPVS's exact bound of one
//!   connection). Proof sketch: the picking core saw `active_x − u_x` with
//!   `0 ≤ u_x ≤ K` unpublished, and chose x because `(active_x − u_x) / w_x ≤
//!   active_y / w_y`. The test `stale_views_keep_wlc_within_bound` simulates
//!   cores with stale views and checks the bound at every step.
//! * `lblc` and `lblcr` also keep per-core destination tables: a destination
//!   may be remembered with different servers on different cores.

mod common;

pub use common::addr_fold;
mod dh;
mod fo;
mod lblc;
mod lblcr;
mod lc;
mod maglev;
mod mh;
mod nq;
mod ovf;
mod rr;
mod sed;
mod sh;
mod twos;
mod wlc;
mod wrr;

pub use dh::DestinationHashing;
pub use fo::WeightedFailover;
pub use lblc::{LocalityLeastConnection, LBLC_MAX_ENTRIES};
pub use lblcr::{LocalityLeastConnectionReplicated, LBLCR_MAX_ENTRIES, LBLCR_SHRINK_AFTER};
pub use lc::LeastConnection;
pub use maglev::{Maglev, MAGLEV_DEFAULT_TABLE_SIZE};
pub use mh::{MaglevHashing, MH_DEFAULT_TABLE_SIZE};
pub use nq::NeverQueue;
pub use ovf::WeightedOverflow;
pub use rr::RoundRobin;
pub use sed::ShortestExpectedDelay;
pub use sh::{SourceHashing, HASH_TAB_SIZE};
pub use twos::TwoChoices;
pub use wlc::WeightedLeastConnection;
pub use wrr::WeightedRoundRobin;

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::conn::FlowKey;
use crate::snapshot::{RealServer, SchedulerKind};

/// What the schedulers read of a new connection's flow: its addresses (of
/// either family) and ports. Every [`FlowKey`] is one.
pub trait SchedFlow {
    /// The client's address.
    fn src(&self) -> IpAddr;
    /// The address the client sent to.
    fn dst(&self) -> IpAddr;
    /// The client's port.
    fn sport(&self) -> u16;
}

impl<A: Copy + Into<IpAddr>> SchedFlow for FlowKey<A> {
    fn src(&self) -> IpAddr {
        self.src.into()
    }

    fn dst(&self) -> IpAddr {
        self.dst.into()
    }

    fn sport(&self) -> u16 {
        self.sport
    }
}

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
    fn pick(&mut self, c: &Candidates<'_>, flow: &dyn SchedFlow) -> Option<usize>;
}

/// Which fields of a connection the source-hashing schedulers (`sh`, `mh`,
/// `maglev`) hash.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HashFields {
    /// The client's address only (IPVS's default): all connections of a
    /// client go to one server.
    #[default]
    SrcAddr,
    /// The client's address and port (ipvsadm's `sh-port`, `mh-port`): a
    /// client's connections spread over the servers.
    SrcAddrPort,
}

/// Largest Maglev table size accepted for `mh` and `maglev` (2^20 entries,
/// 2 MiB per service per core).
pub const MAX_TABLE_SIZE: u32 = 1 << 20;

/// Bound on the real servers of a Maglev table (`mh`, `maglev`): entries are
/// 16-bit server indices, `u16::MAX` meaning "none", so at most 65535 servers.
pub const MAX_TABLE_SERVERS: usize = u16::MAX as usize;

/// Scheduler options of a service (ipvsadm's `-b sched-flags`, plus the Maglev
/// table size). The defaults are IPVS's behaviour.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct SchedOptions {
    /// Fields hashed by `sh`, `mh` and `maglev`; [`HashFields::SrcAddrPort`]
    /// is ipvsadm's `sh-port`/`mh-port`. Default: source address only.
    pub hash: HashFields,
    /// `sh`/`mh` (ipvsadm's `sh-fallback`/`mh-fallback`): when the hashed
    /// server is unavailable, look for another one instead of not picking.
    /// (`maglev` always does.)
    pub fallback: bool,
    /// `mh`/`maglev`: number of table entries, a prime; `None` = the default
    /// (4093 for `mh`, as IPVS; 65537 for `maglev`).
    pub table_size: Option<u32>,
}

/// Seeds of successive `twos` schedulers: each instance (each core, each
/// rebuild) draws a different random sequence.
static TWOS_SEEDS: AtomicU64 = AtomicU64::new(0x7477_6f73_2d73_6564);

/// A fresh scheduler state of `kind` for a service with `reals`, configured by
/// `options`. Never fails: options a kind does not use are ignored, and a
/// Maglev table size that is not a prime in `2 ..= MAX_TABLE_SIZE` is replaced
/// by the default ([`validate_options`] rejects both up front). Builds the
/// scheduler's tables (up to 65537 entries for `maglev`), so call it when a
/// service changes, not per packet.
pub fn new_scheduler(kind: SchedulerKind, reals: &[RealServer], options: &SchedOptions) -> Box<dyn Scheduler> {
    match kind {
        SchedulerKind::Rr => Box::new(RoundRobin::new()),
        SchedulerKind::Wrr => Box::new(WeightedRoundRobin::new(reals)),
        SchedulerKind::Lc => Box::new(LeastConnection::new()),
        SchedulerKind::Wlc => Box::new(WeightedLeastConnection::new()),
        SchedulerKind::Sed => Box::new(ShortestExpectedDelay::new()),
        SchedulerKind::Nq => Box::new(NeverQueue::new()),
        SchedulerKind::Sh => Box::new(SourceHashing::new(reals, options)),
        SchedulerKind::Dh => Box::new(DestinationHashing::new(reals)),
        SchedulerKind::Lblc => Box::new(LocalityLeastConnection::new()),
        SchedulerKind::Lblcr => Box::new(LocalityLeastConnectionReplicated::new()),
        SchedulerKind::Fo => Box::new(WeightedFailover::new()),
        SchedulerKind::Ovf => Box::new(WeightedOverflow::new()),
        SchedulerKind::Twos => {
            let seed = common::fmix64(TWOS_SEEDS.fetch_add(1, Ordering::Relaxed));
            Box::new(TwoChoices::new(seed))
        }
        SchedulerKind::Mh => Box::new(MaglevHashing::new(reals, options)),
        SchedulerKind::Maglev => Box::new(Maglev::new(reals, options)),
    }
}

/// A hashing scheduler's lookup table (entry → real server index), built once
/// per snapshot on a control thread ([`lookup_table`]) and shared read-only by
/// every worker: a `maglev` table is up to 2^20 entries, too much work to
/// repeat on each forwarding core at every snapshot.
#[derive(Clone)]
pub struct LookupTable(Arc<[u16]>);

impl LookupTable {
    /// A table of these entries.
    pub fn new(entries: Vec<u16>) -> Self {
        LookupTable(entries.into())
    }

    /// The entries.
    pub fn entries(&self) -> &[u16] {
        &self.0
    }

    /// True when both are the same allocation (shared, not copied).
    pub fn shares(&self, other: &LookupTable) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// How many holders share this allocation (the snapshot and each
    /// worker's scheduler state).
    pub fn holders(&self) -> usize {
        Arc::strong_count(&self.0)
    }
}

impl PartialEq for LookupTable {
    fn eq(&self, other: &Self) -> bool {
        self.shares(other) || self.0 == other.0
    }
}

impl Eq for LookupTable {}

impl std::fmt::Debug for LookupTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LookupTable({} entries)", self.0.len())
    }
}

/// The lookup table a scheduler of `kind` needs for `reals` (`mh`, `maglev`),
/// for the snapshot builder; `None` for the kinds without one.
pub fn lookup_table(kind: SchedulerKind, reals: &[RealServer], options: &SchedOptions) -> Option<LookupTable> {
    match kind {
        SchedulerKind::Mh => Some(MaglevHashing::build_table(reals, options)),
        SchedulerKind::Maglev => Some(Maglev::build_table(reals, options)),
        _ => None,
    }
}

/// A fresh scheduler state for `service`, over the service's prebuilt lookup
/// table when the snapshot carries one (what workers call: no table is built
/// on a forwarding core), else as [`new_scheduler`].
pub fn new_scheduler_for(service: &crate::snapshot::Service) -> Box<dyn Scheduler> {
    match (service.scheduler, &service.lookup_table) {
        (SchedulerKind::Mh, Some(t)) => Box::new(MaglevHashing::with_table(t.clone(), &service.sched_options)),
        (SchedulerKind::Maglev, Some(t)) => Box::new(Maglev::with_table(t.clone(), &service.sched_options)),
        _ => new_scheduler(service.scheduler, &service.reals, &service.sched_options),
    }
}

/// Checks `options` for a service of scheduler `kind` with `reals` real
/// servers; for the configuration layer. Rejects:
///
/// * `hash: src_addr_port` unless `kind` is `sh`, `mh` or `maglev`;
/// * `fallback` unless `kind` is `sh` or `mh` (`maglev` always falls back);
/// * `table_size` unless `kind` is `mh` or `maglev`;
/// * for `mh` and `maglev`: a table size (given, or the default 4093 / 65537)
///   that is not a prime, exceeds [`MAX_TABLE_SIZE`], or is less than twice
///   the number of real servers; and [`MAX_TABLE_SERVERS`] real servers or more.
///
/// The error is one sentence naming the option.
pub fn validate_options(kind: SchedulerKind, options: &SchedOptions, reals: usize) -> Result<(), String> {
    use SchedulerKind::{Maglev as MaglevKind, Mh, Sh};
    if options.hash == HashFields::SrcAddrPort && !matches!(kind, Sh | Mh | MaglevKind) {
        return Err(format!("hash src_addr_port (sh-port/mh-port) applies to sh, mh and maglev, not {kind}"));
    }
    if options.fallback && !matches!(kind, Sh | Mh) {
        let why = if kind == MaglevKind { " (maglev always skips unavailable servers)" } else { "" };
        return Err(format!("fallback (sh-fallback/mh-fallback) applies to sh and mh, not {kind}{why}"));
    }
    let default_size = match kind {
        Mh => MH_DEFAULT_TABLE_SIZE,
        MaglevKind => MAGLEV_DEFAULT_TABLE_SIZE,
        _ if options.table_size.is_some() => return Err(format!("table_size applies to mh and maglev, not {kind}")),
        _ => return Ok(()),
    };
    let m = options.table_size.unwrap_or(default_size);
    if !common::is_prime(m) {
        return Err(format!("{kind} table_size {m} is not a prime"));
    }
    if m > MAX_TABLE_SIZE {
        return Err(format!("{kind} table_size {m} exceeds the maximum {MAX_TABLE_SIZE}"));
    }
    if reals >= MAX_TABLE_SERVERS {
        return Err(format!("{kind} supports at most {} real servers, not {reals}", MAX_TABLE_SERVERS - 1));
    }
    if u64::from(m) < 2 * reals as u64 {
        return Err(format!("{kind} table_size {m} is too small for {reals} real servers (at least {} needed)", 2 * reals));
    }
    Ok(())
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
            .map(|(i, &weight)| RealServer::new(Ipv4Addr::new(10, 1, 0, 11 + i as u8), 80, weight, ForwardMode::Nat))
            .collect()
    }

    pub fn flow(sport: u16) -> FlowKey {
        FlowKey { proto: 6, src: Ipv4Addr::new(10, 0, 0, 2), sport, dst: Ipv4Addr::new(10, 0, 0, 100), dport: 80 }
    }

    /// A client flow from `src:sport` to the test VIP.
    pub fn flow_from(src: Ipv4Addr, sport: u16) -> FlowKey {
        FlowKey { src, sport, ..flow(sport) }
    }

    /// Candidates with the given counts and overload flags (empty = none).
    pub fn counts<'a>(reals: &'a [RealServer], active: &'a [u32], inactive: &'a [u32], overloaded: &'a [bool]) -> super::Candidates<'a> {
        super::Candidates { reals, active, inactive, overloaded }
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

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use proptest::prelude::*;

    use super::common::SplitMix64;
    use super::test_util::{counts, flow_from, reals};
    use super::*;

    const ALL_KINDS: [SchedulerKind; 15] = [
        SchedulerKind::Rr,
        SchedulerKind::Wrr,
        SchedulerKind::Lc,
        SchedulerKind::Wlc,
        SchedulerKind::Sed,
        SchedulerKind::Nq,
        SchedulerKind::Sh,
        SchedulerKind::Dh,
        SchedulerKind::Lblc,
        SchedulerKind::Lblcr,
        SchedulerKind::Fo,
        SchedulerKind::Ovf,
        SchedulerKind::Twos,
        SchedulerKind::Mh,
        SchedulerKind::Maglev,
    ];

    /// Every kind with the options that make it pick whenever it can (sh and
    /// mh with fallback), plus sh and mh without.
    fn variants() -> Vec<(SchedulerKind, SchedOptions)> {
        let fallback = SchedOptions { fallback: true, ..Default::default() };
        let mut v: Vec<_> = ALL_KINDS
            .iter()
            .map(|&k| (k, if matches!(k, SchedulerKind::Sh | SchedulerKind::Mh) { fallback } else { SchedOptions::default() }))
            .collect();
        v.push((SchedulerKind::Sh, SchedOptions { hash: HashFields::SrcAddrPort, ..Default::default() }));
        v.push((SchedulerKind::Mh, SchedOptions { hash: HashFields::SrcAddrPort, ..Default::default() }));
        v
    }

    /// Kinds that may find no server although one is available: `dh`, `sh`
    /// and `mh` without fallback (the hashed server is the only candidate),
    /// `ovf` (only servers with `active <= weight`).
    fn may_decline(kind: SchedulerKind, o: &SchedOptions) -> bool {
        match kind {
            SchedulerKind::Dh | SchedulerKind::Ovf => true,
            SchedulerKind::Sh | SchedulerKind::Mh => !o.fallback,
            _ => false,
        }
    }

    #[test]
    fn names_match_ipvsadm() {
        let names: Vec<String> = ALL_KINDS.iter().map(|k| k.to_string()).collect();
        assert_eq!(names, ["rr", "wrr", "lc", "wlc", "sed", "nq", "sh", "dh", "lblc", "lblcr", "fo", "ovf", "twos", "mh", "maglev"]);
    }

    #[test]
    fn quiescent_and_overloaded_servers_are_never_picked() {
        // Server 1 quiescent, server 3 overloaded; they are the least loaded
        // and heaviest, so every count-based scheduler would like them.
        let rs = reals(&[3, 0, 2, 9, 1]);
        let overloaded = [false, false, false, true, false];
        for (kind, opts) in variants() {
            let mut s = new_scheduler(kind, &rs, &opts);
            let mut rng = SplitMix64::new(5);
            let mut picked = [0usize; 5];
            for n in 0..3000u32 {
                let active: Vec<u32> = (0..5).map(|i| if i == 1 || i == 3 { 0 } else { rng.below(8) as u32 }).collect();
                let inactive: Vec<u32> = (0..5).map(|_| rng.below(50) as u32).collect();
                let c = counts(&rs, &active, &inactive, &overloaded);
                let f = FlowKey { dst: Ipv4Addr::from(0xC000_0200 + n % 97), ..flow_from(Ipv4Addr::from(rng.next_u64() as u32), n as u16) };
                if let Some(i) = s.pick(&c, &f) {
                    picked[i] += 1;
                }
            }
            assert_eq!((picked[1], picked[3]), (0, 0), "{kind} {opts:?}: {picked:?}");
            assert!(picked.iter().sum::<usize>() > 0, "{kind} {opts:?} never picked");
            // Nobody available: no pick.
            let none = counts(&rs, &[], &[], &[true; 5]);
            assert_eq!(s.pick(&none, &flow_from(Ipv4Addr::new(1, 1, 1, 1), 1)), None, "{kind}");
            let zero = reals(&[0; 5]);
            let mut z = new_scheduler(kind, &zero, &opts);
            assert_eq!(z.pick(&Candidates::idle(&zero), &flow_from(Ipv4Addr::new(1, 1, 1, 1), 1)), None, "{kind}");
            let mut empty = new_scheduler(kind, &[], &opts);
            assert_eq!(empty.pick(&Candidates::idle(&[]), &flow_from(Ipv4Addr::new(1, 1, 1, 1), 1)), None, "{kind}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn picks_an_available_server_or_none_iff_none_available(
            servers in proptest::collection::vec((0u32..10, 0u32..20, 0u32..60, proptest::bool::weighted(0.2)), 1..8),
            src in any::<u32>(),
            sport in any::<u16>(),
            dst in any::<u32>(),
        ) {
            let rs = reals(&servers.iter().map(|s| s.0).collect::<Vec<_>>());
            let active: Vec<u32> = servers.iter().map(|s| s.1).collect();
            let inactive: Vec<u32> = servers.iter().map(|s| s.2).collect();
            let overloaded: Vec<bool> = servers.iter().map(|s| s.3).collect();
            let c = counts(&rs, &active, &inactive, &overloaded);
            let any_available = (0..rs.len()).any(|i| c.available(i));
            let f = FlowKey { dst: Ipv4Addr::from(dst), ..flow_from(Ipv4Addr::from(src), sport) };
            for (kind, opts) in variants() {
                let mut s = new_scheduler(kind, &rs, &opts);
                for _ in 0..3 {
                    match s.pick(&c, &f) {
                        Some(i) => prop_assert!(c.available(i), "{} picked unavailable {}", kind, i),
                        None => prop_assert!(!any_available || may_decline(kind, &opts), "{} found nothing", kind),
                    }
                }
                if kind == SchedulerKind::Ovf {
                    let eligible = (0..rs.len()).any(|i| c.available(i) && c.active(i) <= c.weight(i));
                    prop_assert_eq!(s.pick(&c, &f).is_some(), eligible);
                }
            }
        }

        #[test]
        fn hashing_schedulers_agree_across_instances(
            weights in proptest::collection::vec(1u32..6, 1..12),
            src in any::<u32>(),
            sport in any::<u16>(),
        ) {
            let rs = reals(&weights);
            let f = flow_from(Ipv4Addr::from(src), sport);
            for kind in [SchedulerKind::Sh, SchedulerKind::Dh, SchedulerKind::Mh, SchedulerKind::Maglev] {
                let opts = SchedOptions { table_size: matches!(kind, SchedulerKind::Maglev).then_some(1009), ..Default::default() };
                let a = new_scheduler(kind, &rs, &opts).pick(&Candidates::idle(&rs), &f);
                let b = new_scheduler(kind, &rs, &opts).pick(&Candidates::idle(&rs), &f);
                prop_assert!(a.is_some());
                prop_assert_eq!(a, b);
            }
        }
    }

    #[test]
    fn validate_options_rules() {
        let d = SchedOptions::default();
        let port = SchedOptions { hash: HashFields::SrcAddrPort, ..d };
        let fb = SchedOptions { fallback: true, ..d };
        let size = |m| SchedOptions { table_size: Some(m), ..d };
        for kind in ALL_KINDS {
            assert_eq!(validate_options(kind, &d, 10), Ok(()), "{kind}");
        }
        for kind in [SchedulerKind::Sh, SchedulerKind::Mh, SchedulerKind::Maglev] {
            assert_eq!(validate_options(kind, &port, 10), Ok(()));
        }
        assert!(validate_options(SchedulerKind::Wlc, &port, 10).is_err());
        assert!(validate_options(SchedulerKind::Dh, &port, 10).is_err());
        assert_eq!(validate_options(SchedulerKind::Sh, &fb, 10), Ok(()));
        assert_eq!(validate_options(SchedulerKind::Mh, &fb, 10), Ok(()));
        assert!(validate_options(SchedulerKind::Maglev, &fb, 10).is_err_and(|e| e.contains("always")));
        assert!(validate_options(SchedulerKind::Rr, &fb, 10).is_err());
        assert_eq!(validate_options(SchedulerKind::Maglev, &size(251), 10), Ok(()));
        assert_eq!(validate_options(SchedulerKind::Mh, &size(65521), 10), Ok(()));
        assert!(validate_options(SchedulerKind::Sh, &size(251), 10).is_err_and(|e| e.contains("table_size")));
        assert!(validate_options(SchedulerKind::Maglev, &size(65535), 10).is_err_and(|e| e.contains("prime")));
        assert!(validate_options(SchedulerKind::Maglev, &size(1), 0).is_err());
        assert!(validate_options(SchedulerKind::Maglev, &size(1_048_583), 10).is_err_and(|e| e.contains("maximum")));
        assert!(validate_options(SchedulerKind::Maglev, &size(251), 126).is_err_and(|e| e.contains("too small")));
        assert_eq!(validate_options(SchedulerKind::Maglev, &size(251), 125), Ok(()));
        assert!(validate_options(SchedulerKind::Mh, &d, 2047).is_err(), "default 4093 < 2·2047");
        assert!(validate_options(SchedulerKind::Maglev, &d, 65535).is_err_and(|e| e.contains("at most")));
    }

    /// Several worker cores running `wlc`, each seeing its own counts exactly
    /// and the others' as last published (every `interval` of its own picks,
    /// like the relaxed-store publication every few ms). Connections stay open.
    /// Checks, after every pick, the bound of the module documentation:
    /// `a_x·w_y ≤ a_y·w_x + (K + 1)·w_y` for all x, y, K being the most
    /// connections ever unpublished by the other cores at a pick.
    fn simulate_stale_wlc(weights: &[u32], cores: usize, interval: u32, steps: usize, seed: u64) -> (u64, f64) {
        let rs = reals(weights);
        let n = rs.len();
        let mut local = vec![vec![0u32; n]; cores];
        let mut published = vec![vec![0u32; n]; cores];
        let mut since_publish = vec![0u32; cores];
        let mut scheds: Vec<Box<dyn Scheduler>> =
            (0..cores).map(|_| new_scheduler(SchedulerKind::Wlc, &rs, &SchedOptions::default())).collect();
        let mut rng = SplitMix64::new(seed);
        let mut k_max = 0u64;
        let mut worst = 0.0f64;
        let zeros = vec![0u32; n];
        for step in 0..steps {
            let core = rng.below(cores as u64) as usize;
            // The core's view: its own exact counts + the others' published ones.
            let view: Vec<u32> =
                (0..n).map(|s| local[core][s] + (0..cores).filter(|&o| o != core).map(|o| published[o][s]).sum::<u32>()).collect();
            let unpublished: u64 =
                (0..cores).filter(|&o| o != core).map(|o| (0..n).map(|s| u64::from(local[o][s] - published[o][s])).sum::<u64>()).sum();
            k_max = k_max.max(unpublished);
            let c = counts(&rs, &view, &zeros, &[]);
            let Some(pick) = scheds[core].pick(&c, &flow_from(Ipv4Addr::from(step as u32), 1)) else {
                panic!("wlc found no server");
            };
            local[core][pick] += 1;
            since_publish[core] += 1;
            if since_publish[core] == interval {
                published[core].clone_from(&local[core]);
                since_publish[core] = 0;
            }
            let total: Vec<u64> = (0..n).map(|s| (0..cores).map(|o| u64::from(local[o][s])).sum()).collect();
            for x in 0..n {
                for y in 0..n {
                    let (wx, wy) = (u64::from(weights[x]), u64::from(weights[y]));
                    assert!(
                        total[x] * wy <= total[y] * wx + (k_max + 1) * wy,
                        "step {step}: server {x} {} vs {y} {}, K = {k_max}",
                        total[x],
                        total[y]
                    );
                    let spread = (total[x] as f64 / wx as f64 - total[y] as f64 / wy as f64) * wx as f64;
                    worst = worst.max(spread);
                }
            }
        }
        (k_max, worst)
    }

    #[test]
    fn stale_views_keep_wlc_within_bound() {
        // One core: exact view, IPVS's bound (spread ≤ 1 connection).
        let (k, worst) = simulate_stale_wlc(&[1, 1, 1, 1], 1, 8, 5_000, 1);
        assert_eq!(k, 0);
        assert!(worst <= 1.0, "{worst}");
        // Four cores publishing every 16 of their picks: others' unpublished
        // connections are at most 3 × 15 = 45, and the spread stays within K + 1.
        for (weights, seed) in [(&[1u32, 1, 1, 1, 1][..], 2), (&[4, 2, 1][..], 3), (&[5, 3, 3, 1, 1, 1][..], 4)] {
            let (k, worst) = simulate_stale_wlc(weights, 4, 16, 20_000, seed);
            assert!(k <= 45, "{k}");
            eprintln!("stale wlc, weights {weights:?}: K = {k}, worst (a_x/w_x − a_y/w_y)·w_x = {worst:.2} ≤ K + 1 = {}", k + 1);
        }
    }

    #[test]
    fn prebuilt_tables_pick_as_self_built_ones() {
        use crate::snapshot::{Protocol, Service, ServiceKey};
        let key = ServiceKey { protocol: Protocol::Tcp, vip: Ipv4Addr::new(10, 0, 0, 100).into(), port: 80 };
        for kind in [SchedulerKind::Maglev, SchedulerKind::Mh] {
            let rs = reals(&[1, 3, 0, 2]);
            let opts = SchedOptions::default();
            let table = lookup_table(kind, &rs, &opts).expect("a table");
            let expected = if kind == SchedulerKind::Maglev { MAGLEV_DEFAULT_TABLE_SIZE } else { MH_DEFAULT_TABLE_SIZE };
            assert_eq!(table.entries().len(), expected as usize, "{kind:?}");
            let service = Service { lookup_table: Some(table.clone()), ..Service::new(key, kind, rs.clone()) };
            let mut shared = new_scheduler_for(&service);
            assert_eq!(table.holders(), 3, "{kind:?}: the scheduler holds the snapshot's table, not a copy");
            let mut own = new_scheduler(kind, &rs, &opts);
            for i in 0..2000u16 {
                let f = flow_from(Ipv4Addr::new(172, 16, (i >> 8) as u8, i as u8), 1000 + i);
                assert_eq!(shared.pick(&Candidates::idle(&rs), &f), own.pick(&Candidates::idle(&rs), &f), "{kind:?}");
            }
        }
        assert!(lookup_table(SchedulerKind::Wrr, &reals(&[1]), &SchedOptions::default()).is_none());
    }
}
