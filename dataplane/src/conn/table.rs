//! The connection table: a slab of [`Conn`] entries indexed by flow keys.

use hashbrown::HashMap;

use super::{Conn, FlowKey};

/// Index of a connection in its table's slab.
pub type ConnId = u32;

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
/// Lookups are one hash probe. Expiry is lazy (an expired entry found by a lookup
/// is removed then) plus an incremental sweep: [`ConnTable::expire`] checks a
/// bounded number of slots per call, so the poll loop never stalls on a big scan.
#[derive(Debug)]
pub struct ConnTable {
    index: HashMap<FlowKey, (ConnId, Direction)>,
    slots: Vec<Option<Conn>>,
    free: Vec<ConnId>,
    sweep_cursor: usize,
    len: usize,
}

impl ConnTable {
    /// A table for at most `capacity` connections, allocated up front.
    pub fn with_capacity(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        ConnTable {
            index: HashMap::with_capacity(capacity * 2),
            slots: Vec::with_capacity(capacity),
            free: Vec::with_capacity(capacity),
            sweep_cursor: 0,
            len: 0,
        }
    }

    /// Maximum number of connections.
    pub fn capacity(&self) -> usize {
        self.slots.capacity()
    }

    /// Connections in the table.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds a connection under its inbound key (and reply key for NAT and
    /// FULLNAT). An existing entry under either key is replaced and pushed to
    /// `displaced`, so the caller can release what it held.
    pub fn insert(&mut self, conn: Conn, displaced: &mut Vec<Conn>) -> Result<ConnId, TableFull> {
        if let Some((old, _)) = self.index.get(&conn.inbound_key()).copied() {
            displaced.extend(self.remove(old));
        }
        if let Some(rk) = conn.reply_key() {
            if let Some((old, _)) = self.index.get(&rk).copied() {
                displaced.extend(self.remove(old));
            }
        }
        let id = if let Some(id) = self.free.pop() {
            self.slots[id as usize] = Some(conn);
            id
        } else if self.slots.len() < self.slots.capacity() {
            self.slots.push(Some(conn));
            (self.slots.len() - 1) as ConnId
        } else {
            return Err(TableFull(self.capacity()));
        };
        self.index.insert(conn.inbound_key(), (id, Direction::Inbound));
        if let Some(rk) = conn.reply_key() {
            self.index.insert(rk, (id, Direction::Reply));
        }
        self.len += 1;
        Ok(id)
    }

    /// Finds the live connection a packet with `key` belongs to. An expired
    /// entry is not returned (the sweep, or a replacing insert, removes it).
    pub fn lookup(&self, key: &FlowKey, now_ms: u64) -> Option<(ConnId, Direction)> {
        let (id, dir) = *self.index.get(key)?;
        let expired = self.slots.get(id as usize)?.as_ref()?.is_expired(now_ms);
        (!expired).then_some((id, dir))
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
        let conn = self.slots.get_mut(id as usize)?.take()?;
        self.index.remove(&conn.inbound_key());
        if let Some(rk) = conn.reply_key() {
            self.index.remove(&rk);
        }
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
            if self.slots[id as usize].is_some_and(|c| c.is_expired(now_ms)) {
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
            local: None,
            real_index: 0,
            service_index: 0,
            generation: 0,
            synced_ms: 0,
            forward,
            state: TcpState::SynRecv,
            last_seen_ms: now,
            timeout_ms: 60_000,
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
        assert_eq!((c.state, c.timeout_ms, c.last_seen_ms), (TcpState::Established, 900_000, 10));
        c.on_tcp_packet(TcpFlags { fin: true, ack: true, ..TcpFlags::default() }, Direction::Reply, &timeouts, 20);
        assert_eq!((c.state, c.timeout_ms), (TcpState::FinWait, 120_000));
        assert!(!c.reusable_by_syn(), "NAT FIN_WAIT is not reused (conn_reuse_mode 1)");
        c.on_tcp_packet(TcpFlags { rst: true, ..TcpFlags::default() }, Direction::Reply, &timeouts, 30);
        assert_eq!((c.state, c.timeout_ms), (TcpState::Close, 10_000));
        assert!(c.reusable_by_syn());
    }
}
