//! IPv6 frames: neighbour discovery and ICMPv6 echo for the appliance, and
//! the flows of IPv6 services in every mode, NAT64 included.
//!
//! IPv6 connections live in a table of their own ([`crate::conn::ConnTable6`]),
//! so IPv4 entries keep their size. A NAT64 connection (an IPv6 VIP served by
//! an IPv4 real server through FULLNAT) is one of them, its real server and
//! IPv4 local address stored IPv4-mapped: the IPv4 replies to the local
//! address find it by their mapped key ([`Processor::nat64_reply`]). Packets
//! carrying an IPv4-mapped address themselves are dropped, so nobody can aim
//! at those keys from the IPv6 side.
//!
//! ICMP errors about a NAT64 connection cross between the families (RFC 7915,
//! [`Processor::nat64_icmp4`], [`nat64::icmp6_to_4`]). The SYN-flood
//! defences cover IPv6 clients: the IPv6 table's fill starts pressure, a full
//! one makes room, SYN_RECV timers are cut under pressure and new connections
//! are bounded per source prefix (`prefix_len_ipv6`). New IPv6 connections
//! honour persistence templates (a client network is its first `-M` bits;
//! [`super::persistence`]) and `sloppy` adoption as IPv4 ones do.
//!
//! Fragments (other than atomic ones, which are whole packets) are held by
//! the worker's reassembler ([`crate::frag`]) until their datagram is
//! complete; its first fragment is then classified as a flow packet and the
//! others follow its verdict. NAT64 does not translate fragments.
//!
//! IPv6 NAT and FULLNAT services have the SYN proxy as IPv4 ones do
//! ([`super::synproxy`]); NAT64 services do not.

use std::net::{Ipv6Addr, SocketAddrV6};

use super::*;
use crate::conn::OptAddrV6;
use crate::fwd::{fnat6, hop6, icmp6_err, l4v6, nat6, nat64};
use crate::local6::{self, AddrKind, Local6, OurAddrs6};
use crate::wire::icmpv6;
use crate::wire::ipv6::next_header;
use crate::wire::Ipv6Packet;

/// The reply buffer of neighbour discovery answers: an advertisement with a
/// VLAN tag is 90 bytes.
pub(super) const ND_REPLY_LEN: usize = 128;

/// A TCP or UDP packet of an IPv6 flow, from one parse of its headers.
#[derive(Clone, Copy, Debug)]
pub(super) struct FlowPacket6 {
    /// Its 5-tuple.
    pub(super) key: FlowKey6,
    /// Its ports and TCP flags.
    pub(super) l4: flow::L4,
    /// IPv6 header plus payload length.
    pub(super) ip_len: u16,
}

/// The snapshot's view of our IPv6 addresses, for neighbour discovery and echo.
struct Ours<'a>(&'a Snapshot);

impl OurAddrs6 for Ours<'_> {
    fn kind(&self, port: u16, addr: Ipv6Addr) -> Option<AddrKind> {
        let snap = self.0;
        if snap.addresses6.iter().any(|a| a.addr == addr && a.port == port) {
            Some(AddrKind::Interface)
        } else if snap.is_vip6(addr) {
            Some(AddrKind::Vip)
        } else if snap.is_local_addr6(addr) {
            Some(AddrKind::Local)
        } else {
            None
        }
    }
}

/// A socket address as the fwd functions take it.
fn sock(a: SockV6) -> SocketAddrV6 {
    SocketAddrV6::new(*a.ip(), a.port(), 0, 0)
}

impl<F: Frame> Processor<F> {
    /// An IPv6 frame for us (unicast to the port's MAC) or multicast.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn handle_ipv6(
        &mut self,
        port: u16,
        port_mac: MacAddr,
        data: &mut [u8],
        l2_len: usize,
        now_ms: u64,
        redirected: bool,
        out: &mut Output<F>,
    ) -> Action {
        let (src, dst, ip_len) = match data.get(l2_len..).map(Ipv6Packet::new_checked) {
            Some(Ok(ip)) => (ip.src_addr(), ip.dst_addr(), 40 + usize::from(ip.payload_len())),
            _ => return Action::Drop(Counter::DropMalformed),
        };
        if src.to_ipv4_mapped().is_some() || dst.to_ipv4_mapped().is_some() {
            return Action::Drop(Counter::DropIpv4Mapped);
        }
        let mut reply = [0u8; ND_REPLY_LEN];
        match local6::answer(data, l2_len, port, port_mac, &Ours(&self.snapshot), &mut reply) {
            Local6::NotForUs => {}
            Local6::NdReply(r) => {
                self.counters.inc(Counter::NdSolicitsIn);
                if r.dad {
                    self.counters.inc(Counter::NdDuplicates);
                }
                if let Some(update) = r.learn {
                    self.learn_nd(&update, port, now_ms, out);
                }
                // The kernel keeps its own neighbour cache for its addresses (as with ARP).
                if r.kind == AddrKind::Interface && matches!(self.local(port), Action::ToKernel) {
                    match ControlFrame::untagged_copy_of(data, l2_len, l2_len + ip_len) {
                        Some(copy) => out.kernel_control.push((port, copy)),
                        None => self.counters.inc(Counter::DropKernel),
                    }
                }
                self.nd_reply[..r.len].copy_from_slice(&reply[..r.len]);
                return Action::ReplyNd { len: r.len };
            }
            Local6::EchoReply { .. } => {
                self.counters.inc(Counter::IcmpEchoReplies);
                return Action::Reply;
            }
            Local6::Learned(update) => {
                self.learn_nd(&update, port, now_ms, out);
                // Counted once: here when the kernel gets it too, else as consumed.
                return match self.local(port) {
                    Action::ToKernel => {
                        self.counters.inc(Counter::NdAdvertsIn);
                        Action::ToKernel
                    }
                    _ => Action::Consumed(Counter::NdAdvertsIn),
                };
            }
            Local6::Duplicate(_) => {
                self.counters.inc(Counter::NdDuplicates);
                return self.local(port);
            }
            Local6::Drop(_) => return Action::Drop(Counter::DropNdInvalid),
        }
        // Multicast (VRRPv3, MLD, router discovery) is the kernel's business.
        if dst.is_multicast() {
            return self.local(port);
        }
        let Some(ip_bytes) = data.get_mut(l2_len..) else {
            return Action::Drop(Counter::DropMalformed);
        };
        let pkt = match classify6(ip_bytes, self.whole_datagram) {
            Kind6::Flow(pkt) => pkt,
            Kind6::Fragment => return Action::Fragment { l2_len },
            Kind6::IcmpError => return self.icmp6_error(port, ip_bytes, l2_len, dst, now_ms, redirected),
            Kind6::Other => return self.not_balanced6(port, dst),
            Kind6::Drop(reason) => return Action::Drop(reason),
        };
        let hash = self.conns6.hash(&pkt.key);
        self.flow_packet6(port, ip_bytes, l2_len, &pkt, hash, now_ms, redirected, out)
    }

    /// An ICMPv6 error quoting a packet of an IPv6 connection goes to the
    /// other party, translated as the connection's packets are (NAT and
    /// FULLNAT; DR and TUN forward it to the real server unchanged). Errors
    /// about a NAT64 connection are not translated between the families
    /// (dropped and counted); errors about nothing of ours are the kernel's
    /// when they are for our address.
    fn icmp6_error(&mut self, port: u16, ip_bytes: &mut [u8], l2_len: usize, dst: Ipv6Addr, now_ms: u64, redirected: bool) -> Action {
        let quoted = l4v6::locate(ip_bytes).ok().and_then(|u| ip_bytes.get(u.offset..)).and_then(icmp6_err::quoted_flow6);
        let Some(q) = quoted else { return self.not_balanced6(port, dst) };
        // The quoted packet travelled the other way: look up its reverse.
        let key = FlowKey6 { proto: q.protocol, src: *q.dst.ip(), sport: q.dst.port(), dst: *q.src.ip(), dport: q.src.port() };
        let Some((id, dir)) = self.conns6.lookup(&key, now_ms) else {
            if let Some(owner) = self.other_owner6(&key, redirected) {
                return Action::Redirect(owner);
            }
            if self.snapshot.is_interface_addr6(dst) || dst.is_unicast_link_local() {
                return self.local(port);
            }
            return Action::Drop(Counter::DropNoConnection);
        };
        let Some(c) = self.conns6.get(id).copied() else {
            return Action::Drop(Counter::DropNoConnection);
        };
        if dir == Direction::Reply && matches!(c.forward, ForwardMode::Dr | ForwardMode::Tun) {
            return Action::Drop(Counter::DropNotForUs);
        }
        match hop6::decrement(ip_bytes) {
            Ok(()) => {}
            Err(FwdError::TtlExceeded) => return Action::Drop(Counter::DropTtlExceeded),
            Err(_) => return Action::Drop(Counter::DropMalformed),
        }
        if let Some(real4) = c.real.to_mapped_v4() {
            return self.nat64_icmp6(l2_len, &c, dir, real4);
        }
        let (vip, client, real) = (sock(c.vip), sock(c.client), sock(c.real));
        let local = c.local.get().map(sock);
        let t = match (dir, c.forward) {
            (Direction::Reply, ForwardMode::Nat) => {
                icmp6_err::Translation6 { outer_src: Some(*vip.ip()), quoted_dst: Some(vip), ..Default::default() }
            }
            (Direction::Reply, ForwardMode::FullNat) => icmp6_err::Translation6 {
                outer_src: Some(*vip.ip()),
                outer_dst: Some(*client.ip()),
                quoted_src: Some(client),
                quoted_dst: Some(vip),
                quoted_seq_shift: c.seq_delta.wrapping_neg(),
            },
            // A SYN proxy's connection: the quoted reply's sequence number
            // goes back to the real server's space (it checks it is in flight).
            (Direction::Inbound, ForwardMode::Nat) => icmp6_err::Translation6 {
                outer_dst: Some(*real.ip()),
                quoted_src: Some(real),
                quoted_seq_shift: if c.proxy.is_open() { c.proxy.delta() } else { 0 },
                ..Default::default()
            },
            (Direction::Inbound, ForwardMode::FullNat) => icmp6_err::Translation6 {
                outer_src: local.map(|l| *l.ip()),
                outer_dst: Some(*real.ip()),
                quoted_src: Some(real),
                quoted_dst: local,
                quoted_seq_shift: if c.proxy.is_open() { c.proxy.delta() } else { 0 },
            },
            (Direction::Inbound, ForwardMode::Dr) => {
                self.counters.inc(Counter::IcmpErrorsForwarded);
                return Action::Forward6(crate::fwd::dr::xmit_inbound6(*real.ip()));
            }
            (Direction::Inbound, ForwardMode::Tun) => {
                self.counters.inc(Counter::IcmpErrorsForwarded);
                return Action::Tunnel6 { l2_len, real: IpAddr::V6(*real.ip()), vip: *vip.ip() };
            }
            (Direction::Reply, ForwardMode::Dr | ForwardMode::Tun) => return Action::Drop(Counter::DropNotForUs),
        };
        if icmp6_err::translate6(ip_bytes, &t).is_err() {
            return Action::Drop(Counter::DropMalformed);
        }
        self.counters.inc(Counter::IcmpErrorsForwarded);
        let to = match dir {
            Direction::Reply => *client.ip(),
            Direction::Inbound => *real.ip(),
        };
        Action::Forward6(crate::fwd::NextHop6::Routed(to))
    }

    /// An IPv6 packet that is not part of a balanced flow. The kernel's
    /// link-local addresses (fe80::/10: VRRPv3 adverts to a unicast peer,
    /// its neighbour discovery) are the kernel's, like our own addresses.
    fn not_balanced6(&self, port: u16, dst: Ipv6Addr) -> Action {
        if self.snapshot.is_interface_addr6(dst) || dst.is_unicast_link_local() {
            self.local(port)
        } else if self.snapshot.is_local_addr6(dst) {
            Action::Drop(Counter::DropLocal)
        } else if self.snapshot.is_vip6(dst) {
            Action::Drop(Counter::DropNoService)
        } else {
            Action::Drop(Counter::DropNotForUs)
        }
    }

    /// Applies what neighbour discovery told of a neighbour (RFC 4861 7.2.5).
    /// A solicited advertisement is also told to the other workers, whether
    /// this one knew the neighbour or not: the NIC may have handed the answer
    /// to another worker than the one that solicited it.
    fn learn_nd(&mut self, update: &crate::neigh::NdUpdate, port: u16, now_ms: u64, out: &mut Output<F>) {
        let learned = self.neigh6.learn_nd(update, port, now_ms);
        if let Some(mac) = learned.mac {
            self.release_held6(port, mac, learned.released, out);
        }
        let solicited = matches!(update.source, crate::neigh::NdSource::Advertisement { solicited: true, .. });
        let told = if solicited { update.mac.or(learned.mac) } else { learned.mac.filter(|_| learned.changed) };
        if let (Some(mac), true) = (told, self.workers > 1) {
            out.messages.push(WorkerMsg::Neighbour6 { ip: update.ip, mac, port });
        }
    }

    /// A neighbour another worker learned.
    pub(super) fn learn_neighbour6(&mut self, ip: Ipv6Addr, mac: MacAddr, port: u16, now_ms: u64, out: &mut Output<F>) {
        let released = self.neigh6.learn(ip, mac, port, now_ms, false);
        self.release_held6(port, mac, released, out);
    }

    /// Sends the frames that waited for a neighbour's MAC.
    fn release_held6(&mut self, port: u16, mac: MacAddr, released: Vec<F>, out: &mut Output<F>) {
        let Some((port_mac, vlan)) = self.snapshot.ports.get(usize::from(port)).map(|p| (p.mac, p.vlan)) else {
            out.drop.extend(released);
            return;
        };
        for mut f in released {
            if !set_vlan(&mut f, vlan) {
                self.drop(f, Counter::DropNoRoom, out);
                continue;
            }
            set_macs(f.data_mut(), port_mac, mac);
            self.push_tx(port, f, out);
        }
    }

    /// The packet `pkt` of an IPv6 flow whose key hashes to `hash`: its
    /// connection's, or a new connection's first.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn flow_packet6(
        &mut self,
        port: u16,
        ip_bytes: &mut [u8],
        l2_len: usize,
        pkt: &FlowPacket6,
        hash: u64,
        now_ms: u64,
        redirected: bool,
        out: &mut Output<F>,
    ) -> Action {
        let (key, l4) = (pkt.key, pkt.l4);
        let timeouts = self.snapshot.timeouts;
        if let Some((id, dir)) = self.conns6.lookup_hashed(&key, hash, now_ms) {
            let Some(mut conn) = self.conns6.get(id).copied() else {
                return Action::Drop(Counter::DropNoConnection);
            };
            self.relocate(&mut conn);
            if conn.proxy.phase() == crate::synproxy::seq::Phase::Handshake {
                return self.syn_proxy_handshake_packet(ip_bytes, l2_len, l4, id, &conn, dir, now_ms, out);
            }
            let new_syn = dir == Direction::Inbound && l4.syn && !l4.ack;
            let reschedule = new_syn && (conn.reusable_by_syn() || self.expired_by_config(&conn) == Some(Counter::DropNoDest));
            if !reschedule {
                let before = conn;
                self.touch6(id, &mut conn, &l4, dir, now_ms, out);
                if let Some(reason) = self.expired_by_config(&conn) {
                    self.remove_conn6(id, now_ms, out);
                    return Action::Drop(reason);
                }
                let first_ack = before.state == TcpState::SynRecv && conn.state == TcpState::Established;
                self.count_traffic(&conn, dir, u64::from(pkt.ip_len));
                return self.forward6(ip_bytes, l2_len, pkt, &conn, dir, first_ack);
            }
            self.remove_conn6(id, now_ms, out);
        }
        if let Some(owner) = self.other_owner6(&key, redirected) {
            return Action::Redirect(owner);
        }
        let Some(protocol) = Protocol::from_ip_proto(key.proto) else {
            return Action::Drop(Counter::DropUnsupported);
        };
        let Some((svc_idx, svc)) = self.snapshot.service(&ServiceKey { protocol, vip: key.dst.into(), port: l4.dport }) else {
            return self.not_balanced6(port, key.dst);
        };
        if self.snapshot.is_standby(key.dst) {
            return Action::Drop(Counter::DropStandby);
        }
        if protocol == Protocol::Tcp && svc.syn_proxy != crate::snapshot::SynProxy::Off {
            if let Some(action) =
                self.syn_proxy_new_flow::<SockV6>(ip_bytes, l2_len, &key, l4, pkt.ip_len, svc_idx, now_ms, redirected, out)
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
        if let Some(owner) = self.template_redirect(svc_idx, key.src.into(), redirected) {
            return Action::Redirect(owner);
        }
        if let Some(reason) = self.admit_new_conn(key.src.into(), now_ms) {
            return Action::Drop(reason);
        }
        let Some(real_idx) = self.schedule(svc_idx, &key, now_ms) else {
            let (from, msg_type, code) = (key.dst, icmpv6::msg_type::DEST_UNREACHABLE, icmpv6::unreachable_code::PORT_UNREACHABLE);
            return Action::Answer6 { reason: Counter::DropNoRealServer, l2_len, from, msg_type, code, rest: 0 };
        };
        if adopt && !sloppy::adoptable_mode(self.snapshot.services[svc_idx].reals[real_idx].forward) {
            return Action::Drop(Counter::DropNoConnection);
        }
        let state = match protocol {
            Protocol::Tcp if adopt => sloppy::adopted_state(&l4),
            Protocol::Tcp => crate::conn::next_state(TcpState::None, l4.flags(), crate::conn::StateTable::Input),
            Protocol::Udp => TcpState::Udp,
        };
        let mut conn = match self.new_conn6(ip_bytes, &key, svc_idx, real_idx, state, now_ms) {
            Ok(c) => c,
            Err(reason) => return Action::Drop(reason),
        };
        conn.restart_timer(state_timeout_ms(state, &timeouts), now_ms);
        if self.syn_recv_cap_ms().is_some_and(|max| pressure::shorten_syn_recv(&mut conn, max, now_ms)) {
            self.counters.inc(Counter::ConnSynRecvShortened);
        }
        if !self.insert_new_conn6(conn, pkt.ip_len, now_ms, out) {
            return Action::Drop(Counter::DropConnTableFull);
        }
        if adopt {
            self.counters.inc(Counter::ConnAdopted);
        }
        self.forward6(ip_bytes, l2_len, pkt, &conn, Direction::Inbound, false)
    }

    /// Inserts the new IPv6 (or IPv4-in-IPv6) connection `conn` (its first
    /// packet `ip_len` bytes) and does what follows a creation: counts,
    /// persistence template, announcement to the other workers, sync. False when the table is
    /// full (its local port given back).
    pub(super) fn insert_new_conn6(&mut self, conn: Conn6, ip_len: u16, now_ms: u64, out: &mut Output<F>) -> bool {
        if !self.insert_conn6(conn, now_ms, out) {
            self.release_local6(&conn);
            return false;
        }
        let (svc_idx, real_idx) = (usize::from(conn.service_index), usize::from(conn.real_index));
        self.count_conn(&conn, conn.service_index, conn.real_index, 1);
        if let Some(t) = self.counts.get_mut(svc_idx).and_then(|c| c.traffic.get_mut(real_idx)) {
            t.conns += 1;
        }
        self.count_traffic(&conn, Direction::Inbound, u64::from(ip_len));
        if let Some(p) = self.snapshot.services[svc_idx].persistence {
            self.template_use(&conn, p, now_ms);
        }
        self.announce6(&conn, out);
        self.counters.inc(Counter::ConnCreated);
        if self.snapshot.sync_send {
            self.push_sync(&conn, now_ms, out);
        }
        true
    }

    /// A new IPv6 connection of `key` to real server `real_idx` of service
    /// `svc_idx`: an IPv6 real server, or an IPv4 one through FULLNAT
    /// (NAT64, stored IPv4-mapped) with an IPv4 local address.
    pub(super) fn new_conn6(
        &mut self,
        ip_bytes: &[u8],
        key: &FlowKey6,
        svc_idx: usize,
        real_idx: usize,
        state: TcpState,
        now_ms: u64,
    ) -> Result<Conn6, Counter> {
        let svc = &self.snapshot.services[svc_idx];
        let real = svc.reals[real_idx];
        let protocol = Protocol::from_ip_proto(key.proto).ok_or(Counter::DropUnsupported)?;
        let (real_sock, local) = match (real.addr, real.forward) {
            (IpAddr::V6(a), ForwardMode::FullNat) => {
                let local = self.pool6.allocate(&svc.local_addrs6);
                let local = local.ok_or(if svc.local_addrs6.is_empty() { Counter::DropNoLaddr } else { Counter::DropNoLocalPort })?;
                (SockV6::new(a, real.port), Some(local))
            }
            (IpAddr::V6(a), _) => (SockV6::new(a, real.port), None),
            (IpAddr::V4(a), ForwardMode::FullNat) => {
                let local = self.pool.allocate(&svc.local_addrs);
                let local = local.ok_or(if svc.local_addrs.is_empty() { Counter::DropNoLaddr } else { Counter::DropNoLocalPort })?;
                (SockV6::mapped(SocketAddrV4::new(a, real.port)), Some(SockV6::mapped(local)))
            }
            // IPv6 over an IPv4 tunnel: the connection keeps the real server mapped.
            (IpAddr::V4(a), ForwardMode::Tun) => (SockV6::mapped(SocketAddrV4::new(a, real.port)), None),
            (IpAddr::V4(_), _) => return Err(Counter::DropUnsupported),
        };
        let mut conn = Conn6 {
            protocol,
            client: SockV6::new(key.src, key.sport),
            vip: SockV6::new(key.dst, key.dport),
            real: real_sock,
            local: OptAddrV6::from(local),
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
            let delta = match (l.to_mapped_v4(), real_sock.to_mapped_v4()) {
                (Some(l4), Some(r4)) => nat64::new_seq_delta(ip_bytes, l4, r4),
                _ => fnat6::new_seq_delta(ip_bytes, sock(l), sock(real_sock)),
            };
            match delta {
                Ok(d) => conn.seq_delta = d,
                Err(_) => {
                    self.release_local6(&conn);
                    return Err(Counter::DropMalformed);
                }
            }
        }
        Ok(conn)
    }

    /// Gives a connection's local address and port back to its pool.
    fn release_local6(&mut self, c: &Conn6) {
        let Some(l) = c.local.get() else { return };
        match l.to_mapped_v4() {
            Some(l4) => self.pool.release(l4),
            None => self.pool6.release(l),
        }
    }

    /// Adds an IPv6 connection to its table; one it replaces is forgotten. A
    /// full table makes room as the IPv4 one does ([`Processor::make_room6`]).
    fn insert_conn6(&mut self, conn: Conn6, now_ms: u64, out: &mut Output<F>) -> bool {
        let mut displaced = std::mem::take(&mut self.removed6);
        let mut inserted = self.conns6.insert(conn, &mut displaced);
        if inserted.is_err() && self.make_room6(now_ms, out) {
            inserted = self.conns6.insert(conn, &mut displaced);
        }
        for old in displaced.drain(..) {
            self.forget6(&old, now_ms, out);
        }
        self.removed6 = displaced;
        inserted.is_ok()
    }

    /// Removes an IPv6 connection now.
    pub(super) fn remove_conn6(&mut self, id: ConnId, now_ms: u64, out: &mut Output<F>) {
        if let Some(c) = self.conns6.remove(id) {
            self.forget6(&c, now_ms, out);
        }
    }

    /// Undoes what an IPv6 connection held: counts, its local port, its
    /// template's use, its keys' owner.
    pub(super) fn forget6(&mut self, c: &Conn6, now_ms: u64, out: &mut Output<F>) {
        let mut c = *c;
        self.relocate(&mut c);
        self.syn_proxy_forget(&c, out);
        self.count_conn(&c, c.service_index, c.real_index, -1);
        self.release_local6(&c);
        self.template_release(&c, now_ms);
        if self.workers > 1 {
            let owner = self.worker as u16;
            out.messages.push(WorkerMsg::FlowGone6 { key: c.inbound_key(), owner });
            if c.forward == ForwardMode::Nat {
                if let Some(key) = c.reply_key() {
                    out.messages.push(WorkerMsg::FlowGone6 { key, owner });
                }
            }
        }
    }

    /// Installs an IPv6 (or NAT64) connection received from the sync master,
    /// as [`Processor::install`] does an IPv4 one, its SYN proxy translation
    /// with it. False when it is unusable (an IPv4 client, a translation
    /// not open or on no IPv6 NAT or FULLNAT connection, a local port 0) or
    /// the table is full.
    pub(super) fn install6(&mut self, info: &ConnInfo, now_ms: u64, out: &mut Output<F>) -> bool {
        let sock6 = |a: std::net::SocketAddr| match a {
            std::net::SocketAddr::V6(a) => SockV6::new(*a.ip(), a.port()),
            std::net::SocketAddr::V4(a) => SockV6::mapped(a),
        };
        // IPv6 client and VIP, or IPv4 ones tunnelled to an IPv6 real server.
        let ipv4_in_ipv6 = info.client.is_ipv4() && info.real.is_ipv6() && info.forward == ForwardMode::Tun;
        if info.client.is_ipv4() != info.vip.is_ipv4() || (info.client.is_ipv4() && !ipv4_in_ipv6) {
            return false;
        }
        let Some(state) = TcpState::from_name(&info.state) else { return false };
        if info.local.is_some_and(|l| l.port() == 0) {
            return false;
        }
        let proxy = match info.syn_proxy {
            None => crate::synproxy::PackedTranslation::default(),
            Some(t) => match crate::synproxy::PackedTranslation::try_from(t) {
                Ok(packed) if Self::installable_translation(info, &t) && info.real.is_ipv6() && !info.client.is_ipv4() => packed,
                _ => return false,
            },
        };
        let mut conn = Conn6 {
            protocol: info.protocol,
            client: sock6(info.client),
            vip: sock6(info.vip),
            real: sock6(info.real),
            local: OptAddrV6::from(info.local.map(sock6)),
            real_index: u16::MAX,
            service_index: u16::MAX,
            generation: 0,
            synced_tick: sync_tick(now_ms),
            forward: info.forward,
            state,
            expires_ms: 0,
            seq_delta: info.seq_delta,
            reply_hop: crate::neigh::hops::NONE,
            proxy,
        };
        conn.restart_timer(state_timeout_ms(state, &self.snapshot.timeouts), now_ms);
        self.relocate_now(&mut conn);
        if let Some(l) = conn.local.get() {
            match l.to_mapped_v4() {
                Some(l4) => self.pool.reserve(l4),
                None => self.pool6.reserve(l),
            }
        }
        if !self.insert_conn6(conn, now_ms, out) {
            return false;
        }
        self.announce6(&conn, out);
        self.count_conn(&conn, conn.service_index, conn.real_index, 1);
        self.counters.inc(Counter::ConnSynced);
        true
    }

    /// Expires idle IPv6 connections and asks for IPv6 neighbours (from [`Processor::tick`]).
    pub(super) fn tick6(&mut self, now_ms: u64, out: &mut Output<F>) {
        let mut removed = std::mem::take(&mut self.removed6);
        let syn_recv_cap = self.syn_recv_cap_ms();
        let (expired, cut) = self.conns6.expire_capped(now_ms, EXPIRE_BUDGET, &mut removed, syn_recv_cap);
        for c in removed.drain(..) {
            self.forget6(&c, now_ms, out);
        }
        self.removed6 = removed;
        self.counters.add(Counter::ConnExpired, expired as u64);
        self.counters.add(Counter::ConnSynRecvShortened, cut as u64);
        self.counters.set(Counter::ConnActive6, self.conns6.len() as u64);
        let mut requests = std::mem::take(&mut self.requests6);
        self.neigh6.tick(now_ms, &mut self.expired, &mut requests);
        self.counters.add(Counter::DropNeighUnresolved, self.expired.len() as u64);
        out.drop.append(&mut self.expired);
        for (ip, port) in requests.drain(..) {
            self.solicit(port, ip, None, out);
        }
        self.requests6 = requests;
    }

    /// Tells the other workers that this one owns an IPv6 connection.
    fn announce6(&self, conn: &Conn6, out: &mut Output<F>) {
        if self.workers < 2 {
            return;
        }
        let owner = self.worker as u16;
        out.messages.push(WorkerMsg::FlowOwner6 { key: conn.inbound_key(), owner });
        if conn.forward == ForwardMode::Nat {
            if let Some(key) = conn.reply_key() {
                out.messages.push(WorkerMsg::FlowOwner6 { key, owner });
            }
        }
    }

    /// The other worker that owns an IPv6 packet's connection, if any.
    pub(super) fn other_owner6(&self, key: &FlowKey6, redirected: bool) -> Option<usize> {
        if redirected || self.workers < 2 {
            return None;
        }
        let owner = if self.snapshot.is_local_addr6(key.dst) {
            owner_of_port(key.dport, self.workers)
        } else {
            usize::from(*self.flow_owners6.get(key)?)
        };
        (owner != self.worker).then_some(owner)
    }

    /// Applies another worker's note about an IPv6 key.
    pub(super) fn handle_message6(&mut self, msg: WorkerMsg, now_ms: u64, out: &mut Output<F>) {
        match msg {
            WorkerMsg::Neighbour6 { ip, mac, port } => self.learn_neighbour6(ip, mac, port, now_ms, out),
            WorkerMsg::FlowOwner6 { key, owner } => {
                if let Some((id, _)) = self.conns6.lookup(&key, now_ms) {
                    self.counters.inc(Counter::ConnSuperseded);
                    self.remove_conn6(id, now_ms, out);
                }
                self.flow_owners6.insert(key, owner);
            }
            WorkerMsg::FlowGone6 { key, owner } if self.flow_owners6.get(&key) == Some(&owner) => {
                self.flow_owners6.remove(&key);
            }
            _ => {}
        }
    }

    /// A packet of IPv6 connection `conn` going `dir`: hop limit, path MTU
    /// (the director never fragments IPv6: too big is answered with Packet
    /// Too Big), the mode's rewrite.
    pub(super) fn forward6(
        &mut self,
        ip_bytes: &mut [u8],
        l2_len: usize,
        pkt: &FlowPacket6,
        conn: &Conn6,
        dir: Direction,
        first_ack: bool,
    ) -> Action {
        if dir == Direction::Reply && matches!(conn.forward, ForwardMode::Dr | ForwardMode::Tun) {
            return Action::Drop(Counter::DropNotForUs);
        }
        match hop6::decrement(ip_bytes) {
            Ok(()) => {}
            Err(FwdError::TtlExceeded) => {
                let from = self.source6_towards(*conn.client.ip()).unwrap_or(*conn.vip.ip());
                let (msg_type, code) = (icmpv6::msg_type::TIME_EXCEEDED, 0);
                return Action::Answer6 { reason: Counter::DropTtlExceeded, l2_len, from, msg_type, code, rest: 0 };
            }
            Err(_) => return Action::Drop(Counter::DropMalformed),
        }
        let vip = *conn.vip.ip();
        if dir == Direction::Reply {
            let hop = match conn.forward {
                ForwardMode::Nat => nat6::xmit_reply(ip_bytes, sock(conn.vip)),
                _ => match conn.local.get() {
                    Some(_) => fnat6::xmit_reply(ip_bytes, sock(conn.vip), sock(conn.client), conn.seq_delta),
                    None => return Action::Drop(Counter::DropNotForUs),
                },
            };
            if hop.is_ok() && synproxy::translate(ip_bytes, conn, dir).is_err() {
                return Action::Drop(Counter::DropMalformed);
            }
            return match hop {
                Ok(hop) => {
                    self.counters.inc(Counter::ReplyPackets);
                    Action::Forward6(hop)
                }
                Err(_) => Action::Drop(Counter::DropMalformed),
            };
        }
        let real = conn.real;
        if let Some(real4) = real.to_mapped_v4() {
            return match (conn.forward, conn.local.get().and_then(|l| l.to_mapped_v4())) {
                (ForwardMode::FullNat, Some(local)) => {
                    let mtu = self.route_mtu(*real4.ip());
                    match nat64::too_big_inbound(ip_bytes, mtu) {
                        Ok(Some(mtu)) => self.packet_too_big(l2_len, vip, usize::from(mtu)),
                        Ok(None) => {
                            let toa = self.toa_due6(conn, first_ack).then_some(sock(conn.client));
                            self.counters.inc(Counter::InboundPackets);
                            Action::Nat64In { l2_len, local, real: real4, seq_delta: conn.seq_delta, toa }
                        }
                        Err(_) => Action::Drop(Counter::DropMalformed),
                    }
                }
                (ForwardMode::Tun, _) => {
                    self.counters.inc(Counter::InboundPackets);
                    Action::Tunnel6 { l2_len, real: IpAddr::V4(*real4.ip()), vip }
                }
                _ => Action::Drop(Counter::DropUnsupported),
            };
        }
        let real6 = *real.ip();
        if conn.forward == ForwardMode::Tun {
            self.counters.inc(Counter::InboundPackets);
            return Action::Tunnel6 { l2_len, real: IpAddr::V6(real6), vip };
        }
        if let Some(mtu) = self.route_mtu6(real6).filter(|&mtu| usize::from(pkt.ip_len) > mtu) {
            return self.packet_too_big(l2_len, vip, mtu);
        }
        let hop = match conn.forward {
            ForwardMode::Dr => Ok(crate::fwd::dr::xmit_inbound6(real6)),
            ForwardMode::Nat => nat6::xmit_inbound(ip_bytes, sock(real)),
            ForwardMode::FullNat => match conn.local.get() {
                Some(local) => fnat6::xmit_inbound(ip_bytes, sock(local), sock(real), conn.seq_delta),
                None => return Action::Drop(Counter::DropNoLaddr),
            },
            ForwardMode::Tun => return Action::Drop(Counter::DropUnsupported),
        };
        if hop.is_ok() && synproxy::translate(ip_bytes, conn, dir).is_err() {
            return Action::Drop(Counter::DropMalformed);
        }
        match hop {
            Ok(hop) => {
                self.counters.inc(Counter::InboundPackets);
                if conn.forward == ForwardMode::FullNat && self.toa_due6(conn, first_ack) {
                    return Action::Toa6 { l2_len, client: sock(conn.client), hop };
                }
                Action::Forward6(hop)
            }
            Err(_) => Action::Drop(Counter::DropMalformed),
        }
    }

    /// Whether a FULLNAT (or NAT64) packet carries the client's TOA: the
    /// client's ACK that completes the handshake, when the service asks.
    fn toa_due6(&self, conn: &Conn6, first_ack: bool) -> bool {
        first_ack && conn.protocol == Protocol::Tcp && self.snapshot.services.get(usize::from(conn.service_index)).is_some_and(|s| s.toa)
    }

    /// Packet Too Big to the client, from the VIP, with `mtu`.
    fn packet_too_big(&self, l2_len: usize, vip: Ipv6Addr, mtu: usize) -> Action {
        let mtu = u32::try_from(mtu).unwrap_or(u32::MAX);
        Action::Answer6 { reason: Counter::DropTooBig, l2_len, from: vip, msg_type: icmpv6::msg_type::PACKET_TOO_BIG, code: 0, rest: mtu }
    }

    /// The egress MTU towards an IPv6 address (None without a route).
    pub(super) fn route_mtu6(&self, to: Ipv6Addr) -> Option<usize> {
        let port = self.snapshot.route6(to)?.port;
        self.snapshot.ports.get(usize::from(port)).map(|p| usize::from(p.mtu))
    }

    /// The egress MTU towards an IPv4 address (1500 without a route: the
    /// packet is then dropped for the route).
    fn route_mtu(&self, to: Ipv4Addr) -> usize {
        let port = self.snapshot.route(to).map(|r| r.port);
        port.and_then(|p| self.snapshot.ports.get(usize::from(p))).map_or(1500, |p| usize::from(p.mtu))
    }

    /// Our IPv6 address to answer from towards `to` (its egress port's).
    pub(super) fn source6_towards(&self, to: Ipv6Addr) -> Option<Ipv6Addr> {
        let port = self.snapshot.route6(to)?.port;
        self.snapshot.source_addr6_for(port, to)
    }

    /// A packet of the IPv6 connection `conn` (table entry `id`) in
    /// direction `dir`: its state and timer advance, the table and the state
    /// counts follow, and the backups hear of it on a state change and every
    /// half timeout, as of IPv4 ones. A packet that only restarts the timer
    /// (an ACK in ESTABLISHED, a UDP packet: [`Conn::steady_timeout_ms`])
    /// takes the short step, as an IPv4 one does.
    ///
    /// [`Conn::steady_timeout_ms`]: crate::conn::Conn::steady_timeout_ms
    pub(super) fn touch6(&mut self, id: ConnId, conn: &mut Conn6, l4: &flow::L4, dir: Direction, now_ms: u64, out: &mut Output<F>) {
        match conn.steady_timeout_ms(&l4.flags(), &self.snapshot.timeouts) {
            Some(timeout_ms) => self.touch6_steady(id, conn, timeout_ms, now_ms, out),
            None => self.touch6_general(id, conn, l4, dir, now_ms, out),
        }
    }

    /// [`Processor::touch6`] for a packet that only restarts the timer, to
    /// `timeout_ms`: no state change, so no SYN_RECV cut or recount; the
    /// timer and, when due, the sync.
    fn touch6_steady(&mut self, id: ConnId, conn: &mut Conn6, timeout_ms: u64, now_ms: u64, out: &mut Output<F>) {
        conn.restart_timer(timeout_ms, now_ms);
        if self.snapshot.sync_send && conn.sync_refresh_due(&self.snapshot.timeouts, now_ms) {
            conn.mark_synced(now_ms);
            self.push_sync(conn, now_ms, out);
        }
        if let Some(stored) = self.conns6.get_mut(id) {
            *stored = *conn;
        }
    }

    /// [`Processor::touch6`] through the state machine.
    fn touch6_general(&mut self, id: ConnId, conn: &mut Conn6, l4: &flow::L4, dir: Direction, now_ms: u64, out: &mut Output<F>) {
        let timeouts = self.snapshot.timeouts;
        let before = *conn;
        match conn.protocol {
            Protocol::Tcp => conn.on_tcp_packet(l4.flags(), dir, &timeouts, now_ms),
            Protocol::Udp => conn.on_udp_packet(&timeouts, now_ms),
        }
        if self.syn_recv_cap_ms().is_some_and(|max| pressure::shorten_syn_recv(conn, max, now_ms)) {
            self.counters.inc(Counter::ConnSynRecvShortened);
        }
        let resync = self.snapshot.sync_send && (before.state != conn.state || conn.sync_refresh_due(&timeouts, now_ms));
        if resync {
            conn.mark_synced(now_ms);
            self.push_sync(conn, now_ms, out);
        }
        if let Some(stored) = self.conns6.get_mut(id) {
            *stored = *conn;
        }
        self.recount_state(&before, conn);
    }

    /// An IPv4 reply to a NAT64 connection: `key` is its IPv4 flow key
    /// (real server → IPv4 local address). None when it is no NAT64
    /// connection's.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn nat64_reply(
        &mut self,
        ip_bytes: &mut [u8],
        l2_len: usize,
        key: &FlowKey,
        l4: &flow::L4,
        ip_len: u16,
        now_ms: u64,
        out: &mut Output<F>,
    ) -> Option<Action> {
        let mapped = key.to_mapped();
        let (id, dir) = self.conns6.lookup(&mapped, now_ms)?;
        if dir != Direction::Reply {
            return None;
        }
        match ttl::decrement(ip_bytes) {
            Ok(()) => {}
            Err(FwdError::TtlExceeded) => return Some(Action::Drop(Counter::DropTtlExceeded)),
            Err(_) => return Some(Action::Drop(Counter::DropMalformed)),
        }
        let mut conn = self.conns6.get(id).copied()?;
        self.relocate(&mut conn);
        self.touch6(id, &mut conn, l4, dir, now_ms, out);
        self.count_traffic(&conn, dir, u64::from(ip_len));
        self.counters.inc(Counter::ReplyPackets);
        Some(Action::Nat64Out { l2_len, vip: sock(conn.vip), client: sock(conn.client), seq_delta: conn.seq_delta })
    }
}

impl<F: Frame> Processor<F> {
    /// An ICMPv6 error quoting a packet of a connection to an IPv4 real
    /// server (`real4`; its hop limit already decremented): NAT64 turns
    /// an error about a reply the client got into an ICMPv4 error to the real
    /// server (RFC 7915 §5.2, [`nat64::icmp6_to_4`]); TUN (IPv6 in IPv4)
    /// tunnels an error about a client's packet to the real server as IPVS
    /// does.
    fn nat64_icmp6(&mut self, l2_len: usize, c: &Conn6, dir: Direction, real4: SocketAddrV4) -> Action {
        match (dir, c.forward, c.local.get().and_then(|l| l.to_mapped_v4())) {
            (Direction::Inbound, ForwardMode::FullNat, Some(local4)) => {
                let t = nat64::Icmp6To4 {
                    outer_src: *local4.ip(),
                    outer_dst: *real4.ip(),
                    quoted_src: real4,
                    quoted_dst: local4,
                    quoted_seq_shift: 0,
                    mtu4: u16::try_from(self.route_mtu(*real4.ip())).unwrap_or(u16::MAX),
                };
                Action::Nat64Icmp6To4 { l2_len, t }
            }
            (Direction::Inbound, ForwardMode::Tun, _) => {
                self.counters.inc(Counter::IcmpErrorsForwarded);
                Action::Tunnel6 { l2_len, real: IpAddr::V4(*real4.ip()), vip: *c.vip.ip() }
            }
            _ => Action::Drop(Counter::DropNotForUs),
        }
    }

    /// An ICMPv4 error quoting the IPv4 packet of a NAT64 connection
    /// (`key`: the quoted packet's reverse, real server → IPv4 local
    /// address): the error goes to the IPv6 client as an ICMPv6 error from
    /// the VIP quoting the client's own packet (RFC 7915 §4.2,
    /// [`nat64::icmp4_to_6`]). None when it is no NAT64 connection's.
    pub(super) fn nat64_icmp4(&mut self, ip_bytes: &mut [u8], l2_len: usize, key: &FlowKey, now_ms: u64) -> Option<Action> {
        let (id, dir) = self.conns6.lookup(&key.to_mapped(), now_ms)?;
        let c = self.conns6.get(id).copied()?;
        if dir != Direction::Reply || !c.is_nat64() {
            return None;
        }
        match ttl::decrement(ip_bytes) {
            Ok(()) => {}
            Err(FwdError::TtlExceeded) => return Some(Action::Drop(Counter::DropTtlExceeded)),
            Err(_) => return Some(Action::Drop(Counter::DropMalformed)),
        }
        let (vip, client) = (sock(c.vip), sock(c.client));
        let mtu6 = self.route_mtu6(*client.ip()).unwrap_or(usize::from(crate::wire::ipv6::MIN_MTU));
        let t = nat64::Icmp4To6 {
            outer_src: *vip.ip(),
            outer_dst: *client.ip(),
            quoted_src: client,
            quoted_dst: vip,
            quoted_seq_shift: c.seq_delta.wrapping_neg(),
            mtu6: u16::try_from(mtu6).unwrap_or(u16::MAX),
        };
        Some(Action::Nat64Icmp4To6 { l2_len, t })
    }
}

/// What an IPv6 packet that is no neighbour discovery or echo for us is.
enum Kind6 {
    /// A TCP or UDP packet of a flow.
    Flow(FlowPacket6),
    /// An ICMPv6 error (it quotes a packet).
    IcmpError,
    /// A fragment (not an atomic one), to hold until its datagram is complete.
    Fragment,
    /// Another protocol (ICMPv6 among them).
    Other,
    /// Dropped, for this reason.
    Drop(Counter),
}

/// Parses an IPv6 packet (`ip` from its header on) once: header, extension
/// headers, the TCP/UDP header. A fragment (an atomic one is a whole packet)
/// is held until its datagram is complete (`frag`), unless `whole_datagram`:
/// then it is the first fragment of a complete datagram, a flow packet.
fn classify6(ip: &[u8], whole_datagram: bool) -> Kind6 {
    let Ok(pkt) = Ipv6Packet::new_checked(ip) else { return Kind6::Drop(Counter::DropMalformed) };
    let (src, dst, ip_len) = (pkt.src_addr(), pkt.dst_addr(), 40 + usize::from(pkt.payload_len()));
    if src.to_ipv4_mapped().is_some() || dst.to_ipv4_mapped().is_some() {
        return Kind6::Drop(Counter::DropIpv4Mapped);
    }
    let upper = match l4v6::locate(ip) {
        Ok(u) => u,
        // A non-first fragment, or a routing header with segments left.
        Err(FwdError::Untranslatable(_)) => {
            let fragment = crate::wire::ipv6_ext::walk(pkt.next_header(), pkt.payload()).ok().and_then(|c| c.fragment);
            return if fragment.is_some_and(|f| !f.is_first()) { Kind6::Fragment } else { Kind6::Drop(Counter::DropUnsupported) };
        }
        Err(_) => return Kind6::Drop(Counter::DropMalformed),
    };
    if upper.fragment.is_some_and(|f| !f.is_atomic()) && !whole_datagram {
        return Kind6::Fragment;
    }
    if upper.protocol == next_header::ICMPV6 {
        let is_error = ip.get(upper.offset).is_some_and(|&t| t < 128);
        return if is_error { Kind6::IcmpError } else { Kind6::Other };
    }
    if !matches!(upper.protocol, next_header::TCP | next_header::UDP) {
        return Kind6::Other;
    }
    let l4 = l4v6::transport(ip).ok().and_then(|_| ip.get(upper.offset..)).and_then(|l4| parse_l4(upper.protocol, l4, whole_datagram));
    let Some(l4) = l4 else { return Kind6::Drop(Counter::DropMalformed) };
    let key = FlowKey6 { proto: upper.protocol, src, dst, sport: l4.sport, dport: l4.dport };
    Kind6::Flow(FlowPacket6 { key, l4, ip_len: ip_len as u16 })
}

/// The burst's parse stage for an IPv6 frame: the flow packet of a unicast
/// TCP/UDP packet, None for everything else (which takes the frame path and
/// is decided there).
pub(super) fn parse_flow6(ip: &[u8]) -> Option<FlowPacket6> {
    if Ipv6Packet::new_checked(ip).ok()?.dst_addr().is_multicast() {
        return None;
    }
    match classify6(ip, false) {
        Kind6::Flow(pkt) => Some(pkt),
        _ => None,
    }
}

/// The ports and TCP flags of a TCP or UDP header `l4` (of a first fragment
/// when `first_fragment`: its UDP length is the datagram's, not this packet's).
fn parse_l4(protocol: u8, l4: &[u8], first_fragment: bool) -> Option<flow::L4> {
    match protocol {
        next_header::TCP => {
            let t = TcpSegment::new_checked(l4).ok()?;
            Some(flow::L4 { sport: t.src_port(), dport: t.dst_port(), syn: t.syn(), ack: t.ack(), fin: t.fin(), rst: t.rst() })
        }
        next_header::UDP if first_fragment => {
            let u = UdpDatagram::new_unchecked(l4.get(..crate::wire::udp::HEADER_LEN)?);
            Some(flow::L4 { sport: u.src_port(), dport: u.dst_port(), syn: false, ack: false, fin: false, rst: false })
        }
        next_header::UDP => {
            let u = UdpDatagram::new_checked(l4).ok()?;
            Some(flow::L4 { sport: u.src_port(), dport: u.dst_port(), syn: false, ack: false, fin: false, rst: false })
        }
        _ => None,
    }
}

#[cfg(test)]
mod steady_tests {
    use super::*;
    use crate::process::flow::established_tests::{processor, steady_cases, SteadyCase};

    proptest::proptest! {
        /// The IPv6 short step ([`Processor::touch6_steady`]) gives what the
        /// general one gives for every packet that only restarts a
        /// connection's timer, as the IPv4 one does: the connection (copy
        /// and table entry), counters, SYN_RECV count, real server counts and
        /// sync records; and the general step leaves the state as it was.
        #[test]
        fn the_ipv6_steady_step_agrees_with_the_general_one(case in steady_cases()) {
            let SteadyCase { state, forward, flags, dir, sync_send, timeout_s, created_ms, idle_ms, .. } = case;
            let l4 = flow::L4 { sport: 40000, dport: 80, syn: flags.syn, ack: flags.ack, fin: flags.fin, rst: flags.rst };
            let sock6 = |last: u16, port| SockV6::new(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, last), port);
            let mut runs = Vec::new();
            for general in [true, false] {
                let template = processor(forward, sync_send, timeout_s);
                let mut p: Processor<crate::frame::VecFrame> = Processor::for_worker_sized(template.snapshot.clone(), 64, 64, 0, 1);
                let mut out = Output::with_capacity(4);
                let ends = [sock6(2, 40000), sock6(100, 80), sock6(0x11, 80), sock6(0x200, 5000)];
                let mut conn: Conn6 = case.conn(ends, p.generation(), &p.snapshot.timeouts);
                let mut displaced = Vec::new();
                proptest::prop_assert!(p.conns6.insert(conn, &mut displaced).is_ok());
                let id = p.conns6.lookup(&conn.inbound_key(), created_ms).map(|(id, _)| id).expect("inserted");
                let now_ms = created_ms + idle_ms;
                let Some(timeout_ms) = conn.steady_timeout_ms(&l4.flags(), &p.snapshot.timeouts) else {
                    return Ok(());
                };
                if general {
                    p.touch6_general(id, &mut conn, &l4, dir, now_ms, &mut out);
                } else {
                    p.touch6_steady(id, &mut conn, timeout_ms, now_ms, &mut out);
                }
                proptest::prop_assert_eq!(conn.state, state);
                let counts = p.counts.iter().map(|c| (c.active.clone(), c.inactive.clone(), c.view_active.clone(), c.overloaded.clone())).collect::<Vec<_>>();
                runs.push((conn, p.conns6.get(id).copied(), p.counters.clone(), p.pressure.syn_recv, counts, out.sync.clone()));
            }
            proptest::prop_assert_eq!(&runs[0], &runs[1]);
        }
    }
}
