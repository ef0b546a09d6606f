//! Locality-based least connection with replication (IPVS `lblcr`).
//!
//! IPVS's algorithm: remember, per destination address, a *set* of servers.
//! A new connection goes to the least loaded member of the set (lowest
//! `overhead / weight` among its available members, IPVS's overhead being
//! `active × 256 + inactive`). When the set has no available member, or its
//! least loaded member is "overloaded" by the `lblc` rule (more active
//! connections than its weight while some server of the service has fewer
//! than half its weight), a server is chosen by weighted least connection
//! (`wlc`) over the whole service, used, and added to the set (replication: a
//! popular destination gets more caches). When a set of more than one server
//! has not changed for a while, its most loaded member (highest
//! `overhead / weight` among members with weight > 0) is dropped, so replicas
//! go away once the load does.
//!
//! As in IPVS's list (new members at the head), the set is scanned newest
//! member first: on a load tie, the newest member wins.
//!
//! **Time.** IPVS shrinks a set 6 minutes (`lblcr_expiration`) after its last
//! change and forgets a destination as `lblc` does. [`Scheduler::pick`] has no
//! clock here, so both are counted in picks of this scheduler: a set shrinks
//! by one when it has not changed for [`LBLCR_SHRINK_AFTER`] picks (checked
//! when the destination is used, as in IPVS), and the table is bounded by
//! [`LBLCR_MAX_ENTRIES`] destinations, a new destination in a full table
//! dropping every destination unused in the last `LBLCR_MAX_ENTRIES / 2`
//! picks (see `lblc`: at least half the table is freed per sweep).
//!
//! **Allocation.** A new destination (hash-map insertion and its set) or a set
//! growing by a server may allocate; a pick that only reads a set does not.

use std::net::IpAddr;

use hashbrown::HashMap;

use super::common::{conn_overhead, least_weighted, locality_overloaded, wlc_pick};
use super::SchedFlow;
use super::{Candidates, Scheduler};

/// Most destinations an `lblcr` table remembers (IPVS's `max_size`: 16 × 1024).
pub const LBLCR_MAX_ENTRIES: usize = 16 * 1024;

/// Picks after which an unchanged set of two or more servers loses its most
/// loaded member (IPVS: 6 minutes without a change).
pub const LBLCR_SHRINK_AFTER: u64 = 16 * 1024;

#[derive(Clone, Debug)]
struct ServerSet {
    /// Member server indices, oldest first.
    members: Vec<usize>,
    /// Pick number of the last change.
    last_mod: u64,
    /// Pick number of the last use.
    last_use: u64,
}

/// The member with the highest `overhead / weight` among those with weight > 0,
/// newest first, ties keeping the newer (IPVS's `ip_vs_dest_set_max`).
fn most_loaded(c: &Candidates<'_>, members: &[usize]) -> Option<usize> {
    let mut most: Option<(usize, u64)> = None;
    for &i in members.iter().rev().filter(|&&i| c.weight(i) > 0) {
        let oh = conn_overhead(c, i);
        let worse = match most {
            None => true,
            Some((m, moh)) => u128::from(moh) * u128::from(c.weight(i)) < u128::from(oh) * u128::from(c.weight(m)),
        };
        if worse {
            most = Some((i, oh));
        }
    }
    most.map(|(i, _)| i)
}

/// Locality-based least-connection-with-replication state: destination → server set.
#[derive(Debug)]
pub struct LocalityLeastConnectionReplicated {
    table: HashMap<IpAddr, ServerSet>,
    /// Picks made so far: the clock sets and entries age by.
    picks: u64,
    max_entries: usize,
    shrink_after: u64,
}

impl Default for LocalityLeastConnectionReplicated {
    fn default() -> Self {
        Self::new()
    }
}

impl LocalityLeastConnectionReplicated {
    /// An empty table with IPVS-like bounds ([`LBLCR_MAX_ENTRIES`], [`LBLCR_SHRINK_AFTER`]).
    pub fn new() -> Self {
        Self::with_limits(LBLCR_MAX_ENTRIES, LBLCR_SHRINK_AFTER)
    }

    /// An empty table remembering at most `max_entries` destinations (at least
    /// 2) and shrinking sets unchanged for `shrink_after` picks.
    pub fn with_limits(max_entries: usize, shrink_after: u64) -> Self {
        LocalityLeastConnectionReplicated { table: HashMap::new(), picks: 0, max_entries: max_entries.max(2), shrink_after }
    }

    /// Number of remembered destinations.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// True when no destination is remembered.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// The server set remembered for `dst`, oldest member first.
    pub fn members(&self, dst: impl Into<IpAddr>) -> Option<&[usize]> {
        let dst: IpAddr = dst.into();
        self.table.get(&dst).map(|s| s.members.as_slice())
    }

    fn remember(&mut self, dst: IpAddr, server: usize) {
        if self.table.len() >= self.max_entries {
            let horizon = self.picks.saturating_sub((self.max_entries / 2) as u64);
            self.table.retain(|_, s| s.last_use > horizon);
        }
        self.table.insert(dst, ServerSet { members: vec![server], last_mod: self.picks, last_use: self.picks });
    }
}

impl Scheduler for LocalityLeastConnectionReplicated {
    fn pick(&mut self, c: &Candidates<'_>, flow: &dyn SchedFlow) -> Option<usize> {
        self.picks += 1;
        let now = self.picks;
        let dst = flow.dst();
        let Some(set) = self.table.get_mut(&dst) else {
            let server = wlc_pick(c)?;
            self.remember(dst, server);
            return Some(server);
        };
        set.last_use = now;
        let least = least_weighted(c, set.members.iter().rev().copied(), |i| conn_overhead(c, i));
        if set.members.len() > 1 && now - set.last_mod > self.shrink_after {
            if let Some(m) = most_loaded(c, &set.members) {
                set.members.retain(|&i| i != m);
                set.last_mod = now;
            }
        }
        if let Some(i) = least.filter(|&i| !locality_overloaded(c, i)) {
            return Some(i);
        }
        let server = wlc_pick(c)?;
        if !set.members.contains(&server) {
            set.members.push(server);
            set.last_mod = now;
        }
        Some(server)
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::conn::FlowKey;
    use crate::sched::test_util::{counts, flow, reals};

    fn to(dst: Ipv4Addr) -> FlowKey {
        FlowKey { dst, ..flow(1) }
    }

    const D: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 5);

    #[test]
    fn replicates_when_the_least_loaded_member_is_overloaded() {
        let rs = reals(&[2, 2, 2]);
        let mut s = LocalityLeastConnectionReplicated::new();
        assert_eq!(s.pick(&counts(&rs, &[0, 0, 0], &[0; 3], &[]), &to(D)), Some(0));
        // A at 2 ≤ 2: not overloaded, stays.
        assert_eq!(s.pick(&counts(&rs, &[2, 0, 0], &[0; 3], &[]), &to(D)), Some(0));
        // A at 3 > 2 and B, C under half their weight: wlc picks B, added.
        assert_eq!(s.pick(&counts(&rs, &[3, 0, 0], &[0; 3], &[]), &to(D)), Some(1));
        assert_eq!(s.members(D), Some(&[0, 1][..]));
        // The set's least loaded: A 3/2 vs B 1/2: B.
        assert_eq!(s.pick(&counts(&rs, &[3, 1, 0], &[0; 3], &[]), &to(D)), Some(1));
        // Both over weight, C idle: C joins.
        assert_eq!(s.pick(&counts(&rs, &[3, 3, 0], &[0; 3], &[]), &to(D)), Some(2));
        assert_eq!(s.members(D), Some(&[0, 1, 2][..]));
        // Load ties between members: the newest member (C) wins.
        assert_eq!(s.pick(&counts(&rs, &[1, 1, 1], &[0; 3], &[]), &to(D)), Some(2));
    }

    #[test]
    fn unavailable_members_are_skipped() {
        let rs = reals(&[1, 1]);
        let mut s = LocalityLeastConnectionReplicated::new();
        assert_eq!(s.pick(&Candidates::idle(&rs), &to(D)), Some(0));
        // The only member over its threshold: fresh wlc pick, B joins.
        assert_eq!(s.pick(&counts(&rs, &[0, 0], &[0; 2], &[true, false]), &to(D)), Some(1));
        assert_eq!(s.members(D), Some(&[0, 1][..]));
    }

    #[test]
    fn unchanged_sets_shrink_by_their_most_loaded_member() {
        let rs = reals(&[2, 2, 2]);
        let mut s = LocalityLeastConnectionReplicated::with_limits(100, 10);
        s.pick(&counts(&rs, &[0, 0, 0], &[0; 3], &[]), &to(D));
        s.pick(&counts(&rs, &[3, 0, 0], &[0; 3], &[]), &to(D)); // B joins at pick 2
        assert_eq!(s.members(D), Some(&[0, 1][..]));
        // Other destinations advance the clock.
        for n in 0..10u32 {
            s.pick(&Candidates::idle(&rs), &to(Ipv4Addr::from(n)));
        }
        // Pick 13: 13 - 2 > 10: the most loaded member (B: 2/2 vs A 1/2) goes;
        // the pick itself is the least loaded of the set before shrinking (A).
        assert_eq!(s.pick(&counts(&rs, &[1, 2, 0], &[0; 3], &[]), &to(D)), Some(0));
        assert_eq!(s.members(D), Some(&[0][..]));
        // A single-member set never shrinks.
        for _ in 0..30 {
            s.pick(&Candidates::idle(&rs), &to(D));
        }
        assert_eq!(s.members(D), Some(&[0][..]));
    }

    #[test]
    fn table_is_bounded() {
        let rs = reals(&[1, 1]);
        let mut s = LocalityLeastConnectionReplicated::with_limits(16, 1000);
        for n in 0..1000u32 {
            s.pick(&Candidates::idle(&rs), &to(Ipv4Addr::from(n)));
            assert!(s.len() <= 16);
        }
    }
}
