//! The appliance's runtime high-availability state, layered over the
//! operator's config when snapshots are built ([`crate::api::Overlay`]):
//!
//! * **health checks** ([`crate::health`]): failed real servers leave their
//!   service (or go to weight 0 with `inhibit_on_failure`), a lost quorum
//!   switches to the sorry server;
//! * **VRRP** ([`crate::vrrp`]): the virtual addresses of an instance are served
//!   only while it is MASTER — a backup neither answers ARP for them nor
//!   forwards their traffic ([`Snapshot::standby`]); VRRP addresses that are not
//!   service addresses become the appliance's own addresses while master;
//! * **connection sync** ([`crate::sync`]): workers stream connection updates
//!   only while the sync instance is MASTER ([`Snapshot::sync_send`]); the
//!   daemon's counters are shown under `"sync"` in `GET /api/v1/ha`.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::Mutex;
use rvs_dataplane::snapshot::{InterfaceAddr, InterfaceAddr6, Snapshot};
use serde_json::json;

use crate::api::Overlay;
use crate::config::Config;
use crate::events::{EventKind, EventLog, Severity};
use crate::health::{HealthEngine, HealthReport, HealthState};
use crate::vrrp::{InstanceStatus, VrrpState};

/// A VRRP instance's state, its virtual addresses and its port index.
type VrrpView = (VrrpState, Vec<IpAddr>, Option<u16>);

/// Health, VRRP and sync state of a running rvsd.
pub struct HaOverlay {
    health: Mutex<Option<Arc<Mutex<HealthState>>>>,
    engine: Mutex<Option<Arc<Mutex<HealthEngine>>>>,
    /// VRRP instance → (state, its virtual addresses, its port index).
    vrrp: Mutex<HashMap<String, VrrpView>>,
    /// The instance connection sync follows.
    sync_instance: Option<String>,
    /// The VRRP engine's reports (priority, counters), once it runs.
    vrrp_status: Mutex<Option<Arc<Mutex<Vec<InstanceStatus>>>>>,
    /// The running sync daemon's counters.
    sync_counters: Mutex<Option<Arc<crate::sync::SyncCounters>>>,
    /// Per VRRP instance: transitions into each state so far.
    transitions: Mutex<HashMap<String, BTreeMap<&'static str, u64>>>,
    /// Per VRRP instance, from the config: `(virtual_router_id, interface, unicast_peer)`.
    instance_info: HashMap<String, (u8, String, Vec<std::net::IpAddr>)>,
    /// The API's event ring, once attached.
    events: Mutex<Option<Arc<EventLog>>>,
}

impl HaOverlay {
    /// The overlay for `config` before any engine runs: every VRRP instance
    /// starts non-master (its addresses in standby), no health results yet.
    pub fn new(config: &Config) -> Arc<Self> {
        let vrrp = config
            .vrrp
            .instances
            .iter()
            .map(|i| {
                let port = config.ports.iter().position(|p| p.name == i.interface || p.tap.as_deref() == Some(&i.interface));
                (i.name.clone(), (VrrpState::Initialize, i.virtual_ipaddress.clone(), port.map(|p| p as u16)))
            })
            .collect();
        Arc::new(HaOverlay {
            health: Mutex::new(None),
            engine: Mutex::new(None),
            vrrp: Mutex::new(vrrp),
            sync_instance: config.sync.as_ref().map(|s| s.instance.clone()),
            vrrp_status: Mutex::new(None),
            sync_counters: Mutex::new(None),
            transitions: Mutex::new(HashMap::new()),
            instance_info: config
                .vrrp
                .instances
                .iter()
                .map(|i| (i.name.clone(), (i.virtual_router_id, i.interface.clone(), i.unicast_peer.clone())))
                .collect(),
            events: Mutex::new(None),
        })
    }

    /// Attaches the running health engine.
    pub fn set_health(&self, engine: Arc<Mutex<HealthEngine>>) {
        let state = engine.lock().state();
        if let Some(events) = self.events.lock().as_ref() {
            engine.lock().set_events(Arc::clone(events));
        }
        *self.health.lock() = Some(state);
        *self.engine.lock() = Some(engine);
    }

    /// Attaches the running VRRP engine's reports ([`crate::vrrp::VrrpEngine::status_handle`]).
    pub fn set_vrrp_status(&self, status: Arc<Mutex<Vec<InstanceStatus>>>) {
        *self.vrrp_status.lock() = Some(status);
    }

    /// Records a VRRP instance's new state. Returns true when the sync role
    /// changed to `Some(master)`.
    /// A change of state is counted (`rvs_vrrp_transitions_total`) and
    /// recorded in the event ring.
    pub fn set_vrrp(&self, instance: &str, state: VrrpState, vips: Vec<IpAddr>) -> Option<bool> {
        let mut vrrp = self.vrrp.lock();
        let before = self.sync_master_locked(&vrrp);
        let previous = vrrp.get(instance).map(|(s, _, _)| *s);
        if previous != Some(state) {
            *self.transitions.lock().entry(instance.to_owned()).or_default().entry(state.as_str()).or_default() += 1;
            if let Some(events) = self.events.lock().as_ref() {
                let from = previous.map_or("none", VrrpState::as_str);
                let severity =
                    if state == VrrpState::Fault || previous == Some(VrrpState::Master) { Severity::Warning } else { Severity::Info };
                events.record(
                    EventKind::Vrrp,
                    severity,
                    format!("VRRP instance {instance}: {from} -> {state}"),
                    json!({ "instance": instance, "from": from, "to": state.as_str() }),
                );
            }
        }
        let port = vrrp.get(instance).and_then(|(_, _, p)| *p);
        vrrp.insert(instance.to_owned(), (state, vips, port));
        let after = self.sync_master_locked(&vrrp);
        (before != after).then_some(after)
    }

    /// Attaches the running sync daemon's counters (shown under `"sync"`).
    pub fn set_sync_counters(&self, counters: Arc<crate::sync::SyncCounters>) {
        *self.sync_counters.lock() = Some(counters);
    }

    /// The virtual addresses this node does not serve now (VRRP instances
    /// holding them are not master here, none that is master holds them).
    pub fn standby_vips(&self) -> std::collections::HashSet<std::net::IpAddr> {
        let vrrp = self.vrrp.lock();
        let mut out = std::collections::HashSet::new();
        for (state, vips, _) in vrrp.values() {
            if *state != VrrpState::Master {
                for vip in vips {
                    if !vrrp.values().any(|(s, v, _)| *s == VrrpState::Master && v.contains(vip)) {
                        out.insert(*vip);
                    }
                }
            }
        }
        out
    }

    /// True while this node is the connection-sync master.
    pub fn sync_master(&self) -> bool {
        self.sync_master_locked(&self.vrrp.lock())
    }

    fn sync_master_locked(&self, vrrp: &HashMap<String, VrrpView>) -> bool {
        self.sync_instance.as_ref().is_some_and(|i| vrrp.get(i).is_some_and(|(s, _, _)| *s == VrrpState::Master))
    }
}

impl Overlay for HaOverlay {
    fn effective(&self, config: &Config) -> Config {
        match self.health.lock().as_ref() {
            Some(state) => state.lock().effective(config),
            None => HealthState::new().effective(config),
        }
    }

    fn adjust(&self, snapshot: &mut Snapshot) {
        let vrrp = self.vrrp.lock();
        for (state, vips, port) in vrrp.values() {
            if *state == VrrpState::Master {
                // Addresses of a master instance that no service uses are the
                // appliance's own while it is master (ARP, ping, kernel).
                for &vip in vips {
                    let used = snapshot
                        .services
                        .iter()
                        .any(|s| s.key.vip == vip || s.local_addrs.iter().any(|&l| vip == l) || s.local_addrs6.iter().any(|&l| vip == l));
                    let Some(port) = *port else { continue };
                    match vip {
                        IpAddr::V4(v4) if !used && !snapshot.is_interface_addr(v4) => {
                            snapshot.addresses.push(InterfaceAddr { port, addr: v4, prefix_len: 32 })
                        }
                        IpAddr::V6(v6) if !used && !snapshot.is_interface_addr6(v6) => {
                            snapshot.addresses6.push(InterfaceAddr6 { port, addr: v6, prefix_len: 128 })
                        }
                        _ => {}
                    }
                }
            }
        }
        snapshot.sync_send = self.sync_master_locked(&vrrp);
        drop(vrrp);
        snapshot.standby.extend(self.standby_vips());
    }

    fn health(&self) -> Option<HealthReport> {
        self.engine.lock().as_ref().map(|e| e.lock().snapshot())
    }

    fn attach_events(&self, events: Arc<EventLog>) {
        if let Some(engine) = self.engine.lock().as_ref() {
            engine.lock().set_events(Arc::clone(&events));
        }
        *self.events.lock() = Some(events);
    }

    fn committed(&self, config: &Config) {
        if let Some(engine) = self.engine.lock().as_ref() {
            engine.lock().reconfigure(config);
        }
    }

    fn status(&self) -> serde_json::Value {
        let reports: Vec<InstanceStatus> = self.vrrp_status.lock().as_ref().map(|s| s.lock().clone()).unwrap_or_default();
        let mut vrrp: Vec<_> = self
            .vrrp
            .lock()
            .iter()
            .map(|(name, (state, vips, _))| {
                let mut v = json!({ "instance": name, "state": state, "virtual_ipaddress": vips });
                if let Some((vrid, interface, peers)) = self.instance_info.get(name) {
                    v["virtual_router_id"] = json!(vrid);
                    v["interface"] = json!(interface);
                    v["unicast_peer"] = json!(peers);
                }
                v["transitions"] = json!(self.transitions.lock().get(name).cloned().unwrap_or_default());
                if let Some(r) = reports.iter().find(|r| r.name == *name) {
                    v["priority"] = json!(r.priority);
                    v["stats"] = json!(r.stats);
                    v["last_advert"] = json!(r.last_advert);
                }
                v
            })
            .collect();
        vrrp.sort_by(|a, b| a["instance"].as_str().cmp(&b["instance"].as_str()));
        let health = self.engine.lock().as_ref().map(|e| serde_json::to_value(e.lock().snapshot()).unwrap_or_default());
        let master = self.sync_master();
        let sync = self.sync_counters.lock().as_ref().map(|c| {
            let mut v = c.to_json();
            v["instance"] = json!(self.sync_instance);
            v["master"] = json!(master);
            v
        });
        json!({ "vrrp": vrrp, "sync_master": master, "sync": sync, "health": health })
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::build::build_snapshot;
    use rvs_dataplane::wire::MacAddr;

    const CONFIG: &str = r#"{
      "ports": [ { "name": "lan0", "device": "net_af_packet0,iface=dp0", "addresses": ["10.0.0.1/24"], "tap": "rvs0" } ],
      "services": [ { "protocol": "tcp", "vip": "10.0.0.100", "port": 80, "reals": [ { "address": "10.0.0.11" } ] } ],
      "vrrp": { "instances": [ { "name": "VI_1", "interface": "lan0", "virtual_router_id": 51,
                                 "virtual_ipaddress": ["10.0.0.100", "10.0.0.254"] } ] },
      "sync": { "instance": "VI_1" }
    }"#;

    fn snap(overlay: &HaOverlay, config: &Config) -> Snapshot {
        let mut s = build_snapshot(&overlay.effective(config), &[MacAddr([2, 0, 0, 0, 0, 1])], 1).expect("valid");
        overlay.adjust(&mut s);
        s.finish()
    }

    #[test]
    fn vips_are_served_only_as_master() {
        let config = Config::from_json(CONFIG).expect("valid");
        let o = HaOverlay::new(&config);
        let backup = snap(&o, &config);
        assert!(backup.is_standby(Ipv4Addr::new(10, 0, 0, 100)));
        assert!(!backup.answers_arp_for(Ipv4Addr::new(10, 0, 0, 100)), "a backup does not answer ARP for the VIP");
        assert!(!backup.answers_arp_for(Ipv4Addr::new(10, 0, 0, 254)));
        assert!(!backup.sync_send);

        assert_eq!(
            o.set_vrrp("VI_1", VrrpState::Master, vec![Ipv4Addr::new(10, 0, 0, 100).into(), Ipv4Addr::new(10, 0, 0, 254).into()]),
            Some(true)
        );
        let master = snap(&o, &config);
        assert!(!master.is_standby(Ipv4Addr::new(10, 0, 0, 100)));
        assert!(master.answers_arp_for(Ipv4Addr::new(10, 0, 0, 100)));
        assert!(master.answers_arp_for(Ipv4Addr::new(10, 0, 0, 254)), "a router VIP is the master's own address");
        assert!(master.sync_send);

        assert_eq!(o.set_vrrp("VI_1", VrrpState::Backup, vec![Ipv4Addr::new(10, 0, 0, 100).into()]), Some(false));
        assert!(snap(&o, &config).is_standby(Ipv4Addr::new(10, 0, 0, 100)));
    }

    #[test]
    fn transitions_are_counted_and_recorded() {
        let config = Config::from_json(CONFIG).expect("valid");
        let o = HaOverlay::new(&config);
        let events = Arc::new(EventLog::default());
        o.attach_events(Arc::clone(&events));
        let vips: Vec<IpAddr> = vec![Ipv4Addr::new(10, 0, 0, 100).into()];
        o.set_vrrp("VI_1", VrrpState::Backup, vips.clone());
        o.set_vrrp("VI_1", VrrpState::Master, vips.clone());
        o.set_vrrp("VI_1", VrrpState::Master, vips.clone());
        o.set_vrrp("VI_1", VrrpState::Backup, vips);
        let status = o.status();
        let vi = &status["vrrp"][0];
        assert_eq!(vi["transitions"], json!({ "BACKUP": 2, "MASTER": 1 }), "a repeated state is no transition");
        assert_eq!(vi["virtual_router_id"], 51);
        assert_eq!(vi["interface"], "lan0");
        let log: Vec<(String, Severity)> = events.after(0, 10).into_iter().map(|e| (e.message, e.severity)).collect();
        assert_eq!(
            log,
            [
                ("VRRP instance VI_1: INIT -> BACKUP".to_string(), Severity::Info),
                ("VRRP instance VI_1: BACKUP -> MASTER".to_string(), Severity::Info),
                ("VRRP instance VI_1: MASTER -> BACKUP".to_string(), Severity::Warning),
            ]
        );
    }

    #[test]
    fn ipv6_vips_follow_the_vrrp_state_like_ipv4_ones() {
        let mut config = crate::config::Config::from_json(crate::config::EXAMPLE).expect("example");
        let vip6: std::net::Ipv6Addr = "2001:db8::100".parse().expect("v6");
        config.services[0].vip = vip6.into();
        for (i, r) in config.services[0].reals.iter_mut().enumerate() {
            r.address = format!("2001:db8:1::{}", i + 11).parse().expect("v6");
        }
        let o = HaOverlay::new(&config);
        let snap = |o: &HaOverlay| {
            let mut s = build_snapshot(&config, &[MacAddr([2, 0, 0, 0, 0, 1])], 1).expect("snapshot");
            o.adjust(&mut s);
            s.finish()
        };
        o.set_vrrp("VI_6", VrrpState::Backup, vec![vip6.into()]);
        let backup = snap(&o);
        assert!(backup.is_standby(vip6) && !backup.is_vip6(vip6), "a backup does not serve the IPv6 VIP");
        o.set_vrrp("VI_6", VrrpState::Master, vec![vip6.into()]);
        let master = snap(&o);
        assert!(!master.is_standby(vip6) && master.is_vip6(vip6));
    }
}
