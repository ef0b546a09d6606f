//! The connection table: a slab of [`Conn`] entries indexed by flow keys.

use std::net::SocketAddrV4;

use rvs_cpu::{Backing, HugeArray, Smaps};

use super::hash::{FlowAddr, Seeds};
use super::index::{self, Index};
use super::{Conn, ConnAddr, FlowKey, TcpState};
use crate::snapshot::Protocol;

/// Index of a connection in its table's slab.
pub type ConnId = u32;

/// An entry of the index: 7 bits of the key's hash, then `id << 1 | direction`
/// (0 inbound, 1 reply). The key is not stored: it is read back from the slot.
pub type IndexEntry = u32;

/// Largest number of connections a table holds (2^24, rvsd's largest
/// `conn_table_size`: an id takes 24 bits of an [`IndexEntry`]).
pub const MAX_CAPACITY: usize = 1 << (index::VALUE_BITS - 1);

/// The end of the free list.
const NIL: ConnId = ConnId::MAX;

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

/// A slot of the slab: a connection, or a link of the free list. The link
/// fits beside the niche `Option<Conn>` uses, so a slot costs no more than a
/// [`Conn`] (a test checks it) and the free list costs no memory of its own.
#[derive(Clone, Copy, Debug)]
enum Slot<S: ConnAddr> {
    Used(Conn<S>),
    /// Free; the next free slot, or [`NIL`].
    Free(ConnId),
}

impl<S: ConnAddr> Slot<S> {
    fn conn(&self) -> Option<&Conn<S>> {
        match self {
            Slot::Used(c) => Some(c),
            Slot::Free(_) => None,
        }
    }
}

/// One array of a table's memory, for reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TablePart {
    /// `slots` or `index`.
    pub name: &'static str,
    /// Bytes of elements (the mapping may be rounded up to a page).
    pub bytes: usize,
    /// What memory backs it.
    pub backing: Backing,
    /// How `/proc/self/smaps` shows its mapping (`None` on the heap).
    pub smaps: Option<Smaps>,
}

/// A fixed-capacity connection table owned by one worker, for the
/// connections of one address family (IPv4 unless said otherwise;
/// [`ConnTable6`](super::ConnTable6) for IPv6 and NAT64).
///
/// Lookups are one hash probe. The index (`Index`, private) holds 4-byte entries (a
/// hash tag, an id and a direction) and compares keys against the slot they
/// point to, so a connection costs its slot (the size of a [`Conn`]) plus two
/// index entries' room at a load of at most 3/4 (10.7 bytes). Free slots
/// chain through themselves. Slots and index are [`HugeArray`]s: on huge
/// pages where the system has them, and faulted in by the thread that creates
/// the table, so the forwarding core never takes a page fault on it.
///
/// Flow keys are hashed with two folded multiplies over the packed 13-byte
/// key (IPv6: each address folded to a word first, [`FlowAddr::hash_key`])
/// and random seeds per table, so clients who choose their
/// addresses and ports cannot aim at one bucket without knowing the seeds. A pipeline that handles
/// a burst in stages hashes every key first ([`ConnTable::hash`]), prefetches
/// the index buckets ([`ConnTable::prefetch_index`]) then the slots
/// ([`ConnTable::prefetch_slot`]), and looks up with the hash in hand
/// ([`ConnTable::lookup_hashed`]).
///
/// Expiry is lazy (an expired entry found by a lookup is removed then) plus an
/// incremental sweep: [`ConnTable::expire`] checks a bounded number of slots
/// per call, so the poll loop never stalls on a big scan.
#[derive(Debug)]
pub struct ConnTable<S: ConnAddr = SocketAddrV4> {
    index: Index,
    seeds: Seeds,
    slots: HugeArray<Slot<S>>,
    /// Slots below this have been handed out at least once.
    high: usize,
    /// The first free slot below `high`, or [`NIL`].
    free: ConnId,
    sweep_cursor: usize,
    /// Where the next [`ConnTable::find_victim`] scan starts.
    victim_cursor: usize,
    len: usize,
}

/// Why [`ConnTable::find_victim`] chose a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Victim {
    /// It has expired (the sweep has not reached it yet).
    Expired(ConnId),
    /// It is a TCP connection in SYN_RECV (IPVS `drop_entry`'s prey).
    SynRecv(ConnId),
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
fn entry_key<S: ConnAddr>(slots: &[Slot<S>], e: u32) -> Option<FlowKey<S::Ip>> {
    let c = slots.get((e >> 1) as usize)?.conn()?;
    match entry_dir(e) {
        Direction::Inbound => Some(c.inbound_key()),
        Direction::Reply => c.reply_key(),
    }
}

/// The connection of index entry `e` when its key in the entry's direction
/// is `key` ([`entry_key`] compared with `key`).
#[inline(always)]
fn entry_conn_with_key<'a, S: ConnAddr>(slots: &'a [Slot<S>], e: u32, key: &FlowKey<S::Ip>) -> Option<&'a Conn<S>> {
    let c = slots.get((e >> 1) as usize)?.conn()?;
    let matches = match entry_dir(e) {
        Direction::Inbound => c.inbound_key() == *key,
        Direction::Reply => c.reply_key().as_ref() == Some(key),
    };
    matches.then_some(c)
}

/// The hash of `key` under `seeds`, as its family hashes it.
#[inline(always)]
fn hash_key<A: FlowAddr>(seeds: &Seeds, key: &FlowKey<A>) -> u64 {
    A::hash_key(key, seeds)
}

impl ConnTable {
    /// An IPv4 table for at most `capacity` connections (at most
    /// [`MAX_CAPACITY`]), allocated and faulted in up front by the calling
    /// thread: [`ConnTable::new`] for the IPv4 family, named apart so that
    /// `ConnTable::with_capacity` needs no type annotation.
    pub fn with_capacity(capacity: usize) -> Self {
        Self::new(capacity)
    }
}

impl<S: ConnAddr> ConnTable<S> {
    /// A table of family `S` for at most `capacity` connections (at most
    /// [`MAX_CAPACITY`]), allocated and faulted in up front by the calling
    /// thread (`ConnTable6::new(n)` for IPv6).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.clamp(1, MAX_CAPACITY);
        ConnTable {
            index: Index::with_capacity(capacity * 2),
            seeds: Seeds::random(),
            slots: HugeArray::new(capacity, Slot::Free(NIL)),
            high: 0,
            free: NIL,
            sweep_cursor: 0,
            victim_cursor: 0,
            len: 0,
        }
    }

    /// Maximum number of connections.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Connections in the table.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The table's memory: its slots and its index, what backs them and how
    /// the kernel maps them.
    pub fn memory(&self) -> [TablePart; 2] {
        let buckets = self.index.buckets();
        [
            TablePart {
                name: "slots",
                bytes: std::mem::size_of_val(&self.slots[..]),
                backing: self.slots.backing(),
                smaps: self.slots.smaps(),
            },
            TablePart { name: "index", bytes: std::mem::size_of_val(&buckets[..]), backing: buckets.backing(), smaps: buckets.smaps() },
        ]
    }

    /// The hash of a flow key, as this table files it (random per table).
    #[inline(always)]
    pub fn hash(&self, key: &FlowKey<S::Ip>) -> u64 {
        hash_key(&self.seeds, key)
    }

    /// Asks the CPU for the index bucket where a lookup of `hash` starts (a
    /// hint: it changes nothing and never fails).
    #[inline]
    pub fn prefetch_index(&self, hash: u64) {
        self.index.prefetch(hash);
    }

    /// Reads the index bucket of `hash` (prefetched by
    /// [`ConnTable::prefetch_index`] some time before) and asks the CPU for
    /// the slot of the first entry whose tag matches: the connection a lookup
    /// will most likely compare. Nothing when the key has no candidate.
    #[inline]
    pub fn prefetch_slot(&self, hash: u64) {
        if let Some(slot) = self.index.first_tagged(hash).and_then(|e| self.slots.get((e >> 1) as usize)) {
            rvs_cpu::prefetch_all(slot);
        }
    }

    /// The index entry under `key`, whose hash is `hash` (for tests).
    #[cfg(test)]
    fn find(&self, key: &FlowKey<S::Ip>, hash: u64) -> Option<u32> {
        let slots = &self.slots[..];
        self.index.find(hash, |e| entry_key(slots, e).as_ref() == Some(key))
    }

    /// The index entry under `key` (whose hash is `hash`), else the empty
    /// bucket where an entry for it would go now ([`Index::find_or_vacant`]).
    #[inline]
    fn find_or_vacant(&self, key: &FlowKey<S::Ip>, hash: u64) -> Result<u32, Option<usize>> {
        let slots = &self.slots[..];
        self.index.find_or_vacant(hash, |e| entry_key(slots, e).as_ref() == Some(key))
    }

    /// Adds entry `e` under a key hashing to `hash` (the key is not there),
    /// into the bucket `vacant` that [`ConnTable::find_or_vacant`] gave for
    /// the key with no removal since. The index has room for two keys per
    /// slot, so it never refuses.
    fn index_insert_at(&mut self, vacant: Option<usize>, hash: u64, e: u32) {
        let inserted = self.index.insert_at(vacant, hash, e);
        debug_assert!(inserted, "the index has room for two keys per slot");
    }

    /// Takes `key → e` out of the index.
    fn index_remove(&mut self, key: &FlowKey<S::Ip>, e: u32) {
        let (slots, seeds) = (&self.slots[..], &self.seeds);
        self.index.remove(hash_key(seeds, key), e, |x| entry_key(slots, x).map_or(0, |k| hash_key(seeds, &k)));
    }

    /// A free slot for a new connection: the head of the free list, else the
    /// first never-used slot.
    fn take_slot(&mut self) -> Option<ConnId> {
        if self.free != NIL {
            let id = self.free;
            self.free = match self.slots.get(id as usize) {
                Some(Slot::Free(next)) => *next,
                // The list only links free slots; a broken link ends it.
                _ => NIL,
            };
            Some(id)
        } else if self.high < self.capacity() {
            self.high += 1;
            Some((self.high - 1) as ConnId)
        } else {
            None
        }
    }

    /// Adds a connection under its inbound key (and reply key for NAT and
    /// FULLNAT). An existing entry under either key is replaced and pushed to
    /// `displaced`, so the caller can release what it held.
    pub fn insert(&mut self, conn: Conn<S>, displaced: &mut Vec<Conn<S>>) -> Result<ConnId, TableFull> {
        let inbound_hash = self.hash(&conn.inbound_key());
        self.insert_hashed(conn, inbound_hash, displaced)
    }

    /// [`ConnTable::insert`] with the hash of the connection's inbound key
    /// ([`ConnTable::hash`]) in hand (the packet that creates it was hashed
    /// for its lookup).
    pub fn insert_hashed(&mut self, conn: Conn<S>, inbound_hash: u64, displaced: &mut Vec<Conn<S>>) -> Result<ConnId, TableFull> {
        let ik = conn.inbound_key();
        debug_assert_eq!(inbound_hash, self.hash(&ik), "the inbound key's hash");
        let ih = inbound_hash;
        let rk = conn.reply_key().map(|rk| (rk, self.hash(&rk)));
        // A key's search ends at the empty bucket its entry will take, unless
        // a removal (of a displaced entry) comes in between: the entries go
        // exactly where a fresh probe would put them.
        let mut inbound_vacant = match self.find_or_vacant(&ik, ih) {
            Ok(old) => {
                displaced.extend(self.remove(old >> 1));
                None
            }
            Err(vacant) => vacant,
        };
        let mut reply_vacant = None;
        if let Some((rk, rh)) = &rk {
            match self.find_or_vacant(rk, *rh) {
                Ok(old) => {
                    displaced.extend(self.remove(old >> 1));
                    inbound_vacant = None;
                }
                Err(vacant) => reply_vacant = vacant,
            }
        }
        let Some(id) = self.take_slot() else { return Err(TableFull(self.capacity())) };
        self.slots[id as usize] = Slot::Used(conn);
        // A reply key equal to the inbound key (a degenerate service) is found as the reply.
        if rk.map(|(rk, _)| rk) != Some(ik) {
            self.index_insert_at(inbound_vacant, ih, entry(id, Direction::Inbound));
        }
        if let Some((_, rh)) = rk {
            self.index_insert_at(reply_vacant, rh, entry(id, Direction::Reply));
        }
        self.len += 1;
        Ok(id)
    }

    /// Finds the live connection a packet with `key` belongs to. An expired
    /// entry is not returned (the sweep, or a replacing insert, removes it).
    #[inline]
    pub fn lookup(&self, key: &FlowKey<S::Ip>, now_ms: u64) -> Option<(ConnId, Direction)> {
        self.lookup_hashed(key, self.hash(key), now_ms)
    }

    /// [`ConnTable::lookup`] with the key's hash ([`ConnTable::hash`]) in hand.
    /// Always inlined: it is every packet's lookup, and the compiler's own
    /// choice flips with unrelated changes to the table.
    #[inline(always)]
    pub fn lookup_hashed(&self, key: &FlowKey<S::Ip>, hash: u64, now_ms: u64) -> Option<(ConnId, Direction)> {
        let slots = &self.slots[..];
        // Whether the connection found has expired, read while its key is
        // compared (one read of the slot).
        let mut expired = true;
        let e = self.index.find(hash, |e| match entry_conn_with_key(slots, e, key) {
            Some(c) => {
                expired = c.is_expired(now_ms);
                true
            }
            None => false,
        })?;
        (!expired).then_some((e >> 1, entry_dir(e)))
    }

    /// The connection with this id.
    pub fn get(&self, id: ConnId) -> Option<&Conn<S>> {
        self.slots.get(id as usize)?.conn()
    }

    /// The connection with this id, mutable.
    pub fn get_mut(&mut self, id: ConnId) -> Option<&mut Conn<S>> {
        match self.slots.get_mut(id as usize)? {
            Slot::Used(c) => Some(c),
            Slot::Free(_) => None,
        }
    }

    /// Removes a connection and its keys. Returns it.
    pub fn remove(&mut self, id: ConnId) -> Option<Conn<S>> {
        let conn = *self.slots.get(id as usize)?.conn()?;
        self.index_remove(&conn.inbound_key(), entry(id, Direction::Inbound));
        if let Some(rk) = conn.reply_key() {
            self.index_remove(&rk, entry(id, Direction::Reply));
        }
        self.slots[id as usize] = Slot::Free(self.free);
        self.free = id;
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
    pub fn expire_into(&mut self, now_ms: u64, budget: usize, removed: &mut Vec<Conn<S>>) -> usize {
        self.expire_capped(now_ms, budget, removed, None).0
    }

    /// Like [`ConnTable::expire_into`]; while `syn_recv_max_ms` is set, a
    /// live SYN_RECV connection the sweep meets with more than that left
    /// before it expires has its timer cut to it (the short timeout of a
    /// table under pressure). Returns (removed, cut).
    pub fn expire_capped(
        &mut self,
        now_ms: u64,
        budget: usize,
        removed: &mut Vec<Conn<S>>,
        syn_recv_max_ms: Option<u64>,
    ) -> (usize, usize) {
        let n = self.high;
        if n == 0 {
            return (0, 0);
        }
        let (mut count, mut cut) = (0, 0);
        for _ in 0..budget.min(n) {
            if self.sweep_cursor >= n {
                self.sweep_cursor = 0;
            }
            let id = self.sweep_cursor as ConnId;
            self.sweep_cursor += 1;
            let expired = match &mut self.slots[id as usize] {
                Slot::Used(c) if c.is_expired(now_ms) => true,
                Slot::Used(c) => {
                    c.age_sync(now_ms);
                    if let Some(max) = syn_recv_max_ms {
                        if c.state == TcpState::SynRecv && c.expires_in_ms(now_ms) > max {
                            c.restart_timer(max, now_ms);
                            cut += 1;
                        }
                    }
                    false
                }
                Slot::Free(_) => false,
            };
            if expired {
                removed.extend(self.remove(id));
                count += 1;
            }
        }
        (count, cut)
    }

    /// A connection to remove so that a new one fits in a full table:
    /// looks at up to `budget` slots from where the last call stopped
    /// (a rotating cursor: the slot a victim frees takes the new connection
    /// just behind the cursor, so the newest entries are the last ones
    /// looked at again) for an expired connection or (with `syn_recv`) a TCP
    /// connection in SYN_RECV. Never any other live connection: `None` when
    /// the slots looked at hold none.
    pub fn find_victim(&mut self, now_ms: u64, budget: usize, syn_recv: bool) -> Option<Victim> {
        let n = self.high;
        for _ in 0..budget.min(n) {
            if self.victim_cursor >= n {
                self.victim_cursor = 0;
            }
            let id = self.victim_cursor as ConnId;
            self.victim_cursor += 1;
            match self.slots.get(id as usize) {
                Some(Slot::Used(c)) if c.is_expired(now_ms) => return Some(Victim::Expired(id)),
                Some(Slot::Used(c)) if syn_recv && c.protocol == Protocol::Tcp && c.state == TcpState::SynRecv => {
                    return Some(Victim::SynRecv(id))
                }
                _ => {}
            }
        }
        None
    }

    /// Every live connection (for listings).
    pub fn iter(&self) -> impl Iterator<Item = (ConnId, &Conn<S>)> {
        self.slots[..self.high].iter().enumerate().filter_map(|(i, s)| s.conn().map(|c| (i as ConnId, c)))
    }

    /// Slots in use or freed so far: every [`ConnId`] is below this, so a
    /// listing can walk `0..slot_count()` with [`ConnTable::get`] a piece at a time.
    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};

    use super::*;
    use crate::conn::{Conn6, ConnTable6, FlowKey6, OptAddrV6, SockV6, TcpState};
    use crate::snapshot::{ForwardMode, Protocol, Timeouts};

    /// An address family under test. Every test about the table is written
    /// once, generic over it, and runs for both (`for_both_families!`).
    trait Family: ConnAddr {
        /// The family's address standing for the IPv4 address `a`: IPv4
        /// itself; for IPv6, `2001:db8:A:B::C:D` (the four bytes spread over
        /// both halves of the address).
        fn ip(a: Ipv4Addr) -> Self::Ip;

        /// [`Family::ip`] with a port.
        fn sock(a: Ipv4Addr, port: u16) -> Self {
            Self::from_parts(Self::ip(a), port)
        }

        /// Client address `i` of crafted set `set` (an attacker's choice of
        /// sources that differ in a few bits only), `None` past the last set.
        fn crafted(set: usize, i: u16) -> Option<Self>;
    }

    impl Family for SocketAddrV4 {
        fn ip(a: Ipv4Addr) -> Ipv4Addr {
            a
        }

        fn crafted(set: usize, i: u16) -> Option<Self> {
            match set {
                // One client: only the source port varies.
                0 => Some(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), i)),
                // Only the low 16 bits of the client address.
                1 => Some(SocketAddrV4::new(Ipv4Addr::from(0x0a00_0000 | u32::from(i)), 40000)),
                _ => None,
            }
        }
    }

    impl Family for SockV6 {
        fn ip(a: Ipv4Addr) -> Ipv6Addr {
            let [a, b, c, d] = a.octets().map(u16::from);
            Ipv6Addr::new(0x2001, 0xdb8, a, b, 0, 0, c, d)
        }

        fn crafted(set: usize, i: u16) -> Option<Self> {
            let ip = match set {
                // One client: only the source port varies.
                0 => return Some(SockV6::new(Ipv6Addr::new(0x2001, 0xdb8, 0xc, 0, 0, 0, 0, 2), i)),
                // Only the low 16 bits (a sequential range).
                1 => Ipv6Addr::new(0x2001, 0xdb8, 0xc, 0, 0, 0, 0, i),
                // Only the 16 highest bits.
                2 => Ipv6Addr::new(i, 0xdb8, 0xc, 0, 0, 0, 0, 2),
                // Only bits 48..64: the subnets of a /48 an attacker owns.
                3 => Ipv6Addr::new(0x2001, 0xdb8, 0xc, i, 0, 0, 0, 2),
                // Only bits 64..80: the top of the interface id.
                4 => Ipv6Addr::new(0x2001, 0xdb8, 0xc, 0, i, 0, 0, 2),
                // IPv4-mapped addresses (NAT64's IPv4 side), low 16 bits.
                5 => Ipv4Addr::from(0x0a00_0000 | u32::from(i)).to_ipv6_mapped(),
                _ => return None,
            };
            Some(SockV6::new(ip, 40000))
        }
    }

    /// Runs each generic test `name::<S>` as `name::v4` and `name::v6`.
    macro_rules! for_both_families {
        ($($name:ident),* $(,)?) => {$(
            mod $name {
                #[test]
                fn v4() {
                    super::$name::<std::net::SocketAddrV4>()
                }

                #[test]
                fn v6() {
                    super::$name::<crate::conn::SockV6>()
                }
            }
        )*};
    }

    for_both_families!(
        victims_are_syn_recv_or_expired_taken_in_turn_from_a_rotating_cursor,
        the_sweep_cuts_syn_recv_timers_to_the_cap_only,
        nat_connection_is_found_from_both_directions,
        fullnat_connection_is_found_by_its_local_address,
        dr_connection_has_no_reply_key,
        full_table_refuses_and_frees_on_remove,
        reinserting_the_same_flow_replaces_the_old_entry,
        idle_entries_expire_lazily_and_by_sweep,
        tcp_states_set_their_timeouts,
        index_entries_take_4_bytes,
        expiry_is_right_across_the_clock_wrap,
        long_timeouts_are_cut_to_the_clock_range,
        a_long_unsynced_connection_stays_due_for_sync,
        a_slot_costs_no_more_than_a_connection,
        free_slots_are_reused_last_freed_first_and_the_sweep_skips_them,
        every_table_hashes_with_its_own_seeds,
        the_prefetch_hints_accept_any_hash,
        keys_an_attacker_chooses_spread_over_the_index,
    );

    /// A TCP connection from client port `client_port` in SYN_RECV,
    /// expiring 60 s after `now`; FULLNAT ones have local port
    /// `client_port | 0x8000`.
    fn conn<S: Family>(client_port: u16, forward: ForwardMode, now: u64) -> Conn<S> {
        let local = (forward == ForwardMode::FullNat).then(|| S::sock(Ipv4Addr::new(10, 1, 0, 200), client_port | 0x8000));
        Conn {
            protocol: Protocol::Tcp,
            client: S::sock(Ipv4Addr::new(10, 0, 0, 2), client_port),
            vip: S::sock(Ipv4Addr::new(10, 0, 0, 100), 80),
            real: S::sock(Ipv4Addr::new(10, 1, 0, 11), 8080),
            local: local.into(),
            real_index: 0,
            service_index: 0,
            generation: 0,
            synced_tick: 0,
            forward,
            state: TcpState::SynRecv,
            expires_ms: (now + 60_000) as u32,
            seq_delta: 0,
            reply_hop: crate::neigh::hops::NONE,
            proxy: Default::default(),
        }
    }

    impl<S: ConnAddr> ConnTable<S> {
        fn insert_(&mut self, c: Conn<S>) -> Result<ConnId, TableFull> {
            self.insert(c, &mut Vec::new())
        }
    }

    #[test]
    fn the_ipv4_shorthand_makes_an_ipv4_table() {
        let t = ConnTable::with_capacity(3);
        let k: FlowKey = conn::<SocketAddrV4>(1, ForwardMode::Dr, 0).inbound_key();
        assert_eq!(t.lookup(&k, 0), None);
        assert_eq!(t.capacity(), 3);
        assert_eq!(ConnTable6::new(MAX_CAPACITY + 1).capacity(), MAX_CAPACITY, "the capacity is capped");
    }

    fn victims_are_syn_recv_or_expired_taken_in_turn_from_a_rotating_cursor<S: Family>() {
        let mut t = ConnTable::<S>::new(8);
        let ids: Vec<ConnId> = (0..8u16)
            .map(|i| {
                let mut c = conn(40000 + i, ForwardMode::Dr, 0);
                c.state = if i % 2 == 0 { TcpState::SynRecv } else { TcpState::Established };
                c.restart_timer(60_000, 0);
                t.insert_(c).expect("room")
            })
            .collect();
        assert_eq!(t.find_victim(10, 8, true), Some(Victim::SynRecv(ids[0])));
        // The cursor moved on: the next is the next SYN_RECV, not the first again.
        assert_eq!(t.find_victim(10, 8, true), Some(Victim::SynRecv(ids[2])));
        // A budget of one slot (an ESTABLISHED one) finds nothing.
        assert_eq!(t.find_victim(10, 1, true), None);
        assert_eq!(t.find_victim(10, 8, true), Some(Victim::SynRecv(ids[4])));
        // Without drop_entry, only expired entries qualify.
        assert_eq!(t.find_victim(10, 8, false), None);
        t.get_mut(ids[3]).expect("live").restart_timer(5, 0);
        assert_eq!(t.find_victim(10, 8, false), Some(Victim::Expired(ids[3])));
        // ESTABLISHED entries never qualify.
        for id in [0, 2, 4, 6] {
            t.remove(ids[id]);
        }
        t.remove(ids[3]);
        assert_eq!(t.find_victim(10, 64, true), None);
    }

    fn the_sweep_cuts_syn_recv_timers_to_the_cap_only<S: Family>() {
        let mut t = ConnTable::<S>::new(4);
        let mut syn = conn(40000, ForwardMode::Dr, 0);
        syn.state = TcpState::SynRecv;
        syn.restart_timer(60_000, 0);
        let mut est = conn(40001, ForwardMode::Dr, 0);
        est.state = TcpState::Established;
        est.restart_timer(900_000, 0);
        let (a, b) = (t.insert_(syn).expect("room"), t.insert_(est).expect("room"));
        let mut removed = Vec::new();
        assert_eq!(t.expire_capped(1_000, 4, &mut removed, None), (0, 0));
        assert_eq!(t.expire_capped(1_000, 4, &mut removed, Some(3_000)), (0, 1));
        assert_eq!(t.get(a).map(|c| c.expires_in_ms(1_000)), Some(3_000));
        assert_eq!(t.get(b).map(|c| c.expires_in_ms(1_000)), Some(899_000));
        assert_eq!(t.expire_capped(2_000, 4, &mut removed, Some(3_000)), (0, 0), "already within the cap");
        assert_eq!(t.expire_capped(4_001, 4, &mut removed, Some(3_000)), (1, 0));
        assert_eq!(removed.len(), 1);
    }

    fn nat_connection_is_found_from_both_directions<S: Family>() {
        let mut t = ConnTable::<S>::new(4);
        let c = conn(40000, ForwardMode::Nat, 0);
        let id = t.insert_(c).expect("room");
        assert_eq!(t.lookup(&c.inbound_key(), 1), Some((id, Direction::Inbound)));
        let rk = c.reply_key().expect("nat has a reply key");
        assert_eq!(rk.src, S::ip(Ipv4Addr::new(10, 1, 0, 11)));
        assert_eq!(rk.sport, 8080);
        assert_eq!((rk.dst, rk.dport), (S::ip(Ipv4Addr::new(10, 0, 0, 2)), 40000));
        assert_eq!(t.lookup(&rk, 1), Some((id, Direction::Reply)));
        assert_eq!(t.len(), 1);
    }

    fn fullnat_connection_is_found_by_its_local_address<S: Family>() {
        let mut t = ConnTable::<S>::new(4);
        let c = conn(40000, ForwardMode::FullNat, 0);
        let id = t.insert_(c).expect("room");
        let rk = c.reply_key().expect("fullnat has a reply key");
        assert_eq!((rk.dst, rk.dport), (S::ip(Ipv4Addr::new(10, 1, 0, 200)), 40000 | 0x8000));
        assert_eq!(t.lookup(&rk, 1), Some((id, Direction::Reply)));
        assert_eq!(t.lookup(&c.inbound_key(), 1), Some((id, Direction::Inbound)));
        // The reply key of the same flow in NAT mode (to the client) is not there.
        let nat = conn::<S>(40000, ForwardMode::Nat, 0).reply_key().expect("nat");
        assert_eq!(t.lookup(&nat, 1), None);
        // A FULLNAT connection without a local address has no reply key.
        assert_eq!(Conn { local: None.into(), ..c }.reply_key(), None);
    }

    fn dr_connection_has_no_reply_key<S: Family>() {
        let mut t = ConnTable::<S>::new(4);
        let c = conn(40000, ForwardMode::Dr, 0);
        t.insert_(c).expect("room");
        assert!(c.reply_key().is_none());
        assert_eq!(t.index.len(), 1);
    }

    fn full_table_refuses_and_frees_on_remove<S: Family>() {
        let mut t = ConnTable::<S>::new(2);
        let a = t.insert_(conn(1, ForwardMode::Nat, 0)).expect("room");
        t.insert_(conn(2, ForwardMode::Nat, 0)).expect("room");
        assert_eq!(t.insert_(conn(3, ForwardMode::Nat, 0)), Err(TableFull(2)));
        assert!(t.remove(a).is_some());
        assert!(t.remove(a).is_none(), "double remove is harmless");
        t.insert_(conn(3, ForwardMode::Nat, 0)).expect("freed slot reused");
        assert_eq!(t.len(), 2);
    }

    fn reinserting_the_same_flow_replaces_the_old_entry<S: Family>() {
        let mut t = ConnTable::<S>::new(4);
        t.insert_(conn(5, ForwardMode::Nat, 0)).expect("room");
        let mut c = conn(5, ForwardMode::Nat, 0);
        c.real = S::sock(Ipv4Addr::new(10, 1, 0, 12), 8080);
        let id = t.insert_(c).expect("room");
        assert_eq!(t.len(), 1);
        assert_eq!(t.get(id).map(|c| c.real), Some(c.real));
        // The old reply key (from .11) is gone.
        let old_rk = conn::<S>(5, ForwardMode::Nat, 0).reply_key().expect("nat");
        assert_eq!(t.lookup(&old_rk, 0), None);
    }

    fn idle_entries_expire_lazily_and_by_sweep<S: Family>() {
        let mut t = ConnTable::<S>::new(8);
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

    fn tcp_states_set_their_timeouts<S: Family>() {
        use crate::conn::TcpFlags;
        let timeouts = Timeouts::default();
        let mut c = conn::<S>(1, ForwardMode::Nat, 0);
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

    fn index_entries_take_4_bytes<S: Family>() {
        assert_eq!(std::mem::size_of::<IndexEntry>(), 4);
        let mut t = ConnTable::<S>::new(4);
        let c = conn(7, ForwardMode::Nat, 0);
        let id = t.insert_(c).expect("room");
        assert_eq!(t.index.values().collect::<std::collections::BTreeSet<_>>(), [id << 1, id << 1 | 1].into());
        t.remove(id);
        assert!(t.index.is_empty());
    }

    fn expiry_is_right_across_the_clock_wrap<S: Family>() {
        let wrap = 1u64 << 32;
        let mut t = ConnTable::<S>::new(4);
        let c = conn(1, ForwardMode::Nat, wrap - 1_000);
        t.insert_(c).expect("room");
        assert!(t.lookup(&c.inbound_key(), wrap - 1).is_some());
        assert!(t.lookup(&c.inbound_key(), wrap + 59_000).is_some(), "idle 60 s: still there");
        assert_eq!(t.get(0).map(|c| c.expires_in_ms(wrap + 58_000)), Some(1_000));
        assert!(t.lookup(&c.inbound_key(), wrap + 59_001).is_none());
        assert_eq!(t.expire(wrap + 59_001, 4), 1);
    }

    fn long_timeouts_are_cut_to_the_clock_range<S: Family>() {
        let mut c = conn::<S>(1, ForwardMode::Nat, 0);
        let year_ms = 365 * 24 * 3_600_000;
        c.restart_timer(year_ms, 5);
        assert_eq!(c.expires_in_ms(5), crate::conn::MAX_TIMEOUT_MS);
        assert!(!c.is_expired(5 + crate::conn::MAX_TIMEOUT_MS));
        assert!(c.is_expired(6 + crate::conn::MAX_TIMEOUT_MS));
    }

    fn a_long_unsynced_connection_stays_due_for_sync<S: Family>() {
        // Connection sync off for 60 days (longer than the 18.6 hours of the
        // 16-bit sync tick and the 49.7 days of the 32-bit clock), the
        // connection kept alive and the sweep passing every hour: it stays
        // due from half its timeout on, and its age never runs ahead.
        let hour = 3_600_000u64;
        let timeouts = crate::snapshot::Timeouts { tcp: 900, ..Default::default() };
        let mut t = ConnTable::<S>::new(4);
        let mut c = conn(1, ForwardMode::Nat, 0);
        c.state = TcpState::Established;
        let id = t.insert_(c).expect("room");
        for h in 1..=60 * 24 {
            let now = h * hour;
            if let Some(c) = t.get_mut(id) {
                c.restart_timer(900_000, now);
            }
            assert_eq!(t.expire(now, 4), 0);
            let c = t.get(id).copied().expect("live");
            assert!(c.sync_refresh_due(&timeouts, now), "hour {h}: due");
            let since = c.since_synced_ms(now);
            assert!(since > 450_000 && since <= now + crate::conn::SYNC_TICK_MS, "hour {h}: last sync {since} ms ago");
        }
    }

    fn a_slot_costs_no_more_than_a_connection<S: Family>() {
        assert_eq!(std::mem::size_of::<Slot<S>>(), std::mem::size_of::<Conn<S>>(), "the free-list link shares the niche");
        let t = ConnTable::<S>::new(3000);
        let [slots, _] = t.memory();
        assert_eq!(slots.bytes, 3000 * std::mem::size_of::<Conn<S>>());
    }

    fn free_slots_are_reused_last_freed_first_and_the_sweep_skips_them<S: Family>() {
        let mut t = ConnTable::<S>::new(4);
        let ids: Vec<ConnId> = (1..=4).map(|p| t.insert_(conn(p, ForwardMode::Nat, 0)).expect("room")).collect();
        assert_eq!(ids, [0, 1, 2, 3]);
        assert_eq!(t.remove(1).map(|c| c.client.port()), Some(2));
        assert_eq!(t.remove(3).map(|c| c.client.port()), Some(4));
        assert_eq!(t.iter().map(|(id, _)| id).collect::<Vec<_>>(), [0, 2]);
        assert_eq!(t.insert_(conn(5, ForwardMode::Nat, 0)), Ok(3));
        assert_eq!(t.insert_(conn(6, ForwardMode::Nat, 0)), Ok(1));
        assert_eq!(t.insert_(conn(7, ForwardMode::Nat, 0)), Err(TableFull(4)));
        for (id, port) in [(0, 1), (1, 6), (2, 3), (3, 5)] {
            assert_eq!(t.lookup(&conn::<S>(port, ForwardMode::Nat, 0).inbound_key(), 0), Some((id, Direction::Inbound)));
        }
    }

    fn every_table_hashes_with_its_own_seeds<S: Family>() {
        let (a, b) = (ConnTable::<S>::new(4), ConnTable::<S>::new(4));
        let k = conn::<S>(1, ForwardMode::Nat, 0).inbound_key();
        assert_eq!(a.hash(&k), a.hash(&k));
        assert_ne!(a.hash(&k), b.hash(&k), "seeds are random per table");
    }

    fn the_prefetch_hints_accept_any_hash<S: Family>() {
        let mut t = ConnTable::<S>::new(1000);
        for h in [0, 1, u64::MAX, 0x8000_0000_0000_0000] {
            t.prefetch_index(h);
            t.prefetch_slot(h);
        }
        for p in 1..500 {
            t.insert_(conn(p, ForwardMode::Nat, 0)).expect("room");
        }
        for h in (0..64u64).map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15)).chain([u64::MAX]) {
            t.prefetch_index(h);
            t.prefetch_slot(h);
        }
        let k = conn::<S>(7, ForwardMode::Nat, 0).inbound_key();
        let h = t.hash(&k);
        // The candidate the hint prefetches is the connection itself when its
        // tag is the first one on the probe path.
        let hinted = t.index.first_tagged(h).map(|e| e >> 1);
        let found = t.lookup_hashed(&k, h, 0).map(|(id, _)| id);
        assert!(found.is_some());
        if hinted != found {
            // Another key with the same 7-bit tag sits first on the path: it must be a stored entry.
            assert!(hinted.is_some_and(|id| t.get(id).is_some()));
        }
    }

    fn keys_an_attacker_chooses_spread_over_the_index<S: Family>() {
        // One client, one VIP, 65536 keys per set, each set varying a few
        // bits of the key only ([`Family::crafted`]: the source port, the
        // low 16 bits of the client address; for IPv6 also its highest 16
        // bits, bits 48..64 and 64..80, and IPv4-mapped addresses). Each set
        // must spread at least like random keys: no bucket is home to more
        // than a handful, as many buckets are used, and the 7-bit tags are
        // even. At least eight tables, eight sets of seeds, at least two per
        // set: a weakness may show only for some.
        let sets = (0..).take_while(|&s| S::crafted(s, 0).is_some()).count();
        assert!(sets >= 2);
        for (i, t) in (0..8.max(2 * sets)).map(|i| (i, ConnTable::<S>::new(1 << 16))) {
            let set = i % sets;
            let n = t.index.buckets().len();
            let mut homes = vec![0u16; n];
            let mut tags = [0u32; 128];
            for i in 0..=u16::MAX {
                let mut c = conn::<S>(40000, ForwardMode::Dr, 0);
                c.client = S::crafted(set, i).expect("a set below the count");
                let h = t.hash(&c.inbound_key());
                homes[t.index.home(h)] += 1;
                tags[(h & 0x7f) as usize] += 1;
            }
            // Poisson with mean 0.375: P(k >= 9) per bucket is ~1e-11.
            let max = homes.iter().max().copied().unwrap_or(0);
            assert!(max <= 8, "a bucket is home to {max} keys (set {set})");
            // Random keys use 1 - e^-0.375 = 31.3 % of the buckets.
            let used = homes.iter().filter(|&&c| c > 0).count();
            assert!(used as f64 / n as f64 > 0.29, "{used} of {n} buckets used (set {set})");
            // 512 keys per tag on average; binomial sd ~22.
            let (lo, hi) = (tags.iter().min().copied().unwrap_or(0), tags.iter().max().copied().unwrap_or(0));
            assert!(lo > 400 && hi < 640, "tags from {lo} to {hi} keys (set {set})");
        }
    }

    fn nat64_conn(client_port: u16) -> Conn6 {
        let mapped = |a: [u8; 4], port| SockV6::mapped(SocketAddrV4::new(Ipv4Addr::from(a), port));
        Conn {
            client: SockV6::new(Ipv6Addr::new(0x2001, 0xdb8, 0xc, 0, 0, 0, 0, 2), client_port),
            vip: SockV6::new(Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 1), 80),
            real: mapped([10, 1, 0, 11], 8080),
            local: OptAddrV6::mapped(Some(SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, 200), client_port | 0x8000))),
            ..conn(client_port, ForwardMode::FullNat, 0)
        }
    }

    #[test]
    fn an_ipv4_reply_finds_its_nat64_connection_in_the_ipv6_table() {
        let mut t = ConnTable6::new(8);
        let c = nat64_conn(40000);
        let id = t.insert_(c).expect("room");
        // A native IPv6 FULLNAT connection beside it, to the same real server
        // and local address written as IPv6 addresses of their own.
        let native = t.insert_(conn(40000, ForwardMode::FullNat, 0)).expect("room");
        // What arrives from the real server: IPv4, 10.1.0.11:8080 → 10.1.0.200:(40000 | 0x8000).
        let reply =
            FlowKey { proto: 6, src: Ipv4Addr::new(10, 1, 0, 11), sport: 8080, dst: Ipv4Addr::new(10, 1, 0, 200), dport: 40000 | 0x8000 };
        assert_eq!(t.lookup(&reply.to_mapped(), 1), Some((id, Direction::Reply)));
        assert_eq!(t.lookup(&c.inbound_key(), 1), Some((id, Direction::Inbound)));
        assert_eq!(t.get(id).and_then(|c| c.reply_key()).and_then(|k| k.to_unmapped()), Some(reply));
        let native_reply = t.get(native).and_then(|c| c.reply_key()).expect("fullnat");
        assert_eq!(native_reply.to_unmapped(), None);
        assert_eq!(t.lookup(&native_reply, 1), Some((native, Direction::Reply)));
        // Another local port misses.
        assert_eq!(t.lookup(&FlowKey { dport: 40001, ..reply }.to_mapped(), 1), None);
        let k: FlowKey6 = reply.to_mapped();
        assert_eq!(t.remove(id).map(|c| c.reply_key()), Some(Some(k)));
        assert_eq!(t.lookup(&k, 1), None);
    }

    /// Inserts (replacing), removals, expiry and lookups agree with a map of
    /// keys to client ports, NAT, FULLNAT and DR mixed, in a small table.
    fn agrees_with_a_model<S: Family>(ops: Vec<(u8, u16, u8)>) -> Result<(), proptest::test_runner::TestCaseError> {
        use std::collections::HashMap;
        const MODES: [ForwardMode; 3] = [ForwardMode::Nat, ForwardMode::Dr, ForwardMode::FullNat];
        let mut t = ConnTable::<S>::new(24);
        let mut model: HashMap<u16, ConnId> = HashMap::new();
        let mut now = 0;
        for (op, port, mode) in ops {
            let forward = MODES[usize::from(mode) % MODES.len()];
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
            for p in 1..48 {
                for f in MODES {
                    let c = conn::<S>(p, f, 0);
                    for k in [Some(c.inbound_key()), c.reply_key()].into_iter().flatten() {
                        let h = t.hash(&k);
                        t.prefetch_index(h);
                        t.prefetch_slot(h);
                        proptest::prop_assert_eq!(t.lookup_hashed(&k, h, now), t.lookup(&k, now));
                    }
                }
            }
            let keys: usize = t.iter().map(|(_, c)| 1 + usize::from(c.reply_key().is_some())).sum();
            proptest::prop_assert_eq!(t.index.len(), keys);
            for p in 1..48 {
                for f in MODES {
                    let c = conn::<S>(p, f, 0);
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
        Ok(())
    }

    impl<S: ConnAddr> ConnTable<S> {
        /// [`ConnTable::insert`] as it was before the search for a key
        /// ended where its entry goes: a search, then a fresh probe.
        fn insert_by_two_probes(&mut self, conn: Conn<S>, displaced: &mut Vec<Conn<S>>) -> Result<ConnId, TableFull> {
            let ik = conn.inbound_key();
            let ih = self.hash(&ik);
            let rk = conn.reply_key().map(|rk| (rk, self.hash(&rk)));
            if let Some(old) = self.find(&ik, ih) {
                displaced.extend(self.remove(old >> 1));
            }
            if let Some((rk, rh)) = &rk {
                if let Some(old) = self.find(rk, *rh) {
                    displaced.extend(self.remove(old >> 1));
                }
            }
            let Some(id) = self.take_slot() else { return Err(TableFull(self.capacity())) };
            self.slots[id as usize] = Slot::Used(conn);
            if rk.map(|(rk, _)| rk) != Some(ik) {
                assert!(self.index.insert(ih, entry(id, Direction::Inbound)));
            }
            if let Some((_, rh)) = rk {
                assert!(self.index.insert(rh, entry(id, Direction::Reply)));
            }
            self.len += 1;
            Ok(id)
        }
    }

    /// Inserts that end their key's search where its entry goes leave the
    /// index bucket for bucket as a search and a fresh probe do, with
    /// entries displaced under either key (a client's new connection, a
    /// FULLNAT local port taken again by another client) and removals.
    fn inserts_file_entries_where_a_fresh_probe_would<S: Family>(
        ops: Vec<(u8, u16, u8, bool)>,
    ) -> Result<(), proptest::test_runner::TestCaseError> {
        const MODES: [ForwardMode; 3] = [ForwardMode::Nat, ForwardMode::Dr, ForwardMode::FullNat];
        let mut fused = ConnTable::<S>::new(24);
        let mut probed = ConnTable::<S>::new(24);
        probed.seeds = fused.seeds;
        for (op, port, mode, other_client) in ops {
            let forward = MODES[usize::from(mode) % MODES.len()];
            let mut c = conn::<S>(port, forward, 0);
            if other_client {
                // Another client: the inbound key differs, a FULLNAT reply key does not.
                c.client = S::sock(Ipv4Addr::new(10, 0, 0, 3), port);
            }
            if op < 3 {
                let (mut a, mut b) = (Vec::new(), Vec::new());
                let ha = fused.hash(&c.inbound_key());
                proptest::prop_assert_eq!(fused.insert_hashed(c, ha, &mut a), probed.insert_by_two_probes(c, &mut b));
                proptest::prop_assert_eq!(
                    a.iter().map(|c| c.inbound_key()).collect::<Vec<_>>(),
                    b.iter().map(|c| c.inbound_key()).collect::<Vec<_>>()
                );
            } else if let Some((id, _)) = fused.lookup(&c.inbound_key(), 0) {
                proptest::prop_assert_eq!(fused.remove(id).map(|c| c.inbound_key()), probed.remove(id).map(|c| c.inbound_key()));
            }
            proptest::prop_assert_eq!(&fused.index.buckets()[..], &probed.index.buckets()[..]);
            proptest::prop_assert_eq!(fused.len(), probed.len());
        }
        Ok(())
    }

    proptest::proptest! {
        #[test]
        fn inserts_file_entries_where_a_fresh_probe_would_v4(ops in proptest::collection::vec((0u8..4, 1u16..40, 0u8..3, proptest::bool::ANY), 1..200)) {
            inserts_file_entries_where_a_fresh_probe_would::<SocketAddrV4>(ops)?;
        }

        #[test]
        fn inserts_file_entries_where_a_fresh_probe_would_v6(ops in proptest::collection::vec((0u8..4, 1u16..40, 0u8..3, proptest::bool::ANY), 1..200)) {
            inserts_file_entries_where_a_fresh_probe_would::<SockV6>(ops)?;
        }

        #[test]
        fn agrees_with_a_model_v4(ops in proptest::collection::vec((0u8..4, 1u16..48, 0u8..3), 1..300)) {
            agrees_with_a_model::<SocketAddrV4>(ops)?;
        }

        #[test]
        fn agrees_with_a_model_v6(ops in proptest::collection::vec((0u8..4, 1u16..48, 0u8..3), 1..300)) {
            agrees_with_a_model::<SockV6>(ops)?;
        }
    }
}
