//! IPv6 egress: route, neighbour resolution (queueing while neighbour
//! discovery is outstanding), VLAN tag and MACs; and the IPv6 steps that
//! change a frame's length or family (ND answers, ICMPv6 errors, TOA,
//! tunnels, NAT64) before it leaves.

use std::net::{Ipv6Addr, SocketAddrV6};

use super::*;
use crate::fwd::{fnat6, icmp6_err, nat64, tun6, NextHop6};
use crate::wire::icmpv6;

impl<F: Frame> Processor<F> {
    /// The neighbour and port an IPv6 hop is reached through, by the routing
    /// table (None: no route, or an on-link hop whose route has a gateway).
    fn egress_of6(&self, hop: NextHop6) -> Option<(Ipv6Addr, u16)> {
        match hop {
            NextHop6::Routed(addr) => self.snapshot.route6(addr).map(|r| (r.via.unwrap_or(addr), r.port)),
            NextHop6::OnLink(addr) => self.snapshot.route6(addr).filter(|r| r.via.is_none()).map(|r| (addr, r.port)),
        }
    }

    /// Sends a rewritten IPv6 frame towards `hop`: route, resolve the MAC, tx
    /// or queue. IPv6 is never fragmented here: a frame above the egress MTU
    /// (only one rvs itself made longer) is dropped and counted.
    pub(super) fn send6(&mut self, frame: F, hop: NextHop6, now_ms: u64, out: &mut Output<F>) {
        let Some((target, port)) = self.egress_of6(hop) else {
            return self.drop(frame, Counter::DropNoRoute, out);
        };
        let Some((port_mac, mtu, vlan)) = self.snapshot.ports.get(usize::from(port)).map(|p| (p.mac, p.mtu, p.vlan)) else {
            return self.drop(frame, Counter::DropNoRoute, out);
        };
        let l3_len = frame.len().saturating_sub(l2_header_len(frame.data()));
        if l3_len > usize::from(mtu) {
            return self.drop(frame, Counter::DropTooBig, out);
        }
        match self.neigh6.resolve(target, port, frame, now_ms) {
            Resolution::Resolved { mac, refresh, mut frame } => {
                if !set_vlan(&mut frame, vlan) {
                    return self.drop(frame, Counter::DropNoRoom, out);
                }
                set_macs(frame.data_mut(), port_mac, mac);
                self.push_tx(port, frame, out);
                if refresh {
                    self.solicit(port, target, Some(mac), out);
                }
            }
            Resolution::Queued { request } => {
                self.counters.inc(Counter::NeighQueued);
                if request {
                    self.solicit(port, target, None, out);
                }
            }
            Resolution::QueueFull(frame) => self.drop(frame, Counter::DropNeighQueueFull, out),
        }
    }

    /// A neighbour solicitation for `target` on `port` (to confirm the MAC
    /// `known`, or to resolve).
    pub(super) fn solicit(&mut self, port: u16, target: Ipv6Addr, known: Option<MacAddr>, out: &mut Output<F>) {
        let snap = &self.snapshot;
        let Some((port_mac, vlan)) = snap.ports.get(usize::from(port)).map(|p| (p.mac, p.vlan)) else { return };
        let Some(src) = snap.source_addr6_for(port, target) else { return };
        if let Some(frame) = ControlFrame::neighbour_solicitation(port_mac, vlan, src, target, known) {
            out.control.push((port, frame));
            self.counters.inc(Counter::NdSolicitsOut);
        }
    }

    /// Sends the neighbour discovery answer held in `nd_reply` in place of the solicitation.
    pub(super) fn reply_nd(&mut self, port: u16, mut frame: F, len: usize, out: &mut Output<F>) {
        let reply = self.nd_reply;
        if !crate::local6::replace_frame(&mut frame, &reply[..len]) {
            return self.drop(frame, Counter::DropNoRoom, out);
        }
        self.push_tx(port, frame, out);
    }

    /// Turns a packet rvs does not forward into the ICMPv6 error that answers
    /// it (rate-limited like the IPv4 answers) and sends it.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn answer6(
        &mut self,
        mut frame: F,
        reason: Counter,
        l2_len: usize,
        from: Ipv6Addr,
        msg_type: u8,
        code: u8,
        rest: u32,
        now_ms: u64,
        out: &mut Output<F>,
    ) {
        self.counters.inc(reason);
        let Ok(to) = icmp6_err::make_error6(&mut frame, l2_len, from, msg_type, code, rest) else {
            out.drop.push(frame);
            return;
        };
        if !self.answers.allow(now_ms) {
            self.counters.inc(Counter::AnswersRateLimited);
            out.drop.push(frame);
            return;
        }
        self.counters.inc(Counter::IcmpErrorsSent);
        self.send6(frame, NextHop6::Routed(to), now_ms, out)
    }

    /// FULLNAT over IPv6: inserts the client's TOA, then sends.
    pub(super) fn toa6(&mut self, mut frame: F, l2_len: usize, client: SocketAddrV6, hop: NextHop6, now_ms: u64, out: &mut Output<F>) {
        match fnat6::insert_toa6(&mut frame, l2_len, client) {
            Ok(true) => self.counters.inc(Counter::ToaInserted),
            Ok(false) => {}
            Err(_) => return self.drop(frame, Counter::DropNoRoom, out),
        }
        self.send6(frame, hop, now_ms, out)
    }

    /// TUN towards an IPv6 real server (IPv6 in IPv6) or an IPv4 one (IPv6
    /// in IPv4): Packet Too Big to the client when the tunnel packet would
    /// exceed the egress MTU.
    pub(super) fn tunnel6(&mut self, mut frame: F, l2_len: usize, real: IpAddr, vip: Ipv6Addr, now_ms: u64, out: &mut Output<F>) {
        let verdict = match real {
            IpAddr::V6(real6) => {
                let (Some(mtu), Some(src)) = (self.route_mtu6(real6), self.source6_towards(real6)) else {
                    return self.drop(frame, Counter::DropNoRoute, out);
                };
                let mut more = std::mem::take(&mut self.fragments);
                let v = tun6::transmit6(&mut frame, l2_len, src, real6, mtu, &mut more);
                out.drop.append(&mut more);
                self.fragments = more;
                v.map(|t| (t, NextHopAny::V6(NextHop6::Routed(real6))))
            }
            IpAddr::V4(real4) => {
                let Some(route) = self.snapshot.route(real4).copied() else {
                    return self.drop(frame, Counter::DropNoRoute, out);
                };
                let mtu = self.snapshot.ports.get(usize::from(route.port)).map_or(1500, |p| usize::from(p.mtu));
                let Some(src) = self.snapshot.source_addr_for(route.port, real4) else {
                    return self.drop(frame, Counter::DropNoRoute, out);
                };
                tun6::transmit_6in4(&mut frame, l2_len, src, real4, mtu, &mut self.tunnel_ident)
                    .map(|t| (t, NextHopAny::V4(NextHop::Routed(real4))))
            }
        };
        match verdict {
            Ok((tun6::Transmit6::Whole, NextHopAny::V6(hop))) => self.send6(frame, hop, now_ms, out),
            Ok((tun6::Transmit6::Whole, NextHopAny::V4(hop))) => self.send(frame, hop, now_ms, out),
            Ok((tun6::Transmit6::TooBig6 { mtu }, _)) => {
                let (msg_type, rest) = (icmpv6::msg_type::PACKET_TOO_BIG, u32::from(mtu));
                self.answer6(frame, Counter::DropTooBig, l2_len, vip, msg_type, 0, rest, now_ms, out)
            }
            // An IPv6 client's packet is never an IPv4 one to fragment.
            Ok(_) => self.drop(frame, Counter::DropUnsupported, out),
            Err(FwdError::Wire(_)) => self.drop(frame, Counter::DropMalformed, out),
            // An egress MTU that leaves an IPv6 packet less than 1280 bytes.
            Err(FwdError::Untranslatable(_)) => self.drop(frame, Counter::DropUnsupported, out),
            Err(_) => self.drop(frame, Counter::DropNoRoom, out),
        }
    }

    /// TUN from an IPv4 VIP to an IPv6 real server: the client's IPv4
    /// packet is encapsulated in IPv6 from our address towards `real`; one
    /// too big is answered with "fragmentation needed" from `vip` (DF) or
    /// fragmented inside the tunnel ([`tun6::transmit6`]).
    pub(super) fn tunnel_4in6(&mut self, mut frame: F, l2_len: usize, real: Ipv6Addr, vip: Ipv4Addr, now_ms: u64, out: &mut Output<F>) {
        let (Some(mtu), Some(src)) = (self.route_mtu6(real), self.source6_towards(real)) else {
            return self.drop(frame, Counter::DropNoRoute, out);
        };
        let mut more = std::mem::take(&mut self.fragments);
        match tun6::transmit6(&mut frame, l2_len, src, real, mtu, &mut more) {
            Ok(tun6::Transmit6::Whole) => self.send6(frame, NextHop6::Routed(real), now_ms, out),
            Ok(tun6::Transmit6::Fragmented) => {
                self.counters.add(Counter::TunFragments, more.len() as u64);
                self.send6(frame, NextHop6::Routed(real), now_ms, out);
                for f in more.drain(..) {
                    self.send6(f, NextHop6::Routed(real), now_ms, out);
                }
            }
            Ok(tun6::Transmit6::TooBig4 { mtu }) => self.frag_needed(frame, l2_len, vip, mtu, now_ms, out),
            // An IPv4 VIP's packet is never an IPv6 one.
            Ok(tun6::Transmit6::TooBig6 { .. }) => self.drop(frame, Counter::DropUnsupported, out),
            Err(FwdError::Wire(_)) => self.drop(frame, Counter::DropMalformed, out),
            Err(_) => self.drop(frame, Counter::DropNoRoom, out),
        }
        // Fragments of a failed fragmentation are freed with the frame's buffer pool.
        out.drop.append(&mut more);
        self.fragments = more;
    }

    /// NAT64, client to real server: the IPv6 packet becomes an IPv4 one
    /// from the IPv4 local address (with the client's TOA on the handshake's
    /// last ACK), sent by IPv4 egress.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn nat64_in(
        &mut self,
        mut frame: F,
        l2_len: usize,
        local: SocketAddrV4,
        real: SocketAddrV4,
        seq_delta: u32,
        toa: Option<SocketAddrV6>,
        now_ms: u64,
        out: &mut Output<F>,
    ) {
        let hop = match nat64::xmit_inbound(&mut frame, l2_len, local, real, seq_delta) {
            Ok(hop) => hop,
            Err(FwdError::NoRoom) => return self.drop(frame, Counter::DropNoRoom, out),
            Err(_) => return self.drop(frame, Counter::DropMalformed, out),
        };
        self.counters.inc(Counter::Nat64Packets);
        if let Some(client) = toa {
            match fnat6::insert_toa6(&mut frame, l2_len, client) {
                Ok(true) => self.counters.inc(Counter::ToaInserted),
                Ok(false) => {}
                Err(_) => return self.drop(frame, Counter::DropNoRoom, out),
            }
        }
        self.send(frame, hop, now_ms, out)
    }

    /// NAT64, real server to client: the IPv4 reply becomes an IPv6 packet
    /// from the VIP, sent by IPv6 egress.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn nat64_out(
        &mut self,
        mut frame: F,
        l2_len: usize,
        vip: SocketAddrV6,
        client: SocketAddrV6,
        seq_delta: u32,
        now_ms: u64,
        out: &mut Output<F>,
    ) {
        match nat64::xmit_reply(&mut frame, l2_len, vip, client, seq_delta) {
            Ok(hop) => {
                self.counters.inc(Counter::Nat64Packets);
                self.send6(frame, hop, now_ms, out)
            }
            Err(FwdError::NoRoom) => self.drop(frame, Counter::DropNoRoom, out),
            Err(_) => self.drop(frame, Counter::DropMalformed, out),
        }
    }
}

impl<F: Frame> Processor<F> {
    /// Sends an ICMPv4 error about a NAT64 connection to its IPv6 client,
    /// translated (`drop_nat64_untranslatable` for what RFC 7915 does not
    /// translate).
    pub(super) fn nat64_icmp_to6(&mut self, mut frame: F, l2_len: usize, t: &nat64::Icmp4To6, now_ms: u64, out: &mut Output<F>) {
        match nat64::icmp4_to_6(&mut frame, l2_len, t) {
            Ok(client) => {
                self.counters.inc(Counter::IcmpErrorsForwarded);
                self.counters.inc(Counter::Nat64Packets);
                self.send6(frame, NextHop6::Routed(client), now_ms, out)
            }
            Err(e) => self.drop_untranslatable(frame, e, out),
        }
    }

    /// Sends an ICMPv6 error about a NAT64 connection to its IPv4 real
    /// server, translated.
    pub(super) fn nat64_icmp_to4(&mut self, mut frame: F, l2_len: usize, t: &nat64::Icmp6To4, now_ms: u64, out: &mut Output<F>) {
        match nat64::icmp6_to_4(&mut frame, l2_len, t) {
            Ok(real) => {
                self.counters.inc(Counter::IcmpErrorsForwarded);
                self.counters.inc(Counter::Nat64Packets);
                self.send(frame, NextHop::Routed(real), now_ms, out)
            }
            Err(e) => self.drop_untranslatable(frame, e, out),
        }
    }

    fn drop_untranslatable(&mut self, frame: F, e: FwdError, out: &mut Output<F>) {
        let reason = match e {
            FwdError::Untranslatable(_) => Counter::DropNat64Untranslatable,
            FwdError::NoRoom => Counter::DropNoRoom,
            _ => Counter::DropMalformed,
        };
        self.drop(frame, reason, out)
    }
}

/// A next hop of either family (a tunnel's outer header decides).
enum NextHopAny {
    V4(NextHop),
    V6(NextHop6),
}

/// The Ethernet header length of a frame (14, 18 with a VLAN tag).
fn l2_header_len(frame: &[u8]) -> usize {
    EthernetFrame::new_checked(frame).map_or(crate::wire::ethernet::HEADER_LEN, |e| e.header_len())
}
