//! The connection table: a slab of [`Conn`] entries indexed by flow keys.

use std::hash::BuildHasher;

use hashbrown::DefaultHashBuilder;

use super::index::{self, Index};
use super::{Conn, FlowKey};

/// Index of a connection in its table's slab.
pub type ConnId = u32;

/// An entry of the index: 7 bits of the key's hash, then `id << 1 | direction`
/// (0 inbound, 1 reply). The key is not stored: it is read back from the slot.
pub type IndexEntry = u32;

/// Largest number of connections a table holds (2^24, rvsd's largest
/// `conn_table_size`: an id takes 24 bits of an [`IndexEntry`]).
pub const MAX_CAPACITY: usize = 1 << (index::VALUE_BITS - 1);

/// Which way a packet travels on a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Client to VIP.
    Inbound,
    /// Real server to client (NAT replies).
    Reply,
}

/// The table has no free entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("connection table full ({0} entries)")]
pub struct TableFull(pub usize);

/// A fixed-capacity connection table owned by one worker.
///
/// Lookups are one hash probe. The index ([`Index`]) holds 4-byte entries (a
/// hash tag, an id and a direction) and compares keys against the slot they
/// point to, so a connection costs its 48-byte slot plus one or two index
/// entries at a load of at most 3/4.
///
/// Expiry is lazy (an expired entry found by a lookup is removed then) plus an
/// incremental sweep: [`ConnTable::expire`] checks a bounded number of slots
/// per call, so the poll loop never stalls on a big scan.
#[derive(Debug)]
pub struct ConnTable {
    index: Index,
    hasher: DefaultHashBuilder,
    slots: Vec<Option<Conn>>,
    free: Vec<ConnId>,
    sweep_cursor: usize,
    len: usize,
}

fn entry(id: ConnId, dir: Direction) -> u32 {
    id << 1 | u32::from(dir == Direction::Reply)
}

fn entry_dir(e: u32) -> Direction {
    if e & 1 == 0 {
        Direction::Inbound
    } else {
        Direction::Reply
    }
}

/// The key an index entry stands for, read from its slot.
fn entry_key(slots: &[Option<Conn>], e: u32) -> Option<FlowKey> {
    let c = slots.get((e >> 1) as usize)?.as_ref()?;
    match entry_dir(e) {
        Direction::Inbound => Some(c.inbound_key()),
        Direction::Reply => c.reply_key(),
    }
}

impl ConnTable {
    /// A table for at most `capacity` connections (at most [`MAX_CAPACITY`]),
    /// allocated up front.
    pub fn with_capacity(capacity: usize) -> Self {
        let capacity = capacity.clamp(1, MAX_CAPACITY);
        ConnTable {
            index: Index::with_capacity(capacity * 2),
            hasher: DefaultHashBuilder::default(),
            slots: Vec::with_capacity(capacity),
            free: Vec::with_capacity(capacity),
            sweep_cursor: 0,
            len: 0,
        }
    }

    /// Maximum number of connections.
    pub fn capacity(&self) -> usize {
        self.slots.capacity().min(MAX_CAPACITY)
    }

    /// Connections in the table.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The index entry under `key`, whose hash is `hash`.
    fn find(&self, key: &FlowKey, hash: u64) -> Option<u32> {
        let slots = &self.slots;
        self.index.find(hash, |e| entry_key(slots, e).as_ref() == Some(key))
    }

    /// Adds entry `e` under a key hashing to `hash` (the key is not there). The
    /// index has room for two keys per slot, so it never refuses.
    fn index_insert(&mut self, hash: u64, e: u32) {
        let inserted = self.index.insert(hash, e);
        debug_assert!(inserted, "the index has room for two keys per slot");
    }

    /// Takes `key → e` out of the index.
    fn index_remove(&mut self, key: &FlowKey, e: u32) {
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.index.remove(hasher.hash_one(key), e, |x| entry_key(slots, x).map_or(0, |k| hasher.hash_one(k)));
    }

    /// Adds a connection under its inbound key (and reply key for NAT and
    /// FULLNAT). An existing entry under either key is replaced and pushed to
    /// `displaced`, so the caller can release what it held.
    pub fn insert(&mut self, conn: Conn, displaced: &mut Vec<Conn>) -> Result<ConnId, TableFull> {
        let ik = conn.inbound_key();
        let ih = self.hasher.hash_one(ik);
        let rk = conn.reply_key().map(|rk| (rk, self.hasher.hash_one(rk)));
        if let Some(old) = self.find(&ik, ih) {
            displaced.extend(self.remove(old >> 1));
        }
        if let Some((rk, rh)) = &rk {
            if let Some(old) = self.find(rk, *rh) {
                displaced.extend(self.remove(old >> 1));
            }
        }
        let id = if let Some(id) = self.free.pop() {
            self.slots[id as usize] = Some(conn);
            id
        } else if self.slots.len() < self.capacity() {
            self.slots.push(Some(conn));
            (self.slots.len() - 1) as ConnId
        } else {
            return Err(TableFull(self.capacity()));
        };
        // A reply key equal to the inbound key (a degenerate service) is found as the reply.
        if rk.map(|(rk, _)| rk) != Some(ik) {
            self.index_insert(ih, entry(id, Direction::Inbound));
        }
        if let Some((_, rh)) = rk {
            self.index_insert(rh, entry(id, Direction::Reply));
        }
        self.len += 1;
        Ok(id)
    }

    /// Finds the live connection a packet with `key` belongs to. An expired
    /// entry is not returned (the sweep, or a replacing insert, removes it).
    pub fn lookup(&self, key: &FlowKey, now_ms: u64) -> Option<(ConnId, Direction)> {
        self.lookup_hashed(key, self.hash(key), now_ms)
    }

    /// The hash the table files `key` under.
    pub fn hash(&self, key: &FlowKey) -> u64 {
        self.hasher.hash_one(key)
    }

    /// Prefetches the index bucket of `hash` (a hint for a later lookup).
    pub fn prefetch_index(&self, _hash: u64) {}

    /// Prefetches the slot the index bucket of `hash` points to.
    pub fn prefetch_slot(&self, _hash: u64) {}

    /// [`ConnTable::lookup`] with the key's hash given.
    pub fn lookup_hashed(&self, key: &FlowKey, hash: u64, now_ms: u64) -> Option<(ConnId, Direction)> {
        let e = self.find(key, hash)?;
        let id = e >> 1;
        let expired = self.slots.get(id as usize)?.as_ref()?.is_expired(now_ms);
        (!expired).then_some((id, entry_dir(e)))
    }

    /// The connection with this id.
    pub fn get(&self, id: ConnId) -> Option<&Conn> {
        self.slots.get(id as usize)?.as_ref()
    }

    /// The connection with this id, mutable.
    pub fn get_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        self.slots.get_mut(id as usize)?.as_mut()
    }

    /// Removes a connection and its keys. Returns it.
    pub fn remove(&mut self, id: ConnId) -> Option<Conn> {
        let conn = (*self.slots.get(id as usize)?)?;
        self.index_remove(&conn.inbound_key(), entry(id, Direction::Inbound));
        if let Some(rk) = conn.reply_key() {
            self.index_remove(&rk, entry(id, Direction::Reply));
        }
        self.slots[id as usize] = None;
        self.free.push(id);
        self.len -= 1;
        Some(conn)
    }

    /// Checks up to `budget` slots for expiry, continuing where the last call
    /// stopped. Returns how many connections were removed.
    pub fn expire(&mut self, now_ms: u64, budget: usize) -> usize {
        let mut removed = Vec::new();
        self.expire_into(now_ms, budget, &mut removed)
    }

    /// Like [`ConnTable::expire`], handing the removed connections to `removed`.
    pub fn expire_into(&mut self, now_ms: u64, budget: usize, removed: &mut Vec<Conn>) -> usize {
        let n = self.slots.len();
        if n == 0 {
            return 0;
        }
        let mut count = 0;
        for _ in 0..budget.min(n) {
            if self.sweep_cursor >= n {
                self.sweep_cursor = 0;
            }
            let id = self.sweep_cursor as ConnId;
            self.sweep_cursor += 1;
            let expired = match &mut self.slots[id as usize] {
                Some(c) if c.is_expired(now_ms) => true,
                Some(c) => {
                    c.age_sync(now_ms);
                    false
                }
                None => false,
            };
            if expired {
                removed.extend(self.remove(id));
                count += 1;
            }
        }
        count
    }

    /// Every live connection (for listings).
    pub fn iter(&self) -> impl Iterator<Item = (ConnId, &Conn)> {
        self.slots.iter().enumerate().filter_map(|(i, c)| c.as_ref().map(|c| (i as ConnId, c)))
    }

    /// Slots in use or freed so far: every [`ConnId`] is below this, so a
    /// listing can walk `0..slot_count()` with [`ConnTable::get`] a piece at a time.
    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddrV4};

    use super::*;
    use crate::conn::TcpState;
    use crate::snapshot::{ForwardMode, Protocol, Timeouts};

    fn conn(client_port: u16, forward: ForwardMode, now: u64) -> Conn {
        Conn {
            protocol: Protocol::Tcp,
            client: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), client_port),
            vip: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 100), 80),
            real: SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, 11), 8080),
            local: None.into(),
            real_index: 0,
            service_index: 0,
            generation: 0,
            synced_ms: 0,
            forward,
            state: TcpState::SynRecv,
            expires_ms: (now + 60_000) as u32,
            seq_delta: 0,
            reply_hop: crate::neigh::hops::NONE,
        }
    }

    impl ConnTable {
        fn insert_(&mut self, c: Conn) -> Result<ConnId, TableFull> {
            self.insert(c, &mut Vec::new())
        }
    }

    #[test]
    fn nat_connection_is_found_from_both_directions() {
        let mut t = ConnTable::with_capacity(4);
        let c = conn(40000, ForwardMode::Nat, 0);
        let id = t.insert_(c).expect("room");
        assert_eq!(t.lookup(&c.inbound_key(), 1), Some((id, Direction::Inbound)));
        let rk = c.reply_key().expect("nat has a reply key");
        assert_eq!(rk.src, Ipv4Addr::new(10, 1, 0, 11));
        assert_eq!(rk.sport, 8080);
        assert_eq!(t.lookup(&rk, 1), Some((id, Direction::Reply)));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn dr_connection_has_no_reply_key() {
        let mut t = ConnTable::with_capacity(4);
        let c = conn(40000, ForwardMode::Dr, 0);
        t.insert_(c).expect("room");
        assert!(c.reply_key().is_none());
        assert_eq!(t.index.len(), 1);
    }

    #[test]
    fn full_table_refuses_and_frees_on_remove() {
        let mut t = ConnTable::with_capacity(2);
        let a = t.insert_(conn(1, ForwardMode::Nat, 0)).expect("room");
        t.insert_(conn(2, ForwardMode::Nat, 0)).expect("room");
        assert_eq!(t.insert_(conn(3, ForwardMode::Nat, 0)), Err(TableFull(2)));
        assert!(t.remove(a).is_some());
        assert!(t.remove(a).is_none(), "double remove is harmless");
        t.insert_(conn(3, ForwardMode::Nat, 0)).expect("freed slot reused");
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn reinserting_the_same_flow_replaces_the_old_entry() {
        let mut t = ConnTable::with_capacity(4);
        t.insert_(conn(5, ForwardMode::Nat, 0)).expect("room");
        let mut c = conn(5, ForwardMode::Nat, 0);
        c.real = SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, 12), 8080);
        let id = t.insert_(c).expect("room");
        assert_eq!(t.len(), 1);
        assert_eq!(t.get(id).map(|c| c.real), Some(c.real));
        // The old reply key (from .11) is gone.
        let old_rk = conn(5, ForwardMode::Nat, 0).reply_key().expect("nat");
        assert_eq!(t.lookup(&old_rk, 0), None);
    }

    #[test]
    fn idle_entries_expire_lazily_and_by_sweep() {
        let mut t = ConnTable::with_capacity(8);
        let a = conn(1, ForwardMode::Nat, 0);
        let b = conn(2, ForwardMode::Nat, 0);
        t.insert_(a).expect("room");
        t.insert_(b).expect("room");
        // Within the timeout: still there.
        assert!(t.lookup(&a.inbound_key(), 60_000).is_some());
        // Past it: lookups miss; the sweep removes both.
        assert!(t.lookup(&a.inbound_key(), 60_001).is_none());
        assert_eq!(t.len(), 2);
        let mut removed = Vec::new();
        assert_eq!(t.expire_into(60_001, 8, &mut removed), 2);
        assert_eq!(removed.len(), 2);
        assert!(t.is_empty());
        assert!(t.index.is_empty());
    }

    #[test]
    fn tcp_states_set_their_timeouts() {
        use crate::conn::TcpFlags;
        let timeouts = Timeouts::default();
        let mut c = conn(1, ForwardMode::Nat, 0);
        let ack = TcpFlags { ack: true, ..TcpFlags::default() };
        c.on_tcp_packet(TcpFlags { syn: true, ack: true, ..TcpFlags::default() }, Direction::Reply, &timeouts, 5);
        assert_eq!(c.state, TcpState::SynRecv, "the server's SYN-ACK does not establish");
        c.on_tcp_packet(ack, Direction::Inbound, &timeouts, 10);
        assert_eq!((c.state, c.expires_ms), (TcpState::Established, 10 + 900_000));
        c.on_tcp_packet(TcpFlags { fin: true, ack: true, ..TcpFlags::default() }, Direction::Reply, &timeouts, 20);
        assert_eq!((c.state, c.expires_in_ms(20)), (TcpState::FinWait, 120_000));
        assert!(!c.reusable_by_syn(), "NAT FIN_WAIT is not reused (conn_reuse_mode 1)");
        c.on_tcp_packet(TcpFlags { rst: true, ..TcpFlags::default() }, Direction::Reply, &timeouts, 30);
        assert_eq!((c.state, c.expires_in_ms(30)), (TcpState::Close, 10_000));
        assert!(c.reusable_by_syn());
    }

    #[test]
    fn index_entries_take_4_bytes() {
        assert_eq!(std::mem::size_of::<IndexEntry>(), 4);
        let mut t = ConnTable::with_capacity(4);
        let c = conn(7, ForwardMode::Nat, 0);
        let id = t.insert_(c).expect("room");
        assert_eq!(t.index.values().collect::<std::collections::BTreeSet<_>>(), [id << 1, id << 1 | 1].into());
        t.remove(id);
        assert!(t.index.is_empty());
    }

    #[test]
    fn expiry_is_right_across_the_clock_wrap() {
        let wrap = 1u64 << 32;
        let mut t = ConnTable::with_capacity(4);
        let c = conn(1, ForwardMode::Nat, wrap - 1_000);
        t.insert_(c).expect("room");
        assert!(t.lookup(&c.inbound_key(), wrap - 1).is_some());
        assert!(t.lookup(&c.inbound_key(), wrap + 59_000).is_some(), "idle 60 s: still there");
        assert_eq!(t.get(0).map(|c| c.expires_in_ms(wrap + 58_000)), Some(1_000));
        assert!(t.lookup(&c.inbound_key(), wrap + 59_001).is_none());
        assert_eq!(t.expire(wrap + 59_001, 4), 1);
    }

    #[test]
    fn long_timeouts_are_cut_to_the_clock_range() {
        let mut c = conn(1, ForwardMode::Nat, 0);
        let year_ms = 365 * 24 * 3_600_000;
        c.restart_timer(year_ms, 5);
        assert_eq!(c.expires_in_ms(5), crate::conn::MAX_TIMEOUT_MS);
        assert!(!c.is_expired(5 + crate::conn::MAX_TIMEOUT_MS));
        assert!(c.is_expired(6 + crate::conn::MAX_TIMEOUT_MS));
    }

    #[test]
    fn a_long_unsynced_connection_stays_due_for_sync() {
        // Connection sync off for 60 days (longer than the 32-bit clock's
        // 49.7), the connection kept alive: the sweep keeps it due.
        let day = 24 * 3_600_000u64;
        let mut t = ConnTable::with_capacity(4);
        let id = t.insert_(conn(1, ForwardMode::Nat, 0)).expect("room");
        for d in 1..=60 {
            if let Some(c) = t.get_mut(id) {
                c.restart_timer(900_000, d * day);
            }
            assert_eq!(t.expire(d * day, 4), 0);
            let since = t.get(id).map_or(0, |c| c.since_synced_ms(d * day));
            assert!(since >= (d * day).min(1 << 31), "day {d}: last sync {since} ms ago");
        }
    }

    proptest::proptest! {
        /// Inserts (replacing), removals, expiry and lookups agree with a
        /// map of keys to client ports, NAT and DR mixed, in a small table.
        #[test]
        fn agrees_with_a_model(ops in proptest::collection::vec((0u8..4, 1u16..48, proptest::bool::ANY), 1..300)) {
            use std::collections::HashMap;
            let mut t = ConnTable::with_capacity(24);
            let mut model: HashMap<u16, ConnId> = HashMap::new();
            let mut now = 0;
            for (op, port, nat) in ops {
                let forward = if nat { ForwardMode::Nat } else { ForwardMode::Dr };
                match op {
                    0 | 1 => {
                        let mut displaced = Vec::new();
                        match t.insert(conn(port, forward, now), &mut displaced) {
                            Ok(id) => {
                                if let Some(old) = model.insert(port, id) {
                                    proptest::prop_assert_eq!(displaced.len(), 1, "old {}", old);
                                }
                            }
                            Err(TableFull(24)) => proptest::prop_assert!(!model.contains_key(&port) && model.len() == 24),
                            Err(e) => proptest::prop_assert!(false, "{e}"),
                        }
                    }
                    2 => {
                        let removed = model.remove(&port).and_then(|id| t.remove(id));
                        proptest::prop_assert_eq!(removed.map(|c| c.client.port()), removed.is_some().then_some(port));
                    }
                    _ => {
                        now += 30_000;
                        let mut removed = Vec::new();
                        t.expire_into(now, 24, &mut removed);
                        for c in removed {
                            proptest::prop_assert!(model.remove(&c.client.port()).is_some());
                        }
                    }
                }
                proptest::prop_assert_eq!(t.len(), model.len());
                let keys: usize = t.iter().map(|(_, c)| 1 + usize::from(c.reply_key().is_some())).sum();
                proptest::prop_assert_eq!(t.index.len(), keys);
                for p in 1..48 {
                    for f in [ForwardMode::Nat, ForwardMode::Dr] {
                        let c = conn(p, f, 0);
                        let found = t.lookup(&c.inbound_key(), now).map(|(id, _)| id);
                        proptest::prop_assert_eq!(found, model.get(&p).copied().filter(|&id| t.get(id).is_some_and(|c| !c.is_expired(now))));
                        if let (Some(rk), Some(id)) = (c.reply_key(), model.get(&p)) {
                            let stored = t.get(*id).copied();
                            let hit = t.lookup(&rk, now);
                            let want = stored.filter(|s| s.reply_key() == Some(rk) && !s.is_expired(now)).map(|_| (*id, Direction::Reply));
                            proptest::prop_assert_eq!(hit, want);
                        }
                    }
                }
            }
        }
    }
}
