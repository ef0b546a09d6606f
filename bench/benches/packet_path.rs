//! The packet path without I/O: ns per packet through `Processor::handle_burst`,
//! in bursts of [`RX_BURST`] frames as the worker receives them.
//!
//! For every mode of `rvs_bench::plan::MODES` and every table size of
//! [`table_sizes`], a processor is filled with that many live (established)
//! connections by sending each a SYN and an ACK, then these benchmarks run:
//!
//! * `established`: ACK data segments of live flows picked at random, so with
//!   4 M connections the lookups miss the CPU caches as real traffic would;
//! * `established_reply` (NAT and FULLNAT, whose replies come back through the
//!   director): ACK segments from the real servers of live flows picked at
//!   random, each the mirror image of its flow's forwarded ACK (lookup by the
//!   reply key, rewrite back to the client);
//! * `new_conn`: SYNs from client tuples the table has never seen (lookup miss,
//!   service lookup, scheduling, insert, rewrite). The new entries are expired
//!   between measured batches (untimed) so the table stays at its size.
//!
//! IPv6 (`rvs_bench::plan::MODES6`, groups `packet_path/ipv6-MODE/SIZE`): the
//! same two benchmarks for DR, NAT, TUN (6in6) and FULLNAT over IPv6, and NAT64
//! (IPv6 clients, IPv4 real servers, IPv4 local addresses), the connections in
//! an IPv6 table sized for them (`Processor::for_worker_sized`). IPv6 frames are
//! 78 bytes (82 on the wire), the smallest that hold Ethernet, IPv6, TCP and the
//! 4-byte stamp; their neighbours are resolved by a solicitation then an
//! advertisement each. A fixture is built only when one of its benchmarks runs
//! (not for `--list`, nor when a filter leaves it out).
//!
//! Nothing in the timed loop allocates: frames come from a pool of `VecFrame`s
//! that is refilled from templates outside the timed region (`iter_custom`), and
//! the `Output` vectors are drained, never reallocated. One iteration is one packet.
//!
//! `RVS_BENCH_BIG_CONNS` overrides the large table size (default 4,000,000);
//! `deploy/bench.sh --smoke` sets it small. Each group prints the frames it
//! ran through the processor to stderr (`frames timed:`), so an instruction
//! count taken under callgrind (`--toggle-collect='*run_pool*'`) can be
//! divided into instructions per packet.
//!
//! `RVS_BENCH_RX_BURST` sets the frames per `handle_burst` call (default 32,
//! 1..=32): 1 is the regime of a worker at low load, where each poll finds one
//! frame and every per-burst cost is paid per packet (`deploy/bench/cycles.sh`).
//!
//! `RVS_BENCH_PROTO=udp` makes the IPv4 services and flows UDP (default `tcp`),
//! in groups `packet_path/udp-MODE/SIZE`: `established` is a datagram of a live
//! flow; there is no `new_conn` (UDP flows have no short SYN_RECV timeout by
//! which the bench could sweep the new ones away).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rvs_bench::fixture::{neighbour_frames6, neighbour_replies, snapshot6, snapshot_for};
use rvs_bench::plan::{self, ModeSpec, ModeSpec6, MODES, MODES6};
use rvs_bench::template::{be16, Kind, Proto, Template, Template6, IP_CSUM, IP_SRC, L4, TCP_CSUM};
use rvs_dataplane::frame::{Frame, VecFrame};
use rvs_dataplane::process::{Output, Processor, MIN_CONN_CAPACITY6};
use rvs_dataplane::snapshot::ForwardMode;
use rvs_dataplane::snapshot::Protocol;
use rvs_dataplane::stats::Counter;
use rvs_dataplane::wire::checksum;

/// Frames processed between two clock reads.
const BATCH: usize = 256;
/// Frames per `handle_burst` call by default (rvsd's rx burst, `rvs_dpdk::MAX_BURST`).
const RX_BURST: usize = 32;

/// Frames per `handle_burst` call: `RVS_BENCH_RX_BURST`, else [`RX_BURST`].
fn rx_burst() -> usize {
    match std::env::var("RVS_BENCH_RX_BURST") {
        Err(_) => RX_BURST,
        Ok(v) => match v.parse::<usize>() {
            Ok(n) if (1..=RX_BURST).contains(&n) => n,
            _ => panic!("RVS_BENCH_RX_BURST={v}: give a number of frames from 1 to {RX_BURST}"),
        },
    }
}
/// The IPv4 flows' protocol: `RVS_BENCH_PROTO` (`tcp`, the default, or
/// `udp`: the service, its connections and the frames are UDP; the flows are
/// set up by two datagrams each, where TCP has a SYN and an ACK).
fn ipv4_proto() -> (Proto, Protocol) {
    match std::env::var("RVS_BENCH_PROTO").as_deref() {
        Err(_) | Ok("tcp") => (Proto::Tcp, Protocol::Tcp),
        Ok("udp") => (Proto::Udp, Protocol::Udp),
        Ok(v) => panic!("RVS_BENCH_PROTO={v}: give tcp or udp"),
    }
}
/// Wire size of the benchmark frames (64-byte frames: 60 bytes without FCS).
const FRAME_SIZE: usize = 64;

/// `(label, live connections)` for every table size measured.
fn table_sizes() -> Vec<(String, usize)> {
    let big = std::env::var("RVS_BENCH_BIG_CONNS").ok().and_then(|v| v.parse().ok()).unwrap_or(4_000_000usize);
    vec![("1k".to_owned(), 1_000), (label(big), big)]
}

fn label(n: usize) -> String {
    if n.is_multiple_of(1_000_000) {
        format!("{}m", n / 1_000_000)
    } else if n.is_multiple_of(1_000) {
        format!("{}k", n / 1_000)
    } else {
        n.to_string()
    }
}

/// What differs between the IPv4 and the IPv6 fixtures: the frames and the
/// table the connections live in.
trait Family {
    /// The bytes of the template of `kind`.
    fn bytes(&self, kind: Kind) -> &[u8];
    /// Writes the `kind` frame of established flow `i` (of new connection `i`
    /// when `fresh`) into `buf`, exactly as long as the template.
    fn write(&self, kind: Kind, buf: &mut [u8], i: u64, fresh: bool);
    /// Connections in the family's table.
    fn live(p: &Processor<VecFrame>) -> usize;
}

/// IPv4 clients (the plan's tuples) and frames.
struct V4 {
    syn: Template,
    data: Template,
}

impl Family for V4 {
    fn bytes(&self, kind: Kind) -> &[u8] {
        match kind {
            Kind::Syn => self.syn.bytes(),
            Kind::Data => self.data.bytes(),
        }
    }

    fn write(&self, kind: Kind, buf: &mut [u8], i: u64, fresh: bool) {
        let (src, sport) = if fresh { plan::syn_client(i) } else { plan::client(i) };
        let seq = if fresh { 0 } else { i };
        match kind {
            Kind::Syn => self.syn.write(buf, src, sport, seq, 0),
            Kind::Data => self.data.write(buf, src, sport, seq, 0),
        }
    }

    fn live(p: &Processor<VecFrame>) -> usize {
        p.conns().len()
    }
}

/// IPv6 clients (`plan::client6`, `plan::syn_client6`) and frames.
struct V6 {
    syn: Template6,
    data: Template6,
}

impl Family for V6 {
    fn bytes(&self, kind: Kind) -> &[u8] {
        match kind {
            Kind::Syn => self.syn.bytes(),
            Kind::Data => self.data.bytes(),
        }
    }

    fn write(&self, kind: Kind, buf: &mut [u8], i: u64, fresh: bool) {
        let (src, sport) = if fresh { plan::syn_client6(i) } else { plan::client6(i) };
        let seq = if fresh { 0 } else { i };
        match kind {
            Kind::Syn => self.syn.write(buf, src, sport, seq, 0),
            Kind::Data => self.data.write(buf, src, sport, seq, 0),
        }
    }

    /// Created less expired: the processor keeps its IPv6 table to itself,
    /// and in these fixtures connections end only by expiring.
    fn live(p: &Processor<VecFrame>) -> usize {
        let c = p.counters();
        c.get(Counter::ConnCreated).saturating_sub(c.get(Counter::ConnExpired)) as usize
    }
}

/// Whether the real servers' replies of `mode` come back through the director
/// (NAT and FULLNAT), so that `established_reply` measures them.
fn replies_pass(mode: &ModeSpec) -> bool {
    matches!(mode.forward, ForwardMode::Nat | ForwardMode::FullNat)
}

/// What the real servers' replies look like, flow by flow: each flow's ACK as
/// the director forwarded it, mirrored (Ethernet addresses, IPv4 addresses
/// and ports swapped; the checksums stay right, as each sums both ends).
/// `base` is flow 0's reply; `tuples` holds every flow's reply addresses and
/// ports (source and destination address, source and destination port), which
/// [`Replies::write`] patches into `base` with checksum updates.
struct Replies {
    base: Vec<u8>,
    tuples: Vec<[u8; 12]>,
}

impl Replies {
    /// Room for `flows` flows, `forwarded` (flow 0's forwarded ACK) mirrored as the base.
    fn new(forwarded: &[u8], flows: usize) -> Self {
        let mut base = forwarded.to_vec();
        // (first field, second field, length): MACs, IPv4 addresses, ports.
        for (a, b, len) in [(0, 6, 6), (IP_SRC, IP_SRC + 4, 4), (L4, L4 + 2, 2)] {
            for k in 0..len {
                base.swap(a + k, b + k);
            }
        }
        Replies { base, tuples: Vec::with_capacity(flows) }
    }

    /// Keeps the reply tuple of the next flow, from its forwarded ACK.
    fn record(&mut self, forwarded: &[u8]) {
        assert_eq!(forwarded.len(), self.base.len(), "every forwarded ACK is as long as the first");
        let mut t = [0u8; 12];
        t[0..4].copy_from_slice(&forwarded[IP_SRC + 4..IP_SRC + 8]);
        t[4..8].copy_from_slice(&forwarded[IP_SRC..IP_SRC + 4]);
        t[8..10].copy_from_slice(&forwarded[L4 + 2..L4 + 4]);
        t[10..12].copy_from_slice(&forwarded[L4..L4 + 2]);
        self.tuples.push(t);
    }

    /// Writes the reply of `flow` into `buf` (as long as `base`).
    fn write(&self, buf: &mut [u8], flow: usize) {
        buf.copy_from_slice(&self.base);
        let tuple = &self.tuples[flow];
        let (mut ip_csum, mut l4_csum) = (be16(buf, IP_CSUM), be16(buf, TCP_CSUM));
        for (at, from, in_ip_header) in [(IP_SRC, 0, true), (IP_SRC + 4, 4, true), (L4, 8, false)] {
            let word = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
            let (old, new) = (word(&buf[at..]), word(&tuple[from..]));
            if in_ip_header {
                ip_csum = checksum::update_u32(ip_csum, old, new);
            }
            l4_csum = checksum::update_u32(l4_csum, old, new);
            buf[at..at + 4].copy_from_slice(&tuple[from..from + 4]);
        }
        buf[IP_CSUM..IP_CSUM + 2].copy_from_slice(&ip_csum.to_be_bytes());
        buf[TCP_CSUM..TCP_CSUM + 2].copy_from_slice(&l4_csum.to_be_bytes());
    }
}

/// A processor with `live` established connections and every neighbour resolved.
struct Fixture<T: Family> {
    p: Processor<VecFrame>,
    out: Output<VecFrame>,
    pool: Vec<VecFrame>,
    burst: Vec<VecFrame>,
    /// Frames per `handle_burst` call ([`rx_burst`]).
    rx_burst: usize,
    family: T,
    /// Frames that resolve every next hop (ARP replies, neighbour discovery).
    neighbours: Vec<Vec<u8>>,
    /// The real servers' replies of every flow (NAT and FULLNAT over TCP), else None.
    replies: Option<Replies>,
    live: usize,
    now_ms: u64,
    rng: u64,
    /// New connections created since the last sweep.
    fresh: usize,
    /// Sweep when `fresh` reaches this.
    slack: usize,
    /// Ticks that sweep the whole table once.
    sweep_ticks: usize,
    /// Frames run through the processor in timed regions.
    timed_frames: u64,
}

/// Table capacity for `live` connections and the new ones between two sweeps.
fn capacity(live: usize) -> (usize, usize) {
    let slack = (live / 64).max(64);
    (live + 2 * slack + 2 * BATCH, slack)
}

impl Fixture<V4> {
    /// IPv4 scenario `mode` with `live` connections of `ipv4` (see
    /// [`ipv4_proto`]); with `replies`, the real servers' replies of every
    /// flow are kept for `established_reply`.
    fn new(mode: &ModeSpec, live: usize, ipv4: (Proto, Protocol), replies: bool) -> Self {
        let (capacity, slack) = capacity(live);
        let (proto, protocol) = ipv4;
        let p = Processor::new(snapshot_for(mode, protocol), capacity);
        let sweep_ticks = p.conns().capacity() / rvs_dataplane::process::EXPIRE_BUDGET + 2;
        let mk = |kind| Template::new(proto, kind, FRAME_SIZE, plan::CLIENT_MAC, plan::DIRECTOR_MAC, mode.vip, mode.vport);
        let family = V4 { syn: mk(Kind::Syn), data: mk(Kind::Data) };
        Fixture::fill(p, family, neighbour_replies(plan::DIRECTOR_MAC), replies, live, slack, sweep_ticks)
    }
}

impl Fixture<V6> {
    /// IPv6 scenario `mode` with `live` connections, in an IPv6 table sized
    /// for them (the IPv4 table is the smallest there is).
    fn new6(mode: &ModeSpec6, live: usize) -> Self {
        let (capacity, slack) = capacity(live);
        let p = Processor::for_worker_sized(snapshot6(mode), MIN_CONN_CAPACITY6, capacity, 0, 1);
        let sweep_ticks = capacity / rvs_dataplane::process::EXPIRE_BUDGET + 2;
        let mk = |kind| Template6::new(kind, FRAME_SIZE, plan::CLIENT_MAC, plan::DIRECTOR_MAC, mode.vip, mode.vport);
        let family = V6 { syn: mk(Kind::Syn), data: mk(Kind::Data) };
        // NAT64 reaches IPv4 real servers: ARP as well.
        let mut neighbours = neighbour_frames6(plan::DIRECTOR_MAC);
        neighbours.extend(neighbour_replies(plan::DIRECTOR_MAC));
        Fixture::fill(p, family, neighbours, false, live, slack, sweep_ticks)
    }
}

impl<T: Family> Fixture<T> {
    /// Resolves the neighbours, then fills `p` with `live` established
    /// connections; with `replies`, keeps what the real servers' replies of
    /// each flow look like (the flow's forwarded ACK, mirrored: [`Replies`]).
    fn fill(
        p: Processor<VecFrame>,
        family: T,
        neighbours: Vec<Vec<u8>>,
        replies: bool,
        live: usize,
        slack: usize,
        sweep_ticks: usize,
    ) -> Self {
        let mut f = Fixture {
            p,
            out: Output::with_capacity(BATCH),
            pool: Vec::with_capacity(BATCH),
            burst: Vec::with_capacity(RX_BURST),
            rx_burst: rx_burst(),
            family,
            neighbours,
            replies: None,
            live,
            now_ms: 1,
            rng: 0x9e37_79b9_7f4a_7c15,
            fresh: 0,
            slack,
            sweep_ticks,
            timed_frames: 0,
        };
        f.warm_neighbours();
        // Fill the table: SYN then ACK per flow, one recycled frame.
        let mut frame = VecFrame::new(f.family.bytes(Kind::Syn));
        for i in 0..live as u64 {
            for kind in [Kind::Syn, Kind::Data] {
                Self::reset_frame(&mut frame, f.family.bytes(kind));
                f.family.write(kind, frame.data_mut(), i, false);
                f.p.handle(0, frame, f.now_ms, &mut f.out);
                frame = match f.out.tx.pop() {
                    Some((_, fr)) => fr,
                    None => panic!("populating flow {i}: frame not forwarded; counters: {:?}", f.p.counters()),
                };
                assert!(f.out.drop.is_empty() && f.out.tx.is_empty(), "populating flow {i}");
                if replies && kind == Kind::Data {
                    f.replies.get_or_insert_with(|| Replies::new(frame.data(), live)).record(frame.data());
                }
            }
        }
        assert_eq!(T::live(&f.p), live, "live connections after populating");
        assert_eq!(f.p.counters().get(Counter::ConnCreated), live as u64);
        for _ in 0..BATCH {
            f.pool.push(VecFrame::new(f.family.bytes(Kind::Syn)));
        }
        f
    }

    /// Teaches the processor the MACs of the reals and the gateway (untimed).
    fn warm_neighbours(&mut self) {
        for frame in &self.neighbours {
            self.p.handle(0, VecFrame::new(frame), self.now_ms, &mut self.out);
        }
        self.out.drop.clear();
        self.out.tx.clear();
        self.out.control.clear();
    }

    fn next_rand(&mut self) -> u64 {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Runs `n` frames (already in the pool) through the processor; returns the time taken.
    fn run_pool(&mut self, n: usize) -> Duration {
        let now = self.now_ms;
        let start = Instant::now();
        let mut frames = self.pool.drain(..n);
        loop {
            self.burst.extend(frames.by_ref().take(self.rx_burst));
            if self.burst.is_empty() {
                break;
            }
            self.p.handle_burst(0, &mut self.burst, now, &mut self.out);
        }
        drop(frames);
        let took = start.elapsed();
        self.timed_frames += n as u64;
        assert!(
            self.out.drop.is_empty() && self.out.tx.len() == n,
            "every frame must be forwarded: {} sent, {} dropped; counters {:?}",
            self.out.tx.len(),
            self.out.drop.len(),
            self.p.counters()
        );
        self.pool.extend(self.out.tx.drain(..).map(|(_, f)| f));
        self.out.control.clear();
        took
    }

    /// Puts back a frame's original length (a mode may grow or shrink frames).
    fn reset_frame(frame: &mut VecFrame, template: &[u8]) {
        if frame.len() != template.len() {
            frame.refill(template);
        }
    }

    /// `iters` ACK segments of random live flows.
    fn established(&mut self, iters: u64) -> Duration {
        let mut total = Duration::ZERO;
        let mut left = iters as usize;
        while left > 0 {
            let n = left.min(BATCH);
            for i in 0..n {
                let flow = self.next_rand() % self.live as u64;
                let frame = &mut self.pool[i];
                Self::reset_frame(frame, self.family.bytes(Kind::Data));
                self.family.write(Kind::Data, frame.data_mut(), flow, false);
            }
            total += self.run_pool(n);
            left -= n;
        }
        total
    }

    /// `iters` replies (ACK segments from the real server) of random live flows.
    fn established_replies(&mut self, iters: u64) -> Duration {
        let Some(replies) = self.replies.take() else { panic!("no replies recorded for this mode") };
        let before = self.p.counters().get(Counter::ReplyPackets);
        let mut total = Duration::ZERO;
        let mut left = iters as usize;
        while left > 0 {
            let n = left.min(BATCH);
            for i in 0..n {
                let flow = (self.next_rand() % self.live as u64) as usize;
                let frame = &mut self.pool[i];
                Self::reset_frame(frame, &replies.base);
                replies.write(frame.data_mut(), flow);
            }
            total += self.run_pool(n);
            left -= n;
        }
        self.replies = Some(replies);
        // run_pool checked that every frame was sent; they were sent as replies.
        assert_eq!(self.p.counters().get(Counter::ReplyPackets) - before, iters, "every reply forwarded as a reply");
        total
    }

    /// `iters` SYNs of never-seen client tuples.
    fn new_connections(&mut self, iters: u64) -> Duration {
        let mut total = Duration::ZERO;
        let mut left = iters as usize;
        while left > 0 {
            if self.fresh >= self.slack {
                self.sweep();
            }
            let n = left.min(BATCH).min(self.slack - self.fresh);
            for i in 0..n {
                let frame = &mut self.pool[i];
                Self::reset_frame(frame, self.family.bytes(Kind::Syn));
                self.family.write(Kind::Syn, frame.data_mut(), (self.fresh + i) as u64, true);
            }
            total += self.run_pool(n);
            self.fresh += n;
            left -= n;
        }
        total
    }

    /// Expires the new connections (untimed): advance the clock past the SYN
    /// timeout and let the incremental sweep remove them.
    fn sweep(&mut self) {
        self.now_ms += 1_001;
        for _ in 0..self.sweep_ticks {
            if T::live(&self.p) <= self.live {
                break;
            }
            self.p.tick(self.now_ms, &mut self.out);
        }
        assert_eq!(T::live(&self.p), self.live, "sweep left new connections behind");
        self.out.drop.clear();
        self.out.tx.clear();
        self.out.control.clear();
        self.warm_neighbours();
        self.fresh = 0;
    }
}

/// The benchmarks of a group besides `established`.
#[derive(Clone, Copy)]
struct Cases {
    /// `new_conn`.
    new_conn: bool,
    /// `established_reply` (the fixture records replies).
    reply: bool,
}

/// Benchmarks `established` and the `cases` in group `packet_path/NAME/TABLE`
/// on the fixture `make` builds, once one of them is to run (not for
/// `--list`, nor when a filter leaves them out).
fn bench_group<T: Family>(c: &mut Criterion, name: &str, table: &str, live: usize, cases: Cases, make: impl Fn() -> Fixture<T>) {
    let mut fixture: Option<Fixture<T>> = None;
    let get = |slot: &mut Option<Fixture<T>>| {
        if slot.is_none() {
            let setup = Instant::now();
            *slot = Some(make());
            eprintln!("packet_path: {name} with {live} live connections ready in {:.1?}", setup.elapsed());
        }
    };
    let mut group = c.benchmark_group(format!("packet_path/{name}/{table}"));
    group.throughput(Throughput::Elements(1));
    group.bench_function("established", |b| {
        get(&mut fixture);
        if let Some(fx) = fixture.as_mut() {
            b.iter_custom(|iters| fx.established(iters));
        }
    });
    if cases.reply {
        group.bench_function("established_reply", |b| {
            get(&mut fixture);
            if let Some(fx) = fixture.as_mut() {
                b.iter_custom(|iters| fx.established_replies(iters));
            }
        });
    }
    if cases.new_conn {
        group.bench_function("new_conn", |b| {
            get(&mut fixture);
            if let Some(fx) = fixture.as_mut() {
                b.iter_custom(|iters| fx.new_connections(iters));
            }
        });
    }
    group.finish();
    if let Some(fx) = fixture {
        if fx.timed_frames > 0 {
            eprintln!("packet_path: {name}/{table}: frames timed: {}", fx.timed_frames);
        }
        black_box(fx.p.counters().get(Counter::InboundPackets));
    }
}

fn packet_path(c: &mut Criterion) {
    let ipv4 = ipv4_proto();
    for (table, live) in table_sizes() {
        for mode in MODES {
            let (name, cases) = match ipv4.1 {
                Protocol::Tcp => (mode.name.to_owned(), Cases { new_conn: true, reply: replies_pass(mode) }),
                // UDP flows have no SYN_RECV timeout to sweep new ones by.
                Protocol::Udp => (format!("udp-{}", mode.name), Cases { new_conn: false, reply: false }),
            };
            bench_group(c, &name, &table, live, cases, || Fixture::new(mode, live, ipv4, cases.reply))
        }
        for mode in MODES6 {
            let cases = Cases { new_conn: true, reply: false };
            bench_group(c, mode.name, &table, live, cases, || Fixture::new6(mode, live));
        }
    }
}

criterion_group!(benches, packet_path);
criterion_main!(benches);
