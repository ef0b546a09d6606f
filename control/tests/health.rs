//! Health checks against real servers on 127.0.0.0/8 started by the tests: a
//! TCP listener, an HTTP server, a TLS HTTP server (rcgen self-signed), a UDP
//! echo server, a DNS responder (real UDP packets, encoded here), and scripts.
//!
//! Timing: delay_loop 0.2 s, retry 1, delay_before_retry 0.1 s,
//! connect_timeout 0.2 s. A stopped server must be marked down within the
//! issue's bound, `delay_loop × (retry + 1)` plus the timeouts
//! (`(retry + 1) × attempt limit + retry × delay_before_retry`), and the
//! effective config must drop it (or give it weight 0 with
//! `inhibit_on_failure`). Measured times are printed (`--nocapture`).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rvs_control::config::{Config, RealConfig};
use rvs_control::ha::{CheckKind, HealthCheck, ServiceHealth, SorryServer, UrlCheck};
use rvs_control::health::{HealthEngine, RealKey};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::rustls;

const DELAY_LOOP: f64 = 0.2;
const RETRY: u32 = 1;
const DELAY_BEFORE_RETRY: f64 = 0.1;
const CONNECT_TIMEOUT: f64 = 0.2;

const LOCALHOST: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);

/// The issue's bound for a checker whose attempts take at most `attempt` seconds.
fn down_bound(attempt: f64) -> Duration {
    let tries = f64::from(RETRY + 1);
    Duration::from_secs_f64(DELAY_LOOP * tries + tries * attempt + f64::from(RETRY) * DELAY_BEFORE_RETRY)
}

/// Coming back: at worst the next round after a failed one (`delay_loop` and
/// one successful attempt); asserted within the same bound as going down.
fn up_bound(attempt: f64) -> Duration {
    down_bound(attempt)
}

fn check(kind: CheckKind) -> HealthCheck {
    HealthCheck {
        kind,
        connect_timeout: CONNECT_TIMEOUT,
        retry: RETRY,
        delay_before_retry: DELAY_BEFORE_RETRY,
        connect_ip: None,
        connect_port: None,
        bind_ip: None,
    }
}

fn health() -> ServiceHealth {
    ServiceHealth { delay_loop: DELAY_LOOP, quorum: 1, ..ServiceHealth::default() }
}

/// One real server: address, port, weight, checks.
struct Real {
    address: Ipv4Addr,
    port: u16,
    weight: u32,
    checks: Vec<HealthCheck>,
}

fn real(port: u16, checks: Vec<HealthCheck>) -> Real {
    Real { address: LOCALHOST, port, weight: 1, checks }
}

/// A config with one NAT service 10.0.0.100:80 of `protocol` and `reals`.
fn config(protocol: &str, health: ServiceHealth, reals: Vec<Real>) -> Config {
    let mut c = Config::from_json(&format!(
        r#"{{"ports": [{{"name": "p", "device": "d", "addresses": ["10.255.0.1/24"]}}],
            "services": [{{"protocol": "{protocol}", "vip": "10.0.0.100", "port": 80, "forward": "nat"}}]}}"#
    ))
    .expect("base config");
    c.services[0].health = Some(health);
    for r in reals {
        let mut rc: RealConfig = serde_json::from_value(serde_json::json!({
            "address": r.address.to_string(), "port": r.port, "weight": r.weight
        }))
        .expect("real");
        rc.health.checks = r.checks;
        c.services[0].reals.push(rc);
    }
    c.validate().expect("valid config");
    c
}

/// An engine with its change counter.
struct Harness {
    engine: HealthEngine,
    changes: watch::Receiver<u64>,
    config: Config,
}

impl Harness {
    fn start(config: Config) -> Harness {
        let (tx, changes) = watch::channel(0u64);
        let engine = HealthEngine::start(&config, tx);
        Harness { engine, changes, config }
    }

    fn key(&self, i: usize) -> RealKey {
        RealKey::of(&self.config.services[0], &self.config.services[0].reals[i])
    }

    fn up(&self, i: usize) -> Option<bool> {
        self.engine.state().lock().real(&self.key(i)).map(|s| s.up)
    }

    fn rounds(&self, i: usize) -> u64 {
        self.engine.state().lock().real(&self.key(i)).map_or(0, |s| s.rounds)
    }

    /// (address, port, weight) of the effective service's reals.
    fn effective(&self) -> Vec<(Ipv4Addr, u16, u32)> {
        let eff = self.engine.effective();
        let s = &eff.services[0];
        let v4 = |a| rvs_dataplane::snapshot::v4(a).expect("the tests' reals are IPv4");
        s.reals.iter().map(|r| (v4(r.address), r.port_for(s), r.weight)).collect()
    }

    /// Waits until real `i` has run `n` rounds.
    async fn wait_rounds(&self, i: usize, n: u64) {
        let start = Instant::now();
        while self.rounds(i) < n {
            assert!(start.elapsed() < Duration::from_secs(10), "real {i} did not run {n} rounds");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits until real `i` is `up` (or down); returns the time since `since`.
    /// Gives up (panics) well after `bound`, so a failure says how long it took.
    async fn wait_state(&self, i: usize, up: bool, since: Instant, bound: Duration) -> Duration {
        loop {
            if self.up(i) == Some(up) {
                return since.elapsed();
            }
            if since.elapsed() > bound + Duration::from_secs(3) {
                panic!(
                    "real {i} not {} after {:?} (bound {bound:?}); report: {}",
                    if up { "up" } else { "down" },
                    since.elapsed(),
                    serde_json::to_string(&self.engine.snapshot()).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Waits for the real to go down, asserts the bound, prints the time.
    async fn assert_down_within(&self, what: &str, i: usize, since: Instant, bound: Duration) -> Duration {
        let took = self.wait_state(i, false, since, bound).await;
        eprintln!("{what}: down after {:.0} ms (bound {:.0} ms)", took.as_secs_f64() * 1e3, bound.as_secs_f64() * 1e3);
        assert!(took <= bound, "{what}: down after {took:?}, bound {bound:?}");
        took
    }

    /// Waits for the real to come back, asserts the bound, prints the time.
    async fn assert_up_within(&self, what: &str, i: usize, since: Instant, bound: Duration) -> Duration {
        let took = self.wait_state(i, true, since, bound).await;
        eprintln!("{what}: up after {:.0} ms (bound {:.0} ms)", took.as_secs_f64() * 1e3, bound.as_secs_f64() * 1e3);
        assert!(took <= bound, "{what}: up after {took:?}, bound {bound:?}");
        took
    }
}

/// Polls `cond` for up to 3 s.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < Duration::from_secs(3), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

async fn stop(task: JoinHandle<()>) {
    task.abort();
    let _ = task.await;
}

// ---------------------------------------------------------------- servers

/// What the test HTTP server answers.
const OK: u8 = 0;
const ERROR_500: u8 = 1;
const OTHER_BODY: u8 = 2;
const MUTE: u8 = 3;
const BODY: &str = "hello";
/// MD5 of "hello".
const BODY_MD5: &str = "5d41402abc4b2a76b9719d911017c592";

/// A minimal HTTP/1.x server: answers each request per `mode`, records the
/// `Host` headers.
async fn serve_http<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, mode: Arc<AtomicU8>, hosts: Arc<Mutex<Vec<String>>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let text = String::from_utf8_lossy(&buf).to_string();
    if let Some(host) = text.lines().find_map(|l| l.strip_prefix("Host: ")) {
        hosts.lock().push(host.trim().to_owned());
    }
    if mode.load(Ordering::SeqCst) == MUTE {
        tokio::time::sleep(Duration::from_secs(10)).await;
        return;
    }
    let (status, body) = match mode.load(Ordering::SeqCst) {
        OK => ("200 OK", BODY),
        ERROR_500 => ("500 Internal Server Error", "oops"),
        _ => ("200 OK", "HELLO"),
    };
    let response = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
    let _ = s.write_all(response.as_bytes()).await;
    let _ = s.shutdown().await;
}

struct HttpServer {
    port: u16,
    mode: Arc<AtomicU8>,
    hosts: Arc<Mutex<Vec<String>>>,
    /// SNI names seen (TLS only).
    sni: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl HttpServer {
    /// Plain HTTP when `tls` is None.
    async fn start(tls: Option<Arc<rustls::ServerConfig>>) -> HttpServer {
        let listener = TcpListener::bind((LOCALHOST, 0)).await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let mode = Arc::new(AtomicU8::new(OK));
        let hosts = Arc::new(Mutex::new(Vec::new()));
        let sni = Arc::new(Mutex::new(Vec::new()));
        let (m, h, n) = (mode.clone(), hosts.clone(), sni.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let (m, h, n) = (m.clone(), h.clone(), n.clone());
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        None => serve_http(stream, m, h).await,
                        Some(config) => {
                            let Ok(tls) = tokio_rustls::TlsAcceptor::from(config).accept(stream).await else { return };
                            if let Some(name) = tls.get_ref().1.server_name() {
                                n.lock().push(name.to_owned());
                            }
                            serve_http(tls, m, h).await
                        }
                    }
                });
            }
        });
        HttpServer { port, mode, hosts, sni, task }
    }

    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }
}

/// A TLS server config with a fresh self-signed certificate for www.example.test.
fn tls_config() -> Arc<rustls::ServerConfig> {
    let ck = rcgen::generate_simple_self_signed(vec!["www.example.test".to_owned()]).expect("certificate");
    let cert = rustls::pki_types::CertificateDer::from(ck.cert.der().to_vec());
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(ck.key_pair.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .expect("server config");
    Arc::new(config)
}

/// A UDP echo server on `port` (0: any).
async fn udp_echo(port: u16) -> (u16, JoinHandle<()>) {
    let socket = UdpSocket::bind((LOCALHOST, port)).await.expect("bind udp");
    let port = socket.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let _ = socket.send_to(&buf[..n], from).await;
        }
    });
    (port, task)
}

/// The name the test DNS responder knows.
const DNS_NAME: &str = "www.example.test";

/// Answers a DNS query: one A record (127.0.0.1) for `DNS_NAME`, NXDOMAIN
/// for other names or types. Encoded by hand.
fn dns_answer(query: &[u8]) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    // Question: labels from offset 12.
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*query.get(i)?);
        i += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(query.get(i..i + len)?).to_string());
        i += len;
    }
    let question_end = i + 4;
    let qtype = u16::from_be_bytes([*query.get(i)?, *query.get(i + 1)?]);
    let known = labels.join(".") == DNS_NAME && qtype == 1;
    let mut out = Vec::new();
    out.extend_from_slice(&query[0..2]); // id
    out.extend_from_slice(&[0x81, if known { 0x80 } else { 0x83 }]); // QR RD RA, RCODE
    out.extend_from_slice(&[0, 1, 0, u8::from(known), 0, 0, 0, 0]);
    out.extend_from_slice(query.get(12..question_end)?);
    if known {
        out.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 1]);
    }
    Some(out)
}

/// A DNS responder on `port` (0: any).
async fn dns_server(port: u16) -> (u16, JoinHandle<()>) {
    let socket = UdpSocket::bind((LOCALHOST, port)).await.expect("bind dns");
    let port = socket.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            if let Some(answer) = dns_answer(&buf[..n]) {
                let _ = socket.send_to(&answer, from).await;
            }
        }
    });
    (port, task)
}

fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

// ---------------------------------------------------------------- checkers

#[tokio::test]
async fn tcp_check_removes_and_restores_a_stopped_server() {
    let listener = TcpListener::bind((LOCALHOST, 0)).await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let h = Harness::start(config("tcp", health(), vec![real(port, vec![check(CheckKind::TcpCheck)])]));
    h.wait_rounds(0, 1).await;
    assert_eq!(h.up(0), Some(true));
    assert_eq!(h.effective(), vec![(LOCALHOST, port, 1)]);

    let t0 = Instant::now();
    drop(listener);
    h.assert_down_within("TCP_CHECK", 0, t0, down_bound(CONNECT_TIMEOUT)).await;
    assert_eq!(h.effective(), vec![], "a down real leaves the pool");

    let listener = TcpListener::bind((LOCALHOST, port)).await.expect("rebind");
    let t1 = Instant::now();
    h.assert_up_within("TCP_CHECK", 0, t1, up_bound(CONNECT_TIMEOUT)).await;
    assert_eq!(h.effective(), vec![(LOCALHOST, port, 1)]);
    drop(listener);
}

#[tokio::test]
async fn inhibit_on_failure_keeps_the_server_at_weight_zero() {
    let listener = TcpListener::bind((LOCALHOST, 0)).await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let mut c = config("tcp", health(), vec![Real { weight: 5, ..real(port, vec![check(CheckKind::TcpCheck)]) }]);
    c.services[0].reals[0].health.inhibit_on_failure = true;
    let h = Harness::start(c);
    h.wait_rounds(0, 1).await;
    assert_eq!(h.effective(), vec![(LOCALHOST, port, 5)]);
    let t0 = Instant::now();
    drop(listener);
    h.assert_down_within("TCP_CHECK inhibit", 0, t0, down_bound(CONNECT_TIMEOUT)).await;
    assert_eq!(h.effective(), vec![(LOCALHOST, port, 0)]);
    let _listener = TcpListener::bind((LOCALHOST, port)).await.expect("rebind");
    h.assert_up_within("TCP_CHECK inhibit", 0, Instant::now(), up_bound(CONNECT_TIMEOUT)).await;
    assert_eq!(h.effective(), vec![(LOCALHOST, port, 5)]);
}

fn url(digest: Option<&str>) -> UrlCheck {
    UrlCheck { path: "/health".into(), status_code: vec![200], digest: digest.map(str::to_owned) }
}

#[tokio::test]
async fn http_get_follows_status_and_digest() {
    let server = HttpServer::start(None).await;
    let kind = CheckKind::HttpGet { urls: vec![url(Some(BODY_MD5))], virtualhost: Some("www.example.test".into()) };
    let h = Harness::start(config("tcp", health(), vec![real(server.port, vec![check(kind)])]));
    h.wait_rounds(0, 1).await;
    assert_eq!(h.up(0), Some(true), "{:?}", h.engine.snapshot());
    assert_eq!(server.hosts.lock().first().map(String::as_str), Some("www.example.test"));

    let t0 = Instant::now();
    server.set(ERROR_500);
    h.assert_down_within("HTTP_GET 500", 0, t0, down_bound(2.0 * CONNECT_TIMEOUT)).await;
    assert_eq!(h.effective(), vec![]);
    let report = h.engine.snapshot();
    assert!(report.reals[0].last_error.as_deref().unwrap_or_default().contains("status 500"), "{report:?}");

    server.set(OK);
    h.assert_up_within("HTTP_GET", 0, Instant::now(), up_bound(2.0 * CONNECT_TIMEOUT)).await;
    assert_eq!(h.effective(), vec![(LOCALHOST, server.port, 1)]);

    let t1 = Instant::now();
    server.set(OTHER_BODY);
    h.assert_down_within("HTTP_GET digest", 0, t1, down_bound(2.0 * CONNECT_TIMEOUT)).await;
    let report = h.engine.snapshot();
    assert!(report.reals[0].last_error.as_deref().unwrap_or_default().contains("MD5"), "{report:?}");

    server.set(OK);
    h.assert_up_within("HTTP_GET", 0, Instant::now(), up_bound(2.0 * CONNECT_TIMEOUT)).await;

    // The listener stopped altogether.
    let t2 = Instant::now();
    stop(server.task).await;
    h.assert_down_within("HTTP_GET stopped", 0, t2, down_bound(2.0 * CONNECT_TIMEOUT)).await;
}

#[tokio::test]
async fn http_get_times_out_on_a_mute_server() {
    let server = HttpServer::start(None).await;
    let kind = CheckKind::HttpGet { urls: vec![url(None)], virtualhost: None };
    let h = Harness::start(config("tcp", health(), vec![real(server.port, vec![check(kind)])]));
    h.wait_rounds(0, 1).await;
    assert_eq!(h.up(0), Some(true));
    let t0 = Instant::now();
    server.set(MUTE);
    let took = h.assert_down_within("HTTP_GET mute", 0, t0, down_bound(2.0 * CONNECT_TIMEOUT)).await;
    // Two attempts ran into the response timeout.
    assert!(took >= Duration::from_secs_f64(2.0 * CONNECT_TIMEOUT + DELAY_BEFORE_RETRY), "{took:?}");
    let report = h.engine.snapshot();
    assert!(report.reals[0].last_error.as_deref().unwrap_or_default().contains("response"), "{report:?}");
    server.set(OK);
    h.assert_up_within("HTTP_GET mute", 0, Instant::now(), up_bound(2.0 * CONNECT_TIMEOUT)).await;
}

#[tokio::test]
async fn http_get_host_header_defaults_to_the_address() {
    let server = HttpServer::start(None).await;
    let kind = CheckKind::HttpGet { urls: vec![url(None)], virtualhost: None };
    let h = Harness::start(config("tcp", health(), vec![real(server.port, vec![check(kind)])]));
    h.wait_rounds(0, 1).await;
    assert_eq!(h.up(0), Some(true));
    assert_eq!(server.hosts.lock().first().cloned(), Some(format!("127.0.0.1:{}", server.port)));
}

#[tokio::test]
async fn ssl_get_over_tls_without_verification() {
    let server = HttpServer::start(Some(tls_config())).await;
    let kind = CheckKind::SslGet { urls: vec![url(Some(BODY_MD5))], virtualhost: Some("www.example.test".into()) };
    let h = Harness::start(config("tcp", health(), vec![real(server.port, vec![check(kind)])]));
    h.wait_rounds(0, 1).await;
    assert_eq!(h.up(0), Some(true), "{:?}", h.engine.snapshot());
    assert_eq!(server.sni.lock().first().map(String::as_str), Some("www.example.test"), "SNI from virtualhost");
    assert_eq!(server.hosts.lock().first().map(String::as_str), Some("www.example.test"));

    let t0 = Instant::now();
    server.set(ERROR_500);
    h.assert_down_within("SSL_GET 500", 0, t0, down_bound(2.0 * CONNECT_TIMEOUT)).await;
    assert_eq!(h.effective(), vec![]);

    server.set(OK);
    h.assert_up_within("SSL_GET", 0, Instant::now(), up_bound(2.0 * CONNECT_TIMEOUT)).await;
    assert_eq!(h.effective(), vec![(LOCALHOST, server.port, 1)]);

    let t1 = Instant::now();
    stop(server.task).await;
    h.assert_down_within("SSL_GET stopped", 0, t1, down_bound(2.0 * CONNECT_TIMEOUT)).await;
}

#[tokio::test]
async fn ssl_get_against_a_plain_http_server_fails() {
    let server = HttpServer::start(None).await;
    let kind = CheckKind::SslGet { urls: vec![url(None)], virtualhost: None };
    // The server waits for an HTTP request that never comes: the handshake times out.
    let r = rvs_control::health::run_check(&check(kind), LOCALHOST.into(), server.port).await;
    assert!(matches!(r, Err(rvs_control::health::CheckError::Tls(_) | rvs_control::health::CheckError::Timeout { .. })), "{r:?}");
    // A server that answers in plain text: a TLS error.
    let kind = CheckKind::SslGet { urls: vec![url(None)], virtualhost: None };
    let plain = TcpListener::bind((LOCALHOST, 0)).await.expect("bind");
    let port = plain.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = plain.accept().await {
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n").await;
        }
    });
    let r = rvs_control::health::run_check(&check(kind), LOCALHOST.into(), port).await;
    assert!(matches!(r, Err(rvs_control::health::CheckError::Tls(_))), "{r:?}");
    stop(task).await;
}

fn udp_kind(require_reply: bool, reply: Option<&str>) -> CheckKind {
    CheckKind::UdpCheck { payload: Some("70696e67".into()), require_reply, reply: reply.map(str::to_owned) }
}

#[tokio::test]
async fn udp_check_with_required_reply() {
    let (port, echo) = udp_echo(0).await;
    let h = Harness::start(config("udp", health(), vec![real(port, vec![check(udp_kind(true, Some("7069")))])]));
    h.wait_rounds(0, 1).await;
    assert_eq!(h.up(0), Some(true), "{:?}", h.engine.snapshot());

    let t0 = Instant::now();
    stop(echo).await;
    h.assert_down_within("UDP_CHECK", 0, t0, down_bound(CONNECT_TIMEOUT)).await;
    assert_eq!(h.effective(), vec![]);

    let (_, echo) = udp_echo(port).await;
    h.assert_up_within("UDP_CHECK", 0, Instant::now(), up_bound(CONNECT_TIMEOUT)).await;
    assert_eq!(h.effective(), vec![(LOCALHOST, port, 1)]);
    stop(echo).await;

    // A reply that does not start with `reply` fails.
    let (port2, echo2) = udp_echo(0).await;
    let r = rvs_control::health::run_check(&check(udp_kind(true, Some("ffff"))), LOCALHOST.into(), port2).await;
    assert!(r.is_err(), "{r:?}");
    stop(echo2).await;
}

#[tokio::test]
async fn udp_check_with_required_reply_times_out_on_a_mute_server() {
    let (port, echo) = udp_echo(0).await;
    let h = Harness::start(config("udp", health(), vec![real(port, vec![check(udp_kind(true, None))])]));
    h.wait_rounds(0, 1).await;
    assert_eq!(h.up(0), Some(true));
    // Replace the echo server with a socket that never answers.
    stop(echo).await;
    let mute = UdpSocket::bind((LOCALHOST, port)).await.expect("rebind");
    let t0 = Instant::now();
    let took = h.assert_down_within("UDP_CHECK mute", 0, t0, down_bound(CONNECT_TIMEOUT)).await;
    assert!(took >= Duration::from_secs_f64(2.0 * CONNECT_TIMEOUT + DELAY_BEFORE_RETRY), "{took:?}");
    drop(mute);
}

#[tokio::test]
async fn udp_check_without_reply_fails_only_on_port_unreachable() {
    // A socket that never answers: silence passes.
    let silent = UdpSocket::bind((LOCALHOST, 0)).await.expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let h = Harness::start(config("udp", health(), vec![real(port, vec![check(udp_kind(false, None))])]));
    h.wait_rounds(0, 1).await;
    assert_eq!(h.up(0), Some(true), "{:?}", h.engine.snapshot());
    // Closed port: ICMP port unreachable, ECONNREFUSED.
    let t0 = Instant::now();
    drop(silent);
    h.assert_down_within("UDP_CHECK no reply", 0, t0, down_bound(CONNECT_TIMEOUT)).await;
    let report = h.engine.snapshot();
    assert!(report.reals[0].last_error.as_deref().unwrap_or_default().contains("refused"), "{report:?}");
    let _silent = UdpSocket::bind((LOCALHOST, port)).await.expect("rebind");
    h.assert_up_within("UDP_CHECK no reply", 0, Instant::now(), up_bound(CONNECT_TIMEOUT)).await;
}

#[tokio::test]
async fn dns_check_against_a_responder() {
    let (port, dns) = dns_server(0).await;
    let mut c = check(CheckKind::DnsCheck { query_type: "A".into(), name: DNS_NAME.into() });
    c.connect_port = Some(port);
    let h = Harness::start(config("udp", health(), vec![real(53, vec![c])]));
    h.wait_rounds(0, 1).await;
    assert_eq!(h.up(0), Some(true), "{:?}", h.engine.snapshot());

    let t0 = Instant::now();
    stop(dns).await;
    h.assert_down_within("DNS_CHECK", 0, t0, down_bound(CONNECT_TIMEOUT)).await;
    assert_eq!(h.effective(), vec![]);

    let (_, dns) = dns_server(port).await;
    h.assert_up_within("DNS_CHECK", 0, Instant::now(), up_bound(CONNECT_TIMEOUT)).await;
    assert_eq!(h.effective(), vec![(LOCALHOST, 53, 1)]);

    // NXDOMAIN and an answerless type fail.
    for (qtype, name) in [("A", "nope.example.test"), ("MX", DNS_NAME)] {
        let mut c = check(CheckKind::DnsCheck { query_type: qtype.into(), name: name.into() });
        c.connect_port = Some(port);
        let r = rvs_control::health::run_check(&c, LOCALHOST.into(), 53).await;
        assert!(r.is_err(), "{qtype} {name}: {r:?}");
    }
    stop(dns).await;
}

/// A MISC_CHECK whose script exits with the number in `file`.
fn misc_kind(file: &Path, dynamic: bool) -> CheckKind {
    CheckKind::MiscCheck { path: format!("exit $(cat '{}')", file.display()), timeout: Some(1.0), dynamic }
}

#[tokio::test]
async fn misc_check_follows_the_exit_code() {
    let dir = temp_dir();
    let file = dir.path().join("code");
    std::fs::write(&file, "0").expect("write");
    let h = Harness::start(config("tcp", health(), vec![real(80, vec![check(misc_kind(&file, false))])]));
    h.wait_rounds(0, 1).await;
    assert_eq!(h.up(0), Some(true), "{:?}", h.engine.snapshot());

    let t0 = Instant::now();
    std::fs::write(&file, "1").expect("write");
    h.assert_down_within("MISC_CHECK", 0, t0, down_bound(1.0)).await;
    assert_eq!(h.effective(), vec![]);

    std::fs::write(&file, "0").expect("write");
    h.assert_up_within("MISC_CHECK", 0, Instant::now(), up_bound(1.0)).await;
    assert_eq!(h.effective(), vec![(LOCALHOST, 80, 1)]);
}

#[tokio::test]
async fn misc_dynamic_sets_the_weight() {
    let dir = temp_dir();
    let file = dir.path().join("code");
    std::fs::write(&file, "7").expect("write");
    let c = config("tcp", health(), vec![Real { weight: 3, ..real(80, vec![check(misc_kind(&file, true))]) }]);
    let mut h = Harness::start(c);
    h.wait_rounds(0, 1).await;
    assert_eq!(h.effective(), vec![(LOCALHOST, 80, 5)], "exit 7 = weight 5");
    let before = *h.changes.borrow_and_update();

    std::fs::write(&file, "0").expect("write");
    eventually("configured weight back", || h.effective() == vec![(LOCALHOST, 80, 3)]).await;
    assert!(*h.changes.borrow() > before, "a weight change bumps the counter");

    std::fs::write(&file, "2").expect("write");
    eventually("weight 0", || h.effective() == vec![(LOCALHOST, 80, 0)]).await;
    assert_eq!(h.up(0), Some(true));

    let t0 = Instant::now();
    std::fs::write(&file, "1").expect("write");
    h.assert_down_within("MISC_CHECK dynamic", 0, t0, down_bound(1.0)).await;
    assert_eq!(h.effective(), vec![]);
}

// ---------------------------------------------------------------- effects

/// The JSON shape: a real server's `health` object holds its checks.
#[tokio::test]
async fn json_config_with_checks() {
    let listener = TcpListener::bind((LOCALHOST, 0)).await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let c = Config::from_json(&format!(
        r#"{{"ports": [{{"name": "p", "device": "d", "addresses": ["10.255.0.1/24"]}}],
            "services": [{{"protocol": "tcp", "vip": "10.0.0.100", "port": 80, "forward": "nat",
              "health": {{"delay_loop": 0.2, "quorum": 1}},
              "reals": [{{"address": "127.0.0.1", "port": {port}, "weight": 2,
                          "health": {{"inhibit_on_failure": true,
                                      "checks": [{{"type": "tcp_check", "connect_timeout": 0.2, "retry": 1,
                                                   "delay_before_retry": 0.1}}]}}}}]}}]}}"#
    ))
    .expect("config with checks");
    assert_eq!(c.services[0].reals[0].health.checks.len(), 1);
    assert!(c.services[0].reals[0].health.inhibit_on_failure);
    let h = Harness::start(c);
    h.wait_rounds(0, 1).await;
    assert_eq!(h.effective(), vec![(LOCALHOST, port, 2)]);
    drop(listener);
    h.wait_state(0, false, Instant::now(), down_bound(CONNECT_TIMEOUT)).await;
    assert_eq!(h.effective(), vec![(LOCALHOST, port, 0)]);
}

#[tokio::test]
async fn quorum_loss_switches_to_the_sorry_server_and_back_with_hysteresis() {
    let mut listeners = Vec::new();
    let mut ports = Vec::new();
    for _ in 0..3 {
        let l = TcpListener::bind((LOCALHOST, 0)).await.expect("bind");
        ports.push(l.local_addr().expect("addr").port());
        listeners.push(Some(l));
    }
    let dir = temp_dir();
    let log = dir.path().join("quorum.log");
    // Weights 2, 1, 1 (sum 4); quorum 3, hysteresis 1: lost below 2, regained at 4.
    let health = ServiceHealth {
        quorum: 3,
        hysteresis: 1,
        sorry_server: Some(SorryServer { address: Ipv4Addr::new(10, 255, 0, 99).into(), port: Some(8080), forward: None }),
        quorum_up: Some(format!("echo up >> '{}'", log.display())),
        quorum_down: Some(format!("echo down >> '{}'", log.display())),
        ..health()
    };
    let reals = ports.iter().zip([2, 1, 1]).map(|(p, w)| Real { weight: w, ..real(*p, vec![check(CheckKind::TcpCheck)]) }).collect();
    let h = Harness::start(config("tcp", health, reals));
    for i in 0..3 {
        h.wait_rounds(i, 1).await;
    }
    let all: Vec<_> = ports.iter().zip([2, 1, 1]).map(|(p, w)| (LOCALHOST, *p, w)).collect();
    assert_eq!(h.effective(), all);
    let sorry = vec![(Ipv4Addr::new(10, 255, 0, 99), 8080, 1)];

    // Real 0 (weight 2) stops: sum 2, not below 2: held.
    listeners[0] = None;
    h.wait_state(0, false, Instant::now(), down_bound(CONNECT_TIMEOUT)).await;
    assert_eq!(h.effective(), all[1..].to_vec());
    // Real 1 stops: sum 1: lost, the sorry server takes over.
    let t0 = Instant::now();
    listeners[1] = None;
    h.assert_down_within("quorum", 1, t0, down_bound(CONNECT_TIMEOUT)).await;
    assert_eq!(h.effective(), sorry);
    eventually("quorum_down ran", || read(&log) == "down\n").await;
    let report = h.engine.snapshot();
    assert!(report.services[0].sorry_server_active, "{report:?}");

    // Real 1 back: sum 2 < 4: hysteresis holds the sorry server.
    listeners[1] = Some(TcpListener::bind((LOCALHOST, ports[1])).await.expect("rebind"));
    h.wait_state(1, true, Instant::now(), up_bound(CONNECT_TIMEOUT)).await;
    let rounds = h.rounds(1);
    h.wait_rounds(1, rounds + 3).await;
    assert_eq!(h.effective(), sorry, "hysteresis: 2 is below quorum + hysteresis");
    assert_eq!(read(&log), "down\n");

    // Real 0 back: sum 4: regained, the reals return.
    listeners[0] = Some(TcpListener::bind((LOCALHOST, ports[0])).await.expect("rebind"));
    h.wait_state(0, true, Instant::now(), up_bound(CONNECT_TIMEOUT)).await;
    assert_eq!(h.effective(), all);
    eventually("quorum_up ran", || read(&log) == "down\nup\n").await;
}

#[tokio::test]
async fn notify_scripts_run_on_transitions() {
    let listener = TcpListener::bind((LOCALHOST, 0)).await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let dir = temp_dir();
    let log = dir.path().join("notify.log");
    let mut c = config("tcp", health(), vec![real(port, vec![check(CheckKind::TcpCheck)])]);
    c.services[0].reals[0].health.notify_up = Some(format!("echo up >> '{}'", log.display()));
    c.services[0].reals[0].health.notify_down = Some(format!("echo down >> '{}'", log.display()));
    let mut h = Harness::start(c);
    h.wait_rounds(0, 2).await;
    assert_eq!(read(&log), "", "no notifier while the state holds");
    assert_eq!(*h.changes.borrow_and_update(), 0);

    drop(listener);
    h.wait_state(0, false, Instant::now(), down_bound(CONNECT_TIMEOUT)).await;
    eventually("notify_down ran", || read(&log) == "down\n").await;
    assert!(h.changes.has_changed().expect("sender alive"), "a state change bumps the counter");
    let n = *h.changes.borrow_and_update();

    let _listener = TcpListener::bind((LOCALHOST, port)).await.expect("rebind");
    h.wait_state(0, true, Instant::now(), up_bound(CONNECT_TIMEOUT)).await;
    eventually("notify_up ran", || read(&log) == "down\nup\n").await;
    assert!(*h.changes.borrow() > n);
}

#[tokio::test]
async fn alpha_starts_down_until_the_first_success() {
    let listener = TcpListener::bind((LOCALHOST, 0)).await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let c = config("tcp", ServiceHealth { alpha: true, ..health() }, vec![real(port, vec![check(CheckKind::TcpCheck)])]);
    // Current-thread runtime: the task has not run yet.
    let h = Harness::start(c);
    assert_eq!(h.up(0), Some(false));
    assert_eq!(h.effective(), vec![]);
    h.wait_state(0, true, Instant::now(), up_bound(CONNECT_TIMEOUT)).await;
    assert_eq!(h.effective(), vec![(LOCALHOST, port, 1)]);
    drop(listener);
}

#[tokio::test]
async fn connect_ip_port_and_bind_ip_are_honoured() {
    let listener = TcpListener::bind((LOCALHOST, 0)).await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let peers = Arc::new(Mutex::new(Vec::<SocketAddr>::new()));
    let p = peers.clone();
    let server = tokio::spawn(async move {
        while let Ok((_, peer)) = listener.accept().await {
            p.lock().push(peer);
        }
    });
    let mut c = check(CheckKind::TcpCheck);
    c.connect_ip = Some(LOCALHOST.into());
    c.connect_port = Some(port);
    c.bind_ip = Some(Ipv4Addr::new(127, 0, 0, 2).into());
    // The real itself (127.0.0.3:80) has nothing listening.
    let h = Harness::start(config("tcp", health(), vec![Real { address: Ipv4Addr::new(127, 0, 0, 3), ..real(80, vec![c]) }]));
    h.wait_rounds(0, 1).await;
    assert_eq!(h.up(0), Some(true), "{:?}", h.engine.snapshot());
    eventually("a connection from 127.0.0.2", || peers.lock().iter().any(|a| a.ip() == Ipv4Addr::new(127, 0, 0, 2))).await;
    stop(server).await;
}

#[tokio::test]
async fn reconfigure_keeps_unchanged_reals_and_follows_changes() {
    let a = TcpListener::bind((LOCALHOST, 0)).await.expect("bind");
    let pa = a.local_addr().expect("addr").port();
    let b = TcpListener::bind((LOCALHOST, 0)).await.expect("bind");
    let pb = b.local_addr().expect("addr").port();
    let c = TcpListener::bind((LOCALHOST, 0)).await.expect("bind");
    let pc = c.local_addr().expect("addr").port();
    let tcp = || vec![check(CheckKind::TcpCheck)];
    let mut h = Harness::start(config("tcp", health(), vec![real(pa, tcp()), real(pb, tcp())]));
    assert_eq!(h.engine.task_count(), 2);
    h.wait_rounds(0, 1).await;
    drop(a);
    h.wait_state(0, false, Instant::now(), down_bound(CONNECT_TIMEOUT)).await;

    // Same checks for A, new weight for B, C added: A stays down, C starts up.
    let mut next = config("tcp", health(), vec![real(pa, tcp()), Real { weight: 4, ..real(pb, tcp()) }, real(pc, tcp())]);
    h.engine.reconfigure(&next);
    h.config = next.clone();
    assert_eq!(h.engine.task_count(), 3);
    assert_eq!(h.up(0), Some(false), "state kept");
    assert_eq!(h.effective(), vec![(LOCALHOST, pb, 4), (LOCALHOST, pc, 1)]);
    h.wait_rounds(2, 1).await;

    // B removed: its task stops and its state goes.
    let key_b = h.key(1);
    next.services[0].reals.remove(1);
    h.engine.reconfigure(&next);
    h.config = next.clone();
    assert_eq!(h.engine.task_count(), 2);
    assert!(h.engine.state().lock().real(&key_b).is_none());
    assert_eq!(h.effective(), vec![(LOCALHOST, pc, 1)]);

    // A's checks change: its task restarts, its state (down) holds.
    next.services[0].reals[0].health.checks[0].connect_timeout = 0.3;
    h.engine.reconfigure(&next);
    assert_eq!(h.engine.task_count(), 2);
    assert_eq!(h.up(0), Some(false));
    let _a = TcpListener::bind((LOCALHOST, pa)).await.expect("rebind");
    h.wait_state(0, true, Instant::now(), up_bound(0.3)).await;
    assert_eq!(h.effective(), vec![(LOCALHOST, pa, 1), (LOCALHOST, pc, 1)]);

    // Everything removed.
    next.services.clear();
    h.engine.reconfigure(&next);
    assert_eq!(h.engine.task_count(), 0);
    drop((b, c));
}

#[tokio::test]
async fn snapshot_reports_state_error_and_times() {
    let listener = TcpListener::bind((LOCALHOST, 0)).await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let h = Harness::start(config("tcp", health(), vec![real(port, vec![check(CheckKind::TcpCheck)])]));
    h.wait_state(0, false, Instant::now(), down_bound(CONNECT_TIMEOUT)).await;
    let json = serde_json::to_value(h.engine.snapshot()).expect("json");
    let r = &json["reals"][0];
    assert_eq!(r["address"], "127.0.0.1");
    assert_eq!(r["port"], port);
    assert_eq!(r["state"], "down");
    assert_eq!(r["last_result"], "failure");
    assert_eq!(r["checks"][0], "TCP_CHECK");
    assert!(r["last_error"].as_str().unwrap_or_default().contains("refused"), "{r}");
    assert!(r["last_change"].as_f64().unwrap_or_default() > 1.0e9, "{r}");
    assert!(r["last_check"].as_f64().unwrap_or_default() > 1.0e9, "{r}");
    assert_eq!(json["services"][0]["quorum_state"], "lost");
    assert_eq!(json["services"][0]["weight_sum"], 0);
}

#[tokio::test]
async fn omega_runs_notify_down_at_shutdown() {
    let listener = TcpListener::bind((LOCALHOST, 0)).await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let dir = temp_dir();
    let log: PathBuf = dir.path().join("omega.log");
    let mut c = config("tcp", ServiceHealth { omega: true, ..health() }, vec![real(port, vec![check(CheckKind::TcpCheck)])]);
    c.services[0].reals[0].health.notify_down = Some(format!("echo down >> '{}'", log.display()));
    let mut h = Harness::start(c);
    h.wait_rounds(0, 1).await;
    h.engine.shutdown();
    assert_eq!(h.engine.task_count(), 0);
    eventually("omega notify_down ran", || read(&log) == "down\n").await;
    drop(listener);
}
