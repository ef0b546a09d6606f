//! Connections: the per-core connection table and its idle timeouts.
//!
//! Every worker owns one [`ConnTable`]; nothing in it is shared, locked or atomic.
//! A connection is found by the 5-tuple of the packet in hand: the client's
//! packets by `client → VIP`, and in NAT mode the real server's replies by
//! `real server → client`. Both keys point at one [`Conn`] entry.
//!
//! Both address families use the same code: [`FlowKey`], [`Conn`] and
//! [`ConnTable`] take the family's address type as a parameter whose default
//! is IPv4 (`FlowKey<Ipv4Addr>`, `Conn<SocketAddrV4>`,
//! `ConnTable<SocketAddrV4>`), so `Conn` alone is the IPv4 connection. The
//! IPv6 ones are [`FlowKey6`], [`Conn6`] and [`ConnTable6`], whose addresses
//! are the compact [`SockV6`] and [`OptAddrV6`]. NAT64
//! connections live in the IPv6 table with their IPv4 addresses mapped
//! ([`FlowKey::to_mapped`]). An IPv4 entry takes 52 bytes, an IPv6 one 100
//! (tests say so).

mod family;
mod hash;
mod index;
mod sync_clock;
mod table;

pub use family::{ConnAddr, OptAddrV4, OptAddrV6, SockV6};
pub use hash::{FlowAddr, Seeds};
pub use sync_clock::{sync_refresh_ms, sync_tick, SYNC_REFRESH_MAX_MS, SYNC_STALE_TICKS, SYNC_TICK_MS};
pub use table::{ConnId, ConnTable, Direction, IndexEntry, TableFull, TablePart, Victim, MAX_CAPACITY};

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4};

use crate::snapshot::{ForwardMode, Protocol, ServiceKey, Timeouts};

/// A connection lookup key: the 5-tuple as it appears in a packet, with the
/// addresses of one family (IPv4 unless said otherwise; [`FlowKey6`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey<A = Ipv4Addr> {
    /// IP protocol number.
    pub proto: u8,
    /// Source address.
    pub src: A,
    /// Destination address.
    pub dst: A,
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
}

/// An IPv6 flow key (37 bytes of key; NAT64's IPv4 side mapped, [`FlowKey::to_mapped`]).
pub type FlowKey6 = FlowKey<Ipv6Addr>;

/// An IPv6 connection (and a NAT64 one: IPv4 real server and local address mapped).
pub type Conn6 = Conn<SockV6>;

/// The IPv6 connection table (IPv6 and NAT64 connections).
pub type ConnTable6 = ConnTable<SockV6>;

impl FlowKey<Ipv4Addr> {
    /// The key with both addresses IPv4-mapped (`::ffff:a.b.c.d`): what the
    /// IPv4 reply of a NAT64 connection (real server → local address) is
    /// filed under in the IPv6 table.
    pub fn to_mapped(&self) -> FlowKey6 {
        FlowKey { proto: self.proto, src: self.src.to_ipv6_mapped(), dst: self.dst.to_ipv6_mapped(), sport: self.sport, dport: self.dport }
    }
}

impl FlowKey<Ipv6Addr> {
    /// The IPv4 key a key of two IPv4-mapped addresses stands for
    /// ([`FlowKey::to_mapped`] undone); `None` when either address is not
    /// IPv4-mapped.
    pub fn to_unmapped(&self) -> Option<FlowKey> {
        Some(FlowKey {
            proto: self.proto,
            src: self.src.to_ipv4_mapped()?,
            dst: self.dst.to_ipv4_mapped()?,
            sport: self.sport,
            dport: self.dport,
        })
    }
}

/// Connection states, as IPVS names and orders them (`ipvsadm -lnc` shows them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum TcpState {
    /// No packet seen yet.
    None = 0,
    /// Data is flowing (the only *active* state).
    Established = 1,
    /// A SYN from the real server side was seen.
    SynSent = 2,
    /// Only the client's SYN has been seen.
    SynRecv = 3,
    /// A FIN has been seen.
    FinWait = 4,
    /// Both sides closed.
    TimeWait = 5,
    /// Reset or closed.
    Close = 6,
    /// The client closed (seen from the real server's FIN... as IPVS names it).
    CloseWait = 7,
    /// Waiting for the last ACK.
    LastAck = 8,
    /// Listening.
    Listen = 9,
    /// SYN-ACK seen.
    SynAck = 10,
    /// A UDP flow (no TCP state).
    Udp = 11,
}

impl TcpState {
    /// The state with IPVS's name `name` (as [`TcpState::name`] gives it).
    pub fn from_name(name: &str) -> Option<TcpState> {
        use TcpState::*;
        [None, Established, SynSent, SynRecv, FinWait, TimeWait, Close, CloseWait, LastAck, Listen, SynAck, Udp]
            .into_iter()
            .find(|s| s.name().eq_ignore_ascii_case(name))
    }

    /// IPVS's name for the state.
    pub fn name(self) -> &'static str {
        match self {
            TcpState::None => "NONE",
            TcpState::Established => "ESTABLISHED",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::FinWait => "FIN_WAIT",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::Listen => "LISTEN",
            TcpState::SynAck => "SYNACK",
            TcpState::Udp => "UDP",
        }
    }
}

/// Which of IPVS's three transition tables a packet is judged by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateTable {
    /// Client packets of a connection whose replies also pass through rvs (NAT, FULLNAT).
    Input = 0,
    /// Real server packets (replies) of NAT and FULLNAT connections.
    Output = 1,
    /// Client packets of a connection whose replies bypass rvs (DR, TUN).
    InputOnly = 2,
}

/// The TCP flags that drive state changes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpFlags {
    /// SYN.
    pub syn: bool,
    /// ACK.
    pub ack: bool,
    /// FIN.
    pub fin: bool,
    /// RST.
    pub rst: bool,
}

impl TcpFlags {
    /// IPVS's row of the transition table: RST wins, then SYN, FIN, ACK.
    fn row(self) -> Option<usize> {
        if self.rst {
            Some(3)
        } else if self.syn {
            Some(0)
        } else if self.fin {
            Some(1)
        } else if self.ack {
            Some(2)
        } else {
            None
        }
    }
}

/// IPVS's TCP state transitions (`tcp_states[]` in ip_vs_proto_tcp.c):
/// `TRANSITIONS[table][row][current] = next`, rows syn, fin, ack, rst,
/// columns in [`TcpState`] order (NONE..SYNACK).
const TRANSITIONS: [[[TcpState; 11]; 4]; 3] = {
    use TcpState::{
        Close as CL, CloseWait as CW, Established as ES, FinWait as FW, LastAck as LA, Listen as LI, SynRecv as SR, SynSent as SS,
        TimeWait as TW,
    };
    [
        // INPUT       NO  ES  SS  SR  FW  TW  CL  CW  LA  LI  SA
        [
            /* syn */ [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR],
            /* fin */ [CL, CW, SS, TW, TW, TW, CL, CW, LA, LI, TW],
            /* ack */ [CL, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
            /* rst */ [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, SR],
        ],
        // OUTPUT
        [
            /* syn */ [SS, ES, SS, SR, SS, SS, SS, SS, SS, LI, SR],
            /* fin */ [TW, FW, SS, TW, FW, TW, CL, TW, LA, LI, TW],
            /* ack */ [ES, ES, SS, ES, FW, TW, CL, CW, LA, ES, ES],
            /* rst */ [CL, CL, SS, CL, CL, TW, CL, CL, CL, CL, CL],
        ],
        // INPUT-ONLY
        [
            /* syn */ [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR],
            /* fin */ [CL, FW, SS, TW, FW, TW, CL, CW, LA, LI, TW],
            /* ack */ [CL, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
            /* rst */ [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, CL],
        ],
    ]
};

/// The next state after a packet with `flags`, judged by `table`.
pub fn next_state(current: TcpState, flags: TcpFlags, table: StateTable) -> TcpState {
    match (flags.row(), current) {
        (_, TcpState::Udp) | (None, _) => current,
        (Some(row), cur) => TRANSITIONS[table as usize][row][cur as usize],
    }
}

/// Longest idle timeout a connection keeps, in milliseconds (2^31 - 1, 24.8
/// days: IPVS's own limit, `INT_MAX / HZ` seconds, at HZ 1000). Longer
/// configured timeouts are cut to it.
///
/// A connection stores worker-clock milliseconds in 32 bits ([`ms32`]); that
/// clock wraps every 49.7 days, and every comparison is a wrapping difference,
/// which stays right across the wrap as long as the instants compared are less
/// than 2^31 ms apart: a live entry's deadline is at most this far ahead, and
/// the incremental sweep removes an expired entry long before it is that far
/// behind.
pub const MAX_TIMEOUT_MS: u64 = i32::MAX as u64;

/// Worker-clock milliseconds as a [`Conn`] stores them: the low 32 bits.
pub fn ms32(now_ms: u64) -> u32 {
    now_ms as u32
}

/// One load-balanced connection, of the family of its address type `S`
/// (IPv4 unless said otherwise; [`Conn6`]): 52 bytes for IPv4, 100 for IPv6,
/// and so is its table slot (`Option<Conn>` uses a niche of the enums).
/// Times are worker-clock milliseconds in 32 bits (see [`MAX_TIMEOUT_MS`]),
/// but for the last sync, in 16-bit ticks ([`sync_tick`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conn<S: ConnAddr = SocketAddrV4> {
    /// Transport protocol.
    pub protocol: Protocol,
    /// The client's address and port.
    pub client: S,
    /// The virtual service address and port the client connected to.
    pub vip: S,
    /// The real server address and port chosen for it (NAT64: IPv4-mapped).
    pub real: S,
    /// FULLNAT: the local address and port the real server sees as the
    /// client (NAT64: IPv4-mapped).
    pub local: S::Opt,
    /// Index of the real server in its service (at creation; for counts and stats).
    pub real_index: u16,
    /// Index of the service in the snapshot of generation `generation`.
    pub service_index: u16,
    /// The snapshot generation `service_index` and `real_index` refer to (its
    /// low 32 bits); they are looked up again (by address) when the worker
    /// runs on another one.
    pub generation: u32,
    /// When it was last sent to the backup directors (connection sync),
    /// [`sync_tick`].
    pub synced_tick: u16,
    /// How packets reach the real server.
    pub forward: ForwardMode,
    /// TCP state (UDP flows stay `Established`).
    pub state: TcpState,
    /// When it expires unless a packet comes first, [`ms32`]: the last packet
    /// plus the idle timeout of the state it left the connection in.
    pub expires_ms: u32,
    /// FULLNAT TCP: what is added to the client's sequence numbers towards the
    /// real server (and taken from the real server's acknowledgements), so the
    /// real server sees rvs's own initial sequence number ([`crate::fwd::fnat`]).
    pub seq_delta: u32,
    /// The worker's cached next hop for this connection's replies
    /// ([`crate::neigh::hops`]), valid for snapshot `generation`;
    /// [`crate::neigh::hops::NONE`] when none is cached.
    pub reply_hop: u8,
    /// SYN proxy: the connection's handshake phase and the translation of
    /// its sequence numbers and windows ([`crate::synproxy`]), packed in 6
    /// bytes; default for connections that are not proxied.
    pub proxy: crate::synproxy::PackedTranslation,
}

impl Conn6 {
    /// True for a NAT64 connection: an IPv6 client served by an IPv4 real
    /// server (stored IPv4-mapped).
    pub fn is_nat64(&self) -> bool {
        self.real.is_mapped()
    }
}

impl<S: ConnAddr> Conn<S> {
    /// The service this connection belongs to.
    pub fn service_key(&self) -> ServiceKey {
        ServiceKey { protocol: self.protocol, vip: self.vip.ip_any(), port: self.vip.port() }
    }

    /// The real server's address as the snapshot names it (IPv4 for a
    /// NAT64 connection).
    pub fn real_ip(&self) -> IpAddr {
        self.real.ip_any()
    }

    /// The key of the client's packets (`client → VIP`).
    pub fn inbound_key(&self) -> FlowKey<S::Ip> {
        FlowKey {
            proto: self.protocol.ip_proto(),
            src: self.client.ip_addr(),
            sport: self.client.port(),
            dst: self.vip.ip_addr(),
            dport: self.vip.port(),
        }
    }

    /// The key of the real server's replies, present only when replies come
    /// back through the director: `real → client` (NAT), `real → local`
    /// (FULLNAT; NAT64: both IPv4-mapped, [`FlowKey::to_mapped`]).
    pub fn reply_key(&self) -> Option<FlowKey<S::Ip>> {
        let to = match self.forward {
            ForwardMode::Nat => self.client,
            ForwardMode::FullNat => Into::<Option<S>>::into(self.local)?,
            ForwardMode::Dr | ForwardMode::Tun => return None,
        };
        Some(FlowKey {
            proto: self.protocol.ip_proto(),
            src: self.real.ip_addr(),
            sport: self.real.port(),
            dst: to.ip_addr(),
            dport: to.port(),
        })
    }

    /// True while the connection counts as active for schedulers (IPVS: TCP
    /// ESTABLISHED; everything else is inactive).
    pub fn is_active(&self) -> bool {
        self.protocol == Protocol::Tcp && self.state == TcpState::Established
    }

    /// True when the connection has been idle past its timeout at `now_ms`.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        (ms32(now_ms).wrapping_sub(self.expires_ms) as i32) > 0
    }

    /// Milliseconds left before it expires (0 once expired).
    pub fn expires_in_ms(&self, now_ms: u64) -> u64 {
        u64::try_from(self.expires_ms.wrapping_sub(ms32(now_ms)) as i32).unwrap_or(0)
    }

    /// Restarts the idle timer: the connection expires `timeout_ms` (at most
    /// [`MAX_TIMEOUT_MS`]) after `now_ms`.
    pub fn restart_timer(&mut self, timeout_ms: u64, now_ms: u64) {
        self.expires_ms = ms32(now_ms).wrapping_add(timeout_ms.min(MAX_TIMEOUT_MS) as u32);
    }

    /// The idle timeout of the connection as it is now, under `timeouts`.
    pub fn idle_timeout_ms(&self, timeouts: &Timeouts) -> u64 {
        let ms = match self.protocol {
            Protocol::Tcp => state_timeout_ms(self.state, timeouts),
            Protocol::Udp => u64::from(timeouts.udp) * 1000,
        };
        ms.min(MAX_TIMEOUT_MS)
    }

    /// Milliseconds since it was last sent to the backup directors, in
    /// whole ticks ([`SYNC_TICK_MS`]; at most [`SYNC_STALE_TICKS`] ticks
    /// plus the time since the sweep last passed, see [`Conn::age_sync`]).
    pub fn since_synced_ms(&self, now_ms: u64) -> u64 {
        u64::from(sync_tick(now_ms).wrapping_sub(self.synced_tick)) * SYNC_TICK_MS
    }

    /// Records that it was sent to the backup directors at `now_ms`.
    pub fn mark_synced(&mut self, now_ms: u64) {
        self.synced_tick = sync_tick(now_ms);
    }

    /// True when it is due to be sent to the backup directors again at
    /// `now_ms`: more than [`sync_refresh_ms`] of its idle timeout under
    /// `timeouts` (half, at most 30 minutes) since the last time.
    pub fn sync_refresh_due(&self, timeouts: &Timeouts, now_ms: u64) -> bool {
        self.since_synced_ms(now_ms) > sync_refresh_ms(self.idle_timeout_ms(timeouts))
    }

    /// Keeps [`Conn::sync_refresh_due`] right however long the connection goes
    /// unsynced (connection sync off, or no packet): once the last sync is more
    /// than [`SYNC_STALE_TICKS`] ago (more than any refresh period) it is
    /// pinned there, long before the 16-bit tick count wraps. The incremental
    /// sweep calls it on every live connection.
    pub fn age_sync(&mut self, now_ms: u64) {
        let now = sync_tick(now_ms);
        if now.wrapping_sub(self.synced_tick) > SYNC_STALE_TICKS {
            self.synced_tick = now.wrapping_sub(SYNC_STALE_TICKS);
        }
    }

    /// The transition table for a packet travelling `dir`.
    pub fn state_table(&self, dir: Direction) -> StateTable {
        match (dir, self.forward) {
            (Direction::Reply, _) => StateTable::Output,
            (Direction::Inbound, ForwardMode::Nat | ForwardMode::FullNat) => StateTable::Input,
            (Direction::Inbound, ForwardMode::Dr | ForwardMode::Tun) => StateTable::InputOnly,
        }
    }

    /// Moves the TCP state by a packet's flags (IPVS's tables) and restarts the
    /// idle timer with the new state's timeout.
    pub fn on_tcp_packet(&mut self, flags: TcpFlags, dir: Direction, timeouts: &Timeouts, now_ms: u64) {
        self.state = next_state(self.state, flags, self.state_table(dir));
        self.restart_timer(state_timeout_ms(self.state, timeouts), now_ms);
    }

    /// Refreshes the timer of a UDP flow.
    pub fn on_udp_packet(&mut self, timeouts: &Timeouts, now_ms: u64) {
        self.restart_timer(u64::from(timeouts.udp) * 1000, now_ms);
    }

    /// True when a packet with `flags` leaves this connection in ESTABLISHED
    /// whatever its direction and table: a TCP connection in ESTABLISHED and
    /// a packet without SYN, FIN or RST (an ACK, or no flag at all). Then
    /// [`Conn::on_tcp_packet`] only restarts the timer with
    /// [`Timeouts::tcp`].
    #[inline]
    pub fn keeps_established(&self, flags: &TcpFlags) -> bool {
        self.protocol == Protocol::Tcp && self.state == TcpState::Established && !(flags.syn || flags.fin || flags.rst)
    }

    /// The idle timeout (ms) that a packet with `flags` restarts when that is
    /// all it does to this connection: an ACK that keeps a TCP connection in
    /// ESTABLISHED ([`Conn::keeps_established`]; [`Timeouts::tcp`]), or any
    /// packet of a UDP flow, which has no state to move
    /// ([`Conn::on_udp_packet`]; [`Timeouts::udp`]). None for every other
    /// packet: it takes the state machine.
    #[inline]
    pub fn steady_timeout_ms(&self, flags: &TcpFlags, timeouts: &Timeouts) -> Option<u64> {
        match self.protocol {
            Protocol::Udp => Some(u64::from(timeouts.udp) * 1000),
            Protocol::Tcp if self.keeps_established(flags) => Some(u64::from(timeouts.tcp) * 1000),
            Protocol::Tcp => None,
        }
    }

    /// True when a new SYN from the client may replace this connection (IPVS's
    /// `is_new_conn_expected` with `conn_reuse_mode` 1: TIME_WAIT or CLOSE, or
    /// FIN_WAIT of a connection whose replies bypass rvs).
    pub fn reusable_by_syn(&self) -> bool {
        match self.state {
            TcpState::TimeWait | TcpState::Close => true,
            TcpState::FinWait => matches!(self.forward, ForwardMode::Dr | ForwardMode::Tun),
            _ => false,
        }
    }
}

/// Idle timeout of a state, in milliseconds.
pub fn state_timeout_ms(state: TcpState, t: &Timeouts) -> u64 {
    let secs = match state {
        TcpState::None => t.tcp_none,
        TcpState::Established => t.tcp,
        TcpState::SynSent => t.tcp_syn_sent,
        TcpState::SynRecv => t.tcp_syn,
        TcpState::FinWait => t.tcp_fin,
        TcpState::TimeWait => t.tcp_time_wait,
        TcpState::Close => t.tcp_close,
        TcpState::CloseWait => t.tcp_close_wait,
        TcpState::LastAck => t.tcp_last_ack,
        TcpState::Listen => t.tcp_listen,
        TcpState::SynAck => t.tcp_synack,
        TcpState::Udp => t.udp,
    };
    u64::from(secs) * 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_takes_52_bytes_and_an_ipv6_one_100() {
        assert_eq!(std::mem::size_of::<OptAddrV4>(), 6);
        assert_eq!(std::mem::size_of::<crate::synproxy::PackedTranslation>(), 6);
        assert_eq!(std::mem::size_of::<Conn>(), 52);
        assert_eq!(std::mem::align_of::<Conn>(), 4);
        assert_eq!(std::mem::size_of::<Option<Conn>>(), 52, "the slot costs no tag");
        assert_eq!(std::mem::size_of::<FlowKey>(), 14);
        // Four 18-byte addresses instead of 6-byte ones: 48 bytes more.
        assert_eq!(std::mem::size_of::<Conn6>(), 100);
        assert_eq!(std::mem::size_of::<Option<Conn6>>(), 100, "the slot costs no tag");
        assert_eq!(std::mem::size_of::<FlowKey6>(), 38);
    }

    fn nat64(forward: ForwardMode) -> Conn6 {
        Conn {
            protocol: Protocol::Tcp,
            client: SockV6::new("2001:db8:c::2".parse().expect("address"), 40000),
            vip: SockV6::new("2001:db8:100::1".parse().expect("address"), 80),
            real: SockV6::mapped(SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, 11), 8080)),
            local: OptAddrV6::mapped(Some(SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, 200), 5001))),
            real_index: 0,
            service_index: 0,
            generation: 0,
            synced_tick: 0,
            forward,
            state: TcpState::SynRecv,
            expires_ms: 60_000,
            seq_delta: 0,
            reply_hop: crate::neigh::hops::NONE,
            proxy: Default::default(),
        }
    }

    #[test]
    fn the_ipv4_reply_of_a_nat64_connection_maps_to_its_reply_key() {
        let c = nat64(ForwardMode::FullNat);
        assert!(c.is_nat64());
        // The real server's reply as it arrives: IPv4, 10.1.0.11:8080 → 10.1.0.200:5001.
        let wire = FlowKey { proto: 6, src: Ipv4Addr::new(10, 1, 0, 11), sport: 8080, dst: Ipv4Addr::new(10, 1, 0, 200), dport: 5001 };
        assert_eq!(c.reply_key(), Some(wire.to_mapped()));
        assert_eq!(wire.to_mapped().to_unmapped(), Some(wire));
        assert_eq!(wire.to_mapped().src, "::ffff:10.1.0.11".parse::<Ipv6Addr>().expect("address"));
        // The client's side stays IPv6: it has no IPv4 key.
        assert_eq!(c.inbound_key().to_unmapped(), None);
        assert_eq!(FlowKey { src: wire.to_mapped().src, ..c.inbound_key() }.to_unmapped(), None, "both addresses must be mapped");
        let native = nat64(ForwardMode::FullNat);
        let native = Conn { real: SockV6::new("2001:db8:1::11".parse().expect("address"), 8080), ..native };
        assert!(!native.is_nat64());
        assert_eq!(nat64(ForwardMode::Dr).reply_key(), None);
    }

    const SYN: TcpFlags = TcpFlags { syn: true, ack: false, fin: false, rst: false };
    const SYNACK: TcpFlags = TcpFlags { syn: true, ack: true, fin: false, rst: false };
    const ACK: TcpFlags = TcpFlags { syn: false, ack: true, fin: false, rst: false };
    const FINACK: TcpFlags = TcpFlags { syn: false, ack: true, fin: true, rst: false };
    const RST: TcpFlags = TcpFlags { syn: false, ack: false, fin: false, rst: true };

    fn walk(table_in: StateTable, steps: &[(TcpFlags, bool)]) -> Vec<TcpState> {
        let mut s = TcpState::None;
        steps
            .iter()
            .map(|&(f, inbound)| {
                s = next_state(s, f, if inbound { table_in } else { StateTable::Output });
                s
            })
            .collect()
    }

    #[test]
    fn nat_handshake_and_close_follow_ipvs() {
        use TcpState::*;
        // client SYN, server SYN-ACK, client ACK, client FIN, server FIN, client ACK.
        let states = walk(StateTable::Input, &[(SYN, true), (SYNACK, false), (ACK, true), (FINACK, true), (FINACK, false), (ACK, true)]);
        assert_eq!(states, vec![SynRecv, SynRecv, Established, CloseWait, TimeWait, TimeWait]);
    }

    #[test]
    fn direct_routing_sees_only_the_client() {
        use TcpState::*;
        let states = walk(StateTable::InputOnly, &[(SYN, true), (ACK, true), (FINACK, true), (ACK, true)]);
        assert_eq!(states, vec![SynRecv, Established, FinWait, FinWait]);
        assert_eq!(next_state(Established, RST, StateTable::InputOnly), Close);
        assert_eq!(next_state(SynRecv, RST, StateTable::Input), SynRecv, "IPVS ignores an RST in SYN_RECV from the client");
        assert_eq!(next_state(SynRecv, RST, StateTable::Output), Close);
        assert_eq!(next_state(Established, TcpFlags::default(), StateTable::Input), Established);
        assert_eq!(next_state(Udp, RST, StateTable::Input), Udp);
    }

    #[test]
    fn every_state_has_its_timeout() {
        let t = Timeouts::default();
        assert_eq!(state_timeout_ms(TcpState::Established, &t), 900_000);
        assert_eq!(state_timeout_ms(TcpState::SynRecv, &t), 60_000);
        assert_eq!(state_timeout_ms(TcpState::FinWait, &t), 120_000);
        assert_eq!(state_timeout_ms(TcpState::TimeWait, &t), 120_000);
        assert_eq!(state_timeout_ms(TcpState::Close, &t), 10_000);
        assert_eq!(state_timeout_ms(TcpState::CloseWait, &t), 60_000);
        assert_eq!(state_timeout_ms(TcpState::LastAck, &t), 30_000);
        assert_eq!(state_timeout_ms(TcpState::Udp, &t), 300_000);
    }
}
