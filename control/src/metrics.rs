//! `GET /metrics`: Prometheus text exposition format 0.0.4.
//!
//! The reference of every family (name, type, labels, meaning) is
//! `deploy/docs/metrics.md`; `tests/e2e/test_68_metrics.py` checks a live
//! scrape against it. In short:
//!
//! * `rvs_*`: services and real servers of the effective config (counters
//!   `_total`, connection gauges, the IPVS estimator's rates named in base
//!   units: `_connections_per_second`, `_in_packets_per_second`,
//!   `_in_bytes_per_second`, ...), health checks (`rvs_real_health_*`) and
//!   quorums (`rvs_service_quorum_up`, `rvs_service_sorry_server_active`),
//!   workers (`rvs_worker_*`, drops by `reason`), ports (`rvs_port_*`),
//!   packet buffers (`rvs_mempool_*`), VRRP (`rvs_vrrp_*`, labelled
//!   `vrrp_instance`: Prometheus's own `instance` label names the target),
//!   connection sync (`rvs_sync_*`) and `rvs_build_info`;
//! * `node_ipvs_*`: node_exporter's IPVS collector family, same names, types
//!   and labels, so that IPVS dashboards and alerts work unchanged;
//! * `process_*`: the process metrics every Prometheus client exports.
//!
//! Counters restart at 0 when zeroed (ipvsadm `-Z`); Prometheus treats that
//! as a counter reset.

use std::collections::BTreeMap;
use std::fmt::Write;

use rvs_dataplane::stats::{ServiceStats, TrafficCounters};
use serde_json::Value;

use crate::api::stats_view;
use crate::config::Config;
use crate::health::HealthReport;
use crate::rate::{RateEstimator, Rates};

/// The `Content-Type` of the exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the metrics are made of.
#[derive(Debug)]
pub struct MetricsInput<'a> {
    /// The config in force, as the dataplane runs it (the effective config:
    /// health checks applied, see [`crate::api::ApiState::effective`]).
    pub config: &'a Config,
    /// Its generation.
    pub generation: u64,
    /// Per-service counters ([`crate::api::ApiState::service_stats`]).
    pub stats: &'a [ServiceStats],
    /// The rate estimator.
    pub rates: &'a RateEstimator,
    /// [`crate::api::Dataplane::stats`]: `{"workers": [{"worker", "lcore",
    /// "counters": {...}}], "tsc_hz", "ports": [{"name", "link_up", "stats": {...}}], "mempool": {"size", "available"}}`.
    pub dataplane: &'a Value,
    /// [`crate::api::ApiState::overlay_status`] (`GET /api/v1/ha`): its
    /// `"vrrp"` array gives the instances' states, priorities and counters,
    /// its `"sync"` object the connection-sync counters.
    pub ha: &'a Value,
}

/// Metric families in output order: name → (help, type, samples).
#[derive(Default)]
struct Families {
    order: Vec<String>,
    families: BTreeMap<String, (String, &'static str, Vec<String>)>,
}

impl Families {
    fn add(&mut self, name: &str, help: &str, kind: &'static str, labels: &[(&str, String)], value: u64) {
        self.sample(name, help, kind, labels, value);
    }

    /// Adds one sample of any printable value (integers, seconds as `f64`).
    fn sample(&mut self, name: &str, help: &str, kind: &'static str, labels: &[(&str, String)], value: impl std::fmt::Display) {
        let entry = self.families.entry(name.to_string()).or_insert_with(|| {
            self.order.push(name.to_string());
            (help.to_string(), kind, Vec::new())
        });
        let mut line = name.to_string();
        if !labels.is_empty() {
            line.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    line.push(',');
                }
                let _ = write!(line, "{k}=\"{}\"", escape(v));
            }
            line.push('}');
        }
        let _ = write!(line, " {value}");
        entry.2.push(line);
    }

    fn render(self) -> String {
        let mut out = String::new();
        for name in &self.order {
            if let Some((help, kind, lines)) = self.families.get(name) {
                let _ = writeln!(out, "# HELP {name} {help}");
                let _ = writeln!(out, "# TYPE {name} {kind}");
                for l in lines {
                    out.push_str(l);
                    out.push('\n');
                }
            }
        }
        out
    }
}

/// Escapes a label value: backslash, double quote and newline.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Sanitises a counter name into a metric name part (`[a-z0-9_]`).
fn metric_part(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect()
}

/// The IPVS estimator's smoothed rates, named in base units (the `_total`
/// counters are there for `rate()`; these match `ipvsadm --rate`).
fn add_rates(f: &mut Families, prefix: &str, what: &str, labels: &[(&str, String)], r: &Rates) {
    let est = "smoothed as ipvsadm --rate";
    f.add(&format!("{prefix}_connections_per_second"), &format!("Connections per second of the {what}, {est}."), "gauge", labels, r.cps);
    f.add(
        &format!("{prefix}_in_packets_per_second"),
        &format!("Packets per second client to real server, {what}, {est}."),
        "gauge",
        labels,
        r.in_pps,
    );
    f.add(
        &format!("{prefix}_out_packets_per_second"),
        &format!("Packets per second real server to client, {what}, {est}."),
        "gauge",
        labels,
        r.out_pps,
    );
    f.add(
        &format!("{prefix}_in_bytes_per_second"),
        &format!("Bytes per second client to real server, {what}, {est}."),
        "gauge",
        labels,
        r.in_bps,
    );
    f.add(
        &format!("{prefix}_out_bytes_per_second"),
        &format!("Bytes per second real server to client, {what}, {est}."),
        "gauge",
        labels,
        r.out_bps,
    );
}

/// Renders every metric.
pub fn render(input: &MetricsInput<'_>) -> String {
    let mut f = Families::default();
    let config = input.config;
    f.add("rvs_config_generation", "Generation of the config in force.", "gauge", &[], input.generation);
    f.add("rvs_services", "Virtual services in force.", "gauge", &[], config.services.len() as u64);
    let reals: usize = config.services.iter().map(|s| s.reals.len()).sum();
    f.add("rvs_real_servers", "Real servers the dataplane uses (health checks applied), over all services.", "gauge", &[], reals as u64);
    f.add("rvs_rate_estimator_samples_total", "Samples taken by the rate estimator (every 2 s).", "counter", &[], input.rates.samples());

    let view = stats_view(config, input.stats, input.rates);
    for svc in &view {
        let labels = [("protocol", svc.protocol.to_string()), ("vip", svc.vip.to_string()), ("port", svc.port.to_string())];
        let t = svc.traffic;
        f.add("rvs_service_connections_total", "Connections scheduled to the service.", "counter", &labels, t.conns);
        f.add("rvs_service_in_packets_total", "Packets client to real server.", "counter", &labels, t.in_pkts);
        f.add("rvs_service_out_packets_total", "Packets real server to client through rvs.", "counter", &labels, t.out_pkts);
        f.add("rvs_service_in_bytes_total", "Bytes client to real server.", "counter", &labels, t.in_bytes);
        f.add("rvs_service_out_bytes_total", "Bytes real server to client through rvs.", "counter", &labels, t.out_bytes);
        f.add("rvs_service_active_connections", "Connections in ESTABLISHED.", "gauge", &labels, u64::from(svc.active));
        f.add("rvs_service_inactive_connections", "Connections in other states.", "gauge", &labels, u64::from(svc.inactive));
        add_rates(&mut f, "rvs_service", "service", &labels, &svc.rates);
        let weights = weights_in_force(config, svc);
        for (i, r) in svc.reals.iter().enumerate() {
            let mut labels = labels.to_vec();
            labels.push(("real", format!("{}:{}", r.address, r.port)));
            let t = r.traffic;
            f.add("rvs_real_connections_total", "Connections scheduled to the real server.", "counter", &labels, t.conns);
            f.add("rvs_real_in_packets_total", "Packets client to real server.", "counter", &labels, t.in_pkts);
            f.add("rvs_real_out_packets_total", "Packets real server to client through rvs.", "counter", &labels, t.out_pkts);
            f.add("rvs_real_in_bytes_total", "Bytes client to real server.", "counter", &labels, t.in_bytes);
            f.add("rvs_real_out_bytes_total", "Bytes real server to client through rvs.", "counter", &labels, t.out_bytes);
            f.add("rvs_real_active_connections", "Connections in ESTABLISHED.", "gauge", &labels, u64::from(r.active));
            f.add("rvs_real_inactive_connections", "Connections in other states.", "gauge", &labels, u64::from(r.inactive));
            f.add(
                "rvs_real_weight",
                "Scheduling weight in force (0 while inhibited).",
                "gauge",
                &labels,
                u64::from(weights.get(i).copied().unwrap_or(0)),
            );
            add_rates(&mut f, "rvs_real", "real server", &labels, &r.rates);
        }
    }

    render_workers(&mut f, config, input.dataplane);
    render_ports_and_pool(&mut f, input.dataplane);
    render_vrrp(&mut f, input.ha);
    render_sync(&mut f, input.ha.get("sync").unwrap_or(&Value::Null));
    render_node_ipvs(&mut f, config, &view);
    f.render()
}

/// The weights of `svc`'s real servers in `config` (the effective config), in order.
fn weights_in_force(config: &Config, svc: &crate::api::ServiceStatsView) -> Vec<u32> {
    config
        .services
        .iter()
        .find(|s| s.protocol == svc.protocol && s.vip == svc.vip && s.port == svc.port)
        .map(|s| s.reals.iter().map(|r| r.weight).collect())
        .unwrap_or_default()
}

/// node_exporter's IPVS collector family, same names, types, labels and
/// meaning, so that dashboards and alerts written for IPVS directors work
/// on rvs unchanged: the totals over every virtual service (IPVS's
/// `/proc/net/ip_vs_stats`) and, per real server of the effective table,
/// active and inactive connections and weight (`/proc/net/ip_vs`). rvs has no
/// firewall-mark services: `local_mark` is always empty, as node_exporter
/// shows it for address services; `proto` is `TCP` or `UDP`.
fn render_node_ipvs(f: &mut Families, config: &Config, view: &[crate::api::ServiceStatsView]) {
    let sum = |g: fn(&TrafficCounters) -> u64| view.iter().map(|s| g(&s.traffic)).sum::<u64>();
    let totals: [(&str, &str, u64); 5] = [
        ("node_ipvs_connections_total", "Connections made, over every virtual service.", sum(|t| t.conns)),
        ("node_ipvs_incoming_packets_total", "Packets received (client to real server), over every virtual service.", sum(|t| t.in_pkts)),
        ("node_ipvs_outgoing_packets_total", "Packets sent (real server to client), over every virtual service.", sum(|t| t.out_pkts)),
        ("node_ipvs_incoming_bytes_total", "Bytes received (client to real server), over every virtual service.", sum(|t| t.in_bytes)),
        ("node_ipvs_outgoing_bytes_total", "Bytes sent (real server to client), over every virtual service.", sum(|t| t.out_bytes)),
    ];
    for (name, help, value) in totals {
        f.add(name, help, "counter", &[], value);
    }
    for svc in view {
        let weights = weights_in_force(config, svc);
        for (i, r) in svc.reals.iter().enumerate() {
            let labels = [
                ("local_address", svc.vip.to_string()),
                ("local_port", svc.port.to_string()),
                ("remote_address", r.address.to_string()),
                ("remote_port", r.port.to_string()),
                ("proto", svc.protocol.to_string().to_ascii_uppercase()),
                ("local_mark", String::new()),
            ];
            let by = "by virtual service (local) and real server (remote)";
            f.add(
                "node_ipvs_backend_connections_active",
                &format!("Active (ESTABLISHED) connections {by}."),
                "gauge",
                &labels,
                u64::from(r.active),
            );
            f.add(
                "node_ipvs_backend_connections_inactive",
                &format!("Inactive (not ESTABLISHED) connections {by}."),
                "gauge",
                &labels,
                u64::from(r.inactive),
            );
            f.add(
                "node_ipvs_backend_weight",
                &format!("Weight in force {by}."),
                "gauge",
                &labels,
                u64::from(weights.get(i).copied().unwrap_or(0)),
            );
        }
    }
}

/// The outcomes of received VRRP adverts in `rvs_vrrp_adverts_received_total`:
/// accepted, or the Keepalived statistic that counted its rejection.
const ADVERT_OUTCOMES: &[(&str, &str)] = &[
    ("accepted", "advert_rcvd"),
    ("auth_failure", "auth_failure"),
    ("authtype_mismatch", "authtype_mismatch"),
    ("invalid_authtype", "invalid_authtype"),
    ("advert_interval_err", "advert_interval_err"),
    ("invalid_type_rcvd", "invalid_type_rcvd"),
    ("packet_len_err", "packet_len_err"),
    ("checksum_err", "checksum_err"),
    ("ip_ttl_err", "ip_ttl_err"),
    ("version_err", "version_err"),
    ("vrid_other", "vrid_other"),
    ("peer_unknown", "peer_unknown"),
];

fn render_vrrp(f: &mut Families, ha: &Value) {
    let Some(instances) = ha.get("vrrp").and_then(Value::as_array) else {
        return;
    };
    for i in instances {
        let name = i.get("instance").and_then(Value::as_str).unwrap_or("?").to_string();
        let current = i.get("state").and_then(Value::as_str).unwrap_or("");
        for state in ["INIT", "BACKUP", "MASTER", "FAULT"] {
            let labels = [("vrrp_instance", name.clone()), ("state", state.to_string())];
            f.add(
                "rvs_vrrp_state",
                "1 for the VRRP instance's current state.",
                "gauge",
                &labels,
                u64::from(current.eq_ignore_ascii_case(state)),
            );
        }
        let labels = [("vrrp_instance", name.clone())];
        if let Some(p) = i.get("priority").and_then(Value::as_u64) {
            f.add("rvs_vrrp_priority", "Effective VRRP priority.", "gauge", &labels, p);
        }
        if let Some(stats) = i.get("stats").and_then(Value::as_object) {
            for (stat, v) in stats {
                let Some(v) = v.as_u64() else { continue };
                let labels = [("vrrp_instance", name.clone()), ("stat", stat.clone())];
                f.add("rvs_vrrp_stats_total", "VRRP statistics per instance, as Keepalived names them.", "counter", &labels, v);
            }
            let stat = |s: &str| stats.get(s).and_then(Value::as_u64).unwrap_or(0);
            f.add("rvs_vrrp_adverts_sent_total", "VRRP adverts sent by the instance.", "counter", &labels, stat("advert_sent"));
            for (outcome, s) in ADVERT_OUTCOMES {
                let labels = [("vrrp_instance", name.clone()), ("outcome", (*outcome).to_string())];
                f.add(
                    "rvs_vrrp_adverts_received_total",
                    "VRRP adverts received for the instance, by outcome (accepted, or the reason it was refused).",
                    "counter",
                    &labels,
                    stat(s),
                );
            }
        }
        let transitions = i.get("transitions");
        for state in ["INIT", "BACKUP", "MASTER", "FAULT"] {
            let labels = [("vrrp_instance", name.clone()), ("state", state.to_string())];
            let n = transitions.and_then(|t| t.get(state)).and_then(Value::as_u64).unwrap_or(0);
            f.add("rvs_vrrp_transitions_total", "Transitions of the VRRP instance into the state.", "counter", &labels, n);
        }
    }
}

/// The connection-sync counters ([`crate::sync::SyncCounters::to_json`] plus `master`).
fn render_sync(f: &mut Families, sync: &Value) {
    if sync.is_null() {
        return;
    }
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    f.add("rvs_sync_master", "1 while this director sends connection sync.", "gauge", &[], u64::from(sync["master"] == true));
    for direction in ["received", "sent"] {
        let labels = [("direction", direction.to_string())];
        f.add("rvs_sync_datagrams_total", "Connection-sync datagrams.", "counter", &labels, n(&sync["datagrams"][direction]));
    }
    f.add("rvs_sync_send_errors_total", "Sync datagrams that could not be sent.", "counter", &[], n(&sync["send_errors"]));
    f.add("rvs_sync_connections_installed_total", "Connections installed from the master's sync.", "counter", &[], n(&sync["installed"]));
    f.add("rvs_sync_bulk_answered_total", "Bulk resync requests answered.", "counter", &[], n(&sync["bulk_answered"]));
    if let Some(rejected) = sync["rejected"].as_object() {
        for (reason, v) in rejected {
            let labels = [("reason", reason.clone())];
            f.add("rvs_sync_rejected_total", "Sync datagrams dropped, by reason.", "counter", &labels, n(v));
        }
    }
}

/// Renders the per-real health-check metrics of `report` (labels: the
/// service's and `real`): `rvs_real_health_up`, `rvs_real_health_check_duration_seconds`
/// (the last round; absent before the first), `rvs_real_health_consecutive_failures`.
pub fn render_health(report: &HealthReport) -> String {
    let mut f = Families::default();
    for r in &report.reals {
        let labels = [
            ("protocol", r.service.protocol.to_string()),
            ("vip", r.service.vip.to_string()),
            ("port", r.service.port.to_string()),
            ("real", format!("{}:{}", r.address, r.port)),
        ];
        let up = u64::from(r.state == "up");
        f.add("rvs_real_health_up", "1 while the real server's health checks pass, else 0.", "gauge", &labels, up);
        if let Some(seconds) = r.last_duration {
            f.sample(
                "rvs_real_health_check_duration_seconds",
                "Duration of the last round of the real server's health checks (retries included).",
                "gauge",
                &labels,
                seconds,
            );
        }
        f.add(
            "rvs_real_health_consecutive_failures",
            "Failed rounds of health checks in a row (0 after a passed round).",
            "gauge",
            &labels,
            r.consecutive_failures,
        );
    }
    for s in &report.services {
        let labels =
            [("protocol", s.service.protocol.to_string()), ("vip", s.service.vip.to_string()), ("port", s.service.port.to_string())];
        f.add(
            "rvs_service_quorum_up",
            "1 while the service holds its quorum (the weight of its up real servers), else 0.",
            "gauge",
            &labels,
            u64::from(s.quorum_state == "up"),
        );
        f.add(
            "rvs_service_sorry_server_active",
            "1 while the service's traffic goes to its sorry server (quorum lost), else 0.",
            "gauge",
            &labels,
            u64::from(s.sorry_server_active),
        );
        f.add(
            "rvs_service_quorum",
            "The service's quorum: the least total weight of up real servers.",
            "gauge",
            &labels,
            u64::from(s.quorum),
        );
        f.add("rvs_service_up_weight", "Total weight of the service's up real servers.", "gauge", &labels, s.weight_sum);
    }
    f.render()
}

/// `rvs_build_info` and the process metrics every Prometheus client library
/// exports (`process_cpu_seconds_total`, `process_resident_memory_bytes`,
/// `process_open_fds`, ...), read from `/proc/self`. A value that cannot be
/// read is left out.
pub fn render_process() -> String {
    let mut f = Families::default();
    let labels = [
        ("version", env!("CARGO_PKG_VERSION").to_string()),
        ("arch", std::env::consts::ARCH.to_string()),
        ("os", std::env::consts::OS.to_string()),
    ];
    f.add("rvs_build_info", "Always 1; the labels say which rvs build runs.", "gauge", &labels, 1);
    let Ok(me) = procfs::process::Process::myself() else {
        return f.render();
    };
    if let Ok(stat) = me.stat() {
        let ticks = procfs::ticks_per_second() as f64;
        if ticks > 0.0 {
            let cpu = (stat.utime + stat.stime) as f64 / ticks;
            f.sample("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", "counter", &[], cpu);
            if let Ok(boot) = procfs::boot_time_secs() {
                let start = boot as f64 + stat.starttime as f64 / ticks;
                f.sample("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", "gauge", &[], start);
            }
        }
        f.add("process_virtual_memory_bytes", "Virtual memory size in bytes.", "gauge", &[], stat.vsize);
        f.add("process_resident_memory_bytes", "Resident memory size in bytes.", "gauge", &[], stat.rss * procfs::page_size());
        f.add("process_threads", "Number of OS threads in the process.", "gauge", &[], stat.num_threads.max(0) as u64);
    }
    if let Ok(n) = me.fd_count() {
        f.add("process_open_fds", "Number of open file descriptors.", "gauge", &[], n as u64);
    }
    if let Ok(limits) = me.limits() {
        if let procfs::process::LimitValue::Value(n) = limits.max_open_files.soft_limit {
            f.add("process_max_fds", "Maximum number of open file descriptors.", "gauge", &[], n);
        }
    }
    f.render()
}

fn render_workers(f: &mut Families, config: &Config, dp: &Value) {
    let Some(workers) = dp.get("workers").and_then(Value::as_array) else {
        return;
    };
    for (index, w) in workers.iter().enumerate() {
        let id = w.get("worker").and_then(Value::as_u64).unwrap_or(index as u64);
        let labels = [("worker", id.to_string())];
        f.add(
            "rvs_worker_connection_table_size",
            "Connection table capacity of the worker.",
            "gauge",
            &labels,
            u64::from(config.conn_table_size),
        );
        let gauge = |v: &Value, key: &str| v.get(key).and_then(Value::as_u64).unwrap_or(0);
        if let Some(ring) = w.get("redirect_ring") {
            f.add(
                "rvs_worker_redirect_ring_queued",
                "Packets waiting in the redirect rings towards the worker (from the workers that received them).",
                "gauge",
                &labels,
                gauge(ring, "queued"),
            );
            f.add(
                "rvs_worker_redirect_ring_capacity",
                "Capacity of the redirect rings towards the worker.",
                "gauge",
                &labels,
                gauge(ring, "capacity"),
            );
        }
        if let Some(backlog) = w.get("sync_backlog") {
            f.add(
                "rvs_worker_sync_backlog",
                "Connection-sync updates of the worker waiting for the sync sender.",
                "gauge",
                &labels,
                gauge(backlog, "queued"),
            );
            f.add(
                "rvs_worker_sync_backlog_capacity",
                "Capacity of the worker's connection-sync ring.",
                "gauge",
                &labels,
                gauge(backlog, "capacity"),
            );
        }
        if let Some(hz) = dp.get("tsc_hz").and_then(Value::as_u64) {
            f.add("rvs_worker_tsc_hz", "TSC ticks per second (busy_cycles / tsc_hz = busy seconds).", "gauge", &labels, hz);
        }
        let Some(counters) = w.get("counters").and_then(Value::as_object) else {
            continue;
        };
        for (name, value) in counters {
            let v = value.as_u64().unwrap_or(0);
            match name.as_str() {
                "rx_packets" | "rx_bytes" | "tx_packets" | "tx_bytes" => {
                    f.add(&format!("rvs_worker_{name}_total"), &format!("Worker {}.", name.replace('_', " ")), "counter", &labels, v)
                }
                "conn_active" => f.add("rvs_worker_connections", "Connection table entries in use.", "gauge", &labels, v),
                "conn_active_ipv6" => {
                    f.add("rvs_worker_connections_ipv6", "IPv6 (and NAT64) connection table entries in use.", "gauge", &labels, v)
                }
                "generation" => f.add("rvs_worker_generation", "Config generation the worker runs.", "gauge", &labels, v),
                // Two gauges among the SYN-flood counters (deploy/docs/synflood.md).
                "syn_flood_pressure" => f.add(
                    "rvs_worker_syn_flood_pressure",
                    "1 while the worker is under SYN-flood table pressure (syn_flood thresholds), else 0.",
                    "gauge",
                    &labels,
                    v,
                ),
                "conn_syn_recv" => {
                    f.add("rvs_worker_connections_syn_recv", "TCP connections in SYN_RECV in the worker's table.", "gauge", &labels, v)
                }
                "redirect_out" => f.add(
                    "rvs_worker_redirect_out_total",
                    "Packets handed to the worker that owns their connection.",
                    "counter",
                    &labels,
                    v,
                ),
                "redirect_in" => f.add(
                    "rvs_worker_redirect_in_total",
                    "Packets received from another worker that owns their connection.",
                    "counter",
                    &labels,
                    v,
                ),
                _ => {
                    if let Some(reason) = name.strip_prefix("drop_") {
                        let labels = [("worker", id.to_string()), ("reason", reason.to_string())];
                        f.add("rvs_worker_drops_total", "Packets dropped, by reason.", "counter", &labels, v);
                    } else {
                        let part = metric_part(name);
                        f.add(&format!("rvs_worker_{part}_total"), &format!("Worker counter {name}."), "counter", &labels, v);
                    }
                }
            }
        }
    }
}

fn render_ports_and_pool(f: &mut Families, dp: &Value) {
    if let Some(ports) = dp.get("ports").and_then(Value::as_array) {
        const NAMES: &[(&str, &str, &str)] = &[
            ("ipackets", "rx_packets", "Packets received by the port."),
            ("opackets", "tx_packets", "Packets sent by the port."),
            ("ibytes", "rx_bytes", "Bytes received by the port."),
            ("obytes", "tx_bytes", "Bytes sent by the port."),
            ("imissed", "rx_missed", "Packets the port dropped on receive (no descriptors)."),
            ("ierrors", "rx_errors", "Receive errors."),
            ("oerrors", "tx_errors", "Transmit errors."),
            ("rx_nombuf", "rx_nombuf", "Receive mbuf allocation failures."),
        ];
        for p in ports {
            let name = p.get("name").and_then(Value::as_str).unwrap_or("?").to_string();
            let labels = [("interface", name)];
            if let Some(up) = p.get("link_up").and_then(Value::as_bool) {
                f.add("rvs_port_link_up", "1 while the port has carrier.", "gauge", &labels, u64::from(up));
            }
            let Some(stats) = p.get("stats") else { continue };
            for (field, metric, help) in NAMES {
                if let Some(v) = stats.get(*field).and_then(Value::as_u64) {
                    f.add(&format!("rvs_port_{metric}_total"), help, "counter", &labels, v);
                }
            }
        }
    }
    if let Some(pool) = dp.get("mempool") {
        let size = pool.get("size").and_then(Value::as_u64);
        let available = pool.get("available").and_then(Value::as_u64);
        if let Some(size) = size {
            f.add("rvs_mempool_size", "Packet buffers in the pool.", "gauge", &[], size);
        }
        if let Some(available) = available {
            f.add("rvs_mempool_available", "Packet buffers free in the pool.", "gauge", &[], available);
        }
        if let (Some(size), Some(available)) = (size, available) {
            f.add("rvs_mempool_in_use", "Packet buffers in use.", "gauge", &[], size.saturating_sub(available));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_label_values() {
        assert_eq!(escape(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape("x\ny"), "x\\ny");
        assert_eq!(metric_part("drop-no.room"), "drop_no_room");
    }

    #[test]
    fn sync_counters_become_metrics() {
        let counters = crate::sync::SyncCounters::default();
        counters.reject(crate::sync::Reason::BadAuth);
        let mut sync = counters.to_json();
        sync["master"] = serde_json::json!(true);
        let mut f = Families::default();
        render_sync(&mut f, &sync);
        let text = f.render();
        assert!(text.contains("rvs_sync_rejected_total{reason=\"bad_auth\"} 1\n"), "{text}");
        assert!(text.contains("rvs_sync_rejected_total{reason=\"bulk_rate_limited\"} 0\n"), "{text}");
        assert!(text.contains("rvs_sync_datagrams_total{direction=\"received\"} 0\n"), "{text}");
        assert!(text.contains("rvs_sync_master 1\n"), "{text}");
        let mut none = Families::default();
        render_sync(&mut none, &Value::Null);
        assert_eq!(none.render(), "");
    }

    #[test]
    fn vrrp_adverts_and_transitions_become_metrics() {
        let ha = serde_json::json!({ "vrrp": [ { "instance": "VI_1", "state": "MASTER", "priority": 150,
            "transitions": { "BACKUP": 1, "MASTER": 1 },
            "stats": { "advert_rcvd": 7, "advert_sent": 40, "auth_failure": 2, "become_master": 1 } } ] });
        let mut f = Families::default();
        render_vrrp(&mut f, &ha);
        let text = f.render();
        for line in [
            "rvs_vrrp_state{vrrp_instance=\"VI_1\",state=\"MASTER\"} 1",
            "rvs_vrrp_state{vrrp_instance=\"VI_1\",state=\"BACKUP\"} 0",
            "rvs_vrrp_adverts_sent_total{vrrp_instance=\"VI_1\"} 40",
            "rvs_vrrp_adverts_received_total{vrrp_instance=\"VI_1\",outcome=\"accepted\"} 7",
            "rvs_vrrp_adverts_received_total{vrrp_instance=\"VI_1\",outcome=\"auth_failure\"} 2",
            "rvs_vrrp_adverts_received_total{vrrp_instance=\"VI_1\",outcome=\"peer_unknown\"} 0",
            "rvs_vrrp_transitions_total{vrrp_instance=\"VI_1\",state=\"MASTER\"} 1",
            "rvs_vrrp_transitions_total{vrrp_instance=\"VI_1\",state=\"FAULT\"} 0",
            "rvs_vrrp_stats_total{vrrp_instance=\"VI_1\",stat=\"become_master\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing `{line}` in\n{text}");
        }
        // Every refusal Keepalived counts is an outcome.
        let named: Vec<&str> = crate::vrrp::VrrpStats::default().named().iter().map(|(n, _)| *n).collect();
        for (_, stat) in ADVERT_OUTCOMES {
            assert!(named.contains(stat), "{stat}");
        }
    }

    #[test]
    fn build_and_process_metrics() {
        let text = render_process();
        assert!(text.contains(&format!("rvs_build_info{{version=\"{}\",", env!("CARGO_PKG_VERSION"))), "{text}");
        for name in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_start_time_seconds",
        ] {
            let value: f64 = text
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name} ")))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in\n{text}"));
            assert!(value >= 0.0, "{name} {value}");
        }
        assert!(text.contains("# TYPE process_cpu_seconds_total counter\n"), "{text}");
    }

    #[test]
    fn families_are_grouped_with_one_header() {
        let mut f = Families::default();
        f.add("rvs_x_total", "X.", "counter", &[("worker", "0".into())], 1);
        f.add("rvs_y", "Y.", "gauge", &[], 2);
        f.add("rvs_x_total", "X.", "counter", &[("worker", "1".into())], 3);
        assert_eq!(
            f.render(),
            "# HELP rvs_x_total X.\n# TYPE rvs_x_total counter\nrvs_x_total{worker=\"0\"} 1\nrvs_x_total{worker=\"1\"} 3\n\
             # HELP rvs_y Y.\n# TYPE rvs_y gauge\nrvs_y 2\n"
        );
    }

    #[test]
    fn worker_busy_cycles_and_tsc_hz_become_metrics() {
        let config = Config::from_json(
            r#"{ "main_lcore": 0, "workers": [1], "ports": [ { "name": "a", "device": "net_null0", "addresses": ["10.0.0.1/24"] } ] }"#,
        )
        .expect("valid");
        let dp = serde_json::json!({ "tsc_hz": 2_000_000_000u64,
            "workers": [ { "worker": 0, "counters": { "busy_cycles": 1234, "busy_frames": 10 } } ] });
        let mut f = Families::default();
        render_workers(&mut f, &config, &dp);
        let text = f.render();
        assert!(text.contains("rvs_worker_busy_cycles_total{worker=\"0\"} 1234\n"), "{text}");
        assert!(text.contains("rvs_worker_busy_frames_total{worker=\"0\"} 10\n"), "{text}");
        assert!(text.contains("rvs_worker_tsc_hz{worker=\"0\"} 2000000000\n"), "{text}");
        assert!(!text.contains("rvs_worker_sync_backlog"), "no sync, no backlog: {text}");
    }

    #[test]
    fn redirect_ring_and_sync_backlog_become_gauges() {
        let config = Config::from_json(
            r#"{ "main_lcore": 0, "workers": [1, 2], "ports": [ { "name": "a", "device": "net_null0", "addresses": ["10.0.0.1/24"] } ] }"#,
        )
        .expect("valid");
        let dp = serde_json::json!({ "workers": [
            { "worker": 0, "counters": {}, "redirect_ring": { "queued": 7, "capacity": 2048 }, "sync_backlog": { "queued": 3, "capacity": 16384 } },
            { "worker": 1, "counters": {}, "redirect_ring": { "queued": 0, "capacity": 2048 }, "sync_backlog": { "queued": 0, "capacity": 16384 } } ] });
        let mut f = Families::default();
        render_workers(&mut f, &config, &dp);
        let text = f.render();
        assert!(text.contains("rvs_worker_redirect_ring_queued{worker=\"0\"} 7\n"), "{text}");
        assert!(text.contains("rvs_worker_redirect_ring_capacity{worker=\"1\"} 2048\n"), "{text}");
        assert!(text.contains("rvs_worker_sync_backlog{worker=\"0\"} 3\n"), "{text}");
        assert!(text.contains("rvs_worker_sync_backlog_capacity{worker=\"1\"} 16384\n"), "{text}");
        assert!(text.contains("# TYPE rvs_worker_sync_backlog gauge\n"), "{text}");
    }

    /// The families (`# TYPE` lines) a worker whose counters are `counters`
    /// becomes, but for the table size every worker has.
    fn worker_families(counters: Value) -> Vec<(String, String)> {
        let config = Config::from_json(
            r#"{ "main_lcore": 0, "workers": [1], "ports": [ { "name": "a", "device": "net_null0", "addresses": ["10.0.0.1/24"] } ] }"#,
        )
        .expect("valid");
        let dp = serde_json::json!({ "workers": [ { "worker": 0, "counters": counters } ] });
        let mut f = Families::default();
        render_workers(&mut f, &config, &dp);
        f.render()
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_once(' '))
            .map(|(name, kind)| (name.to_string(), kind.to_string()))
            // Every worker has it, whatever its counters.
            .filter(|(name, _)| name != "rvs_worker_connection_table_size")
            .collect()
    }

    #[test]
    fn every_worker_counter_is_a_documented_metric() {
        use rvs_dataplane::stats::Counter;
        const DOC: &str = include_str!("../../deploy/docs/metrics.md");
        let reasons = DOC.lines().find(|l| l.starts_with("| `rvs_worker_drops_total`")).expect("drops row in metrics.md");
        for c in Counter::ALL {
            let name = c.name();
            let families = worker_families(serde_json::json!({ name: 7 }));
            let [(family, _)] = families.as_slice() else {
                panic!("counter {name} became {families:?}, not one family");
            };
            let row = DOC
                .lines()
                .find(|l| l.starts_with('|') && l.split('|').nth(1).is_some_and(|cell| cell.contains(&format!("`{family}`"))))
                .unwrap_or_else(|| panic!("{family} (counter {name}) is not documented in metrics.md"));
            assert!(row.contains(if family.ends_with("_total") { "| counter |" } else { "| gauge |" }), "{family}: type in {row}");
            if let Some(reason) = name.strip_prefix("drop_") {
                assert_eq!(family, "rvs_worker_drops_total");
                assert!(reasons.contains(&format!("`{reason}`")), "drop reason `{reason}` is not listed in metrics.md");
            }
        }
    }

    #[test]
    fn syn_flood_gauges_are_gauges() {
        let families = worker_families(serde_json::json!({ "syn_flood_pressure": 1, "conn_syn_recv": 12, "syn_cookie_sent": 3 }));
        let mut families: Vec<(&str, &str)> = families.iter().map(|(n, k)| (n.as_str(), k.as_str())).collect();
        families.sort();
        assert_eq!(
            families,
            vec![
                ("rvs_worker_connections_syn_recv", "gauge"),
                ("rvs_worker_syn_cookie_sent_total", "counter"),
                ("rvs_worker_syn_flood_pressure", "gauge")
            ]
        );
    }

    #[test]
    fn syn_flood_pressure_and_syn_recv_entries_are_gauges() {
        let config = Config::from_json(
            r#"{ "main_lcore": 0, "workers": [1, 2], "ports": [ { "name": "a", "device": "net_null0", "addresses": ["10.0.0.1/24"] } ] }"#,
        )
        .expect("valid");
        let dp = serde_json::json!({ "workers": [
            { "worker": 0, "counters": { "syn_flood_pressure": 1, "conn_syn_recv": 3000, "syn_flood_pressure_on": 2, "conn_evicted_syn_recv": 9, "drop_new_conn_rate": 4 } },
            { "worker": 1, "counters": { "syn_flood_pressure": 0, "conn_syn_recv": 12 } } ] });
        let mut f = Families::default();
        render_workers(&mut f, &config, &dp);
        let text = f.render();
        assert!(text.contains("# TYPE rvs_worker_syn_flood_pressure gauge\n"), "{text}");
        assert!(text.contains("rvs_worker_syn_flood_pressure{worker=\"0\"} 1\n"), "{text}");
        assert!(text.contains("rvs_worker_syn_flood_pressure{worker=\"1\"} 0\n"), "{text}");
        assert!(text.contains("# TYPE rvs_worker_connections_syn_recv gauge\n"), "{text}");
        assert!(text.contains("rvs_worker_connections_syn_recv{worker=\"0\"} 3000\n"), "{text}");
        assert!(text.contains("rvs_worker_syn_flood_pressure_on_total{worker=\"0\"} 2\n"), "{text}");
        assert!(text.contains("rvs_worker_conn_evicted_syn_recv_total{worker=\"0\"} 9\n"), "{text}");
        assert!(text.contains("rvs_worker_drops_total{worker=\"0\",reason=\"new_conn_rate\"} 4\n"), "{text}");
    }
}
