//! Rate estimation as IPVS does it (what `ipvsadm -L --rate` shows).
//!
//! The kernel's estimator (`net/netfilter/ipvs/ip_vs_est.c`) samples every
//! service's and real server's counters every 2 seconds and keeps an
//! exponentially weighted moving average of each rate, in fixed point:
//!
//! ```text
//! rate  = (counter - last) << 9        # per second, scaled by 2^10 (cps, pps)
//! rate  = (counter - last) << 4        # per second, scaled by 2^5  (bytes/s)
//! avg  += (rate - avg) >> 2            # weight 1/4 for every rate
//! shown = (avg + 0x1FF) >> 10          # cps, pps, rounded
//! shown = (avg + 0xF) >> 5             # bytes/s, rounded
//! ```
//!
//! [`RateEstimator`] does exactly this, with the same integer arithmetic, so
//! a given counter sequence gives the numbers the kernel would give. rvsd runs
//! it as a tokio task ([`crate::api::spawn_rate_estimator`]) that samples
//! [`Dataplane::service_stats`](crate::api::Dataplane::service_stats) every
//! [`ESTIMATOR_INTERVAL`]; like the kernel's timer it assumes every sample is
//! 2 s after the previous one (a late sample reads a little high, the next
//! one a little low; the average is unaffected over time).
//!
//! Each entry starts when its service or real server is first seen, with the
//! counters of that moment as the base and all rates 0. When a counter goes
//! down (ipvsadm `-Z` zeroed it) the entry restarts from the new values with
//! rates 0, as the kernel's `ip_vs_zero_estimator` does. "bps" is bytes per
//! second, as in IPVS.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use rvs_dataplane::snapshot::ServiceKey;
use rvs_dataplane::stats::{ServiceStats, TrafficCounters};
use serde::{Deserialize, Serialize};

/// How often the estimator samples the counters (IPVS: 2 s).
pub const ESTIMATOR_INTERVAL: Duration = Duration::from_secs(2);

/// Smoothed rates of one service or real server, as `ipvsadm --rate` shows them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rates {
    /// Connections per second.
    pub cps: u64,
    /// Packets per second, client to real server.
    pub in_pps: u64,
    /// Packets per second, real server to client (through rvs).
    pub out_pps: u64,
    /// Bytes per second, client to real server.
    pub in_bps: u64,
    /// Bytes per second, real server to client (through rvs).
    pub out_bps: u64,
}

/// The estimator state of one set of counters (IPVS's `struct ip_vs_estimator`).
#[derive(Clone, Copy, Debug, Default)]
struct Estimate {
    last: TrafficCounters,
    /// Scaled by 2^10.
    cps: i64,
    /// Scaled by 2^10.
    in_pps: i64,
    /// Scaled by 2^10.
    out_pps: i64,
    /// Scaled by 2^5.
    in_bps: i64,
    /// Scaled by 2^5.
    out_bps: i64,
}

/// One EWMA step: `avg += (rate - avg) >> 2`, with the delta shifted by `shift`.
fn step(avg: &mut i64, now: u64, last: u64, shift: u32) {
    let delta = now.wrapping_sub(last);
    let rate = i64::try_from(delta.checked_shl(shift).unwrap_or(u64::MAX)).unwrap_or(i64::MAX);
    *avg += (rate - *avg) >> 2;
}

impl Estimate {
    fn new(now: &TrafficCounters) -> Self {
        Estimate { last: *now, ..Estimate::default() }
    }

    fn sample(&mut self, now: &TrafficCounters) {
        let l = self.last;
        if now.conns < l.conns
            || now.in_pkts < l.in_pkts
            || now.out_pkts < l.out_pkts
            || now.in_bytes < l.in_bytes
            || now.out_bytes < l.out_bytes
        {
            // Zeroed: start over, as ip_vs_zero_estimator.
            *self = Estimate::new(now);
            return;
        }
        step(&mut self.cps, now.conns, l.conns, 9);
        step(&mut self.in_pps, now.in_pkts, l.in_pkts, 9);
        step(&mut self.out_pps, now.out_pkts, l.out_pkts, 9);
        step(&mut self.in_bps, now.in_bytes, l.in_bytes, 4);
        step(&mut self.out_bps, now.out_bytes, l.out_bytes, 4);
        self.last = *now;
    }

    fn rates(&self) -> Rates {
        let read = |v: i64, round: i64, shift: u32| u64::try_from((v + round) >> shift).unwrap_or(0);
        Rates {
            cps: read(self.cps, 0x1FF, 10),
            in_pps: read(self.in_pps, 0x1FF, 10),
            out_pps: read(self.out_pps, 0x1FF, 10),
            in_bps: read(self.in_bps, 0xF, 5),
            out_bps: read(self.out_bps, 0xF, 5),
        }
    }
}

/// Key of a real server's estimate.
type RealKey = (ServiceKey, IpAddr, u16);

/// Rate estimates of every service and real server.
#[derive(Debug, Default)]
pub struct RateEstimator {
    services: HashMap<ServiceKey, Estimate>,
    reals: HashMap<RealKey, Estimate>,
    samples: u64,
}

impl RateEstimator {
    /// An estimator that has seen nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one sample (taken [`ESTIMATOR_INTERVAL`] after the previous one).
    /// Services and real servers absent from `stats` are forgotten.
    pub fn sample(&mut self, stats: &[ServiceStats]) {
        let mut services = HashMap::with_capacity(stats.len());
        let mut reals = HashMap::new();
        for s in stats {
            let mut e = self.services.get(&s.key).copied().unwrap_or_else(|| Estimate::new(&s.traffic));
            e.sample(&s.traffic);
            services.insert(s.key, e);
            for r in &s.reals {
                let key = (s.key, r.addr, r.port);
                let mut e = self.reals.get(&key).copied().unwrap_or_else(|| Estimate::new(&r.traffic));
                e.sample(&r.traffic);
                reals.insert(key, e);
            }
        }
        self.services = services;
        self.reals = reals;
        self.samples += 1;
    }

    /// How many samples were taken.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// The rates of a service (zero when unknown).
    pub fn service(&self, key: &ServiceKey) -> Rates {
        self.services.get(key).map(Estimate::rates).unwrap_or_default()
    }

    /// The rates of a real server of a service (zero when unknown).
    pub fn real(&self, key: &ServiceKey, addr: IpAddr, port: u16) -> Rates {
        self.reals.get(&(*key, addr, port)).map(Estimate::rates).unwrap_or_default()
    }

    /// Forgets the estimates of one service and its real servers, or of all
    /// (`None`); they restart from the next sample (ipvsadm `-Z`).
    pub fn zero(&mut self, service: Option<&ServiceKey>) {
        match service {
            None => {
                self.services.clear();
                self.reals.clear();
            }
            Some(key) => {
                self.services.remove(key);
                self.reals.retain(|(k, _, _), _| k != key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rvs_dataplane::snapshot::Protocol;
    use rvs_dataplane::stats::RealStats;
    use std::net::Ipv4Addr;

    fn key() -> ServiceKey {
        ServiceKey { protocol: Protocol::Tcp, vip: Ipv4Addr::new(10, 0, 0, 100).into(), port: 80 }
    }

    fn stats(conns: u64, pkts: u64, bytes: u64) -> Vec<ServiceStats> {
        let traffic = TrafficCounters { conns, in_pkts: pkts, out_pkts: pkts / 2, in_bytes: bytes, out_bytes: bytes / 2 };
        vec![ServiceStats {
            key: key(),
            traffic,
            reals: vec![RealStats {
                addr: Ipv4Addr::new(10, 1, 0, 11).into(),
                port: 80,
                traffic,
                active: 0,
                inactive: 0,
                overloaded: false,
            }],
        }]
    }

    /// The kernel's arithmetic, written out independently for one rate.
    fn kernel(deltas: &[u64], shift: u32, round: i64, out_shift: u32) -> u64 {
        let mut avg: i64 = 0;
        for d in deltas {
            let rate = (d << shift) as i64;
            avg += (rate - avg) >> 2;
        }
        ((avg + round) >> out_shift) as u64
    }

    #[test]
    fn first_sample_is_the_base() {
        let mut e = RateEstimator::new();
        e.sample(&stats(1000, 5000, 1_000_000));
        assert_eq!(e.service(&key()), Rates::default());
    }

    #[test]
    fn steady_traffic_converges_to_the_true_rate() {
        // 100 conn/s, 1000 pkt/s, 1 MB/s: per 2 s sample 200, 2000, 2_000_000.
        let mut e = RateEstimator::new();
        for i in 0..100u64 {
            e.sample(&stats(200 * i, 2000 * i, 2_000_000 * i));
        }
        let r = e.service(&key());
        assert_eq!(r, Rates { cps: 100, in_pps: 1000, out_pps: 500, in_bps: 1_000_000, out_bps: 500_000 });
        assert_eq!(e.real(&key(), Ipv4Addr::new(10, 1, 0, 11).into(), 80), r);
        assert_eq!(e.samples(), 100);
    }

    #[test]
    fn matches_the_kernel_arithmetic_step_by_step() {
        let deltas = [10u64, 0, 7, 300, 1, 1, 0, 0, 55];
        let mut e = RateEstimator::new();
        let mut total = 0;
        e.sample(&stats(0, 0, 0));
        for (i, d) in deltas.iter().enumerate() {
            total += d;
            e.sample(&stats(total, total, total));
            let seen = &deltas[..=i];
            let r = e.service(&key());
            assert_eq!(r.cps, kernel(seen, 9, 0x1FF, 10), "cps after {seen:?}");
            assert_eq!(r.in_pps, kernel(seen, 9, 0x1FF, 10));
            assert_eq!(r.in_bps, kernel(seen, 4, 0xF, 5), "bps after {seen:?}");
        }
        // The first step after a burst of 300 per 2 s: avg = 150<<10 / 4 …
        let mut e = RateEstimator::new();
        e.sample(&stats(0, 0, 0));
        e.sample(&stats(300, 0, 0));
        assert_eq!(e.service(&key()).cps, (((300u64 << 9) >> 2) + 0x1FF) >> 10);
    }

    #[test]
    fn zeroed_counters_restart_the_estimate() {
        let mut e = RateEstimator::new();
        for i in 0..10u64 {
            e.sample(&stats(200 * i, 0, 0));
        }
        assert!(e.service(&key()).cps > 0);
        e.sample(&stats(0, 0, 0));
        assert_eq!(e.service(&key()), Rates::default());
        e.zero(None);
        assert_eq!(e.service(&key()), Rates::default());
    }

    #[test]
    fn vanished_services_are_forgotten() {
        let mut e = RateEstimator::new();
        e.sample(&stats(0, 0, 0));
        e.sample(&stats(100, 0, 0));
        assert!(e.service(&key()).cps > 0);
        e.sample(&[]);
        assert_eq!(e.service(&key()), Rates::default());
    }
}
