//! The neighbour table: ARP for IPv4 next hops, neighbour discovery for IPv6.
//!
//! Resolves next hops (gateways, real servers, clients on connected networks) to
//! MAC addresses. One table type serves both families: [`NeighTable<F>`] (the
//! address type defaults to [`Ipv4Addr`]) and [`NeighTable6<F>`]; the probe
//! is an ARP request for IPv4 and a neighbour solicitation ([`nd::fill_probe`])
//! for IPv6. A packet whose next hop is not resolved yet is queued on the
//! entry (up to [`MAX_PENDING`] per neighbour, and [`NeighTable::set_max_held`]
//! in all, so that unresolved next hops cannot drain the mbuf pool) and sent as
//! soon as the answer arrives; a probe goes out at most once per [`RETRY_MS`].
//! Entries are refreshed after [`REFRESH_MS`] and forgotten after [`STALE_MS`]
//! without an answer. Each worker owns its tables (no locks); a worker learns
//! from the ARP and neighbour discovery traffic it receives.
//!
//! States, as RFC 4861 §7.3.2 names them: an entry without a MAC is
//! *incomplete* (frames wait on it); a resolved entry confirmed less than
//! [`REFRESH_MS`] ago is *reachable*; older, or learned without confirmation
//! (an unsolicited advertisement, a solicitation's source link-layer option),
//! it is *stale*: still used, but each use asks for a probe (at most once per
//! [`RETRY_MS`]) until an answer confirms it. After [`STALE_MS`] without a
//! confirmation it is no longer used. IPv6 updates follow RFC 4861 §7.2.5 as
//! Linux applies it for a host ([`NeighTable::learn_nd`]).

pub mod hops;
pub mod nd;

use std::fmt::Debug;
use std::hash::Hash;
use std::net::{Ipv4Addr, Ipv6Addr};

use hashbrown::HashMap;

use crate::wire::MacAddr;

/// Packets queued per unresolved neighbour.
pub const MAX_PENDING: usize = 64;
/// Packets queued on all neighbours together, unless set otherwise.
pub const DEFAULT_MAX_HELD: usize = 1024;
/// Minimum interval between probes (ARP requests, solicitations) for one neighbour.
pub const RETRY_MS: u64 = 1_000;
/// Queued packets are dropped when no answer came within this time.
pub const PENDING_TIMEOUT_MS: u64 = 3_000;
/// A resolved entry older than this is re-requested while still used.
pub const REFRESH_MS: u64 = 60_000;
/// A resolved entry not confirmed for this long is unusable.
pub const STALE_MS: u64 = 300_000;

/// A neighbour's network address: [`Ipv4Addr`] (resolved by ARP) or
/// [`Ipv6Addr`] (resolved by neighbour discovery).
pub trait NeighAddr: Copy + Eq + Hash + Debug {}

impl NeighAddr for Ipv4Addr {}
impl NeighAddr for Ipv6Addr {}

#[derive(Debug)]
struct Entry<F> {
    port: u16,
    mac: Option<MacAddr>,
    confirmed_ms: u64,
    /// Learned or changed without a confirmation: every use asks for a probe.
    unconfirmed: bool,
    requested_ms: Option<u64>,
    first_queued_ms: u64,
    pending: Vec<F>,
}

impl<F> Entry<F> {
    fn new(port: u16, now_ms: u64) -> Self {
        Entry {
            port,
            mac: None,
            confirmed_ms: now_ms,
            unconfirmed: false,
            requested_ms: None,
            first_queued_ms: now_ms,
            pending: Vec::new(),
        }
    }

    /// An entry unconfirmed for longer than [`STALE_MS`] is incomplete again.
    fn forget_expired(&mut self, now_ms: u64) {
        if now_ms.saturating_sub(self.confirmed_ms) > STALE_MS {
            self.mac = None;
        }
    }

    /// Reachable: resolved and confirmed less than [`REFRESH_MS`] ago.
    fn reachable(&self, now_ms: u64) -> bool {
        self.mac.is_some() && !self.unconfirmed && now_ms.saturating_sub(self.confirmed_ms) <= REFRESH_MS
    }
}

/// What [`NeighTable::resolve`] decided.
#[derive(Debug)]
pub enum Resolution<F> {
    /// Send now with this destination MAC. `refresh` asks for a probe (an ARP
    /// request, a unicast solicitation) to be sent too, to confirm an ageing
    /// or unconfirmed entry.
    Resolved {
        /// Destination MAC.
        mac: MacAddr,
        /// A probe should be sent to confirm the entry.
        refresh: bool,
        /// The frame, handed back.
        frame: F,
    },
    /// The frame was queued; `request` says whether to send a probe now.
    Queued {
        /// A probe should be sent now.
        request: bool,
    },
    /// The queue is full; the frame comes back to be dropped.
    QueueFull(F),
}

/// What a received neighbour discovery message tells about a neighbour (see
/// [`crate::local6::answer`]), applied by [`NeighTable::learn_nd`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NdUpdate {
    /// The neighbour: the source of a solicitation, the target of an advertisement.
    pub ip: Ipv6Addr,
    /// Its link-layer address: the solicitation's source or the advertisement's
    /// target link-layer option, if present.
    pub mac: Option<MacAddr>,
    /// Which message told it.
    pub source: NdSource,
}

/// The message an [`NdUpdate`] comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NdSource {
    /// A neighbour solicitation addressed to us (RFC 4861 §7.2.3): creates the
    /// entry, unconfirmed, or marks it unconfirmed when the MAC changed.
    Solicitation,
    /// A neighbour advertisement (RFC 4861 §7.2.5) with its flags.
    Advertisement {
        /// S: an answer to a solicitation (confirms reachability).
        solicited: bool,
        /// O: the advertised MAC overrides the cached one.
        override_flag: bool,
    },
}

/// What [`NeighTable::learn_nd`] did.
#[derive(Debug)]
pub struct NdLearned<F> {
    /// The neighbour's MAC after the update, if it has one.
    pub mac: Option<MacAddr>,
    /// True when the entry was created or its MAC changed (worth telling the
    /// other workers and the cached next hops).
    pub changed: bool,
    /// Frames that waited for this neighbour, to be sent now with `mac`.
    pub released: Vec<F>,
}

/// A worker's neighbour table, generic over the frame type it queues and the
/// address family (`A`: [`Ipv4Addr`] by default, [`Ipv6Addr`] for
/// [`NeighTable6`]).
#[derive(Debug)]
pub struct NeighTable<F, A: NeighAddr = Ipv4Addr> {
    entries: HashMap<A, Entry<F>>,
    /// Frames queued on all entries.
    held: usize,
    /// The bound on `held`.
    max_held: usize,
}

/// The IPv6 neighbour table (resolved by neighbour discovery).
pub type NeighTable6<F> = NeighTable<F, Ipv6Addr>;

impl<F, A: NeighAddr> Default for NeighTable<F, A> {
    fn default() -> Self {
        NeighTable { entries: HashMap::new(), held: 0, max_held: DEFAULT_MAX_HELD }
    }
}

impl<F, A: NeighAddr> NeighTable<F, A> {
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
    pub fn lookup(&self, ip: A, now_ms: u64) -> Option<MacAddr> {
        let e = self.entries.get(&ip)?;
        let mac = e.mac?;
        (now_ms.saturating_sub(e.confirmed_ms) <= STALE_MS).then_some(mac)
    }

    /// The MAC of `ip` and until when it needs no confirmation (after that,
    /// [`NeighTable::resolve`] asks for one), if resolved. An unconfirmed entry
    /// needs one already: its deadline is when it was learned.
    pub fn fresh(&self, ip: A) -> Option<(MacAddr, u64)> {
        let e = self.entries.get(&ip)?;
        let until = if e.unconfirmed { e.confirmed_ms } else { e.confirmed_ms.saturating_add(REFRESH_MS) };
        Some((e.mac?, until))
    }

    /// Resolves `ip` on `port` for `frame`: hands back the MAC, or queues the frame.
    pub fn resolve(&mut self, ip: A, port: u16, frame: F, now_ms: u64) -> Resolution<F> {
        let entry = self.entries.entry(ip).or_insert_with(|| Entry { confirmed_ms: 0, ..Entry::new(port, now_ms) });
        entry.port = port;
        if let Some(mac) = entry.mac {
            let age = now_ms.saturating_sub(entry.confirmed_ms);
            if age <= STALE_MS {
                let refresh = (entry.unconfirmed || age > REFRESH_MS) && retry_due(entry.requested_ms, now_ms);
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

    /// Records that `ip` is at `mac`, confirmed (from an ARP reply or request).
    /// Returns the frames that were waiting for it. `create` is false when the
    /// ARP packet was not addressed to us: then only known entries are updated,
    /// as Linux does.
    pub fn learn(&mut self, ip: A, mac: MacAddr, port: u16, now_ms: u64, create: bool) -> Vec<F> {
        if !create && !self.entries.contains_key(&ip) {
            return Vec::new();
        }
        let entry = self.entries.entry(ip).or_insert_with(|| Entry::new(port, now_ms));
        entry.mac = Some(mac);
        entry.port = port;
        entry.confirmed_ms = now_ms;
        entry.unconfirmed = false;
        entry.requested_ms = None;
        self.release(ip)
    }

    /// Takes the frames queued on `ip`.
    fn release(&mut self, ip: A) -> Vec<F> {
        let Some(entry) = self.entries.get_mut(&ip) else { return Vec::new() };
        let released = std::mem::take(&mut entry.pending);
        self.held = self.held.saturating_sub(released.len());
        released
    }

    /// Housekeeping: returns frames that waited too long (to be dropped) and the
    /// `(ip, port)` of neighbours that need another probe now.
    pub fn tick(&mut self, now_ms: u64, expired: &mut Vec<F>, requests: &mut Vec<(A, u16)>) {
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

impl<F> NeighTable<F, Ipv6Addr> {
    /// Applies what a neighbour discovery message received on `port` tells
    /// (RFC 4861 §7.2.3 and §7.2.5, as Linux applies them for a host):
    ///
    /// * a solicitation to us with a source link-layer option creates the
    ///   entry, unconfirmed, or updates its MAC (unconfirmed) when it changed;
    /// * an advertisement updates known entries only (Linux ignores untracked
    ///   ones): an incomplete entry takes the MAC (an advertisement without a
    ///   target link-layer option cannot complete it); a resolved one takes a
    ///   different MAC only with the O flag (without it, the entry is merely
    ///   marked unconfirmed); S confirms the entry, otherwise a changed MAC is
    ///   unconfirmed.
    ///
    /// Frames waiting on the entry are released once it has a MAC.
    pub fn learn_nd(&mut self, update: &NdUpdate, port: u16, now_ms: u64) -> NdLearned<F> {
        let nothing = |mac| NdLearned { mac, changed: false, released: Vec::new() };
        let ip = update.ip;
        let changed = match update.source {
            NdSource::Solicitation => {
                let Some(mac) = update.mac else { return nothing(self.lookup(ip, now_ms)) };
                let entry = self.entries.entry(ip).or_insert_with(|| Entry::new(port, now_ms));
                entry.forget_expired(now_ms);
                let changed = entry.mac != Some(mac);
                if changed {
                    entry.mac = Some(mac);
                    entry.port = port;
                    entry.confirmed_ms = now_ms;
                    entry.unconfirmed = true;
                }
                changed
            }
            NdSource::Advertisement { solicited, override_flag } => {
                let Some(entry) = self.entries.get_mut(&ip) else { return nothing(None) };
                entry.forget_expired(now_ms);
                match (entry.mac, update.mac) {
                    // Incomplete: an advertisement without the option tells nothing.
                    (None, None) => return nothing(None),
                    (None, Some(mac)) => {
                        entry.mac = Some(mac);
                        entry.port = port;
                        entry.confirmed_ms = now_ms;
                        entry.unconfirmed = !solicited;
                        if solicited {
                            entry.requested_ms = None;
                        }
                        true
                    }
                    // A different MAC without O: keep the cached one, but stop
                    // trusting it (a probe will tell).
                    (Some(old), Some(new)) if new != old && !override_flag => {
                        if entry.reachable(now_ms) {
                            entry.unconfirmed = true;
                        }
                        return nothing(Some(old));
                    }
                    (Some(old), new) => {
                        let changed = new.is_some_and(|m| m != old);
                        if let Some(m) = new {
                            entry.mac = Some(m);
                            entry.port = port;
                        }
                        if solicited {
                            entry.confirmed_ms = now_ms;
                            entry.unconfirmed = false;
                            entry.requested_ms = None;
                        } else if changed {
                            entry.confirmed_ms = now_ms;
                            entry.unconfirmed = true;
                        }
                        changed
                    }
                }
            }
        };
        let mac = self.entries.get(&ip).and_then(|e| e.mac);
        let released = if mac.is_some() { self.release(ip) } else { Vec::new() };
        NdLearned { mac, changed, released }
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

    const IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x11);
    const MAC2: MacAddr = MacAddr([2, 0, 0, 0, 0, 12]);

    fn advert(mac: Option<MacAddr>, solicited: bool, override_flag: bool) -> NdUpdate {
        NdUpdate { ip: IP6, mac, source: NdSource::Advertisement { solicited, override_flag } }
    }

    /// The IPv4 behaviour holds for IPv6 addresses: queueing, one probe per
    /// second, retries, expiry, and the per-entry and total bounds.
    #[test]
    fn ipv6_entries_queue_and_are_bounded() {
        let mut t: NeighTable6<u32> = NeighTable6::new();
        for i in 0..MAX_PENDING as u32 {
            let r = t.resolve(IP6, 2, i, 0);
            assert!(matches!(r, Resolution::Queued { request } if request == (i == 0)));
        }
        assert!(matches!(t.resolve(IP6, 2, 99, 0), Resolution::QueueFull(99)));
        let (mut expired, mut req) = (Vec::new(), Vec::new());
        t.tick(RETRY_MS, &mut expired, &mut req);
        assert_eq!(req, vec![(IP6, 2)]);
        t.tick(PENDING_TIMEOUT_MS + 1, &mut expired, &mut req);
        assert_eq!((expired.len(), t.held()), (MAX_PENDING, 0));

        let mut t: NeighTable6<u32> = NeighTable6::new();
        t.set_max_held(10);
        let queued = (0..8u16)
            .flat_map(|i| (0..3).map(move |f| (i, f)))
            .filter(|&(i, f)| {
                let ip = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i);
                matches!(t.resolve(ip, 0, f, 0), Resolution::Queued { .. })
            })
            .count();
        assert_eq!((queued, t.held()), (10, 10));
        let l = t.learn_nd(&NdUpdate { ip: Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), ..advert(Some(MAC), true, false) }, 0, 1);
        assert_eq!((l.released, t.held()), (vec![0, 1, 2], 7));
    }

    #[test]
    fn ipv6_incomplete_entry_needs_the_target_option() {
        let mut t: NeighTable6<u8> = NeighTable6::new();
        t.resolve(IP6, 0, 1, 0);
        let l = t.learn_nd(&advert(None, true, true), 0, 5);
        assert_eq!((l.mac, l.changed, l.released.len(), t.held()), (None, false, 0, 1));
        // Unsolicited, without O: an incomplete entry still takes the MAC, unconfirmed.
        let l = t.learn_nd(&advert(Some(MAC), false, false), 0, 6);
        assert_eq!((l.mac, l.changed, l.released), (Some(MAC), true, vec![1]));
        assert_eq!(t.fresh(IP6), Some((MAC, 6)));
    }

    #[test]
    fn ipv6_override_rules() {
        let mut t: NeighTable6<u8> = NeighTable6::new();
        t.resolve(IP6, 0, 1, 0);
        t.learn_nd(&advert(Some(MAC), true, false), 0, 10);
        assert_eq!(t.fresh(IP6), Some((MAC, 10 + REFRESH_MS)));
        // Without O, another MAC does not replace the cached one.
        let l = t.learn_nd(&advert(Some(MAC2), false, false), 0, 20);
        assert_eq!((l.mac, l.changed), (Some(MAC), false));
        assert_eq!(t.lookup(IP6, 20), Some(MAC));
        assert_eq!(t.fresh(IP6), Some((MAC, 10)), "but it is no longer trusted");
        // A solicited answer without the option confirms the cached MAC.
        let l = t.learn_nd(&advert(None, true, false), 0, 30);
        assert_eq!((l.mac, l.changed), (Some(MAC), false));
        assert_eq!(t.fresh(IP6), Some((MAC, 30 + REFRESH_MS)));
        // With O, it does (here solicited: confirmed at once).
        let l = t.learn_nd(&advert(Some(MAC2), true, true), 0, 40);
        assert_eq!((l.mac, l.changed), (Some(MAC2), true));
        assert_eq!(t.fresh(IP6), Some((MAC2, 40 + REFRESH_MS)));
        // An entry past STALE_MS is incomplete again: the option completes it.
        let later = 40 + STALE_MS + 1;
        assert_eq!(t.lookup(IP6, later), None);
        let l = t.learn_nd(&advert(Some(MAC), false, false), 0, later);
        assert_eq!((l.mac, l.changed), (Some(MAC), true));
        assert_eq!(t.lookup(IP6, later), Some(MAC));
    }

    #[test]
    fn ipv6_solicitations_create_unconfirmed_entries() {
        let mut t: NeighTable6<u8> = NeighTable6::new();
        let ns = NdUpdate { ip: IP6, mac: Some(MAC), source: NdSource::Solicitation };
        assert!(t.learn_nd(&NdUpdate { mac: None, ..ns }, 0, 0).mac.is_none() && t.is_empty());
        assert!(t.learn_nd(&ns, 3, 0).changed);
        assert!(matches!(t.resolve(IP6, 3, 1, 1), Resolution::Resolved { mac: MAC, refresh: true, .. }));
        assert!(matches!(t.resolve(IP6, 3, 1, 2), Resolution::Resolved { refresh: false, .. }), "one probe per second");
        // A new MAC in a later solicitation replaces the old one.
        let l = t.learn_nd(&NdUpdate { mac: Some(MAC2), ..ns }, 3, 5);
        assert_eq!((l.mac, l.changed), (Some(MAC2), true));
        // ARP-style learning on the IPv4 table is unchanged by all this.
        let mut v4: NeighTable<u8> = NeighTable::new();
        v4.learn(IP, MAC, 0, 0, true);
        assert_eq!(v4.fresh(IP), Some((MAC, REFRESH_MS)));
    }
}
