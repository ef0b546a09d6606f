//! Locality-based least connection (IPVS `lblc`).
//!
//! IPVS's algorithm, for cache clusters: remember, per destination address,
//! the server last chosen for it, and send the destination's new connections
//! there, so that one cache serves one destination. A fresh choice is made, by
//! weighted least connection (`wlc`), and remembered, when the destination is
//! new, when its server is unavailable (weight 0 or over its connection
//! threshold), or when its server is "overloaded" by `lblc`'s own rule: more
//! active connections than its weight while some server of the service has
//! fewer than half its weight (`2 × active < weight`).
//!
//! (IPVS does not check the upper-threshold flag on the remembered server,
//! only weight and the rule above; here an over-threshold server is never
//! picked, by any scheduler.)
//!
//! **Expiry.** IPVS forgets an entry 24 h after its last use, and once the
//! table holds more than 16384 entries, also those unused for 6 minutes.
//! [`Scheduler::pick`] has no clock here, so age is counted in picks: the
//! scheduler numbers its picks, each entry records the number of its last use,
//! and when a new destination arrives while the table holds
//! [`LBLC_MAX_ENTRIES`], every entry not used within the last
//! `LBLC_MAX_ENTRIES / 2` picks is dropped. At most that many distinct entries
//! can have been used in that window, so at least half the table is freed and
//! the sweep (one pass over the table) happens at most once per
//! `LBLC_MAX_ENTRIES / 2` new destinations. Stale entries are otherwise
//! harmless: the remembered server is re-checked on every use.
//!
//! **Allocation.** The table grows (a hash map insertion may allocate) when a
//! destination is seen for the first time, up to the bound above; a pick for a
//! known destination does not allocate.

use std::net::IpAddr;

use hashbrown::HashMap;

use super::common::{locality_overloaded, wlc_pick};
use super::SchedFlow;
use super::{Candidates, Scheduler};

/// Most destinations an `lblc` table remembers (IPVS's `max_size`: 16 × 1024).
pub const LBLC_MAX_ENTRIES: usize = 16 * 1024;

#[derive(Clone, Copy, Debug)]
struct Entry {
    /// Index of the remembered real server.
    server: usize,
    /// Pick number of the last use.
    last_use: u64,
}

/// Locality-based least-connection state: destination → server.
#[derive(Debug)]
pub struct LocalityLeastConnection {
    table: HashMap<IpAddr, Entry>,
    /// Picks made so far: the clock entries age by.
    picks: u64,
    max_entries: usize,
}

impl Default for LocalityLeastConnection {
    fn default() -> Self {
        Self::new()
    }
}

impl LocalityLeastConnection {
    /// An empty table bounded by [`LBLC_MAX_ENTRIES`].
    pub fn new() -> Self {
        Self::with_max_entries(LBLC_MAX_ENTRIES)
    }

    /// An empty table bounded by `max_entries` (at least 2).
    pub fn with_max_entries(max_entries: usize) -> Self {
        LocalityLeastConnection { table: HashMap::new(), picks: 0, max_entries: max_entries.max(2) }
    }

    /// Number of remembered destinations.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// True when no destination is remembered.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    fn remember(&mut self, dst: IpAddr, server: usize) {
        if self.table.len() >= self.max_entries && !self.table.contains_key(&dst) {
            let horizon = self.picks.saturating_sub((self.max_entries / 2) as u64);
            self.table.retain(|_, e| e.last_use > horizon);
        }
        self.table.insert(dst, Entry { server, last_use: self.picks });
    }
}

impl Scheduler for LocalityLeastConnection {
    fn pick(&mut self, c: &Candidates<'_>, flow: &dyn SchedFlow) -> Option<usize> {
        self.picks += 1;
        let dst = flow.dst();
        if let Some(e) = self.table.get_mut(&dst) {
            e.last_use = self.picks;
            if c.available(e.server) && !locality_overloaded(c, e.server) {
                return Some(e.server);
            }
        }
        let server = wlc_pick(c)?;
        self.remember(dst, server);
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

    #[test]
    fn sticks_to_the_remembered_server_despite_load() {
        let rs = reals(&[1, 1]);
        let mut s = LocalityLeastConnection::new();
        let d = Ipv4Addr::new(192, 0, 2, 1);
        // Idle: wlc picks A, remembered.
        assert_eq!(s.pick(&counts(&rs, &[0, 0], &[0, 0], &[]), &to(d)), Some(0));
        // A busier than B but within its weight (1 ≤ 1): stays on A (wlc would say B).
        assert_eq!(s.pick(&counts(&rs, &[1, 0], &[0, 0], &[]), &to(d)), Some(0));
        // A over its weight (3 > 1) but nobody under half its weight (2·1 < 1 false for B=1): stays.
        assert_eq!(s.pick(&counts(&rs, &[3, 1], &[0, 0], &[]), &to(d)), Some(0));
        // Another destination goes its own way (wlc: B).
        assert_eq!(s.pick(&counts(&rs, &[3, 1], &[0, 0], &[]), &to(Ipv4Addr::new(192, 0, 2, 2))), Some(1));
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn overflows_when_the_remembered_server_is_overloaded() {
        let rs = reals(&[2, 4, 1]);
        let mut s = LocalityLeastConnection::new();
        let d = Ipv4Addr::new(198, 51, 100, 7);
        assert_eq!(s.pick(&counts(&rs, &[0, 0, 0], &[0; 3], &[]), &to(d)), Some(0));
        // A: 3 > 2, and B: 2·1 < 4: overloaded by lblc's rule. wlc: 768/2=384,
        // 256/4=64, 256/1: B, and B is remembered from now on.
        assert_eq!(s.pick(&counts(&rs, &[3, 1, 1], &[0; 3], &[]), &to(d)), Some(1));
        assert_eq!(s.pick(&counts(&rs, &[0, 3, 0], &[0; 3], &[]), &to(d)), Some(1));
        // B unavailable (over threshold): fresh pick, wlc over A and C: A.
        assert_eq!(s.pick(&counts(&rs, &[0, 0, 0], &[0; 3], &[false, true, false]), &to(d)), Some(0));
        // Quiescent A (weight 0) is not reused either: wlc, B 256/4 vs C 256/1: B.
        let rs0 = reals(&[0, 4, 1]);
        assert_eq!(s.pick(&counts(&rs0, &[0, 1, 1], &[0; 3], &[]), &to(d)), Some(1));
    }

    #[test]
    fn full_table_forgets_least_recently_used_half() {
        let rs = reals(&[1]);
        let mut s = LocalityLeastConnection::with_max_entries(8);
        let c = Candidates::idle(&rs);
        for n in 0..8u32 {
            s.pick(&c, &to(Ipv4Addr::from(n)));
        }
        // Use 6 and 7 again (picks 9, 10), then a new destination at pick 11:
        // only entries used within the last 4 picks (last use > 7) survive.
        s.pick(&c, &to(Ipv4Addr::from(6)));
        s.pick(&c, &to(Ipv4Addr::from(7)));
        assert_eq!(s.len(), 8);
        s.pick(&c, &to(Ipv4Addr::from(100)));
        // picks = 11, horizon 7: kept last_use > 7 → 7 (8), 6 (9), 7 (10), new (11).
        let mut kept: Vec<u32> = s.table.keys().map(|&a| crate::sched::addr_fold(a)).collect();
        kept.sort_unstable();
        assert_eq!(kept, vec![6, 7, 100]);
    }
}
