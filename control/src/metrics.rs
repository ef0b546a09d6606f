//! `GET /metrics`: Prometheus text exposition format 0.0.4.
//!
//! Every metric is prefixed `rvs_`. Labels: `protocol`, `vip`, `port` (the
//! virtual service), `real` (`address:port` of a real server), `worker` (the
//! worker index), `reason` (why packets were dropped), `interface` (a
//! dataplane port's name from the config), `direction` and `reason` of the
//! connection-sync counters (present only while sync runs).
//!
//! | metric | type | labels | what |
//! |---|---|---|---|
//! | `rvs_service_connections_total` | counter | service | connections scheduled |
//! | `rvs_service_in_packets_total`, `rvs_service_out_packets_total` | counter | service | packets client→real, real→client |
//! | `rvs_service_in_bytes_total`, `rvs_service_out_bytes_total` | counter | service | bytes, likewise |
//! | `rvs_service_active_connections`, `rvs_service_inactive_connections` | gauge | service | ESTABLISHED / other connections |
//! | `rvs_service_cps`, `rvs_service_in_pps`, `rvs_service_out_pps`, `rvs_service_in_bps`, `rvs_service_out_bps` | gauge | service | rates as `ipvsadm --rate` (bps = bytes/s), see [`crate::rate`] |
//! | `rvs_real_*` | as above | service + `real` | the same per real server of the effective config (health checks applied: a failed real is absent, an inhibited one has weight 0, the sorry server is listed while in use), plus `rvs_real_weight` (the weight in force) |
//! | `rvs_real_health_up` | gauge | service + `real` | 1 while the checks of a checked real server pass, else 0 |
//! | `rvs_real_health_check_duration_seconds` | gauge | service + `real` | duration of its last round of checks (retries included) |
//! | `rvs_real_health_consecutive_failures` | gauge | service + `real` | failed rounds in a row |
//! | `rvs_worker_rx_packets_total`, `..._rx_bytes_total`, `..._tx_packets_total`, `..._tx_bytes_total` | counter | `worker` | frames and bytes |
//! | `rvs_worker_drops_total` | counter | `worker`, `reason` | dropped packets by reason (`no_service`, `conn_table_full`, ...) |
//! | `rvs_worker_redirect_out_total`, `rvs_worker_redirect_in_total` | counter | `worker` | packets handed to / taken from the worker owning their connection |
//! | `rvs_worker_connections` | gauge | `worker` | connection table entries in use |
//! | `rvs_worker_connection_table_size` | gauge | `worker` | connection table capacity |
//! | `rvs_worker_<counter>_total` | counter | `worker` | every other worker counter, by its name |
//! | `rvs_worker_generation` | gauge | `worker` | config generation the worker runs |
//! | `rvs_worker_busy_cycles_total`, `rvs_worker_busy_frames_total` | counter | `worker` | TSC cycles of poll iterations that handled frames, and those frames (their ratio: cycles per packet) |
//! | `rvs_worker_tsc_hz` | gauge | `worker` | TSC ticks per second (`rate(rvs_worker_busy_cycles_total) / rvs_worker_tsc_hz`: the worker's busy fraction) |
//! | `rvs_mempool_size`, `rvs_mempool_available`, `rvs_mempool_in_use` | gauge | | packet buffers |
//! | `rvs_port_rx_packets_total`, ... | counter | `interface` | the PMD's port counters (`ipackets`→`rx_packets`, `imissed`→`rx_missed`, ...) |
//! | `rvs_port_link_up` | gauge | `interface` | 1 while the port has carrier |
//! | `rvs_vrrp_state` | gauge | `instance`, `state` | 1 for the instance's current state (INIT, BACKUP, MASTER, FAULT) |
//! | `rvs_vrrp_priority` | gauge | `instance` | effective priority |
//! | `rvs_vrrp_stats_total` | counter | `instance`, `stat` | Keepalived's per-instance statistics (`advert_rcvd`, `auth_failure`, ... see [`crate::vrrp::stats`]) |
//! | `rvs_config_generation`, `rvs_services`, `rvs_real_servers` | gauge | | the config in force (`rvs_real_servers`: the reals the dataplane uses) |
//! | `rvs_rate_estimator_samples_total` | counter | | samples the rate estimator took |
//! | `rvs_sync_master` | gauge | | 1 while this director sends connection sync (its sync instance is MASTER) |
//! | `rvs_sync_datagrams_total` | counter | `direction` (`received`, `sent`) | connection-sync datagrams |
//! | `rvs_sync_send_errors_total` | counter | | sync datagrams the kernel refused to send |
//! | `rvs_sync_connections_installed_total` | counter | | connections installed from the master's sync |
//! | `rvs_sync_bulk_answered_total` | counter | | bulk resync requests answered |
//! | `rvs_sync_rejected_total` | counter | `reason` (`not_peer`, `bad_auth`, `replay`, `malformed`, `version`, `sync_id`, `bulk_rate_limited`) | sync datagrams dropped |
//!
//! Counters restart at 0 when zeroed (ipvsadm `-Z`); Prometheus treats that
//! as a counter reset.

use std::collections::BTreeMap;
use std::fmt::Write;

use rvs_dataplane::stats::ServiceStats;
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

fn add_rates(f: &mut Families, prefix: &str, what: &str, labels: &[(&str, String)], r: &Rates) {
    f.add(&format!("{prefix}_cps"), &format!("Connections per second of the {what} (IPVS estimator)."), "gauge", labels, r.cps);
    f.add(&format!("{prefix}_in_pps"), &format!("Packets per second client to real server, {what}."), "gauge", labels, r.in_pps);
    f.add(&format!("{prefix}_out_pps"), &format!("Packets per second real server to client, {what}."), "gauge", labels, r.out_pps);
    f.add(&format!("{prefix}_in_bps"), &format!("Bytes per second client to real server, {what}."), "gauge", labels, r.in_bps);
    f.add(&format!("{prefix}_out_bps"), &format!("Bytes per second real server to client, {what}."), "gauge", labels, r.out_bps);
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

    for svc in stats_view(config, input.stats, input.rates) {
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
        let weights: Vec<u32> = config
            .services
            .iter()
            .find(|s| s.protocol == svc.protocol && s.vip == svc.vip && s.port == svc.port)
            .map(|s| s.reals.iter().map(|r| r.weight).collect())
            .unwrap_or_default();
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
    f.render()
}

fn render_vrrp(f: &mut Families, ha: &Value) {
    let Some(instances) = ha.get("vrrp").and_then(Value::as_array) else {
        return;
    };
    for i in instances {
        let name = i.get("instance").and_then(Value::as_str).unwrap_or("?").to_string();
        let current = i.get("state").and_then(Value::as_str).unwrap_or("");
        for state in ["INIT", "BACKUP", "MASTER", "FAULT"] {
            let labels = [("instance", name.clone()), ("state", state.to_string())];
            f.add(
                "rvs_vrrp_state",
                "1 for the VRRP instance's current state.",
                "gauge",
                &labels,
                u64::from(current.eq_ignore_ascii_case(state)),
            );
        }
        let labels = [("instance", name.clone())];
        if let Some(p) = i.get("priority").and_then(Value::as_u64) {
            f.add("rvs_vrrp_priority", "Effective VRRP priority.", "gauge", &labels, p);
        }
        if let Some(stats) = i.get("stats").and_then(Value::as_object) {
            for (stat, v) in stats {
                let Some(v) = v.as_u64() else { continue };
                let labels = [("instance", name.clone()), ("stat", stat.clone())];
                f.add("rvs_vrrp_stats_total", "VRRP statistics per instance, as Keepalived names them.", "counter", &labels, v);
            }
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
                "generation" => f.add("rvs_worker_generation", "Config generation the worker runs.", "gauge", &labels, v),
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
    }
}
