//! Control queries answered between bursts: connection listings and connections installed from the sync master.
//!
//! A listing is answered a bounded step at a time ([`Processor::scan_connections`]):
//! each step looks at a fixed number of table slots, counts the matches in
//! place and builds entries only for the page asked for, so a worker with
//! millions of connections goes back to its packets within a millisecond.

use std::borrow::Cow;
use std::net::SocketAddr;

use super::*;
use crate::stats::{ConnChunk, ConnEntry, ConnPager, ConnScan, CONN_SCAN_SLOTS};
use crate::synproxy::seq::{Phase, Translation};
use crate::synproxy::PackedTranslation;

impl<F: Frame> Processor<F> {
    /// A connection as listings and connection sync show it.
    pub(super) fn conn_info<S: ConnAddr>(&self, c: &Conn<S>, now_ms: u64) -> ConnInfo {
        ConnInfo {
            worker: self.worker as u16,
            protocol: c.protocol,
            client: c.client.sock_any(),
            vip: c.vip.sock_any(),
            real: c.real.sock_any(),
            local: Into::<Option<S>>::into(c.local).map(|l| l.sock_any()),
            forward: c.forward,
            state: Cow::Borrowed(c.state.name()),
            expires_ms: c.expires_in_ms(now_ms),
            template: false,
            seq_delta: c.seq_delta,
            syn_proxy: (c.proxy.phase() != Phase::None).then(|| c.proxy.get()),
        }
    }

    /// Installs a connection received from the sync master (a backup director
    /// keeps it, so established connections survive a failover) on the worker
    /// [`install_worker`] names, which announces it to the others. Its FULLNAT
    /// local port is taken out of this worker's pool. A SYN-proxied one keeps
    /// its translation, so its packets are translated exactly as on the
    /// master. Returns false when the table is full or the entry is unusable
    /// (a proxied handshake still in progress among them: only the master
    /// holds its packets). An IPv6 or NAT64 connection goes to the IPv6
    /// table ([`Processor::install6`]); a persistence template to the
    /// worker's templates ([`Processor::install_template`]).
    pub fn install(&mut self, info: &ConnInfo, now_ms: u64, out: &mut Output<F>) -> bool {
        if info.template {
            return self.install_template(info, now_ms);
        }
        let v4 = |a: std::net::SocketAddr| match a {
            std::net::SocketAddr::V4(a) => Some(a),
            std::net::SocketAddr::V6(_) => None,
        };
        let (Some(client), Some(vip), Some(real)) = (v4(info.client), v4(info.vip), v4(info.real)) else {
            return self.install6(info, now_ms, out);
        };
        let local = match info.local {
            Some(l) => match v4(l) {
                Some(l) => Some(l),
                None => return false,
            },
            None => None,
        };
        let Some(state) = TcpState::from_name(&info.state) else { return false };
        if local.is_some_and(|l| l.port() == 0) {
            return false;
        }
        let proxy = match info.syn_proxy {
            None => PackedTranslation::default(),
            Some(t) => match PackedTranslation::try_from(t) {
                Ok(packed) if Self::installable_translation(info, &t) => packed,
                _ => return false,
            },
        };
        let timeouts = self.snapshot.timeouts;
        let mut conn = Conn {
            protocol: info.protocol,
            client,
            vip,
            real,
            local: local.into(),
            real_index: u16::MAX,
            service_index: u16::MAX,
            forward: info.forward,
            state,
            expires_ms: 0,
            generation: 0,
            synced_tick: sync_tick(now_ms),
            seq_delta: info.seq_delta,
            reply_hop: crate::neigh::hops::NONE,
            proxy,
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

    /// Whether a synced connection's SYN proxy translation `t` can be used:
    /// open, with valid window scales, on a TCP NAT or FULLNAT connection.
    pub(super) fn installable_translation(info: &ConnInfo, t: &Translation) -> bool {
        t.is_open() && t.scales_valid() && info.protocol == Protocol::Tcp && matches!(info.forward, ForwardMode::Nat | ForwardMode::FullNat)
    }

    /// One step of a listing: looks at table slots `scan.cursor..` (at most
    /// `scan.budget` of them, at least one), counts the connections matching
    /// `filter` from their fields, and builds entries only for the matches
    /// ranked `scan.skip..scan.skip + scan.want` among this step's. The step
    /// that reaches the end of the table answers `next: None` and also judges
    /// the persistence templates (few: one per client network and service)
    /// when the filter asks for them, after the connections.
    ///
    /// The slots of the IPv6 table follow the IPv4 table's in the cursor's
    /// range.
    pub fn scan_connections(&self, filter: &ConnFilter, scan: ConnScan, now_ms: u64) -> ConnChunk {
        let slots4 = self.conns.slot_count();
        let slots = slots4 + self.conns6.slot_count();
        let start = scan.cursor.min(slots);
        let stop = start.saturating_add(scan.budget.max(1)).min(slots);
        let window = scan.skip..scan.skip.saturating_add(scan.want);
        let mut chunk = ConnChunk { matched: 0, conns: Vec::new(), next: (stop < slots).then_some(stop) };
        for slot in start..stop.min(slots4) {
            let Some(c) = ConnId::try_from(slot).ok().and_then(|id| self.conns.get(id)) else { continue };
            self.scan_one(c, filter, &window, &mut chunk, now_ms);
        }
        for slot in start.max(slots4)..stop {
            let Some(c) = ConnId::try_from(slot - slots4).ok().and_then(|id| self.conns6.get(id)) else { continue };
            self.scan_one(c, filter, &window, &mut chunk, now_ms);
        }
        if chunk.next.is_none() && filter.templates {
            for ((key, net), t) in &self.templates {
                let entry = ConnEntry {
                    protocol: key.protocol,
                    client: *net,
                    vip: SocketAddr::new(key.vip, key.port),
                    real: t.real.ip(),
                    state: TcpState::None.name(),
                    template: true,
                };
                if filter.matches_entry(&entry) {
                    if window.contains(&chunk.matched) {
                        chunk.conns.push(self.template_info(key, *net, t, now_ms));
                    }
                    chunk.matched += 1;
                }
            }
        }
        chunk
    }

    /// Counts `c` in a listing step when it passes `filter`, and builds its
    /// entry when its rank falls in `window`.
    fn scan_one<S: ConnAddr>(&self, c: &Conn<S>, filter: &ConnFilter, window: &std::ops::Range<usize>, chunk: &mut ConnChunk, now_ms: u64) {
        let entry = ConnEntry {
            protocol: c.protocol,
            client: c.client.ip_any(),
            vip: c.vip.sock_any(),
            real: c.real_ip(),
            state: c.state.name(),
            template: false,
        };
        if filter.matches_entry(&entry) {
            if window.contains(&chunk.matched) {
                chunk.conns.push(self.conn_info(c, now_ms));
            }
            chunk.matched += 1;
        }
    }

    /// The slots a listing walks: the IPv4 table's, then the IPv6 table's.
    pub fn listing_slots(&self) -> usize {
        self.conns.slot_count() + self.conns6.slot_count()
    }

    /// A persistence template as listings show it (client port 0), for
    /// either family: a NAT64 service's names its IPv4 real server.
    pub(super) fn template_info(&self, key: &ServiceKey, net: IpAddr, t: &Template, now_ms: u64) -> ConnInfo {
        ConnInfo {
            worker: self.worker as u16,
            protocol: key.protocol,
            client: SocketAddr::new(net, 0),
            vip: SocketAddr::new(key.vip, key.port),
            real: t.real,
            local: None,
            forward: self
                .snapshot
                .service(key)
                .and_then(|(_, s)| s.reals.iter().find(|r| r.addr == t.real.ip() && r.port == t.real.port()).map(|r| r.forward))
                .unwrap_or(ForwardMode::Dr),
            state: Cow::Borrowed(TcpState::None.name()),
            expires_ms: t.expires_ms.saturating_sub(now_ms),
            template: true,
            seq_delta: 0,
            syn_proxy: None,
        }
    }

    /// This worker's connections (and templates, if asked) matching `filter`,
    /// all of them: [`Processor::scan_connections`] step after step (for tests
    /// and callers off the forwarding core).
    pub fn connections(&self, filter: &ConnFilter, now_ms: u64) -> Vec<ConnInfo> {
        let mut pager = ConnPager::new(0, usize::MAX);
        let mut cursor = Some(0);
        while let Some(at) = cursor {
            cursor = pager.add(self.scan_connections(filter, pager.scan(at, CONN_SCAN_SLOTS), now_ms));
        }
        pager.finish().0
    }
}

#[cfg(test)]
mod tests;
