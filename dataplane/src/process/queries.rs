//! Control queries answered between bursts: connection listings and connections installed from the sync master.

use super::*;

impl<F: Frame> Processor<F> {
    /// A connection as listings and connection sync show it.
    pub(super) fn conn_info(&self, c: &Conn, now_ms: u64) -> ConnInfo {
        ConnInfo {
            worker: self.worker as u16,
            protocol: c.protocol,
            client: c.client,
            vip: c.vip,
            real: c.real,
            local: c.local.get(),
            forward: c.forward,
            state: c.state.name().to_owned(),
            expires_ms: c.expires_in_ms(now_ms),
            template: false,
            seq_delta: c.seq_delta,
        }
    }

    /// Installs a connection received from the sync master (a backup director
    /// keeps it, so established connections survive a failover) on the worker
    /// [`install_worker`] names, which announces it to the others. Its FULLNAT
    /// local port is taken out of this worker's pool. Returns false when the
    /// table is full or the entry is unusable.
    pub fn install(&mut self, info: &ConnInfo, now_ms: u64, out: &mut Output<F>) -> bool {
        if info.template {
            return false;
        }
        let Some(state) = TcpState::from_name(&info.state) else { return false };
        if info.local.is_some_and(|l| l.port() == 0) {
            return false;
        }
        let timeouts = self.snapshot.timeouts;
        let mut conn = Conn {
            protocol: info.protocol,
            client: info.client,
            vip: info.vip,
            real: info.real,
            local: info.local.into(),
            real_index: u16::MAX,
            service_index: u16::MAX,
            forward: info.forward,
            state,
            expires_ms: 0,
            generation: 0,
            synced_ms: ms32(now_ms),
            seq_delta: info.seq_delta,
            reply_hop: crate::neigh::hops::NONE,
        };
        conn.restart_timer(state_timeout_ms(state, &timeouts), now_ms);
        self.relocate_now(&mut conn);
        if let Some(local) = conn.local.get() {
            self.pool.reserve(local);
        }
        if !self.insert_conn(conn, now_ms, out) {
            return false;
        }
        self.announce(&conn, out);
        self.count_conn(&conn, conn.service_index, conn.real_index, 1);
        self.counters.inc(Counter::ConnSynced);
        true
    }

    /// This worker's connections (and templates, if asked) matching `filter`.
    pub fn connections(&self, filter: &ConnFilter, now_ms: u64) -> Vec<ConnInfo> {
        let mut list: Vec<ConnInfo> = self.conns.iter().map(|(_, c)| self.conn_info(c, now_ms)).filter(|c| filter.matches(c)).collect();
        if filter.templates {
            for ((key, net), t) in &self.templates {
                let info = ConnInfo {
                    worker: self.worker as u16,
                    protocol: key.protocol,
                    client: SocketAddrV4::new(*net, 0),
                    vip: SocketAddrV4::new(key.vip, key.port),
                    real: t.real,
                    local: None,
                    forward: self
                        .snapshot
                        .service(key)
                        .and_then(|(_, s)| s.reals.iter().find(|r| r.addr == *t.real.ip()).map(|r| r.forward))
                        .unwrap_or(ForwardMode::Dr),
                    state: TcpState::None.name().to_owned(),
                    expires_ms: t.expires_ms.saturating_sub(now_ms),
                    template: true,
                    seq_delta: 0,
                };
                if filter.matches(&info) {
                    list.push(info);
                }
            }
        }
        list
    }
}
