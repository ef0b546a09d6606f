//! The REST API of rvsd (axum), under `/api/v1`.
//!
//! Bodies use the same JSON schema as the config file ([`crate::config`]): a service
//! is a [`ServiceConfig`], a real server a [`RealConfig`], unknown fields are errors.
//! Services are addressed as `{protocol}/{vip}/{port}` (`tcp/10.0.0.100/80`), real
//! servers as `{address}/{rport}` below their service, where `rport` is the real
//! server's effective port (the service port when the real has none).
//!
//! Ports, addresses, routes, timeouts and EAL settings are read-only here: change
//! them in the config file and restart.
//!
//! # Changes
//!
//! Every change is all-or-nothing. Under one lock the API copies the current
//! config, applies the change to the copy, validates it, builds a snapshot with
//! the next generation number, hands it to the dataplane and waits until every
//! worker has adopted it (or the dataplane gives up waiting); only then does the
//! copy become the current config. A successful change answers (201 for creates,
//! 200 otherwise):
//!
//! ```json
//! {"generation": 8, "workers": 2, "adopted": true, "adopt_us": 41}
//! ```
//!
//! `adopted: false` means the snapshot was handed over but not every worker
//! confirmed it in time; the change is still recorded.
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
//! `field` is the JSON path of the offending value, or `null` when the error is
//! not about one field. It is relative to the request body when the error lies
//! inside the body (`reals[1].weight` for a service body, `weight` for a real
//! server body) and the full config path otherwise (`services[2].port`).
//!
//! | status | when |
//! |---|---|
//! | 400 | malformed JSON, wrong type, unknown field or value (serde's message, which names the path), failed validation, bad path segment (`sctp`, `10.0.0`), body key differing from the path |
//! | 404 | unknown service, real server or endpoint |
//! | 405 | method not allowed on an existing endpoint |
//! | 409 | creating a service or real server that exists |
//! | 415 | body without `Content-Type: application/json` |
//! | 500 | the snapshot could not be built or published |
//!
//! # Routes
//!
//! ## `GET /api/v1/status`
//! ```json
//! {"generation": 7, "workers": 2, "services": 1}
//! ```
//! `workers` is the number of configured worker lcores.
//!
//! ## `GET /api/v1/config`
//! The whole current [`Config`], as in the config file.
//!
//! ## `GET /api/v1/stats`
//! Whatever [`Dataplane::stats`] returns (per-worker counters).
//!
//! ## `GET /api/v1/services`
//! ```json
//! [{"protocol": "tcp", "vip": "10.0.0.100", "port": 80, "scheduler": "rr", "forward": "dr",
//!   "reals": [{"address": "10.1.0.11", "weight": 1}]}]
//! ```
//!
//! ## `POST /api/v1/services` (ipvsadm `-A`)
//! Body: a service; `scheduler` defaults to `wrr`, `forward` to `dr`, `reals` to `[]`.
//! ```text
//! curl -X POST localhost:9090/api/v1/services -H 'Content-Type: application/json' \
//!   -d '{"protocol": "udp", "vip": "10.0.0.53", "port": 53, "scheduler": "wrr",
//!        "reals": [{"address": "10.1.0.21", "weight": 2}]}'
//! ```
//! 201 with the change report; 409 when the service exists.
//!
//! ## `GET /api/v1/services/{protocol}/{vip}/{port}`
//! The service, e.g. `GET /api/v1/services/tcp/10.0.0.100/80`.
//!
//! ## `PUT /api/v1/services/{protocol}/{vip}/{port}` (ipvsadm `-E`, and its reals)
//! Replaces the service, real servers included. The body's protocol, vip and port
//! must match the path (400 otherwise); 404 when the service does not exist.
//! ```text
//! curl -X PUT localhost:9090/api/v1/services/tcp/10.0.0.100/80 -H 'Content-Type: application/json' \
//!   -d '{"protocol": "tcp", "vip": "10.0.0.100", "port": 80, "scheduler": "wrr",
//!        "reals": [{"address": "10.1.0.11", "weight": 3}]}'
//! ```
//!
//! ## `DELETE /api/v1/services/{protocol}/{vip}/{port}` (ipvsadm `-D`)
//! Removes the service and its real servers.
//!
//! ## `GET /api/v1/services/{protocol}/{vip}/{port}/reals`
//! ```json
//! [{"address": "10.1.0.11", "weight": 1}, {"address": "10.1.0.12", "port": 80, "weight": 1, "forward": "dr"}]
//! ```
//!
//! ## `POST /api/v1/services/{protocol}/{vip}/{port}/reals` (ipvsadm `-a`)
//! Body: a real server; `port` defaults to the service port, `weight` to 1,
//! `forward` to the service's. 201; 409 when `address:port` is already a real server.
//! ```text
//! curl -X POST localhost:9090/api/v1/services/tcp/10.0.0.100/80/reals \
//!   -H 'Content-Type: application/json' -d '{"address": "10.1.0.13", "weight": 2}'
//! ```
//!
//! ## `GET /api/v1/services/{protocol}/{vip}/{port}/reals/{address}/{rport}`
//! The real server, e.g. `GET /api/v1/services/tcp/10.0.0.100/80/reals/10.1.0.11/80`.
//!
//! ## `PUT /api/v1/services/{protocol}/{vip}/{port}/reals/{address}/{rport}` (ipvsadm `-e`)
//! Replaces the real server (weight, forwarding mode). The body's address and
//! effective port must match the path (400 otherwise).
//! ```text
//! curl -X PUT localhost:9090/api/v1/services/tcp/10.0.0.100/80/reals/10.1.0.11/80 \
//!   -H 'Content-Type: application/json' -d '{"address": "10.1.0.11", "weight": 0}'
//! ```
//!
//! ## `DELETE /api/v1/services/{protocol}/{vip}/{port}/reals/{address}/{rport}` (ipvsadm `-d`)
//! Removes the real server.

use std::net::Ipv4Addr;
use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use rvs_dataplane::snapshot::{Protocol, ServiceKey, Snapshot};
use rvs_dataplane::wire::MacAddr;
use serde::de::DeserializeOwned;
use serde::Serialize;

use rvs_dataplane::stats::{ConnFilter, ConnInfo, ServiceStats};

use crate::build::build_snapshot;
use crate::config::{Config, ConfigError, RealConfig, ServiceConfig};

/// What publishing a snapshot achieved; also the body of every successful change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
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
}

/// The config currently in force and the generation of its snapshot.
struct Current {
    config: Config,
    generation: u64,
}

/// Shared state of the API: the current config (one change at a time) and the dataplane.
pub struct ApiState {
    current: tokio::sync::Mutex<Current>,
    dataplane: Arc<dyn Dataplane>,
}

impl ApiState {
    /// State for a dataplane already running `config` as snapshot `initial_generation`.
    pub fn new(config: Config, initial_generation: u64, dataplane: Arc<dyn Dataplane>) -> Arc<Self> {
        Arc::new(ApiState {
            current: tokio::sync::Mutex::new(Current { config, generation: initial_generation }),
            dataplane,
        })
    }

    /// A copy of the config currently in force.
    pub async fn config(&self) -> Config {
        self.current.lock().await.config.clone()
    }

    /// The generation of the snapshot currently in force.
    pub async fn generation(&self) -> u64 {
        self.current.lock().await.generation
    }
}

/// The `/api/v1` router.
pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/api/v1/status", get(status))
        .route("/api/v1/config", get(get_config))
        .route("/api/v1/stats", get(stats))
        .route("/api/v1/services", get(list_services).post(create_service))
        .route("/api/v1/services/{protocol}/{vip}/{port}", get(get_service).put(replace_service).delete(delete_service))
        .route("/api/v1/services/{protocol}/{vip}/{port}/reals", get(list_reals).post(create_real))
        .route(
            "/api/v1/services/{protocol}/{vip}/{port}/reals/{address}/{rport}",
            get(get_real).put(replace_real).delete(delete_real),
        )
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
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

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "expected a JSON body with the header `Content-Type: application/json`",
            ),
            // Syntax and data errors (wrong type, unknown field, unknown value) are
            // both the client's to fix: 400 with serde's message, which names the path.
            JsonRejection::JsonSyntaxError(e) => ApiError::bad_request(json_message(&e.body_text())),
            JsonRejection::JsonDataError(e) => ApiError::bad_request(json_message(&e.body_text())),
            other => ApiError::new(other.status(), other.body_text()),
        }
    }
}

/// `invalid JSON body: <serde's message>`, without axum's generic preamble.
fn json_message(body_text: &str) -> String {
    let detail =
        ["Failed to deserialize the JSON body into the target type: ", "Failed to parse the request body as JSON: "]
            .iter()
            .find_map(|prefix| body_text.strip_prefix(prefix))
            .unwrap_or(body_text);
    format!("invalid JSON body: {detail}")
}

fn no_service(key: &ServiceKey) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("no service {key}"))
}

fn no_real(key: &ServiceKey, address: Ipv4Addr, port: u16) -> ApiError {
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
        let Json(value) = Json::<T>::from_request(req, state).await.map_err(ApiError::from)?;
        Ok(JsonBody(value))
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

fn parse_addr(s: &str, what: &str) -> Result<Ipv4Addr, ApiError> {
    s.parse().map_err(|_| {
        ApiError::bad_request(format!("invalid {what} `{s}` in the path: expected an IPv4 address a.b.c.d"))
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

/// `{protocol}/{vip}/{port}/reals/{address}/{rport}` of the path.
struct RealPath {
    service: ServiceKey,
    address: Ipv4Addr,
    port: u16,
}

impl<S: Send + Sync> FromRequestParts<S> for RealPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path((protocol, vip, port, address, rport)) =
            Path::<(String, String, String, String, String)>::from_request_parts(parts, state)
                .await
                .map_err(path_rejection)?;
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

/// The outcome of an edit: a description for the log and where the request
/// body sits in the new config (for relative field paths), if there is a body.
struct Edit {
    what: String,
    body_path: Option<String>,
}

/// Applies `edit` to a copy of the current config, validates, builds and publishes
/// the next snapshot, and only then makes the copy current.
async fn commit(
    state: &ApiState,
    created: bool,
    edit: impl FnOnce(&mut Config) -> Result<Edit, ApiError>,
) -> Result<Response, ApiError> {
    let mut current = state.current.lock().await;
    let mut config = current.config.clone();
    let Edit { what, body_path } = edit(&mut config)?;
    config.validate().map_err(|e| ApiError::invalid(e, body_path.as_deref()))?;

    let generation = current.generation + 1;
    let snapshot = build_snapshot(&config, &state.dataplane.port_macs(), generation).map_err(|e| {
        tracing::error!(error = %e, "cannot build snapshot");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot build the snapshot: {e}"))
    })?;
    let dataplane = Arc::clone(&state.dataplane);
    let snapshot = Arc::new(snapshot);
    let mut report = tokio::task::spawn_blocking(move || dataplane.publish(snapshot)).await.map_err(|e| {
        tracing::error!(error = %e, "publishing the snapshot failed");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("publishing the snapshot failed: {e}"))
    })?;
    report.generation = generation;

    current.config = config;
    current.generation = generation;
    drop(current);

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
    Ok((status, Json(report)).into_response())
}

fn find_service(config: &Config, key: &ServiceKey) -> Result<usize, ApiError> {
    config.service_index(key).ok_or_else(|| no_service(key))
}

fn find_real(service: &ServiceConfig, address: Ipv4Addr, port: u16) -> Result<usize, ApiError> {
    service.real_index(address, port).ok_or_else(|| no_real(&service.key(), address, port))
}

// ---------------------------------------------------------------------------
// Handlers

type AppState = State<Arc<ApiState>>;

async fn status(State(state): AppState) -> Json<serde_json::Value> {
    let current = state.current.lock().await;
    Json(serde_json::json!({
        "generation": current.generation,
        "workers": current.config.workers.len(),
        "services": current.config.services.len(),
    }))
}

async fn get_config(State(state): AppState) -> Json<Config> {
    Json(state.config().await)
}

async fn stats(State(state): AppState) -> Json<serde_json::Value> {
    Json(state.dataplane.stats())
}

async fn list_services(State(state): AppState) -> Json<Vec<ServiceConfig>> {
    Json(state.current.lock().await.config.services.clone())
}

async fn create_service(
    State(state): AppState,
    JsonBody(service): JsonBody<ServiceConfig>,
) -> Result<Response, ApiError> {
    commit(&state, true, |config| {
        let key = service.key();
        if config.service_index(&key).is_some() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "service {key} already exists; PUT /api/v1/services/{}/{}/{} replaces it",
                    key.protocol, key.vip, key.port
                ),
            ));
        }
        config.services.push(service);
        Ok(Edit {
            what: format!("added service {key}"),
            body_path: Some(format!("services[{}]", config.services.len() - 1)),
        })
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
        Err(ApiError::bad_request(format!("{field}: {body} in the body differs from {path} in the path"))
            .with_field(field))
    }
}

async fn replace_service(
    State(state): AppState,
    ServicePath(key): ServicePath,
    JsonBody(service): JsonBody<ServiceConfig>,
) -> Result<Response, ApiError> {
    commit(&state, false, |config| {
        let i = find_service(config, &key)?;
        must_match("protocol", service.protocol, key.protocol)?;
        must_match("vip", service.vip, key.vip)?;
        must_match("port", service.port, key.port)?;
        config.services[i] = service;
        Ok(Edit { what: format!("replaced service {key}"), body_path: Some(format!("services[{i}]")) })
    })
    .await
}

async fn delete_service(State(state): AppState, ServicePath(key): ServicePath) -> Result<Response, ApiError> {
    commit(&state, false, |config| {
        let i = find_service(config, &key)?;
        config.services.remove(i);
        Ok(Edit { what: format!("deleted service {key}"), body_path: None })
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
    JsonBody(real): JsonBody<RealConfig>,
) -> Result<Response, ApiError> {
    commit(&state, true, |config| {
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
        Ok(Edit {
            what: format!("added real server {address}:{port} to service {key}"),
            body_path: Some(format!("services[{i}].reals[{j}]")),
        })
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
    JsonBody(real): JsonBody<RealConfig>,
) -> Result<Response, ApiError> {
    commit(&state, false, |config| {
        let i = find_service(config, &path.service)?;
        let service = &mut config.services[i];
        let j = find_real(service, path.address, path.port)?;
        must_match("address", real.address, path.address)?;
        must_match("port", real.port_for(service), path.port)?;
        service.reals[j] = real;
        Ok(Edit {
            what: format!("replaced real server {}:{} of service {}", path.address, path.port, path.service),
            body_path: Some(format!("services[{i}].reals[{j}]")),
        })
    })
    .await
}

async fn delete_real(State(state): AppState, path: RealPath) -> Result<Response, ApiError> {
    commit(&state, false, |config| {
        let i = find_service(config, &path.service)?;
        let service = &mut config.services[i];
        let j = find_real(service, path.address, path.port)?;
        service.reals.remove(j);
        Ok(Edit {
            what: format!("deleted real server {}:{} of service {}", path.address, path.port, path.service),
            body_path: None,
        })
    })
    .await
}
