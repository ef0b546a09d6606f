//! Forwarding a packet of a connection by its mode: TTL, path MTU, the mode's rewrite, TUN encapsulation.

use super::*;

impl<F: Frame> Processor<F> {
    /// A packet `pkt` of connection `id` (None while it is being created) going
    /// in direction `dir`; `first_ack`: the client's ACK that completes the
    /// handshake (FULLNAT's TOA goes there). Always inlined into its two
    /// callers (a connection's packet, a new connection's first): its nine
    /// arguments and `Action` stay in registers and the caller's frame.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub(super) fn forward(
        &mut self,
        port: u16,
        ip_bytes: &mut [u8],
        l2_len: usize,
        pkt: &FlowPacket,
        conn: &Conn,
        id: Option<ConnId>,
        dir: Direction,
        first_ack: bool,
    ) -> Action {
        let cache = match (dir, id) {
            (Direction::Inbound, _) => HopCache::Real { service: conn.service_index, real: conn.real_index },
            (Direction::Reply, Some(id)) => HopCache::Reply { id, index: conn.reply_hop },
            (Direction::Reply, None) => HopCache::None,
        };
        if dir == Direction::Reply && matches!(conn.forward, ForwardMode::Dr | ForwardMode::Tun) {
            return Action::Drop(Counter::DropNotForUs);
        }
        match ttl::decrement(ip_bytes) {
            Ok(()) => {}
            Err(FwdError::TtlExceeded) => return self.time_exceeded(port, l2_len, conn, dir),
            Err(_) => return Action::Drop(Counter::DropMalformed),
        }
        // The cached hop's index, read once for the MTU check and the send
        // (TUN reads its own with the tunnel path).
        let index = match conn.forward {
            ForwardMode::Tun => hops::NONE,
            ForwardMode::Dr | ForwardMode::Nat | ForwardMode::FullNat => self.cached_hop_index(cache),
        };
        if dir == Direction::Inbound && conn.forward != ForwardMode::Tun {
            if let Some(mtu) = self.dont_frag_above_mtu(pkt, *conn.real.ip(), index) {
                return Action::TooBig { l2_len, vip: *conn.vip.ip(), mtu };
            }
        }
        // The rewrites take the layout `pkt`'s parse checked, without checking it again.
        let parsed = Parsed { header_len: usize::from(pkt.header_len), total_len: usize::from(pkt.ip_len), proto: pkt.key.proto };
        let hop = match (dir, conn.forward) {
            (Direction::Inbound, ForwardMode::Dr) => Ok(dr::xmit_inbound(conn)),
            (Direction::Inbound, ForwardMode::Nat) => nat::xmit_inbound_parsed(ip_bytes, parsed, conn),
            (Direction::Inbound, ForwardMode::FullNat) => fnat::xmit_inbound_parsed(ip_bytes, parsed, conn),
            (Direction::Inbound, ForwardMode::Tun) => {
                self.counters.inc(Counter::InboundPackets);
                return Action::Tunnel { l2_len, real: *conn.real.ip(), vip: *conn.vip.ip(), cache };
            }
            (Direction::Reply, ForwardMode::Nat) => nat::xmit_reply_parsed(ip_bytes, parsed, conn),
            (Direction::Reply, ForwardMode::FullNat) => fnat::xmit_reply_parsed(ip_bytes, parsed, conn),
            (Direction::Reply, ForwardMode::Dr | ForwardMode::Tun) => return Action::Drop(Counter::DropNotForUs),
        };
        // Only an open proxied connection's sequence numbers are translated.
        if hop.is_ok() && conn.proxy.is_open() && synproxy::translate(ip_bytes, conn, dir).is_err() {
            return Action::Drop(Counter::DropMalformed);
        }
        match hop {
            Ok(hop) => {
                self.counters.inc(match dir {
                    Direction::Inbound => Counter::InboundPackets,
                    Direction::Reply => Counter::ReplyPackets,
                });
                // The service's TOA flag matters only for the ACK completing the handshake.
                let toa_due = dir == Direction::Inbound
                    && first_ack
                    && fnat::toa_due(conn, first_ack, self.snapshot.services.get(usize::from(conn.service_index)).is_some_and(|s| s.toa));
                if toa_due {
                    return Action::Toa { l2_len, client: conn.client, hop };
                }
                Action::ForwardCached { hop, cache, index }
            }
            Err(_) => Action::Drop(Counter::DropMalformed),
        }
    }

    /// The egress MTU towards `to` when the packet `pkt` forbids
    /// fragmentation and is above it.
    /// The MTU comes from the next hop cached towards `to` (hop `index`) when
    /// there is one (fresh or not: a hop's port and MTU hold for the whole snapshot).
    /// Always inlined: on every inbound packet; the route lookup for a
    /// packet without a cached hop is out of line ([`Processor::routed_port_mtu`]).
    #[inline(always)]
    pub(super) fn dont_frag_above_mtu(&self, pkt: &FlowPacket, to: Ipv4Addr, index: u8) -> Option<u16> {
        if !pkt.dont_frag {
            return None;
        }
        let mtu = match self.hops.mtu(index) {
            Some(mtu) => mtu,
            None => self.routed_port_mtu(to)?,
        };
        (pkt.ip_len > mtu).then_some(mtu)
    }

    /// The MTU of the port the routes send `to` out of.
    #[inline(never)]
    fn routed_port_mtu(&self, to: Ipv4Addr) -> Option<u16> {
        let port = self.snapshot.route(to)?.port;
        self.snapshot.ports.get(usize::from(port)).map(|p| p.mtu)
    }

    /// TUN: encapsulate and send, answering "fragmentation needed" or
    /// fragmenting the tunnel packet when it exceeds the egress MTU. The
    /// rare outcomes are out of line ([`Processor::tunnel_rare`]), so the
    /// common one, a whole packet sent through its cached hop, stays small.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn tunnel(
        &mut self,
        mut frame: F,
        l2_len: usize,
        real: Ipv4Addr,
        vip: Ipv4Addr,
        cache: HopCache,
        now_ms: u64,
        out: &mut Output<F>,
    ) {
        let Some((path, hop_index)) = self.tunnel_path(real, cache) else {
            return self.drop(frame, Counter::DropNoRoute, out);
        };
        // The tunnel packet's fragments, if any, go to `self.fragments`
        // (empty between packets).
        let verdict = tun::transmit(&mut frame, l2_len, path.src, real, usize::from(path.mtu), &mut self.tunnel_ident, &mut self.fragments);
        match verdict {
            // The hop index read with the path (cached_hop_index's answer).
            Ok(tun::Transmit::Whole) => self.send_through_hop(frame, hop_index, NextHop::Routed(real), cache, now_ms, out),
            other => self.tunnel_rare(frame, other, l2_len, real, vip, now_ms, out),
        }
    }

    /// [`Processor::tunnel`]'s outcomes other than one whole packet to send:
    /// fragments, "fragmentation needed", drops.
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    fn tunnel_rare(
        &mut self,
        frame: F,
        verdict: Result<tun::Transmit, FwdError>,
        l2_len: usize,
        real: Ipv4Addr,
        vip: Ipv4Addr,
        now_ms: u64,
        out: &mut Output<F>,
    ) {
        match verdict {
            // `tunnel` sends a whole packet itself; this arm only completes the match.
            Ok(tun::Transmit::Whole) => self.send(frame, NextHop::Routed(real), now_ms, out),
            Ok(tun::Transmit::Fragmented) => {
                // `send` works with `self.fragments` itself: take them out first.
                let mut more = std::mem::take(&mut self.fragments);
                self.counters.add(Counter::TunFragments, more.len() as u64);
                self.send(frame, NextHop::Routed(real), now_ms, out);
                for f in more.drain(..) {
                    self.send(f, NextHop::Routed(real), now_ms, out);
                }
                self.fragments = more;
            }
            Ok(tun::Transmit::TooBig { mtu }) => self.frag_needed(frame, l2_len, vip, mtu, now_ms, out),
            Err(FwdError::Wire(_)) => self.drop(frame, Counter::DropMalformed, out),
            Err(_) => self.drop(frame, Counter::DropNoRoom, out),
        }
        // Fragments of a failed fragmentation are freed with the frame's buffer pool.
        if !self.fragments.is_empty() {
            out.drop.append(&mut self.fragments);
        }
    }
}
