//! Connection life: finding a connection's place in the current snapshot, expiry, insertion and removal, and what a removed connection gives back.

use super::*;

impl<F: Frame> Processor<F> {
    /// Brings a connection's service and real indices up to the current snapshot.
    pub(super) fn relocate<S: ConnAddr>(&self, c: &mut Conn<S>) {
        if c.generation != self.generation() {
            self.relocate_now(c);
        }
    }

    /// Looks a connection's service and real indices up in the current snapshot.
    pub(super) fn relocate_now<S: ConnAddr>(&self, c: &mut Conn<S>) {
        let (si, ri) = self.locate(c);
        c.service_index = si;
        c.real_index = ri;
        c.generation = self.generation();
        c.reply_hop = hops::NONE;
    }

    /// The current snapshot's generation as connections store it (low 32 bits).
    pub(super) fn generation(&self) -> u32 {
        self.snapshot.generation as u32
    }

    /// Where a connection's service and real server sit in the current snapshot
    /// (`u16::MAX` when gone).
    pub(super) fn locate<S: ConnAddr>(&self, c: &Conn<S>) -> (u16, u16) {
        match self.snapshot.service(&c.service_key()) {
            Some((si, svc)) => {
                let ri = svc.reals.iter().position(|r| r.addr == c.real_ip() && r.port == c.real.port());
                (si as u16, ri.map_or(u16::MAX, |r| r as u16))
            }
            None => (u16::MAX, u16::MAX),
        }
    }

    /// Periodic work: expire idle connections and persistence templates, retry
    /// or give up ARP resolution.
    pub fn tick(&mut self, now_ms: u64, out: &mut Output<F>) {
        let mut removed = std::mem::take(&mut self.removed);
        self.update_pressure();
        let syn_recv_cap = self.syn_recv_cap_ms();
        let (expired, cut) = self.conns.expire_capped(now_ms, EXPIRE_BUDGET, &mut removed, syn_recv_cap);
        for c in removed.drain(..) {
            self.forget(&c, now_ms, out);
        }
        self.removed = removed;
        self.counters.add(Counter::ConnExpired, expired as u64);
        self.counters.add(Counter::ConnSynRecvShortened, cut as u64);
        self.update_pressure();
        self.counters.set(Counter::ConnSynRecv, self.pressure.syn_recv as u64);
        self.exchange_counts();
        if !self.templates.is_empty() {
            self.templates.retain(|_, t| t.conns > 0 || t.expires_ms > now_ms);
        }
        self.counters.set(Counter::ConnActive, self.conns.len() as u64);
        let timed_out = self.reassembler.expire(now_ms, &mut out.drop);
        self.counters.add(Counter::FragTimeout, timed_out as u64);
        self.neigh.tick(now_ms, &mut self.expired, &mut self.requests);
        self.counters.add(Counter::DropNeighUnresolved, self.expired.len() as u64);
        out.drop.append(&mut self.expired);
        for i in 0..self.requests.len() {
            let (ip, port) = self.requests[i];
            self.arp_request(port, ip, out);
        }
        self.requests.clear();
        self.tick6(now_ms, out);
    }

    /// Undoes what a connection held: counts, its local port, its reply key, its template.
    pub(super) fn forget(&mut self, c: &Conn, now_ms: u64, out: &mut Output<F>) {
        let mut c = *c;
        self.relocate(&mut c);
        let c = &c;
        self.syn_proxy_forget(c, out);
        let (si, ri) = (c.service_index, c.real_index);
        self.count_conn(c, si, ri, -1);
        if let Some(local) = c.local.get() {
            self.pool.release(local);
        }
        if self.workers > 1 {
            let owner = self.worker as u16;
            out.messages.push(WorkerMsg::FlowGone { key: c.inbound_key(), owner });
            if c.forward == ForwardMode::Nat {
                if let Some(key) = c.reply_key() {
                    out.messages.push(WorkerMsg::FlowGone { key, owner });
                }
            }
        }
        self.template_release(c, now_ms);
    }

    /// Adds a connection to the table; a connection it replaces (same inbound
    /// or reply key) is forgotten. A full table makes room if it can
    /// ([`Processor::make_room`]). False when the table is full.
    pub(super) fn insert_conn(&mut self, conn: Conn, now_ms: u64, out: &mut Output<F>) -> bool {
        let hash = self.conns.hash(&conn.inbound_key());
        self.insert_conn_hashed(conn, hash, now_ms, out)
    }

    /// [`Processor::insert_conn`] with the hash of the connection's inbound
    /// key in hand ([`ConnTable::hash`]).
    pub(super) fn insert_conn_hashed(&mut self, conn: Conn, hash: u64, now_ms: u64, out: &mut Output<F>) -> bool {
        // `removed` is empty here: the connections an insert displaces
        // gather in it, and are forgotten (it is emptied) below.
        let mut inserted = self.conns.insert_hashed(conn, hash, &mut self.removed);
        if inserted.is_err() && self.make_room(now_ms, out) {
            inserted = self.conns.insert_hashed(conn, hash, &mut self.removed);
        }
        if !self.removed.is_empty() {
            let mut displaced = std::mem::take(&mut self.removed);
            for old in displaced.drain(..) {
                self.forget(&old, now_ms, out);
            }
            self.removed = displaced;
        }
        inserted.is_ok()
    }

    /// Counts the connection `c` just created, whose first packet is
    /// `ip_len` bytes: what `count_conn(c, .., 1)`, its real server's
    /// `conns` traffic counter and `count_traffic` of that packet do, in
    /// one pass over its real server's counts.
    pub(super) fn count_new_conn(&mut self, c: &Conn, ip_len: u16) {
        self.count_syn_recv(c, 1);
        let (si, ri) = (usize::from(c.service_index), usize::from(c.real_index));
        let upper = self.snapshot.services.get(si).and_then(|s| s.reals.get(ri)).map(|r| r.upper_threshold);
        let Some(counts) = self.counts.get_mut(si) else { return };
        let (local, view) =
            if c.is_active() { (&mut counts.active, &mut counts.view_active) } else { (&mut counts.inactive, &mut counts.view_inactive) };
        if let (Some(l), Some(v)) = (local.get_mut(ri), view.get_mut(ri)) {
            *l = l.saturating_add(1);
            *v = v.saturating_add(1);
        }
        // IPVS's threshold rule for a connection bound to its server
        // (`accounting::overload_after` with `bound`): only the upper one.
        if let (Some(upper), Some(&a), Some(&i), Some(o)) =
            (upper, counts.view_active.get(ri), counts.view_inactive.get(ri), counts.overloaded.get_mut(ri))
        {
            *o = *o || (upper > 0 && a.saturating_add(i) >= upper);
        }
        if let Some(t) = counts.traffic.get_mut(ri) {
            t.conns += 1;
            t.in_pkts += 1;
            t.in_bytes += u64::from(ip_len);
        }
    }

    /// Removes a connection now (e.g. replaced by a new SYN).
    pub(super) fn remove_conn(&mut self, id: ConnId, now_ms: u64, out: &mut Output<F>) {
        if let Some(c) = self.conns.remove(id) {
            self.forget(&c, now_ms, out);
        }
    }

    /// Whether the configuration ends this connection now: its real server was
    /// removed (with `expire_nodest_conn`) or set to weight 0 (with the
    /// service's `expire_quiescent`).
    #[inline]
    pub(super) fn expired_by_config<S: ConnAddr>(&self, c: &Conn<S>) -> Option<Counter> {
        if !self.config_expires_conns {
            return None;
        }
        let svc = self.snapshot.services.get(usize::from(c.service_index));
        match svc.and_then(|s| s.reals.get(usize::from(c.real_index))) {
            None if self.snapshot.expire_nodest_conn => Some(Counter::DropNoDest),
            Some(r) if r.weight == 0 && svc.is_some_and(|s| s.expire_quiescent) => Some(Counter::DropQuiescent),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::sync::Arc;

    use super::*;
    use crate::frame::VecFrame;
    use crate::snapshot::{RealServer, SchedulerKind, Service};

    /// Two services of three and one real servers, the first two with low
    /// upper thresholds so that the overload rule is met.
    fn processor() -> Processor<VecFrame> {
        let key = |port| ServiceKey { protocol: Protocol::Tcp, vip: Ipv4Addr::new(10, 0, 0, 100).into(), port };
        let real = |n, upper| RealServer { upper_threshold: upper, ..RealServer::new(Ipv4Addr::new(10, 1, 0, n), 80, 1, ForwardMode::Nat) };
        let services = vec![
            Service::new(key(80), SchedulerKind::Rr, vec![real(11, 2), real(12, 3), real(13, 0)]),
            Service::new(key(81), SchedulerKind::Rr, vec![real(14, 0)]),
        ];
        Processor::new(Arc::new(Snapshot { services, ..Default::default() }.finish()), 64)
    }

    proptest::proptest! {
        /// `count_new_conn` counts exactly as `count_conn` (+1), the `conns`
        /// traffic counter and `count_traffic` of the first packet do, for
        /// connections of every kind, indices in range or not.
        #[test]
        fn counting_a_new_connection_in_one_pass_counts_as_the_three_steps(
            conns in proptest::collection::vec((0u16..3, 0u16..4, 0u8..4, 0u16..1500), 1..40),
        ) {
            let (mut one_pass, mut steps) = (processor(), processor());
            for (si, ri, kind, ip_len) in conns {
                let (protocol, state) = match kind {
                    0 => (Protocol::Tcp, TcpState::SynRecv),
                    1 => (Protocol::Tcp, TcpState::Established),
                    2 => (Protocol::Tcp, TcpState::FinWait),
                    _ => (Protocol::Udp, TcpState::Udp),
                };
                let sock = |n, port| std::net::SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, n), port);
                let c = Conn {
                    protocol,
                    client: sock(2, 40000),
                    vip: sock(100, 80),
                    real: sock(11, 80),
                    local: None.into(),
                    real_index: ri,
                    service_index: si,
                    generation: 0,
                    synced_tick: 0,
                    forward: ForwardMode::Nat,
                    state,
                    expires_ms: 0,
                    seq_delta: 0,
                    reply_hop: hops::NONE,
                    proxy: Default::default(),
                };
                one_pass.count_new_conn(&c, ip_len);
                steps.count_conn(&c, si, ri, 1);
                if let Some(t) = steps.counts.get_mut(usize::from(si)).and_then(|s| s.traffic.get_mut(usize::from(ri))) {
                    t.conns += 1;
                }
                steps.count_traffic(&c, Direction::Inbound, u64::from(ip_len));
                proptest::prop_assert_eq!(one_pass.pressure.syn_recv, steps.pressure.syn_recv);
                for (a, b) in one_pass.counts.iter().zip(&steps.counts) {
                    proptest::prop_assert_eq!(&a.active, &b.active);
                    proptest::prop_assert_eq!(&a.inactive, &b.inactive);
                    proptest::prop_assert_eq!(&a.view_active, &b.view_active);
                    proptest::prop_assert_eq!(&a.view_inactive, &b.view_inactive);
                    proptest::prop_assert_eq!(&a.overloaded, &b.overloaded);
                    proptest::prop_assert_eq!(&a.traffic, &b.traffic);
                }
            }
        }
    }
}
