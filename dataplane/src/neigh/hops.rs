//! Next hops cached for connections (DPVS keeps the route and the neighbour
//! on the connection; so does rvs, by a one-byte index).
//!
//! A worker keeps a small table of resolved next hops: egress port, source and
//! destination MAC, VLAN tag, MTU, and until when the neighbour entry is
//! fresh. A connection remembers the index of the hop its replies take
//! ([`crate::conn::Conn::reply_hop`]); the hop towards a real server is
//! remembered per real server. A packet whose hop is cached and fresh is sent
//! without a route lookup or a neighbour lookup.
//!
//! Indices stay valid for one snapshot: the table is emptied when the worker
//! adopts a new one (routes, ports and MTUs may have changed), and a
//! connection's index is reset when it moves to the new snapshot. Within a
//! snapshot an index never changes meaning: entries are added, updated in
//! place when ARP tells a new MAC or confirms the old one, never removed.
//! When the table is full, further hops are not cached (those packets take
//! the full lookup). A hop past its freshness takes the full lookup too,
//! which asks ARP to confirm the neighbour, as without the cache.

use std::net::Ipv4Addr;

use hashbrown::HashMap;

use crate::wire::MacAddr;

/// No cached hop.
pub const NONE: u8 = u8::MAX;
/// Hops a table holds (indices `0..CAPACITY`; [`NONE`] is not one).
pub const CAPACITY: usize = NONE as usize;

/// A resolved next hop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hop {
    /// The neighbour frames are sent to (a gateway, or the destination on link).
    pub target: Ipv4Addr,
    /// Egress port.
    pub port: u16,
    /// The port's MAC.
    pub src_mac: MacAddr,
    /// The neighbour's MAC.
    pub dst_mac: MacAddr,
    /// The port's 802.1Q tag.
    pub vlan: Option<u16>,
    /// The port's MTU: larger packets take the full path (fragmentation).
    pub mtu: u16,
    /// Until when the neighbour entry needs no confirmation, in ms.
    pub fresh_until_ms: u64,
}

/// A worker's cached next hops.
#[derive(Debug, Default)]
pub struct NextHops {
    hops: Vec<Hop>,
    by_target: HashMap<(Ipv4Addr, u16), u8>,
}

impl NextHops {
    /// An empty table, allocated up front.
    pub fn new() -> Self {
        NextHops { hops: Vec::with_capacity(CAPACITY), by_target: HashMap::with_capacity(CAPACITY) }
    }

    /// Forgets every hop (a new snapshot).
    pub fn clear(&mut self) {
        self.hops.clear();
        self.by_target.clear();
    }

    /// Hops cached.
    pub fn len(&self) -> usize {
        self.hops.len()
    }

    /// True when no hop is cached.
    pub fn is_empty(&self) -> bool {
        self.hops.is_empty()
    }

    /// The hop at `index` while it is fresh at `now_ms`.
    #[inline]
    pub fn get(&self, index: u8, now_ms: u64) -> Option<&Hop> {
        self.hops.get(usize::from(index)).filter(|h| now_ms < h.fresh_until_ms)
    }

    /// The MTU of the hop at `index`, fresh or not (it holds for the snapshot).
    #[inline]
    pub fn mtu(&self, index: u8) -> Option<u16> {
        self.hops.get(usize::from(index)).map(|h| h.mtu)
    }

    /// Caches `hop` (updating the entry of its target and port if there is
    /// one) and returns its index, or [`NONE`] when the table is full.
    pub fn intern(&mut self, hop: Hop) -> u8 {
        if let Some(&i) = self.by_target.get(&(hop.target, hop.port)) {
            if let Some(h) = self.hops.get_mut(usize::from(i)) {
                *h = hop;
            }
            return i;
        }
        if self.hops.len() >= CAPACITY {
            return NONE;
        }
        let i = self.hops.len() as u8;
        self.hops.push(hop);
        self.by_target.insert((hop.target, hop.port), i);
        i
    }

    /// ARP told that `ip` is at `mac` (new or confirmed), fresh until
    /// `fresh_until_ms`: every hop to `ip` follows.
    pub fn learned(&mut self, ip: Ipv4Addr, mac: MacAddr, fresh_until_ms: u64) {
        for h in self.hops.iter_mut().filter(|h| h.target == ip) {
            h.dst_mac = mac;
            h.fresh_until_ms = fresh_until_ms;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hop(last: u8, port: u16, until: u64) -> Hop {
        Hop {
            target: Ipv4Addr::new(10, 0, 0, last),
            port,
            src_mac: MacAddr([2, 0, 0, 0, 0, 1]),
            dst_mac: MacAddr([2, 0, 0, 0, 0, last]),
            vlan: None,
            mtu: 1500,
            fresh_until_ms: until,
        }
    }

    #[test]
    fn indices_are_stable_and_entries_follow_arp() {
        let mut t = NextHops::new();
        let a = t.intern(hop(1, 0, 100));
        let b = t.intern(hop(2, 0, 100));
        let c = t.intern(hop(1, 1, 100));
        assert_eq!((a, b, c), (0, 1, 2), "one entry per target and port");
        assert_eq!(t.intern(hop(1, 0, 200)), a, "the same target and port keep their index");
        assert_eq!(t.get(a, 150).map(|h| h.fresh_until_ms), Some(200));
        assert!(t.get(b, 100).is_none(), "not fresh at its deadline");
        assert!(t.get(NONE, 0).is_none());
        let moved = MacAddr([2, 9, 9, 9, 9, 9]);
        t.learned(Ipv4Addr::new(10, 0, 0, 1), moved, 500);
        assert_eq!(t.get(a, 400).map(|h| h.dst_mac), Some(moved));
        assert_eq!(t.get(c, 400).map(|h| h.dst_mac), Some(moved), "on every port");
        assert_eq!(t.get(b, 50).map(|h| h.dst_mac), Some(MacAddr([2, 0, 0, 0, 0, 2])));
        t.clear();
        assert!(t.is_empty() && t.get(a, 0).is_none());
    }

    #[test]
    fn a_full_table_caches_nothing_more() {
        let mut t = NextHops::new();
        for i in 0..CAPACITY {
            let ip = Ipv4Addr::from(0x0a00_0000 + i as u32);
            assert_eq!(usize::from(t.intern(Hop { target: ip, ..hop(0, 0, 1) })), i);
        }
        assert_eq!(t.intern(hop(0, 7, 1)), NONE);
        assert_eq!(t.len(), CAPACITY);
    }
}
