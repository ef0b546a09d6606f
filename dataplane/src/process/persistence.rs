//! Scheduling with persistence templates (ipvsadm -p): a client network keeps its real server.

use super::*;

/// A persistence template: this client network goes to this real server.
#[derive(Clone, Copy, Debug)]
pub(super) struct Template {
    pub(super) real: SocketAddrV4,
    /// Connections currently using it.
    pub(super) conns: u32,
    /// When it may be forgotten (when `conns` is 0), in ms.
    pub(super) expires_ms: u64,
}

impl<F: Frame> Processor<F> {
    /// Picks a real server of service `svc_idx` for a new connection, honouring
    /// a persistence template when the service has one.
    pub(super) fn schedule(&mut self, svc_idx: usize, key: &FlowKey, now_ms: u64) -> Option<usize> {
        let svc = self.snapshot.services.get(svc_idx)?;
        let counts = self.counts.get(svc_idx)?;
        let candidates =
            Candidates { reals: &svc.reals, active: &counts.view_active, inactive: &counts.view_inactive, overloaded: &counts.overloaded };
        if let Some(p) = svc.persistence {
            let net = mask(key.src, p.netmask);
            if let Some(t) = self.templates.get(&(svc.key, net)) {
                let live = t.conns > 0 || t.expires_ms > now_ms;
                let idx = svc.reals.iter().position(|r| r.addr == IpAddr::V4(*t.real.ip()) && r.port == t.real.port());
                // Like IPVS: a template keeps pointing at its real server while it
                // exists, even when quiescent or overloaded, unless the server is
                // gone — or quiescent with `expire_quiescent`
                // (expire_quiescent_template).
                if let Some(i) = idx.filter(|&i| live && (candidates.weight(i) > 0 || !svc.expire_quiescent)) {
                    return Some(i);
                }
            }
        }
        self.schedulers.get_mut(svc_idx)?.pick(&candidates, key)
    }

    /// Records that `conn` uses its client network's template (creating it).
    pub(super) fn template_use(&mut self, conn: &Conn, p: Persistence, now_ms: u64) {
        let net = mask(*conn.client.ip(), p.netmask);
        let expires_ms = now_ms + u64::from(p.timeout_s) * 1000;
        let t = self.templates.entry((conn.service_key(), net)).or_insert(Template { real: conn.real, conns: 0, expires_ms });
        if t.real != conn.real {
            *t = Template { real: conn.real, conns: 0, expires_ms };
        }
        t.conns += 1;
        t.expires_ms = t.expires_ms.max(expires_ms);
    }

    /// The number of persistence templates on this worker.
    pub fn templates(&self) -> usize {
        self.templates.len()
    }
}

/// `addr` masked with `netmask` (persistence granularity, ipvsadm `-M`).
pub(super) fn mask(addr: Ipv4Addr, netmask: Ipv4Addr) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(addr) & u32::from(netmask))
}

/// The worker that holds the persistence templates of client network `net`.
pub(super) fn template_owner(net: Ipv4Addr, workers: usize) -> usize {
    // Fibonacci hashing: spreads consecutive networks over workers.
    let h = u32::from(net).wrapping_mul(0x9e37_79b9);
    (h >> 16) as usize % workers.max(1)
}
