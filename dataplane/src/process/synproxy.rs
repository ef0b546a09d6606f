//! The SYN proxy's stages in the packet path ([`crate::synproxy`] has the
//! packets and the cookies):
//!
//! 1. A client's SYN to a service whose proxy is active is answered with a
//!    cookie SYN-ACK ([`Step::Cookie`]); nothing is created.
//! 2. A client's ACK matching no connection, to a service with a proxy
//!    (`on`, or `auto` whether or not the worker is under pressure now),
//!    carries a cookie: invalid, it is dropped; valid, the real server is
//!    scheduled, the connection created in SYN_SENT with a short timeout,
//!    and the client's SYN replayed towards the real server
//!    ([`Step::Open`]). The ACK is held when it carries data.
//! 3. While the real server's handshake is in progress, the client's packets
//!    are held ([`Step::Hold`]), at most [`HELD_PER_CONN`] per connection
//!    and [`HELD_PER_WORKER`] per worker (beyond that they are dropped: the
//!    client sends them again); one that comes [`SYN_RESEND_MS`] after the
//!    last SYN sends the SYN again.
//! 4. The real server's SYN-ACK becomes the ACK completing its handshake
//!    (with FULLNAT's TOA when due), the connection is ESTABLISHED and
//!    translated from then on, and the held packets follow in order
//!    ([`Step::Complete`]). Its reset instead becomes the client's reset,
//!    and the connection is removed ([`Step::Refused`]).
//!
//! A handshake that fails (refused, timed out, replaced) counts
//! [`Counter::SynProxyHandshakeFailed`] once and frees its held packets.
//!
//! IPv4 and IPv6 services go through the same stages; what differs by
//! family (the connection table, how a connection is created, the ICMP
//! answer, the MSS table) is [`ProxyFamily`]'s. NAT64 services (an IPv6
//! VIP served by IPv4 real servers) are not proxied.

use std::net::{Ipv6Addr, SocketAddr};

use super::*;
use crate::conn::{ConnAddr, ConnTable, SockV6};
use crate::fwd::{fnat6, icmp6_err, NextHop6};
use crate::snapshot::{Service, SynProxy};
use crate::synproxy::cookie::{CookieAddr, Jar};
use crate::synproxy::seq::{Phase, Translation};
use crate::synproxy::{cookie, seq, shape, CookieInfo, PackedTranslation, Secret};
use crate::wire::icmpv6;

/// Client packets held per proxied handshake in progress.
pub const HELD_PER_CONN: usize = 16;
/// Client packets held per worker for all its handshakes in progress.
pub const HELD_PER_WORKER: usize = 4096;
/// How long a proxied handshake may take before its connection expires (the
/// client's next packet carries the cookie again and starts a new one).
pub const HANDSHAKE_TIMEOUT_MS: u64 = 3_000;
/// The SYN to the real server is sent again by a client packet that comes
/// this long after it.
pub const SYN_RESEND_MS: u64 = 1_000;

/// A proxied handshake in progress, by the connection's inbound key.
pub(super) struct Pending<F> {
    /// What the cookie carried.
    info: CookieInfo,
    /// The cookie (the client's view of the server's ISN).
    cookie: u32,
    /// The client's ISN.
    client_isn: u32,
    /// The window of the client's cookie ACK.
    window: u16,
    /// Held client packets: (port they came in on, frame).
    held: Vec<(u16, F)>,
    /// When the SYN was last sent to the real server.
    syn_sent_ms: u64,
}

/// The worker's SYN proxy state.
pub(super) struct ProxyState<F> {
    /// Cookies, from the master secret (the same for every worker of a process).
    jar: Jar,
    /// Handshakes in progress, by inbound key (of either family).
    pending: HashMap<AnyKey, Pending<F>>,
    /// Client packets held over all of them.
    held: usize,
}

impl<F> Default for ProxyState<F> {
    fn default() -> Self {
        ProxyState { jar: Jar::new(Secret::process()), pending: HashMap::new(), held: 0 }
    }
}

/// A flow key of either family: what the handshakes in progress are filed under.
pub(super) type AnyKey = FlowKey<IpAddr>;

/// `key` as an [`AnyKey`].
fn any_key<A: Into<IpAddr>>(key: FlowKey<A>) -> AnyKey {
    FlowKey { proto: key.proto, src: key.src.into(), dst: key.dst.into(), sport: key.sport, dport: key.dport }
}

/// What the SYN proxy's stages need of an address family: its connection
/// table, how a proxied connection is created there, how an unserved
/// client is told, and the family's cookie and SYN details.
pub(super) trait ProxyFamily: ConnAddr<Ip: CookieAddr + Into<IpAddr>> {
    /// The MSS of a SYN without an MSS option.
    const DEFAULT_MSS: u16;
    /// The IP header length of the packets the proxy writes.
    const IP_HEADER_LEN: usize;
    /// Whether a SYN from `src` may be answered at all.
    fn may_answer(src: Self::Ip) -> bool;
    /// The family's connection table.
    fn table<F: Frame>(p: &mut Processor<F>) -> &mut ConnTable<Self>;
    /// Removes connection `id` now.
    fn remove<F: Frame>(p: &mut Processor<F>, id: ConnId, now_ms: u64, out: &mut Output<F>);
    /// The answer to a client no real server can take.
    fn no_real_server(l2_len: usize, key: &FlowKey<Self::Ip>) -> Action;
    /// A new connection of `key` to real server `real_idx` of service
    /// `svc_idx`, from the cookie ACK `ip_bytes`, in SYN_SENT.
    fn new_conn<F: Frame>(
        p: &mut Processor<F>,
        ip_bytes: &[u8],
        key: &FlowKey<Self::Ip>,
        svc_idx: usize,
        real_idx: usize,
        now_ms: u64,
    ) -> Result<Conn<Self>, Counter>;
    /// Inserts the new connection `conn` (its first packet `ip_len` bytes).
    fn insert<F: Frame>(p: &mut Processor<F>, conn: &Conn<Self>, ip_len: u16, now_ms: u64, out: &mut Output<F>) -> Result<(), Counter>;
}

impl ProxyFamily for SocketAddrV4 {
    const DEFAULT_MSS: u16 = shape::DEFAULT_MSS;
    const IP_HEADER_LEN: usize = crate::wire::ipv4::HEADER_LEN;

    fn may_answer(src: Ipv4Addr) -> bool {
        icmp_err::may_answer(src)
    }

    fn table<F: Frame>(p: &mut Processor<F>) -> &mut ConnTable<Self> {
        &mut p.conns
    }

    fn remove<F: Frame>(p: &mut Processor<F>, id: ConnId, now_ms: u64, out: &mut Output<F>) {
        p.remove_conn(id, now_ms, out);
    }

    fn no_real_server(l2_len: usize, key: &FlowKey) -> Action {
        let answer = Answer::Icmp { from: key.dst, msg_type: icmp::msg_type::DEST_UNREACHABLE, code: icmp_err::code::PORT_UNREACHABLE };
        Action::Answer { reason: Counter::DropNoRealServer, l2_len, answer }
    }

    fn new_conn<F: Frame>(
        p: &mut Processor<F>,
        ip_bytes: &[u8],
        key: &FlowKey,
        svc_idx: usize,
        real_idx: usize,
        now_ms: u64,
    ) -> Result<Conn, Counter> {
        let forward = p.snapshot.services[svc_idx].reals[real_idx].forward;
        let local = p.local_for(svc_idx, forward)?;
        p.new_conn(ip_bytes, key, svc_idx, real_idx, local, TcpState::SynSent, now_ms)
    }

    fn insert<F: Frame>(p: &mut Processor<F>, conn: &Conn, ip_len: u16, now_ms: u64, out: &mut Output<F>) -> Result<(), Counter> {
        p.add_new_conn(conn, ip_len, now_ms, out)
    }
}

impl ProxyFamily for SockV6 {
    const DEFAULT_MSS: u16 = shape::DEFAULT_MSS6;
    const IP_HEADER_LEN: usize = crate::wire::ipv6::HEADER_LEN;

    fn may_answer(src: Ipv6Addr) -> bool {
        icmp6_err::may_answer6(src)
    }

    fn table<F: Frame>(p: &mut Processor<F>) -> &mut ConnTable<Self> {
        &mut p.conns6
    }

    fn remove<F: Frame>(p: &mut Processor<F>, id: ConnId, now_ms: u64, out: &mut Output<F>) {
        p.remove_conn6(id, now_ms, out);
    }

    fn no_real_server(l2_len: usize, key: &FlowKey6) -> Action {
        let (from, msg_type, code) = (key.dst, icmpv6::msg_type::DEST_UNREACHABLE, icmpv6::unreachable_code::PORT_UNREACHABLE);
        Action::Answer6 { reason: Counter::DropNoRealServer, l2_len, from, msg_type, code, rest: 0 }
    }

    fn new_conn<F: Frame>(
        p: &mut Processor<F>,
        ip_bytes: &[u8],
        key: &FlowKey6,
        svc_idx: usize,
        real_idx: usize,
        now_ms: u64,
    ) -> Result<Conn6, Counter> {
        p.new_conn6(ip_bytes, key, svc_idx, real_idx, TcpState::SynSent, now_ms)
    }

    fn insert<F: Frame>(p: &mut Processor<F>, conn: &Conn6, ip_len: u16, now_ms: u64, out: &mut Output<F>) -> Result<(), Counter> {
        p.insert_new_conn6(*conn, ip_len, now_ms, out).then_some(()).ok_or(Counter::DropConnTableFull)
    }
}

/// A proxied connection's packet in direction `dir` (already rewritten by
/// its mode), IPv4 or IPv6: its sequence numbers and window translated
/// when the connection is open, untouched otherwise.
pub(super) fn translate<S: ConnAddr>(ip_bytes: &mut [u8], conn: &Conn<S>, dir: Direction) -> Result<(), FwdError> {
    if !conn.proxy.is_open() {
        return Ok(());
    }
    match dir {
        Direction::Inbound => seq::translate_inbound(ip_bytes, &conn.proxy.get()),
        Direction::Reply => seq::translate_reply(ip_bytes, &conn.proxy.get()),
    }
}

/// What the SYN proxy does with a frame, once classified.
#[derive(Clone, Copy, Debug)]
pub(super) enum Step {
    /// Answer the client's SYN with this cookie.
    Cookie {
        /// Ethernet header length.
        l2_len: usize,
        /// The cookie.
        cookie: u32,
        /// The MSS offered.
        mss: u16,
        /// The window scale offered, if the client offered one.
        wscale: Option<u8>,
    },
    /// A valid cookie ACK created the connection with this inbound key: send
    /// the SYN to the real server; hold the ACK if it carries data.
    Open {
        /// Ethernet header length.
        l2_len: usize,
        /// The connection's inbound key.
        key: AnyKey,
        /// Whether the ACK carries data (or a FIN).
        data: bool,
    },
    /// A client packet while the handshake is in progress.
    Hold {
        /// Ethernet header length.
        l2_len: usize,
        /// The connection's inbound key.
        key: AnyKey,
    },
    /// The real server's SYN-ACK was rewritten into the ACK completing its
    /// handshake: send it, then the held packets.
    Complete {
        /// Ethernet header length.
        l2_len: usize,
        /// The ACK's IP length.
        ip_len: usize,
        /// The connection's inbound key.
        key: AnyKey,
        /// The real server.
        real: IpAddr,
        /// FULLNAT TOA: the client to name in the ACK.
        toa: Option<SocketAddr>,
    },
    /// The real server's reset was rewritten into the client's.
    Refused {
        /// Ethernet header length.
        l2_len: usize,
        /// The reset's IP length.
        ip_len: usize,
        /// The client.
        client: IpAddr,
    },
}

/// Whether a service's connections can be proxied: TCP, and every real
/// server is NAT or FULLNAT (the director must see both directions) of
/// the VIP's family (not NAT64).
fn proxyable(svc: &Service) -> bool {
    svc.key.protocol == Protocol::Tcp
        && !svc.reals.is_empty()
        && svc
            .reals
            .iter()
            .all(|r| matches!(r.forward, ForwardMode::Nat | ForwardMode::FullNat) && r.addr.is_ipv4() == svc.key.vip.is_ipv4())
}

impl<F: Frame> Processor<F> {
    /// Sets the SYN cookie master secret (every worker of a process must use
    /// the same one; by default they share [`Secret::process`]).
    pub fn set_syn_cookie_secret(&mut self, secret: Secret) {
        self.proxy.jar = Jar::new(secret);
    }

    /// Proxied handshakes in progress on this worker.
    pub fn syn_proxy_pending(&self) -> usize {
        self.proxy.pending.len()
    }

    /// A TCP packet (`key`, `l4`, `ip_len` bytes) of service `svc_idx`
    /// matching no connection, IPv4 or IPv6 (`S`): the SYN proxy's answer
    /// when it takes it (a SYN to an active proxy, an ACK to a service with
    /// one), None for the usual path.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn syn_proxy_new_flow<S: ProxyFamily>(
        &mut self,
        ip_bytes: &[u8],
        l2_len: usize,
        key: &FlowKey<S::Ip>,
        l4: flow::L4,
        ip_len: u16,
        svc_idx: usize,
        now_ms: u64,
        redirected: bool,
        out: &mut Output<F>,
    ) -> Option<Action> {
        let svc = self.snapshot.services.get(svc_idx)?;
        if svc.syn_proxy == SynProxy::Off || !proxyable(svc) {
            return None;
        }
        let tcp = TcpSegment::new_checked(ip_bytes.get(seq::tcp_range(ip_bytes).ok()?)?).ok()?;
        if l4.syn && !l4.ack && !l4.rst {
            if !self.syn_proxy_active(svc) {
                return None;
            }
            if !S::may_answer(key.src) {
                return Some(Action::Drop(Counter::DropNotForUs));
            }
            let offered = shape::syn_options(tcp.options());
            let wscale = offered.wscale.filter(|_| shape::answer_fits(l2_len + ip_bytes.len(), l2_len, S::IP_HEADER_LEN));
            let client_mss = offered.mss.unwrap_or(S::DEFAULT_MSS);
            let cookie = self.proxy.jar.encode(key, tcp.seq_number(), client_mss, wscale, now_ms);
            let mss = cookie::carried_mss::<S::Ip>(client_mss);
            let announced = wscale.map(|_| self.snapshot.syn_flood.proxy_window_scale.min(cookie::MAX_WSCALE));
            return Some(Action::SynProxy(Step::Cookie { l2_len, cookie, mss, wscale: announced }));
        }
        if !(l4.ack && !l4.syn && !l4.rst) {
            return None;
        }
        if let Some(owner) = self.template_redirect(svc_idx, key.src.into(), redirected) {
            return Some(Action::Redirect(owner));
        }
        let client_isn = tcp.seq_number().wrapping_sub(1);
        let Some(info) = self.proxy.jar.verify(key, client_isn, tcp.ack_number().wrapping_sub(1), now_ms) else {
            return Some(Action::Drop(Counter::SynCookieAckInvalid));
        };
        let data = !tcp.payload().is_empty() || l4.fin;
        let pending = Pending {
            info,
            cookie: tcp.ack_number().wrapping_sub(1),
            client_isn,
            window: tcp.window(),
            held: Vec::new(),
            syn_sent_ms: now_ms,
        };
        Some(self.syn_proxy_open::<S>(ip_bytes, l2_len, key, ip_len, svc_idx, pending, data, now_ms, out))
    }

    /// A valid cookie ACK: schedule, create the connection in its handshake
    /// phase, and say to send the SYN.
    #[allow(clippy::too_many_arguments)]
    fn syn_proxy_open<S: ProxyFamily>(
        &mut self,
        ip_bytes: &[u8],
        l2_len: usize,
        key: &FlowKey<S::Ip>,
        ip_len: u16,
        svc_idx: usize,
        pending: Pending<F>,
        data: bool,
        now_ms: u64,
        out: &mut Output<F>,
    ) -> Action {
        let Some(real_idx) = self.schedule(svc_idx, key, now_ms) else {
            return S::no_real_server(l2_len, key);
        };
        let real = self.snapshot.services[svc_idx].reals[real_idx];
        if !matches!(real.forward, ForwardMode::Nat | ForwardMode::FullNat) || real.addr.is_ipv4() != key.dst.into().is_ipv4() {
            return Action::Drop(Counter::DropNoConnection);
        }
        let mut conn = match S::new_conn(self, ip_bytes, key, svc_idx, real_idx, now_ms) {
            Ok(conn) => conn,
            Err(reason) => return Action::Drop(reason),
        };
        conn.proxy = PackedTranslation::HANDSHAKE;
        conn.restart_timer(HANDSHAKE_TIMEOUT_MS, now_ms);
        if let Err(reason) = S::insert(self, &conn, ip_len, now_ms, out) {
            return Action::Drop(reason);
        }
        let key = any_key(*key);
        self.proxy.pending.insert(key, pending);
        self.counters.inc(Counter::SynCookieAckValid);
        Action::SynProxy(Step::Open { l2_len, key, data })
    }

    /// A packet (TCP flags `l4`) of connection `id` (`conn`, IPv4 or IPv6)
    /// whose proxied handshake is in progress, travelling `dir`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn syn_proxy_handshake_packet<S: ProxyFamily>(
        &mut self,
        ip_bytes: &mut [u8],
        l2_len: usize,
        l4: flow::L4,
        id: ConnId,
        conn: &Conn<S>,
        dir: Direction,
        now_ms: u64,
        out: &mut Output<F>,
    ) -> Action {
        let key = any_key(conn.inbound_key());
        if dir == Direction::Inbound {
            // A new SYN from the client is a new connection attempt: the
            // cookie it got before no longer holds.
            if l4.syn {
                return Action::Drop(Counter::DropNoConnection);
            }
            return Action::SynProxy(Step::Hold { l2_len, key });
        }
        let Some(p) = self.proxy.pending.get(&key) else {
            return Action::Drop(Counter::DropNoConnection);
        };
        let (cookie, info, client_window) = (p.cookie, p.info, p.window);
        // What the real server acknowledges of our SYN, in its own space.
        let expected = p.client_isn.wrapping_add(conn.seq_delta).wrapping_add(1);
        let Ok(answer) = shape::syn_ack(ip_bytes) else {
            return Action::Drop(Counter::DropMalformed);
        };
        if !l4.ack || answer.ack != expected {
            return Action::Drop(Counter::DropNoConnection);
        }
        if l4.rst {
            let Ok(ip_len) = shape::reset_to_client(ip_bytes, conn.vip.sock_any(), conn.client.sock_any(), cookie.wrapping_add(1)) else {
                return Action::Drop(Counter::DropMalformed);
            };
            S::remove(self, id, now_ms, out);
            return Action::SynProxy(Step::Refused { l2_len, ip_len, client: conn.client.ip_any() });
        }
        if !l4.syn {
            return Action::Drop(Counter::DropNoConnection);
        }
        let announced = self.snapshot.syn_flood.proxy_window_scale.min(cookie::MAX_WSCALE);
        let agreed = info.wscale.is_some() && answer.wscale.is_some();
        let translation = Translation {
            delta: answer.isn.wrapping_sub(cookie),
            phase: Phase::Open,
            server_wscale: if agreed { answer.wscale.unwrap_or(0).min(cookie::MAX_WSCALE) } else { 0 },
            client_view_wscale: if info.wscale.is_some() { announced } else { 0 },
            inbound_shift: if agreed { 0 } else { info.wscale.unwrap_or(0) },
        };
        // Every scale above is at most MAX_WSCALE (the cookie carries no
        // more, the others are capped), so this packs; a SYN-ACK that made
        // it not pack would be dropped, never cut.
        let Ok(packed) = PackedTranslation::try_from(translation) else {
            return Action::Drop(Counter::DropMalformed);
        };
        let window = seq::rescale_window(client_window, translation.inbound_shift, 0);
        let Ok(ip_len) = shape::ack_from_syn_ack(ip_bytes, window) else {
            return Action::Drop(Counter::DropMalformed);
        };
        let (timeouts, sync_send) = (self.snapshot.timeouts, self.snapshot.sync_send);
        let Some(stored) = S::table(self).get_mut(id) else {
            return Action::Drop(Counter::DropNoConnection);
        };
        let before = *stored;
        stored.proxy = packed;
        stored.state = TcpState::Established;
        stored.restart_timer(state_timeout_ms(TcpState::Established, &timeouts), now_ms);
        if sync_send {
            stored.mark_synced(now_ms);
        }
        let after = *stored;
        self.recount_state(&before, &after);
        if self.snapshot.sync_send {
            self.push_sync(&after, now_ms, out);
        }
        let service_toa = self.snapshot.services.get(usize::from(after.service_index)).is_some_and(|s| s.toa);
        let toa = fnat::toa_due(&after, true, service_toa).then_some(after.client.sock_any());
        Action::SynProxy(Step::Complete { l2_len, ip_len, key, real: after.real.ip_any(), toa })
    }

    /// Carries out a SYN proxy step on the frame it was decided for.
    pub(super) fn syn_proxy_apply(&mut self, port: u16, mut frame: F, step: Step, now_ms: u64, out: &mut Output<F>) {
        match step {
            Step::Cookie { l2_len, cookie, mss, wscale } => match shape::cookie_syn_ack(&mut frame, l2_len, cookie, mss, wscale) {
                Ok(_) => {
                    self.counters.inc(Counter::SynCookieSent);
                    self.push_tx(port, frame, out);
                }
                Err(FwdError::NoRoom) => self.drop(frame, Counter::DropNoRoom, out),
                Err(_) => self.drop(frame, Counter::DropMalformed, out),
            },
            Step::Open { l2_len, key, data } => {
                self.syn_proxy_send_syn(port, &frame, l2_len, key, now_ms, out);
                if data {
                    self.syn_proxy_hold(port, frame, key, out);
                } else {
                    out.drop.push(frame);
                }
            }
            Step::Hold { l2_len, key } => {
                let resend = self.proxy.pending.get(&key).is_some_and(|p| now_ms.saturating_sub(p.syn_sent_ms) >= SYN_RESEND_MS);
                if resend {
                    self.syn_proxy_send_syn(port, &frame, l2_len, key, now_ms, out);
                }
                self.syn_proxy_hold(port, frame, key, out);
            }
            Step::Complete { l2_len, ip_len, key, real, toa } => {
                let excess = frame.len().saturating_sub(l2_len + ip_len);
                if !frame.trim(excess) {
                    return self.drop(frame, Counter::DropMalformed, out);
                }
                let inserted = match toa {
                    Some(SocketAddr::V4(client)) => fnat::insert_toa(&mut frame, l2_len, client),
                    Some(SocketAddr::V6(client)) => fnat6::insert_toa6(&mut frame, l2_len, client),
                    None => Ok(false),
                };
                match inserted {
                    Ok(true) => self.counters.inc(Counter::ToaInserted),
                    Ok(false) => {}
                    Err(_) => return self.drop(frame, Counter::DropNoRoom, out),
                }
                self.send_any(frame, real, now_ms, out);
                if let Some(p) = self.proxy.pending.remove(&key) {
                    self.proxy.held -= p.held.len();
                    for (held_port, f) in p.held {
                        self.dispatch(held_port, f, now_ms, false, out);
                    }
                }
            }
            Step::Refused { l2_len, ip_len, client } => {
                let excess = frame.len().saturating_sub(l2_len + ip_len);
                if !frame.trim(excess) {
                    return self.drop(frame, Counter::DropMalformed, out);
                }
                self.send_any(frame, client, now_ms, out);
            }
        }
    }

    /// Sends a frame the proxy wrote towards `to`, routed by its family.
    fn send_any(&mut self, frame: F, to: IpAddr, now_ms: u64, out: &mut Output<F>) {
        match to {
            IpAddr::V4(to) => self.send(frame, NextHop::Routed(to), now_ms, out),
            IpAddr::V6(to) => self.send6(frame, NextHop6::Routed(to), now_ms, out),
        }
    }

    /// Sends the client's SYN, rebuilt from its packet `template` (Ethernet
    /// header `l2_len`), towards the real server of connection `key`.
    fn syn_proxy_send_syn(&mut self, port: u16, template: &F, l2_len: usize, key: AnyKey, now_ms: u64, out: &mut Output<F>) {
        let Some(p) = self.proxy.pending.get_mut(&key) else { return };
        p.syn_sent_ms = now_ms;
        let info = p.info;
        let Some(mut syn) = template.alloc_sibling() else {
            self.counters.inc(Counter::DropNoRoom);
            return;
        };
        if shape::client_syn(template.data(), l2_len, &mut syn, info).is_err() {
            return self.drop(syn, Counter::DropMalformed, out);
        }
        let action = match syn.data_mut().get_mut(l2_len..) {
            Some(ip) => self.syn_proxy_forward_syn(port, ip, l2_len, &key, now_ms),
            None => Action::Drop(Counter::DropMalformed),
        };
        self.apply(port, syn, action, now_ms, out);
    }

    /// Forwards the replayed SYN `ip` of connection `key` (either family)
    /// to its real server as the client's packet.
    fn syn_proxy_forward_syn(&mut self, port: u16, ip: &mut [u8], l2_len: usize, key: &AnyKey, now_ms: u64) -> Action {
        let (src, dst) = (key.src, key.dst);
        let (proto, sport, dport) = (key.proto, key.sport, key.dport);
        match (src, dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                let key = FlowKey { proto, src, dst, sport, dport };
                let Some(conn) = self.conns.lookup(&key, now_ms).and_then(|(id, _)| self.conns.get(id)).copied() else {
                    return Action::Drop(Counter::DropNoConnection);
                };
                match flow::parse_ipv4(ip, false, RxChecksum::Unknown) {
                    (Ipv4Kind::Flow(pkt), _) => self.forward(port, ip, l2_len, &pkt, &conn, None, Direction::Inbound, false),
                    _ => Action::Drop(Counter::DropMalformed),
                }
            }
            (IpAddr::V6(src), IpAddr::V6(dst)) => {
                let key = FlowKey { proto, src, dst, sport, dport };
                let Some(conn) = self.conns6.lookup(&key, now_ms).and_then(|(id, _)| self.conns6.get(id)).copied() else {
                    return Action::Drop(Counter::DropNoConnection);
                };
                match ipv6::parse_flow6(ip) {
                    Some(pkt) => self.forward6(ip, l2_len, &pkt, &conn, Direction::Inbound, false),
                    None => Action::Drop(Counter::DropMalformed),
                }
            }
            _ => Action::Drop(Counter::DropMalformed),
        }
    }

    /// Holds a client packet of the handshake `key` in progress, or drops it
    /// over the bounds.
    fn syn_proxy_hold(&mut self, port: u16, frame: F, key: AnyKey, out: &mut Output<F>) {
        let room = self.proxy.held < HELD_PER_WORKER;
        match self.proxy.pending.get_mut(&key) {
            Some(p) if room && p.held.len() < HELD_PER_CONN => {
                p.held.push((port, frame));
                self.proxy.held += 1;
            }
            _ => self.drop(frame, Counter::SynProxyDataDropped, out),
        }
    }

    /// A connection is gone: if its proxied handshake was still in
    /// progress, it failed; its held packets are dropped.
    pub(super) fn syn_proxy_forget<S: ProxyFamily>(&mut self, c: &Conn<S>, out: &mut Output<F>) {
        if c.proxy.phase() != Phase::Handshake {
            return;
        }
        let Some(p) = self.proxy.pending.remove(&any_key(c.inbound_key())) else { return };
        self.counters.inc(Counter::SynProxyHandshakeFailed);
        self.proxy.held -= p.held.len();
        self.counters.add(Counter::SynProxyDataDropped, p.held.len() as u64);
        out.drop.extend(p.held.into_iter().map(|(_, f)| f));
    }
}
