//! Egress: route, neighbour resolution (queueing while ARP is outstanding), VLAN tag and MACs, then the tx list.

use super::*;

/// Where the cached next hop of a connection's packet is remembered.
#[derive(Clone, Copy, Debug)]
pub(super) enum HopCache {
    /// Nowhere (packets that are not a connection's, ICMP errors).
    None,
    /// Towards a real server: per service and real server (indices in the snapshot).
    Real {
        /// Service index.
        service: u16,
        /// Real server index.
        real: u16,
    },
    /// A connection's reply: on the connection.
    Reply {
        /// The connection.
        id: ConnId,
        /// Its cached hop as read with it.
        index: u8,
    },
}

/// What is cached per service and real server: the index of the next hop
/// towards it, and the route facts its TUN packets need.
#[derive(Clone, Copy, Debug)]
pub(super) struct RealHop {
    /// Index into the worker's next hops ([`hops::NONE`] if none).
    pub(super) hop: u8,
    /// The tunnel path towards the real server, once looked up.
    pub(super) tunnel: Option<TunnelPath>,
}

impl RealHop {
    /// Nothing cached yet.
    pub(super) const NONE: RealHop = RealHop { hop: hops::NONE, tunnel: None };
}

/// What TUN needs to encapsulate towards a real server, from the snapshot's
/// routes, ports and addresses (so it holds for the whole snapshot).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct TunnelPath {
    /// The real server it was looked up for.
    pub(super) real: Ipv4Addr,
    /// Our address the outer header comes from.
    pub(super) src: Ipv4Addr,
    /// The egress port's MTU (1500 when the port is unknown).
    pub(super) mtu: u16,
}

impl<F: Frame> Processor<F> {
    /// The index of the hop cached for `cache` ([`hops::NONE`] if none).
    /// Always inlined: a few loads on every forwarded packet, less than a call.
    #[inline(always)]
    pub(super) fn cached_hop_index(&self, cache: HopCache) -> u8 {
        match cache {
            HopCache::None => hops::NONE,
            HopCache::Real { service, real } => self.real_hop(service, real).map_or(hops::NONE, |r| r.hop),
            HopCache::Reply { index, .. } => index,
        }
    }

    /// What is cached towards real server `real` of service `service`.
    #[inline(always)]
    fn real_hop(&self, service: u16, real: u16) -> Option<&RealHop> {
        self.real_hops.get(usize::from(service)).and_then(|r| r.get(usize::from(real)))
    }

    /// The tunnel path towards `real` (TUN): the one cached for `cache` when
    /// it was looked up for this address, else from the snapshot's routes
    /// (cached for `cache`). None: no route or no source address. With it,
    /// the index of the hop cached for `cache` (as [`Processor::cached_hop_index`]
    /// gives it), read from the same entry.
    #[inline]
    pub(super) fn tunnel_path(&mut self, real: Ipv4Addr, cache: HopCache) -> Option<(TunnelPath, u8)> {
        let (service, index) = match cache {
            HopCache::Real { service, real: index } => (service, index),
            HopCache::None | HopCache::Reply { .. } => {
                let path = self.lookup_tunnel_path(real)?;
                return Some((path, self.cached_hop_index(cache)));
            }
        };
        let cached = self.real_hop(service, index).copied();
        let hop = cached.map_or(hops::NONE, |r| r.hop);
        if let Some(path) = cached.and_then(|r| r.tunnel).filter(|p| p.real == real) {
            return Some((path, hop));
        }
        let path = self.lookup_tunnel_path(real)?;
        if let Some(entry) = self.real_hops.get_mut(usize::from(service)).and_then(|v| v.get_mut(usize::from(index))) {
            entry.tunnel = Some(path);
        }
        Some((path, hop))
    }

    /// [`Processor::tunnel_path`] from the snapshot: the route towards
    /// `real`, its port's MTU and our source address on that port.
    #[inline(never)]
    pub(super) fn lookup_tunnel_path(&self, real: Ipv4Addr) -> Option<TunnelPath> {
        let route = self.snapshot.route(real)?;
        let mtu = self.snapshot.ports.get(usize::from(route.port)).map_or(1500, |p| p.mtu);
        let src = self.snapshot.source_addr_for(route.port, real)?;
        Some(TunnelPath { real, src, mtu })
    }

    /// Sends a connection's rewritten frame towards `hop`: straight out
    /// through the next hop cached for it (`index`, the answer of
    /// [`Processor::cached_hop_index`] for `cache`) when that is fresh and the
    /// frame fits its MTU, else by [`Processor::send`], caching the hop it
    /// resolved. Both ways send the same bytes out of the same port.
    /// Inlined into its few callers: the call's register saves and argument
    /// moves cost as much as the fast case's checks.
    #[inline(always)]
    pub(super) fn send_through_hop(&mut self, mut frame: F, index: u8, hop: NextHop, cache: HopCache, now_ms: u64, out: &mut Output<F>) {
        if let Some(h) = self.hops.get(index, now_ms) {
            // The hop is read in place (not copied): only its port outlives the borrow.
            let port = h.port;
            if let Some(len) = untagged_onto_hop(frame.data_mut(), h) {
                return self.push_tx_len(port, frame, len, out);
            }
            match onto_hop(&mut frame, h) {
                OntoHop::Done => return self.push_tx(port, frame, out),
                OntoHop::NoRoom => return self.drop(frame, Counter::DropNoRoom, out),
                OntoHop::Unfit => {}
            }
        }
        self.send_and_remember(frame, hop, cache, now_ms, out);
    }

    /// [`Processor::send_through_hop`]'s full path: [`Processor::send`], then
    /// cache the hop it resolved (kept out of line, so the fast path stays small).
    #[inline(never)]
    fn send_and_remember(&mut self, frame: F, hop: NextHop, cache: HopCache, now_ms: u64, out: &mut Output<F>) {
        self.send(frame, hop, now_ms, out);
        self.remember_hop(hop, cache, now_ms);
    }

    /// Caches the next hop `hop` resolves to now, if its neighbour is
    /// resolved and fresh, where `cache` says.
    fn remember_hop(&mut self, hop: NextHop, cache: HopCache, now_ms: u64) {
        if matches!(cache, HopCache::None) {
            return;
        }
        let Some((target, port)) = self.egress_of(hop) else { return };
        let Some(p) = self.snapshot.ports.get(usize::from(port)) else { return };
        let Some((dst_mac, fresh_until_ms)) = self.neigh.fresh(target).filter(|&(_, until)| now_ms < until) else { return };
        let index = self.hops.intern(Hop { target, port, src_mac: p.mac, dst_mac, vlan: p.vlan, mtu: p.mtu, fresh_until_ms });
        match cache {
            HopCache::None => {}
            HopCache::Real { service, real } => {
                if let Some(slot) = self.real_hops.get_mut(usize::from(service)).and_then(|r| r.get_mut(usize::from(real))) {
                    slot.hop = index;
                }
            }
            HopCache::Reply { id, .. } => {
                if let Some(c) = self.conns.get_mut(id) {
                    c.reply_hop = index;
                }
            }
        }
    }

    /// Gives a frame the kernel sent through port `port`'s exception path
    /// the port's 802.1Q tag, if it has one. False when the frame has no
    /// headroom for the tag (the caller drops it).
    pub fn tag_for_port(&self, port: u16, frame: &mut F) -> bool {
        match self.snapshot.ports.get(usize::from(port)).and_then(|p| p.vlan) {
            Some(vlan) => set_vlan(frame, Some(vlan)),
            None => true,
        }
    }

    /// The neighbour and port `hop` is reached through, by the routing table
    /// (None: no route, or an on-link hop whose route has a gateway).
    fn egress_of(&self, hop: NextHop) -> Option<(Ipv4Addr, u16)> {
        match hop {
            NextHop::Routed(addr) => self.snapshot.route(addr).map(|r| (r.via.unwrap_or(addr), r.port)),
            NextHop::OnLink(addr) => self.snapshot.route(addr).filter(|r| r.via.is_none()).map(|r| (addr, r.port)),
        }
    }

    /// Sends a rewritten frame towards `hop`: route, resolve the MAC, tx or queue.
    pub(super) fn send(&mut self, frame: F, hop: NextHop, now_ms: u64, out: &mut Output<F>) {
        let Some((target, port)) = self.egress_of(hop) else {
            return self.drop(frame, Counter::DropNoRoute, out);
        };
        let Some((port_mac, mtu, vlan)) = self.snapshot.ports.get(usize::from(port)).map(|p| (p.mac, p.mtu, p.vlan)) else {
            return self.drop(frame, Counter::DropNoRoute, out);
        };
        let mut frame = frame;
        let mut more = std::mem::take(&mut self.fragments);
        match frag::fit_to_mtu(&mut frame, usize::from(mtu), &mut more) {
            Ok(extra) => self.counters.add(Counter::FragOut, extra as u64),
            Err(why) => {
                out.drop.append(&mut more);
                self.fragments = more;
                let reason = if why == FitError::DontFragment { Counter::DropTooBig } else { Counter::DropNoRoom };
                return self.drop(frame, reason, out);
            }
        }
        self.resolve_and_push(frame, target, (port, port_mac, vlan), now_ms, out);
        for f in more.drain(..) {
            self.resolve_and_push(f, target, (port, port_mac, vlan), now_ms, out);
        }
        self.fragments = more;
    }

    /// Sends `frame` out of `egress` (port, its MAC, its VLAN) to `target`'s
    /// MAC, or queues it until ARP resolves `target`.
    pub(super) fn resolve_and_push(
        &mut self,
        frame: F,
        target: Ipv4Addr,
        egress: (u16, MacAddr, Option<u16>),
        now_ms: u64,
        out: &mut Output<F>,
    ) {
        let (port, port_mac, vlan) = egress;
        match self.neigh.resolve(target, port, frame, now_ms) {
            Resolution::Resolved { mac, refresh, mut frame } => {
                if !set_vlan(&mut frame, vlan) {
                    return self.drop(frame, Counter::DropNoRoom, out);
                }
                set_macs(frame.data_mut(), port_mac, mac);
                self.push_tx(port, frame, out);
                if refresh {
                    self.arp_request(port, target, out);
                }
            }
            Resolution::Queued { request } => {
                self.counters.inc(Counter::NeighQueued);
                if request {
                    self.arp_request(port, target, out);
                }
            }
            Resolution::QueueFull(frame) => self.drop(frame, Counter::DropNeighQueueFull, out),
        }
    }

    pub(super) fn arp_request(&mut self, port: u16, target: Ipv4Addr, out: &mut Output<F>) {
        let snap = &self.snapshot;
        let Some(port_mac) = snap.ports.get(usize::from(port)).map(|p| p.mac) else { return };
        let Some(src) = snap.source_addr_for(port, target) else { return };
        let vlan = snap.ports.get(usize::from(port)).and_then(|p| p.vlan);
        out.control.push((port, ControlFrame::arp_request(port_mac, vlan, src, target)));
        self.counters.inc(Counter::ArpRequestsOut);
    }

    #[inline]
    pub(super) fn push_tx(&mut self, port: u16, frame: F, out: &mut Output<F>) {
        let len = frame.len();
        self.push_tx_len(port, frame, len, out);
    }

    /// [`Processor::push_tx`] for a frame whose length `len` is already known
    /// (always inlined: two counter adds and a push, smaller than a call).
    #[inline(always)]
    fn push_tx_len(&mut self, port: u16, frame: F, len: usize, out: &mut Output<F>) {
        self.counters.inc(Counter::TxPackets);
        self.counters.add(Counter::TxBytes, len as u64);
        out.tx.push((port, frame));
    }

    pub(super) fn drop(&mut self, frame: F, reason: Counter, out: &mut Output<F>) {
        self.counters.inc(reason);
        out.drop.push(frame);
    }
}

/// What [`onto_hop`] made of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OntoHop {
    /// Tagged and addressed for the hop: send it out of the hop's port.
    Done,
    /// The hop's tag did not fit in the headroom (drop it).
    NoRoom,
    /// Not an IPv4 frame that fits the hop's MTU: untouched, for the full path.
    Unfit,
}

/// Gives an IPv4 frame whose packet fits the MTU of the cached hop `h` the
/// hop's VLAN tag and MACs (the general case of [`Processor::send_through_hop`]).
#[inline]
fn onto_hop<F: Frame>(frame: &mut F, h: &Hop) -> OntoHop {
    let fits = ipv4_len(frame.data()).is_some_and(|len| len <= usize::from(h.mtu));
    if !fits {
        return OntoHop::Unfit;
    }
    if !set_vlan(frame, h.vlan) {
        return OntoHop::NoRoom;
    }
    set_macs(frame.data_mut(), h.src_mac, h.dst_mac);
    OntoHop::Done
}

/// The common case of [`onto_hop`], on the frame's bytes alone: an untagged
/// IPv4 frame whose packet fits the MTU of the untagged hop `h` gets the
/// hop's MACs (12 bytes written) and its length back. None, the frame
/// untouched, for every other frame (which [`onto_hop`] then handles).
#[inline]
fn untagged_onto_hop(frame: &mut [u8], h: &Hop) -> Option<usize> {
    use crate::wire::ethernet::HEADER_LEN;
    let len = frame.len();
    if h.vlan.is_some() {
        return None;
    }
    // The Ethernet header and the IPv4 total length.
    let head = frame.first_chunk_mut::<{ HEADER_LEN + 4 }>()?;
    if [head[12], head[13]] != ethertype::IPV4.to_be_bytes() || u16::from_be_bytes([head[16], head[17]]) > h.mtu {
        return None;
    }
    head[..6].copy_from_slice(&h.dst_mac.0);
    head[6..12].copy_from_slice(&h.src_mac.0);
    Some(len)
}

/// Gives a frame the 802.1Q tag `vlan` (PCP 0), or removes its tag for
/// `None`, moving only the MAC addresses. False when there is no headroom.
#[inline]
pub(super) fn set_vlan<F: Frame>(frame: &mut F, vlan: Option<u16>) -> bool {
    use crate::wire::ethernet::VLAN_HEADER_LEN;
    const TAG: usize = 4;
    let tagged = frame.len() >= VLAN_HEADER_LEN && frame.data()[12..14] == ethertype::VLAN.to_be_bytes();
    match (tagged, vlan) {
        (false, None) => true,
        (true, None) => {
            frame.data_mut().copy_within(0..12, TAG);
            frame.adj(TAG)
        }
        (false, Some(vid)) => {
            if frame.len() < 12 || !frame.insert_gap(12, TAG) {
                return false;
            }
            frame.data_mut()[12..14].copy_from_slice(&ethertype::VLAN.to_be_bytes());
            frame.data_mut()[14..16].copy_from_slice(&(vid & 0x0fff).to_be_bytes());
            true
        }
        (true, Some(vid)) => {
            frame.data_mut()[14..16].copy_from_slice(&(vid & 0x0fff).to_be_bytes());
            true
        }
    }
}

/// Sets the Ethernet source and destination of a frame (VLAN tag untouched).
#[inline]
pub(super) fn set_macs(frame: &mut [u8], src: MacAddr, dst: MacAddr) {
    if frame.len() >= 12 {
        frame[0..6].copy_from_slice(&dst.0);
        frame[6..12].copy_from_slice(&src.0);
    }
}

/// The IPv4 total length of an Ethernet frame's packet (None when it is not
/// an IPv4 packet with a readable header): the two bytes at offset 2 of the
/// IP header, behind an untagged (14-byte) or 802.1Q-tagged (18-byte)
/// Ethernet header, read in place (the same answer as parsing the frame with
/// [`EthernetFrame::new_checked`], see the tests).
#[inline]
fn ipv4_len(frame: &[u8]) -> Option<usize> {
    use crate::wire::ethernet::{HEADER_LEN, VLAN_HEADER_LEN};
    let tagged = frame.get(12..14)? == ethertype::VLAN.to_be_bytes();
    let l2_len = if tagged { VLAN_HEADER_LEN } else { HEADER_LEN };
    if frame.get(l2_len - 2..l2_len)? != ethertype::IPV4.to_be_bytes() {
        return None;
    }
    let len = frame.get(l2_len + 2..l2_len + 4)?;
    Some(usize::from(u16::from_be_bytes([len[0], len[1]])))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// [`ipv4_len`] as it was written first, by the Ethernet parser.
    fn ipv4_len_parsed(frame: &[u8]) -> Option<usize> {
        let eth = EthernetFrame::new_checked(frame).ok()?;
        if eth.ethertype() != ethertype::IPV4 {
            return None;
        }
        let ip = frame.get(eth.header_len()..)?;
        Some(usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?])))
    }

    /// Frames around the interesting shapes: untagged or tagged, IPv4 or
    /// not, cut anywhere.
    fn frames() -> impl Strategy<Value = Vec<u8>> {
        (prop::collection::vec(any::<u8>(), 0..40), 0u8..4, any::<bool>()).prop_map(|(mut f, shape, ipv4)| {
            let mut put = |at: usize, v: u16| {
                if f.len() >= at + 2 {
                    f[at..at + 2].copy_from_slice(&v.to_be_bytes());
                }
            };
            let inner = if ipv4 { ethertype::IPV4 } else { ethertype::IPV6 };
            match shape {
                0 => put(12, inner),
                1 => {
                    put(12, ethertype::VLAN);
                    put(16, inner);
                }
                2 => put(12, ethertype::VLAN),
                _ => {}
            }
            f
        })
    }

    fn hop(vlan: Option<u16>, mtu: u16) -> Hop {
        Hop {
            target: Ipv4Addr::new(10, 1, 0, 11),
            port: 1,
            src_mac: MacAddr([2, 0xd0, 0, 0, 0, 1]),
            dst_mac: MacAddr([2, 0xaa, 0, 0, 0, 0x11]),
            vlan,
            mtu,
            fresh_until_ms: u64::MAX,
        }
    }

    proptest! {
        #[test]
        fn ipv4_len_agrees_with_the_parser(frame in frames()) {
            prop_assert_eq!(ipv4_len(&frame), ipv4_len_parsed(&frame));
        }

        /// Whenever the untagged fast case takes a frame, the general case
        /// takes it too and gives the same bytes; when it does not, the frame
        /// is untouched.
        #[test]
        fn the_untagged_case_agrees_with_the_general_one(
            frame in frames(),
            vlan in prop::option::of(0u16..5000),
            mtu in prop::sample::select(vec![0u16, 20, 255, 256, 1500, 2000, 9000, u16::MAX]),
        ) {
            let h = hop(vlan, mtu);
            let mut fast = frame.clone();
            let mut general = crate::frame::VecFrame::new(&frame);
            if let Some(len) = untagged_onto_hop(&mut fast, &h) {
                prop_assert_eq!(onto_hop(&mut general, &h), OntoHop::Done);
                prop_assert_eq!(len, fast.len());
                prop_assert_eq!(general.to_vec(), fast);
            } else {
                prop_assert_eq!(fast, frame);
            }
        }
    }
}
