//! Health checks of real servers, with Keepalived's semantics.
//!
//! * Checkers, one module each: [`tcp`] (TCP_CHECK), [`http`] (HTTP_GET),
//!   [`ssl`] (SSL_GET), [`udp`] (UDP_CHECK), [`dns`] (DNS_CHECK), [`misc`]
//!   (MISC_CHECK). [`run_attempt`] runs one attempt of a check, [`run_check`]
//!   one check with its retries.
//! * [`state`]: the pure logic — [`HealthState`] holds each checked real
//!   server's up/down and dynamic weight and each service's quorum, turns check
//!   results into [`Transition`]s (notify hooks) and computes the
//!   [`effective`](HealthState::effective) config the dataplane must run.
//! * [`engine`]: [`HealthEngine`], one tokio task per checked real server; it
//!   bumps a `watch` counter whenever the effective config changes.
//!
//! # Semantics (what is implemented, exactly)
//!
//! **Rounds.** Each real server with at least one check has one task. A round
//! runs all the real's checks concurrently; the real is *up* after a round in
//! which every check passed and *down* after a round in which any check
//! failed. The first round runs as soon as the task starts; the next round
//! starts `delay_loop` seconds after the previous one ended.
//!
//! **Retries.** Within a round, a check that fails an attempt is tried again
//! after `delay_before_retry`, up to `retry` more times: it fails only when
//! `retry + 1` consecutive attempts failed (Keepalived's `nb_get_retry`
//! semantics). One success ends the check as passed.
//!
//! **Detection time.** A server that stops answering right after a successful
//! round is marked down at the latest after
//! `delay_loop + (retry + 1) × T + retry × delay_before_retry`, where `T` is
//! one attempt's time limit: `connect_timeout` for TCP_CHECK, UDP_CHECK and
//! DNS_CHECK; `2 × connect_timeout` for HTTP_GET and SSL_GET (connect, then the
//! TLS handshake and the whole exchange); the script timeout for MISC_CHECK.
//! This is within the bound `delay_loop × (retry + 1)` plus the
//! timeouts. (With several checks on one real, a round lasts as long as its
//! slowest check.)
//!
//! **Damping.** As in Keepalived there is no rise/fall counter beyond the
//! retries: a down real comes back up after the first round in which all its
//! checks pass, and goes down only after a round with a check that failed
//! `retry + 1` times in a row. Results that do not change the state change
//! nothing (no notify, no new config).
//!
//! **Initial state.** Without `alpha` a real starts up; with `alpha` it starts
//! down until its first successful round (and then runs `notify_up`).
//!
//! **Effects** (see [`HealthState::effective`]): a down real is removed from its
//! service, or kept with weight 0 with `inhibit_on_failure`; MISC_CHECK with
//! `dynamic` sets the weight of an up real (exit 0: the configured weight,
//! 2..=255: `code − 2`, 1 or anything else: down). Quorum: the sum of the
//! weights of the up reals (unchecked reals count with their weight) is
//! compared with `quorum` and `hysteresis` (see [`state::next_quorum`]); while
//! the quorum is lost and a `sorry_server` is set, the service's reals are
//! replaced by the sorry server alone (weight 1). Without a sorry server, a lost
//! quorum only runs `quorum_down`.
//!
//! **Services.** A service whose reals have checks is managed even without a
//! `health` object: [`ServiceHealth::default()`](crate::ha::ServiceHealth)
//! applies (delay_loop 60 s, quorum 1, no sorry server). A service with neither
//! `health` nor checked reals is left untouched, and so is a real without
//! checks (always up, its configured weight).

pub mod dns;
pub mod engine;
pub mod http;
pub mod misc;
pub mod ssl;
pub mod state;
pub mod tcp;
pub mod udp;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rvs_dataplane::snapshot::ServiceKey;
use serde::Serialize;

use crate::config::{RealConfig, ServiceConfig};
use crate::ha::{CheckKind, HealthCheck, RealHealth};

pub use engine::HealthEngine;
pub use state::{HealthEvent, HealthReport, HealthState, RealReport, RealStatus, RoundResult, ServiceReport, Transition};

/// Identifies a real server of a service: the service, and the real's address
/// and port (after defaults).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct RealKey {
    /// The virtual service.
    pub service: ServiceKey,
    /// The real server's address.
    pub address: IpAddr,
    /// The real server's port.
    pub port: u16,
}

impl RealKey {
    /// The key of `real` in `service`.
    pub fn of(service: &ServiceConfig, real: &RealConfig) -> RealKey {
        RealKey { service: service.key(), address: real.address, port: real.port_for(service) }
    }

    /// A sort key: service (protocol, VIP, port), then address and port.
    pub fn sort_key(&self) -> (String, IpAddr, u16, IpAddr, u16) {
        (self.service.protocol.to_string(), self.service.vip, self.service.port, self.address, self.port)
    }
}

impl fmt::Display for RealKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{} of {}", self.address, self.port, self.service)
    }
}

/// The health settings of a real server (the one place that reads them from
/// [`RealConfig`]).
pub fn real_health(real: &RealConfig) -> &RealHealth {
    &real.health
}

/// How a passed check changes the real server's weight.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub enum WeightChange {
    /// Leave it as it is (every check but MISC_CHECK with `dynamic`).
    #[default]
    Keep,
    /// Back to the configured weight (dynamic MISC_CHECK exited 0).
    Reset,
    /// Set it (dynamic MISC_CHECK exited 2..=255: weight = code − 2).
    Set(u32),
}

/// Why a check attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// No connection, answer or exit within the time limit.
    #[error("{what}: no result within {after:?}")]
    Timeout {
        /// What timed out (`connect`, `response`, `reply`, `script`...).
        what: &'static str,
        /// The limit.
        after: Duration,
    },
    /// A socket or process operation failed (connection refused, ICMP port
    /// unreachable, ...).
    #[error("{what}: {source}")]
    Io {
        /// The operation (`connect`, `send`, `recv`, `spawn`...).
        what: &'static str,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// HTTP_GET/SSL_GET: the status code is not one of the expected ones.
    #[error("GET {path}: status {code}, expected one of {expected:?}")]
    Status {
        /// The URL path.
        path: String,
        /// The status received.
        code: u16,
        /// The accepted statuses.
        expected: Vec<u16>,
    },
    /// HTTP_GET/SSL_GET: the body's MD5 differs from `digest`.
    #[error("GET {path}: body MD5 {got}, expected {expected}")]
    Digest {
        /// The URL path.
        path: String,
        /// MD5 of the body received, lowercase hex.
        got: String,
        /// The configured digest.
        expected: String,
    },
    /// The peer's answer is malformed or does not match (HTTP, UDP, DNS).
    #[error("{0}")]
    Answer(String),
    /// TLS failed (handshake or record layer).
    #[error("TLS: {0}")]
    Tls(String),
    /// MISC_CHECK: the script exited with a failing code.
    #[error("script exited with code {0}")]
    Exit(i32),
    /// MISC_CHECK: the script was ended by a signal.
    #[error("script ended by a signal")]
    Signal,
    /// The check itself is unusable (bad hex payload, unknown DNS type, ...).
    #[error("invalid check: {0}")]
    Invalid(String),
}

impl CheckError {
    pub(crate) fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> CheckError {
        move |source| CheckError::Io { what, source }
    }
}

/// Converts seconds from the config into a [`Duration`] (negative or NaN → 0,
/// absurdly large → one year).
pub fn secs(s: f64) -> Duration {
    if s.is_nan() || s <= 0.0 {
        return Duration::ZERO;
    }
    Duration::try_from_secs_f64(s.min(31_536_000.0)).unwrap_or(Duration::ZERO)
}

/// Decodes hex (`"0a1B"`, whitespace ignored) into bytes.
pub fn decode_hex(text: &str) -> Result<Vec<u8>, CheckError> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    let pairs = digits.chunks_exact(2);
    if !pairs.remainder().is_empty() {
        return Err(CheckError::Invalid(format!("hex `{text}` has an odd number of digits")));
    }
    let nibble = |b: u8| -> Result<u8, CheckError> {
        match b {
            b'0'..=b'9' => Ok(b - b'0'),
            b'a'..=b'f' => Ok(b - b'a' + 10),
            b'A'..=b'F' => Ok(b - b'A' + 10),
            _ => Err(CheckError::Invalid(format!("`{text}` is not hex"))),
        }
    };
    pairs.map(|p| Ok((nibble(p[0])? << 4) | nibble(p[1])?)).collect()
}

/// Lowercase hex of `bytes`.
pub fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Where a check connects: `connect_ip`/`connect_port` or the real server's
/// (DNS_CHECK: port 53 unless `connect_port`), and the `bind_ip` source.
pub fn target(check: &HealthCheck, address: IpAddr, port: u16) -> (SocketAddr, Option<IpAddr>) {
    let default_port = if matches!(check.kind, CheckKind::DnsCheck { .. }) { 53 } else { port };
    let addr = SocketAddr::new(check.connect_ip.unwrap_or(address), check.connect_port.unwrap_or(default_port));
    (addr, check.bind_ip)
}

/// The checker's name as Keepalived spells it (`TCP_CHECK`, `HTTP_GET`, ...).
pub fn kind_name(kind: &CheckKind) -> &'static str {
    match kind {
        CheckKind::TcpCheck => "TCP_CHECK",
        CheckKind::HttpGet { .. } => "HTTP_GET",
        CheckKind::SslGet { .. } => "SSL_GET",
        CheckKind::UdpCheck { .. } => "UDP_CHECK",
        CheckKind::DnsCheck { .. } => "DNS_CHECK",
        CheckKind::MiscCheck { .. } => "MISC_CHECK",
    }
}

/// Runs one attempt of `check` against the real server `address:port`.
pub async fn run_attempt(check: &HealthCheck, address: IpAddr, port: u16) -> Result<WeightChange, CheckError> {
    let (to, bind) = target(check, address, port);
    let timeout = secs(check.connect_timeout);
    match &check.kind {
        CheckKind::TcpCheck => tcp::check(to, bind, timeout).await,
        CheckKind::HttpGet { urls, virtualhost } => http::check(to, bind, timeout, urls, virtualhost.as_deref()).await,
        CheckKind::SslGet { urls, virtualhost } => ssl::check(to, bind, timeout, urls, virtualhost.as_deref()).await,
        CheckKind::UdpCheck { payload, require_reply, reply } => {
            let payload = decode_hex(payload.as_deref().unwrap_or(""))?;
            let reply = reply.as_deref().map(decode_hex).transpose()?;
            udp::check(to, bind, timeout, &payload, *require_reply, reply.as_deref()).await
        }
        CheckKind::DnsCheck { query_type, name } => dns::check(to, bind, timeout, query_type, name).await,
        CheckKind::MiscCheck { path, timeout: script_timeout, dynamic } => {
            let limit = script_timeout.map(secs).unwrap_or(timeout);
            misc::check(path, limit, *dynamic).await
        }
    }
}

/// Runs `check` with its retries: up to `retry + 1` attempts, `delay_before_retry`
/// apart; the first success passes, and the last attempt's error is returned
/// when all fail.
pub async fn run_check(check: &HealthCheck, address: IpAddr, port: u16) -> Result<WeightChange, CheckError> {
    let mut failed: u32 = 0;
    loop {
        match run_attempt(check, address, port).await {
            Ok(weight) => return Ok(weight),
            Err(e) if failed >= check.retry => return Err(e),
            Err(e) => {
                failed += 1;
                tracing::debug!(
                    "{} of {address}:{port}: attempt {failed} of {} failed: {e}",
                    kind_name(&check.kind),
                    check.retry.saturating_add(1)
                );
                tokio::time::sleep(secs(check.delay_before_retry)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        assert_eq!(decode_hex("00 ff 0A").expect("hex"), vec![0, 255, 10]);
        assert_eq!(encode_hex(&[0, 255, 10]), "00ff0a");
        assert!(decode_hex("abc").is_err());
        assert!(decode_hex("zz").is_err());
        assert_eq!(decode_hex("").expect("empty"), Vec::<u8>::new());
    }

    #[test]
    fn secs_is_safe() {
        assert_eq!(secs(-1.0), Duration::ZERO);
        assert_eq!(secs(f64::NAN), Duration::ZERO);
        assert_eq!(secs(0.25), Duration::from_millis(250));
        assert_eq!(secs(f64::INFINITY), Duration::from_secs(31_536_000));
    }
}
