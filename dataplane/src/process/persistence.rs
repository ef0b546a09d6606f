//! Scheduling with persistence templates (ipvsadm `-p`): a client network
//! keeps its real server. Both families: an IPv4 client network is its
//! address under the service's netmask, an IPv6 one its first `-M` bits
//! (ipvsadm `-M 64`); a NAT64 service's templates name its IPv4 real servers.

use std::net::SocketAddr;

use crate::conn::ConnAddr;
use crate::sched::SchedFlow;

use super::*;

/// A persistence template: this client network goes to this real server.
#[derive(Clone, Copy, Debug)]
pub(super) struct Template {
    /// The real server, as the snapshot names it (IPv4 for a NAT64 service).
    pub(super) real: SocketAddr,
    /// Connections currently using it.
    pub(super) conns: u32,
    /// When it may be forgotten (when `conns` is 0), in ms.
    pub(super) expires_ms: u64,
}

impl<F: Frame> Processor<F> {
    /// Picks a real server of service `svc_idx` for a new connection of
    /// `flow` (either family), honouring a persistence template when the
    /// service has one.
    pub(super) fn schedule(&mut self, svc_idx: usize, flow: &dyn SchedFlow, now_ms: u64) -> Option<usize> {
        let svc = self.snapshot.services.get(svc_idx)?;
        let counts = self.counts.get(svc_idx)?;
        let candidates =
            Candidates { reals: &svc.reals, active: &counts.view_active, inactive: &counts.view_inactive, overloaded: &counts.overloaded };
        if let Some(p) = svc.persistence {
            if let Some(i) = template_real(&self.templates, svc, p, flow, &candidates, now_ms) {
                return Some(i);
            }
        }
        self.schedulers.get_mut(svc_idx)?.pick(&candidates, flow)
    }

    /// Records that `conn` (either family) uses its client network's
    /// template (creating it).
    pub(super) fn template_use<S: ConnAddr>(&mut self, conn: &Conn<S>, p: Persistence, now_ms: u64) {
        let net = p.client_net(conn.client.ip_any());
        let real = conn.real.sock_any();
        let expires_ms = now_ms + u64::from(p.timeout_s) * 1000;
        let t = self.templates.entry((conn.service_key(), net)).or_insert(Template { real, conns: 0, expires_ms });
        if t.real != real {
            *t = Template { real, conns: 0, expires_ms };
        }
        t.conns += 1;
        t.expires_ms = t.expires_ms.max(expires_ms);
    }

    /// Records that `conn` (either family) no longer uses its template: the
    /// template outlives it by the service's persistence timeout.
    pub(super) fn template_release<S: ConnAddr>(&mut self, conn: &Conn<S>, now_ms: u64) {
        let key = conn.service_key();
        let Some(p) = self.snapshot.service(&key).and_then(|(_, s)| s.persistence) else { return };
        if let Some(t) = self.templates.get_mut(&(key, p.client_net(conn.client.ip_any()))) {
            t.conns = t.conns.saturating_sub(1);
            t.expires_ms = t.expires_ms.max(now_ms + u64::from(p.timeout_s) * 1000);
        }
    }

    /// The worker that must create a new connection from `client` to the
    /// service `svc_idx` when it is persistent (its template's owner), if
    /// that is another worker than this one and the packet was not already
    /// redirected here.
    pub(super) fn template_redirect(&self, svc_idx: usize, client: IpAddr, redirected: bool) -> Option<usize> {
        let p = self.snapshot.services.get(svc_idx)?.persistence?;
        let owner = template_owner(p.client_net(client), self.workers);
        (!redirected && owner != self.worker).then_some(owner)
    }

    /// The number of persistence templates on this worker.
    pub fn templates(&self) -> usize {
        self.templates.len()
    }

    /// Hands `conn` to the sync sender, with its persistence template when
    /// its service is persistent: as IPVS syncs a connection's template with
    /// it, a backup that takes over keeps every client network on its real
    /// server. A template still in use is sent with the service's full
    /// persistence timeout to live.
    pub(super) fn push_sync<S: ConnAddr>(&self, conn: &Conn<S>, now_ms: u64, out: &mut Output<F>) {
        out.sync.push(self.conn_info(conn, now_ms));
        let key = conn.service_key();
        let Some(p) = self.snapshot.service(&key).and_then(|(_, s)| s.persistence) else { return };
        let net = p.client_net(conn.client.ip_any());
        if let Some(t) = self.templates.get(&(key, net)) {
            let mut info = self.template_info(&key, net, t, now_ms);
            if t.conns > 0 {
                info.expires_ms = info.expires_ms.max(u64::from(p.timeout_s) * 1000);
            }
            out.sync.push(info);
        }
    }

    /// Installs a persistence template received from the sync master (see
    /// [`Processor::push_sync`]): its client network keeps its real server
    /// for the time the master gave it. False when this node has no such
    /// persistent service or real server (the entry is ignored).
    pub(super) fn install_template(&mut self, info: &ConnInfo, now_ms: u64) -> bool {
        let key = ServiceKey { protocol: info.protocol, vip: info.vip.ip(), port: info.vip.port() };
        let Some((_, svc)) = self.snapshot.service(&key) else { return false };
        let Some(p) = svc.persistence else { return false };
        if !svc.reals.iter().any(|r| r.addr == info.real.ip() && r.port == info.real.port()) {
            return false;
        }
        let net = p.client_net(info.client.ip());
        let expires_ms = now_ms.saturating_add(info.expires_ms);
        let t = self.templates.entry((key, net)).or_insert(Template { real: info.real, conns: 0, expires_ms });
        if t.real != info.real {
            *t = Template { real: info.real, conns: 0, expires_ms };
        }
        t.expires_ms = t.expires_ms.max(expires_ms);
        true
    }
}

/// The real server (index in `svc`) that the persistence template of
/// `flow`'s client network names, if it has a live one that may still take
/// the connection. Apart from [`Processor::schedule`] (and never inlined
/// there) so that scheduling for a service without persistence does not
/// pay for the template lookup's registers.
#[inline(never)]
fn template_real(
    templates: &HashMap<(ServiceKey, IpAddr), Template>,
    svc: &crate::snapshot::Service,
    p: Persistence,
    flow: &dyn SchedFlow,
    candidates: &Candidates<'_>,
    now_ms: u64,
) -> Option<usize> {
    let t = templates.get(&(svc.key, p.client_net(flow.src())))?;
    let live = t.conns > 0 || t.expires_ms > now_ms;
    let idx = svc.reals.iter().position(|r| r.addr == t.real.ip() && r.port == t.real.port());
    // Like IPVS: a template keeps pointing at its real server while it
    // exists, even when quiescent or overloaded, unless the server is
    // gone — or quiescent with `expire_quiescent`
    // (expire_quiescent_template).
    idx.filter(|&i| live && (candidates.weight(i) > 0 || !svc.expire_quiescent))
}

/// The worker that holds the persistence templates of client network `net`.
pub(super) fn template_owner(net: IpAddr, workers: usize) -> usize {
    let folded = match net {
        IpAddr::V4(a) => u32::from(a),
        IpAddr::V6(a) => {
            let x = u128::from(a);
            (x ^ (x >> 32) ^ (x >> 64) ^ (x >> 96)) as u32
        }
    };
    // Fibonacci hashing: spreads consecutive networks over workers.
    let h = folded.wrapping_mul(0x9e37_79b9);
    (h >> 16) as usize % workers.max(1)
}
