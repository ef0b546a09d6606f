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
//! # Stages and modules
//!
//! The worker hands over whole bursts ([`Processor::handle_burst`], the
//! stages are described in `pipeline`): every frame is parsed once into a
//! descriptor, the connection lookups of the burst are prefetched, then each
//! frame is classified and forwarded in order. Frames that are not a flow's
//! TCP/UDP packet take the frame-at-a-time path ([`Processor::handle`]),
//! which makes the same decisions. One concern per module:
//!
//! | module | owns |
//! |---|---|
//! | `pipeline` | the burst stages and their descriptors |
//! | `flow` | the one parse of IPv4/TCP/UDP; a flow's packet: its connection found, or created |
//! | `local` | answers for the appliance itself (ARP, ICMP echo), the kernel's share |
//! | `icmp_error` | ICMP errors forwarded (translated) and originated (rate-limited answers) |
//! | `conn_life` | connections moving to a new snapshot, expiry, insertion, removal |
//! | `accounting` | per real server counts, overload thresholds, traffic counters |
//! | `persistence` | scheduling with persistence templates |
//! | `owners` | which worker owns a connection: announcements and redirects |
//! | `forward` | a connection's packet by its mode: TTL, path MTU, `fwd::<mode>` |
//! | `egress` | route, neighbour, next hop cached on the connection, VLAN, MACs, tx |
//! | `queries` | control questions: listings, connections installed by sync |
//! | `sloppy` | mid-stream TCP adopted by consistent-hash DR/TUN services (clusters behind ECMP) |
//! | `pressure` | whether the worker is under a SYN flood's table pressure, and the defences that follow (drop_entry, short SYN_RECV timeout, rate bound); a service's `auto` SYN proxy turns on with it |
//! | `prefix_rate` | token buckets of new connections per source prefix |
//! | `pressure_log` | when a worker logs pressure turning on or off, or a full table |
//! | `synproxy` | the SYN proxy's stages: cookie SYN-ACKs, the replayed handshake, held client packets |
//!
//! Each forwarding mode's policy lives in its own `fwd/<mode>.rs` (TUN's path
//! MTU and fragmentation, FULLNAT's ports, sequence shift and TOA).
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

use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use hashbrown::HashMap;

use crate::conn::{
    state_timeout_ms, sync_tick, Conn, Conn6, ConnAddr, ConnId, ConnTable, ConnTable6, Direction, FlowKey, FlowKey6, SockV6, TcpFlags,
    TcpState,
};
use crate::frag::{self, FitError, FragDrop, Reassembler, Verdict};
use crate::frame::{Frame, RxChecksum};
use crate::fwd::{dr, fnat, icmp_err, nat, reset, ttl, tun, FwdError, NextHop, Parsed};
use crate::laddr::{owner_of_port, LocalPool};
use crate::neigh::hops::{self, Hop, NextHops};
use crate::neigh::{NeighTable, Resolution};
use crate::sched::{new_scheduler_for, Candidates, Scheduler};
use crate::snapshot::{ForwardMode, Persistence, Protocol, ServiceKey, Snapshot};
use crate::stats::{ConnFilter, ConnInfo, Counter, Counters, RealStats, ServiceStats, TrafficCounters};
use crate::wire::{arp, ethertype, icmp, ip_proto, ArpPacket, EthernetFrame, IcmpPacket, Ipv4Packet, MacAddr, TcpSegment, UdpDatagram};

mod accounting;
mod conn_life;
mod egress;
mod egress6;
mod flow;
mod forward;
mod icmp_error;
mod ipv6;
mod local;
mod owners;
mod persistence;
mod pipeline;
mod prefix_rate;
mod pressure;
mod pressure_log;
mod queries;
mod sloppy;
mod synproxy;
mod tun4in6;

use accounting::{fresh_counts, ServiceCounts};
use egress::{set_macs, set_vlan, HopCache};
use flow::{FlowPacket, Ipv4Kind};
pub use owners::install_worker;
use persistence::Template;
pub use pressure::{PressureStatus, VICTIM_SCAN};
pub use pressure_log::{PressureLine, PressureLog, PRESSURE_LOG_EVERY_MS};

/// Connection-table slots checked for expiry per [`Processor::tick`].
pub const EXPIRE_BUDGET: usize = 256;

/// Bytes a [`ControlFrame`] holds: an IPv6 neighbour solicitation with a
/// VLAN tag (90) fits.
pub const CONTROL_FRAME_LEN: usize = 96;

/// A small frame the dataplane originates (ARP requests, neighbour
/// solicitations); the I/O layer copies it into a fresh buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ControlFrame {
    bytes: [u8; CONTROL_FRAME_LEN],
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
        let mut bytes = [0u8; CONTROL_FRAME_LEN];
        let l2_len = crate::wire::ethernet::fill_header(&mut bytes, MacAddr::BROADCAST, src_mac, vlan, ethertype::ARP).unwrap_or(0);
        arp::fill_request(&mut bytes[l2_len..l2_len + arp::LEN], src_mac, src_ip, target_ip);
        ControlFrame { bytes, len: 60 + l2_len - crate::wire::ethernet::HEADER_LEN }
    }

    /// A neighbour solicitation from `src_mac`/`src_ip` for `target_ip`
    /// (multicast to its solicited-node address, or unicast to `known` to
    /// confirm an entry), tagged with the port's `vlan` if it has one.
    pub fn neighbour_solicitation(
        src_mac: MacAddr,
        vlan: Option<u16>,
        src_ip: std::net::Ipv6Addr,
        target_ip: std::net::Ipv6Addr,
        known: Option<MacAddr>,
    ) -> Option<Self> {
        let mut bytes = [0u8; CONTROL_FRAME_LEN];
        let len = crate::neigh::nd::fill_probe(&mut bytes, src_mac, vlan, src_ip, target_ip, known).ok()?;
        Some(ControlFrame { bytes, len })
    }

    /// An untagged copy of the first `len` bytes of a received frame whose
    /// Ethernet header is `l2_len` long (an ARP request or a neighbour
    /// solicitation handed to the kernel while the dataplane answers it);
    /// None when it does not fit in [`CONTROL_FRAME_LEN`] bytes.
    pub fn untagged_copy_of(frame: &[u8], l2_len: usize, len: usize) -> Option<Self> {
        let mut bytes = [0u8; CONTROL_FRAME_LEN];
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
    /// An IPv6 neighbour was learned from neighbour discovery.
    Neighbour6 {
        /// Its address.
        ip: std::net::Ipv6Addr,
        /// Its MAC.
        mac: MacAddr,
        /// The port it is on.
        port: u16,
    },
    /// As [`WorkerMsg::FlowOwner`], for an IPv6 connection's key.
    FlowOwner6 {
        /// The flow key.
        key: FlowKey6,
        /// The owning worker.
        owner: u16,
    },
    /// As [`WorkerMsg::FlowGone`], for an IPv6 connection's key.
    FlowGone6 {
        /// The flow key.
        key: FlowKey6,
        /// The worker that owned it.
        owner: u16,
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
    /// A connection's packet was rewritten; send it towards this next hop,
    /// through the hop cached for it when there is one.
    ForwardCached {
        /// Where it goes.
        hop: NextHop,
        /// Where its cached next hop is remembered.
        cache: HopCache,
        /// The index of the hop cached for `cache` ([`Processor::cached_hop_index`]),
        /// read once by `forward` for both the MTU check and the send.
        index: u8,
    },
    /// Encapsulate towards the real server (TUN), then send.
    Tunnel {
        /// Ethernet header length.
        l2_len: usize,
        /// The real server.
        real: Ipv4Addr,
        /// The client (for "fragmentation needed").
        vip: Ipv4Addr,
        /// Where the tunnel packet's cached next hop is remembered.
        cache: HopCache,
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
    /// A step of the SYN proxy ([`synproxy`]).
    SynProxy(synproxy::Step),
    /// The frame is answered with the neighbour advertisement held in
    /// `Processor::nd_reply` (`len` bytes), back out of the port it came in on.
    ReplyNd {
        /// The answer's length.
        len: usize,
    },
    /// An IPv6 frame was rewritten; send it towards this next hop.
    Forward6(crate::fwd::NextHop6),
    /// Count why an IPv6 packet is not forwarded, then answer it with an
    /// ICMPv6 error from `from`.
    Answer6 {
        /// Why the packet is not forwarded.
        reason: Counter,
        /// Ethernet header length.
        l2_len: usize,
        /// The error's source address.
        from: std::net::Ipv6Addr,
        /// ICMPv6 type.
        msg_type: u8,
        /// ICMPv6 code.
        code: u8,
        /// The 32 bits after the checksum (Packet Too Big: the MTU).
        rest: u32,
    },
    /// FULLNAT over IPv6: insert the client's TOA, then send.
    Toa6 {
        /// Ethernet header length.
        l2_len: usize,
        /// The client.
        client: std::net::SocketAddrV6,
        /// Where the frame goes.
        hop: crate::fwd::NextHop6,
    },
    /// TUN from an IPv6 VIP: encapsulate towards the real server, then send.
    Tunnel6 {
        /// Ethernet header length.
        l2_len: usize,
        /// The real server (IPv6, or IPv4 for IPv6 in IPv4).
        real: IpAddr,
        /// The VIP (source of Packet Too Big).
        vip: std::net::Ipv6Addr,
    },
    /// NAT64 towards the IPv4 real server.
    Nat64In {
        /// Ethernet header length.
        l2_len: usize,
        /// The IPv4 local address and port.
        local: SocketAddrV4,
        /// The IPv4 real server.
        real: SocketAddrV4,
        /// FULLNAT's sequence shift.
        seq_delta: u32,
        /// The client whose TOA goes into this packet, if one does.
        toa: Option<std::net::SocketAddrV6>,
    },
    /// NAT64 reply towards the IPv6 client.
    Nat64Out {
        /// Ethernet header length.
        l2_len: usize,
        /// The VIP and port (the reply's source).
        vip: std::net::SocketAddrV6,
        /// The client.
        client: std::net::SocketAddrV6,
        /// FULLNAT's sequence shift.
        seq_delta: u32,
    },
    /// TUN from an IPv4 VIP to an IPv6 real server: encapsulate the IPv4
    /// packet in IPv6, then send.
    Tunnel4in6 {
        /// Ethernet header length.
        l2_len: usize,
        /// The IPv6 real server.
        real: std::net::Ipv6Addr,
        /// The VIP (source of "fragmentation needed").
        vip: Ipv4Addr,
    },
    /// NAT64: an ICMPv4 error about a connection, translated into an
    /// ICMPv6 error for the client.
    Nat64Icmp4To6 {
        /// Ethernet header length.
        l2_len: usize,
        /// The translation.
        t: crate::fwd::nat64::Icmp4To6,
    },
    /// NAT64: an ICMPv6 error about a connection, translated into an
    /// ICMPv4 error for the real server.
    Nat64Icmp6To4 {
        /// Ethernet header length.
        l2_len: usize,
        /// The translation.
        t: crate::fwd::nat64::Icmp6To4,
    },
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

/// Whether `snapshot` can end a connection by configuration: with
/// `expire_nodest_conn`, or a service with `expire_quiescent` (see
/// [`Processor::expired_by_config`]).
fn config_expires_conns(snapshot: &Snapshot) -> bool {
    snapshot.expire_nodest_conn || snapshot.services.iter().any(|s| s.expire_quiescent)
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

/// One worker's packet-path state.
pub struct Processor<F> {
    worker: usize,
    workers: usize,
    snapshot: Arc<Snapshot>,
    /// Whether the snapshot in use can end a connection by configuration
    /// (`expire_nodest_conn`, or a service with `expire_quiescent`); when
    /// not, [`Processor::expired_by_config`] needs no look at a
    /// connection's service and real server.
    config_expires_conns: bool,
    schedulers: Vec<Box<dyn Scheduler>>,
    counts: Vec<ServiceCounts>,
    conns: ConnTable,
    neigh: NeighTable<F>,
    pool: LocalPool,
    flow_owners: HashMap<FlowKey, u16>,
    templates: HashMap<(ServiceKey, IpAddr), Template>,
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
    /// Next hops cached for connections ([`crate::neigh::hops`]).
    hops: NextHops,
    /// The cached next hop (index into `hops`) and tunnel path towards each
    /// real server, per service.
    real_hops: Vec<Vec<egress::RealHop>>,
    /// The parse stage's descriptors of the burst in hand ([`pipeline`]).
    descs: Vec<Option<pipeline::Desc>>,
    /// The NIC's IPv4 header checksum verdict on the frame being classified.
    rx_csum: RxChecksum,
    /// Whether the worker is under a SYN flood's pressure ([`pressure`]).
    pressure: pressure::Pressure,
    /// The SYN proxy's secret and handshakes in progress ([`synproxy`]).
    proxy: synproxy::ProxyState<F>,
    /// IPv6 and NAT64 connections ([`ipv6`]).
    conns6: ConnTable6,
    /// IPv6 neighbours.
    neigh6: crate::neigh::NeighTable6<F>,
    /// IPv6 FULLNAT local ports of this worker.
    pool6: LocalPool<SockV6>,
    /// Owners of IPv6 keys, as the other workers announced them.
    flow_owners6: HashMap<FlowKey6, u16>,
    /// IPv6 neighbours to solicit after a tick.
    requests6: Vec<(std::net::Ipv6Addr, u16)>,
    /// IPv6 connections removed by an expiry sweep or an insert.
    removed6: Vec<Conn6>,
    /// The neighbour advertisement answering the solicitation in hand.
    nd_reply: [u8; ipv6::ND_REPLY_LEN],
    /// The wall clock of FULLNAT initial sequence numbers ([`flow::IsnClock`]).
    isn_clock: flow::IsnClock,
}

/// The IPv6 table's default size, as a fraction of the IPv4 table's: a
/// sixteenth of `conn_table_size` (at least [`MIN_CONN_CAPACITY6`]), so an
/// appliance that serves little IPv6 pays about 7 bytes per IPv4 connection
/// for it; `conn_table_size_ipv6` sets it for one that serves more.
pub const CONN_CAPACITY6_DIVISOR: usize = 16;

/// The smallest IPv6 connection table.
pub const MIN_CONN_CAPACITY6: usize = 1024;

/// The IPv6 table's size when none is given: a sixteenth of the IPv4
/// table's, at least [`MIN_CONN_CAPACITY6`].
pub fn default_capacity6(conn_capacity: usize) -> usize {
    (conn_capacity / CONN_CAPACITY6_DIVISOR).clamp(MIN_CONN_CAPACITY6, crate::conn::MAX_CAPACITY)
}

impl<F: Frame> Processor<F> {
    /// A single worker's processor running on `snapshot` with room for
    /// `conn_capacity` connections.
    pub fn new(snapshot: Arc<Snapshot>, conn_capacity: usize) -> Self {
        Self::for_worker(snapshot, conn_capacity, 0, 1)
    }

    /// The processor of worker `worker` out of `workers`, its IPv6 table
    /// sized by [`default_capacity6`].
    pub fn for_worker(snapshot: Arc<Snapshot>, conn_capacity: usize, worker: usize, workers: usize) -> Self {
        Self::for_worker_sized(snapshot, conn_capacity, default_capacity6(conn_capacity), worker, workers)
    }

    /// The processor of worker `worker` out of `workers` with room for
    /// `conn_capacity` IPv4 and `conn_capacity6` IPv6 connections.
    pub fn for_worker_sized(snapshot: Arc<Snapshot>, conn_capacity: usize, conn_capacity6: usize, worker: usize, workers: usize) -> Self {
        let schedulers = snapshot.services.iter().map(new_scheduler_for).collect();
        let counts = snapshot.services.iter().map(|s| fresh_counts(s.reals.len())).collect();
        let real_hops = snapshot.services.iter().map(|s| vec![egress::RealHop::NONE; s.reals.len()]).collect();
        let mut counters = Counters::default();
        counters.set(Counter::Generation, snapshot.generation);
        let pool = LocalPool::new(worker, workers, snapshot.local_port_range);
        let frag_limits = snapshot.frag_limits;
        let mut neigh = NeighTable::new();
        neigh.set_max_held(snapshot.neigh_max_held);
        let mut neigh6 = crate::neigh::NeighTable6::new();
        neigh6.set_max_held(snapshot.neigh_max_held);
        let pool6 = LocalPool::of_family(worker, workers, snapshot.local_port_range);
        let capacity6 = conn_capacity6.clamp(1, crate::conn::MAX_CAPACITY);
        let mut processor = Processor {
            worker,
            workers: workers.max(1),
            config_expires_conns: config_expires_conns(&snapshot),
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
            descs: Vec::with_capacity(64),
            hops: NextHops::new(),
            real_hops,
            rx_csum: RxChecksum::Unknown,
            pressure: Default::default(),
            proxy: Default::default(),
            conns6: ConnTable6::new(capacity6),
            neigh6,
            pool6,
            flow_owners6: HashMap::new(),
            requests6: Vec::with_capacity(16),
            removed6: Vec::with_capacity(EXPIRE_BUDGET),
            nd_reply: [0; ipv6::ND_REPLY_LEN],
            isn_clock: Default::default(),
        };
        processor.set_pressure_limits();
        processor
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
            let mut pool6: LocalPool<SockV6> = LocalPool::of_family(self.worker, self.workers, snapshot.local_port_range);
            for (_, c) in self.conns6.iter() {
                match c.local.get() {
                    Some(l) if l.is_mapped() => {
                        if let Some(l4) = l.to_mapped_v4() {
                            self.pool.reserve(l4);
                        }
                    }
                    Some(l) => pool6.reserve(l),
                    None => {}
                }
            }
            self.pool6 = pool6;
        }
        self.reassembler.set_limits(snapshot.frag_limits);
        self.neigh.set_max_held(snapshot.neigh_max_held);
        self.neigh6.set_max_held(snapshot.neigh_max_held);
        self.config_expires_conns = config_expires_conns(&snapshot);
        let old = std::mem::replace(&mut self.snapshot, snapshot);
        self.set_pressure_limits();
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
        // Routes, ports and MTUs may have changed: cached next hops start over.
        self.hops.clear();
        self.real_hops = self.snapshot.services.iter().map(|s| vec![egress::RealHop::NONE; s.reals.len()]).collect();
        self.counters.inc(Counter::SnapshotsAdopted);
        self.counters.set(Counter::Generation, self.snapshot.generation);
        old
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

    /// A complete fragmented datagram (IPv4 or IPv6): its first fragment
    /// takes the normal path (without TOA, which would move the other
    /// fragments' offsets), the others follow its verdict with its rewritten
    /// addresses. NAT64 does not translate fragments: they are dropped.
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
            Action::Toa6 { hop, .. } => Action::Forward6(hop),
            Action::Reply | Action::Fragment { .. } => Action::Drop(Counter::DropFragment),
            Action::Nat64In { .. } | Action::Nat64Out { .. } | Action::Nat64Icmp4To6 { .. } | Action::Nat64Icmp6To4 { .. } => {
                Action::Drop(Counter::DropFragment)
            }
            other => other,
        };
        let leader = frag::leader_of(first.data(), l2_len);
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
                Action::Answer { reason, .. } | Action::Answer6 { reason, .. } => Action::Drop(reason),
                Action::SynProxy(_) => Action::Drop(Counter::DropFragment),
                other => other,
            };
            self.apply(port, f, action, now_ms, out);
        }
    }

    /// Carries out `action` on `frame`, received on `port`. A connection's
    /// rewritten packet (the common case) goes straight to its send, inlined
    /// in the caller; every other action is [`Processor::apply_other`]'s.
    #[inline(always)]
    fn apply(&mut self, port: u16, frame: F, action: Action, now_ms: u64, out: &mut Output<F>) {
        match action {
            Action::ForwardCached { hop, cache, index } => self.send_through_hop(frame, index, hop, cache, now_ms, out),
            Action::Tunnel { l2_len, real, vip, cache } => self.tunnel(frame, l2_len, real, vip, cache, now_ms, out),
            other => self.apply_other(port, frame, other, now_ms, out),
        }
    }

    /// [`Processor::apply`] for the actions it does not inline.
    #[inline(never)]
    fn apply_other(&mut self, port: u16, mut frame: F, action: Action, now_ms: u64, out: &mut Output<F>) {
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
            Action::ForwardCached { hop, cache, index } => self.send_through_hop(frame, index, hop, cache, now_ms, out),
            Action::Tunnel { l2_len, real, vip, cache } => self.tunnel(frame, l2_len, real, vip, cache, now_ms, out),
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
            Action::SynProxy(step) => self.syn_proxy_apply(port, frame, step, now_ms, out),
            Action::ReplyNd { len } => self.reply_nd(port, frame, len, out),
            Action::Forward6(hop) => self.send6(frame, hop, now_ms, out),
            Action::Answer6 { reason, l2_len, from, msg_type, code, rest } => {
                self.answer6(frame, reason, l2_len, from, msg_type, code, rest, now_ms, out)
            }
            Action::Toa6 { l2_len, client, hop } => self.toa6(frame, l2_len, client, hop, now_ms, out),
            Action::Tunnel6 { l2_len, real, vip } => self.tunnel6(frame, l2_len, real, vip, now_ms, out),
            Action::Nat64In { l2_len, local, real, seq_delta, toa } => {
                self.nat64_in(frame, l2_len, local, real, seq_delta, toa, now_ms, out)
            }
            Action::Nat64Out { l2_len, vip, client, seq_delta } => self.nat64_out(frame, l2_len, vip, client, seq_delta, now_ms, out),
            Action::Tunnel4in6 { l2_len, real, vip } => self.tunnel_4in6(frame, l2_len, real, vip, now_ms, out),
            Action::Nat64Icmp4To6 { l2_len, t } => self.nat64_icmp_to6(frame, l2_len, &t, now_ms, out),
            Action::Nat64Icmp6To4 { l2_len, t } => self.nat64_icmp_to4(frame, l2_len, &t, now_ms, out),
        }
    }

    /// The port a TCP/UDP packet with a partial checksum last arrived on
    /// since the previous call (for a rate-limited log line naming it).
    pub fn take_partial_csum_port(&mut self) -> Option<u16> {
        self.partial_csum_port.take()
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
            // IPv4 multicast (VRRP adverts, IGMP) is the kernel's business;
            // IPv6 multicast may be a neighbour solicitation for us.
            return match eth.ethertype() {
                ethertype::IPV4 => self.local(port),
                ethertype::IPV6 => self.handle_ipv6(port, port_mac, data, l2_len, now_ms, redirected, out),
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
            ethertype::IPV6 if dst == port_mac => self.handle_ipv6(port, port_mac, data, l2_len, now_ms, redirected, out),
            ethertype::IPV6 => Action::Drop(Counter::DropNotForUs),
            _ => Action::Drop(Counter::DropUnsupported),
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
        let (kind, nic_checked) = flow::parse_ipv4(ip_bytes, self.whole_datagram, self.rx_csum);
        if nic_checked {
            self.counters.inc(Counter::RxIpv4CsumHw);
        }
        let pkt = match kind {
            Ipv4Kind::Flow(pkt) => pkt,
            Ipv4Kind::Drop(reason) => return Action::Drop(reason),
            Ipv4Kind::Fragment => return Action::Fragment { l2_len },
            Ipv4Kind::IcmpError => return self.handle_icmp_error(port, data, l2_len, now_ms, redirected),
            Ipv4Kind::Icmp { dst } => return self.handle_icmp(port, port_mac, data, l2_len, dst),
            Ipv4Kind::Other { dst } => return self.not_balanced(port, dst),
        };
        self.complete_partial_checksum(port, ip_bytes, &pkt);
        let hash = self.conns.hash(&pkt.key);
        self.flow_packet(port, ip_bytes, l2_len, &pkt, hash, now_ms, redirected, out)
    }
}

#[cfg(test)]
mod tests;
