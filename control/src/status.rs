//! The live status page (`GET /status`) and the document it shows
//! (`GET /api/v1/overview`).
//!
//! The page is one HTML file with its CSS and JavaScript inline
//! (`control/src/status.html`, compiled into rvsd): no CDN, no external
//! font or script, so it works on an isolated management network. It polls
//! `GET /api/v1/overview` once a second and redraws in place (no reload):
//! services and real servers with their effective weight, health and last
//! check, connections and rates with small charts drawn on canvases, VRRP
//! state per instance and the peer last heard, connection sync, per-worker
//! load, ports, the packet-buffer pool and the recent events.
//!
//! Polling rather than a server-sent event stream: an open stream is a
//! request in flight, and rvsd's graceful shutdown waits for those; a poll of
//! one JSON document a second costs little and ends at once.
//!
//! # What an unauthenticated viewer sees
//!
//! Nothing beyond what the open `GET` endpoints of the API already show
//! (the API token guards changes only; the API listens on the management
//! address): the overview is a subset of `/api/v1/config/effective`,
//! `/api/v1/stats`, `/api/v1/stats/services`, `/api/v1/health`,
//! `/api/v1/ha` and `/api/v1/events`. It leaves out what a viewer of a status
//! page does not need even of those: the API token and sync key (never shown
//! anywhere), VRRP passwords, notify and check commands, check URLs and
//! virtual hosts, routes and EAL arguments. The page changes nothing: it
//! sends `GET` requests only. `api.status_page: false` turns the page off
//! (404), e.g. where the management network is shared with people who
//! should not see the service layout.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use rvs_dataplane::stats::ServiceStats;
use serde_json::{json, Value};

use crate::api::ApiState;
use crate::config::Config;
use crate::health::HealthReport;
use crate::rate::RateEstimator;

/// The page, compiled in.
pub const STATUS_HTML: &str = include_str!("status.html");

/// How often the page polls the overview, seconds (also in the document as
/// `refresh_seconds`).
pub const REFRESH_SECONDS: u64 = 1;

/// Events the overview carries (the newest).
pub const OVERVIEW_EVENTS: usize = 30;

/// The page's Content-Security-Policy: nothing from elsewhere, requests to
/// this server only.
const CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn disabled() -> Response {
    let body = json!({ "error": "the status page is turned off (api.status_page: false)", "field": "api.status_page" });
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}

/// `GET /status`: the page.
pub async fn page(State(state): State<Arc<ApiState>>) -> Response {
    if !state.status_page_enabled().await {
        return disabled();
    }
    let mut resp = STATUS_HTML.into_response();
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(HeaderName::from_static("content-security-policy"), HeaderValue::from_static(CSP));
    headers.insert(HeaderName::from_static("x-content-type-options"), HeaderValue::from_static("nosniff"));
    headers.insert(HeaderName::from_static("referrer-policy"), HeaderValue::from_static("no-referrer"));
    resp
}

/// `GET /`: to the status page.
pub async fn root(State(state): State<Arc<ApiState>>) -> Response {
    if !state.status_page_enabled().await {
        return disabled();
    }
    (StatusCode::TEMPORARY_REDIRECT, [(LOCATION, "/status")]).into_response()
}

/// `GET /api/v1/overview`.
pub async fn overview_handler(State(state): State<Arc<ApiState>>) -> Response {
    let (operator, generation) = {
        let config = state.config().await;
        let generation = state.generation().await;
        (config, generation)
    };
    let effective = state.effective(&operator);
    let s = Arc::clone(&state);
    let gathered = tokio::task::spawn_blocking(move || (s.service_stats(), s.dataplane_stats())).await;
    let (stats, dataplane) = match gathered {
        Ok(x) => x,
        Err(e) => {
            let body = json!({ "error": format!("the dataplane query failed: {e}"), "field": null });
            return (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response();
        }
    };
    let input = OverviewInput {
        operator: &operator,
        effective: &effective,
        generation,
        stats: &stats,
        dataplane: &dataplane,
        health: &state.health(),
        ha: &state.overlay_status(),
    };
    let mut doc = state.with_rates(|rates| overview(&input, rates));
    doc["started"] = json!(state.started());
    doc["events"] = json!(state.events().after(0, OVERVIEW_EVENTS));
    doc["last_event"] = json!(state.events().last_seq());
    let mut resp = Json(doc).into_response();
    resp.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// What [`overview`] is made of.
#[derive(Debug)]
pub struct OverviewInput<'a> {
    /// The operator's config.
    pub operator: &'a Config,
    /// The config as the dataplane runs it (health checks applied).
    pub effective: &'a Config,
    /// Its generation.
    pub generation: u64,
    /// Per-service counters.
    pub stats: &'a [ServiceStats],
    /// [`crate::api::Dataplane::stats`].
    pub dataplane: &'a Value,
    /// The health report.
    pub health: &'a HealthReport,
    /// [`crate::api::ApiState::overlay_status`].
    pub ha: &'a Value,
}

fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// The overview document (without `started`, `events`, `last_event`, which
/// the handler adds).
pub fn overview(input: &OverviewInput<'_>, rates: &RateEstimator) -> Value {
    let services: Vec<Value> = input.operator.services.iter().map(|svc| service_view(input, rates, svc)).collect();
    let conn_table_size = input.operator.conn_table_size;
    let workers: Vec<Value> = input
        .dataplane
        .get("workers")
        .and_then(Value::as_array)
        .map(|ws| {
            ws.iter()
                .enumerate()
                .map(|(i, w)| {
                    let counters = w.get("counters").and_then(Value::as_object);
                    let get = |name: &str| counters.and_then(|c| c.get(name)).and_then(Value::as_u64).unwrap_or(0);
                    let drops: u64 = counters
                        .map(|c| c.iter().filter(|(k, _)| k.starts_with("drop_")).filter_map(|(_, v)| v.as_u64()).sum())
                        .unwrap_or(0);
                    json!({
                        "worker": w.get("worker").and_then(Value::as_u64).unwrap_or(i as u64),
                        "lcore": w.get("lcore"),
                        "rx_packets": get("rx_packets"),
                        "rx_bytes": get("rx_bytes"),
                        "tx_packets": get("tx_packets"),
                        "tx_bytes": get("tx_bytes"),
                        "drops": drops,
                        "redirect_in": get("redirect_in"),
                        "redirect_out": get("redirect_out"),
                        "connections": get("conn_active"),
                        "connection_table_size": conn_table_size,
                        // The gauge the table-pressure defences set (deploy/docs/synflood.md).
                        "syn_flood_pressure": get("syn_flood_pressure") != 0,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let ports: Vec<Value> = input
        .dataplane
        .get("ports")
        .and_then(Value::as_array)
        .map(|ps| {
            ps.iter()
                .map(|p| {
                    let stat = |name: &str| p.get("stats").and_then(|s| s.get(name)).and_then(Value::as_u64).unwrap_or(0);
                    json!({
                        "name": p.get("name"),
                        "link_up": p.get("link_up"),
                        "rx_packets": stat("ipackets"),
                        "tx_packets": stat("opackets"),
                        "rx_missed": stat("imissed"),
                        "rx_errors": stat("ierrors"),
                        "tx_errors": stat("oerrors"),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let vrrp: Vec<Value> = input
        .ha
        .get("vrrp")
        .and_then(Value::as_array)
        .map(|is| {
            is.iter()
                .map(|i| {
                    let stats = i.get("stats");
                    let stat = |name: &str| stats.and_then(|s| s.get(name)).and_then(Value::as_u64).unwrap_or(0);
                    json!({
                        "instance": i.get("instance"),
                        "state": i.get("state"),
                        "priority": i.get("priority"),
                        "virtual_router_id": i.get("virtual_router_id"),
                        "interface": i.get("interface"),
                        "virtual_ipaddress": i.get("virtual_ipaddress"),
                        "unicast_peer": i.get("unicast_peer"),
                        "last_advert": i.get("last_advert"),
                        "transitions": i.get("transitions"),
                        "adverts_sent": stat("advert_sent"),
                        "adverts_received": stat("advert_rcvd"),
                        "become_master": stat("become_master"),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let sync = match input.ha.get("sync") {
        Some(s) if !s.is_null() => {
            let rejected: u64 = s["rejected"].as_object().map(|r| r.values().filter_map(Value::as_u64).sum()).unwrap_or(0);
            json!({
                "instance": s.get("instance"),
                "master": s.get("master"),
                "sent": s["datagrams"]["sent"],
                "received": s["datagrams"]["received"],
                "installed": s.get("installed"),
                "send_errors": s.get("send_errors"),
                "rejected": rejected,
            })
        }
        _ => Value::Null,
    };
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "time": now(),
        "generation": input.generation,
        "refresh_seconds": REFRESH_SECONDS,
        "services": services,
        "vrrp": vrrp,
        "sync": sync,
        "workers": workers,
        "ports": ports,
        "mempool": input.dataplane.get("mempool").cloned().unwrap_or(Value::Null),
    })
}

fn service_view(input: &OverviewInput<'_>, rates: &RateEstimator, svc: &crate::config::ServiceConfig) -> Value {
    let key = svc.key();
    let stats = input.stats.iter().find(|s| s.key == key);
    let effective = input.effective.service_index(&key).map(|i| &input.effective.services[i]);
    let quorum = input.health.services.iter().find(|s| s.service == key).map(|q| {
        json!({ "state": q.quorum_state, "quorum": q.quorum, "weight_sum": q.weight_sum, "sorry_server_active": q.sorry_server_active })
    });
    let traffic_of = |addr, port| stats.and_then(|s| s.reals.iter().find(|r| r.addr == addr && r.port == port));
    let real_json = |address, port, forward: Value, configured_weight: Option<u32>, sorry: bool| {
        let health = input.health.reals.iter().find(|r| r.service == key && r.address == address && r.port == port);
        let in_effective = effective.and_then(|e| e.reals.iter().find(|r| r.address == address && r.port_for(e) == port));
        let t = traffic_of(address, port);
        let state = if sorry {
            "sorry"
        } else {
            match health {
                Some(h) => h.state,
                None => "unchecked",
            }
        };
        json!({
            "address": address,
            "port": port,
            "forward": forward,
            "state": state,
            "in_pool": in_effective.is_some(),
            "weight": in_effective.map_or(0, |r| r.weight),
            "configured_weight": configured_weight,
            "health": health.map(|h| json!({
                "checks": h.checks,
                "last_result": h.last_result,
                "last_error": h.last_error,
                "last_check": h.last_check,
                "last_duration": h.last_duration,
                "consecutive_failures": h.consecutive_failures,
                "last_change": h.last_change,
            })),
            "conns": t.map_or(0, |x| x.traffic.conns),
            "in_pkts": t.map_or(0, |x| x.traffic.in_pkts),
            "out_pkts": t.map_or(0, |x| x.traffic.out_pkts),
            "in_bytes": t.map_or(0, |x| x.traffic.in_bytes),
            "out_bytes": t.map_or(0, |x| x.traffic.out_bytes),
            "active": t.map_or(0, |x| x.active),
            "inactive": t.map_or(0, |x| x.inactive),
            "rates": rates.real(&key, address, port),
        })
    };
    let mut reals: Vec<Value> =
        svc.reals.iter().map(|r| real_json(r.address, r.port_for(svc), json!(r.forward_for(svc)), Some(r.weight), false)).collect();
    // Reals the dataplane runs that the operator did not configure: the sorry server.
    if let Some(e) = effective {
        for r in &e.reals {
            let port = r.port_for(e);
            if !svc.reals.iter().any(|c| c.address == r.address && c.port_for(svc) == port) {
                reals.push(real_json(r.address, port, json!(r.forward_for(e)), None, true));
            }
        }
    }
    let t = stats.map(|s| s.traffic).unwrap_or_default();
    // As `GET /api/v1/stats/services`: over the real servers the dataplane runs.
    let (active, inactive) = reals
        .iter()
        .filter(|r| r["in_pool"] == true)
        .fold((0u64, 0u64), |(a, i), r| (a + r["active"].as_u64().unwrap_or(0), i + r["inactive"].as_u64().unwrap_or(0)));
    json!({
        "id": format!("{}/{}/{}", key.protocol, key.vip, key.port),
        "protocol": key.protocol,
        "vip": key.vip,
        "port": key.port,
        "scheduler": svc.scheduler,
        "syn_proxy": crate::config::syn_proxy_name(svc.syn_proxy),
        "forward": svc.forward,
        "quorum": quorum,
        "conns": t.conns,
        "in_pkts": t.in_pkts,
        "out_pkts": t.out_pkts,
        "in_bytes": t.in_bytes,
        "out_bytes": t.out_bytes,
        "active": active,
        "inactive": inactive,
        "rates": rates.service(&key),
        "reals": reals,
    })
}
