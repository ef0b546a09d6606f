//! rvsadm's HTTP client for rvsd's REST API (plain HTTP to the management address).

use std::time::Duration;

use rvs_dataplane::snapshot::{ServiceKey, Timeouts};
use rvs_dataplane::stats::ConnInfo;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::api::{ConnectionsPage, ServiceStatsView};
use crate::config::Config;

/// The API rvsadm talks to when neither `--api` nor `RVSADM_API` says otherwise.
pub const DEFAULT_API: &str = "http://127.0.0.1:9090";
/// Page size rvsadm uses to read the connection table.
const CONN_PAGE: usize = crate::api::MAX_CONN_LIMIT;

/// Why an rvsadm command failed: the message (printed as is, like ipvsadm's)
/// and the exit status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdmError {
    /// What to print on stderr.
    pub message: String,
    /// Exit status: 2 bad command line or rvsd unreachable, 1 refused or failed.
    pub code: u8,
}

impl AdmError {
    /// A refused or failed operation (exit status 1).
    pub fn failed(message: impl Into<String>) -> Self {
        AdmError { message: message.into(), code: 1 }
    }

    /// A usage error or unreachable rvsd (exit status 2).
    pub fn usage(message: impl Into<String>) -> Self {
        AdmError { message: message.into(), code: 2 }
    }
}

impl std::fmt::Display for AdmError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// A refusal by rvsd: status and its JSON error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// HTTP status.
    pub status: u16,
    /// The `error` member of the body.
    pub error: String,
}

/// What a request came back with.
#[derive(Debug)]
pub enum Outcome {
    /// 2xx: the body and the `ETag` header.
    Ok(Value, Option<String>),
    /// 4xx/5xx with rvsd's error.
    Refused(Refusal),
}

/// The HTTP client.
#[derive(Debug)]
pub struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl Client {
    /// A client for the API at `base` (`http://host:port`), sending `token` with changes.
    pub fn new(base: &str, token: Option<String>) -> Self {
        let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(60)).build();
        Client { base: base.trim_end_matches('/').to_string(), token: token.filter(|t| !t.is_empty()), agent }
    }

    /// The client the environment asks for: `api` (from `--api`), else
    /// `RVSADM_API`, else [`DEFAULT_API`]; the token from `RVSADM_TOKEN`, else `RVS_API_TOKEN`.
    pub fn from_env(api: Option<String>) -> Self {
        let base = api.or_else(|| std::env::var("RVSADM_API").ok().filter(|s| !s.is_empty())).unwrap_or_else(|| DEFAULT_API.to_string());
        let token = std::env::var("RVSADM_TOKEN")
            .ok()
            .filter(|s| !s.is_empty())
            .or_else(|| std::env::var(crate::api::TOKEN_ENV).ok().filter(|s| !s.is_empty()));
        Client::new(&base, token)
    }

    /// The API's base address.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends a request; transport failures are errors, HTTP refusals are [`Outcome::Refused`].
    pub fn request(&self, method: &str, path: &str, body: Option<&Value>, if_match: Option<u64>) -> Result<Outcome, AdmError> {
        let url = format!("{}{path}", self.base);
        let mut req = self.agent.request(method, &url);
        if let Some(t) = &self.token {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        if let Some(g) = if_match {
            req = req.set("If-Match", &format!("\"{g}\""));
        }
        let result = match body {
            Some(b) => req.send_json(b),
            None => req.call(),
        };
        match result {
            Ok(resp) => {
                let etag = resp.header("etag").map(str::to_string);
                let value = resp.into_json::<Value>().unwrap_or(Value::Null);
                Ok(Outcome::Ok(value, etag))
            }
            Err(ureq::Error::Status(status, resp)) => {
                let value = resp.into_json::<Value>().unwrap_or(Value::Null);
                let error =
                    value.get("error").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| format!("HTTP status {status}"));
                Ok(Outcome::Refused(Refusal { status, error }))
            }
            Err(ureq::Error::Transport(t)) => Err(AdmError::usage(format!(
                "Can't reach rvsd at {}: {t}\nIs rvsd running? Set the API address with --api URL or RVSADM_API.",
                self.base
            ))),
        }
    }

    /// A GET whose refusal is an error.
    fn get<T: DeserializeOwned>(&self, path: &str) -> Result<(T, Option<String>), AdmError> {
        match self.request("GET", path, None, None)? {
            Outcome::Ok(v, etag) => serde_json::from_value(v)
                .map(|t| (t, etag))
                .map_err(|e| AdmError::failed(format!("unexpected answer from rvsd to GET {path}: {e}"))),
            Outcome::Refused(r) => Err(refused(&r)),
        }
    }

    /// The config in force and its generation.
    pub fn config(&self) -> Result<(Config, u64), AdmError> {
        let (config, etag) = self.get::<Config>("/api/v1/config")?;
        let generation = etag
            .as_deref()
            .map(|e| e.trim_start_matches("W/").trim_matches('"'))
            .and_then(|e| e.parse().ok())
            .ok_or_else(|| AdmError::failed("rvsd sent no ETag with the config"))?;
        Ok((config, generation))
    }

    /// The config as the dataplane runs it (health checks applied), for listings.
    pub fn effective_config(&self) -> Result<Config, AdmError> {
        self.get::<Config>("/api/v1/config/effective").map(|(c, _)| c)
    }

    /// Replaces the config; `Ok(false)` when it changed since `generation` (412).
    pub fn put_config(&self, config: &Config, generation: u64) -> Result<bool, AdmError> {
        let body = serde_json::to_value(config).map_err(|e| AdmError::failed(e.to_string()))?;
        match self.request("PUT", "/api/v1/config", Some(&body), Some(generation))? {
            Outcome::Ok(..) => Ok(true),
            Outcome::Refused(r) if r.status == 412 => Ok(false),
            Outcome::Refused(r) => Err(refused(&r)),
        }
    }

    /// The connection timeouts.
    pub fn timeouts(&self) -> Result<Timeouts, AdmError> {
        self.get::<Timeouts>("/api/v1/timeouts").map(|(t, _)| t)
    }

    /// Counters, connection counts and rates of every service.
    pub fn stats(&self) -> Result<Vec<ServiceStatsView>, AdmError> {
        self.get::<Vec<ServiceStatsView>>("/api/v1/stats/services").map(|(s, _)| s)
    }

    /// Every connection (with persistence templates), page by page.
    pub fn connections(&self) -> Result<Vec<ConnInfo>, AdmError> {
        let mut all = Vec::new();
        loop {
            let path = format!("/api/v1/connections?templates=true&offset={}&limit={CONN_PAGE}", all.len());
            let (page, _) = self.get::<ConnectionsPage>(&path)?;
            let got = page.connections.len();
            all.extend(page.connections);
            if got == 0 || all.len() >= page.total {
                return Ok(all);
            }
        }
    }

    /// Drains the node (`POST /api/v1/cluster/drain`): routes withdrawn,
    /// flows served for `grace` seconds (default: rvsd's `bgp.drain_grace`),
    /// then rvsd stops. Returns rvsd's answer.
    pub fn drain(&self, grace: Option<u32>) -> Result<Value, AdmError> {
        let path = match grace {
            None => "/api/v1/cluster/drain".to_string(),
            Some(g) => format!("/api/v1/cluster/drain?grace={g}"),
        };
        match self.request("POST", &path, None, None)? {
            Outcome::Ok(v, _) => Ok(v),
            Outcome::Refused(r) => Err(refused(&r)),
        }
    }

    /// Zeroes the counters of one service or all.
    pub fn zero(&self, service: Option<&ServiceKey>) -> Result<(), AdmError> {
        let path = match service {
            None => "/api/v1/stats/zero".to_string(),
            Some(k) => format!("/api/v1/stats/zero?service={}/{}/{}", k.protocol, k.vip, k.port),
        };
        match self.request("POST", &path, None, None)? {
            Outcome::Ok(..) => Ok(()),
            Outcome::Refused(r) if r.status == 404 => Err(AdmError::failed("No such service")),
            Outcome::Refused(r) => Err(refused(&r)),
        }
    }
}

/// rvsd's refusal as an rvsadm error.
pub fn refused(r: &Refusal) -> AdmError {
    match r.status {
        401 => AdmError::failed(format!("Permission denied (set RVSADM_TOKEN or RVS_API_TOKEN to rvsd's API token): {}", r.error)),
        _ => AdmError::failed(r.error.clone()),
    }
}
