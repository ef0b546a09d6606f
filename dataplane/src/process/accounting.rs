//! Per real server accounting on this worker: active/inactive connection counts (shared with the other workers for the schedulers), IPVS's overload thresholds, traffic counters.

use super::*;

/// Per real server connection counts of one service, on this worker.
#[derive(Clone, Debug, Default)]
pub(super) struct ServiceCounts {
    /// This worker's active connections per real server (exact).
    pub(super) active: Vec<u32>,
    /// This worker's inactive connections per real server (exact).
    pub(super) inactive: Vec<u32>,
    /// The other workers' active connections, as last published.
    pub(super) remote_active: Vec<u32>,
    /// The other workers' inactive connections, as last published.
    pub(super) remote_inactive: Vec<u32>,
    /// What schedulers see: local + remote active.
    pub(super) view_active: Vec<u32>,
    /// What schedulers see: local + remote inactive.
    pub(super) view_inactive: Vec<u32>,
    /// Over the upper threshold (IPVS `IP_VS_DEST_F_OVERLOAD`).
    pub(super) overloaded: Vec<bool>,
    pub(super) traffic: Vec<TrafficCounters>,
}

impl<F: Frame> Processor<F> {
    /// Adds (`delta` = 1) or removes (`-1`) a connection from its real server's
    /// counts and applies the connection thresholds.
    pub(super) fn count_conn<S: ConnAddr>(&mut self, c: &Conn<S>, si: u16, ri: u16, delta: i32) {
        self.count_syn_recv(c, delta);
        self.shift_count(c.is_active(), si, ri, delta);
        let (si, ri) = (usize::from(si), usize::from(ri));
        let Some(real) = self.snapshot.services.get(si).and_then(|s| s.reals.get(ri)).copied() else { return };
        let Some(counts) = self.counts.get_mut(si) else { return };
        let total = counts.view_active[ri].saturating_add(counts.view_inactive[ri]);
        counts.overloaded[ri] = overload_after(counts.overloaded[ri], delta > 0, total, real.upper_threshold, real.lower_threshold);
    }

    /// Moves a connection between the active and inactive counts (a state change).
    pub(super) fn recount_state<S: ConnAddr>(&mut self, before: &Conn<S>, after: &Conn<S>) {
        // Both counts follow the state alone (a connection keeps its protocol).
        if before.state == after.state {
            return;
        }
        self.count_syn_recv(before, -1);
        self.count_syn_recv(after, 1);
        if before.is_active() != after.is_active() {
            self.shift_count(before.is_active(), after.service_index, after.real_index, -1);
            self.shift_count(after.is_active(), after.service_index, after.real_index, 1);
        }
    }

    pub(super) fn shift_count(&mut self, active: bool, si: u16, ri: u16, delta: i32) {
        let Some(counts) = self.counts.get_mut(usize::from(si)) else { return };
        let ri = usize::from(ri);
        let (local, view) =
            if active { (&mut counts.active, &mut counts.view_active) } else { (&mut counts.inactive, &mut counts.view_inactive) };
        if let (Some(l), Some(v)) = (local.get_mut(ri), view.get_mut(ri)) {
            *l = l.saturating_add_signed(delta);
            *v = v.saturating_add_signed(delta);
        }
    }

    /// Publishes this worker's counts and refreshes its view of the others'
    /// (see the `sched` module docs for the error bound this gives).
    pub(super) fn exchange_counts(&mut self) {
        let shared = std::sync::Arc::clone(&self.snapshot.conn_counts);
        for (si, (svc, counts)) in self.snapshot.services.iter().zip(self.counts.iter_mut()).enumerate() {
            for (ri, real) in svc.reals.iter().enumerate() {
                shared.publish(self.worker, si, ri, counts.active[ri], counts.inactive[ri]);
                if self.workers > 1 {
                    let (ra, ri_) = shared.others(self.worker, si, ri);
                    counts.remote_active[ri] = ra;
                    counts.remote_inactive[ri] = ri_;
                    counts.view_active[ri] = counts.active[ri].saturating_add(ra);
                    counts.view_inactive[ri] = counts.inactive[ri].saturating_add(ri_);
                    let total = counts.view_active[ri].saturating_add(counts.view_inactive[ri]);
                    let o = overload_after(counts.overloaded[ri], true, total, real.upper_threshold, real.lower_threshold);
                    counts.overloaded[ri] = overload_after(o, false, total, real.upper_threshold, real.lower_threshold);
                }
            }
        }
    }

    /// Adds a packet of `bytes` to its real server's traffic counters.
    pub(super) fn count_traffic<S: ConnAddr>(&mut self, c: &Conn<S>, dir: Direction, bytes: u64) {
        let Some(t) = self.counts.get_mut(usize::from(c.service_index)).and_then(|s| s.traffic.get_mut(usize::from(c.real_index))) else {
            return;
        };
        match dir {
            Direction::Inbound => {
                t.in_pkts += 1;
                t.in_bytes += bytes;
            }
            Direction::Reply => {
                t.out_pkts += 1;
                t.out_bytes += bytes;
            }
        }
    }

    /// This worker's traffic counters and connection counts per service and real server.
    pub fn service_stats(&self) -> Vec<ServiceStats> {
        self.snapshot
            .services
            .iter()
            .zip(&self.counts)
            .map(|(svc, counts)| {
                let reals: Vec<RealStats> = svc
                    .reals
                    .iter()
                    .enumerate()
                    .map(|(i, r)| RealStats {
                        addr: r.addr,
                        port: r.port,
                        traffic: counts.traffic.get(i).copied().unwrap_or_default(),
                        active: counts.active.get(i).copied().unwrap_or(0),
                        inactive: counts.inactive.get(i).copied().unwrap_or(0),
                        overloaded: counts.overloaded.get(i).copied().unwrap_or(false),
                    })
                    .collect();
                let mut traffic = TrafficCounters::default();
                for r in &reals {
                    traffic.add(&r.traffic);
                }
                ServiceStats { key: svc.key, traffic, reals }
            })
            .collect()
    }

    /// Zeroes the traffic counters (ipvsadm `-Z`); connection counts stay.
    pub fn zero_stats(&mut self) {
        for c in &mut self.counts {
            c.traffic.iter_mut().for_each(|t| *t = TrafficCounters::default());
        }
    }

    /// The connection counts this worker keeps for service `idx`: (active, inactive) per real.
    pub fn service_counts(&self, idx: usize) -> Option<(&[u32], &[u32])> {
        self.counts.get(idx).map(|c| (&c.active[..], &c.inactive[..]))
    }
}

/// Fresh (zero) counts for a service with `n` real servers.
pub(super) fn fresh_counts(n: usize) -> ServiceCounts {
    ServiceCounts {
        active: vec![0; n],
        inactive: vec![0; n],
        remote_active: vec![0; n],
        remote_inactive: vec![0; n],
        view_active: vec![0; n],
        view_inactive: vec![0; n],
        overloaded: vec![false; n],
        traffic: vec![TrafficCounters::default(); n],
    }
}

/// IPVS's threshold rule after a connection was bound (`bound`) to or unbound
/// from a real server with `total` connections now.
pub(super) fn overload_after(overloaded: bool, bound: bool, total: u32, upper: u32, lower: u32) -> bool {
    if bound {
        overloaded || (upper > 0 && total >= upper)
    } else if !overloaded {
        false
    } else if lower > 0 {
        total >= lower
    } else if upper > 0 {
        // No lower threshold: the overload ends below 3/4 of the upper one.
        u64::from(total) * 4 >= u64::from(upper) * 3
    } else {
        false
    }
}
