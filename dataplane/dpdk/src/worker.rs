//! The worker poll loop: rx burst, process, tx burst, on one pinned lcore.
//!
//! A worker owns one queue on every port, its [`Processor`] and its counters.
//! Between bursts it adopts a new snapshot if the control plane sent one, and
//! acknowledges it by storing the generation it now runs on; the old snapshot is
//! sent back so that it is freed on a control thread, never on the packet path.
//! When idle for a while it sleeps `idle_sleep_us` between polls (0 = busy poll),
//! so a lab or CI machine is not burned by a spinning core.
//! The clock is read, snapshots adopted and control requests answered at
//! housekeeping, at most every 100 µs by the TSC, not on every iteration.
//! Each iteration that handled frames adds its TSC cycles to the worker's
//! `busy_cycles` counter and its frames to `busy_frames` ([`BusyMeter`]): their
//! ratio is the worker's own cycles per packet, idle polls excluded.
//!
//! Workers talk to each other only through single-producer single-consumer
//! rings ([`rtrb`], wait-free, no locks, no read-modify-write): one ring of
//! frames and one of [`WorkerMsg`]s per ordered pair of workers ([`mesh`]).
//! Each iteration polls the NIC queues, applies the other workers' messages,
//! processes the frames they redirected, then the frames it polled.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam::channel::{Receiver, Sender};

use crate::capture::{self, CaptureTap, Direction};
use crate::{Mbuf, Mempool, Queue};
use rvs_dataplane::link::LinkStates;
use rvs_dataplane::process::{Output, PressureLine, PressureLog, Processor, WorkerMsg};
use rvs_dataplane::snapshot::Snapshot;
use rvs_dataplane::stats::{BusyMeter, Counter, SharedCounters};
use rvs_dataplane::stats::{ConnChunk, ConnFilter, ConnInfo, ConnScan, ServiceStats};

/// Counters are published to the control plane this often.
const PUBLISH_EVERY: Duration = Duration::from_millis(50);
/// Housekeeping (expiry, ARP retries) runs this often.
const TICK_EVERY: Duration = Duration::from_millis(10);
/// Empty polls in a row before the worker starts sleeping.
const IDLE_POLLS_BEFORE_SLEEP: u32 = 256;
/// The clock is read and the control channels (snapshots, requests) polled at
/// most this many times a second, gated by the TSC: an iteration that only
/// moves a few packets then costs an rx burst, the processing and a tx burst,
/// not two channel polls and a clock read (vDSO `clock_gettime`, slow in
/// VMs). Connection timers work in milliseconds, so 100 µs is fine-grained.
const HOUSEKEEPING_PER_SECOND: u64 = 10_000;

/// A question from the control plane, answered between two bursts.
#[derive(Debug)]
pub enum WorkerRequest {
    /// Traffic counters and connection counts per service and real server.
    Stats(Sender<Vec<ServiceStats>>),
    /// One bounded step of a connection listing: the worker looks at
    /// `scan.budget` table slots from `scan.cursor`, counts the matches and
    /// answers those in the scan's window (see `Processor::scan_connections`).
    Connections {
        /// Which connections.
        filter: Arc<ConnFilter>,
        /// Where to look and which matches to return.
        scan: ConnScan,
        /// The answer.
        reply: Sender<ConnChunk>,
    },
    /// Zero the traffic counters.
    ZeroStats,
    /// Install connections received from the sync master.
    Install(Vec<ConnInfo>),
}

/// Connection updates waiting for the sync sender, per worker.
pub const SYNC_RING: usize = 16384;

/// The control plane's side of a worker.
#[derive(Debug, Clone)]
pub struct WorkerLink {
    /// Questions for the worker.
    pub requests: Sender<WorkerRequest>,
    /// New snapshots for the worker.
    pub snapshots: Sender<Arc<Snapshot>>,
    /// Generation the worker runs on (stored by the worker after adopting).
    pub adopted: Arc<AtomicU64>,
    /// The worker's published counters.
    pub counters: Arc<SharedCounters>,
}

/// Frames redirected between workers wait at most this many per ring.
pub const REDIRECT_RING: usize = 2048;
/// Messages between workers wait at most this many per ring.
pub const MESSAGE_RING: usize = 8192;

/// One worker's sending ends towards another worker.
pub struct PeerTx {
    /// Frames (with the port index they arrived on).
    pub frames: rtrb::Producer<(u16, Mbuf)>,
    /// Messages.
    pub messages: rtrb::Producer<WorkerMsg>,
}

/// One worker's receiving ends from another worker.
pub struct PeerRx {
    /// Frames.
    pub frames: rtrb::Consumer<(u16, Mbuf)>,
    /// Messages.
    pub messages: rtrb::Consumer<WorkerMsg>,
}

/// The rings between `n` workers: for worker `i`, its senders indexed by
/// destination (`None` for itself) and its receivers from every other worker.
pub fn mesh(n: usize) -> Vec<(Vec<Option<PeerTx>>, Vec<PeerRx>)> {
    let mut tx: Vec<Vec<Option<PeerTx>>> = (0..n).map(|_| (0..n).map(|_| None).collect()).collect();
    let mut rx: Vec<Vec<PeerRx>> = (0..n).map(|_| Vec::new()).collect();
    for (i, senders) in tx.iter_mut().enumerate() {
        for (j, slot) in senders.iter_mut().enumerate() {
            if i == j {
                continue;
            }
            let (fp, fc) = rtrb::RingBuffer::new(REDIRECT_RING);
            let (mp, mc) = rtrb::RingBuffer::new(MESSAGE_RING);
            *slot = Some(PeerTx { frames: fp, messages: mp });
            rx[j].push(PeerRx { frames: fc, messages: mc });
        }
    }
    tx.into_iter().zip(rx).collect()
}

/// Everything a worker needs, moved onto its lcore.
pub struct WorkerContext {
    /// Worker index (0-based).
    pub id: usize,
    /// Number of workers.
    pub workers: usize,
    /// Rings to the other workers, indexed by worker (`None` for this one).
    pub peers_tx: Vec<Option<PeerTx>>,
    /// Rings from the other workers.
    pub peers_rx: Vec<PeerRx>,
    /// One queue per port, indexed by port index.
    pub queues: Vec<Queue>,
    /// The queue of each port's exception-path TAP, if it has one.
    pub kernel_queues: Vec<Option<Queue>>,
    /// Carrier of each port: frames for a port that is down are dropped.
    pub links: Arc<LinkStates>,
    /// Where connection updates go when this node is the sync master.
    pub sync_tx: Option<rtrb::Producer<ConnInfo>>,
    /// Pool for frames the dataplane originates (ARP requests).
    pub pool: Arc<Mempool>,
    /// The worker's packet path on the snapshot to start with
    /// ([`Processor::for_worker`]), created by the main thread: its connection
    /// table is allocated and faulted in there, never on the forwarding lcore.
    pub processor: Processor<Mbuf>,
    /// Sleep per idle poll once idle, in microseconds (0 = never sleep).
    pub idle_sleep_us: u64,
    /// New snapshots.
    pub snapshots: Receiver<Arc<Snapshot>>,
    /// Questions from the control plane.
    pub requests: Receiver<WorkerRequest>,
    /// Old snapshots, returned to be freed by the control plane.
    pub retired: Sender<Arc<Snapshot>>,
    /// Where the adopted generation is stored.
    pub adopted: Arc<AtomicU64>,
    /// Where counters are published.
    pub counters: Arc<SharedCounters>,
    /// Set to stop the loop.
    pub stop: Arc<AtomicBool>,
    /// The capture hook (`GET /api/v1/capture`).
    pub capture: Arc<CaptureTap>,
    /// Frames waiting in the redirect rings towards this worker, stored
    /// every PUBLISH_EVERY (a gauge for /metrics).
    pub redirect_queued: Arc<AtomicU64>,
}

/// Runs the poll loop until `ctx.stop` is set. Returns 0 (the lcore exit code).
pub fn run(ctx: WorkerContext) -> i32 {
    let WorkerContext {
        id,
        workers,
        mut peers_tx,
        mut peers_rx,
        queues,
        kernel_queues,
        links,
        mut sync_tx,
        pool,
        mut processor,
        idle_sleep_us,
        snapshots,
        requests,
        retired,
        adopted,
        counters,
        stop,
        capture,
        redirect_queued,
    } = ctx;
    let table: Vec<String> =
        processor.conns().memory().iter().map(|p| format!("{} {} B on {}", p.name, p.bytes, p.backing.name())).collect();
    tracing::info!(worker = id, workers, queues = ?queues, conn_table = %table.join(", "), "worker started");
    adopted.store(processor.snapshot().generation, Ordering::Release);
    let burst = crate::MAX_BURST;
    let mut rx: Vec<Mbuf> = Vec::with_capacity(burst);
    let mut rx_by_port: Vec<Vec<Mbuf>> = queues.iter().map(|_| Vec::with_capacity(burst)).collect();
    let mut out: Output<Mbuf> = Output::with_capacity(burst * queues.len().max(1));
    let mut tx_by_port: Vec<Vec<Mbuf>> = queues.iter().map(|_| Vec::with_capacity(burst * 2)).collect();
    let mut to_kernel: Vec<Vec<Mbuf>> = queues.iter().map(|_| Vec::with_capacity(burst)).collect();
    let clock = Instant::now();
    let mut last_publish = clock;
    let mut last_tick = clock;
    let mut idle_polls: u32 = 0;
    let mut last_csum_warning: Option<Instant> = None;
    let mut pressure_log = PressureLog::default();
    let mut busy = BusyMeter::default();
    let housekeeping_cycles = (crate::tsc_hz() / HOUSEKEEPING_PER_SECOND).max(1);
    let mut last_housekeeping: Option<u64> = None;
    let mut now = clock;
    let mut now_ms = 0;

    // One TSC read per iteration: the end of one is the start of the next
    // (read again only after an idle sleep).
    let mut tsc = crate::rdtsc();
    while !stop.load(Ordering::Relaxed) {
        busy.start(tsc);
        // One relaxed load while no capture runs.
        let mut cap = capture.begin();
        // A TSC that went backwards (it should not: the lcore is pinned) counts as due.
        let housekeeping = last_housekeeping.is_none_or(|last| tsc.wrapping_sub(last) >= housekeeping_cycles || tsc < last);
        if housekeeping {
            last_housekeeping = Some(tsc);
            while let Ok(next) = snapshots.try_recv() {
                let generation = next.generation;
                let old = processor.adopt(next);
                adopted.store(generation, Ordering::Release);
                // If the control plane is gone the old snapshot is simply dropped here.
                let _ = retired.send(old);
            }
            now = Instant::now();
            now_ms = now.duration_since(clock).as_millis() as u64;
            // Questions wait for the next housekeeping: at most 100 µs.
            while let Ok(req) = requests.try_recv() {
                // Replies go to a waiting control thread; if it gave up, the answer is dropped.
                match req {
                    WorkerRequest::Stats(reply) => {
                        let _ = reply.send(processor.service_stats());
                    }
                    WorkerRequest::Connections { filter, scan, reply } => {
                        let _ = reply.send(processor.scan_connections(&filter, scan, now_ms));
                    }
                    WorkerRequest::ZeroStats => processor.zero_stats(),
                    WorkerRequest::Install(conns) => {
                        for c in &conns {
                            processor.install(c, now_ms, &mut out);
                        }
                    }
                }
            }
        }
        // Poll the NIC before applying the peers' messages: an owner publishes
        // a connection's keys before it transmits the packet that makes the
        // reply, so every reply received here finds its announcement applied.
        let mut received = 0;
        for (queue, rx) in queues.iter().zip(rx_by_port.iter_mut()) {
            received += queue.rx_burst(rx);
        }
        if cap.is_some() {
            for (port, rx) in rx_by_port.iter().enumerate() {
                capture::record(&mut cap, port as u16, Direction::Rx, rx);
            }
        }
        for peer in peers_rx.iter_mut() {
            while let Ok(msg) = peer.messages.pop() {
                processor.handle_message(msg, now_ms, &mut out);
            }
        }
        for peer in peers_rx.iter_mut() {
            for _ in 0..burst {
                let Ok((port, m)) = peer.frames.pop() else { break };
                received += 1;
                processor.handle_redirected(port, m, now_ms, &mut out);
            }
        }
        for (port, rx) in rx_by_port.iter_mut().enumerate() {
            if rx.is_empty() {
                continue;
            }
            if rx.iter().any(|m| m.segments() != 1) {
                let before = rx.len();
                out.drop.extend(rx.extract_if(.., |m| m.segments() != 1));
                processor.count(Counter::DropMultiSegment, (before - rx.len()) as u64);
            }
            processor.handle_burst(port as u16, rx, now_ms, &mut out);
        }
        // What the kernel sends on its TAP goes out of the real port as it is,
        // with the port's 802.1Q tag.
        for (port, kq) in kernel_queues.iter().enumerate() {
            let Some(kq) = kq else { continue };
            let n = kq.rx_burst(&mut rx);
            received += n;
            processor.count(Counter::KernelOut, n as u64);
            if let Some(list) = tx_by_port.get_mut(port) {
                for mut m in rx.drain(..) {
                    if processor.tag_for_port(port as u16, &mut m) {
                        list.push(m);
                    } else {
                        processor.count(Counter::DropNoRoom, 1);
                    }
                }
            }
            rx.clear();
        }
        if housekeeping && now.duration_since(last_tick) >= TICK_EVERY {
            processor.tick(now_ms, &mut out);
            last_tick = now;
        }
        // Most polls leave these empty: the checks spare a Drain each (its drop is
        // out of line).
        if !out.sync.is_empty() {
            for info in out.sync.drain(..) {
                let pushed = sync_tx.as_mut().is_some_and(|tx| tx.push(info).is_ok());
                processor.count(if pushed { Counter::SyncOut } else { Counter::SyncDropped }, 1);
            }
        }
        if !out.kernel.is_empty() {
            for (port, m) in out.kernel.drain(..) {
                match to_kernel.get_mut(usize::from(port)) {
                    Some(list) => list.push(m),
                    None => processor.count(Counter::DropKernel, 1),
                }
            }
        }
        if !out.kernel_control.is_empty() {
            for (port, content) in out.kernel_control.drain(..) {
                let Some(list) = to_kernel.get_mut(usize::from(port)) else { continue };
                let Some(mut m) = pool.alloc() else {
                    processor.count(Counter::MempoolAllocFailed, 1);
                    continue;
                };
                if m.fill(content.bytes()) {
                    list.push(m);
                } else {
                    processor.count(Counter::DropKernel, 1);
                }
            }
        }
        for (list, kq) in to_kernel.iter_mut().zip(&kernel_queues) {
            if list.is_empty() {
                continue;
            }
            let wanted = list.len();
            let sent = kq.map_or(0, |q| q.tx_burst(list));
            list.clear();
            processor.count(Counter::DropKernel, (wanted - sent) as u64);
        }
        flush(&queues, &links, &pool, &mut processor, &mut out, &mut tx_by_port, &mut peers_tx, &mut cap);
        drop(cap);
        if housekeeping && now.duration_since(last_publish) >= PUBLISH_EVERY {
            counters.publish(processor.counters());
            redirect_queued.store(peers_rx.iter().map(|p| p.frames.slots() as u64).sum(), Ordering::Relaxed);
            last_publish = now;
            warn_partial_checksums(&mut processor, id, now, &mut last_csum_warning);
            log_pressure(&processor, id, now_ms, &mut pressure_log);
        }

        tsc = crate::rdtsc();
        busy.end(tsc, received, |c, n| processor.count(c, n));
        if received == 0 {
            idle_polls = idle_polls.saturating_add(1);
            if idle_sleep_us > 0 && idle_polls > IDLE_POLLS_BEFORE_SLEEP {
                std::thread::sleep(Duration::from_micros(idle_sleep_us));
                tsc = crate::rdtsc();
            }
        } else {
            idle_polls = 0;
        }
    }
    counters.publish(processor.counters());
    tracing::info!(worker = id, "worker stopped");
    0
}

/// Partial checksums are logged at most this often per worker.
const CSUM_WARNING_EVERY: Duration = Duration::from_secs(60);

/// Tells the operator, at most once a minute, that a sender's checksum
/// offload leaves rvs partial checksums to complete (`rx_l4_csum_partial`).
fn warn_partial_checksums(processor: &mut Processor<Mbuf>, worker: usize, now: Instant, last: &mut Option<Instant>) {
    if last.is_some_and(|t| now.duration_since(t) < CSUM_WARNING_EVERY) {
        return;
    }
    let Some(port) = processor.take_partial_csum_port() else { return };
    let name = processor.snapshot().ports.get(usize::from(port)).map_or("?", |p| p.name.as_str()).to_owned();
    tracing::warn!(
        worker,
        port = %name,
        "TCP/UDP packets with partial checksums arrive on port {name} (the sender has transmit checksum offload on, as veth \
         and tap devices do by default); rvs completes them (counter rx_l4_csum_partial), which costs a checksum over each \
         such packet: turn the offload off on the sending interface (`ethtool -K <if> tx off`)"
    );
    *last = Some(now);
}

/// Tells the operator when the worker comes under SYN-flood table pressure
/// or leaves it, and when a full table refuses new connections, at most one
/// line of each kind per [`rvs_dataplane::process::PRESSURE_LOG_EVERY_MS`] (see [`PressureLog`]).
fn log_pressure(processor: &Processor<Mbuf>, worker: usize, now_ms: u64, log: &mut PressureLog) {
    let s = processor.pressure_status();
    let (conns, capacity, syn_recv) = (s.conns, s.capacity, s.syn_recv);
    match log.pressure_line(s, now_ms) {
        Some(PressureLine::Changed { status, changes }) if status.on => tracing::warn!(
            worker,
            conns,
            capacity,
            syn_recv,
            changes,
            "SYN-flood table pressure on: {conns} of {capacity} connection entries in use, {syn_recv} in SYN_RECV; SYN_RECV \
             entries get the short timeout, new connections are rate-bound per source prefix (syn_flood settings)"
        ),
        Some(PressureLine::Changed { changes, .. }) => tracing::info!(
            worker,
            conns,
            capacity,
            syn_recv,
            changes,
            "SYN-flood table pressure off: {conns} of {capacity} connection entries in use, {syn_recv} in SYN_RECV"
        ),
        Some(PressureLine::Flapped { status, changes }) => tracing::warn!(
            worker,
            conns,
            capacity,
            syn_recv,
            changes,
            on = status.on,
            "SYN-flood table pressure turned on or off {changes} times since the last line; {conns} of {capacity} entries in \
             use, {syn_recv} in SYN_RECV"
        ),
        None => {}
    }
    if let Some(refused) = log.table_full_line(processor.counters().get(Counter::DropConnTableFull), now_ms) {
        tracing::warn!(
            worker,
            refused,
            conns,
            capacity,
            syn_recv,
            "connection table full: {refused} new connections refused since the last line (drop_conn_table_full; no \
             SYN_RECV entry to evict near the scan cursor, or syn_flood.drop_entry off); {syn_recv} of {conns} entries in SYN_RECV"
        );
    }
}

/// Sends what processing produced, frees what it dropped.
#[allow(clippy::too_many_arguments)] // the loop's own buffers, passed apart to borrow them apart
fn flush(
    queues: &[Queue],
    links: &LinkStates,
    pool: &Mempool,
    processor: &mut Processor<Mbuf>,
    out: &mut Output<Mbuf>,
    tx_by_port: &mut [Vec<Mbuf>],
    peers: &mut [Option<PeerTx>],
    cap: &mut capture::Active<'_>,
) {
    // Redirects, messages and control frames are rare: a check spares each
    // empty vector its Drain.
    if !out.redirect.is_empty() {
        for (worker, port, m) in out.redirect.drain(..) {
            match peers.get_mut(worker).and_then(Option::as_mut) {
                Some(peer) => {
                    if let Err(rtrb::PushError::Full((_, m))) = peer.frames.push((port, m)) {
                        processor.count(Counter::RedirectDropped, 1);
                        drop(m);
                    }
                }
                None => processor.count(Counter::RedirectDropped, 1),
            }
        }
    }
    if !out.messages.is_empty() {
        for msg in out.messages.drain(..) {
            for peer in peers.iter_mut().flatten() {
                if peer.messages.push(msg).is_err() {
                    processor.count(Counter::MessagesDropped, 1);
                } else {
                    processor.count(Counter::MessagesOut, 1);
                }
            }
        }
    }
    if !out.control.is_empty() {
        for (port, content) in out.control.drain(..) {
            let Some(mut m) = pool.alloc() else {
                processor.count(Counter::MempoolAllocFailed, 1);
                continue;
            };
            if m.fill(content.bytes()) {
                if let Some(list) = tx_by_port.get_mut(usize::from(port)) {
                    list.push(m);
                }
            }
        }
    }
    for (port, m) in out.tx.drain(..) {
        match tx_by_port.get_mut(usize::from(port)) {
            Some(list) => list.push(m),
            None => processor.count(Counter::DropNoRoute, 1),
        }
    }
    for (port, (list, queue)) in tx_by_port.iter_mut().zip(queues).enumerate() {
        if list.is_empty() {
            continue;
        }
        if !links.is_up(port) {
            // Never queue frames (gratuitous ARPs above all) to be sent late.
            processor.count(Counter::DropLinkDown, list.len() as u64);
            list.clear();
            continue;
        }
        capture::record(cap, port as u16, Direction::Tx, list);
        let wanted = list.len();
        let sent = queue.tx_burst(list);
        processor.count(Counter::TxQueueFull, (wanted - sent) as u64);
    }
    crate::free_bulk(&mut out.drop);
}
