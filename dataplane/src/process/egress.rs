//! Egress: route, neighbour resolution (queueing while ARP is outstanding), VLAN tag and MACs, then the tx list.

use super::*;

impl<F: Frame> Processor<F> {
    /// Gives a frame the kernel sent through port `port`'s exception path
    /// the port's 802.1Q tag, if it has one. False when the frame has no
    /// headroom for the tag (the caller drops it).
    pub fn tag_for_port(&self, port: u16, frame: &mut F) -> bool {
        match self.snapshot.ports.get(usize::from(port)).and_then(|p| p.vlan) {
            Some(vlan) => set_vlan(frame, Some(vlan)),
            None => true,
        }
    }

    /// Sends a rewritten frame towards `hop`: route, resolve the MAC, tx or queue.
    pub(super) fn send(&mut self, frame: F, hop: NextHop, now_ms: u64, out: &mut Output<F>) {
        let (target, port) = match hop {
            NextHop::Routed(addr) => match self.snapshot.route(addr) {
                Some(r) => (r.via.unwrap_or(addr), r.port),
                None => return self.drop(frame, Counter::DropNoRoute, out),
            },
            NextHop::OnLink(addr) => match self.snapshot.route(addr) {
                Some(r) if r.via.is_none() => (addr, r.port),
                _ => return self.drop(frame, Counter::DropNoRoute, out),
            },
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
