//! The pure logic of health checking: real server states, quorum with
//! hysteresis, notify transitions and the effective config. No I/O, no clock:
//! callers pass the time.
//!
//! The flow: [`HealthState::sync`] with the operator's config (on start and
//! after every change), [`HealthState::record`] with the result of each round
//! of checks, and [`HealthState::effective`] to get the config the dataplane
//! must run. `sync` and `record` return the [`Transition`]s they caused; each
//! one may carry a command (`notify_up`, `notify_down`, `quorum_up`,
//! `quorum_down`) for the caller to run.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rvs_dataplane::snapshot::ServiceKey;
use serde::Serialize;

use super::{kind_name, real_health, RealKey, WeightChange};
use crate::config::{Config, RealConfig, ServiceConfig};
use crate::ha::{ServiceHealth, SorryServer};

/// The outcome of one round of a real server's checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoundResult {
    /// Every check passed.
    pub up: bool,
    /// How the passed checks change the weight (only applied when `up`).
    pub weight: WeightChange,
    /// The failures of the round, `"; "`-joined (None when all passed).
    pub error: Option<String>,
    /// How long the round took (its slowest check, retries included).
    pub duration: Duration,
}

impl RoundResult {
    /// A passed round that leaves the weight alone.
    pub fn pass() -> Self {
        RoundResult { up: true, weight: WeightChange::Keep, error: None, duration: Duration::ZERO }
    }

    /// A failed round.
    pub fn fail(error: impl Into<String>) -> Self {
        RoundResult { up: false, weight: WeightChange::Keep, error: Some(error.into()), duration: Duration::ZERO }
    }

    /// The same result, taking `duration`.
    pub fn took(self, duration: Duration) -> Self {
        RoundResult { duration, ..self }
    }
}

/// What health checking knows of one checked real server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RealStatus {
    /// Up (in the pool) or down.
    pub up: bool,
    /// Weight set by a dynamic MISC_CHECK; None = the configured weight.
    pub dynamic_weight: Option<u32>,
    /// The failures of the last round, if it failed.
    pub last_error: Option<String>,
    /// When the last round ended (None before the first).
    pub last_check: Option<SystemTime>,
    /// How long the last round took (None before the first).
    pub last_duration: Option<Duration>,
    /// Failed rounds in a row (0 after a passed round).
    pub consecutive_failures: u64,
    /// When the state last changed (or was first set).
    pub last_change: SystemTime,
    /// Rounds recorded.
    pub rounds: u64,
    /// `notify_down` to run if the real is removed while up and its service has `omega`.
    on_remove: Option<String>,
}

/// A change caused by health checking.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum HealthEvent {
    /// A real server came up.
    RealUp {
        /// The real server.
        real: RealKey,
    },
    /// A real server went down (or, with `omega`, was removed while up).
    RealDown {
        /// The real server.
        real: RealKey,
    },
    /// A dynamic MISC_CHECK changed the weight of an up real server.
    WeightChanged {
        /// The real server.
        real: RealKey,
        /// Its new weight.
        weight: u32,
    },
    /// A service lost its quorum (or, with `omega`, was removed with it).
    QuorumLost {
        /// The service.
        service: ServiceKey,
    },
    /// A service regained its quorum.
    QuorumRegained {
        /// The service.
        service: ServiceKey,
    },
}

/// An event and the command configured for it (run with `sh -c`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Transition {
    /// What happened.
    pub event: HealthEvent,
    /// `notify_up`, `notify_down`, `quorum_up` or `quorum_down`, when set.
    pub command: Option<String>,
}

/// A service's quorum state.
#[derive(Clone, Debug, PartialEq, Eq)]
struct QuorumStatus {
    up: bool,
    /// `quorum_down` to run if the service is removed with quorum and has `omega`.
    on_remove: Option<String>,
}

/// Up/down and dynamic weight of every checked real server, and the quorum
/// state of every managed service.
#[derive(Clone, Debug, Default)]
pub struct HealthState {
    reals: HashMap<RealKey, RealStatus>,
    quorum: HashMap<ServiceKey, QuorumStatus>,
}

/// True when health checking manages `service`: it has a `health` object or a
/// real server with checks.
pub fn managed(service: &ServiceConfig) -> bool {
    service.health.is_some() || service.reals.iter().any(|r| !real_health(r).checks.is_empty())
}

/// The service's health settings, or the defaults when it has none.
pub fn service_health(service: &ServiceConfig) -> ServiceHealth {
    service.health.clone().unwrap_or_default()
}

/// The next quorum state (Keepalived's `update_quorum_state`, with one guard).
///
/// * Held (`up`): lost when `sum == 0` or `sum < quorum − hysteresis`.
/// * Lost: regained when `sum ≥ quorum + hysteresis` and `sum > 0` (the
///   `sum > 0` guard keeps `quorum 0` from flapping).
/// * Otherwise unchanged: between the two thresholds the state holds.
pub fn next_quorum(up: bool, sum: u64, quorum: u32, hysteresis: u32) -> bool {
    if up {
        !(sum == 0 || sum < u64::from(quorum.saturating_sub(hysteresis)))
    } else {
        sum > 0 && sum >= u64::from(quorum) + u64::from(hysteresis)
    }
}

/// The sorry server as a real server: weight 1, its port or the service's,
/// its forwarding method or the service's.
pub fn sorry_real(sorry: &SorryServer) -> RealConfig {
    RealConfig {
        address: sorry.address,
        port: sorry.port,
        weight: 1,
        forward: sorry.forward,
        upper_threshold: 0,
        lower_threshold: 0,
        health: Default::default(),
    }
}

fn find<'a>(config: &'a Config, key: &RealKey) -> Option<(&'a ServiceConfig, &'a RealConfig)> {
    let service = config.services.iter().find(|s| s.key() == key.service)?;
    let real = service.reals.iter().find(|r| RealKey::of(service, r) == *key)?;
    Some((service, real))
}

impl HealthState {
    /// An empty state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Aligns the state with the operator's `config`: checked reals not yet
    /// known start up (down with the service's `alpha`), reals no longer
    /// configured are forgotten (running their `notify_down` if they were up
    /// and their service had `omega`), and every managed service's quorum is
    /// re-evaluated. A service seen for the first time starts with its quorum
    /// held, so a service that starts below it produces [`HealthEvent::QuorumLost`]
    /// (as Keepalived runs `quorum_down` at start).
    pub fn sync(&mut self, config: &Config, now: SystemTime) -> Vec<Transition> {
        self.sync_services(&config.services, now)
    }

    fn sync_services(&mut self, services: &[ServiceConfig], now: SystemTime) -> Vec<Transition> {
        let mut out = Vec::new();
        let mut present = HashSet::new();
        for service in services {
            let health = service_health(service);
            for real in &service.reals {
                let rh = real_health(real);
                if rh.checks.is_empty() {
                    continue;
                }
                let key = RealKey::of(service, real);
                present.insert(key);
                let status = self.reals.entry(key).or_insert_with(|| RealStatus {
                    up: !health.alpha,
                    dynamic_weight: None,
                    last_error: None,
                    last_check: None,
                    last_duration: None,
                    consecutive_failures: 0,
                    last_change: now,
                    rounds: 0,
                    on_remove: None,
                });
                status.on_remove = if health.omega { rh.notify_down.clone() } else { None };
            }
        }
        let mut removed: Vec<(RealKey, RealStatus)> =
            self.reals.iter().filter(|(k, _)| !present.contains(*k)).map(|(k, s)| (*k, s.clone())).collect();
        removed.sort_by_key(|(k, _)| k.sort_key());
        for (key, status) in removed {
            self.reals.remove(&key);
            if status.up && status.on_remove.is_some() {
                out.push(Transition { event: HealthEvent::RealDown { real: key }, command: status.on_remove });
            }
        }
        let managed_keys: HashSet<ServiceKey> = services.iter().filter(|s| managed(s)).map(|s| s.key()).collect();
        let mut gone: Vec<(ServiceKey, QuorumStatus)> =
            self.quorum.iter().filter(|(k, _)| !managed_keys.contains(*k)).map(|(k, q)| (*k, q.clone())).collect();
        gone.sort_by_key(|(k, _)| (k.protocol.to_string(), k.vip, k.port));
        for (key, q) in gone {
            self.quorum.remove(&key);
            if q.up && q.on_remove.is_some() {
                out.push(Transition { event: HealthEvent::QuorumLost { service: key }, command: q.on_remove });
            }
        }
        for service in services.iter().filter(|s| managed(s)) {
            out.extend(self.update_quorum(service));
        }
        out
    }

    /// Forgets a real server's state (its checks changed: it starts afresh at
    /// the next [`sync`](Self::sync)). Runs no notifier.
    pub fn forget(&mut self, key: &RealKey) {
        self.reals.remove(key);
    }

    /// Forgets everything, returning the `omega` transitions: `notify_down` of
    /// every up real and `quorum_down` of every service holding its quorum,
    /// where the service has `omega` (Keepalived at shutdown).
    pub fn clear(&mut self) -> Vec<Transition> {
        self.sync_services(&[], SystemTime::UNIX_EPOCH)
    }

    /// Records a round of `key`'s checks. A real not known (not synced, or
    /// removed meanwhile) is ignored. Returns the transitions: the real's
    /// up/down (with `notify_up`/`notify_down`), a dynamic weight change, and
    /// its service's quorum change (with `quorum_up`/`quorum_down`).
    pub fn record(&mut self, key: &RealKey, result: &RoundResult, config: &Config, now: SystemTime) -> Vec<Transition> {
        let mut out = Vec::new();
        let found = find(config, key);
        let Some(status) = self.reals.get_mut(key) else { return out };
        status.rounds += 1;
        status.last_check = Some(now);
        status.last_duration = Some(result.duration);
        status.consecutive_failures = if result.up { 0 } else { status.consecutive_failures + 1 };
        status.last_error = result.error.clone();
        let configured = found.map(|(_, r)| r.weight);
        if result.up {
            let old_weight = status.dynamic_weight.or(configured);
            status.dynamic_weight = match result.weight {
                WeightChange::Keep => status.dynamic_weight,
                WeightChange::Reset => None,
                WeightChange::Set(w) => Some(w),
            };
            let new_weight = status.dynamic_weight.or(configured);
            if status.up && new_weight != old_weight {
                if let Some(weight) = new_weight {
                    out.push(Transition { event: HealthEvent::WeightChanged { real: *key, weight }, command: None });
                }
            }
        }
        if result.up != status.up {
            status.up = result.up;
            status.last_change = now;
            let health = found.map(|(_, r)| real_health(r));
            out.push(if result.up {
                Transition { event: HealthEvent::RealUp { real: *key }, command: health.and_then(|h| h.notify_up.clone()) }
            } else {
                Transition { event: HealthEvent::RealDown { real: *key }, command: health.and_then(|h| h.notify_down.clone()) }
            });
        }
        if let Some((service, _)) = found {
            out.extend(self.update_quorum(service));
        }
        out
    }

    /// A checked real server's status.
    pub fn real(&self, key: &RealKey) -> Option<&RealStatus> {
        self.reals.get(key)
    }

    /// Every checked real server, sorted by service, address and port.
    pub fn reals(&self) -> Vec<(RealKey, &RealStatus)> {
        let mut all: Vec<(RealKey, &RealStatus)> = self.reals.iter().map(|(k, s)| (*k, s)).collect();
        all.sort_by_key(|(k, _)| k.sort_key());
        all
    }

    /// Whether `service` holds its quorum (None: not evaluated yet).
    pub fn quorum_up(&self, service: &ServiceKey) -> Option<bool> {
        self.quorum.get(service).map(|q| q.up)
    }

    /// Whether a real of `service` is up and its weight now; an unknown
    /// checked real is taken in its initial state (down with `alpha`).
    fn real_now(&self, service: &ServiceConfig, real: &RealConfig, alpha: bool) -> (bool, u32) {
        if real_health(real).checks.is_empty() {
            return (true, real.weight);
        }
        match self.reals.get(&RealKey::of(service, real)) {
            Some(s) => (s.up, s.dynamic_weight.unwrap_or(real.weight)),
            None => (!alpha, real.weight),
        }
    }

    /// The sum of the weights of `service`'s up real servers (reals without
    /// checks count as up).
    pub fn weight_sum(&self, service: &ServiceConfig) -> u64 {
        let alpha = service.health.as_ref().is_some_and(|h| h.alpha);
        service.reals.iter().map(|r| self.real_now(service, r, alpha)).filter(|(up, _)| *up).map(|(_, w)| u64::from(w)).sum()
    }

    /// Whether the quorum is held now: the stored state, or for a service not
    /// evaluated yet, [`next_quorum`] from "held".
    fn quorum_now(&self, service: &ServiceConfig, health: &ServiceHealth) -> bool {
        match self.quorum.get(&service.key()) {
            Some(q) => q.up,
            None => next_quorum(true, self.weight_sum(service), health.quorum, health.hysteresis),
        }
    }

    fn update_quorum(&mut self, service: &ServiceConfig) -> Option<Transition> {
        let health = service_health(service);
        let sum = self.weight_sum(service);
        let on_remove = if health.omega { health.quorum_down.clone() } else { None };
        let entry = self.quorum.entry(service.key()).or_insert(QuorumStatus { up: true, on_remove: None });
        entry.on_remove = on_remove;
        let next = next_quorum(entry.up, sum, health.quorum, health.hysteresis);
        if next == entry.up {
            return None;
        }
        entry.up = next;
        Some(if next {
            Transition { event: HealthEvent::QuorumRegained { service: service.key() }, command: health.quorum_up }
        } else {
            Transition { event: HealthEvent::QuorumLost { service: service.key() }, command: health.quorum_down }
        })
    }

    /// The config the dataplane must run, from the operator's `config`:
    ///
    /// * services not [`managed`] and reals without checks are unchanged;
    /// * a down real is removed, or kept with weight 0 when `inhibit_on_failure`;
    /// * an up real gets its dynamic weight, if a dynamic MISC_CHECK set one;
    /// * while a service's quorum is lost and it has a `sorry_server`, its reals
    ///   are replaced by the sorry server alone ([`sorry_real`]).
    ///
    /// Everything else (ports, routes, other fields of services) is copied.
    pub fn effective(&self, config: &Config) -> Config {
        let mut out = config.clone();
        for service in &mut out.services {
            if !managed(service) {
                continue;
            }
            let health = service_health(service);
            if !self.quorum_now(service, &health) {
                if let Some(sorry) = &health.sorry_server {
                    service.reals = vec![sorry_real(sorry)];
                    continue;
                }
            }
            let snapshot = service.clone();
            service.reals = snapshot
                .reals
                .iter()
                .filter_map(|real| {
                    let (up, weight) = self.real_now(&snapshot, real, health.alpha);
                    if up {
                        Some(RealConfig { weight, ..real.clone() })
                    } else if real_health(real).inhibit_on_failure {
                        Some(RealConfig { weight: 0, ..real.clone() })
                    } else {
                        None
                    }
                })
                .collect();
        }
        out
    }

    /// A report of every checked real server and managed service (for
    /// `GET /api/v1/health`), against the operator's `config`.
    pub fn report(&self, config: &Config) -> HealthReport {
        let mut reals = Vec::new();
        let mut services = Vec::new();
        for service in config.services.iter().filter(|s| managed(s)) {
            let health = service_health(service);
            let quorum_up = self.quorum_now(service, &health);
            services.push(ServiceReport {
                service: service.key(),
                quorum: health.quorum,
                hysteresis: health.hysteresis,
                weight_sum: self.weight_sum(service),
                quorum_state: if quorum_up { "up" } else { "lost" },
                sorry_server_active: !quorum_up && health.sorry_server.is_some(),
            });
            for real in &service.reals {
                let rh = real_health(real);
                if rh.checks.is_empty() {
                    continue;
                }
                let key = RealKey::of(service, real);
                let status = self.reals.get(&key);
                let (up, weight) = self.real_now(service, real, health.alpha);
                reals.push(RealReport {
                    service: key.service,
                    address: key.address,
                    port: key.port,
                    state: if up { "up" } else { "down" },
                    weight: if up { weight } else { 0 },
                    configured_weight: real.weight,
                    dynamic_weight: status.and_then(|s| s.dynamic_weight),
                    in_pool: (quorum_up || health.sorry_server.is_none()) && (up || rh.inhibit_on_failure),
                    checks: rh.checks.iter().map(|c| kind_name(&c.kind)).collect(),
                    last_result: status.and_then(|s| s.last_check.map(|_| if s.last_error.is_none() { "success" } else { "failure" })),
                    last_error: status.and_then(|s| s.last_error.clone()),
                    last_check: status.and_then(|s| s.last_check).map(unix_seconds),
                    last_duration: status.and_then(|s| s.last_duration).map(|d| d.as_secs_f64()),
                    consecutive_failures: status.map_or(0, |s| s.consecutive_failures),
                    last_change: status.map(|s| unix_seconds(s.last_change)),
                    rounds: status.map_or(0, |s| s.rounds),
                });
            }
        }
        HealthReport { reals, services }
    }
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// Health of every checked real server and managed service.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HealthReport {
    /// Checked real servers, by service, address and port.
    pub reals: Vec<RealReport>,
    /// Managed services, in config order.
    pub services: Vec<ServiceReport>,
}

/// One checked real server in a [`HealthReport`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RealReport {
    /// Its service.
    pub service: ServiceKey,
    /// Its address.
    pub address: IpAddr,
    /// Its port.
    pub port: u16,
    /// `"up"` or `"down"`.
    pub state: &'static str,
    /// The weight health checking gives it (0 when down).
    pub weight: u32,
    /// The operator's weight.
    pub configured_weight: u32,
    /// The weight set by a dynamic MISC_CHECK, if any.
    pub dynamic_weight: Option<u32>,
    /// False while its service runs on the sorry server.
    pub in_pool: bool,
    /// Its checkers (`TCP_CHECK`, `HTTP_GET`, ...).
    pub checks: Vec<&'static str>,
    /// `"success"` or `"failure"` of the last round (None before the first).
    pub last_result: Option<&'static str>,
    /// The failures of the last round.
    pub last_error: Option<String>,
    /// End of the last round, Unix seconds.
    pub last_check: Option<f64>,
    /// How long the last round took, seconds.
    pub last_duration: Option<f64>,
    /// Failed rounds in a row.
    pub consecutive_failures: u64,
    /// Last state change, Unix seconds.
    pub last_change: Option<f64>,
    /// Rounds run.
    pub rounds: u64,
}

/// One managed service in a [`HealthReport`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ServiceReport {
    /// The service.
    pub service: ServiceKey,
    /// Its quorum.
    pub quorum: u32,
    /// Its hysteresis.
    pub hysteresis: u32,
    /// The weight of its up real servers.
    pub weight_sum: u64,
    /// `"up"` or `"lost"`.
    pub quorum_state: &'static str,
    /// Traffic goes to the sorry server.
    pub sorry_server_active: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ha::{CheckKind, HealthCheck};
    use std::net::Ipv4Addr;

    fn tcp_check() -> HealthCheck {
        HealthCheck {
            kind: CheckKind::TcpCheck,
            connect_timeout: 1.0,
            retry: 1,
            delay_before_retry: 1.0,
            connect_ip: None,
            connect_port: None,
            bind_ip: None,
        }
    }

    /// Service 0 (managed): reals .11 (weight 3, checked), .12 (weight 2,
    /// checked), .13 (weight 1, no checks); quorum 4, hysteresis 1 (lost below
    /// 3, regained at 5), sorry server 10.1.0.99:8080. Service 1: unmanaged.
    fn config() -> Config {
        let mut c = Config::from_json(
            r#"{"ports": [{"name": "p", "device": "d", "addresses": ["10.1.0.1/24"]}],
                "services": [
                  {"protocol": "tcp", "vip": "10.0.0.100", "port": 80, "forward": "nat",
                   "reals": [{"address": "10.1.0.11", "weight": 3}, {"address": "10.1.0.12", "weight": 2},
                             {"address": "10.1.0.13", "weight": 1}]},
                  {"protocol": "tcp", "vip": "10.0.0.101", "port": 80, "reals": [{"address": "10.1.0.21"}]}]}"#,
        )
        .expect("config");
        c.services[0].health = Some(ServiceHealth {
            delay_loop: 1.0,
            quorum: 4,
            hysteresis: 1,
            sorry_server: Some(SorryServer { address: Ipv4Addr::new(10, 1, 0, 99).into(), port: Some(8080), forward: None }),
            quorum_up: Some("echo qup".into()),
            quorum_down: Some("echo qdown".into()),
            ..ServiceHealth::default()
        });
        for (i, real) in c.services[0].reals.iter_mut().take(2).enumerate() {
            real.health.checks = vec![tcp_check()];
            real.health.notify_up = Some(format!("echo up{i}"));
            real.health.notify_down = Some(format!("echo down{i}"));
        }
        c
    }

    fn key(c: &Config, real: usize) -> RealKey {
        RealKey::of(&c.services[0], &c.services[0].reals[real])
    }

    fn t(s: u64) -> SystemTime {
        UNIX_EPOCH + std::time::Duration::from_secs(s)
    }

    fn addrs(c: &Config) -> Vec<(IpAddr, Option<u16>, u32)> {
        c.services[0].reals.iter().map(|r| (r.address, r.port, r.weight)).collect()
    }

    fn ip(last: u8) -> IpAddr {
        Ipv4Addr::new(10, 1, 0, last).into()
    }

    fn cmds(ts: &[Transition]) -> Vec<Option<&str>> {
        ts.iter().map(|t| t.command.as_deref()).collect()
    }

    #[test]
    fn quorum_rule() {
        // (held, sum, quorum, hysteresis) -> held
        assert!(!next_quorum(true, 0, 0, 0));
        assert!(!next_quorum(false, 0, 0, 0));
        assert!(next_quorum(false, 1, 0, 0));
        assert!(!next_quorum(true, 2, 4, 1));
        assert!(next_quorum(true, 3, 4, 1));
        assert!(!next_quorum(false, 4, 4, 1));
        assert!(next_quorum(false, 5, 4, 1));
        assert!(next_quorum(true, 1, 1, 5));
        assert!(!next_quorum(true, 0, 1, 5));
        assert!(!next_quorum(false, 5, 1, 5));
        assert!(next_quorum(false, 6, 1, 5));
        assert!(!next_quorum(true, 0, 1, 0));
        assert!(next_quorum(true, 1, 1, 0));
    }

    #[test]
    fn all_up_is_the_operator_config() {
        let c = config();
        let mut s = HealthState::new();
        assert!(s.sync(&c, t(0)).is_empty());
        assert_eq!(s.effective(&c), c);
        assert_eq!(s.weight_sum(&c.services[0]), 6);
        assert_eq!(s.quorum_up(&c.services[0].key()), Some(true));
        assert_eq!(s.quorum_up(&c.services[1].key()), None);
        assert_eq!(s.real(&key(&c, 0)).map(|r| r.up), Some(true));
        assert!(s.real(&key(&c, 2)).is_none(), "reals without checks are not tracked");
    }

    #[test]
    fn down_real_is_removed_or_inhibited() {
        let mut c = config();
        let mut s = HealthState::new();
        s.sync(&c, t(0));
        let k = key(&c, 1);
        let ts = s.record(&k, &RoundResult::fail("refused"), &c, t(5));
        assert_eq!(ts, vec![Transition { event: HealthEvent::RealDown { real: k }, command: Some("echo down1".into()) }]);
        // 3 + 1 = 4 is not below 4 - 1: quorum held.
        assert_eq!(s.weight_sum(&c.services[0]), 4);
        assert_eq!(addrs(&s.effective(&c)), vec![(ip(11), None, 3), (ip(13), None, 1)]);
        assert_eq!(s.effective(&c).services[1], c.services[1]);
        let status = s.real(&k).expect("tracked");
        assert_eq!((status.up, status.last_change, status.last_check, status.rounds), (false, t(5), Some(t(5)), 1));
        assert_eq!(status.last_error.as_deref(), Some("refused"));
        // The same result again changes nothing.
        assert!(s.record(&k, &RoundResult::fail("refused"), &c, t(6)).is_empty());
        assert_eq!(s.real(&k).map(|r| r.last_change), Some(t(5)));
        // inhibit_on_failure: kept with weight 0.
        c.services[0].reals[1].health.inhibit_on_failure = true;
        assert_eq!(addrs(&s.effective(&c)), vec![(ip(11), None, 3), (ip(12), None, 0), (ip(13), None, 1)]);
        // Back up on the first good round.
        let ts = s.record(&k, &RoundResult::pass(), &c, t(7));
        assert_eq!(cmds(&ts), vec![Some("echo up1")]);
        assert_eq!(s.effective(&c), c);
    }

    #[test]
    fn quorum_loss_switches_to_the_sorry_server_with_hysteresis() {
        let c = config();
        let mut s = HealthState::new();
        s.sync(&c, t(0));
        let (a, b) = (key(&c, 0), key(&c, 1));
        // sum 6 -> 3 (.12 + .13): 3 is not below 3, held.
        assert_eq!(cmds(&s.record(&a, &RoundResult::fail("x"), &c, t(1))), vec![Some("echo down0")]);
        assert_eq!(addrs(&s.effective(&c)), vec![(ip(12), None, 2), (ip(13), None, 1)]);
        // sum 1: lost -> sorry server only.
        let ts = s.record(&b, &RoundResult::fail("x"), &c, t(2));
        assert_eq!(cmds(&ts), vec![Some("echo down1"), Some("echo qdown")]);
        assert_eq!(ts[1].event, HealthEvent::QuorumLost { service: c.services[0].key() });
        assert_eq!(s.quorum_up(&c.services[0].key()), Some(false));
        let eff = s.effective(&c);
        assert_eq!(addrs(&eff), vec![(ip(99), Some(8080), 1)]);
        assert_eq!(eff.services[0].reals[0].forward, None, "the service's forwarding method");
        // sum 3: below 4 + 1, still lost (hysteresis holds).
        assert_eq!(cmds(&s.record(&b, &RoundResult::pass(), &c, t(3))), vec![Some("echo up1")]);
        assert_eq!(addrs(&s.effective(&c)), vec![(ip(99), Some(8080), 1)]);
        // sum 6 >= 5: regained.
        let ts = s.record(&a, &RoundResult::pass(), &c, t(4));
        assert_eq!(cmds(&ts), vec![Some("echo up0"), Some("echo qup")]);
        assert_eq!(s.effective(&c), c);
        // sum 4: held (not below 3).
        assert_eq!(cmds(&s.record(&b, &RoundResult::fail("x"), &c, t(5))), vec![Some("echo down1")]);
        assert_eq!(s.quorum_up(&c.services[0].key()), Some(true));
    }

    #[test]
    fn quorum_loss_without_sorry_server_keeps_the_up_reals() {
        let mut c = config();
        if let Some(h) = c.services[0].health.as_mut() {
            h.sorry_server = None;
        }
        let mut s = HealthState::new();
        s.sync(&c, t(0));
        s.record(&key(&c, 0), &RoundResult::fail("x"), &c, t(1));
        s.record(&key(&c, 1), &RoundResult::fail("x"), &c, t(1));
        assert_eq!(s.quorum_up(&c.services[0].key()), Some(false));
        assert_eq!(addrs(&s.effective(&c)), vec![(ip(13), None, 1)]);
    }

    #[test]
    fn alpha_starts_down() {
        let mut c = config();
        if let Some(h) = c.services[0].health.as_mut() {
            h.alpha = true;
        }
        // Before any sync, effective already applies the initial state.
        let s = HealthState::new();
        assert_eq!(addrs(&s.effective(&c)), vec![(ip(99), Some(8080), 1)]);
        let mut s = HealthState::new();
        // Only .13 (1) is up: quorum lost at once.
        let ts = s.sync(&c, t(0));
        assert_eq!(cmds(&ts), vec![Some("echo qdown")]);
        assert_eq!(addrs(&s.effective(&c)), vec![(ip(99), Some(8080), 1)]);
        assert_eq!(cmds(&s.record(&key(&c, 0), &RoundResult::pass(), &c, t(1))), vec![Some("echo up0")]);
        assert_eq!(s.weight_sum(&c.services[0]), 4);
        assert_eq!(addrs(&s.effective(&c)), vec![(ip(99), Some(8080), 1)], "4 < 5: still lost");
        let ts = s.record(&key(&c, 1), &RoundResult::pass(), &c, t(2));
        assert_eq!(cmds(&ts), vec![Some("echo up1"), Some("echo qup")]);
        assert_eq!(s.effective(&c), c);
    }

    #[test]
    fn dynamic_weights() {
        let c = config();
        let mut s = HealthState::new();
        s.sync(&c, t(0));
        let a = key(&c, 0);
        let set = |w| RoundResult { weight: WeightChange::Set(w), ..RoundResult::pass() };
        let reset = RoundResult { weight: WeightChange::Reset, ..RoundResult::pass() };
        let ts = s.record(&a, &set(7), &c, t(1));
        assert_eq!(ts, vec![Transition { event: HealthEvent::WeightChanged { real: a, weight: 7 }, command: None }]);
        assert_eq!(addrs(&s.effective(&c))[0], (ip(11), None, 7));
        assert_eq!(s.weight_sum(&c.services[0]), 10);
        assert!(s.record(&a, &set(7), &c, t(2)).is_empty());
        assert!(s.record(&a, &RoundResult::pass(), &c, t(3)).is_empty(), "Keep keeps 7");
        assert_eq!(addrs(&s.effective(&c))[0], (ip(11), None, 7));
        let ts = s.record(&a, &reset, &c, t(4));
        assert_eq!(ts[0].event, HealthEvent::WeightChanged { real: a, weight: 3 });
        // Down, then up with a new weight: one RealUp, the weight applies.
        s.record(&a, &RoundResult::fail("exit 1"), &c, t(5));
        let ts = s.record(&a, &set(0), &c, t(6));
        assert_eq!(cmds(&ts), vec![Some("echo up0")]);
        assert_eq!(addrs(&s.effective(&c))[0], (ip(11), None, 0));
        // Weight 0 (sum 3) is still not below 3: quorum held.
        assert_eq!(s.quorum_up(&c.services[0].key()), Some(true));
    }

    #[test]
    fn removal_runs_omega_notifiers() {
        let mut c = config();
        let mut s = HealthState::new();
        s.sync(&c, t(0));
        // Without omega, removing a real runs nothing.
        let mut fewer = c.clone();
        fewer.services[0].reals.remove(0);
        assert!(s.sync(&fewer, t(1)).is_empty());
        assert!(s.real(&key(&c, 0)).is_none());
        // With omega: notify_down of the removed up real, quorum_down of the removed service.
        if let Some(h) = c.services[0].health.as_mut() {
            h.omega = true;
        }
        s.sync(&c, t(2));
        let mut fewer = c.clone();
        fewer.services[0].reals.remove(0);
        assert_eq!(cmds(&s.sync(&fewer, t(3))), vec![Some("echo down0")]);
        s.sync(&c, t(4));
        s.record(&key(&c, 1), &RoundResult::fail("x"), &c, t(5));
        assert_eq!(cmds(&s.clear()), vec![Some("echo down0"), Some("echo qdown")]);
        assert!(s.reals().is_empty());
    }

    #[test]
    fn unknown_reals_are_ignored() {
        let c = config();
        let mut s = HealthState::new();
        s.sync(&c, t(0));
        let stranger = RealKey { address: ip(77), ..key(&c, 0) };
        assert!(s.record(&stranger, &RoundResult::fail("x"), &c, t(1)).is_empty());
        assert!(s.real(&stranger).is_none());
    }

    #[test]
    fn checks_without_service_health_use_the_defaults() {
        let mut c = config();
        c.services[0].health = None;
        let mut s = HealthState::new();
        s.sync(&c, t(0));
        // Quorum 1 (default), no sorry server.
        s.record(&key(&c, 0), &RoundResult::fail("x"), &c, t(1));
        assert_eq!(addrs(&s.effective(&c)), vec![(ip(12), None, 2), (ip(13), None, 1)]);
    }

    #[test]
    fn report_lists_checked_reals_and_services() {
        let c = config();
        let mut s = HealthState::new();
        s.sync(&c, t(0));
        s.record(&key(&c, 0), &RoundResult::fail("x"), &c, t(9));
        let took = std::time::Duration::from_millis(250);
        s.record(&key(&c, 0), &RoundResult::fail("connect: refused").took(took), &c, t(10));
        s.record(&key(&c, 1), &RoundResult::pass(), &c, t(11));
        let r = s.report(&c);
        assert_eq!((r.reals[0].consecutive_failures, r.reals[0].last_duration), (2, Some(0.25)));
        assert_eq!((r.reals[1].consecutive_failures, r.reals[1].last_duration), (0, Some(0.0)));
        assert_eq!(r.reals.len(), 2);
        assert_eq!((r.reals[0].address, r.reals[0].state, r.reals[0].weight), (ip(11), "down", 0));
        assert_eq!(r.reals[0].last_result, Some("failure"));
        assert_eq!(r.reals[0].last_error.as_deref(), Some("connect: refused"));
        assert_eq!(r.reals[0].last_change, Some(9.0));
        assert!(!r.reals[0].in_pool);
        assert_eq!((r.reals[1].state, r.reals[1].weight, r.reals[1].last_result), ("up", 2, Some("success")));
        assert_eq!(r.reals[1].checks, vec!["TCP_CHECK"]);
        assert_eq!(r.services.len(), 1);
        assert_eq!((r.services[0].weight_sum, r.services[0].quorum_state), (3, "up"));
        let json = serde_json::to_value(&r).expect("json");
        assert_eq!(json["reals"][0]["service"]["vip"], "10.0.0.100");
        assert_eq!(json["services"][0]["sorry_server_active"], false);
    }
}
