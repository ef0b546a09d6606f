//! Connections: the per-core connection table and its idle timeouts.
//!
//! Every worker owns one [`ConnTable`]; nothing in it is shared, locked or atomic.
//! A connection is found by the 5-tuple of the packet in hand: the client's
//! packets by `client → VIP`, and in NAT mode the real server's replies by
//! `real server → client`. Both keys point at one [`Conn`] entry.

mod index;
mod table;

pub use table::{ConnId, ConnTable, Direction, IndexEntry, TableFull, TablePart, Victim, MAX_CAPACITY};

use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};

use crate::snapshot::{ForwardMode, Protocol, ServiceKey, Timeouts};

/// A connection lookup key: the 5-tuple as it appears in a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// IP protocol number.
    pub proto: u8,
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
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

/// An optional IPv4 socket address in 6 bytes with alignment 1, where
/// `Option<SocketAddrV4>` takes 8 (a tag and padding): [`Conn::local`].
/// Port 0 means none: a FULLNAT local port is never 0 ([`crate::laddr`]
/// does not hand it out, and synced connections with it are refused).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OptAddrV4 {
    ip: [u8; 4],
    port: [u8; 2],
}

impl OptAddrV4 {
    /// No address.
    pub const NONE: OptAddrV4 = OptAddrV4 { ip: [0; 4], port: [0; 2] };

    /// The address, if any.
    pub fn get(self) -> Option<SocketAddrV4> {
        let port = u16::from_ne_bytes(self.port);
        (port != 0).then(|| SocketAddrV4::new(Ipv4Addr::from(self.ip), port))
    }
}

impl From<Option<SocketAddrV4>> for OptAddrV4 {
    /// An address with port 0 becomes none.
    fn from(a: Option<SocketAddrV4>) -> Self {
        match a {
            Some(a) => OptAddrV4 { ip: a.ip().octets(), port: a.port().to_ne_bytes() },
            None => OptAddrV4::NONE,
        }
    }
}

/// One load-balanced connection: 56 bytes, and so is its table slot
/// (`Option<Conn>` uses a niche of the enums). Times are worker-clock
/// milliseconds in 32 bits (see [`MAX_TIMEOUT_MS`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conn {
    /// Transport protocol.
    pub protocol: Protocol,
    /// The client's address and port.
    pub client: SocketAddrV4,
    /// The virtual service address and port the client connected to.
    pub vip: SocketAddrV4,
    /// The real server address and port chosen for it.
    pub real: SocketAddrV4,
    /// FULLNAT: the local address and port the real server sees as the client.
    pub local: OptAddrV4,
    /// Index of the real server in its service (at creation; for counts and stats).
    pub real_index: u16,
    /// Index of the service in the snapshot of generation `generation`.
    pub service_index: u16,
    /// The snapshot generation `service_index` and `real_index` refer to (its
    /// low 32 bits); they are looked up again (by address) when the worker
    /// runs on another one.
    pub generation: u32,
    /// When it was last sent to the backup directors (connection sync), [`ms32`].
    pub synced_ms: u32,
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
    /// its sequence numbers and windows ([`crate::synproxy`]); default for
    /// connections that are not proxied.
    pub proxy: crate::synproxy::Translation,
}

impl Conn {
    /// The service this connection belongs to.
    pub fn service_key(&self) -> ServiceKey {
        ServiceKey { protocol: self.protocol, vip: IpAddr::V4(*self.vip.ip()), port: self.vip.port() }
    }

    /// The key of the client's packets (`client → VIP`).
    pub fn inbound_key(&self) -> FlowKey {
        FlowKey {
            proto: self.protocol.ip_proto(),
            src: *self.client.ip(),
            sport: self.client.port(),
            dst: *self.vip.ip(),
            dport: self.vip.port(),
        }
    }

    /// The key of the real server's replies, present only when replies come
    /// back through the director: `real → client` (NAT), `real → local` (FULLNAT).
    pub fn reply_key(&self) -> Option<FlowKey> {
        let to = match self.forward {
            ForwardMode::Nat => self.client,
            ForwardMode::FullNat => self.local.get()?,
            ForwardMode::Dr | ForwardMode::Tun => return None,
        };
        Some(FlowKey { proto: self.protocol.ip_proto(), src: *self.real.ip(), sport: self.real.port(), dst: *to.ip(), dport: to.port() })
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

    /// Milliseconds since it was last sent to the backup directors.
    pub fn since_synced_ms(&self, now_ms: u64) -> u64 {
        u64::from(ms32(now_ms).wrapping_sub(self.synced_ms))
    }

    /// Records that it was sent to the backup directors at `now_ms`.
    pub fn mark_synced(&mut self, now_ms: u64) {
        self.synced_ms = ms32(now_ms);
    }

    /// Keeps [`Conn::since_synced_ms`] right however long the connection goes
    /// unsynced (connection sync off): once the last sync is 2^31 ms ago (more
    /// than any idle timeout) it is pinned there, before the 32-bit clock wraps.
    /// The incremental sweep calls it on every live connection.
    pub fn age_sync(&mut self, now_ms: u64) {
        if self.since_synced_ms(now_ms) > MAX_TIMEOUT_MS {
            self.synced_ms = ms32(now_ms).wrapping_sub(1 << 31);
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
    fn a_connection_takes_56_bytes() {
        assert_eq!(std::mem::size_of::<OptAddrV4>(), 6);
        assert_eq!(std::mem::size_of::<crate::synproxy::Translation>(), 8);
        assert_eq!(std::mem::size_of::<Conn>(), 56);
        assert_eq!(std::mem::size_of::<Option<Conn>>(), 56, "the slot costs no tag");
        assert_eq!(OptAddrV4::from(None).get(), None);
        let a = SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, 200), 5001);
        assert_eq!(OptAddrV4::from(Some(a)).get(), Some(a));
        let zero = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0);
        assert_eq!(OptAddrV4::from(Some(zero)).get(), None, "port 0 is no local address");
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
