//! The per-packet logic of one worker, on byte buffers.
//!
//! [`Processor`] owns everything a worker's packet path touches — the snapshot in
//! use, scheduler states, the connection table, the neighbour table, counters —
//! and is generic over [`Frame`], so the same code runs on DPDK mbufs in rvsd and
//! on [`crate::frame::VecFrame`] in tests and benchmarks.
//!
//! For each frame: parse Ethernet (one 802.1Q tag, which must be the
//! receiving port's VLAN; frames sent carry the egress port's tag);
//! answer ARP for our addresses, VIPs and FULLNAT local addresses and learn
//! neighbours; answer ICMP echo to our addresses and VIPs; find the connection
//! of a TCP/UDP packet, or on a miss find its virtual service, schedule a real
//! server and create one; rewrite by forwarding mode (DR, NAT, TUN, FULLNAT);
//! forward ICMP errors that quote a connection's packet; resolve the next hop's
//! MAC (queueing while ARP is outstanding) and hand the frame to the tx list.
//! Forwarded packets lose one TTL; packets IPVS answers are answered the same
//! way (time exceeded, port unreachable when no real server is available, a
//! reset after `expire_nodest_conn`). Everything else is dropped and counted
//! by reason: every received frame ends in exactly one counter (see the
//! `ipvs_packet` tests). Nothing here allocates per
//! packet (fragments of oversized tunnel packets take a buffer from the pool).
//!
//! # Several workers
//!
//! Each worker owns the connections it created. A packet that reaches another
//! worker (the NIC spread it by a hash of its own 5-tuple, which differs from
//! the connection's other direction in NAT and FULLNAT) is handed to the owner
//! over a single-producer ring ([`Output::redirect`]):
//! * FULLNAT replies: the owner is known from the local port alone
//!   ([`crate::laddr::owner_of_port`]), since port ranges are split by worker.
//! * Everything else: the owner broadcasts each connection's inbound key (and
//!   NAT reply key) when it creates it ([`WorkerMsg::FlowOwner`]) and when it
//!   is gone ([`WorkerMsg::FlowGone`]); other workers keep a small key → owner
//!   map and redirect on it. That covers NAT replies, client packets the NIC
//!   moved to another queue (af_packet's fanout rolls over when a ring is full)
//!   and persistent services.
//! * The newest connection owns a key, as in IPVS: a client that reuses its
//!   port towards another service of the same real server makes a new NAT
//!   connection whose reply key equals an older one's. A worker told that
//!   another worker owns a key one of its own connections holds removes that
//!   stale connection, so the reply is not rewritten for the old service.
//!   `FlowGone` names its owner, so it never erases a newer owner's entry.
//! * Persistent services: a client network's template lives on one worker,
//!   `hash(client network) % workers`, so new connections of such services are
//!   created there; their later packets follow by the announced key.
//!
//! Neighbours learned from ARP are broadcast too, so every worker can send
//! to a next hop whichever worker received the ARP reply.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use hashbrown::HashMap;

use crate::conn::{ms32, state_timeout_ms, Conn, ConnId, ConnTable, Direction, FlowKey, TcpFlags, TcpState};
use crate::frag::{self, FitError, FragDrop, Reassembler, Verdict};
use crate::frame::{Frame, RxChecksum};
use crate::fwd::{dr, fnat, icmp_err, nat, reset, ttl, tun, FwdError, NextHop};
use crate::laddr::{owner_of_port, LocalPool};
use crate::neigh::{NeighTable, Resolution};
use crate::sched::{new_scheduler_for, Candidates, Scheduler};
use crate::snapshot::{ForwardMode, Persistence, Protocol, ServiceKey, Snapshot};
use crate::stats::{ConnFilter, ConnInfo, Counter, Counters, RealStats, ServiceStats, TrafficCounters};
use crate::wire::{arp, ethertype, icmp, ip_proto, ArpPacket, EthernetFrame, IcmpPacket, Ipv4Packet, MacAddr, TcpSegment, UdpDatagram};

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

    /// A broadcast ARP request from `src_mac`/`src_ip` for `target_ip`,
    /// tagged with the port's `vlan` if it has one, padded to 60 bytes (64 tagged).
    pub fn arp_request(src_mac: MacAddr, vlan: Option<u16>, src_ip: Ipv4Addr, target_ip: Ipv4Addr) -> Self {
        let mut bytes = [0u8; 64];
        let l2_len = crate::wire::ethernet::fill_header(&mut bytes, MacAddr::BROADCAST, src_mac, vlan, ethertype::ARP).unwrap_or(0);
        arp::fill_request(&mut bytes[l2_len..l2_len + arp::LEN], src_mac, src_ip, target_ip);
        ControlFrame { bytes, len: 60 + l2_len - crate::wire::ethernet::HEADER_LEN }
    }

    /// An untagged copy of the first `len` bytes of a received frame whose
    /// Ethernet header is `l2_len` long (an ARP request handed to the kernel
    /// while the dataplane answers it); None when it does not fit in 64 bytes.
    pub fn untagged_copy_of(frame: &[u8], l2_len: usize, len: usize) -> Option<Self> {
        let mut bytes = [0u8; 64];
        let body = frame.get(l2_len..len)?;
        let out_len = crate::wire::ethernet::HEADER_LEN + body.len();
        bytes.get_mut(..12)?.copy_from_slice(frame.get(..12)?);
        bytes.get_mut(12..14)?.copy_from_slice(frame.get(l2_len.checked_sub(2)?..l2_len)?);
        bytes.get_mut(14..out_len)?.copy_from_slice(body);
        Some(ControlFrame { bytes, len: out_len })
    }
}

/// A note from one worker to all the others.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkerMsg {
    /// A neighbour was learned from ARP.
    Neighbour {
        /// Its address.
        ip: Ipv4Addr,
        /// Its MAC.
        mac: MacAddr,
        /// The port it is on.
        port: u16,
    },
    /// Packets with this key (a connection's inbound or reply key) belong to
    /// a connection of worker `owner`.
    FlowOwner {
        /// The flow key.
        key: FlowKey,
        /// The owning worker.
        owner: u16,
    },
    /// The connection of worker `owner` with this key is gone.
    FlowGone {
        /// The flow key.
        key: FlowKey,
        /// The worker that owned it.
        owner: u16,
    },
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
    /// Frames for another worker: `(worker, port index it arrived on, frame)`.
    pub redirect: Vec<(usize, u16, F)>,
    /// Messages for every other worker.
    pub messages: Vec<WorkerMsg>,
    /// Frames for the kernel through the exception path of a port: `(port index, frame)`.
    pub kernel: Vec<(u16, F)>,
    /// Copies of frames for the kernel (ARP requests for our addresses, which
    /// the dataplane answers itself): `(port index, content)`.
    pub kernel_control: Vec<(u16, ControlFrame)>,
    /// Connections to send to the backup directors (connection sync).
    pub sync: Vec<ConnInfo>,
}

impl<F> Output<F> {
    /// Empty lists with room for `burst` frames (no allocation while they fit).
    pub fn with_capacity(burst: usize) -> Self {
        Output {
            tx: Vec::with_capacity(burst * 2),
            drop: Vec::with_capacity(burst * 2),
            control: Vec::with_capacity(16),
            redirect: Vec::with_capacity(burst),
            messages: Vec::with_capacity(burst * 2),
            kernel: Vec::with_capacity(burst),
            kernel_control: Vec::with_capacity(4),
            sync: Vec::with_capacity(burst),
        }
    }

    /// True when nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.tx.is_empty()
            && self.drop.is_empty()
            && self.control.is_empty()
            && self.redirect.is_empty()
            && self.messages.is_empty()
            && self.kernel.is_empty()
            && self.kernel_control.is_empty()
            && self.sync.is_empty()
    }
}

/// What to do with a frame after the first look at it.
#[derive(Clone, Copy)]
enum Action {
    /// Drop it and count why.
    Drop(Counter),
    /// The frame was turned into an answer (ARP reply, ICMP echo reply) that goes
    /// back out of the port it came in on.
    Reply,
    /// The frame was used up (an ARP reply we learned from), counted here.
    Consumed(Counter),
    /// Count why the frame is not forwarded, then turn it into the answer
    /// IPVS gives (an ICMP error or a TCP reset) and send that back.
    Answer {
        /// Why the packet is not forwarded.
        reason: Counter,
        /// Ethernet header length.
        l2_len: usize,
        /// What to answer with.
        answer: Answer,
    },
    /// The frame was rewritten; send it towards this next hop.
    Forward(NextHop),
    /// Encapsulate towards the real server (TUN), then send.
    Tunnel {
        /// Ethernet header length.
        l2_len: usize,
        /// The real server.
        real: Ipv4Addr,
        /// The client (for "fragmentation needed").
        vip: Ipv4Addr,
    },
    /// Insert a TOA option (FULLNAT), then send towards this next hop.
    Toa {
        /// Ethernet header length.
        l2_len: usize,
        /// The client whose address the option carries.
        client: SocketAddrV4,
        /// Where the frame goes.
        hop: NextHop,
    },
    /// Another worker owns this packet's connection.
    Redirect(usize),
    /// For the kernel, through the port's exception path (TAP).
    ToKernel,
    /// An IPv4 fragment: held until its datagram is complete ([`frag`]).
    Fragment {
        /// Ethernet header length.
        l2_len: usize,
    },
    /// A client packet with DF above the egress MTU towards its real server:
    /// answer ICMP "fragmentation needed" from the VIP.
    TooBig {
        /// Ethernet header length.
        l2_len: usize,
        /// The VIP the client sent to.
        vip: Ipv4Addr,
        /// The egress MTU.
        mtu: u16,
    },
}

/// An answer the dataplane originates in place of a packet it does not forward.
#[derive(Clone, Copy, Debug)]
enum Answer {
    /// An ICMP error from `from` quoting the packet.
    Icmp {
        /// The error's source address.
        from: Ipv4Addr,
        /// ICMP type.
        msg_type: u8,
        /// ICMP code.
        code: u8,
    },
    /// A TCP reset from the address and port the client sent to.
    Reset,
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

impl L4 {
    fn flags(&self) -> TcpFlags {
        TcpFlags { syn: self.syn, ack: self.ack, fin: self.fin, rst: self.rst }
    }
}

/// Per real server connection counts of one service, on this worker.
#[derive(Clone, Debug, Default)]
struct ServiceCounts {
    /// This worker's active connections per real server (exact).
    active: Vec<u32>,
    /// This worker's inactive connections per real server (exact).
    inactive: Vec<u32>,
    /// The other workers' active connections, as last published.
    remote_active: Vec<u32>,
    /// The other workers' inactive connections, as last published.
    remote_inactive: Vec<u32>,
    /// What schedulers see: local + remote active.
    view_active: Vec<u32>,
    /// What schedulers see: local + remote inactive.
    view_inactive: Vec<u32>,
    /// Over the upper threshold (IPVS `IP_VS_DEST_F_OVERLOAD`).
    overloaded: Vec<bool>,
    traffic: Vec<TrafficCounters>,
}

/// A persistence template: this client network goes to this real server.
#[derive(Clone, Copy, Debug)]
struct Template {
    real: SocketAddrV4,
    /// Connections currently using it.
    conns: u32,
    /// When it may be forgotten (when `conns` is 0), in ms.
    expires_ms: u64,
}

/// One worker's packet-path state.
pub struct Processor<F> {
    worker: usize,
    workers: usize,
    snapshot: Arc<Snapshot>,
    schedulers: Vec<Box<dyn Scheduler>>,
    counts: Vec<ServiceCounts>,
    conns: ConnTable,
    neigh: NeighTable<F>,
    pool: LocalPool,
    flow_owners: HashMap<FlowKey, u16>,
    templates: HashMap<(ServiceKey, Ipv4Addr), Template>,
    counters: Counters,
    expired: Vec<F>,
    requests: Vec<(Ipv4Addr, u16)>,
    removed: Vec<Conn>,
    fragments: Vec<F>,
    tunnel_ident: u16,
    reassembler: Reassembler<F>,
    /// Set while the first fragment of a complete datagram is classified.
    whole_datagram: bool,
    answers: icmp_err::AnswerLimit,
    partial_csum_port: Option<u16>,
    /// The NIC's IPv4 header checksum verdict on the frame being classified.
    rx_csum: RxChecksum,
}

impl<F: Frame> Processor<F> {
    /// A single worker's processor running on `snapshot` with room for
    /// `conn_capacity` connections.
    pub fn new(snapshot: Arc<Snapshot>, conn_capacity: usize) -> Self {
        Self::for_worker(snapshot, conn_capacity, 0, 1)
    }

    /// The processor of worker `worker` out of `workers`.
    pub fn for_worker(snapshot: Arc<Snapshot>, conn_capacity: usize, worker: usize, workers: usize) -> Self {
        let schedulers = snapshot.services.iter().map(new_scheduler_for).collect();
        let counts = snapshot.services.iter().map(|s| fresh_counts(s.reals.len())).collect();
        let mut counters = Counters::default();
        counters.set(Counter::Generation, snapshot.generation);
        let pool = LocalPool::new(worker, workers, snapshot.local_port_range);
        let frag_limits = snapshot.frag_limits;
        let mut neigh = NeighTable::new();
        neigh.set_max_held(snapshot.neigh_max_held);
        Processor {
            worker,
            workers: workers.max(1),
            snapshot,
            schedulers,
            counts,
            conns: ConnTable::with_capacity(conn_capacity),
            neigh,
            pool,
            flow_owners: HashMap::new(),
            templates: HashMap::new(),
            counters,
            expired: Vec::with_capacity(64),
            requests: Vec::with_capacity(16),
            removed: Vec::with_capacity(EXPIRE_BUDGET),
            fragments: Vec::with_capacity(8),
            tunnel_ident: 0,
            reassembler: Reassembler::new(frag_limits),
            whole_datagram: false,
            answers: icmp_err::AnswerLimit::default(),
            partial_csum_port: None,
            rx_csum: RxChecksum::Unknown,
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
                kept.unwrap_or_else(|| new_scheduler_for(s))
            })
            .collect();
        if snapshot.local_port_range != self.pool.range() {
            let mut pool = LocalPool::new(self.worker, self.workers, snapshot.local_port_range);
            for (_, c) in self.conns.iter() {
                if let Some(local) = c.local.get() {
                    pool.reserve(local);
                }
            }
            self.pool = pool;
        }
        self.reassembler.set_limits(snapshot.frag_limits);
        self.neigh.set_max_held(snapshot.neigh_max_held);
        let old = std::mem::replace(&mut self.snapshot, snapshot);
        // Counts follow real servers by address, not by position. Connections
        // find their new indices lazily (see `relocate`).
        let mut counts: Vec<ServiceCounts> = self.snapshot.services.iter().map(|s| fresh_counts(s.reals.len())).collect();
        for (si, svc) in self.snapshot.services.iter().enumerate() {
            let Some((osi, osvc)) = old.service(&svc.key) else { continue };
            for (ri, r) in svc.reals.iter().enumerate() {
                let Some(ori) = osvc.reals.iter().position(|o| o.addr == r.addr && o.port == r.port) else { continue };
                let (Some(from), Some(to)) = (self.counts.get(osi), counts.get_mut(si)) else { continue };
                to.active[ri] = from.active.get(ori).copied().unwrap_or(0);
                to.inactive[ri] = from.inactive.get(ori).copied().unwrap_or(0);
                to.view_active[ri] = to.active[ri];
                to.view_inactive[ri] = to.inactive[ri];
                to.overloaded[ri] = from.overloaded.get(ori).copied().unwrap_or(false);
                to.traffic[ri] = from.traffic.get(ori).copied().unwrap_or_default();
            }
        }
        self.counts = counts;
        self.counters.inc(Counter::SnapshotsAdopted);
        self.counters.set(Counter::Generation, self.snapshot.generation);
        old
    }

    /// Brings a connection's service and real indices up to the current snapshot.
    fn relocate(&self, c: &mut Conn) {
        if c.generation != self.generation() {
            self.relocate_now(c);
        }
    }

    /// Looks a connection's service and real indices up in the current snapshot.
    fn relocate_now(&self, c: &mut Conn) {
        let (si, ri) = self.locate(c);
        c.service_index = si;
        c.real_index = ri;
        c.generation = self.generation();
    }

    /// The current snapshot's generation as connections store it (low 32 bits).
    fn generation(&self) -> u32 {
        self.snapshot.generation as u32
    }

    /// Where a connection's service and real server sit in the current snapshot
    /// (`u16::MAX` when gone).
    fn locate(&self, c: &Conn) -> (u16, u16) {
        match self.snapshot.service(&c.service_key()) {
            Some((si, svc)) => {
                let ri = svc.reals.iter().position(|r| r.addr == *c.real.ip() && r.port == c.real.port());
                (si as u16, ri.map_or(u16::MAX, |r| r as u16))
            }
            None => (u16::MAX, u16::MAX),
        }
    }

    /// Adds (`delta` = 1) or removes (`-1`) a connection from its real server's
    /// counts and applies the connection thresholds.
    fn count_conn(&mut self, c: &Conn, si: u16, ri: u16, delta: i32) {
        self.shift_count(c.is_active(), si, ri, delta);
        let (si, ri) = (usize::from(si), usize::from(ri));
        let Some(real) = self.snapshot.services.get(si).and_then(|s| s.reals.get(ri)).copied() else { return };
        let Some(counts) = self.counts.get_mut(si) else { return };
        let total = counts.view_active[ri].saturating_add(counts.view_inactive[ri]);
        counts.overloaded[ri] = overload_after(counts.overloaded[ri], delta > 0, total, real.upper_threshold, real.lower_threshold);
    }

    /// Moves a connection between the active and inactive counts (a state change).
    fn recount_state(&mut self, before: &Conn, after: &Conn) {
        if before.is_active() != after.is_active() {
            self.shift_count(before.is_active(), after.service_index, after.real_index, -1);
            self.shift_count(after.is_active(), after.service_index, after.real_index, 1);
        }
    }

    fn shift_count(&mut self, active: bool, si: u16, ri: u16, delta: i32) {
        let Some(counts) = self.counts.get_mut(usize::from(si)) else { return };
        let ri = usize::from(ri);
        let (local, view) =
            if active { (&mut counts.active, &mut counts.view_active) } else { (&mut counts.inactive, &mut counts.view_inactive) };
        if let (Some(l), Some(v)) = (local.get_mut(ri), view.get_mut(ri)) {
            *l = l.saturating_add_signed(delta);
            *v = v.saturating_add_signed(delta);
        }
    }

    /// Publishes this worker's counts and refreshes its view of the others'
    /// (see the `sched` module docs for the error bound this gives).
    fn exchange_counts(&mut self) {
        let shared = std::sync::Arc::clone(&self.snapshot.conn_counts);
        for (si, (svc, counts)) in self.snapshot.services.iter().zip(self.counts.iter_mut()).enumerate() {
            for (ri, real) in svc.reals.iter().enumerate() {
                shared.publish(self.worker, si, ri, counts.active[ri], counts.inactive[ri]);
                if self.workers > 1 {
                    let (ra, ri_) = shared.others(self.worker, si, ri);
                    counts.remote_active[ri] = ra;
                    counts.remote_inactive[ri] = ri_;
                    counts.view_active[ri] = counts.active[ri].saturating_add(ra);
                    counts.view_inactive[ri] = counts.inactive[ri].saturating_add(ri_);
                    let total = counts.view_active[ri].saturating_add(counts.view_inactive[ri]);
                    let o = overload_after(counts.overloaded[ri], true, total, real.upper_threshold, real.lower_threshold);
                    counts.overloaded[ri] = overload_after(o, false, total, real.upper_threshold, real.lower_threshold);
                }
            }
        }
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
    pub fn handle(&mut self, port: u16, frame: F, now_ms: u64, out: &mut Output<F>) {
        self.counters.inc(Counter::RxPackets);
        self.counters.add(Counter::RxBytes, frame.len() as u64);
        self.dispatch(port, frame, now_ms, false, out);
    }

    /// Processes a frame another worker redirected here because this worker owns
    /// its connection. It is never redirected again.
    pub fn handle_redirected(&mut self, port: u16, frame: F, now_ms: u64, out: &mut Output<F>) {
        self.counters.inc(Counter::RedirectIn);
        self.dispatch(port, frame, now_ms, true, out);
    }

    /// Applies a message from another worker.
    pub fn handle_message(&mut self, msg: WorkerMsg, now_ms: u64, out: &mut Output<F>) {
        match msg {
            WorkerMsg::Neighbour { ip, mac, port } => self.learn_neighbour(ip, mac, port, now_ms, true, false, out),
            WorkerMsg::FlowOwner { key, owner } => {
                // A newer connection elsewhere holds this key: ours is stale.
                if let Some((id, _)) = self.conns.lookup(&key, now_ms) {
                    self.counters.inc(Counter::ConnSuperseded);
                    self.remove_conn(id, now_ms, out);
                }
                self.flow_owners.insert(key, owner);
            }
            WorkerMsg::FlowGone { key, owner } => {
                if self.flow_owners.get(&key) == Some(&owner) {
                    self.flow_owners.remove(&key);
                }
            }
        }
    }

    fn dispatch(&mut self, port: u16, mut frame: F, now_ms: u64, redirected: bool, out: &mut Output<F>) {
        self.rx_csum = frame.rx_ipv4_checksum();
        let action = self.classify(port, frame.data_mut(), now_ms, redirected, out);
        if let Action::Fragment { l2_len } = action {
            return match self.reassembler.add(frame, l2_len, now_ms) {
                Verdict::Held => {}
                Verdict::Complete(frames) => self.forward_datagram(port, frames, l2_len, now_ms, redirected, out),
                Verdict::Dropped(why, frames) => {
                    self.counters.inc(match why {
                        FragDrop::TableFull => Counter::DropFragTableFull,
                        FragDrop::TooManyFragments => Counter::DropFragTooMany,
                        FragDrop::Bad => Counter::DropFragBad,
                    });
                    out.drop.extend(frames);
                }
            };
        }
        self.apply(port, frame, action, now_ms, out);
    }

    /// A complete fragmented datagram: its first fragment takes the normal
    /// path (without TOA, which would move the other fragments' offsets), the
    /// others follow its verdict with its rewritten addresses.
    fn forward_datagram(&mut self, port: u16, frames: Vec<F>, l2_len: usize, now_ms: u64, redirected: bool, out: &mut Output<F>) {
        self.counters.inc(Counter::FragReassembled);
        let mut frames = frames.into_iter();
        let Some(mut first) = frames.next() else { return };
        self.whole_datagram = true;
        self.rx_csum = first.rx_ipv4_checksum();
        let action = self.classify(port, first.data_mut(), now_ms, redirected, out);
        self.whole_datagram = false;
        let action = match action {
            Action::Toa { hop, .. } => Action::Forward(hop),
            Action::Reply | Action::Fragment { .. } => Action::Drop(Counter::DropFragment),
            other => other,
        };
        let leader =
            first.data().get(l2_len..).and_then(|ip| Ipv4Packet::new_checked(ip).ok()).map(|ip| (ip.src_addr(), ip.dst_addr(), ip.ttl()));
        self.apply(port, first, action, now_ms, out);
        for mut f in frames {
            let followed = leader.is_some_and(|l| frag::follow_first(l, f.data_mut(), l2_len).is_ok());
            if !followed {
                self.drop(f, Counter::DropMalformed, out);
                continue;
            }
            // The datagram is answered once, for its first fragment: the
            // followers of an answered one are dropped under the same reason.
            let action = match action {
                Action::TooBig { .. } => Action::Drop(Counter::DropTooBig),
                Action::Answer { reason, .. } => Action::Drop(reason),
                other => other,
            };
            self.apply(port, f, action, now_ms, out);
        }
    }

    fn apply(&mut self, port: u16, mut frame: F, action: Action, now_ms: u64, out: &mut Output<F>) {
        match action {
            Action::Drop(reason) => {
                self.counters.inc(reason);
                out.drop.push(frame);
            }
            Action::Consumed(counter) => {
                self.counters.inc(counter);
                out.drop.push(frame);
            }
            Action::Answer { reason, l2_len, answer } => self.answer(frame, reason, l2_len, answer, now_ms, out),
            Action::Reply => self.push_tx(port, frame, out),
            Action::Forward(hop) => self.send(frame, hop, now_ms, out),
            Action::Tunnel { l2_len, real, vip } => self.tunnel(frame, l2_len, real, vip, now_ms, out),
            Action::Toa { l2_len, client, hop } => {
                match fnat::insert_toa(&mut frame, l2_len, client) {
                    Ok(true) => self.counters.inc(Counter::ToaInserted),
                    Ok(false) => {}
                    Err(_) => return self.drop(frame, Counter::DropNoRoom, out),
                }
                self.send(frame, hop, now_ms, out)
            }
            Action::Redirect(worker) => {
                self.counters.inc(Counter::RedirectOut);
                out.redirect.push((worker, port, frame));
            }
            Action::ToKernel => {
                // The kernel's side of a port is untagged (see `tag_for_port`).
                if !set_vlan(&mut frame, None) {
                    return self.drop(frame, Counter::DropMalformed, out);
                }
                self.counters.inc(Counter::KernelIn);
                out.kernel.push((port, frame));
            }
            Action::Fragment { .. } => self.drop(frame, Counter::DropFragment, out),
            Action::TooBig { l2_len, vip, mtu } => self.frag_needed(frame, l2_len, vip, mtu, now_ms, out),
        }
    }

    /// Answers a packet with DF above the egress MTU with ICMP "fragmentation
    /// needed" (next-hop MTU `mtu`) from `vip` to its sender.
    fn frag_needed(&mut self, mut frame: F, l2_len: usize, vip: Ipv4Addr, mtu: u16, now_ms: u64, out: &mut Output<F>) {
        self.counters.inc(Counter::DropTooBig);
        let code_frag_needed = 4;
        match icmp_err::make_error(&mut frame, l2_len, vip, crate::wire::icmp::msg_type::DEST_UNREACHABLE, code_frag_needed, u32::from(mtu))
        {
            Ok(client) => {
                self.counters.inc(Counter::IcmpErrorsSent);
                self.send(frame, NextHop::Routed(client), now_ms, out)
            }
            Err(_) => self.drop(frame, Counter::DropNoRoom, out),
        }
    }

    /// Counts `reason`, turns the frame into `answer` and sends it; within
    /// the answer rate limit and only where RFC 1812/793 allow an answer.
    fn answer(&mut self, mut frame: F, reason: Counter, l2_len: usize, answer: Answer, now_ms: u64, out: &mut Output<F>) {
        self.counters.inc(reason);
        let made = match answer {
            Answer::Icmp { from, msg_type, code } => {
                icmp_err::make_error(&mut frame, l2_len, from, msg_type, code, 0).map(|to| (to, Counter::IcmpErrorsSent))
            }
            Answer::Reset => reset::make_reset(&mut frame, l2_len).map(|to| (to, Counter::TcpResetsSent)),
        };
        let Ok((to, sent)) = made else {
            out.drop.push(frame);
            return;
        };
        if !self.answers.allow(now_ms) {
            self.counters.inc(Counter::AnswersRateLimited);
            out.drop.push(frame);
            return;
        }
        self.counters.inc(sent);
        self.send(frame, NextHop::Routed(to), now_ms, out)
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

    /// The port a TCP/UDP packet with a partial checksum last arrived on
    /// since the previous call (for a rate-limited log line naming it).
    pub fn take_partial_csum_port(&mut self) -> Option<u16> {
        self.partial_csum_port.take()
    }

    /// Traffic for the appliance itself that the dataplane does not answer:
    /// to the kernel when the port has an exception path, else dropped.
    fn local(&self, port: u16) -> Action {
        if self.snapshot.ports.get(usize::from(port)).is_some_and(|p| p.kernel) {
            Action::ToKernel
        } else {
            Action::Drop(Counter::DropLocal)
        }
    }

    /// TUN: encapsulate and send, answering "fragmentation needed" or
    /// fragmenting the tunnel packet when it exceeds the egress MTU.
    fn tunnel(&mut self, mut frame: F, l2_len: usize, real: Ipv4Addr, vip: Ipv4Addr, now_ms: u64, out: &mut Output<F>) {
        let Some(route) = self.snapshot.route(real).copied() else {
            return self.drop(frame, Counter::DropNoRoute, out);
        };
        let mtu = self.snapshot.ports.get(usize::from(route.port)).map_or(1500, |p| usize::from(p.mtu));
        let Some(src) = self.snapshot.source_addr_for(route.port, real) else {
            return self.drop(frame, Counter::DropNoRoute, out);
        };
        let Ok(inner) = tun::inner(frame.data(), l2_len) else {
            return self.drop(frame, Counter::DropMalformed, out);
        };
        let too_big = inner.len + tun::OVERHEAD > mtu;
        if too_big && inner.dont_frag {
            return self.frag_needed(frame, l2_len, vip, (mtu - tun::OVERHEAD) as u16, now_ms, out);
        }
        self.tunnel_ident = self.tunnel_ident.wrapping_add(1);
        if tun::encapsulate(&mut frame, l2_len, src, real, self.tunnel_ident).is_err() {
            return self.drop(frame, Counter::DropNoRoom, out);
        }
        if too_big {
            let mut more = std::mem::take(&mut self.fragments);
            let ok = frag::fragment(&mut frame, l2_len, mtu, &mut more).is_ok();
            if !ok {
                more.clear();
                self.fragments = more;
                return self.drop(frame, Counter::DropNoRoom, out);
            }
            self.counters.add(Counter::TunFragments, more.len() as u64);
            self.send(frame, NextHop::OnLink(real), now_ms, out);
            for f in more.drain(..) {
                self.send(f, NextHop::OnLink(real), now_ms, out);
            }
            self.fragments = more;
            return;
        }
        self.send(frame, NextHop::Routed(real), now_ms, out)
    }

    /// Periodic work: expire idle connections and persistence templates, retry
    /// or give up ARP resolution.
    pub fn tick(&mut self, now_ms: u64, out: &mut Output<F>) {
        let mut removed = std::mem::take(&mut self.removed);
        let expired = self.conns.expire_into(now_ms, EXPIRE_BUDGET, &mut removed);
        for c in removed.drain(..) {
            self.forget(&c, now_ms, out);
        }
        self.removed = removed;
        self.counters.add(Counter::ConnExpired, expired as u64);
        self.exchange_counts();
        if !self.templates.is_empty() {
            self.templates.retain(|_, t| t.conns > 0 || t.expires_ms > now_ms);
        }
        self.counters.set(Counter::ConnActive, self.conns.len() as u64);
        let timed_out = self.reassembler.expire(now_ms, &mut out.drop);
        self.counters.add(Counter::FragTimeout, timed_out as u64);
        self.neigh.tick(now_ms, &mut self.expired, &mut self.requests);
        self.counters.add(Counter::DropNeighUnresolved, self.expired.len() as u64);
        out.drop.append(&mut self.expired);
        for i in 0..self.requests.len() {
            let (ip, port) = self.requests[i];
            self.arp_request(port, ip, out);
        }
        self.requests.clear();
    }

    /// Undoes what a connection held: counts, its local port, its reply key, its template.
    fn forget(&mut self, c: &Conn, now_ms: u64, out: &mut Output<F>) {
        let mut c = *c;
        self.relocate(&mut c);
        let c = &c;
        let (si, ri) = (c.service_index, c.real_index);
        self.count_conn(c, si, ri, -1);
        if let Some(local) = c.local.get() {
            self.pool.release(local);
        }
        if self.workers > 1 {
            let owner = self.worker as u16;
            out.messages.push(WorkerMsg::FlowGone { key: c.inbound_key(), owner });
            if c.forward == ForwardMode::Nat {
                if let Some(key) = c.reply_key() {
                    out.messages.push(WorkerMsg::FlowGone { key, owner });
                }
            }
        }
        if let Some(p) = self.snapshot.service(&c.service_key()).and_then(|(_, s)| s.persistence) {
            let net = mask(*c.client.ip(), p.netmask);
            if let Some(t) = self.templates.get_mut(&(c.service_key(), net)) {
                t.conns = t.conns.saturating_sub(1);
                t.expires_ms = t.expires_ms.max(now_ms + u64::from(p.timeout_s) * 1000);
            }
        }
    }

    /// Adds a connection to the table; a connection it replaces (same inbound
    /// or reply key) is forgotten. False when the table is full.
    fn insert_conn(&mut self, conn: Conn, now_ms: u64, out: &mut Output<F>) -> bool {
        let mut displaced = std::mem::take(&mut self.removed);
        let inserted = self.conns.insert(conn, &mut displaced);
        for old in displaced.drain(..) {
            self.forget(&old, now_ms, out);
        }
        self.removed = displaced;
        inserted.is_ok()
    }

    /// Removes a connection now (e.g. replaced by a new SYN).
    fn remove_conn(&mut self, id: ConnId, now_ms: u64, out: &mut Output<F>) {
        if let Some(c) = self.conns.remove(id) {
            self.forget(&c, now_ms, out);
        }
    }

    fn classify(&mut self, port: u16, data: &mut [u8], now_ms: u64, redirected: bool, out: &mut Output<F>) -> Action {
        let Ok(eth) = EthernetFrame::new_checked(&*data) else {
            return Action::Drop(Counter::DropMalformed);
        };
        let Some((port_mac, port_vlan)) = self.snapshot.ports.get(usize::from(port)).map(|p| (p.mac, p.vlan)) else {
            return Action::Drop(Counter::DropUnsupported);
        };
        // 802.1Q tags belong to ports: a port takes frames of its own VLAN
        // only (untagged ones when it has none; VID 0 is a priority tag).
        if eth.vlan_id().filter(|&vid| vid != 0) != port_vlan {
            return Action::Drop(Counter::DropVlanForeign);
        }
        let dst = eth.dst_mac();
        let l2_len = eth.header_len();
        if dst.is_multicast() && !dst.is_broadcast() {
            // IPv4 multicast (VRRP adverts, IGMP) is the kernel's business.
            return match eth.ethertype() {
                ethertype::IPV4 => self.local(port),
                _ => Action::Drop(Counter::DropNotForUs),
            };
        }
        if dst != port_mac && !dst.is_broadcast() {
            return Action::Drop(Counter::DropNotForUs);
        }
        match eth.ethertype() {
            ethertype::ARP => self.handle_arp(port, port_mac, data, l2_len, now_ms, out),
            ethertype::IPV4 if dst == port_mac => self.handle_ipv4(port, port_mac, data, l2_len, now_ms, redirected, out),
            ethertype::IPV4 => Action::Drop(Counter::DropNotForUs),
            _ => Action::Drop(Counter::DropUnsupported),
        }
    }

    fn handle_arp(&mut self, port: u16, port_mac: MacAddr, data: &mut [u8], l2_len: usize, now_ms: u64, out: &mut Output<F>) -> Action {
        let Some(Ok(pkt)) = data.get(l2_len..).map(ArpPacket::new_checked) else {
            return Action::Drop(Counter::DropMalformed);
        };
        let (sender_ip, sender_mac, target_ip) = (pkt.sender_ip(), pkt.sender_mac(), pkt.target_ip());
        let for_us = self.snapshot.answers_arp_for(target_ip);
        if !sender_ip.is_unspecified() && sender_mac.is_unicast() {
            self.learn_neighbour(sender_ip, sender_mac, port, now_ms, for_us, true, out);
        }
        match pkt.operation() {
            arp::op::REQUEST if for_us => {
                // The kernel learns its peers (VRRP unicast peers, sync peers,
                // health-checked hosts) from requests for its own addresses,
                // as on any host: it gets a copy; the answer is ours.
                if self.snapshot.is_interface_addr(target_ip) && matches!(self.local(port), Action::ToKernel) {
                    match ControlFrame::untagged_copy_of(data, l2_len, l2_len + arp::LEN) {
                        Some(copy) => out.kernel_control.push((port, copy)),
                        None => self.counters.inc(Counter::DropKernel),
                    }
                }
                let Some(body) = data.get_mut(l2_len..) else {
                    return Action::Drop(Counter::DropMalformed);
                };
                let Ok(mut pkt) = ArpPacket::new_checked(body) else {
                    return Action::Drop(Counter::DropMalformed);
                };
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
                // The kernel resolves its own neighbours (health checks, sync) from these.
                match self.local(port) {
                    Action::ToKernel => Action::ToKernel,
                    _ => Action::Consumed(Counter::ArpRepliesConsumed),
                }
            }
            _ => Action::Consumed(Counter::ArpIgnored),
        }
    }

    /// Records a neighbour, sends what waited for it, and tells the other workers.
    #[allow(clippy::too_many_arguments)]
    fn learn_neighbour(&mut self, ip: Ipv4Addr, mac: MacAddr, port: u16, now_ms: u64, create: bool, broadcast: bool, out: &mut Output<F>) {
        let Some((port_mac, vlan)) = self.snapshot.ports.get(usize::from(port)).map(|p| (p.mac, p.vlan)) else { return };
        let known = self.neigh.lookup(ip, now_ms) == Some(mac);
        let released = self.neigh.learn(ip, mac, port, now_ms, create);
        let learned = self.neigh.lookup(ip, now_ms) == Some(mac);
        for mut f in released {
            if !set_vlan(&mut f, vlan) {
                self.drop(f, Counter::DropNoRoom, out);
                continue;
            }
            set_macs(f.data_mut(), port_mac, mac);
            self.push_tx(port, f, out);
        }
        if broadcast && learned && self.workers > 1 && !known {
            out.messages.push(WorkerMsg::Neighbour { ip, mac, port });
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn handle_ipv4(
        &mut self,
        port: u16,
        port_mac: MacAddr,
        data: &mut [u8],
        l2_len: usize,
        now_ms: u64,
        redirected: bool,
        out: &mut Output<F>,
    ) -> Action {
        let Some(ip_bytes) = data.get_mut(l2_len..) else {
            return Action::Drop(Counter::DropMalformed);
        };
        let Ok(ip) = Ipv4Packet::new_checked(&*ip_bytes) else {
            return Action::Drop(Counter::DropMalformed);
        };
        if !self.rx_csum.header_ok(&mut self.counters, || ip.verify_checksum()) {
            return Action::Drop(Counter::DropBadChecksum);
        }
        if ip.is_fragment() && !self.whole_datagram {
            return Action::Fragment { l2_len };
        }
        let (src, dst, proto) = (ip.src_addr(), ip.dst_addr(), ip.protocol());
        let ip_len = u64::from(ip.total_len());
        let l4 = match proto {
            ip_proto::TCP => match TcpSegment::new_checked(ip.payload()) {
                Ok(t) => L4 { sport: t.src_port(), dport: t.dst_port(), syn: t.syn(), ack: t.ack(), fin: t.fin(), rst: t.rst() },
                Err(_) => return Action::Drop(Counter::DropMalformed),
            },
            // A first fragment holds the UDP header, not the whole datagram.
            ip_proto::UDP if self.whole_datagram && ip.payload().len() >= 8 => {
                let u = UdpDatagram::new_unchecked(ip.payload());
                L4 { sport: u.src_port(), dport: u.dst_port(), syn: false, ack: false, fin: false, rst: false }
            }
            ip_proto::UDP => match UdpDatagram::new_checked(ip.payload()) {
                Ok(u) => L4 { sport: u.src_port(), dport: u.dst_port(), syn: false, ack: false, fin: false, rst: false },
                Err(_) => return Action::Drop(Counter::DropMalformed),
            },
            ip_proto::ICMP => {
                let error_type = IcmpPacket::new_checked(ip.payload()).ok().map(|m| m.msg_type()).filter(|&t| icmp_err::is_error(t));
                return match error_type {
                    Some(_) => self.handle_icmp_error(port, data, l2_len, now_ms, redirected),
                    None => self.handle_icmp(port, port_mac, data, l2_len, dst),
                };
            }
            _ => return self.not_balanced(port, dst),
        };
        if crate::wire::offload::complete_partial_checksum(ip_bytes) {
            self.counters.inc(Counter::RxL4CsumPartial);
            self.partial_csum_port = Some(port);
        }
        let key = FlowKey { proto, src, dst, sport: l4.sport, dport: l4.dport };
        let timeouts = self.snapshot.timeouts;
        let generation = self.generation();

        if let Some((id, dir)) = self.conns.lookup(&key, now_ms) {
            let Some(conn) = self.conns.get_mut(id) else {
                return Action::Drop(Counter::DropNoConnection);
            };
            if conn.generation != generation {
                let mut c = *conn;
                self.relocate(&mut c);
                if let Some(stored) = self.conns.get_mut(id) {
                    *stored = c;
                }
            }
            let Some(conn) = self.conns.get(id).copied() else {
                return Action::Drop(Counter::DropNoConnection);
            };
            // A new SYN on a closing connection starts a new one (IPVS
            // conn_reuse_mode), and so does one on a connection whose real
            // server is gone (IPVS with expire_nodest_conn).
            let new_syn = dir == Direction::Inbound && l4.syn && !l4.ack;
            let reschedule = new_syn && (conn.reusable_by_syn() || self.expired_by_config(&conn) == Some(Counter::DropNoDest));
            if !reschedule {
                let Some(conn) = self.conns.get_mut(id) else {
                    return Action::Drop(Counter::DropNoConnection);
                };
                let before = *conn;
                match conn.protocol {
                    Protocol::Tcp => conn.on_tcp_packet(l4.flags(), dir, &timeouts, now_ms),
                    Protocol::Udp => conn.on_udp_packet(&timeouts, now_ms),
                }
                let resync = self.snapshot.sync_send
                    && (before.state != conn.state || conn.since_synced_ms(now_ms) > conn.idle_timeout_ms(&timeouts) / 2);
                if resync {
                    conn.mark_synced(now_ms);
                }
                let conn = *conn;
                if resync {
                    out.sync.push(self.conn_info(&conn, now_ms));
                }
                self.recount_state(&before, &conn);
                if let Some(reason) = self.expired_by_config(&conn) {
                    self.remove_conn(id, now_ms, out);
                    // IPVS drops the packet and the client learns from the
                    // director's own stack on its next one: answer at once.
                    let tell_client = reason == Counter::DropNoDest && dir == Direction::Inbound && conn.protocol == Protocol::Tcp;
                    if tell_client && !l4.rst {
                        return Action::Answer { reason, l2_len, answer: Answer::Reset };
                    }
                    return Action::Drop(reason);
                }
                let first_ack = before.state == TcpState::SynRecv && conn.state == TcpState::Established;
                self.count_traffic(&conn, dir, ip_len);
                return self.forward(port, ip_bytes, l2_len, &conn, dir, first_ack);
            }
            self.remove_conn(id, now_ms, out);
        }

        // Not ours: maybe another worker's.
        if let Some(owner) = self.other_owner(&key, redirected) {
            return Action::Redirect(owner);
        }

        let Some(protocol) = Protocol::from_ip_proto(proto) else {
            return Action::Drop(Counter::DropUnsupported);
        };
        let Some((svc_idx, svc)) = self.snapshot.service(&ServiceKey { protocol, vip: dst, port: l4.dport }) else {
            return self.not_balanced(port, dst);
        };
        if self.snapshot.is_standby(dst) {
            return Action::Drop(Counter::DropStandby);
        }
        if protocol == Protocol::Tcp && (!l4.syn || l4.ack) {
            return Action::Drop(Counter::DropNoConnection);
        }
        if let Some(p) = svc.persistence {
            let owner = template_owner(mask(src, p.netmask), self.workers);
            if !redirected && owner != self.worker {
                return Action::Redirect(owner);
            }
        }
        let Some(real_idx) = self.schedule(svc_idx, &key, now_ms) else {
            // IPVS ip_vs_leave: the client learns at once that nobody serves it.
            let answer = Answer::Icmp { from: dst, msg_type: icmp::msg_type::DEST_UNREACHABLE, code: icmp_err::code::PORT_UNREACHABLE };
            return Action::Answer { reason: Counter::DropNoRealServer, l2_len, answer };
        };
        let svc = &self.snapshot.services[svc_idx];
        let real = svc.reals[real_idx];
        let local = if real.forward == ForwardMode::FullNat {
            match self.pool.allocate(&svc.local_addrs) {
                Some(l) => Some(l),
                None if svc.local_addrs.is_empty() => return Action::Drop(Counter::DropNoLaddr),
                None => return Action::Drop(Counter::DropNoLocalPort),
            }
        } else {
            None
        };
        // IPVS creates the entry in NONE and runs the SYN through the table (→ SYN_RECV).
        let state = match protocol {
            Protocol::Tcp => crate::conn::next_state(TcpState::None, l4.flags(), crate::conn::StateTable::Input),
            Protocol::Udp => TcpState::Udp,
        };
        let mut conn = Conn {
            protocol,
            client: SocketAddrV4::new(src, l4.sport),
            vip: SocketAddrV4::new(dst, l4.dport),
            real: SocketAddrV4::new(real.addr, real.port),
            local: local.into(),
            real_index: real_idx as u16,
            service_index: svc_idx as u16,
            generation: self.generation(),
            synced_ms: ms32(now_ms),
            forward: real.forward,
            state,
            expires_ms: 0,
            seq_delta: 0,
        };
        if let (Some(l), Protocol::Tcp) = (local, protocol) {
            conn.seq_delta = match fnat::new_seq_delta(ip_bytes, l, conn.real) {
                Ok(delta) => delta,
                Err(_) => return Action::Drop(Counter::DropMalformed),
            };
        }
        conn.restart_timer(state_timeout_ms(state, &timeouts), now_ms);
        let persistence = svc.persistence;
        if !self.insert_conn(conn, now_ms, out) {
            if let Some(l) = local {
                self.pool.release(l);
            }
            return Action::Drop(Counter::DropConnTableFull);
        }
        self.count_conn(&conn, conn.service_index, conn.real_index, 1);
        if let Some(t) = self.counts.get_mut(svc_idx).and_then(|c| c.traffic.get_mut(real_idx)) {
            t.conns += 1;
        }
        self.count_traffic(&conn, Direction::Inbound, ip_len);
        if let Some(p) = persistence {
            self.template_use(&conn, p, now_ms);
        }
        self.announce(&conn, out);
        self.counters.inc(Counter::ConnCreated);
        if self.snapshot.sync_send {
            out.sync.push(self.conn_info(&conn, now_ms));
        }
        self.forward(port, ip_bytes, l2_len, &conn, Direction::Inbound, false)
    }

    /// Tells the other workers that this one owns `conn`, so a packet of it
    /// that the NIC hands to another worker (NAT replies; client packets after
    /// an af_packet rollover, a redirected persistent SYN, a synced connection)
    /// is redirected here. FULLNAT replies need no announcement: their local
    /// port names the owner.
    fn announce(&self, conn: &Conn, out: &mut Output<F>) {
        if self.workers < 2 {
            return;
        }
        let owner = self.worker as u16;
        out.messages.push(WorkerMsg::FlowOwner { key: conn.inbound_key(), owner });
        if conn.forward == ForwardMode::Nat {
            if let Some(key) = conn.reply_key() {
                out.messages.push(WorkerMsg::FlowOwner { key, owner });
            }
        }
    }

    /// Whether the configuration ends this connection now: its real server was
    /// removed (with `expire_nodest_conn`) or set to weight 0 (with the
    /// service's `expire_quiescent`).
    fn expired_by_config(&self, c: &Conn) -> Option<Counter> {
        let svc = self.snapshot.services.get(usize::from(c.service_index));
        match svc.and_then(|s| s.reals.get(usize::from(c.real_index))) {
            None if self.snapshot.expire_nodest_conn => Some(Counter::DropNoDest),
            Some(r) if r.weight == 0 && svc.is_some_and(|s| s.expire_quiescent) => Some(Counter::DropQuiescent),
            _ => None,
        }
    }

    /// Adds a packet of `bytes` to its real server's traffic counters.
    fn count_traffic(&mut self, c: &Conn, dir: Direction, bytes: u64) {
        let Some(t) = self.counts.get_mut(usize::from(c.service_index)).and_then(|s| s.traffic.get_mut(usize::from(c.real_index))) else {
            return;
        };
        match dir {
            Direction::Inbound => {
                t.in_pkts += 1;
                t.in_bytes += bytes;
            }
            Direction::Reply => {
                t.out_pkts += 1;
                t.out_bytes += bytes;
            }
        }
    }

    /// This worker's traffic counters and connection counts per service and real server.
    pub fn service_stats(&self) -> Vec<ServiceStats> {
        self.snapshot
            .services
            .iter()
            .zip(&self.counts)
            .map(|(svc, counts)| {
                let reals: Vec<RealStats> = svc
                    .reals
                    .iter()
                    .enumerate()
                    .map(|(i, r)| RealStats {
                        addr: r.addr,
                        port: r.port,
                        traffic: counts.traffic.get(i).copied().unwrap_or_default(),
                        active: counts.active.get(i).copied().unwrap_or(0),
                        inactive: counts.inactive.get(i).copied().unwrap_or(0),
                        overloaded: counts.overloaded.get(i).copied().unwrap_or(false),
                    })
                    .collect();
                let mut traffic = TrafficCounters::default();
                for r in &reals {
                    traffic.add(&r.traffic);
                }
                ServiceStats { key: svc.key, traffic, reals }
            })
            .collect()
    }

    /// Zeroes the traffic counters (ipvsadm `-Z`); connection counts stay.
    pub fn zero_stats(&mut self) {
        for c in &mut self.counts {
            c.traffic.iter_mut().for_each(|t| *t = TrafficCounters::default());
        }
    }

    /// A connection as listings and connection sync show it.
    fn conn_info(&self, c: &Conn, now_ms: u64) -> ConnInfo {
        ConnInfo {
            worker: self.worker as u16,
            protocol: c.protocol,
            client: c.client,
            vip: c.vip,
            real: c.real,
            local: c.local.get(),
            forward: c.forward,
            state: c.state.name().to_owned(),
            expires_ms: c.expires_in_ms(now_ms),
            template: false,
            seq_delta: c.seq_delta,
        }
    }

    /// Installs a connection received from the sync master (a backup director
    /// keeps it, so established connections survive a failover) on the worker
    /// [`install_worker`] names, which announces it to the others. Its FULLNAT
    /// local port is taken out of this worker's pool. Returns false when the
    /// table is full or the entry is unusable.
    pub fn install(&mut self, info: &ConnInfo, now_ms: u64, out: &mut Output<F>) -> bool {
        if info.template {
            return false;
        }
        let Some(state) = TcpState::from_name(&info.state) else { return false };
        let timeouts = self.snapshot.timeouts;
        let mut conn = Conn {
            protocol: info.protocol,
            client: info.client,
            vip: info.vip,
            real: info.real,
            local: info.local.into(),
            real_index: u16::MAX,
            service_index: u16::MAX,
            forward: info.forward,
            state,
            expires_ms: 0,
            generation: 0,
            synced_ms: ms32(now_ms),
            seq_delta: info.seq_delta,
        };
        conn.restart_timer(state_timeout_ms(state, &timeouts), now_ms);
        self.relocate_now(&mut conn);
        if let Some(local) = conn.local.get() {
            self.pool.reserve(local);
        }
        if !self.insert_conn(conn, now_ms, out) {
            return false;
        }
        self.announce(&conn, out);
        self.count_conn(&conn, conn.service_index, conn.real_index, 1);
        self.counters.inc(Counter::ConnSynced);
        true
    }

    /// This worker's connections (and templates, if asked) matching `filter`.
    pub fn connections(&self, filter: &ConnFilter, now_ms: u64) -> Vec<ConnInfo> {
        let mut list: Vec<ConnInfo> = self.conns.iter().map(|(_, c)| self.conn_info(c, now_ms)).filter(|c| filter.matches(c)).collect();
        if filter.templates {
            for ((key, net), t) in &self.templates {
                let info = ConnInfo {
                    worker: self.worker as u16,
                    protocol: key.protocol,
                    client: SocketAddrV4::new(*net, 0),
                    vip: SocketAddrV4::new(key.vip, key.port),
                    real: t.real,
                    local: None,
                    forward: self
                        .snapshot
                        .service(key)
                        .and_then(|(_, s)| s.reals.iter().find(|r| r.addr == *t.real.ip()).map(|r| r.forward))
                        .unwrap_or(ForwardMode::Dr),
                    state: TcpState::None.name().to_owned(),
                    expires_ms: t.expires_ms.saturating_sub(now_ms),
                    template: true,
                    seq_delta: 0,
                };
                if filter.matches(&info) {
                    list.push(info);
                }
            }
        }
        list
    }

    /// The other worker that owns the connection of a packet with `key`, if
    /// any: by local port for FULLNAT replies, else as announced by the owner.
    /// A packet another worker already redirected here is never sent on.
    fn other_owner(&self, key: &FlowKey, redirected: bool) -> Option<usize> {
        if redirected || self.workers < 2 {
            return None;
        }
        let owner = if self.snapshot.is_local_addr(key.dst) {
            owner_of_port(key.dport, self.workers)
        } else {
            usize::from(*self.flow_owners.get(key)?)
        };
        (owner != self.worker).then_some(owner)
    }

    /// Picks a real server of service `svc_idx` for a new connection, honouring
    /// a persistence template when the service has one.
    fn schedule(&mut self, svc_idx: usize, key: &FlowKey, now_ms: u64) -> Option<usize> {
        let svc = self.snapshot.services.get(svc_idx)?;
        let counts = self.counts.get(svc_idx)?;
        let candidates =
            Candidates { reals: &svc.reals, active: &counts.view_active, inactive: &counts.view_inactive, overloaded: &counts.overloaded };
        if let Some(p) = svc.persistence {
            let net = mask(key.src, p.netmask);
            if let Some(t) = self.templates.get(&(svc.key, net)) {
                let live = t.conns > 0 || t.expires_ms > now_ms;
                let idx = svc.reals.iter().position(|r| SocketAddrV4::new(r.addr, r.port) == t.real);
                // Like IPVS: a template keeps pointing at its real server while it
                // exists, even when quiescent or overloaded, unless the server is
                // gone — or quiescent with `expire_quiescent`
                // (expire_quiescent_template).
                if let Some(i) = idx.filter(|&i| live && (candidates.weight(i) > 0 || !svc.expire_quiescent)) {
                    return Some(i);
                }
            }
        }
        self.schedulers.get_mut(svc_idx)?.pick(&candidates, key)
    }

    /// Records that `conn` uses its client network's template (creating it).
    fn template_use(&mut self, conn: &Conn, p: Persistence, now_ms: u64) {
        let net = mask(*conn.client.ip(), p.netmask);
        let expires_ms = now_ms + u64::from(p.timeout_s) * 1000;
        let t = self.templates.entry((conn.service_key(), net)).or_insert(Template { real: conn.real, conns: 0, expires_ms });
        if t.real != conn.real {
            *t = Template { real: conn.real, conns: 0, expires_ms };
        }
        t.conns += 1;
        t.expires_ms = t.expires_ms.max(expires_ms);
    }

    /// The number of persistence templates on this worker.
    pub fn templates(&self) -> usize {
        self.templates.len()
    }

    /// The connection counts this worker keeps for service `idx`: (active, inactive) per real.
    pub fn service_counts(&self, idx: usize) -> Option<(&[u32], &[u32])> {
        self.counts.get(idx).map(|c| (&c.active[..], &c.inactive[..]))
    }

    /// ICMP errors quoting a connection's packet go to the other party, translated.
    fn handle_icmp_error(&mut self, port: u16, data: &mut [u8], l2_len: usize, now_ms: u64, redirected: bool) -> Action {
        let Some(ip_bytes) = data.get_mut(l2_len..) else {
            return Action::Drop(Counter::DropMalformed);
        };
        let quoted = match Ipv4Packet::new_checked(&*ip_bytes) {
            Ok(ip) => icmp_err::quoted_flow(ip.payload()),
            Err(_) => return Action::Drop(Counter::DropMalformed),
        };
        let outer_dst = Ipv4Packet::new_checked(&*ip_bytes).map(|ip| ip.dst_addr()).ok();
        let Some(q) = quoted else {
            return match outer_dst {
                Some(d) if self.snapshot.is_interface_addr(d) => self.local(port),
                _ => Action::Drop(Counter::DropLocal),
            };
        };
        // The quoted packet travelled the other way: look up its reverse.
        let key = FlowKey { proto: q.proto, src: q.dst, sport: q.dport, dst: q.src, dport: q.sport };
        let Some((id, dir)) = self.conns.lookup(&key, now_ms) else {
            if let Some(owner) = self.other_owner(&key, redirected) {
                return Action::Redirect(owner);
            }
            // An error about the kernel's own traffic (health checks, sync) is the kernel's.
            if outer_dst.is_some_and(|d| self.snapshot.is_interface_addr(d)) {
                return self.local(port);
            }
            return Action::Drop(Counter::DropNoConnection);
        };
        let Some(c) = self.conns.get(id).copied() else {
            return Action::Drop(Counter::DropNoConnection);
        };
        if dir == Direction::Reply && matches!(c.forward, ForwardMode::Dr | ForwardMode::Tun) {
            return Action::Drop(Counter::DropNotForUs);
        }
        // Forwarded errors lose a TTL too; one that dies here is not answered (RFC 1812).
        match ttl::decrement(ip_bytes) {
            Ok(()) => {}
            Err(FwdError::TtlExceeded) => return Action::Drop(Counter::DropTtlExceeded),
            Err(_) => return Action::Drop(Counter::DropMalformed),
        }
        let t = match (dir, c.forward) {
            (Direction::Reply, ForwardMode::Nat) => {
                icmp_err::Translation { outer_src: Some(*c.vip.ip()), quoted_dst: Some(c.vip), ..Default::default() }
            }
            (Direction::Reply, ForwardMode::FullNat) => icmp_err::Translation {
                outer_src: Some(*c.vip.ip()),
                outer_dst: Some(*c.client.ip()),
                quoted_src: Some(c.client),
                quoted_dst: Some(c.vip),
                quoted_seq_shift: c.seq_delta.wrapping_neg(),
            },
            (Direction::Inbound, ForwardMode::Nat) => {
                icmp_err::Translation { outer_dst: Some(*c.real.ip()), quoted_src: Some(c.real), ..Default::default() }
            }
            (Direction::Inbound, ForwardMode::FullNat) => icmp_err::Translation {
                outer_src: c.local.get().map(|l| *l.ip()),
                outer_dst: Some(*c.real.ip()),
                quoted_src: Some(c.real),
                quoted_dst: c.local.get(),
                ..Default::default()
            },
            (Direction::Inbound, ForwardMode::Dr) => {
                self.counters.inc(Counter::IcmpErrorsForwarded);
                return Action::Forward(dr::xmit_inbound(&c));
            }
            (Direction::Inbound, ForwardMode::Tun) => {
                self.counters.inc(Counter::IcmpErrorsForwarded);
                return Action::Tunnel { l2_len, real: *c.real.ip(), vip: *c.vip.ip() };
            }
            (Direction::Reply, ForwardMode::Dr | ForwardMode::Tun) => return Action::Drop(Counter::DropNotForUs),
        };
        if icmp_err::translate(ip_bytes, &t).is_err() {
            return Action::Drop(Counter::DropMalformed);
        }
        self.counters.inc(Counter::IcmpErrorsForwarded);
        Action::Forward(match dir {
            Direction::Inbound => NextHop::Routed(*c.real.ip()),
            Direction::Reply => NextHop::Routed(*c.client.ip()),
        })
    }

    fn forward(&mut self, port: u16, ip_bytes: &mut [u8], l2_len: usize, conn: &Conn, dir: Direction, first_ack: bool) -> Action {
        if dir == Direction::Reply && matches!(conn.forward, ForwardMode::Dr | ForwardMode::Tun) {
            return Action::Drop(Counter::DropNotForUs);
        }
        match ttl::decrement(ip_bytes) {
            Ok(()) => {}
            Err(FwdError::TtlExceeded) => return self.time_exceeded(port, l2_len, conn, dir),
            Err(_) => return Action::Drop(Counter::DropMalformed),
        }
        if dir == Direction::Inbound && conn.forward != ForwardMode::Tun {
            if let Some(mtu) = self.dont_frag_above_mtu(ip_bytes, *conn.real.ip()) {
                return Action::TooBig { l2_len, vip: *conn.vip.ip(), mtu };
            }
        }
        let hop = match (dir, conn.forward) {
            (Direction::Inbound, ForwardMode::Dr) => Ok(dr::xmit_inbound(conn)),
            (Direction::Inbound, ForwardMode::Nat) => nat::xmit_inbound(ip_bytes, conn),
            (Direction::Inbound, ForwardMode::FullNat) => fnat::xmit_inbound(ip_bytes, conn),
            (Direction::Inbound, ForwardMode::Tun) => {
                self.counters.inc(Counter::InboundPackets);
                return Action::Tunnel { l2_len, real: *conn.real.ip(), vip: *conn.vip.ip() };
            }
            (Direction::Reply, ForwardMode::Nat) => nat::xmit_reply(ip_bytes, conn),
            (Direction::Reply, ForwardMode::FullNat) => fnat::xmit_reply(ip_bytes, conn),
            (Direction::Reply, ForwardMode::Dr | ForwardMode::Tun) => return Action::Drop(Counter::DropNotForUs),
        };
        match hop {
            Ok(hop) => {
                self.counters.inc(match dir {
                    Direction::Inbound => Counter::InboundPackets,
                    Direction::Reply => Counter::ReplyPackets,
                });
                let toa = first_ack
                    && dir == Direction::Inbound
                    && conn.forward == ForwardMode::FullNat
                    && conn.protocol == Protocol::Tcp
                    && self.snapshot.services.get(usize::from(conn.service_index)).is_some_and(|s| s.toa);
                if toa {
                    return Action::Toa { l2_len, client: conn.client, hop };
                }
                Action::Forward(hop)
            }
            Err(_) => Action::Drop(Counter::DropMalformed),
        }
    }

    /// The egress MTU towards `to` when the IPv4 packet `ip_bytes` forbids
    /// fragmentation and is above it.
    fn dont_frag_above_mtu(&self, ip_bytes: &[u8], to: Ipv4Addr) -> Option<u16> {
        let ip = Ipv4Packet::new_checked(ip_bytes).ok()?;
        if !ip.dont_frag() {
            return None;
        }
        let port = self.snapshot.route(to)?.port;
        let mtu = self.snapshot.ports.get(usize::from(port))?.mtu;
        (ip.total_len() > mtu).then_some(mtu)
    }

    /// The answer to a packet of `conn` that arrived with TTL 0 or 1: time
    /// exceeded, from the VIP for a client's packet (Linux: the packet was
    /// for a local address) and from our address on the real server's
    /// network for a reply (the kernel's forwarding path).
    fn time_exceeded(&self, port: u16, l2_len: usize, conn: &Conn, dir: Direction) -> Action {
        let from = match dir {
            Direction::Inbound => Some(*conn.vip.ip()),
            Direction::Reply => self.snapshot.source_addr_for(port, *conn.real.ip()),
        };
        match from {
            Some(from) => Action::Answer {
                reason: Counter::DropTtlExceeded,
                l2_len,
                answer: Answer::Icmp { from, msg_type: icmp::msg_type::TIME_EXCEEDED, code: icmp_err::code::TTL_EXCEEDED },
            },
            None => Action::Drop(Counter::DropTtlExceeded),
        }
    }

    /// A packet that is not part of a balanced flow: ours, a VIP's, or someone else's.
    fn not_balanced(&self, port: u16, dst: Ipv4Addr) -> Action {
        if self.snapshot.is_interface_addr(dst) {
            self.local(port)
        } else if self.snapshot.is_local_addr(dst) {
            Action::Drop(Counter::DropLocal)
        } else if self.snapshot.is_vip(dst) {
            Action::Drop(Counter::DropNoService)
        } else {
            Action::Drop(Counter::DropNotForUs)
        }
    }

    /// Answers ICMP echo requests to our addresses and VIPs in place.
    fn handle_icmp(&mut self, port: u16, port_mac: MacAddr, data: &mut [u8], l2_len: usize, dst: Ipv4Addr) -> Action {
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
                // Echo replies and the rest: for the kernel's own pings and tools.
                return if self.snapshot.is_interface_addr(dst) { self.local(port) } else { Action::Drop(Counter::DropLocal) };
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
    fn resolve_and_push(&mut self, frame: F, target: Ipv4Addr, egress: (u16, MacAddr, Option<u16>), now_ms: u64, out: &mut Output<F>) {
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

    fn arp_request(&mut self, port: u16, target: Ipv4Addr, out: &mut Output<F>) {
        let snap = &self.snapshot;
        let Some(port_mac) = snap.ports.get(usize::from(port)).map(|p| p.mac) else { return };
        let Some(src) = snap.source_addr_for(port, target) else { return };
        let vlan = snap.ports.get(usize::from(port)).and_then(|p| p.vlan);
        out.control.push((port, ControlFrame::arp_request(port_mac, vlan, src, target)));
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

/// Fresh (zero) counts for a service with `n` real servers.
fn fresh_counts(n: usize) -> ServiceCounts {
    ServiceCounts {
        active: vec![0; n],
        inactive: vec![0; n],
        remote_active: vec![0; n],
        remote_inactive: vec![0; n],
        view_active: vec![0; n],
        view_inactive: vec![0; n],
        overloaded: vec![false; n],
        traffic: vec![TrafficCounters::default(); n],
    }
}

/// IPVS's threshold rule after a connection was bound (`bound`) to or unbound
/// from a real server with `total` connections now.
fn overload_after(overloaded: bool, bound: bool, total: u32, upper: u32, lower: u32) -> bool {
    if bound {
        overloaded || (upper > 0 && total >= upper)
    } else if !overloaded {
        false
    } else if lower > 0 {
        total >= lower
    } else if upper > 0 {
        // No lower threshold: the overload ends below 3/4 of the upper one.
        u64::from(total) * 4 >= u64::from(upper) * 3
    } else {
        false
    }
}

/// The worker of `workers` that installs a connection received from the sync
/// master: for FULLNAT the owner of its local port (its replies are steered or
/// redirected by port), else one picked by the client's address and port.
pub fn install_worker(info: &ConnInfo, workers: usize) -> usize {
    let workers = workers.max(1);
    match info.local {
        Some(local) => owner_of_port(local.port(), workers),
        None => (u32::from(*info.client.ip()) ^ u32::from(info.client.port())) as usize % workers,
    }
}

/// `addr` masked with `netmask` (persistence granularity, ipvsadm `-M`).
fn mask(addr: Ipv4Addr, netmask: Ipv4Addr) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(addr) & u32::from(netmask))
}

/// The worker that holds the persistence templates of client network `net`.
fn template_owner(net: Ipv4Addr, workers: usize) -> usize {
    // Fibonacci hashing: spreads consecutive networks over workers.
    let h = u32::from(net).wrapping_mul(0x9e37_79b9);
    (h >> 16) as usize % workers.max(1)
}

/// Gives a frame the 802.1Q tag `vlan` (PCP 0), or removes its tag for
/// `None`, moving only the MAC addresses. False when there is no headroom.
fn set_vlan<F: Frame>(frame: &mut F, vlan: Option<u16>) -> bool {
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
fn set_macs(frame: &mut [u8], src: MacAddr, dst: MacAddr) {
    if frame.len() >= 12 {
        frame[0..6].copy_from_slice(&dst.0);
        frame[6..12].copy_from_slice(&src.0);
    }
}

#[cfg(test)]
mod tests;
