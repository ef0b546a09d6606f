//! The ARP neighbour table.
//!
//! Resolves next hops (gateways, real servers, clients on connected networks) to
//! MAC addresses. A packet whose next hop is not resolved yet is queued on the
//! entry (up to [`MAX_PENDING`] per neighbour, and [`NeighTable::set_max_held`]
//! in all, so that unresolved next hops cannot drain the mbuf pool) and sent as
//! soon as the ARP reply
//! arrives; an ARP request goes out at most once per [`RETRY_MS`]. Entries are
//! refreshed after [`REFRESH_MS`] and forgotten after [`STALE_MS`] without an
//! answer. Each worker owns its table (no locks); a worker learns from the ARP
//! traffic it receives.

pub mod hops;

use std::net::Ipv4Addr;

use hashbrown::HashMap;

use crate::wire::MacAddr;

/// Packets queued per unresolved neighbour.
pub const MAX_PENDING: usize = 64;
/// Packets queued on all neighbours together, unless set otherwise.
pub const DEFAULT_MAX_HELD: usize = 1024;
/// Minimum interval between ARP requests for one neighbour.
pub const RETRY_MS: u64 = 1_000;
/// Queued packets are dropped when no answer came within this time.
pub const PENDING_TIMEOUT_MS: u64 = 3_000;
/// A resolved entry older than this is re-requested while still used.
pub const REFRESH_MS: u64 = 60_000;
/// A resolved entry not confirmed for this long is unusable.
pub const STALE_MS: u64 = 300_000;

#[derive(Debug)]
struct Entry<F> {
    port: u16,
    mac: Option<MacAddr>,
    confirmed_ms: u64,
    requested_ms: Option<u64>,
    first_queued_ms: u64,
    pending: Vec<F>,
}

/// What [`NeighTable::resolve`] decided.
#[derive(Debug)]
pub enum Resolution<F> {
    /// Send now with this destination MAC. `refresh` asks for an ARP request to
    /// be sent too, to confirm an ageing entry.
    Resolved {
        /// Destination MAC.
        mac: MacAddr,
        /// An ARP request should be sent to confirm the entry.
        refresh: bool,
        /// The frame, handed back.
        frame: F,
    },
    /// The frame was queued; `request` says whether to send an ARP request now.
    Queued {
        /// An ARP request should be sent now.
        request: bool,
    },
    /// The queue is full; the frame comes back to be dropped.
    QueueFull(F),
}

/// A worker's neighbour table, generic over the frame type it queues.
#[derive(Debug)]
pub struct NeighTable<F> {
    entries: HashMap<Ipv4Addr, Entry<F>>,
    /// Frames queued on all entries.
    held: usize,
    /// The bound on `held`.
    max_held: usize,
}

impl<F> Default for NeighTable<F> {
    fn default() -> Self {
        NeighTable { entries: HashMap::new(), held: 0, max_held: DEFAULT_MAX_HELD }
    }
}

impl<F> NeighTable<F> {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bounds the frames queued on all neighbours together (frames already
    /// queued stay; new ones are refused while the total is at the bound).
    pub fn set_max_held(&mut self, max_held: usize) {
        self.max_held = max_held;
    }

    /// Frames queued on all neighbours.
    pub fn held(&self) -> usize {
        self.held
    }

    /// The MAC of `ip` if resolved and not stale.
    pub fn lookup(&self, ip: Ipv4Addr, now_ms: u64) -> Option<MacAddr> {
        let e = self.entries.get(&ip)?;
        let mac = e.mac?;
        (now_ms.saturating_sub(e.confirmed_ms) <= STALE_MS).then_some(mac)
    }

    /// The MAC of `ip` and until when it needs no confirmation (after that,
    /// [`NeighTable::resolve`] asks for one), if resolved.
    pub fn fresh(&self, ip: Ipv4Addr) -> Option<(MacAddr, u64)> {
        let e = self.entries.get(&ip)?;
        Some((e.mac?, e.confirmed_ms.saturating_add(REFRESH_MS)))
    }

    /// Resolves `ip` on `port` for `frame`: hands back the MAC, or queues the frame.
    pub fn resolve(&mut self, ip: Ipv4Addr, port: u16, frame: F, now_ms: u64) -> Resolution<F> {
        let entry = self.entries.entry(ip).or_insert_with(|| Entry {
            port,
            mac: None,
            confirmed_ms: 0,
            requested_ms: None,
            first_queued_ms: now_ms,
            pending: Vec::new(),
        });
        entry.port = port;
        if let Some(mac) = entry.mac {
            let age = now_ms.saturating_sub(entry.confirmed_ms);
            if age <= STALE_MS {
                let refresh = age > REFRESH_MS && retry_due(entry.requested_ms, now_ms);
                if refresh {
                    entry.requested_ms = Some(now_ms);
                }
                return Resolution::Resolved { mac, refresh, frame };
            }
            entry.mac = None;
        }
        if entry.pending.len() >= MAX_PENDING || self.held >= self.max_held {
            return Resolution::QueueFull(frame);
        }
        if entry.pending.is_empty() {
            entry.first_queued_ms = now_ms;
        }
        entry.pending.push(frame);
        self.held += 1;
        let request = retry_due(entry.requested_ms, now_ms);
        if request {
            entry.requested_ms = Some(now_ms);
        }
        Resolution::Queued { request }
    }

    /// Records that `ip` is at `mac` (from an ARP reply or request). Returns the
    /// port and the frames that were waiting for it. `create` is false when the
    /// ARP packet was not addressed to us: then only known entries are updated,
    /// as Linux does.
    pub fn learn(&mut self, ip: Ipv4Addr, mac: MacAddr, port: u16, now_ms: u64, create: bool) -> Vec<F> {
        if !create && !self.entries.contains_key(&ip) {
            return Vec::new();
        }
        let entry = self.entries.entry(ip).or_insert_with(|| Entry {
            port,
            mac: None,
            confirmed_ms: now_ms,
            requested_ms: None,
            first_queued_ms: now_ms,
            pending: Vec::new(),
        });
        entry.mac = Some(mac);
        entry.port = port;
        entry.confirmed_ms = now_ms;
        entry.requested_ms = None;
        let released = std::mem::take(&mut entry.pending);
        self.held = self.held.saturating_sub(released.len());
        released
    }

    /// Housekeeping: returns frames that waited too long (to be dropped) and the
    /// `(ip, port)` of neighbours that need another ARP request now.
    pub fn tick(&mut self, now_ms: u64, expired: &mut Vec<F>, requests: &mut Vec<(Ipv4Addr, u16)>) {
        let before = expired.len();
        self.entries.retain(|ip, e| {
            if !e.pending.is_empty() {
                if now_ms.saturating_sub(e.first_queued_ms) > PENDING_TIMEOUT_MS {
                    expired.append(&mut e.pending);
                } else if retry_due(e.requested_ms, now_ms) {
                    e.requested_ms = Some(now_ms);
                    requests.push((*ip, e.port));
                }
            }
            // Forget entries that are stale and have nothing waiting.
            let stale = e.mac.is_none_or(|_| now_ms.saturating_sub(e.confirmed_ms) > STALE_MS);
            !(stale && e.pending.is_empty() && now_ms.saturating_sub(e.first_queued_ms) > PENDING_TIMEOUT_MS)
        });
        self.held = self.held.saturating_sub(expired.len() - before);
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn retry_due(last: Option<u64>, now_ms: u64) -> bool {
    last.is_none_or(|t| now_ms.saturating_sub(t) >= RETRY_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 11);
    const MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 11]);

    #[test]
    fn queues_until_resolved_then_releases_in_order() {
        let mut t: NeighTable<u32> = NeighTable::new();
        let r = t.resolve(IP, 0, 1, 0);
        assert!(matches!(r, Resolution::Queued { request: true }));
        let r = t.resolve(IP, 0, 2, 10);
        assert!(matches!(r, Resolution::Queued { request: false }), "one request per second");
        assert_eq!(t.learn(IP, MAC, 0, 20, false), vec![1, 2]);
        let r = t.resolve(IP, 0, 3, 30);
        assert!(matches!(r, Resolution::Resolved { mac: MAC, refresh: false, frame: 3 }));
    }

    #[test]
    fn queue_is_bounded() {
        let mut t: NeighTable<usize> = NeighTable::new();
        for i in 0..MAX_PENDING {
            assert!(matches!(t.resolve(IP, 0, i, 0), Resolution::Queued { .. }));
        }
        assert!(matches!(t.resolve(IP, 0, 99, 0), Resolution::QueueFull(99)));
    }

    #[test]
    fn unanswered_requests_are_retried_then_given_up() {
        let mut t: NeighTable<u8> = NeighTable::new();
        t.resolve(IP, 1, 7, 0);
        let (mut expired, mut req) = (Vec::new(), Vec::new());
        t.tick(500, &mut expired, &mut req);
        assert!(req.is_empty());
        t.tick(1_000, &mut expired, &mut req);
        assert_eq!(req, vec![(IP, 1)]);
        t.tick(3_001, &mut expired, &mut req);
        assert_eq!(expired, vec![7]);
    }

    #[test]
    fn unsolicited_arp_only_updates_known_entries() {
        let mut t: NeighTable<u8> = NeighTable::new();
        t.learn(IP, MAC, 0, 0, false);
        assert_eq!(t.lookup(IP, 0), None);
        t.learn(IP, MAC, 0, 0, true);
        assert_eq!(t.lookup(IP, 0), Some(MAC));
        let other = MacAddr([2, 0, 0, 0, 0, 99]);
        t.learn(IP, other, 0, 5, false);
        assert_eq!(t.lookup(IP, 5), Some(other));
        assert_eq!(t.lookup(IP, 5 + STALE_MS + 1), None);
    }

    #[test]
    fn ageing_entries_ask_for_refresh() {
        let mut t: NeighTable<u8> = NeighTable::new();
        t.learn(IP, MAC, 0, 0, true);
        let r = t.resolve(IP, 0, 1, REFRESH_MS + 1);
        assert!(matches!(r, Resolution::Resolved { refresh: true, .. }));
        let r = t.resolve(IP, 0, 1, REFRESH_MS + 2);
        assert!(matches!(r, Resolution::Resolved { refresh: false, .. }));
    }

    #[test]
    fn the_total_held_for_arp_is_bounded() {
        let mut t: NeighTable<u32> = NeighTable::new();
        t.set_max_held(100);
        let mut queued = 0;
        // Many unresolved next hops (spoofed clients on a connected network).
        for i in 0..50u32 {
            let ip = Ipv4Addr::from(0x0a00_0000 + i);
            for f in 0..4 {
                match t.resolve(ip, 0, f, 0) {
                    Resolution::Queued { .. } => queued += 1,
                    Resolution::QueueFull(_) => {}
                    Resolution::Resolved { .. } => panic!("nothing is resolved"),
                }
            }
        }
        assert_eq!((queued, t.held()), (100, 100));
        // An answer releases its frames and makes room.
        let released = t.learn(Ipv4Addr::from(0x0a00_0000), MAC, 0, 1, true);
        assert_eq!((released.len(), t.held()), (4, 96));
        assert!(matches!(t.resolve(Ipv4Addr::from(0x0a00_0063), 0, 9, 1), Resolution::Queued { .. }));
        // Expiry releases the rest.
        let (mut expired, mut requests) = (Vec::new(), Vec::new());
        t.tick(PENDING_TIMEOUT_MS + 10, &mut expired, &mut requests);
        assert_eq!((expired.len(), t.held()), (97, 0));
    }
}
