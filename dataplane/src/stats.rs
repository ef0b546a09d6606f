//! Per-core counters.
//!
//! A worker counts into a plain array it owns (no atomics on the packet path) and
//! every so often copies it into its [`SharedCounters`] with relaxed atomic
//! stores, which the control plane reads. Readers may see a counter set that is
//! up to one publication interval old; they never block the worker.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($variant:ident => $name:literal: $doc:literal,)*) => {
        /// Every counter a worker keeps.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(usize)]
        pub enum Counter {
            $(#[doc = $doc] $variant,)*
        }

        impl Counter {
            /// Every counter, in index order.
            pub const ALL: &'static [Counter] = &[$(Counter::$variant,)*];
            /// Number of counters.
            pub const COUNT: usize = Counter::ALL.len();

            /// The counter's name in listings and metrics.
            pub fn name(self) -> &'static str {
                match self {
                    $(Counter::$variant => $name,)*
                }
            }
        }
    };
}

counters! {
    RxPackets => "rx_packets": "Frames received.",
    RxBytes => "rx_bytes": "Bytes received.",
    TxPackets => "tx_packets": "Frames handed to a tx queue.",
    TxBytes => "tx_bytes": "Bytes handed to a tx queue.",
    TxQueueFull => "drop_tx_queue_full": "Frames dropped because the tx queue was full.",
    DropMalformed => "drop_malformed": "Frames dropped as truncated or malformed.",
    DropBadChecksum => "drop_bad_checksum": "IPv4 packets dropped for a bad header checksum.",
    DropNotForUs => "drop_not_for_us": "Frames for another host or an address that is neither ours nor a VIP.",
    DropUnsupported => "drop_unsupported": "Frames of a protocol rvs does not handle (IPv6, other ethertypes, IP options we cannot forward).",
    DropFragment => "drop_fragment": "Fragments of complete datagrams that are not balanced traffic rvs answers (e.g. a fragmented ping to the director), and fragments of NAT64 datagrams, which are not translated.",
    DropMultiSegment => "drop_multi_segment": "Multi-segment mbufs (jumbo chains are not handled yet).",
    DropNoService => "drop_no_service": "Packets to a VIP on a port without a virtual service.",
    DropNoConnection => "drop_no_connection": "TCP packets without a connection that are not a SYN.",
    DropNoRealServer => "drop_no_real_server": "New connections refused: no real server available (answered with ICMP port unreachable, as IPVS ip_vs_leave).",
    DropConnTableFull => "drop_conn_table_full": "New connections refused: connection table full.",
    DropNoRoute => "drop_no_route": "Packets without a route to their next hop.",
    DropNeighQueueFull => "drop_neigh_queue_full": "Packets dropped while their next hop's ARP queue, or the worker's total held for ARP, was full.",
    DropNeighUnresolved => "drop_neigh_unresolved": "Queued packets dropped because their next hop never answered ARP.",
    DropLocal => "drop_local": "Packets to our own addresses that the dataplane does not answer itself.",
    ArpRequestsIn => "arp_requests_in": "ARP requests for our addresses or VIPs answered.",
    ArpRepliesIn => "arp_replies_in": "ARP replies received.",
    ArpRequestsOut => "arp_requests_out": "ARP requests sent to resolve next hops.",
    IcmpEchoReplies => "icmp_echo_replies": "ICMP echo requests to our addresses answered.",
    NeighQueued => "neigh_queued": "Packets queued while their next hop was resolved.",
    ConnCreated => "conn_created": "Connections created.",
    ConnExpired => "conn_expired": "Connections removed by their idle timeout.",
    ConnActive => "conn_active": "Connections in the table now (a gauge).",
    InboundPackets => "fwd_inbound_packets": "Packets forwarded client to real server.",
    ReplyPackets => "fwd_reply_packets": "Packets forwarded real server to client (NAT replies).",
    SnapshotsAdopted => "snapshots_adopted": "Configuration snapshots adopted.",
    Generation => "generation": "Generation of the snapshot in use (a gauge).",
    MempoolAllocFailed => "mempool_alloc_failed": "Frames the dataplane wanted to originate but had no mbuf for.",
    DropNoLocalPort => "drop_no_local_port": "New FULLNAT connections refused: local address/port pool exhausted.",
    DropTooBig => "drop_too_big": "Packets too big for the egress MTU (answered with ICMP fragmentation needed).",
    DropNoRoom => "drop_no_room": "Packets that could not grow (no headroom/tailroom or no buffer for a fragment).",
    RedirectOut => "redirect_out": "Packets handed to the worker that owns their connection.",
    RedirectIn => "redirect_in": "Packets received from another worker that owns their connection.",
    RedirectDropped => "drop_redirect_ring_full": "Packets dropped because the ring to their owner was full.",
    MessagesOut => "messages_out": "Messages sent to other workers (neighbours, reply keys).",
    MessagesDropped => "messages_dropped": "Messages to other workers dropped because their ring was full.",
    IcmpErrorsForwarded => "icmp_errors_forwarded": "ICMP errors of a connection forwarded with translation.",
    IcmpErrorsSent => "icmp_errors_sent": "ICMP errors originated (fragmentation needed, time exceeded, port unreachable).",
    TunFragments => "tun_fragments": "Extra fragments made of tunnel packets above the MTU.",
    ToaInserted => "toa_inserted": "TOA options inserted into FULLNAT connections.",
    DropNoDest => "drop_expire_nodest": "Packets of connections whose real server was removed (expire_nodest_conn; TCP ones are answered with a reset).",
    DropQuiescent => "drop_expire_quiescent": "Packets of connections to a weight-0 real server of a service with expire_quiescent.",
    DropStandby => "drop_standby_vip": "Packets to a VIP this node does not serve now (VRRP backup).",
    KernelIn => "kernel_in": "Frames passed to the kernel through the exception path.",
    KernelOut => "kernel_out": "Frames the kernel sent through the exception path.",
    DropKernel => "drop_kernel_queue_full": "Frames to or from the kernel dropped (TAP queue full).",
    ConnSynced => "conn_synced_in": "Connections installed from the sync master.",
    ConnSuperseded => "conn_superseded": "Connections removed because a newer one on another worker took their key (a client reusing its port).",
    SyncOut => "conn_synced_out": "Connection updates handed to the sync sender.",
    SyncDropped => "conn_sync_dropped": "Connection updates dropped because the sync ring was full.",
    DropLinkDown => "drop_link_down": "Frames for a port whose link is down, dropped instead of being sent late.",
    ArpIgnored => "arp_ignored": "ARP frames neither for us nor a reply we learn from (e.g. another host's gratuitous ARP).",
    FragReassembled => "frag_reassembled": "Fragmented datagrams completed and forwarded (their fragments follow the first one's verdict).",
    FragTimeout => "frag_timeout": "Incomplete fragmented datagrams dropped after the fragment timeout.",
    DropFragTableFull => "drop_frag_table_full": "Fragments of new datagrams refused: the worker already holds its maximum of incomplete datagrams.",
    DropFragTooMany => "drop_frag_too_many": "Fragmented datagrams dropped for having more than the maximum fragments.",
    DropFragBad => "drop_frag_bad": "Fragmented datagrams dropped for an overlapping, misaligned, oversized or conflicting fragment.",
    FragOut => "frag_out": "Extra fragments made of packets above the egress MTU (not tunnel packets: tun_fragments).",
    DropNoLaddr => "drop_no_laddr": "New connections to a FULLNAT real server of a service without local addresses (add them with rvsadm -P ... -z).",
    DropTtlExceeded => "drop_ttl_exceeded": "Packets that arrived with TTL 0 or 1 (answered with ICMP time exceeded, as IPVS and any router do).",
    TcpResetsSent => "tcp_resets_sent": "TCP resets sent to clients whose connection expire_nodest_conn ended.",
    AnswersRateLimited => "answers_rate_limited": "ICMP errors and TCP resets not sent: over the per-worker rate limit (1000/s, burst 50).",
    DropVlanForeign => "drop_vlan_foreign": "Frames whose 802.1Q tag (or its absence) does not match the receiving port's vlan.",
    RxL4CsumPartial => "rx_l4_csum_partial": "TCP/UDP packets received with a partial checksum (the sender's checksum offload, e.g. a veth with tx on), completed before forwarding.",
    ArpRepliesConsumed => "arp_replies_consumed": "ARP replies used up by the dataplane after learning from them (the port has no exception path).",
    BusyCycles => "busy_cycles": "TSC cycles the worker spent in poll iterations that handled at least one frame (rx, redirected or from the kernel); busy_cycles / busy_frames = cycles per packet, / tsc_hz = busy seconds.",
    BusyFrames => "busy_frames": "Frames handled in the iterations busy_cycles counts (NIC rx, redirected from other workers, from the kernel).",
    ConnAdopted => "conn_adopted": "Connections created in ESTABLISHED from a mid-stream TCP packet (sloppy services: a flow ECMP moved here from another node).",
    SynCookieSent => "syn_cookie_sent": "SYN-ACKs carrying a SYN cookie sent to clients (SYN proxy): no connection was created for their SYN.",
    SynCookieAckValid => "syn_cookie_ack_valid": "ACKs with a valid SYN cookie: a connection was created and its handshake with the real server started.",
    SynCookieAckInvalid => "syn_cookie_ack_invalid": "ACKs to a SYN proxy service matching no connection and carrying no valid cookie (dropped).",
    SynProxyHandshakeFailed => "syn_proxy_handshake_failed": "Proxied handshakes the real server refused (its RST was sent on to the client) or never answered.",
    SynProxyDataDropped => "syn_proxy_data_dropped": "Client packets dropped while their proxied handshake was in progress, over the bound of packets held (the client sends them again).",
    ConnEvictedSynRecv => "conn_evicted_syn_recv": "SYN_RECV connections evicted to make room in a full table (syn_flood.drop_entry, IPVS drop_entry).",
    DropNewConnRate => "drop_new_conn_rate": "New connections refused under pressure: their source prefix passed syn_flood.new_conns_per_prefix_per_sec.",
    SynFloodPressure => "syn_flood_pressure": "1 while the worker is under SYN-flood table pressure (syn_flood thresholds), else 0 (a gauge).",
    SynFloodPressureOn => "syn_flood_pressure_on": "Times the worker came under SYN-flood table pressure.",
    ConnSynRecv => "conn_syn_recv": "TCP connections in SYN_RECV in the table now (a gauge).",
    ConnSynRecvShortened => "conn_syn_recv_shortened": "SYN_RECV connections whose timer was cut to syn_flood.syn_recv_timeout_under_pressure under pressure.",
    RxIpv4CsumHw => "rx_ipv4_csum_hw": "IPv4 headers whose checksum the receiving NIC verified (RX checksum offload), good or bad: the software check was skipped.",
    NdSolicitsIn => "nd_solicits_in": "IPv6 neighbour solicitations for our addresses, VIPs and local addresses, answered.",
    NdAdvertsIn => "nd_adverts_in": "IPv6 neighbour advertisements received (neighbours learned or confirmed).",
    NdSolicitsOut => "nd_solicits_out": "IPv6 neighbour solicitations sent (resolving or confirming a next hop).",
    NdDuplicates => "nd_duplicate_addresses": "Another node claimed one of our IPv6 addresses (duplicate address detection, or its advertisement).",
    DropNdInvalid => "drop_nd_invalid": "IPv6 neighbour discovery messages that fail RFC 4861's checks (hop limit, checksum, code, target, options).",
    DropIpv4Mapped => "drop_ipv4_mapped": "IPv6 packets from or to an IPv4-mapped address (::ffff:a.b.c.d), which rvs keeps for NAT64 connections.",
    Nat64Packets => "nat64_packets": "Packets translated between IPv6 and IPv4 (NAT64), both ways.",
    ConnActive6 => "conn_active_ipv6": "IPv6 and NAT64 connections in the table now (a gauge).",
    DropNat64Untranslatable => "drop_nat64_untranslatable": "ICMP errors about a NAT64 connection that RFC 7915 does not translate between IPv4 and IPv6 (source quench, redirects, codes without an equivalent), dropped.",
}

/// A worker's own counters: plain integers, written only by that worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counters {
    values: [u64; Counter::COUNT],
}

impl Default for Counters {
    fn default() -> Self {
        Counters { values: [0; Counter::COUNT] }
    }
}

impl Counters {
    /// Adds one.
    #[inline]
    pub fn inc(&mut self, c: Counter) {
        self.values[c as usize] = self.values[c as usize].wrapping_add(1);
    }

    /// Adds `n`.
    #[inline]
    pub fn add(&mut self, c: Counter, n: u64) {
        self.values[c as usize] = self.values[c as usize].wrapping_add(n);
    }

    /// Sets a gauge.
    #[inline]
    pub fn set(&mut self, c: Counter, v: u64) {
        self.values[c as usize] = v;
    }

    /// Reads one counter.
    pub fn get(&self, c: Counter) -> u64 {
        self.values[c as usize]
    }

    /// `(name, value)` for every counter.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        Counter::ALL.iter().map(move |&c| (c.name(), self.get(c)))
    }
}

/// A worker's counters as the control plane reads them.
#[derive(Debug)]
pub struct SharedCounters {
    values: [AtomicU64; Counter::COUNT],
    /// How many times the worker published: it advances as long as the poll
    /// loop goes round (the systemd watchdog is fed only while it does).
    heartbeat: AtomicU64,
}

impl Default for SharedCounters {
    fn default() -> Self {
        SharedCounters { values: std::array::from_fn(|_| AtomicU64::new(0)), heartbeat: AtomicU64::new(0) }
    }
}

impl SharedCounters {
    /// Copies the worker's counters (relaxed stores: no read-modify-write).
    pub fn publish(&self, from: &Counters) {
        for (slot, v) in self.values.iter().zip(from.values.iter()) {
            slot.store(*v, Ordering::Relaxed);
        }
        // Only the owning worker writes it: a load and a store, no read-modify-write.
        self.heartbeat.store(self.heartbeat.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
    }

    /// The number of publications so far (see the field's docs).
    pub fn heartbeat(&self) -> u64 {
        self.heartbeat.load(Ordering::Relaxed)
    }

    /// A copy of the last published counters.
    pub fn read(&self) -> Counters {
        let mut c = Counters::default();
        for (v, slot) in c.values.iter_mut().zip(self.values.iter()) {
            *v = slot.load(Ordering::Relaxed);
        }
        c
    }
}

/// Busy-cycle accounting of a poll loop: the TSC at the start of an iteration,
/// and at its end the cycles since then go to [`Counter::BusyCycles`] (with
/// the frames to [`Counter::BusyFrames`]) if the iteration handled any frame.
/// Idle polls cost one TSC read and count nothing. Plain integers, written by
/// the worker only: published with its other counters.
#[derive(Clone, Copy, Debug, Default)]
pub struct BusyMeter {
    started: u64,
}

impl BusyMeter {
    /// An iteration starts at TSC `now`.
    #[inline]
    pub fn start(&mut self, now: u64) {
        self.started = now;
    }

    /// The iteration that started last ends at TSC `now` having handled
    /// `frames` frames: counts its cycles if it handled any, through `add`
    /// (e.g. [`Counters::add`] or the processor's `count`).
    #[inline]
    pub fn end(&mut self, now: u64, frames: usize, mut add: impl FnMut(Counter, u64)) {
        if frames == 0 {
            return;
        }
        add(Counter::BusyCycles, now.wrapping_sub(self.started));
        add(Counter::BusyFrames, frames as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_cycles_count_only_iterations_that_handled_frames() {
        let mut c = Counters::default();
        let mut m = BusyMeter::default();
        m.start(1_000);
        m.end(1_400, 32, |k, n| c.add(k, n));
        m.start(1_400);
        m.end(1_450, 0, |k, n| c.add(k, n)); // an idle poll
        m.start(2_000);
        m.end(2_100, 8, |k, n| c.add(k, n));
        assert_eq!(c.get(Counter::BusyCycles), 500);
        assert_eq!(c.get(Counter::BusyFrames), 40);
        // A TSC that wrapped between start and end still gives the elapsed cycles.
        m.start(u64::MAX - 9);
        m.end(10, 1, |k, n| c.add(k, n));
        assert_eq!(c.get(Counter::BusyCycles), 520);
        let shared = SharedCounters::default();
        shared.publish(&c);
        assert_eq!(shared.read().get(Counter::BusyCycles), 520);
        assert_eq!(shared.read().get(Counter::BusyFrames), 41);
    }

    #[test]
    fn names_are_unique_and_publication_copies_values() {
        let mut names: Vec<_> = Counter::ALL.iter().map(|c| c.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Counter::COUNT);

        let mut c = Counters::default();
        c.inc(Counter::RxPackets);
        c.add(Counter::RxBytes, 60);
        c.set(Counter::ConnActive, 7);
        let shared = SharedCounters::default();
        shared.publish(&c);
        assert_eq!(shared.read(), c);
        assert_eq!(shared.read().get(Counter::RxBytes), 60);
    }
}

/// Traffic counters of one real server of one service (summed over workers
/// when reported by the control plane).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TrafficCounters {
    /// Connections scheduled.
    pub conns: u64,
    /// Packets client → real server.
    pub in_pkts: u64,
    /// Packets real server → client that passed through rvs (NAT, FULLNAT).
    pub out_pkts: u64,
    /// Bytes client → real server (IP length).
    pub in_bytes: u64,
    /// Bytes real server → client that passed through rvs.
    pub out_bytes: u64,
}

impl TrafficCounters {
    /// Adds another set of counters.
    pub fn add(&mut self, o: &TrafficCounters) {
        self.conns += o.conns;
        self.in_pkts += o.in_pkts;
        self.out_pkts += o.out_pkts;
        self.in_bytes += o.in_bytes;
        self.out_bytes += o.out_bytes;
    }
}

/// One real server's counters and connection counts.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RealStats {
    /// Real server address.
    pub addr: std::net::IpAddr,
    /// Real server port.
    pub port: u16,
    /// Traffic.
    #[serde(flatten)]
    pub traffic: TrafficCounters,
    /// Connections in ESTABLISHED.
    pub active: u32,
    /// Other connections.
    pub inactive: u32,
    /// Over its upper connection threshold (as this worker sees it).
    #[serde(default)]
    pub overloaded: bool,
}

/// One virtual service's counters: the sum of its real servers', plus theirs.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ServiceStats {
    /// The service.
    pub key: crate::snapshot::ServiceKey,
    /// Traffic, summed over the real servers.
    #[serde(flatten)]
    pub traffic: TrafficCounters,
    /// Per real server.
    pub reals: Vec<RealStats>,
}

/// One entry of the connection table as listings show it (`ipvsadm -Lnc`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConnInfo {
    /// The worker that owns it.
    pub worker: u16,
    /// `tcp` or `udp`.
    pub protocol: crate::snapshot::Protocol,
    /// Client address and port.
    pub client: std::net::SocketAddr,
    /// Virtual address and port.
    pub vip: std::net::SocketAddr,
    /// Real server address and port (IPv4 for a NAT64 connection).
    pub real: std::net::SocketAddr,
    /// FULLNAT local address and port (IPv4 for a NAT64 connection).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local: Option<std::net::SocketAddr>,
    /// Forwarding method.
    pub forward: crate::snapshot::ForwardMode,
    /// IPVS state name (`ESTABLISHED`, `SYN_RECV`, ..., `UDP`, or `NONE` for a
    /// persistence template). rvs's own names are borrowed, so building an
    /// entry allocates nothing; in JSON it is a plain string.
    pub state: Cow<'static, str>,
    /// Milliseconds until it expires if idle.
    pub expires_ms: u64,
    /// True for a persistence template (client port 0, as ipvsadm shows them).
    #[serde(default)]
    pub template: bool,
    /// FULLNAT TCP: the sequence offset towards the real server (connection
    /// sync carries it, so a backup keeps shifting the same way).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub seq_delta: u32,
    /// SYN-proxied TCP: the proxy's translation (`phase` `handshake` while
    /// the real server's handshake is in progress, `open` after; absent for
    /// connections that are not proxied). Connection sync carries open ones,
    /// and never sends pending ones (their held packets cannot be synced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syn_proxy: Option<crate::synproxy::Translation>,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

/// Which connections to list.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnFilter {
    /// Only this service.
    pub service: Option<crate::snapshot::ServiceKey>,
    /// Only connections to this real server address.
    pub real: Option<std::net::IpAddr>,
    /// Only connections from this client address.
    pub client: Option<std::net::IpAddr>,
    /// Only connections in this state (IPVS name).
    pub state: Option<String>,
    /// Include persistence templates.
    pub templates: bool,
}

impl ConnFilter {
    /// True when `c` passes the filter.
    pub fn matches(&self, c: &ConnInfo) -> bool {
        self.matches_entry(&ConnEntry {
            protocol: c.protocol,
            client: c.client.ip(),
            vip: c.vip,
            real: c.real.ip(),
            state: &c.state,
            template: c.template,
        })
    }

    /// True when the entry whose fields `e` shows passes the filter: the same
    /// test as [`ConnFilter::matches`], without building a [`ConnInfo`].
    pub fn matches_entry(&self, e: &ConnEntry<'_>) -> bool {
        (self.templates || !e.template)
            && self.service.is_none_or(|k| k.protocol == e.protocol && k.vip == e.vip.ip() && k.port == e.vip.port())
            && self.real.is_none_or(|r| r == e.real)
            && self.client.is_none_or(|a| a == e.client)
            && self.state.as_ref().is_none_or(|s| s.eq_ignore_ascii_case(e.state))
    }
}

/// The fields of a connection (or template) a [`ConnFilter`] looks at,
/// borrowed from wherever the entry lives.
#[derive(Clone, Copy, Debug)]
pub struct ConnEntry<'a> {
    /// `tcp` or `udp`.
    pub protocol: crate::snapshot::Protocol,
    /// Client address (a template's client network).
    pub client: std::net::IpAddr,
    /// Virtual address and port.
    pub vip: std::net::SocketAddr,
    /// Real server address.
    pub real: std::net::IpAddr,
    /// IPVS state name.
    pub state: &'a str,
    /// A persistence template.
    pub template: bool,
}

/// Table slots a worker looks at per listing request: a few hundred
/// microseconds of its forwarding core, after which it goes back to packets.
pub const CONN_SCAN_SLOTS: usize = 65_536;

/// One bounded step of a connection listing, answered by a worker between two
/// bursts: look at table slots `cursor..cursor + budget`, count the entries
/// that match the filter and return those ranked `skip..skip + want` among
/// this step's matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnScan {
    /// First table slot to look at (0 to start).
    pub cursor: usize,
    /// Most table slots to look at (at least one is).
    pub budget: usize,
    /// Matches to count but not return, before the first one returned.
    pub skip: usize,
    /// Most matches to return after those skipped.
    pub want: usize,
}

/// A worker's answer to a [`ConnScan`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnChunk {
    /// Entries that matched in this step, returned or not.
    pub matched: usize,
    /// The matches ranked `skip..skip + want`, in table order.
    pub conns: Vec<ConnInfo>,
    /// The slot the next step starts at; `None` when this step reached the end
    /// of the table (and then also judged the persistence templates).
    pub next: Option<usize>,
}

/// Assembles one page of a listing from steps over one worker after another:
/// the matches ranked `offset..offset + limit` over all steps, in order, and
/// how many matched in all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnPager {
    offset: usize,
    limit: usize,
    total: usize,
    page: Vec<ConnInfo>,
}

impl ConnPager {
    /// An empty page: `limit` entries from rank `offset`.
    pub fn new(offset: usize, limit: usize) -> Self {
        ConnPager { offset, limit, total: 0, page: Vec::new() }
    }

    /// The scan to send next, at table slot `cursor`: its window continues
    /// the page where the steps so far left it.
    pub fn scan(&self, cursor: usize, budget: usize) -> ConnScan {
        ConnScan { cursor, budget, skip: self.offset.saturating_sub(self.total), want: self.limit.saturating_sub(self.page.len()) }
    }

    /// Takes in the answer to the last [`ConnPager::scan`]; returns the
    /// worker's next cursor (`None`: this worker is done).
    pub fn add(&mut self, chunk: ConnChunk) -> Option<usize> {
        self.total = self.total.saturating_add(chunk.matched);
        let room = self.limit.saturating_sub(self.page.len());
        self.page.extend(chunk.conns.into_iter().take(room));
        chunk.next
    }

    /// Matches so far.
    pub fn total(&self) -> usize {
        self.total
    }

    /// The page and the total.
    pub fn finish(self) -> (Vec<ConnInfo>, usize) {
        (self.page, self.total)
    }
}
