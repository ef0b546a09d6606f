//! Connections: the per-core connection table and its idle timeouts.
//!
//! Every worker owns one [`ConnTable`]; nothing in it is shared, locked or atomic.
//! A connection is found by the 5-tuple of the packet in hand: the client's
//! packets by `client → VIP`, and in NAT mode the real server's replies by
//! `real server → client`. Both keys point at one [`Conn`] entry.

mod table;

pub use table::{ConnId, ConnTable, Direction, TableFull};

use std::net::{Ipv4Addr, SocketAddrV4};

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

/// TCP connection states tracked by the director (a subset of IPVS's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpState {
    /// Only the client's SYN has been seen.
    SynRecv,
    /// Data is flowing.
    Established,
    /// A FIN has been seen.
    FinWait,
    /// An RST has been seen.
    Close,
}

/// One load-balanced connection.
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
    pub local: Option<SocketAddrV4>,
    /// Index of the real server in its service (at creation; for counts and stats).
    pub real_index: u16,
    /// Index of the service in the snapshot it was created under.
    pub service_index: u16,
    /// How packets reach the real server.
    pub forward: ForwardMode,
    /// TCP state (UDP flows stay `Established`).
    pub state: TcpState,
    /// Last packet seen, in milliseconds of the worker's clock.
    pub last_seen_ms: u64,
    /// Idle timeout for the current state, in milliseconds.
    pub timeout_ms: u64,
}

impl Conn {
    /// The service this connection belongs to.
    pub fn service_key(&self) -> ServiceKey {
        ServiceKey { protocol: self.protocol, vip: *self.vip.ip(), port: self.vip.port() }
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
            ForwardMode::FullNat => self.local?,
            ForwardMode::Dr | ForwardMode::Tun => return None,
        };
        Some(FlowKey {
            proto: self.protocol.ip_proto(),
            src: *self.real.ip(),
            sport: self.real.port(),
            dst: *to.ip(),
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
        now_ms.saturating_sub(self.last_seen_ms) > self.timeout_ms
    }

    /// Updates the TCP state from a packet's flags and refreshes the timer.
    /// `from_client` is true for inbound packets.
    pub fn on_tcp_packet(&mut self, syn: bool, ack: bool, fin: bool, rst: bool, from_client: bool, timeouts: &Timeouts, now_ms: u64) {
        self.state = if rst {
            TcpState::Close
        } else if fin {
            TcpState::FinWait
        } else {
            match self.state {
                TcpState::SynRecv if ack && !syn && from_client => TcpState::Established,
                TcpState::SynRecv if ack && !syn && !from_client => TcpState::SynRecv,
                s => s,
            }
        };
        self.timeout_ms = state_timeout_ms(self.state, timeouts);
        self.last_seen_ms = now_ms;
    }

    /// Refreshes the timer of a UDP flow.
    pub fn on_udp_packet(&mut self, timeouts: &Timeouts, now_ms: u64) {
        self.timeout_ms = u64::from(timeouts.udp) * 1000;
        self.last_seen_ms = now_ms;
    }

    /// True when a new SYN from the client may replace this connection (it is
    /// closing, as IPVS's `conn_reuse_mode` allows).
    pub fn reusable_by_syn(&self) -> bool {
        matches!(self.state, TcpState::FinWait | TcpState::Close)
    }
}

/// Idle timeout of a TCP state, in milliseconds.
pub fn state_timeout_ms(state: TcpState, t: &Timeouts) -> u64 {
    let secs = match state {
        TcpState::SynRecv => t.tcp_syn,
        TcpState::Established => t.tcp,
        TcpState::FinWait => t.tcp_fin,
        // IPVS keeps CLOSE entries 10 s; never longer than tcp_fin.
        TcpState::Close => t.tcp_fin.min(10),
    };
    u64::from(secs) * 1000
}
