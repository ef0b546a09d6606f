//! The REST API beyond services and reals: authentication, the whole config
//! with its dry-run diff, timeouts, local addresses, stats, rates,
//! connections, zeroing, metrics, the OpenAPI document, and persistence.

mod common;

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use common::Recorder;
use http_body_util::BodyExt;
use rvs_control::api::{documented_routes, router, ApiOptions, ApiState, TOKEN_ENV};
use rvs_control::config::Config;
use rvs_control::persist::temp_path;
use rvs_dataplane::snapshot::{ForwardMode, Protocol, ServiceKey};
use rvs_dataplane::stats::{ConnInfo, RealStats, ServiceStats, TrafficCounters};
use serde_json::{json, Value};
use tower::ServiceExt;

const CONFIG: &str = r#"{
  "workers": [1, 2],
  "ports": [ { "name": "lan0", "device": "net_ring0", "addresses": ["10.0.0.1/24", "10.1.0.1/24"] } ],
  "routes": [ { "prefix": "0.0.0.0/0", "via": "10.0.0.254", "port": "lan0" } ],
  "api": { "listen": "127.0.0.1:9090", "token": "file-token" },
  "services": [
    { "protocol": "tcp", "vip": "10.0.0.100", "port": 80, "scheduler": "rr",
      "reals": [ { "address": "10.1.0.11", "weight": 1 }, { "address": "10.1.0.12", "weight": 2 } ] },
    { "protocol": "tcp", "vip": "10.0.0.100", "port": 443, "scheduler": "wlc", "local_addresses": ["10.0.0.5"],
      "reals": [ { "address": "10.1.0.21", "port": 8443, "forward": "fullnat" } ] }
  ]
}"#;

const TOKEN: &str = "t0ken";
const WEB: &str = "/api/v1/services/tcp/10.0.0.100/80";
const TLS: &str = "/api/v1/services/tcp/10.0.0.100/443";

struct Harness {
    app: Router,
    state: Arc<ApiState>,
    dataplane: Arc<Recorder>,
    path: Option<std::path::PathBuf>,
    _dir: Option<tempfile::TempDir>,
}

fn harness_with(token: Option<&str>, persist: bool) -> Harness {
    let config = Config::from_json(CONFIG).expect("test config is valid");
    let dataplane = Arc::new(Recorder::default());
    let (dir, path) = if persist {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("rvs.json");
        std::fs::write(&path, CONFIG).expect("write config");
        (Some(dir), Some(path))
    } else {
        (None, None)
    };
    let options = ApiOptions { config_path: path.clone(), token: token.map(str::to_string) };
    let state = ApiState::with_options(config, 1, dataplane.clone(), options);
    Harness { app: router(Arc::clone(&state)), state, dataplane, path, _dir: dir }
}

fn harness() -> Harness {
    harness_with(Some(TOKEN), false)
}

impl Harness {
    async fn raw(&self, req: Request<Body>) -> (StatusCode, Value, axum::http::HeaderMap) {
        let resp = self.app.clone().oneshot(req).await.expect("router is infallible");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        let value = serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        (status, value, headers)
    }

    /// Sends a request with the right token (when `auth`) and a JSON body.
    async fn call(&self, method: &str, uri: &str, body: Option<&str>, auth: Option<&str>) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(uri);
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        if let Some(t) = auth {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = req.body(body.map(|b| Body::from(b.to_string())).unwrap_or_else(Body::empty)).expect("request");
        let (s, v, _) = self.raw(req).await;
        (s, v)
    }

    async fn send(&self, method: &str, uri: &str, body: Option<&str>) -> (StatusCode, Value) {
        self.call(method, uri, body, Some(TOKEN)).await
    }

    /// A request that must be refused with `status` and change nothing: config,
    /// generation, published snapshots and the config file all stay as they were.
    async fn refused(&self, method: &str, uri: &str, body: Option<&str>, auth: Option<&str>, status: StatusCode) -> Value {
        let before = self.state.config().await;
        let generation = self.state.generation().await;
        let published = self.dataplane.count();
        let file = self.path.as_ref().map(|p| std::fs::read(p).expect("read config file"));
        let (got, value) = self.call(method, uri, body, auth).await;
        assert_eq!(got, status, "{method} {uri}: {value}");
        assert!(value["error"].as_str().is_some_and(|e| !e.is_empty()), "no error message: {value}");
        assert!(value.get("field").is_some(), "no field member: {value}");
        assert_eq!(self.state.config().await, before, "config changed by a refused request");
        assert_eq!(self.state.generation().await, generation);
        assert_eq!(self.dataplane.count(), published, "a refused request published a snapshot");
        if let (Some(p), Some(f)) = (&self.path, file) {
            assert_eq!(std::fs::read(p).expect("read config file"), f, "the config file changed");
        }
        value
    }
}

fn web_key() -> ServiceKey {
    ServiceKey { protocol: Protocol::Tcp, vip: Ipv4Addr::new(10, 0, 0, 100).into(), port: 80 }
}

// ---------------------------------------------------------------------------
// Authentication

#[tokio::test]
async fn changes_need_the_bearer_token_reads_do_not() {
    let h = harness();
    let body = r#"{"address": "10.1.0.13"}"#;
    let v = h.refused("POST", &format!("{WEB}/reals"), Some(body), None, StatusCode::UNAUTHORIZED).await;
    assert!(v["error"].as_str().is_some_and(|e| e.contains("Authorization: Bearer")), "{v}");
    h.refused("POST", &format!("{WEB}/reals"), Some(body), Some("nope"), StatusCode::UNAUTHORIZED).await;
    h.refused("DELETE", WEB, None, Some("t0ke"), StatusCode::UNAUTHORIZED).await;
    h.refused("PUT", "/api/v1/timeouts", Some("{}"), None, StatusCode::UNAUTHORIZED).await;
    h.refused("POST", "/api/v1/stats/zero", None, None, StatusCode::UNAUTHORIZED).await;
    assert_eq!(h.dataplane.zeroed.load(Ordering::SeqCst), 0);
    // The WWW-Authenticate challenge is sent.
    let req = Request::builder().method("DELETE").uri(WEB).body(Body::empty()).expect("request");
    let (_, _, headers) = h.raw(req).await;
    assert!(headers.get("www-authenticate").is_some());
    // Reads are open.
    for uri in ["/api/v1/config", "/api/v1/services", "/api/v1/timeouts", "/api/v1/stats/services", "/metrics"] {
        let (s, _) = h.call("GET", uri, None, None).await;
        assert_eq!(s, StatusCode::OK, "{uri}");
    }
    let (s, v) = h.send("POST", &format!("{WEB}/reals"), Some(body)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
}

#[tokio::test]
async fn the_token_is_never_shown_and_comes_from_the_config_by_default() {
    let h = harness();
    let (_, v) = h.call("GET", "/api/v1/config", None, None).await;
    assert!(v["api"].get("token").is_none(), "{v}");
    let config = Config::from_json(CONFIG).expect("valid");
    if std::env::var(TOKEN_ENV).is_err() {
        let o = ApiOptions::for_daemon(&config, "/etc/rvs/rvs.json");
        assert_eq!(o.token.as_deref(), Some("file-token"));
        assert_eq!(o.config_path.as_deref(), Some(Path::new("/etc/rvs/rvs.json")));
    }
    // ApiState::new takes the config's token.
    let state = ApiState::new(config, 1, Arc::new(Recorder::default()));
    let app = router(state);
    let req = Request::builder().method("DELETE").uri(WEB).body(Body::empty()).expect("request");
    assert_eq!(app.oneshot(req).await.expect("infallible").status(), StatusCode::UNAUTHORIZED);
}

// ---------------------------------------------------------------------------
// The whole config

#[tokio::test]
async fn config_dry_run_reports_the_diff_and_changes_nothing() {
    let h = harness();
    let (_, mut doc) = h.call("GET", "/api/v1/config", None, None).await;
    doc["services"][0]["reals"][0]["weight"] = json!(5);
    doc["services"][0]["reals"].as_array_mut().expect("reals").remove(1);
    doc["services"][0]["reals"].as_array_mut().expect("reals").push(json!({"address": "10.1.0.13"}));
    doc["services"][1]["scheduler"] = json!("rr");
    doc["services"].as_array_mut().expect("services").push(json!({"protocol": "udp", "vip": "10.0.0.53", "port": 53}));
    doc["timeouts"]["udp"] = json!(60);
    let body = doc.to_string();
    let before = h.state.config().await;
    let (s, v) = h.send("PUT", "/api/v1/config?dry_run=true", Some(&body)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["dry_run"], true);
    let changes: Vec<(String, String, String)> = v["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| {
            (
                c["op"].as_str().unwrap_or_default().to_string(),
                c["kind"].as_str().unwrap_or_default().to_string(),
                c["item"].as_str().or(c["service"].as_str()).unwrap_or_default().to_string(),
            )
        })
        .collect();
    let want = [
        ("change", "timeouts", ""),
        ("remove", "real", "10.1.0.12:80"),
        ("change", "real", "10.1.0.11:80"),
        ("add", "real", "10.1.0.13:80"),
        ("change", "service", "tcp/10.0.0.100/443"),
        ("add", "service", "udp/10.0.0.53/53"),
    ];
    let want: Vec<(String, String, String)> = want.iter().map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string())).collect();
    assert_eq!(changes, want, "{v}");
    assert_eq!(v["changes"][2]["before"]["weight"], 1);
    assert_eq!(v["changes"][2]["after"]["weight"], 5);
    assert_eq!(h.state.config().await, before);
    assert_eq!(h.dataplane.count(), 0);

    // The same document for real: applied, with the same diff.
    let (s, v2) = h.send("PUT", "/api/v1/config", Some(&body)).await;
    assert_eq!(s, StatusCode::OK, "{v2}");
    assert_eq!(v2["generation"], 2);
    assert_eq!(v2["changes"], v["changes"]);
    assert_eq!(h.dataplane.count(), 1);
    let config = h.state.config().await;
    assert_eq!(config.services.len(), 3);
    assert_eq!(config.api.token.as_deref(), Some("file-token"), "the token left out is kept");
    // Sending it again changes nothing and publishes nothing.
    let (s, v3) = h.send("PUT", "/api/v1/config", Some(&body)).await;
    assert_eq!(s, StatusCode::OK, "{v3}");
    assert_eq!(v3["changes"], json!([]));
    assert_eq!(h.dataplane.count(), 1);
}

#[tokio::test]
async fn config_put_refuses_bad_documents() {
    let h = harness();
    let (_, doc) = h.call("GET", "/api/v1/config", None, None).await;
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut d = doc.clone();
        edit(&mut d);
        d.to_string()
    };
    let auth = Some(TOKEN);
    let v = h.refused("PUT", "/api/v1/config", Some(&with(&|d| d["workers"] = json!([1, 2, 3]))), auth, StatusCode::BAD_REQUEST).await;
    assert_eq!(v["field"], "workers");
    assert!(v["error"].as_str().is_some_and(|e| e.contains("restart")), "{v}");
    let v = h.refused("PUT", "/api/v1/config", Some(&with(&|d| d["ports"][0]["device"] = json!("x"))), auth, StatusCode::BAD_REQUEST).await;
    assert_eq!(v["field"], "ports[0].device");
    let v = h
        .refused(
            "PUT",
            "/api/v1/config",
            Some(&with(&|d| d["services"][0]["reals"][1]["weight"] = json!(70000))),
            auth,
            StatusCode::BAD_REQUEST,
        )
        .await;
    assert_eq!(v["field"], "services[0].reals[1].weight");
    let v = h
        .refused("PUT", "/api/v1/config", Some(&with(&|d| d["services"][0]["scheduler"] = json!("fastest"))), auth, StatusCode::BAD_REQUEST)
        .await;
    assert!(v["error"].as_str().is_some_and(|e| e.contains("unknown variant `fastest`")), "{v}");
    let v = h
        .refused(
            "PUT",
            "/api/v1/config",
            Some(&with(&|d| {
                let s = d["services"][0].clone();
                d["services"].as_array_mut().expect("services").push(s);
            })),
            auth,
            StatusCode::BAD_REQUEST,
        )
        .await;
    assert_eq!(v["field"], "services[2]");
    h.refused("PUT", "/api/v1/config", Some(&with(&|d| d["mbufs"] = json!("many"))), auth, StatusCode::BAD_REQUEST).await;
    h.refused("PUT", "/api/v1/config?dry_run=maybe", Some(&with(&|_| {})), auth, StatusCode::BAD_REQUEST).await;
    let v = h.refused("PUT", "/api/v1/config?dryrun=1", Some(&with(&|_| {})), auth, StatusCode::BAD_REQUEST).await;
    assert_eq!(v["field"], "dryrun");
    let v = h.refused("PUT", "/api/v1/config", Some(&with(&|d| d["api"]["token"] = json!("other"))), auth, StatusCode::BAD_REQUEST).await;
    assert_eq!(v["field"], "api.token");
}

#[tokio::test]
async fn if_match_guards_against_lost_updates() {
    let h = harness();
    let req = Request::builder().uri("/api/v1/config").body(Body::empty()).expect("request");
    let (_, doc, headers) = h.raw(req).await;
    assert_eq!(headers.get("etag").and_then(|v| v.to_str().ok()), Some("\"1\""));
    // Someone else changes the config.
    let (s, _) = h.send("POST", &format!("{WEB}/reals"), Some(r#"{"address": "10.1.0.13"}"#)).await;
    assert_eq!(s, StatusCode::CREATED);
    let req = Request::builder()
        .method("PUT")
        .uri("/api/v1/config")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("if-match", "\"1\"")
        .body(Body::from(doc.to_string()))
        .expect("request");
    let (s, v, _) = h.raw(req).await;
    assert_eq!(s, StatusCode::PRECONDITION_FAILED, "{v}");
    assert_eq!(h.state.config().await.services[0].reals.len(), 3, "the other change survives");
    let req = Request::builder()
        .method("DELETE")
        .uri(WEB)
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("if-match", "garbage")
        .body(Body::empty())
        .expect("request");
    let (s, _, _) = h.raw(req).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

// ---------------------------------------------------------------------------
// Timeouts, thresholds, local addresses

#[tokio::test]
async fn timeouts_read_and_set() {
    let h = harness();
    let (s, v) = h.call("GET", "/api/v1/timeouts", None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!((v["tcp"].as_u64(), v["tcp_fin"].as_u64(), v["udp"].as_u64()), (Some(900), Some(120), Some(300)));
    let (s, v) = h.send("PUT", "/api/v1/timeouts", Some(r#"{"tcp": 600, "tcp_fin": 60, "udp": 120}"#)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let t = h.state.config().await.timeouts;
    assert_eq!((t.tcp, t.tcp_fin, t.udp, t.tcp_syn), (600, 60, 120, 60));
    let snap = h.dataplane.published.lock().last().cloned().expect("published");
    assert_eq!(snap.timeouts.tcp, 600);
    let v = h.refused("PUT", "/api/v1/timeouts", Some(r#"{"tcp": 0}"#), Some(TOKEN), StatusCode::BAD_REQUEST).await;
    assert_eq!(v["field"], "tcp");
    let v = h.refused("PUT", "/api/v1/timeouts", Some(r#"{"tcpfin": 5}"#), Some(TOKEN), StatusCode::BAD_REQUEST).await;
    assert!(v["error"].as_str().is_some_and(|e| e.contains("unknown field `tcpfin`")), "{v}");
    h.refused("PUT", "/api/v1/timeouts", Some(r#"{"udp": "long"}"#), Some(TOKEN), StatusCode::BAD_REQUEST).await;
}

#[tokio::test]
async fn syn_flood_read_and_set() {
    let h = harness();
    let (s, v) = h.call("GET", "/api/v1/syn_flood", None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        v,
        json!({ "pressure_table_percent": 50, "pressure_syn_recv_percent": 25, "drop_entry": true,
                "syn_recv_timeout_under_pressure": 3, "new_conns_per_prefix_per_sec": 1000, "prefix_len": 24,
                "prefix_len_ipv6": 64, "proxy_window_scale": 7 })
    );
    let (s, v) = h.send("PUT", "/api/v1/syn_flood", Some(r#"{"pressure_table_percent": 70, "drop_entry": false, "prefix_len": 20}"#)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let f = h.state.config().await.syn_flood;
    // Fields left out take their defaults.
    assert_eq!((f.pressure_table_percent, f.drop_entry, f.prefix_len, f.pressure_syn_recv_percent), (70, false, 20, 25));
    let snap = h.dataplane.published.lock().last().cloned().expect("published");
    assert_eq!(snap.syn_flood, f);
    let (_, v) = h.call("GET", "/api/v1/syn_flood", None, None).await;
    assert_eq!((v["pressure_table_percent"].as_u64(), v["drop_entry"].as_bool()), (Some(70), Some(false)));
    let (_, config) = h.call("GET", "/api/v1/config", None, None).await;
    assert_eq!(config["syn_flood"]["prefix_len"], 20);
    for (body, field) in [
        (r#"{"pressure_table_percent": 0}"#, "pressure_table_percent"),
        (r#"{"pressure_syn_recv_percent": 101}"#, "pressure_syn_recv_percent"),
        (r#"{"prefix_len": 33}"#, "prefix_len"),
        (r#"{"prefix_len_ipv6": 129}"#, "prefix_len_ipv6"),
        (r#"{"proxy_window_scale": 15}"#, "proxy_window_scale"),
    ] {
        let v = h.refused("PUT", "/api/v1/syn_flood", Some(body), Some(TOKEN), StatusCode::BAD_REQUEST).await;
        assert_eq!(v["field"], field, "{body}: {v}");
    }
    let v = h.refused("PUT", "/api/v1/syn_flood", Some(r#"{"drop_entries": true}"#), Some(TOKEN), StatusCode::BAD_REQUEST).await;
    assert!(v["error"].as_str().is_some_and(|e| e.contains("unknown field `drop_entries`")), "{v}");
    h.refused("PUT", "/api/v1/syn_flood", Some(r#"{"prefix_len": -1}"#), Some(TOKEN), StatusCode::BAD_REQUEST).await;
    h.refused("PUT", "/api/v1/syn_flood", Some("{}"), None, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn syn_proxy_on_services() {
    use rvs_dataplane::snapshot::SynProxy;
    let h = harness();
    // The FULLNAT service takes it; the answer and the snapshot carry it.
    let body = json!({ "protocol": "tcp", "vip": "10.0.0.100", "port": 443, "scheduler": "wlc", "local_addresses": ["10.0.0.5"],
                       "syn_proxy": "on", "reals": [ { "address": "10.1.0.21", "port": 8443, "forward": "fullnat" } ] });
    let (s, v) = h.send("PUT", TLS, Some(&body.to_string())).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, v) = h.call("GET", TLS, None, None).await;
    assert_eq!(v["syn_proxy"], "on");
    let snap = h.dataplane.published.lock().last().cloned().expect("published");
    let (_, svc) = snap.service(&ServiceKey { port: 443, ..web_key() }).expect("service");
    assert_eq!(svc.syn_proxy, SynProxy::On);
    // A new NAT service with auto.
    let body = r#"{"protocol": "tcp", "vip": "10.0.0.101", "port": 80, "forward": "nat", "syn_proxy": "auto",
                   "reals": [ { "address": "10.1.0.31", "port": 8080 } ]}"#;
    let (s, v) = h.send("POST", "/api/v1/services", Some(body)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (_, v) = h.call("GET", "/api/v1/services/tcp/10.0.0.101/80", None, None).await;
    assert_eq!(v["syn_proxy"], "auto");
    // Refused, naming the field, changing nothing: DR reals, UDP, an unknown value.
    let dr = r#"{"protocol": "tcp", "vip": "10.0.0.100", "port": 80, "scheduler": "rr", "syn_proxy": "on",
                 "reals": [ { "address": "10.1.0.11", "weight": 1 }, { "address": "10.1.0.12", "weight": 2 } ]}"#;
    let v = h.refused("PUT", WEB, Some(dr), Some(TOKEN), StatusCode::BAD_REQUEST).await;
    assert_eq!(v["field"], "syn_proxy");
    assert!(v["error"].as_str().is_some_and(|e| e.contains("reals[0] is forwarded by dr")), "{v}");
    let udp = r#"{"protocol": "udp", "vip": "10.0.0.102", "port": 53, "forward": "nat", "syn_proxy": "auto"}"#;
    let v = h.refused("POST", "/api/v1/services", Some(udp), Some(TOKEN), StatusCode::BAD_REQUEST).await;
    assert_eq!(v["field"], "syn_proxy");
    let bad = r#"{"protocol": "tcp", "vip": "10.0.0.102", "port": 80, "forward": "nat", "syn_proxy": "yes"}"#;
    let v = h.refused("POST", "/api/v1/services", Some(bad), Some(TOKEN), StatusCode::BAD_REQUEST).await;
    assert!(v["error"].as_str().is_some_and(|e| e.contains("unknown variant `yes`")), "{v}");
    // A DR real added to a SYN proxy service is refused at the service's field.
    let v = h
        .refused(
            "POST",
            &format!("{TLS}/reals"),
            Some(r#"{"address": "10.1.0.22", "port": 443, "forward": "dr"}"#),
            Some(TOKEN),
            StatusCode::BAD_REQUEST,
        )
        .await;
    assert_eq!(v["field"], "services[1].syn_proxy", "{v}");
}

#[tokio::test]
async fn thresholds_are_validated() {
    let h = harness();
    let v = h
        .refused(
            "POST",
            &format!("{WEB}/reals"),
            Some(r#"{"address": "10.1.0.13", "upper_threshold": 10, "lower_threshold": 20}"#),
            Some(TOKEN),
            StatusCode::BAD_REQUEST,
        )
        .await;
    assert_eq!(v["field"], "lower_threshold");
    let (s, v) =
        h.send("POST", &format!("{WEB}/reals"), Some(r#"{"address": "10.1.0.13", "upper_threshold": 20, "lower_threshold": 10}"#)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (_, v) = h.call("GET", &format!("{WEB}/reals/10.1.0.13/80"), None, None).await;
    assert_eq!(v, json!({"address": "10.1.0.13", "weight": 1, "upper_threshold": 20, "lower_threshold": 10}));
}

#[tokio::test]
async fn local_addresses() {
    let h = harness();
    let (s, v) = h.call("GET", &format!("{TLS}/laddrs"), None, None).await;
    assert_eq!((s, v), (StatusCode::OK, json!(["10.0.0.5"])));
    let (s, v) = h.send("POST", &format!("{TLS}/laddrs"), Some(r#"{"address": "10.0.0.6"}"#)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(h.state.config().await.services[1].local_addresses.len(), 2);
    let auth = Some(TOKEN);
    h.refused("POST", &format!("{TLS}/laddrs"), Some(r#"{"address": "10.0.0.6"}"#), auth, StatusCode::CONFLICT).await;
    let v = h.refused("POST", &format!("{TLS}/laddrs"), Some(r#"{"address": "10.0.0.100"}"#), auth, StatusCode::BAD_REQUEST).await;
    assert_eq!(v["field"], "address");
    h.refused("POST", &format!("{TLS}/laddrs"), Some(r#"{"addr": "10.0.0.7"}"#), auth, StatusCode::BAD_REQUEST).await;
    h.refused("POST", "/api/v1/services/tcp/10.0.0.100/444/laddrs", Some(r#"{"address": "10.0.0.7"}"#), auth, StatusCode::NOT_FOUND).await;
    h.refused("DELETE", &format!("{TLS}/laddrs/10.0.0.9"), None, auth, StatusCode::NOT_FOUND).await;
    h.refused("DELETE", &format!("{TLS}/laddrs/10.0.0"), None, auth, StatusCode::BAD_REQUEST).await;
    let (s, _) = h.send("DELETE", &format!("{TLS}/laddrs/10.0.0.5"), None).await;
    assert_eq!(s, StatusCode::OK);
    // The last local address of a FULLNAT service may go, as in DPVS: the
    // service then forwards nothing new (drop_no_laddr) until one is added.
    let (s, _) = h.send("DELETE", &format!("{TLS}/laddrs/10.0.0.6"), None).await;
    assert_eq!(s, StatusCode::OK);
}

// ---------------------------------------------------------------------------
// Stats, rates, connections, zeroing, metrics

fn counters(conns: u64) -> TrafficCounters {
    TrafficCounters { conns, in_pkts: conns * 10, out_pkts: conns * 5, in_bytes: conns * 1000, out_bytes: conns * 500 }
}

fn set_stats(h: &Harness, a: u64, b: u64) {
    let reals = vec![
        RealStats { addr: Ipv4Addr::new(10, 1, 0, 11).into(), port: 80, traffic: counters(a), active: 2, inactive: 1, overloaded: false },
        RealStats { addr: Ipv4Addr::new(10, 1, 0, 12).into(), port: 80, traffic: counters(b), active: 1, inactive: 0, overloaded: false },
    ];
    *h.dataplane.stats.lock() = vec![ServiceStats { key: web_key(), traffic: counters(a + b), reals }];
}

#[tokio::test]
async fn stats_and_rates_per_service_and_real() {
    let h = harness();
    set_stats(&h, 0, 0);
    h.state.sample_rates();
    // 2 s later: 200 and 100 more connections.
    set_stats(&h, 200, 100);
    h.state.sample_rates();
    let (s, v) = h.call("GET", "/api/v1/stats/services", None, None).await;
    assert_eq!(s, StatusCode::OK);
    let web = &v[0];
    assert_eq!((web["conns"].as_u64(), web["in_bytes"].as_u64()), (Some(300), Some(300_000)));
    assert_eq!((web["active"].as_u64(), web["inactive"].as_u64()), (Some(3), Some(1)));
    // First EWMA step from 0: 150/s * 1/4 = 37.5, rounded as the kernel does.
    assert_eq!(web["rates"]["cps"], ((((300u64 << 9) >> 2) + 0x1FF) >> 10));
    assert_eq!(web["reals"][0]["address"], "10.1.0.11");
    assert_eq!(web["reals"][0]["conns"], 200);
    assert_eq!(web["reals"][1]["rates"]["cps"], ((((100u64 << 9) >> 2) + 0x1FF) >> 10));
    // A service the dataplane knows nothing about shows zeros.
    assert_eq!(v[1]["conns"], 0);
    assert_eq!(v[1]["reals"][0]["port"], 8443);
}

#[tokio::test]
async fn zeroing_all_or_one_service() {
    let h = harness();
    set_stats(&h, 200, 100);
    let (s, v) = h.send("POST", "/api/v1/stats/zero?service=tcp/10.0.0.100/80", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(h.dataplane.zeroed.load(Ordering::SeqCst), 0);
    set_stats(&h, 210, 100);
    let (_, v) = h.call("GET", "/api/v1/stats/services", None, None).await;
    assert_eq!((v[0]["conns"].as_u64(), v[0]["reals"][0]["conns"].as_u64()), (Some(10), Some(10)));
    let (s, _) = h.send("POST", "/api/v1/stats/zero", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h.dataplane.zeroed.load(Ordering::SeqCst), 1);
    let auth = Some(TOKEN);
    h.refused("POST", "/api/v1/stats/zero?service=tcp/10.0.0.100/81", None, auth, StatusCode::NOT_FOUND).await;
    let v = h.refused("POST", "/api/v1/stats/zero?service=sctp/1/2", None, auth, StatusCode::BAD_REQUEST).await;
    assert_eq!(v["field"], "service");
}

fn conn(client: &str, real: &str, state: &str, template: bool) -> ConnInfo {
    ConnInfo {
        worker: 0,
        protocol: Protocol::Tcp,
        client: client.parse().expect("client"),
        vip: "10.0.0.100:80".parse().expect("vip"),
        real: real.parse().expect("real"),
        local: None,
        forward: ForwardMode::Dr,
        state: state.to_owned().into(),
        expires_ms: 1000,
        template,
        seq_delta: 0,
        syn_proxy: None,
    }
}

#[tokio::test]
async fn connections_are_paged_and_filtered() {
    let h = harness();
    let mut conns: Vec<ConnInfo> = (0..25).map(|i| conn(&format!("192.168.0.{i}:4000"), "10.1.0.11:80", "ESTABLISHED", false)).collect();
    conns.push(conn("192.168.1.1:5000", "10.1.0.12:80", "SYN_RECV", false));
    conns.push(conn("192.168.1.0:0", "10.1.0.12:80", "NONE", true));
    *h.dataplane.conns.lock() = conns;
    let (s, v) = h.call("GET", "/api/v1/connections?limit=10&offset=20", None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!((v["total"].as_u64(), v["connections"].as_array().map(Vec::len)), (Some(26), Some(6)));
    let (_, v) = h.call("GET", "/api/v1/connections", None, None).await;
    assert_eq!((v["limit"].as_u64(), v["connections"].as_array().map(Vec::len)), (Some(100), Some(26)));
    let (_, v) = h.call("GET", "/api/v1/connections?real=10.1.0.12&templates=true", None, None).await;
    assert_eq!(v["total"], 2);
    // The entry's JSON, state a plain string, as before states were borrowed.
    let template = json!({
        "worker": 0, "protocol": "tcp", "client": "192.168.1.0:0", "vip": "10.0.0.100:80", "real": "10.1.0.12:80",
        "forward": "dr", "state": "NONE", "expires_ms": 1000, "template": true
    });
    assert_eq!(v["connections"][1], template);
    assert_eq!(serde_json::from_value::<ConnInfo>(template).expect("parses back"), conn("192.168.1.0:0", "10.1.0.12:80", "NONE", true));
    let (_, v) = h.call("GET", "/api/v1/connections?state=syn_recv&service=tcp/10.0.0.100/80", None, None).await;
    assert_eq!(v["total"], 1);
    let (_, v) = h.call("GET", "/api/v1/connections?client=192.168.0.3", None, None).await;
    assert_eq!(v["connections"][0]["client"], "192.168.0.3:4000");
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=100001", "limit"),
        ("offset=-1", "offset"),
        ("real=10.1", "real"),
        ("client=x", "client"),
        ("service=tcp/10.0.0.100", "service"),
        ("templates=perhaps", "templates"),
        ("colour=red", "colour"),
    ] {
        let v = h.refused("GET", &format!("/api/v1/connections?{query}"), None, None, StatusCode::BAD_REQUEST).await;
        assert_eq!(v["field"], field, "{query}");
    }
}

#[tokio::test]
async fn metrics_in_prometheus_text_format() {
    let h = harness();
    set_stats(&h, 200, 100);
    let req = Request::builder().uri("/metrics").body(Body::empty()).expect("request");
    let resp = h.app.clone().oneshot(req).await.expect("infallible");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers().get("content-type").and_then(|v| v.to_str().ok()), Some("text/plain; version=0.0.4; charset=utf-8"));
    let text = String::from_utf8(resp.into_body().collect().await.expect("body").to_bytes().to_vec()).expect("utf-8");
    for line in [
        "# TYPE rvs_service_connections_total counter",
        "rvs_service_connections_total{protocol=\"tcp\",vip=\"10.0.0.100\",port=\"80\"} 300",
        "rvs_service_in_bytes_total{protocol=\"tcp\",vip=\"10.0.0.100\",port=\"80\"} 300000",
        "rvs_service_active_connections{protocol=\"tcp\",vip=\"10.0.0.100\",port=\"80\"} 3",
        "rvs_real_connections_total{protocol=\"tcp\",vip=\"10.0.0.100\",port=\"80\",real=\"10.1.0.11:80\"} 200",
        "rvs_real_inactive_connections{protocol=\"tcp\",vip=\"10.0.0.100\",port=\"80\",real=\"10.1.0.11:80\"} 1",
        "rvs_real_weight{protocol=\"tcp\",vip=\"10.0.0.100\",port=\"80\",real=\"10.1.0.12:80\"} 2",
        "# TYPE rvs_service_connections_per_second gauge",
        "rvs_service_connections_per_second{protocol=\"tcp\",vip=\"10.0.0.100\",port=\"80\"} 0",
        "rvs_real_out_bytes_per_second{protocol=\"tcp\",vip=\"10.0.0.100\",port=\"443\",real=\"10.1.0.21:8443\"} 0",
        // node_exporter's IPVS family: the same numbers under its names and labels.
        "# TYPE node_ipvs_connections_total counter",
        "node_ipvs_connections_total 300",
        "node_ipvs_incoming_bytes_total 300000",
        "node_ipvs_backend_connections_active{local_address=\"10.0.0.100\",local_port=\"80\",remote_address=\"10.1.0.11\",remote_port=\"80\",proto=\"TCP\",local_mark=\"\"} 2",
        "node_ipvs_backend_connections_inactive{local_address=\"10.0.0.100\",local_port=\"80\",remote_address=\"10.1.0.11\",remote_port=\"80\",proto=\"TCP\",local_mark=\"\"} 1",
        "node_ipvs_backend_weight{local_address=\"10.0.0.100\",local_port=\"80\",remote_address=\"10.1.0.12\",remote_port=\"80\",proto=\"TCP\",local_mark=\"\"} 2",
        "rvs_build_info{version=\"0.1.0\",arch=\"x86_64\",os=\"linux\"} 1",
        "rvs_worker_rx_packets_total{worker=\"0\"} 10",
        "rvs_worker_drops_total{worker=\"1\",reason=\"no_service\"} 4",
        "rvs_worker_redirect_out_total{worker=\"0\"} 2",
        "rvs_worker_connections{worker=\"1\"} 6",
        "rvs_worker_connection_table_size{worker=\"0\"} 65536",
        "rvs_worker_conn_created_total{worker=\"0\"} 7",
        "rvs_port_rx_missed_total{interface=\"lan0\"} 1",
        "rvs_mempool_in_use 191",
        "rvs_config_generation 1",
    ] {
        assert!(text.lines().any(|l| l == line), "missing `{line}` in\n{text}");
    }
    // Each family has exactly one HELP and TYPE line, and every sample parses.
    let types = text.lines().filter(|l| l.starts_with("# TYPE rvs_worker_drops_total ")).count();
    assert_eq!(types, 1);
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let (name, value) = l.rsplit_once(' ').expect("sample");
        assert!(["rvs_", "node_ipvs_", "process_"].iter().any(|p| name.starts_with(p)), "{l}");
        value.parse::<f64>().unwrap_or_else(|_| panic!("value of {l}"));
    }
    // The process metrics of this very process.
    let sample = |name: &str| -> f64 {
        let line = text.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_else(|| panic!("no {name} in\n{text}"));
        line.rsplit_once(' ').and_then(|(_, v)| v.parse().ok()).expect("number")
    };
    assert!(sample("process_resident_memory_bytes") > 1e6);
    assert!(sample("process_open_fds") >= 3.0);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs_f64();
    let start = sample("process_start_time_seconds");
    assert!(start <= now + 1.0 && start > now - 3600.0, "start {start}, now {now}");
}

// ---------------------------------------------------------------------------
// OpenAPI

/// Path templates of the router, read from `router()`'s source.
fn router_paths() -> Vec<String> {
    let src = include_str!("../src/api.rs");
    let start = src.find("pub fn router(").expect("router fn");
    let body = &src[start..src[start..].find("\n}\n").map_or(src.len(), |e| start + e)];
    body.match_indices(".route(")
        .filter_map(|(i, _)| {
            let rest = &body[i..];
            let q = rest.find('"')?;
            let end = rest[q + 1..].find('"')?;
            Some(rest[q + 1..q + 1 + end].to_string())
        })
        .collect()
}

fn instantiate(path: &str) -> String {
    path.replace("{protocol}", "tcp")
        .replace("{vip}", "10.0.0.100")
        .replace("{port}", "80")
        .replace("{address}", "10.1.0.11")
        .replace("{rport}", "80")
}

#[tokio::test]
async fn openapi_documents_every_route_and_nothing_else() {
    let h = harness_with(None, false);
    let (s, doc) = h.call("GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    let documented = documented_routes();
    let paths = router_paths();
    assert!(paths.len() >= 14, "{paths:?}");
    let mut served = std::collections::BTreeSet::new();
    for path in &paths {
        for method in ["GET", "POST", "PUT", "DELETE", "PATCH"] {
            let req = Request::builder()
                .method(method)
                .uri(instantiate(path))
                .header("content-type", "application/json")
                .body(Body::from("{}"))
                .expect("request");
            let (status, v, _) = h.raw(req).await;
            let unrouted = status == StatusCode::METHOD_NOT_ALLOWED
                || (status == StatusCode::NOT_FOUND && v["error"].as_str().is_some_and(|e| e.starts_with("no endpoint")));
            if !unrouted {
                served.insert((method.to_string(), path.clone()));
            }
        }
    }
    assert_eq!(served, documented, "router and openapi.json disagree");
}

// ---------------------------------------------------------------------------
// Persistence

#[tokio::test]
async fn every_accepted_change_is_written_and_reloads() {
    let h = harness_with(Some(TOKEN), true);
    let path = h.path.clone().expect("path");
    let (s, _) = h.send("POST", &format!("{WEB}/reals"), Some(r#"{"address": "10.1.0.13", "weight": 7}"#)).await;
    assert_eq!(s, StatusCode::CREATED);
    let reloaded = Config::load(&path).expect("the file is a valid config");
    assert_eq!(reloaded, h.state.config().await);
    assert_eq!(reloaded.api.token.as_deref(), Some("file-token"), "the file keeps its token");
    let (s, _) = h.send("PUT", "/api/v1/timeouts", Some(r#"{"tcp": 100}"#)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(Config::load(&path).expect("valid").timeouts.tcp, 100);
    assert!(!temp_path(&path).exists());
    // A restarted rvsd comes back with the same services.
    let again = ApiState::with_options(
        Config::load(&path).expect("valid"),
        1,
        Arc::new(Recorder::default()),
        ApiOptions { config_path: Some(path.clone()), token: None },
    );
    assert_eq!(again.config().await.services, h.state.config().await.services);
    // Refused changes leave the file alone (checked by `refused`).
    h.refused("POST", &format!("{WEB}/reals"), Some(r#"{"address": "10.1.0.13"}"#), Some(TOKEN), StatusCode::CONFLICT).await;
}

#[tokio::test]
async fn a_failed_write_refuses_the_change_and_keeps_the_old_file() {
    let h = harness_with(Some(TOKEN), true);
    let path = h.path.clone().expect("path");
    // The temporary file cannot be created (a directory is in the way), even as root.
    std::fs::create_dir(temp_path(&path)).expect("block the temp path");
    let v = h
        .refused("POST", &format!("{WEB}/reals"), Some(r#"{"address": "10.1.0.13"}"#), Some(TOKEN), StatusCode::INTERNAL_SERVER_ERROR)
        .await;
    assert!(v["error"].as_str().is_some_and(|e| e.contains("cannot write the config file")), "{v}");
    assert_eq!(std::fs::read_to_string(&path).expect("read"), CONFIG);
    std::fs::remove_dir(temp_path(&path)).expect("unblock");
    let (s, _) = h.send("POST", &format!("{WEB}/reals"), Some(r#"{"address": "10.1.0.13"}"#)).await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(h.state.generation().await, 2, "the refused change used no generation");
}
