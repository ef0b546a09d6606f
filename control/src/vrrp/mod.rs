//! VRRP v2/v3 as Keepalived runs it, on ordinary Linux interfaces.
//!
//! In rvsd the kernel sees each dataplane port through a TAP interface (the
//! exception path), so the engine works like Keepalived on any interface:
//! raw IP sockets for protocol 112 (multicast 224.0.0.18 or unicast peers,
//! TTL 255 checked on receipt), gratuitous ARP through an AF_PACKET socket.
//! An instance whose `virtual_ipaddress` are IPv6 runs VRRPv3 over IPv6
//! (RFC 5798): adverts from the interface's link-local address (or
//! `unicast_src_ip`) to ff02::12 or the unicast peers, hop limit 255 checked
//! on receipt, and unsolicited neighbour advertisements instead of
//! gratuitous ARP, on the same `garp_*` schedule (as Keepalived does).
//! An instance is one family: [`instance_family`] says which, and refuses
//! mixtures naming the field.
//! The same engine runs in the `rvs-vrrp` test binary on veth pairs.
//!
//! * [`packet`]: advertisement encoding/decoding (v2 and v3, IPv4 and IPv6).
//! * [`state`]: the pure, clock-driven state machine and sync groups.
//! * [`garp`]: gratuitous ARP frames and their schedule.
//! * [`na`]: unsolicited neighbour advertisements (IPv6 VIPs) and the
//!   solicitations for IPv6 unicast peers.
//! * [`io`]: sockets and the engine thread.
//! * [`stats`]: per-instance counters, named as Keepalived's.
//!
//! [`VrrpEngine::start`] validates a [`VrrpConfig`], opens the sockets and
//! runs the engine on a dedicated thread; state changes arrive as
//! [`VrrpEvent`]s, notify scripts run with `sh -c`, track scripts and the
//! link state of tracked interfaces are polled by helper threads. In rvsd the
//! link of an instance's interface is the carrier of the dataplane port (a
//! [`DataplaneLink`]) as well as the TAP's, so a pulled cable is a FAULT.
//! [`VrrpEngine::shutdown`] resigns (priority-0 adverts from masters).

pub mod garp;
pub mod io;
pub mod na;
pub mod packet;
pub mod state;
pub mod stats;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::mpsc::UnboundedSender;

use crate::ha::{VrrpConfig, VrrpInstance};
use garp::LowerPrio;
use io::{Cmd, Runner, Waker};
use packet::{Auth, Version};
pub use state::VrrpState;
use state::{Instance, InstanceParams, Router};
pub use stats::VrrpStats;

/// The carrier of a dataplane port, by the name an instance's `interface` or
/// `track_interface` uses (the port's name or its TAP's); `None` for names
/// that are not dataplane ports (plain kernel interfaces).
pub type DataplaneLink = Arc<dyn Fn(&str) -> Option<bool> + Send + Sync>;

/// What the engine reports of one instance (REST API, metrics).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceStatus {
    /// Instance name.
    pub name: String,
    /// Current state.
    pub state: VrrpState,
    /// Effective priority (configured plus script weights).
    pub priority: u8,
    /// Counters.
    pub stats: VrrpStats,
    /// The last advert accepted from another router (its master, or a
    /// backup claiming with a lower priority), if any.
    pub last_advert: Option<PeerAdvert>,
}

/// An advert heard from another router of an instance's virtual router.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PeerAdvert {
    /// Its source address.
    pub address: IpAddr,
    /// The priority it advertised (0: it resigned).
    pub priority: u8,
    /// When it was heard, Unix seconds.
    pub at: u64,
}

/// An interface whose link going down is a fault of an instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct WatchedLink {
    /// The name as configured (fault reason, dataplane lookup).
    pub(crate) name: String,
    /// The kernel interface it maps to (a port's TAP), if any.
    pub(crate) kernel: String,
}

impl WatchedLink {
    /// Up when the dataplane port (if it is one) has carrier and its TAP (if
    /// it has one) is up; a plain kernel interface by its operational state.
    pub(crate) fn is_up(&self, dataplane: &DataplaneLink) -> bool {
        match dataplane(&self.name) {
            // A port without a TAP: no kernel interface to look at.
            Some(up) if self.kernel == self.name => up,
            Some(up) => up && io::link_up(&self.kernel),
            None => io::link_up(&self.kernel),
        }
    }
}

/// A state change reported by the engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VrrpEvent {
    /// Instance `instance` entered `state`; its VIPs are `virtual_ipaddress`
    /// (to be owned only in [`VrrpState::Master`]).
    State {
        /// Instance name.
        instance: String,
        /// New state ([`VrrpState::Initialize`] after shutdown).
        state: VrrpState,
        /// The instance's virtual addresses (of one family).
        virtual_ipaddress: Vec<IpAddr>,
    },
}

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum VrrpError {
    /// The configuration is invalid (the message names the field).
    #[error("invalid VRRP config: {0}")]
    Config(String),
    /// A kernel interface does not exist or has no address of the
    /// instance's family (IPv4, or an IPv6 link-local address).
    #[error("interface {ifname}: {reason}")]
    Interface {
        /// Kernel interface name.
        ifname: String,
        /// What is wrong.
        reason: String,
    },
    /// A socket could not be opened or configured.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// One instance, resolved against the kernel.
#[derive(Clone, Debug)]
pub(crate) struct PlannedInstance {
    pub(crate) params: InstanceParams,
    pub(crate) ifname: String,
    pub(crate) ifindex: u32,
    pub(crate) unicast_peer: Vec<IpAddr>,
    /// Interfaces whose link going down is a fault (own + tracked).
    pub(crate) watched_links: Vec<WatchedLink>,
    /// (script index, weight).
    pub(crate) scripts: Vec<(usize, i32)>,
    pub(crate) garp_repeat: u32,
    pub(crate) garp_delay: Duration,
    pub(crate) garp_refresh: Duration,
    pub(crate) garp_lower_prio: LowerPrio,
    pub(crate) notify_master: Option<String>,
    pub(crate) notify_backup: Option<String>,
    pub(crate) notify_fault: Option<String>,
    pub(crate) notify: Option<String>,
}

impl PlannedInstance {
    /// Its address family (that of its primary address).
    pub(crate) fn family(&self) -> Family {
        if self.params.primary_ip.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct PlannedGroup {
    pub(crate) name: String,
    pub(crate) members: Vec<usize>,
    pub(crate) notify_master: Option<String>,
    pub(crate) notify_backup: Option<String>,
    pub(crate) notify_fault: Option<String>,
}

#[derive(Clone, Debug)]
pub(crate) struct PlannedScript {
    pub(crate) name: String,
    pub(crate) script: String,
    pub(crate) interval: Duration,
    pub(crate) timeout: Duration,
    pub(crate) rise: u32,
    pub(crate) fall: u32,
}

/// Everything the engine thread needs.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    pub(crate) instances: Vec<PlannedInstance>,
    pub(crate) groups: Vec<PlannedGroup>,
    pub(crate) scripts: Vec<PlannedScript>,
}

fn secs(what: &str, v: f64) -> Result<Duration, VrrpError> {
    Duration::try_from_secs_f64(v).map_err(|_| VrrpError::Config(format!("{what}: {v} is not a valid duration")))
}

/// The advertisement interval in centiseconds for `version`, validated
/// (v2: whole seconds 1..=255, rounded as Keepalived does; v3: 0.01..=40.95 s).
pub fn advert_int_cs(version: u8, advert_int: f64) -> Result<u16, String> {
    if !advert_int.is_finite() || advert_int <= 0.0 {
        return Err(format!("advert_int {advert_int} must be positive"));
    }
    match version {
        2 => {
            let s = advert_int.round().max(1.0);
            if s > 255.0 {
                return Err(format!("advert_int {advert_int} above 255 s (v2)"));
            }
            Ok(s as u16 * 100)
        }
        3 => {
            let cs = (advert_int * 100.0).round();
            if !(1.0..=4095.0).contains(&cs) {
                return Err(format!("advert_int {advert_int} outside 0.01..=40.95 s (v3)"));
            }
            Ok(cs as u16)
        }
        v => Err(format!("version {v} must be 2 or 3")),
    }
}

/// The address family of an instance: the family of its
/// `virtual_ipaddress`, else of its `unicast_src_ip` or `unicast_peer`, else
/// IPv4. Every address of the instance must be of that family: an instance
/// mixing IPv4 and IPv6 is refused, naming the field (Keepalived puts the
/// other family's addresses in `virtual_ipaddress_excluded`, which does not
/// exist here: make one instance per family). IPv6 needs `version` 3 (VRRPv2
/// is IPv4 only).
pub fn instance_family(inst: &VrrpInstance) -> Result<Family, VrrpError> {
    let at = |m: String| VrrpError::Config(format!("instance {}: {m}", inst.name));
    let fam = |a: &IpAddr| if a.is_ipv4() { Family::V4 } else { Family::V6 };
    let family = inst.virtual_ipaddress.first().or(inst.unicast_src_ip.as_ref()).or(inst.unicast_peer.first()).map_or(Family::V4, fam);
    let from = if inst.virtual_ipaddress.is_empty() { "unicast_src_ip/unicast_peer" } else { "virtual_ipaddress" };
    if let Some(other) = inst.virtual_ipaddress.iter().find(|a| fam(a) != family) {
        return Err(at(format!(
            "virtual_ipaddress mixes {} and {} addresses ({other}); an instance is one family \
             (Keepalived's virtual_ipaddress_excluded does not exist here): use one instance per family",
            family.name(),
            fam(other).name()
        )));
    }
    if let Some(src) = inst.unicast_src_ip.filter(|a| fam(a) != family) {
        return Err(at(format!("unicast_src_ip {src} is {}, the instance is {} (its {from})", fam(&src).name(), family.name())));
    }
    if let Some(peer) = inst.unicast_peer.iter().find(|a| fam(a) != family) {
        return Err(at(format!("unicast_peer {peer} is {}, the instance is {} (its {from})", fam(peer).name(), family.name())));
    }
    if family == Family::V6 && inst.version != 3 {
        return Err(at(format!("version {} with IPv6 addresses: VRRPv2 is IPv4 only, set version 3", inst.version)));
    }
    for a in &inst.virtual_ipaddress {
        if a.is_unspecified() || a.is_multicast() || a.is_loopback() {
            return Err(at(format!("virtual_ipaddress {a} is not a unicast address")));
        }
    }
    for a in &inst.unicast_peer {
        if a.is_unspecified() || a.is_multicast() || a.is_loopback() {
            return Err(at(format!("unicast_peer {a} is not a unicast address")));
        }
    }
    Ok(family)
}

/// The address family of a VRRP instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// VRRP v2 or v3 over IPv4.
    V4,
    /// VRRPv3 over IPv6.
    V6,
}

impl Family {
    /// "IPv4" or "IPv6".
    pub fn name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }
}

/// Validates one instance and builds its state-machine parameters.
/// `primary_ip` is `unicast_src_ip` or the interface's first IPv4 address
/// (IPv4 instances) or its link-local address (IPv6 instances), of the
/// instance's family.
pub fn instance_params(inst: &VrrpInstance, primary_ip: IpAddr) -> Result<InstanceParams, VrrpError> {
    let at = |m: String| VrrpError::Config(format!("instance {}: {m}", inst.name));
    let family = instance_family(inst)?;
    if (family == Family::V4) != primary_ip.is_ipv4() {
        return Err(at(format!("primary address {primary_ip} is not {}", family.name())));
    }
    if inst.virtual_router_id == 0 {
        return Err(at("virtual_router_id must be 1..=255".to_owned()));
    }
    if inst.priority == 0 {
        return Err(at("priority must be 1..=255".to_owned()));
    }
    let version = match inst.version {
        2 => Version::V2,
        3 => Version::V3,
        v => return Err(at(format!("version {v} must be 2 or 3"))),
    };
    let cs = advert_int_cs(inst.version, inst.advert_int).map_err(at)?;
    let auth = match &inst.auth_pass {
        None => Auth::None,
        Some(_) if version == Version::V3 => return Err(at("auth_pass needs version 2".to_owned())),
        Some(p) if p.len() > 8 => return Err(at("auth_pass longer than 8 bytes".to_owned())),
        Some(p) => Auth::pass(p),
    };
    if inst.virtual_ipaddress.len() > 255 {
        return Err(at("more than 255 virtual addresses".to_owned()));
    }
    Ok(InstanceParams {
        name: inst.name.clone(),
        version,
        vrid: inst.virtual_router_id,
        priority: inst.priority,
        advert_int_cs: cs,
        preempt: !inst.nopreempt,
        higher_prio_send_advert: inst.higher_prio_send_advert.unwrap_or(true),
        preempt_delay: secs(&format!("instance {}: preempt_delay", inst.name), inst.preempt_delay)?,
        auth,
        primary_ip,
        vips: inst.virtual_ipaddress.clone(),
    })
}

/// Checks everything in `config` that does not need the kernel (names,
/// ranges, durations, scripts, groups, VRIDs per interface), as
/// `rvsd --check-config` and the API do before anything starts. `interfaces`
/// maps port names to their TAPs, as for [`VrrpEngine::start`].
pub fn validate(config: &VrrpConfig, interfaces: &HashMap<String, String>) -> Result<(), VrrpError> {
    let anywhere =
        |_: &str| Ok(io::IfInfo { index: 0, first_ipv4: Some(Ipv4Addr::UNSPECIFIED), link_local_ipv6: Some(Ipv6Addr::UNSPECIFIED) });
    plan(config, interfaces, anywhere).map(|_| ())
}

/// Resolves `config` into a plan, looking interfaces up with `lookup`.
fn plan(
    config: &VrrpConfig,
    interfaces: &HashMap<String, String>,
    lookup: impl Fn(&str) -> std::io::Result<io::IfInfo>,
) -> Result<Plan, VrrpError> {
    let kernel = |name: &String| interfaces.get(name).cloned().unwrap_or_else(|| name.clone());
    let mut scripts = Vec::new();
    let mut script_idx = HashMap::new();
    for s in &config.scripts {
        if script_idx.insert(s.name.clone(), scripts.len()).is_some() {
            return Err(VrrpError::Config(format!("script {} defined twice", s.name)));
        }
        let interval = secs(&format!("script {}: interval", s.name), s.interval)?;
        if interval.is_zero() {
            return Err(VrrpError::Config(format!("script {}: interval must be positive", s.name)));
        }
        scripts.push(PlannedScript {
            name: s.name.clone(),
            script: s.script.clone(),
            interval,
            timeout: secs(&format!("script {}: timeout", s.name), s.timeout.unwrap_or(s.interval))?,
            rise: s.rise,
            fall: s.fall,
        });
    }
    let mut instances = Vec::new();
    let mut names = HashMap::new();
    let mut vrids = HashSet::new();
    for inst in &config.instances {
        if names.insert(inst.name.clone(), instances.len()).is_some() {
            return Err(VrrpError::Config(format!("instance {} defined twice", inst.name)));
        }
        let ifname = kernel(&inst.interface);
        if !vrids.insert((ifname.clone(), inst.virtual_router_id)) {
            return Err(VrrpError::Config(format!(
                "instance {}: virtual_router_id {} already used on {ifname}",
                inst.name, inst.virtual_router_id
            )));
        }
        let info = lookup(&ifname).map_err(|e| VrrpError::Interface { ifname: ifname.clone(), reason: e.to_string() })?;
        let family = instance_family(inst)?;
        let own = match family {
            Family::V4 => info.first_ipv4.map(IpAddr::V4),
            Family::V6 => info.link_local_ipv6.map(IpAddr::V6),
        };
        let primary = match inst.unicast_src_ip.or(own) {
            Some(ip) => ip,
            None => {
                let what = if family == Family::V4 { "no IPv4 address" } else { "no IPv6 link-local address" };
                return Err(VrrpError::Interface { ifname, reason: format!("{what} for instance {} (set unicast_src_ip)", inst.name) });
            }
        };
        let params = instance_params(inst, primary)?;
        let mut watched = vec![WatchedLink { name: inst.interface.clone(), kernel: ifname.clone() }];
        for t in &inst.track_interface {
            let k = kernel(t);
            if !watched.iter().any(|w| w.kernel == k) {
                watched.push(WatchedLink { name: t.clone(), kernel: k });
            }
        }
        let garp_delay = secs(&format!("instance {}: garp_master_delay", inst.name), inst.garp_master_delay)?;
        let garp_lower_prio = LowerPrio {
            repeat: inst.garp_lower_prio_repeat.unwrap_or(inst.garp_master_repeat),
            delay: match inst.garp_lower_prio_delay {
                Some(d) => secs(&format!("instance {}: garp_lower_prio_delay", inst.name), d)?,
                None => garp_delay,
            },
        };
        let mut tracked = Vec::new();
        for t in &inst.track_script {
            let Some(&s) = script_idx.get(t) else {
                return Err(VrrpError::Config(format!("instance {}: unknown track_script {t}", inst.name)));
            };
            tracked.push((s, config.scripts[s].weight));
        }
        instances.push(PlannedInstance {
            params,
            ifname,
            ifindex: info.index,
            unicast_peer: inst.unicast_peer.clone(),
            watched_links: watched,
            scripts: tracked,
            garp_repeat: inst.garp_master_repeat,
            garp_delay,
            garp_lower_prio,
            garp_refresh: secs(&format!("instance {}: garp_master_refresh", inst.name), inst.garp_master_refresh)?,
            notify_master: inst.notify_master.clone(),
            notify_backup: inst.notify_backup.clone(),
            notify_fault: inst.notify_fault.clone(),
            notify: inst.notify.clone(),
        });
    }
    let mut groups = Vec::new();
    let mut grouped = HashSet::new();
    for g in &config.sync_groups {
        let mut members = Vec::new();
        for m in &g.group {
            let Some(&i) = names.get(m) else {
                return Err(VrrpError::Config(format!("sync group {}: unknown instance {m}", g.name)));
            };
            if !grouped.insert(i) {
                return Err(VrrpError::Config(format!("sync group {}: instance {m} is in two groups", g.name)));
            }
            members.push(i);
        }
        groups.push(PlannedGroup {
            name: g.name.clone(),
            members,
            notify_master: g.notify_master.clone(),
            notify_backup: g.notify_backup.clone(),
            notify_fault: g.notify_fault.clone(),
        });
    }
    Ok(Plan { instances, groups, scripts })
}

/// The running VRRP engine.
pub struct VrrpEngine {
    waker: Waker,
    thread: Option<JoinHandle<()>>,
    helpers: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    states: Arc<Mutex<Vec<InstanceStatus>>>,
}

impl std::fmt::Debug for VrrpEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VrrpEngine").field("states", &*self.states.lock()).finish()
    }
}

impl VrrpEngine {
    /// Validates `config`, opens the sockets and starts the engine thread.
    ///
    /// `interfaces` maps an instance's `interface` (a dataplane port name) to
    /// the kernel interface to run on (the port's TAP); names not in the map
    /// are used as they are. `dataplane` gives the carrier of dataplane ports
    /// (see [`DataplaneLink`]). State changes are sent to `events`.
    pub fn start(
        config: &VrrpConfig,
        interfaces: HashMap<String, String>,
        dataplane: DataplaneLink,
        events: UnboundedSender<VrrpEvent>,
    ) -> Result<VrrpEngine, VrrpError> {
        let plan = plan(config, &interfaces, io::interface_info)?;
        let instances = plan.instances.iter().map(|p| Instance::new(p.params.clone())).collect();
        let router = Router::new(instances, plan.groups.iter().map(|g| g.members.clone()).collect());
        let states = Arc::new(Mutex::new(
            plan.instances
                .iter()
                .map(|p| InstanceStatus {
                    name: p.params.name.clone(),
                    state: VrrpState::Initialize,
                    priority: p.params.priority,
                    stats: VrrpStats::default(),
                    last_advert: None,
                })
                .collect(),
        ));
        let (wake_tx, wake_rx) = UnixDatagram::pair().map_err(|source| VrrpError::Io { what: "wake-up socket pair".to_owned(), source })?;
        wake_tx.set_nonblocking(true).map_err(|source| VrrpError::Io { what: "wake-up socket".to_owned(), source })?;
        let (cmd_tx, cmd_rx) = mpsc::channel();
        let waker = Waker::new(cmd_tx, wake_tx);
        let runner = Runner::open(plan.clone(), router, events, states.clone(), dataplane.clone(), cmd_rx, wake_rx)?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("rvs-vrrp".to_owned())
            .spawn(move || runner.run())
            .map_err(|source| VrrpError::Io { what: "VRRP thread".to_owned(), source })?;
        let mut helpers = Vec::new();
        helpers.extend(spawn_link_watcher(&plan, dataplane, &waker, &stop));
        for (idx, s) in plan.scripts.iter().enumerate() {
            if !plan.instances.iter().any(|i| i.scripts.iter().any(|&(k, _)| k == idx)) {
                continue;
            }
            helpers.extend(spawn_script(idx, s.clone(), waker.clone(), stop.clone()));
        }
        Ok(VrrpEngine { waker, thread: Some(thread), helpers, stop, states })
    }

    /// Every instance's name, state, effective priority and counters.
    pub fn states(&self) -> Vec<InstanceStatus> {
        self.states.lock().clone()
    }

    /// A handle on the same reports, for readers that outlive this borrow
    /// (the REST API's status page and metrics).
    pub fn status_handle(&self) -> Arc<Mutex<Vec<InstanceStatus>>> {
        Arc::clone(&self.states)
    }

    /// Stops the engine: masters send priority-0 adverts (the backups take
    /// over after their skew time), helper threads end.
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.waker.send(Cmd::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        for h in self.helpers.drain(..) {
            let _ = h.join();
        }
    }
}

impl Drop for VrrpEngine {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// How often the link watcher looks at the watched links.
const LINK_POLL: Duration = Duration::from_millis(20);

fn spawn_link_watcher(plan: &Plan, dataplane: DataplaneLink, waker: &Waker, stop: &Arc<AtomicBool>) -> Option<JoinHandle<()>> {
    let mut links: Vec<WatchedLink> = Vec::new();
    for i in &plan.instances {
        for l in &i.watched_links {
            if !links.contains(l) {
                links.push(l.clone());
            }
        }
    }
    let waker = waker.clone();
    let stop = stop.clone();
    std::thread::Builder::new()
        .name("rvs-vrrp-link".to_owned())
        .spawn(move || {
            let mut last: Vec<bool> = links.iter().map(|l| l.is_up(&dataplane)).collect();
            while io::sleep_unless_stopped(&stop, LINK_POLL) {
                for (k, l) in links.iter().enumerate() {
                    let up = l.is_up(&dataplane);
                    if up != last[k] {
                        last[k] = up;
                        if !waker.send(Cmd::Link { link: l.name.clone(), up }) {
                            return;
                        }
                    }
                }
            }
        })
        .map_err(|e| tracing::error!(error = %e, "cannot start the VRRP link watcher"))
        .ok()
}

fn spawn_script(idx: usize, s: PlannedScript, waker: Waker, stop: Arc<AtomicBool>) -> Option<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("rvs-vrrp-script-{idx}"))
        .spawn(move || loop {
            let ok = io::run_check(&s.script, s.timeout);
            tracing::debug!(script = %s.name, ok, "track script ran");
            if !waker.send(Cmd::Script { script: idx, ok }) || !io::sleep_unless_stopped(&stop, s.interval) {
                return;
            }
        })
        .map_err(|e| tracing::error!(error = %e, "cannot start a VRRP track script"))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::packet::{IpPacket, IPPROTO_VRRP, VRRP_MCAST_V6};
    use super::*;

    fn instance(json: serde_json::Value) -> VrrpInstance {
        let mut base = serde_json::json!({ "name": "VI_6", "interface": "eth0", "virtual_router_id": 61, "version": 3 });
        if let (Some(b), Some(extra)) = (base.as_object_mut(), json.as_object()) {
            b.extend(extra.clone());
        }
        serde_json::from_value(base).expect("instance JSON")
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    fn lookup(link_local: Option<&str>) -> impl Fn(&str) -> std::io::Result<io::IfInfo> {
        let ll = link_local.map(|s| s.parse().expect("IPv6 address"));
        move |_: &str| Ok(io::IfInfo { index: 7, first_ipv4: Some(Ipv4Addr::new(10, 0, 0, 1)), link_local_ipv6: ll })
    }

    fn config(inst: VrrpInstance) -> VrrpConfig {
        VrrpConfig { instances: vec![inst], ..VrrpConfig::default() }
    }

    fn config_error(inst: VrrpInstance) -> String {
        match plan(&config(inst), &HashMap::new(), lookup(Some("fe80::1"))) {
            Ok(_) => panic!("must be refused"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn family_follows_the_addresses() {
        let v6 = instance(serde_json::json!({ "virtual_ipaddress": ["2001:db8::100"] }));
        assert_eq!(instance_family(&v6).ok(), Some(Family::V6));
        let v4 = instance(serde_json::json!({ "virtual_ipaddress": ["10.0.0.100"] }));
        assert_eq!(instance_family(&v4).ok(), Some(Family::V4));
        let peers_only = instance(serde_json::json!({ "virtual_ipaddress": [], "unicast_peer": ["fd00::2"] }));
        assert_eq!(instance_family(&peers_only).ok(), Some(Family::V6));
    }

    #[test]
    fn mixtures_and_v2_over_ipv6_are_refused_naming_the_field() {
        let e = config_error(instance(serde_json::json!({ "virtual_ipaddress": ["2001:db8::100", "10.0.0.100"] })));
        assert!(e.contains("virtual_ipaddress mixes IPv6 and IPv4"), "{e}");
        let e = config_error(instance(serde_json::json!({ "virtual_ipaddress": ["2001:db8::100"], "unicast_peer": ["10.0.0.2"] })));
        assert!(e.contains("unicast_peer 10.0.0.2 is IPv4, the instance is IPv6"), "{e}");
        let e = config_error(instance(serde_json::json!({ "virtual_ipaddress": ["2001:db8::100"], "unicast_src_ip": "10.0.0.1" })));
        assert!(e.contains("unicast_src_ip 10.0.0.1 is IPv4"), "{e}");
        let e = config_error(instance(serde_json::json!({ "virtual_ipaddress": ["2001:db8::100"], "version": 2 })));
        assert!(e.contains("VRRPv2 is IPv4 only"), "{e}");
        let e = config_error(instance(serde_json::json!({ "virtual_ipaddress": ["ff02::1"] })));
        assert!(e.contains("virtual_ipaddress ff02::1 is not a unicast address"), "{e}");
    }

    #[test]
    fn ipv6_primary_is_the_link_local_address() {
        let inst = instance(serde_json::json!({ "virtual_ipaddress": ["2001:db8::100"] }));
        let p = plan(&config(inst.clone()), &HashMap::new(), lookup(Some("fe80::1"))).expect("plan");
        assert_eq!(p.instances[0].params.primary_ip, ip("fe80::1"));
        assert_eq!(p.instances[0].family(), Family::V6);
        let mut unicast = inst.clone();
        unicast.unicast_src_ip = Some(ip("fd00::1"));
        let p = plan(&config(unicast), &HashMap::new(), lookup(Some("fe80::1"))).expect("plan");
        assert_eq!(p.instances[0].params.primary_ip, ip("fd00::1"));
        let e = match plan(&config(inst), &HashMap::new(), lookup(None)) {
            Ok(_) => panic!("no link-local address"),
            Err(e) => e.to_string(),
        };
        assert!(e.contains("no IPv6 link-local address for instance VI_6 (set unicast_src_ip)"), "{e}");
    }

    #[test]
    fn hop_limit_254_is_refused_and_counted() {
        let inst = instance(serde_json::json!({ "virtual_ipaddress": ["2001:db8::100"] }));
        let p = plan(&config(inst), &HashMap::new(), lookup(Some("fe80::1"))).expect("plan");
        let advert = p.instances[0].params.advert(100).encode(ip("fe80::2"), IpAddr::V6(VRRP_MCAST_V6));
        let packet = |ttl| IpPacket { src: ip("fe80::2"), dst: IpAddr::V6(VRRP_MCAST_V6), ttl, protocol: IPPROTO_VRRP, payload: &advert };
        let mut stats = VrrpStats::default();
        assert!(!io::admit(&packet(254), &p.instances[0], &mut stats));
        assert_eq!(stats, VrrpStats { ip_ttl_err: 1, ..VrrpStats::default() });
        assert!(io::admit(&packet(255), &p.instances[0], &mut stats));
        assert_eq!(stats.ip_ttl_err, 1);
    }

    #[test]
    fn ipv6_unicast_instances_hear_their_peers_only() {
        let inst = instance(serde_json::json!({ "virtual_ipaddress": ["fd00::100"], "unicast_src_ip": "fd00::1",
            "unicast_peer": ["fd00::2"] }));
        let p = plan(&config(inst), &HashMap::new(), lookup(Some("fe80::1"))).expect("plan");
        let advert = p.instances[0].params.advert(100).encode(ip("fd00::3"), ip("fd00::1"));
        let from = |src| IpPacket { src: ip(src), dst: ip("fd00::1"), ttl: 255, protocol: IPPROTO_VRRP, payload: &advert };
        let mut stats = VrrpStats::default();
        assert!(!io::admit(&from("fd00::3"), &p.instances[0], &mut stats));
        assert_eq!(stats.peer_unknown, 1);
        assert!(io::admit(&from("fd00::2"), &p.instances[0], &mut stats));
        // Keepalived sends IPv6 unicast adverts with hop limit 64 and checks
        // the hop limit of multicast adverts only: so do we.
        let keepalived = IpPacket { ttl: 64, ..from("fd00::2") };
        assert!(io::admit(&keepalived, &p.instances[0], &mut stats));
        let multicast = IpPacket { dst: IpAddr::V6(VRRP_MCAST_V6), ttl: 64, ..from("fd00::2") };
        assert!(!io::admit(&multicast, &p.instances[0], &mut stats));
        assert_eq!(stats, VrrpStats { peer_unknown: 1, ip_ttl_err: 1, ..VrrpStats::default() });
    }
}
