//! Scale-out behind ECMP: the VIPs this node announces through a BGP
//! speaker running beside it (BIRD 2), and draining.
//!
//! rvsd speaks no BGP. It writes a BIRD config include
//! ([`BgpConfig::include`]) holding one static protocol with a `/32`
//! blackhole route per VIP it wants announced, and runs `birdc configure`
//! when that set changes; the operator's `bird.conf` includes the file and
//! exports the protocol's routes to the upstream router (see
//! `deploy/docs/cluster.md`). A VIP is announced while:
//!
//! * every worker's poll loop goes round (a stalled worker withdraws all);
//! * every service on the VIP has a real server with weight above 0 after
//!   health checks (all reals of a service down withdraws its VIP);
//! * the VIP is not in VRRP standby on this node (a VRRP backup does not
//!   attract traffic);
//! * the node is not draining or stopping.
//!
//! Draining (`POST /api/v1/cluster/drain`, `rvsadm --drain`, or SIGTERM when
//! `bgp` is configured) withdraws every route first — the include is written
//! and BIRD reconfigured before anything else — then keeps serving existing
//! flows for the grace period, then rvsd stops.

use std::collections::{BTreeSet, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::Notify;

use crate::config::Config;
use crate::error::ConfigError;

/// Largest drain grace period (seconds).
pub const MAX_DRAIN_GRACE_S: u32 = 3600;

/// How rvsd tells the BGP speaker (BIRD 2) which VIPs to announce.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BgpConfig {
    /// The BIRD config include rvsd rewrites (absolute path); `bird.conf`
    /// must `include` it at top level.
    pub include: PathBuf,
    /// Name of the static protocol the include defines (default `rvs_vips`);
    /// export its routes to the router, e.g. `export where proto = "rvs_vips";`.
    #[serde(default = "default_protocol")]
    pub protocol: String,
    /// The `birdc` program (default `birdc`, found on PATH).
    #[serde(default = "default_birdc")]
    pub birdc: PathBuf,
    /// BIRD's control socket (`birdc -s`); absent: birdc's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket: Option<PathBuf>,
    /// Seconds a draining node keeps serving its flows after withdrawing its
    /// routes, before it stops (0..=3600, default 30).
    #[serde(default = "default_drain_grace")]
    pub drain_grace: u32,
    /// How often the announced set is re-evaluated, in ms (50..=10000, default 200).
    #[serde(default = "default_check_interval_ms")]
    pub check_interval_ms: u32,
}

fn default_protocol() -> String {
    "rvs_vips".to_owned()
}

fn default_birdc() -> PathBuf {
    PathBuf::from("birdc")
}

fn default_drain_grace() -> u32 {
    30
}

fn default_check_interval_ms() -> u32 {
    200
}

impl BgpConfig {
    /// Checks the fields; errors name them (`bgp.include`, ...).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.include.is_absolute() || self.include.file_name().is_none() {
            return Err(ConfigError::invalid("bgp.include", format!("{} is not an absolute file path", self.include.display())));
        }
        let p = &self.protocol;
        let ident = p.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && p.len() <= 64;
        if !ident {
            return Err(ConfigError::invalid(
                "bgp.protocol",
                format!("{p:?} is not a BIRD protocol name (letters, digits, _; at most 64)"),
            ));
        }
        if self.birdc.as_os_str().is_empty() {
            return Err(ConfigError::invalid("bgp.birdc", "empty program name"));
        }
        if self.drain_grace > MAX_DRAIN_GRACE_S {
            return Err(ConfigError::invalid(
                "bgp.drain_grace",
                format!("{} is out of range 0..={MAX_DRAIN_GRACE_S} seconds", self.drain_grace),
            ));
        }
        if !(50..=10_000).contains(&self.check_interval_ms) {
            return Err(ConfigError::invalid("bgp.check_interval_ms", format!("{} is out of range 50..=10000", self.check_interval_ms)));
        }
        Ok(())
    }
}

/// Why the announced set could not be handed to BIRD.
#[derive(Debug, thiserror::Error)]
pub enum BgpError {
    /// The include could not be written.
    #[error("bgp.include: cannot write {path}: {source}")]
    Write {
        /// The include.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// birdc could not run.
    #[error("bgp.birdc: cannot run {program}: {source}")]
    Run {
        /// The program.
        program: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// birdc ran but BIRD did not reconfigure.
    #[error("bgp: `birdc configure` did not reconfigure BIRD: {0}")]
    Refused(String),
    /// birdc did not answer in time.
    #[error("bgp.birdc: no answer within {0:?}")]
    Timeout(Duration),
}

/// The VIPs to announce: those whose every service has a real server with
/// weight above 0 in `effective` (health applied) and that are not in
/// `standby`; none when `healthy` is false.
pub fn wanted_vips(effective: &Config, standby: &HashSet<IpAddr>, healthy: bool) -> BTreeSet<IpAddr> {
    if !healthy {
        return BTreeSet::new();
    }
    let all: BTreeSet<IpAddr> = effective.services.iter().map(|s| s.vip).collect();
    all.into_iter()
        .filter(|vip| !standby.contains(vip))
        .filter(|vip| effective.services.iter().filter(|s| s.vip == *vip).all(|s| s.reals.iter().any(|r| r.weight > 0)))
        .collect()
}

/// The include's text: protocol `protocol` (BIRD's `ipv4` channel) with a
/// blackhole `/32` per IPv4 VIP, and when there are IPv6 VIPs a second
/// protocol `{protocol}_v6` (`ipv6` channel) with a `/128` per IPv6 VIP: a
/// BIRD static protocol carries one family.
pub fn render(protocol: &str, vips: &BTreeSet<IpAddr>) -> String {
    let mut s =
        format!("# Written by rvsd (bgp.include): the VIPs this node announces. Do not edit.\nprotocol static {protocol} {{\n    ipv4;\n");
    for vip in vips.iter().filter(|v| v.is_ipv4()) {
        s.push_str(&format!("    route {vip}/32 blackhole;\n"));
    }
    s.push_str("}\n");
    if vips.iter().any(|v| v.is_ipv6()) {
        s.push_str(&format!("protocol static {protocol}_v6 {{\n    ipv6;\n"));
        for vip in vips.iter().filter(|v| v.is_ipv6()) {
            s.push_str(&format!("    route {vip}/128 blackhole;\n"));
        }
        s.push_str("}\n");
    }
    s
}

/// Writes `text` to `path` atomically (a temporary file renamed over it).
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    let tmp = dir.join(format!(".{}.rvsd-tmp", path.file_name().and_then(|n| n.to_str()).unwrap_or("include")));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// Whether birdc's answer to `configure` says BIRD took the new config.
fn reconfigured(output: &str) -> bool {
    output.contains("Reconfigured") || output.contains("Reconfiguration in progress") || output.contains("already in progress")
}

/// What a node's cluster state is, shown by `GET /api/v1/cluster`.
#[derive(Clone, Debug, Default)]
struct Shown {
    /// The set BIRD has (None: nothing handed over yet).
    announced: Option<BTreeSet<IpAddr>>,
    /// When it was handed over.
    applied_at: Option<Instant>,
    /// The last failure, if the last attempt failed.
    last_error: Option<String>,
    /// How many times BIRD was reconfigured.
    reconfigures: u64,
}

/// A node's membership of a cluster: the announcer and the drain state.
pub struct Cluster {
    bgp: Option<BgpConfig>,
    /// Every worker's poll loop goes round (set by rvsd's liveness check).
    workers_alive: AtomicBool,
    draining: AtomicBool,
    stopping: AtomicBool,
    /// When the drain ends (rvsd stops then).
    drain_deadline: Mutex<Option<Instant>>,
    /// Wakes the announcer at once (drain, stop).
    wake: Notify,
    /// Signalled when the announcer handed a set over (or failed).
    applied: Notify,
    /// Signalled when the drain's grace period is over.
    drained: Notify,
    shown: Mutex<Shown>,
}

impl Cluster {
    /// The cluster state of a node configured with `bgp` (None: no BGP
    /// speaker; draining still works, without routes to withdraw).
    pub fn new(bgp: Option<BgpConfig>) -> Arc<Self> {
        Arc::new(Cluster {
            bgp,
            workers_alive: AtomicBool::new(true),
            draining: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            drain_deadline: Mutex::new(None),
            wake: Notify::new(),
            applied: Notify::new(),
            drained: Notify::new(),
            shown: Mutex::new(Shown::default()),
        })
    }

    /// Whether a BGP speaker is configured.
    pub fn has_bgp(&self) -> bool {
        self.bgp.is_some()
    }

    /// Records whether every worker makes progress.
    pub fn set_workers_alive(&self, alive: bool) {
        if self.workers_alive.swap(alive, Ordering::Relaxed) != alive {
            if alive {
                tracing::warn!("every worker makes progress again: VIPs may be announced");
            } else {
                tracing::error!("a worker made no progress: withdrawing every VIP");
            }
            self.wake.notify_one();
        }
    }

    /// Whether the node is draining.
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Whether routes may be announced at all (alive, not draining or stopping).
    fn healthy(&self) -> bool {
        self.workers_alive.load(Ordering::Relaxed) && !self.draining() && !self.stopping.load(Ordering::Relaxed)
    }

    /// The configured grace period.
    pub fn default_grace(&self) -> Duration {
        Duration::from_secs(u64::from(self.bgp.as_ref().map_or(default_drain_grace(), |b| b.drain_grace)))
    }

    /// Starts draining: withdraws every route (waits until BIRD took the
    /// empty set, at most `wait`), then arms the grace timer; afterwards
    /// [`Cluster::drained`] returns. A second call keeps the first deadline.
    /// Returns the seconds left until rvsd stops.
    pub async fn drain(self: &Arc<Self>, grace: Duration, wait: Duration) -> Result<f64, String> {
        if self.draining.swap(true, Ordering::SeqCst) {
            let left = self.drain_deadline.lock().map_or(0.0, |d| d.saturating_duration_since(Instant::now()).as_secs_f64());
            return Ok(left);
        }
        tracing::warn!(
            grace_s = grace.as_secs_f64(),
            "draining: withdrawing routes, then serving existing flows until the grace period ends"
        );
        let withdrawn = if self.bgp.is_some() { self.wait_withdrawn(wait).await } else { Ok(()) };
        if let Err(e) = &withdrawn {
            tracing::error!(error = %e, "draining: the routes could not be withdrawn (the grace period runs anyway)");
        } else {
            tracing::info!("draining: routes withdrawn");
        }
        let deadline = Instant::now() + grace;
        *self.drain_deadline.lock() = Some(deadline);
        let me = Arc::clone(self);
        tokio::spawn(async move {
            tokio::time::sleep_until(deadline.into()).await;
            tracing::info!("draining: grace period over, stopping");
            me.drained.notify_waiters();
            me.drained.notify_one();
        });
        withdrawn.map(|()| grace.as_secs_f64())
    }

    /// Wakes the announcer and waits until BIRD has no route of ours.
    async fn wait_withdrawn(&self, wait: Duration) -> Result<(), String> {
        let deadline = Instant::now() + wait;
        loop {
            let notified = self.applied.notified();
            self.wake.notify_one();
            {
                let shown = self.shown.lock();
                if shown.announced.as_ref().is_some_and(BTreeSet::is_empty) {
                    return Ok(());
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || tokio::time::timeout(left, notified).await.is_err() {
                let shown = self.shown.lock();
                return Err(shown.last_error.clone().unwrap_or_else(|| "BIRD did not take the withdrawal in time".to_owned()));
            }
        }
    }

    /// Returns once a drain's grace period is over.
    pub async fn drained(&self) {
        loop {
            let notified = self.drained.notified();
            if self.drain_deadline.lock().is_some_and(|d| Instant::now() >= d) {
                return;
            }
            notified.await;
        }
    }

    /// Stopping: withdraws every route (waits at most `wait`).
    pub async fn stop(&self, wait: Duration) {
        self.stopping.store(true, Ordering::SeqCst);
        if self.bgp.is_some() {
            if let Err(e) = self.wait_withdrawn(wait).await {
                tracing::error!(error = %e, "stopping: the routes could not be withdrawn");
            }
        }
    }

    /// `GET /api/v1/cluster`.
    pub fn status(&self) -> serde_json::Value {
        let shown = self.shown.lock().clone();
        let now = Instant::now();
        let deadline = *self.drain_deadline.lock();
        json!({
            "bgp": self.bgp.is_some(),
            "protocol": self.bgp.as_ref().map(|b| b.protocol.clone()),
            "include": self.bgp.as_ref().map(|b| b.include.display().to_string()),
            "announced": shown.announced.map(|s| s.into_iter().map(|v| v.to_string()).collect::<Vec<_>>()),
            "announced_for_s": shown.applied_at.map(|t| now.saturating_duration_since(t).as_secs_f64()),
            "reconfigures": shown.reconfigures,
            "last_error": shown.last_error,
            "workers_alive": self.workers_alive.load(Ordering::Relaxed),
            "draining": self.draining(),
            "drain_left_s": deadline.map(|d| d.saturating_duration_since(now).as_secs_f64()),
            "drain_grace_s": self.default_grace().as_secs(),
        })
    }

    /// Keeps BIRD's announced set equal to [`wanted_vips`] of what `view`
    /// returns (the effective config and the VRRP standby VIPs), checking
    /// every `check_interval_ms` and at once when woken. Runs until the
    /// runtime ends; does nothing without `bgp`.
    pub async fn run<F, Fut>(self: Arc<Self>, view: F)
    where
        F: Fn() -> Fut + Send,
        Fut: std::future::Future<Output = (Config, HashSet<IpAddr>)> + Send,
    {
        let Some(bgp) = self.bgp.clone() else { return };
        let interval = Duration::from_millis(u64::from(bgp.check_interval_ms));
        loop {
            let (effective, standby) = view().await;
            let wanted = wanted_vips(&effective, &standby, self.healthy());
            let current = self.shown.lock().announced.clone();
            if current.as_ref() != Some(&wanted) {
                let result = apply(&bgp, &wanted).await;
                let mut shown = self.shown.lock();
                match result {
                    Ok(()) => {
                        tracing::info!(vips = ?wanted, "BGP: announced set handed to BIRD");
                        shown.announced = Some(wanted);
                        shown.applied_at = Some(Instant::now());
                        shown.reconfigures += 1;
                        shown.last_error = None;
                    }
                    Err(e) => {
                        let msg = e.to_string();
                        if shown.last_error.as_deref() != Some(&msg) {
                            tracing::error!(error = %msg, "BGP: cannot hand the announced set to BIRD (retrying)");
                        }
                        shown.last_error = Some(msg);
                    }
                }
                drop(shown);
                self.applied.notify_waiters();
            }
            let _ = tokio::time::timeout(interval, self.wake.notified()).await;
        }
    }
}

/// Writes the include for `vips` and runs `birdc configure`.
async fn apply(bgp: &BgpConfig, vips: &BTreeSet<IpAddr>) -> Result<(), BgpError> {
    let text = render(&bgp.protocol, vips);
    let path = bgp.include.clone();
    write_atomically(&path, &text).map_err(|source| BgpError::Write { path, source })?;
    let mut cmd = tokio::process::Command::new(&bgp.birdc);
    if let Some(socket) = &bgp.socket {
        cmd.arg("-s").arg(socket);
    }
    cmd.arg("configure").stdin(std::process::Stdio::null()).kill_on_drop(true);
    let limit = Duration::from_secs(10);
    let output = match tokio::time::timeout(limit, cmd.output()).await {
        Err(_) => return Err(BgpError::Timeout(limit)),
        Ok(Err(source)) => return Err(BgpError::Run { program: bgp.birdc.clone(), source }),
        Ok(Ok(o)) => o,
    };
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    if output.status.success() && reconfigured(&text) {
        Ok(())
    } else {
        Err(BgpError::Refused(text.trim().lines().last().unwrap_or("no output").to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> Config {
        serde_json::from_str(json).expect("config")
    }

    const TWO_VIPS: &str = r#"{
      "ports": [ { "name": "lan0", "device": "net_af_packet0,iface=dp0", "addresses": ["10.0.0.1/24"] } ],
      "services": [
        { "protocol": "tcp", "vip": "10.0.0.100", "port": 80, "reals": [ { "address": "10.0.0.11" } ] },
        { "protocol": "tcp", "vip": "10.0.0.100", "port": 443, "reals": [ { "address": "10.0.0.11", "weight": 0 }, { "address": "10.0.0.12" } ] },
        { "protocol": "tcp", "vip": "10.0.0.101", "port": 80, "reals": [ { "address": "10.0.0.11" } ] }
      ]
    }"#;

    fn ips(v: &[&str]) -> BTreeSet<IpAddr> {
        v.iter().map(|s| s.parse().expect("ip")).collect()
    }

    #[test]
    fn a_vip_is_announced_while_every_service_on_it_has_a_live_real() {
        let mut c = config(TWO_VIPS);
        assert_eq!(wanted_vips(&c, &HashSet::new(), true), ips(&["10.0.0.100", "10.0.0.101"]));
        assert_eq!(wanted_vips(&c, &HashSet::new(), false), ips(&[]), "unhealthy node: nothing");
        let standby: HashSet<IpAddr> = ips(&["10.0.0.101"]).into_iter().collect();
        assert_eq!(wanted_vips(&c, &standby, true), ips(&["10.0.0.100"]), "VRRP backup VIPs are not announced");
        // All reals of one service of 10.0.0.100 down (health left them out).
        c.services[1].reals.retain(|r| r.weight == 0);
        assert_eq!(wanted_vips(&c, &HashSet::new(), true), ips(&["10.0.0.101"]));
    }

    #[test]
    fn the_include_is_one_static_protocol_with_a_blackhole_per_vip() {
        let text = render("rvs_vips", &ips(&["10.0.0.101", "10.0.0.100"]));
        assert!(
            text.contains(
                "protocol static rvs_vips {\n    ipv4;\n    route 10.0.0.100/32 blackhole;\n    route 10.0.0.101/32 blackhole;\n}\n"
            ),
            "{text}"
        );
        assert!(render("p", &ips(&[])).ends_with("protocol static p {\n    ipv4;\n}\n"));
    }

    #[test]
    fn ipv6_vips_get_a_second_protocol_with_an_ipv6_channel() {
        let text = render("p", &ips(&["10.0.0.100", "2001:db8::100"]));
        assert!(text.contains("protocol static p {\n    ipv4;\n    route 10.0.0.100/32 blackhole;\n}\n"), "{text}");
        assert!(text.ends_with("protocol static p_v6 {\n    ipv6;\n    route 2001:db8::100/128 blackhole;\n}\n"), "{text}");
        assert!(!render("p", &ips(&["10.0.0.100"])).contains("p_v6"), "no IPv6 protocol without IPv6 VIPs");
    }

    #[test]
    fn bad_fields_are_named() {
        let ok = BgpConfig {
            include: "/run/rvs/vips.conf".into(),
            protocol: default_protocol(),
            birdc: default_birdc(),
            socket: None,
            drain_grace: 30,
            check_interval_ms: 200,
        };
        assert!(ok.validate().is_ok());
        let field = |b: BgpConfig| b.validate().expect_err("invalid").field().map(str::to_owned);
        assert_eq!(field(BgpConfig { include: "vips.conf".into(), ..ok.clone() }).as_deref(), Some("bgp.include"));
        assert_eq!(field(BgpConfig { protocol: "rvs vips".into(), ..ok.clone() }).as_deref(), Some("bgp.protocol"));
        assert_eq!(field(BgpConfig { drain_grace: 3601, ..ok.clone() }).as_deref(), Some("bgp.drain_grace"));
        assert_eq!(field(BgpConfig { check_interval_ms: 10, ..ok.clone() }).as_deref(), Some("bgp.check_interval_ms"));
    }

    #[test]
    fn birdc_answers_are_read() {
        assert!(reconfigured("0001 BIRD 2.0.12 ready.\nReading configuration from /etc/bird/bird.conf\nReconfigured\n"));
        assert!(!reconfigured("0001 BIRD 2.0.12 ready.\n/etc/bird/vips.conf:3:5 syntax error\n"));
    }

    #[tokio::test]
    async fn a_failing_birdc_is_reported_and_the_include_still_written() {
        let dir = tempfile::tempdir().expect("tmp");
        let include = dir.path().join("vips.conf");
        let bgp = BgpConfig {
            include: include.clone(),
            protocol: default_protocol(),
            birdc: "/bin/false".into(),
            socket: None,
            drain_grace: 0,
            check_interval_ms: 50,
        };
        let err = apply(&bgp, &ips(&["10.0.0.100"])).await.expect_err("false never reconfigures");
        assert!(matches!(err, BgpError::Refused(_)), "{err}");
        assert!(std::fs::read_to_string(&include).expect("written").contains("route 10.0.0.100/32 blackhole;"));
        let missing = BgpConfig { birdc: dir.path().join("no-birdc"), ..bgp };
        assert!(matches!(apply(&missing, &ips(&[])).await, Err(BgpError::Run { .. })));
    }
}
