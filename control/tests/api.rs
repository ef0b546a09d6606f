//! Drives the REST API router in-process with a recording test double for the dataplane.

use std::net::Ipv4Addr;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use parking_lot::Mutex;
use rvs_control::api::{router, ApiState, Dataplane, PublishReport};
use rvs_control::config::Config;
use rvs_dataplane::snapshot::{ForwardMode, Protocol, SchedulerKind, ServiceKey, Snapshot};
use rvs_dataplane::stats::{ConnFilter, ConnInfo, ServiceStats};
use rvs_dataplane::wire::MacAddr;
use serde_json::{json, Value};
use tower::ServiceExt;

const CONFIG: &str = r#"{
  "workers": [1, 2],
  "ports": [ { "name": "lan0", "device": "net_af_packet0,iface=dp0,qpairs=2", "addresses": ["10.0.0.1/24", "10.1.0.1/24"] } ],
  "routes": [ { "prefix": "0.0.0.0/0", "via": "10.0.0.254", "port": "lan0" } ],
  "services": [
    { "protocol": "tcp", "vip": "10.0.0.100", "port": 80, "scheduler": "rr", "forward": "dr",
      "reals": [ { "address": "10.1.0.11", "weight": 1 }, { "address": "10.1.0.12", "port": 80, "weight": 1, "forward": "dr" } ] }
  ]
}"#;

const INITIAL_GENERATION: u64 = 5;

/// Test double of the DPDK side: records every published snapshot.
#[derive(Default)]
struct Recorder {
    published: Mutex<Vec<Arc<Snapshot>>>,
}

impl Dataplane for Recorder {
    fn port_macs(&self) -> Vec<MacAddr> {
        vec![MacAddr([0x02, 0, 0, 0, 0, 1])]
    }

    fn publish(&self, snapshot: Arc<Snapshot>) -> PublishReport {
        let generation = snapshot.generation;
        self.published.lock().push(snapshot);
        PublishReport { generation, workers: 2, adopted: true, adopt_us: 17 }
    }

    fn stats(&self) -> Value {
        json!({ "workers": [ { "lcore": 1, "rx": 10 }, { "lcore": 2, "rx": 20 } ] })
    }

    fn service_stats(&self) -> Vec<ServiceStats> {
        Vec::new()
    }

    fn connections(&self, _filter: &ConnFilter, _offset: usize, _limit: usize) -> (Vec<ConnInfo>, usize) {
        (Vec::new(), 0)
    }

    fn zero_stats(&self) {}
}

impl Recorder {
    fn count(&self) -> usize {
        self.published.lock().len()
    }

    fn last(&self) -> Arc<Snapshot> {
        Arc::clone(self.published.lock().last().expect("a snapshot was published"))
    }
}

struct Harness {
    app: Router,
    state: Arc<ApiState>,
    dataplane: Arc<Recorder>,
}

fn harness() -> Harness {
    let config = Config::from_json(CONFIG).expect("test config is valid");
    let dataplane = Arc::new(Recorder::default());
    let state = ApiState::new(config, INITIAL_GENERATION, dataplane.clone());
    Harness { app: router(Arc::clone(&state)), state, dataplane }
}

impl Harness {
    /// Sends a request; a body is sent as `application/json`.
    async fn send(&self, method: &str, uri: &str, body: Option<&str>) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(uri);
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req.body(body.map(|b| Body::from(b.to_string())).unwrap_or_else(Body::empty)).expect("request");
        self.raw(req).await
    }

    async fn raw(&self, req: Request<Body>) -> (StatusCode, Value) {
        let resp = self.app.clone().oneshot(req).await.expect("router is infallible");
        let status = resp.status();
        let content_type = resp.headers().get("content-type").map(|v| v.to_str().expect("ascii").to_string());
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(content_type.as_deref(), Some("application/json"), "{status}: {}", String::from_utf8_lossy(&bytes));
        let value = serde_json::from_slice(&bytes).expect("JSON response body");
        (status, value)
    }

    /// Sends a request that must be refused with `status`, and checks that it
    /// changed nothing. Returns the error body.
    async fn refused(&self, method: &str, uri: &str, body: Option<&str>, status: StatusCode) -> Value {
        let before = self.state.config().await;
        let published = self.dataplane.count();
        let (got, value) = self.send(method, uri, body).await;
        assert_eq!(got, status, "{method} {uri}: {value}");
        assert!(value["error"].as_str().is_some_and(|e| !e.is_empty()), "no error message: {value}");
        assert!(value.get("field").is_some(), "no field member: {value}");
        assert_eq!(self.state.config().await, before, "config changed by a refused request");
        assert_eq!(self.dataplane.count(), published, "a refused request published a snapshot");
        assert_eq!(self.state.generation().await, INITIAL_GENERATION);
        value
    }
}

fn web_key() -> ServiceKey {
    ServiceKey { protocol: Protocol::Tcp, vip: Ipv4Addr::new(10, 0, 0, 100).into(), port: 80 }
}

const WEB: &str = "/api/v1/services/tcp/10.0.0.100/80";

#[tokio::test]
async fn status_config_and_stats() {
    let h = harness();
    let (s, v) = h.send("GET", "/api/v1/status", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v, json!({ "generation": 5, "workers": 2, "services": 1 }));

    let (s, v) = h.send("GET", "/api/v1/config", None).await;
    assert_eq!(s, StatusCode::OK);
    let config: Config = serde_json::from_value(v).expect("config JSON");
    assert_eq!(config, Config::from_json(CONFIG).expect("valid"));

    let (s, v) = h.send("GET", "/api/v1/stats", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["workers"][1]["rx"], 20);
    assert_eq!(h.dataplane.count(), 0);
}

#[tokio::test]
async fn list_and_get() {
    let h = harness();
    let (s, v) = h.send("GET", "/api/v1/services", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v.as_array().map(Vec::len), Some(1));
    assert_eq!(v[0]["vip"], "10.0.0.100");

    let (s, v) = h.send("GET", WEB, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["scheduler"], "rr");
    assert_eq!(v["reals"][0], json!({ "address": "10.1.0.11", "weight": 1 }));

    let (s, v) = h.send("GET", &format!("{WEB}/reals"), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v.as_array().map(Vec::len), Some(2));

    // A real without an explicit port is addressed by the service port.
    let (s, v) = h.send("GET", &format!("{WEB}/reals/10.1.0.11/80"), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["address"], "10.1.0.11");
    let (s, v) = h.send("GET", &format!("{WEB}/reals/10.1.0.12/80"), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["forward"], "dr");
    assert_eq!(h.dataplane.count(), 0);
}

#[tokio::test]
async fn add_edit_delete_service() {
    let h = harness();
    let body = r#"{"protocol": "udp", "vip": "10.0.0.53", "port": 53, "forward": "nat",
                   "reals": [{"address": "10.1.0.21", "port": 5353, "weight": 2}]}"#;
    let (s, v) = h.send("POST", "/api/v1/services", Some(body)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v, json!({ "generation": 6, "workers": 2, "adopted": true, "adopt_us": 17 }));
    assert_eq!(h.state.generation().await, 6);

    let snap = h.dataplane.last();
    assert_eq!(snap.generation, 6);
    let key = ServiceKey { protocol: Protocol::Udp, vip: Ipv4Addr::new(10, 0, 0, 53).into(), port: 53 };
    let (_, svc) = snap.service(&key).expect("new service in the snapshot");
    assert_eq!(svc.scheduler, SchedulerKind::Wlc, "default scheduler");
    assert_eq!((svc.reals[0].port, svc.reals[0].weight, svc.reals[0].forward), (5353, 2, ForwardMode::Nat));
    assert!(snap.service(&web_key()).is_some(), "existing service kept");

    let (s, v) = h.send("GET", "/api/v1/services/udp/10.0.0.53/53", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["scheduler"], "wlc");

    // Replace: new scheduler, one real.
    let body = r#"{"protocol": "udp", "vip": "10.0.0.53", "port": 53, "scheduler": "rr", "forward": "nat",
                   "reals": [{"address": "10.1.0.22", "port": 53, "weight": 4}]}"#;
    let (s, v) = h.send("PUT", "/api/v1/services/udp/10.0.0.53/53", Some(body)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["generation"], 7);
    let snap = h.dataplane.last();
    let (_, svc) = snap.service(&key).expect("service");
    assert_eq!(svc.scheduler, SchedulerKind::Rr);
    assert_eq!(svc.reals.len(), 1);
    assert_eq!(svc.reals[0].addr, Ipv4Addr::new(10, 1, 0, 22));

    // Path segments are case-insensitive for the protocol.
    let (s, v) = h.send("DELETE", "/api/v1/services/UDP/10.0.0.53/53", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["generation"], 8);
    assert!(h.dataplane.last().service(&key).is_none());
    assert_eq!(h.state.config().await.services.len(), 1);
    assert_eq!(h.dataplane.count(), 3);

    let (s, v) = h.send("GET", "/api/v1/status", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v, json!({ "generation": 8, "workers": 2, "services": 1 }));
}

#[tokio::test]
async fn add_edit_delete_real() {
    let h = harness();
    let (s, v) = h.send("POST", &format!("{WEB}/reals"), Some(r#"{"address": "10.1.0.13", "weight": 3}"#)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["generation"], 6);
    let snap = h.dataplane.last();
    let reals = &snap.service(&web_key()).expect("service").1.reals;
    assert_eq!(reals.len(), 3);
    // IPVS puts a new real server at the head of the list the schedulers walk.
    assert_eq!((reals[0].addr, reals[0].port, reals[0].weight), (Ipv4Addr::new(10, 1, 0, 13).into(), 80, 3));

    // Quiesce it (weight 0), as `ipvsadm -e ... -w 0` would.
    let (s, v) = h.send("PUT", &format!("{WEB}/reals/10.1.0.13/80"), Some(r#"{"address": "10.1.0.13", "weight": 0}"#)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["generation"], 7);
    let snap = h.dataplane.last();
    assert_eq!(snap.service(&web_key()).expect("service").1.reals[0].weight, 0);
    let (_, v) = h.send("GET", &format!("{WEB}/reals/10.1.0.13/80"), None).await;
    assert_eq!(v["weight"], 0);

    let (s, v) = h.send("DELETE", &format!("{WEB}/reals/10.1.0.11/80"), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let snap = h.dataplane.last();
    let addrs: Vec<std::net::IpAddr> = snap.service(&web_key()).expect("service").1.reals.iter().map(|r| r.addr).collect();
    assert_eq!(addrs, vec![Ipv4Addr::new(10, 1, 0, 13), Ipv4Addr::new(10, 1, 0, 12)], "newest first, as IPVS");
    assert_eq!(h.state.generation().await, 8);
    assert_eq!(h.state.config().await.services[0].reals.len(), 2);
}

#[tokio::test]
async fn nat_real_may_change_port() {
    let h = harness();
    let body = r#"{"address": "10.1.0.14", "port": 8080, "forward": "nat"}"#;
    let (s, v) = h.send("POST", &format!("{WEB}/reals"), Some(body)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = h.send("GET", &format!("{WEB}/reals/10.1.0.14/8080"), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v, json!({ "address": "10.1.0.14", "port": 8080, "weight": 1, "forward": "nat" }));
}

#[tokio::test]
async fn malformed_json_is_400() {
    let h = harness();
    let v = h.refused("POST", "/api/v1/services", Some(r#"{"protocol": "tcp", "vip": "#), StatusCode::BAD_REQUEST).await;
    assert!(v["error"].as_str().is_some_and(|e| e.contains("invalid JSON body")), "{v}");
    assert_eq!(v["field"], Value::Null);
    h.refused("POST", &format!("{WEB}/reals"), Some("not json"), StatusCode::BAD_REQUEST).await;
    h.refused("PUT", WEB, Some(""), StatusCode::BAD_REQUEST).await;
}

#[tokio::test]
async fn wrong_type_is_400() {
    let h = harness();
    let v =
        h.refused("POST", &format!("{WEB}/reals"), Some(r#"{"address": "10.1.0.13", "weight": "heavy"}"#), StatusCode::BAD_REQUEST).await;
    let e = v["error"].as_str().expect("message");
    assert!(e.contains("weight") && e.contains("invalid type"), "{e}");
    let v = h
        .refused("POST", "/api/v1/services", Some(r#"{"protocol": "tcp", "vip": "10.0.0.7", "port": "http"}"#), StatusCode::BAD_REQUEST)
        .await;
    assert!(v["error"].as_str().is_some_and(|e| e.contains("port")), "{v}");
    // A bad address is a type error too.
    h.refused("POST", "/api/v1/services", Some(r#"{"protocol": "tcp", "vip": "10.0.0", "port": 80}"#), StatusCode::BAD_REQUEST).await;
}

#[tokio::test]
async fn unknown_field_is_named() {
    let h = harness();
    let v = h.refused("POST", &format!("{WEB}/reals"), Some(r#"{"address": "10.1.0.13", "wieght": 2}"#), StatusCode::BAD_REQUEST).await;
    assert!(v["error"].as_str().is_some_and(|e| e.contains("unknown field `wieght`")), "{v}");
    let body = r#"{"protocol": "tcp", "vip": "10.0.0.7", "port": 80, "persistent": 300}"#;
    let v = h.refused("POST", "/api/v1/services", Some(body), StatusCode::BAD_REQUEST).await;
    assert!(v["error"].as_str().is_some_and(|e| e.contains("unknown field `persistent`")), "{v}");
}

#[tokio::test]
async fn unknown_scheduler_is_400() {
    let h = harness();
    let body = r#"{"protocol": "tcp", "vip": "10.0.0.7", "port": 80, "scheduler": "fastest"}"#;
    let v = h.refused("POST", "/api/v1/services", Some(body), StatusCode::BAD_REQUEST).await;
    let e = v["error"].as_str().expect("message");
    assert!(e.starts_with("invalid JSON body: scheduler: unknown variant `fastest`, expected one of"), "{e}");
}

#[tokio::test]
async fn duplicate_service_is_409() {
    let h = harness();
    let body = r#"{"protocol": "tcp", "vip": "10.0.0.100", "port": 80}"#;
    let v = h.refused("POST", "/api/v1/services", Some(body), StatusCode::CONFLICT).await;
    assert!(v["error"].as_str().is_some_and(|e| e.contains("already exists")), "{v}");
}

#[tokio::test]
async fn duplicate_real_is_409() {
    let h = harness();
    // Explicit port equal to the default counts as the same real server.
    let v = h.refused("POST", &format!("{WEB}/reals"), Some(r#"{"address": "10.1.0.11", "port": 80}"#), StatusCode::CONFLICT).await;
    assert!(v["error"].as_str().is_some_and(|e| e.contains("10.1.0.11:80")), "{v}");
    h.refused("POST", &format!("{WEB}/reals"), Some(r#"{"address": "10.1.0.12"}"#), StatusCode::CONFLICT).await;
}

#[tokio::test]
async fn weight_out_of_range_is_400_with_field() {
    let h = harness();
    let v = h.refused("POST", &format!("{WEB}/reals"), Some(r#"{"address": "10.1.0.13", "weight": 70000}"#), StatusCode::BAD_REQUEST).await;
    assert_eq!(v, json!({ "error": "weight: 70000 is out of range 0..=65535", "field": "weight" }));

    // In a service body the path is relative to the service.
    let body = r#"{"protocol": "tcp", "vip": "10.0.0.7", "port": 80,
                   "reals": [{"address": "10.1.0.11"}, {"address": "10.1.0.12", "weight": 70000}]}"#;
    let v = h.refused("POST", "/api/v1/services", Some(body), StatusCode::BAD_REQUEST).await;
    assert_eq!(v["field"], "reals[1].weight");

    let v = h
        .refused("PUT", &format!("{WEB}/reals/10.1.0.11/80"), Some(r#"{"address": "10.1.0.11", "weight": 70000}"#), StatusCode::BAD_REQUEST)
        .await;
    assert_eq!(v["field"], "weight");
}

#[tokio::test]
async fn dr_real_port_must_equal_service_port() {
    let h = harness();
    let v = h.refused("POST", &format!("{WEB}/reals"), Some(r#"{"address": "10.1.0.13", "port": 8080}"#), StatusCode::BAD_REQUEST).await;
    assert_eq!(v["field"], "port");
    assert!(v["error"].as_str().is_some_and(|e| e.contains("dr forwarding cannot change the port")), "{v}");

    let body = r#"{"protocol": "tcp", "vip": "10.0.0.100", "port": 80, "forward": "dr",
                   "reals": [{"address": "10.1.0.11", "port": 8080}]}"#;
    let v = h.refused("PUT", WEB, Some(body), StatusCode::BAD_REQUEST).await;
    assert_eq!(v["field"], "reals[0].port");
}

#[tokio::test]
async fn other_validation_failures() {
    let h = harness();
    let v = h
        .refused("POST", "/api/v1/services", Some(r#"{"protocol": "tcp", "vip": "224.0.0.1", "port": 80}"#), StatusCode::BAD_REQUEST)
        .await;
    assert_eq!(v["field"], "vip");
    let v =
        h.refused("POST", "/api/v1/services", Some(r#"{"protocol": "tcp", "vip": "10.0.0.7", "port": 0}"#), StatusCode::BAD_REQUEST).await;
    assert_eq!(v["field"], "port");
    let v = h.refused("POST", &format!("{WEB}/reals"), Some(r#"{"address": "10.0.0.1"}"#), StatusCode::BAD_REQUEST).await;
    assert_eq!(v["field"], "address");
}

#[tokio::test]
async fn body_must_match_path() {
    let h = harness();
    let body = r#"{"protocol": "tcp", "vip": "10.0.0.100", "port": 81}"#;
    let v = h.refused("PUT", WEB, Some(body), StatusCode::BAD_REQUEST).await;
    assert_eq!(v["field"], "port");
    let body = r#"{"protocol": "udp", "vip": "10.0.0.100", "port": 80}"#;
    let v = h.refused("PUT", WEB, Some(body), StatusCode::BAD_REQUEST).await;
    assert_eq!(v["field"], "protocol");
    let v = h.refused("PUT", &format!("{WEB}/reals/10.1.0.11/80"), Some(r#"{"address": "10.1.0.99"}"#), StatusCode::BAD_REQUEST).await;
    assert_eq!(v["field"], "address");
    let v = h
        .refused(
            "PUT",
            &format!("{WEB}/reals/10.1.0.11/80"),
            Some(r#"{"address": "10.1.0.11", "port": 81, "forward": "nat"}"#),
            StatusCode::BAD_REQUEST,
        )
        .await;
    assert_eq!(v["field"], "port");
}

#[tokio::test]
async fn bad_path_segments_are_400() {
    let h = harness();
    let v = h.refused("GET", "/api/v1/services/sctp/10.0.0.100/80", None, StatusCode::BAD_REQUEST).await;
    assert!(v["error"].as_str().is_some_and(|e| e.contains("sctp")), "{v}");
    h.refused("DELETE", "/api/v1/services/sctp/10.0.0.100/80", None, StatusCode::BAD_REQUEST).await;
    let v = h.refused("GET", "/api/v1/services/tcp/10.0.0/80", None, StatusCode::BAD_REQUEST).await;
    assert!(v["error"].as_str().is_some_and(|e| e.contains("10.0.0")), "{v}");
    h.refused("GET", "/api/v1/services/tcp/10.0.0.100/http", None, StatusCode::BAD_REQUEST).await;
    h.refused("GET", "/api/v1/services/tcp/10.0.0.100/0", None, StatusCode::BAD_REQUEST).await;
    h.refused("POST", "/api/v1/services/sctp/10.0.0.100/80/reals", Some(r#"{"address": "10.1.0.13"}"#), StatusCode::BAD_REQUEST).await;
    h.refused("DELETE", &format!("{WEB}/reals/10.1.0/80"), None, StatusCode::BAD_REQUEST).await;
    h.refused("DELETE", &format!("{WEB}/reals/10.1.0.11/99999"), None, StatusCode::BAD_REQUEST).await;
}

#[tokio::test]
async fn missing_service_or_real_is_404() {
    let h = harness();
    let missing = "/api/v1/services/tcp/10.0.0.100/81";
    let v = h.refused("GET", missing, None, StatusCode::NOT_FOUND).await;
    assert_eq!(v, json!({ "error": "no service tcp 10.0.0.100:81", "field": null }));
    h.refused("DELETE", missing, None, StatusCode::NOT_FOUND).await;
    h.refused("PUT", missing, Some(r#"{"protocol": "tcp", "vip": "10.0.0.100", "port": 81}"#), StatusCode::NOT_FOUND).await;
    h.refused("GET", &format!("{missing}/reals"), None, StatusCode::NOT_FOUND).await;
    h.refused("POST", &format!("{missing}/reals"), Some(r#"{"address": "10.1.0.13"}"#), StatusCode::NOT_FOUND).await;
    h.refused("GET", &format!("{WEB}/reals/10.1.0.99/80"), None, StatusCode::NOT_FOUND).await;
    h.refused("DELETE", &format!("{WEB}/reals/10.1.0.11/8080"), None, StatusCode::NOT_FOUND).await;
    h.refused("PUT", &format!("{WEB}/reals/10.1.0.99/80"), Some(r#"{"address": "10.1.0.99"}"#), StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn unknown_route_and_method_are_json() {
    let h = harness();
    let v = h.refused("GET", "/api/v1/nope", None, StatusCode::NOT_FOUND).await;
    assert!(v["error"].as_str().is_some_and(|e| e.contains("/api/v1/nope")), "{v}");
    h.refused("GET", "/nope", None, StatusCode::NOT_FOUND).await;
    // `/` leads to the status page (control/tests/status_page.rs); other methods there are refused as JSON.
    h.refused("POST", "/", Some("{}"), StatusCode::METHOD_NOT_ALLOWED).await;
    h.refused("DELETE", "/api/v1/services", None, StatusCode::METHOD_NOT_ALLOWED).await;
    h.refused("POST", "/api/v1/status", Some("{}"), StatusCode::METHOD_NOT_ALLOWED).await;
}

#[tokio::test]
async fn wrong_content_type_is_415() {
    let h = harness();
    let before = h.state.config().await;
    let req = Request::builder()
        .method("POST")
        .uri(format!("{WEB}/reals"))
        .header("content-type", "text/plain")
        .body(Body::from(r#"{"address": "10.1.0.13"}"#))
        .expect("request");
    let (s, v) = h.raw(req).await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(v["error"].as_str().is_some_and(|e| e.contains("application/json")), "{v}");
    let req = Request::builder().method("POST").uri("/api/v1/services").body(Body::from("{}")).expect("request");
    let (s, _) = h.raw(req).await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(h.state.config().await, before);
    assert_eq!(h.dataplane.count(), 0);
}

#[tokio::test]
async fn refused_changes_keep_later_changes_consistent() {
    let h = harness();
    h.refused("POST", &format!("{WEB}/reals"), Some(r#"{"address": "10.1.0.13", "weight": 70000}"#), StatusCode::BAD_REQUEST).await;
    // The next accepted change gets the next generation, not one skipped by the refusal.
    let (s, v) = h.send("POST", &format!("{WEB}/reals"), Some(r#"{"address": "10.1.0.13", "weight": 7}"#)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["generation"], INITIAL_GENERATION + 1);
    assert_eq!(h.dataplane.count(), 1);
}
