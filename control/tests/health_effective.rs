//! Health state is the effective state everywhere: rvsadm's listings,
//! `/api/v1/stats/services`, `/metrics` and `/api/v1/health` follow the
//! health overlay (as ipvsadm lists the kernel's table under Keepalived),
//! while `GET /api/v1/config` stays the operator's config; checks added or
//! changed through the API start, change and stop at once; checks that the
//! kernel cannot send (no exception path) are refused.
//!
//! The API server is the tests' (`common::Server`) with rvsd's overlay
//! ([`HaOverlay`]) and a real [`HealthEngine`] on a runtime of its own, wired
//! as rvsd wires them. The checks are MISC_CHECKs testing for a file per real
//! server, so a test turns a real server down or up by removing or creating
//! its file.

mod common;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Server;
use rvs_control::api::{ApiOptions, Overlay};
use rvs_control::appliance::HaOverlay;
use rvs_control::config::{Config, ConfigError};
use rvs_control::health::{HealthEngine, RealKey};
use rvs_control::ipvsadm::{run, Client};
use rvs_dataplane::snapshot::{Protocol, ServiceKey};
use serde_json::{json, Value};

/// Service :80 (reals .11 with inhibit_on_failure, .12 without, .13 unchecked)
/// and :443 (quorum 2, sorry server 10.1.0.99:8443) on a port with a `tap`.
fn config(dir: &Path) -> Config {
    let misc = |n: u8| {
        json!({ "checks": [ { "type": "misc_check", "path": format!("test -e {}", dir.join(format!("up-{n}")).display()),
                              "timeout": 2, "retry": 0 } ] })
    };
    let mut inhibited = misc(11);
    inhibited["inhibit_on_failure"] = json!(true);
    let text = json!({
        "workers": [1, 2],
        "conn_table_size": 65536,
        "ports": [ { "name": "lan0", "device": "net_ring0", "addresses": ["10.0.0.1/24", "10.1.0.1/24"], "tap": "rvs0" } ],
        "services": [
            { "protocol": "tcp", "vip": "10.0.0.100", "port": 80, "scheduler": "rr", "forward": "nat",
              "health": { "delay_loop": 0.05 },
              "reals": [ { "address": "10.1.0.11", "weight": 3, "health": inhibited },
                         { "address": "10.1.0.12", "weight": 2, "health": misc(12) },
                         { "address": "10.1.0.13", "weight": 1 } ] },
            { "protocol": "tcp", "vip": "10.0.0.100", "port": 443, "scheduler": "wrr", "forward": "dr",
              "health": { "delay_loop": 0.05, "quorum": 2,
                          "sorry_server": { "address": "10.1.0.99", "port": 8443, "forward": "nat" } },
              "reals": [ { "address": "10.1.0.21", "health": misc(21) }, { "address": "10.1.0.22", "health": misc(22) } ] }
        ]
    });
    Config::from_json(&text.to_string()).expect("valid config")
}

/// The API server with rvsd's health overlay and a running engine.
struct Rig {
    server: Server,
    engine: Arc<parking_lot::Mutex<HealthEngine>>,
    dir: tempfile::TempDir,
    // Last: the engine's tasks run here until the rig is dropped.
    _runtime: tokio::runtime::Runtime,
}

impl Rig {
    fn start(make: impl FnOnce(&Path) -> Config, up: &[u8]) -> Rig {
        let dir = tempfile::tempdir().expect("temp dir");
        for n in up {
            std::fs::write(dir.path().join(format!("up-{n}")), "").expect("flag file");
        }
        let config = make(dir.path());
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        let server = Server::start(config.clone(), ApiOptions::default());
        let overlay = HaOverlay::new(&config);
        let overlay_dyn: Arc<dyn Overlay> = overlay.clone();
        server.state.set_overlay(overlay_dyn);
        let state = Arc::clone(&server.state);
        let engine = runtime.block_on(async move {
            // As rvsd's start_ha: every health change rebuilds the snapshot.
            let (tx, mut rx) = tokio::sync::watch::channel(0u64);
            let engine = Arc::new(parking_lot::Mutex::new(HealthEngine::start(&config, tx)));
            overlay.set_health(Arc::clone(&engine));
            tokio::spawn(async move {
                while rx.changed().await.is_ok() {
                    let _ = state.republish("health check state changed").await;
                }
            });
            engine
        });
        Rig { server, engine, dir, _runtime: runtime }
    }

    fn client(&self) -> Client {
        Client::new(&self.server.url(), None)
    }

    fn flag(&self, n: u8) -> PathBuf {
        self.dir.path().join(format!("up-{n}"))
    }

    fn set_up(&self, n: u8, up: bool) {
        if up {
            std::fs::write(self.flag(n), "").expect("create flag");
        } else {
            std::fs::remove_file(self.flag(n)).expect("remove flag");
        }
    }

    fn get(&self, path: &str) -> Value {
        let resp = ureq::get(&format!("{}{path}", self.server.url())).call().expect("GET");
        resp.into_json().expect("json")
    }

    fn text(&self, path: &str) -> String {
        ureq::get(&format!("{}{path}", self.server.url())).call().expect("GET").into_string().expect("text")
    }

    /// The `/api/v1/health` entry of real `address` of service `port`.
    fn real(&self, port: u16, address: &str) -> Value {
        let h = self.get("/api/v1/health");
        h["reals"]
            .as_array()
            .and_then(|rs| rs.iter().find(|r| r["service"]["port"] == port && r["address"] == address).cloned())
            .unwrap_or(Value::Null)
    }

    /// Waits until the health report says `address` of `port` is `state`
    /// after at least `rounds` rounds.
    fn wait_real(&self, port: u16, address: &str, state: &str, rounds: u64) {
        let start = Instant::now();
        loop {
            let r = self.real(port, address);
            if r["state"] == state && r["rounds"].as_u64().unwrap_or(0) >= rounds {
                return;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "{address} of :{port} not {state}: {r}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until `cond` holds for the last published snapshot.
    fn wait_published(&self, what: &str, cond: impl Fn(&rvs_dataplane::snapshot::Snapshot) -> bool) {
        let start = Instant::now();
        loop {
            if self.server.dataplane.published.lock().last().is_some_and(|s| cond(s)) {
                return;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "never published: {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn rvsadm(&self, line: &str) -> String {
        let args: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        let mut out = Vec::new();
        run(&args, &self.client(), &mut std::io::empty(), &mut out).unwrap_or_else(|e| panic!("rvsadm {line}: {}", e.message));
        String::from_utf8(out).expect("utf-8")
    }
}

/// A real server line of `ipvsadm -Ln`: ipvsadm.c's `"  -> %-28s %-7s %-6d %-10u %-10u\n"`.
fn row(addr: &str, forward: &str, weight: u32) -> String {
    format!("  -> {addr:<28} {forward:<7} {weight:<6} {:<10} {:<10}\n", 0, 0)
}

/// `ipvsadm -Ln` of the rig's two services with these real server lines.
fn listing(http: &[String], https: &[String]) -> String {
    format!(
        "IP Virtual Server version {} (size=131072)\n\
         Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n\
         TCP  10.0.0.100:80 rr\n{}TCP  10.0.0.100:443 wrr\n{}",
        env!("CARGO_PKG_VERSION"),
        http.concat(),
        https.concat()
    )
}

fn service_key(port: u16) -> ServiceKey {
    ServiceKey { protocol: Protocol::Tcp, vip: Ipv4Addr::new(10, 0, 0, 100).into(), port }
}

/// `(address:port, weight)` of service `port` in the last published snapshot.
fn published_reals(s: &rvs_dataplane::snapshot::Snapshot, port: u16) -> Vec<(String, u32)> {
    s.services
        .iter()
        .find(|x| x.key == service_key(port))
        .map(|x| x.reals.iter().map(|r| (format!("{}:{}", r.addr, r.port), r.weight)).collect())
        .unwrap_or_default()
}

/// `(address, port)` of the reals of service `port` in `/api/v1/stats/services`.
fn stats_reals(stats: &Value, port: u16) -> Vec<String> {
    stats
        .as_array()
        .and_then(|a| a.iter().find(|s| s["port"] == port))
        .and_then(|s| s["reals"].as_array())
        .map(|rs| rs.iter().map(|r| format!("{}:{}", r["address"].as_str().unwrap_or("?"), r["port"])).collect())
        .unwrap_or_default()
}

/// The value of the `/metrics` sample `name{...labels}` of real `real` of service `port`.
fn metric(text: &str, name: &str, port: u16, real: &str) -> Option<String> {
    let prefix = format!("{name}{{protocol=\"tcp\",vip=\"10.0.0.100\",port=\"{port}\",real=\"{real}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&prefix).map(str::to_string))
}

#[test]
fn listings_stats_and_metrics_show_the_effective_table() {
    let rig = Rig::start(config, &[11, 12, 21, 22]);
    for (port, addr) in [(80, "10.1.0.11"), (80, "10.1.0.12"), (443, "10.1.0.21"), (443, "10.1.0.22")] {
        rig.wait_real(port, addr, "up", 1);
    }
    let all_up = listing(
        &[row("10.1.0.11:80", "Masq", 3), row("10.1.0.12:80", "Masq", 2), row("10.1.0.13:80", "Masq", 1)],
        &[row("10.1.0.21:443", "Route", 1), row("10.1.0.22:443", "Route", 1)],
    );
    assert_eq!(rig.rvsadm("-Ln"), all_up);
    let configured = rig.get("/api/v1/config");

    // .11 fails with inhibit_on_failure: listed at weight 0.
    rig.set_up(11, false);
    rig.wait_real(80, "10.1.0.11", "down", 1);
    rig.wait_published(".11 at weight 0", |s| published_reals(s, 80).contains(&("10.1.0.11:80".into(), 0)));
    let inhibited = listing(
        &[row("10.1.0.11:80", "Masq", 0), row("10.1.0.12:80", "Masq", 2), row("10.1.0.13:80", "Masq", 1)],
        &[row("10.1.0.21:443", "Route", 1), row("10.1.0.22:443", "Route", 1)],
    );
    assert_eq!(rig.rvsadm("-Ln"), inhibited);

    // .12 fails without it: its row is gone, from the listing, the stats and the metrics.
    rig.set_up(12, false);
    rig.wait_real(80, "10.1.0.12", "down", 1);
    rig.wait_published(".12 removed", |s| published_reals(s, 80).len() == 2);
    let removed = listing(
        &[row("10.1.0.11:80", "Masq", 0), row("10.1.0.13:80", "Masq", 1)],
        &[row("10.1.0.21:443", "Route", 1), row("10.1.0.22:443", "Route", 1)],
    );
    assert_eq!(rig.rvsadm("-Ln"), removed);
    let one = rig.rvsadm("-Ln -t 10.0.0.100:80");
    assert!(
        one.ends_with(&format!("TCP  10.0.0.100:80 rr\n{}{}", row("10.1.0.11:80", "Masq", 0), row("10.1.0.13:80", "Masq", 1))),
        "{one}"
    );
    assert_eq!(stats_reals(&rig.get("/api/v1/stats/services"), 80), ["10.1.0.11:80", "10.1.0.13:80"]);
    let m = rig.text("/metrics");
    assert_eq!(metric(&m, "rvs_real_weight", 80, "10.1.0.11:80").as_deref(), Some("0"));
    assert_eq!(metric(&m, "rvs_real_weight", 80, "10.1.0.12:80"), None, "a removed real has no traffic metrics");
    assert_eq!(metric(&m, "rvs_real_health_up", 80, "10.1.0.12:80").as_deref(), Some("0"), "but its health is shown");
    assert_eq!(metric(&m, "rvs_real_health_up", 80, "10.1.0.13:80"), None, "unchecked reals have no health");
    assert_eq!(metric(&m, "rvs_real_health_up", 443, "10.1.0.21:443").as_deref(), Some("1"));
    let failures: u64 =
        metric(&m, "rvs_real_health_consecutive_failures", 80, "10.1.0.12:80").and_then(|v| v.parse().ok()).expect("consecutive failures");
    assert!(failures >= 1, "{failures}");
    let took: f64 =
        metric(&m, "rvs_real_health_check_duration_seconds", 80, "10.1.0.12:80").and_then(|v| v.parse().ok()).expect("duration");
    assert!((0.0..2.0).contains(&took), "{took}");
    assert!(m.contains("# HELP rvs_real_servers Real servers the dataplane uses"), "{m}");
    assert!(m.contains("\nrvs_real_servers 4\n"), "2 + 2 reals in force: {m}");

    // :443 loses its quorum (2): the sorry server alone is listed, as a real
    // server with its forwarding method, and is what the dataplane runs.
    rig.set_up(21, false);
    rig.wait_real(443, "10.1.0.21", "down", 1);
    rig.wait_published("sorry server", |s| published_reals(s, 443) == [("10.1.0.99:8443".to_string(), 1)]);
    let sorry = listing(&[row("10.1.0.11:80", "Masq", 0), row("10.1.0.13:80", "Masq", 1)], &[row("10.1.0.99:8443", "Masq", 1)]);
    assert_eq!(rig.rvsadm("-Ln"), sorry);
    assert_eq!(stats_reals(&rig.get("/api/v1/stats/services"), 443), ["10.1.0.99:8443"]);
    assert_eq!(metric(&rig.text("/metrics"), "rvs_real_weight", 443, "10.1.0.99:8443").as_deref(), Some("1"));
    let eff = rig.get("/api/v1/config/effective");
    assert_eq!(eff["services"][1]["reals"], json!([{ "address": "10.1.0.99", "port": 8443, "weight": 1, "forward": "nat" }]));
    let health = rig.get("/api/v1/health");
    let svc = health["services"].as_array().and_then(|a| a.iter().find(|s| s["service"]["port"] == 443)).cloned();
    assert_eq!(svc.as_ref().map(|s| (&s["quorum_state"], &s["sorry_server_active"])), Some((&json!("lost"), &json!(true))));

    // The operator's config never changed, and rvsadm -S saves it.
    assert_eq!(rig.get("/api/v1/config"), configured);
    let saved = rig.rvsadm("-Sn");
    assert!(saved.contains("-a -t 10.0.0.100:80 -r 10.1.0.12:80 -m -w 2\n"), "{saved}");
    assert!(!saved.contains("10.1.0.99"), "{saved}");

    // Everything back: the listing is the configured table again.
    for n in [11, 12, 21] {
        rig.set_up(n, true);
    }
    rig.wait_published("all back", |s| published_reals(s, 80).len() == 3 && published_reals(s, 443).len() == 2);
    rig.wait_real(80, "10.1.0.11", "up", 1);
    assert_eq!(rig.rvsadm("-Ln"), all_up);
}

#[test]
fn the_health_endpoint_answers_with_and_without_checks() {
    // Without a health engine (no overlay): empty lists, not 404.
    let plain = Server::start(Config::from_json(common::EMPTY_CONFIG).expect("valid"), ApiOptions::default());
    let v: Value = ureq::get(&format!("{}/api/v1/health", plain.url())).call().expect("GET").into_json().expect("json");
    assert_eq!(v, json!({ "reals": [], "services": [] }));

    let rig = Rig::start(config, &[11, 12, 21]);
    rig.wait_real(80, "10.1.0.11", "up", 2);
    rig.wait_real(443, "10.1.0.22", "down", 2);
    let r = rig.real(443, "10.1.0.22");
    assert_eq!(
        (&r["state"], &r["weight"], &r["configured_weight"], &r["last_result"]),
        (&json!("down"), &json!(0), &json!(1), &json!("failure"))
    );
    assert!(r["consecutive_failures"].as_u64().unwrap_or(0) >= 2, "{r}");
    assert!(r["last_error"].as_str().is_some_and(|e| e.contains("MISC_CHECK")), "{r}");
    assert!(r["last_duration"].as_f64().is_some(), "{r}");
    let ok = rig.real(80, "10.1.0.11");
    assert_eq!(
        (&ok["state"], &ok["consecutive_failures"], &ok["in_pool"], &ok["checks"]),
        (&json!("up"), &json!(0), &json!(true), &json!(["MISC_CHECK"]))
    );
    let h = rig.get("/api/v1/health");
    assert_eq!(h["reals"].as_array().map(Vec::len), Some(4), "unchecked .13 is not listed: {h}");
    // /api/v1/ha carries the same report.
    assert_eq!(rig.get("/api/v1/ha")["health"]["reals"].as_array().map(Vec::len), Some(4));
}

fn key(port: u16, last: u8) -> RealKey {
    RealKey { service: service_key(port), address: Ipv4Addr::new(10, 1, 0, last).into(), port }
}

/// Sends a change through the API; returns the status and body.
fn send(rig: &Rig, method: &str, path: &str, body: &Value) -> (u16, Value) {
    let url = format!("{}{path}", rig.server.url());
    match ureq::request(method, &url).send_json(body) {
        Ok(r) => (r.status(), r.into_json().unwrap_or(Value::Null)),
        Err(ureq::Error::Status(s, r)) => (s, r.into_json().unwrap_or(Value::Null)),
        Err(e) => panic!("{method} {path}: {e}"),
    }
}

#[test]
fn checks_start_change_and_stop_with_the_config() {
    // No checks at start: the engine runs none (rvsd starts it anyway).
    let rig = Rig::start(
        |dir| {
            let mut c = config(dir);
            for s in &mut c.services {
                s.health = None;
                for r in &mut s.reals {
                    r.health = Default::default();
                }
            }
            c
        },
        &[14],
    );
    assert!(rig.engine.lock().running().is_empty());

    // A real added through the API with a check: running at once, first round soon.
    let check = json!([{ "type": "misc_check", "path": format!("test -e {}", rig.flag(14).display()), "retry": 0 }]);
    let (s, v) = send(
        &rig,
        "POST",
        "/api/v1/services/tcp/10.0.0.100/80/reals",
        &json!({ "address": "10.1.0.14", "weight": 5, "health": { "checks": check } }),
    );
    assert_eq!(s, 201, "{v}");
    assert_eq!(rig.engine.lock().running(), [key(80, 14)]);
    rig.wait_real(80, "10.1.0.14", "up", 1);

    // A check added to an existing real by PUT /api/v1/config (only health
    // changes: still a change), with the service's delay_loop short.
    let mut config: Config = serde_json::from_value(rig.get("/api/v1/config")).expect("config");
    config.services[0].health = Some(serde_json::from_value(json!({ "delay_loop": 0.05 })).expect("health"));
    config.services[0].reals[1].health = serde_json::from_value(json!({ "checks": [
        { "type": "misc_check", "path": format!("test -e {}", rig.flag(12).display()), "retry": 0 } ] }))
    .expect("real health");
    let (s, v) = send(&rig, "PUT", "/api/v1/config", &serde_json::to_value(&config).expect("json"));
    assert_eq!(s, 200, "{v}");
    assert!(v["changes"].as_array().is_some_and(|c| !c.is_empty()), "a health change is a change: {v}");
    assert_eq!(rig.engine.lock().running(), [key(80, 12), key(80, 14)]);
    rig.wait_real(80, "10.1.0.12", "down", 1);
    assert!(!rig.rvsadm("-Ln").contains("10.1.0.12:80"), "the failed real left the listing");

    // Changing one real's check keeps the other's task and state (its rounds go on).
    let rounds_14 = rig.real(80, "10.1.0.14")["rounds"].as_u64().unwrap_or(0);
    rig.set_up(12, true);
    let mut changed = config.clone();
    changed.services[0].reals[1].health.checks[0].connect_timeout = 3.0;
    let (s, v) = send(&rig, "PUT", "/api/v1/config", &serde_json::to_value(&changed).expect("json"));
    assert_eq!(s, 200, "{v}");
    rig.wait_real(80, "10.1.0.12", "up", 1);
    rig.wait_real(80, "10.1.0.14", "up", rounds_14 + 1);

    // rvsadm deletes a real: its check stops; the config's own checks remain.
    rig.rvsadm("-d -t 10.0.0.100:80 -r 10.1.0.14");
    assert_eq!(rig.engine.lock().running(), [key(80, 12)]);
    assert!(rig.real(80, "10.1.0.14").is_null());
    // A check removed through the API stops too.
    let (s, v) =
        send(&rig, "PUT", "/api/v1/services/tcp/10.0.0.100/80/reals/10.1.0.12/80", &json!({ "address": "10.1.0.12", "weight": 2 }));
    assert_eq!(s, 200, "{v}");
    assert!(rig.engine.lock().running().is_empty());
    assert!(rig.rvsadm("-Ln").contains(&row("10.1.0.12:80", "Masq", 2)), "unchecked: always in");
}

/// A config whose real 10.1.0.12 is checked by TCP_CHECK on a port without `tap`.
const NO_TAP: &str = r#"{
  "workers": [1, 2],
  "ports": [ { "name": "lan0", "device": "net_ring0", "addresses": ["10.0.0.1/24"] },
             { "name": "back", "device": "net_ring1", "addresses": ["10.1.0.1/24"] } ],
  "services": [ { "protocol": "tcp", "vip": "10.0.0.100", "port": 80,
                  "reals": [ { "address": "10.1.0.11" },
                             { "address": "10.1.0.12", "health": { "checks": [ { "type": "tcp_check" } ] } } ] } ]
}"#;

#[test]
fn checks_without_an_exception_path_are_refused() {
    let err = Config::from_json(NO_TAP).expect_err("refused");
    let config: Config = serde_json::from_str(NO_TAP).expect("parses");
    let ConfigError::Invalid { field, message } = &err else { panic!("{err:?}") };
    assert_eq!(field, "services[0].reals[1].health.checks[0]");
    assert!(message.contains("needs an exception path") && message.contains("set ports[1].tap"), "{message}");
    assert!(message.contains("port `back`"), "{message}");

    // --check-config refuses it (exit 2, the message names the field): rvsadm's,
    // which is rvsd's without DPDK (rvs_control::check).
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("rvsd.json");
    std::fs::write(&path, NO_TAP).expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rvsadm")).arg("--check-config").arg(&path).output().expect("rvsadm");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("services[0].reals[1].health.checks[0]: TCP_CHECK to 10.1.0.12:80 needs an exception path"), "{stderr}");

    // The API: 400 naming the field, nothing changed, nothing published.
    let mut good = config.clone();
    good.ports[1].tap = Some("rvs1".into());
    good.services[0].reals[1].health = Default::default();
    let rig = Rig::start(|_| good.clone(), &[]);
    let published = rig.server.dataplane.count();
    let before = rig.get("/api/v1/config");
    // Removing the tap is refused (restart-only: the TAP is created at start).
    let mut tapless: Config = serde_json::from_value(before.clone()).expect("config");
    tapless.ports[1].tap = None;
    let (s, v) = send(&rig, "PUT", "/api/v1/config", &serde_json::to_value(&tapless).expect("json"));
    assert_eq!((s, &v["field"]), (400, &json!("ports[1].tap")), "{v}");
    let mut unreachable_check = good.clone();
    unreachable_check.services[0].reals[1].health = serde_json::from_value(json!({ "checks": [
        { "type": "tcp_check", "connect_ip": "10.0.0.50" } ] }))
    .expect("health");
    let (s, v) = send(&rig, "PUT", "/api/v1/config", &serde_json::to_value(&unreachable_check).expect("json"));
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["field"], "services[0].reals[1].health.checks[0]");
    assert!(v["error"].as_str().is_some_and(|e| e.contains("through port `lan0`") && e.contains("set ports[0].tap")), "{v}");
    let (s, v) = send(
        &rig,
        "PUT",
        "/api/v1/services/tcp/10.0.0.100/80/reals/10.1.0.11/80",
        &json!({ "address": "10.1.0.11", "health": { "checks": [ { "type": "tcp_check", "connect_ip": "10.0.0.50" } ] } }),
    );
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["field"], "health.checks[0]", "relative to the body: {v}");
    assert!(
        v["error"].as_str().is_some_and(|e| e.starts_with("health.checks[0]: TCP_CHECK to 10.0.0.50:80 needs an exception path")),
        "{v}"
    );
    assert_eq!(rig.get("/api/v1/config"), before);
    assert!(rig.engine.lock().running().is_empty(), "no check started");
    assert_eq!(rig.server.dataplane.count(), published, "nothing was published");
}

#[test]
fn the_overview_events_and_quorum_metrics_follow_health() {
    let rig = Rig::start(config, &[11, 12, 21, 22]);
    for (port, addr) in [(80, "10.1.0.11"), (80, "10.1.0.12"), (443, "10.1.0.21"), (443, "10.1.0.22")] {
        rig.wait_real(port, addr, "up", 1);
    }
    let m = rig.text("/metrics");
    let labels = |port: u16| format!("{{protocol=\"tcp\",vip=\"10.0.0.100\",port=\"{port}\"}}");
    assert!(m.contains(&format!("\nrvs_service_quorum_up{} 1\n", labels(443))), "{m}");
    assert!(m.contains(&format!("\nrvs_service_sorry_server_active{} 0\n", labels(443))), "{m}");
    assert!(m.contains(&format!("\nrvs_service_quorum{} 2\n", labels(443))), "{m}");
    assert!(m.contains(&format!("\nrvs_service_up_weight{} 2\n", labels(443))), "{m}");

    // .12 fails (it leaves the pool), then :443 loses its quorum (the sorry server takes over).
    rig.set_up(12, false);
    rig.wait_real(80, "10.1.0.12", "down", 1);
    rig.set_up(21, false);
    rig.wait_real(443, "10.1.0.21", "down", 1);
    rig.wait_published("sorry server", |s| published_reals(s, 443) == [("10.1.0.99:8443".to_string(), 1)]);

    let o = rig.get("/api/v1/overview");
    let service = |port: u16| o["services"].as_array().and_then(|a| a.iter().find(|s| s["port"] == port).cloned()).unwrap_or(Value::Null);
    let real = |port: u16, addr: &str| {
        service(port)["reals"].as_array().and_then(|a| a.iter().find(|r| r["address"] == addr).cloned()).unwrap_or(Value::Null)
    };
    let brief = |r: Value| (r["state"].clone(), r["in_pool"].clone(), r["weight"].clone(), r["configured_weight"].clone());
    assert_eq!(brief(real(80, "10.1.0.11")), (json!("up"), json!(true), json!(3), json!(3)));
    assert_eq!(brief(real(80, "10.1.0.12")), (json!("down"), json!(false), json!(0), json!(2)));
    assert_eq!(brief(real(80, "10.1.0.13")), (json!("unchecked"), json!(true), json!(1), json!(1)));
    assert_eq!(brief(real(443, "10.1.0.21")), (json!("down"), json!(false), json!(0), json!(1)));
    assert_eq!(
        brief(real(443, "10.1.0.22")),
        (json!("up"), json!(false), json!(0), json!(1)),
        "up, but its service runs on the sorry server"
    );
    assert_eq!(brief(real(443, "10.1.0.99")), (json!("sorry"), json!(true), json!(1), Value::Null));
    assert_eq!(real(443, "10.1.0.99")["port"], 8443);
    assert_eq!(service(443)["quorum"]["state"], "lost");
    assert_eq!(service(443)["quorum"]["sorry_server_active"], true);
    assert_eq!(service(80)["quorum"]["state"], "up");
    let h12 = &real(80, "10.1.0.12")["health"];
    assert!(h12["consecutive_failures"].as_u64().is_some_and(|n| n >= 1), "{h12}");
    assert!(h12["last_check"].as_f64().is_some_and(|t| t > 1.5e9), "{h12}");
    assert_eq!(h12["checks"], json!(["MISC_CHECK"]));
    assert!(!o.to_string().contains("test -e"), "no check command in the overview: {o}");

    // The events, oldest first: the start, then the health transitions.
    let events = rig.get("/api/v1/events");
    let list = events["events"].as_array().cloned().unwrap_or_default();
    assert_eq!(list.first().map(|e| e["kind"].clone()), Some(json!("daemon")), "{events}");
    let find = |text: &str| list.iter().find(|e| e["message"].as_str().is_some_and(|m| m.contains(text))).cloned();
    let down = find("10.1.0.12:80 of tcp 10.0.0.100:80 is down").unwrap_or_else(|| panic!("no down event: {events}"));
    assert_eq!((down["kind"].clone(), down["severity"].clone()), (json!("health"), json!("warning")));
    assert_eq!(down["details"]["event"], "real_down");
    let lost = find("lost its quorum").unwrap_or_else(|| panic!("no quorum event: {events}"));
    assert!(lost["seq"].as_u64() > down["seq"].as_u64(), "{events}");
    let seqs: Vec<u64> = list.iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert_eq!(events["last_seq"].as_u64(), seqs.last().copied());
    assert_eq!(o["events"].as_array().map(Vec::len), Some(list.len().min(30)));

    let m = rig.text("/metrics");
    assert!(m.contains(&format!("\nrvs_service_quorum_up{} 0\n", labels(443))), "{m}");
    assert!(m.contains(&format!("\nrvs_service_sorry_server_active{} 1\n", labels(443))), "{m}");
    assert!(m.contains(&format!("\nrvs_service_quorum_up{} 1\n", labels(80))), "{m}");
}
