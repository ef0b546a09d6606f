//! The VRRP state machine (RFC 3768 §6.4, RFC 5798 §6.4), pure and
//! clock-driven: no sockets, no threads, no clock of its own. The caller
//! passes `now` to every call, performs the returned [`Action`]s, and calls
//! [`Router::on_timer`] at [`Router::next_deadline`].
//!
//! * [`Instance`]: one virtual router: Initialize / Backup / Master / Fault,
//!   master_down_interval = 3 × advert_int + skew (v2 skew = (256 − prio)/256 s,
//!   v3 skew = (256 − prio) × advert_int / 256), preempt, `nopreempt`,
//!   `preempt_delay` (Keepalived's: once a lower-priority master is heard,
//!   it is accepted for `preempt_delay` more before preempting), priority-0
//!   adverts (the backups take over after skew), the equal-priority tie broken
//!   by the higher primary address, priority 255 owners, v2 PASS
//!   authentication, `advert_int` mismatch (v2: drop, v3: accept and learn),
//!   faults (link down, failing weight-0 scripts) and priority adjustments
//!   from script weights.
//! * [`Router`]: all instances plus sync groups: a member entering MASTER,
//!   BACKUP or FAULT moves the whole group; a BACKUP member whose master-down
//!   timer expires only becomes MASTER once every member of its group wants to
//!   (Keepalived's `vrrp_sync_can_goto_master`).
//! * [`ScriptStatus`]: the rise/fall counting of a track script.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::packet::{Advert, Auth, Version};

/// The state of a VRRP instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum VrrpState {
    /// Not running (before start, after shutdown); `"INIT"` in JSON.
    #[serde(rename = "INIT")]
    Initialize,
    /// Listening to a master; the VIPs are not ours.
    Backup,
    /// Owning the VIPs and advertising.
    Master,
    /// A tracked interface is down or a tracked script failed: silent.
    Fault,
}

impl VrrpState {
    /// Keepalived's name: INIT, BACKUP, MASTER, FAULT.
    pub fn as_str(self) -> &'static str {
        match self {
            VrrpState::Initialize => "INIT",
            VrrpState::Backup => "BACKUP",
            VrrpState::Master => "MASTER",
            VrrpState::Fault => "FAULT",
        }
    }
}

impl fmt::Display for VrrpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the caller must do after a call into the state machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send an advertisement with this priority (0 = resigning).
    SendAdvert {
        /// Priority to advertise.
        priority: u8,
    },
    /// A lower-priority router claims to be master (a split brain healing, a
    /// backup that booted without hearing us): refresh the neighbours' ARP
    /// caches with gratuitous ARPs for our VIPs (Keepalived's
    /// `garp_lower_prio_repeat`), next to the advert that forces the election.
    AnnounceVips,
    /// The instance changed state (VIPs, gratuitous ARP, notify, event).
    StateChange {
        /// Previous state.
        from: VrrpState,
        /// New state.
        to: VrrpState,
    },
}

/// The static parameters of one instance, already validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceParams {
    /// Instance name (for logs).
    pub name: String,
    /// Protocol version.
    pub version: Version,
    /// Virtual router id.
    pub vrid: u8,
    /// Configured priority 1..=255.
    pub priority: u8,
    /// Advertisement interval in centiseconds (v2: a multiple of 100).
    pub advert_int_cs: u16,
    /// Preempt lower-priority masters (false with `nopreempt`).
    pub preempt: bool,
    /// Keepalived's `preempt_delay`.
    pub preempt_delay: Duration,
    /// Send an advert when yielding to a higher priority (`higher_prio_send_advert`).
    pub higher_prio_send_advert: bool,
    /// v2 authentication expected and sent.
    pub auth: Auth,
    /// The primary address (advert source; breaks priority ties): IPv4, or
    /// for VRRPv3 over IPv6 the interface's link-local address (or
    /// `unicast_src_ip`).
    pub primary_ip: IpAddr,
    /// The virtual addresses (all of the primary address's family).
    pub vips: Vec<IpAddr>,
}

impl InstanceParams {
    /// Builds the advertisement this instance sends with `priority`.
    pub fn advert(&self, priority: u8) -> Advert {
        Advert {
            version: self.version,
            vrid: self.vrid,
            priority,
            advert_int_cs: self.advert_int_cs,
            auth: if self.version == Version::V2 { self.auth } else { Auth::None },
            addrs: self.vips.clone(),
        }
    }
}

/// Why an advertisement was ignored (for logs and tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ignored {
    /// Another virtual router id.
    OtherVrid,
    /// Another VRRP version.
    OtherVersion,
    /// Sent by ourselves.
    Own,
    /// v2 authentication of another type (none vs PASS).
    AuthTypeMismatch,
    /// v2 PASS authentication with another password.
    AuthFailure,
    /// v2 advertisement interval differs from ours.
    Interval,
    /// The instance is in INIT or FAULT.
    NotListening,
}

fn us(d: u64) -> Duration {
    Duration::from_micros(d)
}

/// One VRRP instance.
#[derive(Clone, Debug)]
pub struct Instance {
    params: InstanceParams,
    state: VrrpState,
    /// Master_Adver_Interval in centiseconds (v3 learns it from the master).
    master_adver_int_cs: u16,
    master_down_at: Option<Instant>,
    advert_at: Option<Instant>,
    /// With preempt_delay: when a lower-priority master may be preempted.
    preempt_at: Option<Instant>,
    /// In a sync group: our master-down timer expired, waiting for the group.
    wants_master: bool,
    in_group: bool,
    /// Own fault reasons ("link eth0", "script chk").
    faults: BTreeSet<String>,
    /// Set by the router when another member of our sync group is faulty.
    group_fault: bool,
    /// Sum of the script weights currently applied.
    priority_adjust: i32,
    /// Last advert ignored (tests and logs).
    last_ignored: Option<Ignored>,
}

impl Instance {
    /// A new instance in INIT.
    pub fn new(params: InstanceParams) -> Instance {
        let cs = params.advert_int_cs.max(1);
        Instance {
            params,
            state: VrrpState::Initialize,
            master_adver_int_cs: cs,
            master_down_at: None,
            advert_at: None,
            preempt_at: None,
            wants_master: false,
            in_group: false,
            faults: BTreeSet::new(),
            group_fault: false,
            priority_adjust: 0,
            last_ignored: None,
        }
    }

    /// Its parameters.
    pub fn params(&self) -> &InstanceParams {
        &self.params
    }

    /// Current state.
    pub fn state(&self) -> VrrpState {
        self.state
    }

    /// Why the last advert was ignored, if it was.
    pub fn last_ignored(&self) -> Option<Ignored> {
        self.last_ignored
    }

    /// True when the instance has a fault of its own.
    pub fn has_own_fault(&self) -> bool {
        !self.faults.is_empty()
    }

    fn faulty(&self) -> bool {
        !self.faults.is_empty() || self.group_fault
    }

    /// The priority advertised: the configured one plus the script weights,
    /// within 1..=254; an owner (255) keeps 255.
    pub fn effective_priority(&self) -> u8 {
        if self.params.priority == 255 {
            return 255;
        }
        (i32::from(self.params.priority) + self.priority_adjust).clamp(1, 254) as u8
    }

    /// The advertisement interval as a duration.
    pub fn advert_interval(&self) -> Duration {
        us(u64::from(self.params.advert_int_cs.max(1)) * 10_000)
    }

    /// Skew_Time for the current priority.
    pub fn skew(&self) -> Duration {
        let p = 256 - u64::from(self.effective_priority());
        match self.params.version {
            Version::V2 => us(p * 1_000_000 / 256),
            Version::V3 => us(p * u64::from(self.master_adver_int_cs) * 10_000 / 256),
        }
    }

    /// Master_Down_Interval = 3 × Master_Adver_Interval + Skew_Time.
    pub fn master_down_interval(&self) -> Duration {
        let adv = match self.params.version {
            Version::V2 => self.advert_interval(),
            Version::V3 => us(u64::from(self.master_adver_int_cs) * 10_000),
        };
        adv * 3 + self.skew()
    }

    /// The next time [`Instance::on_timer`] has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        match self.state {
            VrrpState::Backup => self.master_down_at,
            VrrpState::Master => self.advert_at,
            VrrpState::Initialize | VrrpState::Fault => None,
        }
    }

    fn change(&mut self, to: VrrpState, actions: &mut Vec<Action>) {
        if self.state != to {
            actions.push(Action::StateChange { from: self.state, to });
            self.state = to;
        }
    }

    fn become_master(&mut self, now: Instant, actions: &mut Vec<Action>) {
        actions.push(Action::SendAdvert { priority: self.effective_priority() });
        self.advert_at = Some(now + self.advert_interval());
        self.master_down_at = None;
        self.preempt_at = None;
        self.wants_master = false;
        self.change(VrrpState::Master, actions);
    }

    fn become_backup(&mut self, now: Instant, actions: &mut Vec<Action>) {
        self.advert_at = None;
        self.preempt_at = None;
        self.wants_master = false;
        self.master_down_at = Some(now + self.master_down_interval());
        self.change(VrrpState::Backup, actions);
    }

    /// MASTER → BACKUP because a better master exists (heard by this
    /// instance or by another member of its sync group). With
    /// `higher_prio_send_advert`, one last advert first: the new master may
    /// never have heard us (a split brain healing), and a lower-priority
    /// claim makes it re-announce its VIPs with gratuitous ARPs.
    fn yield_mastership(&mut self, now: Instant, actions: &mut Vec<Action>) {
        if self.params.higher_prio_send_advert {
            actions.push(Action::SendAdvert { priority: self.effective_priority() });
        }
        self.become_backup(now, actions);
    }

    fn become_fault(&mut self, actions: &mut Vec<Action>) {
        if self.state == VrrpState::Master {
            // Keepalived resigns with a priority-0 advert on entering FAULT.
            actions.push(Action::SendAdvert { priority: 0 });
        }
        self.advert_at = None;
        self.master_down_at = None;
        self.preempt_at = None;
        self.wants_master = false;
        self.change(VrrpState::Fault, actions);
    }

    /// RFC "Startup" (and leaving FAULT): an owner becomes MASTER at once,
    /// the others BACKUP with the master-down timer running.
    fn enter_running(&mut self, now: Instant, actions: &mut Vec<Action>) {
        self.master_adver_int_cs = self.params.advert_int_cs.max(1);
        if self.faulty() {
            self.become_fault(actions);
        } else if self.params.priority == 255 {
            self.become_master(now, actions);
        } else {
            self.become_backup(now, actions);
        }
    }

    /// Starts the instance (INIT → MASTER for an owner, else BACKUP; FAULT
    /// when a fault is already known).
    pub fn start(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.state == VrrpState::Initialize {
            self.enter_running(now, &mut actions);
        }
        actions
    }

    /// Shuts the instance down: a master sends a priority-0 advert.
    pub fn shutdown(&mut self) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.state == VrrpState::Master {
            actions.push(Action::SendAdvert { priority: 0 });
        }
        self.advert_at = None;
        self.master_down_at = None;
        self.preempt_at = None;
        self.wants_master = false;
        self.change(VrrpState::Initialize, &mut actions);
        actions
    }

    /// Handles a received advertisement from `src` (already checked for TTL
    /// 255 and a valid checksum).
    pub fn on_advert(&mut self, now: Instant, src: IpAddr, advert: &Advert) -> Vec<Action> {
        let mut actions = Vec::new();
        self.last_ignored = None;
        if let Some(why) = self.check(src, advert) {
            self.last_ignored = Some(why);
            tracing::debug!(instance = %self.params.name, %src, ?why, "VRRP advert ignored");
            return actions;
        }
        let mine = self.effective_priority();
        match self.state {
            VrrpState::Backup => {
                if advert.priority == 0 {
                    self.master_down_at = Some(now + self.skew());
                    self.wants_master = false;
                    return actions;
                }
                let lower = advert.priority < mine;
                let delaying = lower
                    && self.params.preempt
                    && !self.params.preempt_delay.is_zero()
                    && match self.preempt_at {
                        None => {
                            self.preempt_at = Some(now + self.params.preempt_delay);
                            true
                        }
                        Some(at) => now < at,
                    };
                if !self.params.preempt || !lower || delaying {
                    if self.params.version == Version::V3 {
                        self.master_adver_int_cs = advert.advert_int_cs.max(1);
                    }
                    self.wants_master = false;
                    self.master_down_at = Some(now + self.master_down_interval());
                }
                // Else: a lower-priority master we preempt: let the timer run out.
            }
            VrrpState::Master => {
                if advert.priority == 0 {
                    // Another router resigned: assert ourselves at once.
                    actions.push(Action::SendAdvert { priority: mine });
                    self.advert_at = Some(now + self.advert_interval());
                } else if advert.priority > mine || (advert.priority == mine && src > self.params.primary_ip) {
                    if self.params.version == Version::V3 {
                        self.master_adver_int_cs = advert.advert_int_cs.max(1);
                    }
                    self.yield_mastership(now, &mut actions);
                } else {
                    // A lower-priority router thinks it is master (split brain
                    // healing, a backup that booted deaf): tell it now rather
                    // than at the next interval and pull the clients back with
                    // gratuitous ARPs ("forcing new election", as Keepalived).
                    actions.push(Action::SendAdvert { priority: mine });
                    actions.push(Action::AnnounceVips);
                    self.advert_at = Some(now + self.advert_interval());
                }
            }
            VrrpState::Initialize | VrrpState::Fault => {}
        }
        actions
    }

    fn check(&self, src: IpAddr, advert: &Advert) -> Option<Ignored> {
        if matches!(self.state, VrrpState::Initialize | VrrpState::Fault) {
            return Some(Ignored::NotListening);
        }
        if advert.vrid != self.params.vrid {
            return Some(Ignored::OtherVrid);
        }
        if advert.version != self.params.version {
            return Some(Ignored::OtherVersion);
        }
        if src == self.params.primary_ip {
            return Some(Ignored::Own);
        }
        if self.params.version == Version::V2 {
            match (advert.auth, self.params.auth) {
                (a, b) if a == b => {}
                (Auth::Pass(_), Auth::Pass(_)) => return Some(Ignored::AuthFailure),
                _ => return Some(Ignored::AuthTypeMismatch),
            }
            if advert.advert_int_cs != self.params.advert_int_cs {
                return Some(Ignored::Interval);
            }
        } else if advert.advert_int_cs != self.params.advert_int_cs {
            tracing::debug!(instance = %self.params.name, mine = self.params.advert_int_cs,
                received = advert.advert_int_cs, "VRRP v3 advert interval differs (accepted)");
        }
        if advert.addrs != self.params.vips {
            tracing::debug!(instance = %self.params.name, received = ?advert.addrs,
                "VRRP advert addresses differ from ours (accepted)");
        }
        None
    }

    /// Timer expiry: a master advertises; a backup whose master is silent
    /// becomes master (or, in a sync group, waits for the group).
    pub fn on_timer(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        match self.state {
            VrrpState::Master => {
                if self.advert_at.is_some_and(|at| now >= at) {
                    actions.push(Action::SendAdvert { priority: self.effective_priority() });
                    self.advert_at = Some(now + self.advert_interval());
                }
            }
            VrrpState::Backup => {
                if self.master_down_at.is_some_and(|at| now >= at) {
                    if self.in_group {
                        self.wants_master = true;
                        self.master_down_at = None;
                    } else {
                        self.become_master(now, &mut actions);
                    }
                }
            }
            VrrpState::Initialize | VrrpState::Fault => {}
        }
        actions
    }

    /// Sets or clears one fault reason (tracked interface down, weight-0
    /// script failing). Entering FAULT from MASTER resigns with priority 0;
    /// the last fault cleared goes back to BACKUP (MASTER for an owner).
    pub fn set_fault(&mut self, now: Instant, reason: &str, faulty: bool) -> Vec<Action> {
        if faulty {
            self.faults.insert(reason.to_owned());
        } else {
            self.faults.remove(reason);
        }
        self.update_fault(now)
    }

    fn update_fault(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        match (self.state, self.faulty()) {
            (VrrpState::Initialize, _) => {}
            (VrrpState::Fault, false) => self.enter_running(now, &mut actions),
            (VrrpState::Fault, true) => {}
            (_, true) => self.become_fault(&mut actions),
            (_, false) => {}
        }
        actions
    }

    /// Sets the sum of the script weights applied to the priority.
    pub fn set_priority_adjust(&mut self, adjust: i32) {
        self.priority_adjust = adjust;
    }
}

/// A track script's rise/fall state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptStatus {
    /// Whether the script is considered up.
    pub up: bool,
    rise: u32,
    fall: u32,
    streak: u32,
}

impl ScriptStatus {
    /// A script that starts up (as Keepalived's without `init_fail`).
    pub fn new(rise: u32, fall: u32) -> ScriptStatus {
        ScriptStatus { up: true, rise: rise.max(1), fall: fall.max(1), streak: 0 }
    }

    /// Records one run; returns true when `up` changed.
    pub fn record(&mut self, ok: bool) -> bool {
        if ok == self.up {
            self.streak = 0;
            return false;
        }
        self.streak += 1;
        let need = if ok { self.rise } else { self.fall };
        if self.streak >= need {
            self.up = ok;
            self.streak = 0;
            true
        } else {
            false
        }
    }
}

/// All instances and their sync groups.
#[derive(Clone, Debug, Default)]
pub struct Router {
    instances: Vec<Instance>,
    /// Members (instance indexes) of each sync group.
    groups: Vec<Vec<usize>>,
    group_of: Vec<Option<usize>>,
}

impl Router {
    /// Instances, and sync groups as lists of instance indexes (an index in
    /// several groups or out of range is ignored past its first group).
    pub fn new(instances: Vec<Instance>, groups: Vec<Vec<usize>>) -> Router {
        let mut instances = instances;
        let mut group_of = vec![None; instances.len()];
        let mut kept = Vec::new();
        for members in groups {
            let g = kept.len();
            let members: Vec<usize> = members.into_iter().filter(|&i| i < instances.len() && group_of[i].is_none()).collect();
            for &i in &members {
                group_of[i] = Some(g);
                instances[i].in_group = true;
            }
            kept.push(members);
        }
        Router { instances, groups: kept, group_of }
    }

    /// The instances.
    pub fn instances(&self) -> &[Instance] {
        &self.instances
    }

    /// One instance.
    pub fn instance(&self, idx: usize) -> Option<&Instance> {
        self.instances.get(idx)
    }

    /// Starts every instance.
    pub fn start(&mut self, now: Instant) -> Vec<(usize, Action)> {
        let mut out = Vec::new();
        for i in 0..self.instances.len() {
            let acts = self.instances[i].start(now);
            out.extend(acts.into_iter().map(|a| (i, a)));
        }
        self.refresh_group_faults(now, &mut out);
        // Owners that became master move their groups.
        let masters: Vec<usize> = (0..self.instances.len()).filter(|&i| self.instances[i].state == VrrpState::Master).collect();
        for i in masters {
            self.propagate(now, i, VrrpState::Master, &mut out);
        }
        out
    }

    /// Stops every instance (masters send priority 0).
    pub fn shutdown(&mut self) -> Vec<(usize, Action)> {
        let mut out = Vec::new();
        for (i, inst) in self.instances.iter_mut().enumerate() {
            out.extend(inst.shutdown().into_iter().map(|a| (i, a)));
        }
        out
    }

    /// The earliest deadline of any instance.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.instances.iter().filter_map(Instance::next_deadline).min()
    }

    /// An advertisement received for instance `idx`.
    pub fn on_advert(&mut self, now: Instant, idx: usize, src: IpAddr, advert: &Advert) -> Vec<(usize, Action)> {
        let Some(inst) = self.instances.get_mut(idx) else {
            return Vec::new();
        };
        let acts = inst.on_advert(now, src, advert);
        self.finish(now, idx, acts)
    }

    /// Timer expiry for every instance whose deadline has passed.
    pub fn on_timer(&mut self, now: Instant) -> Vec<(usize, Action)> {
        let mut out = Vec::new();
        for i in 0..self.instances.len() {
            let acts = self.instances[i].on_timer(now);
            out.extend(self.finish(now, i, acts));
        }
        self.check_groups_ready(now, &mut out);
        out
    }

    /// Sets or clears a fault reason of instance `idx` (the group follows).
    pub fn set_fault(&mut self, now: Instant, idx: usize, reason: &str, faulty: bool) -> Vec<(usize, Action)> {
        let Some(inst) = self.instances.get_mut(idx) else {
            return Vec::new();
        };
        let acts = inst.set_fault(now, reason, faulty);
        let mut out: Vec<(usize, Action)> = acts.into_iter().map(|a| (idx, a)).collect();
        self.refresh_group_faults(now, &mut out);
        out
    }

    /// Sets the script-weight adjustment of instance `idx`.
    pub fn set_priority_adjust(&mut self, idx: usize, adjust: i32) {
        if let Some(inst) = self.instances.get_mut(idx) {
            inst.set_priority_adjust(adjust);
        }
    }

    fn finish(&mut self, now: Instant, idx: usize, acts: Vec<Action>) -> Vec<(usize, Action)> {
        let mut out: Vec<(usize, Action)> = Vec::new();
        let mut changes = Vec::new();
        for a in acts {
            if let Action::StateChange { to, .. } = a {
                changes.push(to);
            }
            out.push((idx, a));
        }
        for to in changes {
            self.propagate(now, idx, to, &mut out);
        }
        out
    }

    /// Moves the other members of `idx`'s group to `to` (MASTER or BACKUP).
    fn propagate(&mut self, now: Instant, idx: usize, to: VrrpState, out: &mut Vec<(usize, Action)>) {
        let Some(g) = self.group_of.get(idx).copied().flatten() else {
            return;
        };
        let members = self.groups[g].clone();
        for m in members {
            if m == idx {
                continue;
            }
            let inst = &mut self.instances[m];
            let mut acts = Vec::new();
            match (to, inst.state) {
                (VrrpState::Master, VrrpState::Backup) => inst.become_master(now, &mut acts),
                (VrrpState::Backup, VrrpState::Master) => inst.yield_mastership(now, &mut acts),
                _ => {}
            }
            out.extend(acts.into_iter().map(|a| (m, a)));
        }
    }

    /// A group whose every member is MASTER or wants to be goes MASTER.
    fn check_groups_ready(&mut self, now: Instant, out: &mut Vec<(usize, Action)>) {
        for g in 0..self.groups.len() {
            let members = self.groups[g].clone();
            let any_wanting = members.iter().any(|&m| self.instances[m].wants_master);
            let all_ready = members.iter().all(|&m| {
                let i = &self.instances[m];
                i.state == VrrpState::Master || (i.state == VrrpState::Backup && i.wants_master)
            });
            if any_wanting && all_ready {
                for m in members {
                    if self.instances[m].state == VrrpState::Backup {
                        let mut acts = Vec::new();
                        self.instances[m].become_master(now, &mut acts);
                        out.extend(acts.into_iter().map(|a| (m, a)));
                    }
                }
            }
        }
    }

    /// A member with a fault of its own puts its whole group in FAULT; the
    /// group leaves FAULT when no member has one.
    fn refresh_group_faults(&mut self, now: Instant, out: &mut Vec<(usize, Action)>) {
        for g in 0..self.groups.len() {
            let members = self.groups[g].clone();
            let faulty = members.iter().any(|&m| self.instances[m].has_own_fault());
            for m in members {
                let inst = &mut self.instances[m];
                if inst.group_fault != faulty {
                    inst.group_fault = faulty;
                    let acts = inst.update_fault(now);
                    out.extend(acts.into_iter().map(|a| (m, a)));
                }
            }
        }
        // Members that left FAULT as owners (MASTER) move their group.
        let masters: Vec<usize> = out
            .iter()
            .filter_map(|(i, a)| match a {
                Action::StateChange { to: VrrpState::Master, .. } => Some(*i),
                _ => None,
            })
            .collect();
        for i in masters {
            self.propagate(now, i, VrrpState::Master, out);
        }
    }
}
