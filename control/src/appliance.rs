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
use std::net::Ipv4Addr;
use std::sync::Arc;

use parking_lot::Mutex;
use rvs_dataplane::snapshot::{InterfaceAddr, Snapshot};
use serde_json::json;

use crate::api::Overlay;
use crate::config::Config;
use crate::events::{EventKind, EventLog, Severity};
use crate::health::{HealthEngine, HealthReport, HealthState};
use crate::vrrp::{InstanceStatus, VrrpState};

/// A VRRP instance's state, its virtual addresses and its port index.
type VrrpView = (VrrpState, Vec<Ipv4Addr>, Option<u16>);

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
                // IPv6 VIPs reach the dataplane with the IPv6 packet path.
                let vips = i.virtual_ipaddress.iter().filter_map(|a| if let std::net::IpAddr::V4(v4) = a { Some(*v4) } else { None });
                (i.name.clone(), (VrrpState::Initialize, vips.collect(), port.map(|p| p as u16)))
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
    pub fn set_vrrp(&self, instance: &str, state: VrrpState, vips: Vec<Ipv4Addr>) -> Option<bool> {
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
                        out.insert((*vip).into());
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

    fn sync_master_locked(&self, vrrp: &HashMap<String, (VrrpState, Vec<Ipv4Addr>, Option<u16>)>) -> bool {
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
                for vip in vips {
                    let used = snapshot.services.iter().any(|s| s.key.vip == *vip || s.local_addrs.contains(vip));
                    if let (false, Some(port)) = (used || snapshot.is_interface_addr(*vip), port) {
                        snapshot.addresses.push(InterfaceAddr { port: *port, addr: *vip, prefix_len: 32 });
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

        assert_eq!(o.set_vrrp("VI_1", VrrpState::Master, vec![Ipv4Addr::new(10, 0, 0, 100), Ipv4Addr::new(10, 0, 0, 254)]), Some(true));
        let master = snap(&o, &config);
        assert!(!master.is_standby(Ipv4Addr::new(10, 0, 0, 100)));
        assert!(master.answers_arp_for(Ipv4Addr::new(10, 0, 0, 100)));
        assert!(master.answers_arp_for(Ipv4Addr::new(10, 0, 0, 254)), "a router VIP is the master's own address");
        assert!(master.sync_send);

        assert_eq!(o.set_vrrp("VI_1", VrrpState::Backup, vec![Ipv4Addr::new(10, 0, 0, 100)]), Some(false));
        assert!(snap(&o, &config).is_standby(Ipv4Addr::new(10, 0, 0, 100)));
    }

    #[test]
    fn transitions_are_counted_and_recorded() {
        let config = Config::from_json(CONFIG).expect("valid");
        let o = HaOverlay::new(&config);
        let events = Arc::new(EventLog::default());
        o.attach_events(Arc::clone(&events));
        let vips = vec![Ipv4Addr::new(10, 0, 0, 100)];
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
}
