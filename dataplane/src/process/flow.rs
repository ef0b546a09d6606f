//! A TCP or UDP packet's connection: parsed once, then found (state,
//! accounting, sync, forward) or created (service, scheduler, local address
//! and port, insert, announce).

use super::*;

/// Transport fields of a TCP/UDP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct L4 {
    pub(super) sport: u16,
    pub(super) dport: u16,
    pub(super) syn: bool,
    pub(super) ack: bool,
    pub(super) fin: bool,
    pub(super) rst: bool,
}

impl L4 {
    pub(super) fn flags(&self) -> TcpFlags {
        TcpFlags { syn: self.syn, ack: self.ack, fin: self.fin, rst: self.rst }
    }
}

/// A TCP or UDP packet that belongs to a flow, as parsed from its IPv4 header on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct FlowPacket {
    /// Its 5-tuple.
    pub(super) key: FlowKey,
    /// Its ports and TCP flags.
    pub(super) l4: L4,
    /// Its IPv4 header length.
    pub(super) header_len: u8,
    /// Its IPv4 total length.
    pub(super) ip_len: u16,
    /// Whether its IPv4 header forbids fragmentation.
    pub(super) dont_frag: bool,
}

/// What an IPv4 packet is, from one parse of its headers.
pub(super) enum Ipv4Kind {
    /// TCP or UDP: a flow's packet.
    Flow(FlowPacket),
    /// Malformed or with a bad header checksum.
    Drop(Counter),
    /// A fragment (unless `whole_datagram`).
    Fragment,
    /// An ICMP error (it quotes a packet).
    IcmpError,
    /// Any other ICMP message, to `dst`.
    Icmp {
        /// Its destination.
        dst: Ipv4Addr,
    },
    /// Another protocol, to `dst`.
    Other {
        /// Its destination.
        dst: Ipv4Addr,
    },
}

/// Parses an IPv4 packet (`ip` starts at its header) once: header and
/// checksum, fragment, transport header. `whole_datagram`: the packet is the
/// first fragment of a reassembled datagram (its UDP header is there, not
/// the whole datagram). The header checksum is the NIC's verdict `rx_csum`
/// when it gave one, else checked here; the second value says whether the
/// NIC's verdict was used (the caller counts it, [`Counter::RxIpv4CsumHw`]).
pub(super) fn parse_ipv4(ip: &[u8], whole_datagram: bool, rx_csum: RxChecksum) -> (Ipv4Kind, bool) {
    let Ok(ip) = Ipv4Packet::new_checked(ip) else {
        return (Ipv4Kind::Drop(Counter::DropMalformed), false);
    };
    let (header_ok, nic_checked) = match rx_csum {
        RxChecksum::Good => (true, true),
        RxChecksum::Bad => (false, true),
        RxChecksum::Unknown => (ip.verify_checksum(), false),
    };
    (classify_ipv4(&ip, header_ok, whole_datagram), nic_checked)
}

/// The rest of [`parse_ipv4`], once the header is readable.
fn classify_ipv4(ip: &Ipv4Packet<&[u8]>, header_ok: bool, whole_datagram: bool) -> Ipv4Kind {
    if !header_ok {
        return Ipv4Kind::Drop(Counter::DropBadChecksum);
    }
    if ip.is_fragment() && !whole_datagram {
        return Ipv4Kind::Fragment;
    }
    let (src, dst, proto) = (ip.src_addr(), ip.dst_addr(), ip.protocol());
    let l4 = match proto {
        ip_proto::TCP => match TcpSegment::new_checked(ip.payload()) {
            Ok(t) => L4 { sport: t.src_port(), dport: t.dst_port(), syn: t.syn(), ack: t.ack(), fin: t.fin(), rst: t.rst() },
            Err(_) => return Ipv4Kind::Drop(Counter::DropMalformed),
        },
        // A first fragment holds the UDP header, not the whole datagram.
        ip_proto::UDP if whole_datagram && ip.payload().len() >= 8 => {
            let u = UdpDatagram::new_unchecked(ip.payload());
            L4 { sport: u.src_port(), dport: u.dst_port(), syn: false, ack: false, fin: false, rst: false }
        }
        ip_proto::UDP => match UdpDatagram::new_checked(ip.payload()) {
            Ok(u) => L4 { sport: u.src_port(), dport: u.dst_port(), syn: false, ack: false, fin: false, rst: false },
            Err(_) => return Ipv4Kind::Drop(Counter::DropMalformed),
        },
        ip_proto::ICMP => {
            let is_error = IcmpPacket::new_checked(ip.payload()).ok().is_some_and(|m| icmp_err::is_error(m.msg_type()));
            return if is_error { Ipv4Kind::IcmpError } else { Ipv4Kind::Icmp { dst } };
        }
        _ => return Ipv4Kind::Other { dst },
    };
    let key = FlowKey { proto, src, dst, sport: l4.sport, dport: l4.dport };
    Ipv4Kind::Flow(FlowPacket { key, l4, header_len: ip.header_len() as u8, ip_len: ip.total_len(), dont_frag: ip.dont_frag() })
}

impl<F: Frame> Processor<F> {
    /// Completes a TCP/UDP checksum a sender's offload left partial (see
    /// [`crate::wire::offload`]) in the packet `pkt` (IPv4 bytes `ip`), counting it.
    pub(super) fn complete_partial_checksum(&mut self, port: u16, ip: &mut [u8], pkt: &FlowPacket) {
        let Some(l4) = ip.get_mut(usize::from(pkt.header_len)..usize::from(pkt.ip_len)) else { return };
        if crate::wire::offload::complete_partial_transport_checksum(l4, pkt.key.src, pkt.key.dst, pkt.key.proto) {
            self.counters.inc(Counter::RxL4CsumPartial);
            self.partial_csum_port = Some(port);
        }
    }

    /// The packet `pkt` (IPv4 bytes `ip_bytes`, behind an Ethernet header of
    /// `l2_len`) of a flow whose key hashes to `hash`: its connection's
    /// packet, or a new connection's first.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn flow_packet(
        &mut self,
        port: u16,
        ip_bytes: &mut [u8],
        l2_len: usize,
        pkt: &FlowPacket,
        hash: u64,
        now_ms: u64,
        redirected: bool,
        out: &mut Output<F>,
    ) -> Action {
        if let Some((id, dir)) = self.conns.lookup_hashed(&pkt.key, hash, now_ms) {
            if !self.replaced_by_new_syn(id, dir, &pkt.l4) {
                return self.connection_packet(port, ip_bytes, l2_len, pkt, id, dir, now_ms, out);
            }
            // The connection is created again below.
            self.remove_conn(id, now_ms, out);
        }
        self.new_flow_packet(port, ip_bytes, l2_len, pkt, hash, now_ms, redirected, out)
    }

    /// [`Processor::flow_packet`] of a packet without a live connection:
    /// another table's or worker's, or a new connection's first.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn new_flow_packet(
        &mut self,
        port: u16,
        ip_bytes: &mut [u8],
        l2_len: usize,
        pkt: &FlowPacket,
        hash: u64,
        now_ms: u64,
        redirected: bool,
        out: &mut Output<F>,
    ) -> Action {
        let (key, l4, ip_len) = (pkt.key, pkt.l4, pkt.ip_len);
        let (src, dst, proto) = (key.src, key.dst, key.proto);

        // An IPv4 reply to an IPv4 local address may be a NAT64 connection's.
        if !self.conns6.is_empty() && self.snapshot.is_local_addr(dst) {
            if let Some(action) = self.nat64_reply(ip_bytes, l2_len, &key, &l4, ip_len, now_ms, out) {
                return action;
            }
        }
        // An IPv4 VIP's connection to an IPv6 real server is in the IPv6 table.
        if self.snapshot.tunnels_to_ipv6(dst) && !self.conns6.is_empty() {
            if let Some(action) = self.tunnelled_to_ipv6(ip_bytes, l2_len, &key, &l4, ip_len, now_ms, out) {
                return action;
            }
            if let Some(owner) = self.other_owner6(&key.to_mapped(), redirected) {
                return Action::Redirect(owner);
            }
        }
        // Not ours: maybe another worker's.
        if let Some(owner) = self.other_owner(&key, redirected) {
            return Action::Redirect(owner);
        }

        let Some(protocol) = Protocol::from_ip_proto(proto) else {
            return Action::Drop(Counter::DropUnsupported);
        };
        let Some((svc_idx, svc)) = self.snapshot.service4(protocol, dst, l4.dport) else {
            return self.not_balanced(port, dst);
        };
        if self.snapshot.is_standby(dst) {
            return Action::Drop(Counter::DropStandby);
        }
        if protocol == Protocol::Tcp && svc.syn_proxy != crate::snapshot::SynProxy::Off {
            if let Some(action) =
                self.syn_proxy_new_flow::<SocketAddrV4>(ip_bytes, l2_len, &key, l4, pkt.ip_len, svc_idx, now_ms, redirected, out)
            {
                return action;
            }
        }
        let svc = &self.snapshot.services[svc_idx];
        // Mid-stream TCP without a connection: dropped, unless the service
        // adopts it (see `sloppy`).
        let adopt = protocol == Protocol::Tcp && (!l4.syn || l4.ack);
        if adopt && !sloppy::may_adopt(svc, &l4) {
            return Action::Drop(Counter::DropNoConnection);
        }
        if let Some(owner) = self.template_redirect(svc_idx, src.into(), redirected) {
            return Action::Redirect(owner);
        }
        if let Some(reason) = self.admit_new_conn(src.into(), now_ms) {
            return Action::Drop(reason);
        }
        let Some(real_idx) = self.schedule(svc_idx, &key, now_ms) else {
            // IPVS ip_vs_leave: the client learns at once that nobody serves it.
            let answer = Answer::Icmp { from: dst, msg_type: icmp::msg_type::DEST_UNREACHABLE, code: icmp_err::code::PORT_UNREACHABLE };
            return Action::Answer { reason: Counter::DropNoRealServer, l2_len, answer };
        };
        let svc = &self.snapshot.services[svc_idx];
        let real = svc.reals[real_idx];
        if adopt && !sloppy::adoptable_mode(real.forward) {
            return Action::Drop(Counter::DropNoConnection);
        }
        // IPVS creates the entry in NONE and runs the SYN through the table (→ SYN_RECV).
        let state = match protocol {
            Protocol::Tcp if adopt => sloppy::adopted_state(&l4),
            Protocol::Tcp => crate::conn::next_state(TcpState::None, l4.flags(), crate::conn::StateTable::Input),
            Protocol::Udp => TcpState::Udp,
        };
        if real.addr.is_ipv6() {
            return self.new_conn_4in6(ip_bytes, l2_len, &key, svc_idx, real_idx, state, ip_len, now_ms, out);
        }
        let local = match self.local_for(svc_idx, real.forward) {
            Ok(local) => local,
            Err(reason) => return Action::Drop(reason),
        };
        let mut conn = match self.new_conn(ip_bytes, &key, svc_idx, real_idx, local, state, now_ms) {
            Ok(conn) => conn,
            Err(reason) => return Action::Drop(reason),
        };
        conn.restart_timer(state_timeout_ms(state, &self.snapshot.timeouts), now_ms);
        if self.syn_recv_cap_ms().is_some_and(|max| pressure::shorten_syn_recv(&mut conn, max, now_ms)) {
            self.counters.inc(Counter::ConnSynRecvShortened);
        }
        // The connection's inbound key is the packet's: `hash` is its hash.
        if let Err(reason) = self.add_new_conn_hashed(&conn, hash, ip_len, now_ms, out) {
            return Action::Drop(reason);
        }
        if adopt {
            self.counters.inc(Counter::ConnAdopted);
        }
        if self.snapshot.sync_send {
            self.push_sync(&conn, now_ms, out);
        }
        self.forward(port, ip_bytes, l2_len, pkt, &conn, None, Direction::Inbound, false)
    }

    /// Whether the packet with `l4` going `dir` is a new SYN that replaces
    /// the live connection `id`: one on a closing connection starts a new
    /// one (IPVS conn_reuse_mode), and so does one on a connection whose
    /// real server is gone (IPVS with expire_nodest_conn). Not while a SYN
    /// proxy handshake is in progress (that stage has the packet).
    #[inline]
    fn replaced_by_new_syn(&self, id: ConnId, dir: Direction, l4: &L4) -> bool {
        let new_syn = dir == Direction::Inbound && l4.syn && !l4.ack;
        if !new_syn {
            return false;
        }
        let Some(mut conn) = self.conns.get(id).copied() else { return false };
        self.relocate(&mut conn);
        conn.proxy.phase() != crate::synproxy::seq::Phase::Handshake
            && (conn.reusable_by_syn() || self.expired_by_config(&conn) == Some(Counter::DropNoDest))
    }

    /// The packet `pkt` of live connection `id` going `dir`, which does not
    /// replace it ([`Processor::replaced_by_new_syn`]): its state, timer,
    /// sync, accounting, then its mode's forwarding. The connection is read
    /// once, updated in a copy and written back once.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn connection_packet(
        &mut self,
        port: u16,
        ip_bytes: &mut [u8],
        l2_len: usize,
        pkt: &FlowPacket,
        id: ConnId,
        dir: Direction,
        now_ms: u64,
        out: &mut Output<F>,
    ) -> Action {
        let Some(stored) = self.conns.get(id) else {
            return Action::Drop(Counter::DropNoConnection);
        };
        let mut conn = *stored;
        if conn.generation != self.generation() {
            self.relocate_now(&mut conn);
            if let Some(stored) = self.conns.get_mut(id) {
                *stored = conn;
            }
        }
        let l4 = pkt.l4;
        if conn.proxy.phase() == crate::synproxy::seq::Phase::Handshake {
            return self.syn_proxy_handshake_packet(ip_bytes, l2_len, l4, id, &conn, dir, now_ms, out);
        }
        let first_ack = match conn.steady_timeout_ms(&l4.flags(), &self.snapshot.timeouts) {
            Some(timeout_ms) => {
                self.advance_steady(id, &mut conn, timeout_ms, now_ms, out);
                false
            }
            None => self.advance(id, &mut conn, l4.flags(), dir, now_ms, out),
        };
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
        self.count_traffic(&conn, dir, u64::from(pkt.ip_len));
        self.forward(port, ip_bytes, l2_len, pkt, &conn, Some(id), dir, first_ack)
    }

    /// Moves the live connection `id`, read as `conn`, by a packet with
    /// `flags` going `dir` at `now_ms`: its state and timer (and a SYN_RECV
    /// timer cut under pressure), its backup directors' copy when due, its
    /// real server's active/inactive counts; `conn` is written back. True
    /// when the packet is the ACK completing the handshake.
    #[inline]
    fn advance(&mut self, id: ConnId, conn: &mut Conn, flags: TcpFlags, dir: Direction, now_ms: u64, out: &mut Output<F>) -> bool {
        let before = *conn;
        let timeouts = &self.snapshot.timeouts;
        match conn.protocol {
            Protocol::Tcp => conn.on_tcp_packet(flags, dir, timeouts, now_ms),
            Protocol::Udp => conn.on_udp_packet(timeouts, now_ms),
        }
        if self.syn_recv_cap_ms().is_some_and(|max| pressure::shorten_syn_recv(conn, max, now_ms)) {
            self.counters.inc(Counter::ConnSynRecvShortened);
        }
        let timeouts = &self.snapshot.timeouts;
        let resync = self.snapshot.sync_send && (before.state != conn.state || conn.sync_refresh_due(timeouts, now_ms));
        if resync {
            conn.mark_synced(now_ms);
        }
        if let Some(stored) = self.conns.get_mut(id) {
            *stored = *conn;
        }
        if resync {
            self.push_sync(conn, now_ms, out);
        }
        self.recount_state(&before, conn);
        before.state == TcpState::SynRecv && conn.state == TcpState::Established
    }

    /// [`Processor::advance`] for a packet that only restarts the
    /// connection's timer, to `timeout_ms` ([`Conn::steady_timeout_ms`]: an
    /// ACK in ESTABLISHED, a UDP packet): no state change, so no SYN_RECV
    /// cut, recount or handshake's end; only the timer and, when due, the
    /// sync. Only those two fields are written back.
    #[inline]
    fn advance_steady(&mut self, id: ConnId, conn: &mut Conn, timeout_ms: u64, now_ms: u64, out: &mut Output<F>) {
        let timeouts = &self.snapshot.timeouts;
        conn.restart_timer(timeout_ms, now_ms);
        let resync = self.snapshot.sync_send && conn.sync_refresh_due(timeouts, now_ms);
        if resync {
            conn.mark_synced(now_ms);
        }
        if let Some(stored) = self.conns.get_mut(id) {
            stored.expires_ms = conn.expires_ms;
            stored.synced_tick = conn.synced_tick;
        }
        if resync {
            self.push_sync(conn, now_ms, out);
        }
    }

    /// The FULLNAT local address and port of a new connection of service
    /// `svc_idx` whose real server is reached by `forward` (None for other
    /// modes), or the drop reason when none is left.
    #[inline]
    pub(super) fn local_for(&mut self, svc_idx: usize, forward: ForwardMode) -> Result<Option<SocketAddrV4>, Counter> {
        if forward != ForwardMode::FullNat {
            return Ok(None);
        }
        let svc = &self.snapshot.services[svc_idx];
        match self.pool.allocate(&svc.local_addrs) {
            Some(l) => Ok(Some(l)),
            None if svc.local_addrs.is_empty() => Err(Counter::DropNoLaddr),
            None => Err(Counter::DropNoLocalPort),
        }
    }

    /// A new connection of the flow `key` (its first packet `ip_bytes`) to
    /// real server `real_idx` of service `svc_idx`, in `state`, with no timer
    /// yet; FULLNAT TCP gets its sequence shift. On an error the local port
    /// `local` is given back.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new_conn(
        &mut self,
        ip_bytes: &[u8],
        key: &FlowKey,
        svc_idx: usize,
        real_idx: usize,
        local: Option<SocketAddrV4>,
        state: TcpState,
        now_ms: u64,
    ) -> Result<Conn, Counter> {
        let real = self.snapshot.services[svc_idx].reals[real_idx];
        let protocol = Protocol::from_ip_proto(key.proto).ok_or(Counter::DropUnsupported)?;
        // An IPv4 service has IPv4 real servers (the config's validation).
        let real_addr = real.addr_v4().ok_or(Counter::DropUnsupported)?;
        let mut conn = Conn {
            protocol,
            client: SocketAddrV4::new(key.src, key.sport),
            vip: SocketAddrV4::new(key.dst, key.dport),
            real: SocketAddrV4::new(real_addr, real.port),
            local: local.into(),
            real_index: real_idx as u16,
            service_index: svc_idx as u16,
            generation: self.generation(),
            synced_tick: sync_tick(now_ms),
            forward: real.forward,
            state,
            expires_ms: 0,
            seq_delta: 0,
            reply_hop: crate::neigh::hops::NONE,
            proxy: Default::default(),
        };
        if let (Some(l), Protocol::Tcp) = (local, protocol) {
            let wall_ns = self.isn_clock.wall_ns(now_ms);
            match fnat::new_seq_delta_at(ip_bytes, l, conn.real, wall_ns) {
                Ok(delta) => conn.seq_delta = delta,
                Err(_) => {
                    self.pool.release(l);
                    return Err(Counter::DropMalformed);
                }
            }
        }
        Ok(conn)
    }

    /// Inserts the new connection `conn` (its first packet `ip_len` bytes)
    /// and does what follows a creation: counts, persistence template,
    /// announcement to the other workers. A full table gives its local port
    /// back and says why.
    pub(super) fn add_new_conn(&mut self, conn: &Conn, ip_len: u16, now_ms: u64, out: &mut Output<F>) -> Result<(), Counter> {
        let hash = self.conns.hash(&conn.inbound_key());
        self.add_new_conn_hashed(conn, hash, ip_len, now_ms, out)
    }

    /// [`Processor::add_new_conn`] with the hash of the connection's inbound
    /// key (its first packet's) in hand.
    pub(super) fn add_new_conn_hashed(
        &mut self,
        conn: &Conn,
        hash: u64,
        ip_len: u16,
        now_ms: u64,
        out: &mut Output<F>,
    ) -> Result<(), Counter> {
        if !self.insert_conn_hashed(*conn, hash, now_ms, out) {
            if let Some(l) = conn.local.get() {
                self.pool.release(l);
            }
            return Err(Counter::DropConnTableFull);
        }
        let svc_idx = usize::from(conn.service_index);
        self.count_new_conn(conn, ip_len);
        if let Some(p) = self.snapshot.services[svc_idx].persistence {
            self.template_use(conn, p, now_ms);
        }
        self.announce(conn, out);
        self.counters.inc(Counter::ConnCreated);
        Ok(())
    }
}

/// The wall clock FULLNAT's initial sequence numbers are taken from
/// ([`fnat::initial_seq`]): read once per value of the worker's `now_ms`
/// (a poll of the NIC), not once per new connection; a later connection of
/// the same `now_ms` gets one 64 ns tick more than the one before, so the
/// numbers handed out still increase. The clock read lags the true wall
/// clock by no more than the time since the worker took `now_ms`, a
/// fraction of the 274 s the ISN clock takes to wrap.
#[derive(Debug, Default)]
pub(super) struct IsnClock {
    /// The `now_ms` of the last clock read.
    now_ms: u64,
    /// The wall clock last handed out, in ns since 1970 (0: to be read).
    wall_ns: u64,
}

impl IsnClock {
    /// One tick of the ISN clock (`initial_seq` counts 64 ns ticks).
    const TICK_NS: u64 = 64;

    /// The wall clock, in ns since 1970, for a new connection at `now_ms`.
    pub(super) fn wall_ns(&mut self, now_ms: u64) -> u64 {
        if self.wall_ns == 0 || self.now_ms != now_ms {
            self.now_ms = now_ms;
            self.wall_ns = fnat::wall_clock_ns();
        } else {
            self.wall_ns = self.wall_ns.saturating_add(Self::TICK_NS);
        }
        self.wall_ns
    }
}

#[cfg(test)]
mod isn_clock_tests {
    use super::*;

    #[test]
    fn the_isn_clock_is_read_once_per_now_ms_and_ticks_on_between() {
        let mut c = IsnClock::default();
        let before = fnat::wall_clock_ns();
        let first = c.wall_ns(5);
        assert!(first >= before && first <= fnat::wall_clock_ns());
        assert_eq!(c.wall_ns(5), first + 64);
        assert_eq!(c.wall_ns(5), first + 128);
        // Another `now_ms`: the clock is read again.
        let again = c.wall_ns(6);
        assert!(again >= before && again <= fnat::wall_clock_ns());
    }
}

#[cfg(test)]
pub(super) mod established_tests {
    use std::net::Ipv4Addr;
    use std::sync::Arc;

    use super::*;
    use crate::frame::VecFrame;
    use crate::snapshot::{RealServer, SchedulerKind, Service, Timeouts};

    const STATES: [TcpState; 11] = [
        TcpState::None,
        TcpState::Established,
        TcpState::SynSent,
        TcpState::SynRecv,
        TcpState::FinWait,
        TcpState::TimeWait,
        TcpState::Close,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::Listen,
        TcpState::SynAck,
    ];
    const MODES: [ForwardMode; 4] = [ForwardMode::Dr, ForwardMode::Nat, ForwardMode::Tun, ForwardMode::FullNat];

    /// A processor with one service of one real server in `forward`,
    /// connection sync on or off, and TCP ESTABLISHED and UDP timeouts of
    /// `timeout_s`.
    pub(in crate::process) fn processor(forward: ForwardMode, sync_send: bool, timeout_s: u32) -> Processor<VecFrame> {
        let key = ServiceKey { protocol: Protocol::Tcp, vip: Ipv4Addr::new(10, 0, 0, 100).into(), port: 80 };
        let real = RealServer { upper_threshold: 2, ..RealServer::new(Ipv4Addr::new(10, 1, 0, 11), 80, 1, forward) };
        let services = vec![Service::new(key, SchedulerKind::Rr, vec![real])];
        let timeouts = Timeouts { tcp: timeout_s, udp: timeout_s, ..Timeouts::default() };
        Processor::new(Arc::new(Snapshot { services, sync_send, timeouts, ..Default::default() }.finish()), 64)
    }

    /// One packet on one connection, for the steady-step proptests (IPv4
    /// here, IPv6 in `ipv6.rs`): the connection's protocol, state and mode,
    /// the packet's flags and direction, the configuration, and when.
    #[derive(Clone, Copy, Debug)]
    pub(in crate::process) struct SteadyCase {
        pub protocol: Protocol,
        pub state: TcpState,
        pub forward: ForwardMode,
        pub flags: TcpFlags,
        pub dir: Direction,
        pub sync_send: bool,
        pub timeout_s: u32,
        pub created_ms: u64,
        pub idle_ms: u64,
    }

    proptest::prop_compose! {
        /// Cases of every state and mode, ESTABLISHED and UDP ones often, any
        /// flags, timeouts up to `u32::MAX` seconds.
        pub(in crate::process) fn steady_cases()(
            state in 0usize..11,
            established in proptest::bool::ANY,
            udp in proptest::bool::weighted(0.3),
            mode in 0usize..4,
            flags in (proptest::bool::weighted(0.15), proptest::bool::ANY, proptest::bool::weighted(0.15), proptest::bool::weighted(0.15)),
            reply in proptest::bool::ANY,
            sync_send in proptest::bool::ANY,
            timeout_s in proptest::prop_oneof![1u32..3600, proptest::num::u32::ANY],
            created_ms in 0u64..u64::from(u32::MAX),
            idle_ms in 0u64..4_000_000,
        ) -> SteadyCase {
            let forward = MODES[mode];
            let (protocol, state) = match (udp, established) {
                (true, _) => (Protocol::Udp, TcpState::Udp),
                (false, true) => (Protocol::Tcp, TcpState::Established),
                (false, false) => (Protocol::Tcp, STATES[state]),
            };
            let flags = TcpFlags { syn: flags.0, ack: flags.1, fin: flags.2, rst: flags.3 };
            let dir = if reply && matches!(forward, ForwardMode::Nat | ForwardMode::FullNat) { Direction::Reply } else { Direction::Inbound };
            SteadyCase { protocol, state, forward, flags, dir, sync_send, timeout_s, created_ms, idle_ms }
        }
    }

    impl SteadyCase {
        /// The case's connection between `client`, `vip` and `real` (FULLNAT
        /// with `local`) of service 0's real server 0, in `generation`, its
        /// timer started at `created_ms`.
        pub(in crate::process) fn conn<S: ConnAddr>(
            &self,
            [client, vip, real, local]: [S; 4],
            generation: u32,
            timeouts: &Timeouts,
        ) -> Conn<S> {
            let mut conn = Conn {
                protocol: self.protocol,
                client,
                vip,
                real,
                local: if self.forward == ForwardMode::FullNat { Some(local) } else { None }.into(),
                real_index: 0,
                service_index: 0,
                generation,
                synced_tick: sync_tick(self.created_ms),
                forward: self.forward,
                state: self.state,
                expires_ms: 0,
                seq_delta: 0,
                reply_hop: hops::NONE,
                proxy: Default::default(),
            };
            conn.restart_timer(conn.idle_timeout_ms(timeouts), self.created_ms);
            conn
        }
    }

    proptest::proptest! {
        /// For every packet that only restarts a connection's timer (an ACK
        /// that keeps TCP in ESTABLISHED, any UDP packet), the short step
        /// gives what the general one gives: the connection (copy and table
        /// entry), counters, SYN_RECV count, real server counts, sync records
        /// and handshake's end; and the general step indeed leaves its state
        /// as it was.
        #[test]
        fn the_steady_step_agrees_with_the_general_one(case in steady_cases()) {
            let SteadyCase { state, forward, flags, dir, sync_send, timeout_s, created_ms, idle_ms, .. } = case;
            let sock = |a, b, c, d, port| SocketAddrV4::new(Ipv4Addr::new(a, b, c, d), port);
            let mut runs = Vec::new();
            for general in [true, false] {
                let mut p = processor(forward, sync_send, timeout_s);
                let mut out = Output::with_capacity(4);
                let ends = [sock(10, 0, 0, 2, 40000), sock(10, 0, 0, 100, 80), sock(10, 1, 0, 11, 80), sock(10, 1, 0, 200, 5000)];
                let mut conn = case.conn(ends, p.generation(), &p.snapshot.timeouts);
                proptest::prop_assert!(p.add_new_conn(&conn, 60, created_ms, &mut out).is_ok());
                let id = p.conns.lookup(&conn.inbound_key(), created_ms).map(|(id, _)| id).expect("inserted");
                out.sync.clear();
                let now_ms = created_ms + idle_ms;
                let Some(timeout_ms) = conn.steady_timeout_ms(&flags, &p.snapshot.timeouts) else {
                    return Ok(());
                };
                let first_ack = if general {
                    p.advance(id, &mut conn, flags, dir, now_ms, &mut out)
                } else {
                    p.advance_steady(id, &mut conn, timeout_ms, now_ms, &mut out);
                    false
                };
                proptest::prop_assert_eq!(conn.state, state);
                let counts = p.counts.iter().map(|c| (c.active.clone(), c.inactive.clone(), c.view_active.clone(), c.overloaded.clone())).collect::<Vec<_>>();
                runs.push((conn, p.conns.get(id).copied(), first_ack, p.counters.clone(), p.pressure.syn_recv, counts, out.sync.clone()));
            }
            proptest::prop_assert_eq!(&runs[0], &runs[1]);
        }
    }

    /// No flag but ACK (or none at all) moves ESTABLISHED anywhere, in any
    /// of IPVS's tables: what [`Conn::keeps_established`] relies on.
    #[test]
    fn an_ack_keeps_established_in_every_table() {
        for bits in 0u8..16 {
            let flags = TcpFlags { syn: bits & 1 != 0, ack: bits & 2 != 0, fin: bits & 4 != 0, rst: bits & 8 != 0 };
            for table in [crate::conn::StateTable::Input, crate::conn::StateTable::Output, crate::conn::StateTable::InputOnly] {
                let next = crate::conn::next_state(TcpState::Established, flags, table);
                if !(flags.syn || flags.fin || flags.rst) {
                    assert_eq!(next, TcpState::Established, "{flags:?} {table:?}");
                }
            }
        }
    }
}
