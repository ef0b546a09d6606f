//! The per-packet logic of one worker, on byte buffers.
//!
//! [`Processor`] owns everything a worker's packet path touches — the snapshot in
//! use, scheduler states, the connection table, the neighbour table, counters —
//! and is generic over [`Frame`], so the same code runs on DPDK mbufs in rvsd and
//! on [`crate::frame::VecFrame`] in tests and benchmarks.
//!
//! For each frame: parse Ethernet (one 802.1Q tag allowed, kept on output);
//! answer ARP for our addresses and VIPs and learn neighbours; answer ICMP echo
//! to our addresses and VIPs; find the connection of a TCP/UDP packet, or on a
//! miss find its virtual service, schedule a real server and create one; rewrite
//! by forwarding mode; resolve the next hop's MAC (queueing while ARP is
//! outstanding) and hand the frame to the tx list. Everything else is dropped
//! and counted by reason. Nothing here allocates per packet.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use crate::conn::{state_timeout_ms, Conn, ConnTable, Direction, FlowKey, TcpState};
use crate::frame::Frame;
use crate::fwd::{dr, nat, NextHop};
use crate::neigh::{NeighTable, Resolution};
use crate::sched::{new_scheduler, Candidates, Scheduler};
use crate::snapshot::{ForwardMode, Protocol, ServiceKey, Snapshot};
use crate::stats::{Counter, Counters};
use crate::wire::{
    arp, ethertype, icmp, ip_proto, ArpPacket, EthernetFrame, IcmpPacket, Ipv4Packet, MacAddr, TcpSegment,
    UdpDatagram,
};

/// Connection-table slots checked for expiry per [`Processor::tick`].
pub const EXPIRE_BUDGET: usize = 256;

/// A small frame the dataplane originates (ARP requests); the I/O layer copies
/// it into a fresh buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ControlFrame {
    bytes: [u8; 64],
    len: usize,
}

impl ControlFrame {
    /// The frame's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// A broadcast ARP request from `src_mac`/`src_ip` for `target_ip`, padded to 60 bytes.
    pub fn arp_request(src_mac: MacAddr, src_ip: Ipv4Addr, target_ip: Ipv4Addr) -> Self {
        let mut bytes = [0u8; 64];
        bytes[0..6].copy_from_slice(&MacAddr::BROADCAST.0);
        bytes[6..12].copy_from_slice(&src_mac.0);
        bytes[12..14].copy_from_slice(&ethertype::ARP.to_be_bytes());
        arp::fill_request(&mut bytes[14..14 + arp::LEN], src_mac, src_ip, target_ip);
        ControlFrame { bytes, len: 60 }
    }
}

/// What one call of [`Processor::handle`] or [`Processor::tick`] produced.
#[derive(Debug)]
pub struct Output<F> {
    /// Frames to send: `(port index, frame)`.
    pub tx: Vec<(u16, F)>,
    /// Frames to free.
    pub drop: Vec<F>,
    /// Frames to originate: `(port index, content)`.
    pub control: Vec<(u16, ControlFrame)>,
}

impl<F> Output<F> {
    /// Empty lists with room for `burst` frames (no allocation while they fit).
    pub fn with_capacity(burst: usize) -> Self {
        Output { tx: Vec::with_capacity(burst * 2), drop: Vec::with_capacity(burst * 2), control: Vec::with_capacity(16) }
    }

    /// True when nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.tx.is_empty() && self.drop.is_empty() && self.control.is_empty()
    }
}

/// What to do with a frame after the first look at it.
enum Action {
    /// Drop it and count why.
    Drop(Counter),
    /// The frame was turned into an answer (ARP reply, ICMP echo reply) that goes
    /// back out of the port it came in on.
    Reply,
    /// The frame was used up (an ARP reply we learned from).
    Consumed,
    /// The frame was rewritten; send it towards this next hop.
    Forward(NextHop),
}

/// Transport fields of a TCP/UDP packet.
#[derive(Clone, Copy)]
struct L4 {
    sport: u16,
    dport: u16,
    syn: bool,
    ack: bool,
    fin: bool,
    rst: bool,
}

/// One worker's packet-path state.
pub struct Processor<F> {
    snapshot: Arc<Snapshot>,
    schedulers: Vec<Box<dyn Scheduler>>,
    conns: ConnTable,
    neigh: NeighTable<F>,
    counters: Counters,
    expired: Vec<F>,
    requests: Vec<(Ipv4Addr, u16)>,
}

impl<F: Frame> Processor<F> {
    /// A processor running on `snapshot` with room for `conn_capacity` connections.
    pub fn new(snapshot: Arc<Snapshot>, conn_capacity: usize) -> Self {
        let schedulers = snapshot.services.iter().map(|s| new_scheduler(s.scheduler, &s.reals, &s.sched_options)).collect();
        let mut counters = Counters::default();
        counters.set(Counter::Generation, snapshot.generation);
        Processor {
            snapshot,
            schedulers,
            conns: ConnTable::with_capacity(conn_capacity),
            neigh: NeighTable::new(),
            counters,
            expired: Vec::with_capacity(64),
            requests: Vec::with_capacity(16),
        }
    }

    /// Switches to a new snapshot, between bursts. Scheduler state carries over
    /// for services whose definition did not change; connections are kept (they
    /// hold their real server's address themselves). Returns the old snapshot so
    /// the caller can hand it back to the control plane to be freed there.
    pub fn adopt(&mut self, snapshot: Arc<Snapshot>) -> Arc<Snapshot> {
        let mut old_states: Vec<Option<Box<dyn Scheduler>>> = self.schedulers.drain(..).map(Some).collect();
        let old_snapshot = Arc::clone(&self.snapshot);
        self.schedulers = snapshot
            .services
            .iter()
            .map(|s| {
                let kept = old_snapshot
                    .service(&s.key)
                    .filter(|(_, old)| *old == s)
                    .and_then(|(i, _)| old_states.get_mut(i).and_then(Option::take));
                kept.unwrap_or_else(|| new_scheduler(s.scheduler, &s.reals, &s.sched_options))
            })
            .collect();
        self.counters.inc(Counter::SnapshotsAdopted);
        self.counters.set(Counter::Generation, snapshot.generation);
        std::mem::replace(&mut self.snapshot, snapshot)
    }

    /// The snapshot in use.
    pub fn snapshot(&self) -> &Arc<Snapshot> {
        &self.snapshot
    }

    /// The worker's counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Counts frames the I/O layer dropped before or after processing.
    pub fn count(&mut self, c: Counter, n: u64) {
        self.counters.add(c, n);
    }

    /// The connection table (for listings and tests).
    pub fn conns(&self) -> &ConnTable {
        &self.conns
    }

    /// Processes one frame received on port index `port` at `now_ms`.
    pub fn handle(&mut self, port: u16, mut frame: F, now_ms: u64, out: &mut Output<F>) {
        self.counters.inc(Counter::RxPackets);
        self.counters.add(Counter::RxBytes, frame.len() as u64);
        let action = self.classify(port, frame.data_mut(), now_ms, out);
        match action {
            Action::Drop(reason) => {
                self.counters.inc(reason);
                out.drop.push(frame);
            }
            Action::Consumed => out.drop.push(frame),
            Action::Reply => self.push_tx(port, frame, out),
            Action::Forward(hop) => self.send(frame, hop, now_ms, out),
        }
    }

    /// Periodic work: expire idle connections, retry or give up ARP resolution.
    pub fn tick(&mut self, now_ms: u64, out: &mut Output<F>) {
        let expired = self.conns.expire(now_ms, EXPIRE_BUDGET);
        self.counters.add(Counter::ConnExpired, expired as u64);
        self.counters.set(Counter::ConnActive, self.conns.len() as u64);
        self.neigh.tick(now_ms, &mut self.expired, &mut self.requests);
        self.counters.add(Counter::DropNeighUnresolved, self.expired.len() as u64);
        out.drop.append(&mut self.expired);
        for i in 0..self.requests.len() {
            let (ip, port) = self.requests[i];
            self.arp_request(port, ip, out);
        }
        self.requests.clear();
    }

    fn classify(&mut self, port: u16, data: &mut [u8], now_ms: u64, out: &mut Output<F>) -> Action {
        let Ok(eth) = EthernetFrame::new_checked(&*data) else {
            return Action::Drop(Counter::DropMalformed);
        };
        let Some(port_mac) = self.snapshot.ports.get(usize::from(port)).map(|p| p.mac) else {
            return Action::Drop(Counter::DropUnsupported);
        };
        let dst = eth.dst_mac();
        if dst != port_mac && !dst.is_broadcast() {
            return Action::Drop(Counter::DropNotForUs);
        }
        let l2_len = eth.header_len();
        match eth.ethertype() {
            ethertype::ARP => self.handle_arp(port, port_mac, data, l2_len, now_ms, out),
            ethertype::IPV4 if dst == port_mac => self.handle_ipv4(port_mac, data, l2_len, now_ms),
            ethertype::IPV4 => Action::Drop(Counter::DropNotForUs),
            _ => Action::Drop(Counter::DropUnsupported),
        }
    }

    fn handle_arp(
        &mut self,
        port: u16,
        port_mac: MacAddr,
        data: &mut [u8],
        l2_len: usize,
        now_ms: u64,
        out: &mut Output<F>,
    ) -> Action {
        let Some(body) = data.get_mut(l2_len..) else {
            return Action::Drop(Counter::DropMalformed);
        };
        let Ok(mut pkt) = ArpPacket::new_checked(body) else {
            return Action::Drop(Counter::DropMalformed);
        };
        let (sender_ip, sender_mac, target_ip) = (pkt.sender_ip(), pkt.sender_mac(), pkt.target_ip());
        let for_us = self.snapshot.is_interface_addr(target_ip) || self.snapshot.is_vip(target_ip);
        if !sender_ip.is_unspecified() && sender_mac.is_unicast() {
            let released = self.neigh.learn(sender_ip, sender_mac, port, now_ms, for_us);
            for mut f in released {
                set_macs(f.data_mut(), port_mac, sender_mac);
                self.push_tx(port, f, out);
            }
        }
        match pkt.operation() {
            arp::op::REQUEST if for_us => {
                pkt.set_operation(arp::op::REPLY);
                pkt.set_target_mac(sender_mac);
                pkt.set_target_ip(sender_ip);
                pkt.set_sender_mac(port_mac);
                pkt.set_sender_ip(target_ip);
                set_macs(data, port_mac, sender_mac);
                self.counters.inc(Counter::ArpRequestsIn);
                Action::Reply
            }
            arp::op::REPLY => {
                self.counters.inc(Counter::ArpRepliesIn);
                Action::Consumed
            }
            _ => Action::Consumed,
        }
    }

    fn handle_ipv4(&mut self, port_mac: MacAddr, data: &mut [u8], l2_len: usize, now_ms: u64) -> Action {
        let Some(ip_bytes) = data.get_mut(l2_len..) else {
            return Action::Drop(Counter::DropMalformed);
        };
        let Ok(ip) = Ipv4Packet::new_checked(&*ip_bytes) else {
            return Action::Drop(Counter::DropMalformed);
        };
        if !ip.verify_checksum() {
            return Action::Drop(Counter::DropBadChecksum);
        }
        if ip.is_fragment() {
            return Action::Drop(Counter::DropFragment);
        }
        let (src, dst, proto) = (ip.src_addr(), ip.dst_addr(), ip.protocol());
        let l4 = match proto {
            ip_proto::TCP => match TcpSegment::new_checked(ip.payload()) {
                Ok(t) => L4 { sport: t.src_port(), dport: t.dst_port(), syn: t.syn(), ack: t.ack(), fin: t.fin(), rst: t.rst() },
                Err(_) => return Action::Drop(Counter::DropMalformed),
            },
            ip_proto::UDP => match UdpDatagram::new_checked(ip.payload()) {
                Ok(u) => L4 { sport: u.src_port(), dport: u.dst_port(), syn: false, ack: false, fin: false, rst: false },
                Err(_) => return Action::Drop(Counter::DropMalformed),
            },
            ip_proto::ICMP => return self.handle_icmp(port_mac, data, l2_len, dst),
            _ => return self.not_balanced(dst),
        };
        let key = FlowKey { proto, src, dst, sport: l4.sport, dport: l4.dport };
        let timeouts = self.snapshot.timeouts;

        if let Some((id, dir)) = self.conns.lookup(&key, now_ms) {
            let Some(conn) = self.conns.get_mut(id) else {
                return Action::Drop(Counter::DropNoConnection);
            };
            let reschedule = dir == Direction::Inbound && l4.syn && !l4.ack && conn.reusable_by_syn();
            if !reschedule {
                match conn.protocol {
                    Protocol::Tcp => conn.on_tcp_packet(l4.syn, l4.ack, l4.fin, l4.rst, dir == Direction::Inbound, &timeouts, now_ms),
                    Protocol::Udp => conn.on_udp_packet(&timeouts, now_ms),
                }
                let conn = *conn;
                return self.forward(ip_bytes, &conn, dir);
            }
            // A new SYN on a closing connection starts a new one (IPVS conn_reuse_mode).
            self.conns.remove(id);
        }

        let Some(protocol) = Protocol::from_ip_proto(proto) else {
            return Action::Drop(Counter::DropUnsupported);
        };
        let Some((svc_idx, svc)) = self.snapshot.service(&ServiceKey { protocol, vip: dst, port: l4.dport }) else {
            return self.not_balanced(dst);
        };
        if protocol == Protocol::Tcp && !(l4.syn && !l4.ack) {
            return Action::Drop(Counter::DropNoConnection);
        }
        let Some(real) = self
            .schedulers
            .get_mut(svc_idx)
            .and_then(|s| s.pick(&Candidates::idle(&svc.reals), &key))
            .and_then(|i| svc.reals.get(i))
        else {
            return Action::Drop(Counter::DropNoRealServer);
        };
        let state = match protocol {
            Protocol::Tcp => TcpState::SynRecv,
            Protocol::Udp => TcpState::Established,
        };
        let timeout_ms = match protocol {
            Protocol::Tcp => state_timeout_ms(state, &timeouts),
            Protocol::Udp => u64::from(timeouts.udp) * 1000,
        };
        let conn = Conn {
            protocol,
            client: SocketAddrV4::new(src, l4.sport),
            vip: SocketAddrV4::new(dst, l4.dport),
            real: SocketAddrV4::new(real.addr, real.port),
            forward: real.forward,
            state,
            last_seen_ms: now_ms,
            timeout_ms,
        };
        if self.conns.insert(conn).is_err() {
            return Action::Drop(Counter::DropConnTableFull);
        }
        self.counters.inc(Counter::ConnCreated);
        self.forward(ip_bytes, &conn, Direction::Inbound)
    }

    fn forward(&mut self, ip_bytes: &mut [u8], conn: &Conn, dir: Direction) -> Action {
        let hop = match (dir, conn.forward) {
            (Direction::Inbound, ForwardMode::Dr) => Ok(dr::xmit_inbound(conn)),
            (Direction::Inbound, ForwardMode::Nat) => nat::xmit_inbound(ip_bytes, conn),
            (Direction::Reply, ForwardMode::Nat) => nat::xmit_reply(ip_bytes, conn),
            (Direction::Reply, ForwardMode::Dr) => return Action::Drop(Counter::DropNotForUs),
        };
        match hop {
            Ok(hop) => {
                self.counters.inc(match dir {
                    Direction::Inbound => Counter::InboundPackets,
                    Direction::Reply => Counter::ReplyPackets,
                });
                Action::Forward(hop)
            }
            Err(_) => Action::Drop(Counter::DropMalformed),
        }
    }

    /// A packet that is not part of a balanced flow: ours, a VIP's, or someone else's.
    fn not_balanced(&self, dst: Ipv4Addr) -> Action {
        if self.snapshot.is_interface_addr(dst) {
            Action::Drop(Counter::DropLocal)
        } else if self.snapshot.is_vip(dst) {
            Action::Drop(Counter::DropNoService)
        } else {
            Action::Drop(Counter::DropNotForUs)
        }
    }

    /// Answers ICMP echo requests to our addresses and VIPs in place.
    fn handle_icmp(&mut self, port_mac: MacAddr, data: &mut [u8], l2_len: usize, dst: Ipv4Addr) -> Action {
        if !(self.snapshot.is_interface_addr(dst) || self.snapshot.is_vip(dst)) {
            return Action::Drop(Counter::DropNotForUs);
        }
        let client_mac = match EthernetFrame::new_checked(&*data) {
            Ok(eth) => eth.src_mac(),
            Err(_) => return Action::Drop(Counter::DropMalformed),
        };
        let Some(ip_bytes) = data.get_mut(l2_len..) else {
            return Action::Drop(Counter::DropMalformed);
        };
        let Ok(mut ip) = Ipv4Packet::new_checked(ip_bytes) else {
            return Action::Drop(Counter::DropMalformed);
        };
        let src = ip.src_addr();
        {
            let Ok(mut msg) = IcmpPacket::new_checked(ip.payload_mut()) else {
                return Action::Drop(Counter::DropMalformed);
            };
            if msg.msg_type() != icmp::msg_type::ECHO_REQUEST || !msg.verify_checksum() {
                return Action::Drop(Counter::DropLocal);
            }
            let old = u16::from_be_bytes([icmp::msg_type::ECHO_REQUEST, msg.code()]);
            let new = u16::from_be_bytes([icmp::msg_type::ECHO_REPLY, msg.code()]);
            msg.set_msg_type(icmp::msg_type::ECHO_REPLY);
            let c = crate::wire::checksum::update_u16(msg.checksum(), old, new);
            msg.set_checksum(c);
        }
        ip.set_src_addr(dst);
        ip.set_dst_addr(src);
        ip.set_ttl(64);
        ip.fill_checksum();
        set_macs(data, port_mac, client_mac);
        self.counters.inc(Counter::IcmpEchoReplies);
        Action::Reply
    }

    /// Sends a rewritten frame towards `hop`: route, resolve the MAC, tx or queue.
    fn send(&mut self, frame: F, hop: NextHop, now_ms: u64, out: &mut Output<F>) {
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
        let Some(port_mac) = self.snapshot.ports.get(usize::from(port)).map(|p| p.mac) else {
            return self.drop(frame, Counter::DropNoRoute, out);
        };
        match self.neigh.resolve(target, port, frame, now_ms) {
            Resolution::Resolved { mac, refresh, mut frame } => {
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

    fn arp_request(&mut self, port: u16, target: Ipv4Addr, out: &mut Output<F>) {
        let snap = &self.snapshot;
        let Some(port_mac) = snap.ports.get(usize::from(port)).map(|p| p.mac) else { return };
        // Source: our address on that port in the target's network, else the port's first.
        let src = snap
            .addresses
            .iter()
            .find(|a| a.port == port && crate::snapshot::prefix_contains(a.addr, a.prefix_len, target))
            .map(|a| a.addr)
            .or_else(|| snap.port_addr(port));
        let Some(src) = src else { return };
        out.control.push((port, ControlFrame::arp_request(port_mac, src, target)));
        self.counters.inc(Counter::ArpRequestsOut);
    }

    fn push_tx(&mut self, port: u16, frame: F, out: &mut Output<F>) {
        self.counters.inc(Counter::TxPackets);
        self.counters.add(Counter::TxBytes, frame.len() as u64);
        out.tx.push((port, frame));
    }

    fn drop(&mut self, frame: F, reason: Counter, out: &mut Output<F>) {
        self.counters.inc(reason);
        out.drop.push(frame);
    }
}

/// Sets the Ethernet source and destination of a frame (VLAN tag untouched).
fn set_macs(frame: &mut [u8], src: MacAddr, dst: MacAddr) {
    if frame.len() >= 12 {
        frame[0..6].copy_from_slice(&dst.0);
        frame[6..12].copy_from_slice(&src.0);
    }
}

#[cfg(test)]
mod tests;
