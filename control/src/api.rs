//! The REST API of rvsd (axum), under `/api/v1`, plus `GET /metrics` and the status page (`GET /status`).
//!
//! Bodies use the same JSON schema as the config file ([`crate::config`]): a service
//! is a [`ServiceConfig`], a real server a [`RealConfig`], unknown fields are errors.
//! Services are addressed as `{protocol}/{vip}/{port}` (`tcp/10.0.0.100/80`), real
//! servers as `{address}/{rport}` below their service, where `rport` is the real
//! server's effective port (the service port when the real has none).
//!
//! The full reference, with examples, is `deploy/docs/api.md`; the OpenAPI
//! document is served at `GET /api/v1/openapi.json` (source: `control/openapi.json`).
//!
//! # Authentication
//!
//! When a token is configured (`api.token` in the config, or the environment
//! variable `RVS_API_TOKEN`, which wins), every request that is not `GET`,
//! `HEAD` or `OPTIONS` must carry `Authorization: Bearer <token>`; otherwise it
//! is refused with 401 and changes nothing. Reads stay open (the API listens on
//! the management address only), but for `GET /api/v1/capture`, which hands
//! out traffic and needs the token too. The token itself is never shown by
//! `GET /api/v1/config`, nor is the connection-sync key (`sync.key`); a
//! `PUT /api/v1/config` that leaves either out keeps it, and neither can be
//! changed through the API.
//!
//! # Changes
//!
//! Every change is all-or-nothing. Under one lock the API copies the current
//! config, applies the change to the copy, validates it, builds a snapshot with
//! the next generation number, writes the config file atomically (when rvsd
//! runs with one, see [`crate::persist`]), hands the snapshot to the dataplane
//! and waits until every worker has adopted it (or the dataplane gives up
//! waiting); only then does the copy become the current config. A failed
//! write of the file refuses the change (500) before the dataplane sees it.
//! A successful change answers (201 for creates, 200 otherwise):
//!
//! ```json
//! {"generation": 8, "workers": 2, "adopted": true, "adopt_us": 41}
//! ```
//!
//! `adopted: false` means the snapshot was handed over but not every worker
//! confirmed it in time; the change is still recorded.
//!
//! Optimistic concurrency: `GET /api/v1/config`, `GET /api/v1/timeouts` and
//! `GET /api/v1/syn_flood` answer with `ETag: "<generation>"`; a change sent with `If-Match:
//! "<generation>"` is refused with 412 when the config has changed since.
//!
//! # Errors
//!
//! Every refused request changes nothing and answers a 4xx status (5xx for
//! internal failures) with
//!
//! ```json
//! {"error": "reals[1].weight: 70000 is out of range 0..=65535", "field": "reals[1].weight"}
//! ```
//!
//! `field` is the JSON path of the offending value (or query parameter), or
//! `null` when the error is not about one field. It is relative to the request
//! body when the error lies inside the body (`reals[1].weight` for a service
//! body, `weight` for a real server body) and the full config path otherwise
//! (`services[2].port`).
//!
//! | status | when |
//! |---|---|
//! | 400 | malformed JSON, wrong type, unknown field or value (serde's message, which names the path), failed validation (e.g. a health check without exception path), bad path segment or query parameter, body key differing from the path, a restart-only field changed by `PUT /api/v1/config` |
//! | 401 | a change or a capture without the bearer token, or with a wrong one |
//! | 404 | unknown service, real server, local address or endpoint |
//! | 405 | method not allowed on an existing endpoint |
//! | 409 | creating a service, real server or local address that exists; a capture while another runs |
//! | 412 | `If-Match` names a generation that is no longer current |
//! | 415 | body without `Content-Type: application/json` |
//! | 500 | the snapshot could not be built or published, or the config file could not be written |
//! | 501 | a capture on a dataplane that cannot capture |
//! | 502 | a drain started but BIRD did not take the withdrawal (`birdc` failed) |
//!
//! # Routes
//!
//! | route | what |
//! |---|---|
//! | `GET /status`, `GET /` | the live status page ([`crate::status`]; `/` redirects to it), unless `api.status_page` is false |
//! | `GET /metrics` | Prometheus text format 0.0.4 ([`crate::metrics`]) |
//! | `GET /api/v1/overview` | everything the status page shows, in one document ([`crate::status::overview`]) |
//! | `GET /api/v1/events?after=&limit=` | recent events from the ring ([`crate::events`]) |
//! | `GET /api/v1/openapi.json` | the OpenAPI 3 document of this API |
//! | `GET /api/v1/status` | `{"generation", "workers", "services"}` |
//! | `GET /api/v1/health` | health checks: every checked real server and managed service ([`HealthReport`]) |
//! | `GET /api/v1/cluster` | scale-out behind ECMP: VIPs announced through BIRD, worker liveness, drain state ([`crate::cluster`]) |
//! | `POST /api/v1/cluster/drain[?grace=SECONDS]` | drain: withdraw every route, serve existing flows for the grace period, then stop |
//! | `GET /api/v1/config` | the whole config (`api.token` and `sync.key` left out), with `ETag` |
//! | `GET /api/v1/config/effective` | the config as the dataplane runs it: health checks applied (read-only) |
//! | `PUT /api/v1/config[?dry_run=true]` | replace the whole config; answers the diff (`changes`); a dry run changes nothing |
//! | `GET`/`PUT /api/v1/timeouts` | connection timeouts (ipvsadm `--set`, `-L --timeout`) |
//! | `GET`/`PUT /api/v1/syn_flood` | SYN-flood and table-pressure defences (config `syn_flood`; fields left out take their defaults) |
//! | `GET /api/v1/stats` | per-worker counters (with `busy_cycles`, `busy_frames`), `tsc_hz`, port and mempool stats ([`Dataplane::stats`]) |
//! | `GET /api/v1/stats/services` | per service and real server of the effective config: counters, active/inactive connections, rates |
//! | `POST /api/v1/stats/zero[?service=tcp/10.0.0.100/80]` | zero the counters (ipvsadm `-Z`) |
//! | `GET /api/v1/connections?offset=&limit=&service=&real=&client=&state=&templates=` | the connection table, paged and filtered (ipvsadm `-Lnc`) |
//! | `GET /api/v1/capture?service=&filter=&count=&seconds=&snaplen=` | pcapng of one service's frames as received and as sent ([`crate::capture`]); needs the token even though a GET |
//! | `GET`/`POST /api/v1/services` | list, create (ipvsadm `-A`) |
//! | `GET`/`PUT`/`DELETE /api/v1/services/{protocol}/{vip}/{port}` | one service (`-E`, `-D`) |
//! | `GET`/`POST .../{port}/reals` | real servers (`-a`) |
//! | `GET`/`PUT`/`DELETE .../{port}/reals/{address}/{rport}` | one real server (`-e`, `-d`) |
//! | `GET`/`POST .../{port}/laddrs` | FULLNAT local addresses (DPVS `-G`, `-P`); body `{"address": "a.b.c.d"}` |
//! | `DELETE .../{port}/laddrs/{address}` | remove a local address (DPVS `-Q`) |
//!
//! # Configured and effective state
//!
//! The config (`GET /api/v1/config`, `/services`, `/reals`) is the
//! operator's: what is written to the config file and what changes edit.
//! What the dataplane runs is the *effective* config, the operator's with the
//! health-check overlay applied ([`Overlay::effective`]): a real server whose
//! checks failed is left out, or kept at weight 0 with `inhibit_on_failure`;
//! a dynamic MISC_CHECK weight replaces the configured one; while a quorum is
//! lost, the sorry server replaces the service's reals. `GET
//! /api/v1/config/effective`, `GET /api/v1/stats/services`, `/metrics` and
//! rvsadm's listings show the effective state, as ipvsadm shows the kernel's
//! table under Keepalived.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, ETAG, IF_MATCH, WWW_AUTHENTICATE};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rvs_dataplane::snapshot::{Protocol, ServiceKey, Snapshot, SynFlood, Timeouts};
use rvs_dataplane::stats::{ConnFilter, ConnInfo, ServiceStats, TrafficCounters};
use rvs_dataplane::wire::MacAddr;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::build::build_snapshot;
use crate::capture::{self, CaptureError, CaptureLimits, CaptureRequest, CaptureResult, ServiceMatch};
use crate::config::{Config, ConfigError, RealConfig, ServiceConfig};
use crate::events::{EventKind, EventLog, Severity};
use crate::health::HealthReport;
use crate::rate::{RateEstimator, Rates, ESTIMATOR_INTERVAL};

/// The environment variable holding the API token; it wins over `api.token`.
pub const TOKEN_ENV: &str = "RVS_API_TOKEN";

/// Default page size of `GET /api/v1/connections`.
pub const DEFAULT_CONN_LIMIT: usize = 100;
/// Largest page size of `GET /api/v1/connections`.
pub const MAX_CONN_LIMIT: usize = 100_000;

/// The OpenAPI document served at `/api/v1/openapi.json`.
pub const OPENAPI_JSON: &str = include_str!("../openapi.json");

/// What publishing a snapshot achieved; also the body of every successful change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishReport {
    /// Generation of the published snapshot.
    pub generation: u64,
    /// Number of workers the snapshot was handed to.
    pub workers: usize,
    /// True when every worker adopted the snapshot before the dataplane stopped waiting.
    pub adopted: bool,
    /// How long adoption took (or how long the dataplane waited), in microseconds.
    pub adopt_us: u64,
}

/// The dataplane as the API sees it; rvsd implements it over the DPDK workers.
pub trait Dataplane: Send + Sync + 'static {
    /// MAC address of every port, in config order.
    fn port_macs(&self) -> Vec<MacAddr>;
    /// Hands the snapshot to every worker and blocks until all have adopted it (or a timeout): the report says which.
    fn publish(&self, snapshot: Arc<Snapshot>) -> PublishReport;
    /// Per-worker counters and anything else worth showing, as JSON.
    fn stats(&self) -> serde_json::Value;
    /// Traffic counters and active/inactive connection counts per service and
    /// real server, summed over the workers.
    fn service_stats(&self) -> Vec<ServiceStats>;
    /// The connections (and, if asked, persistence templates) matching
    /// `filter`, from every worker: at most `limit` of them starting at
    /// `offset`, and how many matched in all.
    fn connections(&self, filter: &ConnFilter, offset: usize, limit: usize) -> (Vec<ConnInfo>, usize);
    /// Zeroes the traffic counters (ipvsadm `-Z`).
    fn zero_stats(&self);
    /// Captures the frames of `service` that pass `filter` (a BPF
    /// expression, already checked), as received and as sent by every
    /// worker, until the first bound of `limits` (blocks that long). One
    /// capture at a time ([`CaptureError::Busy`]).
    fn capture(&self, _service: &ServiceMatch, _filter: Option<&str>, _limits: CaptureLimits) -> Result<CaptureResult, CaptureError> {
        Err(CaptureError::Unsupported)
    }
}

/// Runtime state layered over the operator's config whenever a snapshot is
/// built: health checks (failed real servers out, sorry servers in) and VRRP
/// (standby VIPs, connection-sync role). The operator's config, which the API
/// shows and persists, never contains it.
pub trait Overlay: Send + Sync + 'static {
    /// The config the dataplane should run instead of `config`.
    fn effective(&self, config: &Config) -> Config;
    /// Last touches to a snapshot built from the effective config (e.g.
    /// [`Snapshot::standby`], [`Snapshot::sync_send`]); `finish()` runs after.
    fn adjust(&self, snapshot: &mut Snapshot);
    /// Called after an operator change was committed (e.g. to restart health checks).
    fn committed(&self, _config: &Config) {}
    /// Health and VRRP state for `GET /api/v1/ha`.
    fn status(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
    /// Health-check state for `GET /api/v1/health` and `/metrics` (None: no
    /// health engine).
    fn health(&self) -> Option<HealthReport> {
        None
    }
    /// Hands over the API's event ring ([`ApiState::events`]), where the
    /// overlay records its transitions (VRRP, health checks).
    fn attach_events(&self, _events: Arc<EventLog>) {}
}

/// Builds the snapshot of `config` as the dataplane should run it now.
pub fn build_effective(
    config: &Config,
    overlay: Option<&Arc<dyn Overlay>>,
    macs: &[MacAddr],
    generation: u64,
) -> Result<Snapshot, ConfigError> {
    match overlay {
        None => build_snapshot(config, macs, generation),
        Some(o) => {
            let effective = o.effective(config);
            let mut snapshot = build_snapshot(&effective, macs, generation)?;
            o.adjust(&mut snapshot);
            Ok(snapshot.finish())
        }
    }
}

/// How an [`ApiState`] persists changes and authenticates requests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApiOptions {
    /// The config file every accepted change is written to; `None` = changes live in memory only.
    pub config_path: Option<PathBuf>,
    /// The bearer token changes must carry; `None` = no authentication.
    pub token: Option<String>,
}

impl ApiOptions {
    /// What rvsd uses: persist to `config_path`; the token from the
    /// environment variable [`TOKEN_ENV`] when set and not empty, else `api.token`.
    pub fn for_daemon(config: &Config, config_path: impl Into<PathBuf>) -> Self {
        let env = std::env::var(TOKEN_ENV).ok().filter(|t| !t.trim().is_empty());
        ApiOptions { config_path: Some(config_path.into()), token: env.or_else(|| config.api.token.clone()) }
    }
}

/// The config currently in force and the generation of its snapshot.
struct Current {
    config: Config,
    generation: u64,
}

/// Shared state of the API: the current config (one change at a time), the
/// dataplane, persistence and authentication settings, and the rate estimator.
pub struct ApiState {
    current: tokio::sync::Mutex<Current>,
    dataplane: Arc<dyn Dataplane>,
    config_path: Option<PathBuf>,
    token: Option<String>,
    rates: parking_lot::Mutex<RateEstimator>,
    /// Counters at the last per-service `-Z`, subtracted from what the dataplane reports.
    zero_base: parking_lot::Mutex<HashMap<ServiceKey, ServiceStats>>,
    /// Health and VRRP state applied when snapshots are built.
    overlay: parking_lot::RwLock<Option<Arc<dyn Overlay>>>,
    /// What happened lately (`GET /api/v1/events`, the status page).
    events: Arc<EventLog>,
    /// When the control plane started (Unix seconds).
    started: f64,
    /// Cluster membership: announced VIPs and draining (rvsd sets it).
    cluster: std::sync::OnceLock<Arc<crate::cluster::Cluster>>,
}

impl ApiState {
    /// State for a dataplane already running `config` as snapshot
    /// `initial_generation`; changes are not persisted, and the token is
    /// `config.api.token` (see [`ApiState::with_options`] for rvsd's setup).
    pub fn new(config: Config, initial_generation: u64, dataplane: Arc<dyn Dataplane>) -> Arc<Self> {
        let options = ApiOptions { config_path: None, token: config.api.token.clone() };
        Self::with_options(config, initial_generation, dataplane, options)
    }

    /// State with explicit persistence and authentication settings.
    pub fn with_options(config: Config, initial_generation: u64, dataplane: Arc<dyn Dataplane>, options: ApiOptions) -> Arc<Self> {
        let events = Arc::new(EventLog::default());
        events.record(
            EventKind::Daemon,
            Severity::Info,
            format!("control plane started: {} services, generation {initial_generation}", config.services.len()),
            serde_json::json!({ "generation": initial_generation }),
        );
        let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        Arc::new(ApiState {
            current: tokio::sync::Mutex::new(Current { config, generation: initial_generation }),
            dataplane,
            config_path: options.config_path,
            token: options.token.filter(|t| !t.is_empty()),
            rates: parking_lot::Mutex::new(RateEstimator::new()),
            zero_base: parking_lot::Mutex::new(HashMap::new()),
            overlay: parking_lot::RwLock::new(None),
            events,
            started,
            cluster: std::sync::OnceLock::new(),
        })
    }

    /// Installs the node's cluster state (`GET /api/v1/cluster`, draining);
    /// without it those endpoints answer 404.
    pub fn set_cluster(&self, cluster: Arc<crate::cluster::Cluster>) {
        let _ = self.cluster.set(cluster);
    }

    /// Installs the runtime overlay (health checks, VRRP) used from the next
    /// snapshot on, and hands it the event ring.
    pub fn set_overlay(&self, overlay: Arc<dyn Overlay>) {
        overlay.attach_events(Arc::clone(&self.events));
        *self.overlay.write() = Some(overlay);
    }

    /// The ring of recent events (config changes here; VRRP and health
    /// transitions from the overlay).
    pub fn events(&self) -> &Arc<EventLog> {
        &self.events
    }

    /// When the control plane started, Unix seconds.
    pub fn started(&self) -> f64 {
        self.started
    }

    /// Whether `GET /status` serves the status page now (`api.status_page`).
    pub async fn status_page_enabled(&self) -> bool {
        self.current.lock().await.config.api.status_page
    }

    /// Runs `f` on the rate estimator (briefly locked).
    pub fn with_rates<R>(&self, f: impl FnOnce(&RateEstimator) -> R) -> R {
        f(&self.rates.lock())
    }

    /// The overlay's status JSON (null without one).
    pub fn overlay_status(&self) -> serde_json::Value {
        self.overlay.read().as_ref().map_or(serde_json::Value::Null, |o| o.status())
    }

    /// Rebuilds the snapshot from the current config and the overlay's present
    /// state and publishes it (after a health or VRRP change). The operator's
    /// config and the file are untouched.
    pub async fn republish(&self, why: &str) -> Result<PublishReport, String> {
        let mut current = self.current.lock().await;
        let generation = current.generation + 1;
        let overlay = self.overlay.read().clone();
        let snapshot = build_effective(&current.config, overlay.as_ref(), &self.dataplane.port_macs(), generation)
            .map_err(|e| format!("cannot build the snapshot: {e}"))?;
        let dataplane = Arc::clone(&self.dataplane);
        let snapshot = Arc::new(snapshot);
        let mut report = tokio::task::spawn_blocking(move || dataplane.publish(snapshot))
            .await
            .map_err(|e| format!("publishing the snapshot failed: {e}"))?;
        report.generation = generation;
        current.generation = generation;
        tracing::info!(generation, adopt_us = report.adopt_us, "{why}");
        Ok(report)
    }

    /// Replaces the config with `new`, the config file just read again
    /// (SIGHUP), through the same checks, diff and atomic apply as
    /// `PUT /api/v1/config`; the file is not written back. Refused as a
    /// whole (nothing applied) when a restart-only field changed or `new`
    /// is invalid. Returns the changes applied (empty: nothing to do).
    pub async fn reload(&self, new: Config) -> Result<Vec<Change>, String> {
        let checked = {
            let current = self.current.lock().await;
            check_restart_only(&current.config, &new)
                .and_then(|()| new.validate().map_err(|e| ApiError::invalid(e, None)))
                .map(|()| diff_configs(&current.config, &new))
        };
        let changes = checked.map_err(|e| {
            self.events.record(EventKind::Config, Severity::Warning, format!("reload refused: {}", e.message), serde_json::Value::Null);
            e.message
        })?;
        if changes.is_empty() {
            return Ok(changes);
        }
        let count = changes.len();
        let applied = changes.clone();
        commit_with(self, Persist::No, None, move |config| {
            *config = new;
            Ok(Edit { what: format!("reloaded the config file ({count} changes)"), body_path: None, changes: Some(applied) })
        })
        .await
        .map_err(|e| {
            self.events.record(EventKind::Config, Severity::Warning, format!("reload refused: {}", e.message), serde_json::Value::Null);
            e.message
        })?;
        Ok(changes)
    }

    /// The dataplane's own statistics (`GET /api/v1/stats`).
    pub fn dataplane_stats(&self) -> serde_json::Value {
        self.dataplane.stats()
    }

    /// A copy of the config currently in force.
    pub async fn config(&self) -> Config {
        self.current.lock().await.config.clone()
    }

    /// What the dataplane runs for `config`: the overlay's
    /// [`effective`](Overlay::effective) config (health checks applied:
    /// inhibited reals at weight 0, failed reals left out, the sorry server in
    /// place of the reals while a quorum is lost), or `config` without overlay.
    pub fn effective(&self, config: &Config) -> Config {
        match self.overlay.read().as_ref() {
            Some(o) => o.effective(config),
            None => config.clone(),
        }
    }

    /// The config in force as the dataplane runs it ([`Self::effective`]) and its generation.
    pub async fn effective_config(&self) -> (Config, u64) {
        let (config, generation) = {
            let current = self.current.lock().await;
            (current.config.clone(), current.generation)
        };
        (self.effective(&config), generation)
    }

    /// The health-check report (empty without a health engine).
    pub fn health(&self) -> HealthReport {
        self.overlay.read().as_ref().and_then(|o| o.health()).unwrap_or(HealthReport { reals: Vec::new(), services: Vec::new() })
    }

    /// The generation of the snapshot currently in force.
    pub async fn generation(&self) -> u64 {
        self.current.lock().await.generation
    }

    /// The dataplane's per-service counters, less what a per-service zero
    /// (`POST /api/v1/stats/zero?service=...`) took away. Blocks while the
    /// dataplane asks its workers.
    pub fn service_stats(&self) -> Vec<ServiceStats> {
        let mut stats = self.dataplane.service_stats();
        let base = self.zero_base.lock();
        if !base.is_empty() {
            for s in &mut stats {
                if let Some(b) = base.get(&s.key) {
                    s.traffic = sub_traffic(&s.traffic, &b.traffic);
                    for r in &mut s.reals {
                        if let Some(br) = b.reals.iter().find(|x| x.addr == r.addr && x.port == r.port) {
                            r.traffic = sub_traffic(&r.traffic, &br.traffic);
                        }
                    }
                }
            }
        }
        stats
    }

    /// Takes one sample for the rate estimator (blocking; the estimator task
    /// calls it every [`ESTIMATOR_INTERVAL`]).
    pub fn sample_rates(&self) {
        let stats = self.service_stats();
        self.rates.lock().sample(&stats);
    }

    /// The rates of a service, as last estimated.
    pub fn service_rates(&self, key: &ServiceKey) -> Rates {
        self.rates.lock().service(key)
    }
}

fn sub_traffic(a: &TrafficCounters, b: &TrafficCounters) -> TrafficCounters {
    TrafficCounters {
        conns: a.conns.saturating_sub(b.conns),
        in_pkts: a.in_pkts.saturating_sub(b.in_pkts),
        out_pkts: a.out_pkts.saturating_sub(b.out_pkts),
        in_bytes: a.in_bytes.saturating_sub(b.in_bytes),
        out_bytes: a.out_bytes.saturating_sub(b.out_bytes),
    }
}

/// Starts the rate estimator: a tokio task that samples the dataplane's
/// counters every [`ESTIMATOR_INTERVAL`] (2 s, as IPVS) until the runtime
/// stops. Call it once, from inside the runtime that serves the API.
pub fn spawn_rate_estimator(state: Arc<ApiState>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(ESTIMATOR_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let s = Arc::clone(&state);
            if let Err(e) = tokio::task::spawn_blocking(move || s.sample_rates()).await {
                tracing::warn!(error = %e, "rate estimator sample failed");
            }
        }
    })
}

/// The `/api/v1` router, with `/metrics`.
pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/", get(crate::status::root))
        .route("/status", get(crate::status::page))
        .route("/metrics", get(metrics))
        .route("/api/v1/overview", get(crate::status::overview_handler))
        .route("/api/v1/events", get(events))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/status", get(status))
        .route("/api/v1/ha", get(ha_status))
        .route("/api/v1/health", get(health))
        .route("/api/v1/cluster", get(cluster_status))
        .route("/api/v1/cluster/drain", post(cluster_drain))
        .route("/api/v1/config", get(get_config).put(put_config))
        .route("/api/v1/config/effective", get(get_effective_config))
        .route("/api/v1/timeouts", get(get_timeouts).put(put_timeouts))
        .route("/api/v1/syn_flood", get(get_syn_flood).put(put_syn_flood))
        .route("/api/v1/stats", get(stats))
        .route("/api/v1/stats/services", get(stats_services))
        .route("/api/v1/stats/zero", post(zero_stats))
        .route("/api/v1/connections", get(connections))
        .route("/api/v1/capture", get(capture_frames))
        .route("/api/v1/services", get(list_services).post(create_service))
        .route("/api/v1/services/{protocol}/{vip}/{port}", get(get_service).put(replace_service).delete(delete_service))
        .route("/api/v1/services/{protocol}/{vip}/{port}/reals", get(list_reals).post(create_real))
        .route("/api/v1/services/{protocol}/{vip}/{port}/reals/{address}/{rport}", get(get_real).put(replace_real).delete(delete_real))
        .route("/api/v1/services/{protocol}/{vip}/{port}/laddrs", get(list_laddrs).post(create_laddr))
        .route("/api/v1/services/{protocol}/{vip}/{port}/laddrs/{address}", axum::routing::delete(delete_laddr))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(Arc::clone(&state), require_token))
        .with_state(state)
}

// ---------------------------------------------------------------------------
// Authentication

/// Refuses a change (any method but GET, HEAD, OPTIONS) without the right
/// bearer token, when a token is configured.
async fn require_token(State(state): State<Arc<ApiState>>, req: Request, next: Next) -> Response {
    if let Some(token) = &state.token {
        let reads = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
        // A capture hands out traffic (payloads included): token as for a change.
        let sensitive = req.uri().path() == CAPTURE_PATH;
        if !reads || sensitive {
            let given = req
                .headers()
                .get(AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
                .map(str::trim);
            let error = match given {
                None => Some("missing bearer token: changes and captures need the header `Authorization: Bearer <token>`"),
                Some(t) if !constant_time_eq(t.as_bytes(), token.as_bytes()) => Some("wrong bearer token"),
                Some(_) => None,
            };
            if let Some(message) = error {
                let mut resp = ApiError::new(StatusCode::UNAUTHORIZED, message).into_response();
                resp.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"rvs\""));
                return resp;
            }
        }
    }
    next.run(req).await
}

/// Compares two byte strings without stopping at the first difference.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

// ---------------------------------------------------------------------------
// Errors

/// A refused request: status plus the JSON body `{"error": ..., "field": ...}`.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
    field: Option<String>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into(), field: None }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// Renames the field (and the message's `field: ` prefix) when `matches` it.
    fn rename_field(mut self, matches: impl Fn(&str) -> bool, to: &str) -> Self {
        if let Some(f) = self.field.clone() {
            if matches(&f) {
                if let Some(rest) = self.message.strip_prefix(&format!("{f}: ")) {
                    self.message = format!("{to}: {rest}");
                }
                self.field = Some(to.to_string());
            }
        }
        self
    }

    /// A validation failure, with its field made relative to the request body
    /// (`body_path`, e.g. `services[3]`) when it lies inside it.
    fn invalid(err: ConfigError, body_path: Option<&str>) -> Self {
        match err {
            ConfigError::Invalid { field, message } => {
                let relative = body_path.and_then(|p| field.strip_prefix(p)).and_then(|rest| {
                    if rest.is_empty() {
                        Some(None)
                    } else {
                        rest.strip_prefix('.').map(|r| Some(r.to_string()))
                    }
                });
                let field = match relative {
                    Some(inner) => inner,
                    None => Some(field),
                };
                let message = match &field {
                    Some(f) => format!("{f}: {message}"),
                    None => message,
                };
                ApiError { status: StatusCode::BAD_REQUEST, message, field }
            }
            other => ApiError::bad_request(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message, "field": self.field });
        (self.status, Json(body)).into_response()
    }
}

/// A request body that is not JSON or does not fit the schema: 400 naming the field, if any.
fn body_error(err: ConfigError) -> ApiError {
    match err {
        ConfigError::Parse { line, column, field, message } => {
            let at = field.as_ref().map(|f| format!("{f}: ")).unwrap_or_default();
            ApiError {
                status: StatusCode::BAD_REQUEST,
                message: format!("invalid JSON body: {at}{message} at line {line} column {column}"),
                field,
            }
        }
        other => ApiError::invalid(other, None),
    }
}

/// True for `application/json` and `application/*+json` (parameters such as `charset` allowed).
fn is_json_content_type(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else { return false };
    let mime = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

fn no_service(key: &ServiceKey) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("no service {key}"))
}

fn no_real(key: &ServiceKey, address: IpAddr, port: u16) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("service {key} has no real server {address}:{port}"))
}

async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("no endpoint {method} {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, format!("method {method} is not allowed on {}", uri.path()))
}

// ---------------------------------------------------------------------------
// Extractors

/// A JSON body whose rejections are [`ApiError`]s (JSON, never axum's plain text).
struct JsonBody<T>(T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json_content_type(req.headers()) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "expected a JSON body with the header `Content-Type: application/json`",
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state).await.map_err(|r| ApiError::new(r.status(), r.body_text()))?;
        // The config file's parser: errors name their field (`reals[1].weight`) the same way.
        crate::config::parse_json(&bytes).map(JsonBody).map_err(body_error)
    }
}

fn path_rejection(rejection: PathRejection) -> ApiError {
    ApiError::new(rejection.status(), rejection.body_text())
}

fn parse_protocol(s: &str) -> Result<Protocol, ApiError> {
    match s.to_ascii_lowercase().as_str() {
        "tcp" => Ok(Protocol::Tcp),
        "udp" => Ok(Protocol::Udp),
        _ => Err(ApiError::bad_request(format!("invalid protocol `{s}` in the path: expected tcp or udp"))),
    }
}

/// An address in a path segment: `a.b.c.d`, or an IPv6 address with or
/// without brackets (`2001:db8::1`, `[2001:db8::1]`).
fn parse_addr(s: &str, what: &str) -> Result<IpAddr, ApiError> {
    let bare = s.strip_prefix('[').and_then(|v| v.strip_suffix(']'));
    let parsed = match bare {
        Some(v6) => v6.parse().map(IpAddr::V6),
        None => s.parse(),
    };
    parsed.map_err(|_| {
        ApiError::bad_request(format!("invalid {what} `{s}` in the path: expected an IPv4 address a.b.c.d or an IPv6 address"))
    })
}

fn parse_port(s: &str, what: &str) -> Result<u16, ApiError> {
    match s.parse::<u16>() {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(ApiError::bad_request(format!("invalid {what} `{s}` in the path: expected 1..=65535"))),
    }
}

/// `{protocol}/{vip}/{port}` of the path.
struct ServicePath(ServiceKey);

impl<S: Send + Sync> FromRequestParts<S> for ServicePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path((protocol, vip, port)) =
            Path::<(String, String, String)>::from_request_parts(parts, state).await.map_err(path_rejection)?;
        Ok(ServicePath(ServiceKey {
            protocol: parse_protocol(&protocol)?,
            vip: parse_addr(&vip, "virtual address")?,
            port: parse_port(&port, "virtual port")?,
        }))
    }
}

/// `{protocol}/{vip}/{port}/laddrs/{address}` of the path.
struct LaddrPath {
    service: ServiceKey,
    address: IpAddr,
}

impl<S: Send + Sync> FromRequestParts<S> for LaddrPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path((protocol, vip, port, address)) =
            Path::<(String, String, String, String)>::from_request_parts(parts, state).await.map_err(path_rejection)?;
        Ok(LaddrPath {
            service: ServiceKey {
                protocol: parse_protocol(&protocol)?,
                vip: parse_addr(&vip, "virtual address")?,
                port: parse_port(&port, "virtual port")?,
            },
            address: parse_addr(&address, "local address")?,
        })
    }
}

/// The `If-Match` header: the generation the client's change is based on.
struct IfMatch(Option<u64>);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get(IF_MATCH) else {
            return Ok(IfMatch(None));
        };
        let bad = || ApiError::bad_request("invalid If-Match header: expected the ETag of GET /api/v1/config, a generation such as \"7\"");
        let text = value.to_str().map_err(|_| bad())?.trim();
        if text == "*" {
            return Ok(IfMatch(None));
        }
        let text = text.strip_prefix("W/").unwrap_or(text);
        let text = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')).unwrap_or(text);
        text.parse().map(|g| IfMatch(Some(g))).map_err(|_| bad())
    }
}

/// The query string as name/value pairs; every name must be in `known`.
fn query_params(query: Option<&str>, known: &[&str]) -> Result<HashMap<String, String>, ApiError> {
    let Query(params) = Query::<HashMap<String, String>>::try_from_uri(
        &format!("/?{}", query.unwrap_or_default()).parse::<Uri>().map_err(|e| ApiError::bad_request(e.to_string()))?,
    )
    .map_err(|e| ApiError::bad_request(format!("invalid query string: {}", e.body_text())))?;
    if let Some(unknown) = params.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(
            ApiError::bad_request(format!("unknown query parameter `{unknown}`; known: {}", known.join(", "))).with_field(unknown.clone())
        );
    }
    Ok(params)
}

/// A query parameter naming a service: `tcp/10.0.0.100/80`, `tcp/2001:db8::100/80`
/// or `tcp/[2001:db8::100]/80`.
fn parse_service_param(value: &str, field: &str) -> Result<ServiceKey, ApiError> {
    let bad = || {
        ApiError::bad_request(format!(
            "{field}: invalid service `{value}`; expected protocol/vip/port, e.g. tcp/10.0.0.100/80 or tcp/2001:db8::100/80"
        ))
        .with_field(field)
    };
    let mut it = value.split('/');
    let (Some(p), Some(v), Some(port), None) = (it.next(), it.next(), it.next(), it.next()) else {
        return Err(bad());
    };
    Ok(ServiceKey {
        protocol: parse_protocol(p).map_err(|_| bad())?,
        vip: parse_addr(v, "virtual address").map_err(|_| bad())?,
        port: parse_port(port, "port").map_err(|_| bad())?,
    })
}

/// A boolean query parameter: `true`/`false`/`1`/`0`.
fn parse_bool_param(value: &str, field: &str) -> Result<bool, ApiError> {
    match value {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(ApiError::bad_request(format!("{field}: invalid value `{value}`; expected true or false")).with_field(field)),
    }
}

/// `{protocol}/{vip}/{port}/reals/{address}/{rport}` of the path.
struct RealPath {
    service: ServiceKey,
    address: IpAddr,
    port: u16,
}

impl<S: Send + Sync> FromRequestParts<S> for RealPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path((protocol, vip, port, address, rport)) =
            Path::<(String, String, String, String, String)>::from_request_parts(parts, state).await.map_err(path_rejection)?;
        Ok(RealPath {
            service: ServiceKey {
                protocol: parse_protocol(&protocol)?,
                vip: parse_addr(&vip, "virtual address")?,
                port: parse_port(&port, "virtual port")?,
            },
            address: parse_addr(&address, "real server address")?,
            port: parse_port(&rport, "real server port")?,
        })
    }
}

// ---------------------------------------------------------------------------
// Applying a change

/// The outcome of an edit: a description for the log, where the request
/// body sits in the new config (for relative field paths), if there is a
/// body, and for whole-config changes the diff to report.
struct Edit {
    what: String,
    body_path: Option<String>,
    changes: Option<Vec<Change>>,
}

impl Edit {
    fn new(what: impl Into<String>, body_path: Option<String>) -> Self {
        Edit { what: what.into(), body_path, changes: None }
    }
}

/// Applies `edit` to a copy of the current config, validates, builds the next
/// snapshot, writes the config file, publishes the snapshot, and only then
/// makes the copy current. `expect` is the generation from `If-Match`.
async fn commit(
    state: &ApiState,
    created: bool,
    expect: Option<u64>,
    edit: impl FnOnce(&mut Config) -> Result<Edit, ApiError>,
) -> Result<Response, ApiError> {
    let persist = if created { Persist::Created } else { Persist::Yes };
    commit_with(state, persist, expect, edit).await
}

/// Whether [`commit_with`] writes the config file, and the status it answers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Persist {
    /// Written; `200 OK`.
    Yes,
    /// Written; `201 Created`.
    Created,
    /// Not written: the change came from the file (SIGHUP); `200 OK`.
    No,
}

/// [`commit`], with the file write chosen by `persist`.
async fn commit_with(
    state: &ApiState,
    persist: Persist,
    expect: Option<u64>,
    edit: impl FnOnce(&mut Config) -> Result<Edit, ApiError>,
) -> Result<Response, ApiError> {
    let created = persist == Persist::Created;
    let source = if persist == Persist::No { "reload" } else { "api" };
    let mut current = state.current.lock().await;
    if let Some(expected) = expect {
        if expected != current.generation {
            return Err(ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                format!(
                    "the config changed: it is at generation {}, the request was based on {expected}; read it again",
                    current.generation
                ),
            ));
        }
    }
    let mut config = current.config.clone();
    let Edit { what, body_path, changes } = edit(&mut config)?;
    config.validate().map_err(|e| ApiError::invalid(e, body_path.as_deref()))?;

    let generation = current.generation + 1;
    let overlay = state.overlay.read().clone();
    let snapshot = build_effective(&config, overlay.as_ref(), &state.dataplane.port_macs(), generation).map_err(|e| {
        tracing::error!(error = %e, "cannot build snapshot");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot build the snapshot: {e}"))
    })?;
    let dataplane = Arc::clone(&state.dataplane);
    let snapshot = Arc::new(snapshot);
    let persist = match persist {
        Persist::No => None,
        Persist::Yes | Persist::Created => state.config_path.clone().map(|path| (path, format!("{}\n", config.to_json_pretty()))),
    };
    let outcome = tokio::task::spawn_blocking(move || {
        if let Some((path, text)) = persist {
            crate::persist::write_atomic(&path, text.as_bytes())
                .map_err(|e| format!("cannot write the config file {}: {e}", path.display()))?;
        }
        Ok::<_, String>(dataplane.publish(snapshot))
    })
    .await
    .map_err(|e| format!("publishing the snapshot failed: {e}"))
    .and_then(|r| r);
    let mut report = outcome.map_err(|message| {
        tracing::error!(error = %message, "change refused");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("{message}; nothing was changed"))
    })?;
    report.generation = generation;

    if let Some(o) = &overlay {
        o.committed(&config);
    }
    current.config = config;
    current.generation = generation;
    drop(current);

    state.events.record(
        EventKind::Config,
        if report.adopted { Severity::Info } else { Severity::Warning },
        what.clone(),
        serde_json::json!({ "generation": generation, "source": source, "adopted": report.adopted }),
    );
    if report.adopted {
        tracing::info!(generation, workers = report.workers, adopt_us = report.adopt_us, "{what}");
    } else {
        tracing::warn!(
            generation,
            workers = report.workers,
            waited_us = report.adopt_us,
            "{what}; not every worker confirmed the new snapshot in time"
        );
    }
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    match changes {
        None => Ok((status, Json(report)).into_response()),
        Some(changes) => Ok((status, Json(ChangeReport { report, changes })).into_response()),
    }
}

/// The answer to `PUT /api/v1/config`: the publish report and the diff.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeReport {
    /// What publishing achieved.
    #[serde(flatten)]
    pub report: PublishReport,
    /// What changed.
    pub changes: Vec<Change>,
}

fn find_service(config: &Config, key: &ServiceKey) -> Result<usize, ApiError> {
    config.service_index(key).ok_or_else(|| no_service(key))
}

fn find_real(service: &ServiceConfig, address: IpAddr, port: u16) -> Result<usize, ApiError> {
    service.real_index(address, port).ok_or_else(|| no_real(&service.key(), address, port))
}

// ---------------------------------------------------------------------------
// Handlers

type AppState = State<Arc<ApiState>>;

/// `GET /api/v1/ha`: health-check results, VRRP instance states, sync role
/// and the sync daemon's counters.
async fn ha_status(State(state): AppState) -> Json<serde_json::Value> {
    Json(state.overlay_status())
}

fn no_cluster() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "this rvsd has no cluster state (only the daemon has)")
}

/// `GET /api/v1/cluster`: the VIPs announced to the BGP speaker, draining.
async fn cluster_status(State(state): AppState) -> Result<Json<serde_json::Value>, ApiError> {
    let cluster = state.cluster.get().ok_or_else(no_cluster)?;
    Ok(Json(cluster.status()))
}

/// `POST /api/v1/cluster/drain[?grace=SECONDS]`: withdraws every route (the
/// answer comes once BIRD took the withdrawal), keeps serving existing flows
/// for the grace period (default `bgp.drain_grace`), then rvsd stops.
async fn cluster_drain(State(state): AppState, uri: Uri) -> Result<Json<serde_json::Value>, ApiError> {
    let cluster = Arc::clone(state.cluster.get().ok_or_else(no_cluster)?);
    let params = query_params(uri.query(), &["grace"])?;
    let grace = match params.get("grace") {
        None => cluster.default_grace(),
        Some(v) => match v.parse::<u32>() {
            Ok(g) if g <= crate::cluster::MAX_DRAIN_GRACE_S => std::time::Duration::from_secs(u64::from(g)),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "grace: {v:?} is not a number of seconds in 0..={}",
                    crate::cluster::MAX_DRAIN_GRACE_S
                ))
                .with_field("grace"))
            }
        },
    };
    let already = cluster.draining();
    let result = cluster.drain(grace, std::time::Duration::from_secs(10)).await;
    if !already {
        state.events.record(
            EventKind::Daemon,
            Severity::Warning,
            format!("draining: routes withdrawn, stopping in {} s", grace.as_secs()),
            serde_json::json!({ "grace_s": grace.as_secs() }),
        );
    }
    match result {
        Ok(left) => {
            let mut v = cluster.status();
            v["stops_in_s"] = serde_json::json!(left);
            Ok(Json(v))
        }
        Err(e) => Err(ApiError::new(StatusCode::BAD_GATEWAY, format!("draining, but the routes could not be withdrawn: {e}"))),
    }
}

/// `GET /api/v1/health`: every checked real server and managed service.
async fn health(State(state): AppState) -> Json<HealthReport> {
    Json(state.health())
}

async fn status(State(state): AppState) -> Json<serde_json::Value> {
    let current = state.current.lock().await;
    Json(serde_json::json!({
        "generation": current.generation,
        "workers": current.config.workers.len(),
        "services": current.config.services.len(),
    }))
}

async fn get_config(State(state): AppState) -> Response {
    let current = state.current.lock().await;
    with_etag(Json(without_secrets(current.config.clone())), current.generation)
}

/// `config` without its secrets (`api.token`, `sync.key`): what is shown to
/// readers and written to state dumps.
pub fn without_secrets(mut config: Config) -> Config {
    config.api.token = None;
    if let Some(sync) = &mut config.sync {
        sync.key = None;
    }
    config
}

/// `GET /api/v1/config/effective`: the config as the dataplane runs it
/// (read-only; the ETag is the generation, as for `GET /api/v1/config`).
async fn get_effective_config(State(state): AppState) -> Response {
    let (config, generation) = state.effective_config().await;
    with_etag(Json(without_secrets(config)), generation)
}

/// Adds `ETag: "<generation>"` to a response.
fn with_etag(body: impl IntoResponse, generation: u64) -> Response {
    let mut resp = body.into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{generation}\"")) {
        resp.headers_mut().insert(ETAG, v);
    }
    resp
}

async fn stats(State(state): AppState) -> Json<serde_json::Value> {
    Json(state.dataplane.stats())
}

async fn list_services(State(state): AppState) -> Json<Vec<ServiceConfig>> {
    Json(state.current.lock().await.config.services.clone())
}

async fn create_service(
    State(state): AppState,
    IfMatch(expect): IfMatch,
    JsonBody(service): JsonBody<ServiceConfig>,
) -> Result<Response, ApiError> {
    commit(&state, true, expect, |config| {
        let key = service.key();
        if config.service_index(&key).is_some() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("service {key} already exists; PUT /api/v1/services/{}/{}/{} replaces it", key.protocol, key.vip, key.port),
            ));
        }
        config.services.push(service);
        Ok(Edit::new(format!("added service {key}"), Some(format!("services[{}]", config.services.len() - 1))))
    })
    .await
}

async fn get_service(State(state): AppState, ServicePath(key): ServicePath) -> Result<Json<ServiceConfig>, ApiError> {
    let current = state.current.lock().await;
    let i = find_service(&current.config, &key)?;
    Ok(Json(current.config.services[i].clone()))
}

/// Checks that a body's identifying value matches the path.
fn must_match<T: PartialEq + std::fmt::Display>(field: &str, body: T, path: T) -> Result<(), ApiError> {
    if body == path {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!("{field}: {body} in the body differs from {path} in the path")).with_field(field))
    }
}

async fn replace_service(
    State(state): AppState,
    ServicePath(key): ServicePath,
    IfMatch(expect): IfMatch,
    JsonBody(service): JsonBody<ServiceConfig>,
) -> Result<Response, ApiError> {
    commit(&state, false, expect, |config| {
        let i = find_service(config, &key)?;
        must_match("protocol", service.protocol, key.protocol)?;
        must_match("vip", service.vip, key.vip)?;
        must_match("port", service.port, key.port)?;
        config.services[i] = service;
        Ok(Edit::new(format!("replaced service {key}"), Some(format!("services[{i}]"))))
    })
    .await
}

async fn delete_service(State(state): AppState, ServicePath(key): ServicePath, IfMatch(expect): IfMatch) -> Result<Response, ApiError> {
    commit(&state, false, expect, |config| {
        let i = find_service(config, &key)?;
        config.services.remove(i);
        Ok(Edit::new(format!("deleted service {key}"), None))
    })
    .await
}

async fn list_reals(State(state): AppState, ServicePath(key): ServicePath) -> Result<Json<Vec<RealConfig>>, ApiError> {
    let current = state.current.lock().await;
    let i = find_service(&current.config, &key)?;
    Ok(Json(current.config.services[i].reals.clone()))
}

async fn create_real(
    State(state): AppState,
    ServicePath(key): ServicePath,
    IfMatch(expect): IfMatch,
    JsonBody(real): JsonBody<RealConfig>,
) -> Result<Response, ApiError> {
    commit(&state, true, expect, |config| {
        let i = find_service(config, &key)?;
        let service = &mut config.services[i];
        let (address, port) = (real.address, real.port_for(service));
        if service.real_index(address, port).is_some() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "service {key} already has real server {address}:{port}; PUT /api/v1/services/{}/{}/{}/reals/{address}/{port} replaces it",
                    key.protocol, key.vip, key.port
                ),
            ));
        }
        service.reals.push(real);
        let j = service.reals.len() - 1;
        Ok(Edit::new(
            format!("added real server {address}:{port} to service {key}"),
            Some(format!("services[{i}].reals[{j}]")),
        ))
    })
    .await
}

async fn get_real(State(state): AppState, path: RealPath) -> Result<Json<RealConfig>, ApiError> {
    let current = state.current.lock().await;
    let i = find_service(&current.config, &path.service)?;
    let service = &current.config.services[i];
    let j = find_real(service, path.address, path.port)?;
    Ok(Json(service.reals[j].clone()))
}

async fn replace_real(
    State(state): AppState,
    path: RealPath,
    IfMatch(expect): IfMatch,
    JsonBody(real): JsonBody<RealConfig>,
) -> Result<Response, ApiError> {
    commit(&state, false, expect, |config| {
        let i = find_service(config, &path.service)?;
        let service = &mut config.services[i];
        let j = find_real(service, path.address, path.port)?;
        must_match("address", real.address, path.address)?;
        must_match("port", real.port_for(service), path.port)?;
        service.reals[j] = real;
        Ok(Edit::new(
            format!("replaced real server {}:{} of service {}", path.address, path.port, path.service),
            Some(format!("services[{i}].reals[{j}]")),
        ))
    })
    .await
}

async fn delete_real(State(state): AppState, path: RealPath, IfMatch(expect): IfMatch) -> Result<Response, ApiError> {
    commit(&state, false, expect, |config| {
        let i = find_service(config, &path.service)?;
        let service = &mut config.services[i];
        let j = find_real(service, path.address, path.port)?;
        service.reals.remove(j);
        Ok(Edit::new(format!("deleted real server {}:{} of service {}", path.address, path.port, path.service), None))
    })
    .await
}

// ---------------------------------------------------------------------------
// Whole config, timeouts, syn_flood

/// Fields that only take effect when rvsd starts: `PUT /api/v1/config` must
/// leave them as they are. Every other field is applied by the snapshot
/// (the test `every_top_level_field_is_applied_or_refused` keeps both lists whole).
fn check_restart_only(current: &Config, new: &Config) -> Result<(), ApiError> {
    fn refuse(field: &str, running: impl std::fmt::Debug) -> ApiError {
        ApiError::bad_request(format!(
            "{field}: changing it needs a restart of rvsd (edit the config file and restart); the running value is {running:?}"
        ))
        .with_field(field)
    }
    if new.eal != current.eal {
        return Err(refuse("eal", &current.eal));
    }
    if new.main_lcore != current.main_lcore {
        return Err(refuse("main_lcore", current.main_lcore));
    }
    if new.workers != current.workers {
        return Err(refuse("workers", &current.workers));
    }
    if new.mbufs != current.mbufs {
        return Err(refuse("mbufs", current.mbufs));
    }
    if new.idle_sleep_us != current.idle_sleep_us {
        return Err(refuse("idle_sleep_us", current.idle_sleep_us));
    }
    if new.conn_table_size != current.conn_table_size {
        return Err(refuse("conn_table_size", current.conn_table_size));
    }
    if new.conn_table_size_ipv6 != current.conn_table_size_ipv6 {
        return Err(refuse("conn_table_size_ipv6", current.conn_table_size_ipv6));
    }
    if new.bgp != current.bgp {
        return Err(refuse("bgp", &current.bgp));
    }
    if new.api.listen != current.api.listen {
        return Err(refuse("api.listen", current.api.listen));
    }
    if new.api.token != current.api.token {
        return Err(ApiError::bad_request(
            "api.token: changing the token needs editing the config file and a restart of rvsd; leave it out to keep it",
        )
        .with_field("api.token"));
    }
    if new.sync.as_ref().and_then(|s| s.key.as_ref()) != current.sync.as_ref().and_then(|s| s.key.as_ref()) {
        return Err(ApiError::bad_request(
            "sync.key: changing the sync key needs editing the config file and a restart of rvsd; leave it out to keep it",
        )
        .with_field("sync.key"));
    }
    // The VRRP engine and the sync daemon are set up when rvsd starts.
    for (field, changed) in [("vrrp", new.vrrp != current.vrrp), ("sync", new.sync != current.sync)] {
        if changed {
            return Err(ApiError::bad_request(format!(
                "{field}: changing it needs a restart of rvsd (edit the config file and restart); send the running \
                 value from GET /api/v1/config"
            ))
            .with_field(field));
        }
    }
    if new.ports.len() != current.ports.len() {
        return Err(refuse("ports", current.ports.iter().map(|p| &p.name).collect::<Vec<_>>()));
    }
    for (i, (n, c)) in new.ports.iter().zip(&current.ports).enumerate() {
        if n.name != c.name {
            return Err(refuse(&format!("ports[{i}].name"), &c.name));
        }
        if n.device != c.device {
            return Err(refuse(&format!("ports[{i}].device"), &c.device));
        }
        // The TAP (exception path) is a DPDK vdev created when EAL starts.
        if n.tap != c.tap {
            return Err(refuse(&format!("ports[{i}].tap"), &c.tap));
        }
    }
    Ok(())
}

/// One difference between two configs, as `PUT /api/v1/config` reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// `add`, `remove` or `change`.
    pub op: ChangeOp,
    /// `service`, `real`, `local_address`, or the name of the top-level field
    /// that changed (`timeouts`, `routes`, `ports`, `local_port_range`, `expire_nodest_conn`, ...).
    pub kind: String,
    /// The service concerned, `tcp/10.0.0.100/80`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The real server or local address concerned, `10.1.0.11:80` / `10.0.0.5`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<String>,
    /// The value before (absent for `add`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<serde_json::Value>,
    /// The value after (absent for `remove`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<serde_json::Value>,
}

/// What a [`Change`] does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeOp {
    /// Something new.
    Add,
    /// Something gone.
    Remove,
    /// Something different.
    Change,
}

fn to_value<T: Serialize>(v: &T) -> Option<serde_json::Value> {
    serde_json::to_value(v).ok()
}

fn service_id(key: &ServiceKey) -> String {
    format!("{}/{}/{}", key.protocol, key.vip, key.port)
}

/// The differences between two configs. Every top-level field is compared
/// through its JSON form, so a field added to [`Config`] later is compared
/// too: `services` one service, real server and local address at a time,
/// every other field as a whole (`kind` is the field's name). Secrets are
/// left out of `before` / `after`.
pub fn diff_configs(old: &Config, new: &Config) -> Vec<Change> {
    let fields = |c: &Config| match serde_json::to_value(without_secrets(c.clone())) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    let (before, after) = (fields(old), fields(new));
    let mut changes = Vec::new();
    let names = before.keys().chain(after.keys().filter(|k| !before.contains_key(*k)));
    for name in names.filter(|name| *name != "services") {
        let (b, a) = (before.get(name), after.get(name));
        if b != a {
            changes.push(Change {
                op: ChangeOp::Change,
                kind: name.clone(),
                service: None,
                item: None,
                before: b.cloned(),
                after: a.cloned(),
            });
        }
    }
    diff_services(old, new, &mut changes);
    changes
}

/// Services, real servers and local addresses added, removed or changed.
fn diff_services(old: &Config, new: &Config, changes: &mut Vec<Change>) {
    let mut push = |op, kind: &str, service: Option<String>, item: Option<String>, before, after| {
        changes.push(Change { op, kind: kind.to_string(), service, item, before, after });
    };
    /// The service without its reals and local addresses, which are diffed one by one.
    fn bare(s: &ServiceConfig) -> ServiceConfig {
        ServiceConfig { reals: Vec::new(), local_addresses: Vec::new(), ..s.clone() }
    }
    for s in &old.services {
        if new.service_index(&s.key()).is_none() {
            push(ChangeOp::Remove, "service", Some(service_id(&s.key())), None, to_value(s), None);
        }
    }
    for n in &new.services {
        let id = service_id(&n.key());
        let Some(o) = old.service_index(&n.key()).map(|i| &old.services[i]) else {
            push(ChangeOp::Add, "service", Some(id), None, None, to_value(n));
            continue;
        };
        if bare(o) != bare(n) {
            push(ChangeOp::Change, "service", Some(id.clone()), None, to_value(&bare(o)), to_value(&bare(n)));
        }
        for r in &o.reals {
            let port = r.port_for(o);
            if n.real_index(r.address, port).is_none() {
                let item = format!("{}:{port}", r.address);
                push(ChangeOp::Remove, "real", Some(id.clone()), Some(item), to_value(r), None);
            }
        }
        for r in &n.reals {
            let port = r.port_for(n);
            let item = format!("{}:{port}", r.address);
            match o.real_index(r.address, port).map(|j| &o.reals[j]) {
                None => push(ChangeOp::Add, "real", Some(id.clone()), Some(item), None, to_value(r)),
                Some(before) => {
                    // Every field, after defaults: `"port": 80` equals an absent port on a port-80 service.
                    let resolved = |r: &RealConfig, s: &ServiceConfig| RealConfig {
                        port: Some(r.port_for(s)),
                        forward: Some(r.forward_for(s)),
                        ..r.clone()
                    };
                    if resolved(before, o) != resolved(r, n) {
                        push(ChangeOp::Change, "real", Some(id.clone()), Some(item), to_value(before), to_value(r));
                    }
                }
            }
        }
        for a in &o.local_addresses {
            if !n.local_addresses.contains(a) {
                push(ChangeOp::Remove, "local_address", Some(id.clone()), Some(a.to_string()), to_value(a), None);
            }
        }
        for a in &n.local_addresses {
            if !o.local_addresses.contains(a) {
                push(ChangeOp::Add, "local_address", Some(id.clone()), Some(a.to_string()), None, to_value(a));
            }
        }
    }
}

async fn put_config(
    State(state): AppState,
    uri: Uri,
    IfMatch(expect): IfMatch,
    JsonBody(mut new): JsonBody<Config>,
) -> Result<Response, ApiError> {
    let params = query_params(uri.query(), &["dry_run"])?;
    let dry_run = params.get("dry_run").map(|v| parse_bool_param(v, "dry_run")).transpose()?.unwrap_or(false);
    let current = state.current.lock().await;
    if new.api.token.is_none() {
        // GET leaves the token out; sending that document back keeps it.
        new.api.token = current.config.api.token.clone();
    }
    if let (Some(sync), Some(cur)) = (&mut new.sync, &current.config.sync) {
        // Likewise the sync key.
        if sync.key.is_none() {
            sync.key = cur.key.clone();
        }
    }
    if let Some(expected) = expect {
        if expected != current.generation {
            return Err(ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                format!(
                    "the config changed: it is at generation {}, the request was based on {expected}; read it again",
                    current.generation
                ),
            ));
        }
    }
    check_restart_only(&current.config, &new)?;
    new.validate().map_err(|e| ApiError::invalid(e, None))?;
    let changes = diff_configs(&current.config, &new);
    if dry_run || changes.is_empty() {
        let generation = current.generation;
        let workers = current.config.workers.len();
        drop(current);
        let body = if dry_run {
            serde_json::json!({ "dry_run": true, "generation": generation, "changes": changes })
        } else {
            // Nothing to change: nothing is published or written.
            serde_json::json!({ "generation": generation, "workers": workers, "adopted": true, "adopt_us": 0, "changes": changes })
        };
        return Ok((StatusCode::OK, Json(body)).into_response());
    }
    drop(current);
    let count = changes.len();
    commit(&state, false, expect, move |config| {
        *config = new;
        Ok(Edit { what: format!("replaced the config ({count} changes)"), body_path: None, changes: Some(changes) })
    })
    .await
}

async fn get_timeouts(State(state): AppState) -> Response {
    let current = state.current.lock().await;
    with_etag(Json(current.config.timeouts), current.generation)
}

async fn put_timeouts(
    State(state): AppState,
    IfMatch(expect): IfMatch,
    JsonBody(timeouts): JsonBody<Timeouts>,
) -> Result<Response, ApiError> {
    commit(&state, false, expect, move |config| {
        config.timeouts = timeouts;
        Ok(Edit::new(
            format!("timeouts set (tcp {} tcpfin {} udp {})", timeouts.tcp, timeouts.tcp_fin, timeouts.udp),
            Some("timeouts".to_string()),
        ))
    })
    .await
}

async fn get_syn_flood(State(state): AppState) -> Response {
    let current = state.current.lock().await;
    with_etag(Json(current.config.syn_flood), current.generation)
}

/// Replaces the `syn_flood` settings: every field left out takes its
/// default, as in the config file; a value out of range is a 400 naming it.
async fn put_syn_flood(
    State(state): AppState,
    IfMatch(expect): IfMatch,
    JsonBody(syn_flood): JsonBody<SynFlood>,
) -> Result<Response, ApiError> {
    commit(&state, false, expect, move |config| {
        config.syn_flood = syn_flood;
        let s = syn_flood;
        Ok(Edit::new(
            format!(
                "syn_flood set (pressure at table {}% / syn_recv {}%, drop_entry {}, syn_recv timeout {} s, {} new conns/s per /{} (IPv6 /{}), window scale {})",
                s.pressure_table_percent,
                s.pressure_syn_recv_percent,
                s.drop_entry,
                s.syn_recv_timeout_under_pressure,
                s.new_conns_per_prefix_per_sec,
                s.prefix_len,
                s.prefix_len_ipv6,
                s.proxy_window_scale
            ),
            Some("syn_flood".to_string()),
        ))
    })
    .await
}

// ---------------------------------------------------------------------------
// Local addresses

/// Body of `POST .../laddrs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaddrBody {
    /// The local address.
    pub address: IpAddr,
}

async fn list_laddrs(State(state): AppState, ServicePath(key): ServicePath) -> Result<Json<Vec<IpAddr>>, ApiError> {
    let current = state.current.lock().await;
    let i = find_service(&current.config, &key)?;
    Ok(Json(current.config.services[i].local_addresses.clone()))
}

async fn create_laddr(
    State(state): AppState,
    ServicePath(key): ServicePath,
    IfMatch(expect): IfMatch,
    JsonBody(body): JsonBody<LaddrBody>,
) -> Result<Response, ApiError> {
    commit(&state, true, expect, |config| {
        let i = find_service(config, &key)?;
        let service = &mut config.services[i];
        if service.local_addresses.contains(&body.address) {
            return Err(ApiError::new(StatusCode::CONFLICT, format!("service {key} already has local address {}", body.address)));
        }
        service.local_addresses.push(body.address);
        Ok(Edit::new(format!("added local address {} to service {key}", body.address), None))
    })
    .await
    // A validation error about the new address names the body's `address`.
    .map_err(|e| e.rename_field(|f| f.starts_with("services[") && f.contains(".local_addresses["), "address"))
}

async fn delete_laddr(State(state): AppState, path: LaddrPath, IfMatch(expect): IfMatch) -> Result<Response, ApiError> {
    commit(&state, false, expect, |config| {
        let i = find_service(config, &path.service)?;
        let service = &mut config.services[i];
        let Some(j) = service.local_addresses.iter().position(|a| *a == path.address) else {
            return Err(ApiError::new(StatusCode::NOT_FOUND, format!("service {} has no local address {}", path.service, path.address)));
        };
        service.local_addresses.remove(j);
        Ok(Edit::new(format!("deleted local address {} of service {}", path.address, path.service), None))
    })
    .await
}

// ---------------------------------------------------------------------------
// Stats, rates, connections, zeroing, metrics

/// One real server in `GET /api/v1/stats/services`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RealStatsView {
    /// Real server address.
    pub address: IpAddr,
    /// Real server port.
    pub port: u16,
    /// Counters since the last zeroing.
    #[serde(flatten)]
    pub traffic: TrafficCounters,
    /// Connections in ESTABLISHED.
    pub active: u32,
    /// Other connections.
    pub inactive: u32,
    /// Smoothed rates ([`crate::rate`]).
    pub rates: Rates,
}

/// One service in `GET /api/v1/stats/services`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStatsView {
    /// `tcp` or `udp`.
    pub protocol: Protocol,
    /// Virtual address.
    pub vip: IpAddr,
    /// Virtual port.
    pub port: u16,
    /// Counters since the last zeroing, summed over the real servers.
    #[serde(flatten)]
    pub traffic: TrafficCounters,
    /// Connections in ESTABLISHED, over all real servers.
    pub active: u32,
    /// Other connections, over all real servers.
    pub inactive: u32,
    /// Smoothed rates ([`crate::rate`]).
    pub rates: Rates,
    /// Per real server, in config order.
    pub reals: Vec<RealStatsView>,
}

/// The services of `config` with their counters (zero when the dataplane
/// reports none) and rates, in config order.
pub fn stats_view(config: &Config, stats: &[ServiceStats], rates: &RateEstimator) -> Vec<ServiceStatsView> {
    config
        .services
        .iter()
        .map(|svc| {
            let key = svc.key();
            let s = stats.iter().find(|s| s.key == key);
            let reals: Vec<RealStatsView> = svc
                .reals
                .iter()
                .map(|r| {
                    let port = r.port_for(svc);
                    let rs = s.and_then(|s| s.reals.iter().find(|x| x.addr == r.address && x.port == port));
                    RealStatsView {
                        address: r.address,
                        port,
                        traffic: rs.map(|x| x.traffic).unwrap_or_default(),
                        active: rs.map_or(0, |x| x.active),
                        inactive: rs.map_or(0, |x| x.inactive),
                        rates: rates.real(&key, r.address, port),
                    }
                })
                .collect();
            ServiceStatsView {
                protocol: key.protocol,
                vip: key.vip,
                port: key.port,
                traffic: s.map(|x| x.traffic).unwrap_or_default(),
                active: reals.iter().map(|r| r.active).sum(),
                inactive: reals.iter().map(|r| r.inactive).sum(),
                rates: rates.service(&key),
                reals,
            }
        })
        .collect()
}

/// Runs a blocking dataplane query off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("the dataplane query failed: {e}")))
}

async fn stats_services(State(state): AppState) -> Result<Json<Vec<ServiceStatsView>>, ApiError> {
    let (config, _) = state.effective_config().await;
    let s = Arc::clone(&state);
    let stats = blocking(move || s.service_stats()).await?;
    let rates = state.rates.lock();
    Ok(Json(stats_view(&config, &stats, &rates)))
}

async fn zero_stats(State(state): AppState, uri: Uri) -> Result<Json<serde_json::Value>, ApiError> {
    let params = query_params(uri.query(), &["service"])?;
    match params.get("service") {
        None => {
            let s = Arc::clone(&state);
            blocking(move || {
                s.dataplane.zero_stats();
                s.zero_base.lock().clear();
                s.rates.lock().zero(None);
            })
            .await?;
            tracing::info!("counters zeroed");
            Ok(Json(serde_json::json!({ "zeroed": "all" })))
        }
        Some(value) => {
            let key = parse_service_param(value, "service")?;
            {
                let current = state.current.lock().await;
                find_service(&current.config, &key)?;
            }
            let s = Arc::clone(&state);
            blocking(move || {
                let raw = s.dataplane.service_stats();
                let base = raw.into_iter().find(|x| x.key == key);
                let mut zero_base = s.zero_base.lock();
                match base {
                    Some(b) => {
                        zero_base.insert(key, b);
                    }
                    None => {
                        zero_base.remove(&key);
                    }
                }
                s.rates.lock().zero(Some(&key));
            })
            .await?;
            tracing::info!(service = %key, "counters zeroed");
            Ok(Json(serde_json::json!({ "zeroed": service_id(&key) })))
        }
    }
}

/// One page of `GET /api/v1/connections`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionsPage {
    /// How many connections matched in all.
    pub total: usize,
    /// Index of the first connection of this page.
    pub offset: usize,
    /// The page size asked for.
    pub limit: usize,
    /// The connections.
    pub connections: Vec<ConnInfo>,
}

async fn connections(State(state): AppState, uri: Uri) -> Result<Json<ConnectionsPage>, ApiError> {
    let params = query_params(uri.query(), &["offset", "limit", "service", "real", "client", "state", "templates"])?;
    let number = |name: &str, default: usize, max: usize| -> Result<usize, ApiError> {
        match params.get(name) {
            None => Ok(default),
            Some(v) => match v.parse::<usize>() {
                Ok(n) if n <= max && (name != "limit" || n >= 1) => Ok(n),
                _ => Err(ApiError::bad_request(format!(
                    "{name}: invalid value `{v}`; expected {} ..= {max}",
                    if name == "limit" { 1 } else { 0 }
                ))
                .with_field(name)),
            },
        }
    };
    let offset = number("offset", 0, usize::MAX)?;
    let limit = number("limit", DEFAULT_CONN_LIMIT, MAX_CONN_LIMIT)?;
    let addr = |name: &str| -> Result<Option<IpAddr>, ApiError> {
        params
            .get(name)
            .map(|v| {
                v.parse().map_err(|_| {
                    ApiError::bad_request(format!("{name}: invalid address `{v}`; expected a.b.c.d or an IPv6 address")).with_field(name)
                })
            })
            .transpose()
    };
    let filter = ConnFilter {
        service: params.get("service").map(|v| parse_service_param(v, "service")).transpose()?,
        real: addr("real")?,
        client: addr("client")?,
        state: params.get("state").cloned(),
        templates: params.get("templates").map(|v| parse_bool_param(v, "templates")).transpose()?.unwrap_or(false),
    };
    let s = Arc::clone(&state);
    let (connections, total) = blocking(move || s.dataplane.connections(&filter, offset, limit)).await?;
    Ok(Json(ConnectionsPage { total, offset, limit, connections }))
}

/// The capture endpoint (needs the token when one is configured, though a GET).
const CAPTURE_PATH: &str = "/api/v1/capture";

/// Maps a capture error to its HTTP status (400 naming the parameter, 404, 409, 501, 500).
fn capture_error(e: CaptureError) -> ApiError {
    let status = match &e {
        CaptureError::BadParameter(..) => StatusCode::BAD_REQUEST,
        CaptureError::NoSuchService(_) => StatusCode::NOT_FOUND,
        CaptureError::Busy => StatusCode::CONFLICT,
        CaptureError::Unsupported => StatusCode::NOT_IMPLEMENTED,
        CaptureError::Pcapng(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let field = match &e {
        CaptureError::BadParameter(name, _) => Some(*name),
        CaptureError::NoSuchService(_) => Some("service"),
        _ => None,
    };
    let error = ApiError::new(status, e.to_string());
    match field {
        Some(f) => error.with_field(f),
        None => error,
    }
}

/// `GET /api/v1/capture?service=&filter=&count=&seconds=&snaplen=`: the
/// frames of one service as received and as sent, in pcapng
/// ([`crate::capture`]); returns when `count` frames, `seconds` or the byte
/// bound is reached, whichever first.
async fn capture_frames(State(state): AppState, uri: Uri) -> Result<Response, ApiError> {
    let params = query_params(uri.query(), capture::PARAMETERS)?;
    let request =
        CaptureRequest::parse(|k| params.get(k).map(String::as_str), |v| parse_service_param(v, "service").ok()).map_err(capture_error)?;
    let config = state.config().await;
    let service = capture::find_service(&config, &request.service).map_err(capture_error)?;
    let matcher = ServiceMatch::new(&config, service);
    let ports: Vec<String> = config.ports.iter().map(|p| p.name.clone()).collect();
    let (limits, filter) = (request.limits, request.filter.clone());
    let s = Arc::clone(&state);
    let result: CaptureResult = blocking(move || s.dataplane.capture(&matcher, filter.as_deref(), limits)).await?.map_err(capture_error)?;
    let key = &request.service;
    let comment = format!(
        "rvs capture of service {}/{}/{}{}",
        key.protocol,
        key.vip,
        key.port,
        request.filter.as_deref().map(|f| format!(", filter `{f}`")).unwrap_or_default()
    );
    let body = capture::to_pcapng(&result.frames, &ports, limits.snaplen, &comment).map_err(capture_error)?;
    tracing::info!(
        service = %format!("{}/{}/{}", key.protocol, key.vip, key.port),
        frames = result.frames.len(),
        stopped = result.stopped.as_str(),
        ring_full = result.ring_full,
        "capture served"
    );
    let headers = [
        (CONTENT_TYPE, HeaderValue::from_static("application/x-pcapng")),
        (
            axum::http::header::CONTENT_DISPOSITION,
            HeaderValue::from_str(&format!("attachment; filename=\"rvs-{}-{}-{}.pcapng\"", key.protocol, key.vip, key.port))
                .unwrap_or_else(|_| HeaderValue::from_static("attachment")),
        ),
    ];
    let mut resp = (headers, body).into_response();
    let extra = resp.headers_mut();
    extra.insert("x-rvs-capture-frames", HeaderValue::from(result.frames.len()));
    extra.insert("x-rvs-capture-stop", HeaderValue::from_static(result.stopped.as_str()));
    extra.insert("x-rvs-capture-ring-full", HeaderValue::from(result.ring_full));
    Ok(resp)
}

async fn metrics(State(state): AppState) -> Result<Response, ApiError> {
    let (config, generation) = state.effective_config().await;
    let s = Arc::clone(&state);
    let (stats, dp) = blocking(move || (s.service_stats(), s.dataplane.stats())).await?;
    let ha = state.overlay_status();
    let text = {
        let rates = state.rates.lock();
        crate::metrics::render(&crate::metrics::MetricsInput {
            config: &config,
            generation,
            stats: &stats,
            rates: &rates,
            dataplane: &dp,
            ha: &ha,
        }) + &crate::metrics::render_health(&state.health())
            + &crate::metrics::render_process()
    };
    Ok(([(CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response())
}

/// `GET /api/v1/events[?after=SEQ&limit=N]`: the newest `limit` (default
/// 100) events after sequence number `after` (default 0), oldest first.
async fn events(State(state): AppState, uri: Uri) -> Result<Json<serde_json::Value>, ApiError> {
    let params = query_params(uri.query(), &["after", "limit"])?;
    let log = state.events();
    let number = |name: &str, default: u64, min: u64, max: u64| -> Result<u64, ApiError> {
        match params.get(name) {
            None => Ok(default),
            Some(v) => match v.parse::<u64>() {
                Ok(n) if (min..=max).contains(&n) => Ok(n),
                _ => Err(ApiError::bad_request(format!("{name}: invalid value `{v}`; expected {min} ..= {max}")).with_field(name)),
            },
        }
    };
    let after = number("after", 0, 0, u64::MAX)?;
    let limit = number("limit", 100, 1, log.capacity() as u64)?;
    Ok(Json(serde_json::json!({
        "events": log.after(after, limit as usize),
        "last_seq": log.last_seq(),
        "capacity": log.capacity(),
    })))
}

async fn openapi() -> Response {
    ([(CONTENT_TYPE, "application/json")], OPENAPI_JSON).into_response()
}

/// Every `(method, path)` the router serves, for documentation checks.
pub fn documented_routes() -> BTreeSet<(String, String)> {
    let doc: serde_json::Value = serde_json::from_str(OPENAPI_JSON).unwrap_or_default();
    let mut out = BTreeSet::new();
    if let Some(paths) = doc.get("paths").and_then(|p| p.as_object()) {
        for (path, item) in paths {
            if let Some(item) = item.as_object() {
                for method in item.keys() {
                    if ["get", "put", "post", "delete", "patch", "head", "options"].contains(&method.as_str()) {
                        out.insert((method.to_ascii_uppercase(), path.clone()));
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_parameter_takes_ipv4_and_ipv6_addresses_bracketed_or_not() {
        let v6: IpAddr = "2001:db8::100".parse().expect("an IPv6 address");
        for value in ["tcp/2001:db8::100/80", "tcp/[2001:db8::100]/80"] {
            let key = parse_service_param(value, "service").expect(value);
            assert_eq!((key.protocol, key.vip, key.port), (Protocol::Tcp, v6, 80), "{value}");
        }
        let key = parse_service_param("udp/10.0.0.100/53", "service").expect("IPv4");
        assert_eq!((key.protocol, key.vip, key.port), (Protocol::Udp, IpAddr::from([10, 0, 0, 100]), 53));
        for bad in ["tcp/2001:db8::100", "tcp/[2001:db8::100/80", "tcp/2001:db8::zz/80", "tcp/[10.0.0.100]/80", "tcp/2001:db8::100/80/1"] {
            assert!(parse_service_param(bad, "service").is_err(), "{bad} accepted");
        }
    }
}
