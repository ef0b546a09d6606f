//! `PUT /api/v1/config` applies or refuses every top-level field (none is
//! dropped as "no changes"), and a request body that does not fit the schema
//! is answered with the JSON path of the offending field.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use common::Recorder;
use http_body_util::BodyExt;
use rvs_control::api::{router, ApiOptions, ApiState};
use rvs_control::config::Config;
use serde_json::{json, Value};
use tower::ServiceExt;

const CONFIG: &str = r#"{
  "workers": [1, 2],
  "ports": [ { "name": "lan0", "device": "net_ring0", "addresses": ["10.0.0.1/24", "10.1.0.1/24"], "tap": "rvs0" } ],
  "routes": [ { "prefix": "0.0.0.0/0", "via": "10.0.0.254", "port": "lan0" } ],
  "services": [
    { "protocol": "tcp", "vip": "10.0.0.100", "port": 80, "scheduler": "rr",
      "reals": [ { "address": "10.1.0.11", "weight": 1 }, { "address": "10.1.0.12", "weight": 2 } ] },
    { "protocol": "udp", "vip": "10.0.0.100", "port": 53, "reals": [ { "address": "10.1.0.11" } ] }
  ]
}"#;

struct Harness {
    app: Router,
    state: Arc<ApiState>,
    dataplane: Arc<Recorder>,
}

fn harness() -> Harness {
    let config = Config::from_json(CONFIG).expect("test config is valid");
    let dataplane = Arc::new(Recorder::default());
    let state = ApiState::with_options(config, 1, dataplane.clone(), ApiOptions::default());
    Harness { app: router(Arc::clone(&state)), state, dataplane }
}

impl Harness {
    async fn send(&self, method: &str, uri: &str, body: &str) -> (StatusCode, Value) {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .expect("request");
        let resp = self.app.clone().oneshot(req).await.expect("router is infallible");
        let status = resp.status();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }
}

/// Every top-level field of [`Config`], as serde knows them: the list serde
/// gives when it meets an unknown field.
fn top_level_fields() -> BTreeSet<String> {
    let err = Config::from_json(r#"{"no_such_field_rvs": 0}"#).expect_err("unknown field");
    let text = err.to_string();
    let expected = text.split("expected one of").nth(1).unwrap_or_else(|| panic!("no field list in `{text}`"));
    expected.split('`').skip(1).step_by(2).map(str::to_owned).collect()
}

/// What `PUT /api/v1/config` must do with a changed field.
#[derive(Debug)]
enum Outcome {
    /// Applied: reported in `changes` under this kind, in force and published.
    Applied(&'static str),
    /// Refused with 400, naming the field: it needs a restart.
    Refused,
}

/// One mutation per top-level field, with what must happen to it. A field
/// added to `Config` fails `every_top_level_field_is_applied_or_refused`
/// until it is listed here, so none can be silently dropped.
fn mutations() -> Vec<(&'static str, Value, Outcome)> {
    use Outcome::*;
    vec![
        ("eal", json!(["--no-huge"]), Refused),
        ("main_lcore", json!(3), Refused),
        ("workers", json!([1]), Refused),
        ("mbufs", json!(16383), Refused),
        ("idle_sleep_us", json!(10), Refused),
        ("conn_table_size", json!(1024), Refused),
        ("conn_table_size_ipv6", json!(4096), Refused),
        ("api", json!({ "listen": "127.0.0.1:9191" }), Refused),
        (
            "ports",
            json!([{ "name": "lan0", "device": "net_ring0", "addresses": ["10.0.0.1/24", "10.1.0.1/24", "10.2.0.1/24"], "mtu": 1500, "tap": "rvs0" }]),
            Applied("ports"),
        ),
        ("routes", json!([]), Applied("routes")),
        (
            "timeouts",
            json!({ "tcp": 100, "tcp_fin": 10, "tcp_syn": 5, "udp": 30, "tcp_none": 2, "tcp_syn_sent": 120, "tcp_time_wait": 120,
                    "tcp_close": 10, "tcp_close_wait": 60, "tcp_last_ack": 30, "tcp_listen": 120, "tcp_synack": 120 }),
            Applied("timeouts"),
        ),
        ("local_port_range", json!([2000, 60000]), Applied("local_port_range")),
        (
            "syn_flood",
            json!({ "pressure_table_percent": 60, "pressure_syn_recv_percent": 20, "drop_entry": false,
                    "syn_recv_timeout_under_pressure": 5, "new_conns_per_prefix_per_sec": 100, "prefix_len": 16,
                    "prefix_len_ipv6": 56, "proxy_window_scale": 9 }),
            Applied("syn_flood"),
        ),
        (
            "services",
            json!([{ "protocol": "udp", "vip": "10.0.0.100", "port": 53, "scheduler": "wlc", "forward": "dr",
                     "reals": [{ "address": "10.1.0.11", "weight": 1 }] }]),
            Applied("service"),
        ),
        (
            "vrrp",
            json!({ "instances": [{ "name": "VI_1", "interface": "lan0", "virtual_router_id": 51, "priority": 100,
                                    "virtual_ipaddress": ["10.0.0.100"] }] }),
            Refused,
        ),
        ("sync", json!({ "instance": "VI_1", "peers": ["10.0.0.2"] }), Refused),
        ("expire_nodest_conn", json!(true), Applied("expire_nodest_conn")),
        ("fragments", json!({ "max_datagrams": 32, "max_fragments": 16, "timeout_ms": 1000 }), Applied("fragments")),
        (
            "bgp",
            json!({ "include": "/run/rvs/vips.conf", "protocol": "rvs_vips", "birdc": "birdc", "drain_grace": 30, "check_interval_ms": 200 }),
            Refused,
        ),
    ]
}

#[tokio::test]
async fn every_top_level_field_is_applied_or_refused() {
    let listed: BTreeSet<String> = mutations().iter().map(|(f, _, _)| f.to_string()).collect();
    assert_eq!(listed, top_level_fields(), "every field of Config needs a mutation and an expected outcome here");
    for (field, value, outcome) in mutations() {
        let h = harness();
        let mut doc = serde_json::to_value(h.state.config().await).expect("config as JSON");
        assert_ne!(doc.get(field), Some(&value), "{field}: the mutation must change something");
        doc[field] = value.clone();
        let published = h.dataplane.count();
        let (status, body) = h.send("PUT", "/api/v1/config", &doc.to_string()).await;
        let now = serde_json::to_value(h.state.config().await).expect("config as JSON");
        match outcome {
            Outcome::Applied(kind) => {
                assert_eq!(status, StatusCode::OK, "{field}: {body}");
                let changes = body["changes"].as_array().expect("changes");
                assert!(changes.iter().any(|c| c["kind"] == kind), "{field}: no `{kind}` change in {body}");
                assert_eq!(now[field], value, "{field}: not in force");
                assert_eq!(h.dataplane.count(), published + 1, "{field}: no snapshot published");
            }
            Outcome::Refused => {
                assert_eq!(status, StatusCode::BAD_REQUEST, "{field}: {body}");
                let named = body["field"].as_str().unwrap_or_default();
                assert!(named == field || named.starts_with(&format!("{field}.")), "{field}: names `{named}`: {body}");
                assert!(body["error"].as_str().is_some_and(|e| e.contains("restart")), "{field}: {body}");
                assert_ne!(now[field], value, "{field}: a refused change is in force");
                assert_eq!(h.dataplane.count(), published, "{field}: a refused change was published");
            }
        }
    }
}

#[tokio::test]
async fn expire_nodest_conn_reaches_the_dataplane() {
    let h = harness();
    let mut doc = serde_json::to_value(h.state.config().await).expect("config as JSON");
    doc["expire_nodest_conn"] = json!(true);
    let (status, body) = h.send("PUT", "/api/v1/config", &doc.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // `false` is the default, left out of the JSON: the change has no `before`.
    assert_eq!(body["changes"], json!([{ "op": "change", "kind": "expire_nodest_conn", "after": true }]));
    let snapshot = h.dataplane.published.lock().last().cloned().expect("published");
    assert!(snapshot.expire_nodest_conn);
    // The same document again changes nothing and publishes nothing.
    let (status, body) = h.send("PUT", "/api/v1/config", &doc.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["changes"], json!([]));
    assert_eq!(h.dataplane.count(), 1);
}

#[tokio::test]
async fn every_real_server_field_is_diffed() {
    let h = harness();
    let mut doc = serde_json::to_value(h.state.config().await).expect("config as JSON");
    doc["services"][0]["reals"][0]["upper_threshold"] = json!(50);
    doc["services"][0]["reals"][1]["port"] = json!(80);
    let (status, body) = h.send("PUT", "/api/v1/config?dry_run=true", &doc.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let changes = body["changes"].as_array().expect("changes");
    // The threshold is a change; an explicit port equal to the service's is not.
    assert_eq!(changes.len(), 1, "{body}");
    assert_eq!(changes[0]["item"], "10.1.0.11:80");
    assert_eq!(changes[0]["after"]["upper_threshold"], 50);
}

/// `(what, method, uri, body, field named in the answer)`.
const BAD_BODIES: &[(&str, &str, &str, &str, &str)] = &[
    ("bad VIP", "POST", "/api/v1/services", r#"{"protocol": "tcp", "vip": "10.0.0", "port": 80}"#, "vip"),
    (
        "unknown scheduler",
        "POST",
        "/api/v1/services",
        r#"{"protocol": "tcp", "vip": "10.0.0.7", "port": 80, "scheduler": "fastest"}"#,
        "scheduler",
    ),
    ("wrong type", "POST", "/api/v1/services", r#"{"protocol": "tcp", "vip": "10.0.0.7", "port": "80"}"#, "port"),
    ("unknown field", "POST", "/api/v1/services", r#"{"protocol": "tcp", "vip": "10.0.0.7", "port": 80, "wieght": 1}"#, "wieght"),
    (
        "nested unknown field",
        "POST",
        "/api/v1/services",
        r#"{"protocol": "tcp", "vip": "10.0.0.7", "port": 80, "reals": [{"address": "10.1.0.9", "wieght": 1}]}"#,
        "reals[0].wieght",
    ),
    ("wrong type of a real", "POST", "/api/v1/services/tcp/10.0.0.100/80/reals", r#"{"address": "10.1.0.9", "weight": "heavy"}"#, "weight"),
    (
        "bad CIDR",
        "PUT",
        "/api/v1/config",
        r#"{"ports": [{"name": "lan0", "device": "net_ring0", "addresses": ["10.0.0.1/40"]}]}"#,
        "ports[0].addresses[0]",
    ),
    ("unknown top-level field", "PUT", "/api/v1/config", r#"{"ports": [], "mbuf": 1}"#, "mbuf"),
    ("wrong type of a whole-config field", "PUT", "/api/v1/config", r#"{"ports": [], "workers": 2}"#, "workers"),
];

#[tokio::test]
async fn bad_bodies_name_their_field() {
    let h = harness();
    let before = h.state.config().await;
    for (what, method, uri, body, field) in BAD_BODIES {
        let (status, answer) = h.send(method, uri, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {answer}");
        assert_eq!(answer["field"], *field, "{what}: {answer}");
        let error = answer["error"].as_str().expect("message");
        assert!(error.starts_with(&format!("invalid JSON body: {field}: ")), "{what}: {error}");
    }
    // Broken JSON is about no field.
    let (status, answer) = h.send("POST", "/api/v1/services", r#"{"protocol": "tcp", "#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer["field"], Value::Null, "{answer}");
    assert_eq!(h.state.config().await, before, "a refused body changed the config");
    assert_eq!(h.dataplane.count(), 0);
}
