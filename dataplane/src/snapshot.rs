//! The immutable configuration a worker runs on.
//!
//! The control plane validates its config, builds a [`Snapshot`] and sends an
//! `Arc<Snapshot>` to every worker. A worker adopts a new snapshot between two
//! bursts; it never sees a half-applied change. Everything a worker needs to
//! forward a packet lives here, already indexed for lookups.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hashbrown::HashMap;
use serde::{Deserialize, Serialize};

use crate::wire::MacAddr;

/// Transport protocol of a virtual service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP (`ipvsadm -t`).
    Tcp,
    /// UDP (`ipvsadm -u`).
    Udp,
}

impl Protocol {
    /// The IPv4 protocol number.
    pub fn ip_proto(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
        }
    }

    /// The protocol for an IPv4 protocol number, if rvs balances it.
    pub fn from_ip_proto(proto: u8) -> Option<Self> {
        match proto {
            6 => Some(Protocol::Tcp),
            17 => Some(Protocol::Udp),
            _ => None,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// How packets reach a real server (ipvsadm's `-g`, `-m`, `-i`; DPVS's `-b`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ForwardMode {
    /// Direct routing: only the destination MAC changes; the real server answers the client directly.
    Dr,
    /// Masquerading: destination NAT to the real server, replies rewritten back to the VIP.
    Nat,
    /// IPIP tunnelling: the packet is encapsulated to the real server, which answers directly.
    Tun,
    /// Full NAT: source and destination rewritten (client → local address and port).
    #[serde(alias = "fnat")]
    FullNat,
}

impl fmt::Display for ForwardMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ForwardMode::Dr => "dr",
            ForwardMode::Nat => "nat",
            ForwardMode::Tun => "tun",
            ForwardMode::FullNat => "fullnat",
        })
    }
}

/// Scheduling algorithm of a virtual service (ipvsadm's `-s`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SchedulerKind {
    /// Round robin over real servers with non-zero weight.
    Rr,
    /// Weighted round robin (IPVS's gcd-stepped algorithm).
    Wrr,
    /// Least connections: lowest `256·active + inactive`.
    Lc,
    /// Weighted least connections: lowest `(256·active + inactive) / weight`.
    Wlc,
    /// Shortest expected delay: lowest `(active + 1) / weight`.
    Sed,
    /// Never queue: an idle server if any, else as `sed`.
    Nq,
    /// Source hashing: 256-bucket weighted table by client address (and port).
    Sh,
    /// Destination hashing: 256-bucket table by destination address.
    Dh,
    /// Locality-based least connection: per-destination server, `wlc` when overloaded.
    Lblc,
    /// Locality-based least connection with replication: per-destination server sets.
    Lblcr,
    /// Weighted failover: the available server with the highest weight.
    Fo,
    /// Weighted overflow: the heaviest server with no more active connections than its weight.
    Ovf,
    /// Weighted random twos choice: the less loaded of two weighted random draws.
    Twos,
    /// IPVS's Maglev hashing (4093-entry table by default).
    Mh,
    /// Weighted Maglev consistent hashing, identical on every node (65537 entries by default).
    Maglev,
}

impl fmt::Display for SchedulerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SchedulerKind::Rr => "rr",
            SchedulerKind::Wrr => "wrr",
            SchedulerKind::Lc => "lc",
            SchedulerKind::Wlc => "wlc",
            SchedulerKind::Sed => "sed",
            SchedulerKind::Nq => "nq",
            SchedulerKind::Sh => "sh",
            SchedulerKind::Dh => "dh",
            SchedulerKind::Lblc => "lblc",
            SchedulerKind::Lblcr => "lblcr",
            SchedulerKind::Fo => "fo",
            SchedulerKind::Ovf => "ovf",
            SchedulerKind::Twos => "twos",
            SchedulerKind::Mh => "mh",
            SchedulerKind::Maglev => "maglev",
        })
    }
}

/// Identifies a virtual service: protocol, virtual address and port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ServiceKey {
    /// Transport protocol.
    pub protocol: Protocol,
    /// Virtual IP address (IPv4 or IPv6).
    pub vip: IpAddr,
    /// Virtual port.
    pub port: u16,
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}:{}", self.protocol, self.vip, self.port)
    }
}

/// A real server behind a virtual service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RealServer {
    /// Real server address: the VIP's family, or IPv4 behind an IPv6 VIP
    /// through FULLNAT (NAT64).
    pub addr: IpAddr,
    /// Real server port (equal to the virtual port in DR mode).
    pub port: u16,
    /// Scheduling weight; 0 means no new connections (quiescent).
    pub weight: u32,
    /// Forwarding method to this real server.
    pub forward: ForwardMode,
    /// Upper connection threshold (ipvsadm `-x`; 0 = none): at or above it the
    /// real server is overloaded and gets no new connections.
    pub upper_threshold: u32,
    /// Lower connection threshold (ipvsadm `-y`; 0 = 3/4 of the upper one): the
    /// overload ends below it.
    pub lower_threshold: u32,
}

impl RealServer {
    /// A real server without connection thresholds.
    pub fn new(addr: impl Into<IpAddr>, port: u16, weight: u32, forward: ForwardMode) -> Self {
        RealServer { addr: addr.into(), port, weight, forward, upper_threshold: 0, lower_threshold: 0 }
    }

    /// The address when it is IPv4 (every real server of an IPv4 service).
    pub fn addr_v4(&self) -> Option<Ipv4Addr> {
        v4(self.addr)
    }
}

/// A virtual service as a worker sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    /// Protocol, VIP and port.
    pub key: ServiceKey,
    /// Scheduling algorithm.
    pub scheduler: SchedulerKind,
    /// Scheduler options (hash fields, fallback, table size).
    pub sched_options: crate::sched::SchedOptions,
    /// Real servers in IPVS's list order (the most recently added first): the
    /// order the schedulers walk, hash into buckets and break ties in.
    pub reals: Vec<RealServer>,
    /// Persistence (ipvsadm `-p timeout -M netmask`, `-M prefix-length` for IPv6), if any.
    pub persistence: Option<Persistence>,
    /// FULLNAT local addresses (DPVS `laddr`), the sources towards real
    /// servers, IPv4 ones (the sources towards IPv4 real servers).
    pub local_addrs: Vec<Ipv4Addr>,
    /// FULLNAT IPv6 local addresses (the sources towards IPv6 real servers).
    pub local_addrs6: Vec<Ipv6Addr>,
    /// FULLNAT: insert the client's address as a TOA TCP option (kind 254).
    pub toa: bool,
    /// Expire connections of quiescent (weight 0) real servers instead of letting them finish.
    pub expire_quiescent: bool,
    /// Adopt mid-stream TCP packets without a connection (DR/TUN reals only):
    /// the connection is created in ESTABLISHED to the real server the
    /// consistent hash picks (a cluster node that ECMP moved the flow to).
    pub sloppy: bool,
    /// SYN proxy (DPVS/Keepalived `syn_proxy`): answer clients' SYNs with a
    /// SYN cookie and open the connection to the real server only on a valid
    /// cookie ACK (module `synproxy`). NAT and FULLNAT real servers only
    /// (the director must see both directions).
    pub syn_proxy: SynProxy,
    /// The `mh`/`maglev` lookup table for `reals` and `sched_options`, built by
    /// [`Snapshot::finish`] on the control plane and shared by every worker
    /// (`None`: the kind has none, or the snapshot was not finished and each
    /// worker builds its own).
    pub lookup_table: Option<crate::sched::LookupTable>,
}

impl Service {
    /// A service with these real servers and every option at its default.
    pub fn new(key: ServiceKey, scheduler: SchedulerKind, reals: Vec<RealServer>) -> Self {
        Service {
            key,
            scheduler,
            sched_options: Default::default(),
            reals,
            persistence: None,
            local_addrs: Vec::new(),
            local_addrs6: Vec::new(),
            toa: false,
            expire_quiescent: false,
            sloppy: false,
            syn_proxy: SynProxy::Off,
            lookup_table: None,
        }
    }
}

impl PortInfo {
    /// A port with the standard Ethernet MTU.
    pub fn new(name: impl Into<String>, mac: MacAddr) -> Self {
        PortInfo { name: name.into(), mac, mtu: 1500, kernel: false, vlan: None }
    }
}

/// Client affinity: connections from one client network within `timeout_s`
/// go to the same real server (IPVS persistence templates).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Persistence {
    /// How long a template lives after its last connection ends, in seconds.
    pub timeout_s: u32,
    /// The leading bits of a client's address that name its network
    /// (ipvsadm `-M`): the IPv4 netmask's length (32 = one client) for an
    /// IPv4 service, the prefix length (128 = one client) for an IPv6 one.
    pub prefix_len: u8,
}

impl Persistence {
    /// The client network of `client`: its first `prefix_len` bits, the
    /// rest zero (a length beyond the family's keeps the whole address).
    pub fn client_net(&self, client: IpAddr) -> IpAddr {
        match client {
            IpAddr::V4(a) => {
                let keep = u32::MAX.checked_shl(32u32.saturating_sub(u32::from(self.prefix_len))).unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(a) & keep))
            }
            IpAddr::V6(a) => {
                let keep = u128::MAX.checked_shl(128u32.saturating_sub(u32::from(self.prefix_len))).unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(a) & keep))
            }
        }
    }
}

/// An IPv4 address assigned to a dataplane port, with its connected prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InterfaceAddr {
    /// Index into [`Snapshot::ports`].
    pub port: u16,
    /// The address.
    pub addr: Ipv4Addr,
    /// Prefix length of the connected network.
    pub prefix_len: u8,
}

/// An IPv6 address assigned to a dataplane port, with its connected prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InterfaceAddr6 {
    /// Index into [`Snapshot::ports`].
    pub port: u16,
    /// The address.
    pub addr: Ipv6Addr,
    /// Prefix length of the connected network.
    pub prefix_len: u8,
}

/// An IPv6 route: packets to `prefix/prefix_len` leave on `port`, through
/// `via` when set (otherwise the destination is on-link).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route6 {
    /// Destination network.
    pub prefix: Ipv6Addr,
    /// Prefix length (0 = default route).
    pub prefix_len: u8,
    /// Gateway, or `None` for an on-link network.
    pub via: Option<Ipv6Addr>,
    /// Egress port index.
    pub port: u16,
}

impl Route6 {
    /// True when `addr` falls into this route's prefix.
    pub fn contains(&self, addr: Ipv6Addr) -> bool {
        prefix_contains6(self.prefix, self.prefix_len, addr)
    }
}

/// A dataplane port as the packet logic sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortInfo {
    /// Operator-given name (from the config).
    pub name: String,
    /// The port's MAC address (source of every frame we send on it).
    pub mac: MacAddr,
    /// IP MTU of the port (TUN mode answers "fragmentation needed" above it).
    pub mtu: u16,
    /// The port has an exception path: traffic for the appliance itself that
    /// the dataplane does not answer goes to the kernel through a TAP.
    pub kernel: bool,
    /// The 802.1Q VLAN the port is on: frames are received and sent with
    /// this tag, and frames with another tag (or none) are dropped. `None`:
    /// untagged.
    pub vlan: Option<u16>,
}

/// A route: packets to `prefix/prefix_len` leave on `port`, through `via` when set
/// (otherwise the destination itself is the next hop: a connected network).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// Destination network.
    pub prefix: Ipv4Addr,
    /// Prefix length (0 = default route).
    pub prefix_len: u8,
    /// Gateway, or `None` for an on-link network.
    pub via: Option<Ipv4Addr>,
    /// Egress port index.
    pub port: u16,
}

impl Route {
    /// True when `addr` falls into this route's prefix.
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        prefix_contains(self.prefix, self.prefix_len, addr)
    }
}

/// The address when it is IPv4.
pub fn v4(addr: IpAddr) -> Option<Ipv4Addr> {
    match addr {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(_) => None,
    }
}

/// The address when it is IPv6.
pub fn v6(addr: IpAddr) -> Option<Ipv6Addr> {
    match addr {
        IpAddr::V6(a) => Some(a),
        IpAddr::V4(_) => None,
    }
}

/// True when `addr` lies in `prefix/len` (IPv6).
pub fn prefix_contains6(prefix: Ipv6Addr, len: u8, addr: Ipv6Addr) -> bool {
    if len == 0 {
        return true;
    }
    let mask = u128::MAX << (128 - u32::from(len.min(128)));
    (u128::from(prefix) & mask) == (u128::from(addr) & mask)
}

/// True when `addr` lies in `prefix/len`, both of one family (an address of
/// the other family never does).
pub fn ip_prefix_contains(prefix: IpAddr, len: u8, addr: IpAddr) -> bool {
    match (prefix, addr) {
        (IpAddr::V4(p), IpAddr::V4(a)) => prefix_contains(p, len, a),
        (IpAddr::V6(p), IpAddr::V6(a)) => prefix_contains6(p, len, a),
        _ => false,
    }
}

/// True when `addr` lies in `prefix/len`.
pub fn prefix_contains(prefix: Ipv4Addr, len: u8, addr: Ipv4Addr) -> bool {
    if len == 0 {
        return true;
    }
    let mask = u32::MAX << (32 - u32::from(len.min(32)));
    (u32::from(prefix) & mask) == (u32::from(addr) & mask)
}

/// Idle timeouts of connection table entries per state, in seconds (IPVS's
/// defaults; ipvsadm `--set tcp tcpfin udp` sets `tcp`, `tcp_fin` and `udp`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Timeouts {
    /// ESTABLISHED (ipvsadm `--set tcp`).
    pub tcp: u32,
    /// FIN_WAIT (ipvsadm `--set tcpfin`).
    pub tcp_fin: u32,
    /// SYN_RECV.
    pub tcp_syn: u32,
    /// UDP flows (ipvsadm `--set udp`).
    pub udp: u32,
    /// NONE.
    pub tcp_none: u32,
    /// SYN_SENT.
    pub tcp_syn_sent: u32,
    /// TIME_WAIT.
    pub tcp_time_wait: u32,
    /// CLOSE.
    pub tcp_close: u32,
    /// CLOSE_WAIT.
    pub tcp_close_wait: u32,
    /// LAST_ACK.
    pub tcp_last_ack: u32,
    /// LISTEN.
    pub tcp_listen: u32,
    /// SYNACK.
    pub tcp_synack: u32,
}

impl Default for Timeouts {
    fn default() -> Self {
        // IPVS's tcp_timeouts[] and udp timeout.
        Timeouts {
            tcp: 900,
            tcp_fin: 120,
            tcp_syn: 60,
            udp: 300,
            tcp_none: 2,
            tcp_syn_sent: 120,
            tcp_time_wait: 120,
            tcp_close: 10,
            tcp_close_wait: 60,
            tcp_last_ack: 30,
            tcp_listen: 120,
            tcp_synack: 120,
        }
    }
}

/// Every worker's connection counts per real server, published with relaxed
/// atomic stores (never read-modify-write) and read by the other workers, so
/// connection-count schedulers and thresholds see a near-global view without
/// locks. A worker's row is only ever written by that worker.
#[derive(Debug, Default)]
pub struct SharedConnCounts {
    workers: usize,
    /// Start of each service's reals in a row.
    offsets: Vec<usize>,
    /// Reals over all services (the length of one half-row).
    per_worker: usize,
    /// `workers` rows of `per_worker` (active, inactive) pairs.
    cells: Vec<(std::sync::atomic::AtomicU32, std::sync::atomic::AtomicU32)>,
}

impl SharedConnCounts {
    /// Zeroed counts for `workers` workers and services with `reals[i]` real servers.
    pub fn new(workers: usize, reals: &[usize]) -> Self {
        let mut offsets = Vec::with_capacity(reals.len());
        let mut total = 0;
        for &n in reals {
            offsets.push(total);
            total += n;
        }
        let cells = (0..workers * total).map(|_| Default::default()).collect();
        SharedConnCounts { workers, offsets, per_worker: total, cells }
    }

    fn cell(&self, worker: usize, service: usize, real: usize) -> Option<&(std::sync::atomic::AtomicU32, std::sync::atomic::AtomicU32)> {
        let off = *self.offsets.get(service)?;
        if worker >= self.workers {
            return None;
        }
        self.cells.get(worker * self.per_worker + off + real)
    }

    /// Worker `worker` publishes its counts of one real server.
    pub fn publish(&self, worker: usize, service: usize, real: usize, active: u32, inactive: u32) {
        use std::sync::atomic::Ordering::Relaxed;
        if let Some((a, i)) = self.cell(worker, service, real) {
            a.store(active, Relaxed);
            i.store(inactive, Relaxed);
        }
    }

    /// The sum of every worker's counts but `except`'s, for one real server.
    pub fn others(&self, except: usize, service: usize, real: usize) -> (u32, u32) {
        use std::sync::atomic::Ordering::Relaxed;
        (0..self.workers)
            .filter(|&w| w != except)
            .filter_map(|w| self.cell(w, service, real))
            .fold((0, 0), |(sa, si), (a, i)| (sa.saturating_add(a.load(Relaxed)), si.saturating_add(i.load(Relaxed))))
    }
}

/// The IPv4 services by key, for the lookup every new connection makes:
/// open addressing with linear probing over packed keys (protocol, port,
/// address in one word), at most half full, so a lookup is a multiply and
/// one or two compares. It holds exactly the IPv4 entries of
/// [`Snapshot::service_index`] (the last service of a key wins, as there).
/// Keys come from the configuration only, so no seed is needed: a packet
/// cannot add one.
#[derive(Clone, Debug, Default)]
pub struct ServiceIndex4 {
    /// `(packed key, service index)`, [`ServiceIndex4::EMPTY`] as the index
    /// of a free bucket; a power of two long (or empty).
    buckets: Box<[(u64, u32)]>,
    /// `64 - log2(buckets)`: a key's home bucket is the top bits of its
    /// multiplied key.
    shift: u32,
}

impl ServiceIndex4 {
    /// The service index of a free bucket.
    const EMPTY: u32 = u32::MAX;

    /// The index of the IPv4 services among `keys` (in service order).
    pub fn new(keys: impl Iterator<Item = ServiceKey>) -> Self {
        let keys: Vec<(u64, u32)> =
            keys.enumerate().filter_map(|(i, k)| Some((Self::pack(k.protocol, v4(k.vip)?, k.port), u32::try_from(i).ok()?))).collect();
        if keys.is_empty() {
            return ServiceIndex4::default();
        }
        let len = (keys.len() * 2).next_power_of_two();
        let mut index = ServiceIndex4 { buckets: vec![(0, Self::EMPTY); len].into_boxed_slice(), shift: 64 - len.trailing_zeros() };
        for (key, idx) in keys {
            let mut i = index.home(key);
            // At most half full: a free bucket or the key is always found.
            while index.buckets[i].1 != Self::EMPTY && index.buckets[i].0 != key {
                i = (i + 1) & (len - 1);
            }
            index.buckets[i] = (key, idx);
        }
        index
    }

    /// A service key's protocol, port and IPv4 address in one word.
    #[inline]
    fn pack(protocol: Protocol, vip: Ipv4Addr, port: u16) -> u64 {
        let protocol = match protocol {
            Protocol::Tcp => 0,
            Protocol::Udp => 1,
        };
        protocol << 48 | u64::from(port) << 32 | u64::from(vip.to_bits())
    }

    /// The bucket where the probe for `key` starts (Fibonacci hashing).
    #[inline]
    fn home(&self, key: u64) -> usize {
        (key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> self.shift) as usize
    }

    /// The index of the service listening on `protocol`, `vip`, `port`.
    #[inline]
    pub fn get(&self, protocol: Protocol, vip: Ipv4Addr, port: u16) -> Option<usize> {
        if self.buckets.is_empty() {
            return None;
        }
        let key = Self::pack(protocol, vip, port);
        let mask = self.buckets.len() - 1;
        let mut i = self.home(key);
        // A free bucket ends every probe (at most half full); the bound only
        // keeps a broken table from looping.
        for _ in 0..self.buckets.len() {
            let (k, idx) = *self.buckets.get(i)?;
            if idx == Self::EMPTY {
                return None;
            }
            if k == key {
                return Some(idx as usize);
            }
            i = (i + 1) & mask;
        }
        None
    }
}

/// Everything a worker forwards by, immutable once built.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Increases by one with every accepted change.
    pub generation: u64,
    /// Dataplane ports, indexed by port index.
    pub ports: Vec<PortInfo>,
    /// The appliance's own addresses (answer ARP and ICMP echo for them).
    pub addresses: Vec<InterfaceAddr>,
    /// Routes, sorted longest prefix first (connected networks included).
    pub routes: Vec<Route>,
    /// The appliance's own IPv6 addresses (answer neighbour solicitations and
    /// ICMPv6 echo for them).
    pub addresses6: Vec<InterfaceAddr6>,
    /// IPv6 routes, sorted longest prefix first (connected networks included).
    pub routes6: Vec<Route6>,
    /// Virtual services.
    pub services: Vec<Service>,
    /// Service lookup by key; values index [`Snapshot::services`].
    pub service_index: HashMap<ServiceKey, usize>,
    /// The IPv4 entries of [`Snapshot::service_index`] again, in a table
    /// made for the packet path's lookup (built by [`Snapshot::finish`]).
    pub service_index4: ServiceIndex4,
    /// Connection timeouts.
    pub timeouts: Timeouts,
    /// FULLNAT source ports handed out (split between workers), inclusive.
    pub local_port_range: (u16, u16),
    /// Bounds of each worker's IPv4 fragment reassembly.
    pub frag_limits: crate::frag::FragLimits,
    /// Frames a worker may hold waiting for ARP answers, on all next hops
    /// together (a share of the mbuf pool).
    pub neigh_max_held: usize,
    /// Number of workers (sizes [`Snapshot::conn_counts`]).
    pub workers: usize,
    /// Drop the connections of removed real servers at their next packet
    /// (IPVS's `expire_nodest_conn`); otherwise they run to their end.
    pub expire_nodest_conn: bool,
    /// Send new and changed connections to the backup directors (this node is
    /// the sync master).
    pub sync_send: bool,
    /// Virtual and local addresses this node does not serve now (it is a VRRP
    /// backup for them): no ARP answers, no forwarding.
    pub standby: hashbrown::HashSet<IpAddr>,
    /// Every worker's published connection counts (built by [`Snapshot::finish`]).
    pub conn_counts: std::sync::Arc<SharedConnCounts>,
    /// Every IPv4 virtual address this node serves (built by [`Snapshot::finish`]).
    pub vip_set: hashbrown::HashSet<Ipv4Addr>,
    /// Every IPv6 virtual address this node serves (built by [`Snapshot::finish`]).
    pub vip_set6: hashbrown::HashSet<Ipv6Addr>,
    /// Every FULLNAT IPv4 local address this node serves (built by [`Snapshot::finish`]).
    pub local_addr_set: hashbrown::HashSet<Ipv4Addr>,
    /// Every FULLNAT IPv6 local address this node serves (built by [`Snapshot::finish`]).
    pub local_addr_set6: hashbrown::HashSet<Ipv6Addr>,
    /// Every IPv4 virtual address this node serves with an IPv6 real server
    /// (TUN, IPv4 in IPv6; built by [`Snapshot::finish`]): their connections
    /// live in the IPv6 table, IPv4-mapped.
    pub vips_tunnelled_to_ipv6: hashbrown::HashSet<Ipv4Addr>,
    /// SYN-flood and table-pressure defences (config `syn_flood`).
    pub syn_flood: SynFlood,
}

/// A service's SYN proxy setting (config `services[].syn_proxy`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SynProxy {
    /// Never: SYNs create connections as in IPVS.
    #[default]
    Off,
    /// Always: every SYN is answered with a cookie.
    On,
    /// While the worker is under pressure ([`SynFlood`]'s thresholds).
    Auto,
}

/// SYN-flood and table-pressure defences of every worker (config
/// `syn_flood`). A worker is *under pressure* while its connection table is
/// at least `pressure_table_percent` full or its SYN_RECV entries are at
/// least `pressure_syn_recv_percent` of its capacity; it leaves pressure
/// when both are below half their thresholds (a threshold of 0 never
/// starts pressure). Each worker judges its own table, on every tick and
/// before every new connection. What pressure does is described in the
/// dataplane's `process::pressure` module.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SynFlood {
    /// Table fill (percent of capacity) that starts pressure.
    pub pressure_table_percent: u8,
    /// SYN_RECV entries (percent of capacity) that start pressure.
    pub pressure_syn_recv_percent: u8,
    /// When the table is full, evict a SYN_RECV entry to make room for a new
    /// connection (IPVS `drop_entry`), under pressure or not; never an entry
    /// in another state (expired entries make room in any case).
    pub drop_entry: bool,
    /// SYN_RECV timeout under pressure, seconds (IPVS `secure_tcp`'s short
    /// table); 0 keeps the normal timeout. New SYN_RECV entries get it; older
    /// ones are cut to it when the expiry sweep meets them.
    pub syn_recv_timeout_under_pressure: u32,
    /// Under pressure, new connections per second allowed from one source
    /// prefix (0: no bound).
    pub new_conns_per_prefix_per_sec: u32,
    /// Length of that source prefix (IPv4, 1..=32).
    pub prefix_len: u8,
    /// Length of that source prefix for IPv6 clients (1..=128; a /64 is one
    /// subscriber's network).
    pub prefix_len_ipv6: u8,
    /// Window scale the SYN proxy announces to clients (0..=14).
    pub proxy_window_scale: u8,
}

impl Default for SynFlood {
    fn default() -> Self {
        SynFlood {
            pressure_table_percent: 50,
            pressure_syn_recv_percent: 25,
            drop_entry: true,
            syn_recv_timeout_under_pressure: 3,
            new_conns_per_prefix_per_sec: 1000,
            prefix_len: 24,
            prefix_len_ipv6: 64,
            proxy_window_scale: 7,
        }
    }
}

/// Default FULLNAT source port range.
pub const DEFAULT_LOCAL_PORT_RANGE: (u16, u16) = (1024, 65535);

impl Default for Snapshot {
    fn default() -> Self {
        Snapshot {
            generation: 0,
            ports: Vec::new(),
            addresses: Vec::new(),
            routes: Vec::new(),
            addresses6: Vec::new(),
            routes6: Vec::new(),
            services: Vec::new(),
            service_index: HashMap::new(),
            service_index4: ServiceIndex4::default(),
            timeouts: Timeouts::default(),
            local_port_range: DEFAULT_LOCAL_PORT_RANGE,
            frag_limits: crate::frag::FragLimits::default(),
            neigh_max_held: crate::neigh::DEFAULT_MAX_HELD,
            workers: 1,
            expire_nodest_conn: false,
            conn_counts: Default::default(),
            standby: Default::default(),
            sync_send: false,
            vip_set: Default::default(),
            vip_set6: Default::default(),
            local_addr_set: Default::default(),
            local_addr_set6: Default::default(),
            vips_tunnelled_to_ipv6: Default::default(),
            syn_flood: SynFlood::default(),
        }
    }
}

impl Snapshot {
    /// Builds the lookup index and the schedulers' lookup tables (here, on the
    /// control plane, once for every worker) and sorts the routes. Call after
    /// filling the fields.
    pub fn finish(mut self) -> Self {
        for s in &mut self.services {
            s.lookup_table = crate::sched::lookup_table(s.scheduler, &s.reals, &s.sched_options);
        }
        self.service_index = self.services.iter().enumerate().map(|(i, s)| (s.key, i)).collect();
        self.service_index4 = ServiceIndex4::new(self.services.iter().map(|s| s.key));
        self.routes.sort_by_key(|r| std::cmp::Reverse(r.prefix_len));
        self.routes6.sort_by_key(|r| std::cmp::Reverse(r.prefix_len));
        let served = |a: &IpAddr| !self.standby.contains(a);
        let vips = self.services.iter().map(|s| s.key.vip).filter(served);
        self.vip_set = vips.clone().filter_map(v4).collect();
        self.vip_set6 = vips.filter_map(v6).collect();
        let locals = self.services.iter().flat_map(|s| {
            let v4s = s.local_addrs.iter().map(|&a| IpAddr::V4(a));
            v4s.chain(s.local_addrs6.iter().map(|&a| IpAddr::V6(a)))
        });
        let locals: Vec<IpAddr> = locals.filter(served).collect();
        self.local_addr_set = locals.iter().filter_map(|&a| v4(a)).collect();
        self.local_addr_set6 = locals.iter().filter_map(|&a| v6(a)).collect();
        let tunnelled = self.services.iter().filter(|s| s.reals.iter().any(|r| r.addr.is_ipv6()));
        self.vips_tunnelled_to_ipv6 = tunnelled.filter_map(|s| v4(s.key.vip)).filter(|&a| served(&IpAddr::V4(a))).collect();
        let sizes: Vec<usize> = self.services.iter().map(|s| s.reals.len()).collect();
        self.conn_counts = std::sync::Arc::new(SharedConnCounts::new(self.workers.max(1), &sizes));
        self
    }

    /// True when `addr` is an IPv6 virtual service address this node serves.
    pub fn is_vip6(&self, addr: Ipv6Addr) -> bool {
        self.vip_set6.contains(&addr)
    }

    /// True when `addr` is an IPv4 VIP this node serves with an IPv6 real
    /// server (IPv4 in IPv6).
    pub fn tunnels_to_ipv6(&self, addr: Ipv4Addr) -> bool {
        !self.vips_tunnelled_to_ipv6.is_empty() && self.vips_tunnelled_to_ipv6.contains(&addr)
    }

    /// True when `addr` is a FULLNAT IPv6 local address this node serves.
    pub fn is_local_addr6(&self, addr: Ipv6Addr) -> bool {
        self.local_addr_set6.contains(&addr)
    }

    /// The service listening on `key`, if any.
    #[inline]
    pub fn service(&self, key: &ServiceKey) -> Option<(usize, &Service)> {
        let idx = match key.vip {
            IpAddr::V4(vip) => self.service_index4.get(key.protocol, vip, key.port)?,
            IpAddr::V6(_) => *self.service_index.get(key)?,
        };
        self.services.get(idx).map(|s| (idx, s))
    }

    /// [`Snapshot::service`] for an IPv4 virtual address (the packet path's
    /// lookup for every new IPv4 connection).
    #[inline]
    pub fn service4(&self, protocol: Protocol, vip: Ipv4Addr, port: u16) -> Option<(usize, &Service)> {
        let idx = self.service_index4.get(protocol, vip, port)?;
        self.services.get(idx).map(|s| (idx, s))
    }

    /// True when `addr` is one of the appliance's interface addresses.
    pub fn is_interface_addr(&self, addr: Ipv4Addr) -> bool {
        self.addresses.iter().any(|a| a.addr == addr)
    }

    /// True when `addr` is a virtual service address.
    pub fn is_vip(&self, addr: Ipv4Addr) -> bool {
        self.vip_set.contains(&addr)
    }

    /// True when `addr` is a virtual or local address this node is backup for.
    pub fn is_standby(&self, addr: impl Into<IpAddr>) -> bool {
        !self.standby.is_empty() && self.standby.contains(&addr.into())
    }

    /// True when `addr` is a FULLNAT local address.
    pub fn is_local_addr(&self, addr: Ipv4Addr) -> bool {
        self.local_addr_set.contains(&addr)
    }

    /// True when rvs answers ARP for `addr`: an interface address, a VIP or a local address.
    pub fn answers_arp_for(&self, addr: Ipv4Addr) -> bool {
        self.is_interface_addr(addr) || self.is_vip(addr) || self.is_local_addr(addr)
    }

    /// Our address to use as a source towards `dst` on `port`: the one whose
    /// network contains `dst`, else the port's first.
    pub fn source_addr_for(&self, port: u16, dst: Ipv4Addr) -> Option<Ipv4Addr> {
        self.addresses
            .iter()
            .find(|a| a.port == port && prefix_contains(a.addr, a.prefix_len, dst))
            .map(|a| a.addr)
            .or_else(|| self.port_addr(port))
    }

    /// The route for `dst`: longest prefix match.
    pub fn route(&self, dst: Ipv4Addr) -> Option<&Route> {
        self.routes.iter().find(|r| r.contains(dst))
    }

    /// True when `addr` is one of the appliance's IPv6 interface addresses.
    pub fn is_interface_addr6(&self, addr: Ipv6Addr) -> bool {
        self.addresses6.iter().any(|a| a.addr == addr)
    }

    /// The IPv6 route for `dst`: longest prefix match.
    pub fn route6(&self, dst: Ipv6Addr) -> Option<&Route6> {
        self.routes6.iter().find(|r| r.contains(dst))
    }

    /// Our IPv6 address to use as a source towards `dst` on `port`: the one
    /// whose network contains `dst`, else the port's first.
    pub fn source_addr6_for(&self, port: u16, dst: Ipv6Addr) -> Option<Ipv6Addr> {
        let on_port = || self.addresses6.iter().filter(|a| a.port == port);
        on_port().find(|a| prefix_contains6(a.addr, a.prefix_len, dst)).or_else(|| on_port().next()).map(|a| a.addr)
    }

    /// The address of ours to use as a source on `port` (first one configured).
    pub fn port_addr(&self, port: u16) -> Option<Ipv4Addr> {
        self.addresses.iter().find(|a| a.port == port).map(|a| a.addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_matching() {
        let net = Ipv4Addr::new(10, 1, 0, 0);
        assert!(prefix_contains(net, 16, Ipv4Addr::new(10, 1, 200, 3)));
        assert!(!prefix_contains(net, 16, Ipv4Addr::new(10, 2, 0, 1)));
        assert!(prefix_contains(net, 0, Ipv4Addr::new(192, 168, 0, 1)));
        assert!(prefix_contains(Ipv4Addr::new(10, 1, 0, 7), 32, Ipv4Addr::new(10, 1, 0, 7)));
        assert!(!prefix_contains(Ipv4Addr::new(10, 1, 0, 7), 32, Ipv4Addr::new(10, 1, 0, 8)));
    }

    proptest::proptest! {
        /// The packet path's lookup finds what the service map holds, for
        /// keys of services (duplicates included: the last one wins) and
        /// keys of none, of either family.
        #[test]
        fn the_ipv4_service_index_agrees_with_the_service_map(
            services in proptest::collection::vec((proptest::bool::ANY, 0u32..6, 0u16..4, proptest::bool::ANY), 0..40),
            queries in proptest::collection::vec((proptest::bool::ANY, 0u32..8, 0u16..6, proptest::bool::ANY), 0..40),
        ) {
            let key = |(udp, addr, port, v6): (bool, u32, u16, bool)| ServiceKey {
                protocol: if udp { Protocol::Udp } else { Protocol::Tcp },
                vip: if v6 { IpAddr::V6(Ipv6Addr::from(u128::from(addr))) } else { IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | addr)) },
                port: 80 + port,
            };
            let services = services.into_iter().map(|s| Service::new(key(s), SchedulerKind::Rr, Vec::new())).collect();
            let snap = Snapshot { services, ..Default::default() }.finish();
            for q in queries.into_iter().map(key).chain(snap.services.iter().map(|s| s.key)) {
                let expected = snap.service_index.get(&q).copied();
                proptest::prop_assert_eq!(snap.service(&q).map(|(i, _)| i), expected, "{}", q);
                if let IpAddr::V4(vip) = q.vip {
                    proptest::prop_assert_eq!(snap.service4(q.protocol, vip, q.port).map(|(i, _)| i), expected);
                }
            }
        }
    }

    #[test]
    fn longest_prefix_wins() {
        let snap = Snapshot {
            routes: vec![
                Route { prefix: Ipv4Addr::UNSPECIFIED, prefix_len: 0, via: Some(Ipv4Addr::new(10, 0, 0, 254)), port: 0 },
                Route { prefix: Ipv4Addr::new(10, 1, 0, 0), prefix_len: 24, via: None, port: 1 },
            ],
            ..Default::default()
        }
        .finish();
        assert_eq!(snap.route(Ipv4Addr::new(10, 1, 0, 9)).map(|r| r.port), Some(1));
        assert_eq!(snap.route(Ipv4Addr::new(8, 8, 8, 8)).map(|r| r.port), Some(0));
    }
}
