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

impl<F: Frame> Processor<F> {
    /// The index of the hop cached for `cache` ([`hops::NONE`] if none).
    #[inline]
    pub(super) fn cached_hop_index(&self, cache: HopCache) -> u8 {
        match cache {
            HopCache::None => hops::NONE,
            HopCache::Real { service, real } => {
                self.real_hops.get(usize::from(service)).and_then(|r| r.get(usize::from(real))).copied().unwrap_or(hops::NONE)
            }
            HopCache::Reply { index, .. } => index,
        }
    }

    /// Sends a connection's rewritten frame towards `hop`: straight out
    /// through the next hop cached for it when that is fresh and the frame
    /// fits its MTU, else by [`Processor::send`], caching the hop it resolved.
    /// Both ways send the same bytes out of the same port.
    pub(super) fn send_cached(&mut self, mut frame: F, hop: NextHop, cache: HopCache, now_ms: u64, out: &mut Output<F>) {
        if let Some(h) = self.hops.get(self.cached_hop_index(cache), now_ms).copied() {
            if ipv4_len(frame.data()).is_some_and(|len| len <= usize::from(h.mtu)) {
                if !set_vlan(&mut frame, h.vlan) {
                    return self.drop(frame, Counter::DropNoRoom, out);
                }
                set_macs(frame.data_mut(), h.src_mac, h.dst_mac);
                return self.push_tx(h.port, frame, out);
            }
        }
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
                    *slot = index;
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

    pub(super) fn push_tx(&mut self, port: u16, frame: F, out: &mut Output<F>) {
        self.counters.inc(Counter::TxPackets);
        self.counters.add(Counter::TxBytes, frame.len() as u64);
        out.tx.push((port, frame));
    }

    pub(super) fn drop(&mut self, frame: F, reason: Counter, out: &mut Output<F>) {
        self.counters.inc(reason);
        out.drop.push(frame);
    }
}

/// Gives a frame the 802.1Q tag `vlan` (PCP 0), or removes its tag for
/// `None`, moving only the MAC addresses. False when there is no headroom.
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
pub(super) fn set_macs(frame: &mut [u8], src: MacAddr, dst: MacAddr) {
    if frame.len() >= 12 {
        frame[0..6].copy_from_slice(&dst.0);
        frame[6..12].copy_from_slice(&src.0);
    }
}

/// The IPv4 total length of an Ethernet frame's packet (None when it is not
/// an IPv4 packet with a readable header).
fn ipv4_len(frame: &[u8]) -> Option<usize> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != ethertype::IPV4 {
        return None;
    }
    let ip = frame.get(eth.header_len()..)?;
    Some(usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?])))
}
