//! IPv4 in IPv6: an IPv4 service whose TUN real server is an IPv6 address
//! (ipvsadm `-a -t VIP4:port -r [real6] -i`, allowed by IPVS for tunnelling
//! only). The client's IPv4 packet is carried to the real server inside an
//! IPv6 header (next header 4, [`crate::fwd::tun6`]); the real server answers
//! the client directly, as in every TUN service.
//!
//! Such a connection names an IPv6 real server, which an IPv4 entry cannot
//! hold, so it lives in the worker's IPv6 table with its client and VIP
//! IPv4-mapped (as NAT64 connections keep their IPv4 ends), keyed by the
//! mapped client → VIP tuple. Only IPv4 VIPs that have an IPv6 real server
//! ([`crate::snapshot::Snapshot::tunnels_to_ipv6`]) look there after their
//! IPv4 lookup misses. Listings and connection sync show the IPv4 client and
//! VIP beside the IPv6 real server.

use super::*;
use crate::conn::{Conn6, OptAddrV6, SockV6};

impl<F: Frame> Processor<F> {
    /// A client packet to an IPv4 VIP with IPv6 real servers whose flow
    /// `key` missed the IPv4 table: its IPv4-in-IPv6 connection's, if it has
    /// one. None sends it on to the new-connection path (no connection, or a
    /// new SYN on a closing one, which is removed first).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn tunnelled_to_ipv6(
        &mut self,
        ip_bytes: &mut [u8],
        l2_len: usize,
        key: &FlowKey,
        l4: &flow::L4,
        ip_len: u16,
        now_ms: u64,
        out: &mut Output<F>,
    ) -> Option<Action> {
        let (id, dir) = self.conns6.lookup(&key.to_mapped(), now_ms)?;
        let mut conn = self.conns6.get(id).copied()?;
        if dir != Direction::Inbound {
            return Some(Action::Drop(Counter::DropNotForUs));
        }
        self.relocate(&mut conn);
        let new_syn = l4.syn && !l4.ack;
        if new_syn && (conn.reusable_by_syn() || self.expired_by_config(&conn) == Some(Counter::DropNoDest)) {
            self.remove_conn6(id, now_ms, out);
            return None;
        }
        self.touch6(id, &mut conn, l4, dir, now_ms, out);
        if let Some(reason) = self.expired_by_config(&conn) {
            self.remove_conn6(id, now_ms, out);
            return Some(Action::Drop(reason));
        }
        self.count_traffic(&conn, dir, u64::from(ip_len));
        Some(self.tunnel_to_ipv6(ip_bytes, l2_len, &conn))
    }

    /// Creates the IPv4-in-IPv6 connection of the flow `key` (in `state`) to
    /// the IPv6 real server `real_idx` of service `svc_idx` and sends its
    /// first packet.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new_conn_4in6(
        &mut self,
        ip_bytes: &mut [u8],
        l2_len: usize,
        key: &FlowKey,
        svc_idx: usize,
        real_idx: usize,
        state: TcpState,
        ip_len: u16,
        now_ms: u64,
        out: &mut Output<F>,
    ) -> Action {
        let Some(protocol) = Protocol::from_ip_proto(key.proto) else {
            return Action::Drop(Counter::DropUnsupported);
        };
        let real = self.snapshot.services[svc_idx].reals[real_idx];
        let IpAddr::V6(real6) = real.addr else {
            return Action::Drop(Counter::DropUnsupported);
        };
        let mut conn = Conn6 {
            protocol,
            client: SockV6::mapped(SocketAddrV4::new(key.src, key.sport)),
            vip: SockV6::mapped(SocketAddrV4::new(key.dst, key.dport)),
            real: SockV6::new(real6, real.port),
            local: OptAddrV6::from(None),
            real_index: real_idx as u16,
            service_index: svc_idx as u16,
            generation: self.generation(),
            synced_tick: sync_tick(now_ms),
            forward: ForwardMode::Tun,
            state,
            expires_ms: 0,
            seq_delta: 0,
            reply_hop: crate::neigh::hops::NONE,
            proxy: Default::default(),
        };
        conn.restart_timer(state_timeout_ms(state, &self.snapshot.timeouts), now_ms);
        if !self.insert_new_conn6(conn, ip_len, now_ms, out) {
            return Action::Drop(Counter::DropConnTableFull);
        }
        self.tunnel_to_ipv6(ip_bytes, l2_len, &conn)
    }

    /// The TTL step and the tunnel of an IPv4-in-IPv6 connection's packet.
    fn tunnel_to_ipv6(&mut self, ip_bytes: &mut [u8], l2_len: usize, conn: &Conn6) -> Action {
        let Some(vip) = conn.vip.to_mapped_v4() else {
            return Action::Drop(Counter::DropUnsupported);
        };
        match ttl::decrement(ip_bytes) {
            Ok(()) => {}
            Err(FwdError::TtlExceeded) => {
                let answer = Answer::Icmp { from: *vip.ip(), msg_type: icmp::msg_type::TIME_EXCEEDED, code: icmp_err::code::TTL_EXCEEDED };
                return Action::Answer { reason: Counter::DropTtlExceeded, l2_len, answer };
            }
            Err(_) => return Action::Drop(Counter::DropMalformed),
        }
        self.counters.inc(Counter::InboundPackets);
        Action::Tunnel4in6 { l2_len, real: *conn.real.ip(), vip: *vip.ip() }
    }
}
