//! rvsd: the rvs load balancer daemon.
//!
//! `rvsd --config FILE` validates the JSON config, starts DPDK's EAL, opens the
//! ports (and their exception-path TAPs), launches one worker per configured
//! lcore, starts health checks, VRRP and connection sync when configured, and
//! serves the REST API on the management address until SIGINT/SIGTERM.
//! `rvsd --config BASE --keepalived FILE` takes services, VRRP and sync from a
//! keepalived.conf instead (BASE gives ports, EAL, API; changes made through the
//! API are then not written back). `--check-config` (alias `--check`) only
//! validates.
//!
//! Signals, as Keepalived: SIGHUP reads the config file(s) again and applies
//! them through the same validate → diff → atomic apply as `PUT /api/v1/config`
//! (nothing applied if invalid; VRRP, connections and health state kept);
//! SIGUSR1 writes a state dump (`--dump-dir`/rvsd.data), SIGUSR2 a statistics
//! dump (rvsd.stats); SIGTERM/SIGINT stop it (VRRP masters resign first; with
//! `bgp`, SIGTERM drains first: routes withdrawn, flows served for
//! `bgp.drain_grace`, then stop — see `rvs_control::cluster`).
//! Signals are caught from before EAL starts: none kills rvsd silently.
//! Under systemd (`Type=notify`) it reports READY once serving and feeds the
//! watchdog while every worker makes progress (see `rvs_control::systemd`).
//!
//! Exit codes: 0 success; 2 invalid JSON config, or connection sync without
//! its key, instance or address (nothing started); 10..=15 a keepalived.conf
//! error (see `rvs_control::keepalived::KeepalivedError::exit_code`); 3 DPDK
//! could not start (EAL, mempool, port), or cannot on this machine (the
//! pre-flight checks of `rvs_control::preflight`, also run by `--check-config`); 4 the API could not listen;
//! 5 VRRP, health checks or sync could not start; 1 anything else.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use crossbeam::channel::{bounded, Receiver};
use rvs_control::cli::RvsdArgs as Args;
use std::collections::HashMap;

use rvs_control::api::{build_effective, Overlay};
use rvs_control::appliance::HaOverlay;
use rvs_control::capture::{self, CaptureError, CaptureLimits, CaptureResult, CapturedFrame, Collector, FrameFilter, ServiceMatch};
use rvs_control::cluster::Cluster;
use rvs_control::events::{EventKind, EventLog, Severity};
use rvs_control::health::HealthEngine;
use rvs_control::sync::{SyncDaemon, SyncSettings};
use rvs_control::vrrp::{DataplaneLink, VrrpEngine, VrrpEvent};
use rvs_control::{check, preflight, router, statedump, systemd, ApiState, Config, Dataplane, PublishReport};
use rvs_dataplane::link::LinkStates;
use rvs_dataplane::process::{install_worker, Processor};
use rvs_dataplane::snapshot::Snapshot;
use rvs_dataplane::stats::{ConnFilter, ConnInfo, ConnPager, ServiceStats, SharedCounters, CONN_SCAN_SLOTS};
use rvs_dataplane::wire::MacAddr;
use rvs_dpdk::capture::{CaptureTap, Session};
use rvs_dpdk::worker::{self, WorkerContext, WorkerLink, WorkerRequest};
use rvs_dpdk::{self as dpdk, Eal, Mempool, Port};
use serde_json::json;
use tokio::signal::unix::{signal, Signal, SignalKind};

/// How long a config change may take to reach every worker before the API says so.
const ADOPT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a worker may take to answer a question (stats, connection list).
const ASK_TIMEOUT: Duration = Duration::from_secs(2);
/// rx/tx descriptors per queue (adjusted to the device's limits).
const RING_SIZE: u16 = 1024;
/// How often the link monitor reads every port's carrier.
const LINK_POLL: Duration = Duration::from_millis(20);
/// Captured frames waiting per worker for the control thread (`GET /api/v1/capture`).
const CAPTURE_RING: usize = 4096;
/// How often a capture drains the workers' rings.
const CAPTURE_POLL: Duration = Duration::from_millis(5);

fn main() -> ExitCode {
    systemd::init_logging();
    let args = Args::parse();
    if args.check {
        return check::check_config("rvsd", &args.config, args.keepalived.as_deref());
    }
    let config = match check::load_for_start(&args.config, args.keepalived.as_deref()) {
        Ok(c) => c,
        Err((message, code)) => {
            systemd::print_error("rvsd", message);
            return ExitCode::from(code);
        }
    };
    // From here on every signal is caught (queued until the daemon serves):
    // a SIGHUP from a reload that raced the start must not kill rvsd.
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            systemd::print_error("rvsd", format_args!("cannot start the control plane's threads: {e}"));
            return ExitCode::from(1);
        }
    };
    let signals = match runtime.block_on(async { Signals::install() }) {
        Ok(s) => s,
        Err(e) => {
            systemd::print_error("rvsd", format_args!("cannot catch signals: {e}"));
            return ExitCode::from(1);
        }
    };
    let _pid_file = match args.pid_file.as_deref().map(rvs_control::pidfile::PidFile::create).transpose() {
        Ok(p) => p,
        Err(e) => {
            systemd::print_error("rvsd", e);
            return ExitCode::from(1);
        }
    };
    if !check::preflight_ok("rvsd", &config, preflight::When::Start) {
        return ExitCode::from(3);
    }
    // A keepalived.conf is the operator's source of truth: API changes are not written back.
    let persist = if args.keepalived.is_some() { None } else { Some(args.config.clone()) };
    let (config_file, keepalived_file) = (args.config.clone(), args.keepalived.clone());
    let daemon = Daemon {
        runtime,
        signals,
        reload: Box::new(move || check::load_for_start(&config_file, keepalived_file.as_deref()).map_err(|(m, _)| m)),
        dump_dir: args.dump_dir.clone(),
    };
    // The management address is taken before anything touches the wire: a
    // typo in api.listen must not make VRRP go MASTER and resign on the LAN.
    let listener = match bind_api(config.api.listen) {
        Ok(l) => l,
        Err(e) => {
            systemd::print_error("rvsd", format_args!("the REST API cannot listen on {}: {e} (api.listen)", config.api.listen));
            return ExitCode::from(4);
        }
    };
    match run(config, persist, listener, daemon) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Dpdk(e)) => {
            systemd::print_error("rvsd", format_args!("DPDK could not start: {e}"));
            ExitCode::from(3)
        }
        Err(Failure::Listen(addr, e)) => {
            systemd::print_error("rvsd", format_args!("the REST API cannot listen on {addr}: {e}"));
            ExitCode::from(4)
        }
        Err(Failure::Ha(e)) => {
            systemd::print_error("rvsd", e);
            ExitCode::from(5)
        }
        Err(Failure::Other(e)) => {
            systemd::print_error("rvsd", e);
            ExitCode::from(1)
        }
    }
}

/// Runs the pre-flight checks, printing one line per problem; true if none.
/// What the daemon needs besides its config: the control plane's runtime, the
/// signals caught since start-up, how to read the config again (SIGHUP) and
/// where dumps go.
struct Daemon {
    runtime: tokio::runtime::Runtime,
    signals: Signals,
    reload: Box<dyn Fn() -> Result<Config, String> + Send + Sync>,
    dump_dir: PathBuf,
}

/// The signals rvsd handles, registered before anything else starts.
struct Signals {
    hangup: Signal,
    user1: Signal,
    user2: Signal,
    terminate: Signal,
    interrupt: Signal,
}

impl Signals {
    /// Must run inside the tokio runtime.
    fn install() -> std::io::Result<Self> {
        Ok(Signals {
            hangup: signal(SignalKind::hangup())?,
            user1: signal(SignalKind::user_defined1())?,
            user2: signal(SignalKind::user_defined2())?,
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }
}

enum Failure {
    Dpdk(dpdk::DpdkError),
    Listen(SocketAddr, std::io::Error),
    Ha(String),
    Other(String),
}

impl From<dpdk::DpdkError> for Failure {
    fn from(e: dpdk::DpdkError) -> Self {
        Failure::Dpdk(e)
    }
}

/// Binds the REST API's socket (non-blocking, for tokio to adopt later).
fn bind_api(listen: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(listen)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// EAL arguments: lcores from the config, one `--vdev` (or `-a` for a PCI
/// device) per port, then the operator's extra arguments.
fn eal_args(config: &Config) -> Vec<String> {
    let mut lcores = vec![config.main_lcore];
    lcores.extend(&config.workers);
    let mut args = vec!["rvsd".to_owned()];
    // An operator-given lcore layout (`--lcores`, e.g. to map more workers than
    // CPUs: `--lcores 0@0,1@1,2@1`) replaces the plain list.
    let custom = config.eal.iter().any(|a| a == "-l" || a == "--lcores" || a.starts_with("--lcores="));
    if !custom {
        args.push("-l".to_owned());
        args.push(lcores.iter().map(u32::to_string).collect::<Vec<_>>().join(","));
    }
    args.push("--main-lcore".to_owned());
    args.push(config.main_lcore.to_string());
    for (i, port) in config.ports.iter().enumerate() {
        if port.device.starts_with("net_") {
            args.push("--vdev".to_owned());
        } else {
            args.push("-a".to_owned());
        }
        args.push(port.device.clone());
        if let Some(tap) = &port.tap {
            args.push("--vdev".to_owned());
            args.push(format!("{},iface={tap}", tap_device(i)));
        }
    }
    args.extend(config.eal.iter().cloned());
    args
}

/// Why `dpdk-dumpcap` cannot attach to an rvsd started with the EAL
/// arguments `eal` (None: it can, given huge pages).
fn pdump_unavailable(eal: &[String], hugepages: bool) -> Option<&'static str> {
    if !hugepages || eal.iter().any(|a| a == "--no-huge") {
        return Some("EAL runs without huge pages (`--no-huge` in `eal`, or none reserved)");
    }
    if eal.iter().any(|a| a == "--in-memory") {
        return Some("`--in-memory` in `eal` keeps the EAL state private");
    }
    if eal.iter().any(|a| a == "--no-shconf") {
        return Some("`--no-shconf` in `eal` keeps the EAL state private");
    }
    None
}

/// Starts DPDK's packet-capture server when other processes can attach
/// (huge pages, shared EAL state), saying so either way.
fn start_pdump(eal: &Eal, args: &[String]) -> Option<dpdk::Pdump> {
    let prefix = args
        .iter()
        .position(|a| a == "--file-prefix")
        .and_then(|i| args.get(i + 1).cloned())
        .or_else(|| args.iter().find_map(|a| a.strip_prefix("--file-prefix=").map(str::to_owned)))
        .unwrap_or_else(|| "rte".to_owned());
    if let Some(why) = pdump_unavailable(args, Eal::has_hugepages()) {
        tracing::info!(
            "dpdk-dumpcap cannot attach to this rvsd: {why}; it needs huge pages and shared EAL state (eal without \
             --no-huge, --in-memory, --no-shconf). GET /api/v1/capture works regardless"
        );
        return None;
    }
    match eal.start_pdump() {
        Ok(p) => {
            tracing::info!(file_prefix = %prefix, "packet capture server started: `dpdk-dumpcap --file-prefix={prefix} -i <port>` attaches");
            Some(p)
        }
        Err(e) => {
            tracing::warn!(error = %e, "dpdk-dumpcap cannot attach to this rvsd");
            None
        }
    }
}

/// The DPDK device name of port `i`'s exception-path TAP.
fn tap_device(i: usize) -> String {
    format!("net_tap{i}")
}

/// Gives the kernel side of a port's TAP the port's MAC and addresses (and the
/// routes through that port), so the kernel's packets leave with the
/// appliance's identity. Uses iproute2.
fn configure_tap(tap: &str, mac: MacAddr, port: &rvs_control::PortConfig, routes: &[rvs_control::RouteConfig]) -> Result<(), String> {
    let run = |args: &[&str]| -> Result<(), String> {
        let out = std::process::Command::new("ip")
            .args(args)
            .output()
            .map_err(|e| format!("running `ip {}`: {e} (is iproute2 installed?)", args.join(" ")))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("`ip {}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
        }
    };
    for (key, value) in tap_ipv6_sysctls(port) {
        let path = format!("/proc/sys/net/ipv6/conf/{tap}/{key}");
        if let Err(e) = std::fs::write(&path, value) {
            tracing::warn!(%path, error = %e, "could not set the TAP's IPv6 setting");
        }
    }
    run(&["link", "set", "dev", tap, "address", &mac.to_string()])?;
    run(&["link", "set", "dev", tap, "mtu", &port.mtu.to_string()])?;
    for a in &port.addresses {
        run(&["addr", "replace", &a.to_string(), "dev", tap])?;
    }
    run(&["link", "set", "dev", tap, "up"])?;
    for r in routes.iter().filter(|r| r.port == port.name) {
        let prefix = r.prefix.to_string();
        let mut args = vec!["route", "replace", prefix.as_str()];
        let via = r.via.map(|v| v.to_string());
        if let Some(v) = &via {
            args.extend(["via", v.as_str()]);
        }
        args.extend(["dev", tap]);
        run(&args)?;
    }
    Ok(())
}

/// The IPv6 settings (`/proc/sys/net/ipv6/conf/TAP/KEY`, in order) of a port's
/// TAP. A port with IPv6 addresses gets IPv6 on its TAP: the kernel holds them
/// there and VRRPv3 over IPv6 sends from the TAP's link-local address. They are
/// usable at once (no duplicate address detection: the dataplane answers for
/// them on the wire) and the kernel takes no router advertisements and sends no
/// solicitations. A port without any keeps IPv6 off its TAP (no ND/MLD noise).
fn tap_ipv6_sysctls(port: &rvs_control::PortConfig) -> Vec<(&'static str, &'static str)> {
    if !port.addresses.iter().any(|a| a.addr.is_ipv6()) {
        return vec![("disable_ipv6", "1")];
    }
    vec![("accept_dad", "0"), ("dad_transmits", "0"), ("accept_ra", "0"), ("router_solicitations", "0"), ("disable_ipv6", "0")]
}

/// With `net_af_packet`, the kernel still receives the port's frames next to
/// the dataplane. Once rvsd gives the kernel the port's addresses (on the
/// exception-path TAP), it would answer ARP on the port and accept packets
/// for them a second time. A DPDK process owns its port: tell the kernel to
/// keep off it — never answer ARP there (`arp_ignore=8`), drop IP arriving
/// there by strict reverse-path filtering (no route points at it), no IPv6.
fn keep_kernel_off(device: &str) {
    let Some(iface) = rvs_control::config::af_packet_iface(device) else { return };
    for (key, value) in [("ipv4/conf/{}/arp_ignore", "8"), ("ipv4/conf/{}/rp_filter", "1"), ("ipv6/conf/{}/disable_ipv6", "1")] {
        let path = format!("/proc/sys/net/{}", key.replace("{}", iface));
        if let Err(e) = std::fs::write(&path, value) {
            tracing::warn!(%path, error = %e, "could not keep the kernel off the port");
        }
    }
}

/// Chooses how FULLNAT replies reach the worker owning their local port on
/// one port: rte_flow rules (LIP + `lport & (workers − 1)` → queue) when the
/// driver takes them and the worker count is a power of two, else software
/// redirection between workers. Returns the mode's description and the rules.
fn steer_fullnat_replies(port_id: u16, name: &str, config: &Config) -> (String, Vec<dpdk::FlowRule>) {
    let workers = config.workers.len();
    if workers == 1 {
        return ("single worker".to_owned(), Vec::new());
    }
    let lips: Vec<std::net::Ipv4Addr> = {
        // IPv4 local addresses: the steering rules match IPv4 headers.
        let v4s = config.services.iter().flat_map(|s| s.local_addresses.iter().filter_map(|&a| rvs_dataplane::snapshot::v4(a)));
        let mut v: Vec<_> = v4s.collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    if lips.is_empty() {
        return ("redirect (no FULLNAT local addresses)".to_owned(), Vec::new());
    }
    if !workers.is_power_of_two() {
        return (format!("redirect ({workers} workers: rte_flow steering needs a power of two)"), Vec::new());
    }
    let mask = (workers - 1) as u16;
    let mut rules = Vec::new();
    for lip in &lips {
        for proto in [6u8, 17] {
            for w in 0..workers as u16 {
                match dpdk::steer_dst_port(port_id, *lip, proto, mask, w, w, false) {
                    Ok(Some(rule)) => rules.push(rule),
                    Ok(None) => {}
                    Err(reason) => {
                        tracing::info!(port = name, %reason, "no rte_flow steering: FULLNAT replies are redirected between workers");
                        return (format!("redirect ({reason})"), Vec::new());
                    }
                }
            }
        }
    }
    tracing::info!(port = name, rules = rules.len(), "FULLNAT replies steered to their worker by rte_flow");
    ("rte_flow".to_owned(), rules)
}

/// The ethdev name EAL gives a device spec: the part before the first comma.
fn device_name(device: &str) -> &str {
    device.split(',').next().unwrap_or(device)
}

fn run(config: Config, config_path: Option<PathBuf>, listener: std::net::TcpListener, daemon: Daemon) -> Result<(), Failure> {
    let args = eal_args(&config);
    tracing::info!(eal = %args.join(" "), "starting EAL");
    let eal = Eal::init(&args)?;
    let pdump = start_pdump(&eal, &config.eal);
    let pool = Arc::new(Mempool::new("rvs_mbufs", config.mbufs, 256, Eal::socket_id())?);
    let queues = u16::try_from(config.workers.len()).map_err(|_| Failure::Other("too many workers".into()))?;
    let mut ports = Vec::new();
    for p in &config.ports {
        let port = Port::open(device_name(&p.device), queues, &pool, RING_SIZE, RING_SIZE)?;
        tracing::info!(port = %p.name, device = %p.device, mac = %port.mac(), queues, "port started");
        ports.push(port);
    }
    let port_macs: Vec<MacAddr> = ports.iter().map(Port::mac).collect();
    let mut taps: Vec<Option<Port>> = Vec::new();
    for (i, p) in config.ports.iter().enumerate() {
        keep_kernel_off(&p.device);
        let Some(tap) = &p.tap else {
            taps.push(None);
            continue;
        };
        let port = Port::open_plain(&tap_device(i), queues, &pool, RING_SIZE, RING_SIZE)?;
        configure_tap(tap, port_macs[i], p, &config.routes).map_err(Failure::Other)?;
        tracing::info!(port = %p.name, tap = %tap, "exception path to the kernel ready");
        taps.push(Some(port));
    }
    // Carrier of every port, read now (workers and VRRP start from the truth)
    // and then kept current by the link monitor.
    let port_links = Arc::new(LinkStates::new(ports.len()));
    for (i, (port, pc)) in ports.iter().zip(&config.ports).enumerate() {
        let up = port_carrier(port, &pc.device);
        port_links.set(i, up);
        if !up {
            tracing::warn!(port = %pc.name, "link is down at start");
        }
    }
    let steering: Vec<(String, Vec<dpdk::FlowRule>)> =
        ports.iter().zip(&config.ports).map(|(p, pc)| steer_fullnat_replies(p.id(), &pc.name, &config)).collect();
    let overlay = HaOverlay::new(&config);
    let overlay_dyn: Arc<dyn Overlay> = overlay.clone();
    let snapshot = Arc::new(build_effective(&config, Some(&overlay_dyn), &port_macs, 1).map_err(|e| Failure::Other(e.to_string()))?);

    let stop = Arc::new(AtomicBool::new(false));
    let (retired_tx, retired_rx) = bounded::<Arc<Snapshot>>(1024);
    let mut links = Vec::new();
    let mut sync_rx = Vec::new();
    let mut capture_taps = Vec::new();
    let mut redirect_queued = Vec::new();
    let mut rings = worker::mesh(config.workers.len()).into_iter();
    // Each worker reports the CPUs its lcore runs on, for keep_control_threads_off.
    let (cpus_tx, cpus_rx) = bounded::<Result<Vec<usize>, String>>(config.workers.len().max(1));
    for (id, &lcore) in config.workers.iter().enumerate() {
        let (peers_tx, peers_rx) = rings.next().ok_or_else(|| Failure::Other("worker ring mesh too small".into()))?;
        let (snap_tx, snap_rx) = bounded(16);
        let (req_tx, req_rx) = bounded(64);
        let adopted = Arc::new(AtomicU64::new(0));
        let counters = Arc::new(SharedCounters::default());
        let sync_tx = config.sync.as_ref().map(|_| {
            let (tx, rx) = rtrb::RingBuffer::new(worker::SYNC_RING);
            sync_rx.push(rx);
            tx
        });
        let ctx = WorkerContext {
            id,
            workers: config.workers.len(),
            peers_tx,
            peers_rx,
            queues: ports.iter().map(|p| p.queue(id as u16)).collect(),
            kernel_queues: taps.iter().map(|t| t.as_ref().map(|p| p.queue(id as u16))).collect(),
            links: Arc::clone(&port_links),
            sync_tx,
            pool: Arc::clone(&pool),
            // Built here, on the main thread: the connection table is allocated
            // (on huge pages where there are free ones) and faulted in before
            // the worker's lcore starts polling.
            processor: Processor::for_worker_sized(
                Arc::clone(&snapshot),
                config.conn_table_size as usize,
                config.conn_table_size6(),
                id,
                config.workers.len(),
            ),
            idle_sleep_us: u64::from(config.idle_sleep_us),
            snapshots: snap_rx,
            requests: req_rx,
            retired: retired_tx.clone(),
            adopted: Arc::clone(&adopted),
            counters: Arc::clone(&counters),
            stop: Arc::clone(&stop),
            capture: Arc::new(CaptureTap::default()),
            redirect_queued: Arc::new(AtomicU64::new(0)),
        };
        redirect_queued.push(Arc::clone(&ctx.redirect_queued));
        capture_taps.push(Arc::clone(&ctx.capture));
        let cpus_tx = cpus_tx.clone();
        dpdk::launch_on_lcore(lcore, move || {
            let _ = cpus_tx.send(rvs_control::affinity::current_thread_cpus());
            worker::run(ctx)
        })?;
        links.push(WorkerLink { requests: req_tx, snapshots: snap_tx, adopted, counters });
    }
    // Wait until every worker runs on the initial snapshot.
    let deadline = Instant::now() + ADOPT_TIMEOUT;
    while links.iter().any(|l| l.adopted.load(Ordering::Acquire) < 1) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    keep_control_threads_off(&cpus_rx, config.workers.len());

    let ports = Arc::new(ports);
    let devices: Vec<String> = config.ports.iter().map(|p| p.device.clone()).collect();
    // The API's event ring, once the API exists (link changes are events).
    let link_events: Arc<std::sync::OnceLock<Arc<EventLog>>> = Arc::default();
    let monitor = spawn_link_monitor(
        Arc::clone(&ports),
        devices,
        config.ports.iter().map(|p| p.name.clone()).collect(),
        Arc::clone(&port_links),
        Arc::clone(&link_events),
        Arc::clone(&stop),
    )
    .map_err(|e| Failure::Other(format!("cannot start the link monitor: {e}")))?;
    let dataplane = Arc::new(DpdkDataplane {
        links,
        lcores: config.workers.clone(),
        retired: retired_rx,
        port_macs,
        ports: Arc::clone(&ports),
        port_names: config.ports.iter().map(|p| p.name.clone()).collect(),
        port_links: Arc::clone(&port_links),
        pool: Arc::clone(&pool),
        sync_rx: parking_lot::Mutex::new(sync_rx),
        steering,
        capture_taps,
        capturing: parking_lot::Mutex::new(()),
        redirect_queued,
        closing: AtomicBool::new(false),
    });
    let listen = config.api.listen;
    let mut options = rvs_control::ApiOptions::for_daemon(&config, config_path.clone().unwrap_or_default());
    options.config_path = config_path;
    let ha_config = config.clone();
    let state = ApiState::with_options(config, 1, dataplane.clone(), options);
    let _ = link_events.set(Arc::clone(state.events()));
    state.set_overlay(overlay_dyn);
    let served = serve(listen, listener, state, overlay, dataplane.clone(), ha_config, daemon);

    stop.store(true, Ordering::Relaxed);
    dpdk::wait_all_lcores();
    let _ = monitor.join();
    // Ports and the pool must be released before EAL: wait for the last other
    // holder of the dataplane (a control thread finishing) to let go.
    let deadline = Instant::now() + Duration::from_secs(2);
    while Arc::strong_count(&dataplane) > 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(dataplane);
    drop(taps);
    drop(ports);
    drop(pool);
    drop(pdump);
    drop(eal);
    served
}

fn serve(
    listen: SocketAddr,
    listener: std::net::TcpListener,
    state: Arc<ApiState>,
    overlay: Arc<HaOverlay>,
    dataplane: Arc<DpdkDataplane>,
    config: Config,
    daemon: Daemon,
) -> Result<(), Failure> {
    let Daemon { runtime, signals, reload, dump_dir } = daemon;
    let cluster = Cluster::new(config.bgp.clone());
    state.set_cluster(Arc::clone(&cluster));
    runtime.block_on(async move {
        rvs_control::spawn_rate_estimator(Arc::clone(&state));
        let ha = start_ha(&config, &state, &overlay, Arc::clone(&dataplane))?;
        let state_for_signals = Arc::clone(&state);
        let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| Failure::Listen(listen, e))?;
        tracing::info!(%listen, "REST API listening");
        let status = format!("serving: {} ports, {} workers, REST API on {listen}", config.ports.len(), config.workers.len());
        systemd::ready(&status);
        if let Some(period) = systemd::watchdog_period() {
            tokio::spawn(feed_watchdog(Arc::clone(&dataplane), period));
        }
        spawn_cluster(&cluster, &state, &overlay, &dataplane);
        let (closing, signal_cluster) = (Arc::clone(&dataplane), Arc::clone(&cluster));
        let handled = async move {
            handle_signals(signals, state_for_signals, reload, dump_dir, status, signal_cluster).await;
            // A running capture returns what it has: shutdown does not wait for its bounds.
            closing.closing.store(true, Ordering::Relaxed);
        };
        let served = axum::serve(listener, router(state))
            .with_graceful_shutdown(handled)
            .await
            .map_err(|e| Failure::Other(format!("REST API: {e}")));
        systemd::stopping();
        // Routes go first: the router stops sending before the dataplane stops.
        cluster.stop(Duration::from_secs(5)).await;
        ha.stop();
        served
    })
}

/// Starts the cluster announcer (the VIPs handed to BIRD follow the
/// effective config, VRRP standby and worker liveness) and the liveness check
/// that feeds it.
fn spawn_cluster(cluster: &Arc<Cluster>, state: &Arc<ApiState>, overlay: &Arc<HaOverlay>, dataplane: &Arc<DpdkDataplane>) {
    if !cluster.has_bgp() {
        return;
    }
    let (s, o) = (Arc::clone(state), Arc::clone(overlay));
    tokio::spawn(Arc::clone(cluster).run(move || {
        let (s, o) = (Arc::clone(&s), Arc::clone(&o));
        async move { (s.effective_config().await.0, o.standby_vips()) }
    }));
    let (c, d) = (Arc::clone(cluster), Arc::clone(dataplane));
    tokio::spawn(async move {
        // Workers publish their heartbeat every 50 ms: look less often.
        let mut progress = systemd::Progress::default();
        progress.every_worker_moved(&d.heartbeats());
        let mut ticks = tokio::time::interval(Duration::from_millis(300));
        ticks.tick().await;
        loop {
            ticks.tick().await;
            c.set_workers_alive(progress.every_worker_moved(&d.heartbeats()));
        }
    });
}

/// Narrows the control plane's threads (started before EAL, with the
/// process's whole affinity) to the CPUs no worker polls on
/// ([`rvs_control::affinity`]), from the CPUs the `workers` workers reported
/// on `cpus`. A failure is logged, not fatal: the workers run either way.
fn keep_control_threads_off(cpus: &Receiver<Result<Vec<usize>, String>>, workers: usize) {
    let mut worker_cpus = Vec::new();
    for _ in 0..workers {
        match cpus.recv_timeout(Duration::from_secs(1)) {
            Ok(Ok(list)) => worker_cpus.extend(list),
            Ok(Err(e)) => return tracing::warn!("control threads may run on the workers' CPUs: a worker's CPUs are unknown ({e})"),
            Err(_) => return tracing::warn!("control threads may run on the workers' CPUs: a worker did not report its CPUs"),
        }
    }
    worker_cpus.sort_unstable();
    worker_cpus.dedup();
    match rvs_control::affinity::keep_off(&worker_cpus) {
        Ok(kept) if kept.failed == 0 => {
            tracing::info!(?worker_cpus, narrowed = kept.narrowed, unchanged = kept.unchanged, "control threads kept off the workers' CPUs")
        }
        Ok(kept) => tracing::warn!(
            ?worker_cpus,
            narrowed = kept.narrowed,
            failed = kept.failed,
            "some control threads may still run on the workers' CPUs: {}",
            kept.last_error.unwrap_or_default()
        ),
        Err(e) => tracing::warn!(?worker_cpus, "control threads may run on the workers' CPUs: {e}"),
    }
}

/// Pings the systemd watchdog every `period` while every worker's poll loop
/// goes round; a stalled worker stops the pings (systemd then restarts rvsd).
async fn feed_watchdog(dataplane: Arc<DpdkDataplane>, period: Duration) {
    // Workers publish every 50 ms: look less often than that, or an idle
    // look would see no progress.
    let period = period.max(Duration::from_millis(200));
    tracing::info!(period_ms = period.as_millis() as u64, "feeding the systemd watchdog while every worker makes progress");
    let mut progress = systemd::Progress::default();
    progress.every_worker_moved(&dataplane.heartbeats());
    let mut ticks = tokio::time::interval(period);
    ticks.tick().await;
    let mut was_stalled = false;
    loop {
        ticks.tick().await;
        let beats = dataplane.heartbeats();
        let stalled = progress.stalled(&beats);
        if progress.every_worker_moved(&beats) {
            systemd::watchdog_ping();
            if was_stalled {
                tracing::warn!("every worker makes progress again: feeding the systemd watchdog");
            }
            was_stalled = false;
        } else if !was_stalled {
            let lcores: Vec<u32> = stalled.iter().filter_map(|&w| dataplane.lcores.get(w).copied()).collect();
            tracing::error!(?lcores, "a worker made no progress: the systemd watchdog is no longer fed");
            was_stalled = true;
        }
    }
}

/// Serves signals until SIGTERM or SIGINT (then returns: shutdown).
async fn handle_signals(
    mut signals: Signals,
    state: Arc<ApiState>,
    reload: Box<dyn Fn() -> Result<Config, String> + Send + Sync>,
    dump_dir: PathBuf,
    status: String,
    cluster: Arc<Cluster>,
) {
    let reload: Arc<dyn Fn() -> Result<Config, String> + Send + Sync> = Arc::from(reload);
    loop {
        tokio::select! {
            _ = signals.hangup.recv() => {
                systemd::reloading();
                reload_config(&state, Arc::clone(&reload)).await;
                systemd::ready(&status);
            }
            _ = signals.user1.recv() => {
                let data = statedump::data(&state).await;
                for line in statedump::summary(&data) {
                    tracing::info!("state: {line}");
                }
                write_dump(&dump_dir, statedump::DATA_FILE, data, "state dump").await;
            }
            _ = signals.user2.recv() => {
                let s = Arc::clone(&state);
                match tokio::task::spawn_blocking(move || statedump::stats(&s)).await {
                    Ok(stats) => write_dump(&dump_dir, statedump::STATS_FILE, stats, "statistics dump").await,
                    Err(e) => tracing::error!(error = %e, "cannot gather the statistics"),
                }
            }
            _ = signals.terminate.recv() => {
                // With a BGP speaker SIGTERM drains: routes withdrawn, flows
                // served for the grace period, then stop. A second one stops now.
                if !cluster.has_bgp() || cluster.draining() {
                    break;
                }
                let (c, grace) = (Arc::clone(&cluster), cluster.default_grace());
                tokio::spawn(async move { c.drain(grace, Duration::from_secs(10)).await });
            }
            _ = cluster.drained() => break,
            _ = signals.interrupt.recv() => break,
        }
    }
    tracing::info!("shutting down");
}

/// A SIGHUP reload refused before the API saw the config (file unreadable or
/// invalid): logged and recorded as an event, as the API records its own refusals.
fn refuse_reload(state: &ApiState, why: &str) {
    tracing::error!("reload refused, nothing changed: {why}");
    state.events().record(EventKind::Config, Severity::Warning, format!("reload refused: {why}"), serde_json::Value::Null);
}

/// SIGHUP: the config file(s) read again and applied as a whole, or not at all.
async fn reload_config(state: &ApiState, reload: Arc<dyn Fn() -> Result<Config, String> + Send + Sync>) {
    tracing::info!("SIGHUP: reading the configuration again");
    let loaded = match tokio::task::spawn_blocking(move || reload()).await {
        Ok(loaded) => loaded,
        Err(e) => Err(format!("reading the config failed: {e}")),
    };
    let config = match loaded {
        Ok(c) => c,
        Err(e) => return refuse_reload(state, &e),
    };
    match state.reload(config).await {
        Ok(changes) if changes.is_empty() => tracing::info!("reload: the configuration is unchanged"),
        Ok(changes) => {
            for c in &changes {
                let what = [c.service.as_deref(), c.item.as_deref()].into_iter().flatten().collect::<Vec<_>>().join(" ");
                tracing::info!("reload: {:?} {} {what}", c.op, c.kind);
            }
        }
        Err(e) => tracing::error!("reload refused, nothing changed: {e}"),
    }
}

/// Writes a dump under `dir` and logs where (or why not).
async fn write_dump(dir: &std::path::Path, name: &'static str, value: serde_json::Value, what: &'static str) {
    let dir = dir.to_path_buf();
    match tokio::task::spawn_blocking(move || statedump::write(&dir, name, &value)).await {
        Ok(Ok(path)) => tracing::info!(path = %path.display(), "{what} written"),
        Ok(Err(e)) => tracing::error!(error = %e, "cannot write the {what} (--dump-dir)"),
        Err(e) => tracing::error!(error = %e, "cannot write the {what}"),
    }
}

/// The running high-availability parts; stopped in order on shutdown.
struct HaRuntime {
    vrrp: Option<VrrpEngine>,
    health: Option<Arc<parking_lot::Mutex<HealthEngine>>>,
    _sync: Option<Arc<SyncDaemon>>,
}

impl HaRuntime {
    fn stop(self) {
        // Masters resign first (priority-0 adverts while the dataplane still runs).
        if let Some(v) = self.vrrp {
            v.shutdown();
        }
        if let Some(h) = self.health {
            h.lock().shutdown();
        }
        // The sync threads hold the dataplane: join them before DPDK shuts down.
        if let Some(s) = self._sync {
            s.stop();
        }
    }
}

/// Starts health checks, VRRP and connection sync as configured, each feeding
/// the overlay and republishing the snapshot on every change.
fn start_ha(config: &Config, state: &Arc<ApiState>, overlay: &Arc<HaOverlay>, dataplane: Arc<DpdkDataplane>) -> Result<HaRuntime, Failure> {
    let port_links = Arc::clone(&dataplane.port_links);
    // The engine runs even without checks: checks added later (API, rvsadm)
    // start at once, through `Overlay::committed` → `HealthEngine::reconfigure`.
    let health = {
        let (tx, mut rx) = tokio::sync::watch::channel(0u64);
        let engine = Arc::new(parking_lot::Mutex::new(HealthEngine::start(config, tx)));
        overlay.set_health(Arc::clone(&engine));
        let state = Arc::clone(state);
        tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                if let Err(e) = state.republish("health check state changed").await {
                    tracing::error!(error = %e, "cannot apply a health change");
                }
            }
        });
        tracing::info!(checked_reals = engine.lock().task_count(), "health checks started");
        Some(engine)
    };

    let settings = SyncSettings::from_env(config).map_err(|e| Failure::Ha(e.to_string()))?;
    let sync = match settings {
        None => None,
        Some(settings) => {
            let (port, local) = (settings.config.port, settings.local);
            let daemon = SyncDaemon::start(&settings, dataplane, overlay.sync_master())
                .map_err(|e| Failure::Ha(format!("connection sync cannot start on {local}:{port}: {e}")))?;
            overlay.set_sync_counters(daemon.counters());
            let peers = if settings.config.peers.is_empty() { "multicast".to_owned() } else { format!("{:?}", settings.config.peers) };
            tracing::info!(instance = %settings.config.instance, %local, port, %peers, "connection sync started (authenticated)");
            Some(Arc::new(daemon))
        }
    };

    let vrrp = if config.vrrp.instances.is_empty() {
        None
    } else {
        let interfaces: HashMap<String, String> = config.ports.iter().filter_map(|p| p.tap.clone().map(|t| (p.name.clone(), t))).collect();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let engine = VrrpEngine::start(&config.vrrp, interfaces, dataplane_link(config, &port_links), tx)
            .map_err(|e| Failure::Ha(format!("VRRP cannot start: {e}")))?;
        overlay.set_vrrp_status(engine.status_handle());
        let (state, overlay, sync) = (Arc::clone(state), Arc::clone(overlay), sync.clone());
        tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                let VrrpEvent::State { instance, state: vstate, virtual_ipaddress } = event;
                tracing::info!(%instance, state = ?vstate, "VRRP state change");
                if let Some(master) = overlay.set_vrrp(&instance, vstate, virtual_ipaddress) {
                    if let Some(sync) = &sync {
                        sync.set_master(master);
                    }
                }
                if let Err(e) = state.republish(&format!("VRRP instance {instance} is now {vstate:?}")).await {
                    tracing::error!(error = %e, "cannot apply a VRRP change");
                }
            }
        });
        tracing::info!(instances = config.vrrp.instances.len(), "VRRP started");
        Some(engine)
    };
    Ok(HaRuntime { vrrp, health, _sync: sync })
}

/// The carrier of port `port` opened from config device `device`: what the
/// PMD reports and, for af_packet (whose PMD always says "up"), the kernel's
/// carrier of the interface it captures on.
fn port_carrier(port: &Port, device: &str) -> bool {
    let kernel = match rvs_control::config::af_packet_iface(device) {
        Some(iface) => {
            // Reading `carrier` of an interface that is administratively down fails: down.
            std::fs::read_to_string(format!("/sys/class/net/{iface}/carrier")).is_ok_and(|c| c.trim() == "1")
        }
        _ => true,
    };
    kernel && port.link_up()
}

/// Reads every port's carrier every LINK_POLL until `stop`, logging changes.
fn spawn_link_monitor(
    ports: Arc<Vec<Port>>,
    devices: Vec<String>,
    names: Vec<String>,
    links: Arc<LinkStates>,
    events: Arc<std::sync::OnceLock<Arc<EventLog>>>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("rvs-link".to_owned()).spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            for (i, (port, device)) in ports.iter().zip(&devices).enumerate() {
                let up = port_carrier(port, device);
                if links.set(i, up) {
                    let name = names.get(i).map_or("?", String::as_str);
                    if up {
                        tracing::warn!(port = name, "link up");
                    } else {
                        tracing::warn!(port = name, "link down: frames for it are dropped (drop_link_down)");
                    }
                    if let Some(events) = events.get() {
                        let (severity, state) = if up { (Severity::Info, "up") } else { (Severity::Warning, "down") };
                        events.record(EventKind::Link, severity, format!("port {name}: link {state}"), json!({ "port": name, "up": up }));
                    }
                }
            }
            std::thread::sleep(LINK_POLL);
        }
    })
}

/// VRRP's view of the ports' carrier, by port name or TAP name.
fn dataplane_link(config: &Config, links: &Arc<LinkStates>) -> DataplaneLink {
    let by_name: HashMap<String, usize> = config
        .ports
        .iter()
        .enumerate()
        .flat_map(|(i, p)| std::iter::once((p.name.clone(), i)).chain(p.tap.clone().map(|t| (t, i))))
        .collect();
    let links = Arc::clone(links);
    Arc::new(move |name: &str| by_name.get(name).map(|&i| links.is_up(i)))
}

/// The REST API's view of the DPDK dataplane.
struct DpdkDataplane {
    links: Vec<WorkerLink>,
    lcores: Vec<u32>,
    retired: Receiver<Arc<Snapshot>>,
    port_macs: Vec<MacAddr>,
    ports: Arc<Vec<Port>>,
    port_names: Vec<String>,
    /// Carrier of each port (the link monitor's).
    port_links: Arc<LinkStates>,
    pool: Arc<Mempool>,
    /// Connection updates from the workers, for the sync daemon.
    sync_rx: parking_lot::Mutex<Vec<rtrb::Consumer<ConnInfo>>>,
    /// Per port: how FULLNAT replies reach their worker, and the rules kept alive.
    steering: Vec<(String, Vec<dpdk::FlowRule>)>,
    /// Every worker's capture hook.
    capture_taps: Vec<Arc<CaptureTap>>,
    /// Held while a capture runs (one at a time).
    capturing: parking_lot::Mutex<()>,
    /// Per worker: frames waiting in the redirect rings towards it.
    redirect_queued: Vec<Arc<AtomicU64>>,
    /// Set when rvsd shuts down: a running capture returns at once.
    closing: AtomicBool,
}

impl DpdkDataplane {
    /// Every worker's heartbeat (see `SharedCounters::heartbeat`).
    fn heartbeats(&self) -> Vec<u64> {
        self.links.iter().map(|l| l.counters.heartbeat()).collect()
    }
}

impl rvs_control::sync::SyncDataplane for DpdkDataplane {
    fn drain_updates(&self) -> Vec<ConnInfo> {
        let mut out = Vec::new();
        for rx in self.sync_rx.lock().iter_mut() {
            while let Ok(c) = rx.pop() {
                out.push(c);
            }
        }
        out
    }

    fn all_connections(&self) -> Vec<ConnInfo> {
        // Persistence templates too: a late backup learns every client network's real server.
        Dataplane::connections(self, &ConnFilter { templates: true, ..Default::default() }, 0, usize::MAX).0
    }

    fn install(&self, conns: Vec<ConnInfo>) {
        // One worker holds each connection and announces it to the others, so
        // whichever queue its packets land on after a failover redirects them.
        let workers = self.links.len();
        let mut batches: Vec<Vec<ConnInfo>> = vec![Vec::new(); workers];
        for c in conns {
            if let Some(batch) = batches.get_mut(install_worker(&c, workers)) {
                batch.push(c);
            }
        }
        for (link, batch) in self.links.iter().zip(batches) {
            if !batch.is_empty() {
                let _ = link.requests.send(WorkerRequest::Install(batch));
            }
        }
    }
}

impl DpdkDataplane {
    /// Asks every worker the same question and collects the answers (a worker
    /// that does not answer within ASK_TIMEOUT is left out).
    fn ask<T: Send + 'static>(&self, make: impl Fn(crossbeam::channel::Sender<T>) -> WorkerRequest) -> Vec<T> {
        let waiting: Vec<_> = self
            .links
            .iter()
            .filter_map(|link| {
                let (tx, rx) = bounded(1);
                link.requests.send(make(tx)).ok().map(|_| rx)
            })
            .collect();
        let deadline = Instant::now() + ASK_TIMEOUT;
        waiting.into_iter().filter_map(|rx| rx.recv_deadline(deadline).ok()).collect()
    }
}

impl Dataplane for DpdkDataplane {
    fn port_macs(&self) -> Vec<MacAddr> {
        self.port_macs.clone()
    }

    fn publish(&self, snapshot: Arc<Snapshot>) -> PublishReport {
        let generation = snapshot.generation;
        let start = Instant::now();
        for link in &self.links {
            if link.snapshots.send(Arc::clone(&snapshot)).is_err() {
                tracing::error!("a worker is gone; snapshot {generation} not delivered to it");
            }
        }
        drop(snapshot);
        let deadline = start + ADOPT_TIMEOUT;
        let mut adopted = false;
        while Instant::now() < deadline {
            if self.links.iter().all(|l| l.adopted.load(Ordering::Acquire) >= generation) {
                adopted = true;
                break;
            }
            std::thread::sleep(Duration::from_micros(10));
        }
        let adopt_us = start.elapsed().as_micros() as u64;
        // Old snapshots are freed here, on a control thread.
        while self.retired.try_recv().is_ok() {}
        if adopted {
            tracing::info!(generation, adopt_us, "all workers adopted the new snapshot");
        } else {
            tracing::warn!(generation, adopt_us, "not every worker adopted the new snapshot in time");
        }
        PublishReport { generation, workers: self.links.len(), adopted, adopt_us }
    }

    fn service_stats(&self) -> Vec<ServiceStats> {
        let mut total: Vec<ServiceStats> = Vec::new();
        for per_worker in self.ask(WorkerRequest::Stats) {
            for svc in per_worker {
                match total.iter_mut().find(|t| t.key == svc.key) {
                    None => total.push(svc),
                    Some(t) => {
                        t.traffic.add(&svc.traffic);
                        for r in svc.reals {
                            match t.reals.iter_mut().find(|x| x.addr == r.addr && x.port == r.port) {
                                Some(x) => {
                                    x.traffic.add(&r.traffic);
                                    x.active += r.active;
                                    x.inactive += r.inactive;
                                    x.overloaded |= r.overloaded;
                                }
                                None => t.reals.push(r),
                            }
                        }
                    }
                }
            }
        }
        total
    }

    /// Walks the workers in order, each a bounded step at a time
    /// (CONN_SCAN_SLOTS table slots per request, so a worker forwards packets
    /// between two steps): every step counts its matches, and only the ones
    /// that fall in the page come back. A worker that does not answer a step
    /// within ASK_TIMEOUT is left out from there on.
    fn connections(&self, filter: &ConnFilter, offset: usize, limit: usize) -> (Vec<ConnInfo>, usize) {
        let filter = Arc::new(filter.clone());
        let mut pager = ConnPager::new(offset, limit);
        for (worker, link) in self.links.iter().enumerate() {
            let mut cursor = Some(0);
            while let Some(at) = cursor {
                let (reply, answer) = bounded(1);
                let scan = pager.scan(at, CONN_SCAN_SLOTS);
                if link.requests.send(WorkerRequest::Connections { filter: Arc::clone(&filter), scan, reply }).is_err() {
                    tracing::warn!(worker, "connection listing: the worker is gone; its connections are left out");
                    break;
                }
                match answer.recv_timeout(ASK_TIMEOUT) {
                    Ok(chunk) => cursor = pager.add(chunk),
                    Err(_) => {
                        tracing::warn!(
                            worker,
                            slot = at,
                            "connection listing: no answer in time; the rest of this worker's connections are left out"
                        );
                        break;
                    }
                }
            }
        }
        pager.finish()
    }

    fn zero_stats(&self) {
        for link in &self.links {
            let _ = link.requests.send(WorkerRequest::ZeroStats);
        }
    }

    /// Arms every worker's hook with its own matcher and ring, drains the
    /// rings every CAPTURE_POLL until a bound is reached, then disarms.
    fn capture(&self, service: &ServiceMatch, filter: Option<&str>, limits: CaptureLimits) -> Result<CaptureResult, CaptureError> {
        let _one = self.capturing.try_lock().ok_or(CaptureError::Busy)?;
        let mut rings = Vec::with_capacity(self.capture_taps.len());
        let mut sessions = Vec::with_capacity(self.capture_taps.len());
        for _ in &self.capture_taps {
            let matcher = FrameFilter::new(service.clone(), filter)?;
            let (producer, consumer) = rtrb::RingBuffer::new(CAPTURE_RING);
            sessions.push(Session::new(Box::new(move |frame: &[u8]| matcher.matches(frame)), producer, limits.snaplen));
            rings.push(consumer);
        }
        for (tap, session) in self.capture_taps.iter().zip(sessions) {
            tap.arm(session);
        }
        let mut collector = Collector::new(limits, Instant::now());
        'collect: while !collector.done(Instant::now()) && !self.closing.load(Ordering::Relaxed) {
            for ring in &mut rings {
                while let Ok(f) = ring.pop() {
                    if !collector.push(captured(f)) {
                        break 'collect;
                    }
                }
            }
            std::thread::sleep(CAPTURE_POLL.min(collector.remaining(Instant::now())));
        }
        let ring_full = self.capture_taps.iter().filter_map(|t| t.disarm()).map(|s| s.ring_full()).sum();
        let (mut frames, stopped) = collector.finish();
        frames.sort_by_key(|f| f.timestamp);
        Ok(CaptureResult { frames, stopped, ring_full })
    }

    fn stats(&self) -> serde_json::Value {
        // Connection updates waiting for the sync sender, per worker (empty without sync).
        let sync_backlog: Vec<usize> = self.sync_rx.lock().iter().map(rtrb::Consumer::slots).collect();
        let workers: Vec<_> = self
            .links
            .iter()
            .zip(&self.lcores)
            .enumerate()
            .map(|(id, (link, lcore))| {
                let counters: serde_json::Map<String, serde_json::Value> =
                    link.counters.read().iter().map(|(k, v)| (k.to_owned(), json!(v))).collect();
                let queued = self.redirect_queued.get(id).map_or(0, |q| q.load(Ordering::Relaxed));
                let mut w = json!({ "worker": id, "lcore": lcore, "counters": counters,
                    "redirect_ring": { "queued": queued, "capacity": worker::REDIRECT_RING * (self.links.len() - 1) } });
                if let Some(backlog) = sync_backlog.get(id) {
                    w["sync_backlog"] = json!({ "queued": backlog, "capacity": worker::SYNC_RING });
                }
                w
            })
            .collect();
        let ports: Vec<_> = self
            .ports
            .iter()
            .zip(&self.port_names)
            .zip(&self.steering)
            .enumerate()
            .map(|(i, ((p, name), (steering, _)))| {
                json!({ "name": name, "device": p.name(), "mac": p.mac().to_string(), "link_up": self.port_links.is_up(i),
                        "steering": steering, "offloads": p.offloads(), "stats": p.stats() })
            })
            .collect();
        json!({
            "workers": workers,
            "tsc_hz": dpdk::tsc_hz(),
            "ports": ports,
            "mempool": { "size": self.pool.size(), "available": self.pool.available() },
        })
    }
}

/// A worker's captured frame as the control plane's capture takes it.
fn captured(f: rvs_dpdk::capture::Frame) -> CapturedFrame {
    CapturedFrame {
        port: f.port,
        direction: match f.direction {
            rvs_dpdk::capture::Direction::Rx => capture::Direction::Inbound,
            rvs_dpdk::capture::Direction::Tx => capture::Direction::Outbound,
        },
        timestamp: Duration::from_nanos(f.timestamp_ns),
        orig_len: f.orig_len,
        data: f.data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eal_arguments_come_from_the_config() {
        let config = Config::from_json(
            r#"{ "eal": ["--no-huge"], "main_lcore": 0, "workers": [1],
                 "ports": [ { "name": "a", "device": "net_af_packet0,iface=dp0", "addresses": ["10.0.0.1/24"] },
                            { "name": "b", "device": "0000:01:00.0", "addresses": ["10.1.0.1/24"] } ] }"#,
        )
        .expect("valid");
        assert_eq!(
            eal_args(&config),
            ["rvsd", "-l", "0,1", "--main-lcore", "0", "--vdev", "net_af_packet0,iface=dp0", "-a", "0000:01:00.0", "--no-huge"]
        );
        assert_eq!(device_name("net_af_packet0,iface=dp0"), "net_af_packet0");
        assert_eq!(device_name("0000:01:00.0"), "0000:01:00.0");
    }

    #[test]
    fn tap_gets_ipv6_only_when_its_port_has_ipv6_addresses() {
        let config = Config::from_json(
            r#"{ "eal": ["--no-huge"], "main_lcore": 0, "workers": [1],
                 "ports": [ { "name": "a", "device": "net_af_packet0,iface=dp0", "addresses": ["10.0.0.1/24"], "tap": "rvs0" },
                            { "name": "b", "device": "net_af_packet1,iface=dp1", "addresses": ["10.1.0.1/24", "2001:db8::1/64"], "tap": "rvs1" } ] }"#,
        )
        .expect("valid");
        assert_eq!(tap_ipv6_sysctls(&config.ports[0]), [("disable_ipv6", "1")]);
        let v6 = tap_ipv6_sysctls(&config.ports[1]);
        assert_eq!(v6.last(), Some(&("disable_ipv6", "0")), "IPv6 enabled last, once DAD is off: {v6:?}");
        for off in ["accept_dad", "dad_transmits", "accept_ra", "router_solicitations"] {
            assert!(v6.contains(&(off, "0")), "{off} not turned off: {v6:?}");
        }
    }

    #[test]
    fn dumpcap_needs_huge_pages_and_shared_state() {
        let args = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(pdump_unavailable(&args(&["-m", "256", "--file-prefix", "x"]), true), None);
        assert!(pdump_unavailable(&args(&["-m", "256"]), false).is_some_and(|w| w.contains("huge pages")));
        assert!(pdump_unavailable(&args(&["--no-huge", "-m", "256"]), true).is_some_and(|w| w.contains("--no-huge")));
        assert!(pdump_unavailable(&args(&["--in-memory"]), true).is_some_and(|w| w.contains("--in-memory")));
        assert!(pdump_unavailable(&args(&["--no-shconf"]), true).is_some_and(|w| w.contains("--no-shconf")));
    }
}
