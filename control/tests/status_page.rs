//! The status page (`GET /status`, `/`), its document (`GET /api/v1/overview`)
//! and the event ring (`GET /api/v1/events`), over a real HTTP server
//! (`common::Server`). Health-driven content is tested in
//! `health_effective.rs`; the page in a real browser in
//! `tests/e2e/test_70_status_page.py`.

mod common;

use common::Server;
use rvs_control::api::ApiOptions;
use rvs_control::config::Config;
use serde_json::{json, Value};

const TOKEN: &str = "secret-api-token-42";

fn server() -> Server {
    let config = Config::from_json(
        r#"{
      "workers": [1, 2],
      "ports": [ { "name": "lan0", "device": "net_ring0", "addresses": ["10.0.0.1/24", "10.1.0.1/24"] } ],
      "api": { "listen": "127.0.0.1:9090", "token": "secret-api-token-42" },
      "services": [ { "protocol": "tcp", "vip": "10.0.0.100", "port": 80, "scheduler": "rr", "forward": "nat",
                      "reals": [ { "address": "10.1.0.11", "weight": 4 }, { "address": "10.1.0.12", "port": 8080 } ] } ]
    }"#,
    )
    .expect("valid config");
    Server::start(config, ApiOptions { config_path: None, token: Some(TOKEN.into()) })
}

/// (status, content type, body) of a GET that does not follow redirects.
fn get(s: &Server, path: &str) -> (u16, String, String, Option<String>) {
    let agent = ureq::AgentBuilder::new().redirects(0).build();
    let resp = match agent.get(&format!("{}{path}", s.url())).call() {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("GET {path}: {e}"),
    };
    let status = resp.status();
    let ctype = resp.header("content-type").unwrap_or_default().to_string();
    let location = resp.header("location").map(str::to_string);
    let csp = resp.header("content-security-policy").map(str::to_string);
    let body = resp.into_string().expect("body");
    (status, ctype, body, location.or(csp))
}

fn get_json(s: &Server, path: &str) -> (u16, Value) {
    let (status, _, body, _) = get(s, path);
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn put_config(s: &Server, config: &Value) -> (u16, Value) {
    let resp = ureq::put(&format!("{}/api/v1/config", s.url())).set("authorization", &format!("Bearer {TOKEN}")).send_json(config.clone());
    let resp = match resp {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("PUT: {e}"),
    };
    (resp.status(), resp.into_json().unwrap_or(Value::Null))
}

#[test]
fn the_page_is_self_contained_and_served_without_a_token() {
    let s = server();
    let (status, ctype, html, csp) = get(&s, "/status");
    assert_eq!(status, 200);
    assert_eq!(ctype, "text/html; charset=utf-8");
    let csp = csp.expect("a Content-Security-Policy");
    assert!(csp.starts_with("default-src 'none'") && csp.contains("connect-src 'self'"), "{csp}");
    // Nothing from elsewhere: no URL with a scheme or host, no external script, style or image.
    for needle in ["http://", "https://", "src=", "@import", "url(", "//cdn"] {
        assert!(!html.contains(needle), "the page refers to something outside: `{needle}`");
    }
    assert!(html.contains("fetch(\"/api/v1/overview\""), "the page polls the overview");
    assert_eq!(html.matches("<script>").count(), 1);
    assert!(!html.contains(TOKEN));
    // `/` leads there.
    let (status, _, _, location) = get(&s, "/");
    assert_eq!((status, location.as_deref()), (307, Some("/status")));
}

#[test]
fn the_overview_shows_the_configured_table_and_no_secret() {
    let s = server();
    let (status, o) = get_json(&s, "/api/v1/overview");
    assert_eq!(status, 200, "{o}");
    assert_eq!(o["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(o["generation"], 1);
    assert_eq!(o["refresh_seconds"], 1);
    let svc = &o["services"][0];
    assert_eq!(svc["id"], "tcp/10.0.0.100/80");
    assert_eq!(svc["quorum"], Value::Null, "no health checking");
    let reals: Vec<(Value, Value, Value, Value)> = svc["reals"]
        .as_array()
        .expect("reals")
        .iter()
        .map(|r| (r["address"].clone(), r["port"].clone(), r["state"].clone(), r["weight"].clone()))
        .collect();
    assert_eq!(
        reals,
        [(json!("10.1.0.11"), json!(80), json!("unchecked"), json!(4)), (json!("10.1.0.12"), json!(8080), json!("unchecked"), json!(1))]
    );
    // The test dataplane's two workers and its port.
    assert_eq!(o["workers"][0]["rx_packets"], 10);
    assert_eq!(o["workers"][0]["drops"], 1);
    assert_eq!(o["workers"][1]["connections"], 6);
    assert_eq!(o["workers"][1]["connection_table_size"], 65536);
    // The pressure gauge of the table-pressure defences, as a flag.
    assert_eq!(
        (o["workers"][0]["syn_flood_pressure"].as_bool(), o["workers"][1]["syn_flood_pressure"].as_bool()),
        (Some(false), Some(true))
    );
    assert_eq!(svc["syn_proxy"], "off");
    assert_eq!(o["ports"][0]["rx_missed"], 1);
    assert_eq!(o["mempool"]["available"], 8000);
    assert_eq!(o["vrrp"], json!([]));
    assert_eq!(o["sync"], Value::Null);
    assert!(o["started"].as_f64().is_some_and(|t| t <= o["time"].as_f64().unwrap_or(0.0)), "{o}");
    assert!(!o.to_string().contains(TOKEN), "the token leaked: {o}");
}

#[test]
fn changes_are_events_and_the_page_can_be_turned_off_live() {
    let s = server();
    let (_, first) = get_json(&s, "/api/v1/events");
    assert_eq!(first["last_seq"], 1, "the start: {first}");
    assert_eq!(first["events"][0]["kind"], "daemon");

    let (_, mut config) = get_json(&s, "/api/v1/config");
    config["api"]["status_page"] = json!(false);
    let (status, answer) = put_config(&s, &config);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["changes"][0]["kind"], "api", "{answer}");
    let (status, _, body, _) = get(&s, "/status");
    assert_eq!(status, 404);
    assert!(body.contains("api.status_page"), "{body}");
    assert_eq!(get(&s, "/").0, 404);
    assert_eq!(get_json(&s, "/api/v1/overview").0, 200, "the JSON API stays");

    let (_, events) = get_json(&s, "/api/v1/events?after=1");
    let list = events["events"].as_array().cloned().unwrap_or_default();
    assert_eq!(list.len(), 1, "{events}");
    assert_eq!(list[0]["seq"], 2);
    assert_eq!(list[0]["kind"], "config");
    assert_eq!(list[0]["severity"], "info");
    assert_eq!(list[0]["details"]["generation"], 2);
    assert_eq!(list[0]["details"]["source"], "api");
    assert!(!events.to_string().contains(TOKEN));

    config["api"]["status_page"] = json!(true);
    assert_eq!(put_config(&s, &config).0, 200);
    assert_eq!(get(&s, "/status").0, 200);
    let (_, events) = get_json(&s, "/api/v1/events?limit=1");
    assert_eq!(events["events"].as_array().map(Vec::len), Some(1));
    assert_eq!(events["events"][0]["seq"], 3, "the newest");
    assert_eq!(get_json(&s, "/api/v1/events?after=3").1["events"], json!([]));

    for (query, field) in [("limit=0", "limit"), ("limit=257", "limit"), ("after=x", "after"), ("since=1", "since")] {
        let (status, v) = get_json(&s, &format!("/api/v1/events?{query}"));
        assert_eq!(status, 400, "{query}: {v}");
        assert_eq!(v["field"], field, "{query}: {v}");
    }
}
